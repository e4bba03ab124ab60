//! `/schemas`: the schema registry. A schema is a name, a format and a compatibility mode over
//! numbered versions; each version's document is written once and known by a URI, which `$ref`s
//! and resource envelopes' `resource.schema` name.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use gateway_core::{
    schemas, Compatibility, Page, Schema, SchemaChange, SchemaDraft, SchemaFormat, SchemaName, SchemaReference,
    SchemaUri, SchemaVersion, SchemaVersionDraft, SchemaVersionSummary,
};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::versioned;
use crate::doc::{NewSchema, NewSchemaVersion, SchemaReplacement};
use crate::extract::{
    if_match, json_body, path_param, path_segments, path_value, query, version_number, IfMatchHeader, PageQuery,
};
use crate::problem::{ApiError, Problem, PROBLEM_JSON};
use crate::SharedGateway;

pub fn routes() -> Router<SharedGateway> {
    Router::new()
        .route("/schemas", post(create_schema).get(list_schemas))
        .route("/schemas/{name}", get(get_schema).put(change_schema).delete(delete_schema))
        .route("/schemas/{name}/versions", post(add_schema_version))
        .route("/schemas/{name}/versions/{version}", get(get_schema_version))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create_schema,
    list_schemas,
    get_schema,
    change_schema,
    delete_schema,
    add_schema_version,
    get_schema_version
))]
pub struct Doc;

/// A version as adding it answers (`POST /schemas` for version 1, `POST /schemas/{name}/versions`
/// for the next ones): what it is known by, without its document, which the client has just sent
/// and which never changes (`GET` the `Location` for it).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RegisteredVersion {
    name: SchemaName,
    #[schema(minimum = 1)]
    version: u32,
    /// What a `$ref` and a resource envelope's `resource.schema` name it by: the `uri` given,
    /// else the JSON Schema's `$id`, else `/schemas/{name}/versions/{version}`.
    uri: SchemaUri,
    format: SchemaFormat,
    /// The schema's compatibility mode now: what its next version must keep with this one.
    compatibility: Compatibility,
    /// SHA-256 of the document, hex.
    digest: String,
    created_at: DateTime<Utc>,
}

impl RegisteredVersion {
    fn of(schema: &Schema, version: &SchemaVersion) -> Self {
        Self {
            name: version.name.clone(),
            version: version.version,
            uri: version.uri.clone(),
            format: version.format,
            compatibility: schema.compatibility,
            digest: version.digest.clone(),
            created_at: version.created_at,
        }
    }
}

/// `GET /schemas/{name}/versions/{version}`: the same as adding it answered, with its document.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct VersionWithDocument {
    #[serde(flatten)]
    registered: RegisteredVersion,
    /// The document, exactly as registered: a JSON Schema (an object or a boolean) or an Avro
    /// schema (a type name, a union's array or an object).
    #[schema(value_type = Value)]
    schema: Arc<Value>,
    /// The registered versions it reaches through `$ref`, transitively, as resolved when it was
    /// written.
    references: Vec<SchemaReference>,
}

/// `GET /schemas/{name}`: the schema, with a line per version.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SchemaWithVersions {
    #[serde(flatten)]
    schema: Schema,
    /// Every version, oldest first.
    versions: Vec<SchemaVersionSummary>,
}

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
struct SchemaPage {
    items: Vec<Schema>,
    /// The `cursor` of the next page; null on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

fn location(name: &SchemaName) -> String {
    format!("/schemas/{name}")
}

fn version_location(version: &SchemaVersion) -> String {
    format!("/schemas/{}/versions/{}", version.name, version.version)
}

/// Register a schema: its version 1.
///
/// The version is known by the `uri` given, else the `$id` its JSON Schema declares, else
/// `/schemas/{name}/versions/1`; URIs are unique across the registry. Its `$ref`s must name
/// registered URIs (the gateway never fetches one), and it must compile (JSON Schema) or parse
/// (Avro).
#[utoipa::path(post, path = "/schemas", tag = "schemas", request_body = NewSchema,
    responses(
        (status = 201, description = "Registered: version 1", body = RegisteredVersion,
            headers(("ETag" = String, description = "The schema's revision, for If-Match on PUT and DELETE /schemas/{name}"), ("Location" = String, description = "`/schemas/{name}`")),
            links(
                ("get" = (operation_id = "get_schema", parameters(("name" = "$response.body#/name")))),
                ("version" = (operation_id = "get_schema_version", parameters(("name" = "$response.body#/name"), ("version" = "$response.body#/version")))),
                ("add_version" = (operation_id = "add_schema_version", parameters(("name" = "$response.body#/name")))),
                ("change" = (operation_id = "change_schema", parameters(("name" = "$response.body#/name"), ("If-Match" = "$response.header.ETag")))),
                ("delete" = (operation_id = "delete_schema", parameters(("name" = "$response.body#/name"), ("If-Match" = "$response.header.ETag")))),
            )),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "A registered schema its `$ref`s reach was deleted while it was being registered", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "The name is taken (`/problems/schema-exists`), or the version's URI names another version (`/problems/schema-uri-taken`)", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Invalid fields (an unknown format or mode, a relative URI or one with a fragment, an `$id` other than the `uri`), a document over the size limit, one that does not compile or parse (the compiler's message), or a `$ref` to a URI the registry does not hold; every problem with its pointer", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn create_schema(
    State(g): State<SharedGateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let draft: SchemaDraft = json_body(&headers, body, g.max_payload_bytes)?;
    let (schema, first) = schemas::register_schema(g.registry.as_ref(), g.clock.as_ref(), draft).await?;
    let answer = RegisteredVersion::of(&schema, &first);
    Ok(versioned(StatusCode::CREATED, schema.revision, Some(location(&schema.name)), &answer))
}

/// List schemas by name (without their versions).
#[utoipa::path(get, path = "/schemas", tag = "schemas", params(PageQuery),
    responses(
        (status = 200, body = SchemaPage,
            links(("next" = (operation_id = "list_schemas", parameters(("cursor" = "$response.body#/nextCursor")))))),
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn list_schemas(
    State(g): State<SharedGateway>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Page<Schema>>, ApiError> {
    let page = query(q)?.page()?;
    Ok(Json(schemas::list_schemas(g.registry.as_ref(), &page).await?))
}

/// Read a schema, with every version's number, URI and digest.
#[utoipa::path(get, path = "/schemas/{name}", tag = "schemas", params(("name" = SchemaName, Path)),
    responses(
        (status = 200, body = SchemaWithVersions, headers(("ETag" = String, description = "The schema's revision, for If-Match")),
            links(
                ("latest" = (operation_id = "get_schema_version", parameters(("name" = "$response.body#/name"), ("version" = "$response.body#/latestVersion")))),
                ("add_version" = (operation_id = "add_schema_version", parameters(("name" = "$response.body#/name")))),
                ("change" = (operation_id = "change_schema", parameters(("name" = "$response.body#/name"), ("If-Match" = "$response.header.ETag")))),
                ("delete" = (operation_id = "delete_schema", parameters(("name" = "$response.body#/name"), ("If-Match" = "$response.header.ETag")))),
            )),
        (status = 400, description = "Invalid name", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such schema", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn get_schema(
    State(g): State<SharedGateway>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = path_param(name, SchemaName::parse)?;
    let (schema, versions) = schemas::get_schema_with_versions(g.registry.as_ref(), &name).await?;
    let revision = schema.revision;
    Ok(versioned(StatusCode::OK, revision, None, &SchemaWithVersions { schema, versions }))
}

/// Change a schema's description and compatibility mode (absent: none, and `BACKWARD`); send
/// `If-Match` to avoid lost updates. A new mode applies to the versions added from then on.
#[utoipa::path(put, path = "/schemas/{name}", tag = "schemas", request_body = SchemaReplacement,
    params(("name" = SchemaName, Path), IfMatchHeader),
    responses(
        (status = 200, description = "Changed: the schema as listed (its versions do not change)", body = Schema, headers(("ETag" = String, description = "Its new revision")),
            links(
                ("get" = (operation_id = "get_schema", parameters(("name" = "$response.body#/name")))),
                ("delete" = (operation_id = "delete_schema", parameters(("name" = "$response.body#/name"), ("If-Match" = "$response.header.ETag")))),
            )),
        (status = 400, description = "Invalid name or If-Match, or malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such schema", body = Problem, content_type = PROBLEM_JSON),
        (status = 412, description = "If-Match names another revision; `currentVersion` says which is current", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Invalid fields (an unknown mode, a description over 1024 characters)", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn change_schema(
    State(g): State<SharedGateway>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let name = path_param(name, SchemaName::parse)?;
    let expected = if_match(&headers)?;
    let change: SchemaChange = json_body(&headers, body, g.max_payload_bytes)?;
    let schema = schemas::change_schema(g.registry.as_ref(), g.clock.as_ref(), &name, change, expected).await?;
    Ok(versioned(StatusCode::OK, schema.revision, None, &schema))
}

/// Delete a schema and every version of it (409 while an event definition or another schema
/// `$ref`s any of them). Its URIs are free again afterwards.
#[utoipa::path(delete, path = "/schemas/{name}", tag = "schemas", params(("name" = SchemaName, Path), IfMatchHeader),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid name or If-Match", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such schema", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "Still referred to (`/problems/schema-referenced`): `referrers` names every event and schema that does", body = Problem, content_type = PROBLEM_JSON),
        (status = 412, description = "If-Match names another revision", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn delete_schema(
    State(g): State<SharedGateway>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = path_param(name, SchemaName::parse)?;
    schemas::delete_schema(g.registry.as_ref(), &name, if_match(&headers)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Add the schema's next version, if it keeps the schema's compatibility mode with the latest.
///
/// The version is known by the `uri` given, else the `$id` its JSON Schema declares, else
/// `/schemas/{name}/versions/{version}`. It is in the schema's format, and checked as on
/// registration.
#[utoipa::path(post, path = "/schemas/{name}/versions", tag = "schemas", request_body = NewSchemaVersion,
    params(("name" = SchemaName, Path)),
    responses(
        (status = 201, description = "Added", body = RegisteredVersion,
            headers(("Location" = String, description = "`/schemas/{name}/versions/{version}`")),
            links(
                ("get" = (operation_id = "get_schema_version", parameters(("name" = "$response.body#/name"), ("version" = "$response.body#/version")))),
                ("schema" = (operation_id = "get_schema", parameters(("name" = "$response.body#/name")))),
            )),
        (status = 400, description = "Invalid name, or malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such schema (or a registered schema its `$ref`s reach was deleted meanwhile)", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "It breaks the schema's compatibility mode with the latest version (`/problems/schema-incompatible`: `incompatibilities` lists every reason, each with its pointer into the new document), or its URI names another version (`/problems/schema-uri-taken`), or the schema holds the most versions it may, 1000 (`/problems/schema-full`)", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Invalid fields (a relative URI or one with a fragment, an `$id` other than the `uri`), a document over the size limit, one that does not compile or parse, or a `$ref` to a URI the registry does not hold; every problem with its pointer", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn add_schema_version(
    State(g): State<SharedGateway>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let name = path_param(name, SchemaName::parse)?;
    let draft: SchemaVersionDraft = json_body(&headers, body, g.max_payload_bytes)?;
    let (schema, version) = schemas::add_version(g.registry.as_ref(), g.clock.as_ref(), &name, draft).await?;
    // No ETag: the located version never changes, and the schema's new revision is GET
    // /schemas/{name}'s to tell.
    let mut response = (StatusCode::CREATED, Json(RegisteredVersion::of(&schema, &version))).into_response();
    if let Ok(value) = HeaderValue::from_str(&version_location(&version)) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Read a version, with its document.
#[utoipa::path(get, path = "/schemas/{name}/versions/{version}", tag = "schemas",
    params(
        ("name" = SchemaName, Path),
        ("version" = u64, Path, minimum = 1, maximum = 4294967295.0,
            description = "The version's number, from 1, in decimal digits (no sign, no leading zero)"),
    ),
    responses(
        (status = 200, body = VersionWithDocument,
            links(("schema" = (operation_id = "get_schema", parameters(("name" = "$response.body#/name")))))),
        (status = 400, description = "Invalid name or version number", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such schema, or no such version of it (the detail says which)", body = Problem, content_type = PROBLEM_JSON),
    ))]
async fn get_schema_version(
    State(g): State<SharedGateway>,
    segments: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (name, number) = path_segments(segments)?;
    let name = path_value(SchemaName::parse, &name)?;
    let number = path_value(version_number, &number)?;
    let version = schemas::get_version(g.registry.as_ref(), &name, number).await?;
    // The mode is the schema's, not the version's: read now, as adding the version answered it.
    let schema = schemas::get_schema(g.registry.as_ref(), &name).await?;
    let answer = VersionWithDocument {
        registered: RegisteredVersion::of(&schema, &version),
        schema: version.schema,
        references: version.references,
    };
    Ok(Json(answer).into_response())
}
