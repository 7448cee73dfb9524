//! Orders: what a checkout request must contain, the order itself, and its state machine.
//!
//! ```text
//! pending ──StockReserved──▶ reserved ──PaymentAuthorized──▶ authorized ──▶ confirmed
//!    │                          │  ▲                                           │
//!    │       PaymentActionRequired│  │PaymentAuthorized (Stripe's webhook, after 3-D Secure)
//!    │                          ▼  │                                           │
//!    │                     requires_action ── PaymentFailed, timeout ──────────┤
//!    │                          │                                              │
//!    └──── StockRejected, PaymentFailed, timeout, reservation expiry, ─────────┤──▶ cancelled
//!          customer cancel (until checkout sees a shipment leave)              │
//!                                                                              ▼
//!            confirmed ──a shipment left──▶ partially_shipped ──all left──▶ shipped ──all delivered──▶ delivered
//! ```
//!
//! An order with nothing to pay (total zero, after a 100 % promotion) goes from `reserved`
//! straight to `confirmed`: payment never authorizes it.
//!
//! After the confirmation the order follows its shipments: fulfillment's events say what each
//! shipment did, and the order's status is what they add up to (`shipment_count` in every event
//! says how many there are, so "all left" is known even before every `ShipmentCreated` came).
//! Payment's capture is recorded beside them; a capture Stripe refused, and a shipment that left
//! after the order was cancelled, raise a [`Flag`] for an admin.
//!
//! Events may arrive late, twice, or out of order. [`Order::apply`] accepts a step that an
//! event implies even if the step before it has not been seen (a `PaymentAuthorized` proves the
//! stock was reserved, a `ShipmentDelivered` that the shipment was dispatched), ignores what it
//! has already applied, and refuses what cannot happen.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use domain_events::Event;
use domain_events::checkout::{OrderCancelled, OrderConfirmed, Shipping, ShippingAddress};
use domain_events::inventory::RejectionReason;
use kernel::{CartId, FieldError, Money, OrderId, ShipmentId, Sku};

use crate::pricing::Totals;
use crate::returns::{Dispute, DisputeClosing, Refund, Return};

/// ISO 3166-1 alpha-2 country codes.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR \
BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK \
FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO \
JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU \
MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC \
SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA \
VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// A shipping address as the API takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub name: String,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
}

/// The body of `POST /checkout`.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckoutInput {
    pub cart_id: String,
    pub email: String,
    pub shipping_address: Address,
    pub shipping_method: String,
    pub payment_method: String,
    #[serde(default)]
    pub promo_code: Option<String>,
}

/// A checkout request that passed every check that needs no I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    pub cart_id: CartId,
    pub email: String,
    pub address: Address,
    pub shipping_method: String,
    pub payment_method: String,
    pub promo_code: Option<String>,
}

fn text(errors: &mut Vec<FieldError>, pointer: &str, value: &str, max: usize, required: bool) {
    let length = value.trim().chars().count();
    if required && length == 0 {
        errors.push(FieldError::new(pointer, "must not be empty"));
    } else if length > max {
        errors.push(FieldError::new(pointer, format!("must be at most {max} characters")));
    }
}

impl CheckoutInput {
    /// Checks every field at once.
    pub fn parse(self) -> Result<CheckoutRequest, Vec<FieldError>> {
        let mut errors = Vec::new();
        let cart_id =
            self.cart_id.parse::<CartId>().map_err(|e| errors.push(FieldError::new("/cart_id", e.to_string()))).ok();
        let email = self.email.trim().to_owned();
        let email_ok = email.len() <= 254
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
            })
            && !email.chars().any(char::is_whitespace);
        if !email_ok {
            errors.push(FieldError::new("/email", "must be an email address like alice@example.com"));
        }
        let address = &self.shipping_address;
        text(&mut errors, "/shipping_address/name", &address.name, 100, true);
        text(&mut errors, "/shipping_address/line1", &address.line1, 200, true);
        text(&mut errors, "/shipping_address/line2", address.line2.as_deref().unwrap_or(""), 200, false);
        text(&mut errors, "/shipping_address/city", &address.city, 100, true);
        text(&mut errors, "/shipping_address/region", address.region.as_deref().unwrap_or(""), 100, false);
        text(&mut errors, "/shipping_address/postal_code", &address.postal_code, 20, true);
        let country_ok = address.country.len() == 2 && COUNTRIES.split_whitespace().any(|c| c == address.country);
        if !country_ok {
            errors.push(FieldError::new(
                "/shipping_address/country",
                format!("`{}` is not an ISO 3166-1 alpha-2 country code such as US or DE", address.country),
            ));
        }
        text(&mut errors, "/shipping_method", &self.shipping_method, 50, true);
        let payment_ok = self.payment_method.starts_with("pm_")
            && self.payment_method.len() <= 255
            && self.payment_method.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !payment_ok {
            errors.push(FieldError::new("/payment_method", "must be a Stripe payment method id (`pm_…`)"));
        }
        let promo_code = self.promo_code.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
        if let Some(code) = &promo_code
            && (code.len() > 50 || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            errors.push(FieldError::new("/promo_code", "must be letters, digits, `-` or `_`, at most 50"));
        }
        match (cart_id, errors.is_empty()) {
            (Some(cart_id), true) => Ok(CheckoutRequest {
                cart_id,
                email,
                address: Address {
                    name: address.name.trim().to_owned(),
                    line1: address.line1.trim().to_owned(),
                    line2: address.line2.as_ref().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()),
                    city: address.city.trim().to_owned(),
                    region: address.region.as_ref().map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()),
                    postal_code: address.postal_code.trim().to_owned(),
                    country: address.country.clone(),
                },
                shipping_method: self.shipping_method,
                payment_method: self.payment_method,
                promo_code,
            }),
            _ => Err(errors),
        }
    }
}

/// The contract's order status values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Reserved,
    /// The customer must pass 3-D Secure (`payment.client_secret` for Stripe.js); Stripe tells
    /// payment how it went.
    RequiresAction,
    Authorized,
    Confirmed,
    /// Some shipments left their warehouse, not all.
    PartiallyShipped,
    /// Every shipment left.
    Shipped,
    /// Every shipment reached the customer.
    Delivered,
    Cancelled,
}

impl Status {
    /// Whether the order may have shipments fulfillment could be dispatching: it creates them
    /// only for a confirmed order (`OrderConfirmed`), and once checkout has seen one leave the
    /// order is `partially_shipped` or further. Before confirmation there are none.
    pub fn may_have_shipments(self) -> bool {
        matches!(self, Self::Confirmed)
    }

    /// Every status, in the order an order goes through them.
    pub const ALL: [Self; 9] = [
        Self::Pending,
        Self::Reserved,
        Self::RequiresAction,
        Self::Authorized,
        Self::Confirmed,
        Self::PartiallyShipped,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
    ];

    pub fn parse(raw: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_owned())).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Reserved => "reserved",
            Self::RequiresAction => "requires_action",
            Self::Authorized => "authorized",
            Self::Confirmed => "confirmed",
            Self::PartiallyShipped => "partially_shipped",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }

    /// Waiting for the saga: the timeout applies.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Reserved | Self::RequiresAction | Self::Authorized)
    }

    /// Checkout has seen a shipment leave: the order can no longer be cancelled.
    pub fn has_shipped(self) -> bool {
        matches!(self, Self::PartiallyShipped | Self::Shipped | Self::Delivered)
    }
}

/// Where a shipment is, as far as checkout has heard. It only moves forward
/// (`pending` → `dispatched` → `delivered`); only a `pending` shipment can be `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentStatus {
    Pending,
    Dispatched,
    Delivered,
    Cancelled,
}

impl ShipmentStatus {
    /// The shipment left its warehouse.
    pub fn has_left(self) -> bool {
        matches!(self, Self::Dispatched | Self::Delivered)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentLine {
    pub sku: Sku,
    pub quantity: u32,
}

/// One shipment of the order: the units one warehouse sends. Built from fulfillment's events in
/// whatever order they come, so a fact not heard of yet is `null` (a shipment whose
/// `ShipmentCreated` is late has no lines; one delivered before its dispatch was heard of has no
/// carrier yet).
///
/// Kept on the order item, not a child item: the order's status is what all its shipments add
/// up to, so every shipment step reads and writes them with the order under its one version
/// condition anyway, and `GET /orders/{id}` stays one `GetItem`. A shipment is about 250 bytes
/// plus 30 per line, and an order has one per warehouse it draws from, so the item grows by well
/// under 1 KB for a usual order (DynamoDB bills writes per KB, and the item is rewritten whole
/// on every step either way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub id: ShipmentId,
    #[serde(default)]
    pub warehouse: Option<String>,
    pub status: ShipmentStatus,
    #[serde(default)]
    pub lines: Vec<ShipmentLine>,
    #[serde(default)]
    pub carrier: Option<String>,
    #[serde(default)]
    pub tracking_number: Option<String>,
    #[serde(default)]
    pub tracking_url: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub dispatched_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
}

impl Shipment {
    fn new(id: ShipmentId) -> Self {
        Self {
            id,
            warehouse: None,
            status: ShipmentStatus::Pending,
            lines: Vec::new(),
            carrier: None,
            tracking_number: None,
            tracking_url: None,
            dispatched_at: None,
            delivered_at: None,
        }
    }
}

/// The money side of the order, as payment announced it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFacts {
    /// What the card holds: the order total, once payment authorized it.
    pub authorized: Option<Money>,
    /// What was collected at Stripe (on the first dispatch).
    pub captured: Option<Money>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub captured_at: Option<OffsetDateTime>,
    /// While the order is `requires_action`: the PaymentIntent's client secret, for Stripe.js
    /// `handleNextAction`. Shown to the order's owner only (never in admin views), and removed
    /// once the order leaves `requires_action`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Everything paid back so far: the sum of the `succeeded` `refunds`.
    #[serde(default)]
    pub refunded: Option<Money>,
    /// Each refund payment announced (`RefundPending`, `RefundIssued`, `RefundFailed`), once by
    /// its id, in the order checkout heard of them.
    #[serde(default)]
    pub refunds: Vec<Refund>,
}

/// Something an admin must look at (`GET /admin/orders?flag=`). Shown to admins only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// Stripe refused the capture for good: the order ships, or shipped, unpaid.
    CaptureFailed,
    /// A shipment left (or a capture proved one did) after the order was cancelled: the goods
    /// are gone although inventory took them back and payment voided the authorization.
    DispatchedAfterCancel,
    /// The customer's bank opened a dispute (chargeback) on the payment: answer it in Stripe.
    Disputed,
    /// A refund did not pay the customer back (Stripe refused it, or it failed after `pending`):
    /// its amount is refundable again, and the customer is still owed it.
    RefundFailed,
}

impl Flag {
    pub const ALL: [Self; 4] = [Self::CaptureFailed, Self::DispatchedAfterCancel, Self::Disputed, Self::RefundFailed];

    pub fn parse(raw: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_owned())).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CaptureFailed => "capture_failed",
            Self::DispatchedAfterCancel => "dispatched_after_cancel",
            Self::Disputed => "disputed",
            Self::RefundFailed => "refund_failed",
        }
    }
}

/// The longest note an admin may give when resolving a flag.
pub const MAX_RESOLUTION_NOTE_CHARS: usize = 500;

/// An admin settled a flag: who, when and why. Kept in storage, shown to admins only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagResolution {
    pub flag: Flag,
    /// The admin's JWT `sub`.
    pub by: String,
    pub note: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Why and when Stripe refused the capture. Shown to admins only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureFailure {
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: Sku,
    pub title: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub line_total: Money,
    /// The line's share of the order's discount (see [`crate::pricing::priced`]), which a return
    /// of its units does not pay back. Absent on orders placed before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<Money>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub status: Status,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: OrderId,
    pub customer: String,
    pub email: String,
    pub status: Status,
    pub cancel_reason: Option<String>,
    /// Why the payment failed (`card_declined`, …), when it did.
    pub payment_failure: Option<String>,
    pub lines: Vec<OrderLine>,
    pub totals: Totals,
    pub shipping_address: Address,
    pub shipping_method: String,
    pub promo_code: Option<String>,
    pub payment_method: String,
    pub payment_intent_id: Option<String>,
    /// Authorized and captured amounts.
    #[serde(default)]
    pub payment: PaymentFacts,
    /// How many shipments fulfillment made for the order (all at once), once an event told.
    #[serde(default)]
    pub shipment_count: Option<u32>,
    #[serde(default)]
    pub shipments: Vec<Shipment>,
    /// The customer's returns, oldest first (see [`crate::returns`]).
    #[serde(default)]
    pub returns: Vec<Return>,
    /// Disputes on the payment. Kept in storage, shown to admins only.
    #[serde(skip)]
    pub disputes: Vec<Dispute>,
    /// What an admin must look at. Kept in storage, shown to admins only.
    #[serde(skip)]
    pub flags: Vec<Flag>,
    /// Flags admins resolved, oldest first. Kept in storage, shown to admins only.
    #[serde(skip)]
    pub flag_resolutions: Vec<FlagResolution>,
    /// A capture Stripe refused. Kept in storage, shown to admins only.
    #[serde(skip)]
    pub capture_failure: Option<CaptureFailure>,
    /// The limited coupon (upper case) whose redemption count this order took, given back if the
    /// order is cancelled. Kept in storage, not shown in the API.
    #[serde(skip)]
    pub coupon_redemption: Option<String>,
    pub history: Vec<Transition>,
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When an order still open is cancelled as timed out.
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
}

/// What happened to an order, as the saga reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaStep {
    StockReserved,
    /// Inventory could not reserve the order; its reason becomes the cancellation's.
    StockRejected(RejectionReason),
    ReservationExpired,
    PaymentAuthorized {
        payment_intent_id: String,
        amount: Money,
    },
    PaymentFailed {
        reason: String,
    },
    /// The customer must pass 3-D Secure.
    PaymentActionRequired {
        payment_intent_id: String,
        client_secret: String,
    },
    CustomerCancelled,
    TimedOut,
    ShipmentCreated {
        shipment: ShipmentId,
        count: u32,
        warehouse: String,
        lines: Vec<ShipmentLine>,
    },
    ShipmentDispatched(Dispatch),
    ShipmentDelivered {
        shipment: ShipmentId,
        count: u32,
        at: OffsetDateTime,
    },
    ShipmentCancelled {
        shipment: ShipmentId,
        count: u32,
    },
    /// `at`: when payment captured (the event's time).
    PaymentCaptured {
        amount: Money,
        at: OffsetDateTime,
    },
    PaymentCaptureFailed {
        reason: String,
        at: OffsetDateTime,
    },
    /// Stripe holds a refund `pending` (`RefundPending`): the refund, `pending`.
    RefundPending(Refund),
    /// Payment paid money back (`RefundIssued`).
    RefundIssued(Refund),
    /// A refund did not pay the money back (`RefundFailed`): the refund, `failed` with its reason.
    RefundFailed(Refund),
    /// The customer's bank disputes the payment (`PaymentDisputed`).
    PaymentDisputed(Dispute),
    /// A dispute closed: won, lost, or an inquiry closed (`PaymentDisputeClosed`).
    PaymentDisputeClosed(DisputeClosing),
}

/// A shipment left its warehouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub shipment: ShipmentId,
    pub count: u32,
    pub warehouse: String,
    pub carrier: String,
    pub tracking_number: String,
    pub tracking_url: Option<String>,
    pub at: OffsetDateTime,
}

impl SagaStep {
    /// A step of fulfillment or of the capture: it can only follow the confirmation.
    fn follows_confirmation(&self) -> bool {
        matches!(
            self,
            Self::ShipmentCreated { .. }
                | Self::ShipmentDispatched(_)
                | Self::ShipmentDelivered { .. }
                | Self::ShipmentCancelled { .. }
                | Self::PaymentCaptured { .. }
                | Self::PaymentCaptureFailed { .. }
        )
    }

    /// The shipment a fulfillment step is about, and the order's shipment count it states.
    fn shipment(&self) -> Option<(ShipmentId, u32)> {
        match self {
            Self::ShipmentCreated { shipment, count, .. }
            | Self::ShipmentDelivered { shipment, count, .. }
            | Self::ShipmentCancelled { shipment, count } => Some((*shipment, *count)),
            Self::ShipmentDispatched(dispatch) => Some((dispatch.shipment, dispatch.count)),
            _ => None,
        }
    }
}

/// An event that cannot apply to the order in its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("an order that is {from} cannot take {step}")]
    Impossible { from: &'static str, step: String },
    /// A cancel after checkout saw a shipment leave.
    #[error("the order is {from}: a shipment has left the warehouse, so it can no longer be cancelled")]
    AlreadyShipped { from: &'static str },
}

/// What a fulfillment step makes of one shipment, from what the order knew of it.
fn merge(known: Option<&Shipment>, id: ShipmentId, step: &SagaStep) -> Shipment {
    let mut shipment = known.cloned().unwrap_or_else(|| Shipment::new(id));
    match step {
        SagaStep::ShipmentCreated { warehouse, lines, .. } => {
            shipment.warehouse.get_or_insert_with(|| warehouse.clone());
            if shipment.lines.is_empty() {
                shipment.lines.clone_from(lines);
            }
        }
        SagaStep::ShipmentDispatched(dispatch) => {
            // A dispatch is a physical fact: it wins over a cancellation heard of first.
            if !shipment.status.has_left() {
                shipment.status = ShipmentStatus::Dispatched;
            }
            shipment.warehouse.get_or_insert_with(|| dispatch.warehouse.clone());
            if shipment.dispatched_at.is_none() {
                shipment.carrier = Some(dispatch.carrier.clone());
                shipment.tracking_number = Some(dispatch.tracking_number.clone());
                shipment.tracking_url.clone_from(&dispatch.tracking_url);
                shipment.dispatched_at = Some(dispatch.at);
            }
        }
        SagaStep::ShipmentDelivered { at, .. } => {
            shipment.status = ShipmentStatus::Delivered;
            shipment.delivered_at.get_or_insert(*at);
        }
        // Fulfillment cancels only shipments that have not left; one that has stays as it is.
        SagaStep::ShipmentCancelled { .. } if !shipment.status.has_left() => {
            shipment.status = ShipmentStatus::Cancelled;
        }
        _ => {}
    }
    shipment
}

impl Order {
    /// The order as placement wrote it: what it fixed for good (lines, totals, address, methods,
    /// customer, times), `pending` since `created_at`, version 1, and nothing else yet. What a
    /// retried `POST /checkout` answers, however far the order has gone since.
    #[must_use]
    pub fn as_placed(&self) -> Self {
        Self {
            status: Status::Pending,
            cancel_reason: None,
            payment_failure: None,
            payment_intent_id: None,
            payment: PaymentFacts::default(),
            shipment_count: None,
            shipments: Vec::new(),
            returns: Vec::new(),
            disputes: Vec::new(),
            flags: Vec::new(),
            flag_resolutions: Vec::new(),
            capture_failure: None,
            history: vec![Transition { status: Status::Pending, at: self.created_at }],
            version: 1,
            updated_at: self.created_at,
            ..self.clone()
        }
    }

    fn enter(&mut self, status: Status, at: OffsetDateTime) {
        self.status = status;
        self.history.push(Transition { status, at });
    }

    pub(crate) fn flag(&mut self, flag: Flag) {
        if !self.flags.contains(&flag) {
            self.flags.push(flag);
        }
    }

    /// `POST /admin/orders/{id}/flags/{flag}/resolve`: an admin settled `flag`, saying why.
    /// The flag goes (the order leaves the flagged listing with its last flag) and the
    /// resolution is kept for the timeline. `false`: the flag is not raised (never was, or
    /// resolved already): nothing changes, so a retried request changes nothing either. A flag
    /// resolved is raised again only by a new fact (another shipment leaving a cancelled order,
    /// another dispute, a dispute lost).
    pub fn resolve_flag(&mut self, flag: Flag, by: &str, note: &str, now: OffsetDateTime) -> bool {
        if !self.flags.contains(&flag) {
            return false;
        }
        self.flags.retain(|f| *f != flag);
        self.flag_resolutions.push(FlagResolution { flag, by: by.to_owned(), note: note.to_owned(), at: now });
        self.version += 1;
        self.updated_at = now;
        true
    }

    /// `OrderConfirmed`, with where and how the order ships (fulfillment's half of the facts).
    fn confirmed(&self) -> Event {
        let address = &self.shipping_address;
        Event::OrderConfirmed(OrderConfirmed {
            order_id: self.order_id,
            shipping: Some(Shipping {
                method: self.shipping_method.clone(),
                address: ShippingAddress {
                    name: address.name.clone(),
                    line1: address.line1.clone(),
                    line2: address.line2.clone(),
                    city: address.city.clone(),
                    region: address.region.clone(),
                    postal_code: address.postal_code.clone(),
                    country: address.country.clone(),
                },
            }),
        })
    }

    fn cancel(&mut self, reason: &str, at: OffsetDateTime) -> Vec<Event> {
        self.payment.client_secret = None;
        self.enter(Status::Cancelled, at);
        self.cancel_reason = Some(reason.to_owned());
        vec![Event::OrderCancelled(OrderCancelled { order_id: self.order_id, reason: reason.to_owned() })]
    }

    /// How many shipments the order has: what the events said, or as many as were heard of.
    fn expected_shipments(&self) -> usize {
        let said = self.shipment_count.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
        said.max(self.shipments.len())
    }

    /// What the shipments add up to.
    fn shipping_status(&self) -> Status {
        let expected = self.expected_shipments();
        let left = self.shipments.iter().filter(|s| s.status.has_left()).count();
        let delivered = self.shipments.iter().filter(|s| s.status == ShipmentStatus::Delivered).count();
        match () {
            () if expected > 0 && delivered == expected => Status::Delivered,
            () if expected > 0 && left == expected => Status::Shipped,
            () if left > 0 => Status::PartiallyShipped,
            () => Status::Confirmed,
        }
    }

    /// Records a fulfillment step. `false`: the order already knew all of it.
    fn record_shipment(&mut self, step: &SagaStep, at: OffsetDateTime) -> bool {
        let Some((id, count)) = step.shipment() else { return false };
        let position = self.shipments.iter().position(|s| s.id == id);
        let known = position.and_then(|i| self.shipments.get(i));
        let merged = merge(known, id, step);
        let count = self.shipment_count.map_or(count, |n| n.max(count));
        if known == Some(&merged) && self.shipment_count == Some(count) {
            return false;
        }
        // Only a departure heard of now is news: a delivery of a shipment already known to have
        // left does not raise again a flag an admin resolved.
        let left = merged.status.has_left() && !known.is_some_and(|s| s.status.has_left());
        let none_left_before = !self.shipments.iter().any(|s| s.status.has_left());
        match position.and_then(|i| self.shipments.get_mut(i)) {
            Some(slot) => *slot = merged,
            None => self.shipments.push(merged),
        }
        self.shipment_count = Some(count);
        if self.status == Status::Cancelled {
            // The race with an in-flight dispatch: the order stays cancelled, an admin sorts it out.
            // Payment captures on the first departure, so a capture heard of before any departure
            // reported this one and flagged it then: it does not raise again a flag an admin
            // resolved since. A later departure is news.
            let reported_by_capture = self.payment.captured.is_some() && none_left_before;
            if left && !reported_by_capture {
                self.flag(Flag::DispatchedAfterCancel);
            }
            return true;
        }
        let target = self.shipping_status();
        // Facts only accumulate, so the status only moves forward; `Status` is declared in that order.
        let rank = |status: Status| Status::ALL.iter().position(|s| *s == status);
        if rank(target) > rank(self.status) {
            if target == Status::Delivered && self.status != Status::Shipped {
                // A delivery proves every shipment left, even if a dispatch is still on its way.
                self.enter(Status::Shipped, at);
            }
            self.enter(target, at);
        }
        true
    }

    /// Applies a saga step. `Ok(None)`: nothing to do (a repeat or a late echo).
    /// `Ok(Some(events))`: the order changed; publish `events` with it.
    pub fn apply(&mut self, step: &SagaStep, at: OffsetDateTime) -> Result<Option<Vec<Event>>, Refused> {
        use Status::*;
        let refused = |order: &Order| Refused::Impossible { from: order.status.as_str(), step: format!("{step:?}") };
        let events = match (self.status, step) {
            (Pending, SagaStep::StockReserved) if self.totals.total.amount() == 0 => {
                self.enter(Reserved, at);
                self.enter(Confirmed, at);
                vec![self.confirmed()]
            }
            (Pending, SagaStep::StockReserved) => {
                self.enter(Reserved, at);
                Vec::new()
            }
            (_, SagaStep::StockReserved) => return Ok(None),
            (Pending | Reserved, SagaStep::PaymentActionRequired { payment_intent_id, client_secret }) => {
                if self.status == Pending {
                    // Payment confirms only after StockReserved: the reservation happened.
                    self.enter(Reserved, at);
                }
                self.payment_intent_id = Some(payment_intent_id.clone());
                self.payment.client_secret = Some(client_secret.clone());
                self.enter(RequiresAction, at);
                Vec::new()
            }
            // A repeat, or a late echo of a payment that has settled since (Stripe's webhook can
            // overtake the event that announced the challenge).
            (_, SagaStep::PaymentActionRequired { .. }) => return Ok(None),
            (Pending | Reserved | RequiresAction, SagaStep::PaymentAuthorized { payment_intent_id, amount }) => {
                if self.status == Pending {
                    // Payment authorizes only after StockReserved: the reservation happened.
                    self.enter(Reserved, at);
                }
                self.payment.client_secret = None;
                self.payment_intent_id = Some(payment_intent_id.clone());
                self.payment.authorized = Some(*amount);
                self.enter(Authorized, at);
                self.enter(Confirmed, at);
                vec![self.confirmed()]
            }
            // Payment voids an authorization that lands on a cancelled order (it saw the
            // cancellation too); the order itself stays cancelled.
            (_, SagaStep::PaymentAuthorized { .. }) => return Ok(None),
            (Pending, SagaStep::StockRejected(reason)) => self.cancel(reason.as_str(), at),
            (Pending | Reserved | RequiresAction, SagaStep::PaymentFailed { reason }) => {
                self.payment.client_secret = None;
                self.payment_failure = Some(reason.clone());
                self.cancel("payment_failed", at)
            }
            (Pending | Reserved | RequiresAction | Authorized, SagaStep::TimedOut) => self.cancel("timeout", at),
            // Inventory only lets a hold lapse while it is still a hold: if it lapsed, the stock is
            // gone even when our confirmation raced it, so the order cannot be fulfilled. (Once a
            // shipment left, the stock was committed, so no expiry can come.)
            (Pending | Reserved | RequiresAction | Authorized | Confirmed, SagaStep::ReservationExpired) => {
                self.cancel("reservation_expired", at)
            }
            (Confirmed | PartiallyShipped | Shipped | Delivered, SagaStep::TimedOut) => return Ok(None),
            (Pending | Reserved | RequiresAction | Authorized | Confirmed, SagaStep::CustomerCancelled) => {
                self.cancel("customer_cancelled", at)
            }
            (PartiallyShipped | Shipped | Delivered, SagaStep::CustomerCancelled) => {
                return Err(Refused::AlreadyShipped { from: self.status.as_str() });
            }
            (Cancelled, SagaStep::StockRejected(_) | SagaStep::PaymentFailed { .. } | SagaStep::TimedOut)
            | (Cancelled, SagaStep::ReservationExpired | SagaStep::CustomerCancelled) => return Ok(None),
            // Fulfillment ships only what inventory committed on `OrderConfirmed`, and payment
            // captures only on a dispatch: neither can precede the confirmation checkout wrote.
            (Pending | Reserved | RequiresAction | Authorized, step) if step.follows_confirmation() => {
                return Err(refused(self));
            }
            // Fulfillment cancels shipments only when the order is cancelled.
            (Confirmed | PartiallyShipped | Shipped | Delivered, SagaStep::ShipmentCancelled { .. }) => {
                return Err(refused(self));
            }
            (
                _,
                SagaStep::ShipmentCreated { .. }
                | SagaStep::ShipmentDispatched(_)
                | SagaStep::ShipmentDelivered { .. }
                | SagaStep::ShipmentCancelled { .. },
            ) => {
                if !self.record_shipment(step, at) {
                    return Ok(None);
                }
                Vec::new()
            }
            (_, SagaStep::PaymentCaptured { amount, at: captured_at }) => {
                if self.payment.captured.is_some() {
                    return Ok(None);
                }
                self.payment.captured = Some(*amount);
                self.payment.captured_at = Some(*captured_at);
                // The money is in: a refusal heard of before (an earlier attempt) is settled.
                self.flags.retain(|f| *f != Flag::CaptureFailed);
                if self.status == Cancelled && !self.shipments.iter().any(|s| s.status.has_left()) {
                    // Payment captures only on a dispatch: something left a cancelled order (if
                    // checkout heard of the departure already, it flagged it then).
                    self.flag(Flag::DispatchedAfterCancel);
                }
                Vec::new()
            }
            (_, SagaStep::PaymentCaptureFailed { reason, at: failed_at }) => {
                // Once captured, a refusal is a stale attempt's; a second refusal adds nothing.
                if self.payment.captured.is_some() || self.capture_failure.is_some() {
                    return Ok(None);
                }
                self.capture_failure = Some(CaptureFailure { reason: reason.clone(), at: *failed_at });
                self.flag(Flag::CaptureFailed);
                Vec::new()
            }
            // Money paid back and disputes are facts about the captured payment, whatever the
            // order's status: recorded once each, by their ids.
            (_, SagaStep::RefundPending(refund)) => {
                if !self.record_refund_pending(refund) {
                    return Ok(None);
                }
                Vec::new()
            }
            (_, SagaStep::RefundIssued(refund)) => {
                if !self.record_refund(refund) {
                    return Ok(None);
                }
                Vec::new()
            }
            (_, SagaStep::RefundFailed(refund)) => {
                if !self.record_refund_failure(refund) {
                    return Ok(None);
                }
                self.flag(Flag::RefundFailed);
                Vec::new()
            }
            (_, SagaStep::PaymentDisputed(dispute)) => {
                if !self.record_dispute(dispute) {
                    return Ok(None);
                }
                Vec::new()
            }
            (_, SagaStep::PaymentDisputeClosed(closing)) => {
                if !self.close_dispute(closing) {
                    return Ok(None);
                }
                Vec::new()
            }
            _ => return Err(refused(self)),
        };
        self.version += 1;
        self.updated_at = at;
        Ok(Some(events))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kernel::Currency;

    fn order() -> Order {
        order_totalling(2500)
    }

    /// A pending order of `total` USD minor units with no lines, shipments or returns; the
    /// other modules' tests start from it too.
    pub(crate) fn order_totalling(total: i64) -> Order {
        // The shared fixture (`checkout::testing`), as placed: no intent yet, first version.
        let mut order = crate::testing::order_in(Status::Pending);
        order.totals.total = Money::new(total, Currency::USD).unwrap();
        order.payment_intent_id = None;
        order.version = 1;
        order
    }

    fn authorized() -> SagaStep {
        SagaStep::PaymentAuthorized { payment_intent_id: "pi_1".into(), amount: usd(2500) }
    }

    #[test]
    fn the_happy_path_goes_pending_reserved_authorized_confirmed() {
        let mut order = order();
        assert_eq!(order.apply(&SagaStep::StockReserved, OffsetDateTime::UNIX_EPOCH), Ok(Some(vec![])));
        let events = order.apply(&authorized(), OffsetDateTime::UNIX_EPOCH).unwrap().unwrap();
        assert_eq!(order.status, Status::Confirmed);
        assert!(matches!(events.as_slice(), [Event::OrderConfirmed(_)]));
        let path: Vec<_> = order.history.iter().map(|t| t.status).collect();
        assert_eq!(path, vec![Status::Reserved, Status::Authorized, Status::Confirmed]);
        assert_eq!(order.version, 3);
    }

    #[test]
    fn an_order_with_nothing_to_pay_is_confirmed_once_its_stock_is_reserved() {
        let mut free = order_totalling(0);
        let events = free.apply(&SagaStep::StockReserved, OffsetDateTime::UNIX_EPOCH).unwrap().unwrap();
        assert!(matches!(events.as_slice(), [Event::OrderConfirmed(_)]));
        let path: Vec<_> = free.history.iter().map(|t| t.status).collect();
        assert_eq!(path, vec![Status::Reserved, Status::Confirmed], "never authorized: nothing to pay");
        assert_eq!(free.apply(&SagaStep::StockReserved, OffsetDateTime::UNIX_EPOCH), Ok(None));
    }

    #[test]
    fn an_authorization_that_overtakes_the_reservation_still_confirms() {
        let mut order = order();
        order.apply(&authorized(), OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_eq!(order.status, Status::Confirmed);
        assert_eq!(order.apply(&SagaStep::StockReserved, OffsetDateTime::UNIX_EPOCH), Ok(None), "late echo ignored");
    }

    #[test]
    fn repeated_events_change_nothing() {
        let mut order = order();
        order.apply(&SagaStep::StockReserved, OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_eq!(order.apply(&SagaStep::StockReserved, OffsetDateTime::UNIX_EPOCH), Ok(None));
        order.apply(&authorized(), OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_eq!(order.apply(&authorized(), OffsetDateTime::UNIX_EPOCH), Ok(None));
        assert_eq!(order.version, 3);
    }

    fn action_required() -> SagaStep {
        SagaStep::PaymentActionRequired { payment_intent_id: "pi_1".into(), client_secret: "pi_1_secret_x".into() }
    }

    #[test]
    fn an_order_whose_card_needs_3d_secure_waits_with_the_client_secret_then_confirms_when_stripe_says_so() {
        let mut order = order();
        order.apply(&SagaStep::StockReserved, OffsetDateTime::UNIX_EPOCH).unwrap();

        let waiting = order.apply(&action_required(), OffsetDateTime::UNIX_EPOCH).unwrap();
        let (status, secret) = (order.status, order.payment.client_secret.clone());
        let repeat = order.apply(&action_required(), OffsetDateTime::UNIX_EPOCH).unwrap();
        let confirmed = order.apply(&authorized(), OffsetDateTime::UNIX_EPOCH).unwrap();

        assert_eq!(waiting, Some(Vec::new()), "nothing announced while waiting");
        assert_eq!((status, secret.as_deref()), (Status::RequiresAction, Some("pi_1_secret_x")));
        assert_eq!(repeat, None);
        assert!(matches!(confirmed.as_deref(), Some([Event::OrderConfirmed(_)])));
        assert_eq!(order.status, Status::Confirmed);
        assert_eq!(order.payment.client_secret, None, "the secret is gone once the challenge is over");
        let path: Vec<_> = order.history.iter().map(|t| t.status).collect();
        assert_eq!(path, [Status::Reserved, Status::RequiresAction, Status::Authorized, Status::Confirmed]);
    }

    #[test]
    fn an_order_awaiting_3d_secure_is_cancelled_by_a_failed_challenge_or_its_timeout() {
        let waiting = || {
            let mut order = order();
            order.apply(&SagaStep::StockReserved, OffsetDateTime::UNIX_EPOCH).unwrap();
            order.apply(&action_required(), OffsetDateTime::UNIX_EPOCH).unwrap();
            order
        };
        let (mut failed, mut timed_out) = (waiting(), waiting());

        let failure = SagaStep::PaymentFailed { reason: "payment_intent_authentication_failure".into() };
        failed.apply(&failure, OffsetDateTime::UNIX_EPOCH).unwrap();
        timed_out.apply(&SagaStep::TimedOut, OffsetDateTime::UNIX_EPOCH).unwrap();

        assert_eq!((failed.status, failed.cancel_reason.as_deref()), (Status::Cancelled, Some("payment_failed")));
        assert_eq!((timed_out.status, timed_out.cancel_reason.as_deref()), (Status::Cancelled, Some("timeout")));
        assert!(failed.payment.client_secret.is_none() && timed_out.payment.client_secret.is_none());
    }

    #[test]
    fn a_challenge_announced_after_the_payment_settled_changes_nothing() {
        let mut order = order();
        order.apply(&SagaStep::StockReserved, OffsetDateTime::UNIX_EPOCH).unwrap();
        order.apply(&authorized(), OffsetDateTime::UNIX_EPOCH).unwrap();

        assert_eq!(order.apply(&action_required(), OffsetDateTime::UNIX_EPOCH), Ok(None));
        assert_eq!((order.status, order.payment.client_secret.as_ref()), (Status::Confirmed, None));
    }

    #[test]
    fn failures_cancel_with_their_reason_and_announce_it() {
        let mut rejected = order();
        let events = rejected.apply(&SagaStep::StockRejected(RejectionReason::OutOfStock), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(rejected.cancel_reason.as_deref(), Some("out_of_stock"));
        assert!(
            matches!(events.unwrap().unwrap().as_slice(), [Event::OrderCancelled(c)] if c.reason == "out_of_stock")
        );

        let mut too_large = order();
        too_large.apply(&SagaStep::StockRejected(RejectionReason::OrderTooLarge), OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_eq!(too_large.cancel_reason.as_deref(), Some("order_too_large"));

        let mut declined = order();
        declined.apply(&SagaStep::StockReserved, OffsetDateTime::UNIX_EPOCH).unwrap();
        declined
            .apply(&SagaStep::PaymentFailed { reason: "card_declined".into() }, OffsetDateTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!((declined.status, declined.cancel_reason.as_deref()), (Status::Cancelled, Some("payment_failed")));
        assert_eq!(declined.payment_failure.as_deref(), Some("card_declined"));
    }

    #[test]
    fn an_impossible_step_is_refused_and_not_applied() {
        let mut order = order();
        order.apply(&SagaStep::StockReserved, OffsetDateTime::UNIX_EPOCH).unwrap();
        order.apply(&authorized(), OffsetDateTime::UNIX_EPOCH).unwrap();
        let before = order.clone();
        assert!(order.apply(&SagaStep::PaymentFailed { reason: "x".into() }, OffsetDateTime::UNIX_EPOCH).is_err());
        assert!(
            order.apply(&SagaStep::StockRejected(RejectionReason::OutOfStock), OffsetDateTime::UNIX_EPOCH).is_err()
        );
        assert_eq!(order, before);
    }

    #[test]
    fn a_hold_that_lapsed_before_the_confirmation_was_committed_cancels_even_a_confirmed_order() {
        let mut order = order();
        order.apply(&authorized(), OffsetDateTime::UNIX_EPOCH).unwrap();
        let events = order.apply(&SagaStep::ReservationExpired, OffsetDateTime::UNIX_EPOCH).unwrap().unwrap();
        assert_eq!((order.status, order.cancel_reason.as_deref()), (Status::Cancelled, Some("reservation_expired")));
        assert!(matches!(events.as_slice(), [Event::OrderCancelled(_)]), "payment voids on OrderCancelled");
        assert_eq!(order.apply(&SagaStep::TimedOut, OffsetDateTime::UNIX_EPOCH), Ok(None));
    }

    #[test]
    fn customers_may_cancel_until_shipment_but_a_cancelled_order_stays_cancelled() {
        let mut order = order();
        order.apply(&authorized(), OffsetDateTime::UNIX_EPOCH).unwrap();
        order.apply(&SagaStep::CustomerCancelled, OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_eq!(order.status, Status::Cancelled);
        assert_eq!(order.apply(&authorized(), OffsetDateTime::UNIX_EPOCH), Ok(None));
        assert_eq!(order.apply(&SagaStep::TimedOut, OffsetDateTime::UNIX_EPOCH), Ok(None));
    }

    // ---- after the confirmation: shipments and the capture

    fn usd(amount: i64) -> Money {
        Money::new(amount, Currency::USD).unwrap()
    }

    fn t(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds)
    }

    fn confirmed() -> Order {
        let mut order = order();
        order.apply(&SagaStep::StockReserved, t(1)).unwrap();
        order.apply(&authorized(), t(2)).unwrap();
        order
    }

    fn created(shipment: ShipmentId, count: u32, warehouse: &str) -> SagaStep {
        let lines = vec![ShipmentLine { sku: Sku::parse("MUG-1").unwrap(), quantity: 1 }];
        SagaStep::ShipmentCreated { shipment, count, warehouse: warehouse.into(), lines }
    }

    fn dispatched(shipment: ShipmentId, count: u32, at: OffsetDateTime) -> SagaStep {
        SagaStep::ShipmentDispatched(Dispatch {
            shipment,
            count,
            warehouse: "east".into(),
            carrier: "ups".into(),
            tracking_number: "1Z999".into(),
            tracking_url: Some("https://ups.example/1Z999".into()),
            at,
        })
    }

    fn delivered(shipment: ShipmentId, count: u32, at: OffsetDateTime) -> SagaStep {
        SagaStep::ShipmentDelivered { shipment, count, at }
    }

    fn captured() -> SagaStep {
        SagaStep::PaymentCaptured { amount: usd(2500), at: t(50) }
    }

    fn capture_failed() -> SagaStep {
        SagaStep::PaymentCaptureFailed { reason: "charge_expired_for_capture".into(), at: t(50) }
    }

    fn statuses(order: &Order) -> Vec<Status> {
        order.history.iter().map(|t| t.status).collect()
    }

    /// Applies a step that must change the order and send nothing.
    fn quietly(order: &mut Order, step: &SagaStep, at: OffsetDateTime) {
        assert_eq!(order.apply(step, at), Ok(Some(vec![])), "{step:?} on {:?}", order.status);
    }

    /// One confirmed order per state after the confirmation, with two shipments `a` and `b`.
    fn after_confirmation() -> Vec<(Status, Order, ShipmentId, ShipmentId)> {
        let (a, b) = (ShipmentId::new(), ShipmentId::new());
        let confirmed = confirmed();
        let mut partially = confirmed.clone();
        quietly(&mut partially, &dispatched(a, 2, t(10)), t(11));
        let mut shipped = partially.clone();
        quietly(&mut shipped, &dispatched(b, 2, t(12)), t(13));
        let mut delivered_order = shipped.clone();
        quietly(&mut delivered_order, &delivered(a, 2, t(20)), t(21));
        quietly(&mut delivered_order, &delivered(b, 2, t(22)), t(23));
        vec![
            (Status::Confirmed, confirmed, a, b),
            (Status::PartiallyShipped, partially, a, b),
            (Status::Shipped, shipped, a, b),
            (Status::Delivered, delivered_order, a, b),
        ]
    }

    #[test]
    fn the_authorized_amount_is_recorded_with_the_confirmation() {
        let order = confirmed();
        assert_eq!(
            order.payment,
            PaymentFacts {
                authorized: Some(usd(2500)),
                captured: None,
                captured_at: None,
                client_secret: None,
                ..Default::default()
            }
        );
    }

    #[test]
    fn two_shipments_take_a_confirmed_order_through_partially_shipped_and_shipped_to_delivered() {
        let mut order = confirmed();
        let (a, b) = (ShipmentId::new(), ShipmentId::new());

        quietly(&mut order, &created(a, 2, "east"), t(5));
        quietly(&mut order, &created(b, 2, "west"), t(5));
        assert_eq!(order.status, Status::Confirmed, "created shipments have not left");
        assert_eq!(order.shipments.iter().map(|s| s.status).collect::<Vec<_>>(), vec![ShipmentStatus::Pending; 2]);
        assert_eq!(order.shipment_count, Some(2));

        quietly(&mut order, &dispatched(a, 2, t(10)), t(11));
        assert_eq!(order.status, Status::PartiallyShipped);
        let first = &order.shipments[0];
        assert_eq!((first.carrier.as_deref(), first.dispatched_at), (Some("ups"), Some(t(10))));
        assert_eq!(first.warehouse.as_deref(), Some("east"), "the warehouse ShipmentCreated named is kept");

        quietly(&mut order, &dispatched(b, 2, t(12)), t(13));
        assert_eq!(order.status, Status::Shipped);
        quietly(&mut order, &delivered(a, 2, t(20)), t(21));
        assert_eq!(order.status, Status::Shipped, "one of two delivered");
        quietly(&mut order, &delivered(b, 2, t(22)), t(23));

        assert_eq!(order.status, Status::Delivered);
        assert_eq!(order.shipments[1].delivered_at, Some(t(22)));
        assert_eq!(
            statuses(&order)[2..],
            [Status::Confirmed, Status::PartiallyShipped, Status::Shipped, Status::Delivered]
        );
        assert_eq!(order.version, 3 + 6, "one version per change");
    }

    #[test]
    fn the_only_shipment_leaving_ships_the_order_at_once() {
        let mut order = confirmed();
        let only = ShipmentId::new();

        quietly(&mut order, &dispatched(only, 1, t(10)), t(11));

        assert_eq!(order.status, Status::Shipped);
        assert!(!statuses(&order).contains(&Status::PartiallyShipped));
    }

    #[test]
    fn a_dispatch_before_any_shipment_was_created_counts_against_the_shipment_count() {
        let mut order = confirmed();
        let (a, b) = (ShipmentId::new(), ShipmentId::new());

        quietly(&mut order, &dispatched(a, 2, t(10)), t(11));
        assert_eq!(order.status, Status::PartiallyShipped, "1 of the 2 the event announces");
        assert!(order.shipments[0].lines.is_empty(), "lines come with ShipmentCreated");

        quietly(&mut order, &created(a, 2, "east"), t(12));
        assert_eq!(order.shipments[0].status, ShipmentStatus::Dispatched, "a late creation does not undo the dispatch");
        assert_eq!(order.shipments[0].lines.len(), 1);
        assert_eq!(order.status, Status::PartiallyShipped);

        quietly(&mut order, &dispatched(b, 2, t(13)), t(14));
        assert_eq!(order.status, Status::Shipped);
        quietly(&mut order, &created(b, 2, "west"), t(15));
        assert_eq!(order.status, Status::Shipped);
        assert_eq!(order.shipments.len(), 2);
    }

    #[test]
    fn a_delivery_before_its_dispatch_proves_both_and_the_late_dispatch_only_adds_the_carrier() {
        let mut order = confirmed();
        let only = ShipmentId::new();

        quietly(&mut order, &delivered(only, 1, t(20)), t(21));
        assert_eq!(order.status, Status::Delivered);
        assert_eq!(statuses(&order)[2..], [Status::Confirmed, Status::Shipped, Status::Delivered]);
        assert_eq!(order.shipments[0].carrier, None);

        quietly(&mut order, &dispatched(only, 1, t(10)), t(22));
        assert_eq!(order.status, Status::Delivered, "never back to shipped");
        let shipment = &order.shipments[0];
        assert_eq!(shipment.status, ShipmentStatus::Delivered);
        assert_eq!((shipment.tracking_number.as_deref(), shipment.dispatched_at), (Some("1Z999"), Some(t(10))));
        assert_eq!(order.apply(&dispatched(only, 1, t(10)), t(23)), Ok(None));
    }

    #[test]
    fn a_delivery_of_one_of_two_shipments_before_any_dispatch_makes_the_order_partially_shipped() {
        let mut order = confirmed();

        quietly(&mut order, &delivered(ShipmentId::new(), 2, t(20)), t(21));

        assert_eq!(order.status, Status::PartiallyShipped);
    }

    #[test]
    fn every_repeated_fulfillment_or_capture_event_changes_nothing_in_every_state() {
        for (status, mut order, a, b) in after_confirmation() {
            // Bring each order to the facts of its own state, then repeat them.
            quietly(&mut order, &created(a, 2, "east"), t(30));
            quietly(&mut order, &created(b, 2, "west"), t(30));
            quietly(&mut order, &captured(), t(31));
            let before = order.clone();
            let mut repeats = vec![created(a, 2, "east"), created(b, 2, "west"), captured(), capture_failed()];
            if status.has_shipped() {
                repeats.push(dispatched(a, 2, t(10)));
            }
            if status == Status::Delivered {
                repeats.extend([dispatched(b, 2, t(12)), delivered(a, 2, t(20)), delivered(b, 2, t(22))]);
            }
            for step in &repeats {
                assert_eq!(order.apply(step, t(40)), Ok(None), "{step:?} repeated in {status:?}");
            }
            assert_eq!(order, before, "{status:?}");
        }
    }

    #[test]
    fn earlier_steps_arriving_late_after_the_confirmation_are_ignored_or_refused() {
        for (status, mut order, ..) in after_confirmation() {
            let before = order.clone();
            for echo in [SagaStep::StockReserved, authorized(), SagaStep::TimedOut] {
                assert_eq!(order.apply(&echo, t(40)), Ok(None), "{echo:?} in {status:?}");
            }
            let impossible =
                [SagaStep::StockRejected(RejectionReason::OutOfStock), SagaStep::PaymentFailed { reason: "x".into() }];
            for step in impossible {
                assert!(matches!(order.apply(&step, t(40)), Err(Refused::Impossible { .. })), "{step:?} in {status:?}");
            }
            assert_eq!(order, before);
        }
    }

    #[test]
    fn a_hold_cannot_lapse_once_a_shipment_has_left() {
        for (status, mut order, ..) in after_confirmation().into_iter().skip(1) {
            let before = order.clone();
            assert!(order.apply(&SagaStep::ReservationExpired, t(40)).is_err(), "{status:?}");
            assert_eq!(order, before);
        }
    }

    #[test]
    fn a_customer_cancel_is_refused_as_already_shipped_once_checkout_has_seen_a_dispatch() {
        for (status, mut order, ..) in after_confirmation().into_iter().skip(1) {
            let before = order.clone();

            let refused = order.apply(&SagaStep::CustomerCancelled, t(40));

            assert_eq!(refused, Err(Refused::AlreadyShipped { from: status.as_str() }));
            assert_eq!(order, before, "nothing changes in {status:?}");
        }
    }

    #[test]
    fn a_customer_cancel_before_any_dispatch_still_cancels_an_order_with_pending_shipments() {
        let mut order = confirmed();
        quietly(&mut order, &created(ShipmentId::new(), 1, "east"), t(5));

        let events = order.apply(&SagaStep::CustomerCancelled, t(6)).unwrap().unwrap();

        assert_eq!((order.status, order.cancel_reason.as_deref()), (Status::Cancelled, Some("customer_cancelled")));
        assert!(matches!(events.as_slice(), [Event::OrderCancelled(_)]), "fulfillment cancels its shipments on it");
    }

    #[test]
    fn a_dispatch_that_reaches_a_cancelled_order_leaves_it_cancelled_and_flags_it_for_an_admin() {
        let mut order = confirmed();
        let shipment = ShipmentId::new();
        quietly(&mut order, &created(shipment, 1, "east"), t(5));
        order.apply(&SagaStep::CustomerCancelled, t(6)).unwrap();

        let applied = order.apply(&dispatched(shipment, 1, t(7)), t(8));

        assert_eq!(applied, Ok(Some(vec![])), "recorded, nothing announced");
        assert_eq!(order.status, Status::Cancelled);
        assert_eq!(order.flags, vec![Flag::DispatchedAfterCancel]);
        assert_eq!(order.shipments[0].status, ShipmentStatus::Dispatched);
        assert_eq!(order.apply(&dispatched(shipment, 1, t(7)), t(9)), Ok(None), "a repeat");
        quietly(&mut order, &delivered(shipment, 1, t(10)), t(11));
        assert_eq!((order.status, order.flags.len()), (Status::Cancelled, 1), "flagged once");
    }

    #[test]
    fn shipments_cancelled_with_their_order_are_recorded_and_a_cancellation_never_undoes_a_dispatch() {
        let mut order = confirmed();
        let (a, b) = (ShipmentId::new(), ShipmentId::new());
        order.apply(&SagaStep::CustomerCancelled, t(6)).unwrap();

        quietly(&mut order, &SagaStep::ShipmentCancelled { shipment: a, count: 2 }, t(7));
        quietly(&mut order, &created(a, 2, "east"), t(8));
        assert_eq!(order.shipments[0].status, ShipmentStatus::Cancelled, "a late creation does not revive it");
        assert_eq!(order.apply(&SagaStep::ShipmentCancelled { shipment: a, count: 2 }, t(9)), Ok(None));
        quietly(&mut order, &dispatched(b, 2, t(10)), t(10));
        assert_eq!(order.apply(&SagaStep::ShipmentCancelled { shipment: b, count: 2 }, t(11)), Ok(None));

        assert_eq!(order.shipments[1].status, ShipmentStatus::Dispatched);
        assert_eq!(order.status, Status::Cancelled);
        assert_eq!(order.flags, vec![Flag::DispatchedAfterCancel], "b left after the cancellation");
    }

    #[test]
    fn a_shipment_cancelled_while_the_order_lives_is_refused() {
        for (status, mut order, a, _) in after_confirmation() {
            let before = order.clone();
            let refused = order.apply(&SagaStep::ShipmentCancelled { shipment: a, count: 2 }, t(40));
            assert!(matches!(refused, Err(Refused::Impossible { .. })), "{status:?}");
            assert_eq!(order, before);
        }
    }

    #[test]
    fn fulfillment_and_capture_events_cannot_precede_the_confirmation() {
        let mut pending = order();
        let mut reserved = order();
        reserved.apply(&SagaStep::StockReserved, t(1)).unwrap();
        let id = ShipmentId::new();
        let steps = [
            created(id, 1, "east"),
            dispatched(id, 1, t(2)),
            delivered(id, 1, t(3)),
            SagaStep::ShipmentCancelled { shipment: id, count: 1 },
            captured(),
            capture_failed(),
        ];
        for order in [&mut pending, &mut reserved] {
            let before = order.clone();
            for step in &steps {
                assert!(matches!(order.apply(step, t(4)), Err(Refused::Impossible { .. })), "{step:?}");
            }
            assert_eq!(*order, before);
        }
    }

    #[test]
    fn a_capture_is_recorded_in_every_state_after_the_confirmation_without_moving_the_status() {
        for (status, mut order, ..) in after_confirmation() {
            quietly(&mut order, &captured(), t(40));

            assert_eq!(order.status, status);
            assert_eq!((order.payment.captured, order.payment.captured_at), (Some(usd(2500)), Some(t(50))));
            assert!(order.flags.is_empty());
        }
    }

    #[test]
    fn a_refused_capture_flags_the_order_once_and_a_later_capture_settles_it() {
        let mut order = confirmed();

        quietly(&mut order, &capture_failed(), t(40));
        assert_eq!(order.flags, vec![Flag::CaptureFailed]);
        assert_eq!(order.capture_failure.as_ref().map(|f| f.reason.as_str()), Some("charge_expired_for_capture"));
        let again = SagaStep::PaymentCaptureFailed { reason: "other".into(), at: t(41) };
        assert_eq!(order.apply(&again, t(42)), Ok(None), "flagged once");

        quietly(&mut order, &captured(), t(43));
        assert!(order.flags.is_empty(), "the money is in");
        assert!(order.capture_failure.is_some(), "the refusal stays on record");
    }

    #[test]
    fn a_refusal_that_arrives_after_the_capture_is_a_stale_attempt_and_ignored() {
        let mut order = confirmed();
        quietly(&mut order, &captured(), t(40));

        assert_eq!(order.apply(&capture_failed(), t(41)), Ok(None));
        assert!(order.flags.is_empty());
    }

    #[test]
    fn a_capture_of_a_cancelled_order_is_recorded_and_flags_a_dispatch_after_the_cancellation() {
        let mut order = confirmed();
        order.apply(&SagaStep::CustomerCancelled, t(6)).unwrap();

        quietly(&mut order, &captured(), t(7));
        assert_eq!(order.apply(&capture_failed(), t(8)), Ok(None), "captured: the refusal is stale");

        assert_eq!(order.status, Status::Cancelled);
        assert_eq!(order.payment.captured, Some(usd(2500)));
        assert_eq!(order.flags, vec![Flag::DispatchedAfterCancel]);
    }

    #[test]
    fn a_refused_capture_of_a_cancelled_order_is_flagged() {
        let mut order = confirmed();
        order.apply(&SagaStep::CustomerCancelled, t(6)).unwrap();

        quietly(&mut order, &capture_failed(), t(7));

        assert_eq!((order.status, order.flags.as_slice()), (Status::Cancelled, &[Flag::CaptureFailed][..]));
    }

    #[test]
    fn an_admin_resolves_a_flag_once_and_the_resolution_is_kept_with_who_and_why() {
        let mut order = confirmed();
        order.apply(&SagaStep::CustomerCancelled, t(6)).unwrap();
        quietly(&mut order, &dispatched(ShipmentId::new(), 1, t(7)), t(8));
        quietly(&mut order, &capture_failed(), t(9));
        let version = order.version;

        assert!(order.resolve_flag(Flag::DispatchedAfterCancel, "root", "parcel recovered", t(10)));
        assert!(!order.resolve_flag(Flag::DispatchedAfterCancel, "root", "again", t(11)), "a retry changes nothing");
        assert!(!order.resolve_flag(Flag::Disputed, "root", "never raised", t(11)));

        assert_eq!(order.flags, vec![Flag::CaptureFailed], "the other flag stays");
        assert_eq!(order.version, version + 1);
        assert_eq!(
            order.flag_resolutions,
            vec![FlagResolution {
                flag: Flag::DispatchedAfterCancel,
                by: "root".into(),
                note: "parcel recovered".into(),
                at: t(10)
            }]
        );
    }

    #[test]
    fn a_resolved_flag_is_not_raised_again_by_the_departure_its_capture_reported() {
        let mut order = confirmed();
        let (a, b) = (ShipmentId::new(), ShipmentId::new());
        order.apply(&SagaStep::CustomerCancelled, t(6)).unwrap();
        // The capture (made on a's dispatch) overtakes the dispatch's own event.
        quietly(&mut order, &captured(), t(7));
        assert!(order.resolve_flag(Flag::DispatchedAfterCancel, "root", "parcel recovered", t(8)));

        quietly(&mut order, &dispatched(a, 2, t(7)), t(9));
        assert!(order.flags.is_empty(), "the departure the capture reported: {:?}", order.flags);

        quietly(&mut order, &dispatched(b, 2, t(10)), t(11));
        assert_eq!(order.flags, vec![Flag::DispatchedAfterCancel], "another shipment left");
    }

    #[test]
    fn a_resolved_flag_is_raised_again_only_by_a_new_fact() {
        let mut order = confirmed();
        let (a, b) = (ShipmentId::new(), ShipmentId::new());
        order.apply(&SagaStep::CustomerCancelled, t(6)).unwrap();
        quietly(&mut order, &dispatched(a, 2, t(7)), t(8));
        assert!(order.resolve_flag(Flag::DispatchedAfterCancel, "root", "parcel recovered", t(9)));

        // The same shipment delivered, and the capture its dispatch made: nothing new left.
        quietly(&mut order, &delivered(a, 2, t(10)), t(11));
        quietly(&mut order, &captured(), t(12));
        assert!(order.flags.is_empty(), "{:?}", order.flags);

        quietly(&mut order, &dispatched(b, 2, t(13)), t(14));
        assert_eq!(order.flags, vec![Flag::DispatchedAfterCancel], "another shipment left");
    }

    #[test]
    fn a_resolved_capture_failure_is_never_raised_again_by_a_repeated_refusal() {
        let mut order = confirmed();
        quietly(&mut order, &capture_failed(), t(40));
        assert!(order.resolve_flag(Flag::CaptureFailed, "root", "paid by bank transfer", t(41)));

        assert_eq!(order.apply(&capture_failed(), t(42)), Ok(None));
        assert!(order.flags.is_empty());
        assert!(order.capture_failure.is_some(), "the refusal stays on record");
    }

    #[test]
    fn new_statuses_are_written_in_snake_case() {
        let json = serde_json::to_value(Status::PartiallyShipped).unwrap();
        assert_eq!(json, "partially_shipped");
        assert_eq!(Status::parse("partially_shipped"), Some(Status::PartiallyShipped));
        assert!(Status::ALL.iter().all(|s| Status::parse(s.as_str()) == Some(*s)));
        assert!(Flag::ALL.iter().all(|f| Flag::parse(f.as_str()) == Some(*f)));
    }

    fn input(value: serde_json::Value) -> CheckoutInput {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn every_bad_checkout_field_is_named() {
        let errors = input(serde_json::json!({
            "cart_id": "nope", "email": "not-an-email",
            "shipping_address": { "name": "", "line1": "1 Way", "city": "Town", "postal_code": "1", "country": "XX" },
            "shipping_method": "standard", "payment_method": "4242424242424242"
        }))
        .parse()
        .unwrap_err();
        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            vec!["/cart_id", "/email", "/shipping_address/name", "/shipping_address/country", "/payment_method"]
        );
    }
}
