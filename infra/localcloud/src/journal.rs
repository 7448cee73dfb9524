//! The local cloud's own record of every invocation: which function ran, when, for how long, how
//! it ended, what it was given (an API route, the events of an SQS batch or a stream batch, a
//! schedule tick) and which orders its payload or response named.
//!
//! `localcloud trace ORDER_ID` prints an order's timeline from it (served by the running local
//! cloud at `GET /_localcloud/trace/{order id}`): the request that placed it, each relay that
//! published one of its events, each consumer that read one, each sweep that touched it, with
//! durations. Lambda has no such record in AWS; there, X-Ray and the logs' `correlation_id` do
//! this job (README, "Observability").

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::{Value, json};
use time::OffsetDateTime;

/// How many invocations are kept (the oldest are forgotten first).
const CAPACITY: usize = 20_000;

/// The prefix of order ids, the correlation id of every saga event.
const ORDER_PREFIX: &str = "ord_";
/// A ULID's length in Crockford base 32.
const ULID_LEN: usize = 26;

/// One invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub function: String,
    pub request_id: String,
    pub started_at: OffsetDateTime,
    pub duration_ms: u64,
    /// `ok`, `error`, `crashed` or `timed out`.
    pub outcome: &'static str,
    /// What it handled: `POST /checkout`, `OrderPlaced`, `stream: StockReserved`, `schedule`.
    pub handled: Vec<String>,
    /// The order ids its payload or response named.
    pub orders: Vec<String>,
}

impl Entry {
    pub fn to_json(&self) -> Value {
        json!({
            "function": self.function,
            "request_id": self.request_id,
            "started_at": self.started_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "duration_ms": self.duration_ms,
            "outcome": self.outcome,
            "handled": self.handled,
            "orders": self.orders,
        })
    }
}

static JOURNAL: Mutex<VecDeque<Entry>> = Mutex::new(VecDeque::new());

/// Records an invocation.
pub fn record(entry: Entry) {
    if let Ok(mut journal) = JOURNAL.lock() {
        if journal.len() == CAPACITY {
            journal.pop_front();
        }
        journal.push_back(entry);
    }
}

/// Every recorded invocation that named `order`, oldest first.
pub fn for_order(order: &str) -> Vec<Entry> {
    JOURNAL
        .lock()
        .map(|journal| journal.iter().filter(|entry| entry.orders.iter().any(|o| o == order)).cloned().collect())
        .unwrap_or_default()
}

/// What an invocation payload asks the function to handle, as short labels.
pub fn handled(payload: &[u8]) -> Vec<String> {
    let Ok(payload) = serde_json::from_slice::<Value>(payload) else { return Vec::new() };
    if let Some(route) = payload.get("routeKey").and_then(Value::as_str) {
        let path = payload.get("rawPath").and_then(Value::as_str).unwrap_or_default();
        let method = route.split_once(' ').map_or(route, |(method, _)| method);
        return vec![format!("{method} {path}")];
    }
    if payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        return vec!["schedule".to_owned()];
    }
    let Some(records) = payload.get("Records").and_then(Value::as_array) else {
        return vec!["invoke".to_owned()];
    };
    records
        .iter()
        .filter_map(|record| {
            if let Some(body) = record.get("body").and_then(Value::as_str) {
                let body: Value = serde_json::from_str(body).ok()?;
                return body.get("detail-type").and_then(Value::as_str).map(str::to_owned);
            }
            let image = record.pointer("/dynamodb/NewImage")?;
            let detail_type = image.pointer("/detail_type/S").and_then(Value::as_str)?;
            Some(format!("publish {detail_type}"))
        })
        .collect()
}

/// Every order id in `text`, in order of appearance, without repeats.
pub fn order_ids(text: &[u8]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(at) = find(rest, ORDER_PREFIX.as_bytes()) {
        let candidate = &rest[at..];
        let body = candidate.get(ORDER_PREFIX.len()..ORDER_PREFIX.len() + ULID_LEN);
        match body {
            Some(body) if body.iter().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()) => {
                let id = String::from_utf8_lossy(&candidate[..ORDER_PREFIX.len() + ULID_LEN]).into_owned();
                if !found.contains(&id) {
                    found.push(id);
                }
                rest = &candidate[ORDER_PREFIX.len() + ULID_LEN..];
            }
            _ => rest = &candidate[ORDER_PREFIX.len()..],
        }
    }
    found
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// An order's timeline as text, one invocation a line, times relative to the first.
pub fn timeline(entries: &[Value]) -> String {
    let start = entries
        .first()
        .and_then(|entry| entry["started_at"].as_str())
        .and_then(|at| OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok());
    let mut text = String::new();
    for entry in entries {
        let at = entry["started_at"]
            .as_str()
            .and_then(|at| OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok());
        let offset = match (start, at) {
            (Some(start), Some(at)) => (at - start).as_seconds_f64(),
            _ => 0.0,
        };
        let handled: Vec<&str> = entry["handled"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        text.push_str(&format!(
            "{:>+9.3}s  {:<32} {:>6} ms  {:<9} {}\n",
            offset,
            entry["function"].as_str().unwrap_or("?"),
            entry["duration_ms"].as_u64().unwrap_or(0),
            entry["outcome"].as_str().unwrap_or("?"),
            handled.join(", "),
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = "ord_01JD3Z8Q4W5X6Y7Z8A9B0C1D2E";

    #[test]
    fn order_ids_are_found_anywhere_in_a_payload_once_each() {
        let text = format!(r#"{{"rawPath":"/orders/{ORDER}","body":"{{\"order_id\":\"{ORDER}\"}}","x":"ord_short"}}"#);

        assert_eq!(order_ids(text.as_bytes()), vec![ORDER.to_owned()]);
        assert!(order_ids(b"ord_ ord_lowercase0000000000000000000").is_empty());
    }

    #[test]
    fn a_payload_says_what_it_handled() {
        let api = json!({ "routeKey": "GET /orders/{id}", "rawPath": format!("/orders/{ORDER}") });
        let sqs = json!({ "Records": [
            { "body": json!({ "detail-type": "OrderPlaced", "detail": {} }).to_string() },
            { "body": json!({ "detail-type": "OrderCancelled", "detail": {} }).to_string() },
        ]});
        let stream =
            json!({ "Records": [{ "dynamodb": { "NewImage": { "detail_type": { "S": "StockReserved" } } } }] });
        let tick = json!({ "detail-type": "Scheduled Event", "time": "2026-11-28T00:00:00Z" });

        assert_eq!(handled(api.to_string().as_bytes()), vec![format!("GET /orders/{ORDER}")]);
        assert_eq!(handled(sqs.to_string().as_bytes()), vec!["OrderPlaced", "OrderCancelled"]);
        assert_eq!(handled(stream.to_string().as_bytes()), vec!["publish StockReserved"]);
        assert_eq!(handled(tick.to_string().as_bytes()), vec!["schedule"]);
    }

    #[test]
    fn an_orders_timeline_lists_only_its_invocations_in_order() {
        let other = "ord_01JD3Z8Q4W5X6Y7Z8A9B0C1D2F";
        let at = OffsetDateTime::now_utc();
        for (function, orders, offset) in [
            ("CheckoutApiFunction", vec![ORDER], 0),
            ("CartApiFunction", vec![other], 1),
            ("InventoryEventsFunction", vec![ORDER, other], 2),
        ] {
            record(Entry {
                function: function.to_owned(),
                request_id: "r".to_owned(),
                started_at: at + time::Duration::milliseconds(offset * 250),
                duration_ms: 12,
                outcome: "ok",
                handled: vec!["OrderPlaced".to_owned()],
                orders: orders.into_iter().map(str::to_owned).collect(),
            });
        }

        let entries: Vec<Value> = for_order(ORDER).iter().map(Entry::to_json).collect();
        let text = timeline(&entries);

        let functions: Vec<&str> = entries.iter().filter_map(|e| e["function"].as_str()).collect();
        assert_eq!(functions, vec!["CheckoutApiFunction", "InventoryEventsFunction"]);
        assert!(text.lines().nth(1).is_some_and(|line| line.contains("+0.500s") && line.contains("12 ms")), "{text}");
    }
}
