//! The local gateway's configuration, read once from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gateway_core::dispatch::RetryPolicy;
use gateway_core::{AccountId, DeliveryRetention, FunctionAllowlist};

#[derive(Clone, Debug)]
pub struct Config {
    /// `GATEWAY_ADDR`, default `127.0.0.1:3000`.
    pub addr: SocketAddr,
    /// `GATEWAY_DATA_DIR`, default `.data`: the SQLite file lives here.
    pub data_dir: PathBuf,
    /// `GATEWAY_FUNCTION_ALLOWLIST`: which functions subscriptions may target, `*` (any name in
    /// the gateway's own account and region) by default; see `gateway_core::allowlist`. Its home
    /// is set once the region and account are known (`crate::resolve_home`).
    pub allowlist: FunctionAllowlist,
    /// `GATEWAY_ACCOUNT_ID`: the gateway's own AWS account, where bare function names run.
    pub account_id: Option<AccountId>,
    /// Whether to ask STS for the account when `GATEWAY_ACCOUNT_ID` is not set: yes, unless
    /// the Lambda calls go to an emulator (`AWS_ENDPOINT_URL_LAMBDA`) and STS would not.
    pub ask_sts_for_account: bool,
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
        let allowlist = FunctionAllowlist::parse(&get("GATEWAY_FUNCTION_ALLOWLIST").unwrap_or_else(|| "*".to_owned()))
            .map_err(|problem| ConfigError { var: "GATEWAY_FUNCTION_ALLOWLIST", problem })?;
        let account_id = get("GATEWAY_ACCOUNT_ID")
            .filter(|raw| !raw.trim().is_empty())
            .map(|raw| AccountId::parse(&raw))
            .transpose()
            .map_err(|problem| ConfigError { var: "GATEWAY_ACCOUNT_ID", problem })?;
        let emulated_lambda = get("AWS_ENDPOINT_URL_LAMBDA").is_some_and(|v| !v.is_empty());
        let sts_elsewhere =
            ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"].iter().any(|v| get(v).is_some_and(|v| !v.is_empty()));
        Ok(Self {
            addr,
            data_dir: PathBuf::from(get("GATEWAY_DATA_DIR").unwrap_or_else(|| ".data".to_owned())),
            allowlist,
            ask_sts_for_account: account_id.is_none() && (!emulated_lambda || sts_elsewhere),
            account_id,
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
        assert!(c.allowlist.allows_any_name());
        assert_eq!(c.account_id, None);
        assert!(c.ask_sts_for_account, "with real Lambda, STS tells the account");
        assert_eq!(c.max_payload_bytes, 256 * 1024);
        assert_eq!(c.delivery_retention, DeliveryRetention::days(30).unwrap());
    }

    #[test]
    fn the_account_comes_from_the_setting_or_sts_but_never_sts_beside_an_emulator() {
        let with = |pairs: &'static [(&'static str, &'static str)]| {
            Config::from_lookup(|k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).unwrap()
        };
        let set = with(&[("GATEWAY_ACCOUNT_ID", "123456789012"), ("AWS_ENDPOINT_URL_LAMBDA", "http://127.0.0.1:9000")]);
        assert_eq!(set.account_id, Some(AccountId::parse("123456789012").unwrap()));
        assert!(!set.ask_sts_for_account);
        assert!(!with(&[("AWS_ENDPOINT_URL_LAMBDA", "http://127.0.0.1:9000")]).ask_sts_for_account);
        let sts = with(&[("AWS_ENDPOINT_URL_LAMBDA", "http://a"), ("AWS_ENDPOINT_URL_STS", "http://b")]);
        assert!(sts.ask_sts_for_account);
        let err = Config::from_lookup(|k| (k == "GATEWAY_ACCOUNT_ID").then(|| "12345".to_owned())).unwrap_err();
        assert!(err.to_string().starts_with("GATEWAY_ACCOUNT_ID"), "{err}");
    }

    #[test]
    fn a_malformed_allowlist_is_refused_at_start_up() {
        let err =
            Config::from_lookup(|k| (k == "GATEWAY_FUNCTION_ALLOWLIST").then(|| "orders/,x".to_owned())).unwrap_err();
        assert!(err.to_string().starts_with("GATEWAY_FUNCTION_ALLOWLIST: 'orders/'"), "{err}");
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
