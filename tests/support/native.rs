//! Genuine native events from the services `moto_server` emulates, turned into the exact
//! documents Lambda hands a function: S3 notifications (to an SQS queue), SNS notifications (to
//! a queue subscribed without raw delivery), EventBridge events (a rule with an SQS target),
//! DynamoDB Streams and Kinesis records (read with GetRecords, as Lambda's event source mapping
//! reads them). SQS messages need nothing here: [`crate::moto::sqs_event`] builds their event.
//!
//! Where moto leaves out a field the real service always sends, and the `aws_lambda_events`
//! types require, it is filled in here, and only where it is missing (see [`s3_events`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::Message;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::moto::{delete, queue_arn};

/// The region moto answers in, and that Lambda would name in each record.
pub const REGION: &str = "us-east-1";
/// The ingest function's execution role, as Lambda names it in Kinesis records.
pub const INGEST_ROLE: &str = "arn:aws:iam::123456789012:role/gateway-ingest";

/// A Lambda event of stream or queue records: `{"Records": [...]}`, one batch.
pub fn lambda_event(records: &[Value]) -> Value {
    json!({ "Records": records })
}

/// Takes the next `count` messages off the queue at `url` (deleting them), in the order received,
/// waiting up to 10 s for them; the emulated services send synchronously, so they are there already.
pub async fn take(sqs: &aws_sdk_sqs::Client, url: &str, count: usize) -> Vec<Message> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut taken = Vec::new();
    while taken.len() < count {
        assert!(Instant::now() < deadline, "only {} of {count} messages came to {url}", taken.len());
        let wanted = i32::try_from((count - taken.len()).min(10)).expect("at most 10");
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(wanted)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive messages");
        for message in received.messages.unwrap_or_default() {
            delete(sqs, url, &message).await;
            taken.push(message);
        }
    }
    taken
}

fn body(message: &Message) -> Value {
    serde_json::from_str(message.body.as_deref().unwrap_or_default()).expect("a JSON message body")
}

// ---- S3 ----

/// An S3 client for moto: path-style addressing, as an endpoint on loopback needs.
pub fn s3_client(aws: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(aws).force_path_style(true).build())
}

/// A bucket whose `s3:ObjectCreated:*` notifications go to the queue at `queue_url`.
pub async fn notifying_bucket(s3: &aws_sdk_s3::Client, sqs: &aws_sdk_sqs::Client, bucket: &str, queue_url: &str) {
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    s3.create_bucket().bucket(bucket).send().await.expect("create the bucket");
    let queue = QueueConfiguration::builder()
        .id("to-ingest")
        .queue_arn(queue_arn(sqs, queue_url).await)
        .events(Event::S3ObjectCreated)
        .build()
        .expect("a queue configuration");
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(NotificationConfiguration::builder().queue_configurations(queue).build())
        .send()
        .await
        .expect("configure the bucket's notifications");
}

pub async fn put_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, content: &str) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(content.as_bytes().to_vec().into())
        .send()
        .await
        .expect("put an object");
}

/// The next `count` S3 events on the notification queue at `url`: each body is the event S3
/// would have sent Lambda directly (one record per notification). The `s3:TestEvent` S3 sends
/// when notifications are configured is skipped, as S3 does not send it to Lambda.
///
/// moto (5.2) leaves out fields S3 always sends: `userIdentity` and `requestParameters` (which
/// `S3EventRecord` requires), `responseElements`, and the object's `sequencer`, the one field
/// that tells two notifications of the same key apart. They are filled in where missing: the
/// sequencer from the message's `SentTimestamp` and a counter, so it grows as S3's does.
pub async fn s3_events(sqs: &aws_sdk_sqs::Client, url: &str, count: usize) -> Vec<Value> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(1);
    let mut events = Vec::new();
    while events.len() < count {
        let message = take(sqs, url, 1).await.remove(0);
        let mut event = body(&message);
        if event.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
            continue;
        }
        let sent: u64 = message
            .attributes
            .as_ref()
            .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp))
            .and_then(|t| t.parse().ok())
            .unwrap_or_default();
        for record in event["Records"].as_array_mut().expect("an S3 event has Records") {
            let record = record.as_object_mut().expect("an S3 record");
            record.entry("userIdentity").or_insert_with(|| json!({"principalId": "AWS:AIDAMOTOEXAMPLE"}));
            record.entry("requestParameters").or_insert_with(|| json!({"sourceIPAddress": "127.0.0.1"}));
            record.entry("responseElements").or_insert_with(|| json!({}));
            let object = record["s3"]["object"].as_object_mut().expect("an S3 record names its object");
            let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
            object.entry("sequencer").or_insert_with(|| json!(format!("{sent:012X}{n:06X}")));
        }
        events.push(event);
    }
    events
}

// ---- SNS ----

/// Subscribes the queue at `url` to `topic_arn` without raw message delivery, so each message
/// is SNS's notification JSON; returns the subscription's ARN.
pub async fn subscribe_queue_notifications(
    sns: &aws_sdk_sns::Client,
    sqs: &aws_sdk_sqs::Client,
    topic_arn: &str,
    url: &str,
) -> String {
    sns.subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn(sqs, url).await)
        .send()
        .await
        .expect("subscribe the queue")
        .subscription_arn
        .expect("a subscription arn")
}

/// The next `count` SNS notifications on the queue at `url`, each as the event SNS invokes
/// Lambda with for the subscription `subscription_arn`: one record per message.
pub async fn sns_events(sqs: &aws_sdk_sqs::Client, url: &str, subscription_arn: &str, count: usize) -> Vec<Value> {
    take(sqs, url, count).await.iter().map(|m| sns_event(subscription_arn, &body(m))).collect()
}

/// Lambda's SNS event for one notification. The notification spells `SigningCertURL` and
/// `UnsubscribeURL`; Lambda's record spells them `SigningCertUrl` and `UnsubscribeUrl`, and
/// always has `Subject` (null when the publisher gave none) and `MessageAttributes`.
pub fn sns_event(subscription_arn: &str, notification: &Value) -> Value {
    let n = notification;
    json!({"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": subscription_arn,
        "Sns": {
            "Type": n["Type"],
            "MessageId": n["MessageId"],
            "TopicArn": n["TopicArn"],
            "Subject": n.get("Subject").cloned().unwrap_or(Value::Null),
            "Message": n["Message"],
            "Timestamp": n["Timestamp"],
            "SignatureVersion": n["SignatureVersion"],
            "Signature": n["Signature"],
            "SigningCertUrl": n["SigningCertURL"],
            "UnsubscribeUrl": n["UnsubscribeURL"],
            "MessageAttributes": n.get("MessageAttributes").cloned().unwrap_or_else(|| json!({})),
        }
    }]})
}

// ---- EventBridge ----

/// A rule on the default bus with `pattern`, whose target is the queue at `url`.
pub async fn rule_to_queue(
    events: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
    rule: &str,
    pattern: &Value,
    url: &str,
) {
    events.put_rule().name(rule).event_pattern(pattern.to_string()).send().await.expect("put the rule");
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("ingest-queue")
        .arn(queue_arn(sqs, url).await)
        .build()
        .expect("a target");
    let put = events.put_targets().rule(rule).targets(target).send().await.expect("put the rule's target");
    assert_eq!(put.failed_entry_count, 0, "{put:?}");
}

/// Puts one event on the default bus; returns its id.
pub async fn put_event(
    events: &aws_sdk_eventbridge::Client,
    source: &str,
    detail_type: &str,
    detail: &Value,
) -> String {
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .source(source)
        .detail_type(detail_type)
        .detail(detail.to_string())
        .resources(format!("arn:aws:codebuild:{REGION}:123456789012:project/gateway"))
        .build();
    let put = events.put_events().entries(entry).send().await.expect("put an event");
    assert_eq!(put.failed_entry_count, 0, "{put:?}");
    put.entries.unwrap_or_default().remove(0).event_id.expect("an event id")
}

/// The next `count` EventBridge events on the queue at `url`: each body is the event as
/// EventBridge invokes a Lambda target with it.
pub async fn eventbridge_events(sqs: &aws_sdk_sqs::Client, url: &str, count: usize) -> Vec<Value> {
    take(sqs, url, count).await.iter().map(body).collect()
}

// ---- DynamoDB Streams ----

/// A table keyed by the string `sku`, streaming new and old images; returns the stream's ARN.
pub async fn streaming_table(dynamodb: &aws_sdk_dynamodb::Client, name: &str) -> String {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, StreamSpecification,
        StreamViewType,
    };
    let created = dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("sku")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("an attribute definition"),
        )
        .key_schema(
            KeySchemaElement::builder().attribute_name("sku").key_type(KeyType::Hash).build().expect("a key schema"),
        )
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .expect("a stream specification"),
        )
        .send()
        .await
        .expect("create the streaming table");
    created.table_description.and_then(|t| t.latest_stream_arn).expect("the table's stream arn")
}

/// Every record of the stream, read from the trim horizon of each shard as Lambda's event source
/// mapping reads them, in Lambda's DynamoDB event record shape.
pub async fn dynamodb_records(streams: &aws_sdk_dynamodbstreams::Client, stream_arn: &str) -> Vec<Value> {
    use aws_sdk_dynamodbstreams::types::ShardIteratorType;
    let described = streams.describe_stream().stream_arn(stream_arn).send().await.expect("describe the stream");
    let shards = described.stream_description.and_then(|d| d.shards).unwrap_or_default();
    let mut records = Vec::new();
    for shard in shards {
        let iterator = streams
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(shard.shard_id.expect("a shard id"))
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("get a shard iterator")
            .shard_iterator
            .expect("a shard iterator");
        let got = streams.get_records().shard_iterator(iterator).send().await.expect("get the stream's records");
        records.extend(got.records.unwrap_or_default().iter().map(|r| dynamodb_record(r, stream_arn)));
    }
    records
}

/// One stream record as Lambda hands it over: the GetRecords record, its images in DynamoDB's
/// JSON wire form, its creation time in epoch seconds, and the stream's ARN.
fn dynamodb_record(record: &aws_sdk_dynamodbstreams::types::Record, stream_arn: &str) -> Value {
    let change = record.dynamodb.as_ref().expect("a stream record carries its change");
    let image = |image: &Option<std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>| {
        image.clone().map(|item| serde_json::to_value(serde_dynamo::Item::from(item)).expect("an item serializes"))
    };
    let mut dynamodb = json!({
        "ApproximateCreationDateTime": change.approximate_creation_date_time.map(|t| t.secs()),
        "Keys": image(&change.keys),
        "SequenceNumber": change.sequence_number,
        "SizeBytes": change.size_bytes,
        "StreamViewType": change.stream_view_type.as_ref().map(|v| v.as_str()),
    });
    // Lambda leaves out an image the change does not have (no OldImage on an INSERT).
    for (name, value) in [("NewImage", image(&change.new_image)), ("OldImage", image(&change.old_image))] {
        if let Some(value) = value {
            dynamodb[name] = value;
        }
    }
    json!({
        "eventID": record.event_id,
        "eventName": record.event_name.as_ref().map(|n| n.as_str()),
        "eventVersion": record.event_version,
        "eventSource": record.event_source,
        "awsRegion": record.aws_region,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    })
}

// ---- Kinesis ----

/// A stream of one shard; returns its ARN.
pub async fn kinesis_stream(kinesis: &aws_sdk_kinesis::Client, name: &str) -> String {
    kinesis.create_stream().stream_name(name).shard_count(1).send().await.expect("create the stream");
    kinesis
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .expect("describe the stream")
        .stream_description_summary
        .expect("a stream summary")
        .stream_arn
}

/// Puts `data` on the stream, one record each, in order; returns their sequence numbers.
pub async fn put_records(kinesis: &aws_sdk_kinesis::Client, stream: &str, data: &[&str]) -> Vec<String> {
    let mut sequence_numbers = Vec::new();
    // One PutRecord each: PutRecords does not promise their order within the shard.
    for (n, item) in data.iter().enumerate() {
        let put = kinesis
            .put_record()
            .stream_name(stream)
            .partition_key(format!("key-{n}"))
            .data(aws_sdk_kinesis::primitives::Blob::new(item.as_bytes()))
            .send()
            .await
            .expect("put a record");
        sequence_numbers.push(put.sequence_number);
    }
    sequence_numbers
}

/// Every record of the stream, read from the trim horizon of each shard, in Lambda's Kinesis
/// event record shape.
pub async fn kinesis_records(kinesis: &aws_sdk_kinesis::Client, stream: &str, stream_arn: &str) -> Vec<Value> {
    use aws_sdk_kinesis::types::ShardIteratorType;
    let shards = kinesis.list_shards().stream_name(stream).send().await.expect("list the shards");
    let mut records = Vec::new();
    for shard in shards.shards.unwrap_or_default() {
        let iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(&shard.shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("get a shard iterator")
            .shard_iterator
            .expect("a shard iterator");
        let got = kinesis.get_records().shard_iterator(iterator).send().await.expect("get the stream's records");
        records.extend(got.records.iter().map(|r| kinesis_record(r, &shard.shard_id, stream_arn)));
    }
    records
}

/// One Kinesis record as Lambda hands it over: base64 data, arrival in epoch seconds, and the
/// event id Lambda makes of the shard and sequence number.
fn kinesis_record(record: &aws_sdk_kinesis::types::Record, shard_id: &str, stream_arn: &str) -> Value {
    let arrival = record.approximate_arrival_timestamp.map(|t| t.secs() as f64 + f64::from(t.subsec_nanos()) / 1e9);
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record.partition_key,
            "sequenceNumber": record.sequence_number,
            "data": STANDARD.encode(record.data.as_ref()),
            "approximateArrivalTimestamp": arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{shard_id}:{}", record.sequence_number),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": INGEST_ROLE,
        "awsRegion": REGION,
        "eventSourceARN": stream_arn,
    })
}
