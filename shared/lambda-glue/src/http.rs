//! Reading requests and writing responses for `lambda_http` handlers.
//!
//! Every way a body can be wrong becomes a problem+json with the right status: 413 over the
//! size limit, 415 for a non-JSON media type, 400 for unreadable JSON, 422 for JSON of the wrong
//! shape with a JSON Pointer to the offending field. No body shape can reach a 500.

use lambda_http::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use lambda_http::http::{Response, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use kernel::{FieldError, Problem, ProblemKind};

/// What a handler returns: a response, or a problem to render as problem+json.
pub type ApiResult = Result<Response<Body>, Problem>;

/// Response constructors.
#[derive(Debug)]
pub struct Reply;

impl Reply {
    /// A JSON response.
    pub fn json<T: Serialize>(status: u16, body: &T) -> ApiResult {
        let text = serde_json::to_string(body).map_err(|e| internal(&e))?;
        Ok(response(status, "application/json", Body::Text(text)))
    }

    /// An RFC 9457 `application/problem+json` response.
    pub fn problem(problem: &Problem) -> Response<Body> {
        let text = serde_json::to_string(problem).unwrap_or_else(|_| {
            r#"{"type":"/problems/internal-error","title":"Internal error","status":500}"#.to_owned()
        });
        response(problem.status, "application/problem+json", Body::Text(text))
    }

    pub fn no_content() -> Response<Body> {
        let mut reply = Response::new(Body::Empty);
        *reply.status_mut() = StatusCode::NO_CONTENT;
        reply
    }

    /// Adds a header whose value the handler built (an id, a version); refuses invalid bytes.
    pub fn with_header(mut reply: Response<Body>, name: &'static str, value: &str) -> ApiResult {
        let value = HeaderValue::from_str(value).map_err(|e| internal(&e))?;
        reply.headers_mut().insert(HeaderName::from_static(name), value);
        Ok(reply)
    }
}

fn response(status: u16, content_type: &'static str, body: Body) -> Response<Body> {
    let mut reply = Response::new(body);
    *reply.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    reply
}

/// The text of a response body built by [`Reply`] (empty for binary or no body).
pub fn body_text(response: &Response<Body>) -> &str {
    match response.body() {
        Body::Text(text) => text,
        _ => "",
    }
}

/// Turns a handler result into the response Lambda returns.
pub fn finish(result: ApiResult) -> Response<Body> {
    result.unwrap_or_else(|problem| Reply::problem(&problem))
}

/// Logs an unexpected failure with its whole cause chain and returns the opaque 500.
pub fn internal(error: &(dyn std::error::Error + 'static)) -> Problem {
    tracing::error!(error = %crate::logging::cause_chain(error), "request failed");
    Problem::internal()
}

/// Runs an API function: each request is handled by `handle` inside a `request` span naming its
/// route and, when the route has an `{id}`, that id as `correlation_id` (the order id on order
/// routes), so every line the handler logs can be found with the saga's other lines.
pub async fn serve<F, Fut>(handle: F) -> Result<(), lambda_http::Error>
where
    F: Fn(Request) -> Fut + Sync,
    Fut: std::future::Future<Output = Response<Body>> + Send,
{
    let handle = &handle;
    lambda_http::run(lambda_http::service_fn(move |request: Request| respond(handle, request))).await
}

/// One request through `handle`, exactly as [`serve`] runs it for each invocation (the warm
/// benchmark, `bench/src/warm.rs`, calls this in-process without the Runtime API).
pub async fn respond<F, Fut>(handle: &F, request: Request) -> Result<Response<Body>, std::convert::Infallible>
where
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = Response<Body>>,
{
    let span = request_span(&request);
    Ok(tracing::Instrument::instrument(handle(request), span).await)
}

fn request_span(request: &Request) -> tracing::Span {
    let correlation_id = request.path_parameters_ref().and_then(|params| params.first("id")).unwrap_or_default();
    tracing::info_span!("request", route = route_key(request), correlation_id)
}

/// The API Gateway route key (`GET /products/{id}`) the request matched; handlers dispatch on it
/// so the routing table lives in template.yaml alone.
pub fn route_key(request: &Request) -> &str {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.route_key.as_deref().unwrap_or(""),
        _ => "",
    }
}

/// A path parameter of the matched route.
pub fn path_param<'a>(request: &'a Request, name: &str) -> Result<&'a str, Problem> {
    request
        .path_parameters_ref()
        .and_then(|params| params.first(name))
        .ok_or_else(|| Problem::new(ProblemKind::NotFound, format!("No `{name}` in the path.")))
}

/// A query parameter, if present (the first value when repeated).
pub fn query_param<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.query_string_parameters_ref().and_then(|params| params.first(name))
}

/// A request header as text, if present and valid UTF-8.
pub fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|value| value.to_str().ok())
}

/// The `Idempotency-Key` header: required, 1 to 255 visible ASCII characters (Stripe's rule),
/// trimmed. Missing or malformed is a 400 that says why the key is needed: `so` ends "Send an
/// Idempotency-Key header … so …" (e.g. "retries place one order").
pub fn idempotency_key<'a>(request: &'a Request, so: &str) -> Result<&'a str, Problem> {
    let key = header(request, "idempotency-key").map(str::trim).unwrap_or("");
    if key.is_empty() || key.len() > 255 || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Problem::new(
            ProblemKind::MalformedRequest,
            format!("Send an Idempotency-Key header (1 to 255 visible ASCII characters, e.g. a UUID) so {so}."),
        )
        .with_errors(vec![FieldError::new("header:Idempotency-Key", "is required")]));
    }
    Ok(key)
}

/// Parses the JSON body into `T`, mapping every failure to the right problem.
pub fn json_body<T: DeserializeOwned>(request: &Request, max_bytes: usize) -> Result<T, Problem> {
    if let Some(content_type) = header(request, "content-type") {
        let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if media_type != "application/json" && !media_type.ends_with("+json") {
            return Err(Problem::new(
                ProblemKind::UnsupportedMediaType,
                format!("Send the body as application/json, not `{media_type}`."),
            ));
        }
    }
    let bytes: &[u8] = match request.body() {
        Body::Empty => b"",
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => b"",
    };
    if bytes.len() > max_bytes {
        return Err(Problem::new(
            ProblemKind::PayloadTooLarge,
            format!("The body is {} bytes; the limit is {max_bytes}.", bytes.len()),
        ));
    }
    parse_json(bytes)
}

/// Deserializes JSON, reporting where it went wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::new(ProblemKind::MalformedRequest, "The request needs a JSON body."));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let inner = error.inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let mut pointer = json_pointer(error.path());
                let message = strip_position(&inner.to_string());
                // serde reports a missing field at its parent object; point at the field itself.
                if let Some(field) = message.strip_prefix("missing field `").and_then(|rest| rest.strip_suffix('`')) {
                    pointer = format!("{}/{field}", pointer.trim_end_matches('/'));
                }
                Problem::invalid_fields(vec![FieldError::new(pointer, message)])
            }
            _ => malformed(inner),
        }
    })?;
    deserializer.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

fn malformed(error: &serde_json::Error) -> Problem {
    Problem::new(ProblemKind::MalformedRequest, format!("The body is not valid JSON: {error}."))
}

/// `variants[0].price` → `/variants/0/price` (RFC 6901, with `~` and `/` escaped).
fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        pointer.push('/');
        match segment {
            Segment::Seq { index } => pointer.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"))
            }
            Segment::Unknown => pointer.push('?'),
        }
    }
    if pointer.is_empty() { "/".to_owned() } else { pointer }
}

/// serde_json appends " at line 1 column 42"; the pointer already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Line {
        sku: String,
        quantity: u32,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Order {
        lines: Vec<Line>,
    }

    fn problem_of(body: &str) -> Problem {
        match parse_json::<Order>(body.as_bytes()) {
            Ok(order) => panic!("expected a problem, parsed {order:?}"),
            Err(problem) => problem,
        }
    }

    #[test]
    fn unreadable_json_is_a_400() {
        assert_eq!(problem_of("{\"lines\": [").status, 400);
        assert_eq!(problem_of("").status, 400);
        assert_eq!(problem_of(r#"{"lines": []} trailing"#).status, 400);
    }

    #[test]
    fn a_wrong_type_is_a_422_pointing_at_the_field() {
        let problem = problem_of(r#"{"lines": [{"sku": "A", "quantity": -1}]}"#);
        assert_eq!(problem.status, 422);
        assert_eq!(problem.errors[0].pointer, "/lines/0/quantity");
    }

    #[test]
    fn a_missing_field_is_a_422_pointing_at_the_missing_field() {
        let problem = problem_of(r#"{"lines": [{"quantity": 1}]}"#);
        assert_eq!(problem.status, 422);
        assert_eq!(problem.errors[0].pointer, "/lines/0/sku");
        assert_eq!(problem.errors[0].detail, "missing field `sku`");
    }
}
