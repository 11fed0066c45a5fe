//! Does this process stand in the node's namespaces? What a pod spec's `hostNetwork: true`
//! and `hostPID: true` give, checked from inside (≈ comparing `readlink /proc/self/ns/net`
//! with `readlink /proc/PID/ns/net` of a process known to run in the node's namespace).
//!
//! The reference is a process of the node: the container runtime (it sets up every pod's
//! network through CNI from the node's network namespace, so it runs there), found by the
//! caller, e.g. through `SO_PEERCRED` on its socket.

use crate::{Error, NetNsId};
use std::path::Path;

/// `PROC_PID_INIT_INO`: the inode number the kernel gives the initial PID namespace
/// (include/linux/proc_ns.h, fixed since Linux 3.8).
const INITIAL_PID_NS_INO: u64 = 0xEFFF_FFFC;

impl NetNsId {
    /// The network namespace of this process (`readlink /proc/self/ns/net`), without
    /// entering anything: no privilege needed.
    pub fn of_self() -> Result<NetNsId, Error> {
        ns_id(Path::new("/proc/self/ns/net"))
    }

    /// The network namespace of process `pid` (`readlink /proc/PID/ns/net`); needs the
    /// right to inspect that process (root, or CAP_SYS_PTRACE).
    pub fn of_pid(pid: u32) -> Result<NetNsId, Error> {
        ns_id(Path::new(&format!("/proc/{pid}/ns/net"))).map_err(|e| match e {
            Error::NoSuchNetns { .. } => Error::ProcessGone {
                pid: i32::try_from(pid).unwrap_or(i32::MAX),
                syscall: "stat /proc/PID/ns/net",
            },
            other => other,
        })
    }
}

/// Whether this process shares the network namespace of `node_pid`, a process of the node
/// (the node's counters are then the node's, not a container's own).
pub fn shares_network_with(node_pid: u32) -> Result<bool, Error> {
    Ok(NetNsId::of_self()? == NetNsId::of_pid(node_pid)?)
}

/// Whether this process is in the kernel's initial PID namespace (a process on the host,
/// or in a `hostPID: true` pod of a node that is not itself a container). `false` is not
/// proof of a missing `hostPID` (a node can itself run in a container, as kind's do): ask
/// the runtime's socket for that.
pub fn in_initial_pid_namespace() -> Result<bool, Error> {
    use std::os::unix::fs::MetadataExt;
    let path = Path::new("/proc/self/ns/pid");
    let meta = std::fs::metadata(path).map_err(|e| Error::Syscall {
        target: path.display().to_string(),
        syscall: "stat",
        source: e,
    })?;
    Ok(meta.ino() == INITIAL_PID_NS_INO)
}

fn ns_id(path: &Path) -> Result<NetNsId, Error> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NoSuchNetns {
            path: path.to_path_buf(),
        },
        std::io::ErrorKind::PermissionDenied => Error::PermissionDenied {
            target: path.display().to_string(),
            syscall: "stat",
            capability: "CAP_SYS_PTRACE (another user's /proc/PID/ns/net)",
        },
        _ => Error::Syscall {
            target: path.display().to_string(),
            syscall: "stat",
            source: e,
        },
    })?;
    Ok(NetNsId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn we_share_our_own_network_namespace() {
        assert!(shares_network_with(std::process::id()).unwrap());
        assert_eq!(
            NetNsId::of_self().unwrap(),
            NetNsId::of_pid(std::process::id()).unwrap()
        );
    }

    #[test]
    fn a_gone_process_is_process_gone() {
        // PID_MAX_LIMIT is 2^22: no process has a larger PID.
        assert!(matches!(
            NetNsId::of_pid(1 << 23),
            Err(Error::ProcessGone { .. })
        ));
    }

    /// The inode compared is the one `readlink /proc/self/ns/pid` shows.
    #[test]
    fn initial_pid_namespace_inode_is_what_readlink_shows() {
        let link = std::fs::read_link("/proc/self/ns/pid").unwrap();
        let text = link.to_string_lossy();
        let ino: u64 = text
            .trim_start_matches("pid:[")
            .trim_end_matches(']')
            .parse()
            .unwrap();
        assert_eq!(
            in_initial_pid_namespace().unwrap(),
            ino == INITIAL_PID_NS_INO
        );
    }
}
