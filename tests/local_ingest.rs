//! Native AWS events on the laptop, as the README's walk-through has them: the real gateway,
//! a source on a bucket, `sam local generate-event s3 put` fed to `POST /ingest/aws`, and the
//! example subscriber under `cargo lambda watch` receiving the record as `source`.

use std::time::Duration;

use end_to_end::*;
use serde_json::{json, Value};

fn generated_s3_put() -> Value {
    let file = workspace_root().join("events/ingest/s3-put.json");
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

#[test]
fn an_s3_notification_triggers_its_source_and_the_subscriber_gets_the_record_as_source() {
    // GIVEN the gateway, the example subscriber, an event and a source on the bucket
    build_binaries();
    let dir = temp_dir("ingest");
    let (port, lambda_port) = (free_port(), free_port());
    let watch = start_lambda_watch(lambda_port, dir.join("watch.log"));
    let _gateway =
        start_gateway(GatewaySettings { port, data_dir: &dir.join("data"), lambda_port, log: dir.join("gateway.log") });
    let created = http(port, "POST", "/events", Some(&json!({"name": "uploads.received"})));
    assert_eq!(created.status, 201, "{}", created.body);
    let sub = http(
        port,
        "POST",
        "/subscriptions",
        Some(&json!({"event": "uploads.received", "functionId": "example-subscriber"})),
    );
    assert_eq!(sub.status, 201, "{}", sub.body);
    let source = json!({
        "name": "uploads", "event": "uploads.received",
        "pattern": {"eventSource": ["aws:s3"], "s3": {"bucket": {"name": ["gateway-uploads"]}}}
    });
    assert_eq!(http(port, "POST", "/sources", Some(&source)).status, 201);

    // WHEN the SAM CLI's S3 put event is ingested, twice
    let document = generated_s3_put();
    let first = http(port, "POST", "/ingest/aws", Some(&document));
    let again = http(port, "POST", "/ingest/aws", Some(&document));

    // THEN one trigger, the second delivery answering it
    assert_eq!(first.status, 200, "{}", first.body);
    let event_id = first.body["triggers"][0]["eventId"].as_str().expect("a trigger").to_owned();
    assert_eq!(again.body["triggers"][0]["eventId"], event_id.as_str());

    // AND the subscriber received the record as the payload, and where it came from as source
    wait_until("the delivery", Duration::from_secs(120), || {
        http(port, "GET", &format!("/deliveries/{event_id}"), None).body[0]["status"] == "invoked"
    });
    wait_until("the function's log line", Duration::from_secs(10), || {
        logged_invocations(&watch.log_text()).iter().any(|i| i["eventId"] == event_id.as_str())
    });
    let invocations = logged_invocations(&watch.log_text());
    let got = invocations.iter().find(|i| i["eventId"] == event_id.as_str()).unwrap();
    assert_eq!(got["data"], document["Records"][0]);
    assert_eq!(
        got["source"],
        json!({"name": "uploads", "kind": "aws:s3", "id": "gateway-uploads/test/key//ObjectCreated:Put/0A1B2C3D4E5F678901", "arn": "arn:aws:s3:::gateway-uploads"})
    );
    assert_eq!(invocations.iter().filter(|i| i["event"] == "uploads.received").count(), 1, "triggered once");
    std::fs::remove_dir_all(dir).ok();
}
