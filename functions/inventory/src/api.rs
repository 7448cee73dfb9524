//! The inventory HTTP API: admin stock management and public availability.

use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

use kernel::{FieldError, Problem, ProblemKind, Sku};
use lambda_glue::Caller;
use lambda_glue::http::{self, ApiResult, Reply};

use crate::service::{self, InventoryError, InventoryStore, MAX_AVAILABILITY_SKUS};
use crate::stock::Warehouse;

const MAX_BODY_BYTES: usize = 4 * 1024;

/// Handles one API Gateway request.
pub async fn handle(store: &impl InventoryStore, request: Request) -> Response<Body> {
    http::finish(route(store, &request).await)
}

#[derive(Debug, Deserialize)]
struct StockInput {
    warehouse: String,
    on_hand: u32,
    /// The `on_hand` this count was based on; if it moved since, nothing is written (412).
    #[serde(default)]
    expected_on_hand: Option<u32>,
}

#[derive(Serialize)]
struct AvailabilityBody {
    items: Vec<SkuAvailability>,
}

#[derive(Serialize)]
struct SkuAvailability {
    sku: Sku,
    available: u32,
}

async fn route(store: &impl InventoryStore, request: &Request) -> ApiResult {
    match http::route_key(request) {
        "GET /availability" => {
            let skus = skus_query(request)?;
            let items = service::availability(store, skus).await.map_err(problem)?;
            let items = items.into_iter().map(|(sku, available)| SkuAvailability { sku, available }).collect();
            Reply::json(200, &AvailabilityBody { items })
        }
        "GET /admin/inventory/{sku}" => {
            Caller::admin(request)?;
            let stock = service::stock(store, sku_path(request)?).await.map_err(problem)?;
            Reply::json(200, &stock)
        }
        "PUT /admin/inventory/{sku}" => {
            Caller::admin(request)?;
            let sku = sku_path(request)?;
            let input: StockInput = http::json_body(request, MAX_BODY_BYTES)?;
            let warehouse = Warehouse::parse(&input.warehouse)
                .map_err(|detail| Problem::invalid_fields(vec![FieldError::new("/warehouse", detail)]))?;
            let stock = service::set_stock(store, sku, warehouse, input.on_hand, input.expected_on_hand)
                .await
                .map_err(problem)?;
            Reply::json(200, &stock)
        }
        other => Err(Problem::new(ProblemKind::NotFound, format!("Inventory has no route `{other}`."))),
    }
}

/// The single mapping from inventory errors to HTTP problems.
fn problem(error: InventoryError) -> Problem {
    match error {
        InventoryError::Invalid(field) => Problem::invalid_fields(vec![field]),
        InventoryError::BelowReserved(error) => Problem::new(ProblemKind::Conflict, error.to_string())
            .with_errors(vec![FieldError::new("/on_hand", error.to_string())]),
        InventoryError::OnHandChanged { .. } => {
            Problem::new(ProblemKind::PreconditionFailed, format!("{error}: read the stock again and recount from it."))
                .with_errors(vec![FieldError::new("/expected_on_hand", error.to_string())])
        }
        InventoryError::Busy => Problem::new(ProblemKind::Conflict, error.to_string()),
        InventoryError::Store(error) => http::internal(&error),
    }
}

fn bad_query(pointer: &str, detail: String) -> Problem {
    Problem::new(ProblemKind::MalformedRequest, format!("{pointer}: {detail}"))
        .with_errors(vec![FieldError::new(pointer, detail)])
}

fn sku_path(request: &Request) -> Result<Sku, Problem> {
    let raw = http::path_param(request, "sku")?;
    Sku::parse(raw).map_err(|e| bad_query("path:sku", e.to_string()))
}

fn skus_query(request: &Request) -> Result<Vec<Sku>, Problem> {
    let raw = http::query_param(request, "skus").unwrap_or("");
    let parts: Vec<&str> = raw.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if parts.is_empty() {
        return Err(bad_query("query:skus", "list one or more SKUs separated by commas".to_owned()));
    }
    if parts.len() > MAX_AVAILABILITY_SKUS {
        return Err(bad_query("query:skus", format!("at most {MAX_AVAILABILITY_SKUS} SKUs per request")));
    }
    parts.into_iter().map(|part| Sku::parse(part).map_err(|e| bad_query("query:skus", e.to_string()))).collect()
}
