//! Payload schemas: compiling a definition's JSON Schema once, and validating payloads against it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::error::Violation;
use crate::ids::{EventName, Version};

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

/// Compiled validators by event name and definition version: a trigger compiles nothing.
#[derive(Default)]
pub struct SchemaCache {
    validators: RwLock<HashMap<(EventName, Version), Arc<Validator>>>,
}

impl SchemaCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The validator for `name` at `version`, compiling `schema` on first use.
    ///
    /// Stored schemas compiled when they were written, so a failure here means the store holds
    /// something the API never accepted; it is reported, not hidden.
    pub fn validator(&self, name: &EventName, version: Version, schema: &Value) -> Result<Arc<Validator>, String> {
        let key = (name.clone(), version);
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
    fn the_cache_compiles_once_per_version() {
        let cache = SchemaCache::new();
        let name = EventName::parse("a").unwrap();
        let first = cache.validator(&name, Version(1), &json!({"type": "string"})).unwrap();
        let again = cache.validator(&name, Version(1), &json!({"type": "integer"})).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let next = cache.validator(&name, Version(2), &json!({"type": "integer"})).unwrap();
        assert!(next.is_valid(&json!(3)));
    }
}
