//! The message a trigger's deliveries travel in on AWS (SNS topic, SQS queue, dispatcher), as
//! plain serde: the trigger handler publishes it, the dispatcher reads it and re-enqueues a
//! failed delivery in it, and any other subscriber of the topic can read it too.
//!
//! `data` follows the invocation payload's convention: a JSON `dataType` is embedded as JSON,
//! any other is a base64 string with `"dataEncoding": "base64"`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::{DataType, EventId, EventName, FunctionId, SubscriptionId};
use crate::model::{Attempt, Delivery, DeliveryPolicy, DeliveryStatus, Origin, PayloadFormat, SharedMetadata, Trigger};

/// The largest SNS message (and, before 2025, SQS message): body and attributes together.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// What every delivery message says it is (`type`).
pub const MESSAGE_TYPE: &str = "gateway.delivery";
/// The message format this code writes. Version 1 (no `type`, no `version`) had no generations,
/// policies or histories: it reads as generation 0 with the gateway's default policy. A version
/// newer than this is refused, never half-read, and so stays in the queue for the code that
/// wrote it (or, after its retries, in the dead-letter queue).
pub const MESSAGE_VERSION: u32 = 2;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryMessage {
    /// `gateway.delivery` ([`MESSAGE_TYPE`]); absent in version 1.
    #[serde(rename = "type", default = "message_type")]
    pub kind: String,
    /// [`MESSAGE_VERSION`] when written; 1 when absent.
    #[serde(default = "first_version")]
    pub version: u32,
    pub event_id: EventId,
    pub event: EventName,
    pub received_at: DateTime<Utc>,
    pub data_type: DataType,
    pub data: Box<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_encoding: Option<String>,
    /// True on the messages the trigger handler publishes: they may run only once their trigger
    /// is settled as accepted (`ports::TriggerState`), since the handler may still fail and answer
    /// an error. The dispatcher's own re-enqueues and dead letters, and messages from before
    /// triggers were settled, leave it out: their trigger was accepted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unconfirmed: bool,
    /// The native record that triggered it, if one did: passed on to every subscriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Origin>,
    /// The CloudEvent that triggered it, if one did: passed on to every subscriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_event: Option<crate::cloudevent::Received>,
    pub deliveries: Vec<DeliveryEntry>,
}

fn message_type() -> String {
    MESSAGE_TYPE.to_owned()
}

fn first_version() -> u32 {
    1
}

/// One delivery in a message, with how many attempts its series has already had.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryEntry {
    pub subscription_id: SubscriptionId,
    pub function_id: FunctionId,
    #[serde(default)]
    pub metadata: SharedMetadata,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The series (0: the trigger's; one more per redrive).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redriven_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "DeliveryPolicy::is_default")]
    pub policy: DeliveryPolicy,
    /// The attempts so far (the last `MAX_HISTORY`), carried so that each record write holds the
    /// whole history without reading it first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Attempt>,
    /// Set on the dead letter of a failure Lambda reported (`crate::outcome`): only that copy,
    /// moved back, runs the series again; a retry of the series still in flight when the report
    /// came does not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reported: bool,
    /// What the function receives (`native` when absent).
    #[serde(default, skip_serializing_if = "PayloadFormat::is_native")]
    pub format: PayloadFormat,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl DeliveryEntry {
    /// The entry that carries `delivery` on.
    pub fn of(delivery: &Delivery) -> Self {
        Self {
            subscription_id: delivery.subscription_id,
            function_id: delivery.function_id.clone(),
            metadata: delivery.metadata.clone(),
            attempts: delivery.attempts,
            last_error: delivery.last_error.clone(),
            generation: delivery.generation,
            redriven_at: delivery.redriven_at,
            policy: delivery.policy,
            history: delivery.history.clone(),
            reported: delivery.reported.is_some(),
            format: delivery.format,
        }
    }
}

impl DeliveryMessage {
    /// The message carrying every delivery of `trigger`; fails only if a JSON payload is not JSON.
    pub fn for_trigger(trigger: &Trigger) -> Result<Self, String> {
        let (data, data_encoding) = if trigger.data_type.is_json() {
            let text =
                String::from_utf8(trigger.payload.clone()).map_err(|e| format!("the payload is not UTF-8: {e}"))?;
            let raw = RawValue::from_string(text).map_err(|e| format!("the payload is not JSON: {e}"))?;
            (raw, None)
        } else {
            let text = serde_json::to_string(&STANDARD.encode(&trigger.payload)).map_err(|e| e.to_string())?;
            let raw = RawValue::from_string(text).map_err(|e| e.to_string())?;
            (raw, Some("base64".to_owned()))
        };
        Ok(Self {
            kind: message_type(),
            version: MESSAGE_VERSION,
            event_id: trigger.event_id,
            event: trigger.event.clone(),
            received_at: trigger.received_at,
            data_type: trigger.data_type.clone(),
            data,
            data_encoding,
            unconfirmed: true,
            source: trigger.source.clone(),
            cloud_event: trigger.cloud_event.clone(),
            deliveries: trigger.deliveries.iter().map(DeliveryEntry::of).collect(),
        })
    }

    /// The message carrying `delivery` alone, the trigger's payload given as a message carries it
    /// (`data` of `data_type`, `data_encoding`): what a delivery whose own message is gone (an
    /// `async` invocation Lambda reported failed, from the payload its record echoes) is
    /// dead-lettered and kept with.
    pub fn for_delivery(
        delivery: &Delivery,
        data_type: DataType,
        data: Box<RawValue>,
        data_encoding: Option<String>,
        source: Option<Origin>,
        cloud_event: Option<crate::cloudevent::Received>,
    ) -> Self {
        Self {
            kind: message_type(),
            version: MESSAGE_VERSION,
            event_id: delivery.event_id,
            event: delivery.event.clone(),
            received_at: delivery.received_at,
            data_type,
            data,
            data_encoding,
            unconfirmed: false,
            source,
            cloud_event,
            deliveries: vec![DeliveryEntry::of(delivery)],
        }
    }

    /// Reads a message, refusing one of another type or of a version newer than this code's.
    pub fn read(body: &str) -> Result<Self, String> {
        let message: Self = serde_json::from_str(body).map_err(|e| e.to_string())?;
        if message.kind != MESSAGE_TYPE {
            return Err(format!("a message of type '{}' is not a delivery message", message.kind));
        }
        if message.version > MESSAGE_VERSION {
            return Err(format!(
                "delivery message version {} is newer than this dispatcher's ({MESSAGE_VERSION})",
                message.version
            ));
        }
        Ok(message)
    }

    /// The same trigger carrying only `deliveries`.
    pub fn with_deliveries(&self, deliveries: Vec<DeliveryEntry>) -> Self {
        Self { deliveries, ..self.clone() }
    }

    /// The same trigger carrying only `deliveries`, known to be accepted, in this code's format:
    /// what the dispatcher re-enqueues or dead-letters once it has run the message.
    pub fn accepted_with(&self, deliveries: Vec<DeliveryEntry>) -> Self {
        Self { deliveries, unconfirmed: false, kind: message_type(), version: MESSAGE_VERSION, ..self.clone() }
    }

    /// The payload as the client sent it.
    pub fn payload(&self) -> Result<Vec<u8>, String> {
        match self.data_encoding.as_deref() {
            None => Ok(self.data.get().as_bytes().to_vec()),
            Some("base64") => {
                let text: String =
                    serde_json::from_str(self.data.get()).map_err(|e| format!("base64 data is not a string: {e}"))?;
                STANDARD.decode(text).map_err(|e| format!("data is not valid base64: {e}"))
            }
            Some(other) => Err(format!("unknown dataEncoding '{other}'")),
        }
    }

    /// The delivery-log record of `entry` as the message has it: pending, after `entry.attempts`
    /// of its series.
    pub fn record_of(&self, entry: &DeliveryEntry) -> Delivery {
        Delivery {
            event_id: self.event_id,
            event: self.event.clone(),
            subscription_id: entry.subscription_id,
            function_id: entry.function_id.clone(),
            metadata: entry.metadata.clone(),
            status: DeliveryStatus::Pending,
            attempts: entry.attempts,
            last_error: entry.last_error.clone(),
            received_at: self.received_at,
            updated_at: self.received_at,
            generation: entry.generation,
            redriven_at: entry.redriven_at,
            policy: entry.policy,
            history: entry.history.clone(),
            format: entry.format,
            reported: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::ports::UlidSource;
    use crate::trigger::accepted_trigger;

    fn trigger(data_type: &str, payload: &[u8]) -> Trigger {
        let mut definition = fixtures::definition("orders.created");
        definition.data_type = DataType::parse(data_type).unwrap();
        let subscription = fixtures::subscription(&definition.name, "fn-a", Default::default());
        accepted_trigger(&definition, &[std::sync::Arc::new(subscription)], payload.to_vec(), Utc::now(), &UlidSource)
    }

    #[test]
    fn json_payloads_are_embedded_and_come_back_byte_for_byte() {
        let t = trigger("application/json", br#"{"id": "a-1", "n": [1, 2.5]}"#);
        let message = DeliveryMessage::for_trigger(&t).unwrap();
        let text = serde_json::to_string(&message).unwrap();
        assert!(text.contains(r#""data":{"id": "a-1", "n": [1, 2.5]}"#), "{text}");
        assert!(!text.contains("dataEncoding"));
        assert!(text.contains(r#""unconfirmed":true"#), "a published message waits for its trigger's acceptance");
        let back: DeliveryMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(back.payload().unwrap(), t.payload);
        assert_eq!(back.record_of(&back.deliveries[0]), t.deliveries[0]);
    }

    #[test]
    fn a_message_from_before_triggers_were_settled_reads_as_accepted_and_a_re_enqueue_is_accepted() {
        let old = r#"{"eventId":"evt_01JDQ3V6J9K2M4N5P6Q7R8S9T0","event":"orders.created","receivedAt":"2026-11-23T12:00:00Z",
            "dataType":"application/json","data":{"orderId":"o-1"},
            "deliveries":[{"subscriptionId":"sub_01JDQ3V6J9K2M4N5P6Q7R8S9T0","functionId":"my-app-orders","metadata":{},"attempts":0}]}"#;
        let message = DeliveryMessage::read(old).unwrap();
        assert!(!message.unconfirmed);
        assert_eq!((message.kind.as_str(), message.version), (MESSAGE_TYPE, 1), "an old message reads as version 1");
        let entry = &message.deliveries[0];
        assert_eq!((entry.generation, entry.policy, entry.history.len()), (0, DeliveryPolicy::default(), 0));
        let record = message.record_of(entry);
        assert_eq!((record.generation, record.attempts, record.status), (0, 0, DeliveryStatus::Pending));
        let t = trigger("application/json", b"{}");
        let published = DeliveryMessage::for_trigger(&t).unwrap();
        let again = published.accepted_with(published.deliveries.clone());
        assert!(published.unconfirmed && !again.unconfirmed);
        assert!(!serde_json::to_string(&again).unwrap().contains("unconfirmed"));
    }

    #[test]
    fn messages_say_their_type_and_version_and_a_newer_or_foreign_one_is_refused() {
        let t = trigger("application/json", b"{}");
        let text = serde_json::to_string(&DeliveryMessage::for_trigger(&t).unwrap()).unwrap();
        assert!(text.starts_with(r#"{"type":"gateway.delivery","version":2,"#), "{text}");
        let newer = text.replace(r#""version":2"#, r#""version":3"#);
        assert!(DeliveryMessage::read(&newer).unwrap_err().contains("newer"));
        let foreign = text.replace("gateway.delivery", "something.else");
        assert!(DeliveryMessage::read(&foreign).unwrap_err().contains("not a delivery message"));
        assert!(DeliveryMessage::read(&text).is_ok());
    }

    #[test]
    fn other_payloads_travel_as_base64() {
        let t = trigger("text/csv", b"a,b\n1,2\n");
        let text = serde_json::to_string(&DeliveryMessage::for_trigger(&t).unwrap()).unwrap();
        assert!(text.contains(r#""dataEncoding":"base64""#), "{text}");
        let back: DeliveryMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(back.payload().unwrap(), b"a,b\n1,2\n");
    }
}
