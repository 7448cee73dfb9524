//! Payment's admin HTTP API: `POST /admin/orders/{id}/refunds` (binary `payment-admin`).
//!
//! The handler parses the request and maps the outcome; what may be refunded is
//! [`crate::refund`]'s, and how a refund is made once is [`crate::refunding`]'s. The
//! `Idempotency-Key` follows checkout's rules: required, 1 to 255 visible ASCII characters;
//! the same key with the same body answers the same refund (carrying on a refund a crash left
//! pending), with another body 422. Keys are per order. Stripe or the table failing right now
//! (an outage, a timeout, a 5xx, throttling) answers 503 [`UNAVAILABLE`] with `Retry-After`: the
//! refund, if reserved, is pending and the same request with the same key finishes it.

use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use domain_events::payment::RefundReason;
use kernel::{FieldError, Money, OrderId, Problem, ProblemKind, RefundId, ReturnId};
use lambda_glue::Caller;
use lambda_glue::http::{self, ApiResult, Reply};
use lambda_glue::logging::cause_chain;

use crate::error::PaymentError;
use crate::ports::{RefundGateway, RefundStore};
use crate::refund::{Refund, RefundStatus, Source, Unrefundable};
use crate::refunding::{Ask, RefundError, request_refund};

/// A refund body is a few dozen bytes; the note is at most [`MAX_NOTE`] characters.
const MAX_BODY_BYTES: usize = 4 * 1024;
const MAX_NOTE: usize = 500;

/// `/problems/refund-exceeds-captured` (422): more than is left of the captured total.
pub const EXCEEDS_CAPTURED: &str = "/problems/refund-exceeds-captured";
/// `/problems/refund-before-capture` (409): nothing captured yet; cancel the order instead.
pub const BEFORE_CAPTURE: &str = "/problems/refund-before-capture";
/// `/problems/refund-refused` (422): Stripe refused the refund (its code in `detail`).
pub const REFUSED: &str = "/problems/refund-refused";
/// `/problems/refund-unavailable` (503): Stripe or payment's table is failing right now (an
/// outage, a timeout, a 5xx, throttling); the refund, if it was reserved, is pending and the same
/// request with the same `Idempotency-Key` (or payment's sweep) finishes it, once.
pub const UNAVAILABLE: &str = "/problems/refund-unavailable";
/// The `Retry-After` of a [`UNAVAILABLE`] answer, in seconds: about when the sweep would carry on
/// a reserved refund by itself ([`crate::refund::REFUND_TIMEOUT`]).
const RETRY_AFTER_SECONDS: &str = "60";

/// Handles one API Gateway request.
pub async fn handle(
    store: &impl RefundStore,
    gateway: &impl RefundGateway,
    request: &Request,
    now: OffsetDateTime,
) -> Response<Body> {
    http::finish(route(store, gateway, request, now).await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    amount: Option<i64>,
    reason: RefundReason,
    note: Option<String>,
}

/// A refund as the API shows it.
#[derive(Debug, Serialize)]
struct RefundView<'a> {
    id: RefundId,
    order_id: OrderId,
    amount: Money,
    reason: RefundReason,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    return_id: Option<ReturnId>,
    status: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    stripe_refund_id: Option<&'a str>,
    /// Everything refunded on the order with this refund.
    #[serde(skip_serializing_if = "Option::is_none")]
    refunded_total: Option<Money>,
}

impl<'a> RefundView<'a> {
    fn of(refund: &'a Refund) -> Self {
        let refunded_total = match &refund.status {
            RefundStatus::Succeeded { refunded_total, .. } => Some(*refunded_total),
            _ => None,
        };
        Self {
            id: refund.refund_id,
            order_id: refund.order_id,
            amount: refund.amount,
            reason: refund.reason,
            note: refund.note.as_deref(),
            return_id: refund.return_id,
            status: refund.status.as_str(),
            created_at: refund.created_at,
            stripe_refund_id: refund.stripe_refund_id(),
            refunded_total,
        }
    }
}

async fn route(
    store: &impl RefundStore,
    gateway: &impl RefundGateway,
    request: &Request,
    now: OffsetDateTime,
) -> ApiResult {
    match http::route_key(request) {
        "POST /admin/orders/{id}/refunds" => {
            Caller::admin(request)?;
            let raw = http::path_param(request, "id")?;
            let order_id: OrderId = raw.parse().map_err(|_| not_found(raw))?;
            let key = http::idempotency_key(request, "retries refund once")?;
            let body: RefundBody = http::json_body(request, MAX_BODY_BYTES)?;
            // The canonical form of the body (keys sorted) is what a retry must repeat.
            let canonical: serde_json::Value = http::json_body(request, MAX_BODY_BYTES)?;
            validate(&body)?;
            let ask = Ask {
                order_id,
                source: Source::Key(key.to_owned()),
                amount: body.amount,
                reason: body.reason,
                note: body.note.filter(|note| !note.trim().is_empty()),
                request: Some(canonical.to_string()),
            };
            let refund = match request_refund(store, gateway, ask, now).await {
                Ok(refund) => refund,
                Err(error) => return refused(error, raw),
            };
            match &refund.status {
                RefundStatus::Failed { reason } => Err(refund_problem(
                    REFUSED,
                    "Stripe refused the refund",
                    422,
                    format!("Stripe refused refund {} ({reason}); nothing was refunded.", refund.refund_id),
                )),
                _ => Reply::json(201, &RefundView::of(&refund)),
            }
        }
        other => Err(Problem::new(ProblemKind::NotFound, format!("Payment has no route `{other}`."))),
    }
}

fn validate(body: &RefundBody) -> Result<(), Problem> {
    let mut errors = Vec::new();
    if body.amount.is_some_and(|amount| !(1..Money::MAX_AMOUNT).contains(&amount)) {
        errors.push(FieldError::new("/amount", "must be a whole number of minor units, 1 or more"));
    }
    if body.note.as_ref().is_some_and(|note| note.chars().count() > MAX_NOTE) {
        errors.push(FieldError::new("/note", format!("must be at most {MAX_NOTE} characters")));
    }
    if errors.is_empty() { Ok(()) } else { Err(Problem::invalid_fields(errors)) }
}

fn not_found(raw: &str) -> Problem {
    Problem::new(ProblemKind::NotFound, format!("There is no order `{raw}` with a payment."))
}

/// A problem of payment's own type.
fn refund_problem(type_uri: &str, title: &str, status: u16, detail: String) -> Problem {
    Problem { type_uri: type_uri.to_owned(), title: title.to_owned(), status, detail: Some(detail), errors: Vec::new() }
}

/// The answer to a refund that was not made: its problem, with `Retry-After` when Stripe or the
/// table is failing right now.
fn refused(error: RefundError, raw_id: &str) -> ApiResult {
    let problem = problem(error, raw_id);
    if problem.type_uri == UNAVAILABLE {
        return Reply::with_header(Reply::problem(&problem), "retry-after", RETRY_AFTER_SECONDS);
    }
    Err(problem)
}

/// The single mapping from refund errors to HTTP problems.
fn problem(error: RefundError, raw_id: &str) -> Problem {
    match error {
        RefundError::NotFound(_) => not_found(raw_id),
        RefundError::KeyReused => Problem::new(
            ProblemKind::ValidationFailed,
            "This Idempotency-Key was already used with a different request body; use a new key for a new refund.",
        )
        .with_errors(vec![FieldError::new("header:Idempotency-Key", "already used with a different body")]),
        RefundError::Unrefundable(refused @ Unrefundable::NotCaptured { .. }) => refund_problem(
            BEFORE_CAPTURE,
            "Nothing was captured to refund",
            409,
            format!("The order cannot be refunded: {refused}."),
        ),
        RefundError::Unrefundable(refused @ Unrefundable::Exceeds { .. }) => refund_problem(
            EXCEEDS_CAPTURED,
            "The refund exceeds what was captured",
            422,
            format!("The refund cannot be made: {refused}."),
        )
        .with_errors(vec![FieldError::new("/amount", "exceeds what is left to refund")]),
        RefundError::Busy(_) => Problem::new(
            ProblemKind::Conflict,
            "Other refunds of the order, or this one, are being made right now; try again with the same key.",
        ),
        // Stripe or the table is failing right now: the refund, if reserved, is pending; the same
        // request with the same key (or the sweep) finishes it. The cause is logged, not told.
        RefundError::Failed(error) if error.is_transient() => {
            tracing::warn!(order_id = raw_id, error = %cause_chain(&error), "refund not finished; answered 503");
            let failing = match error {
                PaymentError::Store(_) => "Payment's storage is busy",
                PaymentError::Stripe(_) => "Stripe could not be reached or failed",
                _ => "The payment is busy",
            };
            refund_problem(
                UNAVAILABLE,
                "The refund cannot be finished right now",
                503,
                format!(
                    "{failing}. If the refund was recorded it is pending, and nothing is refunded twice: \
                     send the same request with the same Idempotency-Key again in a minute to finish it."
                ),
            )
        }
        // Retrying cannot mend it (a broken Stripe call, a payment that cannot be): an opaque 500,
        // the cause chain logged.
        RefundError::Failed(error) => http::internal(&error),
    }
}

#[cfg(test)]
mod tests {
    use lambda_http::http::Request as HttpRequest;
    use lambda_http::request::from_str;

    use adapters::dynamo::Unavailable;

    use super::*;
    use crate::ports::{GatewayError, StoreError};
    use crate::testing::{Call, FakeStore, FakeStripe, Fault, T0, captured_order};

    fn request(order_id: &str, key: Option<&str>, body: &str, admin: bool) -> Request {
        let groups = if admin { "[admin]" } else { "[]" };
        let event = serde_json::json!({
            "version": "2.0", "routeKey": "POST /admin/orders/{id}/refunds",
            "rawPath": format!("/admin/orders/{order_id}/refunds"), "rawQueryString": "",
            "headers": match key {
                Some(key) => serde_json::json!({ "content-type": "application/json", "idempotency-key": key }),
                None => serde_json::json!({ "content-type": "application/json" }),
            },
            "pathParameters": { "id": order_id },
            "requestContext": {
                "accountId": "1", "apiId": "api", "domainName": "localhost", "domainPrefix": "localhost",
                "http": { "method": "POST", "path": format!("/admin/orders/{order_id}/refunds"),
                          "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test" },
                "requestId": "r", "routeKey": "POST /admin/orders/{id}/refunds", "stage": "$default",
                "time": "22/Nov/2026:10:00:00 +0000", "timeEpoch": 0,
                "authorizer": { "jwt": { "claims": { "sub": "root", "cognito:groups": groups }, "scopes": null } }
            },
            "body": body, "isBase64Encoded": false
        });
        let request: HttpRequest<Body> = from_str(&event.to_string()).unwrap();
        request
    }

    async fn send(store: &FakeStore, stripe: &FakeStripe, request: &Request) -> (u16, serde_json::Value) {
        let response = handle(store, stripe, request, T0).await;
        let status = response.status().as_u16();
        let body = serde_json::from_str(http::body_text(&response)).unwrap_or_default();
        (status, body)
    }

    #[tokio::test]
    async fn a_partial_then_a_full_refund_and_nothing_more() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        let id = order_id.to_string();

        let partial =
            send(&store, &stripe, &request(&id, Some("k1"), r#"{"amount":1000,"reason":"duplicate"}"#, true)).await;
        let rest =
            send(&store, &stripe, &request(&id, Some("k2"), r#"{"reason":"requested_by_customer"}"#, true)).await;
        let more = send(&store, &stripe, &request(&id, Some("k3"), r#"{"amount":1,"reason":"other"}"#, true)).await;

        assert_eq!((partial.0, partial.1["amount"]["amount"].as_i64()), (201, Some(1000)));
        assert_eq!((rest.0, rest.1["amount"]["amount"].as_i64()), (201, Some(1500)));
        assert_eq!(rest.1["refunded_total"]["amount"], 2500);
        assert!(rest.1["stripe_refund_id"].as_str().is_some_and(|id| id.starts_with("re_")));
        assert_eq!((more.0, more.1["type"].as_str()), (422, Some(EXCEEDS_CAPTURED)));
        let at_stripe: i64 = stripe.refunds_of(&intent).iter().map(|made| made.amount.amount()).sum();
        assert_eq!(at_stripe, 2500);
    }

    #[tokio::test]
    async fn a_replay_with_its_key_answers_the_same_refund_and_another_body_is_refused() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        let id = order_id.to_string();
        let body = r#"{"amount":700,"reason":"requested_by_customer","note":"scratched"}"#;

        let first = send(&store, &stripe, &request(&id, Some("same"), body, true)).await;
        let again = send(&store, &stripe, &request(&id, Some("same"), body, true)).await;
        let other = send(&store, &stripe, &request(&id, Some("same"), r#"{"amount":1,"reason":"other"}"#, true)).await;

        assert_eq!((first.0, again.0), (201, 201));
        assert_eq!(first.1, again.1);
        assert_eq!((other.0, other.1["type"].as_str()), (422, Some("/problems/validation-error")));
        assert_eq!(stripe.refunds_of(&intent).len(), 1, "one refund at Stripe");
    }

    #[tokio::test]
    async fn a_refund_answers_with_the_time_it_reads_back_with_so_its_replay_is_identical() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, _) = captured_order(&store, &stripe).await;
        let request = request(&order_id.to_string(), Some("k"), r#"{"amount":100,"reason":"other"}"#, true);
        let now = T0 + time::Duration::milliseconds(250);

        let first = handle(&store, &stripe, &request, now).await;
        let first: serde_json::Value = serde_json::from_str(http::body_text(&first)).unwrap();

        // The table keeps epoch seconds: what a replay reads back.
        assert_eq!(first["created_at"], "2026-11-22T10:00:00Z");
    }

    #[tokio::test]
    async fn a_retry_that_meets_its_first_attempt_still_at_stripe_is_a_409_to_try_again_not_a_500() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        let request = request(&order_id.to_string(), Some("k"), r#"{"amount":700,"reason":"other"}"#, true);
        stripe.fail_once(Call::Refund, Fault::KeyInUse);

        let racing = send(&store, &stripe, &request).await;
        let retried = send(&store, &stripe, &request).await;

        assert_eq!((racing.0, racing.1["type"].as_str()), (409, Some("/problems/conflict")), "{}", racing.1);
        assert_eq!((retried.0, retried.1["amount"]["amount"].as_i64()), (201, Some(700)));
        assert_eq!(stripe.refunds_of(&intent).len(), 1);
    }

    #[tokio::test]
    async fn a_refund_while_stripe_is_unreachable_is_a_503_to_retry_with_the_same_key_not_a_500() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        let request = request(&order_id.to_string(), Some("k"), r#"{"amount":700,"reason":"other"}"#, true);
        stripe.fail_once(Call::Refund, Fault::Unreachable);

        let outage = handle(&store, &stripe, &request, T0).await;
        let retried = send(&store, &stripe, &request).await;

        let body: serde_json::Value = serde_json::from_str(http::body_text(&outage)).unwrap_or_default();
        assert_eq!((outage.status().as_u16(), body["type"].as_str()), (503, Some(UNAVAILABLE)), "{body}");
        assert_eq!(outage.headers()["content-type"], "application/problem+json");
        assert_eq!(outage.headers()["retry-after"], RETRY_AFTER_SECONDS);
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("pending") && detail.contains("same Idempotency-Key"), "{detail}");
        assert_eq!((retried.0, retried.1["amount"]["amount"].as_i64()), (201, Some(700)), "{}", retried.1);
        assert_eq!(stripe.refunds_of(&intent).len(), 1, "one refund at Stripe");
    }

    /// What payment's store gives when DynamoDB answers `status` with error code `code`.
    fn storage_answered(status: u16, code: &str) -> RefundError {
        use aws_sdk_dynamodb::error::SdkError;
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
        use aws_smithy_runtime_api::http::{Response, StatusCode};
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::error::ErrorMetadata;

        let error = TransactWriteItemsError::generic(ErrorMetadata::builder().code(code).build());
        let response = Response::new(StatusCode::try_from(status).expect("a status"), SdkBody::empty());
        RefundError::from(StoreError::Unavailable(Unavailable::from(SdkError::service_error(error, response))))
    }

    /// `problem(error)` and the lines it logged.
    fn problem_logged(error: RefundError) -> (Problem, String) {
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).finish();
        let problem = tracing::subscriber::with_default(subscriber, || problem(error, "ord"));
        let logged =
            String::from_utf8_lossy(&lines.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_owned();
        (problem, logged)
    }

    #[test]
    fn storage_throttling_is_a_503_too_and_what_retrying_cannot_mend_stays_an_opaque_500_logged_as_an_error() {
        let order_id = OrderId::new();
        let throttled = storage_answered(400, "ThrottlingException");
        let failing = storage_answered(500, "InternalServerError");
        let invalid = storage_answered(400, "ValidationException");
        let corrupt = RefundError::from(StoreError::Corrupt { order_id, detail: "no captured total".into() });
        let misconfigured = RefundError::from(GatewayError::Misconfigured("HTTP 401".into()));

        let (throttled, throttled_log) = problem_logged(throttled);
        let (failing, _) = problem_logged(failing);
        let (invalid, invalid_log) = problem_logged(invalid);
        let (corrupt, misconfigured) = (problem(corrupt, "ord"), problem(misconfigured, "ord"));

        assert_eq!((throttled.status, throttled.type_uri.as_str()), (503, UNAVAILABLE));
        assert!(throttled.detail.as_deref().is_some_and(|detail| !detail.contains("Throttling")), "{throttled:?}");
        assert!(throttled_log.contains("WARN") && throttled_log.contains("ThrottlingException"), "{throttled_log}");
        assert_eq!((failing.status, failing.type_uri.as_str()), (503, UNAVAILABLE));
        assert_eq!((invalid.status, invalid.type_uri.as_str()), (500, "/problems/internal-error"), "{invalid:?}");
        assert!(invalid_log.contains("ERROR") && invalid_log.contains("ValidationException"), "{invalid_log}");
        assert_eq!((corrupt.status, corrupt.type_uri.as_str()), (500, "/problems/internal-error"));
        assert_eq!((misconfigured.status, misconfigured.type_uri.as_str()), (500, "/problems/internal-error"));
    }

    #[tokio::test]
    async fn a_refund_before_the_capture_is_refused_and_says_to_cancel() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        crate::testing::place_and_reserve(&store, &stripe, order_id, crate::testing::VISA).await;

        let (status, body) =
            send(&store, &stripe, &request(&order_id.to_string(), Some("k"), r#"{"reason":"other"}"#, true)).await;

        assert_eq!((status, body["type"].as_str()), (409, Some(BEFORE_CAPTURE)));
        assert!(body["detail"].as_str().is_some_and(|detail| detail.contains("cancel the order")));
    }

    #[tokio::test]
    async fn a_refund_stripe_refuses_is_a_422_refund_refused_and_its_key_answers_the_same() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        let request = request(&order_id.to_string(), Some("k"), r#"{"amount":700,"reason":"other"}"#, true);
        stripe.fail_once(Call::Refund, Fault::Refused("charge_disputed"));

        let refused = send(&store, &stripe, &request).await;
        let again = send(&store, &stripe, &request).await;

        assert_eq!((refused.0, refused.1["type"].as_str()), (422, Some(REFUSED)), "{}", refused.1);
        assert!(refused.1["detail"].as_str().is_some_and(|detail| detail.contains("charge_disputed")));
        assert_eq!(again, refused, "the same key answers the same");
        assert!(stripe.refunds_of(&intent).is_empty(), "nothing refunded at Stripe");
    }

    #[tokio::test]
    async fn bad_requests_are_problems_never_500s() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, _) = captured_order(&store, &stripe).await;
        let id = order_id.to_string();

        let cases = [
            (request(&id, Some("k"), r#"{"reason":"other"}"#, false), 403),
            (request(&id, None, r#"{"reason":"other"}"#, true), 400),
            (request(&id, Some("k"), r#"{"reason":"because"}"#, true), 422),
            (request(&id, Some("k"), r#"{"amount":0,"reason":"other"}"#, true), 422),
            (request(&id, Some("k"), r#"{"amount":-5,"reason":"other"}"#, true), 422),
            (request(&OrderId::new().to_string(), Some("k"), r#"{"reason":"other"}"#, true), 404),
            (request("nope", Some("k"), r#"{"reason":"other"}"#, true), 404),
        ];
        for (request, expected) in cases {
            let (status, body) = send(&store, &stripe, &request).await;
            assert_eq!(status, expected, "{body}");
            assert!(body["type"].as_str().is_some_and(|t| t.starts_with("/problems/")), "{body}");
        }
    }
}
