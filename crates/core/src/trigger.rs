//! The trigger use case: check a payload against its event and durably accept one delivery per
//! subscription, before any function runs.

use chrono::{DateTime, Utc};
use serde::de::IgnoredAny;

use crate::error::{Error, Result};
use crate::ids::{EventName, IdempotencyKey};
use crate::model::{Delivery, DeliveryStatus, EventDefinition, Subscription, Trigger, TriggerReceipt};
use crate::ports::{Acceptance, Clock, IdSource, TriggerAcceptor, TriggerSource};
use crate::schema::{self, SchemaCache};

pub struct TriggerRequest<'a> {
    pub event: EventName,
    /// The request's `Content-Type`; when absent the payload is taken to be of the event's `dataType`.
    pub content_type: Option<&'a str>,
    pub payload: Vec<u8>,
    pub idempotency_key: Option<IdempotencyKey>,
}

/// The ports a trigger touches, borrowed for one call.
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
    let trigger = accepted_trigger(&definition, &subscriptions, request.payload, ports.clock.now(), ports.ids);
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
    let validator = schemas.validator(&definition.name, definition.version, schema).map_err(|message| {
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
        deliveries,
    }
}
