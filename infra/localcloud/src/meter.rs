//! Counts what Lambda would bill: invocations per function and the time each ran.
//!
//! The benchmark (`bench/`, `make bench`) runs the local cloud in-process and reads these
//! counters to price an order; nothing else depends on them. An invocation is counted from the
//! moment an instance picks it up (Lambda bills from then, not while a request waits for a free
//! instance) until its outcome is known, and an instance still running one is "in flight", which
//! is how the benchmark knows the saga has settled.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One function's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionMeter {
    pub invocations: u64,
    /// Summed run time of its invocations.
    pub busy: Duration,
    pub in_flight: u64,
}

static METERS: Mutex<BTreeMap<String, FunctionMeter>> = Mutex::new(BTreeMap::new());

/// Every function's counters so far, by logical id.
pub fn snapshot() -> BTreeMap<String, FunctionMeter> {
    METERS.lock().map(|meters| meters.clone()).unwrap_or_default()
}

/// Invocations still running, over every function.
pub fn in_flight() -> u64 {
    METERS.lock().map(|meters| meters.values().map(|m| m.in_flight).sum()).unwrap_or(0)
}

/// An invocation being run; dropping it records it.
#[derive(Debug)]
pub struct Running {
    function: String,
    started: Instant,
}

impl Running {
    pub fn begin(function: &str) -> Self {
        if let Ok(mut meters) = METERS.lock() {
            meters.entry(function.to_owned()).or_default().in_flight += 1;
        }
        Self { function: function.to_owned(), started: Instant::now() }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut meters) = METERS.lock() {
            let meter = meters.entry(self.function.clone()).or_default();
            meter.invocations += 1;
            meter.busy += self.started.elapsed();
            meter.in_flight = meter.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invocation_is_in_flight_until_it_ends_then_counted_once() {
        let running = Running::begin("MeterTestFunction");
        assert_eq!(snapshot()["MeterTestFunction"].in_flight, 1);

        drop(running);

        let meter = &snapshot()["MeterTestFunction"];
        assert_eq!((meter.invocations, meter.in_flight), (1, 0));
    }
}
