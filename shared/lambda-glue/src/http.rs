//! Reading requests and writing responses for `lambda_http` handlers.
//!
//! Every way a body can be wrong becomes a problem+json with the right status: 413 over the
//! size limit, 415 for a non-JSON media type, 400 for unreadable JSON, 422 for JSON of the wrong
//! shape with a JSON Pointer to the offending field. No body shape can reach a 500.

use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_http::http::header::{CONTENT_TYPE, HeaderName, HeaderValue, SET_COOKIE};
use lambda_http::http::{HeaderMap, Response, StatusCode};
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Body, LambdaEvent, Request, RequestExt};
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
///
/// The functions are behind an HTTP API (payload format 2.0) only, so the payload is read as
/// that event and the answer written as its response ([`invoke`]), not through `lambda_http::run`:
/// its adapter re-encodes every text body by the charset its content type names, which links
/// encoding_rs's decoders of every legacy encoding (~150 KB per binary, BENCHMARKS.md) for
/// bodies that [`Reply`] always writes as UTF-8 text.
pub async fn serve<F, Fut>(handle: F) -> Result<(), lambda_http::Error>
where
    F: Fn(Request) -> Fut + Sync,
    Fut: std::future::Future<Output = Response<Body>> + Send,
{
    let handle = &handle;
    // Boxed as lambda_http's adapter boxes it: the handler's future type stays out of the
    // runtime's (whose layout the compiler otherwise computes past its depth limit).
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        let answer: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> =
            Box::pin(async move { Ok::<_, std::convert::Infallible>(invoke(handle, event).await) });
        answer
    }))
    .await
}

/// One invocation as [`serve`] runs it (the warm benchmark, `bench/src/warm.rs`, calls this
/// in-process without the Runtime API): the HTTP API event turned into a `Request` by
/// lambda_http (path, query, headers, body decoded from base64 when flagged, request context),
/// the invocation's X-Ray trace id as its `x-amzn-trace-id` header and its Lambda context as an
/// extension (as `lambda_http::run` does), answered by [`respond`], and the response written as
/// the HTTP API takes it (as `lambda_http` writes it for that origin: `Set-Cookie` headers
/// moved to `cookies`, a binary body base64-encoded, no body as empty text).
pub async fn invoke<F, Fut>(handle: &F, event: LambdaEvent<ApiGatewayV2httpRequest>) -> ApiGatewayV2httpResponse
where
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = Response<Body>>,
{
    let LambdaEvent { payload, context } = event;
    let mut request: Request = LambdaRequest::ApiGatewayV2(payload).into();
    if let Some(trace_id) = context.xray_trace_id.as_deref().and_then(|id| HeaderValue::from_str(id).ok()) {
        request.headers_mut().insert(HeaderName::from_static("x-amzn-trace-id"), trace_id);
    }
    let Ok(response) = respond(handle, request.with_lambda_context(context)).await;
    http_api_response(response)
}

/// One request through `handle` inside its `request` span.
pub async fn respond<F, Fut>(handle: &F, request: Request) -> Result<Response<Body>, std::convert::Infallible>
where
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = Response<Body>>,
{
    let span = request_span(&request);
    Ok(tracing::Instrument::instrument(handle(request), span).await)
}

/// A response as the HTTP API (payload format 2.0) takes it.
fn http_api_response(response: Response<Body>) -> ApiGatewayV2httpResponse {
    let (parts, body) = response.into_parts();
    let mut headers = parts.headers;
    let cookies =
        headers.get_all(SET_COOKIE).iter().map(|value| value.to_str().unwrap_or_default().to_owned()).collect();
    headers.remove(SET_COOKIE);
    let mut answer = ApiGatewayV2httpResponse::default();
    answer.status_code = i64::from(parts.status.as_u16());
    answer.is_base64_encoded = matches!(body, Body::Binary(_));
    // lambda_http writes no body as empty text ("body": ""), and so does this.
    answer.body = match body {
        Body::Text(_) | Body::Binary(_) => Some(body),
        _ => Some(Body::Text(String::new())),
    };
    answer.headers = headers;
    answer.multi_value_headers = HeaderMap::new();
    answer.cookies = cookies;
    answer
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

    /// What `lambda_http::run` answers for `reply` to `event`, and what [`invoke`] answers, as JSON.
    async fn both_ways(event: &str, reply: fn() -> Response<Body>) -> (serde_json::Value, serde_json::Value) {
        use lambda_http::Service;
        let mut context = lambda_http::Context::default();
        context.request_id = "req-1".to_owned();
        context.xray_trace_id = Some("Root=1-00000000-000000000000000000000001".to_owned());
        let handle = |request: Request| async move {
            assert_eq!(route_key(&request), "GET /products/{id}");
            assert_eq!(path_param(&request, "id").ok(), Some("prod_01M81C1XXH84G7ZWYRD6Z1RV0W"));
            assert_eq!(header(&request, "x-amzn-trace-id"), Some("Root=1-00000000-000000000000000000000001"));
            assert_eq!(request.lambda_context_ref().map(|c| c.request_id.as_str()), Some("req-1"));
            reply()
        };
        let theirs: LambdaRequest = serde_json::from_str(event).unwrap_or_else(|e| panic!("{e}"));
        let mut adapter = lambda_http::Adapter::from(lambda_http::service_fn(|r: Request| respond(&handle, r)));
        let theirs = adapter.call(LambdaEvent::new(theirs, context.clone())).await.unwrap_or_else(|e| match e {});
        let ours: ApiGatewayV2httpRequest = serde_json::from_str(event).unwrap_or_else(|e| panic!("{e}"));
        let ours = invoke(&handle, LambdaEvent::new(ours, context)).await;
        let json = |value: &dyn erased::Json| value.to_json();
        (json(&theirs), json(&ours))
    }

    mod erased {
        pub trait Json {
            fn to_json(&self) -> serde_json::Value;
        }
        impl<T: serde::Serialize> Json for T {
            fn to_json(&self) -> serde_json::Value {
                serde_json::to_value(self).unwrap_or_else(|e| panic!("{e}"))
            }
        }
    }

    #[tokio::test]
    async fn invoke_answers_as_lambda_http_run_does() {
        let event = include_str!("../../../events/apigw/get-product.json");
        let replies: [fn() -> Response<Body>; 5] = [
            || {
                Reply::json(200, &serde_json::json!({"name": "Café crème", "price": {"amount": 450}}))
                    .unwrap_or_else(finish_err)
            },
            || Reply::problem(&Problem::new(ProblemKind::NotFound, "No such product.")),
            Reply::no_content,
            || {
                let mut reply = Response::new(Body::Binary(vec![0, 159, 255]));
                reply.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                reply.headers_mut().append(SET_COOKIE, HeaderValue::from_static("a=1"));
                reply.headers_mut().append(SET_COOKIE, HeaderValue::from_static("b=2"));
                reply.headers_mut().insert("location", HeaderValue::from_static("/products/p"));
                reply
            },
            || Response::new(Body::Text("plain".to_owned())),
        ];
        for reply in replies {
            let (theirs, ours) = both_ways(event, reply).await;
            assert_eq!(ours, theirs);
        }
        let (_, ours) = both_ways(event, replies[3]).await;
        assert_eq!(ours["cookies"], serde_json::json!(["a=1", "b=2"]));
        assert_eq!(ours["isBase64Encoded"], true);
        assert_eq!(ours["body"], "AJ//");
    }

    fn finish_err(problem: Problem) -> Response<Body> {
        Reply::problem(&problem)
    }
}
