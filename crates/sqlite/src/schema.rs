//! The database schema, applied on every open (every statement is idempotent).

pub const SCHEMA: &str = r#"
PRAGMA journal_mode = WAL;
-- FULL: a committed acceptance survives power loss, not only a process crash.
PRAGMA synchronous = FULL;
PRAGMA busy_timeout = 5000;

CREATE TABLE IF NOT EXISTS events (
    name        TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    received_at TEXT,
    body        TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS subscriptions (
    id      TEXT PRIMARY KEY,
    event   TEXT NOT NULL,
    version INTEGER NOT NULL,
    body    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_by_event ON subscriptions (event, id);

-- Which native records trigger which event; `event` is kept beside the body so that deleting
-- an event can count (and cascade to) its sources.
CREATE TABLE IF NOT EXISTS sources (
    name    TEXT PRIMARY KEY,
    event   TEXT NOT NULL,
    version INTEGER NOT NULL,
    body    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sources_by_event ON sources (event, name);

CREATE TABLE IF NOT EXISTS triggers (
    event_id        TEXT PRIMARY KEY,
    event           TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    data_type       TEXT NOT NULL,
    payload         BLOB NOT NULL,
    idempotency_key TEXT,
    receipt         TEXT NOT NULL,
    -- The native record that triggered it (JSON), if one did.
    source          TEXT
);
-- Housekeeping finds old triggers by age (idempotency window, delivery retention).
CREATE INDEX IF NOT EXISTS triggers_by_received_at ON triggers (received_at);
CREATE UNIQUE INDEX IF NOT EXISTS triggers_by_idempotency_key
    ON triggers (event, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- The outbox: one row per (trigger, subscription), written in the trigger's transaction.
CREATE TABLE IF NOT EXISTS deliveries (
    event_id        TEXT NOT NULL REFERENCES triggers (event_id),
    subscription_id TEXT NOT NULL,
    event           TEXT NOT NULL,
    function_id     TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    last_error      TEXT,
    received_at     TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    leased_until    INTEGER,
    -- The current claim: only the attempt made under it may record its outcome.
    claim_token     TEXT,
    -- The series of attempts: 0 for the trigger's, one more for each redrive (redriven_at).
    generation      INTEGER NOT NULL DEFAULT 0,
    redriven_at     TEXT,
    -- The subscription's delivery policy when the series began (JSON; NULL: the default).
    policy          TEXT,
    -- The last attempts, oldest first (JSON array; NULL: none yet).
    history         TEXT,
    PRIMARY KEY (event_id, subscription_id)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_by_event ON deliveries (event, event_id, subscription_id);
-- A redrive of a subscription's failed deliveries "since ... until" reads them from one range.
CREATE INDEX IF NOT EXISTS deliveries_by_subscription ON deliveries (subscription_id, status, received_at);

-- The schema registry. `revision` is kept beside the body so that a write can check it.
CREATE TABLE IF NOT EXISTS schemas (
    name     TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    body     TEXT NOT NULL
);

-- Every version of every schema, its document in the body. A URI names one version across the
-- registry: the constraint, not a read before the write, is what refuses a second holder.
CREATE TABLE IF NOT EXISTS schema_versions (
    schema  TEXT NOT NULL,
    version INTEGER NOT NULL,
    uri     TEXT NOT NULL UNIQUE,
    body    TEXT NOT NULL,
    PRIMARY KEY (schema, version)
);

-- Who refers to which schema: an event (`kind` 'event') through its schema_references, or
-- another schema (`kind` 'schema') through any of its versions' references. Kept in the
-- referrer's write transactions, so that deleting a schema reads its referrers from one index.
CREATE TABLE IF NOT EXISTS schema_referrers (
    schema   TEXT NOT NULL,
    kind     TEXT NOT NULL,
    referrer TEXT NOT NULL,
    PRIMARY KEY (schema, kind, referrer)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS schema_referrers_by_referrer ON schema_referrers (kind, referrer);
"#;

/// Columns added after a database may have been created, each with the statement that adds it:
/// `CREATE TABLE IF NOT EXISTS` leaves an existing table as it is. (A table added later, like the
/// schema registry's, needs no entry: the same statement creates it in an old file. An index in
/// `SCHEMA` may only name columns an old table has, since it is created before these are added.)
pub const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("deliveries", "claim_token", "ALTER TABLE deliveries ADD COLUMN claim_token TEXT"),
    ("triggers", "source", "ALTER TABLE triggers ADD COLUMN source TEXT"),
    // The delivery strategy: a delivery from before it is generation 0, default policy, no history.
    ("deliveries", "generation", "ALTER TABLE deliveries ADD COLUMN generation INTEGER NOT NULL DEFAULT 0"),
    ("deliveries", "redriven_at", "ALTER TABLE deliveries ADD COLUMN redriven_at TEXT"),
    ("deliveries", "policy", "ALTER TABLE deliveries ADD COLUMN policy TEXT"),
    ("deliveries", "history", "ALTER TABLE deliveries ADD COLUMN history TEXT"),
    // CloudEvents: a delivery from before formats is `native`; a trigger from before, no CloudEvent.
    ("deliveries", "format", "ALTER TABLE deliveries ADD COLUMN format TEXT"),
    ("triggers", "cloud_event", "ALTER TABLE triggers ADD COLUMN cloud_event TEXT"),
];
