//! The live sequence: resolve, counters before, capture at every point at once, counters
//! after, analyse, annotate.
//!
//! Each capture point (the pod's interface, optionally one of the node's) is read on its
//! own thread and fed into one analyzer as its packets arrive, tagged with its source: no
//! side is buffered, so memory stays flat however long the run. The calling thread keeps
//! the clock: it ends the run at the deadline or when the [`StopHandle`] fires, and hands
//! out progress four times a second.

use crate::offline::{self, scratch_path};
use crate::target::{Target, node_netns, snapshot_in};
use crate::{CapturePoint, CaptureSummary, Diagnosed, Diagnosis, Ended, Error, Event, Progress};
use crate::{StopHandle, TargetSpec, counters};
use netdiag_analyze::{Analyzer, Moment, NetnsRole};
use netdiag_capture::{CaptureConfig, InterfaceChoice, LiveCapture};
use netdiag_kernel::Snapshot;
use netdiag_netns::{NetNs, NetNsThread};
use netdiag_pcapio::{InterfaceDesc, PacketOut, PcapngWriter};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often progress is handed out and kernel drop counters refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

type Scratch = PcapngWriter<BufWriter<std::fs::File>>;

/// One capture point while it runs (owned by its thread).
struct Point {
    which: CapturePoint,
    cap: LiveCapture,
    source: u16,
    scratch: Option<(Scratch, u32, PathBuf)>,
}

/// A capture point's running totals, read by the orchestrating thread for progress.
#[derive(Default)]
struct Counts {
    packets: AtomicU64,
    bytes: AtomicU64,
    /// Dropped by the kernel and the interface, refreshed with the progress.
    dropped: AtomicU64,
}

/// Scratch files of `--annotate`, removed however the run ends.
struct ScratchFiles(Vec<PathBuf>);

impl Drop for ScratchFiles {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::fs::remove_file(f);
        }
    }
}

fn lock(analyzer: &Mutex<Analyzer>) -> MutexGuard<'_, Analyzer> {
    // A capture thread that panicked leaves the analyzer as it was after its last packet.
    analyzer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn run(
    d: &Diagnosis,
    spec: &TargetSpec,
    events: &mut dyn FnMut(Event),
) -> Result<Diagnosed, Error> {
    let target = Target::resolve(spec, &d.runtime)?;
    events(Event::Resolved {
        label: target.label().to_owned(),
        notes: target.notes().to_vec(),
    });
    let node = if d.node.counters || d.node.interface.is_some() {
        Some(node_netns(d.node.netns.as_deref())?)
    } else {
        None
    };
    let mut analyzer = Analyzer::try_new(d.config.clone())?;
    let mut warnings = Vec::new();
    let mut warn = |events: &mut dyn FnMut(Event), text: String| {
        warnings.push(text.clone());
        events(Event::Warning(text));
    };
    if let Some(text) = target.outside_node_netns(node.is_some() && d.node.netns.is_none()) {
        warn(events, text);
    }
    let pod = PodResolver::read(d, &target)?;
    if let Some(text) = &pod.resolv_conf {
        analyzer.set_resolv_conf(text);
    }
    if let Some(r) = pod.resolver {
        analyzer.set_resolver(r);
    }
    for w in pod.warnings {
        warn(events, w);
    }

    let pod_before = target.snapshot()?;
    let node_before = match (&node, d.node.counters) {
        (Some(ns), true) => Some(snapshot_in(ns)?),
        _ => None,
    };
    // The counters after are read by threads that enter the namespaces now, while the
    // process may still do so, and wait: the thread that parses packets may give up every
    // capability in between (least privilege).
    let pod_after = CounterReader::start(target.netns())?;
    let udp_after = crate::resolver::UdpAfter::start(target.netns())?;
    let node_after = match (&node, d.node.counters) {
        (Some(ns), true) => Some(CounterReader::start(ns)?),
        _ => None,
    };

    // Open every capture point before the clock starts.
    let mut points = Vec::new();
    let (cap, mtu) = open_pod_capture(d, &target)?;
    if let Some(note) = cap.interface_note() {
        warn(events, note.to_owned());
    }
    match mtu {
        Ok(Some(mtu)) => analyzer.set_interface_mtu(cap.interface(), mtu),
        Ok(None) => {}
        Err(e) => warn(
            events,
            format!(
                "the pod interface's MTU is unknown ({e}); path-MTU findings will not state it"
            ),
        ),
    }
    let source = analyzer.add_source(target.label());
    points.push((CapturePoint::Pod, cap, source));
    if let (Some(iface), Some(ns)) = (&d.node.interface, &node) {
        let cap = open_node_capture(d, ns, iface)?;
        let source = analyzer.add_source(format!("node netns, {}", cap.interface()));
        points.push((CapturePoint::Node, cap, source));
    }

    let mut scratch_files = ScratchFiles(Vec::new());
    let mut running = Vec::with_capacity(points.len());
    for (which, cap, source) in points {
        let scratch = match &d.annotate {
            Some(out) => {
                let path = scratch_path(out, which.as_str());
                scratch_files.0.push(path.clone());
                let label = match which {
                    CapturePoint::Pod => target.label().to_owned(),
                    CapturePoint::Node => "node netns".to_owned(),
                };
                let (w, id) = open_scratch(&path, &cap, &label)?;
                Some((w, id, path))
            }
            None => None,
        };
        events(Event::CaptureStarted {
            point: which,
            interface: cap.interface().to_owned(),
            duration: d.duration,
        });
        running.push(Point {
            which,
            cap,
            source,
            scratch,
        });
    }
    let counts: Vec<Counts> = running.iter().map(|_| Counts::default()).collect();
    if d.least_privilege {
        match crate::drop_privileges() {
            Ok(dropped) => events(Event::PrivilegesDropped { had: dropped.had }),
            Err(e) => warn(
                events,
                format!("{e}; parsing packets with the privileges the run started with"),
            ),
        }
    }

    // One stop for this run: the caller's handle, the deadline and a failed capture point
    // all end it.
    let run_stop = StopHandle::new();
    for p in &running {
        let h = p.cap.stop_handle();
        run_stop.on_stop(move || h.stop());
    }
    {
        let run_stop = run_stop.clone();
        d.stop.on_stop(move || run_stop.stop());
    }

    let analyzer = Mutex::new(analyzer);
    let started = Instant::now();
    let deadline = started + d.duration;
    let (ended, results) = std::thread::scope(|s| {
        let handles: Vec<_> = running
            .iter_mut()
            .zip(&counts)
            .map(|(p, c)| {
                let analyzer = &analyzer;
                let run_stop = &run_stop;
                s.spawn(move || {
                    let r = match pump(p, c, analyzer) {
                        Ok(()) => Ok(None),
                        // The pod went away: the run ends with what was captured.
                        Err(Error::Capture(e)) if e.is_gone() => Ok(Some(e.to_string())),
                        Err(e) => Err(e),
                    };
                    // A point that failed or lost its interface ends the whole run.
                    if !matches!(r, Ok(None)) {
                        run_stop.stop();
                    }
                    r
                })
            })
            .collect();
        let mut ended = Ended::Duration;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if run_stop.wait(PROGRESS_EVERY.min(deadline - now)) {
                ended = Ended::Stopped;
                break;
            }
            events(Event::Progress(Progress {
                packets: counts
                    .iter()
                    .map(|c| c.packets.load(Ordering::Relaxed))
                    .sum(),
                bytes: counts.iter().map(|c| c.bytes.load(Ordering::Relaxed)).sum(),
                dropped: counts
                    .iter()
                    .map(|c| c.dropped.load(Ordering::Relaxed))
                    .sum(),
                elapsed: started.elapsed(),
                analysis: lock(&analyzer).progress(),
            }));
        }
        run_stop.stop();
        let results: Vec<Result<Option<String>, Error>> = handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect();
        (ended, results)
    });
    d.stop.clear_hooks();
    let elapsed = started.elapsed();
    let mut ended = ended;
    for r in results {
        if let Some(gone) = r? {
            ended = Ended::TargetGone;
            warn(
                events,
                format!("{gone}; the report covers what was captured until then"),
            );
        }
    }
    let mut analyzer = analyzer
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());

    let mut captures = Vec::with_capacity(running.len());
    let mut scratch_out = Vec::new();
    for (mut p, c) in running.into_iter().zip(&counts) {
        let stats = match p.cap.stats() {
            Ok(s) => Some(s),
            Err(e) => {
                warn(
                    events,
                    format!(
                        "kernel drop counters of {} unavailable: {e}",
                        p.cap.interface()
                    ),
                );
                None
            }
        };
        if let Some((w, _, path)) = p.scratch.take() {
            finish_scratch(w, &path)?;
            scratch_out.push(path);
        }
        captures.push(CaptureSummary {
            point: p.which,
            interface: p.cap.interface().to_owned(),
            link_type: p.cap.link_type(),
            packets: c.packets.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            stats,
        });
    }

    // The reader entered the pod's namespace beforehand, so a pod that went away still
    // has its last counters read; if even that fails, the report says so and goes on.
    match udp_after.read() {
        Ok(sockets) => analyzer.observe_udp_sockets(NetnsRole::Pod, &sockets),
        Err(e) => warn(
            events,
            format!(
                "the pod's UDP sockets are unreadable ({e}); a receive-buffer overflow cannot name its socket's buffer"
            ),
        ),
    }
    match pod_after.read() {
        Ok(after) => {
            analyzer.observe_counters(NetnsRole::Pod, Moment::Before, &counters(&pod_before));
            analyzer.observe_counters(NetnsRole::Pod, Moment::After, &counters(&after));
        }
        Err(e) if ended == Ended::TargetGone => warn(
            events,
            format!("the pod's counters after the capture are unavailable: {e}"),
        ),
        Err(e) => return Err(e),
    }
    if let (Some(reader), Some(before)) = (node_after, &node_before) {
        let after = reader.read()?;
        analyzer.observe_counters(NetnsRole::Node, Moment::Before, &counters(before));
        analyzer.observe_counters(NetnsRole::Node, Moment::After, &counters(&after));
    }
    for (role, s) in [
        (NetnsRole::Pod, Some(&pod_before)),
        (NetnsRole::Node, node_before.as_ref()),
    ] {
        if let Some(e) = s.and_then(Snapshot::sock_diag_error) {
            warn(
                events,
                format!("listener backlogs in the {role} netns unknown (sock_diag: {e})"),
            );
        }
    }
    let report = analyzer.finish();
    let annotated = match &d.annotate {
        Some(out) => {
            offline::annotate(&scratch_out, &report, out)?;
            Some(out.clone())
        }
        None => None,
    };
    drop(scratch_files);
    Ok(Diagnosed {
        report,
        target: target.pod().cloned(),
        label: target.label().to_owned(),
        captures,
        ended: Some(ended),
        elapsed: Some(elapsed),
        warnings,
        annotated,
    })
}

/// The pod's resolver settings as a live run gives them to the analysis: resolv.conf (the
/// caller's, else the pod's own) and the resolver library (the caller's, else the one the
/// pod's program is linked with), with a warning for each that could not be read.
pub(crate) struct PodResolver {
    pub(crate) resolv_conf: Option<String>,
    pub(crate) resolver: Option<netdiag_analyze::Resolver>,
    pub(crate) warnings: Vec<String>,
}

impl PodResolver {
    pub(crate) fn read(d: &Diagnosis, target: &Target) -> Result<PodResolver, Error> {
        let mut warnings = Vec::new();
        let resolv_conf = match crate::explicit_resolv_conf(&d.resolv_conf)? {
            Some(text) => Some(text),
            None => target.resolv_conf().unwrap_or_else(|e| {
                warnings.push(format!(
                    "the pod's resolv.conf is unreadable ({e}); DNS search lists will be \
                     inferred from the traffic"
                ));
                None
            }),
        };
        let resolver = match (&d.resolver, target.pid()) {
            (Some(r), _) => Some(r.clone()),
            (None, Some(pid)) => crate::resolver::resolver_of_pid(pid)
                .map_err(|e| {
                    warnings.push(format!(
                        "the pod's resolver library is unknown ({e}); it will be inferred \
                         from the traffic where it shows"
                    ));
                })
                .ok(),
            (None, None) => None,
        };
        Ok(PodResolver {
            resolv_conf,
            resolver,
            warnings,
        })
    }
}

/// Opens the pod's capture point inside its namespace (`-i`, `--filter`), and reads its
/// interface's MTU (`Err`: why it is unknown).
pub(crate) fn open_pod_capture(
    d: &Diagnosis,
    target: &Target,
) -> Result<(LiveCapture, Result<Option<u32>, String>), Error> {
    let config = CaptureConfig {
        interface: d
            .interface
            .as_deref()
            .map(InterfaceChoice::from_arg)
            .unwrap_or_default(),
        filter: d.filter.clone(),
        netns_label: target.label().to_owned(),
        ..CaptureConfig::default()
    };
    let cap = target.run(move || LiveCapture::open(&config))??;
    let iface = cap.interface().to_owned();
    let mtu = match target.run(move || crate::resolver::mtu_here(&iface)) {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    Ok((cap, mtu))
}

/// Opens the node's capture point on `iface` inside the node's namespace.
pub(crate) fn open_node_capture(
    d: &Diagnosis,
    ns: &NetNs,
    iface: &str,
) -> Result<LiveCapture, Error> {
    let config = CaptureConfig {
        interface: InterfaceChoice::from_arg(iface),
        filter: d.filter.clone(),
        netns_label: "the node netns".to_owned(),
        ..CaptureConfig::default()
    };
    Ok(ns.run(move || LiveCapture::open(&config))??)
}

/// Reads one capture point until the run is stopped, feeding its packets as they arrive:
/// every packet the kernel's ring holds at once goes to the analyzer under one lock (the
/// lock is taken only once a packet is there, never while waiting for one).
fn pump(p: &mut Point, counts: &Counts, analyzer: &Mutex<Analyzer>) -> Result<(), Error> {
    let link = p.cap.link_type();
    let source = p.source;
    let mut next_stats = Instant::now() + PROGRESS_EVERY;
    loop {
        let mut guard: Option<MutexGuard<'_, Analyzer>> = None;
        let mut bytes = 0u64;
        let mut failed = None;
        let scratch = &mut p.scratch;
        let got = p.cap.next_batch(usize::MAX, |pkt| {
            guard.get_or_insert_with(|| lock(analyzer)).feed_from(
                source,
                pkt.timestamp_ns,
                link,
                pkt.data,
            );
            bytes += pkt.data.len() as u64;
            if let (Some((w, id, _)), None) = (scratch.as_mut(), &failed) {
                if let Err(e) = w.write_packet(&PacketOut {
                    interface: *id,
                    timestamp_ns: pkt.timestamp_ns,
                    data: pkt.data,
                    original_len: pkt.original_len,
                    comments: &[],
                }) {
                    failed = Some(e);
                }
            }
        })?;
        drop(guard);
        if let Some(e) = failed {
            return Err(e.into());
        }
        let Some(n) = got else { return Ok(()) };
        if n > 0 {
            counts.packets.fetch_add(n as u64, Ordering::Relaxed);
            counts.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        let now = Instant::now();
        if now >= next_stats {
            next_stats = now + PROGRESS_EVERY;
            if let Ok(s) = p.cap.stats() {
                counts.dropped.store(
                    u64::from(s.dropped) + u64::from(s.if_dropped),
                    Ordering::Relaxed,
                );
            }
        }
    }
}

/// A scratch pcapng for one capture point's packets, annotated once the findings are known.
fn open_scratch(path: &Path, cap: &LiveCapture, label: &str) -> Result<(Scratch, u32), Error> {
    let file = std::fs::File::create(path).map_err(|source| Error::Io {
        what: "creating the scratch capture",
        path: path.to_path_buf(),
        source,
    })?;
    let mut w = PcapngWriter::new(BufWriter::new(file))?.with_name(path.display().to_string());
    let id = w.add_interface(&InterfaceDesc {
        name: Some(cap.interface().to_owned()),
        description: Some(format!("{label} (netdiag)")),
        nanos: true,
        ..InterfaceDesc::new(cap.link_type(), cap.snaplen())
    })?;
    Ok((w, id))
}

fn finish_scratch(w: Scratch, path: &Path) -> Result<(), Error> {
    let mut inner = w.into_inner()?;
    inner.flush().map_err(|source| Error::Io {
        what: "writing the scratch capture",
        path: path.to_path_buf(),
        source,
    })
}

/// A thread inside a namespace that reads its counters whenever asked: entered while the
/// process still may, so reading needs no privilege of the caller's thread (least
/// privilege). `diagnose` asks once, after the capture; `watch` every tick.
pub(crate) struct CounterReader {
    ask: mpsc::Sender<()>,
    answer: mpsc::Receiver<Result<Snapshot, netdiag_kernel::Error>>,
    _thread: NetNsThread<()>,
}

impl CounterReader {
    pub(crate) fn start(ns: &NetNs) -> Result<CounterReader, Error> {
        let (ask, asked) = mpsc::channel::<()>();
        let (tell, answer) = mpsc::channel();
        let thread = ns.spawn(move || {
            while asked.recv().is_ok() {
                if tell.send(Snapshot::capture_current()).is_err() {
                    return;
                }
            }
        })?;
        Ok(CounterReader {
            ask,
            answer,
            _thread: thread,
        })
    }

    pub(crate) fn read(&self) -> Result<Snapshot, Error> {
        let gone = || Error::Io {
            what: "reading the counters",
            path: PathBuf::from("/proc/thread-self/net"),
            source: std::io::Error::other("the counter thread ended"),
        };
        self.ask.send(()).map_err(|_| gone())?;
        match self.answer.recv_timeout(Duration::from_secs(10)) {
            Ok(r) => Ok(r?),
            Err(_) => Err(gone()),
        }
    }
}
