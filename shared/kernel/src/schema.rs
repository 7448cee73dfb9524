//! JSON Schemas of the kernel types (feature `schema`), so event contracts generated from Rust
//! types describe money, SKUs and ids exactly as they serialize.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::{CartId, Currency, EventId, Money, OrderId, ProductId, RefundId, ReturnId, ShipmentId, Sku, Warehouse};

impl JsonSchema for Currency {
    fn schema_name() -> Cow<'static, str> {
        "Currency".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[A-Z]{3}$",
            "description": "ISO 4217 currency code"
        })
    }
}

impl JsonSchema for Money {
    fn schema_name() -> Cow<'static, str> {
        "Money".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let currency = generator.subschema_for::<Currency>();
        json_schema!({
            "type": "object",
            "description": "An amount in integer minor units of an ISO 4217 currency",
            "properties": {
                "amount": { "type": "integer", "minimum": -Money::MAX_AMOUNT, "maximum": Money::MAX_AMOUNT },
                "currency": currency
            },
            "required": ["amount", "currency"],
            "additionalProperties": false
        })
    }
}

impl JsonSchema for Sku {
    fn schema_name() -> Cow<'static, str> {
        "Sku".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": "^[A-Z0-9][A-Z0-9._-]{0,63}$" })
    }
}

macro_rules! id_schema {
    ($name:ident) => {
        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": format!("^{}_[0-9A-HJKMNP-TV-Z]{{26}}$", $name::PREFIX)
                })
            }
        }
    };
}

id_schema!(ProductId);
id_schema!(OrderId);
id_schema!(ShipmentId);
id_schema!(CartId);
id_schema!(EventId);
id_schema!(RefundId);
id_schema!(ReturnId);

impl JsonSchema for Warehouse {
    fn schema_name() -> Cow<'static, str> {
        "Warehouse".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,49}$" })
    }
}
