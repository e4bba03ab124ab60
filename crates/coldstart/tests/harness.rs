//! The harness against real bootstraps: the hello-world baseline built by this crate, and
//! scripts that misbehave on purpose.

use std::path::PathBuf;
use std::time::Duration;

use gateway_coldstart::{run_once, stage_like_lambda, Bootstrap, NetworkUse, RunError, Settings};

fn settings() -> Settings {
    Settings { timeout: Duration::from_secs(20), env: vec![("GATEWAY_TABLE".into(), "t".into())] }
}

fn bootstrap(label: &str, path: PathBuf, event: &str) -> Bootstrap {
    Bootstrap { label: label.into(), path, event: event.as_bytes().to_vec() }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn binaries_are_measured_from_copies_laid_out_as_lambda_unpacks_them() {
    let hello = bootstrap("hello-lambda", env!("CARGO_BIN_EXE_hello-lambda").into(), r#"{"n":1}"#);
    let dir = std::env::temp_dir().join(format!("coldstart-stage-test-{}", std::process::id()));

    let staged = stage_like_lambda(std::slice::from_ref(&hello), &dir).unwrap();

    assert_eq!(staged[0].path, dir.join("0-hello-lambda").join("bootstrap"));
    assert_eq!(std::fs::read(&staged[0].path).unwrap(), std::fs::read(&hello.path).unwrap());
    assert_eq!(staged[0].label, "hello-lambda");
    assert_eq!(run_once(&staged[0], &settings()).unwrap().answer, br#"{"n":1}"#, "the copy runs");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn hello_lambda_answers_its_event_without_touching_the_network() {
    let hello = bootstrap("hello-lambda", env!("CARGO_BIN_EXE_hello-lambda").into(), r#"{"Records":[]}"#);

    let sample = run_once(&hello, &settings()).unwrap();

    assert_eq!(sample.answer, br#"{"Records":[]}"#);
    assert!(sample.init > Duration::ZERO);
    assert!(sample.first_answer > sample.init);
    assert!(sample.peak_rss_kib > 0);
    assert_eq!(sample.network, NetworkUse { endpoint_connections: 0, other_sockets: Some(0) });
}

#[test]
fn connections_made_during_init_are_counted() {
    let script = bootstrap("calls-endpoint", fixture("calls-endpoint-during-init.sh"), "{}");

    let sample = run_once(&script, &settings()).unwrap();

    assert_eq!(sample.answer, b"{}");
    assert_eq!(sample.network, NetworkUse { endpoint_connections: 1, other_sockets: Some(1) });
}

#[test]
fn a_bootstrap_that_exits_during_init_fails_with_its_output() {
    let script = bootstrap("exits", fixture("exits-during-init.sh"), "{}");

    let error = run_once(&script, &settings()).unwrap_err();

    assert!(matches!(error, RunError::Exited { .. }), "{error}");
    let message = error.to_string();
    assert!(message.starts_with("it exited (exit code 1) before asking for its first invocation"));
    assert!(message.ends_with("GATEWAY_TABLE is not set"), "{message}");
}

#[test]
fn the_sample_events_are_what_the_handlers_will_be_given() {
    let read = |name: &str| -> serde_json::Value {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("events").join(name);
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };

    let health = read("http-api-get-health.json");
    let sqs = read("sqs-no-records.json");

    assert_eq!(health["version"], "2.0");
    assert_eq!(health["requestContext"]["http"]["method"], "GET");
    assert_eq!(health["rawPath"], "/health");
    assert_eq!(sqs["Records"], serde_json::json!([]));
}
