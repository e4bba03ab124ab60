//! The store contract: behaviour every store must show, whatever it is built on.
//!
//! Each store crate runs these suites against a fresh instance of its store (the in-memory one
//! here, SQLite, DynamoDB on moto). A failed expectation panics with what was expected, so the
//! suites are meant to be called from tests only. Every check makes its own uniquely named
//! events, so the suites never depend on what else the store holds.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use crate::error::Error;
use crate::formats::{Compatibility, SchemaFormat};
use crate::ids::{EventName, FunctionId, IdempotencyKey, SchemaName, SchemaUri, SourceName, Version};
use crate::model::{
    Attempt, AttemptResult, Delivery, DeliveryMode, DeliveryPolicy, DeliveryStatus, Envelope, EventDefinition,
    Referrer, Schema, SchemaVersion, Source, Subscription,
};
use crate::page::PageRequest;
use crate::pattern::EventPattern;
use crate::ports::{
    Acceptance, Attempted, DeliveryLog, DeliveryOutbox, DeliveryRecorder, DeliveryRedrive, DueDelivery, EventStore,
    IdSource, Recorded, RecordedTrigger, Retry, SchemaStore, SourceStore, SubscriptionStore, TriggerAcceptor,
    TriggerSource, TriggerState, TriggerTarget, UlidSource,
};
use crate::trigger::accepted_trigger;

/// What the registry routes need: definitions, subscriptions and the trigger's one read.
pub trait RegistryStore: EventStore + SubscriptionStore + TriggerSource {}
impl<T: EventStore + SubscriptionStore + TriggerSource> RegistryStore for T {}

fn unique_name(label: &str) -> EventName {
    EventName::parse(&format!("contract.{label}.{}", ulid::Ulid::new().to_string().to_lowercase())).unwrap()
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
}

fn definition(name: &EventName) -> EventDefinition {
    let mut metadata = serde_json::Map::new();
    metadata.insert("team".into(), json!("orders"));
    EventDefinition {
        name: name.clone(),
        description: Some("contract".into()),
        schema: Some(std::sync::Arc::new(json!({"type": "object", "properties": {"id": {"type": "string"}}}))),
        data_type: Default::default(),
        envelope: None,
        schema_references: Vec::new(),
        metadata,
        received_at: None,
        created_at: at(0),
        updated_at: at(0),
        version: Version::FIRST,
    }
}

fn subscription(event: &EventName, function: &str) -> Subscription {
    Subscription {
        subscription_id: UlidSource.subscription_id(),
        event: event.clone(),
        function_id: FunctionId::parse(function).unwrap(),
        metadata: Default::default(),
        filter: None,
        delivery: Default::default(),
        format: Default::default(),
        created_at: at(1),
        updated_at: at(1),
        version: Version::FIRST,
    }
}

/// Runs every registry check.
pub async fn registry_contract<S: RegistryStore>(store: &S) {
    created_events_read_back_and_names_are_unique(store).await;
    events_list_in_name_order_across_pages(store).await;
    replace_event_requires_the_next_version(store).await;
    delete_event_honours_version_and_subscriptions(store).await;
    subscriptions_need_an_existing_event_and_read_back(store).await;
    subscriptions_list_by_event_across_pages(store).await;
    replace_and_delete_subscription_check_versions(store).await;
    trigger_target_reads_the_definition_with_all_its_subscriptions(store).await;
}

async fn created_events_read_back_and_names_are_unique<S: RegistryStore>(store: &S) {
    let name = unique_name("create");
    let event = definition(&name);
    store.create_event(&event).await.unwrap();
    assert_eq!(store.get_event(&name).await.unwrap(), Some(event.clone()));
    assert!(matches!(store.create_event(&event).await, Err(Error::EventExists(n)) if n == name));
    assert_eq!(store.get_event(&unique_name("absent")).await.unwrap(), None);
}

async fn events_list_in_name_order_across_pages<S: RegistryStore>(store: &S) {
    let prefix = unique_name("list");
    let mut names: Vec<EventName> = (0..7).map(|i| EventName::parse(&format!("{prefix}.{i}")).unwrap()).collect();
    for name in names.iter().rev() {
        store.create_event(&definition(name)).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let got = store.list_events(&page).await.unwrap();
        assert!(got.items.len() <= 3, "a page is never larger than its limit");
        seen.extend(got.items.into_iter().map(|e| e.name));
        match got.next_cursor {
            Some(cursor) => page = PageRequest { limit: 3, cursor: Some(cursor) },
            None => break,
        }
    }
    let ours: Vec<EventName> = seen.into_iter().filter(|n| n.as_str().starts_with(prefix.as_str())).collect();
    names.sort();
    assert_eq!(ours, names, "every event listed once, in name order");
    let bad = PageRequest { limit: 3, cursor: Some("not-a-cursor".into()) };
    assert!(matches!(store.list_events(&bad).await, Err(Error::InvalidCursor)));
}

async fn replace_event_requires_the_next_version<S: RegistryStore>(store: &S) {
    let name = unique_name("replace");
    store.create_event(&definition(&name)).await.unwrap();
    let mut next = definition(&name);
    next.description = Some("second".into());
    next.version = Version(2);
    next.updated_at = at(5);
    store.replace_event(&next).await.unwrap();
    assert_eq!(store.get_event(&name).await.unwrap(), Some(next.clone()));
    // A writer that read version 1 too must not overwrite version 2.
    let stale = next.clone();
    match store.replace_event(&stale).await {
        Err(Error::VersionMismatch { current, .. }) => assert_eq!(current, Version(2)),
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
    let mut missing = definition(&unique_name("missing"));
    missing.version = Version(2);
    assert!(matches!(store.replace_event(&missing).await, Err(Error::NotFound { .. })));
}

async fn delete_event_honours_version_and_subscriptions<S: RegistryStore>(store: &S) {
    let name = unique_name("delete");
    store.create_event(&definition(&name)).await.unwrap();
    assert!(matches!(store.delete_event(&name, Some(Version(9)), false).await, Err(Error::VersionMismatch { .. })));
    let sub = subscription(&name, "fn-a");
    store.create_subscription(&sub).await.unwrap();
    assert!(matches!(store.delete_event(&name, None, false).await, Err(Error::EventHasSubscriptions { count: 1, .. })));
    assert!(store.get_event(&name).await.unwrap().is_some(), "a refused delete changes nothing");
    store.delete_event(&name, Some(Version::FIRST), true).await.unwrap();
    assert_eq!(store.get_event(&name).await.unwrap(), None);
    assert_eq!(store.get_subscription(&sub.subscription_id).await.unwrap(), None, "cascade removes subscriptions");
    assert!(matches!(store.delete_event(&name, None, false).await, Err(Error::NotFound { .. })));
}

async fn subscriptions_need_an_existing_event_and_read_back<S: RegistryStore>(store: &S) {
    let with_strategy = {
        let name = unique_name("strategy");
        store.create_event(&definition(&name)).await.unwrap();
        let sub = Subscription {
            filter: Some(EventPattern::parse(&json!({"data": {"total": [{"numeric": [">", 100]}]}})).unwrap()),
            delivery: DeliveryPolicy {
                mode: DeliveryMode::Sync,
                max_attempts: Some(3),
                max_age_seconds: Some(600),
                timeout_seconds: Some(10),
            },
            ..subscription(&name, "fn-strategy")
        };
        store.create_subscription(&sub).await.unwrap();
        sub
    };
    assert_eq!(
        store.get_subscription(&with_strategy.subscription_id).await.unwrap(),
        Some(with_strategy.clone()),
        "a filter and a delivery policy read back as written"
    );
    let subs = store.trigger_target(&with_strategy.event).await.unwrap().unwrap().subscriptions;
    assert_eq!(subs, vec![Arc::new(with_strategy)], "and reach the trigger");
    let orphan = subscription(&unique_name("nothing"), "fn-a");
    assert!(matches!(store.create_subscription(&orphan).await, Err(Error::NotFound { what: "event", .. })));
    assert_eq!(store.get_subscription(&orphan.subscription_id).await.unwrap(), None);

    let name = unique_name("sub");
    store.create_event(&definition(&name)).await.unwrap();
    let mut sub = subscription(&name, "arn:aws:lambda:eu-west-1:123456789012:function:fn-b:live");
    std::sync::Arc::make_mut(&mut sub.metadata).insert("tenant".into(), json!({"id": 7}));
    store.create_subscription(&sub).await.unwrap();
    assert_eq!(store.get_subscription(&sub.subscription_id).await.unwrap(), Some(sub));
}

async fn subscriptions_list_by_event_across_pages<S: RegistryStore>(store: &S) {
    let name = unique_name("subs");
    let other = unique_name("subs-other");
    store.create_event(&definition(&name)).await.unwrap();
    store.create_event(&definition(&other)).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let sub = subscription(&name, &format!("fn-{i}"));
        store.create_subscription(&sub).await.unwrap();
        ids.push(sub.subscription_id);
    }
    store.create_subscription(&subscription(&other, "fn-x")).await.unwrap();

    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let got = store.list_subscriptions(Some(&name), &page).await.unwrap();
        assert!(got.items.len() <= 2);
        assert!(got.items.iter().all(|s| s.event == name), "only the event's subscriptions");
        seen.extend(got.items.into_iter().map(|s| s.subscription_id));
        match got.next_cursor {
            Some(cursor) => page = PageRequest { limit: 2, cursor: Some(cursor) },
            None => break,
        }
    }
    ids.sort();
    assert_eq!(seen, ids, "every subscription listed once, oldest first");

    let all = store.list_subscriptions(None, &PageRequest::first(100)).await.unwrap();
    assert!(all.items.iter().any(|s| s.event == other), "without a filter every event's subscriptions are listed");
}

async fn replace_and_delete_subscription_check_versions<S: RegistryStore>(store: &S) {
    let name = unique_name("subver");
    store.create_event(&definition(&name)).await.unwrap();
    let sub = subscription(&name, "fn-a");
    store.create_subscription(&sub).await.unwrap();
    let next = Subscription { function_id: FunctionId::parse("fn-b").unwrap(), version: Version(2), ..sub.clone() };
    store.replace_subscription(&next).await.unwrap();
    assert_eq!(store.get_subscription(&sub.subscription_id).await.unwrap(), Some(next.clone()));
    assert!(matches!(store.replace_subscription(&next).await, Err(Error::VersionMismatch { .. })));
    assert!(matches!(
        store.delete_subscription(&sub.subscription_id, Some(Version::FIRST)).await,
        Err(Error::VersionMismatch { current: Version(2), .. })
    ));
    store.delete_subscription(&sub.subscription_id, Some(Version(2))).await.unwrap();
    assert_eq!(store.get_subscription(&sub.subscription_id).await.unwrap(), None);
    assert!(matches!(store.delete_subscription(&sub.subscription_id, None).await, Err(Error::NotFound { .. })));
}

async fn trigger_target_reads_the_definition_with_all_its_subscriptions<S: RegistryStore>(store: &S) {
    let name = unique_name("target");
    let neighbour = EventName::parse(&format!("{name}x")).unwrap();
    store.create_event(&definition(&name)).await.unwrap();
    store.create_event(&definition(&neighbour)).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..30 {
        let sub = subscription(&name, &format!("fn-{i}"));
        store.create_subscription(&sub).await.unwrap();
        ids.push(sub.subscription_id);
    }
    store.create_subscription(&subscription(&neighbour, "fn-n")).await.unwrap();
    let TriggerTarget { definition: found, subscriptions: subs } =
        store.trigger_target(&name).await.unwrap().expect("the event exists");
    assert_eq!(*found, definition(&name));
    let mut got: Vec<_> = subs.iter().map(|s| s.subscription_id).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "all 30 subscriptions and no neighbour's");
    assert!(store.trigger_target(&unique_name("absent")).await.unwrap().is_none());
}

/// Runs every check of trigger acceptance and the delivery log.
pub async fn trigger_contract<S: RegistryStore + TriggerAcceptor + DeliveryLog>(store: &S) {
    accepted_triggers_are_logged_as_pending_deliveries(store).await;
    an_idempotency_key_replays_the_first_receipt(store).await;
    an_idempotency_key_is_refused_with_another_payload(store).await;
    deliveries_of_an_event_list_newest_trigger_first(store).await;
}

async fn accept<S: RegistryStore + TriggerAcceptor>(
    store: &S,
    name: &EventName,
    seconds: i64,
    key: Option<&IdempotencyKey>,
) -> (crate::model::Trigger, Acceptance) {
    let TriggerTarget { definition, subscriptions: subs } = store.trigger_target(name).await.unwrap().unwrap();
    let trigger = accepted_trigger(&definition, &subs, br#"{"id":"a-1"}"#.to_vec(), at(seconds), &UlidSource);
    let acceptance = store.accept(&trigger, key).await.unwrap();
    (trigger, acceptance)
}

async fn accepted_triggers_are_logged_as_pending_deliveries<S: RegistryStore + TriggerAcceptor + DeliveryLog>(
    store: &S,
) {
    let name = unique_name("accept");
    store.create_event(&definition(&name)).await.unwrap();
    for f in ["fn-a", "fn-b"] {
        store.create_subscription(&subscription(&name, f)).await.unwrap();
    }
    let (trigger, acceptance) = accept(store, &name, 60, None).await;
    assert_eq!(acceptance, Acceptance::Accepted);
    let logged = store.deliveries_of_trigger(&trigger.event_id).await.unwrap().expect("the trigger is logged");
    assert_eq!(logged.len(), 2);
    assert!(logged.iter().all(|d| d.status == DeliveryStatus::Pending && d.attempts == 0 && d.event == name));
    let event = store.get_event(&name).await.unwrap().unwrap();
    assert_eq!(event.received_at, Some(at(60)), "a trigger records receivedAt");
    assert_eq!(event.version, Version::FIRST, "a trigger is not an edit of the definition");
    assert_eq!(store.deliveries_of_trigger(&UlidSource.event_id()).await.unwrap(), None);
}

async fn an_idempotency_key_replays_the_first_receipt<S: RegistryStore + TriggerAcceptor + DeliveryLog>(store: &S) {
    let name = unique_name("idem");
    store.create_event(&definition(&name)).await.unwrap();
    store.create_subscription(&subscription(&name, "fn-a")).await.unwrap();
    let key = IdempotencyKey::parse("order-42").unwrap();
    let (first, acceptance) = accept(store, &name, 1, Some(&key)).await;
    assert_eq!(acceptance, Acceptance::Accepted);
    let (second, replay) = accept(store, &name, 2, Some(&key)).await;
    assert_eq!(replay, Acceptance::Replayed(first.receipt()));
    assert_eq!(store.deliveries_of_trigger(&second.event_id).await.unwrap(), None, "the retry accepted nothing");

    let other = unique_name("idem-other");
    store.create_event(&definition(&other)).await.unwrap();
    let (_, elsewhere) = accept(store, &other, 3, Some(&key)).await;
    assert_eq!(elsewhere, Acceptance::Accepted, "keys are scoped to their event");
}

async fn an_idempotency_key_is_refused_with_another_payload<S: RegistryStore + TriggerAcceptor + DeliveryLog>(
    store: &S,
) {
    let name = unique_name("idem-reuse");
    store.create_event(&definition(&name)).await.unwrap();
    store.create_subscription(&subscription(&name, "fn-a")).await.unwrap();
    let key = IdempotencyKey::parse("order-43").unwrap();
    let (first, acceptance) = accept(store, &name, 1, Some(&key)).await;
    assert_eq!(acceptance, Acceptance::Accepted);

    let TriggerTarget { definition, subscriptions: subs } = store.trigger_target(&name).await.unwrap().unwrap();
    let other = accepted_trigger(&definition, &subs, br#"{"id":"a-2"}"#.to_vec(), at(2), &UlidSource);
    match store.accept(&other, Some(&key)).await {
        Err(Error::IdempotencyKeyReused { event, key: reused }) => {
            assert_eq!((event, reused), (name.clone(), key.clone()))
        }
        got => panic!("a key reused with another payload must be refused, got {got:?}"),
    }
    assert_eq!(store.deliveries_of_trigger(&other.event_id).await.unwrap(), None, "the refusal accepted nothing");

    let (_, replay) = accept(store, &name, 3, Some(&key)).await;
    assert_eq!(replay, Acceptance::Replayed(first.receipt()), "the first payload still replays after a refusal");
}

async fn deliveries_of_an_event_list_newest_trigger_first<S: RegistryStore + TriggerAcceptor + DeliveryLog>(store: &S) {
    let name = unique_name("log");
    store.create_event(&definition(&name)).await.unwrap();
    for f in ["fn-a", "fn-b"] {
        store.create_subscription(&subscription(&name, f)).await.unwrap();
    }
    let mut triggers = Vec::new();
    for i in 0..3 {
        triggers.push(accept(store, &name, i, None).await.0.event_id);
        // ULIDs made within one millisecond are not ordered: keep triggers apart.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut seen = Vec::new();
    let mut page = PageRequest::first(4);
    loop {
        let got = store.deliveries_of_event(&name, &page).await.unwrap();
        assert!(got.items.len() <= 4);
        seen.extend(got.items.into_iter().map(|d| d.event_id));
        match got.next_cursor {
            Some(cursor) => page = PageRequest { limit: 4, cursor: Some(cursor) },
            None => break,
        }
    }
    let newest_first: Vec<_> = triggers.iter().rev().flat_map(|id| [*id, *id]).collect();
    assert_eq!(seen, newest_first);
}

/// Runs every check of the local outbox.
pub async fn outbox_contract<S: RegistryStore + TriggerAcceptor + DeliveryLog + DeliveryOutbox>(store: &S) {
    let name = unique_name("outbox");
    store.create_event(&definition(&name)).await.unwrap();
    store.create_subscription(&subscription(&name, "fn-a")).await.unwrap();
    store.create_subscription(&subscription(&name, "fn-b")).await.unwrap();
    let (trigger, _) = accept(store, &name, 0, None).await;
    let lease = Duration::from_secs(30);
    let ours =
        |due: &[crate::ports::DueDelivery]| due.iter().filter(|d| d.delivery.event_id == trigger.event_id).count();

    let claimed = store.claim_due(at(1), 100, lease).await.unwrap();
    assert_eq!(ours(&claimed), 2, "both deliveries are due");
    let one = claimed.iter().find(|d| d.delivery.event_id == trigger.event_id).unwrap();
    assert_eq!(one.payload, trigger.payload);
    assert_eq!(one.data_type, trigger.data_type);
    assert_eq!(ours(&store.claim_due(at(2), 100, lease).await.unwrap()), 0, "claimed deliveries are leased");

    let (a, b) = (&trigger.deliveries[0], &trigger.deliveries[1]);
    let claim_of =
        |due: &[crate::ports::DueDelivery], id| due.iter().find(|d| d.delivery.subscription_id == id).cloned().unwrap();
    let (claim_a, claim_b) = (claim_of(&claimed, a.subscription_id), claim_of(&claimed, b.subscription_id));
    let delivered = attempted(&claim_a, DeliveryStatus::Delivered, None, at(2));
    assert_eq!(store.record_attempt(&claim_a, &delivered).await.unwrap(), Recorded::Recorded);
    let retry = Attempted {
        retry: Some(Retry { at: at(100), delay: Duration::from_secs(98) }),
        ..attempted(&claim_b, DeliveryStatus::Pending, Some("throttled"), at(2))
    };
    assert_eq!(store.record_attempt(&claim_b, &retry).await.unwrap(), Recorded::Recorded);
    assert_eq!(
        store
            .record_attempt(&claim_a, &attempted(&claim_a, DeliveryStatus::Failed, Some("late"), at(3)))
            .await
            .unwrap(),
        Recorded::ClaimLost,
        "a claim records one attempt, and a delivered delivery stays delivered"
    );
    assert_eq!(ours(&store.claim_due(at(50), 100, lease).await.unwrap()), 0, "not due before its retry time");
    let again = store.claim_due(at(100), 100, lease).await.unwrap();
    assert_eq!(ours(&again), 1);
    let slow = claim_of(&again, b.subscription_id);
    assert_eq!(slow.delivery.attempts, 1, "the claim carries the recorded state on");
    assert_eq!(slow.delivery.history.len(), 1);
    // The attempt outlives its lease: once the lease runs out, the delivery is claimed again.
    let reclaimed = store.claim_due(at(131), 100, lease).await.unwrap();
    assert_eq!(ours(&reclaimed), 1, "an expired lease frees the delivery");
    let current = claim_of(&reclaimed, b.subscription_id);
    assert_ne!(current.claim, slow.claim);
    // The slow attempt ends now: its outcome is not recorded, the current claim's is.
    let slow_done = attempted(&slow, DeliveryStatus::Delivered, None, at(132));
    assert_eq!(store.record_attempt(&slow, &slow_done).await.unwrap(), Recorded::ClaimLost);
    let failed = attempted(&current, DeliveryStatus::Failed, Some("gone"), at(133));
    assert_eq!(store.record_attempt(&current, &failed).await.unwrap(), Recorded::Recorded);

    let log = store.deliveries_of_trigger(&trigger.event_id).await.unwrap().unwrap();
    let of = |id| log.iter().find(|d| d.subscription_id == id).unwrap();
    assert_eq!((of(a.subscription_id).status, of(a.subscription_id).attempts), (DeliveryStatus::Delivered, 1));
    assert_eq!(of(b.subscription_id).status, DeliveryStatus::Failed);
    assert_eq!(of(b.subscription_id).attempts, 2);
    assert_eq!(of(b.subscription_id).last_error.as_deref(), Some("gone"));
    assert_eq!(of(b.subscription_id).history, failed.delivery.history, "every attempt is in the history");
    assert_eq!(of(a.subscription_id).history, delivered.delivery.history);
    assert_eq!(ours(&store.claim_due(at(10_000), 100, lease).await.unwrap()), 0, "finished deliveries are never due");
}

/// What the worker would record after one more attempt of `due`, ending in `status`.
fn attempted(due: &DueDelivery, status: DeliveryStatus, error: Option<&str>, now: DateTime<Utc>) -> Attempted {
    let mut delivery = due.delivery.clone();
    delivery.attempts += 1;
    delivery.status = status;
    delivery.updated_at = now;
    if let Some(error) = error {
        delivery.last_error = Some(error.to_owned());
    }
    delivery.remember(Attempt {
        generation: delivery.generation,
        number: delivery.attempts,
        started_at: now,
        duration_ms: 12,
        result: if error.is_some() { AttemptResult::Failed } else { AttemptResult::Succeeded },
        error: error.map(str::to_owned),
        request_id: None,
    });
    Attempted { delivery, retry: None }
}

/// What a redrive writes: `failed` as a new series, with the subscription's function and policy
/// as they are now.
pub fn redriven(failed: &Delivery, policy: DeliveryPolicy, now: DateTime<Utc>) -> Delivery {
    Delivery {
        status: DeliveryStatus::Pending,
        attempts: 0,
        generation: failed.generation + 1,
        redriven_at: Some(now),
        updated_at: now,
        policy,
        // Lambda's report was of the old series.
        reported: None,
        ..failed.clone()
    }
}

/// Runs every check of redriving failed deliveries through the local outbox.
pub async fn redrive_contract<S: RegistryStore + TriggerAcceptor + DeliveryLog + DeliveryOutbox + DeliveryRedrive>(
    store: &S,
) {
    let name = unique_name("redrive");
    store.create_event(&definition(&name)).await.unwrap();
    let (sa, sb) = (subscription(&name, "fn-a"), subscription(&name, "fn-b"));
    store.create_subscription(&sa).await.unwrap();
    store.create_subscription(&sb).await.unwrap();
    let lease = Duration::from_secs(30);
    // Two triggers, a minute apart; each ends with fn-a failed and fn-b delivered.
    let mut triggers = Vec::new();
    for t in [0, 60] {
        let (trigger, _) = accept(store, &name, 10_000 + t, None).await;
        let claimed = store.claim_due(at(10_001 + t), 100, lease).await.unwrap();
        for due in claimed.iter().filter(|d| d.delivery.event_id == trigger.event_id) {
            let (status, error) = if due.delivery.subscription_id == sa.subscription_id {
                (DeliveryStatus::Failed, Some("boom"))
            } else {
                (DeliveryStatus::Delivered, None)
            };
            store.record_attempt(due, &attempted(due, status, error, at(10_002 + t))).await.unwrap();
        }
        triggers.push(trigger);
    }
    let first = &triggers[0];

    // What is failed is found by trigger (all, or one subscription's) and by subscription and time.
    let failed = store.failed_of_trigger(&first.event_id, None).await.unwrap().expect("the trigger exists");
    assert_eq!(failed.len(), 1, "only the failed delivery: {failed:?}");
    assert_eq!((failed[0].subscription_id, failed[0].status), (sa.subscription_id, DeliveryStatus::Failed));
    assert!(store.failed_of_trigger(&first.event_id, Some(&sb.subscription_id)).await.unwrap().unwrap().is_empty());
    assert_eq!(store.failed_of_trigger(&UlidSource.event_id(), None).await.unwrap(), None);
    let window = store.failed_of_subscription(&sa.subscription_id, at(9_000), at(20_000), 100).await.unwrap();
    assert_eq!(window.iter().map(|d| d.event_id).collect::<Vec<_>>(), [first.event_id, triggers[1].event_id]);
    let early = store.failed_of_subscription(&sa.subscription_id, at(10_000), at(10_060), 100).await.unwrap();
    assert_eq!(early.len(), 1, "since is inclusive, until exclusive");
    assert_eq!(store.failed_of_subscription(&sa.subscription_id, at(9_000), at(20_000), 1).await.unwrap().len(), 1);
    assert!(store.failed_of_subscription(&sb.subscription_id, at(9_000), at(20_000), 100).await.unwrap().is_empty());

    // A redrive makes it due now as generation 1, with no attempt in the new series and the
    // subscription's policy as it is now; the history is kept.
    let policy = DeliveryPolicy { mode: DeliveryMode::Sync, max_attempts: Some(2), ..Default::default() };
    let next = redriven(&failed[0], policy, at(20_000));
    assert!(store.redrive(&next).await.unwrap());
    assert!(!store.redrive(&next).await.unwrap(), "a second redrive while the first is pending changes nothing");
    let due = store.claim_due(at(20_000), 100, lease).await.unwrap();
    let mine: Vec<_> = due.iter().filter(|d| d.delivery.event_id == first.event_id).collect();
    assert_eq!(mine.len(), 1, "the redriven delivery is due, once");
    let d = &mine[0].delivery;
    assert_eq!((d.generation, d.attempts, d.status, d.policy), (1, 0, DeliveryStatus::Pending, policy));
    assert_eq!(d.redriven_at, Some(at(20_000)));
    assert_eq!(d.history.len(), 1, "the first series' attempt is still there");
    assert_eq!(mine[0].payload, first.payload);
    assert!(store.failed_of_trigger(&first.event_id, None).await.unwrap().unwrap().is_empty(), "no longer failed");

    // A delivered delivery is never redriven.
    let log = store.deliveries_of_trigger(&first.event_id).await.unwrap().unwrap();
    let done = log.iter().find(|d| d.subscription_id == sb.subscription_id).unwrap();
    assert!(!store.redrive(&redriven(done, DeliveryPolicy::default(), at(20_001))).await.unwrap());
    let log = store.deliveries_of_trigger(&first.event_id).await.unwrap().unwrap();
    assert_eq!(log.iter().find(|d| d.subscription_id == sb.subscription_id).unwrap().status, DeliveryStatus::Delivered);

    // The new series' attempt is recorded in its generation.
    let ok = attempted(mine[0], DeliveryStatus::Delivered, None, at(20_002));
    assert_eq!(store.record_attempt(mine[0], &ok).await.unwrap(), Recorded::Recorded);
    let log = store.deliveries_of_trigger(&first.event_id).await.unwrap().unwrap();
    let back = log.iter().find(|d| d.subscription_id == sa.subscription_id).unwrap();
    assert_eq!((back.status, back.generation, back.attempts, back.history.len()), (DeliveryStatus::Delivered, 1, 1, 2));
}

fn source(name: &str, event: &EventName) -> Source {
    let mut metadata = serde_json::Map::new();
    metadata.insert("team".into(), json!("ingest"));
    Source {
        name: SourceName::parse(name).unwrap(),
        event: event.clone(),
        pattern: EventPattern::parse(
            &json!({"eventSource": ["aws:s3"], "s3": {"object": {"key": [{"prefix": "in/"}]}}}),
        )
        .unwrap(),
        description: Some("contract".into()),
        metadata,
        created_at: at(2),
        updated_at: at(2),
        version: Version::FIRST,
    }
}

/// Runs every check of sources: their CRUD, and what they do to deleting their event.
pub async fn sources_contract<S: RegistryStore + SourceStore>(store: &S) {
    let event = unique_name("sources");
    let tag = event.as_str().rsplit('.').next().unwrap().to_owned();
    let named = |i: usize| format!("src-{tag}-{i}");

    // A source needs its event; it reads back as written; names are unique.
    let orphan = source(&named(0), &unique_name("nothing"));
    assert!(matches!(store.create_source(&orphan).await, Err(Error::NotFound { what: "event", .. })));
    store.create_event(&definition(&event)).await.unwrap();
    let first = source(&named(0), &event);
    store.create_source(&first).await.unwrap();
    assert_eq!(store.get_source(&first.name).await.unwrap(), Some(first.clone()));
    assert!(matches!(store.create_source(&first).await, Err(Error::SourceExists(_))));

    // Listed in name order across pages, and all read at once for matching.
    for i in 1..5 {
        store.create_source(&source(&named(i), &event)).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let got = store.list_sources(&page).await.unwrap();
        seen.extend(got.items.into_iter().map(|s| s.name.to_string()).filter(|n| n.contains(&tag)));
        match got.next_cursor {
            Some(cursor) => page = PageRequest { limit: 2, cursor: Some(cursor) },
            None => break,
        }
    }
    assert_eq!(seen, (0..5).map(named).collect::<Vec<_>>());
    let all = store.all_sources().await.unwrap();
    assert_eq!(all.iter().filter(|s| s.name.as_str().contains(&tag)).count(), 5);

    // Replace needs the next version; delete honours If-Match.
    let next = Source { description: None, version: Version(2), updated_at: at(3), ..first.clone() };
    store.replace_source(&next).await.unwrap();
    assert_eq!(store.get_source(&first.name).await.unwrap(), Some(next.clone()));
    assert!(matches!(store.replace_source(&next).await, Err(Error::VersionMismatch { current: Version(2), .. })));
    assert!(matches!(store.delete_source(&first.name, Some(Version::FIRST)).await, Err(Error::VersionMismatch { .. })));
    store.delete_source(&first.name, Some(Version(2))).await.unwrap();
    assert_eq!(store.get_source(&first.name).await.unwrap(), None);
    assert!(matches!(store.delete_source(&first.name, None).await, Err(Error::NotFound { what: "source", .. })));

    // An event that sources trigger is not deleted without cascade; with it, they go too.
    assert!(matches!(store.delete_event(&event, None, false).await, Err(Error::EventHasSources { count: 4, .. })));
    assert!(store.get_source(&SourceName::parse(&named(1)).unwrap()).await.unwrap().is_some());
    store.delete_event(&event, None, true).await.unwrap();
    for i in 1..5 {
        assert_eq!(store.get_source(&SourceName::parse(&named(i)).unwrap()).await.unwrap(), None, "cascade");
    }
    assert!(!store.all_sources().await.unwrap().iter().any(|s| s.name.as_str().contains(&tag)));
}

/// Runs every check of the cloud delivery log: settled trigger states and delivery records.
pub async fn recorder_contract<S: DeliveryRecorder>(store: &S) {
    let name = unique_name("recorder");
    let (a, b) = (subscription(&name, "fn-a"), subscription(&name, "fn-b"));
    let ids = [a.subscription_id, b.subscription_id];
    let trigger = accepted_trigger(&definition(&name), &[Arc::new(a), Arc::new(b)], b"{}".to_vec(), at(5), &UlidSource);
    let other = accepted_trigger(&definition(&name), &[], b"{}".to_vec(), at(6), &UlidSource);

    // Nothing is known of a trigger until it is settled or logged.
    assert_eq!(store.recorded_trigger(&trigger.event_id, &ids).await.unwrap(), RecordedTrigger::default());

    // The first settle wins, whichever way; the later ones answer it.
    assert_eq!(
        store
            .settle_trigger(&trigger.event_id, &trigger.event, trigger.received_at, TriggerState::Accepted)
            .await
            .unwrap(),
        TriggerState::Accepted
    );
    assert_eq!(
        store
            .settle_trigger(&trigger.event_id, &trigger.event, trigger.received_at, TriggerState::Abandoned)
            .await
            .unwrap(),
        TriggerState::Accepted
    );
    assert_eq!(
        store
            .settle_trigger(&trigger.event_id, &trigger.event, trigger.received_at, TriggerState::Accepted)
            .await
            .unwrap(),
        TriggerState::Accepted,
        "a retried write agrees"
    );
    assert_eq!(
        store.settle_trigger(&other.event_id, &other.event, other.received_at, TriggerState::Abandoned).await.unwrap(),
        TriggerState::Abandoned
    );
    assert_eq!(
        store.settle_trigger(&other.event_id, &other.event, other.received_at, TriggerState::Accepted).await.unwrap(),
        TriggerState::Abandoned
    );
    assert_eq!(store.recorded_trigger(&other.event_id, &[]).await.unwrap().state, Some(TriggerState::Abandoned));

    // Delivery records never move backwards: a late pending write after a delivered one, or an
    // earlier attempt after a later one, changes nothing.
    let delivered = Delivery { status: DeliveryStatus::Delivered, attempts: 1, ..trigger.deliveries[0].clone() };
    store.record_delivery(&delivered).await.unwrap();
    store.record_trigger(&trigger).await.unwrap();
    let third = Delivery { attempts: 3, last_error: Some("throttled".into()), ..trigger.deliveries[1].clone() };
    store.record_delivery(&third).await.unwrap();
    store.record_delivery(&Delivery { attempts: 2, ..third.clone() }).await.unwrap();
    let recorded = store.recorded_trigger(&trigger.event_id, &ids).await.unwrap();
    assert_eq!(recorded.state, Some(TriggerState::Accepted));
    let of = |id| recorded.deliveries.iter().find(|d| d.subscription_id == id).cloned().unwrap();
    assert_eq!(of(ids[0]), delivered);
    assert_eq!(of(ids[1]).attempts, 3);
    // Only the deliveries asked for come back.
    assert_eq!(store.recorded_trigger(&trigger.event_id, &ids[..1]).await.unwrap().deliveries, vec![delivered.clone()]);

    // A redriven series (generation 1) replaces a failed record, whatever its attempts; a late
    // write of the earlier series changes nothing after it; an `invoked` record stays so.
    let failed = Delivery { status: DeliveryStatus::Failed, attempts: 3, ..of(ids[1]) };
    store.record_delivery(&failed).await.unwrap();
    let policy = DeliveryPolicy { mode: DeliveryMode::Sync, ..Default::default() };
    let series = redriven(&failed, policy, at(50));
    store.record_delivery(&series).await.unwrap();
    store.record_delivery(&Delivery { attempts: 4, ..failed.clone() }).await.unwrap();
    let now = store.recorded_trigger(&trigger.event_id, &ids[1..]).await.unwrap().deliveries;
    assert_eq!(now, vec![series.clone()], "generation 1 stands");
    let invoked = Delivery { status: DeliveryStatus::Invoked, attempts: 1, ..series.clone() };
    store.record_delivery(&invoked).await.unwrap();
    store.record_delivery(&Delivery { attempts: 2, status: DeliveryStatus::Pending, ..series.clone() }).await.unwrap();
    assert_eq!(store.recorded_trigger(&trigger.event_id, &ids[1..]).await.unwrap().deliveries, vec![invoked]);
}

fn unique_schema(label: &str) -> SchemaName {
    SchemaName::parse(&format!("contract.{label}.{}", ulid::Ulid::new().to_string().to_lowercase())).unwrap()
}

fn schema_of(name: &SchemaName) -> Schema {
    Schema {
        name: name.clone(),
        format: SchemaFormat::JsonSchema,
        compatibility: Compatibility::Backward,
        description: Some("contract".into()),
        latest_version: 1,
        created_at: at(0),
        updated_at: at(0),
        revision: Version::FIRST,
    }
}

/// Version `number` of `name`, at a URI of its own, referring to `references`.
fn version_of(name: &SchemaName, number: u32, references: &[&SchemaVersion]) -> SchemaVersion {
    let document = json!({"type": "object", "title": format!("{name} {number}")});
    SchemaVersion {
        name: name.clone(),
        version: number,
        uri: SchemaUri::parse(&format!("urn:contract:{name}:{number}")).unwrap(),
        format: SchemaFormat::JsonSchema,
        digest: crate::schema::document_digest(&document),
        schema: std::sync::Arc::new(document),
        references: references.iter().map(|v| v.as_reference()).collect(),
        created_at: at(number as i64),
    }
}

/// The schema registry: versions, URIs unique across the registry, revisions, and referrers
/// (events and other schemas) that keep a schema from being deleted.
pub async fn schemas_contract<S: RegistryStore + SchemaStore>(store: &S) {
    schemas_read_back_by_name_version_and_uri(store).await;
    schemas_list_in_name_order_across_pages(store).await;
    a_version_is_added_at_the_next_revision_under_a_free_uri(store).await;
    a_replace_changes_only_description_and_mode(store).await;
    a_referred_to_schema_is_not_deleted_until_its_referrers_are_gone(store).await;
    a_reference_to_a_gone_schema_is_refused(store).await;
}

async fn schemas_read_back_by_name_version_and_uri<S: RegistryStore + SchemaStore>(store: &S) {
    let name = unique_schema("read");
    let first = version_of(&name, 1, &[]);
    store.create_schema(&schema_of(&name), &first).await.unwrap();
    assert_eq!(store.get_schema(&name).await.unwrap(), Some(schema_of(&name)));
    assert_eq!(store.get_schema_version(&name, 1).await.unwrap(), Some(first.clone()));
    assert_eq!(store.get_schema_version(&name, 2).await.unwrap(), None);
    assert_eq!(store.schema_by_uri(&first.uri).await.unwrap(), Some(first.clone()));
    assert_eq!(store.schema_versions(&name).await.unwrap(), [first.summary()]);
    let other = unique_schema("absent");
    assert_eq!(store.get_schema(&other).await.unwrap(), None);
    assert!(store.schema_versions(&other).await.unwrap().is_empty());
    assert!(matches!(
        store.create_schema(&schema_of(&name), &version_of(&name, 1, &[])).await,
        Err(Error::SchemaExists(_))
    ));
    // Another schema may not take the URI.
    let taker = unique_schema("taker");
    let mut taking = version_of(&taker, 1, &[]);
    taking.uri = first.uri.clone();
    match store.create_schema(&schema_of(&taker), &taking).await {
        Err(Error::SchemaUriTaken { schema, version, .. }) => assert_eq!((schema, version), (name.clone(), 1)),
        other => panic!("expected SchemaUriTaken, got {other:?}"),
    }
    assert_eq!(store.get_schema(&taker).await.unwrap(), None, "nothing of it was written");
}

async fn schemas_list_in_name_order_across_pages<S: RegistryStore + SchemaStore>(store: &S) {
    let prefix = unique_schema("list");
    let names: Vec<SchemaName> = (0..5).map(|i| SchemaName::parse(&format!("{prefix}-{i}")).unwrap()).collect();
    for name in names.iter().rev() {
        store.create_schema(&schema_of(name), &version_of(name, 1, &[])).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_schemas(&PageRequest::new(Some(2), cursor).unwrap()).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|s| s.name).filter(|n| n.as_str().starts_with(prefix.as_str())));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, names, "every schema once, in name order");
}

async fn a_version_is_added_at_the_next_revision_under_a_free_uri<S: RegistryStore + SchemaStore>(store: &S) {
    let name = unique_schema("versions");
    let first = version_of(&name, 1, &[]);
    store.create_schema(&schema_of(&name), &first).await.unwrap();
    let next = Schema { latest_version: 2, revision: Version(2), updated_at: at(2), ..schema_of(&name) };
    let second = version_of(&name, 2, &[&first]);
    // A URI another version holds is refused, and nothing is written.
    let mut clashing = second.clone();
    clashing.uri = first.uri.clone();
    assert!(matches!(store.add_schema_version(&next, &clashing).await, Err(Error::SchemaUriTaken { .. })));
    assert_eq!(store.get_schema(&name).await.unwrap().unwrap().latest_version, 1);
    store.add_schema_version(&next, &second).await.unwrap();
    assert_eq!(store.get_schema(&name).await.unwrap(), Some(next.clone()));
    assert_eq!(store.schema_versions(&name).await.unwrap(), [first.summary(), second.summary()]);
    assert_eq!(store.schema_by_uri(&second.uri).await.unwrap(), Some(second.clone()));
    // A writer that read revision 1 and adds its version 2 too loses: one version 2.
    let late = version_of(&name, 2, &[]);
    let mut late_uri = late.clone();
    late_uri.uri = SchemaUri::parse(&format!("urn:contract:{name}:late")).unwrap();
    assert!(matches!(
        store.add_schema_version(&next, &late_uri).await,
        Err(Error::VersionMismatch { current: Version(2), .. })
    ));
    assert_eq!(store.get_schema_version(&name, 2).await.unwrap(), Some(second));
    assert_eq!(store.schema_by_uri(&late_uri.uri).await.unwrap(), None);
    let gone = unique_schema("gone");
    let orphan = Schema { latest_version: 2, revision: Version(2), ..schema_of(&gone) };
    assert!(matches!(
        store.add_schema_version(&orphan, &version_of(&gone, 2, &[])).await,
        Err(Error::NotFound { what: "schema", .. })
    ));
}

async fn a_replace_changes_only_description_and_mode<S: RegistryStore + SchemaStore>(store: &S) {
    let name = unique_schema("replace");
    store.create_schema(&schema_of(&name), &version_of(&name, 1, &[])).await.unwrap();
    let changed = Schema {
        compatibility: Compatibility::Full,
        description: None,
        updated_at: at(5),
        revision: Version(2),
        ..schema_of(&name)
    };
    store.replace_schema(&changed).await.unwrap();
    assert_eq!(store.get_schema(&name).await.unwrap(), Some(changed.clone()));
    assert!(matches!(store.replace_schema(&changed).await, Err(Error::VersionMismatch { current: Version(2), .. })));
    assert!(matches!(
        store.delete_schema(&name, Some(Version(1))).await,
        Err(Error::VersionMismatch { current: Version(2), .. })
    ));
    store.delete_schema(&name, Some(Version(2))).await.unwrap();
    assert_eq!(store.get_schema(&name).await.unwrap(), None);
    assert!(matches!(store.replace_schema(&changed).await, Err(Error::NotFound { .. })));
    assert!(matches!(store.delete_schema(&name, None).await, Err(Error::NotFound { .. })));
}

async fn a_referred_to_schema_is_not_deleted_until_its_referrers_are_gone<S: RegistryStore + SchemaStore>(store: &S) {
    // GIVEN `person`, an `address` schema whose version 2 refers to it, and an event whose
    // schema refers to it too (and to address)
    let person = unique_schema("person");
    let person_v1 = version_of(&person, 1, &[]);
    store.create_schema(&schema_of(&person), &person_v1).await.unwrap();
    let address = unique_schema("address");
    let address_v1 = version_of(&address, 1, &[]);
    store.create_schema(&schema_of(&address), &address_v1).await.unwrap();
    let address_next = Schema { latest_version: 2, revision: Version(2), ..schema_of(&address) };
    // (a version referring to its own schema's earlier one makes no referrer)
    store.add_schema_version(&address_next, &version_of(&address, 2, &[&person_v1, &address_v1])).await.unwrap();
    let event = unique_name("refers");
    let mut referring = definition(&event);
    referring.envelope = Some(Envelope::Resource);
    referring.schema_references = vec![person_v1.as_reference(), address_v1.as_reference()];
    store.create_event(&referring).await.unwrap();
    assert_eq!(store.get_event(&event).await.unwrap(), Some(referring.clone()), "references read back");

    // THEN person names both referrers, address the event
    let referrers = |result| match result {
        Err(Error::SchemaReferenced { referrers, .. }) => referrers,
        other => panic!("expected SchemaReferenced, got {other:?}"),
    };
    assert_eq!(
        referrers(store.delete_schema(&person, None).await),
        [Referrer::Event(event.clone()), Referrer::Schema(address.clone())]
    );
    assert_eq!(referrers(store.delete_schema(&address, None).await), [Referrer::Event(event.clone())]);

    // WHEN the event stops referring to address, then is deleted
    let mut narrower = referring.clone();
    narrower.schema_references = vec![person_v1.as_reference()];
    narrower.version = Version(2);
    store.replace_event(&narrower).await.unwrap();
    // THEN address may go (its own reference to person goes with it), and then person
    store.delete_schema(&address, None).await.unwrap();
    assert_eq!(referrers(store.delete_schema(&person, None).await), [Referrer::Event(event.clone())]);
    store.delete_event(&event, None, false).await.unwrap();
    store.delete_schema(&person, None).await.unwrap();
    // AND their URIs are free again
    assert_eq!(store.schema_by_uri(&person_v1.uri).await.unwrap(), None);
    store.create_schema(&schema_of(&person), &person_v1).await.unwrap();
}

async fn a_reference_to_a_gone_schema_is_refused<S: RegistryStore + SchemaStore>(store: &S) {
    let gone = unique_schema("gone");
    let phantom = version_of(&gone, 1, &[]);
    let event = unique_name("dangling");
    let mut referring = definition(&event);
    referring.schema_references = vec![phantom.as_reference()];
    assert!(matches!(store.create_event(&referring).await, Err(Error::NotFound { what: "schema", .. })));
    assert_eq!(store.get_event(&event).await.unwrap(), None);
    let name = unique_schema("referring");
    assert!(matches!(
        store.create_schema(&schema_of(&name), &version_of(&name, 1, &[&phantom])).await,
        Err(Error::NotFound { what: "schema", .. })
    ));
    assert_eq!(store.get_schema(&name).await.unwrap(), None);
    // A definition that referred to nothing cannot be replaced into referring to it either.
    let plain = unique_name("plain");
    store.create_event(&definition(&plain)).await.unwrap();
    let mut replaced = definition(&plain);
    replaced.version = Version(2);
    replaced.schema_references = vec![phantom.as_reference()];
    assert!(matches!(store.replace_event(&replaced).await, Err(Error::NotFound { what: "schema", .. })));
}

#[cfg(test)]
mod tests {
    use crate::memory::{MemoryRecorder, MemoryStore};

    #[tokio::test]
    async fn the_memory_store_keeps_the_store_contract() {
        let store = MemoryStore::new();
        super::registry_contract(&store).await;
        super::trigger_contract(&store).await;
        super::outbox_contract(&store).await;
        super::redrive_contract(&store).await;
        super::sources_contract(&store).await;
        super::schemas_contract(&store).await;
    }

    #[tokio::test]
    async fn the_memory_recorder_keeps_the_recorder_contract() {
        super::recorder_contract(&MemoryRecorder::new()).await;
    }
}
