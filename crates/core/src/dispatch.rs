//! The dispatch use case: one attempt to run one delivery, and what to do after it.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::value::RawValue;

use crate::allowlist::FunctionAllowlist;
use crate::cloudevent::{structured_out, Outgoing, Received};
use crate::delivery::{self, Next, Tried};
use crate::ids::DataType;
use crate::model::{
    Attempt, AttemptResult, Delivery, DeliveryMode, DeliveryStatus, InvocationData, InvocationPayload, Origin,
    PayloadFormat,
};
use crate::ports::{Attempted, Clock, FunctionInvoker, InvocationMode, Invoked, Retry};

pub use crate::delivery::RetryPolicy;

/// One delivery, and what its function is invoked with: the trigger's payload of `data_type`,
/// and the native record or CloudEvent that triggered it, if one did.
#[derive(Clone, Copy, Debug)]
pub struct Invocation<'a> {
    pub delivery: &'a Delivery,
    pub data_type: &'a DataType,
    pub payload: &'a [u8],
    pub source: Option<&'a Origin>,
    pub cloud_event: Option<&'a Received>,
    /// The gateway's own `source` in the CloudEvents it sends (`cloudevents` format).
    pub cloud_events_source: &'a str,
}

/// What the gateway calls itself in the CloudEvents it sends, unless configured
/// (`GATEWAY_CLOUDEVENTS_SOURCE`).
pub const DEFAULT_CLOUD_EVENTS_SOURCE: &str = "/event-gateway";

/// The JSON a subscribed function receives for an invocation: the native invocation payload, or
/// for a subscription in `cloudevents` format a structured CloudEvent.
pub fn invocation_payload(invocation: Invocation<'_>) -> Result<Vec<u8>, String> {
    let Invocation { delivery, data_type, payload, source, cloud_event, cloud_events_source } = invocation;
    if delivery.format == PayloadFormat::Cloudevents {
        let id = delivery.event_id.to_string();
        let time = delivery.received_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let subscription_id = delivery.subscription_id.to_string();
        return structured_out(&Outgoing {
            id: &id,
            source: cloud_events_source,
            kind: delivery.event.as_str(),
            time: &time,
            data_content_type: data_type.as_str(),
            json: data_type.is_json(),
            payload,
            subscription_id: &subscription_id,
            delivery_attempt: delivery.attempts + 1,
            delivery_generation: delivery.generation,
            received: cloud_event,
        });
    }
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
        generation: delivery.generation,
        attempt: delivery.attempts + 1,
        function_id: &delivery.function_id,
        received_at: delivery.received_at,
        data,
        data_type,
        data_encoding,
        metadata: &delivery.metadata,
        source,
        cloud_event,
    };
    serde_json::to_vec(&body).map_err(|e| e.to_string())
}

/// What an invocation payload says of its delivery, read back from it (Lambda's invocation
/// record echoes it): the delivery, its series and the trigger's payload as a delivery message
/// carries it. Reads both formats [`invocation_payload`] writes.
#[derive(Debug)]
pub struct Echoed {
    pub event_id: crate::ids::EventId,
    pub subscription_id: crate::ids::SubscriptionId,
    pub generation: u32,
    pub data_type: DataType,
    pub data: Box<RawValue>,
    pub data_encoding: Option<String>,
    pub source: Option<Origin>,
    pub cloud_event: Option<Received>,
}

/// Reads an invocation payload back; `Err` says why it is not one the gateway wrote.
pub fn read_invocation(payload: &str) -> Result<Echoed, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Native {
        event_id: crate::ids::EventId,
        subscription_id: crate::ids::SubscriptionId,
        // A payload from before generations were sent reads as generation 0.
        #[serde(default)]
        generation: u32,
        data_type: DataType,
        data: Box<RawValue>,
        #[serde(default)]
        data_encoding: Option<String>,
        #[serde(default)]
        source: Option<Origin>,
        #[serde(default)]
        cloud_event: Option<Received>,
    }
    // Read straight from the text, so that `data` stays byte for byte what the function got.
    let n: Native = match serde_json::from_str(payload) {
        Ok(native) => native,
        Err(native_error) => {
            #[derive(serde::Deserialize)]
            struct Probe {
                specversion: Option<serde::de::IgnoredAny>,
            }
            return match serde_json::from_str::<Probe>(payload) {
                Ok(Probe { specversion: Some(_) }) => crate::cloudevent::read_out(payload),
                _ => Err(native_error.to_string()),
            };
        }
    };
    Ok(Echoed {
        event_id: n.event_id,
        subscription_id: n.subscription_id,
        generation: n.generation,
        data_type: n.data_type,
        data: n.data,
        data_encoding: n.data_encoding,
        source: n.source,
        cloud_event: n.cloud_event,
    })
}

/// Makes attempt number `delivery.attempts + 1` of the delivery's series and says what the
/// delivery log should record: the decision is [`delivery::next_step`]'s.
///
/// `budget` is how long the caller can still wait (the dispatcher's own deadline): a `sync`
/// invocation waits at most the smaller of it and the policy's timeout.
pub async fn attempt(
    invoker: &dyn FunctionInvoker,
    allowlist: &FunctionAllowlist,
    defaults: &RetryPolicy,
    clock: &dyn Clock,
    budget: Option<Duration>,
    invocation: Invocation<'_>,
) -> Attempted {
    let delivery = invocation.delivery;
    let limits = defaults.limits(&delivery.policy);
    let started_at = clock.now();
    let started = Instant::now();
    let mut request_id = None;
    let tried = if !allowlist.allows(&delivery.function_id) {
        Tried::Failed {
            error: format!(
                "function '{}' is outside the allowlist ({}); not invoked",
                delivery.function_id,
                allowlist.describe()
            ),
            retryable: false,
        }
    } else {
        match invocation_payload(invocation) {
            Err(error) => Tried::Failed { error, retryable: false },
            Ok(body) => {
                let mode = match limits.mode {
                    DeliveryMode::Async => InvocationMode::Async,
                    DeliveryMode::Sync => {
                        InvocationMode::Sync { timeout: budget.map_or(limits.timeout, |b| b.min(limits.timeout)) }
                    }
                };
                match invoker.invoke(&delivery.function_id, &body, mode).await {
                    Ok(Invoked::Succeeded) => Tried::Succeeded,
                    Ok(Invoked::Accepted { request_id: id }) => {
                        request_id = id;
                        Tried::Invoked
                    }
                    Err(e) => Tried::Failed { error: e.message, retryable: e.retryable },
                }
            }
        }
    };
    let mut attempted = recorded_attempt(defaults, delivery, started_at, started.elapsed(), clock.now(), tried);
    if let Some(last) = attempted.delivery.history.last_mut() {
        last.request_id = request_id;
    }
    attempted
}

/// What the delivery log records of attempt number `delivery.attempts + 1`, which began at
/// `started_at`, took `duration` and ended `now` as `tried`: the attempt in the history, and the
/// next state and retry as [`delivery::next_step`] decides them. [`attempt`] ends with it; a
/// caller that could not even make the invocation (its payload unreadable) records it the same way.
pub fn recorded_attempt(
    defaults: &RetryPolicy,
    delivery: &Delivery,
    started_at: chrono::DateTime<chrono::Utc>,
    duration: Duration,
    now: chrono::DateTime<chrono::Utc>,
    tried: Tried,
) -> Attempted {
    let limits = defaults.limits(&delivery.policy);
    let number = delivery.attempts + 1;
    let result = match &tried {
        Tried::Succeeded => AttemptResult::Succeeded,
        Tried::Invoked => AttemptResult::Invoked,
        Tried::Failed { .. } => AttemptResult::Failed,
    };
    let attempt_error = match &tried {
        Tried::Failed { error, .. } => Some(truncated(error, MAX_ATTEMPT_ERROR_BYTES)),
        _ => None,
    };
    let next =
        delivery::next_step(&limits, number, delivery.series_started_at(), now, tried, delivery::random_jitter());
    let mut after = Delivery { attempts: number, updated_at: now, ..delivery.clone() };
    after.remember(Attempt {
        generation: delivery.generation,
        number,
        started_at,
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        result,
        error: attempt_error,
        request_id: None,
    });
    let retry = match next {
        Next::Settled(status) => {
            after.status = status;
            None
        }
        Next::RetryAt { at, delay, error } => {
            after.status = DeliveryStatus::Pending;
            after.last_error = Some(truncated(&error, MAX_ERROR_BYTES));
            Some(Retry { at, delay })
        }
        Next::Failed { error } => {
            after.status = DeliveryStatus::Failed;
            after.last_error = Some(truncated(&error, MAX_ERROR_BYTES));
            None
        }
    };
    Attempted { delivery: after, retry }
}

/// A delivery's last error is cut to this many bytes (a re-enqueued message must stay within the
/// room its publisher left).
pub const MAX_ERROR_BYTES: usize = 1024;
/// Each attempt in the history keeps this much of its error.
pub const MAX_ATTEMPT_ERROR_BYTES: usize = 256;

/// `text` cut to at most `max` bytes, on a character boundary, marked with `…` when cut.
pub fn truncated(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{FixedClock, RecordingInvoker};
    use crate::model::DeliveryPolicy;
    use crate::ports::UlidSource;
    use crate::{fixtures, trigger, DataType};

    fn delivery(policy: DeliveryPolicy) -> Delivery {
        let definition = fixtures::definition("orders.created");
        let mut sub = fixtures::subscription(&definition.name, "my-app-orders", Default::default());
        sub.delivery = policy;
        let t = trigger::accepted_trigger(&definition, &[std::sync::Arc::new(sub)], b"{}".to_vec(), t0(), &UlidSource);
        t.deliveries[0].clone()
    }

    fn t0() -> chrono::DateTime<chrono::Utc> {
        "2026-12-02T10:00:00Z".parse().unwrap()
    }

    async fn run(invoker: &RecordingInvoker, d: &Delivery, allowlist: &str, budget: Option<Duration>) -> Attempted {
        let data_type = DataType::default();
        let invocation = Invocation {
            delivery: d,
            data_type: &data_type,
            payload: b"{}",
            source: None,
            cloud_event: None,
            cloud_events_source: DEFAULT_CLOUD_EVENTS_SOURCE,
        };
        let allowlist = FunctionAllowlist::parse(allowlist).unwrap();
        attempt(invoker, &allowlist, &RetryPolicy::default(), &FixedClock::at(t0()), budget, invocation).await
    }

    #[tokio::test]
    async fn an_async_delivery_is_invoked_and_a_sync_one_delivered_each_attempt_in_the_history() {
        let invoker = RecordingInvoker::default();
        let async_one = run(&invoker, &delivery(DeliveryPolicy::default()), "my-app-", None).await;
        assert_eq!((async_one.delivery.status, async_one.delivery.attempts), (DeliveryStatus::Invoked, 1));
        assert_eq!(async_one.delivery.history[0].result, AttemptResult::Invoked);
        let sync = DeliveryPolicy { mode: DeliveryMode::Sync, timeout_seconds: Some(60), ..Default::default() };
        let sync_one = run(&invoker, &delivery(sync), "my-app-", Some(Duration::from_secs(20))).await;
        assert_eq!(sync_one.delivery.status, DeliveryStatus::Delivered);
        assert_eq!(
            invoker.modes(),
            [InvocationMode::Async, InvocationMode::Sync { timeout: Duration::from_secs(20) }],
            "a sync wait is bounded by the caller's budget as well as the policy's timeout"
        );
    }

    #[tokio::test]
    async fn a_failure_is_retried_under_the_policy_then_failed() {
        let invoker = RecordingInvoker::failing(2);
        let policy = DeliveryPolicy { mode: DeliveryMode::Sync, max_attempts: Some(2), ..Default::default() };
        let first = run(&invoker, &delivery(policy), "my-app-", None).await;
        assert_eq!(first.delivery.status, DeliveryStatus::Pending);
        let retry = first.retry.expect("retried");
        assert!(retry.delay >= Duration::from_millis(500) && retry.delay <= Duration::from_secs(1), "{retry:?}");
        let second = run(&invoker, &first.delivery, "my-app-", None).await;
        assert_eq!((second.delivery.status, second.delivery.attempts, second.retry), (DeliveryStatus::Failed, 2, None));
        assert_eq!(second.delivery.last_error.as_deref(), Some("attempt 2 of 2: function is throttled"));
        let numbers: Vec<_> = second.delivery.history.iter().map(|a| (a.number, a.result)).collect();
        assert_eq!(numbers, [(1, AttemptResult::Failed), (2, AttemptResult::Failed)]);
    }

    #[tokio::test]
    async fn a_function_outside_the_allowlist_is_never_invoked_and_not_retried() {
        let invoker = RecordingInvoker::default();
        let refused = run(&invoker, &delivery(DeliveryPolicy::default()), "other-app-", None).await;
        assert_eq!(refused.delivery.status, DeliveryStatus::Failed);
        assert!(refused.delivery.last_error.unwrap().contains("outside the allowlist"));
        assert!(invoker.calls().is_empty());
    }

    #[test]
    fn errors_are_cut_on_a_character_boundary() {
        assert_eq!(truncated("short", 10), "short");
        let cut = truncated(&"é".repeat(600), 1024);
        assert!(cut.len() <= 1024 && cut.ends_with('…'), "{}", cut.len());
    }
}
