//! Retrying a lost race: the one retry policy of every store.
//!
//! A store reads, decides, and writes on the condition that what it read still holds. When
//! another writer got there first the write fails its condition (or conflicts) and the whole
//! read-decide-write is tried again, after an exponential backoff with a random jitter drawn for
//! every attempt (`backon`'s jitter): writers that collided once must not collide again in step.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt<T> {
    /// Decided: this is the answer.
    Done(T),
    /// Another writer won the race: read again and retry.
    Lost,
}

/// Attempts made before a race is given up: 8, with waits of about 10, 20 … 640 ms (plus
/// jitter), about 1.3 s in all.
pub const MAX_ATTEMPTS: usize = 8;

/// The waits between attempts, each with its own random jitter: for loops that retry on
/// something other than a returned race (DynamoDB's unprocessed keys). Ends after
/// [`MAX_ATTEMPTS`]` - 1` waits.
pub fn delays() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    policy().build()
}

fn policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(10))
        .with_max_delay(Duration::from_millis(640))
        .with_max_times(MAX_ATTEMPTS - 1)
        .with_jitter()
}

/// Runs `attempt` until it is `Done` or fails, retrying while it is `Lost`. `Ok(None)`: every
/// attempt lost its race (the caller says what that means: busy, try later).
pub async fn until_won<T, E, F, Fut>(mut attempt: F) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt<T>, E>>,
{
    enum Step<E> {
        Lost,
        Failed(E),
    }
    let run = || {
        let next = attempt();
        async move {
            match next.await {
                Ok(Attempt::Done(value)) => Ok(value),
                Ok(Attempt::Lost) => Err(Step::Lost),
                Err(error) => Err(Step::Failed(error)),
            }
        }
    };
    match run.retry(policy()).when(|step| matches!(step, Step::Lost)).await {
        Ok(value) => Ok(Some(value)),
        Err(Step::Lost) => Ok(None),
        Err(Step::Failed(error)) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_lost_race_is_tried_again_until_it_is_won() {
        let tries = AtomicUsize::new(0);

        let result: Result<_, ()> = until_won(|| async {
            Ok(if tries.fetch_add(1, Ordering::SeqCst) < 2 { Attempt::Lost } else { Attempt::Done("won") })
        })
        .await;

        assert_eq!(result, Ok(Some("won")));
        assert_eq!(tries.into_inner(), 3);
    }

    #[tokio::test]
    async fn a_race_lost_every_time_is_given_up_after_the_last_attempt() {
        let tries = AtomicUsize::new(0);

        let result: Result<Option<()>, ()> = until_won(|| async {
            tries.fetch_add(1, Ordering::SeqCst);
            Ok(Attempt::Lost)
        })
        .await;

        assert_eq!(result, Ok(None));
        assert_eq!(tries.into_inner(), MAX_ATTEMPTS);
    }

    #[test]
    fn the_waits_grow_are_bounded_and_jittered_afresh_each_time() {
        let first: Vec<Duration> = delays().collect();
        let runs: Vec<Vec<Duration>> = (0..20).map(|_| delays().collect()).collect();

        assert_eq!(first.len(), MAX_ATTEMPTS - 1);
        // Jitter adds up to the wait itself: at most twice the 640 ms ceiling.
        assert!(first.iter().all(|wait| *wait >= Duration::from_millis(10) && *wait <= Duration::from_millis(1280)));
        assert!(runs.iter().any(|run| *run != first), "jitter is drawn for every wait, not fixed");
    }

    #[tokio::test]
    async fn a_failure_is_not_retried() {
        let tries = AtomicUsize::new(0);

        let result: Result<Option<()>, &str> = until_won(|| async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err("unavailable")
        })
        .await;

        assert_eq!(result, Err("unavailable"));
        assert_eq!(tries.into_inner(), 1);
    }
}
