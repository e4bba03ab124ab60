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
use gateway_core::ports::{DeliveryLog, FunctionInvoker, InvokeError, SystemClock, UlidSource};
use gateway_core::schema::SchemaCache;
use gateway_core::trigger::{trigger, TriggerPorts, TriggerRequest};
use gateway_core::{DeliveryStatus, EventDraft, EventName, FunctionAllowlist, FunctionId, SubscriptionDraft};
use gateway_dispatcher::{DispatchSettings, Dispatcher, SqsRetryQueue};
use gateway_dynamodb::{create_table, DynamoStore};
use gateway_sns::{SnsAcceptor, SnsPublisher};
use serde_json::{json, Value};

/// Records every invocation; the functions named in `failing` fail every time.
struct RecordingInvoker {
    failing: HashSet<&'static str>,
    calls: Mutex<Vec<(String, Value)>>,
}

#[async_trait]
impl FunctionInvoker for RecordingInvoker {
    async fn invoke(&self, function: &FunctionId, payload: &[u8]) -> Result<(), InvokeError> {
        let payload = serde_json::from_slice(payload).expect("the invocation payload is JSON");
        self.calls.lock().unwrap().push((function.to_string(), payload));
        if self.failing.contains(function.as_str()) {
            return Err(InvokeError { message: format!("function '{function}' failed: Unhandled"), retryable: true });
        }
        Ok(())
    }
}

impl RecordingInvoker {
    fn calls_to(&self, function: &str) -> Vec<Value> {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|(f, _)| f == function).map(|(_, p)| p.clone()).collect()
    }
}

struct Cloud {
    _moto: Moto,
    store: DynamoStore,
    acceptor: SnsAcceptor,
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
    let acceptor = SnsAcceptor::with_store(SnsPublisher::new(sns, topic_arn), store.clone());
    Cloud { queue_arn: queue_arn(&sqs, &queue).await, _moto: moto, store, acceptor, sqs, queue, dead_letters }
}

impl Cloud {
    async fn define(&self, functions: &[&str]) -> EventName {
        let name = EventName::parse("orders.created").unwrap();
        let draft = EventDraft {
            name: Some(name.clone()),
            schema: Some(json!({"type": "object", "required": ["orderId"]})),
            ..Default::default()
        };
        gateway_core::events::define_event(&self.store, &SystemClock, draft).await.unwrap();
        for f in functions {
            let draft = SubscriptionDraft {
                event: Some(name.clone()),
                function_id: FunctionId::parse(f).unwrap(),
                metadata: Some(serde_json::Map::from_iter([("for".to_owned(), json!(f))])),
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
        let schemas = SchemaCache::default();
        let ports = TriggerPorts {
            source: &self.store,
            acceptor: &self.acceptor,
            schemas: &schemas,
            clock: &SystemClock,
            ids: &UlidSource,
        };
        let request = TriggerRequest {
            event: name.clone(),
            content_type: Some("application/json"),
            payload: serde_json::to_vec(payload).unwrap(),
            idempotency_key: None,
        };
        trigger(ports, request).await.expect("the trigger is accepted")
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
    let invoker = Arc::new(RecordingInvoker { failing: HashSet::from(["orders-flaky"]), calls: Mutex::default() });
    let settings = DispatchSettings {
        allowlist: FunctionAllowlist::parse("orders-").unwrap(),
        retry: RetryPolicy { max_attempts: 3, base_delay: Duration::from_secs(1), max_delay: Duration::from_secs(2) },
        concurrency: 8,
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

    // WHEN SQS delivers that first message again (a timed-out batch, say)
    let response = dispatcher.handle(first_batch).await;
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
            _ => assert_eq!((d.status, d.attempts), (DeliveryStatus::Delivered, 1)),
        }
    }
    assert_eq!(messages_in(&cloud.sqs, &cloud.queue).await, 0);
}

#[tokio::test]
async fn a_function_outside_the_allowlist_is_dead_lettered_without_being_invoked() {
    let cloud = cloud().await;
    let name = cloud.define(&["orders-ship", "admin-drop-tables"]).await;
    let invoker = Arc::new(RecordingInvoker { failing: HashSet::new(), calls: Mutex::default() });
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
