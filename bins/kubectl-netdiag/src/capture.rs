//! `kubectl-netdiag capture`.

use crate::exit::Outcome;

/// Arguments of `kubectl-netdiag capture`.
#[derive(Debug, clap::Args)]
pub(crate) struct CaptureArgs {}

/// Runs `kubectl-netdiag capture`.
pub(crate) fn run(_args: CaptureArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("`capture` is not available in this build yet")
}
