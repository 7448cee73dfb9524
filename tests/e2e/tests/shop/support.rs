//! Small HTTP helpers shared by the domain test modules.

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// What a test looks at in a response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem with `status`, returning its body.
    pub fn expect_problem(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "body: {}", self.body);
        assert_eq!(self.body["status"], status, "body: {}", self.body);
        assert!(self.body["type"].as_str().is_some_and(|t| t.starts_with("/problems/")), "body: {}", self.body);
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()), "body: {}", self.body);
        &self.body
    }

    /// The pointers of a problem's field errors.
    pub fn pointers(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|e| e["pointer"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

/// A request builder with the shop's base URL.
pub struct Call {
    request: reqwest::RequestBuilder,
}

pub fn call(method: Method, path: &str) -> Call {
    let shop = testkit::shop();
    // A client per call: a pooled connection belongs to the runtime that opened it, and every
    // #[tokio::test] has a runtime of its own.
    let client = Client::new();
    Call { request: client.request(method, shop.url(path)) }
}

impl Call {
    pub fn token(self, token: &str) -> Self {
        Self { request: self.request.bearer_auth(token) }
    }

    pub fn admin(self) -> Self {
        self.token(&testkit::shop().admin_token())
    }

    pub fn header(self, name: &str, value: &str) -> Self {
        Self { request: self.request.header(name, value) }
    }

    pub fn json(self, body: &Value) -> Self {
        Self { request: self.request.json(body) }
    }

    pub fn raw(self, content_type: &str, body: impl Into<reqwest::Body>) -> Self {
        Self { request: self.request.header("content-type", content_type).body(body) }
    }

    pub async fn send(self) -> Reply {
        let response = self.request.send().await.expect("the local cloud answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a readable body");
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Reply { status, headers, body }
    }
}
