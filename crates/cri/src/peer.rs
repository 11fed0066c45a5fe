//! Who serves the runtime socket, as this process sees it (`SO_PEERCRED`).
//!
//! The PIDs a runtime reports (`crictl inspectp … | jq .info.pid`) are PIDs of the
//! runtime's own PID namespace, the node's. The kernel translates a socket peer's PID into
//! the reader's namespace and gives 0 when the peer is not visible from there: exactly the
//! case of netdiag in a pod without `hostPID: true`, where every PID the runtime names is
//! meaningless (absent, or some other process of the pod). One `getsockopt` tells, before
//! any PID is used.

use crate::Error;
use std::path::Path;

/// The runtime's process as seen from this process's PID namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuntimeProcess {
    /// The runtime is visible here as this PID: the PIDs it reports are ours too.
    Visible(u32),
    /// The runtime runs in a PID namespace we cannot see (a pod without `hostPID: true`).
    OtherPidNamespace,
    /// The kernel did not say (`SO_PEERCRED` failed); nothing is concluded.
    Unknown,
}

impl RuntimeProcess {
    /// Whether the runtime's PIDs can be used here (`Unknown` counts as usable: the PID
    /// lookup itself will then say what is wrong).
    pub fn pids_usable(self) -> bool {
        !matches!(self, RuntimeProcess::OtherPidNamespace)
    }
}

/// Connects to `socket` and asks the kernel who accepted (≈ `ss -xp` on the socket).
pub fn runtime_process(socket: &Path) -> Result<RuntimeProcess, Error> {
    let endpoint = format!("unix://{}", socket.display());
    let stream = connect(socket, &endpoint, "")?;
    Ok(of_stream(&stream))
}

/// A synchronous connect, so "permission denied" and "nothing listens" get their own clear
/// messages instead of a generic transport error. `source` says where the path came from.
pub(crate) fn connect(
    socket: &Path,
    endpoint: &str,
    source: &str,
) -> Result<std::os::unix::net::UnixStream, Error> {
    std::os::unix::net::UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => Error::PermissionDenied {
            endpoint: endpoint.to_string(),
        },
        std::io::ErrorKind::NotFound => Error::NoSocket {
            tried: vec![format!("{}{source}", socket.display())],
        },
        std::io::ErrorKind::ConnectionRefused => Error::NotListening {
            endpoint: endpoint.to_string(),
            from: source.to_string(),
        },
        _ => Error::Connect {
            endpoint: endpoint.to_string(),
            source: e,
        },
    })
}

/// The peer of a connected unix stream.
pub(crate) fn of_stream(stream: &std::os::unix::net::UnixStream) -> RuntimeProcess {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    match getsockopt(stream, PeerCredentials) {
        Ok(cred) => match u32::try_from(cred.pid()) {
            Ok(0) | Err(_) => RuntimeProcess::OtherPidNamespace,
            Ok(pid) => RuntimeProcess::Visible(pid),
        },
        Err(_) => RuntimeProcess::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener of our own is visible as our own PID (same namespace, real kernel).
    #[test]
    fn own_listener_is_visible_as_our_pid() {
        let dir = std::env::temp_dir().join(format!("ndr-cri-peer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rt.sock");
        let _ = std::fs::remove_file(&path);
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let seen = runtime_process(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(seen, RuntimeProcess::Visible(std::process::id()));
        assert!(seen.pids_usable());
    }

    #[test]
    fn missing_socket_is_no_socket() {
        let err = runtime_process(Path::new("/nonexistent/ndr-peer.sock")).unwrap_err();
        assert!(matches!(err, Error::NoSocket { .. }), "{err}");
    }
}
