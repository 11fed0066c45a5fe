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
//!
//! Seen from the pod alone, the SNAT case shows only its aftermath: the pod's next data on
//! an established connection is answered by a RST from the peer. Any abort looks like
//! that, so without counters it is not claimed; with a rise of the node's conntrack
//! `invalid` during the capture it is reported as `possible`, naming the alternative.

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

/// A RST answering data mid-connection: (flow, RST packet, who sent it).
type Aftermath = (FlowKey, u64, crate::flow::Side);

/// Events recorded while feeding.
#[derive(Default)]
pub(crate) struct ConntrackInvalid {
    events: Vec<Recorded>,
    pub(crate) count: u64,
    /// RSTs answering data on established connections, with no INVALID signature.
    aftermath: Vec<Aftermath>,
    aftermath_count: u64,
}

impl ConntrackInvalid {
    /// Most heap bytes the recorded events take.
    pub(crate) fn bytes_bound() -> usize {
        crate::bounds::vec_bytes::<Recorded>(MAX_EVENTS)
            + crate::bounds::vec_bytes::<Aftermath>(MAX_EVENTS)
    }

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

    /// A RST from `from` answering data on an established connection: what the pod
    /// sees after the node dropped reverse NAT for an INVALID segment (SNAT case).
    pub(crate) fn on_reset_of_data(&mut self, key: FlowKey, pkt: u64, from: crate::flow::Side) {
        self.aftermath_count += 1;
        if self.aftermath.len() < MAX_EVENTS {
            self.aftermath.push((key, pkt, from));
        }
    }

    /// Only the aftermath was seen (the node's side of the NAT was not captured): a
    /// `possible` finding when the node's conntrack counted INVALID packets meanwhile.
    fn finish_aftermath(&self, ctx: &Ctx<'_>) -> Option<Finding> {
        let rise = ctx.counters.rise(NetnsRole::Node, "conntrack.invalid")?;
        if self.aftermath.is_empty() {
            return None;
        }
        let mut evidence = Evidence::default();
        let mut flows = Vec::new();
        {
            let mut sink = EvidenceSink {
                out: &mut evidence.packets,
                total: &mut evidence.packets_total,
                cap: ctx.max_evidence,
            };
            for (key, pkt, from) in &self.aftermath {
                let src = key.endpoint(*from);
                let dst = key.endpoint(from.other());
                sink.push(
                    PacketRef {
                        source: key.source,
                        number: *pkt,
                    },
                    format!(
                        "RST from {} answering data on an established connection",
                        endpoint_text(src)
                    ),
                );
                let f = format!("{} -> {}/tcp", endpoint_text(dst), endpoint_text(src));
                if !flows.contains(&f) {
                    flows.push(f);
                }
            }
        }
        evidence.counters.push(rise);
        evidence.notes.push(
            "the out-of-window segment and the node's RST are on the node's side of the NAT, \
             outside this capture: capture the node's uplink to confirm"
                .to_string(),
        );
        let summary = format!(
            "{} established connection(s) reset in answer to data ({}) while the node's conntrack counted INVALID packets: \
             consistent with an out-of-window segment whose reverse NAT was skipped",
            self.aftermath_count,
            flows.first().map(String::as_str).unwrap_or("?"),
        );
        Some(Finding {
            kind: Kind::ConntrackInvalid,
            confidence: Confidence::Possible,
            summary,
            flows,
            listeners: Vec::new(),
            names: Vec::new(),
            evidence,
            remedy: REMEDY.to_string(),
            alternative: Some(
                "the peer aborted the connection itself (application reset, closed socket with \
                 unread data), and the node's INVALID count comes from other traffic"
                    .to_string(),
            ),
        })
    }

    /// The finding, if any.
    pub(crate) fn finish(&self, ctx: &Ctx<'_>) -> Option<Finding> {
        if self.events.is_empty() {
            return self.finish_aftermath(ctx);
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

#[cfg(test)]
mod tests {
    use crate::testutil::{counters, finding, packet, packets, run};
    use crate::{Confidence, Kind, Moment, NetnsRole};
    use netdiag_wire::{Frame, LinkType, Transport};

    fn tcp(pkt: &crate::testutil::Pkt) -> netdiag_wire::TcpSegment<'_> {
        match Frame::parse(LinkType::from_linktype(pkt.1), &pkt.2).transport {
            Some(Transport::Tcp(t)) => t,
            other => panic!("evidence packet is not TCP: {other:?}"),
        }
    }

    #[test]
    fn node_capture_out_of_window_segment_answered_by_rst_is_likely() {
        let file = "conntrack_invalid/node.pcap";
        let r = run(&[file], |_| {});
        let f = finding(&r, Kind::ConntrackInvalid).expect("conntrack_invalid found");
        assert_eq!(f.confidence, Confidence::Likely);
        // The evidence is the injected segment and the node's RST, in that order: the
        // RST's SEQ is the segment's ACK and the segment lies ~2^30 beyond the window.
        let pkts = packets(file);
        let ev = &f.evidence.packets;
        assert!(ev.len() >= 2, "{ev:?}");
        let bogus = tcp(packet(&pkts, ev[0].packet.number));
        let rst = tcp(packet(&pkts, ev[1].packet.number));
        assert!(rst.flags.rst() && !bogus.flags.rst());
        assert_eq!(rst.seq, bogus.ack);
        assert!(bogus.payload_len > 0);
        assert!(ev[0].role.contains("out of window"), "{}", ev[0].role);
        // The peer's RST that killed the connection afterwards is listed too.
        assert!(ev.iter().any(|p| p.role.contains("peer resets")), "{ev:?}");
    }

    #[test]
    fn node_invalid_counter_rise_confirms() {
        let r = run(&["conntrack_invalid/node.pcap"], |a| {
            a.observe_counters(
                NetnsRole::Node,
                Moment::Before,
                &counters(&[("conntrack.invalid", 3)]),
            );
            a.observe_counters(
                NetnsRole::Node,
                Moment::After,
                &counters(&[("conntrack.invalid", 5)]),
            );
        });
        let f = finding(&r, Kind::ConntrackInvalid).expect("found");
        assert_eq!(f.confidence, Confidence::Confirmed);
        assert_eq!(f.evidence.counters[0].key, "conntrack.invalid");
        assert_eq!(
            (f.evidence.counters[0].before, f.evidence.counters[0].after),
            (3, 5)
        );
    }

    #[test]
    fn service_variant_in_pod_capture_names_backend_and_vip() {
        let file = "conntrack_invalid_service/pod.pcap";
        let r = run(&[file], |_| {});
        let f = finding(&r, Kind::ConntrackInvalid).expect("found");
        assert_eq!(f.confidence, Confidence::Likely);
        let first = &f.evidence.packets[0];
        assert!(
            first.role.contains("backend 172.31.0.2:9000"),
            "{}",
            first.role
        );
        assert!(first.role.contains("10.96.0.10:80"), "{}", first.role);
        let pkts = packets(file);
        let stray = tcp(packet(&pkts, first.packet.number));
        let rst = tcp(packet(&pkts, f.evidence.packets[1].packet.number));
        assert_eq!(rst.seq, stray.ack);
    }

    #[test]
    fn healthy_connections_and_closes_are_not_invalid() {
        for file in [
            "healthy_http/pod.pcap",
            "healthy_listener/pod.pcap",
            "healthy_snat/node.pcap",
        ] {
            let r = run(&[file], |_| {});
            assert!(
                finding(&r, Kind::ConntrackInvalid).is_none(),
                "{file}: {:?}",
                r.findings
            );
        }
    }

    #[test]
    fn pod_side_of_the_snat_case_with_node_invalid_rise_is_possible() {
        let file = "conntrack_invalid/pod.pcap";
        let r = run(&[file], |a| {
            a.observe_counters(
                NetnsRole::Node,
                Moment::Before,
                &counters(&[("conntrack.invalid", 0)]),
            );
            a.observe_counters(
                NetnsRole::Node,
                Moment::After,
                &counters(&[("conntrack.invalid", 2)]),
            );
        });
        let f = finding(&r, Kind::ConntrackInvalid).expect("found");
        assert_eq!(f.confidence, Confidence::Possible);
        assert!(f.alternative.is_some());
        assert_eq!(f.evidence.counters[0].key, "conntrack.invalid");
        // The evidence is the peer's RST, answering the pod's data.
        let pkts = packets(file);
        let rst = tcp(packet(&pkts, f.evidence.packets[0].packet.number));
        assert!(rst.flags.rst());
        // Without a rise, nothing.
        let r = run(&[file], |a| {
            for m in [Moment::Before, Moment::After] {
                a.observe_counters(NetnsRole::Node, m, &counters(&[("conntrack.invalid", 2)]));
            }
        });
        assert!(
            finding(&r, Kind::ConntrackInvalid).is_none(),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn pod_side_alone_of_the_snat_case_is_not_claimed() {
        // The pod only sees its next data reset by the peer: that could be any abort.
        let r = run(&["conntrack_invalid/pod.pcap"], |_| {});
        assert!(
            finding(&r, Kind::ConntrackInvalid).is_none(),
            "{:?}",
            r.findings
        );
    }
}
