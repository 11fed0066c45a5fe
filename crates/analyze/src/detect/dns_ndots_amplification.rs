//! `dns_ndots_amplification`: the search list multiplies every lookup (DETECTION.md §4).
//!
//! The DNS tracker groups the queries of one logical lookup; a lookup that went through
//! search-list expansions answered negatively before the name resolved is the signature.
//! Packets alone make it `likely`; with the pod's resolv.conf showing an `ndots` above
//! the names' dots and a search list that explains the expansions, it is `confirmed`.

use super::{Ctx, EvidenceSink};
use crate::dns::ExpandedLookup;
use crate::model::{Confidence, DnsStats, Evidence, Finding, Kind, Timing};

const REMEDY: &str = "Lower ndots for the pod: `dnsConfig.options: [{name: ndots, value: \"2\"}]`, \
write external names fully qualified with a trailing dot (`api.example.com.`), enable CoreDNS \
`autopath`, or run NodeLocal DNSCache.";

/// musl (Alpine): the same levers, said its way. musl walks the search list only for
/// names with fewer dots than ndots and never after trying the name as written; it
/// ignores `RES_OPTIONS`/`LOCALDOMAIN`, so the fix goes into resolv.conf (`dnsConfig`).
const REMEDY_MUSL: &str = "The pod resolves with musl (Alpine), which walks the search list for \
every name with fewer dots than ndots: write names fully qualified with a trailing dot \
(`api.example.com.`: musl then sends one query per address family), or lower ndots in the pod \
spec (`dnsConfig.options: [{name: ndots, value: \"2\"}]`; musl ignores `RES_OPTIONS`), and run \
NodeLocal DNSCache; CoreDNS `autopath` also cuts the round trips.";

/// The finding, if any.
pub(crate) fn finish(
    expanded: &[ExpandedLookup],
    stats: &DnsStats,
    ctx: &Ctx<'_>,
) -> Option<Finding> {
    if expanded.is_empty() {
        return None;
    }
    let mut evidence = Evidence::default();
    let mut names: Vec<String> = Vec::new();
    let mut wasted = Vec::new();
    {
        let mut sink = EvidenceSink {
            out: &mut evidence.packets,
            total: &mut evidence.packets_total,
            cap: ctx.max_evidence,
        };
        for l in expanded {
            if !names.contains(&l.base) {
                names.push(l.base.clone());
            }
            wasted.push(l.wasted_ns as f64 / 1e6);
            for (p, role) in &l.packets {
                sink.push(*p, format!("{}: {role}", l.base));
            }
        }
    }
    evidence.timings.push(Timing {
        what: "time spent on negative (NXDOMAIN/NODATA) answers per lookup".to_string(),
        millis: wasted,
    });
    if let Some(lat) = expanded.iter().filter_map(|l| l.latency_ns).max() {
        evidence.timings.push(Timing {
            what: "slowest expanded lookup, first query to answer".to_string(),
            millis: vec![lat as f64 / 1e6],
        });
    }
    let negative: u32 = expanded.iter().map(|l| l.negative).sum();
    evidence.notes.push(format!(
        "{negative} negative answer(s) (NXDOMAIN/NODATA) before the names resolved"
    ));
    let queries: usize = expanded.iter().map(|l| l.queries).sum();
    let minimal: usize = expanded.iter().map(|l| l.minimal).sum();
    let factor = if minimal > 0 {
        queries as f64 / minimal as f64
    } else {
        0.0
    };
    evidence.notes.push(format!(
        "amplification factor {factor:.1}: {queries} queries where fully-qualified names would need {minimal} (all lookups: {:.2})",
        stats.amplification_factor
    ));
    let musl = ctx
        .resolver
        .is_some_and(|r| r.library == crate::ResolverLibrary::Musl);
    if let Some(r) = ctx.resolver {
        evidence.notes.push(format!("resolver: {}", r.describe()));
        if let Some(n) = r.nsswitch_note() {
            evidence.notes.push(n.to_string());
        }
        evidence.notes.push(match r.library {
            crate::ResolverLibrary::Musl => "musl's rule: a name with fewer dots than ndots goes through every search domain first; one with at least ndots dots (or a trailing dot) is sent only as written".to_string(),
            crate::ResolverLibrary::Glibc => "glibc's rule: a name with fewer dots than ndots goes through every search domain first, then as written; one with at least ndots dots is tried as written first, then still through the search list".to_string(),
            _ => "resolver library unknown (static binary or no evidence): glibc's and musl's search rules agree for names with fewer dots than ndots".to_string(),
        });
    }
    let mut confidence = Confidence::Likely;
    match ctx.resolv {
        Some(rc) => {
            evidence.notes.push(format!(
                "resolv.conf: ndots:{} search {}",
                rc.ndots,
                if rc.search.is_empty() {
                    "(none)".to_string()
                } else {
                    rc.search.join(" ")
                }
            ));
            let explained = !rc.search.is_empty()
                && expanded.iter().all(|l| {
                    let dots = l.base.matches('.').count();
                    dots < usize::from(rc.ndots)
                        && rc.search.iter().any(|s| l.first_name.ends_with(s.as_str()))
                });
            if explained {
                confidence = Confidence::Confirmed;
            }
        }
        None => evidence.notes.push(format!(
            "search list inferred from the observed suffixes: {}",
            if stats.search_suffixes.is_empty() {
                "(none)".to_string()
            } else {
                stats.search_suffixes.join(" ")
            }
        )),
    }
    let ndots_text = ctx
        .resolv
        .map(|rc| format!(" (ndots:{}, {} search domains)", rc.ndots, rc.search.len()))
        .unwrap_or_default();
    let summary = format!(
        "{} lookup(s) such as {} went through the search list first{ndots_text}: {factor:.1}x the queries, mostly NXDOMAIN",
        stats.expanded_lookups.max(expanded.len() as u64),
        names.first().map(String::as_str).unwrap_or("?")
    );
    Some(Finding {
        kind: Kind::DnsNdotsAmplification,
        confidence,
        summary,
        flows: Vec::new(),
        listeners: Vec::new(),
        names,
        evidence,
        remedy: if musl { REMEDY_MUSL } else { REMEDY }.to_string(),
        alternative: None,
    })
}

#[cfg(test)]
mod tests {
    use crate::testutil::{finding, run, testdata};
    use crate::{Confidence, Kind};

    #[test]
    fn search_expansions_are_one_lookup_with_inferred_suffixes() {
        let r = run(&["dns_ndots/pod.pcap"], |_| {});
        let f = finding(&r, Kind::DnsNdotsAmplification).expect("found");
        assert_eq!(f.confidence, Confidence::Likely);
        assert_eq!(f.names, vec!["api.example.test"]);
        assert_eq!(r.dns.logical_lookups, 1);
        assert_eq!(r.dns.queries_sent, 8);
        assert!(
            (r.dns.amplification_factor - 4.0).abs() < 1e-9,
            "{}",
            r.dns.amplification_factor
        );
        let mut sfx = r.dns.search_suffixes.clone();
        sfx.sort();
        assert_eq!(
            sfx,
            vec![
                "cluster.local",
                "default.svc.cluster.local",
                "svc.cluster.local"
            ]
        );
        assert!(!r.dns.search_from_resolv_conf);
        assert!(
            f.evidence.notes.iter().any(|n| n.contains("inferred")),
            "{:?}",
            f.evidence.notes
        );
    }

    #[test]
    fn resolv_conf_states_ndots_and_confirms() {
        let rc = std::fs::read_to_string(testdata("dns_ndots/resolv.conf")).expect("resolv.conf");
        let r = run(&["dns_ndots/pod.pcap"], |a| a.set_resolv_conf(&rc));
        let f = finding(&r, Kind::DnsNdotsAmplification).expect("found");
        assert_eq!(f.confidence, Confidence::Confirmed);
        assert!(f.summary.contains("ndots:5"), "{}", f.summary);
        assert!(
            f.evidence
                .notes
                .iter()
                .any(|n| n.contains("ndots:5 search default.svc.cluster.local")),
            "{:?}",
            f.evidence.notes
        );
        assert!(r.dns.search_from_resolv_conf);
    }

    #[test]
    fn fully_qualified_names_are_not_amplified() {
        let r = run(&["healthy_dns/pod.pcap"], |_| {});
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert!(r.dns.logical_lookups >= 2);
        assert!(
            (r.dns.amplification_factor - 1.0).abs() < 1e-9,
            "{}",
            r.dns.amplification_factor
        );
    }
}

#[cfg(test)]
mod resolver_tests {
    use crate::testutil::{finding, run, testdata};
    use crate::{Confidence, Kind, Resolver, ResolverLibrary, ResolverSource};

    #[test]
    fn musl_walk_is_confirmed_with_musl_rule_and_remedy() {
        let rc = std::fs::read_to_string(testdata("musl_dns_ndots/resolv.conf")).expect("rc");
        let r = run(&["musl_dns_ndots/pod.pcap"], |a| {
            a.set_resolv_conf(&rc);
            a.set_resolver(
                Resolver::new(
                    ResolverLibrary::Musl,
                    ResolverSource::Elf,
                    "interpreter /lib/ld-musl-x86_64.so.1 of /app",
                )
                .with_nsswitch_conf(false),
            );
        });
        let f = finding(&r, Kind::DnsNdotsAmplification).expect("found");
        assert_eq!(f.confidence, Confidence::Confirmed);
        assert!(
            f.remedy.starts_with("The pod resolves with musl"),
            "{}",
            f.remedy
        );
        let notes = f.evidence.notes.join("\n");
        assert!(notes.contains("musl's rule"), "{notes}");
        assert!(notes.contains("no /etc/nsswitch.conf"), "{notes}");
        assert_eq!(r.dns.queries_sent, 8);
        // glibc's recording of the same walk keeps glibc's remedy.
        let r = run(&["dns_ndots/pod.pcap"], |_| {});
        let f = finding(&r, Kind::DnsNdotsAmplification).expect("found");
        assert!(!f.remedy.contains("musl"), "{}", f.remedy);
    }
}
