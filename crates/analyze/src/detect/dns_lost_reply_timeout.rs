//! `dns_lost_reply_timeout`: the 5-second DNS delay (DETECTION.md §5).
//!
//! Packets: A and AAAA sent back to back from one socket; one answered, the other not;
//! the unanswered one re-sent with the same ID after the resolver timeout (5 s glibc
//! default, `timeout:N`, or 2.5 s for musl). That pair pattern is `likely`; a timeout
//! retry without an answered sibling is `possible` (a lost reply anywhere looks the
//! same); a node conntrack `insert_failed`/`drop` rise makes it `confirmed`.

use super::{Ctx, EvidenceSink, endpoint_text};
use crate::NetnsRole;
use crate::dns::{RetryEvent, qtype_name};
use crate::model::{Confidence, Evidence, Finding, Kind, Timing};

const REMEDY: &str = "Add `dnsConfig.options: [{name: single-request-reopen}]` to the pod (glibc), \
run NodeLocal DNSCache, or upgrade the node kernel (conntrack clash resolution); DNS over TCP \
(`use-vc`) as a last resort.";

/// musl ignores `single-request(-reopen)` and `use-vc`: only the path can change.
const REMEDY_MUSL: &str = "The pod resolves with musl (Alpine), which ignores \
`single-request-reopen`, `single-request` and `use-vc` and re-sends an unanswered query every \
timeout/attempts (2.5 s by default): run NodeLocal DNSCache (queries to a node-local address, no \
Service DNAT race), upgrade the node kernel (conntrack clash resolution), and write names fully \
qualified (`name.`) so fewer queries race; a glibc-based image would also accept \
`single-request-reopen`.";

/// Library unknown: say what holds for each.
const REMEDY_UNKNOWN: &str = "Run NodeLocal DNSCache or upgrade the node kernel (conntrack clash \
resolution); for a glibc-based image also add `dnsConfig.options: [{name: single-request-reopen}]` \
(musl, as in Alpine images, ignores it; static Go binaries use their own resolver).";

/// The finding, if any.
pub(crate) fn finish(retries: &[RetryEvent], total: u64, ctx: &Ctx<'_>) -> Option<Finding> {
    if retries.is_empty() {
        return None;
    }
    let paired = retries.iter().filter(|r| r.sibling.is_some()).count();
    let mut evidence = Evidence::default();
    let mut names = Vec::new();
    let mut flows = Vec::new();
    let mut gaps = Vec::new();
    {
        let mut sink = EvidenceSink {
            out: &mut evidence.packets,
            total: &mut evidence.packets_total,
            cap: ctx.max_evidence,
        };
        for r in retries {
            let t = qtype_name(r.qtype);
            sink.push(
                r.original,
                format!("{t} {} sent, reply never arrived", r.name),
            );
            if let Some((sq, sa, st)) = r.sibling {
                let st = qtype_name(st);
                sink.push(
                    sq,
                    format!("{st} {} sent from the same socket at the same time", r.name),
                );
                sink.push(
                    sa,
                    format!(
                        "{st} {} answered (only one reply of the pair arrived)",
                        r.name
                    ),
                );
            }
            sink.push(
                r.retry,
                format!(
                    "{t} {} re-sent with the same ID after {:.2} s",
                    r.name,
                    r.gap_ns as f64 / 1e9
                ),
            );
            gaps.push(r.gap_ns as f64 / 1e6);
            if !names.contains(&r.name) {
                names.push(r.name.clone());
            }
            let f = format!(
                "{} -> {}/{}",
                endpoint_text(r.client),
                endpoint_text(r.server),
                if r.tcp { "tcp" } else { "udp" }
            );
            if !flows.contains(&f) {
                flows.push(f);
            }
        }
    }
    evidence.timings.push(Timing {
        what: "query to same-ID retry".to_string(),
        millis: gaps,
    });
    let rises: Vec<_> = ["conntrack.insert_failed", "conntrack.drop"]
        .iter()
        .filter_map(|k| ctx.counters.rise(NetnsRole::Node, k))
        .collect();
    if let Some(d) = ctx
        .counters
        .rise(NetnsRole::Node, "conntrack.clash_resolve")
    {
        evidence.counters.push(d);
    }
    if let Some(rc) = ctx.resolv {
        evidence.notes.push(format!(
            "resolv.conf: nameserver {} timeout:{} attempts:{}{}{}{}",
            rc.nameservers.join(","),
            rc.timeout_s,
            rc.attempts,
            if rc.single_request {
                " single-request"
            } else {
                ""
            },
            if rc.single_request_reopen {
                " single-request-reopen"
            } else {
                ""
            },
            if rc.use_vc { " use-vc" } else { "" },
        ));
        if rc.nameservers.iter().any(|n| n == "169.254.20.10") {
            evidence
                .notes
                .push("the nameserver is NodeLocal DNSCache (169.254.20.10)".to_string());
        }
    }
    let library = ctx.resolver.map(|r| r.library);
    if let Some(r) = ctx.resolver {
        evidence.notes.push(format!("resolver: {}", r.describe()));
        if let Some(n) = r.nsswitch_note() {
            evidence.notes.push(n.to_string());
        }
        let musl_ns = crate::resolver::musl_retry_ns(ctx.resolv);
        let glibc_ns = crate::resolver::glibc_retry_ns(ctx.resolv);
        evidence.notes.push(match r.library {
            crate::ResolverLibrary::Musl => format!(
                "musl re-sends an unanswered query every timeout/attempts = {:.1} s, to every nameserver at once",
                musl_ns as f64 / 1e9
            ),
            crate::ResolverLibrary::Glibc => format!(
                "glibc re-sends after timeout = {:.1} s, the A/AAAA pair from one socket",
                glibc_ns as f64 / 1e9
            ),
            _ => "resolver library unknown: glibc would re-send after timeout, musl after timeout/attempts".to_string(),
        });
    }
    let (confidence, alternative) = if paired > 0 && !rises.is_empty() {
        (Confidence::Confirmed, None)
    } else if paired > 0 {
        (Confidence::Likely, None)
    } else {
        (
            Confidence::Possible,
            Some(
                "a reply lost elsewhere (server overload, network loss): no parallel A/AAAA pair with one answer was seen"
                    .to_string(),
            ),
        )
    };
    evidence.counters.splice(0..0, rises);
    let summary = format!(
        "{total} DNS quer{} waited a resolver timeout (~{:.1} s) and were re-sent{}",
        if total == 1 { "y" } else { "ies" },
        retries
            .first()
            .map(|r| r.gap_ns as f64 / 1e9)
            .unwrap_or(0.0),
        if paired > 0 {
            format!(": {paired} time(s) the A/AAAA pair lost exactly one reply (conntrack race)")
        } else {
            String::new()
        }
    );
    Some(Finding {
        kind: Kind::DnsLostReplyTimeout,
        confidence,
        summary,
        flows,
        listeners: Vec::new(),
        names,
        evidence,
        remedy: match library {
            Some(crate::ResolverLibrary::Musl) => REMEDY_MUSL,
            Some(crate::ResolverLibrary::Glibc) => REMEDY,
            _ => REMEDY_UNKNOWN,
        }
        .to_string(),
        alternative,
    })
}

/// The TCP form (`options use-vc`): a query never answered while its sibling on the same
/// connection was. glibc reads TCP answers without a timeout, so instead of a re-send after
/// `timeout` seconds the lookup hangs until the connection ends (checked with glibc 2.36 in
/// the overlay lab: a persistently dropped AAAA answer left `getent` waiting until killed;
/// a reply dropped once is recovered by TCP itself in ~200 ms and shows nothing here).
pub(crate) fn finish_tcp(dns: &crate::dns::DnsTracker, ctx: &Ctx<'_>) -> Option<Finding> {
    let hangs = &dns.tcp_hangs;
    let first = hangs.first()?;
    let mut evidence = Evidence::default();
    let mut names = Vec::new();
    let mut flows = Vec::new();
    let mut waits = Vec::new();
    {
        let mut sink = EvidenceSink {
            out: &mut evidence.packets,
            total: &mut evidence.packets_total,
            cap: ctx.max_evidence,
        };
        for h in hangs {
            let name = dns.hang_name(h);
            let t = qtype_name(h.qtype);
            let (sq, sa, st) = h.sibling;
            let st = qtype_name(st);
            sink.push(
                h.query,
                format!("{t} {name} sent over TCP, its answer never arrived"),
            );
            sink.push(
                sq,
                format!("{st} {name} sent on the same TCP connection at the same time"),
            );
            sink.push(
                sa,
                format!("{st} {name} answered (only one answer of the pair arrived)"),
            );
            waits.push(h.waited_ns as f64 / 1e6);
            if !names.contains(&name) {
                names.push(name);
            }
            let f = format!(
                "{} -> {}/tcp",
                endpoint_text(h.client),
                endpoint_text(h.server)
            );
            if !flows.contains(&f) {
                flows.push(f);
            }
        }
    }
    evidence.timings.push(Timing {
        what: "unanswered TCP query to the end of its connection (or of the capture)".to_string(),
        millis: waits,
    });
    evidence.notes.push(
        "over TCP (options use-vc) glibc waits for an answer without a timeout: a lost reply is not re-sent after `timeout` s, the lookup hangs".to_string(),
    );
    let total = dns.tcp_hang_events;
    let summary = format!(
        "{total} DNS quer{} over TCP never answered while the other query of the pair on the same connection was: a lost reply; the lookup hung {:.1} s",
        if total == 1 { "y" } else { "ies" },
        first.waited_ns as f64 / 1e9
    );
    Some(Finding {
        kind: Kind::DnsLostReplyTimeout,
        confidence: Confidence::Likely,
        summary,
        flows,
        listeners: Vec::new(),
        names,
        evidence,
        remedy: REMEDY.to_string(),
        alternative: Some(
            "a DNS server that drops one type of question over TCP (check its logs)".to_string(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use crate::testutil::{counters, finding, run};
    use crate::{Confidence, Kind, Moment, NetnsRole};

    #[test]
    fn lost_aaaa_reply_and_same_id_retry_after_5s_is_likely() {
        let r = run(&["dns_lost_reply/pod.pcap"], |_| {});
        let f = finding(&r, Kind::DnsLostReplyTimeout).expect("found");
        assert_eq!(f.confidence, Confidence::Likely);
        assert_eq!(f.names, vec!["api.example.test"]);
        let gap = f.evidence.timings[0].millis[0];
        assert!((4900.0..5100.0).contains(&gap), "{gap}");
        let roles: Vec<&str> = f.evidence.packets.iter().map(|p| p.role.as_str()).collect();
        assert!(
            roles
                .iter()
                .any(|r| r.starts_with("AAAA") && r.contains("never arrived")),
            "{roles:?}"
        );
        assert!(
            roles
                .iter()
                .any(|r| r.starts_with("A ") && r.contains("answered")),
            "{roles:?}"
        );
        assert!(finding(&r, Kind::DnsNdotsAmplification).is_none());
    }

    #[test]
    fn node_insert_failed_confirms_the_race() {
        let r = run(&["dns_lost_reply/pod.pcap"], |a| {
            a.observe_counters(
                NetnsRole::Node,
                Moment::Before,
                &counters(&[("conntrack.insert_failed", 0)]),
            );
            a.observe_counters(
                NetnsRole::Node,
                Moment::After,
                &counters(&[("conntrack.insert_failed", 1)]),
            );
        });
        assert_eq!(
            finding(&r, Kind::DnsLostReplyTimeout).map(|f| f.confidence),
            Some(Confidence::Confirmed)
        );
    }

    #[test]
    fn over_tcp_an_unanswered_query_beside_an_answered_one_is_a_lost_reply() {
        let r = run(&["overlay/dns_lost_reply_tcp-pod.pcap"], |_| {});
        let f = finding(&r, Kind::DnsLostReplyTimeout).expect("found");
        assert_eq!(f.confidence, Confidence::Likely);
        assert_eq!(f.names, vec!["api.example.test"]);
        assert!(
            f.flows.iter().all(|fl| fl.ends_with(":53/tcp")),
            "{:?}",
            f.flows
        );
        let waited = f.evidence.timings[0].millis[0];
        assert!((7500.0..9000.0).contains(&waited), "{waited}");
        // Every query over TCP answered: nothing.
        for file in [
            "overlay/dns_ndots_tcp-pod.pcap",
            "overlay/dns_truncated_retry-pod.pcap",
        ] {
            let r = run(&[file], |_| {});
            assert!(finding(&r, Kind::DnsLostReplyTimeout).is_none(), "{file}");
        }
    }

    #[test]
    fn prompt_answers_are_healthy() {
        for file in ["healthy_dns/pod.pcap", "dns_ndots/pod.pcap"] {
            let r = run(&[file], |_| {});
            assert!(finding(&r, Kind::DnsLostReplyTimeout).is_none(), "{file}");
            assert_eq!(r.dns.retries, 0, "{file}");
        }
    }
}

#[cfg(test)]
mod resolver_tests {
    use crate::testutil::{finding, run};
    use crate::{Kind, Resolver, ResolverLibrary, ResolverSource};

    #[test]
    fn musl_retry_after_2_5_s_gets_musl_remedy_glibc_5_s_glibc_remedy() {
        let r = run(&["musl_dns_lost_reply/pod.pcap"], |_| {});
        assert_eq!(
            r.resolver.as_ref().map(|x| (x.library, x.source)),
            Some((ResolverLibrary::Musl, ResolverSource::Packets))
        );
        let f = finding(&r, Kind::DnsLostReplyTimeout).expect("found");
        assert!(
            f.remedy.starts_with("The pod resolves with musl"),
            "{}",
            f.remedy
        );
        assert!(!f.remedy.contains("{name: single-request-reopen}"));
        let r = run(&["dns_lost_reply/pod.pcap"], |_| {});
        assert_eq!(
            r.resolver.as_ref().map(|x| x.library),
            Some(ResolverLibrary::Glibc)
        );
        let f = finding(&r, Kind::DnsLostReplyTimeout).expect("found");
        assert!(f.remedy.contains("{name: single-request-reopen}"));
    }

    #[test]
    fn unknown_library_remedy_says_what_holds_for_each() {
        let r = run(&["dns_lost_reply/pod.pcap"], |a| {
            a.set_resolver(Resolver::new(
                ResolverLibrary::Unknown,
                ResolverSource::Elf,
                "/app is statically linked",
            ))
        });
        let f = finding(&r, Kind::DnsLostReplyTimeout).expect("found");
        assert!(
            f.remedy.contains("musl") && f.remedy.contains("glibc"),
            "{}",
            f.remedy
        );
        assert!(
            f.evidence
                .notes
                .iter()
                .any(|n| n.contains("statically linked")),
            "{:?}",
            f.evidence.notes
        );
    }
}
