//! The caller's identity, from the JWT claims API Gateway put in the request context.
//!
//! API Gateway HTTP APIs verify the token (signature, issuer, audience, expiry) before the
//! function runs and pass its claims in `requestContext.authorizer.jwt.claims` as strings: an
//! array claim such as Cognito's `cognito:groups` arrives flattened as `"[admin staff]"`.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use kernel::{Problem, ProblemKind};

/// The Cognito group whose members may use `/admin` routes.
pub const ADMIN_GROUP: &str = "admin";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The JWT `sub`: the customer id carts and orders belong to.
    pub subject: String,
    pub groups: Vec<String>,
}

impl Caller {
    /// The caller of an authenticated route; 401 when the request carries no claims.
    pub fn from_request(request: &Request) -> Result<Self, Problem> {
        let claims = match request.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(context)) => {
                context.authorizer.as_ref().and_then(|authorizer| authorizer.jwt.as_ref()).map(|jwt| &jwt.claims)
            }
            _ => None,
        };
        let unauthenticated = || Problem::new(ProblemKind::Unauthorized, "This route needs a bearer token.");
        let claims = claims.ok_or_else(unauthenticated)?;
        let subject = claims.get("sub").filter(|s| !s.is_empty()).ok_or_else(unauthenticated)?;
        let groups = claims.get("cognito:groups").map(|raw| parse_group_claim(raw)).unwrap_or_default();
        Ok(Self { subject: subject.clone(), groups })
    }

    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|group| group == ADMIN_GROUP)
    }

    /// The caller of an `/admin` route: 401 without claims, 403 outside the admin group.
    pub fn admin(request: &Request) -> Result<Self, Problem> {
        let caller = Self::from_request(request)?;
        if caller.is_admin() {
            Ok(caller)
        } else {
            Err(Problem::new(
                ProblemKind::Forbidden,
                format!("This route is for members of the `{ADMIN_GROUP}` group."),
            ))
        }
    }
}

/// Parses API Gateway's flattened array claim: `[a b]`, or a JSON array, or a bare value.
fn parse_group_claim(raw: &str) -> Vec<String> {
    if let Ok(list) = serde_json::from_str::<Vec<String>>(raw) {
        return list;
    }
    raw.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split([' ', ','])
        .filter(|group| !group.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_claims_are_read_in_every_shape_api_gateway_sends() {
        assert_eq!(parse_group_claim("[admin staff]"), vec!["admin", "staff"]);
        assert_eq!(parse_group_claim(r#"["admin"]"#), vec!["admin"]);
        assert_eq!(parse_group_claim("admin"), vec!["admin"]);
        assert!(parse_group_claim("[]").is_empty());
    }

    fn request_with_claims(claims: &str) -> Request {
        let event = format!(
            r#"{{"version":"2.0","routeKey":"GET /admin/products/{{id}}","rawPath":"/admin/products/x",
            "rawQueryString":"","headers":{{}},"requestContext":{{"accountId":"123456789012","apiId":"local",
            "authorizer":{{"jwt":{{"claims":{claims},"scopes":null}}}},"domainName":"localhost",
            "domainPrefix":"localhost","http":{{"method":"GET","path":"/admin/products/x","protocol":"HTTP/1.1",
            "sourceIp":"127.0.0.1","userAgent":"test"}},"requestId":"r1","routeKey":"GET /admin/products/{{id}}",
            "stage":"$default","time":"22/Nov/2026:00:00:00 +0000","timeEpoch":0}},"isBase64Encoded":false}}"#
        );
        lambda_http::request::from_str(&event).unwrap_or_else(|e| panic!("bad test event: {e}"))
    }

    #[test]
    fn a_member_of_the_admin_group_passes_the_admin_check() {
        let request = request_with_claims(r#"{"sub":"root","cognito:groups":"[admin]"}"#);
        assert_eq!(Caller::admin(&request).map(|c| c.subject), Ok("root".to_owned()));
    }

    #[test]
    fn a_customer_on_an_admin_route_is_forbidden() {
        let request = request_with_claims(r#"{"sub":"alice"}"#);
        assert_eq!(Caller::admin(&request).map_err(|p| p.status), Err(403));
    }

    #[test]
    fn a_request_without_claims_is_unauthorized() {
        let request = request_with_claims("{}");
        assert_eq!(Caller::from_request(&request).map_err(|p| p.status), Err(401));
    }
}
