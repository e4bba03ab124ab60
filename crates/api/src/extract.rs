//! Turning raw request parts into core values, with every refusal as an [`ApiError`].
//!
//! Handlers take bodies as bytes and query strings as rejections-or-values so that no axum
//! default (plain-text 400s, 413s with empty bodies) ever reaches a client.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use gateway_core::{Error, PageRequest, Version, Violation};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::problem::ApiError;

pub fn body_bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge { limit }
        } else {
            ApiError::MalformedBody(rejection.body_text())
        }
    })
}

/// Parses a JSON request body; a wrong field type or value is located by its JSON pointer.
pub fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    json_body_with_objects(headers, body, limit, &[])
}

/// [`json_body`] for a body whose `objects` fields hold structs: serde reads a struct from a
/// JSON array too (`"delivery": ["sync"]` as `{"mode": "sync"}`), so an array there is refused
/// at its pointer, as the document's `"type": "object"` says.
pub fn json_body_with_objects<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
    objects: &[&str],
) -> Result<T, ApiError> {
    if let Some(content_type) = content_type(headers) {
        let is_json = content_type
            .parse::<mime::Mime>()
            .is_ok_and(|m| m.essence_str() == "application/json" || m.suffix().is_some_and(|s| s == "json"));
        if !is_json {
            return Err(ApiError::BodyNotJson(content_type.chars().take(255).collect()));
        }
    }
    let bytes = body_bytes(body, limit)?;
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        // serde reads a struct from a JSON array too (`[null, null]` as a draft of two absent
        // fields); every body this API takes is an object.
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            Ok(_) => Error::invalid_body(vec![Violation::new("", "the body must be a JSON object")]).into(),
            Err(e) => ApiError::MalformedBody(e.to_string()),
        });
    }
    if !objects.is_empty() {
        if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(&bytes) {
            let arrays: Vec<Violation> = objects
                .iter()
                .filter(|name| fields.get(**name).is_some_and(serde_json::Value::is_array))
                .map(|name| Violation::new(format!("/{name}"), "must be an object, not an array"))
                .collect();
            if !arrays.is_empty() {
                return Err(Error::invalid_body(arrays).into());
            }
        }
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let pointer = json_pointer(e.path());
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                Error::invalid_body(vec![Violation::new(pointer, strip_position(&inner))]).into()
            }
            // serde_json reads an enum from anything but a string or an object as a syntax error
            // (`"mode": null` is "expected value"), though the body is well-formed JSON: that is
            // a wrong value at its pointer, not a malformed body.
            serde_json::error::Category::Syntax if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() => {
                Error::invalid_body(vec![Violation::new(pointer, "not a value this field takes")]).into()
            }
            _ => ApiError::MalformedBody(inner.to_string()),
        }
    })
}

pub fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("(not visible ASCII)"))
}

fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.replace('~', "~0").replace('/', "~1")),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .map(|s| format!("/{s}"))
        .collect()
}

/// serde's messages end in "at line 1 column 42", which says nothing once a pointer is given.
fn strip_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message,
    }
}

/// `If-Match: "3"` (or `W/"3"`, or a bare `3`) → version 3; `*` or no header → no condition.
///
/// Exactly the grammar [`IfMatchHeader`] documents. Versions count replaces from 1, so 19 digits
/// hold any version there will ever be, and always fit a `u64`.
pub fn if_match(headers: &HeaderMap) -> Result<Option<Version>, ApiError> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let invalid = || {
        Error::invalid_request(Violation::new("", "If-Match must be an ETag this API returned, such as \"3\", or *"))
    };
    let value = raw.to_str().map_err(|_| invalid())?.trim();
    if value == "*" {
        return Ok(None);
    }
    let digits = match value.strip_prefix("W/").unwrap_or(value).strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"').ok_or_else(invalid)?,
        // A bare number is accepted as the version; a weak tag must be quoted (RFC 9110 §8.8.3).
        None if !value.starts_with("W/") => value,
        None => return Err(invalid().into()),
    };
    if !(1..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid().into());
    }
    digits.parse::<u64>().map(|v| Some(Version(v))).map_err(|_| invalid().into())
}

/// `If-Match`, as [`if_match`] reads it, for the document.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IfMatchHeader {
    /// The `ETag` of the version this change is meant for, as the API returned it (`"3"`; `W/"3"`
    /// and a bare `3` are read the same), or `*` for any version. Another version's is 412.
    #[param(rename = "If-Match", nullable = false, pattern = r#"^(?:\*|(?:W/)?"[0-9]{1,19}"|[0-9]{1,19})$"#)]
    if_match: Option<String>,
}

/// `Idempotency-Key`, as `IdempotencyKey::parse` reads it, for the document.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyKeyHeader {
    /// 1 to 255 visible ASCII characters, not starting with `src:` (the keys the gateway makes
    /// of native records). A retry with the same key and payload returns the first answer, for
    /// 24 hours; the same key with another payload is refused (422).
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        pattern = "^(?!src:)[!-~]{1,255}$",
        min_length = 1,
        max_length = 255
    )]
    idempotency_key: Option<String>,
}

pub fn etag(version: Version) -> String {
    format!("\"{version}\"")
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 100 (default 50).
    #[param(nullable = false, minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page. Only a cursor this API issued for the same list
    /// is valid (400 `invalid-cursor` otherwise): it is opaque, and no pattern can tell which.
    #[param(nullable = false, pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
}

pub fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|rejection| {
        let message = rejection.body_text();
        let message = message.strip_prefix("Failed to deserialize query string: ").unwrap_or(&message).to_owned();
        Error::invalid_request(Violation::new("", format!("invalid query string: {message}"))).into()
    })
}

impl PageQuery {
    pub fn page(self) -> Result<PageRequest, ApiError> {
        Ok(PageRequest::new(self.limit, self.cursor)?)
    }
}

/// A path segment parsed into a core value; a bad one is the client's mistake (400).
pub fn path_value<T>(parse: impl FnOnce(&str) -> Result<T, Violation>, raw: &str) -> Result<T, ApiError> {
    parse(raw).map_err(|v| Error::invalid_request(v).into())
}

/// A path segment parsed into a core value; one that is not even UTF-8 is refused the same way.
pub fn path_param<T>(
    segment: Result<Path<String>, PathRejection>,
    parse: impl FnOnce(&str) -> Result<T, Violation>,
) -> Result<T, ApiError> {
    path_value(parse, &path_segments(segment)?)
}

/// A path's segments as they came, for routes with more than one; a segment that is not even
/// UTF-8 is the client's mistake (400), as a bad value is.
pub fn path_segments<T>(segments: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    segments.map(|Path(raw)| raw).map_err(|rejection| {
        Error::invalid_request(Violation::new("", format!("invalid path: {}", rejection.body_text()))).into()
    })
}

/// A schema version's number in a path: 1 to 4294967295 in decimal digits, without a sign or a
/// leading zero, so that one version has one path. Exactly what the document's integer admits.
pub fn version_number(raw: &str) -> Result<u32, Violation> {
    let canonical = raw.bytes().all(|b| b.is_ascii_digit()) && !raw.starts_with('0');
    match raw.parse::<u32>() {
        Ok(number) if canonical => Ok(number),
        _ => Err(Violation::new(
            "",
            format!(
                "'{}' is not a version number: 1 to {}, in decimal digits without a leading zero",
                raw.chars().take(32).collect::<String>(),
                u32::MAX
            ),
        )),
    }
}

/// The date-times the API takes in a body, as the document's pattern states them: RFC 3339's
/// `date-time` with an offset (`Z` or `±hh:mm`) and without a leap second, in upper case.
pub const DATE_TIME_PATTERN: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9](?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})$";

/// A body's date-time, exactly what [`DATE_TIME_PATTERN`] and the `date-time` format admit
/// together: the shape is checked here (chrono alone also takes a space for the `T`, lower case
/// and leap seconds), the calendar by chrono (no 30 February, no hour 24, no offset of a day).
pub fn date_time(raw: &str) -> Option<DateTime<Utc>> {
    let b = raw.as_bytes();
    let digits = |from: usize, to: usize| b.get(from..to).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let shaped = digits(0, 4)
        && at(4, b'-')
        && digits(5, 7)
        && at(7, b'-')
        && digits(8, 10)
        && at(10, b'T')
        && digits(11, 13)
        && at(13, b':')
        && digits(14, 16)
        && at(16, b':')
        && digits(17, 19)
        && b[17] <= b'5';
    if !shaped {
        return None;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &fraction[n..];
    }
    let offset = match rest {
        [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    };
    if !offset {
        return None;
    }
    DateTime::parse_from_rfc3339(raw).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_accepts_strong_weak_and_bare_etags() {
        let mut h = HeaderMap::new();
        for (raw, want) in
            [("\"3\"", Some(Version(3))), ("W/\"4\"", Some(Version(4))), ("5", Some(Version(5))), ("*", None)]
        {
            h.insert(header::IF_MATCH, raw.parse().unwrap());
            assert_eq!(if_match(&h).unwrap(), want, "{raw}");
        }
        h.insert(header::IF_MATCH, "\"abc\"".parse().unwrap());
        assert!(if_match(&h).is_err());
    }

    #[test]
    fn date_time_reads_rfc_3339_with_an_offset_as_utc_and_nothing_else() {
        let utc = |raw: &str| date_time(raw).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
        for (raw, want) in [
            ("2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z"),
            ("2025-01-01T01:30:00+01:30", "2025-01-01T00:00:00Z"),
            ("2024-12-31T23:00:00-01:00", "2025-01-01T00:00:00Z"),
            ("2025-01-01T00:00:00.5Z", "2025-01-01T00:00:00.500Z"),
            ("2024-02-29T12:00:00Z", "2024-02-29T12:00:00Z"),
        ] {
            assert_eq!(utc(raw).as_deref(), Some(want), "{raw}");
        }
        for raw in [
            "",
            "2025-01-01",
            "2025-01-01T00:00:00",
            "2025-01-01T00:00Z",
            "2025-01-01 00:00:00Z",
            "2025-01-01t00:00:00z",
            "2025-01-01T00:00:00.Z",
            "2025-01-01T00:00:00+0100",
            "2025-01-01T00:00:00+01",
            "2025-01-01T00:00:60Z",
            "2025-01-01T24:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-01-01T00:00:00+24:00",
            "+2025-01-01T00:00:00Z",
            "2025-01-01T00:00:00Z ",
            "２０２５-01-01T00:00:00Z",
        ] {
            assert_eq!(date_time(raw), None, "{raw:?} is refused");
        }
    }

    #[test]
    fn if_match_refuses_what_is_not_an_etag_of_this_api() {
        let mut h = HeaderMap::new();
        for raw in [
            "",
            "\"\"",
            "\"3",
            "3\"",
            "W/3",
            "W/W/\"3\"",
            "\"\"3\"\"",
            "+3",
            "\"+3\"",
            "\"1\", \"2\"",
            "\"*\"",
            "99999999999999999999",
        ] {
            h.insert(header::IF_MATCH, raw.parse().unwrap());
            assert!(if_match(&h).is_err(), "{raw:?} should be refused");
        }
    }
}
