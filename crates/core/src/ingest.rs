//! The ingest use case: native AWS records in (an S3 notification, an SQS or SNS message, a
//! DynamoDB Streams or Kinesis record, an EventBridge event), one trigger out for each record and
//! each source whose pattern matches it, through the same trigger use case and acceptor as an
//! HTTP trigger.
//!
//! AWS delivers at least once, so a record's native id is its trigger's idempotency key: a record
//! delivered again answers with the trigger it made the first time. A record no source matches,
//! or whose payload its event refuses, is rejected with the reason (and handed to the
//! [`RejectionSink`]); it is not retried. A record that failed for a reason that may pass (the
//! store or the topic unreachable) is a failure, for Lambda to deliver again.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::{Error, Result, Violation};
use crate::ids::{EventId, EventName, IdempotencyKey, SourceName};
use crate::model::{Origin, Source, SourceKind};
use crate::ports::SourceStore;
use crate::trigger::{self, TriggerPorts, TriggerRequest};

/// One native record, as an inbound adapter read it from the document AWS delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct NativeRecord {
    /// Its place in the document, from 0.
    pub index: usize,
    pub kind: SourceKind,
    /// The native id: what is the same in every delivery of the record, and differs between
    /// records (see `gateway-aws-events` for each kind's).
    pub id: String,
    /// The bucket, topic, queue or stream ARN, or the EventBridge event's first resource.
    pub arn: Option<String>,
    /// The record as AWS delivers it: what source patterns are matched against.
    pub document: Value,
    /// What a trigger of it carries, or why the record has nothing a trigger could carry.
    pub payload: std::result::Result<Vec<u8>, String>,
    /// How Lambda's partial batch response names it (SQS `messageId`, a stream's sequence
    /// number); none for sources Lambda invokes asynchronously.
    pub item_identifier: Option<String>,
}

impl NativeRecord {
    /// Whether Lambda hands this record over in order with the ones after it, so that if it must
    /// come again they must come with it: a stream's record (Kinesis, DynamoDB Streams), or a
    /// message of a FIFO queue (its ARN ends in `.fifo`), whose group Lambda keeps in order only
    /// if the function stops at the first failure and reports the rest as failed too.
    pub fn is_ordered(&self) -> bool {
        self.kind.is_stream()
            || (self.kind == SourceKind::Sqs && self.arn.as_deref().is_some_and(|arn| arn.ends_with(".fifo")))
    }
}

/// Where rejected records go: locally they are logged (and answered), in the cloud they go to
/// the ingest dead-letter queue with their reason.
#[async_trait]
pub trait RejectionSink: Send + Sync {
    async fn reject(&self, rejection: &Rejection<'_>) -> Result<()>;
}

/// A record refused for good, for one source (or for none: no source matched).
#[derive(Debug)]
pub struct Rejection<'a> {
    pub record: &'a NativeRecord,
    pub source: Option<&'a SourceName>,
    pub reason: &'a Error,
}

/// The ports ingesting touches.
#[derive(Clone, Copy)]
pub struct IngestPorts<'a> {
    pub trigger: TriggerPorts<'a>,
    pub sources: &'a dyn SourceStore,
    pub rejections: &'a dyn RejectionSink,
    /// The largest payload a trigger may carry, as for an HTTP trigger.
    pub max_payload_bytes: usize,
}

/// What became of each record.
#[derive(Debug, Default)]
pub struct IngestReport {
    pub triggers: Vec<Triggered>,
    pub rejected: Vec<Rejected>,
    /// Records to have again: they failed for a reason that may pass (or, on a stream, came
    /// after one that did).
    pub failures: Vec<Failure>,
}

#[derive(Debug)]
pub struct Triggered {
    pub record: usize,
    pub source: SourceName,
    pub event: EventName,
    pub event_id: EventId,
}

#[derive(Debug)]
pub struct Rejected {
    pub record: usize,
    /// The source it was refused for; none if no source matched.
    pub source: Option<SourceName>,
    pub reason: Error,
}

#[derive(Debug)]
pub struct Failure {
    pub record: usize,
    pub item_identifier: Option<String>,
    pub cause: FailureCause,
}

/// Why a record is to come again.
#[derive(Debug, thiserror::Error)]
pub enum FailureCause {
    /// Triggering it, or dead-lettering its rejection, failed for a reason that may pass.
    #[error(transparent)]
    Error(Error),
    #[error("held back behind an earlier record that failed (of a stream or a FIFO queue)")]
    HeldBack,
    #[error("not started: the invocation was running out of time")]
    OutOfTime,
}

/// Triggers every source each record matches. Fails only if the sources cannot be read, when
/// every record is to be had again.
///
/// `start_by` is the last moment to start a record: the invocation's deadline less the time one
/// record may take. The records not started by then are failures, to come again, rather than the
/// whole batch timing out and coming again with them.
pub async fn ingest(
    ports: IngestPorts<'_>,
    records: &[NativeRecord],
    start_by: Option<DateTime<Utc>>,
) -> Result<IngestReport> {
    let sources = ports.sources.all_sources().await?;
    let mut report = IngestReport::default();
    // Once set, why every record left comes again without being started.
    let mut stop: Option<fn() -> FailureCause> = None;
    for record in records {
        if stop.is_none() && start_by.is_some_and(|last| ports.trigger.clock.now() >= last) {
            stop = Some(|| FailureCause::OutOfTime);
        }
        if let Some(cause) = stop {
            report.failures.push(Failure {
                record: record.index,
                item_identifier: record.item_identifier.clone(),
                cause: cause(),
            });
            continue;
        }
        let failed_before = report.failures.len();
        ingest_record(ports, &sources, record, &mut report).await;
        // A stream's records, and a FIFO queue's messages, are handed over in order: once one must
        // come again, the ones after it come again with it, so none runs ahead.
        if record.is_ordered() && report.failures.len() > failed_before {
            stop = Some(|| FailureCause::HeldBack);
        }
    }
    Ok(report)
}

async fn ingest_record(ports: IngestPorts<'_>, sources: &[Source], record: &NativeRecord, report: &mut IngestReport) {
    let matched: Vec<&Source> = crate::sources::matching(sources, &record.document).collect();
    // One failure is enough for the record to come again; the sources that did trigger then
    // answer with their first trigger (the idempotency key), so none triggers twice. The first
    // failure is the one reported: what follows it is often its consequence.
    let mut failed: Option<Error> = None;
    if matched.is_empty() {
        let reason = Error::NoSourceMatched { kind: record.kind.as_str() };
        if let Err(error) = dead_letter(ports, record, None, reason, report).await {
            failed.get_or_insert(error);
        }
    }
    for source in matched {
        match trigger_for(ports, record, source).await {
            Ok(event_id) => report.triggers.push(Triggered {
                record: record.index,
                source: source.name.clone(),
                event: source.event.clone(),
                event_id,
            }),
            Err(error) if is_transient(&error) => {
                failed.get_or_insert(error);
            }
            Err(reason) => {
                if let Err(error) = dead_letter(ports, record, Some(&source.name), reason, report).await {
                    failed.get_or_insert(error);
                }
            }
        }
    }
    if let Some(error) = failed {
        report.failures.push(Failure {
            record: record.index,
            item_identifier: record.item_identifier.clone(),
            cause: FailureCause::Error(error),
        });
    }
}

async fn trigger_for(ports: IngestPorts<'_>, record: &NativeRecord, source: &Source) -> Result<EventId> {
    let payload = match &record.payload {
        Ok(payload) => payload.clone(),
        Err(why) => return Err(Error::invalid_body(vec![Violation::new("", why.clone())])),
    };
    if payload.len() > ports.max_payload_bytes {
        return Err(Error::PayloadTooLarge(format!(
            "the record's payload is {} bytes, over the limit of {} bytes",
            payload.len(),
            ports.max_payload_bytes
        )));
    }
    let request = TriggerRequest {
        event: source.event.clone(),
        content_type: None,
        payload,
        idempotency_key: Some(idempotency_key(&source.name, record)),
        source: Some(Origin {
            name: source.name.clone(),
            kind: record.kind,
            id: record.id.clone(),
            arn: record.arn.clone(),
        }),
        cloud_event: None,
    };
    Ok(trigger::trigger(ports.trigger, request).await?.event_id)
}

/// The key that makes a record delivered again answer with its first trigger: the source and a
/// digest of the native id (an S3 key may be 1024 bytes of anything; a key is 255 visible ASCII).
pub fn idempotency_key(source: &SourceName, record: &NativeRecord) -> IdempotencyKey {
    IdempotencyKey::native(source, &crate::digest::sha256_hex(&[record.kind.as_str().as_bytes(), record.id.as_bytes()]))
}

/// Errors that may pass if the record comes again.
fn is_transient(error: &Error) -> bool {
    matches!(error, Error::Unavailable(_) | Error::NotAccepted(_))
}

/// Hands a rejection to the sink and reports it. If the sink fails, the error is returned: the
/// record must come again rather than be dropped without a trace.
async fn dead_letter(
    ports: IngestPorts<'_>,
    record: &NativeRecord,
    source: Option<&SourceName>,
    reason: Error,
    report: &mut IngestReport,
) -> Result<()> {
    ports.rejections.reject(&Rejection { record, source, reason: &reason }).await?;
    report.rejected.push(Rejected { record: record.index, source: source.cloned(), reason });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;
    use crate::memory::MemoryStore;
    use crate::model::{SourceDraft, Trigger};
    use crate::ports::{Acceptance, DeliveryLog, SystemClock, TriggerAcceptor, UlidSource};
    use crate::schema::SchemaCache;
    use crate::{events, sources, EventDraft, IdempotencyKey};

    /// Rejections kept, and a switch to make the sink (the DLQ) fail.
    #[derive(Default)]
    struct Sink {
        kept: Mutex<Vec<(usize, Option<String>, String)>>,
        broken: Mutex<bool>,
    }

    #[async_trait]
    impl RejectionSink for Sink {
        async fn reject(&self, r: &Rejection<'_>) -> Result<()> {
            if *self.broken.lock().unwrap() {
                return Err(Error::unavailable("SQS is down"));
            }
            self.kept.lock().unwrap().push((r.record.index, r.source.map(|s| s.to_string()), r.reason.to_string()));
            Ok(())
        }
    }

    /// The memory store's acceptor, failing (transiently) while `down` is set.
    struct Flaky<'a> {
        store: &'a MemoryStore,
        down: Mutex<bool>,
    }

    #[async_trait]
    impl TriggerAcceptor for Flaky<'_> {
        async fn accept(&self, t: &Trigger, key: Option<&IdempotencyKey>) -> Result<Acceptance> {
            if *self.down.lock().unwrap() {
                return Err(Error::unavailable("SNS is down"));
            }
            self.store.accept(t, key).await
        }
    }

    async fn store_with(sources: &[(&str, &str, serde_json::Value)], schema: Option<serde_json::Value>) -> MemoryStore {
        let store = MemoryStore::new();
        for (_, event, _) in sources {
            let draft = EventDraft {
                name: Some(EventName::parse(event).unwrap()),
                schema: schema.clone(),
                ..Default::default()
            };
            let _ = events::define_event(&store, &store, &SystemClock, draft).await;
        }
        for (name, event, pattern) in sources {
            let draft: SourceDraft =
                serde_json::from_value(json!({"name": name, "event": event, "pattern": pattern})).unwrap();
            sources::define_source(&store, &SystemClock, draft).await.unwrap();
        }
        store
    }

    fn sqs(index: usize, id: &str, body: &str) -> NativeRecord {
        NativeRecord {
            index,
            kind: SourceKind::Sqs,
            id: id.into(),
            arn: Some("arn:aws:sqs:us-east-1:123456789012:uploads".into()),
            document: json!({"eventSource": "aws:sqs", "messageId": id, "body": body}),
            payload: Ok(body.as_bytes().to_vec()),
            item_identifier: Some(id.into()),
        }
    }

    fn kinesis(index: usize, seq: &str) -> NativeRecord {
        NativeRecord {
            index,
            kind: SourceKind::Kinesis,
            id: format!("shardId-000:{seq}"),
            arn: None,
            document: json!({"eventSource": "aws:kinesis"}),
            payload: Ok(br#"{"n": 1}"#.to_vec()),
            item_identifier: Some(seq.into()),
        }
    }

    async fn run(
        store: &MemoryStore,
        acceptor: &dyn TriggerAcceptor,
        sink: &Sink,
        records: &[NativeRecord],
    ) -> IngestReport {
        let schemas = SchemaCache::new();
        let ports = IngestPorts {
            trigger: TriggerPorts {
                source: store,
                acceptor,
                schemas: &schemas,
                registry: store,
                clock: &SystemClock,
                ids: &UlidSource,
            },
            sources: store,
            rejections: sink,
            max_payload_bytes: 64,
        };
        ingest(ports, records, None).await.unwrap()
    }

    #[tokio::test]
    async fn a_record_triggers_every_source_it_matches_once_and_again_answers_the_first_trigger() {
        // GIVEN two sources on two events matching SQS records, and one matching S3 only
        let store = store_with(
            &[
                ("queue-a", "a.happened", json!({"eventSource": ["aws:sqs"]})),
                ("queue-b", "b.happened", json!({"body": [{"prefix": "{"}]})),
                ("bucket", "c.happened", json!({"eventSource": ["aws:s3"]})),
            ],
            None,
        )
        .await;
        let sink = Sink::default();
        let record = sqs(0, "m-1", r#"{"n": 1}"#);

        // WHEN the record comes, then comes again (AWS delivers at least once)
        let first = run(&store, &store, &sink, std::slice::from_ref(&record)).await;
        let again = run(&store, &store, &sink, &[record]).await;

        // THEN each matching source triggered its event, once: the second delivery answers the same
        let by_source =
            |r: &IngestReport| r.triggers.iter().map(|t| (t.source.to_string(), t.event_id)).collect::<Vec<_>>();
        assert_eq!(first.triggers.len(), 2);
        assert_eq!(by_source(&first), by_source(&again));
        assert!(first.rejected.is_empty() && first.failures.is_empty());
        let log = store.deliveries_of_trigger(&first.triggers[0].event_id).await.unwrap();
        assert_eq!(log, Some(Vec::new()), "a trigger of an event without subscriptions");
    }

    #[tokio::test]
    async fn a_record_no_source_matches_or_its_event_refuses_is_rejected_with_its_reason() {
        let store = store_with(
            &[("queue", "orders.created", json!({"eventSource": ["aws:sqs"]}))],
            Some(json!({"type": "object", "required": ["orderId"]})),
        )
        .await;
        let sink = Sink::default();
        let unmatched =
            NativeRecord { kind: SourceKind::S3, document: json!({"eventSource": "aws:s3"}), ..sqs(0, "s", "{}") };
        let records = [
            unmatched,
            sqs(1, "m-1", r#"{"n": 1}"#),
            sqs(2, "m-2", "not json"),
            sqs(3, "m-3", &format!(r#"{{"orderId": "{}"}}"#, "x".repeat(80))),
            NativeRecord { payload: Err("the NewImage is not JSON".into()), ..sqs(4, "m-4", "{}") },
            sqs(5, "m-5", r#"{"orderId": "o-1"}"#),
        ];

        let report = run(&store, &store, &sink, &records).await;

        let reasons: Vec<(usize, &str)> = report
            .rejected
            .iter()
            .map(|r| {
                let kind = match &r.reason {
                    Error::NoSourceMatched { .. } => "no-source",
                    Error::PayloadRejected { .. } => "schema",
                    Error::MalformedPayload(_) => "not-json",
                    Error::PayloadTooLarge(_) => "too-large",
                    Error::InvalidInput { .. } => "no-payload",
                    other => panic!("unexpected {other:?}"),
                };
                (r.record, kind)
            })
            .collect();
        assert_eq!(reasons, [(0, "no-source"), (1, "schema"), (2, "not-json"), (3, "too-large"), (4, "no-payload")]);
        assert_eq!(report.triggers.iter().map(|t| t.record).collect::<Vec<_>>(), [5]);
        assert!(report.failures.is_empty(), "a rejection is not retried");
        assert_eq!(sink.kept.lock().unwrap().len(), 5, "every rejection reached the sink");
        assert_eq!(sink.kept.lock().unwrap()[0].1, None, "no source matched the first");
    }

    #[tokio::test]
    async fn a_transient_failure_asks_for_the_record_again_and_a_stream_holds_back_what_follows() {
        let store = store_with(&[("stream", "ticks", json!({"eventSource": ["aws:kinesis", "aws:sqs"]}))], None).await;
        let sink = Sink::default();
        let flaky = Flaky { store: &store, down: Mutex::new(true) };

        let queue = run(&store, &flaky, &sink, &[sqs(0, "m-1", "{}"), sqs(1, "m-2", "{}")]).await;
        assert_eq!(
            queue.failures.iter().map(|f| f.item_identifier.as_deref()).collect::<Vec<_>>(),
            [Some("m-1"), Some("m-2")],
            "each queue message comes again on its own"
        );

        *flaky.down.lock().unwrap() = false;
        let stream = run(&store, &flaky, &sink, &[kinesis(0, "1"), kinesis(1, "2")]).await;
        assert_eq!(stream.triggers.len(), 2);
        *flaky.down.lock().unwrap() = true;
        let stream = run(&store, &flaky, &sink, &[kinesis(0, "3"), kinesis(1, "4")]).await;
        let failed: Vec<_> = stream.failures.iter().map(|f| f.item_identifier.as_deref()).collect();
        assert_eq!(failed, [Some("3"), Some("4")], "the record after a failed one is held back, not run ahead");
        assert!(matches!(stream.failures[1].cause, FailureCause::HeldBack));
    }

    #[tokio::test]
    async fn a_fifo_queue_holds_back_the_messages_after_a_failed_one_and_a_standard_queue_does_not() {
        let store = store_with(&[("queue", "ticks", json!({"eventSource": ["aws:sqs"]}))], None).await;
        let sink = Sink::default();
        let flaky = Flaky { store: &store, down: Mutex::new(false) };
        let fifo = |index, id: &str, body: &str| NativeRecord {
            arn: Some("arn:aws:sqs:us-east-1:123456789012:payments.fifo".into()),
            ..sqs(index, id, body)
        };
        // (the first record of each batch triggers before the acceptor goes down)
        let first = run(&store, &flaky, &sink, &[fifo(0, "f-0", "{}"), sqs(1, "s-0", "{}")]).await;
        assert_eq!(first.triggers.len(), 2);
        *flaky.down.lock().unwrap() = true;

        let batch = [fifo(0, "f-1", "{}"), fifo(1, "f-2", r#"{"n": 2}"#), fifo(2, "f-3", "not json")];
        let report = run(&store, &flaky, &sink, &batch).await;
        let failed: Vec<_> = report.failures.iter().map(|f| f.item_identifier.as_deref()).collect();
        assert_eq!(failed, [Some("f-1"), Some("f-2"), Some("f-3")], "none runs ahead of the failed one");
        assert!(report.rejected.is_empty(), "a held-back message is not even read: {:?}", report.rejected);

        let standard = run(&store, &flaky, &sink, &[sqs(0, "s-1", "{}"), sqs(1, "s-2", "not json")]).await;
        assert_eq!(standard.failures.len(), 1, "a standard queue's messages stand alone");
        assert_eq!(standard.rejected.len(), 1);
    }

    #[tokio::test]
    async fn a_rejection_the_sink_cannot_take_makes_the_record_come_again() {
        let store = store_with(&[("queue", "orders.created", json!({"eventSource": ["aws:s3"]}))], None).await;
        let sink = Sink::default();
        *sink.broken.lock().unwrap() = true;
        let report = run(&store, &store, &sink, &[sqs(0, "m-1", "{}")]).await;
        assert!(report.rejected.is_empty());
        assert_eq!(report.failures.len(), 1, "rather than dropped without a trace");
    }

    /// Fails (transiently) the triggers of one event only.
    struct DownFor<'a>(&'a MemoryStore, &'static str);

    #[async_trait]
    impl TriggerAcceptor for DownFor<'_> {
        async fn accept(&self, t: &Trigger, key: Option<&IdempotencyKey>) -> Result<Acceptance> {
            if t.event.as_str() == self.1 {
                return Err(Error::unavailable("SNS is down"));
            }
            self.0.accept(t, key).await
        }
    }

    #[tokio::test]
    async fn a_record_that_triggers_one_source_is_refused_by_another_and_fails_a_third_comes_again_once() {
        // GIVEN three sources matching one record: one plain, one whose event requires a field
        // the record lacks, one whose trigger cannot be accepted right now
        let store = store_with(
            &[
                ("plain", "a.happened", json!({"eventSource": ["aws:sqs"]})),
                ("strict", "b.happened", json!({"eventSource": ["aws:sqs"]})),
                ("down", "c.happened", json!({"eventSource": ["aws:sqs"]})),
            ],
            None,
        )
        .await;
        let strict = EventDraft {
            name: Some(EventName::parse("b.happened").unwrap()),
            schema: Some(json!({"type": "object", "required": ["orderId"]})),
            ..Default::default()
        };
        events::replace_event(&store, &store, &SystemClock, &EventName::parse("b.happened").unwrap(), strict, None)
            .await
            .unwrap();
        let sink = Sink::default();

        // WHEN the record comes
        let report = run(&store, &DownFor(&store, "c.happened"), &sink, &[sqs(0, "m-1", "{}")]).await;

        // THEN one source triggered, one rejected it (dead-lettered), and the record is to come
        // again once, for the source that failed
        assert_eq!(report.triggers.iter().map(|t| t.source.as_str()).collect::<Vec<_>>(), ["plain"]);
        assert_eq!(report.rejected.iter().map(|r| r.source.as_ref().unwrap().as_str()).collect::<Vec<_>>(), ["strict"]);
        assert!(matches!(report.rejected[0].reason, Error::PayloadRejected { .. }), "{:?}", report.rejected[0]);
        assert_eq!(sink.kept.lock().unwrap().len(), 1);
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        assert!(report.failures[0].cause.to_string().contains("SNS is down"), "{:?}", report.failures);

        // WHEN it comes again and the acceptor is back
        let again = run(&store, &store, &sink, &[sqs(0, "m-1", "{}")]).await;

        // THEN the first source answers with its first trigger and the third triggers now
        assert_eq!(again.triggers.len(), 2);
        let plain = again.triggers.iter().find(|t| t.source.as_str() == "plain").unwrap();
        assert_eq!(plain.event_id, report.triggers[0].event_id, "not triggered twice");
        assert!(again.triggers.iter().any(|t| t.source.as_str() == "down"));
        assert!(again.failures.is_empty());
    }

    #[tokio::test]
    async fn the_records_not_started_by_the_deadline_come_again_and_none_triggers() {
        let store = store_with(&[("queue", "ticks", json!({"eventSource": ["aws:sqs"]}))], None).await;
        let sink = Sink::default();
        let schemas = SchemaCache::new();
        let ports = IngestPorts {
            trigger: TriggerPorts {
                source: &store,
                acceptor: &store,
                schemas: &schemas,
                registry: &store,
                clock: &SystemClock,
                ids: &UlidSource,
            },
            sources: &store,
            rejections: &sink,
            max_payload_bytes: 64,
        };
        let records = [sqs(0, "m-1", "{}"), sqs(1, "m-2", "{}")];

        let late = ingest(ports, &records, Some(Utc::now())).await.unwrap();
        assert!(late.triggers.is_empty());
        assert_eq!(late.failures.iter().map(|f| f.record).collect::<Vec<_>>(), [0, 1]);
        assert!(matches!(late.failures[0].cause, FailureCause::OutOfTime), "{:?}", late.failures);

        let on_time = ingest(ports, &records, Some(Utc::now() + chrono::Duration::minutes(1))).await.unwrap();
        assert_eq!(on_time.triggers.len(), 2);
    }

    #[test]
    fn the_idempotency_key_fits_any_native_id_and_differs_by_source_and_id() {
        let a = SourceName::parse("uploads").unwrap();
        let b = SourceName::parse("archive").unwrap();
        let long = NativeRecord { id: format!("bucket/{}/seq", "ключ".repeat(300)), ..sqs(0, "x", "{}") };
        let key = idempotency_key(&a, &long);
        assert!(key.as_str().len() <= 255 && key.as_str().starts_with("src:uploads:"));
        assert_ne!(idempotency_key(&a, &long), idempotency_key(&b, &long));
        assert_ne!(idempotency_key(&a, &long), idempotency_key(&a, &sqs(0, "y", "{}")));
        assert!(idempotency_key(&a, &long).is_native(), "it lasts as long as AWS may deliver the record again");
    }
}
