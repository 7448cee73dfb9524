//! Checkout and order use cases, and the ports they need.

use time::{Duration, OffsetDateTime};

use adapters::dynamo::Unavailable;
use adapters::retry::{Attempt, until_won};
use domain_events::checkout::{CartSnapshot, OrderLine as EventLine, OrderPlaced};
use domain_events::queries::PricedCart;
use domain_events::{Envelope, Event, Metadata};
use kernel::page::Page as SweepPage;
use kernel::{CartId, FieldError, OrderId};

use crate::order::{CheckoutInput, Flag, Order, OrderLine, PaymentFacts, Refused, SagaStep, Status, Transition};
use crate::pricing::{self, PricingConfig, PricingError};
use crate::view::OrderView;

/// A response saved under an idempotency key, to replay to retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedReply {
    /// The request it answered, canonical JSON: a retry must match it exactly.
    pub request: String,
    pub status: u16,
    pub body: String,
}

/// Everything one placement writes, atomically.
#[derive(Debug, Clone)]
pub struct Placement {
    pub order: Order,
    pub event: Envelope,
    pub idempotency_key: String,
    pub reply: SavedReply,
    /// A limited coupon: its code and how many redemptions it allows.
    pub coupon_limit: Option<(String, u64)>,
}

/// How a placement write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    Done,
    /// Another request with the same key got there first.
    DuplicateKey,
    CouponExhausted,
    /// A concurrent write touched the same items: try again.
    Conflict,
}

/// How a versioned order write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Done,
    Stale,
}

#[derive(Debug, thiserror::Error)]
#[error("checkout storage failed")]
pub struct StoreError(#[from] pub Unavailable);

/// A page of orders.
#[derive(Debug, Clone)]
pub struct Page {
    pub orders: Vec<Order>,
    pub next_cursor: Option<String>,
}

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(transparent)]
    Cursor(#[from] adapters::CursorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Unavailable> for PageError {
    fn from(error: Unavailable) -> Self {
        Self::Store(StoreError(error))
    }
}

/// The storage port.
#[allow(async_fn_in_trait)]
pub trait OrderStore {
    /// Where a listing of overdue orders goes on (the store's own, opaque to the domain).
    type Cursor;
    async fn saved_reply(&self, customer: &str, key: &str) -> Result<Option<SavedReply>, StoreError>;
    async fn place(&self, placement: &Placement) -> Result<Placed, StoreError>;
    async fn get(&self, id: OrderId) -> Result<Option<Order>, StoreError>;
    /// Writes `order` and its events if the stored version is still `expected`; with
    /// `returned_coupon`, gives that coupon's redemption back in the same transaction.
    async fn save(
        &self,
        order: &Order,
        expected: u64,
        events: &[Envelope],
        returned_coupon: Option<&str>,
    ) -> Result<Saved, StoreError>;
    async fn by_customer(&self, customer: &str, limit: usize, cursor: Option<&str>) -> Result<Page, PageError>;
    async fn by_status(&self, status: Status, limit: usize, cursor: Option<&str>) -> Result<Page, PageError>;
    /// Orders that carry `flag`, newest first. Pages may hold fewer than `limit` (the index holds
    /// every flagged order, filtered by flag).
    async fn by_flag(&self, flag: Flag, limit: usize, cursor: Option<&str>) -> Result<Page, PageError>;
    /// Open orders whose deadline passed before `now`, oldest deadline first, at most `limit`,
    /// after `after`. The listing comes from an eventually consistent index: it says where to
    /// look, the order itself says what to do.
    async fn overdue(
        &self,
        now: OffsetDateTime,
        limit: usize,
        after: Option<Self::Cursor>,
    ) -> Result<SweepPage<OrderId, Self::Cursor>, StoreError>;
}

#[derive(Debug, thiserror::Error)]
#[error("the cart service failed")]
pub struct CartReadError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// The cart, as checkout may see it: through the cart's own query, never its table.
#[allow(async_fn_in_trait)]
pub trait CartReader {
    async fn priced_cart(&self, cart_id: CartId, customer: &str) -> Result<Option<PricedCart>, CartReadError>;
}

/// Why a checkout or order request failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    #[error("the Idempotency-Key was used for a different request")]
    KeyReused,
    #[error("no order {0}")]
    NotFound(String),
    #[error(transparent)]
    NotCancellable(Refused),
    #[error("the order kept changing")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cart(#[from] CartReadError),
}

/// A response to send: fresh or replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub replayed: bool,
}

fn invalid(pointer: &str, detail: impl Into<String>) -> CheckoutError {
    CheckoutError::Invalid(vec![FieldError::new(pointer, detail)])
}

fn pricing_error(error: PricingError) -> CheckoutError {
    let pointer = match &error {
        PricingError::UnknownShippingMethod(_) | PricingError::ShippingUnavailable { .. } => "/shipping_method",
        PricingError::UnknownPromoCode(_) => "/promo_code",
        PricingError::Empty | PricingError::NotSold(_) | PricingError::Money(_) => "/cart_id",
    };
    invalid(pointer, error.to_string())
}

/// The settings placement needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub pricing: PricingConfig,
    /// How long an order may wait for stock and payment before it is cancelled.
    pub timeout: Duration,
}

/// `POST /checkout`: places an order once per idempotency key, however often it is retried.
///
/// The order, its `OrderPlaced` event, the saved reply and any coupon redemption are one
/// transaction whose first condition is "no reply saved under this key": concurrent duplicates
/// produce one order, and every other attempt replays the winner's reply.
/// One `POST /checkout` as received.
#[derive(Debug, Clone)]
pub struct PlaceRequest<'a> {
    /// The caller's JWT `sub`.
    pub customer: &'a str,
    /// The `Idempotency-Key` header.
    pub key: &'a str,
    /// The body in canonical JSON (keys sorted): what a retry must repeat exactly.
    pub canonical_body: &'a str,
    pub input: CheckoutInput,
}

pub async fn place_order(
    store: &impl OrderStore,
    carts: &impl CartReader,
    settings: &Settings,
    placing: PlaceRequest<'_>,
    now: OffsetDateTime,
) -> Result<Reply, CheckoutError> {
    let PlaceRequest { customer, key, canonical_body: request_json, input } = placing;
    if let Some(saved) = store.saved_reply(customer, key).await? {
        return replay(saved, request_json);
    }
    let request = input.parse().map_err(CheckoutError::Invalid)?;
    let cart = carts
        .priced_cart(request.cart_id, customer)
        .await?
        .ok_or_else(|| invalid("/cart_id", format!("you have no cart {}", request.cart_id)))?;
    let totals = pricing::totals(
        &settings.pricing,
        &cart.lines,
        &request.shipping_method,
        &request.address.country,
        request.promo_code.as_deref(),
    )
    .map_err(pricing_error)?;

    let lines: Vec<OrderLine> = cart
        .lines
        .iter()
        .filter_map(|line| {
            let offer = line.offer.as_ref()?;
            Some(OrderLine {
                sku: line.sku.clone(),
                title: offer.title.clone(),
                quantity: line.quantity,
                unit_price: offer.unit_price,
                line_total: offer.unit_price.checked_mul(line.quantity).ok()?,
            })
        })
        .collect();
    let coupon_limit = request.promo_code.as_deref().and_then(|code| {
        let coupon = settings.pricing.coupon(code)?;
        Some((coupon.code.clone()?.to_uppercase(), coupon.max_redemptions?))
    });
    let order_id = OrderId::new();
    let order = Order {
        order_id,
        customer: customer.to_owned(),
        email: request.email.clone(),
        status: Status::Pending,
        cancel_reason: None,
        payment_failure: None,
        lines,
        totals,
        shipping_address: request.address.clone(),
        shipping_method: request.shipping_method.clone(),
        promo_code: request.promo_code.clone(),
        payment_method: request.payment_method.clone(),
        payment_intent_id: None,
        payment: PaymentFacts::default(),
        shipment_count: None,
        shipments: Vec::new(),
        flags: Vec::new(),
        capture_failure: None,
        coupon_redemption: coupon_limit.as_ref().map(|(code, _)| code.clone()),
        history: vec![Transition { status: Status::Pending, at: now }],
        version: 1,
        created_at: now,
        updated_at: now,
        deadline: now + settings.timeout,
    };
    let event = Envelope::new(
        Metadata::new(order_id.to_string()),
        Event::OrderPlaced(OrderPlaced {
            order_id,
            customer: customer.to_owned(),
            email: order.email.clone(),
            lines: order
                .lines
                .iter()
                .map(|l| EventLine { sku: l.sku.clone(), quantity: l.quantity, unit_price: l.unit_price })
                .collect(),
            total: order.totals.total,
            payment_method: order.payment_method.clone(),
            cart: Some(CartSnapshot { cart_id: cart.cart_id, version: cart.version }),
        }),
    );
    let body = serde_json::to_string(&OrderView::new(&order, false))
        .map_err(|e| CheckoutError::Store(StoreError(Unavailable::new(e))))?;
    let placement = Placement {
        order,
        event,
        idempotency_key: key.to_owned(),
        reply: SavedReply { request: request_json.to_owned(), status: 202, body: body.clone() },
        coupon_limit,
    };
    // A conflict is another transaction on the same items at the same moment (a retry of this
    // very checkout, or a coupon's count): try the same placement again.
    let placement = &placement;
    let placed = until_won(|| async move {
        Ok::<_, StoreError>(match store.place(placement).await? {
            Placed::Conflict => Attempt::Lost,
            decided => Attempt::Done(decided),
        })
    })
    .await?;
    match placed.ok_or(CheckoutError::Busy)? {
        Placed::Done => {
            tracing::info!(%order_id, "order placed");
            Ok(Reply { status: 202, body, replayed: false })
        }
        Placed::DuplicateKey => {
            let saved = store.saved_reply(customer, key).await?.ok_or(CheckoutError::Busy)?;
            replay(saved, request_json)
        }
        Placed::CouponExhausted => Err(invalid("/promo_code", "this promo code has been fully redeemed")),
        Placed::Conflict => Err(CheckoutError::Busy),
    }
}

fn replay(saved: SavedReply, request_json: &str) -> Result<Reply, CheckoutError> {
    if saved.request != request_json {
        return Err(CheckoutError::KeyReused);
    }
    Ok(Reply { status: saved.status, body: saved.body, replayed: true })
}

/// An order its customer (or an admin) may see.
pub async fn order_for(
    store: &impl OrderStore,
    id: OrderId,
    customer: &str,
    admin: bool,
) -> Result<Order, CheckoutError> {
    match store.get(id).await? {
        Some(order) if admin || order.customer == customer => Ok(order),
        _ => Err(CheckoutError::NotFound(id.to_string())),
    }
}

/// Applies a saga step with optimistic concurrency, publishing what the step emits.
async fn advance(
    store: &impl OrderStore,
    order: Order,
    step: &SagaStep,
    now: OffsetDateTime,
) -> Result<Order, CheckoutError> {
    let id = order.order_id;
    // The first attempt applies the step to the order the caller read; after a lost race (the
    // save is conditional on the version read), to the order as it is now.
    let mut first = Some(order);
    let advanced = until_won(|| {
        let read = first.take();
        async move {
            let mut order = match read {
                Some(order) => order,
                None => store.get(id).await?.ok_or_else(|| CheckoutError::NotFound(id.to_string()))?,
            };
            let (expected, was_cancelled) = (order.version, order.status == Status::Cancelled);
            let events = match order.apply(step, now).map_err(CheckoutError::NotCancellable)? {
                None => return Ok::<_, CheckoutError>(Attempt::Done(order)),
                Some(events) => events,
            };
            let envelopes: Vec<Envelope> =
                events.into_iter().map(|event| Envelope::new(Metadata::new(id.to_string()), event)).collect();
            // The transition into `cancelled` happens once (the save is conditional on the version),
            // so the coupon goes back once.
            let returned_coupon = (order.status == Status::Cancelled && !was_cancelled)
                .then_some(order.coupon_redemption.as_deref())
                .flatten();
            Ok(match store.save(&order, expected, &envelopes, returned_coupon).await? {
                Saved::Done => {
                    tracing::info!(order_id = %id, status = order.status.as_str(), "order advanced");
                    Attempt::Done(order)
                }
                Saved::Stale => Attempt::Lost,
            })
        }
    })
    .await?;
    advanced.ok_or(CheckoutError::Busy)
}

/// `POST /orders/{id}/cancel`: the customer cancels until checkout has seen a shipment leave
/// ([`Refused::AlreadyShipped`] after). Cancelling a cancelled order answers the order as it is.
pub async fn cancel(
    store: &impl OrderStore,
    id: OrderId,
    customer: &str,
    admin: bool,
    now: OffsetDateTime,
) -> Result<Order, CheckoutError> {
    let order = order_for(store, id, customer, admin).await?;
    advance(store, order, &SagaStep::CustomerCancelled, now).await
}

/// The consumer side: a saga event for an order. A step the order cannot take is a late or
/// foreign echo: it is logged and acknowledged, never retried.
pub async fn on_saga_step(
    store: &impl OrderStore,
    id: OrderId,
    step: SagaStep,
    now: OffsetDateTime,
) -> Result<(), CheckoutError> {
    let order = store.get(id).await?.ok_or_else(|| CheckoutError::NotFound(id.to_string()))?;
    match advance(store, order, &step, now).await {
        Ok(_) => Ok(()),
        Err(CheckoutError::NotCancellable(refused)) => {
            tracing::warn!(order_id = %id, %refused, "saga step refused");
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Overdue orders the timeout sweep lists per query.
pub const SWEEP_PAGE: usize = 25;
