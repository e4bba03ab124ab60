//! `/events`: event definitions.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gateway_core::{events, EventDefinition, EventDraft, EventName, Page};
use serde::Deserialize;
use utoipa::IntoParams;

use super::versioned;
use crate::doc::{EventReplacement, NewEvent};
use crate::extract::{if_match, json_body, path_param, query, IfMatchHeader, PageQuery};
use crate::problem::{ApiError, Problem, PROBLEM_JSON};
use crate::SharedGateway;

pub fn routes() -> Router<SharedGateway> {
    Router::new()
        .route("/events", post(create_event).get(list_events))
        .route("/events/{name}", get(get_event).put(replace_event).delete(delete_event))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(create_event, list_events, get_event, replace_event, delete_event))]
pub struct Doc;

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
struct EventPage {
    items: Vec<EventDefinition>,
    /// The `cursor` of the next page; null on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

fn location(name: &EventName) -> String {
    format!("/events/{name}")
}

/// Define an event.
#[utoipa::path(post, path = "/events", tag = "events", request_body = NewEvent,
    responses(
        (status = 201, description = "Defined", body = EventDefinition,
            headers(("ETag" = String, description = "Its version, for If-Match"), ("Location" = String, description = "`/events/{name}`")),
            links(
                ("get" = (operation_id = "get_event", parameters(("name" = "$response.body#/name")))),
                ("replace" = (operation_id = "replace_event", parameters(("name" = "$response.body#/name"), ("If-Match" = "$response.header.ETag")))),
                ("delete" = (operation_id = "delete_event", parameters(("name" = "$response.body#/name"), ("If-Match" = "$response.header.ETag")))),
                ("subscribe" = (operation_id = "create_subscription", request_body = json!({"event": "$response.body#/name"}))),
                ("add_source" = (operation_id = "create_source", request_body = json!({"event": "$response.body#/name"}))),
                ("subscriptions" = (operation_id = "list_subscriptions", parameters(("event" = "$response.body#/name")))),
                ("trigger" = (operation_id = "trigger_event", parameters(("name" = "$response.body#/name")))),
                ("deliveries" = (operation_id = "deliveries_of_event", parameters(("name" = "$response.body#/name")))),
            )),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "A registered schema its `$ref`s reach was deleted while it was being defined", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "The name is taken", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Invalid fields, a schema that does not compile, a `$ref` to a URI the registry does not hold (at /schema), or a schema or envelope for a dataType that is not JSON", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn create_event(
    State(g): State<SharedGateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let draft: EventDraft = json_body(&headers, body, g.max_payload_bytes)?;
    let event = events::define_event(g.events.as_ref(), g.registry.as_ref(), g.clock.as_ref(), draft).await?;
    Ok(versioned(StatusCode::CREATED, event.version, Some(location(&event.name)), &event))
}

/// List event definitions by name.
#[utoipa::path(get, path = "/events", tag = "events", params(PageQuery),
    responses(
        (status = 200, body = EventPage,
            links(("next" = (operation_id = "list_events", parameters(("cursor" = "$response.body#/nextCursor")))))),
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn list_events(
    State(g): State<SharedGateway>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Page<EventDefinition>>, ApiError> {
    let page = query(q)?.page()?;
    Ok(Json(events::list_events(g.events.as_ref(), &page).await?))
}

/// Read an event definition.
#[utoipa::path(get, path = "/events/{name}", tag = "events", params(("name" = EventName, Path)),
    responses(
        (status = 200, body = EventDefinition, headers(("ETag" = String, description = "Its version, for If-Match")),
            links(
                ("replace" = (operation_id = "replace_event", parameters(("name" = "$response.body#/name"), ("If-Match" = "$response.header.ETag")))),
                ("delete" = (operation_id = "delete_event", parameters(("name" = "$response.body#/name"), ("If-Match" = "$response.header.ETag")))),
            )),
        (status = 400, description = "Invalid name", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such event", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn get_event(
    State(g): State<SharedGateway>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = path_param(name, EventName::parse)?;
    let event = events::get_event(g.events.as_ref(), &name).await?;
    Ok(versioned(StatusCode::OK, event.version, None, &event))
}

/// Replace an event definition; send `If-Match` with the `ETag` you read to avoid lost updates.
#[utoipa::path(put, path = "/events/{name}", tag = "events", request_body = EventReplacement,
    params(("name" = EventName, Path), IfMatchHeader),
    responses(
        (status = 200, body = EventDefinition, headers(("ETag" = String, description = "Its new version")),
            links(
                ("get" = (operation_id = "get_event", parameters(("name" = "$response.body#/name")))),
                ("replace" = (operation_id = "replace_event", parameters(("name" = "$response.body#/name"), ("If-Match" = "$response.header.ETag")))),
                ("delete" = (operation_id = "delete_event", parameters(("name" = "$response.body#/name"), ("If-Match" = "$response.header.ETag")))),
            )),
        (status = 400, description = "Invalid name or If-Match, or malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such event (or a registered schema its `$ref`s reach was deleted meanwhile)", body = Problem, content_type = PROBLEM_JSON),
        (status = 412, description = "If-Match names another version; `currentVersion` says which is current", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Invalid fields, another name than the path's, a schema that does not compile, a `$ref` to a URI the registry does not hold (at /schema), or a schema or envelope for a dataType that is not JSON", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn replace_event(
    State(g): State<SharedGateway>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let name = path_param(name, EventName::parse)?;
    let expected = if_match(&headers)?;
    let draft: EventDraft = json_body(&headers, body, g.max_payload_bytes)?;
    let event =
        events::replace_event(g.events.as_ref(), g.registry.as_ref(), g.clock.as_ref(), &name, draft, expected).await?;
    Ok(versioned(StatusCode::OK, event.version, None, &event))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// Delete the event's subscriptions and sources too (`true` or `false`, default false).
    cascade: Option<bool>,
}

/// Delete an event definition (409 while it has subscriptions or sources trigger it, unless
/// `cascade=true`, which deletes those too).
#[utoipa::path(delete, path = "/events/{name}", tag = "events",
    params(("name" = EventName, Path), DeleteQuery, IfMatchHeader),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid name, cascade or If-Match", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such event", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "Has subscriptions (`/problems/event-has-subscriptions`) or sources that trigger it (`/problems/event-has-sources`), without `cascade=true`", body = Problem, content_type = PROBLEM_JSON),
        (status = 412, description = "If-Match names another version", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn delete_event(
    State(g): State<SharedGateway>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    q: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let name = path_param(name, EventName::parse)?;
    let cascade = query(q)?.cascade.unwrap_or(false);
    events::delete_event(g.events.as_ref(), &name, if_match(&headers)?, cascade).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
