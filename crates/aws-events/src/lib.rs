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
use serde::Deserialize as _;
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
            batch_item_of(kind, raw),
        ),
    };
    NativeRecord { index, kind, id, arn, document: raw.clone(), payload, item_identifier }
}

/// How Lambda's partial batch response names a record of `kind`, read from the raw record.
fn batch_item_of(kind: SourceKind, raw: &Value) -> Option<String> {
    let at = match kind {
        SourceKind::Sqs => raw.get("messageId"),
        SourceKind::Kinesis => raw.get("kinesis").and_then(|k| k.get("sequenceNumber")),
        SourceKind::DynamoDb => raw.get("dynamodb").and_then(|d| d.get("SequenceNumber")),
        _ => None,
    };
    at.and_then(Value::as_str).map(str::to_owned)
}

/// Id, ARN, payload and batch item identifier.
type Read = (String, Option<String>, Result<Vec<u8>, String>, Option<String>);

fn typed<T: serde::de::DeserializeOwned>(raw: &Value) -> Result<T, String> {
    serde_json::from_value(raw.clone()).map_err(|e| e.to_string())
}

fn s3(r: &S3EventRecord, raw: &Value) -> Read {
    (s3_id(r), r.s3.bucket.arn.clone(), Ok(raw.to_string().into_bytes()), None)
}

/// Bucket, key, version, what happened, and its `sequencer` (S3's order of the changes to a key);
/// without one, the event's time. Two changes of one object never share an id, and the same
/// change delivered twice always does.
fn s3_id(r: &S3EventRecord) -> String {
    let (bucket, object) = (&r.s3.bucket, &r.s3.object);
    let order = match &object.sequencer {
        Some(sequencer) => sequencer.clone(),
        None => r.event_time.to_rfc3339(),
    };
    format!(
        "{}/{}/{}/{}/{order}",
        bucket.name.as_deref().unwrap_or_default(),
        object.key.as_deref().unwrap_or_default(),
        object.version_id.as_deref().unwrap_or_default(),
        r.event_name.as_deref().unwrap_or_default(),
    )
}

fn sns(r: &SnsRecord) -> Read {
    let m = &r.sns;
    (m.message_id.clone(), Some(m.topic_arn.clone()), Ok(m.message.clone().into_bytes()), None)
}

fn sqs(r: &SqsMessage) -> Result<Read, String> {
    let message_id = r.message_id.clone().ok_or("it has no messageId")?;
    let body = r.body.clone().unwrap_or_default();
    let id = carried_id(&body)
        .or_else(|| r.attributes.get("MessageDeduplicationId").map(|d| format!("fifo:{d}")))
        .unwrap_or_else(|| message_id.clone());
    Ok((id, r.event_source_arn.clone(), Ok(body.into_bytes()), Some(message_id)))
}

/// The id of what a queue carries, when it carries another service's event: SNS delivers a
/// notification to a queue more than once at times, each copy a new SQS message, so the queue's
/// `messageId` would trigger each copy; the notification's `MessageId` (an EventBridge event's
/// `id`, an S3 record's change) is the same in every copy.
fn carried_id(body: &str) -> Option<String> {
    if !body.trim_start().starts_with('{') {
        return None;
    }
    let carried: Value = serde_json::from_str(body).ok()?;
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    if carried.get("Type").and_then(Value::as_str) == Some("Notification") && carried.get("TopicArn").is_some() {
        return text(&carried, "MessageId").map(|id| format!("sns:{id}"));
    }
    if carried.get("detail-type").is_some() && carried.get("source").is_some() {
        return eventbridge_id(&carried).map(|id| format!("events:{id}"));
    }
    match carried.get("Records").and_then(Value::as_array).map(Vec::as_slice) {
        Some([record]) if record.get("eventSource").and_then(Value::as_str) == Some("aws:s3") => {
            typed::<S3EventRecord>(record).ok().map(|r| format!("s3:{}", s3_id(&r)))
        }
        _ => None,
    }
}

/// An EventBridge event's id; a replay from an archive keeps the id and adds `replay-name`,
/// which makes it another delivery of its own (an operator replays to run it again).
fn eventbridge_id(event: &Value) -> Option<String> {
    let id = event.get("id").and_then(Value::as_str).filter(|s| !s.is_empty())?;
    Some(match event.get("replay-name").and_then(Value::as_str) {
        Some(replay) => format!("{id}/replay/{replay}"),
        None => id.to_owned(),
    })
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
        serde_dynamo::from_item::<_, PlainJson>(item.clone())
            .map(|plain| plain.0)
            .map_err(|e| format!("its {name} does not read as JSON: {e}"))
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
    let (id, arn, payload) = match (typed::<EventBridgeEvent<Value>>(raw), eventbridge_id(raw)) {
        (Ok(event), Some(id)) => {
            (id, event.resources.and_then(|r| r.into_iter().next()), Ok(raw.to_string().into_bytes()))
        }
        (Ok(_), None) => (String::new(), None, Err("the EventBridge event has no id to tell its deliveries by".into())),
        (Err(why), _) => (String::new(), None, Err(format!("not a readable EventBridge event: {why}"))),
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

/// A DynamoDB image read by serde_dynamo as plain JSON. JSON has no bytes, so binary attributes
/// (`B`, and the members of a `BS` set) become base64 strings, the way DynamoDB's own JSON shows
/// them; everything else is what `serde_json::Value` would read.
struct PlainJson(Value);

impl<'de> serde::Deserialize<'de> for PlainJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PlainJsonVisitor).map(PlainJson)
    }
}

struct PlainJsonVisitor;

impl<'de> serde::de::Visitor<'de> for PlainJsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a DynamoDB attribute value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        use base64::Engine;
        Ok(Value::String(base64::engine::general_purpose::STANDARD.encode(v)))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Value, E> {
        self.visit_bytes(&v)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        PlainJson::deserialize(d).map(|p| p.0)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(PlainJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some((key, PlainJson(value))) = map.next_entry::<String, PlainJson>()? {
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(path: &str) -> Value {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/ingest").join(path);
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
    }

    fn payload(record: &NativeRecord) -> Value {
        serde_json::from_slice(record.payload.as_ref().expect("a payload")).expect("a JSON payload")
    }

    #[test]
    fn an_s3_record_is_named_by_bucket_key_and_sequencer_and_carries_itself() {
        let doc = read(&sample("s3-put.json")).unwrap();
        assert_eq!(doc.kind, SourceKind::S3);
        let r = &doc.records[0];
        assert_eq!(r.id, "gateway-uploads/test/key//ObjectCreated:Put/0A1B2C3D4E5F678901");
        assert_eq!(r.arn.as_deref(), Some("arn:aws:s3:::gateway-uploads"));
        assert_eq!(payload(r), sample("s3-put.json")["Records"][0]);
        assert_eq!(r.item_identifier, None, "S3 invokes asynchronously: no batch item to name");
    }

    #[test]
    fn sns_sqs_and_kinesis_records_carry_their_message_body_and_decoded_data() {
        let sns = read(&sample("sns-notification.json")).unwrap();
        let m = &sample("sns-notification.json")["Records"][0]["Sns"];
        assert_eq!(sns.records[0].id, m["MessageId"].as_str().unwrap());
        assert_eq!(sns.records[0].arn.as_deref(), m["TopicArn"].as_str());
        assert_eq!(sns.records[0].payload.as_deref().unwrap(), m["Message"].as_str().unwrap().as_bytes());

        let sqs = read(&sample("sqs-receive-message.json")).unwrap();
        let m = &sample("sqs-receive-message.json")["Records"][0];
        assert_eq!(sqs.records[0].item_identifier.as_deref(), m["messageId"].as_str());
        assert_eq!(sqs.records[0].payload.as_deref().unwrap(), m["body"].as_str().unwrap().as_bytes());

        let kinesis = read(&sample("kinesis-get-records.json")).unwrap();
        let r = &sample("kinesis-get-records.json")["Records"][0];
        assert_eq!(kinesis.records[0].id, r["eventID"].as_str().unwrap());
        assert_eq!(kinesis.records[0].item_identifier.as_deref(), r["kinesis"]["sequenceNumber"].as_str());
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD.decode(r["kinesis"]["data"].as_str().unwrap()).unwrap();
        assert_eq!(kinesis.records[0].payload.as_deref().unwrap(), data);
    }

    #[test]
    fn a_dynamodb_record_carries_its_images_as_plain_json() {
        let doc = read(&sample("dynamodb-update.json")).unwrap();
        let insert = payload(&doc.records[0]);
        assert_eq!(insert["eventName"], "INSERT");
        assert_eq!(insert["keys"], json!({"Id": 101}));
        assert_eq!(insert["newImage"], json!({"Message": "New item!", "Id": 101}));
        assert_eq!(insert["oldImage"], Value::Null, "an insert has no old image");
        let sequence = &sample("dynamodb-update.json")["Records"][0]["dynamodb"]["SequenceNumber"];
        assert_eq!(doc.records[0].item_identifier.as_deref(), sequence.as_str());
        let remove = payload(&doc.records[2]);
        assert_eq!((remove["eventName"].clone(), remove["newImage"].clone()), (json!("REMOVE"), Value::Null));
    }

    #[test]
    fn binary_attributes_become_base64_strings() {
        let doc = read(&sample("aws-lambda-events/example-dynamodb-event.json")).unwrap();
        let image = payload(&doc.records[0]);
        let text = image.to_string();
        assert!(!text.contains("\\u0000"), "{text}");
        let found = image["newImage"].as_object().unwrap().values().any(|v| v.is_string());
        assert!(found, "{text}");
    }

    #[test]
    fn an_eventbridge_event_is_one_record_named_by_its_id_with_its_first_resource() {
        let doc = read(&sample("eventbridge-s3-object-created.json")).unwrap();
        assert_eq!((doc.kind, doc.records.len()), (SourceKind::EventBridge, 1));
        let event = sample("eventbridge-s3-object-created.json");
        assert_eq!(doc.records[0].id, event["id"].as_str().unwrap());
        assert_eq!(doc.records[0].arn.as_deref(), event["resources"][0].as_str());
        assert_eq!(payload(&doc.records[0]), event);
    }

    #[test]
    fn a_record_that_does_not_read_as_its_kind_is_kept_with_why() {
        let doc = read(&json!({"Records": [{"eventSource": "aws:sqs", "messageId": "m-1", "body": "x"}, {"eventSource": "aws:sqs", "body": 5}]})).unwrap();
        assert!(doc.records[0].payload.is_ok());
        let bad = &doc.records[1];
        assert_eq!(bad.index, 1);
        assert!(
            bad.payload.as_ref().unwrap_err().starts_with("record 1 is not a readable aws:sqs record"),
            "{:?}",
            bad.payload
        );
    }

    #[test]
    fn a_queue_carrying_another_services_event_is_named_by_that_event_so_copies_trigger_once() {
        let sqs = |message_id: &str, body: &Value| json!({"Records": [{"eventSource": "aws:sqs", "messageId": message_id, "body": body.to_string()}]});
        let sns = json!({"Type": "Notification", "MessageId": "n-1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:t", "Message": "hi"});
        let first = read(&sqs("m-1", &sns)).unwrap();
        let copy = read(&sqs("m-2", &sns)).unwrap();
        assert_eq!(first.records[0].id, "sns:n-1");
        assert_eq!(first.records[0].id, copy.records[0].id);
        assert_eq!(copy.records[0].item_identifier.as_deref(), Some("m-2"), "Lambda still names the SQS message");

        let event = json!({"id": "e-1", "source": "aws.s3", "detail-type": "Object Created", "detail": {}});
        assert_eq!(read(&sqs("m-3", &event)).unwrap().records[0].id, "events:e-1");
        let s3 = sample("s3-put.json");
        assert!(read(&sqs("m-4", &s3)).unwrap().records[0].id.starts_with("s3:gateway-uploads/test/key/"));
        let plain = read(&sqs("m-5", &json!("just text"))).unwrap();
        assert_eq!(plain.records[0].id, "m-5");
    }

    #[test]
    fn an_eventbridge_replay_is_a_delivery_of_its_own_and_an_event_without_id_is_unreadable() {
        let event = json!({"id": "e-1", "source": "aws.s3", "detail-type": "Object Created", "detail": {}});
        let mut replayed = event.clone();
        replayed["replay-name"] = json!("after-the-fix");
        assert_eq!(read(&replayed).unwrap().records[0].id, "e-1/replay/after-the-fix");
        assert_ne!(read(&replayed).unwrap().records[0].id, read(&event).unwrap().records[0].id);
        let mut anonymous = event;
        anonymous.as_object_mut().unwrap().remove("id");
        assert!(read(&anonymous).unwrap().records[0].payload.is_err());
    }

    #[test]
    fn two_changes_of_one_s3_object_never_share_an_id() {
        let mut doc = sample("s3-put.json");
        let put = read(&doc).unwrap().records[0].id.clone();
        doc["Records"][0]["eventName"] = json!("ObjectRemoved:Delete");
        let removed = read(&doc).unwrap().records[0].id.clone();
        doc["Records"][0]["s3"]["object"].as_object_mut().unwrap().remove("sequencer");
        let unsequenced = read(&doc).unwrap().records[0].id.clone();
        assert!(put != removed && removed != unsequenced, "{put} {removed} {unsequenced}");
        assert!(unsequenced.ends_with("1970-01-01T00:00:00+00:00"), "{unsequenced}");
    }

    #[test]
    fn documents_of_no_known_shape_say_why() {
        for (document, why) in [
            (json!({"hello": 1}), "not a native AWS event"),
            (json!({"Records": 5}), "Records is not an array"),
            (json!({"Records": []}), "Records is empty"),
            (json!({"Records": [{"eventSource": "aws:ses"}]}), "records from 'aws:ses' are not read here"),
            (json!({"Records": [{"nope": 1}]}), "has no eventSource"),
        ] {
            let err = read(&document).unwrap_err();
            assert!(err.0.contains(why), "{document}: {err}");
        }
    }
}
