//! `kubectl-netdiag pods`.

use crate::exit::Outcome;

/// Arguments of `kubectl-netdiag pods`.
#[derive(Debug, clap::Args)]
pub(crate) struct PodsArgs {}

/// Runs `kubectl-netdiag pods`.
pub(crate) fn run(_args: PodsArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("`pods` is not available in this build yet")
}
