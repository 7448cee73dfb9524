//! The async plumbing: outbox → stream → relay → EventBridge → SQS, on moto.

use reqwest::Method;
use serde_json::json;

use e2e::support::{Tap, call};
use relay::bus::EventBridgeBus;
use relay::dead_letter::SqsDeadLetters;
use relay::republish::{self, Selection};

#[tokio::test]
async fn every_product_change_reaches_the_bus_through_the_outbox_with_its_metadata() {
    let tap = Tap::new(json!({ "source": ["ferrocart.catalog"], "detail-type": ["ProductChanged"] })).await;
    let sku = testkit::unique("evt").to_uppercase();
    let body = json!({
        "slug": testkit::unique("evt"), "title": "Evented Mug", "category": testkit::unique("cat"), "status": "active",
        "variants": [{"sku": sku, "price": {"amount": 1200, "currency": "EUR"}}]
    });
    let created = call(Method::POST, "/admin/products").admin().json(&body).send().await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let archived = call(Method::DELETE, &format!("/admin/products/{id}")).admin().send().await;
    assert_eq!(archived.status, 200);

    let mine = |events: &[serde_json::Value]| -> Vec<serde_json::Value> {
        events.iter().filter(|e| e["detail"]["data"]["product_id"] == json!(id)).cloned().collect()
    };
    let events = tap.collect_until(|seen| mine(seen).len() >= 2).await;
    let events = mine(&events);

    assert_eq!(events.len(), 2, "one event per change: {events:#?}");
    let (first, second) = (&events[0]["detail"], &events[1]["detail"]);
    assert_eq!(first["version"], 1, "the detail layout version");
    assert_eq!(first["data"]["version"], 1);
    assert_eq!(first["data"]["status"], "active");
    assert_eq!(first["data"]["variants"][0], json!({"sku": sku, "price": {"amount": 1200, "currency": "EUR"}}));
    assert_eq!(second["data"]["version"], 2);
    assert_eq!(second["data"]["status"], "archived");
    assert_eq!(first["correlation_id"], json!(id));
    assert_ne!(first["event_id"], second["event_id"]);
    assert!(first["event_id"].as_str().unwrap().starts_with("evt_"));
}

/// A stream record as Lambda hands it to the relay: the insert of outbox item `event_id`. With
/// `detail: None` the item lacks its `detail`, so it cannot be read as an outbox record.
fn outbox_insert(sequence: u32, event_id: &str, detail_type: &str, detail: Option<&str>) -> serde_json::Value {
    let mut image = json!({
        "pk": {"S": format!("OUTBOX#{event_id}")}, "sk": {"S": "OUTBOX"},
        "source": {"S": "ferrocart.relaytest"}, "detail_type": {"S": detail_type},
        "correlation_id": {"S": "ord_relaytest"}, "expires_at": {"N": "1795428000"}
    });
    if let Some(detail) = detail {
        image["detail"] = json!({"S": detail});
    }
    json!({
        "eventID": format!("e{sequence}"), "eventName": "INSERT", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {
            "Keys": {"pk": image["pk"].clone(), "sk": image["sk"].clone()},
            "NewImage": image, "SequenceNumber": format!("{sequence:022}"), "SizeBytes": 300,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/relaytest/stream/2026-11-22T10:00:00.000"
    })
}

/// A fresh SQS queue on the shop's emulator: its URL and ARN.
async fn fresh_queue(sqs: &aws_sdk_sqs::Client, prefix: &str) -> (String, String) {
    let name = testkit::unique(prefix);
    let url = sqs.create_queue().queue_name(&name).send().await.unwrap().queue_url.unwrap();
    (url, format!("arn:aws:sqs:{}:123456789012:{name}", testkit::shop().region))
}

/// Receives (and deletes) the bodies of `queue`'s messages until `done` holds or 20 s pass.
async fn drain(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut bodies = Vec::new();
    while !done(&bodies) && tokio::time::Instant::now() < deadline {
        let output = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in output.messages.unwrap_or_default() {
            bodies.push(serde_json::from_str(message.body.as_deref().unwrap_or("null")).unwrap());
            sqs.delete_message().queue_url(queue).receipt_handle(message.receipt_handle.unwrap()).send().await.unwrap();
        }
    }
    bodies
}

#[tokio::test]
async fn the_relay_publishes_the_records_around_an_unreadable_one_and_parks_it_in_its_dead_letter_queue() {
    // Arrange: a batch [good, good, unreadable, good] of a detail-type only this test listens to.
    let shop = testkit::shop();
    let aws = shop.aws().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let detail_type = testkit::unique("Relayed");
    let tap = Tap::new(json!({ "source": ["ferrocart.relaytest"], "detail-type": [detail_type] })).await;
    let (dead_letter_queue, _) = fresh_queue(&sqs, "relaydlq").await;
    let detail = |n: u32| json!({"event_id": format!("evt_{n}"), "n": n}).to_string();
    let batch = json!({ "Records": [
        outbox_insert(1, "evt_1", &detail_type, Some(&detail(1))),
        outbox_insert(2, "evt_2", &detail_type, Some(&detail(2))),
        outbox_insert(3, "evt_3", &detail_type, None),
        outbox_insert(4, "evt_4", &detail_type, Some(&detail(4))),
    ]});
    let event: aws_lambda_events::dynamodb::Event = serde_json::from_value(batch).unwrap();
    let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&aws), shop.resource("EventBus").unwrap());
    let dead_letters = SqsDeadLetters::new(sqs.clone(), &dead_letter_queue);

    // Act
    let response = relay::relay(&bus, &dead_letters, &event).await;

    // Assert: nothing to retry, every good record out (SQS standard queues do not keep order;
    // the unit tests check the call order), the bad one parked whole.
    assert!(response.batch_item_failures.is_empty(), "nothing left to retry: {response:?}");
    let published = tap.collect_until(|seen| seen.len() >= 3).await;
    let mut numbers: Vec<_> = published.iter().map(|e| e["detail"]["n"].as_u64().unwrap()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2, 4]);
    let parked = drain(&sqs, &dead_letter_queue, |bodies| !bodies.is_empty()).await;
    assert_eq!(parked.len(), 1, "{parked:#?}");
    assert_eq!(parked[0]["reason"], "unreadable_outbox_item");
    assert_eq!(parked[0]["sequence_number"], format!("{:022}", 3));
    assert_eq!(parked[0]["pk"], "OUTBOX#evt_3");
    assert_eq!(parked[0]["record"]["dynamodb"]["NewImage"]["detail_type"]["S"], json!(detail_type), "the raw record");
}

#[tokio::test]
async fn an_unreadable_outbox_item_in_a_domain_table_reaches_the_outbox_dead_letter_queue() {
    // Arrange: the deployed wiring, through the real relay binary: CatalogTable's stream, its
    // relay, and the template's OutboxDeadLetterQueue.
    let shop = testkit::shop();
    let sqs = aws_sdk_sqs::Client::new(&shop.aws().await);
    let event_id = format!("evt_{}", testkit::unique("bad"));
    let item =
        [("pk", format!("OUTBOX#{event_id}")), ("sk", "OUTBOX".to_owned()), ("source", "ferrocart.catalog".to_owned())]
            .map(|(name, value)| (name.to_owned(), aws_sdk_dynamodb::types::AttributeValue::S(value)));

    // Act: an outbox item without detail-type or detail, as a broken producer might write.
    shop.dynamodb()
        .await
        .put_item()
        .table_name(shop.table("CatalogTable").unwrap())
        .set_item(Some(item.into()))
        .send()
        .await
        .unwrap();

    // Assert
    let queue = shop.resource("OutboxDeadLetterQueue").expect("the template declares OutboxDeadLetterQueue");
    let pk = json!(format!("OUTBOX#{event_id}"));
    let parked = drain(&sqs, queue, |bodies| bodies.iter().any(|b| b["pk"] == pk)).await;
    let letter = parked.iter().find(|b| b["pk"] == pk).expect("the relay parked the item");
    assert_eq!(letter["reason"], "unreadable_outbox_item");
    assert!(letter["event_source_arn"].as_str().unwrap().contains("CatalogTable"), "{letter}");
}

#[tokio::test]
async fn republishing_an_orders_outbox_sends_its_events_again_with_their_event_ids() {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    use domain_events::checkout::OrderConfirmed;
    use domain_events::{Envelope, Event, Metadata};

    // Arrange: a table of this test's own with the outbox items of two orders, and a bus of its own
    // whose rule feeds a queue, so no consumer of the shop sees these events.
    let shop = testkit::shop();
    let aws = shop.aws().await;
    let (dynamodb, sqs, events) =
        (shop.dynamodb().await, aws_sdk_sqs::Client::new(&aws), aws_sdk_eventbridge::Client::new(&aws));
    let table = testkit::unique("republish");
    let attribute = |name: &str| {
        AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().unwrap()
    };
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().unwrap();
    dynamodb
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .send()
        .await
        .unwrap();
    let (mine, other) = (kernel::OrderId::new(), kernel::OrderId::new());
    let confirmed = |order_id: kernel::OrderId| {
        Envelope::new(
            Metadata::new(order_id.to_string()),
            Event::OrderConfirmed(OrderConfirmed { order_id, shipping: None }),
        )
    };
    let envelopes = [confirmed(mine), confirmed(mine), confirmed(other)];
    let actions = envelopes.iter().map(|e| adapters::outbox::put(&table, e).unwrap()).collect::<Vec<_>>();
    dynamodb.transact_write_items().set_transact_items(Some(actions)).send().await.unwrap();
    let bus = testkit::unique("republishbus");
    events.create_event_bus().name(&bus).send().await.unwrap();
    let (queue, queue_arn) = fresh_queue(&sqs, "republished").await;
    events
        .put_rule()
        .name(&bus)
        .event_bus_name(&bus)
        .event_pattern(r#"{"source": ["ferrocart.checkout"]}"#)
        .send()
        .await
        .unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder().id("queue").arn(queue_arn).build().unwrap();
    events.put_targets().rule(&bus).event_bus_name(&bus).targets(target).send().await.unwrap();
    let broken =
        [("pk", "OUTBOX#evt_broken".to_owned()), ("sk", "OUTBOX".to_owned()), ("correlation_id", mine.to_string())]
            .map(|(name, value)| (name.to_owned(), aws_sdk_dynamodb::types::AttributeValue::S(value)));
    dynamodb.put_item().table_name(&table).set_item(Some(broken.into())).send().await.unwrap();
    let selection = Selection { correlation_id: mine.to_string(), event_id: None };

    // Act
    let found = republish::find(&dynamodb, &table, &selection).await.unwrap();
    let records = found.records;
    let report = republish::publish(&EventBridgeBus::new(events.clone(), &bus), &records).await;

    // Assert: the two events of this order, each with its original event id.
    let mut expected: Vec<String> = envelopes[..2].iter().map(|e| e.metadata.event_id.to_string()).collect();
    expected.sort();
    assert_eq!(report.iter().map(|r| r.event_id.clone()).collect::<Vec<_>>(), expected, "oldest first");
    assert!(report.iter().all(|r| r.result.is_ok()), "{report:?}");
    let unreadable: Vec<_> = found.unreadable.iter().map(|(pk, _)| pk.as_str()).collect();
    assert_eq!(unreadable, ["OUTBOX#evt_broken"], "listed, not fatal to the rest");
    let arrived = drain(&sqs, &queue, |bodies| bodies.len() >= 2).await;
    let mut ids: Vec<String> = arrived.iter().map(|e| e["detail"]["event_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    assert_eq!(ids, expected);

    // One event by its id: read by key, and only if it belongs to the correlation id given.
    let one = Selection { event_id: Some(expected[1].clone()), ..selection.clone() };
    assert_eq!(republish::find(&dynamodb, &table, &one).await.unwrap().records.len(), 1);
    let not_mine = Selection { correlation_id: other.to_string(), ..one };
    assert!(republish::find(&dynamodb, &table, &not_mine).await.unwrap().records.is_empty());
}
