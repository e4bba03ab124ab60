//! CloudEvents in and out, end to end on the local gateway with `cargo lambda watch`, spoken by
//! a client no one here wrote: the CloudEvents Python SDK (`tests/cloudevents_client.py`) sends
//! structured, binary and batch requests, and parses with its own `from_json` what a subscriber
//! in `cloudevents` format received.

use std::process::Command;
use std::time::Duration;

use end_to_end::*;
use serde_json::{json, Value};

/// Runs the SDK script with `args`; its JSON lines.
fn sdk(args: &[&str]) -> Vec<Value> {
    let output = Command::new(python())
        .arg(workspace_root().join("tests/cloudevents_client.py"))
        .args(args)
        .output()
        .expect("python runs");
    assert!(output.status.success(), "the SDK script failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

#[test]
fn the_cloudevents_sdk_sends_every_mode_and_reads_what_a_subscriber_in_cloudevents_format_got() {
    // GIVEN the gateway, cargo lambda watch, and an event with two subscriptions of the example
    // subscriber: one in cloudevents format, one native
    build_binaries();
    let dir = temp_dir("cloudevents");
    let (port, lambda_port) = (free_port(), free_port());
    let watch = start_lambda_watch(lambda_port, dir.join("watch.log"));
    let _gateway =
        start_gateway(GatewaySettings { port, data_dir: &dir.join("data"), lambda_port, log: dir.join("gateway.log") });
    let schema = json!({"type": "object", "required": ["orderId"], "properties": {"orderId": {"type": "string"}}});
    let created = http(port, "POST", "/events", Some(&json!({"name": "orders.created", "schema": schema})));
    assert_eq!(created.status, 201, "{}", created.body);
    for (format, purpose) in [("cloudevents", "ce"), ("native", "native")] {
        let body = json!({"event": "orders.created", "functionId": "example-subscriber", "format": format,
                          "metadata": {"purpose": purpose}});
        let sub = http(port, "POST", "/subscriptions", Some(&body));
        assert_eq!(sub.status, 201, "{}", sub.body);
    }

    // WHEN the SDK sends a structured event, a binary one, a batch of two, and the first again
    let answers = sdk(&["send", &format!("http://127.0.0.1:{port}")]);

    // THEN each is accepted, the batch with a receipt per member, and the repeat with the first receipt
    let answer = |mode: &str| answers.iter().find(|a| a["mode"] == mode).unwrap()["answer"].clone();
    for mode in ["structured", "binary", "batch", "again"] {
        assert_eq!(answer(mode)[0], 202, "{mode}: {}", answer(mode));
    }
    let batch = answer("batch")[1].as_array().cloned().expect("one receipt per member");
    assert_eq!(batch.len(), 2);
    assert_eq!(answer("again")[1]["eventId"], answer("structured")[1]["eventId"]);
    let event_ids: Vec<String> =
        [answer("structured")[1].clone(), answer("binary")[1].clone(), batch[0].clone(), batch[1].clone()]
            .iter()
            .map(|r| r["eventId"].as_str().unwrap().to_owned())
            .collect();

    // AND the cloudevents-format subscriber got a CloudEvent per trigger, which the SDK parses
    let received_by = |purpose: &str| -> Vec<Value> {
        logged_invocations(&watch.log_text())
            .into_iter()
            .filter(
                |i| if purpose == "ce" { i.get("specversion").is_some() } else { i["metadata"]["purpose"] == purpose },
            )
            .collect()
    };
    wait_until("both subscribers' invocations", Duration::from_secs(120), || {
        received_by("ce").len() >= 4 && received_by("native").len() >= 4
    });
    let file = dir.join("received.jsonl");
    std::fs::write(&file, received_by("ce").iter().map(Value::to_string).collect::<Vec<_>>().join("\n")).unwrap();
    let parsed = sdk(&["parse", file.to_str().unwrap()]);
    assert_eq!(parsed.len(), 4, "{parsed:?}");
    for id in &event_ids {
        let event = parsed
            .iter()
            .find(|p| p["attributes"]["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} in {parsed:?}"));
        let a = &event["attributes"];
        assert_eq!(
            (&a["specversion"], &a["type"], &a["source"]),
            (&json!("1.0"), &json!("orders.created"), &json!("/event-gateway"))
        );
        assert_eq!(
            (&a["datacontenttype"], &a["tenant"], &a["originsource"]),
            (&json!("application/json"), &json!("acme"), &json!("/py/shop"))
        );
        assert_eq!(a["deliveryattempt"], 1);
        assert!(a["subscriptionid"].as_str().is_some_and(|s| s.starts_with("sub_")) && a["time"].is_string(), "{a}");
        assert!(event["data"]["orderId"].is_string(), "{event}");
    }
    let binary = parsed.iter().find(|p| p["attributes"]["originid"] == "py-binary").expect("the binary one");
    assert_eq!(binary["attributes"]["subject"], "café o-b", "percent-encoded by the SDK, decoded by the gateway");
    // AND the native subscriber got the CloudEvent's context beside the payload
    let native = received_by("native");
    let got = native.iter().find(|i| i["eventId"] == event_ids[0].as_str()).expect("the structured one, natively");
    assert_eq!(got["cloudEvent"]["id"], "py-structured");
    assert_eq!(
        (&got["cloudEvent"]["source"], &got["cloudEvent"]["extensions"]["tenant"]),
        (&json!("/py/shop"), &json!("acme"))
    );
    std::fs::remove_dir_all(dir).ok();
}
