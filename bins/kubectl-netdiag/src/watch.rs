//! `kubectl-netdiag watch`: leave it running; each fault is printed the moment it is
//! certain, with a pcapng of exactly its packets.
//!
//! The library's [`netdiag::Diagnosis::watch`] does the work (capture, the flight
//! recorder, episodes, files, following the pod); this module maps the arguments, prints
//! one line per episode (`-o json`: one object per line), a heartbeat on a terminal, the
//! metrics of `--metrics`, and the summary at the end.

use crate::analyze::report::{FailOn, OutputFormat};
use crate::exit::Outcome;
use crate::live;
use crate::metrics::{self, Metrics};
use crate::signals::Interrupt;
use crate::target::LiveArgs;
use netdiag::analyze::Kind;
use netdiag::analyze::watch::WatchConfig;
use netdiag::{CapturePoint, Ended, Found, WatchEvent, WatchOptions};
use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// Arguments of `kubectl-netdiag watch`.
#[derive(Debug, clap::Args)]
pub(crate) struct WatchArgs {
    /// The target (a pod given by name is followed when it is deleted and created
    /// again), the capture points and the node's side, as for `diagnose`.
    #[command(flatten)]
    pub(crate) live: LiveArgs,
    /// How long to watch (24h, 30m); default: until SIGINT/SIGTERM.
    #[arg(long = "for", value_name = "D", value_parser = live::parse_duration)]
    pub(crate) for_: Option<Duration>,
    /// Packets kept in memory (the flight recorder): an episode's file holds up to this
    /// much traffic before its first evidence packet.
    #[arg(long, value_name = "D", default_value = "30s", value_parser = live::parse_duration)]
    pub(crate) keep_window: Duration,
    /// Most memory the flight recorder holds (16MiB, 64M, bytes); the oldest packets go
    /// first. Under heavy traffic this, not --keep-window, bounds what an episode's file
    /// holds and how far back the analysis sees.
    #[arg(long, value_name = "BYTES", default_value = "16MiB", value_parser = parse_bytes)]
    pub(crate) keep_bytes: usize,
    /// Write one annotated pcapng per episode into this directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Most episode files kept in --out (the oldest are removed first).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub(crate) max_files: usize,
    /// Exit 1 when an episode at least this confident was seen.
    #[arg(long, value_enum, default_value_t = FailOn::Likely)]
    pub(crate) fail_on: FailOn,
    /// Output format: one line per episode (human), or one JSON object per line.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Human)]
    pub(crate) output: OutputFormat,
    /// Serve Prometheus metrics at http://ADDR/metrics (`PORT` alone: on 127.0.0.1).
    #[arg(long, value_name = "ADDR", value_parser = metrics::parse_addr)]
    pub(crate) metrics: Option<SocketAddr>,
    /// How often the recording is analysed and the counters read.
    #[arg(long, value_name = "D", default_value = "2s", value_parser = live::parse_duration)]
    pub(crate) tick: Duration,
    /// Most flows the analysis holds at once.
    #[arg(long, value_name = "N")]
    pub(crate) max_flows: Option<usize>,
    /// Print a status line on stderr this often (packets, drops, episodes, memory), for a
    /// log as well as a terminal; 0 turns it off. Default: every minute when stderr is a
    /// terminal, never otherwise.
    #[arg(long, value_name = "D", value_parser = live::parse_duration)]
    pub(crate) heartbeat: Option<Duration>,
}

/// `24MiB`, `64M`, `512k`, `1G`, or bytes.
fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 24MiB, 64M, 1048576)"))?;
    let mult: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use k, M or G)")),
    };
    n.checked_mul(mult)
        .filter(|b| *b >= 1 << 20)
        .ok_or_else(|| format!("{s:?}: give at least 1MiB"))
}

/// How long repeats of a kind are counted together on a line.
const REPEAT_WINDOW: Duration = Duration::from_secs(600);

/// How often the heartbeat line is printed on a terminal (unless `--heartbeat` says).
const HEARTBEAT: Duration = Duration::from_secs(60);

/// Runs `kubectl-netdiag watch`.
pub(crate) fn run(args: WatchArgs) -> anyhow::Result<Outcome> {
    let interrupt = Interrupt::install()?;
    let d = args
        .live
        .diagnosis()?
        .duration(args.for_.unwrap_or(Duration::MAX));
    let mut config = WatchConfig::default()
        .with_keep_window_ns(u64::try_from(args.keep_window.as_nanos()).unwrap_or(u64::MAX))
        .with_keep_bytes(args.keep_bytes);
    if let Some(n) = args.max_flows {
        let a = config.analyzer.clone().with_max_flows(n);
        config = config.with_analyzer(a);
    }
    let mut options = WatchOptions::default()
        .with_config(config)
        .with_max_files(args.max_files)
        .with_tick(args.tick);
    if let Some(dir) = &args.out {
        options = options.with_out(dir);
    }
    let stop = d.stop_handle();
    let stop_on_closed_stdout = d.stop_handle();
    interrupt.on_interrupt(move || stop.stop());

    let mut metrics = match args.metrics {
        Some(addr) => Some(Metrics::serve(addr)?),
        None => None,
    };
    let mut out = Printer {
        format: args.output,
        recent: BTreeMap::new(),
        fail_on: args.fail_on,
        failed: false,
        per_kind: BTreeMap::new(),
    };
    let heartbeat = match args.heartbeat {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None => std::io::stderr().is_terminal().then_some(HEARTBEAT),
    };
    let mut next_heartbeat = Instant::now() + heartbeat.unwrap_or(HEARTBEAT);
    let mut label = String::new();
    let mut last_totals = (0u64, 0u64);
    // Episode lines go to stdout through a thread of their own: a reader that stalls
    // holds up that thread, never the watch (counters, following the pod, metrics, files).
    let mut lines = StdoutLines::start(stop_on_closed_stdout)?;
    let done = d.watch(&options, |event| match event {
        WatchEvent::Resolved { label: l, notes } => {
            for note in &notes {
                eprintln!("note: {note}");
            }
            if !label.is_empty() {
                eprintln!("kubectl-netdiag: {l} is back; watching it");
            }
            label = l;
        }
        WatchEvent::CaptureStarted {
            point: CapturePoint::Pod,
            interface,
        } => eprintln!(
            "watching {label} on {interface}{} (Ctrl-C ends)",
            args.for_
                .map(|d| format!(" for {d:.0?}"))
                .unwrap_or_default()
        ),
        WatchEvent::CaptureStarted { interface, .. } => {
            eprintln!("also capturing the node netns on {interface}")
        }
        WatchEvent::Episode(found) => {
            if let Some(m) = &metrics {
                m.finding(&found.episode.finding);
            }
            match out.episode(&found) {
                Ok(text) => lines.send(text),
                Err(e) => eprintln!("kubectl-netdiag: warning: cannot print an episode: {e}"),
            }
        }
        WatchEvent::Tick(t) => {
            release_freed_memory();
            last_totals = (
                t.captures.iter().map(|c| c.packets).sum(),
                t.captures.iter().map(|c| c.dropped).sum(),
            );
            if let Some(m) = metrics.as_mut() {
                m.tick(&t);
            }
            if let Some(every) = heartbeat.filter(|_| Instant::now() >= next_heartbeat) {
                next_heartbeat = Instant::now() + every;
                eprintln!(
                    "[{}] {label}: {} packets, {} dropped, {} episodes{}, RSS {}",
                    clock(SystemTime::now()),
                    last_totals.0,
                    last_totals.1,
                    out.per_kind.values().sum::<u64>(),
                    out.kinds_text(),
                    rss_text()
                );
            }
        }
        WatchEvent::TargetGone { what, following } => {
            if following {
                eprintln!(
                    "kubectl-netdiag: the pod went away ({what}); waiting for it to be created again"
                );
            } else {
                eprintln!("kubectl-netdiag: the target went away ({what})");
            }
        }
        WatchEvent::PrivilegesDropped { .. } => {}
        WatchEvent::Warning(w) => eprintln!("kubectl-netdiag: warning: {w}"),
        WatchEvent::Note(n) => eprintln!("kubectl-netdiag: {n}"),
        _ => {}
    })?;
    let written = lines.finish(&interrupt);
    let write_error = written.error;
    let reason = match done.ended {
        _ if write_error
            .as_ref()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            "the reader of stdout went away".to_owned()
        }
        Ended::Duration => "duration reached".to_owned(),
        Ended::TargetGone => "the target went away".to_owned(),
        _ => interrupt
            .signal_name()
            .map_or_else(|| "stopped".to_owned(), |s| s.to_owned()),
    };
    let packets: u64 = done.captures.iter().map(|c| c.packets).sum();
    let dropped: u64 = done.captures.iter().map(|c| c.dropped).sum();
    let lost: u64 = done.captures.iter().map(|c| c.lost).sum();
    eprintln!(
        "watch of {} ended ({reason}) after {:.0?}: {packets} packets, {dropped} dropped by the kernel{}; {} episodes{}{}",
        done.label,
        done.elapsed,
        if lost > 0 {
            format!(", {lost} lost before analysis")
        } else {
            String::new()
        },
        done.episodes,
        out.kinds_text(),
        args.out
            .as_ref()
            .map(|d| format!("; files in {}", d.display()))
            .unwrap_or_default()
    );
    if written.unwritten > 0 && write_error.is_none() {
        eprintln!(
            "kubectl-netdiag: {} episode line(s) not written: stdout's reader stopped reading \
             (each episode is still in --out and --metrics)",
            written.unwritten
        );
    }
    // tcpdump's closing lines, per capture point.
    for c in &done.captures {
        eprintln!(
            "{} packets captured on the {} interface {}\n{} packets received by filter\n{} packets dropped by kernel\n{} packets lost before analysis",
            c.packets,
            c.point.as_str(),
            c.interface,
            c.received,
            c.dropped,
            c.lost
        );
    }
    if let Some(e) = write_error {
        return Err(e.into());
    }
    if done.ended == Ended::TargetGone {
        anyhow::bail!(
            "{} went away; a --pid or --netns target cannot be followed (name the pod to follow it)",
            done.label
        );
    }
    Ok(if out.failed {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// Prints episodes: in full the first time a kind shows up in [`REPEAT_WINDOW`], then one
/// line with the count.
struct Printer {
    format: OutputFormat,
    /// When each kind's episodes were handed out, within the repeat window.
    recent: BTreeMap<Kind, VecDeque<Instant>>,
    fail_on: FailOn,
    failed: bool,
    per_kind: BTreeMap<Kind, u64>,
}

impl Printer {
    /// The episode's text for stdout (counted, and the repeat window advanced).
    fn episode(&mut self, found: &Found) -> std::io::Result<Vec<u8>> {
        let e = &found.episode;
        let f = &e.finding;
        *self.per_kind.entry(f.kind).or_default() += 1;
        if f.confidence >= self.fail_on.confidence() {
            self.failed = true;
        }
        let now = Instant::now();
        let recent = self.recent.entry(f.kind).or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > REPEAT_WINDOW)
        {
            recent.pop_front();
        }
        recent.push_back(now);
        let repeats = recent.len();
        let mut w = Vec::new();
        match self.format {
            OutputFormat::Json => {
                let mut v = serde_json::to_value(f)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert(
                        "file".into(),
                        found.file.as_ref().map(|p| p.display().to_string()).into(),
                    );
                    o.insert("episode".into(), e.number.into());
                    o.insert("first_ns".into(), e.first_ns.into());
                    o.insert("last_ns".into(), e.last_ns.into());
                    o.insert("repeats_10min".into(), repeats.into());
                }
                serde_json::to_writer(&mut w, &v)?;
                writeln!(w)?;
            }
            OutputFormat::Human => {
                let at = clock(SystemTime::UNIX_EPOCH + Duration::from_nanos(e.first_ns));
                let file = found
                    .file
                    .as_ref()
                    .map(|p| format!(", file {}", p.display()))
                    .unwrap_or_default();
                if repeats == 1 {
                    writeln!(
                        w,
                        "[{at}] {} ({}): {}{}",
                        f.kind.as_str(),
                        f.confidence.as_str(),
                        f.summary,
                        file
                    )?;
                    if !f.flows.is_empty() {
                        writeln!(w, "  flows: {}", f.flows.join(", "))?;
                    }
                    if !f.names.is_empty() {
                        writeln!(w, "  names: {}", f.names.join(", "))?;
                    }
                    let frames: Vec<String> = f
                        .evidence
                        .packets
                        .iter()
                        .map(|p| p.packet.number.to_string())
                        .collect();
                    if found.file.is_some() && !frames.is_empty() {
                        writeln!(w, "  evidence: frames {}", frames.join(", "))?;
                    }
                    writeln!(w, "  fix: {}", f.remedy)?;
                } else {
                    writeln!(
                        w,
                        "[{at}] {} ×{repeats} in the last 10 min ({}){file}",
                        f.kind.as_str(),
                        f.confidence.as_str(),
                    )?;
                }
            }
        }
        Ok(w)
    }

    /// `: dns_lost_reply_timeout ×3, …` or nothing.
    fn kinds_text(&self) -> String {
        if self.per_kind.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = self
            .per_kind
            .iter()
            .map(|(k, n)| format!("{} ×{n}", k.as_str()))
            .collect();
        format!(" ({})", parts.join(", "))
    }
}

/// Most episode texts waiting for a stalled stdout; beyond this they are counted and
/// dropped (a few hundred KiB at most: an episode's line is 0.3 to 2 KiB).
const STDOUT_QUEUE: usize = 256;

/// How long the end of a watch stopped by a signal waits for a stalled stdout.
const STDOUT_GRACE: Duration = Duration::from_secs(1);

/// Episode lines on their way to stdout, written by a thread of their own.
///
/// tcpdump writes from its capture loop and stops capturing while its reader stalls; a
/// watch must go on reading counters, following the pod, serving metrics and writing
/// episode files, so only this thread waits for the reader. The queue is bounded, a line
/// that does not fit is counted, and a signal ends the wait at exit.
struct StdoutLines {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<Option<std::io::Error>>>,
    /// Lines handed to the writer thread.
    sent: u64,
    /// Lines written out (flushed) by it.
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Lines that found the queue full.
    dropped: u64,
    warned: bool,
}

/// What became of the lines at the end.
struct Written {
    /// The write error that ended the writer (EPIPE: the reader went away).
    error: Option<std::io::Error>,
    /// Lines dropped or still waiting when the watch ended.
    unwritten: u64,
}

impl StdoutLines {
    /// Starts the writer; a write error stops the watch through `stop` (nobody would see
    /// what comes next).
    fn start(stop: netdiag::StopHandle) -> anyhow::Result<StdoutLines> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(STDOUT_QUEUE);
        let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = written.clone();
        let thread = std::thread::Builder::new()
            .name("netdiag-stdout".into())
            .spawn(move || {
                let stdout = std::io::stdout();
                for text in rx {
                    let mut w = stdout.lock();
                    if let Err(e) = w.write_all(&text).and_then(|()| w.flush()) {
                        stop.stop();
                        return Some(e);
                    }
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                None
            })
            .map_err(|e| anyhow::anyhow!("starting the stdout thread: {e}"))?;
        Ok(StdoutLines {
            tx: Some(tx),
            thread: Some(thread),
            sent: 0,
            written,
            dropped: 0,
            warned: false,
        })
    }

    /// Queues one episode's text; never waits.
    fn send(&mut self, text: Vec<u8>) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(text) {
            Ok(()) => self.sent += 1,
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                self.dropped += 1;
                if !self.warned {
                    self.warned = true;
                    eprintln!(
                        "kubectl-netdiag: warning: stdout's reader is not reading; \
                         {STDOUT_QUEUE} episode lines wait for it and later ones are \
                         dropped (--out and --metrics still get every episode)"
                    );
                }
            }
            // The writer ended on an error, which `finish` reports.
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {}
        }
    }

    /// Lets the writer write what is queued: as long as it takes, unless a signal came
    /// (then [`STDOUT_GRACE`] more at most, so a stalled reader cannot hold up the exit).
    fn finish(mut self, interrupt: &Interrupt) -> Written {
        drop(self.tx.take());
        let mut deadline: Option<Instant> = None;
        let mut error = None;
        if let Some(thread) = self.thread.take() {
            loop {
                if thread.is_finished() {
                    error = thread.join().ok().flatten();
                    break;
                }
                if interrupt.is_interrupted() {
                    let d = *deadline.get_or_insert_with(|| Instant::now() + STDOUT_GRACE);
                    if Instant::now() >= d {
                        // Left blocked in write(2); the process exit ends it.
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let written = self.written.load(std::sync::atomic::Ordering::Relaxed);
        Written {
            unwritten: self.dropped + self.sent.saturating_sub(written),
            error,
        }
    }
}

/// Hands the pages the last tick's analysis freed back to the kernel. Every tick builds a
/// fresh analysis of the window (tables of varying sizes, freed two seconds later); glibc
/// keeps freed memory in its arenas, so RSS would sit at the high-water mark of that churn
/// and creep up over hours. `malloc_trim(0)` releases the free pages of every arena
/// (glibc >= 2.8 also inside the heap, with MADV_DONTNEED); it costs about a millisecond.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a size and touches only the allocator's own free lists,
    // under its arena locks; it is safe to call from any thread at any time.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `HH:MM:SS` UTC.
fn clock(t: SystemTime) -> String {
    let s = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// This process's resident memory, as /proc says.
fn rss_text() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_owned()))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_bytes("24MiB"), Ok(24 << 20));
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("2097152"), Ok(2 << 20));
        assert!(parse_bytes("12").is_err(), "below 1 MiB");
        assert!(parse_bytes("5 parsecs").is_err());
        assert!(parse_bytes("").is_err());
    }
}
