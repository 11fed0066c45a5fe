//! `conntrack_invalid`: conntrack rejected an out-of-window segment, reverse NAT was
//! skipped, and the host answered with a RST that kills the real connection
//! (DETECTION.md §1).
//!
//! Packets: a segment whose SEQ (or ACK) lies far beyond what the receiver advertised
//! (both SYNs seen, so window scaling is known), answered within 200 ms by a RST from the
//! other side whose SEQ equals that segment's ACK — the RST a host sends when no socket
//! matches. A normal TCP stack answers an out-of-window segment with a duplicate ACK,
//! never a RST, so the pair is `likely`; a rise of conntrack `invalid` (node, or pod)
//! makes it `confirmed`.

use super::{Ctx, EvidenceSink, endpoint_text};
use crate::NetnsRole;
use crate::flow::{Endpoint, FlowKey};
use crate::model::{Confidence, Evidence, Finding, Kind, PacketRef, Timing};
use crate::tcp::InvalidEvent;

const REMEDY: &str = "On the nodes set `sysctl -w net.netfilter.nf_conntrack_tcp_be_liberal=1` \
(kube-proxy `conntrack.tcpBeLiberal`), or drop INVALID packets before they reach the host stack: \
`iptables -I FORWARD -m conntrack --ctstate INVALID -j DROP` (and INPUT for hostNetwork/NodePort). \
Kernels >= 6.1 no longer treat retransmissions below the window as INVALID.";

/// Most events kept as evidence.
const MAX_EVENTS: usize = 32;

/// One recorded event: the flow, the packets, the peer's later RST, and for the Service
/// variant the address the local end was really talking to (the VIP).
type Recorded = (FlowKey, InvalidEvent, Option<u64>, Option<Endpoint>);

/// Events recorded while feeding.
#[derive(Default)]
pub(crate) struct ConntrackInvalid {
    events: Vec<Recorded>,
    pub(crate) count: u64,
}

impl ConntrackInvalid {
    /// An out-of-window segment answered by a no-socket RST.
    pub(crate) fn on_event(&mut self, key: FlowKey, ev: InvalidEvent) {
        self.count += 1;
        if self.events.len() < MAX_EVENTS {
            self.events.push((key, ev, None, None));
        }
    }

    /// The Service variant: a segment from a backend address (reverse DNAT skipped)
    /// answered by the local host's RST, while the local end talks to `vip`.
    pub(crate) fn on_unnatted(&mut self, key: FlowKey, ev: InvalidEvent, vip: Endpoint) {
        self.count += 1;
        if self.events.len() < MAX_EVENTS {
            self.events.push((key, ev, None, Some(vip)));
        }
    }

    /// The peer's RST that followed (the connection dying), for a recorded event.
    pub(crate) fn on_peer_rst(&mut self, key: FlowKey, pkt: u64) {
        if let Some(e) = self.events.iter_mut().find(|e| e.0 == key && e.2.is_none()) {
            e.2 = Some(pkt);
        }
    }

    /// The finding, if any.
    pub(crate) fn finish(&self, ctx: &Ctx<'_>) -> Option<Finding> {
        if self.events.is_empty() {
            return None;
        }
        let mut evidence = Evidence::default();
        let mut flows = Vec::new();
        let mut gaps = Vec::new();
        {
            let mut sink = EvidenceSink {
                out: &mut evidence.packets,
                total: &mut evidence.packets_total,
                cap: ctx.max_evidence,
            };
            for (key, ev, peer, vip) in &self.events {
                let from = ev.suspect.from.unwrap_or(ev.rst_from.other());
                let src = key.endpoint(from);
                let dst = key.endpoint(ev.rst_from);
                let source = key.source;
                let role = match vip {
                    Some(vip) => format!(
                        "segment from backend {} continuing the connection with {}: conntrack INVALID, reverse NAT skipped",
                        endpoint_text(src),
                        endpoint_text(*vip)
                    ),
                    None => format!(
                        "segment {} bytes out of window ({}): conntrack INVALID",
                        ev.suspect.excess,
                        if ev.suspect.seq_over {
                            "SEQ over the upper bound"
                        } else {
                            "ACK over the upper bound"
                        }
                    ),
                };
                sink.push(
                    PacketRef {
                        source,
                        number: ev.suspect.pkt,
                    },
                    role,
                );
                sink.push(
                    PacketRef {
                        source,
                        number: ev.rst_pkt,
                    },
                    format!(
                        "RST from {} answering it (SEQ = its ACK): no socket, reverse NAT skipped",
                        endpoint_text(dst)
                    ),
                );
                if let Some(p) = peer {
                    sink.push(
                        PacketRef { source, number: *p },
                        "peer resets the connection afterwards",
                    );
                }
                gaps.push(ev.rst_ns.saturating_sub(ev.suspect.ns) as f64 / 1e6);
                let f = format!("{} -> {}/tcp", endpoint_text(src), endpoint_text(dst));
                if !flows.contains(&f) {
                    flows.push(f);
                }
            }
        }
        evidence.timings.push(Timing {
            what: "out-of-window segment to RST".to_string(),
            millis: gaps,
        });
        let mut confidence = Confidence::Likely;
        for role in [NetnsRole::Node, NetnsRole::Pod] {
            if let Some(d) = ctx.counters.rise(role, "conntrack.invalid") {
                confidence = Confidence::Confirmed;
                evidence.counters.push(d);
            }
        }
        if let Some(v) = ctx.counters.value(
            NetnsRole::Node,
            "sysctl.net.netfilter.nf_conntrack_tcp_be_liberal",
        ) {
            evidence
                .notes
                .push(format!("node nf_conntrack_tcp_be_liberal = {v}"));
        }
        let summary = format!(
            "{} out-of-window segment(s) answered by a host RST on {} ({}): conntrack marked them INVALID and skipped reverse NAT",
            self.count,
            flows.first().map(String::as_str).unwrap_or("?"),
            if flows.len() > 1 {
                format!("{} flows", flows.len())
            } else {
                "1 flow".to_string()
            }
        );
        Some(Finding {
            kind: Kind::ConntrackInvalid,
            confidence,
            summary,
            flows,
            listeners: Vec::new(),
            names: Vec::new(),
            evidence,
            remedy: REMEDY.to_string(),
            alternative: None,
        })
    }
}
