//! Rendering a [`Report`] for people (readable at a glance, colour only on a terminal)
//! and for programs (the JSON schema documented in `netdiag-analyze`).
//!
//! Shared by `analyze` (offline) and `diagnose` (live): both call [`render`].

use netdiag::analyze::{Confidence, Finding, Report};
use std::io::{self, IsTerminal, Write};

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// A report for people.
    Human,
    /// The stable JSON schema (one object).
    Json,
}

/// `--fail-on`: the lowest confidence that makes the exit code 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FailOn {
    /// Any finding.
    Possible,
    /// Likely or confirmed findings (default).
    Likely,
    /// Only confirmed findings.
    Confirmed,
}

impl FailOn {
    pub(crate) fn confidence(self) -> Confidence {
        match self {
            FailOn::Possible => Confidence::Possible,
            FailOn::Likely => Confidence::Likely,
            FailOn::Confirmed => Confidence::Confirmed,
        }
    }
}

/// Whether to colour output on stdout: a terminal, and `NO_COLOR` unset or empty.
pub(crate) fn stdout_wants_color() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && io::stdout().is_terminal()
}

/// Writes `report` in `format` to `out`.
pub(crate) fn render(
    report: &Report,
    format: OutputFormat,
    color: bool,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        OutputFormat::Json => {
            // Serialise first, then write: an EPIPE from the reader then stays an
            // io::Error of kind BrokenPipe (a quiet exit), not a serde error.
            let mut text = serde_json::to_vec_pretty(report).map_err(io::Error::other)?;
            text.push(b'\n');
            out.write_all(&text)
        }
        OutputFormat::Human => render_human(report, color, out),
    }
}

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn confidence(&self, c: Confidence) -> String {
        let (code, text) = match c {
            Confidence::Confirmed => ("1;31", "CONFIRMED"),
            Confidence::Likely => ("1;33", "LIKELY   "),
            Confidence::Possible => ("1;36", "POSSIBLE "),
        };
        self.paint(code, text)
    }
}

/// How many items of a list the human report shows before "… and N more".
const SHOW: usize = 5;

fn render_human(r: &Report, color: bool, out: &mut dyn Write) -> io::Result<()> {
    let st = Style { on: color };
    let c = &r.capture;
    let span = match (c.first_ns, c.last_ns) {
        (Some(a), Some(b)) => format!(", {:.1} s of traffic", b.saturating_sub(a) as f64 / 1e9),
        _ => String::new(),
    };
    let names: Vec<&str> = r.sources.iter().map(|s| s.name.as_str()).collect();
    writeln!(
        out,
        "{} {} — {} packets, {} flows{span}",
        st.bold("netdiag analyze:"),
        names.join(", "),
        c.packets,
        c.flows
    )?;
    writeln!(out)?;
    if r.findings.is_empty() {
        writeln!(out, "{} no findings", st.paint("1;32", "✓"))?;
    } else {
        writeln!(out, "{} finding(s):", r.findings.len())?;
    }
    for f in &r.findings {
        writeln!(out)?;
        render_finding(r, f, &st, out)?;
    }
    writeln!(out)?;
    let t = &r.tcp;
    let resets: Vec<String> = t
        .resets_by_origin
        .iter()
        .map(|(k, v)| format!("{v} by {k}"))
        .collect();
    writeln!(
        out,
        "{} {} connections, {} handshakes, {} SYN retransmissions, {} retransmissions, resets: {}",
        st.bold("TCP:"),
        t.connections,
        t.handshakes,
        t.syn_retransmissions,
        t.retransmissions,
        if resets.is_empty() {
            "none".to_string()
        } else {
            resets.join(", ")
        }
    )?;
    if !t.unanswered_syns.is_empty() {
        let list: Vec<String> = t
            .unanswered_syns
            .iter()
            .take(SHOW)
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect();
        writeln!(out, "     unanswered SYNs: {}", list.join(", "))?;
    }
    let d = &r.dns;
    let ms = |v: Option<f64>| {
        v.map(|x| format!("{x:.1} ms"))
            .unwrap_or_else(|| "-".into())
    };
    writeln!(
        out,
        "{} {} queries, {} logical lookups ({} expanded), amplification {:.2}x, NXDOMAIN {:.0}%, {} retries, latency p50 {} p99 {}",
        st.bold("DNS:"),
        d.queries_sent,
        d.logical_lookups,
        d.expanded_lookups,
        d.amplification_factor,
        d.nxdomain_share * 100.0,
        d.retries,
        ms(d.latency_p50_ms),
        ms(d.latency_p99_ms)
    )?;
    if !d.search_suffixes.is_empty() {
        writeln!(
            out,
            "     search list ({}): {}",
            if d.search_from_resolv_conf {
                "resolv.conf"
            } else {
                "inferred"
            },
            d.search_suffixes.join(" ")
        )?;
    }
    if let Some(rc) = &r.resolv_conf {
        writeln!(
            out,
            "     resolv.conf: ndots:{} timeout:{} attempts:{} nameserver {}",
            rc.ndots,
            rc.timeout_s,
            rc.attempts,
            rc.nameservers.join(",")
        )?;
    }
    if let Some(res) = &r.resolver {
        writeln!(out, "     resolver: {}", res.describe())?;
    }
    if c.flows_evicted_full > 0 {
        writeln!(
            out,
            "{} flow table full ({} flows): {} flows evicted early",
            st.bold("note:"),
            c.flow_cap,
            c.flows_evicted_full
        )?;
    }
    for s in &r.skipped {
        writeln!(
            out,
            "{} {} × {}: {}",
            st.dim("skipped:"),
            s.count,
            s.what,
            s.why
        )?;
    }
    for l in &r.limits {
        writeln!(out, "{} {l}", st.dim("limits:"))?;
    }
    Ok(())
}

fn render_finding(r: &Report, f: &Finding, st: &Style, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{} {}",
        st.confidence(f.confidence),
        st.bold(f.kind.as_str())
    )?;
    writeln!(out, "  {}", f.summary)?;
    let list = |label: &str, items: &[String], out: &mut dyn Write| -> io::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let shown: Vec<&str> = items.iter().take(SHOW).map(String::as_str).collect();
        let more = items.len().saturating_sub(SHOW);
        write!(out, "  {label:<12}{}", shown.join(", "))?;
        if more > 0 {
            write!(out, " … and {more} more")?;
        }
        writeln!(out)
    };
    list("flows:", &f.flows, out)?;
    let listeners: Vec<String> = f
        .listeners
        .iter()
        .map(|l| {
            let q = match (l.queued, l.backlog) {
                (Some(q), Some(b)) => format!(" (queued {q}/{b})"),
                (Some(q), None) => format!(" (queued {q})"),
                _ => String::new(),
            };
            format!("{}:{}{q}", l.addr, l.port)
        })
        .collect();
    list("listeners:", &listeners, out)?;
    list("names:", &f.names, out)?;
    let e = &f.evidence;
    for (i, p) in e.packets.iter().take(SHOW).enumerate() {
        let src = r
            .sources
            .get(usize::from(p.packet.source))
            .map(|s| s.name.as_str())
            .unwrap_or("?");
        let label = if i == 0 { "packets:" } else { "" };
        writeln!(
            out,
            "  {label:<12}#{} in {src}: {}",
            p.packet.number, p.role
        )?;
    }
    let total = e.packets_total.max(e.packets.len() as u64);
    if total > SHOW as u64 {
        writeln!(out, "  {:<12}… {} evidence packets in all", "", total)?;
    }
    for (i, d) in e.counters.iter().enumerate() {
        let label = if i == 0 { "counters:" } else { "" };
        writeln!(
            out,
            "  {label:<12}{} {} {} → {} (+{})",
            d.netns,
            d.key,
            d.before,
            d.after,
            d.after.saturating_sub(d.before)
        )?;
    }
    for t in &e.timings {
        let v: Vec<String> = t.millis.iter().take(8).map(|m| format!("{m:.0}")).collect();
        let more = if t.millis.len() > 8 { ", …" } else { "" };
        writeln!(
            out,
            "  {:<12}{}: {} ms{more}",
            "timing:",
            t.what,
            v.join(", ")
        )?;
    }
    for n in &e.notes {
        writeln!(out, "  {:<12}{n}", "note:")?;
    }
    if let Some(a) = &f.alternative {
        writeln!(out, "  {:<12}{a}", "or else:")?;
    }
    writeln!(out, "  {:<12}{}", st.bold("remedy:"), f.remedy)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netdiag::analyze::{Analyzer, Config};

    /// The human report of a lab recording, as a user sees it without colour.
    fn human(scenario: &str) -> String {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata")
            .join(scenario);
        let mut a = Analyzer::new(Config::default());
        let rc = std::fs::read_to_string(dir.join("resolv.conf")).expect("resolv.conf");
        a.set_resolv_conf(&rc);
        // A stable source name: the snapshot must not depend on the checkout path.
        a.begin_source(format!("{scenario}/pod.pcap"));
        let mut r = netdiag::pcapio::Reader::open(dir.join("pod.pcap")).expect("pod.pcap");
        while let Some(p) = r.next_packet().expect("well-formed") {
            a.feed(p.timestamp_ns, p.link_type, p.data);
        }
        let mut out = Vec::new();
        render(&a.finish(), OutputFormat::Human, false, &mut out).expect("render");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn human_report_dns_ndots() {
        insta::assert_snapshot!(human("dns_ndots"));
    }

    #[test]
    fn human_report_musl_lost_reply_names_the_resolver() {
        insta::assert_snapshot!(human("musl_dns_lost_reply"));
    }

    #[test]
    fn human_report_pmtu_blackhole() {
        insta::assert_snapshot!(human("pmtu_blackhole"));
    }

    #[test]
    fn colour_only_when_asked() {
        let plain = human("accept_overflow_syn");
        assert!(!plain.contains('\x1b'));
        assert!(plain.contains("LIKELY"));
    }
}
