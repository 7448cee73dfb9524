//! Opaque, signed pagination cursors.
//!
//! A cursor is `base64url(payload).base64url(tag)`: the payload is JSON of the last returned
//! item's key plus a *scope*, a string naming the query it belongs to (say `category=mugs`); the
//! tag is HMAC-SHA256 over the encoded payload, truncated to 128 bits (as RFC 4868's
//! HMAC-SHA-256-128), with a key only the stack knows ([`CursorKeys`]). Decoding checks the tag
//! first, in constant time, and reads the payload only if it holds, so no edited key ever reaches
//! DynamoDB as an `ExclusiveStartKey` (DynamoDB answers `ValidationException` for a start key
//! outside the query, which would surface as a 500). Then it checks the key's attribute names
//! and the scope, so a cursor cannot be replayed against another filter either. Only string key
//! attributes are carried: every Ferrocart key is a string.
//!
//! HMAC comes from `ring`, already linked into every function as rustls' crypto provider (the
//! SDK's TLS stack), so signing adds no second SHA-256 implementation to the binaries; the
//! truncated tags are compared in constant time by `subtle`.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

use crate::secrets::{self, Loading, OnFirstUse, SecretError, Stage, Unavailable};

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not a cursor, or one whose payload or tag was changed, or signed with another key.
    #[error("the cursor is not one this API issued")]
    Malformed,
    #[error("the cursor belongs to a different query; start again without it")]
    WrongQuery,
}

/// Why the signing keys could not be had at cold start.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(
        "the cursor signing secret {arn} ({stage}) is shorter than {min} bytes",
        min = CursorKeys::MIN_SECRET_LEN
    )]
    TooShort { arn: String, stage: Stage },
}

/// The cursor keys of a store that may serve listings. Only the API functions list, so only
/// their stores are given keys; a consumer's store has none (`ListingKeys::default()`) and no
/// secret to read at start-up.
///
/// An API function's keys are read from the secret by the first listing that needs them
/// (`ListingKeys::from(OnFirstUse::new(CursorKeys::loader(..)))`): its store is built at once
/// and only a listing awaits the keys ([`ListingKeys::get`]), so a secret that cannot be read
/// fails the listings (each answers a 500, and a later one reads again after the
/// [`OnFirstUse`] backoff) while every other route goes on. Tests give keys at hand
/// (`ListingKeys::from(keys)`).
#[derive(Debug, Clone, Default)]
pub struct ListingKeys(Keys);

#[derive(Debug, Clone, Default)]
enum Keys {
    #[default]
    None,
    Ready(CursorKeys),
    OnFirstUse(Arc<OnFirstUse<CursorKeys, KeyError>>),
}

impl From<CursorKeys> for ListingKeys {
    fn from(keys: CursorKeys) -> Self {
        Self(Keys::Ready(keys))
    }
}

impl From<OnFirstUse<CursorKeys, KeyError>> for ListingKeys {
    fn from(keys: OnFirstUse<CursorKeys, KeyError>) -> Self {
        Self(Keys::OnFirstUse(Arc::new(keys)))
    }
}

impl ListingKeys {
    /// The keys, once loaded; [`KeysUnavailable`] when they could not be read (or not yet
    /// again: the backoff) or the store was built without them (a wiring mistake).
    pub async fn get(&self) -> Result<&CursorKeys, KeysUnavailable> {
        match &self.0 {
            Keys::None => Err(KeysUnavailable::NotListing),
            Keys::Ready(keys) => Ok(keys),
            Keys::OnFirstUse(keys) => Ok(keys.get().await?),
        }
    }
}

/// Why a store cannot list now. Both are the stack's fault, never the request's: a 500 that
/// names nothing (the log has the cause chain, with the secret's ARN and stage, never its value).
#[derive(Debug, thiserror::Error)]
pub enum KeysUnavailable {
    #[error("this store was built without cursor keys and cannot list")]
    NotListing,
    #[error("the cursor signing keys are unavailable, so no listing can be served")]
    NotLoaded(#[from] Unavailable<KeyError>),
}

/// The keys cursors are signed with. New cursors are signed with the current key; a cursor is
/// accepted under the current or the previous one, so rotating the secret does not break the
/// listings clients are paging through (until it is rotated again).
#[derive(Clone)]
pub struct CursorKeys {
    current: hmac::Key,
    previous: Option<hmac::Key>,
}

impl std::fmt::Debug for CursorKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorKeys").field("previous", &self.previous.is_some()).finish_non_exhaustive()
    }
}

impl CursorKeys {
    /// Shortest secret accepted: 256 bits, SHA-256's output, as RFC 2104 recommends at least.
    pub const MIN_SECRET_LEN: usize = 32;

    /// Keys from the secret's bytes, used as they are. `None` when a secret is shorter than
    /// [`Self::MIN_SECRET_LEN`].
    pub fn new(current: &[u8], previous: Option<&[u8]>) -> Option<Self> {
        let previous = match previous {
            Some(secret) => Some(Self::key(secret)?),
            None => None,
        };
        Some(Self { current: Self::key(current)?, previous })
    }

    fn key(secret: &[u8]) -> Option<hmac::Key> {
        (secret.len() >= Self::MIN_SECRET_LEN).then(|| hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// What [`OnFirstUse`] runs to read the keys from the secret `arn` ([`Self::load`]): an
    /// API function's `main` hands it to its store (see [`ListingKeys`]), and the first listing
    /// reads them.
    pub fn loader(
        client: crate::aws::Deferred<aws_sdk_secretsmanager::Client>,
        arn: String,
    ) -> impl Fn() -> Loading<Self, KeyError> + Send + Sync + 'static {
        move || {
            let (client, arn) = (client.clone(), arn.clone());
            Box::pin(async move { Self::load(client.get(), &arn).await })
        }
    }

    /// Reads the secret `arn` (once per cold start, at the first listing): its current value (`AWSCURRENT`) signs, and its
    /// previous value (`AWSPREVIOUS`), if it was ever changed, is still accepted. Two
    /// `GetSecretValue` calls, made together.
    pub async fn load(client: &aws_sdk_secretsmanager::Client, arn: &str) -> Result<Self, KeyError> {
        let (current, previous) = tokio::join!(secrets::current(client, arn), secrets::previous(client, arn));
        let (current, previous) = (current?, previous?);
        let too_short = |stage| KeyError::TooShort { arn: arn.to_owned(), stage };
        Ok(Self {
            current: Self::key(current.expose().as_bytes()).ok_or_else(|| too_short(Stage::Current))?,
            previous: match previous {
                Some(previous) => {
                    Some(Self::key(previous.expose().as_bytes()).ok_or_else(|| too_short(Stage::Previous))?)
                }
                None => None,
            },
        })
    }

    fn tag(key: &hmac::Key, payload: &str) -> [u8; TAG_LEN] {
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&hmac::sign(key, payload.as_bytes()).as_ref()[..TAG_LEN]);
        tag
    }

    /// Whether `tag` is `payload`'s tag under the current or the previous key. Each comparison
    /// is constant-time, so timing does not tell how much of a guessed tag was right.
    fn verify(&self, payload: &str, tag: &[u8]) -> bool {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .any(|key| bool::from(Self::tag(key, payload).as_slice().ct_eq(tag)))
    }
}

/// Bytes of HMAC-SHA256 kept: 128 bits, RFC 4868's truncation, 22 characters of base64url.
const TAG_LEN: usize = 16;

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

    /// The cursor as clients see it, signed with the current key.
    pub fn encode(&self, keys: &CursorKeys) -> String {
        // Serializing a map of strings cannot fail.
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default());
        let tag = URL_SAFE_NO_PAD.encode(CursorKeys::tag(&keys.current, &payload));
        format!("{payload}.{tag}")
    }

    /// Decodes a cursor and checks it was signed with one of `keys` and issued for `scope` with
    /// exactly `key_names`.
    pub fn decode(raw: &str, scope: &str, key_names: &[&str], keys: &CursorKeys) -> Result<Self, CursorError> {
        if raw.len() > Self::MAX_ENCODED_LEN {
            return Err(CursorError::Malformed);
        }
        let (payload, tag) = raw.split_once('.').ok_or(CursorError::Malformed)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| CursorError::Malformed)?;
        // The tag is checked over the payload as sent, before the payload is even decoded.
        if !keys.verify(payload, &tag) {
            return Err(CursorError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| CursorError::Malformed)?;
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

    const SCOPE: &str = "category=mugs";
    const NAMES: [&str; 2] = ["pk", "sk"];

    fn item() -> std::collections::HashMap<String, AttributeValue> {
        [("pk", "CAT#mugs"), ("sk", "P#1"), ("other", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), AttributeValue::S(v.to_owned())))
            .collect()
    }

    fn keys(secret: &str) -> CursorKeys {
        CursorKeys::new(secret.repeat(32).as_bytes(), None).unwrap()
    }

    fn issued(keys: &CursorKeys) -> String {
        Cursor::after(SCOPE, &item(), &NAMES).unwrap().encode(keys)
    }

    /// `cursor` with its payload replaced by `json`, its tag kept.
    fn with_payload(cursor: &str, json: &str) -> String {
        let (_, tag) = cursor.split_once('.').unwrap();
        format!("{}.{tag}", URL_SAFE_NO_PAD.encode(json))
    }

    #[test]
    fn a_cursor_round_trips_to_the_same_start_key() {
        let keys = keys("a");
        let cursor = Cursor::after(SCOPE, &item(), &NAMES).unwrap();

        let decoded = Cursor::decode(&cursor.encode(&keys), SCOPE, &NAMES, &keys).unwrap();

        assert_eq!(decoded, cursor);
        assert_eq!(decoded.start_key().len(), 2);
    }

    #[test]
    fn a_cursor_is_its_payload_and_a_128_bit_tag() {
        let encoded = issued(&keys("a"));

        let (payload, tag) = encoded.split_once('.').unwrap();

        assert_eq!(
            URL_SAFE_NO_PAD.decode(payload).unwrap(),
            br#"{"s":"category=mugs","k":{"pk":"CAT#mugs","sk":"P#1"}}"#
        );
        assert_eq!(tag.len(), 22);
    }

    #[test]
    fn a_cursor_for_another_query_is_refused() {
        let keys = keys("a");

        assert_eq!(Cursor::decode(&issued(&keys), "category=hats", &NAMES, &keys), Err(CursorError::WrongQuery));
    }

    #[test]
    fn a_cursor_whose_key_was_edited_is_refused() {
        let keys = keys("a");
        let issued = issued(&keys);

        for json in [
            r#"{"s":"category=mugs","k":{"pk":"CAT#hats","sk":"P#1"}}"#,
            r#"{"s":"category=mugs","k":{"pk":"","sk":""}}"#,
            r#"{"s":"category=hats","k":{"pk":"CAT#mugs","sk":"P#1"}}"#,
        ] {
            let tampered = with_payload(&issued, json);

            assert_eq!(Cursor::decode(&tampered, SCOPE, &NAMES, &keys), Err(CursorError::Malformed), "{json}");
        }
    }

    #[test]
    fn a_cursor_whose_tag_was_edited_is_refused() {
        let keys = keys("a");
        let issued = issued(&keys);
        let (payload, tag) = issued.split_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(tag).unwrap();
        bytes[0] ^= 1;

        for tampered in
            [format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&bytes)), format!("{payload}."), payload.to_owned()]
        {
            assert_eq!(Cursor::decode(&tampered, SCOPE, &NAMES, &keys), Err(CursorError::Malformed), "{tampered}");
        }
    }

    #[test]
    fn a_cursor_signed_with_another_key_is_refused() {
        let ours = keys("a");
        let theirs = keys("b");

        assert_eq!(Cursor::decode(&issued(&theirs), SCOPE, &NAMES, &ours), Err(CursorError::Malformed));
    }

    #[test]
    fn a_truncated_cursor_is_refused() {
        let keys = keys("a");
        let issued = issued(&keys);

        for end in [0, 1, issued.len() / 2, issued.find('.').unwrap(), issued.len() - 1] {
            let truncated = &issued[..end];

            assert_eq!(Cursor::decode(truncated, SCOPE, &NAMES, &keys), Err(CursorError::Malformed), "{truncated}");
        }
    }

    #[test]
    fn a_cursor_signed_before_a_rotation_is_accepted_after_it_and_not_after_the_next() {
        let (old, new, newer) = ("a".repeat(32), "b".repeat(32), "c".repeat(32));
        let before = CursorKeys::new(old.as_bytes(), None).unwrap();
        let after = CursorKeys::new(new.as_bytes(), Some(old.as_bytes())).unwrap();
        let after_next = CursorKeys::new(newer.as_bytes(), Some(new.as_bytes())).unwrap();
        let cursor = issued(&before);

        assert!(Cursor::decode(&cursor, SCOPE, &NAMES, &after).is_ok());
        assert_eq!(Cursor::decode(&cursor, SCOPE, &NAMES, &after_next), Err(CursorError::Malformed));
        assert!(issued(&after) != cursor, "new cursors are signed with the new key");
    }

    #[tokio::test(start_paused = true)]
    async fn cursor_keys_that_cannot_be_read_fail_each_listing_until_a_read_after_the_backoff_succeeds() {
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&reads);
        let listing = ListingKeys::from(OnFirstUse::new(move || {
            let read = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let too_short = KeyError::TooShort { arn: "arn:aws:secretsmanager:cursor".into(), stage: Stage::Current };
            std::future::ready(if read == 0 { Err(too_short) } else { Ok(keys("a")) })
        }));

        let failed = listing.get().await.unwrap_err();
        let within = listing.get().await.unwrap_err();
        tokio::time::advance(secrets::FIRST_BACKOFF).await;
        let after = listing.get().await.unwrap();

        for refused in [&failed, &within] {
            assert!(matches!(refused, KeysUnavailable::NotLoaded(_)), "{refused:?}");
            let source = std::error::Error::source(refused).map(ToString::to_string).unwrap_or_default();
            assert!(source.contains("arn:aws:secretsmanager:cursor (AWSCURRENT)"), "{source}");
        }
        assert_eq!(Cursor::decode(&issued(after), SCOPE, &NAMES, &keys("a")).map(|c| c.start_key().len()), Ok(2));
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 2, "none within the backoff");
    }

    #[tokio::test]
    async fn a_store_built_without_cursor_keys_cannot_list() {
        assert!(matches!(ListingKeys::default().get().await, Err(KeysUnavailable::NotListing)));
    }

    #[test]
    fn a_secret_shorter_than_256_bits_is_refused() {
        assert!(CursorKeys::new(&[7; 31], None).is_none());
        assert!(CursorKeys::new(&[7; 32], Some(&[7; 31])).is_none());
        assert!(CursorKeys::new(&[7; 32], Some(&[8; 32])).is_some());
    }

    #[test]
    fn garbage_and_oversized_cursors_are_refused() {
        let keys = keys("a");

        assert_eq!(Cursor::decode("not base64!", SCOPE, &NAMES, &keys), Err(CursorError::Malformed));
        assert_eq!(Cursor::decode("a.b.c", SCOPE, &NAMES, &keys), Err(CursorError::Malformed));
        assert_eq!(Cursor::decode(&"A".repeat(5000), SCOPE, &NAMES, &keys), Err(CursorError::Malformed));
    }

    #[test]
    fn a_signed_cursor_with_other_key_names_is_refused() {
        let keys = keys("a");
        let cursor = Cursor::after(SCOPE, &item(), &["pk", "sk", "other"]).unwrap().encode(&keys);

        assert_eq!(Cursor::decode(&cursor, SCOPE, &NAMES, &keys), Err(CursorError::Malformed));
    }
}
