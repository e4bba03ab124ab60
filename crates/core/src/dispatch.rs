//! The dispatch use case: one attempt to run one delivery, and what to do after it.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use crate::allowlist::FunctionAllowlist;
use crate::ids::DataType;
use crate::model::{Delivery, InvocationData, InvocationPayload, Origin};
use crate::ports::{AttemptOutcome, FunctionInvoker};

/// How often and how patiently a failed invocation is tried again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; after the last failure the delivery is failed.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 8, base_delay: Duration::from_secs(1), max_delay: Duration::from_secs(300) }
    }
}

impl RetryPolicy {
    /// Exponential backoff: `base * 2^(attempt-1)`, capped at `max_delay`.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// One delivery, and what its function is invoked with: the trigger's payload of `data_type`,
/// and the native record that triggered it, if one did.
#[derive(Clone, Copy, Debug)]
pub struct Invocation<'a> {
    pub delivery: &'a Delivery,
    pub data_type: &'a DataType,
    pub payload: &'a [u8],
    pub source: Option<&'a Origin>,
}

/// The JSON a subscribed function receives for an invocation.
pub fn invocation_payload(invocation: Invocation<'_>) -> Result<Vec<u8>, String> {
    let Invocation { delivery, data_type, payload, source } = invocation;
    let (data, data_encoding) = if data_type.is_json() {
        let raw: &RawValue = serde_json::from_slice(payload).map_err(|e| format!("stored payload is not JSON: {e}"))?;
        (InvocationData::Json(raw), None)
    } else {
        (InvocationData::Base64(STANDARD.encode(payload)), Some("base64"))
    };
    let body = InvocationPayload {
        event_id: delivery.event_id,
        event: &delivery.event,
        subscription_id: delivery.subscription_id,
        function_id: &delivery.function_id,
        received_at: delivery.received_at,
        data,
        data_type,
        data_encoding,
        metadata: &delivery.metadata,
        source,
    };
    serde_json::to_vec(&body).map_err(|e| e.to_string())
}

/// Makes attempt number `delivery.attempts + 1` and says what the delivery log should record.
pub async fn attempt(
    invoker: &dyn FunctionInvoker,
    allowlist: &FunctionAllowlist,
    policy: &RetryPolicy,
    now: DateTime<Utc>,
    invocation: Invocation<'_>,
) -> AttemptOutcome {
    let delivery = invocation.delivery;
    if !allowlist.allows(&delivery.function_id) {
        return AttemptOutcome::Failed {
            error: format!(
                "function '{}' is outside the allowlist ({}); not invoked",
                delivery.function_id,
                allowlist.describe()
            ),
        };
    }
    let body = match invocation_payload(invocation) {
        Ok(body) => body,
        Err(error) => return AttemptOutcome::Failed { error },
    };
    let attempt = delivery.attempts + 1;
    match invoker.invoke(&delivery.function_id, &body).await {
        Ok(()) => AttemptOutcome::Delivered,
        Err(e) if e.retryable && attempt < policy.max_attempts => {
            let delay = chrono::Duration::from_std(policy.delay_after(attempt)).unwrap_or(chrono::Duration::MAX);
            AttemptOutcome::RetryAt { at: now + delay, error: e.message }
        }
        Err(e) => AttemptOutcome::Failed { error: format!("attempt {attempt}: {}", e.message) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stops_at_the_cap() {
        let p =
            RetryPolicy { max_attempts: 10, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        assert_eq!(p.delay_after(1), Duration::from_millis(100));
        assert_eq!(p.delay_after(2), Duration::from_millis(200));
        assert_eq!(p.delay_after(4), Duration::from_millis(800));
        assert_eq!(p.delay_after(5), Duration::from_secs(1));
        assert_eq!(p.delay_after(64), Duration::from_secs(1));
    }
}
