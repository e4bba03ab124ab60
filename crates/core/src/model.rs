//! The gateway's resources, with the field names of the product's spec.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use utoipa::ToSchema;

use crate::formats::{Compatibility, SchemaFormat};
use crate::ids::{
    DataType, EventId, EventName, FunctionId, SchemaName, SchemaUri, SourceName, SubscriptionId, Version,
};
use crate::pattern::EventPattern;

/// Custom JSON attached by the user to an event or a subscription; the gateway never reads it.
pub type Metadata = serde_json::Map<String, Value>;

/// A subscription's metadata, shared with each of its deliveries instead of copied into them
/// (a trigger at 100 subscriptions would otherwise copy 100 maps).
pub type SharedMetadata = Arc<Metadata>;

/// An event definition as stored and served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventDefinition {
    pub name: EventName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema every payload must satisfy (draft 2020-12 unless `$schema` names another):
    /// an object or a boolean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub schema: Option<Arc<Value>>,
    pub data_type: DataType,
    /// `resource`: every payload is a resource lifecycle envelope, whose `resource.content` is
    /// validated against the registered schema `resource.schema` names. Absent: any payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
    /// The registered schema versions `schema` reaches through `$ref`, resolved when the
    /// definition was written (read-only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schema_references: Vec<SchemaReference>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    /// When the event was last triggered; absent until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: Version,
}

/// What a client sends to create or replace an event definition.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventDraft {
    /// Required on create; on replace it may be omitted but must match the path if given.
    #[serde(default)]
    pub name: Option<EventName>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
    #[serde(default)]
    pub data_type: Option<DataType>,
    #[serde(default)]
    pub envelope: Option<Envelope>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

/// The shape an event's payloads take, beyond its own schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    /// A resource lifecycle event: `{"action": "create" | "update" | "delete", "resource":
    /// {"schema": <URI>, "content": {...}}}` (see `envelope.rs`).
    Resource,
}

/// A registered schema version that a schema reaches through `$ref`: its URI, which schema and
/// version it is, and the digest of its document, so that a validator compiled with it is never
/// used with another document under the same URI.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaReference {
    pub uri: SchemaUri,
    pub schema: SchemaName,
    pub version: u32,
    /// SHA-256 of the version's document, hex.
    pub digest: String,
}

/// What refers to a registered schema (through `$ref`, to any of its versions), and so keeps it
/// from being deleted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Referrer {
    /// An event definition's `schema`.
    Event(EventName),
    /// Another registered schema's version.
    Schema(SchemaName),
}

impl Referrer {
    /// "event 'a', schema 'b'", for messages.
    pub fn list(referrers: &[Referrer]) -> String {
        referrers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for Referrer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Event(name) => write!(f, "event '{name}'"),
            Self::Schema(name) => write!(f, "schema '{name}'"),
        }
    }
}

/// A schema in the registry: a name, a format and a compatibility mode, over its versions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schema {
    pub name: SchemaName,
    pub format: SchemaFormat,
    pub compatibility: Compatibility,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The newest version's number (versions count from 1).
    pub latest_version: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Counts every change to the schema (a new version, a new description or mode): its
    /// `ETag`, for `If-Match`. Not a schema version.
    pub revision: Version,
}

/// One version of a registered schema. Its document never changes once written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaVersion {
    pub name: SchemaName,
    pub version: u32,
    pub uri: SchemaUri,
    pub format: SchemaFormat,
    /// The schema document.
    #[schema(value_type = Object)]
    pub schema: Arc<Value>,
    /// SHA-256 of the document, hex.
    pub digest: String,
    /// The registered versions it reaches through `$ref`, transitively.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<SchemaReference>,
    pub created_at: DateTime<Utc>,
}

/// What a schema's listing of its versions shows of each: not the document, which may be 64 KiB
/// (a thousand of them would not fit in an answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaVersionSummary {
    #[schema(minimum = 1)]
    pub version: u32,
    pub uri: SchemaUri,
    /// SHA-256 of the document, hex.
    pub digest: String,
    pub created_at: DateTime<Utc>,
}

impl SchemaVersion {
    pub fn summary(&self) -> SchemaVersionSummary {
        SchemaVersionSummary {
            version: self.version,
            uri: self.uri.clone(),
            digest: self.digest.clone(),
            created_at: self.created_at,
        }
    }

    /// How a `$ref` to this version is recorded.
    pub fn as_reference(&self) -> SchemaReference {
        SchemaReference {
            uri: self.uri.clone(),
            schema: self.name.clone(),
            version: self.version,
            digest: self.digest.clone(),
        }
    }
}

/// What a client sends to register a schema (its version 1).
#[derive(Clone, Debug, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchemaDraft {
    pub name: SchemaName,
    pub format: SchemaFormat,
    #[schema(value_type = Object)]
    pub schema: Value,
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub compatibility: Option<Compatibility>,
    #[serde(default)]
    pub description: Option<String>,
}

/// What a client sends to add a version.
#[derive(Clone, Debug, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchemaVersionDraft {
    #[schema(value_type = Object)]
    pub schema: Value,
    #[serde(default)]
    pub uri: Option<String>,
}

/// What a client sends to change a schema's description or compatibility mode.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchemaChange {
    #[serde(default)]
    pub compatibility: Option<Compatibility>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub subscription_id: SubscriptionId,
    pub event: EventName,
    pub function_id: FunctionId,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: SharedMetadata,
    /// An EventBridge event pattern over the invocation document; a trigger it does not match
    /// makes no delivery for this subscription. None: every trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventPattern>,
    /// How its deliveries run; every field left out takes the gateway's default.
    #[serde(default)]
    pub delivery: DeliveryPolicy,
    /// What its function receives: the gateway's invocation payload (`native`, the default) or a
    /// structured CloudEvent (`cloudevents`).
    #[serde(default, skip_serializing_if = "PayloadFormat::is_native")]
    pub format: PayloadFormat,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: Version,
}

/// What a client sends to create or replace a subscription.
#[derive(Clone, Debug, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionDraft {
    /// Required on create; a subscription cannot move to another event.
    #[serde(default)]
    pub event: Option<EventName>,
    pub function_id: FunctionId,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
    /// An EventBridge event pattern; every problem in it is reported with its pointer.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    #[serde(default)]
    pub delivery: Option<DeliveryPolicy>,
    /// `native` (the default) or `cloudevents`.
    #[serde(default)]
    pub format: Option<PayloadFormat>,
}

/// What a subscribed function receives for each delivery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// The gateway's invocation payload (`InvocationPayload`).
    #[default]
    Native,
    /// A structured CloudEvent 1.0 (JSON format): see `cloudevent::structured_out`.
    Cloudevents,
}

impl PayloadFormat {
    pub fn is_native(&self) -> bool {
        *self == Self::Native
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Cloudevents => "cloudevents",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "native" => Some(Self::Native),
            "cloudevents" => Some(Self::Cloudevents),
            _ => None,
        }
    }
}

/// How a subscribed function is invoked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// `InvocationType=Event`: Lambda queues the event and runs the function under its own retry
    /// policy; the gateway learns only that Lambda took it (`invoked`).
    #[default]
    Async,
    /// `InvocationType=RequestResponse`: the gateway waits for the function and records its real
    /// outcome; a function error is a failed attempt, retried under the policy.
    Sync,
}

impl DeliveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Async => "async",
            Self::Sync => "sync",
        }
    }
}

/// A subscription's delivery policy. Each limit left out is the gateway's default
/// (`delivery::RetryPolicy`); the ranges are checked when the subscription is written
/// (`delivery::check_policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliveryPolicy {
    #[serde(default)]
    pub mode: DeliveryMode,
    /// Attempts in all, the first included (1 to 185).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 185)]
    pub max_attempts: Option<u32>,
    /// No attempt starts later than this after the series began (the trigger, or its redrive):
    /// 60 to 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 60, maximum = 86400)]
    pub max_age_seconds: Option<u32>,
    /// How long a `sync` invocation is waited for (1 to 900; also bounded by the dispatcher's own
    /// deadline). Only `sync` may set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 900)]
    pub timeout_seconds: Option<u32>,
}

impl DeliveryPolicy {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Which native AWS records trigger which event: those its EventBridge pattern matches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub name: SourceName,
    /// The event every matching record triggers.
    pub event: EventName,
    /// Matched against each record as AWS delivers it (each element of `Records`, or the whole
    /// EventBridge event).
    pub pattern: EventPattern,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: Version,
}

/// What a client sends to create or replace a source.
#[derive(Clone, Debug, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceDraft {
    /// Required on create; on replace it may be omitted but must match the path if given.
    #[serde(default)]
    pub name: Option<SourceName>,
    /// Required on create; a source cannot move to another event.
    #[serde(default)]
    pub event: Option<EventName>,
    /// An EventBridge event pattern; every problem in it is reported with its pointer.
    #[schema(value_type = Object)]
    pub pattern: Value,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

/// The AWS service a native record came from, as its `eventSource` names it (EventBridge events
/// as their own `source` prefix does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum SourceKind {
    #[serde(rename = "aws:s3")]
    S3,
    #[serde(rename = "aws:sns")]
    Sns,
    #[serde(rename = "aws:sqs")]
    Sqs,
    #[serde(rename = "aws:dynamodb")]
    DynamoDb,
    #[serde(rename = "aws:kinesis")]
    Kinesis,
    #[serde(rename = "aws.events")]
    EventBridge,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S3 => "aws:s3",
            Self::Sns => "aws:sns",
            Self::Sqs => "aws:sqs",
            Self::DynamoDb => "aws:dynamodb",
            Self::Kinesis => "aws:kinesis",
            Self::EventBridge => "aws.events",
        }
    }

    /// Whether Lambda hands these records over in order from a stream (Kinesis, DynamoDB
    /// Streams): a record that fails must hold back the ones after it (as must a FIFO queue's
    /// message: `NativeRecord::is_ordered`).
    pub fn is_stream(self) -> bool {
        matches!(self, Self::Kinesis | Self::DynamoDb)
    }
}

/// Where a trigger came from when a native record triggered it: the source that matched and the
/// record. Subscribers receive it as `source`; HTTP triggers have none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Origin {
    /// The source's name.
    pub name: SourceName,
    pub kind: SourceKind,
    /// The native record's id: what every delivery of the record shares (SQS `messageId`, SNS
    /// `MessageId`, DynamoDB and Kinesis `eventID`, EventBridge `id`, S3
    /// `bucket/key/version/eventName/sequencer`; see `gateway-aws-events`).
    pub id: String,
    /// The bucket, topic, queue or stream ARN, or the EventBridge event's first resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not settled: an attempt is due, running, or waiting for its backoff.
    Pending,
    /// A `sync` invocation returned without a function error: the function succeeded.
    Delivered,
    /// An `async` invocation was accepted by Lambda, which runs the function under its own
    /// retry policy: the gateway has not seen it succeed.
    Invoked,
    /// No attempt left (`maxAttempts`, `maxAgeSeconds`, or an error no retry can mend); on AWS it
    /// is in the dead-letter queue with its last error. It may be redriven.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Invoked => "invoked",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "invoked" => Some(Self::Invoked),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    /// Whether the gateway is done with the delivery (nothing more will be attempted).
    pub fn is_settled(self) -> bool {
        self != Self::Pending
    }

    /// Whether the function was reached: it succeeded (`sync`) or Lambda took the event (`async`).
    pub fn is_handed_over(self) -> bool {
        matches!(self, Self::Delivered | Self::Invoked)
    }
}

/// How one attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttemptResult {
    /// `sync`: the function returned without an error.
    Succeeded,
    /// `async`: Lambda accepted the event.
    Invoked,
    /// The invoke failed, or the function did (`error` says which and why).
    Failed,
}

/// One attempt of a delivery, as its history keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// Which series it belongs to: 0 for the trigger's, one more for each redrive.
    #[serde(default)]
    pub generation: u32,
    /// Its number within the series, from 1.
    pub number: u32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub result: AttemptResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The id Lambda gave an `async` invocation: what its invocation record must name for the
    /// gateway to believe it (`crate::outcome`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One trigger's delivery to one subscribed function, and how it has gone so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub event_id: EventId,
    pub event: EventName,
    pub subscription_id: SubscriptionId,
    pub function_id: FunctionId,
    /// The subscription's metadata at trigger time: it is part of the invocation payload.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: SharedMetadata,
    pub status: DeliveryStatus,
    /// Attempts made in the current series (what `maxAttempts` counts).
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The series of attempts: 0 for the trigger's own, one more for each redrive. A record
    /// never goes back to an earlier generation.
    #[serde(default)]
    pub generation: u32,
    /// When the current series was redriven; none for the trigger's own series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redriven_at: Option<DateTime<Utc>>,
    /// The subscription's delivery policy when the series began (trigger or redrive).
    #[serde(default)]
    pub policy: DeliveryPolicy,
    /// The last [`MAX_HISTORY`] attempts, oldest first, across every series.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Attempt>,
    /// What the function receives (the subscription's `format` when the series began).
    #[serde(default, skip_serializing_if = "PayloadFormat::is_native")]
    pub format: PayloadFormat,
    /// How Lambda itself said the current series' `async` invocation ended, when the function
    /// sends its invocation records to the gateway's outcome queue (`crate::outcome`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<Reported>,
}

/// What Lambda reported of an `async` invocation once it was done with it: the invocation
/// record its on-success or on-failure destination received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reported {
    /// The record's `timestamp`: when Lambda finished with the event.
    pub at: DateTime<Utc>,
    /// `requestContext.condition`: `Success`, `RetriesExhausted` or `EventAgeExceeded`.
    pub condition: String,
    /// `requestContext.approximateInvokeCount`: how many times Lambda ran the function (its own
    /// retries included; Lambda says it is approximate).
    pub approximate_invoke_count: u32,
}

/// How many attempts a delivery's history keeps.
pub const MAX_HISTORY: usize = 10;

impl Delivery {
    /// When the current series began: what `maxAgeSeconds` is counted from.
    pub fn series_started_at(&self) -> DateTime<Utc> {
        self.redriven_at.unwrap_or(self.received_at)
    }

    /// Whether this state may replace `recorded`, the stored state of the same delivery: records
    /// never move backwards. A later series (generation) always wins; within a series, Lambda's
    /// first report of how the invocation ended is the last word (no write of the gateway's own
    /// replaces it, nor a second report, and it replaces any other); otherwise a delivery the function was handed
    /// (`delivered`, `invoked`) stays so, and more attempts win, a settled state over a pending
    /// one at the same count. So writes may come late, twice or out of order.
    pub fn supersedes(&self, recorded: &Delivery) -> bool {
        if self.generation != recorded.generation {
            return self.generation > recorded.generation;
        }
        if recorded.reported.is_some() {
            // The first report of a series stands (a second, of a second invocation, does not).
            return false;
        }
        if self.reported.is_some() {
            return true;
        }
        if recorded.status.is_handed_over() {
            return false;
        }
        (self.attempts, self.status.is_settled()) >= (recorded.attempts, recorded.status.is_settled())
    }

    /// Adds an attempt to the history, forgetting the oldest past [`MAX_HISTORY`].
    pub fn remember(&mut self, attempt: Attempt) {
        self.history.push(attempt);
        if self.history.len() > MAX_HISTORY {
            let extra = self.history.len() - MAX_HISTORY;
            self.history.drain(..extra);
        }
    }
}

/// An accepted trigger: the payload once, and one pending delivery per subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct Trigger {
    pub event_id: EventId,
    pub event: EventName,
    pub received_at: DateTime<Utc>,
    pub data_type: DataType,
    /// The payload exactly as received; when `data_type` is JSON it has been parsed and validated.
    pub payload: Vec<u8>,
    /// The native record that triggered it, if one did.
    pub source: Option<Origin>,
    /// The CloudEvent that triggered it, if one did: what of it the subscribers receive.
    pub cloud_event: Option<crate::cloudevent::Received>,
    pub deliveries: Vec<Delivery>,
}

impl Trigger {
    /// SHA-256 of the payload and its type, hex: what binds an idempotency key to the trigger
    /// it was first used for, without keeping the payload beside the key.
    pub fn payload_digest(&self) -> String {
        crate::digest::sha256_hex(&[self.data_type.as_str().as_bytes(), &self.payload])
    }

    pub fn receipt(&self) -> TriggerReceipt {
        TriggerReceipt {
            event_id: self.event_id,
            event: self.event.clone(),
            received_at: self.received_at,
            deliveries: self
                .deliveries
                .iter()
                .map(|d| DeliveryRef { subscription_id: d.subscription_id, function_id: d.function_id.clone() })
                .collect(),
        }
    }
}

/// The answer to a trigger (202), also returned again for a retried `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerReceipt {
    pub event_id: EventId,
    pub event: EventName,
    pub received_at: DateTime<Utc>,
    pub deliveries: Vec<DeliveryRef>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRef {
    pub subscription_id: SubscriptionId,
    pub function_id: FunctionId,
}

/// The JSON each subscribed function receives.
///
/// JSON payloads are embedded as they are in `data`; any other `dataType` arrives as a base64
/// string in `data` with `"dataEncoding": "base64"` (the choice CloudEvents makes with `data_base64`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvocationPayload<'a> {
    pub event_id: EventId,
    pub event: &'a EventName,
    pub subscription_id: SubscriptionId,
    /// The delivery's series: 0 for the trigger's, one more for each redrive. With `eventId` and
    /// `subscriptionId` it names the series an invocation belongs to (what Lambda's invocation
    /// record, which echoes this payload, is matched back to).
    pub generation: u32,
    /// The attempt within the series, from 1.
    pub attempt: u32,
    pub function_id: &'a FunctionId,
    pub received_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub data: InvocationData<'a>,
    pub data_type: &'a DataType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_encoding: Option<&'static str>,
    #[schema(value_type = Object)]
    pub metadata: &'a Metadata,
    /// The native record that triggered it; absent for an HTTP trigger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a Origin>,
    /// The CloudEvent that triggered it (its `id`, `source`, `subject`, `time`, `dataschema` and
    /// extensions); absent for any other trigger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_event: Option<&'a crate::cloudevent::Received>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum InvocationData<'a> {
    Json(&'a RawValue),
    Base64(String),
}
