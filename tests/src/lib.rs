//! The lab harness and helpers shared by netdiag's integration tests.
//!
//! `xtask lab …` and the root tests in `tests/tests/` both drive the lab through this
//! library, so a reproduction is written once.

/// Where the tcpdump test-suite corpus lives: `$NETDIAG_CORPUS`, else `../shared/corpus/tcpdump-tests`
/// next to the workspace. Under `CI=true` a missing corpus is an error, elsewhere `None`.
pub fn corpus_dir() -> anyhow::Result<Option<std::path::PathBuf>> {
    let dir = match std::env::var_os("NETDIAG_CORPUS") {
        Some(p) => std::path::PathBuf::from(p),
        None => workspace_root().join("../shared/corpus/tcpdump-tests"),
    };
    if dir.is_dir() {
        return Ok(Some(dir));
    }
    if is_ci() {
        anyhow::bail!(
            "corpus not found at {} (CI=true forbids skipping); set NETDIAG_CORPUS",
            dir.display()
        );
    }
    eprintln!("corpus not found at {}: skipping (set NETDIAG_CORPUS)", dir.display());
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
