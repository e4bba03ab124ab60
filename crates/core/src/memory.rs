//! In-memory adapters for every port: what unit tests, API tests and benchmarks run on.
//! Nothing here survives the process; the durable stores live in their own crates.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::ids::{
    DataType, EventId, EventName, FunctionId, IdempotencyKey, SchemaName, SchemaUri, SourceName, SubscriptionId,
    Version,
};
use crate::model::{
    Delivery, DeliveryStatus, EventDefinition, Origin, Referrer, Schema, SchemaReference, SchemaVersion,
    SchemaVersionSummary, Source, Subscription, Trigger, TriggerReceipt,
};
use crate::page::{decode_cursor, encode_cursor, Page, PageRequest};
use crate::ports::{
    Acceptance, Attempted, ClaimToken, Clock, DeliveryLog, DeliveryOutbox, DeliveryRecorder, DeliveryRedrive,
    DueDelivery, EventStore, FunctionInvoker, InvocationMode, InvokeError, Invoked, Recorded, RecordedTrigger,
    SchemaLookup, SchemaStore, SourceStore, SubscriptionStore, TriggerAcceptor, TriggerSource, TriggerState,
    TriggerTarget,
};

#[derive(Default)]
struct State {
    /// Behind `Arc`, as a trigger reads them: handed out to each trigger, not copied.
    events: BTreeMap<EventName, Arc<EventDefinition>>,
    /// Keyed by event first, so a trigger reads its subscriptions as one range.
    subscriptions: BTreeMap<(EventName, SubscriptionId), Arc<Subscription>>,
    subscription_events: HashMap<SubscriptionId, EventName>,
    sources: BTreeMap<SourceName, Source>,
    triggers: HashMap<EventId, StoredTrigger>,
    deliveries: BTreeMap<(EventId, SubscriptionId), QueuedDelivery>,
    receipts: HashMap<(EventName, IdempotencyKey), TriggerReceipt>,
    schemas: BTreeMap<SchemaName, Schema>,
    schema_versions: BTreeMap<(SchemaName, u32), SchemaVersion>,
    schema_uris: HashMap<SchemaUri, (SchemaName, u32)>,
}

impl State {
    /// `NotFound` for the first schema `references` name that is not registered (other than `own`).
    fn check_referenced(&self, references: &[SchemaReference], own: Option<&SchemaName>) -> Result<()> {
        match references.iter().find(|r| Some(&r.schema) != own && !self.schemas.contains_key(&r.schema)) {
            Some(gone) => Err(Error::NotFound { what: "schema", id: gone.schema.to_string() }),
            None => Ok(()),
        }
    }

    fn referrers_of(&self, name: &SchemaName) -> Vec<Referrer> {
        let names = |refs: &[SchemaReference]| refs.iter().any(|r| r.schema == *name);
        let mut referrers: BTreeSet<Referrer> = BTreeSet::new();
        referrers.extend(
            self.events.values().filter(|e| names(&e.schema_references)).map(|e| Referrer::Event(e.name.clone())),
        );
        referrers.extend(
            self.schema_versions
                .values()
                .filter(|v| v.name != *name && names(&v.references))
                .map(|v| Referrer::Schema(v.name.clone())),
        );
        referrers.into_iter().collect()
    }

    fn take_uri(&self, version: &SchemaVersion) -> Result<()> {
        match self.schema_uris.get(&version.uri) {
            Some((schema, number)) => {
                Err(Error::SchemaUriTaken { uri: version.uri.clone(), schema: schema.clone(), version: *number })
            }
            None => Ok(()),
        }
    }

    fn insert_version(&mut self, version: &SchemaVersion) {
        self.schema_uris.insert(version.uri.clone(), (version.name.clone(), version.version));
        self.schema_versions.insert((version.name.clone(), version.version), version.clone());
    }
}

struct StoredTrigger {
    data_type: DataType,
    payload: Arc<Vec<u8>>,
    source: Option<Origin>,
    cloud_event: Option<crate::cloudevent::Received>,
}

struct QueuedDelivery {
    delivery: Delivery,
    next_attempt_at: DateTime<Utc>,
    leased_until: Option<DateTime<Utc>>,
    claim: Option<ClaimToken>,
}

#[derive(Default, Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn page_of<T: Clone, K: Ord + Clone + serde::Serialize>(
    items: impl Iterator<Item = (K, T)>,
    page: &PageRequest,
) -> Page<T> {
    let mut items: Vec<(K, T)> = items.take(page.limit as usize + 1).collect();
    let next_cursor = if items.len() > page.limit as usize {
        items.truncate(page.limit as usize);
        items.last().map(|(k, _)| encode_cursor(k))
    } else {
        None
    };
    Page { items: items.into_iter().map(|(_, v)| v).collect(), next_cursor }
}

/// A page of a map ordered by name, after the cursor's name.
fn page_by_name<K, T>(map: &BTreeMap<K, T>, page: &PageRequest) -> Result<Page<T>>
where
    K: Ord + Clone + serde::Serialize + serde::de::DeserializeOwned,
    T: Clone,
{
    let after: Option<K> = after(page)?;
    let items =
        map.iter().filter(|(name, _)| after.as_ref().is_none_or(|a| *name > a)).map(|(k, v)| (k.clone(), v.clone()));
    Ok(page_of(items, page))
}

fn after<K: serde::de::DeserializeOwned>(page: &PageRequest) -> Result<Option<K>> {
    page.cursor.as_deref().map(decode_cursor).transpose()
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn create_event(&self, event: &EventDefinition) -> Result<()> {
        let mut state = self.state();
        if state.events.contains_key(&event.name) {
            return Err(Error::EventExists(event.name.clone()));
        }
        state.check_referenced(&event.schema_references, None)?;
        state.events.insert(event.name.clone(), Arc::new(event.clone()));
        Ok(())
    }

    async fn get_event(&self, name: &EventName) -> Result<Option<EventDefinition>> {
        Ok(self.state().events.get(name).map(|e| (**e).clone()))
    }

    async fn list_events(&self, page: &PageRequest) -> Result<Page<EventDefinition>> {
        let page = page_by_name(&self.state().events, page)?;
        Ok(Page { items: page.items.into_iter().map(Arc::unwrap_or_clone).collect(), next_cursor: page.next_cursor })
    }

    async fn replace_event(&self, event: &EventDefinition) -> Result<()> {
        let mut state = self.state();
        state.check_referenced(&event.schema_references, None)?;
        let Some(current) = state.events.get_mut(&event.name) else {
            return Err(Error::NotFound { what: "event", id: event.name.to_string() });
        };
        if current.version.next() != event.version {
            return Err(Error::VersionMismatch { what: "event", id: event.name.to_string(), current: current.version });
        }
        // receivedAt belongs to triggers, not to the definition: keep the latest.
        let received_at = current.received_at.max(event.received_at);
        *current = Arc::new(EventDefinition { received_at, ..event.clone() });
        Ok(())
    }

    async fn delete_event(&self, name: &EventName, expected: Option<Version>, cascade: bool) -> Result<()> {
        let mut state = self.state();
        let Some(current) = state.events.get(name) else {
            return Err(Error::NotFound { what: "event", id: name.to_string() });
        };
        if expected.is_some_and(|v| v != current.version) {
            return Err(Error::VersionMismatch { what: "event", id: name.to_string(), current: current.version });
        }
        let subscribed: Vec<(EventName, SubscriptionId)> =
            state.subscriptions.range(range_of(name)).map(|(k, _)| k.clone()).collect();
        if !subscribed.is_empty() && !cascade {
            return Err(Error::EventHasSubscriptions { event: name.clone(), count: subscribed.len() as u64 });
        }
        let triggering: Vec<SourceName> =
            state.sources.values().filter(|s| s.event == *name).map(|s| s.name.clone()).collect();
        if !triggering.is_empty() && !cascade {
            return Err(Error::EventHasSources { event: name.clone(), count: triggering.len() as u64 });
        }
        for key in subscribed {
            state.subscription_events.remove(&key.1);
            state.subscriptions.remove(&key);
        }
        for source in triggering {
            state.sources.remove(&source);
        }
        state.events.remove(name);
        Ok(())
    }
}

fn range_of(name: &EventName) -> std::ops::RangeInclusive<(EventName, SubscriptionId)> {
    let lowest = SubscriptionId::from_ulid(ulid::Ulid::nil());
    let highest = SubscriptionId::from_ulid(ulid::Ulid::from(u128::MAX));
    (name.clone(), lowest)..=(name.clone(), highest)
}

#[async_trait]
impl SubscriptionStore for MemoryStore {
    async fn create_subscription(&self, subscription: &Subscription) -> Result<()> {
        let mut state = self.state();
        if !state.events.contains_key(&subscription.event) {
            return Err(Error::NotFound { what: "event", id: subscription.event.to_string() });
        }
        state.subscription_events.insert(subscription.subscription_id, subscription.event.clone());
        state
            .subscriptions
            .insert((subscription.event.clone(), subscription.subscription_id), Arc::new(subscription.clone()));
        Ok(())
    }

    async fn get_subscription(&self, id: &SubscriptionId) -> Result<Option<Subscription>> {
        let state = self.state();
        Ok(state
            .subscription_events
            .get(id)
            .and_then(|event| state.subscriptions.get(&(event.clone(), *id)).map(|s| (**s).clone())))
    }

    async fn list_subscriptions(&self, event: Option<&EventName>, page: &PageRequest) -> Result<Page<Subscription>> {
        let after: Option<SubscriptionId> = after(page)?;
        let state = self.state();
        let mut all: Vec<&Subscription> = match event {
            Some(name) => state.subscriptions.range(range_of(name)).map(|(_, s)| &**s).collect(),
            None => state.subscriptions.values().map(|s| &**s).collect(),
        };
        all.sort_by_key(|s| s.subscription_id);
        let items = all
            .into_iter()
            .filter(|s| after.is_none_or(|a| s.subscription_id > a))
            .map(|s| (s.subscription_id, s.clone()));
        Ok(page_of(items, page))
    }

    async fn replace_subscription(&self, subscription: &Subscription) -> Result<()> {
        let mut state = self.state();
        let key = (subscription.event.clone(), subscription.subscription_id);
        let Some(current) = state.subscriptions.get_mut(&key) else {
            return Err(Error::NotFound { what: "subscription", id: subscription.subscription_id.to_string() });
        };
        if current.version.next() != subscription.version {
            return Err(Error::VersionMismatch {
                what: "subscription",
                id: subscription.subscription_id.to_string(),
                current: current.version,
            });
        }
        *current = Arc::new(subscription.clone());
        Ok(())
    }

    async fn delete_subscription(&self, id: &SubscriptionId, expected: Option<Version>) -> Result<()> {
        let mut state = self.state();
        let not_found = || Error::NotFound { what: "subscription", id: id.to_string() };
        let event = state.subscription_events.get(id).cloned().ok_or_else(not_found)?;
        let key = (event, *id);
        let current = state.subscriptions.get(&key).ok_or_else(not_found)?.version;
        if expected.is_some_and(|v| v != current) {
            return Err(Error::VersionMismatch { what: "subscription", id: id.to_string(), current });
        }
        state.subscriptions.remove(&key);
        state.subscription_events.remove(id);
        Ok(())
    }
}

#[async_trait]
impl SourceStore for MemoryStore {
    async fn create_source(&self, source: &Source) -> Result<()> {
        let mut state = self.state();
        if !state.events.contains_key(&source.event) {
            return Err(Error::NotFound { what: "event", id: source.event.to_string() });
        }
        if state.sources.contains_key(&source.name) {
            return Err(Error::SourceExists(source.name.clone()));
        }
        state.sources.insert(source.name.clone(), source.clone());
        Ok(())
    }

    async fn get_source(&self, name: &SourceName) -> Result<Option<Source>> {
        Ok(self.state().sources.get(name).cloned())
    }

    async fn list_sources(&self, page: &PageRequest) -> Result<Page<Source>> {
        page_by_name(&self.state().sources, page)
    }

    async fn replace_source(&self, source: &Source) -> Result<()> {
        let mut state = self.state();
        let Some(current) = state.sources.get_mut(&source.name) else {
            return Err(Error::NotFound { what: "source", id: source.name.to_string() });
        };
        if current.version.next() != source.version {
            return Err(Error::VersionMismatch {
                what: "source",
                id: source.name.to_string(),
                current: current.version,
            });
        }
        *current = source.clone();
        Ok(())
    }

    async fn delete_source(&self, name: &SourceName, expected: Option<Version>) -> Result<()> {
        let mut state = self.state();
        let Some(current) = state.sources.get(name) else {
            return Err(Error::NotFound { what: "source", id: name.to_string() });
        };
        if expected.is_some_and(|v| v != current.version) {
            return Err(Error::VersionMismatch { what: "source", id: name.to_string(), current: current.version });
        }
        state.sources.remove(name);
        Ok(())
    }

    async fn all_sources(&self) -> Result<Vec<Source>> {
        Ok(self.state().sources.values().cloned().collect())
    }
}

#[async_trait]
impl SchemaLookup for MemoryStore {
    async fn schema_by_uri(&self, uri: &SchemaUri) -> Result<Option<SchemaVersion>> {
        let state = self.state();
        Ok(state.schema_uris.get(uri).and_then(|key| state.schema_versions.get(key)).cloned())
    }
}

#[async_trait]
impl SchemaStore for MemoryStore {
    async fn create_schema(&self, schema: &Schema, first: &SchemaVersion) -> Result<()> {
        let mut state = self.state();
        if state.schemas.contains_key(&schema.name) {
            return Err(Error::SchemaExists(schema.name.clone()));
        }
        state.take_uri(first)?;
        state.check_referenced(&first.references, Some(&schema.name))?;
        state.schemas.insert(schema.name.clone(), schema.clone());
        state.insert_version(first);
        Ok(())
    }

    async fn add_schema_version(&self, schema: &Schema, version: &SchemaVersion) -> Result<()> {
        let mut state = self.state();
        let Some(current) = state.schemas.get(&schema.name) else {
            return Err(Error::NotFound { what: "schema", id: schema.name.to_string() });
        };
        if current.revision.next() != schema.revision {
            return Err(Error::VersionMismatch {
                what: "schema",
                id: schema.name.to_string(),
                current: current.revision,
            });
        }
        state.take_uri(version)?;
        state.check_referenced(&version.references, Some(&schema.name))?;
        state.schemas.insert(schema.name.clone(), schema.clone());
        state.insert_version(version);
        Ok(())
    }

    async fn get_schema(&self, name: &SchemaName) -> Result<Option<Schema>> {
        Ok(self.state().schemas.get(name).cloned())
    }

    async fn list_schemas(&self, page: &PageRequest) -> Result<Page<Schema>> {
        page_by_name(&self.state().schemas, page)
    }

    async fn get_schema_version(&self, name: &SchemaName, version: u32) -> Result<Option<SchemaVersion>> {
        Ok(self.state().schema_versions.get(&(name.clone(), version)).cloned())
    }

    async fn schema_versions(&self, name: &SchemaName) -> Result<Vec<SchemaVersionSummary>> {
        let state = self.state();
        Ok(state
            .schema_versions
            .range((name.clone(), 0)..=(name.clone(), u32::MAX))
            .map(|(_, v)| v.summary())
            .collect())
    }

    async fn replace_schema(&self, schema: &Schema) -> Result<()> {
        let mut state = self.state();
        let Some(current) = state.schemas.get_mut(&schema.name) else {
            return Err(Error::NotFound { what: "schema", id: schema.name.to_string() });
        };
        if current.revision.next() != schema.revision {
            return Err(Error::VersionMismatch {
                what: "schema",
                id: schema.name.to_string(),
                current: current.revision,
            });
        }
        // Only what a change may change: the versions are the store's.
        current.compatibility = schema.compatibility;
        current.description = schema.description.clone();
        current.updated_at = schema.updated_at;
        current.revision = schema.revision;
        Ok(())
    }

    async fn delete_schema(&self, name: &SchemaName, expected: Option<Version>) -> Result<()> {
        let mut state = self.state();
        let Some(current) = state.schemas.get(name) else {
            return Err(Error::NotFound { what: "schema", id: name.to_string() });
        };
        if expected.is_some_and(|v| v != current.revision) {
            return Err(Error::VersionMismatch { what: "schema", id: name.to_string(), current: current.revision });
        }
        let referrers = state.referrers_of(name);
        if !referrers.is_empty() {
            return Err(Error::SchemaReferenced { schema: name.clone(), referrers });
        }
        let versions: Vec<SchemaVersion> =
            state.schema_versions.range((name.clone(), 0)..=(name.clone(), u32::MAX)).map(|(_, v)| v.clone()).collect();
        for version in versions {
            state.schema_uris.remove(&version.uri);
            state.schema_versions.remove(&(version.name, version.version));
        }
        state.schemas.remove(name);
        Ok(())
    }
}

#[async_trait]
impl TriggerSource for MemoryStore {
    async fn trigger_target(&self, name: &EventName) -> Result<Option<TriggerTarget>> {
        let state = self.state();
        Ok(state.events.get(name).map(|definition| TriggerTarget {
            definition: definition.clone(),
            subscriptions: state.subscriptions.range(range_of(name)).map(|(_, s)| s.clone()).collect(),
        }))
    }
}

#[async_trait]
impl TriggerAcceptor for MemoryStore {
    async fn accept(&self, trigger: &Trigger, idempotency_key: Option<&IdempotencyKey>) -> Result<Acceptance> {
        let mut state = self.state();
        if let Some(key) = idempotency_key {
            let held = (trigger.event.clone(), key.clone());
            if let Some(first) = state.receipts.get(&held) {
                // Like SQLite, compare with the first trigger's stored payload.
                let same = state
                    .triggers
                    .get(&first.event_id)
                    .is_some_and(|stored| stored.data_type == trigger.data_type && *stored.payload == trigger.payload);
                if !same {
                    return Err(Error::IdempotencyKeyReused { event: trigger.event.clone(), key: key.clone() });
                }
                return Ok(Acceptance::Replayed(first.clone()));
            }
            state.receipts.insert(held, trigger.receipt());
        }
        if let Some(event) = state.events.get_mut(&trigger.event) {
            // Copies the definition only if a trigger still holds it.
            let event = Arc::make_mut(event);
            event.received_at = event.received_at.max(Some(trigger.received_at));
        }
        let stored = StoredTrigger {
            data_type: trigger.data_type.clone(),
            payload: Arc::new(trigger.payload.clone()),
            source: trigger.source.clone(),
            cloud_event: trigger.cloud_event.clone(),
        };
        state.triggers.insert(trigger.event_id, stored);
        for delivery in &trigger.deliveries {
            state.deliveries.insert(
                (delivery.event_id, delivery.subscription_id),
                QueuedDelivery {
                    delivery: delivery.clone(),
                    next_attempt_at: trigger.received_at,
                    leased_until: None,
                    claim: None,
                },
            );
        }
        Ok(Acceptance::Accepted)
    }
}

#[async_trait]
impl DeliveryLog for MemoryStore {
    async fn deliveries_of_trigger(&self, event_id: &EventId) -> Result<Option<Vec<Delivery>>> {
        let state = self.state();
        if !state.triggers.contains_key(event_id) {
            return Ok(None);
        }
        Ok(Some(
            state
                .deliveries
                .values()
                .filter(|q| q.delivery.event_id == *event_id)
                .map(|q| q.delivery.clone())
                .collect(),
        ))
    }

    async fn deliveries_of_event(&self, event: &EventName, page: &PageRequest) -> Result<Page<Delivery>> {
        let after: Option<(EventId, SubscriptionId)> = after(page)?;
        let state = self.state();
        let mut matching: Vec<&Delivery> =
            state.deliveries.values().map(|q| &q.delivery).filter(|d| d.event == *event).collect();
        // Newest trigger first; within a trigger, by subscription.
        matching.sort_by(|a, b| b.event_id.cmp(&a.event_id).then(a.subscription_id.cmp(&b.subscription_id)));
        let items = matching
            .into_iter()
            .filter(|d| after.is_none_or(|(e, s)| d.event_id < e || (d.event_id == e && d.subscription_id > s)))
            .map(|d| ((d.event_id, d.subscription_id), d.clone()));
        Ok(page_of(items, page))
    }
}

#[async_trait]
impl DeliveryOutbox for MemoryStore {
    async fn claim_due(&self, now: DateTime<Utc>, limit: u32, lease: Duration) -> Result<Vec<DueDelivery>> {
        let mut state = self.state();
        let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let State { deliveries, triggers, .. } = &mut *state;
        let mut due = Vec::new();
        for queued in deliveries.values_mut() {
            if due.len() >= limit as usize {
                break;
            }
            let free = queued.leased_until.is_none_or(|until| until <= now);
            if queued.delivery.status == DeliveryStatus::Pending && queued.next_attempt_at <= now && free {
                let claim = ClaimToken::new();
                queued.leased_until = Some(now + lease);
                queued.claim = Some(claim.clone());
                let stored = &triggers[&queued.delivery.event_id];
                due.push(DueDelivery {
                    delivery: queued.delivery.clone(),
                    data_type: stored.data_type.clone(),
                    payload: stored.payload.as_ref().clone(),
                    source: stored.source.clone(),
                    cloud_event: stored.cloud_event.clone(),
                    claim,
                });
            }
        }
        Ok(due)
    }

    async fn record_attempt(&self, due: &DueDelivery, attempted: &Attempted) -> Result<Recorded> {
        let mut state = self.state();
        let (event_id, subscription_id) = (due.delivery.event_id, due.delivery.subscription_id);
        let Some(queued) = state.deliveries.get_mut(&(event_id, subscription_id)) else {
            return Err(Error::NotFound { what: "delivery", id: format!("{event_id}/{subscription_id}") });
        };
        if queued.claim.as_ref() != Some(&due.claim) || queued.delivery.status != DeliveryStatus::Pending {
            return Ok(Recorded::ClaimLost);
        }
        queued.leased_until = None;
        queued.claim = None;
        queued.delivery = attempted.delivery.clone();
        if let Some(retry) = attempted.retry {
            queued.next_attempt_at = retry.at;
        }
        Ok(Recorded::Recorded)
    }
}

#[async_trait]
impl DeliveryRedrive for MemoryStore {
    async fn failed_of_trigger(
        &self,
        event_id: &EventId,
        subscription: Option<&SubscriptionId>,
    ) -> Result<Option<Vec<Delivery>>> {
        let state = self.state();
        if !state.triggers.contains_key(event_id) {
            return Ok(None);
        }
        Ok(Some(
            state
                .deliveries
                .values()
                .map(|q| &q.delivery)
                .filter(|d| d.event_id == *event_id && d.status == DeliveryStatus::Failed)
                .filter(|d| subscription.is_none_or(|s| d.subscription_id == *s))
                .cloned()
                .collect(),
        ))
    }

    async fn failed_of_subscription(
        &self,
        subscription: &SubscriptionId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let state = self.state();
        let mut found: Vec<Delivery> = state
            .deliveries
            .values()
            .map(|q| &q.delivery)
            .filter(|d| d.subscription_id == *subscription && d.status == DeliveryStatus::Failed)
            .filter(|d| d.received_at >= since && d.received_at < until)
            .cloned()
            .collect();
        found.sort_by_key(|d| (d.received_at, d.event_id));
        found.truncate(limit as usize);
        Ok(found)
    }

    async fn redrive(&self, next: &Delivery) -> Result<bool> {
        let mut state = self.state();
        let Some(queued) = state.deliveries.get_mut(&(next.event_id, next.subscription_id)) else {
            return Ok(false);
        };
        let current = &queued.delivery;
        if current.status != DeliveryStatus::Failed || current.generation + 1 != next.generation {
            return Ok(false);
        }
        queued.delivery = next.clone();
        queued.next_attempt_at = next.redriven_at.unwrap_or(next.updated_at);
        queued.leased_until = None;
        queued.claim = None;
        Ok(true)
    }
}

/// The cloud delivery log in memory: settled trigger states and delivery records that never
/// move backwards, as the DynamoDB store keeps them (`store_contract::recorder_contract`).
#[derive(Default)]
pub struct MemoryRecorder {
    states: Mutex<HashMap<EventId, TriggerState>>,
    deliveries: Mutex<BTreeMap<(EventId, SubscriptionId), Delivery>>,
}

impl MemoryRecorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The recorded delivery, if any.
    pub fn delivery(&self, event_id: &EventId, subscription_id: &SubscriptionId) -> Option<Delivery> {
        self.deliveries.lock().unwrap_or_else(|p| p.into_inner()).get(&(*event_id, *subscription_id)).cloned()
    }

    /// How many delivery records there are, of every trigger.
    pub fn delivery_count(&self) -> usize {
        self.deliveries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[async_trait]
impl DeliveryRecorder for MemoryRecorder {
    async fn settle_trigger(
        &self,
        event_id: &EventId,
        _event: &EventName,
        _received_at: DateTime<Utc>,
        want: TriggerState,
    ) -> Result<TriggerState> {
        Ok(*self.states.lock().unwrap_or_else(|p| p.into_inner()).entry(*event_id).or_insert(want))
    }

    async fn record_trigger(&self, trigger: &Trigger) -> Result<()> {
        for d in &trigger.deliveries {
            self.record_delivery(d).await?;
        }
        Ok(())
    }

    async fn record_delivery(&self, d: &Delivery) -> Result<()> {
        let mut log = self.deliveries.lock().unwrap_or_else(|p| p.into_inner());
        let key = (d.event_id, d.subscription_id);
        if log.get(&key).is_none_or(|recorded| d.supersedes(recorded)) {
            log.insert(key, d.clone());
        }
        Ok(())
    }

    async fn start_series(&self, next: &Delivery) -> Result<bool> {
        let mut log = self.deliveries.lock().unwrap_or_else(|p| p.into_inner());
        let key = (next.event_id, next.subscription_id);
        let failed_before = log.get(&key).is_some_and(|recorded| {
            recorded.status == DeliveryStatus::Failed && recorded.generation + 1 == next.generation
        });
        if failed_before {
            log.insert(key, next.clone());
        }
        Ok(failed_before)
    }

    async fn take_over_series(&self, orphan: &Delivery, now: DateTime<Utc>) -> Result<bool> {
        let mut log = self.deliveries.lock().unwrap_or_else(|p| p.into_inner());
        let key = (orphan.event_id, orphan.subscription_id);
        let unchanged = log.get(&key).is_some_and(|r| {
            r.status == DeliveryStatus::Pending
                && r.attempts == 0
                && r.generation == orphan.generation
                && r.updated_at == orphan.updated_at
        });
        if unchanged {
            log.insert(key, Delivery { updated_at: now, ..orphan.clone() });
        }
        Ok(unchanged)
    }

    async fn recorded_trigger(&self, event_id: &EventId, subscriptions: &[SubscriptionId]) -> Result<RecordedTrigger> {
        let log = self.deliveries.lock().unwrap_or_else(|p| p.into_inner());
        Ok(RecordedTrigger {
            state: self.states.lock().unwrap_or_else(|p| p.into_inner()).get(event_id).copied(),
            deliveries: subscriptions.iter().filter_map(|s| log.get(&(*event_id, *s)).cloned()).collect(),
        })
    }
}

/// A clock that stands still until told to move.
pub struct FixedClock(Mutex<DateTime<Utc>>);

impl FixedClock {
    pub fn at(now: DateTime<Utc>) -> Self {
        Self(Mutex::new(now))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An invoker that records what it was asked to run, failing the first `failures` calls.
#[derive(Default)]
pub struct RecordingInvoker {
    calls: Mutex<Vec<(FunctionId, Vec<u8>)>>,
    modes: Mutex<Vec<InvocationMode>>,
    failures: Mutex<u32>,
}

impl RecordingInvoker {
    pub fn failing(failures: u32) -> Self {
        Self { failures: Mutex::new(failures), ..Self::default() }
    }

    pub fn calls(&self) -> Vec<(FunctionId, Vec<u8>)> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How each call asked to invoke, in order.
    pub fn modes(&self) -> Vec<InvocationMode> {
        self.modes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl FunctionInvoker for RecordingInvoker {
    async fn invoke(
        &self,
        function: &FunctionId,
        payload: &[u8],
        mode: InvocationMode,
    ) -> std::result::Result<Invoked, InvokeError> {
        let call = {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            calls.push((function.clone(), payload.to_vec()));
            calls.len()
        };
        self.modes.lock().unwrap_or_else(|p| p.into_inner()).push(mode);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if *failures > 0 {
            *failures -= 1;
            return Err(InvokeError { message: "function is throttled".into(), retryable: true });
        }
        Ok(match mode {
            InvocationMode::Async => Invoked::Accepted { request_id: Some(format!("req-{call}")) },
            InvocationMode::Sync { .. } => Invoked::Succeeded,
        })
    }
}
