//! The delivery worker: claims due deliveries from the outbox and runs them, a bounded number
//! at a time, recording every attempt.

use std::sync::Arc;
use std::time::Duration;

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
    pub lease: Duration,
    /// Woken when a trigger is accepted, so new deliveries start without waiting for a poll.
    pub wake: Arc<Notify>,
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
        let outcome = dispatch::attempt(
            self.invoker.as_ref(),
            &self.allowlist,
            &self.retry,
            self.clock.now(),
            dispatch::Invocation {
                delivery: d,
                data_type: &due.data_type,
                payload: &due.payload,
                source: due.source.as_ref(),
            },
        )
        .await;
        tracing::info!(
            event_id = %d.event_id, subscription_id = %d.subscription_id, function_id = %d.function_id,
            attempt = d.attempts + 1, outcome = ?outcome, "delivery attempt"
        );
        // If this write fails the lease runs out and the delivery is tried again: at least once.
        match self.outbox.record_attempt(&due, &outcome).await {
            Ok(Recorded::Recorded) => {}
            Ok(Recorded::ClaimLost) => tracing::warn!(
                event_id = %d.event_id, subscription_id = %d.subscription_id,
                "the attempt outlived its lease and the delivery was claimed again; its outcome is not recorded"
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
    use gateway_core::ports::TriggerSource;
    use gateway_core::ports::{DeliveryLog, SystemClock, TriggerAcceptor, UlidSource};
    use gateway_core::{AccountId, DeliveryStatus, EventDraft, EventName, FunctionId, Home, SubscriptionDraft};

    use super::*;

    async fn store_with_trigger(functions: &[&str]) -> (MemoryStore, gateway_core::EventId) {
        let store = MemoryStore::new();
        let name = EventName::parse("orders.created").unwrap();
        let draft = EventDraft { name: Some(name.clone()), ..Default::default() };
        gateway_core::events::define_event(&store, &store, &SystemClock, draft).await.unwrap();
        for f in functions {
            let draft = SubscriptionDraft {
                event: Some(name.clone()),
                function_id: FunctionId::parse(f).unwrap(),
                metadata: None,
            };
            // Written under an allowlist that admits anything, as an older configuration might have.
            let anything = FunctionAllowlist::parse("*, arn:aws:lambda:*:*:function:*").unwrap();
            gateway_core::subscriptions::subscribe(&store, &SystemClock, &UlidSource, &anything, draft).await.unwrap();
        }
        let (def, subs) = store.trigger_target(&name).await.unwrap().unwrap();
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
            },
            concurrency: 4,
            poll_interval: Duration::from_millis(5),
            lease: Duration::from_secs(5),
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
    async fn a_throttled_function_is_retried_until_delivered() {
        let (store, event_id) = store_with_trigger(&["fn-a"]).await;
        let invoker = Arc::new(RecordingInvoker::failing(2));
        let log = run_until_settled(&store, worker(&store, invoker.clone(), FunctionAllowlist::any()), event_id).await;
        assert_eq!(log[0].status, DeliveryStatus::Delivered);
        assert_eq!(log[0].attempts, 3);
        assert_eq!(invoker.calls().len(), 3);
    }

    #[tokio::test]
    async fn a_function_that_keeps_failing_is_marked_failed_with_its_error() {
        let (store, event_id) = store_with_trigger(&["fn-a"]).await;
        let invoker = Arc::new(RecordingInvoker::failing(100));
        let log = run_until_settled(&store, worker(&store, invoker.clone(), FunctionAllowlist::any()), event_id).await;
        assert_eq!(log[0].status, DeliveryStatus::Failed);
        assert_eq!(log[0].attempts, 3);
        assert!(log[0].last_error.as_deref().unwrap().contains("throttled"));
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
