//! Republishing an order's events from its outbox, for operators (`src/bin/republish.rs`).
//!
//! Outbox items stay in their table for 7 days ([`adapters::outbox`]), after the stream has
//! dropped them (24 hours). This finds the items of one correlation id (an order, a product) and
//! publishes them again through the relay's own bus adapter and call grouping, with the same
//! `detail` and so the same event ids: a consumer that already handled one acknowledges it from
//! its inbox without running its handler again.
//!
//! Finding them by correlation id is a `Scan` of the whole table filtered on
//! `begins_with(pk, "OUTBOX#")` and `correlation_id`: it reads (and is billed for) every item. We
//! accept that for a rare manual operation instead of adding an index, because a GSI on
//! `correlation_id` would cost a second write on every outbox write of every domain. With an
//! event id the item is read by its key instead.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use adapters::outbox::{self, KEY_PREFIX, OutboxRecord};

use crate::bus::{Call, EntryOutcome, EventBus, MAX_CALL_BYTES, entry_size};

/// Which outbox items to republish.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The `correlation_id` every item must carry (`ord_…` for an order's saga).
    pub correlation_id: String,
    /// Only this event (`evt_…`), read by its key instead of scanning.
    pub event_id: Option<String>,
}

/// The table could not be read.
#[derive(Debug, thiserror::Error)]
#[error("could not read table {table}")]
pub struct FindError {
    table: String,
    #[source]
    source: adapters::dynamo::Unavailable,
}

/// What the outbox holds for a selection.
#[derive(Debug, Default)]
pub struct Found {
    /// Oldest event first (event ids are ULIDs, which sort by creation time).
    pub records: Vec<OutboxRecord>,
    /// Items that do not read as outbox records, by `pk`, with why: they cannot be published
    /// as they are.
    pub unreadable: Vec<(String, serde_dynamo::Error)>,
}

/// The outbox items of `selection` in `table`.
pub async fn find(client: &Client, table: &str, selection: &Selection) -> Result<Found, FindError> {
    let read = |source: adapters::dynamo::Unavailable| FindError { table: table.to_owned(), source };
    let items = match &selection.event_id {
        Some(event_id) => {
            let key = outbox::key(event_id);
            adapters::dynamo::get_consistent(client, table, key).await.map_err(read)?.into_iter().collect()
        }
        None => scan(client, table, &selection.correlation_id).await.map_err(read)?,
    };
    let mut found = Found::default();
    for item in items {
        let pk = match item.get("pk") {
            Some(AttributeValue::S(pk)) => pk.clone(),
            _ => String::new(),
        };
        match serde_dynamo::from_item::<_, OutboxRecord>(item) {
            // A key read finds the item whatever its correlation id; it must still match.
            Ok(record) if record.correlation_id == selection.correlation_id => found.records.push(record),
            Ok(_) => {}
            Err(error) => found.unreadable.push((pk, error)),
        }
    }
    found.records.sort_by(|a, b| a.pk.cmp(&b.pk));
    Ok(found)
}

/// Every outbox item of `correlation_id`, following `LastEvaluatedKey` to the end of the table.
async fn scan(
    client: &Client,
    table: &str,
    correlation_id: &str,
) -> Result<Vec<adapters::dynamo::Item>, adapters::dynamo::Unavailable> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let output = client
            .scan()
            .table_name(table)
            .filter_expression("begins_with(pk, :prefix) AND correlation_id = :correlation_id")
            .expression_attribute_values(":prefix", AttributeValue::S(KEY_PREFIX.to_owned()))
            .expression_attribute_values(":correlation_id", AttributeValue::S(correlation_id.to_owned()))
            .set_exclusive_start_key(start)
            .send()
            .await?;
        items.extend(output.items.unwrap_or_default());
        start = output.last_evaluated_key;
        if start.is_none() {
            return Ok(items);
        }
    }
}

/// What happened to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Republished {
    pub event_id: String,
    pub detail_type: String,
    /// `Err` says why it was not published.
    pub result: Result<(), String>,
}

/// Publishes `records` in order, grouped into calls as the relay groups them. Unlike the relay it
/// does not stop at a failure: it reports each event's outcome for the operator to act on.
pub async fn publish(bus: &impl EventBus, records: &[OutboxRecord]) -> Vec<Republished> {
    let mut report = Vec::new();
    let mut call: Call<&OutboxRecord> = Call::default();
    for record in records {
        let size = entry_size(record);
        if size > MAX_CALL_BYTES {
            report.push(outcome(record, Err(format!("the entry is {size} bytes, over PutEvents' {MAX_CALL_BYTES}"))));
            continue;
        }
        if !call.has_room_for(size) {
            send(bus, call.take(), &mut report).await;
        }
        call.push(record, size);
    }
    send(bus, call.take(), &mut report).await;
    report
}

async fn send(bus: &impl EventBus, chunk: Vec<&OutboxRecord>, report: &mut Vec<Republished>) {
    if chunk.is_empty() {
        return;
    }
    match bus.put(&chunk).await {
        Ok(outcomes) => {
            for (record, outcome) in chunk.iter().zip(outcomes) {
                let result = match outcome {
                    EntryOutcome::Published => Ok(()),
                    EntryOutcome::Refused { code, message } => Err(format!("{code}: {message}")),
                };
                report.push(self::outcome(record, result));
            }
        }
        Err(error) => report.extend(chunk.iter().map(|record| outcome(record, Err(error.to_string())))),
    }
}

fn outcome(record: &OutboxRecord, result: Result<(), String>) -> Republished {
    Republished {
        event_id: record.pk.trim_start_matches(KEY_PREFIX).to_owned(),
        detail_type: record.detail_type.clone(),
        result,
    }
}
