//! Connection events for the detectors of issue 13, recorded while feeding: who closed a
//! connection first (its port then waits in TIME_WAIT), connection attempts answered by a
//! RST, and connections that went quiet and were reset or ignored when they resumed.
//!
//! The analyzer calls [`ConnEvents::before`] and [`ConnEvents::after`] around every TCP
//! segment and [`ConnEvents::on_closed`] when a flow leaves the table. Everything is
//! bounded: per-destination maps stop growing at their cap, evidence lists are short.

use crate::flow::{Endpoint, FlowKey, FxMap, Side};
use crate::model::PacketRef;
use crate::tcp::{RstOrigin, SegKind, TcpConn, TcpOutcome, TcpState};
use netdiag_wire::TcpSegment;
use std::collections::hash_map::Entry;
use std::net::IpAddr;

/// A connection silent for at least this long (packet time) that resumes is watched for
/// a RST or for its data going unanswered. Shorter pauses are ordinary think time.
pub(crate) const IDLE_FLOOR_NS: u64 = 5_000_000_000;

/// How long a closed port stays in TIME_WAIT on Linux (`TCP_TIMEWAIT_LEN`, fixed 60 s).
pub(crate) const TIME_WAIT_S: usize = 60;

const MAX_DESTS: usize = 16_384;
const MAX_DORMANT: usize = 8_192;
const MAX_PENDING: usize = 1_024;
const MAX_IDLE_EVENTS: usize = 64;
const PKTS_PER_DEST: usize = 12;
const FLOWS_PER_DEST: usize = 8;

/// Connections to one destination closed by their client first.
#[derive(Clone, Debug)]
pub(crate) struct CloseStats {
    /// Connections whose client sent the first FIN (its port goes to TIME_WAIT).
    pub(crate) closes: u64,
    /// Client data segments those connections carried.
    pub(crate) data_segments: u64,
    /// Most client-first closes within any 60 s: ports held in TIME_WAIT at once.
    pub(crate) peak_60s: u32,
    ring: [u32; TIME_WAIT_S],
    ring_sec: u64,
    /// The sum of `ring`, kept as it changes (not summed over the ring per close).
    ring_sum: u64,
    pub(crate) packets: Vec<(PacketRef, &'static str)>,
    pub(crate) flows: Vec<(Endpoint, Endpoint)>,
    pub(crate) client_ips: Vec<IpAddr>,
}

impl Default for CloseStats {
    fn default() -> Self {
        CloseStats {
            closes: 0,
            data_segments: 0,
            peak_60s: 0,
            ring: [0; TIME_WAIT_S],
            ring_sec: 0,
            ring_sum: 0,
            packets: Vec::new(),
            flows: Vec::new(),
            client_ips: Vec::new(),
        }
    }
}

impl CloseStats {
    fn add(&mut self, ns: u64) {
        let sec = ns / 1_000_000_000;
        if sec > self.ring_sec {
            let steps = (sec - self.ring_sec).min(TIME_WAIT_S as u64);
            for i in 1..=steps {
                let slot = &mut self.ring[((self.ring_sec + i) % TIME_WAIT_S as u64) as usize];
                self.ring_sum = self.ring_sum.saturating_sub(u64::from(*slot));
                *slot = 0;
            }
            self.ring_sec = sec;
        }
        if self.ring_sec - sec < TIME_WAIT_S as u64 {
            let slot = &mut self.ring[(sec % TIME_WAIT_S as u64) as usize];
            let was = *slot;
            *slot = slot.saturating_add(1);
            self.ring_sum += u64::from(slot.saturating_sub(was));
        }
        // What a saturating sum over the ring gives: the exact sum, capped.
        let now = u32::try_from(self.ring_sum).unwrap_or(u32::MAX);
        self.peak_60s = self.peak_60s.max(now);
    }
}

/// Connection attempts to one destination answered by a RST.
#[derive(Clone, Debug, Default)]
pub(crate) struct RefusedStats {
    pub(crate) attempts: u64,
    pub(crate) first_ns: u64,
    pub(crate) last_ns: u64,
    pub(crate) packets: Vec<(PacketRef, &'static str)>,
    pub(crate) flows: Vec<(Endpoint, Endpoint)>,
    pub(crate) client_ips: Vec<IpAddr>,
}

/// How a resumed connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdleAnswer {
    /// The other side answered the resumed data with this RST.
    Reset(u64),
    /// The resumed data was retransmitted this many times and never acknowledged.
    Silent(u32),
}

/// A connection that resumed after a long silence and was reset or ignored.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdleEvent {
    pub(crate) key: FlowKey,
    /// Who sent the resumed data.
    pub(crate) from: Side,
    pub(crate) gap_ns: u64,
    pub(crate) resume_pkt: u64,
    pub(crate) answer: IdleAnswer,
    /// The flow was first seen mid-stream after the table had closed it for idleness.
    pub(crate) across_eviction: bool,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    from: Side,
    gap_ns: u64,
    pkt: u64,
    end_seq: u32,
    retrans: u32,
    across_eviction: bool,
}

/// The flow before a segment.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Before {
    last_ns: Option<u64>,
    fin: [bool; 2],
    open: bool,
}

/// All of it.
#[derive(Default)]
pub(crate) struct ConnEvents {
    pub(crate) refused: FxMap<(u16, Endpoint), RefusedStats>,
    pub(crate) idle: Vec<IdleEvent>,
    pub(crate) idle_count: u64,
    dormant: FxMap<FlowKey, u64>,
    pending: FxMap<FlowKey, Pending>,
    pub(crate) not_tracked: u64,
}

/// A connection's first FIN, sent by its client ([`ConnEvents::client_fin`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientFin {
    pub(crate) source: u16,
    pub(crate) client: Endpoint,
    pub(crate) server: Endpoint,
    /// Data segments the client sent on the connection.
    pub(crate) data_segments: u32,
}

/// Connections closed by their client first, per destination, bounded like the maps of
/// [`ConnEvents`]. Only the detectors read it, in `finish`: it is kept on the DNS
/// stage's side (`crate::dnsstage`), off the packet path.
#[derive(Default)]
pub(crate) struct Closes {
    pub(crate) map: FxMap<(u16, Endpoint), CloseStats>,
    /// Closes to destinations beyond the cap.
    pub(crate) not_tracked: u64,
}

impl Closes {
    /// The client's first FIN (packet `pkt` at `ns`).
    pub(crate) fn on_client_fin(&mut self, fin: &ClientFin, pkt: u64, ns: u64) {
        let (client, server) = (fin.client, fin.server);
        let Some(c) = bounded(&mut self.map, (fin.source, server), &mut self.not_tracked) else {
            return;
        };
        c.closes += 1;
        c.data_segments += u64::from(fin.data_segments);
        c.add(ns);
        if c.packets.len() < PKTS_PER_DEST {
            c.packets.push((
                PacketRef {
                    source: fin.source,
                    number: pkt,
                },
                "FIN from the client first: its port goes to TIME_WAIT",
            ));
        }
        if c.flows.len() < FLOWS_PER_DEST {
            c.flows.push((client, server));
        }
        if c.client_ips.len() < 8 && !c.client_ips.contains(&client.0) {
            c.client_ips.push(client.0);
        }
    }

    /// Most destinations held.
    pub(crate) fn fill_cap() -> usize {
        MAX_DESTS
    }

    /// Most heap bytes, every list at its cap.
    pub(crate) fn bytes_bound() -> usize {
        use crate::bounds::map_bytes;
        map_bytes::<(u16, Endpoint), CloseStats>(MAX_DESTS) + MAX_DESTS * dest_lists_bytes()
    }
}

/// Heap bytes of one destination's evidence lists at their caps.
fn dest_lists_bytes() -> usize {
    use crate::bounds::vec_bytes;
    vec_bytes::<(PacketRef, &'static str)>(PKTS_PER_DEST)
        + vec_bytes::<(Endpoint, Endpoint)>(FLOWS_PER_DEST)
        + vec_bytes::<IpAddr>(8)
}

fn seq_ge(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

fn bounded<'a, V: Default>(
    map: &'a mut FxMap<(u16, Endpoint), V>,
    key: (u16, Endpoint),
    not_tracked: &mut u64,
) -> Option<&'a mut V> {
    // One hash and one probe: the entry, filled only when new and there is room.
    let full = map.len() >= MAX_DESTS;
    match map.entry(key) {
        Entry::Occupied(o) => Some(o.into_mut()),
        Entry::Vacant(_) if full => {
            *not_tracked += 1;
            None
        }
        Entry::Vacant(v) => Some(v.insert(V::default())),
    }
}

impl ConnEvents {
    /// What the flow looked like before this segment.
    #[inline]
    pub(crate) fn before(conn: &TcpConn) -> Before {
        let h = &conn.half;
        let last_ns = match (h[0].seen, h[1].seen) {
            (true, true) => Some(h[0].last_ns.max(h[1].last_ns)),
            (true, false) => Some(h[0].last_ns),
            (false, true) => Some(h[1].last_ns),
            (false, false) => None,
        };
        Before {
            last_ns,
            fin: [h[0].fin, h[1].fin],
            open: h[0].seen && h[1].seen && conn.state != TcpState::Reset,
        }
    }

    /// The client's first FIN, if `seg` from `side` is one (`before`: the connection
    /// before it): its port waits in TIME_WAIT. For [`Closes`], which is kept apart from
    /// the rest because nothing reads it while packets come in.
    #[inline]
    pub(crate) fn client_fin(
        key: &FlowKey,
        side: Side,
        seg: &TcpSegment<'_>,
        conn: &TcpConn,
        before: Before,
    ) -> Option<ClientFin> {
        (seg.flags.fin() && !before.fin[0] && !before.fin[1] && conn.client == Some(side)).then(
            || ClientFin {
                source: key.source,
                client: key.endpoint(side),
                server: key.endpoint(side.other()),
                data_segments: conn.client_data,
            },
        )
    }

    /// After `seg` from `side` updated `conn` (`created`: the flow is new in the table).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn after(
        &mut self,
        key: FlowKey,
        side: Side,
        seg: &TcpSegment<'_>,
        conn: &TcpConn,
        before: Before,
        out: &TcpOutcome,
        pkt: u64,
        ns: u64,
        created: bool,
    ) {
        let f = seg.flags;
        let pref = |number| PacketRef {
            source: key.source,
            number,
        };
        // A connection attempt answered by RST.
        if let (Some((RstOrigin::Server, SegKind::Syn)), Some(client)) = (out.rst, conn.client) {
            if !conn.established && conn.synack_count == 0 {
                let client_ep = key.endpoint(client);
                let server = key.endpoint(client.other());
                if let Some(r) = bounded(
                    &mut self.refused,
                    (key.source, server),
                    &mut self.not_tracked,
                ) {
                    if r.attempts == 0 {
                        r.first_ns = ns;
                    }
                    r.attempts += 1;
                    r.last_ns = ns;
                    if r.packets.len() + 1 < PKTS_PER_DEST {
                        let first_syn = conn.syn_pkts()[0];
                        if conn.syn_count > 0 && first_syn > 0 {
                            r.packets
                                .push((pref(first_syn), "SYN (connection attempt)"));
                        }
                        r.packets
                            .push((pref(pkt), "RST answering the SYN: nothing listens there"));
                    }
                    if r.flows.len() < FLOWS_PER_DEST {
                        r.flows.push((client_ep, server));
                    }
                    if r.client_ips.len() < 8 && !r.client_ips.contains(&client_ep.0) {
                        r.client_ips.push(client_ep.0);
                    }
                }
            }
        }
        // Idle, then resumed.
        if let Some(p) = (!self.pending.is_empty() && !created)
            .then(|| self.pending.get_mut(&key))
            .flatten()
        {
            if side != p.from {
                if f.fin() {
                    // The peer closed the idle connection itself (a server's keep-alive
                    // timeout racing the resumed request): not a lost NAT entry.
                    self.pending.remove(&key);
                } else if f.rst() {
                    let p = *p;
                    self.pending.remove(&key);
                    self.record_idle(key, p, IdleAnswer::Reset(pkt));
                } else if f.ack() && seq_ge(seg.ack, p.end_seq) {
                    self.pending.remove(&key);
                }
            } else if seg.payload_len > 0 && out.retransmission {
                p.retrans = p.retrans.saturating_add(1);
            }
            return;
        }
        if f.syn() || f.rst() || seg.payload_len == 0 {
            return;
        }
        let resumed = if created {
            if self.dormant.is_empty() {
                return;
            }
            self.dormant
                .remove(&key)
                .map(|last| (ns.saturating_sub(last), true))
        } else {
            before
                .last_ns
                .filter(|_| before.open && !before.fin[0] && !before.fin[1])
                .map(|last| (ns.saturating_sub(last), false))
        };
        if let Some((gap_ns, across_eviction)) = resumed {
            if gap_ns >= IDLE_FLOOR_NS && self.pending.len() < MAX_PENDING {
                self.pending.insert(
                    key,
                    Pending {
                        from: side,
                        gap_ns,
                        pkt,
                        end_seq: seg.seq.wrapping_add(seg.payload_len),
                        retrans: 0,
                        across_eviction,
                    },
                );
            }
        }
    }

    fn record_idle(&mut self, key: FlowKey, p: Pending, answer: IdleAnswer) {
        self.idle_count += 1;
        if self.idle.len() < MAX_IDLE_EVENTS {
            self.idle.push(IdleEvent {
                key,
                from: p.from,
                gap_ns: p.gap_ns,
                resume_pkt: p.pkt,
                answer,
                across_eviction: p.across_eviction,
            });
        }
    }

    /// A TCP flow left the table: a resumed connection still unanswered ends here; an
    /// open connection is remembered, so that its resumption after a silence longer
    /// than the table's idle timeout is still recognised.
    pub(crate) fn on_closed(&mut self, key: &FlowKey, conn: &TcpConn) {
        if let Some(p) = self.pending.remove(key) {
            if p.retrans >= 2 {
                self.record_idle(*key, p, IdleAnswer::Silent(p.retrans));
            }
            return;
        }
        let b = ConnEvents::before(conn);
        if let Some(last) = b.last_ns {
            if b.open && !b.fin[0] && !b.fin[1] && self.dormant.len() < MAX_DORMANT {
                self.dormant.insert(*key, last);
            }
        }
    }
}

impl ConnEvents {
    /// ((held, cap) of: refused destinations, dormant connections, resumed connections
    /// awaiting an answer).
    pub(crate) fn fill(&self) -> [(usize, usize); 3] {
        [
            (self.refused.len(), MAX_DESTS),
            (self.dormant.len(), MAX_DORMANT),
            (self.pending.len(), MAX_PENDING),
        ]
    }

    /// Most heap bytes the events take, every list at its cap.
    pub(crate) fn bytes_bound() -> usize {
        use crate::bounds::{map_bytes, vec_bytes};
        map_bytes::<(u16, Endpoint), RefusedStats>(MAX_DESTS)
            + MAX_DESTS * dest_lists_bytes()
            + map_bytes::<FlowKey, u64>(MAX_DORMANT)
            + map_bytes::<FlowKey, Pending>(MAX_PENDING)
            + vec_bytes::<IdleEvent>(MAX_IDLE_EVENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running sum gives the peak that summing the whole ring at every close gave,
    /// with closes out of order, gaps longer than the ring and bursts in one second.
    #[test]
    fn running_sum_peak_equals_summing_the_ring() {
        let mut fast = CloseStats::default();
        let (mut ring, mut ring_sec, mut peak) = ([0u32; TIME_WAIT_S], 0u64, 0u32);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut t: u64 = 0;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t = match x % 1000 {
                0 => t + 90_000_000_000,
                1..=3 => t.saturating_sub(30_000_000_000),
                4..=20 => t + 1_000_000_000,
                _ => t + x % 5_000_000,
            };
            fast.add(t);
            let sec = t / 1_000_000_000;
            if sec > ring_sec {
                let steps = (sec - ring_sec).min(TIME_WAIT_S as u64);
                for i in 1..=steps {
                    ring[((ring_sec + i) % TIME_WAIT_S as u64) as usize] = 0;
                }
                ring_sec = sec;
            }
            if ring_sec - sec < TIME_WAIT_S as u64 {
                let slot = &mut ring[(sec % TIME_WAIT_S as u64) as usize];
                *slot = slot.saturating_add(1);
            }
            let now: u32 = ring.iter().copied().fold(0, u32::saturating_add);
            peak = peak.max(now);
            assert_eq!(fast.peak_60s, peak);
        }
        assert!(
            peak > 100,
            "the sequence should build up a real peak: {peak}"
        );
    }
}
