//! The delivery log: written by the cloud acceptor (pending) and the dispatcher (attempts),
//! read by `GET /deliveries/{eventId}` and `GET /events/{name}/deliveries`.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use gateway_core::message::DeliveryMessage;
use gateway_core::ports::{DeliveryLog, DeliveryRecorder, RecordedTrigger, TriggerState};
use gateway_core::{Delivery, DeliveryStatus, Error, EventId, EventName, Page, PageRequest, SubscriptionId, Trigger};

use crate::items::{
    deliveries_index_pk, delivery_sk, event_pk, time, trigger_pk, DeliveryItem, TriggerItem, DELIVERY_LISTED,
    DELIVERY_PREFIX, GSI1, GSI1PK, GSI1SK, PK, RECEIVED_SK, SK, TRIGGER_SK,
};
use crate::{condition_failed, from_item, key, n, s, string_attr, to_item, unavailable, DynamoStore, Expr, Result};

/// How far `receivedAt` may lag the event's last trigger (`touch_received_at`).
const RECEIVED_AT_STEP: chrono::Duration = chrono::Duration::seconds(1);

/// Delivery records written at once by one trigger.
const WRITE_CONCURRENCY: usize = 32;

impl DynamoStore {
    /// Writes a delivery record if it supersedes the stored one (`Delivery::supersedes`, as a
    /// condition: no read first). A record that is further along is left as it is, and that is
    /// success. It is a whole-item put, so a later state drops what only a failure carries (its
    /// `gsi2` keys and kept payload).
    async fn put_delivery(&self, delivery: &Delivery, item: &DeliveryItem) -> Result<()> {
        let (condition, expr) = supersedes_condition(delivery);
        self.put_if(to_item(item)?, &condition, &expr).await.map(|_| ())
    }

    /// Moves the event's `receivedAt` forward (never back), at most once a second per event from
    /// this process: a trigger received less than [`RECEIVED_AT_STEP`] after the last one this
    /// process wrote for its event writes nothing. It was a write unit every trigger; now a busy
    /// event costs one a second per warm instance, and `receivedAt` is the event's last trigger
    /// time to within that second.
    async fn touch_received_at(&self, trigger: &Trigger) -> Result<()> {
        let marks = || self.received_written.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if marks().get(&trigger.event).is_some_and(|last| trigger.received_at < *last + RECEIVED_AT_STEP) {
            return Ok(());
        }
        let at = time::text(&trigger.received_at);
        let result = self
            .client
            .update_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key(event_pk(&trigger.event), RECEIVED_SK)))
            .update_expression("SET #at = :at")
            .condition_expression("attribute_not_exists(#at) OR #at < :at")
            .expression_attribute_names("#at", "receivedAt")
            .expression_attribute_values(":at", s(at))
            .send()
            .await;
        match result {
            Err(e) if !condition_failed(&e) => Err(unavailable("UpdateItem", e)),
            // Marked once written (or found later already), so a write that fails is tried again
            // by the next trigger.
            _ => {
                marks().insert(trigger.event.clone(), trigger.received_at);
                Ok(())
            }
        }
    }
}

#[async_trait]
impl DeliveryRecorder for DynamoStore {
    async fn settle_trigger(
        &self,
        event_id: &EventId,
        event: &EventName,
        received_at: DateTime<Utc>,
        want: TriggerState,
    ) -> Result<TriggerState> {
        // One UpdateItem: `if_not_exists` keeps the first state written, and the item as it is
        // afterwards says which that was. Retrying it (the SDK does) answers the same.
        let out = self
            .client
            .update_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key(trigger_pk(event_id), TRIGGER_SK)))
            .update_expression(
                "SET #state = if_not_exists(#state, :want), #event_id = :event_id, #event = :event, \
                 #received_at = :received_at, #ttl = if_not_exists(#ttl, :ttl)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#event_id", "eventId")
            .expression_attribute_names("#event", "event")
            .expression_attribute_names("#received_at", "receivedAt")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":want", s(want.as_str()))
            .expression_attribute_values(":event_id", s(event_id.to_string()))
            .expression_attribute_values(":event", s(event.as_str()))
            .expression_attribute_values(":received_at", s(time::text(&received_at)))
            .expression_attribute_values(":ttl", n(TriggerItem::expiry(self.delivery_retention, received_at)))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| unavailable("UpdateItem", e))?;
        let item = out.attributes.ok_or_else(|| gateway_core::Error::unavailable("UpdateItem returned no item"))?;
        Ok(from_item::<TriggerItem>(item)?.settled())
    }

    async fn record_trigger(&self, trigger: &Trigger) -> Result<()> {
        let items: Vec<_> =
            trigger.deliveries.iter().map(|d| (d, DeliveryItem::new(d, self.delivery_retention))).collect();
        let writes: Vec<_> = items.iter().map(|(d, item)| self.put_delivery(d, item)).collect();
        stream::iter(writes).buffer_unordered(WRITE_CONCURRENCY).try_collect::<Vec<()>>().await?;
        self.touch_received_at(trigger).await
    }

    async fn record_delivery(&self, delivery: &Delivery) -> Result<()> {
        self.put_delivery(delivery, &DeliveryItem::new(delivery, self.delivery_retention)).await
    }

    async fn record_failed(&self, delivery: &Delivery, message: &DeliveryMessage) -> Result<()> {
        self.put_delivery(delivery, &DeliveryItem::failed(delivery, message, self.delivery_retention)).await
    }

    async fn start_series(&self, next: &Delivery) -> Result<bool> {
        // One conditional PutItem; the whole item, so what only the failure carried (its kept
        // payload, its `gsi2` keys, Lambda's report) goes with it, as in a redrive.
        let previous =
            next.generation.checked_sub(1).ok_or_else(|| Error::unavailable("generation 0 is never started"))?;
        let generation_was = if previous == 0 {
            "(attribute_not_exists(#generation) OR #generation = :previous)"
        } else {
            "#generation = :previous"
        };
        let expr = Expr::default()
            .name("#status", "status")
            .name("#generation", "generation")
            .value(":failed", s(DeliveryStatus::Failed.as_str()))
            .value(":previous", n(previous));
        let item = to_item(&DeliveryItem::new(next, self.delivery_retention))?;
        self.put_if(item, &format!("#status = :failed AND {generation_was}"), &expr).await
    }

    async fn take_over_series(&self, orphan: &Delivery, now: DateTime<Utc>) -> Result<bool> {
        let generation_is = if orphan.generation == 0 {
            "(attribute_not_exists(#generation) OR #generation = :generation)"
        } else {
            "#generation = :generation"
        };
        let expr = Expr::default()
            .name("#status", "status")
            .name("#attempts", "attempts")
            .name("#generation", "generation")
            .name("#updated_at", "updatedAt")
            .value(":pending", s(DeliveryStatus::Pending.as_str()))
            .value(":zero", n(0))
            .value(":generation", n(orphan.generation))
            .value(":updated_at", s(time::text(&orphan.updated_at)));
        let condition =
            format!("#status = :pending AND #attempts = :zero AND {generation_is} AND #updated_at = :updated_at");
        let taken = Delivery { updated_at: now, ..orphan.clone() };
        self.put_if(to_item(&DeliveryItem::new(&taken, self.delivery_retention))?, &condition, &expr).await
    }

    async fn recorded_trigger(&self, event_id: &EventId, subscriptions: &[SubscriptionId]) -> Result<RecordedTrigger> {
        let pk = trigger_pk(event_id);
        let mut keys: Vec<_> = subscriptions.iter().map(|id| key(&pk, delivery_sk(id))).collect();
        keys.push(key(&pk, TRIGGER_SK));
        let mut found = self.batch_get(keys).await?;
        let state = found
            .remove(&(pk, TRIGGER_SK.to_owned()))
            .map(from_item::<TriggerItem>)
            .transpose()?
            .map(|item| item.settled());
        let deliveries = found
            .into_values()
            .map(|item| from_item::<DeliveryItem>(item).map(DeliveryItem::into_delivery))
            .collect::<Result<_>>()?;
        Ok(RecordedTrigger { state, deliveries })
    }
}

#[async_trait]
impl DeliveryLog for DynamoStore {
    async fn deliveries_of_trigger(&self, event_id: &EventId) -> Result<Option<Vec<Delivery>>> {
        let query = self
            .client
            .query()
            .table_name(self.table.as_ref())
            .consistent_read(true)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(trigger_pk(event_id)));
        let items = self.query_items(query, None, None).await?;
        let mut state = None;
        let mut deliveries = Vec::with_capacity(items.len());
        for item in items {
            let sk = string_attr(&item, SK)?;
            if sk.starts_with(DELIVERY_PREFIX) {
                deliveries.push(from_item::<DeliveryItem>(item)?.into_delivery());
            } else if sk == TRIGGER_SK {
                state = Some(from_item::<TriggerItem>(item)?);
            }
        }
        match state {
            // Never accepted: the client was answered with an error, nothing of it ran.
            Some(trigger) if trigger.settled() == TriggerState::Abandoned => Ok(None),
            // The state outlives the records; past the retention the trigger is gone for clients.
            Some(trigger)
                if deliveries.is_empty() && self.delivery_retention.expires_at(trigger.received_at) <= Utc::now() =>
            {
                Ok(None)
            }
            None if deliveries.is_empty() => Ok(None),
            _ => Ok(Some(deliveries)),
        }
    }

    async fn deliveries_of_event(&self, event: &EventName, page: &PageRequest) -> Result<Page<Delivery>> {
        let index_pk = deliveries_index_pk(event);
        let query = self
            .client
            .query()
            .table_name(self.table.as_ref())
            .index_name(GSI1)
            .scan_index_forward(false)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", GSI1PK)
            .expression_attribute_values(":pk", s(&index_pk));
        let (keys, next_cursor) = self
            .query_page(query, page, &[PK, SK, GSI1PK, GSI1SK], |c| {
                c[GSI1PK] == index_pk && c[PK].starts_with("TRIGGER#") && c[SK].starts_with(DELIVERY_PREFIX)
            })
            .await?;
        let keys = keys
            .iter()
            .map(|k| Ok((string_attr(k, PK)?.to_owned(), string_attr(k, SK)?.to_owned())))
            .collect::<Result<Vec<_>>>()?;
        let keys_wanted = keys.iter().map(|(pk, sk)| key(pk, sk)).collect();
        let mut found = self.batch_get_only(keys_wanted, Some(DELIVERY_LISTED)).await?;
        let items = keys
            .into_iter()
            .filter_map(|k| found.remove(&k))
            .map(|item| from_item::<DeliveryItem>(item).map(DeliveryItem::into_delivery))
            .collect::<Result<_>>()?;
        Ok(Page { items, next_cursor })
    }
}

/// `Delivery::supersedes(recorded)` for `delivery` as a condition on the stored record, which is
/// absent or `recorded`. A record without `generation` is generation 0 (records from before
/// redrives, and every generation-0 record: the attribute is left out when 0).
///
/// - a later generation wins: the stored one is lower;
/// - the same generation: Lambda's first report (`reported`) replaces anything but a report;
///   otherwise the stored one has no report, is not handed over (`delivered`, `invoked`), and `(attempts, settled)`
///   is not ahead of this one's.
pub(crate) fn supersedes_condition(delivery: &Delivery) -> (String, Expr) {
    let same_generation = if delivery.generation == 0 {
        "(attribute_not_exists(#generation) OR #generation = :generation)"
    } else {
        "#generation = :generation"
    };
    let mut expr =
        Expr::default().name("#pk", PK).name("#generation", "generation").value(":generation", n(delivery.generation));
    let mut condition = if delivery.reported.is_some() {
        expr = expr.name("#reported", "reported");
        format!("attribute_not_exists(#pk) OR ({same_generation} AND attribute_not_exists(#reported))")
    } else {
        let not_ahead = if delivery.status.is_settled() {
            "#attempts <= :attempts"
        } else {
            expr = expr.value(":pending", s(DeliveryStatus::Pending.as_str()));
            "(#attempts < :attempts OR (#attempts = :attempts AND #status = :pending))"
        };
        expr = expr
            .name("#status", "status")
            .name("#attempts", "attempts")
            .name("#reported", "reported")
            .value(":attempts", n(delivery.attempts))
            .value(":delivered", s(DeliveryStatus::Delivered.as_str()))
            .value(":invoked", s(DeliveryStatus::Invoked.as_str()));
        format!(
            "attribute_not_exists(#pk) OR ({same_generation} AND attribute_not_exists(#reported) \
             AND #status <> :delivered AND #status <> :invoked AND {not_ahead})"
        )
    };
    if delivery.generation > 0 {
        condition.push_str(" OR attribute_not_exists(#generation) OR #generation < :generation");
    }
    (condition, expr)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fixed_width_timestamps_compare_as_strings() {
        use chrono::{TimeZone, Utc};
        let whole = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let later = Utc.timestamp_opt(1_700_000_000, 500_000_000).unwrap();
        assert!(super::time::text(&whole) < super::time::text(&later));
    }
}
