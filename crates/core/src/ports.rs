//! The ports: what the use cases need from the outside world, one small trait per concern.
//!
//! Every store returns the core [`Error`]: a store knows when an event already exists or a
//! version is stale, and says so in the domain's words; anything else is `Error::Unavailable`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::ids::{
    EventId, EventName, FunctionId, IdempotencyKey, SchemaName, SchemaUri, SourceName, SubscriptionId, Version,
};
use crate::model::{
    Delivery, EventDefinition, Schema, SchemaVersion, SchemaVersionSummary, Source, Subscription, Trigger,
    TriggerReceipt,
};
use crate::page::{Page, PageRequest};

/// Events. A definition's `schema_references` make it a referrer of each schema they name (other
/// than none): the store keeps that in step with every create, replace and delete, so that a
/// schema an event refers to cannot be deleted.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Fails with `EventExists` if the name is taken, `NotFound` if a schema it refers to is gone.
    async fn create_event(&self, event: &EventDefinition) -> Result<()>;
    async fn get_event(&self, name: &EventName) -> Result<Option<EventDefinition>>;
    async fn list_events(&self, page: &PageRequest) -> Result<Page<EventDefinition>>;
    /// Writes `event` if the stored version is still `event.version - 1` (`VersionMismatch`
    /// otherwise); `NotFound` if a schema it refers to is gone.
    async fn replace_event(&self, event: &EventDefinition) -> Result<()>;
    /// Deletes the event if it is at `expected` (any version when `None`). Without `cascade`
    /// it fails with `EventHasSubscriptions` while any subscription exists and `EventHasSources`
    /// while any source triggers it; with it, those go too.
    async fn delete_event(&self, name: &EventName, expected: Option<Version>, cascade: bool) -> Result<()>;
}

#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Fails with `NotFound` if the subscription's event does not exist.
    async fn create_subscription(&self, subscription: &Subscription) -> Result<()>;
    async fn get_subscription(&self, id: &SubscriptionId) -> Result<Option<Subscription>>;
    async fn list_subscriptions(&self, event: Option<&EventName>, page: &PageRequest) -> Result<Page<Subscription>>;
    /// Writes `subscription` if the stored version is still `subscription.version - 1`.
    async fn replace_subscription(&self, subscription: &Subscription) -> Result<()>;
    async fn delete_subscription(&self, id: &SubscriptionId, expected: Option<Version>) -> Result<()>;
}

/// Sources: which native records trigger which event.
#[async_trait]
pub trait SourceStore: Send + Sync {
    /// Fails with `SourceExists` if the name is taken, `NotFound` if its event does not exist.
    async fn create_source(&self, source: &Source) -> Result<()>;
    async fn get_source(&self, name: &SourceName) -> Result<Option<Source>>;
    async fn list_sources(&self, page: &PageRequest) -> Result<Page<Source>>;
    /// Writes `source` if the stored version is still `source.version - 1` (`VersionMismatch` otherwise).
    async fn replace_source(&self, source: &Source) -> Result<()>;
    async fn delete_source(&self, name: &SourceName, expected: Option<Version>) -> Result<()>;
    /// Every source, in one read: what an incoming batch of native records is matched against.
    async fn all_sources(&self) -> Result<Vec<Source>>;
}

/// The registry's read side: what validating against a registered schema needs.
#[async_trait]
pub trait SchemaLookup: Send + Sync {
    /// The registered version `uri` names, if any.
    async fn schema_by_uri(&self, uri: &SchemaUri) -> Result<Option<SchemaVersion>>;
}

/// The schema registry. A version's `references` make its schema a referrer of each other schema
/// they name; the store keeps that in step, so a referred-to schema cannot be deleted. A URI names
/// at most one version across the registry.
#[async_trait]
pub trait SchemaStore: SchemaLookup {
    /// Writes a new schema with its version 1. Fails with `SchemaExists` if the name is taken,
    /// `SchemaUriTaken` if the URI is, `NotFound` if a schema it refers to is gone.
    async fn create_schema(&self, schema: &Schema, first: &SchemaVersion) -> Result<()>;
    /// Writes `version` (number `schema.latest_version`) and `schema`, if the stored schema is
    /// still at revision `schema.revision - 1` (`VersionMismatch` otherwise; `NotFound` if it is
    /// gone, or a schema the version refers to is); `SchemaUriTaken` if the URI is taken.
    async fn add_schema_version(&self, schema: &Schema, version: &SchemaVersion) -> Result<()>;
    async fn get_schema(&self, name: &SchemaName) -> Result<Option<Schema>>;
    async fn list_schemas(&self, page: &PageRequest) -> Result<Page<Schema>>;
    async fn get_schema_version(&self, name: &SchemaName, version: u32) -> Result<Option<SchemaVersion>>;
    /// What every version of the schema is (not its document), oldest first; empty if there is
    /// no such schema.
    async fn schema_versions(&self, name: &SchemaName) -> Result<Vec<SchemaVersionSummary>>;
    /// Writes `schema`'s description and compatibility if the stored schema is still at revision
    /// `schema.revision - 1` (`VersionMismatch` otherwise, `NotFound` if it is gone).
    async fn replace_schema(&self, schema: &Schema) -> Result<()>;
    /// Deletes the schema and every version of it, if it is at revision `expected` (any when
    /// `None`); `SchemaReferenced`, naming every referrer, while an event or another schema
    /// refers to it.
    async fn delete_schema(&self, name: &SchemaName, expected: Option<Version>) -> Result<()>;
}

/// What a trigger needs to read: the definition and every subscription, in one read.
#[async_trait]
pub trait TriggerSource: Send + Sync {
    async fn trigger_target(&self, name: &EventName) -> Result<Option<TriggerTarget>>;
}

/// An event's definition and every subscription to it, shared rather than copied: a trigger
/// reads them and builds its deliveries from them, and a store that keeps them in memory hands
/// out the same ones to every trigger.
#[derive(Clone, Debug)]
pub struct TriggerTarget {
    pub definition: Arc<EventDefinition>,
    pub subscriptions: Vec<Arc<Subscription>>,
}

/// What happened when a trigger was handed over.
#[derive(Clone, Debug, PartialEq)]
pub enum Acceptance {
    /// The trigger and its deliveries are durably recorded: they will run.
    Accepted,
    /// The idempotency key was already used for this event: here is the first answer.
    Replayed(TriggerReceipt),
}

/// Durably accepts a trigger's deliveries: after `Accepted`, every delivery runs at least once
/// or ends as failed with its error, whatever crashes in between.
#[async_trait]
pub trait TriggerAcceptor: Send + Sync {
    async fn accept(&self, trigger: &Trigger, idempotency_key: Option<&IdempotencyKey>) -> Result<Acceptance>;
}

#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// The deliveries of one trigger; `None` if no trigger has that id.
    async fn deliveries_of_trigger(&self, event_id: &EventId) -> Result<Option<Vec<Delivery>>>;
    /// The deliveries of an event's triggers, newest trigger first.
    async fn deliveries_of_event(&self, event: &EventName, page: &PageRequest) -> Result<Page<Delivery>>;
}

/// A delivery that is due, with what is needed to invoke its function.
#[derive(Clone, Debug, PartialEq)]
pub struct DueDelivery {
    pub delivery: Delivery,
    pub data_type: crate::ids::DataType,
    pub payload: Vec<u8>,
    /// The native record that triggered it, if one did.
    pub source: Option<crate::model::Origin>,
    /// The CloudEvent that triggered it, if one did.
    pub cloud_event: Option<crate::cloudevent::Received>,
    /// The claim this attempt runs under: only it may record the attempt.
    pub claim: ClaimToken,
}

/// Names one claim of a delivery. An attempt that outlives its lease (a long invoke, a clock
/// step) finds the delivery claimed again, or settled, by the time it ends; its outcome must then
/// not be recorded, or it could move a delivered delivery back to pending or count an attempt
/// twice. So the outbox records an attempt only for the claim that is current.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClaimToken(String);

impl ClaimToken {
    /// A new, unique token (a ULID).
    #[allow(clippy::new_without_default)] // a default that is random would surprise
    pub fn new() -> Self {
        Self(ulid::Ulid::new().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether an attempt's outcome was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    Recorded,
    /// The attempt's claim is no longer the delivery's: nothing was written.
    ClaimLost,
}

/// A delivery after one attempt: its new state, with the attempt in its history, and when it
/// is tried again if it is pending.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempted {
    pub delivery: Delivery,
    /// Set when the delivery is pending again: when, and after how long.
    pub retry: Option<Retry>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retry {
    pub at: DateTime<Utc>,
    pub delay: Duration,
}

/// The local gateway's queue of deliveries: a transactional outbox in its store.
#[async_trait]
pub trait DeliveryOutbox: Send + Sync {
    /// Claims up to `limit` pending deliveries that are due at `now`; a claim expires after
    /// `lease`, so a delivery claimed by a process that died is claimed again.
    async fn claim_due(&self, now: DateTime<Utc>, limit: u32, lease: Duration) -> Result<Vec<DueDelivery>>;
    /// Records the outcome of the attempt made under `due.claim`, if that claim is still the
    /// delivery's (then the claim ends); otherwise writes nothing and answers `ClaimLost`.
    async fn record_attempt(&self, due: &DueDelivery, attempted: &Attempted) -> Result<Recorded>;
}

/// Why an invocation did not happen, or failed: the invoke itself, or (`sync`, or a runner that
/// reports it) the function's own error, with its type and message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct InvokeError {
    pub message: String,
    /// False when trying again cannot help (the function does not exist, access is denied).
    pub retryable: bool,
}

/// How to invoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvocationMode {
    /// Hand the event to Lambda's queue (`InvocationType=Event`).
    Async,
    /// Wait for the function (`InvocationType=RequestResponse`), at most `timeout`.
    Sync { timeout: Duration },
}

/// What a successful invoke tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invoked {
    /// Lambda accepted the event; the function has not run yet. `request_id` is the id Lambda
    /// gave the invocation (`x-amzn-RequestId`), which its invocation record names again; an
    /// emulator may give none.
    Accepted { request_id: Option<String> },
    /// The function ran and returned without an error.
    Succeeded,
}

/// Runs a function with a payload.
#[async_trait]
pub trait FunctionInvoker: Send + Sync {
    async fn invoke(
        &self,
        function: &FunctionId,
        payload: &[u8],
        mode: InvocationMode,
    ) -> std::result::Result<Invoked, InvokeError>;
}

/// Failed deliveries, and putting them back to pending as a new series of attempts.
#[async_trait]
pub trait DeliveryRedrive: Send + Sync {
    /// The failed deliveries of trigger `event_id` (of one subscription only, if given); `None`
    /// if there is no such trigger.
    async fn failed_of_trigger(
        &self,
        event_id: &EventId,
        subscription: Option<&SubscriptionId>,
    ) -> Result<Option<Vec<Delivery>>>;
    /// The failed deliveries of `subscription` whose trigger was received in `[since, until)`,
    /// oldest first, at most `limit`.
    async fn failed_of_subscription(
        &self,
        subscription: &SubscriptionId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>>;
    /// Writes `next` (pending, generation one more than the stored record's, no attempts yet in
    /// the series) and makes it due now, if the stored record is still failed at generation
    /// `next.generation - 1`; false (and nothing written) otherwise, so redriving twice runs it
    /// once. On AWS this also hands the delivery to the queue, with the payload kept beside the
    /// failure. `Error::InvalidInput` refuses this one delivery (its reason is reported, the
    /// others go on); any other error ends the request.
    async fn redrive(&self, next: &Delivery) -> Result<bool>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

pub trait IdSource: Send + Sync {
    fn event_id(&self) -> EventId;
    fn subscription_id(&self) -> SubscriptionId;
}

/// Time-ordered random ids (ULIDs).
pub struct UlidSource;

impl IdSource for UlidSource {
    fn event_id(&self) -> EventId {
        EventId::from_ulid(ulid::Ulid::new())
    }

    fn subscription_id(&self) -> SubscriptionId {
        SubscriptionId::from_ulid(ulid::Ulid::new())
    }
}

/// What an idempotency key held when a trigger tried to claim it (the cloud acceptor's view).
#[derive(Clone, Debug, PartialEq)]
pub enum KeyClaim {
    /// The key was free (or expired): it now holds this trigger's receipt, as in progress.
    Claimed,
    /// A trigger with this key was published: here is its receipt, to answer again.
    Published(TriggerReceipt),
    /// Another request holds the key and may still be publishing.
    InProgress,
    /// A request claimed the key for the trigger of this receipt but never completed it (it
    /// failed or crashed) and its lease ran out. Nothing is changed yet. That trigger may have
    /// been accepted after all: the caller settles it first ([`DeliveryRecorder::settle_trigger`]
    /// with `Abandoned`) and, if it was accepted, completes the key with its receipt and answers
    /// that; if not, it takes the key over ([`IdempotencyKeys::take_over_key`]) for its own
    /// trigger. Settling before touching the key means that whatever fails in between, the key
    /// still names the earlier trigger, and the next retry finds it again.
    Lapsed(TriggerReceipt),
}

/// Idempotency keys as the cloud acceptor keeps them: claimed before publishing, completed after,
/// expired after a window (24 hours). A key is scoped to its event (`receipt.event`) and bound to
/// the payload it was first used with (`Trigger::payload_digest`): a claim with another payload
/// fails with `Error::IdempotencyKeyReused`, since answering it with the first receipt would
/// drop the new payload without a word.
#[async_trait]
pub trait IdempotencyKeys: Send + Sync {
    /// Claims `key` for the trigger of `receipt`, whose payload has `payload_digest`, at `now`,
    /// holding it for `lease`.
    async fn claim_key(
        &self,
        key: &IdempotencyKey,
        receipt: &TriggerReceipt,
        payload_digest: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<KeyClaim>;
    /// Marks the key as published with `receipt`, the one a retry will get, if the key is still
    /// held for the trigger `holder` (this caller's: after a take-over, `receipt` may be the
    /// earlier attempt's, found accepted).
    async fn complete_key(&self, key: &IdempotencyKey, holder: &EventId, receipt: &TriggerReceipt) -> Result<()>;
    /// Takes over a key that `Lapsed` for the trigger `held`, which is settled abandoned: the key
    /// now holds `receipt` (this caller's trigger) for `lease`. False if someone else took it first.
    async fn take_over_key(
        &self,
        key: &IdempotencyKey,
        held: &EventId,
        receipt: &TriggerReceipt,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool>;
    /// Gives the key up after a failed publish (ends its lease at once, if it still holds the
    /// trigger of `receipt`), so a retry can go ahead.
    async fn abandon_key(&self, key: &IdempotencyKey, receipt: &TriggerReceipt) -> Result<()>;
}

/// How long after its `receivedAt` a published trigger may still be settled accepted by its
/// trigger handler: past it, the dispatcher settles an unsettled one abandoned. It is also how
/// long a claimed idempotency key waits for its trigger before a retry may take over. Longer
/// than the trigger handler's timeout (10 s in the template), so that a handler that is merely
/// slow is rarely overtaken (which only ever turns its 202 into an error, never the reverse).
pub const ACCEPTANCE_WINDOW: Duration = Duration::from_secs(60);

/// How long a trigger's settled state is kept at least: as long as one of its messages can
/// still reach the dispatcher (14 days in the fan-out dead-letter queue, 7 in the delivery
/// queue, 14 in its dead-letter queue: `template.yaml`'s retention periods). A message older
/// than this whose trigger's state is gone cannot be judged, and is dead-lettered.
pub const TRIGGER_STATE_LIFETIME: Duration = Duration::from_secs(35 * 24 * 60 * 60);

/// Whether a published trigger's deliveries run, settled once for each `eventId`.
///
/// The cloud acceptor publishes a trigger's deliveries (one SNS message or several) and then
/// settles it `Accepted`, answering 202 only once that is written. The dispatcher runs a
/// freshly published message only if its trigger is `Accepted`; one whose trigger never was (the
/// acceptor failed between its publishes, or crashed) it settles `Abandoned` after a while and
/// drops. Whoever settles first wins, so an error answer and a running delivery never meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerState {
    Accepted,
    Abandoned,
}

impl TriggerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Abandoned => "abandoned",
        }
    }
}

/// What the delivery log holds of one trigger, for the dispatcher: its settled state (none yet,
/// or a trigger logged before triggers were settled) and the recorded deliveries asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordedTrigger {
    pub state: Option<TriggerState>,
    pub deliveries: Vec<Delivery>,
}

/// The delivery log as the cloud acceptor and dispatcher write it. Delivery writes are upserts
/// that never move a record backwards (a delivered record stays delivered; attempts never
/// decrease), so they may arrive late, twice, or out of order.
#[async_trait]
pub trait DeliveryRecorder: Send + Sync {
    /// Settles whether the trigger `event_id` (of `event`, received at `received_at`) runs:
    /// writes `want` unless it is settled already, and answers the state it is settled in.
    async fn settle_trigger(
        &self,
        event_id: &EventId,
        event: &EventName,
        received_at: DateTime<Utc>,
        want: TriggerState,
    ) -> Result<TriggerState>;
    /// Logs an accepted trigger: its deliveries as pending and the event's `receivedAt`.
    async fn record_trigger(&self, trigger: &Trigger) -> Result<()>;
    /// Writes one delivery's state after an attempt (`attempts` counts it).
    async fn record_delivery(&self, delivery: &Delivery) -> Result<()>;
    /// Writes a delivery that ended `failed`, keeping beside it, where the store can, the
    /// trigger's payload as `message` carries it, so that it can be redriven without its message
    /// (the cloud keeps it only with failures: a trigger that succeeds costs no more). By default
    /// the record alone.
    async fn record_failed(&self, delivery: &Delivery, message: &crate::message::DeliveryMessage) -> Result<()> {
        let _ = message;
        self.record_delivery(delivery).await
    }
    /// Begins `next`'s series (pending, no attempt yet, generation one more than the stored
    /// record's) if the stored record is still `failed` at `next.generation - 1`; false, and
    /// nothing written, otherwise. What the dispatcher writes before it runs a dead letter moved
    /// back to the queue, so that two copies moved back together (or one racing an API redrive)
    /// start the series once.
    async fn start_series(&self, next: &Delivery) -> Result<bool>;
    /// Takes over `orphan`, a series begun long ago and never attempted, as read: writes it with
    /// `updated_at` = `now` if the stored record is still exactly that (pending, no attempt, the
    /// same generation and `updated_at`); false otherwise, so two copies take it over once.
    async fn take_over_series(&self, orphan: &Delivery, now: DateTime<Utc>) -> Result<bool>;
    /// The trigger's settled state and the recorded state of these of its deliveries
    /// (unrecorded ones are left out), in one read.
    async fn recorded_trigger(&self, event_id: &EventId, subscriptions: &[SubscriptionId]) -> Result<RecordedTrigger>;
}
