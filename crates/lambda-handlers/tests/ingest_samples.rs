//! Every native event sample in `events/ingest/` (the SAM CLI's generated events and the
//! `aws_lambda_events` crate's fixtures) goes through the ingest function's code in-process and
//! through the local `POST /ingest/aws`, with the triggers expected: each record triggers its
//! kind's source once, and delivered again triggers nothing new.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::Request;
use gateway_api::{Gateway, RouteGroup};
use gateway_core::memory::MemoryStore;
use gateway_core::ports::{Acceptance, SystemClock, TriggerAcceptor, UlidSource};
use gateway_core::schema::SchemaCache;
use gateway_core::{events, sources, EventDraft, FunctionAllowlist, IdempotencyKey, SourceDraft, Trigger};
use gateway_ingest::Ingestor;
use serde_json::{json, Value};
use tower::ServiceExt;

/// One event and source per kind of record, each source matching every record of its kind.
/// Queue, topic and stream payloads are opaque text (`Hello from SQS!`), the others JSON.
const KINDS: &[(&str, &str, &str)] = &[
    ("s3", "application/json", r#"{"eventSource": ["aws:s3"]}"#),
    ("sns", "text/plain", r#"{"EventSource": ["aws:sns"]}"#),
    ("sqs", "text/plain", r#"{"eventSource": ["aws:sqs"]}"#),
    ("dynamodb", "application/json", r#"{"eventSource": ["aws:dynamodb"]}"#),
    ("kinesis", "text/plain", r#"{"eventSource": ["aws:kinesis"]}"#),
    ("eventbridge", "application/json", r#"{"detail-type": [{"exists": true}]}"#),
];

/// The samples, the source each record must trigger and how many distinct records (triggers)
/// each holds; `None`: not a document Lambda delivers. One alarm fixture holds the same SNS
/// record twice (one `MessageId`): one trigger.
const SAMPLES: &[(&str, Option<(&str, usize)>)] = &[
    ("s3-put.json", Some(("s3", 1))),
    ("s3-delete.json", Some(("s3", 1))),
    ("sns-notification.json", Some(("sns", 1))),
    ("sqs-receive-message.json", Some(("sqs", 1))),
    ("dynamodb-update.json", Some(("dynamodb", 3))),
    ("kinesis-get-records.json", Some(("kinesis", 1))),
    ("cloudwatch-scheduled-event.json", Some(("eventbridge", 1))),
    ("eventbridge-s3-object-created.json", Some(("eventbridge", 1))),
    ("eventbridge-s3-object-deleted.json", Some(("eventbridge", 1))),
    ("aws-lambda-events/example-s3-event.json", Some(("s3", 1))),
    ("aws-lambda-events/example-s3-event-with-decoded.json", Some(("s3", 1))),
    ("aws-lambda-events/example-sns-event.json", Some(("sns", 1))),
    ("aws-lambda-events/example-sns-event-obj.json", Some(("sns", 1))),
    ("aws-lambda-events/example-sns-event-pascal-case.json", Some(("sns", 1))),
    ("aws-lambda-events/example-cloudwatch-alarm-sns-payload-single-metric.json", Some(("sns", 1))),
    ("aws-lambda-events/example-cloudwatch-alarm-sns-payload-multiple-metrics.json", Some(("sns", 1))),
    ("aws-lambda-events/example-sqs-event.json", Some(("sqs", 1))),
    ("aws-lambda-events/example-sqs-event-obj.json", Some(("sqs", 1))),
    ("aws-lambda-events/example-dynamodb-event.json", Some(("dynamodb", 2))),
    ("aws-lambda-events/example-dynamodb-event-null-items.json", Some(("dynamodb", 2))),
    ("aws-lambda-events/example-kinesis-event.json", Some(("kinesis", 2))),
    ("aws-lambda-events/example-kinesis-event-encrypted.json", Some(("kinesis", 2))),
    ("aws-lambda-events/example-eventbridge-event-obj.json", Some(("eventbridge", 1))),
    ("aws-lambda-events/example-eventbridge-schedule.json", Some(("eventbridge", 1))),
    // Only an EventBridge event's `detail`, and one record without `Records` around it.
    ("aws-lambda-events/example-cloudwatch-cloudtrail-assumed-role.json", None),
    ("aws-lambda-events/example-cloudwatch-cloudtrail-unknown-federate.json", None),
    ("aws-lambda-events/example-cloudwatch-cloudtrail-unknown-user-auth.json", None),
    ("aws-lambda-events/example-dynamodb-event-record-with-optional-fields.json", None),
];

fn sample(path: &str) -> Value {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/ingest").join(path);
    serde_json::from_str(&std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{path}: {e}")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn records_in(document: &Value) -> usize {
    document.get("Records").and_then(Value::as_array).map_or(1, Vec::len)
}

/// The memory store's acceptor, counting the triggers it really accepted (not replays).
struct Counting {
    store: MemoryStore,
    accepted: AtomicUsize,
}

#[async_trait]
impl TriggerAcceptor for Counting {
    async fn accept(&self, t: &Trigger, key: Option<&IdempotencyKey>) -> gateway_core::error::Result<Acceptance> {
        let answer = self.store.accept(t, key).await?;
        if answer == Acceptance::Accepted {
            self.accepted.fetch_add(1, Ordering::SeqCst);
        }
        Ok(answer)
    }
}

async fn store() -> MemoryStore {
    let store = MemoryStore::new();
    for (kind, data_type, pattern) in KINDS {
        let event = json!({"name": format!("{kind}.things"), "dataType": data_type});
        let draft: EventDraft = serde_json::from_value(event).unwrap();
        events::define_event(&store, &store, &SystemClock, draft).await.unwrap();
        let source = json!({"name": kind, "event": format!("{kind}.things"), "pattern": serde_json::from_str::<Value>(pattern).unwrap()});
        let draft: SourceDraft = serde_json::from_value(source).unwrap();
        sources::define_source(&store, &SystemClock, draft).await.unwrap();
    }
    store
}

#[tokio::test]
async fn every_sample_triggers_its_kinds_source_once_through_the_ingest_function() {
    for (path, expected) in SAMPLES {
        // GIVEN a source per kind, and the ingest function's code over them
        let store = store().await;
        let counting = Arc::new(Counting { store: store.clone(), accepted: AtomicUsize::new(0) });
        let kept = Arc::new(Kept::default());
        let ingestor = Ingestor {
            trigger_source: Arc::new(store.clone()),
            acceptor: counting.clone(),
            sources: Arc::new(store.clone()),
            registry: Arc::new(store.clone()),
            rejections: kept.clone(),
            schemas: SchemaCache::new(),
            clock: Arc::new(SystemClock),
            ids: Arc::new(UlidSource),
            max_payload_bytes: gateway_lambda_handlers::CLOUD_MAX_PAYLOAD_BYTES,
        };
        let document = sample(path);

        // WHEN the function gets the sample, twice (AWS delivers at least once)
        let answer = ingestor.handle(document.clone(), None).await.unwrap_or_else(|e| panic!("{path}: {e}"));
        ingestor.handle(document.clone(), None).await.unwrap();

        // THEN every record triggered once, nothing failed, and only unreadable documents are shelved
        let failures = answer.get("batchItemFailures").cloned().unwrap_or(json!([]));
        assert_eq!(failures, json!([]), "{path}");
        match expected {
            Some((_, distinct)) => {
                assert_eq!(counting.accepted.load(Ordering::SeqCst), *distinct, "{path}: one trigger per record");
                assert_eq!(kept.count(), 0, "{path}: nothing rejected");
            }
            None => {
                assert_eq!(counting.accepted.load(Ordering::SeqCst), 0, "{path}");
                assert_eq!(kept.count(), 2, "{path}: an unreadable document is dead-lettered, each time it comes");
            }
        }
    }
}

#[tokio::test]
async fn every_sample_answers_the_same_through_the_local_ingest_route() {
    for (path, expected) in SAMPLES {
        let store = store().await;
        let gateway = Gateway {
            events: Arc::new(store.clone()),
            subscriptions: Arc::new(store.clone()),
            sources: Arc::new(store.clone()),
            registry: Arc::new(store.clone()),
            trigger_source: Arc::new(store.clone()),
            acceptor: Arc::new(store.clone()),
            deliveries: Arc::new(store.clone()),
            redrive: Arc::new(store.clone()),
            schemas: SchemaCache::new(),
            clock: Arc::new(SystemClock),
            ids: Arc::new(UlidSource),
            allowlist: FunctionAllowlist::any(),
            max_payload_bytes: gateway_api::DEFAULT_MAX_PAYLOAD_BYTES,
        };
        let router = gateway_api::router(gateway, RouteGroup::All);
        let document = sample(path);
        let post = |body: String| {
            Request::post("/ingest/aws").header("content-type", "application/json").body(Body::from(body)).unwrap()
        };

        let first = router.clone().oneshot(post(document.to_string())).await.unwrap();
        let status = first.status().as_u16();
        let first: Value =
            serde_json::from_slice(&axum::body::to_bytes(first.into_body(), usize::MAX).await.unwrap()).unwrap();
        let again = router.clone().oneshot(post(document.to_string())).await.unwrap();
        let again: Value =
            serde_json::from_slice(&axum::body::to_bytes(again.into_body(), usize::MAX).await.unwrap()).unwrap();

        match expected {
            Some((kind, distinct)) => {
                assert_eq!(status, 200, "{path}: {first}");
                let triggers = first["triggers"].as_array().unwrap();
                assert_eq!(triggers.len(), records_in(&document), "{path}: {first}");
                assert!(triggers.iter().all(|t| t["source"] == *kind), "{path}: {first}");
                let records: Vec<u64> = triggers.iter().map(|t| t["record"].as_u64().unwrap()).collect();
                assert_eq!(records, (0..records_in(&document) as u64).collect::<Vec<_>>(), "{path}");
                assert_eq!((&first["rejected"], &first["batchItemFailures"]), (&json!([]), &json!([])), "{path}");
                assert_eq!(again["triggers"], first["triggers"], "{path}: delivered again, the same triggers");
                let ids: std::collections::HashSet<&str> =
                    triggers.iter().map(|t| t["eventId"].as_str().unwrap()).collect();
                assert_eq!(ids.len(), *distinct, "{path}: a record twice in a batch is one trigger");
            }
            None => {
                assert_eq!(status, 400, "{path}: {first}");
                assert_eq!(first["type"], "/problems/unknown-native-event", "{path}");
            }
        }
    }
}

#[derive(Default)]
struct Kept(std::sync::Mutex<usize>);

impl Kept {
    fn count(&self) -> usize {
        *self.0.lock().unwrap()
    }
}

#[async_trait]
impl gateway_core::ingest::RejectionSink for Kept {
    async fn reject(&self, _: &gateway_core::ingest::Rejection<'_>) -> gateway_core::error::Result<()> {
        *self.0.lock().unwrap() += 1;
        Ok(())
    }
}

#[async_trait]
impl gateway_ingest::DeadLetters for Kept {
    async fn unreadable(&self, _: &Value, _: &str) -> gateway_core::error::Result<()> {
        *self.0.lock().unwrap() += 1;
        Ok(())
    }
}
