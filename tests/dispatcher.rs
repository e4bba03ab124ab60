//! The cloud data path against moto_server: a trigger accepted through DynamoDB and SNS, its
//! messages moved from the delivery queue to the dispatcher exactly as Lambda's SQS event
//! source would (a batch, then deleting only the successes), functions invoked, a failing one
//! retried alone and dead-lettered with its error, and nothing lost.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsEvent;
use end_to_end::moto::{delete, messages_in, queue_arn, receive, sqs_event, subscribed_queue, topic, Moto};
use gateway_core::dispatch::RetryPolicy;
use gateway_core::message::DeliveryMessage;
use gateway_core::ports::{
    DeliveryLog, DeliveryRecorder, FunctionInvoker, InvocationMode, InvokeError, Invoked, SystemClock, TriggerAcceptor,
    TriggerState, UlidSource,
};
use gateway_core::schema::SchemaCache;
use gateway_core::trigger::{trigger, TriggerPorts, TriggerRequest};
use gateway_core::{
    DeliveryMode, DeliveryPolicy, DeliveryStatus, EventDraft, EventName, FunctionAllowlist, FunctionId,
    SubscriptionDraft,
};
use gateway_dispatcher::{DispatchSettings, Dispatcher, SqsRetryQueue};
use gateway_dynamodb::{create_table, DynamoRedrive, DynamoStore, SqsRedriveQueue};
use gateway_sns::{SnsAcceptor, SnsPublisher, TriggerPublisher};
use serde_json::{json, Value};

/// Records every invocation and its mode; the functions named in `failing` fail every time, as
/// `LambdaInvoker` reports a function's own error.
struct RecordingInvoker {
    failing: Mutex<HashSet<&'static str>>,
    calls: Mutex<Vec<(String, Value)>>,
    modes: Mutex<Vec<InvocationMode>>,
}

#[async_trait]
impl FunctionInvoker for RecordingInvoker {
    async fn invoke(
        &self,
        function: &FunctionId,
        payload: &[u8],
        mode: InvocationMode,
    ) -> Result<Invoked, InvokeError> {
        let payload: Value = serde_json::from_slice(payload).expect("the invocation payload is JSON");
        let event_id = payload["eventId"].as_str().unwrap_or_default().to_owned();
        self.calls.lock().unwrap().push((function.to_string(), payload));
        self.modes.lock().unwrap().push(mode);
        if self.failing.lock().unwrap().contains(function.as_str()) {
            return Err(InvokeError {
                message: format!("function '{function}' failed (Unhandled): Error: fails on purpose: {event_id}"),
                retryable: true,
            });
        }
        Ok(match mode {
            InvocationMode::Async => Invoked::Accepted { request_id: None },
            InvocationMode::Sync { .. } => Invoked::Succeeded,
        })
    }
}

impl RecordingInvoker {
    fn failing(functions: &[&'static str]) -> Arc<Self> {
        Arc::new(Self {
            failing: Mutex::new(functions.iter().copied().collect()),
            calls: Mutex::default(),
            modes: Mutex::default(),
        })
    }

    fn calls_to(&self, function: &str) -> Vec<Value> {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|(f, _)| f == function).map(|(_, p)| p.clone()).collect()
    }
}

struct Cloud {
    _moto: Moto,
    store: DynamoStore,
    acceptor: SnsAcceptor,
    publisher: SnsPublisher,
    sqs: aws_sdk_sqs::Client,
    queue: String,
    queue_arn: String,
    dead_letters: String,
}

async fn cloud() -> Cloud {
    let moto = Moto::start("dispatcher");
    let config = moto.sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let (sns, sqs) = (aws_sdk_sns::Client::new(&config), aws_sdk_sqs::Client::new(&config));
    create_table(&dynamodb, "gateway").await.unwrap();
    let store = DynamoStore::new(dynamodb, "gateway");
    let topic_arn = topic(&sns, "gateway-deliveries").await;
    let queue = subscribed_queue(&sns, &sqs, &topic_arn, "deliveries").await;
    let dead_letters = sqs.create_queue().queue_name("deliveries-dlq").send().await.unwrap().queue_url.unwrap();
    let publisher = SnsPublisher::new(sns, topic_arn);
    let acceptor = SnsAcceptor::with_store(publisher.clone(), store.clone());
    Cloud {
        queue_arn: queue_arn(&sqs, &queue).await,
        _moto: moto,
        store,
        acceptor,
        publisher,
        sqs,
        queue,
        dead_letters,
    }
}

impl Cloud {
    async fn define(&self, functions: &[&str]) -> EventName {
        self.define_with(functions, None).await
    }

    /// The event, and a subscription of each function under `delivery` (the default if none).
    async fn define_with(&self, functions: &[&str], delivery: Option<DeliveryPolicy>) -> EventName {
        let name = EventName::parse("orders.created").unwrap();
        let draft = EventDraft {
            name: Some(name.clone()),
            schema: Some(json!({"type": "object", "required": ["orderId"]})),
            ..Default::default()
        };
        gateway_core::events::define_event(&self.store, &self.store, &SystemClock, draft).await.unwrap();
        for f in functions {
            let draft = SubscriptionDraft {
                event: Some(name.clone()),
                function_id: FunctionId::parse(f).unwrap(),
                metadata: Some(serde_json::Map::from_iter([("for".to_owned(), json!(f))])),
                filter: None,
                delivery,
                format: None,
            };
            gateway_core::subscriptions::subscribe(
                &self.store,
                &SystemClock,
                &UlidSource,
                &FunctionAllowlist::any(),
                draft,
            )
            .await
            .unwrap();
        }
        name
    }

    async fn trigger(&self, name: &EventName, payload: &Value) -> gateway_core::TriggerReceipt {
        self.trigger_through(&self.acceptor, name, payload).await.expect("the trigger is accepted")
    }

    async fn trigger_through(
        &self,
        acceptor: &dyn TriggerAcceptor,
        name: &EventName,
        payload: &Value,
    ) -> gateway_core::error::Result<gateway_core::TriggerReceipt> {
        let schemas = SchemaCache::default();
        let ports = TriggerPorts {
            source: &self.store,
            acceptor,
            schemas: &schemas,
            registry: &self.store,
            clock: &SystemClock,
            ids: &UlidSource,
        };
        let request = TriggerRequest {
            event: name.clone(),
            content_type: Some("application/json"),
            payload: serde_json::to_vec(payload).unwrap(),
            idempotency_key: None,
            source: None,
            cloud_event: None,
        };
        trigger(ports, request).await
    }

    /// One poll of Lambda's SQS event source: a batch to the dispatcher, then the successes
    /// deleted. Returns the event it handed over (empty when the queue had nothing).
    async fn poll(&self, dispatcher: &Dispatcher) -> SqsEvent {
        let messages = receive(&self.sqs, &self.queue, 1).await;
        let event: SqsEvent = serde_json::from_value(sqs_event(&self.queue_arn, &messages)).unwrap();
        if messages.is_empty() {
            return event;
        }
        let response = dispatcher.handle(event.clone()).await;
        let failed: HashSet<String> = response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
        for m in &messages {
            if !failed.contains(m.message_id.as_deref().unwrap()) {
                delete(&self.sqs, &self.queue, m).await;
            }
        }
        event
    }
}

#[tokio::test]
async fn deliveries_run_once_each_and_a_failing_one_is_retried_alone_then_dead_lettered_with_nothing_lost() {
    // GIVEN an event with three subscribed functions, one of which always fails
    let cloud = cloud().await;
    let name = cloud.define(&["orders-ship", "orders-bill", "orders-flaky"]).await;
    let invoker = RecordingInvoker::failing(&["orders-flaky"]);
    let settings = DispatchSettings {
        allowlist: FunctionAllowlist::parse("orders-").unwrap(),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(2),
            ..RetryPolicy::default()
        },
        concurrency: 8,
        ..Default::default()
    };
    let queue = SqsRetryQueue::new(cloud.sqs.clone(), &cloud.queue, &cloud.dead_letters);
    let dispatcher = Dispatcher::new(Arc::new(cloud.store.clone()), invoker.clone(), Arc::new(queue), settings);

    // WHEN it is triggered, and the dispatcher gets the queue's first batch
    let payload = json!({"orderId": "o-1", "total": 42.5});
    let receipt = cloud.trigger(&name, &payload).await;
    assert_eq!(receipt.deliveries.len(), 3);
    let pending = cloud.store.deliveries_of_trigger(&receipt.event_id).await.unwrap().unwrap();
    assert!(pending.iter().all(|d| d.status == DeliveryStatus::Pending), "logged as pending at once");
    let first_batch = cloud.poll(&dispatcher).await;
    assert_eq!(first_batch.records.len(), 1, "one message carries the three deliveries");

    // THEN every function ran once, with the invocation payload
    for f in ["orders-ship", "orders-bill", "orders-flaky"] {
        let calls = invoker.calls_to(f);
        assert_eq!(calls.len(), 1, "{f}");
        assert_eq!(calls[0]["data"], payload);
        assert_eq!(calls[0]["eventId"], json!(receipt.event_id.to_string()));
        assert_eq!(calls[0]["event"], json!("orders.created"));
        assert_eq!(calls[0]["metadata"], json!({"for": f}));
    }

    // WHEN SQS delivers that first message again (a timed-out batch, say), counting the receive
    let mut again = first_batch;
    for record in &mut again.records {
        record.attributes.insert("ApproximateReceiveCount".into(), "2".into());
    }
    let response = dispatcher.handle(again).await;
    assert!(response.batch_item_failures.is_empty());
    // THEN no function runs again
    assert_eq!(invoker.calls.lock().unwrap().len(), 3);

    // WHEN the retries come back from the queue (after their DelaySeconds) until none is left
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        cloud.poll(&dispatcher).await;
        if messages_in(&cloud.sqs, &cloud.queue).await == 0 && invoker.calls_to("orders-flaky").len() >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the retries did not finish");
    }

    // THEN only the failing function ran again: three attempts in all, each in a message of its own
    assert_eq!(invoker.calls_to("orders-ship").len(), 1);
    assert_eq!(invoker.calls_to("orders-bill").len(), 1);
    assert_eq!(invoker.calls_to("orders-flaky").len(), 3);

    // AND it is in the dead-letter queue, alone, with its last error
    let dead = receive(&cloud.sqs, &cloud.dead_letters, 1).await;
    assert_eq!(dead.len(), 1);
    let message: DeliveryMessage = serde_json::from_str(dead[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(message.event_id, receipt.event_id);
    assert_eq!(message.deliveries.len(), 1);
    let entry = &message.deliveries[0];
    assert_eq!(entry.function_id.as_str(), "orders-flaky");
    assert_eq!(entry.attempts, 3);
    assert!(entry.last_error.as_deref().unwrap().contains("attempt 3"), "{entry:?}");
    assert_eq!(message.payload().unwrap(), serde_json::to_vec(&payload).unwrap());

    // AND the log has every delivery's end: nothing lost, nothing left pending
    let log = cloud.store.deliveries_of_trigger(&receipt.event_id).await.unwrap().unwrap();
    assert_eq!(log.len(), 3);
    for d in &log {
        match d.function_id.as_str() {
            "orders-flaky" => {
                assert_eq!((d.status, d.attempts), (DeliveryStatus::Failed, 3));
                assert!(d.last_error.as_deref().unwrap().contains("Unhandled"));
            }
            // async: Lambda took the event; the gateway never saw the function succeed
            _ => assert_eq!((d.status, d.attempts), (DeliveryStatus::Invoked, 1)),
        }
    }
    assert_eq!(messages_in(&cloud.sqs, &cloud.queue).await, 0);
}

#[tokio::test]
async fn a_function_outside_the_allowlist_is_dead_lettered_without_being_invoked() {
    let cloud = cloud().await;
    let name = cloud.define(&["orders-ship", "admin-drop-tables"]).await;
    let invoker = RecordingInvoker::failing(&[]);
    let settings = DispatchSettings { allowlist: FunctionAllowlist::parse("orders-").unwrap(), ..Default::default() };
    let queue = SqsRetryQueue::new(cloud.sqs.clone(), &cloud.queue, &cloud.dead_letters);
    let dispatcher = Dispatcher::new(Arc::new(cloud.store.clone()), invoker.clone(), Arc::new(queue), settings);

    let receipt = cloud.trigger(&name, &json!({"orderId": "o-2"})).await;
    cloud.poll(&dispatcher).await;

    assert_eq!(invoker.calls_to("orders-ship").len(), 1);
    assert!(invoker.calls_to("admin-drop-tables").is_empty());
    let dead = receive(&cloud.sqs, &cloud.dead_letters, 1).await;
    assert_eq!(dead.len(), 1);
    let message: DeliveryMessage = serde_json::from_str(dead[0].body.as_deref().unwrap()).unwrap();
    assert!(message.deliveries[0].last_error.as_deref().unwrap().contains("allowlist"));
    let log = cloud.store.deliveries_of_trigger(&receipt.event_id).await.unwrap().unwrap();
    let admin = log.iter().find(|d| d.function_id.as_str() == "admin-drop-tables").unwrap();
    assert_eq!(admin.status, DeliveryStatus::Failed);
}

/// SNS failing in the middle of a fan-out: the first message (carrying the first `out`
/// deliveries) reaches the real topic, then publishing fails.
struct FailsMidFanOut {
    sns: SnsPublisher,
    out: usize,
}

#[async_trait]
impl TriggerPublisher for FailsMidFanOut {
    async fn publish(&self, trigger: &gateway_core::Trigger) -> gateway_core::error::Result<()> {
        let mut first = trigger.clone();
        first.deliveries.truncate(self.out);
        self.sns.publish(&first).await?;
        Err(gateway_core::Error::unavailable("SNS PublishBatch failed after the first message"))
    }
}

/// The delivery log, except that the acceptor cannot settle a trigger (DynamoDB failing for it).
struct CannotSettle(DynamoStore);

#[async_trait]
impl DeliveryRecorder for CannotSettle {
    async fn settle_trigger(
        &self,
        _: &gateway_core::EventId,
        _: &EventName,
        _: chrono::DateTime<chrono::Utc>,
        _: TriggerState,
    ) -> gateway_core::error::Result<TriggerState> {
        Err(gateway_core::Error::unavailable("DynamoDB is unreachable"))
    }
    async fn record_trigger(&self, t: &gateway_core::Trigger) -> gateway_core::error::Result<()> {
        self.0.record_trigger(t).await
    }
    async fn record_delivery(&self, d: &gateway_core::Delivery) -> gateway_core::error::Result<()> {
        self.0.record_delivery(d).await
    }
    async fn start_series(&self, d: &gateway_core::Delivery) -> gateway_core::error::Result<bool> {
        self.0.start_series(d).await
    }
    async fn take_over_series(
        &self,
        d: &gateway_core::Delivery,
        now: chrono::DateTime<chrono::Utc>,
    ) -> gateway_core::error::Result<bool> {
        self.0.take_over_series(d, now).await
    }
    async fn recorded_trigger(
        &self,
        id: &gateway_core::EventId,
        subs: &[gateway_core::SubscriptionId],
    ) -> gateway_core::error::Result<gateway_core::ports::RecordedTrigger> {
        self.0.recorded_trigger(id, subs).await
    }
}

fn dispatcher_at(cloud: &Cloud, invoker: Arc<RecordingInvoker>, now: chrono::DateTime<chrono::Utc>) -> Dispatcher {
    let settings = DispatchSettings { allowlist: FunctionAllowlist::parse("orders-").unwrap(), ..Default::default() };
    let queue = SqsRetryQueue::new(cloud.sqs.clone(), &cloud.queue, &cloud.dead_letters);
    Dispatcher::new(Arc::new(cloud.store.clone()), invoker, Arc::new(queue), settings)
        .with_clock(Arc::new(gateway_core::memory::FixedClock::at(now)))
}

#[tokio::test]
async fn a_fan_out_that_fails_midway_answers_an_error_and_none_of_its_deliveries_run() {
    // GIVEN an event with three subscribers, and SNS failing after the first of its messages
    let cloud = cloud().await;
    let name = cloud.define(&["orders-ship", "orders-bill", "orders-mail"]).await;
    let faulty = FailsMidFanOut { sns: cloud.publisher.clone(), out: 2 };
    let acceptor = SnsAcceptor::new(Arc::new(faulty), Arc::new(cloud.store.clone()), Arc::new(cloud.store.clone()));

    // WHEN it is triggered
    let answer = cloud.trigger_through(&acceptor, &name, &json!({"orderId": "o-9"})).await;

    // THEN the client hears an error (503), though a message with two deliveries is in the queue
    assert!(matches!(answer, Err(gateway_core::Error::NotAccepted(_))), "{answer:?}");
    let out = receive(&cloud.sqs, &cloud.queue, 1).await;
    assert_eq!(out.len(), 1);
    let message: DeliveryMessage = serde_json::from_str(out[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(message.deliveries.len(), 2);
    assert!(message.unconfirmed);

    // AND when the dispatcher gets that message, even at once, no function runs and it is gone
    let invoker = RecordingInvoker::failing(&[]);
    let dispatcher = dispatcher_at(&cloud, invoker.clone(), message.received_at);
    let response = dispatcher.handle(serde_json::from_value(sqs_event(&cloud.queue_arn, &out)).unwrap()).await;
    assert!(response.batch_item_failures.is_empty());
    delete(&cloud.sqs, &cloud.queue, &out[0]).await;
    assert!(invoker.calls.lock().unwrap().is_empty(), "nothing of an error answer runs");
    assert_eq!(messages_in(&cloud.sqs, &cloud.queue).await, 0, "dropped, not held back: it was settled abandoned");
    assert_eq!(cloud.store.deliveries_of_trigger(&message.event_id).await.unwrap(), None);
}

#[tokio::test]
async fn a_published_trigger_nobody_settled_is_held_back_then_dropped_after_the_acceptance_window() {
    // GIVEN a trigger whose handler published it but could neither accept nor abandon it
    let cloud = cloud().await;
    let name = cloud.define(&["orders-ship"]).await;
    let acceptor = SnsAcceptor::new(
        Arc::new(cloud.publisher.clone()),
        Arc::new(CannotSettle(cloud.store.clone())),
        Arc::new(cloud.store.clone()),
    );
    let answer = cloud.trigger_through(&acceptor, &name, &json!({"orderId": "o-10"})).await;
    assert!(matches!(answer, Err(gateway_core::Error::NotAccepted(_))), "{answer:?}");
    let invoker = RecordingInvoker::failing(&[]);

    // WHEN the dispatcher gets its message within the acceptance window
    let first = receive(&cloud.sqs, &cloud.queue, 1).await;
    let message: DeliveryMessage = serde_json::from_str(first[0].body.as_deref().unwrap()).unwrap();
    let early = dispatcher_at(&cloud, invoker.clone(), message.received_at + chrono::Duration::seconds(5));
    early.handle(serde_json::from_value(sqs_event(&cloud.queue_arn, &first)).unwrap()).await;
    delete(&cloud.sqs, &cloud.queue, &first[0]).await;

    // THEN nothing runs and the message is back in the queue, held
    assert!(invoker.calls.lock().unwrap().is_empty());
    let deadline = Instant::now() + Duration::from_secs(30);
    let held = loop {
        let got = receive(&cloud.sqs, &cloud.queue, 1).await;
        if !got.is_empty() {
            break got;
        }
        assert!(Instant::now() < deadline, "the held message did not come back");
    };

    // WHEN it comes again after the window
    let late = dispatcher_at(&cloud, invoker.clone(), message.received_at + chrono::Duration::seconds(61));
    late.handle(serde_json::from_value(sqs_event(&cloud.queue_arn, &held)).unwrap()).await;
    delete(&cloud.sqs, &cloud.queue, &held[0]).await;

    // THEN it is settled abandoned and dropped: its client got an error, so it never runs
    assert!(invoker.calls.lock().unwrap().is_empty());
    assert_eq!(messages_in(&cloud.sqs, &cloud.queue).await, 0);
    let state = cloud.store.recorded_trigger(&message.event_id, &[]).await.unwrap().state;
    assert_eq!(state, Some(TriggerState::Abandoned));
}

impl Cloud {
    /// Polls until the delivery queue is empty, waiting out the retries' `DelaySeconds`.
    async fn drain(&self, dispatcher: &Dispatcher) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while messages_in(&self.sqs, &self.queue).await > 0 {
            self.poll(dispatcher).await;
            assert!(Instant::now() < deadline, "the delivery queue did not empty");
        }
    }

    /// Every message of the dead-letter queue, taken off it.
    async fn take_dead_letters(&self) -> Vec<aws_sdk_sqs::types::Message> {
        let mut all = Vec::new();
        loop {
            let batch = receive(&self.sqs, &self.dead_letters, 1).await;
            if batch.is_empty() {
                return all;
            }
            for m in &batch {
                delete(&self.sqs, &self.dead_letters, m).await;
            }
            all.extend(batch);
        }
    }
}

#[tokio::test]
async fn a_sync_delivery_fails_after_its_attempts_with_the_function_error_and_is_redriven_from_the_api_and_the_dlq() {
    // GIVEN a sync subscription (two attempts) to a function that fails, and the dispatcher
    let cloud = cloud().await;
    let policy = DeliveryPolicy { mode: DeliveryMode::Sync, max_attempts: Some(2), ..Default::default() };
    let name = cloud.define_with(&["orders-failing"], Some(policy)).await;
    let invoker = RecordingInvoker::failing(&["orders-failing"]);
    let settings = DispatchSettings {
        allowlist: FunctionAllowlist::parse("orders-").unwrap(),
        retry: RetryPolicy {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(1),
            ..Default::default()
        },
        ..Default::default()
    };
    let queue = SqsRetryQueue::new(cloud.sqs.clone(), &cloud.queue, &cloud.dead_letters);
    let dispatcher = Dispatcher::new(Arc::new(cloud.store.clone()), invoker.clone(), Arc::new(queue), settings);

    // WHEN it is triggered and the queue drained
    let payload = json!({"orderId": "o-7"});
    let receipt = cloud.trigger(&name, &payload).await;
    cloud.drain(&dispatcher).await;

    // THEN it was invoked synchronously twice, and ends failed with the function's own error
    assert_eq!(invoker.calls_to("orders-failing").len(), 2);
    assert!(invoker.modes.lock().unwrap().iter().all(|m| matches!(m, InvocationMode::Sync { .. })));
    let log = cloud.store.deliveries_of_trigger(&receipt.event_id).await.unwrap().unwrap();
    let d = &log[0];
    assert_eq!((d.status, d.attempts, d.generation), (DeliveryStatus::Failed, 2, 0));
    let expected = format!("fails on purpose: {}", receipt.event_id);
    assert!(d.last_error.as_deref().unwrap().contains(&expected), "{:?}", d.last_error);
    assert_eq!(d.history.len(), 2);
    // AND it is in the dead-letter queue with that error
    let dead = cloud.take_dead_letters().await;
    assert_eq!(dead.len(), 1);
    let letter = DeliveryMessage::read(dead[0].body.as_deref().unwrap()).unwrap();
    assert!(letter.deliveries[0].last_error.as_deref().unwrap().contains(&expected));

    // WHEN the operator moves the dead letter back to the delivery queue (SQS's DLQ redrive)
    cloud.sqs.send_message().queue_url(&cloud.queue).message_body(dead[0].body.clone().unwrap()).send().await.unwrap();
    cloud.drain(&dispatcher).await;

    // THEN it runs again as a new series, generation 1, its two attempts counted afresh
    assert_eq!(invoker.calls_to("orders-failing").len(), 4);
    let d = cloud.store.deliveries_of_trigger(&receipt.event_id).await.unwrap().unwrap().remove(0);
    assert_eq!((d.status, d.attempts, d.generation), (DeliveryStatus::Failed, 2, 1));
    assert!(d.redriven_at.is_some());
    let second = cloud.take_dead_letters().await;
    assert_eq!(second.len(), 1);

    // WHEN the function is fixed and the failed delivery redriven through the gateway's redrive
    invoker.failing.lock().unwrap().clear();
    let redrive =
        DynamoRedrive::new(cloud.store.clone(), Arc::new(SqsRedriveQueue::new(cloud.sqs.clone(), &cloud.queue)));
    let answer = gateway_core::redrive::redrive_trigger(&redrive, &cloud.store, &SystemClock, &receipt.event_id, None)
        .await
        .unwrap();
    assert_eq!(answer.redriven, 1);
    let again = gateway_core::redrive::redrive_trigger(&redrive, &cloud.store, &SystemClock, &receipt.event_id, None)
        .await
        .unwrap();
    assert_eq!(again.redriven, 0, "pending already: not twice");
    cloud.drain(&dispatcher).await;

    // THEN it ran once more, as generation 2, and is delivered; its history spans the series
    assert_eq!(invoker.calls_to("orders-failing").len(), 5);
    let d = cloud.store.deliveries_of_trigger(&receipt.event_id).await.unwrap().unwrap().remove(0);
    assert_eq!((d.status, d.attempts, d.generation), (DeliveryStatus::Delivered, 1, 2));
    let series: Vec<_> = d.history.iter().map(|a| (a.generation, a.number)).collect();
    assert_eq!(series, [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1)]);
    assert!(cloud.take_dead_letters().await.is_empty());

    // AND the stale dead letter of generation 0, moved back late, runs nothing
    cloud.sqs.send_message().queue_url(&cloud.queue).message_body(dead[0].body.clone().unwrap()).send().await.unwrap();
    cloud.drain(&dispatcher).await;
    assert_eq!(invoker.calls_to("orders-failing").len(), 5);
}
