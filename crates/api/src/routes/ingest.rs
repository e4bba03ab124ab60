//! `POST /ingest/aws`: a native AWS event document, exactly as a Lambda function would receive
//! it (the output of `sam local generate-event s3 put`, say), run through the same reading and
//! the same ingest use case as the cloud `ingest` function, so a native integration can be tried
//! on a laptop. The answer says what became of each record; rejections are logged too.

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use gateway_core::ingest::{self, FailureCause, IngestPorts, IngestReport, Rejection, RejectionSink};
use gateway_core::trigger::TriggerPorts;
use gateway_core::{EventId, EventName, SourceName};
use serde::Serialize;
use serde_json::Value;

use crate::extract::json_body;
use crate::problem::{problem_of, ApiError, Problem, PROBLEM_JSON};
use crate::SharedGateway;

/// The largest document taken: Lambda's limit for a synchronous invocation's payload, which an
/// event source mapping's batch fills (a native document is larger than any one payload).
pub const MAX_DOCUMENT_BYTES: usize = 6 * 1024 * 1024;

pub fn routes() -> Router<SharedGateway> {
    Router::new().route("/ingest/aws", post(ingest_aws).layer(DefaultBodyLimit::max(MAX_DOCUMENT_BYTES)))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(ingest_aws))]
pub struct Doc;

/// What became of each record of the document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestAnswer {
    /// One per record and source that matched it.
    triggers: Vec<IngestedTrigger>,
    /// Records refused for good (no source matched, the event refused the payload, too large),
    /// one per record and source; not retried.
    rejected: Vec<RejectedRecord>,
    /// What the cloud function would report for Lambda to deliver again: the queue message or
    /// stream record (for S3, SNS and EventBridge, which Lambda retries whole, the native id).
    batch_item_failures: Vec<BatchItemFailure>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct IngestedTrigger {
    /// The record's place in the document, from 0.
    record: usize,
    source: SourceName,
    event: EventName,
    event_id: EventId,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RejectedRecord {
    record: usize,
    /// The source it was refused for; absent when no source matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<SourceName>,
    reason: Problem,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct BatchItemFailure {
    item_identifier: String,
    record: usize,
    /// Why it is to come again (the cause, when the store failed, is logged, not answered).
    error: String,
}

impl IngestAnswer {
    fn from(report: IngestReport, document: &gateway_aws_events::NativeDocument) -> Self {
        let native_id = |record: usize| document.records.get(record).map(|r| r.id.clone()).unwrap_or_default();
        Self {
            triggers: report
                .triggers
                .into_iter()
                .map(|t| IngestedTrigger { record: t.record, source: t.source, event: t.event, event_id: t.event_id })
                .collect(),
            rejected: report
                .rejected
                .into_iter()
                .map(|r| RejectedRecord {
                    record: r.record,
                    source: r.source,
                    reason: ApiError::Core(r.reason).problem(),
                })
                .collect(),
            batch_item_failures: report
                .failures
                .into_iter()
                .map(|f| {
                    tracing::warn!(record = f.record, cause = %f.cause, "native record failed; it would come again");
                    let error = match &f.cause {
                        FailureCause::Error(error) => problem_of(error).detail,
                        other => other.to_string(),
                    };
                    BatchItemFailure {
                        item_identifier: f.item_identifier.unwrap_or_else(|| native_id(f.record)),
                        record: f.record,
                        error,
                    }
                })
                .collect(),
        }
    }
}

/// The local gateway's rejections: logged, as well as answered.
struct LoggedRejections;

#[async_trait]
impl RejectionSink for LoggedRejections {
    async fn reject(&self, r: &Rejection<'_>) -> gateway_core::error::Result<()> {
        tracing::warn!(
            record = r.record.index, kind = r.record.kind.as_str(), id = %r.record.id,
            source = r.source.map(SourceName::as_str), reason = %r.reason, "native record rejected"
        );
        Ok(())
    }
}

/// Ingest a native AWS event document as a Lambda function would receive it (local gateway).
///
/// The body is the JSON document an S3, SNS, SQS, DynamoDB Streams, Kinesis or EventBridge
/// integration hands a Lambda function. Each record (the whole event, for EventBridge) is
/// matched against every source's pattern and triggers each matching source's event, validated
/// and fanned out like an HTTP trigger; a record delivered again answers with its first trigger.
#[utoipa::path(post, path = "/ingest/aws", tag = "ingest",
    request_body(content = crate::doc::NativeEventDocument, description = "A native AWS event document: `Records` of S3, SNS, SQS, DynamoDB Streams or Kinesis, or an EventBridge event"),
    responses(
        (status = 200, description = "What became of each record", body = IngestAnswer),
        (status = 400, description = "Malformed JSON, or a document of no known shape", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Body over 6 MiB (Lambda's limit for a batch), or a record's payload over the trigger payload limit is rejected instead", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "A JSON body that is not an object", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn ingest_aws(
    State(g): State<SharedGateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IngestAnswer>, ApiError> {
    let document: Value = json_body(&headers, body, MAX_DOCUMENT_BYTES)?;
    let native = gateway_aws_events::read(&document).map_err(|e| ApiError::UnknownNativeEvent(e.0))?;
    let ports = IngestPorts {
        trigger: TriggerPorts {
            source: g.trigger_source.as_ref(),
            acceptor: g.acceptor.as_ref(),
            schemas: &g.schemas,
            registry: g.registry.as_ref(),
            clock: g.clock.as_ref(),
            ids: g.ids.as_ref(),
        },
        sources: g.sources.as_ref(),
        rejections: &LoggedRejections,
        max_payload_bytes: g.max_payload_bytes,
    };
    // No deadline: the local gateway is not a Lambda invocation.
    let report = ingest::ingest(ports, &native.records, None).await?;
    Ok(Json(IngestAnswer::from(report, &native)))
}
