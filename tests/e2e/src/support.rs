//! Small HTTP helpers shared by the domain test modules.

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// What a test looks at in a response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem with `status`, returning its body.
    pub fn expect_problem(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "body: {}", self.body);
        assert_eq!(self.body["status"], status, "body: {}", self.body);
        assert!(self.body["type"].as_str().is_some_and(|t| t.starts_with("/problems/")), "body: {}", self.body);
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()), "body: {}", self.body);
        &self.body
    }

    /// The pointers of a problem's field errors.
    pub fn pointers(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|e| e["pointer"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

/// A request builder with the shop's base URL.
#[derive(Debug)]
pub struct Call {
    request: reqwest::RequestBuilder,
}

pub fn call(method: Method, path: &str) -> Call {
    let shop = testkit::shop();
    // A client per call: a pooled connection belongs to the runtime that opened it, and every
    // #[tokio::test] has a runtime of its own.
    let client = Client::new();
    Call { request: client.request(method, shop.url(path)) }
}

impl Call {
    pub fn token(self, token: &str) -> Self {
        Self { request: self.request.bearer_auth(token) }
    }

    pub fn admin(self) -> Self {
        self.token(&testkit::shop().admin_token())
    }

    pub fn header(self, name: &str, value: &str) -> Self {
        Self { request: self.request.header(name, value) }
    }

    pub fn json(self, body: &Value) -> Self {
        Self { request: self.request.json(body) }
    }

    pub fn raw(self, content_type: &str, body: impl Into<reqwest::Body>) -> Self {
        Self { request: self.request.header("content-type", content_type).body(body) }
    }

    pub async fn send(self) -> Reply {
        let response = self.request.send().await.expect("the local cloud answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a readable body");
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Reply { status, headers, body }
    }
}

/// A queue subscribed to the shop's event bus, to watch what the domains publish.
#[derive(Debug)]
pub struct Tap {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl Tap {
    /// Subscribes a fresh queue to events matching `pattern` (an EventBridge event pattern).
    pub async fn new(pattern: Value) -> Tap {
        let shop = testkit::shop();
        let aws = shop.aws().await;
        let (sqs, events) = (aws_sdk_sqs::Client::new(&aws), aws_sdk_eventbridge::Client::new(&aws));
        let name = testkit::unique("tap");
        let url = sqs.create_queue().queue_name(&name).send().await.unwrap().queue_url.unwrap();
        let bus = shop.resource("EventBus").expect("the template declares EventBus");
        events.put_rule().name(&name).event_bus_name(bus).event_pattern(pattern.to_string()).send().await.unwrap();
        let arn = format!("arn:aws:sqs:{}:123456789012:{name}", shop.region);
        let target = aws_sdk_eventbridge::types::Target::builder().id("tap").arn(arn).build().unwrap();
        events.put_targets().rule(&name).event_bus_name(bus).targets(target).send().await.unwrap();
        Tap { sqs, url }
    }

    /// Collects events (EventBridge envelopes) until `done` says so or 15 s pass.
    pub async fn collect_until(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        let mut seen = Vec::new();
        while !done(&seen) && tokio::time::Instant::now() < deadline {
            let output = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for message in output.messages.unwrap_or_default() {
                seen.push(serde_json::from_str(message.body.as_deref().unwrap_or("null")).unwrap());
                self.sqs
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(message.receipt_handle.unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        seen
    }
}

/// Polls `check` until it returns `Some` or `seconds` pass.
pub async fn eventually<T, F, Fut>(seconds: u64, check: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Publishes `event` to the shop's bus as its producing domain would.
pub async fn publish(event: domain_events::Event, correlation_id: &str) -> domain_events::Envelope {
    let shop = testkit::shop();
    let events = aws_sdk_eventbridge::Client::new(&shop.aws().await);
    let envelope = domain_events::Envelope::new(domain_events::Metadata::new(correlation_id), event);
    publish_envelope(&events, &envelope).await;
    envelope
}

/// An item as stored in a table of the template (by logical id), read consistently.
pub async fn stored(table: &str, pk: &str, sk: &str) -> Option<adapters::dynamo::Item> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let shop = testkit::shop();
    let name = shop.table(table).expect("a table of the template");
    let key = [("pk", pk), ("sk", sk)].map(|(name, value)| (name.to_owned(), AttributeValue::S(value.to_owned())));
    adapters::dynamo::get_consistent(&shop.dynamodb().await, name, key.into()).await.ok()?
}

/// Waits until the consumer that owns `table` (a logical id in template.yaml) has handled every
/// one of `envelopes`: its inbox item for an event is written once the handler finished.
pub async fn handled_by(table: &str, envelopes: &[&domain_events::Envelope]) {
    for envelope in envelopes {
        let id = envelope.metadata.event_id;
        let handled =
            eventually(20, || async { stored(table, &format!("INBOX#{id}"), "INBOX").await.map(|_| ()) }).await;
        assert!(handled.is_some(), "{table}'s consumer never handled {id} ({})", envelope.event.detail_type());
    }
}

/// Publishes an exact envelope (same event id), as a duplicate delivery would.
pub async fn publish_envelope(events: &aws_sdk_eventbridge::Client, envelope: &domain_events::Envelope) {
    let shop = testkit::shop();
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .event_bus_name(shop.resource("EventBus").unwrap())
        .source(envelope.event.source().as_str())
        .detail_type(envelope.event.detail_type())
        .detail(envelope.detail().unwrap().to_string())
        .build();
    let output = events.put_events().entries(entry).send().await.unwrap();
    assert_eq!(output.failed_entry_count, 0, "PutEvents refused the event");
}

/// A GET from the Stripe emulator with the secret key: the answer as JSON.
async fn get_from_stripe(path: &str, query: &[(&str, &str)]) -> Value {
    let reply = Client::new()
        .get(format!("{}{path}", stripe_url()))
        .query(query)
        .bearer_auth("sk_test_local")
        .send()
        .await
        .unwrap();
    reply.json().await.unwrap()
}

/// The PaymentIntents the Stripe emulator holds for an order (by `metadata.order_id`).
pub async fn payment_intents(order_id: &str) -> Vec<Value> {
    let list = get_from_stripe("/v1/payment_intents", &[("limit", "100")]).await;
    list["data"]
        .as_array()
        .map(|all| all.iter().filter(|pi| pi["metadata"]["order_id"] == order_id).cloned().collect())
        .unwrap_or_default()
}

/// Waits until payment's webhook has handled the Stripe emulator's `event_type` event whose
/// object mentions `about` (a PaymentIntent's or a refund's id): its inbox item `STRIPE#{evt}`
/// reads `handled`. The event's id.
pub async fn stripe_event_handled(event_type: &str, about: &str) -> String {
    let handled = eventually(20, || async {
        let list = get_from_stripe("/v1/events", &[("type", event_type), ("limit", "100")]).await;
        let event = list["data"].as_array()?.iter().find(|e| e["data"]["object"].to_string().contains(about))?.clone();
        let id = event["id"].as_str()?.to_owned();
        let inbox = stored("PaymentTable", &format!("STRIPE#{id}"), "STRIPE").await?;
        (inbox.get("status")?.as_s().ok()? == "handled").then_some(id)
    })
    .await;
    handled.unwrap_or_else(|| panic!("payment's webhook never handled a {event_type} about {about}"))
}

/// The Stripe emulator's URL.
pub fn stripe_url() -> String {
    testkit::shop().stripe_url.clone().expect("the local cloud runs a Stripe emulator")
}

/// The refunds the Stripe emulator holds for a PaymentIntent, newest first (Stripe's
/// `GET /v1/refunds?payment_intent=`).
pub async fn refunds_at_stripe(payment_intent: &str) -> Vec<Value> {
    let list = get_from_stripe("/v1/refunds", &[("payment_intent", payment_intent), ("limit", "100")]).await;
    assert_eq!(list["has_more"], false, "{list}");
    list["data"].as_array().cloned().unwrap_or_default()
}

/// A form POST to the Stripe emulator with the secret key, as someone working in the Stripe
/// Dashboard (or a test control) would make it; the answer, which must be a success.
pub async fn post_to_stripe(path: &str, form: &[(&str, &str)]) -> Value {
    let reply = Client::new()
        .post(format!("{}{path}", stripe_url()))
        .bearer_auth("sk_test_local")
        .form(form)
        .send()
        .await
        .unwrap();
    let status = reply.status();
    let body: Value = reply.json().await.unwrap();
    assert!(status.is_success(), "POST {path}: {status} {body}");
    body
}

/// A `Stripe-Signature` header for `body` at `timestamp` (Unix seconds), signed with `secret`.
pub fn stripe_signature(secret: &str, timestamp: i64, body: &str) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, format!("{timestamp}.{body}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// Delivers a Stripe event to `POST /webhooks/stripe` signed now with the local cloud's signing
/// secret, as Stripe (or its retry) would.
pub async fn deliver_webhook(event: &Value) -> Reply {
    let body = event.to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let signature = stripe_signature(localcloud::LOCAL_WEBHOOK_SIGNING_SECRET, now, &body);
    call(Method::POST, "/webhooks/stripe")
        .header("stripe-signature", &signature)
        .raw("application/json", body)
        .send()
        .await
}

/// Every JSON document the shop's functions have written to its shared log so far: their log
/// lines and their metrics (EMF).
pub fn logged(shop: &testkit::Shop) -> Vec<Value> {
    let text = std::fs::read_to_string(&shop.log).unwrap_or_default();
    text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// The EMF documents among `documents` that declare metric `name`.
pub fn metric<'a>(documents: &'a [Value], name: &str) -> Vec<&'a Value> {
    documents
        .iter()
        .filter(|d| {
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .is_some_and(|ms| ms.iter().any(|m| m["Name"] == name))
        })
        .collect()
}
