//! `kubectl-netdiag diagnose`: counters before, a live capture, counters after, a verdict.
//!
//! The library's [`netdiag::Diagnosis`] does the work (the pod's and the node's counters
//! before and after, every capture point read at once, the analyzer, the annotated copy);
//! this module maps the arguments onto it and renders its events and its report.

use crate::analyze::report::{self, FailOn, OutputFormat};
use crate::exit::Outcome;
use crate::live::{self, Progress};
use crate::signals::Interrupt;
use crate::target::LiveArgs;
use netdiag::analyze::Config;
use netdiag::{CapturePoint, Ended, Event};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `kubectl-netdiag diagnose`.
#[derive(Debug, clap::Args)]
pub(crate) struct DiagnoseArgs {
    #[command(flatten)]
    pub(crate) live: LiveArgs,
    /// How long to capture (30s, 500ms, 2m); SIGINT/SIGTERM end it early.
    #[arg(long, value_name = "D", default_value = "30s", value_parser = live::parse_duration)]
    pub(crate) duration: Duration,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Human)]
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
    let mut d = args.live.diagnosis()?.duration(args.duration);
    if let Some(n) = args.max_flows {
        d = d.analyzer_config(Config::default().with_max_flows(n));
    }
    if let Some(out) = &args.annotate {
        d = d.annotate(out);
    }
    let stop = d.stop_handle();
    interrupt.on_interrupt(move || stop.stop());

    let mut progress = Progress::new();
    let mut label = String::new();
    let done = d.run_with(|event| match event {
        Event::Resolved { label: l, notes } => {
            for note in &notes {
                eprintln!("note: {note}");
            }
            label = l;
        }
        Event::CaptureStarted {
            point: CapturePoint::Pod,
            interface,
            duration,
        } => eprintln!("diagnosing {label} on {interface} for {duration:.0?} (Ctrl-C ends early)"),
        Event::CaptureStarted { interface, .. } => {
            eprintln!("also capturing the node netns on {interface}")
        }
        Event::Progress(p) if progress.due() => {
            progress.draw(p.packets, p.bytes, p.dropped, &findings_line(&p.analysis));
        }
        Event::Warning(w) => {
            progress.clear();
            eprintln!("kubectl-netdiag: warning: {w}");
        }
        _ => {}
    });
    progress.clear();
    let done = done?;
    let ended = match done.ended {
        Some(Ended::Stopped) => {
            live::Ended::Signal(interrupt.signal_name().unwrap_or("stop request"))
        }
        Some(Ended::TargetGone) => live::Ended::TargetGone,
        _ => live::Ended::Duration,
    };
    for c in &done.captures {
        match c.point {
            CapturePoint::Pod => live::print_stats(&live::Summary {
                packets: c.packets,
                bytes: c.bytes,
                stats: c.stats,
                ended,
                elapsed: done.elapsed.unwrap_or_default(),
            }),
            _ => eprintln!(
                "node capture on {}: {} packets{}",
                c.interface,
                c.packets,
                c.stats
                    .map(|s| format!(", {} dropped by kernel", s.dropped))
                    .unwrap_or_default()
            ),
        }
    }
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let color = args.output == OutputFormat::Human && report::stdout_wants_color();
    report::render(&done.report, args.output, color, &mut lock)?;
    lock.flush()?;
    Ok(if done.ended == Some(Ended::TargetGone) {
        Outcome::TargetGone
    } else if done
        .report
        .findings_at_least(args.fail_on.confidence())
        .next()
        .is_some()
    {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// The analyzer's side of the progress line: flows and the events detectors weigh, by
/// their names. It never names a finding: findings exist only in the final report.
fn findings_line(p: &netdiag::analyze::Progress) -> String {
    let mut parts = vec![format!("{} flows", p.flows)];
    for (n, one, many) in [
        (
            p.syn_retransmissions,
            "SYN retransmission",
            "SYN retransmissions",
        ),
        (
            p.final_acks_dropped,
            "final ACK unanswered",
            "final ACKs unanswered",
        ),
        (
            p.out_of_window_segments,
            "out-of-window segment",
            "out-of-window segments",
        ),
        (p.dns_queries, "DNS query", "DNS queries"),
        (p.dns_retries, "DNS retry", "DNS retries"),
    ] {
        match n {
            0 => {}
            1 => parts.push(format!("1 {one}")),
            n => parts.push(format!("{n} {many}")),
        }
    }
    parts.join(", ")
}
