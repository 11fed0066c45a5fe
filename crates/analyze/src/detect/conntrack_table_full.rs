//! `conntrack_table_full`: the node's conntrack table is full, so the first packet of
//! every new flow is dropped (kernel log `nf_conntrack: table full, dropping packet`).
//!
//! Packets (pod side): connection attempts towards *several* remote destinations at once
//! (their retransmitted SYNs overlap in time) retransmit their SYNs and get no SYN-ACK — unlike SNAT exhaustion, which hits one
//! destination at a time. Alone that is `possible` (each destination could be dropping on
//! its own). Counters: the node's `nf_conntrack_count` at ≥ 90 % of `nf_conntrack_max`
//! together with a rise of conntrack `drop` (no room, nothing evictable) or `early_drop`
//! (room made by evicting unreplied entries) make it `confirmed`, with or without packets.

use super::{Ctx, EvidenceSink, endpoint_text, flow_text};
use crate::NetnsRole;
use crate::destinations::Destinations;
use crate::flow::Endpoint;
use crate::model::{Confidence, CounterDelta, Evidence, Finding, Kind, Timing};

const REMEDY: &str = "Size the node's table to its load: raise net.netfilter.nf_conntrack_max \
(kube-proxy `conntrack.maxPerCore`/`conntrack.min`) together with nf_conntrack_buckets (about \
max/4 or more), and shorten net.netfilter.nf_conntrack_tcp_timeout_established (kube-proxy \
`conntrack.tcpEstablishedTimeout`) so dead connections leave the table sooner; find what opens \
so many flows (`conntrack -L | awk …`, `conntrack -S`).";

const COUNT: &str = "sysctl.net.netfilter.nf_conntrack_count";
const MAX: &str = "sysctl.net.netfilter.nf_conntrack_max";

/// `count / max` at or above which the table counts as full (the kernel drops at
/// `count > max`; the snapshot is taken a moment later).
const FULL_PERCENT: u64 = 90;

/// The node's table fill in the snapshots, `(count, max)` at its fullest, when both are
/// known and the count is within [`FULL_PERCENT`] of the max.
pub(crate) fn node_table_full(ctx: &Ctx<'_>) -> Option<(u64, u64)> {
    let c = &ctx.counters;
    let max = c.value(NetnsRole::Node, MAX).filter(|m| *m > 0)?;
    let count = [&c.node_before, &c.node_after]
        .into_iter()
        .flatten()
        .filter_map(|s| s.values.get(COUNT).copied())
        .max()?;
    (count.saturating_mul(100) >= max.saturating_mul(FULL_PERCENT)).then_some((count, max))
}

/// The counters that show the kernel dropping or evicting for lack of room.
fn drop_rises(ctx: &Ctx<'_>) -> Vec<CounterDelta> {
    ["conntrack.drop", "conntrack.early_drop"]
        .iter()
        .filter_map(|k| ctx.counters.rise(NetnsRole::Node, k))
        .collect()
}

/// Whether the node's counters prove a full table during the capture.
pub(crate) fn proven(ctx: &Ctx<'_>) -> bool {
    node_table_full(ctx).is_some() && !drop_rises(ctx).is_empty()
}

/// Remote destinations with unanswered, retransmitted connection attempts whose SYNs
/// overlap in time with another such destination's ("at once"), sorted.
pub(crate) fn unanswered_remote(dests: &Destinations, ctx: &Ctx<'_>) -> Vec<(u16, Endpoint)> {
    let mut spans: Vec<((u16, Endpoint), (u64, u64))> = dests
        .map
        .iter()
        .filter(|(k, d)| d.unanswered > 0 && ctx.server_is_local(k.0, k.1, d) != Some(true))
        .filter_map(|(k, d)| d.unanswered_span.map(|s| (*k, s)))
        .collect();
    spans.sort_by_key(|(k, (start, _))| (*start, *k));
    let mut keys = Vec::new();
    for (i, (k, (start, end))) in spans.iter().enumerate() {
        let overlaps = spans
            .iter()
            .enumerate()
            .any(|(j, (_, (s2, e2)))| j != i && *s2 <= *end && *start <= *e2);
        if overlaps {
            keys.push(*k);
        }
    }
    keys.sort();
    keys
}

/// Whether the packets show the table-full signature: several destinations failing at once.
pub(crate) fn packets_show_it(dests: &Destinations, ctx: &Ctx<'_>) -> bool {
    unanswered_remote(dests, ctx).len() >= 2
}

/// The finding, if any.
pub(crate) fn finish(dests: &Destinations, ctx: &Ctx<'_>) -> Option<Finding> {
    let keys = unanswered_remote(dests, ctx);
    let full = node_table_full(ctx);
    let rises = drop_rises(ctx);
    let confirmed = full.is_some() && !rises.is_empty();
    let node_given = ctx.counters.has(NetnsRole::Node);
    if !confirmed && (keys.len() < 2 || (node_given && full.is_none())) {
        // One destination is SNAT's or the listener's business; node counters that show
        // room in the table rule this diagnosis out.
        return None;
    }
    let mut evidence = Evidence::default();
    let mut flows = Vec::new();
    let mut attempts = 0u64;
    let mut names = Vec::new();
    if keys.len() >= 2 || confirmed {
        let mut sink = EvidenceSink {
            out: &mut evidence.packets,
            total: &mut evidence.packets_total,
            cap: ctx.max_evidence,
        };
        for key in &keys {
            let Some(d) = dests.map.get(key) else {
                continue;
            };
            attempts += d.unanswered;
            names.push(endpoint_text(key.1));
            for (p, role) in &d.packets {
                sink.push(*p, *role);
            }
            for (c, s) in &d.flows {
                flows.push(flow_text(*c, *s, "tcp"));
            }
            if !d.gaps_ms.is_empty() && evidence.timings.len() < 4 {
                evidence.timings.push(Timing {
                    what: format!("SYN retransmission gaps to {}", endpoint_text(key.1)),
                    millis: d.gaps_ms.clone(),
                });
            }
        }
    }
    if let Some((count, max)) = full {
        evidence.notes.push(format!(
            "node nf_conntrack_count {count} of nf_conntrack_max {max} ({}%)",
            count.saturating_mul(100) / max.max(1)
        ));
    }
    if let Some(b) = ctx
        .counters
        .value(NetnsRole::Node, "sysctl.net.netfilter.nf_conntrack_buckets")
    {
        evidence
            .notes
            .push(format!("node nf_conntrack_buckets = {b}"));
    }
    if let Some(t) = ctx.counters.value(
        NetnsRole::Node,
        "sysctl.net.netfilter.nf_conntrack_tcp_timeout_established",
    ) {
        evidence
            .notes
            .push(format!("node nf_conntrack_tcp_timeout_established = {t} s"));
    }
    evidence.counters = rises;
    if let Some(d) = ctx.counters.rise(NetnsRole::Pod, "TcpExt.TCPSynRetrans") {
        evidence.counters.push(d);
    }
    let dest_text = if names.is_empty() {
        String::new()
    } else {
        format!(
            ": {attempts} connection attempt(s) to {} destinations ({}) got no SYN-ACK",
            names.len(),
            names.join(", ")
        )
    };
    let (confidence, alternative, summary) = if confirmed {
        let (count, max) = full.unwrap_or((0, 0));
        (
            Confidence::Confirmed,
            None,
            format!(
                "node conntrack table full ({count}/{max} entries, conntrack drop/early_drop rose): new flows are dropped{dest_text}"
            ),
        )
    } else {
        (
            Confidence::Possible,
            Some(
                "each destination dropping SYNs on its own (full listeners, a firewall, a route), \
                 or SNAT port exhaustion towards each of them; the node's counters settle it: \
                 nf_conntrack_count against nf_conntrack_max and a rise of `drop`/`early_drop` in \
                 /proc/net/stat/nf_conntrack (`conntrack -S`) mean a full table, `insert_failed` \
                 means SNAT clashes"
                    .to_string(),
            ),
            format!(
                "new connections fail towards several destinations at once{dest_text}: consistent with a full conntrack table on the node"
            ),
        )
    };
    Some(Finding {
        kind: Kind::ConntrackTableFull,
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
    fn syns_unanswered_towards_several_destinations_are_possible() {
        let r = run(&["conntrack_table_full/pod.pcap"], |_| {});
        let f = finding(&r, Kind::ConntrackTableFull).expect("found");
        assert_eq!(f.confidence, Confidence::Possible);
        assert!(
            f.alternative
                .as_deref()
                .is_some_and(|a| a.contains("nf_conntrack_max"))
        );
        let dests: std::collections::BTreeSet<&str> = f
            .flows
            .iter()
            .filter_map(|fl| fl.split(" -> ").nth(1))
            .collect();
        assert!(dests.len() >= 2, "{dests:?}");
        assert!(
            finding(&r, Kind::SnatPortExhaustion).is_none(),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn full_node_table_and_drop_rise_confirm() {
        let r = run(&["conntrack_table_full/pod.pcap"], |a| {
            let before = counters(&[
                ("sysctl.net.netfilter.nf_conntrack_count", 64),
                ("sysctl.net.netfilter.nf_conntrack_max", 64),
                ("conntrack.drop", 0),
                ("conntrack.insert_failed", 0),
            ]);
            let after = counters(&[
                ("sysctl.net.netfilter.nf_conntrack_count", 64),
                ("sysctl.net.netfilter.nf_conntrack_max", 64),
                ("conntrack.drop", 21),
                ("conntrack.insert_failed", 0),
            ]);
            a.observe_counters(NetnsRole::Node, Moment::Before, &before);
            a.observe_counters(NetnsRole::Node, Moment::After, &after);
        });
        let f = finding(&r, Kind::ConntrackTableFull).expect("found");
        assert_eq!(f.confidence, Confidence::Confirmed);
        assert!(f.summary.contains("64/64"), "{}", f.summary);
        assert!(
            finding(&r, Kind::SnatPortExhaustion).is_none(),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn room_in_the_node_table_rules_it_out() {
        let r = run(&["conntrack_table_full/pod.pcap"], |a| {
            let c = counters(&[
                ("sysctl.net.netfilter.nf_conntrack_count", 10),
                ("sysctl.net.netfilter.nf_conntrack_max", 262144),
                ("conntrack.drop", 0),
            ]);
            a.observe_counters(NetnsRole::Node, Moment::Before, &c);
            a.observe_counters(NetnsRole::Node, Moment::After, &c);
        });
        assert!(finding(&r, Kind::ConntrackTableFull).is_none());
    }

    #[test]
    fn failures_an_hour_apart_are_not_at_once() {
        // The recording's attempts to :80 as they were, those to :81 an hour later
        // (same bytes, re-timed), those to :82 left out.
        let mut a = crate::Analyzer::new(crate::Config::default());
        a.begin_source("conntrack_table_full/pod.pcap (re-timed)");
        for (ts, link, bytes) in crate::testutil::packets("conntrack_table_full/pod.pcap") {
            let frame =
                netdiag_wire::Frame::parse(netdiag_wire::LinkType::from_linktype(link), &bytes);
            let Some(netdiag_wire::Transport::Tcp(t)) = frame.transport else {
                continue;
            };
            match (t.src_port.min(t.dst_port), t.src_port.max(t.dst_port)) {
                (80, _) | (_, 80) => a.feed(ts, link, &bytes),
                (81, _) | (_, 81) => a.feed(ts + 3_600_000_000_000, link, &bytes),
                _ => {}
            }
        }
        let r = a.finish();
        assert!(
            finding(&r, Kind::ConntrackTableFull).is_none(),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn one_destination_is_not_a_full_table() {
        let r = run(&["snat_exhaustion/pod.pcap"], |_| {});
        assert!(
            finding(&r, Kind::ConntrackTableFull).is_none(),
            "{:?}",
            r.findings
        );
        assert!(finding(&r, Kind::SnatPortExhaustion).is_some());
    }
}
