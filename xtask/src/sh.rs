//! Running commands with their command line echoed (and, past 10 s, how long they
//! took), failing loudly.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `cmd`, echoing it first; fails naming the command when it exits non-zero.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", display(cmd));
    let started = std::time::Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("could not start {}", display(cmd)))?;
    // Where a long run's minutes go (a fresh `cargo xtask ci`), without a profiler.
    let took = started.elapsed().as_secs();
    if took >= 10 {
        eprintln!("xtask: ({took} s) {}", display(cmd));
    }
    if !status.success() {
        bail!("{} failed: {status}", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its standard output; fails with its stderr when it exits non-zero.
pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    eprintln!("xtask: $ {}", display(cmd));
    let out = cmd
        .output()
        .with_context(|| format!("could not start {}", display(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}: {}",
            display(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The command as a shell-like line, for messages.
pub(crate) fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// The cargo that runs us (`$CARGO`), or `cargo`.
pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Whether we run as root (euid 0).
pub(crate) fn is_root() -> bool {
    // /proc/self/status "Uid:\treal\teffective…"; no libc needed for this.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The workspace root (xtask's parent directory).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the workspace root), else
/// `target/` in the workspace.
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => workspace_root().join(d),
        None => workspace_root().join("target"),
    }
}

/// Removes `path`, a directory with its contents or a file.
pub(crate) fn remove_path(path: &Path) -> Result<()> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    removed.with_context(|| format!("removing {}", path.display()))
}
