//! The Stripe adapter: [`PaymentGateway`] on async-stripe.
//!
//! Creating and cancelling carry an idempotency key derived from the order and the step
//! (`ferrocart:{order_id}:pi-create`, `…:pi-cancel`). Stripe keeps keys for 24 h: a retried call
//! within that time gets the first call's answer instead of a second PaymentIntent. Correctness
//! does not rest on it (see [`crate::authorize`]); it is the second line of defence.
//!
//! Confirming and capturing carry none (`RequestStrategy::Once`). Stripe saves even a 5xx answer
//! under its key, so a key shared by every retry would replay a passing outage for 24 hours, and
//! the queue's retries (minutes apart) would all fail. Neither needs one: every retry reads the
//! PaymentIntent back first and confirms or captures only what still needs it, and Stripe itself
//! refuses a second confirmation or capture (`payment_intent_unexpected_state`, which the use
//! cases answer by reading the PaymentIntent again). Each call makes one attempt; SQS redelivery is
//! the retry.
//!
//! Amounts go to Stripe in *Stripe's* minor units, which differ from ISO 4217's for a few
//! currencies ([`stripe_amount`]): ISK is two-decimal at Stripe (whole krónur × 100), MGA is
//! zero-decimal (whole ariary only), and the three-decimal dinars must end in 0. A total Stripe
//! cannot take is refused before any call (`amount_not_chargeable`), so the order is cancelled
//! with that reason rather than charged a rounded amount.
//!
//! Errors are sorted for the use cases: a 402 `card_error` is a decline, a 4xx with an error code is
//! a refusal, `payment_intent_unexpected_state` and 409 are conflicts, network failures, timeouts,
//! 429 and 5xx make Stripe unavailable, and the rest (401/403, idempotency errors, unreadable
//! answers) mean our side is misconfigured. Logs carry order and PaymentIntent ids; never the
//! secret key, never card details from error bodies.
//!
//! The requests are async-stripe's (`async-stripe-core`); they are sent by our own
//! [`Transport`](crate::stripe_client::Transport) and their answers read into small structs of ours
//! ([`crate::stripe_client`] says why: 2.6 MiB less code per payment binary).
//!
//! Every call is measured ([`observed`]): `StripeLatency` (milliseconds, no dimension, one value per
//! call whatever its outcome, so its `SampleCount` is the number of calls the `StripeErrorRateAlarm`
//! divides by) and, for a call that failed for a reason other than the customer's card,
//! `StripeErrors` by `Kind` ([`ErrorKind`]) and in total. A decline is a business result, not an
//! error. The documents carry the operation's name and nothing else of the call.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use stripe_client_core::{IdempotencyKey, RequestBuilder, RequestStrategy, StripeMethod, StripeRequest};
use stripe_core::payment_intent::{
    CancelPaymentIntent, CancelPaymentIntentCancellationReason, CapturePaymentIntent, ConfirmPaymentIntent,
    CreatePaymentIntent, RetrievePaymentIntent,
};
use stripe_core::refund::{CreateRefund, CreateRefundReason, ListRefund, RetrieveRefund};
use stripe_core::{PaymentIntentAllowedPaymentMethodTypes, PaymentIntentCaptureMethod};
use stripe_types::Currency;

use domain_events::payment::RefundReason;
use kernel::{Money, OrderId};
use lambda_glue::metrics::{Metric, Unit};

use crate::StripeSecret;
use crate::model::{ClientSecret, OrderPayment, PaymentIntentId};
use crate::ports::{
    Decline, GatewayError, Intent, IntentStatus, PaymentGateway, RefundGateway, StripeDispute, StripeRefund,
};
use crate::refund::Refund;
use crate::stripe_client::{ApiError, DisputeReply, IntentReply, RefundPage, RefundReply, StripeError, Transport};

/// Per call (one attempt each). A message makes at most four calls, which with DynamoDB is
/// `events::PER_MESSAGE` (36 s), within the function's 40 s timeout.
const TIMEOUT: Duration = Duration::from_secs(8);

/// The Stripe implementation of [`PaymentGateway`].
#[derive(Clone)]
pub struct StripeGateway {
    client: Transport,
    api_base: Option<String>,
}

impl std::fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Nothing of the client: it holds the key.
        f.debug_struct("StripeGateway").field("api_base", &self.api_base).finish_non_exhaustive()
    }
}

impl StripeGateway {
    /// A client for `api_base` (Stripe itself when `None`).
    pub fn new(secret: &StripeSecret, api_base: Option<&str>) -> Result<Self, GatewayError> {
        // A key a header cannot carry (said without repeating it), or a base that would carry it
        // in clear.
        let client = Transport::new(secret.expose(), api_base, TIMEOUT)
            .map_err(|error| GatewayError::Misconfigured(error.to_string()))?;
        Ok(Self { client, api_base: api_base.map(str::to_owned) })
    }
}

fn idempotent(order_id: OrderId, step: &str) -> Result<RequestStrategy, GatewayError> {
    IdempotencyKey::new(format!("ferrocart:{order_id}:{step}"))
        .map(RequestStrategy::Idempotent)
        .map_err(|error| GatewayError::Misconfigured(error.to_string()))
}

impl PaymentGateway for StripeGateway {
    async fn create_intent(&self, order_id: OrderId, order: &OrderPayment) -> Result<Intent, GatewayError> {
        // Stripe wants lower-case ISO codes; a code async-stripe does not list becomes
        // `Currency::Unknown` and Stripe itself refuses it if it must.
        let Ok(currency) = order.total.currency().code().to_ascii_lowercase().parse::<Currency>();
        intent_call(
            "create_intent",
            CreatePaymentIntent::new(stripe_amount(order.total)?, currency)
                .payment_method(&order.payment_method)
                .capture_method(PaymentIntentCaptureMethod::Manual)
                // Cards only: no redirect-based method, so confirming needs no return_url.
                .allowed_payment_method_types(vec![PaymentIntentAllowedPaymentMethodTypes::Card])
                .metadata(HashMap::from([("order_id".to_owned(), order_id.to_string())]))
                .build()
                .customize::<IntentReply>()
                .request_strategy(idempotent(order_id, "pi-create")?)
                .send(&self.client),
        )
        .await
    }

    async fn retrieve_intent(&self, id: &PaymentIntentId) -> Result<Intent, GatewayError> {
        intent_call("retrieve_intent", RetrievePaymentIntent::new(id.as_str()).build().customize().send(&self.client))
            .await
    }

    async fn confirm_intent(&self, _order_id: OrderId, id: &PaymentIntentId) -> Result<Intent, GatewayError> {
        intent_call(
            "confirm_intent",
            ConfirmPaymentIntent::new(id.as_str())
                .build()
                .customize()
                .request_strategy(RequestStrategy::Once)
                .send(&self.client),
        )
        .await
    }

    async fn cancel_intent(&self, order_id: OrderId, id: &PaymentIntentId) -> Result<Intent, GatewayError> {
        intent_call(
            "cancel_intent",
            CancelPaymentIntent::new(id.as_str())
                .cancellation_reason(CancelPaymentIntentCancellationReason::Abandoned)
                .build()
                .customize()
                .request_strategy(idempotent(order_id, "pi-cancel")?)
                .send(&self.client),
        )
        .await
    }

    async fn capture_intent(&self, order_id: OrderId, id: &PaymentIntentId) -> Result<Intent, GatewayError> {
        // No `amount_to_capture`: the whole amount capturable, which is the order's total.
        let _ = order_id;
        intent_call(
            "capture_intent",
            CapturePaymentIntent::new(id.as_str())
                .build()
                .customize()
                .request_strategy(RequestStrategy::Once)
                .send(&self.client),
        )
        .await
    }
}

/// One call to Stripe that answers a PaymentIntent ([`observed`]), read as ours.
async fn intent_call(
    operation: &'static str,
    call: impl Future<Output = Result<IntentReply, StripeError>>,
) -> Result<Intent, GatewayError> {
    observed(operation, call).await.map_err(classify).and_then(intent)
}

/// Currencies Stripe takes without a minor unit (stripe.com/docs/currencies, zero-decimal).
const STRIPE_ZERO_DECIMAL: &[&str] =
    &["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"];
/// Currencies Stripe takes with three decimals, the last of which must be 0.
const STRIPE_THREE_DECIMAL: &[&str] = &["BHD", "JOD", "KWD", "OMR", "TND"];

/// The currency's exponents: Stripe's, then ISO 4217's.
fn exponents(currency: kernel::Currency) -> (u32, u32) {
    let code = currency.code();
    let stripe = if STRIPE_ZERO_DECIMAL.contains(&code) {
        0
    } else if STRIPE_THREE_DECIMAL.contains(&code) {
        3
    } else {
        2
    };
    (stripe, u32::from(currency.exponent()))
}

/// The most of `wanted` Stripe can charge or refund exactly: `wanted` rounded down to the
/// smallest step Stripe takes, in ISO minor units (100 for ariary, which Stripe takes whole; 10
/// for the three-decimal dinars, whose last digit must be 0; 1 for most currencies).
pub fn chargeable_part(wanted: Money) -> Money {
    let (stripe_exponent, iso_exponent) = exponents(wanted.currency());
    let step = if stripe_exponent < iso_exponent {
        10_i64.pow(iso_exponent - stripe_exponent)
    } else if stripe_exponent == 3 && iso_exponent == 3 {
        10
    } else {
        1
    };
    Money::new(wanted.amount() - wanted.amount().rem_euclid(step), wanted.currency()).unwrap_or(wanted)
}

/// `total` in Stripe's minor units for its currency, or a refusal when Stripe cannot charge it
/// exactly.
pub fn stripe_amount(total: Money) -> Result<i64, GatewayError> {
    let code = total.currency().code();
    let (stripe_exponent, iso_exponent) = exponents(total.currency());
    let not_chargeable = |why: &str| GatewayError::Refused {
        code: "amount_not_chargeable".to_owned(),
        param: Some("amount".to_owned()),
        message: format!("{} {code} {why}", total.amount()),
    };
    let amount = if stripe_exponent >= iso_exponent {
        10_i64
            .checked_pow(stripe_exponent - iso_exponent)
            .and_then(|factor| total.amount().checked_mul(factor))
            .ok_or_else(|| not_chargeable("is too large"))?
    } else {
        let divisor = 10_i64.pow(iso_exponent - stripe_exponent);
        if total.amount() % divisor != 0 {
            return Err(not_chargeable("has a fraction Stripe cannot charge"));
        }
        total.amount() / divisor
    };
    if stripe_exponent == 3 && amount % 10 != 0 {
        return Err(not_chargeable("must end in 0 for Stripe"));
    }
    Ok(amount)
}

fn intent(pi: IntentReply) -> Result<Intent, GatewayError> {
    let id = PaymentIntentId::parse(pi.id.as_str()).map_err(|e| GatewayError::Misconfigured(e.to_string()))?;
    let status = match pi.status.as_str() {
        "requires_confirmation" => IntentStatus::RequiresConfirmation,
        "requires_capture" => IntentStatus::RequiresCapture,
        "requires_action" => IntentStatus::RequiresAction(pi.client_secret.and_then(ClientSecret::new)),
        "requires_payment_method" => IntentStatus::RequiresPaymentMethod(pi.last_payment_error.as_ref().map(decline)),
        "processing" => IntentStatus::Processing,
        "canceled" => IntentStatus::Canceled,
        "succeeded" => IntentStatus::Succeeded,
        _ => IntentStatus::Other(pi.status),
    };
    Ok(Intent { id, status })
}

fn decline(error: &ApiError) -> Decline {
    Decline {
        code: error.code.as_deref().unwrap_or("card_declined").to_owned(),
        decline_code: error.decline_code.clone(),
    }
}

/// Why a call to Stripe failed, when it was not the customer's card: `StripeErrors`' `Kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Stripe failed (a 5xx, or an answer we cannot read).
    Api,
    /// Stripe throttled us (429).
    RateLimited,
    /// No answer: the network failed or the call timed out.
    Connection,
    /// Stripe refused our key (401, 403).
    Authentication,
    /// Stripe refused the request itself (any other 4xx that is not the card's).
    InvalidRequest,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api_error",
            Self::RateLimited => "rate_limited",
            Self::Connection => "connection",
            Self::Authentication => "authentication",
            Self::InvalidRequest => "invalid_request",
        }
    }
}

/// What `StripeErrors` counts a failed call as; `None` for the customer's card (a decline, a card
/// that needs authentication), which is a business result and not an error.
pub fn error_kind(error: &StripeError) -> Option<ErrorKind> {
    match error {
        StripeError::Api { error, status, .. } => api_error_kind(*status, &error.type_, error.code.as_deref()),
        StripeError::Connection(_) | StripeError::Timeout => Some(ErrorKind::Connection),
        StripeError::Unreadable(_) => Some(ErrorKind::Api),
        // Refused by the client before anything was sent: a request of ours that is wrong.
        StripeError::Config(_) => Some(ErrorKind::InvalidRequest),
    }
}

/// Refusals the saga meets on purpose and decides on (a duplicate delivery finds the
/// PaymentIntent already moved on, an authorization lapsed before its capture, a total below
/// Stripe's minimum): answers about the payment's state, not about Stripe's health, so they do
/// not count in `StripeErrors` and its error-rate alarm.
const EXPECTED_REFUSALS: [&str; 5] = [
    "payment_intent_unexpected_state",
    "charge_expired_for_capture",
    "charge_already_captured",
    "charge_already_refunded",
    "amount_too_small",
];

/// [`error_kind`] of an error answer: its HTTP status, Stripe's error type and code.
pub fn api_error_kind(status: u16, type_: &str, code: Option<&str>) -> Option<ErrorKind> {
    match status {
        500.. => Some(ErrorKind::Api),
        _ if type_ == "card_error" || code == Some("authentication_required") => None,
        _ if code.is_some_and(|code| EXPECTED_REFUSALS.contains(&code)) => None,
        429 => Some(ErrorKind::RateLimited),
        401 | 403 => Some(ErrorKind::Authentication),
        400..=499 => Some(ErrorKind::InvalidRequest),
        // Stripe answers errors with a 4xx or 5xx; anything else is not an answer we understand.
        _ => Some(ErrorKind::Api),
    }
}

/// The metrics of one call to Stripe that took `elapsed`: its latency, and its error if it failed
/// for a reason that is not the card.
pub fn call_metrics(operation: &'static str, elapsed: Duration, error: Option<&StripeError>) -> Vec<Metric> {
    let millis = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    let mut metrics = vec![Metric::value("StripeLatency", Unit::Milliseconds, millis).with("operation", operation)];
    if let Some(kind) = error.and_then(error_kind) {
        metrics.push(Metric::count("StripeErrors").by("Kind", kind.as_str()).and_total().with("operation", operation));
    }
    metrics
}

/// Makes one call to Stripe and records it ([`call_metrics`]).
async fn observed<T>(
    operation: &'static str,
    call: impl Future<Output = Result<T, StripeError>>,
) -> Result<T, StripeError> {
    let started = Instant::now();
    let result = call.await;
    for metric in call_metrics(operation, started.elapsed(), result.as_ref().err()) {
        metric.emit();
    }
    result
}

fn classify(error: StripeError) -> GatewayError {
    match error {
        StripeError::Api { error, status, replayed } => classify_api(&error, status, replayed),
        StripeError::Connection(message) => GatewayError::Unavailable(message),
        StripeError::Timeout => GatewayError::Unavailable(format!("no answer within {TIMEOUT:?}")),
        StripeError::Unreadable(message) => GatewayError::Misconfigured(format!("unreadable answer: {message}")),
        StripeError::Config(message) => GatewayError::Misconfigured(message),
    }
}

fn classify_api(error: &ApiError, status: u16, replayed: bool) -> GatewayError {
    let code = error.code.clone();
    // Stripe's message: the error object we read has nothing else of the call.
    let message = error.message.clone().unwrap_or_default();
    let described = || format!("HTTP {status} {} {}: {message}", error.type_, code.as_deref().unwrap_or("-"));
    match status {
        402 if error.type_ == "card_error" => GatewayError::Declined(decline(error)),
        429 => GatewayError::Unavailable(described()),
        500.. => GatewayError::ServerError { detail: described(), replayed },
        409 => GatewayError::Conflict(described()),
        401 | 403 => GatewayError::Misconfigured(described()),
        _ if error.type_ == "idempotency_error" => GatewayError::Misconfigured(described()),
        _ if code.as_deref() == Some("payment_intent_unexpected_state") => GatewayError::Conflict(described()),
        400..=499 => match code {
            Some(code) => GatewayError::Refused { code, param: error.param.clone(), message },
            None => GatewayError::Misconfigured(described()),
        },
        _ => GatewayError::Misconfigured(described()),
    }
}

impl RefundGateway for StripeGateway {
    async fn create_refund(&self, intent: &PaymentIntentId, refund: &Refund) -> Result<StripeRefund, GatewayError> {
        let mut request = CreateRefund::new()
            .payment_intent(intent.as_str())
            .amount(stripe_amount(refund.amount)?)
            .metadata(HashMap::from([
                ("order_id".to_owned(), refund.order_id.to_string()),
                ("refund_id".to_owned(), refund.refund_id.to_string()),
            ]));
        // `other` is sent without a reason: Stripe knows only these three.
        request = match refund.reason {
            RefundReason::RequestedByCustomer => request.reason(CreateRefundReason::RequestedByCustomer),
            RefundReason::Duplicate => request.reason(CreateRefundReason::Duplicate),
            RefundReason::Fraudulent => request.reason(CreateRefundReason::Fraudulent),
            RefundReason::Other => request,
        };
        let key =
            IdempotencyKey::new(refund_key(refund)).map_err(|error| GatewayError::Misconfigured(error.to_string()))?;
        observed(
            "create_refund",
            request
                .build()
                .customize::<RefundReply>()
                .request_strategy(RequestStrategy::Idempotent(key))
                .send(&self.client),
        )
        .await
        .map_err(classify)
        .and_then(|made| stripe_refund(&made))
    }

    async fn list_refunds(&self, intent: &PaymentIntentId) -> Result<Vec<StripeRefund>, GatewayError> {
        // Stripe's largest page; an order is not refunded in 100 parts.
        let page = observed("list_refunds", {
            ListRefund::new()
                .payment_intent(intent.as_str())
                .limit(100)
                .build()
                .customize::<RefundPage>()
                .send(&self.client)
        })
        .await
        .map_err(classify)?;
        if page.has_more {
            return Err(GatewayError::Misconfigured(format!("{intent} has more than 100 refunds")));
        }
        page.data.iter().map(stripe_refund).collect()
    }

    async fn retrieve_refund(&self, stripe_refund_id: &str) -> Result<StripeRefund, GatewayError> {
        observed(
            "retrieve_refund",
            RetrieveRefund::new(stripe_refund_id).build().customize::<RefundReply>().send(&self.client),
        )
        .await
        .map_err(classify)
        .and_then(|made| stripe_refund(&made))
    }

    async fn intent_order(&self, intent: &PaymentIntentId) -> Result<Option<OrderId>, GatewayError> {
        let pi = observed(
            "retrieve_intent",
            RetrievePaymentIntent::new(intent.as_str()).build().customize::<IntentReply>().send(&self.client),
        )
        .await
        .map_err(classify)?;
        Ok(pi.metadata.as_ref().and_then(|metadata| metadata.get("order_id")).and_then(|id| id.parse().ok()))
    }

    async fn retrieve_dispute(&self, dispute_id: &str) -> Result<Option<StripeDispute>, GatewayError> {
        // Built by hand: async-stripe's `RetrieveDispute` is behind async-stripe-core's `dispute`
        // feature, whose generated types this one GET does not need.
        let path = format!("/disputes/{dispute_id}");
        let request = RequestBuilder::new(StripeMethod::Get, path).customize::<DisputeReply>().send(&self.client);
        let found = match observed("retrieve_dispute", request).await.map_err(classify) {
            Ok(found) => found,
            Err(GatewayError::Refused { code, .. }) if code == "resource_missing" => return Ok(None),
            Err(error) => return Err(error),
        };
        let currency = kernel::Currency::parse(&found.currency.to_ascii_uppercase())
            .map_err(|_| GatewayError::Misconfigured(format!("dispute {} in an unknown currency", found.id)))?;
        Ok(Some(StripeDispute {
            amount: iso_amount(found.amount, currency)?,
            intent: found.payment_intent.as_deref().and_then(|pi| PaymentIntentId::parse(pi).ok()),
            reason: found.reason.unwrap_or_default(),
            status: found.status,
            id: found.id,
        }))
    }
}

/// The idempotency key of a refund's current attempt: `ferrocart:{refund_id}:refund`, then
/// `…:refund:{attempt}` once a 5xx answer (saved by Stripe under the key) moved it on.
pub fn refund_key(refund: &Refund) -> String {
    match refund.attempt {
        0 => format!("ferrocart:{}:refund", refund.refund_id),
        attempt => format!("ferrocart:{}:refund:{attempt}", refund.refund_id),
    }
}

fn stripe_refund(made: &RefundReply) -> Result<StripeRefund, GatewayError> {
    let currency = kernel::Currency::parse(&made.currency.to_ascii_uppercase())
        .map_err(|_| GatewayError::Misconfigured(format!("refund {} in an unknown currency", made.id)))?;
    Ok(StripeRefund {
        id: made.id.clone(),
        amount: iso_amount(made.amount, currency)?,
        status: made.status.clone().unwrap_or_else(|| "succeeded".to_owned()),
        refund_id: made.metadata.as_ref().and_then(|metadata| metadata.get("refund_id")).and_then(|id| id.parse().ok()),
        failure_reason: made.failure_reason.clone(),
    })
}

/// An amount in Stripe's minor units back in ISO minor units: [`stripe_amount`]'s inverse.
pub fn iso_amount(stripe_minor: i64, currency: kernel::Currency) -> Result<Money, GatewayError> {
    let code = currency.code();
    let (stripe_exponent, iso_exponent) = exponents(currency);
    let unreadable = || GatewayError::Misconfigured(format!("{stripe_minor} {code} from Stripe is not an ISO amount"));
    let amount = if stripe_exponent >= iso_exponent {
        let divisor = 10_i64.pow(stripe_exponent - iso_exponent);
        // ISK at Stripe is two-decimal, but only whole krónur can be charged: no remainder.
        if stripe_minor % divisor != 0 {
            return Err(unreadable());
        }
        stripe_minor / divisor
    } else {
        stripe_minor.checked_mul(10_i64.pow(iso_exponent - stripe_exponent)).ok_or_else(unreadable)?
    };
    Money::new(amount, currency).map_err(|_| unreadable())
}

#[cfg(test)]
mod tests {
    use kernel::Currency;

    use super::*;

    fn amount(minor: i64, code: &str) -> Result<i64, GatewayError> {
        stripe_amount(Money::new(minor, Currency::parse(code).unwrap()).unwrap())
    }

    #[test]
    fn most_currencies_go_to_stripe_in_their_iso_minor_units() {
        assert_eq!(amount(1999, "USD").unwrap(), 1999);
        assert_eq!(amount(500, "JPY").unwrap(), 500);
        assert_eq!(amount(12_345, "HUF").unwrap(), 12_345);
        assert_eq!(amount(7_000, "UGX").unwrap(), 7_000);
    }

    #[test]
    fn icelandic_kronur_are_two_decimal_at_stripe() {
        assert_eq!(amount(4_990, "ISK").unwrap(), 499_000);
    }

    #[test]
    fn ariary_must_be_whole_for_stripe() {
        assert_eq!(amount(150_000, "MGA").unwrap(), 1_500);
        assert!(
            matches!(amount(150_050, "MGA"), Err(GatewayError::Refused { code, .. }) if code == "amount_not_chargeable")
        );
    }

    #[test]
    fn three_decimal_dinars_must_end_in_zero() {
        assert_eq!(amount(5_120, "KWD").unwrap(), 5_120);
        assert!(
            matches!(amount(5_124, "KWD"), Err(GatewayError::Refused { code, .. }) if code == "amount_not_chargeable")
        );
    }

    #[test]
    fn the_chargeable_part_of_an_amount_is_the_most_of_it_stripe_takes() {
        let part = |minor, code| chargeable_part(Money::new(minor, Currency::parse(code).unwrap()).unwrap()).amount();

        assert_eq!(part(4_113, "KWD"), 4_110);
        assert_eq!(part(150_050, "MGA"), 150_000);
        assert_eq!((part(1_999, "USD"), part(501, "JPY"), part(4_990, "ISK")), (1_999, 501, 4_990));
        for code in ["USD", "JPY", "ISK", "MGA", "KWD", "BHD", "HUF"] {
            for minor in (0..2_000).step_by(7) {
                assert!(amount(part(minor, code), code).is_ok(), "{minor} {code}");
                assert!(minor - part(minor, code) < 100, "{minor} {code}");
            }
        }
    }

    #[test]
    fn stripes_refund_amounts_read_back_in_iso_minor_units() {
        let iso = |minor, code| iso_amount(minor, Currency::parse(code).unwrap()).map(|money| money.amount());

        assert_eq!(iso(1999, "USD").unwrap(), 1999);
        assert_eq!(iso(499_000, "ISK").unwrap(), 4_990);
        assert_eq!(iso(1_500, "MGA").unwrap(), 150_000);
        assert!(iso(499_050, "ISK").is_err());
    }
    fn kind(status: u16, type_: &str, code: Option<&str>) -> Option<&'static str> {
        api_error_kind(status, type_, code).map(ErrorKind::as_str)
    }

    #[test]
    fn a_decline_or_a_card_that_needs_authentication_is_not_an_error() {
        assert_eq!(kind(402, "card_error", Some("card_declined")), None);
        assert_eq!(kind(402, "card_error", Some("expired_card")), None);
        assert_eq!(kind(402, "card_error", Some("authentication_required")), None);
        assert_eq!(kind(400, "invalid_request_error", Some("authentication_required")), None);
    }

    #[test]
    fn a_refusal_about_the_payments_state_that_the_saga_expects_is_not_an_error() {
        for code in ["payment_intent_unexpected_state", "charge_expired_for_capture", "amount_too_small"] {
            assert_eq!(kind(400, "invalid_request_error", Some(code)), None, "{code}");
        }
        assert_eq!(kind(503, "api_error", Some("payment_intent_unexpected_state")), Some("api_error"));
    }

    #[test]
    fn stripe_failing_throttling_or_refusing_our_key_or_request_is_an_error_of_its_kind() {
        assert_eq!(kind(500, "api_error", None), Some("api_error"));
        assert_eq!(kind(503, "api_error", None), Some("api_error"));
        assert_eq!(kind(429, "invalid_request_error", Some("rate_limit")), Some("rate_limited"));
        assert_eq!(kind(401, "invalid_request_error", None), Some("authentication"));
        assert_eq!(kind(403, "invalid_request_error", None), Some("authentication"));
        assert_eq!(kind(400, "invalid_request_error", Some("amount_too_large")), Some("invalid_request"));
        assert_eq!(kind(404, "invalid_request_error", Some("resource_missing")), Some("invalid_request"));
        assert_eq!(kind(400, "idempotency_error", None), Some("invalid_request"));
    }

    #[test]
    fn no_answer_is_a_connection_error_and_an_unreadable_one_stripes() {
        let kind = |error: StripeError| error_kind(&error).map(ErrorKind::as_str);

        assert_eq!(kind(StripeError::Timeout), Some("connection"));
        assert_eq!(kind(StripeError::Connection("connection refused".into())), Some("connection"));
        assert_eq!(kind(StripeError::Unreadable("expected value".into())), Some("api_error"));
    }

    fn documents(metrics: &[Metric]) -> Vec<serde_json::Value> {
        let at = time::OffsetDateTime::UNIX_EPOCH;
        metrics
            .iter()
            .flat_map(|metric| metric.documents("Ferrocart/test", at))
            .map(|line| serde_json::from_str(&line).unwrap())
            .collect()
    }

    #[test]
    fn every_call_records_its_latency_without_dimensions_and_a_failure_its_kind_and_the_total() {
        let ok = documents(&call_metrics("confirm_intent", Duration::from_millis(182), None));
        let down = documents(&call_metrics("capture_intent", Duration::from_millis(8000), Some(&StripeError::Timeout)));

        assert_eq!(ok.len(), 1);
        assert_eq!((ok[0]["StripeLatency"].as_u64(), ok[0]["operation"].as_str()), (Some(182), Some("confirm_intent")));
        assert_eq!(ok[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"], serde_json::json!([[]]));
        assert_eq!(down.len(), 2, "the latency of a failed call counts too");
        assert_eq!(down[0]["StripeLatency"], 8000);
        assert_eq!((down[1]["StripeErrors"].as_u64(), down[1]["Kind"].as_str()), (Some(1), Some("connection")));
        assert_eq!(down[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"], serde_json::json!([["Kind"], []]));
    }
}
