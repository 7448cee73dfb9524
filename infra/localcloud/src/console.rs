//! What `make dev` prints for the functions: every line a function writes, tagged with the
//! function that wrote it and made readable. A JSON log line becomes
//! `12:00:01.234 CheckoutEventsFunction  INFO  event published  correlation_id=ord_… detail_type=…`,
//! an EMF metric document becomes `… metric OrdersCancelled=1 Reason=payment_failed`; anything
//! else is printed as it came. In AWS the same lines go to CloudWatch Logs unchanged.

use serde_json::{Map, Value};

/// Fields shown first, in this order, when a log line has them.
const FIRST: [&str; 4] = ["correlation_id", "detail_type", "event_id", "requestId"];
/// Fields that are noise on a terminal.
const HIDDEN: [&str; 6] = ["timestamp", "level", "message", "xrayTraceId", "spans", "trace"];

/// One line a function wrote, as the terminal shows it.
pub fn render(function: &str, line: &str) -> String {
    let Ok(Value::Object(document)) = serde_json::from_str::<Value>(line) else {
        return format!("{:<12} {function:<30} {line}", clock(None));
    };
    if let Some(metrics) = document.get("_aws") {
        return format!("{:<12} {function:<30} metric {}", clock(None), metric(metrics, &document));
    }
    let level = document.get("level").and_then(Value::as_str).unwrap_or("");
    let message = document.get("message").and_then(Value::as_str).unwrap_or("");
    let mut fields = flatten(&document);
    fields.sort_by_key(|(key, _)| FIRST.iter().position(|first| first == key).unwrap_or(FIRST.len()));
    let fields: Vec<String> = fields.into_iter().map(|(key, value)| format!("{key}={value}")).collect();
    let timestamp = document.get("timestamp").and_then(Value::as_str);
    format!("{:<12} {function:<30} {level:<5} {message}  {}", clock(timestamp), fields.join(" ")).trim_end().to_owned()
}

/// The line's fields and its spans' (request id, correlation id…), without the hidden ones.
fn flatten(document: &Map<String, Value>) -> Vec<(String, String)> {
    let spans = document.get("spans").and_then(Value::as_array).into_iter().flatten();
    let span_fields = spans.filter_map(Value::as_object).flatten();
    let mut fields: Vec<(String, String)> = Vec::new();
    for (key, value) in document.iter().chain(span_fields) {
        if HIDDEN.contains(&key.as_str()) || key == "name" || fields.iter().any(|(seen, _)| seen == key) {
            continue;
        }
        let value = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        fields.push((key.clone(), value));
    }
    fields
}

/// `Name=value` for each metric of an EMF document, then its dimensions.
fn metric(directive: &Value, document: &Map<String, Value>) -> String {
    let mut parts = Vec::new();
    for declaration in directive["CloudWatchMetrics"].as_array().into_iter().flatten() {
        for name in declaration["Metrics"].as_array().into_iter().flatten().filter_map(|m| m["Name"].as_str()) {
            let value = document.get(name).map(Value::to_string).unwrap_or_default();
            let unit = match declaration["Metrics"].as_array().and_then(|ms| ms.iter().find(|m| m["Name"] == name)) {
                Some(m) if m["Unit"] == "Milliseconds" => " ms",
                _ => "",
            };
            parts.push(format!("{name}={value}{unit}"));
        }
        for key in declaration["Dimensions"].as_array().into_iter().flatten().flat_map(|set| set.as_array()).flatten() {
            if let Some(key) = key.as_str() {
                let value = document.get(key).and_then(Value::as_str).unwrap_or("");
                parts.push(format!("{key}={value}"));
            }
        }
    }
    parts.join(" ")
}

/// `HH:MM:SS.mmm` of an RFC 3339 timestamp, or of now.
fn clock(timestamp: Option<&str>) -> String {
    let at = timestamp
        .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    format!("{:02}:{:02}:{:02}.{:03}", at.hour(), at.minute(), at.second(), at.millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_shows_its_function_level_message_and_correlation_first() {
        let line = r#"{"timestamp":"2026-11-28T09:15:02.125Z","level":"INFO","message":"event published","event_id":"evt_1","spans":[{"requestId":"abc","xrayTraceId":"Root=1-x","name":"Lambda runtime invoke"},{"name":"event","correlation_id":"ord_1","trace":"Root=1-x"}]}"#;

        let shown = render("CheckoutRelayFunction", line);

        assert!(shown.starts_with("09:15:02.125 CheckoutRelayFunction"), "{shown}");
        assert!(shown.contains("INFO  event published  correlation_id=ord_1 event_id=evt_1 requestId=abc"), "{shown}");
        assert!(!shown.contains("Root=1-x"), "{shown}");
    }

    #[test]
    fn a_metric_document_shows_each_value_with_its_unit_and_dimensions() {
        let line = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"Ferrocart","Dimensions":[["FunctionName"]],"Metrics":[{"Name":"EventAge","Unit":"Milliseconds"}]}]},"FunctionName":"shop-Inventory","EventAge":[12,40]}"#;

        let shown = render("InventoryEventsFunction", line);

        assert!(shown.contains("InventoryEventsFunction "), "{shown}");
        assert!(shown.ends_with(" metric EventAge=[12,40] ms FunctionName=shop-Inventory"), "{shown}");
    }

    #[test]
    fn anything_else_is_printed_as_it_came_with_its_function() {
        assert!(
            render("CartApiFunction", "thread 'main' panicked")
                .ends_with("CartApiFunction                thread 'main' panicked")
        );
    }
}
