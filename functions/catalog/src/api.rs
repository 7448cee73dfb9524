//! The catalog's HTTP API: dispatch on the API Gateway route key, parse, call one use case, map.
//!
//! The routes are declared in template.yaml; [`handle`] matches the same route keys.

use lambda_http::{Body, Request, Response};
use serde::Serialize;
use time::OffsetDateTime;

use kernel::{FieldError, Problem, ProblemKind, ProductId};
use lambda_glue::Caller;
use lambda_glue::http::{self, ApiResult, Reply};

use crate::product::{Category, Product, ProductInput, keywords};
use crate::service::{self, CatalogError, CatalogStore, DEFAULT_LIMIT, ListQuery, MAX_LIMIT, Precondition};

/// Largest product body we accept; a product at every limit is well under this.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Handles one API Gateway request.
pub async fn handle(store: &impl CatalogStore, request: Request) -> Response<Body> {
    http::finish(route(store, &request).await)
}

async fn route(store: &impl CatalogStore, request: &Request) -> ApiResult {
    let now = OffsetDateTime::now_utc();
    match http::route_key(request) {
        "GET /products" => {
            let page = service::list(store, &list_query(request)?).await.map_err(problem)?;
            Reply::json(200, &PageBody { items: &page.items, next_cursor: page.next_cursor.as_deref() })
        }
        "GET /products/{id}" => {
            let product = service::get_active(store, product_id(request)?).await.map_err(problem)?;
            Reply::json(200, &product)
        }
        "GET /categories" => {
            let categories = service::categories(store).await.map_err(problem)?;
            Reply::json(200, &CategoriesBody { items: &categories })
        }
        "POST /admin/products" => {
            Caller::admin(request)?;
            let input: ProductInput = http::json_body(request, MAX_BODY_BYTES)?;
            let product = service::create(store, input, now).await.map_err(problem)?;
            let reply = with_etag(Reply::json(201, &product)?, &product)?;
            Reply::with_header(reply, "location", &format!("/admin/products/{}", product.id))
        }
        "GET /admin/products/{id}" => {
            Caller::admin(request)?;
            let product = service::get_any(store, product_id(request)?).await.map_err(problem)?;
            with_etag(Reply::json(200, &product)?, &product)
        }
        "PUT /admin/products/{id}" => {
            Caller::admin(request)?;
            let id = product_id(request)?;
            let precondition = if_match(request)?;
            let input: ProductInput = http::json_body(request, MAX_BODY_BYTES)?;
            let product = service::update(store, id, precondition, input, now).await.map_err(problem)?;
            with_etag(Reply::json(200, &product)?, &product)
        }
        "DELETE /admin/products/{id}" => {
            Caller::admin(request)?;
            let id = product_id(request)?;
            let product = service::archive(store, id, if_match(request)?, now).await.map_err(problem)?;
            with_etag(Reply::json(200, &product)?, &product)
        }
        other => Err(Problem::new(ProblemKind::NotFound, format!("The catalog has no route `{other}`."))),
    }
}

#[derive(Serialize)]
struct PageBody<'a> {
    items: &'a [Product],
    next_cursor: Option<&'a str>,
}

#[derive(Serialize)]
struct CategoriesBody<'a> {
    items: &'a [service::CategorySummary],
}

/// The single mapping from catalog errors to HTTP problems.
fn problem(error: CatalogError) -> Problem {
    match error {
        CatalogError::Invalid(errors) => Problem::invalid_fields(errors),
        CatalogError::BadQuery(field) => bad_query(field),
        CatalogError::NotFound(id) => Problem::new(ProblemKind::NotFound, format!("There is no product `{id}`.")),
        CatalogError::Taken { errors, detail } => Problem::new(ProblemKind::Conflict, detail).with_errors(errors),
        CatalogError::PreconditionRequired => Problem::new(
            ProblemKind::PreconditionRequired,
            "Send `If-Match` with the version you last read (the `ETag` of GET /admin/products/{id}).",
        )
        .with_errors(vec![FieldError::new("header:If-Match", "is required")]),
        CatalogError::StaleVersion { expected, current } => Problem::new(
            ProblemKind::PreconditionFailed,
            format!("You sent If-Match version {expected}, but the product is at version {current}; read it again."),
        ),
        CatalogError::Store(error) => http::internal(&error),
    }
}

fn bad_query(field: FieldError) -> Problem {
    Problem::new(ProblemKind::MalformedRequest, format!("{}: {}", field.pointer, field.detail)).with_errors(vec![field])
}

fn with_etag(reply: Response<Body>, product: &Product) -> ApiResult {
    Reply::with_header(reply, "etag", &format!("\"{}\"", product.version))
}

/// A product id from the path; an id that cannot exist is simply not found.
fn product_id(request: &Request) -> Result<ProductId, Problem> {
    let raw = http::path_param(request, "id")?;
    raw.parse().map_err(|_| problem(CatalogError::NotFound(raw.to_owned())))
}

/// Parses `If-Match`: `"3"`, `W/"3"`, `3` or `*`. Anything else can never match: 412.
fn if_match(request: &Request) -> Result<Precondition, Problem> {
    let Some(raw) = http::header(request, "if-match") else {
        return Ok(Precondition::Absent);
    };
    let raw = raw.trim();
    if raw == "*" {
        return Ok(Precondition::Any);
    }
    let tag = raw.trim_start_matches("W/").trim_matches('"');
    tag.parse().map(Precondition::Version).map_err(|_| {
        Problem::new(
            ProblemKind::PreconditionFailed,
            format!("If-Match `{raw}` is not a product version; send the ETag you received."),
        )
    })
}

fn list_query(request: &Request) -> Result<ListQuery, Problem> {
    let limit = match http::query_param(request, "limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => raw.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
            bad_query(FieldError::new("query:limit", format!("`{raw}` is not a whole number from 1 to {MAX_LIMIT}")))
        })?,
    };
    let category = http::query_param(request, "category")
        .map(|raw| Category::parse(raw).map_err(|detail| bad_query(FieldError::new("query:category", detail))))
        .transpose()?;
    let words = http::query_param(request, "q").map(|q| keywords([q]).into_iter().collect()).unwrap_or_default();
    let cursor = http::query_param(request, "cursor").filter(|c| !c.is_empty()).map(str::to_owned);
    Ok(ListQuery { category, words, limit, cursor })
}

#[cfg(test)]
mod tests {
    use adapters::cursor::KeyError;
    use adapters::secrets::{OnFirstUse, Stage};

    use super::*;
    use crate::testing::MemoryCatalog;

    /// The sample API Gateway request `events/apigw/{name}`, `GET /products/{id}` asking for `id`.
    fn sample(name: &str, id: Option<ProductId>) -> Request {
        let event = match name {
            "get-product.json" => include_str!("../../../events/apigw/get-product.json"),
            _ => include_str!("../../../events/apigw/list-products.json"),
        };
        let event = id.map_or(event.to_owned(), |id| event.replace("prod_01M81C1XXH84G7ZWYRD6Z1RV0W", &id.to_string()));
        lambda_http::request::from_str(&event).unwrap()
    }

    #[tokio::test]
    async fn while_the_cursor_secret_cannot_be_read_products_are_served_and_only_listings_fail_naming_nothing() {
        const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:CursorSigningSecret-AbCdEf";
        let unreadable = || async { Err(KeyError::TooShort { arn: ARN.to_owned(), stage: Stage::Current }) };
        let store = MemoryCatalog::with_cursor_keys(OnFirstUse::new(unreadable));
        let input = serde_json::from_value(serde_json::json!({
            "slug": "mug", "title": "Stoneware mug", "category": "mugs", "status": "active",
            "variants": [{ "sku": "MUG-01", "price": { "amount": 1800, "currency": "USD" } }]
        }))
        .unwrap();
        let mug = service::create(&store, input, OffsetDateTime::now_utc()).await.unwrap();

        let read = handle(&store, sample("get-product.json", Some(mug.id))).await;
        let listings = [
            handle(&store, sample("list-products.json", None)).await,
            handle(&store, sample("list-products.json", None)).await,
        ];

        assert_eq!(read.status(), 200, "{}", http::body_text(&read));
        assert!(http::body_text(&read).contains(&mug.id.to_string()));
        for listing in listings {
            let body: serde_json::Value = serde_json::from_str(http::body_text(&listing)).unwrap();
            assert_eq!(listing.status(), 500);
            assert_eq!(listing.headers()["content-type"], "application/problem+json");
            assert_eq!((body["type"].as_str(), body["status"].as_u64()), (Some("/problems/internal-error"), Some(500)));
            assert!(!http::body_text(&listing).contains("secret"), "names nothing: {body}");
        }
    }
}
