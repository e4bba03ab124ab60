//! Plain definitions and subscriptions for tests in this and other crates: version 1, stamped
//! now, no schema. Tests change the one field they are about.

use chrono::Utc;

use crate::ids::{EventName, FunctionId, Version};
use crate::model::{EventDefinition, Metadata, Subscription};
use crate::ports::{IdSource, UlidSource};

/// A JSON event named `name`, without schema or metadata. Panics on an invalid name.
pub fn definition(name: &str) -> EventDefinition {
    let now = Utc::now();
    EventDefinition {
        name: EventName::parse(name).expect("a valid event name"),
        description: None,
        schema: None,
        data_type: Default::default(),
        envelope: None,
        schema_references: Vec::new(),
        metadata: Metadata::new(),
        received_at: None,
        created_at: now,
        updated_at: now,
        version: Version::FIRST,
    }
}

/// A new subscription of `function` to `event`. Panics on an invalid function id.
pub fn subscription(event: &EventName, function: &str, metadata: Metadata) -> Subscription {
    let now = Utc::now();
    Subscription {
        subscription_id: UlidSource.subscription_id(),
        event: event.clone(),
        function_id: FunctionId::parse(function).expect("a valid function id"),
        metadata: metadata.into(),
        filter: None,
        delivery: Default::default(),
        format: Default::default(),
        created_at: now,
        updated_at: now,
        version: Version::FIRST,
    }
}
