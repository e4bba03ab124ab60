//! Event definitions and subscriptions: the registry ports and the trigger's one read.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gateway_core::ports::{EventStore, SubscriptionStore, TriggerSource};
use gateway_core::{Error, EventDefinition, EventName, Page, PageRequest, Subscription, SubscriptionId, Version};

use crate::items::{
    event_pk, source_sk, sub_copy_pk, sub_sk, EventItem, ReceivedItem, SubscriptionItem, DEF_SK, EVENTS_INDEX,
    EVENT_ITEM_FIXED, EVENT_ITEM_OPTIONAL, GSI1, GSI1PK, GSI1SK, PK, RECEIVED_SK, SK, SOURCES_PK, SUBSCRIPTIONS_INDEX,
    SUB_COPY_SK, SUB_PREFIX,
};
use crate::{condition_failed, from_item, key, n, s, string_attr, to_item, unavailable, DynamoStore, Expr, Result};

/// Subscriptions deleted per cascade transaction: two deletes each, plus the definition's
/// update, stays within TransactWriteItems' 100 actions.
const CASCADE_BATCH: usize = 48;

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

    /// Deletes up to [`CASCADE_BATCH`] subscriptions of the event and, once none are left, the
    /// event itself, all under the version read. `Ok(true)` when the event is gone.
    async fn delete_event_round(&self, name: &EventName, version: Version, count: u64) -> Result<bool> {
        let pk = event_pk(name);
        let batch = if count == 0 {
            Vec::new()
        } else {
            let query = self
                .client
                .query()
                .table_name(self.table.as_ref())
                .consistent_read(true)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :sub)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":sub", s(SUB_PREFIX))
                .projection_expression("#pk, #sk");
            self.query_items(query, None, Some(CASCADE_BATCH + 1)).await?
        };
        let last_round = batch.len() <= CASCADE_BATCH;
        let taken = batch.len().min(CASCADE_BATCH);
        let mut actions = Vec::with_capacity(taken * 2 + 2);
        for item in &batch[..taken] {
            let sk = string_attr(item, SK)?;
            actions.push(self.tx_delete(key(&pk, sk), None, &Expr::default())?);
            // The by-id copy's partition key is the same `SUB#<id>` text.
            actions.push(self.tx_delete(key(sk, SUB_COPY_SK), None, &Expr::default())?);
        }
        let expr =
            Expr::default().name("#version", "version").name("#count", "subscriptionCount").value(":v", n(version.0));
        if last_round {
            let expr = expr.value(":n", n(taken));
            // A source made meanwhile stops the delete too: the event is read again.
            let expr = expr.name("#sources", "sourceCount").value(":zero", n(0));
            actions.push(self.tx_delete(
                key(&pk, DEF_SK),
                Some(
                    "#version = :v AND (attribute_not_exists(#count) OR #count = :n) \
                     AND (attribute_not_exists(#sources) OR #sources = :zero)",
                ),
                &expr,
            )?);
            actions.push(self.tx_delete(key(&pk, RECEIVED_SK), None, &Expr::default())?);
        } else {
            let expr = expr.value(":minus", n(-(taken as i64)));
            actions.push(self.tx_update(key(&pk, DEF_SK), "ADD #count :minus", Some("#version = :v"), &expr)?);
        }
        // A cancelled round means the event changed under us: the caller reads it again.
        Ok(self.transact(actions).await?.is_ok() && last_round)
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

fn version_mismatch(what: &'static str, id: impl ToString, current: Version) -> Error {
    Error::VersionMismatch { what, id: id.to_string(), current }
}

fn not_found(what: &'static str, id: impl ToString) -> Error {
    Error::NotFound { what, id: id.to_string() }
}

#[async_trait]
impl EventStore for DynamoStore {
    async fn create_event(&self, event: &EventDefinition) -> Result<()> {
        let pk = event_pk(&event.name);
        let expr = Expr::default().name("#pk", PK);
        let mut actions =
            vec![self.tx_put(to_item(&EventItem::new(event))?, Some("attribute_not_exists(#pk)"), &expr)?];
        // A `#RECEIVED` left by a trigger racing an earlier delete must not carry over.
        actions.push(match event.received_at {
            Some(received_at) => self.tx_put(
                to_item(&ReceivedItem { pk: pk.clone(), sk: RECEIVED_SK.to_owned(), received_at })?,
                None,
                &Expr::default(),
            )?,
            None => self.tx_delete(key(&pk, RECEIVED_SK), None, &Expr::default())?,
        });
        match self.transact(actions).await? {
            Ok(()) => Ok(()),
            Err(reasons) if reasons.first().is_some_and(|r| r == "ConditionalCheckFailed") => {
                Err(Error::EventExists(event.name.clone()))
            }
            Err(reasons) => {
                Err(Error::unavailable(format!("creating event '{}' was cancelled: {reasons:?}", event.name)))
            }
        }
    }

    async fn get_event(&self, name: &EventName) -> Result<Option<EventDefinition>> {
        Ok(self.read_event(name, false).await?.map(EventPartition::into_definition))
    }

    async fn list_events(&self, page: &PageRequest) -> Result<Page<EventDefinition>> {
        let query = self
            .client
            .query()
            .table_name(self.table.as_ref())
            .index_name(GSI1)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", GSI1PK)
            .expression_attribute_values(":pk", s(EVENTS_INDEX));
        let (keys, next_cursor) = self
            .query_page(query, page, &[PK, SK, GSI1PK, GSI1SK], |c| {
                c[GSI1PK] == EVENTS_INDEX && c[SK] == DEF_SK && c[PK] == format!("EVENT#{}", c[GSI1SK])
            })
            .await?;
        let pks = keys.iter().map(|k| string_attr(k, PK).map(str::to_owned)).collect::<Result<Vec<_>>>()?;
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
        let item = to_item(&EventItem::new(event))?;
        let mut expr = Expr::default()
            .name("#pk", PK)
            .name("#version", "version")
            .value(":prev", n(event.version.0.saturating_sub(1)));
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
        let result = self
            .client
            .update_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key(event_pk(&event.name), DEF_SK)))
            .update_expression(update)
            .condition_expression("attribute_exists(#pk) AND #version = :prev")
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => match self.read_event(&event.name, false).await? {
                None => Err(not_found("event", &event.name)),
                Some(current) => Err(version_mismatch("event", &event.name, current.definition.version)),
            },
            Err(e) => Err(unavailable("UpdateItem", e)),
        }
    }

    async fn delete_event(&self, name: &EventName, expected: Option<Version>, cascade: bool) -> Result<()> {
        let mut rounds_left = None;
        loop {
            let Some(current) = self.read_event(name, false).await? else {
                return Err(not_found("event", name));
            };
            let (version, count) = (current.definition.version, current.definition.subscription_count);
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
            let left = rounds_left.get_or_insert(count / CASCADE_BATCH as u64 + sources / 98 + 5);
            if *left == 0 {
                return Err(Error::unavailable(format!("event '{name}' kept changing while it was being deleted")));
            }
            *left -= 1;
            if sources > 0 {
                // Few: one transaction takes them all, then the rounds see none.
                self.delete_sources_of(name, version).await?;
                continue;
            }
            if self.delete_event_round(name, version, count).await? {
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
        let query = self.client.query().table_name(self.table.as_ref());
        match event {
            Some(name) => {
                let pk = event_pk(name);
                let query = query
                    .consistent_read(true)
                    .key_condition_expression("#pk = :pk AND begins_with(#sk, :sub)")
                    .expression_attribute_names("#pk", PK)
                    .expression_attribute_names("#sk", SK)
                    .expression_attribute_values(":pk", s(&pk))
                    .expression_attribute_values(":sub", s(SUB_PREFIX));
                let (found, next_cursor) =
                    self.query_page(query, page, &[PK, SK], |c| c[PK] == pk && c[SK].starts_with(SUB_PREFIX)).await?;
                let items = found
                    .into_iter()
                    .map(|item| from_item::<SubscriptionItem>(item).map(SubscriptionItem::into_subscription))
                    .collect::<Result<_>>()?;
                Ok(Page { items, next_cursor })
            }
            None => {
                let query = query
                    .index_name(GSI1)
                    .key_condition_expression("#pk = :pk")
                    .expression_attribute_names("#pk", GSI1PK)
                    .expression_attribute_values(":pk", s(SUBSCRIPTIONS_INDEX));
                let (keys, next_cursor) = self
                    .query_page(query, page, &[PK, SK, GSI1PK, GSI1SK], |c| {
                        c[GSI1PK] == SUBSCRIPTIONS_INDEX
                            && c[SK] == SUB_COPY_SK
                            && c[PK] == format!("{SUB_PREFIX}{}", c[GSI1SK])
                    })
                    .await?;
                let pks = keys.iter().map(|k| string_attr(k, PK).map(str::to_owned)).collect::<Result<Vec<_>>>()?;
                let mut found = self.batch_get(pks.iter().map(|pk| key(pk, SUB_COPY_SK)).collect()).await?;
                let items = pks
                    .into_iter()
                    .filter_map(|pk| found.remove(&(pk, SUB_COPY_SK.to_owned())))
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
    async fn trigger_target(&self, name: &EventName) -> Result<Option<(EventDefinition, Vec<Subscription>)>> {
        Ok(self.read_event(name, true).await?.map(|mut partition| {
            let subscriptions = std::mem::take(&mut partition.subscriptions)
                .into_iter()
                .map(SubscriptionItem::into_subscription)
                .collect();
            (partition.into_definition(), subscriptions)
        }))
    }
}
