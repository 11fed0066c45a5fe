//! Kernel counter snapshots as the analyzer sees them (the bin converts from
//! `netdiag-kernel`; analyze does not depend on it).
//!
//! Keys are the flat keys of `testdata/README.md`: `TcpExt.ListenOverflows`,
//! `conntrack.insert_failed`, `sysctl.net.core.somaxconn`, …

use crate::model::CounterDelta;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Which network namespace a snapshot describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetnsRole {
    /// The pod's network namespace (where its sockets and resolv.conf live).
    Pod,
    /// The node's (host) network namespace, where Service DNAT and SNAT happen.
    Node,
}

impl NetnsRole {
    /// `"pod"` or `"node"`.
    pub fn as_str(self) -> &'static str {
        match self {
            NetnsRole::Pod => "pod",
            NetnsRole::Node => "node",
        }
    }
}

impl std::fmt::Display for NetnsRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a snapshot was taken before or after the capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    /// Taken before the packets were captured.
    Before,
    /// Taken after.
    After,
}

/// A listening TCP socket and its accept queue (`ss -lnt`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerQueue {
    /// Local address (unspecified for wildcard listeners).
    pub addr: IpAddr,
    /// Local port.
    pub port: u16,
    /// Connections waiting to be accepted (`ss` Recv-Q, `net/tcp` rx_queue).
    pub queued: u32,
    /// Accept-queue size (`ss` Send-Q), when known (sock_diag; `net/tcp` does not say).
    pub backlog: Option<u32>,
}

impl ListenerQueue {
    /// A listener on `addr:port` with `queued` connections waiting and, when known, its
    /// accept-queue size.
    pub fn new(addr: IpAddr, port: u16, queued: u32, backlog: Option<u32>) -> ListenerQueue {
        ListenerQueue {
            addr,
            port,
            queued,
            backlog,
        }
    }
}

/// Which end of its connections a [`SocketGroup`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SocketSide {
    /// Connections the namespace opened towards `addr:port` (each holds a local port).
    Client,
    /// Connections accepted, or half-open, on the local listening `addr:port`.
    Server,
}

/// TCP sockets of a namespace towards one peer, or on one listening port, by state
/// (`ss -tan dst IP:PORT`, `ss -tan sport = :PORT`), as `netdiag-kernel` groups them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketGroup {
    /// Client side (`addr:port` is the peer) or server side (the local listener).
    pub side: SocketSide,
    /// Remote address (client side) or local listening address (server side).
    pub addr: IpAddr,
    /// Remote port (client side) or local listening port (server side).
    pub port: u16,
    /// Sockets per kernel state name: `ESTABLISHED`, `TIME_WAIT`, `SYN_RECV`, …
    pub states: BTreeMap<String, u32>,
    /// Sockets with a pending keepalive timer (`SO_KEEPALIVE`, `ss -o` `timer:(keepalive…)`).
    pub keepalive: u32,
    /// Distinct local ports the sockets hold.
    pub local_ports: u32,
}

impl SocketGroup {
    /// A group on `side` of `addr:port` with its sockets per state, keepalive timers and
    /// distinct local ports.
    pub fn new(
        side: SocketSide,
        (addr, port): (IpAddr, u16),
        states: BTreeMap<String, u32>,
        keepalive: u32,
        local_ports: u32,
    ) -> SocketGroup {
        SocketGroup {
            side,
            addr,
            port,
            states,
            keepalive,
            local_ports,
        }
    }

    /// Sockets in `state` (`"TIME_WAIT"`, …).
    pub fn count(&self, state: &str) -> u32 {
        self.states.get(state).copied().unwrap_or(0)
    }

    /// Sockets in every state.
    pub fn total(&self) -> u32 {
        self.states.values().copied().fold(0, u32::saturating_add)
    }
}

/// One snapshot of one network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Flat counter values.
    pub values: BTreeMap<String, u64>,
    /// Listening sockets.
    pub listeners: Vec<ListenerQueue>,
    /// Every other TCP socket, grouped per peer and per listening port.
    pub sockets: Vec<SocketGroup>,
}

impl Counters {
    /// A snapshot from flat counter values and listening sockets.
    pub fn new(values: BTreeMap<String, u64>, listeners: Vec<ListenerQueue>) -> Counters {
        Counters {
            values,
            listeners,
            sockets: Vec::new(),
        }
    }

    /// The same snapshot with the namespace's other TCP sockets, grouped.
    pub fn with_sockets(mut self, sockets: Vec<SocketGroup>) -> Counters {
        self.sockets = sockets;
        self
    }
}

/// Before/after snapshots for the pod and node namespaces.
#[derive(Clone, Debug, Default)]
pub(crate) struct CounterBook {
    pub(crate) pod_before: Option<Counters>,
    pub(crate) pod_after: Option<Counters>,
    pub(crate) node_before: Option<Counters>,
    pub(crate) node_after: Option<Counters>,
}

impl CounterBook {
    pub(crate) fn set(&mut self, role: NetnsRole, moment: Moment, c: &Counters) {
        let slot = match (role, moment) {
            (NetnsRole::Pod, Moment::Before) => &mut self.pod_before,
            (NetnsRole::Pod, Moment::After) => &mut self.pod_after,
            (NetnsRole::Node, Moment::Before) => &mut self.node_before,
            (NetnsRole::Node, Moment::After) => &mut self.node_after,
        };
        *slot = Some(c.clone());
    }

    fn pair(&self, role: NetnsRole) -> Option<(&Counters, &Counters)> {
        match role {
            NetnsRole::Pod => self.pod_before.as_ref().zip(self.pod_after.as_ref()),
            NetnsRole::Node => self.node_before.as_ref().zip(self.node_after.as_ref()),
        }
    }

    /// Whether both snapshots of `role` were given.
    pub(crate) fn has(&self, role: NetnsRole) -> bool {
        self.pair(role).is_some()
    }

    /// The delta of `key` in `role`, if both snapshots carry it and it rose.
    pub(crate) fn rise(&self, role: NetnsRole, key: &str) -> Option<CounterDelta> {
        let (b, a) = self.pair(role)?;
        let before = *b.values.get(key)?;
        let after = *a.values.get(key)?;
        (after > before).then(|| CounterDelta {
            netns: role,
            key: key.to_string(),
            before,
            after,
        })
    }

    /// The latest known value of `key` in `role` (after, else before).
    pub(crate) fn value(&self, role: NetnsRole, key: &str) -> Option<u64> {
        let (b, a) = match role {
            NetnsRole::Pod => (&self.pod_before, &self.pod_after),
            NetnsRole::Node => (&self.node_before, &self.node_after),
        };
        a.as_ref()
            .and_then(|c| c.values.get(key))
            .or_else(|| b.as_ref().and_then(|c| c.values.get(key)))
            .copied()
    }

    /// Listeners of `role` (after snapshot preferred).
    pub(crate) fn listeners(&self, role: NetnsRole) -> &[ListenerQueue] {
        let (b, a) = match role {
            NetnsRole::Pod => (&self.pod_before, &self.pod_after),
            NetnsRole::Node => (&self.node_before, &self.node_after),
        };
        a.as_ref()
            .or(b.as_ref())
            .map(|c| c.listeners.as_slice())
            .unwrap_or(&[])
    }

    /// Socket groups of `role` from both snapshots (before first), for the detectors
    /// that look for a socket that may have closed by the end of the capture.
    pub(crate) fn socket_groups(&self, role: NetnsRole) -> impl Iterator<Item = &SocketGroup> {
        let (b, a) = match role {
            NetnsRole::Pod => (&self.pod_before, &self.pod_after),
            NetnsRole::Node => (&self.node_before, &self.node_after),
        };
        b.iter().chain(a.iter()).flat_map(|c| c.sockets.iter())
    }

    /// Whether any snapshot of `role` carried socket groups (sock_diag or `net/tcp`).
    pub(crate) fn has_sockets(&self, role: NetnsRole) -> bool {
        self.socket_groups(role).next().is_some()
    }

    /// Whether a pod listener serves `addr:port` (wildcards match any address).
    pub(crate) fn pod_listens(&self, addr: IpAddr, port: u16) -> bool {
        self.listeners(NetnsRole::Pod)
            .iter()
            .any(|l| l.port == port && (l.addr.is_unspecified() || l.addr == addr))
    }
}
