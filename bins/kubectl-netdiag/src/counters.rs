//! `kubectl-netdiag counters`.

use crate::exit::Outcome;

/// Arguments of `kubectl-netdiag counters`.
#[derive(Debug, clap::Args)]
pub(crate) struct CountersArgs {}

/// Runs `kubectl-netdiag counters`.
pub(crate) fn run(_args: CountersArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("`counters` is not available in this build yet")
}
