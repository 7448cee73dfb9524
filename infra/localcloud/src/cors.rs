//! The HTTP API's CORS handling, as API Gateway does it when `CorsConfiguration` is set: it
//! answers preflight `OPTIONS` requests itself (no route, no authorizer, no function), adds the
//! configured headers to every response to a request with an allowed `Origin`, and drops any CORS
//! headers the function returned.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::template::CorsSpec;

impl CorsSpec {
    fn allows_origin(&self, origin: &str) -> bool {
        self.allow_origins.iter().any(|allowed| match allowed.strip_suffix('*') {
            // `*`, or a whole scheme such as `https://*`.
            Some(prefix) if prefix.is_empty() || prefix.ends_with("://") => {
                origin.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix))
            }
            _ => allowed.eq_ignore_ascii_case(origin),
        })
    }

    /// The `access-control-allow-origin` value for `origin`, if it may call the API.
    fn allow_origin(&self, origin: &str) -> Option<HeaderValue> {
        if !self.allows_origin(origin) {
            return None;
        }
        if self.allow_origins.iter().any(|allowed| allowed == "*") {
            Some(HeaderValue::from_static("*"))
        } else {
            HeaderValue::from_str(origin).ok()
        }
    }

    /// The answer to a preflight request, or `None` when `method` and `headers` are not one.
    pub fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<Response> {
        let origin = headers.get("origin").and_then(|v| v.to_str().ok())?;
        if method != Method::OPTIONS || !headers.contains_key("access-control-request-method") {
            return None;
        }
        let mut response = StatusCode::NO_CONTENT.into_response();
        let Some(allow_origin) = self.allow_origin(origin) else {
            // An origin that may not call the API gets no CORS headers: the browser stops there.
            return Some(response);
        };
        let out = response.headers_mut();
        out.insert("access-control-allow-origin", allow_origin);
        insert_list(out, "access-control-allow-methods", &self.allow_methods);
        insert_list(out, "access-control-allow-headers", &self.allow_headers);
        if let Some(max_age) = self.max_age {
            out.insert("access-control-max-age", HeaderValue::from(max_age));
        }
        if self.allow_credentials {
            out.insert("access-control-allow-credentials", HeaderValue::from_static("true"));
        }
        vary_on_origin(out);
        Some(response)
    }

    /// Puts the configured headers on a response to a request from `origin`, replacing whatever
    /// CORS headers the function set.
    pub fn decorate(&self, response: &mut Response, origin: Option<&str>) {
        let out = response.headers_mut();
        let from_function: Vec<HeaderName> =
            out.keys().filter(|name| name.as_str().starts_with("access-control-")).cloned().collect();
        for name in from_function {
            out.remove(name);
        }
        let Some(allow_origin) = origin.and_then(|origin| self.allow_origin(origin)) else {
            return;
        };
        out.insert("access-control-allow-origin", allow_origin);
        insert_list(out, "access-control-expose-headers", &self.expose_headers);
        if self.allow_credentials {
            out.insert("access-control-allow-credentials", HeaderValue::from_static("true"));
        }
        vary_on_origin(out);
    }
}

fn insert_list(headers: &mut HeaderMap, name: &'static str, values: &[String]) {
    if !values.is_empty()
        && let Ok(value) = HeaderValue::from_str(&values.join(","))
    {
        headers.insert(name, value);
    }
}

fn vary_on_origin(headers: &mut HeaderMap) {
    headers.append("vary", HeaderValue::from_static("origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop_cors(origins: &[&str]) -> CorsSpec {
        CorsSpec {
            allow_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["authorization".into(), "content-type".into()],
            expose_headers: vec!["etag".into(), "location".into()],
            max_age: Some(600),
            allow_credentials: false,
        }
    }

    fn request(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (HeaderName::from_static(name), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    #[test]
    fn a_preflight_from_an_allowed_origin_is_answered_with_the_configuration() {
        let cors = shop_cors(&["https://shop.example"]);
        let headers = request(&[("origin", "https://shop.example"), ("access-control-request-method", "POST")]);

        let response = cors.preflight(&Method::OPTIONS, &headers).unwrap();

        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let out = response.headers();
        assert_eq!(out["access-control-allow-origin"], "https://shop.example");
        assert_eq!(out["access-control-allow-methods"], "GET,POST");
        assert_eq!(out["access-control-allow-headers"], "authorization,content-type");
        assert_eq!(out["access-control-max-age"], "600");
    }

    #[test]
    fn another_origin_gets_no_cors_headers_and_plain_options_is_not_a_preflight() {
        let cors = shop_cors(&["https://shop.example"]);
        let foreign = request(&[("origin", "https://evil.example"), ("access-control-request-method", "POST")]);
        let plain = request(&[("origin", "https://shop.example")]);

        let refused = cors.preflight(&Method::OPTIONS, &foreign).unwrap();

        assert!(refused.headers().get("access-control-allow-origin").is_none());
        assert!(cors.preflight(&Method::OPTIONS, &plain).is_none(), "no access-control-request-method");
        assert!(cors.preflight(&Method::GET, &foreign).is_none());
    }

    #[test]
    fn a_scheme_wildcard_allows_every_origin_of_that_scheme() {
        let cors = shop_cors(&["https://*"]);
        let preflight = |origin: &str| {
            let headers = request(&[("origin", origin), ("access-control-request-method", "GET")]);
            cors.preflight(&Method::OPTIONS, &headers).unwrap().headers().get("access-control-allow-origin").cloned()
        };
        assert_eq!(preflight("https://any.example").unwrap(), "https://any.example");
        assert!(preflight("http://any.example").is_none());
    }

    #[test]
    fn responses_carry_the_configured_headers_instead_of_the_functions() {
        let cors = shop_cors(&["*"]);
        let mut response = StatusCode::OK.into_response();
        response.headers_mut().insert("access-control-allow-origin", HeaderValue::from_static("https://nope.example"));

        cors.decorate(&mut response, Some("https://anyone.example"));

        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        assert_eq!(response.headers()["access-control-expose-headers"], "etag,location");
        let mut without_origin = StatusCode::OK.into_response();
        cors.decorate(&mut without_origin, None);
        assert!(without_origin.headers().get("access-control-allow-origin").is_none());
    }
}
