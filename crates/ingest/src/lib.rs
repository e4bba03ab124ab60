//! The cloud `ingest` function's logic: the native event a Lambda function receives from S3,
//! SNS, SQS, DynamoDB Streams, Kinesis or EventBridge, read by `gateway-aws-events`, run through
//! the core's ingest use case, and answered as Lambda expects:
//! - SQS, Kinesis, DynamoDB Streams (event source mappings): a partial batch response, so that
//!   only the records that failed for a reason that may pass come back (for a stream or a FIFO
//!   queue, from the first of them on, so that none runs ahead of it);
//! - S3, SNS, EventBridge (asynchronous invocations): success, or an error when any record must
//!   come again, so that Lambda retries the event (a record that did trigger answers with its
//!   first trigger then) and, past its retries, sends it to the on-failure destination.
//!
//! Rejected records (no source matched, the event refused the payload, too large) go to the
//! ingest dead-letter queue with their reason as message attributes; they are not retried.

mod dead_letter;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gateway_core::ingest::{self, IngestPorts, IngestReport};
use gateway_core::ports::{Clock, IdSource, SchemaLookup, SourceStore, TriggerAcceptor, TriggerSource};
use gateway_core::schema::SchemaCache;
use gateway_core::trigger::TriggerPorts;
use gateway_core::SourceKind;
use serde_json::{json, Value};

pub use dead_letter::{DeadLetters, SqsRejections};

/// The time the function keeps, before its deadline, for the record it is on: it starts no
/// record past `deadline - RECORD_ALLOWANCE`, and reports those left as failures, to come again,
/// rather than time out with the batch (a trigger is a few calls to DynamoDB and SNS, each
/// retried by the SDK; the template's timeout is 30 s).
pub const RECORD_ALLOWANCE: Duration = Duration::from_secs(10);

/// The deadline Lambda gives an invocation (`Lambda-Runtime-Deadline-Ms`), if it is one: a
/// deadline already past when the invocation starts is an emulator's placeholder (`cargo lambda
/// watch` sends 600 000, ten minutes after 1970), which would start no record at all.
pub fn invocation_deadline(deadline_ms: u64, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let deadline = DateTime::from_timestamp_millis(i64::try_from(deadline_ms).ok()?)?;
    (deadline > now).then_some(deadline)
}

/// Why the function fails its invocation, for Lambda to retry it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Retry(pub String);

/// Everything an invocation needs, built once at start-up.
pub struct Ingestor {
    pub trigger_source: Arc<dyn TriggerSource>,
    pub acceptor: Arc<dyn TriggerAcceptor>,
    pub sources: Arc<dyn SourceStore>,
    /// The registered schemas of resource events, and what event schemas `$ref`.
    pub registry: Arc<dyn SchemaLookup>,
    pub rejections: Arc<dyn DeadLetters>,
    pub schemas: SchemaCache,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdSource>,
    pub max_payload_bytes: usize,
}

impl Ingestor {
    /// Runs one invocation's document, due by `deadline` (Lambda's); the answer is Lambda's
    /// response.
    pub async fn handle(&self, document: Value, deadline: Option<DateTime<Utc>>) -> Result<Value, Retry> {
        let native = match gateway_aws_events::read(&document) {
            Ok(native) => native,
            Err(shape) => return self.unknown_shape(&document, &shape.0).await,
        };
        let ports = IngestPorts {
            trigger: TriggerPorts {
                source: self.trigger_source.as_ref(),
                acceptor: self.acceptor.as_ref(),
                schemas: &self.schemas,
                registry: self.registry.as_ref(),
                clock: self.clock.as_ref(),
                ids: self.ids.as_ref(),
            },
            sources: self.sources.as_ref(),
            rejections: &*self.rejections,
            max_payload_bytes: self.max_payload_bytes,
        };
        let start_by = deadline.map(|d| d - RECORD_ALLOWANCE);
        let report = match ingest::ingest(ports, &native.records, start_by).await {
            Ok(report) => report,
            // The sources cannot be read: every record must come again.
            Err(error) => {
                tracing::error!(%error, "cannot read the sources; the whole event will come again");
                return Err(Retry(format!("the sources cannot be read: {error}")));
            }
        };
        log(&report);
        answer(native.kind, &report)
    }

    /// A document no configured source should send: kept in the dead-letter queue rather than
    /// retried for ever or dropped.
    async fn unknown_shape(&self, document: &Value, why: &str) -> Result<Value, Retry> {
        tracing::error!(why, "the function received an event it cannot read; it is dead-lettered");
        match self.rejections.unreadable(document, why).await {
            Ok(()) => Ok(json!({})),
            Err(error) => Err(Retry(format!("cannot dead-letter an unreadable event: {error}"))),
        }
    }
}

fn log(report: &IngestReport) {
    for t in &report.triggers {
        tracing::info!(record = t.record, source = %t.source, event = %t.event, event_id = %t.event_id, "native record triggered its event");
    }
    for r in &report.rejected {
        tracing::warn!(record = r.record, source = ?r.source.as_ref().map(|s| s.as_str()), reason = %r.reason, "native record rejected");
    }
    for f in &report.failures {
        tracing::warn!(record = f.record, cause = %f.cause, "native record failed; it will come again");
    }
}

/// The response Lambda expects from this kind of source.
fn answer(kind: SourceKind, report: &IngestReport) -> Result<Value, Retry> {
    match kind {
        SourceKind::Sqs | SourceKind::Kinesis | SourceKind::DynamoDb => {
            let failures: Vec<Value> = report
                .failures
                .iter()
                .filter_map(|f| f.item_identifier.as_ref())
                .map(|id| json!({ "itemIdentifier": id }))
                .collect();
            // A failed record Lambda cannot name could only be retried with the whole batch.
            if failures.len() < report.failures.len() {
                return Err(Retry("a record without an identifier failed; the batch must come again".into()));
            }
            Ok(json!({ "batchItemFailures": failures }))
        }
        SourceKind::S3 | SourceKind::Sns | SourceKind::EventBridge => match report.failures.first() {
            None => Ok(json!({})),
            Some(first) => Err(Retry(format!("{} record(s) must come again: {}", report.failures.len(), first.cause))),
        },
    }
}

#[cfg(test)]
mod tests;
