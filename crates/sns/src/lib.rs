//! The SNS adapter: the cloud `TriggerAcceptor`.
//!
//! A trigger is accepted once its deliveries are published to the gateway's SNS topic, as
//! [`DeliveryMessage`]s with an `event` message attribute (so other subscribers of the topic
//! can filter by event). The common case is one Publish carrying every delivery; a fan-out
//! too large for one 256 KiB message is cut into several, sent with PublishBatch, and entries a
//! batch fails are retried alone. Nothing is dropped silently: if a message cannot be
//! published, the trigger fails (503).
//!
//! The order of the steps, and why a 202 never lies, is in docs/DYNAMODB.md:
//! claim the idempotency key, publish, log the deliveries as pending, complete the key.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sns::error::DisplayErrorContext;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use aws_sdk_sns::Client;
use gateway_core::message::DeliveryMessage;
use gateway_core::ports::{Acceptance, DeliveryRecorder, IdempotencyKeys, KeyClaim, TriggerAcceptor};
use gateway_core::{Error, IdempotencyKey, Trigger, TriggerReceipt};

pub use plan::EVENT_ATTRIBUTE;

/// Publishes a trigger's deliveries; success means every one of them is in the topic.
#[async_trait]
pub trait TriggerPublisher: Send + Sync {
    async fn publish(&self, trigger: &Trigger) -> Result<(), Error>;
}

/// How patiently entries of a PublishBatch that failed are sent again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishRetry {
    /// Rounds in all, the first included.
    pub attempts: u32,
    /// Delay before the second round, doubling after.
    pub base_delay: Duration,
}

impl Default for PublishRetry {
    fn default() -> Self {
        Self { attempts: 4, base_delay: Duration::from_millis(100) }
    }
}

/// Publishes to one SNS topic.
#[derive(Clone)]
pub struct SnsPublisher {
    client: Client,
    topic_arn: String,
    retry: PublishRetry,
}

impl SnsPublisher {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self { client, topic_arn: topic_arn.into(), retry: PublishRetry::default() }
    }

    pub fn with_retry(mut self, retry: PublishRetry) -> Self {
        self.retry = retry;
        self
    }

    fn event_attribute(event: &str) -> Result<MessageAttributeValue, Error> {
        MessageAttributeValue::builder().data_type("String").string_value(event).build().map_err(Error::unavailable)
    }

    async fn publish_one(&self, body: String, event: &str) -> Result<(), Error> {
        let mut round = 0;
        loop {
            let result = self
                .client
                .publish()
                .topic_arn(&self.topic_arn)
                .message(body.clone())
                .message_attributes(EVENT_ATTRIBUTE, Self::event_attribute(event)?)
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(err) => {
                    round += 1;
                    if round >= self.retry.attempts {
                        return Err(Error::unavailable(format!(
                            "SNS Publish failed after {round} attempts: {}",
                            DisplayErrorContext(&err)
                        )));
                    }
                    tracing::warn!(error = %DisplayErrorContext(&err), "SNS Publish failed; retrying");
                    tokio::time::sleep(self.delay(round)).await;
                }
            }
        }
    }

    /// Sends `bodies` (at most 10, at most 256 KiB together) in PublishBatch calls until every
    /// entry is in, retrying only the failed entries.
    async fn publish_batch(&self, bodies: &[(usize, String)], event: &str) -> Result<(), Error> {
        let mut pending: Vec<&(usize, String)> = bodies.iter().collect();
        let mut last_error = String::new();
        for round in 0..self.retry.attempts {
            if round > 0 {
                tokio::time::sleep(self.delay(round)).await;
            }
            let entries = pending
                .iter()
                .map(|(i, body)| {
                    PublishBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .message(body.clone())
                        .message_attributes(EVENT_ATTRIBUTE, Self::event_attribute(event)?)
                        .build()
                        .map_err(Error::unavailable)
                })
                .collect::<Result<Vec<_>, Error>>()?;
            let out = match self
                .client
                .publish_batch()
                .topic_arn(&self.topic_arn)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => out,
                Err(err) => {
                    last_error = DisplayErrorContext(&err).to_string();
                    tracing::warn!(error = %last_error, entries = pending.len(), "SNS PublishBatch failed; retrying");
                    continue;
                }
            };
            let failed = out.failed.unwrap_or_default();
            if let Some(ours) = failed.iter().find(|f| f.sender_fault) {
                // Our request is wrong (too large, malformed): sending it again cannot help.
                return Err(Error::unavailable(format!(
                    "SNS refused message {}: {}: {}",
                    ours.id,
                    ours.code,
                    ours.message.as_deref().unwrap_or("")
                )));
            }
            pending.retain(|(i, _)| failed.iter().any(|f| f.id == format!("m{i}")));
            if pending.is_empty() {
                return Ok(());
            }
            last_error = failed
                .iter()
                .map(|f| format!("{}: {}", f.code, f.message.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("; ");
            tracing::warn!(error = %last_error, entries = pending.len(), "SNS PublishBatch entries failed; retrying them");
        }
        Err(Error::unavailable(format!(
            "{} of {} SNS messages not published after {} attempts: {last_error}",
            pending.len(),
            bodies.len(),
            self.retry.attempts
        )))
    }

    fn delay(&self, round: u32) -> Duration {
        self.retry.base_delay.saturating_mul(1 << round.saturating_sub(1).min(10))
    }
}

#[async_trait]
impl TriggerPublisher for SnsPublisher {
    async fn publish(&self, trigger: &Trigger) -> Result<(), Error> {
        let message = DeliveryMessage::for_trigger(trigger).map_err(Error::unavailable)?;
        let event = trigger.event.as_str();
        let mut bodies = plan::split(&message)?;
        if bodies.len() == 1 {
            let body = bodies.pop().expect("one body");
            return self.publish_one(body, event).await;
        }
        let numbered: Vec<(usize, String)> = bodies.into_iter().enumerate().collect();
        let bodies: Vec<String> = numbered.iter().map(|(_, b)| b.clone()).collect();
        for range in plan::batches(&bodies, event) {
            self.publish_batch(&numbered[range], event).await?;
        }
        Ok(())
    }
}

/// The cloud trigger acceptor: idempotency keys and the delivery log in the store, deliveries
/// to the topic.
pub struct SnsAcceptor {
    publisher: Arc<dyn TriggerPublisher>,
    recorder: Arc<dyn DeliveryRecorder>,
    keys: Arc<dyn IdempotencyKeys>,
    claim_lease: Duration,
}

impl SnsAcceptor {
    /// How long a claimed idempotency key waits for its trigger's publish before another
    /// request may take it over: longer than the trigger handler's timeout.
    pub const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(60);

    pub fn new(
        publisher: Arc<dyn TriggerPublisher>,
        recorder: Arc<dyn DeliveryRecorder>,
        keys: Arc<dyn IdempotencyKeys>,
    ) -> Self {
        Self { publisher, recorder, keys, claim_lease: Self::DEFAULT_CLAIM_LEASE }
    }

    /// The usual wiring: one store that is both the delivery log and the key store.
    pub fn with_store<S>(publisher: SnsPublisher, store: S) -> Self
    where
        S: DeliveryRecorder + IdempotencyKeys + Clone + 'static,
    {
        Self::new(Arc::new(publisher), Arc::new(store.clone()), Arc::new(store))
    }

    pub fn with_claim_lease(mut self, lease: Duration) -> Self {
        self.claim_lease = lease;
        self
    }
}

/// The same trigger under the identity of an earlier attempt with the same key.
fn under_identity(trigger: &Trigger, first: &TriggerReceipt) -> Trigger {
    let mut trigger = trigger.clone();
    trigger.event_id = first.event_id;
    trigger.received_at = first.received_at;
    for d in &mut trigger.deliveries {
        d.event_id = first.event_id;
        d.received_at = first.received_at;
        d.updated_at = first.received_at;
    }
    trigger
}

#[async_trait]
impl TriggerAcceptor for SnsAcceptor {
    async fn accept(&self, trigger: &Trigger, idempotency_key: Option<&IdempotencyKey>) -> Result<Acceptance, Error> {
        let mut taken_over = None;
        if let Some(key) = idempotency_key {
            let claim = self
                .keys
                .claim_key(key, &trigger.receipt(), &trigger.payload_digest(), trigger.received_at, self.claim_lease)
                .await?;
            match claim {
                KeyClaim::Claimed => {}
                KeyClaim::Published(first) => return Ok(Acceptance::Replayed(first)),
                KeyClaim::InProgress => {
                    return Err(Error::unavailable(
                        "a trigger with this Idempotency-Key is still being accepted; retry in a few seconds",
                    ))
                }
                KeyClaim::TakenOver(first) => taken_over = Some(under_identity(trigger, &first)),
            }
        }
        let trigger = taken_over.as_ref().unwrap_or(trigger);

        if let Err(error) = self.publisher.publish(trigger).await {
            if let Some(key) = idempotency_key {
                // Free the key at once, keeping its eventId: part of the trigger may be out.
                if let Err(e) = self.keys.abandon_key(key, &trigger.receipt()).await {
                    tracing::warn!(error = %e, event_id = %trigger.event_id, "cannot release an idempotency key; it frees itself when its lease ends");
                }
            }
            return Err(error);
        }

        // Published: the deliveries will run whatever happens next, so the answer is 202. The
        // log is completed by the dispatcher if this write is lost.
        if let Err(e) = self.recorder.record_trigger(trigger).await {
            tracing::error!(error = %e, event_id = %trigger.event_id, "published a trigger but could not log it as pending");
        }
        if let Some(key) = idempotency_key {
            if let Err(e) = self.keys.complete_key(key, &trigger.receipt()).await {
                tracing::error!(error = %e, event_id = %trigger.event_id, "published a trigger but could not complete its idempotency key");
            }
        }
        Ok(match taken_over {
            Some(trigger) => Acceptance::Replayed(trigger.receipt()),
            None => Acceptance::Accepted,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use chrono::{DateTime, Utc};

    use gateway_core::fixtures;
    use gateway_core::ports::UlidSource;
    use gateway_core::trigger::accepted_trigger;
    use gateway_core::{Delivery, EventId, Metadata, SubscriptionId};

    use super::*;

    /// A key's receipt, whether it is published, and its lease.
    type HeldKey = (TriggerReceipt, bool, DateTime<Utc>);

    #[derive(Default)]
    struct Fakes {
        published: Mutex<Vec<Trigger>>,
        fail_publishes: Mutex<u32>,
        recorded: Mutex<Vec<EventId>>,
        keys: Mutex<HashMap<String, HeldKey>>,
    }

    #[async_trait]
    impl TriggerPublisher for Fakes {
        async fn publish(&self, trigger: &Trigger) -> Result<(), Error> {
            self.published.lock().unwrap().push(trigger.clone());
            let mut failures = self.fail_publishes.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(Error::unavailable("SNS is down"));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl DeliveryRecorder for Fakes {
        async fn record_trigger(&self, trigger: &Trigger) -> Result<(), Error> {
            self.recorded.lock().unwrap().push(trigger.event_id);
            Ok(())
        }
        async fn record_delivery(&self, _: &Delivery) -> Result<(), Error> {
            Ok(())
        }
        async fn recorded_deliveries(&self, _: &EventId, _: &[SubscriptionId]) -> Result<Vec<Delivery>, Error> {
            Ok(Vec::new())
        }
    }

    #[async_trait]
    impl IdempotencyKeys for Fakes {
        async fn claim_key(
            &self,
            key: &IdempotencyKey,
            receipt: &TriggerReceipt,
            _payload_digest: &str,
            now: DateTime<Utc>,
            lease: Duration,
        ) -> Result<KeyClaim, Error> {
            let mut keys = self.keys.lock().unwrap();
            let until = now + chrono::Duration::from_std(lease).unwrap();
            match keys.get_mut(key.as_str()) {
                None => {
                    keys.insert(key.as_str().into(), (receipt.clone(), false, until));
                    Ok(KeyClaim::Claimed)
                }
                Some((first, true, _)) => Ok(KeyClaim::Published(first.clone())),
                Some((_, false, held)) if *held > now => Ok(KeyClaim::InProgress),
                Some((first, false, held)) => {
                    *held = until;
                    Ok(KeyClaim::TakenOver(first.clone()))
                }
            }
        }
        async fn complete_key(&self, key: &IdempotencyKey, receipt: &TriggerReceipt) -> Result<(), Error> {
            let mut keys = self.keys.lock().unwrap();
            let entry = keys.get_mut(key.as_str()).unwrap();
            *entry = (receipt.clone(), true, entry.2);
            Ok(())
        }
        async fn abandon_key(&self, key: &IdempotencyKey, _: &TriggerReceipt) -> Result<(), Error> {
            let mut keys = self.keys.lock().unwrap();
            keys.get_mut(key.as_str()).unwrap().2 = DateTime::<Utc>::MIN_UTC;
            Ok(())
        }
    }

    fn acceptor(fakes: &Arc<Fakes>) -> SnsAcceptor {
        SnsAcceptor::new(fakes.clone(), fakes.clone(), fakes.clone())
    }

    fn trigger() -> Trigger {
        let definition = fixtures::definition("orders.created");
        let subscription = fixtures::subscription(&definition.name, "fn-a", Metadata::new());
        accepted_trigger(&definition, &[subscription], b"{}".to_vec(), Utc::now(), &UlidSource)
    }

    #[tokio::test]
    async fn a_trigger_is_logged_and_its_key_completed_only_after_it_is_published() {
        let fakes = Arc::new(Fakes::default());
        let key = IdempotencyKey::parse("k-1").unwrap();
        let t = trigger();
        let got = acceptor(&fakes).accept(&t, Some(&key)).await.unwrap();
        assert_eq!(got, Acceptance::Accepted);
        assert_eq!(fakes.recorded.lock().unwrap().as_slice(), &[t.event_id]);
        let replay = acceptor(&fakes).accept(&trigger(), Some(&key)).await.unwrap();
        assert_eq!(replay, Acceptance::Replayed(t.receipt()));
        assert_eq!(fakes.published.lock().unwrap().len(), 1, "a replay publishes nothing");
    }

    #[tokio::test]
    async fn a_failed_publish_fails_the_trigger_logs_nothing_and_its_retry_keeps_the_event_id() {
        let fakes = Arc::new(Fakes::default());
        *fakes.fail_publishes.lock().unwrap() = 1;
        let key = IdempotencyKey::parse("k-2").unwrap();
        let first = trigger();
        let err = acceptor(&fakes).accept(&first, Some(&key)).await.unwrap_err();
        assert!(matches!(err, Error::Unavailable(_)));
        assert!(fakes.recorded.lock().unwrap().is_empty(), "a trigger that failed is not logged");

        // The client retries: the key was released at once, and the retry publishes under the
        // first attempt's eventId, so a partly published first attempt is not doubled.
        let retry = trigger();
        let got = acceptor(&fakes).accept(&retry, Some(&key)).await.unwrap();
        let published = fakes.published.lock().unwrap().clone();
        assert_eq!(published.len(), 2);
        assert_eq!(published[1].event_id, first.event_id);
        assert!(published[1].deliveries.iter().all(|d| d.event_id == first.event_id));
        match got {
            Acceptance::Replayed(receipt) => assert_eq!(receipt.event_id, first.event_id),
            other => panic!("expected the first eventId back, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_key_held_by_a_request_in_flight_is_not_published_twice() {
        let fakes = Arc::new(Fakes::default());
        let key = IdempotencyKey::parse("k-3").unwrap();
        let t = trigger();
        fakes.claim_key(&key, &t.receipt(), &t.payload_digest(), t.received_at, Duration::from_secs(60)).await.unwrap();
        let err = acceptor(&fakes).accept(&trigger(), Some(&key)).await.unwrap_err();
        assert!(matches!(err, Error::Unavailable(_)));
        assert!(fakes.published.lock().unwrap().is_empty());
    }
}
