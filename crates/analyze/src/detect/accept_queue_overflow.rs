//! `accept_queue_overflow`: a listener's backlog is full (DETECTION.md §2).
//!
//! Packets: (a) SYNs to a *local* listener retransmitted without a SYN-ACK after earlier
//! attempts to the same port were answered; (b) the server re-sends its SYN-ACK after the
//! client's final ACK and never acknowledges the client's data (the final ACK was dropped).
//! Either is `likely`. A `TcpExt.ListenOverflows` rise in the pod makes it `confirmed`,
//! and on its own (no packets) still proves an overflow happened.
//!
//! The SYN queue (half-open connections) overflows too, and needs another remedy, so the
//! evidence says which queue it was: `TcpExt.ListenOverflows` and a listener whose
//! Recv-Q reached its Send-Q mean the accept queue; `TcpExt.TCPReqQFullDrop` (SYNs dropped,
//! syncookies off), `TCPReqQFullDoCookies`/`SyncookiesSent` (answered with cookies),
//! handshakes left half-open in the capture (the server re-sends its SYN-ACK, no final ACK
//! arrives) and many `SYN_RECV` sockets on the listener mean the SYN queue. Either queue's
//! counter rising confirms.

use super::{Ctx, EvidenceSink, endpoint_text, flow_text};
use crate::NetnsRole;
use crate::destinations::Destinations;
use crate::model::{Confidence, Evidence, Finding, Kind, ListenerRef, Timing};

const REMEDY_SYN: &str = "The SYN queue holds half-open connections up to the listen backlog \
(min(backlog, net.core.somaxconn)); with net.ipv4.tcp_syncookies=0 the kernel also drops SYNs \
once it is 3/4 of net.ipv4.tcp_max_syn_backlog. Raise the backlog and somaxconn, keep \
net.ipv4.tcp_syncookies=1 (the default: an overflow is answered with cookies instead of \
dropped), raise net.ipv4.tcp_max_syn_backlog if cookies are off; handshakes that stay half-open \
mean the clients' final ACKs are lost on the way (a firewall, a path problem) — or a SYN flood.";

const REMEDY: &str = "Raise the listener's backlog (e.g. nginx `listen … backlog=`) together with \
net.core.somaxconn in the pod (an unsafe sysctl: kubelet --allowed-unsafe-sysctls), make the \
application accept faster, and avoid net.ipv4.tcp_abort_on_overflow=1.";

/// The finding, if any.
pub(crate) fn finish(dests: &Destinations, ctx: &Ctx<'_>) -> Option<Finding> {
    let accept_rise = ctx.counters.rise(NetnsRole::Pod, "TcpExt.ListenOverflows");
    let syn_rise = ["TcpExt.TCPReqQFullDrop", "TcpExt.TCPReqQFullDoCookies"]
        .iter()
        .find_map(|k| ctx.counters.rise(NetnsRole::Pod, k));
    let overflow = accept_rise.clone().or_else(|| syn_rise.clone());
    let mut half_open = 0u64;
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
            half_open += d.half_open;
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
                "{}: {} attempt(s) answered; {} later SYN(s) never answered; {} handshake(s) dropped after completing; {} left half-open",
                endpoint_text(server),
                d.answered,
                d.unanswered_after_success,
                d.final_ack_dropped,
                d.half_open
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
        "TcpExt.TCPReqQFullDrop",
        "TcpExt.TCPReqQFullDoCookies",
        "TcpExt.SyncookiesSent",
        "TcpExt.TCPSynRetrans",
    ] {
        if let Some(d) = ctx.counters.rise(NetnsRole::Pod, key) {
            evidence.counters.push(d);
        }
    }
    for (key, name) in [
        ("sysctl.net.core.somaxconn", "net.core.somaxconn"),
        (
            "sysctl.net.ipv4.tcp_max_syn_backlog",
            "net.ipv4.tcp_max_syn_backlog",
        ),
        ("sysctl.net.ipv4.tcp_syncookies", "net.ipv4.tcp_syncookies"),
    ] {
        if let Some(v) = ctx.counters.value(NetnsRole::Pod, key) {
            evidence.notes.push(format!("pod {name} = {v}"));
        }
    }
    // Half-open connections per listener, from the pod's sockets (the SYN queue's fill).
    let mut syn_recv_full = false;
    for l in &listeners {
        let most = ctx
            .counters
            .socket_groups(NetnsRole::Pod)
            .filter(|g| g.side == crate::SocketSide::Server && g.port == l.port)
            .map(|g| g.count("SYN_RECV"))
            .max()
            .unwrap_or(0);
        if most > 0 {
            evidence.notes.push(format!(
                "listener {}:{}: {most} half-open connection(s) (SYN_RECV) in its SYN queue, backlog {}",
                l.addr,
                l.port,
                l.backlog.map_or("unknown".to_string(), |b| b.to_string())
            ));
            if l.backlog.is_some_and(|b| most >= b) {
                syn_recv_full = true;
            }
        }
    }
    let accept_full = accept_rise.is_some()
        || dropped_acks > 0
        || listeners
            .iter()
            .any(|l| l.backlog.is_some_and(|b| l.queued.is_some_and(|q| q >= b)));
    let syn_full = syn_rise.is_some() || half_open > 0 || syn_recv_full;
    let queue = match (accept_full, syn_full) {
        (false, true) => "SYN queue",
        (true, true) => "accept and SYN queues",
        _ => "accept queue",
    };
    evidence.notes.push(format!(
        "which queue: {queue} ({})",
        match (accept_full, syn_full) {
            (false, true) => "half-open handshakes or TCPReqQFull*, no ListenOverflows",
            (true, true) =>
                "ListenOverflows or a full Recv-Q, and half-open handshakes or TCPReqQFull*",
            (true, false) => "ListenOverflows, a full Recv-Q or dropped final ACKs",
            (false, false) =>
                "SYNs dropped after earlier ones were accepted; no counter says which",
        }
    ));
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
            "{queue} overflowed {} time(s) in the pod ({}), listener {target}",
            d.after - d.before,
            d.key
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
            if half_open > 0 {
                parts.push(format!(
                    "{half_open} handshake(s) left half-open (SYN-ACK re-sent, no final ACK)"
                ));
            }
            format!("listener {target} {queue} full: {}", parts.join("; "))
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
        remedy: match (accept_full, syn_full) {
            (false, true) => REMEDY_SYN.to_string(),
            (true, true) => format!("{REMEDY} {REMEDY_SYN}"),
            _ => REMEDY.to_string(),
        },
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
    fn half_open_handshakes_name_the_syn_queue_from_packets_alone() {
        let r = run(&["syn_queue_overflow/pod.pcap"], |_| {});
        let f = finding(&r, Kind::AcceptQueueOverflow).expect("found");
        assert_eq!(f.confidence, Confidence::Likely);
        assert!(f.summary.contains("SYN queue"), "{}", f.summary);
        assert!(f.remedy.contains("tcp_syncookies"), "{}", f.remedy);
        assert!(
            f.evidence
                .packets
                .iter()
                .any(|p| p.role.contains("half-open")),
            "{:?}",
            f.evidence.packets
        );
    }

    #[test]
    fn req_q_full_drop_rise_confirms_the_syn_queue() {
        let r = run(&["syn_queue_overflow/pod.pcap"], |a| {
            let before = counters(&[
                ("TcpExt.ListenOverflows", 0),
                ("TcpExt.TCPReqQFullDrop", 0),
                ("sysctl.net.ipv4.tcp_syncookies", 0),
            ]);
            let after = counters(&[
                ("TcpExt.ListenOverflows", 0),
                ("TcpExt.TCPReqQFullDrop", 20),
                ("sysctl.net.ipv4.tcp_syncookies", 0),
            ]);
            a.observe_counters(NetnsRole::Pod, Moment::Before, &before);
            a.observe_counters(NetnsRole::Pod, Moment::After, &after);
        });
        let f = finding(&r, Kind::AcceptQueueOverflow).expect("found");
        assert_eq!(f.confidence, Confidence::Confirmed);
        assert!(
            f.evidence
                .notes
                .iter()
                .any(|n| n.starts_with("which queue: SYN queue")),
            "{:?}",
            f.evidence.notes
        );
    }

    #[test]
    fn syncookies_alone_confirm_a_syn_queue_overflow() {
        // With tcp_syncookies=1 nothing is dropped and no packet looks wrong: the counters
        // alone say the SYN queue overflowed (the kernel's "Possible SYN flooding").
        let mut a = crate::Analyzer::new(crate::Config::default());
        let c = |n| {
            counters(&[
                ("TcpExt.ListenOverflows", 0),
                ("TcpExt.TCPReqQFullDoCookies", n),
                ("TcpExt.SyncookiesSent", n),
            ])
        };
        a.observe_counters(NetnsRole::Pod, Moment::Before, &c(0));
        a.observe_counters(NetnsRole::Pod, Moment::After, &c(7));
        let r = a.finish();
        let f = finding(&r, Kind::AcceptQueueOverflow).expect("found");
        assert_eq!(f.confidence, Confidence::Confirmed);
        assert!(
            f.summary.starts_with("SYN queue overflowed 7 time(s)"),
            "{}",
            f.summary
        );
        assert!(f.remedy.contains("tcp_syncookies"), "{}", f.remedy);
    }

    #[test]
    fn the_accept_queue_recordings_still_name_the_accept_queue() {
        for file in [
            "accept_overflow_syn/pod.pcap",
            "accept_overflow_ack/pod.pcap",
        ] {
            let r = run(&[file], |_| {});
            let f = finding(&r, Kind::AcceptQueueOverflow).expect("found");
            assert!(!f.summary.contains("SYN queue"), "{file}: {}", f.summary);
        }
    }

    #[test]
    fn busy_listener_that_accepts_is_healthy() {
        let r = run(&["healthy_listener/pod.pcap"], |_| {});
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(r.tcp.handshakes, 12);
    }
}
