//! The API document against the server: schemathesis, loading `GET /openapi.json`, runs every
//! check it has (the stateful phase included, following the document's links) against the real
//! `event-gateway` binary, started with a bearer token so that every request goes through it.
//!
//! No Lambda is needed: subscriptions may target any function name, and their deliveries fail
//! to invoke (nothing listens on the Lambda port) and end `failed` after two attempts.

use std::process::Command;
use std::time::Instant;

use end_to_end::*;

const TOKEN: &str = "contract-test-token-0123456789abcdef";

/// Per operation and phase: enough for schemathesis to find what the document misstates, few
/// enough that the run takes a minute or two on two cores.
const MAX_EXAMPLES: &str = "100";

#[test]
fn the_openapi_document_agrees_with_the_server_under_every_schemathesis_check() {
    // GIVEN the gateway with a token, whose deliveries can reach no Lambda
    build_binaries();
    let dir = temp_dir("contract");
    let (port, lambda_port) = (free_port(), free_port());
    let gateway = start_gateway_with_env(
        GatewaySettings { port, data_dir: &dir.join("data"), lambda_port, log: dir.join("gateway.log") },
        &[("GATEWAY_API_TOKEN", TOKEN), ("GATEWAY_FUNCTION_ALLOWLIST", "*"), ("GATEWAY_MAX_ATTEMPTS", "2")],
    );
    let bearer = format!("Bearer {TOKEN}");
    // AND the token is really required, so schemathesis's requests all pass the check
    let refused = http(port, "GET", "/openapi.json", None);
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(http(port, "GET", "/health", None).status, 200);

    // WHEN schemathesis runs every check, with a fixed seed so that a run repeats the last
    let started = Instant::now();
    let output = Command::new(schemathesis())
        .arg("--config-file")
        .arg(workspace_root().join("tests/schemathesis.toml"))
        .arg("run")
        .arg(format!("http://127.0.0.1:{port}/openapi.json"))
        .args(["--checks", "all", "--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--header", &format!("Authorization: {bearer}")])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", "20260101", "--workers", "1"])
        .args(["--generation-database", "none", "--request-timeout", "10", "--no-color"])
        // Hypothesis's own health checks on drawing data, not checks of the API: on a busy
        // two-core machine `too_slow` could fail a run that found nothing, and a source's
        // replacement (a recursive pattern beside read-only fields) makes it discard many drafts
        // (`filter_too_much`) before it finds ones to send.
        .args(["--suppress-health-check", "too_slow,filter_too_much"])
        // Its own files (reports, caches) go to the test's folder, not the repository.
        .current_dir(&dir)
        .output()
        .expect("schemathesis runs");
    let took = started.elapsed();
    let report = format!(
        "schemathesis exited with {} after {took:?}\n--- stdout\n{}\n--- stderr\n{}\n--- gateway log (tail)\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        tail(&gateway.log_text(), 40),
    );

    // THEN it found nothing
    assert!(output.status.success(), "{report}");
    // AND its stateful phase really chained operations: an event it defined was subscribed to
    // and triggered, so a trigger has deliveries (the fuzzing phase alone cannot get there)
    let deliveries = all_deliveries(port, &bearer);
    assert!(deliveries > 0, "no trigger with a delivery: the stateful phase did not follow the links\n{report}");
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("schemathesis passed in {took:?}; {deliveries} deliveries were made");
    drop(gateway);
    std::fs::remove_dir_all(dir).ok();
}

/// Deliveries over every event schemathesis left defined.
fn all_deliveries(port: u16, bearer: &str) -> usize {
    let auth = [("Authorization", bearer)];
    let mut count = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page = match &cursor {
            Some(c) => format!("/events?limit=100&cursor={c}"),
            None => "/events?limit=100".to_owned(),
        };
        let events = http_with_headers(port, "GET", &page, &auth, None);
        assert_eq!(events.status, 200, "{}", events.body);
        for event in events.body["items"].as_array().expect("items") {
            let name = event["name"].as_str().expect("a name");
            let log = http_with_headers(port, "GET", &format!("/events/{name}/deliveries?limit=100"), &auth, None);
            assert_eq!(log.status, 200, "{}", log.body);
            count += log.body["items"].as_array().map_or(0, Vec::len);
        }
        match events.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return count,
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
