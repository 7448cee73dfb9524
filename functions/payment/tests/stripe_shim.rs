//! The Stripe adapter against the local Stripe emulator (`infra/emulators/stripe_server.py`).
//!
//! Proves that our Stripe client (`payment::stripe_client`, sending async-stripe's requests) reads
//! what the emulator answers, that Stripe's documented test payment methods behave as in test
//! mode, and that the emulator honours idempotency keys. Each
//! test starts its own emulator (about 0.4 s) with the emulators venv's Python (`make venv`), or
//! the interpreter `FERROCART_PYTHON` names.

// Test helpers outside #[test] functions may unwrap too (clippy.toml covers only the tests).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use kernel::{Currency, Money, OrderId};
use payment::StripeSecret;
use payment::model::{OrderPayment, PaymentIntentId};
use payment::ports::{Decline, GatewayError, IntentStatus, PaymentGateway};
use payment::stripe::StripeGateway;

/// A running emulator with a gateway pointed at it; dropping it stops the emulator.
struct Emulator {
    gateway: StripeGateway,
    process: localcloud::emulator::Emulator,
}

impl Emulator {
    /// The emulator's test control: the next capture of `intent` is refused as an expired
    /// authorization (`charge_expired_for_capture`).
    async fn expire_authorization(&self, intent: &PaymentIntentId) {
        let url = format!("{}/_test/payment_intents/{intent}/expire_authorization", self.process.url);
        let response = reqwest::Client::new().post(url).bearer_auth(SECRET).send().await.unwrap();
        assert!(response.status().is_success(), "{:?}", response.text().await);
    }
}

impl Emulator {
    /// The emulator's test control: the next capture of `intent` answers 500, as an outage would.
    async fn fail_next_capture(&self, intent: &PaymentIntentId) {
        let url = format!("{}/_test/payment_intents/{intent}/fail_next_capture", self.process.url);
        let response = reqwest::Client::new().post(url).bearer_auth(SECRET).send().await.unwrap();
        assert!(response.status().is_success(), "{:?}", response.text().await);
    }
}

const SECRET: &str = "sk_test_ferrocart";

/// The interpreter of the emulators venv (`make venv`), or the one `FERROCART_PYTHON` names.
fn python() -> PathBuf {
    std::env::var_os("FERROCART_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv/emulators/bin/python"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn emulator() -> Emulator {
    let script = repo().join("infra/emulators/stripe_server.py");
    let process = localcloud::emulator::Emulator::start("the Stripe emulator", &python(), &script).await.unwrap();
    let secret = StripeSecret::new(SECRET).unwrap();
    let gateway = StripeGateway::new(&secret, Some(&format!("{}/", process.url))).unwrap();
    Emulator { gateway, process }
}

fn order(payment_method: &str) -> OrderPayment {
    OrderPayment { total: Money::new(2500, Currency::USD).unwrap(), payment_method: payment_method.to_owned() }
}

#[tokio::test]
async fn a_visa_card_is_authorized_for_manual_capture() {
    let stripe = emulator().await;
    let order_id = OrderId::new();

    let created = stripe.gateway.create_intent(order_id, &order("pm_card_visa")).await.unwrap();
    let confirmed = stripe.gateway.confirm_intent(order_id, &created.id).await.unwrap();
    let retrieved = stripe.gateway.retrieve_intent(&created.id).await.unwrap();

    assert_eq!(created.status, IntentStatus::RequiresConfirmation);
    assert_eq!(confirmed.id, created.id);
    assert_eq!(confirmed.status, IntentStatus::RequiresCapture);
    assert_eq!(retrieved.status, IntentStatus::RequiresCapture);
}

#[tokio::test]
async fn a_declined_card_is_a_decline_with_stripes_codes() {
    let stripe = emulator().await;
    let order_id = OrderId::new();
    let created = stripe.gateway.create_intent(order_id, &order("pm_card_chargeDeclined")).await.unwrap();

    let confirmed = stripe.gateway.confirm_intent(order_id, &created.id).await;
    let retrieved = stripe.gateway.retrieve_intent(&created.id).await.unwrap();

    let decline = Decline { code: "card_declined".into(), decline_code: Some("generic_decline".into()) };
    assert_eq!(confirmed, Err(GatewayError::Declined(decline.clone())));
    assert_eq!(retrieved.status, IntentStatus::RequiresPaymentMethod(Some(decline)));
}

#[tokio::test]
async fn a_card_that_needs_3d_secure_requires_action_with_the_client_secret_to_complete_it() {
    let stripe = emulator().await;
    let order_id = OrderId::new();
    let created = stripe.gateway.create_intent(order_id, &order("pm_card_authenticationRequired")).await.unwrap();

    let confirmed = stripe.gateway.confirm_intent(order_id, &created.id).await.unwrap();

    let IntentStatus::RequiresAction(Some(secret)) = confirmed.status else {
        panic!("expected requires_action with a client secret, got {:?}", confirmed.status);
    };
    assert!(secret.expose().starts_with(&format!("{}_secret_", created.id)));
}

#[tokio::test]
async fn cancelling_an_authorization_voids_it_and_a_repeated_cancel_gets_the_same_answer() {
    let stripe = emulator().await;
    let order_id = OrderId::new();
    let created = stripe.gateway.create_intent(order_id, &order("pm_card_visa")).await.unwrap();
    stripe.gateway.confirm_intent(order_id, &created.id).await.unwrap();

    let cancelled = stripe.gateway.cancel_intent(order_id, &created.id).await.unwrap();
    let again = stripe.gateway.cancel_intent(order_id, &created.id).await.unwrap();

    assert_eq!(cancelled.status, IntentStatus::Canceled);
    assert_eq!(again, cancelled);
    assert_eq!(stripe.gateway.retrieve_intent(&created.id).await.unwrap().status, IntentStatus::Canceled);
}

#[tokio::test]
async fn the_same_order_gets_one_payment_intent_however_often_it_asks() {
    let stripe = emulator().await;
    let order_id = OrderId::new();

    let first = stripe.gateway.create_intent(order_id, &order("pm_card_visa")).await.unwrap();
    let second = stripe.gateway.create_intent(order_id, &order("pm_card_visa")).await.unwrap();
    let other_order = stripe.gateway.create_intent(OrderId::new(), &order("pm_card_visa")).await.unwrap();
    let mut changed = order("pm_card_visa");
    changed.total = Money::new(9900, Currency::USD).unwrap();
    let reused_key = stripe.gateway.create_intent(order_id, &changed).await;

    assert_eq!(second.id, first.id);
    assert_ne!(other_order.id, first.id);
    assert!(matches!(reused_key, Err(GatewayError::Misconfigured(_))), "{reused_key:?}");
}

#[tokio::test]
async fn an_unknown_payment_method_is_refused_naming_the_parameter() {
    let stripe = emulator().await;

    let created = stripe.gateway.create_intent(OrderId::new(), &order("pm_card_bogus")).await;

    assert!(
        matches!(&created, Err(GatewayError::Refused { code, param: Some(param), .. })
            if code == "resource_missing" && param == "payment_method"),
        "{created:?}"
    );
}

#[tokio::test]
async fn an_authorization_is_captured_once_and_a_second_capture_is_a_conflict() {
    let stripe = emulator().await;
    let order_id = OrderId::new();
    let created = stripe.gateway.create_intent(order_id, &order("pm_card_visa")).await.unwrap();
    stripe.gateway.confirm_intent(order_id, &created.id).await.unwrap();

    let captured = stripe.gateway.capture_intent(order_id, &created.id).await.unwrap();
    let again = stripe.gateway.capture_intent(order_id, &created.id).await;

    assert_eq!(captured.status, IntentStatus::Succeeded);
    assert!(
        matches!(&again, Err(GatewayError::Conflict(message)) if message.contains("payment_intent_unexpected_state")),
        "Stripe captures a PaymentIntent once: {again:?}"
    );
    assert_eq!(stripe.gateway.retrieve_intent(&created.id).await.unwrap().status, IntentStatus::Succeeded);
}

#[tokio::test]
async fn a_capture_tried_again_after_a_stripe_500_goes_through() {
    let stripe = emulator().await;
    let order_id = OrderId::new();
    let created = stripe.gateway.create_intent(order_id, &order("pm_card_visa")).await.unwrap();
    stripe.gateway.confirm_intent(order_id, &created.id).await.unwrap();
    stripe.fail_next_capture(&created.id).await;

    let first = stripe.gateway.capture_intent(order_id, &created.id).await;
    // The queue's retry of the same dispatch: Stripe saved the 500 under a repeated key.
    let retry = stripe.gateway.capture_intent(order_id, &created.id).await;

    assert!(matches!(first, Err(GatewayError::ServerError { .. })), "{first:?}");
    assert_eq!(retry.map(|intent| intent.status), Ok(IntentStatus::Succeeded), "not the saved 500 again");
}

#[tokio::test]
async fn the_emulator_can_refuse_a_capture_as_an_expired_authorization() {
    let stripe = emulator().await;
    let order_id = OrderId::new();
    let created = stripe.gateway.create_intent(order_id, &order("pm_card_visa")).await.unwrap();
    stripe.gateway.confirm_intent(order_id, &created.id).await.unwrap();
    stripe.expire_authorization(&created.id).await;

    let refused = stripe.gateway.capture_intent(order_id, &created.id).await;

    assert!(
        matches!(&refused, Err(GatewayError::Refused { code, .. }) if code == "charge_expired_for_capture"),
        "{refused:?}"
    );
    assert_eq!(
        stripe.gateway.retrieve_intent(&created.id).await.unwrap().status,
        IntentStatus::Canceled,
        "Stripe cancels a PaymentIntent whose authorization lapsed"
    );
}

mod refunds {
    use domain_events::payment::RefundReason;
    use kernel::RefundId;
    use payment::ports::RefundGateway;
    use payment::ports::RefundOutcome;
    use payment::refund::{Refund, RefundStatus, Source};

    use super::*;

    async fn captured(stripe: &Emulator) -> (OrderId, PaymentIntentId) {
        let order_id = OrderId::new();
        let created = stripe.gateway.create_intent(order_id, &order("pm_card_visa")).await.unwrap();
        stripe.gateway.confirm_intent(order_id, &created.id).await.unwrap();
        stripe.gateway.capture_intent(order_id, &created.id).await.unwrap();
        (order_id, created.id)
    }

    fn refund(order_id: OrderId, minor: i64) -> Refund {
        Refund {
            refund_id: RefundId::new(),
            order_id,
            source: Source::Key("k".into()),
            amount: Money::new(minor, Currency::USD).unwrap(),
            reason: RefundReason::RequestedByCustomer,
            note: None,
            return_id: None,
            status: RefundStatus::Pending,
            created_at: time::OffsetDateTime::now_utc(),
            request: None,
            attempt: 0,
        }
    }

    /// The emulator's test controls for refunds (see infra/emulators/stripe_server.py).
    async fn control(stripe: &Emulator, path: &str, form: &[(&str, &str)]) {
        let url = format!("{}/_test/{path}", stripe.process.url);
        let response = reqwest::Client::new().post(url).bearer_auth(SECRET).form(form).send().await.unwrap();
        assert!(response.status().is_success(), "{:?}", response.text().await);
    }

    #[tokio::test]
    async fn a_refund_the_bank_takes_time_over_is_pending_then_read_back_as_it_ends() {
        let stripe = emulator().await;
        let order_id = OrderId::new();
        let created = stripe.gateway.create_intent(order_id, &order("pm_card_pendingRefund")).await.unwrap();
        stripe.gateway.confirm_intent(order_id, &created.id).await.unwrap();
        stripe.gateway.capture_intent(order_id, &created.id).await.unwrap();
        let (first, second) = (refund(order_id, 1500), refund(order_id, 1500));

        let made = stripe.gateway.create_refund(&created.id, &first).await.unwrap();
        let pending = stripe.gateway.retrieve_refund(&made.id).await.unwrap();
        control(
            &stripe,
            &format!("refunds/{}/end", made.id),
            &[("status", "failed"), ("failure_reason", "lost_or_stolen_card")],
        )
        .await;
        let ended = stripe.gateway.retrieve_refund(&made.id).await.unwrap();
        let again = stripe.gateway.create_refund(&created.id, &second).await;

        assert_eq!((made.outcome(), pending.outcome()), (RefundOutcome::Pending, RefundOutcome::Pending));
        assert_eq!(ended.outcome(), RefundOutcome::Failed("lost_or_stolen_card".into()));
        assert!(again.is_ok(), "a failed refund gave its amount back to the charge: {again:?}");
    }

    #[tokio::test]
    async fn a_refund_after_a_stripe_500_is_made_once_under_the_next_attempts_key() {
        let stripe = emulator().await;
        let (order_id, intent) = captured(&stripe).await;
        control(&stripe, &format!("payment_intents/{intent}/fail_next_refund"), &[]).await;
        let first = refund(order_id, 1000);

        let outage = stripe.gateway.create_refund(&intent, &first).await;
        let replayed = stripe.gateway.create_refund(&intent, &first).await;
        let listed = stripe.gateway.list_refunds(&intent).await.unwrap();
        let next = Refund { attempt: 1, ..first.clone() };
        let made = stripe.gateway.create_refund(&intent, &next).await.unwrap();

        assert!(matches!(outage, Err(GatewayError::ServerError { replayed: false, .. })), "{outage:?}");
        assert!(
            matches!(replayed, Err(GatewayError::ServerError { replayed: true, .. })),
            "Stripe replays the saved 500, saying so: {replayed:?}"
        );
        assert!(listed.is_empty(), "nothing was refunded by the 500");
        assert_eq!(stripe.gateway.list_refunds(&intent).await.unwrap(), vec![made.clone()], "exactly one refund");
        assert_eq!(made.refund_id, Some(first.refund_id));
    }

    #[tokio::test]
    async fn a_refund_is_made_once_per_refund_id_and_never_past_the_captured_amount() {
        let stripe = emulator().await;
        let (order_id, intent) = captured(&stripe).await;
        let first = refund(order_id, 1000);

        let made = stripe.gateway.create_refund(&intent, &first).await.unwrap();
        let again = stripe.gateway.create_refund(&intent, &first).await.unwrap();
        let too_much = stripe.gateway.create_refund(&intent, &refund(order_id, 1501)).await;
        let listed = stripe.gateway.list_refunds(&intent).await.unwrap();

        assert!(made.id.starts_with("re_") && made.outcome() == RefundOutcome::Succeeded, "{made:?}");
        assert_eq!(again, made, "the same idempotency key gives the same refund");
        assert!(
            matches!(&too_much, Err(GatewayError::Refused { code, .. }) if code == "amount_too_large"),
            "{too_much:?}"
        );
        assert_eq!(listed, vec![made.clone()]);
        assert_eq!(listed[0].refund_id, Some(first.refund_id), "our refund id travels in the metadata");
        assert_eq!(stripe.gateway.intent_order(&intent).await.unwrap(), Some(order_id));
    }
}
