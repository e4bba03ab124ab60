//! The Lambda adapter: runs a subscribed function through the Lambda Invoke API.
//!
//! `async` deliveries invoke with `InvocationType=Event`: success means Lambda has queued the
//! event for the function, which then runs under Lambda's own retry policy (`Invoked::Accepted`).
//! `sync` deliveries invoke with `RequestResponse` and wait, at most their timeout, for the
//! function's own outcome: its success (`Invoked::Succeeded`), or its error (`FunctionError`,
//! with the payload's `errorType` and `errorMessage`). The same client reaches `cargo lambda
//! watch` when `AWS_ENDPOINT_URL_LAMBDA` points at it.

use aws_sdk_lambda::operation::RequestId;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_lambda::config::http::HttpResponse;
use aws_sdk_lambda::config::timeout::TimeoutConfig;
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::invoke::InvokeError as SdkInvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_sdk_lambda::Client;
use gateway_core::dispatch::truncated;
use gateway_core::ports::{FunctionInvoker, InvocationMode, InvokeError, Invoked};
use gateway_core::FunctionId;

pub struct LambdaInvoker {
    client: Client,
}

impl LambdaInvoker {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The client's timeouts with a `sync` invocation's own: the whole call (and any wait for
    /// its answer's bytes) may take `timeout`, which may be far longer than an `async` invoke's
    /// limit the client was built with (a function may run 900 s).
    fn timeouts_for(&self, timeout: Duration) -> TimeoutConfig {
        let base = self.client.config().timeout_config().map(TimeoutConfig::to_builder).unwrap_or_default();
        let read = base.clone().build().read_timeout().map(|_| timeout);
        let mut sync = base.operation_timeout(timeout).operation_attempt_timeout(timeout);
        sync.set_read_timeout(read);
        sync.build()
    }
}

#[async_trait]
impl FunctionInvoker for LambdaInvoker {
    async fn invoke(
        &self,
        function: &FunctionId,
        payload: &[u8],
        mode: InvocationMode,
    ) -> Result<Invoked, InvokeError> {
        let request = self.client.invoke().function_name(function.as_str()).payload(Blob::new(payload));
        let result = match mode {
            InvocationMode::Async => request.invocation_type(InvocationType::Event).send().await,
            InvocationMode::Sync { timeout } => {
                request
                    .invocation_type(InvocationType::RequestResponse)
                    .customize()
                    .config_override(
                        aws_sdk_lambda::config::Builder::default().timeout_config(self.timeouts_for(timeout)),
                    )
                    .send()
                    .await
            }
        };
        match result {
            // `sync`: the function's own error, as Lambda reports it. `async`: Lambda answers 202
            // and runs the function later, so it never reports one here (an emulator that runs
            // the function at once might; `cargo lambda watch` answers HTTP 500, see `classify`).
            Ok(output) => match output.function_error() {
                Some(kind) => Err(InvokeError {
                    message: function_failed(function, kind, output.payload().map(Blob::as_ref)),
                    retryable: true,
                }),
                None => Ok(match mode {
                    // The id an outcome record of this invocation will name (`x-amzn-RequestId`).
                    InvocationMode::Async => Invoked::Accepted { request_id: output.request_id().map(str::to_owned) },
                    InvocationMode::Sync { .. } => Invoked::Succeeded,
                }),
            },
            Err(err) => match (mode, err) {
                // The function may still be running, and may yet succeed: a retry may then run
                // it twice, which at-least-once delivery allows.
                (InvocationMode::Sync { timeout }, SdkError::TimeoutError(_)) => Err(InvokeError {
                    message: format!(
                        "invoking '{function}': timed out: no answer within {} s (the function may still be running)",
                        timeout.as_secs_f64()
                    ),
                    retryable: true,
                }),
                (_, err) => Err(classify(function, err)),
            },
        }
    }
}

/// Whether `body` is a function error as Lambda's runtime reports it: JSON with `errorType`.
fn is_function_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.get("errorType").is_some_and(|t| t.is_string()))
}

/// How many bytes of a function error's payload are kept when it is not the usual JSON.
const MAX_RAW_ERROR_BYTES: usize = 300;

/// What a function error says: its kind (`Unhandled`, `Handled`) and, from the payload Lambda
/// returns for it, `errorType` and `errorMessage`; the raw payload, cut, if it is not that JSON.
fn function_failed(function: &FunctionId, kind: &str, payload: Option<&[u8]>) -> String {
    let payload = payload.unwrap_or_default();
    let reported = serde_json::from_slice::<serde_json::Value>(payload).ok().and_then(|v| {
        let field = |name: &str| v.get(name).and_then(serde_json::Value::as_str).map(str::to_owned);
        match (field("errorType"), field("errorMessage")) {
            (None, None) => None,
            (error_type, message) => Some((error_type, message)),
        }
    });
    let detail = match reported {
        Some((Some(error_type), Some(message))) => format!("{error_type}: {message}"),
        Some((Some(error_type), None)) => error_type,
        Some((None, Some(message))) => message,
        _ => truncated(String::from_utf8_lossy(payload).trim(), MAX_RAW_ERROR_BYTES),
    };
    if detail.is_empty() {
        format!("function '{function}' failed ({kind})")
    } else {
        format!("function '{function}' failed ({kind}): {detail}")
    }
}

/// Whether a later attempt of the same Invoke can succeed with nobody changing anything.
///
/// Retried: throttling and Lambda's own faults, and every state Lambda says will pass on its
/// own (a deployment in progress, a function or its network interface not ready yet, EC2, ENI
/// and subnet capacity, file-system and SnapStart hiccups, a code artifact user being made).
/// Not retried: what only a change by someone can mend (no such function or version, a request
/// Lambda refuses, a function whose package, runtime, VPC, KMS key or file system is set up
/// wrongly, a recursive loop Lambda stopped, access denied). Such a delivery fails at once with
/// the error; fix the cause and redrive it. docs/ARCHITECTURE.md lists both sets.
fn retryable(err: &SdkError<SdkInvokeError, HttpResponse>) -> bool {
    use SdkInvokeError as E;
    let service = match err {
        // Our own request could not be built: sending it again builds it the same way.
        SdkError::ConstructionFailure(_) => return false,
        // No answer, or one that could not be read: the call may pass next time.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => return true,
        SdkError::ServiceError(service) => service.err(),
        _ => return true,
    };
    match service {
        E::TooManyRequestsException(_)
        | E::ServiceException(_)
        | E::ServiceQuotaExceededException(_)
        | E::ResourceConflictException(_)
        | E::ResourceNotReadyException(_)
        | E::Ec2ThrottledException(_)
        | E::Ec2UnexpectedException(_)
        | E::EniLimitReachedException(_)
        | E::EniNotReadyException(_)
        | E::SubnetIpAddressLimitReachedException(_)
        | E::EfsioException(_)
        | E::EfsMountConnectivityException(_)
        | E::EfsMountTimeoutException(_)
        | E::S3FilesMountConnectivityException(_)
        | E::S3FilesMountTimeoutException(_)
        | E::SnapStartException(_)
        | E::SnapStartNotReadyException(_)
        | E::SnapStartTimeoutException(_)
        | E::SnapStartRegenerationFailureException(_)
        | E::CodeArtifactUserPendingException(_)
        | E::CodeArtifactUserDeletedException(_) => true,
        E::ResourceNotFoundException(_)
        | E::InvalidParameterValueException(_)
        | E::InvalidRequestContentException(_)
        | E::RequestTooLargeException(_)
        | E::SerializedRequestEntityTooLargeException(_)
        | E::UnsupportedMediaTypeException(_)
        | E::ModeNotSupportedException(_)
        | E::NoPublishedVersionException(_)
        | E::RecursiveInvocationException(_)
        | E::DurableExecutionAlreadyStartedException(_)
        | E::InvalidRuntimeException(_)
        | E::InvalidZipFileException(_)
        | E::InvalidSecurityGroupIdException(_)
        | E::InvalidSubnetIdException(_)
        | E::Ec2AccessDeniedException(_)
        | E::EfsMountFailureException(_)
        | E::S3FilesMountFailureException(_)
        | E::KmsAccessDeniedException(_)
        | E::KmsDisabledException(_)
        | E::KmsInvalidStateException(_)
        | E::KmsNotFoundException(_)
        | E::CodeArtifactUserFailedException(_) => false,
        // Errors the SDK does not model (the service's common errors, or ones added after this
        // SDK): refused credentials, signatures and requests are permanent; anything else may pass.
        other => match other.code() {
            Some(code) => !matches!(
                code,
                "AccessDeniedException"
                    | "UnrecognizedClientException"
                    | "InvalidSignatureException"
                    | "IncompleteSignatureException"
                    | "MissingAuthenticationTokenException"
                    // A request that breaks the API's own constraints (a FunctionName Lambda's
                    // pattern refuses): sent again, it breaks them again.
                    | "ValidationException"
            ),
            // No error code at all: not Lambda's answer but an emulator's or a proxy's. Only
            // its status can tell; a refusal (4xx but timeout and throttling) is permanent.
            None => !err
                .raw_response()
                .map(|r| r.status().as_u16())
                .is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429),
        },
    }
}

fn classify(function: &FunctionId, err: SdkError<SdkInvokeError, HttpResponse>) -> InvokeError {
    let retryable = retryable(&err);
    let message = match (err.code(), err.message(), err.raw_response()) {
        (Some(code), Some(message), _) => format!("invoking '{function}': {code}: {message}"),
        (Some(code), None, _) => format!("invoking '{function}': {code}"),
        (None, _, Some(raw)) => {
            let (status, body) = (raw.status().as_u16(), raw.body().bytes().unwrap_or_default());
            if is_function_error(body) {
                // `cargo lambda watch` answers a function's error (to either invocation type) so:
                // an HTTP 500 carrying the error, without Lambda's `X-Amz-Function-Error`.
                function_failed(function, &format!("HTTP {status}"), Some(body))
            } else {
                let body = String::from_utf8_lossy(body);
                format!("invoking '{function}': HTTP {status}: {}", body.chars().take(300).collect::<String>())
            }
        }
        _ => format!("invoking '{function}': {}", DisplayErrorContext(&err)),
    };
    InvokeError { message, retryable }
}

#[cfg(test)]
mod tests;
