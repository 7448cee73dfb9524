//! Opaque pagination cursors.
//!
//! A cursor is base64url(JSON) of the last returned item's key plus a *scope*: a string naming
//! the query it belongs to (say `category=mugs`). Decoding checks the shape, and the caller checks
//! the scope, so a cursor cannot be tampered into an arbitrary `ExclusiveStartKey` or replayed
//! against another filter. Only string key attributes are carried: every Ferrocart key is a string.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("the cursor is not one this API issued")]
    Malformed,
    #[error("the cursor belongs to a different query; start again without it")]
    WrongQuery,
}

/// A decoded cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "s")]
    scope: String,
    #[serde(rename = "k")]
    key: BTreeMap<String, String>,
}

impl Cursor {
    /// Longest cursor we will decode; real ones are a few hundred bytes.
    const MAX_ENCODED_LEN: usize = 2048;

    /// A cursor for `scope` that resumes after the item whose key attributes are `key`.
    /// Returns `None` when a key attribute is not a string (no Ferrocart key is).
    pub fn after(
        scope: impl Into<String>,
        item: &std::collections::HashMap<String, AttributeValue>,
        key_names: &[&str],
    ) -> Option<Self> {
        let mut key = BTreeMap::new();
        for name in key_names {
            let value = item.get(*name)?.as_s().ok()?;
            key.insert((*name).to_owned(), value.clone());
        }
        Some(Self { scope: scope.into(), key })
    }

    pub fn encode(&self) -> String {
        // Serializing a map of strings cannot fail.
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a cursor and checks it was issued for `scope` with exactly `key_names`.
    pub fn decode(raw: &str, scope: &str, key_names: &[&str]) -> Result<Self, CursorError> {
        if raw.len() > Self::MAX_ENCODED_LEN {
            return Err(CursorError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| CursorError::Malformed)?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| CursorError::Malformed)?;
        let names_match =
            cursor.key.len() == key_names.len() && key_names.iter().all(|name| cursor.key.contains_key(*name));
        if !names_match {
            return Err(CursorError::Malformed);
        }
        if cursor.scope != scope {
            return Err(CursorError::WrongQuery);
        }
        Ok(cursor)
    }

    /// The `ExclusiveStartKey` to resume the query.
    pub fn start_key(&self) -> std::collections::HashMap<String, AttributeValue> {
        self.key.iter().map(|(name, value)| (name.clone(), AttributeValue::S(value.clone()))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> std::collections::HashMap<String, AttributeValue> {
        [("pk", "CAT#mugs"), ("sk", "P#1"), ("other", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), AttributeValue::S(v.to_owned())))
            .collect()
    }

    #[test]
    fn a_cursor_round_trips_to_the_same_start_key() {
        let cursor = Cursor::after("category=mugs", &item(), &["pk", "sk"]);
        let encoded = cursor.as_ref().map(Cursor::encode).unwrap_or_default();
        let decoded = Cursor::decode(&encoded, "category=mugs", &["pk", "sk"]);
        assert_eq!(decoded.ok(), cursor);
        assert_eq!(decoded_key_len(&encoded), 2);
    }

    fn decoded_key_len(encoded: &str) -> usize {
        Cursor::decode(encoded, "category=mugs", &["pk", "sk"]).map(|c| c.start_key().len()).unwrap_or(0)
    }

    #[test]
    fn a_cursor_for_another_query_is_refused() {
        let encoded = Cursor::after("category=mugs", &item(), &["pk", "sk"]).map(|c| c.encode()).unwrap_or_default();
        assert_eq!(Cursor::decode(&encoded, "category=hats", &["pk", "sk"]), Err(CursorError::WrongQuery));
    }

    #[test]
    fn garbage_and_tampered_cursors_are_refused() {
        assert_eq!(Cursor::decode("not base64!", "s", &["pk"]), Err(CursorError::Malformed));
        let tampered = URL_SAFE_NO_PAD.encode(br#"{"s":"s","k":{"pk":"A","evil":"B"}}"#);
        assert_eq!(Cursor::decode(&tampered, "s", &["pk"]), Err(CursorError::Malformed));
        assert_eq!(Cursor::decode(&"A".repeat(5000), "s", &["pk"]), Err(CursorError::Malformed));
    }
}
