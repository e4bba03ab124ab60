//! The cloud pipeline end to end, with no AWS account: `moto_server` gives DynamoDB, SNS and
//! SQS, and one `cargo lambda watch` runs the workspace's real Lambda functions, configured only
//! through their environment, as a deployment configures them. The test plays the two AWS
//! services that are not emulated: API Gateway (it invokes the HTTP functions with HTTP API
//! events through the Lambda Invoke API) and Lambda's SQS event source (it hands the delivery
//! queue's batches to the dispatcher, then deletes only the messages that did not fail). The
//! dispatcher invokes the subscribed functions through the same `cargo lambda watch`.
//!
//! What this proves of a failing function is the emulator's behaviour, not Lambda's: `cargo
//! lambda watch` runs a function during the Invoke call even for `InvocationType=Event`, and
//! answers with the function's error when it throws, so the dispatcher sees the failure and
//! retries it. Real Lambda answers 202 to every async invoke it accepts and retries the function
//! itself: there the same delivery is recorded `invoked` ("Lambda accepted it") after one
//! attempt. A `sync` subscription is what records the function's real outcome on AWS too. The
//! README's "What each delivery status means" says both.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use end_to_end::api_gateway::{api, http_api_event, ApiResponse};
use end_to_end::moto::{delete, messages_in, queue_arn, receive, sqs_event, subscribe_queue, topic, Moto};
use end_to_end::{
    build_functions, free_port, invoke, logged_invocations, start_lambda_watch_with_env, temp_dir, wait_until, Process,
};
use gateway_core::message::DeliveryMessage;
use gateway_dynamodb::create_table;
use serde_json::{json, Value};

const TABLE: &str = "gateway";
const EVENT: &str = "orders.created";
/// `GATEWAY_MAX_ATTEMPTS`: attempts in all before a delivery is dead-lettered.
const MAX_ATTEMPTS: u64 = 3;
/// A function the allowlist lets through but that the workspace does not have: watch answers
/// 404, which no retry can mend.
const NOT_DEPLOYED: &str = "example-not-deployed";

/// One pipeline at a time in this process: each starts its own moto_server and cargo lambda
/// watch on free ports, and two picking ports at once may pick the same.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// moto_server with the template's resources, and cargo lambda watch serving the functions.
struct Pipeline {
    /// Declared first so that it stops first, while moto still answers.
    watch: Process,
    moto: Moto,
    lambda_port: u16,
    sqs: aws_sdk_sqs::Client,
    queue: String,
    queue_arn: String,
    dead_letters: String,
    dir: PathBuf,
    /// moto's endpoint, for the test's own clients.
    aws: aws_config::SdkConfig,
    /// Declared last so that it is let go once the processes above have stopped.
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

async fn pipeline() -> Pipeline {
    let turn = ONE_AT_A_TIME.lock().await;
    build_functions();
    let moto = Moto::start("pipeline");
    let aws = moto.sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    create_table(&aws_sdk_dynamodb::Client::new(&aws), TABLE).await.expect("create the table");
    // The template's shape: a topic, a delivery queue with a redrive policy to the dead-letter
    // queue, subscribed to the topic with raw message delivery.
    let topic_arn = topic(&sns, "gateway-deliveries").await;
    let dead_letters = create_queue(&sqs, "gateway-dead-letters", &[]).await;
    let redrive = json!({
        "deadLetterTargetArn": queue_arn(&sqs, &dead_letters).await,
        "maxReceiveCount": 5,
    });
    let queue = create_queue(
        &sqs,
        "gateway-deliveries",
        &[
            // Longer than any dispatcher invocation here; a batch item failure waits this long.
            (QueueAttributeName::VisibilityTimeout, "60".to_owned()),
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
        ],
    )
    .await;
    subscribe_queue(&sns, &sqs, &topic_arn, &queue).await;

    let lambda_port = free_port();
    // The functions' own Lambda calls (the dispatcher's invokes) go through a front that adds
    // the request id real Lambda answers with, and watch does not.
    let front = end_to_end::lambda_front::LambdaFront::start(lambda_port);
    let dir = temp_dir("pipeline");
    let environment = [
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("AWS_ENDPOINT_URL_LAMBDA", format!("http://127.0.0.1:{}", front.port)),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "e2e".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "e2e".to_owned()),
        ("GATEWAY_TABLE", TABLE.to_owned()),
        ("GATEWAY_TOPIC_ARN", topic_arn),
        ("GATEWAY_FUNCTION_ALLOWLIST", "example-".to_owned()),
        // As the template passes AWS::AccountId; moto answers for this account.
        ("GATEWAY_ACCOUNT_ID", "123456789012".to_owned()),
        ("GATEWAY_DELIVERY_QUEUE_URL", queue.clone()),
        ("GATEWAY_DEAD_LETTER_QUEUE_URL", dead_letters.clone()),
        ("GATEWAY_MAX_ATTEMPTS", MAX_ATTEMPTS.to_string()),
        // SQS delays are whole seconds: backoff of 1 s, then 2 s.
        ("GATEWAY_RETRY_BASE_MS", "1000".to_owned()),
        ("GATEWAY_RETRY_MAX_MS", "2000".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let watch = start_lambda_watch_with_env(lambda_port, dir.join("watch.log"), &environment);
    Pipeline {
        watch,
        moto,
        lambda_port,
        queue_arn: queue_arn(&sqs, &queue).await,
        sqs,
        queue,
        dead_letters,
        dir,
        aws,
        _turn: turn,
    }
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str, attributes: &[(QueueAttributeName, String)]) -> String {
    let mut request = sqs.create_queue().queue_name(name);
    for (attribute, value) in attributes {
        request = request.attributes(attribute.clone(), value);
    }
    request.send().await.expect("create a queue").queue_url.expect("a queue url")
}

impl Pipeline {
    /// An HTTP API request, as API Gateway hands it to `function`.
    fn api(&self, function: &str, request: Value) -> ApiResponse {
        api(self.lambda_port, function, &request)
    }

    fn define_orders_event(&self) {
        let body = json!({
            "name": EVENT,
            "schema": {
                "type": "object",
                "required": ["orderId", "total"],
                "properties": {"orderId": {"type": "string"}, "total": {"type": "number"}}
            }
        });
        let created = self.api("events-api", http_api_event("POST", "ANY /events", "/events", &[], Some(&body)));
        assert_eq!(created.status, 201, "{}", created.body);
    }

    fn subscribe(&self, function: &str, metadata: Value) -> ApiResponse {
        self.subscribe_with(json!({"event": EVENT, "functionId": function, "metadata": metadata}))
    }

    fn subscribe_with(&self, body: Value) -> ApiResponse {
        let request = http_api_event("POST", "ANY /subscriptions", "/subscriptions", &[], Some(&body));
        self.api("subscriptions-api", request)
    }

    fn trigger(&self, payload: &Value) -> ApiResponse {
        let path = format!("/events/{EVENT}/trigger");
        let request = http_api_event("POST", "POST /events/{name}/trigger", &path, &[("name", EVENT)], Some(payload));
        self.api("trigger-api", request)
    }

    /// `GET /deliveries/{eventId}`, through the trigger function.
    fn deliveries(&self, event_id: &str) -> Vec<Value> {
        let path = format!("/deliveries/{event_id}");
        let request = http_api_event("GET", "GET /deliveries/{eventId}", &path, &[("eventId", event_id)], None);
        let log = self.api("trigger-api", request);
        assert_eq!(log.status, 200, "{}", log.body);
        log.body.as_array().expect("a list of deliveries").clone()
    }

    /// One poll of Lambda's SQS event source: a batch of up to 10 messages, with their
    /// attributes, handed to the dispatcher as an SQS event; then every message it did not list
    /// in `batchItemFailures` is deleted. Returns how many messages it handed over.
    async fn poll(&self) -> usize {
        let messages = receive(&self.sqs, &self.queue, 1).await;
        if messages.is_empty() {
            return 0;
        }
        let answer = invoke(self.lambda_port, "dispatcher", &sqs_event(&self.queue_arn, &messages));
        assert_eq!(answer.status, 200, "the dispatcher failed: {}", answer.body);
        let failed: HashSet<&str> = answer.body["batchItemFailures"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["itemIdentifier"].as_str())
            .collect();
        for message in &messages {
            if !failed.contains(message.message_id.as_deref().unwrap_or_default()) {
                delete(&self.sqs, &self.queue, message).await;
            }
        }
        messages.len()
    }

    /// Polls until the delivery queue is empty, waiting out the retries' `DelaySeconds`.
    async fn drain_delivery_queue(&self) {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            self.poll().await;
            if messages_in(&self.sqs, &self.queue).await == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the delivery queue did not empty; watch's log is in {}",
                self.watch.log.display()
            );
        }
    }

    /// Every message in the dead-letter queue.
    async fn dead_letters(&self) -> Vec<aws_sdk_sqs::types::Message> {
        let mut all = Vec::new();
        loop {
            let batch = receive(&self.sqs, &self.dead_letters, 1).await;
            if batch.is_empty() {
                return all;
            }
            all.extend(batch);
        }
    }

    /// Every message in the dead-letter queue, taken off it.
    async fn take_dead_letters(&self) -> Vec<aws_sdk_sqs::types::Message> {
        let all = self.dead_letters().await;
        for message in &all {
            delete(&self.sqs, &self.dead_letters, message).await;
        }
        all
    }

    /// The invocation payloads `function` logged for the trigger `event_id`.
    fn invocations_of(&self, function: &str, event_id: &str) -> Vec<Value> {
        logged_invocations(&self.watch.log_text())
            .into_iter()
            .filter(|i| i["functionId"] == function && i["eventId"] == event_id)
            .collect()
    }
}

fn instant(timestamp: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let text = timestamp.as_str().expect("a timestamp");
    chrono::DateTime::parse_from_rfc3339(text).expect("an RFC 3339 timestamp")
}

#[tokio::test]
async fn a_trigger_reaches_the_subscriber_once_and_failed_deliveries_are_dead_lettered_with_nothing_lost() {
    // GIVEN the functions under cargo lambda watch, over moto_server
    let started = Instant::now();
    let cloud = pipeline().await;

    // AND an event defined and subscribed to through the HTTP functions: the example
    // subscriber, a function that always fails, and one that is not deployed
    cloud.define_orders_event();
    let subscriber = cloud.subscribe("example-subscriber", json!({"purpose": "e2e"}));
    assert_eq!(subscriber.status, 201, "{}", subscriber.body);
    let failing = cloud.subscribe("example-failing-subscriber", json!({"purpose": "retries"}));
    assert_eq!(failing.status, 201, "{}", failing.body);
    let missing = cloud.subscribe(NOT_DEPLOYED, json!({}));
    assert_eq!(missing.status, 201, "{}", missing.body);
    // (the allowlist the function got from its environment refuses any other function)
    let refused = cloud.subscribe("admin-drop-tables", json!({}));
    assert_eq!(refused.status, 403, "{}", refused.body);

    // WHEN the event is triggered through the trigger function
    let payload = json!({"orderId": "o-1", "total": 42.5});
    let accepted = cloud.trigger(&payload);
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let receipt = accepted.body;
    let event_id = receipt["eventId"].as_str().expect("an eventId").to_owned();
    assert_eq!(receipt["deliveries"].as_array().map(Vec::len), Some(3));

    // AND the delivery queue's messages go to the dispatcher as Lambda's SQS event source
    // would hand them over, retries included, until the queue is empty
    cloud.drain_delivery_queue().await;

    // THEN the example subscriber received the invocation payload, exactly once
    wait_until("the functions' log lines", Duration::from_secs(30), || {
        cloud.invocations_of("example-failing-subscriber", &event_id).len() as u64 >= MAX_ATTEMPTS
    });
    let received = cloud.invocations_of("example-subscriber", &event_id);
    assert_eq!(received.len(), 1, "{received:?}");
    let got = &received[0];
    assert_eq!(got["event"], EVENT);
    assert_eq!(got["subscriptionId"], subscriber.body["subscriptionId"]);
    assert_eq!(got["functionId"], "example-subscriber");
    assert_eq!(instant(&got["receivedAt"]), instant(&receipt["receivedAt"]));
    assert_eq!(got["data"], payload);
    assert_eq!(got["dataType"], "application/json");
    assert_eq!(got["metadata"], json!({"purpose": "e2e"}));

    // AND the failing function ran once per attempt: the dispatcher's retries, not the SDK's
    // (under the emulator, which reports the function's error to an async invoke; see above)
    let attempts = cloud.invocations_of("example-failing-subscriber", &event_id);
    assert_eq!(attempts.len() as u64, MAX_ATTEMPTS);
    assert!(attempts.iter().all(|a| a["data"] == payload));

    // AND the dead-letter queue holds the two failed deliveries, each alone, with its error:
    // the failing one after every attempt, the missing function's after its first
    let dead = cloud.dead_letters().await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    let mut dead_by_function = std::collections::HashMap::new();
    for message in &dead {
        let event_attribute =
            message.message_attributes.as_ref().and_then(|a| a.get("event")).and_then(|v| v.string_value.as_deref());
        assert_eq!(event_attribute, Some(EVENT));
        let body: DeliveryMessage =
            serde_json::from_str(message.body.as_deref().unwrap_or_default()).expect("a delivery message");
        assert_eq!(body.event_id.to_string(), event_id);
        assert_eq!(body.payload().unwrap(), serde_json::to_vec(&payload).unwrap());
        assert_eq!(body.deliveries.len(), 1, "{body:?}");
        let entry = body.deliveries[0].clone();
        dead_by_function.insert(entry.function_id.to_string(), entry);
    }
    let failed = &dead_by_function["example-failing-subscriber"];
    assert_eq!(u64::from(failed.attempts), MAX_ATTEMPTS);
    let error = failed.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("attempt 3"), "{error}");
    assert!(error.contains("HTTP 500"), "{error}");
    assert!(error.contains(&format!("fails on purpose: {event_id}")), "{error}");
    let not_deployed = &dead_by_function[NOT_DEPLOYED];
    assert_eq!(not_deployed.attempts, 1);
    let error = not_deployed.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("attempt 1"), "{error}");
    assert!(error.contains("HTTP 404"), "{error}");

    // AND the delivery log, read through the trigger function, has every delivery's end
    let log = cloud.deliveries(&event_id);
    assert_eq!(log.len(), 3, "{log:?}");
    let of = |function: &str| {
        log.iter().find(|d| d["functionId"] == function).unwrap_or_else(|| panic!("no delivery to {function}: {log:?}"))
    };
    // async: Lambda (here watch) took the event; the gateway does not claim it succeeded
    let delivered = of("example-subscriber");
    assert_eq!((&delivered["status"], &delivered["attempts"]), (&json!("invoked"), &json!(1)));
    let failed = of("example-failing-subscriber");
    assert_eq!((&failed["status"], &failed["attempts"]), (&json!("failed"), &json!(MAX_ATTEMPTS)));
    assert!(failed["lastError"].as_str().is_some_and(|e| e.contains("fails on purpose")));
    let not_deployed = of(NOT_DEPLOYED);
    assert_eq!((&not_deployed["status"], &not_deployed["attempts"]), (&json!("failed"), &json!(1)));

    // AND nothing is left behind on the delivery queue
    assert_eq!(messages_in(&cloud.sqs, &cloud.queue).await, 0);
    eprintln!("the pipeline ran in {:?}", started.elapsed());
    std::fs::remove_dir_all(&cloud.dir).ok();
}

#[tokio::test]
async fn a_sync_delivery_fails_with_the_function_error_is_dead_lettered_and_runs_again_when_redriven() {
    // GIVEN a sync subscription with two attempts to the function that always fails
    let cloud = pipeline().await;
    cloud.define_orders_event();
    let body = json!({"event": EVENT, "functionId": "example-failing-subscriber",
                      "delivery": {"mode": "sync", "maxAttempts": 2}});
    let subscribed = cloud.subscribe_with(body);
    assert_eq!(subscribed.status, 201, "{}", subscribed.body);
    assert_eq!(subscribed.body["delivery"], json!({"mode": "sync", "maxAttempts": 2}));

    // WHEN it is triggered and the delivery queue drained
    let accepted = cloud.trigger(&json!({"orderId": "o-3", "total": 3}));
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let event_id = accepted.body["eventId"].as_str().expect("an eventId").to_owned();
    cloud.drain_delivery_queue().await;

    // THEN it ran twice and is failed with the function's own error type and message (real
    // Lambda reports them as FunctionError with its payload; watch as an HTTP 500 with the same
    // payload: either way the record names both)
    let expected = format!("example-failing-subscriber fails on purpose: {event_id}");
    let log = cloud.deliveries(&event_id);
    assert_eq!(log.len(), 1, "{log:?}");
    let d = &log[0];
    assert_eq!((&d["status"], &d["attempts"]), (&json!("failed"), &json!(2)), "{d}");
    let error = d["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("attempt 2 of 2") && error.contains("AlwaysFails") && error.contains(&expected), "{d}");
    assert_eq!(d["history"].as_array().map(Vec::len), Some(2), "{d}");
    wait_until("the failing function's log lines", Duration::from_secs(30), || {
        cloud.invocations_of("example-failing-subscriber", &event_id).len() >= 2
    });
    // AND it is in the dead-letter queue with that error
    let dead = cloud.take_dead_letters().await;
    assert_eq!(dead.len(), 1);
    let letter = DeliveryMessage::read(dead[0].body.as_deref().unwrap_or_default()).expect("a delivery message");
    assert!(letter.deliveries[0].last_error.as_deref().unwrap_or_default().contains(&expected));

    // WHEN it is redriven through the gateway's cloud redrive (the routes' port), as
    // `POST /deliveries/{eventId}/redrive` does
    let store = gateway_dynamodb::DynamoStore::new(aws_sdk_dynamodb::Client::new(&cloud.aws), TABLE);
    let redrive = gateway_dynamodb::DynamoRedrive::new(
        store.clone(),
        std::sync::Arc::new(gateway_dynamodb::SqsRedriveQueue::new(cloud.sqs.clone(), &cloud.queue)),
    );
    let event = gateway_core::EventId::parse(&event_id).unwrap();
    let clock = gateway_core::ports::SystemClock;
    let receipt = gateway_core::redrive::redrive_trigger(&redrive, &store, &clock, &event, None).await.unwrap();
    assert_eq!(receipt.redriven, 1);
    cloud.drain_delivery_queue().await;

    // THEN it ran again as generation 1 (its two attempts counted afresh) and failed again
    let d = cloud.deliveries(&event_id).remove(0);
    assert_eq!((&d["status"], &d["attempts"], &d["generation"]), (&json!("failed"), &json!(2), &json!(1)), "{d}");
    assert!(d["redrivenAt"].is_string(), "{d}");
    wait_until("the redriven attempts' log lines", Duration::from_secs(30), || {
        cloud.invocations_of("example-failing-subscriber", &event_id).len() >= 4
    });

    // WHEN its new dead letter is moved back to the delivery queue, as SQS's DLQ redrive does
    let dead = cloud.take_dead_letters().await;
    assert_eq!(dead.len(), 1);
    let newest = dead[0].body.clone().unwrap_or_default();
    assert_eq!(DeliveryMessage::read(&newest).unwrap().deliveries[0].generation, 1);
    cloud.sqs.send_message().queue_url(&cloud.queue).message_body(newest).send().await.unwrap();
    cloud.drain_delivery_queue().await;

    // THEN it still works: a new series, generation 2
    let d = cloud.deliveries(&event_id).remove(0);
    assert_eq!((&d["status"], &d["attempts"], &d["generation"]), (&json!("failed"), &json!(2), &json!(2)), "{d}");
    assert_eq!(messages_in(&cloud.sqs, &cloud.queue).await, 0);
    std::fs::remove_dir_all(&cloud.dir).ok();
}

/// The invocation record Lambda sends an async function's destination once it is done with an
/// event, for the payload the function received (`payload`, as its log has it). Neither moto
/// (which runs functions in Docker) nor `cargo lambda watch` implements destinations, so the
/// test writes the record in the shape the AWS documentation gives ("Capturing records of
/// Lambda asynchronous invocations"), as Lambda would for a function in this account and region.
fn invocation_record(payload: &Value, condition: &str, request_id: &str) -> Value {
    let function = payload["functionId"].as_str().expect("a functionId");
    let failed = condition != "Success";
    json!({
        "version": "1.0",
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "requestContext": {
            "requestId": request_id,
            "functionArn": format!("arn:aws:lambda:us-east-1:123456789012:function:{function}:$LATEST"),
            "condition": condition,
            "approximateInvokeCount": if failed { 3 } else { 1 }
        },
        "requestPayload": payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": if failed { json!("Unhandled") } else { json!(null) }},
        "responsePayload": if failed { json!({"errorType": "OrderRejected", "errorMessage": "stock service down"}) } else { json!({"ok": true}) }
    })
}

#[tokio::test]
async fn lambdas_report_of_an_async_delivery_settles_it_and_a_reported_failure_is_dead_lettered_and_redriven() {
    // GIVEN two async subscriptions of the example subscriber, and the outcome queue the
    // template makes (its destinations' queue), read by the delivery-outcomes function
    let cloud = pipeline().await;
    let outcomes = create_queue(&cloud.sqs, "gateway-delivery-outcomes", &[]).await;
    let outcomes_arn = queue_arn(&cloud.sqs, &outcomes).await;
    cloud.define_orders_event();
    let ok = cloud.subscribe("example-subscriber", json!({"reports": "success"}));
    let bad = cloud.subscribe("example-subscriber", json!({"reports": "failure"}));
    assert_eq!((ok.status, bad.status), (201, 201), "{} {}", ok.body, bad.body);

    // AND a trigger the dispatcher handed to Lambda: both recorded invoked, nothing more claimed
    let accepted = cloud.trigger(&json!({"orderId": "o-4", "total": 4}));
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let event_id = accepted.body["eventId"].as_str().expect("an eventId").to_owned();
    cloud.drain_delivery_queue().await;
    let invoked = cloud.deliveries(&event_id);
    assert!(invoked.iter().all(|d| d["status"] == "invoked"), "{invoked:?}");
    // the request id Lambda gave each invocation, which its record names again
    let request_of = |reports: &str| -> String {
        let d = invoked.iter().find(|d| d["metadata"]["reports"] == reports).unwrap();
        d["history"][0]["requestId"].as_str().expect("the invoke's request id is kept").to_owned()
    };
    wait_until("both invocations' log lines", Duration::from_secs(30), || {
        cloud.invocations_of("example-subscriber", &event_id).len() >= 2
    });
    let received = cloud.invocations_of("example-subscriber", &event_id);
    let payload_of = |reports: &str| received.iter().find(|p| p["metadata"]["reports"] == reports).unwrap().clone();
    assert_eq!((&payload_of("success")["generation"], &payload_of("success")["attempt"]), (&json!(0), &json!(1)));

    // WHEN Lambda reports one succeeded and the other failed after its own retries (the
    // destinations' records on the outcome queue), plus a record that is not the gateway's,
    // and the outcome queue's batch goes to the function as Lambda's SQS event source hands it
    for record in [
        invocation_record(&payload_of("success"), "Success", &request_of("success")),
        invocation_record(&payload_of("failure"), "RetriesExhausted", &request_of("failure")),
        invocation_record(&json!({"functionId": "example-subscriber", "unrelated": true}), "Success", "x"),
        // a forged one: another role that may send to the queue, without the invocation's id
        invocation_record(&payload_of("failure"), "Success", "5e1f0000-0000-4000-8000-999999999999"),
    ] {
        cloud.sqs.send_message().queue_url(&outcomes).message_body(record.to_string()).send().await.unwrap();
    }
    let mut batch = Vec::new();
    while batch.len() < 4 {
        let more = receive(&cloud.sqs, &outcomes, 1).await;
        assert!(!more.is_empty(), "the outcome queue holds the four records");
        batch.extend(more);
    }
    let answer = invoke(cloud.lambda_port, "delivery-outcomes", &sqs_event(&outcomes_arn, &batch));
    assert_eq!(answer.status, 200, "{}", answer.body);

    // THEN none is to be delivered again (the foreign and the forged ones are dropped, not retried)
    assert_eq!(answer.body["batchItemFailures"], json!([]), "{}", answer.body);
    // AND the log says what Lambda reported: delivered, and failed with the function's error
    let log = cloud.deliveries(&event_id);
    let of = |reports: &str| log.iter().find(|d| d["metadata"]["reports"] == reports).unwrap().clone();
    let (delivered, failed) = (of("success"), of("failure"));
    assert_eq!((&delivered["status"], &delivered["reported"]["condition"]), (&json!("delivered"), &json!("Success")));
    assert_eq!((&failed["status"], &failed["reported"]["approximateInvokeCount"]), (&json!("failed"), &json!(3)));
    let error = failed["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("RetriesExhausted") && error.contains("OrderRejected: stock service down"), "{failed}");
    // AND the failure is in the dead-letter queue with that error and its payload
    let dead = cloud.take_dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter = DeliveryMessage::read(dead[0].body.as_deref().unwrap_or_default()).expect("a delivery message");
    assert_eq!(letter.payload().unwrap(), serde_json::to_vec(&json!({"orderId": "o-4", "total": 4})).unwrap());
    assert!(letter.deliveries[0].last_error.as_deref().unwrap_or_default().contains("stock service down"));

    // WHEN the failed one is redriven through the gateway's cloud redrive (its kept payload)
    let store = gateway_dynamodb::DynamoStore::new(aws_sdk_dynamodb::Client::new(&cloud.aws), TABLE);
    let redrive = gateway_dynamodb::DynamoRedrive::new(
        store.clone(),
        std::sync::Arc::new(gateway_dynamodb::SqsRedriveQueue::new(cloud.sqs.clone(), &cloud.queue)),
    );
    let event = gateway_core::EventId::parse(&event_id).unwrap();
    let receipt =
        gateway_core::redrive::redrive_trigger(&redrive, &store, &gateway_core::ports::SystemClock, &event, None)
            .await
            .unwrap();
    assert_eq!((receipt.redriven, receipt.not_redriven.len()), (1, 0), "the delivered one is never redriven");
    cloud.drain_delivery_queue().await;

    // THEN it ran again as generation 1, invoked, its old report gone with its old series
    let again = cloud.deliveries(&event_id).into_iter().find(|d| d["metadata"]["reports"] == "failure").unwrap();
    assert_eq!((&again["status"], &again["generation"]), (&json!("invoked"), &json!(1)), "{again}");
    assert!(again.get("reported").is_none(), "{again}");
    wait_until("the redriven invocation's log line", Duration::from_secs(30), || {
        cloud.invocations_of("example-subscriber", &event_id).iter().any(|p| p["generation"] == 1)
    });
    // AND a late copy of the old series' record changes nothing
    let late = invocation_record(&payload_of("failure"), "RetriesExhausted", &request_of("failure"));
    cloud.sqs.send_message().queue_url(&outcomes).message_body(late.to_string()).send().await.unwrap();
    let batch = receive(&cloud.sqs, &outcomes, 1).await;
    let answer = invoke(cloud.lambda_port, "delivery-outcomes", &sqs_event(&outcomes_arn, &batch));
    assert_eq!(answer.body["batchItemFailures"], json!([]), "{}", answer.body);
    let still = cloud.deliveries(&event_id).into_iter().find(|d| d["metadata"]["reports"] == "failure").unwrap();
    assert_eq!((&still["status"], &still["generation"]), (&json!("invoked"), &json!(1)), "{still}");
    std::fs::remove_dir_all(&cloud.dir).ok();
}

#[tokio::test]
async fn a_cloudevent_in_through_the_trigger_function_reaches_a_cloudevents_subscriber_as_a_cloudevent() {
    // GIVEN a subscription in cloudevents format
    let cloud = pipeline().await;
    cloud.define_orders_event();
    let sub =
        cloud.subscribe_with(json!({"event": EVENT, "functionId": "example-subscriber", "format": "cloudevents"}));
    assert_eq!(sub.status, 201, "{}", sub.body);

    // WHEN a structured CloudEvent comes to POST /cloudevents through the trigger function, twice
    let ce = json!({"specversion": "1.0", "id": "aws-1", "source": "/shop", "type": EVENT, "subject": "o-5",
                    "tenant": "acme", "data": {"orderId": "o-5", "total": 5}});
    let send = || {
        let mut request = http_api_event("POST", "POST /cloudevents", "/cloudevents", &[], Some(&ce));
        request["headers"]["content-type"] = json!("application/cloudevents+json");
        cloud.api("trigger-api", request)
    };
    let (first, again) = (send(), send());
    assert_eq!((first.status, again.status), (202, 202), "{} {}", first.body, again.body);
    assert_eq!(first.body["eventId"], again.body["eventId"], "source + id trigger once");
    let event_id = first.body["eventId"].as_str().unwrap().to_owned();
    cloud.drain_delivery_queue().await;

    // THEN the subscriber got one structured CloudEvent carrying what came in
    wait_until("the CloudEvent's log line", Duration::from_secs(30), || {
        logged_invocations(&cloud.watch.log_text()).iter().any(|i| i["id"] == event_id.as_str())
    });
    let got: Vec<Value> =
        logged_invocations(&cloud.watch.log_text()).into_iter().filter(|i| i["id"] == event_id.as_str()).collect();
    assert_eq!(got.len(), 1, "{got:?}");
    let e = &got[0];
    assert_eq!((&e["specversion"], &e["type"], &e["source"]), (&json!("1.0"), &json!(EVENT), &json!("/event-gateway")));
    assert_eq!((&e["subject"], &e["tenant"], &e["originid"]), (&json!("o-5"), &json!("acme"), &json!("aws-1")));
    assert_eq!(e["data"], json!({"orderId": "o-5", "total": 5}));
    assert_eq!(e["subscriptionid"], sub.body["subscriptionId"]);
    std::fs::remove_dir_all(&cloud.dir).ok();
}

/// What one trigger costs in AWS requests made by the gateway's own code (signed with the
/// functions' credentials; the test's own polls are not counted), by service and operation, at
/// one subscription and at ten, from moto's request recorder. docs/PERFORMANCE.md's cost table
/// is these counts priced; change the code's requests and this test says so. The requests of
/// Lambda's SQS event source (ReceiveMessage, DeleteMessageBatch, here played by the test) and
/// the invokes (Lambda, not moto) are outside moto's count; the table adds them.
#[tokio::test]
async fn a_trigger_makes_the_aws_requests_the_cost_table_counts() {
    // GIVEN one event with one subscription and one with ten (apart: `receivedAt` is written at
    // most once a second per event by an instance, and each event here gets one trigger)
    let cloud = pipeline().await;
    for (event, fan_out) in [("costs.one", 1usize), ("costs.ten", 10)] {
        let created = cloud.api(
            "events-api",
            http_api_event(
                "POST",
                "ANY /events",
                "/events",
                &[],
                Some(&json!({"name": event, "schema": {"type": "object"}})),
            ),
        );
        assert_eq!(created.status, 201, "{}", created.body);
        for i in 0..fan_out {
            let sub = cloud
                .subscribe_with(json!({"event": event, "functionId": "example-subscriber", "metadata": {"copy": i}}));
            assert_eq!(sub.status, 201, "{}", sub.body);
        }
    }

    for (event, fan_out) in [("costs.one", 1usize), ("costs.ten", 10)] {
        // WHEN one trigger is accepted and its message dispatched, with moto recording
        cloud.moto.record_requests();
        let path = format!("/events/{event}/trigger");
        let request =
            http_api_event("POST", "POST /events/{name}/trigger", &path, &[("name", event)], Some(&json!({"n": 1})));
        let accepted = cloud.api("trigger-api", request);
        assert_eq!(accepted.status, 202, "{}", accepted.body);
        cloud.drain_delivery_queue().await;
        let counted = cloud.moto.recorded_requests("e2e");

        // THEN the gateway made exactly these requests
        let expected: std::collections::BTreeMap<(String, String), usize> = [
            // the trigger function: the definition and its subscriptions in one Query
            ("dynamodb", "Query", 1),
            // the trigger function: settled accepted, then the event's receivedAt
            ("dynamodb", "UpdateItem", 2),
            // the trigger function: each delivery pending; the dispatcher: each one invoked
            ("dynamodb", "PutItem", 2 * fan_out),
            // the dispatcher: the trigger's state alone (a fresh message, received once)
            ("dynamodb", "BatchGetItem", 1),
            ("dynamodb", "BatchGetItem keys", 1),
            // the trigger function: one message carries every delivery
            ("sns", "Publish", 1),
        ]
        .into_iter()
        .map(|(service, operation, n)| ((service.to_owned(), operation.to_owned()), n))
        .collect();
        assert_eq!(counted, expected, "{event}: the requests a trigger makes at {fan_out} subscription(s)");

        // AND the log has every delivery handed over, once
        let event_id = accepted.body["eventId"].as_str().expect("an eventId");
        let log = cloud.deliveries(event_id);
        assert_eq!(log.len(), fan_out, "{log:?}");
        assert!(log.iter().all(|d| d["status"] == "invoked" && d["attempts"] == 1), "{log:?}");
    }
    std::fs::remove_dir_all(&cloud.dir).ok();
}
