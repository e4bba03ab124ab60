//! One cold start: start a bootstrap binary against a fresh loopback Runtime API, time it
//! until it asks for its first invocation and until it answers it, then kill it and read its
//! peak resident memory.

use std::fs::{self, File};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use crate::network::{self, EndpointTrap, NetworkUse, TrapCounter};
use crate::runtime_api::{ApiEvent, Invocation, RuntimeApi};

/// A binary to measure and the event its first invocation carries.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The function name it runs as, and its name in the report.
    pub label: String,
    pub path: PathBuf,
    pub event: Vec<u8>,
}

/// What every run shares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long one run may take before it counts as failed; also the function's timeout.
    pub timeout: Duration,
    /// Environment added after Lambda's, e.g. the handler's own configuration.
    pub env: Vec<(String, String)>,
}

/// One cold start, as Lambda would see it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// From spawning the process until its first `GET .../invocation/next`.
    pub init: Duration,
    /// From spawning the process until its response to that invocation has been posted.
    pub first_answer: Duration,
    /// Peak resident memory up to the first answer, in KiB (`ru_maxrss`).
    pub peak_rss_kib: u64,
    /// What it had opened when it first asked for work.
    pub network: NetworkUse,
    /// The body it posted as its response.
    pub answer: Vec<u8>,
}

/// Why a run gave no sample. The bootstrap's own output, when there is any, ends the message.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the harness failed: {0}")]
    Harness(#[from] io::Error),
    #[error("could not start it: {0}")]
    Spawn(#[source] io::Error),
    #[error("it reported an init error: {body}{}", output(.log))]
    InitError { body: String, log: String },
    #[error("it answered its invocation with an error: {body}{}", output(.log))]
    InvocationError { body: String, log: String },
    #[error("it exited ({status}) before {stage}{}", output(.log))]
    Exited { status: String, stage: &'static str, log: String },
    #[error("it timed out before {stage}{}", output(.log))]
    TimedOut { stage: &'static str, log: String },
    #[error("it made an unexpected request: {what}{}", output(.log))]
    Unexpected { what: String, log: String },
}

fn output(log: &str) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!("\n--- the end of its output ---\n{log}")
    }
}

const FIRST_NEXT: &str = "asking for its first invocation";
const ANSWER: &str = "answering its first invocation";

enum Happening {
    Api(ApiEvent),
    ChildExited,
}

impl From<ApiEvent> for Happening {
    fn from(event: ApiEvent) -> Self {
        Happening::Api(event)
    }
}

/// Measures one cold start of `bootstrap`. The child is always killed and reaped on return.
pub fn run_once(bootstrap: &Bootstrap, settings: &Settings) -> Result<Sample, RunError> {
    let (tx, rx) = mpsc::channel::<Happening>();
    let trap = EndpointTrap::start()?;
    let trap_addr = trap.addr()?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let api_addr = listener.local_addr()?;
    let child_pid = Arc::new(AtomicU32::new(0));

    let inspect = {
        let (counter, child_pid) = (trap.counter(), child_pid.clone());
        let allowed = [api_addr.port(), trap_addr.port()];
        move || inspect_network(&counter, &child_pid, &allowed)
    };
    let notify = {
        let tx = tx.clone();
        move |event: ApiEvent| {
            let _ = tx.send(event.into());
        }
    };
    let api = RuntimeApi::serve(listener, invocation(bootstrap, settings), inspect, notify)?;

    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let log_path = std::env::temp_dir().join(format!(
        "coldstart-{}-{}-{}.log",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed),
        bootstrap.label.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    ));
    let log = File::create(&log_path)?;
    let mut command = Command::new(&bootstrap.path);
    command
        .env_clear()
        .envs(lambda_environment(&bootstrap.label, api_addr, trap_addr))
        .envs(settings.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);

    let started = Instant::now();
    let child = command.spawn().map_err(RunError::Spawn)?;
    let pid = child.id();
    child_pid.store(pid, Ordering::Release);
    // Only this function reaps the child, after killing it, so its pid cannot be reused
    // before the kill; the watcher merely reports an exit.
    let watcher = thread::spawn(move || {
        wait_for_exit_without_reaping(pid);
        let _ = tx.send(Happening::ChildExited);
    });

    let outcome = wait_for_answer(&rx, started + settings.timeout);
    // SAFETY: kill(2) on a child that this process has not reaped yet.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let (status, peak_rss_kib) = reap(pid)?;
    let _ = watcher.join();
    drop(api);
    drop(trap);

    let log = log_tail(&log_path);
    let _ = fs::remove_file(&log_path);
    match outcome {
        Outcome::Answered { first_next: (next_at, held, network), answered_at, answer } => Ok(Sample {
            init: next_at - started,
            first_answer: (answered_at - started).saturating_sub(held),
            peak_rss_kib,
            network,
            answer,
        }),
        Outcome::InitError(body) => Err(RunError::InitError { body: lossy(body), log }),
        Outcome::InvocationError(body) => Err(RunError::InvocationError { body: lossy(body), log }),
        Outcome::Unexpected(what) => Err(RunError::Unexpected { what, log }),
        Outcome::Exited(stage) => Err(RunError::Exited { status, stage, log }),
        Outcome::TimedOut(stage) => Err(RunError::TimedOut { stage, log }),
    }
}

enum Outcome {
    Answered { first_next: (Instant, Duration, NetworkUse), answered_at: Instant, answer: Vec<u8> },
    InitError(Vec<u8>),
    InvocationError(Vec<u8>),
    Unexpected(String),
    Exited(&'static str),
    TimedOut(&'static str),
}

fn wait_for_answer(rx: &mpsc::Receiver<Happening>, deadline: Instant) -> Outcome {
    let mut first_next = None;
    loop {
        let stage = if first_next.is_some() { ANSWER } else { FIRST_NEXT };
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Happening::Api(ApiEvent::FirstNext { at, held, network })) => {
                first_next = Some((at, held, network));
            }
            Ok(Happening::Api(ApiEvent::Response { at, body })) => {
                return match first_next {
                    Some(first_next) => Outcome::Answered { first_next, answered_at: at, answer: body },
                    None => Outcome::Unexpected("a response before any invocation".into()),
                };
            }
            Ok(Happening::Api(ApiEvent::InvocationError { body })) => return Outcome::InvocationError(body),
            Ok(Happening::Api(ApiEvent::InitError { body })) => return Outcome::InitError(body),
            Ok(Happening::Api(ApiEvent::Unexpected { what })) => return Outcome::Unexpected(what),
            Ok(Happening::ChildExited) => return Outcome::Exited(stage),
            Err(_) => return Outcome::TimedOut(stage),
        }
    }
}

fn inspect_network(counter: &TrapCounter, child_pid: &AtomicU32, allowed: &[u16]) -> NetworkUse {
    let endpoint_connections = counter.connections();
    // The child can ask for work before the spawning thread has stored its pid.
    let wait_until = Instant::now() + Duration::from_secs(1);
    let mut pid = child_pid.load(Ordering::Acquire);
    while pid == 0 && Instant::now() < wait_until {
        thread::sleep(Duration::from_micros(50));
        pid = child_pid.load(Ordering::Acquire);
    }
    let other_sockets = (pid != 0).then(|| network::other_inet_sockets(pid, allowed).ok()).flatten();
    NetworkUse { endpoint_connections, other_sockets }
}

fn invocation(bootstrap: &Bootstrap, settings: &Settings) -> Invocation {
    Invocation {
        request_id: "c0ld57a7-0000-4000-8000-000000000001".into(),
        function_arn: format!("arn:aws:lambda:{REGION}:123456789012:function:{}", bootstrap.label),
        trace_id: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into(),
        timeout: settings.timeout,
        event: bootstrap.event.clone(),
    }
}

const REGION: &str = "us-east-1";

/// The environment Lambda gives a `provided.al2023` function, with fake credentials, and
/// every AWS SDK client pointed at the trap.
fn lambda_environment(function: &str, api: SocketAddr, trap: SocketAddr) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{function}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2025/01/01/[$LATEST]c0ld57a7".to_owned()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_DEFAULT_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "ASIACOLDSTARTEXAMPLE".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "coldstart/harness/fake/secret/key/example".to_owned()),
        ("AWS_SESSION_TOKEN", "coldstart-fake-session-token".to_owned()),
        ("AWS_ENDPOINT_URL", format!("http://{trap}")),
        // Lambda does not set this; here it keeps a stray credentials lookup off the network.
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("_HANDLER", "bootstrap".to_owned()),
        ("LAMBDA_TASK_ROOT", "/var/task".to_owned()),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Variables the harness owns: overriding them would defeat what it measures.
pub fn is_reserved(variable: &str) -> bool {
    variable == "AWS_LAMBDA_RUNTIME_API"
        || variable.starts_with("AWS_ENDPOINT_URL")
        || variable == "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"
}

fn wait_for_exit_without_reaping(pid: u32) {
    loop {
        // SAFETY: siginfo_t is plain data, and waitid only writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOWAIT;
        // SAFETY: a valid pointer to that siginfo_t.
        let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
        if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// Reaps the child; returns how it ended and its peak resident memory in KiB.
fn reap(pid: u32) -> io::Result<(String, u64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data, and wait4 only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to a status and a rusage owned by this frame.
        let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if rc == pid as libc::pid_t {
            break;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    let how = if libc::WIFEXITED(status) {
        format!("exit code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status}")
    };
    Ok((how, usage.ru_maxrss.max(0) as u64))
}

fn log_tail(path: &Path) -> String {
    let text = fs::read(path).map(lossy).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}
