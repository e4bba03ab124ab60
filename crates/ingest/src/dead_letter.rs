//! The ingest dead-letter queue on SQS: a rejected record, with why, for someone to read.
//!
//! The body is the record as AWS delivered it (cut to a summary when it would not fit an SQS
//! message); the message attributes say why: `reason` (the problem type, such as
//! `/problems/payload-rejected`), `detail`, and `kind`, `recordId` and `source` where known.

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageAttributeValue;
use aws_sdk_sqs::Client;
use gateway_api::problem_of;
use gateway_core::ingest::{NativeRecord, Rejection, RejectionSink};
use gateway_core::{Error, SourceKind};
use serde_json::{json, Value};

/// SQS's largest message, less room for the attributes.
const MAX_BODY_BYTES: usize = 240 * 1024;
/// SQS refuses attribute values past 256 KiB in all; details are cut well before.
const MAX_DETAIL_CHARS: usize = 2048;

pub struct SqsRejections {
    client: Client,
    queue_url: String,
}

impl SqsRejections {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }
}

fn attribute(value: &str) -> Result<MessageAttributeValue, Error> {
    MessageAttributeValue::builder().data_type("String").string_value(value).build().map_err(Error::unavailable)
}

#[async_trait]
impl RejectionSink for SqsRejections {
    async fn reject(&self, r: &Rejection<'_>) -> gateway_core::error::Result<()> {
        let problem = problem_of(r.reason);
        let mut body = r.record.document.to_string();
        if body.len() > MAX_BODY_BYTES {
            body =
                json!({"kind": r.record.kind, "id": r.record.id, "arn": r.record.arn, "truncated": true}).to_string();
        }
        let detail: String = problem.detail.chars().take(MAX_DETAIL_CHARS).collect();
        let mut send = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_attributes("reason", attribute(&problem.problem_type)?)
            .message_attributes("detail", attribute(if detail.is_empty() { "-" } else { &detail })?)
            .message_attributes("kind", attribute(r.record.kind.as_str())?);
        if !r.record.id.is_empty() {
            send = send.message_attributes("recordId", attribute(&r.record.id)?);
        }
        if let Some(source) = r.source {
            send = send.message_attributes("source", attribute(source.as_str())?);
        }
        send.send().await.map_err(|e| {
            Error::unavailable(format!(
                "SQS SendMessage to the ingest dead-letter queue failed: {}",
                DisplayErrorContext(&e)
            ))
        })?;
        Ok(())
    }
}

/// A whole document that is none of the native events read here, as a rejection of its own.
pub struct UnknownDocument {
    record: NativeRecord,
    reason: Error,
}

impl UnknownDocument {
    pub fn rejection(&self) -> Rejection<'_> {
        Rejection { record: &self.record, source: None, reason: &self.reason }
    }
}

pub fn unknown_document(document: &Value, why: &str) -> UnknownDocument {
    UnknownDocument {
        record: NativeRecord {
            index: 0,
            kind: SourceKind::EventBridge,
            id: String::new(),
            arn: None,
            document: document.clone(),
            payload: Err(why.to_owned()),
            item_identifier: None,
        },
        reason: Error::invalid_body(vec![gateway_core::Violation::new("", why)]),
    }
}
