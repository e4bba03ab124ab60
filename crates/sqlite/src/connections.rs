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
//! the triggers): an attempt is recorded, and answered, with the commit that holds it. So are
//! the worker's claims of due deliveries, which otherwise held the writer's connection, and
//! the triggers' commits behind it, for a transaction and fsync of their own.
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

use gateway_core::ports::{Acceptance, DueDelivery, Recorded};
use gateway_core::{Error, IdempotencyKey, Trigger};
use rusqlite::{params, Connection, OpenFlags};

use crate::{claim_rows, db_err, insert_trigger, record_attempt_row, replay, ts, AttemptRow, Claim, DbResult};

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

/// One write waiting for the writer: a trigger's acceptance, the outcome of a delivery attempt
/// or a claim of due deliveries (the worker's), answered once the commit holding it is on disk.
// (An acceptance is larger than an attempt; each is moved into the queue once and out again, so
// boxing it would only add an allocation to every trigger.)
#[allow(clippy::large_enum_variant)]
enum Queued {
    Accept { trigger: Trigger, key: Option<IdempotencyKey>, receipt: String, answer: Answer<Acceptance> },
    Attempt { row: AttemptRow, answer: Answer<Recorded> },
    Claim { claim: Claim, answer: Answer<Vec<DueDelivery>> },
}

/// Where a queued write is answered, and what it did, kept beside the write itself so that each
/// is answered in its own kind.
struct Answer<T> {
    to: tokio::sync::oneshot::Sender<DbResult<T>>,
    /// What the write did in its group's transaction, until the commit says whether it stands.
    result: Option<DbResult<T>>,
}

impl<T> Answer<T> {
    fn new(to: tokio::sync::oneshot::Sender<DbResult<T>>) -> Self {
        Self { to, result: None }
    }

    fn send(self) {
        // The requester may have gone (its client hung up): what it asked for is written all
        // the same.
        let _ = self.to.send(self.result.unwrap_or_else(|| Err(writer_gone())));
    }
}

impl Queued {
    /// The group's commit failed with `error`: nothing of this write stands.
    fn fail(&mut self, error: &Error) {
        let error = || Error::unavailable(std::io::Error::other(error.to_string()));
        match self {
            Queued::Accept { answer, .. } => answer.result = Some(Err(error())),
            Queued::Attempt { answer, .. } => answer.result = Some(Err(error())),
            Queued::Claim { answer, .. } => answer.result = Some(Err(error())),
        }
    }

    fn accepted(&self) -> bool {
        matches!(self, Queued::Accept { answer: Answer { result: Some(Ok(Acceptance::Accepted)), .. }, .. })
    }

    fn send(self) {
        match self {
            Queued::Accept { answer, .. } => answer.send(),
            Queued::Attempt { answer, .. } => answer.send(),
            Queued::Claim { answer, .. } => answer.send(),
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
        let queued = Queued::Accept { trigger, key, receipt, answer: Answer::new(answer) };
        self.queue.send(queued).map_err(|_| writer_gone())?;
        // A writer that dies with this acceptance in hand drops `answer`: that is an error
        // answer, and its transaction was never committed.
        answered.await.map_err(|_| writer_gone())?
    }

    /// Queues an attempt's outcome and waits until the commit that holds it is on disk.
    pub(crate) async fn record(&self, row: AttemptRow) -> DbResult<Recorded> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.queue.send(Queued::Attempt { row, answer: Answer::new(answer) }).map_err(|_| writer_gone())?;
        answered.await.map_err(|_| writer_gone())?
    }

    /// Queues a claim of due deliveries and waits until the commit that holds it is on disk.
    pub(crate) async fn claim(&self, claim: Claim) -> DbResult<Vec<DueDelivery>> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.queue.send(Queued::Claim { claim, answer: Answer::new(answer) }).map_err(|_| writer_gone())?;
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
        let committed = std::panic::catch_unwind(AssertUnwindSafe(|| commit_group(&mut lock(conn), &mut group)))
            .unwrap_or_else(|_| Err(writer_gone()));
        match committed {
            Ok(()) => {
                let accepted = group.iter().filter(|q| q.accepted()).count();
                counts.triggers.fetch_add(accepted as u64, Ordering::Relaxed);
                // (commits that held acceptances: the figure is triggers per commit)
                if group.iter().any(|q| matches!(q, Queued::Accept { .. })) {
                    counts.commits.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(error) => {
                tracing::warn!(%error, writes = group.len(), "a group of writes was not committed");
                group.iter_mut().for_each(|queued| queued.fail(&error));
            }
        }
        group.into_iter().for_each(Queued::send);
    }
}

/// Writes every queued write of the group in one transaction and commits it, leaving what each
/// did in its own `Answer` (sent by the caller once the commit's fate is known): an acceptance refused (its idempotency key reused with another payload) is rolled
/// back to its savepoint without touching the others, and a key used twice in one group
/// replays the first's receipt, as across groups; an attempt whose claim was lost writes
/// nothing; a claim leases what is due. An error here is the commit's: none of the group was
/// written.
fn commit_group(conn: &mut Connection, group: &mut [Queued]) -> DbResult<()> {
    let tx = conn.transaction().map_err(db_err)?;
    // The newest `receivedAt` of each event in the group, written once per event.
    let mut latest: HashMap<&str, chrono::DateTime<chrono::Utc>> = HashMap::new();
    for queued in group.iter_mut() {
        match queued {
            Queued::Accept { trigger, key, receipt, answer } => {
                let result = in_savepoint(&tx, |conn| accept_one(conn, trigger, key.as_ref(), receipt))?;
                if let Ok(Acceptance::Accepted) = result {
                    let newest = latest.entry(trigger.event.as_str()).or_insert(trigger.received_at);
                    *newest = (*newest).max(trigger.received_at);
                }
                answer.result = Some(result);
            }
            Queued::Attempt { row, answer } => {
                answer.result = Some(in_savepoint(&tx, |conn| record_attempt_row(conn, row))?);
            }
            Queued::Claim { claim, answer } => {
                answer.result = Some(in_savepoint(&tx, |conn| claim_rows(conn, claim))?);
            }
        }
    }
    for (event, received_at) in latest {
        tx.prepare_cached(
            "UPDATE events SET received_at = ?2 WHERE name = ?1 AND (received_at IS NULL OR received_at < ?2)",
        )
        .and_then(|mut update| update.execute(params![event, ts(received_at)]))
        .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

/// Runs one write of a group in a savepoint of the group's transaction: kept if it succeeds,
/// rolled back alone if it fails (its error is the write's answer). The outer error is the
/// savepoint's own, which fails the group. Cached statements: rusqlite's `Savepoint` parses
/// its SQL again for every write, a measurable share of the writer's time under load.
fn in_savepoint<T>(conn: &Connection, write: impl FnOnce(&Connection) -> DbResult<T>) -> DbResult<DbResult<T>> {
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut statement| statement.execute([])).map_err(db_err);
    run("SAVEPOINT one_write")?;
    let result = write(conn);
    if result.is_err() {
        // (ROLLBACK TO undoes the write and leaves the savepoint open; RELEASE then closes it.)
        run("ROLLBACK TO one_write")?;
    }
    run("RELEASE one_write")?;
    Ok(result)
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
            answer: Answer::new(tokio::sync::oneshot::channel().0),
        };
        let mut group = [
            accept(&first, Some(&key), &receipts[0]),
            accept(&again, Some(&key), &receipts[1]),
            accept(&other, Some(&key), &receipts[2]),
            accept(&plain, None, &receipts[3]),
        ];

        // WHEN they are committed together
        commit_group(&mut lock(&store.conn), &mut group).unwrap();
        let results: Vec<_> = group
            .into_iter()
            .map(|queued| match queued {
                Queued::Accept { answer, .. } => answer.result.expect("every write of the group is answered"),
                Queued::Attempt { .. } | Queued::Claim { .. } => unreachable!("the group holds acceptances only"),
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
