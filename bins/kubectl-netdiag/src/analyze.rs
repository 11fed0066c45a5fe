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
use anyhow::{Context, Result};
use netdiag::analyze::{Analyzer, Config, Counters, Moment, NetnsRole, Report};
use netdiag::pcapio::{InterfaceDesc, PacketOut, PcapngWriter, Reader};
use report::{FailOn, OutputFormat};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `kubectl-netdiag analyze`.
#[derive(Debug, clap::Args)]
pub(crate) struct AnalyzeArgs {
    /// Capture files (pcap or pcapng, as tcpdump, tshark or `kubectl-netdiag capture` write them).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The pod's resolv.conf (ndots, search list, timeout, attempts).
    #[arg(long, value_name = "PATH")]
    resolv_conf: Option<PathBuf>,
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
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
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

/// Reads a counter snapshot directory into the analyzer's input type.
pub(crate) fn read_counters(dir: &Path) -> Result<Counters> {
    let snap = netdiag::kernel::Snapshot::read_dir(dir)
        .with_context(|| format!("reading counter snapshot {}", dir.display()))?;
    Ok(netdiag::counters(&snap))
}

/// Runs `kubectl-netdiag analyze`.
pub(crate) fn run(args: AnalyzeArgs) -> Result<Outcome> {
    let mut config = Config::default();
    if let Some(n) = args.max_flows {
        config = config.with_max_flows(n);
    }
    let mut analyzer = Analyzer::try_new(config)?;
    if let Some(p) = &args.resolv_conf {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("reading resolv.conf {}", p.display()))?;
        analyzer.set_resolv_conf(&text);
    }
    let snapshots = [
        (&args.counters_before, NetnsRole::Pod, Moment::Before),
        (&args.counters_after, NetnsRole::Pod, Moment::After),
        (&args.node_counters_before, NetnsRole::Node, Moment::Before),
        (&args.node_counters_after, NetnsRole::Node, Moment::After),
    ];
    for (dir, role, moment) in snapshots {
        if let Some(dir) = dir {
            analyzer.observe_counters(role, moment, &read_counters(dir)?);
        }
    }
    for file in &args.files {
        feed_file(&mut analyzer, file)?;
    }
    let report = analyzer.finish();
    if let Some(out) = &args.annotate {
        annotate(&args.files, &report, out)?;
    }
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

fn open(file: &Path) -> Result<Reader<std::io::BufReader<std::fs::File>>> {
    // The reader's errors name the file and the byte offset.
    Ok(Reader::open(file)?)
}

/// Feeds every packet of `file` as one source.
fn feed_file(analyzer: &mut Analyzer, file: &Path) -> Result<()> {
    let mut reader = open(file)?;
    analyzer.begin_source(file.display().to_string());
    let mut n = 0u64;
    loop {
        match reader.next_packet() {
            Ok(Some(p)) => {
                analyzer.feed(p.timestamp_ns, p.link_type, p.data);
                n += 1;
            }
            Ok(None) => return Ok(()),
            // A capture cut short in its last record (tcpdump killed mid-write) still
            // holds every packet before it: report on those, as Wireshark does, but say so.
            Err(e) if e.is_truncation() && n > 0 => {
                eprintln!(
                    "kubectl-netdiag: warning: {e}; analyzed the {n} complete packets before it"
                );
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes every input packet to a pcapng file, commenting the evidence packets.
pub(crate) fn annotate(files: &[PathBuf], report: &Report, out: &Path) -> Result<()> {
    let mut comments: HashMap<(u16, u64), Vec<String>> = HashMap::new();
    for f in &report.findings {
        for p in &f.evidence.packets {
            comments
                .entry((p.packet.source, p.packet.number))
                .or_default()
                .push(format!(
                    "netdiag: {} ({}): {}",
                    f.kind.as_str(),
                    f.confidence.as_str(),
                    p.role
                ));
        }
    }
    let file = std::fs::File::create(out)
        .with_context(|| format!("creating annotated capture {}", out.display()))?;
    let mut w =
        PcapngWriter::new(std::io::BufWriter::new(file))?.with_name(out.display().to_string());
    for (source, path) in files.iter().enumerate() {
        let source = u16::try_from(source).unwrap_or(u16::MAX);
        let mut reader = open(path)?;
        let mut ifmap: HashMap<u32, u32> = HashMap::new();
        let mut number = 0u64;
        loop {
            let (p, interfaces) = match reader.next_packet_with_interfaces() {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) if e.is_truncation() && number > 0 => break,
                Err(e) => return Err(e.into()),
            };
            number += 1;
            let iface = match ifmap.get(&p.interface) {
                Some(i) => *i,
                None => {
                    // Interfaces appear (pcapng IDBs) before their first packet.
                    let desc = interfaces
                        .get(p.interface as usize)
                        .map(InterfaceDesc::from)
                        .unwrap_or_else(|| InterfaceDesc::new(p.link_type, 0));
                    let desc = InterfaceDesc {
                        description: Some(format!("{} (netdiag source {source})", path.display())),
                        nanos: true,
                        ..desc
                    };
                    let i = w.add_interface(&desc)?;
                    ifmap.insert(p.interface, i);
                    i
                }
            };
            let mine: Vec<&str> = comments
                .get(&(source, number))
                .map(|v| v.iter().map(String::as_str).collect())
                .unwrap_or_default();
            w.write_packet(&PacketOut {
                interface: iface,
                timestamp_ns: p.timestamp_ns,
                data: p.data,
                original_len: p.original_len,
                comments: &mine,
            })?;
        }
    }
    w.flush()?;
    Ok(())
}
