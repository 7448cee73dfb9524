//! The API Gateway HTTP API: route matching, the JWT authorizer, payload format 2.0 events and
//! the translation of function responses, as API Gateway does them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value as Json, json};
use time::OffsetDateTime;

use crate::auth::LocalIdentity;
use crate::runtime::{FunctionHost, Outcome};
use crate::template::{CorsSpec, RouteSpec};

/// API Gateway HTTP APIs accept payloads up to 10 MB.
pub const MAX_PAYLOAD_BYTES: usize = 10 * 1024 * 1024;

/// A route bound to the function that serves it.
#[derive(Debug, Clone)]
pub struct Route {
    pub spec: RouteSpec,
    pub function: usize,
    /// The identity that guards it, if any.
    pub authorizer: Option<usize>,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Greedy(String),
}

impl Route {
    pub fn new(spec: RouteSpec, function: usize, authorizer: Option<usize>) -> Self {
        let segments = spec
            .path
            .trim_start_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => match name.strip_suffix('+') {
                    Some(greedy) => Segment::Greedy(greedy.to_owned()),
                    None => Segment::Param(name.to_owned()),
                },
                None => Segment::Literal(segment.to_owned()),
            })
            .collect();
        Self { spec, function, authorizer, segments }
    }

    /// Path parameters when `path` matches this route.
    fn matches(&self, path: &str) -> Option<HashMap<String, String>> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        let mut params = HashMap::new();
        for (index, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(literal) => {
                    if parts.get(index) != Some(&literal.as_str()) {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    params.insert(name.clone(), percent_decode(parts.get(index)?));
                }
                Segment::Greedy(name) => {
                    let rest = parts.get(index..).filter(|rest| !rest.is_empty())?;
                    params.insert(name.clone(), percent_decode(&rest.join("/")));
                    return Some(params);
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(params)
    }

    /// API Gateway prefers the most specific route: more literal segments, then fewer greedy
    /// ones, then an exact method over `ANY`.
    fn specificity(&self) -> (usize, usize, bool) {
        let literals = self.segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count();
        let non_greedy = self.segments.iter().filter(|s| !matches!(s, Segment::Greedy(_))).count();
        (literals, non_greedy, self.spec.method != "ANY")
    }
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&raw[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A schedule that can be fired on demand.
#[derive(Debug)]
pub struct Schedule {
    pub function: Arc<FunctionHost>,
    pub event: String,
    pub rule_arn: String,
    pub region: String,
}

/// Everything the gateway needs to serve requests.
#[derive(Debug)]
pub struct Gateway {
    pub routes: Vec<Route>,
    pub functions: Vec<Arc<FunctionHost>>,
    pub schedules: Vec<Schedule>,
    pub identities: Vec<LocalIdentity>,
    pub api_id: String,
    /// The API's `CorsConfiguration`, applied to API routes (not to the control and Invoke routes).
    pub cors: Option<CorsSpec>,
    /// The storefront and the dev sign-in (`localcloud dev` only; see [`crate::site`]).
    pub site: Option<crate::site::Site>,
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, [("content-type", "application/json")], json!({ "message": text }).to_string()).into_response()
}

/// The fallback handler serving every request on the API port.
pub async fn serve(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if let Some(document) = crate::openapi::serve(&method, path) {
        return document;
    }
    if let Some(site) = &gateway.site
        && let Some(response) = site.serve(&method, path, &body, gateway.identities.first()).await
    {
        return response;
    }
    if let Some(control) = path.strip_prefix(CONTROL_PREFIX) {
        return control_route(&gateway, &method, control, uri.query()).await;
    }
    if let Some(function) = path.strip_prefix(LAMBDA_INVOKE_PREFIX).and_then(|rest| rest.strip_suffix("/invocations")) {
        return invoke_route(&gateway, &percent_decode(function), body).await;
    }
    let Some(cors) = &gateway.cors else {
        return api_route(&gateway, peer, &method, &uri, &headers, &body).await;
    };
    if let Some(preflight) = cors.preflight(&method, &headers) {
        return preflight;
    }
    let mut response = api_route(&gateway, peer, &method, &uri, &headers, &body).await;
    cors.decorate(&mut response, headers.get("origin").and_then(|v| v.to_str().ok()));
    response
}

/// An HTTP API route: match, authorize, invoke, translate.
async fn api_route(
    gateway: &Gateway,
    peer: std::net::SocketAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let path = uri.path();
    let mut candidates: Vec<(&Route, HashMap<String, String>)> = gateway
        .routes
        .iter()
        .filter(|route| route.spec.method == "ANY" || route.spec.method == method.as_str())
        .filter_map(|route| route.matches(path).map(|params| (route, params)))
        .collect();
    candidates.sort_by_key(|(route, _)| std::cmp::Reverse(route.specificity()));
    let Some((route, params)) = candidates.into_iter().next() else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };

    let mut claims = None;
    if let Some(index) = route.authorizer {
        let header = headers.get("authorization").and_then(|v| v.to_str().ok());
        match gateway.identities.get(index).map(|identity| identity.verify(header)) {
            Some(Ok(verified)) => claims = Some(verified),
            Some(Err(rejection)) => {
                tracing::info!(route = %route.spec.key(), %rejection, "authorizer rejected the request");
                let mut reply = message(StatusCode::UNAUTHORIZED, "Unauthorized");
                reply.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
                return reply;
            }
            None => return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        }
    }

    let event = event(&gateway.api_id, route, params, claims, method, uri, headers, body, peer);
    let Some(function) = gateway.functions.get(route.function) else {
        return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    match function.invoke(Bytes::from(event.to_string())).await {
        Outcome::Response(payload) => translate(&payload),
        Outcome::FunctionError(error) => {
            tracing::error!(function = %function.spec.logical_id, error = %String::from_utf8_lossy(&error), "function error");
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        // Lambda reports a timeout as an invocation error, which API Gateway turns into a 500.
        Outcome::Crashed | Outcome::TimedOut => message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    }
}

/// The Lambda `Invoke` API (`POST /2015-03-31/functions/{name}/invocations`), served on the same
/// port: functions reach it through `AWS_ENDPOINT_URL_LAMBDA`, so one function invoking another
/// works as in AWS.
pub const LAMBDA_INVOKE_PREFIX: &str = "/2015-03-31/functions/";

async fn invoke_route(gateway: &Gateway, name: &str, payload: Bytes) -> Response {
    // Lambda accepts a function's name, its ARN, or its ARN with a qualifier.
    let wanted = name.split(':').nth(6).unwrap_or(name);
    let Some(function) = gateway.functions.iter().find(|f| f.spec.name == wanted || f.spec.logical_id == wanted) else {
        return (
            StatusCode::NOT_FOUND,
            [("x-amzn-errortype", "ResourceNotFoundException")],
            json!({ "Type": "User", "message": format!("Function not found: {name}") }).to_string(),
        )
            .into_response();
    };
    match function.invoke(payload).await {
        Outcome::Response(payload) => {
            (StatusCode::OK, [("x-amz-executed-version", "$LATEST")], payload).into_response()
        }
        Outcome::FunctionError(error) => {
            (StatusCode::OK, [("x-amz-function-error", "Unhandled"), ("x-amz-executed-version", "$LATEST")], error)
                .into_response()
        }
        Outcome::Crashed | Outcome::TimedOut => (
            StatusCode::OK,
            [("x-amz-function-error", "Unhandled"), ("x-amz-executed-version", "$LATEST")],
            json!({ "errorType": "Runtime.ExitError", "errorMessage": "the function did not complete" }).to_string(),
        )
            .into_response(),
    }
}

/// Routes under this prefix control the local cloud itself; API Gateway has nothing here.
pub const CONTROL_PREFIX: &str = "/_localcloud/";

/// `POST /_localcloud/schedules/{Function}/{Event}[?time=RFC3339]` fires a schedule now, with
/// the scheduled event's `time` set to `time` (default: now), and answers with the function's
/// response. This is how tests make a sweeper see the future.
async fn control_route(gateway: &Gateway, method: &Method, path: &str, query: Option<&str>) -> Response {
    let parts: Vec<&str> = path.split('/').collect();
    if let ["functions", function, action] = parts.as_slice() {
        return function_control(gateway, method, function, action);
    }
    if let ["trace", order] = parts.as_slice() {
        // `GET /_localcloud/trace/{order id}`: every invocation that named the order (journal).
        let entries: Vec<Json> = crate::journal::for_order(order).iter().map(crate::journal::Entry::to_json).collect();
        return (StatusCode::OK, [("content-type", "application/json")], Json::Array(entries).to_string())
            .into_response();
    }
    let ["schedules", function, event] = parts.as_slice() else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    if method != Method::POST {
        return message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    let Some(schedule) =
        gateway.schedules.iter().find(|s| s.function.spec.logical_id == *function && s.event == *event)
    else {
        return message(StatusCode::NOT_FOUND, "No such schedule");
    };
    let time = query
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("time=")))
        .map(|raw| OffsetDateTime::parse(&percent_decode(raw), &time::format_description::well_known::Rfc3339));
    let time = match time {
        None => OffsetDateTime::now_utc(),
        Some(Ok(time)) => time,
        Some(Err(_)) => return message(StatusCode::BAD_REQUEST, "time must be RFC 3339"),
    };
    let event = crate::triggers::scheduled_event(&schedule.rule_arn, &schedule.region, time);
    match schedule.function.invoke(event).await {
        Outcome::Response(payload) => (StatusCode::OK, [("content-type", "application/json")], payload).into_response(),
        other => message(StatusCode::INTERNAL_SERVER_ERROR, &format!("{other:?}")),
    }
}

/// `POST /_localcloud/functions/{Function}/{pause|resume|crash-after-next}`.
fn function_control(gateway: &Gateway, method: &Method, function: &str, action: &str) -> Response {
    use std::sync::atomic::Ordering;
    if method != Method::POST {
        return message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    let Some(host) = gateway.functions.iter().find(|f| f.spec.logical_id == function) else {
        return message(StatusCode::NOT_FOUND, "No such function");
    };
    match action {
        "pause" => host.paused.store(true, Ordering::SeqCst),
        "resume" => host.paused.store(false, Ordering::SeqCst),
        "crash-after-next" => {
            host.crash_after_handling.fetch_add(1, Ordering::SeqCst);
        }
        _ => return message(StatusCode::NOT_FOUND, "Unknown action"),
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Builds the payload format 2.0 event API Gateway sends to a Lambda integration.
#[allow(clippy::too_many_arguments)]
fn event(
    api_id: &str,
    route: &Route,
    params: HashMap<String, String>,
    claims: Option<HashMap<String, String>>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    peer: std::net::SocketAddr,
) -> Json {
    // Repeated headers and query parameters are joined with commas, as API Gateway does.
    let mut header_map: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == "cookie" {
            cookies.extend(value.split(';').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()));
            continue;
        }
        header_map.entry(name.as_str().to_owned()).and_modify(|v| *v = format!("{v},{value}")).or_insert(value);
    }
    let raw_query = uri.query().unwrap_or("");
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (form_decode(name), form_decode(value));
        query.entry(name).and_modify(|v| *v = format!("{v},{value}")).or_insert(value);
    }
    let text_body = std::str::from_utf8(body).ok();
    let is_base64 = !body.is_empty() && text_body.is_none();
    let now = OffsetDateTime::now_utc();
    let request_id = ulid::Ulid::new().to_string();
    let route_key = route.spec.key();
    let user_agent = header_map.get("user-agent").cloned().unwrap_or_default();
    let host = header_map.get("host").cloned().unwrap_or_else(|| "127.0.0.1".to_owned());
    let mut context = json!({
        "accountId": crate::template::ACCOUNT_ID,
        "apiId": api_id,
        "domainName": host,
        "domainPrefix": host.split('.').next().unwrap_or(""),
        "http": {
            "method": method.as_str(),
            "path": uri.path(),
            "protocol": "HTTP/1.1",
            "sourceIp": peer.ip().to_string(),
            "userAgent": user_agent,
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": "$default",
        "time": now.format(&time::macros::format_description!(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
        )).unwrap_or_default(),
        "timeEpoch": now.unix_timestamp() * 1000 + i64::from(now.millisecond()),
    });
    if let Some(claims) = claims {
        context["authorizer"] = json!({ "jwt": { "claims": claims, "scopes": null } });
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": uri.path(),
        "rawQueryString": raw_query,
        "headers": header_map,
        "requestContext": context,
        "isBase64Encoded": is_base64,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = json!(query);
    }
    if !params.is_empty() {
        event["pathParameters"] = json!(params);
    }
    if !body.is_empty() {
        event["body"] = match text_body {
            Some(text) => Json::String(text.to_owned()),
            None => Json::String(STANDARD.encode(body)),
        };
    }
    event
}

fn form_decode(raw: &str) -> String {
    percent_decode(&raw.replace('+', " "))
}

/// Turns a function's payload 2.0 response into an HTTP response. A response without
/// `statusCode` is treated as a 200 JSON body, as API Gateway does.
fn translate(payload: &[u8]) -> Response {
    let Ok(value) = serde_json::from_slice::<Json>(payload) else {
        return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let Some(status) = value.get("statusCode").and_then(Json::as_u64) else {
        return (StatusCode::OK, [("content-type", "application/json")], value.to_string()).into_response();
    };
    let status = u16::try_from(status).ok().and_then(|s| StatusCode::from_u16(s).ok());
    let Some(status) = status else {
        return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let body = match value.get("body").and_then(Json::as_str) {
        Some(text) if value.get("isBase64Encoded").and_then(Json::as_bool) == Some(true) => {
            match STANDARD.decode(text) {
                Ok(bytes) => Body::from(bytes),
                Err(_) => {
                    return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
                }
            }
        }
        Some(text) => Body::from(text.to_owned()),
        None => Body::empty(),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let mut add = |name: &str, value: &str, append: bool| {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            if append {
                headers.append(name, value);
            } else {
                headers.insert(name, value);
            }
        }
    };
    if let Some(Json::Object(single)) = value.get("headers") {
        for (name, v) in single {
            add(name, v.as_str().unwrap_or_default(), false);
        }
    }
    if let Some(Json::Object(multi)) = value.get("multiValueHeaders") {
        for (name, values) in multi {
            for v in values.as_array().into_iter().flatten() {
                add(name, v.as_str().unwrap_or_default(), true);
            }
        }
    }
    for cookie in value.get("cookies").and_then(Json::as_array).into_iter().flatten() {
        add("set-cookie", cookie.as_str().unwrap_or_default(), true);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str) -> Route {
        Route::new(RouteSpec { method: method.into(), path: path.into(), authorizer: None }, 0, None)
    }

    #[test]
    fn path_parameters_are_extracted_and_decoded() {
        let params = route("GET", "/products/{id}").matches("/products/prod%5F1").unwrap();
        assert_eq!(params["id"], "prod_1");
        assert!(route("GET", "/products/{id}").matches("/products").is_none());
        assert!(route("GET", "/products/{id}").matches("/products/a/b").is_none());
    }

    #[test]
    fn greedy_parameters_take_the_rest_of_the_path() {
        let params = route("ANY", "/files/{path+}").matches("/files/a/b/c").unwrap();
        assert_eq!(params["path"], "a/b/c");
    }

    #[test]
    fn literal_segments_beat_parameters() {
        assert!(route("GET", "/products/featured").specificity() > route("GET", "/products/{id}").specificity());
        assert!(route("GET", "/x/{id}").specificity() > route("ANY", "/x/{id}").specificity());
    }

    #[test]
    fn a_function_response_becomes_status_headers_and_body() {
        let response = translate(
            br#"{"statusCode":201,"headers":{"location":"/x/1","content-type":"application/json"},"body":"{}","isBase64Encoded":false}"#,
        );
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()["location"], "/x/1");
    }

    #[test]
    fn a_bare_json_response_is_a_200() {
        assert_eq!(translate(br#"{"ok":true}"#).status(), StatusCode::OK);
        assert_eq!(translate(b"not json").status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
