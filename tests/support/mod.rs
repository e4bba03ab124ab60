//! What the end-to-end tests share: building the binaries, starting real processes on free
//! loopback ports (stopped when dropped), and a minimal HTTP client.

pub mod api_gateway;
pub mod lambda_front;
pub mod moto;
pub mod native;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds the workspace's binaries once per test process (a no-op when they are fresh).
pub fn build_binaries() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            // `--bin` at the workspace root, as `cargo lambda watch` runs functions: the same
            // feature resolution, so watch finds them built instead of compiling again.
            .args([
                "build",
                "--quiet",
                "--bin",
                "event-gateway",
                "--bin",
                "example-subscriber",
                "--bin",
                "example-failing-subscriber",
            ])
            .current_dir(workspace_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the binaries failed");
    });
}

/// The Lambda functions the cloud pipeline test has `cargo lambda watch` serve.
pub const FUNCTIONS: &[&str] = &[
    "events-api",
    "subscriptions-api",
    "trigger-api",
    "dispatcher",
    "ingest",
    "delivery-outcomes",
    "example-subscriber",
    "example-failing-subscriber",
];

/// Builds the function binaries once per test process as `cargo lambda watch` builds each one
/// (`cargo run --bin <name>` in the workspace, hence with the same features), so that its first
/// invocations start the binary at once instead of compiling it.
pub fn build_functions() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command.args(["build", "--quiet"]);
        for function in FUNCTIONS {
            command.args(["--bin", function]);
        }
        let status = command.current_dir(workspace_root()).status().expect("cargo runs");
        assert!(status.success(), "building the functions failed");
    });
}

pub fn binary(name: &str) -> PathBuf {
    target_dir().join("debug").join(name)
}

/// `cargo-lambda` from PATH, or from the project's virtualenv that `make test` creates.
pub fn cargo_lambda() -> PathBuf {
    tool("cargo-lambda")
}

/// `schemathesis` from the project's virtualenv (or PATH), where `make test` installs it.
pub fn schemathesis() -> PathBuf {
    tool("schemathesis")
}

/// The virtualenv's Python, where `make test` installs the CloudEvents SDK.
pub fn python() -> PathBuf {
    tool("python")
}

/// A tool from requirements-dev.txt: the project's virtualenv first, then PATH.
fn tool(name: &str) -> PathBuf {
    let in_venv = workspace_root().join(".venv/bin").join(name);
    if in_venv.exists() {
        return in_venv;
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.exists()))
        .unwrap_or_else(|| panic!("{name} is not installed: run `make test`, which installs it into .venv"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gateway-e2e-{label}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process in its own process group, killed with its children when dropped.
pub struct Process {
    child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn start(mut command: Command, log: PathBuf) -> Self {
        use std::os::unix::process::CommandExt;
        let out = std::fs::File::create(&log).unwrap();
        command
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .stdin(Stdio::null())
            .process_group(0);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Self { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: the process gets no chance to finish anything, as in a crash.
    pub fn crash(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Signals the whole process group the child leads (cargo lambda watch runs its functions as
    /// children), and nothing else: the group id is the child's own pid, never 0 or 1.
    fn signal(&self, signal: libc::c_int) {
        let group = self.child.id() as libc::pid_t;
        if group > 1 {
            // SAFETY: killpg only sends a signal; a group that is already gone gives ESRCH.
            unsafe { libc::killpg(group, signal) };
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// `cargo lambda watch` serving the workspace's functions on a free port.
pub fn start_lambda_watch(port: u16, log: PathBuf) -> Process {
    start_lambda_watch_with_env(port, log, &[])
}

/// `cargo lambda watch` whose functions all run with `env` (passed with `--env-var`, as a
/// deployment sets a function's environment). `--env-var` splits on commas: values cannot hold one.
pub fn start_lambda_watch_with_env(port: u16, log: PathBuf, env: &[(&str, String)]) -> Process {
    let mut command = Command::new(cargo_lambda());
    command
        .args([
            "lambda",
            "watch",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
            "--ignore-changes",
        ])
        .current_dir(workspace_root());
    for (name, value) in env {
        assert!(!value.contains(','), "{name}={value}: --env-var would split it");
        command.arg("--env-var").arg(format!("{name}={value}"));
    }
    let process = Process::start(command, log);
    wait_until("cargo lambda watch to listen", Duration::from_secs(60), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    process
}

pub struct GatewaySettings<'a> {
    pub port: u16,
    pub data_dir: &'a Path,
    pub lambda_port: u16,
    pub log: PathBuf,
}

/// The local gateway binary, invoking functions through the Lambda API on `lambda_port`.
pub fn start_gateway(s: GatewaySettings<'_>) -> Process {
    start_gateway_with_env(s, &[])
}

/// The local gateway with `env` set on top of the settings (a later value wins).
pub fn start_gateway_with_env(s: GatewaySettings<'_>, env: &[(&str, &str)]) -> Process {
    let mut command = Command::new(binary("event-gateway"));
    command
        .env("GATEWAY_ADDR", format!("127.0.0.1:{}", s.port))
        .env("GATEWAY_DATA_DIR", s.data_dir)
        .env("GATEWAY_FUNCTION_ALLOWLIST", "example-")
        .env("GATEWAY_RETRY_BASE_MS", "200")
        .env("GATEWAY_RETRY_MAX_MS", "1000")
        .env("GATEWAY_MAX_ATTEMPTS", "1000")
        .env("AWS_ENDPOINT_URL_LAMBDA", format!("http://127.0.0.1:{}", s.lambda_port))
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "e2e")
        .env("AWS_SECRET_ACCESS_KEY", "e2e")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .current_dir(workspace_root());
    let process = Process::start(command, s.log);
    let port = s.port;
    wait_until("the gateway to listen", Duration::from_secs(30), || TcpStream::connect(("127.0.0.1", port)).is_ok());
    process
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`; the body is read as JSON (Null when empty).
pub fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Response {
    http_within(Duration::from_secs(30), port, method, path, &[], body)
}

/// [`http`] with extra request headers, such as `Authorization`.
pub fn http_with_headers(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Response {
    http_within(Duration::from_secs(30), port, method, path, headers, body)
}

/// A synchronous invocation of `function` through the Lambda Invoke API that `cargo lambda
/// watch` serves on `port`, as API Gateway or Lambda's event sources make one. The response is
/// the function's answer (200), or its error (500 when it failed, 404 when watch has no such
/// function).
pub fn invoke(port: u16, function: &str, event: &Value) -> Response {
    let path = format!("/2015-03-31/functions/{function}/invocations");
    // Generous: on a busy machine watch may still have to start the function.
    http_within(Duration::from_secs(300), port, "POST", &path, &[], Some(event))
}

fn http_within(
    timeout: Duration,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Response {
    try_http_within(timeout, port, method, path, headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// [`http`], or why no complete answer came (the server refused the connection, or closed
/// it before answering): for a server that may be killed mid-request.
pub fn try_http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Response, String> {
    try_http_within(Duration::from_secs(30), port, method, path, &[], body)
}

fn try_http_within(
    timeout: Duration,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<Response, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("cannot connect: {e}"))?;
    stream.set_read_timeout(Some(timeout)).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("cannot send: {e}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| format!("no complete answer within {timeout:?}: {e}"))?;
    let text = String::from_utf8(raw).expect("responses are UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("an incomplete answer: {text:?}"))?;
    let mut lines = head.lines();
    let status =
        lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).expect("a status line");
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let body = if body.is_empty() { Value::Null } else { serde_json::from_str(body).expect("a JSON body") };
    Ok(Response { status, headers, body })
}

/// The invocation payloads the example subscriber logged, as cargo lambda watch printed them.
pub fn logged_invocations(watch_log: &str) -> Vec<Value> {
    watch_log
        .lines()
        .filter(|line| line.contains("received event"))
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .filter_map(|entry| entry["fields"]["invocation"].as_str().and_then(|s| serde_json::from_str(s).ok()))
        .collect()
}
