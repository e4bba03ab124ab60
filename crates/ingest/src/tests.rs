//! The function's answers to Lambda, on in-memory ports.

use std::sync::Mutex;

use async_trait::async_trait;
use gateway_core::ingest::{Rejection, RejectionSink};
use gateway_core::memory::MemoryStore;
use gateway_core::ports::{Acceptance, SystemClock, UlidSource};
use gateway_core::{events, sources, Error, EventDraft, EventName, IdempotencyKey, SourceDraft, Trigger};
use serde_json::json;

use super::*;

/// The rejected records (id, source) and the unreadable documents' reasons.
#[derive(Default)]
struct Kept(Mutex<Vec<(String, Option<String>)>>, Mutex<Vec<String>>);

#[async_trait]
impl RejectionSink for Kept {
    async fn reject(&self, r: &Rejection<'_>) -> gateway_core::error::Result<()> {
        self.0.lock().unwrap().push((r.record.id.clone(), r.source.map(|s| s.to_string())));
        Ok(())
    }
}

#[async_trait]
impl DeadLetters for Kept {
    async fn unreadable(&self, _: &Value, why: &str) -> gateway_core::error::Result<()> {
        self.1.lock().unwrap().push(why.to_owned());
        Ok(())
    }
}

/// The memory store's acceptor, failing the triggers of records whose payload names `"fail"`.
struct FailsSome(MemoryStore);

#[async_trait]
impl TriggerAcceptor for FailsSome {
    async fn accept(&self, t: &Trigger, key: Option<&IdempotencyKey>) -> gateway_core::error::Result<Acceptance> {
        if String::from_utf8_lossy(&t.payload).contains("fail") {
            return Err(Error::unavailable("SNS is down"));
        }
        self.0.accept(t, key).await
    }
}

async fn ingestor(pattern: serde_json::Value) -> (Ingestor, Arc<Kept>) {
    let store = MemoryStore::new();
    let name = EventName::parse("things.happened").unwrap();
    events::define_event(&store, &store, &SystemClock, EventDraft { name: Some(name), ..Default::default() })
        .await
        .unwrap();
    let draft: SourceDraft =
        serde_json::from_value(json!({"name": "things", "event": "things.happened", "pattern": pattern})).unwrap();
    sources::define_source(&store, &SystemClock, draft).await.unwrap();
    let kept = Arc::new(Kept::default());
    let ingestor = Ingestor {
        trigger_source: Arc::new(store.clone()),
        acceptor: Arc::new(FailsSome(store.clone())),
        sources: Arc::new(store.clone()),
        registry: Arc::new(store),
        rejections: kept.clone(),
        schemas: SchemaCache::new(),
        clock: Arc::new(SystemClock),
        ids: Arc::new(UlidSource),
        max_payload_bytes: 1024,
    };
    (ingestor, kept)
}

fn sqs_batch(bodies: &[(&str, &str)]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .map(|(id, body)| json!({"messageId": id, "body": body, "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q"}))
        .collect();
    json!({ "Records": records })
}

#[tokio::test]
async fn a_queue_batch_answers_only_the_messages_that_must_come_again() {
    let (ingestor, kept) = ingestor(json!({"eventSource": ["aws:sqs"], "body": [{"prefix": "{"}]})).await;
    let batch = sqs_batch(&[("m-ok", r#"{"n": 1}"#), ("m-fail", r#"{"fail": true}"#), ("m-other", "plain text")]);

    let answer = ingestor.handle(batch, None).await.unwrap();

    assert_eq!(answer, json!({"batchItemFailures": [{"itemIdentifier": "m-fail"}]}));
    assert_eq!(
        kept.0.lock().unwrap().as_slice(),
        &[("m-other".to_owned(), None)],
        "the unmatched one is dead-lettered"
    );
}

#[tokio::test]
async fn a_fifo_queue_batch_answers_the_failed_message_and_every_one_after_it() {
    let (ingestor, _) = ingestor(json!({"eventSource": ["aws:sqs"]})).await;
    let mut batch = sqs_batch(&[("m-1", r#"{"n": 1}"#), ("m-2", r#"{"fail": true}"#), ("m-3", r#"{"n": 3}"#)]);
    for record in batch["Records"].as_array_mut().unwrap() {
        record["eventSourceARN"] = json!("arn:aws:sqs:us-east-1:123456789012:payments.fifo");
        record["attributes"] = json!({"MessageGroupId": "account-1"});
    }

    let answer = ingestor.handle(batch, None).await.unwrap();

    // Lambda keeps the group in order only if m-3 does not run ahead of m-2.
    assert_eq!(answer, json!({"batchItemFailures": [{"itemIdentifier": "m-2"}, {"itemIdentifier": "m-3"}]}));
}

#[tokio::test]
async fn an_asynchronous_source_fails_the_invocation_when_a_record_must_come_again() {
    let (ingestor, _) = ingestor(json!({"source": ["aws.events"]})).await;
    let ok = json!({"id": "e-1", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    let fails = json!({"id": "e-2", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {"fail": 1}});

    assert_eq!(ingestor.handle(ok, None).await.unwrap(), json!({}));
    let err = ingestor.handle(fails, None).await.unwrap_err();
    assert!(err.0.contains("must come again"), "{err}");
}

#[tokio::test]
async fn a_document_of_no_known_shape_is_dead_lettered_not_retried_for_ever() {
    let (ingestor, kept) = ingestor(json!({"source": ["aws.events"]})).await;
    let answer = ingestor.handle(json!({"hello": "world"}), None).await.unwrap();
    assert_eq!(answer, json!({}));
    assert_eq!(kept.1.lock().unwrap().len(), 1, "kept as a document, not as some kind's record");
    assert!(kept.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn past_the_deadline_a_batch_starts_nothing_and_asks_for_every_message_again() {
    let (ingestor, _) = ingestor(json!({"eventSource": ["aws:sqs"]})).await;
    let batch = sqs_batch(&[("m-1", r#"{"n": 1}"#), ("m-2", r#"{"n": 2}"#)]);
    let deadline = chrono::Utc::now() + RECORD_ALLOWANCE / 2;

    let answer = ingestor.handle(batch, Some(deadline)).await.unwrap();

    assert_eq!(answer, json!({"batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "m-2"}]}));
}

#[test]
fn a_deadline_already_past_at_the_start_is_no_deadline() {
    let now = chrono::Utc::now();
    let in_30s = u64::try_from((now + chrono::Duration::seconds(30)).timestamp_millis()).unwrap();
    assert_eq!(invocation_deadline(in_30s, now).map(|d| d.timestamp_millis() as u64), Some(in_30s));
    assert_eq!(invocation_deadline(600_000, now), None, "cargo lambda watch's placeholder");
    assert_eq!(invocation_deadline(u64::MAX, now), None);
}

/// A store whose sources cannot be read.
struct Unreadable;

#[async_trait]
impl SourceStore for Unreadable {
    async fn create_source(&self, _: &gateway_core::Source) -> gateway_core::error::Result<()> {
        unreachable!("ingest writes no source")
    }
    async fn get_source(
        &self,
        _: &gateway_core::SourceName,
    ) -> gateway_core::error::Result<Option<gateway_core::Source>> {
        unreachable!("ingest reads every source at once")
    }
    async fn list_sources(
        &self,
        _: &gateway_core::PageRequest,
    ) -> gateway_core::error::Result<gateway_core::Page<gateway_core::Source>> {
        unreachable!("ingest reads every source at once")
    }
    async fn replace_source(&self, _: &gateway_core::Source) -> gateway_core::error::Result<()> {
        unreachable!("ingest writes no source")
    }
    async fn delete_source(
        &self,
        _: &gateway_core::SourceName,
        _: Option<gateway_core::Version>,
    ) -> gateway_core::error::Result<()> {
        unreachable!("ingest writes no source")
    }
    async fn all_sources(&self) -> gateway_core::error::Result<Vec<gateway_core::Source>> {
        Err(Error::unavailable("DynamoDB is down"))
    }
}

#[tokio::test]
async fn when_the_sources_cannot_be_read_the_whole_event_comes_again_and_nothing_is_dead_lettered() {
    let (mut ingestor, kept) = ingestor(json!({"eventSource": ["aws:sqs"]})).await;
    ingestor.sources = Arc::new(Unreadable);

    let err = ingestor.handle(sqs_batch(&[("m-1", "{}"), ("m-2", "{}")]), None).await.unwrap_err();

    assert!(err.0.contains("the sources cannot be read"), "{err}");
    assert!(kept.0.lock().unwrap().is_empty(), "a record is not refused for a store that is down");
}
