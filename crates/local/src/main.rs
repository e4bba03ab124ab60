//! `event-gateway`: the local gateway. Configuration is read from the environment (see
//! `gateway_local::Config`); the Lambda client honours `AWS_ENDPOINT_URL_LAMBDA`.

use std::process::ExitCode;

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use gateway_local::Config;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("event-gateway: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    let aws = aws_config::defaults(BehaviorVersion::latest())
        .region(RegionProviderChain::default_provider().or_else("us-east-1"))
        .timeout_config(TimeoutConfig::builder().operation_timeout(config.invoke_timeout).build())
        // The outbox retries with backoff and counts attempts; SDK retries would hide them.
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .load()
        .await;
    let home = gateway_local::resolve_home(&config, &aws).await;
    match gateway_local::run(config, home, aws_sdk_lambda::Client::new(&aws)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("event-gateway: {error}");
            ExitCode::FAILURE
        }
    }
}
