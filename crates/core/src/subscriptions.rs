//! Use cases on subscriptions: subscribe a function to an event, read, list, replace, unsubscribe.

use crate::allowlist::FunctionAllowlist;
use crate::delivery;
use crate::error::{Error, Result, Violation};
use crate::events::check_version;
use crate::ids::{EventName, SubscriptionId, Version};
use crate::model::{DeliveryPolicy, Subscription, SubscriptionDraft};
use crate::page::{Page, PageRequest};
use crate::pattern::EventPattern;
use crate::ports::{Clock, IdSource, SubscriptionStore};

pub async fn subscribe(
    store: &dyn SubscriptionStore,
    clock: &dyn Clock,
    ids: &dyn IdSource,
    allowlist: &FunctionAllowlist,
    draft: SubscriptionDraft,
) -> Result<Subscription> {
    let Some(event) = draft.event.clone() else {
        return Err(Error::invalid_body(vec![Violation::new("/event", "event is required")]));
    };
    let (filter, delivery) = check(&draft)?;
    check_allowed(allowlist, &draft)?;
    let now = clock.now();
    let subscription = Subscription {
        subscription_id: ids.subscription_id(),
        event,
        function_id: draft.function_id,
        metadata: draft.metadata.unwrap_or_default().into(),
        filter,
        delivery,
        format: draft.format.unwrap_or_default(),
        created_at: now,
        updated_at: now,
        version: Version::FIRST,
    };
    store.create_subscription(&subscription).await?;
    Ok(subscription)
}

pub async fn get_subscription(store: &dyn SubscriptionStore, id: &SubscriptionId) -> Result<Subscription> {
    store.get_subscription(id).await?.ok_or_else(|| not_found(id))
}

pub async fn list_subscriptions(
    store: &dyn SubscriptionStore,
    event: Option<&EventName>,
    page: &PageRequest,
) -> Result<Page<Subscription>> {
    store.list_subscriptions(event, page).await
}

pub async fn replace_subscription(
    store: &dyn SubscriptionStore,
    clock: &dyn Clock,
    allowlist: &FunctionAllowlist,
    id: &SubscriptionId,
    draft: SubscriptionDraft,
    if_match: Option<Version>,
) -> Result<Subscription> {
    let (filter, delivery) = check(&draft)?;
    check_allowed(allowlist, &draft)?;
    let current = store.get_subscription(id).await?.ok_or_else(|| not_found(id))?;
    if let Some(event) = &draft.event {
        if *event != current.event {
            return Err(Error::invalid_body(vec![Violation::new(
                "/event",
                format!("subscription {id} is to '{}'; a subscription cannot move to another event", current.event),
            )]));
        }
    }
    check_version("subscription", &id.to_string(), current.version, if_match)?;
    let next = Subscription {
        function_id: draft.function_id,
        metadata: draft.metadata.unwrap_or_default().into(),
        filter,
        delivery,
        // A replace states the whole subscription: a format left out is the default again.
        format: draft.format.unwrap_or_default(),
        updated_at: clock.now(),
        version: current.version.next(),
        ..current
    };
    store.replace_subscription(&next).await?;
    Ok(next)
}

pub async fn unsubscribe(store: &dyn SubscriptionStore, id: &SubscriptionId, if_match: Option<Version>) -> Result<()> {
    store.delete_subscription(id, if_match).await
}

/// The draft's filter, parsed, and its delivery policy, or every problem with either (422).
fn check(draft: &SubscriptionDraft) -> Result<(Option<EventPattern>, DeliveryPolicy)> {
    let mut violations = Vec::new();
    let filter = match &draft.filter {
        None => None,
        Some(pattern) => match EventPattern::parse(pattern) {
            Ok(pattern) => Some(pattern),
            Err(found) => {
                violations.extend(found.into_iter().map(|v| v.at("/filter")));
                None
            }
        },
    };
    let delivery = draft.delivery.unwrap_or_default();
    violations.extend(delivery::check_policy(&delivery));
    if violations.is_empty() {
        Ok((filter, delivery))
    } else {
        Err(Error::invalid_body(violations))
    }
}

fn check_allowed(allowlist: &FunctionAllowlist, draft: &SubscriptionDraft) -> Result<()> {
    if allowlist.allows(&draft.function_id) {
        Ok(())
    } else {
        Err(Error::FunctionNotAllowed { function: draft.function_id.to_string(), allowlist: allowlist.describe() })
    }
}

fn not_found(id: &SubscriptionId) -> Error {
    Error::NotFound { what: "subscription", id: id.to_string() }
}
