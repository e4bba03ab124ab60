//! How a trigger's deliveries are cut into SNS messages and PublishBatch calls, within SNS's
//! 256 KiB limit (body and attributes, per message and per batch) and 10 entries a batch.

use gateway_core::message::{DeliveryMessage, MAX_MESSAGE_BYTES};
use gateway_core::Error;

/// The message attribute that carries the event name, for subscribers' filter policies.
pub const EVENT_ATTRIBUTE: &str = "event";

/// Room kept free in every message so the dispatcher can re-enqueue or dead-letter a delivery
/// with what it gathers on the way without passing the limit: its last error (cut to 1 KiB), its
/// attempt history (the last 10 attempts, each error cut to 256 bytes, with about 256 bytes of
/// number, times, result and Lambda's request id), and its generation, `redrivenAt` and policy (512 bytes is ample).
/// A re-enqueue that did not fit would be refused by SQS, and the delivery would never move on.
pub const RESERVED_BYTES: usize = gateway_core::dispatch::MAX_ERROR_BYTES
    + gateway_core::model::MAX_HISTORY * (gateway_core::dispatch::MAX_ATTEMPT_ERROR_BYTES + 256)
    + 512;

pub const MAX_BATCH_ENTRIES: usize = 10;

/// Bytes SNS counts for the `event` attribute: its name, its data type and its value.
pub fn attribute_bytes(event: &str) -> usize {
    EVENT_ATTRIBUTE.len() + "String".len() + event.len()
}

/// Cuts `message` into as few bodies as fit, each carrying consecutive deliveries, every
/// delivery exactly once. A trigger without deliveries is still one message (other subscribers
/// of the topic see every trigger). Fails if a single delivery cannot fit in a message.
pub fn split(message: &DeliveryMessage) -> Result<Vec<String>, Error> {
    let budget = MAX_MESSAGE_BYTES - attribute_bytes(message.event.as_str()) - RESERVED_BYTES;
    let envelope = json(&message.with_deliveries(Vec::new()))?.len();
    let mut chunks: Vec<Vec<_>> = Vec::new();
    let mut current = Vec::new();
    let mut size = envelope;
    for delivery in &message.deliveries {
        let bytes = json(delivery)?.len();
        let comma = usize::from(!current.is_empty());
        if size + comma + bytes > budget {
            if current.is_empty() {
                return Err(too_large(message, envelope + bytes, budget));
            }
            chunks.push(std::mem::take(&mut current));
            size = envelope;
        }
        size += usize::from(!current.is_empty()) + bytes;
        current.push(delivery.clone());
    }
    if !current.is_empty() || chunks.is_empty() {
        if envelope > budget {
            return Err(too_large(message, envelope, budget));
        }
        chunks.push(current);
    }
    chunks.into_iter().map(|deliveries| json(&message.with_deliveries(deliveries))).collect()
}

/// Groups message bodies into PublishBatch calls: at most 10 entries and 256 KiB a call.
/// Returns index ranges into `bodies`.
pub fn batches(bodies: &[String], event: &str) -> Vec<std::ops::Range<usize>> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut total = 0;
    for (i, body) in bodies.iter().enumerate() {
        let size = body.len() + attribute_bytes(event);
        if i > start && (i - start == MAX_BATCH_ENTRIES || total + size > MAX_MESSAGE_BYTES) {
            batches.push(start..i);
            start = i;
            total = 0;
        }
        total += size;
    }
    if start < bodies.len() {
        batches.push(start..bodies.len());
    }
    batches
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(Error::unavailable)
}

/// A 4xx: retrying the same trigger cannot help, a smaller payload or metadata can.
fn too_large(message: &DeliveryMessage, bytes: usize, budget: usize) -> Error {
    Error::PayloadTooLarge(format!(
        "a trigger of '{}' with this payload needs a message of {bytes} bytes for one delivery; \
         SNS carries at most {budget} (256 KiB less the event attribute and room for retries): \
         send a smaller payload",
        message.event
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use gateway_core::message::DeliveryEntry;
    use gateway_core::ports::{IdSource, UlidSource};
    use gateway_core::FunctionId;
    use serde_json::json;

    use super::*;

    fn message(deliveries: usize, metadata_bytes: usize, payload_bytes: usize) -> DeliveryMessage {
        let payload = json!({ "blob": "p".repeat(payload_bytes) }).to_string();
        let mut metadata = gateway_core::Metadata::new();
        metadata.insert("note".into(), json!("m".repeat(metadata_bytes)));
        let entries = (0..deliveries)
            .map(|i| DeliveryEntry {
                subscription_id: UlidSource.subscription_id(),
                function_id: FunctionId::parse(&format!("fn-{i}")).unwrap(),
                metadata: metadata.clone().into(),
                attempts: 0,
                last_error: None,
                generation: 0,
                redriven_at: None,
                policy: Default::default(),
                history: Vec::new(),
                reported: false,
                format: Default::default(),
            })
            .collect();
        serde_json::from_value::<DeliveryMessage>(json!({
            "eventId": "evt_01JDQ3V6J9K2M4N5P6Q7R8S9T0",
            "event": "orders.created",
            "receivedAt": "2026-01-01T00:00:00Z",
            "dataType": "application/json",
            "data": serde_json::from_str::<serde_json::Value>(&payload).unwrap(),
            "deliveries": [],
        }))
        .unwrap()
        .with_deliveries(entries)
    }

    fn ids_in(bodies: &[String]) -> Vec<String> {
        bodies
            .iter()
            .flat_map(|b| {
                let m: DeliveryMessage = serde_json::from_str(b).unwrap();
                m.deliveries.into_iter().map(|d| d.subscription_id.to_string()).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn a_small_fan_out_is_one_message() {
        let m = message(10, 100, 100);
        let bodies = split(&m).unwrap();
        assert_eq!(bodies.len(), 1);
        assert_eq!(ids_in(&bodies).len(), 10);
    }

    #[test]
    fn a_large_fan_out_is_split_with_every_delivery_once_and_each_message_in_bounds() {
        let m = message(250, 2_000, 10_000);
        let bodies = split(&m).unwrap();
        assert!(bodies.len() > 1);
        let budget = MAX_MESSAGE_BYTES - attribute_bytes("orders.created") - RESERVED_BYTES;
        assert!(bodies.iter().all(|b| b.len() <= budget));
        let ids = ids_in(&bodies);
        assert_eq!(ids.len(), 250);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 250);
        let expected: Vec<String> = m.deliveries.iter().map(|d| d.subscription_id.to_string()).collect();
        assert_eq!(ids, expected, "in order");
    }

    #[test]
    fn the_room_kept_free_holds_what_a_re_enqueued_delivery_gathers_at_worst() {
        use gateway_core::model::{Attempt, AttemptResult, DeliveryMode, DeliveryPolicy, MAX_HISTORY};
        // One delivery as the dispatcher re-enqueues it at its worst: full history, longest errors.
        let m = message(1, 2_000, 10);
        let mut grown = m.deliveries[0].clone();
        let error = "é".repeat(gateway_core::dispatch::MAX_ERROR_BYTES);
        grown.last_error = Some(gateway_core::dispatch::truncated(&error, gateway_core::dispatch::MAX_ERROR_BYTES));
        grown.generation = u32::MAX;
        grown.redriven_at = Some(chrono::Utc::now());
        grown.policy = DeliveryPolicy {
            mode: DeliveryMode::Sync,
            max_attempts: Some(185),
            max_age_seconds: Some(86_400),
            timeout_seconds: Some(*gateway_core::delivery::TIMEOUT_SECONDS.end()),
        };
        grown.history = (0..MAX_HISTORY as u32)
            .map(|n| Attempt {
                generation: u32::MAX,
                number: 185 - n,
                started_at: chrono::Utc::now(),
                duration_ms: u64::MAX,
                result: AttemptResult::Failed,
                error: Some(gateway_core::dispatch::truncated(&error, gateway_core::dispatch::MAX_ATTEMPT_ERROR_BYTES)),
                request_id: Some("c2a6f2ae-7dbb-4d22-8782-d0485c9877e2".into()),
            })
            .collect();
        let before = json(&m).unwrap().len();
        let after = json(&m.accepted_with(vec![grown])).unwrap().len();
        assert!(after - before <= RESERVED_BYTES, "{} bytes gathered, {RESERVED_BYTES} kept free", after - before);
    }

    #[test]
    fn a_trigger_without_subscriptions_is_still_one_message() {
        let bodies = split(&message(0, 0, 10)).unwrap();
        assert_eq!(bodies.len(), 1);
    }

    #[test]
    fn a_delivery_that_cannot_fit_is_refused_not_dropped() {
        let err = split(&message(1, 10, 300 * 1024)).unwrap_err();
        assert!(matches!(err, Error::PayloadTooLarge(_)), "{err:?}");
    }

    #[test]
    fn batches_hold_at_most_ten_entries_and_256_kib() {
        let small = vec!["x".repeat(1_000); 25];
        let ranges = batches(&small, "e");
        assert_eq!(ranges, vec![0..10, 10..20, 20..25]);
        let big = vec!["x".repeat(100_000); 5];
        let ranges = batches(&big, "e");
        assert_eq!(ranges, vec![0..2, 2..4, 4..5]);
    }
}
