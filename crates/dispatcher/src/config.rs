//! The dispatcher's configuration, read once from the environment by its Lambda binary.

use std::time::Duration;

use gateway_core::delivery::{MAX_AGE_SECONDS, MAX_ATTEMPTS, TIMEOUT_SECONDS};
use gateway_core::dispatch::RetryPolicy;
use gateway_core::DeliveryRetention;

use crate::queue::MAX_DELAY;
use crate::DispatchSettings;

#[derive(Clone, Debug)]
pub struct Config {
    /// `GATEWAY_TABLE`: the DynamoDB table of the delivery log.
    pub table_name: String,
    /// `GATEWAY_DELIVERY_QUEUE_URL`: where a failed delivery is re-enqueued.
    pub delivery_queue_url: String,
    /// `GATEWAY_DEAD_LETTER_QUEUE_URL`: where it goes after its last attempt.
    pub dead_letter_queue_url: String,
    /// `GATEWAY_FUNCTION_ALLOWLIST` (required, with `AWS_REGION` and `GATEWAY_ACCOUNT_ID`: see
    /// `gateway_core::allowlist::cloud_allowlist`), `GATEWAY_MAX_ATTEMPTS` (8),
    /// `GATEWAY_RETRY_BASE_MS` (1000), `GATEWAY_RETRY_MAX_MS` (300000, at most 900000),
    /// `GATEWAY_MAX_AGE_SECONDS` (86400, 60 to 86400), `GATEWAY_SYNC_TIMEOUT_SECONDS` (30, 1 to
    /// 880), `GATEWAY_CONCURRENCY` (16): the defaults a subscription's delivery policy falls back on.
    pub settings: DispatchSettings,
    /// `GATEWAY_DELIVERY_RETENTION_DAYS` (30): the TTL of the delivery records it writes.
    pub delivery_retention: DeliveryRetention,
}

#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |var: &'static str| {
            get(var).filter(|v| !v.trim().is_empty()).ok_or(ConfigError { var, problem: "is required".to_owned() })
        };
        let number = |var: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(raw) => raw
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError { var, problem: format!("'{raw}' is not a whole number") }),
            }
        };
        let retry = RetryPolicy {
            max_attempts: number("GATEWAY_MAX_ATTEMPTS", 8)?.clamp(1, u64::from(MAX_ATTEMPTS)) as u32,
            base_delay: Duration::from_millis(number("GATEWAY_RETRY_BASE_MS", 1000)?),
            max_delay: Duration::from_millis(number("GATEWAY_RETRY_MAX_MS", 300_000)?).min(MAX_DELAY),
            max_age: Duration::from_secs(
                number("GATEWAY_MAX_AGE_SECONDS", 86_400)?
                    .clamp(u64::from(*MAX_AGE_SECONDS.start()), u64::from(*MAX_AGE_SECONDS.end())),
            ),
            timeout: Duration::from_secs(
                number("GATEWAY_SYNC_TIMEOUT_SECONDS", 30)?
                    .clamp(u64::from(*TIMEOUT_SECONDS.start()), u64::from(*TIMEOUT_SECONDS.end())),
            ),
        };
        Ok(Self {
            table_name: required("GATEWAY_TABLE")?,
            delivery_queue_url: required("GATEWAY_DELIVERY_QUEUE_URL")?,
            dead_letter_queue_url: required("GATEWAY_DEAD_LETTER_QUEUE_URL")?,
            settings: DispatchSettings {
                allowlist: gateway_core::allowlist::cloud_allowlist(&get)
                    .map_err(|(var, problem)| ConfigError { var, problem })?,
                retry,
                concurrency: number("GATEWAY_CONCURRENCY", 16)?.clamp(1, 1024) as usize,
                acceptance_window: gateway_core::ports::ACCEPTANCE_WINDOW,
                cloud_events_source: gateway_core::cloudevent::cloud_events_source(get("GATEWAY_CLOUDEVENTS_SOURCE"))
                    .map_err(|problem| ConfigError { var: "GATEWAY_CLOUDEVENTS_SOURCE", problem })?,
            },
            delivery_retention: DeliveryRetention::parse(get("GATEWAY_DELIVERY_RETENTION_DAYS").as_deref())
                .map_err(|problem| ConfigError { var: "GATEWAY_DELIVERY_RETENTION_DAYS", problem })?,
        })
    }
}

/// The outcome recorder's configuration (`crate::outcome`), read once by its Lambda binary.
#[derive(Clone, Debug)]
pub struct OutcomeConfig {
    /// `GATEWAY_TABLE`: the DynamoDB table of the delivery log.
    pub table_name: String,
    /// `GATEWAY_DEAD_LETTER_QUEUE_URL`: where a delivery Lambda reports failed goes.
    pub dead_letter_queue_url: String,
    /// `AWS_REGION` and `GATEWAY_ACCOUNT_ID`: what a bare function name in a delivery resolves
    /// to, for matching it to the function ARN in Lambda's record.
    pub home: gateway_core::Home,
    /// `GATEWAY_DELIVERY_RETENTION_DAYS` (30).
    pub delivery_retention: DeliveryRetention,
}

impl OutcomeConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |var: &'static str| {
            get(var).filter(|v| !v.trim().is_empty()).ok_or(ConfigError { var, problem: "is required".to_owned() })
        };
        Ok(Self {
            table_name: required("GATEWAY_TABLE")?,
            dead_letter_queue_url: required("GATEWAY_DEAD_LETTER_QUEUE_URL")?,
            home: gateway_core::allowlist::cloud_home(&get).map_err(|(var, problem)| ConfigError { var, problem })?,
            delivery_retention: DeliveryRetention::parse(get("GATEWAY_DELIVERY_RETENTION_DAYS").as_deref())
                .map_err(|problem| ConfigError { var: "GATEWAY_DELIVERY_RETENTION_DAYS", problem })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_and_table_are_required_and_delays_stay_within_sqs_limits() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let err = Config::from_lookup(env(&[])).unwrap_err();
        assert_eq!(err.var, "GATEWAY_TABLE");
        let config = Config::from_lookup(env(&[
            ("GATEWAY_TABLE", "gateway"),
            ("GATEWAY_DELIVERY_QUEUE_URL", "https://sqs/1/deliveries"),
            ("GATEWAY_DEAD_LETTER_QUEUE_URL", "https://sqs/1/dlq"),
            ("GATEWAY_RETRY_MAX_MS", "3600000"),
            ("GATEWAY_FUNCTION_ALLOWLIST", "orders-"),
            ("AWS_REGION", "eu-west-1"),
            ("GATEWAY_ACCOUNT_ID", "123456789012"),
            ("GATEWAY_DELIVERY_RETENTION_DAYS", "90"),
        ]))
        .unwrap();
        assert_eq!(config.settings.retry.max_delay, MAX_DELAY);
        assert_eq!(config.settings.retry.max_attempts, 8);
        assert_eq!(config.settings.allowlist.describe(), "orders-*; home region eu-west-1, account 123456789012");
        assert_eq!(config.delivery_retention, DeliveryRetention::days(90).unwrap());
        let err = Config::from_lookup(env(&[
            ("GATEWAY_TABLE", "gateway"),
            ("GATEWAY_DELIVERY_QUEUE_URL", "https://sqs/1/deliveries"),
            ("GATEWAY_DEAD_LETTER_QUEUE_URL", "https://sqs/1/dlq"),
            ("GATEWAY_FUNCTION_ALLOWLIST", "orders-"),
            ("AWS_REGION", "eu-west-1"),
            ("GATEWAY_DELIVERY_RETENTION_DAYS", "forever"),
        ]))
        .unwrap_err();
        assert_eq!(err.var, "GATEWAY_DELIVERY_RETENTION_DAYS");
    }

    #[test]
    fn the_policy_defaults_are_a_day_of_age_and_thirty_seconds_of_sync_wait_within_the_policy_limits() {
        let base = [
            ("GATEWAY_TABLE", "gateway"),
            ("GATEWAY_DELIVERY_QUEUE_URL", "https://sqs/1/deliveries"),
            ("GATEWAY_DEAD_LETTER_QUEUE_URL", "https://sqs/1/dlq"),
            ("GATEWAY_FUNCTION_ALLOWLIST", "orders-"),
            ("AWS_REGION", "eu-west-1"),
        ];
        let with = |extra: &'static [(&'static str, &'static str)]| {
            move |k: &str| base.iter().chain(extra).find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let defaults = Config::from_lookup(with(&[])).unwrap().settings.retry;
        assert_eq!((defaults.max_age, defaults.timeout), (Duration::from_secs(86_400), Duration::from_secs(30)));
        let set =
            Config::from_lookup(with(&[("GATEWAY_MAX_AGE_SECONDS", "600"), ("GATEWAY_SYNC_TIMEOUT_SECONDS", "120")]))
                .unwrap()
                .settings
                .retry;
        assert_eq!((set.max_age, set.timeout), (Duration::from_secs(600), Duration::from_secs(120)));
        let out = Config::from_lookup(with(&[
            ("GATEWAY_MAX_AGE_SECONDS", "10"),
            ("GATEWAY_SYNC_TIMEOUT_SECONDS", "3600"),
            ("GATEWAY_MAX_ATTEMPTS", "500"),
        ]))
        .unwrap()
        .settings
        .retry;
        assert_eq!(
            (out.max_age, out.timeout, out.max_attempts),
            (Duration::from_secs(60), Duration::from_secs(880), 185),
            "held to what a subscription's policy may say"
        );
        let err = Config::from_lookup(with(&[("GATEWAY_SYNC_TIMEOUT_SECONDS", "soon")])).unwrap_err();
        assert_eq!(err.var, "GATEWAY_SYNC_TIMEOUT_SECONDS");
    }

    #[test]
    fn the_dispatcher_refuses_to_start_without_an_allowlist_instead_of_allowing_every_function() {
        let err = Config::from_lookup(|k| match k {
            "GATEWAY_TABLE" => Some("gateway".into()),
            "GATEWAY_DELIVERY_QUEUE_URL" => Some("https://sqs/1/deliveries".into()),
            "GATEWAY_DEAD_LETTER_QUEUE_URL" => Some("https://sqs/1/dlq".into()),
            "AWS_REGION" => Some("eu-west-1".into()),
            _ => None,
        })
        .unwrap_err();
        assert_eq!(err.var, "GATEWAY_FUNCTION_ALLOWLIST");
        assert!(err.problem.starts_with("is required"), "{}", err.problem);
    }
}
