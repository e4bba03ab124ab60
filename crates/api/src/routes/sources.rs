//! `/sources`: which native AWS records trigger which event.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gateway_core::{sources, Page, Source, SourceDraft, SourceName};

use super::versioned;
use crate::doc::{NewSource, SourceReplacement};
use crate::extract::{if_match, json_body, path_param, query, IfMatchHeader, PageQuery};
use crate::problem::{ApiError, Problem, PROBLEM_JSON};
use crate::SharedGateway;

pub fn routes() -> Router<SharedGateway> {
    Router::new()
        .route("/sources", post(create_source).get(list_sources))
        .route("/sources/{name}", get(get_source).put(replace_source).delete(delete_source))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(create_source, list_sources, get_source, replace_source, delete_source))]
pub struct Doc;

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
struct SourcePage {
    items: Vec<Source>,
    /// The `cursor` of the next page; null on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

fn location(name: &SourceName) -> String {
    format!("/sources/{name}")
}

/// Add a source: native AWS records its EventBridge `pattern` matches trigger its `event`.
#[utoipa::path(post, path = "/sources", tag = "sources", request_body = NewSource,
    responses(
        (status = 201, description = "Added", body = Source,
            headers(("ETag" = String, description = "Its version, for If-Match"), ("Location" = String, description = "`/sources/{name}`")),
            links(
                ("get" = (operation_id = "get_source", parameters(("name" = "$response.body#/name")))),
                ("replace" = (operation_id = "replace_source", parameters(("name" = "$response.body#/name"), ("If-Match" = "$response.header.ETag")))),
                ("delete" = (operation_id = "delete_source", parameters(("name" = "$response.body#/name"), ("If-Match" = "$response.header.ETag")))),
            )),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such event", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "The name is taken", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Invalid fields, or a pattern that is not a valid EventBridge event pattern (every problem with its pointer under /pattern)", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn create_source(
    State(g): State<SharedGateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let draft: SourceDraft = json_body(&headers, body, g.max_payload_bytes)?;
    let source = sources::define_source(g.sources.as_ref(), g.clock.as_ref(), draft).await?;
    Ok(versioned(StatusCode::CREATED, source.version, Some(location(&source.name)), &source))
}

/// List sources by name.
#[utoipa::path(get, path = "/sources", tag = "sources", params(PageQuery),
    responses(
        (status = 200, body = SourcePage,
            links(("next" = (operation_id = "list_sources", parameters(("cursor" = "$response.body#/nextCursor")))))),
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn list_sources(
    State(g): State<SharedGateway>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Page<Source>>, ApiError> {
    let page = query(q)?.page()?;
    Ok(Json(sources::list_sources(g.sources.as_ref(), &page).await?))
}

/// Read a source.
#[utoipa::path(get, path = "/sources/{name}", tag = "sources", params(("name" = SourceName, Path)),
    responses(
        (status = 200, body = Source, headers(("ETag" = String, description = "Its version, for If-Match")),
            links(
                ("replace" = (operation_id = "replace_source", parameters(("name" = "$response.body#/name"), ("If-Match" = "$response.header.ETag")))),
                ("delete" = (operation_id = "delete_source", parameters(("name" = "$response.body#/name"), ("If-Match" = "$response.header.ETag")))),
            )),
        (status = 400, description = "Invalid name", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such source", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn get_source(
    State(g): State<SharedGateway>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = path_param(name, SourceName::parse)?;
    let source = sources::get_source(g.sources.as_ref(), &name).await?;
    Ok(versioned(StatusCode::OK, source.version, None, &source))
}

/// Replace a source's pattern, description and metadata; send `If-Match` to avoid lost updates.
#[utoipa::path(put, path = "/sources/{name}", tag = "sources", request_body = SourceReplacement,
    params(("name" = SourceName, Path), IfMatchHeader),
    responses(
        (status = 200, body = Source, headers(("ETag" = String, description = "Its new version")),
            links(
                ("get" = (operation_id = "get_source", parameters(("name" = "$response.body#/name")))),
                ("delete" = (operation_id = "delete_source", parameters(("name" = "$response.body#/name"), ("If-Match" = "$response.header.ETag")))),
            )),
        (status = 400, description = "Invalid name or If-Match, or malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such source", body = Problem, content_type = PROBLEM_JSON),
        (status = 412, description = "If-Match names another version; `currentVersion` says which is current", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Invalid fields or pattern, another name than the path's, or another event than the source's", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn replace_source(
    State(g): State<SharedGateway>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let name = path_param(name, SourceName::parse)?;
    let expected = if_match(&headers)?;
    let draft: SourceDraft = json_body(&headers, body, g.max_payload_bytes)?;
    let source = sources::replace_source(g.sources.as_ref(), g.clock.as_ref(), &name, draft, expected).await?;
    Ok(versioned(StatusCode::OK, source.version, None, &source))
}

/// Delete a source. Records already ingested keep their triggers.
#[utoipa::path(delete, path = "/sources/{name}", tag = "sources", params(("name" = SourceName, Path), IfMatchHeader),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid name or If-Match", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such source", body = Problem, content_type = PROBLEM_JSON),
        (status = 412, description = "If-Match names another version", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn delete_source(
    State(g): State<SharedGateway>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = path_param(name, SourceName::parse)?;
    sources::delete_source(g.sources.as_ref(), &name, if_match(&headers)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
