//! `kubectl-netdiag diagnose`.

use crate::exit::Outcome;

/// Arguments of `kubectl-netdiag diagnose`.
#[derive(Debug, clap::Args)]
pub(crate) struct DiagnoseArgs {}

/// Runs `kubectl-netdiag diagnose`.
pub(crate) fn run(_args: DiagnoseArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("`diagnose` is not available in this build yet")
}
