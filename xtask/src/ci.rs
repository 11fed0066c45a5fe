//! `cargo xtask ci`: what CI runs, in the order that fails fastest: fmt, clippy (the
//! workspace, then fuzz/), doc, package, build, test, a bench smoke run, a fuzz smoke run.

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
    // Cold, each verify reuses what the earlier ones built (k8s-cri, containerd-client,
    // regex, pcap are compiled once) only while every crate alone asks the same features
    // and profile of a shared dependency: nix and libc in Cargo.toml, the build-dependencies
    // of netdiag-cri and netdiag-capture, the profile in .cargo/config.toml.
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
    // The fuzz targets build at idle priority while the tests run (see smoke_build); the
    // build is waited for whatever the tests did, so no cargo outlives xtask.
    let fuzz_build = crate::fuzz::smoke_build()?;
    let tests = run_tests();
    let fuzz_built = fuzz_build.wait();
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
    // Every bench command once, small: they must keep working between the long runs.
    crate::bench::smoke()?;
    crate::fuzz::smoke(&fuzz_built?)
}

/// Test binaries that spend minutes waiting on the kernel's clock, not on the CPU (a
/// 3-minute watch of an intermittent fault, a soak): they run beside the others instead
/// of after them, which keeps `cargo xtask ci` within its budget on a 2-core machine.
const BESIDE: &[&str] = &["watch_lab"];

/// Test binaries with labs that hold the machine-wide lab lock exclusively (they lower
/// the global `nf_conntrack_max`): they wait while any other lab runs, so they run last,
/// after [`BESIDE`]'s minutes of shared labs are over, not blocked behind them.
const LAST: &[&str] = &["lab_more_failures", "live_more_failures"];

/// Test binaries whose tests each build a lab of their own (their own namespaces, nothing
/// global changed) and then mostly wait on the clock of the run they test: `diagnose
/// --duration`, `watch --for`, glibc's 5 s resolver retry. live_cli's 31 tests take 143 s
/// one at a time and ~9 s of CPU in all: they run this many at a time instead of libtest's
/// default of one per core (70 s → 38 s on 2 cores).
const WAITING: &[(&str, usize)] = &[("live_cli", 4)];

/// The arguments a test binary runs with: `--test-threads` for [`WAITING`], else none.
fn test_args(name: &str) -> Vec<String> {
    WAITING
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, threads)| vec![format!("--test-threads={threads}")])
        .unwrap_or_default()
}

/// One test executable cargo built.
struct TestExe {
    name: String,
    exe: std::path::PathBuf,
    /// Its package's directory: cargo runs each test binary there.
    dir: std::path::PathBuf,
}

/// What `cargo test --workspace --no-fail-fast` does, with [`BESIDE`] run in parallel:
/// every test target is built first (cargo reports each executable), the waiting ones
/// start, the rest run one after the other in [`run_order`], then the doc tests. Every
/// failure is collected; the result fails if any binary failed.
fn run_tests() -> Result<()> {
    let mut cmd = sh::cargo();
    cmd.args([
        "test",
        "--workspace",
        "--locked",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ])
    .stdout(std::process::Stdio::piped());
    eprintln!("xtask: $ {}", sh::display(&cmd));
    let out = cmd.output().context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the tests failed: {}", out.status);
    }
    let mut exes = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" || v["profile"]["test"] != true {
            continue;
        }
        let (Some(exe), Some(name), Some(manifest)) = (
            v["executable"].as_str(),
            v["target"]["name"].as_str(),
            v["manifest_path"].as_str(),
        ) else {
            continue;
        };
        let dir = std::path::Path::new(manifest)
            .parent()
            .context("a manifest path without a directory")?;
        exes.push(TestExe {
            name: name.to_owned(),
            exe: exe.into(),
            dir: dir.to_path_buf(),
        });
    }
    if exes.is_empty() {
        bail!("cargo built no test executable");
    }
    let (beside, mut rest): (Vec<_>, Vec<_>) = exes
        .into_iter()
        .partition(|t| BESIDE.contains(&t.name.as_str()));
    rest.sort_by(|a, b| run_order(&a.name, &b.name));
    let mut running = Vec::new();
    for t in &beside {
        eprintln!("xtask: running {} beside the others", t.name);
        let child = std::process::Command::new(&t.exe)
            .current_dir(&t.dir)
            .spawn()
            .with_context(|| format!("starting {}", t.exe.display()))?;
        running.push((t, child));
    }
    let mut failed = Vec::new();
    for t in &rest {
        let args = test_args(&t.name);
        eprintln!(
            "xtask: test {} ({}{}{})",
            t.name,
            t.exe.display(),
            if args.is_empty() { "" } else { " " },
            args.join(" ")
        );
        let started = std::time::Instant::now();
        let ok = std::process::Command::new(&t.exe)
            .args(&args)
            .current_dir(&t.dir)
            .status()
            .with_context(|| format!("starting {}", t.exe.display()))?
            .success();
        eprintln!("xtask: ({} s) test {}", started.elapsed().as_secs(), t.name);
        if !ok {
            failed.push(t.name.clone());
        }
    }
    if sh::run(sh::cargo().args(["test", "--workspace", "--locked", "--doc"])).is_err() {
        failed.push("doc tests".to_owned());
    }
    for (t, mut child) in running {
        let ok = child
            .wait()
            .with_context(|| format!("waiting for {}", t.name))?
            .success();
        if !ok {
            failed.push(t.name.clone());
        }
    }
    if !failed.is_empty() {
        bail!("test binaries failed: {}", failed.join(", "));
    }
    Ok(())
}

/// The order the test binaries run in: by name, [`LAST`] at the end (in its own order).
/// Cargo reports the executables in an order that changes from build to build, and which
/// binaries run beside [`BESIDE`] is then a matter of chance; sorted, every run overlaps
/// the same ones.
fn run_order(a: &str, b: &str) -> std::cmp::Ordering {
    let last = |n: &str| LAST.iter().position(|l| *l == n);
    last(a).cmp(&last(b)).then_with(|| a.cmp(b))
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

/// The workspace crates `cargo package` verifies against each other.
const PACKAGED: &[&str] = &[
    "netdiag-wire",
    "netdiag-pcapio",
    "netdiag-analyze",
    "netdiag-netns",
    "netdiag-kernel",
    "netdiag-capture",
    "netdiag-cri",
    "netdiag",
    "kubectl-netdiag",
];

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
    // The verify builds share the workspace's target dir, and cargo treats a registry
    // crate as immutable: an rlib built from an earlier run's netdiag-analyze 0.1.0
    // (overlay registry, same name, version and source) is reused as fresh, whatever the
    // new .crate holds. Clean the dev-profile artifacts of our packaged crates too.
    for p in PACKAGED {
        sh::run(sh::cargo().args(["clean", "--profile", "dev", "-p", p]))?;
    }
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
                sh::remove_path(&e.path())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_binaries_run_more_tests_at_a_time_and_the_others_libtests_default() {
        assert_eq!(test_args("live_cli"), ["--test-threads=4"]);
        assert!(test_args("pcapio_roundtrip").is_empty());
        assert!(test_args("live_cli_more").is_empty());
        // BESIDE binaries are started apart from this list; LAST ones hold the lab lock
        // exclusively, so more threads would only wait.
        for (name, _) in WAITING {
            assert!(!BESIDE.contains(name) && !LAST.contains(name), "{name}");
        }
    }

    #[test]
    fn binaries_run_by_name_with_the_exclusive_labs_last() {
        let mut names = vec![
            "live_more_failures",
            "watch_lab",
            "lab_more_failures",
            "xtask",
            "analyze_cli",
            "overlay_lab",
            "lab_scenarios",
        ];
        names.sort_by(|a, b| run_order(a, b));
        assert_eq!(
            names,
            [
                "analyze_cli",
                "lab_scenarios",
                "overlay_lab",
                "watch_lab",
                "xtask",
                "lab_more_failures",
                "live_more_failures",
            ]
        );
    }
}
