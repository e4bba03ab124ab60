//! The table's keys and item shapes (see docs/DYNAMODB.md). Items are (de)serialized with
//! serde_dynamo; user JSON (schemas, metadata) is stored as JSON text, because DynamoDB maps
//! refuse what JSON allows (empty keys, nesting past 32 levels, numbers past 38 digits).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gateway_core::message::DeliveryMessage;
use gateway_core::ports::{TriggerState, TRIGGER_STATE_LIFETIME};
use gateway_core::{
    Attempt, Compatibility, DataType, Delivery, DeliveryPolicy, DeliveryRetention, DeliveryStatus, Envelope,
    EventDefinition, EventId, EventName, EventPattern, FunctionId, IdempotencyKey, Metadata, PayloadFormat, Referrer,
    Reported, Schema, SchemaFormat, SchemaName, SchemaReference, SchemaUri, SchemaVersion, SchemaVersionSummary,
    SharedMetadata, Source, SourceName, Subscription, SubscriptionId, TriggerReceipt, Version,
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
/// `gsi2`: failed deliveries by subscription, sparse (only failed records carry its keys).
pub const GSI2: &str = "gsi2";
pub const GSI2PK: &str = "gsi2pk";
pub const GSI2SK: &str = "gsi2sk";
pub const FAILED_PREFIX: &str = "FAILED#";
pub const KEY_SK: &str = "#KEY";
pub const EVENTS_INDEX: &str = "EVENTS";
/// Every source sits in this one partition: a batch of native records reads them all in one Query.
pub const SOURCES_PK: &str = "SOURCES";
pub const SOURCE_PREFIX: &str = "SOURCE#";
pub const SUBSCRIPTIONS_INDEX: &str = "SUBSCRIPTIONS";
pub const SCHEMA_SK: &str = "#SCHEMA";
/// Marks a schema whose deletion took more than one transaction and is not finished yet.
pub const DELETING_SK: &str = "#DELETING";
pub const VERSION_PREFIX: &str = "#VERSION#";
pub const URI_SK: &str = "#URI";
pub const REFERRER_PREFIX: &str = "REFERRER#";
pub const SCHEMAS_INDEX: &str = "SCHEMAS";

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

pub fn schema_pk(name: &SchemaName) -> String {
    format!("SCHEMA#{name}")
}

/// Zero-padded to u32's ten digits, so that versions sort by number.
pub fn version_sk(version: u32) -> String {
    format!("{VERSION_PREFIX}{version:010}")
}

/// URIs are at most 1024 bytes (`SchemaUri::MAX_LEN`): within the 2048 a partition key may hold.
pub fn uri_pk(uri: &SchemaUri) -> String {
    format!("URI#{uri}")
}

/// `REFERRER#EVENT#<name>` sorts before `REFERRER#SCHEMA#<name>`, as `Referrer`'s order has it.
pub fn referrer_sk(referrer: &Referrer) -> String {
    match referrer {
        Referrer::Event(name) => format!("{REFERRER_PREFIX}EVENT#{name}"),
        Referrer::Schema(name) => format!("{REFERRER_PREFIX}SCHEMA#{name}"),
    }
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schema_references: Vec<SchemaReference>,
    /// The schemas `schemaReferences` name, once each, sorted: what the event has an edge in
    /// (`REFERRER#EVENT#<name>`) under each, and what a replace compares to know whether the edges
    /// change. Absent when it refers to none (so are items written before the registry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refers_to: Vec<SchemaName>,
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
pub const EVENT_ITEM_OPTIONAL: &[&str] = &["description", "schema", "envelope", "schemaReferences", "refersTo"];

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
            envelope: event.envelope,
            schema_references: event.schema_references.clone(),
            refers_to: referred_schemas(&event.schema_references, None),
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
            envelope: self.envelope,
            schema_references: self.schema_references,
            metadata: self.metadata,
            received_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        }
    }
}

/// The schemas `references` name, once each and sorted, leaving out `own` (a version that refers
/// to an earlier version of its own schema does not make the schema its own referrer).
pub fn referred_schemas(references: &[SchemaReference], own: Option<&SchemaName>) -> Vec<SchemaName> {
    let mut names: Vec<SchemaName> =
        references.iter().map(|r| r.schema.clone()).filter(|name| Some(name) != own).collect();
    names.sort();
    names.dedup();
    names
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
    pub metadata: SharedMetadata,
    /// The event pattern, as JSON text (a pattern holds user JSON); absent: every trigger.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_text::option")]
    pub filter: Option<EventPattern>,
    /// The delivery policy as JSON text; absent on subscriptions with the default policy (and on
    /// every subscription written before policies existed), which reads as the default.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_text::option")]
    pub delivery: Option<DeliveryPolicy>,
    /// Absent for `native` (and on every subscription from before formats).
    #[serde(default, skip_serializing_if = "PayloadFormat::is_native")]
    pub format: PayloadFormat,
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
            filter: sub.filter.clone(),
            delivery: (!sub.delivery.is_default()).then_some(sub.delivery),
            format: sub.format,
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
            filter: self.filter,
            delivery: self.delivery.unwrap_or_default(),
            format: self.format,
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

/// A schema: `SCHEMA#<name>` / `#SCHEMA`, listed through `gsi1` (`SCHEMAS`, name). Its versions
/// and the edges of its referrers share its partition.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    pub name: SchemaName,
    pub format: SchemaFormat,
    pub compatibility: Compatibility,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub latest_version: u32,
    #[serde(with = "time")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "time")]
    pub updated_at: DateTime<Utc>,
    pub revision: Version,
    /// How many edges (`REFERRER#...`) the partition holds, kept by every transaction that writes
    /// or removes one: a delete is conditional on it being 0.
    #[serde(default)]
    pub referrer_count: u64,
    /// The other schemas any of its versions refers to, once each, sorted: where its own edges
    /// (`REFERRER#SCHEMA#<name>`) are, for the delete to remove them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refers_to: Vec<SchemaName>,
}

impl SchemaItem {
    pub fn new(schema: &Schema, refers_to: Vec<SchemaName>) -> Self {
        Self {
            pk: schema_pk(&schema.name),
            sk: SCHEMA_SK.to_owned(),
            gsi1pk: SCHEMAS_INDEX.to_owned(),
            gsi1sk: schema.name.to_string(),
            name: schema.name.clone(),
            format: schema.format,
            compatibility: schema.compatibility,
            description: schema.description.clone(),
            latest_version: schema.latest_version,
            created_at: schema.created_at,
            updated_at: schema.updated_at,
            revision: schema.revision,
            referrer_count: 0,
            refers_to,
        }
    }

    pub fn into_schema(self) -> Schema {
        Schema {
            name: self.name,
            format: self.format,
            compatibility: self.compatibility,
            description: self.description,
            latest_version: self.latest_version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            revision: self.revision,
        }
    }
}

/// A schema version, stored twice in one transaction: in its schema's partition
/// (`SCHEMA#<name>` / `#VERSION#<n>`, read by number and listed in order) and by URI
/// (`URI#<uri>` / `#URI`: what a resource trigger reads, in one GetItem, and what keeps a URI to
/// one version across the registry). A version never changes, so the copies never disagree.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionItem {
    pub pk: String,
    pub sk: String,
    pub name: SchemaName,
    pub version: u32,
    pub uri: SchemaUri,
    pub format: SchemaFormat,
    #[serde(with = "json_text")]
    pub schema: Arc<Value>,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<SchemaReference>,
    #[serde(with = "time")]
    pub created_at: DateTime<Utc>,
}

impl VersionItem {
    pub fn under_schema(version: &SchemaVersion) -> Self {
        Self::with_keys(version, schema_pk(&version.name), version_sk(version.version))
    }

    pub fn by_uri(version: &SchemaVersion) -> Self {
        Self::with_keys(version, uri_pk(&version.uri), URI_SK.to_owned())
    }

    fn with_keys(version: &SchemaVersion, pk: String, sk: String) -> Self {
        Self {
            pk,
            sk,
            name: version.name.clone(),
            version: version.version,
            uri: version.uri.clone(),
            format: version.format,
            schema: version.schema.clone(),
            digest: version.digest.clone(),
            references: version.references.clone(),
            created_at: version.created_at,
        }
    }

    pub fn into_version(self) -> SchemaVersion {
        SchemaVersion {
            name: self.name,
            version: self.version,
            uri: self.uri,
            format: self.format,
            schema: self.schema,
            digest: self.digest,
            references: self.references,
            created_at: self.created_at,
        }
    }
}

/// What a schema's listing shows of a version item (read with a projection: not the document).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionSummaryItem {
    pub version: u32,
    pub uri: SchemaUri,
    pub digest: String,
    #[serde(with = "time")]
    pub created_at: DateTime<Utc>,
}

impl VersionSummaryItem {
    /// The attributes to project.
    pub const ATTRIBUTES: [&'static str; 4] = ["version", "uri", "digest", "createdAt"];

    pub fn into_summary(self) -> SchemaVersionSummary {
        SchemaVersionSummary { version: self.version, uri: self.uri, digest: self.digest, created_at: self.created_at }
    }
}

/// What a delete needs of a version item: its key and its URI (read with a projection).
#[derive(Debug, Deserialize)]
pub struct VersionKey {
    pub sk: String,
    pub version: u32,
    pub uri: SchemaUri,
}

/// An edge: `SCHEMA#<referred-to>` / `REFERRER#EVENT#<name>` or `REFERRER#SCHEMA#<name>`, written
/// and removed in the transaction that makes the referrer refer to the schema or stop, with the
/// schema's `referrerCount`. A delete refused for its referrers lists them with one Query.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerItem {
    pub pk: String,
    pub sk: String,
    pub kind: ReferrerKind,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferrerKind {
    Event,
    Schema,
}

impl ReferrerItem {
    pub fn new(schema: &SchemaName, referrer: &Referrer) -> Self {
        let (kind, name) = match referrer {
            Referrer::Event(name) => (ReferrerKind::Event, name.to_string()),
            Referrer::Schema(name) => (ReferrerKind::Schema, name.to_string()),
        };
        Self { pk: schema_pk(schema), sk: referrer_sk(referrer), kind, name }
    }

    /// The referrer it names; `None` if the name is not one the API writes.
    pub fn referrer(&self) -> Option<Referrer> {
        match self.kind {
            ReferrerKind::Event => EventName::parse(&self.name).ok().map(Referrer::Event),
            ReferrerKind::Schema => SchemaName::parse(&self.name).ok().map(Referrer::Schema),
        }
    }
}

/// A schema being deleted in more than one transaction: `SCHEMA#<name>` / `#DELETING`, written
/// with the first (which deletes the schema item) and deleted after the last. While it is there,
/// the name cannot be registered again; whoever meets it finishes the deletion first.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletingItem {
    pub pk: String,
    pub sk: String,
    pub name: SchemaName,
}

/// One delivery: `TRIGGER#<eventId>` / `DELIVERY#<subscriptionId>`, listed per event newest
/// trigger first through `gsi1` (`DELIVERIES#<event>`, `<eventId>#<subscriptionId>`). A failed
/// one is also in `gsi2` (`FAILED#<subscriptionId>`, `<receivedAt>#<eventId>`), for redriving a
/// subscription's failures by time, and keeps its trigger's payload (`payload`) to be redriven
/// with; every write of a later state is a whole-item put without them, so they go with the
/// failure.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2sk: Option<String>,
    pub event_id: EventId,
    pub event: EventName,
    pub subscription_id: SubscriptionId,
    pub function_id: FunctionId,
    #[serde(with = "json_text")]
    pub metadata: SharedMetadata,
    pub status: DeliveryStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(with = "time")]
    pub received_at: DateTime<Utc>,
    #[serde(with = "time")]
    pub updated_at: DateTime<Utc>,
    /// The series; absent on generation 0 (and on records from before redrives), read as 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::option")]
    pub redriven_at: Option<DateTime<Utc>>,
    /// As JSON text; absent for the default policy.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_text::option")]
    pub policy: Option<DeliveryPolicy>,
    /// The last attempts, as JSON text (one attribute, written whole with each state).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_text::option")]
    pub history: Option<Vec<Attempt>>,
    /// What the function receives; absent for `native`.
    #[serde(default, skip_serializing_if = "PayloadFormat::is_native")]
    pub format: PayloadFormat,
    /// What Lambda reported of the series' `async` invocation, as JSON text; absent until it has.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_text::option")]
    pub reported: Option<Reported>,
    /// Only on a failed record: its trigger's message without deliveries (JSON text), what a
    /// redrive sends again, when it fits under [`MAX_KEPT_PAYLOAD_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Only on a failed record whose payload was not kept: why (it is redriven from the
    /// dead-letter queue instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_not_kept: Option<String>,
    /// Epoch seconds: the trigger's `receivedAt` plus the delivery retention, so every write of
    /// the record gives the same value (until the retention setting changes, when later writes
    /// move it). Absent from records written before retention was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The most a failed record keeps of its trigger's message (JSON text): 350 KB of DynamoDB's
/// 400 KB item, the rest left to the record itself (metadata, errors, history). A delivery
/// message is at most 256 KiB (SNS's limit), so every payload the gateway accepts fits; the cap
/// guards the item limit should that ever change. Above it, the record says so
/// (`payloadNotKept`) and the delivery is redriven from the dead-letter queue, whose message
/// carries the payload.
pub const MAX_KEPT_PAYLOAD_BYTES: usize = 350 * 1000;

pub fn failed_index_pk(id: &SubscriptionId) -> String {
    format!("{FAILED_PREFIX}{id}")
}

/// `<receivedAt>#<eventId>`: in time order, and unique per delivery of a subscription.
pub fn failed_index_sk(received_at: &DateTime<Utc>, event_id: &EventId) -> String {
    format!("{}#{event_id}", time::text(received_at))
}

/// What a listing of delivery records reads of each: every attribute but the kept `payload`,
/// which only a redrive's own `UpdateItem` hands on, so that listing hundreds of failures does not
/// hold hundreds of payloads (up to 350 KB each) in a 128 MB function. (DynamoDB charges the
/// read on the whole item either way.)
pub const DELIVERY_LISTED: &[&str] = &[
    "pk",
    "sk",
    "gsi1pk",
    "gsi1sk",
    "gsi2pk",
    "gsi2sk",
    "eventId",
    "event",
    "subscriptionId",
    "functionId",
    "metadata",
    "status",
    "attempts",
    "lastError",
    "receivedAt",
    "updatedAt",
    "generation",
    "redrivenAt",
    "policy",
    "history",
    "format",
    "reported",
    "payloadNotKept",
    "ttl",
];

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
            generation: d.generation,
            redriven_at: d.redriven_at,
            policy: (!d.policy.is_default()).then_some(d.policy),
            history: (!d.history.is_empty()).then(|| d.history.clone()),
            format: d.format,
            reported: d.reported.clone(),
            gsi2pk: None,
            gsi2sk: None,
            payload: None,
            payload_not_kept: None,
            ttl: expiry(retention, d.received_at),
        }
    }

    /// The record of a failed delivery, in `gsi2`, keeping `message`'s payload (its trigger's
    /// message without deliveries) if it fits under [`MAX_KEPT_PAYLOAD_BYTES`].
    pub fn failed(d: &Delivery, message: &DeliveryMessage, retention: DeliveryRetention) -> Self {
        let mut item = Self::new(d, retention);
        item.gsi2pk = Some(failed_index_pk(&d.subscription_id));
        item.gsi2sk = Some(failed_index_sk(&d.received_at, &d.event_id));
        match serde_json::to_string(&message.accepted_with(Vec::new())) {
            Ok(text) if text.len() <= MAX_KEPT_PAYLOAD_BYTES => item.payload = Some(text),
            Ok(text) => {
                item.payload_not_kept = Some(format!(
                    "the payload ({} bytes) is larger than the {MAX_KEPT_PAYLOAD_BYTES} bytes a failure record keeps; \
                     redrive this delivery from the dead-letter queue",
                    text.len()
                ))
            }
            Err(e) => item.payload_not_kept = Some(format!("the payload could not be kept: {e}")),
        }
        item
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
            generation: self.generation,
            redriven_at: self.redriven_at,
            policy: self.policy.unwrap_or_default(),
            history: self.history.unwrap_or_default(),
            format: self.format,
            reported: self.reported,
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

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|raw| {
                    DateTime::parse_from_rfc3339(&raw).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
                })
                .transpose()
        }
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

    #[test]
    fn a_listing_reads_every_attribute_of_a_delivery_record_but_its_kept_payload() {
        use super::*;
        let definition = gateway_core::fixtures::definition("orders.created");
        let subscription = gateway_core::fixtures::subscription(&definition.name, "fn-a", Metadata::new());
        let t = gateway_core::trigger::accepted_trigger(
            &definition,
            &[subscription.into()],
            b"{}".to_vec(),
            Utc::now(),
            &gateway_core::ports::UlidSource,
        );
        let mut item = DeliveryItem::new(&t.deliveries[0], DeliveryRetention::default());
        // every optional attribute present
        item.gsi2pk = Some("FAILED#x".into());
        item.gsi2sk = Some("t#e".into());
        item.last_error = Some("boom".into());
        item.generation = 1;
        item.redriven_at = Some(item.received_at);
        item.policy = Some(DeliveryPolicy { max_attempts: Some(2), ..Default::default() });
        item.history = Some(Vec::new());
        item.format = PayloadFormat::Cloudevents;
        item.format = PayloadFormat::Cloudevents;
        item.reported =
            Some(Reported { at: item.received_at, condition: "Success".into(), approximate_invoke_count: 1 });
        item.payload = Some("{}".into());
        item.payload_not_kept = Some("why".into());
        item.ttl = Some(1);
        let mut written: Vec<String> = crate::to_item(&item).unwrap().into_keys().collect();
        written.sort();
        let mut listed: Vec<String> =
            DELIVERY_LISTED.iter().map(|a| a.to_string()).chain(["payload".to_owned()]).collect();
        listed.sort();
        assert_eq!(written, listed, "DELIVERY_LISTED names every attribute of a record but payload");
    }

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

    #[test]
    fn an_event_item_written_before_the_registry_still_reads() {
        use aws_sdk_dynamodb::types::AttributeValue::{N, S};

        // GIVEN a definition item exactly as the store wrote it before envelopes and references
        let item: crate::Item = [
            ("pk", S("EVENT#orders.created".into())),
            ("sk", S("#DEF".into())),
            ("gsi1pk", S("EVENTS".into())),
            ("gsi1sk", S("orders.created".into())),
            ("name", S("orders.created".into())),
            ("schema", S(r#"{"type":"object"}"#.into())),
            ("dataType", S("application/json".into())),
            ("metadata", S("{}".into())),
            ("createdAt", S("2026-01-01T00:00:00.000000000Z".into())),
            ("updatedAt", S("2026-01-01T00:00:00.000000000Z".into())),
            ("version", N("3".into())),
            ("subscriptionCount", N("2".into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();

        // WHEN it is read
        let read: super::EventItem = crate::from_item(item).unwrap();

        // THEN it is a plain event that refers to no schema
        assert!(read.refers_to.is_empty());
        let definition = read.into_definition(None);
        assert_eq!((definition.envelope, definition.schema_references.len()), (None, 0));
        assert_eq!(definition.version, gateway_core::Version(3));
    }

    #[test]
    fn an_event_item_keeps_its_envelope_and_references_and_names_each_schema_once() {
        let mut event = gateway_core::fixtures::definition("people.changed");
        event.envelope = Some(gateway_core::Envelope::Resource);
        let reference = |schema: &str, version: u32| gateway_core::SchemaReference {
            uri: gateway_core::SchemaUri::parse(&format!("urn:{schema}:{version}")).unwrap(),
            schema: gateway_core::SchemaName::parse(schema).unwrap(),
            version,
            digest: "d".repeat(64),
        };
        event.schema_references = vec![reference("person", 1), reference("address", 1), reference("person", 2)];
        let item = crate::to_item(&super::EventItem::new(&event)).unwrap();
        let read: super::EventItem = crate::from_item(item.clone()).unwrap();
        let names: Vec<&str> = read.refers_to.iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["address", "person"], "sorted, once each");
        assert_eq!(read.into_definition(event.received_at), event);
        // A plain event writes none of the new attributes, so a replace can ask for their absence.
        let plain = crate::to_item(&super::EventItem::new(&gateway_core::fixtures::definition("plain"))).unwrap();
        for attribute in ["envelope", "schemaReferences", "refersTo"] {
            assert!(item.contains_key(attribute) && !plain.contains_key(attribute), "{attribute}");
        }
    }

    #[test]
    fn version_keys_sort_by_number_and_referrer_keys_as_referrers_do() {
        assert!(super::version_sk(9) < super::version_sk(10));
        assert!(super::version_sk(999) < super::version_sk(u32::MAX));
        let event = |n: &str| gateway_core::Referrer::Event(gateway_core::EventName::parse(n).unwrap());
        let schema = |n: &str| gateway_core::Referrer::Schema(gateway_core::SchemaName::parse(n).unwrap());
        let mut referrers = vec![schema("a"), event("b"), event("a.b"), schema("B"), event("a")];
        let mut by_key = referrers.clone();
        by_key.sort_by_key(super::referrer_sk);
        referrers.sort();
        assert_eq!(by_key, referrers);
        // Every partition's own items (`#...`) sort before its edges.
        assert!(super::version_sk(u32::MAX).as_str() < super::REFERRER_PREFIX);
        assert!(super::SCHEMA_SK < super::VERSION_PREFIX && super::DELETING_SK < super::SCHEMA_SK);
    }
}
