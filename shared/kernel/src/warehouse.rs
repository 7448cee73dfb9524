//! A warehouse code, shared by inventory (stock per warehouse) and fulfillment (one shipment per
//! warehouse).

use serde::{Deserialize, Serialize};

/// A warehouse code: 1 to 50 lower-case letters, digits and hyphens, not starting with a hyphen
/// (`main`, `eu-central-1`). Never `#`, which the stores' composite sort keys use as separator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Warehouse(String);

impl Warehouse {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 50
            && raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !raw.starts_with('-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!("`{raw}` is not a warehouse code: use 1 to 50 lower-case letters, digits and hyphens"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Warehouse {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl From<Warehouse> for String {
    fn from(warehouse: Warehouse) -> Self {
        warehouse.0
    }
}

impl std::fmt::Display for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warehouse_codes_are_validated() {
        assert!(Warehouse::parse("eu-central-1").is_ok());
        assert!(Warehouse::parse("EU").is_err());
        assert!(Warehouse::parse("").is_err());
        assert!(Warehouse::parse("-x").is_err());
        assert!(Warehouse::parse("a#b").is_err());
        assert!(Warehouse::parse(&"w".repeat(51)).is_err());
    }
}
