//! The schema registry's two formats, JSON Schema and Avro: what a schema refers to, compiling it
//! into a validator for JSON content, and whether a new version keeps a compatibility mode.
//!
//! Everything here is pure and offline. A JSON Schema `$ref` resolves only to documents the caller
//! hands over through [`KnownSchemas`] (the registry's store); nothing is ever fetched. The caller
//! loads what [`references`] lists, and what those list in turn, before calling [`compile`] or
//! [`incompatibilities`].
//!
//! URIs are compared in one normal form, [`normalize_uri`]: absolute URIs are normalized
//! (RFC 3986), and a URI without a scheme, such as a default `/schemas/{name}/versions/{n}`, stays
//! a path from the registry's root. The registry stores every version's URI in that form, and
//! [`references`] and [`declared_id`] return that form.
//!
//! Avro content is plain JSON, not Avro's JSON encoding; see the `avro` module for the mapping.

mod avro;
mod compatibility;
mod json_schema;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Violation;

/// A payload can fail many ways at once; past this many the rest are counted, not listed.
const MAX_VIOLATIONS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum SchemaFormat {
    #[serde(rename = "json-schema")]
    JsonSchema,
    #[serde(rename = "avro")]
    Avro,
}

impl SchemaFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JsonSchema => "json-schema",
            Self::Avro => "avro",
        }
    }
}

impl fmt::Display for SchemaFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which payloads a new version must keep accepting, as in Confluent's registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Compatibility {
    /// Every payload valid under the previous version is valid under the new one.
    #[default]
    Backward,
    /// Every payload valid under the new version is valid under the previous one.
    Forward,
    /// Both.
    Full,
    /// No check.
    None,
}

impl Compatibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backward => "BACKWARD",
            Self::Forward => "FORWARD",
            Self::Full => "FULL",
            Self::None => "NONE",
        }
    }

    fn checks_backward(self) -> bool {
        matches!(self, Self::Backward | Self::Full)
    }

    fn checks_forward(self) -> bool {
        matches!(self, Self::Forward | Self::Full)
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason a new version breaks the mode, located by a JSON pointer into the NEW schema document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Incompatibility {
    /// JSON pointer (RFC 6901) into the new version's schema document; empty for the whole document.
    pub pointer: String,
    pub reason: String,
}

impl Incompatibility {
    pub fn new(pointer: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { pointer: pointer.into(), reason: reason.into() }
    }
}

/// The registered documents a schema may refer to, looked up by URI (in [`normalize_uri`]'s form),
/// offline. The caller (which holds the store) loads what [`references`] says before calling
/// anything here.
pub trait KnownSchemas {
    fn document(&self, uri: &str) -> Option<(SchemaFormat, Arc<Value>)>;
}

/// A map of them, for callers and tests.
impl KnownSchemas for HashMap<String, (SchemaFormat, Arc<Value>)> {
    fn document(&self, uri: &str) -> Option<(SchemaFormat, Arc<Value>)> {
        self.get(uri).cloned()
    }
}

/// A schema document of either format, with the URI it is (or is about to be) registered under.
///
/// The URI is the base that a JSON Schema's relative `$ref`s and `$id` resolve against, as the
/// specification makes a document's retrieval URI its base; `None` for a schema written inline
/// (an event definition's), whose relative references then resolve from the registry's root.
#[derive(Clone, Copy, Debug)]
pub struct SchemaDocument<'a> {
    pub format: SchemaFormat,
    pub document: &'a Value,
    pub uri: Option<&'a str>,
}

impl<'a> SchemaDocument<'a> {
    /// A document written inline, registered under no URI.
    pub fn new(format: SchemaFormat, document: &'a Value) -> Self {
        Self { format, document, uri: None }
    }

    /// The same document, registered under `uri`.
    pub fn at(self, uri: &'a str) -> Self {
        Self { uri: Some(uri), ..self }
    }
}

/// The normal form in which URIs are stored and compared: normalized per RFC 3986 (lowercase
/// scheme and host, dot segments removed, unreserved percent-escapes decoded), an empty fragment
/// dropped, and a reference without a scheme read as a path from the registry's root
/// (`schemas/a` and `/schemas/a` are both `/schemas/a`). A URI with a fragment names a part of a
/// document, not a document, and is refused.
pub fn normalize_uri(uri: &str) -> Result<String, String> {
    json_schema::normalize_uri(uri)
}

/// Every URI outside the document that a JSON Schema `$ref`s (resolved against its `$id`, else its
/// URI; fragment stripped; in [`normalize_uri`]'s form), so that the caller can load them (and,
/// transitively, theirs: call this again on each loaded document, with the URI it was found
/// under). The standard drafts' meta-schemas are never listed: the validator bundles them.
///
/// Avro: always empty. An Avro schema must define every named type it uses; cross-schema Avro
/// references are not supported.
pub fn references(schema: &SchemaDocument<'_>) -> Vec<String> {
    match schema.format {
        SchemaFormat::JsonSchema => json_schema::references(schema.document, schema.uri),
        SchemaFormat::Avro => Vec::new(),
    }
}

/// Compiles a schema for validating JSON content: JSON Schema (draft 2020-12 unless `$schema`
/// names another) with `known` as the only source of `$ref`d documents, so an unknown URI is an
/// error naming it and nothing is fetched; Avro parsed with apache-avro. Err(the compiler's or
/// parser's message).
pub fn compile(schema: &SchemaDocument<'_>, known: &dyn KnownSchemas) -> Result<ContentValidator, String> {
    let inner = match schema.format {
        SchemaFormat::JsonSchema => Inner::Json(json_schema::compile(schema.document, schema.uri, known)?),
        SchemaFormat::Avro => Inner::Avro(avro::AvroValidator::compile(schema.document)?),
    };
    Ok(ContentValidator { inner })
}

/// A compiled content validator of either format; Send + Sync, cheap to share behind an Arc.
pub struct ContentValidator {
    inner: Inner,
}

enum Inner {
    Json(jsonschema::Validator),
    Avro(avro::AvroValidator),
}

impl ContentValidator {
    pub fn format(&self) -> SchemaFormat {
        match self.inner {
            Inner::Json(_) => SchemaFormat::JsonSchema,
            Inner::Avro(_) => SchemaFormat::Avro,
        }
    }

    /// Every way `content` breaks the schema, each with its JSON pointer into `content`: at most
    /// 100, then one more saying how many were left out.
    pub fn violations(&self, content: &Value) -> Vec<Violation> {
        match &self.inner {
            Inner::Json(validator) => crate::schema::violations(validator, content),
            Inner::Avro(validator) => capped(validator.violations(content)),
        }
    }

    pub fn is_valid(&self, content: &Value) -> bool {
        match &self.inner {
            Inner::Json(validator) => validator.is_valid(content),
            Inner::Avro(validator) => validator.violations(content).is_empty(),
        }
    }
}

impl fmt::Debug for ContentValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentValidator").field("format", &self.format()).finish_non_exhaustive()
    }
}

fn capped(mut found: Vec<Violation>) -> Vec<Violation> {
    if found.len() > MAX_VIOLATIONS {
        let extra = found.len() - MAX_VIOLATIONS;
        found.truncate(MAX_VIOLATIONS);
        found.push(Violation::new("", format!("and {extra} more violation(s)")));
    }
    found
}

/// What breaks `mode` when `next` follows `previous`; empty = compatible. A change of format is
/// one incompatibility. JSON Schema: the conservative checker of the `compatibility` module, whose
/// rules are tabled there (it may refuse a change it cannot prove safe, never accepts one that
/// breaks the mode); `known` serves the documents they `$ref`. Avro: the schema-resolution rules of
/// the Avro specification, as apache-avro implements them, plus the two places where JSON content
/// needs more (a field's default dropped, a string `uuid` made fixed-size; see the `avro` module).
pub fn incompatibilities(
    mode: Compatibility,
    previous: &SchemaDocument<'_>,
    next: &SchemaDocument<'_>,
    known: &dyn KnownSchemas,
) -> Vec<Incompatibility> {
    if mode == Compatibility::None {
        return Vec::new();
    }
    if previous.format != next.format {
        return vec![Incompatibility::new(
            "",
            format!(
                "the format changed from {} to {}; a new version keeps its schema's format",
                previous.format, next.format
            ),
        )];
    }
    match next.format {
        SchemaFormat::JsonSchema => compatibility::incompatibilities(mode, previous, next, known),
        SchemaFormat::Avro => avro::incompatibilities(mode, previous.document, next.document),
    }
}

/// The `$id` a JSON Schema declares at its root, if any (the version's default URI), in
/// [`normalize_uri`]'s form; `None` for one that is not a valid URI without a fragment (it will
/// not compile either). Avro: always `None`.
pub fn declared_id(format: SchemaFormat, document: &Value) -> Option<String> {
    match format {
        SchemaFormat::JsonSchema => json_schema::declared_id(document),
        SchemaFormat::Avro => None,
    }
}

/// The JSON pointer to `key` in the object at `at` (RFC 6901 escaping).
fn child(at: &str, key: &str) -> String {
    format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn index(at: &str, i: usize) -> String {
    format!("{at}/{i}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn formats_and_modes_use_the_apis_names() {
        assert_eq!(serde_json::to_value(SchemaFormat::JsonSchema).unwrap(), json!("json-schema"));
        assert_eq!(serde_json::from_value::<SchemaFormat>(json!("avro")).unwrap(), SchemaFormat::Avro);
        assert_eq!(serde_json::to_value(Compatibility::Full).unwrap(), json!("FULL"));
        assert_eq!(serde_json::from_value::<Compatibility>(json!("NONE")).unwrap(), Compatibility::None);
        assert!(serde_json::from_value::<Compatibility>(json!("backward")).is_err());
        assert_eq!(Compatibility::default(), Compatibility::Backward);
    }

    #[test]
    fn a_validator_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<ContentValidator>();
    }

    #[test]
    fn a_map_serves_as_the_known_schemas() {
        let mut known: HashMap<String, (SchemaFormat, Arc<Value>)> = HashMap::new();
        known.insert("urn:a".into(), (SchemaFormat::Avro, Arc::new(json!("string"))));
        let known: &dyn KnownSchemas = &known;
        assert_eq!(known.document("urn:a").map(|(format, _)| format), Some(SchemaFormat::Avro));
        assert!(known.document("urn:b").is_none());
    }

    #[test]
    fn json_schema_content_violations_are_capped_like_any_payloads() {
        let validator = compile(
            &SchemaDocument::new(SchemaFormat::JsonSchema, &json!({"items": {"type": "string"}})),
            &HashMap::new(),
        )
        .unwrap();
        let found = validator.violations(&json!(vec![1; 150]));
        assert_eq!(found.len(), 101);
        assert_eq!((found[7].pointer.as_str(), found[100].message.as_str()), ("/7", "and 50 more violation(s)"));
    }

    #[test]
    fn avro_schemas_reference_nothing_and_declare_no_id() {
        let schema = json!({"type": "record", "name": "R", "fields": [], "$id": "https://example.com/r"});
        assert!(references(&SchemaDocument::new(SchemaFormat::Avro, &schema)).is_empty());
        assert_eq!(declared_id(SchemaFormat::Avro, &schema), None);
    }
}
