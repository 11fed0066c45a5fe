//! The TCP tracker: one [`TcpConn`] per flow, what `tcpdump` shows as `[S]`, `[S.]`,
//! `[.]`, `[R]` turned into state.
//!
//! It follows the handshake (who is the client, SYN and SYN-ACK retransmissions with
//! their timing), sequence and acknowledgement edges per direction with window scaling
//! (RFC 7323), data retransmissions, the segments conntrack would call out of window,
//! and who sent each RST in answer to what. All state is fixed-size: no allocation.

use crate::flow::Side;
use netdiag_wire::TcpSegment;

/// How many SYN (and SYN-ACK-after-ACK) packet numbers a connection remembers.
pub(crate) const SYN_SLOTS: usize = 8;

/// What a segment was, for "RST in answer to what".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum SegKind {
    /// Nothing seen from that side yet.
    #[default]
    None,
    /// A SYN or SYN-ACK.
    Syn,
    /// A segment carrying payload.
    Data,
    /// A FIN.
    Fin,
    /// A bare ACK.
    Ack,
    /// A RST.
    Rst,
    /// A segment conntrack would call out of window.
    OutOfWindow,
}

impl SegKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SegKind::None => "none",
            SegKind::Syn => "syn",
            SegKind::Data => "data",
            SegKind::Fin => "fin",
            SegKind::Ack => "ack",
            SegKind::Rst => "rst",
            SegKind::OutOfWindow => "out_of_window",
        }
    }
}

/// One direction of a connection (what one endpoint sent).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Half {
    pub(crate) seen: bool,
    pub(crate) syn: bool,
    pub(crate) isn: u32,
    /// One past the highest sequence number sent (data + SYN/FIN), valid when `seen`.
    pub(crate) next_seq: u32,
    /// Highest acknowledgement number sent, valid when `ack_seen`.
    pub(crate) ack: u32,
    pub(crate) ack_seen: bool,
    /// Window scale offered in the SYN (RFC 7323), if any.
    pub(crate) wscale_offer: Option<u8>,
    /// Right edge of the receive window this endpoint advertised (ack + scaled window).
    pub(crate) right_edge: u32,
    pub(crate) edge_seen: bool,
    /// Largest scaled window advertised.
    pub(crate) max_window: u32,
    pub(crate) fin: bool,
    pub(crate) last: SegKind,
    pub(crate) last_ns: u64,
    pub(crate) retransmissions: u32,
}

/// Connection state, as far as the capture shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum TcpState {
    /// Mid-stream (no SYN seen) or nothing yet.
    #[default]
    Unknown,
    /// SYN seen, no SYN-ACK.
    SynSent,
    /// SYN-ACK seen, final ACK not yet.
    SynReceived,
    /// Three-way handshake completed.
    Established,
    /// A RST was seen.
    Reset,
}

/// A segment that conntrack's window check would reject.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Suspect {
    pub(crate) pkt: u64,
    pub(crate) ns: u64,
    pub(crate) from: Option<Side>,
    /// The suspect's ACK number: the no-socket RST answering it carries this as its SEQ.
    pub(crate) ack: u32,
    /// How far beyond the edge it lay, bytes.
    pub(crate) excess: u32,
    /// `true`: SEQ over the upper bound; `false`: ACK over the upper bound.
    pub(crate) seq_over: bool,
}

/// The first segment of a flow first seen mid-stream, kept (24 bytes, not a 32-byte
/// [`Suspect`]: every such flow holds one) until a RST may answer it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stray {
    pkt: u64,
    ns: u64,
    /// Its ACK number: a no-socket RST answering it carries this as its SEQ.
    ack: u32,
    from: Side,
}

/// An out-of-window segment answered by a RST from the other side: conntrack INVALID.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InvalidEvent {
    pub(crate) suspect: Suspect,
    pub(crate) rst_pkt: u64,
    pub(crate) rst_ns: u64,
    /// Who sent the RST.
    pub(crate) rst_from: Side,
}

/// The rarely needed part of a connection's state, out of line so that a flow costs
/// less in the table: the SYN retransmissions after the first SYN and the SYN-ACKs
/// re-sent after the handshake, the out-of-window suspect and what answered it. Boxes of
/// closed connections are reused
/// ([`TcpConn::on_segment`]'s `spare`), so none is allocated once the table is warm.
#[derive(Clone, Debug, Default)]
pub(crate) struct TcpCold {
    /// Packet numbers and times of SYNs 2..=`SYN_SLOTS`.
    syn_pkts: [u64; SYN_SLOTS - 1],
    syn_ns: [u64; SYN_SLOTS - 1],
    synack_after_ack_pkts: [u64; SYNACK_AFTER_ACK_SLOTS],
    synack_after_ack_ns: [u64; SYNACK_AFTER_ACK_SLOTS],
    /// A segment conntrack would call out of window (the first one).
    suspect: Option<Suspect>,
    /// A RST was already reported as the answer to the suspect.
    invalid_reported: bool,
    /// The first RST after the INVALID answer: the peer killing the connection.
    peer_rst_after_invalid: Option<u64>,
}

/// How many SYN-ACKs re-sent after the handshake a connection remembers.
pub(crate) const SYNACK_AFTER_ACK_SLOTS: usize = 4;

/// The TCP state of one flow.
#[derive(Clone, Debug, Default)]
pub(crate) struct TcpConn {
    /// The side that sent the SYN (or, without one, the SYN-ACK's peer).
    pub(crate) client: Option<Side>,
    pub(crate) state: TcpState,
    pub(crate) half: [Half; 2],
    pub(crate) syn_count: u8,
    /// Packet number and time of the first SYN (the others are in `cold`).
    syn_pkt0: u64,
    syn_ns0: u64,
    pub(crate) synack_count: u8,
    pub(crate) synack_first_pkt: u64,
    pub(crate) final_ack_pkt: u64,
    /// The three-way handshake completed (stays true after a RST).
    pub(crate) established: bool,
    pub(crate) synack_after_ack: u8,
    /// Allocated (or taken from the spares) at the second SYN, the first SYN-ACK
    /// re-sent after the handshake or the first out-of-window segment.
    pub(crate) cold: Option<Box<TcpCold>>,
    pub(crate) client_data: u32,
    pub(crate) client_data_pkt: u64,
    pub(crate) server_acked_data: bool,
    /// The server sent something other than SYN-ACKs after the handshake.
    pub(crate) server_spoke: bool,
    /// Client data segments retransmitted after the handshake.
    pub(crate) client_data_retrans: u32,
    /// First packet of a flow first seen mid-stream (no SYN): a candidate stray segment
    /// (e.g. from a backend address that reverse NAT should have rewritten).
    pub(crate) stray: Option<Stray>,
    /// Packets seen in this flow.
    pub(crate) packets: u32,
    pub(crate) resets: u8,
    /// Which (side, TTL class) pairs of this connection were handed to the address
    /// locality table (see `Locality::class_bit`): their later packets skip it.
    pub(crate) locality_seen: u8,
}

/// What one segment changed, for the detectors and the statistics.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TcpOutcome {
    /// A new connection attempt (first SYN).
    pub(crate) opened: bool,
    /// A SYN retransmission.
    pub(crate) syn_retransmitted: bool,
    /// The first SYN-ACK of the connection.
    pub(crate) answered: bool,
    /// The final ACK of the handshake.
    pub(crate) completed: bool,
    /// A data retransmission.
    pub(crate) retransmission: bool,
    /// A SYN-ACK re-sent after the handshake had completed.
    pub(crate) synack_after_ack: bool,
    /// A RST: (origin, answered-what).
    pub(crate) rst: Option<(RstOrigin, SegKind)>,
    /// conntrack INVALID signature completed by this RST.
    pub(crate) invalid: Option<InvalidEvent>,
    /// A RST answering the first, mid-stream segment of a flow never seen before
    /// (SEQ = that segment's ACK): the local host has no socket for that 4-tuple.
    pub(crate) stray_rst: Option<InvalidEvent>,
}

/// Who sent a RST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RstOrigin {
    Client,
    Server,
    Unknown,
}

/// How far past the advertised window a segment must lie before we call it what
/// conntrack would reject. Generous on purpose: the capture may have missed packets
/// (snaplen, drops), and conntrack itself allows the receiver's maximum window.
const MIN_SLACK: u32 = 1 << 20;

/// How soon after the suspect segment the answering RST must come.
const INVALID_RST_WINDOW_NS: u64 = 200_000_000;

fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl TcpConn {
    /// Whether a segment starts a new connection on a reused 4-tuple (a SYN with another
    /// ISN after the previous connection got going), so the caller closes this one first.
    pub(crate) fn is_new_attempt(&self, from: Side, seg: &TcpSegment<'_>) -> bool {
        let f = seg.flags;
        if !f.syn() || f.ack() || self.syn_count == 0 {
            return false;
        }
        let h = &self.half[from.idx()];
        !(self.client == Some(from) && h.syn && h.isn == seg.seq)
    }

    /// The window-scale shift that applies to segments sent by `side`.
    fn scale(&self, side: Side) -> u8 {
        match (
            self.half[0].wscale_offer,
            self.half[1].wscale_offer,
            self.state,
        ) {
            (Some(a), Some(b), _) => {
                if side == Side::A {
                    a.min(14)
                } else {
                    b.min(14)
                }
            }
            _ => 0,
        }
    }

    /// Both SYNs seen, so window scaling is known for both directions.
    fn scaling_known(&self) -> bool {
        self.half[0].syn && self.half[1].syn
    }

    /// The out-of-line state, from `spare` when one is there.
    #[allow(clippy::vec_box)] // the spares are allocations to reuse, not values
    fn cold(&mut self, spare: &mut Vec<Box<TcpCold>>) -> &mut TcpCold {
        self.cold
            .get_or_insert_with(|| crate::bounds::reuse_box(spare, TcpCold::default()))
    }

    /// Packet numbers of the first `SYN_SLOTS` SYNs (0 where none was seen).
    pub(crate) fn syn_pkts(&self) -> [u64; SYN_SLOTS] {
        let mut v = [0; SYN_SLOTS];
        v[0] = self.syn_pkt0;
        if let Some(c) = &self.cold {
            v[1..].copy_from_slice(&c.syn_pkts);
        }
        v
    }

    /// Times of the first `SYN_SLOTS` SYNs (0 where none was seen).
    pub(crate) fn syn_ns(&self) -> [u64; SYN_SLOTS] {
        let mut v = [0; SYN_SLOTS];
        v[0] = self.syn_ns0;
        if let Some(c) = &self.cold {
            v[1..].copy_from_slice(&c.syn_ns);
        }
        v
    }

    /// The segment conntrack would call out of window, if one was seen.
    fn suspect(&self) -> Option<Suspect> {
        self.cold.as_ref().and_then(|c| c.suspect)
    }

    /// The first RST after a RST answered the out-of-window suspect.
    pub(crate) fn peer_rst_after_invalid(&self) -> Option<u64> {
        self.cold.as_ref().and_then(|c| c.peer_rst_after_invalid)
    }

    /// Packet numbers of the SYN-ACKs re-sent after the handshake (0 where none).
    pub(crate) fn synack_after_ack_pkts(&self) -> [u64; SYNACK_AFTER_ACK_SLOTS] {
        self.cold
            .as_ref()
            .map_or([0; SYNACK_AFTER_ACK_SLOTS], |c| c.synack_after_ack_pkts)
    }

    /// Updates the connection with one segment from `from`. `spare` holds out-of-line
    /// state boxes of closed connections, for reuse.
    #[allow(clippy::vec_box)] // the spares are allocations to reuse, not values
    pub(crate) fn on_segment(
        &mut self,
        from: Side,
        seg: &TcpSegment<'_>,
        pkt: u64,
        ns: u64,
        spare: &mut Vec<Box<TcpCold>>,
    ) -> TcpOutcome {
        let mut out = TcpOutcome::default();
        let f = seg.flags;
        let to = from.other();
        let len = seg.payload_len;
        let seq_len = len
            .wrapping_add(u32::from(f.syn()))
            .wrapping_add(u32::from(f.fin()));

        let first = self.packets == 0;
        self.packets = self.packets.saturating_add(1);
        if f.rst() {
            return self.on_rst(from, seg, pkt, ns, out);
        }
        if first && !f.syn() && f.ack() {
            self.stray = Some(Stray {
                pkt,
                ns,
                from,
                ack: seg.ack,
            });
        }

        // Handshake.
        if f.syn() && !f.ack() {
            let h = &mut self.half[from.idx()];
            if self.syn_count == 0 {
                out.opened = true;
                self.client = Some(from);
                self.state = TcpState::SynSent;
                h.syn = true;
                h.isn = seg.seq;
                h.wscale_offer = seg.options.window_scale();
            } else {
                out.syn_retransmitted = true;
            }
            let i = usize::from(self.syn_count);
            if i == 0 {
                self.syn_pkt0 = pkt;
                self.syn_ns0 = ns;
            } else if i < SYN_SLOTS {
                let c = self.cold(spare);
                c.syn_pkts[i - 1] = pkt;
                c.syn_ns[i - 1] = ns;
            }
            self.syn_count = self.syn_count.saturating_add(1);
        } else if f.syn() && f.ack() {
            if self.client.is_none() {
                self.client = Some(to);
            }
            if self.client == Some(to) {
                let h = &mut self.half[from.idx()];
                if !h.syn {
                    h.syn = true;
                    h.isn = seg.seq;
                    h.wscale_offer = seg.options.window_scale();
                }
                if self.synack_count == 0 {
                    out.answered = true;
                    self.synack_first_pkt = pkt;
                    if self.state != TcpState::Established {
                        self.state = TcpState::SynReceived;
                    }
                } else if self.state == TcpState::Established {
                    out.synack_after_ack = true;
                    let i = usize::from(self.synack_after_ack);
                    if i < SYNACK_AFTER_ACK_SLOTS {
                        let c = self.cold(spare);
                        c.synack_after_ack_pkts[i] = pkt;
                        c.synack_after_ack_ns[i] = ns;
                    }
                    self.synack_after_ack = self.synack_after_ack.saturating_add(1);
                }
                self.synack_count = self.synack_count.saturating_add(1);
            }
        } else if f.ack()
            && self.state == TcpState::SynReceived
            && self.client == Some(from)
            && seg.ack == self.half[to.idx()].isn.wrapping_add(1)
        {
            self.state = TcpState::Established;
            self.established = true;
            self.final_ack_pkt = pkt;
            out.completed = true;
        }

        // Window check (before this segment moves the edges), like conntrack's
        // tcp_in_window: only when both SYNs told us the scaling.
        if !f.syn() && self.scaling_known() && self.suspect().is_none() {
            self.check_window(from, seg, pkt, ns, spare);
        }

        // Sequence bookkeeping.
        let scale_from = self.scale(from);
        let h = &mut self.half[from.idx()];
        let end = seg.seq.wrapping_add(seq_len);
        if !h.seen {
            h.seen = true;
            h.next_seq = end;
        } else if len > 0 && !f.syn() && !seq_after(end, h.next_seq) {
            h.retransmissions = h.retransmissions.saturating_add(1);
            out.retransmission = true;
            if self.client == Some(from) && self.state == TcpState::Established {
                self.client_data_retrans = self.client_data_retrans.saturating_add(1);
            }
        } else if seq_after(end, h.next_seq) {
            h.next_seq = end;
        }
        if f.ack() {
            if !h.ack_seen || seq_after(seg.ack, h.ack) {
                h.ack = seg.ack;
            }
            h.ack_seen = true;
            let win = u32::from(seg.window) << if f.syn() { 0 } else { scale_from };
            let edge = seg.ack.wrapping_add(win);
            if !h.edge_seen || seq_after(edge, h.right_edge) {
                h.right_edge = edge;
            }
            h.edge_seen = true;
            h.max_window = h.max_window.max(win);
        }
        if f.fin() {
            h.fin = true;
        }
        h.last = if f.syn() {
            SegKind::Syn
        } else if f.fin() {
            SegKind::Fin
        } else if len > 0 {
            SegKind::Data
        } else {
            SegKind::Ack
        };
        h.last_ns = ns;

        if self.client == Some(from) && len > 0 && self.state == TcpState::Established {
            if self.client_data == 0 {
                self.client_data_pkt = pkt;
            }
            self.client_data = self.client_data.saturating_add(1);
        }
        if self.client == Some(to) && !f.syn() {
            self.server_spoke = true;
        }
        if self.client == Some(to) && f.ack() {
            let c = &self.half[to.idx()];
            if c.syn && seq_after(seg.ack, c.isn.wrapping_add(1)) {
                self.server_acked_data = true;
            }
        }
        out
    }

    #[allow(clippy::vec_box)] // the spares are allocations to reuse, not values
    fn check_window(
        &mut self,
        from: Side,
        seg: &TcpSegment<'_>,
        pkt: u64,
        ns: u64,
        spare: &mut Vec<Box<TcpCold>>,
    ) {
        let me = &self.half[from.idx()];
        let peer = &self.half[from.other().idx()];
        if !me.seen || !peer.edge_seen {
            return;
        }
        let slack = MIN_SLACK.max(peer.max_window.saturating_mul(2));
        let over = seg.seq.wrapping_sub(peer.right_edge) as i32;
        let mut suspect = None;
        if over > 0 && (over as u32) > slack && (seg.payload_len > 0 || seg.flags.fin()) {
            suspect = Some((over as u32, true));
        } else if seg.flags.ack() && peer.seen {
            let ack_over = seg.ack.wrapping_sub(peer.next_seq) as i32;
            if ack_over > 0 && (ack_over as u32) > slack {
                suspect = Some((ack_over as u32, false));
            }
        }
        if let Some((excess, seq_over)) = suspect {
            self.cold(spare).suspect = Some(Suspect {
                pkt,
                ns,
                from: Some(from),
                ack: seg.ack,
                excess,
                seq_over,
            });
        }
    }

    fn on_rst(
        &mut self,
        from: Side,
        seg: &TcpSegment<'_>,
        pkt: u64,
        ns: u64,
        mut out: TcpOutcome,
    ) -> TcpOutcome {
        let to = from.other();
        let origin = match self.client {
            Some(c) if c == from => RstOrigin::Client,
            Some(_) => RstOrigin::Server,
            None => RstOrigin::Unknown,
        };
        let mut answered = self.half[to.idx()].last;
        if let Some(c) = self.cold.as_deref_mut() {
            let Some(s) = c.suspect else {
                return self.on_rst_stray(from, seg, pkt, ns, answered, origin, out);
            };
            if s.from == Some(to) && !c.invalid_reported {
                if seg.seq == s.ack && ns.saturating_sub(s.ns) <= INVALID_RST_WINDOW_NS {
                    answered = SegKind::OutOfWindow;
                    c.invalid_reported = true;
                    out.invalid = Some(InvalidEvent {
                        suspect: s,
                        rst_pkt: pkt,
                        rst_ns: ns,
                        rst_from: from,
                    });
                }
            } else if c.invalid_reported && c.peer_rst_after_invalid.is_none() {
                c.peer_rst_after_invalid = Some(pkt);
            }
        }
        self.on_rst_stray(from, seg, pkt, ns, answered, origin, out)
    }

    /// The rest of a RST: the stray segment it may answer, and the bookkeeping.
    #[allow(clippy::too_many_arguments)]
    fn on_rst_stray(
        &mut self,
        from: Side,
        seg: &TcpSegment<'_>,
        pkt: u64,
        ns: u64,
        mut answered: SegKind,
        origin: RstOrigin,
        mut out: TcpOutcome,
    ) -> TcpOutcome {
        let to = from.other();
        if let Some(s) = self.stray {
            if s.from == to
                && seg.seq == s.ack
                && ns.saturating_sub(s.ns) <= INVALID_RST_WINDOW_NS
                && self.packets <= 3
            {
                answered = SegKind::OutOfWindow;
                out.stray_rst = Some(InvalidEvent {
                    suspect: Suspect {
                        pkt: s.pkt,
                        ns: s.ns,
                        from: Some(s.from),
                        ack: s.ack,
                        excess: 0,
                        seq_over: true,
                    },
                    rst_pkt: pkt,
                    rst_ns: ns,
                    rst_from: from,
                });
            }
            self.stray = None;
        }
        out.rst = Some((origin, answered));
        let h = &mut self.half[from.idx()];
        h.seen = true;
        h.last = SegKind::Rst;
        h.last_ns = ns;
        self.state = TcpState::Reset;
        self.resets = self.resets.saturating_add(1);
        out
    }

    /// SYN-to-SYN gaps of this attempt, in milliseconds.
    pub(crate) fn syn_gaps_ms(&self) -> Vec<f64> {
        let n = usize::from(self.syn_count).min(SYN_SLOTS);
        self.syn_ns()[..n]
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]) as f64 / 1e6)
            .collect()
    }

    /// A connection attempt whose SYN was retransmitted and never answered.
    pub(crate) fn unanswered_retransmitted_syn(&self) -> bool {
        self.syn_count >= 2 && self.synack_count == 0
    }

    /// A handshake left half-open: the server re-sent its SYN-ACK and no final ACK (nor
    /// anything else from the client after its SYN) was seen — the request sat in the
    /// listener's SYN queue.
    pub(crate) fn half_open(&self) -> bool {
        self.synack_count >= 2 && !self.established && self.state == TcpState::SynReceived
    }

    /// Sub-case (b) of accept-queue overflow: the handshake completed on the wire but the
    /// server has no socket for it — it re-sent its SYN-ACK after the client's final ACK,
    /// or it stayed silent while the client retransmitted its data — and it never
    /// acknowledged the client's data. (A slow application still gets its data ACKed by
    /// the kernel; only a connection dropped from the full accept queue stays silent.)
    pub(crate) fn final_ack_dropped(&self) -> bool {
        if !self.established || self.server_acked_data {
            return false;
        }
        self.synack_after_ack >= 1 || (self.client_data_retrans >= 2 && !self.server_spoke)
    }
}
