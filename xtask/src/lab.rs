//! `cargo xtask lab …`, `cargo xtask node …`, `cargo xtask demo`, `cargo xtask soak`: installs the Debian
//! packages, builds kubectl-netdiag and the `netdiag-lab` driver (package netdiag-tests)
//! with cargo, and runs the driver (root).
//!
//! xtask itself depends on no workspace crate: on a fresh machine it must build before the
//! packages those crates need (protoc, libpcap) are there. The drivers share the harness
//! with the root tests (`netdiag_tests::lab`, `netdiag_tests::node`).

use crate::{deps, sh};
use anyhow::{Context, Result, bail};
use std::process::Command;

/// Runs `netdiag-lab <group> <args…>` after the packages and both binaries are in place.
pub(crate) fn run(group: &str, args: &[String]) -> Result<()> {
    // `lab list`, `node status` and help need neither root nor packages, but the binary does.
    deps::install()?;
    sh::run(sh::cargo().args([
        "build",
        "--locked",
        "-p",
        "kubectl-netdiag",
        "-p",
        "netdiag-tests",
        "--bin",
        "kubectl-netdiag",
        "--bin",
        "netdiag-lab",
    ]))?;
    let bin = sh::target_dir().join("debug").join("netdiag-lab");
    let mut cmd = Command::new(&bin);
    cmd.arg(group).args(args);
    if group == "soak" {
        // The soak's memory bound is about the binary that ships: the PGO release build
        // (a debug build maps ~16 MiB more of its own code and debug sections).
        cmd.arg("--bin").arg(crate::pgo::release_binary()?);
    }
    // Ctrl-C reaches the driver too (same process group): it tears its namespaces or the
    // node down and exits 130. We wait for that instead of dying first.
    ctrlc::set_handler(|| {}).context("installing the Ctrl-C handler")?;
    eprintln!("xtask: $ {}", sh::display(&cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start {}", bin.display()))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(130) => std::process::exit(130),
        _ => bail!("{} failed: {status}", sh::display(&cmd)),
    }
}
