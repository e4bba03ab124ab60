//! The local gateway as a user runs it: the real `event-gateway` binary on a SQLite file, and a
//! real `cargo lambda watch` running the example functions (the subscriber, and the one that
//! always fails).
//!
//! What `cargo lambda watch` (1.9) does differs from Lambda in one way these tests rely on: it
//! runs the function at once for either invocation type, answering 200 with its result, or HTTP
//! 500 with `{"errorType", "errorMessage"}` when it fails (no `X-Amz-Function-Error`). So an
//! `async` delivery to a working function is `invoked` here as on AWS, and a `sync` one sees the
//! function's real outcome.

use std::time::Duration;

use end_to_end::*;
use serde_json::{json, Value};

fn define_orders_event(port: u16) {
    let created = http(
        port,
        "POST",
        "/events",
        Some(&json!({
            "name": "orders.created",
            "schema": {
                "type": "object",
                "required": ["orderId", "total"],
                "properties": {"orderId": {"type": "string"}, "total": {"type": "number", "minimum": 0}}
            }
        })),
    );
    assert_eq!(created.status, 201, "{}", created.body);
}

fn subscribe_example(port: u16) -> Value {
    let sub = http(
        port,
        "POST",
        "/subscriptions",
        Some(&json!({
            "event": "orders.created", "functionId": "example-subscriber", "metadata": {"purpose": "e2e"}
        })),
    );
    assert_eq!(sub.status, 201, "{}", sub.body);
    sub.body
}

/// Subscribes to `orders.created` with `fields` (`functionId`, and `filter` or `delivery`).
fn subscribe(port: u16, fields: Value) -> Value {
    let mut body = json!({"event": "orders.created"});
    body.as_object_mut().unwrap().extend(fields.as_object().cloned().unwrap_or_default());
    let sub = http(port, "POST", "/subscriptions", Some(&body));
    assert_eq!(sub.status, 201, "{}", sub.body);
    sub.body
}

/// The recorded delivery of trigger `event_id` to subscription `sub` (as `POST /subscriptions`
/// answered it).
fn delivery(port: u16, event_id: &str, sub: &Value) -> Value {
    let log = http(port, "GET", &format!("/deliveries/{event_id}"), None);
    assert_eq!(log.status, 200, "{}", log.body);
    log.body
        .as_array()
        .and_then(|all| all.iter().find(|d| d["subscriptionId"] == sub["subscriptionId"]).cloned())
        .unwrap_or_else(|| panic!("no delivery to {} in {}", sub["subscriptionId"], log.body))
}

/// Each history entry's `(generation, number, result)`.
fn attempts_of(delivery: &Value) -> Vec<(u64, u64, String)> {
    delivery["history"]
        .as_array()
        .unwrap_or_else(|| panic!("a history in {delivery}"))
        .iter()
        .map(|a| {
            (a["generation"].as_u64().unwrap(), a["number"].as_u64().unwrap(), a["result"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// How many times `function`'s log (in cargo lambda watch's) shows it invoked for `event_id`.
fn invocations_of(watch: &Process, event_id: &str) -> usize {
    logged_invocations(&watch.log_text()).iter().filter(|i| i["eventId"] == event_id).count()
}

fn trigger(port: u16, payload: &Value) -> Value {
    let accepted = http(port, "POST", "/events/orders.created/trigger", Some(payload));
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    accepted.body
}

fn statuses(port: u16, event_id: &str) -> Vec<String> {
    let log = http(port, "GET", &format!("/deliveries/{event_id}"), None);
    assert_eq!(log.status, 200, "{}", log.body);
    log.body.as_array().unwrap().iter().map(|d| d["status"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_trigger_runs_the_subscribed_function_with_the_invocation_payload() {
    // GIVEN the gateway and cargo lambda watch running the example subscriber
    build_binaries();
    let dir = temp_dir("trigger");
    let (port, lambda_port) = (free_port(), free_port());
    let watch = start_lambda_watch(lambda_port, dir.join("watch.log"));
    let _gateway =
        start_gateway(GatewaySettings { port, data_dir: &dir.join("data"), lambda_port, log: dir.join("gateway.log") });
    define_orders_event(port);
    let subscription = subscribe_example(port);

    // WHEN an event is triggered
    let payload = json!({"orderId": "o-1", "total": 42.5});
    let receipt = trigger(port, &payload);
    let event_id = receipt["eventId"].as_str().unwrap().to_owned();

    // THEN the delivery is recorded as invoked (async, the default: Lambda took the event; the
    // gateway did not see the function succeed), after one attempt
    wait_until("the delivery", Duration::from_secs(120), || statuses(port, &event_id) == ["invoked"]);
    let log = http(port, "GET", &format!("/deliveries/{event_id}"), None).body;
    assert_eq!(log[0]["attempts"], 1);
    assert_eq!(log[0]["history"].as_array().map(|h| h.len()), Some(1), "{log}");
    assert_eq!(log[0]["history"][0]["result"], "invoked");

    // AND the function received the invocation payload of the spec
    wait_until("the function's log line", Duration::from_secs(10), || {
        !logged_invocations(&watch.log_text()).is_empty()
    });
    let invocations = logged_invocations(&watch.log_text());
    let got = invocations.iter().find(|i| i["eventId"] == event_id.as_str()).expect("the function logged this trigger");
    assert_eq!(got["event"], "orders.created");
    assert_eq!(got["subscriptionId"], subscription["subscriptionId"]);
    assert_eq!(got["functionId"], "example-subscriber");
    assert_eq!(got["receivedAt"].as_str().map(|s| &s[..19]), receipt["receivedAt"].as_str().map(|s| &s[..19]));
    assert_eq!(got["data"], payload);
    assert_eq!(got["dataType"], "application/json");
    assert_eq!(got["metadata"], json!({"purpose": "e2e"}));

    // AND the event records when it was last triggered
    let event = http(port, "GET", "/events/orders.created", None).body;
    assert!(event["receivedAt"].is_string());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_filter_skips_a_delivery_and_a_sync_success_is_delivered_while_an_async_one_is_invoked() {
    // GIVEN an async subscription to every order, and a sync one to orders over 100 only
    build_binaries();
    let dir = temp_dir("strategy");
    let (port, lambda_port) = (free_port(), free_port());
    let watch = start_lambda_watch(lambda_port, dir.join("watch.log"));
    let _gateway =
        start_gateway(GatewaySettings { port, data_dir: &dir.join("data"), lambda_port, log: dir.join("gateway.log") });
    define_orders_event(port);
    let every = subscribe(port, json!({"functionId": "example-subscriber"}));
    let big = subscribe(
        port,
        json!({
            "functionId": "example-subscriber",
            "filter": {"data": {"total": [{"numeric": [">", 100]}]}},
            "delivery": {"mode": "sync"}
        }),
    );
    assert_eq!(big["filter"], json!({"data": {"total": [{"numeric": [">", 100]}]}}), "{big}");
    assert_eq!(big["delivery"]["mode"], "sync", "{big}");

    // WHEN a small order is triggered
    let small = trigger(port, &json!({"orderId": "o-1", "total": 42.5}));
    let small_id = small["eventId"].as_str().unwrap().to_owned();

    // THEN its receipt lists only the delivery made, to the unfiltered subscription
    assert_eq!(
        small["deliveries"],
        json!([{"subscriptionId": every["subscriptionId"], "functionId": "example-subscriber"}])
    );
    wait_until("the async delivery", Duration::from_secs(120), || statuses(port, &small_id) == ["invoked"]);
    assert_eq!(delivery(port, &small_id, &every)["attempts"], 1);
    wait_until("the function's log line", Duration::from_secs(10), || invocations_of(&watch, &small_id) >= 1);
    assert_eq!(invocations_of(&watch, &small_id), 1, "the filtered-out subscription invoked nothing");

    // WHEN a big order is triggered
    let large = trigger(port, &json!({"orderId": "o-2", "total": 150}));
    let large_id = large["eventId"].as_str().unwrap().to_owned();

    // THEN both subscriptions get it: the sync one is delivered (the gateway saw the function
    // succeed), the async one invoked (Lambda took the event)
    assert_eq!(large["deliveries"].as_array().map(Vec::len), Some(2), "{large}");
    wait_until("both deliveries", Duration::from_secs(120), || {
        let mut now = statuses(port, &large_id);
        now.sort();
        now == ["delivered", "invoked"]
    });
    let (synced, handed) = (delivery(port, &large_id, &big), delivery(port, &large_id, &every));
    assert_eq!((synced["status"].as_str(), synced["policy"]["mode"].as_str()), (Some("delivered"), Some("sync")));
    assert_eq!(attempts_of(&synced), [(0, 1, "succeeded".to_owned())]);
    assert_eq!(handed["status"], "invoked");
    assert_eq!(attempts_of(&handed), [(0, 1, "invoked".to_owned())]);
    wait_until("the function's log lines", Duration::from_secs(10), || invocations_of(&watch, &large_id) >= 2);
    std::fs::remove_dir_all(dir).ok();
}

/// The gateway, cargo lambda watch, `orders.created` and a `sync` subscription allowed 2
/// attempts to the function that always fails; one order triggered, and its delivery failed.
struct FailedDelivery {
    dir: std::path::PathBuf,
    port: u16,
    watch: Process,
    _gateway: Process,
    subscription: Value,
    event_id: String,
}

fn a_failed_sync_delivery(label: &str) -> FailedDelivery {
    build_binaries();
    let dir = temp_dir(label);
    let (port, lambda_port) = (free_port(), free_port());
    let watch = start_lambda_watch(lambda_port, dir.join("watch.log"));
    let gateway =
        start_gateway(GatewaySettings { port, data_dir: &dir.join("data"), lambda_port, log: dir.join("gateway.log") });
    define_orders_event(port);
    let subscription = subscribe(
        port,
        json!({"functionId": "example-failing-subscriber", "delivery": {"mode": "sync", "maxAttempts": 2}}),
    );
    let receipt = trigger(port, &json!({"orderId": "o-9", "total": 9}));
    let event_id = receipt["eventId"].as_str().unwrap().to_owned();
    wait_until("the delivery to fail", Duration::from_secs(120), || statuses(port, &event_id) == ["failed"]);
    FailedDelivery { dir, port, watch, _gateway: gateway, subscription, event_id }
}

#[test]
fn a_sync_delivery_to_a_failing_function_fails_after_its_max_attempts_with_the_functions_error() {
    // GIVEN a sync subscription allowed 2 attempts to the function that always fails
    // WHEN an order is triggered (and its delivery has failed: the gateway allows 1000 attempts)
    let f = a_failed_sync_delivery("sync-fails");

    // THEN it failed after exactly 2 attempts, with the function's own error as the last one
    let failed = delivery(f.port, &f.event_id, &f.subscription);
    assert_eq!(failed["attempts"], 2, "{failed}");
    let last_error = failed["lastError"].as_str().unwrap_or_default();
    assert!(last_error.starts_with("attempt 2 of 2: function 'example-failing-subscriber' failed"), "{last_error}");
    assert!(
        last_error.contains(&format!("AlwaysFails: example-failing-subscriber fails on purpose: {}", f.event_id)),
        "{last_error}"
    );
    // AND both attempts are in its history, each with the error
    assert_eq!(attempts_of(&failed), [(0, 1, "failed".to_owned()), (0, 2, "failed".to_owned())]);
    for attempt in failed["history"].as_array().unwrap() {
        assert!(attempt["error"].as_str().unwrap_or_default().contains("AlwaysFails"), "{attempt}");
        assert!(attempt["startedAt"].is_string() && attempt["durationMs"].is_u64(), "{attempt}");
    }
    // AND the function ran twice, no more
    wait_until("the function's log lines", Duration::from_secs(10), || invocations_of(&f.watch, &f.event_id) >= 2);
    assert_eq!(invocations_of(&f.watch, &f.event_id), 2);
    std::fs::remove_dir_all(&f.dir).ok();
}

#[test]
fn a_redriven_delivery_runs_again_as_a_new_series_with_the_subscription_as_it_is_now() {
    // GIVEN a sync delivery that failed after its 2 attempts
    let f = a_failed_sync_delivery("redrive");
    // AND the subscription since pointed at a function that works (the bug is fixed)
    let sub_path = format!("/subscriptions/{}", f.subscription["subscriptionId"].as_str().unwrap());
    let fixed = json!({"functionId": "example-subscriber", "delivery": {"mode": "sync", "maxAttempts": 2}});
    let replaced = http(f.port, "PUT", &sub_path, Some(&fixed));
    assert_eq!(replaced.status, 200, "{}", replaced.body);

    // WHEN its trigger is redriven
    let redriven = http(f.port, "POST", &format!("/deliveries/{}/redrive", f.event_id), Some(&json!({})));

    // THEN 202 with how many were put back
    assert_eq!(redriven.status, 202, "{}", redriven.body);
    assert_eq!(redriven.body["redriven"], 1, "{}", redriven.body);

    // AND the delivery runs again as generation 1, to the subscription's function as it is now,
    // and is delivered; its history shows both series
    wait_until("the redriven delivery", Duration::from_secs(120), || statuses(f.port, &f.event_id) == ["delivered"]);
    let again = delivery(f.port, &f.event_id, &f.subscription);
    assert_eq!((again["generation"].as_u64(), again["attempts"].as_u64()), (Some(1), Some(1)), "{again}");
    assert_eq!(again["functionId"], "example-subscriber");
    assert!(again["redrivenAt"].is_string(), "{again}");
    assert_eq!(
        attempts_of(&again),
        [(0, 1, "failed".to_owned()), (0, 2, "failed".to_owned()), (1, 1, "succeeded".to_owned())]
    );
    wait_until("the fixed function's log line", Duration::from_secs(10), || invocations_of(&f.watch, &f.event_id) >= 3);

    // AND a delivered delivery is not redriven again
    let twice = http(f.port, "POST", &format!("/deliveries/{}/redrive", f.event_id), Some(&json!({})));
    assert_eq!(twice.status, 202, "{}", twice.body);
    assert_eq!(twice.body["redriven"], 0, "{}", twice.body);
    assert_eq!(statuses(f.port, &f.event_id), ["delivered"]);
    std::fs::remove_dir_all(&f.dir).ok();
}

#[test]
fn a_crash_between_acceptance_and_invocation_loses_no_delivery() {
    // GIVEN a gateway whose Lambda endpoint is down, so deliveries cannot run yet
    build_binaries();
    let dir = temp_dir("restart");
    let data = dir.join("data");
    let (port, lambda_port) = (free_port(), free_port());
    let gateway = start_gateway(GatewaySettings { port, data_dir: &data, lambda_port, log: dir.join("gateway-1.log") });
    define_orders_event(port);
    subscribe_example(port);

    // WHEN three events are accepted and the gateway is killed before any can be delivered
    let ids: Vec<String> = (0..3)
        .map(|i| {
            trigger(port, &json!({"orderId": format!("o-{i}"), "total": i}))["eventId"].as_str().unwrap().to_owned()
        })
        .collect();
    for id in &ids {
        assert_eq!(statuses(port, id), ["pending"]);
    }
    gateway.crash();

    // AND it restarts on the same data, with the function now reachable
    let watch = start_lambda_watch(lambda_port, dir.join("watch.log"));
    let port = free_port();
    let _gateway =
        start_gateway(GatewaySettings { port, data_dir: &data, lambda_port, log: dir.join("gateway-2.log") });

    // THEN every accepted delivery runs, and the function saw each trigger
    for id in &ids {
        wait_until("a delivery after the restart", Duration::from_secs(120), || statuses(port, id) == ["invoked"]);
    }
    wait_until("the function's log lines", Duration::from_secs(10), || {
        logged_invocations(&watch.log_text()).len() >= 3
    });
    let seen: Vec<String> =
        logged_invocations(&watch.log_text()).iter().map(|i| i["eventId"].as_str().unwrap().to_owned()).collect();
    for id in &ids {
        assert!(seen.contains(id), "{id} was not delivered to the function: saw {seen:?}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_crash_during_a_burst_of_concurrent_triggers_loses_no_answered_trigger() {
    // GIVEN a gateway whose Lambda endpoint is down, so nothing is delivered before the crash
    build_binaries();
    let dir = temp_dir("burst");
    let data = dir.join("data");
    let (port, lambda_port) = (free_port(), free_port());
    let gateway = start_gateway(GatewaySettings { port, data_dir: &data, lambda_port, log: dir.join("gateway-1.log") });
    define_orders_event(port);
    subscribe_example(port);

    // WHEN 16 clients trigger as fast as they can (so that acceptances share commits) and the
    // gateway is killed in the middle of the burst
    const CLIENTS: usize = 16;
    const BEFORE_THE_CRASH: usize = 300;
    let answered = std::sync::Mutex::new(Vec::<String>::new());
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let answered = &answered;
            scope.spawn(move || {
                for n in 0.. {
                    let payload = json!({"orderId": format!("o-{client}-{n}"), "total": n});
                    // No answer (refused, or cut off by the crash): the client cannot know, and
                    // the gateway may or may not have it. Every 202 must be kept.
                    let Ok(response) = try_http(port, "POST", "/events/orders.created/trigger", Some(&payload)) else {
                        return;
                    };
                    assert_eq!(response.status, 202, "{}", response.body);
                    answered.lock().unwrap().push(response.body["eventId"].as_str().unwrap().to_owned());
                }
            });
        }
        wait_until("triggers answered before the crash", Duration::from_secs(120), || {
            answered.lock().unwrap().len() >= BEFORE_THE_CRASH
        });
        gateway.crash();
    });
    let answered = answered.into_inner().unwrap();
    assert!(answered.len() >= BEFORE_THE_CRASH);

    // AND it restarts on the same data, with the function now reachable
    let watch = start_lambda_watch(lambda_port, dir.join("watch.log"));
    let port = free_port();
    let _gateway =
        start_gateway(GatewaySettings { port, data_dir: &data, lambda_port, log: dir.join("gateway-2.log") });

    // THEN every answered trigger's delivery ran, and the function saw it
    let mut waiting: Vec<&String> = answered.iter().collect();
    wait_until("every answered trigger's delivery after the restart", Duration::from_secs(300), || {
        waiting.retain(|id| statuses(port, id) != ["invoked"]);
        waiting.is_empty()
    });
    wait_until("the function's log lines", Duration::from_secs(30), || {
        logged_invocations(&watch.log_text()).len() >= answered.len()
    });
    let seen: std::collections::HashSet<String> =
        logged_invocations(&watch.log_text()).iter().map(|i| i["eventId"].as_str().unwrap().to_owned()).collect();
    let missing: Vec<&String> = answered.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered triggers never reached the function: {missing:?}",
        missing.len(),
        answered.len()
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_second_gateway_on_the_same_data_folder_refuses_to_start() {
    // GIVEN a running gateway
    build_binaries();
    let dir = temp_dir("lock");
    let data = dir.join("data");
    let _first = start_gateway(GatewaySettings {
        port: free_port(),
        data_dir: &data,
        lambda_port: free_port(),
        log: dir.join("first.log"),
    });

    // WHEN a second one is started on the same folder
    let second = std::process::Command::new(binary("event-gateway"))
        .env("GATEWAY_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("GATEWAY_DATA_DIR", &data)
        .output()
        .unwrap();

    // THEN it exits with an error that says why, instead of sharing the outbox
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another event-gateway is using"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

// ---- Resource lifecycle events: a person JSON Schema and an Avro address registered, a
// `person.changed` event with `envelope: resource`, as the README's walk-through has them.

const PERSON: &str = "https://example.com/schemas/person/v1.json";
const ADDRESS: &str = "urn:example:address:1";

fn pointers(body: &Value) -> Vec<String> {
    let mut found: Vec<String> = body["violations"]
        .as_array()
        .unwrap_or_else(|| panic!("violations in {body}"))
        .iter()
        .map(|v| v["pointer"].as_str().unwrap().to_owned())
        .collect();
    found.sort();
    found
}

#[test]
fn resource_events_are_validated_against_the_registered_schema_their_envelope_names() {
    // GIVEN the gateway, the example subscriber, a person JSON Schema and an Avro address schema
    build_binaries();
    let dir = temp_dir("resources");
    let (port, lambda_port) = (free_port(), free_port());
    let watch = start_lambda_watch(lambda_port, dir.join("watch.log"));
    let _gateway =
        start_gateway(GatewaySettings { port, data_dir: &dir.join("data"), lambda_port, log: dir.join("gateway.log") });
    let person = json!({
        "name": "person", "format": "json-schema",
        "schema": {"$id": PERSON, "type": "object", "required": ["name"],
                   "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}}
    });
    let registered = http(port, "POST", "/schemas", Some(&person));
    assert_eq!(registered.status, 201, "{}", registered.body);
    assert_eq!((registered.body["uri"].as_str(), registered.body["version"].as_u64()), (Some(PERSON), Some(1)));
    let address = json!({
        "name": "address", "format": "avro", "uri": ADDRESS,
        "schema": {"type": "record", "name": "Address",
                   "fields": [{"name": "street", "type": "string"}, {"name": "zip", "type": "int"}]}
    });
    let registered = http(port, "POST", "/schemas", Some(&address));
    assert_eq!(registered.status, 201, "{}", registered.body);
    // AND person.changed, a resource event, with a subscriber
    let event = json!({"name": "person.changed", "envelope": "resource"});
    let created = http(port, "POST", "/events", Some(&event));
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["envelope"], "resource");
    let sub = http(
        port,
        "POST",
        "/subscriptions",
        Some(&json!({"event": "person.changed", "functionId": "example-subscriber"})),
    );
    assert_eq!(sub.status, 201, "{}", sub.body);
    let trigger = |payload: &Value| http(port, "POST", "/events/person.changed/trigger", Some(payload));

    // WHEN a create with valid content is triggered
    let create = json!({"action": "create", "resource": {"schema": PERSON, "content": {"name": "Ada", "age": 36}}});
    let accepted = trigger(&create);
    // THEN it is accepted, and the subscriber gets the envelope unchanged as data
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let event_id = accepted.body["eventId"].as_str().unwrap().to_owned();
    wait_until("the function's log line", Duration::from_secs(120), || {
        logged_invocations(&watch.log_text()).iter().any(|i| i["eventId"] == event_id.as_str())
    });
    let invocations = logged_invocations(&watch.log_text());
    let got = invocations.iter().find(|i| i["eventId"] == event_id.as_str()).unwrap();
    assert_eq!(got["data"], create);

    // WHEN an update with invalid content is triggered
    let update = json!({"action": "update", "resource": {"schema": PERSON, "content": {"age": -1}}});
    let refused = trigger(&update);
    // THEN 422, every violation listed under /resource/content, and nothing runs
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.body["type"], "/problems/payload-rejected");
    assert_eq!(pointers(&refused.body), ["/resource/content", "/resource/content/age"]);

    // WHEN an Avro address with a string zip is triggered
    let address_update =
        json!({"action": "update", "resource": {"schema": ADDRESS, "content": {"street": "Main St", "zip": "x"}}});
    let refused = trigger(&address_update);
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(pointers(&refused.body), ["/resource/content/zip"]);
    let valid_address =
        json!({"action": "create", "resource": {"schema": ADDRESS, "content": {"street": "Main St", "zip": 12345}}});
    assert_eq!(trigger(&valid_address).status, 202);

    // WHEN a delete carries a ResourceReference
    let delete =
        json!({"action": "delete", "resource": {"schema": PERSON, "content": {"tenantId": 1, "id": 42, "version": 3}}});
    let accepted = trigger(&delete);
    assert_eq!(accepted.status, 202, "{}", accepted.body);

    // WHEN an envelope names a schema the registry does not hold
    let unknown = json!({"action": "create", "resource": {"schema": "https://example.com/schemas/robot.json", "content": {"name": "R2"}}});
    let refused = trigger(&unknown);
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(pointers(&refused.body), ["/resource/schema"]);

    // THEN of all of them, exactly the three accepted triggers were handed to the function
    let log = http(port, "GET", "/events/person.changed/deliveries", None);
    assert_eq!(log.status, 200, "{}", log.body);
    wait_until("every delivery", Duration::from_secs(120), || {
        let log = http(port, "GET", "/events/person.changed/deliveries", None);
        let items = log.body["items"].as_array().cloned().unwrap_or_default();
        items.len() == 3 && items.iter().all(|d| d["status"] == "invoked")
    });
    // AND a schema deleted (nothing refers to it through $ref) no longer validates anything
    assert_eq!(http(port, "DELETE", "/schemas/person", None).status, 204);
    assert_eq!(trigger(&create).status, 422);
    std::fs::remove_dir_all(dir).ok();
}
