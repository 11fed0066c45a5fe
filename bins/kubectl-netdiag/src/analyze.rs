//! `kubectl-netdiag analyze`: offline diagnosis of capture files.
//!
//! Reads pcap/pcapng files (each one a capture point: its packets are numbered from 1
//! and its flows never merge with another file's), optional counter snapshots of the pod
//! and node netns (the testdata layout: `net/netstat`, `net/stat/nf_conntrack`, …) and
//! the pod's resolv.conf, and prints the findings. `--annotate` writes a pcapng copy of
//! every packet with a comment on each evidence packet (`frame.comment` in Wireshark).

#[path = "report.rs"]
pub(crate) mod report;

use crate::exit::Outcome;
use anyhow::Result;
use netdiag::analyze::{Config, Moment, NetnsRole, Resolver, ResolverLibrary, ResolverSource};
use netdiag::{Diagnosis, Event};
use report::{FailOn, OutputFormat};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `kubectl-netdiag analyze`.
#[derive(Debug, clap::Args)]
pub(crate) struct AnalyzeArgs {
    /// Capture files (pcap or pcapng, as tcpdump, tshark or `kubectl-netdiag capture` write
    /// them); `-` reads standard input (`tcpdump -w - | kubectl netdiag analyze -`).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The pod's resolv.conf (ndots, search list, timeout, attempts).
    #[arg(long, value_name = "PATH")]
    resolv_conf: Option<PathBuf>,
    /// The pod's resolver library, when known (`readelf -l` on the container's program:
    /// `ld-musl-*` is musl, `ld-linux-*` glibc). Without it, it is inferred from the queries
    /// where they tell (retry interval, queries to several nameservers at once).
    #[arg(long, value_name = "LIB", value_parser = ["glibc", "musl"])]
    resolver: Option<String>,
    /// Counter snapshot of the pod netns taken before the capture (a directory mirroring /proc).
    #[arg(long, value_name = "DIR", requires = "counters_after")]
    counters_before: Option<PathBuf>,
    /// Counter snapshot of the pod netns taken after the capture.
    #[arg(long, value_name = "DIR", requires = "counters_before")]
    counters_after: Option<PathBuf>,
    /// Counter snapshot of the node netns taken before the capture.
    #[arg(long, value_name = "DIR", requires = "node_counters_after")]
    node_counters_before: Option<PathBuf>,
    /// Counter snapshot of the node netns taken after the capture.
    #[arg(long, value_name = "DIR", requires = "node_counters_before")]
    node_counters_after: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Human)]
    output: OutputFormat,
    /// Write a pcapng copy of the input with a comment on every evidence packet.
    #[arg(long, value_name = "OUT.pcapng")]
    annotate: Option<PathBuf>,
    /// Exit 1 when a finding is at least this confident.
    #[arg(long, value_enum, default_value_t = FailOn::Likely)]
    fail_on: FailOn,
    /// Most flows held at once (memory cap of the flow table).
    #[arg(long, value_name = "N")]
    max_flows: Option<usize>,
}

/// Runs `kubectl-netdiag analyze`: the library's offline [`Diagnosis`], rendered.
pub(crate) fn run(args: AnalyzeArgs) -> Result<Outcome> {
    let mut d = Diagnosis::files(args.files.iter().cloned());
    if let Some(n) = args.max_flows {
        d = d.analyzer_config(Config::default().with_max_flows(n));
    }
    if let Some(p) = &args.resolv_conf {
        d = d.resolv_conf_file(p);
    }
    if let Some(lib) = args
        .resolver
        .as_deref()
        .and_then(ResolverLibrary::from_str_opt)
    {
        d = d.resolver(Resolver::new(lib, ResolverSource::Given, "--resolver"));
    }
    let snapshots = [
        (&args.counters_before, NetnsRole::Pod, Moment::Before),
        (&args.counters_after, NetnsRole::Pod, Moment::After),
        (&args.node_counters_before, NetnsRole::Node, Moment::Before),
        (&args.node_counters_after, NetnsRole::Node, Moment::After),
    ];
    for (dir, role, moment) in snapshots {
        if let Some(dir) = dir {
            d = d.counter_snapshot(role, moment, dir);
        }
    }
    if let Some(out) = &args.annotate {
        d = d.annotate(out);
    }
    let done = d.run_with(|event| {
        if let Event::Warning(w) = event {
            eprintln!("kubectl-netdiag: warning: {w}");
        }
    })?;
    let report = done.report;
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let color = args.output == OutputFormat::Human && report::stdout_wants_color();
    report::render(&report, args.output, color, &mut lock)?;
    lock.flush()?;
    let threshold = args.fail_on.confidence();
    Ok(if report.findings_at_least(threshold).next().is_some() {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}
