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
