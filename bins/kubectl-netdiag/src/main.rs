//! `kubectl-netdiag`: the command-line face of netdiag.
//!
//! Each subcommand lives in its own module with its own `Args`; `main` only dispatches and
//! maps errors to exit codes: 0 = nothing at or above `--fail-on`, 1 = findings, 2 = error.

mod exit;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Diagnose Kubernetes pod networking on the node where the pod runs.
///
/// Finds conntrack INVALID resets, accept-queue overflow, SNAT port exhaustion,
/// DNS ndots amplification and the 5-second DNS delay, with evidence and a remedy.
#[derive(Debug, Parser)]
#[command(name = "kubectl-netdiag", bin_name = "kubectl-netdiag", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {}

fn main() -> ExitCode {
    exit::install_sigpipe_default();
    let cli = Cli::parse();
    let result: anyhow::Result<exit::Outcome> = match cli.command {};
    exit::finish(result)
}
