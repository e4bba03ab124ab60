//! Use cases on event definitions: define, read, list, replace, delete.

use std::sync::Arc;

use crate::error::{Error, Result, Violation};
use crate::formats::{self, SchemaDocument, SchemaFormat};
use crate::ids::{EventName, Version};
use crate::model::{EventDefinition, EventDraft, SchemaReference};
use crate::page::{Page, PageRequest};
use crate::ports::{Clock, EventStore, SchemaLookup};
use crate::schema;

pub(crate) const MAX_DESCRIPTION: usize = 1024;

/// Defines an event; `registry` serves the registered schemas its schema may `$ref`.
pub async fn define_event(
    store: &dyn EventStore,
    registry: &dyn SchemaLookup,
    clock: &dyn Clock,
    draft: EventDraft,
) -> Result<EventDefinition> {
    let Some(name) = draft.name.clone() else {
        return Err(Error::invalid_body(vec![Violation::new("/name", "name is required")]));
    };
    let now = clock.now();
    let event = build(registry, name, draft, now, Version::FIRST, None).await?;
    store.create_event(&event).await?;
    Ok(event)
}

pub async fn get_event(store: &dyn EventStore, name: &EventName) -> Result<EventDefinition> {
    store.get_event(name).await?.ok_or_else(|| not_found(name))
}

pub async fn list_events(store: &dyn EventStore, page: &PageRequest) -> Result<Page<EventDefinition>> {
    store.list_events(page).await
}

/// Replaces a definition; `if_match` guards against overwriting a change the client has not seen.
pub async fn replace_event(
    store: &dyn EventStore,
    registry: &dyn SchemaLookup,
    clock: &dyn Clock,
    name: &EventName,
    draft: EventDraft,
    if_match: Option<Version>,
) -> Result<EventDefinition> {
    if let Some(body_name) = &draft.name {
        if body_name != name {
            return Err(Error::invalid_body(vec![Violation::new(
                "/name",
                format!("the body names '{body_name}' but the path names '{name}'; an event cannot be renamed"),
            )]));
        }
    }
    let current = store.get_event(name).await?.ok_or_else(|| not_found(name))?;
    // The body first: a bad one is 422 whatever If-Match says (RFC 9110 §13.2.1 evaluates
    // preconditions only for a request that would otherwise succeed).
    let mut next =
        build(registry, name.clone(), draft, clock.now(), current.version.next(), current.received_at).await?;
    check_version("event", name.as_str(), current.version, if_match)?;
    next.created_at = current.created_at;
    store.replace_event(&next).await?;
    Ok(next)
}

pub async fn delete_event(
    store: &dyn EventStore,
    name: &EventName,
    if_match: Option<Version>,
    cascade: bool,
) -> Result<()> {
    store.delete_event(name, if_match, cascade).await
}

pub(crate) fn check_version(what: &'static str, id: &str, current: Version, if_match: Option<Version>) -> Result<()> {
    match if_match {
        Some(expected) if expected != current => Err(Error::VersionMismatch { what, id: id.to_owned(), current }),
        _ => Ok(()),
    }
}

fn not_found(name: &EventName) -> Error {
    Error::NotFound { what: "event", id: name.to_string() }
}

/// Checks a draft as a whole, so the client hears every problem at once.
async fn build(
    registry: &dyn SchemaLookup,
    name: EventName,
    draft: EventDraft,
    now: chrono::DateTime<chrono::Utc>,
    version: Version,
    received_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<EventDefinition> {
    let data_type = draft.data_type.unwrap_or_default();
    let mut violations = Vec::new();
    if draft.description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        violations
            .push(Violation::new("/description", format!("description is longer than {MAX_DESCRIPTION} characters")));
    }
    if draft.envelope.is_some() && !data_type.is_json() {
        violations.push(Violation::new(
            "/envelope",
            format!("a resource envelope is JSON, but dataType is '{}'", data_type.as_str()),
        ));
    }
    let mut schema_references = Vec::new();
    if let Some(schema) = &draft.schema {
        if !data_type.is_json() {
            violations.push(Violation::new(
                "/schema",
                format!("a schema validates JSON payloads, but dataType is '{}'", data_type.as_str()),
            ));
        } else if !(schema.is_object() || schema.is_boolean()) {
            violations.push(Violation::new("/schema", "a JSON Schema is an object or a boolean"));
        } else {
            match compiles(registry, schema).await? {
                Ok(references) => schema_references = references,
                Err(found) => violations.extend(found),
            }
        }
    }
    if !violations.is_empty() {
        return Err(Error::invalid_body(violations));
    }
    Ok(EventDefinition {
        name,
        description: draft.description,
        schema: draft.schema.map(Arc::new),
        data_type,
        envelope: draft.envelope,
        schema_references,
        metadata: draft.metadata.unwrap_or_default(),
        received_at,
        created_at: now,
        updated_at: now,
        version,
    })
}

/// Whether an inline schema compiles with the registered documents it `$ref`s: what it reaches,
/// or what is wrong (a `$ref` to no registered URI, a compiler's message).
async fn compiles(
    registry: &dyn SchemaLookup,
    schema: &serde_json::Value,
) -> Result<std::result::Result<Vec<SchemaReference>, Vec<Violation>>> {
    let document = SchemaDocument::new(SchemaFormat::JsonSchema, schema);
    let resolved = schema::resolve_references(registry, &document).await?;
    if !resolved.missing.is_empty() {
        return Ok(Err(dangling("/schema", &resolved.missing)));
    }
    let refused = resolved.refusals(None, "/schema");
    if !refused.is_empty() {
        return Ok(Err(refused));
    }
    Ok(match formats::compile(&document, &resolved.known) {
        Ok(_) => Ok(resolved.references),
        Err(message) => Err(vec![Violation::new("/schema", format!("the schema does not compile: {message}"))]),
    })
}

/// The violations of `$ref`s to URIs the registry does not hold, at `pointer`.
pub(crate) fn dangling(pointer: &str, missing: &[String]) -> Vec<Violation> {
    missing
        .iter()
        .map(|uri| {
            Violation::new(
                pointer,
                format!(
                    "$ref '{uri}' names no registered schema; register it first (the gateway never fetches a $ref)"
                ),
            )
        })
        .collect()
}
