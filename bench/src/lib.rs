//! # Ferrocart's proof harness (`make bench`)
//!
//! Measures what the issue promises a team choosing a platform, and keeps the figures in the
//! repository (`bench/results.json`, the tables in `BENCHMARKS.md`) so every later change shows
//! its effect:
//!
//! - [`cold`]: each function's release binary started against a Lambda Runtime API served here,
//!   interleaved with a hello-world `lambda_runtime` binary (`hello-lambda`) built with the same
//!   profile; stripped and zipped size and peak RSS.
//! - [`shop`]: a 3-line order from cart to `confirmed` and on to `delivered`, every AWS call
//!   counted by the [`proxy`] in front of moto and priced by [`units`] (DynamoDB's billing rules)
//!   and [`prices`] (on-demand list prices); and a flash sale on one SKU.
//! - `warm` (feature `warm`, binary `ferrocart-warm`, built in release): each handler called
//!   in-process on its sample event with in-memory storage, p50/p99 over many calls.
//! - `latency` in [`shop`]: orders placed one at a time on the local cloud, checkout's 201 →
//!   `confirmed`, split into emulator time, our run time and the local cloud's plumbing.
//! - [`report`]: the JSON and the Markdown tables.
//!
//! The stacks come from [`stack`]: the template provisioned into a moto of the harness's own
//! (cold starts) or the whole local cloud behind the proxy, running the release binaries.

pub mod cold;
pub mod prices;
pub mod proxy;
pub mod report;
pub mod shop;
pub mod stack;
pub mod units;
#[cfg(feature = "warm")]
pub mod warm;

/// The `q`th percentile of `values` by nearest rank (the smallest value with at least `q`% of
/// them at or below it), sorting them in place; the default (zero) when there are none.
pub fn percentile<T: Copy + Ord + Default>(values: &mut [T], q: usize) -> T {
    values.sort_unstable();
    let n = values.len();
    if n == 0 {
        return T::default();
    }
    values[(n * q).div_ceil(100).clamp(1, n) - 1]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn a_percentile_is_the_nearest_rank_of_the_sorted_values() {
        let mut values = [9_u64, 1, 5, 3, 7, 2, 8, 4, 6, 10];

        assert_eq!((percentile(&mut values, 50), percentile(&mut values, 99)), (5, 10));
        assert_eq!(percentile(&mut values, 0), 1, "never below the smallest");
        assert_eq!(percentile::<u64>(&mut [], 50), 0);
    }
}
