//! Every TCP socket of a namespace with its state and pending timer (≈ `ss -tano`), and a
//! bounded summary of them per peer (≈ `ss -tan dst IP:PORT | wc -l`, by state).
//!
//! Live, [`tcp_sockets`] asks sock_diag (`inet_diag`, all states, request sockets
//! included); offline, [`Snapshot::tcp_sockets`](crate::Snapshot::tcp_sockets) reads the
//! rows of `net/tcp` and `net/tcp6`, which carry the same state and timer columns. The
//! summary, [`group_sockets`], is what `netdiag-analyze` consumes: sockets the namespace
//! opened towards one remote `ip:port` (where ephemeral ports run out, and whose keepalive
//! decides whether an idle NAT entry survives), and sockets accepted or half-open on one
//! local listening port (the SYN queue is the `SYN_RECV` count there).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags, Timer};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;

use crate::Error;
use crate::netlink::dump;

/// The kernel's TCP state numbers (`include/net/tcp_states.h`), as `ss` and
/// `/proc/net/tcp` (`st`) report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum TcpState {
    /// `ESTABLISHED` (1).
    Established,
    /// `SYN_SENT` (2): `connect()` waiting for the SYN-ACK.
    SynSent,
    /// `SYN_RECV` (3): a half-open connection in a listener's SYN queue.
    SynRecv,
    /// `FIN_WAIT1` (4).
    FinWait1,
    /// `FIN_WAIT2` (5).
    FinWait2,
    /// `TIME_WAIT` (6): closed by this end first; holds its port for 60 s.
    TimeWait,
    /// `CLOSE` (7).
    Close,
    /// `CLOSE_WAIT` (8): the peer closed, the application has not.
    CloseWait,
    /// `LAST_ACK` (9).
    LastAck,
    /// `LISTEN` (10).
    Listen,
    /// `CLOSING` (11).
    Closing,
    /// `NEW_SYN_RECV` (12): a request socket (reported as `SYN_RECV` by sock_diag).
    NewSynRecv,
    /// A number this crate does not know.
    Other(u8),
}

impl TcpState {
    /// From the kernel's number.
    pub fn from_kernel(n: u8) -> TcpState {
        match n {
            1 => TcpState::Established,
            2 => TcpState::SynSent,
            3 => TcpState::SynRecv,
            4 => TcpState::FinWait1,
            5 => TcpState::FinWait2,
            6 => TcpState::TimeWait,
            7 => TcpState::Close,
            8 => TcpState::CloseWait,
            9 => TcpState::LastAck,
            10 => TcpState::Listen,
            11 => TcpState::Closing,
            12 => TcpState::NewSynRecv,
            n => TcpState::Other(n),
        }
    }

    /// The kernel's name: `ESTABLISHED`, `TIME_WAIT`, `SYN_RECV` (request sockets too), …
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv | TcpState::NewSynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::Other(_) => "UNKNOWN",
        }
    }
}

/// The timer pending on a socket (`ss -o` `timer:(…)`, `/proc/net/tcp` `tr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum SocketTimer {
    /// No timer.
    None,
    /// Retransmission (or SYN-ACK retransmission of a request socket): `tr` 1.
    Retransmit,
    /// Keepalive: the socket has `SO_KEEPALIVE` and is idle: `tr` 2.
    Keepalive,
    /// The TIME_WAIT timer: `tr` 3.
    TimeWait,
    /// Zero-window probe: `tr` 4.
    Probe,
    /// A value this crate does not know.
    Other(u8),
}

impl SocketTimer {
    /// From the `tr` / `idiag_timer` number.
    pub fn from_kernel(n: u8) -> SocketTimer {
        match n {
            0 => SocketTimer::None,
            1 => SocketTimer::Retransmit,
            2 => SocketTimer::Keepalive,
            3 => SocketTimer::TimeWait,
            4 => SocketTimer::Probe,
            n => SocketTimer::Other(n),
        }
    }
}

/// One TCP socket (a line of `ss -tano`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TcpSocket {
    /// Local address.
    pub local: IpAddr,
    /// Local port.
    pub local_port: u16,
    /// Remote address (unspecified for listeners).
    pub remote: IpAddr,
    /// Remote port (0 for listeners).
    pub remote_port: u16,
    /// State.
    pub state: TcpState,
    /// Pending timer.
    pub timer: SocketTimer,
    /// Milliseconds until the timer fires, when known.
    pub timer_ms: Option<u64>,
}

impl TcpSocket {
    /// A socket record (for sources other than this crate, e.g. tests).
    pub fn new(
        local: (IpAddr, u16),
        remote: (IpAddr, u16),
        state: TcpState,
        timer: SocketTimer,
    ) -> TcpSocket {
        TcpSocket {
            local: local.0,
            local_port: local.1,
            remote: remote.0,
            remote_port: remote.1,
            state,
            timer,
            timer_ms: None,
        }
    }
}

/// Which end of its connections a [`SocketGroup`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum GroupSide {
    /// Connections this namespace opened towards `addr:port` (each holds a local,
    /// usually ephemeral, port).
    Client,
    /// Connections accepted, or half-open, on the local listening `addr:port`.
    Server,
}

/// Sockets sharing one peer (client side) or one local listening port (server side).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SocketGroup {
    /// Client or server side.
    pub side: GroupSide,
    /// The remote address (client side) or the local address (server side).
    pub addr: IpAddr,
    /// The remote port (client side) or the local listening port (server side).
    pub port: u16,
    /// Sockets per state name ([`TcpState::name`]).
    pub states: BTreeMap<String, u32>,
    /// Sockets whose keepalive timer is pending (`SO_KEEPALIVE` on an idle connection).
    pub keepalive: u32,
    /// Distinct local ports these sockets hold.
    pub local_ports: u32,
}

impl SocketGroup {
    /// Sockets in the group, all states.
    pub fn total(&self) -> u32 {
        self.states.values().copied().fold(0, u32::saturating_add)
    }
}

/// Most groups [`group_sockets`] returns (the largest are kept): a node with sockets to
/// tens of thousands of peers still gives a bounded summary.
pub const MAX_GROUPS: usize = 4096;

/// Groups sockets: a non-listening socket whose local port is a listening port of the
/// namespace (same address or a wildcard listener) is counted on that listener's server
/// side; every other one on the client side of its remote `ip:port`. Listeners themselves
/// are not counted (they are [`Listener`](crate::Listener)s). Largest groups first, at
/// most [`MAX_GROUPS`].
pub fn group_sockets(sockets: &[TcpSocket]) -> Vec<SocketGroup> {
    let listening: BTreeSet<(IpAddr, u16)> = sockets
        .iter()
        .filter(|s| s.state == TcpState::Listen)
        .map(|s| (s.local, s.local_port))
        .collect();
    let serves = |s: &TcpSocket| -> Option<IpAddr> {
        listening
            .iter()
            .find(|(a, p)| *p == s.local_port && (a.is_unspecified() || *a == s.local))
            .map(|(a, _)| *a)
    };
    type Key = (GroupSide, IpAddr, u16);
    let mut groups: BTreeMap<Key, (SocketGroup, BTreeSet<u16>)> = BTreeMap::new();
    for s in sockets.iter().filter(|s| s.state != TcpState::Listen) {
        let key = match serves(s) {
            Some(addr) => (GroupSide::Server, addr, s.local_port),
            None => (GroupSide::Client, s.remote, s.remote_port),
        };
        let (g, ports) = groups.entry(key).or_insert_with(|| {
            (
                SocketGroup {
                    side: key.0,
                    addr: key.1,
                    port: key.2,
                    states: BTreeMap::new(),
                    keepalive: 0,
                    local_ports: 0,
                },
                BTreeSet::new(),
            )
        });
        let n = g.states.entry(s.state.name().to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        if s.timer == SocketTimer::Keepalive {
            g.keepalive = g.keepalive.saturating_add(1);
        }
        ports.insert(s.local_port);
    }
    let mut out: Vec<SocketGroup> = groups
        .into_values()
        .map(|(mut g, ports)| {
            g.local_ports = u32::try_from(ports.len()).unwrap_or(u32::MAX);
            g
        })
        .collect();
    out.sort_by_key(|g| std::cmp::Reverse(g.total()));
    out.truncate(MAX_GROUPS);
    out
}

/// Every TCP socket (IPv4 and IPv6, all states, request sockets included) of the calling
/// thread's namespace via sock_diag `inet_diag`, ≈ `ss -tano`.
pub fn tcp_sockets() -> Result<Vec<TcpSocket>, Error> {
    let mut out = Vec::new();
    for (family, id) in [
        (AF_INET, SocketId::new_v4()),
        (AF_INET6, SocketId::new_v6()),
    ] {
        let req = SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: id,
        });
        for m in dump(NETLINK_SOCK_DIAG, "sock_diag inet (all states)", req)? {
            if let SockDiagMessage::InetResponse(r) = m {
                let h = &r.header;
                let (timer, timer_ms) = match h.timer {
                    None => (SocketTimer::None, None),
                    Some(Timer::Retransmit(d, _)) => (SocketTimer::Retransmit, Some(d)),
                    Some(Timer::KeepAlive(d)) => (SocketTimer::Keepalive, Some(d)),
                    Some(Timer::TimeWait) => (SocketTimer::TimeWait, None),
                    Some(Timer::Probe(d)) => (SocketTimer::Probe, Some(d)),
                };
                out.push(TcpSocket {
                    local: h.socket_id.source_address,
                    local_port: h.socket_id.source_port,
                    remote: h.socket_id.destination_address,
                    remote_port: h.socket_id.destination_port,
                    state: TcpState::from_kernel(h.state),
                    timer,
                    timer_ms: timer_ms.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Snapshot;
    use std::path::Path;

    /// `net/tcp` and `net/tcp6` of a throwaway netns on the lab kernel (6.18.44), recipe in
    /// `fixtures/README.md`: listener 127.0.0.1:7001 (backlog 4) with two established
    /// connections (client 42364 with SO_KEEPALIVE, 42374 without) and two client-closed
    /// ones in TIME_WAIT (42388, 42392); listener 127.0.0.1:7002 whose final ACKs are
    /// dropped, so one connection from 38706 is ESTABLISHED on the client and SYN_RECV on
    /// the server.
    fn fixture() -> Snapshot {
        Snapshot::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sockets-6.18"))
            .unwrap()
    }

    #[test]
    fn proc_net_tcp_rows_carry_state_peer_and_timer() {
        let s = fixture().tcp_sockets();
        assert_eq!(s.len(), 10, "{s:#?}");
        let ka: Vec<_> = s
            .iter()
            .filter(|s| s.timer == SocketTimer::Keepalive)
            .collect();
        assert_eq!(ka.len(), 1);
        assert_eq!((ka[0].local_port, ka[0].remote_port), (42364, 7001));
        // `tm->when` 0xAFC3B ticks of 1/100 s: the 7200 s keepalive, 7199.31 s to go
        assert_eq!(ka[0].timer_ms, Some(7_199_310));
        let tw = s.iter().filter(|s| s.state == TcpState::TimeWait).count();
        assert_eq!(tw, 2);
        let half_open: Vec<_> = s.iter().filter(|s| s.state == TcpState::SynRecv).collect();
        assert_eq!(half_open.len(), 1);
        assert_eq!(half_open[0].timer, SocketTimer::Retransmit);
        assert_eq!(half_open[0].remote_port, 38706);
    }

    #[test]
    fn groups_split_client_and_server_sides() {
        let g = group_sockets(&fixture().tcp_sockets());
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let find = |side, port| {
            g.iter()
                .find(|g| g.side == side && g.addr == lo && g.port == port)
                .unwrap_or_else(|| panic!("{side:?} {port} in {g:#?}"))
        };
        let to_7001 = find(GroupSide::Client, 7001);
        assert_eq!(to_7001.states["ESTABLISHED"], 2);
        assert_eq!(to_7001.states["TIME_WAIT"], 2);
        assert_eq!(
            (to_7001.total(), to_7001.local_ports, to_7001.keepalive),
            (4, 4, 1)
        );
        let on_7001 = find(GroupSide::Server, 7001);
        assert_eq!(on_7001.states["ESTABLISHED"], 2);
        assert_eq!(on_7001.keepalive, 0);
        let on_7002 = find(GroupSide::Server, 7002);
        assert_eq!(on_7002.states.get("SYN_RECV"), Some(&1));
        assert_eq!(find(GroupSide::Client, 7002).states["ESTABLISHED"], 1);
        assert_eq!(g.len(), 4, "{g:#?}");
    }

    #[test]
    fn states_and_timers_by_number() {
        assert_eq!(TcpState::from_kernel(6).name(), "TIME_WAIT");
        assert_eq!(TcpState::from_kernel(12).name(), "SYN_RECV");
        assert_eq!(TcpState::from_kernel(99), TcpState::Other(99));
        assert_eq!(SocketTimer::from_kernel(2), SocketTimer::Keepalive);
        assert_eq!(SocketTimer::from_kernel(9), SocketTimer::Other(9));
    }
}
