//! Route handlers, one module per resource.

pub mod cloudevents;
pub mod events;
pub mod ingest;
pub mod meta;
pub mod redrive;
pub mod schemas;
pub mod sources;
pub mod subscriptions;
pub mod triggers;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use gateway_core::{Error, EventName, Version};
use serde::Serialize;

use crate::extract::etag;
use crate::problem::ApiError;
use crate::SharedGateway;

/// What every router gets: problem+json for unknown routes and methods, and the body limit.
pub fn finish(router: Router<SharedGateway>, body_limit: usize) -> Router<SharedGateway> {
    router
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            ApiError::MethodNotAllowed { method: method.to_string(), path: uri.path().to_owned() }
        })
        .fallback(|uri: Uri| async move { ApiError::NoRoute(uri.path().to_owned()) })
        .layer(DefaultBodyLimit::max(body_limit))
}

/// 404 unless `name` is a defined event: for lists filtered by event, where an empty list
/// would hide a misspelt name.
pub async fn event_must_exist(g: &SharedGateway, name: &EventName) -> Result<(), ApiError> {
    match g.events.get_event(name).await? {
        Some(_) => Ok(()),
        None => Err(Error::NotFound { what: "event", id: name.to_string() }.into()),
    }
}

/// A JSON response carrying a resource's version as its ETag, and its Location when created.
pub fn versioned<T: Serialize>(status: StatusCode, version: Version, location: Option<String>, body: &T) -> Response {
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag(version)) {
        headers.insert(header::ETAG, value);
    }
    if let Some(value) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, value);
    }
    response
}
