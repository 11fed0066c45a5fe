//! `watch`: capture for hours, keep the last seconds of packets, hand out each fault the
//! moment it is certain, with the packets that prove it in a file of its own.
//!
//! Threads, and what each may do:
//! - one per capture point copies packets into a hand-off buffer (bounded; what does not
//!   fit is counted as lost, never waited for). It holds no capability once it runs.
//! - the analysis thread drains the hand-offs into the sans-IO
//!   [`analyze::watch::Watch`] (the flight recorder), polls it every tick, and writes each
//!   episode's pcapng. It parses every packet and holds no capability.
//! - a counter reader per namespace, entered beforehand, reads the kernel's counters when
//!   asked (ctnetlink needs CAP_NET_ADMIN; it never sees a packet).
//! - the calling thread keeps the clock, asks for counters every tick, hands out the
//!   events, and follows a pod that is deleted and created again (resolving it through
//!   the runtime and entering its new namespace needs the capabilities it keeps).

use crate::live::{CounterReader, PodResolver, open_node_capture, open_pod_capture};
use crate::target::{Target, node_netns};
use crate::{CapturePoint, Diagnosis, Ended, Error, StopHandle, TargetSpec, counters, cri};
use netdiag_analyze::watch::{Activity, Episode, Watch, WatchConfig};
use netdiag_analyze::{NetnsRole, PacketRef};
use netdiag_capture::LiveCapture;
use netdiag_pcapio::{InterfaceDesc, PacketOut, PcapngWriter};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

/// How a [`Diagnosis::watch`] runs, beyond what the [`Diagnosis`] says (target, capture
/// points, node counters, `duration` = how long to watch).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchOptions {
    /// The flight recorder and episode rules (keep window, byte limit, settle time).
    pub config: WatchConfig,
    /// How often the recording is analysed and the counters read. Default 2 s.
    pub tick: Duration,
    /// Where each episode's pcapng goes; `None`: no files.
    pub out: Option<PathBuf>,
    /// Most episode files kept in `out` (this run's and earlier runs'); the oldest go
    /// first. Default 100.
    pub max_files: usize,
    /// Most bytes waiting between a capture thread and the analysis (per capture point);
    /// packets beyond are counted as lost. Default 4 MiB (drained every 50 ms).
    pub handoff_bytes: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            config: WatchConfig::default(),
            tick: Duration::from_secs(2),
            out: None,
            max_files: 100,
            handoff_bytes: 4 << 20,
        }
    }
}

impl WatchOptions {
    /// Sets [`WatchOptions::out`].
    pub fn with_out(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out = Some(dir.into());
        self
    }

    /// Sets [`WatchOptions::max_files`].
    pub fn with_max_files(mut self, n: usize) -> Self {
        self.max_files = n;
        self
    }

    /// Sets [`WatchOptions::config`].
    pub fn with_config(mut self, config: WatchConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets [`WatchOptions::tick`].
    pub fn with_tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }
}

/// What a running watch hands out, on the thread that called [`Diagnosis::watch`].
///
/// Not folded into [`Event`](crate::Event), what a run of [`Diagnosis::run_with`] hands
/// out, though four variants share names: only `Resolved` and `Warning` carry the same
/// facts. A run is bounded and resolves its target once: its `CaptureStarted` carries the
/// bound, its `Progress` the analyzer's totals four times a second, and one thread drops
/// privileges. A watch is unbounded and follows a pod across sandboxes: `Resolved` and
/// `CaptureStarted` come again for each new one, with no bound (`--for` is optional), and
/// it adds episodes, ticks with the kernel counters, the target going and notes; several
/// of its threads drop privileges, so `PrivilegesDropped` names the thread. One enum
/// would hand every caller variants its loop never produces, and `Event`'s `Eq` would go
/// (an [`Episode`] is only `PartialEq`); wrapping `Event` inside this enum would nest the
/// common arms a level deeper and still need a `thread` and an optional bound added to
/// `Event`'s variants, for two variants of two fields each.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum WatchEvent {
    /// The target was resolved (again, after it was recreated).
    Resolved {
        /// `pod default/web (pid 1234)`.
        label: String,
        /// What the runtime said about ambiguities.
        notes: Vec<String>,
    },
    /// A capture point is open.
    CaptureStarted {
        /// Which point.
        point: CapturePoint,
        /// The interface chosen.
        interface: String,
    },
    /// A fault, final: one episode.
    Episode(Box<Found>),
    /// Every tick: what the new packets showed, the capture counts, the counters read.
    Tick(Box<TickStats>),
    /// The target went away. For a pod given by name the watch waits for it to come
    /// back (`following`); for a PID or a namespace file the watch ends.
    TargetGone {
        /// What went away and why we know.
        what: String,
        /// Whether the watch waits for the pod to be created again.
        following: bool,
    },
    /// A thread gave up its capabilities.
    PrivilegesDropped {
        /// Which thread: `"capture (pod)"`, `"analysis"`.
        thread: String,
        /// The effective capabilities it had.
        had: Vec<String>,
    },
    /// Something the operator should know that does not stop the watch.
    Warning(String),
    /// Something worth knowing that is not a problem (a trouble reported by a
    /// [`Warning`](WatchEvent::Warning) is over).
    Note(String),
}

/// One episode handed out.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Found {
    /// The episode. When a file was written, its evidence packets are numbered as in
    /// that file (`frame.number` in Wireshark), `source` naming the capture point.
    pub episode: Episode,
    /// The pcapng written for it.
    pub file: Option<PathBuf>,
    /// Files removed to keep at most `max_files`.
    pub removed: Vec<PathBuf>,
}

/// Totals per tick.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TickStats {
    /// What the packets recorded since the previous tick showed.
    pub activity: Activity,
    /// Per capture point: its totals so far.
    pub captures: Vec<PointTotals>,
    /// The kernel counters read this tick (flat keys), per namespace.
    pub counters: Vec<(NetnsRole, Vec<(String, u64)>)>,
    /// Bytes the flight recorder holds.
    pub recorded_bytes: usize,
    /// Time since the watch started.
    pub elapsed: Duration,
}

/// A capture point's totals.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PointTotals {
    /// Which point.
    pub point: CapturePoint,
    /// Its interface.
    pub interface: String,
    /// Packets captured.
    pub packets: u64,
    /// Packets the kernel handed to the capture (libpcap's `ps_recv`, tcpdump's "received
    /// by filter"), summed over every capture opened at this point.
    pub received: u64,
    /// Packets the kernel or the interface dropped (libpcap's counters, summed over
    /// every capture opened at this point).
    pub dropped: u64,
    /// Packets lost between the capture and the analysis (the hand-off was full).
    pub lost: u64,
}

/// How a watch ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Watched {
    /// Names what was watched.
    pub label: String,
    /// Why it ended.
    pub ended: Ended,
    /// How long it ran.
    pub elapsed: Duration,
    /// Episodes handed out.
    pub episodes: u64,
    /// Per capture point, at the end.
    pub captures: Vec<PointTotals>,
}

/// The kernel's keys whose values a tick reports (the counters the detectors read).
const TICK_COUNTERS: &[&str] = &[
    "TcpExt.ListenOverflows",
    "TcpExt.ListenDrops",
    "conntrack.insert_failed",
    "conntrack.drop",
    "conntrack.invalid",
    "conntrack.early_drop",
    "sysctl.net.netfilter.nf_conntrack_count",
    "sysctl.net.netfilter.nf_conntrack_max",
];

/// Packets between a capture thread and the analysis.
struct Handoff {
    inner: Mutex<Batch>,
    cap: usize,
}

#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    /// (timestamp, link type, original length, offset, length)
    recs: Vec<(u64, u32, u32, usize, usize)>,
}

impl Handoff {
    /// Adds a packet; `false` when the hand-off is full (the packet is lost).
    fn push(&self, ts: u64, link: u32, original_len: u32, data: &[u8]) -> bool {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if b.data.len() + data.len() > self.cap {
            return false;
        }
        let off = b.data.len();
        b.data.extend_from_slice(data);
        b.recs.push((ts, link, original_len, off, data.len()));
        true
    }

    fn take(&self, spare: Batch) -> Batch {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *b, spare)
    }
}

/// A capture point's shared totals.
#[derive(Default)]
struct Totals {
    packets: AtomicU64,
    /// libpcap's drops of the capture running now.
    dropped_now: AtomicU64,
    /// ... and of the ones that ended (a pod recreated).
    dropped_before: AtomicU64,
    /// libpcap's received count, the same way.
    received_now: AtomicU64,
    received_before: AtomicU64,
    lost: AtomicU64,
}

impl Totals {
    /// The capture whose libpcap counters are "now" ended: keep them as "before".
    fn retire(&self) {
        for (now, before) in [
            (&self.dropped_now, &self.dropped_before),
            (&self.received_now, &self.received_before),
        ] {
            before.fetch_add(now.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

/// One capture point: the thread reading it and what it shares.
struct Point {
    which: CapturePoint,
    interface: String,
    source: u16,
    handoff: Arc<Handoff>,
    totals: Arc<Totals>,
    thread: Option<std::thread::JoinHandle<Result<(), Error>>>,
    stop: Option<netdiag_capture::StopHandle>,
}

impl Point {
    /// A point not started yet, with an empty hand-off of at most `handoff_bytes`.
    fn new(which: CapturePoint, interface: &str, source: u16, handoff_bytes: usize) -> Point {
        Point {
            which,
            interface: interface.to_owned(),
            source,
            handoff: Arc::new(Handoff {
                inner: Mutex::default(),
                cap: handoff_bytes,
            }),
            totals: Arc::default(),
            thread: None,
            stop: None,
        }
    }
}

/// What the calling thread tells the analysis thread.
enum ToAnalysis {
    Counters(NetnsRole, u64, netdiag_analyze::Counters),
    ResolvConf(String),
    Mtu(String, u32),
    Tick,
    Finish,
}

/// What the analysis thread tells the calling thread.
enum FromAnalysis {
    Episode(Box<Found>),
    Tick(Activity, usize),
    Warning(String),
    PrivilegesDropped(Vec<String>),
    Done,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The wall clock and the monotonic clock read together, once a tick. Capture times and
/// the recorder's window are the wall clock; when it is stepped (an NTP step, a VM resumed
/// from a snapshot, which sets the wall clock forward by the pause) the packets after the
/// step are that far from those before it, and the window drops the evidence in flight.
#[derive(Debug, Clone, Copy)]
struct Clocks {
    wall: SystemTime,
    mono: Instant,
}

/// A move of the wall clock against the monotonic one larger than this, between two
/// ticks, is reported: NTP's slewing (500 ppm at most) moves it 1 ms in a 2-s tick.
const CLOCK_STEP: Duration = Duration::from_secs(1);

impl Clocks {
    fn now() -> Clocks {
        Clocks {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }

    /// The warning for a step of the wall clock between `self` and `later`, if there was
    /// one.
    fn step_warning(&self, later: &Clocks) -> Option<String> {
        let mono = later
            .mono
            .saturating_duration_since(self.mono)
            .as_secs_f64();
        let wall = match later.wall.duration_since(self.wall) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        let moved = wall - mono;
        (moved.abs() > CLOCK_STEP.as_secs_f64()).then(|| {
            format!(
                "the system clock jumped {moved:+.1} s against the monotonic clock within {mono:.1} s \
                 (an NTP step, or this machine resumed from a pause or snapshot): capture times \
                 on either side are that far apart, and evidence spanning the jump (a reply \
                 still awaited) may go unreported"
            )
        })
    }
}

pub(crate) fn run(
    d: &Diagnosis,
    spec: &TargetSpec,
    opts: &WatchOptions,
    events: &mut dyn FnMut(WatchEvent),
) -> Result<Watched, Error> {
    let started = Instant::now();
    let deadline = started.checked_add(d.duration);
    let mut target = Target::resolve(spec, &d.runtime)?;
    events(WatchEvent::Resolved {
        label: target.label().to_owned(),
        notes: target.notes().to_vec(),
    });
    let node = if d.node.counters || d.node.interface.is_some() {
        Some(node_netns(d.node.netns.as_deref())?)
    } else {
        None
    };
    if let Some(text) = target.outside_node_netns(node.is_some() && d.node.netns.is_none()) {
        events(WatchEvent::Warning(text));
    }
    let mut engine = Watch::new(opts.config.clone());
    let pod = PodResolver::read(d, &target)?;
    if let Some(text) = &pod.resolv_conf {
        engine.set_resolv_conf(text);
    }
    if let Some(r) = pod.resolver {
        engine.set_resolver(r);
    }
    for w in pod.warnings {
        events(WatchEvent::Warning(w));
    }

    // Counter readers, entered now.
    let mut pod_reader = Some(CounterReader::start(target.netns())?);
    let node_reader = match (&node, d.node.counters) {
        (Some(ns), true) => Some(CounterReader::start(ns)?),
        _ => None,
    };

    // Capture points.
    let mut points: Vec<Point> = Vec::new();
    let pod_source = engine.add_source(target.label());
    let (cap, mtu) = open_pod_capture(d, &target)?;
    if let Some(note) = cap.interface_note() {
        events(WatchEvent::Warning(note.to_owned()));
    }
    match mtu {
        Ok(Some(m)) => engine.set_interface_mtu(cap.interface(), m),
        Ok(None) => {}
        Err(e) => events(WatchEvent::Warning(format!(
            "the pod interface's MTU is unknown ({e}); path-MTU findings will not state it"
        ))),
    }
    points.push(Point::new(
        CapturePoint::Pod,
        cap.interface(),
        pod_source,
        opts.handoff_bytes,
    ));
    let mut caps = vec![cap];
    if let (Some(iface), Some(ns)) = (&d.node.interface, &node) {
        let cap = open_node_capture(d, ns, iface)?;
        let source = engine.add_source(format!("node netns, {}", cap.interface()));
        points.push(Point::new(
            CapturePoint::Node,
            cap.interface(),
            source,
            opts.handoff_bytes,
        ));
        caps.push(cap);
    }

    // The analysis thread.
    let (to_analysis, analysis_rx) = mpsc::channel::<ToAnalysis>();
    let (analysis_tx, from_analysis) = mpsc::channel::<FromAnalysis>();
    let handoffs: Vec<(u16, Arc<Handoff>)> = points
        .iter()
        .map(|p| (p.source, Arc::clone(&p.handoff)))
        .collect();
    let files = match &opts.out {
        Some(dir) => Some(EpisodeFiles::open(dir, opts.max_files)?),
        None => None,
    };
    let least = d.least_privilege;
    let analysis = std::thread::Builder::new()
        .name("netdiag-analysis".into())
        .spawn(move || analysis_thread(engine, handoffs, files, least, analysis_rx, analysis_tx))
        .map_err(|source| Error::Io {
            what: "starting the analysis thread",
            path: PathBuf::from("/proc/self/task"),
            source,
        })?;

    // The capture threads.
    for (p, cap) in points.iter_mut().zip(caps) {
        events(WatchEvent::CaptureStarted {
            point: p.which,
            interface: cap.interface().to_owned(),
        });
        start_point(p, cap, least, events)?;
    }

    // A PID or a namespace file is never resolved again: the calling thread needs no
    // capability from here on either (the counter readers entered their namespaces).
    // A pod given by name keeps what following it needs: resolving it through the
    // runtime, entering its new namespace, opening a capture there.
    if least && !matches!(spec, TargetSpec::Pod(_)) {
        match crate::drop_privileges() {
            Ok(dropped) => events(WatchEvent::PrivilegesDropped {
                thread: "main".to_owned(),
                had: dropped.had,
            }),
            Err(e) => events(WatchEvent::Warning(format!(
                "{e}; the main thread keeps the privileges the watch started with"
            ))),
        }
    }

    // The stop: the caller's handle, the deadline, the end of the target.
    let stop = StopHandle::new();
    {
        let stop = stop.clone();
        d.stop.on_stop(move || stop.stop());
    }

    let mut ended = Ended::Stopped;
    let mut episodes = 0u64;
    let mut next_tick = Instant::now() + opts.tick;
    let mut clocks = Clocks::now();
    let mut latest_counters: Vec<(NetnsRole, Vec<(String, u64)>)> = Vec::new();
    let mut following: Option<Follow> = None;
    let mut current = identity(&target);
    let mut last_check = Instant::now();
    // The runtime did not answer the last sandbox check (warned once, until it answers).
    let mut runtime_trouble = false;
    let mut failure: Option<Error> = None;
    loop {
        if stop.is_stopped() {
            break;
        }
        if deadline.is_some_and(|dl| Instant::now() >= dl) {
            ended = Ended::Duration;
            break;
        }
        // Capture points that ended on their own.
        for p in points.iter_mut() {
            if !p.thread.as_ref().is_some_and(|t| t.is_finished()) {
                continue;
            }
            let r = p
                .thread
                .take()
                .map(|t| t.join().unwrap_or(Ok(())))
                .unwrap_or(Ok(()));
            p.totals.retire();
            match (r, p.which) {
                (Err(Error::Capture(e)), CapturePoint::Pod) if e.is_gone() => {
                    let follow = matches!(spec, TargetSpec::Pod(_));
                    events(WatchEvent::TargetGone {
                        what: e.to_string(),
                        following: follow,
                    });
                    pod_reader = None;
                    if follow {
                        following = Some(Follow::interface_gone(Instant::now()));
                    } else {
                        ended = Ended::TargetGone;
                        stop.stop();
                    }
                }
                (Err(e), CapturePoint::Node) => events(WatchEvent::Warning(format!(
                    "the node capture point ended: {e}; watching the pod's side only"
                ))),
                (Err(e), _) => {
                    failure = Some(e);
                    stop.stop();
                }
                (Ok(()), _) => {}
            }
        }
        if stop.is_stopped() {
            break;
        }
        // A pod that went away: resolve it again every second until it is back.
        if let Some(f) = following.as_mut() {
            if f.due(Instant::now()) {
                let back = *f;
                match Target::resolve(spec, &d.runtime) {
                    Ok(t) if back.watches(&identity(&t), &current) => {
                        match follow_pod(d, &t, &mut points[0], least, &to_analysis, events) {
                            Ok(reader) => {
                                current = identity(&t);
                                target = t;
                                pod_reader = Some(reader);
                                following = None;
                            }
                            Err(e) => events(WatchEvent::Warning(format!(
                                "the pod is back but cannot be watched yet: {e}; retrying"
                            ))),
                        }
                    }
                    _ => {}
                }
            }
        }
        // A sandbox replaced or removed while the old capture still runs (on `-i any` in
        // a namespace only we hold, nothing more would ever come): ask the runtime every
        // few seconds. A runtime that does not answer (restarting) changes nothing: the
        // namespace we hold is still the pod's.
        if following.is_none()
            && matches!(spec, TargetSpec::Pod(_))
            && last_check.elapsed() >= SANDBOX_CHECK
        {
            last_check = Instant::now();
            let gone = match Target::resolve(spec, &d.runtime) {
                Ok(t) => {
                    if runtime_trouble {
                        runtime_trouble = false;
                        events(WatchEvent::Note(
                            "the container runtime answers again; the pod's sandbox is unchanged"
                                .to_owned(),
                        ));
                    }
                    let now = identity(&t);
                    (!same(&now, &current))
                        .then(|| format!("the pod's sandbox changed ({current} is now {now})"))
                }
                Err(
                    e @ Error::Cri(cri::Error::PodNotFound { .. } | cri::Error::PodNotReady { .. }),
                ) => Some(format!("the runtime no longer runs its sandbox: {e}")),
                Err(e) => {
                    if !runtime_trouble {
                        runtime_trouble = true;
                        events(WatchEvent::Warning(format!(
                            "cannot check the pod's sandbox with the container runtime ({e}); \
                             still watching the pod's network namespace, which netdiag holds"
                        )));
                    }
                    None
                }
            };
            if let Some(what) = gone {
                events(WatchEvent::TargetGone {
                    what,
                    following: true,
                });
                let p = &mut points[0];
                if let Some(s) = &p.stop {
                    s.stop();
                }
                if let Some(th) = p.thread.take() {
                    let _ = th.join();
                }
                p.totals.retire();
                pod_reader = None;
                runtime_trouble = false;
                following = Some(Follow::runtime_said_gone(Instant::now()));
            }
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + opts.tick;
            let clocks_now = Clocks::now();
            if let Some(w) = clocks.step_warning(&clocks_now) {
                events(WatchEvent::Warning(w));
            }
            clocks = clocks_now;
            latest_counters.clear();
            for (role, reader) in [
                (NetnsRole::Pod, pod_reader.as_ref()),
                (NetnsRole::Node, node_reader.as_ref()),
            ] {
                let Some(reader) = reader else { continue };
                let at = now_ns();
                match reader.read() {
                    Ok(s) => {
                        let c = counters(&s);
                        latest_counters.push((
                            role,
                            TICK_COUNTERS
                                .iter()
                                .filter_map(|k| c.values.get(*k).map(|v| ((*k).to_owned(), *v)))
                                .collect(),
                        ));
                        let _ = to_analysis.send(ToAnalysis::Counters(role, at, c));
                    }
                    Err(e) => events(WatchEvent::Warning(format!(
                        "the {role} netns counters are unreadable this tick: {e}"
                    ))),
                }
            }
            let _ = to_analysis.send(ToAnalysis::Tick);
        }
        match from_analysis.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => handle(m, &points, &latest_counters, started, &mut episodes, events),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    d.stop.clear_hooks();

    // Stop the captures, then let the analysis drain them and hand out the rest.
    for p in &mut points {
        if let Some(s) = &p.stop {
            s.stop();
        }
    }
    for p in &mut points {
        if let Some(t) = p.thread.take() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(Error::Capture(e))) if e.is_gone() => {}
                Ok(Err(e)) => events(WatchEvent::Warning(format!(
                    "the {} capture point ended with an error: {e}",
                    p.which.as_str()
                ))),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        p.totals.retire();
    }
    let _ = to_analysis.send(ToAnalysis::Finish);
    while let Ok(m) = from_analysis.recv() {
        let done = matches!(m, FromAnalysis::Done);
        handle(m, &points, &latest_counters, started, &mut episodes, events);
        if done {
            break;
        }
    }
    match analysis.join() {
        Ok(()) => {}
        Err(panic) => std::panic::resume_unwind(panic),
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Watched {
        label: target.label().to_owned(),
        ended,
        elapsed: started.elapsed(),
        episodes,
        captures: totals_of(&points),
    })
}

fn handle(
    m: FromAnalysis,
    points: &[Point],
    counters: &[(NetnsRole, Vec<(String, u64)>)],
    started: Instant,
    episodes: &mut u64,
    events: &mut dyn FnMut(WatchEvent),
) {
    match m {
        FromAnalysis::Episode(f) => {
            *episodes += 1;
            events(WatchEvent::Episode(f));
        }
        FromAnalysis::Tick(activity, recorded_bytes) => {
            events(WatchEvent::Tick(Box::new(TickStats {
                activity,
                captures: totals_of(points),
                counters: counters.to_vec(),
                recorded_bytes,
                elapsed: started.elapsed(),
            })))
        }
        FromAnalysis::Warning(w) => events(WatchEvent::Warning(w)),
        FromAnalysis::PrivilegesDropped(had) => events(WatchEvent::PrivilegesDropped {
            thread: "analysis".to_owned(),
            had,
        }),
        FromAnalysis::Done => {}
    }
}

/// How often a watched pod's sandbox is checked against the runtime.
const SANDBOX_CHECK: Duration = Duration::from_secs(10);

/// How often a pod that went away is resolved again, until it is back.
const RESOLVE_AGAIN: Duration = Duration::from_secs(1);

/// Following a pod given by name that went away: when to resolve it again, and which
/// sandbox the runtime then names is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Follow {
    /// When to resolve the pod next.
    next_try: Instant,
    /// Whether the sandbox that went away is watched again when the runtime runs it
    /// (ready) again, or only another one.
    same_is_back: bool,
}

impl Follow {
    /// The pod's capture ended because its interface is gone: only a new sandbox can be
    /// watched (the old one may still be listed a while). First try in a second.
    fn interface_gone(now: Instant) -> Follow {
        Follow {
            next_try: now.checked_add(RESOLVE_AGAIN).unwrap_or(now),
            same_is_back: false,
        }
    }

    /// The runtime said the sandbox changed or no longer runs, while the capture in the
    /// namespace netdiag holds still ran: whatever sandbox the runtime runs (again) is
    /// watched again, even the same one, its namespace being whole. First try at once.
    fn runtime_said_gone(now: Instant) -> Follow {
        Follow {
            next_try: now,
            same_is_back: true,
        }
    }

    /// Whether it is time to resolve the pod; if it is, the next try is a second later.
    fn due(&mut self, now: Instant) -> bool {
        if now < self.next_try {
            return false;
        }
        self.next_try = now.checked_add(RESOLVE_AGAIN).unwrap_or(now);
        true
    }

    /// Whether the sandbox resolved (`found`, an [`identity`]) is watched, the one that
    /// went away being `gone`.
    fn watches(&self, found: &str, gone: &str) -> bool {
        self.same_is_back || !same(found, gone)
    }
}

/// What tells one incarnation of a target from the next: its sandbox (a container that
/// restarts in the same sandbox keeps the pod's namespace), else its process.
fn identity(t: &Target) -> String {
    match (t.pod(), t.pid()) {
        (Some(p), Some(pid)) => format!(
            "sandbox {} (pid {pid})",
            p.sandbox_id.get(..12).unwrap_or(&p.sandbox_id)
        ),
        (Some(p), None) => format!(
            "sandbox {}",
            p.sandbox_id.get(..12).unwrap_or(&p.sandbox_id)
        ),
        (None, Some(pid)) => format!("pid {pid}"),
        (None, None) => t.label().to_owned(),
    }
}

/// Whether two identities name the same incarnation (sandbox IDs, when there are).
fn same(a: &str, b: &str) -> bool {
    match (a.strip_prefix("sandbox "), b.strip_prefix("sandbox ")) {
        (Some(x), Some(y)) => x.split(' ').next() == y.split(' ').next(),
        _ => a == b,
    }
}

fn totals_of(points: &[Point]) -> Vec<PointTotals> {
    points
        .iter()
        .map(|p| PointTotals {
            point: p.which,
            interface: p.interface.clone(),
            packets: p.totals.packets.load(Ordering::Relaxed),
            received: p.totals.received_before.load(Ordering::Relaxed)
                + p.totals.received_now.load(Ordering::Relaxed),
            dropped: p.totals.dropped_before.load(Ordering::Relaxed)
                + p.totals.dropped_now.load(Ordering::Relaxed),
            lost: p.totals.lost.load(Ordering::Relaxed),
        })
        .collect()
}

/// The pod is back (a new sandbox): capture in its new namespace into the same source.
fn follow_pod(
    d: &Diagnosis,
    t: &Target,
    p: &mut Point,
    least: bool,
    to_analysis: &mpsc::Sender<ToAnalysis>,
    events: &mut dyn FnMut(WatchEvent),
) -> Result<CounterReader, Error> {
    let reader = CounterReader::start(t.netns())?;
    let (cap, mtu) = open_pod_capture(d, t)?;
    if let Ok(Some(text)) = t.resolv_conf() {
        let _ = to_analysis.send(ToAnalysis::ResolvConf(text));
    }
    if let Ok(Some(m)) = mtu {
        let _ = to_analysis.send(ToAnalysis::Mtu(cap.interface().to_owned(), m));
    }
    p.interface = cap.interface().to_owned();
    events(WatchEvent::Resolved {
        label: t.label().to_owned(),
        notes: t.notes().to_vec(),
    });
    events(WatchEvent::CaptureStarted {
        point: p.which,
        interface: cap.interface().to_owned(),
    });
    start_point(p, cap, least, events)?;
    Ok(reader)
}

/// Starts the thread that reads `cap` into the point's hand-off.
fn start_point(
    p: &mut Point,
    mut cap: LiveCapture,
    least: bool,
    events: &mut dyn FnMut(WatchEvent),
) -> Result<(), Error> {
    p.stop = Some(cap.stop_handle());
    let handoff = Arc::clone(&p.handoff);
    let totals = Arc::clone(&p.totals);
    let (tx, rx) = mpsc::channel();
    let name = format!("capture ({})", p.which.as_str());
    let thread = std::thread::Builder::new()
        .name(format!("netdiag-{}", p.which.as_str()))
        .spawn(move || {
            if least {
                let _ = tx.send(crate::drop_privileges().map(|d| d.had));
            }
            drop(tx);
            pump(&mut cap, &handoff, &totals)
        })
        .map_err(|source| Error::Io {
            what: "starting a capture thread",
            path: PathBuf::from("/proc/self/task"),
            source,
        })?;
    match rx.recv() {
        Ok(Ok(had)) => events(WatchEvent::PrivilegesDropped { thread: name, had }),
        Ok(Err(e)) => events(WatchEvent::Warning(format!(
            "{e}; the {name} thread keeps the privileges the watch started with"
        ))),
        Err(_) => {}
    }
    p.thread = Some(thread);
    Ok(())
}

/// How often a capture thread refreshes its drop counters.
const STATS_EVERY: Duration = Duration::from_millis(500);

fn pump(cap: &mut LiveCapture, handoff: &Handoff, totals: &Totals) -> Result<(), Error> {
    let link = cap.link_type();
    let mut next_stats = Instant::now() + STATS_EVERY;
    loop {
        let mut n = 0u64;
        let mut lost = 0u64;
        let got = cap.next_batch(usize::MAX, |p| {
            if !handoff.push(p.timestamp_ns, link, p.original_len, p.data) {
                lost += 1;
            }
            n += 1;
        })?;
        totals.packets.fetch_add(n, Ordering::Relaxed);
        if lost > 0 {
            totals.lost.fetch_add(lost, Ordering::Relaxed);
        }
        let now = Instant::now();
        if got.is_none() || now >= next_stats {
            next_stats = now + STATS_EVERY;
            if let Ok(s) = cap.stats() {
                totals.dropped_now.store(
                    u64::from(s.dropped) + u64::from(s.if_dropped),
                    Ordering::Relaxed,
                );
                totals
                    .received_now
                    .store(u64::from(s.received), Ordering::Relaxed);
            }
        }
        if got.is_none() {
            return Ok(());
        }
    }
}

/// How often the analysis thread moves packets from the hand-offs into the recording.
const DRAIN_EVERY: Duration = Duration::from_millis(50);

fn analysis_thread(
    mut engine: Watch,
    handoffs: Vec<(u16, Arc<Handoff>)>,
    mut files: Option<EpisodeFiles>,
    least: bool,
    rx: mpsc::Receiver<ToAnalysis>,
    tx: mpsc::Sender<FromAnalysis>,
) {
    if least {
        match crate::drop_privileges() {
            Ok(d) => {
                let _ = tx.send(FromAnalysis::PrivilegesDropped(d.had));
            }
            Err(e) => {
                let _ = tx.send(FromAnalysis::Warning(format!(
                    "{e}; the analysis thread keeps the privileges the watch started with"
                )));
            }
        }
    }
    let mut spares: Vec<Batch> = handoffs.iter().map(|_| Batch::default()).collect();
    let drain = |engine: &mut Watch, spares: &mut Vec<Batch>| {
        // Each hand-off is in time order; merge them so the recording is too.
        let mut batches: Vec<(u16, Batch)> = handoffs
            .iter()
            .zip(spares.iter_mut())
            .map(|((src, h), spare)| (*src, h.take(std::mem::take(spare))))
            .collect();
        let mut idx = vec![0usize; batches.len()];
        loop {
            let next = batches
                .iter()
                .enumerate()
                .filter_map(|(i, (_, b))| b.recs.get(idx[i]).map(|r| (r.0, i)))
                .min();
            let Some((_, i)) = next else { break };
            let (src, b) = &batches[i];
            let (ts, link, orig, off, len) = b.recs[idx[i]];
            engine.record(*src, ts, link, orig, &b.data[off..off + len]);
            idx[i] += 1;
        }
        for (i, (_, mut b)) in batches.drain(..).enumerate() {
            b.data.clear();
            b.recs.clear();
            // Keep the buffers for the next swap unless a burst made them large.
            if b.data.capacity() > 1 << 20 {
                b = Batch::default();
            }
            spares[i] = b;
        }
    };
    let mut finishing = false;
    loop {
        let msg = rx.recv_timeout(DRAIN_EVERY);
        drain(&mut engine, &mut spares);
        let poll = match msg {
            Ok(ToAnalysis::Counters(role, at, c)) => {
                engine.observe_counters(role, at, c);
                None
            }
            Ok(ToAnalysis::ResolvConf(t)) => {
                engine.set_resolv_conf(&t);
                None
            }
            Ok(ToAnalysis::Mtu(i, m)) => {
                engine.set_interface_mtu(&i, m);
                None
            }
            Ok(ToAnalysis::Tick) => Some(engine.poll(now_ns())),
            Ok(ToAnalysis::Finish) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                finishing = true;
                Some(engine.finish(now_ns()))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => None,
        };
        if let Some(poll) = poll {
            for e in poll.episodes {
                let mut found = Found {
                    episode: e,
                    file: None,
                    removed: Vec::new(),
                };
                if let Some(f) = files.as_mut() {
                    match f.write(&engine, &mut found.episode) {
                        Ok((path, removed)) => {
                            found.file = Some(path);
                            found.removed = removed;
                        }
                        // A full disk loses a file, not the watch: the finding is still
                        // handed out, and the next episode tries again.
                        Err(e) => {
                            let _ = tx.send(FromAnalysis::Warning(format!(
                                "{e}; episode {} of {} is reported without its file",
                                found.episode.number,
                                found.episode.finding.kind.as_str()
                            )));
                        }
                    }
                }
                let _ = tx.send(FromAnalysis::Episode(Box::new(found)));
            }
            let _ = tx.send(FromAnalysis::Tick(poll.activity, engine.recorded_bytes()));
        }
        if finishing {
            let _ = tx.send(FromAnalysis::Done);
            return;
        }
    }
}

/// The episode files of `--out`: written whole (a `.partial` renamed), at most `max`.
struct EpisodeFiles {
    dir: PathBuf,
    max: usize,
    kept: VecDeque<PathBuf>,
}

const FILE_PREFIX: &str = "netdiag-";
const FILE_SUFFIX: &str = ".pcapng";

impl EpisodeFiles {
    fn open(dir: &Path, max: usize) -> Result<EpisodeFiles, Error> {
        let io = |what, source| Error::Io {
            what,
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io("creating the episode directory", e))?;
        let mut kept: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| io("listing the episode directory", e))?
            .filter_map(|e| e.ok())
            // Only files count (a directory of that name is not an episode).
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(FILE_PREFIX) && n.ends_with(FILE_SUFFIX))
            })
            .collect();
        // Named by time: the name order is the age order.
        kept.sort();
        Ok(EpisodeFiles {
            dir: dir.to_path_buf(),
            max: max.max(1),
            kept: kept.into(),
        })
    }

    /// Writes `e`'s file; renumbers its evidence packets as in the file. Returns the path
    /// and the files removed to stay within `max`.
    fn write(&mut self, w: &Watch, e: &mut Episode) -> Result<(PathBuf, Vec<PathBuf>), Error> {
        let name = format!(
            "{FILE_PREFIX}{:013}-{}-{}{FILE_SUFFIX}",
            e.first_ns / 1_000_000,
            e.finding.kind.as_str(),
            e.number
        );
        let path = self.dir.join(name);
        let partial = crate::offline::scratch_path(&path, "episode");
        let result = write_episode(w, e, &partial);
        if let Err(err) = result {
            let _ = std::fs::remove_file(&partial);
            return Err(err);
        }
        self.place(&partial, path)
    }

    /// Renames the finished `partial` into place as `path`, first removing the oldest
    /// files beyond `max - 1`, so that `--out` never holds more than `max` files, not
    /// even between the rename and the removal. If the rename fails, `partial` is removed
    /// too (the files made room for stay removed: they were the oldest). Returns `path`
    /// and the files removed.
    fn place(&mut self, partial: &Path, path: PathBuf) -> Result<(PathBuf, Vec<PathBuf>), Error> {
        let mut removed = Vec::new();
        while self.kept.len() >= self.max
            && let Some(old) = self.kept.pop_front()
        {
            if std::fs::remove_file(&old).is_ok() {
                removed.push(old);
            }
        }
        if let Err(source) = std::fs::rename(partial, &path) {
            let _ = std::fs::remove_file(partial);
            return Err(Error::Io {
                what: "renaming the episode capture into place",
                path,
                source,
            });
        }
        self.kept.push_back(path.clone());
        Ok((path, removed))
    }
}

/// The longest comment pcapng can hold (a 16-bit option length), cut at a char boundary.
fn comment(text: String) -> String {
    const MAX: usize = 65_000;
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn write_episode(w: &Watch, e: &mut Episode, path: &Path) -> Result<(), Error> {
    let f = &e.finding;
    let mut section = vec![comment(format!(
        "netdiag watch: {} ({}), episode {}: {}",
        f.kind.as_str(),
        f.confidence.as_str(),
        e.number,
        f.summary
    ))];
    section.push(comment(format!("remedy: {}", f.remedy)));
    if let Some(a) = &f.alternative {
        section.push(comment(format!("alternative: {a}")));
    }
    for c in &f.evidence.counters {
        section.push(format!(
            "counter {} {}: {} -> {} (+{})",
            c.netns.as_str(),
            c.key,
            c.before,
            c.after,
            c.after.saturating_sub(c.before)
        ));
    }
    for t in &f.evidence.timings {
        let ms: Vec<String> = t.millis.iter().map(|m| format!("{m:.1}")).collect();
        section.push(comment(format!("{} (ms): {}", t.what, ms.join(", "))));
    }
    for n in &f.evidence.notes {
        section.push(comment(format!("note: {n}")));
    }
    let refs: Vec<&str> = section.iter().map(String::as_str).collect();
    let file = std::fs::File::create(path).map_err(|source| Error::Io {
        what: "creating the episode capture",
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = PcapngWriter::with_comments(std::io::BufWriter::new(file), &refs)?
        .with_name(path.display().to_string());

    // The comment of each evidence packet, by recording number.
    let mut notes: HashMap<u64, Vec<(usize, String)>> = HashMap::new();
    for (i, (p, seq)) in f.evidence.packets.iter().zip(&e.evidence_seqs).enumerate() {
        notes.entry(*seq).or_default().push((
            i,
            format!(
                "netdiag: {} ({}): {}",
                f.kind.as_str(),
                f.confidence.as_str(),
                p.role
            ),
        ));
    }
    let mut interfaces: HashMap<(u16, u32), u32> = HashMap::new();
    let mut renumber: Vec<(usize, PacketRef)> = Vec::new();
    for (i, p) in w.packets(e.from_ns, e.to_ns).enumerate() {
        let number = i as u64 + 1;
        let iface = match interfaces.get(&(p.source, p.link_type)) {
            Some(i) => *i,
            None => {
                let name = w.sources().get(usize::from(p.source)).cloned();
                let i = out.add_interface(&InterfaceDesc {
                    description: name.map(|n| format!("{n} (netdiag watch)")),
                    nanos: true,
                    ..InterfaceDesc::new(p.link_type, 262_144)
                })?;
                interfaces.insert((p.source, p.link_type), i);
                i
            }
        };
        let mine = notes.get(&p.seq);
        let texts: Vec<&str> = mine
            .map(|v| v.iter().map(|(_, t)| t.as_str()).collect())
            .unwrap_or_default();
        for (i, _) in mine.into_iter().flatten() {
            renumber.push((
                *i,
                PacketRef {
                    source: p.source,
                    number,
                },
            ));
        }
        out.write_packet(&PacketOut {
            interface: iface,
            timestamp_ns: p.timestamp_ns,
            data: p.data,
            original_len: p.original_len,
            comments: &texts,
        })?;
    }
    let mut inner = out.into_inner()?;
    inner.flush().map_err(|source| Error::Io {
        what: "writing the episode capture",
        path: path.to_path_buf(),
        source,
    })?;
    inner
        .into_inner()
        .map_err(|e| Error::Io {
            what: "writing the episode capture",
            path: path.to_path_buf(),
            source: e.into_error(),
        })?
        .sync_all()
        .map_err(|source| Error::Io {
            what: "syncing the episode capture",
            path: path.to_path_buf(),
            source,
        })?;
    for (i, r) in renumber {
        if let Some(ep) = e.finding.evidence.packets.get_mut(i) {
            ep.packet = r;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_clock_step_between_two_ticks_is_a_warning_and_slewing_is_not() {
        let t0 = Clocks::now();
        // 2 s of monotonic time, 28.3 s of wall time: a VM paused 26.3 s, its wall clock
        // set forward on resume (CI of 2026-12-03 06:21).
        let resumed = Clocks {
            wall: t0.wall + Duration::from_millis(28_300),
            mono: t0.mono + Duration::from_secs(2),
        };
        let w = t0.step_warning(&resumed).expect("a warning");
        assert!(w.contains("jumped +26.3 s"), "{w}");
        let back = Clocks {
            wall: t0.wall - Duration::from_secs(3),
            mono: t0.mono + Duration::from_secs(2),
        };
        assert!(t0.step_warning(&back).is_some_and(|w| w.contains("-5.0 s")));
        let slewed = Clocks {
            wall: t0.wall + Duration::from_micros(2_001_000),
            mono: t0.mono + Duration::from_secs(2),
        };
        assert_eq!(t0.step_warning(&slewed), None);
    }

    /// A scratch directory, removed when dropped.
    fn scratch() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("netdiag-unit-")
            .tempdir()
            .expect("scratch dir")
    }

    /// The episode files in `dir`, by name.
    fn episodes(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(FILE_PREFIX) && n.ends_with(FILE_SUFFIX))
            .collect();
        v.sort();
        v
    }

    fn touch(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, b"x").expect("write");
        p
    }

    const OLDEST: &str = "netdiag-0000000000001-dns_lost_reply-1.pcapng";
    const MIDDLE: &str = "netdiag-0000000000002-dns_lost_reply-2.pcapng";
    const NEWEST: &str = "netdiag-0000000000003-dns_lost_reply-3.pcapng";

    /// At `--max-files 2` with two files there, a third replaces the oldest; the others
    /// in the directory (not ours by name) are left alone.
    #[test]
    fn a_new_episode_file_replaces_the_oldest_at_max_files() {
        let tmp = scratch();
        let d = tmp.path();
        touch(d, MIDDLE);
        touch(d, OLDEST);
        touch(d, "notes.txt");
        let mut files = EpisodeFiles::open(d, 2).expect("open");
        let partial = touch(d, "episode.partial");
        let (path, removed) = files.place(&partial, d.join(NEWEST)).expect("place");
        assert_eq!(path, d.join(NEWEST));
        assert_eq!(removed, vec![d.join(OLDEST)]);
        assert_eq!(episodes(d), vec![MIDDLE, NEWEST]);
        assert!(!partial.exists());
        assert!(d.join("notes.txt").exists());
    }

    /// The room is made before the rename (so the directory never holds `max + 1`): a
    /// rename that fails (the name is taken by a directory) finds the oldest file already
    /// gone, and leaves no `.partial` behind.
    #[test]
    fn room_is_made_before_the_rename_and_a_failed_rename_leaves_no_partial() {
        let tmp = scratch();
        let d = tmp.path();
        touch(d, OLDEST);
        touch(d, MIDDLE);
        std::fs::create_dir(d.join(NEWEST)).expect("mkdir");
        touch(&d.join(NEWEST), "in-the-way");
        let mut files = EpisodeFiles::open(d, 2).expect("open");
        let partial = touch(d, "episode.partial");
        let err = files
            .place(&partial, d.join(NEWEST))
            .expect_err("the rename onto a non-empty directory fails");
        assert!(
            err.to_string()
                .contains("renaming the episode capture into place"),
            "{err}"
        );
        assert!(!partial.exists(), "the .partial stayed");
        assert!(!d.join(OLDEST).exists(), "the oldest was not removed first");
        assert!(d.join(MIDDLE).exists());
        assert_eq!(files.kept, vec![d.join(MIDDLE)]);
    }

    // Identities as `identity` writes them: the sandbox, then the process that holds it.
    const SANDBOX: &str = "sandbox 3f2a9c01b7de (pid 4242)";
    const SAME_SANDBOX_NEW_PID: &str = "sandbox 3f2a9c01b7de (pid 5151)";
    const NEW_SANDBOX: &str = "sandbox 8e11d0c4a52f (pid 5151)";

    /// The capture ended because CNI deleted the pod's interface: the same sandbox, still
    /// listed by the runtime a moment, has nothing left to capture on, so only a new one
    /// is taken (`cli_watch_follows_a_recreated_pod_by_name` in the lab).
    #[test]
    fn after_the_interface_went_only_a_new_sandbox_is_watched() {
        let f = Follow::interface_gone(Instant::now());
        assert!(!f.watches(SANDBOX, SANDBOX));
        assert!(!f.watches(SAME_SANDBOX_NEW_PID, SANDBOX));
        assert!(f.watches(NEW_SANDBOX, SANDBOX));
    }

    /// The runtime said the sandbox is not ready (or gone) while netdiag still held its
    /// namespace: when the runtime runs that same sandbox again it is watched again,
    /// not waited past for ever.
    #[test]
    fn after_the_runtime_said_gone_the_same_sandbox_back_is_watched_again() {
        let f = Follow::runtime_said_gone(Instant::now());
        assert!(f.watches(SANDBOX, SANDBOX));
        assert!(f.watches(SAME_SANDBOX_NEW_PID, SANDBOX));
        assert!(f.watches(NEW_SANDBOX, SANDBOX));
    }

    /// A gone interface is resolved again a second later, the runtime's word at once; then
    /// every second.
    #[test]
    fn follow_resolves_at_once_after_the_runtime_and_a_second_after_the_interface() {
        let now = Instant::now();
        let mut f = Follow::runtime_said_gone(now);
        assert!(f.due(now));
        assert!(!f.due(now + Duration::from_millis(999)));
        assert!(f.due(now + RESOLVE_AGAIN));

        let mut f = Follow::interface_gone(now);
        assert!(!f.due(now));
        assert!(!f.due(now + Duration::from_millis(999)));
        assert!(f.due(now + RESOLVE_AGAIN));
        assert!(!f.due(now + RESOLVE_AGAIN + Duration::from_millis(500)));
    }
}
