//! The local gateway: the HTTP API on a SQLite file, with a background delivery worker that
//! invokes subscribed functions through the Lambda Invoke API.

pub mod config;
pub mod worker;

use std::sync::Arc;

use async_trait::async_trait;
use gateway_api::{Gateway, RouteGroup};
use gateway_core::ports::{Acceptance, SystemClock, TriggerAcceptor, UlidSource};
use gateway_core::schema::SchemaCache;
use gateway_core::{AccountId, DeliveryRetention, Home, IdempotencyKey, Trigger};
use gateway_lambda_invoker::LambdaInvoker;
use gateway_sqlite::SqliteStore;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use worker::Worker;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data folder {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("another event-gateway is using {0}; stop it or set GATEWAY_DATA_DIR to another folder")]
    AlreadyRunning(String),
    #[error("cannot open the database: {0}")]
    Store(#[from] gateway_core::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("the server failed: {0}")]
    Serve(std::io::Error),
}

/// Wakes the delivery worker as soon as a trigger's deliveries are committed.
struct WakingAcceptor {
    store: SqliteStore,
    wake: Arc<Notify>,
}

#[async_trait]
impl TriggerAcceptor for WakingAcceptor {
    async fn accept(&self, trigger: &Trigger, key: Option<&IdempotencyKey>) -> gateway_core::error::Result<Acceptance> {
        let acceptance = self.store.accept(trigger, key).await?;
        if acceptance == Acceptance::Accepted && !trigger.deliveries.is_empty() {
            self.wake.notify_one();
        }
        Ok(acceptance)
    }
}

/// Where the gateway runs: the region its Lambda client uses and its account, from
/// `GATEWAY_ACCOUNT_ID` or else, with real credentials, STS `GetCallerIdentity`. Without an
/// account, the allowlist refuses every ARN that names one (unless it names that account).
pub async fn resolve_home(config: &Config, aws: &aws_config::SdkConfig) -> Home {
    let region = aws.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".to_owned());
    let account = match (&config.account_id, config.ask_sts_for_account) {
        (Some(account), _) => Some(account.clone()),
        (None, false) => None,
        (None, true) => caller_account(aws).await,
    };
    if account.is_none() {
        tracing::warn!("the gateway's AWS account is unknown (set GATEWAY_ACCOUNT_ID): subscriptions to function ARNs that name an account are refused unless the allowlist names it");
    }
    Home::new(region, account)
}

async fn caller_account(aws: &aws_config::SdkConfig) -> Option<AccountId> {
    let sts = aws_sdk_sts::Client::new(aws);
    let asked = tokio::time::timeout(std::time::Duration::from_secs(5), sts.get_caller_identity().send()).await;
    match asked {
        Ok(Ok(identity)) => match identity.account().map(AccountId::parse) {
            Some(Ok(account)) => Some(account),
            _ => {
                tracing::warn!("STS GetCallerIdentity answered without a valid account");
                None
            }
        },
        Ok(Err(error)) => {
            tracing::warn!(error = %aws_sdk_sts::error::DisplayErrorContext(&error), "cannot ask STS for the gateway's account");
            None
        }
        Err(_) => {
            tracing::warn!("STS GetCallerIdentity did not answer within 5 s");
            None
        }
    }
}

/// Serves until SIGINT or SIGTERM, then drains requests and invocations in flight. The
/// allowlist is taken to be at `home` (see [`resolve_home`]).
pub async fn run(mut config: Config, home: Home, lambda: aws_sdk_lambda::Client) -> Result<(), StartError> {
    config.allowlist = config.allowlist.at_home(home);
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| StartError::DataDir { path: config.data_dir.display().to_string(), source })?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let db = config.data_dir.join("gateway.db");
    let store = SqliteStore::open(&db)?;
    let released = store.release_claims().await?;
    if released > 0 {
        tracing::info!(released, "deliveries claimed by a previous run are due again");
    }
    let wake = Arc::new(Notify::new());
    let clock = Arc::new(SystemClock);

    let gateway = Gateway {
        events: Arc::new(store.clone()),
        subscriptions: Arc::new(store.clone()),
        sources: Arc::new(store.clone()),
        registry: Arc::new(store.clone()),
        trigger_source: Arc::new(store.clone()),
        acceptor: Arc::new(WakingAcceptor { store: store.clone(), wake: wake.clone() }),
        deliveries: Arc::new(store.clone()),
        redrive: Arc::new(store.clone()),
        schemas: SchemaCache::new(),
        clock: clock.clone(),
        ids: Arc::new(UlidSource),
        allowlist: config.allowlist.clone(),
        max_payload_bytes: config.max_payload_bytes,
    };
    let worker = Worker {
        outbox: Arc::new(store.clone()),
        invoker: Arc::new(LambdaInvoker::new(lambda)),
        clock,
        allowlist: config.allowlist.clone(),
        retry: config.retry.clone(),
        concurrency: config.concurrency,
        poll_interval: config.poll_interval,
        lease: worker::claim_lease(&config.retry, config.invoke_timeout),
        wake,
        cloud_events_source: config.cloud_events_source.clone(),
    };

    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| StartError::Listen { addr: config.addr, source })?;
    if config.allowlist.allows_any_name() {
        tracing::warn!("GATEWAY_FUNCTION_ALLOWLIST is '*': subscriptions may target any function of the gateway's account and region");
    }
    // Says whether a token is required, never what it is.
    let auth = if config.api_token.is_some() { "bearer token" } else { "none (loopback only)" };
    tracing::info!(addr = %config.addr, db = %db.display(), allowlist = %config.allowlist.describe(), auth, "event gateway listening");

    let shutdown = CancellationToken::new();
    let worker_task = tokio::spawn(worker.run(shutdown.clone()));
    let housekeeping = tokio::spawn(housekeeping(store.clone(), config.delivery_retention, shutdown.clone()));
    let app = gateway_api::router(gateway, RouteGroup::All);
    let app = match config.api_token.clone() {
        Some(token) => gateway_api::auth::require_token(app, token),
        None => app,
    };
    let signal = shutdown.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            signal.cancel();
        })
        .await;
    shutdown.cancel();
    let _ = worker_task.await;
    let _ = housekeeping.await;
    // How well group commit did (crates/sqlite/src/connections.rs): bench/load.py reads this.
    let (triggers, commits) = store.commit_counts().read();
    tracing::info!(triggers, commits, "triggers accepted, and the commits that held them, since start");
    served.map_err(StartError::Serve)
}

/// One gateway per data folder: its claims on deliveries are only safe to release at start-up
/// if no other process can hold any. The lock goes with the process, however it ends.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    let path = dir.join("gateway.lock");
    let file = std::fs::File::create(&path)
        .map_err(|source| StartError::DataDir { path: path.display().to_string(), source })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::AlreadyRunning(dir.display().to_string())),
        Err(std::fs::TryLockError::Error(source)) => {
            Err(StartError::DataDir { path: path.display().to_string(), source })
        }
    }
}

/// Triggers forgotten per SQLite transaction.
const FORGET_BATCH: usize = 500;

/// Hourly: forgets idempotency keys past their window and settled triggers past their retention.
async fn housekeeping(store: SqliteStore, retention: DeliveryRetention, shutdown: CancellationToken) {
    loop {
        let now = chrono::Utc::now();
        if let Err(error) = store.expire_idempotency_keys(now).await {
            tracing::warn!(%error, "cannot expire idempotency keys");
        }
        match forget_settled_triggers(&store, now, retention, &shutdown).await {
            Ok(0) => {}
            Ok(forgotten) => tracing::info!(forgotten, "settled triggers past their retention forgotten"),
            Err(error) => tracing::warn!(%error, "cannot forget triggers past their retention"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
    }
}

/// Batch after batch until none is full, or until shutdown.
async fn forget_settled_triggers(
    store: &SqliteStore,
    now: chrono::DateTime<chrono::Utc>,
    retention: DeliveryRetention,
    shutdown: &CancellationToken,
) -> gateway_core::error::Result<usize> {
    let mut forgotten = 0;
    loop {
        let batch = store.forget_settled_triggers(now, retention, FORGET_BATCH).await?;
        forgotten += batch;
        if batch < FORGET_BATCH || shutdown.is_cancelled() {
            return Ok(forgotten);
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
