//! The local gateway's configuration, read once from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gateway_api::auth::ApiToken;
use gateway_core::delivery::TIMEOUT_SECONDS;
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
    /// The defaults of every subscription's delivery policy: `GATEWAY_MAX_ATTEMPTS` (8),
    /// `GATEWAY_RETRY_BASE_MS` (1000), `GATEWAY_RETRY_MAX_MS` (300000), `GATEWAY_MAX_AGE_SECONDS`
    /// (86400: no retry starts a day after its series began) and `GATEWAY_SYNC_TIMEOUT_SECONDS`
    /// (30, at most 900: how long a `sync` invocation is waited for).
    pub retry: RetryPolicy,
    /// `GATEWAY_CONCURRENCY`: invocations in flight at once, default 16.
    pub concurrency: usize,
    /// `GATEWAY_POLL_MS`: how often an idle worker looks for due retries, default 250.
    pub poll_interval: Duration,
    /// `GATEWAY_INVOKE_TIMEOUT_MS`: an `async` Invoke call's limit, default 30000 (a `sync` one
    /// waits its own timeout). A claim's lease outlasts the longest invocation
    /// (`worker::claim_lease`), so a claimed delivery is never run twice by one healthy process.
    pub invoke_timeout: Duration,
    /// `GATEWAY_DELIVERY_RETENTION_DAYS`, default 30: days from its receipt that a trigger's
    /// payload and delivery log are kept (longer while a delivery is pending).
    pub delivery_retention: DeliveryRetention,
    /// `GATEWAY_API_TOKEN`: when set, every request but `/health` must carry it as a bearer
    /// token. Required to listen on anything but loopback. `Debug` does not show it.
    pub api_token: Option<ApiToken>,
    /// `GATEWAY_CLOUDEVENTS_SOURCE`, default `/event-gateway`: the `source` of the CloudEvents
    /// subscriptions in `cloudevents` format receive.
    pub cloud_events_source: String,
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
        let defaults = RetryPolicy::default();
        let seconds_within = |var: &'static str, default: Duration, range: std::ops::RangeInclusive<u64>| {
            let s = number(var, default.as_secs())?;
            if range.contains(&s) {
                Ok(Duration::from_secs(s))
            } else {
                Err(ConfigError {
                    var,
                    problem: format!("{s} is not between {} and {} seconds", range.start(), range.end()),
                })
            }
        };
        let retry = RetryPolicy {
            max_attempts: number("GATEWAY_MAX_ATTEMPTS", defaults.max_attempts.into())?.clamp(1, 1000) as u32,
            base_delay: Duration::from_millis(number("GATEWAY_RETRY_BASE_MS", 1000)?),
            max_delay: Duration::from_millis(number("GATEWAY_RETRY_MAX_MS", 300_000)?),
            // A default a subscription could not ask for itself is allowed (a few seconds, for a
            // test), but not none at all: every retry would then be too late.
            max_age: seconds_within("GATEWAY_MAX_AGE_SECONDS", defaults.max_age, 1..=u64::from(u32::MAX))?,
            // Lambda runs a function at most 900 s: waiting longer would wait for nothing.
            timeout: seconds_within(
                "GATEWAY_SYNC_TIMEOUT_SECONDS",
                defaults.timeout,
                u64::from(*TIMEOUT_SECONDS.start())..=u64::from(*TIMEOUT_SECONDS.end()),
            )?,
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
        let api_token = get("GATEWAY_API_TOKEN")
            .map(|raw| ApiToken::new(&raw))
            .transpose()
            .map_err(|problem| ConfigError { var: "GATEWAY_API_TOKEN", problem })?;
        // Anyone who reaches the gateway can have it invoke functions with the operator's AWS
        // credentials: beyond loopback, only with a token.
        if api_token.is_none() && !addr.ip().to_canonical().is_loopback() {
            return Err(ConfigError {
                var: "GATEWAY_API_TOKEN",
                problem: format!(
                    "GATEWAY_ADDR {addr} is not a loopback address, and without a token anyone who can reach it could \
                     invoke functions with this gateway's AWS credentials; set GATEWAY_API_TOKEN (e.g. to the output \
                     of `openssl rand -hex 32`) or listen on 127.0.0.1"
                ),
            });
        }
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
            api_token,
            cloud_events_source: gateway_core::cloudevent::cloud_events_source(get("GATEWAY_CLOUDEVENTS_SOURCE"))
                .map_err(|problem| ConfigError { var: "GATEWAY_CLOUDEVENTS_SOURCE", problem })?,
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
        assert_eq!(c.retry, RetryPolicy::default(), "the core's delivery defaults");
        assert_eq!((c.retry.max_age, c.retry.timeout), (Duration::from_secs(86_400), Duration::from_secs(30)));
    }

    #[test]
    fn the_delivery_defaults_come_from_the_environment_within_their_limits() {
        let env = |k: &str| match k {
            "GATEWAY_MAX_AGE_SECONDS" => Some("600".to_owned()),
            "GATEWAY_SYNC_TIMEOUT_SECONDS" => Some("120".to_owned()),
            _ => None,
        };
        let c = Config::from_lookup(env).unwrap();
        assert_eq!((c.retry.max_age, c.retry.timeout), (Duration::from_secs(600), Duration::from_secs(120)));
        for (var, raw, says) in [
            ("GATEWAY_SYNC_TIMEOUT_SECONDS", "881", "881 is not between 1 and 880 seconds"),
            ("GATEWAY_SYNC_TIMEOUT_SECONDS", "0", "0 is not between 1 and 880 seconds"),
            ("GATEWAY_MAX_AGE_SECONDS", "0", "0 is not between 1 and"),
            ("GATEWAY_MAX_AGE_SECONDS", "a day", "'a day' is not a whole number"),
        ] {
            let err = Config::from_lookup(|k| (k == var).then(|| raw.to_owned())).unwrap_err();
            assert!(err.to_string().starts_with(&format!("{var}: {says}")), "{err}");
        }
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
    fn a_non_loopback_address_without_a_token_is_refused() {
        for addr in ["0.0.0.0:3000", "192.0.2.10:3000", "[::]:3000"] {
            let err = Config::from_lookup(|k| (k == "GATEWAY_ADDR").then(|| addr.to_owned())).unwrap_err();
            let message = err.to_string();
            assert!(message.starts_with("GATEWAY_API_TOKEN: GATEWAY_ADDR"), "{message}");
            assert!(message.contains("not a loopback address"), "{message}");
        }
    }

    #[test]
    fn a_non_loopback_address_with_a_token_is_served() {
        let env = |k: &str| match k {
            "GATEWAY_ADDR" => Some("0.0.0.0:3000".to_owned()),
            "GATEWAY_API_TOKEN" => Some("0123456789abcdef0123".to_owned()),
            _ => None,
        };
        let c = Config::from_lookup(env).unwrap();
        assert_eq!(c.addr.to_string(), "0.0.0.0:3000");
        assert!(c.api_token.is_some());
    }

    #[test]
    fn loopback_addresses_need_no_token() {
        for addr in ["127.0.0.1:3000", "127.0.0.2:3000", "[::1]:3000", "[::ffff:127.0.0.1]:3000"] {
            let c = Config::from_lookup(|k| (k == "GATEWAY_ADDR").then(|| addr.to_owned())).unwrap();
            assert!(c.api_token.is_none(), "{addr}");
        }
    }

    #[test]
    fn a_token_too_short_to_guard_anything_is_refused_and_never_shown() {
        let err = Config::from_lookup(|k| (k == "GATEWAY_API_TOKEN").then(|| "hunter2".to_owned())).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("GATEWAY_API_TOKEN: the token must be 16 to"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn the_token_never_appears_in_the_configuration_debug_output() {
        let c =
            Config::from_lookup(|k| (k == "GATEWAY_API_TOKEN").then(|| "a-very-secret-value-1234".to_owned())).unwrap();
        assert!(!format!("{c:?}").contains("a-very-secret-value-1234"));
    }

    #[test]
    fn a_bad_number_names_its_variable() {
        let err = Config::from_lookup(|k| (k == "GATEWAY_MAX_ATTEMPTS").then(|| "many".to_owned())).unwrap_err();
        assert!(err.to_string().starts_with("GATEWAY_MAX_ATTEMPTS"));
    }
}
