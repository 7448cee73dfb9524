//! A counting proxy in front of the AWS emulator: every SDK client of the local cloud and of the
//! functions talks to moto through it, so it sees every call AWS would bill, and prices the
//! DynamoDB ones by [`crate::units`].
//!
//! To size a write as DynamoDB does (the larger of the item before and after, and what each
//! secondary index gains or loses) it reads every item a write touches, consistently, just
//! before and just after forwarding the write. Those reads are its own and are not counted. They
//! are not atomic with the write: two requests writing the same item at the same instant can be
//! sized from each other's images. The cost scenario places one order at a time, so it is exact
//! there; the flash sale counts calls only ([`Proxy::price_items`] off).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::units::{self, Halves, Index};

/// DynamoDB cost of one table.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TableCost {
    /// Write request units of the table's own items (half units).
    pub write_halves: Halves,
    /// Write request units of its secondary indexes (half units).
    pub index_write_halves: Halves,
    pub read_halves: Halves,
    /// Items written (each action of a transaction or batch counts).
    pub items_written: u64,
    /// Bytes of the items as written (the larger image), summed.
    pub bytes_written: u64,
}

/// One written item, for the report's "what is written" list.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    pub table: String,
    pub operation: String,
    /// The item's partition key value (its kind: `ORDER#…`, `OUTBOX#…`, `INBOX#…`).
    pub key: String,
    pub bytes: u64,
    pub write_halves: Halves,
    pub index_write_halves: Halves,
}

/// Everything counted since the last [`Proxy::take`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ledger {
    /// Calls by `service:Operation` (`dynamodb:PutItem`, `sqs:ReceiveMessage (empty)`).
    pub calls: BTreeMap<String, u64>,
    pub tables: BTreeMap<String, TableCost>,
    pub written: Vec<Written>,
    /// Messages SQS handed out (each was sent to its queue once by EventBridge: an SQS request).
    pub sqs_messages_received: u64,
    /// Entries EventBridge accepted in `PutEvents` (each a billed custom event).
    pub events_put: u64,
}

impl Ledger {
    pub fn calls_of(&self, service: &str) -> u64 {
        self.calls.iter().filter(|(name, _)| name.starts_with(&format!("{service}:"))).map(|(_, n)| n).sum()
    }

    pub fn dynamodb_total(&self) -> TableCost {
        self.tables.values().fold(TableCost::default(), |mut sum, t| {
            sum.write_halves += t.write_halves;
            sum.index_write_halves += t.index_write_halves;
            sum.read_halves += t.read_halves;
            sum.items_written += t.items_written;
            sum.bytes_written += t.bytes_written;
            sum
        })
    }
}

#[derive(Debug, Clone)]
struct TableShape {
    keys: Vec<String>,
    indexes: Vec<Index>,
}

/// The proxy's state; share it with [`Proxy::start`].
#[derive(Debug)]
pub struct Proxy {
    upstream: String,
    client: reqwest::Client,
    ledger: Mutex<Ledger>,
    shapes: Mutex<BTreeMap<String, TableShape>>,
    /// Size items (extra reads per write) or only count calls.
    pub price_items: AtomicBool,
    /// When the last call that changes state (not a poll) went through.
    last_change: Mutex<Instant>,
    /// Every call's time at the emulator, while `timing` is on (the latency scenario).
    timed: Mutex<Vec<Timed>>,
    pub timing: AtomicBool,
    /// A DynamoDB write to watch for (every needle in its request) and when it was answered.
    watch: Mutex<Option<(Vec<String>, Option<Instant>)>>,
}

/// One call forwarded to the emulator and how long the emulator took to answer it (the proxy's
/// own hop excluded).
#[derive(Debug, Clone)]
pub struct Timed {
    /// `service:Operation`.
    pub call: String,
    pub started: Instant,
    pub took: std::time::Duration,
}

const DYNAMODB: &str = "DynamoDB_20120810.";

impl Proxy {
    /// Serves the proxy on a free loopback port in front of `upstream`; returns it and its URL.
    pub async fn start(upstream: &str) -> anyhow::Result<(Arc<Self>, String)> {
        let proxy = Arc::new(Self {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            ledger: Mutex::new(Ledger::default()),
            shapes: Mutex::new(BTreeMap::new()),
            price_items: AtomicBool::new(true),
            last_change: Mutex::new(Instant::now()),
            timed: Mutex::new(Vec::new()),
            timing: AtomicBool::new(false),
            watch: Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address: SocketAddr = listener.local_addr()?;
        let router = axum::Router::new()
            .fallback(forward)
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(proxy.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok((proxy, format!("http://{address}")))
    }

    /// What was counted since the last call, and a fresh ledger.
    pub fn take(&self) -> Ledger {
        self.ledger.lock().map(|mut ledger| std::mem::take(&mut *ledger)).unwrap_or_default()
    }

    /// Time since the last call that changed something (a write, a send, a put, a delete).
    pub fn quiet_for(&self) -> std::time::Duration {
        self.last_change.lock().map(|at| at.elapsed()).unwrap_or_default()
    }

    /// When the last call that changed something went through.
    pub fn last_change(&self) -> Instant {
        self.last_change.lock().map(|at| *at).unwrap_or_else(|_| Instant::now())
    }

    /// The calls timed since the last call, and a fresh list.
    pub fn take_timed(&self) -> Vec<Timed> {
        self.timed.lock().map(|mut timed| std::mem::take(&mut *timed)).unwrap_or_default()
    }

    /// Watches for the next DynamoDB write whose request holds every one of `needles` (an order
    /// id and an event's detail type: the transaction that wrote that event), replacing any watch.
    pub fn watch(&self, needles: &[&str]) {
        if let Ok(mut watch) = self.watch.lock() {
            *watch = Some((needles.iter().map(|n| (*n).to_owned()).collect(), None));
        }
    }

    /// When the watched write was answered, if it was.
    pub fn watched(&self) -> Option<Instant> {
        self.watch.lock().ok().and_then(|watch| watch.as_ref().and_then(|(_, at)| *at))
    }

    fn matches_watch(&self, body: &[u8]) -> bool {
        let Ok(watch) = self.watch.lock() else { return false };
        let Some((needles, None)) = watch.as_ref() else { return false };
        let text = String::from_utf8_lossy(body);
        needles.iter().all(|needle| text.contains(needle.as_str()))
    }

    fn record(&self, change: impl FnOnce(&mut Ledger)) {
        if let Ok(mut ledger) = self.ledger.lock() {
            change(&mut ledger);
        }
    }

    fn count(&self, name: String) {
        self.record(|ledger| *ledger.calls.entry(name).or_default() += 1);
    }

    fn touched(&self) {
        if let Ok(mut at) = self.last_change.lock() {
            *at = Instant::now();
        }
    }

    async fn send(&self, method: Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> anyhow::Result<Response> {
        let url = format!("{}{}", self.upstream, uri.path_and_query().map_or("/", |p| p.as_str()));
        let mut request = self.client.request(method, url).body(body);
        for (name, value) in headers {
            if !matches!(name.as_str(), "host" | "content-length" | "connection" | "transfer-encoding") {
                request = request.header(name, value);
            }
        }
        let started = Instant::now();
        let answer = request.send().await.context("forwarding to the emulator")?;
        let status = answer.status();
        let mut out = HeaderMap::new();
        for (name, value) in answer.headers() {
            if !matches!(name.as_str(), "content-length" | "connection" | "transfer-encoding") {
                out.insert(name.clone(), value.clone());
            }
        }
        let body = answer.bytes().await?;
        if self.timing.load(Ordering::Relaxed) {
            let call = call_name(headers, uri);
            if let Ok(mut timed) = self.timed.lock() {
                timed.push(Timed { call, started, took: started.elapsed() });
            }
        }
        Ok((status, out, body).into_response())
    }

    /// One DynamoDB call of the proxy's own (not counted).
    async fn dynamodb(&self, operation: &str, body: &Value, headers: &HeaderMap) -> anyhow::Result<Value> {
        let mut request = self
            .client
            .post(format!("{}/", self.upstream))
            .header("x-amz-target", format!("{DYNAMODB}{operation}"))
            .header("content-type", "application/x-amz-json-1.0")
            .body(body.to_string());
        if let Some(auth) = headers.get("authorization") {
            request = request.header("authorization", auth);
        }
        let answer = request.send().await?;
        let status = answer.status();
        let value: Value = answer.json().await?;
        if !status.is_success() {
            bail!("{operation}: {value}");
        }
        Ok(value)
    }

    async fn shape(&self, table: &str, headers: &HeaderMap) -> anyhow::Result<TableShape> {
        if let Some(shape) = self.shapes.lock().ok().and_then(|s| s.get(table).cloned()) {
            return Ok(shape);
        }
        let described = self.dynamodb("DescribeTable", &json!({ "TableName": table }), headers).await?;
        let description = &described["Table"];
        let names = |schema: &Value| -> Vec<String> {
            schema
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k["AttributeName"].as_str().map(str::to_owned))
                .collect()
        };
        let mut indexes = Vec::new();
        for kind in ["GlobalSecondaryIndexes", "LocalSecondaryIndexes"] {
            for index in description[kind].as_array().into_iter().flatten() {
                indexes.push(Index {
                    name: index["IndexName"].as_str().unwrap_or_default().to_owned(),
                    keys: names(&index["KeySchema"]),
                    projection: index["Projection"]["ProjectionType"].as_str().unwrap_or("ALL").to_owned(),
                    included: index["Projection"]["NonKeyAttributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str().map(str::to_owned))
                        .collect(),
                });
            }
        }
        let shape = TableShape { keys: names(&description["KeySchema"]), indexes };
        if let Ok(mut shapes) = self.shapes.lock() {
            shapes.insert(table.to_owned(), shape.clone());
        }
        Ok(shape)
    }

    async fn get(&self, table: &str, key: &Value, headers: &HeaderMap) -> Option<Value> {
        let body = json!({ "TableName": table, "Key": key, "ConsistentRead": true });
        self.dynamodb("GetItem", &body, headers).await.ok().and_then(|answer| answer.get("Item").cloned())
    }
}

/// One item a write touches.
struct Target {
    table: String,
    key: Value,
    operation: &'static str,
}

fn key_of(item: &Value, keys: &[String]) -> Value {
    Value::Object(keys.iter().filter_map(|k| item.get(k).map(|v| (k.clone(), v.clone()))).collect())
}

fn partition_label(key: &Value) -> String {
    key.as_object()
        .and_then(|o| o.values().next())
        .and_then(|v| v.as_object()?.values().next()?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn forward(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&proxy, method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(error) => (StatusCode::BAD_GATEWAY, format!("{error:#}")).into_response(),
    }
}

async fn handle(
    proxy: &Proxy,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> anyhow::Result<Response> {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (service, operation) = match target.split_once('.') {
        Some((prefix, op)) => (service_name(prefix), op.to_owned()),
        None => ("other", uri.path().to_owned()),
    };
    if service == "dynamodb" {
        let watched = operation.starts_with("Transact") && proxy.matches_watch(&body);
        let response = dynamodb_call(proxy, &operation, method, uri, headers, body).await?;
        if watched
            && response.status().is_success()
            && let Ok(mut watch) = proxy.watch.lock()
            && let Some((_, at)) = watch.as_mut()
        {
            *at = Some(Instant::now());
        }
        return Ok(response);
    }
    let response = proxy.send(method, uri, headers, body.clone()).await?;
    let (parts, answer) = split(response).await?;
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer_json: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    match (service, operation.as_str()) {
        ("sqs", "ReceiveMessage") => {
            let received = answer_json["Messages"].as_array().map_or(0, Vec::len) as u64;
            if received == 0 {
                proxy.count("sqs:ReceiveMessage (empty)".to_owned());
            } else {
                proxy.count("sqs:ReceiveMessage".to_owned());
                proxy.record(|ledger| ledger.sqs_messages_received += received);
            }
        }
        ("events", "PutEvents") => {
            let entries = request["Entries"].as_array().map_or(0, Vec::len) as u64;
            let failed = answer_json["FailedEntryCount"].as_u64().unwrap_or(0);
            proxy.count("events:PutEvents".to_owned());
            proxy.record(|ledger| ledger.events_put += entries.saturating_sub(failed));
            proxy.touched();
        }
        (service, operation) => {
            proxy.count(format!("{service}:{operation}"));
            if service == "sqs" && !operation.starts_with("Get") && !operation.starts_with("List") {
                proxy.touched();
            }
        }
    }
    Ok((parts, answer).into_response())
}

/// `service:Operation` of a request, as the ledger names it.
fn call_name(headers: &HeaderMap, uri: &Uri) -> String {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    match target.split_once('.') {
        Some((prefix, operation)) => format!("{}:{operation}", service_name(prefix)),
        None => format!("other:{}", uri.path()),
    }
}

fn service_name(prefix: &str) -> &'static str {
    match prefix {
        "DynamoDB_20120810" => "dynamodb",
        "DynamoDBStreams_20120810" => "dynamodbstreams",
        "AmazonSQS" => "sqs",
        "AWSEvents" => "events",
        "secretsmanager" => "secretsmanager",
        "AWSLambda" => "lambda",
        _ => "other",
    }
}

async fn split(response: Response) -> anyhow::Result<(axum::http::response::Parts, Bytes)> {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await?;
    Ok((parts, bytes))
}

async fn dynamodb_call(
    proxy: &Proxy,
    operation: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> anyhow::Result<Response> {
    proxy.count(format!("dynamodb:{operation}"));
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let pricing = proxy.price_items.load(Ordering::Relaxed);
    let writes = matches!(operation, "PutItem" | "UpdateItem" | "DeleteItem" | "TransactWriteItems" | "BatchWriteItem");
    if writes {
        proxy.touched();
    }
    if !pricing || !writes {
        let response = proxy.send(method, uri, headers, body).await?;
        if !pricing {
            return Ok(response);
        }
        let (parts, answer) = split(response).await?;
        if parts.status.is_success() {
            let answer_json: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
            price_read(proxy, operation, &request, &answer_json, headers).await;
        }
        return Ok((parts, answer).into_response());
    }

    let transactional = operation == "TransactWriteItems";
    let mut targets = Vec::new();
    match operation {
        "PutItem" | "UpdateItem" | "DeleteItem" => {
            let table = request["TableName"].as_str().unwrap_or_default().to_owned();
            let shape = proxy.shape(&table, headers).await?;
            let key =
                if operation == "PutItem" { key_of(&request["Item"], &shape.keys) } else { request["Key"].clone() };
            targets.push(Target { table, key, operation: static_name(operation) });
        }
        "TransactWriteItems" => {
            for action in request["TransactItems"].as_array().into_iter().flatten() {
                for (kind, name) in
                    [("Put", "Put"), ("Update", "Update"), ("Delete", "Delete"), ("ConditionCheck", "ConditionCheck")]
                {
                    if let Some(inner) = action.get(kind) {
                        let table = inner["TableName"].as_str().unwrap_or_default().to_owned();
                        let shape = proxy.shape(&table, headers).await?;
                        let key =
                            if kind == "Put" { key_of(&inner["Item"], &shape.keys) } else { inner["Key"].clone() };
                        targets.push(Target { table, key, operation: name });
                    }
                }
            }
        }
        _ => {
            for (table, requests) in request["RequestItems"].as_object().into_iter().flatten() {
                let shape = proxy.shape(table, headers).await?;
                for entry in requests.as_array().into_iter().flatten() {
                    if let Some(put) = entry.get("PutRequest") {
                        targets.push(Target {
                            table: table.clone(),
                            key: key_of(&put["Item"], &shape.keys),
                            operation: "BatchPut",
                        });
                    } else if let Some(delete) = entry.get("DeleteRequest") {
                        targets.push(Target {
                            table: table.clone(),
                            key: delete["Key"].clone(),
                            operation: "BatchDelete",
                        });
                    }
                }
            }
        }
    }
    let mut before = Vec::with_capacity(targets.len());
    for target in &targets {
        before.push(proxy.get(&target.table, &target.key, headers).await);
    }
    let response = proxy.send(method, uri, headers, body).await?;
    let succeeded = response.status().is_success();
    let mut after = Vec::with_capacity(targets.len());
    for (target, old) in targets.iter().zip(&before) {
        after.push(if succeeded && target.operation != "ConditionCheck" {
            proxy.get(&target.table, &target.key, headers).await
        } else {
            old.clone()
        });
    }
    for ((target, old), new) in targets.iter().zip(&before).zip(&after) {
        let shape = proxy.shape(&target.table, headers).await?;
        let bytes = old.as_ref().map_or(0, units::item_size).max(new.as_ref().map_or(0, units::item_size));
        let mut halves = units::write_units(bytes);
        if transactional {
            halves *= 2;
        }
        let index_halves: Halves = if succeeded {
            shape.indexes.iter().map(|index| index.write_units(old.as_ref(), new.as_ref(), &shape.keys)).sum()
        } else {
            0
        };
        let operation = if succeeded { target.operation.to_owned() } else { format!("{} (refused)", target.operation) };
        proxy.record(|ledger| {
            let cost = ledger.tables.entry(target.table.clone()).or_default();
            cost.write_halves += halves;
            cost.index_write_halves += index_halves;
            cost.items_written += 1;
            cost.bytes_written += bytes;
            ledger.written.push(Written {
                table: target.table.clone(),
                operation,
                key: partition_label(&target.key),
                bytes,
                write_halves: halves,
                index_write_halves: index_halves,
            });
        });
    }
    Ok(response)
}

fn static_name(operation: &str) -> &'static str {
    match operation {
        "PutItem" => "PutItem",
        "UpdateItem" => "UpdateItem",
        _ => "DeleteItem",
    }
}

/// Read units of a read that succeeded with `answer`.
async fn price_read(proxy: &Proxy, operation: &str, request: &Value, answer: &Value, headers: &HeaderMap) {
    let consistent = request["ConsistentRead"].as_bool().unwrap_or(false);
    let mut by_table: Vec<(String, Halves)> = Vec::new();
    match operation {
        "GetItem" => {
            let table = request["TableName"].as_str().unwrap_or_default().to_owned();
            let projected = request.get("ProjectionExpression").is_some() || request.get("AttributesToGet").is_some();
            let size = if projected {
                proxy.get(&table, &request["Key"], headers).await.as_ref().map_or(0, units::item_size)
            } else {
                answer.get("Item").map_or(0, units::item_size)
            };
            by_table.push((table, units::read_units(size, consistent)));
        }
        "BatchGetItem" => {
            for (table, asked) in request["RequestItems"].as_object().into_iter().flatten() {
                let consistent = asked["ConsistentRead"].as_bool().unwrap_or(false);
                let found = answer["Responses"][table].as_array().cloned().unwrap_or_default();
                let keys = asked["Keys"].as_array().map_or(0, Vec::len);
                let mut halves: Halves =
                    found.iter().map(|item| units::read_units(units::item_size(item), consistent)).sum();
                // A key that found nothing still costs the minimum read.
                halves += units::read_units(0, consistent) * (keys.saturating_sub(found.len()) as u64);
                by_table.push((table.clone(), halves));
            }
        }
        "TransactGetItems" => {
            for (action, got) in request["TransactItems"]
                .as_array()
                .into_iter()
                .flatten()
                .zip(answer["Responses"].as_array().cloned().unwrap_or_default())
            {
                let table = action["Get"]["TableName"].as_str().unwrap_or_default().to_owned();
                let size = got.get("Item").map_or(0, units::item_size);
                by_table.push((table, 2 * units::read_units(size, true)));
            }
        }
        "Query" | "Scan" => {
            let table = request["TableName"].as_str().unwrap_or_default().to_owned();
            let reduced =
                ["ProjectionExpression", "FilterExpression", "Select", "AttributesToGet", "QueryFilter", "ScanFilter"]
                    .iter()
                    .any(|field| request.get(field).is_some());
            let items = if reduced {
                // Billed on every item read, before the filter and the projection: read them again
                // without either.
                let mut raw = request.clone();
                if let Some(fields) = raw.as_object_mut() {
                    for field in [
                        "ProjectionExpression",
                        "FilterExpression",
                        "Select",
                        "AttributesToGet",
                        "QueryFilter",
                        "ScanFilter",
                    ] {
                        fields.remove(field);
                    }
                    let condition =
                        fields.get("KeyConditionExpression").and_then(Value::as_str).unwrap_or("").to_owned();
                    for placeholders in ["ExpressionAttributeNames", "ExpressionAttributeValues"] {
                        if let Some(Value::Object(map)) = fields.get_mut(placeholders) {
                            map.retain(|name, _| condition.contains(name.as_str()));
                            if map.is_empty() {
                                fields.remove(placeholders);
                            }
                        }
                    }
                }
                proxy.dynamodb(operation, &raw, headers).await.ok().map(|a| a["Items"].clone()).unwrap_or_default()
            } else {
                answer["Items"].clone()
            };
            let bytes: u64 = items.as_array().into_iter().flatten().map(units::item_size).sum();
            let consistent = consistent && request.get("IndexName").is_none();
            by_table.push((table, units::read_units(bytes, consistent)));
        }
        _ => {}
    }
    proxy.record(|ledger| {
        for (table, halves) in by_table {
            ledger.tables.entry(table).or_default().read_halves += halves;
        }
    });
}
