//! `connection_refused`: connection attempts answered by a RST — nothing listens on the
//! destination port.
//!
//! Packets: a SYN answered by a RST (`[S]` then `[R.]`), repeated: at least two attempts to
//! one destination `ip:port` (a single refused probe that is never retried is not a
//! problem anyone has). Two causes read differently in the capture:
//! - the destination accepted connections earlier in the capture and then refuses: the
//!   backend is going away while still receiving traffic (a terminating pod whose
//!   endpoint has not been removed yet);
//! - it never accepted one: the port never listened (a Service `targetPort` that does not
//!   match the container's port, a listener that has not started); or it refused only
//!   until it first accepted: it received traffic before it listened (readiness).
//!
//! Packets alone are `likely` (a RST answering a SYN is unambiguous). `confirmed`: the
//! destination is the pod's own port and its sockets (sock_diag) show no listener there,
//! or the pod's `Tcp.AttemptFails` rose by at least the refused attempts (the kernel counted
//! the pod's own connects failing).

use super::{Ctx, EvidenceSink, endpoint_text, flow_text};
use crate::NetnsRole;
use crate::conn_events::ConnEvents;
use crate::destinations::{DestStats, Destinations};
use crate::model::{Confidence, Evidence, Finding, Kind, ListenerRef};
use std::net::IpAddr;

/// Refused attempts to one destination before it is a finding.
const MIN_ATTEMPTS: u64 = 2;

const REMEDY_GOING_AWAY: &str = "The backend closed its listener while still receiving traffic: \
give the pods a `preStop` hook that sleeps (5–15 s) so the endpoint is removed before the \
process stops listening, fail the readiness probe as shutdown begins, and let clients retry \
idempotent requests.";

const REMEDY_NEVER: &str = "Nothing listens on that port: check the Service's `targetPort` \
against the port the container really listens on (`kubectl get svc,endpoints`, `ss -lnt` in \
the backend pod), and that the server started and bound the right address before its \
readiness probe passed.";

/// kubeadm's default Service CIDR, 10.96.0.0/12.
fn in_default_service_cidr(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            o[0] == 10 && (o[1] & 0xf0) == 96
        }
        IpAddr::V6(_) => false,
    }
}

/// The finding, if any.
pub(crate) fn finish(ev: &ConnEvents, dests: &Destinations, ctx: &Ctx<'_>) -> Option<Finding> {
    let mut keys: Vec<_> = ev
        .refused
        .iter()
        .filter(|(_, r)| r.attempts >= MIN_ATTEMPTS)
        .map(|(k, _)| *k)
        .collect();
    if keys.is_empty() {
        return None;
    }
    keys.sort();
    let mut evidence = Evidence::default();
    let mut flows = Vec::new();
    let mut listeners = Vec::new();
    let mut total = 0u64;
    let mut going_away = Vec::new();
    let mut never = Vec::new();
    let mut late = Vec::new();
    let mut local_confirmed = false;
    let pod_listeners_known = !ctx.counters.listeners(NetnsRole::Pod).is_empty()
        || ctx.counters.has_sockets(NetnsRole::Pod);
    {
        let mut sink = EvidenceSink {
            out: &mut evidence.packets,
            total: &mut evidence.packets_total,
            cap: ctx.max_evidence,
        };
        for key in &keys {
            let Some(r) = ev.refused.get(key) else {
                continue;
            };
            let (source, server) = *key;
            total += r.attempts;
            let d = dests.map.get(key);
            let first_answer = d.and_then(|d| d.first_answered_ns);
            let answered = d.map_or(0, |d| d.answered);
            let probe = DestStats {
                client_ips: r.client_ips.clone(),
                ..DestStats::default()
            };
            let local = ctx.server_is_local(source, server, d.unwrap_or(&probe));
            let name = endpoint_text(server);
            let mut note = match first_answer {
                // Refused after it had accepted: the listener went away.
                Some(t) if t < r.last_ns => {
                    going_away.push(name.clone());
                    format!(
                        "{name}: accepted {answered} connection(s) in the capture and refused {} attempt(s), the last after accepting: the listener went away",
                        r.attempts
                    )
                }
                // Refused only before it first accepted: it started listening late.
                Some(_) => {
                    late.push(name.clone());
                    format!(
                        "{name}: refused {} attempt(s) before it accepted {answered}: it received traffic before it listened",
                        r.attempts
                    )
                }
                None => {
                    never.push(name.clone());
                    format!(
                        "{name}: {} attempt(s) refused, none accepted in the capture: the port does not listen",
                        r.attempts
                    )
                }
            };
            match local {
                Some(true) => {
                    if pod_listeners_known && !ctx.counters.pod_listens(server.0, server.1) {
                        local_confirmed = true;
                        note.push_str("; a port of the pod itself, and the pod's sockets show no LISTEN socket on it");
                    } else {
                        note.push_str("; a port of the pod itself");
                    }
                    listeners.push(ListenerRef {
                        addr: server.0.to_string(),
                        port: server.1,
                        queued: None,
                        backlog: None,
                    });
                }
                _ if in_default_service_cidr(server.0) => note.push_str(
                    "; the address is in kubeadm's default Service range 10.96.0.0/12: likely a Service ClusterIP, DNATed by the node, so the RST came from a backend pod",
                ),
                _ => note.push_str(
                    "; a remote address (a pod, or a Service ClusterIP DNATed by the node: compare with `kubectl get svc -A`)",
                ),
            }
            evidence.notes.push(note);
            for (p, role) in &r.packets {
                sink.push(*p, *role);
            }
            for (c, s) in &r.flows {
                flows.push(flow_text(*c, *s, "tcp"));
            }
        }
    }
    let attempt_fails = ctx.counters.rise(NetnsRole::Pod, "Tcp.AttemptFails");
    let counted = attempt_fails
        .as_ref()
        .is_some_and(|d| d.after - d.before >= total);
    for key in ["Tcp.AttemptFails", "Tcp.OutRsts"] {
        if let Some(d) = ctx.counters.rise(NetnsRole::Pod, key) {
            evidence.counters.push(d);
        }
    }
    let confidence = if local_confirmed || counted {
        Confidence::Confirmed
    } else {
        Confidence::Likely
    };
    let mut parts = Vec::new();
    if !going_away.is_empty() {
        parts.push(format!(
            "{} stopped listening after accepting connections earlier (a backend going away)",
            going_away.join(", ")
        ));
    }
    if !never.is_empty() {
        parts.push(format!(
            "nothing listens on {} (every attempt answered by RST)",
            never.join(", ")
        ));
    }
    if !late.is_empty() {
        parts.push(format!(
            "{} refused connections until it started listening",
            late.join(", ")
        ));
    }
    let summary = format!(
        "{total} connection attempt(s) refused: {}",
        parts.join("; ")
    );
    let remedy = match (going_away.is_empty(), never.is_empty() && late.is_empty()) {
        (false, true) => REMEDY_GOING_AWAY.to_string(),
        (true, _) => REMEDY_NEVER.to_string(),
        (false, false) => format!("{REMEDY_GOING_AWAY} {REMEDY_NEVER}"),
    };
    Some(Finding {
        kind: Kind::ConnectionRefused,
        confidence,
        summary,
        flows,
        listeners,
        names: Vec::new(),
        evidence,
        remedy,
        alternative: None,
    })
}

#[cfg(test)]
mod tests {
    use crate::testutil::{counters, finding, packet, packets, run};
    use crate::{Confidence, Kind, Moment, NetnsRole};

    #[test]
    fn repeated_refusals_are_likely_and_say_the_port_never_listened() {
        let r = run(&["connection_refused/pod.pcap"], |_| {});
        let f = finding(&r, Kind::ConnectionRefused).expect("found");
        assert_eq!(f.confidence, Confidence::Likely);
        assert!(f.summary.contains("nothing listens"), "{}", f.summary);
        // Every RST named as evidence really is a RST|ACK from the destination port.
        let pkts = packets("connection_refused/pod.pcap");
        for p in f
            .evidence
            .packets
            .iter()
            .filter(|p| p.role.starts_with("RST"))
        {
            let (_, link, bytes) = packet(&pkts, p.packet.number);
            let frame =
                netdiag_wire::Frame::parse(netdiag_wire::LinkType::from_linktype(*link), bytes);
            let Some(netdiag_wire::Transport::Tcp(t)) = frame.transport else {
                panic!("packet {} is not TCP", p.packet.number)
            };
            assert!(t.flags.rst(), "packet {}", p.packet.number);
        }
        assert!(
            r.findings.iter().all(|f| f.kind == Kind::ConnectionRefused),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn a_backend_that_answered_then_refuses_is_going_away() {
        let r = run(&["connection_refused_going_away/pod.pcap"], |_| {});
        let f = finding(&r, Kind::ConnectionRefused).expect("found");
        assert!(f.summary.contains("stopped listening"), "{}", f.summary);
        assert!(f.remedy.contains("preStop"), "{}", f.remedy);
    }

    #[test]
    fn attempt_fails_rise_confirms() {
        let r = run(&["connection_refused/pod.pcap"], |a| {
            a.observe_counters(
                NetnsRole::Pod,
                Moment::Before,
                &counters(&[("Tcp.AttemptFails", 3)]),
            );
            a.observe_counters(
                NetnsRole::Pod,
                Moment::After,
                &counters(&[("Tcp.AttemptFails", 90)]),
            );
        });
        let f = finding(&r, Kind::ConnectionRefused).expect("found");
        assert_eq!(f.confidence, Confidence::Confirmed);
    }

    #[test]
    fn one_refused_probe_never_retried_is_healthy() {
        let r = run(&["healthy_refused_once/pod.pcap"], |_| {});
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(r.tcp.resets_by_answer.get("syn"), Some(&1));
    }
}
