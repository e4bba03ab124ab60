//! `/subscriptions`: functions subscribed to events.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gateway_core::{subscriptions, EventName, Page, PageRequest, Subscription, SubscriptionDraft, SubscriptionId};
use serde::Deserialize;
use utoipa::IntoParams;

use super::versioned;
use crate::extract::{if_match, json_body, path_param, path_value, query};
use crate::problem::{ApiError, Problem, PROBLEM_JSON};
use crate::SharedGateway;

pub fn routes() -> Router<SharedGateway> {
    Router::new()
        .route("/subscriptions", post(create_subscription).get(list_subscriptions))
        .route("/subscriptions/{id}", get(get_subscription).put(replace_subscription).delete(delete_subscription))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(create_subscription, list_subscriptions, get_subscription, replace_subscription, delete_subscription))]
pub struct Doc;

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct SubscriptionPage {
    items: Vec<Subscription>,
    next_cursor: Option<String>,
}

/// Subscribe a function to an event.
#[utoipa::path(post, path = "/subscriptions", tag = "subscriptions", request_body = SubscriptionDraft,
    responses(
        (status = 201, body = Subscription),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "Function outside the allowlist", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such event", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn create_subscription(
    State(g): State<SharedGateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let draft: SubscriptionDraft = json_body(&headers, body, g.max_payload_bytes)?;
    let sub = subscriptions::subscribe(g.subscriptions.as_ref(), g.clock.as_ref(), g.ids.as_ref(), &g.allowlist, draft)
        .await?;
    let location = format!("/subscriptions/{}", sub.subscription_id);
    Ok(versioned(StatusCode::CREATED, sub.version, Some(location), &sub))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this event's subscriptions.
    event: Option<String>,
    /// Items per page, 1 to 100 (default 50).
    limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// List subscriptions, oldest first, optionally of one event.
///
/// With `event`, an event that does not exist is 404 (as for its deliveries), so that a
/// misspelt name is not mistaken for an event without subscriptions.
#[utoipa::path(get, path = "/subscriptions", tag = "subscriptions", params(ListQuery),
    responses((status = 200, body = SubscriptionPage), (status = 400, body = Problem, content_type = PROBLEM_JSON), (status = 404, body = Problem, content_type = PROBLEM_JSON)))]
async fn list_subscriptions(
    State(g): State<SharedGateway>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Page<Subscription>>, ApiError> {
    let q = query(q)?;
    let event = q.event.as_deref().map(|e| path_value(EventName::parse, e)).transpose()?;
    let page = PageRequest::new(q.limit, q.cursor)?;
    if let Some(event) = &event {
        super::event_must_exist(&g, event).await?;
    }
    Ok(Json(subscriptions::list_subscriptions(g.subscriptions.as_ref(), event.as_ref(), &page).await?))
}

/// Read a subscription.
#[utoipa::path(get, path = "/subscriptions/{id}", tag = "subscriptions", params(("id" = String, Path)),
    responses((status = 200, body = Subscription), (status = 400, body = Problem, content_type = PROBLEM_JSON), (status = 404, body = Problem, content_type = PROBLEM_JSON)))]
async fn get_subscription(
    State(g): State<SharedGateway>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_param(id, SubscriptionId::parse)?;
    let sub = subscriptions::get_subscription(g.subscriptions.as_ref(), &id).await?;
    Ok(versioned(StatusCode::OK, sub.version, None, &sub))
}

/// Replace a subscription's function and metadata; send `If-Match` to avoid lost updates.
#[utoipa::path(put, path = "/subscriptions/{id}", tag = "subscriptions", request_body = SubscriptionDraft,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses(
        (status = 200, body = Subscription),
        (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON),
        (status = 412, body = Problem, content_type = PROBLEM_JSON),
        (status = 422, body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn replace_subscription(
    State(g): State<SharedGateway>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = path_param(id, SubscriptionId::parse)?;
    let expected = if_match(&headers)?;
    let draft: SubscriptionDraft = json_body(&headers, body, g.max_payload_bytes)?;
    let sub = subscriptions::replace_subscription(
        g.subscriptions.as_ref(),
        g.clock.as_ref(),
        &g.allowlist,
        &id,
        draft,
        expected,
    )
    .await?;
    Ok(versioned(StatusCode::OK, sub.version, None, &sub))
}

/// Delete a subscription. Deliveries already accepted for it still run.
#[utoipa::path(delete, path = "/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = Problem, content_type = PROBLEM_JSON), (status = 412, body = Problem, content_type = PROBLEM_JSON)))]
async fn delete_subscription(
    State(g): State<SharedGateway>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_param(id, SubscriptionId::parse)?;
    subscriptions::unsubscribe(g.subscriptions.as_ref(), &id, if_match(&headers)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
