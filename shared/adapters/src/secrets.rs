//! Secrets Manager secrets, read once at cold start.
//!
//! A function is given a secret's ARN in an environment variable and reads the value with
//! `GetSecretValue`, so the value never appears in the function's configuration (which anyone
//! allowed `lambda:GetFunctionConfiguration` can read) and a rotated value is picked up by the
//! next cold start without a deployment. Nothing here logs or formats a value, and errors name
//! the secret's ARN and version stage only.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let secret = SecretString("do-not-print".to_owned());

        assert_eq!(format!("{secret:?}"), "SecretString(***)");
        assert_eq!(secret.expose(), "do-not-print");
    }
}
