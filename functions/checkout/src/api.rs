//! The checkout and orders HTTP API.

use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use kernel::{FieldError, OrderId, Problem, ProblemKind, ReturnId, Warehouse};
use lambda_glue::Caller;
use lambda_glue::http::{self, ApiResult, Reply};

use crate::order::{CheckoutInput, Flag, MAX_RESOLUTION_NOTE_CHARS, Refused, Status};
use crate::pricing::ShippingMethod;
use crate::returns::{MAX_NOTE_CHARS, Return, ReturnInput, ReturnRefused, ReturnStatus};
use crate::service::{
    self, CartReader, CheckoutError, FulfillmentGate, OrderStore, Page, PageError, ReturnSummary, Settings,
};
use crate::view::OrderView;

/// A checkout body is a few hundred bytes; 16 KiB leaves room for long addresses.
const MAX_BODY_BYTES: usize = 16 * 1024;
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

/// What the API needs.
#[derive(Debug)]
pub struct Context<S, C, F> {
    pub store: S,
    pub carts: C,
    /// Asked before a customer cancel of a confirmed order.
    pub fulfillment: F,
    pub settings: Settings,
}

/// Handles one API Gateway request.
pub async fn handle<S: OrderStore, C: CartReader, F: FulfillmentGate>(
    context: &Context<S, C, F>,
    request: Request,
) -> Response<Body> {
    http::finish(route(context, &request).await)
}

#[derive(Serialize)]
struct OrdersPage<'a> {
    items: Vec<OrderView<'a>>,
    next_cursor: Option<&'a str>,
}

impl<'a> OrdersPage<'a> {
    fn of(page: &'a Page, admin: bool) -> Self {
        Self {
            items: page.orders.iter().map(|order| OrderView::new(order, admin)).collect(),
            next_cursor: page.next_cursor.as_deref(),
        }
    }
}

/// `a, b or c`: the values a query parameter takes, for its 400.
fn one_of(values: &[&str]) -> String {
    match values {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// A return as a response body: the return and its order.
#[derive(Serialize)]
struct ReturnView<'a> {
    order_id: OrderId,
    #[serde(flatten)]
    ret: &'a Return,
}

#[derive(Serialize)]
struct ReturnsBody<'a> {
    items: &'a [ReturnSummary],
    next_cursor: Option<&'a str>,
}

#[derive(Deserialize)]
struct ReceiveBody {
    warehouse: String,
}

#[derive(Deserialize)]
struct RejectBody {
    note: String,
}

#[derive(Deserialize)]
struct ResolveBody {
    note: String,
    /// The order's `version` the admin decided on.
    version: u64,
}

#[derive(Serialize)]
struct MethodsBody<'a> {
    items: &'a [ShippingMethod],
}

async fn route<S: OrderStore, C: CartReader, F: FulfillmentGate>(
    context: &Context<S, C, F>,
    request: &Request,
) -> ApiResult {
    let now = OffsetDateTime::now_utc();
    let store = &context.store;
    match http::route_key(request) {
        "GET /shipping-methods" => Reply::json(200, &MethodsBody { items: &context.settings.pricing.shipping_methods }),
        "POST /checkout" => {
            let caller = Caller::from_request(request)?;
            let key = http::idempotency_key(request, "retries place one order")?;
            let input: CheckoutInput = http::json_body(request, MAX_BODY_BYTES)?;
            // The canonical form of the body (keys sorted) is what a retry must repeat.
            let canonical: serde_json::Value = http::json_body(request, MAX_BODY_BYTES)?;
            let placing =
                service::PlaceRequest { customer: &caller.subject, key, canonical_body: &canonical.to_string(), input };
            let reply =
                service::place_order(store, &context.carts, &context.settings, placing, now).await.map_err(problem)?;
            let response = raw_json(reply.status, reply.body)?;
            let response =
                if reply.replayed { Reply::with_header(response, "idempotent-replayed", "true")? } else { response };
            let id = serde_json::from_str::<serde_json::Value>(http::body_text(&response)).ok();
            match id.as_ref().and_then(|v| v["order_id"].as_str()) {
                Some(id) => Reply::with_header(response, "location", &format!("/orders/{id}")),
                None => Ok(response),
            }
        }
        "GET /orders/{id}" => {
            let caller = Caller::from_request(request)?;
            let order = service::order_for(store, order_id(request)?, &caller.subject, caller.is_admin())
                .await
                .map_err(problem)?;
            Reply::json(200, &OrderView::new(&order, caller.is_admin()))
        }
        "GET /orders" => {
            let caller = Caller::from_request(request)?;
            let (limit, cursor) = paging(request)?;
            let page = store.by_customer(&caller.subject, limit, cursor).await.map_err(page_problem)?;
            Reply::json(200, &OrdersPage::of(&page, caller.is_admin()))
        }
        "POST /orders/{id}/cancel" => {
            let caller = Caller::from_request(request)?;
            let (id, admin) = (order_id(request)?, caller.is_admin());
            let order =
                service::cancel(store, &context.fulfillment, id, &caller.subject, admin, now).await.map_err(problem)?;
            Reply::json(200, &OrderView::new(&order, caller.is_admin()))
        }
        "POST /orders/{id}/returns" => {
            let caller = Caller::from_request(request)?;
            let key = http::idempotency_key(request, "a retry answers the same return")?;
            let input: ReturnInput = http::json_body(request, MAX_BODY_BYTES)?;
            let (order_id, ret) =
                service::request_return(store, &context.settings, order_id(request)?, &caller.subject, input, key, now)
                    .await
                    .map_err(problem)?;
            Reply::json(201, &ReturnView { order_id, ret: &ret })
        }
        "GET /admin/returns" => {
            Caller::admin(request)?;
            let (limit, cursor) = paging(request)?;
            let raw = http::query_param(request, "status").unwrap_or("");
            let status = ReturnStatus::parse(raw).ok_or_else(|| {
                let statuses: Vec<_> = ReturnStatus::ALL.iter().map(|s| s.as_str()).collect();
                bad_query("query:status", format!("`{raw}` is not one of {}", one_of(&statuses)))
            })?;
            let page = store.returns_by_status(status, limit, cursor).await.map_err(page_problem)?;
            Reply::json(200, &ReturnsBody { items: &page.items, next_cursor: page.next_cursor.as_deref() })
        }
        "GET /admin/returns/{id}" => {
            Caller::admin(request)?;
            let (order_id, ret) = service::return_for_admin(store, return_id(request)?).await.map_err(problem)?;
            Reply::json(200, &ReturnView { order_id, ret: &ret })
        }
        "POST /admin/returns/{id}/receive" => {
            Caller::admin(request)?;
            let id = return_id(request)?;
            let body: ReceiveBody = http::json_body(request, MAX_BODY_BYTES)?;
            let warehouse = Warehouse::parse(&body.warehouse).map_err(|e| field("/warehouse", e))?;
            let (order_id, ret) = service::receive_return(store, id, warehouse, now).await.map_err(problem)?;
            Reply::json(200, &ReturnView { order_id, ret: &ret })
        }
        "POST /admin/returns/{id}/reject" => {
            Caller::admin(request)?;
            let id = return_id(request)?;
            let body: RejectBody = http::json_body(request, MAX_BODY_BYTES)?;
            let note = body.note.trim().to_owned();
            if note.is_empty() || note.chars().count() > MAX_NOTE_CHARS {
                return Err(field("/note", format!("must be 1 to {MAX_NOTE_CHARS} characters")));
            }
            let (order_id, ret) = service::reject_return(store, id, note, now).await.map_err(problem)?;
            Reply::json(200, &ReturnView { order_id, ret: &ret })
        }
        "POST /admin/orders/{id}/flags/{flag}/resolve" => {
            let caller = Caller::admin(request)?;
            let raw = http::path_param(request, "flag")?;
            let flag = Flag::parse(raw).ok_or_else(|| {
                let flags: Vec<_> = Flag::ALL.iter().map(|f| f.as_str()).collect();
                bad_query("path:flag", format!("`{raw}` is not one of {}", one_of(&flags)))
            })?;
            let body: ResolveBody = http::json_body(request, MAX_BODY_BYTES)?;
            let note = body.note.trim();
            if note.is_empty() || note.chars().count() > MAX_RESOLUTION_NOTE_CHARS {
                return Err(field("/note", format!("must be 1 to {MAX_RESOLUTION_NOTE_CHARS} characters")));
            }
            let order =
                service::resolve_flag(store, order_id(request)?, flag, body.version, &caller.subject, note, now)
                    .await
                    .map_err(problem)?;
            Reply::json(200, &OrderView::new(&order, true))
        }
        "GET /admin/orders" => {
            Caller::admin(request)?;
            let (limit, cursor) = paging(request)?;
            let page = match (http::query_param(request, "status"), http::query_param(request, "flag")) {
                (Some(raw), None) => {
                    let status = Status::parse(raw).ok_or_else(|| {
                        let statuses: Vec<_> = Status::ALL.iter().map(|s| s.as_str()).collect();
                        bad_query("query:status", format!("`{raw}` is not one of {}", one_of(&statuses)))
                    })?;
                    store.by_status(status, limit, cursor).await
                }
                (None, Some(raw)) => {
                    let flag = Flag::parse(raw).ok_or_else(|| {
                        let flags: Vec<_> = Flag::ALL.iter().map(|f| f.as_str()).collect();
                        bad_query("query:flag", format!("`{raw}` is not one of {}", one_of(&flags)))
                    })?;
                    store.by_flag(flag, limit, cursor).await
                }
                _ => {
                    return Err(bad_query("query:status", "give either `status` or `flag`, not both".to_owned()));
                }
            };
            let page = page.map_err(page_problem)?;
            Reply::json(200, &OrdersPage::of(&page, true))
        }
        other => Err(Problem::new(ProblemKind::NotFound, format!("Checkout has no route `{other}`."))),
    }
}

fn raw_json(status: u16, body: String) -> ApiResult {
    let value: serde_json::Value = serde_json::from_str(&body).map_err(|e| http::internal(&e))?;
    Reply::json(status, &value)
}

/// The single mapping from checkout errors to HTTP problems.
fn problem(error: CheckoutError) -> Problem {
    match error {
        CheckoutError::Invalid(errors) => Problem::invalid_fields(errors),
        CheckoutError::KeyReused | CheckoutError::Return(ReturnRefused::KeyReused) => Problem::new(
            ProblemKind::ValidationFailed,
            "This Idempotency-Key was already used with a different request body; use a new key for a new request.",
        )
        .with_errors(vec![FieldError::new("header:Idempotency-Key", "already used with a different body")]),
        CheckoutError::NotFound(id) => Problem::new(ProblemKind::NotFound, format!("You have no order `{id}`.")),
        CheckoutError::NotCancellable(refused @ Refused::AlreadyShipped { .. }) => {
            Problem::new(ProblemKind::AlreadyShipped, refused.to_string())
        }
        CheckoutError::NotCancellable(refused @ Refused::Impossible { .. }) => {
            Problem::new(ProblemKind::Conflict, refused.to_string())
        }
        CheckoutError::Return(ReturnRefused::Invalid(errors)) => Problem::invalid_fields(errors),
        CheckoutError::Return(ReturnRefused::NotFound(id)) => {
            Problem::new(ProblemKind::NotFound, format!("There is no return `{id}`."))
        }
        CheckoutError::ReturnNotFound(id) => Problem::new(ProblemKind::NotFound, format!("There is no return `{id}`.")),
        CheckoutError::Return(refused @ ReturnRefused::Conflict(_)) => {
            Problem::new(ProblemKind::Conflict, refused.to_string())
        }
        CheckoutError::Stale { seen, current } => Problem::new(
            ProblemKind::PreconditionFailed,
            format!(
                "You decided on version {seen} of the order, but it is at version {current} now: nothing was \
                 changed. Read the order again and decide on it as it is."
            ),
        )
        .with_errors(vec![FieldError::new("/version", format!("the order is at version {current}"))]),
        CheckoutError::Busy => {
            Problem::new(ProblemKind::Conflict, "The order is being changed by another request; try again.")
        }
        CheckoutError::Store(error) => http::internal(&error),
        CheckoutError::Cart(error) => http::internal(&error),
        // Nothing was cancelled; like every upstream failure, an opaque 500 with the cause logged.
        CheckoutError::Fulfillment(error) => http::internal(&error),
    }
}

fn page_problem(error: PageError) -> Problem {
    match error {
        PageError::Cursor(error) => bad_query("query:cursor", error.to_string()),
        PageError::Store(error) => http::internal(&error),
        PageError::Keys(error) => http::internal(&error),
    }
}

fn bad_query(pointer: &str, detail: String) -> Problem {
    Problem::new(ProblemKind::MalformedRequest, format!("{pointer}: {detail}"))
        .with_errors(vec![FieldError::new(pointer, detail)])
}

fn return_id(request: &Request) -> Result<ReturnId, Problem> {
    let raw = http::path_param(request, "id")?;
    raw.parse().map_err(|_| problem(CheckoutError::ReturnNotFound(raw.to_owned())))
}

fn field(pointer: &str, detail: impl Into<String>) -> Problem {
    Problem::invalid_fields(vec![FieldError::new(pointer, detail)])
}

fn order_id(request: &Request) -> Result<OrderId, Problem> {
    let raw = http::path_param(request, "id")?;
    raw.parse().map_err(|_| problem(CheckoutError::NotFound(raw.to_owned())))
}

fn paging(request: &Request) -> Result<(usize, Option<&str>), Problem> {
    let limit =
        match http::query_param(request, "limit") {
            None => DEFAULT_LIMIT,
            Some(raw) => raw.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                bad_query("query:limit", format!("`{raw}` is not a whole number from 1 to {MAX_LIMIT}"))
            })?,
        };
    Ok((limit, http::query_param(request, "cursor").filter(|c| !c.is_empty())))
}
