//! `kubectl-netdiag analyze`.

use crate::exit::Outcome;

/// Arguments of `kubectl-netdiag analyze`.
#[derive(Debug, clap::Args)]
pub(crate) struct AnalyzeArgs {}

/// Runs `kubectl-netdiag analyze`.
pub(crate) fn run(_args: AnalyzeArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("`analyze` is not available in this build yet")
}
