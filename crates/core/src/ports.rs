//! The ports: what the use cases need from the outside world, one small trait per concern.
//!
//! Every store returns the core [`Error`]: a store knows when an event already exists or a
//! version is stale, and says so in the domain's words; anything else is `Error::Unavailable`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::ids::{EventId, EventName, FunctionId, IdempotencyKey, SubscriptionId, Version};
use crate::model::{Delivery, EventDefinition, Subscription, Trigger, TriggerReceipt};
use crate::page::{Page, PageRequest};

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Fails with `EventExists` if the name is taken.
    async fn create_event(&self, event: &EventDefinition) -> Result<()>;
    async fn get_event(&self, name: &EventName) -> Result<Option<EventDefinition>>;
    async fn list_events(&self, page: &PageRequest) -> Result<Page<EventDefinition>>;
    /// Writes `event` if the stored version is still `event.version - 1` (`VersionMismatch` otherwise).
    async fn replace_event(&self, event: &EventDefinition) -> Result<()>;
    /// Deletes the event if it is at `expected` (any version when `None`). Without `cascade`
    /// it fails with `EventHasSubscriptions` while any subscription exists; with it, those go too.
    async fn delete_event(
        &self,
        name: &EventName,
        expected: Option<Version>,
        cascade: bool,
    ) -> Result<()>;
}

#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Fails with `NotFound` if the subscription's event does not exist.
    async fn create_subscription(&self, subscription: &Subscription) -> Result<()>;
    async fn get_subscription(&self, id: &SubscriptionId) -> Result<Option<Subscription>>;
    async fn list_subscriptions(
        &self,
        event: Option<&EventName>,
        page: &PageRequest,
    ) -> Result<Page<Subscription>>;
    /// Writes `subscription` if the stored version is still `subscription.version - 1`.
    async fn replace_subscription(&self, subscription: &Subscription) -> Result<()>;
    async fn delete_subscription(
        &self,
        id: &SubscriptionId,
        expected: Option<Version>,
    ) -> Result<()>;
}

/// What a trigger needs to read: the definition and every subscription, in one read.
#[async_trait]
pub trait TriggerSource: Send + Sync {
    async fn trigger_target(
        &self,
        name: &EventName,
    ) -> Result<Option<(EventDefinition, Vec<Subscription>)>>;
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
    async fn accept(
        &self,
        trigger: &Trigger,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<Acceptance>;
}

#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// The deliveries of one trigger; `None` if no trigger has that id.
    async fn deliveries_of_trigger(&self, event_id: &EventId) -> Result<Option<Vec<Delivery>>>;
    /// The deliveries of an event's triggers, newest trigger first.
    async fn deliveries_of_event(
        &self,
        event: &EventName,
        page: &PageRequest,
    ) -> Result<Page<Delivery>>;
}

/// A delivery that is due, with what is needed to invoke its function.
#[derive(Clone, Debug, PartialEq)]
pub struct DueDelivery {
    pub delivery: Delivery,
    pub data_type: crate::ids::DataType,
    pub payload: Vec<u8>,
}

/// How one attempt ended, as the delivery log records it.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptOutcome {
    Delivered,
    RetryAt { at: DateTime<Utc>, error: String },
    Failed { error: String },
}

/// The local gateway's queue of deliveries: a transactional outbox in its store.
#[async_trait]
pub trait DeliveryOutbox: Send + Sync {
    /// Claims up to `limit` pending deliveries that are due at `now`; a claim expires after
    /// `lease`, so a delivery claimed by a process that died is claimed again.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<DueDelivery>>;
    async fn record_attempt(
        &self,
        event_id: &EventId,
        subscription_id: &SubscriptionId,
        outcome: &AttemptOutcome,
    ) -> Result<()>;
}

/// Why an invocation did not happen.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct InvokeError {
    pub message: String,
    /// False when trying again cannot help (the function does not exist, access is denied).
    pub retryable: bool,
}

/// Runs a function asynchronously with a payload; success means the platform accepted it.
#[async_trait]
pub trait FunctionInvoker: Send + Sync {
    async fn invoke(
        &self,
        function: &FunctionId,
        payload: &[u8],
    ) -> std::result::Result<(), InvokeError>;
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
