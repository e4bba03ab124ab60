//! `example-subscriber`: a function to subscribe to events. It logs each invocation payload
//! it receives as one JSON line and answers with what it saw.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let payload = event.payload;
    tracing::info!(invocation = %payload, "received event");
    Ok(json!({ "received": payload.get("eventId").cloned().unwrap_or(Value::Null) }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt().json().with_current_span(false).without_time().init();
    lambda_runtime::run(service_fn(handle)).await
}

#[cfg(test)]
mod tests {
    use lambda_runtime::Context;

    use super::*;

    #[tokio::test]
    async fn answers_with_the_event_id_it_received() {
        let payload = json!({"eventId": "evt_01JDQ3V6J9K2M4N5P6Q7R8S9T0", "data": {"id": 1}});
        let out = handle(LambdaEvent::new(payload, Context::default())).await.unwrap();
        assert_eq!(out["received"], "evt_01JDQ3V6J9K2M4N5P6Q7R8S9T0");
    }
}
