//! Small socket helpers for the scenarios: a listener with a chosen backlog, non-blocking
//! connects whose outcome is read later, bounded servers.

use anyhow::{Context, Result};
use nix::sys::socket::{
    self, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, setsockopt, sockopt,
};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A TCP listener with an explicit `listen(2)` backlog (std always asks for 128).
pub(crate) fn listener(addr: SocketAddrV4, backlog: i32) -> Result<TcpListener> {
    let fd: OwnedFd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("socket(AF_INET, SOCK_STREAM)")?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).context("setsockopt(SO_REUSEADDR)")?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(addr))
        .with_context(|| format!("bind({addr})"))?;
    socket::listen(&fd, Backlog::new(backlog).context("backlog")?)
        .with_context(|| format!("listen({addr}, {backlog})"))?;
    Ok(TcpListener::from(fd))
}

/// Starts a non-blocking `connect(2)`: the SYN is on the wire when this returns.
pub(crate) fn connect_nonblocking(dst: SocketAddrV4) -> Result<TcpStream> {
    let fd: OwnedFd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .context("socket(AF_INET, SOCK_STREAM)")?;
    match socket::connect(fd.as_raw_fd(), &SockaddrIn::from(dst)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
        Err(e) => return Err(e).with_context(|| format!("connect({dst})")),
    }
    Ok(TcpStream::from(fd))
}

/// Whether a non-blocking connect has completed (the handshake finished, client side).
pub(crate) fn is_connected(s: &TcpStream) -> bool {
    matches!(socket::getsockopt(s, sockopt::SocketError), Ok(0)) && s.peer_addr().is_ok()
}

/// Waits up to `timeout` until `s` is connected.
pub(crate) fn wait_connected(s: &TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if is_connected(s) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    is_connected(s)
}

/// Accepts connections until `stop` (or `max` time), handing each to `handle` on its own
/// thread. Used by every remote server of the scenarios.
pub(crate) fn serve<F>(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    max: Duration,
    handle: F,
) -> Result<()>
where
    F: Fn(TcpStream, Arc<AtomicBool>) + Send + Sync + 'static,
{
    listener
        .set_nonblocking(true)
        .context("listener non-blocking")?;
    let handle = Arc::new(handle);
    let deadline = Instant::now() + max;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).context("accepted non-blocking")?;
                let h = Arc::clone(&handle);
                let st = Arc::clone(&stop);
                std::thread::spawn(move || h(s, st));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(e).context("accept"),
        }
    }
    Ok(())
}

/// Holds a connection open without reading, until `stop` or [`super::MAX_LIFETIME`].
pub(crate) fn hold(s: TcpStream, stop: Arc<AtomicBool>) {
    let deadline = Instant::now() + super::MAX_LIFETIME;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(s);
}

/// HTTP/1.1 keep-alive responder: answers each request (`\r\n\r\n`-terminated) with a
/// small 200 until the client closes.
pub(crate) fn http_keepalive(mut s: TcpStream, stop: Arc<AtomicBool>) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    buf.drain(..end + 4);
                    let body = "ok\n";
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
}

/// Reads one HTTP/1.1 response with a Content-Length body from a keep-alive connection.
pub(crate) fn read_http_response(s: &mut TcpStream) -> Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("no complete HTTP response within 3 s");
        }
        let n = s.read(&mut chunk).context("read HTTP response")?;
        if n == 0 {
            anyhow::bail!("connection closed before the response was complete");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
