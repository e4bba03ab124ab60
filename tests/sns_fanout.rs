//! The SNS publisher against moto_server: a trigger's deliveries reach an SQS queue subscribed
//! to the topic with raw message delivery, each exactly once, with the `event` attribute.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use end_to_end::moto::{delete, receive, subscribed_queue, topic, Moto};
use gateway_core::fixtures;
use gateway_core::message::DeliveryMessage;
use gateway_core::ports::UlidSource;
use gateway_core::trigger::accepted_trigger;
use gateway_core::{Metadata, Subscription, SubscriptionId, Trigger};
use gateway_sns::{SnsPublisher, TriggerPublisher, EVENT_ATTRIBUTE};
use serde_json::json;

fn trigger(subscriptions: usize, metadata_bytes: usize, payload_bytes: usize) -> Trigger {
    let definition = fixtures::definition("orders.created");
    let metadata = Metadata::from_iter([("note".to_owned(), json!("m".repeat(metadata_bytes)))]);
    let subs: Vec<std::sync::Arc<Subscription>> = (0..subscriptions)
        .map(|i| fixtures::subscription(&definition.name, &format!("fn-{i}"), metadata.clone()).into())
        .collect();
    let payload = json!({"orderId": "o-1", "blob": "p".repeat(payload_bytes)}).to_string();
    accepted_trigger(&definition, &subs, payload.into_bytes(), Utc::now(), &UlidSource)
}

/// Publishes `trigger` and reads the queue until every delivery arrived; returns how many
/// messages carried them. Fails on a delivery seen twice or a message without the attribute.
async fn publish_and_collect(trigger: &Trigger) -> usize {
    // GIVEN a topic with the delivery queue subscribed to it (raw message delivery)
    let moto = Moto::start("fanout");
    let config = moto.sdk_config().await;
    let (sns, sqs) = (aws_sdk_sns::Client::new(&config), aws_sdk_sqs::Client::new(&config));
    let topic_arn = topic(&sns, "gateway-deliveries").await;
    let queue = subscribed_queue(&sns, &sqs, &topic_arn, "deliveries").await;

    // WHEN the trigger is published
    SnsPublisher::new(sns, topic_arn).publish(trigger).await.expect("published");

    // THEN the queue holds every delivery exactly once
    let mut seen: HashMap<SubscriptionId, usize> = HashMap::new();
    let mut messages = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < trigger.deliveries.len() {
        assert!(Instant::now() < deadline, "only {} deliveries arrived", seen.len());
        for m in receive(&sqs, &queue, 1).await {
            let attribute =
                m.message_attributes.as_ref().and_then(|a| a.get(EVENT_ATTRIBUTE)).and_then(|v| v.string_value.clone());
            assert_eq!(attribute.as_deref(), Some("orders.created"), "the event attribute");
            let body: DeliveryMessage =
                serde_json::from_str(m.body.as_deref().unwrap()).expect("a raw delivery message");
            assert_eq!(body.event_id, trigger.event_id);
            assert_eq!(body.payload().unwrap(), trigger.payload, "the payload, intact");
            for d in &body.deliveries {
                let expected = trigger
                    .deliveries
                    .iter()
                    .find(|t| t.subscription_id == d.subscription_id)
                    .expect("a delivery of this trigger");
                assert_eq!((&d.function_id, &d.metadata, d.attempts), (&expected.function_id, &expected.metadata, 0));
                *seen.entry(d.subscription_id).or_default() += 1;
            }
            messages += 1;
            delete(&sqs, &queue, &m).await;
        }
    }
    // Nothing more arrives: no delivery twice.
    for m in receive(&sqs, &queue, 1).await {
        let body: DeliveryMessage = serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
        for d in body.deliveries {
            *seen.entry(d.subscription_id).or_default() += 1;
        }
    }
    assert!(seen.values().all(|n| *n == 1), "a delivery arrived twice");
    assert_eq!(seen.len(), trigger.deliveries.len());
    messages
}

#[tokio::test]
async fn a_fan_out_of_one_is_one_message() {
    assert_eq!(publish_and_collect(&trigger(1, 50, 100)).await, 1);
}

#[tokio::test]
async fn a_fan_out_of_ten_is_one_message() {
    assert_eq!(publish_and_collect(&trigger(10, 200, 1_000)).await, 1);
}

#[tokio::test]
async fn a_fan_out_of_250_too_large_for_one_message_is_split_and_every_delivery_arrives_once() {
    // 250 deliveries with 3 KB of metadata each: about 750 KB, three 256 KiB messages at least.
    let messages = publish_and_collect(&trigger(250, 3_000, 20_000)).await;
    assert!(messages >= 3, "split into {messages} messages");
}

#[tokio::test]
async fn a_fan_out_of_250_small_deliveries_still_fits_one_message() {
    assert_eq!(publish_and_collect(&trigger(250, 10, 100)).await, 1);
}
