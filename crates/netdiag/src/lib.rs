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
//! | [`cri`] | pod name → sandbox PID, IP, netns through the container runtime | `crictl pods`, `crictl inspectp` |
//! | [`netns`] | enter a pod's network namespace on a dedicated thread; read its files | `nsenter -t PID -n` |
//! | [`capture`] | live libpcap capture inside that namespace | `tcpdump -i eth0` |
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
pub use netdiag_capture as capture;
pub use netdiag_cri as cri;
pub use netdiag_kernel as kernel;
pub use netdiag_netns as netns;
pub use netdiag_pcapio as pcapio;
pub use netdiag_wire as wire;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Everything a [`Diagnosis`] can fail on, by stage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Resolving the pod through the container runtime.
    #[error(transparent)]
    Cri(#[from] cri::Error),
    /// Entering the pod's network namespace or reading its files.
    #[error(transparent)]
    Netns(#[from] netns::Error),
    /// The live capture.
    #[error(transparent)]
    Capture(#[from] capture::Error),
    /// Reading kernel counters.
    #[error(transparent)]
    Kernel(#[from] kernel::Error),
    /// Reading a capture file.
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
}

/// What a diagnosis looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// A pod by name, resolved through the CRI.
    Pod(cri::PodRef),
    /// Any process; its network namespace is captured.
    Pid(u32),
    /// pcap/pcapng files, analysed together in order.
    Files(Vec<PathBuf>),
}

/// A diagnosis session: build it, then [`run`](Diagnosis::run) it.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    input: Input,
    duration: Duration,
    runtime_endpoint: Option<String>,
    timeout: Duration,
    interface: Option<String>,
    filter: Option<String>,
    node_counters: bool,
    config: analyze::Config,
}

/// The result of [`Diagnosis::run`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Diagnosed {
    /// Findings and statistics.
    pub report: analyze::Report,
    /// The pod the diagnosis resolved to (pod input only).
    pub target: Option<cri::Target>,
    /// Libpcap's counters for a live capture (kernel drops mean missing evidence).
    pub capture_stats: Option<capture::Stats>,
}

impl Diagnosis {
    fn new(input: Input) -> Diagnosis {
        Diagnosis {
            input,
            duration: Duration::from_secs(10),
            runtime_endpoint: None,
            timeout: Duration::from_secs(10),
            interface: None,
            filter: None,
            node_counters: true,
            config: analyze::Config::default(),
        }
    }

    /// A pod named `ns/name` or `name` (namespace `default`).
    pub fn pod(spec: &str) -> Result<Diagnosis, Error> {
        Ok(Diagnosis::new(Input::Pod(cri::PodRef::parse(
            spec, None, None,
        )?)))
    }

    /// A pod already parsed (with `-n`/`-c` applied).
    pub fn pod_ref(pod: cri::PodRef) -> Diagnosis {
        Diagnosis::new(Input::Pod(pod))
    }

    /// The network namespace of any process.
    pub fn pid(pid: u32) -> Diagnosis {
        Diagnosis::new(Input::Pid(pid))
    }

    /// Capture files, analysed offline.
    pub fn files<I, P>(paths: I) -> Diagnosis
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        Diagnosis::new(Input::Files(paths.into_iter().map(Into::into).collect()))
    }

    /// How long a live capture runs (default 10 s).
    pub fn duration(mut self, d: Duration) -> Diagnosis {
        self.duration = d;
        self
    }

    /// The container runtime socket (default: auto-detected, see [`cri::endpoint::detect`]).
    pub fn runtime_endpoint(mut self, endpoint: impl Into<String>) -> Diagnosis {
        self.runtime_endpoint = Some(endpoint.into());
        self
    }

    /// Timeout of each call to the runtime (default 10 s).
    pub fn runtime_timeout(mut self, t: Duration) -> Diagnosis {
        self.timeout = t;
        self
    }

    /// Capture on this interface of the pod (default: the default-route interface).
    pub fn interface(mut self, name: impl Into<String>) -> Diagnosis {
        self.interface = Some(name.into());
        self
    }

    /// A BPF filter for the live capture (tcpdump syntax).
    pub fn filter(mut self, expr: impl Into<String>) -> Diagnosis {
        self.filter = Some(expr.into());
        self
    }

    /// Whether to read the node's (the caller's) namespace counters too (default true):
    /// SNAT, Service DNAT and the DNS conntrack race only show there.
    pub fn node_counters(mut self, yes: bool) -> Diagnosis {
        self.node_counters = yes;
        self
    }

    /// Analyzer limits (flow table size, idle timeout).
    pub fn analyzer_config(mut self, config: analyze::Config) -> Diagnosis {
        self.config = config;
        self
    }

    /// What this diagnosis looks at.
    pub fn input(&self) -> &Input {
        &self.input
    }

    /// Runs it: resolves, captures (live) or reads (files), analyses.
    pub fn run(self) -> Result<Diagnosed, Error> {
        let mut analyzer = analyze::Analyzer::try_new(self.config.clone())?;
        match &self.input {
            Input::Files(paths) => {
                for path in paths {
                    analyzer.begin_source(path.display().to_string());
                    let mut reader = pcapio::Reader::open(path)?;
                    while let Some(p) = reader.next_packet()? {
                        analyzer.feed(p.timestamp_ns, p.link_type, p.data);
                    }
                }
                Ok(Diagnosed {
                    report: analyzer.finish(),
                    target: None,
                    capture_stats: None,
                })
            }
            Input::Pid(pid) => {
                let (report, stats) = self.live(*pid, analyzer)?;
                Ok(Diagnosed {
                    report,
                    target: None,
                    capture_stats: Some(stats),
                })
            }
            Input::Pod(pod) => {
                let client = cri::Client::connect(self.runtime_endpoint.as_deref(), self.timeout)?;
                let target = client.resolve(pod)?;
                let (report, stats) = self.live(target.pid, analyzer)?;
                Ok(Diagnosed {
                    report,
                    target: Some(target),
                    capture_stats: Some(stats),
                })
            }
        }
    }

    /// Counters before, capture for the duration inside the pod's netns, counters after.
    fn live(
        &self,
        pid: u32,
        mut analyzer: analyze::Analyzer,
    ) -> Result<(analyze::Report, capture::Stats), Error> {
        let pid_i = i32::try_from(pid).map_err(|_| Error::BadPid { pid })?;
        let ns = netns::NetNs::from_pid(pid_i)?;
        let label = format!("netns of pid {pid}");
        // The pod's resolver settings explain DNS expansions; a pod without one is fine.
        if let Ok(bytes) = netns::read_in_root(pid_i, "/etc/resolv.conf", 64 * 1024) {
            analyzer.set_resolv_conf(&String::from_utf8_lossy(&bytes));
        }
        let snap = |ns: Option<&netns::NetNs>| -> Result<analyze::Counters, Error> {
            let s = match ns {
                Some(ns) => ns.run(kernel::Snapshot::capture_current)??,
                None => kernel::Snapshot::capture_current()?,
            };
            Ok(counters(&s))
        };
        use analyze::{Moment, NetnsRole};
        analyzer.observe_counters(NetnsRole::Pod, Moment::Before, &snap(Some(&ns))?);
        if self.node_counters {
            analyzer.observe_counters(NetnsRole::Node, Moment::Before, &snap(None)?);
        }
        analyzer.begin_source(label.clone());
        // Field by field: CaptureConfig is #[non_exhaustive].
        let mut config = capture::CaptureConfig::default();
        if let Some(i) = self.interface.as_deref() {
            config.interface = capture::InterfaceChoice::from_arg(i);
        }
        config.filter = self.filter.clone();
        config.netns_label = label;
        let deadline = Instant::now() + self.duration;
        let (mut analyzer, stats) = ns.run(move || -> Result<_, Error> {
            let mut cap = capture::LiveCapture::open(&config)?;
            let link = cap.link_type();
            while Instant::now() < deadline {
                match cap.next_event()? {
                    Some(capture::Event::Packet(p)) => {
                        analyzer.feed(p.timestamp_ns, link, p.data);
                    }
                    Some(capture::Event::Idle) => {}
                    None => break,
                }
            }
            let stats = cap.stats()?;
            Ok((analyzer, stats))
        })??;
        analyzer.observe_counters(NetnsRole::Pod, Moment::After, &snap(Some(&ns))?);
        if self.node_counters {
            analyzer.observe_counters(NetnsRole::Node, Moment::After, &snap(None)?);
        }
        Ok((analyzer.finish(), stats))
    }
}

/// A kernel snapshot as the analyzer takes it: flat counter keys and listener queues.
pub fn counters(s: &kernel::Snapshot) -> analyze::Counters {
    analyze::Counters {
        values: s.flat(),
        listeners: s
            .listeners()
            .into_iter()
            .map(|l| analyze::ListenerQueue {
                addr: l.addr,
                port: l.port,
                queued: l.queued,
                backlog: l.backlog,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_keep_what_they_are_given() {
        let d = Diagnosis::pod("prod/web-0")
            .unwrap()
            .duration(Duration::from_secs(3))
            .runtime_endpoint("unix:///run/x.sock");
        assert_eq!(d.duration, Duration::from_secs(3));
        assert_eq!(d.runtime_endpoint.as_deref(), Some("unix:///run/x.sock"));
        let Input::Pod(p) = d.input() else {
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
