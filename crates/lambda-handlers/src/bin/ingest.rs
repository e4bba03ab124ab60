//! `ingest`: native events of the wired AWS sources in, gateway triggers out.

#[tokio::main]
async fn main() -> Result<(), gateway_lambda_handlers::BoxError> {
    gateway_lambda_handlers::serve_ingest().await
}
