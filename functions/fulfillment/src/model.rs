//! Shipments and the decisions about them, without I/O.
//!
//! ```text
//! pending ──dispatch──▶ dispatched ──deliver──▶ delivered
//!    │
//!    └──order cancelled──▶ cancelled
//! ```
//!
//! - [`Shipment::apply`] takes one step (dispatch, deliver, cancel) and says what to write:
//!   the shipment changed and announces an event, nothing changed (a repeat), or the step cannot
//!   happen ([`Refused`]).
//! - [`OrderFacts::next`] decides when an order's shipments are created: `OrderConfirmed` (where
//!   and how it ships) and `StockCommitted` (what leaves which warehouse) arrive in either order,
//!   each possibly more than once; once both are in, and the order was not cancelled first, the
//!   order gets one shipment per warehouse ([`plan`]), all at once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use domain_events::Event;
use domain_events::checkout::Shipping;
use domain_events::fulfillment::{
    ShipmentCancelled, ShipmentCreated, ShipmentDelivered, ShipmentDispatched, ShipmentLine,
};
use domain_events::inventory::ReservedLine;
use kernel::{FieldError, OrderId, ShipmentId};

/// Longest carrier name accepted.
pub const MAX_CARRIER: usize = 50;
/// Longest tracking number accepted (the longest carriers' are about 40).
pub const MAX_TRACKING_NUMBER: usize = 100;
/// Longest tracking URL accepted.
pub const MAX_TRACKING_URL: usize = 500;

/// Where a shipment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Dispatched,
    Delivered,
    Cancelled,
}

impl Status {
    pub fn parse(raw: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_owned())).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Dispatched => "dispatched",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }
}

pub use kernel::Warehouse;

/// How a dispatched shipment can be followed: parsed from the admin's request, so a shipment
/// never holds an empty carrier or a tracking URL that is not https.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracking {
    pub carrier: String,
    pub tracking_number: String,
    pub tracking_url: Option<String>,
}

fn bounded(errors: &mut Vec<FieldError>, pointer: &str, value: &str, max: usize) -> String {
    let value = value.trim();
    if value.is_empty() {
        errors.push(FieldError::new(pointer, "must not be empty"));
    } else if value.chars().count() > max {
        errors.push(FieldError::new(pointer, format!("must be at most {max} characters")));
    } else if value.chars().any(char::is_control) {
        errors.push(FieldError::new(pointer, "must not contain control characters"));
    }
    value.to_owned()
}

impl Tracking {
    /// Checks every field at once: carrier and tracking number non-empty and bounded, the URL
    /// (when given) an absolute `https://` URL with a host.
    pub fn parse(carrier: &str, tracking_number: &str, tracking_url: Option<&str>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let carrier = bounded(&mut errors, "/carrier", carrier, MAX_CARRIER);
        let tracking_number = bounded(&mut errors, "/tracking_number", tracking_number, MAX_TRACKING_NUMBER);
        let tracking_url = tracking_url.map(str::trim).filter(|raw| !raw.is_empty()).and_then(|raw| {
            let https = url::Url::parse(raw).ok().filter(|url| url.scheme() == "https" && url.host_str().is_some());
            if raw.len() > MAX_TRACKING_URL {
                errors.push(FieldError::new("/tracking_url", format!("must be at most {MAX_TRACKING_URL} characters")));
                None
            } else if https.is_none() {
                errors.push(FieldError::new("/tracking_url", "must be an https:// URL"));
                None
            } else {
                https.map(String::from)
            }
        });
        if errors.is_empty() { Ok(Self { carrier, tracking_number, tracking_url }) } else { Err(errors) }
    }
}

/// Why an admin should look at a shipment: the saga could not undo what it wanted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// The order was cancelled after this shipment left: the goods are gone (see docs/events.md,
    /// "A cancellation racing a dispatch").
    CancelledAfterDispatch,
}

/// One shipment: the units one warehouse gives to one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    #[serde(rename = "id")]
    pub shipment_id: ShipmentId,
    pub order_id: OrderId,
    pub warehouse: Warehouse,
    pub status: Status,
    pub lines: Vec<ShipmentLine>,
    /// How many shipments the order has (all created at once).
    pub shipment_count: u32,
    pub shipping: Shipping,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub tracking_url: Option<String>,
    pub flag: Option<Flag>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub dispatched_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub cancelled_at: Option<OffsetDateTime>,
    /// Raised by every change; a write is conditional on the version read.
    pub version: u64,
}

/// A step a shipment may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An admin hands the shipment to a carrier.
    Dispatch(Tracking),
    /// An admin records the delivery.
    Deliver,
    /// The order was cancelled.
    Cancel,
}

impl Step {
    fn name(&self) -> &'static str {
        match self {
            Self::Dispatch(_) => "dispatch",
            Self::Deliver => "deliver",
            Self::Cancel => "cancel",
        }
    }
}

/// A step that cannot happen to the shipment as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a shipment that is {from} cannot {step}{}", .why.map(|w| format!(" ({w})")).unwrap_or_default())]
pub struct Refused {
    pub from: &'static str,
    pub step: &'static str,
    pub why: Option<&'static str>,
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

impl Shipment {
    /// Applies a step. `Ok(Some(event))`: the shipment changed (its version too); write it with
    /// `event`. `Ok(None)`: it already took this step (a repeat); write nothing, answer it as it
    /// is. `Err`: the step is impossible; the shipment is unchanged.
    pub fn apply(&mut self, step: &Step, at: OffsetDateTime) -> Result<Option<Event>, Refused> {
        use Status::*;
        let refused = |shipment: &Shipment, why| Refused { from: shipment.status.as_str(), step: step.name(), why };
        let event = match (self.status, step) {
            (Pending, Step::Dispatch(tracking)) => {
                self.status = Dispatched;
                self.carrier = Some(tracking.carrier.clone());
                self.tracking_number = Some(tracking.tracking_number.clone());
                self.tracking_url = tracking.tracking_url.clone();
                self.dispatched_at = Some(at);
                Event::ShipmentDispatched(ShipmentDispatched {
                    order_id: self.order_id,
                    shipment_id: self.shipment_id,
                    shipment_count: self.shipment_count,
                    warehouse: self.warehouse.to_string(),
                    carrier: tracking.carrier.clone(),
                    tracking_number: tracking.tracking_number.clone(),
                    tracking_url: tracking.tracking_url.clone(),
                    dispatched_at: rfc3339(at),
                })
            }
            // The same dispatch again (a retried request) is answered as it was; another carrier or
            // tracking number for a shipment that already left is a mistake to show, not to apply.
            (Dispatched | Delivered, Step::Dispatch(tracking)) => {
                return if self.tracking() == Some(tracking.clone()) {
                    Ok(None)
                } else {
                    Err(refused(self, Some("it left with other tracking details")))
                };
            }
            (Dispatched, Step::Deliver) => {
                self.status = Delivered;
                self.delivered_at = Some(at);
                Event::ShipmentDelivered(ShipmentDelivered {
                    order_id: self.order_id,
                    shipment_id: self.shipment_id,
                    shipment_count: self.shipment_count,
                    delivered_at: rfc3339(at),
                })
            }
            (Delivered, Step::Deliver) | (Cancelled, Step::Cancel) => return Ok(None),
            (Pending, Step::Cancel) => {
                self.status = Cancelled;
                self.cancelled_at = Some(at);
                Event::ShipmentCancelled(ShipmentCancelled {
                    order_id: self.order_id,
                    shipment_id: self.shipment_id,
                    shipment_count: self.shipment_count,
                })
            }
            (Pending, Step::Deliver) => return Err(refused(self, Some("it was never dispatched"))),
            (Cancelled, Step::Dispatch(_) | Step::Deliver) => {
                return Err(refused(self, Some("its order was cancelled")));
            }
            (Dispatched | Delivered, Step::Cancel) => return Err(refused(self, Some("the goods have left"))),
        };
        self.version += 1;
        Ok(Some(event))
    }

    /// The tracking details it was dispatched with.
    pub fn tracking(&self) -> Option<Tracking> {
        Some(Tracking {
            carrier: self.carrier.clone()?,
            tracking_number: self.tracking_number.clone()?,
            tracking_url: self.tracking_url.clone(),
        })
    }

    /// The event announcing this (new) shipment.
    pub fn created(&self) -> Event {
        Event::ShipmentCreated(ShipmentCreated {
            order_id: self.order_id,
            shipment_id: self.shipment_id,
            shipment_count: self.shipment_count,
            warehouse: self.warehouse.to_string(),
            lines: self.lines.clone(),
        })
    }
}

/// Why an order's lines cannot become shipments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("StockCommitted names a warehouse fulfillment cannot key: {0}")]
    Warehouse(String),
}

/// One shipment per warehouse that gives units to the order, in warehouse name order, each
/// with its SKUs (in the order's line order, a SKU split over two allocations of one warehouse
/// merged). Allocations of zero units give nothing. No lines: no shipments.
pub fn plan(
    order_id: OrderId,
    shipping: &Shipping,
    lines: &[ReservedLine],
    at: OffsetDateTime,
) -> Result<Vec<Shipment>, PlanError> {
    let mut by_warehouse: BTreeMap<Warehouse, Vec<ShipmentLine>> = BTreeMap::new();
    for line in lines {
        for allocation in line.allocations.iter().filter(|a| a.quantity > 0) {
            let warehouse = Warehouse::parse(&allocation.warehouse).map_err(PlanError::Warehouse)?;
            let shipment = by_warehouse.entry(warehouse).or_default();
            match shipment.iter_mut().find(|l| l.sku == line.sku) {
                Some(existing) => existing.quantity += allocation.quantity,
                None => shipment.push(ShipmentLine { sku: line.sku.clone(), quantity: allocation.quantity }),
            }
        }
    }
    let count = u32::try_from(by_warehouse.len()).unwrap_or(u32::MAX);
    Ok(by_warehouse
        .into_iter()
        .map(|(warehouse, lines)| Shipment {
            shipment_id: ShipmentId::new(),
            order_id,
            warehouse,
            status: Status::Pending,
            lines,
            shipment_count: count,
            shipping: shipping.clone(),
            carrier: None,
            tracking_number: None,
            tracking_url: None,
            flag: None,
            created_at: at,
            dispatched_at: None,
            delivered_at: None,
            cancelled_at: None,
            version: 1,
        })
        .collect())
}

/// What fulfillment knows of an order: the facts recorded so far, commutatively.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrderFacts {
    /// From `OrderConfirmed`.
    pub shipping: Option<Shipping>,
    /// From `StockCommitted`.
    pub lines: Option<Vec<ReservedLine>>,
    /// From `OrderCancelled`: no shipment is created after it.
    pub cancelled: bool,
    /// The order's shipments, once created (all in one transaction).
    pub shipments: Option<Vec<ShipmentId>>,
}

/// What to do about an order's shipments now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// A fact is still missing: the other event will come.
    Wait,
    /// Both facts are in: create these shipments, with their `ShipmentCreated` events.
    Create(Vec<Shipment>),
    /// Created already, or cancelled first, or nothing leaves a warehouse: nothing to create.
    Nothing,
}

impl OrderFacts {
    /// Decides from the facts as recorded (read back from the write that recorded the latest).
    pub fn next(&self, order_id: OrderId, at: OffsetDateTime) -> Result<Next, PlanError> {
        if self.cancelled || self.shipments.is_some() {
            return Ok(Next::Nothing);
        }
        let (Some(shipping), Some(lines)) = (&self.shipping, &self.lines) else { return Ok(Next::Wait) };
        let shipments = plan(order_id, shipping, lines, at)?;
        Ok(if shipments.is_empty() { Next::Nothing } else { Next::Create(shipments) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain_events::checkout::ShippingAddress;
    use domain_events::inventory::Allocation;
    use kernel::Sku;

    const T0: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

    fn shipping() -> Shipping {
        Shipping {
            method: "standard".into(),
            address: ShippingAddress {
                name: "Alice".into(),
                line1: "1 Main St".into(),
                line2: None,
                city: "Springfield".into(),
                region: None,
                postal_code: "62701".into(),
                country: "US".into(),
            },
        }
    }

    fn line(sku: &str, allocations: &[(&str, u32)]) -> ReservedLine {
        ReservedLine {
            sku: Sku::parse(sku).unwrap(),
            quantity: allocations.iter().map(|(_, q)| q).sum(),
            allocations: allocations
                .iter()
                .map(|(warehouse, quantity)| Allocation { warehouse: (*warehouse).into(), quantity: *quantity })
                .collect(),
        }
    }

    fn shipment() -> Shipment {
        plan(OrderId::new(), &shipping(), &[line("MUG-1", &[("east", 2)])], T0).unwrap().remove(0)
    }

    fn ups() -> Tracking {
        Tracking::parse("ups", "1Z999", Some("https://ups.example.com/1Z999")).unwrap()
    }

    fn dispatched() -> Shipment {
        let mut shipment = shipment();
        shipment.apply(&Step::Dispatch(ups()), T0).unwrap();
        shipment
    }

    #[test]
    fn a_pending_shipment_is_dispatched_with_its_tracking_and_announces_it() {
        let mut shipment = shipment();

        let event = shipment.apply(&Step::Dispatch(ups()), T0).unwrap();

        assert_eq!(shipment.status, Status::Dispatched);
        assert_eq!(shipment.tracking(), Some(ups()));
        assert_eq!(shipment.dispatched_at, Some(T0));
        assert_eq!(shipment.version, 2);
        let Some(Event::ShipmentDispatched(dispatched)) = event else { panic!("{event:?}") };
        assert_eq!((dispatched.carrier.as_str(), dispatched.warehouse.as_str()), ("ups", "east"));
        assert_eq!(dispatched.dispatched_at, "1970-01-01T00:00:00Z");
    }

    #[test]
    fn a_dispatched_shipment_is_delivered_and_announces_it() {
        let mut shipment = dispatched();

        let event = shipment.apply(&Step::Deliver, T0).unwrap();

        assert_eq!((shipment.status, shipment.delivered_at), (Status::Delivered, Some(T0)));
        assert!(matches!(event, Some(Event::ShipmentDelivered(_))));
        assert_eq!(shipment.version, 3);
    }

    #[test]
    fn a_pending_shipment_is_cancelled_and_announces_it() {
        let mut shipment = shipment();

        let event = shipment.apply(&Step::Cancel, T0).unwrap();

        assert_eq!(shipment.status, Status::Cancelled);
        assert!(matches!(event, Some(Event::ShipmentCancelled(c)) if c.shipment_count == 1));
    }

    #[test]
    fn repeating_a_step_changes_nothing_and_announces_nothing() {
        let mut twice_dispatched = dispatched();
        let before = twice_dispatched.clone();
        assert_eq!(twice_dispatched.apply(&Step::Dispatch(ups()), T0), Ok(None));
        assert_eq!(twice_dispatched, before);

        let mut delivered = dispatched();
        delivered.apply(&Step::Deliver, T0).unwrap();
        let before = delivered.clone();
        assert_eq!(delivered.apply(&Step::Deliver, T0), Ok(None));
        assert_eq!(delivered.apply(&Step::Dispatch(ups()), T0), Ok(None), "a late repeat of the dispatch");
        assert_eq!(delivered, before);

        let mut cancelled = shipment();
        cancelled.apply(&Step::Cancel, T0).unwrap();
        assert_eq!(cancelled.apply(&Step::Cancel, T0), Ok(None));
        assert_eq!(cancelled.version, 2);
    }

    #[test]
    fn impossible_steps_are_refused_and_change_nothing() {
        let mut pending = shipment();
        let before = pending.clone();
        let refused = pending.apply(&Step::Deliver, T0).unwrap_err();
        assert_eq!((refused.from, refused.step), ("pending", "deliver"));
        assert_eq!(pending, before);

        let mut cancelled = shipment();
        cancelled.apply(&Step::Cancel, T0).unwrap();
        assert!(cancelled.apply(&Step::Dispatch(ups()), T0).is_err());
        assert!(cancelled.apply(&Step::Deliver, T0).is_err());

        let mut gone = dispatched();
        assert!(gone.apply(&Step::Cancel, T0).is_err(), "the goods have left");
        let fedex = Tracking::parse("fedex", "7777", None).unwrap();
        let other = gone.apply(&Step::Dispatch(fedex), T0).unwrap_err();
        assert!(other.to_string().contains("other tracking details"), "{other}");
        assert_eq!(gone.status, Status::Dispatched);

        let mut delivered = dispatched();
        delivered.apply(&Step::Deliver, T0).unwrap();
        assert!(delivered.apply(&Step::Cancel, T0).is_err());
    }

    #[test]
    fn tracking_needs_a_carrier_a_number_and_an_https_url() {
        let errors = Tracking::parse(" ", &"9".repeat(101), Some("http://ups.example.com/1")).unwrap_err();
        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, vec!["/carrier", "/tracking_number", "/tracking_url"]);

        assert!(Tracking::parse("ups", "1Z", Some("not a url")).is_err());
        assert!(Tracking::parse("ups", "1Z", Some("https://")).is_err());
        let tracking = Tracking::parse(" ups ", "1Z", Some("")).unwrap();
        assert_eq!((tracking.carrier.as_str(), tracking.tracking_url), ("ups", None));
    }

    #[test]
    fn an_order_gets_one_shipment_per_warehouse_with_its_lines() {
        let lines = [line("MUG-1", &[("east", 2), ("west", 1)]), line("TEE-1", &[("west", 3)])];

        let shipments = plan(OrderId::new(), &shipping(), &lines, T0).unwrap();

        let summary: Vec<_> = shipments
            .iter()
            .map(|s| (s.warehouse.as_str(), s.lines.iter().map(|l| (l.sku.as_str(), l.quantity)).collect::<Vec<_>>()))
            .collect();
        assert_eq!(summary, vec![("east", vec![("MUG-1", 2)]), ("west", vec![("MUG-1", 1), ("TEE-1", 3)])]);
        assert!(shipments.iter().all(|s| s.shipment_count == 2 && s.status == Status::Pending));
        assert_ne!(shipments[0].shipment_id, shipments[1].shipment_id);
    }

    #[test]
    fn a_warehouse_fulfillment_cannot_key_is_a_contract_error() {
        let lines = [line("MUG-1", &[("East#1", 1)])];
        assert!(plan(OrderId::new(), &shipping(), &lines, T0).is_err());
    }

    #[test]
    fn shipments_wait_for_both_facts_in_either_order() {
        let order_id = OrderId::new();
        let lines = vec![line("MUG-1", &[("east", 1)])];
        let only_shipping = OrderFacts { shipping: Some(shipping()), ..OrderFacts::default() };
        let only_lines = OrderFacts { lines: Some(lines.clone()), ..OrderFacts::default() };
        let both = OrderFacts { shipping: Some(shipping()), lines: Some(lines), ..OrderFacts::default() };

        assert_eq!(only_shipping.next(order_id, T0), Ok(Next::Wait));
        assert_eq!(only_lines.next(order_id, T0), Ok(Next::Wait));
        assert!(matches!(both.next(order_id, T0), Ok(Next::Create(s)) if s.len() == 1 && s[0].order_id == order_id));
    }

    #[test]
    fn nothing_is_created_twice_nor_after_a_cancellation_nor_from_no_lines() {
        let order_id = OrderId::new();
        let both = OrderFacts {
            shipping: Some(shipping()),
            lines: Some(vec![line("MUG-1", &[("east", 1)])]),
            ..OrderFacts::default()
        };
        let created = OrderFacts { shipments: Some(vec![ShipmentId::new()]), ..both.clone() };
        let cancelled = OrderFacts { cancelled: true, ..both.clone() };
        let empty = OrderFacts { lines: Some(Vec::new()), ..both };

        assert_eq!(created.next(order_id, T0), Ok(Next::Nothing));
        assert_eq!(cancelled.next(order_id, T0), Ok(Next::Nothing));
        assert_eq!(empty.next(order_id, T0), Ok(Next::Nothing));
    }
}
