//! Who uses which connection: one writer, a few readers, and triggers committed in groups.
//!
//! A trigger's 202 waits for its transaction to reach the disk (`synchronous=FULL`), and this
//! disk does a few thousand fsyncs a second: one transaction per trigger caps the gateway there
//! however fast the rest is. So acceptances are not written by the request that makes them but
//! queued for one writer thread, which takes every acceptance waiting, writes them in one
//! transaction (each in its own savepoint, so one refused acceptance leaves the others whole),
//! commits once, and only then answers each. Durability is what it was: an answer of
//! `Accepted` still means the trigger and its deliveries are on disk. Triggers that arrive
//! while a commit is running wait for the next one, so the busier the gateway, the more each
//! commit carries. The worker's records of its attempts go the same way (they were one
//! transaction and one fsync each, and a worker delivering at full speed took the disk from
//! the triggers): an attempt is recorded, and answered, with the commit that holds it.
//!
//! Readers do not queue behind the writer: in WAL mode a reader sees the last commit while a
//! write is in progress, so reads take one of a few read-only connections of their own. (An
//! in-memory database, for tests, cannot be shared between connections: there every read
//! takes the writer's connection.)

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};

use gateway_core::ports::{Acceptance, Recorded};
use gateway_core::{Error, IdempotencyKey, Trigger};
use rusqlite::{params, Connection, OpenFlags};

use crate::{db_err, insert_trigger, record_attempt_row, replay, ts, AttemptRow, DbResult};

/// Read-only connections beside the writer: enough for the HTTP handlers of a 2-core machine
/// to read while one writes, few enough that each keeps its statement cache warm.
const READERS: usize = 4;

/// The most acceptances one commit carries, so that one answer never waits behind an
/// unbounded transaction.
const MAX_GROUP: usize = 512;

pub(crate) fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock leaves SQLite's own state consistent (an open
    // transaction is rolled back when its guard drops), so the connection stays usable.
    conn.lock().unwrap_or_else(|p| p.into_inner())
}

/// The read-only connections, each used by one read at a time.
pub(crate) struct Readers {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    pub(crate) fn open(path: &Path) -> DbResult<Self> {
        let conns = (0..READERS)
            .map(|_| {
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
                )
                .map_err(db_err)?;
                conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;").map_err(db_err)?;
                Ok(Mutex::new(conn))
            })
            .collect::<DbResult<_>>()?;
        Ok(Self { conns, next: AtomicUsize::new(0) })
    }

    /// Runs `work` on a free reader, or waits for one.
    pub(crate) fn with<T>(&self, work: impl FnOnce(&mut Connection) -> T) -> T {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.conns.len();
        for i in 0..n {
            if let Ok(mut conn) = self.conns[(start + i) % n].try_lock() {
                return work(&mut conn);
            }
        }
        work(&mut lock(&self.conns[start % n]))
    }
}

/// How many triggers the writer has committed, and in how many commits (those holding an
/// acceptance; a commit of attempts alone is not counted).
#[derive(Debug, Default)]
pub struct CommitCounts {
    triggers: AtomicU64,
    commits: AtomicU64,
}

impl CommitCounts {
    /// (triggers accepted, commits that held them), since the store was opened.
    pub fn read(&self) -> (u64, u64) {
        (self.triggers.load(Ordering::Relaxed), self.commits.load(Ordering::Relaxed))
    }
}

/// One write waiting for the writer: a trigger's acceptance, or the outcome of a delivery
/// attempt (the worker's), answered once the commit holding it is on disk.
enum Queued {
    Accept {
        trigger: Trigger,
        key: Option<IdempotencyKey>,
        receipt: String,
        answer: tokio::sync::oneshot::Sender<DbResult<Acceptance>>,
    },
    Attempt {
        row: AttemptRow,
        answer: tokio::sync::oneshot::Sender<DbResult<Recorded>>,
    },
}

/// What one queued write did, answered after the commit.
enum Written {
    Accepted(DbResult<Acceptance>),
    Attempted(DbResult<Recorded>),
}

impl Written {
    /// The answer to `queued` when its group's commit failed with `error`.
    fn failed(queued: &Queued, error: &Error) -> Self {
        let error = Error::unavailable(std::io::Error::other(error.to_string()));
        match queued {
            Queued::Accept { .. } => Self::Accepted(Err(error)),
            Queued::Attempt { .. } => Self::Attempted(Err(error)),
        }
    }
}

/// The queue in front of the writer thread.
pub(crate) struct GroupCommit {
    queue: Sender<Queued>,
    pub(crate) counts: Arc<CommitCounts>,
}

fn writer_gone() -> Error {
    Error::unavailable(std::io::Error::other("the SQLite writer has stopped"))
}

impl GroupCommit {
    /// Starts the writer thread on `conn`, which it shares with the store's other writes (each
    /// takes the lock for its own transaction). The thread ends when the store is dropped.
    pub(crate) fn start(conn: Arc<Mutex<Connection>>) -> DbResult<Self> {
        let (queue, queued) = mpsc::channel();
        let counts = Arc::new(CommitCounts::default());
        let thread_counts = counts.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_groups(&conn, &queued, &thread_counts))
            .map_err(db_err)?;
        Ok(Self { queue, counts })
    }

    /// Queues the acceptance and waits until the commit that holds it is on disk.
    pub(crate) async fn accept(
        &self,
        trigger: Trigger,
        key: Option<IdempotencyKey>,
        receipt: String,
    ) -> DbResult<Acceptance> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let queued = Queued::Accept { trigger, key, receipt, answer };
        self.queue.send(queued).map_err(|_| writer_gone())?;
        // A writer that dies with this acceptance in hand drops `answer`: that is an error
        // answer, and its transaction was never committed.
        answered.await.map_err(|_| writer_gone())?
    }

    /// Queues an attempt's outcome and waits until the commit that holds it is on disk.
    pub(crate) async fn record(&self, row: AttemptRow) -> DbResult<Recorded> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.queue.send(Queued::Attempt { row, answer }).map_err(|_| writer_gone())?;
        answered.await.map_err(|_| writer_gone())?
    }
}

fn write_groups(conn: &Mutex<Connection>, queued: &Receiver<Queued>, counts: &CommitCounts) {
    while let Ok(first) = queued.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queued.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        // Where panics unwind (debug builds, which `make run` uses), a panic in one group must
        // not stop the writer (every later write would wait on a queue nobody reads): its
        // writes are answered with an error and nothing of them was committed. The release
        // profile aborts on panic instead: a crash, which loses nothing that was answered.
        let results = std::panic::catch_unwind(AssertUnwindSafe(|| commit_group(&mut lock(conn), &group)))
            .unwrap_or_else(|_| Err(writer_gone()));
        let results = match results {
            Ok(results) => {
                let accepted =
                    results.iter().filter(|r| matches!(r, Written::Accepted(Ok(Acceptance::Accepted)))).count();
                counts.triggers.fetch_add(accepted as u64, Ordering::Relaxed);
                // (commits that held acceptances: the figure is triggers per commit)
                if group.iter().any(|q| matches!(q, Queued::Accept { .. })) {
                    counts.commits.fetch_add(1, Ordering::Relaxed);
                }
                results
            }
            Err(error) => {
                tracing::warn!(%error, writes = group.len(), "a group of writes was not committed");
                group.iter().map(|queued| Written::failed(queued, &error)).collect()
            }
        };
        for (queued, result) in group.into_iter().zip(results) {
            // The requester may have gone (its client hung up): what it asked for is written all
            // the same.
            // (Every write is answered in its own kind: `commit_group` and `Written::failed`
            // answer each one as it was queued.)
            match (queued, result) {
                (Queued::Accept { answer, .. }, Written::Accepted(result)) => {
                    let _ = answer.send(result);
                }
                (Queued::Attempt { answer, .. }, Written::Attempted(result)) => {
                    let _ = answer.send(result);
                }
                (Queued::Accept { answer, .. }, Written::Attempted(_)) => {
                    let _ = answer.send(Err(writer_gone()));
                }
                (Queued::Attempt { answer, .. }, Written::Accepted(_)) => {
                    let _ = answer.send(Err(writer_gone()));
                }
            }
        }
    }
}

/// Writes every queued write of the group in one transaction and commits it. Each gets its own
/// answer: an acceptance refused (its idempotency key reused with another payload) is rolled
/// back to its savepoint without touching the others, and a key used twice in one group
/// replays the first's receipt, as across groups; an attempt whose claim was lost writes
/// nothing. An error here is the commit's: none of the group was written.
fn commit_group(conn: &mut Connection, group: &[Queued]) -> DbResult<Vec<Written>> {
    let mut tx = conn.transaction().map_err(db_err)?;
    let mut results = Vec::with_capacity(group.len());
    // The newest `receivedAt` of each event in the group, written once per event.
    let mut latest: HashMap<&str, chrono::DateTime<chrono::Utc>> = HashMap::new();
    for queued in group {
        let savepoint = tx.savepoint().map_err(db_err)?;
        match queued {
            Queued::Accept { trigger, key, receipt, .. } => {
                let result = accept_one(&savepoint, trigger, key.as_ref(), receipt);
                match result {
                    Ok(Acceptance::Accepted) => {
                        savepoint.commit().map_err(db_err)?;
                        let newest = latest.entry(trigger.event.as_str()).or_insert(trigger.received_at);
                        *newest = (*newest).max(trigger.received_at);
                    }
                    Ok(Acceptance::Replayed(_)) => savepoint.commit().map_err(db_err)?,
                    Err(_) => drop(savepoint), // rolls back this acceptance alone
                }
                results.push(Written::Accepted(result));
            }
            Queued::Attempt { row, .. } => {
                let result = record_attempt_row(&savepoint, row);
                match result {
                    Ok(_) => savepoint.commit().map_err(db_err)?,
                    Err(_) => drop(savepoint),
                }
                results.push(Written::Attempted(result));
            }
        }
    }
    for (event, received_at) in latest {
        tx.execute(
            "UPDATE events SET received_at = ?2 WHERE name = ?1 AND (received_at IS NULL OR received_at < ?2)",
            params![event, ts(received_at)],
        )
        .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)?;
    Ok(results)
}

fn accept_one(
    conn: &Connection,
    trigger: &Trigger,
    key: Option<&IdempotencyKey>,
    receipt: &str,
) -> DbResult<Acceptance> {
    if let Some(key) = key {
        if let Some(first) = replay(conn, trigger, key)? {
            return Ok(Acceptance::Replayed(first));
        }
    }
    insert_trigger(conn, trigger, key, receipt)?;
    Ok(Acceptance::Accepted)
}

#[cfg(test)]
mod tests {
    use gateway_core::ports::{DeliveryLog, EventStore, SubscriptionStore, TriggerAcceptor, TriggerSource, UlidSource};
    use gateway_core::{fixtures, EventName};

    use super::*;
    use crate::SqliteStore;

    async fn new_trigger(store: &SqliteStore, name: &EventName, payload: &[u8]) -> Trigger {
        let gateway_core::ports::TriggerTarget { definition, subscriptions: subs } =
            store.trigger_target(name).await.unwrap().unwrap();
        gateway_core::trigger::accepted_trigger(&definition, &subs, payload.to_vec(), chrono::Utc::now(), &UlidSource)
    }

    async fn store_with_event() -> (SqliteStore, EventName) {
        let store = SqliteStore::in_memory().unwrap();
        let name = EventName::parse("order.created").unwrap();
        store.create_event(&fixtures::definition("order.created")).await.unwrap();
        store.create_subscription(&fixtures::subscription(&name, "fn-a", Default::default())).await.unwrap();
        (store, name)
    }

    #[tokio::test]
    async fn one_group_replays_a_key_used_twice_and_refuses_a_reused_key_alone() {
        // GIVEN one group of four acceptances: a key, the same key and payload again, the same
        // key with another payload, and a trigger without a key
        let (store, name) = store_with_event().await;
        let key = IdempotencyKey::parse("order-7").unwrap();
        let first = new_trigger(&store, &name, br#"{"n":1}"#).await;
        let again = new_trigger(&store, &name, br#"{"n":1}"#).await;
        let other = new_trigger(&store, &name, br#"{"n":2}"#).await;
        let plain = new_trigger(&store, &name, br#"{"n":3}"#).await;
        let receipts: Vec<String> =
            [&first, &again, &other, &plain].iter().map(|t| serde_json::to_string(&t.receipt()).unwrap()).collect();
        let accept = |trigger: &Trigger, key: Option<&IdempotencyKey>, receipt: &str| Queued::Accept {
            trigger: trigger.clone(),
            key: key.cloned(),
            receipt: receipt.to_owned(),
            answer: tokio::sync::oneshot::channel().0,
        };
        let group = [
            accept(&first, Some(&key), &receipts[0]),
            accept(&again, Some(&key), &receipts[1]),
            accept(&other, Some(&key), &receipts[2]),
            accept(&plain, None, &receipts[3]),
        ];

        // WHEN they are committed together
        let results: Vec<_> = commit_group(&mut lock(&store.conn), &group)
            .unwrap()
            .into_iter()
            .map(|written| match written {
                Written::Accepted(result) => result,
                Written::Attempted(_) => panic!("an acceptance answered as an attempt"),
            })
            .collect();

        // THEN the first is accepted, the second replays its receipt, the third alone is refused
        assert_eq!(results[0].as_ref().unwrap(), &Acceptance::Accepted);
        assert_eq!(results[1].as_ref().unwrap(), &Acceptance::Replayed(first.receipt()));
        assert!(matches!(results[2], Err(Error::IdempotencyKeyReused { .. })), "{:?}", results[2]);
        assert_eq!(results[3].as_ref().unwrap(), &Acceptance::Accepted);
        // AND exactly the two accepted triggers are on record, each with its delivery
        for (trigger, recorded) in [(&first, true), (&again, false), (&other, false), (&plain, true)] {
            let log = store.deliveries_of_trigger(&trigger.event_id).await.unwrap();
            assert_eq!(log.map(|d| d.len()), recorded.then_some(1), "{}", trigger.event_id);
        }
        let received_at = store.get_event(&name).await.unwrap().unwrap().received_at;
        // (kept to the millisecond)
        let newest = plain.received_at.max(first.received_at).timestamp_millis();
        assert_eq!(received_at.map(|t| t.timestamp_millis()), Some(newest));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_acceptances_share_commits_and_each_is_answered_once_on_disk() {
        // GIVEN a file store (readers of their own) and 200 triggers accepted at once
        let dir = std::env::temp_dir().join(format!("gateway-group-commit-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.db");
        let store = SqliteStore::open(&path).unwrap();
        let name = EventName::parse("order.created").unwrap();
        store.create_event(&fixtures::definition("order.created")).await.unwrap();
        store.create_subscription(&fixtures::subscription(&name, "fn-a", Default::default())).await.unwrap();
        let mut triggers = Vec::new();
        for n in 0..200 {
            triggers.push(new_trigger(&store, &name, format!(r#"{{"n":{n}}}"#).as_bytes()).await);
        }

        // WHEN they are all accepted concurrently
        let tasks: Vec<_> = triggers
            .iter()
            .cloned()
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move { store.accept(&t, None).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), Acceptance::Accepted);
        }

        // THEN fewer commits than triggers held them, and a store opened afresh on the file
        // finds every one with its delivery
        let (accepted, commits) = store.commit_counts().read();
        assert_eq!(accepted, 200);
        assert!(commits < 200, "{commits} commits for 200 concurrent triggers: none was shared");
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        for trigger in &triggers {
            let log = reopened.deliveries_of_trigger(&trigger.event_id).await.unwrap();
            assert_eq!(log.map(|d| d.len()), Some(1), "{}", trigger.event_id);
        }
        std::fs::remove_dir_all(dir).ok();
    }
}
