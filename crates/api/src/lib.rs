//! The gateway's HTTP API: one axum `Router` over the core's ports.
//!
//! The local gateway serves it with `axum::serve`; the Lambda handlers serve parts of it with
//! `lambda_http::run`. Request handling is the same code in both.

pub mod auth;
mod cloudevents;
mod doc;
mod extract;
pub mod problem;
mod routes;

use std::sync::Arc;

use axum::Router;
use gateway_core::ports::{
    Clock, DeliveryLog, DeliveryRedrive, EventStore, IdSource, SchemaStore, SourceStore, SubscriptionStore,
    TriggerAcceptor, TriggerSource,
};
use gateway_core::schema::SchemaCache;
use gateway_core::FunctionAllowlist;
use utoipa::OpenApi;

pub use problem::{problem_of, ApiError, Problem};

/// The SNS message limit: a payload larger than this could not be fanned out on AWS either.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Everything a request may need, built once at start-up and shared by every request.
pub struct Gateway {
    pub events: Arc<dyn EventStore>,
    pub subscriptions: Arc<dyn SubscriptionStore>,
    pub sources: Arc<dyn SourceStore>,
    /// The schema registry: `/schemas`, and where `$ref`s and resource envelopes' `resource.schema`
    /// are looked up when events are defined and triggered.
    pub registry: Arc<dyn SchemaStore>,
    pub trigger_source: Arc<dyn TriggerSource>,
    pub acceptor: Arc<dyn TriggerAcceptor>,
    pub deliveries: Arc<dyn DeliveryLog>,
    /// Puts failed deliveries back to pending (`POST /deliveries/{eventId}/redrive`,
    /// `POST /subscriptions/{id}/redrive`); on AWS it also hands them to the delivery queue.
    pub redrive: Arc<dyn DeliveryRedrive>,
    /// Compiled validators (events' schemas and registered versions), shared by every request.
    pub schemas: SchemaCache,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdSource>,
    pub allowlist: FunctionAllowlist,
    pub max_payload_bytes: usize,
}

pub type SharedGateway = Arc<Gateway>;

/// Which routes a router serves: all of them locally, one group per Lambda handler on AWS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteGroup {
    /// Every route, `/ingest/aws` included (the local gateway; on AWS the ingest function takes
    /// native events).
    All,
    /// `/events`, `/sources` and `/schemas` CRUD.
    Events,
    /// `/subscriptions` CRUD.
    Subscriptions,
    /// Triggers and the delivery log: `POST /events/{name}/trigger`, `GET /events/{name}/deliveries`,
    /// `GET /deliveries/{eventId}`, and both redrives, `POST /deliveries/{eventId}/redrive` and
    /// `POST /subscriptions/{id}/redrive`. A redrive hands deliveries to the delivery queue as a
    /// trigger does, so it is served where that permission already is; the subscriptions function
    /// keeps only its table.
    Triggers,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Event Gateway",
        description = "Define events, subscribe functions to them, and trigger them. Errors are RFC 9457 problem+json."
    ),
    tags(
        (name = "events", description = "Event definitions"),
        (name = "subscriptions", description = "Functions subscribed to events"),
        (name = "schemas", description = "The schema registry: versioned JSON Schema and Avro documents, by URI"),
        (name = "sources", description = "Which native AWS records trigger which event"),
        (name = "ingest", description = "Native AWS events in (the local gateway; on AWS the ingest function takes them)"),
        (name = "triggers", description = "Triggering events and following their deliveries"),
        (name = "meta", description = "Health and this document")
    )
)]
struct ApiDoc;

/// The OpenAPI 3.1 document of the whole API, generated from the route handlers'
/// annotations and completed by `doc.rs`. `tests/api.rs` checks that every operation it lists
/// is routed; `end-to-end`'s `openapi_contract` has schemathesis check it against the server.
pub fn openapi() -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    doc.merge(routes::meta::Doc::openapi());
    doc.merge(routes::events::Doc::openapi());
    doc.merge(routes::subscriptions::Doc::openapi());
    doc.merge(routes::sources::Doc::openapi());
    doc.merge(routes::schemas::Doc::openapi());
    doc.merge(routes::ingest::Doc::openapi());
    doc.merge(routes::triggers::Doc::openapi());
    doc.merge(routes::cloudevents::Doc::openapi());
    doc.merge(routes::redrive::Doc::openapi());
    let mut doc = serde_json::to_value(doc).expect("the generated document serializes");
    doc::complete(&mut doc);
    doc
}

/// The router for `group`, ready to serve.
pub fn router(gateway: Gateway, group: RouteGroup) -> Router {
    // A plain axum router: the OpenAPI document is built only when `/openapi.json` is first
    // asked for, so a Lambda cold start does not pay for it.
    let router = Router::new().merge(routes::meta::routes());
    let router = match group {
        RouteGroup::All => router
            .merge(routes::events::routes())
            .merge(routes::sources::routes())
            .merge(routes::schemas::routes())
            .merge(routes::subscriptions::routes())
            .merge(routes::triggers::routes())
            .merge(routes::cloudevents::routes())
            .merge(routes::redrive::routes())
            .merge(routes::ingest::routes()),
        RouteGroup::Events => {
            router.merge(routes::events::routes()).merge(routes::sources::routes()).merge(routes::schemas::routes())
        }
        RouteGroup::Subscriptions => router.merge(routes::subscriptions::routes()),
        RouteGroup::Triggers => router
            .merge(routes::triggers::routes())
            .merge(routes::cloudevents::routes())
            .merge(routes::redrive::routes()),
    };
    routes::finish(router, gateway.max_payload_bytes).with_state(Arc::new(gateway))
}
