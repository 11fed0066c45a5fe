//! What happened to connection attempts, per destination `ip:port` (per capture source),
//! and which end of the capture is "here".
//!
//! Shared by the accept-queue and SNAT detectors: both start from SYNs that got no
//! SYN-ACK while other attempts to the same destination did; which diagnosis applies
//! depends on whether the listener is local (in the pod) or remote.

use crate::flow::{DenseKey, DenseMap, Endpoint, FlowKey, FxHasher, FxMap, Side};
use crate::model::PacketRef;
use crate::tcp::TcpConn;
use std::collections::hash_map::Entry;
use std::hash::Hasher as _;
use std::net::IpAddr;

/// Evidence packets kept per destination.
const PKTS_PER_DEST: usize = 24;
/// Flows named per destination.
const FLOWS_PER_DEST: usize = 12;

/// Attempts to one destination.
#[derive(Clone, Debug, Default)]
pub(crate) struct DestStats {
    /// Attempts that got a SYN-ACK.
    pub(crate) answered: u64,
    pub(crate) first_answered_ns: Option<u64>,
    /// Attempts whose SYN was retransmitted and never answered.
    pub(crate) unanswered: u64,
    /// Of those, the ones whose SYNs continued after an earlier attempt was answered.
    pub(crate) unanswered_after_success: u64,
    /// SYN retransmissions of unanswered attempts.
    pub(crate) syn_retransmissions: u64,
    /// First and last SYN of the unanswered attempts (packet time, ns).
    pub(crate) unanswered_span: Option<(u64, u64)>,
    /// Connections where the server re-sent its SYN-ACK after the final ACK and never
    /// acknowledged the client's data (the final ACK was dropped: accept queue full).
    pub(crate) final_ack_dropped: u64,
    /// Handshakes left half-open: SYN-ACK re-sent, no final ACK ever seen (the
    /// connection sat in the listener's SYN queue).
    pub(crate) half_open: u64,
    pub(crate) packets: Vec<(PacketRef, &'static str)>,
    pub(crate) flows: Vec<(Endpoint, Endpoint)>,
    pub(crate) gaps_ms: Vec<f64>,
    pub(crate) client_ips: Vec<IpAddr>,
}

/// What became of a closed connection's attempt ([`Destinations::on_closed`]).
#[derive(Clone, Copy)]
struct Outcome {
    unanswered: bool,
    dropped: bool,
    half_open: bool,
}

/// Per-destination bookkeeping, bounded.
pub(crate) struct Destinations {
    cap: usize,
    pub(crate) map: FxMap<(u16, Endpoint), DestStats>,
    pub(crate) not_tracked: u64,
    /// The sum of every destination's `final_ack_dropped`.
    pub(crate) final_acks_dropped: u64,
}

impl Destinations {
    pub(crate) fn new(cap: usize) -> Self {
        Destinations {
            cap: cap.max(1),
            map: FxMap::default(),
            not_tracked: 0,
            final_acks_dropped: 0,
        }
    }

    fn entry(&mut self, source: u16, server: Endpoint) -> Option<&mut DestStats> {
        let full = self.map.len() >= self.cap;
        match self.map.entry((source, server)) {
            Entry::Occupied(o) => Some(o.into_mut()),
            Entry::Vacant(_) if full => {
                self.not_tracked += 1;
                None
            }
            Entry::Vacant(v) => Some(v.insert(DestStats::default())),
        }
    }

    /// Most heap bytes with room for `cap` destinations, every list at its cap.
    pub(crate) fn bytes_bound(cap: usize) -> usize {
        use crate::bounds::{map_bytes, vec_bytes};
        let cap = cap.max(1);
        let per_dest = vec_bytes::<(PacketRef, &'static str)>(PKTS_PER_DEST)
            + vec_bytes::<(Endpoint, Endpoint)>(FLOWS_PER_DEST)
            + vec_bytes::<IpAddr>(8)
            + vec_bytes::<f64>(crate::tcp::SYN_SLOTS);
        map_bytes::<(u16, Endpoint), DestStats>(cap) + cap * per_dest
    }

    /// The first SYN-ACK of an attempt to `server`.
    pub(crate) fn on_answered(&mut self, source: u16, server: Endpoint, ns: u64) {
        if let Some(d) = self.entry(source, server) {
            d.answered += 1;
            if d.first_answered_ns.is_none() {
                d.first_answered_ns = Some(ns);
            }
        }
    }

    /// What [`Destinations::on_closed`] records of `conn`, if anything: its client's
    /// side and whether the attempt went unanswered, lost its final ACK, or was left
    /// half-open. Most connections are none of these.
    #[inline]
    fn outcome(conn: &TcpConn) -> Option<(Side, Outcome)> {
        let client = conn.client?;
        let o = Outcome {
            unanswered: conn.unanswered_retransmitted_syn(),
            dropped: conn.final_ack_dropped(),
            half_open: conn.half_open(),
        };
        (o.unanswered || o.dropped || o.half_open).then_some((client, o))
    }

    /// Whether [`Destinations::on_closed`] records anything of `conn`.
    #[inline]
    pub(crate) fn records(conn: &TcpConn) -> bool {
        Destinations::outcome(conn).is_some()
    }

    /// A connection left the flow table (or the capture ended): record its outcome.
    pub(crate) fn on_closed(&mut self, key: &FlowKey, conn: &TcpConn) {
        let Some((
            client,
            Outcome {
                unanswered,
                dropped,
                half_open,
            },
        )) = Destinations::outcome(conn)
        else {
            return;
        };
        let server = key.endpoint(client.other());
        let client_ep = key.endpoint(client);
        let source = key.source;
        let Some(d) = self.entry(source, server) else {
            return;
        };
        let pref = |number| PacketRef { source, number };
        if unanswered {
            d.unanswered += 1;
            d.syn_retransmissions += u64::from(conn.syn_count.saturating_sub(1));
            let (syn_ns, syn_pkts) = (conn.syn_ns(), conn.syn_pkts());
            let n = usize::from(conn.syn_count).min(syn_ns.len());
            let last_syn = syn_ns[..n].last().copied().unwrap_or(0);
            let first_syn = syn_ns[..n].first().copied().unwrap_or(0);
            d.unanswered_span = Some(match d.unanswered_span {
                Some((a, b)) => (a.min(first_syn), b.max(last_syn)),
                None => (first_syn, last_syn),
            });
            if d.first_answered_ns.is_some_and(|a| a < last_syn) {
                d.unanswered_after_success += 1;
            }
            if d.gaps_ms.is_empty() {
                d.gaps_ms = conn.syn_gaps_ms();
            }
            for (i, &p) in syn_pkts[..n].iter().enumerate() {
                if d.packets.len() < PKTS_PER_DEST {
                    let role = if i == 0 {
                        "SYN never answered by a SYN-ACK"
                    } else {
                        "SYN retransmitted, still no SYN-ACK"
                    };
                    d.packets.push((pref(p), role));
                }
            }
        }
        if dropped {
            d.final_ack_dropped += 1;
            let again = conn.synack_after_ack_pkts();
            let k = usize::from(conn.synack_after_ack).min(again.len());
            if d.packets.len() < PKTS_PER_DEST && conn.final_ack_pkt > 0 {
                d.packets.push((
                    pref(conn.final_ack_pkt),
                    "final ACK of the handshake (dropped by the full queue)",
                ));
            }
            for &p in &again[..k] {
                if d.packets.len() < PKTS_PER_DEST {
                    d.packets
                        .push((pref(p), "SYN-ACK re-sent after the handshake completed"));
                }
            }
            if conn.client_data_pkt > 0 && d.packets.len() < PKTS_PER_DEST {
                d.packets
                    .push((pref(conn.client_data_pkt), "client data never acknowledged"));
            }
        }
        if half_open {
            d.half_open += 1;
            if d.packets.len() < PKTS_PER_DEST {
                d.packets.push((
                    pref(conn.synack_first_pkt),
                    "SYN-ACK of a handshake never completed (half-open, in the SYN queue)",
                ));
            }
        }
        if d.flows.len() < FLOWS_PER_DEST {
            d.flows.push((client_ep, server));
        }
        if d.client_ips.len() < 8 && !d.client_ips.contains(&client_ep.0) {
            d.client_ips.push(client_ep.0);
        }
        if dropped {
            self.final_acks_dropped += 1;
        }
    }
}

/// Which addresses send with an initial TTL (their packets were not routed before the
/// capture point: the capturing host, i.e. the pod) and which with a decremented one.
pub(crate) struct Locality {
    cap: usize,
    /// Looked up for every packet and never iterated: a [`DenseMap`].
    map: DenseMap<(u16, IpAddr), [u32; 2]>,
}

/// An address of one capture source.
impl DenseKey for (u16, IpAddr) {
    #[inline]
    fn dense_hash(&self) -> u32 {
        let mut h = FxHasher::default();
        match self.1 {
            IpAddr::V4(v) => h.add(u64::from(self.0) << 32 | u64::from(u32::from(v))),
            IpAddr::V6(v) => {
                let w = u128::from(v);
                h.add(u64::from(self.0) | 1 << 16);
                h.add(w as u64);
                h.add((w >> 64) as u64);
            }
        }
        h.finish() as u32
    }
}

/// TTL / hop-limit values operating systems start with.
fn is_initial_ttl(ttl: u8) -> bool {
    matches!(ttl, 64 | 128 | 255)
}

impl Locality {
    pub(crate) fn new(cap: usize) -> Self {
        Locality {
            cap: cap.max(1),
            map: DenseMap::default(),
        }
    }

    /// Counts a packet from `src` sent with `ttl`; whether the address is counted in
    /// that TTL class now (false: new, and the table is full). Entries are never
    /// removed and only whether a count is zero is ever read, so once this returned
    /// true for an address and class, more packets of them change nothing.
    #[inline]
    pub(crate) fn observe(&mut self, source: u16, src: IpAddr, ttl: u8) -> bool {
        let k = (source, src);
        let i = usize::from(!is_initial_ttl(ttl));
        if let Some(c) = self.map.get_mut(&k) {
            c[i] = c[i].saturating_add(1);
            true
        } else if self.map.len() < self.cap {
            let mut c = [0u32; 2];
            c[i] = 1;
            self.map.insert_absent(k, c);
            true
        } else {
            false
        }
    }

    /// A distinct bit for each (flow side 0 or 1, TTL class of `ttl`).
    #[inline]
    pub(crate) fn class_bit(side: usize, ttl: u8) -> u8 {
        1 << (2 * (side & 1) + usize::from(!is_initial_ttl(ttl)))
    }

    /// Addresses held now.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Most heap bytes with room for `cap` addresses.
    pub(crate) fn bytes_bound(cap: usize) -> usize {
        DenseMap::<(u16, IpAddr), [u32; 2]>::bytes_bound(cap.max(1))
    }

    /// `Some(true)`: every packet from `ip` had an initial TTL (sent from here);
    /// `Some(false)`: none had (routed to here); `None`: mixed or unseen.
    pub(crate) fn is_local(&self, source: u16, ip: IpAddr) -> Option<bool> {
        let [initial, routed] = *self.map.get(&(source, ip))?;
        match (initial, routed) {
            (0, 0) => None,
            (_, 0) => Some(true),
            (0, _) => Some(false),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A connection whose final ACK was dropped (the server re-sent its SYN-ACK after the
    /// client's ACK), from `client_port` to `server`.
    fn dropped_final_ack(client_port: u16, server: Endpoint) -> (FlowKey, TcpConn) {
        let client: Endpoint = ("10.0.0.1".parse().unwrap(), client_port);
        let (key, side) = FlowKey::new(0, 6, client, server);
        let mut conn = TcpConn::default();
        conn.client = Some(side);
        conn.established = true;
        conn.synack_after_ack = 1;
        assert!(conn.final_ack_dropped());
        (key, conn)
    }

    /// The running sum a snapshot reads equals the per-destination counts it stands
    /// for, also when the table is full and a destination is not tracked.
    #[test]
    fn the_running_sum_of_dropped_final_acks_is_the_sum_of_the_destinations() {
        let mut d = Destinations::new(2);
        let servers: Vec<Endpoint> = (1..=3)
            .map(|i| (format!("10.96.0.{i}").parse().unwrap(), 80))
            .collect();
        for (i, &server) in servers.iter().cycle().take(7).enumerate() {
            let (key, conn) = dropped_final_ack(40_000 + i as u16, server);
            d.on_closed(&key, &conn);
        }
        let sum: u64 = d.map.values().map(|s| s.final_ack_dropped).sum();
        assert_eq!(d.map.len(), 2);
        assert_eq!(d.not_tracked, 2, "the third server's two connections");
        assert_eq!(sum, 5);
        assert_eq!(d.final_acks_dropped, sum);
    }
}
