//! A loopback Lambda Runtime API that hands a bootstrap exactly one invocation: the first
//! `GET .../invocation/next` gets the event with the headers Lambda sends, later ones are held
//! open as Lambda holds them between invocations, and every post is timed and reported.

use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http::{self, Request};
use crate::network::NetworkUse;

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const INVOCATION: &str = "/2018-06-01/runtime/invocation/";
const INIT_ERROR: &str = "/2018-06-01/runtime/init/error";

/// The one invocation served.
pub(crate) struct Invocation {
    pub request_id: String,
    pub function_arn: String,
    pub trace_id: String,
    /// The function's timeout, from which the deadline header is computed when the event is sent.
    pub timeout: Duration,
    pub event: Vec<u8>,
}

/// What the bootstrap did, reported in the order it happened.
#[derive(Debug)]
pub(crate) enum ApiEvent {
    /// The first `/next`. `held` is how long the harness kept the answer back to inspect the
    /// child, time that is not the bootstrap's.
    FirstNext {
        at: Instant,
        held: Duration,
        network: NetworkUse,
    },
    Response {
        at: Instant,
        body: Vec<u8>,
    },
    InvocationError {
        body: Vec<u8>,
    },
    InitError {
        body: Vec<u8>,
    },
    Unexpected {
        what: String,
    },
}

type Inspect = Box<dyn Fn() -> NetworkUse + Send + Sync>;
type Notify = Box<dyn Fn(ApiEvent) + Send + Sync>;

/// Serves until dropped.
pub(crate) struct RuntimeApi {
    shared: Arc<Shared>,
    listener_addr: std::net::SocketAddr,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    invocation: Invocation,
    /// Called at the first `/next`, before it is answered, while the child waits for it.
    inspect: Inspect,
    notify: Notify,
    served: AtomicBool,
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl RuntimeApi {
    pub(crate) fn serve(
        listener: TcpListener,
        invocation: Invocation,
        inspect: impl Fn() -> NetworkUse + Send + Sync + 'static,
        notify: impl Fn(ApiEvent) + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let listener_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            invocation,
            inspect: Box::new(inspect),
            notify: Box::new(notify),
            served: AtomicBool::new(false),
            stopped: Mutex::new(false),
            wake: Condvar::new(),
        });
        let accept = {
            let shared = shared.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if shared.is_stopped() {
                        return;
                    }
                    if let Ok(stream) = stream {
                        let shared = shared.clone();
                        thread::spawn(move || shared.serve_connection(stream));
                    }
                }
            })
        };
        Ok(Self { shared, listener_addr, accept: Some(accept) })
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        *self.shared.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.listener_addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

impl Shared {
    fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn serve_connection(&self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let mut reader = BufReader::new(&stream);
        let mut writer = &stream;
        loop {
            let request = match http::read_request(&mut reader) {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(e) => {
                    // A reset from a killed child is expected; a garbled request is not.
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        (self.notify)(ApiEvent::Unexpected { what: format!("an unreadable request: {e}") });
                    }
                    return;
                }
            };
            let answered = match (request.method.as_str(), request.path.as_str()) {
                ("GET", NEXT) if self.served.swap(true, Ordering::AcqRel) => {
                    self.hold_until_stopped();
                    return;
                }
                ("GET", NEXT) => self.send_invocation(&mut writer),
                ("POST", INIT_ERROR) => {
                    (self.notify)(ApiEvent::InitError { body: request.body });
                    accepted(&mut writer)
                }
                ("POST", path) if path.starts_with(INVOCATION) => self.record_result(request, &mut writer),
                _ => {
                    (self.notify)(ApiEvent::Unexpected { what: format!("{} {}", request.method, request.path) });
                    http::write_response(&mut writer, "404 Not Found", &[], b"")
                }
            };
            if answered.is_err() {
                return;
            }
        }
    }

    fn send_invocation(&self, writer: &mut &TcpStream) -> std::io::Result<()> {
        let at = Instant::now();
        let network = (self.inspect)();
        let held = at.elapsed();
        (self.notify)(ApiEvent::FirstNext { at, held, network });

        let invocation = &self.invocation;
        let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + invocation.timeout;
        let headers = [
            ("Content-Type", "application/json".to_owned()),
            ("Lambda-Runtime-Aws-Request-Id", invocation.request_id.clone()),
            ("Lambda-Runtime-Deadline-Ms", deadline.as_millis().to_string()),
            ("Lambda-Runtime-Invoked-Function-Arn", invocation.function_arn.clone()),
            ("Lambda-Runtime-Trace-Id", invocation.trace_id.clone()),
        ];
        http::write_response(writer, "200 OK", &headers, &invocation.event)
    }

    /// `POST .../invocation/{id}/response` or `.../error`.
    fn record_result(&self, request: Request, writer: &mut &TcpStream) -> std::io::Result<()> {
        let at = Instant::now();
        let rest = &request.path[INVOCATION.len()..];
        let event = match rest.split_once('/') {
            Some((id, "response")) if id == self.invocation.request_id => ApiEvent::Response { at, body: request.body },
            Some((id, "error")) if id == self.invocation.request_id => ApiEvent::InvocationError { body: request.body },
            _ => {
                (self.notify)(ApiEvent::Unexpected {
                    what: format!("POST {} (not the request id it was given)", request.path),
                });
                return http::write_response(writer, "400 Bad Request", &[], b"");
            }
        };
        (self.notify)(event);
        accepted(writer)
    }

    fn hold_until_stopped(&self) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        while !*stopped {
            stopped = self.wake.wait(stopped).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn accepted(writer: &mut &TcpStream) -> std::io::Result<()> {
    http::write_response(
        writer,
        "202 Accepted",
        &[("Content-Type", "application/json".to_owned())],
        br#"{"status":"OK"}"#,
    )
}
