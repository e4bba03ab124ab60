//! What the OpenAPI document says beyond the handlers' annotations: request bodies whose rules
//! span fields, the optional bearer scheme, and the answers every operation can give.
//!
//! The core's drafts are lenient types shared by create and replace (a missing `name` is the use
//! case's 422, not serde's); the document states each operation's body exactly instead.

use std::borrow::Cow;

use serde_json::{json, Value};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema};

/// The bearer scheme's name in `components.securitySchemes`.
pub const BEARER: &str = "bearerToken";

/// What `DataType::is_json` says yes to, over the values the `DataType` pattern admits: an
/// essence (the part before `;`) of `application/json` or ending in `+json`, in any case.
const JSON_DATA_TYPE: &str =
    "^(?:[Aa][Pp][Pp][Ll][Ii][Cc][Aa][Tt][Ii][Oo][Nn]/[Jj][Ss][Oo][Nn]|[^;]*\\+[Jj][Ss][Oo][Nn])(?:;.*)?$";

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The properties both event bodies share, and the rule that spans two of them.
fn event_body(name: Value, required: &[&str], description: &str) -> Value {
    let mut body = json!({
        "type": "object",
        "description": description,
        "properties": {
            "name": name,
            "description": { "type": ["string", "null"], "maxLength": 1024 },
            "schema": {
                "type": ["object", "boolean", "null"],
                "description": "A JSON Schema (draft 2020-12 unless `$schema` names another) that every payload must satisfy, the whole envelope for a resource event. It must compile (else 422); a `$ref` names a registered schema version's URI (`/schemas`) and is resolved from the registry, never fetched: one to a URI the registry does not hold is 422 at /schema. Only for a JSON `dataType`.",
            },
            "dataType": {
                "anyOf": [schema_ref("DataType"), { "type": "null" }],
                "maxLength": 255,
                "description": "The payloads' media type; `application/json` when absent.",
            },
            "envelope": {
                "anyOf": [schema_ref("Envelope"), { "type": "null" }],
                "description": "`resource`: every payload is a resource lifecycle envelope (`action`, `resource.schema`, `resource.content`), whose content is validated against the registered schema version `resource.schema` names. Only for a JSON `dataType`.",
            },
            "metadata": {
                "type": ["object", "null"],
                "description": "Custom JSON, kept and handed to no one; `{}` when absent.",
            },
        },
        "additionalProperties": false,
        // A schema and an envelope are JSON: they need a JSON dataType (absent means application/json).
        "anyOf": [
            { "properties": { "schema": { "type": "null" }, "envelope": { "type": "null" } } },
            { "properties": { "dataType": { "anyOf": [{ "type": "null" }, { "type": "string", "pattern": JSON_DATA_TYPE }] } } },
        ],
    });
    if !required.is_empty() {
        body["required"] = json!(required);
    }
    body
}

fn subscription_body(event: Value, required: &[&str], description: &str) -> Value {
    json!({
        "type": "object",
        "description": description,
        "required": required,
        "properties": {
            "event": event,
            "functionId": schema_ref("FunctionId"),
            "metadata": {
                "type": ["object", "null"],
                "description": "Custom JSON, handed to the function with every invocation; `{}` when absent.",
            },
            "filter": {
                "anyOf": [schema_ref("EventPatternDocument"), { "type": "null" }],
                "example": { "data": { "total": [{ "numeric": [">", 100] }], "country": ["DE", "FR"] } },
                "description": "An EventBridge event pattern over the invocation document each trigger would hand the function (`event`, `dataType`, `data`, and `source` for a native record): a trigger it does not match makes no delivery for this subscription, and its receipt lists only the deliveries made. `data` is there for a JSON payload only, so a pattern on `data` never matches a payload of another `dataType`. Absent or null: every trigger. An invalid pattern is 422 with every problem's pointer under /filter. A redrive does not apply it again: the trigger was matched when it came.",
            },
            "delivery": {
                "anyOf": [schema_ref("DeliveryPolicy"), { "type": "null" }],
                "description": "How its deliveries run: `async` or `sync`, and the retry limits. Absent or null: every field at its default.",
            },
        },
        "additionalProperties": false,
    })
}

/// A subscription's delivery policy, request and answer alike: what `delivery::check_policy`
/// takes, the rule between `mode` and `timeoutSeconds` included.
fn delivery_policy() -> Value {
    use gateway_core::delivery::{RetryPolicy, MAX_AGE_SECONDS, MAX_ATTEMPTS, TIMEOUT_SECONDS};
    let defaults = RetryPolicy::default();
    json!({
        "type": "object",
        "description": format!("How a subscription's deliveries run. A limit left out (or null) is the gateway's own setting: {} attempts, a series of at most {} seconds and {} seconds for a `sync` invocation unless the gateway is configured otherwise. Retries wait an exponential backoff with jitter, and stop at `maxAttempts` or `maxAgeSeconds`, whichever comes first: the delivery is then `failed` (on AWS, dead-lettered with its last error). Every range is checked when the subscription is written (422 at its pointer under /delivery).", defaults.max_attempts, defaults.max_age.as_secs(), defaults.timeout.as_secs()),
        "properties": {
            "mode": {
                "$ref": "#/components/schemas/DeliveryMode",
                "description": "`async` when absent.",
            },
            "maxAttempts": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": MAX_ATTEMPTS,
                "description": format!("Attempts in all, the first included: 1 to {MAX_ATTEMPTS}."),
            },
            "maxAgeSeconds": {
                "type": ["integer", "null"],
                "minimum": MAX_AGE_SECONDS.start(),
                "maximum": MAX_AGE_SECONDS.end(),
                "description": format!("No attempt starts later than this after its series began (the trigger, or its redrive): {} to {} seconds.", MAX_AGE_SECONDS.start(), MAX_AGE_SECONDS.end()),
            },
            "timeoutSeconds": {
                "type": ["integer", "null"],
                "minimum": TIMEOUT_SECONDS.start(),
                "maximum": TIMEOUT_SECONDS.end(),
                "description": format!("`sync` only (422 with `async`, which returns once Lambda has queued the event): how long an invocation is waited for, {} to {} seconds, and never longer than the dispatcher has left of its own run.", TIMEOUT_SECONDS.start(), TIMEOUT_SECONDS.end()),
            },
        },
        "additionalProperties": false,
        // `timeoutSeconds` (other than null) needs `"mode": "sync"`.
        "anyOf": [
            { "properties": { "timeoutSeconds": { "type": "null" } } },
            { "required": ["mode"], "properties": { "mode": { "const": "sync" } } },
        ],
        "example": { "mode": "sync", "maxAttempts": 3, "maxAgeSeconds": 3600, "timeoutSeconds": 10 },
    })
}

/// What the delivery log's answers mean, beyond the core's types: each status and result, and
/// the fields every delivery carries.
fn delivery_log_schemas(components: &mut Value) {
    let schemas = &mut components["schemas"];
    schemas["DeliveryMode"] = json!({
        "type": "string",
        "enum": ["async", "sync"],
        "description": "How the function is invoked. `async` (the default): `InvocationType=Event`; Lambda queues the event and runs the function under its own retry policy, and the delivery ends `invoked`. `sync`: `InvocationType=RequestResponse`; the gateway waits for the function and records its real outcome: `delivered`, or its error (`FunctionError`, the payload's `errorType` and `errorMessage`) as a failed attempt, retried under the policy.",
    });
    schemas["DeliveryStatus"] = json!({
        "type": "string",
        "enum": ["pending", "delivered", "invoked", "failed"],
        "description": "`pending`: not settled; an attempt is due, running, or waiting for its backoff. `delivered`: a `sync` invocation returned without a function error, so the function succeeded. `invoked`: Lambda accepted an `async` invocation and runs the function under its own retries; the gateway did not see it succeed. `failed`: no attempt left (`maxAttempts`, `maxAgeSeconds`, or an error no retry can mend), `lastError` says why; on AWS it is in the dead-letter queue. Only a failed delivery can be redriven.",
    });
    schemas["AttemptResult"] = json!({
        "type": "string",
        "enum": ["succeeded", "invoked", "failed"],
        "description": "`succeeded`: a `sync` invocation returned without a function error. `invoked`: Lambda accepted an `async` invocation. `failed`: the invoke failed, or the function did; `error` says which and why.",
    });
    schemas["DeliveryPolicy"] = delivery_policy();
    let delivery = &mut schemas["Delivery"];
    // Always written, though a record from before them reads as their defaults.
    if let Some(required) = delivery["required"].as_array_mut() {
        required.extend([json!("generation"), json!("policy")]);
    }
    delivery["properties"]["history"]["description"] = json!(format!(
        "The last {} attempts, oldest first, across every series (`generation`).",
        gateway_core::model::MAX_HISTORY
    ));
    delivery["properties"]["history"]["maxItems"] = json!(gateway_core::model::MAX_HISTORY);
    delivery["properties"]["lastError"]["description"] = json!("The last failed attempt's error, if any.");
    schemas["Attempt"]["properties"]["number"]["minimum"] = json!(1);
    let receipt = &mut schemas["RedriveReceipt"]["properties"];
    receipt["redriven"]["description"] = json!("How many failed deliveries are pending again, each as a new series.");
    receipt["notRedriven"]["description"] =
        json!("Failed deliveries that were found and left failed, with why (their subscription was deleted). Absent when none.");
    receipt["more"]["description"] = json!(format!(
        "Present (true) when more failed deliveries match than one request redrives ({}): send the same request again.",
        gateway_core::redrive::MAX_REDRIVE
    ));
}

/// A body that may be left out: utoipa writes an optional body as `oneOf` null and the schema,
/// but a JSON `null` is no object, which every body of this API must be.
fn optional_body(doc: &mut Value, path: &str, method: &str, schema: &str) {
    let body = &mut doc["paths"][path][method]["requestBody"];
    if body.is_object() {
        body["required"] = json!(false);
        body["content"]["application/json"]["schema"] = schema_ref(schema);
    }
}

/// A CloudEvent in the JSON format (structured mode, a batch's member), with every rule
/// `CloudEvent::from_json` enforces.
fn cloud_event_schema() -> Value {
    use gateway_core::cloudevent::{ABSOLUTE_URI_PATTERN, MAX_EXTENSION_NAME};
    let text = json!({"type": "string", "minLength": 1});
    let optional = json!({"type": ["string", "null"], "minLength": 1});
    json!({
        "type": "object",
        "description": "A CloudEvent 1.0 (JSON format). `type` names the gateway event it triggers; `data` (any JSON; for a non-JSON `datacontenttype` a string is its text) or `data_base64` is the payload; `source` + `id` identify it (sent again, it triggers once). Extension attributes: lower-case letters and digits, a string, boolean or 32-bit integer each. A null attribute is absent (but `data` and `data_base64` are never both given).",
        "required": ["specversion", "id", "source", "type"],
        "properties": {
            "specversion": {"const": gateway_core::cloudevent::SPEC_VERSION},
            "id": text,
            "source": text,
            "type": text,
            "datacontenttype": optional,
            "dataschema": {"type": ["string", "null"], "pattern": ABSOLUTE_URI_PATTERN},
            "subject": optional,
            "time": {
                "type": ["string", "null"],
                "format": "date-time",
                "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
            },
            "data": {},
            "data_base64": {
                "type": ["string", "null"],
                "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
            }
        },
        "not": {"required": ["data", "data_base64"]},
        "propertyNames": {"anyOf": [
            {"enum": ["specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time", "data", "data_base64"]},
            {"pattern": format!("^[a-z0-9]{{1,{MAX_EXTENSION_NAME}}}$")}
        ]},
        "additionalProperties": {
            "type": ["string", "boolean", "integer", "null"],
            "minimum": i32::MIN,
            "maximum": i32::MAX
        }
    })
}

/// The redrive bodies.
fn redrive_schemas() -> [(&'static str, Value); 2] {
    let time = |description: &str| {
        json!({
            "type": "string",
            "format": "date-time",
            "pattern": crate::extract::DATE_TIME_PATTERN,
            "example": "2026-12-02T10:00:00Z",
            "description": description,
        })
    };
    let mut until = time("The end of the window, excluded: triggers received before it. Defaults to now (null too); it must be later than `since` (else 422 at /until).");
    until["type"] = json!(["string", "null"]);
    [
        (
            "TriggerRedrive",
            json!({
                "type": "object",
                "description": "Which of the trigger's failed deliveries to redrive: all of them when `subscriptionId` is absent or null (or the body is empty).",
                "properties": {
                    "subscriptionId": {
                        "anyOf": [schema_ref("SubscriptionId"), { "type": "null" }],
                        "description": "Only the delivery to this subscription (404 if the trigger has none).",
                    },
                },
                "additionalProperties": false,
            }),
        ),
        (
            "SubscriptionRedrive",
            json!({
                "type": "object",
                "description": "The window of triggers whose failed deliveries to the subscription are redriven: those received in [since, until). Times are RFC 3339 date-times with an offset (`Z` or `+hh:mm`), without a leap second.",
                "required": ["since"],
                "properties": {
                    "since": time("The start of the window, included: triggers received at or after it. It must be earlier than `until`, or than now when `until` is left out (else 422 at /since)."),
                    "until": until,
                },
                "additionalProperties": false,
                "example": { "since": "2026-12-01T00:00:00Z", "until": "2026-12-02T00:00:00Z" },
            }),
        ),
    ]
}

/// A request body whose schema is written out as JSON (utoipa's builders cannot say `anyOf`
/// beside `properties`, or `readOnly` beside a `$ref`): the handlers name it, [`complete`] writes it.
macro_rules! written_schema {
    ($name:ident) => {
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                RefOr::T(ObjectBuilder::new().into())
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

written_schema!(NewEvent);
written_schema!(EventReplacement);
written_schema!(NewSubscription);
written_schema!(SubscriptionReplacement);
written_schema!(TriggerRedrive);
written_schema!(SubscriptionRedrive);
written_schema!(NewSource);
written_schema!(SourceReplacement);
written_schema!(NativeEventDocument);
written_schema!(NewSchema);
written_schema!(NewSchemaVersion);
written_schema!(SchemaReplacement);

/// RFC 3986's `absolute-URI` (a scheme, no fragment), ASCII as the RFC has it: what
/// `SchemaUri::parse` reads a version's given `uri` as, less the `json-schema:` scheme, under
/// which the registry keeps its default URIs (refused: it would read as one of those paths).
fn absolute_uri_pattern() -> String {
    let pct = "%[0-9A-Fa-f]{2}";
    let unreserved_sub = r"A-Za-z0-9\-._~!$&'()*+,;=";
    let pchar = format!("(?:[{unreserved_sub}:@]|{pct})");
    let segment = format!("{pchar}*");
    let segment_nz = format!("{pchar}+");
    let h16 = "[0-9A-Fa-f]{1,4}";
    let octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    let ipv4 = format!(r"{octet}(?:\.{octet}){{3}}");
    let ls32 = format!("(?:{h16}:{h16}|{ipv4})");
    // RFC 3986 §3.2.2's nine forms of IPv6address; `before(n)`: the up to n groups a `::` may
    // follow in that form.
    let before = |most: usize| match most {
        0 => String::new(),
        n => format!("(?:(?:{h16}:){{0,{}}}{h16})?", n - 1),
    };
    let ipv6 = [
        format!("(?:{h16}:){{6}}{ls32}"),
        format!("::(?:{h16}:){{5}}{ls32}"),
        format!("{}::(?:{h16}:){{4}}{ls32}", before(1)),
        format!("{}::(?:{h16}:){{3}}{ls32}", before(2)),
        format!("{}::(?:{h16}:){{2}}{ls32}", before(3)),
        format!("{}::{h16}:{ls32}", before(4)),
        format!("{}::{ls32}", before(5)),
        format!("{}::{h16}", before(6)),
        format!("{}::", before(7)),
    ]
    .join("|");
    let ip_literal = format!(r"\[(?:{ipv6}|[Vv][0-9A-Fa-f]+\.[{unreserved_sub}:]+)\]");
    let userinfo = format!("(?:[{unreserved_sub}:]|{pct})*");
    let reg_name = format!("(?:[{unreserved_sub}]|{pct})*");
    let authority = format!("(?:{userinfo}@)?(?:{ip_literal}|{reg_name})(?::[0-9]*)?");
    let hier_part =
        format!("(?://{authority}(?:/{segment})*|/(?:{segment_nz}(?:/{segment})*)?|{segment_nz}(?:/{segment})*|)");
    let query = format!(r"(?:\?(?:{pchar}|[/?])*)?");
    let registry_root = "(?![Jj][Ss][Oo][Nn]-[Ss][Cc][Hh][Ee][Mm][Aa]:)";
    // An empty fragment is as good as none: `#` alone names the whole document still.
    format!("^{registry_root}[A-Za-z][A-Za-z0-9+.\\-]*:{hier_part}{query}#?$")
}

/// A version's `uri`, as both schema bodies take it.
fn version_uri() -> Value {
    json!({
        "type": ["string", "null"],
        "minLength": 1,
        "maxLength": gateway_core::SchemaUri::MAX_LEN,
        "pattern": absolute_uri_pattern(),
        "example": "https://example.com/schemas/person/v1.json",
        "description": "The URI the version is known by: an absolute URI (with a scheme, such as `https:` or `urn:`) without a fragment, unique across the registry (409 when another version has it). It need not be reachable: nothing is ever fetched. When absent, the `$id` the JSON Schema declares (absolute too), else `/schemas/{name}/versions/{version}`; given with an `$id`, both must be the same URI.",
    })
}

/// A version's document, as both schema bodies take it.
fn schema_document() -> Value {
    let max = gateway_core::schemas::MAX_SCHEMA_BYTES;
    json!({
        "type": ["object", "boolean", "array", "string"],
        "description": format!("The version's document, in the schema's format, at most {max} bytes of JSON. `json-schema`: a JSON Schema (draft 2020-12 unless `$schema` names another), an object or a boolean; it must compile, and each `$ref` outside it must name a registered version's URI (it is resolved from the registry, never fetched). `avro`: an Avro schema (a type name, a union's array, or an object) that parses, defining every named type it uses. Else 422 at /schema with the compiler's or parser's message. Never changed once written."),
    })
}

/// The request bodies of the registry: a new schema, a new version, a schema's changes.
fn registry_schemas() -> [(&'static str, Value); 3] {
    let description = json!({ "type": ["string", "null"], "maxLength": 1024 });
    let compatibility = json!({
        "anyOf": [schema_ref("Compatibility"), { "type": "null" }],
        "description": "Which payloads each next version must keep accepting, checked against the latest version when one is added: `BACKWARD` (when absent: every payload valid under the latest is valid under the new one), `FORWARD` (the reverse), `FULL` (both), `NONE` (no check).",
    });
    [
        (
            "NewSchema",
            json!({
                "type": "object",
                "description": "A schema to register, with its version 1.",
                "required": ["name", "format", "schema"],
                "properties": {
                    "name": schema_ref("SchemaName"),
                    "format": schema_ref("SchemaFormat"),
                    "schema": schema_document(),
                    "uri": version_uri(),
                    "compatibility": compatibility,
                    "description": description,
                },
                "additionalProperties": false,
                // A JSON Schema is an object or a boolean; an Avro schema a name, a union or an
                // object (the rest of its grammar is the parser's).
                "anyOf": [
                    { "properties": { "format": { "const": "json-schema" }, "schema": { "type": ["object", "boolean"] } } },
                    { "properties": { "format": { "const": "avro" }, "schema": { "type": ["object", "array", "string"] } } },
                ],
                "example": {
                    "name": "person",
                    "format": "json-schema",
                    "schema": { "type": "object", "required": ["name"], "properties": { "name": { "type": "string" } } },
                    "uri": "https://example.com/schemas/person/v1.json",
                },
            }),
        ),
        (
            "NewSchemaVersion",
            json!({
                "type": "object",
                "description": "The schema's next version, in its format.",
                "required": ["schema"],
                "properties": { "schema": schema_document(), "uri": version_uri() },
                "additionalProperties": false,
            }),
        ),
        (
            "SchemaReplacement",
            json!({
                "type": "object",
                "description": "The description and compatibility mode replacing a schema's; the versions stay.",
                "properties": { "compatibility": compatibility, "description": description },
                "additionalProperties": false,
            }),
        ),
    ]
}

/// An EventBridge event pattern's grammar, as far as JSON Schema can state it. What it cannot
/// state (a numeric range's bounds in order, a wildcard's escapes, a CIDR's address and prefix
/// length, an operand a double cannot hold exactly, a field named both outside and inside `$or`,
/// operator names as fields inside `$or`, 32 levels, 4096 characters, 1000 combinations of
/// `$or`s) the description says, and the server answers 422 with the pointer.
fn event_pattern_schemas() -> [(&'static str, Value); 4] {
    let strings = json!({"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "string"}}]});
    let non_empty = json!({"anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}
    ]});
    let affix = json!({"anyOf": [
        {"type": "string"},
        {"type": "object", "required": ["equals-ignore-case"], "additionalProperties": false,
         "properties": {"equals-ignore-case": {"type": "string"}}}
    ]});
    let operator = |name: &str, operand: Value| json!({"type": "object", "required": [name], "additionalProperties": false, "properties": {name: operand}});
    let numeric = json!({"oneOf": [
        {"type": "array", "minItems": 2, "maxItems": 2,
         "prefixItems": [{"enum": ["=", ">", ">=", "<", "<="]}, {"type": "number"}]},
        {"type": "array", "minItems": 4, "maxItems": 4,
         "prefixItems": [{"enum": [">", ">="]}, {"type": "number"}, {"enum": ["<", "<="]}, {"type": "number"}]}
    ]});
    let anything_but = json!({"anyOf": [
        {"type": "string"},
        {"type": "number"},
        {"type": "array", "minItems": 1, "items": {"type": "string"}},
        {"type": "array", "minItems": 1, "items": {"type": "number"}},
        {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": false,
         "properties": {"prefix": non_empty, "suffix": non_empty, "equals-ignore-case": strings, "wildcard": strings}}
    ]});
    [
        (
            "EventPatternDocument",
            json!({
                "type": "object",
                "minProperties": 1,
                "example": {"eventSource": ["aws:s3"], "s3": {"bucket": {"name": ["uploads-prod"]}, "object": {"key": [{"prefix": "incoming/"}]}}},
                "description": "An EventBridge event pattern: fields are ANDed, the values listed for a field ORed, `$or` ORs whole sub-patterns. Beyond this schema: a numeric range's lower bound must be below its upper, a wildcard may not hold `**` and escapes only `*` and `\\`, a cidr must be an IPv4 or IPv6 network (not /32 or /128), a field named outside a `$or` may not be named inside it and operator names cannot name fields there, at most 32 levels, 4096 characters of JSON and 1000 combinations of `$or`s. An invalid pattern is 422 with every problem's pointer under the field holding it (a source's /pattern, a subscription's /filter).",
                "properties": {"$or": {"type": "array", "minItems": 2, "items": schema_ref("EventPatternDocument")}},
                "additionalProperties": {"anyOf": [schema_ref("EventPatternLeaf"), schema_ref("EventPatternDocument")]},
            }),
        ),
        (
            "EventPatternLeaf",
            json!({
                "type": "array",
                "minItems": 1,
                "description": "The values a field may have (any of them): exact values, or operators.",
                "items": {"anyOf": [{"type": ["string", "number", "boolean", "null"]}, schema_ref("EventPatternOperator")]},
            }),
        ),
        (
            "EventPatternOperator",
            json!({"oneOf": [
                operator("prefix", affix.clone()),
                operator("suffix", affix),
                operator("equals-ignore-case", json!({"type": "string"})),
                operator("wildcard", json!({"type": "string"})),
                operator("exists", json!({"type": "boolean"})),
                operator("cidr", json!({"type": "string"})),
                operator("numeric", numeric),
                operator("anything-but", anything_but),
            ]}),
        ),
        ("NativeEventDocument", native_event_document()),
    ]
}

/// What `gateway_aws_events::read` reads: `Records` whose first record names a service it
/// knows, or an EventBridge event.
fn native_event_document() -> Value {
    let kinds = json!(["aws:s3", "aws:sns", "aws:sqs", "aws:dynamodb", "aws:kinesis"]);
    json!({
        "description": "A native AWS event document, as Lambda hands it a function: `Records` (S3, SNS, SQS, DynamoDB Streams, Kinesis), told by its first record's `eventSource` (SNS: `EventSource`), or an EventBridge event (`source`, `detail-type`). Each record is matched against every source's pattern as it is; a record that does not read as its kind is rejected with why.",
        "anyOf": [
            {
                "type": "object",
                "required": ["Records"],
                "properties": {"Records": {
                    "type": "array",
                    "minItems": 1,
                    "prefixItems": [{
                        "type": "object",
                        "anyOf": [
                            {"required": ["eventSource"], "properties": {"eventSource": {"enum": kinds}}},
                            {"not": {"required": ["eventSource"]}, "required": ["EventSource"], "properties": {"EventSource": {"enum": kinds}}},
                        ],
                    }],
                }},
            },
            {
                "type": "object",
                "not": {"required": ["Records"]},
                "required": ["source", "detail-type"],
                "properties": {"source": {"type": "string"}, "detail-type": {"type": "string"}},
            },
        ],
    })
}

fn source_body(name: Value, event: Value, required: &[&str], description: &str) -> Value {
    json!({
        "type": "object",
        "description": description,
        "required": required,
        "properties": {
            "name": name,
            "event": event,
            "pattern": {
                "$ref": "#/components/schemas/EventPatternDocument",
                "description": "Matched against each native record as AWS delivers it (each element of `Records`, or the whole EventBridge event).",
            },
            "description": { "type": ["string", "null"], "maxLength": 1024 },
            "metadata": {
                "type": ["object", "null"],
                "description": "Custom JSON, kept and handed to no one; `{}` when absent.",
            },
        },
        "additionalProperties": false,
    })
}

fn written_schemas() -> [(&'static str, Value); 6] {
    [
        (
            "NewSource",
            source_body(
                schema_ref("SourceName"),
                schema_ref("EventName"),
                &["name", "event", "pattern"],
                "A new source: native records its pattern matches trigger its event.",
            ),
        ),
        (
            "SourceReplacement",
            source_body(
                json!({
                    "$ref": "#/components/schemas/SourceName",
                    "readOnly": true,
                    "description": "The path's name: it may be repeated, not changed (422).",
                }),
                json!({
                    "$ref": "#/components/schemas/EventName",
                    "readOnly": true,
                    "description": "The source's event: it may be repeated, not changed (422).",
                }),
                &["pattern"],
                "The pattern, description and metadata replacing a source's.",
            ),
        ),
        ("NewEvent", event_body(schema_ref("EventName"), &["name"], "A new event definition.")),
        (
            "EventReplacement",
            // `readOnly`: the name is the path's; it may be repeated, but another is refused (422).
            event_body(
                json!({
                    "$ref": "#/components/schemas/EventName",
                    "readOnly": true,
                    "description": "The path's name: it may be repeated, not changed (422).",
                }),
                &[],
                "An event definition replacing the current one.",
            ),
        ),
        (
            "NewSubscription",
            subscription_body(
                schema_ref("EventName"),
                &["event", "functionId"],
                "A function to subscribe to an event.",
            ),
        ),
        (
            "SubscriptionReplacement",
            // `readOnly`: a subscription cannot move to another event; repeating its own is fine.
            subscription_body(
                json!({
                    "$ref": "#/components/schemas/EventName",
                    "readOnly": true,
                    "description": "The subscription's event: it may be repeated, not changed (422).",
                }),
                &["functionId"],
                "The function, metadata, filter and delivery policy replacing a subscription's.",
            ),
        ),
    ]
}

/// Adds what no single handler states: the bodies above, the optional bearer scheme, and the
/// 401 and 503 that every operation but `/health` (and, for 503, `/openapi.json`) can answer.
pub fn complete(doc: &mut Value) {
    let components = &mut doc["components"];
    for (name, schema) in
        written_schemas().into_iter().chain(event_pattern_schemas()).chain(registry_schemas()).chain(redrive_schemas())
    {
        components["schemas"][name] = schema;
    }
    components["schemas"]["CloudEvent"] = cloud_event_schema();
    delivery_log_schemas(components);
    components["securitySchemes"][BEARER] = json!({
        "type": "http",
        "scheme": "bearer",
        "description": "Only on the local gateway, and only when it runs with GATEWAY_API_TOKEN: then every request but GET /health must carry `Authorization: Bearer <token>` (else 401), and the gateway may listen beyond loopback. On AWS, API Gateway authorizes requests with IAM (SigV4) before they reach the gateway, and this scheme does not apply.",
    });
    optional_body(doc, "/deliveries/{eventId}/redrive", "post", "TriggerRedrive");
    let ce = &mut doc["paths"]["/cloudevents"]["post"]["requestBody"]["content"];
    if ce.is_object() {
        ce["application/cloudevents+json"]["schema"] = schema_ref("CloudEvent");
        ce["application/cloudevents-batch+json"]["schema"] =
            json!({"type": "array", "maxItems": crate::cloudevents::MAX_BATCH, "items": schema_ref("CloudEvent")});
    }
    // Optional: `{}` (no credentials) is one of the alternatives, as on AWS and by default.
    doc["security"] = json!([{}, { BEARER: [] }]);

    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, operation) in item.iter_mut() {
            if !is_method(method) {
                continue;
            }
            spell_links_in_camel_case(operation);
            if path == "/health" {
                // A liveness probe answers without credentials, whatever the configuration.
                operation["security"] = json!([]);
                continue;
            }
            add_response(operation, "401", unauthorized());
            if path != "/openapi.json" {
                add_response(operation, "503", unavailable());
            }
        }
    }
}

/// utoipa 5 writes a link's `operationId` and `requestBody` in snake case, which no client reads.
fn spell_links_in_camel_case(operation: &mut Value) {
    let Some(responses) = operation["responses"].as_object_mut() else { return };
    for response in responses.values_mut() {
        let Some(links) = response.get_mut("links").and_then(Value::as_object_mut) else { continue };
        for link in links.values_mut().filter_map(Value::as_object_mut) {
            for (snake, camel) in
                [("operation_id", "operationId"), ("operation_ref", "operationRef"), ("request_body", "requestBody")]
            {
                if let Some(value) = link.remove(snake) {
                    link.insert(camel.to_owned(), value);
                }
            }
        }
    }
}

fn is_method(key: &str) -> bool {
    matches!(key, "get" | "put" | "post" | "delete" | "options" | "head" | "patch" | "trace")
}

fn add_response(operation: &mut Value, status: &str, response: Value) {
    if let Some(responses) = operation["responses"].as_object_mut() {
        responses.entry(status).or_insert(response);
    }
}

fn problem_content() -> Value {
    json!({ "application/problem+json": { "schema": schema_ref("Problem") } })
}

fn unauthorized() -> Value {
    json!({
        "description": "No bearer token, or not this gateway's (only when the local gateway runs with GATEWAY_API_TOKEN)",
        "headers": {
            "WWW-Authenticate": {
                "description": "The bearer challenge (RFC 6750): `Bearer realm=\"event-gateway\"`, with `error=\"invalid_token\"` for a wrong token",
                "required": true,
                "schema": { "type": "string", "pattern": "^Bearer realm=\"event-gateway\"" },
            },
        },
        "content": problem_content(),
    })
}

fn unavailable() -> Value {
    json!({
        "description": "The gateway cannot reach its store right now, or (`/problems/trigger-not-accepted`, triggers only) did not accept the trigger: nothing of it runs unless the detail says the outcome is unknown; try again, with the same `Idempotency-Key`",
        "content": problem_content(),
    })
}

/// The document against the parsers it describes: every value either both accept or both refuse.
#[cfg(test)]
mod tests {
    use axum::http::{header, HeaderMap, HeaderValue};
    use gateway_core::{
        DataType, EventId, EventName, FunctionId, IdempotencyKey, PageRequest, SchemaName, SchemaUri, SubscriptionId,
    };
    use serde_json::{json, Value};

    fn document() -> Value {
        crate::openapi()
    }

    fn component(name: &str) -> Value {
        document()["components"]["schemas"][name].clone()
    }

    fn parameter(path: &str, method: &str, name: &str) -> Value {
        let doc = document();
        let parameters = doc["paths"][path][method]["parameters"].as_array().expect("parameters").clone();
        let found = parameters.into_iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name} in {path}"));
        found["schema"].clone()
    }

    #[track_caller]
    fn agree(schema: &Value, samples: impl IntoIterator<Item = String>, parses: impl Fn(&str) -> bool) {
        let validator = jsonschema::validator_for(schema).expect("the documented schema compiles");
        let mut checked = 0;
        for sample in samples {
            let documented = validator.is_valid(&json!(sample));
            assert_eq!(documented, parses(&sample), "{sample:?}: the document says {documented}, the parser disagrees");
            checked += 1;
        }
        assert!(checked > 0);
    }

    /// Every string of up to `max_len` characters drawn from `alphabet`.
    fn strings(alphabet: &[char], max_len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max_len {
            last = last.iter().flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}"))).collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    fn with(samples: Vec<String>, more: &[&str]) -> Vec<String> {
        samples.into_iter().chain(more.iter().map(|s| s.to_string())).collect()
    }

    /// Around the rules every user-chosen name follows (`user_name!`): its characters, its first
    /// one, 128 at most.
    fn name_samples(example: &str) -> Vec<String> {
        with(
            strings(&['a', 'Z', '0', '.', '_', '-', '/', ' ', 'é'], 3),
            &[example, &"x".repeat(128), &"x".repeat(129), "a\n"],
        )
    }

    #[test]
    fn the_event_name_pattern_is_event_name_parse() {
        agree(&component("EventName"), name_samples("orders.created"), |s| EventName::parse(s).is_ok());
    }

    #[test]
    fn the_id_patterns_are_the_id_parsers() {
        let ulid = "01JDQ3V6J9K2M4N5P6Q7R8S9T0";
        let samples = |prefix: &str| -> Vec<String> {
            let mut all: Vec<String> = [
                ulid.to_owned(),
                ulid.to_lowercase(),
                ulid[..25].to_owned(),
                format!("{ulid}0"),
                ulid.replace('J', "I"),
                ulid.replace('J', "L"),
                ulid.replace('J', "O"),
                ulid.replace('J', "U"),
                "7ZZZZZZZZZZZZZZZZZZZZZZZZZ".to_owned(),
                "8ZZZZZZZZZZZZZZZZZZZZZZZZZ".to_owned(),
            ]
            .iter()
            .flat_map(|rest| {
                [format!("{prefix}{rest}"), format!("xyz_{rest}"), rest.clone(), format!("{prefix}{rest}\n")]
            })
            .collect();
            all.extend(["".to_owned(), prefix.to_owned(), "0".to_owned()]);
            all
        };
        agree(&component("SubscriptionId"), samples("sub_"), |s| SubscriptionId::parse(s).is_ok());
        agree(&component("EventId"), samples("evt_"), |s| EventId::parse(s).is_ok());
    }

    #[test]
    fn the_function_id_pattern_is_function_id_parse() {
        let arn = "arn:aws:lambda:eu-west-1:123456789012:function:my-fn";
        let samples = with(
            strings(&['a', 'r', 'n', ':', '$', '_', '-', '.'], 4),
            &[
                "example-subscriber",
                "my_fn:$LATEST",
                "my_fn:$LATESTX",
                "my_fn:42",
                "arn:prod",
                "ARN:prod",
                "arn",
                arn,
                &format!("{arn}:live"),
                &format!("{arn}:$LATEST"),
                &format!("{arn}:live:extra"),
                "arn:aws-cn:lambda:cn-north-1:123456789012:function:f",
                "arn:awsé:lambda:r:123456789012:function:f",
                "arn:aw:lambda:r:123456789012:function:f",
                "arn:aws:lambda::123456789012:function:f",
                "arn:aws:lambda:r_1:123456789012:function:f",
                "arn:aws:lambda:r:12345678901:function:f",
                "arn:aws:lambda:r:123456789012:layer:f",
                "arn:aws:lambda:r:123456789012:function:",
                "123456789012:function:f",
                "123456789012:function:f:live",
                "123456789012:function",
                "123456789012",
                "999999999999:example-evil",
                "12345678901:f",
                "us-west-2:example-fn",
                "us-west-2",
                "us-gov-west-1:f",
                "eu-west:f",
                "u-west-2:f",
                "function:f",
                "function",
                "functions:f",
                &"f".repeat(64),
                &"f".repeat(65),
                &format!("f:{}", "q".repeat(128)),
                &format!("f:{}", "q".repeat(129)),
                "f\n",
            ],
        );
        agree(&component("FunctionId"), samples, |s| FunctionId::parse(s).is_ok());
    }

    #[test]
    fn the_data_type_pattern_is_data_type_parse_for_ascii() {
        // Over ASCII: the parser also takes other bytes inside a quoted parameter value, which
        // the document leaves out (the parameter is dropped anyway).
        let samples = with(
            strings(&['a', '/', ';', '=', '"', ' ', '+'], 6),
            &[
                "application/json",
                "APPLICATION/JSON",
                "application/json; charset=utf-8",
                "application/cloudevents+json",
                "text/csv;header=present",
                "a/b; c=\"d e\"",
                "a/b;c=\"\"\"",
                "a/b;c=\"x\" ;d=e",
                "a/b;c=d;",
                "a/b;c=",
                "a/b;c=;d=e",
                "*/*",
                "a/b\n",
                "a/b,c/d",
            ],
        );
        agree(&component("DataType"), samples, |s| DataType::parse(s).is_ok());
        let long = format!("a/{}", "b".repeat(253));
        assert!(DataType::parse(&long).is_ok() && DataType::parse(&format!("{long}b")).is_err(), "255 at most");
    }

    #[test]
    fn the_if_match_pattern_is_if_match() {
        // Over HTTP a header value has no leading or trailing whitespace, so none is sampled.
        let samples = with(
            strings(&['W', '/', '"', '1', '*', '+', ','], 5).into_iter().filter(|s| s.trim() == s).collect(),
            &["\"1234567890123456789\"", "\"12345678901234567890\"", "W/\"3\"", "\"1\", \"2\""],
        );
        agree(&parameter("/events/{name}", "put", "If-Match"), samples, |s| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_MATCH, HeaderValue::from_str(s).unwrap());
            crate::extract::if_match(&headers).is_ok()
        });
    }

    #[test]
    fn the_idempotency_key_pattern_is_idempotency_key_parse() {
        let samples = with(
            strings(&['a', ' ', '~', '\u{7f}', 'é'], 2),
            &[&"k".repeat(255), &"k".repeat(256), "order-42/retry:1", "src:uploads:ab12", "src", "Src:a", "xsrc:a"],
        );
        agree(&parameter("/events/{name}/trigger", "post", "Idempotency-Key"), samples, |s| {
            IdempotencyKey::parse(s).is_ok()
        });
    }

    #[test]
    fn the_limit_range_is_page_request() {
        let validator = jsonschema::validator_for(&parameter("/events", "get", "limit")).unwrap();
        for limit in [0u32, 1, 50, 100, 101, u32::MAX] {
            assert_eq!(validator.is_valid(&json!(limit)), PageRequest::new(Some(limit), None).is_ok(), "{limit}");
        }
    }

    #[test]
    fn the_schema_name_pattern_is_schema_name_parse() {
        agree(&component("SchemaName"), name_samples("person"), |s| SchemaName::parse(s).is_ok());
        for path in ["/schemas/{name}", "/schemas/{name}/versions/{version}"] {
            assert_eq!(parameter(path, "get", "name"), json!({"$ref": "#/components/schemas/SchemaName"}), "{path}");
        }
        assert_eq!(parameter("/schemas/{name}/versions", "post", "name")["$ref"], "#/components/schemas/SchemaName");
    }

    #[test]
    fn the_version_number_range_is_version_number() {
        let validator = jsonschema::validator_for(&parameter("/schemas/{name}/versions/{version}", "get", "version"))
            .expect("the documented schema compiles");
        let max = i64::from(u32::MAX);
        for number in [i64::MIN, -1, 0, 1, 2, 999, 1000, 1001, max - 1, max, max + 1, i64::MAX] {
            let parses = crate::extract::version_number(&number.to_string()).is_ok();
            assert_eq!(validator.is_valid(&json!(number)), parses, "{number}");
        }
        // A documented integer is written one way in a path; no other spelling names a version.
        for raw in ["", "01", "001", "+1", "-0", "1.0", "1e3", " 1", "1 ", "0x1", "\u{661}", "1/2"] {
            assert!(crate::extract::version_number(raw).is_err(), "{raw:?}");
        }
    }

    /// What `schemas::register_schema` takes as a version's `uri`: `SchemaUri::parse`, and
    /// absolute (the `$id` agreeing is the use case's, across two fields).
    fn takes_as_version_uri(raw: &str) -> bool {
        SchemaUri::parse(raw).is_ok_and(|uri| uri.is_absolute())
    }

    #[test]
    fn the_version_uri_pattern_is_schema_uri_parse_for_absolute_uris() {
        let uri = component("NewSchema")["properties"]["uri"].clone();
        assert_eq!(uri, component("NewSchemaVersion")["properties"]["uri"], "both bodies take the same uri");
        let any = strings(&['a', ':', '/', '#', '%', '1', '[', ']', '@', '?', 'F', '.'], 4);
        let odd = strings(&['%', 'G', '0', ' ', 'é', '[', 'v', '.', ':', '\\', '^', '|', '"', '<', '~'], 3);
        let mut samples: Vec<String> = Vec::new();
        for (prefix, of) in [
            ("", &any),
            ("a:", &any),
            ("json-schema:", &any),
            ("https://", &any),
            ("https://[::1]", &any),
            ("https://h/", &odd),
            ("https://", &odd),
            ("urn:", &odd),
        ] {
            samples.extend(of.iter().map(|s| format!("{prefix}{s}")));
        }
        samples.extend(odd.iter().map(|s| format!("a{s}:b")));
        for ip in [
            "::",
            "::1",
            "1::",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "1:2:3:4:5:6:7:8:9",
            "::ffff:1.2.3.4",
            "::ffff:1.2.3.256",
            "1::2::3",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5:6:7:1.2.3.4",
            "12345::",
            "v1.x",
            "v.x",
            "vg.x",
            "fe80::1%25eth0",
        ] {
            samples.push(format!("https://[{ip}]/x"));
            samples.push(format!("https://[{ip}]:80/x"));
        }
        let long = |n: usize| format!("urn:{}", "x".repeat(n - 4));
        samples.extend([long(1024), long(1025), "https://u:p@h:1/p?q#".into(), "https://h/p?q#f".into()]);
        samples.extend(["//host/x".into(), "//".into(), "json-schema://:/x".into(), "JSON-SCHEMA:a".into()]);
        agree(&uri, samples, takes_as_version_uri);
    }
}
