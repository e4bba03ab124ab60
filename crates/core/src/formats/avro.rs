//! Avro schemas: parsed with apache-avro, checked for compatibility with the Avro specification's
//! schema-resolution rules (apache-avro's `SchemaCompatibility`), and used to validate JSON content.
//!
//! Content is plain JSON, not Avro's JSON encoding (no `{"string": "x"}` union wrappers):
//!
//! | Avro type | accepted JSON |
//! | --- | --- |
//! | `null` | `null` |
//! | `boolean` | `true` or `false` |
//! | `int` | an integer from -2^31 to 2^31-1 (`1.0` counts as an integer, as in JSON Schema) |
//! | `long` | an integer from -2^63 to 2^63-1 |
//! | `float` | a number no larger in magnitude than the largest `float` |
//! | `double` | a number |
//! | `string`, `bytes` | a string |
//! | `fixed` | a string of exactly `size` characters, each U+0000 to U+00FF (one byte each, as in Avro's JSON encoding) |
//! | `enum` | one of the symbols; with a `default`, any valid symbol name (a reader resolves it to the default) |
//! | `array` | an array whose items the item type accepts |
//! | `map` | an object whose values the value type accepts |
//! | union | a value any branch accepts |
//! | `record` | an object with its fields (under the field's name or one of its aliases); a field is required unless it has a `default` or its type is a union containing `null`; other members are ignored |
//! | logical types | as their underlying type (the specification lets a reader ignore a logical type) |
//!
//! Fields absent from a record, aliases, and enum defaults are read the way a reader resolves data
//! written with another schema, so that a compatible change keeps content valid: a removed field
//! is an ignored member, a field added with a default is optional, a renamed field with the old
//! name as an alias accepts either. Where the two differ, the compatibility check adds what content
//! needs to apache-avro's answer: Avro data always carries every field, so the specification lets
//! a new version drop a field's default, but content that left the field out would then fail; and
//! apache-avro reads any `uuid` as any other, though a string-based one takes any string and a
//! fixed-based one only its size. Both are refused.
//!
//! An Avro schema must define every named type it uses (cross-schema references are not supported).

use std::collections::{HashMap, HashSet};

use apache_avro::schema::{
    DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, Name, NamesRef, RecordField, RecordSchema,
    ResolvedSchema, UuidSchema,
};
use apache_avro::schema_compatibility::{Compatibility as Resolution, SchemaCompatibility};
use apache_avro::Schema;
use serde_json::Value;

use super::{child, index, Compatibility, Incompatibility};
use crate::error::Violation;

/// A parsed Avro schema and its named types, for validating JSON content.
pub(super) struct AvroValidator {
    root: Schema,
    names: HashMap<Name, Schema>,
}

pub(super) fn parse(document: &Value) -> Result<Schema, String> {
    Schema::parse(document).map_err(|e| e.to_string())
}

impl AvroValidator {
    pub(super) fn compile(document: &Value) -> Result<Self, String> {
        let root = parse(document)?;
        let resolved = ResolvedSchema::try_from(&root).map_err(|e| e.to_string())?;
        let names = resolved.get_names().iter().map(|(name, schema)| (name.clone(), (*schema).clone())).collect();
        Ok(Self { root, names })
    }

    /// Every way `content` breaks the schema, with pointers into `content`.
    pub(super) fn violations(&self, content: &Value) -> Vec<Violation> {
        let mut found = Vec::new();
        self.check(&self.root, content, "", &mut found);
        found
    }

    fn check(&self, schema: &Schema, value: &Value, at: &str, found: &mut Vec<Violation>) {
        let refuse = |found: &mut Vec<Violation>, expected: &str| {
            found.push(Violation::new(at, format!("{value} is not {expected}")));
        };
        match schema {
            Schema::Null => {
                if !value.is_null() {
                    refuse(found, "null");
                }
            }
            Schema::Boolean => {
                if !value.is_boolean() {
                    refuse(found, "a boolean");
                }
            }
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                if !is_integer_in(value, i32::MIN.into(), i32::MAX.into()) {
                    refuse(found, "an int (an integer from -2147483648 to 2147483647)");
                }
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => {
                if !is_integer_in(value, i64::MIN.into(), i64::MAX.into()) {
                    refuse(found, "a long (an integer from -9223372036854775808 to 9223372036854775807)");
                }
            }
            Schema::Float => {
                if !value.as_f64().is_some_and(|n| n.abs() <= f64::from(f32::MAX)) {
                    refuse(found, "a float");
                }
            }
            Schema::Double => {
                if !value.is_number() {
                    refuse(found, "a double (a number)");
                }
            }
            Schema::String | Schema::Uuid(UuidSchema::String) => {
                if !value.is_string() {
                    refuse(found, "a string");
                }
            }
            Schema::Bytes
            | Schema::BigDecimal
            | Schema::Uuid(UuidSchema::Bytes)
            | Schema::Decimal(DecimalSchema { inner: InnerDecimalSchema::Bytes, .. }) => {
                if !value.is_string() {
                    refuse(found, "bytes (a string)");
                }
            }
            Schema::Fixed(fixed)
            | Schema::Duration(fixed)
            | Schema::Uuid(UuidSchema::Fixed(fixed))
            | Schema::Decimal(DecimalSchema { inner: InnerDecimalSchema::Fixed(fixed), .. }) => {
                self.fixed(fixed, value, at, found);
            }
            Schema::Enum(enumeration) => self.enumeration(enumeration, value, at, found),
            Schema::Array(array) => match value.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.check(&array.items, item, &index(at, i), found);
                    }
                }
                None => refuse(found, "an array"),
            },
            Schema::Map(map) => match value.as_object() {
                Some(entries) => {
                    for (key, entry) in entries {
                        self.check(&map.types, entry, &child(at, key), found);
                    }
                }
                None => refuse(found, "a map (an object)"),
            },
            Schema::Union(union) => self.union(union.variants(), value, at, found),
            Schema::Record(record) => self.record(record, value, at, found),
            Schema::Ref { name } => match self.names.get(name) {
                Some(named) => self.check(named, value, at, found),
                None => found.push(Violation::new(at, format!("the schema names an unknown type '{name}'"))),
            },
        }
    }

    fn fixed(&self, fixed: &FixedSchema, value: &Value, at: &str, found: &mut Vec<Violation>) {
        let fits =
            value.as_str().is_some_and(|s| s.chars().all(|c| u32::from(c) <= 0xFF) && s.chars().count() == fixed.size);
        if !fits {
            found.push(Violation::new(
                at,
                format!(
                    "{value} is not a fixed '{}' (a string of exactly {} characters from U+0000 to U+00FF)",
                    fixed.name, fixed.size
                ),
            ));
        }
    }

    fn enumeration(&self, enumeration: &EnumSchema, value: &Value, at: &str, found: &mut Vec<Violation>) {
        let Some(symbol) = value.as_str() else {
            found.push(Violation::new(at, format!("{value} is not a symbol of enum '{}'", enumeration.name)));
            return;
        };
        let known = enumeration.symbols.iter().any(|s| s == symbol);
        let resolved_to_default = enumeration.default.is_some() && is_avro_name(symbol);
        if !known && !resolved_to_default {
            found.push(Violation::new(
                at,
                format!("{value} is not one of the symbols of enum '{}': {:?}", enumeration.name, enumeration.symbols),
            ));
        }
    }

    fn union(&self, variants: &[Schema], value: &Value, at: &str, found: &mut Vec<Violation>) {
        let mut candidates = Vec::new();
        for variant in variants {
            let mut attempt = Vec::new();
            self.check(variant, value, at, &mut attempt);
            if attempt.is_empty() {
                return;
            }
            if self.same_json_kind(variant, value) {
                candidates.push(attempt);
            }
        }
        // One branch of the value's kind: its own violations say more than "no branch matched".
        if candidates.len() == 1 {
            found.append(&mut candidates.remove(0));
        } else {
            let names: Vec<String> = variants.iter().map(|v| self.type_name(v)).collect();
            found.push(Violation::new(at, format!("{value} is not any of the union's types: {}", names.join(", "))));
        }
    }

    fn record(&self, record: &RecordSchema, value: &Value, at: &str, found: &mut Vec<Violation>) {
        let Some(object) = value.as_object() else {
            found.push(Violation::new(at, format!("{value} is not a record '{}' (an object)", record.name)));
            return;
        };
        for field in &record.fields {
            let present = std::iter::once(&field.name)
                .chain(field.aliases.iter())
                .find_map(|name| object.get(name).map(|v| (name, v)));
            match present {
                Some((name, member)) => self.check(&field.schema, member, &child(at, name), found),
                None if field.default.is_some() || self.admits_null(&field.schema) => {}
                None => found.push(Violation::new(at, format!("\"{}\" is a required property", field.name))),
            }
        }
    }

    fn admits_null(&self, schema: &Schema) -> bool {
        match schema {
            Schema::Union(union) => union.variants().iter().any(|v| matches!(v, Schema::Null)),
            _ => false,
        }
    }

    /// Whether `value` is of the JSON kind `schema` takes (an object for a record or map, ...).
    fn same_json_kind(&self, schema: &Schema, value: &Value) -> bool {
        match schema {
            Schema::Ref { name } => self.names.get(name).is_some_and(|s| self.same_json_kind(s, value)),
            Schema::Record(_) | Schema::Map(_) => value.is_object(),
            Schema::Array(_) => value.is_array(),
            Schema::Null => value.is_null(),
            Schema::Boolean => value.is_boolean(),
            Schema::Union(_) => false,
            Schema::Int
            | Schema::Long
            | Schema::Float
            | Schema::Double
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => value.is_number(),
            Schema::String
            | Schema::Bytes
            | Schema::BigDecimal
            | Schema::Uuid(_)
            | Schema::Decimal(_)
            | Schema::Fixed(_)
            | Schema::Duration(_)
            | Schema::Enum(_) => value.is_string(),
        }
    }

    fn type_name(&self, schema: &Schema) -> String {
        match schema.name() {
            Some(name) => name.fullname(None),
            None => match schema {
                Schema::Ref { name } => name.fullname(None),
                Schema::Array(_) => "array".into(),
                Schema::Map(_) => "map".into(),
                other => serde_json::to_value(other)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase()),
            },
        }
    }
}

fn is_integer_in(value: &Value, low: i128, high: i128) -> bool {
    let Value::Number(n) = value else { return false };
    let exact = n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    let whole = exact.or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e19).map(|f| f as i128));
    whole.is_some_and(|i| (low..=high).contains(&i))
}

/// `[A-Za-z_][A-Za-z0-9_]*`, the specification's rule for names and enum symbols.
fn is_avro_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The Avro specification's schema resolution: BACKWARD = the new schema reads what the previous
/// one wrote; FORWARD = the previous reads what the new one writes; FULL = both. apache-avro's
/// "partial" answer (an enum symbol or union branch the reader lacks, so that some data fails to
/// resolve) counts as incompatible.
pub(super) fn incompatibilities(mode: Compatibility, previous: &Value, next: &Value) -> Vec<Incompatibility> {
    let (old, new) = match (parse(previous), parse(next)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(e), _) => return vec![Incompatibility::new("", format!("the previous version does not parse: {e}"))],
        (_, Err(e)) => return vec![Incompatibility::new("", format!("this version does not parse: {e}"))],
    };
    let mut found = Vec::new();
    if mode.checks_backward() {
        found.extend(resolution("BACKWARD", &old, &new, next, true));
    }
    if mode.checks_forward() {
        found.extend(resolution("FORWARD", &new, &old, next, false));
    }
    found
}

/// Whether `reader` reads all data `writer` wrote, as an incompatibility located in `next`
/// (the new document), which is the reader when `reader_is_next`.
fn resolution(
    mode: &str,
    writer: &Schema,
    reader: &Schema,
    next: &Value,
    reader_is_next: bool,
) -> Option<Incompatibility> {
    let (written, read) = if reader_is_next {
        ("the previous version", "this version")
    } else {
        ("this version", "the previous version")
    };
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Resolution::Full) => content_gap(writer, reader).map(|gap| {
            let (fields, detail) = match gap {
                Gap::Optional(fields) => {
                    let detail = format!(
                        "content for {written} may leave out field '{}' (it has a default or admits null), {read} requires it",
                        fields.join(".")
                    );
                    (fields, detail)
                }
                Gap::Fixed(fields) => {
                    let detail = format!(
                        "field '{}' takes any string in {written} and a fixed-size value in {read}",
                        fields.join(".")
                    );
                    (fields, detail)
                }
            };
            Incompatibility::new(field_pointer(next, fields.iter().map(String::as_str)), format!("breaks {mode}: {detail}"))
        }),
        Ok(Resolution::Partial) => Some(Incompatibility::new(
            "",
            format!(
                "breaks {mode}: only some data written with {written} can be read with {read} (an enum symbol or a union branch is missing)"
            ),
        )),
        Err(error) => {
            let mut fields = Vec::new();
            let mut cause = &error;
            while let apache_avro::error::CompatibilityError::FieldTypeMismatch(field, inner) = cause {
                fields.push(field.as_str());
                cause = inner;
            }
            let missing = match cause {
                apache_avro::error::CompatibilityError::MissingDefaultValue(field) if reader_is_next => Some(field.as_str()),
                _ => None,
            };
            let mut pointer = field_pointer(next, fields.iter().copied().chain(missing));
            // A type mismatch is in the field's type; a missing default is the field itself.
            if !pointer.is_empty() && missing.is_none() {
                pointer.push_str("/type");
            }
            let path = if fields.is_empty() { String::new() } else { format!("field '{}': ", fields.join(".")) };
            Some(Incompatibility::new(
                pointer,
                format!("breaks {mode}: data written with {written} cannot be read with {read}: {path}{}", describe(cause)),
            ))
        }
    }
}

/// Where content valid under the writer's schema may be invalid under the reader's, though
/// Avro's resolution reads the writer's data: Avro data always carries every field, content may
/// leave out one with a default; and apache-avro reads any uuid as any other.
enum Gap {
    /// A field optional in the writer's content and required in the reader's (the reader's names).
    Optional(Vec<String>),
    /// A field that takes any string in the writer's content and a fixed-size one in the reader's.
    Fixed(Vec<String>),
}

fn content_gap(writer: &Schema, reader: &Schema) -> Option<Gap> {
    let writer_names = ResolvedSchema::try_from(writer).ok()?;
    let reader_names = ResolvedSchema::try_from(reader).ok()?;
    let mut walk = GapWalk {
        writer_names: writer_names.get_names(),
        reader_names: reader_names.get_names(),
        path: Vec::new(),
        seen: HashSet::new(),
    };
    walk.pair(writer, reader)
}

/// Walks a writer's and a reader's schemas side by side, pairing what resolution may pair: record
/// fields by name or alias, array items, map values, and union branches of the same shape.
struct GapWalk<'s, 'n> {
    writer_names: &'n NamesRef<'s>,
    reader_names: &'n NamesRef<'s>,
    path: Vec<String>,
    seen: HashSet<(usize, usize)>,
}

impl<'s> GapWalk<'s, '_> {
    fn named(names: &NamesRef<'s>, schema: &'s Schema) -> &'s Schema {
        match schema {
            Schema::Ref { name } => names.get(name).copied().unwrap_or(schema),
            _ => schema,
        }
    }

    fn pair(&mut self, writer: &'s Schema, reader: &'s Schema) -> Option<Gap> {
        let writer = Self::named(self.writer_names, writer);
        let reader = Self::named(self.reader_names, reader);
        if !self.seen.insert((writer as *const Schema as usize, reader as *const Schema as usize)) {
            return None;
        }
        match (writer, reader) {
            (Schema::Record(w), Schema::Record(r)) => {
                for field in &r.fields {
                    let Some(written) = std::iter::once(&field.name)
                        .chain(field.aliases.iter())
                        .find_map(|name| w.fields.iter().find(|f| &f.name == name))
                    else {
                        continue;
                    };
                    self.path.push(field.name.clone());
                    if optional(written) && !optional(field) {
                        return Some(Gap::Optional(self.path.clone()));
                    }
                    if let Some(gap) = self.pair(&written.schema, &field.schema) {
                        return Some(gap);
                    }
                    self.path.pop();
                }
                None
            }
            (Schema::Array(w), Schema::Array(r)) => self.pair(&w.items, &r.items),
            (Schema::Map(w), Schema::Map(r)) => self.pair(&w.types, &r.types),
            (Schema::Union(_), _) | (_, Schema::Union(_)) => {
                let branches = |schema: &'s Schema| match schema {
                    Schema::Union(union) => union.variants().iter().collect::<Vec<_>>(),
                    other => vec![other],
                };
                for w in branches(writer) {
                    for r in branches(reader) {
                        let (w, r) = (Self::named(self.writer_names, w), Self::named(self.reader_names, r));
                        let alike = match (w, r) {
                            (Schema::Record(a), Schema::Record(b)) => a.name.name() == b.name.name(),
                            (Schema::Array(_), Schema::Array(_)) | (Schema::Map(_), Schema::Map(_)) => true,
                            _ => false,
                        };
                        if alike {
                            if let Some(gap) = self.pair(w, r) {
                                return Some(gap);
                            }
                        }
                    }
                }
                None
            }
            (w, r) if takes_any_string(w) && is_fixed_size(r) => Some(Gap::Fixed(self.path.clone())),
            _ => None,
        }
    }
}

fn optional(field: &RecordField) -> bool {
    field.default.is_some()
        || matches!(&field.schema, Schema::Union(u) if u.variants().iter().any(|v| matches!(v, Schema::Null)))
}

fn takes_any_string(schema: &Schema) -> bool {
    matches!(
        schema,
        Schema::String
            | Schema::Bytes
            | Schema::BigDecimal
            | Schema::Uuid(UuidSchema::String | UuidSchema::Bytes)
            | Schema::Decimal(DecimalSchema { inner: InnerDecimalSchema::Bytes, .. })
    )
}

fn is_fixed_size(schema: &Schema) -> bool {
    matches!(
        schema,
        Schema::Fixed(_)
            | Schema::Duration(_)
            | Schema::Uuid(UuidSchema::Fixed(_))
            | Schema::Decimal(DecimalSchema { inner: InnerDecimalSchema::Fixed(_), .. })
    )
}

/// apache-avro's message, except for a type mismatch, whose message embeds both schemas' debug dumps.
fn describe(error: &apache_avro::error::CompatibilityError) -> String {
    match error {
        apache_avro::error::CompatibilityError::WrongType { writer_schema_type, reader_schema_type } => {
            let kind =
                |dump: &str| dump.split(|c: char| !c.is_alphanumeric()).next().unwrap_or_default().to_lowercase();
            format!("a value written as {} cannot be read as {}", kind(writer_schema_type), kind(reader_schema_type))
        }
        other => other.to_string(),
    }
}

/// The pointer, in a schema document, to the field reached by following `fields` by name from the
/// root record (through unions, arrays and maps); as far as they can be followed.
fn field_pointer<'f>(document: &Value, fields: impl Iterator<Item = &'f str>) -> String {
    let mut at = String::new();
    let mut here = document;
    let mut inside = String::new();
    for field in fields {
        match find_field(here, field, &inside) {
            Some((pointer, ty)) => {
                inside = format!("{pointer}/type");
                at = pointer;
                here = ty;
            }
            None => break,
        }
    }
    at
}

/// The field named `name` of the record that `schema` (at `at`) is or contains, and its type.
fn find_field<'v>(schema: &'v Value, name: &str, at: &str) -> Option<(String, &'v Value)> {
    match schema {
        Value::Array(branches) => {
            branches.iter().enumerate().find_map(|(i, branch)| find_field(branch, name, &index(at, i)))
        }
        Value::Object(object) => {
            if let Some(Value::Array(fields)) = object.get("fields") {
                let (i, field) = fields
                    .iter()
                    .enumerate()
                    .find(|(_, field)| field.get("name").and_then(Value::as_str) == Some(name))?;
                return Some((index(&child(at, "fields"), i), field.get("type")?));
            }
            ["items", "values", "type"]
                .iter()
                .find_map(|key| object.get(*key).filter(|v| !v.is_string()).map(|v| (key, v)))
                .and_then(|(key, inner)| find_field(inner, name, &child(at, key)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use serde_json::json;

    use super::super::{
        compile, incompatibilities as check, ContentValidator, KnownSchemas, SchemaDocument, SchemaFormat,
    };
    use super::*;

    fn no_documents() -> HashMap<String, (SchemaFormat, Arc<Value>)> {
        HashMap::new()
    }

    fn validator(schema: &Value) -> ContentValidator {
        compile(&SchemaDocument::new(SchemaFormat::Avro, schema), &no_documents()).unwrap()
    }

    /// (pointer, message) of every violation, sorted.
    fn violations(schema: &Value, content: &Value) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> =
            validator(schema).violations(content).into_iter().map(|v| (v.pointer, v.message)).collect();
        found.sort();
        found
    }

    fn pointers(schema: &Value, content: &Value) -> Vec<String> {
        violations(schema, content).into_iter().map(|(p, _)| p).collect()
    }

    fn person() -> Value {
        json!({
            "type": "record", "name": "Person", "namespace": "com.example",
            "fields": [
                {"name": "name", "type": "string"},
                {"name": "nickname", "type": ["null", "string"]},
                {"name": "age", "type": "int", "default": 0},
                {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
                    {"name": "zip", "type": "string"},
                    {"name": "city", "type": "string", "default": ""}
                ]}},
                {"name": "work", "type": ["null", "Address"], "default": null},
                {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
                {"name": "scores", "type": {"type": "map", "values": "long"}, "default": {}},
                {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["ACTIVE", "GONE"]}, "default": "ACTIVE"}
            ]
        })
    }

    fn ada() -> Value {
        json!({"name": "Ada", "address": {"zip": "75001"}})
    }

    #[test]
    fn content_that_fits_the_record_has_no_violations() {
        assert_eq!(violations(&person(), &ada()), []);
        let full = json!({
            "name": "Ada", "nickname": "ada", "age": 36, "address": {"zip": "75001", "city": "Paris"},
            "work": {"zip": "75002"}, "tags": ["math"], "scores": {"a": 1}, "status": "GONE"
        });
        assert_eq!(violations(&person(), &full), []);
    }

    #[test]
    fn a_field_without_default_or_null_is_required_and_reported_at_its_record() {
        assert_eq!(
            violations(&person(), &json!({"address": {}})),
            [
                ("".to_owned(), "\"name\" is a required property".to_owned()),
                ("/address".to_owned(), "\"zip\" is a required property".to_owned()),
            ]
        );
    }

    #[test]
    fn wrong_types_are_reported_at_their_pointers() {
        let content = json!({"name": 5, "nickname": 7, "age": "x", "address": {"zip": 75001}});
        assert_eq!(pointers(&person(), &content), ["/address/zip", "/age", "/name", "/nickname"]);
        assert_eq!(violations(&person(), &json!({"name": 5, "address": {"zip": "1"}}))[0].1, "5 is not a string");
    }

    #[test]
    fn int_and_long_take_integers_in_their_ranges() {
        let schema = json!({"type": "record", "name": "R", "fields": [{"name": "i", "type": "int"}, {"name": "l", "type": "long"}]});
        assert_eq!(violations(&schema, &json!({"i": 2147483647, "l": -9223372036854775808i64})), []);
        assert_eq!(violations(&schema, &json!({"i": 1.0, "l": 3})), []);
        assert_eq!(pointers(&schema, &json!({"i": 2147483648u64, "l": 9223372036854775808u64})), ["/i", "/l"]);
        assert_eq!(pointers(&schema, &json!({"i": 1.5, "l": "3"})), ["/i", "/l"]);
    }

    #[test]
    fn float_takes_numbers_in_its_range_and_double_any_number() {
        let schema = json!({"type": "array", "items": "float"});
        assert_eq!(violations(&schema, &json!([1, 1.5, -3.4e38])), []);
        assert_eq!(pointers(&schema, &json!([1e39, "1"])), ["/0", "/1"]);
        assert_eq!(violations(&json!("double"), &json!(1e300)), []);
    }

    #[test]
    fn an_enum_takes_its_symbols() {
        let found = violations(&person(), &json!({"name": "Ada", "address": {"zip": "1"}, "status": "LOST"}));
        assert_eq!(
            found,
            [(
                "/status".to_owned(),
                "\"LOST\" is not one of the symbols of enum 'com.example.Status': [\"ACTIVE\", \"GONE\"]".to_owned()
            )]
        );
    }

    #[test]
    fn an_enum_with_a_default_takes_any_symbol_name_as_a_reader_resolves_it() {
        let schema = json!({"type": "enum", "name": "E", "symbols": ["A", "B"], "default": "A"});
        assert_eq!(violations(&schema, &json!("C")), []);
        assert_eq!(pointers(&schema, &json!("not a name")), [""]);
        assert_eq!(pointers(&schema, &json!(1)), [""]);
    }

    #[test]
    fn nested_records_arrays_and_maps_point_inside() {
        let content =
            json!({"name": "Ada", "address": {"zip": "1", "city": 2}, "tags": ["a", 1], "scores": {"x": "high"}});
        assert_eq!(pointers(&person(), &content), ["/address/city", "/scores/x", "/tags/1"]);
    }

    #[test]
    fn a_named_type_used_again_by_name_is_validated_as_its_definition() {
        let content = json!({"name": "Ada", "address": {"zip": "1"}, "work": {"zip": 2}});
        assert_eq!(pointers(&person(), &content), ["/work/zip"]);
    }

    #[test]
    fn a_recursive_named_type_validates_every_level() {
        let list = json!({"type": "record", "name": "Node", "fields": [
            {"name": "value", "type": "int"},
            {"name": "next", "type": ["null", "Node"]}
        ]});
        assert_eq!(violations(&list, &json!({"value": 1, "next": {"value": 2, "next": null}})), []);
        assert_eq!(
            pointers(&list, &json!({"value": 1, "next": {"value": 2, "next": {"value": "3"}}})),
            ["/next/next/value"]
        );
    }

    #[test]
    fn a_union_takes_what_any_branch_takes_and_says_which_types_it_wanted() {
        let schema = json!(["int", "string"]);
        assert_eq!(violations(&schema, &json!(1)), []);
        assert_eq!(violations(&schema, &json!("a")), []);
        assert_eq!(
            violations(&schema, &json!(true)),
            [("".to_owned(), "true is not any of the union's types: int, string".to_owned())]
        );
    }

    #[test]
    fn a_fixed_takes_a_string_of_its_size_in_byte_characters() {
        let schema = json!({"type": "fixed", "name": "Id", "size": 4});
        assert_eq!(violations(&schema, &json!("ab\u{ff}d")), []);
        assert_eq!(pointers(&schema, &json!("abc")), [""]);
        assert_eq!(pointers(&schema, &json!("ab\u{20ac}d")), [""]);
    }

    #[test]
    fn a_field_is_found_under_an_alias_and_other_members_are_ignored() {
        let schema = json!({"type": "record", "name": "R", "fields": [{"name": "email", "aliases": ["mail"], "type": "string"}]});
        assert_eq!(violations(&schema, &json!({"mail": "a@b", "extra": 1})), []);
        assert_eq!(pointers(&schema, &json!({"mail": 1})), ["/mail"]);
    }

    #[test]
    fn past_a_hundred_violations_the_rest_are_counted() {
        let found = validator(&json!({"type": "array", "items": "int"})).violations(&json!(vec!["x"; 150]));
        assert_eq!(found.len(), 101);
        assert_eq!(found[100].message, "and 50 more violation(s)");
    }

    #[test]
    fn a_schema_that_does_not_parse_is_refused_with_the_parsers_message() {
        let err = compile(
            &SchemaDocument::new(
                SchemaFormat::Avro,
                &json!({"type": "record", "name": "R", "fields": [{"name": "a", "type": "Nope"}]}),
            ),
            &no_documents(),
        )
        .unwrap_err();
        assert!(err.contains("Nope"), "{err}");
        let err =
            compile(&SchemaDocument::new(SchemaFormat::Avro, &json!({"type": "enum", "name": "E"})), &no_documents())
                .unwrap_err();
        assert!(err.contains("symbols"), "{err}");
    }

    // --- Compatibility ------------------------------------------------------------------------

    fn record(fields: Value) -> Value {
        json!({"type": "record", "name": "Person", "fields": fields})
    }

    fn compare(mode: Compatibility, old: &Value, new: &Value) -> Vec<Incompatibility> {
        let known: &dyn KnownSchemas = &no_documents();
        check(mode, &SchemaDocument::new(SchemaFormat::Avro, old), &SchemaDocument::new(SchemaFormat::Avro, new), known)
    }

    fn valid(schema: &Value, content: &Value) -> bool {
        validator(schema).is_valid(content)
    }

    #[test]
    fn adding_a_field_with_a_default_keeps_full() {
        let old = record(json!([{"name": "name", "type": "string"}]));
        let new = record(json!([{"name": "name", "type": "string"}, {"name": "age", "type": "int", "default": 0}]));
        assert_eq!(compare(Compatibility::Full, &old, &new), []);
        // Content of either version validates under the other.
        assert!(valid(&new, &json!({"name": "Ada"})) && valid(&old, &json!({"name": "Ada", "age": 3})));
    }

    #[test]
    fn adding_a_field_without_a_default_breaks_backward() {
        let old = record(json!([{"name": "name", "type": "string"}]));
        let new = record(json!([{"name": "name", "type": "string"}, {"name": "age", "type": "int"}]));
        let found = compare(Compatibility::Backward, &old, &new);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pointer, "/fields/1");
        assert!(found[0].reason.starts_with("breaks BACKWARD") && found[0].reason.contains("'age'"), "{found:?}");
        assert!(valid(&old, &json!({"name": "Ada"})) && !valid(&new, &json!({"name": "Ada"})));
        assert_eq!(compare(Compatibility::Forward, &old, &new), []);
    }

    #[test]
    fn removing_a_field_without_a_default_breaks_forward() {
        let old = record(json!([{"name": "name", "type": "string"}, {"name": "age", "type": "int"}]));
        let new = record(json!([{"name": "name", "type": "string"}]));
        assert_eq!(compare(Compatibility::Backward, &old, &new), []);
        assert!(valid(&new, &json!({"name": "Ada", "age": 3})), "the removed field is ignored");
        let found = compare(Compatibility::Forward, &old, &new);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pointer, "");
        assert!(found[0].reason.starts_with("breaks FORWARD") && found[0].reason.contains("'age'"), "{found:?}");
        assert!(valid(&new, &json!({"name": "Ada"})) && !valid(&old, &json!({"name": "Ada"})));
    }

    #[test]
    fn promoting_int_to_long_keeps_backward_only() {
        let old = record(json!([{"name": "n", "type": "int"}]));
        let new = record(json!([{"name": "n", "type": "long"}]));
        assert_eq!(compare(Compatibility::Backward, &old, &new), []);
        let found = compare(Compatibility::Forward, &old, &new);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pointer, "/fields/0/type");
        assert!(found[0].reason.contains("written as long cannot be read as int"), "{found:?}");
        let big = json!({"n": 3_000_000_000u64});
        assert!(valid(&new, &big) && !valid(&old, &big));
    }

    #[test]
    fn changing_a_nested_fields_type_breaks_both_at_its_pointer() {
        let old = record(
            json!([{"name": "address", "type": {"type": "record", "name": "A", "fields": [{"name": "zip", "type": "string"}]}}]),
        );
        let new = record(
            json!([{"name": "address", "type": {"type": "record", "name": "A", "fields": [{"name": "zip", "type": "int"}]}}]),
        );
        let found = compare(Compatibility::Full, &old, &new);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|i| i.pointer == "/fields/0/type/fields/0/type"), "{found:?}");
        assert!(found[0].reason.starts_with("breaks BACKWARD") && found[1].reason.starts_with("breaks FORWARD"));
        assert!(found[0].reason.contains("field 'address.zip'"), "{found:?}");
        let old_content = json!({"address": {"zip": "75001"}});
        assert!(valid(&old, &old_content) && !valid(&new, &old_content));
    }

    #[test]
    fn adding_an_enum_symbol_keeps_backward_only_unless_the_old_enum_has_a_default() {
        let symbols = |s: Value, default: Option<&str>| {
            let mut e = json!({"type": "enum", "name": "Status", "symbols": s});
            if let Some(d) = default {
                e["default"] = json!(d);
            }
            record(json!([{"name": "status", "type": e}]))
        };
        let (old, new) = (symbols(json!(["A", "B"]), None), symbols(json!(["A", "B", "C"]), None));
        assert_eq!(compare(Compatibility::Backward, &old, &new), []);
        let found = compare(Compatibility::Forward, &old, &new);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].reason.contains("only some data"), "{found:?}");
        let c = json!({"status": "C"});
        assert!(valid(&new, &c) && !valid(&old, &c));
        // An old reader with a default reads C as the default, and old content validation agrees.
        let old = symbols(json!(["A", "B"]), Some("A"));
        assert_eq!(compare(Compatibility::Full, &old, &new), []);
        assert!(valid(&old, &c));
    }

    #[test]
    fn making_a_field_nullable_keeps_backward_only() {
        let old = record(json!([{"name": "nick", "type": "string"}]));
        let new = record(json!([{"name": "nick", "type": ["null", "string"]}]));
        assert_eq!(compare(Compatibility::Backward, &old, &new), []);
        let found = compare(Compatibility::Forward, &old, &new);
        assert_eq!(found.len(), 1, "{found:?}");
        let null = json!({"nick": null});
        assert!(valid(&new, &null) && !valid(&old, &null));
    }

    #[test]
    fn renaming_a_field_with_the_old_name_as_alias_keeps_backward() {
        let old = record(json!([{"name": "mail", "type": "string"}]));
        let renamed = record(json!([{"name": "email", "type": "string"}]));
        let aliased = record(json!([{"name": "email", "aliases": ["mail"], "type": "string"}]));
        let old_content = json!({"mail": "a@b"});
        assert_eq!(compare(Compatibility::Backward, &old, &aliased), []);
        assert!(valid(&aliased, &old_content));
        let found = compare(Compatibility::Backward, &old, &renamed);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pointer, "/fields/0");
        assert!(!valid(&renamed, &old_content));
    }

    #[test]
    fn renaming_the_record_breaks_both_though_no_json_content_can_show_it() {
        let old = record(json!([{"name": "n", "type": "int"}]));
        let mut new = old.clone();
        new["name"] = json!("Human");
        let found = compare(Compatibility::Full, &old, &new);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].reason.contains("name must be the same"), "{found:?}");
        // Content carries no record names: {"n": 1} is valid under both.
        assert!(valid(&old, &json!({"n": 1})) && valid(&new, &json!({"n": 1})));
    }

    #[test]
    fn dropping_a_default_breaks_backward_for_content_that_left_the_field_out() {
        let old = record(json!([{"name": "age", "type": "int", "default": 0}]));
        let new = record(json!([{"name": "age", "type": "int"}]));
        let found = compare(Compatibility::Backward, &old, &new);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pointer, "/fields/0");
        assert!(found[0].reason.contains("may leave out field 'age'"), "{found:?}");
        assert!(valid(&old, &json!({})) && !valid(&new, &json!({})));
        assert_eq!(compare(Compatibility::Forward, &old, &new), []);
    }

    #[test]
    fn a_nested_field_losing_its_default_is_found_through_unions() {
        let address = |zip: Value| json!({"type": "record", "name": "Address", "fields": [zip]});
        let old = record(
            json!([{"name": "home", "type": ["null", address(json!({"name": "zip", "type": "string", "default": ""}))]}]),
        );
        let new =
            record(json!([{"name": "home", "type": ["null", address(json!({"name": "zip", "type": "string"}))]}]));
        let found = compare(Compatibility::Backward, &old, &new);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pointer, "/fields/0/type/1/fields/0");
        assert!(found[0].reason.contains("may leave out field 'home.zip'"), "{found:?}");
        let content = json!({"home": {}});
        assert!(valid(&old, &content) && !valid(&new, &content));
    }

    #[test]
    fn a_string_uuid_becoming_a_fixed_one_is_refused() {
        let uuid = |inner: Value| record(json!([{"name": "id", "type": inner}]));
        let old = uuid(json!({"type": "string", "logicalType": "uuid"}));
        let new = uuid(json!({"type": "fixed", "name": "U", "size": 16, "logicalType": "uuid"}));
        let found = compare(Compatibility::Backward, &old, &new);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pointer, "/fields/0");
        let content = json!({"id": "0d9b2b4a-7f3e-4c1e-9a51-3f0e2f6b1c2d"});
        assert!(valid(&old, &content) && !valid(&new, &content));
    }

    #[test]
    fn none_checks_nothing() {
        assert_eq!(compare(Compatibility::None, &json!("string"), &json!("int")), []);
        assert_eq!(compare(Compatibility::Backward, &json!("string"), &json!("int")).len(), 1);
    }
}
