//! The local stand-in for Cognito and API Gateway's JWT authorizer.
//!
//! Tokens are signed with a local HS256 key (Cognito signs RS256 with keys published as JWKS;
//! the checks the authorizer makes are the same: signature, `iss`, `aud`, `exp`, `nbf`). Claims
//! reach the function as API Gateway passes them: every value a string, arrays flattened to
//! `[a b]`.

use std::collections::HashMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value as Json, json};

use crate::template::JwtAuthorizerSpec;

/// A local signing key: 32 random bytes.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    pub fn random() -> anyhow::Result<Self> {
        let mut bytes = vec![0_u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Ok(Self(bytes))
    }

    /// Reads the key at `path`, creating it on first use, so tokens survive restarts of `make dev`.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        if let Ok(hex) = std::fs::read_to_string(path) {
            let bytes = (0..hex.trim().len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.trim().get(i..i + 2).unwrap_or("zz"), 16))
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{} is not a hex key; delete it to make a new one", path.display()))?;
            return Ok(Self(bytes));
        }
        let key = Self::random()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let hex: String = key.0.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(path, hex).with_context(|| format!("writing {}", path.display()))?;
        Ok(key)
    }
}

/// Mints and verifies tokens for one JWT authorizer.
#[derive(Debug, Clone)]
pub struct LocalIdentity {
    key: SigningKey,
    pub issuer: String,
    pub audience: Vec<String>,
}

/// Why the authorizer said 401.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("no token in the identity source")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

impl LocalIdentity {
    pub fn new(key: SigningKey, authorizer: &JwtAuthorizerSpec) -> Self {
        Self { key, issuer: authorizer.issuer.clone(), audience: authorizer.audience.clone() }
    }

    /// A Cognito-style ID token for `subject`, in `groups`, valid for `ttl_secs`.
    pub fn mint(&self, subject: &str, groups: &[&str], ttl_secs: u64) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let audience = self.audience.first().cloned().unwrap_or_default();
        self.mint_with(subject, groups, now, now + ttl_secs, &audience)
    }

    /// A token with chosen times and audience: for tests of what the authorizer must refuse (an
    /// expired token, one issued for another app client).
    pub fn mint_with(
        &self,
        subject: &str,
        groups: &[&str],
        issued_at: u64,
        expires_at: u64,
        audience: &str,
    ) -> anyhow::Result<String> {
        let (now, ttl_secs) = (issued_at, expires_at.saturating_sub(issued_at));
        let mut claims = json!({
            "sub": subject,
            "iss": self.issuer,
            "aud": audience,
            "token_use": "id",
            "cognito:username": subject,
            "email": format!("{subject}@example.com"),
            "iat": now,
            "exp": now + ttl_secs,
        });
        if !groups.is_empty() {
            claims["cognito:groups"] = json!(groups);
        }
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&self.key.0))?)
    }

    /// Verifies a token from the `Authorization` header (with or without `Bearer `) and returns
    /// its claims flattened the way API Gateway passes them to the function.
    pub fn verify(&self, header: Option<&str>) -> Result<HashMap<String, String>, Rejection> {
        let raw = header.map(str::trim).filter(|h| !h.is_empty()).ok_or(Rejection::Missing)?;
        let token = raw.strip_prefix("Bearer ").or_else(|| raw.strip_prefix("bearer ")).unwrap_or(raw).trim();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audience);
        validation.validate_nbf = true;
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<serde_json::Map<String, Json>>(
            token,
            &DecodingKey::from_secret(&self.key.0),
            &validation,
        )?;
        Ok(data.claims.into_iter().map(|(name, value)| (name, flatten_claim(&value))).collect())
    }
}

/// API Gateway's rendering of a claim: strings as-is, arrays as `[a b]`, others as JSON text.
fn flatten_claim(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Array(items) => {
            let parts: Vec<String> = items.iter().map(flatten_claim).collect();
            format!("[{}]", parts.join(" "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(key: SigningKey) -> LocalIdentity {
        let spec = JwtAuthorizerSpec {
            name: "Jwt".into(),
            issuer: "https://issuer.local".into(),
            audience: vec!["client".into()],
            identity_source: "$request.header.Authorization".into(),
        };
        LocalIdentity::new(key, &spec)
    }

    #[test]
    fn a_minted_token_verifies_and_carries_flattened_groups() {
        let identity = identity(SigningKey::random().unwrap());
        let token = identity.mint("root", &["admin", "staff"], 60).unwrap();
        let claims = identity.verify(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(claims["sub"], "root");
        assert_eq!(claims["cognito:groups"], "[admin staff]");
    }

    #[test]
    fn tokens_signed_by_another_key_or_expired_or_missing_are_rejected() {
        let ours = identity(SigningKey::random().unwrap());
        let theirs = identity(SigningKey::random().unwrap());
        let forged = theirs.mint("eve", &["admin"], 60).unwrap();
        assert!(ours.verify(Some(&forged)).is_err());
        assert!(matches!(ours.verify(None), Err(Rejection::Missing)));
        let mut stale = ours.clone();
        stale.issuer = "https://other.issuer".into();
        let wrong_issuer = stale.mint("eve", &[], 60).unwrap();
        assert!(ours.verify(Some(&wrong_issuer)).is_err());
    }
}
