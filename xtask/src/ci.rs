//! `cargo xtask ci`: what CI runs, in the order that fails fastest.

use crate::{deps, sh};
use anyhow::{Result, bail};

pub(crate) fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("`cargo xtask ci` takes no arguments (got {a:?})");
    }
    deps::install()?;
    if std::env::var("CI").as_deref() == Ok("true") && !sh::is_root() {
        bail!("CI=true but not root: the lab tests need root; run as root");
    }
    sh::run(sh::cargo().args(["fmt", "--all", "--check"]))?;
    sh::run(sh::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    sh::run(
        sh::cargo()
            .args(["doc", "--workspace", "--no-deps", "--locked"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    // The integration tests in tests/ run the real binary (and `kubectl netdiag`, which
    // finds it on PATH): build it first, since cargo builds a bin only for its own package.
    sh::run(sh::cargo().args(["build", "--locked", "-p", "kubectl-netdiag"]))?;
    sh::run(sh::cargo().args(["test", "--workspace", "--locked", "--no-fail-fast"]))?;
    Ok(())
}
