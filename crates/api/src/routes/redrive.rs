//! Redrive: failed deliveries back to pending as a new series of attempts, by trigger or by
//! subscription and time window. Served with the triggers (`RouteGroup::Triggers`): like a
//! trigger, a redrive hands deliveries to the delivery queue.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use gateway_core::redrive::{self, RedriveReceipt};
use gateway_core::{Error, EventId, SubscriptionId, Violation};
use serde::Deserialize;

use crate::doc::{SubscriptionRedrive, TriggerRedrive};
use crate::extract::{body_bytes, date_time, json_body, path_param};
use crate::problem::{ApiError, Problem, PROBLEM_JSON};
use crate::SharedGateway;

pub fn routes() -> Router<SharedGateway> {
    Router::new()
        .route("/deliveries/{eventId}/redrive", post(redrive_trigger))
        .route("/subscriptions/{id}/redrive", post(redrive_subscription))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(redrive_trigger, redrive_subscription))]
pub struct Doc;

/// `POST /deliveries/{eventId}/redrive`'s body; no body at all means the same as `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TriggerRedriveBody {
    #[serde(default)]
    subscription_id: Option<SubscriptionId>,
}

/// `POST /subscriptions/{id}/redrive`'s body. The times are read here rather than by serde, so
/// that what is taken is exactly the document's pattern, each refusal at its own pointer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WindowBody {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
}

/// Redrive a trigger's failed deliveries, or only its delivery to `subscriptionId`.
///
/// Each failed delivery becomes pending again as a new series of attempts: `generation` one
/// more, `attempts` from 0, `redrivenAt` now, and the subscription as it is now (its function,
/// metadata and `delivery` policy; not its `filter`: the trigger was matched when it came). A
/// delivery that is not failed (`pending`, `invoked`, `delivered`) is never redriven, so a second
/// redrive while the first is pending redrives nothing (`redriven: 0`). A failed delivery whose
/// subscription was deleted stays failed, listed in `notRedriven` with why.
///
/// The body is optional: none, or `{}`, redrives every failed delivery of the trigger.
#[utoipa::path(post, path = "/deliveries/{eventId}/redrive", tag = "triggers",
    params(("eventId" = EventId, Path)),
    request_body(content = Option<TriggerRedrive>, content_type = "application/json", description = "Optional: `{\"subscriptionId\": ...}` to redrive one delivery only"),
    responses(
        (status = 202, description = "Redriven: `redriven` deliveries are pending again and will run under their subscription's current policy", body = RedriveReceipt,
            links(("deliveries" = (operation_id = "deliveries_of_trigger", parameters(("eventId" = "$request.path.eventId")))))),
        (status = 400, description = "Invalid id, or malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such trigger (or forgotten after the retention), or the trigger has no delivery to `subscriptionId`", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Invalid fields", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn redrive_trigger(
    State(g): State<SharedGateway>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let event_id = path_param(id, EventId::parse)?;
    let bytes = body_bytes(body, g.max_payload_bytes)?;
    // An empty body is no body, whatever its Content-Type says: a bare `POST` redrives all.
    let request: TriggerRedriveBody = if bytes.is_empty() {
        TriggerRedriveBody::default()
    } else {
        json_body(&headers, Ok(bytes), g.max_payload_bytes)?
    };
    let subscription = request.subscription_id;
    let receipt = redrive::redrive_trigger(
        g.redrive.as_ref(),
        g.subscriptions.as_ref(),
        g.clock.as_ref(),
        &event_id,
        subscription.as_ref(),
    )
    .await?;
    if let Some(subscription) = subscription {
        if receipt == RedriveReceipt::default() {
            // Nothing failed for that subscription: tell a delivery that is not failed from one
            // that never was (a misspelt id would otherwise look like a redrive with no work).
            must_have_delivery(&g, &event_id, &subscription).await?;
        }
    }
    Ok((StatusCode::ACCEPTED, Json(receipt)).into_response())
}

async fn must_have_delivery(
    g: &SharedGateway,
    event_id: &EventId,
    subscription: &SubscriptionId,
) -> Result<(), ApiError> {
    let deliveries = g.deliveries.deliveries_of_trigger(event_id).await?.unwrap_or_default();
    if deliveries.iter().any(|d| d.subscription_id == *subscription) {
        Ok(())
    } else {
        Err(Error::NotFound { what: "delivery of the trigger to subscription", id: subscription.to_string() }.into())
    }
}

/// Redrive a subscription's failed deliveries of the triggers received in `[since, until)`.
///
/// As for one trigger: each failed delivery becomes pending again as a new series under the
/// subscription as it is now, and no other delivery is touched. `until` defaults to now; `since`
/// must be earlier than `until` (422 at `/until`; at `/since` when `until` is left to default).
/// One request redrives at most 500 deliveries, oldest trigger first; `more: true` says more are
/// left, and the same request again goes on from there (those redriven are no longer failed).
#[utoipa::path(post, path = "/subscriptions/{id}/redrive", tag = "subscriptions",
    params(("id" = SubscriptionId, Path)),
    request_body(content = SubscriptionRedrive, content_type = "application/json"),
    responses(
        (status = 202, description = "Redriven: `redriven` deliveries are pending again and will run under the subscription's current policy", body = RedriveReceipt),
        (status = 400, description = "Invalid id, or malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such subscription", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Invalid fields, or `since` not earlier than `until` (or than now, when `until` is left out)", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn redrive_subscription(
    State(g): State<SharedGateway>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = path_param(id, SubscriptionId::parse)?;
    let window: WindowBody = json_body(&headers, body, g.max_payload_bytes)?;
    let (since, until) = window.read(g.clock.now())?;
    let receipt = redrive::redrive_subscription(
        g.redrive.as_ref(),
        g.subscriptions.as_ref(),
        g.clock.as_ref(),
        &id,
        since,
        until,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(receipt)).into_response())
}

impl WindowBody {
    /// `[since, until)`, `until` defaulting to `now`; every problem at its pointer (422).
    fn read(&self, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), Error> {
        let mut violations = Vec::new();
        let mut time = |pointer: &str, raw: Option<&str>| {
            let parsed = raw.and_then(date_time);
            if let (Some(raw), None) = (raw, parsed) {
                violations.push(Violation::new(
                    pointer,
                    format!(
                        "'{}' is not an RFC 3339 date-time with an offset, such as 2026-12-02T10:00:00Z",
                        raw.chars().take(64).collect::<String>()
                    ),
                ));
            }
            parsed
        };
        let since = time("/since", self.since.as_deref());
        let until = time("/until", self.until.as_deref());
        if self.since.is_none() {
            violations.push(Violation::new("/since", "since is required: the earliest trigger to redrive"));
        }
        let (Some(since), true) = (since, violations.is_empty()) else {
            return Err(Error::invalid_body(violations));
        };
        match until {
            Some(until) => Ok((since, until)),
            // The use case would put this at /until, a field the client did not send.
            None if since >= now => Err(Error::invalid_body(vec![Violation::new(
                "/since",
                "must be earlier than now, the default of until",
            )])),
            None => Ok((since, now)),
        }
    }
}
