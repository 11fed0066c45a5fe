//! `ephemeral_port_exhaustion`: the pod has no local port left towards one destination,
//! so `connect()` fails with EADDRNOTAVAIL and no packet leaves.
//!
//! Linux lets one local port serve many destinations, so ports run out per destination
//! `ip:port`: every socket to it (ESTABLISHED, and above all TIME_WAIT, which holds a
//! port for 60 s after the pod closed first) takes one port of `ip_local_port_range`.
//! The evidence is therefore the pod's sockets, from sock_diag or `/proc/net/tcp`:
//! sockets to one destination holding as many local ports as the range has, which proves
//! the next `connect()` there fails (`confirmed`). The capture adds what fills the range:
//! short connections the pod closes first, after one or a few requests.
//!
//! Without the pod's sockets, packets alone are `possible` when the pod closed first at
//! least half as many connections to one destination within 60 s as the range holds
//! (the range from the pod's sysctl, else the default 32768–60999).

use super::{Ctx, EvidenceSink, endpoint_text, flow_text};
use crate::NetnsRole;
use crate::conn_events::{Closes, TIME_WAIT_S};
use crate::counters::{SocketGroup, SocketSide};
use crate::model::{Confidence, Evidence, Finding, Kind};
use std::collections::BTreeMap;
use std::net::IpAddr;

const REMEDY: &str = "Reuse connections to the upstream instead of opening one per request: \
HTTP keep-alive and a connection pool (for an nginx ingress: `upstream-keepalive-connections`, \
`keep-alive-requests`); in the pod widen net.ipv4.ip_local_port_range and set \
net.ipv4.tcp_tw_reuse=1 (both safe sysctls: `securityContext.sysctls`).";

/// Linux's default `ip_local_port_range` (32768–60999).
const DEFAULT_RANGE: (u64, u64) = (32768, 60999);

/// The pod's port range and whether it came from its sysctl.
fn port_range(ctx: &Ctx<'_>) -> ((u64, u64), bool) {
    let c = &ctx.counters;
    match (
        c.value(NetnsRole::Pod, "sysctl.net.ipv4.ip_local_port_range.min"),
        c.value(NetnsRole::Pod, "sysctl.net.ipv4.ip_local_port_range.max"),
    ) {
        (Some(lo), Some(hi)) if hi >= lo => ((lo, hi), true),
        _ => (DEFAULT_RANGE, false),
    }
}

fn states_text(g: &SocketGroup) -> String {
    let mut v: Vec<(&String, &u32)> = g.states.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The finding, if any.
pub(crate) fn finish(closes: &Closes, ctx: &Ctx<'_>) -> Option<Finding> {
    let ((lo, hi), range_known) = port_range(ctx);
    let size = hi - lo + 1;
    // Per destination, the snapshot in which its sockets held the most ports.
    let mut fullest: BTreeMap<(IpAddr, u16), &SocketGroup> = BTreeMap::new();
    for g in ctx
        .counters
        .socket_groups(NetnsRole::Pod)
        .filter(|g| g.side == SocketSide::Client)
    {
        let e = fullest.entry((g.addr, g.port)).or_insert(g);
        if g.local_ports > e.local_ports {
            *e = g;
        }
    }
    let exhausted: Vec<&SocketGroup> = fullest
        .values()
        .copied()
        .filter(|g| u64::from(g.local_ports) >= size)
        .collect();
    let sockets_known = ctx.counters.has_sockets(NetnsRole::Pod);
    let mut close_keys: Vec<_> = closes.map.keys().copied().collect();
    close_keys.sort();
    let churn: Vec<_> = close_keys
        .iter()
        .filter_map(|k| closes.map.get(k).map(|c| (*k, c)))
        .filter(|(k, c)| {
            u64::from(c.peak_60s).saturating_mul(2) >= size
                && c.client_ips
                    .iter()
                    .all(|ip| ctx.locality.is_local(k.0, *ip) != Some(false))
        })
        .collect();
    let confirmed = !exhausted.is_empty();
    if !confirmed && (sockets_known || churn.is_empty()) {
        return None;
    }
    let mut evidence = Evidence::default();
    let mut flows = Vec::new();
    let mut dests: Vec<String> = Vec::new();
    let range_text = format!(
        "ip_local_port_range {lo}-{hi} ({size} ports{})",
        if range_known {
            ""
        } else {
            ", the default: the pod's sysctl was not read"
        }
    );
    for g in &exhausted {
        dests.push(endpoint_text((g.addr, g.port)));
        evidence.notes.push(format!(
            "pod sockets to {}: {} holding {} local ports ({}) of {range_text}",
            endpoint_text((g.addr, g.port)),
            g.total(),
            g.local_ports,
            states_text(g)
        ));
    }
    {
        let mut sink = EvidenceSink {
            out: &mut evidence.packets,
            total: &mut evidence.packets_total,
            cap: ctx.max_evidence,
        };
        for ((source, server), c) in close_keys
            .iter()
            .filter_map(|k| closes.map.get(k).map(|c| (*k, c)))
        {
            let relevant = if confirmed {
                exhausted.iter().any(|g| (g.addr, g.port) == server)
            } else {
                churn.iter().any(|(k, _)| *k == (source, server))
            };
            if !relevant {
                continue;
            }
            if !confirmed {
                dests.push(endpoint_text(server));
            }
            for (p, role) in &c.packets {
                sink.push(*p, *role);
            }
            for (cl, s) in &c.flows {
                flows.push(flow_text(*cl, *s, "tcp"));
            }
            evidence.notes.push(format!(
                "capture: {} connection(s) to {} closed by the pod first after {:.1} data segment(s) on average; at most {} within {TIME_WAIT_S} s (each holds its port in TIME_WAIT for {TIME_WAIT_S} s)",
                c.closes,
                endpoint_text(server),
                c.data_segments as f64 / c.closes.max(1) as f64,
                c.peak_60s
            ));
        }
    }
    for key in ["TcpExt.TCPTimeWaitOverflow", "Tcp.ActiveOpens"] {
        if let Some(d) = ctx.counters.rise(NetnsRole::Pod, key) {
            evidence.counters.push(d);
        }
    }
    if let Some(v) = ctx
        .counters
        .value(NetnsRole::Pod, "sysctl.net.ipv4.tcp_tw_reuse")
    {
        evidence.notes.push(format!(
            "pod net.ipv4.tcp_tw_reuse = {v}{}",
            if v == 1 {
                ""
            } else {
                " (TIME_WAIT ports are not reused for new outgoing connections)"
            }
        ));
    }
    let dests_text = dests.join(", ");
    let (confidence, alternative, summary) = if confirmed {
        (
            Confidence::Confirmed,
            None,
            format!(
                "the pod has no local port left towards {dests_text}: its sockets there hold all {size} ports of its {range_text}; connect() fails with EADDRNOTAVAIL and sends nothing"
            ),
        )
    } else {
        (
            Confidence::Possible,
            Some(format!(
                "the pod's port range may be wider than assumed, or tcp_tw_reuse may let it reuse TIME_WAIT ports; the pod's sockets settle it: `ss -tan dst {dests_text}` (TIME_WAIT above all) against net.ipv4.ip_local_port_range"
            )),
            format!(
                "the pod closes connections to {dests_text} so fast that their TIME_WAIT ports fill at least half of its {range_text}: connect() there is about to fail with EADDRNOTAVAIL"
            ),
        )
    };
    Some(Finding {
        kind: Kind::EphemeralPortExhaustion,
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
    use crate::{Confidence, Counters, Kind, Moment, NetnsRole, SocketGroup, SocketSide};

    fn pod_with_sockets(time_wait: u32, range: (u64, u64)) -> Counters {
        let mut c = counters(&[
            ("sysctl.net.ipv4.ip_local_port_range.min", range.0),
            ("sysctl.net.ipv4.ip_local_port_range.max", range.1),
            ("sysctl.net.ipv4.tcp_tw_reuse", 2),
        ]);
        c.sockets.push(SocketGroup {
            side: SocketSide::Client,
            addr: "172.31.0.2".parse().expect("addr"),
            port: 8090,
            states: [("TIME_WAIT".to_string(), time_wait)].into(),
            keepalive: 0,
            local_ports: time_wait,
        });
        c
    }

    #[test]
    fn sockets_holding_the_whole_range_confirm() {
        let r = run(&["ephemeral_port_exhaustion/pod.pcap"], |a| {
            a.observe_counters(
                NetnsRole::Pod,
                Moment::Before,
                &pod_with_sockets(0, (40000, 40009)),
            );
            a.observe_counters(
                NetnsRole::Pod,
                Moment::After,
                &pod_with_sockets(10, (40000, 40009)),
            );
        });
        let f = finding(&r, Kind::EphemeralPortExhaustion).expect("found");
        assert_eq!(f.confidence, Confidence::Confirmed);
        assert!(f.summary.contains("172.31.0.2:8090"), "{}", f.summary);
        assert!(
            f.evidence
                .packets
                .iter()
                .all(|p| p.role.contains("FIN from the client")),
            "{:?}",
            f.evidence.packets
        );
        assert!(!f.evidence.packets.is_empty());
    }

    #[test]
    fn sockets_below_the_range_are_healthy() {
        let r = run(&["ephemeral_port_exhaustion/pod.pcap"], |a| {
            a.observe_counters(
                NetnsRole::Pod,
                Moment::Before,
                &pod_with_sockets(0, (40000, 40099)),
            );
            a.observe_counters(
                NetnsRole::Pod,
                Moment::After,
                &pod_with_sockets(10, (40000, 40099)),
            );
        });
        assert!(
            finding(&r, Kind::EphemeralPortExhaustion).is_none(),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn packets_alone_against_the_default_range_say_nothing() {
        // Ten short connections are nothing against 28232 ports.
        let r = run(&["ephemeral_port_exhaustion/pod.pcap"], |_| {});
        assert!(r.findings.is_empty(), "{:?}", r.findings);
    }

    #[test]
    fn packets_alone_against_a_known_narrow_range_are_possible() {
        // Port range known (sysctl read) but no socket table: the churn decides.
        let r = run(&["ephemeral_port_exhaustion/pod.pcap"], |a| {
            let c = counters(&[
                ("sysctl.net.ipv4.ip_local_port_range.min", 40000),
                ("sysctl.net.ipv4.ip_local_port_range.max", 40009),
            ]);
            a.observe_counters(NetnsRole::Pod, Moment::Before, &c);
            a.observe_counters(NetnsRole::Pod, Moment::After, &c);
        });
        let f = finding(&r, Kind::EphemeralPortExhaustion).expect("found");
        assert_eq!(f.confidence, Confidence::Possible);
        assert!(
            f.alternative
                .as_deref()
                .is_some_and(|a| a.contains("ss -tan"))
        );
    }
}
