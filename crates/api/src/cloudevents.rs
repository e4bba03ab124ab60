//! The CloudEvents HTTP protocol binding (1.0.2), inbound: which mode a request is in, and the
//! CloudEvents it carries. Structured mode is the JSON format as the body
//! (`application/cloudevents+json`); binary mode puts the attributes in `ce-*` headers
//! (percent-encoded where they are not printable ASCII) and the data in the body, its
//! `Content-Type` being `datacontenttype`; batch mode is a JSON array of structured events
//! (`application/cloudevents-batch+json`). The JSON format itself is the core's
//! (`gateway_core::cloudevent`).

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use gateway_core::cloudevent::{self, CloudEvent, SPEC_VERSION};
use gateway_core::{Error, Violation};
use serde_json::Value;

pub const STRUCTURED: &str = "application/cloudevents+json";
pub const BATCH: &str = "application/cloudevents-batch+json";

/// What a request carries.
#[derive(Debug)]
pub enum Incoming {
    /// No CloudEvent: a plain payload.
    Plain,
    One(CloudEvent),
    Batch(Vec<CloudEvent>),
}

/// The request's media type without parameters, lower-cased.
fn essence(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(axum::http::header::CONTENT_TYPE)?.to_str().ok()?;
    Some(raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// Reads a request as the binding says. Structured and batch problems are the body's (422, with
/// pointers into it; a batch member's under `/<index>`); binary ones the headers' (400).
pub fn read(headers: &HeaderMap, body: &[u8]) -> Result<Incoming, Error> {
    match essence(headers).as_deref() {
        Some(STRUCTURED) => {
            let text = json_text(body)?;
            CloudEvent::from_json_text(text).map(Incoming::One).map_err(Error::invalid_body)
        }
        Some(BATCH) => {
            let text = json_text(body)?;
            let Ok(members) = serde_json::from_str::<Vec<&serde_json::value::RawValue>>(text) else {
                return Err(Error::invalid_body(vec![Violation::new("", "a batch is a JSON array of CloudEvents")]));
            };
            if members.len() > MAX_BATCH {
                return Err(Error::invalid_body(vec![Violation::new(
                    "",
                    format!("a batch holds at most {MAX_BATCH} CloudEvents, not {}", members.len()),
                )]));
            }
            let mut events = Vec::with_capacity(members.len());
            let mut found = Vec::new();
            for (i, member) in members.iter().enumerate() {
                match CloudEvent::from_json_text(member.get()) {
                    Ok(event) => events.push(event),
                    Err(violations) => found.extend(violations.into_iter().map(|v| v.at(&format!("/{i}")))),
                }
            }
            if found.is_empty() {
                Ok(Incoming::Batch(events))
            } else {
                Err(Error::invalid_body(found))
            }
        }
        _ if headers.contains_key("ce-specversion") => binary(headers, body).map(Incoming::One),
        _ => Ok(Incoming::Plain),
    }
}

/// The most CloudEvents one batch may hold: each is a trigger of its own, made one after the
/// other within the request's time.
pub const MAX_BATCH: usize = 100;

/// The body as JSON text: 400 if it is not JSON at all.
fn json_text(body: &[u8]) -> Result<&str, Error> {
    let text = std::str::from_utf8(body).map_err(|e| Error::MalformedPayload(e.to_string()))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| Error::MalformedPayload(e.to_string()))?;
    Ok(text)
}

/// A binary-mode CloudEvent: attributes from the `ce-*` headers, `datacontenttype` from
/// `Content-Type`, the body as data.
fn binary(headers: &HeaderMap, body: &[u8]) -> Result<CloudEvent, Error> {
    let mut found = Vec::new();
    let mut attributes = BTreeMap::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else { continue };
        if headers.get_all(name).iter().count() > 1 {
            if !found.iter().any(|v: &Violation| v.pointer == name.as_str()) {
                found.push(Violation::new(name.as_str(), "is given more than once"));
            }
            continue;
        }
        match percent_decoded(value.as_bytes()) {
            Ok(text) => {
                attributes.insert(attribute.to_owned(), text);
            }
            Err(why) => found.push(Violation::new(name.as_str(), why)),
        }
    }
    let mut take = |name: &str, required: bool, found: &mut Vec<Violation>| match attributes.remove(name) {
        Some(v) if v.is_empty() => {
            found.push(Violation::new(format!("ce-{name}"), "must not be empty"));
            None
        }
        Some(v) => Some(v),
        None if required => {
            found.push(Violation::new(format!("ce-{name}"), "is required"));
            None
        }
        None => None,
    };
    match take("specversion", true, &mut found) {
        Some(v) if v != SPEC_VERSION => found.push(Violation::new(
            "ce-specversion",
            format!("must be \"{SPEC_VERSION}\", the version this gateway reads, not \"{v}\""),
        )),
        _ => {}
    }
    let id = take("id", true, &mut found);
    let source = take("source", true, &mut found);
    let kind = take("type", true, &mut found);
    let data_schema = take("dataschema", false, &mut found);
    if let Some(Err(why)) = data_schema.as_deref().map(cloudevent::check_absolute_uri) {
        found.push(Violation::new("ce-dataschema", why));
    }
    let subject = take("subject", false, &mut found);
    let time = take("time", false, &mut found);
    if let Some(Err(why)) = time.as_deref().map(cloudevent::check_time) {
        found.push(Violation::new("ce-time", why));
    }
    if attributes.remove("datacontenttype").is_some() {
        found.push(Violation::new("ce-datacontenttype", "in binary mode, datacontenttype is the Content-Type header"));
    }
    let mut extensions = BTreeMap::new();
    for (name, value) in attributes {
        if cloudevent::CONTEXT_ATTRIBUTES.contains(&name.as_str()) {
            // `ce-data`, `ce-data_base64`: in binary mode the data is the body.
            found
                .push(Violation::new(format!("ce-{name}"), "is not an attribute of binary mode: the data is the body"));
            continue;
        }
        match cloudevent::check_extension_name(&name) {
            Ok(()) => {
                extensions.insert(name, Value::String(value));
            }
            Err(why) => found.push(Violation::new(format!("ce-{name}"), why)),
        }
    }
    if !found.is_empty() {
        return Err(Error::InvalidInput { part: gateway_core::error::InputPart::Request, violations: found });
    }
    // As a plain trigger reads its Content-Type.
    let data_content_type = crate::extract::content_type(headers).map(str::to_owned);
    Ok(CloudEvent {
        id: id.unwrap_or_default(),
        source: source.unwrap_or_default(),
        kind: kind.unwrap_or_default(),
        data_content_type,
        data_schema,
        subject,
        time,
        extensions,
        data: (!body.is_empty()).then(|| body.to_vec()),
    })
}

/// A `ce-*` header value as the binding says to read it: printable ASCII and spaces as they are,
/// `%XX` decoded, the result UTF-8. Raw bytes outside printable ASCII are refused: a sender
/// must percent-encode them.
pub fn percent_decoded(raw: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hex = raw.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                match hex.and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => out.push(byte),
                    None => return Err("has a '%' not followed by two hex digits".into()),
                }
                i += 3;
            }
            b @ (b' ' | b'\t' | 0x21..=0x7e) => {
                out.push(b);
                i += 1;
            }
            _ => return Err("has bytes outside printable ASCII: percent-encode them (%XX of their UTF-8)".into()),
        }
    }
    String::from_utf8(out).map_err(|_| "percent-decodes to bytes that are not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_bytes(value).unwrap());
        }
        h
    }

    const REQUIRED: [(&str, &[u8]); 4] =
        [("ce-specversion", b"1.0"), ("ce-id", b"1"), ("ce-source", b"/orders"), ("ce-type", b"orders.created")];

    #[test]
    fn binary_mode_reads_headers_percent_decoded_and_the_body_as_data() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("ce-subject", b"caf%C3%A9 1"));
        pairs.push(("ce-tenant", b"acme"));
        pairs.push(("content-type", b"application/json"));
        let Incoming::One(e) = read(&headers(&pairs), br#"{"a":1}"#).unwrap() else { panic!("one event") };
        assert_eq!(e.subject.as_deref(), Some("café 1"));
        assert_eq!(e.extensions["tenant"], Value::from("acme"));
        assert_eq!(
            (e.data_content_type.as_deref(), e.data.as_deref()),
            (Some("application/json"), Some(br#"{"a":1}"#.as_slice()))
        );
    }

    #[test]
    fn binary_mode_names_every_missing_or_malformed_header() {
        let bad =
            headers(&[("ce-specversion", b"0.3"), ("ce-id", b"1"), ("ce-subject", b"%zz"), ("ce-x", b"caf\xc3\xa9")]);
        let Error::InvalidInput { violations, .. } = read(&bad, b"").unwrap_err() else { panic!() };
        let mut pointers: Vec<_> = violations.iter().map(|v| v.pointer.as_str()).collect();
        pointers.sort();
        assert_eq!(pointers, ["ce-source", "ce-specversion", "ce-subject", "ce-type", "ce-x"]);
        assert!(percent_decoded(b"%FF").unwrap_err().contains("UTF-8"));
        assert!(percent_decoded(b"%+A").is_err(), "two hex digits, no sign");
        let mut twice = headers(&REQUIRED);
        twice.append("ce-id", HeaderValue::from_static("2"));
        twice.insert("ce-data", HeaderValue::from_static("x"));
        let Error::InvalidInput { violations, .. } = read(&twice, b"").unwrap_err() else { panic!() };
        let pointers: Vec<_> = violations.iter().map(|v| v.pointer.as_str()).collect();
        assert!(pointers.contains(&"ce-id") && pointers.contains(&"ce-data"), "{pointers:?}");
    }

    #[test]
    fn a_batch_is_checked_whole_with_each_members_index() {
        let h = headers(&[("content-type", b"application/cloudevents-batch+json; charset=utf-8")]);
        let body = br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","source":"/s","type":"t"}]"#;
        let Error::InvalidInput { violations, .. } = read(&h, body).unwrap_err() else { panic!() };
        assert_eq!(violations.iter().map(|v| v.pointer.as_str()).collect::<Vec<_>>(), ["/1/id"]);
        let good = br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"}]"#;
        let Incoming::Batch(events) = read(&h, good).unwrap() else { panic!("a batch") };
        assert_eq!(events.len(), 1);
        assert!(matches!(read(&h, b"{}").unwrap_err(), Error::InvalidInput { .. }));
        let too_many = format!(
            "[{}]",
            vec![r#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#; MAX_BATCH + 1].join(",")
        );
        assert!(matches!(read(&h, too_many.as_bytes()).unwrap_err(), Error::InvalidInput { .. }));
    }

    #[test]
    fn a_plain_request_is_no_cloudevent() {
        assert!(matches!(read(&headers(&[("content-type", b"application/json")]), b"{}").unwrap(), Incoming::Plain));
    }
}
