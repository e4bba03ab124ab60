//! Wiring for the gateway's Lambda functions. Each binary is a few lines: it names its route
//! group (or the dispatcher, the ingest function, the outcome recorder) and calls into here,
//! which reads the environment once, builds the SDK clients once, and starts the runtime. No request logic lives here: that is in
//! `gateway-api`, `gateway-dispatcher` and the core.

mod http_client;

use std::sync::Arc;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use gateway_api::{Gateway, RouteGroup};
use gateway_core::ports::{Acceptance, DeliveryRedrive, SystemClock, TriggerAcceptor, UlidSource};
use gateway_core::schema::SchemaCache;
use gateway_core::{
    Delivery, DeliveryRetention, Error, EventId, FunctionAllowlist, IdempotencyKey, SubscriptionId, Trigger,
};
use gateway_dispatcher::{Dispatcher, OutcomeRecorder, SqsRetryQueue};
use gateway_dynamodb::{DynamoRedrive, DynamoStore, RedriveQueue, SqsRedriveQueue};
use gateway_ingest::{Ingestor, SqsRejections};
use gateway_lambda_invoker::LambdaInvoker;
use gateway_sns::{SnsAcceptor, SnsPublisher};
use lambda_runtime::{service_fn, LambdaEvent};

/// A trigger's SNS message carries the payload and its deliveries in 256 KiB; 192 KiB of payload
/// leaves room for them. A larger JSON payload that still fits is accepted; one that does not is
/// refused with 413 before anything is published.
pub const CLOUD_MAX_PAYLOAD_BYTES: usize = 192 * 1024;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    var: &'static str,
    problem: String,
}

/// The HTTP handlers' settings, from the environment the template sets.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// `GATEWAY_TABLE`.
    pub table: String,
    /// `GATEWAY_TOPIC_ARN`: required by the function serving triggers only.
    pub topic_arn: Option<String>,
    /// `GATEWAY_DELIVERY_QUEUE_URL`: where a redrive hands deliveries over; read by the
    /// function serving triggers (and the redrive routes) only. The template always sets it;
    /// without it (a `sam local invoke` or a test that only triggers) the redrive routes answer
    /// 503 and everything else works.
    pub delivery_queue_url: Option<String>,
    /// `GATEWAY_FUNCTION_ALLOWLIST` (required; in the cloud there is no "any function" default),
    /// at home in `AWS_REGION` and `GATEWAY_ACCOUNT_ID`.
    pub allowlist: FunctionAllowlist,
    /// `GATEWAY_MAX_PAYLOAD_BYTES`, default [`CLOUD_MAX_PAYLOAD_BYTES`].
    pub max_payload_bytes: usize,
    /// `GATEWAY_DELIVERY_RETENTION_DAYS`, default 30: the TTL of the delivery records a trigger writes.
    pub delivery_retention: DeliveryRetention,
}

impl HttpSettings {
    pub fn from_lookup(group: RouteGroup, get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |var: &'static str| {
            get(var).filter(|v| !v.trim().is_empty()).ok_or(ConfigError { var, problem: "is required".into() })
        };
        let serves_triggers = matches!(group, RouteGroup::Triggers | RouteGroup::All);
        let max_payload_bytes = match get("GATEWAY_MAX_PAYLOAD_BYTES") {
            None => CLOUD_MAX_PAYLOAD_BYTES,
            Some(raw) => raw.trim().parse().map_err(|_| ConfigError {
                var: "GATEWAY_MAX_PAYLOAD_BYTES",
                problem: format!("'{raw}' is not a whole number"),
            })?,
        };
        Ok(Self {
            table: required("GATEWAY_TABLE")?,
            topic_arn: if serves_triggers { Some(required("GATEWAY_TOPIC_ARN")?) } else { None },
            allowlist: gateway_core::allowlist::cloud_allowlist(&get)
                .map_err(|(var, problem)| ConfigError { var, problem })?,
            delivery_queue_url: get("GATEWAY_DELIVERY_QUEUE_URL")
                .filter(|url| serves_triggers && !url.trim().is_empty()),
            max_payload_bytes,
            delivery_retention: DeliveryRetention::parse(get("GATEWAY_DELIVERY_RETENTION_DAYS").as_deref())
                .map_err(|problem| ConfigError { var: "GATEWAY_DELIVERY_RETENTION_DAYS", problem })?,
        })
    }
}

/// Stands in for the trigger acceptor in functions whose routes never trigger, so they need
/// neither the topic nor the permission to publish to it.
struct NoTriggersHere;

#[async_trait]
impl TriggerAcceptor for NoTriggersHere {
    async fn accept(&self, _: &Trigger, _: Option<&IdempotencyKey>) -> gateway_core::error::Result<Acceptance> {
        Err(Error::unavailable("this function does not serve triggers"))
    }
}

/// Stands in for the redrive in functions that do not serve the redrive routes (or were given
/// no delivery queue), so they need neither the queue nor the permission to send to it.
struct NoRedriveHere;

const NO_REDRIVE: &str = "this function cannot redrive: it has no GATEWAY_DELIVERY_QUEUE_URL";

#[async_trait]
impl DeliveryRedrive for NoRedriveHere {
    async fn failed_of_trigger(
        &self,
        _: &EventId,
        _: Option<&SubscriptionId>,
    ) -> gateway_core::error::Result<Option<Vec<Delivery>>> {
        Err(Error::unavailable(NO_REDRIVE))
    }
    async fn failed_of_subscription(
        &self,
        _: &SubscriptionId,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
        _: u32,
    ) -> gateway_core::error::Result<Vec<Delivery>> {
        Err(Error::unavailable(NO_REDRIVE))
    }
    async fn redrive(&self, _: &Delivery) -> gateway_core::error::Result<bool> {
        Err(Error::unavailable(NO_REDRIVE))
    }
}

/// The redrive a route group needs: the table's failed records and the delivery queue
/// (`DynamoRedrive`), for the function that serves the redrive routes (`Gateway::redrive`).
pub fn cloud_redrive(
    settings: &HttpSettings,
    store: &DynamoStore,
    aws: &aws_config::SdkConfig,
) -> Arc<dyn DeliveryRedrive> {
    match &settings.delivery_queue_url {
        Some(url) => Arc::new(DynamoRedrive::new(
            store.clone(),
            Arc::new(LazyQueue { aws: aws.clone(), url: url.clone(), queue: std::sync::OnceLock::new() }),
        )),
        None => Arc::new(NoRedriveHere),
    }
}

/// The delivery queue, its SQS client built on the first redrive: the trigger function serves
/// redrives rarely and triggers all the time, and building one more SDK client in `main` cost its
/// cold start about 0.05 of the baseline (docs/PERFORMANCE.md).
struct LazyQueue {
    aws: aws_config::SdkConfig,
    url: String,
    queue: std::sync::OnceLock<SqsRedriveQueue>,
}

#[async_trait]
impl RedriveQueue for LazyQueue {
    async fn enqueue(&self, message: &gateway_core::message::DeliveryMessage) -> std::result::Result<(), String> {
        let queue =
            self.queue.get_or_init(|| SqsRedriveQueue::new(aws_sdk_sqs::Client::new(&self.aws), self.url.clone()));
        queue.enqueue(message).await
    }
}

/// The gateway a route group needs, over DynamoDB and SNS.
pub fn cloud_gateway(settings: HttpSettings, aws: &aws_config::SdkConfig) -> Gateway {
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(aws), settings.table.clone())
        .with_delivery_retention(settings.delivery_retention);
    let redrive = cloud_redrive(&settings, &store, aws);
    let acceptor: Arc<dyn TriggerAcceptor> = match settings.topic_arn {
        Some(topic) => {
            Arc::new(SnsAcceptor::with_store(SnsPublisher::new(aws_sdk_sns::Client::new(aws), topic), store.clone()))
        }
        None => Arc::new(NoTriggersHere),
    };
    Gateway {
        events: Arc::new(store.clone()),
        subscriptions: Arc::new(store.clone()),
        sources: Arc::new(store.clone()),
        registry: Arc::new(store.clone()),
        trigger_source: Arc::new(store.clone()),
        acceptor,
        deliveries: Arc::new(store),
        redrive,
        schemas: SchemaCache::new(),
        clock: Arc::new(SystemClock),
        ids: Arc::new(UlidSource),
        allowlist: settings.allowlist,
        max_payload_bytes: settings.max_payload_bytes,
    }
}

async fn aws_config() -> aws_config::SdkConfig {
    // Lambda gives every function its credentials and region in the environment, so the
    // default chains (profile files, SSO, IMDS...) are not built at all; TLS and connections are
    // made on the first request.
    aws_config::defaults(BehaviorVersion::latest())
        .credentials_provider(aws_config::environment::EnvironmentVariableCredentialsProvider::new())
        .region(aws_config::environment::EnvironmentVariableRegionProvider::new())
        .http_client(http_client::DeferredTlsClient::default())
        .load()
        .await
}

/// Serves one route group of the HTTP API behind API Gateway.
pub async fn serve_http(group: RouteGroup) -> Result<(), BoxError> {
    lambda_http::tracing::init_default_subscriber();
    let settings = HttpSettings::from_lookup(group, |k| std::env::var(k).ok())?;
    let aws = aws_config().await;
    let router = gateway_api::router(cloud_gateway(settings, &aws), group);
    lambda_http::run(router).await
}

/// The ingest function's settings, from the environment the template sets.
#[derive(Clone, Debug)]
pub struct IngestSettings {
    /// `GATEWAY_TABLE`.
    pub table: String,
    /// `GATEWAY_TOPIC_ARN`: triggers go out as the trigger function's do.
    pub topic_arn: String,
    /// `GATEWAY_INGEST_DEAD_LETTER_QUEUE_URL`: where rejected records go, with their reason.
    pub dead_letter_queue_url: String,
    /// `GATEWAY_MAX_PAYLOAD_BYTES`, default [`CLOUD_MAX_PAYLOAD_BYTES`]: a larger record is rejected.
    pub max_payload_bytes: usize,
    /// `GATEWAY_DELIVERY_RETENTION_DAYS`, default 30.
    pub delivery_retention: DeliveryRetention,
}

impl IngestSettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |var: &'static str| {
            get(var).filter(|v| !v.trim().is_empty()).ok_or(ConfigError { var, problem: "is required".into() })
        };
        let max_payload_bytes = match get("GATEWAY_MAX_PAYLOAD_BYTES") {
            None => CLOUD_MAX_PAYLOAD_BYTES,
            Some(raw) => raw.trim().parse().map_err(|_| ConfigError {
                var: "GATEWAY_MAX_PAYLOAD_BYTES",
                problem: format!("'{raw}' is not a whole number"),
            })?,
        };
        Ok(Self {
            table: required("GATEWAY_TABLE")?,
            topic_arn: required("GATEWAY_TOPIC_ARN")?,
            dead_letter_queue_url: required("GATEWAY_INGEST_DEAD_LETTER_QUEUE_URL")?,
            max_payload_bytes,
            delivery_retention: DeliveryRetention::parse(get("GATEWAY_DELIVERY_RETENTION_DAYS").as_deref())
                .map_err(|problem| ConfigError { var: "GATEWAY_DELIVERY_RETENTION_DAYS", problem })?,
        })
    }
}

/// Runs the ingest function on the native events of its wired sources.
pub async fn serve_ingest() -> Result<(), BoxError> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = IngestSettings::from_lookup(|k| std::env::var(k).ok())?;
    let aws = aws_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), settings.table)
        .with_delivery_retention(settings.delivery_retention);
    let publisher = SnsPublisher::new(aws_sdk_sns::Client::new(&aws), settings.topic_arn);
    let rejections = SqsRejections::new(aws_sdk_sqs::Client::new(&aws), settings.dead_letter_queue_url);
    let ingestor = Ingestor {
        trigger_source: Arc::new(store.clone()),
        acceptor: Arc::new(SnsAcceptor::with_store(publisher, store.clone())),
        sources: Arc::new(store.clone()),
        registry: Arc::new(store),
        rejections: Arc::new(rejections),
        schemas: SchemaCache::new(),
        clock: Arc::new(SystemClock),
        ids: Arc::new(UlidSource),
        max_payload_bytes: settings.max_payload_bytes,
    };
    let ingestor = &ingestor;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let deadline = gateway_ingest::invocation_deadline(event.context.deadline, chrono::Utc::now());
        ingestor.handle(event.payload, deadline).await.map_err(BoxError::from)
    }))
    .await
}

/// Runs the dispatcher on the delivery queue's SQS batches.
pub async fn serve_dispatcher() -> Result<(), BoxError> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = gateway_dispatcher::Config::from_env()?;
    let aws = aws_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), config.table_name.clone())
        .with_delivery_retention(config.delivery_retention);
    let queue =
        SqsRetryQueue::new(aws_sdk_sqs::Client::new(&aws), config.delivery_queue_url, config.dead_letter_queue_url);
    // The dispatcher retries a failed delivery with backoff and counts its attempts: SDK retries
    // would invoke a failing function several times per attempt, uncounted.
    let lambda = aws_sdk_lambda::config::Builder::from(&aws).retry_config(RetryConfig::standard().with_max_attempts(1));
    let invoker = LambdaInvoker::new(aws_sdk_lambda::Client::from_conf(lambda.build()));
    let dispatcher = Dispatcher::new(Arc::new(store), Arc::new(invoker), Arc::new(queue), config.settings);
    let dispatcher = &dispatcher;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        // A sync attempt waits at most until shortly before the invocation's deadline.
        let deadline = gateway_dispatcher::invocation_deadline(event.context.deadline);
        Ok::<SqsBatchResponse, BoxError>(dispatcher.handle_before(event.payload, deadline).await)
    }))
    .await
}

/// Runs the outcome recorder on the outcome queue's SQS batches: Lambda's invocation records of
/// `async` deliveries, sent by the subscribed functions' destinations.
pub async fn serve_outcomes() -> Result<(), BoxError> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = gateway_dispatcher::OutcomeConfig::from_env()?;
    let aws = aws_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), config.table_name)
        .with_delivery_retention(config.delivery_retention);
    let dead_letters = SqsRetryQueue::dead_letters_only(aws_sdk_sqs::Client::new(&aws), config.dead_letter_queue_url);
    let recorder = OutcomeRecorder::new(Arc::new(store), Arc::new(dead_letters), config.home);
    let recorder = &recorder;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, BoxError>(recorder.handle(event.payload).await)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ingest_function_needs_its_table_topic_and_dead_letter_queue() {
        let err = IngestSettings::from_lookup(env(&[("GATEWAY_TABLE", "gateway")])).unwrap_err();
        assert!(err.to_string().starts_with("GATEWAY_TOPIC_ARN: is required"), "{err}");
        let settings = IngestSettings::from_lookup(env(&[
            ("GATEWAY_TABLE", "gateway"),
            ("GATEWAY_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:t"),
            ("GATEWAY_INGEST_DEAD_LETTER_QUEUE_URL", "https://sqs/123456789012/ingest-dlq"),
        ]))
        .unwrap();
        assert_eq!(settings.max_payload_bytes, CLOUD_MAX_PAYLOAD_BYTES);
    }

    #[test]
    fn every_http_handler_refuses_to_start_without_an_allowlist() {
        for group in [RouteGroup::Events, RouteGroup::Subscriptions, RouteGroup::Triggers] {
            let err = HttpSettings::from_lookup(
                group,
                env(&[
                    ("GATEWAY_TABLE", "gateway"),
                    ("GATEWAY_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:t"),
                    ("AWS_REGION", "us-east-1"),
                ]),
            )
            .unwrap_err();
            assert!(err.to_string().starts_with("GATEWAY_FUNCTION_ALLOWLIST: is required"), "{group:?}: {err}");
        }
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn only_the_function_serving_triggers_takes_the_delivery_queue_for_redrives() {
        const BASE: &[(&str, &str)] = &[
            ("GATEWAY_TABLE", "gateway"),
            ("GATEWAY_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:t"),
            ("GATEWAY_FUNCTION_ALLOWLIST", "my-app-"),
            ("AWS_REGION", "us-east-1"),
            ("GATEWAY_DELIVERY_QUEUE_URL", "https://sqs/123456789012/deliveries"),
        ];
        let triggers = HttpSettings::from_lookup(RouteGroup::Triggers, env(BASE)).unwrap();
        assert_eq!(triggers.delivery_queue_url.as_deref(), Some("https://sqs/123456789012/deliveries"));
        let events = HttpSettings::from_lookup(RouteGroup::Events, env(BASE)).unwrap();
        assert_eq!(events.delivery_queue_url, None);
        let without = HttpSettings::from_lookup(RouteGroup::Triggers, env(&BASE[..4])).unwrap();
        assert_eq!(without.delivery_queue_url, None, "it still starts: only the redrive routes need it");
    }

    #[test]
    fn delivery_records_are_kept_thirty_days_unless_configured() {
        let settings = HttpSettings::from_lookup(
            RouteGroup::Events,
            env(&[
                ("GATEWAY_TABLE", "gateway"),
                ("GATEWAY_FUNCTION_ALLOWLIST", "my-app-"),
                ("AWS_REGION", "us-east-1"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.delivery_retention, DeliveryRetention::days(30).unwrap());
        let err = HttpSettings::from_lookup(
            RouteGroup::Events,
            env(&[
                ("GATEWAY_TABLE", "gateway"),
                ("GATEWAY_FUNCTION_ALLOWLIST", "my-app-"),
                ("AWS_REGION", "us-east-1"),
                ("GATEWAY_DELIVERY_RETENTION_DAYS", "0"),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("GATEWAY_DELIVERY_RETENTION_DAYS: 0 is not between 1"), "{err}");
    }
}
