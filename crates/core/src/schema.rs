//! Validating against schemas: an event definition's own JSON Schema, and registered schema
//! versions (JSON Schema or Avro), each compiled once per process, with the registered documents
//! it `$ref`s loaded through the registry, never fetched.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::error::{Error, Result, Violation};
use crate::formats::{self, ContentValidator, SchemaDocument, SchemaFormat};
use crate::ids::{EventName, SchemaUri};
use crate::model::{EventDefinition, SchemaReference, SchemaVersion};
use crate::ports::SchemaLookup;

/// A payload can fail many ways at once; past this many the rest are counted, not listed.
const MAX_VIOLATIONS: usize = 100;
/// Compiled validators kept at most; past this the cache starts over (schemas change rarely).
const MAX_CACHED: usize = 1024;
/// Most registered documents one schema may reach through `$ref`, as the compiler allows.
const MAX_REFERENCES: usize = 256;
/// Most schemas (each counted once, whatever its versions) one event or schema may refer to: each
/// is a referrer edge and a count the cloud store keeps in the transaction that writes the
/// referrer, and a replace may swap every one for others within DynamoDB's 100 actions.
pub const MAX_REFERRED_SCHEMAS: usize = 24;

/// Every way `payload` breaks `validator`, each with its JSON pointer into the payload.
pub fn violations(validator: &jsonschema::Validator, payload: &Value) -> Vec<Violation> {
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

/// SHA-256 of a schema document's JSON text ([`document_digest`]), or of what a registered
/// version's validator is compiled from: its URI (the base its relative `$ref`s resolve against),
/// format and document digest, and the digests of every document it `$ref`s.
///
/// Not a URI alone: a schema deleted and registered again may reuse its URIs, and a cache keyed
/// by URI would validate against the deleted document, in every process that had compiled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SchemaDigest([u8; 32]);

impl SchemaDigest {
    pub fn of(schema: &Value) -> Self {
        Self::of_parts(&[Part::Json(schema)])
    }

    /// The key of a registered version.
    pub fn of_version(version: &SchemaVersion) -> Self {
        let mut parts = vec![
            Part::Text("version"),
            Part::Text(version.uri.as_str()),
            Part::Text(version.format.as_str()),
            Part::Text(&version.digest),
        ];
        parts.extend(version.references.iter().flat_map(|r| [Part::Text(r.uri.as_str()), Part::Text(&r.digest)]));
        Self::of_parts(&parts)
    }

    fn of_parts(parts: &[Part<'_>]) -> Self {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                hash.update([0]);
            }
            match part {
                // Serializing a `Value` cannot fail (its map keys are strings); the writer never errors.
                Part::Json(value) => drop(serde_json::to_writer(HashWriter(&mut hash), value)),
                Part::Text(text) => hash.update(text.as_bytes()),
            }
        }
        Self(hash.finalize().into())
    }

    pub fn hex(&self) -> String {
        self.0.iter().fold(String::with_capacity(64), |mut hex, b| {
            use std::fmt::Write;
            let _ = write!(hex, "{b:02x}");
            hex
        })
    }
}

enum Part<'a> {
    Json(&'a Value),
    Text(&'a str),
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

/// The digest a registered version's document is known by (hex): what a reference to it records.
pub fn document_digest(document: &Value) -> String {
    SchemaDigest::of(document).hex()
}

/// Compiled validators, so that a trigger compiles nothing it compiled before and always
/// validates against the schema it was given.
///
/// An event's validator is kept under the event's name with the schema (and references) it was
/// compiled from, and used only while the definition read holds an equal schema: an event
/// deleted and defined again, at version 1 with another schema, gets its own validator in every
/// process. Comparing the two schemas costs a fraction of hashing one (a trigger would have to
/// serialize and digest the schema it read each time), and trusts nothing stored beside it.
/// A registered version's validator is kept under the digest of what it was compiled from
/// ([`SchemaDigest::of_version`]): its URI, its document's digest and its references'.
#[derive(Default)]
pub struct SchemaCache {
    events: RwLock<HashMap<EventName, Compiled>>,
    versions: RwLock<HashMap<SchemaDigest, Arc<ContentValidator>>>,
}

/// An event schema's validator, with what it was compiled from.
struct Compiled {
    schema: Arc<Value>,
    references: Vec<SchemaReference>,
    validator: Arc<ContentValidator>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// Inserts, starting over past [`MAX_CACHED`] entries (schemas change rarely).
fn insert_bounded<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, key: K, value: V) {
    if map.len() >= MAX_CACHED {
        map.clear();
    }
    map.insert(key, value);
}

impl SchemaCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The validator of an event definition's own schema (`schema`, the definition's), compiling
    /// it on first use.
    ///
    /// Stored schemas compiled when they were written, so a failure here means the store holds
    /// something the API never accepted; it is reported, not hidden.
    pub async fn event_validator(
        &self,
        lookup: &dyn SchemaLookup,
        definition: &EventDefinition,
        schema: &Arc<Value>,
    ) -> Result<Arc<ContentValidator>> {
        let mut equal_elsewhere = None;
        if let Some(found) = read(&self.events).get(&definition.name) {
            if found.references == definition.schema_references {
                if Arc::ptr_eq(&found.schema, schema) {
                    return Ok(found.validator.clone());
                }
                if found.schema == *schema {
                    equal_elsewhere = Some(found.validator.clone());
                }
            }
        }
        if let Some(validator) = equal_elsewhere {
            // The same schema read into another allocation (a store's cache of definitions that
            // was filled after this entry): keep the one the store now hands out, so the next
            // trigger compares pointers instead of walking the whole schema again.
            if let Some(found) = write(&self.events).get_mut(&definition.name) {
                if found.schema == *schema {
                    found.schema = schema.clone();
                }
            }
            return Ok(validator);
        }
        let known = load_recorded(lookup, &definition.schema_references).await?;
        let compiled =
            formats::compile(&SchemaDocument::new(SchemaFormat::JsonSchema, schema), &known).map_err(|message| {
                Error::unavailable(format!("stored schema of '{}' does not compile: {message}", definition.name))
            })?;
        let validator = Arc::new(compiled);
        let entry = Compiled {
            schema: schema.clone(),
            references: definition.schema_references.clone(),
            validator: validator.clone(),
        };
        insert_bounded(&mut write(&self.events), definition.name.clone(), entry);
        Ok(validator)
    }

    /// The validator of a registered version, compiling it on first use.
    pub async fn version_validator(
        &self,
        lookup: &dyn SchemaLookup,
        version: &SchemaVersion,
    ) -> Result<Arc<ContentValidator>> {
        let key = SchemaDigest::of_version(version);
        if let Some(found) = read(&self.versions).get(&key) {
            return Ok(found.clone());
        }
        let known = load_recorded(lookup, &version.references).await?;
        let document = SchemaDocument::new(version.format, &version.schema).at(version.uri.as_str());
        let compiled = formats::compile(&document, &known).map_err(|message| {
            Error::unavailable(format!(
                "stored version {} of schema '{}' does not compile: {message}",
                version.version, version.name
            ))
        })?;
        let validator = Arc::new(compiled);
        insert_bounded(&mut write(&self.versions), key, validator.clone());
        Ok(validator)
    }

    /// How many validators are compiled and kept.
    pub fn len(&self) -> usize {
        read(&self.events).len() + read(&self.versions).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The registered documents a schema reaches, by URI, as the compiler takes them.
pub type KnownDocuments = HashMap<String, (SchemaFormat, Arc<Value>)>;

/// What a schema being written `$ref`s, found through the registry.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Every registered version reached, directly or not, in URI order.
    pub references: Vec<SchemaReference>,
    /// Their documents, for compiling.
    pub known: KnownDocuments,
    /// The URIs `$ref`d that name no registered version.
    pub missing: Vec<String>,
    /// Every registered version reached, as read.
    pub versions: Vec<SchemaVersion>,
}

impl Resolved {
    /// What is wrong with what the schema `own` (none: an event's) reaches, at `pointer`: too
    /// many schemas, or a schema that refers back to `own`, which would make a cycle that could
    /// never be deleted (neither schema can go while the other refers to it).
    pub fn refusals(&self, own: Option<&crate::ids::SchemaName>, pointer: &str) -> Vec<Violation> {
        let mut found = Vec::new();
        let mut referred: Vec<&crate::ids::SchemaName> =
            self.references.iter().map(|r| &r.schema).filter(|s| Some(*s) != own).collect();
        referred.sort();
        referred.dedup();
        if referred.len() > MAX_REFERRED_SCHEMAS {
            found.push(Violation::new(
                pointer,
                format!(
                    "the schema refers to {} registered schemas; at most {MAX_REFERRED_SCHEMAS} may be referred to by one \
                     event or schema (each counted once, whatever its versions)",
                    referred.len()
                ),
            ));
        }
        if let Some(own) = own {
            let back = self.versions.iter().find(|v| v.name != *own && v.references.iter().any(|r| r.schema == *own));
            if let Some(back) = back {
                found.push(Violation::new(
                    pointer,
                    format!(
                        "version {} of schema '{}' refers to schema '{own}': a reference back to it would make a cycle \
                         neither could ever be deleted from",
                        back.version, back.name
                    ),
                ));
            }
        }
        found
    }
}

/// Follows a schema's `$ref`s through the registry, transitively, when it is written: what it
/// reaches is recorded (see [`SchemaReference`]) and what it cannot reach is refused by the
/// caller. Nothing is fetched from the network.
pub async fn resolve_references(lookup: &dyn SchemaLookup, schema: &SchemaDocument<'_>) -> Result<Resolved> {
    let mut resolved = Resolved::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut queue: VecDeque<String> = formats::references(schema).into();
    if let Some(own) = schema.uri {
        seen.insert(own.to_owned());
    }
    while let Some(uri) = queue.pop_front() {
        if !seen.insert(uri.clone()) {
            continue;
        }
        if resolved.references.len() >= MAX_REFERENCES {
            return Err(Error::invalid_body(vec![Violation::new(
                "/schema",
                format!("the schema reaches more than {MAX_REFERENCES} registered documents through $ref"),
            )]));
        }
        // (A URI too long to be registered names nothing registered.)
        let Ok(parsed) = SchemaUri::parse(&uri) else {
            resolved.missing.push(uri);
            continue;
        };
        match lookup.schema_by_uri(&parsed).await? {
            None => resolved.missing.push(uri),
            Some(version) => {
                let document = SchemaDocument::new(version.format, &version.schema).at(version.uri.as_str());
                queue.extend(formats::references(&document));
                resolved.known.insert(version.uri.to_string(), (version.format, version.schema.clone()));
                resolved.references.push(version.as_reference());
                resolved.versions.push(version);
            }
        }
    }
    resolved.references.sort();
    Ok(resolved)
}

/// The documents recorded references name, loaded for compiling; each must still be the document
/// referred to (its digest), or the registry changed under a definition that refers to it, which
/// the stores do not allow.
async fn load_recorded(lookup: &dyn SchemaLookup, references: &[SchemaReference]) -> Result<KnownDocuments> {
    let mut known = KnownDocuments::with_capacity(references.len());
    for reference in references {
        let version = lookup.schema_by_uri(&reference.uri).await?;
        match version {
            Some(version) if version.digest == reference.digest => {
                known.insert(version.uri.to_string(), (version.format, version.schema));
            }
            _ => {
                return Err(Error::unavailable(format!(
                    "the registry no longer holds version {} of schema '{}' at '{}' as it was referred to",
                    reference.version, reference.schema, reference.uri
                )))
            }
        }
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::memory::MemoryStore;

    fn json_schema(document: &Value) -> ContentValidator {
        formats::compile(&SchemaDocument::new(SchemaFormat::JsonSchema, document), &KnownDocuments::new()).unwrap()
    }

    fn definition(schema: Value) -> EventDefinition {
        let mut definition = crate::fixtures::definition("cache.test");
        definition.schema = Some(Arc::new(schema));
        definition
    }

    #[test]
    fn every_violation_is_listed_with_its_pointer() {
        let v = json_schema(&json!({
            "type": "object",
            "required": ["id"],
            "properties": {"qty": {"type": "integer", "minimum": 1}, "sku": {"type": "string"}}
        }));
        let found = v.violations(&json!({"qty": 0, "sku": 5}));
        let pointers: Vec<&str> = found.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(pointers.contains(&"/qty") && pointers.contains(&"/sku") && pointers.contains(&""));
    }

    #[test]
    fn older_drafts_named_by_dollar_schema_are_honoured() {
        // exclusiveMaximum is a boolean in draft 4 and a number from draft 6 on.
        let d4 = json_schema(
            &json!({"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 5, "exclusiveMaximum": true}),
        );
        assert!(!d4.is_valid(&json!(5)));
        let later = formats::compile(
            &SchemaDocument::new(SchemaFormat::JsonSchema, &json!({"maximum": 5, "exclusiveMaximum": true})),
            &KnownDocuments::new(),
        );
        assert!(later.is_err());
    }

    #[tokio::test]
    async fn the_cache_compiles_each_schema_once() {
        let (cache, store) = (SchemaCache::new(), MemoryStore::new());
        let d = definition(json!({"type": "string"}));
        let first = cache.event_validator(&store, &d, d.schema.as_ref().unwrap()).await.unwrap();
        let again = cache.event_validator(&store, &d, d.schema.as_ref().unwrap()).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn an_equal_schema_read_again_reuses_the_validator_and_is_then_compared_by_pointer() {
        // GIVEN a validator compiled from one read of a definition
        let (cache, store) = (SchemaCache::new(), MemoryStore::new());
        let first_read = definition(json!({"type": "string"}));
        let first = cache.event_validator(&store, &first_read, first_read.schema.as_ref().unwrap()).await.unwrap();
        // WHEN the same schema comes again in another allocation (another read)
        let second_read = definition(json!({"type": "string"}));
        let second = second_read.schema.as_ref().unwrap();
        assert!(!Arc::ptr_eq(first_read.schema.as_ref().unwrap(), second));
        let again = cache.event_validator(&store, &second_read, second).await.unwrap();
        // THEN nothing is compiled again, and the entry now holds that allocation
        assert!(Arc::ptr_eq(&first, &again));
        let held = read(&cache.events).get(&second_read.name).map(|c| c.schema.clone()).unwrap();
        assert!(Arc::ptr_eq(&held, second));
    }

    #[tokio::test]
    async fn a_different_schema_gets_its_own_validator_whatever_it_belongs_to() {
        let (cache, store) = (SchemaCache::new(), MemoryStore::new());
        let (a, b) = (definition(json!({"required": ["a"]})), definition(json!({"required": ["b"]})));
        let requires_a = cache.event_validator(&store, &a, a.schema.as_ref().unwrap()).await.unwrap();
        let requires_b = cache.event_validator(&store, &b, b.schema.as_ref().unwrap()).await.unwrap();
        assert!(requires_a.is_valid(&json!({"a": 1})) && !requires_a.is_valid(&json!({"b": 1})));
        assert!(requires_b.is_valid(&json!({"b": 1})) && !requires_b.is_valid(&json!({"a": 1})));
    }

    #[test]
    fn digests_differ_with_content_and_agree_with_equal_content() {
        assert_eq!(SchemaDigest::of(&json!({"a": [1, 2]})), SchemaDigest::of(&json!({"a": [1, 2]})));
        assert_ne!(SchemaDigest::of(&json!({"a": [1, 2]})), SchemaDigest::of(&json!({"a": [2, 1]})));
        assert_ne!(SchemaDigest::of(&json!({"type": "string"})), SchemaDigest::of(&json!({"type": "integer"})));
        let version = |digest: &str| SchemaVersion {
            name: crate::SchemaName::parse("a").unwrap(),
            version: 1,
            uri: SchemaUri::parse("urn:a").unwrap(),
            format: SchemaFormat::JsonSchema,
            schema: Arc::new(json!({})),
            digest: digest.into(),
            references: Vec::new(),
            created_at: chrono::Utc::now(),
        };
        assert_ne!(
            SchemaDigest::of_version(&version("1")),
            SchemaDigest::of_version(&version("2")),
            "the same URI over another document is another validator"
        );
    }
}
