//! Secrets Manager secrets, read once per cold start.
//!
//! A function is given a secret's ARN in an environment variable and reads the value with
//! `GetSecretValue`, so the value never appears in the function's configuration (which anyone
//! allowed `lambda:GetFunctionConfiguration` can read) and a rotated value is picked up by the
//! next cold start without a deployment. Nothing here logs or formats a value, and errors name
//! the secret's ARN and version stage only.
//!
//! A function reads a secret when an invocation first needs it ([`OnFirstUse`]), not at init:
//! a cold start's init stays what the code needs to reach the first `/next` (on a current-thread
//! runtime a read started at init would run its request building, signing and the HTTPS client's
//! setup before that `/next`: catalog's init 1.1× → 2.1–2.3× the hello-world, BENCHMARKS.md),
//! and a route that needs no secret never pays a `GetSecretValue`. The trade: under provisioned
//! concurrency, or when Lambda initializes an environment ahead of its first request, the first
//! invocation still waits for the read, where a read started at init would have finished
//! already. The value is kept for the environment's life. A failed read fails the invocation that
//! needed it (its error names the ARN and stage) and a later one reads again, after a backoff
//! that grows with each failure in a row ([`FIRST_BACKOFF`] to [`MAX_BACKOFF`]): during a
//! Secrets Manager outage an instance does not call it at every invocation, and the invocations
//! within the backoff fail at once with the last failure (its ARN and stage, never a value).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A secret's `SecretString`. Its `Debug` prints `***` and it has no `Display`, so it cannot
/// reach a log line by accident.
#[derive(Clone)]
pub struct SecretString(String);

impl SecretString {
    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString(***)")
    }
}

/// The version a secret's value is read at: Secrets Manager's staging labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `AWSCURRENT`: the value in use.
    Current,
    /// `AWSPREVIOUS`: the value before the last `PutSecretValue` or rotation, kept so what was
    /// made with it can still be checked for a while.
    Previous,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Self::Current => "AWSCURRENT",
            Self::Previous => "AWSPREVIOUS",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("could not read the secret {arn} ({stage}) from Secrets Manager")]
    Fetch {
        arn: String,
        stage: Stage,
        #[source]
        source: Box<aws_sdk_secretsmanager::Error>,
    },
    #[error("the secret {arn} ({stage}) has no SecretString (binary secrets are not supported)")]
    NotAString { arn: String, stage: Stage },
}

/// The secret's current value (`AWSCURRENT`).
pub async fn current(client: &aws_sdk_secretsmanager::Client, arn: &str) -> Result<SecretString, SecretError> {
    read(client, arn, Stage::Current).await
}

/// The secret's previous value (`AWSPREVIOUS`), or `None` when it was never changed.
pub async fn previous(client: &aws_sdk_secretsmanager::Client, arn: &str) -> Result<Option<SecretString>, SecretError> {
    match read(client, arn, Stage::Previous).await {
        // GetSecretValue answers ResourceNotFoundException for a staging label no version
        // carries, as for a secret that does not exist; the current read tells the two apart.
        Err(SecretError::Fetch { source, .. })
            if matches!(*source, aws_sdk_secretsmanager::Error::ResourceNotFoundException(_)) =>
        {
            Ok(None)
        }
        other => other.map(Some),
    }
}

/// One `GetSecretValue` at `stage`.
async fn read(client: &aws_sdk_secretsmanager::Client, arn: &str, stage: Stage) -> Result<SecretString, SecretError> {
    let output = client
        .get_secret_value()
        .secret_id(arn)
        .version_stage(stage.label())
        .send()
        .await
        .map_err(|error| SecretError::Fetch { arn: arn.to_owned(), stage, source: Box::new(error.into()) })?;
    match output.secret_string {
        Some(value) => Ok(SecretString(value)),
        None => Err(SecretError::NotAString { arn: arn.to_owned(), stage }),
    }
}

/// One load of a [`OnFirstUse`] value, in flight.
pub type Loading<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// After a failed load, no new one starts for [`FIRST_BACKOFF`]; each failure in a row doubles
/// the wait, up to [`MAX_BACKOFF`]. Under a Secrets Manager outage an instance then reads at most
/// about once per `MAX_BACKOFF` instead of at every invocation, and a passing glitch costs the
/// invocations of a quarter second.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two loads that failed.
pub const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// A value loaded where it is first used (a secret, or what is built from one), then kept.
///
/// [`OnFirstUse::new`] only keeps `load`; the first [`OnFirstUse::get`] runs it and, once it
/// succeeds, every `get` hands out the value. A failed load is returned to that `get` and not
/// kept: a later `get` loads again, but
/// not before a backoff ([`FIRST_BACKOFF`], doubling per failure in a row, at most
/// [`MAX_BACKOFF`]); a `get` within it starts nothing and answers
/// [`Unavailable::BackingOff`], which carries the failure that caused it. Concurrent `get`s
/// share one load. Its `Debug` says whether the value is loaded, never what it is.
pub struct OnFirstUse<T, E> {
    value: tokio::sync::OnceCell<T>,
    failures: Mutex<Option<Failures<E>>>,
    /// Boxed, so a `OnFirstUse` is named by what it loads (a store can hold one), not by the
    /// type of the closure that loads it.
    load: Box<dyn Fn() -> Loading<T, E> + Send + Sync>,
}

/// The failed loads in a row so far.
struct Failures<E> {
    count: u32,
    last: Arc<E>,
    /// No load starts before this.
    retry_at: tokio::time::Instant,
}

impl<T, E> OnFirstUse<T, E>
where
    T: Send + 'static,
    E: Send + Sync + 'static,
{
    /// Keeps `load` for the first [`Self::get`]; nothing runs yet.
    pub fn new<F, Fut>(load: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        Self {
            value: tokio::sync::OnceCell::new(),
            failures: Mutex::new(None),
            load: Box::new(move || Box::pin(load())),
        }
    }

    /// The value, once loaded: loaded by the first call, again after a failure once its backoff
    /// is over.
    pub async fn get(&self) -> Result<&T, Unavailable<E>> {
        self.value.get_or_try_init(|| self.load_now()).await
    }

    /// One load, unless the last failed too recently. `get` runs one at a time.
    async fn load_now(&self) -> Result<T, Unavailable<E>> {
        if let Some(backing_off) = self.backing_off() {
            return Err(backing_off);
        }
        let loaded = (self.load)().await;
        let mut failures = lock(&self.failures);
        match loaded {
            Ok(value) => {
                *failures = None;
                Ok(value)
            }
            Err(error) => {
                let (error, count) = (Arc::new(error), failures.as_ref().map_or(0, |failed| failed.count) + 1);
                let wait = FIRST_BACKOFF.saturating_mul(2_u32.saturating_pow(count - 1)).min(MAX_BACKOFF);
                let retry_at = tokio::time::Instant::now() + wait;
                *failures = Some(Failures { count, last: Arc::clone(&error), retry_at });
                Err(Unavailable::Failed(error))
            }
        }
    }

    /// The error to answer instead of loading, while the last failure's backoff lasts.
    fn backing_off(&self) -> Option<Unavailable<E>> {
        let failures = lock(&self.failures);
        let failed = failures.as_ref()?;
        let retry_in = failed.retry_at.checked_duration_since(tokio::time::Instant::now())?;
        (!retry_in.is_zero()).then(|| Unavailable::BackingOff {
            failures: failed.count,
            retry_in,
            last: Arc::clone(&failed.last),
        })
    }
}

/// A lock that a panic elsewhere does not poison for good: what it guards is whole at every
/// point a panic could happen.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T, E> std::fmt::Debug for OnFirstUse<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnFirstUse").field("loaded", &self.value.initialized()).finish_non_exhaustive()
    }
}

/// Why [`OnFirstUse::get`] has no value. Its message and cause chain are the failed load's
/// (for a secret, they name its ARN and stage, never its value).
#[derive(Debug)]
pub enum Unavailable<E> {
    /// This `get` loaded, and the load failed.
    Failed(Arc<E>),
    /// A load failed `retry_in` ago or less and no new one starts before then: this is the last
    /// failure of `failures` in a row.
    BackingOff { failures: u32, retry_in: Duration, last: Arc<E> },
}

impl<E> Unavailable<E> {
    /// The failed load's error.
    pub fn error(&self) -> &E {
        match self {
            Self::Failed(error) | Self::BackingOff { last: error, .. } => error,
        }
    }
}

impl<E: std::fmt::Display> std::fmt::Display for Unavailable<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(error) => error.fmt(f),
            Self::BackingOff { failures, retry_in, last } => {
                write!(
                    f,
                    "{last}; unavailable, not tried again for another {retry_in:?} (failures in a row: {failures})"
                )
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Unavailable<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error().source()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::time::advance;

    use super::*;

    /// A loader that counts its calls and fails the calls numbered in `failing` (from 1).
    fn counted(
        failing: &'static [usize],
    ) -> (Arc<AtomicUsize>, impl Fn() -> std::future::Ready<Result<String, String>>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let load = move || {
            let call = counter.fetch_add(1, Ordering::SeqCst) + 1;
            std::future::ready(if failing.contains(&call) {
                Err(format!("load {call} failed"))
            } else {
                Ok(format!("value {call}"))
            })
        };
        (calls, load)
    }

    #[tokio::test]
    async fn nothing_loads_before_the_first_use_and_its_value_is_kept() {
        let (calls, load) = counted(&[]);
        let secret = OnFirstUse::new(load);
        tokio::task::yield_now().await;
        assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing loaded before the first use");
        assert_eq!(format!("{secret:?}"), "OnFirstUse { loaded: false, .. }");

        assert_eq!(secret.get().await.unwrap(), "value 1");
        assert_eq!(secret.get().await.unwrap(), "value 1");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(format!("{secret:?}"), "OnFirstUse { loaded: true, .. }");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_load_fails_that_use_and_the_next_load_waits_for_its_backoff() {
        let (calls, load) = counted(&[1, 2]);
        let secret = OnFirstUse::new(load);

        let first = secret.get().await.unwrap_err();
        let within = secret.get().await.unwrap_err();
        advance(FIRST_BACKOFF).await;
        let second = secret.get().await.unwrap_err();
        advance(FIRST_BACKOFF * 2 - Duration::from_millis(1)).await;
        let still_within = secret.get().await.unwrap_err();
        advance(Duration::from_millis(1)).await;
        let third = secret.get().await.unwrap();

        assert!(matches!(first, Unavailable::Failed(_)), "{first:?}");
        assert_eq!(first.to_string(), "load 1 failed");
        assert!(
            matches!(within, Unavailable::BackingOff { failures: 1, retry_in, .. } if retry_in == FIRST_BACKOFF),
            "{within:?}"
        );
        assert_eq!(
            within.to_string(),
            "load 1 failed; unavailable, not tried again for another 250ms (failures in a row: 1)"
        );
        assert_eq!(second.to_string(), "load 2 failed");
        assert!(matches!(still_within, Unavailable::BackingOff { failures: 2, .. }), "{still_within:?}");
        assert_eq!(third, "value 3");
        assert_eq!(calls.load(Ordering::SeqCst), 3, "no load within a backoff");
        assert_eq!(secret.get().await.unwrap(), "value 3");
        assert_eq!(calls.load(Ordering::SeqCst), 3, "a loaded value is kept");
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_doubles_with_each_failure_in_a_row_up_to_its_cap() {
        let (calls, load) = counted(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let secret = OnFirstUse::new(load);
        let mut waits = Vec::new();

        for _ in 0..7 {
            secret.get().await.unwrap_err();
            match secret.get().await.unwrap_err() {
                Unavailable::BackingOff { retry_in, .. } => waits.push(retry_in.as_millis()),
                other => panic!("loaded again within the backoff: {other:?}"),
            }
            advance(MAX_BACKOFF).await;
        }

        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(calls.load(Ordering::SeqCst), 7);
    }

    /// [`counted`], with each load taking a millisecond (on the paused clock), so that two
    /// `get`s are both waiting while one load runs.
    fn counted_slowly(failing: &'static [usize]) -> (Arc<AtomicUsize>, impl Fn() -> Loading<String, String>) {
        let (calls, load) = counted(failing);
        let slowly = move || -> Loading<String, String> {
            let loaded = load();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                loaded.await
            })
        };
        (calls, slowly)
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_uses_after_a_failure_start_one_load_between_them() {
        let (calls, load) = counted_slowly(&[1]);
        let secret = OnFirstUse::new(load);

        let (a, b) = tokio::join!(secret.get(), secret.get());

        assert!(matches!(a, Err(Unavailable::Failed(_))), "{a:?}");
        assert!(matches!(b, Err(Unavailable::BackingOff { .. })), "{b:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_secret_read_names_the_arn_and_stage_within_the_backoff_too() {
        let failed = || async {
            Err::<SecretString, _>(SecretError::NotAString {
                arn: "arn:aws:secretsmanager:cursor".into(),
                stage: Stage::Current,
            })
        };
        let secret = OnFirstUse::new(failed);

        let (first, within) = (secret.get().await.unwrap_err(), secret.get().await.unwrap_err());

        for error in [first, within] {
            assert!(error.to_string().contains("arn:aws:secretsmanager:cursor (AWSCURRENT)"), "{error}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_first_uses_share_one_load() {
        let (calls, load) = counted_slowly(&[]);
        let secret = OnFirstUse::new(load);

        let (a, b) = tokio::join!(secret.get(), secret.get());

        assert_eq!((a.unwrap().as_str(), b.unwrap().as_str()), ("value 1", "value 1"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let secret = SecretString("do-not-print".to_owned());

        assert_eq!(format!("{secret:?}"), "SecretString(***)");
        assert_eq!(secret.expose(), "do-not-print");
    }
}
