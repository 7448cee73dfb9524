//! The fulfillment admin HTTP API: pick lists, dispatch and delivery.

use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use kernel::{FieldError, Problem, ProblemKind, ShipmentId};
use lambda_glue::Caller;
use lambda_glue::http::{self, ApiResult, Reply};

use crate::model::{Shipment, Status, Tracking, Warehouse};
use crate::service::{self, Filter, FulfillmentError, FulfillmentStore, PageError};

/// A dispatch body is a carrier, a tracking number and a URL: 4 KiB is plenty.
const MAX_BODY_BYTES: usize = 4 * 1024;
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

/// Handles one API Gateway request.
pub async fn handle(store: &impl FulfillmentStore, request: Request) -> Response<Body> {
    http::finish(route(store, &request).await)
}

#[derive(Debug, Deserialize)]
struct DispatchInput {
    carrier: String,
    tracking_number: String,
    #[serde(default)]
    tracking_url: Option<String>,
}

#[derive(Serialize)]
struct ShipmentsPage<'a> {
    items: &'a [Shipment],
    next_cursor: Option<&'a str>,
}

async fn route(store: &impl FulfillmentStore, request: &Request) -> ApiResult {
    let now = OffsetDateTime::now_utc();
    // Every route is an admin route: who is asking is checked before anything is read.
    Caller::admin(request)?;
    match http::route_key(request) {
        "GET /admin/shipments" => {
            let filter = filter(request)?;
            let (limit, cursor) = paging(request)?;
            let page = store.list(&filter, limit, cursor).await.map_err(page_problem)?;
            Reply::json(200, &ShipmentsPage { items: &page.items, next_cursor: page.next_cursor.as_deref() })
        }
        "GET /admin/shipments/{id}" => {
            let shipment = service::shipment(store, shipment_id(request)?).await.map_err(problem)?;
            Reply::json(200, &shipment)
        }
        "POST /admin/shipments/{id}/dispatch" => {
            let id = shipment_id(request)?;
            let input: DispatchInput = http::json_body(request, MAX_BODY_BYTES)?;
            let tracking = Tracking::parse(&input.carrier, &input.tracking_number, input.tracking_url.as_deref())
                .map_err(Problem::invalid_fields)?;
            let shipment = service::dispatch(store, id, tracking, now).await.map_err(problem)?;
            Reply::json(200, &shipment)
        }
        "POST /admin/shipments/{id}/deliver" => {
            let shipment = service::deliver(store, shipment_id(request)?, now).await.map_err(problem)?;
            Reply::json(200, &shipment)
        }
        other => Err(Problem::new(ProblemKind::NotFound, format!("Fulfillment has no route `{other}`."))),
    }
}

/// The single mapping from fulfillment errors to HTTP problems.
fn problem(error: FulfillmentError) -> Problem {
    match error {
        FulfillmentError::NotFound(id) => Problem::new(ProblemKind::NotFound, format!("There is no shipment `{id}`.")),
        FulfillmentError::Refused(refused) => {
            Problem::new(ProblemKind::Conflict, format!("{}.", capitalized(&refused.to_string())))
        }
        FulfillmentError::OrderClosed(_) | FulfillmentError::Busy => {
            Problem::new(ProblemKind::Conflict, format!("{}.", capitalized(&error.to_string())))
        }
        FulfillmentError::Store(error) => http::internal(&error),
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
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

/// A malformed id names no shipment: 404, as an unknown one.
fn shipment_id(request: &Request) -> Result<ShipmentId, Problem> {
    let raw = http::path_param(request, "id")?;
    raw.parse().map_err(|_| problem(FulfillmentError::NotFound(raw.to_owned())))
}

/// `status` (default `pending`: the pick list) and `warehouse` (optional).
fn filter(request: &Request) -> Result<Filter, Problem> {
    let status = match http::query_param(request, "status").filter(|s| !s.is_empty()) {
        None => Status::Pending,
        Some(raw) => Status::parse(raw).ok_or_else(|| {
            bad_query("query:status", format!("`{raw}` is not one of pending, dispatched, delivered, cancelled"))
        })?,
    };
    let warehouse = http::query_param(request, "warehouse")
        .filter(|w| !w.is_empty())
        .map(|raw| Warehouse::parse(raw).map_err(|detail| bad_query("query:warehouse", detail)))
        .transpose()?;
    Ok(Filter { status, warehouse })
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
