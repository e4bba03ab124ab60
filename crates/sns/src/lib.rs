//! The SNS adapter: the cloud `TriggerAcceptor`.
//!
//! A trigger is accepted once its deliveries are published to the gateway's SNS topic, as
//! [`DeliveryMessage`]s with an `event` message attribute (so other subscribers of the topic
//! can filter by event). The common case is one Publish carrying every delivery; a fan-out
//! too large for one 256 KiB message is cut into several, sent with PublishBatch, and entries a
//! batch fails are retried alone. Nothing is dropped silently: if a message cannot be
//! published, the trigger fails (503).
//!
//! The order of the steps, and why a 202 never lies and an error never runs, is in
//! docs/DYNAMODB.md: claim the idempotency key, publish, settle the trigger accepted, log the
//! deliveries as pending, complete the key. The dispatcher runs a published message only once
//! its trigger is settled accepted.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sns::error::DisplayErrorContext;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use aws_sdk_sns::Client;
use gateway_core::message::DeliveryMessage;
use gateway_core::ports::{Acceptance, DeliveryRecorder, IdempotencyKeys, KeyClaim, TriggerAcceptor, TriggerState};
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
    finish_within: Duration,
}

impl SnsAcceptor {
    /// How long a claimed idempotency key waits for its trigger's publish before another
    /// request may take it over: longer than the trigger handler's timeout.
    pub const DEFAULT_CLAIM_LEASE: Duration = gateway_core::ports::ACCEPTANCE_WINDOW;

    /// How long the steps after acceptance (completing the key, logging the deliveries) may
    /// take before the 202 goes out regardless: well inside the trigger handler's 10 s timeout.
    pub const DEFAULT_FINISH_WITHIN: Duration = Duration::from_secs(2);

    pub fn new(
        publisher: Arc<dyn TriggerPublisher>,
        recorder: Arc<dyn DeliveryRecorder>,
        keys: Arc<dyn IdempotencyKeys>,
    ) -> Self {
        Self {
            publisher,
            recorder,
            keys,
            claim_lease: Self::DEFAULT_CLAIM_LEASE,
            finish_within: Self::DEFAULT_FINISH_WITHIN,
        }
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

#[async_trait]
impl TriggerAcceptor for SnsAcceptor {
    async fn accept(&self, trigger: &Trigger, idempotency_key: Option<&IdempotencyKey>) -> Result<Acceptance, Error> {
        if let Some(key) = idempotency_key {
            let claim = self
                .keys
                .claim_key(key, &trigger.receipt(), &trigger.payload_digest(), trigger.received_at, self.claim_lease)
                .await?;
            match claim {
                KeyClaim::Claimed => {}
                KeyClaim::Published(first) => return Ok(Acceptance::Replayed(first)),
                KeyClaim::InProgress => {
                    return Err(Error::NotAccepted(
                        "a trigger with this Idempotency-Key is still being accepted; retry in a few seconds".into(),
                    ))
                }
                KeyClaim::Lapsed(first) => {
                    if let Some(answer) = self.resolve_lapsed(key, trigger, &first).await? {
                        return Ok(answer);
                    }
                }
            }
        }

        if let Err(error) = self.publisher.publish(trigger).await {
            tracing::error!(%error, event_id = %trigger.event_id, "cannot publish a trigger's deliveries");
            // Some messages may be out: settle the trigger abandoned now, so they are dropped at
            // once (if this write fails too, the dispatcher settles it after a while).
            if let Err(e) = self.settle(trigger, TriggerState::Abandoned).await {
                tracing::warn!(error = %e, event_id = %trigger.event_id, "cannot settle a failed trigger as abandoned; the dispatcher will");
            }
            self.release_if(idempotency_key, trigger).await;
            return Err(Error::NotAccepted(
                "the gateway could not hand the trigger's deliveries over; none of them will run; try again".into(),
            ));
        }

        // Every message is out. The trigger runs once it is settled accepted, and only then is
        // the answer 202; if the dispatcher settled it abandoned first (this took too long), or
        // the state cannot be written, the answer is an error.
        let accepted = match self.settle(trigger, TriggerState::Accepted).await {
            Ok(state) => Ok(state),
            // The write may have landed all the same: settling the other way tells which.
            Err(error) => match self.settle(trigger, TriggerState::Abandoned).await {
                Ok(state) => Ok(state),
                Err(_) => Err(error),
            },
        };
        match accepted {
            Ok(TriggerState::Accepted) => {}
            Ok(TriggerState::Abandoned) => {
                self.release_if(idempotency_key, trigger).await;
                return Err(Error::NotAccepted(format!(
                    "trigger {} was not accepted in time and none of its deliveries will run; try again",
                    trigger.event_id
                )));
            }
            Err(error) => {
                tracing::error!(%error, event_id = %trigger.event_id, "cannot tell whether a published trigger was accepted");
                self.release_if(idempotency_key, trigger).await;
                return Err(Error::NotAccepted(format!(
                    "the gateway cannot tell whether trigger {} was accepted; retry with the same Idempotency-Key to find out (without one, a retry may run it twice)",
                    trigger.event_id
                )));
            }
        }

        // Accepted: the deliveries will run whatever happens next, so the answer must be 202 and
        // must not wait long (a handler that times out now answers 5xx for a trigger that runs).
        // The key first, so a retry replays this receipt; the log is completed by the dispatcher
        // if its write is cut short.
        let finish = async {
            if let Some(key) = idempotency_key {
                self.complete(key, trigger, &trigger.receipt()).await;
            }
            if let Err(e) = self.recorder.record_trigger(trigger).await {
                tracing::error!(error = %e, event_id = %trigger.event_id, "accepted a trigger but could not log it as pending");
            }
        };
        if tokio::time::timeout(self.finish_within, finish).await.is_err() {
            tracing::warn!(event_id = %trigger.event_id, "logging an accepted trigger took too long; answering 202, the dispatcher completes the log");
        }
        Ok(Acceptance::Accepted)
    }
}

impl SnsAcceptor {
    /// A key whose earlier trigger (`first`) lapsed: settle that trigger before touching the key.
    /// `Some(answer)` if this request is answered with it; `None` if the key is now this
    /// trigger's, to publish.
    async fn resolve_lapsed(
        &self,
        key: &IdempotencyKey,
        trigger: &Trigger,
        first: &TriggerReceipt,
    ) -> Result<Option<Acceptance>, Error> {
        let settled = self
            .recorder
            .settle_trigger(&first.event_id, &first.event, first.received_at, TriggerState::Abandoned)
            .await?;
        if settled == TriggerState::Accepted {
            // It got through before its request failed: that is the answer, now and for retries.
            if let Err(e) = self.keys.complete_key(key, &first.event_id, first).await {
                tracing::error!(error = %e, event_id = %first.event_id, "cannot complete the idempotency key of an accepted trigger");
            }
            return Ok(Some(Acceptance::Replayed(first.clone())));
        }
        // Its messages, if any went out, are dropped; this trigger goes out afresh.
        let taken = self
            .keys
            .take_over_key(key, &first.event_id, &trigger.receipt(), trigger.received_at, self.claim_lease)
            .await?;
        if taken {
            Ok(None)
        } else {
            Err(Error::NotAccepted(
                "a trigger with this Idempotency-Key is still being accepted; retry in a few seconds".into(),
            ))
        }
    }

    async fn settle(&self, trigger: &Trigger, want: TriggerState) -> Result<TriggerState, Error> {
        self.recorder.settle_trigger(&trigger.event_id, &trigger.event, trigger.received_at, want).await
    }

    /// Marks the key published with `receipt`, which retries will be answered with.
    async fn complete(&self, key: &IdempotencyKey, trigger: &Trigger, receipt: &TriggerReceipt) {
        if let Err(e) = self.keys.complete_key(key, &trigger.event_id, receipt).await {
            tracing::error!(error = %e, event_id = %receipt.event_id, "accepted a trigger but could not complete its idempotency key");
        }
    }

    /// Frees the key at once for a retry, which settles this attempt before going on.
    async fn release(&self, key: &IdempotencyKey, trigger: &Trigger) {
        if let Err(e) = self.keys.abandon_key(key, &trigger.receipt()).await {
            tracing::warn!(error = %e, event_id = %trigger.event_id, "cannot release an idempotency key; it frees itself when its lease ends");
        }
    }

    async fn release_if(&self, key: Option<&IdempotencyKey>, trigger: &Trigger) {
        if let Some(key) = key {
            self.release(key, trigger).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use chrono::{DateTime, Utc};

    use gateway_core::fixtures;
    use gateway_core::ports::{RecordedTrigger, UlidSource};
    use gateway_core::trigger::accepted_trigger;
    use gateway_core::{Delivery, EventId, EventName, Metadata, SubscriptionId};

    use super::*;

    /// A key's receipt, whether it is published, and its lease.
    type HeldKey = (TriggerReceipt, bool, DateTime<Utc>);

    #[derive(Default)]
    struct Fakes {
        /// What reached the topic: with `publish_only`, only the first deliveries of a trigger.
        published: Mutex<Vec<Trigger>>,
        fail_publishes: Mutex<u32>,
        /// Publishes this many deliveries of the next failing publish before failing, as a fan-out
        /// of several messages fails after its first ones went out.
        publish_only: Mutex<Option<usize>>,
        settled: Mutex<HashMap<EventId, TriggerState>>,
        /// The next settle writes, then fails as if its answer was lost.
        lose_settle_answers: Mutex<u32>,
        recorded: Mutex<Vec<EventId>>,
        keys: Mutex<HashMap<String, HeldKey>>,
        fail_completes: Mutex<u32>,
    }

    #[async_trait]
    impl TriggerPublisher for Fakes {
        async fn publish(&self, trigger: &Trigger) -> Result<(), Error> {
            let mut failures = self.fail_publishes.lock().unwrap();
            let mut out = trigger.clone();
            if *failures > 0 {
                *failures -= 1;
                match *self.publish_only.lock().unwrap() {
                    Some(n) => out.deliveries.truncate(n),
                    None => return Err(Error::unavailable("SNS is down")),
                }
                self.published.lock().unwrap().push(out);
                return Err(Error::unavailable("SNS failed after the first message"));
            }
            self.published.lock().unwrap().push(out);
            Ok(())
        }
    }

    #[async_trait]
    impl DeliveryRecorder for Fakes {
        async fn settle_trigger(
            &self,
            event_id: &EventId,
            _: &EventName,
            _: DateTime<Utc>,
            want: TriggerState,
        ) -> Result<TriggerState, Error> {
            let state = *self.settled.lock().unwrap().entry(*event_id).or_insert(want);
            let mut lose = self.lose_settle_answers.lock().unwrap();
            if *lose > 0 {
                *lose -= 1;
                return Err(Error::unavailable("the answer was lost"));
            }
            Ok(state)
        }
        async fn record_trigger(&self, trigger: &Trigger) -> Result<(), Error> {
            self.recorded.lock().unwrap().push(trigger.event_id);
            Ok(())
        }
        async fn record_delivery(&self, _: &Delivery) -> Result<(), Error> {
            Ok(())
        }
        async fn start_series(&self, _: &Delivery) -> Result<bool, Error> {
            unreachable!("the acceptor never starts a series")
        }
        async fn take_over_series(&self, _: &Delivery, _: DateTime<Utc>) -> Result<bool, Error> {
            unreachable!("the acceptor never takes a series over")
        }
        async fn recorded_trigger(&self, _: &EventId, _: &[SubscriptionId]) -> Result<RecordedTrigger, Error> {
            Ok(RecordedTrigger::default())
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
                Some((earlier, false, _)) => Ok(KeyClaim::Lapsed(earlier.clone())),
            }
        }
        async fn take_over_key(
            &self,
            key: &IdempotencyKey,
            held: &EventId,
            receipt: &TriggerReceipt,
            now: DateTime<Utc>,
            lease: Duration,
        ) -> Result<bool, Error> {
            let mut keys = self.keys.lock().unwrap();
            let entry = keys.get_mut(key.as_str()).unwrap();
            if entry.0.event_id != *held || entry.1 || entry.2 > now {
                return Ok(false);
            }
            *entry = (receipt.clone(), false, now + chrono::Duration::from_std(lease).unwrap());
            Ok(true)
        }
        async fn complete_key(
            &self,
            key: &IdempotencyKey,
            holder: &EventId,
            receipt: &TriggerReceipt,
        ) -> Result<(), Error> {
            let mut failures = self.fail_completes.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(Error::unavailable("DynamoDB is down"));
            }
            let mut keys = self.keys.lock().unwrap();
            let entry = keys.get_mut(key.as_str()).unwrap();
            if entry.0.event_id == *holder {
                *entry = (receipt.clone(), true, entry.2);
            }
            Ok(())
        }
        async fn abandon_key(&self, key: &IdempotencyKey, receipt: &TriggerReceipt) -> Result<(), Error> {
            let mut keys = self.keys.lock().unwrap();
            let entry = keys.get_mut(key.as_str()).unwrap();
            if entry.0.event_id == receipt.event_id && !entry.1 {
                entry.2 = DateTime::<Utc>::MIN_UTC;
            }
            Ok(())
        }
    }

    impl Fakes {
        fn state_of(&self, id: &EventId) -> Option<TriggerState> {
            self.settled.lock().unwrap().get(id).copied()
        }
    }

    fn acceptor(fakes: &Arc<Fakes>) -> SnsAcceptor {
        SnsAcceptor::new(fakes.clone(), fakes.clone(), fakes.clone())
    }

    fn trigger() -> Trigger {
        let definition = fixtures::definition("orders.created");
        let subscription = fixtures::subscription(&definition.name, "fn-a", Metadata::new());
        accepted_trigger(&definition, &[subscription.into()], b"{}".to_vec(), Utc::now(), &UlidSource)
    }

    fn fan_out(n: usize) -> Trigger {
        let definition = fixtures::definition("orders.created");
        let subscriptions: Vec<std::sync::Arc<_>> = (0..n)
            .map(|i| fixtures::subscription(&definition.name, &format!("fn-{i}"), Metadata::new()).into())
            .collect();
        accepted_trigger(&definition, &subscriptions, b"{}".to_vec(), Utc::now(), &UlidSource)
    }

    #[tokio::test]
    async fn a_trigger_is_settled_accepted_logged_and_its_key_completed_only_after_it_is_published() {
        let fakes = Arc::new(Fakes::default());
        let key = IdempotencyKey::parse("k-1").unwrap();
        let t = trigger();
        let got = acceptor(&fakes).accept(&t, Some(&key)).await.unwrap();
        assert_eq!(got, Acceptance::Accepted);
        assert_eq!(fakes.state_of(&t.event_id), Some(TriggerState::Accepted));
        assert_eq!(fakes.recorded.lock().unwrap().as_slice(), &[t.event_id]);
        let replay = acceptor(&fakes).accept(&trigger(), Some(&key)).await.unwrap();
        assert_eq!(replay, Acceptance::Replayed(t.receipt()));
        assert_eq!(fakes.published.lock().unwrap().len(), 1, "a replay publishes nothing");
    }

    #[tokio::test]
    async fn a_fan_out_that_fails_after_its_first_message_is_an_error_and_settled_abandoned() {
        // GIVEN a publisher that gets the first of several messages out, then fails
        let fakes = Arc::new(Fakes::default());
        *fakes.fail_publishes.lock().unwrap() = 1;
        *fakes.publish_only.lock().unwrap() = Some(2);
        let t = fan_out(5);

        // WHEN the trigger is accepted
        let err = acceptor(&fakes).accept(&t, None).await.unwrap_err();

        // THEN the client hears an error, and what went out can never run: the trigger is settled
        // abandoned (the dispatcher drops its messages), and it is not in the delivery log
        assert!(matches!(err, Error::NotAccepted(_)));
        assert_eq!(fakes.published.lock().unwrap()[0].deliveries.len(), 2, "part of the fan-out is out");
        assert_eq!(fakes.state_of(&t.event_id), Some(TriggerState::Abandoned));
        assert!(fakes.recorded.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_retry_after_a_failed_publish_goes_out_under_a_new_event_id_and_the_first_never_runs() {
        let fakes = Arc::new(Fakes::default());
        *fakes.fail_publishes.lock().unwrap() = 1;
        *fakes.publish_only.lock().unwrap() = Some(1);
        let key = IdempotencyKey::parse("k-2").unwrap();
        let first = fan_out(3);
        acceptor(&fakes).accept(&first, Some(&key)).await.unwrap_err();

        // The client retries: the key was released at once, so the retry takes it over.
        let retry = fan_out(3);
        let got = acceptor(&fakes).accept(&retry, Some(&key)).await.unwrap();
        assert_eq!(got, Acceptance::Accepted);
        let published = fakes.published.lock().unwrap().clone();
        assert_eq!(published.len(), 2);
        assert_eq!(published[1].event_id, retry.event_id);
        assert_eq!(published[1].deliveries.len(), 3, "the retry publishes every delivery");
        assert_eq!(fakes.state_of(&first.event_id), Some(TriggerState::Abandoned));
        assert_eq!(fakes.state_of(&retry.event_id), Some(TriggerState::Accepted));
        // And a third request with the key replays the retry's receipt.
        assert_eq!(
            acceptor(&fakes).accept(&fan_out(3), Some(&key)).await.unwrap(),
            Acceptance::Replayed(retry.receipt())
        );
    }

    #[tokio::test]
    async fn a_take_over_finds_an_earlier_attempt_that_was_accepted_and_answers_with_it() {
        // GIVEN an attempt that settled its trigger accepted, then died before completing its key
        let fakes = Arc::new(Fakes::default());
        let key = IdempotencyKey::parse("k-4").unwrap();
        let first = trigger();
        let lease = Duration::from_secs(60);
        fakes.claim_key(&key, &first.receipt(), &first.payload_digest(), first.received_at, lease).await.unwrap();
        fakes.settled.lock().unwrap().insert(first.event_id, TriggerState::Accepted);
        fakes.keys.lock().unwrap().get_mut("k-4").unwrap().2 = DateTime::<Utc>::MIN_UTC;

        // WHEN the client retries
        let got = acceptor(&fakes).accept(&trigger(), Some(&key)).await.unwrap();

        // THEN it gets the first trigger's receipt, nothing is published again, the key replays it
        assert_eq!(got, Acceptance::Replayed(first.receipt()));
        assert!(fakes.published.lock().unwrap().is_empty());
        assert_eq!(
            acceptor(&fakes).accept(&trigger(), Some(&key)).await.unwrap(),
            Acceptance::Replayed(first.receipt())
        );
    }

    #[tokio::test]
    async fn a_key_whose_completion_keeps_failing_never_lets_a_second_trigger_run() {
        // GIVEN a trigger accepted (202) whose key could not be completed
        let fakes = Arc::new(Fakes::default());
        let key = IdempotencyKey::parse("k-5").unwrap();
        let lapse = |fakes: &Fakes| fakes.keys.lock().unwrap().get_mut("k-5").unwrap().2 = DateTime::<Utc>::MIN_UTC;
        *fakes.fail_completes.lock().unwrap() = 2;
        let first = trigger();
        assert_eq!(acceptor(&fakes).accept(&first, Some(&key)).await.unwrap(), Acceptance::Accepted);

        // WHEN the client retries after the lease, and completing the key fails once more
        lapse(&fakes);
        let second = acceptor(&fakes).accept(&trigger(), Some(&key)).await.unwrap();
        // AND retries again after another lease
        lapse(&fakes);
        let third = acceptor(&fakes).accept(&trigger(), Some(&key)).await.unwrap();

        // THEN every answer is the first trigger's, and nothing else was ever published
        assert_eq!(second, Acceptance::Replayed(first.receipt()));
        assert_eq!(third, Acceptance::Replayed(first.receipt()));
        assert_eq!(fakes.published.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_trigger_the_dispatcher_settled_abandoned_first_is_an_error() {
        let fakes = Arc::new(Fakes::default());
        let t = trigger();
        fakes.settled.lock().unwrap().insert(t.event_id, TriggerState::Abandoned);
        let err = acceptor(&fakes).accept(&t, None).await.unwrap_err();
        assert!(err.to_string().contains("was not accepted in time"), "{err}");
        assert!(fakes.recorded.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_acceptance_whose_answer_was_lost_is_found_and_answered_202() {
        let fakes = Arc::new(Fakes::default());
        *fakes.lose_settle_answers.lock().unwrap() = 1;
        let t = trigger();
        assert_eq!(acceptor(&fakes).accept(&t, None).await.unwrap(), Acceptance::Accepted);
        assert_eq!(fakes.state_of(&t.event_id), Some(TriggerState::Accepted));
    }

    #[tokio::test]
    async fn a_key_held_by_a_request_in_flight_is_not_published_twice() {
        let fakes = Arc::new(Fakes::default());
        let key = IdempotencyKey::parse("k-3").unwrap();
        let t = trigger();
        fakes.claim_key(&key, &t.receipt(), &t.payload_digest(), t.received_at, Duration::from_secs(60)).await.unwrap();
        let err = acceptor(&fakes).accept(&trigger(), Some(&key)).await.unwrap_err();
        assert!(matches!(err, Error::NotAccepted(_)));
        assert!(fakes.published.lock().unwrap().is_empty());
    }
}
