//! The event gateway's domain: events, subscriptions, triggers and deliveries, the use cases
//! that act on them, and the small port traits those use cases need from the outside world.
//!
//! Nothing in this crate speaks HTTP, AWS or SQL; adapters in other crates implement the ports.

pub mod allowlist;
pub mod cloudevent;
pub mod delivery;
pub mod digest;
pub mod dispatch;
pub mod envelope;
pub mod error;
pub mod events;
pub mod fixtures;
pub mod formats;
pub mod ids;
pub mod ingest;
pub mod memory;
pub mod message;
pub mod model;
pub mod outcome;
pub mod page;
pub mod pattern;
pub mod ports;
pub mod redrive;
pub mod retention;
pub mod schema;
pub mod schemas;
pub mod sources;
pub mod store_contract;
pub mod subscriptions;
pub mod trigger;

pub use allowlist::{AccountId, FunctionAllowlist, Home};
pub use error::{Error, Violation};
pub use formats::{Compatibility, SchemaFormat};
pub use ids::{
    DataType, EventId, EventName, FunctionId, IdempotencyKey, SchemaName, SchemaUri, SourceName, SubscriptionId,
    Version,
};
pub use model::{
    Attempt, AttemptResult, Delivery, DeliveryMode, DeliveryPolicy, DeliveryStatus, Envelope, EventDefinition,
    EventDraft, InvocationPayload, Metadata, Origin, PayloadFormat, Referrer, Reported, Schema, SchemaChange,
    SchemaDraft, SchemaReference, SchemaVersion, SchemaVersionDraft, SchemaVersionSummary, SharedMetadata, Source,
    SourceDraft, SourceKind, Subscription, SubscriptionDraft, Trigger, TriggerReceipt,
};
pub use page::{Page, PageRequest};
pub use pattern::EventPattern;
pub use retention::DeliveryRetention;
