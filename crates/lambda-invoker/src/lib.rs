//! The Lambda adapter: runs a subscribed function through the Lambda Invoke API.
//!
//! Invocations are asynchronous (`InvocationType=Event`): success means Lambda has queued the
//! event for the function, which then runs under Lambda's own retry policy. The same client
//! reaches `cargo lambda watch` when `AWS_ENDPOINT_URL_LAMBDA` points at it.

use async_trait::async_trait;
use aws_sdk_lambda::config::http::HttpResponse;
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_sdk_lambda::Client;
use gateway_core::ports::{FunctionInvoker, InvokeError};
use gateway_core::FunctionId;

pub struct LambdaInvoker {
    client: Client,
}

impl LambdaInvoker {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

/// Errors that no retry can mend: the function, its permissions or the request are wrong.
const PERMANENT: &[&str] = &[
    "ResourceNotFoundException",
    "AccessDeniedException",
    "InvalidParameterValueException",
    "InvalidRequestContentException",
    "RequestTooLargeException",
    "UnrecognizedClientException",
];

#[async_trait]
impl FunctionInvoker for LambdaInvoker {
    async fn invoke(&self, function: &FunctionId, payload: &[u8]) -> Result<(), InvokeError> {
        let result = self
            .client
            .invoke()
            .function_name(function.as_str())
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await;
        match result {
            Ok(output) => match output.function_error() {
                // Only a synchronous runner (a local emulator) reports the function's own error here.
                Some(kind) => {
                    Err(InvokeError { message: format!("function '{function}' failed: {kind}"), retryable: true })
                }
                None => Ok(()),
            },
            Err(err) => Err(classify(function, err)),
        }
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    function: &FunctionId,
    err: SdkError<E, HttpResponse>,
) -> InvokeError {
    let code = err.code().map(str::to_owned);
    let status = err.raw_response().map(|r| r.status().as_u16());
    let message = match (&code, err.message(), err.raw_response()) {
        (Some(code), Some(message), _) => format!("invoking '{function}': {code}: {message}"),
        (Some(code), None, _) => format!("invoking '{function}': {code}"),
        (None, _, Some(raw)) => {
            let body = raw.body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
            format!(
                "invoking '{function}': HTTP {}: {}",
                raw.status().as_u16(),
                body.chars().take(300).collect::<String>()
            )
        }
        _ => format!("invoking '{function}': {}", DisplayErrorContext(&err)),
    };
    // A 4xx other than throttling means the request itself is wrong; 5xx and no answer may pass.
    let permanent_status = status.is_some_and(|s| (400..500).contains(&s) && s != 429 && s != 408);
    let retryable = !(code.as_deref().is_some_and(|c| PERMANENT.contains(&c)) || permanent_status);
    InvokeError { message, retryable }
}
