//! `POST /cloudevents`: the ingress for CloudEvents producers. Each CloudEvent's `type` names the
//! gateway event it triggers; structured, binary and batch mode (the HTTP binding is read in
//! `crate::cloudevents`). Served with the triggers (`RouteGroup::Triggers`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use gateway_core::cloudevent::CloudEvent;
use gateway_core::trigger::{self, TriggerRequest};
use gateway_core::{Error, EventName, IdempotencyKey, TriggerReceipt};

use super::triggers::{accepted, trigger_ports};
use crate::cloudevents::{self, Incoming};
use crate::extract::{body_bytes, path_value};
use crate::problem::{ApiError, Problem, PROBLEM_JSON};
use crate::SharedGateway;

pub fn routes() -> Router<SharedGateway> {
    Router::new().route("/cloudevents", post(receive))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(receive))]
pub struct Doc;

/// What `POST /cloudevents` answers: one receipt, or (a batch) one per member, in order.
#[derive(utoipa::ToSchema, serde::Serialize)]
#[allow(dead_code)]
#[serde(untagged)]
enum Receipts {
    One(TriggerReceipt),
    Batch(Vec<TriggerReceipt>),
}

/// The trigger a CloudEvent makes of `event`: its data and `datacontenttype` (structured mode
/// with JSON data and no `datacontenttype` is `application/json`), what the subscribers get of
/// it, and, unless the client gave an `Idempotency-Key`, its `source` + `id` as the key.
pub(crate) fn request(
    event: EventName,
    ce: &CloudEvent,
    idempotency_key: Option<IdempotencyKey>,
) -> TriggerRequest<'_> {
    let content_type = ce.data_content_type.as_deref().or(ce.data.as_ref().map(|_| "application/json"));
    TriggerRequest {
        event,
        content_type,
        payload: ce.data.clone().unwrap_or_default(),
        idempotency_key,
        source: None,
        cloud_event: Some(ce.received()),
    }
}

/// Receive CloudEvents: one (structured or binary mode) or a batch.
///
/// Each CloudEvent's `type` names the gateway event it triggers; its `data` (or `data_base64`,
/// or in binary mode the body) is the payload, checked against the event's `dataType` (its
/// `datacontenttype` must agree, 415) and schema (422); `dataschema`, if given, must name the
/// schema the event is validated against (its `$id` or a registered version it refers to, 422).
/// `source` + `id` identify it: sent again, it triggers once and answers with the first receipt.
/// A batch is checked whole first: one bad member and the answer is 422 listing every member's
/// violations under `/<index>`, and nothing is triggered; otherwise 202 with one receipt per
/// member, in order.
#[utoipa::path(post, path = "/cloudevents", tag = "triggers",
    request_body(content(
        (serde_json::Value = "application/cloudevents+json"),
        (Vec<serde_json::Value> = "application/cloudevents-batch+json"),
    ), description = "A CloudEvent in structured mode, a batch, or (binary mode) the data with `ce-specversion`, `ce-id`, `ce-source`, `ce-type` and other `ce-*` headers"),
    responses(
        (status = 202, description = "Accepted: one receipt, or (batch) one per member in order", body = Receipts),
        (status = 400, description = "Binary mode: a missing, empty or malformed `ce-*` header (named), or a body that is not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "The CloudEvent's `type` names no event", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Body over the limit", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Not a CloudEvent, or `datacontenttype` is not the event's `dataType`", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Structured or batch mode: missing or malformed attributes (named by pointer; a member's under `/<index>`), a `dataschema` that is not the event's schema, data that breaks the schema, or `source`+`id` first sent with other data", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn receive(
    State(g): State<SharedGateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body, g.max_payload_bytes)?;
    match cloudevents::read(&headers, &body)? {
        Incoming::Plain => Err(ApiError::NotACloudEvent),
        Incoming::One(ce) => {
            let event = EventName::parse(&ce.kind)
                .map_err(|_| Error::NotFound { what: "event", id: ce.kind.chars().take(128).collect() })?;
            let key = match headers.get("idempotency-key") {
                Some(raw) => Some(path_value(IdempotencyKey::parse, raw.to_str().unwrap_or("\u{7f}"))?),
                None => None,
            };
            let receipt = trigger::trigger(trigger_ports(&g), request(event, &ce, key)).await?;
            Ok(accepted(&receipt))
        }
        Incoming::Batch(members) => {
            let mut requests = Vec::with_capacity(members.len());
            let mut unnamed = Vec::new();
            for (i, ce) in members.iter().enumerate() {
                match EventName::parse(&ce.kind) {
                    Ok(event) => requests.push(request(event, ce, None)),
                    Err(_) => unnamed.push(format!("{} (member {i})", ce.kind.chars().take(128).collect::<String>())),
                }
            }
            if !unnamed.is_empty() {
                // No event has such a name: 404, as for one CloudEvent.
                return Err(Error::NotFound { what: "event", id: unnamed.join(", ") }.into());
            }
            let receipts = trigger::trigger_batch(trigger_ports(&g), requests).await?;
            Ok((StatusCode::ACCEPTED, Json(receipts)).into_response())
        }
    }
}
