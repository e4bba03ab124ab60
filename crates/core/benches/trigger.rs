//! The trigger use case with in-memory ports, beside a baseline of plain `serde_json` parsing
//! plus `jsonschema` validation of the same payload. Issue 2 sets the target: the trigger at one
//! subscription costs at most 2x the baseline. Results are written up in docs/PERFORMANCE.md.
//!
//! Run with `cargo bench -p gateway-core --bench trigger`.
//!
//! What is measured, per iteration:
//! - `baseline/parse+iter_errors`: `serde_json::from_slice::<Value>` of the 1 KiB payload, then
//!   `iter_errors` on a validator compiled once (the core collects violations the same way, in
//!   `schema::violations`). This is the floor: any gateway has to parse and validate.
//! - `trigger/subscriptions/N`: `trigger::trigger` end to end for an event with N subscriptions:
//!   copy of the body into an owned `Vec` (the HTTP adapter does the same `to_vec`), read of the
//!   definition and subscriptions from a `MemoryStore`, media-type check, parse, validation with
//!   the cached validator, one ULID and one clock read, one `Delivery` per subscription, the
//!   acceptor, the receipt. It runs inside `Runtime::block_on` of a current-thread tokio runtime,
//!   so block_on's own cost is part of this figure; `overhead/block_on_noop` shows how much.
//! - `baseline/parse+is_valid`: for reference only, the cheaper boolean validation, which the core
//!   cannot use because a refused payload must list every violation.
//! - `resource/json-schema` and `resource/avro`: a resource lifecycle event at one subscription,
//!   the same order as `resource.content` of an `update` envelope (1 KiB of content): the
//!   envelope's own check, the event's own schema (none here), the lookup of the registered
//!   version `resource.schema` names (a `MemoryStore` read; on AWS it is one DynamoDB GetItem,
//!   not measured here), and the content against that version's cached validator.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::{json, Value};

use gateway_core::error::Result;
use gateway_core::ids::IdempotencyKey;
use gateway_core::memory::MemoryStore;
use gateway_core::ports::{Acceptance, EventStore, SubscriptionStore, SystemClock, TriggerAcceptor, UlidSource};
use gateway_core::schema::{self, SchemaCache};
use gateway_core::trigger::{self, TriggerPorts, TriggerRequest};
use gateway_core::{
    schemas, DataType, Envelope, EventDefinition, EventName, FunctionId, Metadata, SchemaDraft, SchemaFormat,
    SchemaName, Subscription, SubscriptionId, Trigger, Version,
};

const PAYLOAD_BYTES: usize = 1024;
const SUBSCRIPTION_COUNTS: [usize; 3] = [1, 10, 100];

/// Ten top-level properties: types, a required list, minimum/maximum, maxLength, enum, pattern,
/// arrays of objects and a nested object.
fn order_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["orderId", "customer", "items", "total", "currency", "status"],
        "properties": {
            "orderId": {"type": "string", "pattern": "^ord_[0-9a-z]{8,32}$"},
            "customer": {
                "type": "object",
                "required": ["id", "email"],
                "properties": {
                    "id": {"type": "string", "maxLength": 64},
                    "email": {"type": "string", "maxLength": 254, "pattern": "^[^@\\s]+@[^@\\s]+$"},
                    "tier": {"enum": ["standard", "gold", "platinum"]}
                },
                "additionalProperties": false
            },
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": 50,
                "items": {
                    "type": "object",
                    "required": ["sku", "quantity", "unitPrice"],
                    "properties": {
                        "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
                        "quantity": {"type": "integer", "minimum": 1},
                        "unitPrice": {"type": "number", "minimum": 0}
                    }
                }
            },
            "total": {"type": "number", "minimum": 0},
            "currency": {"enum": ["EUR", "USD", "GBP"]},
            "status": {"type": "string", "enum": ["created", "paid", "shipped"]},
            "priority": {"type": "integer", "minimum": 0, "maximum": 10},
            "gift": {"type": "boolean"},
            "tags": {"type": "array", "maxItems": 10, "items": {"type": "string", "maxLength": 32}},
            "note": {"type": "string", "maxLength": 1000}
        }
    })
}

/// A payload valid against `order_schema`, padded (in `note`) to exactly `PAYLOAD_BYTES`.
fn order_payload() -> Vec<u8> {
    let build = |note: &str| {
        serde_json::to_vec(&json!({
            "orderId": "ord_01jdq3v6j9k2m4n5",
            "customer": {"id": "cus_4821", "email": "ada@example.com", "tier": "gold"},
            "items": [
                {"sku": "ABC-1234", "quantity": 2, "unitPrice": 19.99},
                {"sku": "DEF-5678", "quantity": 1, "unitPrice": 149.0},
                {"sku": "GHI-9012", "quantity": 5, "unitPrice": 3.5},
                {"sku": "JKL-3456", "quantity": 1, "unitPrice": 42.0},
                {"sku": "MNO-7890", "quantity": 3, "unitPrice": 7.25}
            ],
            "total": 268.23,
            "currency": "EUR",
            "status": "paid",
            "priority": 3,
            "gift": false,
            "tags": ["web", "eu", "returning-customer", "promo-autumn"],
            "note": note
        }))
        .expect("the payload serializes")
    };
    let bare = build("").len();
    assert!(bare < PAYLOAD_BYTES, "the unpadded payload is {bare} bytes");
    let note: String =
        "Leave the parcel with the neighbour at number 12. ".chars().cycle().take(PAYLOAD_BYTES - bare).collect();
    let payload = build(&note);
    assert_eq!(payload.len(), PAYLOAD_BYTES);
    payload
}

/// An acceptor that only counts. The core's `MemoryStore` keeps every accepted trigger, so over
/// the millions of iterations criterion runs it would grow without bound and the figure would
/// drift with the map's size; counting keeps memory flat, so this measures the use case, not a
/// store.
#[derive(Default)]
struct CountingAcceptor {
    triggers: AtomicU64,
    deliveries: AtomicU64,
}

#[async_trait]
impl TriggerAcceptor for CountingAcceptor {
    async fn accept(&self, trigger: &Trigger, _idempotency_key: Option<&IdempotencyKey>) -> Result<Acceptance> {
        self.triggers.fetch_add(1, Ordering::Relaxed);
        self.deliveries.fetch_add(trigger.deliveries.len() as u64, Ordering::Relaxed);
        Ok(Acceptance::Accepted)
    }
}

/// The order as an Avro record: the same fields and types (Avro has no patterns or bounds).
fn order_avro() -> Value {
    json!({
        "type": "record", "name": "Order", "namespace": "com.example.orders",
        "fields": [
            {"name": "orderId", "type": "string"},
            {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [
                {"name": "id", "type": "string"},
                {"name": "email", "type": "string"},
                {"name": "tier", "type": ["null", {"type": "enum", "name": "Tier", "symbols": ["standard", "gold", "platinum"]}], "default": null}
            ]}},
            {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item", "fields": [
                {"name": "sku", "type": "string"},
                {"name": "quantity", "type": "int"},
                {"name": "unitPrice", "type": "double"}
            ]}}},
            {"name": "total", "type": "double"},
            {"name": "currency", "type": {"type": "enum", "name": "Currency", "symbols": ["EUR", "USD", "GBP"]}},
            {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["created", "paid", "shipped"]}},
            {"name": "priority", "type": ["null", "int"], "default": null},
            {"name": "gift", "type": ["null", "boolean"], "default": null},
            {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
            {"name": "note", "type": ["null", "string"], "default": null}
        ]
    })
}

/// An `update` envelope carrying the order as content, for the version at `uri`.
fn resource_payload(uri: &str) -> Vec<u8> {
    let order: Value = serde_json::from_slice(&order_payload()).expect("the order is JSON");
    serde_json::to_vec(&json!({"action": "update", "resource": {"schema": uri, "content": order}}))
        .expect("the envelope serializes")
}

/// A `MemoryStore` holding one event with `subscriptions` subscriptions: the trigger's source.
fn source_with(rt: &tokio::runtime::Runtime, name: &EventName, subscriptions: usize) -> MemoryStore {
    source_of(rt, name, subscriptions, Some(order_schema()), None)
}

fn source_of(
    rt: &tokio::runtime::Runtime,
    name: &EventName,
    subscriptions: usize,
    schema: Option<Value>,
    envelope: Option<Envelope>,
) -> MemoryStore {
    let store = MemoryStore::new();
    let now = Utc::now();
    let definition = EventDefinition {
        name: name.clone(),
        description: Some("An order was created".to_owned()),
        schema: schema.map(Arc::new),
        data_type: DataType::json(),
        envelope,
        schema_references: Vec::new(),
        metadata: Metadata::from_iter([("owner".to_owned(), json!("orders-team"))]),
        received_at: None,
        created_at: now,
        updated_at: now,
        version: Version::FIRST,
    };
    rt.block_on(async {
        store.create_event(&definition).await.expect("event created");
        for i in 0..subscriptions {
            let subscription = Subscription {
                subscription_id: SubscriptionId::from_ulid(ulid::Ulid::new()),
                event: name.clone(),
                function_id: FunctionId::parse(&format!("orders-handler-{i}")).unwrap(),
                metadata: Metadata::from_iter([
                    ("team".to_owned(), json!("fulfilment")),
                    ("priority".to_owned(), json!(i % 3)),
                ])
                .into(),
                // No filter and the default policy: what today's subscriptions are.
                filter: None,
                delivery: Default::default(),
                format: Default::default(),
                created_at: now,
                updated_at: now,
                version: Version::FIRST,
            };
            store.create_subscription(&subscription).await.expect("subscription created");
        }
    });
    store
}

fn benches(c: &mut Criterion) {
    let schema_value = order_schema();
    let payload = order_payload();

    // The happy path: the payload is valid, checked once before anything is measured.
    let validator = jsonschema::validator_for(&schema_value).expect("the schema compiles");
    let parsed: Value = serde_json::from_slice(&payload).expect("the payload is JSON");
    let violations = schema::violations(&validator, &parsed);
    assert!(violations.is_empty(), "payload must be valid: {violations:?}");

    let mut baseline = c.benchmark_group("baseline");
    baseline.bench_function("parse+iter_errors", |b| {
        b.iter(|| {
            let value: Value = serde_json::from_slice(black_box(&payload)).unwrap();
            let valid = validator.iter_errors(&value).next().is_none();
            black_box(valid)
        })
    });
    baseline.bench_function("parse+is_valid", |b| {
        b.iter(|| {
            let value: Value = serde_json::from_slice(black_box(&payload)).unwrap();
            black_box(validator.is_valid(&value))
        })
    });
    baseline.finish();

    let rt = tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime");

    let mut overhead = c.benchmark_group("overhead");
    overhead.bench_function("block_on_noop", |b| b.iter(|| rt.block_on(async { black_box(0u8) })));
    overhead.finish();

    // One cache for every iteration: the first trigger compiles, every later one reuses.
    let schemas = SchemaCache::new();
    let mut group = c.benchmark_group("trigger");
    for (events, n) in SUBSCRIPTION_COUNTS.into_iter().enumerate() {
        let name = EventName::parse(&format!("orders.created.s{n}")).unwrap();
        let source = source_with(&rt, &name, n);
        let acceptor = CountingAcceptor::default();
        let ports = || TriggerPorts {
            source: &source,
            acceptor: &acceptor,
            schemas: &schemas,
            registry: &source,
            clock: &SystemClock,
            ids: &UlidSource,
        };
        let request = || TriggerRequest {
            event: name.clone(),
            content_type: Some("application/json"),
            payload: payload.clone(),
            idempotency_key: None,
            source: None,
            cloud_event: None,
        };

        // Once before measuring: the happy path really is taken, with every subscription.
        let receipt = rt.block_on(trigger::trigger(ports(), request())).expect("the trigger is accepted");
        assert_eq!(receipt.deliveries.len(), n);
        assert_eq!(acceptor.deliveries.load(Ordering::Relaxed), n as u64);
        assert_eq!(schemas.len(), events + 1, "the trigger cached the event's validator");

        group.bench_with_input(BenchmarkId::new("subscriptions", n), &n, |b, _| {
            b.iter(|| {
                let receipt = rt.block_on(trigger::trigger(ports(), request())).expect("the trigger is accepted");
                black_box(receipt)
            })
        });
        assert!(acceptor.triggers.load(Ordering::Relaxed) > 1);
    }
    group.finish();

    // Resource events: the order registered as a JSON Schema version and as an Avro one.
    let mut group = c.benchmark_group("resource");
    for (format, document) in [(SchemaFormat::JsonSchema, order_schema()), (SchemaFormat::Avro, order_avro())] {
        let name = EventName::parse(&format!("orders.changed.{format}")).unwrap();
        let source = source_of(&rt, &name, 1, None, Some(Envelope::Resource));
        let draft = SchemaDraft {
            name: SchemaName::parse(&format!("order-{format}")).unwrap(),
            format,
            schema: document,
            uri: Some(format!("urn:bench:order:{format}")),
            compatibility: None,
            description: None,
        };
        let (_, version) =
            rt.block_on(schemas::register_schema(&source, &SystemClock, draft)).expect("the schema registers");
        let payload = resource_payload(version.uri.as_str());
        let acceptor = CountingAcceptor::default();
        let cache = SchemaCache::new();
        let ports = || TriggerPorts {
            source: &source,
            acceptor: &acceptor,
            schemas: &cache,
            registry: &source,
            clock: &SystemClock,
            ids: &UlidSource,
        };
        let request = || TriggerRequest {
            event: name.clone(),
            content_type: Some("application/json"),
            payload: payload.clone(),
            idempotency_key: None,
            source: None,
            cloud_event: None,
        };
        rt.block_on(trigger::trigger(ports(), request())).expect("the content is valid");
        assert_eq!(cache.len(), 1, "the version's validator, compiled once");
        // The check really runs: a content the version refuses is refused.
        let mut broken: Value = serde_json::from_slice(&payload).unwrap();
        broken["resource"]["content"]["total"] = json!("free");
        let refused = TriggerRequest { payload: serde_json::to_vec(&broken).unwrap(), ..request() };
        assert!(rt.block_on(trigger::trigger(ports(), refused)).is_err(), "{format}: a string total is refused");

        group.bench_function(format.as_str(), |b| {
            b.iter(|| {
                let receipt = rt.block_on(trigger::trigger(ports(), request())).expect("the trigger is accepted");
                black_box(receipt)
            })
        });
    }
    group.finish();
}

criterion_group!(trigger_benches, benches);
criterion_main!(trigger_benches);
