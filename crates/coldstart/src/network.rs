//! The network check: before a bootstrap asks for its first invocation, it must open no
//! connection but the one to the Runtime API. Two witnesses, both read at the first `/next`:
//! a trap listener that every AWS SDK client reaches through `AWS_ENDPOINT_URL`, and the
//! child's open inet sockets, each asked for its peer.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// What a bootstrap had opened when it first asked for work. Each run should show zeros.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkUse {
    /// Connections accepted by the trap behind `AWS_ENDPOINT_URL`.
    pub endpoint_connections: usize,
    /// The child's inet sockets (TCP not listening, or UDP) to anything but the Runtime API
    /// and the trap; `None` when they could not be inspected (that needs Linux 5.6 or later).
    pub other_sockets: Option<usize>,
}

/// A loopback listener that accepts and at once closes every connection, counting them. An
/// SDK call made during init fails fast against it rather than hanging the run.
pub(crate) struct EndpointTrap {
    shared: Arc<TrapShared>,
    thread: Option<JoinHandle<()>>,
}

/// A handle that counts the trap's connections from another thread.
#[derive(Clone)]
pub(crate) struct TrapCounter(Arc<TrapShared>);

struct TrapShared {
    listener: TcpListener,
    accepted: Mutex<usize>,
    stop: AtomicBool,
}

impl EndpointTrap {
    pub(crate) fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(TrapShared { listener, accepted: Mutex::new(0), stop: AtomicBool::new(false) });
        let thread = {
            let shared = shared.clone();
            thread::spawn(move || {
                while !shared.stop.load(Ordering::Acquire) {
                    wait_readable(&shared.listener, 20);
                    shared.drain();
                }
            })
        };
        Ok(Self { shared, thread: Some(thread) })
    }

    pub(crate) fn addr(&self) -> io::Result<SocketAddr> {
        self.shared.listener.local_addr()
    }

    pub(crate) fn counter(&self) -> TrapCounter {
        TrapCounter(self.shared.clone())
    }
}

impl Drop for EndpointTrap {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl TrapCounter {
    /// Every connection made so far, including those still waiting in the accept queue, so
    /// a connection completed before the caller's moment is never missed.
    pub(crate) fn connections(&self) -> usize {
        self.0.drain()
    }
}

impl TrapShared {
    fn drain(&self) -> usize {
        let mut accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        while let Ok((stream, _)) = self.listener.accept() {
            drop(stream);
            *accepted += 1;
        }
        *accepted
    }
}

fn wait_readable(listener: &TcpListener, timeout_ms: i32) {
    let mut fd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, owned by this frame, for the length passed.
    unsafe { libc::poll(&mut fd, 1, timeout_ms) };
}

/// Counts the inet sockets process `pid` holds that are not connected to one of
/// `allowed_ports`: connected or connecting TCP, and any UDP (DNS) or raw socket. Listening
/// sockets are not network work and are left out. Each socket is borrowed from the process
/// with pidfd_getfd(2) and asked for its peer, which takes microseconds, where scanning
/// `/proc/net/tcp` takes milliseconds that the child would spend waiting.
pub(crate) fn other_inet_sockets(pid: u32, allowed_ports: &[u16]) -> io::Result<usize> {
    let process = pidfd_open(pid)?;
    let mut count = 0;
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        // A descriptor closed while we look is simply gone.
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        let is_socket = target.to_str().is_some_and(|t| t.starts_with("socket:["));
        let number = entry.file_name().to_str().and_then(|n| n.parse().ok());
        let (true, Some(number)) = (is_socket, number) else {
            continue;
        };
        let Ok(socket) = pidfd_getfd(&process, number) else {
            continue;
        };
        if is_foreign(&socket, allowed_ports)? {
            count += 1;
        }
    }
    Ok(count)
}

fn is_foreign(socket: &OwnedFd, allowed_ports: &[u16]) -> io::Result<bool> {
    let domain = socket_option(socket, libc::SO_DOMAIN)?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Ok(false);
    }
    if socket_option(socket, libc::SO_TYPE)? != libc::SOCK_STREAM {
        return Ok(true);
    }
    if socket_option(socket, libc::SO_ACCEPTCONN)? != 0 {
        return Ok(false);
    }
    Ok(peer_port(socket).is_none_or(|port| !allowed_ports.contains(&port)))
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    owned(fd)
}

fn pidfd_getfd(process: &OwnedFd, number: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd(2) takes a pidfd, a descriptor number in that process and flags,
    // and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, process.as_raw_fd(), number, 0) };
    owned(fd)
}

fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn socket_option(socket: &OwnedFd, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// The remote port of a connected socket; `None` while it is not connected.
fn peer_port(socket: &OwnedFd) -> Option<u16> {
    // SAFETY: sockaddr_storage is plain data, large enough for any address.
    let mut address: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: address and len are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getpeername(socket.as_raw_fd(), (&mut address as *mut libc::sockaddr_storage).cast(), &mut len)
    };
    if rc != 0 {
        return None;
    }
    let port = match address.ss_family as libc::c_int {
        // SAFETY: the family says which address type the storage holds.
        libc::AF_INET => unsafe { (*(&address as *const _ as *const libc::sockaddr_in)).sin_port },
        libc::AF_INET6 => unsafe { (*(&address as *const _ as *const libc::sockaddr_in6)).sin6_port },
        _ => return None,
    };
    Some(u16::from_be(port))
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use super::*;

    #[test]
    fn trap_counts_connections_still_in_the_accept_queue() {
        let trap = EndpointTrap::start().unwrap();
        let addr = trap.addr().unwrap();

        let _a = TcpStream::connect(addr).unwrap();
        let _b = TcpStream::connect(addr).unwrap();

        assert_eq!(trap.counter().connections(), 2);
    }

    #[test]
    fn sees_a_connection_this_process_holds_but_not_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let borrowed: OwnedFd = stream.try_clone().unwrap().into();
        let listening: OwnedFd = listener.try_clone().unwrap().into();
        let port = listener.local_addr().unwrap().port();

        assert!(is_foreign(&borrowed, &[]).unwrap());
        assert!(!is_foreign(&borrowed, &[port]).unwrap());
        assert!(!is_foreign(&listening, &[]).unwrap());
        // Other tests open sockets in parallel, so only a lower bound is certain.
        assert!(other_inet_sockets(std::process::id(), &[]).unwrap() >= 1);
    }

    #[test]
    fn any_udp_socket_counts() {
        let socket: OwnedFd = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().into();

        assert!(is_foreign(&socket, &[]).unwrap());
    }
}
