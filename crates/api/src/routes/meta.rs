//! `/health` and `/openapi.json`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::SharedGateway;

pub fn routes() -> Router<SharedGateway> {
    Router::new().route("/health", get(health)).route("/openapi.json", get(openapi_document))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(health, openapi_document))]
pub struct Doc;

#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    status: &'static str,
}

/// Liveness: answers while the process can serve requests.
#[utoipa::path(get, path = "/health", tag = "meta", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// This API's OpenAPI 3.1 document, generated from the handlers.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, description = "OpenAPI 3.1 document", body = Object, content_type = "application/json")))]
async fn openapi_document() -> Response {
    // Built on first request, not at start-up: a Lambda cold start should not pay for it.
    static DOCUMENT: OnceLock<Vec<u8>> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| serde_json::to_vec(&crate::openapi()).unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}
