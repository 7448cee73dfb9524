//! In-memory doubles of payment's two ports, for unit tests here and in other crates (feature
//! `test-util`): [`FakeStore`] keeps payments in a map and decides every write with the model's
//! own functions ([`Payment::record`], [`Payment::apply`]), so its conditions are the ones the
//! DynamoDB adapter writes as condition expressions; [`FakeStripe`] is Stripe test mode with
//! faults to inject and things to happen while a call is in flight.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;
use time::macros::datetime;

use domain_events::checkout::OrderPlaced;
use domain_events::fulfillment::ShipmentDispatched;
use domain_events::payment::{PaymentAuthorized, PaymentCaptureFailed, PaymentCaptured, PaymentFailed};
use domain_events::{Envelope, Event};
use kernel::page::Page;
use kernel::{Currency, Money, OrderId, ShipmentId};

use crate::authorize::{on_order_placed, on_stock_reserved};
use crate::error::PaymentError;
use crate::model::{
    CaptureSettlement, Change, ClientSecret, Fact, OrderPayment, Payment, PaymentIntentId, Settlement, Stage,
};
use crate::ports::StripeDispute;
use crate::ports::{
    Claim, Decline, GatewayError, Intent, IntentStatus, PaymentGateway, PaymentStore, Recorded, RefundGateway,
    RefundOutcome, RefundStore, Reserved, StoreError, StripeRefund, Write,
};
use crate::refund::{PendingRefund, Refund, RefundStatus, Source};

/// A card [`FakeStripe`] authorizes.
pub const VISA: &str = "pm_card_visa";
/// A card [`FakeStripe`] declines (`card_declined`, `generic_decline`).
pub const DECLINED: &str = "pm_card_chargeDeclined";
/// A card that needs 3-D Secure.
pub const NEEDS_3DS: &str = "pm_card_authenticationRequired";
/// A payment method [`FakeStripe`] does not know.
pub const UNKNOWN_CARD: &str = "pm_card_bogus";
/// The time the tests' orders are placed (whole seconds, as the table stores claim times).
pub const T0: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test poisons nothing another test needs: the data is still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Takes one of the conflicts a test asked for: true when this write is to lose.
fn lose_one(conflicts: &Mutex<u32>) -> bool {
    let mut left = lock(conflicts);
    let lose = *left > 0;
    *left = left.saturating_sub(1);
    lose
}

type Payments = Arc<Mutex<HashMap<OrderId, Payment>>>;
/// A write of another invocation, landing on the payment right after one of ours.
type Landing = Box<dyn FnOnce(&mut Payment) + Send>;
/// A write of another invocation, landing on the store right before one of ours.
type StoreLanding = Box<dyn FnOnce(&FakeStore) + Send>;
/// Something that happens elsewhere while Stripe is busy with a call.
type Meanwhile = Box<dyn FnOnce() + Send>;

/// The store, in memory. Facts and stage changes are the model's ([`Payment::record`],
/// [`Payment::apply`]); a write on a payment that does not exist fails as DynamoDB's would.
#[derive(Default)]
pub struct FakeStore {
    payments: Payments,
    events: Mutex<Vec<Event>>,
    /// Runs on the payment right after the next settle wrote it: another invocation's write
    /// landing between two of ours.
    after_settle: Mutex<Option<Landing>>,
    refunds: Mutex<Refunds>,
    disputes: Mutex<Vec<(OrderId, String)>>,
    /// Disputes whose closing was recorded.
    closed_disputes: Mutex<Vec<(OrderId, String)>>,
    /// Runs on the payment right before the next refund reservation is decided: another
    /// refund's reservation landing between our read and our write.
    before_reserve: Mutex<Option<Landing>>,
    /// How many of the next refund failures lose to a concurrent transaction on the same items
    /// (DynamoDB's `TransactionConflict`): `Moved`, nothing written.
    fail_conflicts: Mutex<u32>,
    /// The same for the next writes that record a refund pending at Stripe.
    follow_conflicts: Mutex<u32>,
    /// Runs on the store right before the next refund failure is decided: another invocation's
    /// write (a settle) landing between our read of the refund and our fail.
    before_fail: Mutex<Option<StoreLanding>>,
}

impl fmt::Debug for FakeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeStore")
            .field("payments", &self.payments)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl FakeStore {
    /// What `record_cancelled` writes, as a closure another call can run halfway: an
    /// `OrderCancelled` delivered at that moment.
    pub fn cancellation(&self, order_id: OrderId) -> impl FnOnce() + Send + 'static {
        let payments = Arc::clone(&self.payments);
        move || {
            lock(&payments).entry(order_id).or_insert_with(|| Payment::new(order_id)).record(&Fact::Cancelled);
        }
    }

    /// Runs `landing` on the payment right after the next settle wrote it.
    pub fn after_next_settle(&self, landing: impl FnOnce(&mut Payment) + Send + 'static) {
        *lock(&self.after_settle) = Some(Box::new(landing));
    }

    /// Runs `landing` on the payment right before the next refund reservation is decided.
    pub fn before_next_reserve(&self, landing: impl FnOnce(&mut Payment) + Send + 'static) {
        *lock(&self.before_reserve) = Some(Box::new(landing));
    }

    /// Runs `landing` on the store right before the next refund failure is decided.
    pub fn before_next_fail(&self, landing: impl FnOnce(&FakeStore) + Send + 'static) {
        *lock(&self.before_fail) = Some(Box::new(landing));
    }

    /// Every refund stored for the order, oldest first.
    pub fn stored_refunds(&self, order_id: OrderId) -> Vec<Refund> {
        let mut refunds: Vec<Refund> =
            lock(&self.refunds).values().filter(|refund| refund.order_id == order_id).cloned().collect();
        refunds.sort_by_key(|refund| (refund.created_at, refund.refund_id));
        refunds
    }

    /// The payment as stored; panics if nothing was recorded for the order.
    pub fn payment(&self, order_id: OrderId) -> Payment {
        lock(&self.payments)[&order_id].clone()
    }

    /// Puts the payment in `stage` as another invocation's write would have.
    pub fn set_stage(&self, order_id: OrderId, stage: Stage) {
        self.record(order_id, |payment| payment.stage = stage);
    }

    /// The events written to the outbox, in order.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.events).clone()
    }

    /// Changes the payment (created empty if needed) without any condition: arranges a test.
    pub fn record(&self, order_id: OrderId, change: impl FnOnce(&mut Payment)) -> Payment {
        let mut payments = lock(&self.payments);
        let payment = payments.entry(order_id).or_insert_with(|| Payment::new(order_id));
        change(payment);
        payment.clone()
    }

    fn fact(&self, order_id: OrderId, fact: &Fact) -> Payment {
        self.record(order_id, |payment| payment.record(fact))
    }

    /// A conditional write: `change` if [`Payment::apply`] takes it, then `landing`.
    fn change(&self, order_id: OrderId, change: &Change, landing: Option<Landing>) -> Result<Claim, StoreError> {
        let mut payments = lock(&self.payments);
        let payment = payments.get_mut(&order_id).ok_or_else(|| StoreError::Corrupt {
            order_id,
            detail: "a conditional update found no payment".to_owned(),
        })?;
        if payment.apply(change).is_err() {
            return Ok(Claim::Lost(payment.clone()));
        }
        if let Some(landing) = landing {
            landing(payment);
        }
        Ok(Claim::Won(payment.clone()))
    }

    /// A stage change with its event, in one transaction.
    fn transact(&self, order_id: OrderId, change: &Change, event: &Envelope) -> Result<Write, StoreError> {
        let landing = lock(&self.after_settle).take();
        Ok(match self.change(order_id, change, landing)? {
            Claim::Won(_) => {
                lock(&self.events).push(event.event.clone());
                Write::Done
            }
            Claim::Lost(current) => Write::Refused(current),
        })
    }
}

/// How many payments a page of [`FakeStore::stalled`] lists: few, so tests walk pages.
const STALLED_PAGE: usize = 2;

impl PaymentStore for FakeStore {
    /// The last listed claim's time and order, as the index's sort key orders them.
    type Cursor = (OffsetDateTime, OrderId);

    async fn get(&self, order_id: OrderId) -> Result<Option<Payment>, StoreError> {
        Ok(lock(&self.payments).get(&order_id).cloned())
    }

    async fn stalled(
        &self,
        claimed_by: OffsetDateTime,
        cursor: Option<Self::Cursor>,
    ) -> Result<Page<OrderId, Self::Cursor>, StoreError> {
        // The index holds a payment exactly while it is authorizing, keyed by its claim time
        // (whole seconds, as stored) and then its order.
        let mut listed: Vec<(OffsetDateTime, OrderId)> = lock(&self.payments)
            .values()
            .filter_map(|p| match p.stage {
                Stage::Authorizing { since, .. } => Some((since.replace_nanosecond(0).unwrap_or(since), p.order_id)),
                _ => None,
            })
            .filter(|(since, _)| *since <= claimed_by)
            .filter(|key| cursor.is_none_or(|after| *key > after))
            .collect();
        listed.sort();
        let next = (listed.len() > STALLED_PAGE).then(|| listed[STALLED_PAGE - 1]);
        let items = listed.into_iter().take(STALLED_PAGE).map(|(_, order_id)| order_id).collect();
        Ok(Page { items, next })
    }

    async fn record_order(&self, order_id: OrderId, order: &OrderPayment) -> Result<Payment, StoreError> {
        Ok(self.fact(order_id, &Fact::OrderPlaced(order.clone())))
    }

    async fn record_stock_reserved(&self, order_id: OrderId) -> Result<Payment, StoreError> {
        Ok(self.fact(order_id, &Fact::StockReserved))
    }

    async fn record_cancelled(&self, order_id: OrderId) -> Result<Payment, StoreError> {
        Ok(self.fact(order_id, &Fact::Cancelled))
    }

    async fn claim(&self, order_id: OrderId, now: OffsetDateTime) -> Result<Claim, StoreError> {
        self.change(order_id, &Change::Claim { at: now }, None)
    }

    async fn reclaim(
        &self,
        order_id: OrderId,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Claim, StoreError> {
        self.change(order_id, &Change::Reclaim { since, at: now }, None)
    }

    async fn record_intent(&self, order_id: OrderId, intent: &PaymentIntentId) -> Result<Claim, StoreError> {
        self.change(order_id, &Change::RecordIntent(intent.clone()), None)
    }

    async fn settle(&self, order_id: OrderId, settlement: &Settlement, event: &Envelope) -> Result<Write, StoreError> {
        self.transact(order_id, &Change::Settle(settlement.clone()), event)
    }

    async fn void(&self, order_id: OrderId, intent: &PaymentIntentId, event: &Envelope) -> Result<Write, StoreError> {
        self.transact(order_id, &Change::Void(intent.clone()), event)
    }

    async fn start_capture(&self, order_id: OrderId, intent: &PaymentIntentId) -> Result<Claim, StoreError> {
        self.change(order_id, &Change::StartCapture(intent.clone()), None)
    }

    async fn settle_capture(
        &self,
        order_id: OrderId,
        settlement: &CaptureSettlement,
        event: &Envelope,
    ) -> Result<Write, StoreError> {
        self.transact(order_id, &Change::SettleCapture(settlement.clone()), event)
    }
}

/// A Stripe call, to make one misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Create,
    Retrieve,
    Confirm,
    Capture,
    Refund,
    /// Listing a PaymentIntent's refunds.
    ListRefunds,
}

/// How a call misbehaves once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Stripe cannot be reached: nothing happens.
    Unreachable,
    /// Stripe does the work but the answer never arrives (a timeout, or the Lambda dying).
    AnswerLost,
    /// Captures only: Stripe refuses the capture with this code and, as it does when an
    /// authorization lapsed (`charge_expired_for_capture`), cancels the PaymentIntent.
    /// Refunds: Stripe refuses the refund with this code.
    Refused(&'static str),
    /// Refunds only: another request with the same idempotency key is still running at Stripe
    /// (409 `idempotency_key_in_use`); nothing happens.
    KeyInUse,
    /// Refunds only: Stripe answers 500, having made the refund first or not (`made`), and
    /// saves that answer under the idempotency key: the same key gets it again (for 24 h),
    /// replayed.
    ServerError { made: bool },
    /// Refunds only: Stripe answers 500 before the request began executing: nothing is made
    /// and nothing saved, so the same key runs the request next time.
    ServerErrorUnsaved,
}

#[derive(Debug)]
struct FakeIntent {
    order_id: OrderId,
    payment_method: String,
    status: IntentStatus,
    amount: Money,
}

/// Stripe test mode, in memory: one PaymentIntent per order (`pi_{order ulid}`), as the
/// adapter's idempotency keys make it. [`VISA`] is authorized, [`DECLINED`] declined,
/// [`NEEDS_3DS`] requires action, [`UNKNOWN_CARD`] refused.
#[derive(Default)]
pub struct FakeStripe {
    intents: Mutex<HashMap<PaymentIntentId, FakeIntent>>,
    confirmations: Mutex<u32>,
    captures: Mutex<u32>,
    faults: Mutex<Vec<(Call, Fault)>>,
    /// Disputes opened at Stripe.
    disputes: Mutex<Vec<StripeDispute>>,
    /// Refunds made, by PaymentIntent: each with the idempotency key it was made with, `None`
    /// for one made in the Dashboard.
    refunds: Mutex<Vec<(PaymentIntentId, Option<String>, StripeRefund)>>,
    /// Idempotency keys whose saved answer is a 5xx.
    failed_keys: Mutex<Vec<String>>,
    /// Run once by the call, after Stripe did its work and before it answers: something that
    /// happens elsewhere while Stripe is busy.
    meanwhile: Mutex<Vec<(Call, Meanwhile)>>,
    /// The status new refunds start in (`succeeded` when unset), as a test card sets it.
    refunds_start: Mutex<Option<&'static str>>,
}

impl fmt::Debug for FakeStripe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeStripe")
            .field("intents", &self.intents)
            .field("confirmations", &self.confirmations)
            .field("captures", &self.captures)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl FakeStripe {
    /// Runs `happening` once, during the next `call`, after Stripe did its work and before it
    /// answers.
    pub fn meanwhile(&self, call: Call, happening: impl FnOnce() + Send + 'static) {
        lock(&self.meanwhile).push((call, Box::new(happening)));
    }

    fn run_meanwhile(&self, call: Call) {
        let happening = {
            let mut hooks = lock(&self.meanwhile);
            hooks.iter().position(|(c, _)| *c == call).map(|index| hooks.remove(index).1)
        };
        if let Some(happening) = happening {
            happening();
        }
    }

    /// Makes the next `call` misbehave as `fault` says.
    pub fn fail_once(&self, call: Call, fault: Fault) {
        lock(&self.faults).push((call, fault));
    }

    fn fault(&self, call: Call) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let index = faults.iter().position(|(c, _)| *c == call)?;
        Some(faults.remove(index).1)
    }

    /// How many PaymentIntents were created.
    pub fn intent_count(&self) -> usize {
        lock(&self.intents).len()
    }

    /// How many confirmations went through (each places a hold).
    pub fn confirmations(&self) -> u32 {
        *lock(&self.confirmations)
    }

    /// How many captures went through (each collects the money).
    pub fn captures(&self) -> u32 {
        *lock(&self.captures)
    }

    /// The PaymentIntent's status; panics for one never created.
    pub fn status(&self, id: &PaymentIntentId) -> IntentStatus {
        lock(&self.intents)[id].status.clone()
    }

    /// Sets the PaymentIntent's status, as someone acting in the Stripe dashboard would.
    pub fn set_status(&self, id: &PaymentIntentId, status: IntentStatus) {
        if let Some(intent) = lock(&self.intents).get_mut(id) {
            intent.status = status;
        }
    }

    /// The customer's 3-D Secure challenge on a PaymentIntent awaiting it: passed, it is
    /// authorized (`requires_capture`); failed, it needs another payment method, with Stripe's
    /// `payment_intent_authentication_failure`.
    pub fn authenticate(&self, id: &PaymentIntentId, success: bool) {
        self.set_status(
            id,
            if success {
                IntentStatus::RequiresCapture
            } else {
                IntentStatus::RequiresPaymentMethod(Some(Decline {
                    code: "payment_intent_authentication_failure".into(),
                    decline_code: None,
                }))
            },
        );
    }

    /// The one PaymentIntent created; panics unless exactly one was.
    pub fn only_intent(&self) -> PaymentIntentId {
        let intents = lock(&self.intents);
        let mut ids = intents.keys();
        match (ids.next(), ids.next()) {
            (Some(id), None) => id.clone(),
            _ => panic!("expected exactly one PaymentIntent, found {}", intents.len()),
        }
    }

    fn missing(id: &PaymentIntentId) -> GatewayError {
        GatewayError::Refused {
            code: "resource_missing".into(),
            param: Some("intent".into()),
            message: format!("No such payment_intent: '{id}'"),
        }
    }
}

impl PaymentGateway for FakeStripe {
    async fn create_intent(&self, order_id: OrderId, order: &OrderPayment) -> Result<Intent, GatewayError> {
        let fault = self.fault(Call::Create);
        if fault == Some(Fault::Unreachable) {
            return Err(GatewayError::Unavailable("connection refused".into()));
        }
        if order.payment_method == UNKNOWN_CARD {
            return Err(GatewayError::Refused {
                code: "resource_missing".into(),
                param: Some("payment_method".into()),
                message: "No such PaymentMethod".into(),
            });
        }
        let id = PaymentIntentId::parse(&format!("pi_{}", order_id.ulid()))
            .map_err(|error| GatewayError::Misconfigured(error.to_string()))?;
        // The same idempotency key (`ferrocart:{order_id}:pi-create`) gives the same intent.
        lock(&self.intents).entry(id.clone()).or_insert_with(|| FakeIntent {
            order_id,
            payment_method: order.payment_method.clone(),
            status: IntentStatus::RequiresConfirmation,
            amount: order.total,
        });
        self.run_meanwhile(Call::Create);
        if fault == Some(Fault::AnswerLost) {
            return Err(GatewayError::Unavailable("timed out".into()));
        }
        Ok(Intent { id, status: IntentStatus::RequiresConfirmation })
    }

    async fn retrieve_intent(&self, id: &PaymentIntentId) -> Result<Intent, GatewayError> {
        if self.fault(Call::Retrieve).is_some() {
            return Err(GatewayError::Unavailable("connection refused".into()));
        }
        let status =
            lock(&self.intents).get(id).map(|intent| intent.status.clone()).ok_or_else(|| Self::missing(id))?;
        Ok(Intent { id: id.clone(), status })
    }

    async fn confirm_intent(&self, order_id: OrderId, id: &PaymentIntentId) -> Result<Intent, GatewayError> {
        let fault = self.fault(Call::Confirm);
        if fault == Some(Fault::Unreachable) {
            return Err(GatewayError::Unavailable("connection refused".into()));
        }
        let status = {
            let mut intents = lock(&self.intents);
            let intent =
                intents.get_mut(id).filter(|intent| intent.order_id == order_id).ok_or_else(|| Self::missing(id))?;
            if intent.status != IntentStatus::RequiresConfirmation {
                return Err(GatewayError::Conflict("payment_intent_unexpected_state".into()));
            }
            *lock(&self.confirmations) += 1;
            intent.status = match intent.payment_method.as_str() {
                DECLINED => IntentStatus::RequiresPaymentMethod(Some(Decline {
                    code: "card_declined".into(),
                    decline_code: Some("generic_decline".into()),
                })),
                NEEDS_3DS => IntentStatus::RequiresAction(ClientSecret::new(format!("{id}_secret_test"))),
                _ => IntentStatus::RequiresCapture,
            };
            intent.status.clone()
        };
        self.run_meanwhile(Call::Confirm);
        if fault == Some(Fault::AnswerLost) {
            return Err(GatewayError::Unavailable("timed out".into()));
        }
        match status {
            IntentStatus::RequiresPaymentMethod(Some(decline)) => Err(GatewayError::Declined(decline)),
            status => Ok(Intent { id: id.clone(), status }),
        }
    }

    async fn cancel_intent(&self, _order_id: OrderId, id: &PaymentIntentId) -> Result<Intent, GatewayError> {
        let mut intents = lock(&self.intents);
        let intent = intents.get_mut(id).ok_or_else(|| Self::missing(id))?;
        if matches!(intent.status, IntentStatus::Canceled | IntentStatus::Succeeded) {
            return Err(GatewayError::Conflict("payment_intent_unexpected_state".into()));
        }
        intent.status = IntentStatus::Canceled;
        Ok(Intent { id: id.clone(), status: IntentStatus::Canceled })
    }

    async fn capture_intent(&self, order_id: OrderId, id: &PaymentIntentId) -> Result<Intent, GatewayError> {
        let fault = self.fault(Call::Capture);
        if fault == Some(Fault::Unreachable) {
            return Err(GatewayError::Unavailable("connection refused".into()));
        }
        {
            let mut intents = lock(&self.intents);
            let intent =
                intents.get_mut(id).filter(|intent| intent.order_id == order_id).ok_or_else(|| Self::missing(id))?;
            if let Some(Fault::Refused(code)) = fault {
                intent.status = IntentStatus::Canceled;
                return Err(GatewayError::Refused {
                    code: code.into(),
                    param: None,
                    message: "The charge has expired and can no longer be captured.".into(),
                });
            }
            // A PaymentIntent is captured once (no multicapture).
            if intent.status != IntentStatus::RequiresCapture {
                return Err(GatewayError::Conflict("payment_intent_unexpected_state".into()));
            }
            *lock(&self.captures) += 1;
            intent.status = IntentStatus::Succeeded;
        }
        self.run_meanwhile(Call::Capture);
        if fault == Some(Fault::AnswerLost) {
            return Err(GatewayError::Unavailable("timed out".into()));
        }
        Ok(Intent { id: id.clone(), status: IntentStatus::Succeeded })
    }
}

/// `OrderPlaced` for a 25.00 USD order paid with `payment_method`.
pub fn placed(order_id: OrderId, payment_method: &str) -> OrderPlaced {
    OrderPlaced {
        order_id,
        customer: "user-1".into(),
        email: "shopper@example.com".into(),
        lines: Vec::new(),
        total: Money::new(2500, Currency::USD).unwrap_or_else(|_| Money::zero(Currency::USD)),
        payment_method: payment_method.into(),
        cart: None,
    }
}

/// Delivers OrderPlaced then StockReserved at [`T0`], as SQS would in the happy case.
pub async fn place_and_reserve(store: &FakeStore, stripe: &FakeStripe, order_id: OrderId, payment_method: &str) {
    let placed = on_order_placed(store, stripe, &placed(order_id, payment_method), T0).await;
    let reserved = on_stock_reserved(store, stripe, order_id, T0).await;
    assert!(placed.is_ok() && reserved.is_ok(), "placing: {placed:?}, reserving: {reserved:?}");
}

/// An authorization whose invocation died after recording its PaymentIntent (step 2), its
/// confirmation failing with `fault`, and whose message never comes back (dead-lettered).
pub async fn stalled_after_step_2(store: &FakeStore, stripe: &FakeStripe, order_id: OrderId, fault: Fault) {
    let placed = on_order_placed(store, stripe, &placed(order_id, VISA), T0).await;
    assert!(placed.is_ok(), "placing: {placed:?}");
    stripe.fail_once(Call::Confirm, fault);
    assert!(is_transient(on_stock_reserved(store, stripe, order_id, T0).await));
}

/// The `PaymentAuthorized` of a [`placed`] order.
pub fn authorized(order_id: OrderId, intent: &PaymentIntentId) -> Event {
    Event::PaymentAuthorized(PaymentAuthorized {
        order_id,
        payment_intent_id: intent.to_string(),
        amount: placed(order_id, VISA).total,
    })
}

/// The first `ShipmentDispatched` of a [`placed`] order (its only shipment, of `count`).
pub fn dispatched(order_id: OrderId, count: u32) -> ShipmentDispatched {
    ShipmentDispatched {
        order_id,
        shipment_id: ShipmentId::new(),
        shipment_count: count,
        warehouse: "main".into(),
        carrier: "ups".into(),
        tracking_number: "1Z999AA10123456784".into(),
        tracking_url: None,
        dispatched_at: "2026-11-24T09:00:00Z".into(),
    }
}

/// The `PaymentCaptured` of a [`placed`] order.
pub fn captured(order_id: OrderId, intent: &PaymentIntentId) -> Event {
    Event::PaymentCaptured(PaymentCaptured {
        order_id,
        payment_intent_id: intent.to_string(),
        amount: placed(order_id, VISA).total,
    })
}

/// A `PaymentCaptureFailed`.
pub fn capture_failed(order_id: OrderId, intent: &PaymentIntentId, reason: &str) -> Event {
    Event::PaymentCaptureFailed(PaymentCaptureFailed {
        order_id,
        payment_intent_id: intent.to_string(),
        reason: reason.into(),
    })
}

/// A `PaymentFailed`.
pub fn failed(order_id: OrderId, reason: &str, decline_code: Option<&str>) -> Event {
    Event::PaymentFailed(PaymentFailed {
        order_id,
        reason: reason.into(),
        decline_code: decline_code.map(str::to_owned),
    })
}

/// Whether a use case failed in a way worth retrying.
pub fn is_transient(result: Result<(), PaymentError>) -> bool {
    matches!(result, Err(error) if error.is_transient())
}

/// The webhook inbox in memory: a receipt per Stripe event id, claimed, handled or released as
/// the DynamoDB one is.
#[derive(Debug, Default)]
pub struct FakeWebhookInbox {
    receipts: Mutex<HashMap<crate::ports::StripeEventId, Option<OffsetDateTime>>>,
    /// The clock a lease is compared with: the handler's `now` in tests that fix it (`at`),
    /// the real time otherwise, as DynamoDB's condition uses.
    now: Option<OffsetDateTime>,
}

impl FakeWebhookInbox {
    /// An inbox whose leases lapse by `now`, the time the tests give the handler.
    pub fn at(now: OffsetDateTime) -> Self {
        Self { receipts: Mutex::default(), now: Some(now) }
    }
}

impl crate::ports::WebhookInbox for FakeWebhookInbox {
    async fn claim_notice(
        &self,
        event: &crate::ports::StripeEventId,
        lease_until: OffsetDateTime,
    ) -> Result<kernel::inbox::Claim, StoreError> {
        let mut receipts = lock(&self.receipts);
        Ok(match receipts.get(event) {
            // `None`: handled.
            Some(None) => kernel::inbox::Claim::Handled,
            Some(Some(lease)) if *lease >= self.now.unwrap_or_else(OffsetDateTime::now_utc) => {
                kernel::inbox::Claim::InProgress
            }
            _ => {
                receipts.insert(event.clone(), Some(lease_until));
                kernel::inbox::Claim::Claimed
            }
        })
    }

    async fn notice_handled(&self, event: &crate::ports::StripeEventId) -> Result<(), StoreError> {
        if let Some(receipt) = lock(&self.receipts).get_mut(event) {
            *receipt = None;
        }
        Ok(())
    }

    async fn release_notice(
        &self,
        event: &crate::ports::StripeEventId,
        lease_until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut receipts = lock(&self.receipts);
        if receipts.get(event) == Some(&Some(lease_until)) {
            receipts.remove(event);
        }
        Ok(())
    }
}

impl FakeStore {
    /// The next `times` refund failures lose to a concurrent transaction: nothing is written.
    pub fn conflict_next_fails(&self, times: u32) {
        *lock(&self.fail_conflicts) = times;
    }

    /// The next `times` writes that record a refund pending at Stripe lose to a concurrent
    /// transaction: nothing is written, nothing announced.
    pub fn conflict_next_follows(&self, times: u32) {
        *lock(&self.follow_conflicts) = times;
    }

    fn refund_conflict(&self, payment: &Payment) -> bool {
        lock(&self.payments)
            .get(&payment.order_id)
            .is_none_or(|stored| stored.refunds.refunded != payment.refunds.refunded)
    }
}

/// The refunds in memory, by order and source.
type Refunds = HashMap<(OrderId, Source), Refund>;

/// `None` while the stored refund is pending (the condition of a settle or a fail); else what
/// the write answers: the refund as it is.
fn still_pending(refunds: &Refunds, key: &(OrderId, Source)) -> Result<Option<Recorded>, StoreError> {
    match refunds.get(key) {
        Some(stored) if stored.is_pending() => Ok(None),
        Some(stored) => Ok(Some(Recorded::Already(Box::new(stored.clone())))),
        None => Err(StoreError::Corrupt { order_id: key.0, detail: "no such refund".into() }),
    }
}

impl RefundStore for FakeStore {
    /// The last listed refund's due time, order and source.
    type RefundCursor = (OffsetDateTime, OrderId, String);

    async fn refund(&self, order_id: OrderId, source: &Source) -> Result<Option<Refund>, StoreError> {
        Ok(lock(&self.refunds).get(&(order_id, source.clone())).cloned())
    }

    async fn refunds(&self, order_id: OrderId) -> Result<Vec<Refund>, StoreError> {
        Ok(self.stored_refunds(order_id))
    }

    async fn due_refunds(
        &self,
        now: OffsetDateTime,
        cursor: Option<Self::RefundCursor>,
    ) -> Result<Page<PendingRefund, Self::RefundCursor>, StoreError> {
        let mut listed: Vec<(OffsetDateTime, OrderId, String)> = lock(&self.refunds)
            .values()
            .filter_map(|refund| Some((refund.due_at().filter(|due| *due <= now)?, refund)))
            .map(|(due, refund)| (due, refund.order_id, refund.source.encode()))
            .filter(|key| cursor.as_ref().is_none_or(|after| key > after))
            .collect();
        listed.sort();
        let next = (listed.len() > STALLED_PAGE).then(|| listed[STALLED_PAGE - 1].clone());
        let items = listed
            .into_iter()
            .take(STALLED_PAGE)
            .filter_map(|(_, order_id, source)| Some(PendingRefund { order_id, source: Source::decode(&source)? }))
            .collect();
        Ok(Page { items, next })
    }

    async fn reserve_refund(&self, payment: &Payment, refund: &Refund) -> Result<Reserved, StoreError> {
        let landing = lock(&self.before_reserve).take();
        let mut payments = lock(&self.payments);
        let stored = payments.get_mut(&payment.order_id).ok_or_else(|| StoreError::Corrupt {
            order_id: payment.order_id,
            detail: "a refund of no payment".into(),
        })?;
        if let Some(landing) = landing {
            landing(stored);
        }
        let mut refunds = lock(&self.refunds);
        let key = (refund.order_id, refund.source.clone());
        if let Some(existing) = refunds.get(&key) {
            return Ok(Reserved::Exists(Box::new(existing.clone())));
        }
        let total = stored.order.as_ref().map_or(0, |order| order.total.amount());
        let captured = matches!(stored.stage, Stage::Captured { .. });
        if !captured || stored.refunds.reserved + refund.amount.amount() > total {
            return Ok(Reserved::Moved);
        }
        stored.refunds.reserved += refund.amount.amount();
        refunds.insert(key, refund.clone());
        Ok(Reserved::Done)
    }

    async fn settle_refund(
        &self,
        payment: &Payment,
        refund: &Refund,
        event: &Envelope,
    ) -> Result<Recorded, StoreError> {
        let key = (refund.order_id, refund.source.clone());
        let mut refunds = lock(&self.refunds);
        if let Some(done) = still_pending(&refunds, &key)? {
            return Ok(done);
        }
        if self.refund_conflict(payment) {
            return Ok(Recorded::Moved);
        }
        if let RefundStatus::Succeeded { refunded_total, .. } = &refund.status {
            self.record(refund.order_id, |stored| stored.refunds.refunded = refunded_total.amount());
        }
        refunds.insert(key, refund.clone());
        lock(&self.events).push(event.event.clone());
        Ok(Recorded::Done)
    }

    async fn fail_refund(&self, refund: &Refund, event: &Envelope) -> Result<Recorded, StoreError> {
        let landing = lock(&self.before_fail).take();
        if let Some(landing) = landing {
            landing(self);
        }
        let key = (refund.order_id, refund.source.clone());
        let mut refunds = lock(&self.refunds);
        if let Some(done) = still_pending(&refunds, &key)? {
            return Ok(done);
        }
        if lose_one(&self.fail_conflicts) {
            return Ok(Recorded::Moved);
        }
        self.record(refund.order_id, |stored| stored.refunds.reserved -= refund.amount.amount());
        refunds.insert(key, refund.clone());
        lock(&self.events).push(event.event.clone());
        Ok(Recorded::Done)
    }

    async fn fail_succeeded_refund(
        &self,
        refund: &Refund,
        stripe_refund_id: &str,
        event: &Envelope,
    ) -> Result<Recorded, StoreError> {
        let key = (refund.order_id, refund.source.clone());
        let mut refunds = lock(&self.refunds);
        let stored =
            refunds.get(&key).ok_or(StoreError::Corrupt { order_id: key.0, detail: "no such refund".into() })?;
        let succeeded_as =
            matches!(&stored.status, RefundStatus::Succeeded { stripe_refund_id: id, .. } if id == stripe_refund_id);
        if !succeeded_as {
            return Ok(Recorded::Already(Box::new(stored.clone())));
        }
        let amount = refund.amount.amount();
        self.record(refund.order_id, |stored| {
            stored.refunds.refunded -= amount;
            stored.refunds.reserved -= amount;
        });
        refunds.insert(key, refund.clone());
        lock(&self.events).push(event.event.clone());
        Ok(Recorded::Done)
    }

    async fn follow_refund(&self, refund: &Refund, first: Option<&Envelope>) -> Result<Recorded, StoreError> {
        let key = (refund.order_id, refund.source.clone());
        let mut refunds = lock(&self.refunds);
        if let Some(done) = still_pending(&refunds, &key)? {
            return Ok(done);
        }
        // The first record needs no Stripe id stored; a read-back needs this one.
        let stored = refunds.get(&key).and_then(Refund::stripe_refund_id);
        let expected = if first.is_some() { None } else { refund.stripe_refund_id() };
        if stored != expected {
            return Ok(Recorded::Already(Box::new(refunds[&key].clone())));
        }
        if lose_one(&self.follow_conflicts) {
            return Ok(Recorded::Moved);
        }
        let attempt = refunds[&key].attempt;
        refunds.insert(key, Refund { attempt, ..refund.clone() });
        if let Some(event) = first {
            lock(&self.events).push(event.event.clone());
        }
        Ok(Recorded::Done)
    }

    async fn next_attempt(&self, refund: &Refund) -> Result<bool, StoreError> {
        let key = (refund.order_id, refund.source.clone());
        let mut refunds = lock(&self.refunds);
        match refunds.get_mut(&key) {
            Some(stored) if stored.is_pending() && stored.attempt == refund.attempt => {
                stored.attempt += 1;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn record_stripe_refund(
        &self,
        payment: &Payment,
        refund: &Refund,
        event: &Envelope,
    ) -> Result<Recorded, StoreError> {
        let key = (refund.order_id, refund.source.clone());
        let mut refunds = lock(&self.refunds);
        if let Some(stored) = refunds.get(&key) {
            return Ok(Recorded::Already(Box::new(stored.clone())));
        }
        if self.refund_conflict(payment) {
            return Ok(Recorded::Moved);
        }
        if let RefundStatus::Succeeded { refunded_total, .. } = &refund.status {
            self.record(refund.order_id, |stored| {
                stored.refunds.refunded = refunded_total.amount();
                stored.refunds.reserved += refund.amount.amount();
            });
        }
        refunds.insert(key, refund.clone());
        lock(&self.events).push(event.event.clone());
        Ok(Recorded::Done)
    }

    async fn record_dispute(&self, order_id: OrderId, dispute_id: &str, event: &Envelope) -> Result<bool, StoreError> {
        let mut disputes = lock(&self.disputes);
        if disputes.iter().any(|(order, id)| *order == order_id && id == dispute_id) {
            return Ok(false);
        }
        disputes.push((order_id, dispute_id.to_owned()));
        lock(&self.events).push(event.event.clone());
        Ok(true)
    }

    async fn record_dispute_closed(
        &self,
        order_id: OrderId,
        dispute_id: &str,
        event: &Envelope,
    ) -> Result<bool, StoreError> {
        let mut closed = lock(&self.closed_disputes);
        if closed.iter().any(|(order, id)| *order == order_id && id == dispute_id) {
            return Ok(false);
        }
        closed.push((order_id, dispute_id.to_owned()));
        lock(&self.events).push(event.event.clone());
        Ok(true)
    }
}

impl FakeStripe {
    /// New refunds start `pending` at Stripe (Stripe's `pm_card_pendingRefund`).
    pub fn refunds_start_pending(&self) {
        *lock(&self.refunds_start) = Some("pending");
    }

    /// The refunds Stripe made of the PaymentIntent, oldest first.
    pub fn refunds_of(&self, intent: &PaymentIntentId) -> Vec<StripeRefund> {
        lock(&self.refunds).iter().filter(|(pi, _, _)| pi == intent).map(|(_, _, made)| made.clone()).collect()
    }

    /// A refund Stripe held `pending` ends `status` (`succeeded`, `failed`, `canceled`), with
    /// `failure_reason` for a failure, as the customer's bank decides.
    pub fn end_refund(&self, stripe_refund_id: &str, status: &str, failure_reason: Option<&str>) {
        let mut refunds = lock(&self.refunds);
        if let Some((_, _, made)) = refunds.iter_mut().find(|(_, _, made)| made.id == stripe_refund_id) {
            made.status = status.to_owned();
            made.failure_reason = failure_reason.map(str::to_owned);
        }
    }

    /// Refunds `amount` of the PaymentIntent in the Dashboard (no refund id of ours): its `re_`.
    pub fn refund_in_dashboard(&self, intent: &PaymentIntentId, amount: Money) -> String {
        let mut refunds = lock(&self.refunds);
        let id = format!("re_dash{}", refunds.len() + 1);
        let made =
            StripeRefund { id: id.clone(), amount, status: "succeeded".into(), refund_id: None, failure_reason: None };
        refunds.push((intent.clone(), None, made));
        id
    }
}

impl RefundGateway for FakeStripe {
    async fn create_refund(&self, intent: &PaymentIntentId, refund: &Refund) -> Result<StripeRefund, GatewayError> {
        let fault = self.fault(Call::Refund);
        if fault == Some(Fault::Unreachable) {
            return Err(GatewayError::Unavailable("connection refused".into()));
        }
        if fault == Some(Fault::KeyInUse) {
            return Err(GatewayError::Conflict("HTTP 409 idempotency_key_in_use".into()));
        }
        // What the adapter refuses before calling Stripe (an amount Stripe cannot refund exactly).
        crate::stripe::stripe_amount(refund.amount)?;
        let key = crate::stripe::refund_key(refund);
        let server_error = |replayed| GatewayError::ServerError { detail: "HTTP 500 api_error".into(), replayed };
        if lock(&self.failed_keys).contains(&key) {
            return Err(server_error(true)); // the saved answer, replayed
        }
        if fault == Some(Fault::ServerErrorUnsaved) {
            return Err(server_error(false));
        }
        if fault == Some(Fault::ServerError { made: false }) {
            lock(&self.failed_keys).push(key);
            return Err(server_error(false));
        }
        let made = {
            let intents = lock(&self.intents);
            let charged = intents.get(intent).ok_or_else(|| Self::missing(intent))?;
            if charged.status != IntentStatus::Succeeded {
                return Err(GatewayError::Refused {
                    code: "charge_not_captured".into(),
                    param: None,
                    message: "nothing captured".into(),
                });
            }
            let mut refunds = lock(&self.refunds);
            // The same idempotency key gives the same refund.
            if let Some((_, _, made)) = refunds.iter().find(|(_, made_with, _)| made_with.as_ref() == Some(&key)) {
                made.clone()
            } else {
                // A failed or canceled refund gave its amount back to the charge.
                let refunded: i64 = refunds
                    .iter()
                    .filter(|(pi, _, made)| pi == intent && !matches!(made.outcome(), RefundOutcome::Failed(_)))
                    .map(|(_, _, made)| made.amount.amount())
                    .sum();
                if let Some(Fault::Refused(code)) = fault {
                    return Err(GatewayError::Refused { code: code.into(), param: None, message: "refused".into() });
                }
                if refunded + refund.amount.amount() > charged.amount.amount() {
                    return Err(GatewayError::Refused {
                        code: "charge_already_refunded".into(),
                        param: Some("amount".into()),
                        message: "more than the charge".into(),
                    });
                }
                let made = StripeRefund {
                    id: format!("re_{}", refunds.len() + 1),
                    amount: refund.amount,
                    status: lock(&self.refunds_start).unwrap_or("succeeded").into(),
                    refund_id: Some(refund.refund_id),
                    failure_reason: None,
                };
                refunds.push((intent.clone(), Some(key.clone()), made.clone()));
                made
            }
        };
        self.run_meanwhile(Call::Refund);
        if fault == Some(Fault::AnswerLost) {
            return Err(GatewayError::Unavailable("timed out".into()));
        }
        if fault == Some(Fault::ServerError { made: true }) {
            lock(&self.failed_keys).push(key);
            return Err(server_error(false));
        }
        Ok(made)
    }

    async fn retrieve_refund(&self, stripe_refund_id: &str) -> Result<StripeRefund, GatewayError> {
        lock(&self.refunds)
            .iter()
            .find(|(_, _, made)| made.id == stripe_refund_id)
            .map(|(_, _, made)| made.clone())
            .ok_or_else(|| GatewayError::Refused {
                code: "resource_missing".into(),
                param: Some("id".into()),
                message: "no such refund".into(),
            })
    }

    async fn list_refunds(&self, intent: &PaymentIntentId) -> Result<Vec<StripeRefund>, GatewayError> {
        self.run_meanwhile(Call::ListRefunds);
        let mut made = self.refunds_of(intent);
        made.reverse();
        Ok(made)
    }

    async fn intent_order(&self, intent: &PaymentIntentId) -> Result<Option<OrderId>, GatewayError> {
        Ok(lock(&self.intents).get(intent).map(|charged| charged.order_id))
    }

    async fn retrieve_dispute(&self, dispute_id: &str) -> Result<Option<StripeDispute>, GatewayError> {
        Ok(lock(&self.disputes).iter().find(|d| d.id == dispute_id).cloned())
    }
}

impl FakeStripe {
    /// The customer's bank disputes the PaymentIntent's whole amount (reason `fraudulent`), in
    /// Stripe status `status`; the dispute's id.
    pub fn dispute(&self, intent: &PaymentIntentId, status: &str) -> String {
        // An unknown PaymentIntent disputes nothing: Stripe would have no charge to dispute.
        let amount = lock(&self.intents).get(intent).map_or(Money::zero(Currency::USD), |charged| charged.amount);
        let mut disputes = lock(&self.disputes);
        let id = format!("dp_fake{}", disputes.len() + 1);
        disputes.push(StripeDispute {
            id: id.clone(),
            intent: Some(intent.clone()),
            amount,
            reason: "fraudulent".into(),
            status: status.into(),
        });
        id
    }

    /// Stripe moves the dispute to `status` (`won`, `lost`, ...).
    pub fn close_dispute(&self, dispute_id: &str, status: &str) {
        if let Some(dispute) = lock(&self.disputes).iter_mut().find(|d| d.id == dispute_id) {
            dispute.status = status.into();
        }
    }
}

/// An order authorized and captured at the fake Stripe (25.00 USD), and its PaymentIntent.
pub async fn captured_order(store: &FakeStore, stripe: &FakeStripe) -> (OrderId, PaymentIntentId) {
    captured_order_of(store, stripe, placed(OrderId::new(), VISA).total).await
}

/// An order of `total` authorized and captured at the fake Stripe, and its PaymentIntent.
pub async fn captured_order_of(store: &FakeStore, stripe: &FakeStripe, total: Money) -> (OrderId, PaymentIntentId) {
    let order_id = OrderId::new();
    let placed = on_order_placed(store, stripe, &OrderPlaced { total, ..placed(order_id, VISA) }, T0).await;
    let reserved = on_stock_reserved(store, stripe, order_id, T0).await;
    assert!(placed.is_ok() && reserved.is_ok(), "placing: {placed:?}, reserving: {reserved:?}");
    let captured = crate::capture::on_shipment_dispatched(store, stripe, &dispatched(order_id, 1)).await;
    assert!(captured.is_ok(), "capturing: {captured:?}");
    (order_id, stripe.only_intent())
}

/// Runs a future of the in-memory fakes to its end at once: they never wait, so one poll
/// finishes it. For another invocation's whole request, run from a [`FakeStripe::meanwhile`].
pub fn at_once<F: std::future::Future>(future: F) -> F::Output {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("a future of the fakes waited"),
    }
}
