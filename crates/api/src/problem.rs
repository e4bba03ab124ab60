//! RFC 9457 problem details, and the one place where an error becomes an HTTP response.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gateway_core::error::InputPart;
use gateway_core::formats::Incompatibility;
use gateway_core::{Error, Version, Violation};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An `application/problem+json` body (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A URI reference naming the kind of problem, relative to the API's base.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Every violation found, each located by a JSON pointer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// With 412: the version the resource is at now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<Version>,
    /// With 409 `schema-incompatible`: every way the new version breaks the schema's
    /// compatibility mode, each located by a JSON pointer into the new version's schema document
    /// (the body's `schema`, not the body).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incompatibilities: Vec<Incompatibility>,
    /// With 409 `schema-referenced`: every event definition and registered schema whose schema
    /// `$ref`s one of the schema's versions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<Referrer>,
}

impl Problem {
    fn new(status: StatusCode, slug: &str, title: &str, detail: String) -> Self {
        Self {
            problem_type: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            violations: Vec::new(),
            current_version: None,
            incompatibilities: Vec::new(),
            referrers: Vec::new(),
        }
    }
}

/// What refers to a registered schema, and so keeps it from being deleted.
#[derive(Debug, Serialize, ToSchema)]
pub struct Referrer {
    pub kind: ReferrerKind,
    /// The event's or the schema's name.
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReferrerKind {
    /// An event definition, through its `schema`: `GET /events/{name}`.
    Event,
    /// A registered schema, through one of its versions: `GET /schemas/{name}`.
    Schema,
}

impl From<&gateway_core::Referrer> for Referrer {
    fn from(referrer: &gateway_core::Referrer) -> Self {
        match referrer {
            gateway_core::Referrer::Event(name) => Self { kind: ReferrerKind::Event, name: name.to_string() },
            gateway_core::Referrer::Schema(name) => Self { kind: ReferrerKind::Schema, name: name.to_string() },
        }
    }
}

/// Everything the API can answer with instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Core(#[from] Error),
    #[error("the body is not valid JSON: {0}")]
    MalformedBody(String),
    #[error("the body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the body must be application/json, not '{0}'")]
    BodyNotJson(String),
    #[error("no route matches {0}")]
    NoRoute(String),
    #[error("not a CloudEvent: send application/cloudevents+json, application/cloudevents-batch+json, or the data with ce-specversion, ce-id, ce-source and ce-type headers")]
    NotACloudEvent,
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("this gateway requires a token: send `Authorization: Bearer <token>`")]
    MissingToken,
    #[error("the bearer token is not this gateway's")]
    WrongToken,
    #[error("{0}")]
    UnknownNativeEvent(String),
}

fn core_status_and_type(e: &Error) -> (StatusCode, &'static str, &'static str) {
    use StatusCode as S;
    match e {
        Error::InvalidInput { part: InputPart::Request, .. } => (S::BAD_REQUEST, "invalid-request", "Invalid request"),
        Error::InvalidInput { part: InputPart::Body, .. } => (S::UNPROCESSABLE_ENTITY, "invalid-body", "Invalid body"),
        Error::PayloadRejected { .. } => {
            (S::UNPROCESSABLE_ENTITY, "payload-rejected", "Payload does not match the event's schema")
        }
        Error::PayloadTooLarge(_) => (S::PAYLOAD_TOO_LARGE, "body-too-large", "Body too large"),
        Error::MalformedPayload(_) => (S::BAD_REQUEST, "malformed-payload", "Payload is not valid JSON"),
        Error::UnsupportedMediaType { .. } => {
            (S::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Payload type does not match the event's dataType")
        }
        Error::NotFound { .. } => (S::NOT_FOUND, "not-found", "Not found"),
        Error::EventExists(_) => (S::CONFLICT, "event-exists", "Event already exists"),
        Error::EventHasSubscriptions { .. } => {
            (S::CONFLICT, "event-has-subscriptions", "Event still has subscriptions")
        }
        Error::EventHasSources { .. } => (S::CONFLICT, "event-has-sources", "Event is still triggered by sources"),
        Error::SourceExists(_) => (S::CONFLICT, "source-exists", "Source already exists"),
        Error::SchemaExists(_) => (S::CONFLICT, "schema-exists", "Schema already exists"),
        Error::SchemaUriTaken { .. } => (S::CONFLICT, "schema-uri-taken", "Schema URI already taken"),
        Error::SchemaIncompatible { .. } => {
            (S::CONFLICT, "schema-incompatible", "Schema version breaks the compatibility mode")
        }
        Error::SchemaReferenced { .. } => (S::CONFLICT, "schema-referenced", "Schema is still referred to"),
        Error::SchemaFull { .. } => (S::CONFLICT, "schema-full", "Schema holds the most versions it may"),
        Error::NoSourceMatched { .. } => (S::UNPROCESSABLE_ENTITY, "no-source-matched", "No source matches the record"),
        Error::VersionMismatch { .. } => {
            (S::PRECONDITION_FAILED, "version-mismatch", "Version does not match If-Match")
        }
        Error::IdempotencyKeyReused { .. } => {
            (S::UNPROCESSABLE_ENTITY, "idempotency-key-reused", "Idempotency-Key was used with a different payload")
        }
        Error::FunctionNotAllowed { .. } => (S::FORBIDDEN, "function-not-allowed", "Function is not allowed"),
        Error::InvalidCursor => (S::BAD_REQUEST, "invalid-cursor", "Invalid cursor"),
        Error::NotAccepted(_) => (S::SERVICE_UNAVAILABLE, "trigger-not-accepted", "Trigger not accepted"),
        Error::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
    }
}

/// The problem a core error is told as, wherever it is told: an HTTP answer, or a rejected native
/// record's reason (in `POST /ingest/aws`'s answer and the ingest dead-letter queue).
pub fn problem_of(error: &Error) -> Problem {
    let (status, slug, title) = core_status_and_type(error);
    let detail = match error {
        // The cause may name hosts, tables or credentials: it goes to the log, not the client.
        Error::Unavailable(_) => "the gateway cannot reach its store right now; try again".to_owned(),
        Error::InvalidInput { violations, .. } if violations.len() == 1 => violations[0].message.clone(),
        Error::InvalidInput { violations, .. } => format!("{} problems were found; see violations", violations.len()),
        other => other.to_string(),
    };
    let mut problem = Problem::new(status, slug, title, detail);
    match error {
        Error::InvalidInput { violations, .. } | Error::PayloadRejected { violations, .. } => {
            problem.violations = violations.clone();
        }
        Error::VersionMismatch { current, .. } => problem.current_version = Some(*current),
        Error::SchemaIncompatible { incompatibilities, .. } => problem.incompatibilities = incompatibilities.clone(),
        Error::SchemaReferenced { referrers, .. } => problem.referrers = referrers.iter().map(Referrer::from).collect(),
        _ => {}
    }
    problem
}

impl ApiError {
    fn status_and_type(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            ApiError::Core(e) => core_status_and_type(e),
            ApiError::MalformedBody(_) => (S::BAD_REQUEST, "malformed-body", "Body is not valid JSON"),
            ApiError::BodyTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "body-too-large", "Body too large"),
            ApiError::BodyNotJson(_) => (S::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Body must be JSON"),
            ApiError::NotACloudEvent => (S::UNSUPPORTED_MEDIA_TYPE, "not-a-cloudevent", "Not a CloudEvent"),
            ApiError::NoRoute(_) => (S::NOT_FOUND, "no-route", "No such route"),
            ApiError::MethodNotAllowed { .. } => (S::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed"),
            ApiError::MissingToken | ApiError::WrongToken => (S::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::UnknownNativeEvent(_) => {
                (S::BAD_REQUEST, "unknown-native-event", "Not a native AWS event this gateway reads")
            }
        }
    }

    /// The challenge a 401 must carry (RFC 9110 §11.6.1), in RFC 6750's words: a wrong token
    /// is `invalid_token`; a request without one gets no error code.
    fn challenge(&self) -> Option<&'static str> {
        match self {
            ApiError::MissingToken => Some("Bearer realm=\"event-gateway\""),
            ApiError::WrongToken => Some("Bearer realm=\"event-gateway\", error=\"invalid_token\""),
            _ => None,
        }
    }

    pub fn problem(&self) -> Problem {
        if let ApiError::Core(error) = self {
            return problem_of(error);
        }
        let (status, slug, title) = self.status_and_type();
        Problem::new(status, slug, title, self.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        if let ApiError::Core(Error::Unavailable(cause)) = &self {
            tracing::error!(error = %cause, "store unavailable");
        }
        let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(challenge) = self.challenge() {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}
