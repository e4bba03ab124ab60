//! The local gateway's allowlist as a user meets it: the real `event-gateway` binary, its account
//! from `GATEWAY_ACCOUNT_ID` or from STS (moto_server's, standing in for real credentials).

use std::process::Command;

use end_to_end::moto::Moto;
use end_to_end::*;
use serde_json::json;

/// Starts the gateway (allowlist `example-`, Lambda on an unused port) with `env` on top, and
/// defines `orders.created`; answers its port.
fn gateway(label: &str, env: &[(&str, &str)]) -> (Process, u16) {
    build_binaries();
    let dir = temp_dir(label);
    let port = free_port();
    let settings =
        GatewaySettings { port, data_dir: &dir.join("data"), lambda_port: free_port(), log: dir.join("gateway.log") };
    let process = start_gateway_with_env(settings, env);
    let created = http(port, "POST", "/events", Some(&json!({"name": "orders.created"})));
    assert_eq!(created.status, 201, "{}", created.body);
    (process, port)
}

fn subscribe(port: u16, function: &str) -> Response {
    http(port, "POST", "/subscriptions", Some(&json!({"event": "orders.created", "functionId": function})))
}

#[test]
fn a_function_in_another_account_is_refused_though_its_name_is_allowed() {
    // GIVEN a gateway beside an emulator (no STS to ask) and no GATEWAY_ACCOUNT_ID
    let (gateway, port) = gateway("allow-unknown", &[]);

    // WHEN functions are subscribed by name and by ARN
    // THEN a bare name of the allowlist is allowed; any ARN naming an account is refused with 403,
    // for its account cannot be the gateway's as far as the gateway knows
    assert_eq!(subscribe(port, "example-subscriber").status, 201);
    for function in [
        "arn:aws:lambda:eu-west-1:999999999999:function:example-evil",
        "arn:aws:lambda:us-east-1:123456789012:function:example-subscriber",
        "999999999999:function:example-evil",
    ] {
        let refused = subscribe(port, function);
        assert_eq!(refused.status, 403, "{function}: {}", refused.body);
        assert_eq!(refused.body["type"], "/problems/function-not-allowed");
    }
    // AND forms that Lambda would read as an account or a region where a name seems to be are
    // not functions at all (422), rather than a bare name with a qualifier
    for ambiguous in ["999999999999:example-evil", "us-west-2:example-fn", "function:example-fn"] {
        let refused = subscribe(port, ambiguous);
        assert_eq!(refused.status, 422, "{ambiguous}: {}", refused.body);
    }
    let listed = http(port, "GET", "/subscriptions", None).body;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "nothing refused was subscribed");
    assert!(gateway.log_text().contains("account is unknown"), "{}", gateway.log_text());
}

#[test]
fn with_real_credentials_the_gateway_learns_its_account_from_sts() {
    // GIVEN a gateway whose STS is moto's (which answers for account 123456789012)
    let moto = Moto::start("allow-sts");
    let (gateway, port) = gateway("allow-sts", &[("AWS_ENDPOINT_URL_STS", moto.endpoint.as_str())]);

    // THEN ARNs in its own account and region are allowed, others refused
    assert_eq!(subscribe(port, "arn:aws:lambda:us-east-1:123456789012:function:example-subscriber").status, 201);
    assert_eq!(subscribe(port, "123456789012:function:example-subscriber:live").status, 201);
    for function in [
        "arn:aws:lambda:us-east-1:999999999999:function:example-evil",
        "arn:aws:lambda:eu-west-1:123456789012:function:example-subscriber",
    ] {
        assert_eq!(subscribe(port, function).status, 403, "{function}");
    }
    assert!(gateway.log_text().contains("home region us-east-1, account 123456789012"), "{}", gateway.log_text());
}

#[test]
fn a_named_account_needs_no_sts_and_a_malformed_allowlist_stops_the_gateway() {
    let (_gateway, port) = gateway("allow-named", &[("GATEWAY_ACCOUNT_ID", "210987654321")]);
    assert_eq!(subscribe(port, "arn:aws:lambda:us-east-1:210987654321:function:example-a").status, 201);
    assert_eq!(subscribe(port, "arn:aws:lambda:us-east-1:123456789012:function:example-a").status, 403);

    let refused = Command::new(binary("event-gateway"))
        .env("GATEWAY_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("GATEWAY_DATA_DIR", temp_dir("allow-bad").join("data"))
        .env("GATEWAY_FUNCTION_ALLOWLIST", "example-, arn:aws:lambda:eu-west-1:123:function:x")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("GATEWAY_FUNCTION_ALLOWLIST: 'arn:aws:lambda:eu-west-1:123:function:x'"), "{stderr}");
}
