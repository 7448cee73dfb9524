//! # Ferrocart domain events
//!
//! The contract between the domains. Producers write an [`Event`] to their table's outbox in the
//! same transaction as the state change; the relay publishes it to the `FerrocartBus` EventBridge
//! bus with `source` = [`Event::source`] and `detail-type` = [`Event::detail_type`]; rules route
//! it to each consumer's SQS queue, where [`Envelope::from_eventbridge`] reads it back.
//!
//! The `detail` of every event is versioned and self-describing:
//!
//! ```json
//! { "version": 1, "event_id": "evt_…", "correlation_id": "ord_…",
//!   "occurred_at": "2026-11-22T10:00:00Z", "data": { … } }
//! ```
//!
//! `event_id` identifies the occurrence (the outbox item is keyed by it); `correlation_id` ties every event of one saga
//! (the order id) or one aggregate (the product id) together for tracing. A consumer refuses a
//! `version` newer than it understands instead of misreading it.
//!
//! This file is the single source of truth for names: the [`events!`] table below defines each
//! event's detail-type, source and payload type once. JSON Schemas in `events/schemas/` are
//! generated from these types (`make schemas`) and a test keeps them in step.

pub mod catalog;
pub mod checkout;
pub mod fulfillment;
pub mod inventory;
pub mod payment;
pub mod queries;
pub mod trace;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use kernel::EventId;

/// The version of the `detail` layout and payloads this build writes and understands.
pub const VERSION: u32 = 1;

/// Where an event comes from: the EventBridge `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Catalog,
    Inventory,
    Checkout,
    Payment,
    Fulfillment,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Catalog => "ferrocart.catalog",
            Self::Inventory => "ferrocart.inventory",
            Self::Checkout => "ferrocart.checkout",
            Self::Payment => "ferrocart.payment",
            Self::Fulfillment => "ferrocart.fulfillment",
        }
    }
}

/// Facts about one occurrence of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Metadata {
    pub event_id: EventId,
    /// The order id for saga events, the product id for catalog events.
    pub correlation_id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub occurred_at: OffsetDateTime,
}

impl Metadata {
    /// Metadata for a new event, now.
    pub fn new(correlation_id: impl Into<String>) -> Self {
        Self { event_id: EventId::new(), correlation_id: correlation_id.into(), occurred_at: OffsetDateTime::now_utc() }
    }
}

/// The `detail` of an EventBridge event.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Detail<T> {
    pub version: u32,
    #[serde(flatten)]
    pub metadata: Metadata,
    pub data: T,
}

/// Why an event could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("unknown detail-type `{0}`")]
    UnknownType(String),
    #[error("detail-type {detail_type} came from `{source_name}`, not {expected}")]
    WrongSource { detail_type: String, source_name: String, expected: &'static str },
    #[error("{detail_type} version {version} is newer than this consumer understands ({VERSION})")]
    TooNew { detail_type: String, version: u32 },
    #[error("malformed {what}: {error}")]
    Malformed { what: String, error: serde_json::Error },
}

/// An event with its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub metadata: Metadata,
    pub event: Event,
}

/// Declares every event once: name (= detail-type), source and payload type.
macro_rules! events {
    ($($name:ident => $source:ident, $payload:ty;)*) => {
        /// Every Ferrocart domain event.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $($name($payload),)*
        }

        impl Event {
            /// The EventBridge `detail-type`: the event's name.
            pub fn detail_type(&self) -> &'static str {
                match self {
                    $(Self::$name(_) => stringify!($name),)*
                }
            }

            /// The EventBridge `source`: the domain that emits it.
            pub fn source(&self) -> Source {
                match self {
                    $(Self::$name(_) => Source::$source,)*
                }
            }

            fn data(&self) -> Result<serde_json::Value, serde_json::Error> {
                match self {
                    $(Self::$name(payload) => serde_json::to_value(payload),)*
                }
            }

            fn parse(detail_type: &str, data: serde_json::Value) -> Result<Self, EventError> {
                let malformed = |error| EventError::Malformed { what: detail_type.to_owned(), error };
                match detail_type {
                    $(stringify!($name) => Ok(Self::$name(serde_json::from_value(data).map_err(malformed)?)),)*
                    other => Err(EventError::UnknownType(other.to_owned())),
                }
            }

            fn expected_source(detail_type: &str) -> Option<Source> {
                match detail_type {
                    $(stringify!($name) => Some(Source::$source),)*
                    _ => None,
                }
            }

            /// Every detail-type with the JSON Schema of its `detail`.
            pub fn schemas() -> Vec<(&'static str, schemars::Schema)> {
                let mut schemas = vec![$((stringify!($name), schemars::schema_for!(Detail<$payload>)),)*];
                for (detail_type, schema) in &mut schemas {
                    schema.insert("title".to_owned(), (*detail_type).into());
                }
                schemas
            }
        }
    };
}

events! {
    ProductChanged => Catalog, catalog::ProductChanged;
    OrderPlaced => Checkout, checkout::OrderPlaced;
    OrderConfirmed => Checkout, checkout::OrderConfirmed;
    OrderCancelled => Checkout, checkout::OrderCancelled;
    ReturnReceived => Checkout, checkout::ReturnReceived;
    StockReserved => Inventory, inventory::StockReserved;
    StockRejected => Inventory, inventory::StockRejected;
    StockReleased => Inventory, inventory::StockReleased;
    StockCommitted => Inventory, inventory::StockCommitted;
    PaymentAuthorized => Payment, payment::PaymentAuthorized;
    PaymentFailed => Payment, payment::PaymentFailed;
    PaymentActionRequired => Payment, payment::PaymentActionRequired;
    PaymentVoided => Payment, payment::PaymentVoided;
    PaymentCaptured => Payment, payment::PaymentCaptured;
    PaymentCaptureFailed => Payment, payment::PaymentCaptureFailed;
    RefundIssued => Payment, payment::RefundIssued;
    RefundPending => Payment, payment::RefundPending;
    RefundFailed => Payment, payment::RefundFailed;
    PaymentDisputed => Payment, payment::PaymentDisputed;
    PaymentDisputeClosed => Payment, payment::PaymentDisputeClosed;
    ShipmentCreated => Fulfillment, fulfillment::ShipmentCreated;
    ShipmentDispatched => Fulfillment, fulfillment::ShipmentDispatched;
    ShipmentDelivered => Fulfillment, fulfillment::ShipmentDelivered;
    ShipmentCancelled => Fulfillment, fulfillment::ShipmentCancelled;
}

impl Envelope {
    pub fn new(metadata: Metadata, event: Event) -> Self {
        Self { metadata, event }
    }

    /// The `detail` JSON to publish.
    pub fn detail(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(Detail { version: VERSION, metadata: self.metadata.clone(), data: self.event.data()? })
    }

    /// Reads an event from its EventBridge `detail-type`, `source` and `detail`.
    pub fn from_parts(detail_type: &str, source: &str, detail: serde_json::Value) -> Result<Self, EventError> {
        let expected =
            Event::expected_source(detail_type).ok_or_else(|| EventError::UnknownType(detail_type.to_owned()))?;
        if expected.as_str() != source {
            return Err(EventError::WrongSource {
                detail_type: detail_type.to_owned(),
                source_name: source.to_owned(),
                expected: expected.as_str(),
            });
        }
        let detail: Detail<serde_json::Value> = serde_json::from_value(detail)
            .map_err(|error| EventError::Malformed { what: format!("{detail_type} detail"), error })?;
        if detail.version > VERSION {
            return Err(EventError::TooNew { detail_type: detail_type.to_owned(), version: detail.version });
        }
        Ok(Self { metadata: detail.metadata, event: Event::parse(detail_type, detail.data)? })
    }

    /// Reads an event from the EventBridge envelope an SQS message body carries.
    pub fn from_eventbridge(body: &str) -> Result<Self, EventError> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(rename = "detail-type")]
            detail_type: String,
            source: String,
            detail: serde_json::Value,
        }
        let wire: Wire = serde_json::from_str(body)
            .map_err(|error| EventError::Malformed { what: "EventBridge envelope".to_owned(), error })?;
        Self::from_parts(&wire.detail_type, &wire.source, wire.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::OrderId;

    fn cancelled() -> Envelope {
        let order_id = OrderId::new();
        Envelope::new(
            Metadata::new(order_id.to_string()),
            Event::OrderCancelled(checkout::OrderCancelled { order_id, reason: "customer_cancelled".to_owned() }),
        )
    }

    #[test]
    fn an_event_survives_the_trip_through_an_eventbridge_envelope() {
        let envelope = cancelled();
        let wire = serde_json::json!({
            "version": "0", "id": "x", "detail-type": envelope.event.detail_type(),
            "source": envelope.event.source().as_str(), "time": "2026-11-22T00:00:00Z",
            "region": "us-east-1", "resources": [], "detail": envelope.detail().unwrap()
        });
        let read = Envelope::from_eventbridge(&wire.to_string()).unwrap();
        assert_eq!(read, envelope);
    }

    #[test]
    fn a_newer_version_or_a_forged_source_is_refused() {
        let envelope = cancelled();
        let mut detail = envelope.detail().unwrap();
        detail["version"] = serde_json::json!(VERSION + 1);
        assert!(matches!(
            Envelope::from_parts("OrderCancelled", "ferrocart.checkout", detail),
            Err(EventError::TooNew { .. })
        ));
        let detail = envelope.detail().unwrap();
        assert!(matches!(
            Envelope::from_parts("OrderCancelled", "ferrocart.payment", detail),
            Err(EventError::WrongSource { .. })
        ));
        assert!(matches!(
            Envelope::from_parts("OrderTeleported", "ferrocart.checkout", serde_json::json!({})),
            Err(EventError::UnknownType(_))
        ));
    }

    /// The committed schemas in events/schemas/ are what the types generate. `make schemas`
    /// (this test with `UPDATE_SCHEMAS=1`) rewrites them.
    #[test]
    fn committed_json_schemas_match_the_event_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/schemas");
        let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
        for (detail_type, schema) in Event::schemas() {
            let path = dir.join(format!("{detail_type}.json"));
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, serde_json::to_string_pretty(&schema).unwrap() + "\n").unwrap();
            }
            let committed = std::fs::read_to_string(&path)
                .unwrap_or_else(|_| panic!("{} is missing: run `make schemas`", path.display()));
            let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            assert_eq!(committed, generated, "{} is stale: run `make schemas`", path.display());
        }
    }
}
