//! The delivery decision: after an attempt, what state a delivery is in next and when it is tried
//! again. One pure function ([`next_step`]), called by the local worker and the cloud dispatcher
//! alike, so the two engines cannot disagree about a retry.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::Violation;
use crate::model::{DeliveryMode, DeliveryPolicy, DeliveryStatus};

/// The most attempts a subscription may ask for: 185, EventBridge's limit for a target.
pub const MAX_ATTEMPTS: u32 = 185;
/// The range of `maxAgeSeconds`: a minute to a day (EventBridge's bounds).
pub const MAX_AGE_SECONDS: std::ops::RangeInclusive<u32> = 60..=86_400;
/// The range of `timeoutSeconds`: 880 s, under Lambda's own 900, because the cloud dispatcher
/// that waits runs in a Lambda of at most 900 s and keeps 10 s of it to record the attempt and
/// hand the delivery on (`gateway_dispatcher::SAFETY_MARGIN`), with a further 10 s for its batch
/// to start: a limit the API accepts is one both engines can honour.
pub const TIMEOUT_SECONDS: std::ops::RangeInclusive<u32> = 1..=880;

/// The gateway-wide settings every subscription's policy falls back on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; after the last failure the delivery is failed.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No attempt starts later than this after its series began.
    pub max_age: Duration,
    /// How long a `sync` invocation is waited for.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            max_age: Duration::from_secs(86_400),
            timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff before jitter: `base * 2^(attempt-1)`, capped at `max_delay`.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// A subscription's policy with every limit it leaves out taken from these settings.
    pub fn limits(&self, policy: &DeliveryPolicy) -> Limits {
        Limits {
            mode: policy.mode,
            max_attempts: policy.max_attempts.unwrap_or(self.max_attempts).max(1),
            max_age: policy.max_age_seconds.map_or(self.max_age, |s| Duration::from_secs(s.into())),
            timeout: policy.timeout_seconds.map_or(self.timeout, |s| Duration::from_secs(s.into())),
            backoff: self.clone(),
        }
    }
}

/// What governs one delivery: its subscription's policy over the gateway's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub mode: DeliveryMode,
    pub max_attempts: u32,
    pub max_age: Duration,
    pub timeout: Duration,
    backoff: RetryPolicy,
}

/// Every problem with a subscription's delivery policy, with its pointer under `/delivery`.
pub fn check_policy(policy: &DeliveryPolicy) -> Vec<Violation> {
    let mut found = Vec::new();
    if let Some(n) = policy.max_attempts {
        if !(1..=MAX_ATTEMPTS).contains(&n) {
            found.push(Violation::new("/delivery/maxAttempts", format!("must be 1 to {MAX_ATTEMPTS}, not {n}")));
        }
    }
    if let Some(s) = policy.max_age_seconds {
        if !MAX_AGE_SECONDS.contains(&s) {
            found.push(Violation::new(
                "/delivery/maxAgeSeconds",
                format!("must be {} to {} seconds, not {s}", MAX_AGE_SECONDS.start(), MAX_AGE_SECONDS.end()),
            ));
        }
    }
    if let Some(s) = policy.timeout_seconds {
        if policy.mode != DeliveryMode::Sync {
            found.push(Violation::new(
                "/delivery/timeoutSeconds",
                "applies to \"sync\" delivery only: an \"async\" invocation returns once Lambda has queued the event",
            ));
        } else if !TIMEOUT_SECONDS.contains(&s) {
            found.push(Violation::new(
                "/delivery/timeoutSeconds",
                format!("must be {} to {} seconds, not {s}", TIMEOUT_SECONDS.start(), TIMEOUT_SECONDS.end()),
            ));
        }
    }
    found
}

/// How an attempt went, as the decision needs it.
#[derive(Clone, Debug, PartialEq)]
pub enum Tried {
    /// `sync`: the function returned without an error.
    Succeeded,
    /// `async`: Lambda accepted the event.
    Invoked,
    /// It failed; `retryable` is false when only a change (a fix, a permission) can mend it.
    Failed { error: String, retryable: bool },
}

/// What a delivery is after an attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// Settled: `Delivered` or `Invoked`.
    Settled(DeliveryStatus),
    /// Pending, tried again at `at` (after `delay`).
    RetryAt { at: DateTime<Utc>, delay: Duration, error: String },
    /// Failed, with why it will not be tried again.
    Failed { error: String },
}

/// The decision after attempt number `attempt` (counted in its series, this one included) of a
/// series that began at `series_started_at`, ending at `now`.
///
/// A failure is retried after an exponential backoff with jitter unless it cannot pass, it was
/// the last of `max_attempts`, or the retry would start after `max_age` (whichever comes first).
/// `jitter`, drawn in `[0, 1)` by the caller, spreads the retry over the upper half of the
/// backoff (`delay/2 + jitter * delay/2`), so deliveries that failed together (a throttled
/// function) do not all come back in the same second, and none comes back sooner than half the
/// backoff.
pub fn next_step(
    limits: &Limits,
    attempt: u32,
    series_started_at: DateTime<Utc>,
    now: DateTime<Utc>,
    tried: Tried,
    jitter: f64,
) -> Next {
    let (error, retryable) = match tried {
        Tried::Succeeded => return Next::Settled(DeliveryStatus::Delivered),
        Tried::Invoked => return Next::Settled(DeliveryStatus::Invoked),
        Tried::Failed { error, retryable } => (error, retryable),
    };
    if !retryable {
        return Next::Failed { error: format!("attempt {attempt}: {error} (not retried: a retry cannot mend it)") };
    }
    if attempt >= limits.max_attempts {
        return Next::Failed { error: format!("attempt {attempt} of {}: {error}", limits.max_attempts) };
    }
    let delay = jittered(limits.backoff.delay_after(attempt), jitter);
    let at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    let deadline = series_started_at + chrono::Duration::from_std(limits.max_age).unwrap_or(chrono::Duration::MAX);
    if at > deadline {
        return Next::Failed {
            error: format!(
                "attempt {attempt}: {error} (not retried: the next attempt would start more than {} s after the series began)",
                limits.max_age.as_secs()
            ),
        };
    }
    Next::RetryAt { at, delay, error }
}

/// `delay` spread over its upper half by `jitter` in `[0, 1)` (clamped there).
pub fn jittered(delay: Duration, jitter: f64) -> Duration {
    let jitter = if jitter.is_finite() { jitter.clamp(0.0, 1.0) } else { 0.0 };
    let half = delay / 2;
    half + half.mul_f64(jitter)
}

/// A jitter in `[0, 1)` from the thread's random generator.
pub fn random_jitter() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_attempts: u32, max_age_secs: u64) -> Limits {
        let defaults = RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_age: Duration::from_secs(86_400),
            timeout: Duration::from_secs(30),
        };
        let mut limits = defaults.limits(&DeliveryPolicy::default());
        limits.max_attempts = max_attempts;
        limits.max_age = Duration::from_secs(max_age_secs);
        limits
    }

    fn failed(retryable: bool) -> Tried {
        Tried::Failed { error: "boom".into(), retryable }
    }

    fn t0() -> DateTime<Utc> {
        "2026-12-02T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_sync_success_is_delivered_and_an_async_one_invoked() {
        let l = limits(3, 3600);
        assert_eq!(next_step(&l, 1, t0(), t0(), Tried::Succeeded, 0.5), Next::Settled(DeliveryStatus::Delivered));
        assert_eq!(next_step(&l, 3, t0(), t0(), Tried::Invoked, 0.5), Next::Settled(DeliveryStatus::Invoked));
    }

    #[test]
    fn a_retryable_failure_is_retried_after_the_jittered_backoff() {
        let l = limits(3, 3600);
        // attempt 2: backoff 2 s, jitter 0.5 puts it at 1.5 s
        let next = next_step(&l, 2, t0(), t0(), failed(true), 0.5);
        assert_eq!(
            next,
            Next::RetryAt {
                at: t0() + chrono::Duration::milliseconds(1500),
                delay: Duration::from_millis(1500),
                error: "boom".into()
            }
        );
    }

    #[test]
    fn the_last_attempt_fails_the_delivery() {
        let next = next_step(&limits(3, 3600), 3, t0(), t0(), failed(true), 0.0);
        assert_eq!(next, Next::Failed { error: "attempt 3 of 3: boom".into() });
        let once = next_step(&limits(1, 3600), 1, t0(), t0(), failed(true), 0.0);
        assert!(matches!(once, Next::Failed { .. }), "maxAttempts 1 never retries");
    }

    #[test]
    fn an_error_a_retry_cannot_mend_fails_at_once() {
        let next = next_step(&limits(10, 3600), 1, t0(), t0(), failed(false), 0.0);
        assert!(matches!(next, Next::Failed { ref error } if error.contains("not retried")), "{next:?}");
    }

    #[test]
    fn a_retry_past_the_maximum_age_fails_the_delivery_whichever_limit_comes_first() {
        let l = limits(100, 60);
        // 59 s into the series a retry 1 s away (attempt 1, jitter 1.0) still fits exactly...
        let fits = next_step(&l, 1, t0(), t0() + chrono::Duration::seconds(59), failed(true), 1.0);
        assert!(matches!(fits, Next::RetryAt { .. }), "{fits:?}");
        // ...one a moment later does not, although 98 attempts are left
        let late = next_step(&l, 1, t0(), t0() + chrono::Duration::milliseconds(59_600), failed(true), 1.0);
        assert!(matches!(late, Next::Failed { ref error } if error.contains("60 s")), "{late:?}");
    }

    #[test]
    fn jitter_keeps_the_retry_within_the_upper_half_of_the_backoff() {
        let l = limits(185, 86_400);
        for attempt in 1..20 {
            let full = l.backoff.delay_after(attempt);
            for jitter in [0.0, 0.25, 0.999_999, 1.0, -3.0, 7.0, f64::NAN] {
                let Next::RetryAt { delay, .. } = next_step(&l, attempt, t0(), t0(), failed(true), jitter) else {
                    panic!("attempt {attempt} is retried");
                };
                assert!(
                    delay >= full / 2 && delay <= full,
                    "attempt {attempt}, jitter {jitter}: {delay:?} of {full:?}"
                );
            }
        }
        let draws: Vec<f64> = (0..1000).map(|_| random_jitter()).collect();
        assert!(draws.iter().all(|j| (0.0..1.0).contains(j)));
        assert!(draws.iter().any(|j| *j < 0.5) && draws.iter().any(|j| *j >= 0.5), "the draws spread");
    }

    #[test]
    fn backoff_doubles_and_stops_at_the_cap() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..Default::default()
        };
        assert_eq!(p.delay_after(1), Duration::from_millis(100));
        assert_eq!(p.delay_after(2), Duration::from_millis(200));
        assert_eq!(p.delay_after(4), Duration::from_millis(800));
        assert_eq!(p.delay_after(5), Duration::from_secs(1));
        assert_eq!(p.delay_after(64), Duration::from_secs(1));
    }

    #[test]
    fn a_policy_takes_the_defaults_for_what_it_leaves_out() {
        let defaults = RetryPolicy::default();
        let l = defaults.limits(&DeliveryPolicy::default());
        assert_eq!(
            (l.mode, l.max_attempts, l.max_age, l.timeout),
            (DeliveryMode::Async, 8, defaults.max_age, defaults.timeout)
        );
        let own = DeliveryPolicy {
            mode: DeliveryMode::Sync,
            max_attempts: Some(2),
            max_age_seconds: Some(120),
            timeout_seconds: Some(5),
        };
        let l = defaults.limits(&own);
        assert_eq!(
            (l.mode, l.max_attempts, l.max_age, l.timeout),
            (DeliveryMode::Sync, 2, Duration::from_secs(120), Duration::from_secs(5))
        );
    }

    #[test]
    fn policy_limits_are_checked_with_their_pointers() {
        assert!(check_policy(&DeliveryPolicy::default()).is_empty());
        let bad = DeliveryPolicy {
            mode: DeliveryMode::Sync,
            max_attempts: Some(186),
            max_age_seconds: Some(59),
            timeout_seconds: Some(881),
        };
        let pointers: Vec<_> = check_policy(&bad).into_iter().map(|v| v.pointer).collect();
        assert_eq!(pointers, ["/delivery/maxAttempts", "/delivery/maxAgeSeconds", "/delivery/timeoutSeconds"]);
        let zero = DeliveryPolicy { max_attempts: Some(0), ..Default::default() };
        assert_eq!(check_policy(&zero).len(), 1);
        let async_timeout = DeliveryPolicy { timeout_seconds: Some(5), ..Default::default() };
        assert_eq!(check_policy(&async_timeout)[0].pointer, "/delivery/timeoutSeconds");
        let edges = DeliveryPolicy {
            mode: DeliveryMode::Sync,
            max_attempts: Some(185),
            max_age_seconds: Some(86_400),
            timeout_seconds: Some(880),
        };
        assert!(check_policy(&edges).is_empty());
    }
}
