//! Small value types that can only hold valid values: a handler that has one never re-checks it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::ToSchema;

use crate::error::Violation;

/// User-chosen names: 1 to 128 of `[A-Za-z0-9._-]`, starting with a letter or digit, checked in
/// one place so that no handler ever holds an invalid one.
macro_rules! user_name {
    ($name:ident, $what:literal, $example:literal, $doc:literal) => {
        #[doc = $doc]
        // `Arc<str>`: a trigger copies its event's name into every delivery, and a clone of
        // this is a reference count, not an allocation.
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, ToSchema)]
        #[serde(try_from = "String")]
        #[schema(value_type = String, example = $example, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
        pub struct $name(Arc<str>);

        impl $name {
            pub const MAX_LEN: usize = 128;

            pub fn parse(raw: &str) -> Result<Self, Violation> {
                let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
                let starts_well = raw.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
                if raw.is_empty() || raw.len() > Self::MAX_LEN || !starts_well || !raw.chars().all(valid_char) {
                    return Err(Violation::new(
                        "",
                        format!(
                            "'{}' is not a valid {}: use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit",
                            truncate_for_message(raw),
                            $what
                        ),
                    ));
                }
                Ok(Self(raw.into()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw).map_err(|v| v.message)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> Self {
                name.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

user_name!(
    EventName,
    "event name",
    "orders.created",
    "An event's name (its topic): 1 to 128 of `[A-Za-z0-9._-]`, starting with a letter or digit."
);
user_name!(
    SourceName,
    "source name",
    "uploads",
    "A source's name (which native AWS records trigger which event): the same rules as an event name."
);

user_name!(SchemaName, "schema name", "person", "A registered schema's name: the same rules as an event name.");

/// The URI a registered schema version is known by, in the registry's normal form
/// (`formats::normalize_uri`): what a `$ref` and a resource envelope's `resource.schema` name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "https://example.com/schemas/person/v1.json")]
pub struct SchemaUri(String);

impl SchemaUri {
    /// Longest URI, in bytes (a DynamoDB key holds it with a short prefix).
    pub const MAX_LEN: usize = 1024;

    /// Reads any URI a client or a schema document gives, into the normal form.
    pub fn parse(raw: &str) -> Result<Self, Violation> {
        let too_long = || Violation::new("", format!("a schema URI is 1 to {} bytes", Self::MAX_LEN));
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(too_long());
        }
        // The registry's own scheme, under which paths such as /schemas/{name}/versions/{n} are
        // resolved: a client's URI in it would be read as one of those paths.
        if raw.get(..12).is_some_and(|s| s.eq_ignore_ascii_case("json-schema:")) {
            return Err(Violation::new("", "the json-schema: scheme is the registry's own; use another"));
        }
        let normal = crate::formats::normalize_uri(raw)
            .map_err(|why| Violation::new("", format!("'{}' is not a schema URI: {why}", truncate_for_message(raw))))?;
        if normal.is_empty() {
            return Err(Violation::new("", format!("'{}' names no document", truncate_for_message(raw))));
        }
        if normal.len() > Self::MAX_LEN {
            return Err(too_long());
        }
        Ok(Self(normal))
    }

    /// The URI of a version registered with none of its own: `/schemas/{name}/versions/{n}`,
    /// a path from the registry's root.
    pub fn default_for(name: &SchemaName, version: u32) -> Self {
        Self(format!("/schemas/{name}/versions/{version}"))
    }

    /// Whether it has a scheme (`https:`, `urn:`): only those may be given for a version, so that
    /// no given URI takes another version's default. (A network-path reference, `//host/x`, has
    /// none: read from the registry's root it loses its `//`.)
    pub fn is_absolute(&self) -> bool {
        let scheme = self.0.split_once(':').map(|(scheme, _)| scheme).unwrap_or_default();
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SchemaUri {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw).map_err(|v| v.message)
    }
}

impl From<SchemaUri> for String {
    fn from(uri: SchemaUri) -> Self {
        uri.0
    }
}

impl fmt::Display for SchemaUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Ids are a kind prefix plus a ULID, so they sort by creation time and say what they name.
macro_rules! prefixed_id {
    ($name:ident, $prefix:literal, $what:literal, $example:literal, $pattern:literal) => {
        #[doc = concat!("The id of ", $what, ": `", $prefix, "` followed by a ULID (26 Crockford base32 characters; issued in upper case, read in either).")]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String, example = $example, pattern = $pattern)]
        pub struct $name(Ulid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn from_ulid(ulid: Ulid) -> Self {
                Self(ulid)
            }

            pub fn parse(raw: &str) -> Result<Self, Violation> {
                raw.strip_prefix($prefix).and_then(|rest| Ulid::from_string(rest).ok()).map(Self).ok_or_else(|| {
                    Violation::new(
                        "",
                        format!(
                            "'{}' is not a valid {}: expected '{}' followed by a 26-character ULID",
                            truncate_for_message(raw),
                            $what,
                            $prefix
                        ),
                    )
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        impl FromStr for $name {
            type Err = Violation;
            fn from_str(raw: &str) -> Result<Self, Self::Err> {
                Self::parse(raw)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw).map_err(|v| v.message)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.to_string()
            }
        }
    };
}

// The patterns are what `Ulid::from_string` reads: 26 of Crockford's alphabet, in either case.
prefixed_id!(
    SubscriptionId,
    "sub_",
    "subscription id",
    "sub_01JDQ3V6J9K2M4N5P6Q7R8S9T0",
    "^sub_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$"
);
prefixed_id!(
    EventId,
    "evt_",
    "event id",
    "evt_01JDQ3V6J9K2M4N5P6Q7R8S9T0",
    "^evt_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$"
);

/// The Lambda function a subscription runs: a function name (1 to 64 of `[A-Za-z0-9_-]`),
/// `name:qualifier` (an alias or version: `$LATEST` or 1 to 128 of `[A-Za-z0-9_-]`), a function
/// ARN `arn:aws…:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`, or a partial ARN
/// `ACCOUNT:function:NAME[:QUALIFIER]`: the forms Lambda's Invoke accepts.
// `Arc<str>`, as the names above: every delivery of a subscription carries its function id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize, ToSchema)]
#[serde(try_from = "String")]
// The pattern is `locate`: a bare `arn:` prefix always means an ARN, never a function called
// "arn" with a qualifier, and a name may not be followed by a qualifier where Lambda would read
// the name as an account or a region (or take `function:` for a prefix).
#[schema(
    value_type = String,
    example = "example-subscriber",
    pattern = r"^(?:(?!arn:|[0-9]{12}:|function:|[a-z]{2}(?:-[a-z]+)+-[0-9]+:)[A-Za-z0-9_-]{1,64}(?::(?:\$LATEST|[A-Za-z0-9_-]{1,128}))?|arn:aws[a-z-]*:lambda:[A-Za-z0-9-]+:[0-9]{12}:function:[A-Za-z0-9_-]{1,64}(?::(?:\$LATEST|[A-Za-z0-9_-]{1,128}))?|[0-9]{12}:function:[A-Za-z0-9_-]{1,64}(?::(?:\$LATEST|[A-Za-z0-9_-]{1,128}))?)$"
)]
pub struct FunctionId(Arc<str>);

/// Where a function is, as far as its id says; what it leaves out is resolved by Lambda in the
/// caller's own partition, region and account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionLocation<'a> {
    pub partition: Option<&'a str>,
    pub region: Option<&'a str>,
    pub account: Option<&'a str>,
    /// The bare function name, without qualifier.
    pub name: &'a str,
}

impl FunctionId {
    pub fn parse(raw: &str) -> Result<Self, Violation> {
        if locate(raw).is_some() {
            Ok(Self(raw.into()))
        } else {
            Err(Violation::new(
                "",
                format!(
                    "'{}' is not a Lambda function: use a function name (1 to 64 of [A-Za-z0-9_-]), name:alias, name:version, a function ARN or a partial ARN (ACCOUNT:function:NAME)",
                    truncate_for_message(raw)
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The bare function name, without ARN parts or qualifier.
    pub fn function_name(&self) -> &str {
        self.location().name
    }

    /// Partition, region and account as the id names them, and the bare name.
    pub fn location(&self) -> FunctionLocation<'_> {
        locate(&self.0).expect("a FunctionId is validated on construction")
    }
}

fn is_function_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_qualifier(s: &str) -> bool {
    s == "$LATEST"
        || ((1..=128).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.chars().all(|c| c.is_ascii_digit())
}

/// Whether `s` is shaped like a region (`us-east-1`, `us-gov-west-1`, `cn-north-1`).
fn is_region_shaped(s: &str) -> bool {
    let mut parts = s.split('-');
    let area_ok = parts.next().is_some_and(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_lowercase()));
    let rest: Vec<&str> = parts.collect();
    let digit_ok = rest.last().is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let words_ok = rest.len() >= 2
        && rest[..rest.len() - 1].iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()));
    area_ok && digit_ok && words_ok
}

/// The location of `raw` if it is one of the forms Lambda's Invoke accepts, read the way Lambda
/// reads it. Forms Lambda would read differently from how they look are refused rather than
/// guessed at: Lambda takes a leading `123456789012:` for an account, a leading region for a
/// region and a leading `function:` for nothing, so `999999999999:fn` runs `fn` in account
/// 999999999999, not a function "999999999999" with the alias "fn".
fn locate(raw: &str) -> Option<FunctionLocation<'_>> {
    let parts: Vec<&str> = raw.split(':').collect();
    let (location, qualifier) = match parts[..] {
        // arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
        ["arn", partition, "lambda", region, account, "function", name, ref qualifier @ ..] => {
            let partition_ok =
                partition.starts_with("aws") && partition.chars().all(|c| c.is_ascii_lowercase() || c == '-');
            let region_ok = !region.is_empty() && region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !(partition_ok && region_ok && is_account(account)) {
                return None;
            }
            let at =
                FunctionLocation { partition: Some(partition), region: Some(region), account: Some(account), name };
            (at, qualifier)
        }
        // `arn:` always starts an ARN, never a function called "arn" with a qualifier.
        ["arn", _, ..] => return None,
        // ACCOUNT:function:NAME[:QUALIFIER]
        [account, "function", name, ref qualifier @ ..] if is_account(account) => {
            (FunctionLocation { partition: None, region: None, account: Some(account), name }, qualifier)
        }
        // ACCOUNT:..., REGION:... or function:... in any other arrangement: Lambda would find
        // an account, a region or nothing where a name seems to be.
        [first, _, ..] if is_account(first) || is_region_shaped(first) || first == "function" => return None,
        [name, ref qualifier @ ..] => {
            (FunctionLocation { partition: None, region: None, account: None, name }, qualifier)
        }
        [] => return None,
    };
    let qualifier_ok = match qualifier {
        [] => true,
        [q] => is_qualifier(q),
        _ => false,
    };
    (is_function_name(location.name) && qualifier_ok).then_some(location)
}

impl TryFrom<String> for FunctionId {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw).map_err(|v| v.message)
    }
}

impl From<FunctionId> for String {
    fn from(id: FunctionId) -> Self {
        id.0.to_string()
    }
}

impl Serialize for FunctionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl fmt::Display for FunctionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A payload mime type such as `application/json` or `text/csv`, at most 255 characters. It is
/// read in any case and kept in lower case; parameters (`; charset=utf-8`) are accepted and dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
// The pattern is the grammar the `mime` crate parses (tokens of RFC 9110 §5.6.2, parameters
// with token or quoted values); quoted values are stated in ASCII, which is what clients send.
#[schema(
    value_type = String,
    example = "application/json",
    pattern = r##"^[-!#$%&'*+.^_`|~0-9A-Za-z]+/(?:[-!#$%&'*+.^_`|~0-9A-Za-z]+(?:;(?: *[-!#$%&'*+.^_`|~0-9A-Za-z]+=(?:[-!#$%&'*+.^_`|~0-9A-Za-z]+;|"[ -~][ !#-~]*" *;))* *(?:[-!#$%&'*+.^_`|~0-9A-Za-z]+=(?:[-!#$%&'*+.^_`|~0-9A-Za-z]*|"[ -~][ !#-~]*" *))?)?)?$"##
)]
pub struct DataType(String);

impl DataType {
    pub fn json() -> Self {
        Self("application/json".to_owned())
    }

    pub fn parse(raw: &str) -> Result<Self, Violation> {
        match raw.parse::<mime::Mime>() {
            Ok(m) if raw.len() <= 255 => Ok(Self(m.essence_str().to_owned())),
            _ => Err(Violation::new(
                "",
                format!("'{}' is not a mime type like 'application/json'", truncate_for_message(raw)),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// JSON payloads are parsed, validated against the schema and embedded as JSON in the
    /// invocation payload; any other type is carried as opaque bytes.
    pub fn is_json(&self) -> bool {
        self.0 == "application/json" || self.0.ends_with("+json")
    }

    /// Whether a request's `Content-Type` header carries this type (parameters like charset ignored).
    pub fn matches_content_type(&self, content_type: &str) -> bool {
        content_type.parse::<mime::Mime>().is_ok_and(|m| m.essence_str() == self.0)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Default for DataType {
    fn default() -> Self {
        Self::json()
    }
}

impl TryFrom<String> for DataType {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw).map_err(|v| v.message)
    }
}

impl From<DataType> for String {
    fn from(t: DataType) -> Self {
        t.0
    }
}

/// An optimistic-concurrency version: 1 on create, +1 on every replace; served as the `ETag`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct Version(pub u64);

impl Version {
    pub const FIRST: Version = Version(1);

    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An idempotency key: a client's `Idempotency-Key` (1 to 255 visible ASCII characters), or
/// the key the ingest makes of a native record's id (`src:<source>:<digest>`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// What starts the keys of native records; a client's key may not, so that no request can
    /// take a record's key before the record comes.
    pub const NATIVE_PREFIX: &'static str = "src:";
    /// What starts the keys of CloudEvents (`source` + `id`); a client's key may not either.
    pub const CLOUD_EVENT_PREFIX: &'static str = "ce:";
    /// How long a client's key answers with its first trigger.
    pub const CLIENT_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);
    /// How long a native record's key does: as long as AWS or an operator may deliver the record
    /// again (14 days in a source queue, the same in its dead-letter queue or the ingest one).
    pub const NATIVE_WINDOW: std::time::Duration = std::time::Duration::from_secs(14 * 24 * 60 * 60);

    /// A client's key.
    pub fn parse(raw: &str) -> Result<Self, Violation> {
        if raw.starts_with(Self::NATIVE_PREFIX) {
            return Err(Violation::new(
                "",
                "an Idempotency-Key may not start with 'src:': those are the keys of native records",
            ));
        }
        if raw.starts_with(Self::CLOUD_EVENT_PREFIX) {
            return Err(Violation::new(
                "",
                "an Idempotency-Key may not start with 'ce:': those are the keys of CloudEvents",
            ));
        }
        Self::checked(raw)
            .ok_or_else(|| Violation::new("", "Idempotency-Key must be 1 to 255 visible ASCII characters"))
    }

    /// The key of a native record matched by `source`, named by `digest` (hex).
    pub fn native(source: &SourceName, digest: &str) -> Self {
        Self::checked(&format!("{}{source}:{digest}", Self::NATIVE_PREFIX))
            .expect("a source name and a hex digest are at most 197 visible ASCII characters")
    }

    /// The key of a CloudEvent: its `source` and `id`, which the specification makes producers
    /// keep unique, so the same event sent twice is one trigger.
    pub fn cloud_event(source: &str, id: &str) -> Self {
        let digest = crate::digest::sha256_hex(&[source.as_bytes(), b"\0", id.as_bytes()]);
        Self::checked(&format!("{}{digest}", Self::CLOUD_EVENT_PREFIX)).expect("a hex digest is visible ASCII")
    }

    fn checked(raw: &str) -> Option<Self> {
        ((1..=255).contains(&raw.len()) && raw.chars().all(|c| c.is_ascii_graphic())).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_native(&self) -> bool {
        self.0.starts_with(Self::NATIVE_PREFIX)
    }

    /// How long this key answers with its first trigger.
    pub fn window(&self) -> std::time::Duration {
        if self.is_native() {
            Self::NATIVE_WINDOW
        } else {
            Self::CLIENT_WINDOW
        }
    }
}

/// Keeps a client-supplied value from flooding an error message.
fn truncate_for_message(raw: &str) -> String {
    const MAX: usize = 80;
    if raw.chars().count() <= MAX {
        raw.to_owned()
    } else {
        format!("{}…", raw.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_accept_dotted_hierarchies_and_reject_everything_else() {
        for ok in ["orders.created", "a", "A-1_b.c", &"x".repeat(128)] {
            assert!(EventName::parse(ok).is_ok(), "{ok} should be valid");
        }
        for bad in ["", ".orders", "-x", "orders/created", "ordérs", "a b", &"x".repeat(129)] {
            assert!(EventName::parse(bad).is_err(), "{bad} should be invalid");
        }
    }

    #[test]
    fn function_ids_accept_names_qualifiers_and_arns_only() {
        for ok in [
            "example-subscriber",
            "my_fn:prod",
            "my_fn:$LATEST",
            "my_fn:42",
            "arn:aws:lambda:eu-west-1:123456789012:function:my-fn",
            "arn:aws-cn:lambda:cn-north-1:123456789012:function:my-fn:live",
            "123456789012:function:my-fn",
            "123456789012:function:my-fn:prod",
        ] {
            assert!(FunctionId::parse(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "",
            "has space",
            "a:b:c",
            "arn:aws:s3:::bucket",
            "arn:aws:lambda:eu-west-1:123:function:my-fn",
            "arn:aws:lambda:eu-west-1:123456789012:function:",
            "arn:aws:lambda:eu-west-1:123456789012:function:a:b:c",
            "123:function:my-fn",
            "arn:prod",
            "arn:aws:s3:us-east-1:123456789012:function:x",
            // Lambda reads these as an account, a region or a bare `function:` prefix:
            "999999999999:example-evil",
            "123456789012:function",
            "us-west-2:example-fn",
            "us-gov-west-1:example-fn",
            "function:example-fn",
            "123456789012:function:",
            &"f".repeat(65),
            "http://evil",
        ] {
            assert!(FunctionId::parse(bad).is_err(), "{bad} should be invalid");
        }
    }

    #[test]
    fn function_ids_say_where_the_function_is() {
        let arn = FunctionId::parse("arn:aws:lambda:eu-west-1:123456789012:function:orders-ship:live").unwrap();
        assert_eq!(
            arn.location(),
            FunctionLocation {
                partition: Some("aws"),
                region: Some("eu-west-1"),
                account: Some("123456789012"),
                name: "orders-ship"
            }
        );
        let partial = FunctionId::parse("123456789012:function:orders-ship").unwrap();
        assert_eq!(partial.location().account, Some("123456789012"));
        assert_eq!(partial.location().region, None);
        let bare = FunctionId::parse("orders-ship:3").unwrap();
        assert_eq!(
            bare.location(),
            FunctionLocation { partition: None, region: None, account: None, name: "orders-ship" }
        );
    }

    #[test]
    fn only_a_uri_with_a_scheme_is_absolute_and_the_registrys_own_scheme_is_refused() {
        for absolute in ["https://example.com/a.json", "urn:example:a", "HTTPS://Example.com/a"] {
            assert!(SchemaUri::parse(absolute).unwrap().is_absolute(), "{absolute}");
        }
        for relative in ["/schemas/a/versions/1", "a.json", "//example.com/x"] {
            let parsed = SchemaUri::parse(relative);
            assert!(parsed.as_ref().map_or(true, |uri| !uri.is_absolute()), "{relative}: {parsed:?}");
        }
        assert!(SchemaUri::parse("//").is_err(), "names nothing");
        assert!(SchemaUri::parse("json-schema:///schemas/a/versions/1").is_err());
        assert!(SchemaUri::parse("JSON-Schema://h/x").is_err());
        assert!(SchemaUri::parse("urn:a#frag").is_err());
    }

    #[test]
    fn a_clients_key_may_not_take_the_form_of_a_native_records() {
        assert!(IdempotencyKey::parse("src:uploads:abc").is_err());
        assert!(IdempotencyKey::parse("order-7").unwrap().window() < IdempotencyKey::NATIVE_WINDOW);
        let native = IdempotencyKey::native(&SourceName::parse("uploads").unwrap(), "ab12");
        assert_eq!((native.as_str(), native.window()), ("src:uploads:ab12", IdempotencyKey::NATIVE_WINDOW));
    }

    #[test]
    fn ids_round_trip_and_reject_wrong_prefixes() {
        let id = SubscriptionId::from_ulid(Ulid::new());
        assert_eq!(SubscriptionId::parse(&id.to_string()).unwrap(), id);
        assert!(SubscriptionId::parse(&id.to_string().replace("sub_", "evt_")).is_err());
        assert!(EventId::parse("evt_nope").is_err());
    }

    #[test]
    fn data_types_know_json_and_ignore_content_type_parameters() {
        let json = DataType::parse("application/json").unwrap();
        assert!(json.is_json());
        assert!(json.matches_content_type("application/json; charset=utf-8"));
        assert!(!json.matches_content_type("text/plain"));
        assert!(DataType::parse("application/cloudevents+json").unwrap().is_json());
        assert!(!DataType::parse("text/csv").unwrap().is_json());
        assert!(DataType::parse("not a mime").is_err());
    }
}
