//! `GET /openapi.json`: the OpenAPI 3.1 document of the HTTP API (`docs/openapi.yaml`), as JSON.
//!
//! The document is the repository's file, compiled in (cargo rebuilds the local cloud when it
//! changes) and converted from YAML once. API Gateway serves nothing at this path; locally it is
//! there for Schemathesis (`make api-fuzz`) and for anyone pointing a client generator or a
//! viewer at `make dev`. The tests below hold the document to the template: its paths and methods
//! are exactly template.yaml's routes, each guarded as the template guards it.

use std::sync::LazyLock;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value as Json;

/// Where the local cloud serves the document.
pub const PATH: &str = "/openapi.json";

/// `docs/openapi.yaml`, as written.
pub const SOURCE: &str = include_str!("../../../docs/openapi.yaml");

/// The document as JSON text, or why the YAML could not be read.
static DOCUMENT: LazyLock<Result<String, String>> = LazyLock::new(|| document().map(|json| json.to_string()));

/// Parses [`SOURCE`]. Every mapping key must be a string (status codes are quoted in the YAML).
pub fn document() -> Result<Json, String> {
    serde_norway::from_str::<Json>(SOURCE).map_err(|error| format!("docs/openapi.yaml: {error}"))
}

/// Answers `GET`/`HEAD /openapi.json`; `None` for any other request.
pub fn serve(method: &Method, path: &str) -> Option<Response> {
    if path != PATH {
        return None;
    }
    if method != Method::GET && method != Method::HEAD {
        return Some(
            (
                StatusCode::METHOD_NOT_ALLOWED,
                [("content-type", "application/json")],
                r#"{"message":"Method Not Allowed"}"#,
            )
                .into_response(),
        );
    }
    Some(match &*DOCUMENT {
        Ok(json) => (StatusCode::OK, [("content-type", "application/json")], json.clone()).into_response(),
        Err(error) => {
            tracing::error!(%error, "the OpenAPI document does not parse");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [("content-type", "application/json")],
                r#"{"message":"Internal Server Error"}"#,
            )
                .into_response()
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::template::{Stack, Template};

    const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

    fn openapi() -> Json {
        document().unwrap_or_else(|error| panic!("{error}"))
    }

    /// `(METHOD, path, guarded)` for every route template.yaml declares.
    fn template_routes() -> BTreeSet<(String, String, bool)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let template = Template::load(&path).unwrap();
        let stack = Stack { name: "openapi".into(), region: "us-east-1".into(), endpoint: "http://127.0.0.1:1".into() };
        let mut physical = template.physical_names(&stack);
        for table in template.tables(&stack, &physical).unwrap() {
            // Known once the table exists; any value resolves the relays' environments.
            let arn = format!("{}/stream", table.logical_id);
            physical.attributes.insert((table.logical_id, "StreamArn".to_owned()), arn);
        }
        template
            .functions(&stack, &physical)
            .unwrap()
            .into_iter()
            .flat_map(|function| function.routes)
            .map(|route| (route.method, route.path, route.authorizer.is_some()))
            .collect()
    }

    /// `(METHOD, path, operation)` for every operation of the document.
    fn operations(doc: &Json) -> Vec<(String, String, Json)> {
        let mut found = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths is an object") {
            for (method, operation) in item.as_object().expect("a path item is an object") {
                if METHODS.contains(&method.as_str()) {
                    found.push((method.to_uppercase(), path.clone(), operation.clone()));
                }
            }
        }
        found
    }

    /// The operation's security requirement, or the document's default.
    fn security<'a>(doc: &'a Json, operation: &'a Json) -> &'a Json {
        operation.get("security").unwrap_or(&doc["security"])
    }

    #[test]
    fn the_document_has_exactly_the_template_routes() {
        let doc = openapi();
        let documented: BTreeSet<(String, String)> =
            operations(&doc).into_iter().map(|(method, path, _)| (method, path)).collect();
        let declared: BTreeSet<(String, String)> =
            template_routes().into_iter().map(|(method, path, _)| (method, path)).collect();
        let undocumented: Vec<_> = declared.difference(&documented).collect();
        let not_routed: Vec<_> = documented.difference(&declared).collect();
        assert!(undocumented.is_empty(), "routes of template.yaml missing from docs/openapi.yaml: {undocumented:?}");
        assert!(
            not_routed.is_empty(),
            "operations of docs/openapi.yaml that template.yaml does not route: {not_routed:?}"
        );
        assert!(declared.len() >= 30, "the template's routes: {declared:?}");
    }

    /// Public routes say `security: []`, the webhook names the Stripe signature, admin routes
    /// require the `admin` role of the bearer scheme, and every other route the bearer token.
    #[test]
    fn every_operation_is_guarded_as_the_template_guards_its_route() {
        let doc = openapi();
        let guarded: BTreeSet<(String, String)> =
            template_routes().into_iter().filter(|r| r.2).map(|(method, path, _)| (method, path)).collect();
        for (method, path, operation) in operations(&doc) {
            let requirement = security(&doc, &operation);
            let expected = if path == "/webhooks/stripe" {
                serde_json::json!([{ "stripeSignature": [] }])
            } else if !guarded.contains(&(method.clone(), path.clone())) {
                serde_json::json!([])
            } else if path.starts_with("/admin/") {
                serde_json::json!([{ "bearer": ["admin"] }])
            } else {
                serde_json::json!([{ "bearer": [] }])
            };
            assert_eq!(requirement, &expected, "security of {method} {path}");
            let responses = &operation["responses"];
            if expected == serde_json::json!([{ "bearer": [] }]) || path.starts_with("/admin/") {
                assert!(responses.get("401").is_some(), "{method} {path} needs a token but documents no 401");
            }
            if path.starts_with("/admin/") {
                assert!(responses.get("403").is_some(), "{method} {path} is for admins but documents no 403");
            }
        }
    }

    /// The checks of OpenAPI 3.1 a test can make cheaply: the version, unique operation ids,
    /// declared path parameters, status-code keys, a success per operation, and every `$ref`
    /// and security scheme resolving within the document.
    #[test]
    fn the_document_is_well_formed_openapi_3_1() {
        let doc = openapi();
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "openapi: {}", doc["openapi"]);
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string(), "info needs title and version");
        let schemes = doc["components"]["securitySchemes"].as_object().expect("security schemes");
        let mut ids = BTreeSet::new();
        for (method, path, operation) in operations(&doc) {
            let name = format!("{method} {path}");
            let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{name} has no operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");

            // Every `{param}` of the path is a required path parameter, and nothing more.
            let mut parameters: Vec<Json> = doc["paths"][&path]["parameters"].as_array().cloned().unwrap_or_default();
            parameters.extend(operation["parameters"].as_array().cloned().unwrap_or_default());
            let parameters: Vec<Json> = parameters.iter().map(|p| resolve(&doc, p).clone()).collect();
            let in_path: BTreeSet<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(str::to_owned)
                .collect();
            let declared: BTreeSet<String> = parameters
                .iter()
                .filter(|p| p["in"] == "path")
                .inspect(|p| assert_eq!(p["required"], true, "{name}: path parameter {} must be required", p["name"]))
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect();
            assert_eq!(in_path, declared, "{name}: the path's parameters and the declared ones differ");

            let responses = operation["responses"].as_object().unwrap_or_else(|| panic!("{name} has no responses"));
            for status in responses.keys() {
                let ok = status.parse::<u16>().is_ok_and(|s| (100..600).contains(&s));
                assert!(ok, "{name}: response key `{status}` is not a status code");
            }
            assert!(responses.keys().any(|s| s.starts_with('2')), "{name} documents no success");

            for requirement in security(&doc, &operation).as_array().expect("security is a list") {
                for scheme in requirement.as_object().expect("a requirement is an object").keys() {
                    assert!(schemes.contains_key(scheme), "{name} names an undeclared security scheme {scheme}");
                }
            }
        }
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(refs.len() > 100, "the document reuses its components");
        for reference in refs {
            let target = reference.strip_prefix('#').map(|pointer| doc.pointer(pointer));
            assert!(matches!(target, Some(Some(_))), "$ref {reference} resolves to nothing");
        }
    }

    /// The problem types the document knows are exactly those docs/api.md lists.
    #[test]
    fn the_problem_types_are_those_of_the_api_reference() {
        let doc = openapi();
        let documented: BTreeSet<String> = doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"]
            .as_array()
            .expect("Problem.type is an enum")
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect();
        let reference =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md"))
                .unwrap();
        let table = reference.split("### Problem types").nth(1).expect("api.md has a Problem types section");
        let listed: BTreeSet<String> = table
            .lines()
            .take_while(|line| !line.starts_with("###"))
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .filter(|t| t.starts_with("/problems/"))
            .map(str::to_owned)
            .collect();
        assert_eq!(documented, listed, "Problem.type in docs/openapi.yaml against docs/api.md's table");
    }

    #[test]
    fn the_document_is_served_as_json() {
        let response = serve(&Method::GET, PATH).expect("served");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert!(serve(&Method::GET, "/openapi.yaml").is_none());
        assert_eq!(serve(&Method::POST, PATH).map(|r| r.status()), Some(StatusCode::METHOD_NOT_ALLOWED));
    }

    fn resolve<'a>(doc: &'a Json, value: &'a Json) -> &'a Json {
        match value.get("$ref").and_then(Json::as_str).and_then(|r| r.strip_prefix('#')) {
            Some(pointer) => doc.pointer(pointer).unwrap_or_else(|| panic!("$ref #{pointer} resolves to nothing")),
            None => value,
        }
    }

    fn collect_refs(value: &Json, refs: &mut Vec<String>) {
        match value {
            Json::Object(map) => {
                if let Some(Json::String(reference)) = map.get("$ref") {
                    refs.push(reference.clone());
                }
                map.values().for_each(|v| collect_refs(v, refs));
            }
            Json::Array(list) => list.iter().for_each(|v| collect_refs(v, refs)),
            _ => {}
        }
    }
}
