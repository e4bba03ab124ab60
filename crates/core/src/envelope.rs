//! Resource lifecycle events: the envelope an event declared with `"envelope": "resource"` takes
//! its payloads in, and how its content is checked.
//!
//! ```json
//! {"action": "update", "resource": {"schema": "https://example.com/schemas/person/v2.json",
//!                                   "content": {"name": "Ada"}}}
//! ```
//!
//! The envelope is checked first, against the JSON Schema shipped in
//! `crates/core/schemas/resource-envelope.json`; then `resource.content` against the registered
//! schema version `resource.schema` names, unless the content is a `ResourceReference`
//! (`{"tenantId", "id", "version"}`, numbers, nothing else), which stands for the resource
//! without consulting the registry.

use std::sync::OnceLock;

use serde_json::Value;

use crate::error::Violation;
use crate::formats::{self, ContentValidator, SchemaDocument, SchemaFormat};
use crate::schema::KnownDocuments;

/// The envelope's JSON Schema (draft 2020-12), as shipped.
pub const ENVELOPE_SCHEMA: &str = include_str!("../schemas/resource-envelope.json");

/// Where content violations are reported: under the envelope's `resource.content`.
pub const CONTENT_POINTER: &str = "/resource/content";
/// Where an unknown or malformed schema URI is reported.
pub const SCHEMA_POINTER: &str = "/resource/schema";

/// What an envelope that passed its schema carries.
#[derive(Debug, PartialEq)]
pub enum Content<'a> {
    /// A `ResourceReference`: nothing to check it against.
    Reference,
    /// The resource, to be checked against the registered version `schema` names.
    Resource { schema: &'a str, content: &'a Value },
}

/// Checks `payload` against the envelope's schema: every violation, or what it carries.
pub fn read(payload: &Value) -> Result<Content<'_>, Vec<Violation>> {
    let violations = envelope().violations(payload);
    if !violations.is_empty() {
        return Err(violations);
    }
    // The envelope's schema requires both, as a string and an object.
    let resource = &payload["resource"];
    let content = &resource["content"];
    if reference().is_valid(content) {
        return Ok(Content::Reference);
    }
    Ok(Content::Resource { schema: resource["schema"].as_str().unwrap_or_default(), content })
}

fn envelope() -> &'static ContentValidator {
    static ENVELOPE: OnceLock<ContentValidator> = OnceLock::new();
    ENVELOPE.get_or_init(|| compile(&shipped()))
}

fn reference() -> &'static ContentValidator {
    static REFERENCE: OnceLock<ContentValidator> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let mut definition = shipped()["$defs"]["ResourceReference"].clone();
        definition["$schema"] = shipped()["$schema"].clone();
        compile(&definition)
    })
}

fn shipped() -> Value {
    serde_json::from_str(ENVELOPE_SCHEMA).expect("the shipped envelope schema is JSON (a unit test checks)")
}

fn compile(schema: &Value) -> ContentValidator {
    formats::compile(&SchemaDocument::new(SchemaFormat::JsonSchema, schema), &KnownDocuments::new())
        .expect("the shipped envelope schema compiles (a unit test checks)")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_shipped_schema_is_a_draft_2020_12_schema_that_compiles() {
        let schema = shipped();
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        let _ = envelope();
        let _ = reference();
    }

    #[test]
    fn an_envelope_carries_a_resource_or_a_reference() {
        let person = json!({"action": "create", "resource": {"schema": "urn:person:1", "content": {"name": "Ada"}}});
        assert_eq!(read(&person), Ok(Content::Resource { schema: "urn:person:1", content: &json!({"name": "Ada"}) }));
        for action in ["create", "update", "delete"] {
            let reference = json!({"action": action, "resource": {"schema": "urn:person:1",
                "content": {"tenantId": 1, "id": 42, "version": 3}}});
            assert_eq!(read(&reference), Ok(Content::Reference), "{action}");
        }
        let more = json!({"action": "delete", "resource": {"schema": "urn:person:1",
            "content": {"tenantId": 1, "id": 42, "version": 3, "name": "Ada"}}});
        assert!(matches!(read(&more), Ok(Content::Resource { .. })), "a reference holds nothing else");
        let strings = json!({"action": "delete", "resource": {"schema": "urn:person:1",
            "content": {"tenantId": "1", "id": 42, "version": 3}}});
        assert!(matches!(read(&strings), Ok(Content::Resource { .. })), "a reference's fields are numbers");
    }

    #[test]
    fn a_broken_envelope_lists_every_violation_with_its_pointer() {
        let found = read(&json!({"action": "rename", "resource": {"content": []}})).unwrap_err();
        let pointers: Vec<&str> = found.iter().map(|v| v.pointer.as_str()).collect();
        assert!(pointers.contains(&"/action"), "{found:?}");
        assert!(pointers.contains(&"/resource"), "schema is required: {found:?}");
        assert!(pointers.contains(&"/resource/content"), "content is an object: {found:?}");
        assert!(!read(&json!([])).unwrap_err().is_empty());
        assert!(read(&json!({"action": "create", "resource": {"schema": "", "content": {}}})).is_err());
    }
}
