//! The DynamoDB store against moto_server (DynamoDB's real wire protocol): the store contract
//! every store keeps, and what only the single-table design has to get right.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use end_to_end::moto::{topic, Moto};
use gateway_core::error::Result;
use gateway_core::fixtures;
use gateway_core::ports::{
    Acceptance, DeliveryLog, DeliveryRecorder, EventStore, IdSource, IdempotencyKeys, KeyClaim, SubscriptionStore,
    TriggerAcceptor, TriggerSource, TriggerState, UlidSource,
};
use gateway_core::store_contract::{recorder_contract, registry_contract, sources_contract, trigger_contract};
use gateway_core::{
    Delivery, DeliveryStatus, Error, EventDefinition, EventId, EventName, IdempotencyKey, Metadata, Page, PageRequest,
    Subscription, SubscriptionId, Trigger, Version,
};
use gateway_dynamodb::{create_table, DynamoStore};
use gateway_sns::{SnsAcceptor, SnsPublisher};
use serde_json::json;

async fn store(moto: &Moto) -> DynamoStore {
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    create_table(&client, "gateway").await.expect("create the table");
    DynamoStore::new(client, "gateway")
}

/// The cloud gateway's ports as the trigger handler wires them: the DynamoDB store for the
/// registry and the log, the SNS acceptor for triggers.
struct CloudGateway {
    store: DynamoStore,
    acceptor: SnsAcceptor,
}

#[async_trait]
impl EventStore for CloudGateway {
    async fn create_event(&self, event: &EventDefinition) -> Result<()> {
        self.store.create_event(event).await
    }
    async fn get_event(&self, name: &EventName) -> Result<Option<EventDefinition>> {
        self.store.get_event(name).await
    }
    async fn list_events(&self, page: &PageRequest) -> Result<Page<EventDefinition>> {
        self.store.list_events(page).await
    }
    async fn replace_event(&self, event: &EventDefinition) -> Result<()> {
        self.store.replace_event(event).await
    }
    async fn delete_event(&self, name: &EventName, expected: Option<Version>, cascade: bool) -> Result<()> {
        self.store.delete_event(name, expected, cascade).await
    }
}

#[async_trait]
impl SubscriptionStore for CloudGateway {
    async fn create_subscription(&self, s: &Subscription) -> Result<()> {
        self.store.create_subscription(s).await
    }
    async fn get_subscription(&self, id: &SubscriptionId) -> Result<Option<Subscription>> {
        self.store.get_subscription(id).await
    }
    async fn list_subscriptions(&self, event: Option<&EventName>, page: &PageRequest) -> Result<Page<Subscription>> {
        self.store.list_subscriptions(event, page).await
    }
    async fn replace_subscription(&self, s: &Subscription) -> Result<()> {
        self.store.replace_subscription(s).await
    }
    async fn delete_subscription(&self, id: &SubscriptionId, expected: Option<Version>) -> Result<()> {
        self.store.delete_subscription(id, expected).await
    }
}

#[async_trait]
impl TriggerSource for CloudGateway {
    async fn trigger_target(&self, name: &EventName) -> Result<Option<(EventDefinition, Vec<Subscription>)>> {
        self.store.trigger_target(name).await
    }
}

#[async_trait]
impl TriggerAcceptor for CloudGateway {
    async fn accept(&self, trigger: &Trigger, key: Option<&IdempotencyKey>) -> Result<Acceptance> {
        self.acceptor.accept(trigger, key).await
    }
}

#[async_trait]
impl DeliveryLog for CloudGateway {
    async fn deliveries_of_trigger(&self, event_id: &EventId) -> Result<Option<Vec<Delivery>>> {
        self.store.deliveries_of_trigger(event_id).await
    }
    async fn deliveries_of_event(&self, event: &EventName, page: &PageRequest) -> Result<Page<Delivery>> {
        self.store.deliveries_of_event(event, page).await
    }
}

fn definition(name: &str) -> EventDefinition {
    fixtures::definition(name)
}

fn subscription(event: &str, function: &str, metadata: Metadata) -> Subscription {
    fixtures::subscription(&EventName::parse(event).unwrap(), function, metadata)
}

#[tokio::test]
async fn the_dynamodb_store_keeps_the_registry_contract() {
    let moto = Moto::start("registry");
    registry_contract(&store(&moto).await).await;
}

#[tokio::test]
async fn the_dynamodb_store_with_the_sns_acceptor_keeps_the_trigger_contract() {
    let moto = Moto::start("trigger");
    let config = moto.sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&config);
    let topic_arn = topic(&sns, "gateway-deliveries").await;
    let store = store(&moto).await;
    let gateway =
        CloudGateway { acceptor: SnsAcceptor::with_store(SnsPublisher::new(sns, topic_arn), store.clone()), store };
    trigger_contract(&gateway).await;
}

#[tokio::test]
async fn a_trigger_reads_every_subscription_even_past_a_one_megabyte_query_page() {
    // GIVEN an event whose 30 subscriptions carry 40 KB of metadata each (1.2 MB in all)
    let moto = Moto::start("big-partition");
    let store = store(&moto).await;
    store.create_event(&definition("big.event")).await.unwrap();
    let metadata = Metadata::from_iter([("blob".to_owned(), json!("x".repeat(40_000)))]);
    let mut ids = Vec::new();
    for i in 0..30 {
        let sub = subscription("big.event", &format!("fn-{i}"), metadata.clone());
        store.create_subscription(&sub).await.unwrap();
        ids.push(sub.subscription_id);
    }

    // WHEN the trigger reads its target
    let (_, subs) = store.trigger_target(&EventName::parse("big.event").unwrap()).await.unwrap().unwrap();

    // THEN every subscription is there, metadata intact
    let mut got: Vec<_> = subs.iter().map(|s| s.subscription_id).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    assert!(subs.iter().all(|s| s.metadata == metadata));
}

#[tokio::test]
async fn a_cascade_delete_removes_more_subscriptions_than_one_transaction_holds() {
    let moto = Moto::start("cascade");
    let store = store(&moto).await;
    store.create_event(&definition("many.subs")).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..110 {
        let sub = subscription("many.subs", &format!("fn-{i}"), Metadata::new());
        store.create_subscription(&sub).await.unwrap();
        ids.push(sub.subscription_id);
    }
    let name = EventName::parse("many.subs").unwrap();
    assert!(matches!(
        store.delete_event(&name, None, false).await,
        Err(Error::EventHasSubscriptions { count: 110, .. })
    ));

    store.delete_event(&name, Some(Version::FIRST), true).await.unwrap();

    assert_eq!(store.get_event(&name).await.unwrap(), None);
    for id in &ids {
        assert_eq!(store.get_subscription(id).await.unwrap(), None);
    }
    let left = store.list_subscriptions(None, &PageRequest::first(100)).await.unwrap();
    assert!(left.items.is_empty(), "no copy left behind: {:?}", left.items.len());
    // The name is free again, with nothing of the old event carried over.
    store.create_event(&definition("many.subs")).await.unwrap();
    let (again, subs) = store.trigger_target(&name).await.unwrap().unwrap();
    assert!(subs.is_empty());
    assert_eq!(again.received_at, None);
}

#[tokio::test]
async fn a_cursor_only_works_for_the_list_that_made_it() {
    let moto = Moto::start("cursors");
    let store = store(&moto).await;
    for name in ["a.one", "a.two", "a.three"] {
        store.create_event(&definition(name)).await.unwrap();
        store.create_subscription(&subscription(name, "fn-a", Metadata::new())).await.unwrap();
    }
    let events = store.list_events(&PageRequest::first(1)).await.unwrap();
    let subs = store.list_subscriptions(None, &PageRequest::first(1)).await.unwrap();
    let from_events = PageRequest { limit: 1, cursor: events.next_cursor };
    let from_subs = PageRequest { limit: 1, cursor: subs.next_cursor };

    assert!(matches!(store.list_subscriptions(None, &from_events).await, Err(Error::InvalidCursor)));
    assert!(matches!(store.list_events(&from_subs).await, Err(Error::InvalidCursor)));
    let a_one = EventName::parse("a.one").unwrap();
    assert!(matches!(store.list_subscriptions(Some(&a_one), &from_subs).await, Err(Error::InvalidCursor)));
    assert!(matches!(store.deliveries_of_event(&a_one, &from_events).await, Err(Error::InvalidCursor)));
}

#[tokio::test]
async fn an_idempotency_key_is_taken_over_only_after_its_lease_fences_its_earlier_holder_and_expires_after_a_day() {
    let moto = Moto::start("keys");
    let store = store(&moto).await;
    let key = IdempotencyKey::parse("order-7").unwrap();
    let t0 = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let receipt = |at| gateway_core::TriggerReceipt {
        event_id: UlidSource.event_id(),
        event: EventName::parse("orders.created").unwrap(),
        received_at: at,
        deliveries: Vec::new(),
    };
    let lease = Duration::from_secs(60);
    let digest = "digest-of-the-first-payload";
    let first = receipt(t0);
    assert_eq!(store.claim_key(&key, &first, digest, t0, lease).await.unwrap(), KeyClaim::Claimed);

    let within_lease = t0 + chrono::Duration::seconds(10);
    assert_eq!(
        store.claim_key(&key, &receipt(within_lease), digest, within_lease, lease).await.unwrap(),
        KeyClaim::InProgress
    );
    // The first request crashed before completing the key: after the lease, the key lapses,
    // and is left as it is until the caller has settled the first trigger.
    let after_lease = t0 + chrono::Duration::seconds(61);
    let second = receipt(after_lease);
    assert_eq!(
        store.claim_key(&key, &second, digest, after_lease, lease).await.unwrap(),
        KeyClaim::Lapsed(first.clone())
    );
    assert_eq!(
        store.claim_key(&key, &second, digest, after_lease, lease).await.unwrap(),
        KeyClaim::Lapsed(first.clone()),
        "nothing changed: a caller that failed here leaves the key to the next one"
    );
    // Taking it over names the holder; a stale holder or a lease not run out does not take it.
    assert!(!store.take_over_key(&key, &second.event_id, &second, after_lease, lease).await.unwrap());
    assert!(!store.take_over_key(&key, &first.event_id, &second, within_lease, lease).await.unwrap());
    assert!(store.take_over_key(&key, &first.event_id, &second, after_lease, lease).await.unwrap());
    assert!(!store.take_over_key(&key, &first.event_id, &receipt(after_lease), after_lease, lease).await.unwrap());
    // The first request, had it only been slow, can no longer complete or release the key.
    store.complete_key(&key, &first.event_id, &first).await.unwrap();
    store.abandon_key(&key, &first).await.unwrap();
    let still_held = t0 + chrono::Duration::seconds(70);
    assert_eq!(
        store.claim_key(&key, &receipt(still_held), digest, still_held, lease).await.unwrap(),
        KeyClaim::InProgress
    );
    store.complete_key(&key, &second.event_id, &second).await.unwrap();
    let reused = t0 + chrono::Duration::hours(1);
    assert!(
        matches!(
            store.claim_key(&key, &receipt(reused), "another-payload", reused, lease).await,
            Err(gateway_core::Error::IdempotencyKeyReused { .. })
        ),
        "a key is bound to its first payload"
    );
    let later = t0 + chrono::Duration::hours(23);
    assert_eq!(
        store.claim_key(&key, &receipt(later), digest, later, lease).await.unwrap(),
        KeyClaim::Published(second.clone())
    );
    let next_day = t0 + chrono::Duration::hours(25);
    assert_eq!(
        store.claim_key(&key, &receipt(next_day), "another-payload", next_day, lease).await.unwrap(),
        KeyClaim::Claimed,
        "after 24 hours the key is new again"
    );
}

#[tokio::test]
async fn the_dynamodb_store_keeps_the_sources_contract() {
    let moto = Moto::start("sources");
    sources_contract(&store(&moto).await).await;
}

#[tokio::test]
async fn the_dynamodb_store_keeps_the_recorder_contract() {
    let moto = Moto::start("recorder");
    recorder_contract(&store(&moto).await).await;
}

#[tokio::test]
async fn a_trigger_without_subscriptions_is_still_in_the_log() {
    let moto = Moto::start("empty-trigger");
    let store = store(&moto).await;
    let def = definition("lonely.event");
    store.create_event(&def).await.unwrap();
    let trigger = gateway_core::trigger::accepted_trigger(&def, &[], b"{}".to_vec(), Utc::now(), &UlidSource);
    settle(&store, &trigger, TriggerState::Accepted).await;
    store.record_trigger(&trigger).await.unwrap();
    assert_eq!(store.deliveries_of_trigger(&trigger.event_id).await.unwrap(), Some(Vec::new()));
}

async fn settle(store: &DynamoStore, t: &Trigger, want: TriggerState) -> TriggerState {
    store.settle_trigger(&t.event_id, &t.event, t.received_at, want).await.unwrap()
}

#[tokio::test]
async fn a_trigger_that_was_never_accepted_is_not_in_the_log() {
    let moto = Moto::start("abandoned");
    let store = store(&moto).await;
    let def = definition("orders.created");
    let sub = subscription("orders.created", "fn-a", Metadata::new());
    let dropped = gateway_core::trigger::accepted_trigger(&def, &[sub], b"{}".to_vec(), Utc::now(), &UlidSource);
    assert_eq!(settle(&store, &dropped, TriggerState::Abandoned).await, TriggerState::Abandoned);
    // Its client got an error: asking for it is a 404, as for an id never seen.
    assert_eq!(store.deliveries_of_trigger(&dropped.event_id).await.unwrap(), None);
}

#[tokio::test]
async fn delivery_records_expire_by_ttl_after_the_retention_whatever_wrote_them() {
    let moto = Moto::start("retention");
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    create_table(&client, "gateway").await.expect("create the table");
    let retention = gateway_core::DeliveryRetention::days(7).unwrap();
    let store = DynamoStore::new(client.clone(), "gateway").with_delivery_retention(retention);
    let received = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    let expected = Utc.with_ymd_and_hms(2026, 3, 8, 12, 0, 0).unwrap().timestamp().to_string();
    let ttls = |event_id: EventId| {
        let client = client.clone();
        async move {
            let out = client
                .query()
                .table_name("gateway")
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(
                    ":pk",
                    aws_sdk_dynamodb::types::AttributeValue::S(format!("TRIGGER#{event_id}")),
                )
                .send()
                .await
                .unwrap();
            out.items().iter().map(|item| item.get("ttl").and_then(|v| v.as_n().ok()).cloned()).collect::<Vec<_>>()
        }
    };

    let def = definition("orders.created");
    let subs = [
        subscription("orders.created", "fn-a", Metadata::new()),
        subscription("orders.created", "fn-b", Metadata::new()),
    ];
    let trigger = gateway_core::trigger::accepted_trigger(&def, &subs, b"{}".to_vec(), received, &UlidSource);
    store.record_trigger(&trigger).await.unwrap();
    assert_eq!(ttls(trigger.event_id).await, vec![Some(expected.clone()); 2], "pending records");
    let delivered = Delivery { status: DeliveryStatus::Delivered, attempts: 1, ..trigger.deliveries[0].clone() };
    store.record_delivery(&delivered).await.unwrap();
    assert_eq!(ttls(trigger.event_id).await, vec![Some(expected); 2], "an attempt keeps the expiry");

    // A trigger's state outlives a short retention: as long as any of its messages can still
    // reach the dispatcher (35 days).
    let lonely = gateway_core::trigger::accepted_trigger(&def, &[], b"{}".to_vec(), received, &UlidSource);
    settle(&store, &lonely, TriggerState::Accepted).await;
    store.record_trigger(&lonely).await.unwrap();
    let state_expires = Utc.with_ymd_and_hms(2026, 4, 5, 12, 0, 0).unwrap().timestamp().to_string();
    assert_eq!(ttls(lonely.event_id).await, vec![Some(state_expires)], "a trigger without subscriptions");
}
