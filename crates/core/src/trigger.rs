//! The trigger use case: check a payload against its event and durably accept one delivery per
//! subscription, before any function runs.

use chrono::{DateTime, Utc};
use serde::de::IgnoredAny;

use crate::error::{Error, Result};
use crate::ids::{EventName, IdempotencyKey};
use crate::model::{Delivery, DeliveryStatus, EventDefinition, Origin, Subscription, Trigger, TriggerReceipt};
use crate::ports::{Acceptance, Clock, IdSource, TriggerAcceptor, TriggerSource};
use crate::schema::{self, SchemaCache};

pub struct TriggerRequest<'a> {
    pub event: EventName,
    /// The request's `Content-Type`; when absent the payload is taken to be of the event's `dataType`.
    pub content_type: Option<&'a str>,
    pub payload: Vec<u8>,
    pub idempotency_key: Option<IdempotencyKey>,
    /// The native record that triggers it, if one does (`ingest`); none for an HTTP trigger.
    pub source: Option<Origin>,
}

/// The ports a trigger touches, borrowed for one call.
#[derive(Clone, Copy)]
pub struct TriggerPorts<'a> {
    pub source: &'a dyn TriggerSource,
    pub acceptor: &'a dyn TriggerAcceptor,
    pub schemas: &'a SchemaCache,
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn IdSource,
}

pub async fn trigger(ports: TriggerPorts<'_>, request: TriggerRequest<'_>) -> Result<TriggerReceipt> {
    let Some((definition, subscriptions)) = ports.source.trigger_target(&request.event).await? else {
        return Err(Error::NotFound { what: "event", id: request.event.to_string() });
    };
    check_payload(ports.schemas, &definition, request.content_type, &request.payload)?;
    let mut trigger = accepted_trigger(&definition, &subscriptions, request.payload, ports.clock.now(), ports.ids);
    trigger.source = request.source;
    match ports.acceptor.accept(&trigger, request.idempotency_key.as_ref()).await? {
        Acceptance::Accepted => Ok(trigger.receipt()),
        Acceptance::Replayed(first) => Ok(first),
    }
}

/// Checks media type, JSON syntax and schema, in that order: the cheapest refusal first.
pub fn check_payload(
    schemas: &SchemaCache,
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
    let Some(schema) = &definition.schema else {
        return serde_json::from_slice::<IgnoredAny>(payload)
            .map(drop)
            .map_err(|e| Error::MalformedPayload(e.to_string()));
    };
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| Error::MalformedPayload(e.to_string()))?;
    let validator = schemas.validator(schema).map_err(|message| {
        Error::unavailable(format!("stored schema of '{}' does not compile: {message}", definition.name))
    })?;
    let violations = schema::violations(&validator, &value);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Error::PayloadRejected { event: definition.name.clone(), violations })
    }
}

pub fn accepted_trigger(
    definition: &EventDefinition,
    subscriptions: &[Subscription],
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
        })
        .collect();
    Trigger {
        event_id,
        event: definition.name.clone(),
        received_at,
        data_type: definition.data_type.clone(),
        payload,
        source: None,
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
        events::define_event(store, &SystemClock, draft).await.expect("the definition is valid");
    }

    async fn trigger_with(store: &MemoryStore, schemas: &SchemaCache, name: &EventName, payload: &str) -> Result<()> {
        let ports = TriggerPorts { source: store, acceptor: store, schemas, clock: &SystemClock, ids: &UlidSource };
        let request = TriggerRequest {
            event: name.clone(),
            content_type: Some("application/json"),
            payload: payload.as_bytes().to_vec(),
            idempotency_key: None,
            source: None,
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
}
