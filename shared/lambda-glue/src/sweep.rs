//! The loop every scheduled sweep runs: order timeouts (checkout), reservation expiry
//! (inventory) and stalled authorizations (payment).
//!
//! A sweep walks an index of due items, oldest first, one page at a time, and handles each item
//! on its own:
//!
//! - **One bad item stops nothing.** An item whose handler fails is logged, counted and passed
//!   over; the items behind it are still handled in the same tick. The failure count is written
//!   as the `SweepFailures` metric (one per sweep, alarmed on in template.yaml), and the failed
//!   item is met again on the next tick.
//! - **The walk goes forward.** Each page after the first starts from the previous page's cursor
//!   instead of querying from the start again: the indexes are eventually consistent (an item
//!   just handled can still be listed for a moment) and a failing item stays listed, so a fresh
//!   query would meet the same items first, every time.
//! - **The tick ends in time.** Before each item the sweep checks that what is left of the
//!   invocation still covers one more item (`item_budget`, the worst case of one handler);
//!   otherwise it stops and leaves the rest to the next tick, rather than being killed by the
//!   Lambda timeout halfway through a handler. Such a tick counts in the `SweepOutOfTime` metric,
//!   alarmed on when it repeats: the sweep is not keeping up.
//!
//! Listing a page is the one failure that ends a tick: without the index there is nothing to do.

use std::fmt::Display;
use std::future::Future;

use time::{Duration, OffsetDateTime};

use crate::consumer::HandlerError;

/// One page of due items and where the next page starts (`None`: this was the last); the
/// stores' ports return it, so it lives with the domain vocabulary.
pub use kernel::page::Page;

/// A sweep's name (the metric's `Sweep` dimension and the logs' `sweep` field) and its time.
#[derive(Debug, Clone, Copy)]
pub struct Sweep {
    pub name: &'static str,
    /// When the invocation times out.
    pub deadline: OffsetDateTime,
    /// The longest one item can take: no item starts unless this much time is left.
    pub item_budget: Duration,
}

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick {
    /// Items whose handler succeeded.
    pub handled: usize,
    /// Items whose handler failed (they are due again next tick).
    pub failed: usize,
    /// The tick stopped because the invocation's time was running out.
    pub out_of_time: bool,
}

impl Sweep {
    fn has_time_for_one_more(&self) -> bool {
        OffsetDateTime::now_utc() + self.item_budget < self.deadline
    }

    /// Walks every page `list` returns, from `None` on, handling each item with `handle`.
    pub async fn run<K, C, L, LF, H, HF>(&self, mut list: L, handle: H) -> Result<Tick, HandlerError>
    where
        K: Display,
        L: FnMut(Option<C>) -> LF,
        LF: Future<Output = Result<Page<K, C>, HandlerError>>,
        H: Fn(K) -> HF,
        HF: Future<Output = Result<(), HandlerError>>,
    {
        let mut tick = Tick::default();
        let mut cursor = None;
        'pages: loop {
            let page = list(cursor).await?;
            for item in page.items {
                if !self.has_time_for_one_more() {
                    tick.out_of_time = true;
                    break 'pages;
                }
                let id = item.to_string();
                match handle(item).await {
                    Ok(()) => tick.handled += 1,
                    Err(error) => {
                        tick.failed += 1;
                        tracing::error!(sweep = self.name, item = %id, %error, "sweep item failed; going on");
                    }
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        crate::metrics::count("SweepFailures", tick.failed as u64, ("Sweep", self.name));
        // A tick that ran out of time left due items for the next one: several in a row means
        // the sweep is not keeping up (a backlog after an outage, or items slower than budgeted).
        crate::metrics::count("SweepOutOfTime", u64::from(tick.out_of_time), ("Sweep", self.name));
        tracing::info!(
            sweep = self.name,
            handled = tick.handled,
            failed = tick.failed,
            out_of_time = tick.out_of_time,
            "sweep tick done"
        );
        Ok(tick)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn sweep(deadline_in: Duration) -> Sweep {
        Sweep { name: "test", deadline: OffsetDateTime::now_utc() + deadline_in, item_budget: Duration::seconds(5) }
    }

    /// Pages of two over `items`, the cursor being the index of the next item.
    fn pages(items: &[u32]) -> impl FnMut(Option<usize>) -> std::future::Ready<Result<Page<u32, usize>, HandlerError>> {
        let items = items.to_vec();
        move |cursor| {
            let start = cursor.unwrap_or(0);
            let end = (start + 2).min(items.len());
            let next = (end < items.len()).then_some(end);
            std::future::ready(Ok(Page { items: items[start..end].to_vec(), next }))
        }
    }

    #[tokio::test]
    async fn an_item_that_fails_does_not_stop_the_items_behind_it() {
        let seen = Mutex::new(Vec::new());

        let tick = sweep(Duration::minutes(1))
            .run(pages(&[1, 2, 3, 4, 5]), |item| {
                seen.lock().unwrap().push(item);
                async move { if item == 1 { Err(HandlerError::Permanent("unreadable".into())) } else { Ok(()) } }
            })
            .await
            .unwrap();

        assert_eq!(seen.into_inner().unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!(tick, Tick { handled: 4, failed: 1, out_of_time: false });
    }

    #[tokio::test]
    async fn no_item_starts_when_the_invocation_cannot_cover_it() {
        let tick = sweep(Duration::seconds(3))
            .run(pages(&[1, 2, 3]), |_| async { panic!("started an item without time for it") })
            .await
            .unwrap();

        assert_eq!(tick, Tick { handled: 0, failed: 0, out_of_time: true });
    }

    #[tokio::test]
    async fn a_page_that_cannot_be_listed_fails_the_tick() {
        let result = sweep(Duration::minutes(1))
            .run(
                |_: Option<()>| async { Err::<Page<u32, ()>, _>(HandlerError::Permanent("index unavailable".into())) },
                |_| async { Ok(()) },
            )
            .await;

        assert!(result.is_err());
    }
}
