//! The native AWS events room: the document a Lambda function receives from S3, SNS, SQS,
//! DynamoDB Streams, Kinesis or EventBridge, read into the core's [`NativeRecord`]s (one per
//! element of `Records`, or the whole event for EventBridge) with the `aws_lambda_events` types.
//! Both the cloud `ingest` function and the local `POST /ingest/aws` read documents here.
//!
//! What a record's trigger carries is what its user cares about: S3 and EventBridge, the record
//! or event itself; SNS, the `Message`; SQS, the `body`; Kinesis, the decoded `data`; DynamoDB
//! Streams, `{eventName, keys, newImage, oldImage}` with the images as plain JSON. A record that
//! does not read as its kind is still a record: it carries why, and the ingest rejects it.

use aws_lambda_events::event::dynamodb::EventRecord as DynamoDbRecord;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::kinesis::KinesisEventRecord;
use aws_lambda_events::event::s3::S3EventRecord;
use aws_lambda_events::event::sns::SnsRecord;
use aws_lambda_events::event::sqs::SqsMessage;
use gateway_core::ingest::NativeRecord;
use gateway_core::SourceKind;
use serde_json::{json, Value};

/// A document that is none of the events this reads.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnknownShape(pub String);

/// The records of one document, all of one kind.
#[derive(Debug)]
pub struct NativeDocument {
    pub kind: SourceKind,
    pub records: Vec<NativeRecord>,
}

/// Reads a document as Lambda delivers it: its shape from `Records[0].eventSource` (SNS spells
/// it `EventSource`), or `source` and `detail-type` for an EventBridge event.
pub fn read(document: &Value) -> Result<NativeDocument, UnknownShape> {
    if let Some(records) = document.get("Records") {
        let records = records.as_array().ok_or_else(|| UnknownShape("Records is not an array".into()))?;
        let first =
            records.first().ok_or_else(|| UnknownShape("Records is empty: no record to tell its source by".into()))?;
        let source = first
            .get("eventSource")
            .or_else(|| first.get("EventSource"))
            .and_then(Value::as_str)
            .ok_or_else(|| UnknownShape("Records[0] has no eventSource (or EventSource)".into()))?;
        let kind = match source {
            "aws:s3" => SourceKind::S3,
            "aws:sns" => SourceKind::Sns,
            "aws:sqs" => SourceKind::Sqs,
            "aws:dynamodb" => SourceKind::DynamoDb,
            "aws:kinesis" => SourceKind::Kinesis,
            other => {
                return Err(UnknownShape(format!(
                    "records from '{}' are not read here: aws:s3, aws:sns, aws:sqs, aws:dynamodb and aws:kinesis are",
                    other.chars().take(64).collect::<String>()
                )))
            }
        };
        let records = records.iter().enumerate().map(|(index, raw)| record(kind, index, raw)).collect();
        return Ok(NativeDocument { kind, records });
    }
    let is_eventbridge = document.get("source").is_some_and(Value::is_string)
        && document.get("detail-type").is_some_and(Value::is_string);
    if is_eventbridge {
        return Ok(NativeDocument { kind: SourceKind::EventBridge, records: vec![eventbridge(document)] });
    }
    Err(UnknownShape(
        "not a native AWS event: expected Records (S3, SNS, SQS, DynamoDB Streams, Kinesis) or an EventBridge event (source, detail-type)".into(),
    ))
}

fn record(kind: SourceKind, index: usize, raw: &Value) -> NativeRecord {
    let read = match kind {
        SourceKind::S3 => typed::<S3EventRecord>(raw).map(|r| s3(&r, raw)),
        SourceKind::Sns => typed::<SnsRecord>(raw).map(|r| sns(&r)),
        SourceKind::Sqs => typed::<SqsMessage>(raw).and_then(|r| sqs(&r)),
        SourceKind::DynamoDb => typed::<DynamoDbRecord>(raw).map(|r| dynamodb(&r, raw)),
        SourceKind::Kinesis => typed::<KinesisEventRecord>(raw).and_then(|r| kinesis(&r)),
        SourceKind::EventBridge => unreachable!("an EventBridge event has no Records"),
    };
    let (id, arn, payload, item_identifier) = match read {
        Ok(read) => read,
        // Still a record: matched as it is, rejected with why.
        Err(why) => (
            format!("record-{index}"),
            None,
            Err(format!("record {index} is not a readable {} record: {why}", kind.as_str())),
            raw.get("messageId").and_then(Value::as_str).map(str::to_owned),
        ),
    };
    NativeRecord { index, kind, id, arn, document: raw.clone(), payload, item_identifier }
}

/// Id, ARN, payload and batch item identifier.
type Read = (String, Option<String>, Result<Vec<u8>, String>, Option<String>);

fn typed<T: serde::de::DeserializeOwned>(raw: &Value) -> Result<T, String> {
    serde_json::from_value(raw.clone()).map_err(|e| e.to_string())
}

fn s3(r: &S3EventRecord, raw: &Value) -> Read {
    let (bucket, object) = (&r.s3.bucket, &r.s3.object);
    let id = format!(
        "{}/{}/{}",
        bucket.name.as_deref().unwrap_or_default(),
        object.key.as_deref().unwrap_or_default(),
        object.sequencer.as_deref().unwrap_or_default()
    );
    (id, bucket.arn.clone(), Ok(raw.to_string().into_bytes()), None)
}

fn sns(r: &SnsRecord) -> Read {
    let m = &r.sns;
    (m.message_id.clone(), Some(m.topic_arn.clone()), Ok(m.message.clone().into_bytes()), None)
}

fn sqs(r: &SqsMessage) -> Result<Read, String> {
    let id = r.message_id.clone().ok_or("it has no messageId")?;
    let body = r.body.clone().unwrap_or_default().into_bytes();
    Ok((id.clone(), r.event_source_arn.clone(), Ok(body), Some(id)))
}

fn kinesis(r: &KinesisEventRecord) -> Result<Read, String> {
    let id = r.event_id.clone().ok_or("it has no eventID")?;
    let data = r.kinesis.data.0.clone();
    Ok((id, r.event_source_arn.clone(), Ok(data), Some(r.kinesis.sequence_number.clone())))
}

/// `{eventName, keys, newImage, oldImage}`, the images turned from attribute values into plain
/// JSON by serde_dynamo; an image the record does not carry is `null`.
fn dynamodb(r: &DynamoDbRecord, raw: &Value) -> Read {
    let change = &raw["dynamodb"];
    let image = |name: &str, item: &serde_dynamo::Item| -> Result<Value, String> {
        if change.get(name).is_none_or(Value::is_null) {
            return Ok(Value::Null);
        }
        serde_dynamo::from_item(item.clone()).map_err(|e| format!("its {name} does not read as JSON: {e}"))
    };
    let payload = (|| {
        Ok::<_, String>(json!({
            "eventName": r.event_name,
            "keys": image("Keys", &r.change.keys)?,
            "newImage": image("NewImage", &r.change.new_image)?,
            "oldImage": image("OldImage", &r.change.old_image)?,
        }))
    })()
    .map(|v| v.to_string().into_bytes());
    (r.event_id.clone(), r.event_source_arn.clone(), payload, r.change.sequence_number.clone())
}

fn eventbridge(raw: &Value) -> NativeRecord {
    let (id, arn, payload) = match typed::<EventBridgeEvent<Value>>(raw) {
        Ok(event) => {
            let id = event.id.unwrap_or_default();
            (id, event.resources.and_then(|r| r.into_iter().next()), Ok(raw.to_string().into_bytes()))
        }
        Err(why) => (String::new(), None, Err(format!("not a readable EventBridge event: {why}"))),
    };
    NativeRecord {
        index: 0,
        kind: SourceKind::EventBridge,
        id,
        arn,
        document: raw.clone(),
        payload,
        item_identifier: None,
    }
}
