//! The ingest dead-letter queue on SQS: a rejected record, with why, for someone to read.
//!
//! The body is the record as AWS delivered it; the message attributes say why: `reason` (the
//! problem type, such as `/problems/payload-rejected`), `detail`, `violations` (the JSON array of
//! what the schema refused, when it did), and `kind`, `recordId` and `source` where known.
//!
//! The queue takes messages of up to 1 MiB (the template sets `MaximumMessageSize`). A record
//! that would not fit even so (a Kinesis record's base64 data near its 1 MiB limit, a DynamoDB
//! record with two 400 KB images) is kept as a summary naming where it is: its kind, id, ARN and
//! batch item (the stream's sequence number), while the stream still holds it (24 hours and up).
//! Failing it instead would stop its shard for good.

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageAttributeValue;
use aws_sdk_sqs::Client;
use gateway_api::problem_of;
use gateway_core::ingest::{Rejection, RejectionSink};
use gateway_core::{Error, Violation};
use serde_json::{json, Value};

/// The queue's largest message (body and attributes together), less room for the attributes:
/// the detail and violations are cut well below, a record id is at most an S3 key (1 KiB) and a
/// few names.
const MAX_BODY_BYTES: usize = 1024 * 1024 - 32 * 1024;
const MAX_DETAIL_CHARS: usize = 2048;
const MAX_VIOLATIONS_BYTES: usize = 8192;

/// Where the records and documents the function gives up on go. The ingest use case only needs
/// the rejected records' side; a whole document of no known shape is the function's own case.
#[async_trait]
pub trait DeadLetters: RejectionSink {
    /// Keeps a document that is none of the native events the function reads.
    async fn unreadable(&self, document: &Value, why: &str) -> gateway_core::error::Result<()>;
}

pub struct SqsRejections {
    client: Client,
    queue_url: String,
}

impl SqsRejections {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }

    async fn send(&self, body: String, attributes: &[(&str, &str)]) -> gateway_core::error::Result<()> {
        let mut send = self.client.send_message().queue_url(&self.queue_url).message_body(sqs_text(&body));
        for (name, value) in attributes {
            let value = if value.is_empty() { "-" } else { value };
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(sqs_text(value))
                .build()
                .map_err(Error::unavailable)?;
            send = send.message_attributes(*name, attribute);
        }
        send.send().await.map_err(|e| {
            Error::unavailable(format!(
                "SQS SendMessage to the ingest dead-letter queue failed: {}",
                DisplayErrorContext(&e)
            ))
        })?;
        Ok(())
    }
}

#[async_trait]
impl RejectionSink for SqsRejections {
    async fn reject(&self, r: &Rejection<'_>) -> gateway_core::error::Result<()> {
        let problem = problem_of(r.reason);
        let record = r.record;
        let mut body = record.document.to_string();
        if body.len() > MAX_BODY_BYTES {
            body = json!({
                "truncated": true,
                "bytes": body.len(),
                "kind": record.kind,
                "id": record.id,
                "arn": record.arn,
                "itemIdentifier": record.item_identifier,
            })
            .to_string();
        }
        let detail = cut(&problem.detail, MAX_DETAIL_CHARS);
        let violations = violations_json(&problem.violations);
        let mut attributes =
            vec![("reason", problem.problem_type.as_str()), ("detail", detail), ("kind", record.kind.as_str())];
        if let Some(violations) = &violations {
            attributes.push(("violations", violations));
        }
        if !record.id.is_empty() {
            attributes.push(("recordId", &record.id));
        }
        if let Some(source) = r.source {
            attributes.push(("source", source.as_str()));
        }
        self.send(body, &attributes).await
    }
}

#[async_trait]
impl DeadLetters for SqsRejections {
    async fn unreadable(&self, document: &Value, why: &str) -> gateway_core::error::Result<()> {
        let mut body = document.to_string();
        if body.len() > MAX_BODY_BYTES {
            body = json!({"truncated": true, "bytes": body.len()}).to_string();
        }
        let attributes = [("reason", "/problems/unknown-native-event"), ("detail", cut(why, MAX_DETAIL_CHARS))];
        self.send(body, &attributes).await
    }
}

/// The violations as a JSON array of at most [`MAX_VIOLATIONS_BYTES`]: the first ones, as many
/// as fit (a cut array would not be JSON), each message cut if one alone is too long.
fn violations_json(violations: &[Violation]) -> Option<String> {
    let mut shown = violations.len();
    while shown > 0 {
        let json = serde_json::to_string(&violations[..shown]).ok()?;
        if json.len() <= MAX_VIOLATIONS_BYTES {
            return Some(json);
        }
        shown /= 2;
    }
    let first = violations.first()?;
    let cut = Violation::new(cut(&first.pointer, 1024), cut(&first.message, 1024));
    serde_json::to_string(&[cut]).ok()
}

/// At most `chars` characters of `text`.
fn cut(text: &str, chars: usize) -> &str {
    text.char_indices().nth(chars).map_or(text, |(at, _)| &text[..at])
}

/// `text` as SQS takes it: SQS refuses a message with a character outside XML's (U+FFFE and
/// U+FFFF, which JSON lets through unescaped, and control characters other than tab and line
/// breaks); each is written as its JSON escape, which keeps a JSON body valid and the same value.
fn sqs_text(text: &str) -> std::borrow::Cow<'_, str> {
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..=char::MAX);
    if text.chars().all(allowed) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 12);
    for c in text.chars() {
        if allowed(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{:04x}", c as u32));
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_sqs_refuses_is_escaped_and_a_json_body_stays_the_same_json() {
        let document = json!({"key": "a\u{FFFE}b\u{FFFF}c", "ok": "é\t𝄞"});
        let body = sqs_text(&document.to_string()).into_owned();
        assert!(!body.contains('\u{FFFE}') && !body.contains('\u{FFFF}'), "{body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), document);
        assert_eq!(sqs_text("plain é 𝄞"), "plain é 𝄞");
        assert_eq!(sqs_text("bell\u{7}"), "bell\\u0007");
    }

    #[test]
    fn the_violations_attribute_is_always_a_json_array_within_its_limit() {
        let many: Vec<Violation> =
            (0..500).map(|i| Violation::new(format!("/items/{i}"), "must be a string")).collect();
        let json = violations_json(&many).unwrap();
        let parsed: Vec<Value> = serde_json::from_str(&json).unwrap();
        assert!(json.len() <= MAX_VIOLATIONS_BYTES && !parsed.is_empty() && parsed.len() < 500);
        assert_eq!(parsed[0]["pointer"], "/items/0");
        let huge = [Violation::new("/a", "x".repeat(20_000))];
        let parsed: Vec<Value> = serde_json::from_str(&violations_json(&huge).unwrap()).unwrap();
        assert_eq!(parsed[0]["message"].as_str().unwrap().len(), 1024);
        assert_eq!(violations_json(&[]), None);
    }

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("ééé", 2), "éé");
        assert_eq!(cut("ab", 5), "ab");
    }
}
