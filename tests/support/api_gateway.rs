//! What API Gateway does for the HTTP functions, played by the test: an HTTP API (payload
//! format 2.0) request event handed to a function through the Lambda Invoke API that `cargo
//! lambda watch` serves, and the function's proxy response read back.

use serde_json::{json, Value};

use crate::invoke;

/// What API Gateway answered: the status and the JSON body of the function's proxy response.
pub struct ApiResponse {
    pub status: u64,
    pub body: Value,
}

/// Invokes `function` with `request` (an [`http_api_event`]) and reads its proxy response.
pub fn api(lambda_port: u16, function: &str, request: &Value) -> ApiResponse {
    let invoked = invoke(lambda_port, function, request);
    assert_eq!(invoked.status, 200, "invoking {function} failed: {}", invoked.body);
    let status = invoked.body["statusCode"]
        .as_u64()
        .unwrap_or_else(|| panic!("{function} answered no proxy response: {}", invoked.body));
    let body = match invoked.body["body"].as_str() {
        None | Some("") => Value::Null,
        Some(text) => serde_json::from_str(text).expect("a JSON body"),
    };
    ApiResponse { status, body }
}

/// An API Gateway HTTP API (payload format 2.0) request event, in the shape of `events/`.
pub fn http_api_event(
    method: &str,
    route_key: &str,
    path: &str,
    path_parameters: &[(&str, &str)],
    body: Option<&Value>,
) -> Value {
    let now = chrono::Utc::now();
    let mut headers = json!({
        "accept": "application/json",
        "host": "e2e.execute-api.us-east-1.amazonaws.com",
        "user-agent": "end-to-end",
        "x-forwarded-proto": "https",
    });
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "e2e",
            "domainName": "e2e.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "e2e",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "end-to-end"
            },
            "requestId": format!("e2e-{}", now.timestamp_nanos_opt().unwrap_or_default()),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis()
        },
        "isBase64Encoded": false
    });
    if !path_parameters.is_empty() {
        let parameters: serde_json::Map<String, Value> =
            path_parameters.iter().map(|(name, value)| ((*name).to_owned(), json!(value))).collect();
        event["pathParameters"] = Value::Object(parameters);
    }
    if let Some(body) = body {
        let text = body.to_string();
        headers["content-type"] = json!("application/json");
        headers["content-length"] = json!(text.len().to_string());
        event["body"] = json!(text);
    }
    event["headers"] = headers;
    event
}
