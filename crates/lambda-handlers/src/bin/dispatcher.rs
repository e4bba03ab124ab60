//! `dispatcher`: runs the deliveries of the delivery queue's SQS batches.

#[tokio::main]
async fn main() -> Result<(), gateway_lambda_handlers::BoxError> {
    gateway_lambda_handlers::serve_dispatcher().await
}
