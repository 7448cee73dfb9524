//! The shop's business metrics, read from the events the relay publishes.
//!
//! Every fact worth counting (an order placed, confirmed or cancelled, a payment authorized, a
//! shipment dispatched…) is an outbox event, written in the same transaction as the state it
//! announces. Counting them here, as they are published, means the metrics say exactly what
//! the event stream says, from one place, without a line in the domains' code. The relay
//! publishes at least once, so a batch Lambda retries after a partial failure counts its events
//! again: the figures are for dashboards and alarms, not for accounting.
//!
//! `SagaLatency` (placed → confirmed) needs no state: an order id is a ULID made when the order
//! is placed, so its timestamp is the placement time.

use domain_events::{Envelope, Event};
use kernel::Money;
use lambda_glue::metrics::{Metric, Unit};

/// The metrics one published event stands for (none for most events).
pub fn business(envelope: &Envelope) -> Vec<Metric> {
    match &envelope.event {
        Event::OrderPlaced(placed) => vec![
            Metric::count("OrdersPlaced"),
            Metric::value("OrderValue", Unit::None, minor_units(placed.total))
                .by("Currency", placed.total.currency().code()),
        ],
        Event::OrderConfirmed(confirmed) => {
            let placed_at = i128::from(confirmed.order_id.ulid().timestamp_ms()) * 1_000_000;
            let confirmed_at = envelope.metadata.occurred_at.unix_timestamp_nanos();
            let latency = u64::try_from((confirmed_at - placed_at) / 1_000_000).unwrap_or(0);
            vec![Metric::count("OrdersConfirmed"), Metric::value("SagaLatency", Unit::Milliseconds, latency)]
        }
        Event::OrderCancelled(cancelled) => {
            vec![Metric::count("OrdersCancelled").by("Reason", &cancelled.reason).and_total()]
        }
        Event::StockRejected(rejected) => {
            vec![Metric::count("StockRejected").by("Reason", rejected.reason.as_str()).and_total()]
        }
        Event::PaymentAuthorized(_) => vec![Metric::count("PaymentsAuthorized")],
        Event::PaymentFailed(failed) => vec![Metric::count("PaymentsFailed").by("Reason", &failed.reason).and_total()],
        Event::PaymentCaptured(_) => vec![Metric::count("PaymentsCaptured")],
        Event::PaymentCaptureFailed(_) => vec![Metric::count("PaymentCaptureFailures")],
        Event::RefundIssued(refund) => vec![
            Metric::count("RefundsIssued"),
            Metric::value("RefundValue", Unit::None, minor_units(refund.amount))
                .by("Currency", refund.amount.currency().code()),
        ],
        // A customer owed money nobody paid: RefundsFailedAlarm watches the total (template.yaml).
        Event::RefundFailed(failed) => {
            vec![Metric::count("RefundsFailed").by("Reason", &failed.failure_reason).and_total()]
        }
        Event::PaymentDisputed(_) => vec![Metric::count("PaymentsDisputed")],
        Event::ShipmentDispatched(_) => vec![Metric::count("ShipmentsDispatched")],
        Event::ShipmentDelivered(_) => vec![Metric::count("ShipmentsDelivered")],
        _ => Vec::new(),
    }
}

fn minor_units(money: Money) -> u64 {
    u64::try_from(money.amount()).unwrap_or(0)
}

/// Why an event was not published on the first try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishFailure {
    /// The call or the entry failed for now: the batch stops there and Lambda retries it.
    Retried,
    /// The record can never be published: it went to the dead-letter queue.
    Parked,
}

/// `PublishFailures` by `Kind` (`retried` or `parked`).
pub fn publish_failure(kind: PublishFailure) -> Metric {
    let kind = match kind {
        PublishFailure::Retried => "retried",
        PublishFailure::Parked => "parked",
    };
    Metric::count("PublishFailures").by("Kind", kind)
}

#[cfg(test)]
mod tests {
    use domain_events::Metadata;
    use domain_events::checkout::{OrderCancelled, OrderConfirmed, OrderPlaced, Shipping, ShippingAddress};
    use kernel::OrderId;
    use time::OffsetDateTime;

    use super::*;

    fn envelope(order_id: OrderId, event: Event) -> Envelope {
        Envelope::new(Metadata::new(order_id.to_string()), event)
    }

    /// A metric as (name, values, dimensions).
    type Summary<'a> = (&'a str, Vec<u64>, Vec<(&'a str, &'a str)>);

    fn summary(metrics: &[Metric]) -> Vec<Summary<'_>> {
        metrics
            .iter()
            .map(|m| (m.name, m.values.clone(), m.dimensions.iter().map(|(k, v)| (*k, v.as_str())).collect()))
            .collect()
    }

    #[test]
    fn a_placed_order_counts_once_and_records_its_value_by_currency() {
        let order_id = OrderId::new();
        let placed = OrderPlaced {
            order_id,
            customer: "alice".into(),
            email: "alice@example.com".into(),
            lines: Vec::new(),
            total: Money::new(12_345, kernel::Currency::EUR).unwrap(),
            payment_method: "pm_card_visa".into(),
            cart: None,
        };

        let metrics = business(&envelope(order_id, Event::OrderPlaced(placed)));

        assert_eq!(
            summary(&metrics),
            vec![("OrdersPlaced", vec![1], vec![]), ("OrderValue", vec![12_345], vec![("Currency", "EUR")])]
        );
        let lines =
            metrics.iter().flat_map(|m| m.documents("Ferrocart", OffsetDateTime::now_utc())).collect::<String>();
        assert!(!lines.contains("alice"), "no customer data in a metric: {lines}");
    }

    #[test]
    fn a_confirmed_order_records_the_time_since_it_was_placed() {
        let order_id = OrderId::new();
        let placed_at = i128::from(order_id.ulid().timestamp_ms()) * 1_000_000;
        let mut confirmed = envelope(
            order_id,
            Event::OrderConfirmed(OrderConfirmed {
                order_id,
                shipping: Some(Shipping {
                    method: "standard".into(),
                    address: ShippingAddress {
                        name: "A".into(),
                        line1: "1 Road".into(),
                        line2: None,
                        city: "Town".into(),
                        region: None,
                        postal_code: "1000".into(),
                        country: "BE".into(),
                    },
                }),
            }),
        );
        confirmed.metadata.occurred_at = OffsetDateTime::from_unix_timestamp_nanos(placed_at + 1_250_000_000).unwrap();

        let metrics = business(&confirmed);

        assert_eq!(summary(&metrics), vec![("OrdersConfirmed", vec![1], vec![]), ("SagaLatency", vec![1_250], vec![])]);
        assert_eq!(metrics[1].unit, Unit::Milliseconds);
    }

    #[test]
    fn a_cancelled_order_counts_by_its_reason() {
        let order_id = OrderId::new();
        let cancelled = Event::OrderCancelled(OrderCancelled { order_id, reason: "payment_failed".into() });

        assert_eq!(
            summary(&business(&envelope(order_id, cancelled.clone()))),
            vec![("OrdersCancelled", vec![1], vec![("Reason", "payment_failed")])]
        );
        assert!(business(&envelope(order_id, cancelled)).iter().all(|m| m.with_total), "and a total of every reason");
    }

    #[test]
    fn publish_failures_count_by_kind() {
        let metric = publish_failure(PublishFailure::Parked);

        assert_eq!(summary(&[metric]), vec![("PublishFailures", vec![1], vec![("Kind", "parked")])]);
    }
}
