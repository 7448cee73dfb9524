//! Stock keeping units: the catalog-wide identity of a sellable variant.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a SKU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a valid SKU: use 1 to 64 upper-case letters, digits, `-`, `_` or `.`, starting with a letter or digit"
)]
pub struct SkuError(pub String);

/// A SKU such as `TEE-BLK-M`. Upper case only, so `tee-blk-m` can never shadow `TEE-BLK-M`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Sku(String);

impl Sku {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, SkuError> {
        let mut chars = raw.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        let rest_ok = chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
        if first_ok && rest_ok && raw.len() <= Self::MAX_LEN {
            Ok(Self(raw.to_owned()))
        } else {
            Err(SkuError(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sku {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Sku::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_are_upper_case_codes() {
        assert!(Sku::parse("TEE-BLK-M").is_ok());
        assert!(Sku::parse("A1_B2.C3").is_ok());
    }

    #[test]
    fn lower_case_empty_long_or_punctuated_skus_are_refused() {
        for bad in ["", "tee-blk-m", "-TEE", "TEE BLK", "TEE/1", &"A".repeat(65)] {
            assert!(Sku::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
