//! Use cases on sources: which native AWS records trigger which event.

use crate::error::{Error, Result, Violation};
use crate::events::check_version;
use crate::ids::{SourceName, Version};
use crate::model::{Source, SourceDraft};
use crate::page::{Page, PageRequest};
use crate::pattern::EventPattern;
use crate::ports::{Clock, SourceStore};

const MAX_DESCRIPTION: usize = 1024;

pub async fn define_source(store: &dyn SourceStore, clock: &dyn Clock, draft: SourceDraft) -> Result<Source> {
    let mut violations = Vec::new();
    if draft.name.is_none() {
        violations.push(Violation::new("/name", "name is required"));
    }
    if draft.event.is_none() {
        violations.push(Violation::new("/event", "event is required"));
    }
    let (pattern, description) = check(&draft, &mut violations);
    let (Some(name), Some(event), Some(pattern), true) = (draft.name, draft.event, pattern, violations.is_empty())
    else {
        return Err(Error::invalid_body(violations));
    };
    let now = clock.now();
    let source = Source {
        name,
        event,
        pattern,
        description,
        metadata: draft.metadata.unwrap_or_default(),
        created_at: now,
        updated_at: now,
        version: Version::FIRST,
    };
    store.create_source(&source).await?;
    Ok(source)
}

pub async fn get_source(store: &dyn SourceStore, name: &SourceName) -> Result<Source> {
    store.get_source(name).await?.ok_or_else(|| not_found(name))
}

pub async fn list_sources(store: &dyn SourceStore, page: &PageRequest) -> Result<Page<Source>> {
    store.list_sources(page).await
}

/// Replaces a source's pattern, description and metadata; `if_match` guards against
/// overwriting a change the client has not seen.
pub async fn replace_source(
    store: &dyn SourceStore,
    clock: &dyn Clock,
    name: &SourceName,
    draft: SourceDraft,
    if_match: Option<Version>,
) -> Result<Source> {
    let mut violations = Vec::new();
    if draft.name.as_ref().is_some_and(|n| n != name) {
        violations.push(Violation::new(
            "/name",
            format!("the body names another source than the path ('{name}'); a source cannot be renamed"),
        ));
    }
    let (pattern, description) = check(&draft, &mut violations);
    let current = store.get_source(name).await?.ok_or_else(|| not_found(name))?;
    if draft.event.as_ref().is_some_and(|e| *e != current.event) {
        violations.push(Violation::new(
            "/event",
            format!("source '{name}' triggers '{}'; a source cannot move to another event", current.event),
        ));
    }
    let (Some(pattern), true) = (pattern, violations.is_empty()) else {
        return Err(Error::invalid_body(violations));
    };
    check_version("source", name.as_str(), current.version, if_match)?;
    let next = Source {
        pattern,
        description,
        metadata: draft.metadata.unwrap_or_default(),
        updated_at: clock.now(),
        version: current.version.next(),
        ..current
    };
    store.replace_source(&next).await?;
    Ok(next)
}

pub async fn delete_source(store: &dyn SourceStore, name: &SourceName, if_match: Option<Version>) -> Result<()> {
    store.delete_source(name, if_match).await
}

/// The sources whose pattern matches `record`, in name order.
pub fn matching<'a>(sources: &'a [Source], record: &'a serde_json::Value) -> impl Iterator<Item = &'a Source> {
    sources.iter().filter(move |s| s.pattern.matches(record))
}

/// The pattern and description of a draft, with every problem added to `violations`.
fn check(draft: &SourceDraft, violations: &mut Vec<Violation>) -> (Option<EventPattern>, Option<String>) {
    let pattern = match EventPattern::parse(&draft.pattern) {
        Ok(pattern) => Some(pattern),
        Err(found) => {
            violations.extend(found.into_iter().map(|v| v.at("/pattern")));
            None
        }
    };
    if draft.description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        violations
            .push(Violation::new("/description", format!("description is longer than {MAX_DESCRIPTION} characters")));
    }
    (pattern, draft.description.clone())
}

fn not_found(name: &SourceName) -> Error {
    Error::NotFound { what: "source", id: name.to_string() }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ids::EventName;
    use crate::memory::MemoryStore;
    use crate::ports::{EventStore, SystemClock};

    fn draft(body: serde_json::Value) -> SourceDraft {
        serde_json::from_value(body).expect("a source draft")
    }

    #[tokio::test]
    async fn a_source_needs_a_name_an_event_and_a_valid_pattern_and_hears_every_problem_at_once() {
        let store = MemoryStore::new();
        let err = define_source(&store, &SystemClock, draft(json!({"pattern": {"s3": {"bucket": "not-a-list"}}})))
            .await
            .unwrap_err();
        let Error::InvalidInput { violations, .. } = err else { panic!("{err:?}") };
        let pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(pointers, ["/name", "/event", "/pattern/s3/bucket"], "{violations:?}");
    }

    #[tokio::test]
    async fn a_source_of_an_event_that_does_not_exist_is_not_found() {
        let store = MemoryStore::new();
        let body = json!({"name": "uploads", "event": "uploads.received", "pattern": {"eventSource": ["aws:s3"]}});
        let err = define_source(&store, &SystemClock, draft(body)).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { what: "event", .. }), "{err:?}");
    }

    #[tokio::test]
    async fn a_source_cannot_move_to_another_event_or_be_renamed() {
        let store = MemoryStore::new();
        for name in ["uploads.received", "other.event"] {
            let def = crate::fixtures::definition(name);
            store.create_event(&def).await.unwrap();
        }
        let body = json!({"name": "uploads", "event": "uploads.received", "pattern": {"eventSource": ["aws:s3"]}});
        define_source(&store, &SystemClock, draft(body)).await.unwrap();
        let name = SourceName::parse("uploads").unwrap();
        let moved = json!({"name": "other", "event": "other.event", "pattern": {"eventSource": ["aws:s3"]}});
        let err = replace_source(&store, &SystemClock, &name, draft(moved), None).await.unwrap_err();
        let Error::InvalidInput { violations, .. } = err else { panic!("{err:?}") };
        let pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(pointers, ["/name", "/event"]);
        let kept = get_source(&store, &name).await.unwrap();
        assert_eq!(kept.event, EventName::parse("uploads.received").unwrap());
        assert_eq!(kept.version, Version::FIRST);
    }
}
