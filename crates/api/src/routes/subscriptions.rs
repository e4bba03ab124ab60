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
use crate::doc::{NewSubscription, SubscriptionReplacement};
use crate::extract::{if_match, json_body_with_objects, path_param, path_value, query, IfMatchHeader};
use crate::problem::{ApiError, Problem, PROBLEM_JSON};
use crate::SharedGateway;

/// The draft's struct-typed field (see [`json_body_with_objects`]).
const POLICY: &[&str] = &["delivery"];

pub fn routes() -> Router<SharedGateway> {
    Router::new()
        .route("/subscriptions", post(create_subscription).get(list_subscriptions))
        .route("/subscriptions/{id}", get(get_subscription).put(replace_subscription).delete(delete_subscription))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(create_subscription, list_subscriptions, get_subscription, replace_subscription, delete_subscription))]
pub struct Doc;

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
struct SubscriptionPage {
    items: Vec<Subscription>,
    /// The `cursor` of the next page; null on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// Subscribe a function to an event.
#[utoipa::path(post, path = "/subscriptions", tag = "subscriptions", request_body = NewSubscription,
    responses(
        (status = 201, description = "Subscribed", body = Subscription,
            headers(("ETag" = String, description = "Its version, for If-Match"), ("Location" = String, description = "`/subscriptions/{subscriptionId}`")),
            links(
                ("get" = (operation_id = "get_subscription", parameters(("id" = "$response.body#/subscriptionId")))),
                ("replace" = (operation_id = "replace_subscription", parameters(("id" = "$response.body#/subscriptionId"), ("If-Match" = "$response.header.ETag")))),
                ("delete" = (operation_id = "delete_subscription", parameters(("id" = "$response.body#/subscriptionId"), ("If-Match" = "$response.header.ETag")))),
                ("trigger" = (operation_id = "trigger_event", parameters(("name" = "$response.body#/event")))),
                ("subscriptions" = (operation_id = "list_subscriptions", parameters(("event" = "$response.body#/event")))),
                ("redrive" = (operation_id = "redrive_subscription", parameters(("id" = "$response.body#/subscriptionId")))),
            )),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "Function outside the allowlist", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such event", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Invalid fields", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn create_subscription(
    State(g): State<SharedGateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let draft: SubscriptionDraft = json_body_with_objects(&headers, body, g.max_payload_bytes, POLICY)?;
    let sub = subscriptions::subscribe(g.subscriptions.as_ref(), g.clock.as_ref(), g.ids.as_ref(), &g.allowlist, draft)
        .await?;
    let location = format!("/subscriptions/{}", sub.subscription_id);
    Ok(versioned(StatusCode::CREATED, sub.version, Some(location), &sub))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this event's subscriptions (404 if there is no such event).
    #[param(value_type = Option<EventName>, nullable = false)]
    event: Option<String>,
    /// Items per page, 1 to 100 (default 50).
    #[param(nullable = false, minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `nextCursor` of the previous page. Only a cursor this API issued for the same list
    /// is valid (400 `invalid-cursor` otherwise): it is opaque, and no pattern can tell which.
    #[param(nullable = false, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// List subscriptions, oldest first, optionally of one event.
///
/// With `event`, an event that does not exist is 404 (as for its deliveries), so that a
/// misspelt name is not mistaken for an event without subscriptions.
#[utoipa::path(get, path = "/subscriptions", tag = "subscriptions", params(ListQuery),
    responses(
        (status = 200, body = SubscriptionPage),
        (status = 400, description = "Invalid event name, limit or cursor", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such event", body = Problem, content_type = PROBLEM_JSON),
    ))]
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
#[utoipa::path(get, path = "/subscriptions/{id}", tag = "subscriptions", params(("id" = SubscriptionId, Path)),
    responses(
        (status = 200, body = Subscription, headers(("ETag" = String, description = "Its version, for If-Match")),
            links(
                ("replace" = (operation_id = "replace_subscription", parameters(("id" = "$response.body#/subscriptionId"), ("If-Match" = "$response.header.ETag")))),
                ("delete" = (operation_id = "delete_subscription", parameters(("id" = "$response.body#/subscriptionId"), ("If-Match" = "$response.header.ETag")))),
            )),
        (status = 400, description = "Invalid id", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such subscription", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn get_subscription(
    State(g): State<SharedGateway>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_param(id, SubscriptionId::parse)?;
    let sub = subscriptions::get_subscription(g.subscriptions.as_ref(), &id).await?;
    Ok(versioned(StatusCode::OK, sub.version, None, &sub))
}

/// Replace a subscription's function and metadata; send `If-Match` to avoid lost updates.
#[utoipa::path(put, path = "/subscriptions/{id}", tag = "subscriptions", request_body = SubscriptionReplacement,
    params(("id" = SubscriptionId, Path), IfMatchHeader),
    responses(
        (status = 200, body = Subscription, headers(("ETag" = String, description = "Its new version")),
            links(
                ("get" = (operation_id = "get_subscription", parameters(("id" = "$response.body#/subscriptionId")))),
                ("replace" = (operation_id = "replace_subscription", parameters(("id" = "$response.body#/subscriptionId"), ("If-Match" = "$response.header.ETag")))),
                ("delete" = (operation_id = "delete_subscription", parameters(("id" = "$response.body#/subscriptionId"), ("If-Match" = "$response.header.ETag")))),
            )),
        (status = 400, description = "Invalid id or If-Match, or malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "Function outside the allowlist", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such subscription", body = Problem, content_type = PROBLEM_JSON),
        (status = 412, description = "If-Match names another version; `currentVersion` says which is current", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Invalid fields, or another event than the subscription's", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn replace_subscription(
    State(g): State<SharedGateway>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = path_param(id, SubscriptionId::parse)?;
    let expected = if_match(&headers)?;
    let draft: SubscriptionDraft = json_body_with_objects(&headers, body, g.max_payload_bytes, POLICY)?;
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
    params(("id" = SubscriptionId, Path), IfMatchHeader),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id or If-Match", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such subscription", body = Problem, content_type = PROBLEM_JSON),
        (status = 412, description = "If-Match names another version", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn delete_subscription(
    State(g): State<SharedGateway>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_param(id, SubscriptionId::parse)?;
    subscriptions::unsubscribe(g.subscriptions.as_ref(), &id, if_match(&headers)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
