//! Counters as CloudWatch Embedded Metric Format (EMF): one JSON line on stdout per data point,
//! which CloudWatch Logs turns into a metric. No API call and no latency on the invocation.
//!
//! This is the handful of lines the sweeps need today; the observability work will decide
//! whether a `metrics` facade with an EMF backend replaces it. Dimensions are kept to one,
//! since every combination of dimension values is a billed custom metric.

use std::sync::OnceLock;

use serde_json::json;
use time::OffsetDateTime;

/// The namespace when `METRICS_NAMESPACE` is unset (template.yaml sets it for every function).
pub const DEFAULT_NAMESPACE: &str = "Ferrocart";

fn namespace() -> &'static str {
    static NAMESPACE: OnceLock<String> = OnceLock::new();
    NAMESPACE.get_or_init(|| {
        std::env::var("METRICS_NAMESPACE").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| DEFAULT_NAMESPACE.into())
    })
}

/// Records `value` for the counter `name` with one dimension, e.g. `("Sweep", "order-timeouts")`.
pub fn count(name: &str, value: u64, dimension: (&str, &str)) {
    println!("{}", emf_line(namespace(), name, value, dimension, OffsetDateTime::now_utc()));
}

/// The EMF document for one counter value.
fn emf_line(namespace: &str, name: &str, value: u64, (key, dimension): (&str, &str), at: OffsetDateTime) -> String {
    let millis = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let mut line = json!({
        "_aws": {
            "Timestamp": millis,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[key]],
                "Metrics": [{ "Name": name, "Unit": "Count" }],
            }],
        },
    });
    line[key] = json!(dimension);
    line[name] = json!(value);
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_is_one_emf_document_naming_its_dimension_and_value() {
        let at = OffsetDateTime::from_unix_timestamp(1_795_341_600).unwrap();

        let line = emf_line("Ferrocart/shop", "SweepFailures", 2, ("Sweep", "order-timeouts"), at);

        let document: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(document["_aws"]["Timestamp"], 1_795_341_600_000_i64);
        let directive = &document["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Ferrocart/shop");
        assert_eq!(directive["Dimensions"], json!([["Sweep"]]));
        assert_eq!(directive["Metrics"], json!([{ "Name": "SweepFailures", "Unit": "Count" }]));
        assert_eq!((document["Sweep"].as_str(), document["SweepFailures"].as_u64()), (Some("order-timeouts"), Some(2)));
        assert!(!line.contains('\n'), "one line per data point");
    }
}
