//! Payload schemas: compiling a definition's JSON Schema once, and validating payloads against it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::error::Violation;

pub type Validator = jsonschema::Validator;

/// A payload can fail many ways at once; past this many the rest are counted, not listed.
const MAX_VIOLATIONS: usize = 100;
/// Compiled validators kept at most; past this the cache starts over (definitions change rarely).
const MAX_CACHED: usize = 1024;

/// Compiles `schema` (draft 2020-12 unless its `$schema` names another supported draft).
///
/// Remote `$ref`s are not fetched: the crate is built without its resolvers, so a schema that
/// needs one does not compile and the definition is refused.
pub fn compile(schema: &Value) -> Result<Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| e.to_string())
}

/// Every way `payload` breaks `validator`, each with its JSON pointer into the payload.
pub fn violations(validator: &Validator, payload: &Value) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut extra = 0usize;
    for error in validator.iter_errors(payload) {
        if found.len() < MAX_VIOLATIONS {
            found.push(Violation::new(error.instance_path().as_str(), error.to_string()));
        } else {
            extra += 1;
        }
    }
    if extra > 0 {
        found.push(Violation::new("", format!("and {extra} more violation(s)")));
    }
    found
}

/// SHA-256 of a schema's JSON text: what identifies a compiled validator.
///
/// Not the event's name and version: an event deleted and defined again starts at version 1
/// with another schema, and a cache keyed by name and version would validate its payloads
/// against the deleted one, in every process that had compiled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SchemaDigest([u8; 32]);

impl SchemaDigest {
    pub fn of(schema: &Value) -> Self {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        // Serializing a `Value` cannot fail (its map keys are strings); the writer never errors.
        let _ = serde_json::to_writer(HashWriter(&mut hash), schema);
        Self(hash.finalize().into())
    }
}

/// Feeds serialized JSON straight into the hash, without building the text first.
struct HashWriter<'a>(&'a mut sha2::Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(self.0, bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Compiled validators by the digest of their schema: a trigger compiles nothing it has
/// compiled before, and always validates against the schema it was given.
#[derive(Default)]
pub struct SchemaCache {
    validators: RwLock<HashMap<SchemaDigest, Arc<Validator>>>,
}

impl SchemaCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The validator for `schema`, compiling it on first use.
    ///
    /// Stored schemas compiled when they were written, so a failure here means the store holds
    /// something the API never accepted; it is reported, not hidden.
    pub fn validator(&self, schema: &Value) -> Result<Arc<Validator>, String> {
        let key = SchemaDigest::of(schema);
        if let Some(found) = self.validators.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(found.clone());
        }
        let compiled = Arc::new(compile(schema)?);
        let mut validators = self.validators.write().unwrap_or_else(|p| p.into_inner());
        if validators.len() >= MAX_CACHED {
            validators.clear();
        }
        validators.insert(key, compiled.clone());
        Ok(compiled)
    }

    /// How many validators are compiled and kept.
    pub fn len(&self) -> usize {
        self.validators.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_violation_is_listed_with_its_pointer() {
        let v = compile(&json!({
            "type": "object",
            "required": ["id"],
            "properties": {"qty": {"type": "integer", "minimum": 1}, "sku": {"type": "string"}}
        }))
        .unwrap();
        let found = violations(&v, &json!({"qty": 0, "sku": 5}));
        let pointers: Vec<&str> = found.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(pointers.contains(&"/qty") && pointers.contains(&"/sku") && pointers.contains(&""));
    }

    #[test]
    fn a_schema_that_breaks_its_metaschema_does_not_compile() {
        let err = compile(&json!({"type": 5})).unwrap_err();
        assert!(!err.is_empty());
    }

    #[tokio::test]
    async fn a_remote_ref_is_refused_without_fetching_or_panicking_in_async_code() {
        assert!(compile(&json!({"$ref": "https://example.com/schema.json"})).is_err());
    }

    #[test]
    fn older_drafts_named_by_dollar_schema_are_honoured() {
        // exclusiveMaximum is a boolean in draft 4 and a number from draft 6 on.
        let d4 = compile(
            &json!({"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 5, "exclusiveMaximum": true}),
        )
        .unwrap();
        assert!(!d4.is_valid(&json!(5)));
        assert!(compile(&json!({"maximum": 5, "exclusiveMaximum": true})).is_err());
    }

    #[test]
    fn the_cache_compiles_each_schema_once() {
        let cache = SchemaCache::new();
        let first = cache.validator(&json!({"type": "string"})).unwrap();
        let again = cache.validator(&json!({"type": "string"})).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
    }

    #[test]
    fn a_different_schema_gets_its_own_validator_whatever_it_belongs_to() {
        let cache = SchemaCache::new();
        let requires_a = cache.validator(&json!({"required": ["a"]})).unwrap();
        let requires_b = cache.validator(&json!({"required": ["b"]})).unwrap();
        assert!(requires_a.is_valid(&json!({"a": 1})) && !requires_a.is_valid(&json!({"b": 1})));
        assert!(requires_b.is_valid(&json!({"b": 1})) && !requires_b.is_valid(&json!({"a": 1})));
    }

    #[test]
    fn digests_differ_with_content_and_agree_with_equal_content() {
        assert_eq!(SchemaDigest::of(&json!({"a": [1, 2]})), SchemaDigest::of(&json!({"a": [1, 2]})));
        assert_ne!(SchemaDigest::of(&json!({"a": [1, 2]})), SchemaDigest::of(&json!({"a": [2, 1]})));
        assert_ne!(SchemaDigest::of(&json!({"type": "string"})), SchemaDigest::of(&json!({"type": "integer"})));
    }
}
