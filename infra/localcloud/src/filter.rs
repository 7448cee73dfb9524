//! Event source mapping `FilterCriteria`, applied as Lambda applies them: a record reaches the
//! function only if it matches at least one pattern; a queue message that matches none is
//! deleted, a stream record that matches none is skipped.
//!
//! Patterns use Lambda's filter syntax (that of EventBridge): nested objects must all match; a
//! list matches when any of its entries does; an entry is a literal (string, number, boolean,
//! null) or one of `prefix`, `suffix`, `equals-ignore-case`, `anything-but`, `exists` and
//! `numeric`. For SQS, a pattern on `body` reads the body as JSON. An operator this module does
//! not know is refused when the template is read, never silently matched.

use anyhow::{anyhow, bail};
use serde_json::Value as Json;

/// The `FilterCriteria` of one mapping; empty lets every record through.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    patterns: Vec<Json>,
}

impl Filters {
    /// Reads `FilterCriteria: { Filters: [ { Pattern: "<json>" } ] }` (absent: no filter).
    pub fn parse(criteria: Option<&Json>, location: &str) -> anyhow::Result<Self> {
        let Some(criteria) = criteria else { return Ok(Self::default()) };
        let mut patterns = Vec::new();
        for filter in criteria.get("Filters").and_then(Json::as_array).into_iter().flatten() {
            let text = filter
                .get("Pattern")
                .and_then(Json::as_str)
                .ok_or_else(|| anyhow!("{location}: a filter needs a Pattern"))?;
            let pattern: Json =
                serde_json::from_str(text).map_err(|e| anyhow!("{location}: pattern is not JSON: {e}"))?;
            check(&pattern).map_err(|e| anyhow!("{location}: {e}"))?;
            patterns.push(pattern);
        }
        Ok(Self { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `record` (as the function would receive it) passes.
    pub fn admits(&self, record: &Json) -> bool {
        if self.patterns.is_empty() {
            return true;
        }
        // SQS: a pattern on `body` sees the body parsed, when it is JSON.
        let parsed;
        let record = match record.get("body").and_then(Json::as_str).and_then(|b| serde_json::from_str::<Json>(b).ok())
        {
            Some(body) => {
                let mut copy = record.clone();
                copy["body"] = body;
                parsed = copy;
                &parsed
            }
            None => record,
        };
        self.patterns.iter().any(|pattern| object_matches(pattern, record))
    }
}

fn check(pattern: &Json) -> anyhow::Result<()> {
    let Json::Object(fields) = pattern else { bail!("a pattern is a JSON object") };
    for (key, value) in fields {
        if key.starts_with('$') {
            bail!("`{key}` is not supported by the local cloud");
        }
        match value {
            Json::Object(_) => check(value)?,
            Json::Array(entries) => {
                for entry in entries {
                    if let Json::Object(operator) = entry {
                        for (name, argument) in operator {
                            check_operator(name, argument).map_err(|e| anyhow!("under `{key}`: {e}"))?;
                        }
                    }
                }
            }
            _ => bail!("`{key}` must map to an object or a list of matchers"),
        }
    }
    Ok(())
}

/// An operator's argument must have the shape Lambda accepts, or the pattern is refused (as
/// Lambda refuses it) rather than silently never matching.
fn check_operator(name: &str, argument: &Json) -> anyhow::Result<()> {
    let scalar = |value: &Json| matches!(value, Json::String(_) | Json::Number(_) | Json::Bool(_) | Json::Null);
    let valid = match name {
        "prefix" | "suffix" | "equals-ignore-case" => argument.is_string(),
        "exists" => argument.is_boolean(),
        "anything-but" => match argument {
            Json::Array(values) => values.iter().all(scalar),
            Json::Object(inner) => {
                inner.len() == 1
                    && inner.iter().all(|(op, arg)| matches!(op.as_str(), "prefix" | "suffix") && arg.is_string())
            }
            other => scalar(other),
        },
        "numeric" => argument.as_array().is_some_and(|conditions| {
            !conditions.is_empty()
                && conditions.len() % 2 == 0
                && conditions
                    .chunks(2)
                    .all(|pair| matches!(pair[0].as_str(), Some("=" | "<" | "<=" | ">" | ">=")) && pair[1].is_number())
        }),
        other => bail!("filter operator `{other}` is not supported by the local cloud"),
    };
    if !valid {
        bail!("`{name}` has an argument Lambda would refuse: {argument}");
    }
    Ok(())
}

fn object_matches(pattern: &Json, value: &Json) -> bool {
    // A list of objects matches when any of its objects does.
    if let Json::Array(items) = value {
        return items.iter().any(|item| object_matches(pattern, item));
    }
    let Json::Object(fields) = pattern else { return false };
    fields.iter().all(|(key, expected)| {
        let actual = value.get(key);
        match expected {
            Json::Object(_) => actual.is_some_and(|actual| object_matches(expected, actual)),
            Json::Array(entries) => entries.iter().any(|entry| entry_matches(entry, actual)),
            _ => false,
        }
    })
}

/// One matcher against a field that may be absent, a scalar, or a list of scalars (any matches).
fn entry_matches(entry: &Json, actual: Option<&Json>) -> bool {
    if let Some(exists) = entry.get("exists").and_then(Json::as_bool) {
        return actual.is_some() == exists;
    }
    match actual {
        None => false,
        Some(Json::Array(items)) => items.iter().any(|item| scalar_matches(entry, item)),
        Some(item) => scalar_matches(entry, item),
    }
}

fn scalar_matches(entry: &Json, item: &Json) -> bool {
    let text = item.as_str();
    match entry {
        Json::Object(operator) => operator.iter().all(|(name, argument)| match name.as_str() {
            "prefix" => text.zip(argument.as_str()).is_some_and(|(t, p)| t.starts_with(p)),
            "suffix" => text.zip(argument.as_str()).is_some_and(|(t, s)| t.ends_with(s)),
            "equals-ignore-case" => text.zip(argument.as_str()).is_some_and(|(t, e)| t.eq_ignore_ascii_case(e)),
            "anything-but" => match argument {
                Json::Array(excluded) => !excluded.iter().any(|x| literal_equals(x, item)),
                Json::Object(_) => !scalar_matches(argument, item),
                literal => !literal_equals(literal, item),
            },
            "numeric" => numeric(argument, item),
            _ => false,
        }),
        literal => literal_equals(literal, item),
    }
}

fn literal_equals(literal: &Json, item: &Json) -> bool {
    match (literal.as_f64(), item.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => literal == item,
    }
}

/// `{"numeric": [">", 0, "<=", 5]}`: every comparison holds.
fn numeric(argument: &Json, item: &Json) -> bool {
    let (Some(conditions), Some(value)) = (argument.as_array(), item.as_f64()) else { return false };
    conditions.chunks(2).all(|pair| match (pair.first().and_then(Json::as_str), pair.get(1).and_then(Json::as_f64)) {
        (Some("="), Some(n)) => value == n,
        (Some("<"), Some(n)) => value < n,
        (Some("<="), Some(n)) => value <= n,
        (Some(">"), Some(n)) => value > n,
        (Some(">="), Some(n)) => value >= n,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn filters(patterns: &[&str]) -> Filters {
        let criteria = json!({ "Filters": patterns.iter().map(|p| json!({ "Pattern": p })).collect::<Vec<_>>() });
        Filters::parse(Some(&criteria), "Fn.Events.Stream").unwrap()
    }

    fn insert(pk: &str) -> Json {
        json!({ "eventName": "INSERT", "dynamodb": { "Keys": { "pk": { "S": pk }, "sk": { "S": "X" } } } })
    }

    #[test]
    fn the_outbox_filter_admits_only_inserted_outbox_items() {
        let outbox =
            filters(&[r#"{"eventName": ["INSERT"], "dynamodb": {"Keys": {"pk": {"S": [{"prefix": "OUTBOX#"}]}}}}"#]);

        assert!(outbox.admits(&insert("OUTBOX#evt_1")));
        assert!(!outbox.admits(&insert("INBOX#evt_1")));
        let mut modified = insert("OUTBOX#evt_1");
        modified["eventName"] = json!("MODIFY");
        assert!(!outbox.admits(&modified));
    }

    #[test]
    fn any_pattern_may_admit_a_record_and_no_patterns_admit_all() {
        let either = filters(&[r#"{"eventName": ["REMOVE"]}"#, r#"{"eventName": ["INSERT"]}"#]);
        assert!(either.admits(&insert("A")));
        assert!(Filters::default().admits(&insert("A")));
    }

    #[test]
    fn an_sqs_body_is_matched_as_json() {
        let orders = filters(&[
            r#"{"body": {"detail-type": ["OrderPlaced"], "detail": {"data": {"total": {"amount": [{"numeric": [">", 0]}]}}}}}"#,
        ]);
        let message = |body: Json| json!({ "messageId": "m", "body": body.to_string() });

        assert!(orders.admits(&message(
            json!({ "detail-type": "OrderPlaced", "detail": { "data": { "total": { "amount": 5 } } } })
        )));
        assert!(!orders.admits(&message(
            json!({ "detail-type": "OrderPlaced", "detail": { "data": { "total": { "amount": 0 } } } })
        )));
        assert!(!orders.admits(&json!({ "messageId": "m", "body": "not json" })));
    }

    #[test]
    fn anything_but_exists_and_suffix_work_as_in_lambda() {
        let pattern =
            filters(&[r#"{"a": [{"anything-but": ["x", "y"]}], "b": [{"exists": false}], "c": [{"suffix": ".png"}]}"#]);
        assert!(pattern.admits(&json!({ "a": "z", "c": "cat.png" })));
        assert!(!pattern.admits(&json!({ "a": "x", "c": "cat.png" })));
        assert!(!pattern.admits(&json!({ "a": "z", "b": 1, "c": "cat.png" })));
    }

    #[test]
    fn a_pattern_on_a_list_of_objects_matches_any_of_them() {
        let images = filters(&[r#"{"Records": {"kind": ["image"]}}"#]);
        assert!(images.admits(&json!({ "Records": [{ "kind": "text" }, { "kind": "image" }] })));
        assert!(!images.admits(&json!({ "Records": [{ "kind": "text" }] })));
    }

    #[test]
    fn an_operator_argument_lambda_would_refuse_is_refused() {
        for bad in [
            r#"{"a": [{"exists": "true"}]}"#,
            r#"{"a": [{"prefix": {"nested": 1}}]}"#,
            r#"{"a": [{"numeric": [">", "zero"]}]}"#,
            r#"{"a": [{"anything-but": {"wildcard": "x"}}]}"#,
            r#"{"$or": [{"a": ["x"]}, {"b": ["y"]}]}"#,
        ] {
            let criteria = json!({ "Filters": [{ "Pattern": bad }] });
            assert!(Filters::parse(Some(&criteria), "Fn.Events.Queue").is_err(), "{bad}");
        }
    }

    #[test]
    fn an_unknown_operator_is_refused_by_location() {
        let criteria = json!({ "Filters": [{ "Pattern": r#"{"a": [{"wildcard": "*.png"}]}"# }] });
        let error = Filters::parse(Some(&criteria), "Fn.Events.Queue").unwrap_err().to_string();
        assert!(error.contains("Fn.Events.Queue") && error.contains("wildcard"), "{error}");
    }
}
