//! Event definitions and subscriptions: the registry ports and the trigger's one read.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use gateway_core::ports::{EventStore, SubscriptionStore, TriggerSource, TriggerTarget};
use gateway_core::{
    Error, EventDefinition, EventName, Page, PageRequest, Referrer, SchemaName, Subscription, SubscriptionId, Version,
};

use crate::items::{
    event_pk, referred_schemas, source_sk, sub_copy_pk, sub_sk, EventItem, ReceivedItem, SubscriptionItem, DEF_SK,
    EVENTS_INDEX, EVENT_ITEM_FIXED, EVENT_ITEM_OPTIONAL, PK, RECEIVED_SK, SK, SOURCES_PK, SUBSCRIPTIONS_INDEX,
    SUB_COPY_SK, SUB_PREFIX,
};
use crate::referrers::{check_referred, difference};
use crate::{from_item, key, n, s, string_attr, to_item, to_value, unavailable, DynamoStore, Expr, Guard, Result, Tx};

/// Subscriptions deleted per cascade transaction: two deletes each, plus the definition's
/// update, stays within TransactWriteItems' 100 actions.
const CASCADE_BATCH: usize = 48;

/// Subscriptions deleted per cascade transaction of an event that refers to `referred` schemas:
/// the last round also removes its two actions per schema.
fn cascade_batch(referred: usize) -> usize {
    CASCADE_BATCH.saturating_sub(referred).max(1)
}

/// One event's partition as read: the definition, when it was last triggered, and (if asked)
/// its subscriptions.
struct EventPartition {
    definition: EventItem,
    received_at: Option<DateTime<Utc>>,
    subscriptions: Vec<SubscriptionItem>,
}

impl EventPartition {
    fn into_definition(self) -> EventDefinition {
        self.definition.into_definition(self.received_at)
    }
}

impl DynamoStore {
    /// The event's partition in one strongly consistent Query (paginated past 1 MB): the
    /// definition and its `receivedAt`, and every subscription when `with_subscriptions`.
    async fn read_event(&self, name: &EventName, with_subscriptions: bool) -> Result<Option<EventPartition>> {
        let query = self
            .client
            .query()
            .table_name(self.table.as_ref())
            .consistent_read(true)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(event_pk(name)));
        let query = if with_subscriptions {
            query.key_condition_expression("#pk = :pk")
        } else {
            // `#DEF` and `#RECEIVED` sort before every `SUB#`.
            query
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :head)")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":head", s("#"))
        };
        let mut definition = None;
        let mut received_at = None;
        let mut subscriptions = Vec::new();
        for item in self.query_items(query, None, None).await? {
            let sk = string_attr(&item, SK)?;
            if sk == DEF_SK {
                definition = Some(from_item::<EventItem>(item)?);
            } else if sk == RECEIVED_SK {
                received_at = Some(from_item::<ReceivedItem>(item)?.received_at);
            } else if sk.starts_with(SUB_PREFIX) {
                subscriptions.push(from_item::<SubscriptionItem>(item)?);
            }
        }
        Ok(definition.map(|definition| EventPartition { definition, received_at, subscriptions }))
    }

    /// Deletes up to [`cascade_batch`] subscriptions of the event and, once none are left, the
    /// event itself and its edges under the schemas it refers to (`refers_to`), all under the
    /// version read. `Ok(true)` when the event is gone.
    async fn delete_event_round(
        &self,
        name: &EventName,
        version: Version,
        count: u64,
        refers_to: &[SchemaName],
    ) -> Result<bool> {
        let pk = event_pk(name);
        let batch_size = cascade_batch(refers_to.len());
        let batch = if count == 0 {
            Vec::new()
        } else {
            let query = self.prefix_query(&pk, SUB_PREFIX).projection_expression("#pk, #sk");
            self.query_items(query, None, Some(batch_size + 1)).await?
        };
        let last_round = batch.len() <= batch_size;
        let taken = batch.len().min(batch_size);
        let mut tx = Tx::default();
        for item in &batch[..taken] {
            let sk = string_attr(item, SK)?;
            tx.push(self.tx_delete(key(&pk, sk), None, &Expr::default())?, Guard::Unguarded);
            // The by-id copy's partition key is the same `SUB#<id>` text.
            tx.push(self.tx_delete(key(sk, SUB_COPY_SK), None, &Expr::default())?, Guard::Unguarded);
        }
        let expr =
            Expr::default().name("#version", "version").name("#count", "subscriptionCount").value(":v", n(version.0));
        if last_round {
            let expr = expr.value(":n", n(taken));
            // A source made meanwhile stops the delete too: the event is read again.
            let expr = expr.name("#sources", "sourceCount").value(":zero", n(0));
            let definition = self.tx_delete(
                key(&pk, DEF_SK),
                Some(
                    "#version = :v AND (attribute_not_exists(#count) OR #count = :n) \
                     AND (attribute_not_exists(#sources) OR #sources = :zero)",
                ),
                &expr,
            )?;
            tx.push(definition, Guard::Subject);
            tx.push(self.tx_delete(key(&pk, RECEIVED_SK), None, &Expr::default())?, Guard::Unguarded);
            // The version condition holds the references to those read.
            self.unrefer(&mut tx, &Referrer::Event(name.clone()), refers_to)?;
        } else {
            let expr = expr.value(":minus", n(-(taken as i64)));
            tx.push(
                self.tx_update(key(&pk, DEF_SK), "ADD #count :minus", Some("#version = :v"), &expr)?,
                Guard::Subject,
            );
        }
        // A cancelled round means the event changed under us: the caller reads it again.
        Ok(self.transact_guarded(tx).await?.is_ok() && last_round)
    }

    /// Deletes every source of the event in one transaction, under the version read (and lowers
    /// its `sourceCount` by as many). A cancelled transaction is for the caller to read again.
    async fn delete_sources_of(&self, name: &EventName, version: Version) -> Result<()> {
        let sources = self.sources_of(name).await?;
        // Two more actions: TransactWriteItems takes 100 in all.
        let taken = &sources[..sources.len().min(98)];
        let mut actions = Vec::with_capacity(taken.len() + 1);
        for source in taken {
            actions.push(self.tx_delete(key(SOURCES_PK, source_sk(&source.name)), None, &Expr::default())?);
        }
        let expr = Expr::default()
            .name("#version", "version")
            .name("#count", "sourceCount")
            .value(":v", n(version.0))
            .value(":minus", n(-(taken.len() as i64)));
        actions.push(self.tx_update(key(event_pk(name), DEF_SK), "ADD #count :minus", Some("#version = :v"), &expr)?);
        let _ = self.transact(actions).await?;
        Ok(())
    }

    /// Writes `event` with one UpdateItem if the stored definition is at `prev` and refers to the
    /// same schemas (`refers_to`), so that no edge changes: most replaces, and every replace of
    /// an event that refers to none, as it was before the registry. `false` if it is not so.
    async fn update_event_referring_as_before(
        &self,
        event: &EventDefinition,
        prev: Version,
        refers_to: &[SchemaName],
    ) -> Result<bool> {
        let (update, expr) = event_update(event)?;
        let expr =
            expr.name("#pk", PK).name("#version", "version").name("#refers", "refersTo").value(":prev", n(prev.0));
        let (condition, expr) = if refers_to.is_empty() {
            ("attribute_exists(#pk) AND #version = :prev AND attribute_not_exists(#refers)", expr)
        } else {
            (
                "attribute_exists(#pk) AND #version = :prev AND #refers = :refers",
                expr.value(":refers", to_value(&refers_to)?),
            )
        };
        self.update_if(key(event_pk(&event.name), DEF_SK), update, condition, &expr).await
    }

    async fn get_subscription_item(&self, id: &SubscriptionId) -> Result<Option<Subscription>> {
        let out = self
            .client
            .get_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key(sub_copy_pk(id), SUB_COPY_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        out.item.map(|item| from_item::<SubscriptionItem>(item).map(SubscriptionItem::into_subscription)).transpose()
    }
}

/// The update that writes `event` over its stored definition: SET every field, REMOVE the
/// optional ones it lacks. The caller adds its condition's placeholders (`#a<i>`, `:a<i>` and
/// `#r<i>` are taken).
fn event_update(event: &EventDefinition) -> Result<(String, Expr)> {
    let item = to_item(&EventItem::new(event))?;
    let mut expr = Expr::default();
    let mut set = Vec::new();
    for (i, (attribute, value)) in item.into_iter().enumerate() {
        if EVENT_ITEM_FIXED.contains(&attribute.as_str()) {
            continue;
        }
        set.push(format!("#a{i} = :a{i}"));
        expr = expr.name(&format!("#a{i}"), &attribute).value(&format!(":a{i}"), value);
    }
    let mut update = format!("SET {}", set.join(", "));
    let absent: Vec<&str> = EVENT_ITEM_OPTIONAL
        .iter()
        .copied()
        .filter(|a| match *a {
            "description" => event.description.is_none(),
            "schema" => event.schema.is_none(),
            "envelope" => event.envelope.is_none(),
            "schemaReferences" | "refersTo" => event.schema_references.is_empty(),
            _ => false,
        })
        .collect();
    if !absent.is_empty() {
        let removed: Vec<String> = absent.iter().enumerate().map(|(i, _)| format!("#r{i}")).collect();
        for (i, attribute) in absent.iter().enumerate() {
            expr = expr.name(&format!("#r{i}"), attribute);
        }
        update.push_str(&format!(" REMOVE {}", removed.join(", ")));
    }
    Ok((update, expr))
}

fn version_mismatch(what: &'static str, id: impl ToString, current: Version) -> Error {
    Error::VersionMismatch { what, id: id.to_string(), current }
}

fn not_found(what: &'static str, id: impl ToString) -> Error {
    Error::NotFound { what, id: id.to_string() }
}

#[async_trait]
impl EventStore for DynamoStore {
    async fn create_event(&self, event: &EventDefinition) -> Result<()> {
        let item = EventItem::new(event);
        check_referred(item.refers_to.len())?;
        let refers_to = item.refers_to.clone();
        let pk = event_pk(&event.name);
        let mut tx = Tx::default();
        let absent = Expr::default().name("#pk", PK);
        tx.push(self.tx_put(to_item(&item)?, Some("attribute_not_exists(#pk)"), &absent)?, Guard::Subject);
        // A `#RECEIVED` left by a trigger racing an earlier delete must not carry over.
        let received = match event.received_at {
            Some(received_at) => self.tx_put(
                to_item(&ReceivedItem { pk: pk.clone(), sk: RECEIVED_SK.to_owned(), received_at })?,
                None,
                &Expr::default(),
            )?,
            None => self.tx_delete(key(&pk, RECEIVED_SK), None, &Expr::default())?,
        };
        tx.push(received, Guard::Unguarded);
        self.refer(&mut tx, &Referrer::Event(event.name.clone()), &refers_to)?;
        match self.transact_guarded(tx).await? {
            Ok(()) => Ok(()),
            Err(cancelled) if cancelled.failed(&Guard::Subject) => Err(Error::EventExists(event.name.clone())),
            Err(cancelled) => match cancelled.missing_schema() {
                Some(schema) => Err(not_found("schema", schema)),
                None => Err(cancelled.unavailable(format_args!("creating event '{}'", event.name))),
            },
        }
    }

    async fn get_event(&self, name: &EventName) -> Result<Option<EventDefinition>> {
        Ok(self.read_event(name, false).await?.map(EventPartition::into_definition))
    }

    async fn list_events(&self, page: &PageRequest) -> Result<Page<EventDefinition>> {
        let (pks, next_cursor) = self.index_page(EVENTS_INDEX, "EVENT#", DEF_SK, page).await?;
        let wanted = pks.iter().flat_map(|pk| [key(pk, DEF_SK), key(pk, RECEIVED_SK)]).collect();
        let mut found = self.batch_get(wanted).await?;
        let mut items = Vec::with_capacity(pks.len());
        for pk in pks {
            // The index is eventually consistent: an event deleted since is skipped.
            let Some(definition) = found.remove(&(pk.clone(), DEF_SK.to_owned())) else {
                continue;
            };
            let received_at = found
                .remove(&(pk, RECEIVED_SK.to_owned()))
                .map(from_item::<ReceivedItem>)
                .transpose()?
                .map(|r| r.received_at);
            items.push(from_item::<EventItem>(definition)?.into_definition(received_at));
        }
        Ok(Page { items, next_cursor })
    }

    async fn replace_event(&self, event: &EventDefinition) -> Result<()> {
        let refers_to = referred_schemas(&event.schema_references, None);
        check_referred(refers_to.len())?;
        let prev = Version(event.version.0.saturating_sub(1));
        for _ in 0..3 {
            if self.update_event_referring_as_before(event, prev, &refers_to).await? {
                return Ok(());
            }
            let Some(current) = self.read_event(&event.name, false).await? else {
                return Err(not_found("event", &event.name));
            };
            if current.definition.version != prev {
                return Err(version_mismatch("event", &event.name, current.definition.version));
            }
            // (If it refers to the same schemas now, it changed between the update and the read;
            // the transaction then changes no edge, under the version just read.)
            let before = current.definition.refers_to;
            let (update, expr) = event_update(event)?;
            let expr = expr.name("#pk", PK).name("#version", "version").value(":prev", n(prev.0));
            let mut tx = Tx::default();
            tx.push(
                self.tx_update(
                    key(event_pk(&event.name), DEF_SK),
                    &update,
                    Some("attribute_exists(#pk) AND #version = :prev"),
                    &expr,
                )?,
                Guard::Subject,
            );
            let referrer = Referrer::Event(event.name.clone());
            self.refer(&mut tx, &referrer, &difference(&refers_to, &before))?;
            self.unrefer(&mut tx, &referrer, &difference(&before, &refers_to))?;
            match self.transact_guarded(tx).await? {
                Ok(()) => return Ok(()),
                // It changed since it was read: read it again.
                Err(cancelled) if cancelled.failed(&Guard::Subject) => continue,
                Err(cancelled) => {
                    return Err(match cancelled.missing_schema() {
                        Some(schema) => not_found("schema", schema),
                        None => cancelled.unavailable(format_args!("replacing event '{}'", event.name)),
                    })
                }
            }
        }
        Err(Error::unavailable(format!("event '{}' kept changing while it was being replaced", event.name)))
    }

    async fn delete_event(&self, name: &EventName, expected: Option<Version>, cascade: bool) -> Result<()> {
        let mut rounds_left = None;
        loop {
            let Some(current) = self.read_event(name, false).await? else {
                return Err(not_found("event", name));
            };
            let (version, count) = (current.definition.version, current.definition.subscription_count);
            let refers_to = &current.definition.refers_to;
            if expected.is_some_and(|v| v != version) {
                return Err(version_mismatch("event", name, version));
            }
            if count > 0 && !cascade {
                return Err(Error::EventHasSubscriptions { event: name.clone(), count });
            }
            let sources = current.definition.source_count;
            if sources > 0 && !cascade {
                return Err(Error::EventHasSources { event: name.clone(), count: sources });
            }
            // Enough rounds for every batch, and a few for concurrent changes.
            let batch = cascade_batch(refers_to.len()) as u64;
            let left = rounds_left.get_or_insert(count / batch + sources / 98 + 5);
            if *left == 0 {
                return Err(Error::unavailable(format!("event '{name}' kept changing while it was being deleted")));
            }
            *left -= 1;
            if sources > 0 {
                // Few: one transaction takes them all, then the rounds see none.
                self.delete_sources_of(name, version).await?;
                continue;
            }
            if self.delete_event_round(name, version, count, refers_to).await? {
                return Ok(());
            }
        }
    }
}

#[async_trait]
impl SubscriptionStore for DynamoStore {
    async fn create_subscription(&self, subscription: &Subscription) -> Result<()> {
        let expr = Expr::default().name("#pk", PK);
        let count = Expr::default().name("#pk", PK).name("#count", "subscriptionCount").value(":one", n(1));
        let actions = vec![
            self.tx_update(
                key(event_pk(&subscription.event), DEF_SK),
                "ADD #count :one",
                Some("attribute_exists(#pk)"),
                &count,
            )?,
            self.tx_put(
                to_item(&SubscriptionItem::under_event(subscription))?,
                Some("attribute_not_exists(#pk)"),
                &expr,
            )?,
            self.tx_put(to_item(&SubscriptionItem::by_id(subscription))?, Some("attribute_not_exists(#pk)"), &expr)?,
        ];
        match self.transact(actions).await? {
            Ok(()) => Ok(()),
            Err(reasons) if reasons.first().is_some_and(|r| r == "ConditionalCheckFailed") => {
                Err(not_found("event", &subscription.event))
            }
            Err(reasons) => Err(Error::unavailable(format!(
                "creating subscription {} was cancelled: {reasons:?}",
                subscription.subscription_id
            ))),
        }
    }

    async fn get_subscription(&self, id: &SubscriptionId) -> Result<Option<Subscription>> {
        self.get_subscription_item(id).await
    }

    async fn list_subscriptions(&self, event: Option<&EventName>, page: &PageRequest) -> Result<Page<Subscription>> {
        match event {
            Some(name) => {
                let pk = event_pk(name);
                let query = self.prefix_query(&pk, SUB_PREFIX);
                let (found, next_cursor) =
                    self.query_page(query, page, &[PK, SK], |c| c[PK] == pk && c[SK].starts_with(SUB_PREFIX)).await?;
                let items = found
                    .into_iter()
                    .map(|item| from_item::<SubscriptionItem>(item).map(SubscriptionItem::into_subscription))
                    .collect::<Result<_>>()?;
                Ok(Page { items, next_cursor })
            }
            None => {
                let (pks, next_cursor) = self.index_page(SUBSCRIPTIONS_INDEX, SUB_PREFIX, SUB_COPY_SK, page).await?;
                let items = self
                    .listed_items(pks, SUB_COPY_SK)
                    .await?
                    .into_iter()
                    .map(|item| from_item::<SubscriptionItem>(item).map(SubscriptionItem::into_subscription))
                    .collect::<Result<_>>()?;
                Ok(Page { items, next_cursor })
            }
        }
    }

    async fn replace_subscription(&self, subscription: &Subscription) -> Result<()> {
        let expr =
            Expr::default().name("#version", "version").value(":prev", n(subscription.version.0.saturating_sub(1)));
        let condition = Some("#version = :prev");
        let actions = vec![
            self.tx_put(to_item(&SubscriptionItem::under_event(subscription))?, condition, &expr)?,
            self.tx_put(to_item(&SubscriptionItem::by_id(subscription))?, condition, &expr)?,
        ];
        if self.transact(actions).await?.is_ok() {
            return Ok(());
        }
        let id = subscription.subscription_id;
        match self.get_subscription_item(&id).await? {
            None => Err(not_found("subscription", id)),
            Some(current) => Err(version_mismatch("subscription", id, current.version)),
        }
    }

    async fn delete_subscription(&self, id: &SubscriptionId, expected: Option<Version>) -> Result<()> {
        for _ in 0..3 {
            let Some(current) = self.get_subscription_item(id).await? else {
                return Err(not_found("subscription", id));
            };
            if expected.is_some_and(|v| v != current.version) {
                return Err(version_mismatch("subscription", id, current.version));
            }
            let pk = event_pk(&current.event);
            let guard = Expr::default().name("#version", "version").value(":v", n(current.version.0));
            let count = Expr::default().name("#pk", PK).name("#count", "subscriptionCount").value(":minus", n(-1));
            let actions = vec![
                self.tx_delete(key(sub_copy_pk(id), SUB_COPY_SK), Some("#version = :v"), &guard)?,
                self.tx_delete(key(&pk, sub_sk(id)), None, &Expr::default())?,
                self.tx_update(key(&pk, DEF_SK), "ADD #count :minus", Some("attribute_exists(#pk)"), &count)?,
            ];
            // Cancelled: it changed or went since we read it; read again.
            if self.transact(actions).await?.is_ok() {
                return Ok(());
            }
        }
        Err(Error::unavailable(format!("subscription {id} kept changing while it was being deleted")))
    }
}

#[async_trait]
impl TriggerSource for DynamoStore {
    async fn trigger_target(&self, name: &EventName) -> Result<Option<TriggerTarget>> {
        Ok(self.read_event(name, true).await?.map(|mut partition| {
            let subscriptions = std::mem::take(&mut partition.subscriptions)
                .into_iter()
                .map(|item| Arc::new(item.into_subscription()))
                .collect();
            TriggerTarget { definition: Arc::new(partition.into_definition()), subscriptions }
        }))
    }
}
