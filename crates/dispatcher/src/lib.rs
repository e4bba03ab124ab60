//! The cloud dispatcher: runs the deliveries of an SQS batch (the delivery queue, fed by the
//! SNS topic with raw message delivery) and says which messages SQS should deliver again.
//!
//! A message fresh from the trigger handler (`unconfirmed`) runs only once its trigger is
//! settled accepted: the handler settles it after its last publish and answers 202 only then.
//! One whose trigger is not settled yet is held back (put back with a short delay) for the
//! acceptance window; after that it is settled abandoned (unless the handler got there first)
//! and dropped, because its client was answered with an error. Then each delivery of each
//! message runs concurrently, under a bound:
//! - one already recorded as delivered, or whose attempt was already made (a redelivered
//!   message), is skipped, so functions that succeeded are not invoked again;
//! - a function outside the allowlist is failed, never invoked;
//! - otherwise it is invoked through the `FunctionInvoker` port (Lambda `InvocationType=Event`).
//!
//! A delivery that fails goes back to the queue on its own (a message carrying only it, one
//! attempt more, with its last error) with SQS `DelaySeconds` as backoff; after the last attempt
//! it goes to the dead-letter queue with its error. Every attempt is recorded in the delivery
//! log. A message is reported as a batch item failure only when that could not be done (the
//! log could not be read, a re-enqueue failed), so SQS redelivers it and, at worst, its redrive
//! policy moves it to the dead-letter queue.

pub mod config;
pub mod queue;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures_util::future::join_all;
use gateway_core::dispatch::{self, RetryPolicy};
use gateway_core::message::{DeliveryEntry, DeliveryMessage};
use gateway_core::ports::{
    AttemptOutcome, Clock, DeliveryRecorder, FunctionInvoker, SystemClock, TriggerState, ACCEPTANCE_WINDOW,
    TRIGGER_STATE_LIFETIME,
};
use gateway_core::{Delivery, DeliveryStatus, FunctionAllowlist};
use tokio::sync::Semaphore;

pub use config::{Config, ConfigError};
pub use queue::{QueueError, RetryQueue, SqsRetryQueue};

/// A delivery's last error is cut to this many bytes, so a re-enqueued message stays within
/// the room the publisher left for it.
pub const MAX_ERROR_BYTES: usize = 1024;

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
}

impl Default for DispatchSettings {
    fn default() -> Self {
        // Fails closed: settings that name no allowlist invoke nothing.
        Self {
            allowlist: FunctionAllowlist::none(),
            retry: RetryPolicy::default(),
            concurrency: 16,
            acceptance_window: ACCEPTANCE_WINDOW,
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

    /// Runs a batch; the response lists the messages SQS must deliver again.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let outcomes = join_all(event.records.iter().map(|record| async move {
            let ok = match record.body.as_deref() {
                Some(body) => self.handle_message(body).await,
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

    /// Runs one message's deliveries; false if SQS must deliver it again.
    pub async fn handle_message(&self, body: &str) -> bool {
        let message = match delivery_message(body) {
            Ok(message) => message,
            Err(error) => {
                // Left to the queue's redrive policy, which moves it to the dead-letter queue.
                tracing::error!(%error, "a message on the delivery queue is not a delivery message");
                return false;
            }
        };
        if message.deliveries.is_empty() {
            return true;
        }
        let ids: Vec<_> = message.deliveries.iter().map(|d| d.subscription_id).collect();
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
    ) -> bool {
        if let Some(recorded) = recorded {
            if recorded.status == DeliveryStatus::Delivered || recorded.attempts > entry.attempts {
                tracing::info!(
                    event_id = %message.event_id, subscription_id = %entry.subscription_id,
                    status = recorded.status.as_str(), attempts = recorded.attempts,
                    "delivery already done; skipped"
                );
                return true;
            }
        }
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let delivery = message.record_of(entry);
        let outcome = match payload {
            Ok(payload) => {
                dispatch::attempt(
                    self.invoker.as_ref(),
                    &self.settings.allowlist,
                    &self.settings.retry,
                    self.clock.now(),
                    dispatch::Invocation {
                        delivery: &delivery,
                        data_type: &message.data_type,
                        payload,
                        source: message.source.as_ref(),
                    },
                )
                .await
            }
            Err(error) => AttemptOutcome::Failed { error: format!("the message's data cannot be read: {error}") },
        };
        let attempts = entry.attempts + 1;
        tracing::info!(
            event_id = %message.event_id, subscription_id = %entry.subscription_id,
            function_id = %entry.function_id, attempt = attempts, outcome = ?outcome, "delivery attempt"
        );
        let record = |status, last_error: Option<String>| Delivery {
            status,
            attempts,
            last_error,
            updated_at: self.clock.now(),
            ..delivery.clone()
        };
        let alone = |error: &str| {
            message.accepted_with(vec![DeliveryEntry { attempts, last_error: Some(error.to_owned()), ..entry.clone() }])
        };
        match outcome {
            AttemptOutcome::Delivered => {
                let done = record(DeliveryStatus::Delivered, entry.last_error.clone());
                // Unrecorded, a success would read as pending forever: have the message again.
                self.write(&done).await
            }
            AttemptOutcome::RetryAt { error, .. } => {
                let error = truncated(error);
                let delay = self.settings.retry.delay_after(attempts).min(queue::MAX_DELAY);
                if let Err(e) = self.queue.retry_later(&alone(&error), delay).await {
                    // Nothing recorded: the redelivered message makes this attempt again.
                    tracing::error!(error = %e, event_id = %message.event_id, subscription_id = %entry.subscription_id, "cannot re-enqueue a delivery");
                    return false;
                }
                // The retry message carries the state on: a lost record is caught up by the next attempt.
                self.write(&record(DeliveryStatus::Pending, Some(error))).await;
                true
            }
            AttemptOutcome::Failed { error } => {
                let error = truncated(error);
                if let Err(e) = self.queue.dead_letter(&alone(&error)).await {
                    tracing::error!(error = %e, event_id = %message.event_id, subscription_id = %entry.subscription_id, "cannot send a failed delivery to the dead-letter queue");
                    return false;
                }
                self.write(&record(DeliveryStatus::Failed, Some(error))).await
            }
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

fn truncated(mut error: String) -> String {
    if error.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES - '…'.len_utf8();
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
        error.push('…');
    }
    error
}

/// Reads an SQS body as a delivery message. SNS hands the queue raw messages, but one it could
/// not deliver waits in the fan-out dead-letter queue and, redriven from there, may come back
/// in SNS's JSON envelope, the delivery message being its `Message`: both are run.
fn delivery_message(body: &str) -> Result<DeliveryMessage, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct SnsNotification {
        #[serde(rename = "Type")]
        kind: String,
        #[serde(rename = "Message")]
        message: String,
    }
    serde_json::from_str(body).or_else(|error| match serde_json::from_str::<SnsNotification>(body) {
        Ok(envelope) if envelope.kind == "Notification" => serde_json::from_str(&envelope.message),
        _ => Err(error),
    })
}

#[cfg(test)]
mod tests;
