//! The payment as data, and the decisions made from it without I/O.
//!
//! - [`Payment::next`]: what a delivery (or the sweep) does next with a payment as it is: claim
//!   it, wait, start over, resume from the recorded PaymentIntent, abandon it for a cancelled
//!   order, or nothing. Every use case asks it instead of looking at the stage itself.
//! - [`Payment::on_dispatch`]: what a `ShipmentDispatched` does with a payment as it is: claim
//!   the capture, resume one, report a capture that cannot be, wait, or nothing.
//! - [`Payment::on_stripe`]: what a Stripe webhook does with a payment as it is: settle it as
//!   the confirmation's answer would, finish an abandonment, record a capture, or nothing (a
//!   late, duplicate or out-of-order event).
//! - [`Payment::record`] and [`Payment::apply`]: what each write does to a payment, and the
//!   condition under which a stage change is written ([`Change`]). The DynamoDB adapter states the
//!   same conditions as condition expressions (`dynamo.rs`, checked against an emulator by
//!   `tests/dynamo_store.rs`); the in-memory store (`testing.rs`) uses these functions, so the
//!   conditions exist once in Rust.
//!
//! ```text
//!            claim                 record intent              settle (authorized)
//! pending ─────────▶ authorizing ─────────────────▶ authorizing ──────────────────▶ authorized
//!                    (no intent) ◀─┐ reclaim        (intent)                              │ void
//!                         │  └─────┘ (lapsed)            │ settle (failed, cancelled)     ▼
//!                         └──────────────────────────────┴──────────────────▶ failed    voided
//!                                                                                         │
//!       first dispatch: start capture          settle capture (captured)                  │
//! authorized ─────────────────────────▶ capturing ─────────────────────────▶ captured     │
//!                                           │ settle capture (refused)                    │
//!                                           └──────────────────▶ capture_failed ◀─────────┘
//!                                                                  (a dispatch after the void)
//!
//!                       settle (requires_action)                   webhook: amount_capturable_updated
//! authorizing (intent) ─────────────────────────▶ awaiting_action ──────────────────────────▶ authorized
//!                                                  │ webhook: payment_failed / canceled, or
//!                                                  │ the order cancelled (its timeout): cancel at Stripe
//!                                                  └─────────────────────────────────────────▶ failed
//! ```
//!
//! A payment awaiting 3-D Secure (`requires_action` in the table) has left the `Authorizing`
//! index, so the stalled-authorization sweep never touches it: it waits for Stripe's webhook
//! (`crate::webhook`), which settles it with the same conditional write a confirmation's answer
//! would, or for the order's cancellation (checkout's timeout), which cancels the PaymentIntent.
//!
//! A capture takes the whole authorized total, once, on the order's first `ShipmentDispatched`:
//! Stripe captures a PaymentIntent once (capturing part of it releases the rest), and capturing
//! several times needs multicapture, an enterprise feature that neither test mode nor the local
//! emulator has. Later dispatches of the order find the payment `capturing`, `captured` or
//! `capture_failed` and capture nothing more.

use std::fmt;

use time::{Duration, OffsetDateTime};

use kernel::{Money, OrderId};

/// How long a claim without a recorded PaymentIntent belongs to the invocation that made it,
/// and how old a claim must be before the sweep finishes it. Longer than the function's timeout
/// (40 s in template.yaml), so the owner is surely gone when it lapses, and shorter than the
/// queue's visibility timeout (240 s), so the owner's own message, redelivered after a failure,
/// always finds the claim lapsed and can take it over.
pub const CLAIM_TIMEOUT: Duration = Duration::seconds(60);

/// `PaymentFailed.reason` when the order was cancelled while its payment was authorizing: the
/// PaymentIntent was cancelled at Stripe (releasing any hold its confirmation had placed) and no
/// `PaymentAuthorized` was announced.
pub const CANCELLED: &str = "cancelled";

/// `PaymentFailed.reason` when the card needs 3-D Secure and Stripe gave no client secret to
/// complete it with (the customer cannot be asked).
pub const AUTHENTICATION_REQUIRED: &str = "authentication_required";
/// `PaymentFailed.reason` when the PaymentIntent was cancelled at Stripe (by Stripe, or in the
/// Dashboard) while the customer was authenticating, and the order was not cancelled by us.
pub const INTENT_CANCELED: &str = "payment_intent_canceled";
/// `PaymentFailed.reason` when Stripe does not know or cannot use the payment method.
pub const PAYMENT_METHOD_INVALID: &str = "payment_method_invalid";

/// `PaymentCaptureFailed.reason` when a dispatch reaches a payment whose authorization was
/// voided (the order was cancelled first): nothing is held, so nothing can be captured.
pub const AUTHORIZATION_VOIDED: &str = "authorization_voided";
/// `PaymentCaptureFailed.reason` when the PaymentIntent is not `requires_capture` (cancelled at
/// Stripe, for one): Stripe's own code for a capture in that state.
pub const NOT_CAPTURABLE: &str = "payment_intent_unexpected_state";

/// A Stripe PaymentIntent id (`pi_…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PaymentIntentId(String);

/// The error for a string that is not a PaymentIntent id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a Stripe PaymentIntent id (`pi_` followed by letters and digits)")]
pub struct InvalidPaymentIntentId(pub String);

impl PaymentIntentId {
    pub fn parse(id: &str) -> Result<Self, InvalidPaymentIntentId> {
        let body = id.strip_prefix("pi_").unwrap_or_default();
        // Stripe ids are at most 255 characters.
        if body.is_empty() || id.len() > 255 || !body.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(InvalidPaymentIntentId(id.to_owned()));
        }
        Ok(Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PaymentIntentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A PaymentIntent's client secret (`pi_…_secret_…`): what Stripe.js needs to run the
/// customer's 3-D Secure challenge. Only the order's owner may see it; it is not logged (its
/// `Debug` prints `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wraps a client secret, refusing an empty one.
    pub fn new(secret: impl Into<String>) -> Option<Self> {
        let secret = secret.into();
        (!secret.trim().is_empty()).then_some(Self(secret))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(***)")
    }
}

/// What `OrderPlaced` says about paying for the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPayment {
    pub total: Money,
    /// The Stripe payment method (`pm_…`) the storefront made from the card.
    pub payment_method: String,
}

/// Where a payment stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Not started: a fact is missing, or the order was cancelled first.
    Pending,
    /// Claimed at `since`; `intent` once step 2 recorded it.
    Authorizing { since: OffsetDateTime, intent: Option<PaymentIntentId> },
    /// Stripe's confirmation answered `requires_action`: the customer must pass 3-D Secure. The
    /// payment waits for Stripe to say how it went (a webhook), or for the order's cancellation
    /// (its timeout); nothing is held yet.
    AwaitingAction { intent: PaymentIntentId },
    /// The total is held on the card.
    Authorized { intent: PaymentIntentId },
    /// The authorization failed, or was abandoned because the order was cancelled; nothing is held.
    Failed,
    /// The authorization was cancelled; the hold is released.
    Voided { intent: PaymentIntentId },
    /// Claimed for capture on the order's first dispatch; the capture at Stripe may have gone
    /// through (whoever carries it on reads the PaymentIntent back before capturing).
    Capturing { intent: PaymentIntentId },
    /// The total was collected.
    Captured { intent: PaymentIntentId },
    /// The capture was refused for good (Stripe's code, or [`AUTHORIZATION_VOIDED`]); nothing was
    /// collected and a person must act.
    CaptureFailed { intent: PaymentIntentId, reason: String },
}

/// An order's payment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub order_id: OrderId,
    /// Present once `OrderPlaced` was recorded.
    pub order: Option<OrderPayment>,
    pub stock_reserved: bool,
    pub cancelled: bool,
    pub stage: Stage,
    /// What was refunded of the captured total (see [`crate::refund`]).
    pub refunds: crate::refund::RefundTotals,
}

/// A saga fact the payment records. Recording one always succeeds and never changes the stage,
/// so facts commute: they may arrive in any order and any number of times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// `OrderPlaced`: the first recorded total and payment method stay.
    OrderPlaced(OrderPayment),
    /// `StockReserved`.
    StockReserved,
    /// `OrderCancelled`: the flag is never removed.
    Cancelled,
}

/// A stage change, written only if its condition holds on the payment as it is (see
/// [`Payment::apply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Starts authorizing at `at`: only with both facts in, no cancellation and no stage yet.
    Claim { at: OffsetDateTime },
    /// Takes over the claim made at `since` that never recorded a PaymentIntent, restarting it at
    /// `at`: only while it is still that claim.
    Reclaim { since: OffsetDateTime, at: OffsetDateTime },
    /// Step 2: records the PaymentIntent, only while authorizing and if none is recorded yet.
    RecordIntent(PaymentIntentId),
    /// Step 4: records the outcome, only while authorizing with the settlement's PaymentIntent
    /// (with none, for a create Stripe refused); an authorization only if the order is not
    /// cancelled, so a cancellation that landed during the confirmation is seen by the settler.
    /// An authorization or a failure also settles a payment awaiting 3-D Secure with that
    /// PaymentIntent; waiting for 3-D Secure is entered only from authorizing, and only for an
    /// order not cancelled.
    Settle(Settlement),
    /// Records the void, only while authorized with this PaymentIntent.
    Void(PaymentIntentId),
    /// Claims the capture: only while authorized with this PaymentIntent and the order not
    /// cancelled (a cancelled order's authorization is the cancellation's to void).
    StartCapture(PaymentIntentId),
    /// Records how a capture ended: captured only while capturing this PaymentIntent; failed
    /// while capturing it, or while it is voided (a dispatch that came after the void).
    SettleCapture(CaptureSettlement),
}

/// A stage change whose condition did not hold; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{change:?} does not apply to a payment that is {stage:?} (cancelled: {cancelled})")]
pub struct Refused {
    // Boxed: a capture's change and stage carry Stripe's reason, and a `Result` stays small.
    pub change: Box<Change>,
    pub stage: Box<Stage>,
    pub cancelled: bool,
}

impl Payment {
    /// A payment with nothing recorded yet.
    pub fn new(order_id: OrderId) -> Self {
        Self {
            order_id,
            order: None,
            stock_reserved: false,
            cancelled: false,
            stage: Stage::Pending,
            refunds: crate::refund::RefundTotals::default(),
        }
    }

    /// Records a fact (see [`Fact`]).
    pub fn record(&mut self, fact: &Fact) {
        match fact {
            Fact::OrderPlaced(order) => {
                self.order.get_or_insert_with(|| order.clone());
            }
            Fact::StockReserved => self.stock_reserved = true,
            Fact::Cancelled => self.cancelled = true,
        }
    }

    /// Applies a stage change if its condition holds (each condition is on the stage it leaves;
    /// see [`Change`]); otherwise changes nothing and says why.
    pub fn apply(&mut self, change: &Change) -> Result<(), Refused> {
        let stage = match (change, &self.stage) {
            (Change::Claim { at }, Stage::Pending)
                if !self.cancelled && self.stock_reserved && self.order.is_some() =>
            {
                Stage::Authorizing { since: *at, intent: None }
            }
            (Change::Reclaim { since, at }, Stage::Authorizing { since: claimed, intent: None })
                if claimed == since =>
            {
                Stage::Authorizing { since: *at, intent: None }
            }
            (Change::RecordIntent(intent), Stage::Authorizing { since, intent: None }) => {
                Stage::Authorizing { since: *since, intent: Some(intent.clone()) }
            }
            (
                Change::Settle(Settlement::Authorized { intent }),
                Stage::Authorizing { intent: Some(recorded), .. } | Stage::AwaitingAction { intent: recorded },
            ) if recorded == intent && !self.cancelled => Stage::Authorized { intent: intent.clone() },
            (
                Change::Settle(Settlement::AwaitingAction { intent, .. }),
                Stage::Authorizing { intent: Some(recorded), .. },
            ) if recorded == intent && !self.cancelled => Stage::AwaitingAction { intent: intent.clone() },
            (Change::Settle(Settlement::Failed { intent, .. }), Stage::Authorizing { intent: recorded, .. })
                if recorded == intent =>
            {
                Stage::Failed
            }
            (
                Change::Settle(Settlement::Failed { intent: Some(intent), .. }),
                Stage::AwaitingAction { intent: recorded },
            ) if recorded == intent => Stage::Failed,
            (Change::Void(intent), Stage::Authorized { intent: authorized }) if authorized == intent => {
                Stage::Voided { intent: intent.clone() }
            }
            (Change::StartCapture(intent), Stage::Authorized { intent: authorized })
                if authorized == intent && !self.cancelled =>
            {
                Stage::Capturing { intent: intent.clone() }
            }
            (Change::SettleCapture(CaptureSettlement::Captured { intent }), Stage::Capturing { intent: capturing })
                if capturing == intent =>
            {
                Stage::Captured { intent: intent.clone() }
            }
            (
                Change::SettleCapture(CaptureSettlement::Failed { intent, reason }),
                Stage::Capturing { intent: recorded } | Stage::Voided { intent: recorded },
            ) if recorded == intent => Stage::CaptureFailed { intent: intent.clone(), reason: reason.clone() },
            _ => {
                return Err(Refused {
                    change: Box::new(change.clone()),
                    stage: Box::new(self.stage.clone()),
                    cancelled: self.cancelled,
                });
            }
        };
        self.stage = stage;
        Ok(())
    }

    /// The order to authorize, when both facts are in and nothing stops it.
    fn ready(&self) -> Option<&OrderPayment> {
        self.order.as_ref().filter(|order| {
            self.stock_reserved && !self.cancelled && self.stage == Stage::Pending && order.total.amount() > 0
        })
    }

    /// What a delivery (or the sweep) does next with the payment as it is at `now`.
    pub fn next(&self, now: OffsetDateTime) -> Next {
        match &self.stage {
            Stage::Pending if self.ready().is_some() => Next::Claim,
            Stage::Authorizing { intent, .. } if self.cancelled => Next::Abandon(intent.clone()),
            Stage::Authorizing { intent: Some(intent), .. } => Next::Resume(intent.clone()),
            Stage::Authorizing { since, intent: None } if now - *since >= CLAIM_TIMEOUT => {
                Next::Restart { since: *since }
            }
            Stage::Authorizing { intent: None, .. } => Next::Wait,
            // The customer's 3-D Secure never came back before the order timed out (or the order
            // was cancelled otherwise): cancel the PaymentIntent at Stripe.
            Stage::AwaitingAction { intent } if self.cancelled => Next::Abandon(Some(intent.clone())),
            // Stripe says how the challenge went, by webhook; nothing to do until then.
            Stage::AwaitingAction { .. }
            | Stage::Pending
            | Stage::Authorized { .. }
            | Stage::Failed
            | Stage::Voided { .. }
            | Stage::Capturing { .. }
            | Stage::Captured { .. }
            | Stage::CaptureFailed { .. } => Next::Nothing,
        }
    }

    /// What a Stripe webhook saying `told` about `intent` does with the payment as it is. Only a
    /// payment authorizing or awaiting 3-D Secure with that PaymentIntent settles (so a late
    /// failure after the authorization, or a success after the order's timeout, changes
    /// nothing), and only a capture under way is recorded.
    pub fn on_stripe(&self, intent: &PaymentIntentId, told: Told) -> Heard {
        match (&self.stage, told) {
            // Confirmed only after step 2 recorded the PaymentIntent: this cannot be ours yet.
            (Stage::Authorizing { intent: None, .. }, _) => Heard::NotYet,
            (Stage::Authorizing { intent: Some(recorded), .. } | Stage::AwaitingAction { intent: recorded }, told)
                if recorded == intent =>
            {
                match told {
                    Told::Capturable | Told::Failed => Heard::Settle,
                    Told::Canceled if self.cancelled => Heard::Abandon,
                    Told::Canceled => Heard::FailCanceled,
                    Told::Succeeded => Heard::ChangedElsewhere,
                }
            }
            (Stage::Capturing { intent: capturing }, Told::Succeeded) if capturing == intent => Heard::ResumeCapture,
            _ => Heard::Nothing,
        }
    }

    /// What a `ShipmentDispatched` of the order does with the payment as it is. Only the first
    /// dispatch finds it authorized; every later one (another shipment, a duplicate, the same
    /// fact under a new event id) finds it capturing, captured or failed.
    pub fn on_dispatch(&self) -> Dispatch {
        let zero_total = self.order.as_ref().is_some_and(|order| order.total.amount() == 0);
        match &self.stage {
            Stage::Authorized { intent } if !self.cancelled => Dispatch::Capture(intent.clone()),
            // The cancellation voids it; the dispatch, tried again, then finds it voided.
            Stage::Authorized { .. } => Dispatch::Wait,
            Stage::Capturing { intent } => Dispatch::Resume(intent.clone()),
            Stage::Voided { intent } => {
                Dispatch::Refuse { intent: intent.clone(), reason: AUTHORIZATION_VOIDED.to_owned() }
            }
            Stage::Captured { .. } | Stage::CaptureFailed { .. } => Dispatch::Nothing,
            Stage::Pending if zero_total => Dispatch::Nothing,
            // Not authorized yet: a dispatch that overtook the authorization (it cannot, as the
            // saga runs: checkout confirms on PaymentAuthorized), or the authorization is running.
            Stage::Pending | Stage::Authorizing { .. } | Stage::AwaitingAction { .. } if !self.cancelled => {
                Dispatch::Wait
            }
            // The authorization failed, or the order was cancelled before it could hold anything.
            Stage::Pending | Stage::Authorizing { .. } | Stage::AwaitingAction { .. } | Stage::Failed => {
                Dispatch::Unpayable
            }
        }
    }
}

/// What a Stripe webhook says happened to a PaymentIntent (its details stay with
/// [`crate::webhook`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Told {
    /// `payment_intent.amount_capturable_updated`: the amount is held.
    Capturable,
    /// `payment_intent.payment_failed`.
    Failed,
    /// `payment_intent.canceled`.
    Canceled,
    /// `payment_intent.succeeded`: captured.
    Succeeded,
}

/// What a Stripe webhook does with a payment, decided from the payment alone (see
/// [`Payment::on_stripe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// Settle the payment as the confirmation's answer would (authorized, or failed with
    /// Stripe's code), with the same conditional write.
    Settle,
    /// Cancelled at Stripe while the order is cancelled: finish the abandonment (`cancelled`).
    Abandon,
    /// Cancelled at Stripe by someone else while authorizing or awaiting 3-D Secure: record
    /// the payment failed with [`INTENT_CANCELED`].
    FailCanceled,
    /// Stripe captured the capture under way: record it, as a resumed capture would.
    ResumeCapture,
    /// Authorizing without a recorded PaymentIntent: it cannot be this one's yet; try later.
    NotYet,
    /// Captured while authorizing: payment never does that, so someone else did.
    ChangedElsewhere,
    /// A late, duplicate or out-of-order event, or one about another PaymentIntent: nothing.
    Nothing,
}

/// What a dispatch does with a payment, decided from the payment alone (see
/// [`Payment::on_dispatch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatch {
    /// The first dispatch of an authorized order: claim the capture, then capture at Stripe.
    Capture(PaymentIntentId),
    /// A capture was claimed and not recorded (its invocation died, or Stripe failed): read the
    /// PaymentIntent back and capture it unless Stripe already did.
    Resume(PaymentIntentId),
    /// The authorization was voided before the dispatch reached payment: record the capture
    /// failed with `reason`, without calling Stripe, so the order is flagged.
    Refuse { intent: PaymentIntentId, reason: String },
    /// Not authorized yet, or the order's cancellation is voiding the authorization: look
    /// again later.
    Wait,
    /// Nothing to capture: the total is zero, or the capture already happened or was reported.
    Nothing,
    /// No authorization exists to capture (it failed, or the order was cancelled before one was
    /// made): a person must look.
    Unpayable,
}

/// How a capture ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureSettlement {
    Captured {
        intent: PaymentIntentId,
    },
    /// Refused for good, with Stripe's code (or [`AUTHORIZATION_VOIDED`]).
    Failed {
        intent: PaymentIntentId,
        reason: String,
    },
}

/// What to do next with a payment, decided from the payment alone (see [`Payment::next`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Both facts are in and nothing stops it: claim the authorization.
    Claim,
    /// Nothing now: a fact is missing, the total is zero, the order was cancelled before the
    /// authorization started, or the payment has settled.
    Nothing,
    /// A fresh claim without a PaymentIntent: its owner is at work. Look again later.
    Wait,
    /// The claim made at `since` lapsed before recording a PaymentIntent: take it over and start
    /// again at step 1.
    Restart { since: OffsetDateTime },
    /// Continue from the recorded PaymentIntent: confirm it unless that happened.
    Resume(PaymentIntentId),
    /// The order was cancelled during the authorization: cancel the recorded PaymentIntent (if
    /// any) at Stripe instead of confirming it, and record the payment failed ([`CANCELLED`]). A
    /// PaymentIntent created but never recorded was never confirmed and holds nothing.
    Abandon(Option<PaymentIntentId>),
}

/// How an authorization ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Authorized {
        intent: PaymentIntentId,
    },
    /// Not an end: the confirmation answered `requires_action`, and the customer must pass 3-D
    /// Secure with `client_secret` before Stripe holds anything.
    AwaitingAction {
        intent: PaymentIntentId,
        client_secret: ClientSecret,
    },
    Failed {
        intent: Option<PaymentIntentId>,
        reason: String,
        decline_code: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use kernel::Currency;

    use super::*;

    const T0: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

    fn intent(id: &str) -> PaymentIntentId {
        PaymentIntentId::parse(id).unwrap()
    }

    fn payment(stage: Stage, cancelled: bool) -> Payment {
        Payment {
            order_id: OrderId::new(),
            order: Some(OrderPayment {
                total: Money::new(2500, Currency::USD).unwrap(),
                payment_method: "pm_card_visa".into(),
            }),
            stock_reserved: true,
            cancelled,
            stage,
            refunds: crate::refund::RefundTotals::default(),
        }
    }

    fn authorized(id: &str) -> Change {
        Change::Settle(Settlement::Authorized { intent: intent(id) })
    }

    fn failed(id: Option<&str>) -> Change {
        Change::Settle(Settlement::Failed {
            intent: id.map(intent),
            reason: "card_declined".into(),
            decline_code: None,
        })
    }

    /// The stage after `change`, or `None` when its condition does not hold (the payment unchanged).
    fn after(mut payment: Payment, change: Change) -> Option<Stage> {
        let before = payment.clone();
        match payment.apply(&change) {
            Ok(()) => Some(payment.stage),
            Err(_) => {
                assert_eq!(payment, before, "a refused change changes nothing");
                None
            }
        }
    }

    #[test]
    fn what_comes_next_is_decided_from_the_payment_alone() {
        let fresh = Stage::Authorizing { since: T0, intent: None };
        let recorded = Stage::Authorizing { since: T0, intent: Some(intent("pi_1")) };
        let soon = T0 + Duration::seconds(1);

        assert_eq!(payment(Stage::Pending, false).next(soon), Next::Claim);
        assert_eq!(payment(Stage::Pending, true).next(soon), Next::Nothing);
        assert_eq!(payment(fresh.clone(), false).next(soon), Next::Wait);
        assert_eq!(payment(fresh.clone(), false).next(T0 + CLAIM_TIMEOUT), Next::Restart { since: T0 });
        assert_eq!(payment(fresh, true).next(soon), Next::Abandon(None));
        assert_eq!(payment(recorded.clone(), false).next(soon), Next::Resume(intent("pi_1")));
        assert_eq!(payment(recorded, true).next(soon), Next::Abandon(Some(intent("pi_1"))));
        assert_eq!(
            payment(Stage::Authorized { intent: intent("pi_1") }, true).next(soon),
            Next::Nothing,
            "voiding is the cancellation's"
        );
    }

    #[test]
    fn a_payment_with_nothing_to_pay_is_never_claimed() {
        let mut free = payment(Stage::Pending, false);
        free.order = Some(OrderPayment { total: Money::zero(Currency::USD), payment_method: "pm_card_visa".into() });

        assert_eq!(free.next(T0), Next::Nothing);
    }

    #[test]
    fn facts_commute_and_the_first_order_stays() {
        let order =
            |minor| OrderPayment { total: Money::new(minor, Currency::USD).unwrap(), payment_method: "pm_1".into() };
        let facts = [Fact::OrderPlaced(order(2500)), Fact::StockReserved, Fact::OrderPlaced(order(9900))];
        let (mut forward, mut backward) = (Payment::new(OrderId::new()), Payment::new(OrderId::new()));
        backward.order_id = forward.order_id;

        facts.iter().for_each(|fact| forward.record(fact));
        [&facts[1], &facts[0], &facts[2], &facts[1]].into_iter().for_each(|fact| backward.record(fact));

        assert_eq!(forward, backward);
        assert_eq!(forward.order, Some(order(2500)));
        assert!(forward.stock_reserved && !forward.cancelled);
        assert_eq!(forward.stage, Stage::Pending, "a fact never changes the stage");
    }

    #[test]
    fn a_claim_needs_both_facts_no_cancellation_and_no_stage() {
        let claim = Change::Claim { at: T0 };
        let mut unplaced = payment(Stage::Pending, false);
        unplaced.order = None;
        let mut unreserved = payment(Stage::Pending, false);
        unreserved.stock_reserved = false;

        assert_eq!(
            after(payment(Stage::Pending, false), claim.clone()),
            Some(Stage::Authorizing { since: T0, intent: None })
        );
        assert_eq!(after(payment(Stage::Pending, true), claim.clone()), None);
        assert_eq!(after(unplaced, claim.clone()), None);
        assert_eq!(after(unreserved, claim.clone()), None);
        assert_eq!(after(payment(Stage::Authorizing { since: T0, intent: None }, false), claim), None);
    }

    #[test]
    fn only_the_same_claim_without_an_intent_is_taken_over() {
        let later = T0 + CLAIM_TIMEOUT;
        let reclaim = Change::Reclaim { since: T0, at: later };

        assert_eq!(
            after(payment(Stage::Authorizing { since: T0, intent: None }, false), reclaim.clone()),
            Some(Stage::Authorizing { since: later, intent: None })
        );
        assert_eq!(after(payment(Stage::Authorizing { since: later, intent: None }, false), reclaim.clone()), None);
        assert_eq!(
            after(payment(Stage::Authorizing { since: T0, intent: Some(intent("pi_1")) }, false), reclaim),
            None
        );
    }

    #[test]
    fn an_intent_is_recorded_once_and_only_while_authorizing() {
        let record = Change::RecordIntent(intent("pi_2"));

        assert_eq!(
            after(payment(Stage::Authorizing { since: T0, intent: None }, true), record.clone()),
            Some(Stage::Authorizing { since: T0, intent: Some(intent("pi_2")) }),
            "a cancelled payment records its intent too: the writer sees the flag and abandons it"
        );
        assert_eq!(
            after(payment(Stage::Authorizing { since: T0, intent: Some(intent("pi_1")) }, false), record.clone()),
            None
        );
        assert_eq!(after(payment(Stage::Pending, false), record), None);
    }

    #[test]
    fn only_the_recorded_intent_settles_and_an_authorization_only_for_an_order_not_cancelled() {
        let recorded = || Stage::Authorizing { since: T0, intent: Some(intent("pi_1")) };
        let fresh = || Stage::Authorizing { since: T0, intent: None };

        assert_eq!(
            after(payment(recorded(), false), authorized("pi_1")),
            Some(Stage::Authorized { intent: intent("pi_1") })
        );
        assert_eq!(after(payment(recorded(), true), authorized("pi_1")), None);
        assert_eq!(after(payment(recorded(), false), authorized("pi_2")), None);
        assert_eq!(after(payment(recorded(), true), failed(Some("pi_1"))), Some(Stage::Failed));
        assert_eq!(after(payment(recorded(), false), failed(None)), None);
        assert_eq!(after(payment(fresh(), false), failed(None)), Some(Stage::Failed));
        assert_eq!(after(payment(fresh(), false), failed(Some("pi_1"))), None);
        assert_eq!(after(payment(Stage::Failed, false), failed(None)), None, "settled once");
    }

    #[test]
    fn only_an_authorization_with_this_intent_is_voided() {
        let held = || Stage::Authorized { intent: intent("pi_1") };

        assert_eq!(
            after(payment(held(), true), Change::Void(intent("pi_1"))),
            Some(Stage::Voided { intent: intent("pi_1") })
        );
        assert_eq!(after(payment(held(), true), Change::Void(intent("pi_2"))), None);
        assert_eq!(after(payment(Stage::Voided { intent: intent("pi_1") }, true), Change::Void(intent("pi_1"))), None);
    }

    #[test]
    fn only_the_first_dispatch_of_an_authorized_order_not_cancelled_claims_a_capture() {
        let pi = || intent("pi_1");
        let mut free = payment(Stage::Pending, false);
        free.order = Some(OrderPayment { total: Money::zero(Currency::USD), payment_method: "pm_card_visa".into() });

        assert_eq!(payment(Stage::Authorized { intent: pi() }, false).on_dispatch(), Dispatch::Capture(pi()));
        assert_eq!(payment(Stage::Capturing { intent: pi() }, false).on_dispatch(), Dispatch::Resume(pi()));
        assert_eq!(payment(Stage::Captured { intent: pi() }, false).on_dispatch(), Dispatch::Nothing);
        let reported = Stage::CaptureFailed { intent: pi(), reason: "charge_expired_for_capture".into() };
        assert_eq!(payment(reported, false).on_dispatch(), Dispatch::Nothing);
        assert_eq!(free.on_dispatch(), Dispatch::Nothing, "a zero total has nothing to capture");
    }

    #[test]
    fn a_dispatch_waits_for_an_authorization_and_reports_one_that_was_voided_or_never_came() {
        let pi = || intent("pi_1");

        assert_eq!(payment(Stage::Pending, false).on_dispatch(), Dispatch::Wait);
        assert_eq!(payment(Stage::Authorizing { since: T0, intent: None }, false).on_dispatch(), Dispatch::Wait);
        assert_eq!(
            payment(Stage::Authorized { intent: pi() }, true).on_dispatch(),
            Dispatch::Wait,
            "the cancellation voids it first"
        );
        assert_eq!(
            payment(Stage::Voided { intent: pi() }, true).on_dispatch(),
            Dispatch::Refuse { intent: pi(), reason: AUTHORIZATION_VOIDED.into() }
        );
        assert_eq!(payment(Stage::Failed, true).on_dispatch(), Dispatch::Unpayable);
        assert_eq!(payment(Stage::Pending, true).on_dispatch(), Dispatch::Unpayable);
    }

    #[test]
    fn a_capture_is_claimed_once_and_only_from_an_authorization_of_an_order_not_cancelled() {
        let start = Change::StartCapture(intent("pi_1"));

        assert_eq!(
            after(payment(Stage::Authorized { intent: intent("pi_1") }, false), start.clone()),
            Some(Stage::Capturing { intent: intent("pi_1") })
        );
        assert_eq!(after(payment(Stage::Authorized { intent: intent("pi_1") }, true), start.clone()), None);
        assert_eq!(after(payment(Stage::Authorized { intent: intent("pi_2") }, false), start.clone()), None);
        assert_eq!(after(payment(Stage::Capturing { intent: intent("pi_1") }, false), start.clone()), None);
        assert_eq!(after(payment(Stage::Captured { intent: intent("pi_1") }, false), start), None);
    }

    #[test]
    fn a_capture_settles_once_and_a_voided_authorization_can_only_fail_one() {
        let captured = || Change::SettleCapture(CaptureSettlement::Captured { intent: intent("pi_1") });
        let refused =
            || Change::SettleCapture(CaptureSettlement::Failed { intent: intent("pi_1"), reason: "expired".into() });
        let failed_stage = Some(Stage::CaptureFailed { intent: intent("pi_1"), reason: "expired".into() });

        assert_eq!(
            after(payment(Stage::Capturing { intent: intent("pi_1") }, false), captured()),
            Some(Stage::Captured { intent: intent("pi_1") })
        );
        assert_eq!(after(payment(Stage::Capturing { intent: intent("pi_1") }, true), refused()), failed_stage);
        assert_eq!(after(payment(Stage::Voided { intent: intent("pi_1") }, true), refused()), failed_stage);
        assert_eq!(after(payment(Stage::Voided { intent: intent("pi_1") }, true), captured()), None);
        assert_eq!(after(payment(Stage::Capturing { intent: intent("pi_2") }, false), captured()), None);
        assert_eq!(after(payment(Stage::Captured { intent: intent("pi_1") }, false), captured()), None, "once");
        assert_eq!(after(payment(Stage::Authorized { intent: intent("pi_1") }, false), captured()), None);
    }

    fn awaiting(id: &str, secret: &str) -> Change {
        Change::Settle(Settlement::AwaitingAction {
            intent: intent(id),
            client_secret: ClientSecret::new(secret).unwrap(),
        })
    }

    #[test]
    fn a_confirmation_that_requires_action_waits_only_from_authorizing_with_its_intent() {
        let recorded = || Stage::Authorizing { since: T0, intent: Some(intent("pi_1")) };
        let waiting = Some(Stage::AwaitingAction { intent: intent("pi_1") });

        assert_eq!(after(payment(recorded(), false), awaiting("pi_1", "pi_1_secret_x")), waiting);
        assert_eq!(after(payment(recorded(), true), awaiting("pi_1", "s")), None, "a cancelled order abandons it");
        assert_eq!(after(payment(recorded(), false), awaiting("pi_2", "s")), None);
        assert_eq!(
            after(payment(Stage::AwaitingAction { intent: intent("pi_1") }, false), awaiting("pi_1", "s")),
            None
        );
        assert_eq!(after(payment(Stage::Authorized { intent: intent("pi_1") }, false), awaiting("pi_1", "s")), None);
    }

    #[test]
    fn a_payment_awaiting_3d_secure_settles_once_as_stripe_says() {
        let waiting = || Stage::AwaitingAction { intent: intent("pi_1") };

        assert_eq!(
            after(payment(waiting(), false), authorized("pi_1")),
            Some(Stage::Authorized { intent: intent("pi_1") })
        );
        assert_eq!(after(payment(waiting(), false), failed(Some("pi_1"))), Some(Stage::Failed));
        assert_eq!(after(payment(waiting(), true), failed(Some("pi_1"))), Some(Stage::Failed));
        assert_eq!(after(payment(waiting(), true), authorized("pi_1")), None, "never for a cancelled order");
        assert_eq!(after(payment(waiting(), false), authorized("pi_2")), None);
        assert_eq!(after(payment(waiting(), false), failed(None)), None);
    }

    #[test]
    fn a_payment_awaiting_3d_secure_waits_for_stripe_and_is_abandoned_once_its_order_is_cancelled() {
        let waiting = || Stage::AwaitingAction { intent: intent("pi_1") };
        let much_later = T0 + Duration::hours(1);

        assert_eq!(payment(waiting(), false).next(much_later), Next::Nothing, "no claim timeout: Stripe tells");
        assert_eq!(payment(waiting(), true).next(much_later), Next::Abandon(Some(intent("pi_1"))));
        assert_eq!(payment(waiting(), false).on_dispatch(), Dispatch::Wait);
        assert_eq!(payment(waiting(), true).on_dispatch(), Dispatch::Unpayable);
    }

    #[test]
    fn a_webhook_settles_only_a_payment_authorizing_or_awaiting_3d_secure_with_its_intent() {
        let pi = || intent("pi_1");
        let waiting = || Stage::AwaitingAction { intent: pi() };
        let recorded = || Stage::Authorizing { since: T0, intent: Some(pi()) };

        assert_eq!(payment(waiting(), false).on_stripe(&pi(), Told::Capturable), Heard::Settle);
        assert_eq!(payment(waiting(), false).on_stripe(&pi(), Told::Failed), Heard::Settle);
        assert_eq!(payment(recorded(), false).on_stripe(&pi(), Told::Capturable), Heard::Settle, "overtook the answer");
        assert_eq!(payment(waiting(), true).on_stripe(&pi(), Told::Canceled), Heard::Abandon);
        assert_eq!(payment(waiting(), false).on_stripe(&pi(), Told::Canceled), Heard::FailCanceled);
        assert_eq!(payment(recorded(), false).on_stripe(&pi(), Told::Succeeded), Heard::ChangedElsewhere);
        assert_eq!(payment(waiting(), false).on_stripe(&intent("pi_2"), Told::Capturable), Heard::Nothing);
        assert_eq!(
            payment(Stage::Authorizing { since: T0, intent: None }, false).on_stripe(&pi(), Told::Capturable),
            Heard::NotYet
        );
    }

    #[test]
    fn a_late_duplicate_or_out_of_order_webhook_changes_nothing() {
        let pi = || intent("pi_1");
        let settled = [
            Stage::Pending,
            Stage::Authorized { intent: pi() },
            Stage::Failed,
            Stage::Voided { intent: pi() },
            Stage::Captured { intent: pi() },
            Stage::CaptureFailed { intent: pi(), reason: "expired".into() },
        ];

        for stage in settled {
            for told in [Told::Capturable, Told::Failed, Told::Canceled, Told::Succeeded] {
                assert_eq!(payment(stage.clone(), false).on_stripe(&pi(), told), Heard::Nothing, "{stage:?} {told:?}");
            }
        }
        assert_eq!(
            payment(Stage::Capturing { intent: pi() }, false).on_stripe(&pi(), Told::Succeeded),
            Heard::ResumeCapture
        );
        assert_eq!(
            payment(Stage::Capturing { intent: pi() }, false).on_stripe(&pi(), Told::Capturable),
            Heard::Nothing
        );
    }

    #[test]
    fn a_client_secret_never_shows_in_debug_output() {
        let secret = ClientSecret::new("pi_1_secret_do_not_print").unwrap();

        assert_eq!(format!("{secret:?}"), "ClientSecret(***)");
        assert!(ClientSecret::new(" ").is_none());
    }

    #[test]
    fn a_payment_intent_id_must_look_like_one() {
        assert!(PaymentIntentId::parse("pi_3MtwBwLkdIwHu7ix28a3tqPa").is_ok());
        assert!(PaymentIntentId::parse("pi_").is_err());
        assert!(PaymentIntentId::parse("ch_3MtwBwLkdIwHu7ix").is_err());
        assert!(PaymentIntentId::parse("pi_abc/../x").is_err());
    }
}
