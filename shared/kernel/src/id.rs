//! Typed, prefixed identifiers (`prod_01J…`), one newtype per entity so an order id can never be
//! passed where a product id is expected. The ULID body sorts by creation time, which the tables
//! use for stable listing order.

/// The error for a string that is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id (expected `{prefix}_` followed by a 26-character ULID)")]
pub struct IdError {
    pub kind: &'static str,
    pub prefix: &'static str,
    pub value: String,
}

/// Declares a prefixed ULID id type with `new`, `Display`, `FromStr` and string serde.
#[macro_export]
macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(::ulid::Ulid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id; ids made later sort after ids made earlier.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(::ulid::Ulid::new())
            }

            pub fn ulid(&self) -> ::ulid::Ulid {
                self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}_{}", $prefix, self.0)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::id::IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let error = || $crate::id::IdError { kind: $kind, prefix: $prefix, value: s.to_owned() };
                let body = s
                    .strip_prefix($prefix)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .ok_or_else(error)?;
                ::ulid::Ulid::from_string(body).map(Self).map_err(|_| error())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <::std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                raw.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// Identifies a product in the catalog.
    ProductId,
    "prod",
    "product"
);

typed_id!(
    /// Identifies an order; also the correlation id of every event of its saga.
    OrderId,
    "ord",
    "order"
);

typed_id!(
    /// Identifies a shopping cart.
    CartId,
    "cart",
    "cart"
);

typed_id!(
    /// Identifies a shipment: the units of one order that leave one warehouse together.
    ShipmentId,
    "shp",
    "shipment"
);

typed_id!(
    /// Identifies a refund: money paid back on an order's captured payment.
    RefundId,
    "rfd",
    "refund"
);

typed_id!(
    /// Identifies a return: units of a delivered order the customer sends back.
    ReturnId,
    "ret",
    "return"
);

typed_id!(
    /// Identifies one domain event (in logs and traces; the outbox item is keyed by it).
    EventId,
    "evt",
    "event"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_id_round_trips_through_its_string_form() {
        let id = ProductId::new();
        let parsed: ProductId = id.to_string().parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed, id);
        assert!(id.to_string().starts_with("prod_"));
    }

    #[test]
    fn an_id_with_the_wrong_prefix_or_body_is_refused() {
        assert!("order_01J9ZQ7Y3N5W0000000000000".parse::<ProductId>().is_err());
        assert!("prod_not-a-ulid".parse::<ProductId>().is_err());
        assert!("prod01J9ZQ7Y3N5W00000000000000".parse::<ProductId>().is_err());
    }

    #[test]
    fn ids_made_later_sort_after_ids_made_earlier() {
        let first = ProductId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = ProductId::new();
        assert!(second > first);
    }
}
