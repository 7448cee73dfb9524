//! Warm handler cost: each function's handler called in-process on its sample event, with
//! storage (and Stripe, and EventBridge) answering from memory, so what is timed is our code on
//! the path one Lambda invocation takes once the runtime has the event: the event's JSON read
//! as the runtime reads it (the HTTP API event for an API function, the SQS batch or the stream
//! batch for the others), the same handler the binary serves (`lambda_glue::http::invoke`,
//! `lambda_glue::consumer::invoke`, `relay::relay`), and the response written as JSON. The HTTP
//! exchange with the Runtime API is not timed.
//!
//! Each call gets a fresh copy of its input prepared before the clock starts: fresh event ids
//! (else the inbox would answer "already handled" without running the handler) and, where the
//! handler moves an order along, a fresh order id and its starting state in the store. The
//! stores are those the crates' unit tests use (`test-util`), never linked into a Lambda binary.
//! Checkout, its consumer, payment's consumer and the relay are here; the other functions are
//! in [`domains`].

mod domains;

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_http::{LambdaEvent, Request};
use serde::Serialize;
use serde_json::Value;

use checkout::order::Status;
use checkout::service::{CartReadError, CartReader, FulfillmentCallError, FulfillmentGate, Settings};
use checkout::testing::{MemoryOrders, order_in};
use domain_events::Event;
use domain_events::queries::{HoldForCancelReply, PricedCart};
use kernel::{CartId, EventId, OrderId};
use lambda_glue::consumer::MemoryInbox;
use payment::testing::{FakeStore, FakeStripe};
use relay::bus::{CallFailed, EntryOutcome, EventBus};
use relay::dead_letter::{DeadLetter, DeadLetterFailed, DeadLetters};

/// The percentiles of one function's calls, in nanoseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub function: String,
    /// The sample the calls were made on.
    pub sample: String,
    /// What every call answered (an HTTP status, or the failed messages of a batch).
    pub answer: String,
    pub calls: usize,
    pub warmup: usize,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    pub mean_ns: u64,
}

/// Sorted durations → the summary's figures.
pub fn percentiles(durations: &mut [Duration]) -> (u64, u64, u64, u64) {
    if durations.is_empty() {
        return (0, 0, 0, 0);
    }
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let (p50, p99) = (crate::percentile(durations, 50), crate::percentile(durations, 99));
    let mean = durations.iter().sum::<Duration>() / u32::try_from(durations.len()).unwrap_or(u32::MAX);
    (nanos(p50), nanos(p99), nanos(durations[durations.len() - 1]), nanos(mean))
}

/// Runs `warmup` untimed calls, then `calls` timed ones. `prepare(i)` builds call `i`'s input
/// (untimed); `call` consumes it and returns the response JSON and what it answered.
async fn measure<I, P, C, F>(
    function: &str,
    sample: &str,
    calls: usize,
    warmup: usize,
    mut prepare: P,
    call: C,
) -> anyhow::Result<Summary>
where
    P: FnMut(usize) -> anyhow::Result<I>,
    C: Fn(I) -> F,
    F: Future<Output = anyhow::Result<(Vec<u8>, String)>>,
{
    let mut durations = Vec::with_capacity(calls);
    let mut answer = String::new();
    for i in 0..warmup + calls {
        let input = prepare(i)?;
        let started = Instant::now();
        let (body, answered) = call(input).await?;
        let elapsed = started.elapsed();
        std::hint::black_box(body);
        if i == 0 {
            answer = answered;
        } else if answered != answer {
            bail!("{function}: call {i} answered {answered}, the first {answer}");
        }
        if i >= warmup {
            durations.push(elapsed);
        }
    }
    let (p50_ns, p99_ns, max_ns, mean_ns) = percentiles(&mut durations);
    eprintln!(
        "  {function:<18} p50 {:>6} µs  p99 {:>6} µs  max {:>7} µs  ({answer})",
        p50_ns / 1000,
        p99_ns / 1000,
        max_ns / 1000
    );
    Ok(Summary {
        function: function.to_owned(),
        sample: sample.to_owned(),
        answer,
        calls,
        warmup,
        p50_ns,
        p99_ns,
        max_ns,
        mean_ns,
    })
}

/// A context as the runtime builds it, with Lambda's longest timeout (15 min) left: the consumers
/// start a message only with enough of the invocation left.
fn context() -> lambda_http::Context {
    let mut context = lambda_http::Context::default();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    context.deadline = u64::try_from(now.as_millis()).unwrap_or(u64::MAX) + 900_000;
    context.request_id = "bench".to_owned();
    context
}

/// One API Gateway request through `handle` as `lambda_glue::http::serve` serves it: the payload
/// read as the HTTP API event, turned into a `Request`, answered, and the response written as JSON.
async fn api_call<H, Fut>(handle: &H, payload: &[u8]) -> anyhow::Result<(Vec<u8>, String)>
where
    H: Fn(Request) -> Fut + Sync,
    Fut: Future<Output = lambda_http::Response<lambda_http::Body>> + Send,
{
    let event: ApiGatewayV2httpRequest = serde_json::from_slice(payload)?;
    let response = lambda_glue::http::invoke(handle, LambdaEvent::new(event, context())).await;
    let body = serde_json::to_vec(&response)?;
    let status = serde_json::from_slice::<Value>(&body)?["statusCode"].as_u64().unwrap_or(0);
    Ok((body, format!("HTTP {status}")))
}

/// One SQS batch through a consumer as `lambda_glue::consumer::serve` runs it.
async fn consumer_call<H, Fut>(handle: &H, payload: &[u8]) -> anyhow::Result<(Vec<u8>, String)>
where
    H: Fn(lambda_glue::consumer::Trigger) -> Fut,
    Fut: Future<Output = Result<lambda_glue::consumer::SqsBatchResponse, lambda_glue::consumer::HandlerError>>,
{
    let event: Value = serde_json::from_slice(payload)?;
    let response = lambda_glue::consumer::invoke(handle, LambdaEvent::new(event, context()))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let body = serde_json::to_vec(&response)?;
    Ok((body, format!("{} of the batch failed", response.batch_item_failures.len())))
}

/// The sample events, read once.
struct Samples {
    root: std::path::PathBuf,
}

impl Samples {
    fn read(&self, file: &str) -> anyhow::Result<String> {
        std::fs::read_to_string(self.root.join("events").join(file)).with_context(|| format!("events/{file}"))
    }
}

/// The order id every sample event is about.
const SAMPLE_ORDER: &str = "ord_01JD4X6Z8Q9R2S3T4V5W6X7Y8Z";

/// `text` with every `evt_` id made new, and the sample order replaced by `order`.
fn fresh(text: &str, order: Option<OrderId>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\"evt_") {
        out.push_str(&rest[..=at]);
        let id = &rest[at + 1..];
        let end = id.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(id.len());
        out.push_str(&EventId::new().to_string());
        rest = &id[end..];
    }
    out.push_str(rest);
    match order {
        Some(order) => out.replace(SAMPLE_ORDER, &order.to_string()),
        None => out,
    }
}

/// Checkout's cart query, answered from memory (the real one is a Lambda invoke: I/O).
struct NoCarts;

impl CartReader for NoCarts {
    async fn priced_cart(&self, _: CartId, _: &str) -> Result<Option<PricedCart>, CartReadError> {
        Ok(None)
    }
}

/// Fulfillment's hold, answered from memory.
struct Holds;

impl FulfillmentGate for Holds {
    async fn hold_for_cancel(&self, _: OrderId) -> Result<HoldForCancelReply, FulfillmentCallError> {
        Ok(HoldForCancelReply::Held)
    }
}

/// EventBridge accepting every entry at once.
struct InstantBus;

impl EventBus for InstantBus {
    async fn put(&self, records: &[&adapters::outbox::OutboxRecord]) -> Result<Vec<EntryOutcome>, CallFailed> {
        Ok(records.iter().map(|_| EntryOutcome::Published).collect())
    }
}

impl DeadLetters for InstantBus {
    async fn park(&self, _: &DeadLetter<'_>) -> Result<(), DeadLetterFailed> {
        Ok(())
    }
}

/// Every function measured, in the order of the table; the ones the bench cannot drive are
/// listed in [`NOT_MEASURED`].
pub async fn run(root: &std::path::Path, calls: usize, warmup: usize) -> anyhow::Result<Vec<Summary>> {
    let samples = Samples { root: root.to_owned() };
    let admin: Value = serde_json::from_str(&samples.read("apigw/admin-dispatch-shipment.json")?)?;
    let mut summaries = Vec::new();

    // checkout: GET /orders/{id} of a confirmed order, as an admin.
    let order = {
        let mut order = order_in(Status::Confirmed);
        order.order_id = SAMPLE_ORDER.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        order
    };
    let context = checkout::api::Context {
        store: MemoryOrders::holding(&order),
        carts: NoCarts,
        fulfillment: Holds,
        settings: Settings {
            pricing: checkout::pricing::PricingConfig::parse(checkout::pricing::PricingConfig::DEFAULT)?,
            timeout: time::Duration::minutes(10),
            return_window: time::Duration::days(30),
        },
    };
    let get_order = crate::cold::api_event(
        &admin,
        "GET",
        "/orders/{id}",
        &format!("/orders/{SAMPLE_ORDER}"),
        &[("id", SAMPLE_ORDER)],
        "",
    )
    .to_string()
    .into_bytes();
    let handle = |request| checkout::api::handle(&context, request);
    summaries.push(
        measure(
            "checkout",
            "GET /orders/{id} of a confirmed order (on events/apigw/admin-dispatch-shipment.json)",
            calls,
            warmup,
            |_| Ok(get_order.clone()),
            |payload| async move { api_call(&handle, &payload).await },
        )
        .await?,
    );

    // checkout-events: StockReserved and PaymentAuthorized of an order just placed: it is confirmed.
    let saga = samples.read("sqs/checkout-saga-events.json")?;
    let (store, inbox) = (MemoryOrders::default(), MemoryInbox::default());
    let handle = |trigger| checkout::events::handle(&store, &inbox, trigger);
    summaries.push(
        measure(
            "checkout-events",
            "events/sqs/checkout-saga-events.json (an order placed → confirmed)",
            calls,
            warmup,
            |_| {
                let mut placed = order_in(Status::Pending);
                placed.payment_intent_id = None;
                store.insert(&placed);
                Ok(fresh(&saga, Some(placed.order_id)).into_bytes())
            },
            |payload| async move { consumer_call(&handle, &payload).await },
        )
        .await?,
    );

    let confirmed = store.published().iter().filter(|e| matches!(e, Event::OrderConfirmed(_))).count();
    ensure!(confirmed == calls + warmup, "checkout-events confirmed {confirmed} of {} orders", calls + warmup);

    // payment-events: OrderPlaced then StockReserved of a new order: authorized at (fake) Stripe.
    let orders = samples.read("sqs/payment-order-events.json")?;
    let (store, stripe, inbox) = (FakeStore::default(), FakeStripe::default(), MemoryInbox::default());
    let handle = |trigger| payment::events::handle(&store, &stripe, &inbox, trigger);
    summaries.push(
        measure(
            "payment-events",
            "events/sqs/payment-order-events.json (a new order authorized)",
            calls,
            warmup,
            |_| Ok(fresh(&orders, Some(OrderId::new())).into_bytes()),
            |payload| async move { consumer_call(&handle, &payload).await },
        )
        .await?,
    );

    let authorized = store.events().iter().filter(|e| matches!(e, Event::PaymentAuthorized(_))).count();
    ensure!(authorized == calls + warmup, "payment-events authorized {authorized} of {} orders", calls + warmup);

    // relay: one outbox insert published.
    let insert = samples.read("dynamodb/outbox-insert.json")?.into_bytes();
    summaries.push(
        measure(
            "relay",
            "events/dynamodb/outbox-insert.json",
            calls,
            warmup,
            |_| Ok(insert.clone()),
            |payload| async move {
                let event: aws_lambda_events::dynamodb::Event = serde_json::from_slice(&payload)?;
                let response = relay::relay(&InstantBus, &InstantBus, &event).await;
                let body = serde_json::to_vec(&response)?;
                Ok((body, format!("{} records to retry", response.batch_item_failures.len())))
            },
        )
        .await?,
    );
    summaries.extend(domains::run(&samples, &admin, calls, warmup).await?);
    Ok(summaries)
}

/// The functions this benchmark does not drive yet, and why.
pub const NOT_MEASURED: &[(&str, &str)] = &[];
