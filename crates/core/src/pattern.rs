//! EventBridge event patterns: the filter syntax AWS users already know, compiled once and
//! matched against any JSON document (a native AWS record, an EventBridge event, an invocation).
//!
//! Semantics follow Amazon EventBridge's documentation and its open-source engine, aws/event-ruler:
//! fields are ANDed, the values listed for a field are ORed, `$or` ORs whole sub-patterns, and a
//! value in the document that is an array matches when any of its elements does. Operators:
//! exact values (strings, numbers, booleans, null), `prefix`, `suffix`, `equals-ignore-case`
//! (alone or inside `prefix`/`suffix`), `wildcard`, `anything-but` (values, or a `prefix`,
//! `suffix`, `equals-ignore-case` or `wildcard` form), `numeric`, `cidr` and `exists`.
//!
//! A pattern is validated as strictly as EventBridge does, and every problem is reported as a
//! [`Violation`] whose pointer locates it in the pattern. Matching allocates nothing.
//!
//! Where this deliberately differs from event-ruler (checked case by case against it):
//! - A field named outside a `$or` may not be named again inside it. For a leaf, EventBridge keeps
//!   whichever mention comes later in the text, which a parsed JSON value cannot tell; for an
//!   object, the two parts could otherwise match different elements of an array.
//! - Keys containing dots are not paths: `{"a.b": [..]}` does not look into `{"a": {"b": ..}}`
//!   (event-ruler joins keys with dots and confuses the two; its README says not to rely on it).
//! - An IPv4 `cidr` never matches an IPv6 address (event-ruler's `0.0.0.0/0` matches `"::1"`).
//! - The undocumented `exactly` operator is refused, and so is an empty list in `anything-but`'s
//!   prefix, suffix, equals-ignore-case or wildcard form (event-ruler accepts it, then fails while
//!   matching).
//! - Numeric operands get the full range of an f64, as in current event-ruler; EventBridge's
//!   older documentation stated ±5.0e9 with six decimal places.

use std::fmt;
use std::io;
use std::net::IpAddr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

use crate::error::Violation;

/// EventBridge's largest event pattern (its default quota is 2048, raised on request to 4096).
pub const MAX_PATTERN_CHARS: usize = 4096;
/// Objects nested deeper than this are refused. EventBridge names no depth limit; this one bounds
/// the matcher's recursion and is far beyond what AWS records need (a DynamoDB image is ~6 deep).
pub const MAX_DEPTH: usize = 32;
/// EventBridge refuses a pattern whose `$or`s expand to more combinations than this.
pub const MAX_COMBINATIONS: u64 = 1000;

/// Keys that cannot name a field inside a `$or` branch (event-ruler's
/// `RESERVED_FIELD_NAMES_IN_OR_RELATIONSHIP`): there they would be read as misplaced operators.
const RESERVED_IN_OR: &[&str] = &[
    "exactly",
    "equals-ignore-case",
    "prefix",
    "suffix",
    "anything-but",
    "exists",
    "wildcard",
    "numeric",
    "cidr",
    "=",
    "<",
    "<=",
    ">",
    ">=",
    "regex",
    "not-wildcard",
    "not-equals-ignore-case",
    "date-after",
    "date-on-or-after",
    "date-before",
    "date-on-or-before",
    "in-date-range",
    "ip-address-in-range",
    "ip-address-not-in-range",
];

const OPERATORS: &str = "prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, cidr, exists";
const NUMERIC_SHAPE: &str =
    r#"numeric takes ["=", n], [">" or ">=" or "<" or "<=", n], or [">" or ">=", low, "<" or "<=", high]"#;

/// A valid EventBridge event pattern, compiled for matching.
///
/// It serializes as the JSON it was parsed from, and deserializing validates again, so a stored
/// pattern is as trustworthy as one just received.
#[derive(Clone)]
pub struct EventPattern {
    source: Value,
    root: Fields,
}

impl EventPattern {
    /// Validates and compiles `pattern`, or lists everything wrong with it, each problem located by
    /// a JSON pointer into `pattern`.
    pub fn parse(pattern: &Value) -> Result<Self, Vec<Violation>> {
        // The size is checked first and alone: a huge pattern is refused without walking it.
        if exceeds_chars(pattern, MAX_PATTERN_CHARS) {
            return Err(vec![Violation::new(
                "",
                format!("an event pattern may be at most {MAX_PATTERN_CHARS} characters of JSON"),
            )]);
        }
        let Value::Object(object) = pattern else {
            return Err(vec![Violation::new("", "an event pattern must be a JSON object")]);
        };
        let mut compiler = Compiler::default();
        let root = compiler.fields(object, "", 1, false, &[]);
        let combinations = root.combinations();
        if combinations > MAX_COMBINATIONS {
            compiler.refuse(
                "",
                format!(
                    "the pattern's $or lists expand to {combinations} combinations; at most {MAX_COMBINATIONS} are allowed"
                ),
            );
        }
        if compiler.violations.is_empty() {
            Ok(Self { source: pattern.clone(), root })
        } else {
            Err(compiler.violations)
        }
    }

    /// Whether `document` matches, with arrays in the document meaning "any element".
    pub fn matches(&self, document: &Value) -> bool {
        self.root.matches(Some(document)) != Outcome::No
    }

    /// The pattern as it was given.
    pub fn as_value(&self) -> &Value {
        &self.source
    }
}

impl PartialEq for EventPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for EventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EventPattern").field(&self.source).finish()
    }
}

impl Serialize for EventPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for EventPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::parse(&value).map_err(|violations| {
            let listed: Vec<String> = violations.iter().map(|v| format!("{}: {}", v.pointer, v.message)).collect();
            D::Error::custom(format!("invalid event pattern: {}", listed.join("; ")))
        })
    }
}

impl utoipa::PartialSchema for EventPattern {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Object)
            .description(Some(
                "An Amazon EventBridge event pattern: fields mirror the matched document, each leaf lists values or \
                 operators (prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, cidr, exists), and \
                 $or lists alternative sub-patterns.",
            ))
            .examples([serde_json::json!({
                "source": ["aws.s3"],
                "detail": {"bucket": {"name": ["uploads"]}, "object": {"key": [{"prefix": "images/"}]}}
            })])
            .into()
    }
}

impl utoipa::ToSchema for EventPattern {}

// ---------------------------------------------------------------------------------------------
// The compiled form

/// An object of the pattern: every field must match, and one of the `$or` branches if any.
#[derive(Clone, Debug)]
struct Fields {
    fields: Vec<(Box<str>, Node)>,
    any_of: Vec<Fields>,
}

/// How a part of the pattern matched. event-ruler treats the two kinds of match differently under
/// an array of objects: a value found in an element ties the rest of the match to that element,
/// while `exists: false` alone ties it to none, so the absence must then hold in every element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    No,
    /// Matched only because fields were absent.
    ByAbsence,
    /// Matched, with at least one value found.
    ByValue,
}

#[derive(Clone, Debug)]
enum Node {
    Nested(Fields),
    Leaf(Leaf),
}

/// A field's list of values and operators; any one matching any value at that path is enough.
#[derive(Clone, Debug)]
struct Leaf {
    matchers: Vec<Matcher>,
    /// `exists: false` was listed: the leaf also matches when nothing lies at its path.
    if_absent: bool,
}

#[derive(Clone, Debug)]
enum Matcher {
    Exact(Exact),
    Prefix(Box<str>),
    PrefixIgnoreCase(Caseless),
    Suffix(Box<str>),
    SuffixIgnoreCase(Caseless),
    EqualsIgnoreCase(Caseless),
    Wildcard(Wildcard),
    AnythingBut(AnythingBut),
    Numeric(Range),
    Cidr(Cidr),
    Exists,
}

#[derive(Clone, Debug)]
enum Exact {
    /// A string that is an IP address also matches other spellings of that address, as in
    /// event-ruler (`"2001:db8::1"` matches `"2001:DB8:0:0:0:0:0:1"`).
    String(Box<str>, Option<IpAddr>),
    Number(Number),
    Bool(bool),
    Null,
}

#[derive(Clone, Debug)]
enum AnythingBut {
    Strings(Vec<Box<str>>),
    Numbers(Vec<Number>),
    Prefixes(Vec<Box<str>>),
    Suffixes(Vec<Box<str>>),
    IgnoreCase(Vec<Caseless>),
    Wildcards(Vec<Wildcard>),
}

#[derive(Clone, Copy, Debug)]
struct Bound {
    value: f64,
    inclusive: bool,
}

#[derive(Clone, Copy, Debug)]
struct Range {
    lower: Option<Bound>,
    upper: Option<Bound>,
}

#[derive(Clone, Copy, Debug)]
struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// A string compared ignoring case as event-ruler compares it: each character of the pattern
/// matches its lowercase or its uppercase form. So "ß" matches "SS", but "k" does not match the
/// Kelvin sign (whose lowercase is "k"), which folding both sides to lowercase would allow.
#[derive(Clone, Debug)]
enum Caseless {
    Ascii(Box<str>),
    /// Each character's (lowercase, uppercase) forms, by Unicode's full case mappings.
    Unicode(Vec<(Box<str>, Box<str>)>),
}

/// A wildcard pattern split at its unescaped `*`s: `a*b*c` is `["a", "b", "c"]`.
#[derive(Clone, Debug)]
struct Wildcard {
    segments: Vec<Box<str>>,
}

// ---------------------------------------------------------------------------------------------
// Matching

impl Fields {
    fn matches(&self, value: Option<&Value>) -> Outcome {
        match value {
            // Arrays of objects are "crushed out": each element is tried on its own, so two fields
            // never match in different elements of the same array (event-ruler's array consistency).
            Some(Value::Array(items)) if !items.is_empty() => {
                let mut every = true;
                for item in items {
                    match self.matches(Some(item)) {
                        Outcome::ByValue => return Outcome::ByValue,
                        Outcome::ByAbsence => {}
                        Outcome::No => every = false,
                    }
                }
                // No element was tied by a value, so the absences must hold in all of them:
                // `{"items": {"discount": [{"exists": false}]}}` means no item has a discount.
                if every {
                    Outcome::ByAbsence
                } else {
                    Outcome::No
                }
            }
            Some(Value::Object(object)) => self.matches_object(Some(object)),
            // Absent, a scalar or an empty array: nothing lies below this path.
            _ => self.matches_object(None),
        }
    }

    fn matches_object(&self, object: Option<&Map<String, Value>>) -> Outcome {
        let mut outcome = Outcome::ByAbsence;
        for (name, node) in &self.fields {
            match node.matches(object.and_then(|o| o.get(&**name))) {
                Outcome::No => return Outcome::No,
                found => outcome = outcome.max(found),
            }
        }
        if !self.any_of.is_empty() {
            let mut best = Outcome::No;
            for branch in &self.any_of {
                best = best.max(branch.matches_object(object));
                if best == Outcome::ByValue {
                    break;
                }
            }
            if best == Outcome::No {
                return Outcome::No;
            }
            outcome = outcome.max(best);
        }
        outcome
    }

    fn combinations(&self) -> u64 {
        let nested = self.fields.iter().fold(1u64, |n, (_, node)| match node {
            Node::Nested(fields) => n.saturating_mul(fields.combinations()),
            Node::Leaf(_) => n,
        });
        if self.any_of.is_empty() {
            nested
        } else {
            let branches = self.any_of.iter().fold(0u64, |n, b| n.saturating_add(b.combinations()));
            nested.saturating_mul(branches)
        }
    }
}

impl Node {
    fn matches(&self, value: Option<&Value>) -> Outcome {
        match self {
            Node::Nested(fields) => fields.matches(value),
            Node::Leaf(leaf) => leaf.matches(value),
        }
    }
}

impl Leaf {
    fn matches(&self, value: Option<&Value>) -> Outcome {
        let mut present = false;
        let hit = value.is_some_and(|v| {
            any_scalar(v, &mut |scalar| {
                present = true;
                self.matchers.iter().any(|m| m.matches(scalar))
            })
        });
        // Only scalars count as present: an object's leaves lie at longer paths, and an empty
        // array holds none (EventBridge: "exists matching only works on leaf nodes").
        if hit {
            Outcome::ByValue
        } else if self.if_absent && !present {
            Outcome::ByAbsence
        } else {
            Outcome::No
        }
    }
}

/// Calls `f` on each scalar in `value`, looking through nested arrays, until it returns true.
fn any_scalar(value: &Value, f: &mut impl FnMut(&Value) -> bool) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|item| any_scalar(item, f)),
        Value::Object(_) => false,
        scalar => f(scalar),
    }
}

impl Matcher {
    /// Whether one scalar of the document matches.
    fn matches(&self, value: &Value) -> bool {
        match self {
            Matcher::Exact(exact) => exact.matches(value),
            Matcher::Prefix(p) => value.as_str().is_some_and(|s| s.starts_with(&**p)),
            Matcher::PrefixIgnoreCase(p) => value.as_str().is_some_and(|s| p.is_prefix_of(s)),
            Matcher::Suffix(p) => value.as_str().is_some_and(|s| s.ends_with(&**p)),
            Matcher::SuffixIgnoreCase(p) => value.as_str().is_some_and(|s| p.is_suffix_of(s)),
            Matcher::EqualsIgnoreCase(p) => value.as_str().is_some_and(|s| p.equals(s)),
            Matcher::Wildcard(w) => value.as_str().is_some_and(|s| w.matches(s)),
            Matcher::AnythingBut(a) => !a.excludes(value),
            Matcher::Numeric(range) => value.as_f64().is_some_and(|n| range.contains(n)),
            Matcher::Cidr(cidr) => value.as_str().and_then(parse_ip).is_some_and(|ip| cidr.contains(ip)),
            Matcher::Exists => true,
        }
    }
}

impl Exact {
    fn matches(&self, value: &Value) -> bool {
        match (self, value) {
            (Exact::String(s, ip), Value::String(v)) => {
                **s == **v || ip.is_some_and(|ip| parse_ip(v).is_some_and(|v| v == ip))
            }
            (Exact::Number(n), Value::Number(v)) => same_number(n, v),
            (Exact::Bool(b), Value::Bool(v)) => b == v,
            (Exact::Null, Value::Null) => true,
            _ => false,
        }
    }
}

impl AnythingBut {
    /// Whether the scalar is one of the excluded ones. Values of another type are never excluded:
    /// `anything-but: "x"` matches the number 5, as it does in EventBridge.
    fn excludes(&self, value: &Value) -> bool {
        match (self, value) {
            (AnythingBut::Numbers(ns), Value::Number(v)) => ns.iter().any(|n| same_number(n, v)),
            (AnythingBut::Strings(ss), Value::String(v)) => ss.iter().any(|s| **s == **v),
            (AnythingBut::Prefixes(ps), Value::String(v)) => ps.iter().any(|p| v.starts_with(&**p)),
            (AnythingBut::Suffixes(ps), Value::String(v)) => ps.iter().any(|p| v.ends_with(&**p)),
            (AnythingBut::IgnoreCase(ss), Value::String(v)) => ss.iter().any(|s| s.equals(v)),
            (AnythingBut::Wildcards(ws), Value::String(v)) => ws.iter().any(|w| w.matches(v)),
            _ => false,
        }
    }
}

impl Range {
    fn contains(&self, n: f64) -> bool {
        let above = |b: Bound| if b.inclusive { n >= b.value } else { n > b.value };
        let below = |b: Bound| if b.inclusive { n <= b.value } else { n < b.value };
        self.lower.is_none_or(above) && self.upper.is_none_or(below)
    }
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix_len)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl Wildcard {
    fn matches(&self, s: &str) -> bool {
        let Some((first, rest)) = self.segments.split_first() else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return *s == **first;
        };
        let Some(s) = s.strip_prefix(&**first) else {
            return false;
        };
        let Some(mut s) = s.strip_suffix(&**last) else {
            return false;
        };
        // With `*` the only wildcard, taking each middle segment at its leftmost occurrence is
        // optimal, so this never backtracks: linear in the value for each segment.
        for segment in middle {
            match s.find(&**segment) {
                Some(at) => s = &s[at + segment.len()..],
                None => return false,
            }
        }
        true
    }
}

/// An IP address literal as event-ruler recognises one: dotted IPv4 or hexadecimal IPv6 (its
/// pattern for IPv6 has no dots, so "::ffff:10.0.0.1" is just a string), with IPv4-mapped IPv6
/// addresses read as IPv4, as Java's `InetAddress` reads them.
fn parse_ip(s: &str) -> Option<IpAddr> {
    if s.contains(':') && s.contains('.') {
        return None;
    }
    s.parse::<IpAddr>().ok().map(|ip| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    })
}

/// Numeric equality: `3.018e2` equals `301.8` and `1e2` equals `100`. Integers too large for an
/// f64 to hold exactly are only ever equal to the same integer.
fn same_number(a: &Number, b: &Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (exact_f64(a), exact_f64(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// The number as an f64 if that loses nothing (the i128 round trip cannot saturate).
fn exact_f64(n: &Number) -> Option<f64> {
    if let Some(i) = n.as_i64() {
        let f = i as f64;
        return (f as i128 == i128::from(i)).then_some(f);
    }
    if let Some(u) = n.as_u64() {
        let f = u as f64;
        return (f as i128 == i128::from(u)).then_some(f);
    }
    n.as_f64()
}

impl Caseless {
    fn new(pattern: &str) -> Self {
        if pattern.is_ascii() {
            return Caseless::Ascii(pattern.into());
        }
        let forms =
            |c: char| (c.to_lowercase().collect::<String>().into(), c.to_uppercase().collect::<String>().into());
        Caseless::Unicode(pattern.chars().map(forms).collect())
    }

    fn equals(&self, value: &str) -> bool {
        match self {
            Caseless::Ascii(p) => value.as_bytes().eq_ignore_ascii_case(p.as_bytes()),
            Caseless::Unicode(forms) => strip_front(forms, value) == Some(""),
        }
    }

    fn is_prefix_of(&self, value: &str) -> bool {
        match self {
            Caseless::Ascii(p) => value.as_bytes().get(..p.len()).is_some_and(|v| v.eq_ignore_ascii_case(p.as_bytes())),
            Caseless::Unicode(forms) => strip_front(forms, value).is_some(),
        }
    }

    fn is_suffix_of(&self, value: &str) -> bool {
        match self {
            Caseless::Ascii(p) => value
                .len()
                .checked_sub(p.len())
                .is_some_and(|start| value.as_bytes()[start..].eq_ignore_ascii_case(p.as_bytes())),
            Caseless::Unicode(forms) => strip_back(forms, value).is_some(),
        }
    }
}

// No character's lowercase form is a prefix of its uppercase form or the reverse (checked over all
// of Unicode), so at most one form fits at each step and taking it greedily never backtracks.

fn strip_front<'a>(forms: &[(Box<str>, Box<str>)], mut value: &'a str) -> Option<&'a str> {
    for (lower, upper) in forms {
        value = value.strip_prefix(&**lower).or_else(|| value.strip_prefix(&**upper))?;
    }
    Some(value)
}

fn strip_back<'a>(forms: &[(Box<str>, Box<str>)], mut value: &'a str) -> Option<&'a str> {
    for (lower, upper) in forms.iter().rev() {
        value = value.strip_suffix(&**lower).or_else(|| value.strip_suffix(&**upper))?;
    }
    Some(value)
}

// ---------------------------------------------------------------------------------------------
// Validation and compilation

#[derive(Default)]
struct Compiler {
    violations: Vec<Violation>,
}

impl Compiler {
    fn refuse(&mut self, pointer: &str, message: impl Into<String>) {
        self.violations.push(Violation::new(pointer, message));
    }

    /// An object of the pattern at `at`, `depth` objects deep, inside a `$or` branch or not.
    /// `taken` are the fields already named for the same document object outside this `$or`
    /// branch (by the object the `$or` belongs to, and by enclosing branches).
    fn fields(&mut self, object: &Map<String, Value>, at: &str, depth: usize, in_or: bool, taken: &[&str]) -> Fields {
        let mut compiled = Fields { fields: Vec::new(), any_of: Vec::new() };
        if depth > MAX_DEPTH {
            self.refuse(at, format!("a pattern may nest objects at most {MAX_DEPTH} deep"));
            return compiled;
        }
        if object.is_empty() {
            self.refuse(at, "an object in a pattern must name at least one field");
        }
        for (key, value) in object {
            let here = child(at, key);
            if key == "$or" {
                let mut named: Vec<&str> = taken.to_vec();
                named.extend(object.keys().map(String::as_str).filter(|k| *k != "$or"));
                compiled.any_of = self.any_of(value, &here, depth, &named);
                continue;
            }
            if in_or && RESERVED_IN_OR.contains(&key.as_str()) {
                self.refuse(&here, format!("'{key}' is reserved and cannot name a field inside $or"));
                continue;
            }
            // EventBridge expands $or into separate rules in which the later of two mentions of a
            // field wins, and which is later depends on key order, which a parsed JSON value no
            // longer has; so a field is named once, either outside $or or in its alternatives.
            if taken.contains(&key.as_str()) {
                self.refuse(
                    &here,
                    format!("'{key}' is named both outside and inside $or; name it in one place, such as in each alternative"),
                );
                continue;
            }
            let node = match value {
                Value::Object(nested) => Node::Nested(self.fields(nested, &here, depth + 1, in_or, &[])),
                Value::Array(items) => Node::Leaf(self.leaf(items, &here)),
                _ => {
                    self.refuse(&here, "a pattern's leaf must be an array of values or operators");
                    continue;
                }
            };
            compiled.fields.push((key.as_str().into(), node));
        }
        compiled
    }

    fn any_of(&mut self, value: &Value, at: &str, depth: usize, taken: &[&str]) -> Vec<Fields> {
        let Value::Array(branches) = value else {
            self.refuse(at, "$or takes an array of at least two objects");
            return Vec::new();
        };
        if branches.len() < 2 {
            self.refuse(at, "$or takes an array of at least two objects");
        }
        let mut compiled = Vec::with_capacity(branches.len());
        for (i, branch) in branches.iter().enumerate() {
            let here = index(at, i);
            match branch {
                Value::Object(object) => compiled.push(self.fields(object, &here, depth + 1, true, taken)),
                _ => self.refuse(&here, "each alternative in $or must be an object"),
            }
        }
        compiled
    }

    fn leaf(&mut self, items: &[Value], at: &str) -> Leaf {
        let mut leaf = Leaf { matchers: Vec::with_capacity(items.len()), if_absent: false };
        if items.is_empty() {
            self.refuse(at, "a pattern's leaf must list at least one value or operator");
        }
        for (i, item) in items.iter().enumerate() {
            let here = index(at, i);
            let matcher = match item {
                Value::String(s) => Matcher::Exact(Exact::String(s.as_str().into(), parse_ip(s))),
                Value::Number(n) => Matcher::Exact(Exact::Number(n.clone())),
                Value::Bool(b) => Matcher::Exact(Exact::Bool(*b)),
                Value::Null => Matcher::Exact(Exact::Null),
                Value::Object(operator) => match self.operator(operator, &here) {
                    Some(Operator::Matcher(m)) => m,
                    Some(Operator::Absent) => {
                        leaf.if_absent = true;
                        continue;
                    }
                    None => continue,
                },
                Value::Array(_) => {
                    self.refuse(
                        &here,
                        "a value to match must be a string, number, boolean, null or an operator object",
                    );
                    continue;
                }
            };
            leaf.matchers.push(matcher);
        }
        leaf
    }

    /// An operator object such as `{"prefix": "images/"}`; `at` points to the object.
    fn operator(&mut self, object: &Map<String, Value>, at: &str) -> Option<Operator> {
        let mut entries = object.iter();
        let (Some((name, operand)), None) = (entries.next(), entries.next()) else {
            self.refuse(at, "an operator object must have exactly one key, the operator");
            return None;
        };
        let here = child(at, name);
        let matcher = match name.as_str() {
            "prefix" => self.affix(operand, &here, "prefix", Matcher::Prefix, Matcher::PrefixIgnoreCase)?,
            "suffix" => self.affix(operand, &here, "suffix", Matcher::Suffix, Matcher::SuffixIgnoreCase)?,
            "equals-ignore-case" => match operand {
                Value::String(s) => Matcher::EqualsIgnoreCase(Caseless::new(s)),
                _ => {
                    self.refuse(&here, "equals-ignore-case takes a string");
                    return None;
                }
            },
            "wildcard" => Matcher::Wildcard(self.wildcard(operand, &here)?),
            "anything-but" => Matcher::AnythingBut(self.anything_but(operand, &here)?),
            "numeric" => Matcher::Numeric(self.numeric(operand, &here)?),
            "cidr" => Matcher::Cidr(self.cidr(operand, &here)?),
            "exists" => match operand {
                Value::Bool(true) => Matcher::Exists,
                Value::Bool(false) => return Some(Operator::Absent),
                _ => {
                    self.refuse(&here, "exists takes true or false");
                    return None;
                }
            },
            other => {
                self.refuse(&here, format!("'{other}' is not an event pattern operator (use one of: {OPERATORS})"));
                return None;
            }
        };
        Some(Operator::Matcher(matcher))
    }

    /// `prefix` or `suffix`: a string, or `{"equals-ignore-case": string}`.
    fn affix(
        &mut self,
        operand: &Value,
        at: &str,
        operator: &str,
        exact: fn(Box<str>) -> Matcher,
        ignoring_case: fn(Caseless) -> Matcher,
    ) -> Option<Matcher> {
        match operand {
            Value::String(s) => Some(exact(s.as_str().into())),
            Value::Object(inner) => match inner.get("equals-ignore-case") {
                Some(Value::String(s)) if inner.len() == 1 => Some(ignoring_case(Caseless::new(s))),
                Some(_) if inner.len() == 1 => {
                    self.refuse(&child(at, "equals-ignore-case"), "equals-ignore-case takes a string");
                    None
                }
                _ => {
                    self.refuse(at, format!("{operator} takes a string or {{\"equals-ignore-case\": string}}"));
                    None
                }
            },
            _ => {
                self.refuse(at, format!("{operator} takes a string or {{\"equals-ignore-case\": string}}"));
                None
            }
        }
    }

    fn wildcard(&mut self, operand: &Value, at: &str) -> Option<Wildcard> {
        let Value::String(s) = operand else {
            self.refuse(at, "wildcard takes a string");
            return None;
        };
        match Wildcard::parse(s) {
            Ok(w) => Some(w),
            Err(message) => {
                self.refuse(at, message);
                None
            }
        }
    }

    fn anything_but(&mut self, operand: &Value, at: &str) -> Option<AnythingBut> {
        match operand {
            Value::String(s) => Some(AnythingBut::Strings(vec![s.as_str().into()])),
            Value::Number(n) => {
                self.exact_number(n, at, "anything-but")?;
                Some(AnythingBut::Numbers(vec![n.clone()]))
            }
            Value::Array(items) => self.anything_but_list(items, at),
            Value::Object(inner) => {
                let mut entries = inner.iter();
                let (Some((form, values)), None) = (entries.next(), entries.next()) else {
                    self.refuse(
                        at,
                        "anything-but takes one of prefix, suffix, equals-ignore-case or wildcard when given an object",
                    );
                    return None;
                };
                let here = child(at, form);
                if !matches!(form.as_str(), "prefix" | "suffix" | "equals-ignore-case" | "wildcard") {
                    self.refuse(
                        &here,
                        format!("'{form}' cannot be used in anything-but (use prefix, suffix, equals-ignore-case or wildcard)"),
                    );
                    return None;
                }
                let strings = self.anything_but_strings(values, &here, form)?;
                match form.as_str() {
                    "prefix" | "suffix" if strings.iter().any(|s| s.is_empty()) => {
                        self.refuse(&here, format!("anything-but {form} cannot be empty"));
                        None
                    }
                    "prefix" => Some(AnythingBut::Prefixes(strings)),
                    "suffix" => Some(AnythingBut::Suffixes(strings)),
                    "equals-ignore-case" => {
                        Some(AnythingBut::IgnoreCase(strings.iter().map(|s| Caseless::new(s)).collect()))
                    }
                    _ => {
                        let mut wildcards = Vec::with_capacity(strings.len());
                        for s in &strings {
                            match Wildcard::parse(s) {
                                Ok(w) => wildcards.push(w),
                                Err(message) => self.refuse(&here, message),
                            }
                        }
                        (wildcards.len() == strings.len()).then_some(AnythingBut::Wildcards(wildcards))
                    }
                }
            }
            _ => {
                self.refuse(at, "anything-but takes a string, a number, a list of either, or an object");
                None
            }
        }
    }

    /// `anything-but: [...]`: strings only or numbers only.
    fn anything_but_list(&mut self, items: &[Value], at: &str) -> Option<AnythingBut> {
        if items.iter().all(Value::is_string) && !items.is_empty() {
            return Some(AnythingBut::Strings(items.iter().filter_map(Value::as_str).map(Into::into).collect()));
        }
        if items.iter().all(Value::is_number) && !items.is_empty() {
            let mut numbers = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                if let Value::Number(n) = item {
                    if self.exact_number(n, &index(at, i), "anything-but").is_some() {
                        numbers.push(n.clone());
                    }
                }
            }
            return (numbers.len() == items.len()).then_some(AnythingBut::Numbers(numbers));
        }
        self.refuse(at, "anything-but takes a non-empty list of strings only or of numbers only");
        None
    }

    /// The operand of `anything-but`'s prefix, suffix, equals-ignore-case or wildcard forms.
    fn anything_but_strings(&mut self, values: &Value, at: &str, form: &str) -> Option<Vec<Box<str>>> {
        match values {
            Value::String(s) => Some(vec![s.as_str().into()]),
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
                Some(items.iter().filter_map(Value::as_str).map(Into::into).collect())
            }
            _ => {
                self.refuse(at, format!("anything-but {form} takes a string or a non-empty list of strings"));
                None
            }
        }
    }

    /// `numeric: ["=", n]`, `[op, n]` or `[">"|">=", low, "<"|"<=", high]`.
    fn numeric(&mut self, operand: &Value, at: &str) -> Option<Range> {
        let Value::Array(items) = operand else {
            self.refuse(at, NUMERIC_SHAPE);
            return None;
        };
        let operator = |i: usize| items.get(i).and_then(Value::as_str);
        let range = match (items.len(), operator(0), operator(2)) {
            (2, Some(op @ ("=" | ">" | ">=" | "<" | "<=")), _) => {
                let n = self.operand(items, 1, at)?;
                match op {
                    "=" => Range {
                        lower: Some(Bound { value: n, inclusive: true }),
                        upper: Some(Bound { value: n, inclusive: true }),
                    },
                    ">" | ">=" => Range { lower: Some(Bound { value: n, inclusive: op == ">=" }), upper: None },
                    _ => Range { lower: None, upper: Some(Bound { value: n, inclusive: op == "<=" }) },
                }
            }
            (4, Some(low @ (">" | ">=")), Some(high @ ("<" | "<="))) => {
                let (bottom, top) = (self.operand(items, 1, at), self.operand(items, 3, at));
                let (bottom, top) = (bottom?, top?);
                if bottom >= top {
                    self.refuse(at, "a numeric range's lower bound must be less than its upper bound");
                    return None;
                }
                Range {
                    lower: Some(Bound { value: bottom, inclusive: low == ">=" }),
                    upper: Some(Bound { value: top, inclusive: high == "<=" }),
                }
            }
            _ => {
                self.refuse(at, NUMERIC_SHAPE);
                return None;
            }
        };
        Some(range)
    }

    fn operand(&mut self, items: &[Value], i: usize, at: &str) -> Option<f64> {
        let here = index(at, i);
        match &items[i] {
            Value::Number(n) => self.exact_number(n, &here, "numeric"),
            _ => {
                self.refuse(&here, "a numeric bound must be a number");
                None
            }
        }
    }

    /// EventBridge compares numbers as IEEE-754 doubles and refuses an operand a double cannot
    /// hold exactly (an integer beyond 2^53 that is not a multiple of its spacing).
    fn exact_number(&mut self, n: &Number, at: &str, operator: &str) -> Option<f64> {
        let exact = exact_f64(n);
        if exact.is_none() {
            self.refuse(at, format!("{operator} compares numbers as doubles, and {n} cannot be held exactly in one"));
        }
        exact
    }

    fn cidr(&mut self, operand: &Value, at: &str) -> Option<Cidr> {
        let Value::String(s) = operand else {
            self.refuse(at, "cidr takes a string such as \"10.0.0.0/24\"");
            return None;
        };
        match Cidr::parse(s) {
            Ok(cidr) => Some(cidr),
            Err(message) => {
                self.refuse(at, message);
                None
            }
        }
    }
}

enum Operator {
    Matcher(Matcher),
    /// `exists: false`, which is not a test on a value but on there being none.
    Absent,
}

impl Wildcard {
    /// `*` matches any run of characters; `\*` is a literal asterisk and `\\` a backslash.
    fn parse(pattern: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        let mut current = String::new();
        let mut chars = pattern.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '*' => {
                    if chars.peek().is_some_and(|&(_, next)| next == '*') {
                        return Err(format!("wildcard cannot have consecutive '*' (at position {at})"));
                    }
                    segments.push(std::mem::take(&mut current).into());
                }
                '\\' => match chars.next() {
                    Some((_, escaped @ ('*' | '\\'))) => current.push(escaped),
                    _ => return Err(format!("wildcard's backslash may only escape '*' or '\\' (at position {at})")),
                },
                c => current.push(c),
            }
        }
        segments.push(current.into());
        Ok(Self { segments })
    }
}

impl Cidr {
    fn parse(s: &str) -> Result<Self, String> {
        let Some((address, bits)) = s.split_once('/') else {
            return Err(format!("'{s}' is not a CIDR block: write an address, '/' and a prefix length"));
        };
        let network = parse_ip(address).ok_or_else(|| format!("'{address}' is not an IPv4 or IPv6 address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        match bits.parse::<u8>() {
            // EventBridge refuses a /32 (IPv4) or /128 (IPv6): that block is one address, an exact value.
            Ok(n) if n < max => Ok(Self { network, prefix_len: n }),
            _ => Err(format!("the prefix length of '{s}' must be a whole number from 0 to {}", max - 1)),
        }
    }
}

/// Whether `value` written as compact JSON has more than `limit` characters. Stops writing as
/// soon as it does, so a huge value costs no more than the limit.
fn exceeds_chars(value: &Value, limit: usize) -> bool {
    struct Counter {
        chars: usize,
        limit: usize,
    }
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            // Counting the bytes that start a UTF-8 character counts characters.
            self.chars += buf.iter().filter(|&&b| b & 0xC0 != 0x80).count();
            if self.chars > self.limit {
                return Err(io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(Counter { chars: 0, limit }, value).is_err()
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

    fn compile(pattern: &Value) -> EventPattern {
        EventPattern::parse(pattern).unwrap_or_else(|v| panic!("{pattern} was refused: {v:?}"))
    }

    /// Matches the one-field pattern `{"f": leaf}` against `{"f": value}` for each row.
    fn leaf_table(leaf: Value, rows: &[(Value, bool)]) {
        let pattern = compile(&json!({ "f": leaf }));
        for (value, expected) in rows {
            let document = json!({ "f": value });
            assert_eq!(pattern.matches(&document), *expected, "{leaf} on {value}");
        }
    }

    /// Matches `pattern` against each document.
    fn table(pattern: Value, rows: &[(Value, bool)]) {
        let compiled = compile(&pattern);
        for (document, expected) in rows {
            assert_eq!(compiled.matches(document), *expected, "{pattern} on {document}");
        }
    }

    fn refused(pattern: &Value) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = EventPattern::parse(pattern)
            .expect_err(&format!("{pattern} was accepted"))
            .into_iter()
            .map(|v| (v.pointer, v.message))
            .collect();
        found.sort();
        found
    }

    fn one(pointer: &str, message: &str) -> Vec<(String, String)> {
        vec![(pointer.to_owned(), message.to_owned())]
    }

    // --- Exact values -----------------------------------------------------------------------

    #[test]
    fn an_exact_string_matches_only_that_string() {
        leaf_table(
            json!(["aws.ec2"]),
            &[
                (json!("aws.ec2"), true),
                (json!("AWS.EC2"), false),
                (json!("aws.ec2 "), false),
                (json!(["x", "aws.ec2"]), true),
                (json!(["x"]), false),
                (json!([]), false),
                (json!({"aws.ec2": 1}), false),
                (json!(5), false),
                (json!(null), false),
            ],
        );
    }

    #[test]
    fn an_exact_number_matches_numerically_and_only_numbers() {
        leaf_table(
            json!([5]),
            &[
                (json!(5), true),
                (json!(5.0), true),
                (json!(0.5e1), true),
                (json!("5"), false),
                (json!([1, 5]), true),
                (json!(6), false),
            ],
        );
        leaf_table(json!([3.018e2]), &[(json!(301.8), true), (json!(301.81), false)]);
        leaf_table(json!([-1]), &[(json!(-1), true), (json!(-1.0), true), (json!(1), false)]);
        leaf_table(json!([1e2]), &[(json!(100), true)]);
    }

    #[test]
    fn integers_beyond_a_doubles_precision_are_compared_exactly() {
        leaf_table(
            json!([9_007_199_254_740_993u64]),
            &[
                (json!(9_007_199_254_740_993u64), true),
                (json!(9_007_199_254_740_992u64), false),
                (json!(9_007_199_254_740_992.0), false),
            ],
        );
    }

    #[test]
    fn booleans_null_and_the_empty_string_are_distinct_values() {
        leaf_table(json!([true]), &[(json!(true), true), (json!(false), false), (json!("true"), false)]);
        leaf_table(
            json!([null]),
            &[(json!(null), true), (json!("null"), false), (json!(""), false), (json!(0), false)],
        );
        leaf_table(json!([""]), &[(json!(""), true), (json!(null), false), (json!(" "), false)]);
        let pattern = compile(&json!({"f": [null]}));
        assert!(!pattern.matches(&json!({})), "null does not match a missing field");
    }

    #[test]
    fn an_exact_ip_address_matches_other_spellings_of_it() {
        leaf_table(
            json!(["2001:db8::1"]),
            &[(json!("2001:DB8:0:0:0:0:0:1"), true), (json!("2001:db8::1"), true), (json!("2001:db8::2"), false)],
        );
        leaf_table(
            json!(["10.0.0.1"]),
            &[(json!("10.0.0.1"), true), (json!("10.0.0.10"), false), (json!("::ffff:a00:1"), true)],
        );
        // event-ruler does not read IPv6 with a dotted IPv4 tail as an address.
        leaf_table(json!(["10.0.0.1"]), &[(json!("::ffff:10.0.0.1"), false)]);
    }

    // --- prefix / suffix / equals-ignore-case -------------------------------------------------

    #[test]
    fn prefix_matches_strings_that_start_with_it() {
        leaf_table(
            json!([{"prefix": "2017-10-02"}]),
            &[
                (json!("2017-10-02T18:43:48Z"), true),
                (json!("2017-10-03T18:43:48Z"), false),
                (json!("2017-10-0"), false),
                (json!(20171002), false),
                (json!(["x", "2017-10-02"]), true),
            ],
        );
        leaf_table(
            json!([{"prefix": ""}]),
            &[(json!(""), true), (json!("x"), true), (json!(5), false), (json!(null), false)],
        );
    }

    #[test]
    fn prefix_with_equals_ignore_case_ignores_the_case_of_both_sides() {
        leaf_table(
            json!([{"prefix": {"equals-ignore-case": "EventB"}}]),
            &[
                (json!("eventbridge"), true),
                (json!("EVENTBRIDGE"), true),
                (json!("EventBus"), true),
                (json!("Event"), false),
                (json!("xeventb"), false),
                (json!(5), false),
            ],
        );
        leaf_table(
            json!([{"prefix": {"equals-ignore-case": "ÉTÉ"}}]),
            &[(json!("été 2024"), true), (json!("ete 2024"), false)],
        );
    }

    #[test]
    fn suffix_matches_strings_that_end_with_it() {
        leaf_table(
            json!([{"suffix": ".png"}]),
            &[
                (json!("a.png"), true),
                (json!(".png"), true),
                (json!("a.PNG"), false),
                (json!("png"), false),
                (json!(5), false),
            ],
        );
    }

    #[test]
    fn suffix_with_equals_ignore_case_ignores_the_case_of_both_sides() {
        leaf_table(
            json!([{"suffix": {"equals-ignore-case": ".png"}}]),
            &[(json!("a.PNG"), true), (json!("a.Png"), true), (json!("a.jpg"), false), (json!("PNG"), false)],
        );
        leaf_table(
            json!([{"suffix": {"equals-ignore-case": "ÉTÉ"}}]),
            &[(json!("L'ÉTÉ"), true), (json!("l'été"), true), (json!("été!"), false)],
        );
    }

    #[test]
    fn equals_ignore_case_matches_the_whole_string_in_any_case() {
        leaf_table(
            json!([{"equals-ignore-case": "alice"}]),
            &[
                (json!("Alice"), true),
                (json!("ALICE"), true),
                (json!("alic"), false),
                (json!("alicee"), false),
                (json!(5), false),
            ],
        );
        leaf_table(
            json!([{"equals-ignore-case": "Àlice"}]),
            &[(json!("ÀLICE"), true), (json!("àlice"), true), (json!("alice"), false)],
        );
    }

    #[test]
    fn ignoring_case_each_pattern_character_matches_its_lowercase_or_uppercase_form() {
        // As event-ruler does: "ß" uppercases to "SS"; the Kelvin sign lowercases to "k" but is
        // neither the lowercase nor the uppercase of "k".
        leaf_table(
            json!([{"equals-ignore-case": "straße"}]),
            &[(json!("STRASSE"), true), (json!("STRAßE"), true), (json!("strasse"), false)],
        );
        leaf_table(json!([{"equals-ignore-case": "k"}]), &[(json!("K"), true), (json!("\u{212a}"), false)]);
        leaf_table(json!([{"prefix": {"equals-ignore-case": "ß"}}]), &[(json!("SSx"), true), (json!("Sx"), false)]);
        leaf_table(json!([{"suffix": {"equals-ignore-case": "ß"}}]), &[(json!("xSS"), true), (json!("xS"), false)]);
        leaf_table(
            json!([{"anything-but": {"equals-ignore-case": "straße"}}]),
            &[(json!("STRASSE"), false), (json!("STRASE"), true)],
        );
    }

    // --- wildcard ---------------------------------------------------------------------------

    #[test]
    fn wildcard_star_matches_any_run_of_characters() {
        leaf_table(
            json!([{"wildcard": "dir/*.png"}]),
            &[
                (json!("dir/a.png"), true),
                (json!("dir/.png"), true),
                (json!("dir/sub/a.png"), true),
                (json!("other/a.png"), false),
                (json!("dir/a.jpg"), false),
            ],
        );
        leaf_table(
            json!([{"wildcard": "Simple*Service"}]),
            &[
                (json!("SimpleQueueService"), true),
                (json!("SimpleService"), true),
                (json!("simplequeueservice"), false),
            ],
        );
        leaf_table(json!([{"wildcard": "*"}]), &[(json!(""), true), (json!("anything"), true), (json!(5), false)]);
        leaf_table(json!([{"wildcard": "a*a"}]), &[(json!("a"), false), (json!("aa"), true), (json!("aba"), true)]);
        leaf_table(
            json!([{"wildcard": "*-*-*"}]),
            &[(json!("a-b-c"), true), (json!("--"), true), (json!("a-b"), false)],
        );
        leaf_table(json!([{"wildcard": "nostar"}]), &[(json!("nostar"), true), (json!("nostars"), false)]);
    }

    #[test]
    fn wildcard_backslash_escapes_a_star_or_a_backslash() {
        leaf_table(json!([{"wildcard": "a\\*b"}]), &[(json!("a*b"), true), (json!("axb"), false)]);
        leaf_table(
            json!([{"wildcard": "a\\\\*"}]),
            &[(json!("a\\"), true), (json!("a\\b"), true), (json!("ab"), false)],
        );
    }

    // --- anything-but -----------------------------------------------------------------------

    #[test]
    fn anything_but_a_string_matches_every_other_value_of_any_type() {
        leaf_table(
            json!([{"anything-but": "initializing"}]),
            &[
                (json!("running"), true),
                (json!("Initializing"), true),
                (json!("initializing"), false),
                (json!(5), true),
                (json!(null), true),
                (json!(["initializing", "running"]), true),
                (json!(["initializing"]), false),
                (json!([]), false),
            ],
        );
        let pattern = compile(&json!({"f": [{"anything-but": "initializing"}]}));
        assert!(!pattern.matches(&json!({})), "anything-but needs a value to be there");
    }

    #[test]
    fn anything_but_a_number_excludes_it_numerically() {
        leaf_table(
            json!([{"anything-but": 123}]),
            &[
                (json!(124), true),
                (json!(123), false),
                (json!(123.0), false),
                (json!(1.23e2), false),
                (json!("123"), true),
            ],
        );
    }

    #[test]
    fn anything_but_a_list_excludes_each_listed_value() {
        leaf_table(
            json!([{"anything-but": ["stopped", "overloaded"]}]),
            &[(json!("running"), true), (json!("stopped"), false), (json!("overloaded"), false)],
        );
        // SNS's documented example: an array matches when any element is outside the list.
        leaf_table(
            json!([{"anything-but": [100, 500]}]),
            &[
                (json!(101), true),
                (json!(100.1), true),
                (json!([100, 50]), true),
                (json!(100), false),
                (json!([100, 500]), false),
            ],
        );
    }

    #[test]
    fn anything_but_prefix_and_suffix_exclude_strings_by_their_ends() {
        leaf_table(
            json!([{"anything-but": {"prefix": "init"}}]),
            &[(json!("initializing"), false), (json!("running"), true), (json!(""), true), (json!(5), true)],
        );
        leaf_table(
            json!([{"anything-but": {"prefix": ["init", "error"]}}]),
            &[(json!("error-42"), false), (json!("init"), false), (json!("ok"), true)],
        );
        leaf_table(json!([{"anything-but": {"suffix": "1234"}}]), &[(json!("i-1234"), false), (json!("i-5678"), true)]);
        leaf_table(
            json!([{"anything-but": {"suffix": ["1234", "6789"]}}]),
            &[(json!("i-6789"), false), (json!("i-5678"), true)],
        );
    }

    #[test]
    fn anything_but_equals_ignore_case_excludes_every_casing() {
        leaf_table(
            json!([{"anything-but": {"equals-ignore-case": "Stopped"}}]),
            &[(json!("STOPPED"), false), (json!("stopped"), false), (json!("running"), true)],
        );
        leaf_table(
            json!([{"anything-but": {"equals-ignore-case": ["Stopped", "OverLoaded"]}}]),
            &[(json!("overloaded"), false), (json!("sTOPPED"), false), (json!("running"), true)],
        );
    }

    #[test]
    fn anything_but_wildcard_excludes_strings_the_wildcard_matches() {
        leaf_table(
            json!([{"anything-but": {"wildcard": "*/bin/*.jar"}}]),
            &[
                (json!("/usr/bin/app.jar"), false),
                (json!("/usr/lib/app.jar"), true),
                (json!("/usr/bin/app.class"), true),
            ],
        );
        leaf_table(
            json!([{"anything-but": {"wildcard": ["*/bin/*.jar", "*/bin/*.class"]}}]),
            &[(json!("/usr/bin/app.class"), false), (json!("/usr/lib/app.class"), true)],
        );
    }

    // --- numeric ----------------------------------------------------------------------------

    #[test]
    fn numeric_ranges_respect_open_and_closed_bounds() {
        leaf_table(
            json!([{"numeric": [">", 0, "<=", 5]}]),
            &[
                (json!(0), false),
                (json!(0.1), true),
                (json!(5), true),
                (json!(5.0), true),
                (json!(5.01), false),
                (json!(-1), false),
                (json!("3"), false),
                (json!(null), false),
                (json!([7, 3]), true),
            ],
        );
        leaf_table(
            json!([{"numeric": [">=", 10, "<", 20]}]),
            &[(json!(10), true), (json!(19.999), true), (json!(20), false)],
        );
        leaf_table(json!([{"numeric": ["<", 10]}]), &[(json!(9.99), true), (json!(10), false), (json!(-1e9), true)]);
        leaf_table(json!([{"numeric": ["<=", -5]}]), &[(json!(-5), true), (json!(-4), false)]);
        leaf_table(json!([{"numeric": [">", 5e9]}]), &[(json!(6e9), true), (json!(5e9), false)]);
    }

    #[test]
    fn numeric_equals_compares_values_not_spellings() {
        leaf_table(
            json!([{"numeric": ["=", 3.018e2]}]),
            &[(json!(301.8), true), (json!(301.800_000_1), false), (json!("301.8"), false)],
        );
    }

    // --- cidr -------------------------------------------------------------------------------

    #[test]
    fn cidr_matches_ip_address_strings_in_the_block() {
        leaf_table(
            json!([{"cidr": "10.0.0.0/24"}]),
            &[
                (json!("10.0.0.0"), true),
                (json!("10.0.0.255"), true),
                (json!("10.0.1.0"), false),
                (json!("::ffff:a00:5"), true),
                (json!("::ffff:10.0.0.5"), false),
                (json!("10.0.0.1/24"), false),
                (json!("not an ip"), false),
                (json!(167_772_160), false),
            ],
        );
        leaf_table(
            json!([{"cidr": "2001:db8::/32"}]),
            &[(json!("2001:db8:1::1"), true), (json!("2001:db9::1"), false), (json!("10.0.0.1"), false)],
        );
        leaf_table(json!([{"cidr": "0.0.0.0/0"}]), &[(json!("1.2.3.4"), true), (json!("::1"), false)]);
        // Host bits in the block are ignored, as EventBridge ignores them.
        leaf_table(json!([{"cidr": "10.0.0.5/24"}]), &[(json!("10.0.0.200"), true), (json!("10.0.1.5"), false)]);
    }

    // --- exists -----------------------------------------------------------------------------

    #[test]
    fn exists_true_needs_a_scalar_at_the_path() {
        leaf_table(
            json!([{"exists": true}]),
            &[
                (json!("x"), true),
                (json!(null), true),
                (json!(0), true),
                (json!(""), true),
                (json!([1]), true),
                (json!([]), false),
                (json!({"a": 1}), false),
                (json!([{"a": 1}]), false),
            ],
        );
        assert!(!compile(&json!({"f": [{"exists": true}]})).matches(&json!({})));
    }

    #[test]
    fn exists_false_matches_when_no_scalar_is_at_the_path() {
        leaf_table(
            json!([{"exists": false}]),
            &[
                (json!(null), false),
                (json!("x"), false),
                (json!([1]), false),
                (json!({"c1": 100}), true),
                (json!([]), true),
            ],
        );
        assert!(compile(&json!({"f": [{"exists": false}]})).matches(&json!({})));
        assert!(compile(&json!({"a": {"b": [{"exists": false}]}})).matches(&json!({"a": 5})));
    }

    #[test]
    fn exists_false_alone_under_an_array_of_objects_means_no_element_has_the_field() {
        table(
            json!({"a": {"b": [{"exists": false}]}}),
            &[
                (json!({"a": [{"b": 1}]}), false),
                (json!({"a": [{"c": 1}, {"b": 1}]}), false),
                (json!({"a": [{"c": 1}, {"d": 2}]}), true),
                (json!({"a": [[{"c": 1}], [{"b": 1}]]}), false),
                (json!({"a": [1, 2]}), true),
                (json!({"a": []}), true),
            ],
        );
    }

    #[test]
    fn exists_false_beside_other_values_is_one_more_alternative() {
        let pattern = json!({"tier": [{"anything-but": ["gold", "silver"]}, {"exists": false}]});
        table(pattern, &[(json!({}), true), (json!({"tier": "bronze"}), true), (json!({"tier": "gold"}), false)]);
        table(
            json!({"f": ["a", {"exists": false}]}),
            &[(json!({}), true), (json!({"f": "a"}), true), (json!({"f": "b"}), false)],
        );
        // Under an array, an element without the field ties nothing to it, so, as in event-ruler,
        // the absence must then hold in every element.
        table(
            json!({"a": {"tier": [{"anything-but": ["gold"]}, {"exists": false}]}}),
            &[
                (json!({"a": [{"tier": "gold"}]}), false),
                (json!({"a": [{"tier": "gold"}, {"x": 1}]}), false),
                (json!({"a": [{"tier": "silver"}, {"tier": "gold"}]}), true),
                (json!({"a": [{"x": 1}, {"y": 1}]}), true),
            ],
        );
    }

    // --- structure: fields, nesting, arrays, $or --------------------------------------------

    #[test]
    fn fields_are_anded_and_listed_values_are_ored() {
        table(
            json!({"Location": ["New York"], "Day": ["Monday", "Tuesday"]}),
            &[
                (json!({"Location": "New York", "Day": "Tuesday", "Other": 1}), true),
                (json!({"Location": "New York", "Day": "Friday"}), false),
                (json!({"Day": "Monday"}), false),
            ],
        );
    }

    #[test]
    fn nested_objects_follow_the_documents_structure() {
        table(
            json!({"a": {"b": {"c": ["x"]}}}),
            &[
                (json!({"a": {"b": {"c": "x"}}}), true),
                (json!({"a": {"b": {"c": ["y", "x"]}}}), true),
                (json!({"a": [{"b": {"c": "y"}}, {"b": [{"c": "x"}]}]}), true),
                (json!({"a": {"b": {"c": "y"}}}), false),
                (json!({"a": {"b": "x"}}), false),
                (json!({"a": 5}), false),
                (json!({}), false),
            ],
        );
    }

    #[test]
    fn dotted_keys_are_not_paths() {
        // event-ruler joins keys with dots internally and so confuses these; its README says not to rely on it.
        table(json!({"a.b": ["x"]}), &[(json!({"a": {"b": "x"}}), false), (json!({"a.b": "x"}), true)]);
        table(json!({"a": {"b": ["x"]}}), &[(json!({"a.b": "x"}), false)]);
    }

    #[test]
    fn an_operator_name_outside_or_is_an_ordinary_field() {
        table(
            json!({"prefix": ["x"], "numeric": {"exists": [true]}}),
            &[(json!({"prefix": "x", "numeric": {"exists": true}}), true)],
        );
    }

    #[test]
    fn a_document_array_matches_when_any_element_does() {
        // EventBridge's documented example: the first pattern value matches the second event value.
        table(
            json!({"resources": [
                "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
                "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f",
                "arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f"
            ]}),
            &[
                (
                    json!({"resources": [
                        "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b-bbf0-401d-b893-d5978ed4a025:autoScalingGroupName/ASGTerminate",
                        "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"
                    ]}),
                    true,
                ),
                (json!({"resources": ["arn:aws:ec2:us-east-1:999999999999:instance/i-b188560f"]}), false),
            ],
        );
    }

    #[test]
    fn fields_under_an_array_of_objects_must_match_in_the_same_element() {
        // event-ruler's README example, with arrays of arrays "crushed out".
        let employees = json!({"employees": [
            [
                {"firstName": "John", "lastName": "Doe", "ids": [1234, 1000, 9999]},
                {"firstName": "Anna", "lastName": "Smith"}
            ],
            [{"firstName": "Peter", "lastName": "Jones", "ids": []}]
        ]});
        let rows = [
            (json!({"employees": {"firstName": ["Anna"]}}), true),
            (json!({"employees": {"firstName": ["John"], "ids": [1000]}}), true),
            (json!({"employees": {"firstName": ["Anna"], "ids": [{"exists": false}]}}), true),
            (json!({"employees": {"firstName": ["Peter"], "ids": [{"exists": false}]}}), true),
            (json!({"employees": {"firstName": ["Alice"]}}), false),
            (json!({"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}}), false),
            (json!({"employees": {"firstName": ["Anna"], "ids": [1000]}}), false),
            (json!({"employees": {"firstName": ["Anna"], "ids": [{"exists": true}]}}), false),
            (json!({"employees": ["b"]}), false),
            (json!({"a": ["b"]}), false),
            // Nothing picks an employee here, so no employee may have ids; John has.
            (json!({"employees": {"ids": [{"exists": false}]}}), false),
            (json!({"employees": {"nickname": [{"exists": false}]}}), true),
        ];
        for (pattern, expected) in rows {
            assert_eq!(compile(&pattern).matches(&employees), expected, "{pattern}");
        }
    }

    #[test]
    fn or_matches_when_any_alternative_does() {
        table(
            json!({"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]}),
            &[
                (json!({"Location": "New York", "Day": "Friday"}), true),
                (json!({"Location": "Paris", "Day": "Monday"}), true),
                (json!({"Location": "Paris", "Day": "Friday"}), false),
            ],
        );
        table(
            json!({
                "source": ["aws.cloudwatch"],
                "$or": [
                    {"metricName": ["CPUUtilization", "ReadLatency"]},
                    {"namespace": ["AWS/EC2", "AWS/ES"]}
                ]
            }),
            &[
                (json!({"source": "aws.cloudwatch", "metricName": "ReadLatency"}), true),
                (json!({"source": "aws.cloudwatch", "namespace": "AWS/ES"}), true),
                (json!({"source": "aws.s3", "metricName": "ReadLatency"}), false),
                (json!({"source": "aws.cloudwatch", "metricName": "Other"}), false),
            ],
        );
    }

    #[test]
    fn or_nests_and_appears_at_any_level() {
        // event-ruler's "parallel or" and "nested or and and" examples.
        table(
            json!({
                "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}],
                "detail": {"$or": [{"source": ["aws.cloudwatch"]}, {"detail-type": ["CloudWatch Alarm State Change"]}]}
            }),
            &[
                (json!({"namespace": "AWS/EC2", "detail": {"detail-type": "CloudWatch Alarm State Change"}}), true),
                (json!({"namespace": "AWS/EC2", "detail": {"source": "x"}}), false),
                (json!({"detail": {"source": "aws.cloudwatch"}}), false),
            ],
        );
        table(
            json!({
                "source": ["aws.cloudwatch"],
                "$or": [
                    {"metricName": ["CPUUtilization", "ReadLatency"]},
                    {
                        "metricType": ["MetricType"],
                        "namespace": ["AWS/EC2", "AWS/ES"],
                        "$or": [{"metricId": [1234]}, {"spaceId": [1000]}]
                    },
                    {"scope": ["Service"]}
                ]
            }),
            &[
                (
                    json!({"source": "aws.cloudwatch", "metricType": "MetricType", "namespace": "AWS/EC2", "spaceId": 1000}),
                    true,
                ),
                (json!({"source": "aws.cloudwatch", "metricType": "MetricType", "namespace": "AWS/EC2"}), false),
                (json!({"source": "aws.cloudwatch", "scope": "Service"}), true),
                (json!({"source": "aws.cloudwatch", "spaceId": 1000}), false),
            ],
        );
    }

    #[test]
    fn or_under_an_array_must_hold_within_one_element() {
        table(
            json!({"items": {"sku": ["A"], "$or": [{"qty": [{"numeric": [">", 10]}]}, {"rush": [true]}]}}),
            &[
                (json!({"items": [{"sku": "A", "qty": 1}, {"sku": "B", "rush": true}]}), false),
                (json!({"items": [{"sku": "B"}, {"sku": "A", "rush": true}]}), true),
            ],
        );
    }

    #[test]
    fn a_key_given_twice_keeps_its_last_value_as_eventbridge_documents() {
        let text = r#"{"detail": {"location": [{"prefix": "us-"}], "location": [{"anything-but": "us-east"}]}}"#;
        let pattern = compile(&serde_json::from_str(text).unwrap());
        assert!(pattern.matches(&json!({"detail": {"location": "eu-west"}})));
        assert!(!pattern.matches(&json!({"detail": {"location": "us-east"}})));
    }

    // --- AWS's documented event and pattern pairs -------------------------------------------

    /// The sample EC2 event of EventBridge's (and event-ruler's) content-filtering documentation.
    fn documented_ec2_event() -> Value {
        json!({
            "version": "0",
            "id": "ddddd4-aaaa-7777-4444-345dd43cc333",
            "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2",
            "account": "012345679012",
            "time": "2017-10-02T16:24:49Z",
            "region": "us-east-1",
            "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
            "detail": {
                "c-count": 5,
                "d-count": 3,
                "x-limit": 301.8,
                "source-ip": "10.0.0.33",
                "instance-id": "i-000000aaaaaa00000",
                "state": "running"
            }
        })
    }

    #[test]
    fn the_documented_content_filtering_patterns_match_the_documented_event() {
        let event = documented_ec2_event();
        let matching = [
            json!({
                "detail-type": ["EC2 Instance State-change Notification"],
                "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
                "detail": {"state": ["initializing", "running"]}
            }),
            json!({"time": [{"prefix": "2017-10-02"}]}),
            json!({"source": [{"suffix": "ec2"}]}),
            json!({"detail": {"state": [{"anything-but": "initializing"}]}}),
            json!({"detail": {"x-limit": [{"anything-but": 123}]}}),
            json!({"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}}),
            json!({"detail": {"x-limit": [{"anything-but": [100, 200, 300]}]}}),
            json!({"detail": {"state": [{"anything-but": {"prefix": "init"}}]}}),
            json!({"detail": {"instance-id": [{"anything-but": {"suffix": "1234"}}]}}),
            json!({"detail": {"state": [{"anything-but": {"equals-ignore-case": "Stopped"}}]}}),
            json!({"detail": {
                "c-count": [{"numeric": [">", 0, "<=", 5]}],
                "d-count": [{"numeric": ["<", 10]}],
                "x-limit": [{"numeric": ["=", 3.018e2]}]
            }}),
            json!({"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}}),
            json!({"detail": {"c-count": [{"exists": true}]}}),
            json!({
                "time": [{"prefix": "2017-10-02"}],
                "detail": {
                    "state": [{"anything-but": "initializing"}],
                    "c-count": [{"numeric": [">", 0, "<=", 5]}],
                    "d-count": [{"numeric": ["<", 10]}],
                    "x-limit": [{"anything-but": [100, 200, 300]}],
                    "source-ip": [{"cidr": "10.0.0.0/8"}]
                }
            }),
        ];
        for pattern in matching {
            assert!(compile(&pattern).matches(&event), "{pattern} should match");
        }
        let not_matching = [
            json!({"detail": {"state": [{"anything-but": "running"}]}}),
            json!({"detail": {"c-count": [{"exists": false}]}}),
            json!({"detail": {"c-count": [{"numeric": [">", 5]}]}}),
            json!({"detail": {"source-ip": [{"cidr": "10.0.1.0/24"}]}}),
            json!({"detail": {"state": [{"anything-but": {"prefix": "run"}}]}}),
        ];
        for pattern in not_matching {
            assert!(!compile(&pattern).matches(&event), "{pattern} should not match");
        }
    }

    #[test]
    fn the_documented_ec2_termination_pattern_selects_terminated_instances() {
        let pattern = compile(&json!({
            "source": ["aws.ec2"],
            "detail-type": ["EC2 Instance State-change Notification"],
            "detail": {"state": ["terminated"]}
        }));
        let mut event = json!({
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2",
            "account": "111122223333",
            "time": "2017-12-22T18:43:48Z",
            "region": "us-west-1",
            "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
            "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated"}
        });
        assert!(pattern.matches(&event));
        event["detail"]["state"] = json!("running");
        assert!(!pattern.matches(&event));
    }

    #[test]
    fn the_documented_exists_examples_hold() {
        let pattern = compile(&json!({"detail": {"state": [{"exists": true}]}}));
        let with_state = json!({
            "version": "0",
            "id": "7bf73129-1428-4cd3-a780-95db273d1602",
            "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2",
            "account": "123456789012",
            "time": "2015-11-11T21:29:54Z",
            "region": "us-east-1",
            "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
            "detail": {"instance-id": "i-abcd1111", "state": "pending"}
        });
        let without_state = json!({
            "detail-type": ["EC2 Instance State-change Notification"],
            "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-02ebd4584a2ebd341"],
            "detail": {"c-count": {"c1": 100}}
        });
        assert!(pattern.matches(&with_state));
        assert!(!pattern.matches(&without_state));
        // event-ruler's README: exists works on leaves only, so an object at the path is "absent".
        assert!(compile(&json!({"detail": {"c-count": [{"exists": false}]}})).matches(&without_state));
        // EventBridge's equals-ignore-case example uses the same event.
        let ignore_case =
            compile(&json!({"detail-type": [{"equals-ignore-case": "ec2 instance state-change notification"}]}));
        assert!(ignore_case.matches(&without_state));
    }

    #[test]
    fn the_documented_null_and_empty_string_examples_hold() {
        let event = json!({
            "version": "0",
            "id": "3e3c153a-8339-4e30-8c35-687ebef853fe",
            "detail-type": "EC2 Instance Launch Successful",
            "source": "aws.autoscaling",
            "account": "123456789012",
            "time": "2015-11-11T21:31:47Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {"eventVersion": "", "responseElements": null}
        });
        assert!(compile(&json!({"detail": {"eventVersion": [""]}})).matches(&event));
        assert!(compile(&json!({"detail": {"responseElements": [null]}})).matches(&event));
        assert!(!compile(&json!({"detail": {"eventVersion": [null]}})).matches(&event));
        assert!(!compile(&json!({"detail": {"responseElements": [""]}})).matches(&event));
    }

    #[test]
    fn the_documented_or_example_matches_any_of_its_conditions() {
        table(
            json!({"detail": {"$or": [
                {"c-count": [{"numeric": [">", 0, "<=", 5]}]},
                {"d-count": [{"numeric": ["<", 10]}]},
                {"x-limit": [{"numeric": ["=", 3.018e2]}]}
            ]}}),
            &[
                (json!({"detail": {"c-count": 3}}), true),
                (json!({"detail": {"d-count": 20, "x-limit": 301.8}}), true),
                (json!({"detail": {"c-count": 6, "d-count": 10}}), false),
                (json!({"detail": {"other": 1}}), false),
            ],
        );
    }

    #[test]
    fn the_comparison_operators_table_examples_hold() {
        // Each row of EventBridge's "Comparison operators" table: pattern, a match, a non-match.
        let rows = [
            (
                json!({"Location": ["New York"], "Day": ["Monday"]}),
                json!({"Location": "New York", "Day": "Monday"}),
                json!({"Location": "New York", "Day": "Sunday"}),
            ),
            (
                json!({"state": [{"anything-but": "initializing"}]}),
                json!({"state": "running"}),
                json!({"state": "initializing"}),
            ),
            (
                json!({"Region": [{"anything-but": {"prefix": "us-"}}]}),
                json!({"Region": "eu-west-1"}),
                json!({"Region": "us-east-1"}),
            ),
            (
                json!({"FileName": [{"anything-but": {"suffix": ".png"}}]}),
                json!({"FileName": "a.jpg"}),
                json!({"FileName": "a.png"}),
            ),
            (
                json!({"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]}),
                json!({"state": "running"}),
                json!({"state": "INITIALIZING"}),
            ),
            (
                json!({"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]}),
                json!({"FilePath": "/usr/bin/x"}),
                json!({"FilePath": "/usr/lib/x"}),
            ),
            (json!({"Region": [{"prefix": "us-"}]}), json!({"Region": "us-east-1"}), json!({"Region": "eu-west-1"})),
            (
                json!({"service": [{"prefix": {"equals-ignore-case": "eventb"}}]}),
                json!({"service": "EventBridge"}),
                json!({"service": "Lambda"}),
            ),
            (json!({"LastName": [""]}), json!({"LastName": ""}), json!({"LastName": "Doe"})),
            (json!({"Name": ["Alice"]}), json!({"Name": "Alice"}), json!({"Name": "alice"})),
            (json!({"Name": [{"equals-ignore-case": "alice"}]}), json!({"Name": "ALICE"}), json!({"Name": "Bob"})),
            (json!({"FileName": [{"suffix": ".png"}]}), json!({"FileName": "a.png"}), json!({"FileName": "a.jpg"})),
            (
                json!({"service": [{"suffix": {"equals-ignore-case": "tBridge"}}]}),
                json!({"service": "EVENTBRIDGE"}),
                json!({"service": "Lambda"}),
            ),
            (json!({"ProductName": [{"exists": true}]}), json!({"ProductName": "Widget"}), json!({"Price": 1})),
            (json!({"ProductName": [{"exists": false}]}), json!({"Price": 1}), json!({"ProductName": "Widget"})),
            (
                json!({"Weather": [{"anything-but": ["Raining"]}]}),
                json!({"Weather": "Sunny"}),
                json!({"Weather": "Raining"}),
            ),
            (json!({"UserID": [null]}), json!({"UserID": null}), json!({"UserID": "u-1"})),
            (json!({"Price": [{"numeric": ["=", 100]}]}), json!({"Price": 100}), json!({"Price": 101})),
            (json!({"Price": [{"numeric": [">", 10, "<=", 20]}]}), json!({"Price": 20}), json!({"Price": 10})),
            (
                json!({"PaymentType": ["Credit", "Debit"]}),
                json!({"PaymentType": "Debit"}),
                json!({"PaymentType": "Cash"}),
            ),
            (
                json!({"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]}),
                json!({"Day": "Monday"}),
                json!({"Day": "Sunday"}),
            ),
            (
                json!({"FilePath": [{"wildcard": "dir/*.png"}]}),
                json!({"FilePath": "dir/a.png"}),
                json!({"FilePath": "dir/a.jpg"}),
            ),
        ];
        for (pattern, matching, other) in rows {
            let compiled = compile(&pattern);
            assert!(compiled.matches(&matching), "{pattern} should match {matching}");
            assert!(!compiled.matches(&other), "{pattern} should not match {other}");
        }
    }

    // --- Invalid patterns -------------------------------------------------------------------

    #[test]
    fn a_pattern_must_be_a_non_empty_object() {
        assert_eq!(refused(&json!([])), one("", "an event pattern must be a JSON object"));
        assert_eq!(refused(&json!("source")), one("", "an event pattern must be a JSON object"));
        assert_eq!(refused(&json!({})), one("", "an object in a pattern must name at least one field"));
        assert_eq!(refused(&json!({"a": {}})), one("/a", "an object in a pattern must name at least one field"));
    }

    #[test]
    fn a_leaf_must_be_a_non_empty_array_of_values_or_operators() {
        let leaf = "a pattern's leaf must be an array of values or operators";
        assert_eq!(refused(&json!({"s3": {"bucket": {"name": "my-bucket"}}})), one("/s3/bucket/name", leaf));
        assert_eq!(refused(&json!({"a": 5})), one("/a", leaf));
        assert_eq!(refused(&json!({"a": null})), one("/a", leaf));
        assert_eq!(refused(&json!({"a": []})), one("/a", "a pattern's leaf must list at least one value or operator"));
        assert_eq!(
            refused(&json!({"a": ["x", ["y"]]})),
            one("/a/1", "a value to match must be a string, number, boolean, null or an operator object")
        );
    }

    #[test]
    fn an_operator_object_has_exactly_one_known_operator() {
        let shape = "an operator object must have exactly one key, the operator";
        assert_eq!(refused(&json!({"a": [{}]})), one("/a/0", shape));
        assert_eq!(refused(&json!({"a": [{"prefix": "x", "suffix": "y"}]})), one("/a/0", shape));
        let unknown = |name: &str| format!("'{name}' is not an event pattern operator (use one of: {OPERATORS})");
        assert_eq!(refused(&json!({"a": [{"contains": "x"}]})), one("/a/0/contains", &unknown("contains")));
        // event-ruler also has "exactly", but EventBridge does not document it.
        assert_eq!(refused(&json!({"a": [{"exactly": "x"}]})), one("/a/0/exactly", &unknown("exactly")));
    }

    #[test]
    fn string_operators_take_strings() {
        let affix = |op: &str| format!("{op} takes a string or {{\"equals-ignore-case\": string}}");
        assert_eq!(refused(&json!({"a": [{"prefix": 5}]})), one("/a/0/prefix", &affix("prefix")));
        assert_eq!(refused(&json!({"a": [{"prefix": {"wildcard": "x"}}]})), one("/a/0/prefix", &affix("prefix")));
        assert_eq!(
            refused(&json!({"a": [{"prefix": {"equals-ignore-case": "x", "other": 1}}]})),
            one("/a/0/prefix", &affix("prefix"))
        );
        assert_eq!(
            refused(&json!({"a": [{"prefix": {"equals-ignore-case": 5}}]})),
            one("/a/0/prefix/equals-ignore-case", "equals-ignore-case takes a string")
        );
        assert_eq!(refused(&json!({"a": [{"suffix": ["x"]}]})), one("/a/0/suffix", &affix("suffix")));
        assert_eq!(
            refused(&json!({"a": [{"equals-ignore-case": ["x"]}]})),
            one("/a/0/equals-ignore-case", "equals-ignore-case takes a string")
        );
        assert_eq!(refused(&json!({"a": [{"wildcard": 5}]})), one("/a/0/wildcard", "wildcard takes a string"));
        assert_eq!(refused(&json!({"a": [{"exists": "true"}]})), one("/a/0/exists", "exists takes true or false"));
    }

    #[test]
    fn a_wildcard_refuses_consecutive_stars_and_stray_backslashes() {
        assert_eq!(
            refused(&json!({"a": [{"wildcard": "a**b"}]})),
            one("/a/0/wildcard", "wildcard cannot have consecutive '*' (at position 1)")
        );
        let escape = |at: usize| format!("wildcard's backslash may only escape '*' or '\\' (at position {at})");
        assert_eq!(refused(&json!({"a": [{"wildcard": "a\\b"}]})), one("/a/0/wildcard", &escape(1)));
        assert_eq!(refused(&json!({"a": [{"wildcard": "ab\\"}]})), one("/a/0/wildcard", &escape(2)));
    }

    #[test]
    fn numeric_takes_an_operator_and_number_or_a_low_then_high_range() {
        let rows = [
            (json!(5), "/a/0/numeric", NUMERIC_SHAPE.to_owned()),
            (json!([]), "/a/0/numeric", NUMERIC_SHAPE.to_owned()),
            (json!(["==", 5]), "/a/0/numeric", NUMERIC_SHAPE.to_owned()),
            (json!(["<", 10, ">", 0]), "/a/0/numeric", NUMERIC_SHAPE.to_owned()),
            (json!(["=", 1, "<", 2]), "/a/0/numeric", NUMERIC_SHAPE.to_owned()),
            (json!([">", 0, "<=", 5, 6]), "/a/0/numeric", NUMERIC_SHAPE.to_owned()),
            (json!([">", "5"]), "/a/0/numeric/1", "a numeric bound must be a number".to_owned()),
            (json!([">", 0, "<", "x"]), "/a/0/numeric/3", "a numeric bound must be a number".to_owned()),
            (
                json!([">", 5, "<", 5]),
                "/a/0/numeric",
                "a numeric range's lower bound must be less than its upper bound".to_owned(),
            ),
            (
                json!([">=", 5, "<=", 1]),
                "/a/0/numeric",
                "a numeric range's lower bound must be less than its upper bound".to_owned(),
            ),
            (
                json!([">", 9_007_199_254_740_993u64]),
                "/a/0/numeric/1",
                "numeric compares numbers as doubles, and 9007199254740993 cannot be held exactly in one".to_owned(),
            ),
        ];
        for (operand, pointer, message) in rows {
            assert_eq!(refused(&json!({"a": [{"numeric": operand}]})), one(pointer, &message), "{operand}");
        }
    }

    #[test]
    fn cidr_takes_an_address_and_a_prefix_length_short_of_a_single_address() {
        let rows = [
            (json!(10), "cidr takes a string such as \"10.0.0.0/24\""),
            (json!("10.0.0.0"), "'10.0.0.0' is not a CIDR block: write an address, '/' and a prefix length"),
            (json!("10.0.0/8"), "'10.0.0' is not an IPv4 or IPv6 address"),
            (json!("10.0.0.0/32"), "the prefix length of '10.0.0.0/32' must be a whole number from 0 to 31"),
            (json!("10.0.0.0/-1"), "the prefix length of '10.0.0.0/-1' must be a whole number from 0 to 31"),
            (json!("10.0.0.0/8/8"), "the prefix length of '10.0.0.0/8/8' must be a whole number from 0 to 31"),
            (json!("::/128"), "the prefix length of '::/128' must be a whole number from 0 to 127"),
        ];
        for (operand, message) in rows {
            assert_eq!(refused(&json!({"a": [{"cidr": operand}]})), one("/a/0/cidr", message), "{operand}");
        }
    }

    #[test]
    fn anything_but_takes_strings_or_numbers_or_one_string_form() {
        let at = "/a/0/anything-but";
        let list = "anything-but takes a non-empty list of strings only or of numbers only";
        let object = "anything-but takes one of prefix, suffix, equals-ignore-case or wildcard when given an object";
        let strings = |form: &str| format!("anything-but {form} takes a string or a non-empty list of strings");
        let rows = [
            (
                json!(null),
                at.to_owned(),
                "anything-but takes a string, a number, a list of either, or an object".to_owned(),
            ),
            (
                json!(true),
                at.to_owned(),
                "anything-but takes a string, a number, a list of either, or an object".to_owned(),
            ),
            (json!([]), at.to_owned(), list.to_owned()),
            (json!(["a", 1]), at.to_owned(), list.to_owned()),
            (json!([null]), at.to_owned(), list.to_owned()),
            (
                json!([1, 9_007_199_254_740_993u64]),
                format!("{at}/1"),
                "anything-but compares numbers as doubles, and 9007199254740993 cannot be held exactly in one"
                    .to_owned(),
            ),
            (json!({}), at.to_owned(), object.to_owned()),
            (json!({"prefix": "a", "suffix": "b"}), at.to_owned(), object.to_owned()),
            (json!({"prefix": ""}), format!("{at}/prefix"), "anything-but prefix cannot be empty".to_owned()),
            (json!({"suffix": ["x", ""]}), format!("{at}/suffix"), "anything-but suffix cannot be empty".to_owned()),
            (json!({"prefix": 5}), format!("{at}/prefix"), strings("prefix")),
            (json!({"prefix": []}), format!("{at}/prefix"), strings("prefix")),
            (json!({"equals-ignore-case": [1]}), format!("{at}/equals-ignore-case"), strings("equals-ignore-case")),
            (
                json!({"numeric": [">", 1]}),
                format!("{at}/numeric"),
                "'numeric' cannot be used in anything-but (use prefix, suffix, equals-ignore-case or wildcard)"
                    .to_owned(),
            ),
            (
                json!({"wildcard": ["ok*", "bad**"]}),
                format!("{at}/wildcard"),
                "wildcard cannot have consecutive '*' (at position 3)".to_owned(),
            ),
        ];
        for (operand, pointer, message) in rows {
            assert_eq!(refused(&json!({"a": [{"anything-but": operand}]})), one(&pointer, &message), "{operand}");
        }
    }

    #[test]
    fn or_takes_at_least_two_non_empty_objects() {
        let shape = "$or takes an array of at least two objects";
        assert_eq!(refused(&json!({"$or": {"a": ["x"]}})), one("/$or", shape));
        assert_eq!(refused(&json!({"$or": []})), one("/$or", shape));
        assert_eq!(refused(&json!({"$or": [{"a": ["x"]}]})), one("/$or", shape));
        assert_eq!(
            refused(&json!({"$or": [{"a": ["x"]}, "b"]})),
            one("/$or/1", "each alternative in $or must be an object")
        );
        assert_eq!(
            refused(&json!({"$or": [{"a": ["x"]}, {}]})),
            one("/$or/1", "an object in a pattern must name at least one field")
        );
    }

    #[test]
    fn operator_names_cannot_name_fields_inside_or() {
        assert_eq!(
            refused(&json!({"$or": [{"prefix": ["x"]}, {"a": ["y"]}]})),
            one("/$or/0/prefix", "'prefix' is reserved and cannot name a field inside $or")
        );
        assert_eq!(
            refused(&json!({"$or": [{"a": {"numeric": ["x"]}}, {"b": ["y"]}]})),
            one("/$or/0/a/numeric", "'numeric' is reserved and cannot name a field inside $or")
        );
    }

    #[test]
    fn a_field_is_named_either_outside_or_inside_or_not_both() {
        let message = "'a' is named both outside and inside $or; name it in one place, such as in each alternative";
        assert_eq!(refused(&json!({"a": ["x"], "$or": [{"a": ["y"]}, {"b": ["z"]}]})), one("/$or/0/a", message));
        assert_eq!(
            refused(&json!({"a": {"p": [1]}, "$or": [{"a": {"q": [1]}}, {"b": [1]}]})),
            one("/$or/0/a", message)
        );
        assert_eq!(
            refused(&json!({"a": ["x"], "$or": [{"$or": [{"a": ["y"]}, {"b": [1]}]}, {"c": [1]}]})),
            one("/$or/0/$or/0/a", message)
        );
        // Alternatives may share fields, and a nested object is a different document object.
        assert!(EventPattern::parse(&json!({"$or": [{"a": ["x"]}, {"a": ["y"]}]})).is_ok());
        assert!(EventPattern::parse(&json!({"a": ["x"], "d": {"$or": [{"a": ["y"]}, {"b": [1]}]}})).is_ok());
    }

    #[test]
    fn pointers_escape_slashes_and_tildes_in_keys() {
        assert_eq!(
            refused(&json!({"a/b": {"c~d": 5}})),
            one("/a~1b/c~0d", "a pattern's leaf must be an array of values or operators")
        );
    }

    #[test]
    fn every_problem_is_listed_with_its_pointer() {
        let found = refused(&json!({
            "a": 5,
            "b": [],
            "c": [{"nope": 1}, {"numeric": [">", "x"]}],
            "$or": [{"d": ["x"]}]
        }));
        let expected = vec![
            ("/$or".to_owned(), "$or takes an array of at least two objects".to_owned()),
            ("/a".to_owned(), "a pattern's leaf must be an array of values or operators".to_owned()),
            ("/b".to_owned(), "a pattern's leaf must list at least one value or operator".to_owned()),
            ("/c/0/nope".to_owned(), format!("'nope' is not an event pattern operator (use one of: {OPERATORS})")),
            ("/c/1/numeric/1".to_owned(), "a numeric bound must be a number".to_owned()),
        ];
        assert_eq!(found, expected);
    }

    // --- Limits -----------------------------------------------------------------------------

    #[test]
    fn a_pattern_longer_than_eventbridges_limit_is_refused_whole() {
        // `{"f":["` and `"]}` are 10 characters; non-ASCII characters count once each.
        let at_limit = json!({"f": ["é".repeat(MAX_PATTERN_CHARS - 10)]});
        assert!(EventPattern::parse(&at_limit).is_ok());
        let over = json!({"f": ["é".repeat(MAX_PATTERN_CHARS - 9)], "g": 5});
        assert_eq!(refused(&over), one("", "an event pattern may be at most 4096 characters of JSON"));
    }

    #[test]
    fn objects_nested_beyond_the_depth_limit_are_refused() {
        let nested = |levels: usize| (0..levels).fold(json!({"x": [1]}), |inner, _| json!({ "a": inner }));
        let deepest = compile(&nested(MAX_DEPTH - 1));
        let mut document = json!({"x": 1});
        for _ in 0..MAX_DEPTH - 1 {
            document = json!({ "a": document });
        }
        assert!(deepest.matches(&document));
        let pointer = "/a".repeat(MAX_DEPTH);
        assert_eq!(refused(&nested(MAX_DEPTH)), one(&pointer, "a pattern may nest objects at most 32 deep"));
    }

    #[test]
    fn or_combinations_beyond_eventbridges_limit_are_refused() {
        let or_of = |n: usize| json!({ "$or": (0..n).map(|i| json!({ "x": [i] })).collect::<Vec<_>>() });
        let at_limit = json!({"a": or_of(10), "b": or_of(10), "c": or_of(10)});
        assert_eq!(compile(&at_limit).root.combinations(), 1000);
        let over = json!({"a": or_of(11), "b": or_of(10), "c": or_of(10)});
        assert_eq!(
            refused(&over),
            one("", "the pattern's $or lists expand to 1100 combinations; at most 1000 are allowed")
        );
        // Nested alternatives add up within their $or: 2 + 3 branches.
        let nested = json!({"$or": [{"$or": [{"a": [1]}, {"b": [1]}]}, {"$or": [{"c": [1]}, {"d": [1]}, {"e": [1]}]}]});
        assert_eq!(compile(&nested).root.combinations(), 5);
    }

    // --- Serde, equality, schema --------------------------------------------------------------

    #[test]
    fn a_pattern_serializes_as_the_json_it_was_given_and_deserializes_by_validating() {
        let source = json!({"s3": {"bucket": {"name": ["uploads"]}, "object": {"key": [{"prefix": "images/"}]}}});
        let pattern: EventPattern = serde_json::from_value(source.clone()).unwrap();
        assert_eq!(serde_json::to_value(&pattern).unwrap(), source);
        assert_eq!(pattern, compile(&source));
        assert_eq!(pattern.as_value(), &source);
        assert_ne!(pattern, compile(&json!({"s3": {"bucket": {"name": ["other"]}}})));

        let error = serde_json::from_value::<EventPattern>(json!({"a": 5, "b": []})).unwrap_err().to_string();
        assert_eq!(
            error,
            "invalid event pattern: /a: a pattern's leaf must be an array of values or operators; \
             /b: a pattern's leaf must list at least one value or operator"
        );
    }

    #[test]
    fn the_openapi_schema_is_an_object_named_event_pattern() {
        use utoipa::{PartialSchema, ToSchema};
        assert_eq!(EventPattern::name(), "EventPattern");
        let schema = serde_json::to_value(EventPattern::schema()).unwrap();
        assert_eq!(schema["type"], "object");
    }
}
