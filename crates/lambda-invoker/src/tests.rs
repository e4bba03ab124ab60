//! The adapter against Lambda's real wire answers, replayed: each error as the service sends it
//! (status, `x-amzn-errortype`, JSON body), parsed by the real SDK client.

use aws_credential_types::Credentials;
use aws_sdk_lambda::config::{BehaviorVersion, Region};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use std::time::Duration;

use aws_smithy_types::body::SdkBody;

use super::*;

/// Answers every request with one canned response, noting each request's `X-Amz-Invocation-Type`.
#[derive(Clone, Debug, Default)]
struct Replay {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// Never answers: the call hangs until a timeout ends it.
    hang: bool,
    /// Answers after this long, as a function that runs a while.
    delay: Duration,
    invocation_types: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Replay {
    fn answering(status: u16, headers: Vec<(&'static str, String)>, body: &str) -> Self {
        Self { status, headers, body: body.to_owned(), ..Self::default() }
    }

    fn invocation_types(&self) -> Vec<String> {
        self.invocation_types.lock().unwrap().clone()
    }
}

impl HttpConnector for Replay {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let kind = request.headers().get("x-amz-invocation-type").unwrap_or("(none)").to_owned();
        self.invocation_types.lock().unwrap().push(kind);
        if self.hang {
            return HttpConnectorFuture::new(std::future::pending());
        }
        let mut response = http::Response::builder().status(self.status);
        for (name, value) in &self.headers {
            response = response.header(*name, value);
        }
        let response = response.body(SdkBody::from(self.body.clone())).expect("a valid response");
        let response = HttpResponse::try_from(response).expect("an HTTP 1 response");
        let delay = self.delay;
        HttpConnectorFuture::new(async move {
            tokio::time::sleep(delay).await;
            Ok(response)
        })
    }
}

impl HttpClient for Replay {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

fn invoker_answered_with(replay: Replay) -> LambdaInvoker {
    invoker_with_timeouts(replay, aws_sdk_lambda::config::timeout::TimeoutConfig::disabled())
}

fn invoker_with_timeouts(replay: Replay, timeouts: aws_sdk_lambda::config::timeout::TimeoutConfig) -> LambdaInvoker {
    let config = aws_sdk_lambda::Config::builder()
        .timeout_config(timeouts)
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .http_client(SharedHttpClient::new(replay))
        .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
        .build();
    LambdaInvoker::new(Client::from_conf(config))
}

/// The outcome of one invoke when Lambda answers `status` with the error `error_type`.
async fn invoke_failing_with(status: u16, error_type: &str) -> InvokeError {
    let replay = Replay::answering(
        status,
        vec![("x-amzn-errortype", error_type.to_owned()), ("content-type", "application/json".into())],
        &format!(r#"{{"Type":"User","message":"replayed {error_type}"}}"#),
    );
    let function = FunctionId::parse("orders-ship").unwrap();
    invoker_answered_with(replay).invoke(&function, b"{}", InvocationMode::Async).await.expect_err("the invoke fails")
}

#[tokio::test]
async fn transient_lambda_errors_are_retried() {
    for (status, error_type) in [
        (409, "ResourceConflictException"),
        (502, "ResourceNotReadyException"),
        (502, "EC2ThrottledException"),
        (502, "EC2UnexpectedException"),
        (502, "ENILimitReachedException"),
        (502, "SubnetIPAddressLimitReachedException"),
        (429, "TooManyRequestsException"),
        (500, "ServiceException"),
        (409, "SnapStartNotReadyException"),
        (408, "EFSMountTimeoutException"),
        (400, "SomeErrorAddedAfterThisSdk"),
    ] {
        let err = invoke_failing_with(status, error_type).await;
        assert!(err.retryable, "{error_type} should be retried: {}", err.message);
        assert!(err.message.contains(&format!("replayed {error_type}")), "{}", err.message);
    }
}

#[tokio::test]
async fn errors_only_a_change_can_mend_fail_the_delivery_at_once() {
    for (status, error_type) in [
        (404, "ResourceNotFoundException"),
        (400, "InvalidParameterValueException"),
        (400, "InvalidRequestContentException"),
        (413, "RequestTooLargeException"),
        (415, "UnsupportedMediaTypeException"),
        (502, "InvalidZipFileException"),
        (502, "KMSDisabledException"),
        (400, "RecursiveInvocationException"),
        (403, "AccessDeniedException"),
        (403, "UnrecognizedClientException"),
        (400, "ValidationException"),
        (400, "IncompleteSignatureException"),
    ] {
        let err = invoke_failing_with(status, error_type).await;
        assert!(!err.retryable, "{error_type} should not be retried: {}", err.message);
        assert!(err.message.starts_with("invoking 'orders-ship': "), "{}", err.message);
    }
}

#[tokio::test]
async fn an_answer_without_an_error_code_is_judged_by_its_status() {
    // As `cargo lambda watch` answers for a function it does not serve, or a proxy in the way.
    let function = FunctionId::parse("orders-ship").unwrap();
    for (status, retryable) in [(404, false), (400, false), (429, true), (408, true), (502, true), (503, true)] {
        let replay = Replay::answering(status, vec![], "no such function");
        let err = invoker_answered_with(replay).invoke(&function, b"{}", InvocationMode::Async).await.unwrap_err();
        assert_eq!(err.retryable, retryable, "HTTP {status}: {}", err.message);
    }
}

const SYNC: InvocationMode = InvocationMode::Sync { timeout: Duration::from_secs(30) };

#[tokio::test]
async fn an_accepted_async_invoke_is_invoked_not_succeeded() {
    // GIVEN Lambda accepting the event (202, no body), naming the invocation
    let accepted =
        Replay::answering(202, vec![("x-amzn-RequestId", "c2a6f2ae-7dbb-4d22-8782-d0485c9877e2".to_owned())], "");
    let function = FunctionId::parse("orders-ship").unwrap();
    // WHEN the delivery is async
    let outcome = invoker_answered_with(accepted.clone()).invoke(&function, b"{}", InvocationMode::Async).await;
    // THEN it was an Event invoke, and all the gateway learns is that Lambda has the event
    let request_id = Some("c2a6f2ae-7dbb-4d22-8782-d0485c9877e2".to_owned());
    assert_eq!(outcome.expect("Lambda queued the event"), Invoked::Accepted { request_id });
    assert_eq!(accepted.invocation_types(), ["Event"]);
}

#[tokio::test]
async fn a_sync_invoke_that_returns_succeeded() {
    let answered = Replay::answering(200, vec![], r#"{"received":"evt_1"}"#);
    let function = FunctionId::parse("orders-ship").unwrap();
    let outcome = invoker_answered_with(answered.clone()).invoke(&function, b"{}", SYNC).await;
    assert_eq!(outcome.expect("the function returned"), Invoked::Succeeded);
    assert_eq!(answered.invocation_types(), ["RequestResponse"]);
}

#[tokio::test]
async fn a_sync_function_error_is_a_retryable_failure_with_its_type_and_message() {
    // GIVEN the function's own error, as Lambda returns it to a RequestResponse invoke
    let failed = Replay::answering(
        200,
        vec![("x-amz-function-error", "Unhandled".into())],
        r#"{"errorType":"MyError","errorMessage":"boom","stackTrace":[]}"#,
    );
    let function = FunctionId::parse("orders-ship").unwrap();
    let err = invoker_answered_with(failed).invoke(&function, b"{}", SYNC).await.unwrap_err();
    assert!(err.retryable, "a function error is retried under the policy");
    assert_eq!(err.message, "function 'orders-ship' failed (Unhandled): MyError: boom");
}

#[tokio::test]
async fn a_function_error_that_is_not_lambdas_json_keeps_its_raw_text_cut() {
    let function = FunctionId::parse("orders-ship").unwrap();
    let raw = format!("segfault {}", "x".repeat(1000));
    let failed = Replay::answering(200, vec![("x-amz-function-error", "Unhandled".into())], &raw);
    let err = invoker_answered_with(failed).invoke(&function, b"{}", SYNC).await.unwrap_err();
    assert!(err.message.starts_with("function 'orders-ship' failed (Unhandled): segfault xxx"), "{}", err.message);
    assert!(err.message.len() < 400 && err.message.ends_with('…'), "{}", err.message);
    let only_type = Replay::answering(200, vec![("x-amz-function-error", "Handled".into())], r#"{"errorType":"Oops"}"#);
    let err = invoker_answered_with(only_type).invoke(&function, b"{}", SYNC).await.unwrap_err();
    assert_eq!(err.message, "function 'orders-ship' failed (Handled): Oops");
    let empty = Replay::answering(200, vec![("x-amz-function-error", "Unhandled".into())], "");
    let err = invoker_answered_with(empty).invoke(&function, b"{}", SYNC).await.unwrap_err();
    assert_eq!(err.message, "function 'orders-ship' failed (Unhandled)");
}

#[tokio::test]
async fn a_sync_invoke_that_outlasts_its_timeout_is_a_retryable_timeout() {
    // GIVEN a function that never answers, and a client whose own limit is an async invoke's
    let silent = Replay { hang: true, ..Replay::default() };
    let function = FunctionId::parse("orders-ship").unwrap();
    let invoker = invoker_answered_with(silent);
    // WHEN it is invoked sync with a short timeout
    let started = std::time::Instant::now();
    let mode = InvocationMode::Sync { timeout: Duration::from_millis(200) };
    let err = invoker.invoke(&function, b"{}", mode).await.unwrap_err();
    // THEN the attempt ends at that timeout, says so, and is retried
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(err.retryable);
    assert!(err.message.contains("timed out") && err.message.contains("0.2 s"), "{}", err.message);
}

#[tokio::test]
async fn a_sync_invoke_may_run_longer_than_the_clients_own_limit() {
    // GIVEN a client built with an async invoke's short limit, and a function that takes longer
    let client_limit =
        aws_sdk_lambda::config::timeout::TimeoutConfig::builder().operation_timeout(Duration::from_millis(100)).build();
    let slow = Replay { status: 200, delay: Duration::from_millis(400), ..Replay::default() };
    let function = FunctionId::parse("orders-ship").unwrap();
    // THEN an async invoke is cut at the client's limit...
    let short = invoker_with_timeouts(slow.clone(), client_limit.clone());
    let cut = short.invoke(&function, b"{}", InvocationMode::Async).await;
    assert!(cut.is_err(), "the client's own limit applies to an async invoke");
    // ...AND a sync one waits for the function, up to its own timeout
    let mode = InvocationMode::Sync { timeout: Duration::from_secs(5) };
    let outcome = invoker_with_timeouts(slow, client_limit).invoke(&function, b"{}", mode).await;
    assert_eq!(outcome.expect("the sync timeout replaces the client's"), Invoked::Succeeded);
}

#[tokio::test]
async fn a_function_error_cargo_lambda_watch_answers_as_http_500_names_its_type_and_message() {
    // As `cargo lambda watch` 1.9 answers a failing function, whichever the invocation type: 500,
    // the error as the body, no X-Amz-Function-Error.
    let failed = Replay::answering(500, vec![], r#"{"errorType":"AlwaysFails","errorMessage":"fails on purpose"}"#);
    let function = FunctionId::parse("orders-ship").unwrap();
    for mode in [SYNC, InvocationMode::Async] {
        let err = invoker_answered_with(failed.clone()).invoke(&function, b"{}", mode).await.unwrap_err();
        assert!(err.retryable, "{mode:?}");
        assert_eq!(err.message, "function 'orders-ship' failed (HTTP 500): AlwaysFails: fails on purpose");
    }
}

#[tokio::test]
async fn a_function_error_an_emulator_reports_to_an_async_invoke_is_retried() {
    // cargo lambda watch runs the function even for an Event invoke and reports its error.
    let failed = Replay::answering(
        200,
        vec![("x-amz-function-error", "Unhandled".into())],
        r#"{"errorType":"Error","errorMessage":"boom"}"#,
    );
    let function = FunctionId::parse("orders-ship").unwrap();
    let err = invoker_answered_with(failed).invoke(&function, b"{}", InvocationMode::Async).await.unwrap_err();
    assert!(err.retryable);
    assert_eq!(err.message, "function 'orders-ship' failed (Unhandled): Error: boom");
}
