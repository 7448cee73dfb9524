//! Returns: units of a delivered order the customer sends back, and what they pay back.
//!
//! ```text
//! requested ──admin receive {warehouse}──▶ received ──RefundIssued{return_id}──▶ refunded
//!     │                                       (ReturnReceived: inventory restocks,
//!     └──admin reject {note}──▶ rejected        payment refunds `refund`)
//! ```
//!
//! A return lives on its order (like the shipments): whether a request fits what was delivered
//! and not yet returned is decided on the order item under its version condition, so two
//! requests racing for the same units cannot both pass. The store keeps a copy of each return as
//! an item of its own for the admin listing.
//!
//! ## What a return pays back
//!
//! Shipping is never refunded by a return (the parcel travelled either way; an admin can refund
//! it with `POST /admin/orders/{id}/refunds`). What returning every unit pays back, the
//! *returnable amount*, is what was captured less the shipping and its share of the tax:
//!
//! `returnable = min(captured, total − shipping − round_half_up(tax × shipping / (merchandise + shipping)))`
//!
//! where `merchandise = subtotal − discount`. Without tax or cash rounding that is exactly the
//! merchandise total; with tax, the merchandise and its tax (and the cash rounding of the total).
//! The returnable amount is split over the order lines by [`crate::pricing::split`] in proportion
//! to each line's amount after its share of the discounts (largest remainders, so the line
//! amounts add up to it exactly). Within a line, the first `n` units returned are worth
//! `floor(line amount × n / quantity)`, and a return pays the difference between that value
//! after it and before it (counting the units of the returns received earlier). So any split of
//! a line into returns pays back exactly the line amount once every unit is back, and never more:
//! the refunds of an order never add up to more than what was captured.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use domain_events::Event;
use domain_events::checkout::{ReturnLine, ReturnReceived};
use domain_events::payment::{DisputeOutcome, RefundReason};
use kernel::{FieldError, Money, RefundId, ReturnId, Sku, Warehouse};

use crate::order::{Flag, Order, ShipmentStatus, Status};
use crate::pricing::{Totals, split};

/// Most lines one return may name (an order has at most as many SKUs as its cart).
pub const MAX_LINES: usize = 50;
/// Most returns an order may have, rejected ones included: every return is kept on the order
/// item, which DynamoDB caps at 400 KB.
pub const MAX_RETURNS: usize = 20;
/// The longest note an admin may give with a rejection.
pub const MAX_NOTE_CHARS: usize = 500;

/// Where a return is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnStatus {
    /// The customer asked; the parcel is on its way.
    Requested,
    /// The warehouse accepted the units: back on hand, the refund asked of payment.
    Received,
    /// Payment refunded it.
    Refunded,
    /// The warehouse refused it (never arrived, not what was sold...): its units may be asked for again.
    Rejected,
}

impl ReturnStatus {
    pub const ALL: [Self; 4] = [Self::Requested, Self::Received, Self::Refunded, Self::Rejected];

    pub fn parse(raw: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_owned())).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Received => "received",
            Self::Refunded => "refunded",
            Self::Rejected => "rejected",
        }
    }

    /// The warehouse took the units back.
    pub fn is_back(self) -> bool {
        matches!(self, Self::Received | Self::Refunded)
    }
}

/// Why the customer sends units back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnReason {
    Damaged,
    Defective,
    WrongItem,
    NotAsDescribed,
    NoLongerNeeded,
    Other,
}

impl ReturnReason {
    const ALL: &'static str = "damaged, defective, wrong_item, not_as_described, no_longer_needed or other";
}

/// A return of some units of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Return {
    pub id: ReturnId,
    pub status: ReturnStatus,
    pub lines: Vec<ReturnLine>,
    pub reason: ReturnReason,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    /// Where the units went back on hand, once received.
    #[serde(default)]
    pub warehouse: Option<Warehouse>,
    /// What the return pays back, decided when it is received.
    #[serde(default)]
    pub refund: Option<Money>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub received_at: Option<OffsetDateTime>,
    /// The refund that paid it back, once payment says so.
    #[serde(default)]
    pub refund_id: Option<RefundId>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub refunded_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub rejected_at: Option<OffsetDateTime>,
    /// The admin's note with a rejection.
    #[serde(default)]
    pub note: Option<String>,
    /// The `Idempotency-Key` the request came with: a retry with it answers this return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_key: Option<String>,
}

/// One line of `POST /orders/{id}/returns`.
#[derive(Debug, Clone, Deserialize)]
pub struct LineInput {
    pub sku: String,
    pub quantity: i64,
}

/// The body of `POST /orders/{id}/returns`.
#[derive(Debug, Clone, Deserialize)]
pub struct ReturnInput {
    pub lines: Vec<LineInput>,
    pub reason: String,
}

/// A return request that passed every check that needs no order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnRequest {
    pub lines: Vec<ReturnLine>,
    pub reason: ReturnReason,
}

impl ReturnInput {
    /// Checks every field at once.
    pub fn parse(self) -> Result<ReturnRequest, Vec<FieldError>> {
        let mut errors = Vec::new();
        let reason = ReturnReason::deserialize(serde_json::Value::String(self.reason.clone())).ok();
        if reason.is_none() {
            errors.push(FieldError::new("/reason", format!("must be one of {}", ReturnReason::ALL)));
        }
        if self.lines.is_empty() || self.lines.len() > MAX_LINES {
            errors.push(FieldError::new("/lines", format!("must name 1 to {MAX_LINES} lines")));
        }
        let mut lines: Vec<ReturnLine> = Vec::new();
        for (i, line) in self.lines.iter().enumerate() {
            match Sku::parse(&line.sku) {
                Ok(sku) if lines.iter().any(|l| l.sku == sku) => {
                    errors.push(FieldError::new(format!("/lines/{i}/sku"), format!("{sku} is listed twice")));
                }
                Ok(sku) => match u32::try_from(line.quantity).ok().filter(|q| (1..=10_000).contains(q)) {
                    Some(quantity) => lines.push(ReturnLine { sku, quantity }),
                    None => errors.push(FieldError::new(format!("/lines/{i}/quantity"), "must be from 1 to 10000")),
                },
                Err(e) => errors.push(FieldError::new(format!("/lines/{i}/sku"), e.to_string())),
            }
        }
        match reason {
            Some(reason) if errors.is_empty() => Ok(ReturnRequest { lines, reason }),
            _ => Err(errors),
        }
    }
}

/// Why a return request or an admin's decision on a return was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReturnRefused {
    /// The lines do not fit what was delivered, or the window closed; each error names its line.
    #[error("the return does not fit the order")]
    Invalid(Vec<FieldError>),
    #[error("the order has no return {0}")]
    NotFound(ReturnId),
    /// The return (or the order) is in a state that cannot take this.
    #[error("{0}")]
    Conflict(String),
    /// The request's `Idempotency-Key` already asked for another return.
    #[error("the Idempotency-Key already asked for a different return")]
    KeyReused,
}

/// The order's returns as a whole, for `GET /orders/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnState {
    /// Some units, not all, were taken back.
    PartiallyReturned,
    /// Every unit ordered was taken back.
    Returned,
}

/// A refund of the order, as payment announced it: on its way (`RefundPending`), paid
/// (`RefundIssued`) or not (`RefundFailed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub refund_id: RefundId,
    /// Stripe's refund id (`re_…`), when Stripe made it. Orders saved before it have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_refund_id: Option<String>,
    pub amount: Money,
    pub reason: RefundReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_id: Option<ReturnId>,
    /// When it was paid back (`succeeded`), when Stripe took it `pending`, or when it failed
    /// (`failed` and never paid).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `pending` (Stripe holds it: not paid back yet), `succeeded`, or `failed` (with
    /// `failure_reason`): nothing was paid back.
    #[serde(default)]
    pub status: RefundState,
    /// When Stripe took it `pending`, for one it held pending (`RefundPending`), whatever it
    /// became since.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub pending_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// When a refund paid back (`at`) was failed by Stripe afterwards (`RefundFailed` after its
    /// `RefundIssued`); `None` for one never paid, whose `at` is its failure. Orders saved before
    /// it have none.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub failed_at: Option<OffsetDateTime>,
}

/// Where a refund is at Stripe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// Stripe holds it `pending` (the card network or bank has not paid it back yet).
    Pending,
    #[default]
    Succeeded,
    Failed,
}

/// A dispute (chargeback) on the order's payment. Kept in storage, shown to admins only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    pub dispute_id: String,
    pub amount: Money,
    pub reason: String,
    /// When it opened (or, heard of only by its closing, when it closed).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// How it ended, once payment announced it closed (`PaymentDisputeClosed`); absent while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<DisputeOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
}

/// A dispute closed, as payment announced it (`PaymentDisputeClosed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeClosing {
    pub dispute_id: String,
    pub amount: Money,
    pub reason: String,
    pub outcome: DisputeOutcome,
    pub at: OffsetDateTime,
}

/// `a × numerator / denominator` rounded half up (`floor` with `half_up` false), in i128.
fn scale(a: i64, numerator: i64, denominator: i64, half_up: bool) -> i64 {
    if denominator <= 0 {
        return 0;
    }
    let bump = if half_up { i128::from(denominator) / 2 } else { 0 };
    let scaled = (i128::from(a) * i128::from(numerator) + bump) / i128::from(denominator);
    i64::try_from(scaled).unwrap_or(0)
}

/// What returning every unit pays back (see the module docs), in minor units.
pub fn returnable(totals: &Totals, captured: i64) -> i64 {
    let merchandise = totals.subtotal.amount() - totals.discount.amount();
    let shipping = totals.shipping.amount();
    let shipping_tax = scale(totals.tax.amount(), shipping, merchandise + shipping, true);
    (totals.total.amount() - shipping - shipping_tax).clamp(0, captured.max(0))
}

impl Order {
    /// Each order line's part of the returnable amount, in the order of the lines.
    fn line_amounts(&self, captured: i64) -> Vec<i64> {
        let net: Vec<i64> =
            self.lines.iter().map(|l| (l.line_total.amount() - l.discount.map_or(0, |d| d.amount())).max(0)).collect();
        // Lines that all cost nothing after discounts share what is left (cash rounding) by units.
        let weights =
            if net.iter().all(|n| *n == 0) { self.lines.iter().map(|l| i64::from(l.quantity)).collect() } else { net };
        split(returnable(&self.totals, captured), &weights, |_| true)
    }

    /// Units of `sku` in returns that are not rejected (`back_only`: received or refunded).
    fn returned(&self, sku: &Sku, back_only: bool) -> u32 {
        self.returns
            .iter()
            .filter(|r| if back_only { r.status.is_back() } else { r.status != ReturnStatus::Rejected })
            .flat_map(|r| &r.lines)
            .filter(|l| &l.sku == sku)
            .map(|l| l.quantity)
            .sum()
    }

    /// What `lines` pay back if received now, after the returns received before (module docs).
    pub fn refund_for(&self, lines: &[ReturnLine], captured: Money) -> Money {
        let amounts = self.line_amounts(captured.amount());
        let mut refund = 0_i64;
        for line in lines {
            let Some(i) = self.lines.iter().position(|l| l.sku == line.sku) else { continue };
            let (amount, quantity) = (amounts[i], i64::from(self.lines[i].quantity));
            let before = i64::from(self.returned(&line.sku, true)).min(quantity);
            let after = (before + i64::from(line.quantity)).min(quantity);
            refund += scale(amount, after, quantity, false) - scale(amount, before, quantity, false);
        }
        Money::new(refund, captured.currency()).unwrap_or(Money::zero(captured.currency()))
    }

    /// Delivered units of `sku` and the last delivery of a shipment that carried it.
    fn delivered(&self, sku: &Sku) -> (u32, Option<OffsetDateTime>) {
        let delivered = self.shipments.iter().filter(|s| s.status == ShipmentStatus::Delivered);
        delivered.fold((0, None), |(units, last), shipment| {
            let here: u32 = shipment.lines.iter().filter(|l| &l.sku == sku).map(|l| l.quantity).sum();
            if here == 0 { (units, last) } else { (units + here, last.max(shipment.delivered_at)) }
        })
    }

    /// `POST /orders/{id}/returns`: records a `requested` return of delivered units, within
    /// `window` of the last delivery of each line's SKU, and no more units of a SKU than were
    /// delivered less those in returns not rejected.
    ///
    /// `key` is the request's `Idempotency-Key`: a request that already asked for a return
    /// changes nothing: the same lines and reason find that return (the caller answers it), other
    /// ones are refused (`KeyReused`).
    pub fn request_return(
        &mut self,
        id: ReturnId,
        request: ReturnRequest,
        key: &str,
        window: Duration,
        now: OffsetDateTime,
    ) -> Result<(), ReturnRefused> {
        if let Some(earlier) = self.return_requested_with(key) {
            return if earlier.lines == request.lines && earlier.reason == request.reason {
                Ok(())
            } else {
                Err(ReturnRefused::KeyReused)
            };
        }
        if self.status == Status::Cancelled {
            return Err(ReturnRefused::Conflict("the order was cancelled: there is nothing to return".into()));
        }
        if self.returns.len() >= MAX_RETURNS {
            return Err(ReturnRefused::Conflict(format!(
                "the order has {MAX_RETURNS} returns already; ask the shop's support for more"
            )));
        }
        let mut errors = Vec::new();
        for (i, line) in request.lines.iter().enumerate() {
            let sku = &line.sku;
            if !self.lines.iter().any(|l| &l.sku == sku) {
                errors.push(FieldError::new(format!("/lines/{i}/sku"), format!("{sku} is not in this order")));
                continue;
            }
            let (delivered, last) = self.delivered(sku);
            let Some(last) = last else {
                let detail = format!("no unit of {sku} has been delivered yet");
                errors.push(FieldError::new(format!("/lines/{i}/quantity"), detail));
                continue;
            };
            if now > last + window {
                let closed = (last + window).format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
                let days = window.whole_days();
                let detail = format!("the return window for {sku} closed at {closed} ({days} days after its delivery)");
                errors.push(FieldError::new(format!("/lines/{i}"), detail));
                continue;
            }
            let taken = self.returned(sku, false);
            let left = delivered.saturating_sub(taken);
            if line.quantity > left {
                let detail = format!(
                    "at most {left} of {sku} can be returned: {delivered} delivered, {taken} in earlier returns"
                );
                errors.push(FieldError::new(format!("/lines/{i}/quantity"), detail));
            }
        }
        if !errors.is_empty() {
            return Err(ReturnRefused::Invalid(errors));
        }
        self.returns.push(Return {
            id,
            status: ReturnStatus::Requested,
            lines: request.lines,
            reason: request.reason,
            requested_at: now,
            warehouse: None,
            refund: None,
            received_at: None,
            refund_id: None,
            refunded_at: None,
            rejected_at: None,
            note: None,
            request_key: Some(key.to_owned()),
        });
        self.touch(now);
        Ok(())
    }

    /// The return a request with this `Idempotency-Key` asked for, if one did.
    pub fn return_requested_with(&self, key: &str) -> Option<&Return> {
        self.returns.iter().find(|earlier| earlier.request_key.as_deref() == Some(key))
    }

    fn touch(&mut self, now: OffsetDateTime) {
        self.version += 1;
        self.updated_at = now;
    }

    fn return_index(&self, id: ReturnId) -> Result<usize, ReturnRefused> {
        self.returns.iter().position(|r| r.id == id).ok_or(ReturnRefused::NotFound(id))
    }

    pub fn find_return(&self, id: ReturnId) -> Option<&Return> {
        self.returns.iter().find(|r| r.id == id)
    }

    /// `POST /admin/returns/{id}/receive`: the units are back in `warehouse`. Decides the refund
    /// and announces `ReturnReceived` once; `Ok(None)`: it was received there already (the
    /// same answer, no second event). Another warehouse, or a rejected return, is a conflict.
    pub fn receive_return(
        &mut self,
        id: ReturnId,
        warehouse: Warehouse,
        now: OffsetDateTime,
    ) -> Result<Option<Event>, ReturnRefused> {
        let i = self.return_index(id)?;
        let found = &self.returns[i];
        match found.status {
            ReturnStatus::Requested => {}
            ReturnStatus::Received | ReturnStatus::Refunded if found.warehouse.as_ref() == Some(&warehouse) => {
                return Ok(None);
            }
            status => {
                let was = match &found.warehouse {
                    Some(w) => format!("{} in {w}", status.as_str()),
                    None => status.as_str().to_owned(),
                };
                return Err(ReturnRefused::Conflict(format!(
                    "return {id} is {was}; it cannot be received in {warehouse}"
                )));
            }
        }
        let captured = match self.payment.captured {
            Some(captured) => captured,
            // Stripe refused the capture: nothing was collected, so there is nothing to pay back.
            // (The refusal on record, not the flag: an admin may have resolved the flag since.)
            None if self.capture_failure.is_some() => Money::zero(self.totals.total.currency()),
            None => {
                return Err(ReturnRefused::Conflict(
                    "the order's capture is not recorded yet, so its refund cannot be decided; try again shortly"
                        .into(),
                ));
            }
        };
        let lines = found.lines.clone();
        let refund = self.refund_for(&lines, captured);
        let order_id = self.order_id;
        let slot = &mut self.returns[i];
        slot.status = ReturnStatus::Received;
        slot.warehouse = Some(warehouse.clone());
        slot.refund = Some(refund);
        slot.received_at = Some(now);
        self.touch(now);
        Ok(Some(Event::ReturnReceived(ReturnReceived { order_id, return_id: id, warehouse, lines, refund })))
    }

    /// `POST /admin/returns/{id}/reject`. `Ok(false)`: rejected already (answered as it is).
    pub fn reject_return(&mut self, id: ReturnId, note: String, now: OffsetDateTime) -> Result<bool, ReturnRefused> {
        let i = self.return_index(id)?;
        match self.returns[i].status {
            ReturnStatus::Requested => {}
            ReturnStatus::Rejected => return Ok(false),
            status => {
                let status = status.as_str();
                return Err(ReturnRefused::Conflict(format!("return {id} is {status}: its units are back on hand")));
            }
        }
        let slot = &mut self.returns[i];
        slot.status = ReturnStatus::Rejected;
        slot.note = Some(note);
        slot.rejected_at = Some(now);
        self.touch(now);
        Ok(true)
    }

    /// The sum of the refunds that paid money back, whatever order they came in.
    fn sum_refunded(&mut self, currency: kernel::Currency) {
        let paid = self.payment.refunds.iter().filter(|r| r.status == RefundState::Succeeded);
        let sum = paid.map(|r| r.amount.amount()).sum();
        self.payment.refunded = Money::new(sum, currency).ok();
    }

    /// Records a refund that did not pay the money back. `false`: known as failed already. One
    /// heard of as paid no longer counts (it keeps `at`, when it was paid, and gains `failed_at`),
    /// and a return it paid is `received` again: payment announces `RefundFailed` after a
    /// `RefundIssued` of the same refund when Stripe fails a refund after saying it succeeded.
    pub(crate) fn record_refund_failure(&mut self, failed: &Refund) -> bool {
        match self.payment.refunds.iter_mut().find(|r| r.refund_id == failed.refund_id) {
            Some(known) if known.status == RefundState::Failed => return false,
            // Never paid: it failed at `at`, keeping when it went pending.
            Some(known) if known.status == RefundState::Pending => {
                let (pending_at, made_as) = (known.pending_at, known.stripe_refund_id.take());
                let stripe_refund_id = failed.stripe_refund_id.clone().or(made_as);
                *known = Refund { pending_at, stripe_refund_id, ..failed.clone() };
            }
            Some(known) => {
                known.status = RefundState::Failed;
                known.failure_reason.clone_from(&failed.failure_reason);
                known.failed_at = Some(failed.at);
            }
            None => self.payment.refunds.push(failed.clone()),
        }
        self.sum_refunded(failed.amount.currency());
        let paid = self.returns.iter_mut().find(|r| r.refund_id == Some(failed.refund_id));
        if let Some(slot) = paid.filter(|slot| slot.status == ReturnStatus::Refunded) {
            slot.status = ReturnStatus::Received;
            slot.refund_id = None;
            slot.refunded_at = None;
        }
        true
    }

    /// Records a refund Stripe holds pending: listed `pending`, counted in nothing paid back.
    /// `false`: known pending already. One heard of as ended (its `RefundIssued` or
    /// `RefundFailed` overtook this event) stays as it ended, only gaining `pending_at`, so the
    /// order is the same whichever event came first.
    pub(crate) fn record_refund_pending(&mut self, pending: &Refund) -> bool {
        match self.payment.refunds.iter_mut().find(|r| r.refund_id == pending.refund_id) {
            Some(known) if known.pending_at.is_some() => false,
            Some(known) => {
                known.pending_at = pending.pending_at;
                if known.stripe_refund_id.is_none() {
                    known.stripe_refund_id.clone_from(&pending.stripe_refund_id);
                }
                true
            }
            None => {
                self.payment.refunds.push(pending.clone());
                self.sum_refunded(pending.amount.currency());
                true
            }
        }
    }

    /// Records a refund payment made. `false`: known already (and not pending). One listed
    /// `pending` is replaced as `succeeded`, keeping when it went pending. A return it pays
    /// becomes `refunded` (it is `received`: payment refunds a return only on `ReturnReceived`).
    pub(crate) fn record_refund(&mut self, refund: &Refund) -> bool {
        match self.payment.refunds.iter_mut().find(|r| r.refund_id == refund.refund_id) {
            Some(known) if known.status == RefundState::Pending => {
                let pending_at = known.pending_at;
                *known = Refund { pending_at, ..refund.clone() };
            }
            Some(_) => return false,
            None => self.payment.refunds.push(refund.clone()),
        }
        self.sum_refunded(refund.amount.currency());
        if let Some(slot) = refund.return_id.and_then(|id| self.returns.iter_mut().find(|r| r.id == id)) {
            if slot.status == ReturnStatus::Received {
                slot.status = ReturnStatus::Refunded;
                slot.refund_id = Some(refund.refund_id);
                slot.refunded_at = Some(refund.at);
            } else {
                tracing::warn!(order_id = %self.order_id, return_id = %slot.id, status = slot.status.as_str(),
                    "a refund for a return that is not received");
            }
        }
        true
    }

    /// Records a dispute and flags the order. `false`: known already.
    pub(crate) fn record_dispute(&mut self, dispute: &Dispute) -> bool {
        if self.disputes.iter().any(|d| d.dispute_id == dispute.dispute_id) {
            return false;
        }
        self.disputes.push(dispute.clone());
        self.flag(Flag::Disputed);
        true
    }

    /// Records a dispute's outcome. `false`: known already (a dispute closes once). A dispute
    /// heard of only by its closing (Stripe does not order its webhooks) is recorded with it.
    ///
    /// Lost: the money is gone, so `disputed` is raised (again, if an admin resolved it while the
    /// dispute was open) and stays until an admin resolves it. Won, or an inquiry that closed:
    /// `disputed` clears itself once every dispute of the order is closed and none was lost (a
    /// lost one keeps it for an admin, even one whose flag an admin resolved before).
    pub(crate) fn close_dispute(&mut self, closing: &DisputeClosing) -> bool {
        match self.disputes.iter_mut().find(|d| d.dispute_id == closing.dispute_id) {
            Some(known) if known.outcome.is_some() => return false,
            Some(known) => {
                known.outcome = Some(closing.outcome);
                known.closed_at = Some(closing.at);
            }
            None => self.disputes.push(Dispute {
                dispute_id: closing.dispute_id.clone(),
                amount: closing.amount,
                reason: closing.reason.clone(),
                at: closing.at,
                outcome: Some(closing.outcome),
                closed_at: Some(closing.at),
            }),
        }
        if !closing.outcome.for_the_shop() {
            self.flag(Flag::Disputed);
        } else if self.disputes.iter().all(|d| d.outcome.is_some_and(DisputeOutcome::for_the_shop)) {
            self.flags.retain(|f| *f != Flag::Disputed);
        }
        true
    }

    /// Whether some or all ordered units were taken back.
    pub fn return_state(&self) -> Option<ReturnState> {
        let ordered: u32 = self.lines.iter().map(|l| l.quantity).sum();
        let back: u32 = self.lines.iter().map(|l| self.returned(&l.sku, true).min(l.quantity)).sum();
        match back {
            0 => None,
            n if n >= ordered => Some(ReturnState::Returned),
            _ => Some(ReturnState::PartiallyReturned),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use domain_events::queries::{Offer, PricedLine};
    use kernel::{Currency, ProductId, ShipmentId};

    use super::*;

    /// A new request's `Idempotency-Key`.
    fn fresh_key() -> String {
        ReturnId::new().to_string()
    }
    use crate::order::{OrderLine, SagaStep, Shipment, ShipmentLine};
    use crate::pricing::{PricingConfig, Promotion, Rule, ShippingMethod, priced};

    fn at(days: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(days)
    }

    fn usd(amount: i64) -> Money {
        Money::new(amount, Currency::USD).unwrap()
    }

    fn sku(raw: &str) -> Sku {
        Sku::parse(raw).unwrap()
    }

    /// An order priced by `config` from `(sku, category, unit price, quantity)`, captured in
    /// full and delivered in one shipment on day 1.
    fn delivered_order(config: &PricingConfig, lines: &[(&str, &str, i64, u32)], country: &str) -> Order {
        let priced_lines: Vec<PricedLine> = lines
            .iter()
            .map(|(s, category, price, quantity)| PricedLine {
                sku: sku(s),
                quantity: *quantity,
                offer: Some(Offer {
                    product_id: ProductId::new(),
                    title: (*s).into(),
                    category: (*category).into(),
                    unit_price: usd(*price),
                }),
            })
            .collect();
        let (totals, discounts) = priced(config, &priced_lines, "standard", country, None).unwrap();
        let mut order = crate::order::tests::order_totalling(0);
        order.status = Status::Delivered;
        order.lines = lines
            .iter()
            .zip(discounts)
            .map(|((s, _, price, quantity), discount)| OrderLine {
                sku: sku(s),
                title: (*s).into(),
                quantity: *quantity,
                unit_price: usd(*price),
                line_total: usd(price * i64::from(*quantity)),
                discount: Some(discount),
            })
            .collect();
        order.payment.captured = Some(totals.total);
        order.totals = totals;
        order.shipments = vec![Shipment {
            id: ShipmentId::new(),
            warehouse: Some("main".into()),
            status: ShipmentStatus::Delivered,
            lines: lines.iter().map(|(s, _, _, quantity)| ShipmentLine { sku: sku(s), quantity: *quantity }).collect(),
            carrier: None,
            tracking_number: None,
            tracking_url: None,
            dispatched_at: Some(at(0)),
            delivered_at: Some(at(1)),
        }];
        order
    }

    fn config(tax_bps: u32, promotions: Vec<Promotion>, rounding: Option<i64>) -> PricingConfig {
        PricingConfig {
            shipping_methods: vec![ShippingMethod {
                id: "standard".into(),
                name: "Standard".into(),
                rates: BTreeMap::from([("USD".to_owned(), 500)]),
                free_over: BTreeMap::from([("USD".to_owned(), 5000)]),
            }],
            tax_rates_bps: BTreeMap::from([("DE".to_owned(), tax_bps)]),
            promotions,
            total_rounding: rounding.map(|r| BTreeMap::from([("USD".to_owned(), r)])).unwrap_or_default(),
            minimum_total: BTreeMap::new(),
        }
    }

    fn percent_off(category: &str, percent: u32) -> Promotion {
        Promotion {
            code: None,
            description: format!("{percent}% off {category}"),
            rule: Rule::PercentOffCategory { category: category.into(), percent },
            max_redemptions: None,
        }
    }

    fn amount_off(threshold: i64, amount_off: i64) -> Promotion {
        Promotion {
            code: None,
            description: format!("{amount_off} off over {threshold}"),
            rule: Rule::AmountOffOver { currency: "USD".into(), threshold, amount_off },
            max_redemptions: None,
        }
    }

    fn request(lines: &[(&str, u32)]) -> ReturnRequest {
        ReturnRequest {
            lines: lines.iter().map(|(s, quantity)| ReturnLine { sku: sku(s), quantity: *quantity }).collect(),
            reason: ReturnReason::NoLongerNeeded,
        }
    }

    fn main_warehouse() -> Warehouse {
        Warehouse::parse("main").unwrap()
    }

    /// Requests and receives a return of `lines`; its refund.
    fn return_and_receive(order: &mut Order, lines: &[(&str, u32)]) -> Money {
        let id = ReturnId::new();
        order.request_return(id, request(lines), &fresh_key(), Duration::days(30), at(2)).unwrap();
        match order.receive_return(id, main_warehouse(), at(3)).unwrap() {
            Some(Event::ReturnReceived(received)) => received.refund,
            other => panic!("expected ReturnReceived, got {other:?}"),
        }
    }

    /// xorshift64*: enough randomness for a property test, reproducible from its seed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
        }
    }

    #[test]
    fn returning_every_unit_in_any_split_refunds_exactly_the_returnable_amount_and_never_more_than_captured() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for case in 0..2_000 {
            let tax = [0, 700, 1900, 2100, 2500][rng.below(5) as usize];
            let mut promotions = Vec::new();
            if rng.below(2) == 0 {
                promotions.push(percent_off("a", 1 + rng.below(100) as u32));
            }
            if rng.below(2) == 0 {
                promotions.push(amount_off(rng.below(20_000) as i64, 1 + rng.below(3_000) as i64));
            }
            let rounding = [None, Some(10), Some(100)][rng.below(3) as usize];
            let config = config(tax, promotions, rounding);
            let skus = ["S-0", "S-1", "S-2", "S-3", "S-4"];
            let count = 1 + rng.below(5) as usize;
            let lines: Vec<(&str, &str, i64, u32)> = (0..count)
                .map(|i| {
                    let category = if rng.below(2) == 0 { "a" } else { "b" };
                    (skus[i], category, 1 + rng.below(20_000) as i64, 1 + rng.below(6) as u32)
                })
                .collect();
            let country = if tax == 0 { "US" } else { "DE" };
            let mut order = delivered_order(&config, &lines, country);
            let captured = order.totals.total.amount();
            let expected = returnable(&order.totals, captured);

            let mut left: Vec<u32> = lines.iter().map(|l| l.3).collect();
            let mut refunded = 0;
            while left.iter().any(|n| *n > 0) {
                let split: Vec<(&str, u32)> = left
                    .iter_mut()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .filter_map(|(i, n)| {
                        let take = rng.below(u64::from(*n) + 1) as u32;
                        *n -= take;
                        (take > 0).then_some((skus[i], take))
                    })
                    .collect();
                if split.is_empty() {
                    continue;
                }
                refunded += return_and_receive(&mut order, &split).amount();
                assert!(refunded <= captured, "case {case}: {refunded} refunded of {captured} captured");
            }

            assert_eq!(refunded, expected, "case {case}: every unit back pays back the returnable amount");
            let shipping = order.totals.shipping.amount();
            assert!(expected <= captured - shipping, "case {case}: shipping is not refunded");
            if tax == 0 && order.totals.rounding.is_none() {
                let merchandise = order.totals.subtotal.amount() - order.totals.discount.amount();
                assert_eq!(refunded, merchandise, "case {case}: without tax, exactly the merchandise total");
            }
            assert_eq!(order.return_state(), Some(ReturnState::Returned), "case {case}");
        }
    }

    #[test]
    fn a_returned_line_pays_back_its_own_discount_share_and_tax_not_the_shipping() {
        // 10 % off category `a` only; 19 % tax on merchandise and shipping (express-like 5.00,
        // not free under 50.00).
        let config = config(1900, vec![percent_off("a", 10)], None);
        let mut order = delivered_order(&config, &[("TEE", "a", 2000, 1), ("MUG", "b", 1000, 1)], "DE");
        // Merchandise 30.00 − 2.00 = 28.00, shipping 5.00, tax 19 % of 33.00 = 6.27: 39.27.
        assert_eq!(order.totals.total, usd(3927));

        let tee = return_and_receive(&mut order, &[("TEE", 1)]);
        let mug = return_and_receive(&mut order, &[("MUG", 1)]);

        // Shipping's tax: 6.27 × 5/33 = 0.95; returnable 39.27 − 5.00 − 0.95 = 33.32, split 18 : 10.
        assert_eq!(tee, usd(2142), "18.00 after its 10 % and its share of the tax");
        assert_eq!(mug, usd(1190));
        assert_eq!(tee.amount() + mug.amount(), 3332);
    }

    #[test]
    fn returning_more_than_was_delivered_counting_earlier_returns_names_the_line() {
        let mut order = delivered_order(&config(0, vec![], None), &[("TEE", "a", 2000, 3)], "US");
        order.request_return(ReturnId::new(), request(&[("TEE", 2)]), &fresh_key(), Duration::days(30), at(2)).unwrap();

        let refused =
            order.request_return(ReturnId::new(), request(&[("TEE", 2)]), &fresh_key(), Duration::days(30), at(2));

        let Err(ReturnRefused::Invalid(errors)) = refused else { panic!("{refused:?}") };
        assert_eq!(errors[0].pointer, "/lines/0/quantity");
        assert!(errors[0].detail.contains("at most 1"), "{}", errors[0].detail);
    }

    #[test]
    fn a_retry_with_its_idempotency_key_finds_its_return_and_another_request_with_it_is_refused() {
        let mut order = delivered_order(&config(0, vec![], None), &[("TEE", "a", 2000, 2)], "US");
        let first = ReturnId::new();
        order.request_return(first, request(&[("TEE", 1)]), "k1", Duration::days(30), at(2)).unwrap();

        let retried = order.request_return(ReturnId::new(), request(&[("TEE", 1)]), "k1", Duration::days(30), at(3));
        let other = order.request_return(ReturnId::new(), request(&[("TEE", 2)]), "k1", Duration::days(30), at(3));

        assert_eq!(retried, Ok(()));
        assert_eq!(order.returns.len(), 1, "the retry asked for nothing more");
        assert_eq!(order.return_requested_with("k1").map(|r| r.id), Some(first));
        assert_eq!(other, Err(ReturnRefused::KeyReused));
    }

    #[test]
    fn rejected_units_may_be_asked_for_again() {
        let mut order = delivered_order(&config(0, vec![], None), &[("TEE", "a", 2000, 1)], "US");
        let first = ReturnId::new();
        order.request_return(first, request(&[("TEE", 1)]), &fresh_key(), Duration::days(30), at(2)).unwrap();
        assert_eq!(order.reject_return(first, "never arrived".into(), at(3)), Ok(true));
        assert_eq!(order.reject_return(first, "again".into(), at(3)), Ok(false), "answered as it is");

        let again =
            order.request_return(ReturnId::new(), request(&[("TEE", 1)]), &fresh_key(), Duration::days(30), at(4));

        assert_eq!(again, Ok(()));
    }

    #[test]
    fn the_window_runs_from_the_delivery_and_a_unit_not_delivered_cannot_be_returned() {
        let mut order = delivered_order(&config(0, vec![], None), &[("TEE", "a", 2000, 1)], "US");
        let late =
            order.request_return(ReturnId::new(), request(&[("TEE", 1)]), &fresh_key(), Duration::days(30), at(32));
        let Err(ReturnRefused::Invalid(errors)) = late else { panic!("{late:?}") };
        assert_eq!(errors[0].pointer, "/lines/0");
        assert!(errors[0].detail.contains("window"), "{}", errors[0].detail);
        assert_eq!(
            order.request_return(ReturnId::new(), request(&[("TEE", 1)]), &fresh_key(), Duration::days(30), at(31)),
            Ok(())
        );

        let mut undelivered = delivered_order(&config(0, vec![], None), &[("TEE", "a", 2000, 1)], "US");
        undelivered.shipments[0].status = ShipmentStatus::Dispatched;
        let refused = undelivered.request_return(
            ReturnId::new(),
            request(&[("TEE", 1)]),
            &fresh_key(),
            Duration::days(30),
            at(2),
        );
        assert!(matches!(refused, Err(ReturnRefused::Invalid(_))), "{refused:?}");
        let foreign = undelivered.request_return(
            ReturnId::new(),
            request(&[("HAT", 1)]),
            &fresh_key(),
            Duration::days(30),
            at(2),
        );
        let Err(ReturnRefused::Invalid(errors)) = foreign else { panic!("{foreign:?}") };
        assert_eq!(errors[0].pointer, "/lines/0/sku");
    }

    #[test]
    fn a_return_is_received_once_in_one_warehouse_and_a_received_one_cannot_be_rejected() {
        let mut order = delivered_order(&config(0, vec![], None), &[("TEE", "a", 2000, 2)], "US");
        let id = ReturnId::new();
        order.request_return(id, request(&[("TEE", 1)]), &fresh_key(), Duration::days(30), at(2)).unwrap();
        assert!(matches!(order.receive_return(id, main_warehouse(), at(3)), Ok(Some(Event::ReturnReceived(_)))));
        let version = order.version;

        assert_eq!(order.receive_return(id, main_warehouse(), at(4)), Ok(None), "the same answer, no event");
        let elsewhere = order.receive_return(id, Warehouse::parse("east").unwrap(), at(4));
        assert!(matches!(elsewhere, Err(ReturnRefused::Conflict(_))), "{elsewhere:?}");
        assert!(matches!(order.reject_return(id, "x".into(), at(4)), Err(ReturnRefused::Conflict(_))));
        assert!(matches!(
            order.receive_return(ReturnId::new(), main_warehouse(), at(4)),
            Err(ReturnRefused::NotFound(_))
        ));
        assert_eq!(order.version, version, "nothing changed");
        assert_eq!(order.return_state(), Some(ReturnState::PartiallyReturned));
    }

    #[test]
    fn a_return_before_the_capture_is_recorded_waits_unless_the_capture_failed() {
        let mut order = delivered_order(&config(0, vec![], None), &[("TEE", "a", 2000, 1)], "US");
        order.payment.captured = None;
        let id = ReturnId::new();
        order.request_return(id, request(&[("TEE", 1)]), &fresh_key(), Duration::days(30), at(2)).unwrap();

        assert!(matches!(order.receive_return(id, main_warehouse(), at(3)), Err(ReturnRefused::Conflict(_))));
        order
            .apply(&SagaStep::PaymentCaptureFailed { reason: "charge_expired_for_capture".into(), at: at(3) }, at(3))
            .unwrap();
        assert!(order.resolve_flag(Flag::CaptureFailed, "root", "charged by bank transfer", at(3)));
        assert!(order.flags.is_empty(), "resolved: the refusal stays on record");
        let Ok(Some(Event::ReturnReceived(received))) = order.receive_return(id, main_warehouse(), at(3)) else {
            panic!("received")
        };
        assert_eq!(received.refund, usd(0), "nothing was collected");
    }

    fn refund(return_id: Option<ReturnId>, amount: i64, at_day: i64) -> Refund {
        Refund {
            refund_id: RefundId::new(),
            stripe_refund_id: Some("re_1".into()),
            amount: usd(amount),
            reason: RefundReason::RequestedByCustomer,
            return_id,
            at: at(at_day),
            status: RefundState::Succeeded,
            pending_at: None,
            failure_reason: None,
            failed_at: None,
        }
    }

    #[test]
    fn a_failed_refund_is_shown_failed_flags_the_order_and_leaves_its_return_received() {
        let mut order = delivered_order(&config(0, vec![], None), &[("TEE", "a", 2000, 2)], "US");
        let id = ReturnId::new();
        order.request_return(id, request(&[("TEE", 1)]), &fresh_key(), Duration::days(30), at(2)).unwrap();
        order.receive_return(id, main_warehouse(), at(3)).unwrap();
        let paid = refund(None, 500, 4);
        let failed = Refund {
            status: RefundState::Failed,
            failure_reason: Some("expired_or_canceled_card".into()),
            ..refund(Some(id), 2000, 5)
        };

        order.apply(&SagaStep::RefundIssued(paid), at(6)).unwrap();
        order.apply(&SagaStep::RefundFailed(failed.clone()), at(6)).unwrap();
        let again = order.apply(&SagaStep::RefundFailed(failed.clone()), at(7));

        assert_eq!(again, Ok(None), "a repeat changes nothing");
        assert_eq!(order.payment.refunded, Some(usd(500)), "only what was paid back");
        assert_eq!(order.payment.refunds[1].status, RefundState::Failed);
        assert_eq!(order.flags, vec![Flag::RefundFailed]);
        assert_eq!(order.find_return(id).unwrap().status, ReturnStatus::Received, "still owed");
    }

    #[test]
    fn a_refund_stripe_fails_after_paying_it_no_longer_counts_and_reopens_its_return() {
        let mut order = delivered_order(&config(0, vec![], None), &[("TEE", "a", 2000, 2)], "US");
        let id = ReturnId::new();
        order.request_return(id, request(&[("TEE", 1)]), &fresh_key(), Duration::days(30), at(2)).unwrap();
        order.receive_return(id, main_warehouse(), at(3)).unwrap();
        let paid = refund(Some(id), 2000, 4);
        let failed =
            Refund { at: at(6), status: RefundState::Failed, failure_reason: Some("declined".into()), ..paid.clone() };

        order.apply(&SagaStep::RefundIssued(paid), at(5)).unwrap();
        order.apply(&SagaStep::RefundFailed(failed), at(6)).unwrap();

        assert_eq!(order.payment.refunded, Some(usd(0)));
        assert_eq!(order.payment.refunds.len(), 1);
        assert_eq!((order.payment.refunds[0].at, order.payment.refunds[0].failed_at), (at(4), Some(at(6))));
        let mut saved_before = serde_json::to_value(&order.payment.refunds[0]).unwrap();
        saved_before.as_object_mut().unwrap().remove("failed_at");
        let read: Refund = serde_json::from_value(saved_before).unwrap();
        assert_eq!(read.failed_at, None, "an order saved before failed_at reads as it was");
        assert_eq!(order.find_return(id).unwrap().status, ReturnStatus::Received);
    }

    #[test]
    fn refunds_are_recorded_once_each_in_any_order_and_mark_their_return_refunded() {
        let mut base = delivered_order(&config(0, vec![], None), &[("TEE", "a", 2000, 2)], "US");
        let id = ReturnId::new();
        base.request_return(id, request(&[("TEE", 1)]), &fresh_key(), Duration::days(30), at(2)).unwrap();
        base.receive_return(id, main_warehouse(), at(3)).unwrap();
        let (for_return, by_admin) = (refund(Some(id), 2000, 4), refund(None, 500, 5));

        let mut one = base.clone();
        let mut other = base.clone();
        for step in [&for_return, &by_admin, &for_return] {
            one.apply(&SagaStep::RefundIssued(step.clone()), at(6)).unwrap();
        }
        for step in [&by_admin, &for_return, &by_admin] {
            other.apply(&SagaStep::RefundIssued(step.clone()), at(6)).unwrap();
        }

        assert_eq!(one.payment.refunded, Some(usd(2500)));
        assert_eq!(one.payment.refunds.len(), 2);
        let returned = one.find_return(id).unwrap();
        assert_eq!((returned.status, returned.refund_id), (ReturnStatus::Refunded, Some(for_return.refund_id)));
        assert_eq!(one.payment.refunded, other.payment.refunded);
        assert_eq!(one.returns, other.returns, "the same state whatever the order");
        assert_eq!(one.apply(&SagaStep::RefundIssued(for_return), at(7)), Ok(None), "a repeat changes nothing");
    }

    /// `refund` as Stripe held it pending on `day` (its `RefundPending`).
    fn held(refund: &Refund, day: i64) -> Refund {
        Refund { at: at(day), status: RefundState::Pending, pending_at: Some(at(day)), ..refund.clone() }
    }

    /// A delivered order of two tees, one returned and received.
    fn received_return() -> (Order, ReturnId) {
        let mut order = delivered_order(&config(0, vec![], None), &[("TEE", "a", 2000, 2)], "US");
        let id = ReturnId::new();
        order.request_return(id, request(&[("TEE", 1)]), &fresh_key(), Duration::days(30), at(2)).unwrap();
        order.receive_return(id, main_warehouse(), at(3)).unwrap();
        (order, id)
    }

    #[test]
    fn a_pending_refund_is_listed_pending_counts_nothing_and_is_replaced_by_how_it_ends() {
        let (mut paid_order, id) = received_return();
        let mut failed_order = paid_order.clone();
        let paid = refund(Some(id), 2000, 5);
        let failed =
            Refund { at: at(6), status: RefundState::Failed, failure_reason: Some("declined".into()), ..paid.clone() };

        paid_order.apply(&SagaStep::RefundPending(held(&paid, 4)), at(4)).unwrap();
        let again = paid_order.apply(&SagaStep::RefundPending(held(&paid, 4)), at(4));

        assert_eq!(again, Ok(None), "a repeat changes nothing");
        let listed = &paid_order.payment.refunds;
        assert_eq!((listed.len(), listed[0].status, listed[0].at), (1, RefundState::Pending, at(4)));
        assert_eq!(paid_order.payment.refunded, Some(usd(0)), "not paid back yet");
        assert_eq!(paid_order.find_return(id).unwrap().status, ReturnStatus::Received, "not refunded yet");

        paid_order.apply(&SagaStep::RefundIssued(paid.clone()), at(5)).unwrap();
        failed_order.apply(&SagaStep::RefundPending(held(&paid, 4)), at(4)).unwrap();
        failed_order.apply(&SagaStep::RefundFailed(failed), at(6)).unwrap();

        let succeeded = &paid_order.payment.refunds[0];
        assert_eq!(
            (succeeded.status, succeeded.at, succeeded.pending_at),
            (RefundState::Succeeded, at(5), Some(at(4)))
        );
        assert_eq!(paid_order.payment.refunded, Some(usd(2000)));
        assert_eq!(paid_order.find_return(id).unwrap().status, ReturnStatus::Refunded);
        let ended = &failed_order.payment.refunds[0];
        assert_eq!((ended.status, ended.at, ended.failed_at), (RefundState::Failed, at(6), None), "never paid");
        assert_eq!(failed_order.payment.refunded, Some(usd(0)));
        assert_eq!(failed_order.flags, vec![Flag::RefundFailed]);
    }

    #[test]
    fn a_pending_refund_heard_after_its_end_never_moves_it_back_and_the_order_ends_the_same_either_way() {
        let (base, id) = received_return();
        let paid = refund(Some(id), 2000, 5);
        let failed =
            Refund { at: at(6), status: RefundState::Failed, failure_reason: Some("declined".into()), ..paid.clone() };
        let pending = SagaStep::RefundPending(held(&paid, 4));

        for end in [SagaStep::RefundIssued(paid.clone()), SagaStep::RefundFailed(failed)] {
            let (mut in_order, mut late) = (base.clone(), base.clone());
            for step in [&pending, &end] {
                in_order.apply(step, at(7)).unwrap();
            }
            // EventBridge and SQS: the end first, the pending after, twice.
            for step in [&end, &pending, &pending] {
                late.apply(step, at(7)).unwrap();
            }

            assert_ne!(late.payment.refunds[0].status, RefundState::Pending, "never back to pending: {end:?}");
            assert_eq!(late.payment, in_order.payment, "the same refund whatever the order: {end:?}");
            assert_eq!((&late.returns, &late.flags), (&in_order.returns, &in_order.flags));
        }
    }

    fn opened(id: &str, day: i64) -> SagaStep {
        let (dispute_id, reason) = (id.into(), "fraudulent".into());
        SagaStep::PaymentDisputed(Dispute {
            dispute_id,
            amount: usd(2000),
            reason,
            at: at(day),
            outcome: None,
            closed_at: None,
        })
    }

    fn closed(id: &str, outcome: DisputeOutcome, day: i64) -> SagaStep {
        let (dispute_id, reason) = (id.into(), "fraudulent".into());
        SagaStep::PaymentDisputeClosed(DisputeClosing { dispute_id, amount: usd(2000), reason, outcome, at: at(day) })
    }

    fn disputed_order() -> Order {
        let mut order = delivered_order(&config(0, vec![], None), &[("TEE", "a", 2000, 1)], "US");
        order.apply(&opened("dp_1", 9), at(9)).unwrap();
        order
    }

    #[test]
    fn a_dispute_flags_the_order_once() {
        let mut order = disputed_order();

        assert_eq!(order.flags, vec![Flag::Disputed]);
        assert_eq!(order.apply(&opened("dp_1", 9), at(10)), Ok(None));
    }

    #[test]
    fn a_won_dispute_clears_the_flag_itself_and_is_recorded_once() {
        let mut order = disputed_order();

        order.apply(&closed("dp_1", DisputeOutcome::Won, 20), at(20)).unwrap();

        assert!(order.flags.is_empty());
        assert_eq!((order.disputes[0].outcome, order.disputes[0].closed_at), (Some(DisputeOutcome::Won), Some(at(20))));
        assert_eq!(order.apply(&closed("dp_1", DisputeOutcome::Lost, 21), at(21)), Ok(None), "closed once");
    }

    #[test]
    fn a_lost_dispute_keeps_the_flag_and_raises_it_again_if_an_admin_resolved_it_while_open() {
        let mut kept = disputed_order();
        let mut resolved = disputed_order();
        assert!(resolved.resolve_flag(Flag::Disputed, "root", "evidence sent to Stripe", at(10)));

        for order in [&mut kept, &mut resolved] {
            order.apply(&closed("dp_1", DisputeOutcome::Lost, 20), at(20)).unwrap();
        }

        assert_eq!(kept.flags, vec![Flag::Disputed]);
        assert_eq!(resolved.flags, vec![Flag::Disputed], "the money is gone: the shop must decide");
        assert!(resolved.resolve_flag(Flag::Disputed, "root", "written off", at(21)));
        assert!(resolved.flags.is_empty());
    }

    #[test]
    fn a_won_dispute_leaves_the_flag_while_another_is_open_or_was_lost() {
        let mut order = disputed_order();
        order.apply(&opened("dp_2", 10), at(10)).unwrap();

        order.apply(&closed("dp_1", DisputeOutcome::Won, 20), at(20)).unwrap();
        assert_eq!(order.flags, vec![Flag::Disputed], "dp_2 is still open");
        order.apply(&closed("dp_2", DisputeOutcome::WarningClosed, 21), at(21)).unwrap();
        assert!(order.flags.is_empty(), "both closed for the shop");

        let mut lost_first = disputed_order();
        lost_first.apply(&opened("dp_2", 10), at(10)).unwrap();
        lost_first.apply(&closed("dp_1", DisputeOutcome::Lost, 20), at(20)).unwrap();
        lost_first.apply(&closed("dp_2", DisputeOutcome::Won, 21), at(21)).unwrap();
        assert_eq!(lost_first.flags, vec![Flag::Disputed], "dp_1 was lost");
    }

    #[test]
    fn a_closing_heard_before_its_opening_records_the_dispute_and_the_late_opening_changes_nothing() {
        let mut won = delivered_order(&config(0, vec![], None), &[("TEE", "a", 2000, 1)], "US");
        let mut lost = won.clone();

        won.apply(&closed("dp_1", DisputeOutcome::Won, 20), at(20)).unwrap();
        lost.apply(&closed("dp_1", DisputeOutcome::Lost, 20), at(20)).unwrap();

        assert_eq!((won.disputes.len(), won.flags.len()), (1, 0));
        assert_eq!(lost.flags, vec![Flag::Disputed]);
        assert_eq!(won.apply(&opened("dp_1", 9), at(21)), Ok(None), "known already: not flagged again");
        assert!(won.flags.is_empty());
    }

    #[test]
    fn a_return_request_names_every_bad_field() {
        let input: ReturnInput = serde_json::from_value(serde_json::json!({
            "lines": [{ "sku": "TEE", "quantity": 0 }, { "sku": "bad sku!", "quantity": 1 }, { "sku": "TEE", "quantity": 1 }],
            "reason": "bored"
        }))
        .unwrap();

        let errors = input.parse().unwrap_err();

        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, vec!["/reason", "/lines/0/quantity", "/lines/1/sku"]);
    }
}
