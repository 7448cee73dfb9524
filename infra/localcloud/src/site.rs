//! The storefront and the dev sign-in, served by `localcloud dev` beside the API.
//!
//! API Gateway serves none of this; it exists only locally, so `make dev` shows the shop in a
//! browser with one command:
//!
//! - `GET /shop/…` serves the static files of `storefront/public/` (the same files a deployment
//!   copies to its bucket), and `GET /shop/config.json` the configuration a deployment writes
//!   next to them: here the API's own origin, the local sign-in and the test-card picker.
//! - `POST /_localcloud/sign-in` with `{"sub": "alice", "admin": false}` mints a token as
//!   `make token` does, for the storefront's dev sign-in. It answers only when the local cloud
//!   was started with a site (`localcloud dev`), never in the test kit's shops.
//! - `POST /_localcloud/stripe/authenticate` with `{"payment_intent", "client_secret",
//!   "success"}` passes or fails a 3-D Secure challenge at the Stripe emulator: the stand-in for
//!   the bank's page that Stripe.js `handleNextAction` opens.

use std::path::{Component, Path, PathBuf};

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use crate::auth::LocalIdentity;

/// Where the storefront is served, and the sign-in path.
pub const SHOP_PREFIX: &str = "/shop/";
pub const SIGN_IN_PATH: &str = "/_localcloud/sign-in";
pub const CHALLENGE_PATH: &str = "/_localcloud/stripe/authenticate";

/// The Content-Security-Policy CloudFront sends with the deployed storefront
/// (`StorefrontHeadersPolicy` in template.yaml), less the API and login hosts: here the API is
/// the page's own origin and sign-in is local. Served with every file, so the browser tests run
/// under the policy a deployment enforces; a test checks it matches the template's.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' https://js.stripe.com https://*.js.stripe.com; \
     style-src 'self'; img-src 'self' data: https:; connect-src 'self' https://api.stripe.com; \
     frame-src https://js.stripe.com https://*.js.stripe.com https://hooks.stripe.com; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// How long a dev sign-in lasts, as `make token`'s tokens.
const SIGN_IN_TTL_SECS: u64 = 8 * 3600;

/// The storefront's files and the settings of its `config.json`.
#[derive(Debug, Clone)]
pub struct Site {
    pub root: PathBuf,
    pub api_url: String,
    pub stripe_url: Option<String>,
}

impl Site {
    /// The `config.json` a deployment would write beside the files, for this local cloud.
    pub fn config(&self) -> Json {
        json!({
            "api_base": self.api_url,
            "auth": { "mode": "local", "sign_in_url": format!("{}{SIGN_IN_PATH}", self.api_url) },
            "payments": {
                "mode": "test-cards",
                "challenge_url": self.stripe_url.as_ref().map(|_| format!("{}{CHALLENGE_PATH}", self.api_url)),
            },
            // The demo catalog's image URLs point at a host that does not exist: draw placeholders.
            "images": false,
        })
    }

    /// Answers `path` if it belongs to the site, else `None` (the API handles it).
    pub async fn serve(
        &self,
        method: &Method,
        path: &str,
        body: &Bytes,
        identity: Option<&LocalIdentity>,
    ) -> Option<Response> {
        if path == "/shop" || path == "/" {
            return Some((StatusCode::FOUND, [("location", SHOP_PREFIX)]).into_response());
        }
        if path == SIGN_IN_PATH {
            return Some(if method == Method::POST { sign_in(body, identity) } else { not_allowed() });
        }
        if path == CHALLENGE_PATH {
            return Some(if method == Method::POST { self.challenge(body).await } else { not_allowed() });
        }
        let file = path.strip_prefix(SHOP_PREFIX)?;
        if method != Method::GET && method != Method::HEAD {
            return Some(not_allowed());
        }
        if file == "config.json" {
            return Some(
                (
                    StatusCode::OK,
                    [("content-type", "application/json"), ("cache-control", "no-store")],
                    self.config().to_string(),
                )
                    .into_response(),
            );
        }
        Some(self.file(if file.is_empty() { "index.html" } else { file }).await)
    }

    async fn file(&self, relative: &str) -> Response {
        let Some(path) = inside(&self.root, relative) else {
            return text(StatusCode::NOT_FOUND, "Not Found");
        };
        match tokio::fs::read(&path).await {
            // Revalidated on every load: `make dev` serves the files as they are being edited.
            Ok(bytes) => (
                StatusCode::OK,
                [
                    ("content-type", media_type(&path)),
                    ("cache-control", "no-cache"),
                    ("content-security-policy", CONTENT_SECURITY_POLICY),
                ],
                bytes,
            )
                .into_response(),
            Err(_) => text(StatusCode::NOT_FOUND, "Not Found"),
        }
    }

    /// Forwards a challenge answer to the Stripe emulator (localstripe's `_authenticate`, with the
    /// publishable key, as a browser holds only that one).
    async fn challenge(&self, body: &Bytes) -> Response {
        let Some(stripe) = &self.stripe_url else {
            return text(StatusCode::NOT_FOUND, "no Stripe emulator runs");
        };
        let request: Json = serde_json::from_slice(body).unwrap_or(Json::Null);
        let (Some(intent), Some(secret), Some(success)) = (
            request["payment_intent"]
                .as_str()
                .filter(|id| id.starts_with("pi_") && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')),
            request["client_secret"].as_str(),
            request["success"].as_bool(),
        ) else {
            return text(
                StatusCode::BAD_REQUEST,
                "send {\"payment_intent\": \"pi_…\", \"client_secret\": \"…\", \"success\": true|false}",
            );
        };
        let reply = reqwest::Client::new()
            .post(format!("{stripe}/v1/payment_intents/{intent}/_authenticate"))
            .bearer_auth("pk_test_local")
            .form(&[("client_secret", secret), ("success", if success { "true" } else { "false" })])
            .send()
            .await;
        match reply {
            Ok(reply) => {
                let status = StatusCode::from_u16(reply.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                let body = reply.bytes().await.unwrap_or_default();
                (status, [("content-type", "application/json")], body).into_response()
            }
            Err(_) => text(StatusCode::BAD_GATEWAY, "the Stripe emulator did not answer"),
        }
    }
}

/// `POST /_localcloud/sign-in`: `{"sub", "admin"}` → `{"token", "expires_in"}`.
fn sign_in(body: &Bytes, identity: Option<&LocalIdentity>) -> Response {
    let Some(identity) = identity else {
        return text(StatusCode::NOT_FOUND, "the template has no JWT authorizer");
    };
    let request: Json = serde_json::from_slice(body).unwrap_or(Json::Null);
    let Some(subject) = request["sub"].as_str().map(str::trim).filter(|s| valid_subject(s)) else {
        return text(StatusCode::BAD_REQUEST, "`sub` must be 1 to 64 letters, digits, `.`, `_`, `-` or `@`");
    };
    let admin = request["admin"].as_bool().unwrap_or(false);
    match identity.mint(subject, if admin { &["admin"] } else { &[] }, SIGN_IN_TTL_SECS) {
        Ok(token) => (
            StatusCode::OK,
            [("content-type", "application/json"), ("cache-control", "no-store")],
            json!({ "token": token, "expires_in": SIGN_IN_TTL_SECS }).to_string(),
        )
            .into_response(),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    }
}

fn valid_subject(subject: &str) -> bool {
    (1..=64).contains(&subject.len())
        && subject.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// `relative` under `root`, or `None` when it would leave it (`..`, an absolute path).
fn inside(root: &Path, relative: &str) -> Option<PathBuf> {
    let relative = Path::new(relative);
    relative.components().all(|c| matches!(c, Component::Normal(_))).then(|| root.join(relative))
}

fn media_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn text(status: StatusCode, message: &str) -> Response {
    (status, [("content-type", "application/json")], json!({ "message": message }).to_string()).into_response()
}

fn not_allowed() -> Response {
    text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_site_are_refused() {
        let root = Path::new("/srv/shop");
        assert_eq!(inside(root, "js/app.js"), Some(root.join("js/app.js")));
        assert_eq!(inside(root, "../secret"), None);
        assert_eq!(inside(root, "js/../../secret"), None);
        assert_eq!(inside(root, "/etc/passwd"), None);
    }

    /// The policy `make dev` serves is the deployed one with the API and login hosts taken out.
    #[test]
    fn the_local_content_security_policy_is_the_templates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let template: serde_norway::Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let policy = &template["Resources"]["StorefrontHeadersPolicy"]["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
            ["ContentSecurityPolicy"]["ContentSecurityPolicy"];
        let serde_norway::Value::Tagged(sub) = policy else { panic!("the policy is not a !Sub: {policy:?}") };
        let deployed = sub.value[0].as_str().expect("the !Sub's text");
        assert!(deployed.contains("connect-src 'self' ${Api} ${Login} "), "{deployed}");
        assert_eq!(deployed.replace(" ${Api} ${Login}", ""), CONTENT_SECURITY_POLICY);
    }

    #[test]
    fn sign_in_subjects_are_short_plain_names() {
        assert!(valid_subject("alice"));
        assert!(valid_subject("root@example.com"));
        assert!(!valid_subject(""));
        assert!(!valid_subject("a b"));
        assert!(!valid_subject(&"a".repeat(65)));
    }
}
