//! Idempotency keys: claimed before a trigger is published, completed after, expired by TTL.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gateway_core::ports::{IdempotencyKeys, KeyClaim};
use gateway_core::{Error, EventId, IdempotencyKey, TriggerReceipt};

use crate::items::{key_pk, KeyItem, KeyState, KEY_SK, PK};
use crate::{condition_failed, from_item, key, n, s, to_item, to_value, unavailable, DynamoStore, Result};

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl DynamoStore {
    async fn read_key(&self, pk: &str) -> Result<Option<KeyItem>> {
        let out = self
            .client
            .get_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key(pk, KEY_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        out.item.map(from_item::<KeyItem>).transpose()
    }
}

#[async_trait]
impl IdempotencyKeys for DynamoStore {
    async fn claim_key(
        &self,
        idempotency_key: &IdempotencyKey,
        receipt: &TriggerReceipt,
        payload_digest: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<KeyClaim> {
        let pk = key_pk(&receipt.event, idempotency_key);
        let now_ms = now.timestamp_millis();
        let claimed_until_ms = now_ms.saturating_add(millis(lease));
        let item = KeyItem {
            pk: pk.clone(),
            sk: KEY_SK.to_owned(),
            state: KeyState::Pending,
            event_id: receipt.event_id,
            receipt: receipt.clone(),
            payload_digest: Some(payload_digest.to_owned()),
            claimed_until_ms,
            ttl: now.timestamp() + idempotency_key.window().as_secs() as i64,
        };
        // A key can expire and vanish between our steps: start over, a bounded number of times.
        for _ in 0..3 {
            let put = self
                .client
                .put_item()
                .table_name(self.table.as_ref())
                .set_item(Some(to_item(&item)?))
                .condition_expression("attribute_not_exists(#pk) OR #ttl <= :now")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":now", n(now.timestamp()))
                .send()
                .await;
            match put {
                Ok(_) => return Ok(KeyClaim::Claimed),
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(unavailable("PutItem", e)),
            }
            let Some(held) = self.read_key(&pk).await? else {
                continue;
            };
            if held.ttl <= now.timestamp() {
                continue;
            }
            if held.payload_digest.as_deref().is_some_and(|first| first != payload_digest) {
                return Err(Error::IdempotencyKeyReused { event: receipt.event.clone(), key: idempotency_key.clone() });
            }
            match held.state {
                KeyState::Published => return Ok(KeyClaim::Published(held.receipt)),
                KeyState::Pending if held.claimed_until_ms > now_ms => return Ok(KeyClaim::InProgress),
                KeyState::Pending => {}
            }
            // The holder's lease ran out without the key completed: the caller settles the
            // holder's trigger before anything changes here (`take_over_key`).
            return Ok(KeyClaim::Lapsed(held.receipt));
        }
        Ok(KeyClaim::InProgress)
    }

    async fn complete_key(
        &self,
        idempotency_key: &IdempotencyKey,
        holder: &EventId,
        receipt: &TriggerReceipt,
    ) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key(key_pk(&receipt.event, idempotency_key), KEY_SK)))
            .update_expression("SET #state = :published, #receipt = :receipt, #event_id = :event_id")
            .condition_expression("#event_id = :holder")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#receipt", "receipt")
            .expression_attribute_names("#event_id", "eventId")
            .expression_attribute_values(":published", s("published"))
            .expression_attribute_values(":receipt", to_value(receipt)?)
            .expression_attribute_values(":event_id", s(receipt.event_id.to_string()))
            .expression_attribute_values(":holder", s(holder.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => {
                // Another request took the key over (or it expired and was claimed again): the key
                // is no longer ours to mark.
                tracing::warn!(event_id = %receipt.event_id, "idempotency key was reclaimed before completion");
                Ok(())
            }
            Err(e) => Err(unavailable("UpdateItem", e)),
        }
    }

    async fn take_over_key(
        &self,
        idempotency_key: &IdempotencyKey,
        held: &EventId,
        receipt: &TriggerReceipt,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool> {
        let now_ms = now.timestamp_millis();
        // Only a key still pending for `held` past its lease: from here the earlier holder can
        // neither complete nor release it, both being conditional on its eventId.
        let take = self
            .client
            .update_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key(key_pk(&receipt.event, idempotency_key), KEY_SK)))
            .update_expression("SET #until = :until, #event_id = :event_id, #receipt = :receipt")
            .condition_expression("#state = :pending AND #event_id = :held AND #until <= :now")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#until", "claimedUntilMs")
            .expression_attribute_names("#event_id", "eventId")
            .expression_attribute_names("#receipt", "receipt")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":held", s(held.to_string()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":until", n(now_ms.saturating_add(millis(lease))))
            .expression_attribute_values(":event_id", s(receipt.event_id.to_string()))
            .expression_attribute_values(":receipt", to_value(receipt)?)
            .send()
            .await;
        match take {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(unavailable("UpdateItem", e)),
        }
    }

    async fn abandon_key(&self, idempotency_key: &IdempotencyKey, receipt: &TriggerReceipt) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key(key_pk(&receipt.event, idempotency_key), KEY_SK)))
            .update_expression("SET #until = :zero")
            .condition_expression("#event_id = :event_id AND #state = :pending")
            .expression_attribute_names("#until", "claimedUntilMs")
            .expression_attribute_names("#event_id", "eventId")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":event_id", s(receipt.event_id.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(unavailable("UpdateItem", e)),
        }
    }
}
