//! CloudEvents 1.0.2: the event itself and its JSON format, in and out. What the HTTP binding
//! adds (structured, binary and batch modes, `ce-*` headers) is the API's (`gateway-api`).
//!
//! In, a CloudEvent is a trigger: its `type` names the gateway event, `data` (or `data_base64`)
//! is the payload, `datacontenttype` its media type, `source` + `id` its idempotency key, and
//! `dataschema`, when given, must name the schema the payload is validated against. What the
//! gateway does not consume (`id`, `source`, `subject`, `time`, extensions) is kept with the
//! trigger as [`Received`] and handed to every subscriber.
//!
//! Out, a subscription in `cloudevents` format receives a structured CloudEvent
//! ([`structured_out`]) instead of the native invocation payload.

use std::collections::BTreeMap;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::Violation;

/// `data_base64` as RFC 4648 has it, padded; trailing bits of the last symbol are not checked
/// (many encoders leave them set), so every string of the base64 alphabet in whole quanta reads.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// The only `specversion` this gateway reads.
pub const SPEC_VERSION: &str = "1.0";

/// The attributes the specification defines, which an extension may not be called.
pub const CONTEXT_ATTRIBUTES: [&str; 10] =
    ["specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time", "data", "data_base64"];

/// The longest extension name accepted: the specification asks producers for at most 20
/// characters, and a receiver may refuse longer ones.
pub const MAX_EXTENSION_NAME: usize = 20;

/// A CloudEvent as it came in: its context attributes, and its data as bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudEvent {
    pub id: String,
    pub source: String,
    /// `type`.
    pub kind: String,
    pub data_content_type: Option<String>,
    pub data_schema: Option<String>,
    pub subject: Option<String>,
    /// As given (RFC 3339, checked).
    pub time: Option<String>,
    /// Extension attributes: strings, booleans and integers, by name.
    pub extensions: BTreeMap<String, Value>,
    /// `data` (JSON text when the content type is JSON), or `data_base64` decoded; none if absent.
    pub data: Option<Vec<u8>>,
}

/// What a trigger keeps of the CloudEvent that made it, for its subscribers: everything the
/// gateway does not consume itself (`type` names the event, `datacontenttype` is the
/// trigger's `dataType`, `dataschema` the schema it was checked against, `data` its payload).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Received {
    pub id: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_schema: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub extensions: BTreeMap<String, Value>,
}

impl CloudEvent {
    /// The part a trigger keeps.
    pub fn received(&self) -> Received {
        Received {
            id: self.id.clone(),
            source: self.source.clone(),
            subject: self.subject.clone(),
            time: self.time.clone(),
            data_schema: self.data_schema.clone(),
            extensions: self.extensions.clone(),
        }
    }

    /// [`Self::from_json`] of a JSON text, keeping JSON `data` byte for byte as it came (a
    /// `Value` would sort its keys and round integers past 64 bits).
    pub fn from_json_text(text: &str) -> Result<Self, Vec<Violation>> {
        let value: Value = serde_json::from_str(text).map_err(|e| vec![Violation::new("", e.to_string())])?;
        let mut event = Self::from_json(&value)?;
        if let Some(raw) = raw_data(text) {
            let json_data =
                event.data_content_type.as_deref().is_none_or(is_json_media_type) || !raw.get().starts_with('"');
            if json_data {
                event.data = Some(raw.get().as_bytes().to_vec());
            }
        }
        Ok(event)
    }

    /// Reads a CloudEvent in the JSON format (one member of a batch, or a structured-mode body),
    /// listing every problem with its pointer.
    pub fn from_json(value: &Value) -> Result<Self, Vec<Violation>> {
        let Some(object) = value.as_object() else {
            return Err(vec![Violation::new("", "a CloudEvent in JSON is an object")]);
        };
        let mut found = Vec::new();
        match object.get("specversion") {
            None | Some(Value::Null) => found.push(Violation::new("/specversion", "is required (\"1.0\")")),
            Some(Value::String(v)) if v == SPEC_VERSION => {}
            Some(other) => found.push(Violation::new(
                "/specversion",
                format!("must be \"{SPEC_VERSION}\", the version this gateway reads, not {other}"),
            )),
        }
        let id = required_string(object, "id", &mut found);
        let source = required_string(object, "source", &mut found);
        let kind = required_string(object, "type", &mut found);
        let data_content_type = optional_string(object, "datacontenttype", &mut found);
        let data_schema = optional_string(object, "dataschema", &mut found);
        if let Some(uri) = &data_schema {
            if let Err(why) = check_absolute_uri(uri) {
                found.push(Violation::new("/dataschema", why));
            }
        }
        let subject = optional_string(object, "subject", &mut found);
        let time = optional_string(object, "time", &mut found);
        if let Some(t) = &time {
            if let Err(why) = check_time(t) {
                found.push(Violation::new("/time", why));
            }
        }
        let mut extensions = BTreeMap::new();
        for (name, value) in object {
            if CONTEXT_ATTRIBUTES.contains(&name.as_str()) {
                continue;
            }
            let pointer = format!("/{}", escape_pointer(name));
            if let Err(why) = check_extension_name(name) {
                found.push(Violation::new(pointer, why));
                continue;
            }
            if value.is_null() {
                continue;
            }
            let value = match value {
                Value::String(_) | Value::Bool(_) => value.clone(),
                // An integer, however written (`3` or `3.0`, as JSON Schema counts integers).
                Value::Number(n) => match n
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && (f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(f))
                {
                    Some(whole) => Value::from(whole as i32),
                    None => {
                        found.push(Violation::new(pointer, "an extension is a string, a boolean or a 32-bit integer"));
                        continue;
                    }
                },
                _ => {
                    found.push(Violation::new(pointer, "an extension is a string, a boolean or a 32-bit integer"));
                    continue;
                }
            };
            extensions.insert(name.clone(), value);
        }
        if object.contains_key("data") && object.contains_key("data_base64") {
            found.push(Violation::new("/data_base64", "a CloudEvent has data or data_base64, not both"));
        }
        let data = match (object.get("data").filter(|v| !v.is_null()), object.get("data_base64")) {
            (Some(_), Some(_)) => None,
            (None, Some(Value::String(b64))) => match BASE64.decode(b64) {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    found.push(Violation::new("/data_base64", format!("is not base64: {e}")));
                    None
                }
            },
            (None, Some(Value::Null) | None) => None,
            (None, Some(_)) => {
                found.push(Violation::new("/data_base64", "must be a base64 string"));
                None
            }
            // JSON data is the value itself; for another type, a string is its text, and any other
            // value is taken as its JSON text (read leniently: the payload is then checked against
            // the event's dataType like any other).
            (Some(Value::String(text)), _) if data_content_type.as_deref().is_some_and(|t| !is_json_media_type(t)) => {
                Some(text.clone().into_bytes())
            }
            (Some(data), _) => Some(data.to_string().into_bytes()),
        };
        if !found.is_empty() {
            return Err(found);
        }
        Ok(Self {
            id: id.unwrap_or_default(),
            source: source.unwrap_or_default(),
            kind: kind.unwrap_or_default(),
            data_content_type,
            data_schema,
            subject,
            time,
            extensions,
            data,
        })
    }
}

/// The `data` member of a JSON object, as it is written; none if absent or null.
fn raw_data(text: &str) -> Option<&serde_json::value::RawValue> {
    #[derive(Deserialize)]
    struct Data<'a> {
        #[serde(borrow, default)]
        data: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_str::<Data<'_>>(text).ok()?.data.filter(|raw| raw.get() != "null")
}

fn required_string(object: &Map<String, Value>, name: &str, found: &mut Vec<Violation>) -> Option<String> {
    match object.get(name) {
        None | Some(Value::Null) => {
            found.push(Violation::new(format!("/{name}"), "is required"));
            None
        }
        Some(_) => optional_string(object, name, found),
    }
}

fn optional_string(object: &Map<String, Value>, name: &str, found: &mut Vec<Violation>) -> Option<String> {
    match object.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => {
            found.push(Violation::new(format!("/{name}"), "must not be empty"));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            found.push(Violation::new(format!("/{name}"), "must be a string"));
            None
        }
    }
}

fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// An extension's name: lower-case ASCII letters and digits (the specification's rule), at most
/// [`MAX_EXTENSION_NAME`] of them.
pub fn check_extension_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(format!(
            "'{}' is not a CloudEvents attribute name: lower-case letters and digits only",
            name.chars().take(40).collect::<String>()
        ));
    }
    if name.len() > MAX_EXTENSION_NAME {
        return Err(format!("an extension name is at most {MAX_EXTENSION_NAME} characters"));
    }
    Ok(())
}

/// `time`: an RFC 3339 timestamp.
pub fn check_time(raw: &str) -> Result<(), String> {
    // RFC 3339 as the API document's pattern has it: `T` and `Z` in capitals, no space.
    if !raw.chars().all(|c| c.is_ascii_digit() || "-:.TZ+".contains(c)) {
        return Err("is not an RFC 3339 timestamp such as 2026-12-02T10:00:00Z".into());
    }
    DateTime::<FixedOffset>::parse_from_rfc3339(raw).map(drop).map_err(|e| format!("is not an RFC 3339 timestamp: {e}"))
}

/// `dataschema`: an absolute URI (a scheme, then a non-empty rest without spaces).
/// What [`check_absolute_uri`] takes, as the API document states it.
pub const ABSOLUTE_URI_PATTERN: &str = r"^[A-Za-z][A-Za-z0-9+.\-]*:[!-~]+$";

pub fn check_absolute_uri(raw: &str) -> Result<(), String> {
    let ok = raw.split_once(':').is_some_and(|(scheme, rest)| {
        scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            && !rest.is_empty()
            && rest.chars().all(|c| c.is_ascii_graphic())
    });
    if ok {
        Ok(())
    } else {
        Err("must be an absolute URI (a scheme, ':', then visible ASCII)".into())
    }
}

/// Whether a media type is JSON (`application/json`, `text/json`, or a `+json` suffix).
pub fn is_json_media_type(raw: &str) -> bool {
    let essence = raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// The gateway's `source` in the CloudEvents it sends: `GATEWAY_CLOUDEVENTS_SOURCE` if set (a
/// non-empty URI-reference without spaces), else `/event-gateway`.
pub fn cloud_events_source(configured: Option<String>) -> Result<String, String> {
    match configured.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) {
        None => Ok(crate::dispatch::DEFAULT_CLOUD_EVENTS_SOURCE.to_owned()),
        Some(s) if s.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Err(format!("'{s}' is not a URI-reference (it has spaces or control characters)"))
        }
        Some(s) => Ok(s),
    }
}

/// What a subscriber in `cloudevents` format receives for one delivery.
pub struct Outgoing<'a> {
    /// The trigger's `eventId`.
    pub id: &'a str,
    /// The gateway's source URI (`GATEWAY_CLOUDEVENTS_SOURCE`, default `/event-gateway`).
    pub source: &'a str,
    /// The event's name.
    pub kind: &'a str,
    /// The trigger's `receivedAt`, RFC 3339.
    pub time: &'a str,
    pub data_content_type: &'a str,
    /// Whether the payload is JSON (the event's `dataType`): then embedded as it is, else as
    /// `data_base64`.
    pub json: bool,
    pub payload: &'a [u8],
    pub subscription_id: &'a str,
    /// The attempt, from 1.
    pub delivery_attempt: u32,
    /// The delivery's series (0 first, one more per redrive).
    pub delivery_generation: u32,
    /// The CloudEvent that made the trigger, if one did.
    pub received: Option<&'a Received>,
}

/// The structured CloudEvent (JSON format) of one delivery. A CloudEvent that made the trigger
/// lends it its `subject` and `dataschema`, its extensions (as they came), and its own `id`,
/// `source` and `time` as the extensions `originid`, `originsource` and `origintime`.
pub fn structured_out(out: &Outgoing<'_>) -> Result<Vec<u8>, String> {
    use serde_json::value::{to_raw_value, RawValue};
    let mut event: BTreeMap<String, Box<RawValue>> = BTreeMap::new();
    let mut put = |name: &str, value: Value| -> Result<(), String> {
        event.insert(name.to_owned(), to_raw_value(&value).map_err(|e| e.to_string())?);
        Ok(())
    };
    if let Some(received) = out.received {
        for (name, value) in &received.extensions {
            put(name, value.clone())?;
        }
        put("originid", received.id.clone().into())?;
        put("originsource", received.source.clone().into())?;
        if let Some(time) = &received.time {
            put("origintime", time.clone().into())?;
        }
        if let Some(subject) = &received.subject {
            put("subject", subject.clone().into())?;
        }
        if let Some(schema) = &received.data_schema {
            put("dataschema", schema.clone().into())?;
        }
    }
    put("specversion", SPEC_VERSION.into())?;
    put("id", out.id.into())?;
    put("source", out.source.into())?;
    put("type", out.kind.into())?;
    put("time", out.time.into())?;
    put("datacontenttype", out.data_content_type.into())?;
    put("subscriptionid", out.subscription_id.into())?;
    put("deliveryattempt", out.delivery_attempt.into())?;
    put("deliverygeneration", out.delivery_generation.into())?;
    if out.json {
        // The payload as it was accepted, byte for byte.
        let text = String::from_utf8(out.payload.to_vec()).map_err(|e| format!("stored payload is not UTF-8: {e}"))?;
        let data = RawValue::from_string(text).map_err(|e| format!("stored payload is not JSON: {e}"))?;
        event.insert("data".into(), data);
    } else {
        put("data_base64", STANDARD.encode(out.payload).into())?;
    }
    serde_json::to_vec(&event).map_err(|e| e.to_string())
}

/// The extensions [`structured_out`] adds of its own.
const OWN_EXTENSIONS: [&str; 6] =
    ["subscriptionid", "deliveryattempt", "deliverygeneration", "originid", "originsource", "origintime"];

/// Reads back a CloudEvent [`structured_out`] wrote (as Lambda's invocation record echoes it).
pub fn read_out(text_of: &str) -> Result<crate::dispatch::Echoed, String> {
    let value: Value = serde_json::from_str(text_of).map_err(|e| e.to_string())?;
    let value = &value;
    let text = |name: &str| value.get(name).and_then(Value::as_str);
    let event_id =
        crate::ids::EventId::parse(text("id").unwrap_or_default()).map_err(|v| format!("id: {}", v.message))?;
    let subscription_id = crate::ids::SubscriptionId::parse(text("subscriptionid").unwrap_or_default())
        .map_err(|v| format!("subscriptionid: {}", v.message))?;
    let generation = value.get("deliverygeneration").and_then(Value::as_u64).unwrap_or(0);
    let data_type = crate::ids::DataType::parse(text("datacontenttype").unwrap_or("application/json"))
        .map_err(|v| format!("datacontenttype: {}", v.message))?;
    let (data, data_encoding) = match (value.get("data"), value.get("data_base64")) {
        (Some(_), _) => (raw_data(text_of).map(|r| r.to_owned()).ok_or("the CloudEvent's data cannot be read")?, None),
        (None, Some(b64)) => {
            (serde_json::value::to_raw_value(b64).map_err(|e| e.to_string())?, Some("base64".to_owned()))
        }
        (None, None) => return Err("the CloudEvent has no data".into()),
    };
    let cloud_event = text("originid").zip(text("originsource")).map(|(id, source)| Received {
        id: id.to_owned(),
        source: source.to_owned(),
        subject: text("subject").map(str::to_owned),
        time: text("origintime").map(str::to_owned),
        data_schema: text("dataschema").map(str::to_owned),
        extensions: value
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(name, _)| {
                !CONTEXT_ATTRIBUTES.contains(&name.as_str()) && !OWN_EXTENSIONS.contains(&name.as_str())
            })
            .map(|(name, v)| (name.clone(), v.clone()))
            .collect(),
    });
    Ok(crate::dispatch::Echoed {
        event_id,
        subscription_id,
        generation: u32::try_from(generation).unwrap_or(u32::MAX),
        data_type,
        data,
        data_encoding,
        source: None,
        cloud_event,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn minimal() -> Value {
        json!({"specversion": "1.0", "id": "A234-1234-1234", "source": "/orders", "type": "orders.created"})
    }

    #[test]
    fn a_structured_event_reads_its_attributes_extensions_and_json_data() {
        let mut v = minimal();
        v["subject"] = json!("o-1");
        v["time"] = json!("2026-12-02T10:00:00Z");
        v["dataschema"] = json!("https://schemas.example.com/orders/1");
        v["tenant"] = json!("acme");
        v["priority"] = json!(3);
        v["urgent"] = json!(true);
        v["data"] = json!({"orderId": "o-1"});
        let e = CloudEvent::from_json(&v).unwrap();
        assert_eq!(
            (e.id.as_str(), e.source.as_str(), e.kind.as_str()),
            ("A234-1234-1234", "/orders", "orders.created")
        );
        assert_eq!(e.data.as_deref(), Some(br#"{"orderId":"o-1"}"#.as_slice()));
        assert_eq!(e.extensions.len(), 3);
        let received = e.received();
        assert_eq!(
            (received.subject.as_deref(), received.time.as_deref()),
            (Some("o-1"), Some("2026-12-02T10:00:00Z"))
        );
    }

    #[test]
    fn json_data_is_kept_as_it_was_written() {
        let text = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"z":1,"a":123456789012345678901234567890}}"#;
        let e = CloudEvent::from_json_text(text).unwrap();
        assert_eq!(e.data.as_deref(), Some(br#"{"z":1,"a":123456789012345678901234567890}"#.as_slice()));
        let csv =
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/csv","data":"a,b"}"#;
        assert_eq!(CloudEvent::from_json_text(csv).unwrap().data.as_deref(), Some(b"a,b".as_slice()));
        assert!(check_time("2026-12-02t10:00:00z").is_err() && check_time("2026-12-02T10:00:00Z").is_ok());
    }

    #[test]
    fn every_missing_or_malformed_attribute_is_named() {
        let cases = [
            (json!({}), vec!["/specversion", "/id", "/source", "/type"]),
            (json!({"specversion": "0.3", "id": "1", "source": "/s", "type": "t"}), vec!["/specversion"]),
            (json!({"specversion": "1.0", "id": "", "source": 7, "type": "t"}), vec!["/id", "/source"]),
            (json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "time": "yesterday"}), vec!["/time"]),
            (
                json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "dataschema": "not a uri"}),
                vec!["/dataschema"],
            ),
            (json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "Bad-Name": "x"}), vec!["/Bad-Name"]),
            (
                json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "nested": {"a": 1}}),
                vec!["/nested"],
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": 1, "data_base64": "AA=="}),
                vec!["/data_base64"],
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data_base64": "%%"}),
                vec!["/data_base64"],
            ),
            (json!([1]), vec![""]),
        ];
        for (value, pointers) in cases {
            let found: Vec<String> =
                CloudEvent::from_json(&value).unwrap_err().into_iter().map(|v| v.pointer).collect();
            assert_eq!(found, pointers, "{value}");
        }
    }

    #[test]
    fn data_of_other_types_is_a_string_or_base64_and_null_attributes_are_absent() {
        let mut v = minimal();
        v["datacontenttype"] = json!("text/csv");
        v["data"] = json!("a,b\n1,2\n");
        v["subject"] = Value::Null;
        let e = CloudEvent::from_json(&v).unwrap();
        assert_eq!((e.data.as_deref(), e.subject), (Some(b"a,b\n1,2\n".as_slice()), None));
        let mut v = minimal();
        v["data_base64"] = json!(STANDARD.encode([0u8, 159, 146, 150]));
        assert_eq!(CloudEvent::from_json(&v).unwrap().data, Some(vec![0, 159, 146, 150]));
        assert_eq!(CloudEvent::from_json(&minimal()).unwrap().data, None);
    }

    #[test]
    fn a_delivery_goes_out_as_a_structured_cloudevent_carrying_what_came_in() {
        let mut v = minimal();
        v["subject"] = json!("o-1");
        v["tenant"] = json!("acme");
        v["time"] = json!("2026-12-02T09:59:59Z");
        let received = CloudEvent::from_json(&v).unwrap().received();
        let out = Outgoing {
            id: "evt_1",
            source: "/event-gateway",
            kind: "orders.created",
            time: "2026-12-02T10:00:00Z",
            data_content_type: "application/json",
            json: true,
            payload: br#"{"orderId":"o-1"}"#,
            subscription_id: "sub_1",
            delivery_attempt: 2,
            delivery_generation: 0,
            received: Some(&received),
        };
        let event: Value = serde_json::from_slice(&structured_out(&out).unwrap()).unwrap();
        assert_eq!(
            event,
            json!({"specversion": "1.0", "id": "evt_1", "source": "/event-gateway", "type": "orders.created",
                   "time": "2026-12-02T10:00:00Z", "datacontenttype": "application/json", "subject": "o-1",
                   "subscriptionid": "sub_1", "deliveryattempt": 2, "deliverygeneration": 0, "tenant": "acme",
                   "originid": "A234-1234-1234", "originsource": "/orders", "origintime": "2026-12-02T09:59:59Z",
                   "data": {"orderId": "o-1"}})
        );
        let csv = Outgoing { data_content_type: "text/csv", json: false, payload: b"a,b", received: None, ..out };
        let event: Value = serde_json::from_slice(&structured_out(&csv).unwrap()).unwrap();
        assert_eq!(event["data_base64"], json!("YSxi"));
        assert!(event.get("data").is_none() && event.get("originid").is_none());
    }
}
