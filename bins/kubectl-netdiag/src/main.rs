//! `kubectl-netdiag`: the command-line face of netdiag.

use clap::Parser;

/// Diagnose Kubernetes pod networking on the node where the pod runs.
#[derive(Debug, Parser)]
#[command(name = "kubectl-netdiag", bin_name = "kubectl-netdiag", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
