//! `localcloud tail`: the events passing on the local bus, as they happen, the way
//! `stripe listen` shows Stripe's.
//!
//! It taps the bus the way a consumer would: a rule of its own (every `ferrocart.*` source) with
//! a queue of its own as target, long-polled until Ctrl-C, then both are deleted. Nothing of the
//! shop's rules or queues is touched, so tailing never takes an event from a consumer.

use anyhow::Context as _;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};

/// Where the running `localcloud dev` is, as it writes it to `.ferrocart/dev.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub api_url: String,
    pub endpoint: String,
    pub region: String,
    pub buses: Vec<String>,
}

impl Running {
    pub fn to_json(&self) -> Value {
        json!({ "api_url": self.api_url, "endpoint": self.endpoint, "region": self.region, "buses": self.buses })
    }

    pub fn from_json(value: &Value) -> Option<Self> {
        let text = |key: &str| value[key].as_str().map(str::to_owned);
        Some(Self {
            api_url: text("api_url")?,
            endpoint: text("endpoint")?,
            region: text("region")?,
            buses: value["buses"].as_array()?.iter().filter_map(|b| b.as_str().map(str::to_owned)).collect(),
        })
    }
}

/// The sources of Ferrocart's events.
const SOURCES: [&str; 5] =
    ["ferrocart.catalog", "ferrocart.inventory", "ferrocart.checkout", "ferrocart.payment", "ferrocart.fulfillment"];

/// A tap on a bus: a rule of its own matching every Ferrocart source, and a queue of its own
/// as the rule's target.
#[derive(Debug)]
pub struct Tap {
    events: aws_sdk_eventbridge::Client,
    sqs: aws_sdk_sqs::Client,
    bus: String,
    name: String,
    queue_url: String,
}

impl Tap {
    /// Creates the tap's queue and rule on `bus` of the emulator at `endpoint`.
    pub async fn open(endpoint: &str, region: &str, bus: &str) -> anyhow::Result<Self> {
        let config = crate::sdk_config(endpoint, region).await;
        let (events, sqs) = (aws_sdk_eventbridge::Client::new(&config), aws_sdk_sqs::Client::new(&config));
        let name = format!("localcloud-tail-{}", ulid::Ulid::new().to_string().to_lowercase());
        let queue_url = sqs.create_queue().queue_name(&name).send().await?.queue_url.context("no queue url")?;
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?;
        let queue_arn = attributes
            .attributes
            .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
            .context("no queue arn")?;
        let pattern = json!({ "source": SOURCES }).to_string();
        events.put_rule().name(&name).event_bus_name(bus).event_pattern(pattern).send().await?;
        let target = aws_sdk_eventbridge::types::Target::builder().id("tail").arn(&queue_arn).build()?;
        events.put_targets().rule(&name).event_bus_name(bus).targets(target).send().await?;
        Ok(Self { events, sqs, bus: bus.to_owned(), name, queue_url })
    }

    /// The events that arrived since the last call (waiting up to `wait_seconds` for one), as
    /// lines, only `order`'s when given.
    pub async fn next_lines(&self, order: Option<&str>, wait_seconds: i32) -> anyhow::Result<Vec<String>> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .send()
            .await?;
        let mut lines = Vec::new();
        for message in received.messages.unwrap_or_default() {
            lines.extend(message.body.as_deref().and_then(|body| line(body, order)));
            if let Some(handle) = message.receipt_handle {
                self.sqs.delete_message().queue_url(&self.queue_url).receipt_handle(handle).send().await?;
            }
        }
        Ok(lines)
    }

    /// Deletes the tap's rule and queue.
    pub async fn close(self) {
        let _ = self.events.remove_targets().rule(&self.name).event_bus_name(&self.bus).ids("tail").send().await;
        let _ = self.events.delete_rule().name(&self.name).event_bus_name(&self.bus).send().await;
        let _ = self.sqs.delete_queue().queue_url(&self.queue_url).send().await;
    }
}

/// Taps `bus` and prints each event (only `order`'s when given) until Ctrl-C.
pub async fn run(running: &Running, bus: &str, order: Option<&str>) -> anyhow::Result<()> {
    let tap = Tap::open(&running.endpoint, &running.region, bus).await?;
    println!("Tailing {bus}{} (Ctrl-C stops)", order.map(|o| format!(" for {o}")).unwrap_or_default());
    let tailing = async {
        loop {
            for line in tap.next_lines(order, 5).await? {
                println!("{line}");
            }
        }
    };
    let outcome: anyhow::Result<()> = tokio::select! {
        outcome = tailing => outcome,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    tap.close().await;
    outcome
}

/// The most characters of an event's data shown.
const SHORT: usize = 140;

/// One event as a line: time, source, detail-type, correlation id, the start of its data.
/// `None` when it is not `order`'s.
pub fn line(body: &str, order: Option<&str>) -> Option<String> {
    let event: Value = serde_json::from_str(body).ok()?;
    let detail = &event["detail"];
    let correlation_id = detail["correlation_id"].as_str().unwrap_or("-");
    if order.is_some_and(|order| order != correlation_id) {
        return None;
    }
    let occurred_at = detail["occurred_at"].as_str().or_else(|| event["time"].as_str()).unwrap_or("");
    let clock = occurred_at.split_once('T').map_or(occurred_at, |(_, clock)| clock.trim_end_matches('Z'));
    let mut data = detail["data"].to_string();
    if data.len() > SHORT {
        let cut = (0..=SHORT).rev().find(|&at| data.is_char_boundary(at)).unwrap_or(0);
        data.truncate(cut);
        data.push('…');
    }
    Some(format!(
        "{clock:<15} {:<22} {:<22} {correlation_id:<30} {data}",
        event["source"].as_str().unwrap_or("?"),
        event["detail-type"].as_str().unwrap_or("?"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(order: &str) -> String {
        event_with_reason(order, "payment_failed")
    }

    fn event_with_reason(order: &str, reason: &str) -> String {
        json!({
            "source": "ferrocart.checkout",
            "detail-type": "OrderCancelled",
            "time": "2026-11-28T09:00:00Z",
            "detail": { "version": 1, "event_id": "evt_1", "correlation_id": order,
                        "occurred_at": "2026-11-28T09:00:01.250Z",
                        "data": { "order_id": order, "reason": reason } },
        })
        .to_string()
    }

    #[test]
    fn an_event_is_one_line_with_its_time_source_type_and_order() {
        let shown = line(&event("ord_A"), None).unwrap();

        assert!(shown.starts_with("09:00:01.250"), "{shown}");
        for part in ["ferrocart.checkout", "OrderCancelled", "ord_A", r#""reason":"payment_failed""#] {
            assert!(shown.contains(part), "{part} missing from {shown}");
        }
    }

    #[test]
    fn with_an_order_only_its_events_are_shown() {
        assert!(line(&event("ord_A"), Some("ord_A")).is_some());
        assert!(line(&event("ord_B"), Some("ord_A")).is_none());
    }

    #[test]
    fn long_data_is_cut_short() {
        let long = event_with_reason("ord_A", &"x".repeat(400));

        let shown = line(&long, None).unwrap();

        assert!(shown.ends_with('…') && shown.chars().count() < 300, "{shown}");
    }
}
