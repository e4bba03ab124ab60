//! The table's keys and item shapes (see docs/DYNAMODB.md). Items are (de)serialized with
//! serde_dynamo; user JSON (schemas, metadata) is stored as JSON text, because DynamoDB maps
//! refuse what JSON allows (empty keys, nesting past 32 levels, numbers past 38 digits).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gateway_core::ports::{TriggerState, TRIGGER_STATE_LIFETIME};
use gateway_core::{
    DataType, Delivery, DeliveryRetention, DeliveryStatus, EventDefinition, EventId, EventName, EventPattern,
    FunctionId, IdempotencyKey, Metadata, Source, SourceName, Subscription, SubscriptionId, TriggerReceipt, Version,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const GSI1: &str = "gsi1";
pub const GSI1PK: &str = "gsi1pk";
pub const GSI1SK: &str = "gsi1sk";
pub const TTL: &str = "ttl";

pub const DEF_SK: &str = "#DEF";
pub const RECEIVED_SK: &str = "#RECEIVED";
pub const SUB_PREFIX: &str = "SUB#";
pub const SUB_COPY_SK: &str = "#SUB";
pub const TRIGGER_SK: &str = "#TRIGGER";
pub const DELIVERY_PREFIX: &str = "DELIVERY#";
pub const KEY_SK: &str = "#KEY";
pub const EVENTS_INDEX: &str = "EVENTS";
/// Every source sits in this one partition: a batch of native records reads them all in one Query.
pub const SOURCES_PK: &str = "SOURCES";
pub const SOURCE_PREFIX: &str = "SOURCE#";
pub const SUBSCRIPTIONS_INDEX: &str = "SUBSCRIPTIONS";

pub fn event_pk(name: &EventName) -> String {
    format!("EVENT#{name}")
}

pub fn sub_sk(id: &SubscriptionId) -> String {
    format!("{SUB_PREFIX}{id}")
}

/// The by-id copy of a subscription lives in its own partition.
pub fn sub_copy_pk(id: &SubscriptionId) -> String {
    format!("{SUB_PREFIX}{id}")
}

pub fn trigger_pk(id: &EventId) -> String {
    format!("TRIGGER#{id}")
}

pub fn delivery_sk(id: &SubscriptionId) -> String {
    format!("{DELIVERY_PREFIX}{id}")
}

pub fn deliveries_index_pk(event: &EventName) -> String {
    format!("DELIVERIES#{event}")
}

pub fn source_sk(name: &SourceName) -> String {
    format!("{SOURCE_PREFIX}{name}")
}

/// Event names have no `#`, so the first `#` after the name ends it whatever the key holds.
pub fn key_pk(event: &EventName, key: &IdempotencyKey) -> String {
    format!("IDEMPOTENCY#{event}#{}", key.as_str())
}

/// The definition: `EVENT#<name>` / `#DEF`, listed through `gsi1` (`EVENTS`, name).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    pub name: EventName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_text::option")]
    pub schema: Option<Arc<Value>>,
    pub data_type: DataType,
    #[serde(with = "json_text")]
    pub metadata: Metadata,
    #[serde(with = "time")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "time")]
    pub updated_at: DateTime<Utc>,
    pub version: Version,
    /// Kept by the subscription transactions, so a delete can refuse without reading them all.
    #[serde(default)]
    pub subscription_count: u64,
    /// Kept by the source transactions, likewise.
    #[serde(default)]
    pub source_count: u64,
}

/// Attributes of [`EventItem`] that a replace leaves alone.
pub const EVENT_ITEM_FIXED: &[&str] = &[PK, SK, GSI1PK, GSI1SK, "name", "subscriptionCount", "sourceCount"];
/// Optional attributes of [`EventItem`] that a replace removes when absent.
pub const EVENT_ITEM_OPTIONAL: &[&str] = &["description", "schema"];

impl EventItem {
    pub fn new(event: &EventDefinition) -> Self {
        Self {
            pk: event_pk(&event.name),
            sk: DEF_SK.to_owned(),
            gsi1pk: EVENTS_INDEX.to_owned(),
            gsi1sk: event.name.to_string(),
            name: event.name.clone(),
            description: event.description.clone(),
            schema: event.schema.clone(),
            data_type: event.data_type.clone(),
            metadata: event.metadata.clone(),
            created_at: event.created_at,
            updated_at: event.updated_at,
            version: event.version,
            subscription_count: 0,
            source_count: 0,
        }
    }

    pub fn into_definition(self, received_at: Option<DateTime<Utc>>) -> EventDefinition {
        EventDefinition {
            name: self.name,
            description: self.description,
            schema: self.schema,
            data_type: self.data_type,
            metadata: self.metadata,
            received_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        }
    }
}

/// When the event was last triggered: `EVENT#<name>` / `#RECEIVED`, apart from the definition so
/// that triggers never write (or conflict with transactions on) the definition item.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedItem {
    pub pk: String,
    pub sk: String,
    #[serde(with = "time")]
    pub received_at: DateTime<Utc>,
}

/// A subscription, stored twice in one transaction: under its event (`EVENT#<name>` /
/// `SUB#<id>`, read by triggers) and by id (`SUB#<id>` / `#SUB`, listed through `gsi1`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionItem {
    pub pk: String,
    pub sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1sk: Option<String>,
    pub subscription_id: SubscriptionId,
    pub event: EventName,
    pub function_id: FunctionId,
    #[serde(with = "json_text")]
    pub metadata: Metadata,
    #[serde(with = "time")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "time")]
    pub updated_at: DateTime<Utc>,
    pub version: Version,
}

impl SubscriptionItem {
    /// The copy read by triggers, in the event's partition.
    pub fn under_event(sub: &Subscription) -> Self {
        Self::with_keys(sub, event_pk(&sub.event), sub_sk(&sub.subscription_id), None)
    }

    /// The copy read by id and listed across events.
    pub fn by_id(sub: &Subscription) -> Self {
        Self::with_keys(
            sub,
            sub_copy_pk(&sub.subscription_id),
            SUB_COPY_SK.to_owned(),
            Some((SUBSCRIPTIONS_INDEX.to_owned(), sub.subscription_id.to_string())),
        )
    }

    fn with_keys(sub: &Subscription, pk: String, sk: String, gsi: Option<(String, String)>) -> Self {
        let (gsi1pk, gsi1sk) = gsi.unzip();
        Self {
            pk,
            sk,
            gsi1pk,
            gsi1sk,
            subscription_id: sub.subscription_id,
            event: sub.event.clone(),
            function_id: sub.function_id.clone(),
            metadata: sub.metadata.clone(),
            created_at: sub.created_at,
            updated_at: sub.updated_at,
            version: sub.version,
        }
    }

    pub fn into_subscription(self) -> Subscription {
        Subscription {
            subscription_id: self.subscription_id,
            event: self.event,
            function_id: self.function_id,
            metadata: self.metadata,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        }
    }
}

/// A source: `SOURCES` / `SOURCE#<name>`, all in one partition.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceItem {
    pub pk: String,
    pub sk: String,
    pub name: SourceName,
    pub event: EventName,
    #[serde(with = "json_text")]
    pub pattern: EventPattern,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(with = "json_text")]
    pub metadata: Metadata,
    #[serde(with = "time")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "time")]
    pub updated_at: DateTime<Utc>,
    pub version: Version,
}

impl SourceItem {
    pub fn new(source: &Source) -> Self {
        Self {
            pk: SOURCES_PK.to_owned(),
            sk: source_sk(&source.name),
            name: source.name.clone(),
            event: source.event.clone(),
            pattern: source.pattern.clone(),
            description: source.description.clone(),
            metadata: source.metadata.clone(),
            created_at: source.created_at,
            updated_at: source.updated_at,
            version: source.version,
        }
    }

    pub fn into_source(self) -> Source {
        Source {
            name: self.name,
            event: self.event,
            pattern: self.pattern,
            description: self.description,
            metadata: self.metadata,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        }
    }
}

/// One delivery: `TRIGGER#<eventId>` / `DELIVERY#<subscriptionId>`, listed per event newest
/// trigger first through `gsi1` (`DELIVERIES#<event>`, `<eventId>#<subscriptionId>`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    pub event_id: EventId,
    pub event: EventName,
    pub subscription_id: SubscriptionId,
    pub function_id: FunctionId,
    #[serde(with = "json_text")]
    pub metadata: Metadata,
    pub status: DeliveryStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(with = "time")]
    pub received_at: DateTime<Utc>,
    #[serde(with = "time")]
    pub updated_at: DateTime<Utc>,
    /// Epoch seconds: the trigger's `receivedAt` plus the delivery retention, so every write of
    /// the record gives the same value (until the retention setting changes, when later writes
    /// move it). Absent from records written before retention was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

impl DeliveryItem {
    pub fn new(d: &Delivery, retention: DeliveryRetention) -> Self {
        Self {
            pk: trigger_pk(&d.event_id),
            sk: delivery_sk(&d.subscription_id),
            gsi1pk: deliveries_index_pk(&d.event),
            gsi1sk: format!("{}#{}", d.event_id, d.subscription_id),
            event_id: d.event_id,
            event: d.event.clone(),
            subscription_id: d.subscription_id,
            function_id: d.function_id.clone(),
            metadata: d.metadata.clone(),
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error.clone(),
            received_at: d.received_at,
            updated_at: d.updated_at,
            ttl: expiry(retention, d.received_at),
        }
    }

    pub fn into_delivery(self) -> Delivery {
        Delivery {
            event_id: self.event_id,
            event: self.event,
            subscription_id: self.subscription_id,
            function_id: self.function_id,
            metadata: self.metadata,
            status: self.status,
            attempts: self.attempts,
            last_error: self.last_error,
            received_at: self.received_at,
            updated_at: self.updated_at,
        }
    }
}

/// A trigger's settled state (`TRIGGER#<eventId>` / `#TRIGGER`): written once, by the acceptor
/// (`accepted`) or the dispatcher (`abandoned`), whichever comes first. It also tells the log
/// about a trigger that had no subscriptions. Items written before triggers were settled have
/// no `state`; they were only ever written for accepted triggers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerItem {
    pub pk: String,
    pub sk: String,
    pub event_id: EventId,
    pub event: EventName,
    #[serde(with = "time")]
    pub received_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TriggerState>,
    /// At least [`TRIGGER_STATE_LIFETIME`] after `receivedAt`, however short the retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

impl TriggerItem {
    /// The `ttl` of a trigger's state item.
    pub fn expiry(retention: DeliveryRetention, received_at: DateTime<Utc>) -> i64 {
        let records = retention.expires_at(received_at);
        let state = chrono::Duration::from_std(TRIGGER_STATE_LIFETIME).unwrap_or(chrono::Duration::MAX);
        records.max(received_at + state).timestamp()
    }

    /// The state it settles: an item without one is from before triggers were settled, when the
    /// item was only ever written for an accepted trigger (one without subscriptions).
    pub fn settled(&self) -> TriggerState {
        self.state.unwrap_or(TriggerState::Accepted)
    }
}

/// The `ttl` of a trigger's log items: when its retention ends, in epoch seconds.
fn expiry(retention: DeliveryRetention, received_at: DateTime<Utc>) -> Option<i64> {
    Some(retention.expires_at(received_at).timestamp())
}

/// An idempotency key: `IDEMPOTENCY#<event>#<key>` / `#KEY`, deleted by TTL after 24 hours.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyItem {
    pub pk: String,
    pub sk: String,
    pub state: KeyState,
    pub event_id: EventId,
    pub receipt: TriggerReceipt,
    /// `Trigger::payload_digest` of the first trigger; absent from keys written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_digest: Option<String>,
    pub claimed_until_ms: i64,
    /// Epoch seconds; DynamoDB's TTL deletes the item some time after, reads check it first.
    pub ttl: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Pending,
    Published,
}

/// Timestamps as RFC 3339 with nanoseconds: fixed width, so they compare as strings.
pub mod time {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn text(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Nanos, true)
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&text(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
    }
}

/// User JSON as a string attribute.
pub mod json_text {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(value).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }

    pub mod option {
        use super::*;

        pub fn serialize<T: Serialize, S: Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => super::serialize(v, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| serde_json::from_str(&text).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use gateway_core::ports::TRIGGER_STATE_LIFETIME;

    /// `MessageRetentionPeriod` of one queue of `template.yaml`, in seconds.
    fn retention_of(template: &str, queue: &str) -> u64 {
        let header = format!("  {queue}:");
        let mut lines = template.lines().skip_while(|l| *l != header);
        assert!(lines.next().is_some(), "{queue} is in the template");
        // The resource's lines: until the next one at the same indentation.
        let line = lines
            .take_while(|l| l.is_empty() || l.starts_with("   "))
            .find_map(|l| l.trim().strip_prefix("MessageRetentionPeriod:"))
            .unwrap_or_else(|| panic!("{queue} has a MessageRetentionPeriod"));
        line.trim().parse().unwrap()
    }

    #[test]
    fn a_triggers_state_outlives_every_message_of_it_the_template_can_keep() {
        // The longest a published message can wait: in the fan-out DLQ, then (redriven) in the
        // delivery queue, then in its DLQ. Past that, the dispatcher would find no state.
        let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml")).unwrap();
        let longest = ["FanOutDeadLetterQueue", "DeliveryQueue", "DeadLetterQueue"]
            .iter()
            .map(|q| retention_of(&template, q))
            .sum::<u64>();
        assert_eq!(longest, 35 * 24 * 3600, "14 + 7 + 14 days");
        assert!(TRIGGER_STATE_LIFETIME.as_secs() >= longest);
    }
}
