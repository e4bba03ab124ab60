//! The SQLite adapter: the local gateway's durable store.
//!
//! One file holds the registry (events, subscriptions, sources, and the schema registry with
//! who refers to each schema), accepted triggers with their payloads, and the delivery outbox.
//! A trigger's acceptance is one transaction: the trigger, all its deliveries, its idempotency
//! key and the event's `receivedAt` are written together or not at all, so a 202 is only ever
//! answered for deliveries that will run. Each registry write is one transaction with the
//! referrer edges it adds or drops, so a schema is never deleted while something refers to it.

mod connections;
mod schema;
mod targets;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use gateway_core::page::{decode_cursor, encode_cursor};
use gateway_core::ports::{
    Acceptance, Attempted, ClaimToken, DeliveryLog, DeliveryOutbox, DeliveryRedrive, DueDelivery, EventStore, Recorded,
    SchemaLookup, SchemaStore, SourceStore, SubscriptionStore, TriggerAcceptor, TriggerSource, TriggerTarget,
};
use gateway_core::{
    Attempt, DataType, Delivery, DeliveryPolicy, DeliveryRetention, DeliveryStatus, Error, EventDefinition, EventId,
    EventName, IdempotencyKey, Page, PageRequest, PayloadFormat, Referrer, Schema, SchemaName, SchemaReference,
    SchemaUri, SchemaVersion, SchemaVersionSummary, Source, SourceName, Subscription, SubscriptionId, Trigger,
    TriggerReceipt, Version,
};
use rusqlite::{params, Connection, OptionalExtension, Params};

pub use connections::CommitCounts;
use connections::{lock, GroupCommit, Readers};
use targets::TargetCache;

/// The store. Clones share the connections: one writer (through which every write goes,
/// acceptances in groups) and, for a file, a few read-only connections (see `connections`).
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    readers: Option<Arc<Readers>>,
    group_commit: Arc<GroupCommit>,
    targets: Arc<TargetCache>,
}

type DbResult<T> = Result<T, Error>;

fn db_err(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::unavailable(e)
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_ts(raw: &str) -> DbResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)).map_err(db_err)
}

fn to_json<T: serde::Serialize>(value: &T) -> DbResult<String> {
    serde_json::to_string(value).map_err(db_err)
}

fn from_json<T: serde::de::DeserializeOwned>(raw: &str) -> DbResult<T> {
    serde_json::from_str(raw).map_err(db_err)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> DbResult<Self> {
        let conn = Self::init(Connection::open(path).map_err(db_err)?)?;
        // Opened after `init`, which made the file and put it in WAL mode.
        let readers = Readers::open(path)?;
        Self::with_connections(conn, Some(readers))
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> DbResult<Self> {
        let conn = Self::init(Connection::open_in_memory().map_err(db_err)?)?;
        Self::with_connections(conn, None)
    }

    fn with_connections(conn: Connection, readers: Option<Readers>) -> DbResult<Self> {
        let conn = Arc::new(Mutex::new(conn));
        let group_commit = Arc::new(GroupCommit::start(conn.clone())?);
        Ok(Self { conn, readers: readers.map(Arc::new), group_commit, targets: Arc::default() })
    }

    /// How many triggers were accepted, and in how many commits, since the store was opened.
    pub fn commit_counts(&self) -> &CommitCounts {
        &self.group_commit.counts
    }

    fn init(conn: Connection) -> DbResult<Connection> {
        conn.execute_batch(schema::SCHEMA).map_err(db_err)?;
        for (table, column, add) in schema::ADDED_COLUMNS {
            let present: bool = conn
                .query_row(
                    "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
                    params![table, column],
                    |row| row.get(0),
                )
                .map_err(db_err)?;
            if !present {
                conn.execute_batch(add).map_err(db_err)?;
            }
        }
        Ok(conn)
    }

    /// Runs `work` on the writer's connection off the async runtime's threads.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> DbResult<T> + Send + 'static,
    ) -> DbResult<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || work(&mut lock(&conn))).await.map_err(db_err)?
    }

    /// Runs `work`, a write to the registry (events, subscriptions, sources, schemas), and
    /// then lets every trigger read the registry afresh (`targets`).
    async fn write_registry<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> DbResult<T> + Send + 'static,
    ) -> DbResult<T> {
        let written = self.run(work).await;
        self.targets.invalidate();
        written
    }

    /// Runs `work`, which only reads, on a read-only connection (the writer's for an
    /// in-memory database): it sees the last commit, never a write in progress.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> DbResult<T> + Send + 'static,
    ) -> DbResult<T> {
        match self.readers.clone() {
            Some(readers) => tokio::task::spawn_blocking(move || readers.with(work)).await.map_err(db_err)?,
            None => self.run(work).await,
        }
    }

    /// Frees every claimed delivery. Only for start-up, when this process holds the data
    /// folder's lock: a claim left in the file was made by a process that is gone.
    pub async fn release_claims(&self) -> DbResult<usize> {
        self.run(|conn| {
            conn.execute(
                "UPDATE deliveries SET leased_until = NULL, claim_token = NULL WHERE leased_until IS NOT NULL",
                [],
            )
            .map_err(db_err)
        })
        .await
    }

    /// Forgets idempotency keys older than their window (a client's, or a native record's), so
    /// the index stays small.
    pub async fn expire_idempotency_keys(&self, now: DateTime<Utc>) -> DbResult<usize> {
        let before = |window: Duration| ts(now - chrono::Duration::from_std(window).unwrap_or_default());
        let (clients, natives) = (before(IdempotencyKey::CLIENT_WINDOW), before(IdempotencyKey::NATIVE_WINDOW));
        let native = format!("{}%", IdempotencyKey::NATIVE_PREFIX);
        self.run(move |conn| {
            conn.execute(
                "UPDATE triggers SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL
                 AND received_at < CASE WHEN idempotency_key LIKE ?3 THEN ?2 ELSE ?1 END",
                params![clients, natives, native],
            )
            .map_err(db_err)
        })
        .await
    }

    /// Forgets up to `limit` triggers received before `retention` ended whose deliveries are
    /// all settled (delivered, invoked or failed), payload and delivery records together, so a trigger's
    /// log is never shown in part. A trigger with a pending delivery stays, however old: its
    /// rows are the outbox. Returns how many went; call again while that is `limit`, in batches
    /// so that requests are not held up and a shutdown can come in between.
    pub async fn forget_settled_triggers(
        &self,
        now: DateTime<Utc>,
        retention: DeliveryRetention,
        limit: usize,
    ) -> DbResult<usize> {
        let cutoff = ts(retention.cutoff(now));
        self.run(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let ids = {
                let mut select = tx
                    .prepare(
                        "SELECT event_id FROM triggers t WHERE received_at < ?1 AND NOT EXISTS \
                         (SELECT 1 FROM deliveries d WHERE d.event_id = t.event_id AND d.status = ?2) LIMIT ?3",
                    )
                    .map_err(db_err)?;
                let rows = select
                    .query_map(params![cutoff, DeliveryStatus::Pending.as_str(), limit], |row| row.get::<_, String>(0))
                    .map_err(db_err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
            };
            for id in &ids {
                tx.execute("DELETE FROM deliveries WHERE event_id = ?1", [id]).map_err(db_err)?;
                tx.execute("DELETE FROM triggers WHERE event_id = ?1", [id]).map_err(db_err)?;
            }
            tx.commit().map_err(db_err)?;
            Ok(ids.len())
        })
        .await
    }
}

fn read_event(tx: &Connection, name: &EventName) -> DbResult<Option<EventDefinition>> {
    tx.query_row("SELECT body, received_at FROM events WHERE name = ?1", [name.as_str()], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
    })
    .optional()
    .map_err(db_err)?
    .map(|(body, received_at)| event_from_row(&body, received_at.as_deref()))
    .transpose()
}

fn event_from_row(body: &str, received_at: Option<&str>) -> DbResult<EventDefinition> {
    let mut event: EventDefinition = from_json(body)?;
    event.received_at = received_at.map(parse_ts).transpose()?;
    Ok(event)
}

fn event_version(tx: &Connection, name: &EventName) -> DbResult<Option<Version>> {
    tx.query_row("SELECT version FROM events WHERE name = ?1", [name.as_str()], |row| row.get::<_, u64>(0))
        .optional()
        .map(|v| v.map(Version))
        .map_err(db_err)
}

fn subscription_version(tx: &Connection, id: &SubscriptionId) -> DbResult<Option<Version>> {
    tx.query_row("SELECT version FROM subscriptions WHERE id = ?1", [id.to_string()], |row| row.get::<_, u64>(0))
        .optional()
        .map(|v| v.map(Version))
        .map_err(db_err)
}

/// Reads one page of `limit + 1` rows and turns the extra row into a cursor.
fn page_from<T, K: serde::Serialize>(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> K) -> Page<T> {
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|last| encode_cursor(&key(last)))
    } else {
        None
    };
    Page { items: rows, next_cursor }
}

fn definition_json(event: &EventDefinition) -> DbResult<String> {
    // receivedAt has its own column: triggers update it without rewriting the definition.
    to_json(&EventDefinition { received_at: None, ..event.clone() })
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn create_event(&self, event: &EventDefinition) -> DbResult<()> {
        let (name, version, body) = (event.name.clone(), event.version.0, definition_json(event)?);
        let references = event.schema_references.clone();
        self.write_registry(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let inserted = tx
                .execute(
                    "INSERT INTO events (name, version, body) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO NOTHING",
                    params![name.as_str(), version, body],
                )
                .map_err(db_err)?;
            if inserted == 0 {
                return Err(Error::EventExists(name));
            }
            refer(&tx, &Referrer::Event(name), &references)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn get_event(&self, name: &EventName) -> DbResult<Option<EventDefinition>> {
        let name = name.clone();
        self.read(move |conn| read_event(conn, &name)).await
    }

    async fn list_events(&self, page: &PageRequest) -> DbResult<Page<EventDefinition>> {
        let after: String =
            page.cursor.as_deref().map(decode_cursor::<EventName>).transpose()?.map(String::from).unwrap_or_default();
        let limit = page.limit;
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT body, received_at FROM events WHERE name > ?1 ORDER BY name LIMIT ?2")
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![after, limit + 1], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
                })
                .map_err(db_err)?
                .map(|r| r.map_err(db_err).and_then(|(body, at)| event_from_row(&body, at.as_deref())))
                .collect::<DbResult<Vec<_>>>()?;
            Ok(page_from(rows, limit, |e| e.name.clone()))
        })
        .await
    }

    async fn replace_event(&self, event: &EventDefinition) -> DbResult<()> {
        let (name, version, body) = (event.name.clone(), event.version, definition_json(event)?);
        let references = event.schema_references.clone();
        self.write_registry(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let updated = tx
                .execute(
                    "UPDATE events SET version = ?2, body = ?3 WHERE name = ?1 AND version = ?4",
                    params![name.as_str(), version.0, body, version.0 - 1],
                )
                .map_err(db_err)?;
            if updated != 1 {
                return match event_version(&tx, &name)? {
                    None => Err(Error::NotFound { what: "event", id: name.to_string() }),
                    Some(current) => Err(Error::VersionMismatch { what: "event", id: name.to_string(), current }),
                };
            }
            // The new definition's references replace the old ones, so a schema it no longer
            // refers to may be deleted.
            let referrer = Referrer::Event(name);
            unrefer(&tx, &referrer)?;
            refer(&tx, &referrer, &references)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn delete_event(&self, name: &EventName, expected: Option<Version>, cascade: bool) -> DbResult<()> {
        let name = name.clone();
        self.write_registry(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let Some(current) = event_version(&tx, &name)? else {
                return Err(Error::NotFound { what: "event", id: name.to_string() });
            };
            if expected.is_some_and(|v| v != current) {
                return Err(Error::VersionMismatch { what: "event", id: name.to_string(), current });
            }
            let count: u64 = tx
                .query_row("SELECT count(*) FROM subscriptions WHERE event = ?1", [name.as_str()], |r| r.get(0))
                .map_err(db_err)?;
            if count > 0 && !cascade {
                return Err(Error::EventHasSubscriptions { event: name, count });
            }
            let sources: u64 = tx
                .query_row("SELECT count(*) FROM sources WHERE event = ?1", [name.as_str()], |r| r.get(0))
                .map_err(db_err)?;
            if sources > 0 && !cascade {
                return Err(Error::EventHasSources { event: name, count: sources });
            }
            tx.execute("DELETE FROM subscriptions WHERE event = ?1", [name.as_str()]).map_err(db_err)?;
            tx.execute("DELETE FROM sources WHERE event = ?1", [name.as_str()]).map_err(db_err)?;
            tx.execute("DELETE FROM events WHERE name = ?1", [name.as_str()]).map_err(db_err)?;
            unrefer(&tx, &Referrer::Event(name))?;
            tx.commit().map_err(db_err)
        })
        .await
    }
}

#[async_trait]
impl SubscriptionStore for SqliteStore {
    async fn create_subscription(&self, subscription: &Subscription) -> DbResult<()> {
        let sub = subscription.clone();
        let body = to_json(&sub)?;
        self.write_registry(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            if event_version(&tx, &sub.event)?.is_none() {
                return Err(Error::NotFound { what: "event", id: sub.event.to_string() });
            }
            tx.execute(
                "INSERT INTO subscriptions (id, event, version, body) VALUES (?1, ?2, ?3, ?4)",
                params![sub.subscription_id.to_string(), sub.event.as_str(), sub.version.0, body],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn get_subscription(&self, id: &SubscriptionId) -> DbResult<Option<Subscription>> {
        let id = id.to_string();
        self.read(move |conn| {
            conn.query_row("SELECT body FROM subscriptions WHERE id = ?1", [id], |row| row.get::<_, String>(0))
                .optional()
                .map_err(db_err)?
                .map(|body| from_json(&body))
                .transpose()
        })
        .await
    }

    async fn list_subscriptions(&self, event: Option<&EventName>, page: &PageRequest) -> DbResult<Page<Subscription>> {
        let after = page
            .cursor
            .as_deref()
            .map(decode_cursor::<SubscriptionId>)
            .transpose()?
            .map(|id| id.to_string())
            .unwrap_or_default();
        let event = event.map(|e| e.to_string());
        let limit = page.limit;
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body FROM subscriptions WHERE id > ?1 AND (?2 IS NULL OR event = ?2) ORDER BY id LIMIT ?3",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![after, event, limit + 1], |row| row.get::<_, String>(0))
                .map_err(db_err)?
                .map(|r| r.map_err(db_err).and_then(|body| from_json::<Subscription>(&body)))
                .collect::<DbResult<Vec<_>>>()?;
            Ok(page_from(rows, limit, |s| s.subscription_id))
        })
        .await
    }

    async fn replace_subscription(&self, subscription: &Subscription) -> DbResult<()> {
        let sub = subscription.clone();
        let body = to_json(&sub)?;
        self.write_registry(move |conn| {
            let id = sub.subscription_id.to_string();
            let updated = conn
                .execute(
                    "UPDATE subscriptions SET version = ?2, body = ?3 WHERE id = ?1 AND version = ?4",
                    params![id, sub.version.0, body, sub.version.0 - 1],
                )
                .map_err(db_err)?;
            if updated == 1 {
                return Ok(());
            }
            match subscription_version(conn, &sub.subscription_id)? {
                None => Err(Error::NotFound { what: "subscription", id }),
                Some(current) => Err(Error::VersionMismatch { what: "subscription", id, current }),
            }
        })
        .await
    }

    async fn delete_subscription(&self, id: &SubscriptionId, expected: Option<Version>) -> DbResult<()> {
        let id = *id;
        self.write_registry(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let Some(current) = subscription_version(&tx, &id)? else {
                return Err(Error::NotFound { what: "subscription", id: id.to_string() });
            };
            if expected.is_some_and(|v| v != current) {
                return Err(Error::VersionMismatch { what: "subscription", id: id.to_string(), current });
            }
            tx.execute("DELETE FROM subscriptions WHERE id = ?1", [id.to_string()]).map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }
}

fn source_version(tx: &Connection, name: &SourceName) -> DbResult<Option<Version>> {
    tx.query_row("SELECT version FROM sources WHERE name = ?1", [name.as_str()], |row| row.get::<_, u64>(0))
        .optional()
        .map(|v| v.map(Version))
        .map_err(db_err)
}

#[async_trait]
impl SourceStore for SqliteStore {
    async fn create_source(&self, source: &Source) -> DbResult<()> {
        let (source, body) = (source.clone(), to_json(source)?);
        self.write_registry(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            if event_version(&tx, &source.event)?.is_none() {
                return Err(Error::NotFound { what: "event", id: source.event.to_string() });
            }
            let inserted = tx
                .execute(
                    "INSERT INTO sources (name, event, version, body) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(name) DO NOTHING",
                    params![source.name.as_str(), source.event.as_str(), source.version.0, body],
                )
                .map_err(db_err)?;
            if inserted == 0 {
                return Err(Error::SourceExists(source.name));
            }
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn get_source(&self, name: &SourceName) -> DbResult<Option<Source>> {
        let name = name.clone();
        self.read(move |conn| {
            conn.query_row("SELECT body FROM sources WHERE name = ?1", [name.as_str()], |row| row.get::<_, String>(0))
                .optional()
                .map_err(db_err)?
                .map(|body| from_json(&body))
                .transpose()
        })
        .await
    }

    async fn list_sources(&self, page: &PageRequest) -> DbResult<Page<Source>> {
        let after: String =
            page.cursor.as_deref().map(decode_cursor::<SourceName>).transpose()?.map(String::from).unwrap_or_default();
        let limit = page.limit;
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT body FROM sources WHERE name > ?1 ORDER BY name LIMIT ?2")
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![after, limit + 1], |row| row.get::<_, String>(0))
                .map_err(db_err)?
                .map(|r| r.map_err(db_err).and_then(|body| from_json::<Source>(&body)))
                .collect::<DbResult<Vec<_>>>()?;
            Ok(page_from(rows, limit, |s| s.name.clone()))
        })
        .await
    }

    async fn replace_source(&self, source: &Source) -> DbResult<()> {
        let (source, body) = (source.clone(), to_json(source)?);
        self.write_registry(move |conn| {
            let updated = conn
                .execute(
                    "UPDATE sources SET version = ?2, body = ?3 WHERE name = ?1 AND version = ?4",
                    params![source.name.as_str(), source.version.0, body, source.version.0 - 1],
                )
                .map_err(db_err)?;
            if updated == 1 {
                return Ok(());
            }
            match source_version(conn, &source.name)? {
                None => Err(Error::NotFound { what: "source", id: source.name.to_string() }),
                Some(current) => Err(Error::VersionMismatch { what: "source", id: source.name.to_string(), current }),
            }
        })
        .await
    }

    async fn delete_source(&self, name: &SourceName, expected: Option<Version>) -> DbResult<()> {
        let name = name.clone();
        self.write_registry(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let Some(current) = source_version(&tx, &name)? else {
                return Err(Error::NotFound { what: "source", id: name.to_string() });
            };
            if expected.is_some_and(|v| v != current) {
                return Err(Error::VersionMismatch { what: "source", id: name.to_string(), current });
            }
            tx.execute("DELETE FROM sources WHERE name = ?1", [name.as_str()]).map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn all_sources(&self) -> DbResult<Vec<Source>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT body FROM sources ORDER BY name").map_err(db_err)?;
            let rows = stmt
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(db_err)?
                .map(|r| r.map_err(db_err).and_then(|body| from_json::<Source>(&body)))
                .collect::<DbResult<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}

/// The one row `sql` selects, its first column read as a JSON body.
fn body_of<T: serde::de::DeserializeOwned>(conn: &Connection, sql: &str, params: impl Params) -> DbResult<Option<T>> {
    conn.query_row(sql, params, |row| row.get::<_, String>(0))
        .optional()
        .map_err(db_err)?
        .map(|body| from_json(&body))
        .transpose()
}

/// Every row `sql` selects, each one's first column read as a JSON body.
fn bodies_of<T: serde::de::DeserializeOwned>(conn: &Connection, sql: &str, params: impl Params) -> DbResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let rows = stmt
        .query_map(params, |row| row.get::<_, String>(0))
        .map_err(db_err)?
        .map(|r| r.map_err(db_err).and_then(|body| from_json(&body)))
        .collect::<DbResult<Vec<_>>>()?;
    Ok(rows)
}

fn schema_revision(tx: &Connection, name: &SchemaName) -> DbResult<Option<Version>> {
    tx.query_row("SELECT revision FROM schemas WHERE name = ?1", [name.as_str()], |row| row.get::<_, u64>(0))
        .optional()
        .map(|v| v.map(Version))
        .map_err(db_err)
}

/// `NotFound` if the schema is gone, `VersionMismatch` if its stored revision does not `fit`.
fn check_revision(tx: &Connection, name: &SchemaName, fits: impl FnOnce(Version) -> bool) -> DbResult<()> {
    match schema_revision(tx, name)? {
        None => Err(Error::NotFound { what: "schema", id: name.to_string() }),
        Some(current) if !fits(current) => {
            Err(Error::VersionMismatch { what: "schema", id: name.to_string(), current })
        }
        Some(_) => Ok(()),
    }
}

/// How a referrer is kept in `schema_referrers`: its kind, and its name.
fn referrer_key(referrer: &Referrer) -> (&'static str, &str) {
    match referrer {
        Referrer::Event(name) => ("event", name.as_str()),
        Referrer::Schema(name) => ("schema", name.as_str()),
    }
}

fn referrer_from_row(kind: &str, name: &str) -> DbResult<Referrer> {
    let corrupt = || Error::unavailable(format!("stored referrer {kind} '{name}' is invalid"));
    match kind {
        "event" => EventName::parse(name).map(Referrer::Event).map_err(|_| corrupt()),
        "schema" => SchemaName::parse(name).map(Referrer::Schema).map_err(|_| corrupt()),
        _ => Err(corrupt()),
    }
}

/// Records `referrer` as referring to each schema `references` name, each of which must be
/// registered (`NotFound` otherwise): checked in the writer's transaction, so that a schema
/// deleted meanwhile cannot be left referred to. A schema's references to its own versions make
/// no referrer, or it could never be deleted.
fn refer(tx: &Connection, referrer: &Referrer, references: &[SchemaReference]) -> DbResult<()> {
    let (kind, name) = referrer_key(referrer);
    let own = match referrer {
        Referrer::Schema(own) => Some(own),
        Referrer::Event(_) => None,
    };
    let mut record = tx
        .prepare_cached(
            "INSERT INTO schema_referrers (schema, kind, referrer) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )
        .map_err(db_err)?;
    for referred in references.iter().map(|r| &r.schema).filter(|s| Some(*s) != own) {
        if schema_revision(tx, referred)?.is_none() {
            return Err(Error::NotFound { what: "schema", id: referred.to_string() });
        }
        record.execute(params![referred.as_str(), kind, name]).map_err(db_err)?;
    }
    Ok(())
}

/// Forgets everything `referrer` refers to: it is gone, or about to refer anew.
fn unrefer(tx: &Connection, referrer: &Referrer) -> DbResult<()> {
    let (kind, name) = referrer_key(referrer);
    tx.execute("DELETE FROM schema_referrers WHERE kind = ?1 AND referrer = ?2", params![kind, name])
        .map_err(db_err)?;
    Ok(())
}

/// Everything that refers to `name`, sorted.
fn referrers_of(tx: &Connection, name: &SchemaName) -> DbResult<Vec<Referrer>> {
    let mut stmt =
        tx.prepare_cached("SELECT kind, referrer FROM schema_referrers WHERE schema = ?1").map_err(db_err)?;
    let mut referrers = stmt
        .query_map([name.as_str()], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
        .map_err(db_err)?
        .map(|r| r.map_err(db_err).and_then(|(kind, referrer)| referrer_from_row(&kind, &referrer)))
        .collect::<DbResult<Vec<_>>>()?;
    referrers.sort();
    Ok(referrers)
}

/// Writes `version` (its JSON is `body`) under its URI, and records what it refers to.
/// `SchemaUriTaken`, naming the holder, if another version has the URI.
fn insert_version(tx: &Connection, version: &SchemaVersion, body: &str) -> DbResult<()> {
    let inserted = tx
        .execute(
            "INSERT INTO schema_versions (schema, version, uri, body) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(uri) DO NOTHING",
            params![version.name.as_str(), version.version, version.uri.as_str(), body],
        )
        .map_err(db_err)?;
    if inserted == 0 {
        let (holder, number) = tx
            .query_row("SELECT schema, version FROM schema_versions WHERE uri = ?1", [version.uri.as_str()], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, u32>(1)?))
            })
            .map_err(db_err)?;
        let holder = SchemaName::parse(&holder)
            .map_err(|_| Error::unavailable("stored schema version has an invalid schema name"))?;
        return Err(Error::SchemaUriTaken { uri: version.uri.clone(), schema: holder, version: number });
    }
    refer(tx, &Referrer::Schema(version.name.clone()), &version.references)
}

#[async_trait]
impl SchemaLookup for SqliteStore {
    async fn schema_by_uri(&self, uri: &SchemaUri) -> DbResult<Option<SchemaVersion>> {
        let uri = uri.clone();
        self.read(move |conn| body_of(conn, "SELECT body FROM schema_versions WHERE uri = ?1", [uri.as_str()])).await
    }
}

#[async_trait]
impl SchemaStore for SqliteStore {
    async fn create_schema(&self, schema: &Schema, first: &SchemaVersion) -> DbResult<()> {
        let (name, revision, body) = (schema.name.clone(), schema.revision.0, to_json(schema)?);
        let (first, first_body) = (first.clone(), to_json(first)?);
        self.write_registry(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let inserted = tx
                .execute(
                    "INSERT INTO schemas (name, revision, body) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO NOTHING",
                    params![name.as_str(), revision, body],
                )
                .map_err(db_err)?;
            if inserted == 0 {
                return Err(Error::SchemaExists(name));
            }
            insert_version(&tx, &first, &first_body)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn add_schema_version(&self, schema: &Schema, version: &SchemaVersion) -> DbResult<()> {
        let (name, revision, body) = (schema.name.clone(), schema.revision, to_json(schema)?);
        let (version, version_body) = (version.clone(), to_json(version)?);
        self.write_registry(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            check_revision(&tx, &name, |current| current.next() == revision)?;
            insert_version(&tx, &version, &version_body)?;
            tx.execute(
                "UPDATE schemas SET revision = ?2, body = ?3 WHERE name = ?1",
                params![name.as_str(), revision.0, body],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn get_schema(&self, name: &SchemaName) -> DbResult<Option<Schema>> {
        let name = name.clone();
        self.read(move |conn| body_of(conn, "SELECT body FROM schemas WHERE name = ?1", [name.as_str()])).await
    }

    async fn list_schemas(&self, page: &PageRequest) -> DbResult<Page<Schema>> {
        let after: String =
            page.cursor.as_deref().map(decode_cursor::<SchemaName>).transpose()?.map(String::from).unwrap_or_default();
        let limit = page.limit;
        self.read(move |conn| {
            let rows: Vec<Schema> = bodies_of(
                conn,
                "SELECT body FROM schemas WHERE name > ?1 ORDER BY name LIMIT ?2",
                params![after, limit + 1],
            )?;
            Ok(page_from(rows, limit, |s| s.name.clone()))
        })
        .await
    }

    async fn get_schema_version(&self, name: &SchemaName, version: u32) -> DbResult<Option<SchemaVersion>> {
        let name = name.clone();
        self.read(move |conn| {
            body_of(
                conn,
                "SELECT body FROM schema_versions WHERE schema = ?1 AND version = ?2",
                params![name.as_str(), version],
            )
        })
        .await
    }

    async fn schema_versions(&self, name: &SchemaName) -> DbResult<Vec<SchemaVersionSummary>> {
        let name = name.clone();
        // Only what a listing shows: not the documents, which may be 64 KiB each.
        self.read(move |conn| {
            bodies_of(
                conn,
                "SELECT json_object('version', version, 'uri', uri, 'digest', json_extract(body, '$.digest'), \
                 'createdAt', json_extract(body, '$.createdAt')) FROM schema_versions WHERE schema = ?1 ORDER BY version",
                [name.as_str()],
            )
        })
        .await
    }

    async fn replace_schema(&self, schema: &Schema) -> DbResult<()> {
        let change = schema.clone();
        self.write_registry(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            check_revision(&tx, &change.name, |current| current.next() == change.revision)?;
            let stored: Schema = body_of(&tx, "SELECT body FROM schemas WHERE name = ?1", [change.name.as_str()])?
                .ok_or_else(|| Error::NotFound { what: "schema", id: change.name.to_string() })?;
            // Only what a change may change: the versions, and so the latest one, are the store's.
            let next = Schema {
                compatibility: change.compatibility,
                description: change.description,
                updated_at: change.updated_at,
                revision: change.revision,
                ..stored
            };
            tx.execute(
                "UPDATE schemas SET revision = ?2, body = ?3 WHERE name = ?1",
                params![next.name.as_str(), next.revision.0, to_json(&next)?],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn delete_schema(&self, name: &SchemaName, expected: Option<Version>) -> DbResult<()> {
        let name = name.clone();
        self.write_registry(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            check_revision(&tx, &name, |current| expected.is_none_or(|v| v == current))?;
            let referrers = referrers_of(&tx, &name)?;
            if !referrers.is_empty() {
                return Err(Error::SchemaReferenced { schema: name, referrers });
            }
            unrefer(&tx, &Referrer::Schema(name.clone()))?;
            tx.execute("DELETE FROM schema_versions WHERE schema = ?1", [name.as_str()]).map_err(db_err)?;
            tx.execute("DELETE FROM schemas WHERE name = ?1", [name.as_str()]).map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }
}

#[async_trait]
impl TriggerSource for SqliteStore {
    async fn trigger_target(&self, name: &EventName) -> DbResult<Option<TriggerTarget>> {
        if let Some(target) = self.targets.get(name) {
            return Ok(Some(target));
        }
        let generation = self.targets.generation();
        let event = name.clone();
        let read = self
            .read(move |conn| {
                let tx = conn.transaction().map_err(db_err)?;
                let Some(definition) = read_event(&tx, &event)? else {
                    return Ok(None);
                };
                let mut stmt =
                    tx.prepare_cached("SELECT body FROM subscriptions WHERE event = ?1 ORDER BY id").map_err(db_err)?;
                let subscriptions = stmt
                    .query_map([event.as_str()], |row| row.get::<_, String>(0))
                    .map_err(db_err)?
                    .map(|r| r.map_err(db_err).and_then(|body| from_json::<Subscription>(&body)).map(Arc::new))
                    .collect::<DbResult<Vec<_>>>()?;
                Ok(Some(TriggerTarget { definition: Arc::new(definition), subscriptions }))
            })
            .await?;
        if let Some(target) = &read {
            self.targets.put(name.clone(), generation, target.clone());
        }
        Ok(read)
    }
}

#[async_trait]
impl TriggerAcceptor for SqliteStore {
    async fn accept(&self, trigger: &Trigger, idempotency_key: Option<&IdempotencyKey>) -> DbResult<Acceptance> {
        let receipt = to_json(&trigger.receipt())?;
        self.group_commit.accept(trigger.clone(), idempotency_key.cloned(), receipt).await
    }
}

/// The first receipt for `key`, if it is still inside the idempotency window; an error if that
/// first trigger carried another payload.
fn replay(tx: &Connection, trigger: &Trigger, key: &IdempotencyKey) -> DbResult<Option<TriggerReceipt>> {
    let found = tx
        .query_row(
            "SELECT receipt, received_at, data_type, payload FROM triggers WHERE event = ?1 AND idempotency_key = ?2",
            params![trigger.event.as_str(), key.as_str()],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Vec<u8>>(3)?,
                ))
            },
        )
        .optional()
        .map_err(db_err)?;
    let Some((receipt, received_at, data_type, payload)) = found else {
        return Ok(None);
    };
    let window = chrono::Duration::from_std(key.window()).unwrap_or_default();
    if parse_ts(&received_at)? + window > trigger.received_at {
        if data_type != trigger.data_type.as_str() || payload != trigger.payload {
            return Err(Error::IdempotencyKeyReused { event: trigger.event.clone(), key: key.clone() });
        }
        return Ok(Some(from_json(&receipt)?));
    }
    tx.execute(
        "UPDATE triggers SET idempotency_key = NULL WHERE event = ?1 AND idempotency_key = ?2",
        params![trigger.event.as_str(), key.as_str()],
    )
    .map_err(db_err)?;
    Ok(None)
}

/// Writes an accepted trigger and its deliveries; the event's `receivedAt` is the group's to
/// write (`connections::commit_group`), once per event.
fn insert_trigger(tx: &Connection, trigger: &Trigger, key: Option<&IdempotencyKey>, receipt: &str) -> DbResult<()> {
    let received_at = ts(trigger.received_at);
    // Cached: parsing the statement again for every trigger was a good part of the writer's time.
    tx.prepare_cached(
        "INSERT INTO triggers (event_id, event, received_at, data_type, payload, idempotency_key, receipt, source, cloud_event) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .map_err(db_err)?
    .execute(params![
            trigger.event_id.to_string(),
            trigger.event.as_str(),
            received_at,
            trigger.data_type.as_str(),
            trigger.payload,
            key.map(IdempotencyKey::as_str),
            receipt,
            trigger.source.as_ref().map(to_json).transpose()?,
            trigger.cloud_event.as_ref().map(to_json).transpose()?
        ],
    )
    .map_err(db_err)?;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO deliveries (event_id, subscription_id, event, function_id, metadata, status, attempts, received_at, updated_at, next_attempt_at, policy, format)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6, ?7, ?8, ?9)",
        )
        .map_err(db_err)?;
    for d in &trigger.deliveries {
        insert
            .execute(params![
                d.event_id.to_string(),
                d.subscription_id.to_string(),
                d.event.as_str(),
                d.function_id.as_str(),
                to_json(&d.metadata)?,
                received_at,
                trigger.received_at.timestamp_millis(),
                policy_json(&d.policy)?,
                format_column(d.format)
            ])
            .map_err(db_err)?;
    }
    Ok(())
}

const DELIVERY_COLUMNS: &str = "d.event_id, d.subscription_id, d.event, d.function_id, d.metadata, d.status, d.attempts, d.last_error, d.received_at, d.updated_at, d.generation, d.redriven_at, d.policy, d.history, d.format";
/// How many columns `DELIVERY_COLUMNS` selects: a query's own columns come after them.
const DELIVERY_COLUMN_COUNT: usize = 15;

/// A payload format as its column holds it: NULL for `native`, as in a row from before formats.
fn format_column(format: PayloadFormat) -> Option<&'static str> {
    (!format.is_native()).then(|| format.as_str())
}

/// A delivery's columns as SQLite holds them, read before they are checked.
struct DeliveryRow {
    text: [Option<String>; 10],
    attempts: u32,
    generation: u32,
    policy: Option<String>,
    history: Option<String>,
    format: Option<String>,
}

fn delivery_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        text: [
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            row.get(7)?,
            row.get(8)?,
            row.get(9)?,
            row.get(11)?,
        ],
        attempts: row.get(6)?,
        generation: row.get(10)?,
        policy: row.get(12)?,
        history: row.get(13)?,
        format: row.get(14)?,
    })
}

fn delivery_from_columns(row: DeliveryRow) -> DbResult<Delivery> {
    let c = &row.text;
    let text = |i: usize| c[i].as_deref().ok_or_else(|| Error::unavailable(format!("delivery column {i} is NULL")));
    let corrupt = |what: &str| Error::unavailable(format!("stored delivery has an invalid {what}"));
    Ok(Delivery {
        event_id: EventId::parse(text(0)?).map_err(|_| corrupt("event id"))?,
        subscription_id: SubscriptionId::parse(text(1)?).map_err(|_| corrupt("subscription id"))?,
        event: EventName::parse(text(2)?).map_err(|_| corrupt("event"))?,
        function_id: gateway_core::FunctionId::parse(text(3)?).map_err(|_| corrupt("function id"))?,
        metadata: from_json(text(4)?)?,
        status: DeliveryStatus::parse(text(5)?).ok_or_else(|| corrupt("status"))?,
        attempts: row.attempts,
        last_error: c[6].clone(),
        received_at: parse_ts(text(7)?)?,
        updated_at: parse_ts(text(8)?)?,
        generation: row.generation,
        redriven_at: c[9].as_deref().map(parse_ts).transpose()?,
        // A delivery from before delivery policies (or with the default one) has none stored.
        policy: row.policy.as_deref().map(from_json).transpose()?.unwrap_or_default(),
        history: row.history.as_deref().map(from_json).transpose()?.unwrap_or_default(),
        format: match row.format.as_deref() {
            None => PayloadFormat::Native,
            Some(raw) => PayloadFormat::parse(raw).ok_or_else(|| corrupt("format"))?,
        },
        // Lambda reports outcomes to the cloud gateway only (its destinations); `cargo lambda
        // watch` has none.
        reported: None,
    })
}

/// A policy as its column holds it: NULL for the default, as in a row from before policies.
fn policy_json(policy: &DeliveryPolicy) -> DbResult<Option<String>> {
    if policy.is_default() {
        Ok(None)
    } else {
        to_json(policy).map(Some)
    }
}

/// A history as its column holds it: NULL for none.
fn history_json(history: &[Attempt]) -> DbResult<Option<String>> {
    if history.is_empty() {
        Ok(None)
    } else {
        to_json(&history).map(Some)
    }
}

/// Every delivery `sql` selects (its columns first `DELIVERY_COLUMNS`).
fn deliveries_of(conn: &Connection, sql: &str, params: impl Params) -> DbResult<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let rows = stmt
        .query_map(params, delivery_from_row)
        .map_err(db_err)?
        .map(|r| r.map_err(db_err).and_then(delivery_from_columns))
        .collect::<DbResult<Vec<_>>>()?;
    Ok(rows)
}

fn trigger_exists(conn: &Connection, event_id: &str) -> DbResult<bool> {
    conn.query_row("SELECT 1 FROM triggers WHERE event_id = ?1", [event_id], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
        .map_err(db_err)
}

#[async_trait]
impl DeliveryLog for SqliteStore {
    async fn deliveries_of_trigger(&self, event_id: &EventId) -> DbResult<Option<Vec<Delivery>>> {
        let id = event_id.to_string();
        self.read(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            if !trigger_exists(&tx, &id)? {
                return Ok(None);
            }
            let sql =
                format!("SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.event_id = ?1 ORDER BY d.subscription_id");
            deliveries_of(&tx, &sql, [&id]).map(Some)
        })
        .await
    }

    async fn deliveries_of_event(&self, event: &EventName, page: &PageRequest) -> DbResult<Page<Delivery>> {
        let after = page.cursor.as_deref().map(decode_cursor::<(EventId, SubscriptionId)>).transpose()?;
        // Past every real id in descending order: "evt_" sorts below "evt~".
        let (after_event, after_sub) =
            after.map(|(e, s)| (e.to_string(), s.to_string())).unwrap_or_else(|| ("evt~".to_owned(), String::new()));
        let (event, limit) = (event.to_string(), page.limit);
        self.read(move |conn| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.event = ?1
                 AND (d.event_id < ?2 OR (d.event_id = ?2 AND d.subscription_id > ?3))
                 ORDER BY d.event_id DESC, d.subscription_id LIMIT ?4"
            );
            let rows = deliveries_of(conn, &sql, params![event, after_event, after_sub, limit + 1])?;
            Ok(page_from(rows, limit, |d| (d.event_id, d.subscription_id)))
        })
        .await
    }
}

#[async_trait]
impl DeliveryOutbox for SqliteStore {
    async fn claim_due(&self, now: DateTime<Utc>, limit: u32, lease: Duration) -> DbResult<Vec<DueDelivery>> {
        let until = now.timestamp_millis().saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        // Through the writer too: a claim taking the writer's connection for a transaction and
        // fsync of its own held the triggers' commits up while it ran.
        self.group_commit.claim(Claim { now, limit, until }).await
    }

    async fn record_attempt(&self, due: &DueDelivery, attempted: &Attempted) -> DbResult<Recorded> {
        let after = &attempted.delivery;
        let row = AttemptRow {
            event_id: due.delivery.event_id.to_string(),
            subscription_id: due.delivery.subscription_id.to_string(),
            claim: due.claim.as_str().to_owned(),
            status: after.status.as_str(),
            attempts: after.attempts,
            last_error: after.last_error.clone(),
            history: history_json(&after.history)?,
            updated_at: ts(after.updated_at),
            next_at: attempted.retry.map(|r| r.at.timestamp_millis()),
        };
        // Through the writer, so that the worker's attempts share commits (and fsyncs) with
        // each other and with acceptances instead of taking one each.
        self.group_commit.record(row).await
    }
}

/// A claim of due deliveries for the worker (`claim_due`): those due at `now`, at most `limit`,
/// each leased until `until` (milliseconds, as `next_attempt_at`).
pub(crate) struct Claim {
    now: DateTime<Utc>,
    limit: u32,
    until: i64,
}

/// Claims the due deliveries `claim` asks for: each gets a new claim token and the lease.
///
/// A due row that cannot be read back (a damaged file, or a row a newer version wrote in a
/// form this one does not know) would otherwise fail every claim, and nothing behind it would
/// ever run: it is set aside as `failed`, with why, where the delivery log shows it and a
/// redrive (by a version that can read it) brings it back, as a queue's dead-letter policy
/// sets a poison message aside.
pub(crate) fn claim_rows(conn: &Connection, claim: &Claim) -> DbResult<Vec<DueDelivery>> {
    let Claim { now, limit, until } = *claim;
    let now_ms = now.timestamp_millis();
    let rows = {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS}, t.data_type, t.payload, t.source, t.cloud_event FROM deliveries d JOIN triggers t ON t.event_id = d.event_id
             WHERE d.status = 'pending' AND d.next_attempt_at <= ?1 AND (d.leased_until IS NULL OR d.leased_until <= ?1)
             ORDER BY d.next_attempt_at LIMIT ?2"
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
        let rows = stmt
            .query_map(params![now_ms, limit], |row| {
                let n = DELIVERY_COLUMN_COUNT;
                // (the key columns are the primary key's, never NULL)
                let key = (row.get::<_, String>(0)?, row.get::<_, String>(1)?);
                let columns: rusqlite::Result<_> = (|| {
                    Ok((
                        delivery_from_row(row)?,
                        row.get::<_, String>(n)?,
                        row.get::<_, Vec<u8>>(n + 1)?,
                        row.get::<_, Option<String>>(n + 2)?,
                        row.get::<_, Option<String>>(n + 3)?,
                    ))
                })();
                Ok((key, columns))
            })
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        rows
    };
    let mut due = Vec::new();
    for ((event_id, subscription_id), columns) in rows {
        let read = columns.map_err(db_err).and_then(|(columns, data_type, payload, source, cloud_event)| {
            let data_type = DataType::parse(&data_type)
                .map_err(|_| Error::unavailable("stored trigger has an invalid data type"))?;
            let source = source.as_deref().map(from_json).transpose()?;
            let cloud_event = cloud_event.as_deref().map(from_json).transpose()?;
            let delivery = delivery_from_columns(columns)?;
            Ok(DueDelivery { delivery, data_type, payload, source, cloud_event, claim: ClaimToken::new() })
        });
        match read {
            Ok(d) => due.push(d),
            Err(error) => {
                tracing::error!(%event_id, %subscription_id, %error, "a due delivery cannot be read; set aside as failed so that the rest run");
                let why = format!("the gateway cannot read this delivery from its outbox: {error}");
                conn.prepare_cached(
                    "UPDATE deliveries SET status = 'failed', last_error = ?3, updated_at = ?4, leased_until = NULL, claim_token = NULL
                     WHERE event_id = ?1 AND subscription_id = ?2 AND status = 'pending'",
                )
                .and_then(|mut fail| fail.execute(params![event_id, subscription_id, why, ts(now)]))
                .map_err(db_err)?;
            }
        }
    }
    let mut lease = conn
        .prepare_cached(
            "UPDATE deliveries SET leased_until = ?3, claim_token = ?4 WHERE event_id = ?1 AND subscription_id = ?2",
        )
        .map_err(db_err)?;
    for d in &due {
        lease
            .execute(params![
                d.delivery.event_id.to_string(),
                d.delivery.subscription_id.to_string(),
                until,
                d.claim.as_str()
            ])
            .map_err(db_err)?;
    }
    Ok(due)
}

/// An attempt's outcome as the `deliveries` row takes it (`record_attempt`).
pub(crate) struct AttemptRow {
    event_id: String,
    subscription_id: String,
    claim: String,
    status: &'static str,
    attempts: u32,
    last_error: Option<String>,
    history: Option<String>,
    updated_at: String,
    next_at: Option<i64>,
}

/// Writes `row` if its claim is still the delivery's; `ClaimLost` (nothing written) otherwise.
pub(crate) fn record_attempt_row(conn: &Connection, row: &AttemptRow) -> DbResult<Recorded> {
    // Only the current claim of a pending delivery records: a slower attempt whose lease ran out
    // finds the token changed (or the row settled, or redriven) and writes nothing.
    let updated = conn
        .prepare_cached(
            "UPDATE deliveries SET status = ?3, attempts = ?4, last_error = ?5, history = ?6, updated_at = ?7,
             next_attempt_at = coalesce(?8, next_attempt_at), leased_until = NULL, claim_token = NULL
             WHERE event_id = ?1 AND subscription_id = ?2 AND claim_token = ?9 AND status = 'pending'",
        )
        .and_then(|mut update| {
            update.execute(params![
                row.event_id,
                row.subscription_id,
                row.status,
                row.attempts,
                row.last_error,
                row.history,
                row.updated_at,
                row.next_at,
                row.claim
            ])
        })
        .map_err(db_err)?;
    if updated == 1 {
        return Ok(Recorded::Recorded);
    }
    let exists = conn
        .query_row(
            "SELECT 1 FROM deliveries WHERE event_id = ?1 AND subscription_id = ?2",
            params![row.event_id, row.subscription_id],
            |_| Ok(()),
        )
        .optional()
        .map_err(db_err)?;
    match exists {
        Some(()) => Ok(Recorded::ClaimLost),
        None => Err(Error::NotFound { what: "delivery", id: format!("{}/{}", row.event_id, row.subscription_id) }),
    }
}

#[async_trait]
impl DeliveryRedrive for SqliteStore {
    async fn failed_of_trigger(
        &self,
        event_id: &EventId,
        subscription: Option<&SubscriptionId>,
    ) -> DbResult<Option<Vec<Delivery>>> {
        let (id, subscription) = (event_id.to_string(), subscription.map(SubscriptionId::to_string));
        self.read(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            if !trigger_exists(&tx, &id)? {
                return Ok(None);
            }
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.event_id = ?1 AND d.status = 'failed'
                 AND (?2 IS NULL OR d.subscription_id = ?2) ORDER BY d.subscription_id"
            );
            deliveries_of(&tx, &sql, params![id, subscription]).map(Some)
        })
        .await
    }

    async fn failed_of_subscription(
        &self,
        subscription: &SubscriptionId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> DbResult<Vec<Delivery>> {
        let (subscription, since, until) = (subscription.to_string(), ts(since), ts(until));
        self.read(move |conn| {
            // `received_at` is written in one fixed format (`ts`), so text order is time order
            // and the range is read from `deliveries_by_subscription`.
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.subscription_id = ?1 AND d.status = 'failed'
                 AND d.received_at >= ?2 AND d.received_at < ?3 ORDER BY d.received_at, d.event_id LIMIT ?4"
            );
            deliveries_of(conn, &sql, params![subscription, since, until, limit])
        })
        .await
    }

    async fn redrive(&self, next: &Delivery) -> DbResult<bool> {
        let Some(previous) = next.generation.checked_sub(1) else {
            return Ok(false); // generation 0 is the trigger's own series: never a redrive
        };
        let next = next.clone();
        self.run(move |conn| {
            let due = next.redriven_at.unwrap_or(next.updated_at);
            // One conditional write: of two redrives racing (or one repeated), only the first
            // finds the delivery still failed at the earlier generation.
            let updated = conn
                .execute(
                    "UPDATE deliveries SET status = ?3, attempts = ?4, generation = ?5, redriven_at = ?6, policy = ?7,
                     function_id = ?8, metadata = ?9, last_error = ?10, history = ?11, updated_at = ?12,
                     next_attempt_at = ?13, leased_until = NULL, claim_token = NULL, format = ?15
                     WHERE event_id = ?1 AND subscription_id = ?2 AND status = 'failed' AND generation = ?14",
                    params![
                        next.event_id.to_string(),
                        next.subscription_id.to_string(),
                        next.status.as_str(),
                        next.attempts,
                        next.generation,
                        ts(due),
                        policy_json(&next.policy)?,
                        next.function_id.as_str(),
                        to_json(&next.metadata)?,
                        next.last_error,
                        history_json(&next.history)?,
                        ts(next.updated_at),
                        due.timestamp_millis(),
                        previous,
                        format_column(next.format)
                    ],
                )
                .map_err(db_err)?;
            Ok(updated == 1)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use gateway_core::{fixtures, store_contract};

    use super::*;

    #[tokio::test]
    async fn the_sqlite_store_keeps_the_store_contract() {
        let store = SqliteStore::in_memory().unwrap();
        store_contract::registry_contract(&store).await;
        store_contract::trigger_contract(&store).await;
        store_contract::outbox_contract(&store).await;
        store_contract::redrive_contract(&store).await;
        store_contract::sources_contract(&store).await;
        store_contract::schemas_contract(&store).await;
    }

    /// `due` after one attempt that settled it in `status` (with `error`, if it failed).
    fn settled_by(due: &DueDelivery, status: DeliveryStatus, error: Option<&str>) -> Attempted {
        let delivery = Delivery {
            status,
            attempts: due.delivery.attempts + 1,
            last_error: error.map(str::to_owned).or_else(|| due.delivery.last_error.clone()),
            ..due.delivery.clone()
        };
        Attempted { delivery, retry: None }
    }

    /// A file in a folder of its own, removed with the folder when the test is done with it.
    fn temp_file() -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("gateway-sqlite-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.db");
        (dir, path)
    }

    /// Accepts a trigger of `event` received at `received_at`, with one delivery per subscription.
    async fn trigger_at(store: &SqliteStore, event: &EventName, received_at: DateTime<Utc>) -> Trigger {
        let gateway_core::ports::TriggerTarget { definition, subscriptions: subs } =
            store.trigger_target(event).await.unwrap().unwrap();
        let trigger = gateway_core::trigger::accepted_trigger(
            &definition,
            &subs,
            br#"{"n":1}"#.to_vec(),
            received_at,
            &gateway_core::ports::UlidSource,
        );
        assert_eq!(store.accept(&trigger, None).await.unwrap(), Acceptance::Accepted);
        trigger
    }

    #[tokio::test]
    async fn settled_triggers_past_their_retention_are_forgotten_and_pending_ones_kept() {
        let store = SqliteStore::in_memory().unwrap();
        let name = EventName::parse("order.created").unwrap();
        store.create_event(&fixtures::definition("order.created")).await.unwrap();
        for function in ["fn-a", "fn-b"] {
            store.create_subscription(&fixtures::subscription(&name, function, Default::default())).await.unwrap();
        }
        let now: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
        let retention = DeliveryRetention::days(7).unwrap();
        let old = now - chrono::Duration::days(8);
        let settled = trigger_at(&store, &name, old).await;
        let half_done = trigger_at(&store, &name, old).await;
        let recent = trigger_at(&store, &name, now - chrono::Duration::days(6)).await;
        // Settle the old trigger and the recent one; of the half-done one, fail one delivery.
        let due = store.claim_due(now, 100, Duration::from_secs(30)).await.unwrap();
        for d in &due {
            let outcome = if d.delivery.event_id == half_done.event_id {
                if d.delivery.subscription_id != half_done.deliveries[0].subscription_id {
                    continue;
                }
                settled_by(d, DeliveryStatus::Failed, Some("gone"))
            } else {
                settled_by(d, DeliveryStatus::Invoked, None)
            };
            assert_eq!(store.record_attempt(d, &outcome).await.unwrap(), Recorded::Recorded);
        }
        store.release_claims().await.unwrap();

        assert_eq!(store.forget_settled_triggers(now, retention, 10).await.unwrap(), 1);
        assert_eq!(store.deliveries_of_trigger(&settled.event_id).await.unwrap(), None, "past retention and settled");
        let kept = store.deliveries_of_trigger(&half_done.event_id).await.unwrap().expect("a delivery is pending");
        assert_eq!(kept.len(), 2, "a trigger's log is kept whole");
        assert_eq!(store.deliveries_of_trigger(&recent.event_id).await.unwrap().map(|d| d.len()), Some(2));
        let due = store.claim_due(now, 100, Duration::from_secs(30)).await.unwrap();
        assert_eq!(due.len(), 1, "the pending delivery still runs");
        assert_eq!(due[0].payload, half_done.payload);
        assert_eq!(store.forget_settled_triggers(now, retention, 10).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_due_delivery_that_cannot_be_read_is_set_aside_as_failed_and_the_others_still_run() {
        // GIVEN two accepted triggers, the first one's delivery row damaged (its policy no JSON)
        let store = SqliteStore::in_memory().unwrap();
        let name = EventName::parse("order.created").unwrap();
        store.create_event(&fixtures::definition("order.created")).await.unwrap();
        store.create_subscription(&fixtures::subscription(&name, "fn-a", Default::default())).await.unwrap();
        let now: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
        let damaged = trigger_at(&store, &name, now - chrono::Duration::seconds(2)).await;
        let sound = trigger_at(&store, &name, now - chrono::Duration::seconds(1)).await;
        connections::lock(&store.conn)
            .execute("UPDATE deliveries SET policy = '{not json' WHERE event_id = ?1", [damaged.event_id.to_string()])
            .unwrap();

        // WHEN the worker claims what is due
        let due = store.claim_due(now, 10, Duration::from_secs(30)).await.unwrap();

        // THEN the sound delivery is claimed, though the damaged one is due before it
        assert_eq!(due.iter().map(|d| d.delivery.event_id).collect::<Vec<_>>(), vec![sound.event_id]);
        // AND the damaged one is failed, saying why, and no longer due
        let (status, error): (String, String) = connections::lock(&store.conn)
            .query_row(
                "SELECT status, last_error FROM deliveries WHERE event_id = ?1",
                [damaged.event_id.to_string()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(status, "failed");
        assert!(error.starts_with("the gateway cannot read this delivery from its outbox"), "{error}");
        store.release_claims().await.unwrap();
        let again = store.claim_due(now, 10, Duration::from_secs(30)).await.unwrap();
        assert_eq!(again.len(), 1, "only the sound delivery is due again once its claim is released");
    }

    #[tokio::test]
    async fn a_database_made_before_claim_tokens_and_sources_gets_the_columns_on_open() {
        let (dir, path) = temp_file();
        let old = Connection::open(&path).unwrap();
        let before = schema::SCHEMA.replace("    claim_token     TEXT,\n", "").replace(
            "    receipt         TEXT NOT NULL,\n    -- The native record that triggered it (JSON), if one did.\n    source          TEXT\n",
            "    receipt         TEXT NOT NULL\n",
        );
        assert!(
            !before.contains("claim_token") && !before.contains("    source          TEXT"),
            "the old schema has neither column"
        );
        old.execute_batch(&before).unwrap();
        drop(old);
        let store = SqliteStore::open(&path).unwrap();
        store_contract::outbox_contract(&store).await;
        drop(store);
        SqliteStore::open(&path).expect("opening again adds nothing twice");
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_database_made_before_the_delivery_strategy_reads_old_rows_with_defaults_and_redrives_them() {
        // GIVEN a file with the tables of before the delivery strategy, holding a subscription
        // and a failed delivery as they were stored then
        let (dir, path) = temp_file();
        let mut before = schema::SCHEMA.to_owned();
        for added in [
            "    -- The series of attempts: 0 for the trigger's, one more for each redrive (redriven_at).\n    generation      INTEGER NOT NULL DEFAULT 0,\n    redriven_at     TEXT,\n",
            "    -- The subscription's delivery policy when the series began (JSON; NULL: the default).\n    policy          TEXT,\n",
            "    -- The last attempts, oldest first (JSON array; NULL: none yet).\n    history         TEXT,\n",
        ] {
            assert!(before.contains(added), "the schema still has {added}");
            before = before.replace(added, "");
        }
        assert!(!before.contains("generation") && !before.contains("history"), "the old schema has neither column");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(&before).unwrap();
        let event = r#"{"name":"orders.created","dataType":"application/json","metadata":{},"createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z","version":1}"#;
        old.execute("INSERT INTO events (name, version, body) VALUES ('orders.created', 1, ?1)", [event]).unwrap();
        let sub_id = "sub_01JDQ3V6J9K2M4N5P6Q7R8S9T0";
        let subscription = format!(
            r#"{{"subscriptionId":"{sub_id}","event":"orders.created","functionId":"fn-a","metadata":{{}},"createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z","version":1}}"#
        );
        old.execute(
            "INSERT INTO subscriptions (id, event, version, body) VALUES (?1, 'orders.created', 1, ?2)",
            params![sub_id, subscription],
        )
        .unwrap();
        let event_id = "evt_01JDQ3V6J9K2M4N5P6Q7R8S9T1";
        old.execute(
            "INSERT INTO triggers (event_id, event, received_at, data_type, payload, receipt) VALUES (?1, 'orders.created', '2026-01-02T00:00:00.000Z', 'application/json', ?2, '{}')",
            params![event_id, br#"{"n":1}"#.to_vec()],
        )
        .unwrap();
        old.execute(
            "INSERT INTO deliveries (event_id, subscription_id, event, function_id, metadata, status, attempts, last_error, received_at, updated_at, next_attempt_at)
             VALUES (?1, ?2, 'orders.created', 'fn-a', '{}', 'failed', 8, 'attempt 8 of 8: boom', '2026-01-02T00:00:00.000Z', '2026-01-02T00:10:00.000Z', 0)",
            params![event_id, sub_id],
        )
        .unwrap();
        drop(old);

        // WHEN it is opened
        let store = SqliteStore::open(&path).unwrap();

        // THEN the subscription reads back unfiltered with the default policy...
        let sub = store.get_subscription(&SubscriptionId::parse(sub_id).unwrap()).await.unwrap().unwrap();
        assert_eq!((sub.filter, sub.delivery), (None, DeliveryPolicy::default()));
        // ...AND the delivery as the trigger's series, default policy, no history
        let event_id = EventId::parse(event_id).unwrap();
        let failed = store.failed_of_trigger(&event_id, None).await.unwrap().expect("the trigger is kept");
        assert_eq!(failed.len(), 1);
        let d = &failed[0];
        assert_eq!((d.generation, d.redriven_at, d.policy, d.history.len()), (0, None, DeliveryPolicy::default(), 0));
        assert_eq!((d.attempts, d.last_error.as_deref()), (8, Some("attempt 8 of 8: boom")));
        // AND it may be redriven, and then runs with its payload
        let now: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
        assert!(store.redrive(&store_contract::redriven(d, sub.delivery, now)).await.unwrap());
        let due = store.claim_due(now, 10, Duration::from_secs(30)).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].delivery.generation, due[0].payload.as_slice()), (1, br#"{"n":1}"#.as_slice()));
        // AND every contract holds on the migrated file
        store_contract::outbox_contract(&store).await;
        store_contract::redrive_contract(&store).await;
        drop(store);
        SqliteStore::open(&path).expect("opening again adds nothing twice");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_subscriptions_failed_deliveries_are_read_from_their_index() {
        let store = SqliteStore::in_memory().unwrap();
        let conn = store.conn.lock().unwrap();
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.subscription_id = ?1 AND d.status = 'failed'
             AND d.received_at >= ?2 AND d.received_at < ?3 ORDER BY d.received_at, d.event_id LIMIT ?4"
        );
        let plan: Vec<String> = conn
            .prepare(&sql)
            .unwrap()
            .query_map(params!["sub", "a", "b", 10], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|step| step.contains("USING INDEX deliveries_by_subscription (subscription_id=? AND status=? AND received_at>? AND received_at<?)")),
            "{plan:?}"
        );
    }

    #[tokio::test]
    async fn a_native_records_key_outlives_a_clients_by_its_own_window() {
        let store = SqliteStore::in_memory().unwrap();
        let name = EventName::parse("keys.expire").unwrap();
        store.create_event(&fixtures::definition("keys.expire")).await.unwrap();
        let t0: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
        let client = IdempotencyKey::parse("order-7").unwrap();
        let native = IdempotencyKey::native(&gateway_core::SourceName::parse("uploads").unwrap(), "ab12");
        for key in [&client, &native] {
            let gateway_core::ports::TriggerTarget { definition, subscriptions: subs } =
                store.trigger_target(&name).await.unwrap().unwrap();
            let t = gateway_core::trigger::accepted_trigger(
                &definition,
                &subs,
                b"{}".to_vec(),
                t0,
                &gateway_core::ports::UlidSource,
            );
            assert_eq!(store.accept(&t, Some(key)).await.unwrap(), Acceptance::Accepted);
        }
        // Two days on: the client's key is forgotten, the native record's still answers.
        store.expire_idempotency_keys(t0 + chrono::Duration::days(2)).await.unwrap();
        let again = |key: &IdempotencyKey| {
            let store = store.clone();
            let (key, name) = (key.clone(), name.clone());
            async move {
                let gateway_core::ports::TriggerTarget { definition, subscriptions: subs } =
                    store.trigger_target(&name).await.unwrap().unwrap();
                let t = gateway_core::trigger::accepted_trigger(
                    &definition,
                    &subs,
                    b"{}".to_vec(),
                    t0 + chrono::Duration::days(2),
                    &gateway_core::ports::UlidSource,
                );
                store.accept(&t, Some(&key)).await.unwrap()
            }
        };
        assert_eq!(again(&client).await, Acceptance::Accepted, "a new trigger: its key was forgotten");
        assert!(matches!(again(&native).await, Acceptance::Replayed(_)), "still its first trigger");
    }

    #[tokio::test]
    async fn data_survives_reopening_the_file() {
        let (dir, path) = temp_file();
        let store = SqliteStore::open(&path).unwrap();
        store_contract::registry_contract(&store).await;
        let listed = store.list_events(&PageRequest::first(100)).await.unwrap().items.len();
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        assert_eq!(reopened.list_events(&PageRequest::first(100)).await.unwrap().items.len(), listed);
        std::fs::remove_dir_all(dir).ok();
    }

    fn schema(name: &str) -> Schema {
        let at: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
        Schema {
            name: SchemaName::parse(name).unwrap(),
            format: gateway_core::SchemaFormat::JsonSchema,
            compatibility: gateway_core::Compatibility::Backward,
            description: None,
            latest_version: 1,
            created_at: at,
            updated_at: at,
            revision: Version::FIRST,
        }
    }

    /// `schema` after its version `number` was added.
    fn at_version(schema: &Schema, number: u32) -> Schema {
        Schema { latest_version: number, revision: schema.revision.next(), ..schema.clone() }
    }

    /// Version `number` of `name`, at `urn:test:{name}:{number}`, referring to `references`.
    fn version(name: &str, number: u32, references: &[&SchemaVersion]) -> SchemaVersion {
        let document = serde_json::json!({"type": "object", "title": format!("{name} {number}")});
        SchemaVersion {
            name: SchemaName::parse(name).unwrap(),
            version: number,
            uri: SchemaUri::parse(&format!("urn:test:{name}:{number}")).unwrap(),
            format: gateway_core::SchemaFormat::JsonSchema,
            digest: gateway_core::schema::document_digest(&document),
            schema: Arc::new(document),
            references: references.iter().map(|v| v.as_reference()).collect(),
            created_at: "2026-03-01T12:00:00Z".parse().unwrap(),
        }
    }

    fn referrers(result: DbResult<()>) -> Vec<Referrer> {
        match result {
            Err(Error::SchemaReferenced { referrers, .. }) => referrers,
            other => panic!("expected SchemaReferenced, got {other:?}"),
        }
    }

    fn edge_count(store: &SqliteStore) -> u64 {
        let conn = store.conn.lock().unwrap();
        conn.query_row("SELECT count(*) FROM schema_referrers", [], |row| row.get(0)).unwrap()
    }

    #[tokio::test]
    async fn writers_racing_for_one_uri_leave_it_with_one_holder_and_nothing_of_the_others() {
        // GIVEN eight schemas whose first versions all claim the same URI, each writer having
        // found it free (as the use case checks before writing)
        let store = SqliteStore::in_memory().unwrap();
        let uri = SchemaUri::parse("urn:test:contested").unwrap();
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                let name = format!("racer-{i}");
                let first = SchemaVersion { uri: uri.clone(), ..version(&name, 1, &[]) };
                tokio::spawn(async move {
                    let outcome = store.create_schema(&schema(&name), &first).await;
                    (name, outcome)
                })
            })
            .collect();
        // WHEN they all write at once
        let mut outcomes = Vec::new();
        for writer in writers {
            outcomes.push(writer.await.unwrap());
        }
        // THEN one holds the URI, every other is told who does, and left no schema behind
        let winners: Vec<&String> = outcomes.iter().filter(|(_, r)| r.is_ok()).map(|(name, _)| name).collect();
        assert_eq!(winners.len(), 1, "{outcomes:?}");
        let holder = store.schema_by_uri(&uri).await.unwrap().expect("the URI names a version");
        assert_eq!(holder.name.as_str(), winners[0]);
        for (name, outcome) in outcomes.iter().filter(|(_, r)| r.is_err()) {
            match outcome {
                Err(Error::SchemaUriTaken { schema, version: 1, .. }) => assert_eq!(*schema, holder.name),
                other => panic!("expected SchemaUriTaken, got {other:?}"),
            }
            let name = SchemaName::parse(name).unwrap();
            assert_eq!(store.get_schema(&name).await.unwrap(), None, "its schema row went with its version");
        }
    }

    #[tokio::test]
    async fn referrer_edges_follow_every_replace_and_delete_of_their_referrer() {
        // GIVEN schemas a and b, an event referring to both, and a schema s whose version 1
        // refers to a and whose version 2 refers only to s's own version 1
        let store = SqliteStore::in_memory().unwrap();
        let (a, b) = (version("a", 1, &[]), version("b", 1, &[]));
        store.create_schema(&schema("a"), &a).await.unwrap();
        store.create_schema(&schema("b"), &b).await.unwrap();
        let s1 = version("s", 1, &[&a]);
        store.create_schema(&schema("s"), &s1).await.unwrap();
        store.add_schema_version(&at_version(&schema("s"), 2), &version("s", 2, &[&s1])).await.unwrap();
        let name = EventName::parse("people.changed").unwrap();
        let mut event = fixtures::definition("people.changed");
        event.schema_references = vec![a.as_reference(), b.as_reference()];
        store.create_event(&event).await.unwrap();
        let by_event = Referrer::Event(name.clone());
        let by_s = Referrer::Schema(SchemaName::parse("s").unwrap());
        assert_eq!(edge_count(&store), 3, "event to a and b, s to a; s to itself is no edge");

        // WHEN the event is replaced with the same references, THEN they still hold
        let same = EventDefinition { description: Some("renamed".into()), version: Version(2), ..event.clone() };
        store.replace_event(&same).await.unwrap();
        assert_eq!(referrers(store.delete_schema(&a.name, None).await), [by_event.clone(), by_s.clone()]);
        assert_eq!(referrers(store.delete_schema(&b.name, None).await), [Referrer::Event(name.clone())]);

        // WHEN it is replaced referring to a only, THEN b may go
        let narrower = EventDefinition { schema_references: vec![a.as_reference()], version: Version(3), ..same };
        store.replace_event(&narrower).await.unwrap();
        store.delete_schema(&b.name, None).await.unwrap();

        // WHEN a refused replace would have dropped its references, THEN they are kept
        let stale = EventDefinition { schema_references: Vec::new(), ..narrower.clone() };
        assert!(matches!(store.replace_event(&stale).await, Err(Error::VersionMismatch { .. })));
        assert_eq!(referrers(store.delete_schema(&a.name, None).await), [by_event, by_s.clone()]);

        // WHEN the event and then s are deleted, THEN a may go, and no edge is left
        store.delete_event(&name, None, false).await.unwrap();
        assert_eq!(referrers(store.delete_schema(&a.name, None).await), [by_s]);
        store.delete_schema(&s1.name, None).await.unwrap();
        store.delete_schema(&a.name, None).await.unwrap();
        assert_eq!(edge_count(&store), 0);
    }

    #[tokio::test]
    async fn schemas_versions_and_referrers_survive_reopening_the_file() {
        let (dir, path) = temp_file();
        let store = SqliteStore::open(&path).unwrap();
        let person = version("person", 1, &[]);
        store.create_schema(&schema("person"), &person).await.unwrap();
        let person_next = at_version(&schema("person"), 2);
        let person_2 = version("person", 2, &[]);
        store.add_schema_version(&person_next, &person_2).await.unwrap();
        store.create_schema(&schema("team"), &version("team", 1, &[&person_2])).await.unwrap();
        let mut event = fixtures::definition("people.changed");
        event.envelope = Some(gateway_core::Envelope::Resource);
        event.schema_references = vec![person.as_reference()];
        store.create_event(&event).await.unwrap();
        drop(store);

        let reopened = SqliteStore::open(&path).unwrap();
        assert_eq!(reopened.get_schema(&person.name).await.unwrap(), Some(person_next));
        assert_eq!(reopened.schema_versions(&person.name).await.unwrap(), [person.summary(), person_2.summary()]);
        assert_eq!(reopened.schema_by_uri(&person.uri).await.unwrap(), Some(person.clone()));
        assert_eq!(reopened.get_event(&event.name).await.unwrap(), Some(event.clone()));
        assert_eq!(
            referrers(reopened.delete_schema(&person.name, None).await),
            [Referrer::Event(event.name), Referrer::Schema(SchemaName::parse("team").unwrap())]
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_database_made_before_the_schema_registry_gets_its_tables_and_keeps_its_events() {
        // GIVEN a file with the tables of before the registry, and an event as it was stored then
        let (dir, path) = temp_file();
        let (before, _) = schema::SCHEMA.split_once("-- The schema registry.").expect("the registry's tables are last");
        assert!(!before.contains("schema_versions"), "the old schema has no registry");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(before).unwrap();
        let body = r#"{"name":"orders.created","schema":{"type":"object"},"dataType":"application/json",
            "metadata":{"team":"orders"},"createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z","version":1}"#;
        old.execute("INSERT INTO events (name, version, body) VALUES ('orders.created', 1, ?1)", [body]).unwrap();
        drop(old);

        // WHEN it is opened
        let store = SqliteStore::open(&path).unwrap();

        // THEN the event reads back with neither envelope nor references, and the registry works
        let name = EventName::parse("orders.created").unwrap();
        let event = store.get_event(&name).await.unwrap().expect("the old event is kept");
        assert_eq!((event.envelope, event.schema_references.len()), (None, 0));
        store_contract::schemas_contract(&store).await;
        // AND the old event may now refer to a registered schema, which it then keeps
        let order = version("order", 1, &[]);
        store.create_schema(&schema("order"), &order).await.unwrap();
        let referring = EventDefinition { schema_references: vec![order.as_reference()], version: Version(2), ..event };
        store.replace_event(&referring).await.unwrap();
        assert_eq!(referrers(store.delete_schema(&order.name, None).await), [Referrer::Event(name)]);
        drop(store);
        SqliteStore::open(&path).expect("opening again adds nothing twice");
        std::fs::remove_dir_all(dir).ok();
    }
}
