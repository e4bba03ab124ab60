//! What real Lambda adds to an Invoke answer and `cargo lambda watch` does not: the invocation's
//! request id (`x-amzn-RequestId`), which Lambda's invocation records name again and the gateway
//! matches them by. The test puts this in front of watch, for the functions' own Lambda calls
//! (the dispatcher's invokes), as it plays API Gateway and the SQS event source elsewhere. It
//! forwards every request unchanged and adds the header to the answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A loopback port in front of `target`; every answer through it carries a fresh request id.
pub struct LambdaFront {
    pub port: u16,
}

impl LambdaFront {
    pub fn start(target: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("a loopback port");
        let port = listener.local_addr().unwrap().port();
        let counter = Arc::new(AtomicU64::new(0));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || relay(client, target, &counter));
            }
        });
        Self { port }
    }
}

/// One HTTP/1.1 message: its head (start line and headers, as sent) and its body, read by
/// `Content-Length` (what the SDK and watch both send).
fn read_message(from: &mut BufReader<TcpStream>) -> Option<(Vec<String>, Vec<u8>)> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if from.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let length = head
        .iter()
        .find_map(|h| h.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    from.read_exact(&mut body).ok()?;
    Some((head, body))
}

fn write_message(to: &mut TcpStream, head: &[String], body: &[u8]) -> std::io::Result<()> {
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    to.write_all(&out)
}

fn relay(client: TcpStream, target: u16, counter: &AtomicU64) {
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else { return };
    let (mut client_out, mut upstream_out) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let (mut client_in, mut upstream_in) = (BufReader::new(client), BufReader::new(upstream));
    while let Some((head, body)) = read_message(&mut client_in) {
        if write_message(&mut upstream_out, &head, &body).is_err() {
            return;
        }
        let Some((mut answer, answer_body)) = read_message(&mut upstream_in) else { return };
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        answer.insert(1, format!("x-amzn-RequestId: 5e1f0000-0000-4000-8000-{n:012}"));
        if write_message(&mut client_out, &answer, &answer_body).is_err() {
            return;
        }
    }
}
