//! `POST /webhooks/stripe`: what Stripe tells us about our PaymentIntents.
//!
//! ## Order of work
//!
//! 1. The `Stripe-Signature` header is checked against the raw body ([`crate::signature`]) before
//!    anything else is read: missing, forged or stale → 400 problem+json, nothing written, nothing
//!    of the body logged.
//! 2. The event is read into a [`Notice`] ([`Notice::parse`], pure): its id, and for the
//!    PaymentIntent events payment handles, the order (the `order_id` metadata payment set when it
//!    created the PaymentIntent), the PaymentIntent and what Stripe observed ([`Observed`]).
//!    For `charge.refunded` and the refund events, the PaymentIntent refunded; for
//!    `charge.dispute.created`, the dispute (id, PaymentIntent, amount, reason); for
//!    `charge.dispute.closed`, the dispute's id. Every other event type, and PaymentIntents that
//!    are not ours, are acknowledged (200) and nothing else.
//! 3. The event is claimed in the webhook inbox by its Stripe id ([`WebhookInbox`], a
//!    conditional write on the payment table): a redelivery of a handled event is a 200 with no
//!    second effect; one still in progress elsewhere is a 409, which Stripe retries.
//! 4. [`on_notice`] turns the observation into the saga's own step, with the same conditional
//!    writes: `amount_capturable_updated` is a confirmation that answered `requires_capture`,
//!    `payment_failed` one that answered with a decline ([`crate::authorize`]'s `settle_status`).
//!    So a webhook and the saga converge whichever comes first, and a late or duplicate one finds
//!    the payment settled and changes nothing (Stripe does not order its webhooks).
//!
//! ## What each event does
//!
//! | event | payment authorizing or awaiting 3-D Secure (this PaymentIntent) | otherwise |
//! |-------|------------------------------------------------------------------|-----------|
//! | `payment_intent.amount_capturable_updated` | authorized + `PaymentAuthorized` (for a cancelled order: the PaymentIntent is cancelled, `PaymentFailed { cancelled }`) | nothing |
//! | `payment_intent.payment_failed` | failed + `PaymentFailed` with Stripe's code | nothing |
//! | `payment_intent.canceled` | failed + `PaymentFailed { cancelled }` for a cancelled order, else `payment_intent_canceled` | nothing |
//! | `payment_intent.succeeded` | nothing (payment never captures while authorizing) | a capture under way is recorded, as a redelivered dispatch would |
//!
//! `charge.refunded`, `charge.refund.updated`, `refund.updated` and `refund.failed` read the
//! PaymentIntent's refunds back from Stripe ([`refunding::reconcile`]): one carrying our refund id
//! finishes our refund as Stripe has it now if it is still pending (succeeded → `RefundIssued`,
//! failed or canceled → `RefundFailed`, pending at Stripe → followed with `RefundPending` the
//! first time, nothing after), one we recorded as succeeded
//! that Stripe has since failed is failed the same way (once, counted `RefundsFailedAfterSuccess`),
//! one we recorded as failed changes nothing, and any other that succeeded (made in the
//! Dashboard) is recorded once with `RefundIssued` (reason `other`), matched by Stripe's refund
//! id, and counted `RefundsUnrecorded` once.
//! `charge.dispute.created` announces `PaymentDisputed` once per dispute id ([`refunding::on_dispute`]); its order is read from the PaymentIntent at
//! Stripe. `charge.dispute.closed` reads the dispute back from Stripe and announces
//! `PaymentDisputeClosed` with the outcome Stripe's dispute states, once per dispute
//! ([`crate::dispute`]). None of them needs the payment's stage: they are facts about money
//! already captured.
//!
//! A payment still authorizing *without* a recorded PaymentIntent cannot have been confirmed: the
//! event is answered 500 and Stripe retries it (for up to three days).

use lambda_http::{Body, Request};
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use kernel::inbox::Claim;
use kernel::{OrderId, Problem, ProblemKind};
use lambda_glue::http::{Reply, header};

use crate::authorize::{record_settlement, settle_status};
use crate::cancel::abandon;
use crate::error::PaymentError;
use crate::model::{Heard, INTENT_CANCELED, PaymentIntentId, Settlement, Told};
use crate::ports::{
    Decline, IntentStatus, PaymentGateway, PaymentStore, RefundGateway, RefundStore, StripeEventId, WebhookInbox,
};
use crate::refunding::{self, Dispute};
use crate::signature::{SigningSecret, verify};

/// How long a delivery holds its claim on an event: beyond the function's timeout (template.yaml),
/// so a claim outlives its invocation only when that invocation crashed.
pub const LEASE: Duration = Duration::seconds(60);

/// What Stripe observed on one of our PaymentIntents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// `payment_intent.amount_capturable_updated`: the amount is held (`requires_capture`).
    Capturable,
    /// `payment_intent.payment_failed`, with `last_payment_error`'s code.
    Failed(Option<Decline>),
    /// `payment_intent.canceled`.
    Canceled,
    /// `payment_intent.succeeded`: captured.
    Succeeded,
}

impl Observed {
    /// The observation without its details, for [`crate::model::Payment::on_stripe`].
    pub fn told(&self) -> Told {
        match self {
            Self::Capturable => Told::Capturable,
            Self::Failed(_) => Told::Failed,
            Self::Canceled => Told::Canceled,
            Self::Succeeded => Told::Succeeded,
        }
    }
}

/// One Stripe event, as far as payment cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: StripeEventId,
    pub kind: NoticeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeKind {
    /// An event about one of our orders' PaymentIntents.
    Intent { order_id: OrderId, intent: PaymentIntentId, observed: Observed },
    /// `charge.refunded`: the charge of this PaymentIntent was refunded (by us or elsewhere).
    Refunded { intent: PaymentIntentId },
    /// `charge.dispute.created`.
    Disputed(Dispute),
    /// `charge.dispute.closed`: the dispute to read back from Stripe (`dp_…`).
    DisputeClosed { dispute_id: String },
    /// Acknowledged and logged with its type: another event type, or a PaymentIntent that is not
    /// an order's.
    Ignored { event_type: String },
}

/// Why a signed body is not an event we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    #[error("the body is not a Stripe event (JSON with an `evt_` id, a type and data.object)")]
    NotAnEvent,
    #[error("the {event_type} event's object is not a PaymentIntent with an id")]
    NotAPaymentIntent { event_type: String },
}

#[derive(Deserialize)]
struct WireEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    data: WireData,
}

#[derive(Deserialize)]
struct WireData {
    object: serde_json::Value,
}

#[derive(Deserialize)]
struct WireIntent {
    id: String,
    #[serde(default)]
    metadata: std::collections::HashMap<String, serde_json::Value>,
    last_payment_error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireCharge {
    payment_intent: Option<String>,
}

#[derive(Deserialize)]
struct WireObject {
    id: String,
}

#[derive(Deserialize)]
struct WireDispute {
    id: String,
    payment_intent: Option<String>,
    amount: i64,
    currency: String,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct WireError {
    code: Option<String>,
    decline_code: Option<String>,
}

impl Notice {
    /// Reads a signed body. The serde errors are dropped on purpose: they quote the body.
    pub fn parse(body: &[u8]) -> Result<Self, NoticeError> {
        let event: WireEvent = serde_json::from_slice(body).map_err(|_| NoticeError::NotAnEvent)?;
        let id = StripeEventId::parse(&event.id).ok_or(NoticeError::NotAnEvent)?;
        let observed = match event.event_type.as_str() {
            "payment_intent.amount_capturable_updated" => Some(Observed::Capturable),
            "payment_intent.payment_failed" => None,
            "payment_intent.canceled" => Some(Observed::Canceled),
            "payment_intent.succeeded" => Some(Observed::Succeeded),
            // A charge, or (the other three) a refund: both name the PaymentIntent.
            "charge.refunded" | "charge.refund.updated" | "refund.updated" | "refund.failed" => {
                let charge: Option<WireCharge> = serde_json::from_value(event.data.object).ok();
                let intent = charge.and_then(|c| c.payment_intent).and_then(|pi| PaymentIntentId::parse(&pi).ok());
                let kind = match intent {
                    Some(intent) => NoticeKind::Refunded { intent },
                    None => NoticeKind::Ignored { event_type: event.event_type },
                };
                return Ok(Self { id, kind });
            }
            "charge.dispute.closed" => {
                // Only which dispute: its outcome is read back from Stripe.
                let object: Option<WireObject> = serde_json::from_value(event.data.object).ok();
                let kind = match object.filter(|o| o.id.starts_with("dp_") && o.id.len() <= 255) {
                    Some(dispute) => NoticeKind::DisputeClosed { dispute_id: dispute.id },
                    None => NoticeKind::Ignored { event_type: event.event_type },
                };
                return Ok(Self { id, kind });
            }
            "charge.dispute.created" => {
                let dispute: Option<WireDispute> = serde_json::from_value(event.data.object).ok();
                let kind = dispute.and_then(|dispute| {
                    let intent = PaymentIntentId::parse(dispute.payment_intent.as_deref()?).ok()?;
                    let currency = kernel::Currency::parse(&dispute.currency.to_ascii_uppercase()).ok()?;
                    let amount = crate::stripe::iso_amount(dispute.amount, currency).ok()?;
                    Some(NoticeKind::Disputed(Dispute { id: dispute.id, intent, amount, reason: dispute.reason }))
                });
                let kind = kind.unwrap_or(NoticeKind::Ignored { event_type: event.event_type });
                return Ok(Self { id, kind });
            }
            _ => return Ok(Self { id, kind: NoticeKind::Ignored { event_type: event.event_type } }),
        };
        let not_an_intent = || NoticeError::NotAPaymentIntent { event_type: event.event_type.clone() };
        let object: WireIntent = serde_json::from_value(event.data.object).map_err(|_| not_an_intent())?;
        let intent = PaymentIntentId::parse(&object.id).map_err(|_| not_an_intent())?;
        let observed = observed.unwrap_or_else(|| {
            Observed::Failed(object.last_payment_error.map(|error| Decline {
                code: error.code.unwrap_or_else(|| "card_declined".to_owned()),
                decline_code: error.decline_code,
            }))
        });
        let order_id = object.metadata.get("order_id").and_then(|id| id.as_str()).and_then(|id| id.parse().ok());
        let kind = match order_id {
            Some(order_id) => NoticeKind::Intent { order_id, intent, observed },
            // Not created by payment (another integration on the same Stripe account).
            None => NoticeKind::Ignored { event_type: event.event_type },
        };
        Ok(Self { id, kind })
    }
}

/// Applies what Stripe observed on `intent` to the order's payment, as the saga's own step would.
pub async fn on_notice(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    order_id: OrderId,
    intent: &PaymentIntentId,
    observed: Observed,
    now: OffsetDateTime,
) -> Result<(), PaymentError> {
    let Some(payment) = store.get(order_id).await? else {
        tracing::warn!(%order_id, payment_intent_id = %intent, "webhook for an order payment never heard of; ignored");
        return Ok(());
    };
    match payment.on_stripe(intent, observed.told()) {
        Heard::Settle => {
            // Stripe's word now, not the event's: the event only says where to look, so a late,
            // out-of-order or forged one changes nothing Stripe does not confirm.
            let status = gateway.retrieve_intent(intent).await?.status;
            settle_status(store, gateway, &payment, intent, status, now).await
        }
        Heard::Abandon => abandon(store, gateway, &payment, Some(intent)).await,
        Heard::FailCanceled => {
            let reason = INTENT_CANCELED.to_owned();
            let settlement = Settlement::Failed { intent: Some(intent.clone()), reason, decline_code: None };
            if let Some(current) = record_settlement(store, &payment, &settlement).await? {
                tracing::info!(%order_id, stage = ?current.stage, "payment moved on meanwhile");
            }
            Ok(())
        }
        Heard::ResumeCapture => {
            tracing::info!(%order_id, payment_intent_id = %intent, "Stripe says the capture went through");
            crate::capture::resume(store, gateway, &payment, intent).await
        }
        Heard::NotYet => Err(PaymentError::Busy { order_id }),
        Heard::ChangedElsewhere => {
            Err(PaymentError::ChangedElsewhere { order_id, intent: intent.clone(), status: IntentStatus::Succeeded })
        }
        Heard::Nothing => {
            tracing::info!(%order_id, payment_intent_id = %intent, stage = ?payment.stage, ?observed,
                "webhook changes nothing: late, duplicate, or about another PaymentIntent");
            Ok(())
        }
    }
}

/// Handles one request to `POST /webhooks/stripe`.
pub async fn handle(
    store: &impl RefundStore,
    gateway: &(impl PaymentGateway + RefundGateway),
    inbox: &impl WebhookInbox,
    secrets: &[SigningSecret],
    request: &Request,
    now: OffsetDateTime,
) -> lambda_http::Response<Body> {
    let body: &[u8] = request.body().as_ref();
    if let Err(refused) = verify(header(request, "stripe-signature"), body, secrets, now) {
        // The reason names what was wrong with the header; nothing of the body.
        tracing::warn!(%refused, "webhook refused: bad Stripe-Signature");
        // Alarmed on: a wrong or rolled secret makes every real webhook a 400 (see template.yaml).
        lambda_glue::metrics::count("WebhooksRefused", 1, ("Service", "payment-webhooks"));
        return Reply::problem(&Problem::new(ProblemKind::MalformedRequest, refused.to_string()));
    }
    let notice = match Notice::parse(body) {
        Ok(notice) => notice,
        Err(unreadable) => {
            tracing::warn!(%unreadable, "signed webhook we cannot read");
            lambda_glue::metrics::count("WebhooksRefused", 1, ("Service", "payment-webhooks"));
            return Reply::problem(&Problem::new(ProblemKind::MalformedRequest, unreadable.to_string()));
        }
    };
    if let NoticeKind::Ignored { event_type } = &notice.kind {
        tracing::info!(stripe_event_id = %notice.id, event_type, "webhook acknowledged; nothing to do");
        return received();
    }
    let lease_until = now + LEASE;
    match inbox.claim_notice(&notice.id, lease_until).await {
        Ok(Claim::Claimed) => {}
        Ok(Claim::Handled) => {
            tracing::info!(stripe_event_id = %notice.id, "webhook already handled; acknowledged");
            return received();
        }
        Ok(Claim::InProgress) => {
            return Reply::problem(&Problem::new(ProblemKind::Conflict, "this event is being handled; retry later"));
        }
        Err(error) => return unavailable(&notice.id, &error),
    }
    let handled = match notice.kind {
        NoticeKind::Intent { order_id, intent, observed } => {
            on_notice(store, gateway, order_id, &intent, observed, now).await
        }
        NoticeKind::Refunded { intent } => refunding::reconcile(store, gateway, &intent, now).await,
        NoticeKind::Disputed(dispute) => refunding::on_dispute(store, gateway, &dispute).await,
        NoticeKind::DisputeClosed { dispute_id } => {
            crate::dispute::on_dispute_closed(store, gateway, &dispute_id).await.map(drop)
        }
        NoticeKind::Ignored { .. } => Ok(()),
    };
    match handled {
        Ok(()) => match inbox.notice_handled(&notice.id).await {
            Ok(()) => received(),
            // Handled, but not marked: the redelivery finds the payment settled and does nothing.
            Err(error) => unavailable(&notice.id, &error),
        },
        Err(error) => {
            if let Err(release) = inbox.release_notice(&notice.id, lease_until).await {
                tracing::warn!(stripe_event_id = %notice.id, error = %release, "could not release the webhook's claim");
            }
            tracing::error!(stripe_event_id = %notice.id, %error, "webhook not handled; Stripe retries it");
            lambda_glue::metrics::count("WebhooksFailed", 1, ("Service", "payment-webhooks"));
            Reply::problem(&Problem::new(ProblemKind::Internal, "the event could not be handled; retry later"))
        }
    }
}

fn received() -> lambda_http::Response<Body> {
    lambda_glue::http::finish(Reply::json(200, &serde_json::json!({ "received": true })))
}

fn unavailable(event: &StripeEventId, error: &impl std::fmt::Display) -> lambda_http::Response<Body> {
    tracing::error!(stripe_event_id = %event, %error, "webhook inbox failed");
    lambda_glue::metrics::count("WebhooksFailed", 1, ("Service", "payment-webhooks"));
    Reply::problem(&Problem::new(ProblemKind::Internal, "the event could not be handled; retry later"))
}

#[cfg(test)]
mod tests {
    use domain_events::Event;
    use domain_events::payment::PaymentVoided;
    use lambda_http::http;

    use super::*;
    use crate::authorize::on_stock_reserved;
    use crate::cancel::on_order_cancelled;
    use crate::model::Stage;
    use crate::testing::{
        Call, FakeStore, FakeStripe, FakeWebhookInbox, Fault, NEEDS_3DS, T0, VISA, authorized, failed,
        place_and_reserve,
    };

    const SECRET: &str = "whsec_local_test";

    fn event(id: &str, event_type: &str, intent: &PaymentIntentId, order_id: OrderId) -> String {
        serde_json::json!({
            "id": id, "object": "event", "type": event_type, "created": T0.unix_timestamp(),
            "data": { "object": {
                "id": intent.as_str(), "object": "payment_intent", "status": "requires_capture",
                "metadata": { "order_id": order_id.to_string() },
                "last_payment_error": if event_type.ends_with("payment_failed") {
                    serde_json::json!({ "code": "payment_intent_authentication_failure" })
                } else { serde_json::Value::Null }
            }}
        })
        .to_string()
    }

    fn request(body: &str, signature: Option<String>) -> Request {
        let mut builder = http::Request::builder().method("POST").uri("/webhooks/stripe");
        if let Some(signature) = signature {
            builder = builder.header("stripe-signature", signature);
        }
        builder.body(Body::Text(body.to_owned())).unwrap()
    }

    fn signed(body: &str) -> Request {
        let secret = SigningSecret::new(SECRET).unwrap();
        request(body, Some(secret.header(T0.unix_timestamp(), body.as_bytes())))
    }

    struct Shop {
        store: FakeStore,
        stripe: FakeStripe,
        inbox: FakeWebhookInbox,
        order_id: OrderId,
    }

    impl Shop {
        /// An order whose card asked for 3-D Secure: its payment awaits the customer.
        async fn awaiting_3ds() -> (Self, PaymentIntentId) {
            let shop = Self {
                store: FakeStore::default(),
                stripe: FakeStripe::default(),
                inbox: FakeWebhookInbox::at(T0),
                order_id: OrderId::new(),
            };
            place_and_reserve(&shop.store, &shop.stripe, shop.order_id, NEEDS_3DS).await;
            let intent = shop.stripe.only_intent();
            (shop, intent)
        }

        async fn deliver(&self, request: &Request) -> u16 {
            let secrets = [SigningSecret::new(SECRET).unwrap()];
            handle(&self.store, &self.stripe, &self.inbox, &secrets, request, T0).await.status().as_u16()
        }

        /// The events after `PaymentActionRequired`.
        fn events_since_action(&self) -> Vec<Event> {
            self.store.events().into_iter().skip(1).collect()
        }
    }

    #[test]
    fn a_payment_intent_event_reads_as_what_stripe_observed_on_an_order() {
        let (order_id, intent) = (OrderId::new(), PaymentIntentId::parse("pi_1").unwrap());

        let capturable =
            Notice::parse(event("evt_1", "payment_intent.amount_capturable_updated", &intent, order_id).as_bytes());
        let failed = Notice::parse(event("evt_2", "payment_intent.payment_failed", &intent, order_id).as_bytes());

        assert_eq!(
            capturable.unwrap(),
            Notice {
                id: StripeEventId::parse("evt_1").unwrap(),
                kind: NoticeKind::Intent { order_id, intent: intent.clone(), observed: Observed::Capturable }
            }
        );
        let decline = Decline { code: "payment_intent_authentication_failure".into(), decline_code: None };
        assert_eq!(
            failed.unwrap().kind,
            NoticeKind::Intent { order_id, intent, observed: Observed::Failed(Some(decline)) }
        );
    }

    #[test]
    fn other_events_and_intents_that_are_not_an_orders_are_only_acknowledged() {
        let refunded = br#"{"id":"evt_3","type":"charge.refunded","data":{"object":{"id":"ch_1"}}}"#;
        let foreign =
            br#"{"id":"evt_4","type":"payment_intent.succeeded","data":{"object":{"id":"pi_9","metadata":{}}}}"#;

        assert_eq!(Notice::parse(refunded).unwrap().kind, NoticeKind::Ignored { event_type: "charge.refunded".into() });
        assert_eq!(
            Notice::parse(foreign).unwrap().kind,
            NoticeKind::Ignored { event_type: "payment_intent.succeeded".into() }
        );
        assert_eq!(Notice::parse(b"not json"), Err(NoticeError::NotAnEvent));
        assert_eq!(Notice::parse(br#"{"id":"x","type":"t","data":{"object":{}}}"#), Err(NoticeError::NotAnEvent));
    }

    #[tokio::test]
    async fn amount_capturable_updated_authorizes_a_payment_awaiting_3d_secure() {
        let (shop, intent) = Shop::awaiting_3ds().await;
        shop.stripe.authenticate(&intent, true);

        let status = shop
            .deliver(&signed(&event("evt_1", "payment_intent.amount_capturable_updated", &intent, shop.order_id)))
            .await;

        assert_eq!(status, 200);
        assert_eq!(shop.store.payment(shop.order_id).stage, Stage::Authorized { intent: intent.clone() });
        assert_eq!(shop.events_since_action(), vec![authorized(shop.order_id, &intent)]);
    }

    #[tokio::test]
    async fn payment_failed_fails_a_payment_awaiting_3d_secure_with_stripes_code() {
        let (shop, intent) = Shop::awaiting_3ds().await;
        shop.stripe.authenticate(&intent, false);

        let status =
            shop.deliver(&signed(&event("evt_1", "payment_intent.payment_failed", &intent, shop.order_id))).await;

        assert_eq!(status, 200);
        assert_eq!(shop.store.payment(shop.order_id).stage, Stage::Failed);
        assert_eq!(
            shop.events_since_action(),
            vec![failed(shop.order_id, "payment_intent_authentication_failure", None)]
        );
    }

    #[tokio::test]
    async fn a_webhook_replayed_five_times_has_one_effect() {
        let (shop, intent) = Shop::awaiting_3ds().await;
        shop.stripe.authenticate(&intent, true);
        let body = event("evt_1", "payment_intent.amount_capturable_updated", &intent, shop.order_id);

        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(shop.deliver(&signed(&body)).await);
        }

        assert_eq!(statuses, vec![200; 5]);
        assert_eq!(shop.events_since_action(), vec![authorized(shop.order_id, &intent)]);
    }

    #[tokio::test]
    async fn an_event_another_delivery_is_handling_is_answered_409_and_handled_once_by_the_first() {
        let (shop, intent) = Shop::awaiting_3ds().await;
        shop.stripe.authenticate(&intent, true);
        let body = event("evt_1", "payment_intent.amount_capturable_updated", &intent, shop.order_id);
        // Another delivery of evt_1 claimed it a moment ago and is still at work.
        let claimed = shop.inbox.claim_notice(&StripeEventId::parse("evt_1").unwrap(), T0 + LEASE).await.unwrap();

        let status = shop.deliver(&signed(&body)).await;

        assert_eq!((claimed, status), (Claim::Claimed, 409), "Stripe retries it later");
        assert!(shop.events_since_action().is_empty(), "not handled twice at once");
    }

    #[tokio::test]
    async fn a_delivery_that_failed_gives_its_claim_back_and_stripes_retry_is_handled() {
        let (shop, intent) = Shop::awaiting_3ds().await;
        shop.stripe.authenticate(&intent, true);
        let body = event("evt_1", "payment_intent.amount_capturable_updated", &intent, shop.order_id);
        shop.stripe.fail_once(Call::Retrieve, Fault::Unreachable);

        let failed = shop.deliver(&signed(&body)).await;
        let retried = shop.deliver(&signed(&body)).await;

        assert_eq!((failed, retried), (500, 200), "the retry is not refused as in progress");
        assert_eq!(shop.events_since_action(), vec![authorized(shop.order_id, &intent)]);
    }

    #[tokio::test]
    async fn a_signed_event_stripe_does_not_confirm_changes_nothing() {
        // Signed with the endpoint's secret, but the challenge was never passed: Stripe's
        // PaymentIntent still requires action (a leaked secret, or a replay from another test).
        let (shop, intent) = Shop::awaiting_3ds().await;

        let status = shop
            .deliver(&signed(&event("evt_1", "payment_intent.amount_capturable_updated", &intent, shop.order_id)))
            .await;

        assert_eq!(status, 200);
        assert_eq!(shop.store.payment(shop.order_id).stage, Stage::AwaitingAction { intent });
        assert!(shop.events_since_action().is_empty(), "nothing authorized on the event's word alone");
    }

    #[tokio::test]
    async fn a_failed_challenge_cancels_the_payment_intent_so_it_cannot_be_confirmed_again() {
        let (shop, intent) = Shop::awaiting_3ds().await;
        shop.stripe.authenticate(&intent, false);

        shop.deliver(&signed(&event("evt_1", "payment_intent.payment_failed", &intent, shop.order_id))).await;

        assert_eq!(shop.store.payment(shop.order_id).stage, Stage::Failed);
        assert_eq!(shop.stripe.status(&intent), IntentStatus::Canceled, "not left open with its client secret");
    }

    #[tokio::test]
    async fn forged_stale_or_unsigned_webhooks_are_refused_and_change_nothing() {
        let (shop, intent) = Shop::awaiting_3ds().await;
        let body = event("evt_1", "payment_intent.amount_capturable_updated", &intent, shop.order_id);
        let forged = SigningSecret::new("whsec_attacker").unwrap().header(T0.unix_timestamp(), body.as_bytes());
        let stale = SigningSecret::new(SECRET).unwrap().header(T0.unix_timestamp() - 301, body.as_bytes());

        let statuses = [
            shop.deliver(&request(&body, Some(forged))).await,
            shop.deliver(&request(&body, Some(stale))).await,
            shop.deliver(&request(&body, None)).await,
        ];

        assert_eq!(statuses, [400; 3]);
        assert_eq!(shop.store.payment(shop.order_id).stage, Stage::AwaitingAction { intent });
        assert!(shop.events_since_action().is_empty());
    }

    #[tokio::test]
    async fn a_late_failure_after_the_authorization_changes_nothing() {
        let (shop, intent) = Shop::awaiting_3ds().await;
        let order_id = shop.order_id;
        shop.stripe.authenticate(&intent, true);

        shop.deliver(&signed(&event("evt_1", "payment_intent.amount_capturable_updated", &intent, order_id))).await;
        shop.deliver(&signed(&event("evt_2", "payment_intent.payment_failed", &intent, order_id))).await;

        assert_eq!(shop.store.payment(order_id).stage, Stage::Authorized { intent: intent.clone() });
        assert_eq!(shop.events_since_action(), vec![authorized(order_id, &intent)]);
    }

    #[tokio::test]
    async fn a_webhook_that_overtakes_the_sagas_own_step_converges_with_it() {
        let (store, stripe, inbox, order_id) =
            (FakeStore::default(), FakeStripe::default(), FakeWebhookInbox::default(), OrderId::new());
        crate::authorize::on_order_placed(&store, &stripe, &crate::testing::placed(order_id, VISA), T0).await.unwrap();
        // Stripe holds the amount, but the confirmation's answer is lost: the saga will retry.
        stripe.fail_once(crate::testing::Call::Confirm, crate::testing::Fault::AnswerLost);
        let crashed = on_stock_reserved(&store, &stripe, order_id, T0).await;
        let intent = stripe.only_intent();
        let secrets = [SigningSecret::new(SECRET).unwrap()];

        let body = event("evt_1", "payment_intent.amount_capturable_updated", &intent, order_id);
        let status = handle(&store, &stripe, &inbox, &secrets, &signed(&body), T0).await.status();
        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();

        assert!(crate::testing::is_transient(crashed));
        assert_eq!(status, 200);
        assert_eq!(stripe.confirmations(), 1);
        assert_eq!(store.payment(order_id).stage, Stage::Authorized { intent: intent.clone() });
        assert_eq!(store.events(), vec![authorized(order_id, &intent)], "announced once");
    }

    #[tokio::test]
    async fn an_order_cancelled_while_awaiting_3d_secure_cancels_its_payment_intent_and_a_late_success_changes_nothing()
    {
        let (shop, intent) = Shop::awaiting_3ds().await;
        let order_id = shop.order_id;

        on_order_cancelled(&shop.store, &shop.stripe, order_id).await.unwrap();
        let late =
            shop.deliver(&signed(&event("evt_1", "payment_intent.amount_capturable_updated", &intent, order_id))).await;

        assert_eq!(late, 200);
        assert_eq!(shop.stripe.status(&intent), IntentStatus::Canceled);
        assert_eq!(shop.store.payment(order_id).stage, Stage::Failed);
        assert_eq!(shop.events_since_action(), vec![failed(order_id, "cancelled", None)]);
    }

    #[tokio::test]
    async fn a_capture_stripe_reports_before_our_record_is_recorded_once() {
        let (store, stripe, inbox, order_id) =
            (FakeStore::default(), FakeStripe::default(), FakeWebhookInbox::default(), OrderId::new());
        place_and_reserve(&store, &stripe, order_id, VISA).await;
        let intent = stripe.only_intent();
        store.record(order_id, |payment| payment.stage = Stage::Capturing { intent: intent.clone() });
        stripe.set_status(&intent, IntentStatus::Succeeded);
        let secrets = [SigningSecret::new(SECRET).unwrap()];

        let body = event("evt_9", "payment_intent.succeeded", &intent, order_id);
        let status = handle(&store, &stripe, &inbox, &secrets, &signed(&body), T0).await.status();

        assert_eq!(status, 200);
        assert_eq!(store.payment(order_id).stage, Stage::Captured { intent: intent.clone() });
        assert!(!store.events().iter().any(|e| matches!(e, Event::PaymentVoided(PaymentVoided { .. }))));
        assert!(matches!(store.events().last(), Some(Event::PaymentCaptured(_))));
    }

    #[tokio::test]
    async fn a_refund_that_failed_after_pending_is_announced_once_from_stripes_word() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = crate::testing::captured_order(&store, &stripe).await;
        stripe.refunds_start_pending();
        let ask = crate::refunding::Ask {
            order_id,
            source: crate::refund::Source::Key("k1".into()),
            amount: Some(700),
            reason: domain_events::payment::RefundReason::RequestedByCustomer,
            note: None,
            request: None,
        };
        crate::refunding::request_refund(&store, &stripe, ask, T0).await.unwrap();
        let re = stripe.refunds_of(&intent)[0].id.clone();
        let (inbox, secrets) = (FakeWebhookInbox::at(T0), [SigningSecret::new(SECRET).unwrap()]);
        // The event's own word (failed) before Stripe's: only Stripe's status counts.
        let updated = |id: &str, event_type: &str| {
            serde_json::json!({ "id": id, "object": "event", "type": event_type,
                "data": { "object": { "id": re, "object": "refund", "payment_intent": intent.as_str(),
                    "status": "failed", "failure_reason": "lost_or_stolen_card" } } })
            .to_string()
        };
        let failures =
            |store: &FakeStore| store.events().iter().filter(|e| matches!(e, Event::RefundFailed(_))).count();

        let early = handle(&store, &stripe, &inbox, &secrets, &signed(&updated("evt_u1", "refund.failed")), T0).await;
        let before = failures(&store);
        stripe.end_refund(&re, "failed", Some("lost_or_stolen_card"));
        let mut statuses = vec![early.status().as_u16()];
        for (id, event_type) in
            [("evt_u2", "charge.refund.updated"), ("evt_u3", "refund.updated"), ("evt_u2", "charge.refund.updated")]
        {
            let reply = handle(&store, &stripe, &inbox, &secrets, &signed(&updated(id, event_type)), T0).await;
            statuses.push(reply.status().as_u16());
        }

        assert_eq!(statuses, vec![200; 4]);
        assert_eq!((before, failures(&store)), (0, 1), "nothing on the event's word, then once");
        assert!(matches!(store.events().last(), Some(Event::RefundFailed(f))
            if f.order_id == order_id && f.amount.amount() == 700 && f.failure_reason == "lost_or_stolen_card"
                && f.stripe_refund_id.as_deref() == Some(re.as_str())));
        assert_eq!(store.payment(order_id).refunds.reserved, 0, "refundable again");
    }

    #[tokio::test]
    async fn a_dashboard_refund_and_a_dispute_are_each_recorded_once_however_often_stripe_tells() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = crate::testing::captured_order(&store, &stripe).await;
        let inbox = FakeWebhookInbox::at(T0);
        let secrets = [SigningSecret::new(SECRET).unwrap()];
        stripe.refund_in_dashboard(&intent, kernel::Money::new(400, kernel::Currency::USD).unwrap());
        let refunded = |id: &str| {
            serde_json::json!({ "id": id, "object": "event", "type": "charge.refunded",
                "data": { "object": { "id": "ch_1", "object": "charge", "payment_intent": intent.as_str() } } })
            .to_string()
        };
        let disputed = |id: &str| {
            serde_json::json!({ "id": id, "object": "event", "type": "charge.dispute.created",
                "data": { "object": { "id": "dp_1", "object": "dispute", "payment_intent": intent.as_str(),
                    "amount": 2500, "currency": "usd", "reason": "fraudulent" } } })
            .to_string()
        };

        let mut statuses = Vec::new();
        for body in [refunded("evt_r1"), refunded("evt_r1"), refunded("evt_r2"), disputed("evt_d1"), disputed("evt_d2")]
        {
            statuses.push(handle(&store, &stripe, &inbox, &secrets, &signed(&body), T0).await.status().as_u16());
        }

        assert_eq!(statuses, vec![200; 5]);
        let events = store.events();
        let refunds: Vec<_> = events.iter().filter(|e| matches!(e, Event::RefundIssued(_))).collect();
        let disputes: Vec<_> = events.iter().filter(|e| matches!(e, Event::PaymentDisputed(_))).collect();
        assert_eq!((refunds.len(), disputes.len()), (1, 1));
        assert!(matches!(refunds[0], Event::RefundIssued(r) if r.order_id == order_id && r.amount.amount() == 400
            && r.reason == domain_events::payment::RefundReason::Other));
    }

    #[tokio::test]
    async fn a_dispute_closing_is_announced_once_with_the_outcome_stripe_states_not_the_events() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = crate::testing::captured_order(&store, &stripe).await;
        let inbox = FakeWebhookInbox::at(T0);
        let secrets = [SigningSecret::new(SECRET).unwrap()];
        let dispute = stripe.dispute(&intent, "under_review");
        // The event body claims `won`; only Stripe's dispute is believed.
        let closed = |id: &str| {
            serde_json::json!({ "id": id, "object": "event", "type": "charge.dispute.closed",
                "data": { "object": { "id": dispute, "object": "dispute", "payment_intent": intent.as_str(),
                    "amount": 2500, "currency": "usd", "status": "won" } } })
            .to_string()
        };

        let early = handle(&store, &stripe, &inbox, &secrets, &signed(&closed("evt_c0")), T0).await.status();
        stripe.close_dispute(&dispute, "lost");
        let mut statuses = Vec::new();
        for id in ["evt_c1", "evt_c1", "evt_c2"] {
            statuses.push(handle(&store, &stripe, &inbox, &secrets, &signed(&closed(id)), T0).await.status().as_u16());
        }

        assert_eq!(
            (early.as_u16(), statuses),
            (200, vec![200; 3]),
            "still open at first: acknowledged, nothing announced"
        );
        let closings: Vec<_> = store
            .events()
            .into_iter()
            .filter_map(|e| if let Event::PaymentDisputeClosed(c) = e { Some(c) } else { None })
            .collect();
        assert_eq!(closings.len(), 1, "{closings:?}");
        assert_eq!(
            (closings[0].order_id, closings[0].outcome),
            (order_id, domain_events::payment::DisputeOutcome::Lost)
        );
    }
}
