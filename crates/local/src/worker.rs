//! The delivery worker: claims due deliveries from the outbox and runs them, a bounded number
//! at a time, recording every attempt.

use std::sync::Arc;
use std::time::Duration;

use gateway_core::delivery::TIMEOUT_SECONDS;
use gateway_core::dispatch::{self, RetryPolicy};
use gateway_core::ports::{Clock, DeliveryOutbox, DueDelivery, FunctionInvoker, Recorded};
use gateway_core::FunctionAllowlist;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub struct Worker {
    pub outbox: Arc<dyn DeliveryOutbox>,
    pub invoker: Arc<dyn FunctionInvoker>,
    pub clock: Arc<dyn Clock>,
    pub allowlist: FunctionAllowlist,
    pub retry: RetryPolicy,
    pub concurrency: usize,
    pub poll_interval: Duration,
    /// How long a claim holds a delivery: longer than any invocation it starts ([`claim_lease`]).
    pub lease: Duration,
    /// Woken when a trigger is accepted, so new deliveries start without waiting for a poll.
    pub wake: Arc<Notify>,
    /// The `source` of the CloudEvents it sends (`cloudevents` format).
    pub cloud_events_source: String,
}

/// The lease every claim is made with: the longest invocation the worker may start, and a
/// margin (`invoke_timeout`, an async invoke's limit) to record its outcome.
///
/// A claim whose lease runs out while its invocation still runs lets the next poll claim and
/// invoke the delivery again, beside it, and the first outcome is then not recorded. A `sync`
/// invocation waits for the function, up to its policy's `timeoutSeconds` (at most 900 s, Lambda's
/// own limit) or the gateway's default: so the lease outlasts the longest of them. Claims are made
/// in batches before their policies are read, hence one lease for all, the longest. A long lease
/// delays nothing after a crash: one gateway holds the data folder, and it releases every claim
/// when it starts.
pub fn claim_lease(retry: &RetryPolicy, invoke_timeout: Duration) -> Duration {
    let longest_sync = Duration::from_secs((*TIMEOUT_SECONDS.end()).into()).max(retry.timeout);
    longest_sync.max(invoke_timeout) + invoke_timeout
}

impl Worker {
    /// Runs until `shutdown`, then waits for the invocations in flight to be recorded.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.concurrency));
        let mut in_flight = JoinSet::new();
        loop {
            let free = permits.available_permits();
            let due = if free == 0 {
                Vec::new()
            } else {
                match this.outbox.claim_due(this.clock.now(), free as u32, this.lease).await {
                    Ok(due) => due,
                    Err(error) => {
                        tracing::error!(%error, "cannot read the outbox; retrying");
                        Vec::new()
                    }
                }
            };
            let claimed = due.len();
            for delivery in due {
                let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
                let this = this.clone();
                in_flight.spawn(async move {
                    this.deliver(delivery).await;
                    drop(permit);
                });
            }
            while in_flight.try_join_next().is_some() {}
            if claimed > 0 && claimed == free {
                continue; // more may be due right now
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = this.wake.notified() => {}
                _ = tokio::time::sleep(this.poll_interval) => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        }
        tracing::info!(in_flight = in_flight.len(), "delivery worker stopping; waiting for invocations in flight");
        while in_flight.join_next().await.is_some() {}
    }

    async fn deliver(&self, due: DueDelivery) {
        let d = &due.delivery;
        let attempted = dispatch::attempt(
            self.invoker.as_ref(),
            &self.allowlist,
            &self.retry,
            self.clock.as_ref(),
            // The lease outlasts every invocation (`claim_lease`): no deadline of the worker's own.
            None,
            dispatch::Invocation {
                delivery: d,
                data_type: &due.data_type,
                payload: &due.payload,
                source: due.source.as_ref(),
                cloud_event: due.cloud_event.as_ref(),
                cloud_events_source: &self.cloud_events_source,
            },
        )
        .await;
        let after = &attempted.delivery;
        let attempt = after.history.last();
        tracing::info!(
            event_id = %d.event_id, subscription_id = %d.subscription_id, function_id = %d.function_id,
            mode = d.policy.mode.as_str(), generation = d.generation, attempt = after.attempts,
            result = ?attempt.map(|a| a.result), duration_ms = attempt.map(|a| a.duration_ms),
            status = after.status.as_str(), retry_in_ms = attempted.retry.map(|r| r.delay.as_millis() as u64),
            error = attempt.and_then(|a| a.error.as_deref()), "delivery attempt"
        );
        // If this write fails the lease runs out and the delivery is tried again: at least once.
        match self.outbox.record_attempt(&due, &attempted).await {
            Ok(Recorded::Recorded) => {}
            Ok(Recorded::ClaimLost) => tracing::warn!(
                event_id = %d.event_id, subscription_id = %d.subscription_id,
                "the attempt outlived its lease and the delivery was claimed again, or redriven; its outcome is not recorded"
            ),
            Err(error) => {
                tracing::error!(%error, event_id = %d.event_id, subscription_id = %d.subscription_id, "cannot record a delivery attempt")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gateway_core::memory::{MemoryStore, RecordingInvoker};
    use gateway_core::ports::InvocationMode;
    use gateway_core::ports::TriggerSource;
    use gateway_core::ports::{DeliveryLog, SystemClock, TriggerAcceptor, UlidSource};
    use gateway_core::{
        AccountId, AttemptResult, DeliveryMode, DeliveryPolicy, DeliveryStatus, EventDraft, EventName, FunctionId,
        Home, SubscriptionDraft,
    };

    use super::*;

    async fn store_with_trigger(functions: &[&str]) -> (MemoryStore, gateway_core::EventId) {
        let subscriptions: Vec<_> = functions.iter().map(|f| (*f, None)).collect();
        store_with_subscriptions(&subscriptions).await
    }

    /// A store with one trigger of `orders.created`, to which each function is subscribed with
    /// its delivery policy (the default when none).
    async fn store_with_subscriptions(
        subscriptions: &[(&str, Option<DeliveryPolicy>)],
    ) -> (MemoryStore, gateway_core::EventId) {
        let store = MemoryStore::new();
        let name = EventName::parse("orders.created").unwrap();
        let draft = EventDraft { name: Some(name.clone()), ..Default::default() };
        gateway_core::events::define_event(&store, &store, &SystemClock, draft).await.unwrap();
        for (f, delivery) in subscriptions {
            let draft = SubscriptionDraft {
                event: Some(name.clone()),
                function_id: FunctionId::parse(f).unwrap(),
                metadata: None,
                filter: None,
                delivery: *delivery,
                format: None,
            };
            // Written under an allowlist that admits anything, as an older configuration might have.
            let anything = FunctionAllowlist::parse("*, arn:aws:lambda:*:*:function:*").unwrap();
            gateway_core::subscriptions::subscribe(&store, &SystemClock, &UlidSource, &anything, draft).await.unwrap();
        }
        let gateway_core::ports::TriggerTarget { definition: def, subscriptions: subs } =
            store.trigger_target(&name).await.unwrap().unwrap();
        let trigger =
            gateway_core::trigger::accepted_trigger(&def, &subs, b"{}".to_vec(), SystemClock.now(), &UlidSource);
        store.accept(&trigger, None).await.unwrap();
        (store, trigger.event_id)
    }

    fn worker(store: &MemoryStore, invoker: Arc<RecordingInvoker>, allowlist: FunctionAllowlist) -> Worker {
        Worker {
            outbox: Arc::new(store.clone()),
            invoker,
            clock: Arc::new(SystemClock),
            allowlist,
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
                max_age: Duration::from_secs(3600),
                timeout: Duration::from_secs(30),
            },
            concurrency: 4,
            poll_interval: Duration::from_millis(5),
            lease: Duration::from_secs(5),
            cloud_events_source: gateway_core::dispatch::DEFAULT_CLOUD_EVENTS_SOURCE.to_owned(),
            wake: Arc::new(Notify::new()),
        }
    }

    async fn run_until_settled(
        store: &MemoryStore,
        worker: Worker,
        event_id: gateway_core::EventId,
    ) -> Vec<gateway_core::Delivery> {
        let stop = CancellationToken::new();
        let task = tokio::spawn(worker.run(stop.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let log = store.deliveries_of_trigger(&event_id).await.unwrap().unwrap();
            if log.iter().all(|d| d.status != DeliveryStatus::Pending) || tokio::time::Instant::now() > deadline {
                stop.cancel();
                task.await.unwrap();
                return log;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_throttled_function_is_retried_until_lambda_takes_the_event() {
        let (store, event_id) = store_with_trigger(&["fn-a"]).await;
        let invoker = Arc::new(RecordingInvoker::failing(2));
        let log = run_until_settled(&store, worker(&store, invoker.clone(), FunctionAllowlist::any()), event_id).await;
        // async (the default): Lambda accepted the event; the gateway did not see it succeed
        assert_eq!(log[0].status, DeliveryStatus::Invoked);
        assert_eq!(log[0].attempts, 3);
        assert_eq!(invoker.calls().len(), 3);
        let results: Vec<_> = log[0].history.iter().map(|a| (a.number, a.result)).collect();
        assert_eq!(results, [(1, AttemptResult::Failed), (2, AttemptResult::Failed), (3, AttemptResult::Invoked)]);
    }

    #[tokio::test]
    async fn sync_subscriptions_are_invoked_and_waited_for_under_their_timeout_and_async_ones_handed_over() {
        // GIVEN a sync subscription with a 7 s timeout, one taking the gateway's default, and an async one
        let sync = |timeout_seconds| DeliveryPolicy { mode: DeliveryMode::Sync, timeout_seconds, ..Default::default() };
        let (store, event_id) = store_with_subscriptions(&[
            ("fn-sync", Some(sync(Some(7)))),
            ("fn-sync-default", Some(sync(None))),
            ("fn-async", None),
        ])
        .await;
        // AND a function that is throttled once
        let invoker = Arc::new(RecordingInvoker::failing(1));
        // WHEN the worker runs them
        let log = run_until_settled(&store, worker(&store, invoker.clone(), FunctionAllowlist::any()), event_id).await;
        // THEN each was invoked as its policy says, every time
        let modes: Vec<(String, InvocationMode)> =
            invoker.calls().into_iter().map(|(f, _)| f.to_string()).zip(invoker.modes()).collect();
        assert_eq!(modes.len(), 4, "three deliveries, one retried: {modes:?}");
        for (function, mode) in &modes {
            let expected = match function.as_str() {
                "fn-sync" => InvocationMode::Sync { timeout: Duration::from_secs(7) },
                "fn-sync-default" => InvocationMode::Sync { timeout: Duration::from_secs(30) },
                _ => InvocationMode::Async,
            };
            assert_eq!(*mode, expected, "{function}");
        }
        // AND a sync success is delivered, an async one invoked, each attempt in the history
        let of = |f: &str| log.iter().find(|d| d.function_id.as_str() == f).unwrap().clone();
        for (function, status, result) in [
            ("fn-sync", DeliveryStatus::Delivered, AttemptResult::Succeeded),
            ("fn-sync-default", DeliveryStatus::Delivered, AttemptResult::Succeeded),
            ("fn-async", DeliveryStatus::Invoked, AttemptResult::Invoked),
        ] {
            let d = of(function);
            assert_eq!(d.status, status, "{function}");
            assert_eq!(d.history.len() as u32, d.attempts, "{function}: one entry per attempt");
            assert_eq!(d.history.last().map(|a| (a.number, a.result)), Some((d.attempts, result)), "{function}");
            assert!(d.history.iter().all(|a| a.generation == 0));
        }
        let retried: Vec<_> = log.iter().filter(|d| d.attempts == 2).collect();
        assert_eq!(retried.len(), 1, "the throttled one was tried again");
        let first = &retried[0].history[0];
        assert_eq!(first.result, AttemptResult::Failed);
        assert_eq!(first.error.as_deref(), Some("function is throttled"));
    }

    #[tokio::test]
    async fn a_subscriptions_own_max_attempts_overrides_the_gateways() {
        // GIVEN a sync subscription allowed 2 attempts (the gateway's default is 3), always failing
        let policy = DeliveryPolicy { mode: DeliveryMode::Sync, max_attempts: Some(2), ..Default::default() };
        let (store, event_id) = store_with_subscriptions(&[("fn-a", Some(policy))]).await;
        let invoker = Arc::new(RecordingInvoker::failing(100));
        let log = run_until_settled(&store, worker(&store, invoker.clone(), FunctionAllowlist::any()), event_id).await;
        // THEN it is failed after exactly 2, each in the history, the last error saying so
        assert_eq!((log[0].status, log[0].attempts, invoker.calls().len()), (DeliveryStatus::Failed, 2, 2));
        assert_eq!(log[0].last_error.as_deref(), Some("attempt 2 of 2: function is throttled"));
        assert_eq!(log[0].history.iter().map(|a| a.number).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn a_claim_outlasts_the_longest_sync_invocation_a_policy_may_ask_for() {
        let defaults = RetryPolicy::default();
        let lease = claim_lease(&defaults, Duration::from_secs(30));
        assert_eq!(lease, Duration::from_secs(910), "880 s (the longest timeoutSeconds) and a margin to record it");
        let slow_default = RetryPolicy { timeout: Duration::from_secs(1200), ..defaults };
        assert!(claim_lease(&slow_default, Duration::from_secs(30)) > Duration::from_secs(1200));
        assert!(claim_lease(&RetryPolicy::default(), Duration::from_secs(2000)) > Duration::from_secs(2000));
    }

    #[tokio::test]
    async fn a_function_that_keeps_failing_is_marked_failed_with_its_error() {
        let (store, event_id) = store_with_trigger(&["fn-a"]).await;
        let invoker = Arc::new(RecordingInvoker::failing(100));
        let log = run_until_settled(&store, worker(&store, invoker.clone(), FunctionAllowlist::any()), event_id).await;
        assert_eq!(log[0].status, DeliveryStatus::Failed);
        assert_eq!(log[0].attempts, 3);
        assert!(log[0].last_error.as_deref().unwrap().contains("throttled"));
        assert_eq!(log[0].history.len(), 3);
        assert!(log[0].history.iter().all(|a| a.result == AttemptResult::Failed));
    }

    #[tokio::test]
    async fn a_function_outside_the_allowlist_is_never_invoked() {
        let evil = "arn:aws:lambda:eu-west-1:999999999999:function:example-evil";
        let (store, event_id) = store_with_trigger(&["admin-drop", "example-ok", evil]).await;
        let invoker = Arc::new(RecordingInvoker::default());
        let home = Home::new("us-east-1", Some(AccountId::parse("123456789012").unwrap()));
        let allowlist = FunctionAllowlist::parse("example-").unwrap().at_home(home);
        let log = run_until_settled(&store, worker(&store, invoker.clone(), allowlist), event_id).await;
        let calls: Vec<String> = invoker.calls().into_iter().map(|(f, _)| f.to_string()).collect();
        assert_eq!(calls, vec!["example-ok".to_owned()]);
        for function in ["admin-drop", evil] {
            let refused = log.iter().find(|d| d.function_id.as_str() == function).unwrap();
            assert_eq!(refused.status, DeliveryStatus::Failed, "{function}");
            assert!(refused.last_error.as_deref().unwrap().contains("allowlist"), "{function}");
        }
    }

    #[tokio::test]
    async fn every_subscriber_gets_the_invocation_payload_of_the_spec() {
        let (store, event_id) = store_with_trigger(&["fn-a", "fn-b"]).await;
        let invoker = Arc::new(RecordingInvoker::default());
        run_until_settled(&store, worker(&store, invoker.clone(), FunctionAllowlist::any()), event_id).await;
        let calls = invoker.calls();
        assert_eq!(calls.len(), 2);
        for (function, body) in calls {
            let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(payload["eventId"], event_id.to_string());
            assert_eq!(payload["event"], "orders.created");
            assert_eq!(payload["functionId"], function.to_string());
            assert_eq!(payload["data"], serde_json::json!({}));
            assert_eq!(payload["dataType"], "application/json");
            assert!(payload["subscriptionId"].as_str().unwrap().starts_with("sub_"));
            assert!(payload["receivedAt"].is_string() && payload["metadata"].is_object());
        }
    }
}
