//! `trigger-api`: the triggers routes of the HTTP API, behind API Gateway.

use gateway_api::RouteGroup;

#[tokio::main]
async fn main() -> Result<(), gateway_lambda_handlers::BoxError> {
    gateway_lambda_handlers::serve_http(RouteGroup::Triggers).await
}
