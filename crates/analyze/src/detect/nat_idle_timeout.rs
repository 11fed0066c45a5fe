//! `nat_idle_timeout`: a connection stayed silent longer than a timeout on its path and
//! lost its conntrack/NAT entry; when it resumed, its data was answered by a RST (from a
//! host, or a backend that never saw the connection) or not at all.
//!
//! Packets: an open connection (no FIN, no RST) silent for at least 5 s, then data from
//! one side answered by a RST from the other, or retransmitted and never acknowledged.
//! The silence is measured inside the capture, also across the flow table's own idle
//! eviction (the resumed flow is matched to the connection it continues). Alone that is
//! `possible`: the peer may have lost the connection itself (restart, crash). The node's
//! `nf_conntrack_tcp_timeout_established` below the silence makes it `confirmed`: the
//! kernel had expired the entry by then. The pod's `tcp_keepalive_time` and whether the
//! socket had a keepalive timer (sock_diag) say why nothing kept the entry alive.

use super::{Ctx, EvidenceSink, endpoint_text};
use crate::NetnsRole;
use crate::conn_events::{ConnEvents, IdleAnswer};
use crate::flow::Endpoint;
use crate::model::{Confidence, Evidence, Finding, Kind, PacketRef, Timing};

const REMEDY: &str = "Keep idle connections alive below the shortest idle timeout on the path: \
set net.ipv4.tcp_keepalive_time in the pod (a safe sysctl) below it — the field uses 600 s \
against IPVS's 900 s — with net.ipv4.tcp_keepalive_intvl/probes to match, and enable \
SO_KEEPALIVE in the application (or its own pings); or raise the node's \
net.netfilter.nf_conntrack_tcp_timeout_established (kube-proxy `conntrack.tcpEstablishedTimeout`).";

const NODE_TIMEOUT: &str = "sysctl.net.netfilter.nf_conntrack_tcp_timeout_established";

/// Keepalive facts about the pod's sockets between `a` and `b` (either may be the pod).
fn keepalive_note(ctx: &Ctx<'_>, a: Endpoint, b: Endpoint) -> Option<String> {
    let groups: Vec<_> = ctx
        .counters
        .socket_groups(NetnsRole::Pod)
        .filter(|g| {
            [a, b].iter().any(|e| g.addr == e.0 && g.port == e.1) && g.count("ESTABLISHED") > 0
        })
        .collect();
    let g = groups.iter().max_by_key(|g| g.count("ESTABLISHED"))?;
    Some(if g.keepalive == 0 {
        format!(
            "the pod's {} established socket(s) with {} had no keepalive timer (no SO_KEEPALIVE)",
            g.count("ESTABLISHED"),
            endpoint_text((g.addr, g.port))
        )
    } else {
        format!(
            "{} of the pod's {} established socket(s) with {} had a keepalive timer",
            g.keepalive,
            g.count("ESTABLISHED"),
            endpoint_text((g.addr, g.port))
        )
    })
}

/// The finding, if any.
pub(crate) fn finish(ev: &ConnEvents, ctx: &Ctx<'_>) -> Option<Finding> {
    if ev.idle.is_empty() {
        return None;
    }
    let node_timeout_s = ctx.counters.value(NetnsRole::Node, NODE_TIMEOUT);
    let keepalive_s = ctx
        .counters
        .value(NetnsRole::Pod, "sysctl.net.ipv4.tcp_keepalive_time");
    let mut evidence = Evidence::default();
    let mut flows = Vec::new();
    let mut gaps_ms = Vec::new();
    let mut resets = 0u64;
    let mut silent = 0u64;
    let mut keepalive_notes = Vec::new();
    {
        let mut sink = EvidenceSink {
            out: &mut evidence.packets,
            total: &mut evidence.packets_total,
            cap: ctx.max_evidence,
        };
        for e in &ev.idle {
            let from = e.key.endpoint(e.from);
            let to = e.key.endpoint(e.from.other());
            let pref = |number| PacketRef {
                source: e.key.source,
                number,
            };
            let gap_s = e.gap_ns as f64 / 1e9;
            sink.push(
                pref(e.resume_pkt),
                format!("data after {gap_s:.1} s of silence on the connection"),
            );
            match e.answer {
                IdleAnswer::Reset(p) => {
                    resets += 1;
                    sink.push(pref(p), "RST answering the resumed data: no state for this connection on the path or at the peer");
                }
                IdleAnswer::Silent(n) => {
                    silent += 1;
                    evidence.notes.push(format!(
                        "{}: the resumed data was retransmitted {n} time(s) and never acknowledged",
                        endpoint_text(from)
                    ));
                }
            }
            if e.across_eviction {
                evidence.notes.push(format!(
                    "{} -> {}: silent longer than the analyzer's flow idle timeout; the resumed segments were matched to the connection they continue",
                    endpoint_text(from),
                    endpoint_text(to)
                ));
            }
            let f = format!("{} -> {}/tcp", endpoint_text(from), endpoint_text(to));
            if !flows.contains(&f) {
                flows.push(f);
            }
            gaps_ms.push(e.gap_ns as f64 / 1e6);
            if let Some(n) = keepalive_note(ctx, from, to) {
                if !keepalive_notes.contains(&n) {
                    keepalive_notes.push(n);
                }
            }
        }
    }
    evidence.timings.push(Timing {
        what: "silence before the connection resumed".to_string(),
        millis: gaps_ms.clone(),
    });
    let min_gap_s = gaps_ms.iter().copied().fold(f64::INFINITY, f64::min) / 1e3;
    let confirmed = node_timeout_s.is_some_and(|t| (t as f64) < min_gap_s);
    match node_timeout_s {
        Some(t) => evidence.notes.push(format!(
            "node nf_conntrack_tcp_timeout_established = {t} s{}",
            if confirmed {
                ": shorter than the silence, so the node's conntrack had expired the entry"
            } else {
                ": longer than the silence, so the entry was lost elsewhere on the path (a cloud NAT or load balancer idle timeout, IPVS) or by the peer"
            }
        )),
        None => evidence.notes.push(
            "node counters not given: the node's nf_conntrack_tcp_timeout_established was not compared".to_string(),
        ),
    }
    if let Some(k) = keepalive_s {
        evidence.notes.push(format!(
            "pod net.ipv4.tcp_keepalive_time = {k} s{}",
            match node_timeout_s {
                Some(t) if k >= t =>
                    " (not below the node's conntrack timeout: keepalive comes too late)",
                _ => "",
            }
        ));
    }
    evidence.notes.extend(keepalive_notes);
    if let Some(d) = ctx.counters.rise(NetnsRole::Pod, "Tcp.EstabResets") {
        evidence.counters.push(d);
    }
    let answer = match (resets, silent) {
        (r, 0) => format!("answered by RST ({r})"),
        (0, s) => format!("never acknowledged ({s})"),
        (r, s) => format!("answered by RST ({r}) or never acknowledged ({s})"),
    };
    let max_gap_s = gaps_ms.iter().copied().fold(0.0, f64::max) / 1e3;
    let silence = if (max_gap_s - min_gap_s) < 0.5 {
        format!("{min_gap_s:.0} s")
    } else {
        format!("{min_gap_s:.0}–{max_gap_s:.0} s")
    };
    let summary = format!(
        "{} connection(s) resumed after {silence} of silence and were {answer}: the idle connection lost its conntrack/NAT entry{}",
        ev.idle_count,
        if confirmed {
            " (longer than the node's nf_conntrack_tcp_timeout_established)"
        } else {
            ""
        }
    );
    let (confidence, alternative) = if confirmed {
        (Confidence::Confirmed, None)
    } else {
        (
            Confidence::Possible,
            Some(
                "the peer lost the connection itself (restarted, crashed, or dropped it without a FIN); \
                 the idle timeouts on the path settle it: the node's \
                 net.netfilter.nf_conntrack_tcp_timeout_established (and IPVS's `ipvsadm -l --timeout`, \
                 a cloud NAT's idle timeout) against the silence"
                    .to_string(),
            ),
        )
    };
    Some(Finding {
        kind: Kind::NatIdleTimeout,
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
    fn data_after_a_long_silence_answered_by_rst_is_possible() {
        let r = run(&["nat_idle_timeout/pod.pcap"], |_| {});
        let f = finding(&r, Kind::NatIdleTimeout).expect("found");
        assert_eq!(f.confidence, Confidence::Possible);
        let gaps = &f.evidence.timings[0].millis;
        assert!(gaps.iter().all(|g| *g >= 5000.0), "{gaps:?}");
        assert!(
            f.evidence.packets.iter().any(|p| p.role.starts_with("RST")),
            "{:?}",
            f.evidence.packets
        );
        assert!(
            finding(&r, Kind::ConntrackInvalid).is_none(),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn node_timeout_below_the_silence_confirms() {
        let r = run(&["nat_idle_timeout/pod.pcap"], |a| {
            let node = counters(&[(
                "sysctl.net.netfilter.nf_conntrack_tcp_timeout_established",
                3,
            )]);
            a.observe_counters(NetnsRole::Node, Moment::Before, &node);
            a.observe_counters(NetnsRole::Node, Moment::After, &node);
        });
        let f = finding(&r, Kind::NatIdleTimeout).expect("found");
        assert_eq!(f.confidence, Confidence::Confirmed);
    }

    #[test]
    fn node_timeout_above_the_silence_stays_possible() {
        let r = run(&["nat_idle_timeout/pod.pcap"], |a| {
            let node = counters(&[(
                "sysctl.net.netfilter.nf_conntrack_tcp_timeout_established",
                432000,
            )]);
            a.observe_counters(NetnsRole::Node, Moment::Before, &node);
            a.observe_counters(NetnsRole::Node, Moment::After, &node);
        });
        let f = finding(&r, Kind::NatIdleTimeout).expect("found");
        assert_eq!(f.confidence, Confidence::Possible);
    }

    #[test]
    fn silence_across_the_flow_tables_idle_eviction_is_still_seen() {
        // An idle timeout shorter than the silence closes the flow; the resumed segment
        // opens a new one, which must still be recognised as the same connection.
        let mut a =
            crate::Analyzer::new(crate::Config::default().with_flow_idle_timeout_ns(2_000_000_000));
        a.begin_source("nat_idle_timeout/pod.pcap");
        for (ts, link, bytes) in crate::testutil::packets("nat_idle_timeout/pod.pcap") {
            a.feed(ts, link, &bytes);
        }
        let r = a.finish();
        let f = finding(&r, Kind::NatIdleTimeout).expect("found");
        assert!(
            f.evidence
                .notes
                .iter()
                .any(|n| n.contains("flow idle timeout")),
            "{:?}",
            f.evidence.notes
        );
    }

    #[test]
    fn a_short_silence_answered_normally_is_healthy() {
        let r = run(&["healthy_idle/pod.pcap"], |_| {});
        assert!(r.findings.is_empty(), "{:?}", r.findings);
    }
}
