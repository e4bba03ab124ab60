//! Whether a new version of a JSON Schema keeps a compatibility mode: a conservative checker that
//! accepts a change only when it can prove it, and otherwise lists what it could not prove.
//!
//! BACKWARD asks that every value the previous version accepts is accepted by the new one (old ⊆
//! new); FORWARD asks the reverse (new ⊆ old); FULL asks both. Each is one question, "does schema
//! A accept only values schema B accepts?", asked with A = previous and B = new for BACKWARD and
//! the other way round for FORWARD. The checker proves it keyword by keyword: B holds for every
//! value A accepts when each of B's keywords is implied by one of A's, by the rules below. A rule
//! is written for "B's keyword"; read with B = new it is a BACKWARD rule, with B = previous a
//! FORWARD one. So widening (dropping `required`, raising `maximum`, adding an `enum` value) keeps
//! BACKWARD and breaks FORWARD, and narrowing does the opposite.
//!
//! | B (the schema that must accept) has | implied when A (the schema whose values must be accepted) |
//! | --- | --- |
//! | `true`, `{}`, or only annotations (`title`, `description`, `default`, `examples`, `deprecated`, `readOnly`, `writeOnly`, `$comment`, `$id`, `$anchor`, `$defs`/`definitions`, `x-…`; `format` from draft 2019-09 on, where the validator does not assert it) | always |
//! | anything | A is `false`, or A is the same JSON as B with no `$ref` inside (and the same draft) |
//! | `false` | A accepts no type at all |
//! | a keyword that only constrains one type (`minimum` for numbers, `minLength` for strings, `items` for arrays, `required` for objects…) | A accepts no value of that type (by its `type`, `enum` or `const`), or the row for that keyword holds |
//! | `type` T | every type A can accept (by `type`, `enum`, `const`, `anyOf`/`oneOf` branches) is in T; `integer` is in `number` |
//! | `enum` E | A has an `enum` whose values are all in E, or a `const` in E |
//! | `const` C | A has `const` C, or an `enum` of C alone |
//! | `minimum` / `exclusiveMinimum` (draft 4: `minimum` with `exclusiveMinimum: true`) | A has a lower bound at least as high (an exclusive bound at the same number also implies an inclusive one; numbers compare exactly) |
//! | `maximum` / `exclusiveMaximum` | A has an upper bound at least as low, likewise |
//! | `multipleOf` m | A has `multipleOf` m, or an integer multiple of an integer m; or m is 1 and A accepts only integers |
//! | `minLength`, `minItems`, `minProperties` n | A has the same keyword ≥ n (n = 0 always holds; `minProperties` also by A `required`-ing n names) |
//! | `maxLength`, `maxItems`, `maxProperties` n | A has the same keyword ≤ n |
//! | `pattern`, `format` (drafts 4–7), `contentMediaType`, `contentEncoding`, `contentSchema` | A has the same keyword with the same value |
//! | `uniqueItems: true` | A has `uniqueItems: true` or `maxItems` ≤ 1 |
//! | `required` R | every name in R is in A's `required` |
//! | `properties`, `patternProperties`, `additionalProperties` | for every property name, the schema A gives it implies every schema B may give it. A gives a name its `properties` entry, else its `additionalProperties` (absent = `true`); if A has `patternProperties`, a name outside its `properties` is taken as unconstrained. B's side is the conjunction of its `properties` entry, all of its `patternProperties` and (for a name outside its `properties`) its `additionalProperties`. So adding an optional property is BACKWARD only if the previous version had `additionalProperties: false` or the new property's schema is `true`; removing one is BACKWARD only if the new version allows it as an additional property |
//! | `items`, `prefixItems`, `additionalItems` (per draft) | for every array position A allows (below its `maxItems`), A's item schema there implies B's |
//! | `contains` (with `minContains`) | A has `contains` implying B's, with `minContains` at least B's; with B `maxContains`, A's `contains` must be equivalent to B's and its `maxContains` no higher |
//! | `propertyNames` | A has `propertyNames` implying B's |
//! | `dependentRequired` / `dependencies` (array) | each name B makes depend on a property is required by A, or made to depend on it by A, or that property is `false` in A |
//! | `dependentSchemas` / `dependencies` (schema) | A implies B's schema, or has one for the same property that does, or forbids the property |
//! | `allOf` | A implies every branch |
//! | `anyOf` | A implies one branch, or each of A's `anyOf`/`oneOf` branches implies one of B's branches |
//! | `oneOf` | A has the same `oneOf` (same JSON, no `$ref`), or B's has one branch and A implies it |
//! | `not` N | A and N accept no type in common, or A has `not` M where N implies M |
//! | `if` / `then` / `else` | A implies both `then` and `else` (whichever way `if` goes), or A has the same three (same JSON, no `$ref`) |
//! | `$ref` | A `$ref`s the same registered URI (registered versions never change), or A implies the referenced schema (local `#/…` pointers and registered documents are followed; a cycle is assumed to hold once it has stepped into a property or item, which is sound because values are finite) |
//! | any other keyword | A has the same keyword with the same value (same draft, no `$ref` inside) |
//!
//! A's keywords are gathered from A itself, its `allOf` branches and its `$ref` targets (each
//! implies A). In drafts 4 to 7 a `$ref` replaces its siblings, on both sides.
//!
//! Refused as unprovable: the two versions in different drafts or a custom meta-schema; `$id` or
//! `$schema` inside a document (embedded resources), `$dynamicRef`, `$recursiveRef`,
//! `unevaluatedProperties`, `unevaluatedItems`; a `$ref` to an anchor, to an unregistered URI
//! or to an Avro schema; and comparisons past a fixed budget of steps.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};

use jsonschema::{Draft, Uri};
use serde_json::{Map, Number, Value};

use super::json_schema::{self, Documents};
use super::{child, index, Compatibility, Incompatibility, KnownSchemas, SchemaDocument, SchemaFormat};

/// Pairs of subschemas compared at most in one direction: bounds the work of wide or recursive schemas.
const MAX_STEPS: usize = 20_000;

static TRUE: Value = Value::Bool(true);

pub(super) fn incompatibilities(
    mode: Compatibility,
    previous: &SchemaDocument<'_>,
    next: &SchemaDocument<'_>,
    known: &dyn KnownSchemas,
) -> Vec<Incompatibility> {
    let mut documents = Documents::new();
    json_schema::reachable(previous.document, previous.uri, known, &mut documents);
    json_schema::reachable(next.document, next.uri, known, &mut documents);
    let externals: HashMap<String, Doc<'_>> = documents
        .iter()
        .filter(|(_, (format, _))| *format == SchemaFormat::JsonSchema)
        .map(|(key, (_, document))| (key.clone(), Doc::new(document, Some(key), Some(key.clone()))))
        .collect();
    let old = Doc::new(previous.document, previous.uri, None);
    let new = Doc::new(next.document, next.uri, None);
    if let Some(refusal) = precheck(mode, &old, &new) {
        return vec![refusal];
    }
    let mut found = Vec::new();
    let (old, new) = (Node::root(&old), Node::root(&new));
    if mode.checks_backward() {
        Checker::new("BACKWARD", true, &externals, &documents).subset(&old, &new, 0, &mut found);
    }
    if mode.checks_forward() {
        Checker::new("FORWARD", false, &externals, &documents).subset(&new, &old, 0, &mut found);
    }
    let mut seen = HashSet::new();
    found.retain(|i| seen.insert((i.pointer.clone(), i.reason.clone())));
    found
}

/// What the two documents must share before any keyword is compared.
fn precheck(mode: Compatibility, old: &Doc<'_>, new: &Doc<'_>) -> Option<Incompatibility> {
    let refuse = |pointer: &str, detail: String| {
        Some(Incompatibility::new(pointer, format!("cannot prove this change keeps {mode}: {detail}")))
    };
    if let Some((pointer, what)) = &new.unsupported {
        return refuse(pointer, format!("this version has {what}"));
    }
    if let Some((pointer, what)) = &old.unsupported {
        return refuse("", format!("the previous version has {what} at '{pointer}'"));
    }
    if old.draft != new.draft {
        let at = if new.root.get("$schema").is_some() { "/$schema" } else { "" };
        return refuse(at, format!("the versions use different drafts ({:?} and {:?})", old.draft, new.draft));
    }
    None
}

/// One schema document: the compared versions, or a registered document one of them `$ref`s.
struct Doc<'a> {
    root: &'a Value,
    /// The absolute URI its relative references resolve against, and its registry form.
    base: Uri<String>,
    base_key: String,
    draft: Draft,
    /// The registry URI it was loaded from; `None` for the two versions compared.
    key: Option<String>,
    /// Something the checker does not follow (pointer, description).
    unsupported: Option<(String, String)>,
}

impl<'a> Doc<'a> {
    fn new(root: &'a Value, uri: Option<&str>, key: Option<String>) -> Self {
        let draft = json_schema::draft_of(root);
        let registered = json_schema::absolute(uri);
        let base = match json_schema::id_of(draft, root).and_then(|id| json_schema::resolve(&registered, id)) {
            Some(id) => id,
            None => registered,
        };
        let base_key = json_schema::key(json_schema::split(&base).0);
        let mut unsupported = None;
        if draft == Draft::Unknown {
            unsupported = Some(("/$schema".to_owned(), "a custom meta-schema".to_owned()));
        } else {
            scan(root, draft, "", true, &mut unsupported);
        }
        Self { root, base, base_key, draft, key, unsupported }
    }
}

/// Finds the first construct the checker cannot follow, walking the subschemas referencing walks.
fn scan(schema: &Value, draft: Draft, at: &str, root: bool, found: &mut Option<(String, String)>) {
    if found.is_some() {
        return;
    }
    let Some(object) = schema.as_object() else { return };
    if !root && json_schema::id_of(draft, schema).is_some() {
        *found = Some((at.to_owned(), "an embedded schema resource (`$id` inside the document)".to_owned()));
        return;
    }
    if !root && object.contains_key("$schema") {
        *found = Some((child(at, "$schema"), "a `$schema` inside the document".to_owned()));
        return;
    }
    for keyword in ["$dynamicRef", "$recursiveRef"] {
        if object.contains_key(keyword) {
            *found = Some((child(at, keyword), format!("`{keyword}`")));
            return;
        }
    }
    for (key, value) in object {
        match value {
            Value::Object(_) | Value::Bool(_) if is_subschema_keyword(key) => {
                scan(value, draft, &child(at, key), false, found)
            }
            Value::Array(items) if matches!(key.as_str(), "allOf" | "anyOf" | "oneOf" | "prefixItems" | "items") => {
                for (i, item) in items.iter().enumerate() {
                    scan(item, draft, &index(&child(at, key), i), false, found);
                }
            }
            Value::Object(members) if is_subschema_map_keyword(key) => {
                for (name, member) in members {
                    scan(member, draft, &child(&child(at, key), name), false, found);
                }
            }
            _ => {}
        }
    }
}

fn is_subschema_keyword(key: &str) -> bool {
    matches!(
        key,
        "additionalProperties"
            | "additionalItems"
            | "contains"
            | "contentSchema"
            | "else"
            | "if"
            | "items"
            | "not"
            | "propertyNames"
            | "then"
            | "unevaluatedItems"
            | "unevaluatedProperties"
    )
}

fn is_subschema_map_keyword(key: &str) -> bool {
    matches!(key, "$defs" | "definitions" | "dependentSchemas" | "dependencies" | "patternProperties" | "properties")
}

/// Whether `keyword` is an assertion or applicator of `draft` that the checker may rely on in A.
fn in_vocabulary(draft: Draft, keyword: &str) -> bool {
    match keyword {
        "type"
        | "enum"
        | "minimum"
        | "maximum"
        | "exclusiveMinimum"
        | "exclusiveMaximum"
        | "multipleOf"
        | "minLength"
        | "maxLength"
        | "pattern"
        | "format"
        | "items"
        | "minItems"
        | "maxItems"
        | "uniqueItems"
        | "properties"
        | "patternProperties"
        | "additionalProperties"
        | "required"
        | "minProperties"
        | "maxProperties"
        | "allOf"
        | "anyOf"
        | "oneOf"
        | "not"
        | "$ref" => true,
        "additionalItems" => draft != Draft::Draft202012,
        "dependencies" => draft <= Draft::Draft7,
        "const" | "contains" | "propertyNames" => draft >= Draft::Draft6,
        "if" | "then" | "else" | "contentMediaType" | "contentEncoding" => draft >= Draft::Draft7,
        "dependentRequired"
        | "dependentSchemas"
        | "minContains"
        | "maxContains"
        | "unevaluatedItems"
        | "unevaluatedProperties"
        | "contentSchema" => draft >= Draft::Draft201909,
        "prefixItems" => draft == Draft::Draft202012,
        _ => false,
    }
}

/// Keywords that never make a value invalid under `draft`, as the validator is configured here.
fn is_annotation(draft: Draft, keyword: &str) -> bool {
    matches!(
        keyword,
        "$schema"
            | "$id"
            | "$anchor"
            | "$dynamicAnchor"
            | "$recursiveAnchor"
            | "$comment"
            | "$defs"
            | "definitions"
            | "$vocabulary"
            | "title"
            | "description"
            | "default"
            | "examples"
            | "deprecated"
            | "readOnly"
            | "writeOnly"
    ) || (keyword == "id" && draft == Draft::Draft4)
        || (keyword == "format" && draft >= Draft::Draft201909)
        || keyword.starts_with("x-")
}

/// The JSON types a schema may accept, as bits: integers and other numbers apart.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Types(u8);

impl Types {
    const NULL: Self = Self(1);
    const BOOLEAN: Self = Self(2);
    const OBJECT: Self = Self(4);
    const ARRAY: Self = Self(8);
    const STRING: Self = Self(16);
    const INTEGER: Self = Self(32);
    const FRACTION: Self = Self(64);
    const NUMBER: Self = Self(32 | 64);
    const ALL: Self = Self(127);
    const NONE: Self = Self(0);

    fn and(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    fn or(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    fn meets(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    fn within(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }

    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "null" => Self::NULL,
            "boolean" => Self::BOOLEAN,
            "object" => Self::OBJECT,
            "array" => Self::ARRAY,
            "string" => Self::STRING,
            "integer" => Self::INTEGER,
            "number" => Self::NUMBER,
            _ => return None,
        })
    }

    /// The `type` keyword's value, or `None` for one the checker cannot read.
    fn of_keyword(value: &Value) -> Option<Self> {
        match value {
            Value::String(name) => Self::named(name),
            Value::Array(names) => {
                names.iter().try_fold(Self::NONE, |all, name| Some(all.or(Self::named(name.as_str()?)?)))
            }
            _ => None,
        }
    }

    /// The type of a value; a number such as `1.0` counts as both kinds of number.
    fn of_value(value: &Value) -> Self {
        match value {
            Value::Null => Self::NULL,
            Value::Bool(_) => Self::BOOLEAN,
            Value::Object(_) => Self::OBJECT,
            Value::Array(_) => Self::ARRAY,
            Value::String(_) => Self::STRING,
            Value::Number(n) if n.is_i64() || n.is_u64() => Self::INTEGER,
            Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => Self::NUMBER,
            Value::Number(_) => Self::FRACTION,
        }
    }

    fn describe(self) -> String {
        let names: Vec<&str> = [
            (Self::NULL, "null"),
            (Self::BOOLEAN, "boolean"),
            (Self::OBJECT, "object"),
            (Self::ARRAY, "array"),
            (Self::STRING, "string"),
            (Self::INTEGER, "integer"),
            (Self::FRACTION, "non-integer number"),
        ]
        .iter()
        .filter(|(t, _)| self.meets(*t))
        .map(|(_, name)| *name)
        .collect();
        names.join(", ")
    }
}

/// A subschema in its document: `path` is its pointer there; `site`, once a `$ref` has led into a
/// registered document, the pointer in the compared version where that happened.
#[derive(Clone)]
struct Node<'a> {
    value: &'a Value,
    doc: &'a Doc<'a>,
    path: String,
    site: Option<String>,
}

impl<'a> Node<'a> {
    fn root(doc: &'a Doc<'a>) -> Self {
        Self { value: doc.root, doc, path: String::new(), site: None }
    }

    fn object(&self) -> Option<&'a Map<String, Value>> {
        self.value.as_object()
    }

    /// A keyword of this draft's vocabulary, if present.
    fn keyword(&self, keyword: &str) -> Option<&'a Value> {
        self.object()?.get(keyword).filter(|_| in_vocabulary(self.doc.draft, keyword))
    }

    fn at(&self, value: &'a Value, segments: &[&str]) -> Self {
        let path = segments.iter().fold(self.path.clone(), |at, segment| child(&at, segment));
        Self { value, doc: self.doc, path, site: self.site.clone() }
    }

    /// The subschema under `keyword` (and a member name or index, if given).
    fn sub(&self, keyword: &str, member: Option<&str>) -> Option<Self> {
        let value = self.keyword(keyword)?;
        match member {
            None => Some(self.at(value, &[keyword])),
            Some(member) => {
                let inner = match value {
                    Value::Object(members) => members.get(member)?,
                    Value::Array(items) => items.get(member.parse::<usize>().ok()?)?,
                    _ => return None,
                };
                Some(self.at(inner, &[keyword, member]))
            }
        }
    }

    fn subs(&self, keyword: &str) -> Vec<Self> {
        match self.keyword(keyword) {
            Some(Value::Array(items)) => {
                items.iter().enumerate().map(|(i, item)| self.at(item, &[keyword, &i.to_string()])).collect()
            }
            _ => Vec::new(),
        }
    }

    fn unconstrained(&self) -> Self {
        Self { value: &TRUE, ..self.clone() }
    }

    fn count(&self, keyword: &str) -> Option<u64> {
        count(self.keyword(keyword)?)
    }
}

fn count(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| value.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64))
}

/// Whether a schema accepts every value: `true`, or an object of annotations only.
fn is_true(node: &Node<'_>) -> bool {
    match node.value {
        Value::Bool(b) => *b,
        Value::Object(object) => object.keys().all(|k| is_annotation(node.doc.draft, k)),
        _ => false,
    }
}

/// Whether a JSON value holds no reference, so that equal JSON means equal meaning.
fn ref_free(value: &Value) -> bool {
    match value {
        Value::Object(object) => {
            object.iter().all(|(k, v)| !matches!(k.as_str(), "$ref" | "$dynamicRef" | "$recursiveRef") && ref_free(v))
        }
        Value::Array(items) => items.iter().all(ref_free),
        _ => true,
    }
}

/// Exact comparison of two JSON numbers, integers beyond 2^53 included.
fn compare(a: &Number, b: &Number) -> Option<Ordering> {
    fn exact(n: &Number) -> Option<i128> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e38).map(|f| f as i128))
    }
    match (exact(a), exact(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        // One has a fraction, so it is below 2^53 in magnitude and the other's rounding cannot
        // reverse the order.
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A bound on numbers: its value and whether it is exclusive.
type Bound<'a> = (&'a Number, bool);

struct Checker<'a> {
    mode: &'static str,
    /// Whether B, the side that must accept, is the new version (BACKWARD) or A is (FORWARD).
    new_is_b: bool,
    externals: &'a HashMap<String, Doc<'a>>,
    documents: &'a Documents,
    steps: usize,
    /// Pairs being compared, with the instance depth at which they were entered.
    active: HashMap<(usize, usize), usize>,
}

impl<'a> Checker<'a> {
    fn new(
        mode: &'static str,
        new_is_b: bool,
        externals: &'a HashMap<String, Doc<'a>>,
        documents: &'a Documents,
    ) -> Self {
        Self { mode, new_is_b, externals, documents, steps: 0, active: HashMap::new() }
    }

    /// How A and B are named in reasons.
    fn names(&self) -> (&'static str, &'static str) {
        if self.new_is_b {
            ("the previous version", "this version")
        } else {
            ("this version", "the previous version")
        }
    }

    fn report(
        &self,
        out: &mut Vec<Incompatibility>,
        a: &Node<'a>,
        b: &Node<'a>,
        keyword: Option<&str>,
        reason: String,
    ) {
        let new = if self.new_is_b { b } else { a };
        let at = match keyword {
            Some(k) if new.value.get(k).is_some() => child(&new.path, k),
            _ => new.path.clone(),
        };
        match &new.site {
            None => out.push(Incompatibility::new(at, reason)),
            Some(site) => {
                let document = new.doc.key.as_deref().unwrap_or_default();
                out.push(Incompatibility::new(site.clone(), format!("in {document}#{at}: {reason}")));
            }
        }
    }

    fn breaks(
        &self,
        out: &mut Vec<Incompatibility>,
        a: &Node<'a>,
        b: &Node<'a>,
        keyword: Option<&str>,
        detail: String,
    ) {
        self.report(out, a, b, keyword, format!("breaks {}: {detail}", self.mode));
    }

    fn unproven(
        &self,
        out: &mut Vec<Incompatibility>,
        a: &Node<'a>,
        b: &Node<'a>,
        keyword: Option<&str>,
        detail: String,
    ) {
        self.report(out, a, b, keyword, format!("cannot prove this change keeps {}: {detail}", self.mode));
    }

    /// Whether `a ⊆ b` can be proven, without reporting why not.
    fn proves(&mut self, a: &Node<'a>, b: &Node<'a>, depth: usize) -> bool {
        let mut scratch = Vec::new();
        self.subset(a, b, depth, &mut scratch);
        scratch.is_empty()
    }

    /// Proves that every value `a` accepts, `b` accepts, or says in `out` what could not be proven.
    /// `depth` counts the steps into the value (properties, items) taken so far.
    fn subset(&mut self, a: &Node<'a>, b: &Node<'a>, depth: usize, out: &mut Vec<Incompatibility>) {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            out.push(Incompatibility::new(
                "",
                format!(
                    "cannot prove this change keeps {}: the schemas are too large or too recursive to compare",
                    self.mode
                ),
            ));
            return;
        }
        if is_true(b) || a.value == &Value::Bool(false) {
            return;
        }
        if b.value == &Value::Bool(false) {
            if self.types(a, 8) != Types::NONE {
                let (a_name, b_name) = self.names();
                self.breaks(out, a, b, None, format!("{b_name} accepts nothing here, {a_name} accepts values"));
            }
            return;
        }
        let Some(object) = b.object() else {
            self.unproven(out, a, b, None, "a schema here is neither an object nor a boolean".into());
            return;
        };
        if a.doc.draft == b.doc.draft && a.value == b.value && ref_free(a.value) {
            return;
        }
        // A schema that is only a `$ref` is its target: what is reported then points there.
        let a = &self.dereferenced(a);
        let pair = (a.value as *const Value as usize, b.value as *const Value as usize);
        match self.active.get(&pair) {
            // Assumed: only a value strictly inside the one the pair was entered for reaches here,
            // and values are finite, so the assumption is used only where it was proven.
            Some(&entered) if depth > entered => return,
            Some(_) => {
                self.unproven(
                    out,
                    a,
                    b,
                    Some("$ref"),
                    "a `$ref` cycle that never steps into a property or item".into(),
                );
                return;
            }
            None => {}
        }
        self.active.insert(pair, depth);
        self.keywords(a, b, object, depth, out);
        self.active.remove(&pair);
    }

    fn keywords(
        &mut self,
        a: &Node<'a>,
        b: &Node<'a>,
        object: &'a Map<String, Value>,
        depth: usize,
        out: &mut Vec<Incompatibility>,
    ) {
        let draft = b.doc.draft;
        if let Some(reference) = object.get("$ref") {
            match reference.as_str() {
                Some(reference) => self.reference(a, b, reference, depth, out),
                None => self.unproven(out, a, b, Some("$ref"), "`$ref` is not a string".into()),
            }
            if draft <= Draft::Draft7 {
                return; // its siblings are ignored
            }
        }
        let views = self.views(a);
        let types = self.types(a, 8);
        let mut done = HashSet::new();
        for (keyword, value) in object {
            let keyword = keyword.as_str();
            if keyword == "$ref" || is_annotation(draft, keyword) {
                continue;
            }
            if !in_vocabulary(draft, keyword) {
                self.same_value(a, b, &views, keyword, value, out);
                continue;
            }
            match keyword {
                "type" => self.type_keyword(a, b, value, types, out),
                "enum" => self.enum_keyword(a, b, &views, value, out),
                "const" => self.const_keyword(a, b, &views, value, out),
                "minimum" | "exclusiveMinimum" | "maximum" | "exclusiveMaximum" => {
                    if types.meets(Types::NUMBER) {
                        self.bound(a, b, &views, keyword, out);
                    }
                }
                "multipleOf" => {
                    if types.meets(Types::NUMBER) {
                        self.multiple_of(a, b, &views, value, types, out);
                    }
                }
                "minLength" | "maxLength" => {
                    if types.meets(Types::STRING) {
                        self.count_bound(a, b, &views, keyword, value, out);
                    }
                }
                "minItems" | "maxItems" => {
                    if types.meets(Types::ARRAY) {
                        self.count_bound(a, b, &views, keyword, value, out);
                    }
                }
                "minProperties" | "maxProperties" => {
                    if types.meets(Types::OBJECT) {
                        self.count_bound(a, b, &views, keyword, value, out);
                    }
                }
                "pattern" | "format" => {
                    if types.meets(Types::STRING) {
                        self.same_value(a, b, &views, keyword, value, out);
                    }
                }
                "contentMediaType" | "contentEncoding" | "contentSchema" => {
                    if types.meets(Types::STRING) {
                        self.same_value(a, b, &views, keyword, value, out);
                    }
                }
                "uniqueItems" => {
                    if types.meets(Types::ARRAY) && value == &Value::Bool(true) {
                        self.unique_items(a, b, &views, out);
                    }
                }
                "items" | "prefixItems" | "additionalItems" => {
                    if types.meets(Types::ARRAY) && done.insert("items") {
                        self.items(a, b, &views, depth, out);
                    }
                }
                "contains" => {
                    if types.meets(Types::ARRAY) {
                        self.contains(a, b, &views, depth, out);
                    }
                }
                "minContains" | "maxContains" | "then" | "else" => {} // read with `contains` and `if`
                "properties" | "patternProperties" | "additionalProperties" => {
                    if types.meets(Types::OBJECT) && done.insert("properties") {
                        self.properties(a, b, &views, depth, out);
                    }
                }
                "required" => {
                    if types.meets(Types::OBJECT) {
                        self.required(a, b, &views, value, out);
                    }
                }
                "propertyNames" => {
                    if types.meets(Types::OBJECT) {
                        self.property_names(a, b, &views, depth, out);
                    }
                }
                "dependentRequired" | "dependentSchemas" | "dependencies" => {
                    if types.meets(Types::OBJECT) {
                        self.dependencies(a, b, &views, keyword, depth, out);
                    }
                }
                "allOf" => {
                    for branch in b.subs("allOf") {
                        self.subset(a, &branch, depth, out);
                    }
                }
                "anyOf" => self.any_of(a, b, &views, depth, out),
                "oneOf" => self.one_of(a, b, &views, value, depth, out),
                "not" => self.not(a, b, &views, types, depth, out),
                "if" => self.if_then_else(a, b, &views, depth, out),
                "unevaluatedProperties" | "unevaluatedItems" => {
                    self.unproven(out, a, b, Some(keyword), format!("`{keyword}` depends on every other keyword"));
                }
                _ => self.same_value(a, b, &views, keyword, value, out),
            }
        }
    }

    // --- References -------------------------------------------------------------------------

    /// The subschema `reference` (in `node`) points to.
    fn resolve(&self, node: &Node<'a>, reference: &str) -> Result<Node<'a>, String> {
        let target = json_schema::resolve(&node.doc.base, reference).ok_or("it is not a valid URI reference")?;
        let (document, fragment) = json_schema::split(&target);
        let document = json_schema::key(document);
        let (doc, site) = if document == node.doc.base_key {
            (node.doc, node.site.clone())
        } else {
            let Some(doc) = self.externals.get(&document) else {
                return Err(match self.documents.get(&document) {
                    Some((format, _)) => format!("'{document}' is a registered {format} schema"),
                    None => format!("'{document}' is not a registered schema"),
                });
            };
            if let Some((at, what)) = &doc.unsupported {
                return Err(format!("'{document}' has {what} at '{at}'"));
            }
            (doc, Some(node.site.clone().unwrap_or_else(|| child(&node.path, "$ref"))))
        };
        let pointer = percent_decode(fragment).ok_or("its fragment is not valid percent-encoded UTF-8")?;
        if !pointer.is_empty() && !pointer.starts_with('/') {
            return Err(format!("'#{pointer}' is an anchor, which the checker does not follow"));
        }
        let value = doc.root.pointer(&pointer).ok_or_else(|| format!("'#{pointer}' points to nothing"))?;
        Ok(Node { value, doc, path: pointer, site })
    }

    /// The target of a schema that is a `$ref` and nothing else that asserts (in drafts 4 to 7,
    /// any schema with a `$ref`), followed as far as it goes; else the schema itself.
    fn dereferenced(&self, node: &Node<'a>) -> Node<'a> {
        let mut here = node.clone();
        for _ in 0..32 {
            let Some(object) = here.object() else { break };
            let Some(reference) = object.get("$ref").and_then(Value::as_str) else { break };
            let alone = here.doc.draft <= Draft::Draft7
                || object.keys().all(|k| k == "$ref" || is_annotation(here.doc.draft, k));
            match self.resolve(&here, reference) {
                Ok(target) if alone => here = target,
                _ => break,
            }
        }
        here
    }

    /// The absolute URI a `$ref` in `node` names, when it is outside the node's document.
    fn external(&self, node: &Node<'a>, reference: &str) -> Option<String> {
        let target = json_schema::resolve(&node.doc.base, reference)?;
        let (document, _) = json_schema::split(&target);
        (json_schema::key(document) != node.doc.base_key).then(|| target.as_str().to_owned())
    }

    /// External URIs that `a` or its `allOf` branches `$ref`.
    fn external_refs(&self, a: &Node<'a>, found: &mut Vec<String>, level: usize) {
        if level > 8 {
            return;
        }
        if let Some(reference) = a.keyword("$ref").and_then(Value::as_str) {
            found.extend(self.external(a, reference));
        }
        for branch in a.subs("allOf") {
            self.external_refs(&branch, found, level + 1);
        }
    }

    fn reference(&mut self, a: &Node<'a>, b: &Node<'a>, reference: &str, depth: usize, out: &mut Vec<Incompatibility>) {
        let target = match self.resolve(b, reference) {
            Ok(target) => target,
            Err(why) => {
                self.unproven(out, a, b, Some("$ref"), format!("cannot follow `$ref` '{reference}': {why}"));
                return;
            }
        };
        if let Some(uri) = self.external(b, reference) {
            let mut refs = Vec::new();
            self.external_refs(a, &mut refs, 0);
            if refs.contains(&uri) {
                return; // the same registered document, which never changes
            }
        }
        self.subset(a, &target, depth, out);
    }

    // --- What A is known to require -----------------------------------------------------------

    /// Schemas every value of `a` satisfies, whose own keywords can imply B's: `a` itself, its
    /// `allOf` branches and its `$ref` targets (in drafts 4 to 7, only the target).
    fn views(&self, a: &Node<'a>) -> Vec<Node<'a>> {
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        self.collect_views(a, &mut found, &mut seen, 0);
        found
    }

    fn collect_views(&self, a: &Node<'a>, found: &mut Vec<Node<'a>>, seen: &mut HashSet<usize>, level: usize) {
        if level > 32 || !seen.insert(a.value as *const Value as usize) {
            return;
        }
        if let Some(reference) = a.keyword("$ref").and_then(Value::as_str) {
            // An unresolvable target is simply not relied on: A is taken to be looser than it is.
            if let Ok(target) = self.resolve(a, reference) {
                self.collect_views(&target, found, seen, level + 1);
            }
            if a.doc.draft <= Draft::Draft7 {
                return;
            }
        }
        found.push(a.clone());
        for branch in a.subs("allOf") {
            self.collect_views(&branch, found, seen, level + 1);
        }
    }

    /// The types `a` may accept (a superset: what it surely refuses is left out).
    fn types(&self, a: &Node<'a>, budget: usize) -> Types {
        match a.value {
            Value::Bool(false) => return Types::NONE,
            Value::Object(_) if budget > 0 => {}
            _ => return Types::ALL,
        }
        let mut types = Types::ALL;
        for view in self.views(a) {
            match view.value {
                Value::Bool(false) => return Types::NONE,
                Value::Object(_) => {}
                _ => continue,
            }
            if let Some(named) = view.keyword("type").and_then(Types::of_keyword) {
                types = types.and(named);
            }
            if let Some(Value::Array(values)) = view.keyword("enum") {
                types = types.and(values.iter().fold(Types::NONE, |all, v| all.or(Types::of_value(v))));
            }
            if let Some(constant) = view.keyword("const") {
                types = types.and(Types::of_value(constant));
            }
            for keyword in ["anyOf", "oneOf"] {
                let branches = view.subs(keyword);
                if !branches.is_empty() {
                    types = types
                        .and(branches.iter().fold(Types::NONE, |all, branch| all.or(self.types(branch, budget - 1))));
                }
            }
        }
        types
    }

    // --- Keyword rules ----------------------------------------------------------------------

    fn type_keyword(&self, a: &Node<'a>, b: &Node<'a>, value: &Value, types: Types, out: &mut Vec<Incompatibility>) {
        let Some(allowed) = Types::of_keyword(value) else {
            self.unproven(out, a, b, Some("type"), format!("cannot read `type` {value}"));
            return;
        };
        if !types.within(allowed) {
            let (a_name, b_name) = self.names();
            let extra = Types(types.0 & !allowed.0);
            self.breaks(
                out,
                a,
                b,
                Some("type"),
                format!("{b_name} allows `type` {value}, {a_name} also accepts {}", extra.describe()),
            );
        }
    }

    fn enum_keyword(
        &self,
        a: &Node<'a>,
        b: &Node<'a>,
        views: &[Node<'a>],
        value: &Value,
        out: &mut Vec<Incompatibility>,
    ) {
        let Value::Array(allowed) = value else {
            self.unproven(out, a, b, Some("enum"), "`enum` is not an array".into());
            return;
        };
        let mut closest: Option<&Value> = None;
        for view in views {
            if let Some(constant) = view.keyword("const") {
                if allowed.contains(constant) {
                    return;
                }
            }
            if let Some(Value::Array(values)) = view.keyword("enum") {
                match values.iter().find(|v| !allowed.contains(v)) {
                    None => return,
                    Some(missing) => closest = Some(missing),
                }
            }
        }
        let (a_name, b_name) = self.names();
        let detail = match closest {
            Some(missing) => format!("{b_name}'s `enum` lacks {missing}, which {a_name} accepts"),
            None => format!("{b_name} accepts only the values of its `enum`, {a_name} has no such list"),
        };
        self.breaks(out, a, b, Some("enum"), detail);
    }

    fn const_keyword(
        &self,
        a: &Node<'a>,
        b: &Node<'a>,
        views: &[Node<'a>],
        value: &Value,
        out: &mut Vec<Incompatibility>,
    ) {
        let holds = views.iter().any(|view| {
            view.keyword("const") == Some(value)
                || matches!(view.keyword("enum"), Some(Value::Array(values)) if !values.is_empty() && values.iter().all(|v| v == value))
        });
        if !holds {
            let (a_name, b_name) = self.names();
            self.breaks(
                out,
                a,
                b,
                Some("const"),
                format!("{b_name} accepts only {value} (`const`), {a_name} accepts other values"),
            );
        }
    }

    /// A's lower (`upper` false) or upper bounds on numbers, per its draft.
    fn bounds(view: &Node<'a>, upper: bool) -> Vec<Bound<'a>> {
        let (inclusive, exclusive) =
            if upper { ("maximum", "exclusiveMaximum") } else { ("minimum", "exclusiveMinimum") };
        let mut found = Vec::new();
        if view.doc.draft == Draft::Draft4 {
            if let Some(Value::Number(n)) = view.keyword(inclusive) {
                found.push((n, view.keyword(exclusive) == Some(&Value::Bool(true))));
            }
        } else {
            if let Some(Value::Number(n)) = view.keyword(inclusive) {
                found.push((n, false));
            }
            if let Some(Value::Number(n)) = view.keyword(exclusive) {
                found.push((n, true));
            }
        }
        found
    }

    fn bound(&self, a: &Node<'a>, b: &Node<'a>, views: &[Node<'a>], keyword: &str, out: &mut Vec<Incompatibility>) {
        let upper = keyword.ends_with("aximum");
        let wanted: Bound<'_> = if b.doc.draft == Draft::Draft4 {
            if keyword.starts_with("exclusive") {
                return; // a modifier, read with `minimum` or `maximum`
            }
            let exclusive = if upper { "exclusiveMaximum" } else { "exclusiveMinimum" };
            match b.keyword(keyword) {
                Some(Value::Number(n)) => (n, b.keyword(exclusive) == Some(&Value::Bool(true))),
                _ => return self.unproven(out, a, b, Some(keyword), format!("`{keyword}` is not a number")),
            }
        } else {
            match b.keyword(keyword) {
                Some(Value::Number(n)) => (n, keyword.starts_with("exclusive")),
                _ => return self.unproven(out, a, b, Some(keyword), format!("`{keyword}` is not a number")),
            }
        };
        let implies = |(have, exclusive): Bound<'_>| match compare(have, wanted.0) {
            Some(Ordering::Equal) => exclusive || !wanted.1,
            Some(Ordering::Greater) => !upper,
            Some(Ordering::Less) => upper,
            None => false,
        };
        let found: Vec<Bound<'_>> = views.iter().flat_map(|v| Self::bounds(v, upper)).collect();
        if !found.iter().any(|bound| implies(*bound)) {
            let (a_name, b_name) = self.names();
            let side = if upper { "upper" } else { "lower" };
            let had = match found.first() {
                None => format!("{a_name} has no {side} bound"),
                Some((n, exclusive)) => format!("{a_name}'s is {n}{}", if *exclusive { " (exclusive)" } else { "" }),
            };
            self.breaks(out, a, b, Some(keyword), format!("{b_name} has `{keyword}` {}; {had}", wanted.0));
        }
    }

    fn multiple_of(
        &self,
        a: &Node<'a>,
        b: &Node<'a>,
        views: &[Node<'a>],
        value: &Value,
        types: Types,
        out: &mut Vec<Incompatibility>,
    ) {
        let Value::Number(wanted) = value else {
            return self.unproven(out, a, b, Some("multipleOf"), "`multipleOf` is not a number".into());
        };
        let whole = |n: &Number| {
            n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f > 0.0 && *f < 9e15).map(|f| f as u64))
        };
        if whole(wanted) == Some(1) && !types.meets(Types::FRACTION) {
            return;
        }
        let holds = views.iter().any(|view| match view.keyword("multipleOf") {
            Some(Value::Number(have)) => {
                have == wanted || matches!((whole(have), whole(wanted)), (Some(h), Some(w)) if w > 0 && h % w == 0)
            }
            _ => false,
        });
        if !holds {
            let (a_name, b_name) = self.names();
            self.breaks(
                out,
                a,
                b,
                Some("multipleOf"),
                format!("{b_name} has `multipleOf` {wanted}, which {a_name} does not imply"),
            );
        }
    }

    fn count_bound(
        &self,
        a: &Node<'a>,
        b: &Node<'a>,
        views: &[Node<'a>],
        keyword: &str,
        value: &Value,
        out: &mut Vec<Incompatibility>,
    ) {
        let Some(wanted) = count(value) else {
            return self.unproven(out, a, b, Some(keyword), format!("`{keyword}` is not a count"));
        };
        let minimum = keyword.starts_with("min");
        if minimum && wanted == 0 {
            return;
        }
        let holds = views.iter().any(|view| {
            let by_keyword =
                view.count(keyword).is_some_and(|have| if minimum { have >= wanted } else { have <= wanted });
            let by_required = keyword == "minProperties"
                && matches!(view.keyword("required"), Some(Value::Array(names))
                    if names.iter().collect::<HashSet<_>>().len() as u64 >= wanted);
            by_keyword || by_required
        });
        if !holds {
            let (a_name, b_name) = self.names();
            let had = views.iter().find_map(|v| v.count(keyword));
            let had = match had {
                Some(n) => format!("{a_name} has {n}"),
                None => format!("{a_name} sets none"),
            };
            self.breaks(out, a, b, Some(keyword), format!("{b_name} has `{keyword}` {wanted}; {had}"));
        }
    }

    /// A keyword B shares with A: implied only by the same value (same draft, no reference).
    fn same_value(
        &self,
        a: &Node<'a>,
        b: &Node<'a>,
        views: &[Node<'a>],
        keyword: &str,
        value: &Value,
        out: &mut Vec<Incompatibility>,
    ) {
        let holds = ref_free(value)
            && views
                .iter()
                .any(|view| view.doc.draft == b.doc.draft && view.object().and_then(|o| o.get(keyword)) == Some(value));
        if holds {
            return;
        }
        let (a_name, b_name) = self.names();
        if in_vocabulary(b.doc.draft, keyword) {
            self.breaks(out, a, b, Some(keyword), format!("{b_name} requires `{keyword}` {value}, {a_name} does not"));
        } else {
            self.unproven(
                out,
                a,
                b,
                Some(keyword),
                format!("`{keyword}` is not a keyword the checker knows for this draft, and its value changed"),
            );
        }
    }

    fn unique_items(&self, a: &Node<'a>, b: &Node<'a>, views: &[Node<'a>], out: &mut Vec<Incompatibility>) {
        let holds = views.iter().any(|v| {
            v.keyword("uniqueItems") == Some(&Value::Bool(true)) || v.count("maxItems").is_some_and(|n| n <= 1)
        });
        if !holds {
            let (a_name, b_name) = self.names();
            self.breaks(out, a, b, Some("uniqueItems"), format!("{b_name} requires unique items, {a_name} does not"));
        }
    }

    /// Proves `b_side` from one of A's candidate schemas for the same place, reporting against the
    /// first (or against an unconstrained A, if A says nothing there).
    fn implied_by_any(
        &mut self,
        candidates: &[Node<'a>],
        b_side: &Node<'a>,
        depth: usize,
        a: &Node<'a>,
        out: &mut Vec<Incompatibility>,
    ) {
        if is_true(b_side) || candidates.iter().any(|c| c.value == &Value::Bool(false)) {
            return;
        }
        if candidates.len() > 1 {
            for candidate in candidates {
                if self.proves(candidate, b_side, depth) {
                    return;
                }
            }
        }
        let first = candidates.first().cloned().unwrap_or_else(|| a.unconstrained());
        self.subset(&first, b_side, depth, out);
    }

    fn items(&mut self, a: &Node<'a>, b: &Node<'a>, views: &[Node<'a>], depth: usize, out: &mut Vec<Incompatibility>) {
        let wanted = Items::of(b);
        let have: Vec<Items<'a>> = views.iter().map(Items::of).collect();
        let longest = have.iter().map(|i| i.prefix.len()).chain([wanted.prefix.len()]).max().unwrap_or(0);
        let max_items = views.iter().filter_map(|v| v.count("maxItems")).min();
        for i in 0..longest {
            if max_items.is_some_and(|m| i as u64 >= m) {
                return;
            }
            let Some(b_item) = wanted.at(i) else { continue };
            let candidates: Vec<Node<'a>> = have.iter().filter_map(|items| items.at(i)).collect();
            self.implied_by_any(&candidates, &b_item, depth + 1, a, out);
        }
        if max_items.is_some_and(|m| longest as u64 >= m) {
            return;
        }
        if let Some(b_rest) = &wanted.rest {
            let candidates: Vec<Node<'a>> = have.iter().filter_map(|items| items.rest.clone()).collect();
            self.implied_by_any(&candidates, b_rest, depth + 1, a, out);
        }
    }

    fn contains(
        &mut self,
        a: &Node<'a>,
        b: &Node<'a>,
        views: &[Node<'a>],
        depth: usize,
        out: &mut Vec<Incompatibility>,
    ) {
        let Some(wanted) = b.sub("contains", None) else { return };
        let min = |node: &Node<'a>| node.count("minContains").unwrap_or(1);
        let b_max = b.count("maxContains");
        if min(b) == 0 && b_max.is_none() {
            return;
        }
        let mut first = None;
        for view in views {
            let Some(have) = view.sub("contains", None) else { continue };
            first.get_or_insert_with(|| have.clone());
            let enough = min(view) >= min(b) && self.proves(&have, &wanted, depth + 1);
            let bounded = match b_max {
                None => true,
                Some(b_max) => {
                    view.count("maxContains").is_some_and(|m| m <= b_max) && self.proves(&wanted, &have, depth + 1)
                }
            };
            if enough && bounded {
                return;
            }
        }
        let (a_name, b_name) = self.names();
        match first {
            Some(have) if b_max.is_none() => {
                let with_contains = views.iter().find(|v| v.sub("contains", None).is_some()).unwrap_or(a);
                if min(with_contains) < min(b) {
                    self.breaks(
                        out,
                        a,
                        b,
                        Some("minContains"),
                        format!("{b_name} needs more items matching `contains` than {a_name}"),
                    );
                } else {
                    self.subset(&have, &wanted, depth + 1, out);
                }
            }
            Some(_) => self.unproven(
                out,
                a,
                b,
                Some("maxContains"),
                format!("{b_name}'s `maxContains` is not implied by {a_name}'s `contains`"),
            ),
            None => self.breaks(
                out,
                a,
                b,
                Some("contains"),
                format!("{b_name} requires an item matching `contains`, {a_name} does not"),
            ),
        }
    }

    fn properties(
        &mut self,
        a: &Node<'a>,
        b: &Node<'a>,
        views: &[Node<'a>],
        depth: usize,
        out: &mut Vec<Incompatibility>,
    ) {
        let b_properties = b.keyword("properties").and_then(Value::as_object);
        let b_patterns: Vec<Node<'a>> = match b.keyword("patternProperties") {
            Some(Value::Object(patterns)) => {
                patterns.iter().map(|(p, schema)| b.at(schema, &["patternProperties", p])).collect()
            }
            _ => Vec::new(),
        };
        let b_additional = b.sub("additionalProperties", None);
        let mut names: BTreeSet<&'a str> =
            b_properties.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
        for view in views {
            if let Some(Value::Object(properties)) = view.keyword("properties") {
                names.extend(properties.keys().map(String::as_str));
            }
        }
        for name in names {
            let candidates: Vec<Node<'a>> = views.iter().filter_map(|v| Self::member(v, name)).collect();
            let mut wanted: Vec<Node<'a>> = Vec::new();
            match b_properties.and_then(|p| p.get(name)) {
                Some(schema) => wanted.push(b.at(schema, &["properties", name])),
                None => wanted.extend(b_additional.clone()),
            }
            wanted.extend(b_patterns.iter().cloned());
            for b_side in &wanted {
                self.implied_by_any(&candidates, b_side, depth + 1, a, out);
            }
        }
        // Every other name.
        let candidates: Vec<Node<'a>> = views.iter().filter_map(Self::other_members).collect();
        for b_side in b_patterns.iter().chain(b_additional.iter()) {
            self.implied_by_any(&candidates, b_side, depth + 1, a, out);
        }
    }

    /// The schema a view gives property `name`, if it can tell.
    fn member(view: &Node<'a>, name: &str) -> Option<Node<'a>> {
        if let Some(schema) = view.keyword("properties").and_then(|p| p.get(name)) {
            return Some(view.at(schema, &["properties", name]));
        }
        Self::other_members(view)
    }

    /// The schema a view gives properties it does not list, if it can tell.
    fn other_members(view: &Node<'a>) -> Option<Node<'a>> {
        let patterns = matches!(view.keyword("patternProperties"), Some(Value::Object(p)) if !p.is_empty());
        if patterns {
            return None;
        }
        view.sub("additionalProperties", None)
    }

    fn required(&self, a: &Node<'a>, b: &Node<'a>, views: &[Node<'a>], value: &Value, out: &mut Vec<Incompatibility>) {
        let Value::Array(names) = value else {
            return self.unproven(out, a, b, Some("required"), "`required` is not an array".into());
        };
        let required: HashSet<&Value> =
            views.iter().filter_map(|v| v.keyword("required")?.as_array()).flatten().collect();
        let missing: Vec<String> = names.iter().filter(|n| !required.contains(n)).map(|n| n.to_string()).collect();
        if !missing.is_empty() {
            let (a_name, b_name) = self.names();
            self.breaks(
                out,
                a,
                b,
                Some("required"),
                format!("{b_name} requires {}, {a_name} does not", missing.join(", ")),
            );
        }
    }

    fn property_names(
        &mut self,
        a: &Node<'a>,
        b: &Node<'a>,
        views: &[Node<'a>],
        depth: usize,
        out: &mut Vec<Incompatibility>,
    ) {
        let Some(wanted) = b.sub("propertyNames", None) else { return };
        let candidates: Vec<Node<'a>> = views.iter().filter_map(|v| v.sub("propertyNames", None)).collect();
        if candidates.is_empty() && !is_true(&wanted) {
            let (a_name, b_name) = self.names();
            self.unproven(
                out,
                a,
                b,
                Some("propertyNames"),
                format!("{b_name} constrains `propertyNames`, {a_name} does not"),
            );
            return;
        }
        self.implied_by_any(&candidates, &wanted, depth + 1, a, out);
    }

    /// Whether every value of a view leaves out property `name`.
    fn forbids(views: &[Node<'a>], name: &str) -> bool {
        views.iter().any(|v| Self::member(v, name).is_some_and(|m| m.value == &Value::Bool(false)))
    }

    fn dependencies(
        &mut self,
        a: &Node<'a>,
        b: &Node<'a>,
        views: &[Node<'a>],
        keyword: &str,
        depth: usize,
        out: &mut Vec<Incompatibility>,
    ) {
        let Some(Value::Object(entries)) = b.keyword(keyword) else {
            return self.unproven(out, a, b, Some(keyword), format!("`{keyword}` is not an object"));
        };
        let (a_name, b_name) = self.names();
        for (property, dependency) in entries {
            if Self::forbids(views, property) {
                continue;
            }
            match dependency {
                Value::Array(names) => {
                    let listed = |v: &Node<'a>, k: &str| match v.keyword(k).and_then(|d| d.get(property)) {
                        Some(Value::Array(names)) => names.clone(),
                        _ => Vec::new(),
                    };
                    let mut have: Vec<Value> = Vec::new();
                    for view in views {
                        have.extend(view.keyword("required").and_then(Value::as_array).cloned().unwrap_or_default());
                        have.extend(listed(view, "dependentRequired"));
                        have.extend(listed(view, "dependencies"));
                    }
                    let missing: Vec<String> =
                        names.iter().filter(|n| !have.contains(n)).map(|n| n.to_string()).collect();
                    if !missing.is_empty() {
                        self.breaks(
                            out,
                            a,
                            b,
                            Some(keyword),
                            format!(
                                "{b_name} requires {} whenever \"{property}\" is present, {a_name} does not",
                                missing.join(", ")
                            ),
                        );
                    }
                }
                Value::Object(_) | Value::Bool(_) => {
                    let wanted = b.at(dependency, &[keyword, property]);
                    let candidates: Vec<Node<'a>> = views
                        .iter()
                        .flat_map(|v| ["dependentSchemas", "dependencies"].map(|k| v.sub(k, Some(property))))
                        .flatten()
                        .filter(|n| n.value.is_object() || n.value.is_boolean())
                        .collect();
                    if candidates.iter().any(|c| self.proves(c, &wanted, depth)) {
                        continue;
                    }
                    self.subset(a, &wanted, depth, out);
                }
                _ => self.unproven(out, a, b, Some(keyword), format!("cannot read `{keyword}` of \"{property}\"")),
            }
        }
    }

    fn any_of(&mut self, a: &Node<'a>, b: &Node<'a>, views: &[Node<'a>], depth: usize, out: &mut Vec<Incompatibility>) {
        let branches = b.subs("anyOf");
        if branches.iter().any(|branch| self.proves(a, branch, depth)) {
            return;
        }
        for view in views {
            for keyword in ["anyOf", "oneOf"] {
                let have = view.subs(keyword);
                if !have.is_empty() && have.iter().all(|h| branches.iter().any(|branch| self.proves(h, branch, depth)))
                {
                    return;
                }
            }
        }
        let (a_name, b_name) = self.names();
        self.unproven(
            out,
            a,
            b,
            Some("anyOf"),
            format!("no branch of {b_name}'s `anyOf` is shown to accept all that {a_name} accepts"),
        );
    }

    fn one_of(
        &mut self,
        a: &Node<'a>,
        b: &Node<'a>,
        views: &[Node<'a>],
        value: &Value,
        depth: usize,
        out: &mut Vec<Incompatibility>,
    ) {
        let same =
            ref_free(value) && views.iter().any(|v| v.doc.draft == b.doc.draft && v.keyword("oneOf") == Some(value));
        if same {
            return;
        }
        let branches = b.subs("oneOf");
        if let [only] = branches.as_slice() {
            self.subset(a, only, depth, out);
            return;
        }
        let (a_name, b_name) = self.names();
        self.unproven(out, a, b, Some("oneOf"), format!("{b_name}'s `oneOf` differs from {a_name}'s"));
    }

    fn not(
        &mut self,
        a: &Node<'a>,
        b: &Node<'a>,
        views: &[Node<'a>],
        types: Types,
        depth: usize,
        out: &mut Vec<Incompatibility>,
    ) {
        let Some(excluded) = b.sub("not", None) else { return };
        if !types.meets(self.types(&excluded, 8)) {
            return;
        }
        if views.iter().filter_map(|v| v.sub("not", None)).any(|have| self.proves(&excluded, &have, depth)) {
            return;
        }
        let (a_name, b_name) = self.names();
        self.unproven(out, a, b, Some("not"), format!("{b_name}'s `not` may exclude values {a_name} accepts"));
    }

    fn if_then_else(
        &mut self,
        a: &Node<'a>,
        b: &Node<'a>,
        views: &[Node<'a>],
        depth: usize,
        out: &mut Vec<Incompatibility>,
    ) {
        let then = b.sub("then", None);
        let otherwise = b.sub("else", None);
        let both = then.iter().chain(otherwise.iter()).cloned().collect::<Vec<_>>();
        if both.iter().all(|branch| self.proves(a, branch, depth)) {
            return;
        }
        let object = b.object();
        let same = views.iter().any(|v| {
            v.doc.draft == b.doc.draft
                && ["if", "then", "else"].iter().all(|k| {
                    let mine = object.and_then(|o| o.get(*k));
                    mine.is_none_or(ref_free) && v.object().and_then(|o| o.get(*k)) == mine
                })
        });
        if !same {
            let (a_name, b_name) = self.names();
            self.unproven(
                out,
                a,
                b,
                Some("if"),
                format!("{b_name}'s `if`/`then`/`else` may refuse values {a_name} accepts"),
            );
        }
    }
}

/// An array schema's item schemas: by position, then for the rest.
struct Items<'a> {
    prefix: Vec<Node<'a>>,
    rest: Option<Node<'a>>,
}

impl<'a> Items<'a> {
    fn of(node: &Node<'a>) -> Self {
        if node.doc.draft == Draft::Draft202012 {
            return Self { prefix: node.subs("prefixItems"), rest: node.sub("items", None) };
        }
        match node.keyword("items") {
            Some(Value::Array(_)) => Self { prefix: node.subs("items"), rest: node.sub("additionalItems", None) },
            Some(_) => Self { prefix: Vec::new(), rest: node.sub("items", None) },
            None => Self { prefix: Vec::new(), rest: None },
        }
    }

    fn at(&self, i: usize) -> Option<Node<'a>> {
        self.prefix.get(i).cloned().or_else(|| self.rest.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::super::{compile, incompatibilities as check, SchemaDocument};
    use super::*;

    fn registry(documents: &[(&str, Value)]) -> Documents {
        documents
            .iter()
            .map(|(uri, document)| (uri.to_string(), (SchemaFormat::JsonSchema, Arc::new(document.clone()))))
            .collect()
    }

    fn compare_in(known: &Documents, mode: Compatibility, old: &Value, new: &Value) -> Vec<Incompatibility> {
        let old = SchemaDocument::new(SchemaFormat::JsonSchema, old);
        let new = SchemaDocument::new(SchemaFormat::JsonSchema, new);
        check(mode, &old, &new, known)
    }

    fn compare(mode: Compatibility, old: &Value, new: &Value) -> Vec<Incompatibility> {
        compare_in(&Documents::new(), mode, old, new)
    }

    fn valid_in(known: &Documents, schema: &Value, payload: &Value) -> bool {
        compile(&SchemaDocument::new(SchemaFormat::JsonSchema, schema), known)
            .unwrap_or_else(|e| panic!("{schema} does not compile: {e}"))
            .is_valid(payload)
    }

    /// Values of every type and a few shapes, to check that an accepted change loses none.
    fn samples() -> Vec<Value> {
        vec![
            json!(null),
            json!(true),
            json!(0),
            json!(1),
            json!(-1),
            json!(1.5),
            json!(3),
            json!(5),
            json!(10),
            json!(1e10),
            json!(""),
            json!("a"),
            json!("abc"),
            json!("abcdef"),
            json!("a@b.example"),
            json!([]),
            json!([1]),
            json!(["a"]),
            json!([1, "a"]),
            json!([1, 1]),
            json!({}),
            json!({"id": 1}),
            json!({"id": "x"}),
            json!({"name": "n", "age": 3}),
            json!({"nick": 5}),
            json!({"nick": "x"}),
            json!({"a": 1, "b": 2}),
            json!({"address": {"zip": "75001"}}),
            json!({"address": {"zip": 75001}}),
        ]
    }

    /// Every sample (and `extra`) that `narrow` accepts, `wide` accepts.
    fn loses_nothing(known: &Documents, narrow: &Value, wide: &Value, extra: &Value) {
        for sample in samples().iter().chain([extra]) {
            if valid_in(known, narrow, sample) {
                assert!(valid_in(known, wide, sample), "{sample} is valid under {narrow} but not under {wide}");
            }
        }
    }

    /// `new` keeps BACKWARD (it accepts all `old` did) and breaks FORWARD, as `witness` shows: new
    /// accepts it, old refuses it. Returns what FORWARD found.
    fn widens_in(known: &Documents, old: Value, new: Value, witness: Value) -> Vec<Incompatibility> {
        assert_eq!(compare_in(known, Compatibility::Backward, &old, &new), [], "{old} -> {new}");
        loses_nothing(known, &old, &new, &witness);
        assert!(valid_in(known, &new, &witness) && !valid_in(known, &old, &witness), "{witness} is no witness");
        let found = compare_in(known, Compatibility::Forward, &old, &new);
        assert!(!found.is_empty(), "FORWARD accepted {old} -> {new}, though {witness} breaks it");
        assert!(found.iter().all(|i| i.reason.contains("FORWARD")), "{found:?}");
        found
    }

    fn widens(old: Value, new: Value, witness: Value) -> Vec<Incompatibility> {
        widens_in(&Documents::new(), old, new, witness)
    }

    /// The mirror: `new` keeps FORWARD and breaks BACKWARD, as `witness` shows (old accepts it, new
    /// refuses it). Returns what BACKWARD found.
    fn narrows_in(known: &Documents, old: Value, new: Value, witness: Value) -> Vec<Incompatibility> {
        assert_eq!(compare_in(known, Compatibility::Forward, &old, &new), [], "{old} -> {new}");
        loses_nothing(known, &new, &old, &witness);
        assert!(valid_in(known, &old, &witness) && !valid_in(known, &new, &witness), "{witness} is no witness");
        let found = compare_in(known, Compatibility::Backward, &old, &new);
        assert!(!found.is_empty(), "BACKWARD accepted {old} -> {new}, though {witness} breaks it");
        assert!(found.iter().all(|i| i.reason.contains("BACKWARD")), "{found:?}");
        found
    }

    fn narrows(old: Value, new: Value, witness: Value) -> Vec<Incompatibility> {
        narrows_in(&Documents::new(), old, new, witness)
    }

    /// Both directions hold.
    fn keeps_full(old: Value, new: Value) {
        assert_eq!(compare(Compatibility::Full, &old, &new), [], "{old} -> {new}");
        let known = Documents::new();
        loses_nothing(&known, &old, &new, &json!(null));
        loses_nothing(&known, &new, &old, &json!(null));
    }

    /// Refused both ways, as the two witnesses show; returns what FULL found.
    fn breaks_both(old: Value, new: Value, lost: Value, gained: Value) -> Vec<Incompatibility> {
        assert!(valid_in(&Documents::new(), &old, &lost) && !valid_in(&Documents::new(), &new, &lost), "{lost}");
        assert!(valid_in(&Documents::new(), &new, &gained) && !valid_in(&Documents::new(), &old, &gained), "{gained}");
        let found = compare(Compatibility::Full, &old, &new);
        assert!(found.iter().any(|i| i.reason.contains("BACKWARD")), "{found:?}");
        assert!(found.iter().any(|i| i.reason.contains("FORWARD")), "{found:?}");
        found
    }

    fn at(found: &[Incompatibility]) -> Vec<&str> {
        found.iter().map(|i| i.pointer.as_str()).collect()
    }

    // --- Rules ------------------------------------------------------------------------------

    #[test]
    fn identical_schemas_and_changed_annotations_keep_full() {
        let schema = json!({"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}});
        keeps_full(schema.clone(), schema.clone());
        let mut annotated = schema.clone();
        annotated["title"] = json!("Order");
        annotated["properties"]["id"]["description"] = json!("the order's number");
        annotated["x-owner"] = json!("billing");
        keeps_full(schema, annotated);
    }

    #[test]
    fn dropping_a_required_name_widens() {
        let found = widens(
            json!({"type": "object", "required": ["id", "name"]}),
            json!({"type": "object", "required": ["name"]}),
            json!({"name": "n"}),
        );
        assert_eq!(at(&found), ["/required"]);
        assert!(found[0].reason.contains("the previous version requires \"id\""), "{found:?}");
    }

    #[test]
    fn adding_a_required_name_narrows() {
        let found = narrows(json!({"type": "object"}), json!({"type": "object", "required": ["id"]}), json!({}));
        assert_eq!(at(&found), ["/required"]);
        assert_eq!(found[0].reason, "breaks BACKWARD: this version requires \"id\", the previous version does not");
    }

    #[test]
    fn lowering_minimum_and_raising_maximum_widen() {
        let found = widens(json!({"type": "number", "minimum": 5}), json!({"type": "number", "minimum": 0}), json!(3));
        assert_eq!(at(&found), ["/minimum"]);
        widens(json!({"maximum": 5}), json!({"maximum": 10}), json!(7));
        widens(json!({"maximum": 5}), json!({}), json!(7));
    }

    #[test]
    fn raising_minimum_narrows() {
        let found = narrows(json!({"minimum": 0}), json!({"minimum": 5}), json!(3));
        assert_eq!(at(&found), ["/minimum"]);
        assert_eq!(found[0].reason, "breaks BACKWARD: this version has `minimum` 5; the previous version's is 0");
    }

    #[test]
    fn an_exclusive_bound_implies_the_inclusive_one_at_the_same_number_not_the_reverse() {
        widens(json!({"exclusiveMinimum": 0}), json!({"minimum": 0}), json!(0));
        widens(json!({"minimum": 1}), json!({"exclusiveMinimum": 0}), json!(0.5));
        widens(json!({"exclusiveMaximum": 10}), json!({"maximum": 10}), json!(10));
    }

    #[test]
    fn draft_4_exclusive_bounds_are_booleans_beside_the_bound() {
        let draft4 = "http://json-schema.org/draft-04/schema#";
        widens(
            json!({"$schema": draft4, "minimum": 0, "exclusiveMinimum": true}),
            json!({"$schema": draft4, "minimum": 0}),
            json!(0),
        );
    }

    #[test]
    fn bounds_compare_exactly_beyond_a_doubles_precision() {
        // 2^53 + 1 rounds to 2^53 as a double; the bound still rose.
        narrows(
            json!({"minimum": 9007199254740992u64}),
            json!({"minimum": 9007199254740993u64}),
            json!(9007199254740992u64),
        );
    }

    #[test]
    fn widening_length_item_and_property_counts_widens() {
        widens(json!({"minLength": 3}), json!({"minLength": 1}), json!("a"));
        widens(json!({"maxLength": 3}), json!({"maxLength": 6}), json!("abcdef"));
        widens(json!({"minItems": 2}), json!({"minItems": 1}), json!([1]));
        widens(json!({"maxItems": 1}), json!({"maxItems": 2}), json!([1, "a"]));
        widens(json!({"minProperties": 2}), json!({}), json!({"id": 1}));
        let found = narrows(json!({"maxProperties": 2}), json!({"maxProperties": 1}), json!({"a": 1, "b": 2}));
        assert_eq!(at(&found), ["/maxProperties"]);
    }

    #[test]
    fn required_names_imply_min_properties() {
        keeps_full(
            json!({"type": "object", "required": ["a", "b"]}),
            json!({"type": "object", "required": ["a", "b"], "minProperties": 2}),
        );
    }

    #[test]
    fn adding_a_type_or_integer_to_number_widens() {
        let found = widens(json!({"type": "string"}), json!({"type": ["string", "null"]}), json!(null));
        assert_eq!(at(&found), ["/type"]);
        assert!(found[0].reason.contains("also accepts null"), "{found:?}");
        widens(json!({"type": "integer"}), json!({"type": "number"}), json!(1.5));
    }

    #[test]
    fn narrowing_number_to_integer_narrows() {
        let found = narrows(json!({"type": "number"}), json!({"type": "integer"}), json!(1.5));
        assert_eq!(at(&found), ["/type"]);
        assert_eq!(
            found[0].reason,
            "breaks BACKWARD: this version allows `type` \"integer\", the previous version also accepts non-integer number"
        );
    }

    #[test]
    fn a_keyword_for_a_type_the_schema_refuses_constrains_nothing() {
        keeps_full(
            json!({"type": "string"}),
            json!({"type": "string", "minimum": 5, "required": ["a"], "maxItems": 0}),
        );
    }

    #[test]
    fn adding_an_enum_value_or_dropping_the_enum_widens() {
        let found = widens(json!({"enum": ["a", "b"]}), json!({"enum": ["a", "b", "c"]}), json!("c"));
        assert_eq!(at(&found), ["/enum"]);
        assert!(found[0].reason.contains("lacks \"c\""), "{found:?}");
        widens(json!({"type": "string", "enum": ["a"]}), json!({"type": "string"}), json!("b"));
        widens(json!({"const": "a"}), json!({"enum": ["a", "b"]}), json!("b"));
    }

    #[test]
    fn removing_an_enum_value_narrows() {
        let found = narrows(json!({"enum": ["a", "b", 1]}), json!({"enum": ["a", 1]}), json!("b"));
        assert_eq!(at(&found), ["/enum"]);
        assert!(found[0].reason.contains("lacks \"b\""), "{found:?}");
    }

    #[test]
    fn an_enum_implies_the_types_of_its_values() {
        keeps_full(json!({"enum": ["a", 1]}), json!({"enum": ["a", 1], "type": ["string", "integer"]}));
    }

    #[test]
    fn dropping_a_pattern_or_format_widens_and_changing_one_breaks_both() {
        widens(json!({"type": "string", "pattern": "^a"}), json!({"type": "string"}), json!("b"));
        let found = breaks_both(json!({"pattern": "^a"}), json!({"pattern": "^b"}), json!("a"), json!("b"));
        assert_eq!(at(&found), ["/pattern", "/pattern"]);
        let draft7 = "http://json-schema.org/draft-07/schema#";
        let found = narrows(
            json!({"$schema": draft7, "type": "string"}),
            json!({"$schema": draft7, "type": "string", "format": "email"}),
            json!("not an email"),
        );
        assert_eq!(at(&found), ["/format"]);
    }

    #[test]
    fn format_asserts_nothing_from_draft_2019_09_so_adding_it_keeps_full() {
        // The validator is built with its defaults, which do not assert `format` in 2020-12.
        assert!(valid_in(&Documents::new(), &json!({"format": "email"}), &json!("not an email")));
        keeps_full(json!({"type": "string"}), json!({"type": "string", "format": "email"}));
    }

    #[test]
    fn a_multiple_of_a_multiple_widens() {
        let found = widens(json!({"multipleOf": 4}), json!({"multipleOf": 2}), json!(2));
        assert_eq!(at(&found), ["/multipleOf"]);
        keeps_full(json!({"type": "integer"}), json!({"type": "integer", "multipleOf": 1}));
    }

    #[test]
    fn dropping_unique_items_widens() {
        widens(json!({"type": "array", "uniqueItems": true}), json!({"type": "array"}), json!([1, 1]));
    }

    #[test]
    fn adding_an_optional_property_with_a_schema_is_not_backward_when_others_were_allowed() {
        let old = json!({"type": "object", "properties": {"name": {"type": "string"}}});
        let new = json!({"type": "object", "properties": {"name": {"type": "string"}, "nick": {"type": "string"}}});
        let found = narrows(old, new, json!({"nick": 5}));
        assert_eq!(at(&found), ["/properties/nick/type"]);
        assert!(found[0].reason.contains("also accepts"), "{found:?}");
    }

    #[test]
    fn adding_an_unconstrained_property_keeps_full() {
        keeps_full(
            json!({"type": "object", "properties": {"name": {"type": "string"}}}),
            json!({"type": "object", "properties": {"name": {"type": "string"}, "nick": true}}),
        );
    }

    #[test]
    fn adding_a_property_where_none_other_was_allowed_widens() {
        let old = json!({"type": "object", "properties": {"name": {"type": "string"}}, "additionalProperties": false});
        let new = json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "nick": {"type": "string"}},
            "additionalProperties": false
        });
        let found = widens(old, new, json!({"nick": "x"}));
        assert_eq!(at(&found), ["/properties/nick"]);
        assert!(found[0].reason.contains("accepts nothing here"), "{found:?}");
    }

    #[test]
    fn removing_a_property_widens_unless_others_are_refused() {
        widens(json!({"properties": {"id": {"type": "integer"}}}), json!({}), json!({"id": "x"}));
        let found = narrows(
            json!({"properties": {"id": {"type": "integer"}, "name": {}}, "additionalProperties": false}),
            json!({"properties": {"name": {}}, "additionalProperties": false}),
            json!({"id": 1}),
        );
        assert_eq!(at(&found), ["/additionalProperties"]);
    }

    #[test]
    fn allowing_additional_properties_widens() {
        let found = widens(
            json!({"additionalProperties": false}),
            json!({"additionalProperties": {"type": "integer"}}),
            json!({"id": 1}),
        );
        assert_eq!(at(&found), ["/additionalProperties"]);
    }

    #[test]
    fn pattern_properties_in_the_new_version_constrain_every_name_conservatively() {
        // Every property was refused before, so the new patterned ones cannot refuse anything.
        widens(
            json!({"additionalProperties": false}),
            json!({"patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": false}),
            json!({"x-a": "s"}),
        );
        // Before, any property was allowed: the pattern's schema may refuse some.
        narrows(json!({}), json!({"patternProperties": {"^x-": {"type": "string"}}}), json!({"x-a": 1}));
    }

    #[test]
    fn a_nested_change_is_reported_at_its_pointer() {
        let old = json!({"properties": {"address": {"properties": {"zip": {"type": "string"}}}}});
        let new = json!({"properties": {"address": {"properties": {"zip": {"type": "integer"}}}}});
        let found = breaks_both(old, new, json!({"address": {"zip": "75001"}}), json!({"address": {"zip": 75001}}));
        assert_eq!(at(&found), ["/properties/address/properties/zip/type", "/properties/address/properties/zip/type"]);
    }

    #[test]
    fn widening_items_widens_position_by_position() {
        let found = widens(
            json!({"type": "array", "items": {"type": "string"}}),
            json!({"type": "array", "items": {"type": ["string", "integer"]}}),
            json!([1]),
        );
        assert_eq!(at(&found), ["/items/type"]);
        widens(
            json!({"prefixItems": [{"type": "integer"}, {"type": "string"}], "items": false}),
            json!({"prefixItems": [{"type": "integer"}], "items": {"type": "string"}}),
            json!([1, "a", "b"]),
        );
        narrows(
            json!({"prefixItems": [{"type": "integer"}]}),
            json!({"prefixItems": [{"type": "integer"}], "items": false}),
            json!([1, 2]),
        );
    }

    #[test]
    fn draft_7_tuples_use_items_and_additional_items() {
        let draft7 = "http://json-schema.org/draft-07/schema#";
        widens(
            json!({"$schema": draft7, "items": [{"type": "integer"}], "additionalItems": false}),
            json!({"$schema": draft7, "items": [{"type": "integer"}], "additionalItems": {"type": "string"}}),
            json!([1, "a"]),
        );
    }

    #[test]
    fn lowering_min_contains_widens() {
        widens(
            json!({"contains": {"type": "integer"}, "minContains": 2}),
            json!({"contains": {"type": "integer"}}),
            json!([1, "a"]),
        );
        narrows(json!({"type": "array"}), json!({"type": "array", "contains": {"type": "integer"}}), json!(["a"]));
    }

    #[test]
    fn property_names_must_be_implied() {
        widens(
            json!({"propertyNames": {"maxLength": 1}}),
            json!({"propertyNames": {"maxLength": 2}}),
            json!({"ab": 1}),
        );
        let found = narrows(json!({}), json!({"propertyNames": {"maxLength": 1}}), json!({"ab": 1}));
        assert!(found[0].reason.starts_with("cannot prove"), "{found:?}");
    }

    #[test]
    fn adding_a_dependency_narrows() {
        let found = narrows(json!({}), json!({"dependentRequired": {"card": ["billing"]}}), json!({"card": 1}));
        assert_eq!(at(&found), ["/dependentRequired"]);
        narrows(json!({}), json!({"dependentSchemas": {"card": {"required": ["billing"]}}}), json!({"card": 1}));
        let draft7 = "http://json-schema.org/draft-07/schema#";
        narrows(
            json!({"$schema": draft7}),
            json!({"$schema": draft7, "dependencies": {"card": ["billing"]}}),
            json!({"card": 1}),
        );
    }

    #[test]
    fn all_of_branches_are_checked_one_by_one_and_relied_on_in_the_old_version() {
        let found = narrows(json!({}), json!({"allOf": [{"type": "string"}, {"minLength": 1}]}), json!(""));
        assert_eq!(at(&found), ["/allOf/0/type", "/allOf/1/minLength"]);
        widens(json!({"allOf": [{"minimum": 5}, {"maximum": 10}]}), json!({"minimum": 0, "maximum": 10}), json!(1));
    }

    #[test]
    fn adding_an_any_of_branch_widens() {
        widens(
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}),
            json!(null),
        );
        widens(json!({"type": "string"}), json!({"anyOf": [{"type": "string"}, {"type": "null"}]}), json!(null));
    }

    #[test]
    fn a_changed_one_of_cannot_be_proven_either_way() {
        let found = breaks_both(
            json!({"oneOf": [{"type": "integer"}, {"type": "null"}]}),
            json!({"oneOf": [{"type": "integer"}, {"type": "string"}]}),
            json!(null),
            json!("s"),
        );
        assert_eq!(at(&found), ["/oneOf", "/oneOf"]);
        assert!(found.iter().all(|i| i.reason.starts_with("cannot prove this change keeps")), "{found:?}");
        keeps_full(
            json!({"oneOf": [{"type": "integer"}, {"type": "null"}]}),
            json!({"oneOf": [{"type": "integer"}, {"type": "null"}]}),
        );
    }

    #[test]
    fn not_holds_when_the_excluded_types_were_never_accepted() {
        widens(json!({"type": "integer"}), json!({"not": {"type": "string"}}), json!(null));
        let found = narrows(json!({}), json!({"not": {"type": "string"}}), json!("s"));
        assert_eq!(at(&found), ["/not"]);
    }

    #[test]
    fn if_then_else_holds_only_when_both_branches_do() {
        let conditional = json!({"if": {"type": "integer"}, "then": {"minimum": 0}, "else": {"type": "string"}});
        keeps_full(conditional.clone(), conditional.clone());
        let found = narrows(json!({}), conditional, json!(-1));
        assert_eq!(at(&found), ["/if"]);
        keeps_full(
            json!({"type": "string"}),
            json!({"type": "string", "if": {"minLength": 1}, "then": {"type": "string"}}),
        );
    }

    #[test]
    fn refs_to_the_same_registered_uri_are_equal() {
        let person = "https://example.com/schemas/person/v1.json";
        let known = registry(&[(person, json!({"type": "object", "required": ["name"]}))]);
        let old = json!({"properties": {"author": {"$ref": person}}});
        let new = json!({"title": "Post", "properties": {"author": {"$ref": person}}});
        assert_eq!(compare_in(&known, Compatibility::Full, &old, &new), []);
    }

    #[test]
    fn a_ref_to_a_newer_registered_version_is_compared_through_it() {
        let v1 = "https://example.com/schemas/person/v1.json";
        let v2 = "https://example.com/schemas/person/v2.json";
        let known = registry(&[
            (v1, json!({"properties": {"age": {"type": "integer", "minimum": 18}}})),
            (v2, json!({"properties": {"age": {"type": "integer", "minimum": 0}}})),
        ]);
        let found = widens_in(
            &known,
            json!({"properties": {"author": {"$ref": v1}}}),
            json!({"properties": {"author": {"$ref": v2}}}),
            json!({"author": {"age": 5}}),
        );
        assert_eq!(at(&found), ["/properties/author/$ref"]);
        assert!(found[0].reason.starts_with(&format!("in {v2}#/properties/age/minimum: breaks FORWARD")), "{found:?}");
    }

    #[test]
    fn a_ref_to_an_unregistered_uri_cannot_be_followed() {
        let found = compare(Compatibility::Backward, &json!({}), &json!({"$ref": "https://example.com/gone.json"}));
        assert_eq!(at(&found), ["/$ref"]);
        assert!(found[0].reason.contains("'https://example.com/gone.json' is not a registered schema"), "{found:?}");
    }

    #[test]
    fn local_refs_are_followed_into_each_versions_own_defs() {
        let schema = |zip: &str| json!({"$defs": {"zip": {"type": zip}}, "properties": {"address": {"properties": {"zip": {"$ref": "#/$defs/zip"}}}}});
        keeps_full(schema("string"), schema("string"));
        let found = breaks_both(
            schema("string"),
            schema("integer"),
            json!({"address": {"zip": "75001"}}),
            json!({"address": {"zip": 75001}}),
        );
        assert_eq!(at(&found), ["/$defs/zip/type", "/$defs/zip/type"]);
    }

    #[test]
    fn recursive_schemas_compare_through_their_cycle() {
        let list = |value: &str| json!({"$defs": {"node": {"type": "object", "properties": {"value": {"type": value}, "next": {"$ref": "#/$defs/node"}}}}, "$ref": "#/$defs/node"});
        keeps_full(list("integer"), list("integer"));
        widens(list("integer"), list("number"), json!({"value": 1, "next": {"value": 1.5}}));
    }

    #[test]
    fn a_cycle_that_never_enters_the_value_cannot_be_proven() {
        let old = json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a", "type": "string"});
        let new = json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"});
        let found = compare(Compatibility::Backward, &old, &new);
        assert!(found.iter().any(|i| i.reason.contains("`$ref` cycle")), "{found:?}");
    }

    #[test]
    fn in_draft_7_a_ref_replaces_its_siblings() {
        let draft7 = "http://json-schema.org/draft-07/schema#";
        // The old maxLength is ignored beside $ref, so "abcd" was valid; the new one refuses it.
        let found = narrows(
            json!({"$schema": draft7, "definitions": {"s": {"type": "string"}}, "$ref": "#/definitions/s", "maxLength": 3}),
            json!({"$schema": draft7, "type": "string", "maxLength": 3}),
            json!("abcd"),
        );
        assert_eq!(at(&found), ["/maxLength"]);
    }

    #[test]
    fn versions_in_different_drafts_are_refused() {
        let found = compare(
            Compatibility::Backward,
            &json!({}),
            &json!({"$schema": "http://json-schema.org/draft-07/schema#"}),
        );
        assert_eq!(at(&found), ["/$schema"]);
        assert!(found[0].reason.contains("different drafts"), "{found:?}");
    }

    #[test]
    fn dynamic_refs_embedded_ids_and_unevaluated_keywords_are_refused() {
        let found = compare(Compatibility::Backward, &json!({}), &json!({"properties": {"a": {"$dynamicRef": "#x"}}}));
        assert_eq!(at(&found), ["/properties/a/$dynamicRef"]);
        let found =
            compare(Compatibility::Backward, &json!({}), &json!({"$defs": {"a": {"$id": "https://example.com/a"}}}));
        assert_eq!(at(&found), ["/$defs/a"]);
        let found = compare(Compatibility::Forward, &json!({"unevaluatedProperties": false}), &json!({}));
        assert_eq!(at(&found), [""]);
        assert!(found[0].reason.starts_with("cannot prove this change keeps FORWARD"), "{found:?}");
    }

    #[test]
    fn an_unknown_keyword_must_keep_its_value() {
        keeps_full(json!({"maxLength": 3, "z-rule": 1}), json!({"maxLength": 3, "z-rule": 1}));
        let found = compare(Compatibility::Full, &json!({"z-rule": 1}), &json!({"z-rule": 2}));
        assert_eq!(at(&found), ["/z-rule", "/z-rule"]);
        assert!(found.iter().all(|i| i.reason.starts_with("cannot prove")), "{found:?}");
    }

    #[test]
    fn full_reports_both_directions_and_none_reports_nothing() {
        let old = json!({"type": "string", "maxLength": 3});
        let new = json!({"type": "integer"});
        let found = compare(Compatibility::Full, &old, &new);
        assert!(found.iter().any(|i| i.reason.starts_with("breaks BACKWARD")), "{found:?}");
        assert!(found.iter().any(|i| i.reason.starts_with("breaks FORWARD")), "{found:?}");
        assert_eq!(compare(Compatibility::None, &old, &new), []);
    }

    #[test]
    fn a_change_of_format_is_an_incompatibility() {
        let json_schema = json!({"type": "string"});
        let avro = json!("string");
        let found = check(
            Compatibility::Backward,
            &SchemaDocument::new(SchemaFormat::JsonSchema, &json_schema),
            &SchemaDocument::new(SchemaFormat::Avro, &avro),
            &Documents::new(),
        );
        assert_eq!(
            found,
            [Incompatibility::new(
                "",
                "the format changed from json-schema to avro; a new version keeps its schema's format"
            )]
        );
    }

    #[test]
    fn a_huge_comparison_stops_at_its_budget_and_refuses() {
        let wide: Map<String, Value> = (0..30_000).map(|i| (format!("p{i}"), json!({"type": "integer"}))).collect();
        let old = json!({"properties": wide});
        let mut new = old.clone();
        new["properties"]["p0"] = json!({"type": "integer", "minimum": 0});
        let found = compare(Compatibility::Forward, &old, &new);
        assert_eq!(at(&found), [""]);
        assert!(found[0].reason.contains("too large"), "{found:?}");
    }

    // --- Soundness on random schemas ------------------------------------------------------------

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn pick<'v>(&mut self, options: &'v [Value]) -> &'v Value {
            &options[self.below(options.len() as u64) as usize]
        }
    }

    fn scalar(random: &mut Random) -> Value {
        random
            .pick(&[
                json!(null),
                json!(true),
                json!(0),
                json!(1),
                json!(2),
                json!(-1),
                json!(1.5),
                json!(4),
                json!(""),
                json!("a"),
                json!("ab"),
                json!("b"),
            ])
            .clone()
    }

    fn payload(random: &mut Random, depth: u32) -> Value {
        match random.below(if depth == 0 { 1 } else { 4 }) {
            0 => scalar(random),
            1 => Value::Array((0..random.below(4)).map(|_| payload(random, depth - 1)).collect()),
            _ => {
                let mut object = Map::new();
                for name in ["a", "b", "c"] {
                    if random.below(2) == 0 {
                        object.insert(name.into(), payload(random, depth - 1));
                    }
                }
                Value::Object(object)
            }
        }
    }

    fn schema(random: &mut Random, depth: u32) -> Value {
        let mut object = Map::new();
        for _ in 0..=random.below(3) {
            let (key, value) = keyword(random, depth);
            object.insert(key.into(), value);
        }
        if random.below(12) == 0 {
            return json!(random.below(2) == 0);
        }
        Value::Object(object)
    }

    fn keyword(random: &mut Random, depth: u32) -> (&'static str, Value) {
        let types = [
            json!("string"),
            json!("integer"),
            json!("number"),
            json!("object"),
            json!("array"),
            json!("null"),
            json!(["string", "integer"]),
            json!(["object", "null"]),
        ];
        let sub =
            |random: &mut Random| if depth == 0 { json!(random.below(2) == 0) } else { schema(random, depth - 1) };
        match random.below(if depth == 0 { 14 } else { 27 }) {
            0 | 1 => ("type", random.pick(&types).clone()),
            2 => ("enum", Value::Array((0..=random.below(3)).map(|_| scalar(random)).collect())),
            3 => ("const", scalar(random)),
            4 => ("minimum", json!(random.below(4) as i64 - 1)),
            5 => ("maximum", json!(random.below(4) as i64 - 1)),
            6 => ("exclusiveMinimum", json!(random.below(3) as i64 - 1)),
            7 => ("minLength", json!(random.below(3))),
            8 => ("maxLength", json!(random.below(3))),
            9 => ("required", json!(if random.below(2) == 0 { vec!["a"] } else { vec!["a", "b"] })),
            10 => ("minItems", json!(random.below(3))),
            11 => ("maxItems", json!(random.below(3))),
            12 => ("multipleOf", json!(1 + random.below(2))),
            13 => ("pattern", random.pick(&[json!("^a"), json!("b$")]).clone()),
            14 | 15 => {
                let mut properties = Map::new();
                for name in ["a", "b"] {
                    if random.below(2) == 0 {
                        properties.insert(name.into(), sub(random));
                    }
                }
                ("properties", Value::Object(properties))
            }
            16 => ("additionalProperties", sub(random)),
            17 => ("items", sub(random)),
            18 => ("prefixItems", Value::Array((0..=random.below(2)).map(|_| sub(random)).collect())),
            19 => ("allOf", Value::Array((0..=random.below(2)).map(|_| sub(random)).collect())),
            20 => ("anyOf", Value::Array((0..=random.below(2)).map(|_| sub(random)).collect())),
            21 => ("oneOf", Value::Array((0..=random.below(2)).map(|_| sub(random)).collect())),
            22 => ("not", sub(random)),
            23 => ("contains", sub(random)),
            24 => ("propertyNames", sub(random)),
            25 => ("dependentRequired", json!({"a": ["b"]})),
            _ => ("uniqueItems", json!(random.below(2) == 0)),
        }
    }

    /// A small edit of `schema`, often one that widens or narrows it.
    fn mutate(random: &mut Random, schema: &Value) -> Value {
        let Value::Object(object) = schema else { return schema.clone() };
        let mut object = object.clone();
        let keys: Vec<String> = object.keys().cloned().collect();
        match random.below(5) {
            0 if !keys.is_empty() => {
                object.remove(&keys[random.below(keys.len() as u64) as usize]);
            }
            1 if !keys.is_empty() => {
                let key = &keys[random.below(keys.len() as u64) as usize];
                let edited = match &object[key] {
                    Value::Number(n) => json!(n.as_i64().unwrap_or(0) + random.below(3) as i64 - 1),
                    Value::Array(items) => {
                        let mut items = items.clone();
                        if random.below(2) == 0 && !items.is_empty() {
                            items.pop();
                        } else if key == "enum" {
                            items.push(scalar(random));
                        } else {
                            items.push(schema_leaf(random));
                        }
                        Value::Array(items)
                    }
                    other @ Value::Object(_) if !matches!(key.as_str(), "properties" | "dependentRequired") => {
                        mutate(random, other)
                    }
                    Value::Object(members) => {
                        let mut members = members.clone();
                        if let Some(name) = members.keys().next().cloned() {
                            let edited = mutate(random, &members[&name]);
                            members.insert(name, edited);
                        }
                        Value::Object(members)
                    }
                    other => other.clone(),
                };
                object.insert(key.clone(), edited);
            }
            _ => {
                let (key, value) = keyword(random, 1);
                object.insert(key.into(), value);
            }
        }
        Value::Object(object)
    }

    fn schema_leaf(random: &mut Random) -> Value {
        let (key, value) = keyword(random, 0);
        json!({ key: value })
    }

    #[test]
    fn no_accepted_change_on_random_schemas_loses_a_random_payload() {
        let mut random = Random(0x9E37_79B9_7F4A_7C15);
        let known = Documents::new();
        let payloads: Vec<Value> = (0..300).map(|_| payload(&mut random, 3)).chain(samples()).collect();
        let mut accepted = 0;
        for round in 0..1500 {
            let old = schema(&mut random, 2);
            let new = if round % 4 == 0 { schema(&mut random, 2) } else { mutate(&mut random, &old) };
            let (Ok(old_v), Ok(new_v)) = (
                compile(&SchemaDocument::new(SchemaFormat::JsonSchema, &old), &known),
                compile(&SchemaDocument::new(SchemaFormat::JsonSchema, &new), &known),
            ) else {
                continue;
            };
            for (mode, narrow, wide, narrow_v, wide_v) in [
                (Compatibility::Backward, &old, &new, &old_v, &new_v),
                (Compatibility::Forward, &new, &old, &new_v, &old_v),
            ] {
                if compare(mode, &old, &new).is_empty() {
                    accepted += 1;
                    for p in &payloads {
                        assert!(
                            !narrow_v.is_valid(p) || wide_v.is_valid(p),
                            "{mode} accepted {old} -> {new}, but {p} is valid under {narrow} and not under {wide}"
                        );
                    }
                }
            }
        }
        // Enough accepted pairs for this to mean something.
        assert!(accepted > 500, "only {accepted} accepted pairs");
    }
}
