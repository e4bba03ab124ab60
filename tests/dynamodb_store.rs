//! The DynamoDB store against moto_server (DynamoDB's real wire protocol): the store contract
//! every store keeps, and what only the single-table design has to get right.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{TimeZone, Utc};
use end_to_end::moto::{receive, topic, Moto};
use gateway_core::error::Result;
use gateway_core::fixtures;
use gateway_core::message::DeliveryMessage;
use gateway_core::ports::DeliveryRedrive;
use gateway_core::ports::{
    Acceptance, DeliveryLog, DeliveryRecorder, EventStore, IdSource, IdempotencyKeys, KeyClaim, SchemaLookup,
    SchemaStore, SubscriptionStore, TriggerAcceptor, TriggerSource, TriggerState, UlidSource,
};
use gateway_core::store_contract::{
    recorder_contract, registry_contract, schemas_contract, sources_contract, trigger_contract,
};
use gateway_core::{
    Compatibility, Delivery, DeliveryStatus, Error, EventDefinition, EventId, EventName, IdempotencyKey, Metadata,
    Page, PageRequest, Referrer, Schema, SchemaFormat, SchemaName, SchemaUri, SchemaVersion, Subscription,
    SubscriptionId, Trigger, Version,
};
use gateway_dynamodb::{create_table, DynamoRedrive, DynamoStore, RedriveQueue, SqsRedriveQueue};
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
    async fn trigger_target(&self, name: &EventName) -> Result<Option<gateway_core::ports::TriggerTarget>> {
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
    let subs = store.trigger_target(&EventName::parse("big.event").unwrap()).await.unwrap().unwrap().subscriptions;

    // THEN every subscription is there, metadata intact
    let mut got: Vec<_> = subs.iter().map(|s| s.subscription_id).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    assert!(subs.iter().all(|s| *s.metadata == metadata));
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
    let gateway_core::ports::TriggerTarget { definition: again, subscriptions: subs } =
        store.trigger_target(&name).await.unwrap().unwrap();
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

#[tokio::test]
async fn an_events_received_at_is_written_at_most_once_a_second_per_process_and_never_moves_back() {
    let moto = Moto::start("received-at");
    let store = store(&moto).await;
    let def = definition("busy.event");
    store.create_event(&def).await.unwrap();
    let t0 = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let received_at = |store: &DynamoStore| {
        let name = def.name.clone();
        let store = store.clone();
        async move { store.get_event(&name).await.unwrap().unwrap().received_at }
    };
    let trigger_at = |millis: i64| {
        gateway_core::trigger::accepted_trigger(
            &def,
            &[],
            b"{}".to_vec(),
            t0 + chrono::Duration::milliseconds(millis),
            &UlidSource,
        )
    };

    // The first trigger this process sees for the event writes it
    store.record_trigger(&trigger_at(0)).await.unwrap();
    assert_eq!(received_at(&store).await, Some(t0));
    // one within the second after it does not (a write unit saved a trigger)
    store.record_trigger(&trigger_at(999)).await.unwrap();
    assert_eq!(received_at(&store).await, Some(t0));
    // one a second or more after the last written does
    store.record_trigger(&trigger_at(1_000)).await.unwrap();
    assert_eq!(received_at(&store).await, Some(t0 + chrono::Duration::seconds(1)));

    // Another process (a second instance) writes its own first trigger, but never moves it back
    let other = DynamoStore::new(aws_sdk_dynamodb::Client::new(&moto.sdk_config().await), "gateway");
    other.record_trigger(&trigger_at(500)).await.unwrap();
    assert_eq!(received_at(&store).await, Some(t0 + chrono::Duration::seconds(1)));
    other.record_trigger(&trigger_at(2_500)).await.unwrap();
    assert_eq!(received_at(&store).await, Some(t0 + chrono::Duration::milliseconds(2_500)));
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
    let dropped = gateway_core::trigger::accepted_trigger(
        &def,
        &[std::sync::Arc::new(sub)],
        b"{}".to_vec(),
        Utc::now(),
        &UlidSource,
    );
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
        std::sync::Arc::new(subscription("orders.created", "fn-a", Metadata::new())),
        std::sync::Arc::new(subscription("orders.created", "fn-b", Metadata::new())),
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

#[tokio::test]
async fn the_dynamodb_store_keeps_the_schemas_contract() {
    let moto = Moto::start("schemas");
    schemas_contract(&store(&moto).await).await;
}

/// The DynamoDB operations a client sent (every attempt), in order, by name.
#[derive(Clone, Debug, Default)]
struct Requests(Arc<Mutex<Vec<String>>>);

impl Requests {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for Requests {
    fn name(&self) -> &'static str {
        "requests"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let target = context.request().headers().get("x-amz-target").unwrap_or("?");
        self.0.lock().unwrap().push(target.trim_start_matches("DynamoDB_20120810.").to_owned());
        Ok(())
    }
}

/// A store whose every request is counted, and a plain client on the same table, to look at the
/// items themselves.
async fn counted_store(moto: &Moto) -> (DynamoStore, Requests, aws_sdk_dynamodb::Client) {
    let config = moto.sdk_config().await;
    let raw = aws_sdk_dynamodb::Client::new(&config);
    create_table(&raw, "gateway").await.expect("create the table");
    let requests = Requests::default();
    let counted = aws_sdk_dynamodb::config::Builder::from(&config).interceptor(requests.clone()).build();
    (DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(counted), "gateway"), requests, raw)
}

fn schema_named(name: &str) -> Schema {
    let at = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    Schema {
        name: SchemaName::parse(name).unwrap(),
        format: SchemaFormat::JsonSchema,
        compatibility: Compatibility::None,
        description: None,
        latest_version: 1,
        created_at: at,
        updated_at: at,
        revision: Version::FIRST,
    }
}

/// Version `number` of `name` at `urn:test:<name>:<number>`, referring to `references`.
fn version_of(name: &str, number: u32, references: &[&SchemaVersion]) -> SchemaVersion {
    let document = json!({"type": "object", "title": format!("{name} {number}")});
    SchemaVersion {
        name: SchemaName::parse(name).unwrap(),
        version: number,
        uri: SchemaUri::parse(&format!("urn:test:{name}:{number}")).unwrap(),
        format: SchemaFormat::JsonSchema,
        digest: gateway_core::schema::document_digest(&document),
        schema: Arc::new(document),
        references: references.iter().map(|v| v.as_reference()).collect(),
        created_at: Utc.timestamp_opt(1_800_000_000 + i64::from(number), 0).unwrap(),
    }
}

/// Registers `name` with version 1 and adds versions up to `versions`; version 2 refers to
/// `references`. Returns its versions.
async fn register(store: &DynamoStore, name: &str, versions: u32, references: &[&SchemaVersion]) -> Vec<SchemaVersion> {
    let first = version_of(name, 1, if versions == 1 { references } else { &[] });
    store.create_schema(&schema_named(name), &first).await.unwrap();
    let mut all = vec![first];
    for number in 2..=versions {
        let schema = Schema { latest_version: number, revision: Version(u64::from(number)), ..schema_named(name) };
        let version = version_of(name, number, if number == 2 { references } else { &[] });
        store.add_schema_version(&schema, &version).await.unwrap();
        all.push(version);
    }
    all
}

fn referring_event(name: &str, references: &[&SchemaVersion]) -> EventDefinition {
    EventDefinition {
        schema_references: references.iter().map(|v| v.as_reference()).collect(),
        envelope: Some(gateway_core::Envelope::Resource),
        ..definition(name)
    }
}

/// Every item of a partition, by sort key.
async fn partition(raw: &aws_sdk_dynamodb::Client, pk: &str) -> Vec<HashMap<String, AttributeValue>> {
    let out = raw
        .query()
        .table_name("gateway")
        .consistent_read(true)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
        .send()
        .await
        .unwrap();
    out.items.unwrap_or_default()
}

fn sort_keys(items: &[HashMap<String, AttributeValue>]) -> Vec<String> {
    items.iter().map(|item| item["sk"].as_s().unwrap().clone()).collect()
}

#[tokio::test]
async fn a_resource_trigger_reads_its_schema_version_with_one_get_item_and_plain_events_cost_what_they_did() {
    let moto = Moto::start("requests");
    let (store, requests, _) = counted_store(&moto).await;
    requests.take();

    // The registry: a write is one transaction; a resource trigger's lookup one GetItem.
    let person = register(&store, "person", 1, &[]).await;
    assert_eq!(requests.take(), ["TransactWriteItems"]);
    assert_eq!(store.schema_by_uri(&person[0].uri).await.unwrap(), Some(person[0].clone()));
    assert_eq!(requests.take(), ["GetItem"], "schema_by_uri is one read");
    let second = Schema { latest_version: 2, revision: Version(2), ..schema_named("person") };
    store.add_schema_version(&second, &version_of("person", 2, &[])).await.unwrap();
    assert_eq!(requests.take(), ["TransactWriteItems"], "a version referring to no other schema: no read");
    store.get_schema_version(&second.name, 2).await.unwrap().unwrap();
    assert_eq!(requests.take(), ["BatchGetItem"], "the version with its schema item, in one read");

    // A plain event costs what it did before the registry.
    let plain = definition("plain.event");
    store.create_event(&plain).await.unwrap();
    assert_eq!(requests.take(), ["TransactWriteItems"]);
    store.replace_event(&EventDefinition { version: Version(2), ..plain.clone() }).await.unwrap();
    assert_eq!(requests.take(), ["UpdateItem"]);
    store.delete_event(&plain.name, None, false).await.unwrap();
    assert_eq!(requests.take(), ["Query", "TransactWriteItems"]);

    // An event that refers to schemas: one transaction to create; a replace that keeps the
    // schemas it refers to is one UpdateItem; one that changes them reads first.
    let referring = referring_event("referring.event", &[&person[0]]);
    store.create_event(&referring).await.unwrap();
    assert_eq!(requests.take(), ["TransactWriteItems"]);
    let edited = EventDefinition { description: Some("edited".into()), version: Version(2), ..referring.clone() };
    store.replace_event(&edited).await.unwrap();
    assert_eq!(requests.take(), ["UpdateItem"]);
    let unreferring = EventDefinition { schema_references: Vec::new(), version: Version(3), ..edited.clone() };
    store.replace_event(&unreferring).await.unwrap();
    assert_eq!(requests.take(), ["UpdateItem", "Query", "TransactWriteItems"]);
    assert_eq!(store.get_event(&referring.name).await.unwrap(), Some(unreferring));
    requests.take();

    // Deleting a schema with few versions: one read, the versions' keys, one transaction.
    store.delete_schema(&second.name, Some(Version(2))).await.unwrap();
    assert_eq!(requests.take(), ["BatchGetItem", "Query", "TransactWriteItems"]);
}

#[tokio::test]
async fn a_schema_with_more_versions_than_a_transaction_holds_is_deleted_whole() {
    // GIVEN `address`, and `person` with 130 versions (260 items), whose version 2 refers to address
    let moto = Moto::start("many-versions");
    let (store, _, raw) = counted_store(&moto).await;
    let address = register(&store, "address", 1, &[]).await;
    let person = register(&store, "person", 130, &[&address[0]]).await;
    let summaries: Vec<_> = person.iter().map(SchemaVersion::summary).collect();
    assert_eq!(store.schema_versions(&person[0].name).await.unwrap(), summaries, "all 130, in number order");
    assert!(matches!(
        store.delete_schema(&address[0].name, None).await,
        Err(Error::SchemaReferenced { referrers, .. }) if referrers == [Referrer::Schema(person[0].name.clone())]
    ));

    // WHEN person is deleted
    store.delete_schema(&person[0].name, Some(Version(130))).await.unwrap();

    // THEN nothing of it is left: not its partition, not one URI item, not its edge under address
    assert!(partition(&raw, "SCHEMA#person").await.is_empty());
    for version in &person {
        assert!(partition(&raw, &format!("URI#{}", version.uri)).await.is_empty(), "{}", version.uri);
    }
    assert_eq!(sort_keys(&partition(&raw, "SCHEMA#address").await), ["#SCHEMA", "#VERSION#0000000001"]);
    let address_item = &partition(&raw, "SCHEMA#address").await[0];
    assert_eq!(address_item["referrerCount"].as_n().unwrap(), "0");
    // AND address may go, and the name and its URIs register again
    store.delete_schema(&address[0].name, None).await.unwrap();
    let again = version_of("person", 1, &[]);
    store.create_schema(&schema_named("person"), &again).await.unwrap();
    assert_eq!(store.schema_versions(&again.name).await.unwrap(), [again.summary()]);
}

/// Leaves `name` as a deletion cut short after its first transaction leaves it: the schema item
/// gone (and with it, its place in `GET /schemas`), `#DELETING` written, versions and URIs left.
async fn cut_short(raw: &aws_sdk_dynamodb::Client, name: &str) {
    let key = |sk: &str| {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(format!("SCHEMA#{name}"))),
            ("sk".to_owned(), AttributeValue::S(sk.to_owned())),
        ])
    };
    raw.delete_item().table_name("gateway").set_key(Some(key("#SCHEMA"))).send().await.unwrap();
    let mut mark = key("#DELETING");
    mark.insert("name".to_owned(), AttributeValue::S(name.to_owned()));
    raw.put_item().table_name("gateway").set_item(Some(mark)).send().await.unwrap();
}

#[tokio::test]
async fn a_deletion_cut_short_is_finished_by_whoever_meets_it() {
    // GIVEN three schemas of three versions each whose deletions stopped after the first step
    let moto = Moto::start("cut-short");
    let (store, _, raw) = counted_store(&moto).await;
    let mut left = HashMap::new();
    for name in ["by-name", "by-uri", "by-delete"] {
        left.insert(name, register(&store, name, 3, &[]).await);
        cut_short(&raw, name).await;
    }

    // THEN each is gone to every reader but a lookup of one of its URIs
    for (name, versions) in &left {
        let name = SchemaName::parse(name).unwrap();
        assert_eq!(store.get_schema(&name).await.unwrap(), None);
        assert!(store.schema_versions(&name).await.unwrap().is_empty());
        assert_eq!(store.get_schema_version(&name, 1).await.unwrap(), None);
        let next = Schema { latest_version: 4, revision: Version(4), ..schema_named(name.as_str()) };
        assert!(matches!(
            store.add_schema_version(&next, &version_of(name.as_str(), 4, &[])).await,
            Err(Error::NotFound { what: "schema", .. })
        ));
        assert!(versions.iter().all(|v| v.version <= 3));
        let event = referring_event(&format!("{name}.event"), &[&versions[0]]);
        assert!(matches!(store.create_event(&event).await, Err(Error::NotFound { what: "schema", .. })));
    }
    assert!(store.list_schemas(&PageRequest::first(10)).await.unwrap().items.is_empty());

    // WHEN the name is registered again: the deletion is finished first
    let fresh = version_of("by-name", 1, &[]);
    store.create_schema(&schema_named("by-name"), &fresh).await.unwrap();
    assert_eq!(store.schema_versions(&fresh.name).await.unwrap(), [fresh.summary()], "none of the old versions");
    assert_eq!(store.schema_by_uri(&left["by-name"][1].uri).await.unwrap(), None);

    // WHEN another schema claims a URI it left: the deletion is finished, and the URI is the claimer's
    let mut claiming = version_of("claimer", 1, &[]);
    claiming.uri = left["by-uri"][1].uri.clone();
    store.create_schema(&schema_named("claimer"), &claiming).await.unwrap();
    assert_eq!(store.schema_by_uri(&claiming.uri).await.unwrap(), Some(claiming));
    assert_eq!(store.schema_by_uri(&left["by-uri"][0].uri).await.unwrap(), None);
    assert!(partition(&raw, "SCHEMA#by-uri").await.is_empty());

    // WHEN it is deleted again: the answer is that it is gone, and it is, whole
    let by_delete = SchemaName::parse("by-delete").unwrap();
    assert!(matches!(store.delete_schema(&by_delete, None).await, Err(Error::NotFound { what: "schema", .. })));
    assert!(partition(&raw, "SCHEMA#by-delete").await.is_empty());
    for version in &left["by-delete"] {
        assert_eq!(store.schema_by_uri(&version.uri).await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_refused_delete_names_every_referrer_in_order_from_its_edges() {
    // GIVEN `address`, referred to by 30 events and by 3 schemas, one of them through 2 versions
    let moto = Moto::start("referrers");
    let (store, _, raw) = counted_store(&moto).await;
    let address = register(&store, "address", 2, &[]).await;
    let mut expected = Vec::new();
    for i in (0..30).rev() {
        let event = referring_event(&format!("people.{i:02}"), &[&address[i % 2]]);
        store.create_event(&event).await.unwrap();
        expected.push(Referrer::Event(event.name));
    }
    for name in ["team", "office", "family"] {
        register(&store, name, 1, &[&address[0]]).await;
        expected.push(Referrer::Schema(SchemaName::parse(name).unwrap()));
    }
    let family = Schema { latest_version: 2, revision: Version(2), ..schema_named("family") };
    store.add_schema_version(&family, &version_of("family", 2, &[&address[1]])).await.unwrap();
    expected.sort();

    // THEN its delete is refused naming each once, events first, each kind by name
    let refused = store.delete_schema(&address[0].name, None).await;
    match refused {
        Err(Error::SchemaReferenced { referrers, .. }) => assert_eq!(referrers, expected),
        other => panic!("expected SchemaReferenced, got {other:?}"),
    }
    let count = |items: &[HashMap<String, AttributeValue>]| items[0]["referrerCount"].as_n().unwrap().clone();
    assert_eq!(count(&partition(&raw, "SCHEMA#address").await), "33");

    // WHEN every referrer goes (family with both its versions)
    store.delete_schema(&family.name, None).await.unwrap();
    for referrer in &expected {
        if let Referrer::Event(name) = referrer {
            store.delete_event(name, None, false).await.unwrap();
        }
    }
    for name in ["team", "office"] {
        store.delete_schema(&SchemaName::parse(name).unwrap(), None).await.unwrap();
    }

    // THEN no edge is left, the count is 0, and address goes
    let items = partition(&raw, "SCHEMA#address").await;
    assert_eq!(sort_keys(&items), ["#SCHEMA", "#VERSION#0000000001", "#VERSION#0000000002"]);
    assert_eq!(count(&items), "0");
    store.delete_schema(&address[0].name, None).await.unwrap();
}

#[tokio::test]
async fn an_event_or_a_schema_refers_to_at_most_24_schemas_and_may_swap_them_all_at_once() {
    // GIVEN 49 registered schemas
    let moto = Moto::start("referred-limit");
    let (store, _, raw) = counted_store(&moto).await;
    let mut firsts = Vec::new();
    for i in 0..49 {
        firsts.push(register(&store, &format!("s{i:02}"), 1, &[]).await.remove(0));
    }
    let refs = |range: std::ops::Range<usize>| firsts[range].iter().collect::<Vec<_>>();
    let invalid = |result: Result<()>| matches!(result, Err(Error::InvalidInput { violations, .. }) if violations[0].pointer == "/schema");

    // THEN 25 are refused, for an event and for a schema, and nothing is written
    let event = referring_event("wide.event", &refs(0..25));
    assert!(invalid(store.create_event(&event).await));
    assert_eq!(store.get_event(&event.name).await.unwrap(), None);
    assert!(invalid(store.create_schema(&schema_named("wide"), &version_of("wide", 1, &refs(0..25))).await));
    assert_eq!(store.get_schema(&SchemaName::parse("wide").unwrap()).await.unwrap(), None);

    // AND 24 are taken, and swapped for 24 others in one replace (97 actions)
    let event = referring_event("wide.event", &refs(0..24));
    store.create_event(&event).await.unwrap();
    let swapped = EventDefinition {
        schema_references: refs(24..48).iter().map(|v| v.as_reference()).collect(),
        version: Version(2),
        ..event.clone()
    };
    store.replace_event(&swapped).await.unwrap();
    assert_eq!(store.get_event(&event.name).await.unwrap(), Some(swapped));
    for (i, first) in firsts.iter().enumerate() {
        let edges = sort_keys(&partition(&raw, &format!("SCHEMA#{}", first.name)).await);
        let referred = (24..48).contains(&i);
        assert_eq!(edges.contains(&"REFERRER#EVENT#wide.event".to_owned()), referred, "{}", first.name);
    }
    // A schema adds them a version at a time, up to 24 in all.
    register(&store, "wide", 2, &refs(0..20)).await;
    let third = Schema { latest_version: 3, revision: Version(3), ..schema_named("wide") };
    assert!(invalid(store.add_schema_version(&third, &version_of("wide", 3, &refs(15..25))).await));
    store.add_schema_version(&third, &version_of("wide", 3, &refs(15..24))).await.unwrap();
    assert!(matches!(
        store.delete_schema(&firsts[23].name, None).await,
        Err(Error::SchemaReferenced { referrers, .. }) if referrers == [Referrer::Schema(third.name.clone())]
    ));
}

/// The delivery queue as a redrive hands deliveries to it: every message, or a failure.
#[derive(Default)]
struct TestQueue {
    sent: Mutex<Vec<DeliveryMessage>>,
    broken: Mutex<bool>,
}

#[async_trait]
impl RedriveQueue for TestQueue {
    async fn enqueue(&self, message: &DeliveryMessage) -> std::result::Result<(), String> {
        if *self.broken.lock().unwrap() {
            return Err("SQS is down".into());
        }
        self.sent.lock().unwrap().push(message.clone());
        Ok(())
    }
}

/// A trigger of `orders.created` received at `received`, its one delivery (to fn-a, under the
/// given subscription) recorded failed after two attempts with the payload kept.
async fn failed_delivery(
    store: &DynamoStore,
    sub: &Subscription,
    received: chrono::DateTime<Utc>,
) -> (Trigger, Delivery) {
    let t = gateway_core::trigger::accepted_trigger(
        &definition("orders.created"),
        &[std::sync::Arc::new(sub.clone())],
        br#"{"orderId":"o-1"}"#.to_vec(),
        received,
        &UlidSource,
    );
    settle(store, &t, TriggerState::Accepted).await;
    store.record_trigger(&t).await.unwrap();
    let failed = Delivery {
        status: DeliveryStatus::Failed,
        attempts: 2,
        last_error: Some("attempt 2 of 2: boom".into()),
        ..t.deliveries[0].clone()
    };
    store.record_failed(&failed, &DeliveryMessage::for_trigger(&t).unwrap()).await.unwrap();
    (t, failed)
}

/// The one delivery record of `t`, as stored.
async fn delivery_item(raw: &aws_sdk_dynamodb::Client, t: &Trigger) -> HashMap<String, AttributeValue> {
    let items = partition(raw, &format!("TRIGGER#{}", t.event_id)).await;
    items.into_iter().find(|i| i["sk"].as_s().unwrap().starts_with("DELIVERY#")).expect("a delivery record")
}

#[tokio::test]
async fn failed_deliveries_are_found_by_trigger_and_by_subscription_and_time_without_a_scan() {
    // GIVEN three failed deliveries of one subscription, an hour apart, and one of another
    let moto = Moto::start("failed-index");
    let (store, requests, _) = counted_store(&moto).await;
    let redrive = DynamoRedrive::new(store.clone(), Arc::new(TestQueue::default()));
    let sub = subscription("orders.created", "fn-a", Metadata::new());
    let other = subscription("orders.created", "fn-b", Metadata::new());
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
    let hour = chrono::Duration::hours(1);
    let (first, _) = failed_delivery(&store, &sub, t0).await;
    let (second, _) = failed_delivery(&store, &sub, t0 + hour).await;
    let (third, _) = failed_delivery(&store, &sub, t0 + hour * 2).await;
    failed_delivery(&store, &other, t0 + hour).await;
    // AND a delivery of the subscription that failed and then succeeded on a redrive: no longer failed
    let (healed, failed) = failed_delivery(&store, &sub, t0 + hour).await;
    let series = gateway_core::store_contract::redriven(&failed, Default::default(), t0 + hour * 5);
    store.record_delivery(&Delivery { status: DeliveryStatus::Invoked, attempts: 1, ..series }).await.unwrap();
    requests.take();

    // WHEN the failures of [t0, t0 + 2h) are asked for
    let found = redrive.failed_of_subscription(&sub.subscription_id, t0, t0 + hour * 2, 10).await.unwrap();

    // THEN the first two come, oldest first, from one index Query and one BatchGetItem
    let ids: Vec<_> = found.iter().map(|d| d.event_id).collect();
    assert_eq!(ids, [first.event_id, second.event_id], "since is in, until is out, the healed one is gone");
    assert_eq!(requests.take(), ["Query", "BatchGetItem"]);
    let limited = redrive.failed_of_subscription(&sub.subscription_id, t0, t0 + hour * 3, 1).await.unwrap();
    assert_eq!(limited.iter().map(|d| d.event_id).collect::<Vec<_>>(), [first.event_id]);
    let all = redrive.failed_of_subscription(&sub.subscription_id, t0, t0 + hour * 3, 10).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].event_id, third.event_id);

    // AND by trigger: one Query of its partition
    requests.take();
    let of_trigger = redrive.failed_of_trigger(&first.event_id, None).await.unwrap().unwrap();
    assert_eq!((of_trigger.len(), of_trigger[0].attempts), (1, 2));
    assert_eq!(requests.take(), ["Query"]);
    assert_eq!(redrive.failed_of_trigger(&healed.event_id, None).await.unwrap(), Some(Vec::new()));
    let none = redrive.failed_of_trigger(&first.event_id, Some(&other.subscription_id)).await.unwrap();
    assert_eq!(none, Some(Vec::new()));
    assert_eq!(redrive.failed_of_trigger(&UlidSource.event_id(), None).await.unwrap(), None);
}

#[tokio::test]
async fn a_redrive_starts_a_new_series_once_and_hands_the_kept_payload_to_the_delivery_queue() {
    // GIVEN a failed delivery with its payload kept, and the real delivery queue on SQS
    let moto = Moto::start("redrive");
    let (store, requests, raw) = counted_store(&moto).await;
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let queue = sqs.create_queue().queue_name("deliveries").send().await.unwrap().queue_url.unwrap();
    let redrive = DynamoRedrive::new(store.clone(), Arc::new(SqsRedriveQueue::new(sqs.clone(), &queue)));
    let sub = subscription("orders.created", "fn-a", Metadata::new());
    let (t, failed) = failed_delivery(&store, &sub, Utc::now()).await;
    let item = &delivery_item(&raw, &t).await;
    assert!(item.contains_key("payload") && item.contains_key("gsi2pk"), "{item:?}");

    // WHEN it is redriven under a sync policy, twice
    let policy = gateway_core::DeliveryPolicy { mode: gateway_core::DeliveryMode::Sync, ..Default::default() };
    let next = gateway_core::store_contract::redriven(&failed, policy, Utc::now());
    requests.take();
    assert!(redrive.redrive(&next).await.unwrap());
    assert_eq!(requests.take(), ["UpdateItem"], "one write; the SQS send is the other request");
    assert!(!redrive.redrive(&next).await.unwrap(), "the second finds it pending: nothing happens");

    // THEN the record is generation 1, pending, out of the failed index and without the payload
    let recorded = store.recorded_trigger(&t.event_id, &[sub.subscription_id]).await.unwrap().deliveries;
    assert_eq!(recorded, std::slice::from_ref(&next));
    let item = &delivery_item(&raw, &t).await;
    assert!(!item.contains_key("payload") && !item.contains_key("gsi2pk"), "{item:?}");
    // AND one message of the current version carries it, with the trigger's payload
    let messages = receive(&sqs, &queue, 1).await;
    assert_eq!(messages.len(), 1);
    let message = DeliveryMessage::read(messages[0].body.as_deref().unwrap()).unwrap();
    assert_eq!((message.version, message.unconfirmed), (gateway_core::message::MESSAGE_VERSION, false));
    assert_eq!(message.payload().unwrap(), br#"{"orderId":"o-1"}"#);
    assert_eq!(message.deliveries, [gateway_core::message::DeliveryEntry::of(&next)]);
    let event = messages[0].message_attributes.as_ref().and_then(|a| a.get("event")).and_then(|v| v.string_value());
    assert_eq!(event, Some("orders.created"));
}

#[tokio::test]
async fn a_redrive_that_cannot_reach_the_queue_leaves_the_delivery_failed_and_says_so() {
    let moto = Moto::start("redrive-down");
    let store = store(&moto).await;
    let queue = Arc::new(TestQueue::default());
    *queue.broken.lock().unwrap() = true;
    let redrive = DynamoRedrive::new(store.clone(), queue.clone());
    let sub = subscription("orders.created", "fn-a", Metadata::new());
    let (t, failed) = failed_delivery(&store, &sub, Utc::now()).await;
    let next = gateway_core::store_contract::redriven(&failed, Default::default(), Utc::now());

    let err = redrive.redrive(&next).await.unwrap_err();

    assert!(matches!(err, Error::Unavailable(_)), "a 503 to retry: {err:?}");
    let recorded = store.recorded_trigger(&t.event_id, &[sub.subscription_id]).await.unwrap().deliveries;
    assert_eq!(recorded, std::slice::from_ref(&failed), "failed again, at generation 0");
    let listed = redrive
        .failed_of_subscription(&sub.subscription_id, t.received_at, Utc::now() + chrono::Duration::hours(1), 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "back in the failed index");
    // Once the queue answers, the same redrive goes through.
    *queue.broken.lock().unwrap() = false;
    assert!(redrive.redrive(&next).await.unwrap());
    assert_eq!(queue.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failure_without_a_kept_payload_is_not_redriven_by_the_api_and_the_answer_says_why() {
    // GIVEN a delivery recorded failed before payloads were kept (no `payload` on its record)
    let moto = Moto::start("redrive-no-payload");
    let store = store(&moto).await;
    let queue = Arc::new(TestQueue::default());
    let redrive = DynamoRedrive::new(store.clone(), queue.clone());
    let sub = subscription("orders.created", "fn-a", Metadata::new());
    let t = gateway_core::trigger::accepted_trigger(
        &definition("orders.created"),
        &[std::sync::Arc::new(sub.clone())],
        b"{}".to_vec(),
        Utc::now(),
        &UlidSource,
    );
    let failed = Delivery { status: DeliveryStatus::Failed, attempts: 8, ..t.deliveries[0].clone() };
    store.record_delivery(&failed).await.unwrap();
    let next = gateway_core::store_contract::redriven(&failed, Default::default(), Utc::now());

    // WHEN it is redriven
    let err = redrive.redrive(&next).await.unwrap_err();

    // THEN the answer names it and the way out, and nothing changed or was sent
    match err {
        Error::InvalidInput { violations, .. } => {
            assert!(violations[0].message.contains(&t.event_id.to_string()), "{}", violations[0].message);
            assert!(violations[0].message.contains("dead-letter queue"), "{}", violations[0].message);
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert!(queue.sent.lock().unwrap().is_empty());
    let recorded = store.recorded_trigger(&t.event_id, &[sub.subscription_id]).await.unwrap().deliveries;
    assert_eq!(recorded, [failed]);
}

#[tokio::test]
async fn a_delivery_write_lands_exactly_when_the_core_says_it_supersedes_the_record() {
    // GIVEN every pair of states a record and a later write may be in (status, attempts,
    // generation, Lambda's report or none), the record reset to the first before each write. A generation-0 record is
    // stored without `generation`, as every record from before redrives is.
    let moto = Moto::start("supersedes");
    let store = store(&moto).await;
    let raw = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    let sub = subscription("orders.created", "fn-a", Metadata::new());
    let t = gateway_core::trigger::accepted_trigger(
        &definition("orders.created"),
        &[std::sync::Arc::new(sub.clone())],
        b"{}".to_vec(),
        Utc::now(),
        &UlidSource,
    );
    use DeliveryStatus::*;
    let mut states = Vec::new();
    let report = gateway_core::Reported { at: Utc::now(), condition: "Success".into(), approximate_invoke_count: 1 };
    for status in [Pending, Invoked, Delivered, Failed] {
        for attempts in [1, 2] {
            for generation in [0, 1] {
                states.push(Delivery { status, attempts, generation, ..t.deliveries[0].clone() });
                // Lambda's report settles a series delivered or failed
                if matches!(status, Delivered | Failed) {
                    let reported = Some(report.clone());
                    states.push(Delivery { status, attempts, generation, reported, ..t.deliveries[0].clone() });
                }
            }
        }
    }
    let key = |d: &Delivery| {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(format!("TRIGGER#{}", d.event_id))),
            ("sk".to_owned(), AttributeValue::S(format!("DELIVERY#{}", d.subscription_id))),
        ])
    };
    for recorded in &states {
        for written in &states {
            raw.delete_item().table_name("gateway").set_key(Some(key(recorded))).send().await.unwrap();
            store.record_delivery(recorded).await.unwrap();

            // WHEN the write comes
            store.record_delivery(written).await.unwrap();

            // THEN the record is the write if and only if `Delivery::supersedes` says so
            let now = store.recorded_trigger(&t.event_id, &[sub.subscription_id]).await.unwrap().deliveries;
            let expected = if written.supersedes(recorded) { written } else { recorded };
            assert_eq!(
                now,
                std::slice::from_ref(expected),
                "recorded {:?}/{}/g{}/reported {}, written {:?}/{}/g{}/reported {}",
                recorded.status,
                recorded.attempts,
                recorded.generation,
                recorded.reported.is_some(),
                written.status,
                written.attempts,
                written.generation,
                written.reported.is_some()
            );
        }
    }
}

#[tokio::test]
async fn a_new_series_is_begun_only_over_the_failure_it_follows_and_only_once() {
    // GIVEN a delivery recorded failed at generation 0 with its payload kept
    let moto = Moto::start("start-series");
    let store = store(&moto).await;
    let sub = subscription("orders.created", "fn-a", Metadata::new());
    let t = gateway_core::trigger::accepted_trigger(
        &definition("orders.created"),
        &[std::sync::Arc::new(sub.clone())],
        b"{}".to_vec(),
        Utc::now(),
        &UlidSource,
    );
    let failed = Delivery { status: DeliveryStatus::Failed, attempts: 3, ..t.deliveries[0].clone() };
    store.record_failed(&failed, &DeliveryMessage::for_trigger(&t).unwrap()).await.unwrap();
    let next = gateway_core::store_contract::redriven(&failed, Default::default(), Utc::now());

    // WHEN two copies of its dead letter begin the next series
    let first = store.start_series(&next).await.unwrap();
    let second = store.start_series(&next).await.unwrap();

    // THEN only the first does, and the record is that series, out of the failed index
    assert!(first && !second);
    let recorded = store.recorded_trigger(&t.event_id, &[sub.subscription_id]).await.unwrap().deliveries;
    assert_eq!(recorded, std::slice::from_ref(&next));
    let redrive = DynamoRedrive::new(store.clone(), Arc::new(TestQueue::default()));
    let an_hour_ago = Utc::now() - chrono::Duration::hours(1);
    let still_failed = redrive.failed_of_subscription(&sub.subscription_id, an_hour_ago, Utc::now(), 10).await;
    assert!(still_failed.unwrap().is_empty());
    // AND a series is never begun over a record that is not failed at the generation before
    let skipping = Delivery { generation: 2, ..next.clone() };
    assert!(!store.start_series(&skipping).await.unwrap(), "generation 1 is pending, not failed");

    // WHEN two copies take the begun series over, as read, once it is orphaned
    let later = Utc::now() + chrono::Duration::minutes(25);
    let first = store.take_over_series(&next, later).await.unwrap();
    let second = store.take_over_series(&next, later).await.unwrap();
    // THEN one does, and the record says when
    assert!(first && !second, "a series is taken over once");
    let recorded = store.recorded_trigger(&t.event_id, &[sub.subscription_id]).await.unwrap().deliveries;
    assert_eq!(recorded[0].updated_at, later);
}
