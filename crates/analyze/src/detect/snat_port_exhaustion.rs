//! `snat_port_exhaustion`: SNAT source ports collide or run out (DETECTION.md §3).
//!
//! From the pod's side, SYNs to one *remote* destination from distinct ports get no
//! SYN-ACK and are retransmitted while other connections to it succeed. A pcap cannot
//! tell this from the remote listener's accept queue overflowing, so alone it is
//! `possible` and says so; a rise of the node's conntrack `insert_failed` or `drop`
//! makes it `confirmed`.

use super::{Ctx, EvidenceSink, endpoint_text, flow_text};
use crate::NetnsRole;
use crate::destinations::Destinations;
use crate::model::{Confidence, Evidence, Finding, Kind, Timing};

const REMEDY: &str = "Use `MASQUERADE --random-fully` (or more SNAT addresses) on the node, and \
pool and keep connections alive so fewer flows need a port. (The pod's \
net.ipv4.ip_local_port_range does not help here: MASQUERADE picks its own ports.)";

const SETTLE: &str = "the node's conntrack counters settle it: `insert_failed` and `drop` in \
/proc/net/stat/nf_conntrack (`conntrack -S`) of the node netns rise with SNAT clashes";

/// The finding, if any.
pub(crate) fn finish(dests: &Destinations, ctx: &Ctx<'_>) -> Option<Finding> {
    // Several destinations failing at once, or a node table proven full, without SNAT
    // clashes (`insert_failed`), is conntrack_table_full's diagnosis, not this one.
    let clashes = ctx
        .counters
        .rise(NetnsRole::Node, "conntrack.insert_failed")
        .is_some();
    if !clashes
        && (super::conntrack_table_full::proven(ctx)
            || super::conntrack_table_full::packets_show_it(dests, ctx))
    {
        return None;
    }
    let pod_overflow = ctx.counters.rise(NetnsRole::Pod, "TcpExt.ListenOverflows");
    let mut evidence = Evidence::default();
    let mut flows = Vec::new();
    let mut dropped = 0u64;
    let mut answered = 0u64;
    let mut dest_names = Vec::new();
    let mut keys: Vec<_> = dests.map.keys().copied().collect();
    keys.sort();
    {
        let mut sink = EvidenceSink {
            out: &mut evidence.packets,
            total: &mut evidence.packets_total,
            cap: ctx.max_evidence,
        };
        for key in &keys {
            let Some(d) = dests.map.get(key) else {
                continue;
            };
            let (source, server) = *key;
            if d.unanswered_after_success == 0 {
                continue;
            }
            match ctx.server_is_local(source, server, d) {
                Some(true) => continue,
                None if pod_overflow.is_some() => continue,
                _ => {}
            }
            dropped += d.unanswered_after_success;
            answered += d.answered;
            dest_names.push(endpoint_text(server));
            for (p, role) in &d.packets {
                sink.push(*p, *role);
            }
            for (c, s) in &d.flows {
                flows.push(flow_text(*c, *s, "tcp"));
            }
            if !d.gaps_ms.is_empty() && evidence.timings.len() < 4 {
                evidence.timings.push(Timing {
                    what: format!("SYN retransmission gaps to {}", endpoint_text(server)),
                    millis: d.gaps_ms.clone(),
                });
            }
            evidence.notes.push(format!(
                "{}: {} attempt(s) from {} distinct pod port(s) unanswered while {} succeeded",
                endpoint_text(server),
                d.unanswered_after_success,
                d.flows.len(),
                d.answered
            ));
        }
    }
    if flows.is_empty() {
        return None;
    }
    let rises: Vec<_> = ["conntrack.insert_failed", "conntrack.drop"]
        .iter()
        .filter_map(|k| ctx.counters.rise(NetnsRole::Node, k))
        .collect();
    for k in ["conntrack.early_drop", "conntrack.clash_resolve"] {
        if let Some(d) = ctx.counters.rise(NetnsRole::Node, k) {
            evidence.counters.push(d);
        }
    }
    if let Some(d) = ctx.counters.rise(NetnsRole::Pod, "TcpExt.TCPSynRetrans") {
        evidence.counters.push(d);
    }
    let confirmed = !rises.is_empty();
    let node_given = ctx.counters.has(NetnsRole::Node);
    evidence.counters.splice(0..0, rises);
    let dests_text = dest_names.join(", ");
    let (confidence, alternative) = if confirmed {
        (Confidence::Confirmed, None)
    } else if node_given {
        (
            Confidence::Possible,
            Some(format!(
                "the remote listener at {dests_text} overflowing its accept queue; the node's conntrack insert_failed/drop did not rise in the snapshots, which points there rather than at SNAT"
            )),
        )
    } else {
        (
            Confidence::Possible,
            Some(format!(
                "the remote listener at {dests_text} overflowing its accept queue (a pcap cannot tell them apart); {SETTLE}"
            )),
        )
    };
    let summary = format!(
        "{dropped} connection attempt(s) to {dests_text} got no SYN-ACK while {answered} other(s) succeeded: SNAT port clash/exhaustion{}",
        if confirmed {
            " (node conntrack insert_failed/drop rose)"
        } else {
            " suspected"
        }
    );
    Some(Finding {
        kind: Kind::SnatPortExhaustion,
        confidence,
        summary,
        flows,
        listeners: Vec::new(),
        names: Vec::new(),
        evidence,
        remedy: REMEDY.to_string(),
        alternative,
    })
}

#[cfg(test)]
mod tests {
    use crate::testutil::{counters, finding, run};
    use crate::{Confidence, Kind, Moment, NetnsRole};

    #[test]
    fn pod_side_unanswered_syns_are_possible_and_name_the_alternative() {
        let r = run(&["snat_exhaustion/pod.pcap"], |_| {});
        let f = finding(&r, Kind::SnatPortExhaustion).expect("found");
        assert_eq!(f.confidence, Confidence::Possible);
        let alt = f.alternative.as_deref().expect("alternative named");
        assert!(alt.contains("accept queue"), "{alt}");
        assert!(alt.contains("insert_failed"), "{alt}");
        assert!(
            f.flows.iter().all(|fl| fl.ends_with("172.31.0.2:80/tcp")),
            "{:?}",
            f.flows
        );
        assert!(finding(&r, Kind::AcceptQueueOverflow).is_none());
    }

    #[test]
    fn node_insert_failed_rise_confirms() {
        let r = run(&["snat_exhaustion/pod.pcap"], |a| {
            let before = counters(&[("conntrack.insert_failed", 0), ("conntrack.drop", 0)]);
            let after = counters(&[("conntrack.insert_failed", 16), ("conntrack.drop", 16)]);
            a.observe_counters(NetnsRole::Node, Moment::Before, &before);
            a.observe_counters(NetnsRole::Node, Moment::After, &after);
        });
        let f = finding(&r, Kind::SnatPortExhaustion).expect("found");
        assert_eq!(f.confidence, Confidence::Confirmed);
        assert!(f.alternative.is_none());
        let keys: Vec<&str> = f.evidence.counters.iter().map(|c| c.key.as_str()).collect();
        assert!(keys.contains(&"conntrack.insert_failed"), "{keys:?}");
    }

    #[test]
    fn flat_node_counters_keep_it_possible_and_point_at_the_listener() {
        let r = run(&["snat_exhaustion/pod.pcap"], |a| {
            let same = counters(&[("conntrack.insert_failed", 4), ("conntrack.drop", 4)]);
            a.observe_counters(NetnsRole::Node, Moment::Before, &same);
            a.observe_counters(NetnsRole::Node, Moment::After, &same);
        });
        let f = finding(&r, Kind::SnatPortExhaustion).expect("found");
        assert_eq!(f.confidence, Confidence::Possible);
        assert!(
            f.alternative
                .as_deref()
                .is_some_and(|a| a.contains("did not rise"))
        );
    }

    #[test]
    fn all_connections_succeeding_is_healthy() {
        let r = run(&["healthy_snat/pod.pcap", "healthy_snat/node.pcap"], |_| {});
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(
            r.tcp.handshakes, 40,
            "20 connects seen at both capture points"
        );
    }
}
