//! The adapter against Lambda's real wire answers, replayed: each error as the service sends it
//! (status, `x-amzn-errortype`, JSON body), parsed by the real SDK client.

use aws_credential_types::Credentials;
use aws_sdk_lambda::config::{BehaviorVersion, Region};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

use super::*;

/// Answers every request with one canned response.
#[derive(Clone, Debug)]
struct Replay {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl HttpConnector for Replay {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        let mut response = http::Response::builder().status(self.status);
        for (name, value) in &self.headers {
            response = response.header(*name, value);
        }
        let response = response.body(SdkBody::from(self.body.clone())).expect("a valid response");
        HttpConnectorFuture::ready(Ok(HttpResponse::try_from(response).expect("an HTTP 1 response")))
    }
}

impl HttpClient for Replay {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

fn invoker_answered_with(replay: Replay) -> LambdaInvoker {
    let config = aws_sdk_lambda::Config::builder()
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
    let replay = Replay {
        status,
        headers: vec![("x-amzn-errortype", error_type.to_owned()), ("content-type", "application/json".into())],
        body: format!(r#"{{"Type":"User","message":"replayed {error_type}"}}"#),
    };
    let function = FunctionId::parse("orders-ship").unwrap();
    invoker_answered_with(replay).invoke(&function, b"{}").await.expect_err("the invoke fails")
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
        let replay = Replay { status, headers: vec![], body: "no such function".into() };
        let err = invoker_answered_with(replay).invoke(&function, b"{}").await.unwrap_err();
        assert_eq!(err.retryable, retryable, "HTTP {status}: {}", err.message);
    }
}

#[tokio::test]
async fn an_accepted_async_invoke_succeeds_and_a_reported_function_error_is_retried() {
    let accepted = Replay { status: 202, headers: vec![], body: String::new() };
    let function = FunctionId::parse("orders-ship").unwrap();
    invoker_answered_with(accepted).invoke(&function, b"{}").await.expect("Lambda queued the event");

    let failed = Replay {
        status: 200,
        headers: vec![("x-amz-function-error", "Unhandled".into())],
        body: r#"{"errorType":"Error","errorMessage":"boom"}"#.into(),
    };
    let err = invoker_answered_with(failed).invoke(&function, b"{}").await.unwrap_err();
    assert!(err.retryable);
    assert_eq!(err.message, "function 'orders-ship' failed: Unhandled");
}
