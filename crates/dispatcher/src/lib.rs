//! The cloud dispatcher: runs the deliveries of an SQS batch (the delivery queue, fed by the
//! SNS topic with raw message delivery) and says which messages SQS should deliver again.
//!
//! A message fresh from the trigger handler (`unconfirmed`) runs only once its trigger is
//! settled accepted: the handler settles it after its last publish and answers 202 only then.
//! One whose trigger is not settled yet is held back (put back with a short delay) for the
//! acceptance window; after that it is settled abandoned (unless the handler got there first)
//! and dropped, because its client was answered with an error. Then each delivery of each
//! message runs concurrently, under a bound, checked against its recorded state ([`Skip`]):
//! - a stale copy (the record is of a later series), one already handed over (`delivered`,
//!   `invoked`), or one whose attempt was already made (a redelivered message), is skipped, so
//!   functions that succeeded are not invoked again;
//! - one at its recorded `failed` state is a message moved back from the dead-letter queue: it
//!   runs as a new series (the next generation), as an API redrive would;
//! - otherwise `dispatch::attempt` makes the attempt (the allowlist, the invocation in the
//!   subscription's mode, the one retry decision of the core).
//!
//! A delivery that fails goes back to the queue on its own (a message carrying only it, as the
//! attempt left it) with SQS `DelaySeconds` as the backoff; after the last attempt it goes to the
//! dead-letter queue with its error and is recorded `failed` with its trigger's payload kept, to
//! be redriven. A `sync` attempt is bounded by the invocation's deadline; one that could not be
//! waited out is not started but put back, uncounted. A message is reported as a batch item
//! failure only when that could not be done (the log could not be read, a re-enqueue failed), so
//! SQS redelivers it and, at worst, its redrive policy moves it to the dead-letter queue.

pub mod config;
pub mod outcome;
pub mod queue;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures_util::future::join_all;
use gateway_core::delivery::Tried;
use gateway_core::dispatch::{self, RetryPolicy};
use gateway_core::message::{DeliveryEntry, DeliveryMessage};
use gateway_core::ports::{
    Clock, DeliveryRecorder, FunctionInvoker, SystemClock, TriggerState, ACCEPTANCE_WINDOW, TRIGGER_STATE_LIFETIME,
};
use gateway_core::{Delivery, DeliveryMode, DeliveryStatus, FunctionAllowlist};
use tokio::sync::Semaphore;

pub use config::{Config, ConfigError, OutcomeConfig};
pub use outcome::OutcomeRecorder;
pub use queue::{QueueError, RetryQueue, SqsRetryQueue};

/// What the dispatcher keeps of its invocation's time after a `sync` attempt: enough to record
/// it and hand the delivery on. A `sync` attempt waits at most the invocation's remaining time
/// less this.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(10);

/// What the dispatcher decides with: the same knobs as the local gateway's worker.
#[derive(Clone, Debug)]
pub struct DispatchSettings {
    pub allowlist: FunctionAllowlist,
    /// Attempts in all and backoff; delays are capped at SQS's 15 minutes.
    pub retry: RetryPolicy,
    /// Deliveries in flight at once, across the whole batch.
    pub concurrency: usize,
    /// How long after its `receivedAt` a published trigger may still be settled accepted by the
    /// trigger handler (`gateway_core::ports::ACCEPTANCE_WINDOW` unless a test shortens it).
    pub acceptance_window: Duration,
    /// The `source` of the CloudEvents it sends subscriptions in `cloudevents` format.
    pub cloud_events_source: String,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        // Fails closed: settings that name no allowlist invoke nothing.
        Self {
            allowlist: FunctionAllowlist::none(),
            retry: RetryPolicy::default(),
            concurrency: 16,
            acceptance_window: ACCEPTANCE_WINDOW,
            cloud_events_source: dispatch::DEFAULT_CLOUD_EVENTS_SOURCE.to_owned(),
        }
    }
}

/// How long a held-back message waits before it is looked at again.
const HOLD_BACK_MIN: Duration = Duration::from_secs(1);
const HOLD_BACK_MAX: Duration = Duration::from_secs(5);

/// What to do with an unconfirmed message.
enum Admission {
    /// Its trigger is accepted: run its deliveries.
    Run,
    /// Nothing more to do with this copy (dropped, or held back in a new copy).
    Done,
    /// Have SQS deliver it again.
    Again,
}

pub struct Dispatcher {
    recorder: Arc<dyn DeliveryRecorder>,
    invoker: Arc<dyn FunctionInvoker>,
    queue: Arc<dyn RetryQueue>,
    clock: Arc<dyn Clock>,
    settings: DispatchSettings,
    permits: Semaphore,
}

impl Dispatcher {
    pub fn new(
        recorder: Arc<dyn DeliveryRecorder>,
        invoker: Arc<dyn FunctionInvoker>,
        queue: Arc<dyn RetryQueue>,
        settings: DispatchSettings,
    ) -> Self {
        let permits = Semaphore::new(settings.concurrency.max(1));
        Self { recorder, invoker, queue, clock: Arc::new(SystemClock), settings, permits }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Runs a batch with no deadline; the response lists the messages SQS must deliver again.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_before(event, None).await
    }

    /// Runs a batch within an invocation that ends at `deadline` (Lambda's context deadline):
    /// a `sync` attempt waits at most until [`SAFETY_MARGIN`] before it.
    pub async fn handle_before(&self, event: SqsEvent, deadline: Option<Instant>) -> SqsBatchResponse {
        let time = deadline.map(|deadline| Budget::new(deadline, Instant::now()));
        let time = time.as_ref();
        let outcomes = join_all(event.records.iter().map(|record| async move {
            let first_receipt = record.attributes.get("ApproximateReceiveCount").is_some_and(|n| n == "1");
            let ok = match record.body.as_deref() {
                Some(body) => self.run_message(body, first_receipt, time).await,
                None => {
                    tracing::error!(message_id = ?record.message_id, "SQS message without a body");
                    false
                }
            };
            (record.message_id.clone().unwrap_or_default(), ok)
        }))
        .await;
        let mut response = SqsBatchResponse::default();
        for (message_id, ok) in outcomes {
            if !ok {
                response.add_failure(message_id);
            }
        }
        response
    }

    /// Runs one message's deliveries, with no deadline; false if SQS must deliver it again.
    pub async fn handle_message(&self, body: &str) -> bool {
        self.run_message(body, false, None).await
    }

    /// `first_receipt`: SQS hands the message over for the first time
    /// (`ApproximateReceiveCount` 1).
    async fn run_message(&self, body: &str, first_receipt: bool, time: Option<&Budget>) -> bool {
        let message = match delivery_message(body) {
            Ok(message) => message,
            Err(error) => {
                // Left to the queue's redrive policy, which moves it to the dead-letter queue (a
                // newer version waits there for the code that wrote it).
                tracing::error!(%error, "a message on the delivery queue is not one this dispatcher reads");
                return false;
            }
        };
        if message.deliveries.is_empty() {
            return true;
        }
        // A fresh trigger's message (unconfirmed: straight from the acceptor, which publishes
        // each message once), received for the first time, cannot have had any delivery run:
        // the trigger's state is all there is to read, not a record per delivery (N read units
        // saved a trigger). Should SNS or SQS hand over a duplicate, a delivery runs twice, as
        // at-least-once allows, and its record still never moves backwards (`supersedes`).
        let ids: Vec<_> = if message.unconfirmed && first_receipt {
            Vec::new()
        } else {
            message.deliveries.iter().map(|d| d.subscription_id).collect()
        };
        let recorded = match self.recorder.recorded_trigger(&message.event_id, &ids).await {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(%error, event_id = %message.event_id, "cannot read the delivery log; the message will come again");
                return false;
            }
        };
        if message.unconfirmed {
            match self.admission(&message, recorded.state).await {
                Admission::Run => {}
                Admission::Done => return true,
                Admission::Again => return false,
            }
        }
        let recorded = recorded.deliveries.into_iter().map(|d| (d.subscription_id, d)).collect::<HashMap<_, _>>();
        let payload = message.payload();
        let results = join_all(message.deliveries.iter().map(|entry| {
            self.run_delivery(
                &message,
                entry,
                recorded.get(&entry.subscription_id),
                payload.as_deref().map_err(String::as_str),
                time,
            )
        }))
        .await;
        results.into_iter().all(|ok| ok)
    }

    /// Whether an unconfirmed message may run, given its trigger's settled state.
    async fn admission(&self, message: &DeliveryMessage, state: Option<TriggerState>) -> Admission {
        let state = match state {
            Some(state) => state,
            None => {
                let now = self.clock.now();
                let state_kept_until = message.received_at
                    + chrono::Duration::from_std(TRIGGER_STATE_LIFETIME).unwrap_or(chrono::Duration::MAX);
                if now >= state_kept_until {
                    return self.acceptance_unknown(message).await;
                }
                let window_ends = message.received_at
                    + chrono::Duration::from_std(self.settings.acceptance_window).unwrap_or(chrono::Duration::MAX);
                if now < window_ends {
                    // The handler may still be settling it: have the message back shortly.
                    let wait = (window_ends - now).to_std().unwrap_or_default().clamp(HOLD_BACK_MIN, HOLD_BACK_MAX);
                    return match self.queue.retry_later(message, wait).await {
                        Ok(()) => {
                            tracing::info!(event_id = %message.event_id, "trigger not settled yet; message held back");
                            Admission::Done
                        }
                        Err(error) => {
                            tracing::warn!(%error, event_id = %message.event_id, "cannot hold a message back; it will come again");
                            Admission::Again
                        }
                    };
                }
                let settled = self
                    .recorder
                    .settle_trigger(&message.event_id, &message.event, message.received_at, TriggerState::Abandoned)
                    .await;
                match settled {
                    Ok(state) => state,
                    Err(error) => {
                        tracing::error!(%error, event_id = %message.event_id, "cannot settle an unaccepted trigger; the message will come again");
                        return Admission::Again;
                    }
                }
            }
        };
        match state {
            TriggerState::Accepted => Admission::Run,
            TriggerState::Abandoned => {
                tracing::warn!(
                    event_id = %message.event_id, deliveries = message.deliveries.len(),
                    "the trigger was never accepted (its client got an error): its deliveries are dropped"
                );
                Admission::Done
            }
        }
    }

    /// A message older than its trigger's state can be (a redrive weeks late): whether it was
    /// accepted cannot be told, so it is neither run nor dropped but dead-lettered, for an
    /// operator who knows (its `Idempotency-Key` receipt, the client's logs) to redrive or delete.
    async fn acceptance_unknown(&self, message: &DeliveryMessage) -> Admission {
        let error = "its trigger's acceptance is no longer known (the message is older than the trigger state is kept); not run".to_owned();
        let entries =
            message.deliveries.iter().map(|d| DeliveryEntry { last_error: Some(error.clone()), ..d.clone() }).collect();
        match self.queue.dead_letter(&message.with_deliveries(entries)).await {
            Ok(()) => {
                tracing::error!(event_id = %message.event_id, "a message whose trigger's acceptance is no longer known was dead-lettered");
                Admission::Done
            }
            Err(error) => {
                tracing::error!(%error, event_id = %message.event_id, "cannot dead-letter a message; it will come again");
                Admission::Again
            }
        }
    }

    async fn run_delivery(
        &self,
        message: &DeliveryMessage,
        entry: &DeliveryEntry,
        recorded: Option<&Delivery>,
        payload: Result<&[u8], &str>,
        time: Option<&Budget>,
    ) -> bool {
        let delivery = match skip(entry, recorded, self.clock.now()) {
            Skip::No => message.record_of(entry),
            Skip::Resume(orphaned) => {
                let now = self.clock.now();
                match self.recorder.take_over_series(orphaned, now).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!(event_id = %message.event_id, subscription_id = %entry.subscription_id,
                            "an orphaned series was taken over by another copy meanwhile; skipped");
                        return true;
                    }
                    Err(error) => {
                        tracing::error!(%error, event_id = %message.event_id, "cannot take over an orphaned series; the message will come again");
                        return false;
                    }
                }
                tracing::warn!(
                    event_id = %message.event_id, subscription_id = %entry.subscription_id,
                    generation = orphaned.generation,
                    "a series begun long ago never made its first attempt (its starter died): run it from this copy"
                );
                Delivery { updated_at: now, ..orphaned.clone() }
            }
            Skip::Later(wait) => {
                let again = message.accepted_with(vec![entry.clone()]);
                return match self.queue.retry_later(&again, wait.min(queue::MAX_DELAY)).await {
                    Ok(()) => {
                        tracing::info!(event_id = %message.event_id, subscription_id = %entry.subscription_id,
                            "a later series was begun moments ago; this copy looks again later");
                        true
                    }
                    Err(error) => {
                        tracing::error!(%error, event_id = %message.event_id, "cannot put a copy back to look again later; the message will come again");
                        false
                    }
                };
            }
            Skip::NewSeries => {
                // Moved back from the dead-letter queue: a new series, as an API redrive makes it,
                // begun by a conditional write so that another copy (or a redrive) racing this one
                // does not run it twice.
                let now = self.clock.now();
                let next = Delivery {
                    generation: entry.generation + 1,
                    attempts: 0,
                    redriven_at: Some(now),
                    updated_at: now,
                    ..message.record_of(entry)
                };
                match self.recorder.start_series(&next).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!(
                            event_id = %message.event_id, subscription_id = %entry.subscription_id,
                            "a dead-lettered delivery came back, but its next series was begun already; skipped"
                        );
                        return true;
                    }
                    Err(error) => {
                        tracing::error!(%error, event_id = %message.event_id, "cannot begin a new series; the message will come again");
                        return false;
                    }
                }
                tracing::info!(
                    event_id = %message.event_id, subscription_id = %entry.subscription_id,
                    generation = next.generation, "a dead-lettered delivery came back: run as a new series"
                );
                next
            }
            Skip::Yes(why) => {
                tracing::info!(
                    event_id = %message.event_id, subscription_id = %entry.subscription_id,
                    generation = entry.generation, attempts = entry.attempts, why, "delivery skipped"
                );
                return true;
            }
        };
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let budget = time.map(Budget::left);
        let limits = self.settings.retry.limits(&delivery.policy);
        if limits.mode == DeliveryMode::Sync {
            if let Some(time) = time {
                if !time.fits(limits.timeout) {
                    // Waiting less than its timeout could cut a function short that then succeeds:
                    // not started, put back as it came (the attempt is not counted).
                    let again = message.accepted_with(vec![DeliveryEntry::of(&delivery)]);
                    return match self.queue.retry_later(&again, Duration::ZERO).await {
                        Ok(()) => {
                            tracing::info!(event_id = %message.event_id, subscription_id = %entry.subscription_id, "too little time left for a sync attempt; put back");
                            true
                        }
                        Err(e) => {
                            tracing::error!(error = %e, event_id = %message.event_id, "cannot put a delivery back; the message will come again");
                            false
                        }
                    };
                }
            }
        }
        let attempted = match payload {
            Ok(payload) => {
                dispatch::attempt(
                    self.invoker.as_ref(),
                    &self.settings.allowlist,
                    &self.settings.retry,
                    self.clock.as_ref(),
                    budget,
                    dispatch::Invocation {
                        delivery: &delivery,
                        data_type: &message.data_type,
                        payload,
                        source: message.source.as_ref(),
                        cloud_event: message.cloud_event.as_ref(),
                        cloud_events_source: &self.settings.cloud_events_source,
                    },
                )
                .await
            }
            Err(error) => {
                // Not retried: the same message's data will not read any better.
                let now = self.clock.now();
                let tried =
                    Tried::Failed { error: format!("the message's data cannot be read: {error}"), retryable: false };
                dispatch::recorded_attempt(&self.settings.retry, &delivery, now, Duration::ZERO, now, tried)
            }
        };
        let after = &attempted.delivery;
        tracing::info!(
            event_id = %message.event_id, subscription_id = %entry.subscription_id, function_id = %after.function_id,
            generation = after.generation, attempt = after.attempts, status = after.status.as_str(),
            error = after.last_error.as_deref().filter(|_| !after.status.is_handed_over()), "delivery attempt"
        );
        let alone = message.accepted_with(vec![DeliveryEntry::of(after)]);
        match (after.status, attempted.retry) {
            (DeliveryStatus::Pending, Some(retry)) => {
                if let Err(e) = self.queue.retry_later(&alone, retry.delay.min(queue::MAX_DELAY)).await {
                    // Nothing recorded: the redelivered message makes this attempt again.
                    tracing::error!(error = %e, event_id = %message.event_id, subscription_id = %entry.subscription_id, "cannot re-enqueue a delivery");
                    return false;
                }
                // The retry message carries the state on: a lost record is caught up by the next attempt.
                self.write(after).await;
                true
            }
            (DeliveryStatus::Failed, _) => {
                if let Err(e) = self.queue.dead_letter(&alone).await {
                    tracing::error!(error = %e, event_id = %message.event_id, subscription_id = %entry.subscription_id, "cannot send a failed delivery to the dead-letter queue");
                    return false;
                }
                match self.recorder.record_failed(after, message).await {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::error!(%error, event_id = %after.event_id, subscription_id = %after.subscription_id, "cannot record a failed delivery");
                        false
                    }
                }
            }
            // Unrecorded, a success would read as pending forever: have the message again.
            _ => self.write(after).await,
        }
    }

    async fn write(&self, delivery: &Delivery) -> bool {
        match self.recorder.record_delivery(delivery).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, event_id = %delivery.event_id, subscription_id = %delivery.subscription_id, "cannot record a delivery attempt");
                false
            }
        }
    }
}

/// The deadline Lambda gives an invocation (`Lambda-Runtime-Deadline-Ms`, epoch milliseconds) as
/// an instant, if it is one: a deadline already past when the invocation starts is an emulator's
/// placeholder (`cargo lambda watch` sends ten minutes after 1970), read as none.
pub fn invocation_deadline(deadline_ms: u64) -> Option<Instant> {
    let deadline = std::time::UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let left = deadline.duration_since(std::time::SystemTime::now()).ok()?;
    Some(Instant::now() + left)
}

/// How long a series may be begun (recorded pending, generation g+1, no attempt) before its
/// first attempt is recorded, by whoever began it: a dispatcher invocation (at most 900 s) or a
/// redrive, whose message is sent at once. Past it, the one that began it is taken for dead.
pub const ORPHANED_AFTER: Duration = Duration::from_secs(20 * 60);

/// Whether a message's delivery runs, given its recorded state.
#[derive(Debug, PartialEq)]
pub enum Skip<'a> {
    /// Run the attempt the entry stands for.
    No,
    /// Run the recorded later series instead: it was begun over [`ORPHANED_AFTER`] ago and never
    /// attempted (a dispatcher died between beginning it and its attempt, or a redrive between
    /// its write and its message), and this copy is the only one left to run it.
    Resume(&'a Delivery),
    /// Look again after this long: a later series was begun moments ago and not attempted yet.
    /// If its own message runs it meanwhile, this copy is then stale; if not, it is orphaned.
    Later(Duration),
    /// Run it as a new series: the entry is at its recorded `failed` state, so it is that
    /// failure's dead letter, moved back to the queue.
    NewSeries,
    /// Nothing to do, for this reason.
    Yes(&'static str),
}

/// The skip rule at `now`: a record of a later series makes the entry a stale copy (unless that
/// series is orphaned); within its series a handed-over record, or one with more attempts, means
/// its attempt was made.
pub fn skip<'a>(entry: &DeliveryEntry, recorded: Option<&'a Delivery>, now: chrono::DateTime<chrono::Utc>) -> Skip<'a> {
    let Some(recorded) = recorded else { return Skip::No };
    if recorded.generation > entry.generation {
        if recorded.status == DeliveryStatus::Pending && recorded.attempts == 0 {
            // Begun and not attempted yet: its own message may be on the way, or its starter may
            // have died (then this copy is all that is left to run it).
            let begun = now.signed_duration_since(recorded.updated_at).to_std().unwrap_or_default();
            return if begun >= ORPHANED_AFTER { Skip::Resume(recorded) } else { Skip::Later(ORPHANED_AFTER - begun) };
        }
        return Skip::Yes("a copy of an earlier series");
    }
    if recorded.generation < entry.generation {
        return Skip::No;
    }
    if recorded.status.is_handed_over() {
        return Skip::Yes("already handed over");
    }
    if recorded.reported.is_some() && !entry.reported {
        // Lambda's report ended the series; only the dead letter made of it may run it again.
        return Skip::Yes("Lambda reported the series' outcome");
    }
    if recorded.attempts > entry.attempts {
        return Skip::Yes("its attempt was already made");
    }
    if recorded.attempts == entry.attempts && recorded.status == DeliveryStatus::Failed {
        return Skip::NewSeries;
    }
    Skip::No
}

/// The time an invocation has for its batch.
struct Budget {
    deadline: Instant,
    /// What the batch had when it began: the most any attempt of it can be given.
    whole: Duration,
}

impl Budget {
    fn new(deadline: Instant, now: Instant) -> Self {
        Self { deadline, whole: deadline.saturating_duration_since(now).saturating_sub(SAFETY_MARGIN) }
    }

    /// What an attempt starting now may wait.
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now()).saturating_sub(SAFETY_MARGIN)
    }

    /// Whether a `sync` attempt of `timeout` may start now: it can be waited out, or (a timeout
    /// longer than any invocation gives) the batch has not spent any of its time yet, so it is
    /// given the most there is rather than put back forever.
    fn fits(&self, timeout: Duration) -> bool {
        self.left() >= timeout.min(self.whole.saturating_sub(START_SLACK))
    }
}

/// How much of its batch's time an attempt may find spent and still count as starting at once.
const START_SLACK: Duration = Duration::from_secs(1);

/// Reads an SQS body as a delivery message. SNS hands the queue raw messages, but one it could
/// not deliver waits in the fan-out dead-letter queue and, redriven from there, may come back
/// in SNS's JSON envelope, the delivery message being its `Message`: both are run.
fn delivery_message(body: &str) -> Result<DeliveryMessage, String> {
    #[derive(serde::Deserialize)]
    struct SnsNotification {
        #[serde(rename = "Type")]
        kind: String,
        #[serde(rename = "Message")]
        message: String,
    }
    DeliveryMessage::read(body).or_else(|error| match serde_json::from_str::<SnsNotification>(body) {
        Ok(envelope) if envelope.kind == "Notification" => DeliveryMessage::read(&envelope.message),
        _ => Err(error),
    })
}

#[cfg(test)]
mod tests;
