//! Overlay networks seen from a node's uplink: which pod packets travelled inside which
//! tunnel (`tcpdump -v` on `eth0` of a flannel, Calico or Cilium node), and the
//! encrypted overlays whose pod packets cannot be seen at all.
//!
//! The analyzer keys flows, DNS transactions and findings by the inner (pod) addresses;
//! this book remembers, per inner address pair, the outer (node) addresses and the
//! tunnel's identifier, so a finding's flow reads
//! `10.244.1.10:40312 -> 10.96.0.10:53/udp (inside VXLAN 192.168.1.5 → 192.168.1.6, VNI 1)`.
//! Bounded: at most `MAX_PAIRS` address pairs are remembered; later pairs are annotated
//! only if already known.

use crate::flow::FxMap;
use netdiag_wire::{Tunnel, TunnelKind};
use std::net::{IpAddr, SocketAddr};

/// Most inner address pairs remembered.
const MAX_PAIRS: usize = 4096;
/// Most inner addresses remembered as "behind a tunnel".
const MAX_PODS: usize = 8192;
/// WireGuard's default UDP port (Calico, Cilium and flannel's WireGuard backends).
pub(crate) const WIREGUARD_PORT: u16 = 51820;

/// The outer side of one tunnel, as first seen for an inner address pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OuterSeen {
    kind: TunnelKind,
    src: IpAddr,
    dst: IpAddr,
    vni: Option<u32>,
    key: Option<u32>,
}

impl OuterSeen {
    fn text(&self, reversed: bool) -> String {
        let (s, d) = if reversed {
            (self.dst, self.src)
        } else {
            (self.src, self.dst)
        };
        let id = match (self.vni, self.key) {
            (Some(v), _) => format!(", VNI {v}"),
            (None, Some(k)) => format!(", key {k}"),
            _ => String::new(),
        };
        format!("inside {} {s} → {d}{id}", self.kind)
    }
}

/// What the analyzer learnt about tunnels and encrypted overlays.
#[derive(Default)]
pub(crate) struct Overlay {
    pairs: FxMap<(IpAddr, IpAddr), OuterSeen>,
    pods: FxMap<(u16, IpAddr), ()>,
    /// Packets whose analyzed part was inside a tunnel, per kind.
    pub(crate) tunneled: FxMap<TunnelKind, u64>,
    /// IPsec ESP packets (IP protocol 50), opaque.
    pub(crate) esp: u64,
    /// WireGuard packets (UDP 51820), opaque.
    pub(crate) wireguard: u64,
}

impl Overlay {
    /// One packet whose inner addresses `src → dst` travelled inside `t`.
    #[inline]
    pub(crate) fn observe(&mut self, source: u16, t: &Tunnel<'_>, src: IpAddr, dst: IpAddr) {
        *self.tunneled.entry(t.kind).or_insert(0) += 1;
        if !self.pairs.contains_key(&(src, dst))
            && !self.pairs.contains_key(&(dst, src))
            && self.pairs.len() < MAX_PAIRS
        {
            self.pairs.insert(
                (src, dst),
                OuterSeen {
                    kind: t.kind,
                    src: t.outer_src,
                    dst: t.outer_dst,
                    vni: t.vni,
                    key: t.key,
                },
            );
        }
        for ip in [src, dst] {
            if self.pods.len() < MAX_PODS {
                self.pods.insert((source, ip), ());
            }
        }
    }

    /// Whether `ip` was seen inside a tunnel on this source: a pod address of the overlay.
    /// Pod-to-pod overlay traffic is not SNATed, so a listener there that drops SYNs is
    /// the pod's own.
    pub(crate) fn is_pod(&self, source: u16, ip: IpAddr) -> bool {
        self.pods.contains_key(&(source, ip))
    }

    /// Whether any packet was inside a tunnel.
    pub(crate) fn any(&self) -> bool {
        !self.tunneled.is_empty()
    }

    /// `"(inside VXLAN a → b, VNI 1)"` for the pair `client → server`, if it was seen.
    pub(crate) fn describe(&self, client: IpAddr, server: IpAddr) -> Option<String> {
        if let Some(o) = self.pairs.get(&(client, server)) {
            return Some(o.text(false));
        }
        self.pairs.get(&(server, client)).map(|o| o.text(true))
    }

    /// Appends the tunnel to a flow text `a:p -> b:q/proto…` when its pair was seen.
    pub(crate) fn annotate_flow(&self, flow: &str) -> Option<String> {
        let (a, rest) = flow.split_once(" -> ")?;
        let b = rest.split('/').next()?;
        let a: SocketAddr = a.parse().ok()?;
        let b: SocketAddr = b.parse().ok()?;
        let d = self.describe(a.ip(), b.ip())?;
        Some(format!("{flow} ({d})"))
    }

    /// The report's note on tunnels, e.g. `1234 packet(s) analyzed inside tunnels: VXLAN 1200, GRE 34`.
    pub(crate) fn note(&self) -> Option<String> {
        if self.tunneled.is_empty() {
            return None;
        }
        let mut kinds: Vec<(&'static str, u64)> = self
            .tunneled
            .iter()
            .map(|(k, n)| (k.as_str(), *n))
            .collect();
        kinds.sort();
        let total: u64 = kinds.iter().map(|(_, n)| n).sum();
        let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        Some(format!(
            "{total} packet(s) analyzed by their inner (pod) addresses, inside tunnels: {}",
            list.join(", ")
        ))
    }

    /// The report's limit on encrypted overlays, once, with the packet count.
    pub(crate) fn encrypted_limit(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.wireguard > 0 {
            parts.push(format!(
                "{} WireGuard (UDP {WIREGUARD_PORT})",
                self.wireguard
            ));
        }
        if self.esp > 0 {
            parts.push(format!("{} IPsec ESP", self.esp));
        }
        if parts.is_empty() {
            return None;
        }
        Some(format!(
            "encrypted overlay: {} packet(s) cannot be analyzed (the pod traffic inside is encrypted); capture inside the pod or on the pod's veth instead",
            parts.join(" and ")
        ))
    }
}

impl Overlay {
    /// Most heap bytes: every address pair and pod address at its cap (tunnel kinds are
    /// a handful).
    pub(crate) fn bytes_bound() -> usize {
        crate::bounds::map_bytes::<(IpAddr, IpAddr), OuterSeen>(MAX_PAIRS)
            + crate::bounds::map_bytes::<(u16, IpAddr), ()>(MAX_PODS)
            + crate::bounds::map_bytes::<TunnelKind, u64>(64)
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{finding, packets, run};
    use crate::{Analyzer, Config, Kind};

    #[test]
    fn underlay_findings_name_pods_and_nodes() {
        let r = run(&["overlay/accept_overflow-underlay.pcap"], |_| {});
        let f = finding(&r, Kind::AcceptQueueOverflow).expect("accept overflow");
        assert!(
            f.flows.iter().all(|fl| fl.starts_with("10.244.1.10:")
                && fl.ends_with(
                    "-> 10.244.2.10:8080/tcp (inside VXLAN 192.168.1.5 → 192.168.1.6, VNI 1)"
                )),
            "{:?}",
            f.flows
        );
        assert!(
            f.evidence
                .notes
                .iter()
                .any(|n| n.contains("inside tunnels: VXLAN"))
        );
    }

    #[test]
    fn ndots_over_tcp_inside_ip_in_ip() {
        let r = run(&["overlay/dns_ndots_tcp-underlay-ipip.pcap"], |_| {});
        let f = finding(&r, Kind::DnsNdotsAmplification).expect("ndots");
        assert!(
            f.flows
                .iter()
                .any(|fl| fl.contains(":53/tcp (inside IP-in-IP 192.168.1.5")),
            "{:?}",
            f.flows
        );
        assert_eq!(r.dns.queries_sent, 8);
    }

    #[test]
    fn a_truncated_answer_and_its_tcp_retry_are_one_lookup() {
        let r = run(&["overlay/dns_truncated_retry-pod.pcap"], |_| {});
        assert_eq!((r.dns.queries_sent, r.dns.responses), (2, 2));
        assert_eq!(r.dns.logical_lookups, 1);
        assert_eq!(r.dns.unanswered, 0);
        assert!(r.findings.is_empty());
    }

    /// A WireGuard datagram and an ESP packet: the UDP header of the first DNS query of
    /// `dns_ndots/pod.pcap` with its ports set to 51820, and the same packet with IP
    /// protocol 50.
    #[test]
    fn encrypted_overlays_are_one_limit_line_with_counts() {
        let pkts = packets("dns_ndots/pod.pcap");
        let (ts, link, q) = pkts
            .iter()
            .find(|(_, _, b)| b.len() > 42 && b[23] == 17 && b[36..38] == [0, 53])
            .expect("a DNS query");
        let mut wg = q.clone();
        wg[34..36].copy_from_slice(&51820u16.to_be_bytes());
        wg[36..38].copy_from_slice(&51820u16.to_be_bytes());
        let mut esp = q.clone();
        esp[23] = 50;
        let mut a = Analyzer::new(Config::default());
        for _ in 0..3 {
            a.feed(*ts, *link, &wg);
        }
        a.feed(*ts, *link, &esp);
        let r = a.finish();
        let lines: Vec<&String> = r
            .limits
            .iter()
            .filter(|l| l.contains("encrypted"))
            .collect();
        assert_eq!(lines.len(), 1, "{:?}", r.limits);
        assert!(
            lines[0].contains("3 WireGuard (UDP 51820) and 1 IPsec ESP"),
            "{}",
            lines[0]
        );
    }
}
