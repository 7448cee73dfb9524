//! Metrics as CloudWatch Embedded Metric Format (EMF): one JSON document per line on stdout,
//! which CloudWatch Logs turns into metrics. No API call and no latency on the invocation.
//!
//! Why not the `metrics` facade with an EMF backend: every Ferrocart metric is recorded at one
//! known point (a relayed event, a consumed batch, a sweep tick, a cold start), so there is
//! nothing to aggregate across call sites, and the few lines here keep a registry, its locks and
//! a flush hook out of every binary (cold start and size are measured by `make bench`).
//!
//! Every function writes into one namespace, `METRICS_NAMESPACE` (template.yaml sets
//! `Ferrocart/<stack name>` for all of them). Dimensions are kept few, since every combination of
//! dimension values is a billed custom metric: none for shop-wide business counts, one
//! (`Reason`, `Currency`, `FunctionName`, `Sweep`, …) where it matters. Several values of one
//! metric go in one document (EMF allows up to 100), so a batch costs one line.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

/// The namespace when `METRICS_NAMESPACE` is unset (template.yaml sets it for every function).
pub const DEFAULT_NAMESPACE: &str = "Ferrocart";

/// The most values EMF accepts for one metric in one document.
pub const MAX_VALUES: usize = 100;

/// A CloudWatch unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    /// A plain number, e.g. an amount in minor units.
    None,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
            Self::None => "None",
        }
    }
}

/// One metric with its values and dimensions, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: Unit,
    pub values: Vec<u64>,
    pub dimensions: Vec<(&'static str, String)>,
    /// Fields written beside the metric that are not dimensions (no metric cost): CloudWatch
    /// Logs Insights finds the document by them, e.g. the `correlation_id` behind a value.
    pub properties: Vec<(&'static str, String)>,
    /// Also record the metric without its dimensions (EMF's empty dimension set), so a total
    /// exists beside the breakdown: `OrdersCancelled` and `OrdersCancelled` by `Reason`.
    pub with_total: bool,
}

impl Metric {
    /// One count of `name`, without dimensions.
    pub fn count(name: &'static str) -> Self {
        Self {
            name,
            unit: Unit::Count,
            values: vec![1],
            dimensions: Vec::new(),
            properties: Vec::new(),
            with_total: false,
        }
    }

    /// One value of `name` in `unit`, without dimensions.
    pub fn value(name: &'static str, unit: Unit, value: u64) -> Self {
        Self { name, unit, values: vec![value], dimensions: Vec::new(), properties: Vec::new(), with_total: false }
    }

    /// The same metric with one more dimension.
    #[must_use]
    pub fn by(mut self, dimension: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((dimension, value.into()));
        self
    }

    /// The same metric, recorded with its dimensions and also as a total without them (one
    /// more billed metric).
    #[must_use]
    pub fn and_total(mut self) -> Self {
        self.with_total = true;
        self
    }

    /// The same metric with one more property (a field that is not a dimension).
    #[must_use]
    pub fn with(mut self, property: &'static str, value: impl Into<String>) -> Self {
        self.properties.push((property, value.into()));
        self
    }

    /// Writes the metric to stdout as one EMF document per [`MAX_VALUES`] values (none when it
    /// has no values); in a test that asked for it, to [`capture`] instead.
    pub fn emit(&self) {
        #[cfg(any(test, feature = "test-util"))]
        if capture::take(self) {
            return;
        }
        for line in self.documents(namespace(), OffsetDateTime::now_utc()) {
            println!("{line}");
        }
    }

    /// The EMF documents for this metric.
    pub fn documents(&self, namespace: &str, at: OffsetDateTime) -> Vec<String> {
        let millis = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        let keys: Vec<&str> = self.dimensions.iter().map(|(key, _)| *key).collect();
        let dimension_sets = if self.with_total && !keys.is_empty() { json!([keys, []]) } else { json!([keys]) };
        self.values
            .chunks(MAX_VALUES)
            .map(|values| {
                let mut document = Map::new();
                document.insert(
                    "_aws".to_owned(),
                    json!({
                        "Timestamp": millis,
                        "CloudWatchMetrics": [{
                            "Namespace": namespace,
                            "Dimensions": dimension_sets,
                            "Metrics": [{ "Name": self.name, "Unit": self.unit.as_str() }],
                        }],
                    }),
                );
                for (key, value) in self.properties.iter().chain(&self.dimensions) {
                    document.insert((*key).to_owned(), Value::from(value.as_str()));
                }
                let value = match values {
                    [one] => json!(one),
                    many => json!(many),
                };
                document.insert(self.name.to_owned(), value);
                Value::Object(document).to_string()
            })
            .collect()
    }
}

/// Test support (feature `test-util`): what a unit test's code emits, checked as emitted rather
/// than as a return value says it would be. Per thread, which is the whole of a `#[tokio::test]`
/// on its default current-thread runtime.
#[cfg(any(test, feature = "test-util"))]
pub mod capture {
    use std::cell::RefCell;

    use super::Metric;

    thread_local! {
        static CAPTURED: RefCell<Option<Vec<Metric>>> = const { RefCell::new(None) };
    }

    /// Collects the metrics this thread emits, instead of writing them, until the guard drops.
    ///
    /// # Panics
    /// On a multi-thread runtime, whose tasks run on other threads: what they emit would go
    /// uncaptured, and a test that expects nothing counted would pass without looking.
    pub fn start() -> Captured {
        let flavor = tokio::runtime::Handle::try_current().map(|runtime| runtime.runtime_flavor());
        assert!(
            !matches!(flavor, Ok(tokio::runtime::RuntimeFlavor::MultiThread)),
            "metrics::capture needs the current-thread runtime (#[tokio::test] without flavor)"
        );
        CAPTURED.with(|captured| *captured.borrow_mut() = Some(Vec::new()));
        Captured(())
    }

    /// Keeps `metric` when this thread is capturing; false when it is not.
    pub(super) fn take(metric: &Metric) -> bool {
        CAPTURED.with(|captured| captured.borrow_mut().as_mut().map(|kept| kept.push(metric.clone())).is_some())
    }

    /// The capture [`start`] began; dropping it ends the capture.
    #[must_use = "the capture ends when this is dropped"]
    #[derive(Debug)]
    pub struct Captured(());

    impl Captured {
        /// The metrics emitted since the capture began or was last taken from, in order.
        pub fn take(&self) -> Vec<Metric> {
            CAPTURED.with(|captured| captured.borrow_mut().as_mut().map(std::mem::take).unwrap_or_default())
        }
    }

    impl Drop for Captured {
        fn drop(&mut self) {
            CAPTURED.with(|captured| *captured.borrow_mut() = None);
        }
    }
}

fn namespace() -> &'static str {
    static NAMESPACE: OnceLock<String> = OnceLock::new();
    NAMESPACE.get_or_init(|| {
        std::env::var("METRICS_NAMESPACE").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| DEFAULT_NAMESPACE.into())
    })
}

/// This function's name (`AWS_LAMBDA_FUNCTION_NAME`, which Lambda sets; the same value the
/// `AWS/Lambda` metrics use as `FunctionName`), or `local` outside Lambda.
pub fn function_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".to_owned()))
}

/// Records `value` for the counter `name` with one dimension, e.g. `("Sweep", "order-timeouts")`.
pub fn count(name: &'static str, value: u64, (key, dimension): (&'static str, &str)) {
    Metric::value(name, Unit::Count, value).by(key, dimension).emit();
}

/// Records that this process is a new execution environment: `ColdStart` by `FunctionName`.
/// Called once, by [`crate::logging::init`].
pub(crate) fn cold_start() {
    Metric::count("ColdStart").by("FunctionName", function_name()).emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_341_600).unwrap()
    }

    fn parse(line: &str) -> Value {
        assert!(!line.contains('\n'), "one line per document");
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn a_counter_is_one_emf_document_naming_its_dimension_and_value() {
        let metric = Metric::count("SweepFailures").by("Sweep", "order-timeouts");

        let lines = metric.documents("Ferrocart/shop", at());

        assert_eq!(lines.len(), 1);
        let document = parse(&lines[0]);
        assert_eq!(document["_aws"]["Timestamp"], 1_795_341_600_000_i64);
        let directive = &document["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Ferrocart/shop");
        assert_eq!(directive["Dimensions"], json!([["Sweep"]]));
        assert_eq!(directive["Metrics"], json!([{ "Name": "SweepFailures", "Unit": "Count" }]));
        assert_eq!((document["Sweep"].as_str(), document["SweepFailures"].as_u64()), (Some("order-timeouts"), Some(1)));
    }

    #[test]
    fn a_capturing_thread_keeps_what_it_emits_until_the_capture_ends() {
        let captured = capture::start();
        Metric::count("RefundsUnrecorded").with("correlation_id", "ord_1").emit();
        count("SweepFailures", 2, ("Sweep", "order-timeouts"));

        let kept = captured.take();

        let named: Vec<(&str, &[u64])> = kept.iter().map(|m| (m.name, m.values.as_slice())).collect();
        assert_eq!(named, [("RefundsUnrecorded", &[1][..]), ("SweepFailures", &[2][..])]);
        assert!(captured.take().is_empty(), "taken once");
        drop(captured);
        assert!(!capture::take(&Metric::count("OrdersPlaced")), "written again once the capture ends");
    }

    #[test]
    fn a_metric_without_dimensions_declares_one_empty_dimension_set() {
        let document = parse(&Metric::count("OrdersPlaced").documents("Ferrocart", at())[0]);

        assert_eq!(document["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
        assert_eq!(document["OrdersPlaced"], 1);
    }

    #[test]
    fn many_values_go_in_arrays_of_at_most_one_hundred() {
        let mut metric = Metric::value("EventAge", Unit::Milliseconds, 0).by("FunctionName", "shop-CheckoutEvents");
        metric.values = (0..150).collect();

        let documents: Vec<Value> = metric.documents("Ferrocart", at()).iter().map(|l| parse(l)).collect();

        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0]["EventAge"].as_array().map(Vec::len), Some(100));
        assert_eq!(documents[1]["EventAge"].as_array().map(Vec::len), Some(50));
        assert_eq!(documents[1]["EventAge"][49], 149);
        assert_eq!(documents[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"], "Milliseconds");
        assert_eq!(documents[0]["FunctionName"], "shop-CheckoutEvents");
    }

    #[test]
    fn properties_are_fields_of_the_document_but_not_dimensions() {
        let metric = Metric::count("OrdersPlaced").with("correlation_id", "ord_1");

        let document = parse(&metric.documents("Ferrocart", at())[0]);

        assert_eq!(document["correlation_id"], "ord_1");
        assert_eq!(document["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
    }

    #[test]
    fn a_metric_with_its_total_declares_the_empty_dimension_set_too() {
        let metric = Metric::count("OrdersCancelled").by("Reason", "timeout").and_total();

        let document = parse(&metric.documents("Ferrocart", at())[0]);

        assert_eq!(document["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Reason"], []]));
        assert_eq!(document["Reason"], "timeout");
    }

    #[test]
    fn a_metric_without_values_writes_nothing() {
        let mut metric = Metric::value("EventAge", Unit::Milliseconds, 0);
        metric.values.clear();

        assert!(metric.documents("Ferrocart", at()).is_empty());
    }
}
