//! `hello-lambda`: the smallest `lambda_runtime` function, which echoes its payload. It is the
//! baseline that `coldstart` compares every handler's cold start with.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async { Ok::<Value, Error>(event.payload) })).await
}
