//! `kubectl-netdiag diagnose`: counters before, a live capture, counters after, a verdict.
//!
//! The pod's namespace and the node's are snapshotted (`/proc/net/*`, conntrack stats,
//! sysctls, sock_diag listeners) before and after the capture; the packets and both
//! deltas feed the same analyzer as `analyze`, so counters raise a finding's confidence
//! (ListenOverflows, the node's `insert_failed`/`drop`, the node's `invalid`).

use crate::analyze::report::{self, FailOn, OutputFormat};
use crate::exit::Outcome;
use crate::live::{self, Flow, Limits};
use crate::signals::Interrupt;
use crate::target::{self, Target, TargetArgs};
use anyhow::Context;
use netdiag::analyze::{Analyzer, Config, Kind, Moment, NetnsRole};
use netdiag::capture::{CaptureConfig, Event, InterfaceChoice, LiveCapture};
use netdiag::kernel::Snapshot;
use netdiag::netns::NetNs;
use netdiag::pcapio::{InterfaceDesc, PacketOut, PcapngWriter};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Arguments of `kubectl-netdiag diagnose`.
#[derive(Debug, clap::Args)]
pub(crate) struct DiagnoseArgs {
    /// The pod: `NAME`, `NAMESPACE/NAME` (or -n); omit with --pid/--netns.
    #[arg(value_name = "POD")]
    pub(crate) pod: Option<String>,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// The node's network namespace (default: this process's, i.e. the host's on a node).
    #[arg(long, value_name = "PATH")]
    pub(crate) node_netns: Option<PathBuf>,
    /// Do not read the node namespace's counters.
    #[arg(long, conflicts_with_all = ["node_netns", "node_interface"])]
    pub(crate) no_node_counters: bool,
    /// Also capture on this interface of the node's netns (e.g. the uplink `eth0`, or
    /// `any`): the NAT side, where conntrack INVALID's bogus segment and the node's RST,
    /// and SNAT's dropped SYNs, are visible. Analysed as a second capture point.
    #[arg(long, value_name = "IFACE")]
    pub(crate) node_interface: Option<String>,
    /// How long to capture (30s, 500ms, 2m); SIGINT/SIGTERM end it early.
    #[arg(long, value_name = "D", default_value = "30s", value_parser = live::parse_duration)]
    pub(crate) duration: Duration,
    /// Interface inside the pod; `any` for all. Default: the default route's (eth0).
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub(crate) interface: Option<String>,
    /// A BPF filter (tcpdump syntax) for the capture, e.g. "tcp or port 53".
    #[arg(long, value_name = "EXPR")]
    pub(crate) filter: Option<String>,
    /// The pod's resolv.conf, when it cannot be read from the pod's root (default: the
    /// pod's /etc/resolv.conf, read safely inside its root; for `--netns /run/netns/NAME`,
    /// /etc/netns/NAME/resolv.conf as `ip netns exec` uses).
    #[arg(long, value_name = "PATH")]
    pub(crate) resolv_conf: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub(crate) output: OutputFormat,
    /// Also write the capture as pcapng with a comment on every evidence packet.
    #[arg(long, value_name = "OUT.pcapng")]
    pub(crate) annotate: Option<PathBuf>,
    /// Exit 1 when a finding is at least this confident.
    #[arg(long, value_enum, default_value_t = FailOn::Likely)]
    pub(crate) fail_on: FailOn,
    /// Most flows held at once (memory cap of the flow table).
    #[arg(long, value_name = "N")]
    pub(crate) max_flows: Option<usize>,
}

/// Runs `kubectl-netdiag diagnose`.
pub(crate) fn run(args: DiagnoseArgs) -> anyhow::Result<Outcome> {
    let interrupt = Interrupt::install()?;
    let target = target::resolve(args.pod.as_deref(), &args.target)?;
    for note in &target.notes {
        eprintln!("note: {note}");
    }
    let node = if args.no_node_counters {
        None
    } else {
        Some(target::node_netns(args.node_netns.as_deref()).context("opening the node netns")?)
    };

    let mut config = Config::default();
    if let Some(n) = args.max_flows {
        config = config.with_max_flows(n);
    }
    let mut analyzer = Analyzer::try_new(config)?;
    if let Some(text) = resolv_conf(&args, &target)? {
        analyzer.set_resolv_conf(&text);
    }

    let pod_before = snapshot_in(&target)?;
    let node_before = node.as_ref().map(snapshot_node).transpose()?;

    let capture_config = CaptureConfig {
        interface: args
            .interface
            .as_deref()
            .map(InterfaceChoice::from_arg)
            .unwrap_or_default(),
        filter: args.filter.clone(),
        ..CaptureConfig::default()
    };
    let mut cap = live::open(&target, capture_config)?;
    let link_type = cap.link_type();
    let node_capture = match (&args.node_interface, &node) {
        (Some(iface), Some(node)) => Some(NodeCapture::start(
            node,
            iface,
            args.filter.clone(),
            args.duration,
            &interrupt,
        )?),
        _ => None,
    };
    eprintln!(
        "diagnosing {} on {} for {:.0?} (Ctrl-C ends early)",
        target.label,
        cap.interface(),
        args.duration
    );

    // With --annotate, the packets go to a scratch pcapng beside OUT while they are
    // analysed; the annotated copy is written from it once the findings are known.
    let mut raw = match &args.annotate {
        Some(out) => {
            let path = scratch_path(out);
            let file = std::fs::File::create(&path)
                .with_context(|| format!("creating scratch capture {}", path.display()))?;
            let mut w = PcapngWriter::new(std::io::BufWriter::new(file))?
                .with_name(path.display().to_string());
            let desc = InterfaceDesc {
                name: Some(cap.interface().to_owned()),
                description: Some(format!("{} (kubectl-netdiag diagnose)", target.label)),
                nanos: true,
                ..InterfaceDesc::new(link_type, cap.snaplen())
            };
            let id = w.add_interface(&desc)?;
            Some((w, id, path))
        }
        None => None,
    };
    analyzer.begin_source(target.label.clone());
    let limits = Limits {
        count: None,
        duration: Some(args.duration),
    };
    let progress_of = |a: &Analyzer| {
        let p = a.findings_so_far();
        let kinds: Vec<&str> = Kind::ALL
            .iter()
            .zip(p.events)
            .filter(|(_, n)| *n > 0)
            .map(|(k, _)| k.as_str())
            .collect();
        if kinds.is_empty() {
            format!("{} flows", p.flows)
        } else {
            format!("{} flows, evidence: {}", p.flows, kinds.join(" "))
        }
    };
    let analyzer_cell = std::cell::RefCell::new(analyzer);
    let summary = live::run(
        &mut cap,
        limits,
        &interrupt,
        || progress_of(&analyzer_cell.borrow()),
        |p| {
            analyzer_cell
                .borrow_mut()
                .feed(p.timestamp_ns, link_type, p.data);
            if let Some((w, id, _)) = raw.as_mut() {
                w.write_packet(&PacketOut {
                    interface: *id,
                    timestamp_ns: p.timestamp_ns,
                    data: p.data,
                    original_len: p.original_len,
                    comments: &[],
                })?;
            }
            Ok(Flow::Continue)
        },
    );
    let mut analyzer = analyzer_cell.into_inner();
    drop(cap);
    // The node capture ends with the pod's (same deadline; stopped now if a signal or an
    // error ended the pod's early) and is analysed as the second capture point.
    let node_packets = node_capture.map(NodeCapture::finish).transpose();
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            if let Some((_, _, path)) = &raw {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
    };
    live::print_stats(&summary);
    let node_packets = node_packets?;
    let mut node_scratch = None;
    if let Some(np) = &node_packets {
        eprintln!(
            "node capture on {}: {} packets{}",
            np.interface,
            np.packets.len(),
            if np.truncated {
                " (memory cap reached: later packets were not kept)"
            } else {
                ""
            }
        );
        analyzer.begin_source(format!("node netns, {}", np.interface));
        for p in &np.packets {
            analyzer.feed(p.timestamp_ns, np.link_type, &p.data);
        }
        if let Some(out) = &args.annotate {
            let path = scratch_path(&out.with_extension("node.pcapng"));
            let written = np.write_pcapng(&path);
            node_scratch = Some(path);
            written?;
        }
    }

    let pod_after = snapshot_in(&target)?;
    analyzer.observe_counters(
        NetnsRole::Pod,
        Moment::Before,
        &netdiag::counters(&pod_before),
    );
    analyzer.observe_counters(
        NetnsRole::Pod,
        Moment::After,
        &netdiag::counters(&pod_after),
    );
    if let (Some(node), Some(before)) = (&node, &node_before) {
        let after = snapshot_node(node)?;
        analyzer.observe_counters(NetnsRole::Node, Moment::Before, &netdiag::counters(before));
        analyzer.observe_counters(NetnsRole::Node, Moment::After, &netdiag::counters(&after));
    }
    for s in [Some(&pod_before), node_before.as_ref()]
        .into_iter()
        .flatten()
    {
        if let Some(e) = s.sock_diag_error() {
            eprintln!("kubectl-netdiag: warning: listener backlogs unknown (sock_diag: {e})");
        }
    }
    let report = analyzer.finish();

    if let (Some((w, _, scratch)), Some(out)) = (raw.take(), &args.annotate) {
        let mut files = vec![scratch];
        files.extend(node_scratch);
        let result = finish_annotation(w, &files, &report, out);
        for f in &files {
            let _ = std::fs::remove_file(f);
        }
        result?;
    }
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let color = args.output == OutputFormat::Human && report::stdout_wants_color();
    report::render(&report, args.output, color, &mut lock)?;
    lock.flush()?;
    Ok(
        if report
            .findings_at_least(args.fail_on.confidence())
            .next()
            .is_some()
        {
            Outcome::Findings
        } else {
            Outcome::Clean
        },
    )
}

fn finish_annotation(
    w: PcapngWriter<std::io::BufWriter<std::fs::File>>,
    files: &[PathBuf],
    report: &netdiag::analyze::Report,
    out: &Path,
) -> anyhow::Result<()> {
    let mut inner = w.into_inner()?;
    inner.flush().context("flushing the scratch capture")?;
    drop(inner);
    crate::analyze::annotate(files, report, out)
}

/// Most bytes of node packets held for analysis (the node side is analysed after the pod's).
const NODE_MEMORY_CAP: usize = 256 << 20;

/// One packet captured on the node side.
struct NodePacket {
    timestamp_ns: u64,
    original_len: u32,
    data: Vec<u8>,
}

/// What the node capture saw.
struct NodePackets {
    interface: String,
    link_type: u32,
    snaplen: u32,
    packets: Vec<NodePacket>,
    truncated: bool,
}

impl NodePackets {
    fn write_pcapng(&self, path: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("creating scratch capture {}", path.display()))?;
        let mut w =
            PcapngWriter::new(std::io::BufWriter::new(file))?.with_name(path.display().to_string());
        let id = w.add_interface(&InterfaceDesc {
            name: Some(self.interface.clone()),
            description: Some("node netns (kubectl-netdiag diagnose)".to_owned()),
            nanos: true,
            ..InterfaceDesc::new(self.link_type, self.snaplen)
        })?;
        for p in &self.packets {
            w.write_packet(&PacketOut {
                interface: id,
                timestamp_ns: p.timestamp_ns,
                data: &p.data,
                original_len: p.original_len,
                comments: &[],
            })?;
        }
        w.into_inner()?
            .flush()
            .context("flushing the scratch capture")?;
        Ok(())
    }
}

/// A capture in the node's netns, read on its own thread while the pod's runs.
struct NodeCapture {
    stop: netdiag::capture::StopHandle,
    thread: std::thread::JoinHandle<anyhow::Result<NodePackets>>,
}

impl NodeCapture {
    fn start(
        node: &NetNs,
        iface: &str,
        filter: Option<String>,
        duration: Duration,
        interrupt: &Interrupt,
    ) -> anyhow::Result<NodeCapture> {
        let config = CaptureConfig {
            interface: InterfaceChoice::from_arg(iface),
            filter,
            netns_label: "node netns".to_owned(),
            ..CaptureConfig::default()
        };
        let mut cap = node
            .run(move || LiveCapture::open(&config))
            .context("entering the node netns")?
            .context("opening the node capture")?;
        let stop = cap.stop_handle();
        let on_signal = cap.stop_handle();
        interrupt.on_interrupt(move || on_signal.stop());
        let deadline = std::time::Instant::now() + duration;
        let thread = std::thread::Builder::new()
            .name("netdiag-node-capture".into())
            .spawn(move || -> anyhow::Result<NodePackets> {
                let mut out = NodePackets {
                    interface: cap.interface().to_owned(),
                    link_type: cap.link_type(),
                    snaplen: cap.snaplen(),
                    packets: Vec::new(),
                    truncated: false,
                };
                let mut bytes = 0usize;
                while std::time::Instant::now() < deadline {
                    match cap.next_event()? {
                        None => break,
                        Some(Event::Idle) => {}
                        Some(Event::Packet(p)) => {
                            if bytes + p.data.len() > NODE_MEMORY_CAP {
                                out.truncated = true;
                                continue;
                            }
                            bytes += p.data.len();
                            out.packets.push(NodePacket {
                                timestamp_ns: p.timestamp_ns,
                                original_len: p.original_len,
                                data: p.data.to_vec(),
                            });
                        }
                    }
                }
                Ok(out)
            })
            .context("starting the node capture thread")?;
        Ok(NodeCapture { stop, thread })
    }

    fn finish(self) -> anyhow::Result<NodePackets> {
        self.stop.stop();
        match self.thread.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

fn scratch_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.partial", std::process::id()));
    out.with_file_name(name)
}

/// Counters of the target's namespace.
fn snapshot_in(target: &Target) -> anyhow::Result<Snapshot> {
    target
        .run(Snapshot::capture_current)?
        .with_context(|| format!("reading kernel counters in {}", target.label))
}

/// Counters of the node's namespace.
fn snapshot_node(node: &NetNs) -> anyhow::Result<Snapshot> {
    let s = node
        .run(Snapshot::capture_current)
        .context("entering the node netns")?;
    s.context("reading kernel counters in the node netns")
}

/// The pod's resolver configuration: --resolv-conf, else the pod's own file read inside
/// its root (openat2 RESOLVE_IN_ROOT, so a symlink cannot point us at the host's files),
/// else `ip netns exec`'s /etc/netns/NAME/resolv.conf for a named netns.
fn resolv_conf(args: &DiagnoseArgs, target: &Target) -> anyhow::Result<Option<String>> {
    const MAX: usize = 64 * 1024;
    if let Some(p) = &args.resolv_conf {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("reading resolv.conf {}", p.display()))?;
        return Ok(Some(text));
    }
    if let Some(pid) = target.pid.and_then(|p| i32::try_from(p).ok()) {
        match netdiag::netns::read_in_root(pid, "/etc/resolv.conf", MAX) {
            Ok(bytes) => return Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) => eprintln!(
                "kubectl-netdiag: warning: the pod's resolv.conf is unreadable ({e}); \
                 DNS search lists will be inferred from the traffic"
            ),
        }
    }
    if let Some(path) = &args.target.netns {
        let named = path
            .parent()
            .is_some_and(|d| d == Path::new("/run/netns") || d == Path::new("/var/run/netns"));
        if let (true, Some(name)) = (named, path.file_name()) {
            let etc = Path::new("/etc/netns").join(name).join("resolv.conf");
            if let Ok(text) = std::fs::read_to_string(&etc) {
                return Ok(Some(text));
            }
        }
    }
    Ok(None)
}
