//! Where a delivery goes when its attempt did not succeed: back to the delivery queue after a
//! delay, or to the dead-letter queue with its last error.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageAttributeValue;
use aws_sdk_sqs::Client;
use gateway_core::message::DeliveryMessage;

/// SQS's longest `DelaySeconds`.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct QueueError(pub String);

#[async_trait]
pub trait RetryQueue: Send + Sync {
    /// Puts `message` back on the delivery queue, to be received after `delay` (at most 15 minutes).
    async fn retry_later(&self, message: &DeliveryMessage, delay: Duration) -> Result<(), QueueError>;
    /// Puts `message`, which carries its deliveries' last errors, on the dead-letter queue.
    async fn dead_letter(&self, message: &DeliveryMessage) -> Result<(), QueueError>;
}

/// The delivery queue and its dead-letter queue on SQS.
#[derive(Clone)]
pub struct SqsRetryQueue {
    client: Client,
    delivery_queue_url: String,
    dead_letter_queue_url: String,
}

impl SqsRetryQueue {
    pub fn new(
        client: Client,
        delivery_queue_url: impl Into<String>,
        dead_letter_queue_url: impl Into<String>,
    ) -> Self {
        Self {
            client,
            delivery_queue_url: delivery_queue_url.into(),
            dead_letter_queue_url: dead_letter_queue_url.into(),
        }
    }

    /// The dead-letter queue alone, for a reader that never re-enqueues (the outcome recorder):
    /// its `retry_later` fails.
    pub fn dead_letters_only(client: Client, dead_letter_queue_url: impl Into<String>) -> Self {
        Self { client, delivery_queue_url: String::new(), dead_letter_queue_url: dead_letter_queue_url.into() }
    }

    async fn send(&self, queue_url: &str, message: &DeliveryMessage, delay: Duration) -> Result<(), QueueError> {
        let body = serde_json::to_string(message).map_err(|e| QueueError(e.to_string()))?;
        let event = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(message.event.as_str())
            .build()
            .map_err(|e| QueueError(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .delay_seconds(delay_seconds(delay))
            .message_attributes("event", event)
            .send()
            .await
            .map_err(|e| QueueError(format!("SQS SendMessage failed: {}", DisplayErrorContext(&e))))?;
        Ok(())
    }
}

/// Whole seconds, rounded up so a delay is never shorter than asked, within SQS's 0 to 900.
pub fn delay_seconds(delay: Duration) -> i32 {
    let delay = delay.min(MAX_DELAY);
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    seconds.min(MAX_DELAY.as_secs()) as i32
}

#[async_trait]
impl RetryQueue for SqsRetryQueue {
    async fn retry_later(&self, message: &DeliveryMessage, delay: Duration) -> Result<(), QueueError> {
        if self.delivery_queue_url.is_empty() {
            return Err(QueueError("this function has no delivery queue to re-enqueue to".to_owned()));
        }
        self.send(&self.delivery_queue_url, message, delay).await
    }

    async fn dead_letter(&self, message: &DeliveryMessage) -> Result<(), QueueError> {
        self.send(&self.dead_letter_queue_url, message, Duration::ZERO).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_round_up_to_whole_seconds_within_sqs_limits() {
        assert_eq!(delay_seconds(Duration::ZERO), 0);
        assert_eq!(delay_seconds(Duration::from_millis(200)), 1);
        assert_eq!(delay_seconds(Duration::from_secs(2)), 2);
        assert_eq!(delay_seconds(Duration::from_secs(3600)), 900);
    }
}
