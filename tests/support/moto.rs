//! A real `moto_server` on a free loopback port: DynamoDB, SNS and SQS over their real wire
//! protocols, for the AWS SDK clients the gateway's crates use. Stopped when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

use crate::{free_port, temp_dir, wait_until, workspace_root, Process};

pub struct Moto {
    _process: Process,
    pub endpoint: String,
    port: u16,
    /// Where moto's recorder appends the requests it serves once `record_requests` is called.
    recording: std::path::PathBuf,
}

impl Moto {
    /// Starts `moto_server` from the project's virtualenv (`make test` installs it there).
    pub fn start(label: &str) -> Self {
        let server = workspace_root().join(".venv/bin/moto_server");
        assert!(
            server.exists(),
            "moto_server is not installed: run `make test`, which installs moto[server] into .venv"
        );
        let port = free_port();
        let mut command = Command::new(server);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let dir = temp_dir(&format!("moto-{label}"));
        let recording = dir.join("requests.jsonl");
        command.env("MOTO_RECORDER_FILEPATH", &recording);
        let process = Process::start(command, dir.join("moto.log"));
        wait_until("moto_server to answer", Duration::from_secs(60), || answers_http(port));
        Self { _process: process, endpoint: format!("http://127.0.0.1:{port}"), port, recording }
    }

    /// From now on moto records every request it serves (its recorder), forgetting earlier ones.
    pub fn record_requests(&self) {
        self.recorder("reset-recording");
        self.recorder("start-recording");
    }

    /// The requests recorded since `record_requests` that were signed with `access_key`, as
    /// (service, operation) with how many of each: the service from the signature's credential
    /// scope, the operation from `X-Amz-Target` (DynamoDB, SQS) or the form's `Action` (SNS);
    /// and, as `BatchGetItem keys`, the items the BatchGetItems asked for.
    pub fn recorded_requests(&self, access_key: &str) -> std::collections::BTreeMap<(String, String), usize> {
        use base64::Engine as _;
        let text = std::fs::read_to_string(&self.recording).unwrap_or_default();
        let mut counts = std::collections::BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let entry: serde_json::Value = serde_json::from_str(line).expect("a recorded request");
            let header = |name: &str| {
                entry["headers"].as_object().and_then(|h| {
                    h.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .and_then(|(_, v)| v.as_str().map(str::to_owned))
                })
            };
            let Some(authorization) = header("authorization") else { continue };
            // `AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request, ...`
            let Some(scope) = authorization.split("Credential=").nth(1).and_then(|c| c.split(',').next()) else {
                continue;
            };
            let parts: Vec<&str> = scope.split('/').collect();
            if parts.first() != Some(&access_key) || parts.len() < 4 {
                continue;
            }
            let service = parts[3].to_owned();
            let body = entry["body"].as_str().unwrap_or_default();
            let body = if entry["body_encoded"].as_bool() == Some(true) {
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(body).unwrap_or_default())
                    .unwrap_or_default()
            } else {
                body.to_owned()
            };
            let operation = match header("x-amz-target") {
                Some(target) => target.rsplit('.').next().unwrap_or_default().to_owned(),
                None => body.split('&').find_map(|pair| pair.strip_prefix("Action=")).unwrap_or("(unknown)").to_owned(),
            };
            if operation == "BatchGetItem" {
                // Read units go by the item, not the request: count the keys asked for too.
                let request: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let keys: usize = request["RequestItems"]
                    .as_object()
                    .map(|tables| tables.values().map(|t| t["Keys"].as_array().map_or(0, Vec::len)).sum())
                    .unwrap_or(0);
                *counts.entry((service.clone(), "BatchGetItem keys".to_owned())).or_insert(0) += keys;
            }
            *counts.entry((service, operation)).or_insert(0) += 1;
        }
        counts
    }

    fn recorder(&self, action: &str) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("reach moto_server");
        let request = format!(
            "POST /moto-api/recorder/{action} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("ask moto's recorder");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("moto's recorder answers");
        assert!(answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"), "{action}: {answer}");
    }

    /// SDK configuration that reaches this server, with static test credentials.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("moto", "moto", None, None, "moto"))
            .load()
            .await
    }
}

fn answers_http(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// A queue subscribed to `topic_arn` with raw message delivery, as the template wires the
/// delivery queue; returns its URL.
pub async fn subscribed_queue(
    sns: &aws_sdk_sns::Client,
    sqs: &aws_sdk_sqs::Client,
    topic_arn: &str,
    name: &str,
) -> String {
    let url =
        sqs.create_queue().queue_name(name).send().await.expect("create the queue").queue_url.expect("a queue url");
    subscribe_queue(sns, sqs, topic_arn, &url).await;
    url
}

/// Subscribes the queue at `url` to `topic_arn` with raw message delivery, as the template's
/// `DeliveryQueueSubscription` does.
pub async fn subscribe_queue(sns: &aws_sdk_sns::Client, sqs: &aws_sdk_sqs::Client, topic_arn: &str, url: &str) {
    let arn = queue_arn(sqs, url).await;
    sns.subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe the queue");
}

pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("read the queue's attributes")
        .attributes
        .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("a queue arn")
}

pub async fn topic(sns: &aws_sdk_sns::Client, name: &str) -> String {
    sns.create_topic().name(name).send().await.expect("create the topic").topic_arn.expect("a topic arn")
}

/// Receives up to 10 messages, with their attributes, waiting up to `wait` seconds.
pub async fn receive(sqs: &aws_sdk_sqs::Client, url: &str, wait: i32) -> Vec<aws_sdk_sqs::types::Message> {
    sqs.receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait)
        .message_attribute_names("All")
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive messages")
        .messages
        .unwrap_or_default()
}

pub async fn delete(sqs: &aws_sdk_sqs::Client, url: &str, message: &aws_sdk_sqs::types::Message) {
    sqs.delete_message()
        .queue_url(url)
        .receipt_handle(message.receipt_handle.clone().expect("a receipt handle"))
        .send()
        .await
        .expect("delete a message");
}

/// Messages in the queue: visible, in flight, and delayed.
pub async fn messages_in(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("read the queue's attributes")
        .attributes
        .unwrap_or_default();
    attributes.values().map(|v| v.parse::<u64>().unwrap_or(0)).sum()
}

/// The Lambda SQS event for `messages`, as Lambda's event source mapping builds it.
pub fn sqs_event(queue_arn: &str, messages: &[aws_sdk_sqs::types::Message]) -> serde_json::Value {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, serde_json::Value> = m
                .message_attributes
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(name, value)| {
                    (
                        name,
                        serde_json::json!({
                            "stringValue": value.string_value,
                            "stringListValues": [],
                            "binaryListValues": [],
                            "dataType": value.data_type,
                        }),
                    )
                })
                .collect();
            // The system attributes (ApproximateReceiveCount, SentTimestamp, ...) by name.
            let system: serde_json::Map<String, serde_json::Value> = m
                .attributes
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(name, value)| (name.as_str().to_owned(), value.into()))
                .collect();
            serde_json::json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": system,
                "messageAttributes": attributes,
                "md5OfMessageAttributes": m.md5_of_message_attributes,
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}
