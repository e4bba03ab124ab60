//! The SQLite adapter: the local gateway's durable store.
//!
//! One file holds the registry (events, subscriptions), accepted triggers with their payloads,
//! and the delivery outbox. A trigger's acceptance is one transaction: the trigger, all its
//! deliveries, its idempotency key and the event's `receivedAt` are written together or not at
//! all, so a 202 is only ever answered for deliveries that will run.

mod schema;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use gateway_core::page::{decode_cursor, encode_cursor};
use gateway_core::ports::{
    Acceptance, AttemptOutcome, ClaimToken, DeliveryLog, DeliveryOutbox, DueDelivery, EventStore, Recorded,
    SourceStore, SubscriptionStore, TriggerAcceptor, TriggerSource,
};
use gateway_core::{
    DataType, Delivery, DeliveryRetention, DeliveryStatus, Error, EventDefinition, EventId, EventName, IdempotencyKey,
    Page, PageRequest, Source, SourceName, Subscription, SubscriptionId, Trigger, TriggerReceipt, Version,
};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
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
        Self::init(Connection::open(path).map_err(db_err)?)
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> DbResult<Self> {
        Self::init(Connection::open_in_memory().map_err(db_err)?)
    }

    fn init(conn: Connection) -> DbResult<Self> {
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
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `work` on the connection off the async runtime's threads.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> DbResult<T> + Send + 'static,
    ) -> DbResult<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            work(&mut conn)
        })
        .await
        .map_err(db_err)?
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
    /// all settled (delivered or failed), payload and delivery records together, so a trigger's
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
        self.run(move |conn| {
            let inserted = conn
                .execute(
                    "INSERT INTO events (name, version, body) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO NOTHING",
                    params![name.as_str(), version, body],
                )
                .map_err(db_err)?;
            if inserted == 0 {
                return Err(Error::EventExists(name));
            }
            Ok(())
        })
        .await
    }

    async fn get_event(&self, name: &EventName) -> DbResult<Option<EventDefinition>> {
        let name = name.clone();
        self.run(move |conn| read_event(conn, &name)).await
    }

    async fn list_events(&self, page: &PageRequest) -> DbResult<Page<EventDefinition>> {
        let after: String =
            page.cursor.as_deref().map(decode_cursor::<EventName>).transpose()?.map(String::from).unwrap_or_default();
        let limit = page.limit;
        self.run(move |conn| {
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
        self.run(move |conn| {
            let updated = conn
                .execute(
                    "UPDATE events SET version = ?2, body = ?3 WHERE name = ?1 AND version = ?4",
                    params![name.as_str(), version.0, body, version.0 - 1],
                )
                .map_err(db_err)?;
            if updated == 1 {
                return Ok(());
            }
            match event_version(conn, &name)? {
                None => Err(Error::NotFound { what: "event", id: name.to_string() }),
                Some(current) => Err(Error::VersionMismatch { what: "event", id: name.to_string(), current }),
            }
        })
        .await
    }

    async fn delete_event(&self, name: &EventName, expected: Option<Version>, cascade: bool) -> DbResult<()> {
        let name = name.clone();
        self.run(move |conn| {
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
        self.run(move |conn| {
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
        self.run(move |conn| {
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
        self.run(move |conn| {
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
        self.run(move |conn| {
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
        self.run(move |conn| {
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
        self.run(move |conn| {
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
        self.run(move |conn| {
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
        self.run(move |conn| {
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
        self.run(move |conn| {
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
        self.run(move |conn| {
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
        self.run(|conn| {
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

#[async_trait]
impl TriggerSource for SqliteStore {
    async fn trigger_target(&self, name: &EventName) -> DbResult<Option<(EventDefinition, Vec<Subscription>)>> {
        let name = name.clone();
        self.run(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let Some(event) = read_event(&tx, &name)? else {
                return Ok(None);
            };
            let mut stmt =
                tx.prepare_cached("SELECT body FROM subscriptions WHERE event = ?1 ORDER BY id").map_err(db_err)?;
            let subs = stmt
                .query_map([name.as_str()], |row| row.get::<_, String>(0))
                .map_err(db_err)?
                .map(|r| r.map_err(db_err).and_then(|body| from_json::<Subscription>(&body)))
                .collect::<DbResult<Vec<_>>>()?;
            Ok(Some((event, subs)))
        })
        .await
    }
}

#[async_trait]
impl TriggerAcceptor for SqliteStore {
    async fn accept(&self, trigger: &Trigger, idempotency_key: Option<&IdempotencyKey>) -> DbResult<Acceptance> {
        let trigger = trigger.clone();
        let key = idempotency_key.cloned();
        let receipt = to_json(&trigger.receipt())?;
        self.run(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            if let Some(key) = &key {
                if let Some(first) = replay(&tx, &trigger, key)? {
                    return Ok(Acceptance::Replayed(first));
                }
            }
            insert_trigger(&tx, &trigger, key.as_ref(), &receipt)?;
            tx.commit().map_err(db_err)?;
            Ok(Acceptance::Accepted)
        })
        .await
    }
}

/// The first receipt for `key`, if it is still inside the idempotency window; an error if that
/// first trigger carried another payload.
fn replay(tx: &Transaction<'_>, trigger: &Trigger, key: &IdempotencyKey) -> DbResult<Option<TriggerReceipt>> {
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

fn insert_trigger(
    tx: &Transaction<'_>,
    trigger: &Trigger,
    key: Option<&IdempotencyKey>,
    receipt: &str,
) -> DbResult<()> {
    let received_at = ts(trigger.received_at);
    tx.execute(
        "INSERT INTO triggers (event_id, event, received_at, data_type, payload, idempotency_key, receipt, source) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            trigger.event_id.to_string(),
            trigger.event.as_str(),
            received_at,
            trigger.data_type.as_str(),
            trigger.payload,
            key.map(IdempotencyKey::as_str),
            receipt,
            trigger.source.as_ref().map(to_json).transpose()?
        ],
    )
    .map_err(db_err)?;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO deliveries (event_id, subscription_id, event, function_id, metadata, status, attempts, received_at, updated_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6, ?7)",
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
                trigger.received_at.timestamp_millis()
            ])
            .map_err(db_err)?;
    }
    tx.execute(
        "UPDATE events SET received_at = ?2 WHERE name = ?1 AND (received_at IS NULL OR received_at < ?2)",
        params![trigger.event.as_str(), received_at],
    )
    .map_err(db_err)?;
    Ok(())
}

const DELIVERY_COLUMNS: &str = "d.event_id, d.subscription_id, d.event, d.function_id, d.metadata, d.status, d.attempts, d.last_error, d.received_at, d.updated_at";

fn delivery_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<[Option<String>; 10]> {
    Ok([
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get::<_, u32>(6).map(|n| Some(n.to_string()))?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
    ])
}

fn delivery_from_columns(c: [Option<String>; 10]) -> DbResult<Delivery> {
    let text = |i: usize| c[i].as_deref().ok_or_else(|| Error::unavailable(format!("delivery column {i} is NULL")));
    let corrupt = |what: &str| Error::unavailable(format!("stored delivery has an invalid {what}"));
    Ok(Delivery {
        event_id: EventId::parse(text(0)?).map_err(|_| corrupt("event id"))?,
        subscription_id: SubscriptionId::parse(text(1)?).map_err(|_| corrupt("subscription id"))?,
        event: EventName::parse(text(2)?).map_err(|_| corrupt("event"))?,
        function_id: gateway_core::FunctionId::parse(text(3)?).map_err(|_| corrupt("function id"))?,
        metadata: from_json(text(4)?)?,
        status: DeliveryStatus::parse(text(5)?).ok_or_else(|| corrupt("status"))?,
        attempts: text(6)?.parse().map_err(|_| corrupt("attempt count"))?,
        last_error: c[7].clone(),
        received_at: parse_ts(text(8)?)?,
        updated_at: parse_ts(text(9)?)?,
    })
}

#[async_trait]
impl DeliveryLog for SqliteStore {
    async fn deliveries_of_trigger(&self, event_id: &EventId) -> DbResult<Option<Vec<Delivery>>> {
        let id = event_id.to_string();
        self.run(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let exists = tx
                .query_row("SELECT 1 FROM triggers WHERE event_id = ?1", [&id], |_| Ok(()))
                .optional()
                .map_err(db_err)?;
            if exists.is_none() {
                return Ok(None);
            }
            let sql =
                format!("SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.event_id = ?1 ORDER BY d.subscription_id");
            let mut stmt = tx.prepare_cached(&sql).map_err(db_err)?;
            let rows = stmt
                .query_map([&id], delivery_from_row)
                .map_err(db_err)?
                .map(|r| r.map_err(db_err).and_then(delivery_from_columns))
                .collect::<DbResult<Vec<_>>>()?;
            Ok(Some(rows))
        })
        .await
    }

    async fn deliveries_of_event(&self, event: &EventName, page: &PageRequest) -> DbResult<Page<Delivery>> {
        let after = page.cursor.as_deref().map(decode_cursor::<(EventId, SubscriptionId)>).transpose()?;
        // Past every real id in descending order: "evt_" sorts below "evt~".
        let (after_event, after_sub) =
            after.map(|(e, s)| (e.to_string(), s.to_string())).unwrap_or_else(|| ("evt~".to_owned(), String::new()));
        let (event, limit) = (event.to_string(), page.limit);
        self.run(move |conn| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.event = ?1
                 AND (d.event_id < ?2 OR (d.event_id = ?2 AND d.subscription_id > ?3))
                 ORDER BY d.event_id DESC, d.subscription_id LIMIT ?4"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
            let rows = stmt
                .query_map(params![event, after_event, after_sub, limit + 1], delivery_from_row)
                .map_err(db_err)?
                .map(|r| r.map_err(db_err).and_then(delivery_from_columns))
                .collect::<DbResult<Vec<_>>>()?;
            Ok(page_from(rows, limit, |d| (d.event_id, d.subscription_id)))
        })
        .await
    }
}

#[async_trait]
impl DeliveryOutbox for SqliteStore {
    async fn claim_due(&self, now: DateTime<Utc>, limit: u32, lease: Duration) -> DbResult<Vec<DueDelivery>> {
        let now_ms = now.timestamp_millis();
        let until = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        self.run(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let due = {
                let sql = format!(
                    "SELECT {DELIVERY_COLUMNS}, t.data_type, t.payload, t.source FROM deliveries d JOIN triggers t ON t.event_id = d.event_id
                     WHERE d.status = 'pending' AND d.next_attempt_at <= ?1 AND (d.leased_until IS NULL OR d.leased_until <= ?1)
                     ORDER BY d.next_attempt_at LIMIT ?2"
                );
                let mut stmt = tx.prepare_cached(&sql).map_err(db_err)?;
                let rows = stmt
                    .query_map(params![now_ms, limit], |row| {
                        Ok((delivery_from_row(row)?, row.get::<_, String>(10)?, row.get::<_, Vec<u8>>(11)?, row.get::<_, Option<String>>(12)?))
                    })
                    .map_err(db_err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db_err)?;
                rows.into_iter()
                    .map(|(columns, data_type, payload, source)| {
                        let data_type = DataType::parse(&data_type).map_err(|_| Error::unavailable("stored trigger has an invalid data type"))?;
                        let source = source.as_deref().map(from_json).transpose()?;
                        Ok(DueDelivery { delivery: delivery_from_columns(columns)?, data_type, payload, source, claim: ClaimToken::new() })
                    })
                    .collect::<DbResult<Vec<_>>>()?
            };
            let mut lease = tx
                .prepare_cached("UPDATE deliveries SET leased_until = ?3, claim_token = ?4 WHERE event_id = ?1 AND subscription_id = ?2")
                .map_err(db_err)?;
            for d in &due {
                lease
                    .execute(params![d.delivery.event_id.to_string(), d.delivery.subscription_id.to_string(), until, d.claim.as_str()])
                    .map_err(db_err)?;
            }
            drop(lease);
            tx.commit().map_err(db_err)?;
            Ok(due)
        })
        .await
    }

    async fn record_attempt(&self, due: &DueDelivery, outcome: &AttemptOutcome) -> DbResult<Recorded> {
        let event_id = due.delivery.event_id.to_string();
        let subscription_id = due.delivery.subscription_id.to_string();
        let (claim, outcome) = (due.claim.as_str().to_owned(), outcome.clone());
        let now = ts(Utc::now());
        self.run(move |conn| {
            let (status, error, next_at) = match &outcome {
                AttemptOutcome::Delivered => ("delivered", None, None),
                AttemptOutcome::RetryAt { at, error } => ("pending", Some(error.as_str()), Some(at.timestamp_millis())),
                AttemptOutcome::Failed { error } => ("failed", Some(error.as_str()), None),
            };
            // Only the current claim of a pending delivery records: a slower attempt whose lease
            // ran out finds the token changed (or the row settled) and writes nothing.
            let updated = conn
                .execute(
                    "UPDATE deliveries SET status = ?3, attempts = attempts + 1, last_error = coalesce(?4, last_error), updated_at = ?5,
                     next_attempt_at = coalesce(?6, next_attempt_at), leased_until = NULL, claim_token = NULL
                     WHERE event_id = ?1 AND subscription_id = ?2 AND claim_token = ?7 AND status = 'pending'",
                    params![event_id, subscription_id, status, error, now, next_at, claim],
                )
                .map_err(db_err)?;
            if updated == 1 {
                return Ok(Recorded::Recorded);
            }
            let exists = conn
                .query_row(
                    "SELECT 1 FROM deliveries WHERE event_id = ?1 AND subscription_id = ?2",
                    params![event_id, subscription_id],
                    |_| Ok(()),
                )
                .optional()
                .map_err(db_err)?;
            match exists {
                Some(()) => Ok(Recorded::ClaimLost),
                None => Err(Error::NotFound { what: "delivery", id: format!("{event_id}/{subscription_id}") }),
            }
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
        store_contract::sources_contract(&store).await;
    }

    /// Accepts a trigger of `event` received at `received_at`, with one delivery per subscription.
    async fn trigger_at(store: &SqliteStore, event: &EventName, received_at: DateTime<Utc>) -> Trigger {
        let (definition, subs) = store.trigger_target(event).await.unwrap().unwrap();
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
                AttemptOutcome::Failed { error: "gone".into() }
            } else {
                AttemptOutcome::Delivered
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
    async fn a_database_made_before_claim_tokens_and_sources_gets_the_columns_on_open() {
        let dir = std::env::temp_dir().join(format!("gateway-sqlite-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.db");
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
    async fn a_native_records_key_outlives_a_clients_by_its_own_window() {
        let store = SqliteStore::in_memory().unwrap();
        let name = EventName::parse("keys.expire").unwrap();
        store.create_event(&fixtures::definition("keys.expire")).await.unwrap();
        let t0: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
        let client = IdempotencyKey::parse("order-7").unwrap();
        let native = IdempotencyKey::native(&gateway_core::SourceName::parse("uploads").unwrap(), "ab12");
        for key in [&client, &native] {
            let (definition, subs) = store.trigger_target(&name).await.unwrap().unwrap();
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
                let (definition, subs) = store.trigger_target(&name).await.unwrap().unwrap();
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
        let dir = std::env::temp_dir().join(format!("gateway-sqlite-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.db");
        let store = SqliteStore::open(&path).unwrap();
        store_contract::registry_contract(&store).await;
        let listed = store.list_events(&PageRequest::first(100)).await.unwrap().items.len();
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        assert_eq!(reopened.list_events(&PageRequest::first(100)).await.unwrap().items.len(), listed);
        std::fs::remove_dir_all(dir).ok();
    }
}
