//! `udp_receive_buffer_overflow`: a local UDP server cannot keep up and the kernel drops
//! datagrams at its socket (`docs/detectors-resolver-udp-mtu.md`).
//!
//! Packets: datagrams (DNS queries, or requests of any request/response UDP service) to a
//! port served **in the capture's namespace** arrive and a share of them is never
//! answered, in bursts, while the rest is. The kernel counts each datagram it could not
//! queue (`sk_rmem_alloc` over `sk_rcvbuf`) in `Udp.RcvbufErrors` (`Udp6.RcvbufErrors`)
//! of the server's netns, and per socket in sock_diag's `drops`.
//!
//! - pod `Udp.RcvbufErrors`/`Udp6.RcvbufErrors` rose: `confirmed`;
//! - pod counters given and neither rose: no finding (the datagrams were lost elsewhere);
//! - no pod counters: `possible`, naming the other explanation (the conntrack race, or
//!   loss between client and server).
//!
//! Only servers whose own packets leave with an initial TTL (they live in the capture's
//! netns), or that a pod UDP socket listens on, qualify: a client that waits for a remote
//! server (the lost-reply case) is not this.

use super::{Ctx, EvidenceSink, endpoint_text};
use crate::NetnsRole;
use crate::flow::{DenseMap, Endpoint, FxMap};
use crate::model::{Confidence, Evidence, Finding, Kind, ListenerRef, PacketRef, Timing};
use std::net::IpAddr;

/// A UDP socket of a namespace, from sock_diag (`ss -lnump`): what it holds and may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpSocketQueue {
    /// Local address (unspecified for a wildcard socket).
    pub addr: IpAddr,
    /// Local port.
    pub port: u16,
    /// Bytes in the receive queue (`ss` Recv-Q, `sk_rmem_alloc`).
    pub queued_bytes: u32,
    /// Receive buffer size (`SO_RCVBUF` as the kernel doubled it, `sk_rcvbuf`), if known.
    pub rcvbuf_bytes: Option<u32>,
    /// Datagrams this socket dropped (`sk_drops`), if known.
    pub drops: Option<u32>,
}

impl UdpSocketQueue {
    /// A socket record.
    pub fn new(addr: IpAddr, port: u16, queued_bytes: u32) -> Self {
        UdpSocketQueue {
            addr,
            port,
            queued_bytes,
            rcvbuf_bytes: None,
            drops: None,
        }
    }

    /// With the buffer size and drop count sock_diag reports.
    pub fn with_memory(mut self, rcvbuf_bytes: u32, drops: u32) -> Self {
        self.rcvbuf_bytes = Some(rcvbuf_bytes);
        self.drops = Some(drops);
        self
    }
}

/// Most servers (address:port) tracked.
const MAX_SERVERS: usize = 1024;
/// Most DNS queries waiting for an answer (a flood that overflows a socket buffer shows
/// well within this many).
const MAX_PENDING: usize = 1 << 13;
/// Width of the windows in which unanswered datagrams are counted as bursts.
const BURST_NS: u64 = 100_000_000;
/// Fewest unanswered datagrams for a finding.
const MIN_UNANSWERED: u64 = 3;
/// Most 100 ms windows whose arrivals are counted per server.
const MAX_WINDOWS: usize = 1 << 14;
/// In the worst 100 ms window, at least this share of the arrivals went unanswered: an
/// overflowing buffer drops most of a burst, scattered loss drops a few here and there.
const MIN_BURST_SHARE: f64 = 0.5;

#[derive(Clone, Debug, Default)]
struct Server {
    datagrams_in: u64,
    datagrams_out: u64,
    dns: bool,
    first_ns: u64,
    last_ns: u64,
    /// The latest arrival among the queries it answered: a socket queue is first in,
    /// first out, so an unanswered query that arrived well before it was dropped; a later
    /// one may still have been queued when the capture ended.
    last_answered_arrival_ns: u64,
    /// The slowest answer seen (arrival to answer): an unanswered query counts only if a
    /// query that arrived more than this later was answered — it was not merely slow.
    max_latency_ns: u64,
    /// Distinct client sockets (capped count).
    clients: u32,
    /// Inbound datagrams per 100 ms window (bounded), except those of `open`.
    windows: FxMap<u64, u32>,
    /// The window the last inbound datagram fell in and its count so far, not yet in
    /// `windows`: datagrams come in time order, so nearly every one lands here and
    /// costs no map probe. `None` when that window did not fit in `windows`.
    open: Option<(u64, u32)>,
    example_in: Option<PacketRef>,
}

/// The UDP request/response tracker, by server endpoint.
#[derive(Default)]
pub(crate) struct UdpServices {
    servers: DenseMap<(u16, Endpoint), Server>,
    /// (source, server, client) pairs counted in `Server::clients`: only added to and
    /// looked up, never iterated, so a [`DenseMap`].
    seen_clients: DenseMap<(u16, Endpoint, Endpoint), ()>,
    /// (source, server, client, DNS id) → (packet, ns) of an unanswered query.
    pending: DenseMap<(u16, Endpoint, Endpoint, u16), (u64, u64)>,
    pub(crate) not_tracked: u64,
    sockets: Vec<UdpSocketQueue>,
}

fn is_ephemeral(p: u16) -> bool {
    p >= 32768
}

impl UdpServices {
    /// Which end of a datagram is the server: port 53 for DNS, otherwise a fixed port
    /// facing an ephemeral one.
    fn server_of(src: Endpoint, dst: Endpoint) -> Option<(Endpoint, Endpoint, bool)> {
        if dst.1 == 53 && src.1 != 53 {
            return Some((dst, src, true));
        }
        if src.1 == 53 && dst.1 != 53 {
            return Some((src, dst, false));
        }
        match (is_ephemeral(src.1), is_ephemeral(dst.1)) {
            (true, false) => Some((dst, src, true)),
            (false, true) => Some((src, dst, false)),
            _ => None,
        }
    }

    /// One UDP datagram; `dns_id` is `Some((id, is_response))` when it parsed as DNS.
    pub(crate) fn on_datagram(
        &mut self,
        source: u16,
        src: Endpoint,
        dst: Endpoint,
        dns_id: Option<(u16, bool)>,
        pkt: u64,
        ns: u64,
    ) {
        let Some((server, client, inbound)) = Self::server_of(src, dst) else {
            return;
        };
        // One hash and one probe per map: the entry, filled only when new and there is room.
        let key = (source, server);
        let hash = DenseMap::<_, Server>::hash_of(&key);
        let s = match self
            .servers
            .get_or_insert_default_if_hashed(key, hash, |m| m.len() < MAX_SERVERS)
        {
            Some(s) => s,
            None => {
                self.not_tracked += 1;
                return;
            }
        };
        if s.datagrams_in == 0 && s.datagrams_out == 0 {
            s.first_ns = ns;
        }
        s.last_ns = s.last_ns.max(ns);
        if inbound {
            s.datagrams_in += 1;
            s.count_arrival(ns / BURST_NS);
            if s.example_in.is_none() {
                s.example_in = Some(PacketRef {
                    source,
                    number: pkt,
                });
            }
            if self.seen_clients.len() < MAX_PENDING
                && self
                    .seen_clients
                    .insert_if_absent((source, server, client), ())
            {
                s.clients = s.clients.saturating_add(1);
            }
        } else {
            s.datagrams_out += 1;
        }
        if let Some((id, response)) = dns_id {
            s.dns = true;
            let k = (source, server, client, id);
            if response {
                if let Some((_, arrived)) = self.pending.remove(&k) {
                    s.last_answered_arrival_ns = s.last_answered_arrival_ns.max(arrived);
                    s.max_latency_ns = s.max_latency_ns.max(ns.saturating_sub(arrived));
                }
            } else if inbound {
                let hash = DenseMap::<_, (u64, u64)>::hash_of(&k);
                if self.pending.get_mut_hashed(&k, hash).is_none() {
                    if self.pending.len() >= MAX_PENDING {
                        self.not_tracked += 1;
                    } else {
                        self.pending.insert_absent_hashed(k, hash, (pkt, ns));
                    }
                }
            }
        }
    }

    /// The UDP sockets of the pod netns (sock_diag), latest wins.
    pub(crate) fn set_sockets(&mut self, sockets: &[UdpSocketQueue]) {
        self.sockets = sockets.to_vec();
    }

    fn socket_for(&self, server: Endpoint) -> Option<&UdpSocketQueue> {
        self.sockets
            .iter()
            .find(|s| s.port == server.1 && (s.addr == server.0 || s.addr.is_unspecified()))
    }
}

impl Server {
    /// One inbound datagram in 100 ms window `w`. A window new to the map is counted
    /// only if the map has room for it, as if it went straight in.
    #[inline]
    fn count_arrival(&mut self, w: u64) {
        if let Some((ow, n)) = &mut self.open {
            if *ow == w {
                *n = n.saturating_add(1);
                return;
            }
        }
        self.close_window();
        if self.windows.len() < MAX_WINDOWS || self.windows.contains_key(&w) {
            self.open = Some((w, 1));
        }
    }

    /// Moves the open window's count into the map.
    fn close_window(&mut self) {
        if let Some((w, n)) = self.open.take() {
            let c = self.windows.entry(w).or_insert(0);
            *c = c.saturating_add(n);
        }
    }

    /// Inbound datagrams counted in window `w`.
    fn arrived_in(&self, w: u64) -> u32 {
        let open = match self.open {
            Some((ow, n)) if ow == w => n,
            _ => 0,
        };
        self.windows
            .get(&w)
            .copied()
            .unwrap_or(0)
            .saturating_add(open)
    }
}

/// Whether some 100 ms window lost at least `MIN_BURST_SHARE` of its arrivals (and at
/// least `MIN_UNANSWERED` of them).
fn has_burst(s: &Server, pending: &[(u64, u64)]) -> bool {
    let mut lost: FxMap<u64, u32> = FxMap::default();
    for &(_, ns) in pending {
        *lost.entry(ns / BURST_NS).or_insert(0) += 1;
    }
    lost.iter().any(|(w, &n)| {
        let arrived = s.arrived_in(*w);
        u64::from(n) >= MIN_UNANSWERED
            && arrived > 0
            && f64::from(n) / f64::from(arrived) >= MIN_BURST_SHARE
    })
}

struct Candidate<'a> {
    source: u16,
    server: Endpoint,
    s: &'a Server,
    unanswered: u64,
    pending: Vec<(u64, u64)>,
}

/// The finding, if any.
pub(crate) fn finish(t: &UdpServices, ctx: &Ctx<'_>) -> Option<Finding> {
    let mut by_server: FxMap<(u16, Endpoint), Vec<(u64, u64)>> = FxMap::default();
    for (&(source, server, _, _), &(pkt, ns)) in t.pending.iter() {
        let answered_later = t
            .servers
            .get(&(source, server))
            .is_some_and(|s| ns.saturating_add(s.max_latency_ns) < s.last_answered_arrival_ns);
        if answered_later {
            by_server
                .entry((source, server))
                .or_default()
                .push((pkt, ns));
        }
    }
    let mut cands: Vec<Candidate<'_>> = Vec::new();
    for (&(source, server), s) in t.servers.iter() {
        let local =
            ctx.locality.is_local(source, server.0) == Some(true) || t.socket_for(server).is_some();
        if !local || s.datagrams_out == 0 {
            continue;
        }
        let mut pending = by_server.remove(&(source, server)).unwrap_or_default();
        pending.sort_unstable();
        let unanswered = if s.dns {
            pending.len() as u64
        } else {
            s.datagrams_in.saturating_sub(s.datagrams_out)
        };
        if unanswered < MIN_UNANSWERED {
            continue;
        }
        if s.dns && !has_burst(s, &pending) {
            continue;
        }
        cands.push(Candidate {
            source,
            server,
            s,
            unanswered,
            pending,
        });
    }
    if cands.is_empty() {
        return None;
    }
    cands.sort_by(|a, b| {
        b.unanswered
            .cmp(&a.unanswered)
            .then(a.server.cmp(&b.server))
    });

    let rises: Vec<_> = ["Udp.RcvbufErrors", "Udp6.RcvbufErrors"]
        .iter()
        .filter_map(|k| ctx.counters.rise(NetnsRole::Pod, k))
        .collect();
    let pod_counters = ctx.counters.has(NetnsRole::Pod);
    if pod_counters && rises.is_empty() {
        // The kernel says no datagram was dropped at a socket here.
        return None;
    }
    let mut evidence = Evidence::default();
    let mut listeners = Vec::new();
    let mut flows = Vec::new();
    let mut bursts_ms = Vec::new();
    {
        let mut sink = EvidenceSink {
            out: &mut evidence.packets,
            total: &mut evidence.packets_total,
            cap: ctx.max_evidence,
        };
        for c in &cands {
            let what = if c.s.dns { "DNS queries" } else { "datagrams" };
            evidence.notes.push(format!(
                "{}: {} {what} in from {} client socket(s), {} answers out, {} never answered",
                endpoint_text(c.server),
                c.s.datagrams_in,
                c.s.clients,
                c.s.datagrams_out,
                c.unanswered
            ));
            // Bursts: unanswered queries per 100 ms window.
            let mut windows: Vec<(u64, u32)> = Vec::new();
            for &(_, ns) in &c.pending {
                let w = ns / BURST_NS;
                match windows.last_mut() {
                    Some((lw, n)) if *lw == w => *n += 1,
                    _ => windows.push((w, 1)),
                }
            }
            windows.sort_unstable();
            if let Some(max) = windows.iter().map(|w| w.1).max() {
                evidence.notes.push(format!(
                    "unanswered in bursts: {} window(s) of 100 ms with drops, up to {max} in one",
                    windows.len()
                ));
                bursts_ms.push(f64::from(max));
            }
            for &(pkt, _) in &c.pending {
                sink.push(
                    PacketRef {
                        source: c.source,
                        number: pkt,
                    },
                    format!("query to {} never answered", endpoint_text(c.server)),
                );
            }
            let sock = t.socket_for(c.server);
            if let Some(so) = sock {
                evidence.notes.push(format!(
                    "socket {}:{}: receive queue {} bytes of {} (SO_RCVBUF), {} datagrams dropped (sock_diag)",
                    so.addr,
                    so.port,
                    so.queued_bytes,
                    so.rcvbuf_bytes
                        .map_or("?".to_string(), |b| b.to_string()),
                    so.drops.map_or("?".to_string(), |d| d.to_string()),
                ));
            }
            listeners.push(ListenerRef {
                addr: c.server.0.to_string(),
                port: c.server.1,
                queued: None,
                backlog: None,
            });
            flows.push(format!("* -> {}/udp", endpoint_text(c.server)));
        }
    }
    if !bursts_ms.is_empty() {
        evidence.timings.push(Timing {
            what: "most unanswered datagrams in one 100 ms window (count, not ms)".to_string(),
            millis: bursts_ms,
        });
    }
    let (confidence, alternative) = if !rises.is_empty() {
        (Confidence::Confirmed, None)
    } else {
        (
            Confidence::Possible,
            Some(
                "replies lost after the server sent them, or queries lost before they reached it (e.g. the DNS conntrack race on the node); the server netns' Udp.RcvbufErrors settles it"
                    .to_string(),
            ),
        )
    };
    evidence.counters = rises;
    let top = &cands[0];
    let dns = top.s.dns;
    let summary = format!(
        "{} of {} {} to the local UDP server {} were never answered while later ones were{}",
        top.unanswered,
        top.s.datagrams_in,
        if dns { "DNS queries" } else { "datagrams" },
        endpoint_text(top.server),
        if confidence == Confidence::Confirmed {
            ": its socket receive buffer overflowed (Udp.RcvbufErrors rose)"
        } else {
            ", in bursts: consistent with a full socket receive buffer"
        }
    );
    let remedy = if dns {
        "Give the DNS server more room and capacity: a larger receive buffer (`SO_RCVBUF`; raise \
`net.core.rmem_max`/`net.core.rmem_default` in its netns so the request can take effect), more \
replicas (CoreDNS: scale the Deployment or use the dns-autoscaler), and NodeLocal DNSCache so \
each node answers its own pods' queries."
    } else {
        "Give the UDP server more room and capacity: a larger receive buffer (`SO_RCVBUF`; raise \
`net.core.rmem_max`/`net.core.rmem_default` in its netns), more reader threads or replicas, and \
rate-limit the senders."
    };
    Some(Finding {
        kind: Kind::UdpReceiveBufferOverflow,
        confidence,
        summary,
        flows,
        listeners,
        names: Vec::new(),
        evidence,
        remedy: remedy.to_string(),
        alternative,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str, p: u16) -> Endpoint {
        (s.parse().expect("ip"), p)
    }

    #[test]
    fn server_side_is_port_53_or_the_fixed_port() {
        let c = ep("10.0.0.1", 40000);
        let s = ep("10.0.0.2", 53);
        assert_eq!(UdpServices::server_of(c, s), Some((s, c, true)));
        assert_eq!(UdpServices::server_of(s, c), Some((s, c, false)));
        let n = ep("10.0.0.2", 123);
        assert_eq!(UdpServices::server_of(n, c), Some((n, c, false)));
        assert_eq!(UdpServices::server_of(ep("10.0.0.1", 123), n), None);
    }

    #[test]
    fn window_counts_include_the_open_window_and_keep_the_bound() {
        let mut s = Server::default();
        for w in [5, 5, 5, 6, 6, 5, 7] {
            s.count_arrival(w);
        }
        // 5 is counted across its two visits, 7 is still open.
        let counts: Vec<u32> = [5, 6, 7, 8].iter().map(|&w| s.arrived_in(w)).collect();
        assert_eq!(counts, [4, 2, 1, 0]);

        // A full map takes no new window, but still counts the ones it holds.
        let mut s = Server::default();
        for w in 0..MAX_WINDOWS as u64 {
            s.count_arrival(w);
        }
        let new = MAX_WINDOWS as u64;
        s.count_arrival(new);
        s.count_arrival(new);
        s.count_arrival(0);
        assert_eq!(s.arrived_in(new), 0);
        assert_eq!(s.arrived_in(0), 2);
        assert_eq!(s.arrived_in(new - 1), 1);
        assert!(s.windows.len() <= MAX_WINDOWS);
    }

    #[test]
    fn answered_queries_leave_nothing_pending() {
        let mut t = UdpServices::default();
        let c = ep("10.0.0.1", 40000);
        let s = ep("10.0.0.2", 53);
        t.on_datagram(0, c, s, Some((1, false)), 1, 10);
        t.on_datagram(0, c, s, Some((2, false)), 2, 20);
        t.on_datagram(0, s, c, Some((1, true)), 3, 30);
        assert_eq!(t.pending.len(), 1);
        assert!(t.pending.get(&(0, s, c, 2)).is_some());
        let srv = t.servers.get(&(0, s)).expect("server");
        assert_eq!(
            (srv.datagrams_in, srv.datagrams_out, srv.clients),
            (2, 1, 1)
        );
    }
}

#[cfg(test)]
mod lab_tests {
    use crate::testutil::{counters, finding, run};
    use crate::{Confidence, Kind, Moment, NetnsRole, UdpSocketQueue};

    fn with_rcvbuf_errors(a: &mut crate::Analyzer, before: u64, after: u64) {
        a.observe_counters(
            NetnsRole::Pod,
            Moment::Before,
            &counters(&[("Udp.RcvbufErrors", before), ("Udp6.RcvbufErrors", 0)]),
        );
        a.observe_counters(
            NetnsRole::Pod,
            Moment::After,
            &counters(&[("Udp.RcvbufErrors", after), ("Udp6.RcvbufErrors", 0)]),
        );
    }

    #[test]
    fn flooded_pod_dns_server_is_confirmed_by_rcvbuf_errors() {
        // The lab's counters: Udp.RcvbufErrors 0 -> 1416 in the pod.
        let r = run(&["udp_rcvbuf_overflow/pod.pcap"], |a| {
            with_rcvbuf_errors(a, 0, 1416);
            a.observe_udp_sockets(
                NetnsRole::Pod,
                &[
                    UdpSocketQueue::new("10.244.1.10".parse().expect("ip"), 53, 0)
                        .with_memory(4608, 1416),
                ],
            );
        });
        let f = finding(&r, Kind::UdpReceiveBufferOverflow).expect("found");
        assert_eq!(f.confidence, Confidence::Confirmed);
        assert_eq!(f.listeners[0].addr, "10.244.1.10");
        assert_eq!(f.listeners[0].port, 53);
        assert!(f.summary.contains("804 of 1500"), "{}", f.summary);
        let notes = f.evidence.notes.join("\n");
        assert!(
            notes.contains("4608 (SO_RCVBUF), 1416 datagrams dropped"),
            "{notes}"
        );
        assert!(notes.contains("in bursts"), "{notes}");
        assert!(f.evidence.packets.len() <= 64 && f.evidence.packets_total == 804);
        assert_eq!(r.kinds(), [Kind::UdpReceiveBufferOverflow]);
    }

    #[test]
    fn without_counters_possible_and_with_flat_counters_nothing() {
        let r = run(&["udp_rcvbuf_overflow/pod.pcap"], |_| {});
        let f = finding(&r, Kind::UdpReceiveBufferOverflow).expect("found");
        assert_eq!(f.confidence, Confidence::Possible);
        assert!(
            f.alternative
                .as_deref()
                .unwrap_or("")
                .contains("conntrack race")
        );
        // The kernel says no datagram was dropped at a socket: another cause.
        let r = run(&["udp_rcvbuf_overflow/pod.pcap"], |a| {
            with_rcvbuf_errors(a, 7, 7)
        });
        assert!(finding(&r, Kind::UdpReceiveBufferOverflow).is_none());
    }

    #[test]
    fn answered_server_and_lost_reply_client_are_not_overflows() {
        for f in [
            "healthy_udp_dns/pod.pcap",
            "dns_lost_reply/pod.pcap",
            "musl_dns_lost_reply/pod.pcap",
            "dns_ndots/pod.pcap",
        ] {
            let r = run(&[f], |_| {});
            assert!(finding(&r, Kind::UdpReceiveBufferOverflow).is_none(), "{f}");
        }
    }
}

impl UdpServices {
    /// Most heap bytes the tracker holds from packets: every server with every window,
    /// every client socket and every unanswered query at its cap (the kernel's socket
    /// list, given by the caller, aside). Most of it is the per-server windows.
    pub(crate) fn bytes_bound() -> usize {
        use crate::bounds::map_bytes;
        DenseMap::<(u16, Endpoint), Server>::bytes_bound(MAX_SERVERS)
            + MAX_SERVERS * map_bytes::<u64, u32>(MAX_WINDOWS)
            + DenseMap::<(u16, Endpoint, Endpoint), ()>::bytes_bound(MAX_PENDING)
            + DenseMap::<(u16, Endpoint, Endpoint, u16), (u64, u64)>::bytes_bound(MAX_PENDING)
    }
}
