//! `/health` and `/openapi.json`.

use axum::Json;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::SharedGateway;

pub fn routes() -> OpenApiRouter<SharedGateway> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(openapi_document))
}

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
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, description = "OpenAPI 3.1 document")))]
async fn openapi_document() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi())
}
