//! Enter Linux network namespaces safely, and read files inside a container's root.
//!
//! | this crate | what people run today |
//! |---|---|
//! | [`NetNs::from_name`]`("x")?.`[`run`](NetNs::run)`(…)` | `ip netns exec x …` |
//! | [`NetNs::from_pid`]`(pid)?.`[`run`](NetNs::run)`(…)` | `nsenter -t PID -n …` |
//! | [`NetNs::from_path`]`("/proc/PID/ns/net")` | `nsenter --net=/proc/PID/ns/net …` |
//! | [`host::shares_network_with`]`(runtime_pid)` | `readlink /proc/self/ns/net /proc/PID/ns/net`: am I in the node's netns (`hostNetwork`)? |
//! | [`ContainerRoot::from_pid`]`(pid)?.`[`read`](ContainerRoot::read)`("/etc/resolv.conf", …)` | `cat /proc/PID/root/etc/resolv.conf`, without its symlink hazard |
//! | [`resolver_identity`]`(pid)?` | `readelf -l /proc/PID/root$(readlink /proc/PID/exe) \| grep interpreter` (glibc or musl?) |
//!
//! Two rules make this safe on a busy node:
//!
//! - **PID reuse.** By PID, the namespace is entered through a pidfd (`pidfd_open(2)` +
//!   `setns(pidfd, CLONE_NEWNET)`, Linux ≥ 5.8): if the process exits and its PID is given to
//!   another process, entering fails with [`Error::ProcessGone`] instead of entering the
//!   wrong namespace.
//! - **Dedicated threads.** `setns` switches only the calling thread. [`NetNs::run`] and
//!   [`NetNs::spawn`] do it on a fresh thread that dies afterwards, so no thread of the caller
//!   (in particular no async runtime worker) ever changes namespace.
//!
//! Inside `run`, per-namespace files are `/proc/thread-self/net/…` (not `/proc/self/net`,
//! which follows the main thread) and `/proc/sys/net/…`; netlink sockets opened there belong
//! to the namespace.
//!
//! # Example: read the interfaces of the namespace of PID 1 (root only)
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use netdiag_netns::NetNs;
//! let ns = NetNs::from_pid(1)?;
//! let dev = ns.run(|| std::fs::read_to_string("/proc/thread-self/net/dev"))??;
//! print!("{dev}");
//! # Ok(()) }
//! ```
//!
//! # Example: the caller's own namespace (runs anywhere)
//!
//! ```
//! # fn main() -> Result<(), netdiag_netns::Error> {
//! use netdiag_netns::{Error, NetNs};
//! let here = NetNs::current()?;
//! match here.run(|| std::thread::current().name().map(str::to_owned)) {
//!     Ok(name) => assert_eq!(name.as_deref(), Some("netns-net")),
//!     // entering even one's own namespace needs CAP_SYS_ADMIN
//!     Err(Error::PermissionDenied { capability, .. }) => assert_eq!(capability, "CAP_SYS_ADMIN"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```
//!
//! # Example: read a file as a container would see it (runs anywhere)
//!
//! ```
//! # fn main() -> Result<(), netdiag_netns::Error> {
//! use netdiag_netns::{ContainerRoot, Error};
//! // Any directory can serve as the root; live, use `ContainerRoot::from_pid(pid)`.
//! let root = ContainerRoot::from_dir("/")?;
//! let ostype = root.read_to_string("/proc/sys/kernel/ostype", 64)?;
//! assert_eq!(ostype.trim(), "Linux");
//! // `/proc/self/root` is a magic link to *our* root: refused, whatever the container says.
//! assert!(matches!(
//!     root.read("/proc/self/root/etc/hostname", 4096),
//!     Err(Error::ReadInRoot { .. })
//! ));
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod elf;
pub mod host;
mod netns;
mod resolver;
mod root;
mod sys;

pub use netns::{NetNs, NetNsId, NetNsThread, Target};
pub use resolver::{Libc, ResolverIdentity, identify, resolver_identity};
pub use root::{ContainerRoot, read_in_root};

use std::path::PathBuf;

/// Everything that can go wrong entering a namespace or reading inside a container root.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The process has exited (or never existed); its namespace is gone.
    #[error("PID {pid}: {syscall}: no such process (it has exited, or never existed)")]
    ProcessGone {
        /// The PID asked for.
        pid: i32,
        /// The syscall that found it gone (`pidfd_open`, `setns`, …).
        syscall: &'static str,
    },
    /// The namespace path does not exist.
    #[error("{}: no such network namespace (try `ip netns list`)", path.display())]
    NoSuchNetns {
        /// The path asked for.
        path: PathBuf,
    },
    /// The path exists but is not a network namespace file.
    #[error("{}: not a network namespace file", path.display())]
    NotANetns {
        /// The path asked for.
        path: PathBuf,
    },
    /// The kernel refused for lack of privilege.
    #[error("{target}: {syscall} needs {capability}: run as root on the node")]
    PermissionDenied {
        /// The PID or path.
        target: String,
        /// The refused syscall.
        syscall: &'static str,
        /// The capability that would allow it.
        capability: &'static str,
    },
    /// The kernel refused although we run as root: the target namespace belongs to a user
    /// namespace our root has no capabilities over (we run in a child user namespace, e.g.
    /// a rootless or user-namespaced container, and the target is the node's).
    #[error(
        "{target}: {syscall} refused (EPERM) although running as root: the target network namespace belongs to another user namespace ({target_userns}) than ours ({our_userns}), and our root has no capabilities there; run netdiag in the node's initial user namespace (on the node, or a privileged pod without user namespaces)"
    )]
    ForeignUserNamespace {
        /// The PID or path.
        target: String,
        /// The refused syscall.
        syscall: &'static str,
        /// The user namespace owning the target (`user:[inode]`, or why it is unknown).
        target_userns: String,
        /// Ours (`user:[inode]`).
        our_userns: String,
    },
    /// Another syscall failure.
    #[error("{target}: {syscall}: {source}")]
    Syscall {
        /// The PID or path.
        target: String,
        /// The failing syscall.
        syscall: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The namespace thread could not be started.
    #[error("{target}: cannot start a namespace thread: {source}")]
    Thread {
        /// The PID or path.
        target: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `openat2(RESOLVE_IN_ROOT)` or reading the file failed.
    #[error("{}: openat2 {} (RESOLVE_IN_ROOT): {source}", root.display(), path.display())]
    ReadInRoot {
        /// The root directory.
        root: PathBuf,
        /// The path inside the root.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file inside the root is not a regular file (refused: a FIFO could block us).
    #[error("{}: refusing to read: {kind}", path.display())]
    NotRegularFile {
        /// Root-joined path, for the message.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The process whose root was read exited before the read was over. Its mount
    /// namespace went with it: the container's mounts (the runtime's bind-mounted
    /// `/etc/resolv.conf`) are torn down, and the same path then names the file underneath,
    /// as the node sees it. What was read is not used.
    #[error(
        "PID {pid} exited while {} was read from its root: the container's mounts went with it, so what was read may be the node's file underneath, not the container's; not used",
        path.display()
    )]
    ExitedDuringRead {
        /// The process.
        pid: i32,
        /// Root-joined path, for the message.
        path: PathBuf,
    },
    /// The file inside the root is larger than allowed.
    #[error("{}: larger than {max_len} bytes", path.display())]
    TooLarge {
        /// Root-joined path, for the message.
        path: PathBuf,
        /// The limit.
        max_len: usize,
    },
}
