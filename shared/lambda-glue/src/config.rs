//! Configuration from the environment the template gives a function, read once at cold start.

/// A configuration problem, naming the variable so the fix is obvious from the log line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} is not set (template.yaml gives it to the function)")]
    Missing { name: &'static str },
    #[error("environment variable {name} has an invalid value `{value}`: {reason}")]
    Invalid { name: &'static str, value: String, reason: String },
}

/// The value of a variable that must be set and not empty.
pub fn required(name: &'static str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(ConfigError::Missing { name }),
    }
}

/// The parsed value of an optional variable, or `default` when it is unset.
pub fn parsed_or<T>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => {
            value.trim().parse().map_err(|e: T::Err| ConfigError::Invalid { name, value, reason: e.to_string() })
        }
        _ => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_is_named_in_the_error() {
        let error = required("FERROCART_TEST_SURELY_UNSET").err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "environment variable FERROCART_TEST_SURELY_UNSET is not set (template.yaml gives it to the function)"
            )
        );
    }

    #[test]
    fn an_unset_optional_variable_takes_its_default() {
        assert_eq!(parsed_or("FERROCART_TEST_SURELY_UNSET", 7_u32).ok(), Some(7));
    }
}
