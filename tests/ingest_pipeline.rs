//! Native events in, end to end, with no AWS account. `moto_server`'s S3, SNS, EventBridge,
//! DynamoDB Streams and Kinesis produce genuine events (`support/native.rs` turns them into the
//! documents Lambda hands a function), and the test plays Lambda's event sources for the real
//! `ingest` function under `cargo lambda watch`: batches for SQS, Kinesis and DynamoDB Streams,
//! deleting or handing over again what the partial batch response says; one event per invocation
//! for S3, SNS and EventBridge, invoking again after an error as Lambda's asynchronous retries do.
//! Events, subscriptions and sources are defined through the HTTP functions, as API Gateway would
//! hand them requests. A trigger is seen where it goes: its message on the delivery queue (the
//! topic's subscriber) and its deliveries in the log, read through the trigger function.
//!
//! A transient failure is made as it happens on AWS: the record is also in the hands of another
//! invocation (SQS or a stream handed it over twice) that has claimed its trigger's idempotency
//! key and not finished. The test claims the key as that invocation's trigger acceptor would,
//! through the DynamoDB store, so the function finds the record still being accepted and asks for
//! it again; then the test gives the key up, as the acceptor does when its publish fails, and
//! hands the record over again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use end_to_end::api_gateway::{api, http_api_event, ApiResponse};
use end_to_end::moto::{delete, queue_arn, receive, sqs_event, subscribed_queue, topic, Moto};
use end_to_end::native::{self, lambda_event};
use end_to_end::{build_functions, free_port, invoke, start_lambda_watch_with_env, temp_dir, Process};
use gateway_core::ingest::idempotency_key;
use gateway_core::message::DeliveryMessage;
use gateway_core::ports::{EventStore, IdempotencyKeys, KeyClaim, UlidSource, ACCEPTANCE_WINDOW};
use gateway_core::trigger::accepted_trigger;
use gateway_core::{EventName, IdempotencyKey, SourceName, TriggerReceipt};
use gateway_dynamodb::{create_table, DynamoStore};
use serde_json::{json, Value};

const TABLE: &str = "gateway";
const SUBSCRIBER: &str = "example-subscriber";

/// moto_server with the gateway's table, topic and queues, and cargo lambda watch serving the
/// functions with the environment the template gives them.
struct Pipeline {
    /// Declared first so that it stops first, while moto still answers.
    watch: Process,
    _moto: Moto,
    lambda_port: u16,
    aws: aws_config::SdkConfig,
    sqs: aws_sdk_sqs::Client,
    store: DynamoStore,
    /// The delivery queue, subscribed to the topic the triggers are published to.
    deliveries: String,
    /// The ingest dead-letter queue.
    dead_letters: String,
    /// Every trigger message seen on the delivery queue.
    triggered: Mutex<Vec<DeliveryMessage>>,
    dir: PathBuf,
}

async fn pipeline() -> Pipeline {
    build_functions();
    let moto = Moto::start("ingest");
    let aws = moto.sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    create_table(&dynamodb, TABLE).await.expect("create the table");
    let topic_arn = topic(&sns, "gateway-deliveries").await;
    let deliveries = subscribed_queue(&sns, &sqs, &topic_arn, "gateway-deliveries").await;
    let dead_letters = create_queue(&sqs, "gateway-ingest-dead-letters").await;

    let lambda_port = free_port();
    let dir = temp_dir("ingest");
    let environment = [
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("AWS_REGION", native::REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "e2e".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "e2e".to_owned()),
        ("GATEWAY_TABLE", TABLE.to_owned()),
        ("GATEWAY_TOPIC_ARN", topic_arn),
        ("GATEWAY_INGEST_DEAD_LETTER_QUEUE_URL", dead_letters.clone()),
        ("GATEWAY_FUNCTION_ALLOWLIST", "example-".to_owned()),
        ("GATEWAY_ACCOUNT_ID", "123456789012".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let watch = start_lambda_watch_with_env(lambda_port, dir.join("watch.log"), &environment);
    Pipeline {
        watch,
        _moto: moto,
        lambda_port,
        store: DynamoStore::new(dynamodb, TABLE),
        aws,
        sqs,
        deliveries,
        dead_letters,
        triggered: Mutex::new(Vec::new()),
        dir,
    }
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue().queue_name(name).send().await.expect("create a queue").queue_url.expect("a queue url")
}

/// A record in the ingest dead-letter queue: its message attributes and its body.
#[derive(Debug)]
struct DeadLetter {
    reason: String,
    detail: String,
    kind: String,
    record_id: Option<String>,
    source: Option<String>,
    /// What the schema refused, as JSON.
    violations: Option<Value>,
    body: Value,
}

/// Another invocation's claim on a record's trigger.
struct Held {
    key: IdempotencyKey,
    receipt: TriggerReceipt,
}

impl Pipeline {
    fn api(&self, function: &str, request: Value) -> ApiResponse {
        api(self.lambda_port, function, &request)
    }

    /// Defines `event` and subscribes the example function to it, through the HTTP functions.
    fn define_event(&self, event: &str, schema: Option<Value>) {
        let mut body = json!({"name": event});
        if let Some(schema) = schema {
            body["schema"] = schema;
        }
        let created = self.api("events-api", http_api_event("POST", "ANY /events", "/events", &[], Some(&body)));
        assert_eq!(created.status, 201, "{}", created.body);
        let body = json!({"event": event, "functionId": SUBSCRIBER});
        let subscribed = self
            .api("subscriptions-api", http_api_event("POST", "ANY /subscriptions", "/subscriptions", &[], Some(&body)));
        assert_eq!(subscribed.status, 201, "{}", subscribed.body);
    }

    /// `POST /sources`, routed to the events function.
    fn define_source(&self, name: &str, event: &str, pattern: Value) {
        let body = json!({"name": name, "event": event, "pattern": pattern});
        let created = self.api("events-api", http_api_event("POST", "ANY /sources", "/sources", &[], Some(&body)));
        assert_eq!(created.status, 201, "{}", created.body);
    }

    /// `GET /events/{name}/deliveries`, through the trigger function.
    fn deliveries_of(&self, event: &str) -> Vec<Value> {
        let path = format!("/events/{event}/deliveries");
        let request = http_api_event("GET", "GET /events/{name}/deliveries", &path, &[("name", event)], None);
        let log = self.api("trigger-api", request);
        assert_eq!(log.status, 200, "{}", log.body);
        log.body["items"].as_array().expect("a page of deliveries").clone()
    }

    /// Hands a batch to the function as an event source mapping does; returns the identifiers
    /// of its `batchItemFailures`.
    fn batch(&self, event: &Value) -> Vec<String> {
        let answer = invoke(self.lambda_port, "ingest", event);
        assert_eq!(answer.status, 200, "the function failed a batch: {}", answer.body);
        answer.body["batchItemFailures"]
            .as_array()
            .unwrap_or_else(|| panic!("no partial batch response: {}", answer.body))
            .iter()
            .map(|f| f["itemIdentifier"].as_str().expect("an itemIdentifier").to_owned())
            .collect()
    }

    /// Invokes the function with one event as an asynchronous source does, expecting success.
    fn deliver(&self, event: &Value) {
        let answer = invoke(self.lambda_port, "ingest", event);
        assert_eq!((answer.status, &answer.body), (200, &json!({})), "the function failed an event");
    }

    /// The trigger messages published since the last call, off the delivery queue.
    async fn new_triggers(&self) -> Vec<DeliveryMessage> {
        let mut found = Vec::new();
        for message in drain(&self.sqs, &self.deliveries).await {
            let body: DeliveryMessage =
                serde_json::from_str(message.body.as_deref().unwrap_or_default()).expect("a delivery message");
            assert_eq!(body.deliveries.len(), 1, "one subscription, one delivery: {body:?}");
            assert_eq!(body.deliveries[0].function_id.to_string(), SUBSCRIBER);
            found.push(body);
        }
        self.triggered.lock().unwrap().extend(found.iter().cloned());
        found
    }

    /// The records dead-lettered since the last call.
    async fn new_dead_letters(&self) -> Vec<DeadLetter> {
        drain(&self.sqs, &self.dead_letters)
            .await
            .iter()
            .map(|m| {
                let attribute = |name: &str| {
                    m.message_attributes.as_ref().and_then(|a| a.get(name)).and_then(|v| v.string_value.clone())
                };
                DeadLetter {
                    reason: attribute("reason").expect("a reason"),
                    detail: attribute("detail").expect("a detail"),
                    kind: attribute("kind").expect("a kind"),
                    record_id: attribute("recordId"),
                    source: attribute("source"),
                    violations: attribute("violations").map(|v| serde_json::from_str(&v).expect("JSON violations")),
                    body: serde_json::from_str(m.body.as_deref().unwrap_or_default()).expect("a JSON body"),
                }
            })
            .collect()
    }

    /// Claims the trigger of record `record_id` of `document` for `source` as another invocation's
    /// trigger acceptor does first, and holds it.
    async fn hold(&self, source: &str, event: &str, document: &Value, record_id: &str) -> Held {
        let native = gateway_aws_events::read(document).expect("a native document");
        let record = native.records.iter().find(|r| r.id == record_id).expect("the record is in the document");
        let key = idempotency_key(&SourceName::parse(source).unwrap(), record);
        let definition = self.store.get_event(&EventName::parse(event).unwrap()).await.unwrap().expect("the event");
        let payload = record.payload.clone().expect("the record has a payload");
        let trigger = accepted_trigger(&definition, &[], payload, chrono::Utc::now(), &UlidSource);
        let claim = self
            .store
            .claim_key(&key, &trigger.receipt(), &trigger.payload_digest(), trigger.received_at, ACCEPTANCE_WINDOW)
            .await
            .expect("claim the key");
        assert_eq!(claim, KeyClaim::Claimed);
        Held { key, receipt: trigger.receipt() }
    }

    /// The other invocation failed: it gives the key up, as the acceptor does after a failed publish.
    async fn release(&self, held: Held) {
        self.store.abandon_key(&held.key, &held.receipt).await.expect("give the key up");
    }

    /// How many times the function logged that it triggered `event_id` (a record delivered again
    /// is answered with its first trigger, and logged with it).
    fn logged_triggers_of(&self, event_id: &str) -> usize {
        self.watch
            .log_text()
            .lines()
            .filter(|l| l.contains("native record triggered its event") && l.contains(event_id))
            .count()
    }
}

/// Every message on the queue, deleted. The emulated services send synchronously: what the
/// function published is there when its invocation returns.
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    loop {
        let batch = receive(sqs, url, 0).await;
        if batch.is_empty() {
            return all;
        }
        for message in &batch {
            delete(sqs, url, message).await;
        }
        all.extend(batch);
    }
}

/// (source name, native record id) of each trigger; a record that triggered twice fails the test.
fn origins(triggers: &[DeliveryMessage]) -> BTreeSet<(String, String)> {
    let origins: Vec<(String, String)> = triggers
        .iter()
        .map(|t| {
            let source = t.source.as_ref().expect("a native record's trigger names its source");
            (source.name.to_string(), source.id.clone())
        })
        .collect();
    let unique: BTreeSet<_> = origins.iter().cloned().collect();
    assert_eq!(unique.len(), origins.len(), "a record triggered twice: {origins:?}");
    unique
}

fn expected(source: &str, ids: &[&str]) -> BTreeSet<(String, String)> {
    ids.iter().map(|id| (source.to_owned(), (*id).to_owned())).collect()
}

fn data(trigger: &DeliveryMessage) -> Value {
    serde_json::from_slice(&trigger.payload().expect("a payload")).expect("a JSON payload")
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("no {pointer} in {value}"))
}

#[tokio::test]
async fn every_native_record_triggers_once_however_often_it_comes_and_rejected_ones_are_dead_lettered() {
    // GIVEN the functions under cargo lambda watch, over moto_server
    let started = Instant::now();
    let cloud = pipeline().await;

    // WHEN each service's genuine events come as Lambda hands them over (each states its own)
    sqs_messages(&cloud).await;
    sqs_fifo_messages(&cloud).await;
    kinesis_records(&cloud).await;
    dynamodb_stream_records(&cloud).await;
    s3_notifications(&cloud).await;
    sns_notifications(&cloud).await;
    sns_notifications_through_a_queue(&cloud).await;
    eventbridge_events(&cloud).await;

    // THEN (besides what each asserted) the delivery log, read through the trigger function, has
    // one delivery per trigger
    let triggered = cloud.triggered.lock().unwrap().clone();
    let mut by_event: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for t in &triggered {
        by_event.entry(t.event.to_string()).or_default().insert(t.event_id.to_string());
    }
    assert_eq!(by_event.len(), 8, "{by_event:?}");
    for (event, event_ids) in &by_event {
        let log = cloud.deliveries_of(event);
        let logged: BTreeSet<String> = log.iter().map(|d| d["eventId"].as_str().unwrap().to_owned()).collect();
        assert_eq!(&logged, event_ids, "{event}: {log:?}");
        assert_eq!(log.len(), event_ids.len(), "{event}: one delivery per trigger: {log:?}");
        assert!(log.iter().all(|d| d["functionId"] == SUBSCRIBER && d["status"] == "pending"), "{log:?}");
    }
    assert_eq!(triggered.len(), 19);
    eprintln!("the ingest pipeline ran in {:?}", started.elapsed());
    std::fs::remove_dir_all(&cloud.dir).ok();
}

/// SQS: a batch of two orders, a message no source matches, one the event's schema refuses and
/// one another invocation holds; then the held one alone, once it is visible again; then the
/// first batch again.
async fn sqs_messages(cloud: &Pipeline) {
    // GIVEN a queue, and a source on it for JSON bodies, to an event with a schema
    let queue = create_queue(&cloud.sqs, "orders").await;
    let arn = queue_arn(&cloud.sqs, &queue).await;
    let schema = json!({"type": "object", "required": ["orderId"], "properties": {"orderId": {"type": "string"}}});
    cloud.define_event("orders.created", Some(schema));
    cloud.define_source(
        "orders",
        "orders.created",
        json!({"eventSource": ["aws:sqs"], "eventSourceARN": [arn], "body": [{"prefix": "{"}]}),
    );
    let bodies =
        [r#"{"orderId": "o-1"}"#, r#"{"orderId": "o-2"}"#, "hello", r#"{"orderId": 5}"#, r#"{"orderId": "o-3"}"#];
    for body in bodies {
        cloud.sqs.send_message().queue_url(&queue).message_body(body).send().await.expect("send a message");
    }
    let messages = receive(&cloud.sqs, &queue, 1).await;
    assert_eq!(messages.len(), bodies.len());
    let id = |body: &str| {
        messages.iter().find(|m| m.body.as_deref() == Some(body)).and_then(|m| m.message_id.clone()).unwrap()
    };
    let batch = sqs_event(&arn, &messages);
    let held = cloud.hold("orders", "orders.created", &batch, &id(bodies[4])).await;

    // WHEN Lambda's event source hands the batch over
    let failed = cloud.batch(&batch);

    // THEN only the held message is to come again; Lambda deletes the others
    assert_eq!(failed, [id(bodies[4])]);
    for message in messages.iter().filter(|m| !failed.contains(m.message_id.as_ref().unwrap())) {
        delete(&cloud.sqs, &queue, message).await;
    }
    // AND each order triggered its event once, named by its messageId
    let triggers = cloud.new_triggers().await;
    assert_eq!(origins(&triggers), expected("orders", &[&id(bodies[0]), &id(bodies[1])]));
    let first = triggers.iter().find(|t| t.source.as_ref().unwrap().id == id(bodies[0])).unwrap();
    assert_eq!(data(first), json!({"orderId": "o-1"}));
    let origin = first.source.as_ref().unwrap();
    assert_eq!((origin.kind.as_str(), origin.arn.as_deref()), ("aws:sqs", Some(arn.as_str())));
    // AND the message no source matched, and the one the schema refused, are dead-lettered with why
    let dead = cloud.new_dead_letters().await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    let unmatched = dead.iter().find(|d| d.record_id.as_deref() == Some(id("hello").as_str())).expect("hello");
    assert_eq!(unmatched.reason, "/problems/no-source-matched");
    assert_eq!((unmatched.kind.as_str(), unmatched.source.as_deref()), ("aws:sqs", None));
    assert_eq!(unmatched.body["body"], "hello", "the record as AWS delivered it");
    let refused = dead.iter().find(|d| d.record_id.as_deref() == Some(id(bodies[3]).as_str())).expect("orderId 5");
    assert_eq!(refused.reason, "/problems/payload-rejected");
    assert_eq!(refused.source.as_deref(), Some("orders"));
    assert!(refused.detail.contains("orders.created"), "{}", refused.detail);
    let violations = refused.violations.as_ref().expect("what the schema refused");
    assert_eq!(violations[0]["pointer"], "/orderId", "{violations}");
    assert_eq!(unmatched.violations, None);

    // WHEN the other invocation gives the message up, and it comes again once its visibility
    // timeout ends (made to end now)
    cloud.release(held).await;
    let receipt = messages.iter().find(|m| m.message_id == Some(id(bodies[4]))).unwrap().receipt_handle.clone();
    cloud
        .sqs
        .change_message_visibility()
        .queue_url(&queue)
        .set_receipt_handle(receipt)
        .visibility_timeout(0)
        .send()
        .await
        .expect("end the visibility timeout");
    let again = receive(&cloud.sqs, &queue, 1).await;
    assert_eq!(again.iter().map(|m| m.message_id.clone().unwrap()).collect::<Vec<_>>(), [id(bodies[4])]);
    let count = again[0].attributes.as_ref().and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount));
    assert_eq!(count.map(String::as_str), Some("2"));
    assert!(cloud.batch(&sqs_event(&arn, &again)).is_empty());
    delete(&cloud.sqs, &queue, &again[0]).await;

    // THEN it triggered its event, once
    assert_eq!(origins(&cloud.new_triggers().await), expected("orders", &[&id(bodies[4])]));

    // WHEN the first batch comes again (SQS delivers at least once)
    assert!(cloud.batch(&batch).is_empty(), "a clean batch has no failures");

    // THEN nothing triggers again: each record is answered with its first trigger
    assert!(cloud.new_triggers().await.is_empty());
    assert_eq!(cloud.logged_triggers_of(&first.event_id.to_string()), 2);
    // AND only the rejected ones are rejected again
    let again: BTreeSet<_> = cloud.new_dead_letters().await.into_iter().filter_map(|d| d.record_id).collect();
    assert_eq!(again, [id("hello"), id(bodies[3])].into_iter().collect());
}

/// SQS FIFO: three messages of one group, the second held by another invocation. Lambda keeps a
/// group's order only if the function stops at the first failure and reports the rest too, so
/// the third must not run ahead of the second.
async fn sqs_fifo_messages(cloud: &Pipeline) {
    // GIVEN a FIFO queue, and a source on it
    let queue = cloud
        .sqs
        .create_queue()
        .queue_name("payments.fifo")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "true")
        .send()
        .await
        .expect("create a FIFO queue")
        .queue_url
        .expect("a queue url");
    let arn = queue_arn(&cloud.sqs, &queue).await;
    cloud.define_event("payments.made", None);
    cloud.define_source("payments", "payments.made", json!({"eventSource": ["aws:sqs"], "eventSourceARN": [arn]}));
    let bodies = [r#"{"payment": 1}"#, r#"{"payment": 2}"#, r#"{"payment": 3}"#];
    for body in bodies {
        let send = cloud.sqs.send_message().queue_url(&queue).message_group_id("account-1").message_body(body);
        send.send().await.expect("send a message");
    }
    let messages = receive(&cloud.sqs, &queue, 1).await;
    let ids: Vec<String> = messages.iter().map(|m| m.message_id.clone().unwrap()).collect();
    assert_eq!(messages.iter().map(|m| m.body.as_deref().unwrap()).collect::<Vec<_>>(), bodies, "in order");
    // A FIFO message is named by its deduplication id (here SQS's, of the body): a producer's
    // retry within the 5 minutes FIFO deduplicates keeps it, a new message id does not
    let native_ids: Vec<String> = messages
        .iter()
        .map(|m| {
            let attributes = m.attributes.as_ref().expect("system attributes");
            format!("fifo:{}", attributes[&MessageSystemAttributeName::MessageDeduplicationId])
        })
        .collect();
    let batch = sqs_event(&arn, &messages);
    assert_eq!(batch["Records"][0]["attributes"]["MessageGroupId"], "account-1");
    let held = cloud.hold("payments", "payments.made", &batch, &native_ids[1]).await;

    // WHEN the event source mapping hands the batch over
    let failed = cloud.batch(&batch);

    // THEN the held message and the one after it are to come again; only the first triggered
    assert_eq!(failed, ids[1..]);
    assert_eq!(origins(&cloud.new_triggers().await), expected("payments", &[&native_ids[0]]));
    delete(&cloud.sqs, &queue, &messages[0]).await;

    // WHEN the other invocation gives up and the two come again, in order
    cloud.release(held).await;
    for message in &messages[1..] {
        let receipt = message.receipt_handle.clone();
        let visible = cloud.sqs.change_message_visibility().queue_url(&queue).set_receipt_handle(receipt);
        visible.visibility_timeout(0).send().await.expect("end the visibility timeout");
    }
    let again = receive(&cloud.sqs, &queue, 1).await;
    assert_eq!(again.iter().map(|m| m.message_id.clone().unwrap()).collect::<Vec<_>>(), ids[1..]);
    assert!(cloud.batch(&sqs_event(&arn, &again)).is_empty());

    // THEN each triggered, once
    assert_eq!(origins(&cloud.new_triggers().await), expected("payments", &[&native_ids[1], &native_ids[2]]));
}

/// Kinesis: a batch whose second record is not JSON (rejected) and whose third another invocation
/// holds, so the third and fourth are to come again; Lambda then retries from the third.
async fn kinesis_records(cloud: &Pipeline) {
    // GIVEN a stream, and a source on it
    let kinesis = aws_sdk_kinesis::Client::new(&cloud.aws);
    let arn = native::kinesis_stream(&kinesis, "clicks").await;
    cloud.define_event("clicks.recorded", None);
    cloud.define_source("clicks", "clicks.recorded", json!({"eventSource": ["aws:kinesis"], "eventSourceARN": [arn]}));
    let data = [r#"{"click": 1}"#, "not json", r#"{"click": 3}"#, r#"{"click": 4}"#];
    let sequence_numbers = native::put_records(&kinesis, "clicks", &data).await;
    let records = native::kinesis_records(&kinesis, "clicks", &arn).await;
    let event_ids: Vec<&str> = records.iter().map(|r| text(r, "/eventID")).collect();
    assert_eq!(records.iter().map(|r| text(r, "/kinesis/sequenceNumber")).collect::<Vec<_>>(), sequence_numbers);
    let batch = lambda_event(&records);
    let held = cloud.hold("clicks", "clicks.recorded", &batch, event_ids[2]).await;

    // WHEN the event source mapping hands the batch over
    let failed = cloud.batch(&batch);

    // THEN the held record and the one after it are to come again, by sequence number: a stream
    // runs in order, so the fourth waits behind the third
    assert_eq!(failed, sequence_numbers[2..]);
    // AND the first triggered its event; the rejected one did not hold the stream back
    let triggers = cloud.new_triggers().await;
    assert_eq!(origins(&triggers), expected("clicks", &event_ids[..1]));
    assert_eq!(data_of(&triggers, event_ids[0]), json!({"click": 1}));
    let dead = cloud.new_dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].reason, "/problems/malformed-payload");
    assert_eq!((dead[0].kind.as_str(), dead[0].source.as_deref()), ("aws:kinesis", Some("clicks")));
    assert_eq!(dead[0].record_id.as_deref(), Some(event_ids[1]));

    // WHEN the other invocation gives up, and Lambda retries from the first sequence number failed
    cloud.release(held).await;
    assert!(cloud.batch(&lambda_event(&records[2..])).is_empty());

    // THEN the third and fourth triggered, once each
    assert_eq!(origins(&cloud.new_triggers().await), expected("clicks", &event_ids[2..]));

    // AND the whole batch again triggers nothing more
    assert!(cloud.batch(&batch).is_empty());
    assert!(cloud.new_triggers().await.is_empty());
    let again: Vec<_> = cloud.new_dead_letters().await.into_iter().filter_map(|d| d.record_id).collect();
    assert_eq!(again, [event_ids[1]]);
}

/// DynamoDB Streams: an item put, updated and deleted; the stream's three records in one batch,
/// then again.
async fn dynamodb_stream_records(cloud: &Pipeline) {
    use aws_sdk_dynamodb::types::AttributeValue;
    // GIVEN a table streaming new and old images, and a source on its stream
    let dynamodb = aws_sdk_dynamodb::Client::new(&cloud.aws);
    let streams = aws_sdk_dynamodbstreams::Client::new(&cloud.aws);
    let arn = native::streaming_table(&dynamodb, "stock").await;
    cloud.define_event("stock.changed", None);
    cloud.define_source("stock", "stock.changed", json!({"eventSource": ["aws:dynamodb"], "eventSourceARN": [arn]}));
    let sku = || AttributeValue::S("sku-1".into());
    let put = dynamodb.put_item().table_name("stock").item("sku", sku()).item("count", AttributeValue::N("3".into()));
    put.send().await.expect("put an item");
    dynamodb
        .update_item()
        .table_name("stock")
        .key("sku", sku())
        .update_expression("SET #count = :count")
        .expression_attribute_names("#count", "count")
        .expression_attribute_values(":count", AttributeValue::N("4".into()))
        .send()
        .await
        .expect("update the item");
    dynamodb.delete_item().table_name("stock").key("sku", sku()).send().await.expect("delete the item");
    let records = native::dynamodb_records(&streams, &arn).await;
    let names: Vec<&str> = records.iter().map(|r| text(r, "/eventName")).collect();
    assert_eq!(names, ["INSERT", "MODIFY", "REMOVE"]);
    let event_ids: Vec<&str> = records.iter().map(|r| text(r, "/eventID")).collect();
    let batch = lambda_event(&records);

    // WHEN the event source mapping hands them over
    assert!(cloud.batch(&batch).is_empty(), "a clean batch has no failures");

    // THEN each change triggered its event once, carrying the change with plain JSON images
    let triggers = cloud.new_triggers().await;
    assert_eq!(origins(&triggers), expected("stock", &event_ids));
    assert_eq!(
        data_of(&triggers, event_ids[1]),
        json!({
            "eventName": "MODIFY",
            "keys": {"sku": "sku-1"},
            "newImage": {"sku": "sku-1", "count": 4},
            "oldImage": {"sku": "sku-1", "count": 3},
        })
    );
    assert_eq!(data_of(&triggers, event_ids[2])["newImage"], Value::Null);

    // AND the batch again triggers nothing more
    assert!(cloud.batch(&batch).is_empty());
    assert!(cloud.new_triggers().await.is_empty());
    assert!(cloud.new_dead_letters().await.is_empty());
}

/// S3: three objects put, each notification its own event; one in no source's prefix; one
/// delivered again.
async fn s3_notifications(cloud: &Pipeline) {
    // GIVEN a bucket notifying a queue, and a source on the bucket's `incoming-` objects (moto
    // URL-encodes a `/` in a notification's key, which S3 leaves as it is: the keys have none)
    let s3 = native::s3_client(&cloud.aws);
    let queue = create_queue(&cloud.sqs, "uploads-notifications").await;
    native::notifying_bucket(&s3, &cloud.sqs, "uploads", &queue).await;
    cloud.define_event("uploads.received", None);
    let pattern = json!({"eventSource": ["aws:s3"], "s3": {"bucket": {"name": ["uploads"]}, "object": {"key": [{"prefix": "incoming-"}]}}});
    cloud.define_source("uploads", "uploads.received", pattern);
    for key in ["incoming-a.csv", "incoming-b.csv", "other-c.txt"] {
        native::put_object(&s3, "uploads", key, "id,total\n1,42\n").await;
    }
    let events = native::s3_events(&cloud.sqs, &queue, 3).await;
    // bucket/key/version/event name/sequencer (the bucket is not versioned)
    let id = |event: &Value| {
        let (key, sequencer) = (text(event, "/Records/0/s3/object/key"), text(event, "/Records/0/s3/object/sequencer"));
        format!("uploads/{key}//{}/{sequencer}", text(event, "/Records/0/eventName"))
    };
    let keys: Vec<&str> = events.iter().map(|e| text(e, "/Records/0/s3/object/key")).collect();
    assert_eq!(keys, ["incoming-a.csv", "incoming-b.csv", "other-c.txt"]);

    // WHEN S3 invokes the function with each
    for event in &events {
        cloud.deliver(event);
    }

    // THEN the two incoming objects triggered, once each, carrying the record
    let triggers = cloud.new_triggers().await;
    assert_eq!(origins(&triggers), expected("uploads", &[&id(&events[0]), &id(&events[1])]));
    assert_eq!(data_of(&triggers, &id(&events[0])), events[0]["Records"][0]);
    // AND the other is dead-lettered: no source matched it
    let dead = cloud.new_dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0].reason.as_str(), dead[0].kind.as_str()), ("/problems/no-source-matched", "aws:s3"));
    assert_eq!(dead[0].record_id, Some(id(&events[2])));
    assert!(!dead[0].detail.is_empty());

    // WHEN Lambda runs the first event again (an asynchronous retry)
    cloud.deliver(&events[0]);
    // THEN it does not trigger again
    assert!(cloud.new_triggers().await.is_empty());
}

/// SNS: two messages published to a topic (one with a subject and an attribute), each its own
/// event; one delivered again.
async fn sns_notifications(cloud: &Pipeline) {
    use aws_sdk_sns::types::MessageAttributeValue;
    // GIVEN a topic with a queue subscribed to its notifications, and a source on the topic
    let sns = aws_sdk_sns::Client::new(&cloud.aws);
    let topic_arn = topic(&sns, "notices").await;
    let queue = create_queue(&cloud.sqs, "notices-notifications").await;
    let subscription = native::subscribe_queue_notifications(&sns, &cloud.sqs, &topic_arn, &queue).await;
    cloud.define_event("notices.published", None);
    cloud.define_source(
        "notices",
        "notices.published",
        json!({"EventSource": ["aws:sns"], "Sns": {"TopicArn": [topic_arn]}}),
    );
    let priority = MessageAttributeValue::builder().data_type("String").string_value("high").build().unwrap();
    let first = sns
        .publish()
        .topic_arn(&topic_arn)
        .subject("first")
        .message(r#"{"notice": 1}"#)
        .message_attributes("priority", priority)
        .send()
        .await
        .expect("publish");
    let second = sns.publish().topic_arn(&topic_arn).message(r#"{"notice": 2}"#).send().await.expect("publish");
    let ids = [first.message_id.unwrap(), second.message_id.unwrap()];
    let events = native::sns_events(&cloud.sqs, &queue, &subscription, 2).await;
    assert_eq!(text(&events[0], "/Records/0/Sns/MessageAttributes/priority/Value"), "high");

    // WHEN SNS invokes the function with each
    for event in &events {
        cloud.deliver(event);
    }

    // THEN each message triggered its event once, carrying the message
    let triggers = cloud.new_triggers().await;
    assert_eq!(origins(&triggers), expected("notices", &[&ids[0], &ids[1]]));
    assert_eq!(data_of(&triggers, &ids[0]), json!({"notice": 1}));

    // AND the second again triggers nothing more
    cloud.deliver(&events[1]);
    assert!(cloud.new_triggers().await.is_empty());
    assert!(cloud.new_dead_letters().await.is_empty());
}

/// SNS to an SQS queue the ingest function reads: SNS delivers a notification more than once at
/// times, each copy a new SQS message with its own `messageId`; the copies trigger once.
async fn sns_notifications_through_a_queue(cloud: &Pipeline) {
    // GIVEN a topic with a queue subscribed, and a source on the queue
    let sns = aws_sdk_sns::Client::new(&cloud.aws);
    let topic_arn = topic(&sns, "alerts").await;
    let queue = create_queue(&cloud.sqs, "alerts-notifications").await;
    native::subscribe_queue_notifications(&sns, &cloud.sqs, &topic_arn, &queue).await;
    let arn = queue_arn(&cloud.sqs, &queue).await;
    cloud.define_event("alerts.raised", None);
    cloud.define_source("alerts", "alerts.raised", json!({"eventSource": ["aws:sqs"], "eventSourceARN": [arn]}));
    let published = sns.publish().topic_arn(&topic_arn).message("disk full").send().await.expect("publish");
    let notification = receive(&cloud.sqs, &queue, 1).await;
    assert_eq!(notification.len(), 1);
    let body = notification[0].body.clone().expect("the notification");
    // AND a second copy of the notification, as SNS sends one now and then
    cloud.sqs.send_message().queue_url(&queue).message_body(&body).send().await.expect("send the copy");
    let mut copies = notification;
    copies.extend(receive(&cloud.sqs, &queue, 1).await);
    assert_eq!(copies.len(), 2);
    assert_ne!(copies[0].message_id, copies[1].message_id);

    // WHEN Lambda's event source hands each copy over, in batches of their own
    for copy in &copies {
        assert!(cloud.batch(&sqs_event(&arn, std::slice::from_ref(copy))).is_empty());
        delete(&cloud.sqs, &queue, copy).await;
    }

    // THEN the notification triggered once, named by its SNS MessageId, carrying the notification
    let triggers = cloud.new_triggers().await;
    let message_id = published.message_id.expect("a MessageId");
    assert_eq!(origins(&triggers), expected("alerts", &[&format!("sns:{message_id}")]));
    assert_eq!(data(&triggers[0])["Message"], "disk full");
    assert!(cloud.new_dead_letters().await.is_empty());
}

/// EventBridge: a rule sends three events to a queue: one the source wants, one it does not
/// (rejected), one another invocation holds (the function fails, Lambda retries it).
async fn eventbridge_events(cloud: &Pipeline) {
    // GIVEN a rule with a queue target, and a source for finished builds
    let events = aws_sdk_eventbridge::Client::new(&cloud.aws);
    let queue = create_queue(&cloud.sqs, "builds").await;
    native::rule_to_queue(&events, &cloud.sqs, "ci-builds", &json!({"source": ["ci.builds"]}), &queue).await;
    cloud.define_event("builds.finished", None);
    cloud.define_source(
        "builds",
        "builds.finished",
        json!({"source": ["ci.builds"], "detail-type": ["Build Finished"]}),
    );
    let finished = native::put_event(&events, "ci.builds", "Build Finished", &json!({"build": 1})).await;
    let started = native::put_event(&events, "ci.builds", "Build Started", &json!({"build": 2})).await;
    let retried = native::put_event(&events, "ci.builds", "Build Finished", &json!({"build": 3})).await;
    let delivered = native::eventbridge_events(&cloud.sqs, &queue, 3).await;
    let event = |id: &str| delivered.iter().find(|e| e["id"] == id).unwrap_or_else(|| panic!("no event {id}"));

    // WHEN EventBridge invokes the function with the first two
    cloud.deliver(event(&finished));
    cloud.deliver(event(&started));

    // THEN the finished build triggered, carrying the event; the started one is dead-lettered
    let triggers = cloud.new_triggers().await;
    assert_eq!(origins(&triggers), expected("builds", &[&finished]));
    assert_eq!(data_of(&triggers, &finished)["detail"], json!({"build": 1}));
    let dead = cloud.new_dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0].reason.as_str(), dead[0].kind.as_str()), ("/problems/no-source-matched", "aws.events"));
    assert_eq!(dead[0].record_id.as_deref(), Some(started.as_str()));

    // WHEN the third comes while another invocation holds it
    let held = cloud.hold("builds", "builds.finished", event(&retried), &retried).await;
    let answer = invoke(cloud.lambda_port, "ingest", event(&retried));

    // THEN the function fails, for Lambda to retry the event, and nothing triggered
    assert_ne!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.to_string().contains("must come again"), "{}", answer.body);
    assert!(cloud.new_triggers().await.is_empty());

    // WHEN the other invocation gives up and Lambda retries
    cloud.release(held).await;
    cloud.deliver(event(&retried));

    // THEN it triggered once; and the first again triggers nothing more
    assert_eq!(origins(&cloud.new_triggers().await), expected("builds", &[&retried]));
    cloud.deliver(event(&finished));
    assert!(cloud.new_triggers().await.is_empty());
}

/// The payload of the trigger of record `id`.
fn data_of(triggers: &[DeliveryMessage], id: &str) -> Value {
    data(triggers.iter().find(|t| t.source.as_ref().is_some_and(|s| s.id == id)).expect("a trigger of the record"))
}

/// The documents built from what moto produced read as the `aws_lambda_events` types Lambda's
/// Rust runtime would give a function, and as the native records the gateway expects, ids included.
#[tokio::test]
async fn genuine_documents_read_as_lambda_events_with_their_native_ids() {
    use aws_lambda_events::event::{dynamodb, eventbridge, kinesis, s3, sns, sqs};
    use gateway_core::SourceKind;

    let moto = Moto::start("native-documents");
    let aws = moto.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let ids = |document: &Value, kind: SourceKind| {
        let native = gateway_aws_events::read(document).expect("a native document");
        assert_eq!(native.kind, kind);
        for record in &native.records {
            assert!(record.payload.is_ok(), "{record:?}");
        }
        native.records.into_iter().map(|r| (r.id, r.item_identifier)).collect::<Vec<_>>()
    };

    // S3, through its notification queue
    let s3_client = native::s3_client(&aws);
    let queue = create_queue(&sqs, "s3").await;
    native::notifying_bucket(&s3_client, &sqs, "docs", &queue).await;
    native::put_object(&s3_client, "docs", "report.csv", "a,b\n").await;
    let event = native::s3_events(&sqs, &queue, 1).await.remove(0);
    let typed: s3::S3Event = serde_json::from_value(event.clone()).expect("an S3Event");
    let object = &typed.records[0].s3.object;
    let sequencer = object.sequencer.clone().expect("a sequencer");
    assert_eq!(object.key.as_deref(), Some("report.csv"));
    assert_eq!(typed.records[0].s3.bucket.arn.as_deref(), Some("arn:aws:s3:::docs"));
    assert_eq!(ids(&event, SourceKind::S3), [(format!("docs/report.csv//ObjectCreated:Put/{sequencer}"), None)]);

    // SNS, through a queue subscribed without raw delivery
    let sns_client = aws_sdk_sns::Client::new(&aws);
    let topic_arn = topic(&sns_client, "docs").await;
    let queue = create_queue(&sqs, "sns").await;
    let subscription = native::subscribe_queue_notifications(&sns_client, &sqs, &topic_arn, &queue).await;
    let published = sns_client.publish().topic_arn(&topic_arn).message("hello").send().await.unwrap();
    let message_id = published.message_id.unwrap();
    let event = native::sns_events(&sqs, &queue, &subscription, 1).await.remove(0);
    let typed: sns::SnsEvent = serde_json::from_value(event.clone()).expect("an SnsEvent");
    let record = &typed.records[0];
    assert_eq!(
        (record.event_subscription_arn.as_str(), record.sns.message_id.as_str()),
        (subscription.as_str(), message_id.as_str())
    );
    assert_eq!((record.sns.topic_arn.as_str(), record.sns.message.as_str()), (topic_arn.as_str(), "hello"));
    assert!(record.sns.signing_cert_url.starts_with("https://"), "{record:?}");
    assert_eq!(ids(&event, SourceKind::Sns), [(message_id, None)]);

    // SQS, as Lambda's event source mapping hands messages over
    let queue = create_queue(&sqs, "plain").await;
    sqs.send_message().queue_url(&queue).message_body("plain").send().await.unwrap();
    let messages = receive(&sqs, &queue, 1).await;
    let event = sqs_event(&queue_arn(&sqs, &queue).await, &messages);
    let typed: sqs::SqsEvent = serde_json::from_value(event.clone()).expect("an SqsEvent");
    let message_id = typed.records[0].message_id.clone().expect("a messageId");
    assert_eq!(ids(&event, SourceKind::Sqs), [(message_id.clone(), Some(message_id))]);

    // EventBridge, through a rule's queue target
    let events = aws_sdk_eventbridge::Client::new(&aws);
    let queue = create_queue(&sqs, "eventbridge").await;
    native::rule_to_queue(&events, &sqs, "docs", &json!({"source": ["docs"]}), &queue).await;
    let event_id = native::put_event(&events, "docs", "Doc Written", &json!({"n": 1})).await;
    let event = native::eventbridge_events(&sqs, &queue, 1).await.remove(0);
    let typed: eventbridge::EventBridgeEvent<Value> =
        serde_json::from_value(event.clone()).expect("an EventBridgeEvent");
    assert_eq!((typed.id.as_deref(), typed.detail_type.as_str()), (Some(event_id.as_str()), "Doc Written"));
    assert_eq!(typed.detail, json!({"n": 1}));
    assert_eq!(ids(&event, SourceKind::EventBridge), [(event_id, None)]);

    // DynamoDB Streams, read with GetRecords
    let dynamodb_client = aws_sdk_dynamodb::Client::new(&aws);
    let stream_arn = native::streaming_table(&dynamodb_client, "docs").await;
    let item = aws_sdk_dynamodb::types::AttributeValue::S("sku-9".into());
    dynamodb_client.put_item().table_name("docs").item("sku", item).send().await.unwrap();
    let records = native::dynamodb_records(&aws_sdk_dynamodbstreams::Client::new(&aws), &stream_arn).await;
    let event = lambda_event(&records);
    let typed: dynamodb::Event = serde_json::from_value(event.clone()).expect("a DynamoDB Event");
    let record = &typed.records[0];
    assert_eq!((record.event_name.as_str(), record.event_source_arn.as_deref()), ("INSERT", Some(stream_arn.as_str())));
    let keys: Value = serde_dynamo::from_item(record.change.keys.clone()).unwrap();
    assert_eq!(keys, json!({"sku": "sku-9"}));
    assert_eq!(ids(&event, SourceKind::DynamoDb), [(record.event_id.clone(), record.change.sequence_number.clone())]);

    // Kinesis, read with GetRecords
    let kinesis_client = aws_sdk_kinesis::Client::new(&aws);
    let stream_arn = native::kinesis_stream(&kinesis_client, "docs").await;
    let sequence_numbers = native::put_records(&kinesis_client, "docs", &[r#"{"n": 1}"#]).await;
    let records = native::kinesis_records(&kinesis_client, "docs", &stream_arn).await;
    let event = lambda_event(&records);
    let typed: kinesis::KinesisEvent = serde_json::from_value(event.clone()).expect("a KinesisEvent");
    let record = &typed.records[0];
    assert_eq!(record.kinesis.data.0, br#"{"n": 1}"#);
    assert_eq!(record.kinesis.sequence_number, sequence_numbers[0]);
    let event_id = record.event_id.clone().expect("an eventID");
    assert!(event_id.starts_with("shardId-") && event_id.ends_with(&sequence_numbers[0]), "{event_id}");
    assert_eq!(ids(&event, SourceKind::Kinesis), [(event_id, Some(sequence_numbers[0].clone()))]);
}
