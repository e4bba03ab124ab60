//! The HTTP API end to end through the router, on the in-memory store.
//!
//! Each test reads as GIVEN (the state built through the API), WHEN (one request), THEN (what
//! the client sees, and what the store holds afterwards when a refusal must change nothing).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use gateway_api::{Gateway, RouteGroup, DEFAULT_MAX_PAYLOAD_BYTES};
use gateway_core::memory::{FixedClock, MemoryStore};
use gateway_core::ports::UlidSource;
use gateway_core::schema::SchemaCache;
use gateway_core::{AccountId, FunctionAllowlist, Home};
use serde_json::{json, Value};
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Status, headers and body of one answer; the body is JSON, `Null` when empty, and a JSON
/// string when it is not JSON (so a test can still say what came back).
type Reply = (StatusCode, HeaderMap, Value);

/// 2025-01-01T00:00:00Z, as seconds after the epoch the fixed clock starts at.
const START: Duration = Duration::from_secs(1_735_689_600);
const START_TEXT: &str = "2025-01-01T00:00:00Z";

const SMALL_LIMIT: usize = 1024;

/// The account the router's gateway runs in (its region is eu-west-1).
const HOME_ACCOUNT: &str = "123456789012";

struct Api {
    router: Router,
    clock: Arc<FixedClock>,
    /// The store behind the router, for what no route does: the delivery worker's claims and
    /// attempts.
    store: Arc<MemoryStore>,
}

impl Api {
    fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_PAYLOAD_BYTES)
    }

    /// The router as the local gateway serves it with `GATEWAY_API_TOKEN` set.
    fn with_token(token: &str) -> Self {
        let api = Self::new();
        let token = gateway_api::auth::ApiToken::new(token).expect("a valid token");
        Self { router: gateway_api::auth::require_token(api.router, token), ..api }
    }

    fn with_limit(max_payload_bytes: usize) -> Self {
        Self::serving(RouteGroup::All, max_payload_bytes)
    }

    /// The router one Lambda handler serves on AWS.
    fn with_group(group: RouteGroup) -> Self {
        Self::serving(group, DEFAULT_MAX_PAYLOAD_BYTES)
    }

    fn serving(group: RouteGroup, max_payload_bytes: usize) -> Self {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(FixedClock::at(Default::default()));
        clock.advance(START);
        let gateway = Gateway {
            events: store.clone(),
            subscriptions: store.clone(),
            sources: store.clone(),
            registry: store.clone(),
            trigger_source: store.clone(),
            acceptor: store.clone(),
            deliveries: store.clone(),
            redrive: store.clone(),
            schemas: SchemaCache::new(),
            clock: clock.clone(),
            ids: Arc::new(UlidSource),
            allowlist: FunctionAllowlist::parse("example-,orders-")
                .unwrap()
                .at_home(Home::new("eu-west-1", Some(AccountId::parse(HOME_ACCOUNT).unwrap()))),
            max_payload_bytes,
        };
        Self { router: gateway_api::router(gateway, group), clock, store }
    }

    async fn send(&self, method: Method, uri: &str, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::from(body.into())).expect("a valid request");
        let response = self.router.clone().oneshot(request).await.expect("the router never fails");
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("a readable body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (parts.status, parts.headers, body)
    }

    async fn get(&self, uri: &str) -> Reply {
        self.send(Method::GET, uri, &[], Vec::new()).await
    }

    async fn delete(&self, uri: &str) -> Reply {
        self.send(Method::DELETE, uri, &[], Vec::new()).await
    }

    async fn post_json(&self, uri: &str, body: &Value) -> Reply {
        self.send(Method::POST, uri, &[("content-type", "application/json")], body.to_string()).await
    }

    async fn put_json(&self, uri: &str, if_match: Option<&str>, body: &Value) -> Reply {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(etag) = if_match {
            headers.push(("if-match", etag));
        }
        self.send(Method::PUT, uri, &headers, body.to_string()).await
    }

    /// GIVEN helper: defines an event and insists it worked.
    async fn define(&self, definition: Value) -> Value {
        let (status, _, body) = self.post_json("/events", &definition).await;
        assert_eq!(status, StatusCode::CREATED, "defining {definition}: {body}");
        body
    }

    /// GIVEN helper: an event with no schema.
    async fn define_named(&self, name: &str) -> Value {
        self.define(json!({ "name": name })).await
    }

    /// GIVEN helper: subscribes a function and returns the subscription id.
    async fn subscribe(&self, event: &str, function: &str) -> String {
        let (status, _, body) =
            self.post_json("/subscriptions", &json!({ "event": event, "functionId": function })).await;
        assert_eq!(status, StatusCode::CREATED, "subscribing {function} to {event}: {body}");
        body["subscriptionId"].as_str().expect("a subscriptionId").to_owned()
    }

    /// GIVEN helper: triggers an event with a JSON payload and returns the receipt.
    async fn trigger(&self, event: &str, payload: &Value) -> Value {
        let (status, _, body) = self.post_json(&format!("/events/{event}/trigger"), payload).await;
        assert_eq!(status, StatusCode::ACCEPTED, "triggering {event}: {body}");
        body
    }

    /// Follows `nextCursor` from the first page to the last, returning every page's items.
    async fn all_pages(&self, first_uri: &str) -> Vec<Vec<Value>> {
        let separator = if first_uri.contains('?') { '&' } else { '?' };
        let mut pages = Vec::new();
        let mut uri = first_uri.to_owned();
        loop {
            let (status, _, body) = self.get(&uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            pages.push(body["items"].as_array().expect("items").clone());
            match body["nextCursor"].as_str() {
                Some(cursor) => uri = format!("{first_uri}{separator}cursor={cursor}"),
                None => {
                    assert!(body["nextCursor"].is_null(), "the last page says so with nextCursor: null: {body}");
                    return pages;
                }
            }
            assert!(pages.len() < 50, "pagination does not end");
        }
    }
}

/// THEN helper: an RFC 9457 problem of this status and type, with the fields every problem has.
#[track_caller]
fn assert_problem(reply: &Reply, status: StatusCode, problem_type: &str) {
    let (got_status, headers, body) = reply;
    assert_eq!(*got_status, status, "status of {body}");
    assert_eq!(
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "content type of {body}"
    );
    assert_eq!(body["type"], json!(format!("/problems/{problem_type}")), "type of {body}");
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "title of {body}");
    assert_eq!(body["status"], json!(status.as_u16()), "status field of {body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "detail of {body}");
}

/// The JSON pointers of a problem's violations, in order.
fn pointers(body: &Value) -> Vec<&str> {
    body["violations"]
        .as_array()
        .map(|vs| vs.iter().map(|v| v["pointer"].as_str().expect("every violation has a pointer")).collect())
        .unwrap_or_default()
}

#[track_caller]
fn etag(headers: &HeaderMap) -> &str {
    headers.get(header::ETAG).and_then(|v| v.to_str().ok()).expect("an ETag")
}

#[track_caller]
fn location(headers: &HeaderMap) -> &str {
    headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).expect("a Location")
}

fn order_schema() -> Value {
    json!({
        "type": "object",
        "required": ["orderId"],
        "properties": {
            "orderId": { "type": "string" },
            "quantity": { "type": "integer", "minimum": 1 },
            "sku": { "type": "string", "pattern": "^SKU-" }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// POST /events
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn define_event_answers_201_with_location_etag_and_the_definition() {
    // GIVEN an empty gateway
    let api = Api::new();

    // WHEN an event is defined
    let reply = api
        .post_json(
            "/events",
            &json!({ "name": "orders.created", "description": "An order was placed", "schema": order_schema(), "metadata": { "team": "shop" } }),
        )
        .await;

    // THEN it is created at version 1, located, and echoed back with server-set fields
    let (status, headers, body) = &reply;
    assert_eq!(*status, StatusCode::CREATED, "{body}");
    assert_eq!(location(headers), "/events/orders.created");
    assert_eq!(etag(headers), "\"1\"");
    assert_eq!(body["name"], "orders.created");
    assert_eq!(body["description"], "An order was placed");
    assert_eq!(body["schema"], order_schema());
    assert_eq!(body["dataType"], "application/json", "dataType defaults to JSON");
    assert_eq!(body["metadata"], json!({ "team": "shop" }));
    assert_eq!(body["version"], 1);
    assert_eq!(body["createdAt"], START_TEXT);
    assert_eq!(body["updatedAt"], START_TEXT);
    assert!(body.get("receivedAt").is_none(), "never triggered yet: {body}");
}

#[tokio::test]
async fn define_event_with_a_taken_name_conflicts_and_keeps_the_first() {
    // GIVEN an event
    let api = Api::new();
    api.define(json!({ "name": "orders.created", "description": "first" })).await;

    // WHEN it is defined again
    let reply = api.post_json("/events", &json!({ "name": "orders.created", "description": "second" })).await;

    // THEN 409, and the first definition stands
    assert_problem(&reply, StatusCode::CONFLICT, "event-exists");
    let (_, headers, body) = api.get("/events/orders.created").await;
    assert_eq!(body["description"], "first");
    assert_eq!(etag(&headers), "\"1\"");
}

#[tokio::test]
async fn define_event_without_a_name_is_unprocessable_at_pointer_name() {
    let api = Api::new();

    // WHEN a definition has no name
    let reply = api.post_json("/events", &json!({ "description": "nameless" })).await;

    // THEN 422 pointing at /name
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&reply.2), ["/name"]);
}

#[tokio::test]
async fn define_event_with_an_invalid_name_is_unprocessable_at_pointer_name() {
    let api = Api::new();

    // WHEN the name breaks the naming rules
    let reply = api.post_json("/events", &json!({ "name": "orders/created" })).await;

    // THEN 422 pointing at /name, saying why
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&reply.2), ["/name"]);
    assert!(reply.2["detail"].as_str().unwrap().contains("not a valid event name"), "{}", reply.2);
    assert_eq!(api.get("/events").await.2["items"], json!([]));
}

#[tokio::test]
async fn define_event_with_a_schema_that_does_not_compile_is_unprocessable_at_pointer_schema() {
    let api = Api::new();

    // WHEN the schema breaks its metaschema
    let reply = api.post_json("/events", &json!({ "name": "orders.created", "schema": { "type": 5 } })).await;

    // THEN 422 pointing at /schema, and nothing is defined
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&reply.2), ["/schema"]);
    assert_problem(&api.get("/events/orders.created").await, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn define_event_with_a_wrongly_typed_field_is_unprocessable_at_its_pointer() {
    let api = Api::new();

    // WHEN metadata is a number rather than an object
    let reply = api.post_json("/events", &json!({ "name": "orders.created", "metadata": 5 })).await;

    // THEN 422 pointing at /metadata
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&reply.2), ["/metadata"]);
}

#[tokio::test]
async fn define_event_with_an_unknown_field_is_unprocessable() {
    let api = Api::new();

    // WHEN the body carries a field the API does not know (a typo of dataType)
    let reply = api.post_json("/events", &json!({ "name": "orders.created", "datatype": "text/csv" })).await;

    // THEN 422 naming the field, and nothing is defined
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&reply.2).len(), 1, "{}", reply.2);
    assert!(reply.2["detail"].as_str().unwrap().contains("datatype"), "{}", reply.2);
    assert_problem(&api.get("/events/orders.created").await, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn a_body_that_is_json_but_not_an_object_is_unprocessable_and_changes_nothing() {
    // GIVEN an event
    let api = Api::new();
    api.define_named("orders.created").await;

    // WHEN bodies that are JSON but not objects are sent (serde would read `[null, null]` as a
    // draft of two absent fields), THEN each is 422 at the whole body
    for body in ["[null, null]", "[\"orders.created\"]", "\"orders.created\"", "5", "null"] {
        for (method, uri) in [(Method::POST, "/events"), (Method::PUT, "/events/orders.created")] {
            let reply = api.send(method.clone(), uri, &[("content-type", "application/json")], body).await;
            assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
            assert_eq!(pointers(&reply.2), [""], "{method} {uri} {body}: {}", reply.2);
        }
    }
    // AND the event was not replaced
    let (_, _, event) = api.get("/events/orders.created").await;
    assert_eq!(event["version"], 1, "no replace went through: {event}");
}

#[tokio::test]
async fn define_event_with_malformed_json_is_a_bad_request() {
    let api = Api::new();

    // WHEN the body is not JSON at all
    let reply = api
        .send(Method::POST, "/events", &[("content-type", "application/json")], r#"{"name": "orders.created""#)
        .await;

    // THEN 400 malformed-body
    assert_problem(&reply, StatusCode::BAD_REQUEST, "malformed-body");
}

#[tokio::test]
async fn define_event_sent_as_text_plain_is_unsupported_media_type() {
    let api = Api::new();

    // WHEN a JSON definition is labelled text/plain
    let reply = api
        .send(
            Method::POST,
            "/events",
            &[("content-type", "text/plain")],
            json!({ "name": "orders.created" }).to_string(),
        )
        .await;

    // THEN 415, and nothing is defined
    assert_problem(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    assert!(reply.2["detail"].as_str().unwrap().contains("text/plain"), "{}", reply.2);
    assert_problem(&api.get("/events/orders.created").await, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn define_event_with_a_body_over_the_limit_is_payload_too_large() {
    // GIVEN a gateway that takes at most 1 KiB per body
    let api = Api::with_limit(SMALL_LIMIT);

    // WHEN a definition is larger than that
    let reply =
        api.post_json("/events", &json!({ "name": "orders.created", "description": "x".repeat(SMALL_LIMIT) })).await;

    // THEN 413 naming the limit
    assert_problem(&reply, StatusCode::PAYLOAD_TOO_LARGE, "body-too-large");
    assert!(reply.2["detail"].as_str().unwrap().contains("1024"), "{}", reply.2);
    assert_problem(&api.get("/events/orders.created").await, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn define_event_with_a_schema_for_a_non_json_data_type_is_unprocessable_at_pointer_schema() {
    let api = Api::new();

    // WHEN a CSV event carries a JSON Schema
    let reply = api
        .post_json("/events", &json!({ "name": "reports.csv", "dataType": "text/csv", "schema": { "type": "object" } }))
        .await;

    // THEN 422 at /schema: a schema only validates JSON
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&reply.2), ["/schema"]);
    assert!(reply.2["detail"].as_str().unwrap().contains("text/csv"), "{}", reply.2);
}

#[tokio::test]
async fn define_event_with_an_invalid_data_type_is_unprocessable_at_pointer_data_type() {
    let api = Api::new();

    // WHEN dataType is not a mime type
    let reply = api.post_json("/events", &json!({ "name": "orders.created", "dataType": "not a mime" })).await;

    // THEN 422 at /dataType
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&reply.2), ["/dataType"]);
}

#[tokio::test]
async fn define_event_lists_every_violation_of_the_definition_at_once() {
    let api = Api::new();

    // WHEN both the description and the schema are wrong
    let reply = api
        .post_json("/events", &json!({ "name": "orders.created", "description": "d".repeat(1025), "schema": [1, 2] }))
        .await;

    // THEN both are reported, each at its pointer
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&reply.2), ["/description", "/schema"]);
    assert_eq!(reply.2["detail"], "2 problems were found; see violations");
}

// ---------------------------------------------------------------------------------------------
// GET /events, GET /events/{name}
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_events_pages_through_every_event_in_name_order() {
    // GIVEN five events, defined out of order
    let api = Api::new();
    for name in ["e", "c", "a", "d", "b"] {
        api.define_named(name).await;
    }

    // WHEN they are listed two at a time
    let pages = api.all_pages("/events?limit=2").await;

    // THEN three pages of 2, 2 and 1, by name, each event once
    let names: Vec<Vec<&str>> = pages.iter().map(|p| p.iter().map(|e| e["name"].as_str().unwrap()).collect()).collect();
    assert_eq!(names, [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
}

#[tokio::test]
async fn list_events_without_a_limit_returns_everything_on_one_page() {
    let api = Api::new();
    for name in ["a", "b", "c"] {
        api.define_named(name).await;
    }

    let (status, _, body) = api.get("/events").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"].as_array().unwrap().len(), 3);
    assert!(body["nextCursor"].is_null(), "{body}");
}

#[tokio::test]
async fn list_events_rejects_a_limit_out_of_range_or_not_a_number() {
    let api = Api::new();
    api.define_named("a").await;

    for uri in ["/events?limit=0", "/events?limit=101", "/events?limit=abc", "/events?limit=-1"] {
        // WHEN the limit is not a number from 1 to 100
        let reply = api.get(uri).await;

        // THEN 400
        assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid-request");
        assert!(reply.2["detail"].as_str().unwrap().contains("limit"), "{uri}: {}", reply.2);
    }
}

#[tokio::test]
async fn list_events_rejects_a_cursor_it_did_not_issue() {
    let api = Api::new();
    api.define_named("a").await;

    for cursor in ["not-a-cursor", "%%%", "eyJ4IjoxfQ"] {
        // WHEN the cursor is garbage, or valid base64 of something else
        let reply = api.get(&format!("/events?limit=1&cursor={cursor}")).await;

        // THEN 400 invalid-cursor
        assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid-cursor");
    }
}

#[tokio::test]
async fn get_event_answers_200_with_its_etag() {
    let api = Api::new();
    api.define(json!({ "name": "orders.created", "schema": order_schema() })).await;

    let (status, headers, body) = api.get("/events/orders.created").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(etag(&headers), "\"1\"");
    assert_eq!(body["name"], "orders.created");
    assert_eq!(body["schema"], order_schema());
    assert_eq!(body["version"], 1);
}

#[tokio::test]
async fn get_unknown_event_is_not_found() {
    let api = Api::new();

    let reply = api.get("/events/orders.created").await;

    assert_problem(&reply, StatusCode::NOT_FOUND, "not-found");
    assert!(reply.2["detail"].as_str().unwrap().contains("orders.created"), "{}", reply.2);
}

#[tokio::test]
async fn get_event_with_an_invalid_name_is_a_bad_request() {
    let api = Api::new();

    for uri in ["/events/-bad", "/events/.hidden", "/events/a%20b"] {
        assert_problem(&api.get(uri).await, StatusCode::BAD_REQUEST, "invalid-request");
    }
}

#[tokio::test]

async fn a_path_segment_that_is_not_utf8_is_a_problem_bad_request() {
    let api = Api::new();

    for uri in ["/events/%FF", "/events/%FF/trigger", "/events/%FF/deliveries", "/subscriptions/%FF", "/deliveries/%FF"]
    {
        let method = if uri.ends_with("/trigger") { Method::POST } else { Method::GET };
        let reply = api.send(method, uri, &[], "{}").await;
        assert_eq!(reply.0, StatusCode::BAD_REQUEST, "{uri}: {}", reply.2);
        assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid-request");
    }
}

// ---------------------------------------------------------------------------------------------
// PUT /events/{name}
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn replace_event_with_a_matching_if_match_makes_version_2() {
    // GIVEN an event at version 1, created at START
    let api = Api::new();
    api.define(json!({ "name": "orders.created", "description": "v1" })).await;
    api.clock.advance(Duration::from_secs(60));

    // WHEN it is replaced with the ETag that was read
    let (status, headers, body) = api
        .put_json("/events/orders.created", Some("\"1\""), &json!({ "description": "v2", "schema": order_schema() }))
        .await;

    // THEN version 2, with the new fields and the original createdAt
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(etag(&headers), "\"2\"");
    assert_eq!(body["version"], 2);
    assert_eq!(body["description"], "v2");
    assert_eq!(body["schema"], order_schema());
    assert_eq!(body["createdAt"], START_TEXT);
    assert_eq!(body["updatedAt"], "2025-01-01T00:01:00Z");
    let (_, headers, stored) = api.get("/events/orders.created").await;
    assert_eq!(etag(&headers), "\"2\"");
    assert_eq!(stored, body);
}

#[tokio::test]
async fn replace_event_accepts_weak_and_wildcard_if_match_and_none_at_all() {
    let api = Api::new();
    api.define_named("orders.created").await;

    for (if_match, version) in [(Some("W/\"1\""), 2), (Some("*"), 3), (None, 4)] {
        let (status, headers, body) = api.put_json("/events/orders.created", if_match, &json!({})).await;
        assert_eq!(status, StatusCode::OK, "{if_match:?}: {body}");
        assert_eq!(etag(&headers), format!("\"{version}\""));
    }
}

#[tokio::test]
async fn replace_event_with_a_stale_if_match_is_precondition_failed_with_current_version() {
    // GIVEN an event already replaced once (version 2)
    let api = Api::new();
    api.define(json!({ "name": "orders.created", "description": "v1" })).await;
    api.put_json("/events/orders.created", Some("\"1\""), &json!({ "description": "v2" })).await;

    // WHEN a client that read version 1 replaces it
    let reply = api.put_json("/events/orders.created", Some("\"1\""), &json!({ "description": "lost update" })).await;

    // THEN 412 says the current version, and version 2 stands
    assert_problem(&reply, StatusCode::PRECONDITION_FAILED, "version-mismatch");
    assert_eq!(reply.2["currentVersion"], 2);
    let (_, headers, body) = api.get("/events/orders.created").await;
    assert_eq!(etag(&headers), "\"2\"");
    assert_eq!(body["description"], "v2");
}

#[tokio::test]
async fn replace_event_with_a_bad_body_is_unprocessable_whatever_the_if_match() {
    // GIVEN an event at version 2
    let api = Api::new();
    api.define(json!({ "name": "orders.created", "description": "v1" })).await;
    api.put_json("/events/orders.created", Some("\"1\""), &json!({ "description": "v2" })).await;

    // WHEN a body that could never be taken comes with a stale If-Match
    let long = "x".repeat(1025);
    let reply = api.put_json("/events/orders.created", Some("\"1\""), &json!({ "description": long })).await;

    // THEN the body is what is wrong (RFC 9110: preconditions are for requests that would succeed)
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(reply.2["violations"][0]["pointer"], "/description");
}

#[tokio::test]
async fn replace_event_with_a_garbage_if_match_is_a_bad_request() {
    let api = Api::new();
    api.define_named("orders.created").await;

    let reply = api.put_json("/events/orders.created", Some("\"abc\""), &json!({ "description": "x" })).await;

    assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid-request");
    assert!(reply.2["detail"].as_str().unwrap().contains("If-Match"), "{}", reply.2);
    assert_eq!(etag(&api.get("/events/orders.created").await.1), "\"1\"");
}

#[tokio::test]
async fn replace_event_with_another_name_in_the_body_is_unprocessable_at_pointer_name() {
    let api = Api::new();
    api.define_named("orders.created").await;

    // WHEN the body tries to rename the event
    let reply = api.put_json("/events/orders.created", Some("\"1\""), &json!({ "name": "orders.renamed" })).await;

    // THEN 422 at /name; neither name changes
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&reply.2), ["/name"]);
    assert_eq!(etag(&api.get("/events/orders.created").await.1), "\"1\"");
    assert_problem(&api.get("/events/orders.renamed").await, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn replace_event_naming_itself_in_the_body_is_fine() {
    let api = Api::new();
    api.define_named("orders.created").await;

    let (status, _, body) = api.put_json("/events/orders.created", None, &json!({ "name": "orders.created" })).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
}

#[tokio::test]
async fn replace_unknown_event_is_not_found() {
    let api = Api::new();

    let reply = api.put_json("/events/orders.created", None, &json!({ "description": "x" })).await;

    assert_problem(&reply, StatusCode::NOT_FOUND, "not-found");
    assert_problem(&api.get("/events/orders.created").await, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn replace_event_with_an_invalid_name_in_the_path_is_a_bad_request() {
    let api = Api::new();

    let reply = api.put_json("/events/-bad", None, &json!({})).await;

    assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid-request");
}

#[tokio::test]
async fn rejected_replace_leaves_the_event_unchanged() {
    // GIVEN an event with a schema and metadata
    let api = Api::new();
    let created = api
        .define(
            json!({ "name": "orders.created", "description": "v1", "schema": order_schema(), "metadata": { "a": 1 } }),
        )
        .await;

    // WHEN replacements are refused: a broken schema (422), a wrong type (422), text/plain (415)
    let broken_schema =
        api.put_json("/events/orders.created", Some("\"1\""), &json!({ "schema": { "type": 5 } })).await;
    let wrong_type = api.put_json("/events/orders.created", Some("\"1\""), &json!({ "metadata": [] })).await;
    let not_json = api
        .send(Method::PUT, "/events/orders.created", &[("content-type", "text/plain"), ("if-match", "\"1\"")], "{}")
        .await;

    // THEN each is refused, and the event is exactly as it was
    assert_problem(&broken_schema, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&broken_schema.2), ["/schema"]);
    assert_problem(&wrong_type, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&wrong_type.2), ["/metadata"]);
    assert_problem(&not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    let (_, headers, now) = api.get("/events/orders.created").await;
    assert_eq!(etag(&headers), "\"1\"");
    assert_eq!(now, created);
}

// ---------------------------------------------------------------------------------------------
// DELETE /events/{name}
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn delete_event_without_subscriptions_answers_204_and_it_is_gone() {
    let api = Api::new();
    api.define_named("orders.created").await;

    let (status, _, body) = api.delete("/events/orders.created").await;

    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null, "204 has no body");
    assert_problem(&api.get("/events/orders.created").await, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn delete_event_with_subscriptions_conflicts_and_keeps_both() {
    // GIVEN an event with a subscription
    let api = Api::new();
    api.define_named("orders.created").await;
    let sub = api.subscribe("orders.created", "orders-mailer").await;

    // WHEN it is deleted without cascade
    let reply = api.delete("/events/orders.created").await;

    // THEN 409 counts the subscriptions, and nothing is deleted
    assert_problem(&reply, StatusCode::CONFLICT, "event-has-subscriptions");
    assert!(reply.2["detail"].as_str().unwrap().contains("1 subscription"), "{}", reply.2);
    assert_eq!(api.get("/events/orders.created").await.0, StatusCode::OK);
    assert_eq!(api.get(&format!("/subscriptions/{sub}")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn delete_event_with_cascade_removes_it_and_its_subscriptions_only() {
    // GIVEN two events, each with subscriptions
    let api = Api::new();
    api.define_named("orders.created").await;
    api.define_named("orders.shipped").await;
    let doomed = [
        api.subscribe("orders.created", "orders-mailer").await,
        api.subscribe("orders.created", "example-audit").await,
    ];
    let kept = api.subscribe("orders.shipped", "orders-mailer").await;

    // WHEN one is deleted with cascade=true
    let (status, _, _) = api.delete("/events/orders.created?cascade=true").await;

    // THEN 204; it and its subscriptions are gone, the other event's subscription is not
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_problem(&api.get("/events/orders.created").await, StatusCode::NOT_FOUND, "not-found");
    for id in doomed {
        assert_problem(&api.get(&format!("/subscriptions/{id}")).await, StatusCode::NOT_FOUND, "not-found");
    }
    assert_eq!(api.get(&format!("/subscriptions/{kept}")).await.0, StatusCode::OK);
    let (_, _, listed) = api.get("/subscriptions").await;
    let ids: Vec<&str> =
        listed["items"].as_array().unwrap().iter().map(|s| s["subscriptionId"].as_str().unwrap()).collect();
    assert_eq!(ids, [kept.as_str()]);
}

#[tokio::test]
async fn delete_event_with_a_cascade_that_is_not_a_boolean_is_a_bad_request() {
    let api = Api::new();
    api.define_named("orders.created").await;
    api.subscribe("orders.created", "orders-mailer").await;

    let reply = api.delete("/events/orders.created?cascade=maybe").await;

    assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid-request");
    assert!(reply.2["detail"].as_str().unwrap().contains("invalid query string"), "{}", reply.2);
    assert_eq!(api.get("/events/orders.created").await.0, StatusCode::OK);
}

#[tokio::test]
async fn delete_unknown_event_is_not_found() {
    let api = Api::new();

    assert_problem(&api.delete("/events/orders.created").await, StatusCode::NOT_FOUND, "not-found");
    assert_problem(&api.delete("/events/-bad").await, StatusCode::BAD_REQUEST, "invalid-request");
}

#[tokio::test]
async fn delete_event_with_a_stale_if_match_is_precondition_failed_and_keeps_it() {
    let api = Api::new();
    api.define_named("orders.created").await;
    api.put_json("/events/orders.created", None, &json!({})).await;

    let reply = api.send(Method::DELETE, "/events/orders.created", &[("if-match", "\"1\"")], Vec::new()).await;

    assert_problem(&reply, StatusCode::PRECONDITION_FAILED, "version-mismatch");
    assert_eq!(reply.2["currentVersion"], 2);
    assert_eq!(api.get("/events/orders.created").await.0, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// /subscriptions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn subscribe_answers_201_with_location_etag_and_the_subscription() {
    let api = Api::new();
    api.define_named("orders.created").await;

    // WHEN a function in the allowlist is subscribed
    let (status, headers, body) = api
        .post_json(
            "/subscriptions",
            &json!({ "event": "orders.created", "functionId": "orders-mailer:live", "metadata": { "to": "ops" } }),
        )
        .await;

    // THEN 201 with a sub_ id, located, at version 1
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["subscriptionId"].as_str().unwrap();
    assert!(id.starts_with("sub_") && id.len() == 30, "{id}");
    assert_eq!(location(&headers), format!("/subscriptions/{id}"));
    assert_eq!(etag(&headers), "\"1\"");
    assert_eq!(body["event"], "orders.created");
    assert_eq!(body["functionId"], "orders-mailer:live");
    assert_eq!(body["metadata"], json!({ "to": "ops" }));
    assert_eq!(body["version"], 1);
    assert_eq!(body["createdAt"], START_TEXT);
}

#[tokio::test]
async fn subscribe_accepts_a_function_arn_whose_name_is_allowed() {
    let api = Api::new();
    api.define_named("orders.created").await;

    let arn = "arn:aws:lambda:eu-west-1:123456789012:function:example-subscriber";
    let (status, _, body) =
        api.post_json("/subscriptions", &json!({ "event": "orders.created", "functionId": arn })).await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn subscribe_to_an_allowed_name_in_another_account_or_region_is_forbidden() {
    let api = Api::new();
    api.define_named("orders.created").await;

    // WHEN the name is allowed but the ARN puts it outside the gateway's own account or region
    for function in [
        "arn:aws:lambda:eu-west-1:999999999999:function:example-evil",
        "arn:aws:lambda:us-east-1:123456789012:function:example-subscriber",
        "999999999999:function:example-evil",
    ] {
        let reply =
            api.post_json("/subscriptions", &json!({ "event": "orders.created", "functionId": function })).await;

        // THEN 403, naming the gateway's home, and nothing is subscribed
        assert_problem(&reply, StatusCode::FORBIDDEN, "function-not-allowed");
        let detail = reply.2["detail"].as_str().unwrap();
        assert!(detail.contains("home region eu-west-1, account 123456789012"), "{function}: {detail}");
    }
    assert_eq!(api.get("/subscriptions").await.2["items"], json!([]));
}

#[tokio::test]
async fn subscribe_to_unknown_event_is_not_found() {
    let api = Api::new();

    let reply =
        api.post_json("/subscriptions", &json!({ "event": "orders.created", "functionId": "orders-mailer" })).await;

    assert_problem(&reply, StatusCode::NOT_FOUND, "not-found");
    assert_eq!(api.get("/subscriptions").await.2["items"], json!([]));
}

#[tokio::test]
async fn subscribe_a_function_outside_the_allowlist_is_forbidden() {
    let api = Api::new();
    api.define_named("orders.created").await;

    // WHEN the function's name matches no allowed prefix, even inside an ARN
    for function in ["admin-drop-tables", "arn:aws:lambda:eu-west-1:123456789012:function:billing-run"] {
        let reply =
            api.post_json("/subscriptions", &json!({ "event": "orders.created", "functionId": function })).await;

        // THEN 403 naming the allowlist, and nothing is subscribed
        assert_problem(&reply, StatusCode::FORBIDDEN, "function-not-allowed");
        assert!(reply.2["detail"].as_str().unwrap().contains("example-*, orders-*"), "{}", reply.2);
    }
    assert_eq!(api.get("/subscriptions").await.2["items"], json!([]));
}

#[tokio::test]
async fn subscribe_with_an_invalid_function_id_is_unprocessable_at_pointer_function_id() {
    let api = Api::new();
    api.define_named("orders.created").await;

    for function in [json!("has space"), json!("http://evil"), json!(""), json!(42)] {
        let reply =
            api.post_json("/subscriptions", &json!({ "event": "orders.created", "functionId": function })).await;

        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
        assert_eq!(pointers(&reply.2), ["/functionId"], "{function}");
    }
}

#[tokio::test]
async fn subscribe_without_a_function_id_is_unprocessable() {
    let api = Api::new();
    api.define_named("orders.created").await;

    let reply = api.post_json("/subscriptions", &json!({ "event": "orders.created" })).await;

    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert!(reply.2["detail"].as_str().unwrap().contains("functionId"), "{}", reply.2);
}

#[tokio::test]
async fn subscribe_without_an_event_is_unprocessable_at_pointer_event() {
    let api = Api::new();

    let reply = api.post_json("/subscriptions", &json!({ "functionId": "orders-mailer" })).await;

    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&reply.2), ["/event"]);
}

#[tokio::test]
async fn subscribe_with_bad_bodies_is_refused_like_every_json_body() {
    let api = Api::new();
    api.define_named("orders.created").await;

    let malformed = api.send(Method::POST, "/subscriptions", &[("content-type", "application/json")], "{").await;
    let not_json = api.send(Method::POST, "/subscriptions", &[("content-type", "text/plain")], "{}").await;
    let unknown_field = api
        .post_json("/subscriptions", &json!({ "event": "orders.created", "functionId": "orders-mailer", "retries": 3 }))
        .await;

    assert_problem(&malformed, StatusCode::BAD_REQUEST, "malformed-body");
    assert_problem(&not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    assert_problem(&unknown_field, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(api.get("/subscriptions").await.2["items"], json!([]));
}

#[tokio::test]
async fn list_subscriptions_of_one_event_pages_through_only_its_subscriptions() {
    // GIVEN five subscriptions to one event and one to another
    let api = Api::new();
    api.define_named("orders.created").await;
    api.define_named("orders.shipped").await;
    let mut mine = Vec::new();
    for n in 0..5 {
        mine.push(api.subscribe("orders.created", &format!("orders-fn{n}")).await);
    }
    api.subscribe("orders.shipped", "orders-other").await;

    // WHEN the first event's subscriptions are listed two at a time
    let pages = api.all_pages("/subscriptions?event=orders.created&limit=2").await;

    // THEN pages of 2, 2 and 1 hold exactly its five, in id order
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let listed: Vec<String> = pages.concat().iter().map(|s| s["subscriptionId"].as_str().unwrap().to_owned()).collect();
    mine.sort();
    assert_eq!(listed, mine);
    assert!(pages.concat().iter().all(|s| s["event"] == "orders.created"));

    // AND without a filter all six are listed
    assert_eq!(api.get("/subscriptions").await.2["items"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn list_subscriptions_rejects_bad_filters_limits_and_cursors() {
    let api = Api::new();
    api.define_named("orders.created").await;
    api.subscribe("orders.created", "orders-mailer").await;

    for (uri, problem_type) in [
        ("/subscriptions?event=-bad", "invalid-request"),
        ("/subscriptions?limit=0", "invalid-request"),
        ("/subscriptions?limit=abc", "invalid-request"),
        ("/subscriptions?cursor=bm9wZQ", "invalid-cursor"),
    ] {
        assert_problem(&api.get(uri).await, StatusCode::BAD_REQUEST, problem_type);
    }
}

#[tokio::test]
async fn list_subscriptions_of_an_event_that_does_not_exist_is_404() {
    let api = Api::new();
    api.define_named("orders.created").await;

    assert_problem(&api.get("/subscriptions?event=orders.shipped").await, StatusCode::NOT_FOUND, "not-found");
    // An event without subscriptions is another matter: it exists.
    assert_eq!(api.get("/subscriptions?event=orders.created").await.2["items"], json!([]));
}

#[tokio::test]
async fn get_subscription_answers_200_with_its_etag() {
    let api = Api::new();
    api.define_named("orders.created").await;
    let id = api.subscribe("orders.created", "orders-mailer").await;

    let (status, headers, body) = api.get(&format!("/subscriptions/{id}")).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(etag(&headers), "\"1\"");
    assert_eq!(body["subscriptionId"], id.as_str());
    assert_eq!(body["functionId"], "orders-mailer");
}

#[tokio::test]
async fn replace_subscription_with_a_matching_if_match_makes_version_2() {
    let api = Api::new();
    api.define_named("orders.created").await;
    let id = api.subscribe("orders.created", "orders-mailer").await;
    api.clock.advance(Duration::from_secs(60));

    // WHEN the function and metadata are replaced, naming the same event
    let (status, headers, body) = api
        .put_json(
            &format!("/subscriptions/{id}"),
            Some("\"1\""),
            &json!({ "event": "orders.created", "functionId": "example-subscriber", "metadata": { "k": "v" } }),
        )
        .await;

    // THEN version 2 with the new function, same id, event and createdAt
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(etag(&headers), "\"2\"");
    assert_eq!(body["version"], 2);
    assert_eq!(body["subscriptionId"], id.as_str());
    assert_eq!(body["event"], "orders.created");
    assert_eq!(body["functionId"], "example-subscriber");
    assert_eq!(body["metadata"], json!({ "k": "v" }));
    assert_eq!(body["createdAt"], START_TEXT);
    assert_eq!(body["updatedAt"], "2025-01-01T00:01:00Z");
    assert_eq!(api.get(&format!("/subscriptions/{id}")).await.2, body);
}

#[tokio::test]
async fn replace_subscription_with_a_stale_if_match_is_precondition_failed() {
    let api = Api::new();
    api.define_named("orders.created").await;
    let id = api.subscribe("orders.created", "orders-mailer").await;
    api.put_json(&format!("/subscriptions/{id}"), None, &json!({ "functionId": "orders-v2" })).await;

    let reply =
        api.put_json(&format!("/subscriptions/{id}"), Some("\"1\""), &json!({ "functionId": "orders-v3" })).await;

    assert_problem(&reply, StatusCode::PRECONDITION_FAILED, "version-mismatch");
    assert_eq!(reply.2["currentVersion"], 2);
    assert_eq!(api.get(&format!("/subscriptions/{id}")).await.2["functionId"], "orders-v2");
}

#[tokio::test]
async fn replace_subscription_with_a_garbage_if_match_is_a_bad_request() {
    let api = Api::new();
    api.define_named("orders.created").await;
    let id = api.subscribe("orders.created", "orders-mailer").await;

    let reply =
        api.put_json(&format!("/subscriptions/{id}"), Some("yesterday"), &json!({ "functionId": "orders-v2" })).await;

    assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid-request");
}

#[tokio::test]
async fn replace_subscription_moving_it_to_another_event_is_unprocessable_and_changes_nothing() {
    // GIVEN a subscription to orders.created, and another event
    let api = Api::new();
    api.define_named("orders.created").await;
    api.define_named("orders.shipped").await;
    let id = api.subscribe("orders.created", "orders-mailer").await;
    let (_, _, before) = api.get(&format!("/subscriptions/{id}")).await;

    // WHEN a replace names the other event
    let reply = api
        .put_json(
            &format!("/subscriptions/{id}"),
            Some("\"1\""),
            &json!({ "event": "orders.shipped", "functionId": "orders-v2" }),
        )
        .await;

    // THEN 422 at /event, and the subscription is unchanged
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&reply.2), ["/event"]);
    let (_, headers, after) = api.get(&format!("/subscriptions/{id}")).await;
    assert_eq!(etag(&headers), "\"1\"");
    assert_eq!(after, before);
}

#[tokio::test]
async fn replace_subscription_with_a_function_outside_the_allowlist_is_forbidden() {
    let api = Api::new();
    api.define_named("orders.created").await;
    let id = api.subscribe("orders.created", "orders-mailer").await;

    let reply = api
        .put_json(&format!("/subscriptions/{id}"), Some("\"1\""), &json!({ "functionId": "admin-drop-tables" }))
        .await;

    assert_problem(&reply, StatusCode::FORBIDDEN, "function-not-allowed");
    assert_eq!(api.get(&format!("/subscriptions/{id}")).await.2["functionId"], "orders-mailer");
}

#[tokio::test]
async fn delete_subscription_answers_204_then_it_is_gone() {
    let api = Api::new();
    api.define_named("orders.created").await;
    let id = api.subscribe("orders.created", "orders-mailer").await;

    let (status, _, body) =
        api.send(Method::DELETE, &format!("/subscriptions/{id}"), &[("if-match", "\"1\"")], Vec::new()).await;

    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);
    assert_problem(&api.get(&format!("/subscriptions/{id}")).await, StatusCode::NOT_FOUND, "not-found");
    assert_problem(&api.delete(&format!("/subscriptions/{id}")).await, StatusCode::NOT_FOUND, "not-found");
    // AND the event can now be deleted without cascade
    assert_eq!(api.delete("/events/orders.created").await.0, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn delete_subscription_with_a_stale_if_match_is_precondition_failed_and_keeps_it() {
    let api = Api::new();
    api.define_named("orders.created").await;
    let id = api.subscribe("orders.created", "orders-mailer").await;

    let reply = api.send(Method::DELETE, &format!("/subscriptions/{id}"), &[("if-match", "\"7\"")], Vec::new()).await;

    assert_problem(&reply, StatusCode::PRECONDITION_FAILED, "version-mismatch");
    assert_eq!(reply.2["currentVersion"], 1);
    assert_eq!(api.get(&format!("/subscriptions/{id}")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn subscription_routes_refuse_an_invalid_id_with_400() {
    let api = Api::new();
    let body = json!({ "functionId": "orders-mailer" });

    // An event id is not a subscription id, nor is a truncated ULID.
    for id in ["nope", "evt_01JDQ3V6J9K2M4N5P6Q7R8S9T0", "sub_01JDQ3V6J9"] {
        let uri = format!("/subscriptions/{id}");
        assert_problem(&api.get(&uri).await, StatusCode::BAD_REQUEST, "invalid-request");
        assert_problem(&api.put_json(&uri, None, &body).await, StatusCode::BAD_REQUEST, "invalid-request");
        assert_problem(&api.delete(&uri).await, StatusCode::BAD_REQUEST, "invalid-request");
    }
}

#[tokio::test]
async fn subscription_routes_answer_404_for_an_unknown_id() {
    let api = Api::new();
    api.define_named("orders.created").await;
    let uri = "/subscriptions/sub_01JDQ3V6J9K2M4N5P6Q7R8S9T0";

    assert_problem(&api.get(uri).await, StatusCode::NOT_FOUND, "not-found");
    assert_problem(
        &api.put_json(uri, None, &json!({ "functionId": "orders-mailer" })).await,
        StatusCode::NOT_FOUND,
        "not-found",
    );
    assert_problem(&api.delete(uri).await, StatusCode::NOT_FOUND, "not-found");
}

// ---------------------------------------------------------------------------------------------
// POST /events/{name}/trigger
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn trigger_answers_202_with_a_receipt_and_the_location_of_its_deliveries() {
    // GIVEN an event with two subscriptions
    let api = Api::new();
    api.define(json!({ "name": "orders.created", "schema": order_schema() })).await;
    let subs = [
        api.subscribe("orders.created", "orders-mailer").await,
        api.subscribe("orders.created", "example-audit").await,
    ];

    // WHEN it is triggered with a valid payload
    let (status, headers, receipt) = api
        .post_json("/events/orders.created/trigger", &json!({ "orderId": "o-1", "quantity": 2, "sku": "SKU-9" }))
        .await;

    // THEN 202 with an evt_ id, the event, when it was received, and one delivery per subscription
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    let event_id = receipt["eventId"].as_str().unwrap();
    assert!(event_id.starts_with("evt_") && event_id.len() == 30, "{event_id}");
    assert_eq!(location(&headers), format!("/deliveries/{event_id}"));
    assert_eq!(receipt["event"], "orders.created");
    assert_eq!(receipt["receivedAt"], START_TEXT);
    let mut delivered: Vec<(String, String)> = receipt["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["subscriptionId"].as_str().unwrap().to_owned(), d["functionId"].as_str().unwrap().to_owned()))
        .collect();
    delivered.sort();
    let mut expected =
        vec![(subs[0].clone(), "orders-mailer".to_owned()), (subs[1].clone(), "example-audit".to_owned())];
    expected.sort();
    assert_eq!(delivered, expected);
}

#[tokio::test]
async fn trigger_without_subscriptions_is_accepted_with_no_deliveries() {
    let api = Api::new();
    api.define_named("orders.created").await;

    let receipt = api.trigger("orders.created", &json!({ "anything": true })).await;

    assert_eq!(receipt["deliveries"], json!([]));
    assert_eq!(api.get(&format!("/deliveries/{}", receipt["eventId"].as_str().unwrap())).await.2, json!([]));
}

#[tokio::test]
async fn trigger_accepts_a_json_content_type_with_parameters_or_none_at_all() {
    let api = Api::new();
    api.define(json!({ "name": "orders.created", "schema": order_schema() })).await;
    let payload = json!({ "orderId": "o-1" }).to_string();

    for headers in [vec![("content-type", "application/json; charset=utf-8")], vec![]] {
        let (status, _, body) =
            api.send(Method::POST, "/events/orders.created/trigger", &headers, payload.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{headers:?}: {body}");
    }
}

#[tokio::test]
async fn trigger_of_unknown_event_is_not_found() {
    let api = Api::new();

    assert_problem(
        &api.post_json("/events/orders.created/trigger", &json!({})).await,
        StatusCode::NOT_FOUND,
        "not-found",
    );
    assert_problem(
        &api.post_json("/events/-bad/trigger", &json!({})).await,
        StatusCode::BAD_REQUEST,
        "invalid-request",
    );
}

#[tokio::test]
async fn trigger_with_invalid_payload_lists_every_violation() {
    // GIVEN an event whose schema requires orderId, a positive quantity and an SKU- sku
    let api = Api::new();
    api.define(json!({ "name": "orders.created", "schema": order_schema() })).await;
    api.subscribe("orders.created", "orders-mailer").await;

    // WHEN a payload breaks all three rules at once
    let reply = api.post_json("/events/orders.created/trigger", &json!({ "quantity": 0, "sku": "nope" })).await;

    // THEN 422 lists each violation with its pointer into the payload
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "payload-rejected");
    let mut found = pointers(&reply.2);
    found.sort();
    assert_eq!(found, ["", "/quantity", "/sku"], "{}", reply.2);
    let messages: Vec<&str> =
        reply.2["violations"].as_array().unwrap().iter().map(|v| v["message"].as_str().unwrap()).collect();
    assert!(messages.iter().all(|m| !m.is_empty()), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("orderId")), "{messages:?}");
    assert!(reply.2["detail"].as_str().unwrap().contains("orders.created"), "{}", reply.2);

    // AND nothing was accepted: no deliveries, no receivedAt
    assert_eq!(api.get("/events/orders.created/deliveries").await.2["items"], json!([]));
    assert!(api.get("/events/orders.created").await.2.get("receivedAt").is_none());
}

#[tokio::test]
async fn trigger_with_malformed_json_is_a_bad_request() {
    let api = Api::new();
    api.define(json!({ "name": "orders.created", "schema": order_schema() })).await;
    api.define_named("orders.unchecked").await;

    for event in ["orders.created", "orders.unchecked"] {
        // WHEN the payload is not JSON, whether or not the event has a schema
        let reply = api
            .send(
                Method::POST,
                &format!("/events/{event}/trigger"),
                &[("content-type", "application/json")],
                "{\"orderId\":",
            )
            .await;

        // THEN 400 malformed-payload
        assert_problem(&reply, StatusCode::BAD_REQUEST, "malformed-payload");
    }
}

#[tokio::test]
async fn trigger_with_a_content_type_other_than_the_data_type_is_unsupported_media_type() {
    let api = Api::new();
    api.define_named("orders.created").await;
    api.define(json!({ "name": "reports.csv", "dataType": "text/csv" })).await;

    // WHEN a JSON event gets text/plain, and a CSV event gets JSON
    let json_as_text =
        api.send(Method::POST, "/events/orders.created/trigger", &[("content-type", "text/plain")], "{}").await;
    let csv_as_json = api.post_json("/events/reports.csv/trigger", &json!({})).await;

    // THEN both are 415, naming what the event takes
    assert_problem(&json_as_text, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    assert!(json_as_text.2["detail"].as_str().unwrap().contains("application/json"), "{}", json_as_text.2);
    assert_problem(&csv_as_json, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    assert!(csv_as_json.2["detail"].as_str().unwrap().contains("text/csv"), "{}", csv_as_json.2);
}

#[tokio::test]
async fn trigger_with_a_payload_over_the_limit_is_payload_too_large() {
    // GIVEN a gateway that takes at most 1 KiB per payload, and an event without a schema
    let api = Api::with_limit(SMALL_LIMIT);
    api.define_named("orders.created").await;
    api.subscribe("orders.created", "orders-mailer").await;

    // WHEN a payload one byte over the limit is sent (and one exactly at it)
    let at_limit = format!("\"{}\"", "x".repeat(SMALL_LIMIT - 2));
    let over_limit = format!("\"{}\"", "x".repeat(SMALL_LIMIT - 1));
    let headers = [("content-type", "application/json")];
    let accepted = api.send(Method::POST, "/events/orders.created/trigger", &headers, at_limit).await;
    let refused = api.send(Method::POST, "/events/orders.created/trigger", &headers, over_limit).await;

    // THEN the one at the limit is accepted, the one over it is 413
    assert_eq!(accepted.0, StatusCode::ACCEPTED, "{}", accepted.2);
    assert_problem(&refused, StatusCode::PAYLOAD_TOO_LARGE, "body-too-large");
    let (_, _, deliveries) = api.get("/events/orders.created/deliveries").await;
    assert_eq!(deliveries["items"].as_array().unwrap().len(), 1, "only the accepted trigger: {deliveries}");
}

#[tokio::test]
async fn trigger_of_a_csv_event_accepts_raw_bytes() {
    // GIVEN an event of dataType text/csv with a subscription
    let api = Api::new();
    api.define(json!({ "name": "reports.csv", "dataType": "text/csv" })).await;
    let sub = api.subscribe("reports.csv", "example-importer").await;

    // WHEN it is triggered with CSV that is not JSON (and with no Content-Type at all)
    let with_type = api
        .send(
            Method::POST,
            "/events/reports.csv/trigger",
            &[("content-type", "text/csv; charset=utf-8")],
            "id,qty\n1,2\n",
        )
        .await;
    let without_type = api.send(Method::POST, "/events/reports.csv/trigger", &[], b"\xff\x00not utf-8".to_vec()).await;

    // THEN both are accepted with a delivery to the subscription
    for (status, _, receipt) in [with_type, without_type] {
        assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
        assert_eq!(receipt["deliveries"], json!([{ "subscriptionId": sub, "functionId": "example-importer" }]));
    }
}

#[tokio::test]
async fn trigger_with_a_repeated_idempotency_key_returns_the_first_receipt_and_no_new_deliveries() {
    // GIVEN an event with one subscription, triggered once with an Idempotency-Key
    let api = Api::new();
    api.define_named("orders.created").await;
    api.subscribe("orders.created", "orders-mailer").await;
    let headers = [("content-type", "application/json"), ("idempotency-key", "order-o-1")];
    let (first_status, _, first) =
        api.send(Method::POST, "/events/orders.created/trigger", &headers, "{\"n\":1}").await;
    assert_eq!(first_status, StatusCode::ACCEPTED, "{first}");

    // WHEN the client retries with the same key, later
    api.clock.advance(Duration::from_secs(5));
    let (status, headers_again, again) =
        api.send(Method::POST, "/events/orders.created/trigger", &headers, "{\"n\":1}").await;

    // THEN the first receipt comes back, and there is still one set of deliveries
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again, first);
    assert_eq!(location(&headers_again), format!("/deliveries/{}", first["eventId"].as_str().unwrap()));
    let (_, _, deliveries) = api.get("/events/orders.created/deliveries").await;
    assert_eq!(deliveries["items"].as_array().unwrap().len(), 1, "{deliveries}");

    // AND another key makes a new trigger
    let other = [("content-type", "application/json"), ("idempotency-key", "order-o-2")];
    let (_, _, third) = api.send(Method::POST, "/events/orders.created/trigger", &other, "{\"n\":1}").await;
    assert_ne!(third["eventId"], first["eventId"]);
    assert_eq!(api.get("/events/orders.created/deliveries").await.2["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn trigger_reusing_an_idempotency_key_with_another_payload_is_refused_and_accepts_nothing() {
    // GIVEN an event triggered once with an Idempotency-Key
    let api = Api::new();
    api.define_named("orders.created").await;
    api.subscribe("orders.created", "orders-mailer").await;
    let headers = [("content-type", "application/json"), ("idempotency-key", "order-o-1")];
    let (_, _, first) = api.send(Method::POST, "/events/orders.created/trigger", &headers, "{\"n\":1}").await;

    // WHEN the same key comes with a different payload
    let reply = api.send(Method::POST, "/events/orders.created/trigger", &headers, "{\"n\":2}").await;

    // THEN it is refused, naming the key, and nothing new is accepted
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused");
    assert!(reply.2["detail"].as_str().unwrap().contains("order-o-1"), "{}", reply.2);
    let (_, _, deliveries) = api.get("/events/orders.created/deliveries").await;
    assert_eq!(deliveries["items"].as_array().unwrap().len(), 1, "{deliveries}");

    // AND the first payload still gets its first receipt
    let (status, _, again) = api.send(Method::POST, "/events/orders.created/trigger", &headers, "{\"n\":1}").await;
    assert_eq!((status, again), (StatusCode::ACCEPTED, first));
}

#[tokio::test]
async fn trigger_with_an_invalid_idempotency_key_is_a_bad_request() {
    let api = Api::new();
    api.define_named("orders.created").await;

    for key in ["has space", &"k".repeat(256)] {
        let headers = [("content-type", "application/json"), ("idempotency-key", key)];
        let reply = api.send(Method::POST, "/events/orders.created/trigger", &headers, "{}").await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid-request");
    }
}

#[tokio::test]
async fn trigger_records_received_at_on_the_event() {
    // GIVEN an event defined at START, triggered a minute later
    let api = Api::new();
    api.define_named("orders.created").await;
    api.clock.advance(Duration::from_secs(60));
    let receipt = api.trigger("orders.created", &json!({})).await;

    // WHEN the event is read
    let (_, headers, event) = api.get("/events/orders.created").await;

    // THEN receivedAt is the trigger's time, and the definition's version and updatedAt did not move
    assert_eq!(receipt["receivedAt"], "2025-01-01T00:01:00Z");
    assert_eq!(event["receivedAt"], receipt["receivedAt"]);
    assert_eq!(event["updatedAt"], START_TEXT);
    assert_eq!(etag(&headers), "\"1\"");

    // AND a later replace keeps it
    let (_, _, replaced) = api.put_json("/events/orders.created", Some("\"1\""), &json!({ "description": "v2" })).await;
    assert_eq!(replaced["receivedAt"], "2025-01-01T00:01:00Z");
}

// ---------------------------------------------------------------------------------------------
// GET /deliveries/{eventId}, GET /events/{name}/deliveries
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn deliveries_of_a_trigger_are_listed_pending() {
    // GIVEN a trigger of an event with two subscriptions, one with metadata
    let api = Api::new();
    api.define_named("orders.created").await;
    let (_, _, with_meta) = api
        .post_json(
            "/subscriptions",
            &json!({ "event": "orders.created", "functionId": "orders-mailer", "metadata": { "to": "ops" } }),
        )
        .await;
    api.subscribe("orders.created", "example-audit").await;
    let receipt = api.trigger("orders.created", &json!({ "orderId": "o-1" })).await;
    let event_id = receipt["eventId"].as_str().unwrap();

    // WHEN its deliveries are read
    let (status, _, deliveries) = api.get(&format!("/deliveries/{event_id}")).await;

    // THEN both are pending, not yet attempted, and carry the subscription's metadata
    assert_eq!(status, StatusCode::OK, "{deliveries}");
    let deliveries = deliveries.as_array().unwrap();
    assert_eq!(deliveries.len(), 2);
    for d in deliveries {
        assert_eq!(d["eventId"], event_id);
        assert_eq!(d["event"], "orders.created");
        assert_eq!(d["status"], "pending");
        assert_eq!(d["attempts"], 0);
        assert_eq!(d["receivedAt"], START_TEXT);
        assert!(d.get("lastError").is_none(), "{d}");
    }
    let mailer = deliveries.iter().find(|d| d["functionId"] == "orders-mailer").expect("the mailer's delivery");
    assert_eq!(mailer["subscriptionId"], with_meta["subscriptionId"]);
    assert_eq!(mailer["metadata"], json!({ "to": "ops" }));
}

#[tokio::test]
async fn deliveries_of_an_unknown_trigger_are_not_found() {
    let api = Api::new();

    let reply = api.get("/deliveries/evt_01JDQ3V6J9K2M4N5P6Q7R8S9T0").await;

    assert_problem(&reply, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn deliveries_of_a_trigger_with_an_invalid_id_is_a_bad_request() {
    let api = Api::new();

    for id in ["nope", "sub_01JDQ3V6J9K2M4N5P6Q7R8S9T0"] {
        assert_problem(&api.get(&format!("/deliveries/{id}")).await, StatusCode::BAD_REQUEST, "invalid-request");
    }
}

#[tokio::test]
async fn deliveries_of_an_event_are_paginated_over_every_trigger() {
    // GIVEN three triggers of an event with two subscriptions (six deliveries), and another event's trigger
    let api = Api::new();
    api.define_named("orders.created").await;
    api.define_named("orders.shipped").await;
    api.subscribe("orders.created", "orders-mailer").await;
    api.subscribe("orders.created", "example-audit").await;
    api.subscribe("orders.shipped", "orders-mailer").await;
    let mut event_ids = Vec::new();
    for n in 0..3 {
        event_ids.push(api.trigger("orders.created", &json!({ "n": n })).await["eventId"].as_str().unwrap().to_owned());
    }
    api.trigger("orders.shipped", &json!({})).await;

    // WHEN they are listed four at a time
    let pages = api.all_pages("/events/orders.created/deliveries?limit=4").await;

    // THEN pages of 4 and 2 hold each of the six once, all of this event, grouped by trigger
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [4, 2]);
    let all = pages.concat();
    let mut keys: Vec<(String, String)> = all
        .iter()
        .map(|d| (d["eventId"].as_str().unwrap().to_owned(), d["subscriptionId"].as_str().unwrap().to_owned()))
        .collect();
    let listed_order: Vec<&str> = all.iter().map(|d| d["eventId"].as_str().unwrap()).collect();
    let mut newest_first = listed_order.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(listed_order, newest_first, "newest trigger (highest id) first");
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 6, "no delivery listed twice: {all:?}");
    assert!(all.iter().all(|d| d["event"] == "orders.created"));
    let mut listed_events: Vec<&str> = listed_order.clone();
    listed_events.dedup();
    event_ids.sort_by(|a, b| b.cmp(a));
    assert_eq!(listed_events, event_ids);
}

#[tokio::test]
async fn deliveries_of_an_unknown_event_are_not_found() {
    let api = Api::new();

    assert_problem(&api.get("/events/orders.created/deliveries").await, StatusCode::NOT_FOUND, "not-found");
    assert_problem(&api.get("/events/-bad/deliveries").await, StatusCode::BAD_REQUEST, "invalid-request");
}

#[tokio::test]
async fn deliveries_of_an_event_reject_bad_limits_and_cursors() {
    let api = Api::new();
    api.define_named("orders.created").await;

    assert_problem(
        &api.get("/events/orders.created/deliveries?limit=0").await,
        StatusCode::BAD_REQUEST,
        "invalid-request",
    );
    assert_problem(
        &api.get("/events/orders.created/deliveries?limit=x").await,
        StatusCode::BAD_REQUEST,
        "invalid-request",
    );
    assert_problem(
        &api.get("/events/orders.created/deliveries?cursor=bm9wZQ").await,
        StatusCode::BAD_REQUEST,
        "invalid-cursor",
    );
}

// ---------------------------------------------------------------------------------------------
// Bearer token (the local gateway with GATEWAY_API_TOKEN)
// ---------------------------------------------------------------------------------------------

const TOKEN: &str = "test-token-0123456789abcdef";

/// THEN helper: a 401 problem carrying the bearer challenge, `error` as RFC 6750 names it.
#[track_caller]
fn assert_unauthorized(reply: &Reply, error: Option<&str>) {
    assert_problem(reply, StatusCode::UNAUTHORIZED, "unauthorized");
    let challenge = reply.1.get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).expect("WWW-Authenticate");
    assert!(challenge.starts_with("Bearer realm=\"event-gateway\""), "{challenge}");
    match error {
        Some(code) => assert!(challenge.contains(&format!("error=\"{code}\"")), "{challenge}"),
        None => assert!(!challenge.contains("error="), "{challenge}"),
    }
    assert!(!reply.2.to_string().contains(TOKEN), "a refusal never echoes the token: {}", reply.2);
}

#[tokio::test]
async fn with_a_token_a_request_without_one_is_401_and_changes_nothing() {
    // GIVEN a gateway with a token
    let api = Api::with_token(TOKEN);

    // WHEN an event is defined without it
    let reply = api.post_json("/events", &json!({ "name": "orders.created" })).await;

    // THEN 401 with the bearer challenge, and nothing was defined
    assert_unauthorized(&reply, None);
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, _) = api.send(Method::GET, "/events/orders.created", &[("authorization", &bearer)], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the refused request defined nothing");
}

#[tokio::test]
async fn with_a_token_a_wrong_one_or_another_scheme_is_401() {
    let api = Api::with_token(TOKEN);

    // A wrong bearer token is `invalid_token`; credentials of another scheme are no token at all.
    for (authorization, error) in [
        (format!("Bearer {TOKEN}x"), Some("invalid_token")),
        ("Bearer test-token".to_owned(), Some("invalid_token")),
        (format!("Basic {TOKEN}"), None),
        (TOKEN.to_owned(), None),
        ("Bearer ".to_owned(), None),
    ] {
        let reply = api.send(Method::GET, "/events", &[("authorization", &authorization)], "").await;
        assert_unauthorized(&reply, error);
    }
}

#[tokio::test]
async fn with_a_token_the_right_one_is_served_in_any_case_of_the_scheme() {
    let api = Api::with_token(TOKEN);

    for scheme in ["Bearer", "bearer", "BEARER"] {
        let authorization = format!("{scheme} {TOKEN}");
        let (status, _, body) = api.send(Method::GET, "/events", &[("authorization", &authorization)], "").await;
        assert_eq!(status, StatusCode::OK, "{scheme}: {body}");
    }
}

#[tokio::test]
async fn with_a_token_health_stays_open() {
    let api = Api::with_token(TOKEN);

    let (status, _, body) = api.get("/health").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "status": "ok" }));
}

#[tokio::test]
async fn with_a_token_unknown_routes_and_the_document_need_it_too() {
    let api = Api::with_token(TOKEN);

    for uri in ["/nope", "/openapi.json", "/health/"] {
        assert_unauthorized(&api.get(uri).await, None);
    }
    assert_unauthorized(&api.send(Method::PATCH, "/events", &[], "").await, None);
}

#[tokio::test]
async fn without_a_token_configured_no_authorization_is_asked_for() {
    let api = Api::new();

    let (status, headers, _) = api.get("/events").await;

    assert_eq!(status, StatusCode::OK);
    assert!(headers.get(header::WWW_AUTHENTICATE).is_none());
}

// ---------------------------------------------------------------------------------------------
// Meta, fallbacks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn openapi_document_is_3_1_and_describes_every_resource() {
    let api = Api::new();

    let (status, headers, doc) = api.get("/openapi.json").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "application/json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
    for path in [
        "/events",
        "/events/{name}",
        "/events/{name}/trigger",
        "/events/{name}/deliveries",
        "/subscriptions",
        "/subscriptions/{id}",
        "/deliveries/{eventId}",
        "/schemas",
        "/schemas/{name}",
        "/schemas/{name}/versions",
        "/schemas/{name}/versions/{version}",
        "/health",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is missing from {}", doc["paths"]);
    }
    assert!(doc["paths"]["/events/{name}/trigger"].get("post").is_some());
    assert!(doc["components"]["schemas"].get("Problem").is_some());
}

#[tokio::test]
async fn openapi_document_declares_the_bearer_token_optional_and_401_and_503_where_they_can_occur() {
    let doc = gateway_api::openapi();

    assert_eq!(doc["components"]["securitySchemes"]["bearerToken"]["scheme"], "bearer");
    assert_eq!(doc["security"], json!([{}, { "bearerToken": [] }]), "optional: {}", doc["security"]);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = &operation["responses"];
            if path == "/health" {
                assert_eq!(operation["security"], json!([]), "/health needs no token");
                assert!(responses.get("401").is_none() && responses.get("503").is_none());
                continue;
            }
            assert!(responses.get("401").is_some(), "{method} {path} lists 401");
            assert_eq!(
                responses.get("503").is_some(),
                path != "/openapi.json",
                "{method} {path}: 503 iff it reads the store"
            );
        }
    }
}

/// Each event body is checked as the document states it, here against the router itself.
#[tokio::test]
async fn documented_event_bodies_are_accepted_and_others_refused() {
    let doc = gateway_api::openapi();
    let schema =
        |name: &str| json!({ "$ref": format!("#/components/schemas/{name}"), "components": doc["components"].clone() });
    let new_event = jsonschema::validator_for(&schema("NewEvent")).expect("NewEvent compiles");
    let bodies = [
        json!({ "name": "a" }),
        json!({ "name": null }),
        json!({}),
        json!({ "name": "a", "schema": { "type": "object" } }),
        json!({ "name": "a", "schema": true }),
        json!({ "name": "a", "schema": 5 }),
        json!({ "name": "a", "schema": { "type": "object" }, "dataType": "text/csv" }),
        json!({ "name": "a", "schema": { "type": "object" }, "dataType": "Application/JSON; charset=utf-8" }),
        json!({ "name": "a", "schema": {}, "dataType": "application/cloudevents+json" }),
        json!({ "name": "a", "schema": null, "dataType": "text/csv" }),
        json!({ "name": "a", "dataType": null, "schema": {} }),
        json!({ "name": "a", "dataType": "not a type" }),
        json!({ "name": "a", "description": "d".repeat(1024) }),
        json!({ "name": "a", "description": "d".repeat(1025) }),
        json!({ "name": "a", "metadata": { "team": "checkout" } }),
        json!({ "name": "a", "metadata": [] }),
        json!({ "name": "a", "extra": 1 }),
        json!({ "name": "a", "envelope": "resource" }),
        json!({ "name": "a", "envelope": "resource", "dataType": "application/cloudevents+json" }),
        json!({ "name": "a", "envelope": "resource", "dataType": "text/csv" }),
        json!({ "name": "a", "envelope": null, "dataType": "text/csv" }),
        json!({ "name": "a", "envelope": "cloudevent" }),
        json!({ "name": "a", "schemaReferences": [] }),
    ];
    for body in bodies {
        let api = Api::new();
        let (status, _, answer) = api.post_json("/events", &body).await;
        assert_eq!(new_event.is_valid(&body), status == StatusCode::CREATED, "{body}: {status} {answer}");
    }
}

/// The router and the document are declared apart (so that serving never builds the document);
/// this keeps them from drifting: every documented operation reaches a handler.
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let api = Api::new();
    let doc = serde_json::to_value(gateway_api::openapi()).unwrap();
    let mut operations = 0;

    for (path, item) in doc["paths"].as_object().unwrap() {
        let uri = path
            .replace("{name}", "orders.created")
            .replace("{id}", "sub_x")
            .replace("{eventId}", "evt_x")
            .replace("{version}", "1");
        assert!(!uri.contains('{'), "a parameter of {path} is not filled in");
        for method in item.as_object().unwrap().keys().filter(|k| *k != "parameters") {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, _, body) = api.send(method.clone(), &uri, &[], Vec::new()).await;
            assert!(
                !matches!(body["type"].as_str(), Some("/problems/no-route" | "/problems/method-not-allowed")),
                "{method} {uri} is documented but not routed: {status} {body}"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 31, "the API has 31 operations");
}

#[tokio::test]
async fn health_answers_200() {
    let api = Api::new();

    let (status, _, body) = api.get("/health").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "status": "ok" }));
}

#[tokio::test]
async fn unknown_route_is_a_problem_404() {
    let api = Api::new();

    for uri in ["/nope", "/events/orders.created/nope", "/deliveries"] {
        let reply = api.get(uri).await;
        assert_problem(&reply, StatusCode::NOT_FOUND, "no-route");
        assert!(reply.2["detail"].as_str().unwrap().contains(uri), "{}", reply.2);
    }
}

#[tokio::test]
async fn wrong_method_is_a_problem_405() {
    let api = Api::new();

    for (method, uri) in [
        (Method::PATCH, "/events"),
        (Method::DELETE, "/events"),
        (Method::POST, "/events/orders.created"),
        (Method::GET, "/events/orders.created/trigger"),
        (Method::PUT, "/health"),
    ] {
        let reply = api.send(method.clone(), uri, &[], Vec::new()).await;
        assert_problem(&reply, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
        assert!(reply.2["detail"].as_str().unwrap().contains(method.as_str()), "{}", reply.2);
    }
}

#[tokio::test]
async fn wrong_method_answer_names_the_allowed_methods() {
    let api = Api::new();

    let (status, headers, _) = api.send(Method::PATCH, "/events", &[], Vec::new()).await;

    // RFC 9110 §15.5.6: a 405 must carry Allow.
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let allow = headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(allow.contains("GET") && allow.contains("POST"), "Allow: {allow:?}");
}

// ---------------------------------------------------------------------------------------------
// Sources and native events in
// ---------------------------------------------------------------------------------------------

fn uploads_source() -> Value {
    json!({
        "name": "uploads",
        "event": "uploads.received",
        "pattern": {"eventSource": ["aws:s3"], "s3": {"bucket": {"name": ["uploads-prod"]}, "object": {"key": [{"prefix": "incoming/"}]}}},
        "description": "New uploads",
        "metadata": {"team": "media"}
    })
}

/// A native S3 notification, as `sam local generate-event s3 put` makes one, for `key`.
fn s3_put(bucket: &str, key: &str, sequencer: &str) -> Value {
    json!({"Records": [{
        "eventVersion": "2.0", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "1970-01-01T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "EXAMPLE"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "EXAMPLE123456789", "x-amz-id-2": "EXAMPLE123"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "testConfigRule",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "EXAMPLE"}, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": {"key": key, "size": 1024, "eTag": "0123456789abcdef0123456789abcdef", "sequencer": sequencer}}
    }]})
}

#[tokio::test]
async fn a_source_is_added_read_listed_replaced_and_deleted_like_any_resource() {
    let api = Api::new();
    api.define_named("uploads.received").await;

    // WHEN a source is added
    let (status, headers, body) = api.post_json("/sources", &uploads_source()).await;

    // THEN 201 with its version and place, and it reads back as written
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!((etag(&headers), location(&headers)), ("\"1\"", "/sources/uploads"));
    assert_eq!(body["pattern"], uploads_source()["pattern"]);
    assert_eq!(api.get("/sources/uploads").await.2, body);
    assert_eq!(api.get("/sources").await.2["items"], json!([body]));

    // AND a replace with the ETag makes version 2; a stale one is 412 and changes nothing
    let mut next = uploads_source();
    next["pattern"] = json!({"eventSource": ["aws:s3"]});
    let (status, headers, replaced) = api.put_json("/sources/uploads", Some("\"1\""), &next).await;
    assert_eq!((status, etag(&headers)), (StatusCode::OK, "\"2\""), "{replaced}");
    let stale = api.put_json("/sources/uploads", Some("\"1\""), &uploads_source()).await;
    assert_problem(&stale, StatusCode::PRECONDITION_FAILED, "version-mismatch");
    assert_eq!(api.get("/sources/uploads").await.2["pattern"], json!({"eventSource": ["aws:s3"]}));

    // AND deleting it leaves a 404
    assert_eq!(api.delete("/sources/uploads").await.0, StatusCode::NO_CONTENT);
    assert_problem(&api.get("/sources/uploads").await, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn a_source_with_a_bad_pattern_lists_every_problem_by_pointer_and_is_not_added() {
    let api = Api::new();
    api.define_named("uploads.received").await;
    let mut source = uploads_source();
    source["pattern"] = json!({"s3": {"bucket": {"name": "uploads-prod"}}, "size": [{"numeric": [">", "ten"]}]});

    let reply = api.post_json("/sources", &source).await;

    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    let found = pointers(&reply.2);
    assert!(
        found.contains(&"/pattern/s3/bucket/name") && found.iter().any(|p| p.starts_with("/pattern/size")),
        "{found:?}"
    );
    assert_eq!(api.get("/sources").await.2["items"], json!([]));
}

#[tokio::test]
async fn a_source_refuses_a_missing_event_a_taken_name_and_a_move() {
    let api = Api::new();
    assert_problem(&api.post_json("/sources", &uploads_source()).await, StatusCode::NOT_FOUND, "not-found");
    api.define_named("uploads.received").await;
    api.define_named("other.event").await;
    assert_eq!(api.post_json("/sources", &uploads_source()).await.0, StatusCode::CREATED);
    assert_problem(&api.post_json("/sources", &uploads_source()).await, StatusCode::CONFLICT, "source-exists");
    let mut moved = uploads_source();
    moved["event"] = json!("other.event");
    let reply = api.put_json("/sources/uploads", None, &moved).await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&reply.2), ["/event"]);
}

#[tokio::test]
async fn an_event_its_sources_trigger_is_deleted_only_with_cascade() {
    let api = Api::new();
    api.define_named("uploads.received").await;
    api.post_json("/sources", &uploads_source()).await;

    assert_problem(&api.delete("/events/uploads.received").await, StatusCode::CONFLICT, "event-has-sources");
    assert_eq!(api.get("/sources/uploads").await.0, StatusCode::OK);
    assert_eq!(api.delete("/events/uploads.received?cascade=true").await.0, StatusCode::NO_CONTENT);
    assert_problem(&api.get("/sources/uploads").await, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn a_native_s3_notification_triggers_the_sources_it_matches_once_however_often_it_comes() {
    // GIVEN an event, a subscriber and a source on a bucket's incoming/ keys
    let api = Api::new();
    api.define_named("uploads.received").await;
    api.subscribe("uploads.received", "example-subscriber").await;
    api.post_json("/sources", &uploads_source()).await;
    let document = s3_put("uploads-prod", "incoming/photo.jpg", "0A1B2C3D4E5F678901");

    // WHEN the document comes, then comes again
    let (status, _, first) = api.post_json("/ingest/aws", &document).await;
    let (_, _, again) = api.post_json("/ingest/aws", &document).await;

    // THEN its record triggered the event once, with the subscriber's delivery
    assert_eq!(status, StatusCode::OK, "{first}");
    let trigger = &first["triggers"][0];
    assert_eq!((trigger["record"].clone(), trigger["source"].clone()), (json!(0), json!("uploads")));
    assert_eq!(trigger["event"], "uploads.received");
    assert_eq!(first["rejected"], json!([]));
    assert_eq!(first["batchItemFailures"], json!([]));
    assert_eq!(again["triggers"][0]["eventId"], trigger["eventId"], "delivered again, it answers its first trigger");
    let log = api.get(&format!("/deliveries/{}", trigger["eventId"].as_str().unwrap())).await.2;
    assert_eq!(log.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_native_record_no_source_matches_is_rejected_with_its_reason() {
    let api = Api::new();
    api.define_named("uploads.received").await;
    api.post_json("/sources", &uploads_source()).await;

    let (status, _, answer) = api.post_json("/ingest/aws", &s3_put("another-bucket", "incoming/x", "01")).await;

    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["triggers"], json!([]));
    assert_eq!(answer["rejected"][0]["record"], 0);
    assert_eq!(answer["rejected"][0]["reason"]["type"], "/problems/no-source-matched");
    assert_eq!(answer["rejected"][0]["reason"]["status"], 422);
}

#[tokio::test]
async fn a_document_of_no_known_shape_is_a_bad_request() {
    let api = Api::new();
    for document in
        [json!({"hello": "world"}), json!({"Records": []}), json!({"Records": [{"eventSource": "aws:ses"}]})]
    {
        let reply = api.post_json("/ingest/aws", &document).await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, "unknown-native-event");
    }
}

// ---------------------------------------------------------------------------------------------
// /schemas: the registry
// ---------------------------------------------------------------------------------------------

const PERSON_V1: &str = "https://example.com/schemas/person/v1.json";
const ADDRESS_V1: &str = "urn:example:address:1";

/// A JSON Schema declaring its own URI.
fn person_v1() -> Value {
    json!({
        "$id": PERSON_V1,
        "type": "object",
        "required": ["name"],
        "properties": { "name": { "type": "string" }, "age": { "type": "integer", "minimum": 0 } }
    })
}

/// An Avro record, registered under a URN (Avro declares none of its own).
fn address_avro() -> Value {
    json!({ "type": "record", "name": "Address",
            "fields": [{ "name": "street", "type": "string" }, { "name": "zip", "type": "int" }] })
}

fn new_person() -> Value {
    json!({ "name": "person", "format": "json-schema", "schema": person_v1(), "description": "Someone" })
}

fn new_address() -> Value {
    json!({ "name": "address", "format": "avro", "schema": address_avro(), "uri": ADDRESS_V1 })
}

/// What every answer about one version holds, whichever route gave it.
const VERSION_FIELDS: [&str; 7] = ["compatibility", "createdAt", "digest", "format", "name", "uri", "version"];

fn keys(body: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = body.as_object().expect("an object").keys().map(String::as_str).collect();
    keys.sort();
    keys
}

impl Api {
    /// GIVEN helper: registers a schema and insists it worked.
    async fn register(&self, body: &Value) -> Value {
        let (status, _, answer) = self.post_json("/schemas", body).await;
        assert_eq!(status, StatusCode::CREATED, "registering {body}: {answer}");
        answer
    }

    /// The names of the schemas the registry holds.
    async fn schema_names(&self) -> Vec<String> {
        let (status, _, body) = self.get("/schemas").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect()
    }

    /// How many deliveries an event's triggers made: what an accepted trigger leaves behind.
    async fn delivery_count(&self, event: &str) -> usize {
        self.all_pages(&format!("/events/{event}/deliveries")).await.concat().len()
    }
}

#[tokio::test]
async fn register_schema_answers_201_with_location_etag_and_version_1_without_its_document() {
    let api = Api::new();

    let (status, headers, body) = api.post_json("/schemas", &new_person()).await;

    // THEN version 1, known by the $id it declares, under the default mode; the document is
    // the client's own and is not sent back
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(location(&headers), "/schemas/person");
    assert_eq!(etag(&headers), "\"1\"");
    assert_eq!(keys(&body), VERSION_FIELDS);
    assert_eq!(
        (&body["name"], &body["version"], &body["uri"], &body["format"], &body["compatibility"], &body["createdAt"]),
        (&json!("person"), &json!(1), &json!(PERSON_V1), &json!("json-schema"), &json!("BACKWARD"), &json!(START_TEXT))
    );
    let digest = body["digest"].as_str().unwrap();
    assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()), "{digest}");
}

#[tokio::test]
async fn register_schema_takes_the_uri_given_else_the_id_else_its_default_and_the_mode_given() {
    let api = Api::new();

    let address = api
        .register(&json!({ "name": "address", "format": "avro", "schema": address_avro(),
                                         "uri": ADDRESS_V1, "compatibility": "FULL" }))
        .await;
    let plain = api.register(&json!({ "name": "plain", "format": "json-schema", "schema": true })).await;

    assert_eq!(
        (&address["uri"], &address["format"], &address["compatibility"]),
        (&json!(ADDRESS_V1), &json!("avro"), &json!("FULL"))
    );
    assert_eq!(plain["uri"], "/schemas/plain/versions/1");
}

#[tokio::test]
async fn register_schema_with_a_taken_name_conflicts_and_keeps_the_first() {
    let api = Api::new();
    api.register(&new_person()).await;

    let mut again = new_person();
    again["schema"] = json!({ "type": "object" });
    again["description"] = json!("Someone else");
    let reply = api.post_json("/schemas", &again).await;

    assert_problem(&reply, StatusCode::CONFLICT, "schema-exists");
    let (_, headers, body) = api.get("/schemas/person").await;
    assert_eq!((body["description"].clone(), etag(&headers)), (json!("Someone"), "\"1\""));
}

#[tokio::test]
async fn a_schema_that_does_not_compile_or_parse_is_unprocessable_with_the_compilers_message() {
    let api = Api::new();

    let json_schema =
        api.post_json("/schemas", &json!({ "name": "broken", "format": "json-schema", "schema": { "type": 5 } })).await;
    let avro =
        api.post_json("/schemas", &json!({ "name": "broken", "format": "avro", "schema": { "type": "recrod" } })).await;
    let not_a_schema =
        api.post_json("/schemas", &json!({ "name": "broken", "format": "json-schema", "schema": 5 })).await;

    for (reply, says) in
        [(&json_schema, "does not compile"), (&avro, "does not parse"), (&not_a_schema, "object or a boolean")]
    {
        assert_problem(reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
        assert_eq!(pointers(&reply.2), ["/schema"], "{}", reply.2);
        assert!(reply.2["detail"].as_str().unwrap().contains(says), "{}", reply.2);
    }
    assert!(api.schema_names().await.is_empty(), "nothing registered");
}

#[tokio::test]
async fn register_schema_with_an_unknown_format_or_mode_is_unprocessable_at_its_pointer() {
    let api = Api::new();

    for (field, value) in
        [("format", json!("protobuf")), ("compatibility", json!("SIDEWAYS")), ("compatibility", json!("backward"))]
    {
        let mut body = new_person();
        body[field] = value;
        let reply = api.post_json("/schemas", &body).await;
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
        assert_eq!(pointers(&reply.2), [format!("/{field}")], "{}", reply.2);
    }
    assert!(api.schema_names().await.is_empty());
}

#[tokio::test]
async fn register_schema_with_a_relative_uri_a_fragment_or_an_id_it_contradicts_is_unprocessable() {
    let api = Api::new();
    let with = |uri: Option<&str>, schema: Value| {
        let mut body = json!({ "name": "other", "format": "json-schema", "schema": schema });
        if let Some(uri) = uri {
            body["uri"] = json!(uri);
        }
        body
    };

    for (body, pointer) in [
        (with(Some("/schemas/person/versions/1"), json!({})), "/uri"),
        (with(Some("person.json"), json!({})), "/uri"),
        (with(Some("urn:example:person#part"), json!({})), "/uri"),
        (with(Some(&format!("urn:{}", "x".repeat(1021))), json!({})), "/uri"),
        (with(None, json!({ "$id": "person.json" })), "/schema/$id"),
        (with(Some("urn:b"), json!({ "$id": "urn:a" })), "/uri"),
    ] {
        let reply = api.post_json("/schemas", &body).await;
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
        assert_eq!(pointers(&reply.2), [pointer], "{body}: {}", reply.2);
    }
    assert!(api.schema_names().await.is_empty());
}

#[tokio::test]
async fn a_uri_names_one_version_across_the_registry() {
    // GIVEN person, known by its $id
    let api = Api::new();
    api.register(&new_person()).await;
    api.register(&json!({ "name": "team", "format": "json-schema", "schema": {} })).await;

    // WHEN another schema, or another version, would take that URI
    let human =
        api.post_json("/schemas", &json!({ "name": "human", "format": "json-schema", "schema": person_v1() })).await;
    let version = api.post_json("/schemas/team/versions", &json!({ "schema": {}, "uri": PERSON_V1 })).await;

    // THEN 409 naming the holder, and neither is written
    for reply in [&human, &version] {
        assert_problem(reply, StatusCode::CONFLICT, "schema-uri-taken");
        assert!(reply.2["detail"].as_str().unwrap().contains("'person'"), "{}", reply.2);
    }
    assert_eq!(api.schema_names().await, ["person", "team"]);
    assert_eq!(api.get("/schemas/team").await.2["latestVersion"], 1);
}

#[tokio::test]
async fn a_dangling_ref_is_unprocessable_on_a_schema_and_on_an_event() {
    let api = Api::new();
    let nobody = "https://example.com/schemas/nobody.json";

    let schema = api
        .post_json(
            "/schemas",
            &json!({ "name": "team", "format": "json-schema",
                                         "schema": { "properties": { "lead": { "$ref": nobody } } } }),
        )
        .await;
    let event = api.post_json("/events", &json!({ "name": "teams.formed", "schema": { "$ref": nobody } })).await;

    for reply in [&schema, &event] {
        assert_problem(reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
        assert_eq!(pointers(&reply.2), ["/schema"], "{}", reply.2);
        assert!(reply.2["detail"].as_str().unwrap().contains(nobody), "{}", reply.2);
    }
    assert!(api.schema_names().await.is_empty());
    assert_problem(&api.get("/events/teams.formed").await, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn a_ref_to_a_registered_uri_resolves_and_the_event_answers_what_it_reaches() {
    // GIVEN person, and team whose lead is a person
    let api = Api::new();
    let person = api.register(&new_person()).await;
    let team = api
        .register(&json!({ "name": "team", "format": "json-schema",
                           "schema": { "type": "object", "properties": { "lead": { "$ref": PERSON_V1 } } } }))
        .await;

    // WHEN an event's schema refers to team by its default URI
    let (status, _, event) = api
        .post_json("/events", &json!({ "name": "teams.formed", "schema": { "$ref": "/schemas/team/versions/1" } }))
        .await;

    // THEN it is defined, with the versions it reaches (read-only: a client cannot send them)
    assert_eq!(status, StatusCode::CREATED, "{event}");
    let mut reached: Vec<Value> = event["schemaReferences"].as_array().unwrap().clone();
    reached.sort_by_key(|r| r["schema"].as_str().unwrap().to_owned());
    assert_eq!(
        reached,
        [
            json!({ "uri": PERSON_V1, "schema": "person", "version": 1, "digest": person["digest"] }),
            json!({ "uri": "/schemas/team/versions/1", "schema": "team", "version": 1, "digest": team["digest"] }),
        ]
    );
    assert_eq!(api.get("/events/teams.formed").await.2, event);
    let sent_back = api.put_json("/events/teams.formed", None, &json!({ "schemaReferences": [] })).await;
    assert_problem(&sent_back, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    // AND a trigger is validated through the reference
    let refused = api.post_json("/events/teams.formed/trigger", &json!({ "lead": { "age": 3 } })).await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, "payload-rejected");
    api.trigger("teams.formed", &json!({ "lead": { "name": "Ada" } })).await;
}

#[tokio::test]
async fn add_version_answers_201_with_its_location_in_the_same_shape_as_version_1() {
    let api = Api::new();
    let first = api.register(&new_person()).await;

    // WHEN a backward-compatible version comes (any age now, not only from 0)
    let mut v2 = person_v1();
    v2["$id"] = json!("https://example.com/schemas/person/v2.json");
    v2["properties"]["age"] = json!({ "type": "integer" });
    let (status, headers, body) = api.post_json("/schemas/person/versions", &json!({ "schema": v2 })).await;

    // THEN version 2, located, answered as version 1 was
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(location(&headers), "/schemas/person/versions/2");
    assert_eq!(keys(&body), keys(&first));
    assert_eq!((&body["version"], &body["uri"]), (&json!(2), &json!("https://example.com/schemas/person/v2.json")));
    // AND the schema moved on: a new revision, two versions
    let (_, headers, schema) = api.get("/schemas/person").await;
    assert_eq!((etag(&headers), &schema["latestVersion"]), ("\"2\"", &json!(2)));
    // AND a version without a URI or $id of its own gets its default
    let (_, _, third) = api.post_json("/schemas/person/versions", &json!({ "schema": { "type": "object" } })).await;
    assert_eq!(third["uri"], "/schemas/person/versions/3", "{third}");
}

#[tokio::test]
async fn add_incompatible_version_conflicts_listing_every_incompatibility_and_writes_nothing() {
    // GIVEN person under BACKWARD
    let api = Api::new();
    api.register(&new_person()).await;

    // WHEN a version would refuse what version 1 takes: a new required field, another age type
    let breaking = json!({ "type": "object", "required": ["name", "email"],
        "properties": { "name": { "type": "string" }, "age": { "type": "string" }, "email": { "type": "string" } } });
    let reply = api.post_json("/schemas/person/versions", &json!({ "schema": breaking })).await;

    // THEN 409, each incompatibility with its pointer into the new document and its reason
    assert_problem(&reply, StatusCode::CONFLICT, "schema-incompatible");
    let found = reply.2["incompatibilities"].as_array().expect("incompatibilities").clone();
    assert!(found.len() >= 2, "{found:?}");
    for incompatibility in &found {
        assert!(incompatibility["pointer"].is_string(), "{incompatibility}");
        assert!(incompatibility["reason"].as_str().is_some_and(|r| !r.is_empty()), "{incompatibility}");
    }
    let located: Vec<&str> = found.iter().map(|i| i["pointer"].as_str().unwrap()).collect();
    assert!(located.iter().any(|p| p.starts_with("/properties/age")), "{located:?}");
    assert!(located.iter().any(|p| p.starts_with("/required")), "{located:?}");
    assert!(reply.2["detail"].as_str().unwrap().contains("BACKWARD"), "{}", reply.2);
    // AND nothing was written
    let (_, headers, schema) = api.get("/schemas/person").await;
    assert_eq!((etag(&headers), &schema["latestVersion"]), ("\"1\"", &json!(1)));
    assert_problem(&api.get("/schemas/person/versions/2").await, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn add_version_refuses_bad_bodies_an_unknown_schema_and_a_bad_name() {
    let api = Api::new();
    api.register(&new_person()).await;

    let unknown = api.post_json("/schemas/nobody/versions", &json!({ "schema": {} })).await;
    let bad_name = api.post_json("/schemas/-person/versions", &json!({ "schema": {} })).await;
    let no_schema = api.post_json("/schemas/person/versions", &json!({ "uri": "urn:x" })).await;
    let extra = api.post_json("/schemas/person/versions", &json!({ "schema": {}, "format": "avro" })).await;
    let relative = api.post_json("/schemas/person/versions", &json!({ "schema": {}, "uri": "v2.json" })).await;
    let malformed =
        api.send(Method::POST, "/schemas/person/versions", &[("content-type", "application/json")], "{").await;

    assert_problem(&unknown, StatusCode::NOT_FOUND, "not-found");
    assert_problem(&bad_name, StatusCode::BAD_REQUEST, "invalid-request");
    for reply in [&no_schema, &extra, &relative] {
        assert_problem(reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    }
    assert_eq!(pointers(&relative.2), ["/uri"]);
    assert_problem(&malformed, StatusCode::BAD_REQUEST, "malformed-body");
    assert_eq!(api.get("/schemas/person").await.2["latestVersion"], 1);
}

#[tokio::test]
async fn get_schema_answers_it_with_every_version_and_its_revision_as_etag() {
    let api = Api::new();
    let first = api.register(&new_person()).await;
    api.clock.advance(Duration::from_secs(60));
    let (_, _, second) = api.post_json("/schemas/person/versions", &json!({ "schema": { "type": "object" } })).await;

    let (status, headers, body) = api.get("/schemas/person").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(etag(&headers), "\"2\"");
    assert_eq!(body["revision"], 2);
    assert_eq!(
        (&body["name"], &body["format"], &body["compatibility"]),
        (&json!("person"), &json!("json-schema"), &json!("BACKWARD"))
    );
    assert_eq!((&body["description"], &body["latestVersion"]), (&json!("Someone"), &json!(2)));
    assert_eq!((&body["createdAt"], &body["updatedAt"]), (&json!(START_TEXT), &json!("2025-01-01T00:01:00Z")));
    let summary = |v: &Value| json!({ "version": v["version"], "uri": v["uri"], "digest": v["digest"], "createdAt": v["createdAt"] });
    assert_eq!(body["versions"], json!([summary(&first), summary(&second)]), "oldest first");
}

#[tokio::test]
async fn get_schema_version_answers_it_with_its_document() {
    let api = Api::new();
    let registered = api.register(&new_person()).await;

    let (status, headers, body) = api.get("/schemas/person/versions/1").await;

    // THEN what registering answered, with the document as registered and what it references
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "application/json");
    let mut with_document = registered.clone();
    with_document["schema"] = person_v1();
    with_document["references"] = json!([]);
    assert_eq!(body, with_document);
    // AND an Avro version too
    api.register(&new_address()).await;
    assert_eq!(api.get("/schemas/address/versions/1").await.2["schema"], address_avro());
}

#[tokio::test]
async fn an_unknown_schema_or_version_is_not_found_and_says_which() {
    let api = Api::new();
    api.register(&new_person()).await;

    let no_version = api.get("/schemas/person/versions/2").await;
    let no_schema = api.get("/schemas/nobody/versions/1").await;
    let largest = api.get("/schemas/person/versions/4294967295").await;

    assert_problem(&no_version, StatusCode::NOT_FOUND, "not-found");
    assert!(
        no_version.2["detail"].as_str().unwrap().contains("schema version 'person/versions/2'"),
        "{}",
        no_version.2
    );
    assert_problem(&no_schema, StatusCode::NOT_FOUND, "not-found");
    assert!(no_schema.2["detail"].as_str().unwrap().contains("schema 'nobody'"), "{}", no_schema.2);
    assert_problem(&largest, StatusCode::NOT_FOUND, "not-found");
    assert_problem(&api.get("/schemas/nobody").await, StatusCode::NOT_FOUND, "not-found");
    assert_problem(&api.put_json("/schemas/nobody", None, &json!({})).await, StatusCode::NOT_FOUND, "not-found");
    assert_problem(&api.delete("/schemas/nobody").await, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn a_bad_version_number_is_a_bad_request() {
    let api = Api::new();
    api.register(&new_person()).await;

    for number in ["0", "01", "-1", "+1", "1.0", "x", "4294967296", "99999999999999999999", "%20"] {
        let reply = api.get(&format!("/schemas/person/versions/{number}")).await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid-request");
    }
}

#[tokio::test]
async fn schema_routes_refuse_an_invalid_name_with_400() {
    let api = Api::new();

    for (method, uri) in [
        (Method::GET, "/schemas/-person"),
        (Method::PUT, "/schemas/-person"),
        (Method::DELETE, "/schemas/per%20son"),
        (Method::GET, "/schemas/-person/versions/1"),
        (Method::POST, "/schemas/-person/versions"),
        (Method::GET, "/schemas/%FF"),
    ] {
        let reply = api.send(method.clone(), uri, &[("content-type", "application/json")], "{}").await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid-request");
    }
}

#[tokio::test]
async fn change_schema_with_a_matching_if_match_makes_a_new_revision_and_the_mode_governs_what_follows() {
    let api = Api::new();
    api.register(&new_person()).await;
    let breaking = json!({ "schema": { "type": "object", "required": ["email"] } });
    assert_problem(
        &api.post_json("/schemas/person/versions", &breaking).await,
        StatusCode::CONFLICT,
        "schema-incompatible",
    );

    // WHEN the mode becomes NONE, with the ETag read
    let (status, headers, body) = api
        .put_json("/schemas/person", Some("\"1\""), &json!({ "compatibility": "NONE", "description": "Anyone" }))
        .await;

    // THEN revision 2, the schema as listed
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(etag(&headers), "\"2\"");
    assert_eq!(
        (&body["compatibility"], &body["description"], &body["revision"]),
        (&json!("NONE"), &json!("Anyone"), &json!(2))
    );
    assert_eq!(body["latestVersion"], 1, "versions stay");
    assert!(body.get("versions").is_none(), "{body}");
    // AND the version it refused is taken now
    assert_eq!(api.post_json("/schemas/person/versions", &breaking).await.0, StatusCode::CREATED);
    // AND a change without a mode goes back to BACKWARD, without a description to none
    let (_, _, reset) = api.put_json("/schemas/person", None, &json!({})).await;
    assert_eq!(reset["compatibility"], "BACKWARD");
    assert!(reset.get("description").is_none(), "{reset}");
}

#[tokio::test]
async fn change_schema_with_a_stale_or_garbage_if_match_or_a_bad_body_changes_nothing() {
    let api = Api::new();
    api.register(&new_person()).await;
    api.put_json("/schemas/person", Some("\"1\""), &json!({ "compatibility": "FULL" })).await;

    let stale = api.put_json("/schemas/person", Some("\"1\""), &json!({ "compatibility": "NONE" })).await;
    let garbage = api.put_json("/schemas/person", Some("one"), &json!({ "compatibility": "NONE" })).await;
    let unknown_mode = api.put_json("/schemas/person", None, &json!({ "compatibility": "LOOSE" })).await;
    let long = api.put_json("/schemas/person", None, &json!({ "description": "d".repeat(1025) })).await;
    let versions = api.put_json("/schemas/person", None, &json!({ "format": "avro" })).await;

    assert_problem(&stale, StatusCode::PRECONDITION_FAILED, "version-mismatch");
    assert_eq!(stale.2["currentVersion"], 2);
    assert_problem(&garbage, StatusCode::BAD_REQUEST, "invalid-request");
    assert_problem(&unknown_mode, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&unknown_mode.2), ["/compatibility"]);
    assert_problem(&long, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&long.2), ["/description"]);
    assert_problem(&versions, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    let (_, headers, schema) = api.get("/schemas/person").await;
    assert_eq!(
        (etag(&headers), &schema["compatibility"], &schema["format"]),
        ("\"2\"", &json!("FULL"), &json!("json-schema"))
    );
}

#[tokio::test]
async fn delete_schema_answers_204_and_frees_its_name_and_uris() {
    let api = Api::new();
    api.register(&new_person()).await;

    let stale = api.send(Method::DELETE, "/schemas/person", &[("if-match", "\"7\"")], Vec::new()).await;
    assert_problem(&stale, StatusCode::PRECONDITION_FAILED, "version-mismatch");
    assert_eq!(api.get("/schemas/person").await.0, StatusCode::OK, "a stale If-Match deletes nothing");

    let (status, _, body) = api.send(Method::DELETE, "/schemas/person", &[("if-match", "\"1\"")], Vec::new()).await;

    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_problem(&api.get("/schemas/person").await, StatusCode::NOT_FOUND, "not-found");
    assert_problem(&api.get("/schemas/person/versions/1").await, StatusCode::NOT_FOUND, "not-found");
    // AND its $id can name a version of another schema now
    api.register(&json!({ "name": "human", "format": "json-schema", "schema": person_v1() })).await;
}

#[tokio::test]
async fn delete_referenced_schema_conflicts_naming_every_referrer_and_keeps_it() {
    // GIVEN person, referred to by a schema and by an event
    let api = Api::new();
    api.register(&new_person()).await;
    api.register(&json!({ "name": "team", "format": "json-schema",
                          "schema": { "properties": { "lead": { "$ref": PERSON_V1 } } } }))
        .await;
    api.define(json!({ "name": "people.met", "schema": { "$ref": PERSON_V1 } })).await;

    // WHEN it is deleted
    let reply = api.delete("/schemas/person").await;

    // THEN 409 naming both, and it stays
    assert_problem(&reply, StatusCode::CONFLICT, "schema-referenced");
    assert_eq!(
        reply.2["referrers"],
        json!([{ "kind": "event", "name": "people.met" }, { "kind": "schema", "name": "team" }])
    );
    let detail = reply.2["detail"].as_str().unwrap();
    assert!(detail.contains("event 'people.met'") && detail.contains("schema 'team'"), "{detail}");
    assert_eq!(api.get("/schemas/person/versions/1").await.0, StatusCode::OK);
    // AND once nothing refers to it, it goes
    assert_eq!(api.delete("/events/people.met").await.0, StatusCode::NO_CONTENT);
    assert_eq!(api.delete("/schemas/team").await.0, StatusCode::NO_CONTENT);
    assert_eq!(api.delete("/schemas/person").await.0, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn list_schemas_pages_through_every_schema_in_name_order() {
    let api = Api::new();
    for name in ["e", "c", "a", "d", "b"] {
        api.register(&json!({ "name": name, "format": "json-schema", "schema": {} })).await;
    }

    let pages = api.all_pages("/schemas?limit=2").await;

    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let names: Vec<&str> = pages.iter().flatten().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    let first = &pages[0][0];
    assert_eq!(
        (&first["latestVersion"], &first["revision"], &first["format"]),
        (&json!(1), &json!(1), &json!("json-schema"))
    );
    assert!(first.get("versions").is_none(), "a list names schemas, not their versions: {first}");
    assert_problem(&api.get("/schemas?limit=0").await, StatusCode::BAD_REQUEST, "invalid-request");
    assert_problem(&api.get("/schemas?limit=x").await, StatusCode::BAD_REQUEST, "invalid-request");
    assert_problem(&api.get("/schemas?cursor=bm9wZQ").await, StatusCode::BAD_REQUEST, "invalid-cursor");
}

#[tokio::test]
async fn schema_bodies_are_refused_like_every_json_body() {
    let api = Api::new();

    let malformed = api.send(Method::POST, "/schemas", &[("content-type", "application/json")], "{\"name\":").await;
    let text = api.send(Method::POST, "/schemas", &[("content-type", "text/plain")], new_person().to_string()).await;
    let array = api.post_json("/schemas", &json!([new_person()])).await;
    let unknown = api
        .post_json("/schemas", &json!({ "name": "person", "format": "json-schema", "schema": {}, "versions": [] }))
        .await;
    let too_large = Api::with_limit(SMALL_LIMIT)
        .post_json(
            "/schemas",
            &json!({ "name": "big", "format": "json-schema", "schema": { "description": "d".repeat(SMALL_LIMIT) } }),
        )
        .await;

    assert_problem(&malformed, StatusCode::BAD_REQUEST, "malformed-body");
    assert_problem(&text, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    assert_problem(&array, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_problem(&unknown, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_problem(&too_large, StatusCode::PAYLOAD_TOO_LARGE, "body-too-large");
    assert!(api.schema_names().await.is_empty());
}

#[tokio::test]
async fn a_schema_document_over_the_size_limit_is_unprocessable_at_pointer_schema() {
    let api = Api::new();
    let big = json!({ "description": "d".repeat(gateway_core::schemas::MAX_SCHEMA_BYTES) });

    let reply = api.post_json("/schemas", &json!({ "name": "big", "format": "json-schema", "schema": big })).await;

    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(pointers(&reply.2), ["/schema"]);
    assert!(api.schema_names().await.is_empty());
}

#[tokio::test]
async fn on_aws_the_events_function_serves_the_registry() {
    let events = Api::with_group(RouteGroup::Events);
    let triggers = Api::with_group(RouteGroup::Triggers);

    assert_eq!(events.post_json("/schemas", &new_person()).await.0, StatusCode::CREATED);
    assert_eq!(events.get("/schemas/person/versions/1").await.0, StatusCode::OK);
    assert_problem(&triggers.get("/schemas").await, StatusCode::NOT_FOUND, "no-route");
}

// ---------------------------------------------------------------------------------------------
// Resource lifecycle events
// ---------------------------------------------------------------------------------------------

/// GIVEN helper: person (JSON Schema) and address (Avro) registered, and `person.changed` a
/// resource event whose own schema admits only those two, with one subscriber.
async fn resource_events() -> Api {
    let api = Api::new();
    api.register(&new_person()).await;
    api.register(&new_address()).await;
    api.define(json!({
        "name": "person.changed",
        "envelope": "resource",
        "schema": { "properties": { "resource": { "properties": { "schema": { "enum": [PERSON_V1, ADDRESS_V1] } } } } }
    }))
    .await;
    api.subscribe("person.changed", "example-subscriber").await;
    api
}

fn resource(action: &str, schema: &str, content: Value) -> Value {
    json!({ "action": action, "resource": { "schema": schema, "content": content } })
}

#[tokio::test]
async fn define_event_with_a_resource_envelope_answers_it_and_a_replace_can_drop_it() {
    let api = Api::new();

    let (status, _, body) =
        api.post_json("/events", &json!({ "name": "person.changed", "envelope": "resource" })).await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["envelope"], "resource");
    assert_eq!(api.get("/events/person.changed").await.2["envelope"], "resource");
    let (_, _, replaced) = api.put_json("/events/person.changed", Some("\"1\""), &json!({})).await;
    assert!(replaced.get("envelope").is_none(), "{replaced}");
}

#[tokio::test]
async fn define_event_with_an_unknown_envelope_or_one_for_a_non_json_data_type_is_unprocessable() {
    let api = Api::new();

    let unknown = api.post_json("/events", &json!({ "name": "person.changed", "envelope": "cloudevent" })).await;
    let csv = api
        .post_json("/events", &json!({ "name": "person.changed", "envelope": "resource", "dataType": "text/csv" }))
        .await;

    for reply in [&unknown, &csv] {
        assert_problem(reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
        assert_eq!(pointers(&reply.2), ["/envelope"], "{}", reply.2);
    }
    assert_problem(&api.get("/events/person.changed").await, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn a_resource_create_with_valid_content_is_accepted() {
    let api = resource_events().await;

    let person = api
        .post_json(
            "/events/person.changed/trigger",
            &resource("create", PERSON_V1, json!({ "name": "Ada", "age": 36 })),
        )
        .await;
    let address = api
        .post_json(
            "/events/person.changed/trigger",
            &resource("create", ADDRESS_V1, json!({ "street": "Main St", "zip": 12345 })),
        )
        .await;

    assert_eq!(person.0, StatusCode::ACCEPTED, "{}", person.2);
    assert_eq!(address.0, StatusCode::ACCEPTED, "{}", address.2);
    assert_eq!(api.delivery_count("person.changed").await, 2);
}

#[tokio::test]
async fn a_resource_update_with_invalid_content_lists_every_violation_under_resource_content() {
    let api = resource_events().await;

    let person =
        api.post_json("/events/person.changed/trigger", &resource("update", PERSON_V1, json!({ "age": -1 }))).await;
    let address = api
        .post_json(
            "/events/person.changed/trigger",
            &resource("update", ADDRESS_V1, json!({ "street": 5, "zip": "x" })),
        )
        .await;

    assert_problem(&person, StatusCode::UNPROCESSABLE_ENTITY, "payload-rejected");
    let mut found = pointers(&person.2);
    found.sort();
    assert_eq!(found, ["/resource/content", "/resource/content/age"], "{}", person.2);
    assert_problem(&address, StatusCode::UNPROCESSABLE_ENTITY, "payload-rejected");
    let mut found = pointers(&address.2);
    found.sort();
    assert_eq!(found, ["/resource/content/street", "/resource/content/zip"], "{}", address.2);
    assert_eq!(api.delivery_count("person.changed").await, 0, "nothing accepted");
}

#[tokio::test]
async fn a_resource_delete_carrying_a_resource_reference_is_accepted() {
    let api = resource_events().await;

    let reference = json!({ "tenantId": 1, "id": 42, "version": 3 });
    let (status, _, receipt) =
        api.post_json("/events/person.changed/trigger", &resource("delete", PERSON_V1, reference)).await;

    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    assert_eq!(api.delivery_count("person.changed").await, 1);
}

#[tokio::test]
async fn a_resource_naming_an_unregistered_schema_is_unprocessable_at_resource_schema() {
    let api = resource_events().await;
    let nobody = "https://example.com/schemas/nobody.json";

    let reply =
        api.post_json("/events/person.changed/trigger", &resource("create", nobody, json!({ "name": "Ada" }))).await;

    // THEN the registry says so, and so does the event's own schema, which admits two URIs
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "payload-rejected");
    assert_eq!(pointers(&reply.2), ["/resource/schema", "/resource/schema"], "{}", reply.2);
    assert!(reply.2["violations"].as_array().unwrap().iter().any(|v| v["message"].as_str().unwrap().contains(nobody)));
    assert_eq!(api.delivery_count("person.changed").await, 0);
}

#[tokio::test]
async fn a_broken_resource_envelope_lists_its_own_violations_first() {
    let api = resource_events().await;

    let rename = api.post_json("/events/person.changed/trigger", &resource("rename", PERSON_V1, json!({}))).await;
    let bare = api.post_json("/events/person.changed/trigger", &json!({ "name": "Ada" })).await;

    assert_problem(&rename, StatusCode::UNPROCESSABLE_ENTITY, "payload-rejected");
    assert_eq!(pointers(&rename.2), ["/action"], "the content is not checked: {}", rename.2);
    assert_problem(&bare, StatusCode::UNPROCESSABLE_ENTITY, "payload-rejected");
    assert!(!pointers(&bare.2).is_empty());
    assert_eq!(api.delivery_count("person.changed").await, 0);
}

// ---------------------------------------------------------------------------------------------
// The registry in the document
// ---------------------------------------------------------------------------------------------

/// Each registry body is checked as the document states it, here against the router itself,
/// over documents that compile or parse (which no schema can state).
#[tokio::test]
async fn documented_schema_bodies_are_accepted_and_others_refused() {
    let doc = gateway_api::openapi();
    let validator = |name: &str| {
        jsonschema::validator_for(
            &json!({ "$ref": format!("#/components/schemas/{name}"), "components": doc["components"].clone() }),
        )
        .unwrap_or_else(|e| panic!("{name} compiles: {e}"))
    };
    let json_schema = |more: Value| {
        let mut body = json!({ "name": "a", "format": "json-schema", "schema": {} });
        body.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
        body
    };
    let new_schema = validator("NewSchema");
    let bodies = [
        json_schema(json!({})),
        json_schema(json!({ "schema": true })),
        json_schema(json!({ "schema": 5 })),
        json_schema(json!({ "schema": "string" })),
        json_schema(json!({ "schema": null })),
        json_schema(json!({ "name": "-a" })),
        json_schema(json!({ "name": null })),
        json_schema(json!({ "format": "xml" })),
        json_schema(json!({ "format": null })),
        json_schema(json!({ "uri": "urn:example:a" })),
        json_schema(json!({ "uri": "https://example.com/a.json#" })),
        json_schema(json!({ "uri": "https://[::1]:8080/a?b" })),
        json_schema(json!({ "uri": null })),
        json_schema(json!({ "uri": "" })),
        json_schema(json!({ "uri": "/schemas/a/versions/1" })),
        json_schema(json!({ "uri": "urn:a#b" })),
        json_schema(json!({ "uri": "https://exa mple.com" })),
        json_schema(json!({ "uri": format!("urn:{}", "x".repeat(1020)) })),
        json_schema(json!({ "uri": format!("urn:{}", "x".repeat(1021)) })),
        json_schema(json!({ "compatibility": "FULL" })),
        json_schema(json!({ "compatibility": "full" })),
        json_schema(json!({ "compatibility": null })),
        json_schema(json!({ "description": "d".repeat(1024) })),
        json_schema(json!({ "description": "d".repeat(1025) })),
        json_schema(json!({ "versions": [] })),
        json!({ "name": "a", "format": "json-schema" }),
        json!({ "format": "json-schema", "schema": {} }),
        json!({ "name": "a", "schema": {} }),
        json!({ "name": "a", "format": "avro", "schema": "string" }),
        json!({ "name": "a", "format": "avro", "schema": ["null", "string"] }),
        json!({ "name": "a", "format": "avro", "schema": address_avro() }),
        json!({ "name": "a", "format": "avro", "schema": true }),
        json!({ "name": "a", "format": "avro", "schema": 5 }),
    ];
    for body in bodies {
        let api = Api::new();
        let (status, _, answer) = api.post_json("/schemas", &body).await;
        assert_eq!(new_schema.is_valid(&body), status == StatusCode::CREATED, "{body}: {status} {answer}");
    }

    let new_version = validator("NewSchemaVersion");
    let replacement = validator("SchemaReplacement");
    let api = Api::new();
    api.register(&json!({ "name": "a", "format": "json-schema", "schema": {}, "compatibility": "NONE" })).await;
    for body in [
        json!({ "schema": {} }),
        json!({ "schema": false, "uri": "urn:example:a:2" }),
        json!({ "schema": {}, "uri": "a.json" }),
        json!({}),
        json!({ "schema": {}, "name": "a" }),
    ] {
        let (status, _, answer) = api.post_json("/schemas/a/versions", &body).await;
        assert_eq!(new_version.is_valid(&body), status == StatusCode::CREATED, "{body}: {status} {answer}");
    }
    for body in [
        json!({}),
        json!({ "compatibility": "NONE", "description": null }),
        json!({ "compatibility": null, "description": "d" }),
        json!({ "compatibility": "none" }),
        json!({ "description": "d".repeat(1025) }),
        json!({ "format": "avro" }),
    ] {
        let (status, _, answer) = api.put_json("/schemas/a", None, &body).await;
        assert_eq!(replacement.is_valid(&body), status == StatusCode::OK, "{body}: {status} {answer}");
    }
}

#[tokio::test]
async fn the_document_states_the_registrys_problem_members_and_resource_events() {
    let doc = gateway_api::openapi();
    let schemas = &doc["components"]["schemas"];

    let problem = &schemas["Problem"]["properties"];
    assert_eq!(problem["incompatibilities"]["items"]["$ref"], "#/components/schemas/Incompatibility");
    assert_eq!(problem["referrers"]["items"]["$ref"], "#/components/schemas/Referrer");
    assert_eq!(schemas["SchemaFormat"]["enum"], json!(["json-schema", "avro"]));
    assert_eq!(schemas["Compatibility"]["enum"], json!(["BACKWARD", "FORWARD", "FULL", "NONE"]));
    assert_eq!(schemas["NewSchema"]["properties"]["uri"]["maxLength"], 1024);
    let limit = gateway_core::schemas::MAX_SCHEMA_BYTES.to_string();
    assert!(schemas["NewSchema"]["properties"]["schema"]["description"].as_str().unwrap().contains(&limit));
    assert_eq!(schemas["NewEvent"]["properties"]["envelope"]["anyOf"][0]["$ref"], "#/components/schemas/Envelope");
    assert!(schemas["EventDefinition"]["properties"].get("schemaReferences").is_some());
    let responses = |path: &str, method: &str| -> Vec<String> {
        doc["paths"][path][method]["responses"].as_object().unwrap().keys().cloned().collect()
    };
    for (path, method, statuses) in [
        ("/schemas", "post", &["201", "400", "404", "409", "413", "415", "422"][..]),
        ("/schemas", "get", &["200", "400"]),
        ("/schemas/{name}", "get", &["200", "400", "404"]),
        ("/schemas/{name}", "put", &["200", "400", "404", "412", "413", "415", "422"]),
        ("/schemas/{name}", "delete", &["204", "400", "404", "409", "412"]),
        ("/schemas/{name}/versions", "post", &["201", "400", "404", "409", "413", "415", "422"]),
        ("/schemas/{name}/versions/{version}", "get", &["200", "400", "404"]),
    ] {
        let found = responses(path, method);
        for status in statuses.iter().chain(&["401", "503"]) {
            assert!(found.contains(&status.to_string()), "{method} {path} documents {status}: {found:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery strategy: filters and delivery policies on subscriptions, the delivery log's
// statuses and history, redrive
// ---------------------------------------------------------------------------------------------

use gateway_core::model::{Attempt, AttemptResult, Delivery, DeliveryStatus};
use gateway_core::ports::{Attempted, DeliveryOutbox};

/// A policy at every limit's upper edge.
fn sync_policy() -> Value {
    json!({ "mode": "sync", "maxAttempts": 185, "maxAgeSeconds": 86400, "timeoutSeconds": 880 })
}

/// Only orders over 100 to Germany or France.
fn big_orders() -> Value {
    json!({ "data": { "total": [{ "numeric": [">", 100] }], "country": ["DE", "FR"] } })
}

impl Api {
    /// POST /subscriptions to orders.created with `fields` added to an allowed function.
    async fn subscribe_with(&self, fields: Value) -> Reply {
        let mut body = json!({ "event": "orders.created", "functionId": "orders-mailer" });
        body.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        self.post_json("/subscriptions", &body).await
    }

    /// GIVEN helper: plays the delivery worker once. Claims what is due and records one attempt
    /// for each delivery of `event_id` whose subscription `outcomes` names, ending as it says
    /// (`failed`, `delivered` or `invoked`); the others stay pending.
    async fn attempt(&self, event_id: &str, outcomes: &[(&str, DeliveryStatus)]) {
        let now = gateway_core::ports::Clock::now(self.clock.as_ref());
        let due = self.store.claim_due(now, 100, Duration::from_secs(30)).await.expect("claims");
        let mut recorded = 0;
        for due in &due {
            let d = &due.delivery;
            let Some((_, status)) = outcomes
                .iter()
                .find(|(sub, _)| d.event_id.to_string() == event_id && d.subscription_id.to_string() == *sub)
            else {
                continue;
            };
            let (result, error) = match status {
                DeliveryStatus::Failed => (AttemptResult::Failed, Some("Unhandled: boom".to_owned())),
                DeliveryStatus::Delivered => (AttemptResult::Succeeded, None),
                DeliveryStatus::Invoked => (AttemptResult::Invoked, None),
                DeliveryStatus::Pending => panic!("an attempt the worker records settles here"),
            };
            let mut after = Delivery {
                status: *status,
                attempts: d.attempts + 1,
                last_error: error.clone(),
                updated_at: now,
                ..d.clone()
            };
            after.remember(Attempt {
                generation: d.generation,
                number: d.attempts + 1,
                started_at: now,
                duration_ms: 12,
                result,
                error,
                request_id: None,
            });
            self.store.record_attempt(due, &Attempted { delivery: after, retry: None }).await.expect("recorded");
            recorded += 1;
        }
        assert_eq!(recorded, outcomes.len(), "every delivery named was due");
    }

    /// GIVEN helper: plays the delivery worker once, failing every delivery that is due.
    async fn fail_everything_due(&self) -> usize {
        let now = gateway_core::ports::Clock::now(self.clock.as_ref());
        let due = self.store.claim_due(now, 10_000, Duration::from_secs(30)).await.expect("claims");
        for due in &due {
            let failed = Delivery {
                status: DeliveryStatus::Failed,
                attempts: due.delivery.attempts + 1,
                last_error: Some("boom".into()),
                ..due.delivery.clone()
            };
            self.store.record_attempt(due, &Attempted { delivery: failed, retry: None }).await.expect("recorded");
        }
        due.len()
    }

    /// The delivery of `event_id` to `subscription`, as GET /deliveries/{eventId} shows it.
    async fn delivery(&self, event_id: &str, subscription: &str) -> Value {
        let (status, _, deliveries) = self.get(&format!("/deliveries/{event_id}")).await;
        assert_eq!(status, StatusCode::OK, "{deliveries}");
        deliveries
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["subscriptionId"] == subscription)
            .unwrap_or_else(|| panic!("a delivery to {subscription} in {deliveries}"))
            .clone()
    }

    /// GIVEN helper: orders.created with one subscription, triggered once, its delivery failed.
    /// Returns (event id, subscription id).
    async fn failed_delivery(&self) -> (String, String) {
        self.define_named("orders.created").await;
        let sub = self.subscribe("orders.created", "orders-mailer").await;
        let event_id =
            self.trigger("orders.created", &json!({ "total": 5 })).await["eventId"].as_str().unwrap().to_owned();
        self.attempt(&event_id, &[(&sub, DeliveryStatus::Failed)]).await;
        assert_eq!(self.delivery(&event_id, &sub).await["status"], "failed");
        (event_id, sub)
    }

    async fn redrive(&self, event_id: &str, body: &Value) -> Reply {
        self.post_json(&format!("/deliveries/{event_id}/redrive"), body).await
    }

    async fn redrive_subscription(&self, subscription: &str, body: &Value) -> Reply {
        self.post_json(&format!("/subscriptions/{subscription}/redrive"), body).await
    }
}

#[tokio::test]
async fn subscribe_with_a_filter_and_a_delivery_policy_answers_them_everywhere() {
    let api = Api::new();
    api.define_named("orders.created").await;

    // WHEN a subscription is made with a filter and a sync policy
    let (status, _, body) = api.subscribe_with(json!({ "filter": big_orders(), "delivery": sync_policy() })).await;

    // THEN both come back as sent, on create, read and list
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["filter"], big_orders());
    assert_eq!(body["delivery"], sync_policy());
    let id = body["subscriptionId"].as_str().unwrap();
    assert_eq!(api.get(&format!("/subscriptions/{id}")).await.2, body);
    assert_eq!(api.get("/subscriptions").await.2["items"][0], body);
}

#[tokio::test]
async fn subscribe_without_a_filter_or_policy_answers_the_default_async_policy() {
    let api = Api::new();
    api.define_named("orders.created").await;

    for fields in [json!({}), json!({ "filter": null, "delivery": null }), json!({ "delivery": {} })] {
        let (status, _, body) = api.subscribe_with(fields.clone()).await;

        assert_eq!(status, StatusCode::CREATED, "{fields}: {body}");
        assert!(body.get("filter").is_none(), "no filter: every trigger: {body}");
        assert_eq!(body["delivery"], json!({ "mode": "async" }), "{fields}");
    }
}

#[tokio::test]
async fn replace_subscription_sets_then_clears_its_filter_and_policy() {
    let api = Api::new();
    api.define_named("orders.created").await;
    let id = api.subscribe("orders.created", "orders-mailer").await;
    let uri = format!("/subscriptions/{id}");

    // WHEN a replace adds a filter and a policy
    let policy = json!({ "mode": "sync", "maxAttempts": 1, "maxAgeSeconds": 60, "timeoutSeconds": 1 });
    let (status, _, set) = api
        .put_json(
            &uri,
            Some("\"1\""),
            &json!({ "functionId": "orders-mailer", "filter": big_orders(), "delivery": policy }),
        )
        .await;

    // THEN they are the subscription's (the lower edges of every limit are fine)
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!((&set["filter"], &set["delivery"]), (&big_orders(), &policy));
    assert_eq!(api.get(&uri).await.2, set);

    // AND a replace without them takes them away
    let (status, _, cleared) = api.put_json(&uri, Some("\"2\""), &json!({ "functionId": "orders-mailer" })).await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert!(cleared.get("filter").is_none(), "{cleared}");
    assert_eq!(cleared["delivery"], json!({ "mode": "async" }));
}

#[tokio::test]
async fn an_invalid_filter_is_unprocessable_with_every_problem_under_filter_and_changes_nothing() {
    let api = Api::new();
    api.define_named("orders.created").await;
    let id = api.subscribe("orders.created", "orders-mailer").await;

    for (filter, expected) in [
        // A numeric range whose bounds are the wrong way round, and a leaf that is no list.
        (
            json!({ "data": { "total": [{ "numeric": [">", 100, "<", 5] }], "country": "DE" } }),
            vec!["/filter/data/country", "/filter/data/total/0/numeric"],
        ),
        (json!([]), vec!["/filter"]),
        (json!({}), vec!["/filter"]),
        (json!({ "data": { "total": [{ "between": [1, 2] }] } }), vec!["/filter/data/total/0/between"]),
    ] {
        // WHEN a subscription is made, or replaced, with it
        let created = api.subscribe_with(json!({ "filter": filter })).await;
        let replaced = api
            .put_json(&format!("/subscriptions/{id}"), None, &json!({ "functionId": "orders-v2", "filter": filter }))
            .await;

        // THEN 422, each problem located under /filter
        for reply in [&created, &replaced] {
            assert_problem(reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
            let mut found = pointers(&reply.2);
            found.sort();
            assert_eq!(found, expected, "{filter}: {}", reply.2);
        }
    }
    // AND nothing was made or changed
    let (_, _, list) = api.get("/subscriptions").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["functionId"], "orders-mailer");
    assert_eq!(list["items"][0]["version"], 1);
}

#[tokio::test]
async fn every_policy_limit_is_taken_at_its_edges_and_refused_just_outside_at_its_pointer() {
    let api = Api::new();
    api.define_named("orders.created").await;

    for (field, inside, outside) in [
        ("maxAttempts", [1, 185], [json!(0), json!(186)]),
        ("maxAgeSeconds", [60, 86400], [json!(59), json!(86401)]),
        ("timeoutSeconds", [1, 880], [json!(0), json!(881)]),
    ] {
        for value in inside {
            let (status, _, body) = api.subscribe_with(json!({ "delivery": { "mode": "sync", field: value } })).await;
            assert_eq!(status, StatusCode::CREATED, "{field} {value}: {body}");
            assert_eq!(body["delivery"][field], value);
        }
        // Out of range, negative, past u32, fractional, a string: all 422 at the field.
        for value in outside.into_iter().chain([json!(-1), json!(4_294_967_296u64), json!(1.5), json!("3")]) {
            let reply = api.subscribe_with(json!({ "delivery": { "mode": "sync", field: value } })).await;
            assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
            assert_eq!(pointers(&reply.2), [format!("/delivery/{field}")], "{field} {value}: {}", reply.2);
        }
    }
    assert_eq!(api.get("/subscriptions").await.2["items"].as_array().unwrap().len(), 6, "only the six inside");
}

#[tokio::test]
async fn timeout_seconds_is_for_sync_only() {
    let api = Api::new();
    api.define_named("orders.created").await;

    // WHEN an async policy (said, or by default) sets a timeout
    for delivery in [json!({ "mode": "async", "timeoutSeconds": 10 }), json!({ "timeoutSeconds": 10 })] {
        let reply = api.subscribe_with(json!({ "delivery": delivery })).await;

        // THEN 422 at the timeout, saying why
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
        assert_eq!(pointers(&reply.2), ["/delivery/timeoutSeconds"], "{delivery}");
        assert!(reply.2["detail"].as_str().unwrap().contains("sync"), "{}", reply.2);
    }
    // AND a null timeout is no timeout
    let (status, _, body) =
        api.subscribe_with(json!({ "delivery": { "mode": "async", "timeoutSeconds": null } })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["delivery"], json!({ "mode": "async" }));
}

#[tokio::test]
async fn a_delivery_policy_with_an_unknown_field_or_mode_is_unprocessable_at_its_pointer() {
    let api = Api::new();
    api.define_named("orders.created").await;
    let id = api.subscribe("orders.created", "orders-mailer").await;

    for (delivery, pointer) in [
        (json!({ "mode": "async", "retries": 3 }), "/delivery/retries"),
        (json!({ "mode": "fast" }), "/delivery/mode"),
        (json!({ "mode": "SYNC" }), "/delivery/mode"),
        (json!({ "mode": null }), "/delivery/mode"),
        (json!("sync"), "/delivery"),
        (json!([]), "/delivery"),
        // serde would read a struct from an array: `["sync"]` as `{"mode": "sync"}`.
        (json!(["sync"]), "/delivery"),
    ] {
        let created = api.subscribe_with(json!({ "delivery": delivery })).await;
        let replaced = api
            .put_json(
                &format!("/subscriptions/{id}"),
                None,
                &json!({ "functionId": "orders-v2", "delivery": delivery }),
            )
            .await;

        for reply in [created, replaced] {
            assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
            assert_eq!(pointers(&reply.2), [pointer], "{delivery}: {}", reply.2);
        }
    }
    let (_, _, list) = api.get("/subscriptions").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!((&list["items"][0]["functionId"], &list["items"][0]["version"]), (&json!("orders-mailer"), &json!(1)));
}

#[tokio::test]
async fn a_trigger_makes_deliveries_only_for_subscriptions_whose_filter_matches() {
    // GIVEN one subscription for every order and one for big orders to DE or FR only
    let api = Api::new();
    api.define_named("orders.created").await;
    let every = api.subscribe("orders.created", "orders-audit").await;
    let (_, _, big) = api.subscribe_with(json!({ "filter": big_orders() })).await;

    // WHEN a small order and a big one are triggered
    let small = api.trigger("orders.created", &json!({ "total": 50, "country": "DE" })).await;
    let large = api.trigger("orders.created", &json!({ "total": 150, "country": "FR" })).await;

    // THEN the receipt lists only the deliveries made, and so does the log
    let subscribers = |receipt: &Value| -> Vec<String> {
        let mut ids: Vec<String> = receipt["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["subscriptionId"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(subscribers(&small), std::slice::from_ref(&every));
    let mut both = vec![every, big["subscriptionId"].as_str().unwrap().to_owned()];
    both.sort();
    assert_eq!(subscribers(&large), both);
    let (_, _, log) = api.get(&format!("/deliveries/{}", small["eventId"].as_str().unwrap())).await;
    assert_eq!(log.as_array().unwrap().len(), 1, "{log}");
}

#[tokio::test]
async fn a_delivery_shows_its_generation_policy_and_an_empty_history_before_any_attempt() {
    let api = Api::new();
    api.define_named("orders.created").await;
    let (_, _, sub) = api.subscribe_with(json!({ "delivery": { "mode": "sync", "maxAttempts": 3 } })).await;
    let event_id = api.trigger("orders.created", &json!({})).await["eventId"].as_str().unwrap().to_owned();

    let d = api.delivery(&event_id, sub["subscriptionId"].as_str().unwrap()).await;

    assert_eq!(d["status"], "pending");
    assert_eq!(d["attempts"], 0);
    assert_eq!(d["generation"], 0);
    assert_eq!(d["policy"], json!({ "mode": "sync", "maxAttempts": 3 }), "the subscription's policy at trigger time");
    assert!(d.get("redrivenAt").is_none() && d.get("history").is_none(), "{d}");
}

#[tokio::test]
async fn a_failed_delivery_shows_its_attempts_history_and_last_error_in_both_listings() {
    // GIVEN a trigger whose delivery failed its first attempt for good
    let api = Api::new();
    let (event_id, sub) = api.failed_delivery().await;

    // WHEN the log is read by trigger and by event
    let d = api.delivery(&event_id, &sub).await;
    let (_, _, page) = api.get("/events/orders.created/deliveries").await;

    // THEN it is failed after one attempt, with the attempt in its history
    assert_eq!(d["status"], "failed");
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["lastError"], "Unhandled: boom");
    assert_eq!(
        d["history"],
        json!([{
            "generation": 0, "number": 1, "startedAt": START_TEXT, "durationMs": 12,
            "result": "failed", "error": "Unhandled: boom"
        }])
    );
    assert_eq!(page["items"], json!([d]), "the event's listing shows the same");
}

#[tokio::test]
async fn an_async_delivery_lambda_accepted_is_invoked_not_delivered() {
    let api = Api::new();
    api.define_named("orders.created").await;
    let sub = api.subscribe("orders.created", "orders-mailer").await;
    let event_id = api.trigger("orders.created", &json!({})).await["eventId"].as_str().unwrap().to_owned();

    api.attempt(&event_id, &[(&sub, DeliveryStatus::Invoked)]).await;

    let d = api.delivery(&event_id, &sub).await;
    assert_eq!(d["status"], "invoked");
    assert_eq!(d["history"][0]["result"], "invoked");
    assert!(d["history"][0].get("error").is_none(), "{d}");
}

#[tokio::test]
async fn a_redrive_of_a_failed_delivery_makes_it_pending_again_once() {
    // GIVEN a failed delivery, an hour later
    let api = Api::new();
    let (event_id, sub) = api.failed_delivery().await;
    api.clock.advance(Duration::from_secs(3600));

    // WHEN the trigger is redriven
    let (status, _, receipt) = api.redrive(&event_id, &json!({})).await;

    // THEN 202, one redriven
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    assert_eq!(receipt, json!({ "redriven": 1 }));
    // AND the delivery is a new series: pending, generation 1, no attempt yet, redriven now,
    // the first series' attempt still in its history
    let d = api.delivery(&event_id, &sub).await;
    assert_eq!(d["status"], "pending");
    assert_eq!((&d["generation"], &d["attempts"]), (&json!(1), &json!(0)));
    assert_eq!(d["redrivenAt"], "2025-01-01T01:00:00Z");
    assert_eq!(d["history"].as_array().unwrap().len(), 1);
    assert_eq!(d["history"][0]["generation"], 0);

    // AND a second redrive while it is pending redrives nothing
    let (status, _, again) = api.redrive(&event_id, &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again, json!({ "redriven": 0 }));
    assert_eq!(api.delivery(&event_id, &sub).await["generation"], 1);
}

#[tokio::test]
async fn a_redrive_never_touches_a_delivered_or_invoked_delivery() {
    // GIVEN one trigger with three deliveries: delivered, invoked and failed
    let api = Api::new();
    api.define_named("orders.created").await;
    let delivered = api.subscribe("orders.created", "orders-a").await;
    let invoked = api.subscribe("orders.created", "orders-b").await;
    let failed = api.subscribe("orders.created", "orders-c").await;
    let event_id = api.trigger("orders.created", &json!({})).await["eventId"].as_str().unwrap().to_owned();
    api.attempt(
        &event_id,
        &[
            (&delivered, DeliveryStatus::Delivered),
            (&invoked, DeliveryStatus::Invoked),
            (&failed, DeliveryStatus::Failed),
        ],
    )
    .await;

    // WHEN each of the settled ones is redriven by name, then the whole trigger
    for sub in [&delivered, &invoked] {
        let (status, _, receipt) = api.redrive(&event_id, &json!({ "subscriptionId": sub })).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
        assert_eq!(receipt, json!({ "redriven": 0 }), "a delivery that is not failed is left alone");
    }
    let (_, _, receipt) = api.redrive(&event_id, &json!({})).await;

    // THEN only the failed one was redriven
    assert_eq!(receipt, json!({ "redriven": 1 }));
    for (sub, status, generation) in [(&delivered, "delivered", 0), (&invoked, "invoked", 0), (&failed, "pending", 1)] {
        let d = api.delivery(&event_id, sub).await;
        assert_eq!((&d["status"], &d["generation"]), (&json!(status), &json!(generation)), "{d}");
    }
}

#[tokio::test]
async fn a_redrive_naming_a_subscription_redrives_only_its_delivery() {
    let api = Api::new();
    api.define_named("orders.created").await;
    let a = api.subscribe("orders.created", "orders-a").await;
    let b = api.subscribe("orders.created", "orders-b").await;
    let event_id = api.trigger("orders.created", &json!({})).await["eventId"].as_str().unwrap().to_owned();
    api.attempt(&event_id, &[(&a, DeliveryStatus::Failed), (&b, DeliveryStatus::Failed)]).await;

    let (status, _, receipt) = api.redrive(&event_id, &json!({ "subscriptionId": a })).await;

    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    assert_eq!(receipt, json!({ "redriven": 1 }));
    assert_eq!(api.delivery(&event_id, &a).await["status"], "pending");
    assert_eq!(api.delivery(&event_id, &b).await["status"], "failed");
}

#[tokio::test]
async fn a_redrive_without_a_body_an_empty_one_or_null_redrives_every_failed_delivery() {
    let empty_json: &[(&str, &str)] = &[("content-type", "application/json")];
    for (headers, body) in [
        (&[][..], ""),
        (empty_json, ""),
        (&[("content-type", "text/plain")][..], ""),
        (empty_json, "{}"),
        (empty_json, "{\"subscriptionId\": null}"),
        (&[][..], "{}"),
    ] {
        let api = Api::new();
        let (event_id, sub) = api.failed_delivery().await;

        let (status, _, receipt) =
            api.send(Method::POST, &format!("/deliveries/{event_id}/redrive"), headers, body).await;

        assert_eq!(status, StatusCode::ACCEPTED, "{headers:?} {body:?}: {receipt}");
        assert_eq!(receipt, json!({ "redriven": 1 }), "{headers:?} {body:?}");
        assert_eq!(api.delivery(&event_id, &sub).await["status"], "pending");
    }
}

#[tokio::test]
async fn a_redrive_of_an_unknown_trigger_or_a_subscription_it_has_no_delivery_to_is_not_found() {
    let api = Api::new();
    let (event_id, _) = api.failed_delivery().await;
    let other = api.subscribe("orders.created", "orders-later").await;

    let unknown = api.redrive("evt_01JDQ3V6J9K2M4N5P6Q7R8S9T0", &json!({})).await;
    let never = api.redrive(&event_id, &json!({ "subscriptionId": "sub_01JDQ3V6J9K2M4N5P6Q7R8S9T0" })).await;
    // Subscribed after the trigger: the trigger has no delivery to it.
    let later = api.redrive(&event_id, &json!({ "subscriptionId": other })).await;

    assert_problem(&unknown, StatusCode::NOT_FOUND, "not-found");
    assert!(unknown.2["detail"].as_str().unwrap().contains("trigger"), "{}", unknown.2);
    for reply in [&never, &later] {
        assert_problem(reply, StatusCode::NOT_FOUND, "not-found");
        assert!(reply.2["detail"].as_str().unwrap().contains("subscription"), "{}", reply.2);
    }
    assert_eq!(api.get(&format!("/deliveries/{event_id}")).await.2[0]["status"], "failed", "nothing redriven");
}

#[tokio::test]
async fn a_redrive_of_a_trigger_refuses_bad_ids_and_bodies_and_redrives_nothing() {
    let api = Api::with_limit(SMALL_LIMIT);
    let (event_id, sub) = api.failed_delivery().await;
    let uri = format!("/deliveries/{event_id}/redrive");
    let json_type = [("content-type", "application/json")];

    for id in ["nope", "sub_01JDQ3V6J9K2M4N5P6Q7R8S9T0"] {
        assert_problem(&api.redrive(id, &json!({})).await, StatusCode::BAD_REQUEST, "invalid-request");
    }
    assert_problem(&api.send(Method::POST, &uri, &json_type, "{").await, StatusCode::BAD_REQUEST, "malformed-body");
    assert_problem(
        &api.send(Method::POST, &uri, &[("content-type", "text/plain")], "{}").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    );
    let large = format!("{{\"subscriptionId\": \"{}\"}}", "x".repeat(SMALL_LIMIT));
    assert_problem(
        &api.send(Method::POST, &uri, &json_type, large).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
    );
    for (body, pointer) in [
        (json!({ "subscriptionId": "nope" }), "/subscriptionId"),
        (json!({ "subscriptionId": 5 }), "/subscriptionId"),
        (json!({ "subscriptionId": sub, "all": true }), "/all"),
        (json!([]), ""),
        (json!(null), ""),
    ] {
        let reply = api.redrive(&event_id, &body).await;
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
        assert_eq!(pointers(&reply.2), [pointer], "{body}: {}", reply.2);
    }
    assert_eq!(api.delivery(&event_id, &sub).await["status"], "failed", "nothing redriven");
}

#[tokio::test]
async fn a_redrive_leaves_a_delivery_whose_subscription_was_deleted_failed_and_says_why() {
    let api = Api::new();
    let (event_id, sub) = api.failed_delivery().await;
    assert_eq!(api.delete(&format!("/subscriptions/{sub}")).await.0, StatusCode::NO_CONTENT);

    let (status, _, receipt) = api.redrive(&event_id, &json!({})).await;

    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    assert_eq!(
        receipt,
        json!({ "redriven": 0, "notRedriven": [
            { "eventId": event_id, "subscriptionId": sub, "reason": "its subscription was deleted" }
        ] })
    );
    assert_eq!(api.delivery(&event_id, &sub).await["status"], "failed");
}

#[tokio::test]
async fn a_redrive_runs_under_the_subscription_as_it_is_now() {
    // GIVEN a failed delivery whose subscription was then given another function and policy
    let api = Api::new();
    let (event_id, sub) = api.failed_delivery().await;
    let policy = json!({ "mode": "sync", "maxAttempts": 2 });
    let (status, _, _) = api
        .put_json(&format!("/subscriptions/{sub}"), None, &json!({ "functionId": "orders-fixed", "delivery": policy }))
        .await;
    assert_eq!(status, StatusCode::OK);

    // WHEN it is redriven
    assert_eq!(api.redrive(&event_id, &json!({})).await.2, json!({ "redriven": 1 }));

    // THEN its new series has the function and policy of now
    let d = api.delivery(&event_id, &sub).await;
    assert_eq!((&d["functionId"], &d["policy"]), (&json!("orders-fixed"), &policy));
}

#[tokio::test]
async fn a_redrive_by_subscription_redrives_its_failed_deliveries_in_the_window_once() {
    // GIVEN a failed delivery of a trigger received at START, an hour later
    let api = Api::new();
    let (event_id, sub) = api.failed_delivery().await;
    api.clock.advance(Duration::from_secs(3600));

    // WHEN a window that leaves it out, then one holding it, are redriven
    let (status, _, before) =
        api.redrive_subscription(&sub, &json!({ "since": "2024-12-31T00:00:00Z", "until": START_TEXT })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{before}");
    assert_eq!(before, json!({ "redriven": 0 }), "until is excluded");
    let (status, _, receipt) = api.redrive_subscription(&sub, &json!({ "since": START_TEXT })).await;

    // THEN 202 with one redriven (since is included, until defaults to now)
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    assert_eq!(receipt, json!({ "redriven": 1 }));
    assert_eq!(api.delivery(&event_id, &sub).await["generation"], 1);
    // AND again, with an offset that names the same instant, nothing more
    let (_, _, again) = api
        .redrive_subscription(&sub, &json!({ "since": "2025-01-01T01:00:00+01:00", "until": "2025-01-01T01:30:00.5Z" }))
        .await;
    assert_eq!(again, json!({ "redriven": 0 }));
}

#[tokio::test]
async fn a_redrive_by_subscription_takes_at_most_500_and_says_when_more_are_left() {
    // GIVEN 501 failed deliveries of one subscription
    let api = Api::new();
    api.define_named("orders.created").await;
    let sub = api.subscribe("orders.created", "orders-mailer").await;
    for _ in 0..501 {
        api.trigger("orders.created", &json!({})).await;
    }
    assert_eq!(api.fail_everything_due().await, 501);
    api.clock.advance(Duration::from_secs(1));
    let window = json!({ "since": "2024-12-31T00:00:00Z" });

    // WHEN the subscription is redriven, and again
    let (status, _, first) = api.redrive_subscription(&sub, &window).await;
    let (_, _, second) = api.redrive_subscription(&sub, &window).await;

    // THEN the first takes 500 and says more are left; the second goes on with the last one
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first, json!({ "redriven": 500, "more": true }));
    assert_eq!(second, json!({ "redriven": 1 }));
}

#[tokio::test]
async fn a_redrive_by_subscription_refuses_a_bad_window_at_its_pointer() {
    let api = Api::new();
    let (event_id, sub) = api.failed_delivery().await;

    for (body, expected) in [
        (json!({}), vec!["/since"]),
        (json!({ "until": START_TEXT }), vec!["/since"]),
        (json!({ "since": null }), vec!["/since"]),
        (json!({ "since": "yesterday" }), vec!["/since"]),
        (json!({ "since": "2025-01-01" }), vec!["/since"]),
        (json!({ "since": "2025-01-01T00:00:00" }), vec!["/since"]),
        (json!({ "since": "2025-01-01 00:00:00Z" }), vec!["/since"]),
        (json!({ "since": "2025-01-01t00:00:00z" }), vec!["/since"]),
        (json!({ "since": "2025-02-30T00:00:00Z" }), vec!["/since"]),
        (json!({ "since": "2024-12-31T23:59:60Z" }), vec!["/since"]),
        (json!({ "since": "2025-01-01T00:00:00+24:00" }), vec!["/since"]),
        (json!({ "since": 1735689600 }), vec!["/since"]),
        (json!({ "since": "2024-12-31T00:00:00Z", "until": "soon" }), vec!["/until"]),
        (json!({ "since": "bad", "until": "worse" }), vec!["/since", "/until"]),
        // An empty window, or one the wrong way round.
        (json!({ "since": START_TEXT, "until": START_TEXT }), vec!["/until"]),
        (json!({ "since": START_TEXT, "until": "2024-12-31T00:00:00Z" }), vec!["/until"]),
        // A start not before now, until left to default to now.
        (json!({ "since": START_TEXT }), vec!["/since"]),
        (json!({ "since": "2025-06-01T00:00:00Z", "until": null }), vec!["/since"]),
        (json!({ "since": "2024-12-31T00:00:00Z", "from": "x" }), vec!["/from"]),
    ] {
        let reply = api.redrive_subscription(&sub, &body).await;
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
        assert_eq!(pointers(&reply.2), expected, "{body}: {}", reply.2);
    }
    assert_eq!(api.delivery(&event_id, &sub).await["status"], "failed", "nothing redriven");
}

#[tokio::test]
async fn a_redrive_by_subscription_refuses_bad_ids_unknown_subscriptions_and_bad_bodies() {
    let api = Api::with_limit(SMALL_LIMIT);
    let (event_id, sub) = api.failed_delivery().await;
    let window = json!({ "since": "2024-12-31T00:00:00Z" });
    let uri = format!("/subscriptions/{sub}/redrive");
    let json_type = [("content-type", "application/json")];

    for id in ["nope", "evt_01JDQ3V6J9K2M4N5P6Q7R8S9T0"] {
        assert_problem(&api.redrive_subscription(id, &window).await, StatusCode::BAD_REQUEST, "invalid-request");
    }
    let unknown = api.redrive_subscription("sub_01JDQ3V6J9K2M4N5P6Q7R8S9T0", &window).await;
    assert_problem(&unknown, StatusCode::NOT_FOUND, "not-found");
    assert!(unknown.2["detail"].as_str().unwrap().contains("subscription"), "{}", unknown.2);
    assert_problem(&api.send(Method::POST, &uri, &json_type, "{").await, StatusCode::BAD_REQUEST, "malformed-body");
    assert_problem(&api.send(Method::POST, &uri, &json_type, "").await, StatusCode::BAD_REQUEST, "malformed-body");
    assert_problem(
        &api.send(Method::POST, &uri, &[("content-type", "text/plain")], window.to_string()).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    );
    let large = format!("{{\"since\": \"{}\"}}", "x".repeat(SMALL_LIMIT));
    assert_problem(
        &api.send(Method::POST, &uri, &json_type, large).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
    );
    assert_problem(&api.redrive_subscription(&sub, &json!([])).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_eq!(api.delivery(&event_id, &sub).await["status"], "failed", "nothing redriven");
}

#[tokio::test]
async fn on_aws_the_trigger_function_serves_both_redrives_and_the_subscriptions_function_neither() {
    let triggers = Api::with_group(RouteGroup::Triggers);
    let subscriptions = Api::with_group(RouteGroup::Subscriptions);
    let window = json!({ "since": "2024-12-31T00:00:00Z" });
    let (trigger, sub) = ("evt_01JDQ3V6J9K2M4N5P6Q7R8S9T0", "sub_01JDQ3V6J9K2M4N5P6Q7R8S9T0");

    // Served, by the routes' own answer for what this empty store does not hold.
    assert_problem(&triggers.redrive(trigger, &json!({})).await, StatusCode::NOT_FOUND, "not-found");
    assert_problem(&triggers.redrive_subscription(sub, &window).await, StatusCode::NOT_FOUND, "not-found");
    // Not served: API Gateway sends them to the trigger function.
    assert_problem(&subscriptions.redrive(trigger, &json!({})).await, StatusCode::NOT_FOUND, "no-route");
    assert_problem(&subscriptions.redrive_subscription(sub, &window).await, StatusCode::NOT_FOUND, "no-route");
}

/// The subscription bodies as the document states them, against the router itself.
#[tokio::test]
async fn documented_subscription_bodies_are_accepted_and_others_refused() {
    let doc = gateway_api::openapi();
    let validator = |name: &str| {
        jsonschema::validator_for(
            &json!({ "$ref": format!("#/components/schemas/{name}"), "components": doc["components"].clone() }),
        )
        .unwrap_or_else(|e| panic!("{name} compiles: {e}"))
    };
    let new_subscription = validator("NewSubscription");
    let replacement = validator("SubscriptionReplacement");
    let with = |more: Value| {
        let mut body = json!({ "event": "orders.created", "functionId": "orders-mailer" });
        body.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
        body
    };
    let mut bodies = vec![
        with(json!({})),
        with(json!({ "filter": big_orders() })),
        with(json!({ "filter": null, "delivery": null })),
        with(json!({ "filter": {} })),
        with(json!({ "filter": [] })),
        with(json!({ "filter": { "a": "b" } })),
        with(json!({ "filter": { "a": [] } })),
        with(json!({ "filter": { "a": [{ "prefix": "x", "suffix": "y" }] } })),
        with(json!({ "delivery": {} })),
        with(json!({ "delivery": sync_policy() })),
        with(json!({ "delivery": { "mode": "async" } })),
        with(json!({ "delivery": { "mode": "sync" } })),
        with(json!({ "delivery": { "mode": "fast" } })),
        with(json!({ "delivery": { "mode": null } })),
        with(json!({ "delivery": { "mode": "async", "timeoutSeconds": 5 } })),
        with(json!({ "delivery": { "timeoutSeconds": 5 } })),
        with(json!({ "delivery": { "timeoutSeconds": null } })),
        with(json!({ "delivery": { "maxAttempts": null, "maxAgeSeconds": null } })),
        with(json!({ "delivery": { "extra": 1 } })),
        with(json!({ "delivery": [] })),
        with(json!({ "delivery": "sync" })),
    ];
    for (field, low, high) in [("maxAttempts", 1, 185), ("maxAgeSeconds", 60, 86400), ("timeoutSeconds", 1, 880)] {
        for value in [low - 1, low, high, high + 1] {
            bodies.push(with(json!({ "delivery": { "mode": "sync", field: value } })));
        }
        bodies.push(with(json!({ "delivery": { "mode": "sync", field: 1.5 } })));
    }
    for body in bodies {
        let api = Api::new();
        api.define_named("orders.created").await;
        let (status, _, answer) = api.post_json("/subscriptions", &body).await;
        assert_eq!(new_subscription.is_valid(&body), status == StatusCode::CREATED, "POST {body}: {status} {answer}");
        assert!(matches!(status, StatusCode::CREATED | StatusCode::UNPROCESSABLE_ENTITY), "{body}: {status}");

        let id = api.subscribe("orders.created", "orders-mailer").await;
        let (status, _, answer) = api.put_json(&format!("/subscriptions/{id}"), None, &body).await;
        assert_eq!(replacement.is_valid(&body), status == StatusCode::OK, "PUT {body}: {status} {answer}");
    }
}

/// The redrive bodies as the document states them, against the router itself.
#[tokio::test]
async fn documented_redrive_bodies_are_accepted_and_others_refused() {
    let doc = gateway_api::openapi();
    let validator = |name: &str| {
        jsonschema::options()
            .should_validate_formats(true)
            .build(&json!({ "$ref": format!("#/components/schemas/{name}"), "components": doc["components"].clone() }))
            .unwrap_or_else(|e| panic!("{name} compiles: {e}"))
    };
    let window = validator("SubscriptionRedrive");
    let one = validator("TriggerRedrive");
    // Every window here is ordered and ends before now, which no schema can say.
    for body in [
        json!({ "since": "2024-12-31T00:00:00Z" }),
        json!({ "since": "2024-12-31T00:00:00Z", "until": null }),
        json!({ "since": "2024-12-31T00:00:00.123456789Z", "until": "2025-01-01T00:00:00-01:00" }),
        json!({ "since": "2024-12-31T00:00:00.123456789012Z" }),
        json!({ "since": "2024-12-31T00:00:00+23:59" }),
        json!({ "since": "0001-01-01T00:00:00Z" }),
        json!({ "since": "2024-12-31t00:00:00z" }),
        json!({ "since": "2024-12-31 00:00:00Z" }),
        json!({ "since": "2024-12-31T00:00:00" }),
        json!({ "since": "2024-12-31T00:00:60Z" }),
        json!({ "since": "2024-12-31T24:00:00Z" }),
        json!({ "since": "2024-02-30T00:00:00Z" }),
        json!({ "since": "2024-12-31T00:00:00.Z" }),
        json!({ "since": "2024-12-31T00:00:00+0100" }),
        json!({ "since": "+2024-12-31T00:00:00Z" }),
        json!({ "since": null }),
        json!({ "until": "2024-12-31T00:00:00Z" }),
        json!({}),
        json!({ "since": "2024-12-31T00:00:00Z", "extra": 1 }),
    ] {
        let api = Api::new();
        let sub = api.failed_delivery().await.1;
        let (status, _, answer) = api.redrive_subscription(&sub, &body).await;
        assert_eq!(window.is_valid(&body), status == StatusCode::ACCEPTED, "{body}: {status} {answer}");
    }
    for body in [
        json!({}),
        json!({ "subscriptionId": null }),
        json!({ "subscriptionId": "nope" }),
        json!({ "subscription": "x" }),
    ] {
        let api = Api::new();
        let event_id = api.failed_delivery().await.0;
        let (status, _, answer) = api.redrive(&event_id, &body).await;
        assert_eq!(one.is_valid(&body), status == StatusCode::ACCEPTED, "{body}: {status} {answer}");
    }
}

#[tokio::test]
async fn the_document_states_the_delivery_policy_the_statuses_and_the_redrive_routes() {
    let doc = gateway_api::openapi();
    let schemas = &doc["components"]["schemas"];

    // Every limit the server enforces, the mode's values, nothing else, and sync-only timeouts.
    let policy = &schemas["DeliveryPolicy"];
    assert_eq!(policy["additionalProperties"], false);
    for (field, min, max) in [("maxAttempts", 1, 185), ("maxAgeSeconds", 60, 86400), ("timeoutSeconds", 1, 880)] {
        assert_eq!(
            (&policy["properties"][field]["minimum"], &policy["properties"][field]["maximum"]),
            (&json!(min), &json!(max))
        );
    }
    assert_eq!(schemas["DeliveryMode"]["enum"], json!(["async", "sync"]));
    assert!(policy["properties"]["timeoutSeconds"]["description"].as_str().unwrap().contains("`sync` only"));
    for body in ["NewSubscription", "SubscriptionReplacement"] {
        let properties = &schemas[body]["properties"];
        assert_eq!(properties["delivery"]["anyOf"][0]["$ref"], "#/components/schemas/DeliveryPolicy", "{body}");
        assert_eq!(properties["filter"]["anyOf"][0]["$ref"], "#/components/schemas/EventPatternDocument", "{body}");
        assert!(properties["filter"]["description"].as_str().unwrap().contains("/filter"), "{body}");
    }
    assert_eq!(schemas["Subscription"]["properties"]["delivery"]["$ref"], "#/components/schemas/DeliveryPolicy");

    // Each status, and what it means.
    assert_eq!(schemas["DeliveryStatus"]["enum"], json!(["pending", "delivered", "invoked", "failed"]));
    let meaning = schemas["DeliveryStatus"]["description"].as_str().unwrap();
    for said in [
        "`pending`",
        "`delivered`: a `sync` invocation returned without a function error",
        "`invoked`: Lambda accepted an `async` invocation",
        "did not see it succeed",
        "`failed`: no attempt left",
        "dead-letter",
    ] {
        assert!(meaning.contains(said), "{said:?} in {meaning}");
    }
    let delivery = &schemas["Delivery"]["properties"];
    for field in ["status", "attempts", "generation", "redrivenAt", "policy", "history"] {
        assert!(delivery.get(field).is_some(), "Delivery.{field}");
    }
    let attempt = &schemas["Attempt"]["properties"];
    for field in ["generation", "number", "startedAt", "durationMs", "result", "error"] {
        assert!(attempt.get(field).is_some(), "Attempt.{field}");
    }
    assert_eq!(schemas["AttemptResult"]["enum"], json!(["succeeded", "invoked", "failed"]));

    // The redrive routes: what they answer, an optional body for one trigger, a required window.
    let responses = |path: &str| -> Vec<String> {
        doc["paths"][path]["post"]["responses"].as_object().unwrap().keys().cloned().collect()
    };
    for path in ["/deliveries/{eventId}/redrive", "/subscriptions/{id}/redrive"] {
        let found = responses(path);
        for status in ["202", "400", "401", "404", "413", "415", "422", "503"] {
            assert!(found.contains(&status.to_owned()), "POST {path} documents {status}: {found:?}");
        }
        assert_eq!(
            doc["paths"][path]["post"]["responses"]["202"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/RedriveReceipt"
        );
    }
    let trigger_body = &doc["paths"]["/deliveries/{eventId}/redrive"]["post"]["requestBody"];
    assert_eq!(trigger_body["required"], false);
    assert_eq!(trigger_body["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/TriggerRedrive");
    assert_eq!(schemas["SubscriptionRedrive"]["required"], json!(["since"]));
    assert_eq!(schemas["SubscriptionRedrive"]["properties"]["since"]["format"], "date-time");
}

// ---------------------------------------------------------------- CloudEvents in

const CE: &str = "application/cloudevents+json";
const CE_BATCH: &str = "application/cloudevents-batch+json";

impl Api {
    /// GIVEN helper: `orders.created` with a schema requiring `orderId`, its `$id` given, and one
    /// subscription.
    async fn orders_for_cloudevents(&self) {
        self.define(json!({"name": "orders.created", "schema": {
            "$id": "https://schemas.example.com/orders.created/1",
            "type": "object", "required": ["orderId"], "properties": {"orderId": {"type": "string"}}
        }}))
        .await;
        self.subscribe("orders.created", "orders-handler").await;
    }

    async fn send_ce(&self, uri: &str, content_type: &str, body: &Value) -> Reply {
        self.send(Method::POST, uri, &[("content-type", content_type)], body.to_string()).await
    }

    /// The CloudEvent context of the deliveries due now (what the worker hands subscribers).
    async fn due_cloud_events(&self) -> Vec<Option<gateway_core::cloudevent::Received>> {
        let due = self
            .store
            .claim_due(gateway_core::ports::Clock::now(self.clock.as_ref()), 100, Duration::from_secs(30))
            .await
            .expect("claims");
        due.into_iter().map(|d| d.cloud_event).collect()
    }
}

fn order_event(id: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/shop/checkout", "type": "orders.created",
           "subject": "o-1", "time": "2026-12-02T09:59:00Z", "tenant": "acme", "data": {"orderId": "o-1"}})
}

#[tokio::test]
async fn a_structured_cloudevent_triggers_its_event_once_by_source_and_id_keeping_its_context() {
    // GIVEN an event with a subscription
    let api = Api::new();
    api.orders_for_cloudevents().await;
    // WHEN a structured CloudEvent is posted to the trigger route, and again
    let (status, _, first) = api.send_ce("/events/orders.created/trigger", CE, &order_event("A-1")).await;
    let (again_status, _, again) = api.send_ce("/events/orders.created/trigger", CE, &order_event("A-1")).await;
    // THEN it triggers once: the second answer is the first receipt
    assert_eq!((status, again_status), (StatusCode::ACCEPTED, StatusCode::ACCEPTED), "{first}");
    assert_eq!(first["eventId"], again["eventId"]);
    assert_eq!(api.delivery_count("orders.created").await, 1);
    // AND what the subscriber gets keeps the CloudEvent's id, source, subject, time and extensions
    let kept = api.due_cloud_events().await.remove(0).expect("the CloudEvent is kept");
    assert_eq!(
        (kept.id.as_str(), kept.source.as_str(), kept.subject.as_deref()),
        ("A-1", "/shop/checkout", Some("o-1"))
    );
    assert_eq!((kept.time.as_deref(), &kept.extensions["tenant"]), (Some("2026-12-02T09:59:00Z"), &json!("acme")));
}

#[tokio::test]
async fn a_cloudevent_of_another_type_than_the_path_is_400_and_a_batch_there_is_refused() {
    let api = Api::new();
    api.orders_for_cloudevents().await;
    let mut other = order_event("A-2");
    other["type"] = json!("orders.shipped");
    let (status, _, body) = api.send_ce("/events/orders.created/trigger", CE, &other).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("not the event in the path"))
            || body.to_string().contains("not the event in the path"),
        "{body}"
    );
    let (status, _, body) = api.send_ce("/events/orders.created/trigger", CE_BATCH, &json!([order_event("A-3")])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(api.delivery_count("orders.created").await, 0);
}

#[tokio::test]
async fn binary_mode_reads_percent_encoded_headers_and_names_every_bad_one() {
    let api = Api::new();
    api.orders_for_cloudevents().await;
    let headers = [
        ("content-type", "application/json"),
        ("ce-specversion", "1.0"),
        ("ce-id", "B-1"),
        ("ce-source", "/shop/checkout"),
        ("ce-type", "orders.created"),
        ("ce-subject", "caf%C3%A9"),
    ];
    let (status, _, body) = api.send(Method::POST, "/cloudevents", &headers, br#"{"orderId":"o-1"}"#.to_vec()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(api.due_cloud_events().await[0].as_ref().unwrap().subject.as_deref(), Some("café"));
    // missing ce-id, a wrong specversion, a bad escape
    let bad = [
        ("content-type", "application/json"),
        ("ce-specversion", "0.3"),
        ("ce-source", "/s"),
        ("ce-type", "orders.created"),
        ("ce-subject", "%G1"),
    ];
    let (status, _, body) = api.send(Method::POST, "/cloudevents", &bad, br#"{"orderId":"o-1"}"#.to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let text = body.to_string();
    for named in ["ce-id", "ce-specversion", "ce-subject"] {
        assert!(text.contains(named), "{named} in {body}");
    }
}

#[tokio::test]
async fn a_header_with_raw_non_ascii_bytes_is_400_not_guessed_at() {
    let api = Api::new();
    api.orders_for_cloudevents().await;
    let request = Request::builder()
        .method(Method::POST)
        .uri("/cloudevents")
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "B-2")
        .header("ce-source", "/s")
        .header("ce-type", "orders.created")
        .header("ce-subject", axum::http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap())
        .body(Body::from(r#"{"orderId":"o-1"}"#))
        .unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(api.delivery_count("orders.created").await, 0);
}

#[tokio::test]
async fn structured_attributes_missing_or_malformed_are_422_by_pointer_and_an_unknown_type_404() {
    let api = Api::new();
    api.orders_for_cloudevents().await;
    let (status, _, body) =
        api.send_ce("/cloudevents", CE, &json!({"specversion": "0.3", "source": "", "type": "orders.created"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let text = body.to_string();
    for pointer in ["/specversion", "/id", "/source"] {
        assert!(text.contains(&format!("\"{pointer}\"")), "{pointer} in {body}");
    }
    let mut unknown = order_event("C-1");
    unknown["type"] = json!("orders.nowhere");
    assert_eq!(api.send_ce("/cloudevents", CE, &unknown).await.0, StatusCode::NOT_FOUND);
    let (status, _, body) = api.post_json("/cloudevents", &json!({"orderId": "o-1"})).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "a plain payload is no CloudEvent: {body}");
    let (status, _, _) = api.send(Method::POST, "/cloudevents", &[("content-type", CE)], b"{not json".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn datacontenttype_and_dataschema_must_agree_with_the_event() {
    let api = Api::new();
    api.orders_for_cloudevents().await;
    let mut csv = order_event("D-1");
    csv["datacontenttype"] = json!("text/csv");
    csv["data"] = json!("orderId\no-1\n");
    assert_eq!(api.send_ce("/cloudevents", CE, &csv).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut wrong_schema = order_event("D-2");
    wrong_schema["dataschema"] = json!("https://schemas.example.com/other/1");
    let (status, _, body) = api.send_ce("/cloudevents", CE, &wrong_schema).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("/dataschema"), "{body}");
    let mut right_schema = order_event("D-3");
    right_schema["dataschema"] = json!("https://schemas.example.com/orders.created/1");
    assert_eq!(api.send_ce("/cloudevents", CE, &right_schema).await.0, StatusCode::ACCEPTED);
    let mut invalid = order_event("D-4");
    invalid["data"] = json!({"orderId": 7});
    assert_eq!(api.send_ce("/cloudevents", CE, &invalid).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(api.delivery_count("orders.created").await, 1);
}

#[tokio::test]
async fn a_batch_with_one_bad_member_triggers_nothing_and_a_good_one_answers_a_receipt_per_member() {
    let api = Api::new();
    api.orders_for_cloudevents().await;
    let mut bad = order_event("E-2");
    bad["data"] = json!({"orderId": 7});
    let mut nowhere = order_event("E-3");
    nowhere["type"] = json!("orders.nowhere");
    let (status, _, body) =
        api.send_ce("/cloudevents", CE_BATCH, &json!([order_event("E-1"), bad, nowhere.clone()])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let text = body.to_string();
    assert!(text.contains("\"/1/data/orderId\"") && text.contains("\"/2/type\""), "{body}");
    // a batch whose only problem is a type naming no event is 404, as one such CloudEvent is
    let (status, _, body) = api.send_ce("/cloudevents", CE_BATCH, &json!([order_event("E-1"), nowhere])).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(api.delivery_count("orders.created").await, 0, "nothing of a refused batch is triggered");
    let (status, _, receipts) =
        api.send_ce("/cloudevents", CE_BATCH, &json!([order_event("E-1"), order_event("E-4")])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{receipts}");
    assert_eq!(receipts.as_array().map(Vec::len), Some(2));
    assert_ne!(receipts[0]["eventId"], receipts[1]["eventId"]);
    // one CloudEvent twice with other data is refused, whole
    let mut other_data = order_event("E-9");
    other_data["data"] = json!({"orderId": "o-other"});
    let (status, _, body) = api.send_ce("/cloudevents", CE_BATCH, &json!([order_event("E-9"), other_data])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("\"/1/id\""), "{body}");
    // a member sent again (same source and id) answers with its first receipt
    let (_, _, again) = api.send_ce("/cloudevents", CE, &order_event("E-1")).await;
    assert_eq!(again["eventId"], receipts[0]["eventId"]);
    assert_eq!(api.delivery_count("orders.created").await, 2);
}

#[tokio::test]
async fn a_subscription_takes_a_payload_format_native_by_default() {
    let api = Api::new();
    api.define_named("orders.created").await;
    let (status, _, body) = api
        .post_json(
            "/subscriptions",
            &json!({"event": "orders.created", "functionId": "orders-a", "format": "cloudevents"}),
        )
        .await;
    assert_eq!((status, &body["format"]), (StatusCode::CREATED, &json!("cloudevents")), "{body}");
    let (_, _, native) =
        api.post_json("/subscriptions", &json!({"event": "orders.created", "functionId": "orders-b"})).await;
    assert!(native.get("format").is_none(), "native is the default, left out: {native}");
    let (status, _, body) = api
        .post_json("/subscriptions", &json!({"event": "orders.created", "functionId": "orders-c", "format": "xml"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("/format"), "{body}");
}
