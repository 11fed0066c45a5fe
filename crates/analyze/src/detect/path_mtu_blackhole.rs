//! `path_mtu_blackhole`: full-size segments vanish on the path and the "fragmentation
//! needed" / "packet too big" that would tell the sender never arrives
//! (`docs/detectors-resolver-udp-mtu.md`).
//!
//! Per direction of a TCP connection the tracker remembers the last few data segments
//! sent (sequence, size, DF) and which of them the peer acknowledged. The signature: one
//! segment larger than every acknowledged one is sent at least three times at the same
//! size (the original and two retransmissions, DF set or IPv6) and the peer's ACK never
//! passes it, while smaller segments of the same connection were acknowledged; no ICMP
//! too-big quoting the connection arrived, or one did and the sender kept the size
//! (ignored). An ICMP too-big followed by smaller segments is path-MTU discovery working:
//! no finding.
//!
//! State is bounded: at most `MAX_CONNS` connections (both directions in one entry, found
//! with the flow table's key and hash: one probe per segment), and when full the
//! connections without a suspect are dropped first.

use super::{Ctx, EvidenceSink, endpoint_text};
use crate::flow::{DenseMap, Endpoint, FlowKey, Side};
use crate::model::{Confidence, Evidence, Finding, Kind, PacketRef, Timing};

/// Connections tracked at once (each ~450 B: two directions with their rings of segment
/// sizes, and ~100 B more for each direction with a suspect): a black hole is a
/// connection that keeps retransmitting, so it survives the eviction of quiet ones.
const MAX_CONNS: usize = 1 << 11;
const RING: usize = 8;
/// Sends of one segment (original + retransmissions) at the same size that make it a suspect.
const MIN_SENDS: u16 = 3;
const MAX_ICMP: usize = 64;

fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[derive(Clone, Copy, Debug, Default)]
struct Sent {
    seq: u32,
    len: u32,
    pkt: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Suspect {
    seq: u32,
    len: u32,
    wire_len: u32,
    df: bool,
    sends: u16,
    pkts: [u64; 6],
    first_ns: u64,
    last_ns: u64,
    /// The peer's ACK passed it (ns).
    acked_ns: Option<u64>,
    /// Re-sent smaller after it (the sender lowered its size).
    resized: bool,
    /// Sends at the full size after an ICMP too-big for this connection.
    sends_after_icmp: u16,
}

/// One direction, laid out by how often a segment reads it: the fields every segment
/// reads or writes first (48 bytes, `suspect` among them), then the ring's sequence
/// numbers and sizes (what an ACK compares), then what only a retransmission reads
/// (the ring's packet numbers) and the rare rest. A tracked connection is 448 B
/// (it was 640 B with the ring as one array of records and the suspect in line): on a
/// busy capture a thousand of them share the core's cache with the flow table.
#[derive(Clone, Debug, Default)]
#[repr(C)]
struct Dir {
    /// The oldest segment not yet acknowledged (what a sender retransmits first), kept
    /// apart from the ring, which a burst of later segments overwrites.
    head: Sent,
    high_end: u32,
    max_len_sent: u32,
    max_len_acked: u32,
    /// MSS this sender announced in its SYN.
    mss: Option<u16>,
    /// Bit `i`: ring entry `i` holds a segment not yet acknowledged (its size > 0).
    live: u8,
    ring_next: u8,
    high_seen: bool,
    /// Out of line: a suspect is rare, and in line it tripled the cache lines of the
    /// directions that never have one.
    suspect: Option<Box<Suspect>>,
    /// The last `RING` data segments sent, `ring_next` the one to overwrite next: their
    /// sequence numbers, sizes and packet numbers.
    ring_seq: [u32; RING],
    ring_len: [u32; RING],
    ring_pkt: [u64; RING],
    /// An ICMP too-big for this direction: (packet, announced MTU).
    icmp: Option<(u64, u32)>,
}

impl Dir {
    /// Ring entry `i` (`i < RING`).
    fn ring(&self, i: usize) -> Option<Sent> {
        Some(Sent {
            seq: *self.ring_seq.get(i)?,
            len: *self.ring_len.get(i)?,
            pkt: *self.ring_pkt.get(i)?,
        })
    }
}

/// One ICMP too-big seen.
#[derive(Clone, Copy, Debug)]
struct TooBig {
    pkt: PacketRef,
    mtu: u32,
}

/// The tracker.
#[derive(Default)]
pub(crate) struct PmtuTracker {
    /// Per connection (the flow table's key), its two directions by [`Side`].
    conns: DenseMap<FlowKey, [Dir; 2]>,
    too_big: Vec<TooBig>,
    too_big_total: u64,
    /// Suspects' boxes that are no longer in use, for the next suspect: none is
    /// allocated once as many suspects were open at once.
    #[allow(clippy::vec_box)] // the spares are allocations to reuse, not values
    spare: Vec<Box<Suspect>>,
    pub(crate) not_tracked: u64,
    interface_mtu: Option<(String, u32)>,
}

/// What the analyzer hands over per TCP segment (its connection's key and hash, and the
/// side that sent it, go alongside).
pub(crate) struct Seg {
    pub(crate) syn: bool,
    pub(crate) ack: Option<u32>,
    pub(crate) seq: u32,
    pub(crate) len: u32,
    pub(crate) wire_len: u32,
    pub(crate) df: bool,
    pub(crate) mss: Option<u16>,
}

/// Room for one more connection: when the table is full, the connections without a
/// suspect go.
fn make_room(conns: &mut DenseMap<FlowKey, [Dir; 2]>) -> bool {
    if conns.len() < MAX_CONNS {
        return true;
    }
    conns.retain(|_, d| d.iter().any(|d| d.suspect.is_some()));
    conns.len() < MAX_CONNS
}

impl PmtuTracker {
    /// The pod interface's MTU (live: from the kernel's link table).
    pub(crate) fn set_interface_mtu(&mut self, name: &str, mtu: u32) {
        self.interface_mtu = Some((name.to_string(), mtu));
    }

    /// A segment of connection `key` (filed under `hash`, [`FlowKey`]'s dense hash) sent
    /// by its side `side`.
    pub(crate) fn on_segment(
        &mut self,
        key: &FlowKey,
        hash: u32,
        side: Side,
        s: &Seg,
        pkt: u64,
        ns: u64,
    ) {
        let conn = if s.len == 0 && !s.syn {
            // A pure ACK: it only acknowledges what the other direction sent.
            match self.conns.get_mut_hashed(key, hash) {
                Some(c) => c,
                None => return,
            }
        } else {
            match self
                .conns
                .get_or_insert_default_if_hashed(*key, hash, make_room)
            {
                Some(c) => c,
                None => {
                    self.not_tracked += 1;
                    return;
                }
            }
        };
        // The peer's ACK acknowledges what this direction's reverse sent.
        if let Some(ack) = s.ack {
            conn[side.other().idx()].on_ack(ack, ns, &mut self.spare);
        }
        if s.len == 0 && !s.syn {
            return;
        }
        let d = &mut conn[side.idx()];
        if s.syn {
            if s.mss.is_some() {
                d.mss = s.mss;
            }
            d.high_end = s.seq.wrapping_add(1);
            d.high_seen = true;
            return;
        }
        d.on_data(s, pkt, ns, &mut self.spare);
    }

    /// An ICMP "fragmentation needed" (v4 type 3 code 4) or "packet too big" (v6 type 2)
    /// quoting `quoted_src -> quoted_dst`.
    pub(crate) fn on_too_big(
        &mut self,
        source: u16,
        quoted_src: Endpoint,
        quoted_dst: Endpoint,
        mtu: u32,
        pkt: u64,
    ) {
        self.too_big_total += 1;
        if self.too_big.len() < MAX_ICMP {
            self.too_big.push(TooBig {
                pkt: PacketRef {
                    source,
                    number: pkt,
                },
                mtu,
            });
        }
        let (key, side) = FlowKey::new(source, 6, quoted_src, quoted_dst);
        if let Some(c) = self.conns.get_mut(&key) {
            c[side.idx()].icmp = Some((pkt, mtu));
        }
    }
}

impl Dir {
    #[allow(clippy::vec_box)] // the spares are allocations to reuse, not values
    fn on_ack(&mut self, ack: u32, ns: u64, spare: &mut Vec<Box<Suspect>>) {
        if self.head.len > 0 && !seq_after(self.head.seq.wrapping_add(self.head.len), ack) {
            self.head.len = 0;
        }
        let mut live = self.live;
        while live != 0 {
            let i = live.trailing_zeros() as usize;
            live &= live - 1;
            if let (Some(seq), Some(len)) = (self.ring_seq.get(i), self.ring_len.get_mut(i)) {
                if !seq_after(seq.wrapping_add(*len), ack) {
                    self.max_len_acked = self.max_len_acked.max(*len);
                    *len = 0;
                    self.live &= !(1 << i);
                }
            }
        }
        if let Some(s) = &mut self.suspect {
            if s.acked_ns.is_none() && seq_after(ack, s.seq) {
                s.acked_ns = Some(ns);
                if s.sends < MIN_SENDS {
                    // An ordinary loss, repaired.
                    spare.extend(self.suspect.take());
                }
            }
        }
    }

    #[allow(clippy::vec_box)] // the spares are allocations to reuse, not values
    fn on_data(&mut self, s: &Seg, pkt: u64, ns: u64, spare: &mut Vec<Box<Suspect>>) {
        let end = s.seq.wrapping_add(s.len);
        let retrans = self.high_seen && !seq_after(end, self.high_end);
        if !self.high_seen || seq_after(end, self.high_end) {
            self.high_end = end;
            self.high_seen = true;
        }
        self.max_len_sent = self.max_len_sent.max(s.len);
        if retrans {
            if let Some(sp) = &mut self.suspect {
                if sp.acked_ns.is_none() && sp.seq == s.seq {
                    if s.len == sp.len {
                        let i = usize::from(sp.sends);
                        if i < sp.pkts.len() {
                            sp.pkts[i] = pkt;
                        }
                        sp.sends = sp.sends.saturating_add(1);
                        sp.last_ns = ns;
                        if self.icmp.is_some() {
                            sp.sends_after_icmp = sp.sends_after_icmp.saturating_add(1);
                        }
                    } else if s.len < sp.len {
                        sp.resized = true;
                    }
                }
                return;
            }
            // First retransmission of a segment larger than anything acknowledged.
            if let Some(orig) = (0..RING)
                .filter_map(|i| self.ring(i))
                .chain(std::iter::once(self.head))
                .find(|e| e.len == s.len && e.seq == s.seq)
            {
                if s.len > self.max_len_acked {
                    let mut pkts = [0u64; 6];
                    pkts[0] = orig.pkt;
                    pkts[1] = pkt;
                    let suspect = Suspect {
                        seq: s.seq,
                        len: s.len,
                        wire_len: s.wire_len,
                        df: s.df,
                        sends: 2,
                        pkts,
                        first_ns: ns,
                        last_ns: ns,
                        acked_ns: None,
                        resized: false,
                        sends_after_icmp: 0,
                    };
                    self.suspect = Some(crate::bounds::reuse_box(spare, suspect));
                }
            }
            return;
        }
        let sent = Sent {
            seq: s.seq,
            len: s.len,
            pkt,
        };
        if self.head.len == 0 {
            self.head = sent;
        }
        let i = usize::from(self.ring_next) % RING;
        if let (Some(seq), Some(len), Some(p)) = (
            self.ring_seq.get_mut(i),
            self.ring_len.get_mut(i),
            self.ring_pkt.get_mut(i),
        ) {
            (*seq, *len, *p) = (sent.seq, sent.len, sent.pkt);
            if sent.len > 0 {
                self.live |= 1 << i;
            } else {
                self.live &= !(1 << i);
            }
        }
        self.ring_next = ((i + 1) % RING) as u8;
    }
}

/// The finding, if any.
pub(crate) fn finish(t: &PmtuTracker, ctx: &Ctx<'_>) -> Option<Finding> {
    // (source, sender, receiver), the sender's direction, its suspect, the receiver's.
    type Hit<'a> = ((u16, Endpoint, Endpoint), &'a Dir, &'a Suspect, &'a Dir);
    let mut hits: Vec<Hit<'_>> = Vec::new();
    let dirs = t.conns.iter().flat_map(|(k, c)| {
        [Side::A, Side::B].into_iter().filter_map(move |side| {
            let d = c.get(side.idx())?;
            let peer = c.get(side.other().idx())?;
            let key = (k.source, k.endpoint(side), k.endpoint(side.other()));
            Some((key, d, peer))
        })
    });
    for (k, d, peer) in dirs {
        let Some(s) = &d.suspect else { continue };
        let ignored_icmp = d.icmp.is_some() && s.sends_after_icmp > 0;
        if s.sends >= MIN_SENDS
            && s.df
            && d.max_len_acked > 0
            && s.len > d.max_len_acked
            && (d.icmp.is_none() || ignored_icmp)
        {
            if let Some((_, mtu)) = &t.interface_mtu {
                // Captured with segmentation offload: sizes are not what the wire carried.
                if s.wire_len > mtu.saturating_add(18) {
                    continue;
                }
            }
            hits.push((k, d, s, peer));
        }
    }
    if hits.is_empty() {
        return None;
    }
    hits.sort_by_key(|h| h.0);
    let mut evidence = Evidence::default();
    let mut flows = Vec::new();
    let largest_acked = hits.iter().map(|h| h.1.max_len_acked).max().unwrap_or(0);
    let smallest_lost = hits.iter().map(|h| h.2.len).min().unwrap_or(0);
    let mut stall_ms = Vec::new();
    {
        let mut sink = EvidenceSink {
            out: &mut evidence.packets,
            total: &mut evidence.packets_total,
            cap: ctx.max_evidence,
        };
        for (k, d, s, peer) in &hits {
            let (source, a, b) = *k;
            flows.push(super::flow_text(a, b, "tcp"));
            for (i, p) in s.pkts.iter().take(usize::from(s.sends)).enumerate() {
                if *p == 0 {
                    continue;
                }
                sink.push(
                    PacketRef { source, number: *p },
                    if i == 0 {
                        format!(
                            "{}-byte segment ({} bytes on the wire{}) sent, never acknowledged",
                            s.len,
                            s.wire_len,
                            if s.df { ", DF" } else { "" }
                        )
                    } else {
                        format!("same {}-byte segment retransmitted", s.len)
                    },
                );
            }
            if let Some((p, _)) = d.icmp {
                sink.push(
                    PacketRef { source, number: p },
                    "ICMP too-big for this connection, ignored: the size was not lowered",
                );
            }
            evidence.notes.push(format!(
                "{} -> {}: largest acknowledged segment {} bytes, {}-byte segment sent {} times and never acknowledged; MSS announced by {} {}, by {} {}",
                endpoint_text(a),
                endpoint_text(b),
                d.max_len_acked,
                s.len,
                s.sends,
                endpoint_text(a),
                d.mss.map_or("not seen".to_string(), |m| m.to_string()),
                endpoint_text(b),
                peer.mss
                    .map_or("not seen".to_string(), |m| m.to_string()),
            ));
            if s.resized {
                evidence.notes.push(format!(
                    "{}: the sender then re-sent the data in smaller segments (MTU probing)",
                    super::flow_text(a, b, "tcp")
                ));
            }
            stall_ms.push(s.last_ns.saturating_sub(s.first_ns) as f64 / 1e6);
        }
        for i in &t.too_big {
            sink.push(i.pkt, format!("ICMP too-big, next-hop MTU {}", i.mtu));
        }
    }
    evidence.notes.push(format!(
        "largest acknowledged segment {largest_acked} bytes; smallest never-acknowledged {smallest_lost} bytes: the path MTU lies between"
    ));
    if t.too_big_total == 0 {
        evidence.notes.push(
            "no ICMP fragmentation-needed / packet-too-big came back in the capture".to_string(),
        );
    } else {
        let mtus: Vec<String> = t.too_big.iter().map(|i| i.mtu.to_string()).collect();
        evidence.notes.push(format!(
            "{} ICMP too-big message(s) seen (MTU {})",
            t.too_big_total,
            mtus.join(", ")
        ));
    }
    if let Some((name, mtu)) = &t.interface_mtu {
        evidence
            .notes
            .push(format!("pod interface {name}: MTU {mtu}"));
    }
    evidence.timings.push(Timing {
        what: "first retransmission to last of the never-acknowledged segment".to_string(),
        millis: stall_ms,
    });
    let summary = format!(
        "{} connection(s) stall on a path-MTU black hole: {smallest_lost}-byte segments are re-sent and never acknowledged while segments up to {largest_acked} bytes get through, and no ICMP too-big {}",
        hits.len(),
        if t.too_big_total == 0 {
            "comes back"
        } else {
            "was acted on"
        }
    );
    Some(Finding {
        kind: Kind::PathMtuBlackhole,
        confidence: Confidence::Likely,
        summary,
        flows,
        listeners: Vec::new(),
        names: Vec::new(),
        evidence,
        remedy: "Lower the pod MTU to what the path carries (the CNI's MTU setting: the overlay's \
MTU minus its encapsulation, e.g. 1450 for VXLAN on 1500), clamp the MSS on the node \
(`iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu`), \
allow ICMP type 3 code 4 (IPv4) and ICMPv6 type 2 through every firewall and security group on \
the path, and enable `net.ipv4.tcp_mtu_probing=1` so senders find the size on their own."
            .to_string(),
        alternative: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::DenseKey;

    fn ep(s: &str, p: u16) -> Endpoint {
        (s.parse().expect("ip"), p)
    }

    /// A segment from `src` to `dst` as the analyzer hands it over: with its
    /// connection's key, hash and sending side.
    struct At {
        src: Endpoint,
        dst: Endpoint,
        seg: Seg,
    }

    fn seg(src: Endpoint, dst: Endpoint, seq: u32, len: u32, ack: Option<u32>) -> At {
        At {
            src,
            dst,
            seg: Seg {
                syn: false,
                ack,
                seq,
                len,
                wire_len: len + 52,
                df: true,
                mss: None,
            },
        }
    }

    impl PmtuTracker {
        fn on(&mut self, at: &At, pkt: u64, ns: u64) {
            let (key, side) = FlowKey::new(0, 6, at.src, at.dst);
            self.on_segment(&key, key.dense_hash(), side, &at.seg, pkt, ns);
        }

        fn dir(&self, src: Endpoint, dst: Endpoint) -> &Dir {
            let (key, side) = FlowKey::new(0, 6, src, dst);
            &self.conns.get(&key).expect("tracked")[side.idx()]
        }
    }

    /// Small request acked, then a full-size segment sent three times, never acked.
    fn blackhole(t: &mut PmtuTracker, resend_small_after_icmp: bool) {
        let c = ep("10.244.1.10", 40000);
        let s = ep("172.31.0.2", 8080);
        let mut syn = seg(c, s, 999, 0, None);
        syn.seg.syn = true;
        syn.seg.mss = Some(1460);
        t.on(&syn, 1, 0);
        let mut sa = seg(s, c, 4999, 0, Some(1000));
        sa.seg.syn = true;
        sa.seg.mss = Some(1460);
        t.on(&sa, 2, 1);
        t.on(&seg(c, s, 1000, 100, Some(5000)), 3, 2);
        t.on(&seg(s, c, 5000, 0, Some(1100)), 4, 3);
        t.on(&seg(c, s, 1100, 1448, Some(5000)), 5, 4);
        if resend_small_after_icmp {
            t.on_too_big(0, c, s, 1400, 6);
            t.on(&seg(c, s, 1100, 1348, Some(5000)), 7, 5);
            t.on(&seg(c, s, 2448, 100, Some(5000)), 8, 6);
            t.on(&seg(s, c, 5000, 0, Some(2548)), 9, 7);
        } else {
            // A burst that overwrites the ring: the head is still known.
            for i in 1..12u32 {
                t.on(
                    &seg(c, s, 1100 + i * 1448, 1448, Some(5000)),
                    5 + u64::from(i),
                    5,
                );
            }
            t.on(&seg(c, s, 1100, 1448, Some(5000)), 20, 200);
            t.on(&seg(c, s, 1100, 1448, Some(5000)), 21, 600);
        }
    }

    /// The layout's point: a connection (key and both directions) stays within 448 B.
    #[test]
    fn a_tracked_connection_is_at_most_448_bytes() {
        let size = std::mem::size_of::<(FlowKey, [Dir; 2])>();
        assert!(size <= 448, "{size} B");
    }

    /// A loss repaired after one retransmission ends its suspect; the next suspect
    /// reuses the box (no allocation per suspect once warm).
    #[test]
    fn a_repaired_suspect_leaves_its_box_for_the_next() {
        let mut t = PmtuTracker::default();
        let (c, s) = (ep("10.244.1.10", 40000), ep("172.31.0.2", 8080));
        t.on(&seg(c, s, 1000, 1448, Some(1)), 1, 1);
        t.on(&seg(c, s, 1000, 1448, Some(1)), 2, 2);
        assert_eq!(t.dir(c, s).suspect.as_ref().map(|x| x.sends), Some(2));
        assert!(t.spare.is_empty());
        // The peer acknowledges it: an ordinary loss.
        t.on(&seg(s, c, 1, 0, Some(2448)), 3, 3);
        assert!(t.dir(c, s).suspect.is_none());
        assert_eq!(t.spare.len(), 1);
        // A larger segment than the one acknowledged, re-sent: a suspect again.
        t.on(&seg(c, s, 2448, 2000, Some(1)), 4, 4);
        t.on(&seg(c, s, 2448, 2000, Some(1)), 5, 5);
        let again = t
            .dir(c, s)
            .suspect
            .as_ref()
            .map(|x| (x.seq, x.pkts[..2].to_vec()));
        assert_eq!(again, Some((2448, vec![4, 5])));
        assert!(t.spare.is_empty());
    }

    #[test]
    fn full_size_resent_never_acked_is_a_blackhole() {
        let mut t = PmtuTracker::default();
        blackhole(&mut t, false);
        let d = t.dir(ep("10.244.1.10", 40000), ep("172.31.0.2", 8080));
        assert_eq!(d.max_len_acked, 100);
        assert_eq!(d.mss, Some(1460));
        let s = d.suspect.as_deref().expect("suspect");
        assert_eq!((s.len, s.sends), (1448, 3));
        assert_eq!(s.pkts[..3], [5, 20, 21]);
        assert!(s.acked_ns.is_none());
    }

    #[test]
    fn icmp_honoured_is_pmtud_working() {
        let mut t = PmtuTracker::default();
        blackhole(&mut t, true);
        let d = t.dir(ep("10.244.1.10", 40000), ep("172.31.0.2", 8080));
        assert!(d.suspect.is_none(), "{:?}", d.suspect);
        assert_eq!(d.icmp, Some((6, 1400)));
    }
}

#[cfg(test)]
mod lab_tests {
    use crate::testutil::{finding, run};
    use crate::{Confidence, Kind};

    #[test]
    fn lab_blackhole_names_sizes_mss_and_mtu() {
        let r = run(&["pmtu_blackhole/pod.pcap"], |a| {
            a.set_interface_mtu("eth0", 1500)
        });
        let f = finding(&r, Kind::PathMtuBlackhole).expect("found");
        assert_eq!(f.confidence, Confidence::Likely);
        assert_eq!(f.flows.len(), 1);
        let notes = f.evidence.notes.join("\n");
        for want in [
            "largest acknowledged segment 100 bytes",
            "smallest never-acknowledged 1448 bytes",
            "MSS announced by 10.244.1.10",
            "1460",
            "no ICMP",
            "pod interface eth0: MTU 1500",
        ] {
            assert!(notes.contains(want), "{want:?} not in {notes}");
        }
        // The original and its retransmissions (0.2, 0.4, 0.8, 1.7 s) are the evidence.
        assert!(f.evidence.packets.len() >= 4, "{:?}", f.evidence.packets);
        assert_eq!(r.kinds(), [Kind::PathMtuBlackhole]);
    }

    #[test]
    fn pmtu_discovery_working_and_other_tcp_recordings_are_clean() {
        for file in [
            "healthy_pmtu/pod.pcap",
            "healthy_http/pod.pcap",
            "accept_overflow_ack/pod.pcap",
            "conntrack_invalid/pod.pcap",
            "snat_exhaustion/pod.pcap",
        ] {
            let r = run(&[file], |_| {});
            assert!(finding(&r, Kind::PathMtuBlackhole).is_none(), "{file}");
        }
    }
}

impl PmtuTracker {
    /// Most heap bytes the tracker holds: every direction (with a suspect each) and ICMP
    /// example at its cap.
    pub(crate) fn bytes_bound() -> usize {
        DenseMap::<FlowKey, [Dir; 2]>::bytes_bound(MAX_CONNS)
            + 2 * MAX_CONNS * std::mem::size_of::<Suspect>()
            + crate::bounds::vec_bytes::<Box<Suspect>>(2 * MAX_CONNS)
            + crate::bounds::vec_bytes::<TooBig>(MAX_ICMP)
    }
}
