//! Sharded index partitions: a sparse index whose partition key would be one constant (`HELD`,
//! `STATUS#pending`) spread over `n` partitions, so no single index partition takes every write.
//!
//! An index partition, like a table partition, takes about 1,000 write units a second, and a
//! throttled index throttles the table writes that feed it. A key that is one constant for every
//! item (every held reservation, every pending shipment) caps the whole shop there, however many
//! partitions the table has. [`Sharded`] writes each item under `{prefix}#{k}`, where `k` is a
//! stable hash of the item's id modulo [`SHARDS`], and reads all `k`:
//!
//! - **Writes**: [`Sharded::key_for`] gives the partition of an id. The hash is 64-bit FNV-1a
//!   over the id's UTF-8 bytes, written out here (not `std`'s `DefaultHasher`, which is seeded
//!   per process and may change between Rust releases): an item keeps its partition across
//!   deploys, which readers rely on. A unit test pins known ids to their shards.
//! - **Sweeps** ([`Sharded::page_below`]): a sweep's due items, shard after shard, each shard
//!   oldest first. The order across shards does not matter to a sweep: each item is handled on
//!   its own. The cursor ([`SweepPosition`]) is the shard and its `LastEvaluatedKey`; it stays in
//!   the invocation, never reaches a client.
//! - **Listings** ([`Sharded::listing_page`], over [`Sharded::merged_page`]): a page in the
//!   index's sort-key order across every shard, as one unsharded partition would give it: each
//!   shard is queried (at once) for up to `limit` items after the cursor, the answers merged (a
//!   k-way merge) and the first `limit` kept. The client's cursor is a signed [`crate::Cursor`]
//!   scoped to the table, the index, the prefix and the sort prefix, holding the last sort key returned,
//!   which is every shard's position at once: the listing's sort keys must be unique across the
//!   index (end them with the item's id, as every Ferrocart index does), so "after this key" is
//!   exact in every shard. Carrying one DynamoDB key per shard instead would make a cursor of
//!   ~2 KB for 16 shards; this one is the size of an unsharded listing's.
//!
//! **Cost.** A write costs what it did (one index entry, in one of `n` partitions). A sweep tick
//! makes `n` queries instead of one (16 a minute: a read unit or so when nothing is due); a
//! listing page makes `n` queries, each reading up to `limit` items, where it made one.
//!
//! **The shard count** is [`SHARDS`], a constant and not a template parameter: an item's
//! partition is `hash(id) mod n`, so changing `n` moves every existing item's key, and readers
//! using the new `n` would miss items written under the old one until each is rewritten. 16
//! partitions take ~16,000 index writes a second, far past the shop's other limits; raising it
//! means a release that reads both counts and rewrites the keys (a backfill), not a parameter.
//!
//! **No bare key is read.** Every index was sharded before the first release, so no item was
//! ever stored under the bare prefix (`HELD`, `STATUS#pending`) and reads visit the `n` shards
//! only.
//!
//! **Using it** (inventory's `Expiring`, payment's `Authorizing`, fulfillment's and checkout's
//! `ByStatus`, checkout's `Open`):
//!
//! ```ignore
//! const HELD: Sharded = Sharded::new("HELD", SHARDS); // a constant prefix
//! record.gsi1pk = HELD.key_for(&order_id.to_string()); // "HELD#7"
//! HELD.page_below(&client, &table, "Expiring", "gsi1pk", ("gsi1sk", &below), limit, after).await?;
//!
//! let status = Sharded::owned(format!("STATUS#{status}"), SHARDS); // a prefix per status
//! let (items, next_cursor) = status.listing_page(&client, &table, &listing, keys, limit, cursor).await?;
//! ```

use std::borrow::Cow;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::cursor::{Cursor, CursorError, CursorKeys};
use crate::dynamo::{Item, Unavailable, page_below};

/// The shard count of every sharded index: see the module docs for why it is a constant.
pub const SHARDS: u16 = 16;

/// A sparse index key spread over `shards` partitions `{prefix}#0` … `{prefix}#{shards - 1}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sharded {
    prefix: Cow<'static, str>,
    shards: u16,
}

/// 64-bit FNV-1a (Fowler–Noll–Vo): offset basis and prime from its specification. Stable across
/// processes, platforms and releases, which is all an index key needs (not collision resistance).
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(PRIME))
}

impl Sharded {
    /// A constant prefix (`HELD`) over `shards` partitions (at least one).
    pub const fn new(prefix: &'static str, shards: u16) -> Self {
        let shards = if shards == 0 { 1 } else { shards };
        Self { prefix: Cow::Borrowed(prefix), shards }
    }

    /// A prefix built at run time (`STATUS#{status}`).
    pub fn owned(prefix: String, shards: u16) -> Self {
        Self { prefix: Cow::Owned(prefix), shards: shards.max(1) }
    }

    /// The shard of `id`: `fnv1a(id) mod shards`.
    pub fn shard_of(&self, id: &str) -> u16 {
        // The remainder is below `shards`, a u16.
        u16::try_from(fnv1a(id.as_bytes()) % u64::from(self.shards)).unwrap_or(0)
    }

    /// The partition key an item with `id` is written under: `{prefix}#{shard}`.
    pub fn key_for(&self, id: &str) -> String {
        format!("{}#{}", self.prefix, self.shard_of(id))
    }

    /// Every partition a read must visit: each shard.
    pub fn partitions(&self) -> Vec<String> {
        (0..self.shards).map(|k| format!("{}#{k}", self.prefix)).collect()
    }

    /// One page of a sweep: items whose sort key sorts below `below`, shard after shard (each
    /// oldest first), at most `limit`, after `after` (the position the page before returned),
    /// with the position to go on from (`None`: every shard is done).
    #[allow(clippy::too_many_arguments)]
    pub async fn page_below(
        &self,
        client: &Client,
        table: &str,
        index: &str,
        partition_key: &str,
        (sort_key, below): (&str, &str),
        limit: usize,
        after: Option<SweepPosition>,
    ) -> Result<(Vec<Item>, Option<SweepPosition>), Unavailable> {
        let partitions = self.partitions();
        let SweepPosition { mut partition, mut start } = after.unwrap_or_default();
        let mut items = Vec::new();
        while let Some(name) = partitions.get(partition) {
            let want = limit.saturating_sub(items.len()).max(1);
            let (page, next) =
                page_below(client, table, index, (partition_key, name), (sort_key, below), want, start).await?;
            items.extend(page);
            start = next;
            if start.is_none() {
                partition += 1;
            }
            if items.len() >= limit {
                break;
            }
        }
        let next = (partition < partitions.len()).then_some(SweepPosition { partition, start });
        Ok((items, next))
    }

    /// One page of a client's listing: the items after `cursor` (the signed cursor the page
    /// before returned, refused unless it is this listing's) by [`Self::merged_page`], and the
    /// signed cursor of the next page (`None`: no more). `E` is the caller's listing error: a
    /// refused cursor or an unavailable table.
    #[allow(clippy::too_many_arguments)]
    pub async fn listing_page<E>(
        &self,
        client: &Client,
        table: &str,
        listing: &Listing<'_>,
        keys: &CursorKeys,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Item>, Option<String>), E>
    where
        E: From<CursorError> + From<Unavailable>,
    {
        let scope = self.scope(table, listing);
        let names = [listing.sort_key];
        let after = match cursor {
            Some(raw) => Cursor::decode(raw, &scope, &names, keys)?.start_key().remove(listing.sort_key),
            None => None,
        };
        let after = after.as_ref().and_then(|value| value.as_s().ok()).map(String::as_str);
        let (items, last) = self.merged_page(client, table, listing, limit, after).await?;
        let next_cursor = last.and_then(|sort| {
            let position = std::collections::HashMap::from([(listing.sort_key.to_owned(), AttributeValue::S(sort))]);
            Cursor::after(scope, &position, &names).map(|cursor| cursor.encode(keys))
        });
        Ok((items, next_cursor))
    }

    /// What a listing's cursor is valid for: the table, the index, this prefix
    /// (`STATUS#pending`) and the sort prefix (`*` for none), so a cursor replayed against another
    /// status or warehouse is refused, and so is one from another domain's listing of the same
    /// index and status (checkout's and fulfillment's `ByStatus`, signed with the same secret).
    fn scope(&self, table: &str, listing: &Listing<'_>) -> String {
        format!("{table}/{}:{}:{}", listing.index, self.prefix, listing.sort_prefix.unwrap_or("*"))
    }

    /// One page of a listing in sort-key order across every shard: the first `limit` items whose
    /// sort key is after `after` (the last sort key of the page before) and within the listing's
    /// prefix, with the sort key to go on from (`None`: no more). Every shard is queried at once.
    pub async fn merged_page(
        &self,
        client: &Client,
        table: &str,
        listing: &Listing<'_>,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<Item>, Option<String>), Unavailable> {
        let limit = limit.max(1);
        let mut queries = tokio::task::JoinSet::new();
        for partition in self.partitions() {
            let query = listing.query(client, table, &partition, limit, after);
            queries.spawn(async move { query.send().await });
        }
        let mut candidates: Vec<(String, Item)> = Vec::new();
        // The highest sort key every shard has answered up to: a shard that stopped early (1 MB
        // per query) may hold items below what the other shards returned, so nothing after its
        // last item may be taken on this page.
        let mut bound: Option<String> = None;
        while let Some(answer) = queries.join_next().await {
            let output = answer.map_err(Unavailable::new)??;
            let items = output.items.unwrap_or_default();
            let mut last = None;
            for item in items {
                let Some(sort) = item.get(listing.sort_key).and_then(|v| v.as_s().ok()).cloned() else {
                    return Err(Unavailable::because(format!("an index item without its {}", listing.sort_key)));
                };
                // BETWEEN includes its lower bound: the cursor's own item was on the page before.
                if after == Some(sort.as_str()) {
                    continue;
                }
                last = Some(sort.clone());
                candidates.push((sort, item));
            }
            if output.last_evaluated_key.is_some()
                && let Some(last) = last
            {
                bound = Some(bound.map_or(last.clone(), |b| b.min(last)));
            }
        }
        candidates.sort_by(|a, b| a.0.cmp(&b.0));
        let available = match &bound {
            Some(bound) => candidates.iter().take_while(|(sort, _)| sort <= bound).count(),
            None => candidates.len(),
        };
        let more = available > limit || bound.is_some();
        candidates.truncate(available.min(limit));
        let next = if more { candidates.last().map(|(sort, _)| sort.clone()) } else { None };
        Ok((candidates.into_iter().map(|(_, item)| item).collect(), next))
    }
}

/// Where a sharded sweep goes on: the shard (by its place in [`Sharded::partitions`]) and the
/// `LastEvaluatedKey` within it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepPosition {
    partition: usize,
    start: Option<Item>,
}

/// What a listing reads in each shard: the index, its key attribute names, and the sort-key
/// prefix the listing is limited to (a warehouse), if any.
#[derive(Debug, Clone, Copy)]
pub struct Listing<'a> {
    pub index: &'a str,
    pub partition_key: &'a str,
    pub sort_key: &'a str,
    pub sort_prefix: Option<&'a str>,
}

impl Listing<'_> {
    fn query(
        &self,
        client: &Client,
        table: &str,
        partition: &str,
        limit: usize,
        after: Option<&str>,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let query = client
            .query()
            .table_name(table)
            .index_name(self.index)
            .expression_attribute_names("#pk", self.partition_key)
            .expression_attribute_values(":pk", AttributeValue::S(partition.to_owned()))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        let text = |value: &str| AttributeValue::S(value.to_owned());
        // One condition on the sort key per query (DynamoDB refuses a name the expression does
        // not use, so `#sk` is named only where it is).
        match (self.sort_prefix, after) {
            (None, None) => query.key_condition_expression("#pk = :pk"),
            (None, Some(after)) => query
                .expression_attribute_names("#sk", self.sort_key)
                .key_condition_expression("#pk = :pk AND #sk > :after")
                .expression_attribute_values(":after", text(after)),
            (Some(prefix), None) => query
                .expression_attribute_names("#sk", self.sort_key)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_values(":prefix", text(prefix)),
            // A prefix after a cursor is a range from the cursor (inclusive: its item is skipped
            // by the merge) to the prefix's end. The cursor's own item takes one of the places,
            // so one more is asked for: with `limit` alone, a page of one would come back with
            // only the cursor's item and a `LastEvaluatedKey`, and the shard's next item would
            // be passed over by the merge.
            (Some(prefix), Some(after)) => query
                .expression_attribute_names("#sk", self.sort_key)
                .limit(i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX))
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :after AND :end")
                .expression_attribute_values(":after", text(after))
                .expression_attribute_values(":end", text(&format!("{prefix}\u{10FFFF}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv_1a_64_as_published() {
        // The specification's test vectors (draft-eastlake-fnv): "" and "a".
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn an_id_keeps_its_shard_from_release_to_release() {
        // Pinned: changing these moves every stored index entry (see the module docs).
        assert_eq!(Sharded::new("HELD", SHARDS).key_for("ord_01JD4X6Z8Q9R2S3T4V5W6X7Y8Z"), "HELD#2");
        let pending = Sharded::owned("STATUS#pending".to_owned(), SHARDS);
        assert_eq!(pending.key_for("shp_01JD4X6Z8Q9R2S3T4V5W6X7Y8Z"), "STATUS#pending#12");
    }

    #[test]
    fn ids_spread_over_every_shard() {
        let held = Sharded::new("HELD", SHARDS);
        let mut counts = [0_u32; SHARDS as usize];
        for n in 0..1_600 {
            counts[usize::from(held.shard_of(&format!("ord_{n:026}")))] += 1;
        }
        assert!(counts.iter().all(|&c| (60..=140).contains(&c)), "{counts:?}");
    }

    #[test]
    fn a_listings_cursor_is_scoped_to_its_table_index_prefix_and_sort_prefix() {
        let listing = |sort_prefix| Listing { index: "ByStatus", partition_key: "pk", sort_key: "sk", sort_prefix };
        let pending = Sharded::owned("STATUS#pending".to_owned(), SHARDS);

        assert_eq!(pending.scope("orders", &listing(None)), "orders/ByStatus:STATUS#pending:*");
        assert_eq!(pending.scope("orders", &listing(Some("west#"))), "orders/ByStatus:STATUS#pending:west#");
        assert_ne!(
            Sharded::owned("STATUS#packed".to_owned(), SHARDS).scope("orders", &listing(None)),
            pending.scope("orders", &listing(None))
        );
        assert_ne!(pending.scope("shipments", &listing(None)), pending.scope("orders", &listing(None)));
    }

    #[test]
    fn a_read_visits_every_shard_and_nothing_else() {
        let status = Sharded::owned("STATUS#pending".to_owned(), 3);

        assert_eq!(status.partitions(), ["STATUS#pending#0", "STATUS#pending#1", "STATUS#pending#2"]);
        assert_eq!(Sharded::new("HELD", 0).partitions(), ["HELD#0"], "never zero shards");
    }
}
