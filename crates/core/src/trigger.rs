//! The trigger use case: check a payload against its event and durably accept one delivery per
//! subscription, before any function runs.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::de::IgnoredAny;

use crate::cloudevent::Received;
use crate::envelope::{self, Content};
use crate::error::{Error, Result, Violation};
use crate::ids::{EventName, IdempotencyKey, SchemaUri};
use crate::model::{
    Delivery, DeliveryStatus, Envelope, EventDefinition, Origin, Subscription, Trigger, TriggerReceipt,
};
use crate::ports::{Acceptance, Clock, IdSource, SchemaLookup, TriggerAcceptor, TriggerSource, TriggerTarget};
use crate::schema::SchemaCache;

pub struct TriggerRequest<'a> {
    pub event: EventName,
    /// The request's `Content-Type`; when absent the payload is taken to be of the event's `dataType`.
    pub content_type: Option<&'a str>,
    pub payload: Vec<u8>,
    pub idempotency_key: Option<IdempotencyKey>,
    /// The native record that triggers it, if one does (`ingest`); none for an HTTP trigger.
    pub source: Option<Origin>,
    /// The CloudEvent that carries it, if one does: its `source` + `id` are the trigger's
    /// idempotency key (unless `idempotency_key` is given), and its `dataschema` must name the
    /// schema the payload is checked against.
    pub cloud_event: Option<Received>,
}

/// The ports a trigger touches, borrowed for one call.
#[derive(Clone, Copy)]
pub struct TriggerPorts<'a> {
    pub source: &'a dyn TriggerSource,
    pub acceptor: &'a dyn TriggerAcceptor,
    pub schemas: &'a SchemaCache,
    /// Where the schemas of resource envelopes, and those an event's schema `$ref`s, are found.
    pub registry: &'a dyn SchemaLookup,
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn IdSource,
}

pub async fn trigger(ports: TriggerPorts<'_>, request: TriggerRequest<'_>) -> Result<TriggerReceipt> {
    let prepared = prepare(ports, request).await?;
    accept(ports, prepared).await
}

/// A trigger checked and matched, not yet accepted.
struct Prepared {
    trigger: Trigger,
    key: Option<IdempotencyKey>,
}

/// Everything a trigger is checked for before anything of it is written: its event, the
/// CloudEvent's `dataschema`, the payload; then the subscriptions it matches.
async fn prepare(ports: TriggerPorts<'_>, request: TriggerRequest<'_>) -> Result<Prepared> {
    let Some(TriggerTarget { definition, subscriptions }) = ports.source.trigger_target(&request.event).await? else {
        return Err(Error::NotFound { what: "event", id: request.event.to_string() });
    };
    if let Some(uri) = request.cloud_event.as_ref().and_then(|ce| ce.data_schema.as_deref()) {
        check_data_schema(&definition, uri)?;
    }
    check_payload(ports.schemas, ports.registry, &definition, request.content_type, &request.payload).await?;
    let subscriptions = matching(&definition, subscriptions, &request.payload, request.source.as_ref());
    let mut trigger = accepted_trigger(&definition, &subscriptions, request.payload, ports.clock.now(), ports.ids);
    trigger.source = request.source;
    let key = request
        .idempotency_key
        .or_else(|| request.cloud_event.as_ref().map(|ce| IdempotencyKey::cloud_event(&ce.source, &ce.id)));
    trigger.cloud_event = request.cloud_event;
    Ok(Prepared { trigger, key })
}

async fn accept(ports: TriggerPorts<'_>, prepared: Prepared) -> Result<TriggerReceipt> {
    match ports.acceptor.accept(&prepared.trigger, prepared.key.as_ref()).await? {
        Acceptance::Accepted => Ok(prepared.trigger.receipt()),
        Acceptance::Replayed(first) => Ok(first),
    }
}

/// Triggers a batch (of CloudEvents), checking every member before any is accepted: if one is
/// refused, the answer lists every member's problems (`/<index>/...`: `type` naming no event,
/// `dataschema`, `datacontenttype`, `data` against the schema) and nothing is triggered. Then
/// the members are accepted in order, each as one trigger; should the store fail midway, the
/// members before are accepted and the error says how many, and sending the batch again is safe
/// (each member is idempotent by its `source` and `id`).
pub async fn trigger_batch(ports: TriggerPorts<'_>, requests: Vec<TriggerRequest<'_>>) -> Result<Vec<TriggerReceipt>> {
    let mut prepared = Vec::with_capacity(requests.len());
    let mut found: Vec<Violation> = Vec::new();
    let mut unknown = Vec::new();
    // Two members of one CloudEvent (`source` + `id`) with other data could not both be answered.
    let mut seen: Vec<(&IdempotencyKey, String, usize)> = Vec::new();
    let keys: Vec<Option<IdempotencyKey>> = requests
        .iter()
        .map(|r| {
            r.idempotency_key
                .clone()
                .or_else(|| r.cloud_event.as_ref().map(|ce| IdempotencyKey::cloud_event(&ce.source, &ce.id)))
        })
        .collect();
    for (i, (key, request)) in keys.iter().zip(&requests).enumerate() {
        let Some(key) = key else { continue };
        let digest = crate::digest::sha256_hex(&[request.payload.as_slice()]);
        match seen.iter().find(|(k, _, _)| *k == key) {
            Some((_, first, j)) if *first != digest => found.push(Violation::new(
                format!("/{i}/id"),
                format!("member {j} has the same source and id with other data: one CloudEvent, two payloads"),
            )),
            Some(_) => {}
            None => seen.push((key, digest, i)),
        }
    }
    for (i, request) in requests.into_iter().enumerate() {
        match prepare(ports, request).await {
            Ok(p) => prepared.push(p),
            Err(Error::NotFound { what: "event", id }) => unknown.push((i, id)),
            Err(error) => found.extend(member_violations(error, i)?),
        }
    }
    // Members that name no event make the batch 404, as one such CloudEvent is; with other
    // problems too, they are listed among them (422).
    if !found.is_empty() {
        found.extend(
            unknown.into_iter().map(|(i, id)| Violation::new(format!("/{i}/type"), format!("'{id}' names no event"))),
        );
        found.sort_by_key(|v| v.pointer.split('/').nth(1).and_then(|i| i.parse::<usize>().ok()));
        return Err(Error::invalid_body(found));
    }
    if !unknown.is_empty() {
        let named: Vec<String> = unknown.iter().map(|(i, id)| format!("{id} (member {i})")).collect();
        return Err(Error::NotFound { what: "event", id: named.join(", ") });
    }
    let total = prepared.len();
    let mut receipts = Vec::with_capacity(total);
    for p in prepared {
        match accept(ports, p).await {
            Ok(receipt) => receipts.push(receipt),
            Err(error) if receipts.is_empty() => return Err(error),
            // The member's own fault, which sending the batch again would not mend.
            Err(error @ (Error::IdempotencyKeyReused { .. } | Error::PayloadTooLarge(_))) => {
                let at = receipts.len();
                return Err(Error::invalid_body(vec![Violation::new(
                    format!("/{at}"),
                    format!(
                        "{error}; members 0 to {} of the batch were accepted and will run, member {at} and the {} after it were not",
                        at - 1,
                        total - at - 1
                    ),
                )]));
            }
            Err(error) => {
                return Err(Error::NotAccepted(format!(
                    "members 0 to {} of the batch were accepted and will run; member {} and the {} after it were not ({error}); send the batch again: accepted members answer with their first receipts and do not run twice",
                    receipts.len() - 1,
                    receipts.len(),
                    total - receipts.len() - 1
                )))
            }
        }
    }
    Ok(receipts)
}

/// A member's refusal as violations under `/<index>`; an error that is not the member's own (the
/// store unavailable) is the whole batch's.
fn member_violations(error: Error, index: usize) -> Result<Vec<Violation>> {
    let at = |pointer: &str, message: String| vec![Violation::new(format!("/{index}{pointer}"), message)];
    Ok(match error {
        Error::PayloadRejected { violations, .. } => {
            violations.into_iter().map(|v| v.at(&format!("/{index}/data"))).collect()
        }
        Error::MalformedPayload(why) | Error::PayloadTooLarge(why) => at("/data", why),
        e @ Error::UnsupportedMediaType { .. } => at("/datacontenttype", e.to_string()),
        Error::InvalidInput { violations, .. } => violations.into_iter().map(|v| v.at(&format!("/{index}"))).collect(),
        other => return Err(other),
    })
}

/// The subscriptions whose filter matches the trigger (all of them when none has a filter).
///
/// A filter is an EventBridge pattern over the trigger's invocation document as every subscriber
/// receives it: `event`, `dataType`, `data` (a JSON payload only: a pattern on `data` never
/// matches another `dataType`) and `source` (the native record, if one triggered it). The
/// document is built only when some subscription has a filter, so an unfiltered trigger pays
/// nothing for the feature.
pub fn matching(
    definition: &EventDefinition,
    subscriptions: Vec<Arc<Subscription>>,
    payload: &[u8],
    source: Option<&Origin>,
) -> Vec<Arc<Subscription>> {
    if subscriptions.iter().all(|s| s.filter.is_none()) {
        return subscriptions;
    }
    let mut document = serde_json::Map::new();
    document.insert("event".into(), definition.name.as_str().into());
    document.insert("dataType".into(), definition.data_type.as_str().into());
    if definition.data_type.is_json() {
        // Checked already; a payload that does not parse here cannot be, so it matches no data.
        if let Ok(data) = serde_json::from_slice::<serde_json::Value>(payload) {
            document.insert("data".into(), data);
        }
    }
    if let Some(origin) = source {
        if let Ok(origin) = serde_json::to_value(origin) {
            document.insert("source".into(), origin);
        }
    }
    let document = serde_json::Value::Object(document);
    subscriptions.into_iter().filter(|s| s.filter.as_ref().is_none_or(|f| f.matches(&document))).collect()
}

/// A CloudEvent's `dataschema` must name a schema its payload is checked against: the event
/// schema's own `$id`, or a registered schema version the event schema refers to (its URI).
pub fn check_data_schema(definition: &EventDefinition, uri: &str) -> Result<()> {
    let own = definition.schema.as_deref().and_then(|s| s.get("$id")).and_then(|id| id.as_str());
    let mut known: Vec<&str> = own.into_iter().collect();
    known.extend(definition.schema_references.iter().map(|r| r.uri.as_str()));
    if known.contains(&uri) {
        return Ok(());
    }
    let why = if known.is_empty() {
        format!(
            "event '{}' names no schema a dataschema could refer to (no $id, no registered schema); leave dataschema out",
            definition.name
        )
    } else {
        format!(
            "'{uri}' is not the schema event '{}' is validated against: one of {}",
            definition.name,
            known.join(", ")
        )
    };
    Err(Error::invalid_body(vec![Violation::new("/dataschema", why)]))
}

/// Checks media type, JSON syntax, the envelope and the schemas, in that order: the cheapest
/// refusal first.
pub async fn check_payload(
    schemas: &SchemaCache,
    registry: &dyn SchemaLookup,
    definition: &EventDefinition,
    content_type: Option<&str>,
    payload: &[u8],
) -> Result<()> {
    if let Some(content_type) = content_type {
        if !definition.data_type.matches_content_type(content_type) {
            return Err(Error::UnsupportedMediaType {
                event: definition.name.clone(),
                expected: definition.data_type.clone(),
                got: content_type.chars().take(255).collect(),
            });
        }
    }
    if !definition.data_type.is_json() {
        return Ok(());
    }
    if definition.schema.is_none() && definition.envelope.is_none() {
        return serde_json::from_slice::<IgnoredAny>(payload)
            .map(drop)
            .map_err(|e| Error::MalformedPayload(e.to_string()));
    }
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| Error::MalformedPayload(e.to_string()))?;
    let content = match definition.envelope {
        Some(Envelope::Resource) => {
            Some(envelope::read(&value).map_err(|violations| rejected(definition, violations))?)
        }
        None => None,
    };
    let mut violations = Vec::new();
    if let Some(schema) = &definition.schema {
        violations.extend(schemas.event_validator(registry, definition, schema).await?.violations(&value));
    }
    if let Some(Content::Resource { schema, content }) = content {
        violations.extend(content_violations(schemas, registry, schema, content).await?);
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(rejected(definition, violations))
    }
}

/// What is wrong with a resource's content under the registered version its envelope names.
async fn content_violations(
    schemas: &SchemaCache,
    registry: &dyn SchemaLookup,
    schema: &str,
    content: &serde_json::Value,
) -> Result<Vec<Violation>> {
    let unknown = |why: String| Ok(vec![Violation::new(envelope::SCHEMA_POINTER, why)]);
    let uri = match SchemaUri::parse(schema) {
        Ok(uri) => uri,
        Err(v) => return unknown(v.message),
    };
    let Some(version) = registry.schema_by_uri(&uri).await? else {
        return unknown(format!("'{uri}' names no registered schema version; register it first (POST /schemas)"));
    };
    let validator = schemas.version_validator(registry, &version).await?;
    Ok(validator.violations(content).into_iter().map(|v| v.at(envelope::CONTENT_POINTER)).collect())
}

fn rejected(definition: &EventDefinition, violations: Vec<Violation>) -> Error {
    Error::PayloadRejected { event: definition.name.clone(), violations }
}

pub fn accepted_trigger(
    definition: &EventDefinition,
    subscriptions: &[Arc<Subscription>],
    payload: Vec<u8>,
    received_at: DateTime<Utc>,
    ids: &dyn IdSource,
) -> Trigger {
    let event_id = ids.event_id();
    let deliveries = subscriptions
        .iter()
        .map(|s| Delivery {
            event_id,
            event: definition.name.clone(),
            subscription_id: s.subscription_id,
            function_id: s.function_id.clone(),
            metadata: s.metadata.clone(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_error: None,
            received_at,
            updated_at: received_at,
            generation: 0,
            redriven_at: None,
            policy: s.delivery,
            history: Vec::new(),
            format: s.format,
            reported: None,
        })
        .collect();
    Trigger {
        event_id,
        event: definition.name.clone(),
        received_at,
        data_type: definition.data_type.clone(),
        payload,
        source: None,
        cloud_event: None,
        deliveries,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::memory::MemoryStore;
    use crate::ports::{SystemClock, UlidSource};
    use crate::{events, EventDraft};

    async fn define(store: &MemoryStore, name: &EventName, schema: serde_json::Value) {
        let draft = EventDraft { name: Some(name.clone()), schema: Some(schema), ..Default::default() };
        events::define_event(store, store, &SystemClock, draft).await.expect("the definition is valid");
    }

    async fn trigger_with(store: &MemoryStore, schemas: &SchemaCache, name: &EventName, payload: &str) -> Result<()> {
        let ports = TriggerPorts {
            source: store,
            acceptor: store,
            schemas,
            registry: store,
            clock: &SystemClock,
            ids: &UlidSource,
        };
        let request = TriggerRequest {
            event: name.clone(),
            content_type: Some("application/json"),
            payload: payload.as_bytes().to_vec(),
            idempotency_key: None,
            source: None,
            cloud_event: None,
        };
        trigger(ports, request).await.map(drop)
    }

    #[tokio::test]
    async fn a_re_created_event_is_validated_against_its_own_schema_not_the_deleted_one() {
        // GIVEN an event whose schema requires `a`, triggered once (its validator is cached),
        // then deleted and defined again, at version 1 again, with a schema requiring `b`
        let (store, schemas) = (MemoryStore::new(), SchemaCache::new());
        let name = EventName::parse("stale.test").unwrap();
        define(&store, &name, json!({"type": "object", "required": ["a"]})).await;
        trigger_with(&store, &schemas, &name, r#"{"a": 1}"#).await.expect("valid under the first schema");
        events::delete_event(&store, &name, None, false).await.unwrap();
        define(&store, &name, json!({"type": "object", "required": ["b"]})).await;

        // WHEN payloads are triggered against the new definition
        // THEN the new schema decides, with the same cache
        trigger_with(&store, &schemas, &name, r#"{"b": 1}"#).await.expect("valid under the new schema");
        let refused = trigger_with(&store, &schemas, &name, r#"{"a": 1}"#).await.unwrap_err();
        match refused {
            Error::PayloadRejected { violations, .. } => {
                assert_eq!(violations.len(), 1, "{violations:?}");
                assert!(violations[0].message.contains("\"b\""), "{violations:?}");
            }
            other => panic!("expected the payload to be rejected, got {other:?}"),
        }
    }

    fn pointers(result: Result<()>) -> Vec<String> {
        match result {
            Err(Error::PayloadRejected { violations, .. }) => violations.into_iter().map(|v| v.pointer).collect(),
            other => panic!("expected the payload to be rejected, got {other:?}"),
        }
    }

    /// `person` (JSON Schema) and `address` (Avro) registered, and `person.changed` a resource
    /// event whose own schema admits only those two.
    async fn resource_events() -> (MemoryStore, EventName) {
        use crate::model::SchemaDraft;
        use crate::{schemas, SchemaFormat, SchemaName};
        let store = MemoryStore::new();
        let person = json!({"$id": "https://example.com/schemas/person/v1.json", "type": "object",
            "required": ["name"], "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}});
        let address = json!({"type": "record", "name": "Address",
            "fields": [{"name": "street", "type": "string"}, {"name": "zip", "type": "int"}]});
        for (name, format, schema, uri) in [
            ("person", SchemaFormat::JsonSchema, person, None),
            ("address", SchemaFormat::Avro, address, Some("urn:example:address:1".to_owned())),
        ] {
            let draft = SchemaDraft {
                name: SchemaName::parse(name).unwrap(),
                format,
                schema,
                uri,
                compatibility: None,
                description: None,
            };
            schemas::register_schema(&store, &SystemClock, draft).await.unwrap();
        }
        let name = EventName::parse("person.changed").unwrap();
        let draft = EventDraft {
            name: Some(name.clone()),
            envelope: Some(crate::Envelope::Resource),
            schema: Some(json!({"properties": {"resource": {"properties": {"schema":
                {"enum": ["https://example.com/schemas/person/v1.json", "urn:example:address:1"]}}}}})),
            ..Default::default()
        };
        events::define_event(&store, &store, &SystemClock, draft).await.unwrap();
        (store, name)
    }

    #[tokio::test]
    async fn a_resource_events_content_is_validated_against_the_registered_version_its_envelope_names() {
        let (store, name) = resource_events().await;
        let schemas = SchemaCache::new();
        let send = |payload: serde_json::Value| {
            let (store, schemas, name) = (&store, &schemas, &name);
            async move { trigger_with(store, schemas, name, &payload.to_string()).await }
        };
        let person = "https://example.com/schemas/person/v1.json";

        // A create with valid content, JSON Schema and Avro
        send(json!({"action": "create", "resource": {"schema": person, "content": {"name": "Ada", "age": 36}}}))
            .await
            .expect("valid person");
        send(json!({"action": "create", "resource": {"schema": "urn:example:address:1",
            "content": {"street": "Main St", "zip": 12345}}}))
        .await
        .expect("valid address");
        // An update with invalid content: every violation, under /resource/content
        let invalid = send(json!({"action": "update", "resource": {"schema": person, "content": {"age": -1}}})).await;
        let mut found = pointers(invalid);
        found.sort();
        assert_eq!(found, ["/resource/content", "/resource/content/age"]);
        let avro = send(json!({"action": "update", "resource": {"schema": "urn:example:address:1",
            "content": {"street": 5, "zip": "x"}}}))
        .await;
        let mut found = pointers(avro);
        found.sort();
        assert_eq!(found, ["/resource/content/street", "/resource/content/zip"]);
        // A delete carrying a ResourceReference: no registry needed
        send(json!({"action": "delete", "resource": {"schema": person,
            "content": {"tenantId": 1, "id": 42, "version": 3}}}))
        .await
        .expect("a reference");
        // An envelope naming an unregistered schema: at /resource/schema (and the event's own
        // schema, which admits two URIs, says so too)
        let unknown = send(json!({"action": "create", "resource": {"schema": "https://example.com/nobody.json",
            "content": {"name": "Ada"}}}))
        .await;
        assert_eq!(pointers(unknown), ["/resource/schema", "/resource/schema"]);
        // A broken envelope: its own violations, nothing checked further
        let broken = send(json!({"action": "rename", "resource": {"schema": person, "content": {}}})).await;
        assert_eq!(pointers(broken), ["/action"]);
        assert!(matches!(trigger_with(&store, &schemas, &name, "not json").await, Err(Error::MalformedPayload(_))));
    }

    fn filtered(event: &EventName, function: &str, filter: Option<serde_json::Value>) -> Arc<Subscription> {
        let mut s = crate::fixtures::subscription(event, function, Default::default());
        s.filter = filter.map(|f| crate::EventPattern::parse(&f).unwrap());
        Arc::new(s)
    }

    #[test]
    fn only_subscriptions_whose_filter_matches_get_a_delivery() {
        let definition = crate::fixtures::definition("orders.created");
        let subs = vec![
            filtered(&definition.name, "fn-all", None),
            filtered(&definition.name, "fn-big", Some(json!({"data": {"total": [{"numeric": [">", 100]}]}}))),
            filtered(&definition.name, "fn-eu", Some(json!({"data": {"country": ["DE", "FR"]}}))),
            filtered(&definition.name, "fn-event", Some(json!({"event": ["orders.created"]}))),
            filtered(&definition.name, "fn-native", Some(json!({"source": {"kind": ["aws:s3"]}}))),
        ];
        let names = |payload: &str, source: Option<&Origin>| -> Vec<String> {
            matching(&definition, subs.clone(), payload.as_bytes(), source)
                .into_iter()
                .map(|s| s.function_id.to_string())
                .collect()
        };
        assert_eq!(names(r#"{"total": 150, "country": "US"}"#, None), ["fn-all", "fn-big", "fn-event"]);
        assert_eq!(names(r#"{"total": 100, "country": "FR"}"#, None), ["fn-all", "fn-eu", "fn-event"]);
        let origin = Origin {
            name: crate::SourceName::parse("uploads").unwrap(),
            kind: crate::SourceKind::S3,
            id: "b/k".into(),
            arn: None,
        };
        assert!(names("{}", Some(&origin)).contains(&"fn-native".to_owned()), "the native record is `source`");
    }

    #[test]
    fn a_filter_on_data_never_matches_a_payload_that_is_not_json() {
        let mut definition = crate::fixtures::definition("files.csv");
        definition.data_type = crate::DataType::parse("text/csv").unwrap();
        let subs = vec![
            filtered(&definition.name, "fn-data", Some(json!({"data": {"total": [{"numeric": [">", 0]}]}}))),
            filtered(&definition.name, "fn-type", Some(json!({"dataType": ["text/csv"]}))),
        ];
        let got: Vec<_> =
            matching(&definition, subs, b"total\n150\n", None).into_iter().map(|s| s.function_id.to_string()).collect();
        assert_eq!(got, ["fn-type"], "fields outside data still match");
    }

    #[tokio::test]
    async fn the_receipt_lists_only_the_deliveries_made() {
        let store = MemoryStore::new();
        let name = EventName::parse("orders.filtered").unwrap();
        define(&store, &name, json!({"type": "object"})).await;
        for (function, filter) in [
            ("fn-a", json!({"data": {"total": [{"numeric": [">", 100]}]}})),
            ("fn-b", json!({"data": {"total": [{"numeric": ["<=", 100]}]}})),
        ] {
            let draft = crate::SubscriptionDraft {
                event: Some(name.clone()),
                function_id: crate::FunctionId::parse(function).unwrap(),
                metadata: None,
                filter: Some(filter),
                delivery: None,
                format: None,
            };
            let anything = crate::FunctionAllowlist::parse("*").unwrap();
            crate::subscriptions::subscribe(&store, &SystemClock, &UlidSource, &anything, draft).await.unwrap();
        }
        let schemas = SchemaCache::new();
        let ports = TriggerPorts {
            source: &store,
            acceptor: &store,
            schemas: &schemas,
            registry: &store,
            clock: &SystemClock,
            ids: &UlidSource,
        };
        let request = TriggerRequest {
            event: name.clone(),
            content_type: None,
            payload: br#"{"total": 150}"#.to_vec(),
            idempotency_key: None,
            source: None,
            cloud_event: None,
        };
        let receipt = trigger(ports, request).await.unwrap();
        assert_eq!(receipt.deliveries.iter().map(|d| d.function_id.to_string()).collect::<Vec<_>>(), ["fn-a"]);
        let logged =
            crate::ports::DeliveryLog::deliveries_of_trigger(&store, &receipt.event_id).await.unwrap().unwrap();
        assert_eq!(logged.len(), 1, "no delivery, not even a skipped one, for the filter that did not match");
    }
}
