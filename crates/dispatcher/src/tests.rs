//! The dispatcher's decisions, on in-memory ports.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{DateTime, Utc};
use gateway_core::fixtures;
use gateway_core::memory::MemoryRecorder;
use gateway_core::ports::{InvocationMode, InvokeError, Invoked, UlidSource};
use gateway_core::trigger::accepted_trigger;
use gateway_core::{FunctionId, Metadata, Subscription, Trigger};
use serde_json::json;

use super::*;

/// Reads of the delivery log (the memory recorder, which keeps the store contract as DynamoDB
/// does) that the tests make often.
trait LogReads {
    fn get(&self, d: &Delivery) -> Delivery;
}

impl LogReads for MemoryRecorder {
    fn get(&self, d: &Delivery) -> Delivery {
        self.delivery(&d.event_id, &d.subscription_id).expect("the delivery is recorded")
    }
}

async fn state_of(log: &MemoryRecorder, t: &Trigger) -> Option<TriggerState> {
    log.recorded_trigger(&t.event_id, &[]).await.unwrap().state
}

#[derive(Default)]
struct MemoryQueue {
    retries: Mutex<Vec<(DeliveryMessage, Duration)>>,
    dead: Mutex<Vec<DeliveryMessage>>,
    broken: Mutex<bool>,
}

#[async_trait]
impl RetryQueue for MemoryQueue {
    async fn retry_later(&self, m: &DeliveryMessage, delay: Duration) -> Result<(), QueueError> {
        if *self.broken.lock().unwrap() {
            return Err(QueueError("SQS is down".into()));
        }
        self.retries.lock().unwrap().push((m.clone(), delay));
        Ok(())
    }

    async fn dead_letter(&self, m: &DeliveryMessage) -> Result<(), QueueError> {
        self.dead.lock().unwrap().push(m.clone());
        Ok(())
    }
}

/// Invokes every function, failing (retryably) those named in `failing`; a `sync` invocation
/// succeeds, an `async` one is accepted.
#[derive(Default)]
struct ScriptedInvoker {
    failing: HashSet<String>,
    calls: Mutex<Vec<(String, serde_json::Value)>>,
    modes: Mutex<Vec<InvocationMode>>,
}

#[async_trait]
impl FunctionInvoker for ScriptedInvoker {
    async fn invoke(
        &self,
        function: &FunctionId,
        payload: &[u8],
        mode: InvocationMode,
    ) -> Result<Invoked, InvokeError> {
        let payload = serde_json::from_slice(payload).unwrap();
        self.calls.lock().unwrap().push((function.to_string(), payload));
        self.modes.lock().unwrap().push(mode);
        if self.failing.contains(function.as_str()) {
            return Err(InvokeError { message: format!("{function} is throttled"), retryable: true });
        }
        Ok(match mode {
            InvocationMode::Async => {
                Invoked::Accepted { request_id: Some(format!("req-{}", self.calls.lock().unwrap().len())) }
            }
            InvocationMode::Sync { .. } => Invoked::Succeeded,
        })
    }
}

impl ScriptedInvoker {
    fn failing(names: &[&str]) -> Self {
        Self { failing: names.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    fn called(&self) -> Vec<String> {
        self.calls.lock().unwrap().iter().map(|(f, _)| f.clone()).collect()
    }
}

struct Harness {
    log: Arc<MemoryRecorder>,
    queue: Arc<MemoryQueue>,
    invoker: Arc<ScriptedInvoker>,
    dispatcher: Dispatcher,
}

fn harness(invoker: ScriptedInvoker, allowlist: &str, max_attempts: u32) -> Harness {
    let log = Arc::new(MemoryRecorder::default());
    let queue = Arc::new(MemoryQueue::default());
    let invoker = Arc::new(invoker);
    let settings = DispatchSettings {
        allowlist: FunctionAllowlist::parse(allowlist).unwrap(),
        retry: RetryPolicy {
            max_attempts,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            ..RetryPolicy::default()
        },
        concurrency: 4,
        ..Default::default()
    };
    let dispatcher = Dispatcher::new(log.clone(), invoker.clone(), queue.clone(), settings);
    Harness { log, queue, invoker, dispatcher }
}

impl Harness {
    /// The message the trigger handler publishes for `t`, with `t` settled accepted as the
    /// handler settles it before answering 202.
    async fn published(&self, t: &Trigger) -> DeliveryMessage {
        self.log.settle_trigger(&t.event_id, &t.event, t.received_at, TriggerState::Accepted).await.unwrap();
        DeliveryMessage::for_trigger(t).unwrap()
    }

    fn at(self, now: DateTime<Utc>) -> Self {
        let clock = Arc::new(gateway_core::memory::FixedClock::at(now));
        Self { dispatcher: self.dispatcher.with_clock(clock), ..self }
    }
}

fn trigger(functions: &[&str]) -> Trigger {
    let definition = fixtures::definition("orders.created");
    let subscriptions: Vec<std::sync::Arc<Subscription>> = functions
        .iter()
        .map(|f| fixtures::subscription(&definition.name, f, Metadata::from_iter([("f".to_owned(), json!(f))])).into())
        .collect();
    accepted_trigger(&definition, &subscriptions, br#"{"orderId":"o-1"}"#.to_vec(), Utc::now(), &UlidSource)
}

fn batch(messages: &[&DeliveryMessage]) -> SqsEvent {
    let records: Vec<_> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"messageId": format!("msg-{i}"), "body": serde_json::to_string(m).unwrap()}))
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

#[tokio::test]
async fn every_delivery_is_invoked_with_its_payload_and_recorded_delivered() {
    // GIVEN a trigger of two subscriptions, logged as pending
    let h = harness(ScriptedInvoker::default(), "*", 3);
    let t = trigger(&["fn-a", "fn-b"]);
    h.log.record_trigger(&t).await.unwrap();
    let message = h.published(&t).await;

    // WHEN the dispatcher gets its message
    let response = h.dispatcher.handle(batch(&[&message])).await;

    // THEN both functions ran with the invocation payload and the log says invoked (async: Lambda took it)
    assert!(response.batch_item_failures.is_empty());
    let calls = h.invoker.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    for (function, payload) in &calls {
        assert_eq!(payload["data"], json!({"orderId": "o-1"}));
        assert_eq!(payload["metadata"]["f"], json!(function));
        assert_eq!(payload["eventId"], json!(t.event_id.to_string()));
    }
    for d in &t.deliveries {
        let logged = h.log.get(d);
        assert_eq!((logged.status, logged.attempts, logged.history.len()), (DeliveryStatus::Invoked, 1, 1));
    }
}

#[tokio::test]
async fn a_redelivered_message_does_not_invoke_again_what_already_ran() {
    let h = harness(ScriptedInvoker::failing(&["fn-flaky"]), "*", 3);
    let t = trigger(&["fn-a", "fn-flaky"]);
    let message = h.published(&t).await;
    h.dispatcher.handle(batch(&[&message])).await;
    assert_eq!(h.invoker.called().len(), 2);

    // SQS delivers the same message again (say the Lambda timed out after the work).
    let response = h.dispatcher.handle(batch(&[&message])).await;

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        h.invoker.called().len(),
        2,
        "fn-a was delivered and fn-flaky's first attempt was made: nothing runs again"
    );
    assert_eq!(h.queue.retries.lock().unwrap().len(), 1, "one retry, not two");
}

#[tokio::test]
async fn a_failing_delivery_is_retried_alone_with_backoff_then_dead_lettered_with_its_error() {
    let h = harness(ScriptedInvoker::failing(&["fn-flaky"]), "*", 3);
    let t = trigger(&["fn-a", "fn-flaky"]);
    let flaky = t.deliveries.iter().find(|d| d.function_id.as_str() == "fn-flaky").unwrap();
    let mut message = h.published(&t).await;

    for attempt in 1..=3u32 {
        let response = h.dispatcher.handle(batch(&[&message])).await;
        assert!(response.batch_item_failures.is_empty(), "attempt {attempt}");
        let logged = h.log.get(flaky);
        assert_eq!(logged.attempts, attempt);
        assert_eq!(logged.last_error.as_deref().map(|e| e.contains("throttled")), Some(true));
        if attempt < 3 {
            assert_eq!(logged.status, DeliveryStatus::Pending);
            let (retry, delay) = h.queue.retries.lock().unwrap().last().cloned().unwrap();
            // The backoff with jitter: within the upper half of 1 s doubling.
            let full = Duration::from_secs(1 << (attempt - 1));
            assert!(delay >= full / 2 && delay <= full, "attempt {attempt}: {delay:?}");
            assert_eq!(retry.deliveries[0].history.len(), attempt as usize, "the history travels with it");
            assert_eq!(retry.event_id, t.event_id);
            assert_eq!(retry.deliveries.len(), 1, "retried on its own");
            assert_eq!(retry.deliveries[0].subscription_id, flaky.subscription_id);
            assert_eq!(retry.deliveries[0].attempts, attempt);
            message = retry;
        } else {
            assert_eq!(logged.status, DeliveryStatus::Failed);
        }
    }
    let dead = h.queue.dead.lock().unwrap().clone();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].deliveries[0].subscription_id, flaky.subscription_id);
    assert_eq!(dead[0].deliveries[0].attempts, 3);
    assert!(dead[0].deliveries[0].last_error.as_deref().unwrap().contains("attempt 3"));
    assert_eq!(h.invoker.called().iter().filter(|f| *f == "fn-a").count(), 1, "the function that succeeded ran once");
}

#[tokio::test]
async fn a_function_outside_the_allowlist_is_failed_and_never_invoked() {
    let h = harness(ScriptedInvoker::default(), "orders-", 3);
    let t = trigger(&["orders-ship", "admin-drop"]);
    let message = h.published(&t).await;
    let response = h.dispatcher.handle(batch(&[&message])).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(h.invoker.called(), vec!["orders-ship".to_owned()]);
    let dead = h.queue.dead.lock().unwrap().clone();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].deliveries[0].last_error.as_deref().unwrap().contains("allowlist"));
}

#[tokio::test]
async fn a_retry_that_cannot_be_enqueued_fails_the_message_so_sqs_redelivers_it() {
    let h = harness(ScriptedInvoker::failing(&["fn-flaky"]), "*", 3);
    *h.queue.broken.lock().unwrap() = true;
    let t = trigger(&["fn-a", "fn-flaky"]);
    let message = h.published(&t).await;
    let response = h.dispatcher.handle(batch(&[&message])).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(response.batch_item_failures[0].item_identifier, "msg-0");

    // On redelivery, with the queue back, only the flaky one is attempted again.
    *h.queue.broken.lock().unwrap() = false;
    let response = h.dispatcher.handle(batch(&[&message])).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(h.invoker.called(), vec!["fn-a", "fn-flaky", "fn-flaky"]);
    assert_eq!(h.queue.retries.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_message_in_the_sns_envelope_is_run_like_a_raw_one() {
    // GIVEN a delivery message as SNS wraps it when raw delivery does not apply (a redrive from
    // the fan-out dead-letter queue)
    let h = harness(ScriptedInvoker::default(), "*", 3);
    let t = trigger(&["fn-a"]);
    h.log.record_trigger(&t).await.unwrap();
    let raw = serde_json::to_string(&h.published(&t).await).unwrap();
    let envelope =
        json!({"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": raw});
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "wrapped", "body": envelope.to_string()}
    ]}))
    .unwrap();

    // WHEN the dispatcher gets it
    let response = h.dispatcher.handle(event).await;

    // THEN its delivery runs and is logged invoked
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(h.invoker.called(), ["fn-a"]);
    assert_eq!(h.log.get(&t.deliveries[0]).status, DeliveryStatus::Invoked);
}

#[tokio::test]
async fn a_message_that_is_not_a_delivery_message_is_left_to_the_redrive_policy() {
    let h = harness(ScriptedInvoker::default(), "*", 3);
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "bad", "body": "{\"not\": \"ours\"}"}
    ]}))
    .unwrap();
    let response = h.dispatcher.handle(event).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert!(h.invoker.called().is_empty());
}

#[tokio::test]
async fn a_message_of_a_trigger_not_settled_yet_is_held_back_and_runs_once_it_is_accepted() {
    // GIVEN a freshly published message whose trigger handler has not settled it yet
    let h = harness(ScriptedInvoker::default(), "*", 3);
    let t = trigger(&["fn-a"]);
    let message = DeliveryMessage::for_trigger(&t).unwrap();

    // WHEN the dispatcher gets it within the acceptance window
    let response = h.dispatcher.handle(batch(&[&message])).await;

    // THEN nothing runs, and the same message is put back for a few seconds
    assert!(response.batch_item_failures.is_empty());
    assert!(h.invoker.called().is_empty());
    let (held, wait) = h.queue.retries.lock().unwrap().pop().unwrap();
    assert!(held.unconfirmed && held.deliveries == message.deliveries);
    assert!((HOLD_BACK_MIN..=HOLD_BACK_MAX).contains(&wait), "{wait:?}");
    assert_eq!(state_of(&h.log, &t).await, None, "the window is not over: the handler may still accept it");

    // AND once the handler has settled it accepted, the held message runs
    h.log.settle_trigger(&t.event_id, &t.event, t.received_at, TriggerState::Accepted).await.unwrap();
    h.dispatcher.handle(batch(&[&held])).await;
    assert_eq!(h.invoker.called(), ["fn-a"]);
}

#[tokio::test]
async fn a_message_of_a_trigger_never_accepted_is_settled_abandoned_after_the_window_and_dropped() {
    // GIVEN a message of a trigger whose handler failed after publishing it (the client got an error)
    let t = trigger(&["fn-a", "fn-b"]);
    let h = harness(ScriptedInvoker::default(), "*", 3).at(t.received_at + chrono::Duration::seconds(61));
    let message = DeliveryMessage::for_trigger(&t).unwrap();

    // WHEN the dispatcher gets it after the acceptance window
    let response = h.dispatcher.handle(batch(&[&message])).await;

    // THEN the trigger is settled abandoned, so its handler can no longer accept it, and nothing runs
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(state_of(&h.log, &t).await, Some(TriggerState::Abandoned));
    assert!(h.invoker.called().is_empty());
    assert!(h.queue.retries.lock().unwrap().is_empty() && h.queue.dead.lock().unwrap().is_empty());
    assert_eq!(h.log.delivery_count(), 0, "nothing is logged of it");
}

#[tokio::test]
async fn a_message_of_a_trigger_settled_abandoned_is_dropped_at_once() {
    let h = harness(ScriptedInvoker::default(), "*", 3);
    let t = trigger(&["fn-a"]);
    h.log.settle_trigger(&t.event_id, &t.event, t.received_at, TriggerState::Abandoned).await.unwrap();
    let response = h.dispatcher.handle(batch(&[&DeliveryMessage::for_trigger(&t).unwrap()])).await;
    assert!(response.batch_item_failures.is_empty());
    assert!(h.invoker.called().is_empty());
    assert!(h.queue.retries.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_message_from_before_triggers_were_settled_runs_as_it_did() {
    // GIVEN a message in the queue from before the upgrade: no `unconfirmed`, no settled state
    let h = harness(ScriptedInvoker::default(), "*", 3);
    let t = trigger(&["fn-a"]);
    let mut old = serde_json::to_value(DeliveryMessage::for_trigger(&t).unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("unconfirmed");
    let event: SqsEvent =
        serde_json::from_value(json!({"Records": [{"messageId": "old", "body": old.to_string()}]})).unwrap();

    let response = h.dispatcher.handle(event).await;

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(h.invoker.called(), ["fn-a"]);
    assert_eq!(state_of(&h.log, &t).await, None, "an old message settles nothing");
}

#[tokio::test]
async fn re_enqueued_and_dead_lettered_messages_carry_their_acceptance() {
    let h = harness(ScriptedInvoker::failing(&["fn-flaky"]), "*", 2);
    let t = trigger(&["fn-flaky"]);
    let message = h.published(&t).await;
    h.dispatcher.handle(batch(&[&message])).await;
    let (retry, _) = h.queue.retries.lock().unwrap().last().cloned().unwrap();
    assert!(!retry.unconfirmed, "a retry's trigger is known to be accepted");
    h.dispatcher.handle(batch(&[&retry])).await;
    assert!(!h.queue.dead.lock().unwrap()[0].unconfirmed);
}

/// A log whose reads do not see the trigger's state yet: as when the trigger handler settles
/// it between the dispatcher's read and its own settle.
struct SettledMeanwhile(MemoryRecorder);

#[async_trait]
impl DeliveryRecorder for SettledMeanwhile {
    async fn settle_trigger(
        &self,
        event_id: &gateway_core::EventId,
        event: &gateway_core::EventName,
        received_at: DateTime<Utc>,
        want: TriggerState,
    ) -> gateway_core::error::Result<TriggerState> {
        self.0.settle_trigger(event_id, event, received_at, want).await
    }
    async fn record_trigger(&self, t: &Trigger) -> gateway_core::error::Result<()> {
        self.0.record_trigger(t).await
    }
    async fn record_delivery(&self, d: &Delivery) -> gateway_core::error::Result<()> {
        self.0.record_delivery(d).await
    }
    async fn start_series(&self, d: &Delivery) -> gateway_core::error::Result<bool> {
        self.0.start_series(d).await
    }
    async fn take_over_series(
        &self,
        d: &Delivery,
        now: chrono::DateTime<chrono::Utc>,
    ) -> gateway_core::error::Result<bool> {
        self.0.take_over_series(d, now).await
    }
    async fn recorded_trigger(
        &self,
        event_id: &gateway_core::EventId,
        subscriptions: &[gateway_core::SubscriptionId],
    ) -> gateway_core::error::Result<gateway_core::ports::RecordedTrigger> {
        let mut recorded = self.0.recorded_trigger(event_id, subscriptions).await?;
        recorded.state = None;
        Ok(recorded)
    }
}

#[tokio::test]
async fn a_trigger_accepted_just_before_the_dispatcher_would_abandon_it_runs() {
    // GIVEN a message past the window whose handler settles it accepted after the dispatcher read
    let t = trigger(&["fn-a"]);
    let log = Arc::new(SettledMeanwhile(MemoryRecorder::new()));
    log.0.settle_trigger(&t.event_id, &t.event, t.received_at, TriggerState::Accepted).await.unwrap();
    let invoker = Arc::new(ScriptedInvoker::default());
    let settings = DispatchSettings { allowlist: FunctionAllowlist::parse("*").unwrap(), ..Default::default() };
    let dispatcher = Dispatcher::new(log.clone(), invoker.clone(), Arc::new(MemoryQueue::default()), settings)
        .with_clock(Arc::new(gateway_core::memory::FixedClock::at(t.received_at + chrono::Duration::seconds(90))));

    // WHEN the dispatcher gets it
    dispatcher.handle(batch(&[&DeliveryMessage::for_trigger(&t).unwrap()])).await;

    // THEN its settle answers "accepted", and the delivery runs
    assert_eq!(invoker.called(), ["fn-a"]);
}

#[tokio::test]
async fn a_message_older_than_any_trigger_state_is_dead_lettered_not_guessed_at() {
    // GIVEN an unconfirmed message redriven weeks late, its trigger's state long expired
    let t = trigger(&["fn-a"]);
    let late = t.received_at + chrono::Duration::days(36);
    let h = harness(ScriptedInvoker::default(), "*", 3).at(late);

    // WHEN the dispatcher gets it
    let response = h.dispatcher.handle(batch(&[&DeliveryMessage::for_trigger(&t).unwrap()])).await;

    // THEN it is neither run nor dropped, and nothing is settled: it waits in the DLQ with why
    assert!(response.batch_item_failures.is_empty());
    assert!(h.invoker.called().is_empty());
    assert_eq!(state_of(&h.log, &t).await, None);
    let dead = h.queue.dead.lock().unwrap().clone();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].deliveries[0].last_error.as_deref().unwrap().contains("acceptance is no longer known"));
}

/// A log that keeps what `record_failed` was given, as the DynamoDB store keeps the payload.
#[derive(Default)]
struct KeepingLog {
    log: MemoryRecorder,
    kept: Mutex<Vec<(Delivery, DeliveryMessage)>>,
}

#[async_trait]
impl DeliveryRecorder for KeepingLog {
    async fn settle_trigger(
        &self,
        event_id: &gateway_core::EventId,
        event: &gateway_core::EventName,
        received_at: DateTime<Utc>,
        want: TriggerState,
    ) -> gateway_core::error::Result<TriggerState> {
        self.log.settle_trigger(event_id, event, received_at, want).await
    }
    async fn record_trigger(&self, t: &Trigger) -> gateway_core::error::Result<()> {
        self.log.record_trigger(t).await
    }
    async fn record_delivery(&self, d: &Delivery) -> gateway_core::error::Result<()> {
        self.log.record_delivery(d).await
    }
    async fn start_series(&self, d: &Delivery) -> gateway_core::error::Result<bool> {
        self.log.start_series(d).await
    }
    async fn take_over_series(
        &self,
        d: &Delivery,
        now: chrono::DateTime<chrono::Utc>,
    ) -> gateway_core::error::Result<bool> {
        self.log.take_over_series(d, now).await
    }
    async fn record_failed(&self, d: &Delivery, m: &DeliveryMessage) -> gateway_core::error::Result<()> {
        self.kept.lock().unwrap().push((d.clone(), m.clone()));
        self.log.record_delivery(d).await
    }
    async fn recorded_trigger(
        &self,
        event_id: &gateway_core::EventId,
        subscriptions: &[gateway_core::SubscriptionId],
    ) -> gateway_core::error::Result<gateway_core::ports::RecordedTrigger> {
        self.log.recorded_trigger(event_id, subscriptions).await
    }
}

fn sync_trigger(function: &str, max_attempts: u32) -> Trigger {
    let definition = fixtures::definition("orders.created");
    let subscription = Subscription {
        delivery: gateway_core::DeliveryPolicy {
            mode: DeliveryMode::Sync,
            max_attempts: Some(max_attempts),
            ..Default::default()
        },
        ..fixtures::subscription(&definition.name, function, Metadata::new())
    };
    accepted_trigger(&definition, &[subscription.into()], br#"{"orderId":"o-1"}"#.to_vec(), Utc::now(), &UlidSource)
}

#[tokio::test]
async fn a_sync_delivery_is_invoked_synchronously_and_recorded_delivered() {
    let h = harness(ScriptedInvoker::default(), "*", 3);
    let t = sync_trigger("fn-a", 2);
    let message = h.published(&t).await;
    let response = h.dispatcher.handle_before(batch(&[&message]), Some(Instant::now() + Duration::from_secs(60))).await;
    assert!(response.batch_item_failures.is_empty());
    let logged = h.log.get(&t.deliveries[0]);
    assert_eq!((logged.status, logged.attempts), (DeliveryStatus::Delivered, 1));
    let modes = h.invoker.modes.lock().unwrap().clone();
    // Waited at most the policy's timeout (the default 30 s), well within the deadline.
    assert_eq!(modes, [InvocationMode::Sync { timeout: Duration::from_secs(30) }]);
}

#[tokio::test]
async fn a_sync_attempt_that_cannot_be_waited_out_is_put_back_without_counting_it() {
    // GIVEN a batch whose invocation has spent its time on others: 15 s left, 5 after the margin
    let h = harness(ScriptedInvoker::default(), "*", 3);
    let t = sync_trigger("fn-a", 2);
    let message = h.published(&t).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let time = Budget { deadline, whole: Duration::from_secs(890) };

    // WHEN its sync delivery (30 s timeout) comes up
    let ok = h
        .dispatcher
        .run_delivery(&message, &message.deliveries[0], None, Ok(br#"{"orderId":"o-1"}"#), Some(&time))
        .await;

    // THEN it is not invoked but put back as it came, its attempt not counted
    assert!(ok);
    assert!(h.invoker.called().is_empty());
    let (again, delay) = h.queue.retries.lock().unwrap().pop().unwrap();
    assert_eq!((again.deliveries[0].attempts, delay), (0, Duration::ZERO));
    assert!(h.log.delivery(&t.event_id, &t.deliveries[0].subscription_id).is_none(), "nothing recorded");
}

#[tokio::test]
async fn a_sync_timeout_longer_than_any_invocation_gets_the_whole_batch_time_rather_than_waiting_forever() {
    let time = Budget::new(Instant::now() + Duration::from_secs(900), Instant::now());
    assert!(time.fits(Duration::from_secs(900)), "a fresh batch gives it all it has");
    let spent = Budget { deadline: Instant::now() + Duration::from_secs(500), whole: Duration::from_secs(890) };
    assert!(!spent.fits(Duration::from_secs(900)) && spent.fits(Duration::from_secs(300)));
}

#[tokio::test]
async fn a_failed_delivery_is_dead_lettered_and_recorded_with_its_payload_kept() {
    let log = Arc::new(KeepingLog::default());
    let queue = Arc::new(MemoryQueue::default());
    let invoker = Arc::new(ScriptedInvoker::failing(&["fn-bad"]));
    let settings = DispatchSettings { allowlist: FunctionAllowlist::parse("*").unwrap(), ..Default::default() };
    let dispatcher = Dispatcher::new(log.clone(), invoker.clone(), queue.clone(), settings);
    let t = sync_trigger("fn-bad", 1);
    log.settle_trigger(&t.event_id, &t.event, t.received_at, TriggerState::Accepted).await.unwrap();

    dispatcher.handle(batch(&[&DeliveryMessage::for_trigger(&t).unwrap()])).await;

    let kept = log.kept.lock().unwrap().clone();
    assert_eq!(kept.len(), 1);
    let (failed, message) = &kept[0];
    assert_eq!((failed.status, failed.attempts), (DeliveryStatus::Failed, 1));
    assert_eq!(message.payload().unwrap(), br#"{"orderId":"o-1"}"#);
    let dead = queue.dead.lock().unwrap().clone();
    assert!(dead[0].deliveries[0].last_error.as_deref().unwrap().contains("fn-bad is throttled"));
}

#[tokio::test]
async fn a_dead_letter_moved_back_to_the_queue_runs_as_a_new_series_and_only_once() {
    // GIVEN a delivery that failed its only attempt, its dead letter in hand
    let h = harness(ScriptedInvoker::failing(&["fn-a"]), "*", 1);
    let t = trigger(&["fn-a"]);
    let message = h.published(&t).await;
    h.dispatcher.handle(batch(&[&message])).await;
    let dead = h.queue.dead.lock().unwrap().pop().unwrap();
    assert_eq!(h.log.get(&t.deliveries[0]).status, DeliveryStatus::Failed);

    // WHEN the operator moves it back to the delivery queue (SQS's redrive), twice by mistake
    h.dispatcher.handle(batch(&[&dead])).await;
    h.dispatcher.handle(batch(&[&dead])).await;

    // THEN it runs once more, as generation 1 with a fresh count, and the second copy is stale
    assert_eq!(h.invoker.called(), ["fn-a", "fn-a"]);
    let logged = h.log.get(&t.deliveries[0]);
    assert_eq!((logged.generation, logged.attempts, logged.status), (1, 1, DeliveryStatus::Failed));
    assert!(logged.redriven_at.is_some());
    assert_eq!(logged.history.iter().map(|a| (a.generation, a.number)).collect::<Vec<_>>(), [(0, 1), (1, 1)]);
}

#[test]
fn the_skip_rule_reads_generations_before_attempts() {
    let t = trigger(&["fn-a"]);
    let message = DeliveryMessage::for_trigger(&t).unwrap();
    let entry = DeliveryEntry { attempts: 2, generation: 1, ..message.deliveries[0].clone() };
    let at = |generation, attempts, status| Delivery { generation, attempts, status, ..t.deliveries[0].clone() };
    use DeliveryStatus::*;
    let now = t.received_at;
    let skip = |recorded: Option<&Delivery>| format!("{:?}", skip(&entry, recorded, now));
    let said = |s: Skip<'_>| format!("{s:?}");
    assert_eq!(skip(None), said(Skip::No));
    assert_eq!(skip(Some(&at(2, 1, Failed))), said(Skip::Yes("a copy of an earlier series")));
    assert_eq!(skip(Some(&at(0, 9, Failed))), said(Skip::No), "the record is behind this series");
    assert_eq!(skip(Some(&at(1, 1, Invoked))), said(Skip::Yes("already handed over")));
    assert_eq!(skip(Some(&at(1, 1, Delivered))), said(Skip::Yes("already handed over")));
    assert_eq!(skip(Some(&at(1, 3, Pending))), said(Skip::Yes("its attempt was already made")));
    assert_eq!(skip(Some(&at(1, 2, Pending))), said(Skip::No));
    assert_eq!(skip(Some(&at(1, 2, Failed))), said(Skip::NewSeries));
    // a later series begun long ago and never attempted is run from this copy; a fresh one is
    // looked at again once it would be orphaned (never dropped: its starter may be dead)
    let begun = |ago: chrono::Duration| Delivery { updated_at: now - ago, ..at(2, 0, Pending) };
    let orphaned = begun(chrono::Duration::minutes(20));
    assert_eq!(skip(Some(&orphaned)), said(Skip::Resume(&orphaned)));
    assert_eq!(skip(Some(&begun(chrono::Duration::minutes(19)))), said(Skip::Later(Duration::from_secs(60))));
    // a failure Lambda reported ends the series for every copy but its own dead letter
    let reported =
        gateway_core::Reported { at: now, condition: "RetriesExhausted".into(), approximate_invoke_count: 3 };
    let reported_failed = Delivery { reported: Some(reported), ..at(1, 2, Failed) };
    assert_eq!(skip(Some(&reported_failed)), said(Skip::Yes("Lambda reported the series' outcome")));
    let dead_letter = DeliveryEntry { reported: true, ..entry.clone() };
    assert_eq!(format!("{:?}", super::skip(&dead_letter, Some(&reported_failed), now)), said(Skip::NewSeries));
    let attempted = Delivery { updated_at: now - chrono::Duration::hours(1), ..at(2, 1, Pending) };
    assert_eq!(skip(Some(&attempted)), said(Skip::Yes("a copy of an earlier series")));
}

#[tokio::test]
async fn two_copies_of_a_dead_letter_moved_back_together_begin_its_new_series_once() {
    // GIVEN a failed delivery's dead letter, and a copy of it that has just begun the new series
    // (its start written, its attempt not yet made), as two pollers running both copies at once
    let h = harness(ScriptedInvoker::failing(&["fn-a"]), "*", 1);
    let t = trigger(&["fn-a"]);
    let message = h.published(&t).await;
    h.dispatcher.handle(batch(&[&message])).await;
    let dead = h.queue.dead.lock().unwrap().pop().unwrap();
    let failed = h.log.get(&t.deliveries[0]);
    let begun = Delivery {
        generation: 1,
        attempts: 0,
        status: DeliveryStatus::Pending,
        updated_at: Utc::now(),
        ..failed.clone()
    };
    assert!(h.log.start_series(&begun).await.unwrap());
    assert!(!h.log.start_series(&begun).await.unwrap(), "a series is begun once");

    // WHEN the other copy comes
    let response = h.dispatcher.handle(batch(&[&dead])).await;

    // THEN it does not invoke again (the first copy runs it), and looks again later, in case the
    // first copy's dispatcher dies before its attempt
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(h.invoker.called(), ["fn-a"], "only the first series' attempt");
    let retries = h.queue.retries.lock().unwrap().clone();
    assert_eq!(retries.len(), 1);
    assert!(retries[0].1 <= crate::queue::MAX_DELAY && retries[0].1 > Duration::from_secs(600), "{:?}", retries[0].1);
    assert_eq!(h.log.get(&t.deliveries[0]).generation, 1);
}

#[tokio::test]
async fn a_series_whose_starter_died_before_its_attempt_is_run_by_the_next_copy() {
    // GIVEN a dead letter moved back, whose new series was begun 25 minutes ago by a dispatcher
    // that died before its attempt (the record pending at generation 1, no attempt)
    let h = harness(ScriptedInvoker::default(), "*", 3);
    let t = trigger(&["fn-a"]);
    let message = h.published(&t).await;
    let failed = Delivery { status: DeliveryStatus::Failed, attempts: 3, ..t.deliveries[0].clone() };
    h.log.record_delivery(&failed).await.unwrap();
    let dead = message.accepted_with(vec![DeliveryEntry::of(&failed)]);
    let long_ago = Utc::now() - chrono::Duration::minutes(25);
    let begun = Delivery {
        generation: 1,
        attempts: 0,
        status: DeliveryStatus::Pending,
        updated_at: long_ago,
        redriven_at: Some(long_ago),
        ..failed
    };
    assert!(h.log.start_series(&begun).await.unwrap());

    // WHEN SQS delivers the dead letter again (its first receive was never deleted)
    h.dispatcher.handle(batch(&[&dead])).await;

    // THEN the orphaned series runs: nothing is lost
    assert_eq!(h.invoker.called(), ["fn-a"]);
    let logged = h.log.get(&t.deliveries[0]);
    assert_eq!((logged.generation, logged.attempts, logged.status), (1, 1, DeliveryStatus::Invoked));
}

#[tokio::test]
async fn an_old_format_message_without_type_or_version_is_still_run() {
    // GIVEN a version-1 message as the dispatcher of before generations re-enqueued it
    let h = harness(ScriptedInvoker::default(), "*", 3);
    let t = trigger(&["fn-a"]);
    let body = json!({
        "eventId": t.event_id.to_string(), "event": "orders.created", "receivedAt": t.received_at,
        "dataType": "application/json", "data": {"orderId": "o-1"},
        "deliveries": [{"subscriptionId": t.deliveries[0].subscription_id.to_string(), "functionId": "fn-a",
                        "metadata": {}, "attempts": 1, "lastError": "throttled"}]
    });
    let event: SqsEvent =
        serde_json::from_value(json!({"Records": [{"messageId": "v1", "body": body.to_string()}]})).unwrap();

    let response = h.dispatcher.handle(event).await;

    // THEN it runs as attempt 2 of generation 0, under the default policy
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(h.invoker.called(), ["fn-a"]);
    let logged = h.log.get(&t.deliveries[0]);
    assert_eq!((logged.generation, logged.attempts, logged.status), (0, 2, DeliveryStatus::Invoked));
}

#[tokio::test]
async fn a_message_of_a_newer_version_or_another_type_is_left_to_the_redrive_policy() {
    let h = harness(ScriptedInvoker::default(), "*", 3);
    let t = trigger(&["fn-a"]);
    let text = serde_json::to_string(&h.published(&t).await).unwrap();
    let newer = text.replace(r#""version":2"#, r#""version":3"#);
    let foreign = text.replace("gateway.delivery", "billing.invoice");
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "newer", "body": newer}, {"messageId": "foreign", "body": foreign}
    ]}))
    .unwrap();
    let response = h.dispatcher.handle(event).await;
    assert_eq!(response.batch_item_failures.len(), 2);
    assert!(h.invoker.called().is_empty());
}

/// The invocation record Lambda sends a destination for the payload the function was invoked
/// with (the shape of the AWS documentation's example).
fn invocation_record(payload: &serde_json::Value, condition: &str, request_id: &str) -> String {
    let failed = condition != "Success";
    json!({
        "version": "1.0",
        "timestamp": "2026-12-02T10:00:05.568Z",
        "requestContext": {
            "requestId": request_id,
            "functionArn": format!("arn:aws:lambda:us-east-1:123456789012:function:{}:$LATEST", payload["functionId"].as_str().unwrap()),
            "condition": condition,
            "approximateInvokeCount": if failed { 3 } else { 1 }
        },
        "requestPayload": payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": if failed { "Unhandled" } else { "" }},
        "responsePayload": if failed { json!({"errorType": "Error", "errorMessage": "boom"}) } else { json!(null) }
    })
    .to_string()
}

#[tokio::test]
async fn lambdas_report_of_an_async_delivery_settles_it_and_a_reported_failure_can_be_moved_back() {
    use crate::outcome::{Handled, OutcomeRecorder};
    let home = gateway_core::Home::new("us-east-1", Some(gateway_core::AccountId::parse("123456789012").unwrap()));
    // GIVEN two async deliveries the dispatcher recorded invoked
    let h = harness(ScriptedInvoker::default(), "*", 3);
    let t = trigger(&["fn-ok", "fn-bad"]);
    let message = h.published(&t).await;
    h.dispatcher.handle(batch(&[&message])).await;
    let outcomes = OutcomeRecorder::new(h.log.clone(), h.queue.clone(), home);
    let calls = h.invoker.calls.lock().unwrap().clone();
    let payload_of = |f: &str| calls.iter().find(|(name, _)| name == f).unwrap().1.clone();
    assert_eq!(
        (payload_of("fn-ok")["generation"].clone(), payload_of("fn-ok")["attempt"].clone()),
        (json!(0), json!(1))
    );

    // (Lambda names each invocation; its record names it again)
    let request_of = |d: &Delivery| h.log.get(d).history.last().and_then(|a| a.request_id.clone()).expect("an id");
    let (ok_id, bad_id) = (request_of(&t.deliveries[0]), request_of(&t.deliveries[1]));

    // WHEN Lambda reports one succeeded and the other failed after its retries
    let ok = outcomes.record(&invocation_record(&payload_of("fn-ok"), "Success", &ok_id)).await;
    let bad = outcomes.record(&invocation_record(&payload_of("fn-bad"), "RetriesExhausted", &bad_id)).await;

    // THEN the log says so, the failure with Lambda's reason, dead-lettered with its payload
    assert_eq!((ok, bad), (Handled::Recorded(DeliveryStatus::Delivered), Handled::Recorded(DeliveryStatus::Failed)));
    let (d_ok, d_bad) = (h.log.get(&t.deliveries[0]), h.log.get(&t.deliveries[1]));
    assert_eq!(
        (d_ok.status, d_ok.reported.as_ref().unwrap().condition.as_str()),
        (DeliveryStatus::Delivered, "Success")
    );
    assert_eq!(
        d_bad.last_error.as_deref(),
        Some("Lambda gave up on the async invocation (RetriesExhausted) after 3 runs: Error: boom (Unhandled function error)")
    );
    let dead = h.queue.dead.lock().unwrap().clone();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload().unwrap(), br#"{"orderId":"o-1"}"#);

    // AND the same record again, a late dispatcher write, or a record of another function change nothing
    assert_eq!(
        outcomes.record(&invocation_record(&payload_of("fn-ok"), "Success", &ok_id)).await,
        Handled::Ignored(gateway_core::outcome::Ignored::AlreadyReported.as_str().into())
    );
    h.log.record_delivery(&Delivery { status: DeliveryStatus::Invoked, reported: None, ..d_ok.clone() }).await.unwrap();
    assert_eq!(h.log.get(&d_ok).status, DeliveryStatus::Delivered);
    let mut forged = payload_of("fn-ok");
    forged["functionId"] = json!("fn-other");
    assert!(matches!(outcomes.record(&invocation_record(&forged, "Success", &ok_id)).await, Handled::Ignored(_)));
    // (another subscriber's role, which may send to the queue, knows neither invocation's id)
    let guessed = invocation_record(&payload_of("fn-bad"), "Success", "req-guessed");
    let unknown = gateway_core::outcome::Ignored::UnknownInvocation.as_str();
    assert_eq!(outcomes.record(&guessed).await, Handled::Ignored(unknown.into()));

    // AND the dead letter, moved back to the delivery queue, runs the failed one as a new series
    h.dispatcher.handle(batch(&[&dead[0]])).await;
    let again = h.log.get(&d_bad);
    assert_eq!((again.generation, again.status, again.reported.as_ref()), (1, DeliveryStatus::Invoked, None));
    assert_eq!(h.invoker.called().iter().filter(|f| *f == "fn-bad").count(), 2);
}

#[tokio::test]
async fn records_that_are_not_the_gateways_are_dropped_not_delivered_again() {
    use crate::outcome::OutcomeRecorder;
    let home = gateway_core::Home::new("us-east-1", Some(gateway_core::AccountId::parse("123456789012").unwrap()));
    let h = harness(ScriptedInvoker::default(), "*", 3);
    let outcomes = OutcomeRecorder::new(h.log.clone(), h.queue.clone(), home);
    let records = serde_json::from_value::<SqsEvent>(json!({"Records": [
        {"messageId": "m-1", "body": "{\"not\": \"a record\"}"},
        {"messageId": "m-2"}
    ]}))
    .unwrap();
    assert!(outcomes.handle(records).await.batch_item_failures.is_empty(), "dropped, not retried forever");
}

#[tokio::test]
async fn a_message_whose_data_does_not_read_back_fails_its_delivery_without_invoking_and_is_dead_lettered() {
    // GIVEN a message whose base64 data is not base64 (written by hand, or damaged)
    let h = harness(ScriptedInvoker::default(), "*", 3);
    let t = trigger(&["fn-a"]);
    let mut message = h.published(&t).await;
    message.data_encoding = Some("base64".into());
    message.data = serde_json::value::RawValue::from_string("\"%%% not base64\"".into()).unwrap();

    // WHEN it is dispatched
    let response = h.dispatcher.handle(batch(&[&message])).await;

    // THEN nothing is invoked, and the delivery fails at once (no retry reads it better), with why
    assert!(response.batch_item_failures.is_empty());
    assert!(h.invoker.called().is_empty());
    let logged = h.log.get(&t.deliveries[0]);
    assert_eq!((logged.status, logged.attempts, logged.history.len()), (DeliveryStatus::Failed, 1, 1));
    assert!(logged.last_error.as_deref().unwrap_or_default().contains("cannot be read"), "{logged:?}");
    assert_eq!(h.queue.dead.lock().unwrap().len(), 1);
}
