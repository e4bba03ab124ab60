//! The local gateway's configuration, read once from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gateway_core::dispatch::RetryPolicy;
use gateway_core::{DeliveryRetention, FunctionAllowlist};

#[derive(Clone, Debug)]
pub struct Config {
    /// `GATEWAY_ADDR`, default `127.0.0.1:3000`.
    pub addr: SocketAddr,
    /// `GATEWAY_DATA_DIR`, default `.data`: the SQLite file lives here.
    pub data_dir: PathBuf,
    /// `GATEWAY_FUNCTION_ALLOWLIST`: comma-separated function-name prefixes, `*` for any (default).
    pub allowlist: FunctionAllowlist,
    /// `GATEWAY_MAX_PAYLOAD_BYTES`, default 262144 (the SNS message limit).
    pub max_payload_bytes: usize,
    /// `GATEWAY_MAX_ATTEMPTS`, `GATEWAY_RETRY_BASE_MS`, `GATEWAY_RETRY_MAX_MS`.
    pub retry: RetryPolicy,
    /// `GATEWAY_CONCURRENCY`: invocations in flight at once, default 16.
    pub concurrency: usize,
    /// `GATEWAY_POLL_MS`: how often an idle worker looks for due retries, default 250.
    pub poll_interval: Duration,
    /// `GATEWAY_INVOKE_TIMEOUT_MS`: one Invoke call's limit, default 30000. A delivery's lease
    /// is twice this, so a claimed delivery is never run twice by one healthy process.
    pub invoke_timeout: Duration,
    /// `GATEWAY_DELIVERY_RETENTION_DAYS`, default 30: days from its receipt that a trigger's
    /// payload and delivery log are kept (longer while a delivery is pending).
    pub delivery_retention: DeliveryRetention,
}

#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    var: &'static str,
    problem: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let number = |var: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(raw) => raw
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError { var, problem: format!("'{raw}' is not a whole number") }),
            }
        };
        let addr = match get("GATEWAY_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 3000)),
            Some(raw) => raw
                .parse()
                .map_err(|_| ConfigError { var: "GATEWAY_ADDR", problem: format!("'{raw}' is not host:port") })?,
        };
        let retry = RetryPolicy {
            max_attempts: number("GATEWAY_MAX_ATTEMPTS", 8)?.clamp(1, 1000) as u32,
            base_delay: Duration::from_millis(number("GATEWAY_RETRY_BASE_MS", 1000)?),
            max_delay: Duration::from_millis(number("GATEWAY_RETRY_MAX_MS", 300_000)?),
        };
        let allowlist = FunctionAllowlist::parse(&get("GATEWAY_FUNCTION_ALLOWLIST").unwrap_or_else(|| "*".to_owned()));
        Ok(Self {
            addr,
            data_dir: PathBuf::from(get("GATEWAY_DATA_DIR").unwrap_or_else(|| ".data".to_owned())),
            allowlist,
            max_payload_bytes: number("GATEWAY_MAX_PAYLOAD_BYTES", gateway_api::DEFAULT_MAX_PAYLOAD_BYTES as u64)?
                as usize,
            retry,
            concurrency: number("GATEWAY_CONCURRENCY", 16)?.clamp(1, 1024) as usize,
            poll_interval: Duration::from_millis(number("GATEWAY_POLL_MS", 250)?.max(10)),
            invoke_timeout: Duration::from_millis(number("GATEWAY_INVOKE_TIMEOUT_MS", 30_000)?.max(100)),
            delivery_retention: DeliveryRetention::parse(get("GATEWAY_DELIVERY_RETENTION_DAYS").as_deref())
                .map_err(|problem| ConfigError { var: "GATEWAY_DELIVERY_RETENTION_DAYS", problem })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_on_loopback_port_3000_and_allow_any_function() {
        let c = Config::from_lookup(|_| None).unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:3000");
        assert!(c.allowlist.allows_any());
        assert_eq!(c.max_payload_bytes, 256 * 1024);
        assert_eq!(c.delivery_retention, DeliveryRetention::days(30).unwrap());
    }

    #[test]
    fn a_retention_of_no_days_is_refused() {
        let err =
            Config::from_lookup(|k| (k == "GATEWAY_DELIVERY_RETENTION_DAYS").then(|| "0".to_owned())).unwrap_err();
        assert!(err.to_string().starts_with("GATEWAY_DELIVERY_RETENTION_DAYS: 0 is not between 1"), "{err}");
    }

    #[test]
    fn a_bad_number_names_its_variable() {
        let err = Config::from_lookup(|k| (k == "GATEWAY_MAX_ATTEMPTS").then(|| "many".to_owned())).unwrap_err();
        assert!(err.to_string().starts_with("GATEWAY_MAX_ATTEMPTS"));
    }
}
