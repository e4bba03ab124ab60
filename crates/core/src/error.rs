//! The core's error type: what went wrong, in the domain's words. The API maps it to HTTP once.

use serde::Serialize;
use utoipa::ToSchema;

use crate::formats::{Compatibility, Incompatibility};
use crate::ids::{DataType, EventName, IdempotencyKey, SchemaName, SchemaUri, SourceName, Version};

/// One thing wrong with an input, located by a JSON pointer into the document it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Violation {
    /// JSON pointer (RFC 6901) into the offending document; empty for the whole document.
    pub pointer: String,
    pub message: String,
}

impl Violation {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self { pointer: pointer.into(), message: message.into() }
    }

    /// The same violation, located under `prefix` (a JSON pointer).
    pub fn at(mut self, prefix: &str) -> Self {
        self.pointer = format!("{prefix}{}", self.pointer);
        self
    }
}

/// Where an invalid input was found, which decides its HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputPart {
    /// A path segment, query parameter or header.
    Request,
    /// The JSON body of a create or replace.
    Body,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the request is invalid")]
    InvalidInput { part: InputPart, violations: Vec<Violation> },

    #[error("the payload does not match the schema of event '{event}'")]
    PayloadRejected { event: EventName, violations: Vec<Violation> },

    #[error("the payload is not valid JSON: {0}")]
    MalformedPayload(String),

    /// The payload fits the API's limit but not the transport's (an SNS message carries the
    /// payload plus its deliveries' metadata in 256 KiB).
    #[error("{0}")]
    PayloadTooLarge(String),

    #[error("event '{event}' takes '{expected}' payloads, not '{got}'")]
    UnsupportedMediaType { event: EventName, expected: DataType, got: String },

    #[error("{what} '{id}' does not exist")]
    NotFound { what: &'static str, id: String },

    #[error("event '{0}' already exists")]
    EventExists(EventName),

    #[error("event '{event}' still has {count} subscription(s); delete them first or pass cascade=true")]
    EventHasSubscriptions { event: EventName, count: u64 },

    #[error("event '{event}' is still triggered by {count} source(s); delete them first or pass cascade=true")]
    EventHasSources { event: EventName, count: u64 },

    #[error("source '{0}' already exists")]
    SourceExists(SourceName),

    #[error("schema '{0}' already exists")]
    SchemaExists(SchemaName),

    #[error(
        "the URI '{uri}' already names version {version} of schema '{schema}'; URIs are unique across the registry"
    )]
    SchemaUriTaken { uri: SchemaUri, schema: SchemaName, version: u32 },

    #[error("the new version of schema '{schema}' breaks its {mode} compatibility with version {latest}: {} incompatibilit{}", incompatibilities.len(), if incompatibilities.len() == 1 { "y" } else { "ies" })]
    SchemaIncompatible { schema: SchemaName, mode: Compatibility, latest: u32, incompatibilities: Vec<Incompatibility> },

    #[error("schema '{schema}' holds {max} versions, the most one may; register a new schema")]
    SchemaFull { schema: SchemaName, max: u32 },

    #[error(
        "schema '{schema}' is referred to by {}; remove those references first",
        crate::model::Referrer::list(referrers)
    )]
    SchemaReferenced { schema: SchemaName, referrers: Vec<crate::model::Referrer> },

    /// A native record that no source's pattern matches: nothing can trigger for it.
    #[error("no source matches this {kind} record")]
    NoSourceMatched { kind: &'static str },

    #[error("{what} '{id}' is at version {current}, not the version given in If-Match")]
    VersionMismatch { what: &'static str, id: String, current: Version },

    #[error(
        "Idempotency-Key '{}' was first used with a different payload for event '{event}'; use a new key for a new trigger",
        key.as_str()
    )]
    IdempotencyKeyReused { event: EventName, key: IdempotencyKey },

    #[error("function '{function}' is outside the gateway's allowlist ({allowlist})")]
    FunctionNotAllowed { function: String, allowlist: String },

    #[error("the cursor is not one this API returned")]
    InvalidCursor,

    /// A trigger the gateway did not accept: nothing of it runs, or (said in the message) the
    /// gateway cannot tell. The message is for the client: it names no host, table or credential.
    #[error("{0}")]
    NotAccepted(String),

    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub fn invalid_request(violation: Violation) -> Self {
        Self::InvalidInput { part: InputPart::Request, violations: vec![violation] }
    }

    pub fn invalid_body(violations: Vec<Violation>) -> Self {
        Self::InvalidInput { part: InputPart::Body, violations }
    }

    pub fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable(source.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
