//! The cost-per-order and flash-sale scenarios, driven through the HTTP API as a shopper and an
//! admin would.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde::Serialize;
use serde_json::{Value, json};

use crate::proxy::Ledger;
use crate::stack::Metered;

/// A client of the local cloud's API.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    /// API Gateway requests made (each is billed).
    pub requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self { base: base.to_owned(), http: reqwest::Client::new(), requests: Default::default() }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        if path == "/checkout" {
            request = request.header("idempotency-key", format!("bench-{}", unique()));
        }
        let response = request.send().await.with_context(|| format!("calling {path}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    pub fn taken(&self) -> u64 {
        self.requests.swap(0, std::sync::atomic::Ordering::Relaxed)
    }
}

fn unique() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{nanos:x}{n}")
}

/// Lower-case letters only: a valid slug and category.
fn letters(seed: u64) -> String {
    (0..10)
        .scan(seed.wrapping_add(0x9e37_79b9_7f4a_7c15), |state, _| {
            *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            Some(char::from(b'a' + u8::try_from((*state >> 33) % 26).unwrap_or(0)))
        })
        .collect()
}

use reqwest::Method;

/// Creates an active product with `variants` SKUs at 12.00 USD, stocks each with `on_hand` in
/// warehouse `main`, and waits until carts can take them. Returns the SKUs.
pub async fn product(
    api: &Api,
    admin: &str,
    shopper: &str,
    variants: usize,
    on_hand: u32,
) -> anyhow::Result<Vec<String>> {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let name = letters(seed ^ u64::try_from(variants).unwrap_or(0));
    let sizes: Vec<String> = (0..variants).map(|i| format!("size{i}")).collect();
    let skus: Vec<String> = (0..variants).map(|i| format!("BENCH-{}-{i}", name.to_uppercase())).collect();
    let body = json!({
        "slug": name, "title": format!("Bench {name}"), "category": "bench", "status": "active",
        "options": [{ "name": "size", "values": sizes }],
        "variants": skus.iter().zip(&sizes).map(|(sku, size)| json!({
            "sku": sku, "options": { "size": size }, "price": { "amount": 1200, "currency": "USD" }
        })).collect::<Vec<_>>(),
    });
    let (status, answer) = api.call(Method::POST, "/admin/products", admin, Some(&body)).await?;
    ensure!(status == 201, "creating the product: {status} {answer}");
    for sku in &skus {
        let body = json!({ "warehouse": "main", "on_hand": on_hand });
        let (status, answer) = api.call(Method::PUT, &format!("/admin/inventory/{sku}"), admin, Some(&body)).await?;
        ensure!(status == 200, "stocking {sku}: {status} {answer}");
    }
    // Carts learn prices from the catalog's events: wait until a throwaway cart takes each SKU.
    let cart = new_cart(api, shopper).await?;
    for sku in &skus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if put_item(api, shopper, &cart, sku, 1).await? == 200 {
                break;
            }
            ensure!(Instant::now() < deadline, "{sku} never reached the cart's read model");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(skus)
}

pub async fn new_cart(api: &Api, token: &str) -> anyhow::Result<String> {
    let (status, answer) = api.call(Method::POST, "/carts", token, None).await?;
    ensure!(status == 201, "creating a cart: {status} {answer}");
    answer["id"].as_str().map(str::to_owned).context("a cart id")
}

pub async fn put_item(api: &Api, token: &str, cart: &str, sku: &str, quantity: u32) -> anyhow::Result<u16> {
    let body = json!({ "quantity": quantity });
    Ok(api.call(Method::PUT, &format!("/carts/{cart}/items/{sku}"), token, Some(&body)).await?.0)
}

pub async fn checkout(api: &Api, token: &str, cart: &str) -> anyhow::Result<String> {
    let body = json!({
        "cart_id": cart,
        "email": "bench@example.com",
        "shipping_address": { "name": "Ada Lovelace", "line1": "1 Main St", "city": "Springfield",
                              "region": "IL", "postal_code": "62701", "country": "US" },
        "shipping_method": "standard",
        "payment_method": "pm_card_visa"
    });
    let (status, answer) = api.call(Method::POST, "/checkout", token, Some(&body)).await?;
    ensure!(status == 202, "checkout: {status} {answer}");
    answer["order_id"].as_str().map(str::to_owned).context("an order id")
}

/// Lambda's side of a window: invocations and run time per function.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LambdaUse {
    pub invocations: BTreeMap<String, u64>,
    /// Run time per function (ms, as measured locally: an upper bound of AWS's, since every
    /// storage call here goes to a Python emulator).
    pub busy_ms: BTreeMap<String, u64>,
    /// Memory size × run time, MB·ms.
    pub mb_ms: u64,
}

pub fn lambda_since(before: &BTreeMap<String, localcloud::meter::FunctionMeter>, metered: &Metered) -> LambdaUse {
    let now = localcloud::meter::snapshot();
    let mut usage = LambdaUse::default();
    for (function, meter) in now {
        let old = before.get(&function).cloned().unwrap_or_default();
        let invocations = meter.invocations - old.invocations;
        if invocations == 0 {
            continue;
        }
        let ms = u64::try_from((meter.busy - old.busy).as_millis()).unwrap_or(u64::MAX);
        usage.mb_ms += ms * metered.memory_mb.get(&function).copied().unwrap_or(128);
        usage.invocations.insert(function.clone(), invocations);
        usage.busy_ms.insert(function, ms);
    }
    usage
}

/// What one phase of the order cost.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub api_requests: u64,
    pub ledger: Ledger,
    pub lambda: LambdaUse,
    /// First request → the phase's last write.
    pub settle_ms: u64,
}

/// A 3-line order from an empty cart to `confirmed` (phase 1), then shipped and delivered
/// through the admin shipments API (phase 2), each phase counted on its own.
///
/// The setup runs one order the same way first, not counted: the measured order meets warm
/// functions, as nearly every order does in AWS, where an environment serves many orders and
/// reads its secrets once per cold start, at its first use (cold starts are measured apart).
pub async fn cost(metered: &Metered) -> anyhow::Result<Vec<Phase>> {
    let api = Api::new(&metered.cloud.api_url);
    let admin = metered.cloud.token("bench-admin", true)?;
    let setup_shopper = metered.cloud.token("bench-setup", false)?;
    let skus = product(&api, &admin, &setup_shopper, 3, 1000).await?;
    order_phases(metered, &api, &admin, &setup_shopper, &skus).await?;
    let shopper = metered.cloud.token("bench-shopper", false)?;
    order_phases(metered, &api, &admin, &shopper, &skus).await
}

/// One order of `skus` by `shopper`, to `confirmed` and then to `delivered`, each phase counted.
async fn order_phases(
    metered: &Metered,
    api: &Api,
    admin: &str,
    shopper: &str,
    skus: &[String],
) -> anyhow::Result<Vec<Phase>> {
    metered.settle(Duration::from_secs(3), Duration::from_secs(60)).await;
    metered.avoid_schedules(Duration::from_secs(25)).await;

    // Phase 1: cart → confirmed.
    metered.proxy.take();
    api.taken();
    let meters = localcloud::meter::snapshot();
    let started = Instant::now();
    let cart = new_cart(api, shopper).await?;
    for sku in skus {
        let status = put_item(api, shopper, &cart, sku, 1).await?;
        ensure!(status == 200, "adding {sku}: {status}");
    }
    let order = checkout(api, shopper, &cart).await?;
    ensure!(metered.settle(Duration::from_secs(3), Duration::from_secs(120)).await, "the saga never settled");
    let settled = metered.proxy.last_change() - started;
    let (_, view) = api.call(Method::GET, &format!("/orders/{order}"), shopper, None).await?;
    ensure!(view["status"] == "confirmed", "the order is not confirmed: {view}");
    let confirmed = Phase {
        name: "cart → confirmed".into(),
        api_requests: api.taken(),
        ledger: metered.proxy.take(),
        lambda: lambda_since(&meters, metered),
        settle_ms: u64::try_from(settled.as_millis()).unwrap_or(0),
    };

    // Phase 2: dispatch and deliver every shipment of the order.
    metered.avoid_schedules(Duration::from_secs(20)).await;
    metered.proxy.take();
    let meters = localcloud::meter::snapshot();
    let started = Instant::now();
    let (status, list) = api.call(Method::GET, "/admin/shipments?status=pending&limit=100", admin, None).await?;
    ensure!(status == 200, "listing shipments: {status} {list}");
    let shipments: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["order_id"] == order.as_str())
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    ensure!(!shipments.is_empty(), "the order has no pending shipment: {list}");
    for shipment in &shipments {
        let body = json!({ "carrier": "ups", "tracking_number": "1Z999AA10123456784" });
        let (status, answer) =
            api.call(Method::POST, &format!("/admin/shipments/{shipment}/dispatch"), admin, Some(&body)).await?;
        ensure!(status == 200, "dispatching: {status} {answer}");
        let (status, answer) =
            api.call(Method::POST, &format!("/admin/shipments/{shipment}/deliver"), admin, None).await?;
        ensure!(status == 200, "delivering: {status} {answer}");
    }
    ensure!(metered.settle(Duration::from_secs(3), Duration::from_secs(120)).await, "the saga never settled");
    let settled = metered.proxy.last_change() - started;
    let (_, view) = api.call(Method::GET, &format!("/orders/{order}"), shopper, None).await?;
    ensure!(view["status"] == "delivered", "the order is not delivered: {view}");
    let delivered = Phase {
        name: "confirmed → delivered".into(),
        api_requests: api.taken(),
        ledger: metered.proxy.take(),
        lambda: lambda_since(&meters, metered),
        settle_ms: u64::try_from(settled.as_millis()).unwrap_or(0),
    };
    Ok(vec![confirmed, delivered])
}

/// What a flash sale came to.
#[derive(Debug, Clone, Serialize)]
pub struct FlashSale {
    pub customers: usize,
    pub units: u32,
    pub confirmed: usize,
    pub cancelled_by_reason: BTreeMap<String, usize>,
    pub other_status: BTreeMap<String, usize>,
    /// Units confirmed beyond the stock (must be 0).
    pub oversold: i64,
    pub inventory: Value,
    /// First checkout sent → last write of the saga.
    pub drain_ms: u64,
    /// First checkout sent → every checkout answered 202.
    pub placement_ms: u64,
    pub setup_ms: u64,
    pub calls: BTreeMap<String, u64>,
}

/// `customers` distinct customers check out one unit each of one SKU with `units` in stock, all
/// at once.
pub async fn flash_sale(
    metered: &Metered,
    customers: usize,
    units: u32,
    concurrency: usize,
) -> anyhow::Result<FlashSale> {
    metered.proxy.price_items.store(false, std::sync::atomic::Ordering::Relaxed);
    let api = Api::new(&metered.cloud.api_url);
    let admin = metered.cloud.token("bench-admin", true)?;
    let setup_started = Instant::now();
    let sku = product(&api, &admin, &metered.cloud.token("bench-setup", false)?, 1, units).await?.remove(0);

    // Every customer's cart, a few at a time (setup, not measured).
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..customers {
        let token = metered.cloud.token(&format!("flash-{index:05}"), false)?;
        let (api, sku, semaphore) = (api.clone(), sku.clone(), semaphore.clone());
        tasks.spawn(async move {
            let _permit = semaphore.acquire().await?;
            let cart = new_cart(&api, &token).await?;
            let status = put_item(&api, &token, &cart, &sku, 1).await?;
            ensure!(status == 200, "adding to a cart: {status}");
            Ok::<_, anyhow::Error>((token, cart))
        });
    }
    let mut carts = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        carts.push(joined??);
    }
    let setup_ms = u64::try_from(setup_started.elapsed().as_millis()).unwrap_or(0);
    eprintln!("  {} carts ready in {} s; checking out all at once", carts.len(), setup_ms / 1000);
    metered.settle(Duration::from_secs(3), Duration::from_secs(120)).await;
    metered.proxy.take();

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (token, cart) in carts {
        let api = api.clone();
        tasks.spawn(async move {
            let order = checkout(&api, &token, &cart).await?;
            Ok::<_, anyhow::Error>((token, order))
        });
    }
    let mut orders = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        orders.push(joined??);
    }
    let placement_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(0);
    eprintln!("  {} orders placed in {} s; waiting for the saga to drain", orders.len(), placement_ms / 1000);
    if !metered.settle(Duration::from_secs(5), Duration::from_secs(1800)).await {
        bail!("the flash sale did not drain within 30 minutes");
    }
    let drain_ms = u64::try_from((metered.proxy.last_change() - started).as_millis()).unwrap_or(0);

    let mut confirmed = 0;
    let mut cancelled_by_reason: BTreeMap<String, usize> = BTreeMap::new();
    let mut other_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (token, order) in orders {
        let (api, semaphore) = (api.clone(), semaphore.clone());
        tasks.spawn(async move {
            let _permit = semaphore.acquire().await?;
            Ok::<_, anyhow::Error>(api.call(Method::GET, &format!("/orders/{order}"), &token, None).await?.1)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let view = joined??;
        match view["status"].as_str().unwrap_or("?") {
            "confirmed" => confirmed += 1,
            "cancelled" => {
                *cancelled_by_reason
                    .entry(view["cancel_reason"].as_str().unwrap_or("(none)").to_owned())
                    .or_default() += 1
            }
            other => *other_status.entry(other.to_owned()).or_default() += 1,
        }
    }
    let (_, inventory) = api.call(Method::GET, &format!("/admin/inventory/{sku}"), &admin, None).await?;
    let oversold = i64::try_from(confirmed).unwrap_or(i64::MAX) - i64::from(units);
    Ok(FlashSale {
        customers,
        units,
        confirmed,
        cancelled_by_reason,
        other_status,
        oversold: oversold.max(0),
        inventory,
        drain_ms,
        placement_ms,
        setup_ms,
        calls: metered.proxy.take().calls,
    })
}

/// How long one order took from checkout's answer to `confirmed`, and where the time went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OrderLatency {
    pub order_id: String,
    /// Checkout's 202 → the order reading `confirmed`, µs.
    pub wall_us: u64,
    /// Our functions' calls to the AWS emulator (DynamoDB, EventBridge, Secrets Manager, Lambda),
    /// summed: the emulator's time to answer them.
    pub emulator_us: u64,
    /// The functions' run time (invocations that ended in the window) minus their emulator calls:
    /// our code, the Stripe emulator's answers (not metered apart) and the local runtime's hop.
    pub ours_us: u64,
    /// The rest of the wall time, when none of the order's functions ran: the local event source
    /// mappings' polling (SQS receives, stream reads), EventBridge → SQS inside moto and the
    /// harness's poll granularity. Negative overlap (two functions at once) counts as 0.
    pub plumbing_us: u64,
    /// Invocations that ended in the window.
    pub invocations: u64,
    /// The mappings' own calls to the emulator in the window (SQS receives and deletes, stream
    /// reads), summed: part of the plumbing.
    pub mapping_calls_us: u64,
}

/// Percentiles (µs) of each part over the orders.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub orders: Vec<OrderLatency>,
    pub poll_interval_ms: u64,
    /// `part → (p50, p99, max)` in µs.
    pub percentiles: BTreeMap<String, (u64, u64, u64)>,
}

/// `orders` 3-line orders placed one after another (the saga settled in between, so every call
/// of a window is that order's): each timed from checkout's 202 until DynamoDB answered the
/// transaction that confirmed it (the one write holding the order id and its `OrderConfirmed`
/// outbox event, seen by the proxy: from then on every read says `confirmed`), checked every
/// `poll` with a deadline; the order is then read through the API to be sure. Nothing polls the
/// emulator or invokes a function to wait, so the window holds only the saga's own work.
pub async fn latency(metered: &Metered, orders: usize, poll: Duration) -> anyhow::Result<Latency> {
    let api = Api::new(&metered.cloud.api_url);
    let admin = metered.cloud.token("bench-admin", true)?;
    let setup_shopper = metered.cloud.token("bench-setup", false)?;
    let stock = u32::try_from(orders).unwrap_or(u32::MAX).saturating_add(10);
    let skus = product(&api, &admin, &setup_shopper, 3, stock).await?;
    let shopper = metered.cloud.token("bench-shopper", false)?;
    metered.proxy.price_items.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut measured = Vec::with_capacity(orders);
    for n in 0..orders {
        metered.settle(Duration::from_secs(1), Duration::from_secs(60)).await;
        metered.avoid_schedules(Duration::from_secs(5)).await;
        let cart = new_cart(&api, &shopper).await?;
        for sku in &skus {
            let status = put_item(&api, &shopper, &cart, sku, 1).await?;
            ensure!(status == 200, "adding {sku}: {status}");
        }
        metered.proxy.take_timed();
        metered.proxy.timing.store(true, std::sync::atomic::Ordering::Relaxed);
        let order = checkout(&api, &shopper, &cart).await?;
        let placed = Instant::now();
        let meters = localcloud::meter::snapshot();
        metered.proxy.watch(&[order.as_str(), "OrderConfirmed"]);
        let deadline = placed + Duration::from_secs(30);
        let confirmed = loop {
            if let Some(at) = metered.proxy.watched() {
                break at;
            }
            ensure!(Instant::now() < deadline, "{order} not confirmed within 30 s");
            tokio::time::sleep(poll).await;
        };
        let now = localcloud::meter::snapshot();
        metered.proxy.timing.store(false, std::sync::atomic::Ordering::Relaxed);
        let wall = confirmed.saturating_duration_since(placed);
        let (_, view) = api.call(Method::GET, &format!("/orders/{order}"), &shopper, None).await?;
        ensure!(view["status"] == "confirmed", "{order} is not confirmed: {}", view["status"]);
        let (mut run, mut invocations) = (Duration::ZERO, 0);
        for (function, meter) in &now {
            let old = meters.get(function).cloned().unwrap_or_default();
            run += meter.busy - old.busy;
            invocations += meter.invocations - old.invocations;
        }
        let (mut emulator, mut mappings) = (Duration::ZERO, Duration::ZERO);
        for call in
            metered.proxy.take_timed().into_iter().filter(|call| call.started >= placed && call.started < confirmed)
        {
            if call.call.starts_with("sqs:") || call.call.starts_with("dynamodbstreams:") {
                mappings += call.took;
            } else {
                emulator += call.took;
            }
        }
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let one = OrderLatency {
            order_id: order,
            wall_us: micros(wall),
            emulator_us: micros(emulator),
            ours_us: micros(run.saturating_sub(emulator)),
            plumbing_us: micros(wall.saturating_sub(run)),
            invocations,
            mapping_calls_us: micros(mappings),
        };
        eprintln!(
            "  order {}/{orders}: {} ms (emulator {} ms, ours {} ms, plumbing {} ms)",
            n + 1,
            one.wall_us / 1000,
            one.emulator_us / 1000,
            one.ours_us / 1000,
            one.plumbing_us / 1000
        );
        measured.push(one);
    }
    let mut percentiles = BTreeMap::new();
    type Part = fn(&OrderLatency) -> u64;
    let parts: [(&str, Part); 5] = [
        ("wall", |o| o.wall_us),
        ("emulator", |o| o.emulator_us),
        ("ours", |o| o.ours_us),
        ("plumbing", |o| o.plumbing_us),
        ("mapping calls", |o| o.mapping_calls_us),
    ];
    for (name, part) in parts {
        let mut values: Vec<u64> = measured.iter().map(part).collect();
        let (p50, p99) = (crate::percentile(&mut values, 50), crate::percentile(&mut values, 99));
        percentiles.insert(name.to_owned(), (p50, p99, values.last().copied().unwrap_or(0)));
    }
    let poll_interval_ms = u64::try_from(poll.as_millis()).unwrap_or(0);
    Ok(Latency { orders: measured, poll_interval_ms, percentiles })
}
