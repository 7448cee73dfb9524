//! Authorizing an order's total: `OrderPlaced` and `StockReserved`.
//!
//! ## When an order is authorized
//!
//! Two facts must be in: the order was placed (`OrderPlaced`: total and payment method) and its
//! stock reserved (`StockReserved`). They arrive in either order and each possibly more than once,
//! so each is recorded with a commutative write that returns the whole record; whichever write
//! finds both facts (and no cancellation) *claims* the authorization with a conditional write,
//! which exactly one invocation wins.
//!
//! ## Authorizing without charging twice
//!
//! A Lambda can die between any two steps, and SQS then delivers the message again. The steps:
//!
//! 1. create the PaymentIntent, unconfirmed and with manual capture (it holds nothing yet);
//! 2. record its id on the payment (only if none is recorded);
//! 3. confirm it (this is what places the hold on the card);
//! 4. record the outcome together with its event, in one transaction, only while authorizing.
//!
//! A delivery that finds the payment authorizing resumes: with a recorded PaymentIntent it
//! retrieves it and continues at step 3 (or just records the outcome if the confirmation went
//! through); without one, it waits [`CLAIM_TIMEOUT`](crate::model::CLAIM_TIMEOUT) for the owner to get there, then takes the
//! claim over and starts again at step 1. A PaymentIntent left behind at step 1 was never
//! confirmed, so it holds no money. Only the recorded PaymentIntent is ever confirmed, so the card
//! is held at most once. Stripe backs this up: the create carries an idempotency key derived from
//! the order (honoured by Stripe and by the local emulator; localstripe alone does not), and a
//! PaymentIntent is confirmed only once.
//! Which of these a delivery does is [`Payment::next`]'s decision.
//!
//! ## What fails an authorization
//!
//! A decline (`card_declined`, `expired_card`, … with the issuer's decline code), a 3-D Secure
//! challenge the customer failed (Stripe's `payment_intent_authentication_failure`, told by
//! webhook), and a request
//! Stripe refuses for the order's data (an unknown payment method is `payment_method_invalid`,
//! anything else is Stripe's error code, such as `amount_too_small`). Stripe being unreachable,
//! throttling us or failing (5xx) is not a failure of the payment: the message is retried.
//!
//! ## 3-D Secure
//!
//! A confirmation that answers `requires_action` settles nothing yet: step 4 records the payment
//! `awaiting_action` (`requires_action` in the table) with `PaymentActionRequired`, which carries
//! the PaymentIntent's client secret to checkout, so the order's owner can run Stripe.js
//! `handleNextAction`. The order moves on when Stripe says so, by webhook
//! ([`crate::webhook`]): `payment_intent.amount_capturable_updated` settles it authorized and
//! `payment_intent.payment_failed` failed, with the same conditional write as a confirmation's
//! answer. A client saying it passed the challenge proves nothing. An order left waiting is
//! cancelled by checkout's timeout, and the cancellation cancels the PaymentIntent
//! ([`crate::cancel`]). (A `requires_action` without a client secret cannot be completed and
//! fails the payment with `authentication_required`.)
//!
//! ## Orders with nothing to pay
//!
//! An order whose total is zero (a 100 % promotion) is never sent to Stripe, which has a minimum
//! amount: payment records its facts and stops. Checkout confirms such an order on
//! `StockReserved` without waiting for a payment.

use time::OffsetDateTime;

use domain_events::checkout::OrderPlaced;
use domain_events::payment::{PaymentActionRequired, PaymentAuthorized, PaymentFailed};
use domain_events::{Envelope, Event, Metadata};
use kernel::OrderId;

use crate::cancel::abandon;
use crate::error::PaymentError;
use crate::model::{
    AUTHENTICATION_REQUIRED, Next, OrderPayment, PAYMENT_METHOD_INVALID, Payment, PaymentIntentId, Settlement, Stage,
};
use crate::ports::{Claim, GatewayError, IntentStatus, PaymentGateway, PaymentStore, StoreError, Write};

/// `OrderPlaced`: record the total and payment method; authorize if the stock is reserved.
pub async fn on_order_placed(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    order: &OrderPlaced,
    now: OffsetDateTime,
) -> Result<(), PaymentError> {
    let facts = OrderPayment { total: order.total, payment_method: order.payment_method.clone() };
    let payment = store.record_order(order.order_id, &facts).await?;
    advance(store, gateway, payment, now).await
}

/// `StockReserved`: record it; authorize if the order is known.
pub async fn on_stock_reserved(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    order_id: OrderId,
    now: OffsetDateTime,
) -> Result<(), PaymentError> {
    let payment = store.record_stock_reserved(order_id).await?;
    advance(store, gateway, payment, now).await
}

pub(crate) fn envelope(order_id: OrderId, event: Event) -> Envelope {
    Envelope::new(Metadata::new(order_id.to_string()), event)
}

/// Moves a payment on after a fact was recorded: claim, or carry on from where it stands.
async fn advance(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: Payment,
    now: OffsetDateTime,
) -> Result<(), PaymentError> {
    let payment = match payment.next(now) {
        Next::Claim => match store.claim(payment.order_id, now).await? {
            Claim::Won(claimed) => return authorize(store, gateway, &claimed, now).await,
            // Another delivery claimed it, or the order was cancelled, since our write.
            Claim::Lost(current) => current,
        },
        _ => payment,
    };
    carry_on(store, gateway, &payment, now).await
}

/// Does what [`Payment::next`] says, short of a first claim.
pub(crate) async fn carry_on(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: &Payment,
    now: OffsetDateTime,
) -> Result<(), PaymentError> {
    let order_id = payment.order_id;
    match payment.next(now) {
        Next::Nothing => {
            match &payment.stage {
                Stage::Pending if payment.order.as_ref().is_some_and(|order| order.total.amount() == 0) => {
                    tracing::info!(%order_id, "the order's total is zero: nothing to authorize");
                }
                Stage::Pending => {
                    tracing::info!(%order_id, placed = payment.order.is_some(), stock_reserved = payment.stock_reserved,
                        cancelled = payment.cancelled, "payment waits for its facts");
                }
                _ => tracing::info!(%order_id, "payment already settled; duplicate delivery"),
            }
            Ok(())
        }
        // A claim just lost to a payment that is still claimable cannot be: the claim's condition
        // is `ready`'s. Retrying is the safe answer if it ever is.
        Next::Claim | Next::Wait => Err(PaymentError::Busy { order_id }),
        Next::Resume(intent) => {
            tracing::info!(%order_id, payment_intent_id = %intent, "resuming an authorization");
            resume(store, gateway, payment, &intent, now).await
        }
        Next::Restart { since } => match store.reclaim(order_id, since, now).await? {
            Claim::Won(claimed) => {
                tracing::warn!(%order_id, "an authorization stalled before creating its PaymentIntent; starting over");
                authorize(store, gateway, &claimed, now).await
            }
            Claim::Lost(_) => Err(PaymentError::Busy { order_id }),
        },
        Next::Abandon(intent) => abandon(store, gateway, payment, intent.as_ref()).await,
    }
}

fn order_of(payment: &Payment) -> Result<&OrderPayment, PaymentError> {
    payment.order.as_ref().ok_or_else(|| {
        StoreError::Corrupt { order_id: payment.order_id, detail: "authorizing without an order".into() }.into()
    })
}

/// Steps 1 to 4, for a payment this invocation has just claimed.
async fn authorize(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: &Payment,
    now: OffsetDateTime,
) -> Result<(), PaymentError> {
    let order_id = payment.order_id;
    let order = order_of(payment)?;
    let intent = match gateway.create_intent(order_id, order).await {
        Ok(intent) => intent,
        Err(error) => return settle_refusal(store, payment, None, error).await,
    };
    tracing::info!(%order_id, payment_intent_id = %intent.id, "PaymentIntent created");
    let recorded = match store.record_intent(order_id, &intent.id).await? {
        Claim::Won(recorded) => recorded,
        Claim::Lost(current) => match &current.stage {
            // A concurrent delivery got the same PaymentIntent (Stripe replayed the create) and
            // recorded it first: carry on with it.
            Stage::Authorizing { intent: Some(recorded), .. } if *recorded == intent.id => current,
            // Another invocation's PaymentIntent won; ours stays unconfirmed and holds nothing.
            Stage::Authorizing { .. } => return Err(PaymentError::Busy { order_id }),
            _ => {
                tracing::info!(%order_id, "payment settled by another invocation");
                return Ok(());
            }
        },
    };
    // The payment as step 2 left it: a cancellation since the claim shows here, before any hold.
    match recorded.next(now) {
        Next::Abandon(_) => abandon(store, gateway, &recorded, Some(&intent.id)).await,
        _ => confirm(store, gateway, &recorded, &intent.id, now).await,
    }
}

/// Continues an authorization whose PaymentIntent is recorded: confirm it unless that happened.
async fn resume(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: &Payment,
    intent: &PaymentIntentId,
    now: OffsetDateTime,
) -> Result<(), PaymentError> {
    let current = gateway.retrieve_intent(intent).await?;
    match current.status {
        IntentStatus::RequiresConfirmation => confirm(store, gateway, payment, intent, now).await,
        status => settle_status(store, gateway, payment, intent, status, now).await,
    }
}

/// Step 3, then step 4.
async fn confirm(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: &Payment,
    intent: &PaymentIntentId,
    now: OffsetDateTime,
) -> Result<(), PaymentError> {
    match gateway.confirm_intent(payment.order_id, intent).await {
        Ok(confirmed) => settle_status(store, gateway, payment, intent, confirmed.status, now).await,
        Err(error) => settle_refusal(store, payment, Some(intent), error).await,
    }
}

/// How a PaymentIntent in `status` settles the payment of `order_id`, or why it does not yet.
fn settlement(order_id: OrderId, intent: &PaymentIntentId, status: IntentStatus) -> Result<Settlement, PaymentError> {
    let failed = |reason: &str, decline_code: Option<String>| Settlement::Failed {
        intent: Some(intent.clone()),
        reason: reason.to_owned(),
        decline_code,
    };
    Ok(match status {
        IntentStatus::RequiresCapture => Settlement::Authorized { intent: intent.clone() },
        // The customer completes 3-D Secure with Stripe.js; Stripe tells us how it went.
        IntentStatus::RequiresAction(Some(client_secret)) => {
            Settlement::AwaitingAction { intent: intent.clone(), client_secret }
        }
        // Without a client secret nobody can complete the challenge.
        IntentStatus::RequiresAction(None) => failed(AUTHENTICATION_REQUIRED, None),
        IntentStatus::RequiresPaymentMethod(Some(decline)) => failed(&decline.code, decline.decline_code),
        IntentStatus::RequiresPaymentMethod(None) => failed(PAYMENT_METHOD_INVALID, None),
        // Card payments leave `processing` within seconds; look again later.
        IntentStatus::Processing | IntentStatus::RequiresConfirmation => {
            return Err(PaymentError::NotSettled { order_id, intent: intent.clone() });
        }
        // Payment never captures an authorizing PaymentIntent, and cancels one only for a
        // cancelled order (which never comes here): someone else did.
        status => return Err(PaymentError::ChangedElsewhere { order_id, intent: intent.clone(), status }),
    })
}

/// Step 4 from the PaymentIntent's status.
pub(crate) async fn settle_status(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: &Payment,
    intent: &PaymentIntentId,
    status: IntentStatus,
    now: OffsetDateTime,
) -> Result<(), PaymentError> {
    let settlement = settlement(payment.order_id, intent, status)?;
    if let Settlement::Failed { intent: Some(failed), .. } = &settlement {
        // A failed PaymentIntent stays open at Stripe (`requires_payment_method`): a client that
        // holds its client secret (a 3-D Secure order) could confirm it again and place a hold
        // nothing would release. Cancel it before recording the failure, so a failed cancel is
        // tried again with the message or webhook.
        crate::cancel::cancel_at_stripe(gateway, payment.order_id, failed).await?;
    }
    let Some(current) = record_settlement(store, payment, &settlement).await? else {
        return Ok(());
    };
    match current.next(now) {
        // The order was cancelled before our write: the hold we just placed is released here,
        // and the authorization is never announced.
        Next::Abandon(Some(recorded)) if recorded == *intent => {
            tracing::info!(order_id = %payment.order_id, payment_intent_id = %intent,
                "authorized, but the order was cancelled meanwhile; releasing the hold");
            abandon(store, gateway, &current, Some(intent)).await
        }
        _ => {
            tracing::info!(order_id = %payment.order_id, "payment settled by another invocation");
            Ok(())
        }
    }
}

/// Step 4 from a failed create or confirm: a decline or refusal fails the payment; anything else
/// is an error for the message.
async fn settle_refusal(
    store: &impl PaymentStore,
    payment: &Payment,
    intent: Option<&PaymentIntentId>,
    error: GatewayError,
) -> Result<(), PaymentError> {
    let (reason, decline_code) = match error {
        GatewayError::Declined(decline) => (decline.code, decline.decline_code),
        GatewayError::Refused { param, .. } if param.as_deref() == Some("payment_method") => {
            (PAYMENT_METHOD_INVALID.to_owned(), None)
        }
        GatewayError::Refused { code, .. } => (code, None),
        other => return Err(other.into()),
    };
    // A failure holds nothing, so a cancellation changes nothing about it.
    if record_settlement(store, payment, &Settlement::Failed { intent: intent.cloned(), reason, decline_code })
        .await?
        .is_some()
    {
        tracing::info!(order_id = %payment.order_id, "payment settled by another invocation");
    }
    Ok(())
}

/// Writes the outcome and its event. `Some`: the write was refused; the payment as it is.
pub(crate) async fn record_settlement(
    store: &impl PaymentStore,
    payment: &Payment,
    settlement: &Settlement,
) -> Result<Option<Payment>, PaymentError> {
    let order_id = payment.order_id;
    let event = match settlement {
        Settlement::Authorized { intent } => Event::PaymentAuthorized(PaymentAuthorized {
            order_id,
            payment_intent_id: intent.to_string(),
            amount: order_of(payment)?.total,
        }),
        Settlement::AwaitingAction { intent, client_secret } => Event::PaymentActionRequired(PaymentActionRequired {
            order_id,
            payment_intent_id: intent.to_string(),
            client_secret: client_secret.expose().to_owned(),
        }),
        Settlement::Failed { reason, decline_code, .. } => {
            Event::PaymentFailed(PaymentFailed { order_id, reason: reason.clone(), decline_code: decline_code.clone() })
        }
    };
    match store.settle(order_id, settlement, &envelope(order_id, event)).await? {
        Write::Done => {
            match settlement {
                Settlement::Authorized { intent } => {
                    tracing::info!(%order_id, payment_intent_id = %intent, "payment authorized")
                }
                Settlement::AwaitingAction { intent, .. } => {
                    tracing::info!(%order_id, payment_intent_id = %intent, "payment awaits the customer's 3-D Secure")
                }
                Settlement::Failed { intent, reason, decline_code } => tracing::info!(%order_id,
                    payment_intent_id = intent.as_ref().map(tracing::field::display), reason, decline_code,
                    "payment failed"),
            }
            Ok(None)
        }
        Write::Refused(current) => Ok(Some(current)),
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::cancel::on_order_cancelled;
    use crate::model::CLAIM_TIMEOUT;
    use crate::testing::{
        Call, DECLINED, FakeStore, FakeStripe, Fault, NEEDS_3DS, T0, UNKNOWN_CARD, VISA, authorized, failed,
        is_transient, place_and_reserve, placed,
    };

    #[tokio::test]
    async fn an_order_placed_then_reserved_is_authorized_once() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());

        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        let before_stock = stripe.intent_count();
        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();

        assert_eq!(before_stock, 0, "no Stripe call before the stock is reserved");
        let intent = stripe.only_intent();
        assert_eq!(stripe.status(&intent), IntentStatus::RequiresCapture);
        assert_eq!(store.payment(order_id).stage, Stage::Authorized { intent: intent.clone() });
        assert_eq!(store.events(), vec![authorized(order_id, &intent)]);
    }

    #[tokio::test]
    async fn an_order_with_nothing_to_pay_never_reaches_stripe() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        let free = OrderPlaced { total: kernel::Money::zero(kernel::Currency::USD), ..placed(order_id, VISA) };

        on_order_placed(&store, &stripe, &free, T0).await.unwrap();
        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();
        on_order_cancelled(&store, &stripe, order_id).await.unwrap();

        assert_eq!(stripe.intent_count(), 0);
        assert_eq!(store.events(), vec![], "no authorization, failure or void to announce");
    }

    #[tokio::test]
    async fn stock_reserved_before_the_order_is_placed_is_authorized_when_the_order_arrives() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());

        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();
        let before_order = stripe.intent_count();
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();

        assert_eq!(before_order, 0);
        let intent = stripe.only_intent();
        assert_eq!(store.events(), vec![authorized(order_id, &intent)]);
    }

    #[tokio::test]
    async fn duplicate_deliveries_after_authorization_change_nothing() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        place_and_reserve(&store, &stripe, order_id, VISA).await;

        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();
        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();

        assert_eq!(stripe.intent_count(), 1);
        assert_eq!(stripe.confirmations(), 1);
        assert_eq!(store.events().len(), 1);
    }

    #[tokio::test]
    async fn a_duplicate_arriving_while_a_fresh_claim_has_no_intent_yet_is_retried_later() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        store.record(order_id, |p| {
            p.stock_reserved = true;
            p.stage = Stage::Authorizing { since: T0, intent: None };
        });

        let result = on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(5)).await;

        assert!(matches!(result, Err(PaymentError::Busy { .. })));
        assert_eq!(stripe.intent_count(), 0, "the owner of the claim creates the PaymentIntent, not the duplicate");
    }

    #[tokio::test]
    async fn a_declined_card_fails_the_payment_with_stripes_codes() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());

        place_and_reserve(&store, &stripe, order_id, DECLINED).await;

        assert_eq!(store.payment(order_id).stage, Stage::Failed);
        assert_eq!(store.events(), vec![failed(order_id, "card_declined", Some("generic_decline"))]);
    }

    #[tokio::test]
    async fn a_card_that_needs_3d_secure_waits_for_the_customer_with_its_client_secret() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());

        place_and_reserve(&store, &stripe, order_id, NEEDS_3DS).await;
        on_stock_reserved(&store, &stripe, order_id, T0 + CLAIM_TIMEOUT).await.unwrap();

        let intent = stripe.only_intent();
        assert_eq!(store.payment(order_id).stage, Stage::AwaitingAction { intent: intent.clone() });
        assert_eq!(stripe.confirmations(), 1, "a redelivery does not confirm again");
        assert_eq!(
            store.events(),
            vec![Event::PaymentActionRequired(PaymentActionRequired {
                order_id,
                payment_intent_id: intent.to_string(),
                client_secret: format!("{intent}_secret_test"),
            })]
        );
    }

    #[tokio::test]
    async fn a_requires_action_without_a_client_secret_fails_with_authentication_required() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, Fault::AnswerLost);
        let crashed = on_stock_reserved(&store, &stripe, order_id, T0).await;
        stripe.set_status(&stripe.only_intent(), IntentStatus::RequiresAction(None));

        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();

        assert!(is_transient(crashed));
        assert_eq!(store.events(), vec![failed(order_id, AUTHENTICATION_REQUIRED, None)]);
    }

    #[tokio::test]
    async fn a_payment_method_stripe_does_not_know_fails_with_payment_method_invalid() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());

        place_and_reserve(&store, &stripe, order_id, UNKNOWN_CARD).await;

        assert_eq!(stripe.intent_count(), 0);
        assert_eq!(store.events(), vec![failed(order_id, PAYMENT_METHOD_INVALID, None)]);
    }

    #[tokio::test]
    async fn stripe_being_unreachable_is_retried_and_fails_nothing() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, Fault::Unreachable);

        let first = on_stock_reserved(&store, &stripe, order_id, T0).await;
        let retry = on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(180)).await;

        assert!(is_transient(first));
        retry.unwrap();
        let intent = stripe.only_intent();
        assert_eq!(stripe.confirmations(), 1);
        assert_eq!(store.events(), vec![authorized(order_id, &intent)]);
    }

    #[tokio::test]
    async fn an_authorization_that_died_after_creating_its_intent_starts_over_only_once_the_claim_lapses() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Create, Fault::AnswerLost);
        let crashed = on_stock_reserved(&store, &stripe, order_id, T0).await;

        let too_soon = on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(30)).await;
        let after_lapse = on_stock_reserved(&store, &stripe, order_id, T0 + CLAIM_TIMEOUT).await;

        assert!(is_transient(crashed));
        assert!(is_transient(too_soon));
        after_lapse.unwrap();
        let intent = stripe.only_intent();
        assert_eq!(stripe.confirmations(), 1);
        assert_eq!(store.events(), vec![authorized(order_id, &intent)]);
    }

    #[tokio::test]
    async fn an_authorization_that_died_before_confirming_resumes_with_its_recorded_intent() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, Fault::Unreachable);
        let crashed = on_stock_reserved(&store, &stripe, order_id, T0).await;
        let recorded = stripe.only_intent();

        // Within the claim timeout: a recorded intent is resumed at once.
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0 + Duration::seconds(1)).await.unwrap();

        assert!(is_transient(crashed));
        assert_eq!(stripe.only_intent(), recorded);
        assert_eq!(stripe.confirmations(), 1);
        assert_eq!(store.events(), vec![authorized(order_id, &recorded)]);
    }

    #[tokio::test]
    async fn an_authorization_whose_confirmation_answer_was_lost_is_not_confirmed_again() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, Fault::AnswerLost);
        let crashed = on_stock_reserved(&store, &stripe, order_id, T0).await;

        on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(180)).await.unwrap();

        assert!(is_transient(crashed));
        assert_eq!(stripe.confirmations(), 1);
        assert_eq!(store.events(), vec![authorized(order_id, &stripe.only_intent())]);
    }

    #[tokio::test]
    async fn a_decline_whose_answer_was_lost_is_read_back_from_the_intent() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, DECLINED), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, Fault::AnswerLost);
        let crashed = on_stock_reserved(&store, &stripe, order_id, T0).await;

        on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(180)).await.unwrap();

        assert!(is_transient(crashed));
        assert_eq!(store.events(), vec![failed(order_id, "card_declined", Some("generic_decline"))]);
    }

    #[tokio::test]
    async fn a_payment_someone_captured_while_authorizing_goes_to_a_person() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, Fault::Unreachable);
        let _ = on_stock_reserved(&store, &stripe, order_id, T0).await;
        let intent = stripe.only_intent();
        stripe.set_status(&intent, IntentStatus::Succeeded);

        let result = on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(180)).await;

        let error = result.unwrap_err();
        assert!(matches!(error, PaymentError::ChangedElsewhere { status: IntentStatus::Succeeded, .. }));
        assert!(!error.is_transient());
        assert!(store.events().is_empty());
    }

    #[tokio::test]
    async fn another_invocations_recorded_intent_wins_over_ours() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        let theirs = PaymentIntentId::parse("pi_theirs").unwrap();
        store.record(order_id, |p| p.stock_reserved = true);
        let claimed = match store.claim(order_id, T0).await.unwrap() {
            Claim::Won(payment) => payment,
            Claim::Lost(_) => panic!("claim lost"),
        };
        store.set_stage(order_id, Stage::Authorizing { since: T0, intent: Some(theirs.clone()) });

        let result = authorize(&store, &stripe, &claimed, T0).await;

        assert!(matches!(result, Err(PaymentError::Busy { .. })));
        assert_eq!(stripe.confirmations(), 0, "only the recorded PaymentIntent is ever confirmed");
    }
}
