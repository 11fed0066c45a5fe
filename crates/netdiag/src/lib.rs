//! Diagnose Kubernetes pod networking on the node where the pod runs: conntrack INVALID
//! resets, accept-queue overflow, SNAT port exhaustion, DNS `ndots` amplification and the
//! 5-second DNS delay — with the packets and kernel counters that prove each, and a remedy.
//!
//! This is the crate to `cargo add`. It re-exports the parts and offers one high-level
//! entry point, [`Diagnosis`]: name a pod, a PID or capture files, [`Diagnosis::run`], get
//! an [`analyze::Report`].
//!
//! | module | what it does | the tool people know |
//! |---|---|---|
//! | `cri` (feature `live`) | pod name → sandbox PID, IP, netns through the container runtime | `crictl pods`, `crictl inspectp` |
//! | `netns` (feature `live`) | enter a pod's network namespace on a dedicated thread; read its files | `nsenter -t PID -n` |
//! | `capture` (feature `live`) | live libpcap capture inside that namespace | `tcpdump -i eth0` |
//! | [`kernel`] | counters and sockets of one namespace | `nstat`, `ss -lnt`, `conntrack -S` |
//! | [`pcapio`] | pcap/pcapng files in and out | `tcpdump -r`, `-w` |
//! | [`wire`] | zero-copy packet views | Wireshark's dissectors |
//! | [`analyze`] | the detectors, sans I/O | `tshark -z expert`, with a diagnosis |
//!
//! # Offline: a capture file
//!
//! ```no_run
//! # fn main() -> Result<(), netdiag::Error> {
//! let report = netdiag::Diagnosis::files(["capture.pcapng"]).run()?.report;
//! for f in &report.findings {
//!     println!("{:?} ({:?}): {}", f.kind, f.confidence, f.summary);
//! }
//! # Ok(()) }
//! ```
//!
//! # Live, on the node (root): a pod by name
//!
//! ```no_run
//! use std::time::Duration;
//! # fn main() -> Result<(), netdiag::Error> {
//! let done = netdiag::Diagnosis::pod("default/web-0")?
//!     .duration(Duration::from_secs(10))
//!     .run()?;
//! if let Some(t) = &done.target {
//!     println!("pod {} is PID {}", t.pod, t.pid);
//! }
//! println!("{} finding(s)", done.report.findings.len());
//! # Ok(()) }
//! ```
//!
//! The facade holds no logic of its own beyond this orchestration:
//! cri → netns → (capture + kernel) → analyze.

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub use netdiag_analyze as analyze;
#[cfg(feature = "live")]
pub use netdiag_capture as capture;
#[cfg(feature = "live")]
pub use netdiag_cri as cri;
pub use netdiag_kernel as kernel;
#[cfg(feature = "live")]
pub use netdiag_netns as netns;
pub use netdiag_pcapio as pcapio;
pub use netdiag_wire as wire;

#[cfg(feature = "live")]
mod live;
mod offline;
#[cfg(feature = "live")]
mod privilege;
#[cfg(feature = "live")]
mod resolver;
mod stop;
#[cfg(feature = "live")]
mod target;
#[cfg(feature = "live")]
mod watch;

pub use offline::annotate;
#[cfg(feature = "live")]
pub use privilege::{Dropped, drop_privileges};
#[cfg(feature = "live")]
pub use resolver::resolver_of_pid;
pub use stop::StopHandle;
#[cfg(feature = "live")]
pub use target::{RuntimeOptions, Target, TargetSpec, node_netns, snapshot_in};
#[cfg(feature = "live")]
pub use watch::{Found, PointTotals, TickStats, WatchEvent, WatchOptions, Watched};

use analyze::{Moment, NetnsRole};
use std::path::PathBuf;
use std::time::Duration;

mod socket_groups;

/// Everything a [`Diagnosis`] can fail on, by stage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Resolving the pod through the container runtime.
    #[cfg(feature = "live")]
    #[error(transparent)]
    Cri(#[from] cri::Error),
    /// Entering the pod's network namespace or reading its files.
    #[cfg(feature = "live")]
    #[error(transparent)]
    Netns(#[from] netns::Error),
    /// The live capture.
    #[cfg(feature = "live")]
    #[error(transparent)]
    Capture(#[from] capture::Error),
    /// Reading kernel counters.
    #[error(transparent)]
    Kernel(#[from] kernel::Error),
    /// Reading or writing a capture file.
    #[error(transparent)]
    Pcap(#[from] pcapio::Error),
    /// The analyzer's configuration.
    #[error(transparent)]
    Analyze(#[from] analyze::Error),
    /// A PID that does not fit the kernel's PID type.
    #[error("PID {pid} is out of range")]
    BadPid {
        /// The PID given.
        pid: u32,
    },
    /// Giving up capabilities failed.
    #[cfg(feature = "live")]
    #[error("dropping privileges failed at {step}: {message}")]
    Privileges {
        /// The step, e.g. "clearing the permitted set".
        step: &'static str,
        /// What the kernel said.
        message: String,
    },
    /// An input that cannot be read as asked (a directory, standard input twice).
    #[error("{}: {problem}", path.display())]
    Input {
        /// The input as given.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
    /// A file of ours (scratch capture, annotated copy, resolv.conf) could not be
    /// read or written.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done, e.g. "creating the annotated capture".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// What a diagnosis looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// A live target: a pod by name, a PID or a network namespace file.
    #[cfg(feature = "live")]
    Live(TargetSpec),
    /// pcap/pcapng files (`-` is standard input), analysed together in order, each its
    /// own source.
    Files(Vec<PathBuf>),
}

/// What to do with a capture file whose last record is cut short (tcpdump killed
/// mid-write, a full disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Truncated {
    /// Analyse every complete packet before it and say so in a warning (Wireshark's way).
    #[default]
    AnalyzeCompletePackets,
    /// Fail with the reader's error.
    Fail,
}

/// The pod's resolver configuration, when the caller has it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum ResolvConfSource {
    /// Live: read from the pod's root; offline: none.
    #[default]
    Auto,
    /// This text.
    Text(String),
    /// This file.
    File(PathBuf),
}

/// The explicitly given resolv.conf, read.
fn explicit_resolv_conf(src: &ResolvConfSource) -> Result<Option<String>, Error> {
    match src {
        ResolvConfSource::Auto => Ok(None),
        ResolvConfSource::Text(t) => Ok(Some(t.clone())),
        ResolvConfSource::File(p) => {
            std::fs::read_to_string(p)
                .map(Some)
                .map_err(|source| Error::Io {
                    what: "reading resolv.conf",
                    path: p.clone(),
                    source,
                })
        }
    }
}

/// The node's side of a live diagnosis.
#[cfg(feature = "live")]
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeOptions {
    /// The node's network namespace; `None`: the caller's own (the host's on a node).
    netns: Option<PathBuf>,
    /// Read its counters before and after.
    counters: bool,
    /// Also capture on this interface of it (a second capture point).
    interface: Option<String>,
}

/// A capture point of a live diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CapturePoint {
    /// An interface inside the pod's network namespace.
    Pod,
    /// An interface of the node's network namespace (the NAT side).
    Node,
}

impl CapturePoint {
    /// `"pod"` or `"node"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CapturePoint::Pod => "pod",
            CapturePoint::Node => "node",
        }
    }
}

/// Why a live capture ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ended {
    /// The duration elapsed.
    Duration,
    /// The [`StopHandle`] was used (a signal, the caller).
    Stopped,
    /// A capture point's interface or namespace went away (the pod was deleted); the
    /// report covers what was captured until then, and a warning says which.
    TargetGone,
}

/// What a running diagnosis reports on the way, for a progress display or a log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The target was resolved.
    Resolved {
        /// `pod default/web (pid 1234)`, `netns /run/netns/x`.
        label: String,
        /// What the runtime said about ambiguities.
        notes: Vec<String>,
    },
    /// A capture point is open and the clock starts.
    CaptureStarted {
        /// Which point.
        point: CapturePoint,
        /// The interface chosen.
        interface: String,
        /// How long the run captures at most.
        duration: Duration,
    },
    /// Totals so far, about four times a second while capturing.
    Progress(Progress),
    /// The thread that parses packets gave up its capabilities (see
    /// `Diagnosis::least_privilege`, feature `live`).
    PrivilegesDropped {
        /// The effective capabilities it had.
        had: Vec<String>,
    },
    /// Something the operator should know that does not stop the diagnosis.
    Warning(String),
}

/// Totals of a live diagnosis while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Progress {
    /// Packets captured at every point.
    pub packets: u64,
    /// Bytes captured.
    pub bytes: u64,
    /// Packets the kernel or the interfaces dropped (libpcap's counters).
    pub dropped: u64,
    /// Time since the capture started.
    pub elapsed: Duration,
    /// What the analyzer has seen so far.
    pub analysis: analyze::Progress,
}

/// One capture point of a finished live diagnosis.
#[cfg(feature = "live")]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CaptureSummary {
    /// Which point.
    pub point: CapturePoint,
    /// The interface.
    pub interface: String,
    /// Its pcap `LINKTYPE_*`.
    pub link_type: u32,
    /// Packets captured and analysed.
    pub packets: u64,
    /// Bytes captured.
    pub bytes: u64,
    /// libpcap's counters at the end (kernel drops mean missing evidence); `None` when
    /// `pcap_stats` failed (a warning says why).
    pub stats: Option<capture::Stats>,
}

/// A diagnosis session: build it, then [`run`](Diagnosis::run) it.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    input: Input,
    #[cfg(feature = "live")]
    duration: Duration,
    #[cfg(feature = "live")]
    runtime: RuntimeOptions,
    #[cfg(feature = "live")]
    interface: Option<String>,
    #[cfg(feature = "live")]
    filter: Option<String>,
    #[cfg(feature = "live")]
    node: NodeOptions,
    resolv_conf: ResolvConfSource,
    resolver: Option<analyze::Resolver>,
    snapshots: Vec<(NetnsRole, Moment, PathBuf)>,
    annotate: Option<PathBuf>,
    truncated: Truncated,
    config: analyze::Config,
    stop: StopHandle,
    #[cfg(feature = "live")]
    least_privilege: bool,
}

/// The result of [`Diagnosis::run`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Diagnosed {
    /// Findings and statistics.
    pub report: analyze::Report,
    /// The pod the diagnosis resolved to (pod input only).
    #[cfg(feature = "live")]
    pub target: Option<cri::Target>,
    /// Names what was diagnosed: the live target, or the files.
    pub label: String,
    /// Every capture point of a live diagnosis, pod first.
    #[cfg(feature = "live")]
    pub captures: Vec<CaptureSummary>,
    /// Why a live capture ended.
    pub ended: Option<Ended>,
    /// How long a live capture ran.
    pub elapsed: Option<Duration>,
    /// The warnings also handed out as [`Event::Warning`].
    pub warnings: Vec<String>,
    /// The annotated pcapng written, if asked for.
    pub annotated: Option<PathBuf>,
}

impl Diagnosis {
    fn new(input: Input) -> Diagnosis {
        Diagnosis {
            input,
            #[cfg(feature = "live")]
            duration: Duration::from_secs(10),
            #[cfg(feature = "live")]
            runtime: RuntimeOptions::default(),
            #[cfg(feature = "live")]
            interface: None,
            #[cfg(feature = "live")]
            filter: None,
            #[cfg(feature = "live")]
            node: NodeOptions {
                netns: None,
                counters: true,
                interface: None,
            },
            resolv_conf: ResolvConfSource::Auto,
            resolver: None,
            snapshots: Vec::new(),
            annotate: None,
            truncated: Truncated::default(),
            config: analyze::Config::default(),
            stop: StopHandle::new(),
            #[cfg(feature = "live")]
            least_privilege: false,
        }
    }

    /// A pod named `ns/name` or `name` (namespace `default`).
    #[cfg(feature = "live")]
    pub fn pod(spec: &str) -> Result<Diagnosis, Error> {
        Ok(Diagnosis::pod_ref(cri::PodRef::parse(spec, None, None)?))
    }

    /// A pod already parsed (with `-n`/`-c` applied).
    #[cfg(feature = "live")]
    pub fn pod_ref(pod: cri::PodRef) -> Diagnosis {
        Diagnosis::new(Input::Live(TargetSpec::Pod(pod)))
    }

    /// The network namespace of any process.
    #[cfg(feature = "live")]
    pub fn pid(pid: u32) -> Diagnosis {
        Diagnosis::new(Input::Live(TargetSpec::Pid(pid)))
    }

    /// A network namespace file (`/run/netns/NAME`, `/proc/PID/ns/net`).
    #[cfg(feature = "live")]
    pub fn netns(path: impl Into<PathBuf>) -> Diagnosis {
        Diagnosis::new(Input::Live(TargetSpec::Netns(path.into())))
    }

    /// Any live target.
    #[cfg(feature = "live")]
    pub fn target(spec: TargetSpec) -> Diagnosis {
        Diagnosis::new(Input::Live(spec))
    }

    /// Capture files, analysed offline; `-` is standard input (at most once).
    pub fn files<I, P>(paths: I) -> Diagnosis
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        Diagnosis::new(Input::Files(paths.into_iter().map(Into::into).collect()))
    }

    #[cfg(feature = "live")]
    /// How long a live capture runs (default 10 s).
    pub fn duration(mut self, d: Duration) -> Diagnosis {
        self.duration = d;
        self
    }

    /// The container runtime socket (default: auto-detected, see [`cri::endpoint::detect`]).
    #[cfg(feature = "live")]
    pub fn runtime_endpoint(mut self, endpoint: impl Into<String>) -> Diagnosis {
        self.runtime.endpoint = Some(endpoint.into());
        self
    }

    /// How to reach the container runtime (socket and timeout).
    #[cfg(feature = "live")]
    pub fn runtime(mut self, runtime: RuntimeOptions) -> Diagnosis {
        self.runtime = runtime;
        self
    }

    /// Timeout of each call to the runtime (default 10 s).
    #[cfg(feature = "live")]
    pub fn runtime_timeout(mut self, t: Duration) -> Diagnosis {
        self.runtime.timeout = t;
        self
    }

    #[cfg(feature = "live")]
    /// Capture on this interface of the pod (`any` for all; default: the default-route
    /// interface).
    pub fn interface(mut self, name: impl Into<String>) -> Diagnosis {
        self.interface = Some(name.into());
        self
    }

    #[cfg(feature = "live")]
    /// A BPF filter for the live capture points (tcpdump syntax).
    pub fn filter(mut self, expr: impl Into<String>) -> Diagnosis {
        self.filter = Some(expr.into());
        self
    }

    #[cfg(feature = "live")]
    /// Whether to read the node namespace's counters too (default true): SNAT, Service
    /// DNAT and the DNS conntrack race only show there.
    pub fn node_counters(mut self, yes: bool) -> Diagnosis {
        self.node.counters = yes;
        self
    }

    #[cfg(feature = "live")]
    /// The node's network namespace (default: the caller's, i.e. the host's on a node).
    pub fn node_netns(mut self, path: impl Into<PathBuf>) -> Diagnosis {
        self.node.netns = Some(path.into());
        self
    }

    #[cfg(feature = "live")]
    /// Also capture on this interface of the node's namespace (the uplink `eth0`, or
    /// `any`): a second capture point, where conntrack INVALID's bogus segment and SNAT's
    /// dropped SYNs show. Read concurrently with the pod's.
    pub fn node_interface(mut self, name: impl Into<String>) -> Diagnosis {
        self.node.interface = Some(name.into());
        self
    }

    /// The pod's resolv.conf as text (default: live, read from the pod's root).
    pub fn resolv_conf(mut self, text: impl Into<String>) -> Diagnosis {
        self.resolv_conf = ResolvConfSource::Text(text.into());
        self
    }

    /// The pod's resolver library (default: live, the ELF interpreter of the pod's
    /// process; offline, inferred from the queries where they tell).
    pub fn resolver(mut self, resolver: analyze::Resolver) -> Diagnosis {
        self.resolver = Some(resolver);
        self
    }

    /// The pod's resolv.conf from a file (default: live, read from the pod's root).
    pub fn resolv_conf_file(mut self, path: impl Into<PathBuf>) -> Diagnosis {
        self.resolv_conf = ResolvConfSource::File(path.into());
        self
    }

    /// Offline: a counter snapshot directory (the layout of `kubectl-netdiag counters
    /// --write-dir`) of the pod's or the node's namespace, before or after the capture.
    pub fn counter_snapshot(
        mut self,
        role: NetnsRole,
        moment: Moment,
        dir: impl Into<PathBuf>,
    ) -> Diagnosis {
        self.snapshots.push((role, moment, dir.into()));
        self
    }

    /// Also write the packets as pcapng with a comment on every evidence packet.
    pub fn annotate(mut self, out: impl Into<PathBuf>) -> Diagnosis {
        self.annotate = Some(out.into());
        self
    }

    /// What to do with a capture file cut short (default: analyse what is complete).
    pub fn truncated(mut self, policy: Truncated) -> Diagnosis {
        self.truncated = policy;
        self
    }

    /// Analyzer limits (flow table size, idle timeout).
    pub fn analyzer_config(mut self, config: analyze::Config) -> Diagnosis {
        self.config = config;
        self
    }

    /// Least privilege (default off in the library, on in the CLI): once the capture points,
    /// the namespace handles and the threads that read the counters after are open, the
    /// calling thread and the capture threads it starts give up every capability and set
    /// `no_new_privs` before the first packet is parsed. Only for a caller that needs no
    /// capability on this thread afterwards (see [`drop_privileges`]).
    #[cfg(feature = "live")]
    pub fn least_privilege(mut self, yes: bool) -> Diagnosis {
        self.least_privilege = yes;
        self
    }

    /// A handle that ends the run early from another thread (signals, timers). Take it
    /// before [`run`](Diagnosis::run).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// What this diagnosis looks at.
    pub fn input(&self) -> &Input {
        &self.input
    }

    /// Runs it: resolves, captures (live) or reads (files), analyses.
    pub fn run(self) -> Result<Diagnosed, Error> {
        self.run_with(|_| {})
    }

    /// Runs it, handing out [`Event`]s on the way (progress, warnings) on the calling
    /// thread.
    pub fn run_with(self, mut events: impl FnMut(Event)) -> Result<Diagnosed, Error> {
        match &self.input {
            Input::Files(paths) => self.run_files(paths, &mut events),
            #[cfg(feature = "live")]
            Input::Live(spec) => live::run(&self, spec, &mut events),
        }
    }

    /// Watches a live target until the duration ends or the [`StopHandle`] fires: the
    /// flight recorder of [`analyze::watch`], every episode handed out to `events` the
    /// moment it is final (with its pcapng when [`WatchOptions::out`] is set), totals
    /// every tick, and a pod given by name followed when it is deleted and created again.
    /// [`Diagnosis::duration`] is how long to watch (`Duration::MAX`: until stopped).
    #[cfg(feature = "live")]
    pub fn watch(
        self,
        options: &WatchOptions,
        mut events: impl FnMut(WatchEvent),
    ) -> Result<Watched, Error> {
        match &self.input {
            Input::Live(spec) => watch::run(&self, spec, options, &mut events),
            Input::Files(paths) => Err(Error::Input {
                path: paths.first().cloned().unwrap_or_default(),
                problem: "watch needs a live target (a pod, a PID or a netns); analyse files with Diagnosis::files(..).run()".into(),
            }),
        }
    }

    fn run_files(
        &self,
        paths: &[PathBuf],
        events: &mut dyn FnMut(Event),
    ) -> Result<Diagnosed, Error> {
        // Files are read in place (mapped; others ahead on a thread, `offline::feed_file`)
        // and their DNS side runs on another thread: the packet path keeps a core to itself.
        let mut analyzer = analyze::Analyzer::try_new(self.config.clone().with_dns_thread(true))?;
        if let Some(text) = explicit_resolv_conf(&self.resolv_conf)? {
            analyzer.set_resolv_conf(&text);
        }
        if let Some(r) = &self.resolver {
            analyzer.set_resolver(r.clone());
        }
        for (role, moment, dir) in &self.snapshots {
            analyzer.observe_counters(*role, *moment, &counters(&kernel::Snapshot::read_dir(dir)?));
        }
        let mut warnings = Vec::new();
        let stdin_copy = self
            .annotate
            .as_ref()
            .map(|out| offline::scratch_path(out, "stdin"));
        let result = offline::feed_inputs(
            &mut analyzer,
            paths,
            self.truncated,
            &self.stop,
            stdin_copy.as_deref(),
            &mut |e| {
                if let Event::Warning(w) = &e {
                    warnings.push(w.clone());
                }
                events(e);
            },
        )
        .and_then(|sources| {
            let report = analyzer.finish();
            if let Some(out) = &self.annotate {
                annotate(&sources, &report, out)?;
            }
            Ok(report)
        });
        if let Some(copy) = &stdin_copy {
            let _ = std::fs::remove_file(copy);
        }
        let report = result?;
        Ok(Diagnosed {
            report,
            #[cfg(feature = "live")]
            target: None,
            label: paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            #[cfg(feature = "live")]
            captures: Vec::new(),
            ended: None,
            elapsed: None,
            warnings,
            annotated: self.annotate.clone(),
        })
    }
}

/// A kernel snapshot as the analyzer takes it: flat counter keys and listener queues.
pub fn counters(s: &kernel::Snapshot) -> analyze::Counters {
    analyze::Counters::new(
        s.flat(),
        s.listeners()
            .into_iter()
            .map(|l| analyze::ListenerQueue::new(l.addr, l.port, l.queued, l.backlog))
            .collect(),
    )
    .with_sockets(socket_groups::groups(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "live")]
    #[test]
    fn builders_keep_what_they_are_given() {
        let d = Diagnosis::pod("prod/web-0")
            .unwrap()
            .duration(Duration::from_secs(3))
            .runtime_endpoint("unix:///run/x.sock");
        assert_eq!(d.duration, Duration::from_secs(3));
        assert_eq!(d.runtime.endpoint.as_deref(), Some("unix:///run/x.sock"));
        let Input::Live(TargetSpec::Pod(p)) = d.input() else {
            panic!("not a pod")
        };
        assert_eq!((p.namespace.as_str(), p.name.as_str()), ("prod", "web-0"));
        assert!(Diagnosis::pod("a/b/c").is_err());
    }

    #[test]
    fn missing_file_is_a_pcap_error_naming_the_file() {
        let e = Diagnosis::files(["/nonexistent/ndr.pcap"])
            .run()
            .unwrap_err();
        assert!(matches!(e, Error::Pcap(_)), "{e}");
        assert!(e.to_string().contains("/nonexistent/ndr.pcap"), "{e}");
    }
}
