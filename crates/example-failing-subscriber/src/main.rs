//! `example-failing-subscriber`: a function to subscribe to events that fails every invocation,
//! to see what the gateway does with a failing function. Each failed delivery is retried alone,
//! with backoff, up to `GATEWAY_MAX_ATTEMPTS` attempts in all; then it lands in the dead-letter
//! queue with its last error, and `GET /deliveries/{eventId}` shows it as `failed`. The other
//! functions subscribed to the same event are not invoked again.
//!
//! Subscribe it with `"delivery": {"mode": "sync"}` to see that anywhere: the gateway waits for
//! the function and records its error. With the default `async` mode, what happens depends on who
//! runs it: `cargo lambda watch` runs the function during the invoke and reports its error, so the
//! gateway retries it; on AWS, Lambda accepts the asynchronous invoke (the delivery is recorded
//! `invoked`: Lambda has it) and retries the function under its own policy.

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;

/// What every invocation fails with; the gateway records it as the delivery's last error.
#[derive(Debug, thiserror::Error)]
#[error("example-failing-subscriber fails on purpose: {event_id}")]
struct AlwaysFails {
    event_id: String,
}

/// The error Lambda reports: a named type rather than the Rust type's full path.
impl From<AlwaysFails> for Diagnostic {
    fn from(error: AlwaysFails) -> Self {
        Diagnostic { error_type: "AlwaysFails".into(), error_message: error.to_string() }
    }
}

async fn handle(event: LambdaEvent<Value>) -> Result<Value, AlwaysFails> {
    let payload = event.payload;
    tracing::info!(invocation = %payload, "received event; failing on purpose");
    let event_id = payload.get("eventId").and_then(Value::as_str).unwrap_or("no eventId");
    Err(AlwaysFails { event_id: event_id.to_owned() })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt().json().with_current_span(false).without_time().init();
    lambda_runtime::run(service_fn(handle)).await
}

#[cfg(test)]
mod tests {
    use lambda_runtime::Context;
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn fails_every_invocation_naming_the_event() {
        let payload = json!({"eventId": "evt_01JDQ3V6J9K2M4N5P6Q7R8S9T0", "data": {"id": 1}});
        let error = handle(LambdaEvent::new(payload, Context::default())).await.unwrap_err();
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "AlwaysFails");
        assert_eq!(
            diagnostic.error_message,
            "example-failing-subscriber fails on purpose: evt_01JDQ3V6J9K2M4N5P6Q7R8S9T0"
        );
    }
}
