//! Redriving failed deliveries on AWS (`DeliveryRedrive`): the failed records are in the table,
//! each with its trigger's payload kept beside the failure; a redrive moves the record to a new
//! series and hands the delivery to the delivery queue again, as the dispatcher's own retries do.
//!
//! It lives here, beside the records it changes, with the one SQS call it needs behind a
//! one-method port ([`RedriveQueue`]): the dispatcher does not take part, it just finds a message
//! of the next generation on its queue.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageAttributeValue;
use chrono::{DateTime, Utc};
use gateway_core::message::{DeliveryEntry, DeliveryMessage};
use gateway_core::ports::{DeliveryLog, DeliveryRedrive};
use gateway_core::{Delivery, DeliveryStatus, Error, EventId, SubscriptionId, Violation};

use crate::items::{
    delivery_sk, failed_index_pk, time, trigger_pk, DeliveryItem, DELIVERY_LISTED, GSI2, GSI2PK, GSI2SK, PK, SK,
};
use crate::{condition_failed, from_item, key, n, s, string_attr, unavailable, DynamoStore, Expr, Item, Result};

/// Where a redriven delivery is handed over: the delivery queue.
#[async_trait]
pub trait RedriveQueue: Send + Sync {
    async fn enqueue(&self, message: &DeliveryMessage) -> std::result::Result<(), String>;
}

/// The delivery queue on SQS, as the dispatcher's re-enqueues send to it (the `event` attribute
/// included, for filter policies downstream).
#[derive(Clone)]
pub struct SqsRedriveQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsRedriveQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }
}

#[async_trait]
impl RedriveQueue for SqsRedriveQueue {
    async fn enqueue(&self, message: &DeliveryMessage) -> std::result::Result<(), String> {
        let body = serde_json::to_string(message).map_err(|e| e.to_string())?;
        let event = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(message.event.as_str())
            .build()
            .map_err(|e| e.to_string())?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_attributes("event", event)
            .send()
            .await
            .map_err(|e| format!("SQS SendMessage failed: {}", DisplayErrorContext(&e)))?;
        Ok(())
    }
}

/// The cloud `DeliveryRedrive`: the table's failed records and the delivery queue.
#[derive(Clone)]
pub struct DynamoRedrive {
    store: DynamoStore,
    queue: Arc<dyn RedriveQueue>,
}

impl DynamoRedrive {
    pub fn new(store: DynamoStore, queue: Arc<dyn RedriveQueue>) -> Self {
        Self { store, queue }
    }

    /// The failed record of `next`'s delivery as a new series: pending, `next`'s generation, no
    /// attempts, out of `gsi2`, if it is still failed at the generation before and kept its
    /// payload. Answers the record as it was (to hand over and, if that fails, to put back).
    async fn start_series(&self, next: &Delivery) -> Result<Option<Item>> {
        let previous = next.generation - 1;
        let generation_was = if previous == 0 {
            "(attribute_not_exists(#generation) OR #generation = :previous)"
        } else {
            "#generation = :previous"
        };
        let mut set = vec![
            "#status = :pending",
            "#generation = :generation",
            "#attempts = :zero",
            "#redriven_at = :now",
            "#updated_at = :now",
            "#function_id = :function_id",
            "#metadata = :metadata",
        ];
        // Lambda's report, if any, was of the old series.
        let mut remove = vec!["#gsi2pk", "#gsi2sk", "#payload", "#reported"];
        let mut expr = Expr::default()
            .name("#status", "status")
            .name("#generation", "generation")
            .name("#attempts", "attempts")
            .name("#redriven_at", "redrivenAt")
            .name("#updated_at", "updatedAt")
            .name("#function_id", "functionId")
            .name("#metadata", "metadata")
            .name("#policy", "policy")
            .name("#gsi2pk", GSI2PK)
            .name("#gsi2sk", GSI2SK)
            .name("#payload", "payload")
            .name("#reported", "reported")
            .value(":pending", s(DeliveryStatus::Pending.as_str()))
            .value(":failed", s(DeliveryStatus::Failed.as_str()))
            .value(":generation", n(next.generation))
            .value(":previous", n(previous))
            .value(":zero", n(0))
            .value(":now", s(time::text(&next.redriven_at.unwrap_or(next.updated_at))))
            .value(":function_id", s(next.function_id.as_str()))
            .value(":metadata", s(serde_json::to_string(&next.metadata).map_err(Error::unavailable)?));
        if next.policy.is_default() {
            remove.push("#policy");
        } else {
            set.push("#policy = :policy");
            expr = expr.value(":policy", s(serde_json::to_string(&next.policy).map_err(Error::unavailable)?));
        }
        let update = format!("SET {} REMOVE {}", set.join(", "), remove.join(", "));
        let result = self
            .store
            .client
            .update_item()
            .table_name(self.store.table.as_ref())
            .set_key(Some(record_key(next)))
            .update_expression(update)
            .condition_expression(format!("#status = :failed AND {generation_was} AND attribute_exists(#payload)"))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out.attributes),
            Err(e) if condition_failed(&e) => Ok(None),
            Err(e) => Err(unavailable("UpdateItem", e)),
        }
    }

    /// Why a record that was not moved to a new series was not: `Ok` when it is simply no longer
    /// failed at that generation (redriven already, or running), an error when it is failed but
    /// kept no payload to hand over.
    async fn not_started(&self, next: &Delivery) -> Result<bool> {
        let Some(item) = self.store.get(record_key(next)).await? else { return Ok(false) };
        let stored = from_item::<DeliveryItem>(item)?;
        if stored.status != DeliveryStatus::Failed || stored.generation + 1 != next.generation {
            return Ok(false);
        }
        let why = stored.payload_not_kept.unwrap_or_else(|| {
            "it failed before the gateway kept payloads with failures; redrive it from the dead-letter queue".into()
        });
        Err(Error::invalid_body(vec![Violation::new(
            "",
            format!(
                "the delivery of trigger {} to subscription {} cannot be redriven by the API: {why}",
                next.event_id, next.subscription_id
            ),
        )]))
    }

    /// Puts back the failed record `before` after its hand-over failed, if nothing moved it since.
    async fn put_back(&self, next: &Delivery, before: Item) -> Result<()> {
        let expr = Expr::default()
            .name("#status", "status")
            .name("#generation", "generation")
            .name("#attempts", "attempts")
            .value(":pending", s(DeliveryStatus::Pending.as_str()))
            .value(":generation", n(next.generation))
            .value(":zero", n(0));
        // Not put back if something ran it meanwhile (a copy from the dead-letter queue): nothing to undo.
        let condition = "#status = :pending AND #generation = :generation AND #attempts = :zero";
        self.store.put_if(before, condition, &expr).await.map(|_| ())
    }
}

fn record_key(d: &Delivery) -> Item {
    key(trigger_pk(&d.event_id), delivery_sk(&d.subscription_id))
}

#[async_trait]
impl DeliveryRedrive for DynamoRedrive {
    async fn failed_of_trigger(
        &self,
        event_id: &EventId,
        subscription: Option<&SubscriptionId>,
    ) -> Result<Option<Vec<Delivery>>> {
        // The trigger's partition, as `GET /deliveries/{eventId}` reads it (one Query).
        Ok(self.store.deliveries_of_trigger(event_id).await?.map(|all| {
            all.into_iter()
                .filter(|d| d.status == DeliveryStatus::Failed)
                .filter(|d| subscription.is_none_or(|s| d.subscription_id == *s))
                .collect()
        }))
    }

    async fn failed_of_subscription(
        &self,
        subscription: &SubscriptionId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        // `gsi2` holds failed records only, keyed `<receivedAt>#<eventId>`: BETWEEN the two
        // instants takes `since` and leaves `until` out, since `<until>#…` sorts after `<until>`.
        let query = self
            .store
            .client
            .query()
            .table_name(self.store.table.as_ref())
            .index_name(GSI2)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :since AND :until")
            .expression_attribute_names("#pk", GSI2PK)
            .expression_attribute_names("#sk", GSI2SK)
            .expression_attribute_values(":pk", s(failed_index_pk(subscription)))
            .expression_attribute_values(":since", s(time::text(&since)))
            .expression_attribute_values(":until", s(time::text(&until)));
        let keys = self.store.query_items(query, None, Some(limit as usize)).await?;
        let keys = keys
            .iter()
            .map(|k| Ok((string_attr(k, PK)?.to_owned(), string_attr(k, SK)?.to_owned())))
            .collect::<Result<Vec<_>>>()?;
        let keys_wanted = keys.iter().map(|(pk, sk)| key(pk, sk)).collect();
        let mut found = self.store.batch_get_only(keys_wanted, Some(DELIVERY_LISTED)).await?;
        // The index lags the table: a record redriven a moment ago may still be listed.
        keys.into_iter()
            .filter_map(|k| found.remove(&k))
            .map(|item| from_item::<DeliveryItem>(item).map(DeliveryItem::into_delivery))
            .filter(|d| d.as_ref().map_or(true, |d| d.status == DeliveryStatus::Failed))
            .collect()
    }

    async fn redrive(&self, next: &Delivery) -> Result<bool> {
        if next.generation == 0 {
            return Ok(false);
        }
        let Some(before) = self.start_series(next).await? else {
            return self.not_started(next).await;
        };
        let message = kept_message(&before).map(|kept| kept.accepted_with(vec![DeliveryEntry::of(next)]));
        let sent = match message {
            Ok(message) => self.queue.enqueue(&message).await,
            Err(e) => Err(e),
        };
        if let Err(error) = sent {
            // Failed again, as it was: a redrive later can try again.
            self.put_back(next, before).await?;
            return Err(Error::unavailable(format!(
                "the redriven delivery of trigger {} to subscription {} could not be handed to the delivery queue: {error}",
                next.event_id, next.subscription_id
            )));
        }
        Ok(true)
    }
}

/// The trigger's message a failed record kept (without deliveries).
fn kept_message(item: &Item) -> std::result::Result<DeliveryMessage, String> {
    let text = string_attr(item, "payload").map_err(|e| e.to_string())?;
    DeliveryMessage::read(text)
}
