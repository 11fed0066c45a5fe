//! The live capture loop shared by `capture` and `diagnose`: open inside the target's
//! netns, read until count/duration/signal/closed reader, progress line, kernel drop stats.

use crate::signals::Interrupt;
use crate::target::Target;
use netdiag::capture::{CaptureConfig, LiveCapture, Packet, Stats};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Why the capture ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// `-c COUNT` packets were captured.
    Count,
    /// `--duration` elapsed.
    Duration,
    /// SIGINT or SIGTERM.
    Signal(&'static str),
    /// The reader of `-w -` went away (EPIPE).
    ReaderClosed,
    /// The pod (its interface or network namespace) went away.
    TargetGone,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Count => f.write_str("packet count reached"),
            Ended::Duration => f.write_str("duration elapsed"),
            Ended::Signal(name) => write!(f, "{name}"),
            Ended::ReaderClosed => f.write_str("reader closed the pipe"),
            Ended::TargetGone => f.write_str("the pod went away"),
        }
    }
}

/// What the sink wants after a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep capturing.
    Continue,
    /// The reader went away: stop quietly.
    ReaderClosed,
}

/// Totals of one live capture.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    /// Packets handed to the sink.
    pub(crate) packets: u64,
    /// Captured bytes handed to the sink.
    pub(crate) bytes: u64,
    /// libpcap's kernel counters at the end (None if pcap_stats failed).
    pub(crate) stats: Option<Stats>,
    /// Why it ended.
    pub(crate) ended: Ended,
    /// Wall time spent capturing.
    pub(crate) elapsed: Duration,
}

/// Limits of one run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Limits {
    /// Stop after this many packets.
    pub(crate) count: Option<u64>,
    /// Stop after this long.
    pub(crate) duration: Option<Duration>,
}

/// Opens the capture on a thread inside the target's network namespace. The packet socket
/// stays bound to that namespace, so the loop can run on the main thread afterwards.
pub(crate) fn open(target: &Target, mut config: CaptureConfig) -> anyhow::Result<LiveCapture> {
    config.netns_label = target.label().to_owned();
    let cap = target.run(move || LiveCapture::open(&config))??;
    if let Some(note) = cap.interface_note() {
        eprintln!("kubectl-netdiag: {note}");
    }
    Ok(cap)
}

/// Reads packets into `sink` until a limit, a signal or a closed reader; `extra` adds text
/// (e.g. findings so far) to the progress line, shown only when stderr is a terminal.
/// `drained` runs after each batch: every packet ready in the kernel's ring went to `sink`
/// and the loop is about to wait. A pipe is flushed there, so under load one write carries
/// thousands of packets while a lone packet still leaves at once.
pub(crate) fn run(
    cap: &mut LiveCapture,
    limits: Limits,
    interrupt: &Interrupt,
    mut extra: impl FnMut() -> String,
    mut sink: impl FnMut(Packet<'_>) -> anyhow::Result<Flow>,
    mut drained: impl FnMut() -> anyhow::Result<Flow>,
) -> anyhow::Result<Summary> {
    let stop = cap.stop_handle();
    interrupt.on_interrupt(move || stop.stop());
    // Every handle is open (the capture socket, the output): read and parse the packets
    // without any capability (the README's table says what each command needs before).
    if let Err(e) = netdiag::drop_privileges() {
        eprintln!("kubectl-netdiag: warning: {e}; capturing with the privileges it started with");
    }
    let started = Instant::now();
    let deadline = limits.duration.map(|d| started + d);
    let mut progress = Progress::new();
    let mut packets = 0u64;
    let mut bytes = 0u64;
    let ended = loop {
        if limits.count.is_some_and(|c| packets >= c) {
            break Ended::Count;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break Ended::Duration;
        }
        let room = limits.count.map_or(usize::MAX, |c| {
            usize::try_from(c.saturating_sub(packets)).unwrap_or(usize::MAX)
        });
        // The sink's verdict on the batch: once it fails or its reader is gone, the rest
        // of the batch is not handed to it.
        let mut verdict: anyhow::Result<Flow> = Ok(Flow::Continue);
        let got = cap.next_batch(room, |p| {
            if !matches!(verdict, Ok(Flow::Continue)) {
                return;
            }
            packets += 1;
            bytes += p.data.len() as u64;
            verdict = sink(p);
        });
        if verdict? == Flow::ReaderClosed {
            break Ended::ReaderClosed;
        }
        let got = match got {
            Ok(got) => got,
            // The pod was deleted: what was written is complete; say so and end.
            Err(e) if e.is_gone() => {
                progress.clear();
                eprintln!("kubectl-netdiag: {e}");
                break Ended::TargetGone;
            }
            Err(e) => return Err(e.into()),
        };
        match got {
            None => break Ended::Signal(interrupt.signal_name().unwrap_or("stop request")),
            Some(0) => {}
            Some(_) => {
                if drained()? == Flow::ReaderClosed {
                    break Ended::ReaderClosed;
                }
            }
        }
        if progress.due() {
            let drops = cap
                .stats()
                .map(|s| u64::from(s.dropped) + u64::from(s.if_dropped))
                .unwrap_or(0);
            progress.draw(packets, bytes, drops, &extra());
        }
    };
    progress.clear();
    let stats = cap.stats().ok();
    Ok(Summary {
        packets,
        bytes,
        stats,
        ended,
        elapsed: started.elapsed(),
    })
}

/// A one-line progress display on stderr, redrawn at most 4 times a second, only on a TTY.
pub(crate) struct Progress {
    enabled: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        Progress {
            enabled: std::io::stderr().is_terminal(),
            last: None,
            drawn: false,
        }
    }

    pub(crate) fn due(&self) -> bool {
        self.enabled
            && self
                .last
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(250))
    }

    pub(crate) fn draw(&mut self, packets: u64, bytes: u64, drops: u64, extra: &str) {
        self.last = Some(Instant::now());
        self.drawn = true;
        let mut err = std::io::stderr().lock();
        let sep = if extra.is_empty() { "" } else { ", " };
        // \x1b[K clears the rest of the line after a shorter redraw.
        let _ = write!(
            err,
            "\r{packets} packets, {} captured, {drops} dropped{sep}{extra}\x1b[K",
            human_bytes(bytes)
        );
        let _ = err.flush();
    }

    pub(crate) fn clear(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.drawn = false;
        }
    }
}

fn human_bytes(b: u64) -> String {
    match b {
        0..1024 => format!("{b} B"),
        1024..1_048_576 => format!("{:.1} KiB", b as f64 / 1024.0),
        _ => format!("{:.1} MiB", b as f64 / 1_048_576.0),
    }
}

/// Parses a duration like `30s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (examples: 30s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {s:?} (ms, s, m, h)"
            ));
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Prints tcpdump's closing lines for the kernel counters to stderr.
pub(crate) fn print_stats(summary: &Summary) {
    eprintln!(
        "{} packets captured ({}) in {:.1}s, ended: {}",
        summary.packets,
        human_bytes(summary.bytes),
        summary.elapsed.as_secs_f64(),
        summary.ended
    );
    match summary.stats {
        Some(s) => eprintln!(
            "{} packets received by filter\n{} packets dropped by kernel\n{} packets dropped by interface",
            s.received, s.dropped, s.if_dropped
        ),
        None => eprintln!("kernel drop counters unavailable (pcap_stats failed)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 days").is_err());
    }
}
