//! Kernel counters and settings of one network namespace: what `nstat`, `conntrack -S`,
//! `ss -lnt` and `ip link/addr/route` show, as data.
//!
//! Everything here reads the namespace of the **calling thread**. To read a pod's namespace,
//! run it inside `netdiag_netns::NetNs::run` (≈ `ip netns exec` / `nsenter -n`), which does
//! it on a dedicated thread. This crate reports; interpreting the numbers is
//! `netdiag-analyze`'s job.
//!
//! | module / item | what people run today | source |
//! |---|---|---|
//! | [`Snapshot`], [`Snapshot::flat`] | `nstat -az`, `conntrack -S`, `sysctl` | `/proc/net/{netstat,snmp,snmp6,stat/nf_conntrack}`, `/proc/sys/…` |
//! | [`Snapshot::delta`] | `nstat` (without `-a`: what rose since last time) | two snapshots |
//! | [`Snapshot::capture_current`] | all of the above, live, in the calling thread's netns | `/proc/thread-self/net/…`, `/proc/sys/…` |
//! | [`tcp_listeners`], [`Snapshot::listeners`] | `ss -lnt` (Recv-Q = queued, Send-Q = backlog) | sock_diag `inet_diag`; offline `/proc/net/tcp{,6}` |
//! | [`sockets`]: [`tcp_sockets`], [`Snapshot::tcp_sockets`], [`Snapshot::socket_groups`] | `ss -tano` (states, `timer:(keepalive,…)`), per peer | sock_diag `inet_diag`, all states; offline `/proc/net/tcp{,6}` |
//! | [`udp_sockets`] | `ss -uamn` (Recv-Q, `skmem` rb = buffer, d = drops) | sock_diag `inet_diag` + `SKMEMINFO` |
//! | [`links`](mod@links): [`links()`], [`addresses`], [`routes`], [`default_route_interface`] | `ip link`, `ip addr`, `ip route` | rtnetlink |
//! | [`conntrack`]: [`conntrack::entries`], [`conntrack::summary`] (streamed), [`conntrack::summarize`] | `conntrack -L` | ctnetlink |
//! | [`replay`]: [`replay::record`], [`replay::decode`] | `nlmon` / `strace -e recvmsg` of the dumps above | the raw reply datagrams |
//!
//! Kernel tables are parsed by the names in their headers, never by column position, and
//! unknown fields are kept (the raw text stays available through [`Snapshot::raw`]).
//!
//! # Example: read a recorded snapshot
//!
//! ```
//! # fn main() -> Result<(), netdiag_kernel::Error> {
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/netns-6.18");
//! let snap = netdiag_kernel::Snapshot::read_dir(dir)?;
//! let flat = snap.flat();
//! println!("ListenOverflows = {}", flat["TcpExt.ListenOverflows"]);
//! println!("conntrack invalid = {}", flat["conntrack.invalid"]); // `conntrack -S`, summed over CPUs
//! for l in snap.listeners() {
//!     println!("LISTEN {}:{} queued {}", l.addr, l.port, l.queued); // `ss -lnt` Recv-Q
//! }
//! # Ok(()) }
//! ```
//!
//! # Example: a pod's namespace, live (root; `netdiag-netns` does the entering)
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let pid = 1;
//! let ns = netdiag_netns::NetNs::from_pid(pid)?; // ≈ nsenter -t PID -n
//! let (before, iface) = ns.run(|| {
//!     Ok::<_, netdiag_kernel::Error>((
//!         netdiag_kernel::Snapshot::capture_current()?,
//!         netdiag_kernel::default_route_interface()?, // the pod's eth0
//!     ))
//! })??;
//! // … capture for a while on `iface` …
//! let after = ns.run(netdiag_kernel::Snapshot::capture_current)??;
//! for (key, rise) in after.delta(&before).nonzero() {
//!     println!("{key} +{rise}"); // like `nstat`
//! }
//! for l in after.listeners() {
//!     println!("{}:{} Recv-Q {} Send-Q {:?}", l.addr, l.port, l.queued, l.backlog); // `ss -lnt`
//! }
//! // `conntrack -L`, grouped by post-NAT source and destination, streamed
//! for g in ns.run(netdiag_kernel::conntrack::summary)?? {
//!     println!("{} -> {}:{:?}: {} entries, {} source ports", g.src, g.dst, g.dst_port, g.entries, g.src_ports);
//! }
//! # let _ = iface;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod conntrack;
pub mod links;
mod live;
mod netlink;
mod parse;
pub mod replay;
pub mod snapshot;
pub mod sockets;
mod udp;

pub use conntrack::OtherAttr;
pub use links::{Address, Link, Route, addresses, default_route_interface, links, routes};
pub use live::tcp_listeners;
pub use snapshot::{Backwards, Delta, Listener, SNAPSHOT_FILES, Snapshot};
pub use sockets::{GroupSide, SocketGroup, SocketTimer, TcpSocket, TcpState, tcp_sockets};
pub use udp::{UdpSocket, udp_sockets};

use std::path::PathBuf;

/// Everything that can go wrong reading a namespace's counters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A kernel table did not have the expected shape.
    #[error("{file} line {line}: {reason}")]
    Parse {
        /// Relative path of the table (`net/snmp`).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// A netlink request failed (socket, send, receive, or an error reply).
    #[error("netlink {what}: {source}")]
    Netlink {
        /// Which dump (`sock_diag inet`, `rtnetlink routes`, `ctnetlink`).
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The kernel refused a netlink request for lack of privilege.
    #[error("netlink {what} needs {capability}: run as root on the node")]
    PermissionDenied {
        /// Which dump.
        what: &'static str,
        /// The capability that would allow it.
        capability: &'static str,
    },
    /// A netlink reply could not be decoded.
    #[error("netlink {what}: cannot decode reply: {reason}")]
    NetlinkDecode {
        /// Which dump.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
}
