//! JSON Schema documents: the URIs they `$ref`, their declared `$id`, and compiling them with the
//! registry's documents as the only source of references.
//!
//! The jsonschema crate is built without its resolvers (no HTTP, no files), and the retriever
//! handed to it answers from a map of registered documents loaded before compiling, so a `$ref`
//! to anything else is a compile error naming the URI, and nothing is ever fetched.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jsonschema::{Draft, Retrieve, Uri};
use serde_json::Value;

use super::{KnownSchemas, SchemaFormat};

/// The base a document without `$id` or URI has: referencing's own default root, which a
/// reference without a scheme resolves against. Keys drop the scheme, leaving the path.
const ROOT: &str = "json-schema:///";
const ROOT_SCHEME: &str = "json-schema://";

/// Registered documents followed from one schema at most: bounds the work a cycle of documents or
/// a very wide graph can cause.
pub(super) const MAX_DOCUMENTS: usize = 256;

pub(super) type Documents = HashMap<String, (SchemaFormat, Arc<Value>)>;

pub(super) fn normalize_uri(uri: &str) -> Result<String, String> {
    let parsed = jsonschema::uri::from_str(uri).map_err(|e| format!("'{uri}' is not a valid URI: {e}"))?;
    let text = parsed.as_str();
    let (document, fragment) = text.split_once('#').unwrap_or((text, ""));
    if !fragment.is_empty() {
        return Err(format!("'{uri}' has a fragment; a schema's URI names a whole document"));
    }
    Ok(key(document))
}

/// The registry's form of an absolute, fragmentless URI: paths under [`ROOT`] lose its scheme.
pub(super) fn key(absolute: &str) -> String {
    match absolute.strip_prefix(ROOT_SCHEME) {
        Some(path) => path.to_owned(),
        None => absolute.to_owned(),
    }
}

/// The absolute form of a registry URI (the inverse of [`key`]), as referencing resolves against.
pub(super) fn absolute(uri: Option<&str>) -> Uri<String> {
    let root = || jsonschema::uri::from_str(ROOT).expect("the root URI parses");
    match uri {
        Some(uri) => jsonschema::uri::from_str(uri).unwrap_or_else(|_| root()),
        None => root(),
    }
}

/// The draft a document is read under: its `$schema`, else 2020-12.
pub(super) fn draft_of(document: &Value) -> Draft {
    Draft::default().detect(document)
}

/// The identifier a subschema declares under `draft`'s rules (referencing's own `id_of`, which
/// the crate keeps private): draft 4 uses `id`, drafts 4 to 7 ignore it beside `$ref` and when it
/// is only a fragment.
pub(super) fn id_of(draft: Draft, schema: &Value) -> Option<&str> {
    let object = schema.as_object()?;
    match draft {
        Draft::Draft4 | Draft::Draft6 | Draft::Draft7 => {
            if object.contains_key("$ref") {
                return None;
            }
            let keyword = if draft == Draft::Draft4 { "id" } else { "$id" };
            object.get(keyword).and_then(Value::as_str).filter(|id| !id.starts_with('#'))
        }
        _ => object.get("$id").and_then(Value::as_str),
    }
}

/// `reference` resolved against `base`, as referencing resolves it (an `$id` of `x#` is `x`).
pub(super) fn resolve(base: &Uri<String>, reference: &str) -> Option<Uri<String>> {
    let reference = reference.strip_suffix('#').unwrap_or(reference);
    jsonschema::uri::resolve_against(&base.borrow(), reference).ok()
}

/// The URI without its fragment, and the fragment.
pub(super) fn split(uri: &Uri<String>) -> (&str, &str) {
    let text = uri.as_str();
    text.split_once('#').unwrap_or((text, ""))
}

/// Whether referencing resolves this `$ref` from its bundled meta-schemas, never retrieving it.
fn is_meta_schema(reference: &str) -> bool {
    reference.starts_with("https://json-schema.org/draft/") || reference.starts_with("http://json-schema.org/draft-")
}

pub(super) fn references(document: &Value, uri: Option<&str>) -> Vec<String> {
    let mut walk = RefWalk::default();
    walk.schema(document, draft_of(document), &absolute(uri));
    let mut found: Vec<String> = walk.refs.into_iter().filter(|r| !walk.ids.contains(r)).collect();
    found.sort();
    found.dedup();
    found
}

/// Collects the documents a schema refers to and the identifiers it declares, walking the same
/// subschemas referencing crawls.
#[derive(Default)]
struct RefWalk {
    refs: Vec<String>,
    ids: HashSet<String>,
}

impl RefWalk {
    fn schema(&mut self, schema: &Value, draft: Draft, base: &Uri<String>) {
        let here = match id_of(draft, schema).and_then(|id| resolve(base, id)) {
            Some(id) => id,
            None => base.clone(),
        };
        self.ids.insert(key(split(&here).0));
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            if !reference.starts_with('#') && !is_meta_schema(reference) {
                if let Some(target) = resolve(&here, reference) {
                    self.refs.push(key(split(&target).0));
                }
            }
        }
        for child in draft.subresources_of(schema) {
            self.schema(child, draft.detect(child), &here);
        }
    }
}

/// The registered JSON Schemas `document` reaches through `$ref`, transitively, each under its
/// key; Avro documents a `$ref` names are kept so that the error can say what they are.
pub(super) fn reachable(document: &Value, uri: Option<&str>, known: &dyn KnownSchemas, into: &mut Documents) {
    let mut pending = references(document, uri);
    while let Some(next) = pending.pop() {
        if into.contains_key(&next) || into.len() >= MAX_DOCUMENTS {
            continue;
        }
        if let Some((format, found)) = known.document(&next) {
            if format == SchemaFormat::JsonSchema {
                pending.extend(references(&found, Some(&next)));
            }
            into.insert(next, (format, found));
        }
    }
}

/// Answers referencing's requests from the registered documents loaded beforehand, and only
/// from them: this is what keeps compiling offline.
struct KnownRetriever {
    documents: Documents,
}

impl Retrieve for KnownRetriever {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let wanted = key(split(uri).0);
        match self.documents.get(&wanted) {
            Some((SchemaFormat::JsonSchema, document)) => Ok(Value::clone(document)),
            Some((format, _)) => {
                Err(format!("'{wanted}' is a registered {format} schema; a JSON Schema can $ref only JSON Schemas")
                    .into())
            }
            None => {
                Err(format!("'{wanted}' is not a registered schema, and the gateway never fetches $ref targets").into())
            }
        }
    }
}

pub(super) fn compile(
    document: &Value,
    uri: Option<&str>,
    known: &dyn KnownSchemas,
) -> Result<jsonschema::Validator, String> {
    let mut documents = Documents::new();
    reachable(document, uri, known, &mut documents);
    let mut options = jsonschema::options().with_retriever(KnownRetriever { documents });
    if uri.is_some() {
        options = options.with_base_uri(absolute(uri).as_str());
    }
    // For a URI without a scheme, referencing replaces the retriever's answer with this.
    options.build(document).map_err(|e| {
        e.to_string().replace(
            "No base URI is available",
            "it is not a registered schema, and the gateway never fetches $ref targets",
        )
    })
}

pub(super) fn declared_id(document: &Value) -> Option<String> {
    let id = id_of(draft_of(document), document)?;
    normalize_uri(id.strip_suffix('#').unwrap_or(id)).ok()
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use serde_json::json;

    use super::super::{compile as compile_any, references as references_any, SchemaDocument};
    use super::*;

    fn known(documents: &[(&str, Value)]) -> Documents {
        documents
            .iter()
            .map(|(uri, document)| (uri.to_string(), (SchemaFormat::JsonSchema, Arc::new(document.clone()))))
            .collect()
    }

    fn compiled(document: &Value, known: &Documents) -> Result<super::super::ContentValidator, String> {
        compile_any(&SchemaDocument::new(SchemaFormat::JsonSchema, document), known)
    }

    const PERSON: &str = "https://example.com/schemas/person/v1.json";

    fn person() -> Value {
        json!({
            "$id": PERSON,
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}
        })
    }

    #[test]
    fn a_ref_to_a_registered_uri_compiles_and_validates_through_it() {
        let known = known(&[(PERSON, person())]);
        let validator = compiled(&json!({"properties": {"author": {"$ref": PERSON}}}), &known).unwrap();
        assert!(validator.violations(&json!({"author": {"name": "Ada", "age": 36}})).is_empty());
        let found = validator.violations(&json!({"author": {"age": -1}}));
        let mut pointers: Vec<&str> = found.iter().map(|v| v.pointer.as_str()).collect();
        pointers.sort();
        assert_eq!(pointers, ["/author", "/author/age"], "{found:?}");
    }

    #[test]
    fn a_registered_document_may_itself_ref_another_registered_one() {
        let address = "https://example.com/schemas/address/v1.json";
        let known = known(&[
            (address, json!({"type": "object", "required": ["zip"], "properties": {"zip": {"type": "string"}}})),
            (PERSON, json!({"$id": PERSON, "properties": {"home": {"$ref": "../address/v1.json"}}})),
        ]);
        let validator = compiled(&json!({"$ref": PERSON}), &known).unwrap();
        assert!(validator.violations(&json!({"home": {"zip": "75001"}})).is_empty());
        let found = validator.violations(&json!({"home": {"zip": 75001}}));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pointer, "/home/zip");
    }

    #[test]
    fn a_ref_with_a_fragment_reaches_inside_a_registered_document() {
        let known = known(&[(PERSON, json!({"$defs": {"name": {"type": "string", "minLength": 1}}}))]);
        let validator = compiled(&json!({"$ref": format!("{PERSON}#/$defs/name")}), &known).unwrap();
        assert!(validator.is_valid(&json!("Ada")));
        assert!(!validator.is_valid(&json!("")));
    }

    #[test]
    fn a_ref_to_an_unknown_uri_is_refused_naming_it() {
        let err = compiled(&json!({"$ref": "https://example.com/schemas/nobody.json"}), &Documents::new()).unwrap_err();
        assert!(err.contains("https://example.com/schemas/nobody.json"), "{err}");
        assert!(err.contains("is not a registered schema"), "{err}");
    }

    #[test]
    fn an_unknown_ref_inside_a_registered_document_is_refused_naming_it() {
        let known = known(&[(PERSON, json!({"properties": {"pet": {"$ref": "https://example.com/pet.json"}}}))]);
        let err = compiled(&json!({"$ref": PERSON}), &known).unwrap_err();
        assert!(err.contains("https://example.com/pet.json"), "{err}");
    }

    #[test]
    fn compiling_never_opens_a_connection_to_a_refd_uri() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let uri = format!("http://127.0.0.1:{}/schema.json", listener.local_addr().unwrap().port());
        let err = compiled(&json!({"$ref": uri}), &Documents::new()).unwrap_err();
        assert!(err.contains(&uri), "{err}");
        let accepted = listener.accept();
        assert!(
            matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "something connected: {accepted:?}"
        );
    }

    #[tokio::test]
    async fn an_unknown_ref_is_refused_without_blocking_or_panicking_in_async_code() {
        assert!(compiled(&json!({"$ref": "https://example.com/a.json"}), &Documents::new()).is_err());
    }

    #[test]
    fn a_ref_to_a_registered_avro_schema_is_refused() {
        let mut known = Documents::new();
        known.insert(PERSON.into(), (SchemaFormat::Avro, Arc::new(json!({"type": "string"}))));
        let err = compiled(&json!({"$ref": PERSON}), &known).unwrap_err();
        assert!(err.contains("is a registered avro schema"), "{err}");
    }

    #[test]
    fn an_unknown_uri_without_a_scheme_is_refused_naming_it() {
        let err = compiled(&json!({"$ref": "/schemas/nobody/versions/1"}), &Documents::new()).unwrap_err();
        assert_eq!(
            err,
            "Resource '/schemas/nobody/versions/1' is not present in a registry and retrieving it failed: \
             it is not a registered schema, and the gateway never fetches $ref targets"
        );
    }

    #[test]
    fn a_default_uri_without_a_scheme_can_be_refd_from_an_inline_schema() {
        let known = known(&[("/schemas/person/versions/1", json!({"type": "string"}))]);
        let validator = compiled(&json!({"$ref": "/schemas/person/versions/1"}), &known).unwrap();
        assert!(validator.is_valid(&json!("Ada")) && !validator.is_valid(&json!(1)));
    }

    #[test]
    fn relative_refs_resolve_against_the_uri_a_document_is_registered_under() {
        let order = json!({"properties": {"customer": {"$ref": "person.json"}}});
        let at = "https://example.com/schemas/order.json";
        let schema = SchemaDocument::new(SchemaFormat::JsonSchema, &order).at(at);
        assert_eq!(references_any(&schema), ["https://example.com/schemas/person.json"]);
        let known = known(&[("https://example.com/schemas/person.json", json!({"type": "object"}))]);
        let validator = compile_any(&schema, &known).unwrap();
        assert!(validator.is_valid(&json!({"customer": {}})) && !validator.is_valid(&json!({"customer": 1})));
    }

    #[test]
    fn a_schema_that_does_not_compile_is_refused_with_the_compilers_message() {
        let err = compiled(&json!({"type": "strin"}), &Documents::new()).unwrap_err();
        assert!(err.contains("strin"), "{err}");
    }

    #[test]
    fn references_lists_external_uris_resolved_and_without_fragments() {
        let document = json!({
            "$id": "https://example.com/schemas/order/v1.json",
            "$defs": {"line": {"type": "object"}},
            "properties": {
                "customer": {"$ref": "../person/v1.json#/properties/name"},
                "lines": {"items": {"$ref": "#/$defs/line"}},
                "self": {"$ref": "v1.json"},
                "meta": {"$ref": "https://json-schema.org/draft/2020-12/schema"},
                "other": {"$ref": "HTTPS://Example.com/schemas/./x.json"},
                "again": {"$ref": "https://example.com/schemas/person/v1.json"}
            },
            "examples": [{"$ref": "https://example.com/not-a-schema-position.json"}]
        });
        assert_eq!(
            references_any(&SchemaDocument::new(SchemaFormat::JsonSchema, &document)),
            ["https://example.com/schemas/person/v1.json", "https://example.com/schemas/x.json"]
        );
    }

    #[test]
    fn references_of_an_inline_schema_without_id_are_paths_from_the_registry_root() {
        let document = json!({"properties": {"a": {"$ref": "/schemas/a/versions/1"}, "b": {"$ref": "b.json"}}});
        assert_eq!(references(&document, None), ["/b.json", "/schemas/a/versions/1"]);
    }

    #[test]
    fn draft_4_ids_are_honoured_when_finding_references() {
        let document = json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "id": "https://example.com/a/",
            "properties": {"b": {"$ref": "b.json"}}
        });
        assert_eq!(references(&document, None), ["https://example.com/a/b.json"]);
    }

    #[test]
    fn uris_are_normalized_and_a_fragment_is_refused() {
        assert_eq!(normalize_uri("HTTPS://Example.COM/a/./b/../c.json").unwrap(), "https://example.com/a/c.json");
        assert_eq!(normalize_uri("https://example.com/a.json#").unwrap(), "https://example.com/a.json");
        assert_eq!(normalize_uri("/schemas/person/versions/1").unwrap(), "/schemas/person/versions/1");
        assert_eq!(normalize_uri("schemas/person").unwrap(), "/schemas/person");
        assert_eq!(normalize_uri("urn:example:person").unwrap(), "urn:example:person");
        assert!(normalize_uri("https://example.com/a.json#/x").unwrap_err().contains("fragment"));
    }

    #[test]
    fn the_declared_id_is_the_roots_in_normal_form() {
        assert_eq!(
            declared_id(&json!({"$id": "https://Example.com/p.json#"})).as_deref(),
            Some("https://example.com/p.json")
        );
        assert_eq!(declared_id(&json!({"properties": {"a": {"$id": "https://example.com/a"}}})), None);
        assert_eq!(
            declared_id(&json!({"$schema": "http://json-schema.org/draft-04/schema#", "id": "urn:a"})).as_deref(),
            Some("urn:a")
        );
    }
}
