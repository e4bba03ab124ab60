//! Use cases on the schema registry: register a schema, add versions under its compatibility
//! mode, read, change and delete it.
//!
//! A version is written whole or not at all: its document compiles (JSON Schema with the
//! registered documents it `$ref`s, Avro parsed), every `$ref` names a registered URI, its URI is
//! free, and it keeps the schema's compatibility mode with the latest version. Its document never
//! changes afterwards.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::{Error, Result, Violation};
use crate::events::{check_version, dangling, MAX_DESCRIPTION};
use crate::formats::{self, SchemaDocument, SchemaFormat};
use crate::ids::{SchemaName, SchemaUri, Version};
use crate::model::{Schema, SchemaChange, SchemaDraft, SchemaVersion, SchemaVersionDraft, SchemaVersionSummary};
use crate::page::{Page, PageRequest};
use crate::ports::{Clock, SchemaStore};
use crate::schema::{self, KnownDocuments};

/// The largest schema document, as JSON text: a schema lives in one store item.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// The most versions a schema holds; past them, register a new schema.
pub const MAX_VERSIONS: u32 = 1000;
/// How often adding a version is tried when other versions are being added meanwhile.
const ADD_ATTEMPTS: usize = 5;

/// Registers a schema: its version 1.
pub async fn register_schema(
    store: &dyn SchemaStore,
    clock: &dyn Clock,
    draft: SchemaDraft,
) -> Result<(Schema, SchemaVersion)> {
    let now = clock.now();
    let mut violations = Vec::new();
    check_description(draft.description.as_deref(), &mut violations);
    let (version, _) =
        build_version(store, &draft.name, 1, draft.format, draft.schema, draft.uri, now, violations).await?;
    let schema = Schema {
        name: draft.name,
        format: draft.format,
        compatibility: draft.compatibility.unwrap_or_default(),
        description: draft.description,
        latest_version: 1,
        created_at: now,
        updated_at: now,
        revision: Version::FIRST,
    };
    store.create_schema(&schema, &version).await?;
    Ok((schema, version))
}

/// Adds the next version, if it keeps the schema's compatibility mode with the latest one.
pub async fn add_version(
    store: &dyn SchemaStore,
    clock: &dyn Clock,
    name: &SchemaName,
    draft: SchemaVersionDraft,
) -> Result<(Schema, SchemaVersion)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = get_schema(store, name).await?;
        if current.latest_version >= MAX_VERSIONS {
            return Err(Error::SchemaFull { schema: name.clone(), max: MAX_VERSIONS });
        }
        let now = clock.now();
        let number = current.latest_version + 1;
        let (version, known) = build_version(
            store,
            name,
            number,
            current.format,
            draft.schema.clone(),
            draft.uri.clone(),
            now,
            Vec::new(),
        )
        .await?;
        check_compatibility(store, &current, &version, known).await?;
        let next = Schema { latest_version: number, updated_at: now, revision: current.revision.next(), ..current };
        match store.add_schema_version(&next, &version).await {
            // Another version was added since `current` was read: check against that one.
            Err(Error::VersionMismatch { .. }) if attempt < ADD_ATTEMPTS => continue,
            // The client sent no If-Match: this is contention, which passes (503, try again).
            Err(Error::VersionMismatch { .. }) => {
                return Err(Error::unavailable(format!(
                    "other versions of schema '{name}' were added while this one was checked, {ADD_ATTEMPTS} times"
                )))
            }
            Err(error) => return Err(error),
            Ok(()) => return Ok((next, version)),
        }
    }
}

pub async fn get_schema(store: &dyn SchemaStore, name: &SchemaName) -> Result<Schema> {
    store.get_schema(name).await?.ok_or_else(|| not_found(name))
}

/// A schema with what each version is, oldest first.
pub async fn get_schema_with_versions(
    store: &dyn SchemaStore,
    name: &SchemaName,
) -> Result<(Schema, Vec<SchemaVersionSummary>)> {
    let schema = get_schema(store, name).await?;
    Ok((schema, store.schema_versions(name).await?))
}

pub async fn get_version(store: &dyn SchemaStore, name: &SchemaName, version: u32) -> Result<SchemaVersion> {
    match store.get_schema_version(name, version).await? {
        Some(found) => Ok(found),
        None => {
            // Say which is missing: the schema, or only that version of it.
            get_schema(store, name).await?;
            Err(Error::NotFound { what: "schema version", id: format!("{name}/versions/{version}") })
        }
    }
}

pub async fn list_schemas(store: &dyn SchemaStore, page: &PageRequest) -> Result<Page<Schema>> {
    store.list_schemas(page).await
}

/// Replaces a schema's description and compatibility mode (absent: none, and `BACKWARD`). A new
/// mode applies to the versions added from then on; the versions already there stay.
pub async fn change_schema(
    store: &dyn SchemaStore,
    clock: &dyn Clock,
    name: &SchemaName,
    change: SchemaChange,
    if_match: Option<Version>,
) -> Result<Schema> {
    let mut violations = Vec::new();
    check_description(change.description.as_deref(), &mut violations);
    if !violations.is_empty() {
        return Err(Error::invalid_body(violations));
    }
    let current = get_schema(store, name).await?;
    check_version("schema", name.as_str(), current.revision, if_match)?;
    let next = Schema {
        compatibility: change.compatibility.unwrap_or_default(),
        description: change.description,
        updated_at: clock.now(),
        revision: current.revision.next(),
        ..current
    };
    store.replace_schema(&next).await?;
    Ok(next)
}

pub async fn delete_schema(store: &dyn SchemaStore, name: &SchemaName, if_match: Option<Version>) -> Result<()> {
    store.delete_schema(name, if_match).await
}

fn not_found(name: &SchemaName) -> Error {
    Error::NotFound { what: "schema", id: name.to_string() }
}

fn check_description(description: Option<&str>, violations: &mut Vec<Violation>) {
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        violations
            .push(Violation::new("/description", format!("description is longer than {MAX_DESCRIPTION} characters")));
    }
}

/// Checks a version's draft as a whole (with `violations` already found in the rest of the body)
/// and builds it: its URI, its references, and that it compiles.
#[allow(clippy::too_many_arguments)]
async fn build_version(
    store: &dyn SchemaStore,
    name: &SchemaName,
    number: u32,
    format: SchemaFormat,
    document: Value,
    uri: Option<String>,
    now: DateTime<Utc>,
    mut violations: Vec<Violation>,
) -> Result<(SchemaVersion, KnownDocuments)> {
    let size = serde_json::to_string(&document).map(|text| text.len()).unwrap_or(usize::MAX);
    if size > MAX_SCHEMA_BYTES {
        violations
            .push(Violation::new("/schema", format!("the schema is {size} bytes of JSON, over {MAX_SCHEMA_BYTES}")));
        return Err(Error::invalid_body(violations));
    }
    if format == SchemaFormat::JsonSchema && !(document.is_object() || document.is_boolean()) {
        violations.push(Violation::new("/schema", "a JSON Schema is an object or a boolean"));
        return Err(Error::invalid_body(violations));
    }
    let Some(uri) = version_uri(name, number, format, &document, uri.as_deref(), &mut violations) else {
        return Err(Error::invalid_body(violations));
    };
    let at = SchemaDocument::new(format, &document).at(uri.as_str());
    let resolved = schema::resolve_references(store, &at).await?;
    if !resolved.missing.is_empty() {
        violations.extend(dangling("/schema", &resolved.missing));
    } else if let refused @ [_, ..] = resolved.refusals(Some(name), "/schema").as_slice() {
        violations.extend_from_slice(refused);
    } else if let Err(message) = formats::compile(&at, &resolved.known) {
        let what = match format {
            SchemaFormat::JsonSchema => "the schema does not compile",
            SchemaFormat::Avro => "the Avro schema does not parse",
        };
        violations.push(Violation::new("/schema", format!("{what}: {message}")));
    }
    if !violations.is_empty() {
        return Err(Error::invalid_body(violations));
    }
    if let Some(holder) = store.schema_by_uri(&uri).await? {
        return Err(Error::SchemaUriTaken { uri, schema: holder.name, version: holder.version });
    }
    let version = SchemaVersion {
        name: name.clone(),
        version: number,
        uri,
        format,
        digest: schema::document_digest(&document),
        schema: Arc::new(document),
        references: resolved.references,
        created_at: now,
    };
    Ok((version, resolved.known))
}

/// The URI the version is known by: the one given, else the `$id` the JSON Schema declares, else
/// `/schemas/{name}/versions/{n}`. Given and declared ones must be absolute (`https:`, `urn:`),
/// so that none takes another version's default, and agree when both are there.
fn version_uri(
    name: &SchemaName,
    number: u32,
    format: SchemaFormat,
    document: &Value,
    given: Option<&str>,
    violations: &mut Vec<Violation>,
) -> Option<SchemaUri> {
    let given = match given.map(SchemaUri::parse) {
        None => None,
        Some(Err(v)) => {
            violations.push(v.at("/uri"));
            return None;
        }
        Some(Ok(uri)) if !uri.is_absolute() => {
            violations.push(Violation::new(
                "/uri",
                format!("'{uri}' is relative; give an absolute URI (https:, urn:) or none for /schemas/{name}/versions/{number}"),
            ));
            return None;
        }
        Some(Ok(uri)) => Some(uri),
    };
    let declared = match formats::declared_id(format, document).map(|id| SchemaUri::parse(&id)) {
        None => None,
        Some(Err(v)) => {
            violations.push(v.at("/schema/$id"));
            return None;
        }
        Some(Ok(id)) if !id.is_absolute() => {
            violations.push(Violation::new(
                "/schema/$id",
                format!("'{id}' is relative; a registered schema's $id is absolute"),
            ));
            return None;
        }
        Some(Ok(id)) => Some(id),
    };
    match (given, declared) {
        (Some(given), Some(declared)) if given != declared => {
            violations.push(Violation::new(
                "/uri",
                format!("'{given}' is not the schema's $id '{declared}'; give one of them, or the same"),
            ));
            None
        }
        (Some(uri), _) | (None, Some(uri)) => Some(uri),
        (None, None) => Some(SchemaUri::default_for(name, number)),
    }
}

/// 409 with every incompatibility, if `version` breaks the schema's mode with its latest version;
/// `known` holds what `version` references.
async fn check_compatibility(
    store: &dyn SchemaStore,
    schema: &Schema,
    version: &SchemaVersion,
    mut known: KnownDocuments,
) -> Result<()> {
    if schema.compatibility == formats::Compatibility::None {
        return Ok(());
    }
    let latest = store.get_schema_version(&schema.name, schema.latest_version).await?.ok_or_else(|| {
        Error::unavailable(format!("schema '{}' has no version {}", schema.name, schema.latest_version))
    })?;
    let previous = SchemaDocument::new(latest.format, &latest.schema).at(latest.uri.as_str());
    let next = SchemaDocument::new(version.format, &version.schema).at(version.uri.as_str());
    known.extend(schema::resolve_references(store, &previous).await?.known);
    let incompatibilities = formats::incompatibilities(schema.compatibility, &previous, &next, &known);
    if incompatibilities.is_empty() {
        Ok(())
    } else {
        Err(Error::SchemaIncompatible {
            schema: schema.name.clone(),
            mode: schema.compatibility,
            latest: latest.version,
            incompatibilities,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::memory::MemoryStore;
    use crate::model::{EventDraft, Referrer};
    use crate::ports::{SchemaLookup, SystemClock};
    use crate::{events, Compatibility};

    fn draft(name: &str, format: SchemaFormat, schema: Value) -> SchemaDraft {
        SchemaDraft {
            name: SchemaName::parse(name).unwrap(),
            format,
            schema,
            uri: None,
            compatibility: None,
            description: None,
        }
    }

    fn person_v1() -> Value {
        json!({"$id": "https://example.com/schemas/person/v1.json", "type": "object",
               "required": ["name"], "properties": {"name": {"type": "string"}}})
    }

    fn pointers(error: &Error) -> Vec<String> {
        match error {
            Error::InvalidInput { violations, .. } => violations.iter().map(|v| v.pointer.clone()).collect(),
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_version_is_known_by_the_uri_given_else_its_id_else_its_default() {
        let store = MemoryStore::new();
        let (_, by_id) = register_schema(&store, &SystemClock, draft("person", SchemaFormat::JsonSchema, person_v1()))
            .await
            .unwrap();
        assert_eq!(by_id.uri.as_str(), "https://example.com/schemas/person/v1.json");
        let mut given =
            draft("address", SchemaFormat::Avro, json!({"type": "record", "name": "Address", "fields": []}));
        given.uri = Some("urn:example:address:1".into());
        let (schema, given) = register_schema(&store, &SystemClock, given).await.unwrap();
        assert_eq!((given.uri.as_str(), schema.compatibility), ("urn:example:address:1", Compatibility::Backward));
        let (_, default) =
            register_schema(&store, &SystemClock, draft("plain", SchemaFormat::JsonSchema, json!({}))).await.unwrap();
        assert_eq!(default.uri.as_str(), "/schemas/plain/versions/1");
        let (_, second) = add_version(
            &store,
            &SystemClock,
            &SchemaName::parse("plain").unwrap(),
            SchemaVersionDraft { schema: json!({}), uri: None },
        )
        .await
        .unwrap();
        assert_eq!(second.uri.as_str(), "/schemas/plain/versions/2");
        assert_eq!(store.schema_by_uri(&default.uri).await.unwrap(), Some(default));
    }

    #[tokio::test]
    async fn uris_are_unique_absolute_and_agree_with_the_id() {
        let store = MemoryStore::new();
        register_schema(&store, &SystemClock, draft("person", SchemaFormat::JsonSchema, person_v1())).await.unwrap();
        let again = register_schema(&store, &SystemClock, draft("human", SchemaFormat::JsonSchema, person_v1())).await;
        assert!(
            matches!(again, Err(Error::SchemaUriTaken { ref schema, version: 1, .. }) if schema.as_str() == "person")
        );
        let mut relative = draft("other", SchemaFormat::JsonSchema, json!({}));
        relative.uri = Some("/schemas/person/versions/1".into());
        assert_eq!(pointers(&register_schema(&store, &SystemClock, relative).await.unwrap_err()), ["/uri"]);
        let mut disagreeing = draft("other", SchemaFormat::JsonSchema, json!({"$id": "urn:a"}));
        disagreeing.uri = Some("urn:b".into());
        assert_eq!(pointers(&register_schema(&store, &SystemClock, disagreeing).await.unwrap_err()), ["/uri"]);
        let mut fragment = draft("other", SchemaFormat::JsonSchema, json!({}));
        fragment.uri = Some("urn:a#part".into());
        assert_eq!(pointers(&register_schema(&store, &SystemClock, fragment).await.unwrap_err()), ["/uri"]);
        assert_eq!(store.get_schema(&SchemaName::parse("other").unwrap()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_schema_that_does_not_compile_or_parse_is_refused_with_the_compilers_message() {
        let store = MemoryStore::new();
        let broken =
            register_schema(&store, &SystemClock, draft("broken", SchemaFormat::JsonSchema, json!({"type": 5})))
                .await
                .unwrap_err();
        assert_eq!(pointers(&broken), ["/schema"]);
        let avro = register_schema(&store, &SystemClock, draft("avro", SchemaFormat::Avro, json!({"type": "recrod"})))
            .await
            .unwrap_err();
        assert!(avro.to_string().contains("invalid") || format!("{avro:?}").contains("Avro"), "{avro:?}");
        let not_object =
            register_schema(&store, &SystemClock, draft("num", SchemaFormat::JsonSchema, json!(5))).await.unwrap_err();
        assert_eq!(pointers(&not_object), ["/schema"]);
    }

    #[tokio::test]
    async fn a_ref_resolves_through_the_registry_and_a_dangling_one_is_refused() {
        let store = MemoryStore::new();
        register_schema(&store, &SystemClock, draft("person", SchemaFormat::JsonSchema, person_v1())).await.unwrap();
        let team =
            json!({"type": "object", "properties": {"lead": {"$ref": "https://example.com/schemas/person/v1.json"}}});
        let (_, team) =
            register_schema(&store, &SystemClock, draft("team", SchemaFormat::JsonSchema, team)).await.unwrap();
        assert_eq!(team.references.iter().map(|r| r.schema.as_str()).collect::<Vec<_>>(), ["person"]);
        let dangling = json!({"$ref": "https://example.com/schemas/nobody.json"});
        let refused = register_schema(&store, &SystemClock, draft("dangling", SchemaFormat::JsonSchema, dangling))
            .await
            .unwrap_err();
        assert_eq!(pointers(&refused), ["/schema"]);
        assert!(format!("{refused:?}").contains("nobody.json"), "{refused:?}");
        // An event definition's schema too, through the default URI of a version.
        let draft = EventDraft {
            name: Some(crate::EventName::parse("teams.formed").unwrap()),
            schema: Some(json!({"$ref": "/schemas/team/versions/1"})),
            ..Default::default()
        };
        let event = events::define_event(&store, &store, &SystemClock, draft).await.unwrap();
        let mut referenced: Vec<&str> = event.schema_references.iter().map(|r| r.schema.as_str()).collect();
        referenced.sort();
        assert_eq!(referenced, ["person", "team"], "transitively");
        let dangling = EventDraft {
            name: Some(crate::EventName::parse("teams.left").unwrap()),
            schema: Some(json!({"$ref": "/schemas/team/versions/9"})),
            ..Default::default()
        };
        assert_eq!(
            pointers(&events::define_event(&store, &store, &SystemClock, dangling).await.unwrap_err()),
            ["/schema"]
        );
        // The referenced schemas now cannot be deleted.
        match delete_schema(&store, &SchemaName::parse("person").unwrap(), None).await {
            Err(Error::SchemaReferenced { referrers, .. }) => assert_eq!(
                referrers,
                [Referrer::Event(event.name.clone()), Referrer::Schema(SchemaName::parse("team").unwrap())]
            ),
            other => panic!("expected SchemaReferenced, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_version_that_breaks_the_mode_is_refused_with_every_incompatibility() {
        let store = MemoryStore::new();
        let name = SchemaName::parse("person").unwrap();
        let v1 = json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}});
        register_schema(&store, &SystemClock, draft("person", SchemaFormat::JsonSchema, v1)).await.unwrap();
        // BACKWARD: a payload valid under v1 (without `email`, or with a string age) must stay valid.
        let breaking = json!({"type": "object", "required": ["email"],
            "properties": {"name": {"type": "string"}, "age": {"type": "string"}, "email": {"type": "string"}}});
        let refused =
            add_version(&store, &SystemClock, &name, SchemaVersionDraft { schema: breaking.clone(), uri: None }).await;
        match refused {
            Err(Error::SchemaIncompatible { mode: Compatibility::Backward, latest: 1, incompatibilities, .. }) => {
                assert!(incompatibilities.len() >= 2, "{incompatibilities:?}");
            }
            other => panic!("expected SchemaIncompatible, got {other:?}"),
        }
        assert_eq!(get_schema(&store, &name).await.unwrap().latest_version, 1, "nothing written");
        // With NONE, anything goes.
        let change = SchemaChange { compatibility: Some(Compatibility::None), description: None };
        let changed = change_schema(&store, &SystemClock, &name, change, Some(Version::FIRST)).await.unwrap();
        assert_eq!(changed.revision, Version(2));
        let (schema, v2) =
            add_version(&store, &SystemClock, &name, SchemaVersionDraft { schema: breaking, uri: None }).await.unwrap();
        assert_eq!((schema.latest_version, schema.revision, v2.version), (2, Version(3), 2));
        // A stale If-Match is refused.
        let stale = change_schema(&store, &SystemClock, &name, SchemaChange::default(), Some(Version(2))).await;
        assert!(matches!(stale, Err(Error::VersionMismatch { current: Version(3), .. })));
    }

    #[tokio::test]
    async fn a_missing_version_says_whether_the_schema_exists() {
        let store = MemoryStore::new();
        register_schema(&store, &SystemClock, draft("person", SchemaFormat::JsonSchema, person_v1())).await.unwrap();
        let name = SchemaName::parse("person").unwrap();
        assert!(matches!(get_version(&store, &name, 2).await, Err(Error::NotFound { what: "schema version", .. })));
        let other = SchemaName::parse("nobody").unwrap();
        assert!(matches!(get_version(&store, &other, 1).await, Err(Error::NotFound { what: "schema", .. })));
    }

    #[tokio::test]
    async fn an_optional_property_added_to_a_closed_schema_keeps_backward_and_to_an_open_one_does_not() {
        let store = MemoryStore::new();
        let v1 = |closed: bool| {
            let mut schema =
                json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}});
            if closed {
                schema["additionalProperties"] = json!(false);
            }
            schema
        };
        let mut v2 = v1(true);
        v2["properties"]["email"] = json!({"type": "string"});
        for (name, closed) in [("closed", true), ("open", false)] {
            register_schema(&store, &SystemClock, draft(name, SchemaFormat::JsonSchema, v1(closed))).await.unwrap();
            let mut next = v2.clone();
            if !closed {
                next.as_object_mut().unwrap().remove("additionalProperties");
            }
            let added = add_version(
                &store,
                &SystemClock,
                &SchemaName::parse(name).unwrap(),
                SchemaVersionDraft { schema: next, uri: None },
            )
            .await;
            // Open: {"name": "x", "email": 5} was valid and would not be.
            assert_eq!(added.is_ok(), closed, "{name}: {added:?}");
        }
    }

    #[tokio::test]
    async fn a_reference_back_that_would_make_a_cycle_is_refused() {
        // GIVEN a, and b whose version 1 refers to it
        let store = MemoryStore::new();
        register_schema(&store, &SystemClock, draft("a", SchemaFormat::JsonSchema, json!({"type": "object"})))
            .await
            .unwrap();
        let b = json!({"properties": {"a": {"$ref": "/schemas/a/versions/1"}}});
        register_schema(&store, &SystemClock, draft("b", SchemaFormat::JsonSchema, b)).await.unwrap();
        // WHEN a's next version refers to b
        let back =
            SchemaVersionDraft { schema: json!({"properties": {"b": {"$ref": "/schemas/b/versions/1"}}}), uri: None };
        let a = SchemaName::parse("a").unwrap();
        let refused = add_version(&store, &SystemClock, &a, back).await.unwrap_err();
        // THEN it is refused: neither could ever be deleted again
        assert_eq!(pointers(&refused), ["/schema"]);
        assert!(format!("{refused:?}").contains("cycle"), "{refused:?}");
        // AND a version referring to its own schema's earlier one is no cycle
        let own = SchemaVersionDraft { schema: json!({"$ref": "/schemas/a/versions/1"}), uri: None };
        let change = SchemaChange { compatibility: Some(Compatibility::None), description: None };
        change_schema(&store, &SystemClock, &a, change, None).await.unwrap();
        add_version(&store, &SystemClock, &a, own).await.unwrap();
    }

    #[tokio::test]
    async fn an_event_or_schema_refers_to_at_most_24_schemas() {
        let store = MemoryStore::new();
        for i in 0..25 {
            let name = format!("part-{i}");
            register_schema(&store, &SystemClock, draft(&name, SchemaFormat::JsonSchema, json!({}))).await.unwrap();
        }
        let refs = |n: usize| {
            let all: Vec<Value> = (0..n).map(|i| json!({"$ref": format!("/schemas/part-{i}/versions/1")})).collect();
            json!({"allOf": all})
        };
        register_schema(&store, &SystemClock, draft("most", SchemaFormat::JsonSchema, refs(24))).await.unwrap();
        let too_many = register_schema(&store, &SystemClock, draft("more", SchemaFormat::JsonSchema, refs(25))).await;
        assert_eq!(pointers(&too_many.unwrap_err()), ["/schema"]);
        let event = EventDraft {
            name: Some(crate::EventName::parse("parts.assembled").unwrap()),
            schema: Some(refs(25)),
            ..Default::default()
        };
        assert_eq!(
            pointers(&events::define_event(&store, &store, &SystemClock, event).await.unwrap_err()),
            ["/schema"]
        );
    }
}
