//! `cargo xtask ci`: what CI runs, in the order that fails fastest: fmt, clippy (the
//! workspace, then fuzz/), doc, package, build, test, a fuzz smoke run.

use crate::{deps, sh};
use anyhow::{Context, Result, bail};

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
    fuzz_lints()?;
    sh::run(
        sh::cargo()
            .args(["doc", "--workspace", "--no-deps", "--locked"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    // Every publishable crate packages and builds from its .crate alone: crates.io
    // metadata, license files and readme inside the package, no path-only dependency.
    // `cargo package --workspace` (cargo 1.89+) verifies interdependent unpublished
    // crates through a local overlay registry; the members with `publish = false` are
    // excluded. ~10 s warm for the libraries, ~45 s for kubectl-netdiag's first verify.
    // --allow-dirty: uncommitted work in a developer's checkout is not what this checks.
    forget_packaged_workspace_crates()?;
    sh::run(sh::cargo().args([
        "package",
        "--workspace",
        "--exclude",
        "netdiag-benches",
        "--exclude",
        "netdiag-tests",
        "--exclude",
        "xtask",
        "--locked",
        "--allow-dirty",
    ]))?;
    offline_build()?;
    // The integration tests in tests/ run the real binary (and `kubectl netdiag`, which
    // finds it on PATH): build it first, since cargo builds a bin only for its own package.
    sh::run(sh::cargo().args(["build", "--locked", "-p", "kubectl-netdiag"]))?;
    // The release image (reproducible, read back by skopeo) and the deploy/ manifests
    // (Kubernetes OpenAPI schema); the agent-pod test in tests/ imports this image.
    crate::image::ci()?;
    let before = our_netns()?;
    let tests = sh::run(sh::cargo().args(["test", "--workspace", "--locked", "--no-fail-fast"]));
    // Every test removes what it created, on success and on failure: a namespace of ours
    // left behind is a bug even when every assertion passed.
    let left: Vec<String> = our_netns()?
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    tests?;
    if !left.is_empty() {
        bail!(
            "the tests left network namespaces behind: {} (remove with `ip netns del NAME`)",
            left.join(" ")
        );
    }
    crate::fuzz::smoke()
}

/// fmt and clippy on fuzz/, its own workspace (cargo-fuzz's layout) that the workspace
/// commands above do not reach. Clippy checks the same Rust code cargo-fuzz builds, without
/// its instrumentation flags (they change nothing clippy sees) and without compiling
/// libFuzzer's C++ (`--no-default-features` leaves out the `libfuzzer` feature of
/// fuzz/Cargo.toml), into the workspace's target dir: ~40 s of CPU cold, ~2 s warm.
fn fuzz_lints() -> Result<()> {
    let manifest = sh::workspace_root().join("fuzz/Cargo.toml");
    let manifest = manifest.to_string_lossy();
    sh::run(sh::cargo().args(["fmt", "--manifest-path", &manifest, "--all", "--check"]))?;
    sh::run(
        sh::cargo()
            .args([
                "clippy",
                "--manifest-path",
                &manifest,
                "--all-targets",
                "--no-default-features",
                "--locked",
                "--",
                "-D",
                "warnings",
            ])
            .env("CARGO_TARGET_DIR", sh::target_dir()),
    )
}

/// Crates that need a system package to build: libpcap (`pcap`), protoc (the gRPC stacks).
const NEEDS_SYSTEM_PACKAGES: &[&str] = &[
    "pcap",
    "k8s-cri",
    "containerd-client",
    "tonic",
    "tonic-build",
    "tonic-prost-build",
    "prost",
    "prost-build",
];

/// The offline library builds and links with no system package, and xtask depends on no
/// workspace crate: checked on the dependency graph, by building the offline example with
/// protoc made unreachable, and by the example's dynamic section (no libpcap).
fn offline_build() -> Result<()> {
    let tree = |args: &[&str]| -> Result<Vec<String>> {
        let out = sh::output(
            sh::cargo()
                .args(["tree", "--locked", "-e", "normal,build"])
                .args(args)
                .args(["--prefix", "none", "--format", "{p}"]),
        )?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect())
    };
    let offline = tree(&["-p", "netdiag", "--no-default-features"])?;
    let bad: Vec<&String> = offline
        .iter()
        .filter(|c| NEEDS_SYSTEM_PACKAGES.contains(&c.as_str()))
        .collect();
    if !bad.is_empty() {
        bail!("`netdiag` without default features depends on {bad:?}, which need system packages");
    }
    let xtask = tree(&["-p", "xtask"])?;
    let ours: Vec<&String> = xtask
        .iter()
        .filter(|c| c.starts_with("netdiag") || c.as_str() == "kubectl-netdiag")
        .collect();
    if !ours.is_empty() {
        bail!(
            "xtask depends on workspace crates {ours:?}: it must build before the packages exist"
        );
    }
    sh::run(
        sh::cargo()
            .args([
                "build",
                "--locked",
                "-p",
                "netdiag",
                "--no-default-features",
                "--example",
                "offline",
            ])
            .env("PROTOC", "/nonexistent/protoc-must-not-be-needed"),
    )?;
    sh::run(sh::cargo().args([
        "clippy",
        "--locked",
        "-p",
        "netdiag",
        "--no-default-features",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    sh::run(
        sh::cargo()
            .args([
                "doc",
                "--locked",
                "--no-deps",
                "-p",
                "netdiag",
                "--no-default-features",
            ])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    let example = sh::target_dir().join("debug/examples/offline");
    let needed = sh::output(std::process::Command::new("ldd").arg(&example))?;
    if needed.contains("libpcap") {
        bail!("{} links libpcap:\n{needed}", example.display());
    }
    eprintln!(
        "xtask: offline build: no pcap/protoc crates, xtask has no workspace crate, example links no libpcap"
    );
    Ok(())
}

/// `cargo package --workspace` verifies each crate against the others' .crate files through
/// a local registry whose sources cargo extracts into `$CARGO_HOME/registry/src` once per
/// name and version and never refreshes: a later run would build against the sources of an
/// earlier one (an old netdiag-wire for netdiag-analyze). Our crates are never published at
/// this version, so their extracted copies are removed before packaging.
fn forget_packaged_workspace_crates() -> Result<()> {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(home) = home else {
        return Ok(());
    };
    for kind in ["src", "cache"] {
        let Ok(registries) = std::fs::read_dir(home.join("registry").join(kind)) else {
            continue;
        };
        for registry in registries.flatten() {
            let Ok(entries) = std::fs::read_dir(registry.path()) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                // netdiag-0.1.0, netdiag-wire-0.1.0, kubectl-netdiag-0.1.0(.crate)
                let ours = name.starts_with("netdiag-") || name.starts_with("kubectl-netdiag-");
                if !ours {
                    continue;
                }
                let path = e.path();
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.with_context(|| format!("removing the stale copy {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// Named network namespaces with the prefixes our tests use (`nd?-…`).
fn our_netns() -> Result<Vec<String>> {
    let dir = std::path::Path::new("/run/netns");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for e in entries {
        let name = e?.file_name().to_string_lossy().into_owned();
        let ours = name.len() > 4
            && name.starts_with("nd")
            && name.as_bytes()[3] == b'-'
            && name.as_bytes()[2].is_ascii_lowercase();
        if ours {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}
