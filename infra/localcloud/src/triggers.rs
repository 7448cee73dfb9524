//! Event source mappings and schedules: how queue messages, stream records and timer ticks reach
//! functions, with Lambda's semantics.
//!
//! - **SQS** ([`poll_queue`]): long-polls the queue, invokes with up to `BatchSize` messages, and
//!   deletes the messages that succeeded. With `ReportBatchItemFailures` only the listed messages
//!   stay; a function error, crash or timeout keeps the whole batch. Kept messages come back
//!   after the visibility timeout, and moto's redrive moves them to the DLQ after
//!   `maxReceiveCount` receives, as SQS does.
//! - **DynamoDB streams** ([`poll_stream`]): reads each shard in order; a reported failure
//!   resumes from that sequence number, an error retries the batch, up to
//!   `MaximumRetryAttempts` (-1: until it succeeds). A batch skipped after that is announced to
//!   the mapping's SQS `OnFailure` destination, as Lambda does ([`OnFailure`]).
//! - Both apply the mapping's `FilterCriteria` ([`crate::filter`]) before invoking: filtered-out
//!   messages are deleted, filtered-out stream records skipped.
//! - **Schedules** ([`run_schedule`]): `rate(...)` expressions tick on a timer; any schedule can
//!   also be fired on demand through the gateway's `/_localcloud/` control routes, which is how
//!   tests make time pass. The same routes pause a function's mappings and make it crash after
//!   handling a batch (see [`Chaos`] and [`crate::runtime::FunctionHost`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value as Json, json};
use time::OffsetDateTime;

use crate::filter::Filters;
use crate::runtime::{FunctionHost, Outcome};

/// Knobs that make local runs faster or nastier than AWS, never more lenient.
#[derive(Debug, Clone, Default)]
pub struct Chaos {
    /// Seconds before a failed SQS message is visible again (AWS: the queue's visibility timeout).
    /// Tests shorten it so retries and redrive happen in seconds.
    pub failed_visibility_secs: Option<i32>,
    /// Deliver every SQS batch twice, as at-least-once delivery may.
    pub duplicate_delivery: bool,
}

/// Which records of a batch failed.
#[derive(Debug, PartialEq, Eq)]
enum BatchOutcome {
    AllSucceeded,
    /// Identifiers (message ids or sequence numbers) reported in `batchItemFailures`.
    Partial(Vec<String>),
    AllFailed,
}

/// Reads an invocation's outcome the way Lambda's pollers do.
fn batch_outcome(outcome: &Outcome, report_failures: bool, known: &HashSet<String>) -> BatchOutcome {
    let payload = match outcome {
        Outcome::Response(payload) => payload,
        _ => return BatchOutcome::AllFailed,
    };
    if !report_failures {
        return BatchOutcome::AllSucceeded;
    }
    let response: Json = serde_json::from_slice(payload).unwrap_or(Json::Null);
    let failures = match response.get("batchItemFailures") {
        None | Some(Json::Null) => return BatchOutcome::AllSucceeded,
        Some(Json::Array(failures)) => failures,
        Some(_) => return BatchOutcome::AllFailed,
    };
    let mut ids = Vec::new();
    for failure in failures {
        match failure.get("itemIdentifier").and_then(Json::as_str) {
            // Lambda treats an empty or unknown identifier as a failure of the whole batch.
            Some(id) if known.contains(id) => ids.push(id.to_owned()),
            _ => return BatchOutcome::AllFailed,
        }
    }
    if ids.is_empty() { BatchOutcome::AllSucceeded } else { BatchOutcome::Partial(ids) }
}

/// Polls one queue for one function until the process ends.
#[allow(clippy::too_many_arguments)]
pub async fn poll_queue(
    function: Arc<FunctionHost>,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue_arn: String,
    region: String,
    batch_size: usize,
    report_failures: bool,
    filters: Filters,
    chaos: Chaos,
) {
    use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
    loop {
        if function.is_paused() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(i32::try_from(batch_size).unwrap_or(10))
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await;
        let messages = match received {
            Ok(output) => output.messages.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(queue = %queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let all_records: Vec<Json> = messages
            .iter()
            .map(|message| {
                let attributes: BTreeMap<String, String> = message
                    .attributes
                    .iter()
                    .flatten()
                    .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
                    .collect();
                let message_attributes: BTreeMap<String, Json> = message
                    .message_attributes
                    .iter()
                    .flatten()
                    .map(|(name, value)| {
                        let binary = value.binary_value.as_ref().map(|b| STANDARD.encode(b.as_ref()));
                        let attribute = json!({
                            "stringValue": value.string_value,
                            "binaryValue": binary,
                            "stringListValues": [],
                            "binaryListValues": [],
                            "dataType": value.data_type,
                        });
                        (name.clone(), attribute)
                    })
                    .collect();
                json!({
                    "messageId": message.message_id,
                    "receiptHandle": message.receipt_handle,
                    "body": message.body,
                    "attributes": attributes,
                    "messageAttributes": message_attributes,
                    "md5OfBody": message.md5_of_body,
                    "eventSource": "aws:sqs",
                    "eventSourceARN": queue_arn,
                    "awsRegion": region,
                })
            })
            .collect();
        // Lambda deletes the messages no filter admits without invoking the function.
        let records: Vec<Json> = all_records.into_iter().filter(|record| filters.admits(record)).collect();
        let known: HashSet<String> =
            records.iter().filter_map(|r| r["messageId"].as_str().map(str::to_owned)).collect();
        let payload = Bytes::from(json!({ "Records": records }).to_string());
        let deliveries = if records.is_empty() {
            0
        } else if chaos.duplicate_delivery {
            2
        } else {
            1
        };
        let mut failed: HashSet<String> = HashSet::new();
        for _ in 0..deliveries {
            match batch_outcome(&function.invoke(payload.clone()).await, report_failures, &known) {
                BatchOutcome::AllSucceeded => {}
                BatchOutcome::Partial(ids) => failed.extend(ids),
                BatchOutcome::AllFailed => failed.extend(known.iter().cloned()),
            }
        }
        let (kept, done): (Vec<_>, Vec<_>) =
            messages.iter().partition(|m| m.message_id.as_ref().is_some_and(|id| failed.contains(id)));
        // DeleteMessageBatch takes at most 10 entries; a batch is at most 10 messages.
        let entries: Vec<_> = done
            .iter()
            .enumerate()
            .filter_map(|(index, message)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(message.receipt_handle.clone()?)
                    .build()
                    .ok()
            })
            .collect();
        if !entries.is_empty()
            && let Err(error) = sqs.delete_message_batch().queue_url(&queue_url).set_entries(Some(entries)).send().await
        {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "delete failed");
        }
        if let Some(seconds) = chaos.failed_visibility_secs {
            for message in kept {
                if let Some(handle) = &message.receipt_handle {
                    let _ = sqs
                        .change_message_visibility()
                        .queue_url(&queue_url)
                        .receipt_handle(handle)
                        .visibility_timeout(seconds)
                        .send()
                        .await;
                }
            }
        }
    }
}

/// A stream mapping's `DestinationConfig.OnFailure` SQS queue.
#[derive(Debug, Clone)]
pub struct OnFailure {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    /// The function's ARN, which Lambda names in the record.
    pub function_arn: String,
}

/// The record Lambda sends to an `OnFailure` destination when it skips a stream batch: the batch's
/// place in the shard, not its records ("Retaining discarded records for a DynamoDB event source").
fn skipped_batch_record(
    function_arn: &str,
    invocations: i64,
    shard_id: &str,
    stream_arn: &str,
    batch: &[(String, i64)],
) -> Json {
    let iso = |secs: i64| {
        OffsetDateTime::from_unix_timestamp(secs)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
    };
    let (first, last) = (batch.first(), batch.last());
    json!({
        "requestContext": {
            "requestId": ulid::Ulid::new().to_string(),
            "functionArn": function_arn,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": invocations,
        },
        "responseContext": { "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled" },
        "version": "1.0",
        "timestamp": iso(OffsetDateTime::now_utc().unix_timestamp()),
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": first.map(|(sequence, _)| sequence),
            "endSequenceNumber": last.map(|(sequence, _)| sequence),
            "approximateArrivalOfFirstRecord": first.and_then(|(_, secs)| iso(*secs)),
            "approximateArrivalOfLastRecord": last.and_then(|(_, secs)| iso(*secs)),
            "batchSize": batch.len(),
            "streamArn": stream_arn,
        }
    })
}

/// Reads every shard of a table's stream for one function until the process ends.
#[allow(clippy::too_many_arguments)]
pub async fn poll_stream(
    function: Arc<FunctionHost>,
    streams: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    region: String,
    batch_size: usize,
    report_failures: bool,
    from_start: bool,
    max_retries: i64,
    on_failure: Option<OnFailure>,
    filters: Filters,
) {
    let shards = loop {
        match streams.describe_stream().stream_arn(&stream_arn).send().await {
            Ok(output) => break output.stream_description.and_then(|d| d.shards).unwrap_or_default(),
            Err(error) => {
                tracing::warn!(error = %aws_sdk_dynamodbstreams::error::DisplayErrorContext(&error), "describe stream failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    for shard in shards {
        let Some(shard_id) = shard.shard_id else { continue };
        let reader = ShardReader {
            function: function.clone(),
            streams: streams.clone(),
            stream_arn: stream_arn.clone(),
            shard_id,
            region: region.clone(),
            batch_size,
            report_failures,
            max_retries,
            on_failure: on_failure.clone(),
            filters: filters.clone(),
        };
        tokio::spawn(reader.run(from_start));
    }
}

struct ShardReader {
    function: Arc<FunctionHost>,
    streams: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    shard_id: String,
    region: String,
    batch_size: usize,
    report_failures: bool,
    max_retries: i64,
    on_failure: Option<OnFailure>,
    filters: Filters,
}

impl ShardReader {
    async fn iterator(
        &self,
        position: aws_sdk_dynamodbstreams::types::ShardIteratorType,
        sequence: Option<&str>,
    ) -> Option<String> {
        let mut request = self
            .streams
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(&self.shard_id)
            .shard_iterator_type(position);
        if let Some(sequence) = sequence {
            request = request.sequence_number(sequence);
        }
        match request.send().await {
            Ok(output) => output.shard_iterator,
            Err(error) => {
                tracing::warn!(error = %aws_sdk_dynamodbstreams::error::DisplayErrorContext(&error), "no shard iterator");
                None
            }
        }
    }

    async fn run(self, from_start: bool) {
        use aws_sdk_dynamodbstreams::types::ShardIteratorType;
        let start = if from_start { ShardIteratorType::TrimHorizon } else { ShardIteratorType::Latest };
        let mut iterator = self.iterator(start, None).await;
        // Poll fast while records flow, back off to 500 ms when idle: moto costs ~9 ms a call.
        let mut idle = Duration::from_millis(50);
        let mut attempts: i64 = 0;
        let mut last_sequence: Option<String> = None;
        while let Some(current) = iterator.clone() {
            if self.function.is_paused() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let output = match self
                .streams
                .get_records()
                .shard_iterator(&current)
                .limit(i32::try_from(self.batch_size).unwrap_or(100))
                .send()
                .await
            {
                Ok(output) => output,
                Err(error) => {
                    tracing::warn!(error = %aws_sdk_dynamodbstreams::error::DisplayErrorContext(&error), "get records failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let records = output.records.unwrap_or_default();
            let next = output.next_shard_iterator;
            if records.is_empty() {
                tokio::time::sleep(idle).await;
                idle = (idle * 2).min(Duration::from_millis(500));
                // moto gap: a transaction moto rolls back puts back a copy of the table, stream
                // shard included, orphaning every open iterator (moto_server.py keeps this rare).
                // Asking for a fresh iterator after the last record read reads the live shard.
                iterator = match &last_sequence {
                    Some(sequence) => self.iterator(ShardIteratorType::AfterSequenceNumber, Some(sequence)).await,
                    None if from_start => self.iterator(ShardIteratorType::TrimHorizon, None).await,
                    None => next,
                };
                continue;
            }
            idle = Duration::from_millis(50);
            tracing::debug!(function = %self.function.spec.logical_id, records = records.len(), "stream batch");
            let last_read = records.iter().filter_map(|r| r.dynamodb.as_ref()?.sequence_number.clone()).next_back();
            // Records no filter admits are skipped, as Lambda skips them.
            let admitted: Vec<(String, Json)> = records
                .iter()
                .filter_map(|r| Some((r.dynamodb.as_ref()?.sequence_number.clone()?, r)))
                .map(|(sequence, r)| (sequence, stream_record(r, &self.stream_arn, &self.region)))
                .filter(|(_, record)| self.filters.admits(record))
                .collect();
            if admitted.is_empty() {
                attempts = 0;
                last_sequence = last_read.or(last_sequence);
                iterator = next;
                continue;
            }
            let sequences: Vec<String> = admitted.iter().map(|(sequence, _)| sequence.clone()).collect();
            let arrivals: Vec<i64> = admitted
                .iter()
                .map(|(_, record)| record["dynamodb"]["ApproximateCreationDateTime"].as_i64().unwrap_or(0))
                .collect();
            let known: HashSet<String> = sequences.iter().cloned().collect();
            let event = json!({ "Records": admitted.into_iter().map(|(_, record)| record).collect::<Vec<_>>() });
            let outcome = self.function.invoke(Bytes::from(event.to_string())).await;
            tracing::debug!(function = %self.function.spec.logical_id, ?outcome, "stream batch handled");
            let retry_from = match batch_outcome(&outcome, self.report_failures, &known) {
                BatchOutcome::AllSucceeded => None,
                // Lambda resumes from the lowest reported sequence number.
                BatchOutcome::Partial(ids) => sequences.iter().find(|s| ids.contains(s)).cloned(),
                BatchOutcome::AllFailed => sequences.first().cloned(),
            };
            match retry_from {
                None => {
                    attempts = 0;
                    last_sequence = last_read.clone();
                    iterator = next;
                }
                Some(sequence) if self.max_retries >= 0 && attempts >= self.max_retries => {
                    tracing::error!(function = %self.function.spec.logical_id, sequence, "stream batch failed too often; skipping it");
                    if let Some(on_failure) = &self.on_failure {
                        // What is skipped runs from the record that failed to the batch's end.
                        let from = sequences.iter().position(|s| *s == sequence).unwrap_or(0);
                        let batch: Vec<(String, i64)> =
                            sequences.iter().cloned().zip(arrivals.iter().copied()).skip(from).collect();
                        let record = skipped_batch_record(
                            &on_failure.function_arn,
                            attempts + 1,
                            &self.shard_id,
                            &self.stream_arn,
                            &batch,
                        );
                        let sent = on_failure
                            .sqs
                            .send_message()
                            .queue_url(&on_failure.queue_url)
                            .message_body(record.to_string())
                            .send()
                            .await;
                        if let Err(error) = sent {
                            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "OnFailure destination refused the record");
                        }
                    }
                    attempts = 0;
                    last_sequence = last_read.clone();
                    iterator = next;
                }
                Some(sequence) => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100 * attempts.clamp(1, 20) as u64)).await;
                    iterator = self.iterator(ShardIteratorType::AtSequenceNumber, Some(&sequence)).await;
                }
            }
        }
        tracing::warn!(function = %self.function.spec.logical_id, "stream shard closed");
    }
}

/// One stream record in the shape Lambda passes to a function.
fn stream_record(record: &aws_sdk_dynamodbstreams::types::Record, stream_arn: &str, region: &str) -> Json {
    let change = record.dynamodb.as_ref();
    let image = |map: Option<&std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>| {
        map.map(|m| Json::Object(m.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect()))
    };
    let mut dynamodb = json!({
        "Keys": image(change.and_then(|c| c.keys.as_ref())).unwrap_or(json!({})),
        "SequenceNumber": change.and_then(|c| c.sequence_number.clone()),
        "SizeBytes": change.and_then(|c| c.size_bytes).unwrap_or(0),
        "StreamViewType": change.and_then(|c| c.stream_view_type.as_ref()).map(|t| t.as_str().to_owned()),
        "ApproximateCreationDateTime": change
            .and_then(|c| c.approximate_creation_date_time)
            .map(|t| t.secs())
            .unwrap_or_else(|| OffsetDateTime::now_utc().unix_timestamp()),
    });
    if let Some(new) = image(change.and_then(|c| c.new_image.as_ref())) {
        dynamodb["NewImage"] = new;
    }
    if let Some(old) = image(change.and_then(|c| c.old_image.as_ref())) {
        dynamodb["OldImage"] = old;
    }
    json!({
        "eventID": record.event_id,
        "eventName": record.event_name.as_ref().map(|n| n.as_str().to_owned()),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    })
}

/// DynamoDB JSON (`{"S": "x"}`) of a stream attribute value.
fn attribute_json(value: &aws_sdk_dynamodbstreams::types::AttributeValue) -> Json {
    use aws_sdk_dynamodbstreams::types::AttributeValue as A;
    match value {
        A::S(s) => json!({ "S": s }),
        A::N(n) => json!({ "N": n }),
        A::B(b) => json!({ "B": STANDARD.encode(b.as_ref()) }),
        A::Bool(b) => json!({ "BOOL": b }),
        A::Null(_) => json!({ "NULL": true }),
        A::Ss(values) => json!({ "SS": values }),
        A::Ns(values) => json!({ "NS": values }),
        A::Bs(values) => json!({ "BS": values.iter().map(|b| STANDARD.encode(b.as_ref())).collect::<Vec<_>>() }),
        A::L(items) => json!({ "L": items.iter().map(attribute_json).collect::<Vec<_>>() }),
        A::M(map) => {
            json!({ "M": map.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<serde_json::Map<_, _>>() })
        }
        _ => json!({ "NULL": true }),
    }
}

/// The event EventBridge Scheduler / a schedule rule sends.
pub fn scheduled_event(rule_arn: &str, region: &str, time: OffsetDateTime) -> Bytes {
    let time = time.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    Bytes::from(
        json!({
            "version": "0",
            "id": ulid::Ulid::new().to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": crate::template::ACCOUNT_ID,
            "time": time,
            "region": region,
            "resources": [rule_arn],
            "detail": {}
        })
        .to_string(),
    )
}

/// The period of a `rate(N unit)` expression; `cron(...)` runs only on demand locally.
pub fn rate(expression: &str) -> Option<Duration> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (count, unit) = inner.trim().split_once(' ')?;
    let count: u64 = count.parse().ok()?;
    let seconds = match unit.trim().trim_end_matches('s') {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(count * seconds))
}

/// Ticks a schedule until the process ends.
pub async fn run_schedule(function: Arc<FunctionHost>, rule_arn: String, region: String, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.tick().await; // the first tick is immediate; a schedule first fires one period in
    loop {
        ticker.tick().await;
        let outcome = function.invoke(scheduled_event(&rule_arn, &region, OffsetDateTime::now_utc())).await;
        if !matches!(outcome, Outcome::Response(_)) {
            tracing::warn!(function = %function.spec.logical_id, ?outcome, "scheduled invocation failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> HashSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn reported_failures_are_kept_and_the_rest_succeed() {
        let outcome = Outcome::Response(Bytes::from(r#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#));
        assert_eq!(batch_outcome(&outcome, true, &ids(&["a", "b"])), BatchOutcome::Partial(vec!["b".into()]));
        let empty = Outcome::Response(Bytes::from(r#"{"batchItemFailures":[]}"#));
        assert_eq!(batch_outcome(&empty, true, &ids(&["a"])), BatchOutcome::AllSucceeded);
    }

    #[test]
    fn an_unknown_identifier_or_an_error_fails_the_whole_batch() {
        let unknown = Outcome::Response(Bytes::from(r#"{"batchItemFailures":[{"itemIdentifier":"zzz"}]}"#));
        assert_eq!(batch_outcome(&unknown, true, &ids(&["a"])), BatchOutcome::AllFailed);
        assert_eq!(batch_outcome(&Outcome::Crashed, true, &ids(&["a"])), BatchOutcome::AllFailed);
        assert_eq!(batch_outcome(&Outcome::FunctionError(Bytes::new()), false, &ids(&["a"])), BatchOutcome::AllFailed);
    }

    #[test]
    fn a_skipped_batch_is_announced_by_its_place_in_the_shard_as_lambda_does() {
        let batch = [("100".to_owned(), 1_573_690_399), ("101".to_owned(), 1_573_690_400)];
        let record = skipped_batch_record("arn:fn", 3, "shardId-1", "arn:stream", &batch);
        assert_eq!(record["requestContext"]["condition"], "RetryAttemptsExhausted");
        assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
        let info = &record["DDBStreamBatchInfo"];
        assert_eq!(
            (info["startSequenceNumber"].as_str(), info["endSequenceNumber"].as_str()),
            (Some("100"), Some("101"))
        );
        assert_eq!(info["approximateArrivalOfFirstRecord"], "2019-11-14T00:13:19Z");
        assert_eq!((info["batchSize"].as_u64(), info["shardId"].as_str()), (Some(2), Some("shardId-1")));
        assert_eq!(info["streamArn"], "arn:stream");
    }

    #[test]
    fn rate_expressions_become_periods() {
        assert_eq!(rate("rate(1 minute)"), Some(Duration::from_secs(60)));
        assert_eq!(rate("rate(5 minutes)"), Some(Duration::from_secs(300)));
        assert_eq!(rate("cron(0 12 * * ? *)"), None);
    }
}
