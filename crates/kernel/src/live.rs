//! Reading the calling thread's namespace live: the snapshot files from `/proc`, and the
//! listening sockets from sock_diag (≈ `ss -lnt`), which alone knows the backlog.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;

use crate::netlink::dump;
use crate::{Error, Listener, SNAPSHOT_FILES, Snapshot};

/// Where a snapshot file lives in the calling thread's namespace: `net/*` under
/// `/proc/thread-self/` (`/proc/self/net` would follow the main thread's namespace),
/// `sys/*` under `/proc/`.
fn live_path(rel: &str) -> PathBuf {
    if rel.starts_with("net/") {
        PathBuf::from("/proc/thread-self").join(rel)
    } else {
        PathBuf::from("/proc").join(rel)
    }
}

impl Snapshot {
    /// Read the snapshot files of the calling thread's network namespace, plus its TCP
    /// listeners (with backlog) and every TCP socket from sock_diag. Run it inside `NetNs::run` to read a pod.
    /// If sock_diag fails, the snapshot keeps the `/proc/net/tcp` listeners (backlog
    /// unknown) and [`Snapshot::sock_diag_error`] says why.
    ///
    /// A file the kernel does not offer (conntrack not loaded, sysctl absent) is missing
    /// from the snapshot, as in the testdata layout; any other read error is an error.
    pub fn capture_current() -> Result<Snapshot, Error> {
        let mut files = BTreeMap::new();
        for rel in SNAPSHOT_FILES {
            let path = live_path(rel);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    files.insert(
                        (*rel).to_owned(),
                        String::from_utf8_lossy(&bytes).into_owned(),
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Io { path, source }),
            }
        }
        let mut snap = Snapshot::from_files(files)?;
        // Without sock_diag (inet_diag not available) the /proc listeners remain, minus
        // the backlog: worse evidence, not a reason to lose every counter. The failure
        // is kept for the report (`Snapshot::sock_diag_error`).
        match tcp_listeners() {
            Ok(l) => snap.set_sock_diag_listeners(l),
            Err(e) => snap.set_sock_diag_error(e.to_string()),
        }
        // Same fallback for the other sockets: `net/tcp{,6}` carry states and timers too.
        if let Ok(s) = crate::sockets::tcp_sockets() {
            snap.set_sock_diag_sockets(s);
        }
        Ok(snap)
    }
}

/// Listening TCP sockets (IPv4 and IPv6) of the calling thread's namespace via sock_diag
/// `inet_diag`: `queued` = `idiag_rqueue` (Recv-Q), `backlog` = `idiag_wqueue` (Send-Q),
/// exactly what `ss -lnt` shows.
pub fn tcp_listeners() -> Result<Vec<Listener>, Error> {
    let mut out = Vec::new();
    for req in listeners_requests() {
        for m in dump(NETLINK_SOCK_DIAG, "sock_diag inet", req)? {
            out.extend(listener(m));
        }
    }
    Ok(out)
}

/// The sock_diag `inet_diag` dump requests for TCP listeners, IPv4 then IPv6.
pub(crate) fn listeners_requests() -> [SockDiagMessage; 2] {
    [
        (AF_INET, SocketId::new_v4()),
        (AF_INET6, SocketId::new_v6()),
    ]
    .map(|(family, socket_id)| {
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::LISTEN,
            socket_id,
        })
    })
}

/// A sock_diag `inet_diag` reply as `ss -lnt` shows it; `None` for other messages.
pub(crate) fn listener(m: SockDiagMessage) -> Option<Listener> {
    let SockDiagMessage::InetResponse(r) = m else {
        return None;
    };
    let h = &r.header;
    let mut l = Listener::new(
        h.socket_id.source_address,
        h.socket_id.source_port,
        h.recv_queue,
        Some(h.send_queue),
    );
    l.inode = Some(u64::from(h.inode));
    Some(l)
}
