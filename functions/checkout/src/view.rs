//! The order as the API shows it: the stored order, its timeline, and for admins what needs
//! their attention.
//!
//! The timeline is not stored: it is derived on every read from the facts the order keeps
//! (`history`, each shipment's times, the capture), so it can never disagree with them.

use serde::Serialize;
use time::OffsetDateTime;

use domain_events::payment::DisputeOutcome;
use kernel::{Money, ReturnId, ShipmentId};

use crate::order::{CaptureFailure, Flag, FlagResolution, Order, Status};
use crate::returns::{Dispute, RefundState, ReturnState};

/// What happened, in a timeline entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Happening {
    Placed,
    Reserved,
    RequiresAction,
    Authorized,
    Confirmed,
    PartiallyShipped,
    Shipped,
    Delivered,
    Cancelled,
    ShipmentDispatched,
    ShipmentDelivered,
    Captured,
    /// Admins only.
    CaptureFailed,
    /// Stripe took a refund `pending`: on its way, not paid back yet (`amount`, `return_id`).
    RefundPending,
    /// Money paid back (`amount`, and `return_id` when it paid a return).
    Refunded,
    /// A refund that did not pay the money back (`amount`, `reason`, `return_id`).
    RefundFailed,
    /// Admins only: the payment is disputed (`amount`, `reason`).
    Disputed,
    /// Admins only: a dispute closed (`amount`, `outcome`).
    DisputeClosed,
    /// Admins only: an admin resolved a flag (`flag`, `note`, `by`).
    FlagResolved,
}

impl From<Status> for Happening {
    fn from(status: Status) -> Self {
        match status {
            Status::Pending => Self::Placed,
            Status::Reserved => Self::Reserved,
            Status::RequiresAction => Self::RequiresAction,
            Status::Authorized => Self::Authorized,
            Status::Confirmed => Self::Confirmed,
            Status::PartiallyShipped => Self::PartiallyShipped,
            Status::Shipped => Self::Shipped,
            Status::Delivered => Self::Delivered,
            Status::Cancelled => Self::Cancelled,
        }
    }
}

/// One entry of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Moment {
    pub event: Happening,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The shipment, for `shipment_dispatched` and `shipment_delivered`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipment_id: Option<ShipmentId>,
    /// The amount, for `captured`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    /// The cancellation's, the refused capture's or the dispute's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The return a refund paid back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_id: Option<ReturnId>,
    /// The flag an admin resolved, with their note and JWT `sub`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<Flag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// How a dispute ended, for `dispute_closed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<DisputeOutcome>,
}

impl Moment {
    fn new(event: Happening, at: OffsetDateTime) -> Self {
        Self {
            event,
            at,
            shipment_id: None,
            amount: None,
            reason: None,
            return_id: None,
            flag: None,
            note: None,
            by: None,
            outcome: None,
        }
    }
}

/// Facts only admins see.
#[derive(Debug, Serialize)]
pub struct AdminFacts<'a> {
    pub flags: &'a [Flag],
    pub capture_failure: Option<&'a CaptureFailure>,
    pub disputes: &'a [Dispute],
    pub flag_resolutions: &'a [FlagResolution],
}

/// An order as a response body.
#[derive(Debug, Serialize)]
pub struct OrderView<'a> {
    #[serde(flatten)]
    pub order: std::borrow::Cow<'a, Order>,
    pub timeline: Vec<Moment>,
    /// `partially_returned` or `returned` once units were taken back; `null` before.
    pub return_status: Option<ReturnState>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminFacts<'a>>,
}

impl<'a> OrderView<'a> {
    /// The order as its owner sees it, or (`admin`) as admins do: with flags and a refused
    /// capture, and never the 3-D Secure client secret, which is the owner's alone.
    pub fn new(order: &'a Order, admin: bool) -> Self {
        let shown = if admin && order.payment.client_secret.is_some() {
            let mut without_secret = order.clone();
            without_secret.payment.client_secret = None;
            std::borrow::Cow::Owned(without_secret)
        } else {
            std::borrow::Cow::Borrowed(order)
        };
        Self {
            order: shown,
            timeline: timeline(order, admin),
            return_status: order.return_state(),
            admin: admin.then_some(AdminFacts {
                flags: &order.flags,
                capture_failure: order.capture_failure.as_ref(),
                disputes: &order.disputes,
                flag_resolutions: &order.flag_resolutions,
            }),
        }
    }
}

/// Everything that happened to the order, oldest first: every status it entered, each shipment's
/// dispatch and delivery (at fulfillment's times), the capture (at payment's time) and, for
/// admins, a refused capture, disputes and the flags admins resolved. Entries at the same instant keep that order.
pub fn timeline(order: &Order, admin: bool) -> Vec<Moment> {
    let mut moments: Vec<Moment> = order
        .history
        .iter()
        .map(|t| {
            let mut moment = Moment::new(t.status.into(), t.at);
            if t.status == Status::Cancelled {
                moment.reason.clone_from(&order.cancel_reason);
            }
            moment
        })
        .collect();
    for shipment in &order.shipments {
        let times = [
            (Happening::ShipmentDispatched, shipment.dispatched_at),
            (Happening::ShipmentDelivered, shipment.delivered_at),
        ];
        for (event, at) in times {
            if let Some(at) = at {
                moments.push(Moment { shipment_id: Some(shipment.id), ..Moment::new(event, at) });
            }
        }
    }
    if let (Some(amount), Some(at)) = (order.payment.captured, order.payment.captured_at) {
        moments.push(Moment { amount: Some(amount), ..Moment::new(Happening::Captured, at) });
    }
    if let Some(failure) = order.capture_failure.as_ref().filter(|_| admin) {
        moments
            .push(Moment { reason: Some(failure.reason.clone()), ..Moment::new(Happening::CaptureFailed, failure.at) });
    }
    for refund in &order.payment.refunds {
        if let Some(pending_at) = refund.pending_at {
            let moment = Moment::new(Happening::RefundPending, pending_at);
            moments.push(Moment { amount: Some(refund.amount), return_id: refund.return_id, ..moment });
        }
        // One Stripe failed after paying it: paid at `at`, failed at `failed_at`.
        if refund.status == RefundState::Succeeded || refund.failed_at.is_some() {
            let moment = Moment::new(Happening::Refunded, refund.at);
            moments.push(Moment { amount: Some(refund.amount), return_id: refund.return_id, ..moment });
        }
        if refund.status == RefundState::Failed {
            let moment = Moment::new(Happening::RefundFailed, refund.failed_at.unwrap_or(refund.at));
            let reason = refund.failure_reason.clone();
            moments.push(Moment { amount: Some(refund.amount), return_id: refund.return_id, reason, ..moment });
        }
    }
    for dispute in order.disputes.iter().filter(|_| admin) {
        let moment = Moment::new(Happening::Disputed, dispute.at);
        moments.push(Moment { amount: Some(dispute.amount), reason: Some(dispute.reason.clone()), ..moment });
        if let (Some(outcome), Some(at)) = (dispute.outcome, dispute.closed_at) {
            let moment = Moment::new(Happening::DisputeClosed, at);
            moments.push(Moment { amount: Some(dispute.amount), outcome: Some(outcome), ..moment });
        }
    }
    for resolved in order.flag_resolutions.iter().filter(|_| admin) {
        moments.push(Moment {
            flag: Some(resolved.flag),
            note: Some(resolved.note.clone()),
            by: Some(resolved.by.clone()),
            ..Moment::new(Happening::FlagResolved, resolved.at)
        });
    }
    // Stable: the history's own order holds for entries written at one instant.
    moments.sort_by_key(|m| m.at);
    moments
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{CaptureFailure, PaymentFacts, Shipment, ShipmentStatus, Transition};

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds)
    }

    fn shipped_order() -> Order {
        let mut order = crate::order::tests::order_totalling(2500);
        order.status = Status::PartiallyShipped;
        order.history = [(Status::Pending, 0), (Status::Reserved, 1), (Status::Authorized, 2), (Status::Confirmed, 2)]
            .into_iter()
            .chain([(Status::PartiallyShipped, 11)])
            .map(|(status, s)| Transition { status, at: at(s) })
            .collect();
        let id = ShipmentId::new();
        order.shipments = vec![Shipment {
            id,
            warehouse: Some("east".into()),
            status: ShipmentStatus::Dispatched,
            lines: vec![],
            carrier: Some("ups".into()),
            tracking_number: Some("1Z".into()),
            tracking_url: None,
            dispatched_at: Some(at(10)),
            delivered_at: None,
        }];
        let usd = Money::new(2500, kernel::Currency::USD).unwrap();
        order.payment = PaymentFacts {
            authorized: Some(usd),
            captured: Some(usd),
            captured_at: Some(at(12)),
            client_secret: None,
            ..Default::default()
        };
        order
    }

    #[test]
    fn the_timeline_merges_history_shipments_and_the_capture_oldest_first() {
        let order = shipped_order();

        let events: Vec<_> = timeline(&order, false).into_iter().map(|m| (m.event, m.at)).collect();

        assert_eq!(
            events,
            vec![
                (Happening::Placed, at(0)),
                (Happening::Reserved, at(1)),
                (Happening::Authorized, at(2)),
                (Happening::Confirmed, at(2)),
                (Happening::ShipmentDispatched, at(10)),
                (Happening::PartiallyShipped, at(11)),
                (Happening::Captured, at(12)),
            ]
        );
    }

    #[test]
    fn the_3d_secure_client_secret_is_shown_to_the_owner_only() {
        let mut order = shipped_order();
        order.status = Status::RequiresAction;
        order.payment.client_secret = Some("pi_1_secret_x".into());

        let customer = serde_json::to_value(OrderView::new(&order, false)).unwrap();
        let admin = serde_json::to_value(OrderView::new(&order, true)).unwrap();

        assert_eq!(customer["status"], "requires_action");
        assert_eq!(customer["payment"]["client_secret"], "pi_1_secret_x");
        assert!(admin["payment"].get("client_secret").is_none());
    }

    #[test]
    fn flags_and_a_refused_capture_are_shown_to_admins_only() {
        let mut order = shipped_order();
        order.flags = vec![Flag::CaptureFailed];
        order.capture_failure = Some(CaptureFailure { reason: "charge_expired_for_capture".into(), at: at(13) });

        let customer = serde_json::to_value(OrderView::new(&order, false)).unwrap();
        let admin = serde_json::to_value(OrderView::new(&order, true)).unwrap();

        assert!(customer.get("flags").is_none() && customer.get("capture_failure").is_none());
        assert!(!customer["timeline"].as_array().unwrap().iter().any(|m| m["event"] == "capture_failed"));
        assert_eq!(admin["flags"], serde_json::json!(["capture_failed"]));
        assert_eq!(admin["capture_failure"]["reason"], "charge_expired_for_capture");
        assert_eq!(admin["timeline"].as_array().unwrap().last().unwrap()["event"], "capture_failed");
        assert_eq!(customer["payment"]["captured"], serde_json::json!({ "amount": 2500, "currency": "USD" }));
        assert_eq!(customer["shipments"][0]["tracking_url"], serde_json::Value::Null);
        assert_eq!(customer["timeline"][4]["shipment_id"], customer["shipments"][0]["id"]);
    }

    #[test]
    fn a_refund_that_fails_after_it_was_paid_shows_both_moments_each_at_its_time() {
        let mut order = shipped_order();
        let paid = crate::returns::Refund {
            refund_id: kernel::RefundId::new(),
            stripe_refund_id: Some("re_1".into()),
            amount: Money::new(1000, kernel::Currency::USD).unwrap(),
            reason: domain_events::payment::RefundReason::RequestedByCustomer,
            return_id: None,
            at: at(20),
            status: RefundState::Succeeded,
            pending_at: None,
            failure_reason: None,
            failed_at: None,
        };
        let failed = crate::returns::Refund {
            at: at(30),
            status: RefundState::Failed,
            failure_reason: Some("declined".into()),
            ..paid.clone()
        };

        order.apply(&crate::order::SagaStep::RefundIssued(paid), at(20)).unwrap();
        order.apply(&crate::order::SagaStep::RefundFailed(failed), at(30)).unwrap();

        let events: Vec<_> = timeline(&order, false).into_iter().map(|m| (m.event, m.at)).skip(7).collect();
        assert_eq!(events, vec![(Happening::Refunded, at(20)), (Happening::RefundFailed, at(30))]);
        let view = serde_json::to_value(OrderView::new(&order, false)).unwrap();
        let listed = &view["payment"]["refunds"][0];
        assert_eq!(
            (&listed["status"], &listed["at"]),
            (&serde_json::json!("failed"), &serde_json::json!("1970-01-01T00:00:20Z"))
        );
        assert_eq!(listed["failed_at"], "1970-01-01T00:00:30Z");
    }

    #[test]
    fn a_refund_stripe_holds_pending_is_listed_pending_with_its_moment_and_keeps_it_once_paid() {
        let mut order = shipped_order();
        let paid = crate::returns::Refund {
            refund_id: kernel::RefundId::new(),
            stripe_refund_id: Some("re_1".into()),
            amount: Money::new(600, kernel::Currency::USD).unwrap(),
            reason: domain_events::payment::RefundReason::RequestedByCustomer,
            return_id: None,
            at: at(30),
            status: RefundState::Succeeded,
            pending_at: None,
            failure_reason: None,
            failed_at: None,
        };
        let pending = crate::returns::Refund {
            at: at(20),
            status: RefundState::Pending,
            pending_at: Some(at(20)),
            ..paid.clone()
        };

        order.apply(&crate::order::SagaStep::RefundPending(pending), at(20)).unwrap();
        let view = serde_json::to_value(OrderView::new(&order, false)).unwrap();
        order.apply(&crate::order::SagaStep::RefundIssued(paid), at(30)).unwrap();
        let events: Vec<_> = timeline(&order, false).into_iter().map(|m| (m.event, m.at)).skip(7).collect();

        let listed = &view["payment"]["refunds"][0];
        assert_eq!(
            (&listed["status"], &listed["stripe_refund_id"]),
            (&serde_json::json!("pending"), &serde_json::json!("re_1"))
        );
        assert_eq!(view["payment"]["refunded"], serde_json::json!({ "amount": 0, "currency": "USD" }));
        assert_eq!(view["timeline"].as_array().unwrap().last().unwrap()["event"], "refund_pending");
        assert_eq!(events, vec![(Happening::RefundPending, at(20)), (Happening::Refunded, at(30))]);
    }
}
