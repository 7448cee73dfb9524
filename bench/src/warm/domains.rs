//! The warm handler cost of cart, catalog, inventory, fulfillment and payment's admin API and
//! webhook, on the same meter as [`super`]: each function's sample through the path its binary
//! serves, with the crate's in-memory store (`testing`, feature `test-util`), every input
//! prepared before the clock starts, and every answer checked.

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use time::OffsetDateTime;

use domain_events::Event;
use domain_events::catalog::ProductChanged;
use domain_events::queries::{GetCart, HoldForCancel};
use kernel::{CartId, EventId, OrderId, ShipmentId, Sku};
use lambda_glue::consumer::MemoryInbox;

use super::{SAMPLE_ORDER, Samples, Summary, api_call, consumer_call, fresh, measure};

/// The sample's SQS batch with every message's EventBridge `detail` changed by `edit`.
fn edit_details(sample: &str, edit: impl Fn(&mut Value)) -> anyhow::Result<String> {
    let mut batch: Value = serde_json::from_str(sample)?;
    for record in batch["Records"].as_array_mut().into_iter().flatten() {
        let mut body: Value = serde_json::from_str(record["body"].as_str().unwrap_or_default())?;
        edit(&mut body["detail"]);
        record["body"] = Value::String(body.to_string());
    }
    Ok(batch.to_string())
}

/// The `data` of the sample batch's event `index`.
fn data_of(sample: &str, index: usize) -> anyhow::Result<Value> {
    let batch: Value = serde_json::from_str(sample)?;
    let body: Value = serde_json::from_str(batch["Records"][index]["body"].as_str().unwrap_or_default())?;
    Ok(body["detail"]["data"].clone())
}

/// `summary`, once every call answered what the function should.
fn expect(summary: Summary, answer: &str) -> anyhow::Result<Summary> {
    ensure!(summary.answer == answer, "{}: every call answered {}, not {answer}", summary.function, summary.answer);
    Ok(summary)
}

/// `request` with a JSON body (and its headers), as API Gateway hands a POST or PUT over.
fn with_body(mut request: Value, body: &str) -> Value {
    request["body"] = json!(body);
    request["isBase64Encoded"] = json!(false);
    request["headers"]["content-type"] = json!("application/json");
    request["headers"]["content-length"] = json!(body.len().to_string());
    request
}

fn count(events: &[Event], wanted: fn(&Event) -> bool) -> usize {
    events.iter().filter(|event| wanted(event)).count()
}

/// What a direct invocation (`lambda_runtime::run` on a typed payload) does with the bytes.
async fn query_call<Q, R, F>(payload: &[u8], handle: impl FnOnce(Q) -> F) -> anyhow::Result<(Vec<u8>, String)>
where
    Q: serde::de::DeserializeOwned,
    R: serde::Serialize,
    F: std::future::Future<Output = anyhow::Result<R>>,
{
    let query: Q = serde_json::from_slice(payload)?;
    let reply = handle(query).await?;
    let body = serde_json::to_vec(&reply)?;
    let answer = serde_json::from_slice::<Value>(&body)?;
    Ok((body, format!("status {}", answer["status"].as_str().unwrap_or("?"))))
}

pub(super) async fn run(samples: &Samples, admin: &Value, calls: usize, warmup: usize) -> anyhow::Result<Vec<Summary>> {
    let total = calls + warmup;
    let mut summaries = Vec::new();
    let tee = Sku::parse("TEE-01-M-BLA").map_err(|e| anyhow::anyhow!("{e}"))?;

    // cart: PUT /carts/{id}/items/{sku} on the caller's cart: the line set, the cart priced from
    // the read model (the sample's ProductChanged applied) and shown.
    let catalog_events = samples.read("sqs/cart-catalog-events.json")?;
    let change: ProductChanged = serde_json::from_value(data_of(&catalog_events, 0)?)?;
    let carts = cart::testing::MemoryCarts::default();
    cart::service::on_product_changed(&carts, &change).await?;
    let cart_id = CartId::new();
    let now = OffsetDateTime::now_utc();
    carts.insert(&cart::model::Cart {
        id: cart_id,
        owner: admin["requestContext"]["authorizer"]["jwt"]["claims"]["sub"].as_str().unwrap_or_default().to_owned(),
        lines: [(tee.clone(), 1)].into(),
        version: 1,
        updated_at: now,
    });
    let (id, sku) = (cart_id.to_string(), tee.to_string());
    let put_line = with_body(
        crate::cold::api_event(
            admin,
            "PUT",
            "/carts/{id}/items/{sku}",
            &format!("/carts/{id}/items/{sku}"),
            &[("id", &id), ("sku", &sku)],
            "",
        ),
        r#"{"quantity":2}"#,
    )
    .to_string()
    .into_bytes();
    let handle = |request| cart::api::handle(&carts, request);
    summaries.push(expect(
        measure(
            "cart",
            "PUT /carts/{id}/items/{sku}, the caller's cart priced (on events/apigw/admin-dispatch-shipment.json)",
            calls,
            warmup,
            |_| Ok(put_line.clone()),
            |payload| async move { api_call(&handle, &payload).await },
        )
        .await?,
        "HTTP 200",
    )?);
    let cart = carts.cart(cart_id).context("the cart")?;
    ensure!(cart.version == 1 + total as u64, "cart: {} of {total} writes", cart.version - 1);

    // cart-events: the sample ProductChanged, each call a newer version of the product, so each
    // is written (an older or equal one is skipped as stale).
    let carts = cart::testing::MemoryCarts::default();
    let inbox = MemoryInbox::default();
    let handle = |trigger| cart::events::handle(&carts, &inbox, trigger);
    summaries.push(expect(
        measure(
            "cart-events",
            "events/sqs/cart-catalog-events.json (each a newer price)",
            calls,
            warmup,
            |i| {
                let edited = edit_details(&catalog_events, |detail| detail["data"]["version"] = json!(i + 2))?;
                Ok(fresh(&edited, None).into_bytes())
            },
            |payload| async move { consumer_call(&handle, &payload).await },
        )
        .await?,
        "0 of the batch failed",
    )?);
    let (_, version) = carts.offer(&tee).context("the offer")?;
    ensure!(version == 1 + total as u64, "cart-events: the read model is at version {version}");

    // cart-query: checkout's GetCart of alice's cart of 2 tees.
    let get_cart = samples.read("lambda/get-cart.json")?;
    let query: GetCart = serde_json::from_str(&get_cart)?;
    let carts = cart::testing::MemoryCarts::default();
    cart::service::on_product_changed(&carts, &change).await?;
    carts.insert(&cart::model::Cart {
        id: query.cart_id,
        owner: query.customer.clone(),
        lines: [(tee.clone(), 2)].into(),
        version: 3,
        updated_at: now,
    });
    let get_cart = get_cart.into_bytes();
    let carts = &carts;
    summaries.push(expect(
        measure(
            "cart-query",
            "events/lambda/get-cart.json (a cart of one priced line)",
            calls,
            warmup,
            |_| Ok(get_cart.clone()),
            |payload| async move {
                query_call(&payload, |query: GetCart| async move { Ok(cart::query::handle(carts, query).await?) }).await
            },
        )
        .await?,
        "status found",
    )?);

    // catalog: GET /products?category=mugs&limit=2 over 3 mugs and a tee: a page and a cursor.
    let store = catalog::testing::MemoryCatalog::default();
    for (slug, sku, category) in [
        ("mug-a", "MUG-A", "mugs"),
        ("mug-b", "MUG-B", "mugs"),
        ("tee-c", "TEE-C", "t-shirts"),
        ("mug-d", "MUG-D", "mugs"),
    ] {
        let input = serde_json::from_value(json!({
            "slug": slug, "title": format!("Stoneware {slug}"), "category": category, "status": "active",
            "description": "Holds 350 ml.", "variants": [{ "sku": sku, "price": { "amount": 1800, "currency": "USD" } }]
        }))?;
        catalog::service::create(&store, input, now).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let list = samples.read("apigw/list-products.json")?.into_bytes();
    let handle = |request| catalog::api::handle(&store, request);
    let (first, _) = api_call(&handle, &list).await?;
    let first: Value = serde_json::from_slice(&first)?;
    let page: Value = serde_json::from_str(first["body"].as_str().unwrap_or_default())?;
    ensure!(
        page["items"].as_array().map(Vec::len) == Some(2) && page["next_cursor"].is_string(),
        "catalog: the listing answered {page}"
    );
    summaries.push(expect(
        measure(
            "catalog",
            "events/apigw/list-products.json (2 of 3 mugs and a cursor)",
            calls,
            warmup,
            |_| Ok(list.clone()),
            |payload| async move { api_call(&handle, &payload).await },
        )
        .await?,
        "HTTP 200",
    )?);

    // inventory: GET /availability of a SKU stocked in two warehouses.
    let mug = Sku::parse("MUG-01-WHI").map_err(|e| anyhow::anyhow!("{e}"))?;
    let (east, west) = (kernel::Warehouse::parse("east"), kernel::Warehouse::parse("west"));
    let (east, west) = (east.map_err(|e| anyhow::anyhow!("{e}"))?, west.map_err(|e| anyhow::anyhow!("{e}"))?);
    let stock = inventory::testing::MemoryInventory::stocked(&mug, &east, 40);
    inventory::service::set_stock(&stock, mug.clone(), west, 12, None).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let availability =
        crate::cold::api_event(admin, "GET", "/availability", "/availability", &[], "skus=MUG-01-WHI").to_string();
    let availability = availability.into_bytes();
    let handle = |request| inventory::api::handle(&stock, request);
    summaries.push(expect(
        measure(
            "inventory",
            "GET /availability?skus=MUG-01-WHI, two warehouses (on events/apigw/admin-dispatch-shipment.json)",
            calls,
            warmup,
            |_| Ok(availability.clone()),
            |payload| async move { api_call(&handle, &payload).await },
        )
        .await?,
        "HTTP 200",
    )?);

    // inventory-events: OrderPlaced (2 tees reserved) then OrderCancelled (released) of a new order.
    let order_events = samples.read("sqs/inventory-order-events.json")?;
    let main = kernel::Warehouse::parse("main").map_err(|e| anyhow::anyhow!("{e}"))?;
    let stock = inventory::testing::MemoryInventory::stocked(&tee, &main, 10);
    let inbox = MemoryInbox::default();
    let hold = time::Duration::minutes(15);
    let handle = |trigger| inventory::events::handle(&stock, &inbox, trigger, hold);
    summaries.push(expect(
        measure(
            "inventory-events",
            "events/sqs/inventory-order-events.json (a new order reserved, then released)",
            calls,
            warmup,
            |_| Ok(fresh(&order_events, Some(OrderId::new())).into_bytes()),
            |payload| async move { consumer_call(&handle, &payload).await },
        )
        .await?,
        "0 of the batch failed",
    )?);
    let published = stock.published();
    let reserved = count(&published, |e| matches!(e, Event::StockReserved(_)));
    let released = count(&published, |e| matches!(e, Event::StockReleased(_)));
    ensure!(reserved == total && released == total, "inventory-events: {reserved} reserved, {released} released");
    let level = stock.stock().into_iter().next().context("the tee's stock")?;
    ensure!((level.available, level.reserved) == (10, 0), "inventory-events left {level:?}");

    // fulfillment: POST /admin/shipments/{id}/dispatch of a pending shipment of an open order.
    let dispatch = samples.read("apigw/admin-dispatch-shipment.json")?;
    let sample_shipment = "shp_01JD4X7A1B2C3D4E5F6G7H8J9K";
    let fulfillment_events = samples.read("sqs/fulfillment-order-events.json")?;
    // The sample's StockCommitted lines and OrderConfirmed shipping.
    let lines: Vec<domain_events::inventory::ReservedLine> =
        serde_json::from_value(data_of(&fulfillment_events, 0)?["lines"].clone())?;
    let shipping = serde_json::from_value(data_of(&fulfillment_events, 1)?["shipping"].clone())?;
    let shipments = fulfillment::testing::MemoryFulfillment::default();
    let handle = |request| fulfillment::api::handle(&shipments, request);
    summaries.push(expect(
        measure(
            "fulfillment",
            "events/apigw/admin-dispatch-shipment.json (a pending shipment dispatched)",
            calls,
            warmup,
            |_| {
                let planned = fulfillment::model::plan(OrderId::new(), &shipping, &lines, now)?;
                let shipment = planned.into_iter().next().context("a shipment")?;
                shipments.insert(&shipment);
                let id: ShipmentId = shipment.shipment_id;
                Ok(dispatch.replace(sample_shipment, &id.to_string()).into_bytes())
            },
            |payload| async move { api_call(&handle, &payload).await },
        )
        .await?,
        "HTTP 200",
    )?);
    let dispatched = count(&shipments.published(), |e| matches!(e, Event::ShipmentDispatched(_)));
    ensure!(dispatched == total, "fulfillment: {dispatched} of {total} dispatched");

    // fulfillment-events: StockCommitted, OrderConfirmed (2 shipments created), OrderCancelled
    // (both cancelled) of a new order.
    let shipments = fulfillment::testing::MemoryFulfillment::default();
    let inbox = MemoryInbox::default();
    let handle = |trigger| fulfillment::events::handle(&shipments, &inbox, trigger);
    summaries.push(expect(
        measure(
            "fulfillment-events",
            "events/sqs/fulfillment-order-events.json (2 shipments created, then cancelled)",
            calls,
            warmup,
            |_| Ok(fresh(&fulfillment_events, Some(OrderId::new())).into_bytes()),
            |payload| async move { consumer_call(&handle, &payload).await },
        )
        .await?,
        "0 of the batch failed",
    )?);
    let published = shipments.published();
    let created = count(&published, |e| matches!(e, Event::ShipmentCreated(_)));
    let cancelled = count(&published, |e| matches!(e, Event::ShipmentCancelled(_)));
    ensure!(
        created == 2 * total && cancelled == 2 * total,
        "fulfillment-events: {created} created, {cancelled} cancelled"
    );

    // fulfillment-query: checkout's HoldForCancel of an order not dispatched: held.
    let shipments = &fulfillment::testing::MemoryFulfillment::default();
    summaries.push(expect(
        measure(
            "fulfillment-query",
            "HoldForCancel of an order with nothing dispatched (domain-events::queries)",
            calls,
            warmup,
            |_| Ok(json!({ "order_id": OrderId::new() }).to_string().into_bytes()),
            |payload| async move {
                query_call(&payload, |query: HoldForCancel| async move {
                    Ok(fulfillment::query::handle(shipments, query, OffsetDateTime::now_utc()).await?)
                })
                .await
            },
        )
        .await?,
        "status held",
    )?);

    summaries.extend(payment(samples, admin, calls, warmup).await?);
    Ok(summaries)
}

/// payment-admin and payment-webhooks, on the fakes of `payment::testing`.
async fn payment(samples: &Samples, admin: &Value, calls: usize, warmup: usize) -> anyhow::Result<Vec<Summary>> {
    use payment::testing::{FakeStore, FakeStripe, FakeWebhookInbox, NEEDS_3DS, VISA, at_once, place_and_reserve};

    let total = calls + warmup;
    let mut summaries = Vec::new();

    // payment-admin: the sample refund (10.00 of 25.00) of an order authorized and captured at
    // (fake) Stripe, a new order each call.
    let refund = samples.read("apigw/admin-refund-order.json")?;
    let (store, stripe) = (FakeStore::default(), FakeStripe::default());
    let handle = |request: lambda_http::Request| {
        let (store, stripe) = (&store, &stripe);
        async move { payment::admin::handle(store, stripe, &request, OffsetDateTime::now_utc()).await }
    };
    summaries.push(expect(
        measure(
            "payment-admin",
            "events/apigw/admin-refund-order.json (10.00 refunded of a captured 25.00)",
            calls,
            warmup,
            |_| {
                let order_id = OrderId::new();
                at_once(place_and_reserve(&store, &stripe, order_id, VISA));
                let dispatched = payment::testing::dispatched(order_id, 1);
                at_once(payment::capture::on_shipment_dispatched(&store, &stripe, &dispatched))?;
                Ok(refund.replace(SAMPLE_ORDER, &order_id.to_string()).into_bytes())
            },
            |payload| async move { api_call(&handle, &payload).await },
        )
        .await?,
        "HTTP 201",
    )?);
    let refunded = count(&store.events(), |e| matches!(e, Event::RefundIssued(_)));
    ensure!(refunded == total, "payment-admin: {refunded} of {total} refunds issued");

    // payment-webhooks: `payment_intent.amount_capturable_updated`, signed with the endpoint's
    // secret (Stripe's `t=…,v1=…`), for a new order whose card passed 3-D Secure: authorized.
    const SECRET: &str = "whsec_local_bench";
    let secrets = [payment::signature::SigningSecret::new(SECRET).context("the signing secret")?];
    let mut request = crate::cold::api_event(admin, "POST", "/webhooks/stripe", "/webhooks/stripe", &[], "");
    // Stripe sends no token: the route has no authorizer.
    if let Some(context) = request["requestContext"].as_object_mut() {
        context.remove("authorizer");
    }
    if let Some(headers) = request["headers"].as_object_mut() {
        headers.remove("authorization");
    }
    let (store, stripe, inbox) = (FakeStore::default(), FakeStripe::default(), FakeWebhookInbox::default());
    let handle = |request: lambda_http::Request| {
        let (store, stripe, inbox, secrets) = (&store, &stripe, &inbox, &secrets);
        async move { payment::webhook::handle(store, stripe, inbox, secrets, &request, OffsetDateTime::now_utc()).await }
    };
    summaries.push(expect(
        measure(
            "payment-webhooks",
            "POST /webhooks/stripe, a signed amount_capturable_updated after 3-D Secure (on events/apigw/admin-dispatch-shipment.json)",
            calls,
            warmup,
            |_| {
                let order_id = OrderId::new();
                at_once(place_and_reserve(&store, &stripe, order_id, NEEDS_3DS));
                let payment::model::Stage::AwaitingAction { intent } = store.payment(order_id).stage else {
                    anyhow::bail!("the payment of {order_id} is not awaiting 3-D Secure");
                };
                stripe.authenticate(&intent, true);
                let body = json!({
                    "id": EventId::new().to_string(), "object": "event",
                    "type": "payment_intent.amount_capturable_updated",
                    "created": OffsetDateTime::now_utc().unix_timestamp(),
                    "data": { "object": {
                        "id": intent.as_str(), "object": "payment_intent", "status": "requires_capture",
                        "metadata": { "order_id": order_id.to_string() }
                    }}
                })
                .to_string();
                let signature = secrets[0].header(OffsetDateTime::now_utc().unix_timestamp(), body.as_bytes());
                let mut signed = with_body(request.clone(), &body);
                signed["headers"]["stripe-signature"] = json!(signature);
                Ok(signed.to_string().into_bytes())
            },
            |payload| async move { api_call(&handle, &payload).await },
        )
        .await?,
        "HTTP 200",
    )?
    );
    let authorized = count(&store.events(), |e| matches!(e, Event::PaymentAuthorized(_)));
    ensure!(authorized == total, "payment-webhooks: {authorized} of {total} authorized");
    Ok(summaries)
}
