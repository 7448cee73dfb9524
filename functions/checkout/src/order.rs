//! Orders: what a checkout request must contain, the order itself, and its state machine.
//!
//! ```text
//! pending ──StockReserved──▶ reserved ──PaymentAuthorized──▶ authorized ──▶ confirmed
//!    │                          │                                              │
//!    └──── StockRejected, PaymentFailed, timeout, reservation expiry, ─────────┘──▶ cancelled
//!          customer cancel (any state before shipment)
//! ```
//!
//! An order with nothing to pay (total zero, after a 100 % promotion) goes from `reserved`
//! straight to `confirmed`: payment never authorizes it.
//!
//! Events may arrive late, twice, or out of order. [`Order::apply`] accepts a step that an
//! event implies even if the step before it has not been seen (a `PaymentAuthorized` proves the
//! stock was reserved), ignores what it has already applied, and refuses what cannot happen.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use domain_events::Event;
use domain_events::checkout::{OrderCancelled, OrderConfirmed, Shipping, ShippingAddress};
use domain_events::inventory::RejectionReason;
use kernel::{CartId, FieldError, Money, OrderId, Sku};

use crate::pricing::Totals;

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
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Reserved,
    Authorized,
    Confirmed,
    Cancelled,
}

impl Status {
    pub fn parse(raw: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_owned())).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Reserved => "reserved",
            Self::Authorized => "authorized",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Waiting for the saga: the timeout applies.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Reserved | Self::Authorized)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: Sku,
    pub title: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub line_total: Money,
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
    },
    PaymentFailed {
        reason: String,
    },
    CustomerCancelled,
    TimedOut,
}

/// An event that cannot apply to the order in its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {from} cannot take {step}")]
pub struct Refused {
    pub from: &'static str,
    pub step: String,
}

impl Order {
    fn enter(&mut self, status: Status, at: OffsetDateTime) {
        self.status = status;
        self.history.push(Transition { status, at });
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
        self.enter(Status::Cancelled, at);
        self.cancel_reason = Some(reason.to_owned());
        vec![Event::OrderCancelled(OrderCancelled { order_id: self.order_id, reason: reason.to_owned() })]
    }

    /// Applies a saga step. `Ok(None)`: nothing to do (a repeat or a late echo).
    /// `Ok(Some(events))`: the order changed; publish `events` with it.
    pub fn apply(&mut self, step: &SagaStep, at: OffsetDateTime) -> Result<Option<Vec<Event>>, Refused> {
        use Status::*;
        let refused = |order: &Order| Refused { from: order.status.as_str(), step: format!("{step:?}") };
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
            (Reserved | Authorized | Confirmed | Cancelled, SagaStep::StockReserved) => return Ok(None),
            (Pending | Reserved, SagaStep::PaymentAuthorized { payment_intent_id }) => {
                if self.status == Pending {
                    // Payment authorizes only after StockReserved: the reservation happened.
                    self.enter(Reserved, at);
                }
                self.payment_intent_id = Some(payment_intent_id.clone());
                self.enter(Authorized, at);
                self.enter(Confirmed, at);
                vec![self.confirmed()]
            }
            (Authorized | Confirmed, SagaStep::PaymentAuthorized { .. }) => return Ok(None),
            // Payment voids an authorization that lands on a cancelled order (it saw the
            // cancellation too); the order itself stays cancelled.
            (Cancelled, SagaStep::PaymentAuthorized { .. }) => return Ok(None),
            (Pending, SagaStep::StockRejected(reason)) => self.cancel(reason.as_str(), at),
            (Pending | Reserved, SagaStep::PaymentFailed { reason }) => {
                self.payment_failure = Some(reason.clone());
                self.cancel("payment_failed", at)
            }
            (Pending | Reserved | Authorized, SagaStep::TimedOut) => self.cancel("timeout", at),
            // Inventory only lets a hold lapse while it is still a hold: if it lapsed, the stock is
            // gone even when our confirmation raced it, so the order cannot be fulfilled.
            (Pending | Reserved | Authorized | Confirmed, SagaStep::ReservationExpired) => {
                self.cancel("reservation_expired", at)
            }
            (Confirmed, SagaStep::TimedOut) => return Ok(None),
            (Pending | Reserved | Authorized | Confirmed, SagaStep::CustomerCancelled) => {
                self.cancel("customer_cancelled", at)
            }
            (Cancelled, SagaStep::StockRejected(_) | SagaStep::PaymentFailed { .. } | SagaStep::TimedOut)
            | (Cancelled, SagaStep::ReservationExpired | SagaStep::CustomerCancelled) => return Ok(None),
            _ => return Err(refused(self)),
        };
        self.version += 1;
        self.updated_at = at;
        Ok(Some(events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::Totals;
    use kernel::Currency;

    fn order() -> Order {
        order_totalling(2500)
    }

    fn order_totalling(total: i64) -> Order {
        let zero = Money::zero(Currency::USD);
        let total = Money::new(total, Currency::USD).unwrap();
        Order {
            order_id: OrderId::new(),
            customer: "alice".into(),
            email: "alice@example.com".into(),
            status: Status::Pending,
            cancel_reason: None,
            payment_failure: None,
            lines: Vec::new(),
            totals: Totals {
                subtotal: zero,
                discount: zero,
                shipping: zero,
                tax: zero,
                rounding: None,
                total,
                promotions: vec![],
            },
            shipping_address: Address {
                name: "A".into(),
                line1: "1 Way".into(),
                line2: None,
                city: "Town".into(),
                region: None,
                postal_code: "1".into(),
                country: "US".into(),
            },
            shipping_method: "standard".into(),
            promo_code: None,
            payment_method: "pm_card_visa".into(),
            payment_intent_id: None,
            coupon_redemption: None,
            history: vec![],
            version: 1,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            deadline: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn authorized() -> SagaStep {
        SagaStep::PaymentAuthorized { payment_intent_id: "pi_1".into() }
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
