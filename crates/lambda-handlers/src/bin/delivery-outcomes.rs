//! `delivery-outcomes`: records Lambda's reports of async deliveries from the outcome queue.

#[tokio::main]
async fn main() -> Result<(), gateway_lambda_handlers::BoxError> {
    gateway_lambda_handlers::serve_outcomes().await
}
