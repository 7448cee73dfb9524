//! Refunds as data, and what may be refunded, decided without I/O.
//!
//! A refund pays back part or all of what an order's payment *captured*. Three things ask for
//! one, each naming it by a [`Source`] that is unique per order, so asking twice finds the first
//! refund instead of making a second:
//!
//! - an admin, `POST /admin/orders/{id}/refunds` with an `Idempotency-Key` ([`Source::Key`]);
//! - checkout's `ReturnReceived` for a received return ([`Source::Return`]);
//! - Stripe, for a refund made outside Ferrocart (the Dashboard), seen in `charge.refunded`
//!   ([`Source::Stripe`]).
//!
//! ## Never more than was captured
//!
//! The payment keeps two running sums in minor units ([`RefundTotals`]): `reserved`, every refund
//! not failed (pending or succeeded), and `refunded`, the succeeded ones. A refund is first
//! *reserved*: one transaction adds its amount to `reserved`, on the condition that the sum stays
//! within the captured total, and writes the refund `pending`. So two concurrent refunds can never
//! together pass the total: the second one's condition fails and it is planned again from the
//! payment as it is ([`Payment::refundable`] says how much room is left). Only then is Stripe
//! called. A refund made at Stripe by someone else has happened already: it is recorded as it is,
//! whatever the sums say.
//!
//! ## Until Stripe says how it ended
//!
//! Stripe answers a refund `succeeded`, or `pending` (some cards and banks take days; it ends
//! `succeeded`, `failed` or `canceled` later and Stripe sends `charge.refund.updated`), or refuses
//! it. `succeeded` is announced (`RefundIssued`, with the settlement in one transaction). A
//! refund Stripe holds `pending` stays pending here too, with Stripe's id ([`RefundStatus::Processing`]),
//! announced once (`RefundPending`, in the transaction that first records Stripe's id; reading
//! it back still pending writes no event), so the order shows it on its way, and is followed until it ends: by Stripe's webhook (read back from Stripe, never taken from the
//! event) and by payment's sweep, which reads it back ([`PENDING_RECHECK`] apart). One that ends
//! `failed` or `canceled`, or that Stripe refused, gives its amount back (refundable again) and
//! is announced (`RefundFailed`, with Stripe's reason), so the order shows it and is flagged.
//!
//! ```text
//!  reserve (room left)       Stripe: succeeded → settle + RefundIssued
//! ─────────────────────▶ pending ──────────────────────────────────────────▶ succeeded
//!                          │  │ Stripe: pending                                  ▲
//!                          │  └──────────────▶ processing (re_…) ── succeeded ───┘
//!                          │     + RefundPending    │
//!                          │                        │ failed / canceled
//!                          │ refused / failed       ▼
//!                          └────────────────────▶ failed + RefundFailed (amount given back)
//! ```
//!
//! ## A Stripe outage
//!
//! Stripe saves a 5xx answer under the request's idempotency key for 24 hours once the request
//! began executing, so a retry under the same key would get the same 5xx all day; a 5xx given
//! before that is not saved, and a retry under the same key runs the request. A refund keeps the
//! number of its attempt ([`Refund::attempt`], the key's suffix). A 5xx is retried under the same
//! key; only a 5xx Stripe *replays* (`Idempotent-Replayed: true`: the key is spent) moves it on,
//! with a conditional write, and the retry then lists the PaymentIntent's refunds at Stripe for
//! one carrying our refund id (Stripe may have made it before failing) and only then asks again
//! under the new key. Only the current key can make a refund: an older one replays its saved 5xx.
//! Moving on after a 5xx that was not saved would leave two live keys (a retry still holding the
//! old one runs under it), and two retries could each make a refund.

use time::{Duration, OffsetDateTime};

use domain_events::payment::RefundReason;
use kernel::{Money, OrderId, RefundId, ReturnId};

use crate::model::{Payment, PaymentIntentId, Stage};

/// What a payment has refunded, in minor units of its total's currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefundTotals {
    /// Every refund not failed: pending and succeeded. Never above the captured total for
    /// Ferrocart's own refunds (the reservation's condition).
    pub reserved: i64,
    /// The succeeded refunds.
    pub refunded: i64,
}

/// Who asked for a refund, unique per order: the same source asking again finds the same refund.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// An admin's request, by its `Idempotency-Key`.
    Key(String),
    /// A received return.
    Return(ReturnId),
    /// A refund made at Stripe outside Ferrocart, by Stripe's refund id (`re_…`).
    Stripe(String),
}

impl Source {
    /// The source as one string (`key#…`, `return#ret_…`, `stripe#re_…`): the refund's sort key.
    pub fn encode(&self) -> String {
        match self {
            Self::Key(key) => format!("key#{key}"),
            Self::Return(id) => format!("return#{id}"),
            Self::Stripe(id) => format!("stripe#{id}"),
        }
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let (kind, value) = raw.split_once('#')?;
        match kind {
            "key" => Some(Self::Key(value.to_owned())),
            "return" => value.parse().ok().map(Self::Return),
            "stripe" => Some(Self::Stripe(value.to_owned())),
            _ => None,
        }
    }
}

/// How long a refund may stay pending before the sweep carries it on: longer than an invocation
/// (the admin function's 29 s, the consumer's 40 s), so its owner has surely finished or died.
pub const REFUND_TIMEOUT: Duration = Duration::seconds(60);

/// How long after Stripe last said `pending` the sweep reads a refund back again. The webhook
/// normally tells first; this is for a webhook lost or never configured.
pub const PENDING_RECHECK: Duration = Duration::minutes(15);

/// A refund the sweep found pending, by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRefund {
    pub order_id: OrderId,
    pub source: Source,
}

impl std::fmt::Display for PendingRefund {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.order_id, self.source.encode())
    }
}

/// Where a refund stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundStatus {
    /// Reserved; Stripe may or may not have made it (a crash between Stripe's answer and our
    /// record): whoever carries it on looks at Stripe first.
    Pending,
    /// Stripe made it (`re_…`) and holds it `pending`: the money is on its way, not yet paid.
    /// Looked at again at `look_again_at` unless Stripe's webhook says first how it ended.
    Processing { stripe_refund_id: String, look_again_at: OffsetDateTime },
    /// Stripe took it (`re_…`); `refunded_total` is the order's refunded sum with it.
    Succeeded { stripe_refund_id: String, refunded_total: Money },
    /// Stripe refused it, or it ended `failed` or `canceled` there, with Stripe's code or
    /// `failure_reason`; the amount was given back.
    Failed { reason: String },
}

impl RefundStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending | Self::Processing { .. } => "pending",
            Self::Succeeded { .. } => "succeeded",
            Self::Failed { .. } => "failed",
        }
    }
}

/// `now` to the whole second, as a refund's `created_at` is stored (epoch seconds): a refund is
/// created with the time it will read back with, so a replay answers exactly what the first
/// request answered.
pub fn created_at(now: OffsetDateTime) -> OffsetDateTime {
    now.replace_nanosecond(0).unwrap_or(now)
}

/// One refund of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub refund_id: RefundId,
    pub order_id: OrderId,
    pub source: Source,
    pub amount: Money,
    pub reason: RefundReason,
    pub note: Option<String>,
    pub return_id: Option<ReturnId>,
    pub status: RefundStatus,
    pub created_at: OffsetDateTime,
    /// For an admin's request: its body in canonical JSON, which a replay must repeat.
    pub request: Option<String>,
    /// Which idempotency key Stripe is asked with (`ferrocart:{refund_id}:refund`, then `…:{n}`):
    /// moved on once Stripe replays a 5xx saved under the current key (kept there for 24 hours).
    pub attempt: u32,
}

impl Refund {
    /// Stripe's refund id, once Stripe made it.
    pub fn stripe_refund_id(&self) -> Option<&str> {
        match &self.status {
            RefundStatus::Succeeded { stripe_refund_id, .. } | RefundStatus::Processing { stripe_refund_id, .. } => {
                Some(stripe_refund_id)
            }
            RefundStatus::Failed { .. } | RefundStatus::Pending => None,
        }
    }

    /// Whether it has not ended yet (reserved, or pending at Stripe).
    pub fn is_pending(&self) -> bool {
        matches!(self.status, RefundStatus::Pending | RefundStatus::Processing { .. })
    }

    /// When the sweep should carry it on, while it is pending: [`REFUND_TIMEOUT`] after it was
    /// reserved, or when Stripe should be asked again.
    pub fn due_at(&self) -> Option<OffsetDateTime> {
        match &self.status {
            RefundStatus::Pending => Some(self.created_at + REFUND_TIMEOUT),
            RefundStatus::Processing { look_again_at, .. } => Some(*look_again_at),
            RefundStatus::Succeeded { .. } | RefundStatus::Failed { .. } => None,
        }
    }
}

/// Why a payment cannot be refunded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unrefundable {
    /// Nothing was captured (yet, or ever): an authorization is voided by cancelling the order.
    #[error("the payment is not captured ({stage}); cancel the order instead")]
    NotCaptured { stage: &'static str },
    /// More than is left of the captured total.
    #[error("{requested} is more than the {refundable} still refundable of the {captured} captured")]
    Exceeds { requested: Money, refundable: Money, captured: Money },
}

/// A refund's amount, decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub amount: Money,
    /// What was asked, when more than was left (a return's refund is cut to what is left).
    pub cut_from: Option<Money>,
}

impl Payment {
    /// The captured PaymentIntent, the captured total and what is left of it to refund.
    pub fn refundable(&self) -> Result<(PaymentIntentId, Money, Money), Unrefundable> {
        let not_captured = |stage| Unrefundable::NotCaptured { stage };
        let intent = match &self.stage {
            Stage::Captured { intent } => intent.clone(),
            Stage::Pending => return Err(not_captured("pending")),
            Stage::Authorizing { .. } | Stage::AwaitingAction { .. } => return Err(not_captured("authorizing")),
            Stage::Authorized { .. } => return Err(not_captured("authorized")),
            Stage::Capturing { .. } => return Err(not_captured("capturing")),
            Stage::Failed => return Err(not_captured("failed")),
            Stage::Voided { .. } => return Err(not_captured("voided")),
            Stage::CaptureFailed { .. } => return Err(not_captured("capture_failed")),
        };
        let total = self.order.as_ref().map(|order| order.total).ok_or(not_captured("pending"))?;
        let left = (total.amount() - self.refunds.reserved).max(0);
        let left = Money::new(left, total.currency()).map_err(|_| not_captured("pending"))?;
        Ok((intent, total, left))
    }

    /// An admin's refund of `requested` (everything left when `None`): refused when not captured,
    /// or when more than is left (nothing left counts as more).
    pub fn plan_refund(&self, requested: Option<i64>) -> Result<Planned, Unrefundable> {
        let (_, captured, left) = self.refundable()?;
        let requested = match requested {
            Some(minor) => Money::new(minor, captured.currency()).unwrap_or(captured),
            None => left,
        };
        if requested.amount() > left.amount() || left.amount() == 0 {
            return Err(Unrefundable::Exceeds { requested, refundable: left, captured });
        }
        Ok(Planned { amount: requested, cut_from: None })
    }

    /// A return's refund of `wanted`: what is left when less, `None` when nothing is.
    pub fn plan_return_refund(&self, wanted: Money) -> Result<Option<Planned>, Unrefundable> {
        let (_, _, left) = self.refundable()?;
        if left.amount() == 0 || wanted.amount() <= 0 {
            return Ok(None);
        }
        Ok(Some(if wanted.amount() > left.amount() {
            Planned { amount: left, cut_from: Some(wanted) }
        } else {
            Planned { amount: wanted, cut_from: None }
        }))
    }
}

#[cfg(test)]
mod tests {
    use kernel::Currency;

    use super::*;
    use crate::model::OrderPayment;

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::USD).unwrap()
    }

    fn captured(reserved: i64) -> Payment {
        let mut payment = Payment::new(OrderId::new());
        payment.order = Some(OrderPayment { total: usd(3300), payment_method: "pm_card_visa".into() });
        payment.stage = Stage::Captured { intent: PaymentIntentId::parse("pi_1").unwrap() };
        payment.refunds = RefundTotals { reserved, refunded: reserved };
        payment
    }

    #[test]
    fn an_admin_refunds_part_then_the_rest_and_never_more() {
        assert_eq!(captured(0).plan_refund(Some(1000)), Ok(Planned { amount: usd(1000), cut_from: None }));
        assert_eq!(captured(1000).plan_refund(None), Ok(Planned { amount: usd(2300), cut_from: None }));
        assert_eq!(
            captured(1000).plan_refund(Some(2301)),
            Err(Unrefundable::Exceeds { requested: usd(2301), refundable: usd(2300), captured: usd(3300) })
        );
        assert!(matches!(captured(3300).plan_refund(None), Err(Unrefundable::Exceeds { .. })), "nothing left");
    }

    #[test]
    fn nothing_is_refunded_before_the_capture() {
        let mut authorized = captured(0);
        authorized.stage = Stage::Authorized { intent: PaymentIntentId::parse("pi_1").unwrap() };

        assert_eq!(authorized.plan_refund(None), Err(Unrefundable::NotCaptured { stage: "authorized" }));
        assert_eq!(
            Payment::new(OrderId::new()).plan_return_refund(usd(1)),
            Err(Unrefundable::NotCaptured { stage: "pending" })
        );
    }

    #[test]
    fn a_returns_refund_is_cut_to_what_is_left() {
        assert_eq!(captured(0).plan_return_refund(usd(1200)), Ok(Some(Planned { amount: usd(1200), cut_from: None })));
        assert_eq!(
            captured(3000).plan_return_refund(usd(1200)),
            Ok(Some(Planned { amount: usd(300), cut_from: Some(usd(1200)) }))
        );
        assert_eq!(captured(3300).plan_return_refund(usd(1200)), Ok(None));
    }

    #[test]
    fn a_source_reads_back_as_written() {
        let sources = [Source::Key("k-1#x".into()), Source::Return(ReturnId::new()), Source::Stripe("re_123".into())];
        for source in sources {
            assert_eq!(Source::decode(&source.encode()), Some(source.clone()));
        }
        assert_eq!(Source::decode("nope"), None);
    }
}
