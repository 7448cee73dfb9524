//! The cart HTTP API. Every route needs a customer token; a cart belongs to the token's `sub`,
//! and another customer's cart answers 404, exactly like a cart that does not exist.

use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use kernel::{CartId, FieldError, Problem, ProblemKind, Sku};
use lambda_glue::Caller;
use lambda_glue::http::{self, ApiResult, Reply};

use crate::service::{self, CartError, CartStore};

const MAX_BODY_BYTES: usize = 1024;

/// Handles one API Gateway request.
pub async fn handle(store: &impl CartStore, request: Request) -> Response<Body> {
    http::finish(route(store, &request).await)
}

#[derive(Debug, Deserialize)]
struct QuantityInput {
    quantity: u32,
}

async fn route(store: &impl CartStore, request: &Request) -> ApiResult {
    let caller = Caller::from_request(request)?;
    let now = OffsetDateTime::now_utc();
    match http::route_key(request) {
        "POST /carts" => {
            let cart = service::create(store, &caller.subject, now).await.map_err(problem)?;
            Reply::with_header(Reply::json(201, &cart)?, "location", &format!("/carts/{}", cart.id))
        }
        "GET /carts/{id}" => {
            Reply::json(200, &service::show(store, cart_id(request)?, &caller.subject).await.map_err(problem)?)
        }
        "PUT /carts/{id}/items/{sku}" => {
            let (id, sku) = (cart_id(request)?, sku(request)?);
            let input: QuantityInput = http::json_body(request, MAX_BODY_BYTES)?;
            let cart =
                service::set_quantity(store, id, &caller.subject, sku, input.quantity, now).await.map_err(problem)?;
            Reply::json(200, &cart)
        }
        "DELETE /carts/{id}/items/{sku}" => {
            let (id, sku) = (cart_id(request)?, sku(request)?);
            let cart = service::set_quantity(store, id, &caller.subject, sku, 0, now).await.map_err(problem)?;
            Reply::json(200, &cart)
        }
        other => Err(Problem::new(ProblemKind::NotFound, format!("The cart has no route `{other}`."))),
    }
}

/// The single mapping from cart errors to HTTP problems.
fn problem(error: CartError) -> Problem {
    match error {
        CartError::NotFound(id) => Problem::new(ProblemKind::NotFound, format!("You have no cart `{id}`.")),
        CartError::Invalid(field) => Problem::invalid_fields(vec![field]),
        CartError::Store(error) => http::internal(&error),
    }
}

fn cart_id(request: &Request) -> Result<CartId, Problem> {
    let raw = http::path_param(request, "id")?;
    raw.parse().map_err(|_| problem(CartError::NotFound(raw.to_owned())))
}

fn sku(request: &Request) -> Result<Sku, Problem> {
    let raw = http::path_param(request, "sku")?;
    Sku::parse(raw).map_err(|e| Problem::invalid_fields(vec![FieldError::new("path:sku", e.to_string())]))
}
