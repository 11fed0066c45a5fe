//! The pod's resolver library for the analyzer: live from the ELF interpreter of the
//! container's process (`netdiag_netns::resolver_identity`), mapped to
//! [`analyze::Resolver`](crate::analyze::Resolver).

use crate::analyze::{Resolver, ResolverLibrary, ResolverSource};

/// The resolver identity of process `pid` as the analyzer takes it (root on the node).
pub fn resolver_of_pid(pid: u32) -> Result<Resolver, netdiag_netns::Error> {
    let pid = i32::try_from(pid).map_err(|_| netdiag_netns::Error::ProcessGone {
        pid: -1,
        syscall: "pidfd_open",
    })?;
    let id = netdiag_netns::resolver_identity(pid)?;
    let lib = match id.libc {
        netdiag_netns::Libc::Glibc => ResolverLibrary::Glibc,
        netdiag_netns::Libc::Musl => ResolverLibrary::Musl,
        _ => ResolverLibrary::Unknown,
    };
    let mut r = Resolver::new(lib, ResolverSource::Elf, id.describe());
    if let Some(n) = id.nsswitch_conf {
        r = r.with_nsswitch_conf(n);
    }
    Ok(r)
}

/// The UDP sockets of the calling thread's namespace (run inside the pod's netns), as the
/// analyzer takes them: queue, `SO_RCVBUF` and drops, for `udp_receive_buffer_overflow`.
pub(crate) fn udp_sockets_here() -> Result<Vec<crate::analyze::UdpSocketQueue>, crate::kernel::Error>
{
    Ok(crate::kernel::udp_sockets()?
        .into_iter()
        .map(|s| {
            let q = crate::analyze::UdpSocketQueue::new(s.addr, s.port, s.queued_bytes);
            match (s.rcvbuf, s.drops) {
                (Some(rb), Some(d)) => q.with_memory(rb, d),
                _ => q,
            }
        })
        .collect())
}

/// The MTU of interface `name` in the calling thread's namespace (`ip link`).
pub(crate) fn mtu_here(name: &str) -> Result<Option<u32>, crate::kernel::Error> {
    Ok(crate::kernel::links()?
        .into_iter()
        .find(|l| l.name == name)
        .and_then(|l| l.mtu))
}

/// Reads the pod's UDP sockets after the capture from a thread that entered the pod's
/// namespace before it started (the capturing process may give up its capabilities
/// meanwhile, as the counters' reader in `live` does).
pub(crate) struct UdpAfter {
    go: std::sync::mpsc::Sender<()>,
    thread: netdiag_netns::NetNsThread<
        Option<Result<Vec<crate::analyze::UdpSocketQueue>, crate::kernel::Error>>,
    >,
}

impl UdpAfter {
    pub(crate) fn start(ns: &netdiag_netns::NetNs) -> Result<UdpAfter, crate::Error> {
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let thread = ns.spawn(move || {
            wait.recv().ok()?;
            Some(udp_sockets_here())
        })?;
        Ok(UdpAfter { go, thread })
    }

    /// The sockets, or why not (for a warning).
    pub(crate) fn read(self) -> Result<Vec<crate::analyze::UdpSocketQueue>, String> {
        let _ = self.go.send(());
        match self.thread.join() {
            Ok(Some(Ok(s))) => Ok(s),
            Ok(Some(Err(e))) => Err(format!("sock_diag: {e}")),
            Ok(None) => Err("the socket thread ended early".to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}
