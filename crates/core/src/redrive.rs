//! Redrive: put failed deliveries back to pending as a new series of attempts, once a bug is
//! fixed. A redrive honours the subscription as it is now (its function, metadata and delivery
//! policy; not its filter: the trigger was matched when it came), and never touches a delivery
//! that is not failed, so redriving twice while the first redrive is pending runs it once.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Error, Result, Violation};
use crate::ids::{EventId, SubscriptionId};
use crate::model::{Delivery, DeliveryStatus, Subscription};
use crate::ports::{Clock, DeliveryRedrive, SubscriptionStore};

/// The most deliveries one request redrives; the answer says when more are left (`more`), and
/// the same request goes on from there, since those redriven are no longer failed.
pub const MAX_REDRIVE: u32 = 500;

/// How long one request goes on starting redrives: past it, it answers with what it did and
/// `more`, and the same request goes on from there. Each redrive is a few store and queue calls,
/// so 500 of them can outlast the 10 s the cloud's trigger function has; at least one is always
/// made, so a repeated request always progresses.
pub const REDRIVE_TIME_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// The answer to a redrive (202): how many deliveries are pending again, and why any failed
/// delivery found was not.
#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedriveReceipt {
    pub redriven: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_redriven: Vec<NotRedriven>,
    /// More failed deliveries match than one request redrives (500, or what it could start in
    /// 5 seconds): send it again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotRedriven {
    pub event_id: EventId,
    pub subscription_id: SubscriptionId,
    pub reason: String,
}

/// Redrives the failed deliveries of one trigger (of one subscription only, if given).
pub async fn redrive_trigger(
    deliveries: &dyn DeliveryRedrive,
    subscriptions: &dyn SubscriptionStore,
    clock: &dyn Clock,
    event_id: &EventId,
    subscription: Option<&SubscriptionId>,
) -> Result<RedriveReceipt> {
    let failed = deliveries
        .failed_of_trigger(event_id, subscription)
        .await?
        .ok_or_else(|| Error::NotFound { what: "trigger", id: event_id.to_string() })?;
    redrive_all(deliveries, subscriptions, clock, failed, false, REDRIVE_TIME_BUDGET).await
}

/// Redrives the failed deliveries of one subscription whose trigger was received in
/// `[since, until)`.
pub async fn redrive_subscription(
    deliveries: &dyn DeliveryRedrive,
    subscriptions: &dyn SubscriptionStore,
    clock: &dyn Clock,
    id: &SubscriptionId,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<RedriveReceipt> {
    if since >= until {
        return Err(Error::invalid_body(vec![Violation::new("/until", "must be later than since")]));
    }
    if subscriptions.get_subscription(id).await?.is_none() {
        return Err(Error::NotFound { what: "subscription", id: id.to_string() });
    }
    let mut failed = deliveries.failed_of_subscription(id, since, until, MAX_REDRIVE + 1).await?;
    let more = failed.len() > MAX_REDRIVE as usize;
    failed.truncate(MAX_REDRIVE as usize);
    redrive_all(deliveries, subscriptions, clock, failed, more, REDRIVE_TIME_BUDGET).await
}

async fn redrive_all(
    deliveries: &dyn DeliveryRedrive,
    subscriptions: &dyn SubscriptionStore,
    clock: &dyn Clock,
    failed: Vec<Delivery>,
    more: bool,
    budget: std::time::Duration,
) -> Result<RedriveReceipt> {
    let mut receipt = RedriveReceipt { more, ..Default::default() };
    let mut current: Vec<(SubscriptionId, Option<Subscription>)> = Vec::new();
    let started = std::time::Instant::now();
    for (i, delivery) in failed.into_iter().enumerate() {
        if i > 0 && started.elapsed() >= budget {
            receipt.more = true;
            break;
        }
        let subscription = match current.iter().find(|(id, _)| *id == delivery.subscription_id) {
            Some((_, found)) => found.clone(),
            None => {
                let found = subscriptions.get_subscription(&delivery.subscription_id).await?;
                current.push((delivery.subscription_id, found.clone()));
                found
            }
        };
        let Some(subscription) = subscription else {
            receipt.not_redriven.push(NotRedriven {
                event_id: delivery.event_id,
                subscription_id: delivery.subscription_id,
                reason: "its subscription was deleted".into(),
            });
            continue;
        };
        match deliveries.redrive(&next_series(&delivery, &subscription, clock.now())).await {
            Ok(true) => receipt.redriven += 1,
            // Not redriven: another redrive (or the worker) got there first; nothing to report.
            Ok(false) => {}
            // The store refuses this one delivery (on AWS: its payload was not kept): say why,
            // and go on with the others rather than fail the ones already redriven.
            Err(Error::InvalidInput { violations, .. }) => receipt.not_redriven.push(NotRedriven {
                event_id: delivery.event_id,
                subscription_id: delivery.subscription_id,
                reason: violations.into_iter().map(|v| v.message).collect::<Vec<_>>().join("; "),
            }),
            Err(other) => return Err(other),
        }
    }
    Ok(receipt)
}

/// `failed` as a new series: pending, no attempt yet, the next generation, with the
/// subscription's function, metadata and policy as they are now.
pub fn next_series(failed: &Delivery, subscription: &Subscription, now: DateTime<Utc>) -> Delivery {
    Delivery {
        status: DeliveryStatus::Pending,
        attempts: 0,
        generation: failed.generation + 1,
        redriven_at: Some(now),
        updated_at: now,
        function_id: subscription.function_id.clone(),
        metadata: subscription.metadata.clone(),
        policy: subscription.delivery,
        format: subscription.format,
        // Lambda's report was of the old series.
        reported: None,
        ..failed.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::memory::{FixedClock, MemoryStore};
    use crate::model::DeliveryMode;
    use crate::ports::{
        Attempted, DeliveryLog, DeliveryOutbox, IdSource, SubscriptionStore, TriggerAcceptor, UlidSource,
    };
    use crate::{fixtures, trigger, FunctionId};

    /// A store holding one trigger of `orders.created` whose one delivery, to fn-a, failed.
    async fn failed_delivery(clock: &FixedClock) -> (MemoryStore, Subscription, EventId) {
        let store = MemoryStore::new();
        let definition = fixtures::definition("orders.created");
        crate::ports::EventStore::create_event(&store, &definition).await.unwrap();
        let sub = fixtures::subscription(&definition.name, "fn-a", Default::default());
        store.create_subscription(&sub).await.unwrap();
        let t = trigger::accepted_trigger(
            &definition,
            &[std::sync::Arc::new(sub.clone())],
            b"{}".to_vec(),
            clock.now(),
            &UlidSource,
        );
        store.accept(&t, None).await.unwrap();
        let due = store.claim_due(clock.now(), 10, Duration::from_secs(30)).await.unwrap().remove(0);
        let failed = Delivery {
            status: DeliveryStatus::Failed,
            attempts: 8,
            last_error: Some("boom".into()),
            ..due.delivery.clone()
        };
        store.record_attempt(&due, &Attempted { delivery: failed, retry: None }).await.unwrap();
        (store, sub, t.event_id)
    }

    #[tokio::test]
    async fn a_redrive_out_of_time_stops_after_what_it_did_and_says_there_is_more() {
        // GIVEN two failed deliveries to redrive
        let clock = FixedClock::at("2026-12-02T10:00:00Z".parse().unwrap());
        let (store, sub, event_id) = failed_delivery(&clock).await;
        let other = fixtures::subscription(&sub.event, "fn-b", Default::default());
        store.create_subscription(&other).await.unwrap();
        let second = Delivery {
            subscription_id: other.subscription_id,
            function_id: other.function_id.clone(),
            ..store.failed_of_trigger(&event_id, None).await.unwrap().unwrap()[0].clone()
        };
        let failed = vec![store.failed_of_trigger(&event_id, None).await.unwrap().unwrap()[0].clone(), second];

        // WHEN a request with no time left redrives them
        let receipt = redrive_all(&store, &store, &clock, failed, false, Duration::ZERO).await.unwrap();

        // THEN it made one (progress is always made) and says to come again
        assert_eq!((receipt.redriven, receipt.more), (1, true));
    }

    #[tokio::test]
    async fn a_redrive_runs_the_failed_delivery_again_under_the_subscription_as_it_is_now() {
        let clock = FixedClock::at("2026-12-02T10:00:00Z".parse().unwrap());
        let (store, sub, event_id) = failed_delivery(&clock).await;
        // The subscription was fixed meanwhile: another function, a sync policy.
        let policy =
            crate::model::DeliveryPolicy { mode: DeliveryMode::Sync, max_attempts: Some(2), ..Default::default() };
        let fixed = Subscription {
            function_id: FunctionId::parse("fn-a-fixed").unwrap(),
            delivery: policy,
            version: sub.version.next(),
            ..sub.clone()
        };
        store.replace_subscription(&fixed).await.unwrap();
        clock.advance(Duration::from_secs(3600));

        let receipt = redrive_trigger(&store, &store, &clock, &event_id, None).await.unwrap();
        assert_eq!(receipt, RedriveReceipt { redriven: 1, ..Default::default() });
        let again = redrive_trigger(&store, &store, &clock, &event_id, None).await.unwrap();
        assert_eq!(again.redriven, 0, "twice while pending: once");

        let due = store.claim_due(clock.now(), 10, Duration::from_secs(30)).await.unwrap();
        assert_eq!(due.len(), 1);
        let d = &due[0].delivery;
        assert_eq!((d.function_id.as_str(), d.policy, d.generation, d.attempts), ("fn-a-fixed", policy, 1, 0));
        assert_eq!(d.redriven_at, Some(clock.now()));
        assert_eq!(d.series_started_at(), clock.now(), "maxAge counts from the redrive");
    }

    #[tokio::test]
    async fn a_redrive_by_subscription_takes_a_window_and_reports_what_it_could_not_do() {
        let clock = FixedClock::at("2026-12-02T10:00:00Z".parse().unwrap());
        let (store, sub, event_id) = failed_delivery(&clock).await;
        let (before, after) = (clock.now() - chrono::Duration::hours(1), clock.now() + chrono::Duration::hours(1));
        let bad = redrive_subscription(&store, &store, &clock, &sub.subscription_id, after, before).await;
        assert!(
            matches!(bad, Err(Error::InvalidInput { ref violations, .. }) if violations[0].pointer == "/until"),
            "{bad:?}"
        );
        let nobody = redrive_subscription(&store, &store, &clock, &UlidSource.subscription_id(), before, after).await;
        assert!(matches!(nobody, Err(Error::NotFound { what: "subscription", .. })));
        let outside = redrive_subscription(
            &store,
            &store,
            &clock,
            &sub.subscription_id,
            after,
            after + chrono::Duration::hours(1),
        )
        .await;
        assert_eq!(outside.unwrap().redriven, 0, "nothing failed in that window");
        let unknown = redrive_trigger(&store, &store, &clock, &UlidSource.event_id(), None).await;
        assert!(matches!(unknown, Err(Error::NotFound { what: "trigger", .. })));

        // Its subscription deleted: the delivery cannot be redriven, and the answer says why.
        store.delete_subscription(&sub.subscription_id, None).await.unwrap();
        let receipt = redrive_trigger(&store, &store, &clock, &event_id, None).await.unwrap();
        assert_eq!(receipt.redriven, 0);
        assert_eq!(receipt.not_redriven[0].reason, "its subscription was deleted");
        let log = store.deliveries_of_trigger(&event_id).await.unwrap().unwrap();
        assert_eq!(log[0].status, DeliveryStatus::Failed, "left failed");
    }

    /// The memory store, refusing to redrive one subscription's deliveries as the DynamoDB store
    /// refuses a failure whose payload it did not keep.
    struct Refusing(MemoryStore, SubscriptionId);

    #[async_trait::async_trait]
    impl DeliveryRedrive for Refusing {
        async fn failed_of_trigger(&self, e: &EventId, s: Option<&SubscriptionId>) -> Result<Option<Vec<Delivery>>> {
            self.0.failed_of_trigger(e, s).await
        }
        async fn failed_of_subscription(
            &self,
            s: &SubscriptionId,
            since: DateTime<Utc>,
            until: DateTime<Utc>,
            limit: u32,
        ) -> Result<Vec<Delivery>> {
            self.0.failed_of_subscription(s, since, until, limit).await
        }
        async fn redrive(&self, next: &Delivery) -> Result<bool> {
            if next.subscription_id == self.1 {
                return Err(Error::invalid_body(vec![Violation::new("", "its payload was not kept")]));
            }
            self.0.redrive(next).await
        }
    }

    #[tokio::test]
    async fn a_delivery_the_store_refuses_is_reported_and_the_others_are_still_redriven() {
        let clock = FixedClock::at("2026-12-02T10:00:00Z".parse().unwrap());
        let store = MemoryStore::new();
        let definition = fixtures::definition("orders.created");
        crate::ports::EventStore::create_event(&store, &definition).await.unwrap();
        let (a, b) = (
            fixtures::subscription(&definition.name, "fn-a", Default::default()),
            fixtures::subscription(&definition.name, "fn-b", Default::default()),
        );
        store.create_subscription(&a).await.unwrap();
        store.create_subscription(&b).await.unwrap();
        let t = trigger::accepted_trigger(
            &definition,
            &[std::sync::Arc::new(a.clone()), std::sync::Arc::new(b.clone())],
            b"{}".to_vec(),
            clock.now(),
            &UlidSource,
        );
        store.accept(&t, None).await.unwrap();
        for due in store.claim_due(clock.now(), 10, Duration::from_secs(30)).await.unwrap() {
            let failed = Delivery { status: DeliveryStatus::Failed, attempts: 1, ..due.delivery.clone() };
            store.record_attempt(&due, &Attempted { delivery: failed, retry: None }).await.unwrap();
        }
        let refusing = Refusing(store.clone(), a.subscription_id);
        let receipt = redrive_trigger(&refusing, &store, &clock, &t.event_id, None).await.unwrap();
        assert_eq!(receipt.redriven, 1, "b is redriven whatever a's store says");
        assert_eq!(receipt.not_redriven.len(), 1);
        assert_eq!(
            (receipt.not_redriven[0].subscription_id, receipt.not_redriven[0].reason.as_str()),
            (a.subscription_id, "its payload was not kept")
        );
    }
}
