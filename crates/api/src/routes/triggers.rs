//! Triggering an event, and the delivery log that follows each trigger.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gateway_core::trigger::{self, TriggerPorts, TriggerRequest};
use gateway_core::{Delivery, Error, EventId, EventName, IdempotencyKey, Page, TriggerReceipt, Violation};

use crate::cloudevents::{self, Incoming};

use crate::extract::{body_bytes, content_type, path_param, path_value, query, IdempotencyKeyHeader, PageQuery};
use crate::problem::{ApiError, Problem, PROBLEM_JSON};
use crate::SharedGateway;

pub fn routes() -> Router<SharedGateway> {
    Router::new()
        .route("/events/{name}/trigger", post(trigger_event))
        .route("/events/{name}/deliveries", get(deliveries_of_event))
        .route("/deliveries/{eventId}", get(deliveries_of_trigger))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(trigger_event, deliveries_of_event, deliveries_of_trigger))]
pub struct Doc;

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
struct DeliveryPage {
    items: Vec<Delivery>,
    /// The `cursor` of the next page; null on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// Trigger an event: the body is the payload. Answers 202 once every delivery is durably
/// accepted, before any function runs.
///
/// What the payload must be is the event's: its `Content-Type` must be the event's `dataType`
/// (415), and a JSON payload must satisfy the event's `schema` (422, every violation listed).
/// An event whose `dataType` is not JSON takes any bytes of that type.
///
/// An event with `"envelope": "resource"` takes resource lifecycle envelopes, `{"action":
/// "create" | "update" | "delete", "resource": {"schema": <URI>, "content": {...}}}`: the envelope
/// is checked first, then `resource.content` against the registered schema version
/// `resource.schema` names (422 with pointers under `/resource/content`; an unregistered URI is
/// 422 at `/resource/schema`), unless the content is a `ResourceReference` (`tenantId`, `id`,
/// `version`, numbers). The payload reaches subscribers unchanged.
#[utoipa::path(post, path = "/events/{name}/trigger", tag = "triggers",
    params(("name" = EventName, Path), IdempotencyKeyHeader),
    request_body(content = serde_json::Value, content_type = "application/json", description = "The payload: any JSON for an event of JSON dataType (then checked against its schema), or raw bytes of the event's dataType. Or a CloudEvent (the `CloudEvent` schema) whose `type` is the event's name, else 400: structured (`application/cloudevents+json`), or binary (the data, with `ce-*` headers); as `POST /cloudevents` takes them"),
    responses(
        (status = 202, description = "Accepted: every delivery will run at least once (or end failed with its error); none had to run before this answer", body = TriggerReceipt,
            headers(("Location" = String, description = "`/deliveries/{eventId}`")),
            links(
                ("deliveries" = (operation_id = "deliveries_of_trigger", parameters(("eventId" = "$response.body#/eventId")))),
                ("event_deliveries" = (operation_id = "deliveries_of_event", parameters(("name" = "$response.body#/event")))),
                ("redrive" = (operation_id = "redrive_trigger", parameters(("eventId" = "$response.body#/eventId")))),
            )),
        (status = 400, description = "Invalid name or Idempotency-Key, a malformed JSON payload, a CloudEvent of another `type` than the path's, a batch (it goes to `POST /cloudevents`), or a missing or malformed `ce-*` header", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such event", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Payload over the limit", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Content-Type is not the event's dataType", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Payload breaks the schema or, for a resource event, the envelope or the registered schema its `resource.schema` names (every violation listed, with its pointer), or the Idempotency-Key was first used with another payload", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn trigger_event(
    State(g): State<SharedGateway>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let event = path_param(name, EventName::parse)?;
    let idempotency_key = match headers.get("idempotency-key") {
        Some(raw) => Some(path_value(IdempotencyKey::parse, raw.to_str().unwrap_or("\u{7f}"))?),
        None => None,
    };
    let body = body_bytes(body, g.max_payload_bytes)?;
    let request = match cloudevents::read(&headers, &body)? {
        Incoming::Plain => TriggerRequest {
            event,
            content_type: content_type(&headers),
            payload: body.to_vec(),
            idempotency_key,
            source: None,
            cloud_event: None,
        },
        Incoming::One(ce) => {
            if ce.kind != event.as_str() {
                return Err(Error::invalid_request(Violation::new(
                    "/type",
                    format!("the CloudEvent's type '{}' is not the event in the path, '{event}'", ce.kind),
                ))
                .into());
            }
            let receipt =
                trigger::trigger(trigger_ports(&g), super::cloudevents::request(event, &ce, idempotency_key)).await?;
            return Ok(accepted(&receipt));
        }
        Incoming::Batch(_) => {
            return Err(Error::invalid_request(Violation::new(
                "",
                "a batch of CloudEvents goes to POST /cloudevents, which triggers each member's own event",
            ))
            .into())
        }
    };
    let receipt = trigger::trigger(trigger_ports(&g), request).await?;
    Ok(accepted(&receipt))
}

pub(crate) fn trigger_ports(g: &SharedGateway) -> TriggerPorts<'_> {
    TriggerPorts {
        source: g.trigger_source.as_ref(),
        acceptor: g.acceptor.as_ref(),
        schemas: &g.schemas,
        registry: g.registry.as_ref(),
        clock: g.clock.as_ref(),
        ids: g.ids.as_ref(),
    }
}

/// 202 with the receipt, and `Location` its delivery log.
pub(crate) fn accepted(receipt: &TriggerReceipt) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(receipt)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/deliveries/{}", receipt.event_id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The deliveries of an event's triggers, newest trigger first, each as
/// `GET /deliveries/{eventId}` shows it (status, attempts, generation, policy, history).
#[utoipa::path(get, path = "/events/{name}/deliveries", tag = "triggers", params(("name" = EventName, Path), PageQuery),
    responses(
        (status = 200, body = DeliveryPage),
        (status = 400, description = "Invalid name, limit or cursor", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such event", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn deliveries_of_event(
    State(g): State<SharedGateway>,
    name: Result<Path<String>, PathRejection>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Page<Delivery>>, ApiError> {
    let event = path_param(name, EventName::parse)?;
    let page = query(q)?.page()?;
    super::event_must_exist(&g, &event).await?;
    Ok(Json(g.deliveries.deliveries_of_event(&event, &page).await?))
}

/// The deliveries of one trigger, one per subscription the trigger matched: each one's
/// `status`, its `attempts` in the current series and `lastError`, its `generation` (one more for
/// each redrive) and `redrivenAt`, the `policy` it runs under, and its `history` of attempts.
///
/// `pending`: an attempt is due, running or waiting for its backoff. `delivered`: a `sync`
/// invocation returned without a function error. `invoked`: Lambda accepted an `async` invocation
/// and runs the function under its own retries; the gateway did not see it succeed. `failed`: no
/// attempt left; on AWS it is dead-lettered with its last error. A failed delivery runs again
/// after a redrive (`POST /deliveries/{eventId}/redrive`).
///
/// A trigger's log is kept for at least the delivery retention (30 days by default) after it
/// was received; after that it may be gone, and this is 404 as for an id never seen.
#[utoipa::path(get, path = "/deliveries/{eventId}", tag = "triggers", params(("eventId" = EventId, Path)),
    responses(
        (status = 200, body = Vec<Delivery>),
        (status = 400, description = "Invalid id", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such trigger, or forgotten after the retention", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn deliveries_of_trigger(
    State(g): State<SharedGateway>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    let event_id = path_param(id, EventId::parse)?;
    match g.deliveries.deliveries_of_trigger(&event_id).await? {
        Some(deliveries) => Ok(Json(deliveries)),
        None => Err(Error::NotFound { what: "trigger", id: event_id.to_string() }.into()),
    }
}
