//! The outcome queue's reader: Lambda's invocation records of `async` deliveries, sent by the
//! subscribed functions' on-success and on-failure destinations, settle those deliveries
//! `delivered` or `failed` (`gateway_core::outcome`).
//!
//! A record whose delivery reads back `failed` goes where every failed delivery goes: to the
//! dead-letter queue with its error (its message rebuilt from the invocation payload the record
//! echoes), and into the log with that payload kept, to be redriven. A record that is not the
//! gateway's or cannot be checked changes nothing and is dropped (logged). One that could not
//! be recorded (the log or the dead-letter queue failed) is reported as a batch item failure, so
//! SQS delivers it again and, at worst, the outcome queue's redrive policy keeps it in its own
//! dead-letter queue; the delivery then stays `invoked`, which is still true.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use gateway_core::dispatch::{self, Echoed};
use gateway_core::message::DeliveryMessage;
use gateway_core::outcome::{self, ReportedOutcome};
use gateway_core::ports::{Clock, DeliveryRecorder, SystemClock};
use gateway_core::{DeliveryStatus, FunctionId, Home, Reported};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::queue::RetryQueue;

/// Lambda's invocation record, as an SQS destination receives it (the fields read here).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InvocationRecord {
    timestamp: DateTime<Utc>,
    request_context: RequestContext,
    /// Lambda leaves it out of a record too large for the destination.
    #[serde(default)]
    request_payload: Option<Box<RawValue>>,
    #[serde(default)]
    response_context: Option<ResponseContext>,
    #[serde(default)]
    response_payload: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestContext {
    request_id: String,
    function_arn: String,
    condition: String,
    #[serde(default)]
    approximate_invoke_count: u32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponseContext {
    #[serde(default)]
    function_error: Option<String>,
}

/// A record read: the outcome, and the payload its invocation carried.
#[derive(Debug)]
struct Read {
    outcome: ReportedOutcome,
    echo: Echoed,
}

/// Why a message was not read as a record of a gateway delivery.
#[derive(Debug, PartialEq)]
enum Unread {
    /// Not a record of a gateway delivery: dropped.
    NotOurs(String),
    /// A Lambda record that cannot be matched to its delivery because Lambda left out the request
    /// payload (the record was too large): kept, through the outcome queue's redrive policy, in
    /// its dead-letter queue, where its alarm says so; the delivery stays `invoked`.
    Unmatchable(String),
}

/// Reads an SQS body as an invocation record of a gateway delivery.
fn read(body: &str) -> Result<Read, Unread> {
    let record: InvocationRecord =
        serde_json::from_str(body).map_err(|e| Unread::NotOurs(format!("not a Lambda invocation record: {e}")))?;
    let Some(payload) = record.request_payload else {
        return Err(Unread::Unmatchable(format!(
            "Lambda's record of invocation {} of {} has no requestPayload (too large for the destination): its delivery cannot be known",
            record.request_context.request_id, record.request_context.function_arn
        )));
    };
    let echo = dispatch::read_invocation(payload.get())
        .map_err(|e| Unread::NotOurs(format!("its request payload is not a gateway invocation: {e}")))?;
    let function = FunctionId::parse(&record.request_context.function_arn)
        .map_err(|v| Unread::NotOurs(format!("requestContext.functionArn: {}", v.message)))?;
    let error = (record.request_context.condition != outcome::SUCCESS)
        .then(|| failure_reason(record.response_context.as_ref(), record.response_payload.as_deref()));
    Ok(Read {
        outcome: ReportedOutcome {
            event_id: echo.event_id,
            subscription_id: echo.subscription_id,
            generation: echo.generation,
            function,
            request_id: record.request_context.request_id,
            reported: Reported {
                at: record.timestamp,
                condition: record.request_context.condition,
                approximate_invoke_count: record.request_context.approximate_invoke_count,
            },
            error,
        },
        echo,
    })
}

/// What a failure record says went wrong: the function's `errorType: errorMessage` (the shape
/// every Lambda runtime reports), its response as it is otherwise, or that there was none (an
/// event Lambda dropped for its age never ran).
fn failure_reason(context: Option<&ResponseContext>, payload: Option<&RawValue>) -> String {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct FunctionError {
        #[serde(default)]
        error_type: Option<String>,
        error_message: String,
    }
    let kind = context.and_then(|c| c.function_error.as_deref());
    let said = match payload.map(|p| serde_json::from_str::<FunctionError>(p.get())) {
        Some(Ok(FunctionError { error_type: Some(t), error_message })) => format!("{t}: {error_message}"),
        Some(Ok(FunctionError { error_type: None, error_message })) => error_message,
        Some(Err(_)) => payload.map(|p| p.get().to_owned()).unwrap_or_default(),
        None => "the function returned no response".to_owned(),
    };
    match kind {
        Some(kind) => format!("{said} ({kind} function error)"),
        None => said,
    }
}

/// What became of one record.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    Recorded(DeliveryStatus),
    /// Not the gateway's, or not believable: dropped.
    Ignored(String),
    /// Could not be recorded: SQS should deliver it again.
    Again,
}

pub struct OutcomeRecorder {
    recorder: Arc<dyn DeliveryRecorder>,
    dead_letters: Arc<dyn RetryQueue>,
    home: Home,
    clock: Arc<dyn Clock>,
}

impl OutcomeRecorder {
    /// `home` is where the gateway runs, against which a record's function ARN is matched to a
    /// delivery's function id (the allowlist's home).
    pub fn new(recorder: Arc<dyn DeliveryRecorder>, dead_letters: Arc<dyn RetryQueue>, home: Home) -> Self {
        Self { recorder, dead_letters, home, clock: Arc::new(SystemClock) }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Records a batch of the outcome queue; the response lists the records SQS must deliver again.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let handled = join_all(event.records.iter().map(|record| async move {
            let handled = match record.body.as_deref() {
                Some(body) => self.record(body).await,
                None => Handled::Ignored("an SQS message without a body".into()),
            };
            (record.message_id.clone().unwrap_or_default(), handled)
        }))
        .await;
        let mut response = SqsBatchResponse::default();
        for (message_id, handled) in handled {
            if handled == Handled::Again {
                response.add_failure(message_id);
            }
        }
        response
    }

    /// Records one invocation record (an SQS body).
    pub async fn record(&self, body: &str) -> Handled {
        let Read { outcome, echo } = match read(body) {
            Ok(read) => read,
            Err(Unread::NotOurs(why)) => {
                tracing::warn!(%why, "a message on the outcome queue is not a record of a gateway delivery; dropped");
                return Handled::Ignored(why);
            }
            Err(Unread::Unmatchable(why)) => {
                tracing::error!(%why, "an invocation record cannot be matched; left to the outcome dead-letter queue");
                return Handled::Again;
            }
        };
        let (event_id, subscription_id) = (outcome.event_id, outcome.subscription_id);
        let recorded = match self.recorder.recorded_trigger(&event_id, &[subscription_id]).await {
            Ok(found) => found.deliveries.into_iter().next(),
            Err(error) => {
                tracing::error!(%error, %event_id, "cannot read the delivery log; the record will come again");
                return Handled::Again;
            }
        };
        let next = match outcome::settle(recorded.as_ref(), &outcome, &self.home, self.clock.now()) {
            Ok(next) => next,
            Err(ignored) => {
                tracing::warn!(%event_id, %subscription_id, generation = outcome.generation, why = ignored.as_str(),
                    "an invocation record changed nothing");
                return Handled::Ignored(ignored.as_str().to_owned());
            }
        };
        tracing::info!(%event_id, %subscription_id, generation = next.generation, status = next.status.as_str(),
            condition = %outcome.reported.condition, "Lambda reported an async delivery's outcome");
        if next.status == DeliveryStatus::Failed {
            let message = DeliveryMessage::for_delivery(
                &next,
                echo.data_type,
                echo.data,
                echo.data_encoding,
                echo.source,
                echo.cloud_event,
            );
            if let Err(error) = self.dead_letters.dead_letter(&message).await {
                tracing::error!(%error, %event_id, "cannot dead-letter a reported failure; the record will come again");
                return Handled::Again;
            }
            if let Err(error) = self.recorder.record_failed(&next, &message).await {
                tracing::error!(%error, %event_id, "cannot record a reported failure; the record will come again");
                return Handled::Again;
            }
        } else if let Err(error) = self.recorder.record_delivery(&next).await {
            tracing::error!(%error, %event_id, "cannot record a reported success; the record will come again");
            return Handled::Again;
        }
        Handled::Recorded(next.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lambda's failure record as the AWS documentation shows it ("Capturing records of Lambda
    /// asynchronous invocations"), its request payload a gateway invocation.
    const FAILURE: &str = r#"{
        "version": "1.0",
        "timestamp": "2026-12-02T10:00:05.568Z",
        "requestContext": {
            "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:my-app-orders:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3
        },
        "requestPayload": {
            "eventId": "evt_01JDQ3V6J9K2M4N5P6Q7R8S9T0", "event": "orders.created",
            "subscriptionId": "sub_01JDQ3V6J9K2M4N5P6Q7R8S9T0", "generation": 2, "attempt": 1,
            "functionId": "my-app-orders", "receivedAt": "2026-12-02T10:00:00Z",
            "data": {"orderId": "o-1"}, "dataType": "application/json", "metadata": {}
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": "Error", "errorMessage": "boom"}
    }"#;

    #[test]
    fn a_failure_record_names_its_delivery_series_and_the_functions_error() {
        let Read { outcome, echo } = read(FAILURE).unwrap();
        assert_eq!(outcome.event_id.to_string(), "evt_01JDQ3V6J9K2M4N5P6Q7R8S9T0");
        assert_eq!((outcome.generation, outcome.reported.approximate_invoke_count), (2, 3));
        assert_eq!(outcome.reported.condition, "RetriesExhausted");
        assert_eq!(outcome.error.as_deref(), Some("Error: boom (Unhandled function error)"));
        assert_eq!(echo.data.get(), r#"{"orderId": "o-1"}"#);
    }

    #[test]
    fn a_success_has_no_error_and_an_aged_out_event_says_it_never_ran() {
        let success = FAILURE
            .replace("RetriesExhausted", "Success")
            .replace(r#""functionError": "Unhandled""#, r#""x": 1"#)
            .replace(r#"{"errorType": "Error", "errorMessage": "boom"}"#, "null");
        assert_eq!(read(&success).unwrap().outcome.error, None);
        let aged: serde_json::Value =
            serde_json::from_str(&FAILURE.replace("RetriesExhausted", "EventAgeExceeded")).unwrap();
        let mut aged = aged;
        let map = aged.as_object_mut().unwrap();
        map.remove("responseContext");
        map.remove("responsePayload");
        let outcome = read(&aged.to_string()).unwrap().outcome;
        assert_eq!(outcome.error.as_deref(), Some("the function returned no response"));
    }

    #[test]
    fn what_is_not_a_record_of_a_gateway_delivery_is_refused_with_why() {
        let not_ours = |body: &str| match read(body) {
            Err(Unread::NotOurs(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(not_ours("{}").starts_with("not a Lambda invocation record"));
        let foreign = FAILURE.replace(r#""eventId": "evt_01JDQ3V6J9K2M4N5P6Q7R8S9T0", "#, "");
        assert!(not_ours(&foreign).contains("not a gateway invocation"));
        let bad_arn =
            FAILURE.replace("arn:aws:lambda:us-east-1:123456789012:function:my-app-orders:$LATEST", "nope:x:y");
        assert!(not_ours(&bad_arn).starts_with("requestContext.functionArn"));
        // a record Lambda cut short is Lambda's, but cannot be matched: kept, not dropped
        let mut cut: serde_json::Value = serde_json::from_str(FAILURE).unwrap();
        cut.as_object_mut().unwrap().remove("requestPayload");
        assert!(matches!(read(&cut.to_string()), Err(Unread::Unmatchable(why)) if why.contains("e4b46cbf")));
    }
}
