//! Every sample in `events/` (what `sam local invoke` is fed) goes through its handler's code
//! in-process and gets the answer a user would expect, so the samples never rot.
//!
//! The HTTP samples run through the same router the Lambda binaries serve, on the in-memory
//! store seeded with what the sample refers to; the SQS sample runs through the dispatcher.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsEvent;
use gateway_api::{Gateway, RouteGroup};
use gateway_core::memory::{MemoryRecorder, MemoryStore, RecordingInvoker};
use gateway_core::message::DeliveryMessage;
use gateway_core::ports::{
    Clock, DeliveryOutbox, EventStore, SubscriptionStore, SystemClock, TriggerAcceptor, UlidSource,
};
use gateway_core::schema::SchemaCache;
use gateway_core::{
    EventDefinition, EventId, EventName, FunctionAllowlist, FunctionId, Subscription, SubscriptionId, Version,
};
use gateway_dispatcher::{DispatchSettings, Dispatcher, QueueError, RetryQueue};
use lambda_http::Body;
use serde_json::{json, Value};
use tower::ServiceExt;

const EVENT: &str = "orders.created";
const SUBSCRIPTION: &str = "sub_01JDQ3V6J9K2M4N5P6Q7R8S9T0";
const TRIGGER: &str = "evt_01JDQ3V6J9K2M4N5P6Q7R8S9T0";

fn sample(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("events/{path}: {e}"))
}

/// A store holding the event, subscription, trigger and schema the samples name, each at version 1.
async fn seeded_store() -> MemoryStore {
    let store = MemoryStore::new();
    let now = SystemClock.now();
    let name = EventName::parse(EVENT).unwrap();
    let event = EventDefinition {
        name: name.clone(),
        description: None,
        schema: Some(Arc::new(json!({"type": "object", "required": ["orderId"]}))),
        data_type: Default::default(),
        envelope: None,
        schema_references: Vec::new(),
        metadata: Default::default(),
        received_at: None,
        created_at: now,
        updated_at: now,
        version: Version::FIRST,
    };
    store.create_event(&event).await.unwrap();
    let subscription = Subscription {
        subscription_id: SubscriptionId::parse(SUBSCRIPTION).unwrap(),
        event: name.clone(),
        function_id: FunctionId::parse("my-app-orders").unwrap(),
        metadata: Default::default(),
        filter: None,
        delivery: Default::default(),
        format: Default::default(),
        created_at: now,
        updated_at: now,
        version: Version::FIRST,
    };
    store.create_subscription(&subscription).await.unwrap();
    let mut trigger =
        gateway_core::trigger::accepted_trigger(&event, &[subscription.into()], b"{}".to_vec(), now, &UlidSource);
    trigger.event_id = EventId::parse(TRIGGER).unwrap();
    for d in &mut trigger.deliveries {
        d.event_id = trigger.event_id;
    }
    store.accept(&trigger, None).await.unwrap();
    // The schema `register-schema.json` registers, as version 1.
    let registered: Value = serde_json::from_str(&sample("events-api/register-schema.json")).unwrap();
    let draft = serde_json::from_str(registered["body"].as_str().unwrap()).unwrap();
    gateway_core::schemas::register_schema(&store, &SystemClock, draft).await.unwrap();
    store
}

fn gateway(store: MemoryStore) -> Gateway {
    Gateway {
        events: Arc::new(store.clone()),
        subscriptions: Arc::new(store.clone()),
        sources: Arc::new(store.clone()),
        registry: Arc::new(store.clone()),
        trigger_source: Arc::new(store.clone()),
        acceptor: Arc::new(store.clone()),
        deliveries: Arc::new(store.clone()),
        redrive: Arc::new(store),
        schemas: SchemaCache::new(),
        clock: Arc::new(SystemClock),
        ids: Arc::new(UlidSource),
        allowlist: FunctionAllowlist::parse("my-app-").unwrap(),
        max_payload_bytes: gateway_api::DEFAULT_MAX_PAYLOAD_BYTES,
    }
}

/// Feeds an API Gateway sample to the handler of `group`; returns status and JSON body.
async fn invoke_http(group: RouteGroup, path: &str, store: MemoryStore) -> (u16, Value) {
    let request = lambda_http::request::from_str(&sample(path))
        .unwrap_or_else(|e| panic!("{path} is not an API Gateway event: {e}"));
    let response = gateway_api::router(gateway(store), group).oneshot(request.map(axum_body)).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (status, body)
}

fn axum_body(body: Body) -> axum::body::Body {
    match body {
        Body::Empty => axum::body::Body::empty(),
        Body::Text(text) => axum::body::Body::from(text),
        Body::Binary(bytes) => axum::body::Body::from(bytes),
        _ => axum::body::Body::empty(),
    }
}

#[tokio::test]
async fn every_events_api_sample_gets_its_expected_answer() {
    for (path, fresh, expected) in [
        ("events-api/create-event.json", true, 201),
        ("events-api/list-events.json", false, 200),
        ("events-api/get-event.json", false, 200),
        ("events-api/replace-event.json", false, 200),
        ("events-api/delete-event.json", false, 204),
        ("events-api/register-schema.json", true, 201),
        ("events-api/add-schema-version.json", false, 201),
        ("events-api/health.json", true, 200),
        ("events-api/openapi-document.json", true, 200),
    ] {
        let store = if fresh { MemoryStore::new() } else { seeded_store().await };
        let (status, body) = invoke_http(RouteGroup::Events, path, store).await;
        assert_eq!(status, expected, "{path}: {body}");
    }
}

#[tokio::test]
async fn every_subscriptions_api_sample_gets_its_expected_answer() {
    for (path, expected) in [
        ("subscriptions-api/create-subscription.json", 201),
        ("subscriptions-api/list-subscriptions.json", 200),
        ("subscriptions-api/get-subscription.json", 200),
        ("subscriptions-api/replace-subscription.json", 200),
        ("subscriptions-api/delete-subscription.json", 204),
    ] {
        let (status, body) = invoke_http(RouteGroup::Subscriptions, path, seeded_store().await).await;
        assert_eq!(status, expected, "{path}: {body}");
    }
}

#[tokio::test]
async fn every_trigger_api_sample_gets_its_expected_answer() {
    let (status, receipt) = invoke_http(RouteGroup::Triggers, "trigger-api/trigger.json", seeded_store().await).await;
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["event"], EVENT);
    assert_eq!(receipt["deliveries"][0]["functionId"], "my-app-orders");

    // The same trigger through the function's URL (`TriggerFunctionUrl: AWS_IAM`): a function
    // URL event (routeKey `$default`, no path parameters) reaches the same route.
    let (status, receipt) =
        invoke_http(RouteGroup::Triggers, "trigger-api/trigger-function-url.json", seeded_store().await).await;
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["event"], EVENT);
    assert_eq!(receipt["deliveries"][0]["functionId"], "my-app-orders");

    let (status, log) =
        invoke_http(RouteGroup::Triggers, "trigger-api/get-trigger-deliveries.json", seeded_store().await).await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log[0]["eventId"], TRIGGER);

    let (status, page) =
        invoke_http(RouteGroup::Triggers, "trigger-api/list-event-deliveries.json", seeded_store().await).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["subscriptionId"], SUBSCRIPTION);
}

/// The seeded store, its one delivery failed (as after its last attempt).
async fn store_with_a_failed_delivery() -> MemoryStore {
    let store = seeded_store().await;
    let due = store.claim_due(SystemClock.now(), 10, Duration::from_secs(30)).await.unwrap().remove(0);
    let failed = gateway_core::Delivery {
        status: gateway_core::DeliveryStatus::Failed,
        attempts: 1,
        last_error: Some("boom".into()),
        ..due.delivery.clone()
    };
    store.record_attempt(&due, &gateway_core::ports::Attempted { delivery: failed, retry: None }).await.unwrap();
    store
}

#[tokio::test]
async fn the_redrive_samples_redrive_the_failed_delivery_once() {
    for path in ["trigger-api/redrive-trigger.json", "trigger-api/redrive-subscription.json"] {
        let store = store_with_a_failed_delivery().await;
        let (status, receipt) = invoke_http(RouteGroup::Triggers, path, store.clone()).await;
        assert_eq!((status, &receipt), (202, &json!({"redriven": 1})), "{path}");
        let (status, again) = invoke_http(RouteGroup::Triggers, path, store).await;
        assert_eq!((status, &again), (202, &json!({"redriven": 0})), "{path}: a second redrive while pending");
    }
}

#[tokio::test]
async fn a_route_outside_a_functions_group_is_not_served_by_it() {
    let (status, body) = invoke_http(RouteGroup::Events, "trigger-api/trigger.json", seeded_store().await).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["type"], "/problems/no-route");
}

#[derive(Default)]
struct Queue(Mutex<Vec<DeliveryMessage>>);

#[async_trait]
impl RetryQueue for Queue {
    async fn retry_later(&self, message: &DeliveryMessage, _: Duration) -> Result<(), QueueError> {
        self.0.lock().unwrap().push(message.clone());
        Ok(())
    }
    async fn dead_letter(&self, message: &DeliveryMessage) -> Result<(), QueueError> {
        self.0.lock().unwrap().push(message.clone());
        Ok(())
    }
}

#[tokio::test]
async fn the_dispatcher_sample_invokes_its_function_and_reports_no_failure() {
    let batch: SqsEvent = serde_json::from_str(&sample("dispatcher/sqs-batch.json")).expect("an SQS event");
    let invoker = Arc::new(RecordingInvoker::default());
    let log = Arc::new(MemoryRecorder::new());
    let queue = Arc::new(Queue::default());
    let settings = DispatchSettings { allowlist: FunctionAllowlist::parse("my-app-").unwrap(), ..Default::default() };
    let dispatcher = Dispatcher::new(log.clone(), invoker.clone(), queue.clone(), settings);

    let expected: Vec<(String, String)> = batch
        .records
        .iter()
        .flat_map(|r| {
            let m: DeliveryMessage = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
            m.deliveries.into_iter().map(move |d| (m.event_id.to_string(), d.function_id.to_string()))
        })
        .collect();

    let delivered: Vec<(EventId, SubscriptionId)> = batch
        .records
        .iter()
        .flat_map(|r| {
            let m: DeliveryMessage = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
            m.deliveries.into_iter().map(move |d| (m.event_id, d.subscription_id))
        })
        .collect();
    let response = dispatcher.handle(batch).await;

    assert!(response.batch_item_failures.is_empty());
    let mut invoked: Vec<(String, String)> = invoker
        .calls()
        .iter()
        .map(|(function, body)| {
            let payload: Value = serde_json::from_slice(body).unwrap();
            (payload["eventId"].as_str().unwrap().to_owned(), function.to_string())
        })
        .collect();
    invoked.sort();
    let mut expected = expected;
    expected.sort();
    assert_eq!(invoked, expected, "every delivery of the batch invoked once");
    let first = invoker
        .calls()
        .into_iter()
        .find(|(_, body)| serde_json::from_slice::<Value>(body).unwrap()["eventId"] == TRIGGER);
    let payload: Value = serde_json::from_slice(&first.expect("the first trigger was delivered").1).unwrap();
    assert_eq!(payload["data"], json!({"orderId": "o-1", "total": 42.5}));
    assert!(queue.0.lock().unwrap().is_empty(), "nothing to retry");
    // The first message is of version 1 (no `type`, no policy: async, recorded `invoked`), the
    // second of version 2 with a sync policy (recorded `delivered`, its history carried on).
    let statuses: Vec<_> = delivered
        .iter()
        .map(|(event_id, subscription_id)| {
            let recorded = log.delivery(event_id, subscription_id).expect("every delivery is recorded");
            (recorded.status, recorded.attempts, recorded.history.len())
        })
        .collect();
    use gateway_core::DeliveryStatus::{Delivered, Invoked};
    assert_eq!(statuses, [(Invoked, 1, 1), (Delivered, 3, 3)]);
}
