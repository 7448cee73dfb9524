//! RFC 9457 problem details: the body of every 4xx and 5xx Ferrocart answers.
//!
//! `type` is a relative URI (`/problems/validation-error`) documented in `docs/api.md`; clients
//! switch on it, humans read `title` and `detail`, and `errors` points at each bad field with a
//! JSON Pointer (RFC 6901) into the request body or names the query parameter or header.

use serde::{Deserialize, Serialize};

/// The kinds of problem Ferrocart reports. Each has one status and one `type` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    MalformedRequest,
    ValidationFailed,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    /// A customer cancel of an order a shipment of which has left the warehouse.
    AlreadyShipped,
    PreconditionFailed,
    PreconditionRequired,
    PayloadTooLarge,
    UnsupportedMediaType,
    Internal,
}

impl ProblemKind {
    pub fn status(self) -> u16 {
        match self {
            Self::MalformedRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict | Self::AlreadyShipped => 409,
            Self::PreconditionFailed => 412,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::ValidationFailed => 422,
            Self::PreconditionRequired => 428,
            Self::Internal => 500,
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            Self::MalformedRequest => "malformed-request",
            Self::ValidationFailed => "validation-error",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict => "conflict",
            Self::AlreadyShipped => "already-shipped",
            Self::PreconditionFailed => "precondition-failed",
            Self::PreconditionRequired => "precondition-required",
            Self::PayloadTooLarge => "payload-too-large",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::Internal => "internal-error",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::MalformedRequest => "The request could not be read",
            Self::ValidationFailed => "The request has invalid fields",
            Self::Unauthorized => "Authentication is required",
            Self::Forbidden => "You are not allowed to do this",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Conflict => "The request conflicts with existing data",
            Self::AlreadyShipped => "The order has already shipped",
            Self::PreconditionFailed => "The resource has changed",
            Self::PreconditionRequired => "A precondition header is required",
            Self::PayloadTooLarge => "The request body is too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::Internal => "Internal error",
        }
    }
}

/// One invalid field: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// A JSON Pointer into the body (`/variants/0/sku`), or `query:limit` / `header:If-Match`.
    pub pointer: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { pointer: pointer.into(), detail: detail.into() }
    }
}

/// An RFC 9457 problem details document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            type_uri: format!("/problems/{}", kind.slug()),
            title: kind.title().to_owned(),
            status: kind.status(),
            detail: Some(detail.into()),
            errors: Vec::new(),
        }
    }

    /// A 422 listing every invalid field at once, so a client can fix them all in one round.
    pub fn invalid_fields(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [only] => format!("{}: {}", only.pointer, only.detail),
            many => format!("{} fields are invalid", many.len()),
        };
        Self { errors, ..Self::new(ProblemKind::ValidationFailed, detail) }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// The opaque 500: says nothing about the cause, which goes to the log instead.
    pub fn internal() -> Self {
        Self::new(ProblemKind::Internal, "Something went wrong on our side; it has been logged.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validation_problem_serializes_as_rfc_9457_with_field_pointers() {
        let problem = Problem::invalid_fields(vec![FieldError::new("/title", "must not be empty")]);
        let json = serde_json::to_value(&problem).unwrap_or_default();
        assert_eq!(json["type"], "/problems/validation-error");
        assert_eq!(json["status"], 422);
        assert_eq!(json["detail"], "/title: must not be empty");
        assert_eq!(json["errors"][0]["pointer"], "/title");
    }
}
