//! `kubectl-netdiag`: the command-line face of netdiag.
//!
//! Each subcommand lives in its own module with its own `Args`; `main` only dispatches and
//! maps errors to exit codes: 0 = nothing at or above `--fail-on`, 1 = findings, 2 = error.

mod agent;
mod analyze;
mod capture;
mod completions;
mod counters;
mod diagnose;
mod exit;
mod live;
mod metrics;
mod pods;
mod signals;
mod target;
mod watch;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

/// Diagnose Kubernetes pod networking on the node where the pod runs.
///
/// Finds conntrack INVALID resets, accept-queue overflow, SNAT port exhaustion,
/// DNS ndots amplification and the 5-second DNS delay, with evidence and a remedy.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-netdiag",
    bin_name = "kubectl-netdiag",
    version,
    about,
    long_about
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Analyze capture files offline and report findings.
    Analyze(analyze::AnalyzeArgs),
    /// Capture packets inside a pod's network namespace (pcap/pcapng, `-w -` streams).
    Capture(capture::CaptureArgs),
    /// Capture and read kernel counters in the pod's and the node's namespaces, then diagnose.
    Diagnose(diagnose::DiagnoseArgs),
    /// Leave it running: each fault printed when certain, with a pcapng of its packets.
    Watch(watch::WatchArgs),
    /// Print the kernel counters of a pod's network namespace.
    Counters(counters::CountersArgs),
    /// List the pods running on this node.
    Pods(pods::PodsArgs),
    /// Idle in a DaemonSet pod, ready for `kubectl exec` (says what it can see; exits 0 on SIGTERM).
    Agent(agent::AgentArgs),
    /// Print shell completions (used by `cargo xtask completions`).
    #[command(hide = true)]
    Completions(completions::CompletionsArgs),
    /// Print the man pages (used by `cargo xtask completions`).
    #[command(hide = true)]
    Man(completions::ManArgs),
}

/// The command line, with kubectl's `-c CONTAINER` on the commands that target a pod but
/// take no packet count (`capture -c N` stays tcpdump's count; there `--container`).
fn command() -> clap::Command {
    let short_c = |s: clap::Command| s.mut_arg("container", |a| a.short('c'));
    Cli::command()
        .mut_subcommand("diagnose", short_c)
        .mut_subcommand("watch", short_c)
        .mut_subcommand("counters", short_c)
}

fn main() -> ExitCode {
    exit::install_sigpipe_default();
    let cli = Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Analyze(a) => analyze::run(a),
        Command::Capture(a) => capture::run(a),
        Command::Diagnose(a) => diagnose::run(a),
        Command::Watch(a) => watch::run(a),
        Command::Counters(a) => counters::run(a),
        Command::Pods(a) => pods::run(a),
        Command::Agent(a) => agent::run(a),
        Command::Completions(a) => completions::completions(a, command()),
        Command::Man(a) => completions::man(a, command()),
    };
    exit::finish(result)
}
