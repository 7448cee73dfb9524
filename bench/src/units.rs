//! What DynamoDB bills for a request, by AWS's published rules, computed from the items the
//! request touched (their images before and after, in DynamoDB's JSON wire format).
//!
//! - **Item size** ("Item sizes and formats", DynamoDB developer guide): the UTF-8 bytes of
//!   every attribute name plus its value. A string is its UTF-8 length; a number about one byte
//!   per two significant digits plus one; binary its raw length; a boolean or null one byte; a
//!   list or map 3 bytes plus each element (plus one byte per element, and a map's element
//!   names); a set the sum of its elements.
//! - **Writes**: one write request unit per 1 KB of the larger of the item before and after
//!   the write (at least 1); a transactional write costs two per KB; a write whose condition
//!   fails is still billed (for the size of the item it found).
//! - **Reads**: one read request unit per 4 KB read (at least 1), half for an eventually
//!   consistent read, two for a transactional read. A query or scan sums the sizes of every item
//!   it read (before any filter or projection) and rounds the total up once.
//! - **Secondary indexes**: a write that adds or removes an item from an index costs one index
//!   write of the projected item's size; one that changes an indexed key costs two (delete the
//!   old entry, put the new); one that changes only projected attributes costs one; one that
//!   changes nothing the index holds costs nothing.

use serde_json::Value;

/// Bytes of one attribute value in DynamoDB JSON (`{"S": "..."}`).
pub fn value_size(value: &Value) -> u64 {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    let text_len = |v: &Value| v.as_str().map_or(0, |s| s.len() as u64);
    match kind.as_str() {
        "S" => text_len(inner),
        "N" => number_size(inner.as_str().unwrap_or("0")),
        "B" => binary_size(inner),
        "BOOL" | "NULL" => 1,
        "SS" => inner.as_array().map_or(0, |items| items.iter().map(text_len).sum()),
        "NS" => inner.as_array().map_or(0, |items| items.iter().map(|n| number_size(n.as_str().unwrap_or("0"))).sum()),
        "BS" => inner.as_array().map_or(0, |items| items.iter().map(binary_size).sum()),
        "L" => 3 + inner.as_array().map_or(0, |items| items.iter().map(|v| value_size(v) + 1).sum()),
        "M" => {
            3 + inner
                .as_object()
                .map_or(0, |fields| fields.iter().map(|(name, v)| name.len() as u64 + value_size(v) + 1).sum())
        }
        _ => 0,
    }
}

/// A number: one byte per two significant digits (leading and trailing zeros trimmed), plus one.
fn number_size(number: &str) -> u64 {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    (significant.len() as u64).div_ceil(2) + 1
}

fn binary_size(value: &Value) -> u64 {
    use base64::Engine as _;
    let text = value.as_str().unwrap_or("");
    base64::engine::general_purpose::STANDARD.decode(text).map_or(text.len() as u64, |bytes| bytes.len() as u64)
}

/// Bytes of a whole item: every attribute's name plus its value.
pub fn item_size(item: &Value) -> u64 {
    item.as_object()
        .map_or(0, |attributes| attributes.iter().map(|(name, value)| name.len() as u64 + value_size(value)).sum())
}

/// Capacity is counted in half request units, so an eventually consistent read (half a read
/// unit) stays an integer. [`show`] prints it as units.
pub type Halves = u64;

/// Prints half units as request units (`5` → `2.5`).
pub fn show(halves: Halves) -> String {
    if halves.is_multiple_of(2) { (halves / 2).to_string() } else { format!("{}.5", halves / 2) }
}

/// Write request units (in halves) of one non-transactional write of an item of `bytes`: one
/// per 1 KB, at least one.
pub fn write_units(bytes: u64) -> Halves {
    bytes.div_ceil(1024).max(1) * 2
}

/// Read request units (in halves) of reading `bytes`: one per 4 KB, at least one, half of that
/// when eventually consistent.
pub fn read_units(bytes: u64, consistent: bool) -> Halves {
    let halves = bytes.div_ceil(4096).max(1) * 2;
    if consistent { halves } else { halves / 2 }
}

/// A secondary index as the write-cost rules need it.
#[derive(Debug, Clone)]
pub struct Index {
    pub name: String,
    /// The index's own key attributes.
    pub keys: Vec<String>,
    /// `KEYS_ONLY`, `INCLUDE` (with `included`) or `ALL`.
    pub projection: String,
    pub included: Vec<String>,
}

impl Index {
    /// The item as the index stores it, or `None` when the item is not in the index (a sparse
    /// index holds only items that carry every one of its key attributes).
    pub fn project(&self, item: Option<&Value>, table_keys: &[String]) -> Option<Value> {
        let attributes = item?.as_object()?;
        if !self.keys.iter().all(|key| attributes.contains_key(key)) {
            return None;
        }
        if self.projection == "ALL" {
            return Some(Value::Object(attributes.clone()));
        }
        let kept = attributes
            .iter()
            .filter(|(name, _)| {
                self.keys.contains(name)
                    || table_keys.contains(name)
                    || (self.projection == "INCLUDE" && self.included.contains(name))
            })
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        Some(Value::Object(kept))
    }

    /// Index write units of a write that turned `before` into `after` (either may be absent).
    pub fn write_units(&self, before: Option<&Value>, after: Option<&Value>, table_keys: &[String]) -> Halves {
        let old = self.project(before, table_keys);
        let new = self.project(after, table_keys);
        let size = |entry: &Option<Value>| entry.as_ref().map_or(0, item_size);
        match (&old, &new) {
            (None, None) => 0,
            (Some(_), None) => write_units(size(&old)),
            (None, Some(_)) => write_units(size(&new)),
            (Some(o), Some(n)) if o == n => 0,
            (Some(o), Some(n)) => {
                let moved = self.keys.iter().any(|key| o.get(key) != n.get(key));
                if moved {
                    write_units(size(&old)) + write_units(size(&new))
                } else {
                    write_units(size(&old).max(size(&new)))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_item_is_its_attribute_names_plus_their_values() {
        // "pk"(2) + "ORDER#1"(7) + "n"(1) + 12345 (3 digit pairs + 1 = 4) + "ok"(2) + true(1)
        let item = json!({"pk": {"S": "ORDER#1"}, "n": {"N": "12345"}, "ok": {"BOOL": true}});

        assert_eq!(item_size(&item), 2 + 7 + 1 + 4 + 2 + 1);
    }

    #[test]
    fn numbers_count_significant_digits_only() {
        assert_eq!(number_size("100"), 2);
        assert_eq!(number_size("-0.0012"), 2);
        assert_eq!(number_size("123456"), 4);
    }

    #[test]
    fn maps_and_lists_carry_three_bytes_and_one_per_element() {
        let item = json!({"m": {"M": {"a": {"S": "xy"}}}, "l": {"L": [{"S": "z"}]}});

        assert_eq!(item_size(&item), (1 + 3 + 1 + 2 + 1) + (1 + 3 + 1 + 1));
    }

    #[test]
    fn units_round_up_and_eventually_consistent_reads_cost_half() {
        assert_eq!(show(write_units(1)), "1");
        assert_eq!(show(write_units(1025)), "2");
        assert_eq!(show(read_units(4097, true)), "2");
        assert_eq!(show(read_units(10, false)), "0.5");
    }

    #[test]
    fn a_sparse_index_costs_nothing_until_an_item_carries_its_key_and_two_writes_when_the_key_moves() {
        let index = Index {
            name: "Open".into(),
            keys: vec!["gsi1pk".into()],
            projection: "KEYS_ONLY".into(),
            included: vec![],
        };
        let keys = vec!["pk".to_owned()];
        let plain = json!({"pk": {"S": "o1"}, "status": {"S": "pending"}});
        let open = json!({"pk": {"S": "o1"}, "gsi1pk": {"S": "OPEN"}});
        let moved = json!({"pk": {"S": "o1"}, "gsi1pk": {"S": "DONE"}});

        assert_eq!(index.write_units(None, Some(&plain), &keys), 0);
        assert_eq!(index.write_units(Some(&plain), Some(&open), &keys), 2);
        assert_eq!(index.write_units(Some(&open), Some(&open), &keys), 0);
        assert_eq!(index.write_units(Some(&open), Some(&moved), &keys), 4);
        assert_eq!(index.write_units(Some(&open), None, &keys), 2);
    }
}
