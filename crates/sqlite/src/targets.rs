//! Trigger targets kept in memory between registry writes.
//!
//! A trigger reads its event's definition and subscriptions, and under load the same few
//! events are triggered over and over: reading and parsing them from SQLite each time was most
//! of a trigger's cost. This process is the only one writing the file (it holds the data
//! folder's lock), and every registry write goes through the store, which moves the cache to a
//! new generation once the write is committed. An entry is used only while its generation is
//! current, and it is stamped with the generation seen *before* its read began, so a write
//! that commits while a trigger is reading makes that read's entry stale at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use gateway_core::ports::TriggerTarget;
use gateway_core::EventName;

/// Entries kept at most; past it the cache starts over (it refills at one read per event).
const MAX_TARGETS: usize = 1024;

#[derive(Default)]
pub(crate) struct TargetCache {
    generation: AtomicU64,
    entries: RwLock<HashMap<EventName, (u64, TriggerTarget)>>,
}

impl TargetCache {
    /// The generation to stamp a read with: take it before reading.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn get(&self, name: &EventName) -> Option<TriggerTarget> {
        let current = self.generation();
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.get(name).filter(|(generation, _)| *generation == current).map(|(_, target)| target.clone())
    }

    pub(crate) fn put(&self, name: EventName, generation: u64, target: TriggerTarget) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_TARGETS {
            entries.clear();
        }
        entries.insert(name, (generation, target));
    }

    /// After every registry write, whether it succeeded or not: telling them apart is not
    /// worth it, since a needless invalidation costs one read per event.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use gateway_core::ports::{EventStore, SubscriptionStore, TriggerSource};
    use gateway_core::{fixtures, EventName};

    use crate::SqliteStore;

    #[tokio::test]
    async fn every_registry_write_reaches_the_next_trigger_read() {
        // GIVEN an event whose target a trigger has read (and so cached)
        let store = SqliteStore::in_memory().unwrap();
        let name = EventName::parse("order.created").unwrap();
        store.create_event(&fixtures::definition("order.created")).await.unwrap();
        assert!(store.trigger_target(&name).await.unwrap().unwrap().subscriptions.is_empty());
        let cached = store.trigger_target(&name).await.unwrap().unwrap();
        assert!(std::sync::Arc::ptr_eq(
            &cached.definition,
            &store.trigger_target(&name).await.unwrap().unwrap().definition
        ));

        // WHEN a subscription is added, THEN the next read has it
        let sub = fixtures::subscription(&name, "fn-a", Default::default());
        store.create_subscription(&sub).await.unwrap();
        let target = store.trigger_target(&name).await.unwrap().unwrap();
        assert_eq!(target.subscriptions.iter().map(|s| s.subscription_id).collect::<Vec<_>>(), [sub.subscription_id]);

        // WHEN it is deleted, or the event redefined, or deleted, THEN so does the next read
        store.delete_subscription(&sub.subscription_id, None).await.unwrap();
        assert!(store.trigger_target(&name).await.unwrap().unwrap().subscriptions.is_empty());
        let mut redefined = fixtures::definition("order.created");
        redefined.version = redefined.version.next();
        redefined.schema = Some(std::sync::Arc::new(serde_json::json!({"type": "object"})));
        store.replace_event(&redefined).await.unwrap();
        assert_eq!(store.trigger_target(&name).await.unwrap().unwrap().definition.schema, redefined.schema);
        store.delete_event(&name, None, false).await.unwrap();
        assert!(store.trigger_target(&name).await.unwrap().is_none());
    }
}
