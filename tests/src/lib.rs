//! The lab harness and helpers shared by netdiag's integration tests.
//!
//! `xtask lab …` and the root tests in `tests/tests/` both drive the lab through this
//! library, so a reproduction is written once.

pub mod lab;

pub mod prometheus;

// atexit, flock and a pre-exec hook: each `unsafe` block carries its SAFETY comment.
#[allow(unsafe_code)]
pub mod node;

/// Where the tcpdump test-suite corpus lives: `$NETDIAG_CORPUS`, else `../shared/corpus`
/// next to the workspace. Either may name the corpus root (holding `tcpdump-tests/`) or the
/// `tcpdump-tests` directory itself. Under `CI=true` a missing corpus is an error,
/// elsewhere `None`.
pub fn corpus_dir() -> anyhow::Result<Option<std::path::PathBuf>> {
    let mut dir = match std::env::var_os("NETDIAG_CORPUS") {
        Some(p) => std::path::PathBuf::from(p),
        None => workspace_root().join("../shared/corpus"),
    };
    // The corpus root holds a README next to the captures: without this, a test that lists
    // one directory would see no capture at all and prove nothing.
    if dir.join("tcpdump-tests").is_dir() {
        dir.push("tcpdump-tests");
    }
    if dir.is_dir() {
        return Ok(Some(dir));
    }
    if is_ci() {
        anyhow::bail!(
            "corpus not found at {} (CI=true forbids skipping); set NETDIAG_CORPUS",
            dir.display()
        );
    }
    eprintln!(
        "corpus not found at {}: skipping (set NETDIAG_CORPUS)",
        dir.display()
    );
    Ok(None)
}

/// Whether we run under CI (`CI=true`), where nothing may be skipped.
pub fn is_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::path::PathBuf::from("."))
}

/// The workspace's `testdata/` directory.
pub fn testdata_dir() -> std::path::PathBuf {
    workspace_root().join("testdata")
}

/// Path of the `kubectl-netdiag` binary built in this target dir (`target/<profile>/`).
///
/// Cargo builds a bin only for its own package's tests, so `cargo xtask ci` runs
/// `cargo build -p kubectl-netdiag` before the suite; a missing binary is an error that says so.
pub fn netdiag_bin() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    // target/debug/deps/<test>-<hash> → target/debug/kubectl-netdiag
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .ok_or_else(|| anyhow::anyhow!("test executable {} has no grandparent", exe.display()))?;
    let bin = profile_dir.join("kubectl-netdiag");
    if !bin.is_file() {
        anyhow::bail!(
            "{} not found: run `cargo build -p kubectl-netdiag` first (`cargo xtask ci` does)",
            bin.display()
        );
    }
    Ok(bin)
}

/// Path of the `kubectl-netdiag` that ships, the PGO release build xtask leaves at
/// `target/pgo/kubectl-netdiag` (xtask/src/pgo.rs), for figures that are about that
/// binary (the soak's memory bound). `cargo xtask ci` builds it (the image step) before
/// the tests. Missing: an error under `CI=true`, `None` with a message elsewhere.
pub fn netdiag_release_bin() -> anyhow::Result<Option<std::path::PathBuf>> {
    let debug = netdiag_bin()?;
    let bin = debug
        .parent()
        .and_then(std::path::Path::parent)
        .map(|t| t.join("pgo").join("kubectl-netdiag"))
        .ok_or_else(|| anyhow::anyhow!("{} has no target dir", debug.display()))?;
    if bin.is_file() {
        return Ok(Some(bin));
    }
    if is_ci() {
        anyhow::bail!(
            "{} not found and CI=true forbids skipping: build it with `cargo xtask image` (`cargo xtask ci` does)",
            bin.display()
        );
    }
    eprintln!(
        "{} not found: build it with `cargo xtask image`",
        bin.display()
    );
    Ok(None)
}

/// Whether this process runs as root (effective UID 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// For root-only tests: `Ok(true)` when root; when not root, an error under `CI=true`
/// (nothing may be skipped there) and `Ok(false)` with a skip message elsewhere.
pub fn require_root(test: &str) -> anyhow::Result<bool> {
    if is_root() {
        return Ok(true);
    }
    if is_ci() {
        anyhow::bail!(
            "{test} needs root and CI=true forbids skipping: run `cargo xtask ci` as root"
        );
    }
    eprintln!("{test}: skipped, needs root (run `cargo xtask ci` as root)");
    Ok(false)
}

/// Running commands for the lab drivers: echoed first, output shown, failing loudly.
pub mod sh {
    use anyhow::{Context, Result, bail};
    use std::process::Command;

    /// Runs `cmd` with its output shown, echoing its command line first; fails naming the
    /// command when it exits non-zero.
    pub fn run(cmd: &mut Command) -> Result<()> {
        eprintln!("netdiag-lab: $ {}", display(cmd));
        let status = cmd
            .status()
            .with_context(|| format!("could not start {}", display(cmd)))?;
        if !status.success() {
            bail!("{} failed: {status}", display(cmd));
        }
        Ok(())
    }

    /// The command as a shell-like line, for messages.
    pub fn display(cmd: &Command) -> String {
        let mut s = cmd.get_program().to_string_lossy().into_owned();
        for a in cmd.get_args() {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

/// A scratch directory for one test, `netdiag-test-NAME-PID` under the system's temp
/// directory, emptied when made and removed when dropped (on success and on failure).
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// Makes the directory for the test `name`.
    pub fn new(name: &str) -> std::io::Result<TempDir> {
        let d = std::env::temp_dir().join(format!("netdiag-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
        Ok(TempDir(d))
    }

    /// Removes `path` when dropped, made by whoever writes it (a lab recording).
    pub fn at(path: std::path::PathBuf) -> TempDir {
        TempDir(path)
    }

    /// Where it is.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Writes `bytes` to the file `name` in it; the file's path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> std::io::Result<std::path::PathBuf> {
        let p = self.0.join(name);
        std::fs::write(&p, bytes)?;
        Ok(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A packet of a capture, owned so that it outlives its reader: interface, link type,
/// timestamp (ns), bytes, original length, comment.
pub type OwnedPacket = (u32, u32, u64, Vec<u8>, u32, Option<String>);

/// `p`, owned ([`OwnedPacket`]).
pub fn owned_packet(p: &netdiag_pcapio::Packet<'_>) -> OwnedPacket {
    (
        p.interface,
        p.link_type,
        p.timestamp_ns,
        p.data.to_vec(),
        p.original_len,
        p.comment.map(str::to_string),
    )
}
