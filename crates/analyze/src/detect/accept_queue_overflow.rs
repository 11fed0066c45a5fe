//! `accept_queue_overflow`: a listener's backlog is full (DETECTION.md §2).
//!
//! Packets: (a) SYNs to a *local* listener retransmitted without a SYN-ACK after earlier
//! attempts to the same port were answered; (b) the server re-sends its SYN-ACK after the
//! client's final ACK and never acknowledges the client's data (the final ACK was dropped).
//! Either is `likely`. A `TcpExt.ListenOverflows` rise in the pod makes it `confirmed`,
//! and on its own (no packets) still proves an overflow happened.

use super::{Ctx, EvidenceSink, endpoint_text, flow_text};
use crate::NetnsRole;
use crate::destinations::Destinations;
use crate::model::{Confidence, Evidence, Finding, Kind, ListenerRef, Timing};

const REMEDY: &str = "Raise the listener's backlog (e.g. nginx `listen … backlog=`) together with \
net.core.somaxconn in the pod (an unsafe sysctl: kubelet --allowed-unsafe-sysctls), make the \
application accept faster, and avoid net.ipv4.tcp_abort_on_overflow=1.";

/// The finding, if any.
pub(crate) fn finish(dests: &Destinations, ctx: &Ctx<'_>) -> Option<Finding> {
    let overflow = ctx.counters.rise(NetnsRole::Pod, "TcpExt.ListenOverflows");
    let mut evidence = Evidence::default();
    let mut flows = Vec::new();
    let mut listeners: Vec<ListenerRef> = Vec::new();
    let mut silent_drops = 0u64;
    let mut dropped_acks = 0u64;
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
            let local = ctx.server_is_local(source, server, d);
            let case_a = d.unanswered_after_success > 0
                && (local == Some(true) || (local.is_none() && overflow.is_some()));
            let case_b = d.final_ack_dropped > 0;
            if !case_a && !case_b {
                continue;
            }
            if case_a {
                silent_drops += d.unanswered_after_success;
            }
            dropped_acks += d.final_ack_dropped;
            for (p, role) in &d.packets {
                sink.push(*p, *role);
            }
            for (c, s) in &d.flows {
                flows.push(flow_text(*c, *s, "tcp"));
            }
            if case_a && !d.gaps_ms.is_empty() && evidence.timings.len() < 4 {
                evidence.timings.push(Timing {
                    what: format!("SYN retransmission gaps to {}", endpoint_text(server)),
                    millis: d.gaps_ms.clone(),
                });
            }
            let known =
                ctx.counters.listeners(NetnsRole::Pod).iter().find(|l| {
                    l.port == server.1 && (l.addr.is_unspecified() || l.addr == server.0)
                });
            listeners.push(ListenerRef {
                addr: server.0.to_string(),
                port: server.1,
                queued: known.map(|l| l.queued),
                backlog: known.and_then(|l| l.backlog),
            });
            evidence.notes.push(format!(
                "{}: {} attempt(s) answered; {} later SYN(s) never answered; {} handshake(s) dropped after completing",
                endpoint_text(server),
                d.answered,
                d.unanswered_after_success,
                d.final_ack_dropped
            ));
        }
    }
    if flows.is_empty() && overflow.is_none() {
        return None;
    }
    if listeners.is_empty() {
        // Counter-only evidence: name the pod's listeners whose queue is full.
        for l in ctx.counters.listeners(NetnsRole::Pod) {
            if l.backlog.is_some_and(|b| l.queued >= b) || (l.backlog.is_none() && l.queued > 0) {
                listeners.push(ListenerRef {
                    addr: l.addr.to_string(),
                    port: l.port,
                    queued: Some(l.queued),
                    backlog: l.backlog,
                });
            }
        }
    }
    for key in [
        "TcpExt.ListenOverflows",
        "TcpExt.ListenDrops",
        "TcpExt.TCPSynRetrans",
    ] {
        if let Some(d) = ctx.counters.rise(NetnsRole::Pod, key) {
            evidence.counters.push(d);
        }
    }
    if let Some(v) = ctx
        .counters
        .value(NetnsRole::Pod, "sysctl.net.core.somaxconn")
    {
        evidence.notes.push(format!("pod net.core.somaxconn = {v}"));
    }
    let confidence = if overflow.is_some() {
        Confidence::Confirmed
    } else {
        Confidence::Likely
    };
    let target = listeners
        .first()
        .map(|l| format!("{}:{}", l.addr, l.port))
        .unwrap_or_else(|| "a pod listener".to_string());
    let summary = match (overflow.as_ref(), flows.is_empty()) {
        (Some(d), true) => format!(
            "accept queue overflowed {} time(s) in the pod (TcpExt.ListenOverflows), listener {target}",
            d.after - d.before
        ),
        _ => {
            let mut parts = Vec::new();
            if silent_drops > 0 {
                parts.push(format!(
                    "{silent_drops} connection attempt(s) got no SYN-ACK after earlier ones were accepted"
                ));
            }
            if dropped_acks > 0 {
                parts.push(format!(
                    "{dropped_acks} completed handshake(s) dropped (server silent, client data never ACKed)"
                ));
            }
            format!("listener {target} accept queue full: {}", parts.join("; "))
        }
    };
    Some(Finding {
        kind: Kind::AcceptQueueOverflow,
        confidence,
        summary,
        flows,
        listeners,
        names: Vec::new(),
        evidence,
        remedy: REMEDY.to_string(),
        alternative: None,
    })
}

#[cfg(test)]
mod tests {
    use crate::testutil::{counters, finding, run};
    use crate::{Confidence, Counters, Kind, ListenerQueue, Moment, NetnsRole};

    #[test]
    fn unanswered_syns_to_local_listener_after_accepted_ones_are_likely() {
        let r = run(&["accept_overflow_syn/pod.pcap"], |_| {});
        let f = finding(&r, Kind::AcceptQueueOverflow).expect("found");
        assert_eq!(f.confidence, Confidence::Likely);
        assert_eq!(f.listeners[0].port, 8080);
        assert!(
            finding(&r, Kind::SnatPortExhaustion).is_none(),
            "{:?}",
            r.findings
        );
        // SYN retransmissions in ~1 s steps (tcp_syn_linear_timeouts).
        let gaps = &f.evidence.timings[0].millis;
        assert!(
            !gaps.is_empty() && gaps.iter().all(|g| (900.0..2200.0).contains(g)),
            "{gaps:?}"
        );
    }

    #[test]
    fn listen_overflows_rise_confirms_and_pod_listener_is_named() {
        let r = run(&["accept_overflow_syn/pod.pcap"], |a| {
            let mut after = counters(&[("TcpExt.ListenOverflows", 30)]);
            after.listeners.push(ListenerQueue {
                addr: "10.244.1.10".parse().expect("addr"),
                port: 8080,
                queued: 2,
                backlog: Some(1),
            });
            a.observe_counters(
                NetnsRole::Pod,
                Moment::Before,
                &counters(&[("TcpExt.ListenOverflows", 0)]),
            );
            a.observe_counters(NetnsRole::Pod, Moment::After, &after);
        });
        let f = finding(&r, Kind::AcceptQueueOverflow).expect("found");
        assert_eq!(f.confidence, Confidence::Confirmed);
        assert_eq!(
            (f.listeners[0].queued, f.listeners[0].backlog),
            (Some(2), Some(1))
        );
    }

    #[test]
    fn dropped_final_ack_is_likely_from_packets_alone() {
        let r = run(&["accept_overflow_ack/pod.pcap"], |_| {});
        let f = finding(&r, Kind::AcceptQueueOverflow).expect("found");
        assert_eq!(f.confidence, Confidence::Likely);
        assert!(f.summary.contains("dropped"), "{}", f.summary);
        assert!(
            f.evidence
                .packets
                .iter()
                .any(|p| p.role.contains("never acknowledged")),
            "{:?}",
            f.evidence.packets
        );
    }

    #[test]
    fn counters_alone_confirm_an_overflow() {
        let mut a = crate::Analyzer::new(crate::Config::default());
        a.observe_counters(
            NetnsRole::Pod,
            Moment::Before,
            &counters(&[("TcpExt.ListenOverflows", 1)]),
        );
        a.observe_counters(
            NetnsRole::Pod,
            Moment::After,
            &Counters {
                listeners: vec![ListenerQueue {
                    addr: "0.0.0.0".parse().expect("addr"),
                    port: 80,
                    queued: 129,
                    backlog: Some(128),
                }],
                ..counters(&[("TcpExt.ListenOverflows", 9)])
            },
        );
        let r = a.finish();
        let f = finding(&r, Kind::AcceptQueueOverflow).expect("found");
        assert_eq!(f.confidence, Confidence::Confirmed);
        assert_eq!(f.listeners[0].port, 80);
    }

    #[test]
    fn busy_listener_that_accepts_is_healthy() {
        let r = run(&["healthy_listener/pod.pcap"], |_| {});
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(r.tcp.handshakes, 12);
    }
}
