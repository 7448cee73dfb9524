//! Secrets Manager secrets, read once per cold start.
//!
//! A function is given a secret's ARN in an environment variable and reads the value with
//! `GetSecretValue`, so the value never appears in the function's configuration (which anyone
//! allowed `lambda:GetFunctionConfiguration` can read) and a rotated value is picked up by the
//! next cold start without a deployment. Nothing here logs or formats a value, and errors name
//! the secret's ARN and version stage only.
//!
//! A function starts the read at init without waiting for it ([`Prefetched`]): the
//! `GetSecretValue` round trip runs while the runtime asks for the first invocation, instead of
//! before, and the first use awaits what is left of it. A failed read fails the invocation that
//! needed it (its error names the ARN) and the next one reads again.

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

/// A value loaded in the background from cold start on (a secret, or what is built from one)
/// and awaited where it is first used.
///
/// [`Prefetched::start`] spawns `load()` at once, so its I/O overlaps what `main` does next
/// (the runtime's first `/next`); [`Prefetched::get`] awaits it, then hands out the value it
/// keeps. A failed load is returned to that `get` and not kept: the next `get` calls `load`
/// again. Concurrent `get`s share one load. Its `Debug` says whether the value is loaded, never
/// what it is.
pub struct Prefetched<T, E, F> {
    value: tokio::sync::OnceCell<T>,
    first: std::sync::Mutex<Option<tokio::task::JoinHandle<Result<T, E>>>>,
    load: F,
}

impl<T, E, F, Fut> Prefetched<T, E, F>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    /// Starts `load()` on the Tokio runtime now (call it inside the runtime, in `main`).
    pub fn start(load: F) -> Self {
        let first = tokio::spawn(load());
        Self { value: tokio::sync::OnceCell::new(), first: std::sync::Mutex::new(Some(first)), load }
    }

    /// The value, once loaded: the background load's result the first time, a new load after a
    /// failure.
    pub async fn get(&self) -> Result<&T, E> {
        self.value
            .get_or_try_init(|| async {
                let first = self.first.lock().ok().and_then(|mut first| first.take());
                match first {
                    Some(task) => match task.await {
                        Ok(result) => result,
                        // The task was cancelled (the runtime is shutting down): load here.
                        Err(_) => (self.load)().await,
                    },
                    None => (self.load)().await,
                }
            })
            .await
    }
}

impl<T, E, F> std::fmt::Debug for Prefetched<T, E, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetched").field("loaded", &self.value.initialized()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
    async fn the_load_starts_before_anyone_asks_and_its_value_is_kept() {
        let (calls, load) = counted(&[]);
        let secret = Prefetched::start(load);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "started at once");

        assert_eq!(secret.get().await.unwrap(), "value 1");
        assert_eq!(secret.get().await.unwrap(), "value 1");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(format!("{secret:?}"), "Prefetched { loaded: true, .. }");
    }

    #[tokio::test]
    async fn a_failed_load_fails_that_use_and_the_next_use_loads_again() {
        let (calls, load) = counted(&[1, 2]);
        let secret = Prefetched::start(load);

        assert_eq!(secret.get().await.unwrap_err(), "load 1 failed");
        assert_eq!(secret.get().await.unwrap_err(), "load 2 failed");
        assert_eq!(secret.get().await.unwrap(), "value 3");
        assert_eq!(secret.get().await.unwrap(), "value 3");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn concurrent_first_uses_share_the_background_load() {
        let (calls, load) = counted(&[]);
        let secret = Prefetched::start(load);

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
