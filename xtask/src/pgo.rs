//! The kubectl-netdiag that ships (the image) and that `cargo xtask bench` measures: the
//! release build with profile-guided optimisation (PGO).
//!
//! 1. An instrumented release build (`-Cprofile-generate`).
//! 2. Training: the instrumented binary analyzes a generated capture that is *not* the
//!    benchmark's ([`TRAIN_PACKETS`] packets over [`TRAIN_FLOWS`] flows; the benchmark's
//!    has 1 000 002 over 100 000) and every capture under `testdata/`, then captures,
//!    diagnoses and watches a one-second flood over a veth (`bench live`'s lab, root),
//!    so that the live path is measured, not taken for cold code.
//! 3. `llvm-profdata merge`, from rustup's `llvm-tools`: its LLVM is rustc's (Debian's
//!    llvm-profdata is older and cannot read rustc's profiles).
//! 4. The optimised release build (`-Cprofile-use`).
//!
//! Every crate of the binary is instrumented and optimised, its dependencies too (their
//! cold code shrinks: the binary is ~13 % smaller). Instrumenting only the workspace's
//! crates through `RUSTC_WORKSPACE_WRAPPER` does not work: cargo puts the wrapper in the
//! crates' `-C metadata`, so the optimised build's symbols differ from the profile's and
//! nothing matches (measured: no change in instructions).
//!
//! The profile is kept under `target/pgo/`, keyed by the instrumented binary's digest: as
//! long as the sources are unchanged, a later call reuses it and the optimised build is
//! fresh. A plain `cargo build --release` is unaffected.

use crate::sh;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The package built.
const PACKAGE: &str = "kubectl-netdiag";
/// Packets of the training capture.
const TRAIN_PACKETS: usize = 300_000;
/// Flows of the training capture.
const TRAIN_FLOWS: usize = 7_000;

/// Builds kubectl-netdiag with PGO (training it first when its profile is not current)
/// and returns the binary: [`SHIPPED`] under the target dir, where the tests that are
/// about the binary that ships (the soak's memory bound) find it. Profiles and binaries of
/// earlier sources are removed.
///
/// Once per xtask run: `cargo xtask ci` asks for it four times (the image, then the
/// compare, ab and live smokes), and each of the three later calls, which should have
/// found everything fresh, rebuilt the workspace's crates of both builds and trained
/// again (at 5af50ea on a new machine: four profiles in one run, ~7 minutes a call; why
/// cargo found them dirty is open).
pub(crate) fn release_binary() -> Result<PathBuf> {
    static BUILT: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(b) = built.as_ref().filter(|b| b.is_file()) {
        eprintln!("xtask: pgo: built earlier in this run: {}", b.display());
        return Ok(b.clone());
    }
    let b = build_release_binary()?;
    *built = Some(b.clone());
    Ok(b)
}

/// [`release_binary`]'s work.
fn build_release_binary() -> Result<PathBuf> {
    // libpcap-dev and protoc for the build; tcpdump is not needed, trafgen is.
    crate::deps::install()?;
    let dir = sh::target_dir().join("pgo");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let raw = dir.join("raw");
    let host = sh::output(Command::new("rustc").args(["--print", "host-tuple"]))?;
    let host = host.trim();
    let instrumented = build(
        &dir,
        host,
        "generate",
        &[format!("-Cprofile-generate={}", raw.display())],
    )?;
    let profdata = llvm_profdata(host)?;
    let key = digest(&instrumented)?;
    let profile = dir.join(format!("kubectl-netdiag-{}.profdata", &key[..16]));
    if profile.is_file() {
        eprintln!(
            "xtask: pgo: the profile of this instrumented build exists: {}",
            profile.display()
        );
    } else {
        if raw.exists() {
            std::fs::remove_dir_all(&raw).with_context(|| format!("removing {}", raw.display()))?;
        }
        train(&instrumented)?;
        let partial = profile.with_extension("profdata.partial");
        sh::run(
            Command::new(&profdata)
                .args(["merge", "-o"])
                .arg(&partial)
                .arg(&raw),
        )?;
        std::fs::rename(&partial, &profile)
            .with_context(|| format!("renaming {}", partial.display()))?;
    }
    let used = digest(&profile)?;
    let use_dir = format!("use-{}", &used[..16]);
    prune(&dir, &[&profile, &dir.join(&use_dir)])?;
    let optimised = build(
        &dir,
        host,
        &use_dir,
        &[
            format!("-Cprofile-use={}", profile.display()),
            // Code the training did not reach has no profile: that is expected, not news.
            "-Cllvm-args=-pgo-warn-missing-function=false".to_owned(),
        ],
    )?;
    // The profile must name the optimised build's functions, or it changes nothing and
    // says so nowhere (instrumenting through RUSTC_WORKSPACE_WRAPPER did exactly that).
    let listed = sh::output(
        Command::new(&profdata)
            .args(["show", "--all-functions"])
            .arg(&profile),
    )?;
    let symbols = sh::output(Command::new("nm").arg(&optimised))?;
    profile_names_binary(&listed, &symbols).with_context(|| {
        format!(
            "{} does not describe {}",
            profile.display(),
            optimised.display()
        )
    })?;
    let shipped = sh::target_dir().join(SHIPPED);
    copy_binary(&optimised, &shipped)?;
    Ok(shipped)
}

/// The hot function whose symbol the profile and the optimised binary must share.
const HOT_FUNCTION: &str = "15netdiag_analyze8Analyzer9feed_from17h";

/// Whether the profile (`llvm-profdata show --all-functions`) lists [`HOT_FUNCTION`] with
/// a count and under the same mangled name (crate hash included) as `nm` shows in the
/// binary.
fn profile_names_binary(listed: &str, symbols: &str) -> Result<()> {
    let name = listed
        .lines()
        .map(str::trim)
        .find_map(|l| {
            let sym = l.strip_suffix(':')?;
            // A local function is listed as `FILE;SYMBOL`.
            let sym = sym.rsplit(';').next()?;
            sym.contains(HOT_FUNCTION).then_some(sym)
        })
        .with_context(|| format!("the profile has no {HOT_FUNCTION}…: was the training run?"))?;
    if !symbols
        .lines()
        .any(|l| l.split_whitespace().last() == Some(name))
    {
        bail!(
            "the profile's {name} is not in the binary: the two builds name their functions \
             differently (different -C metadata), so no profile entry applies"
        );
    }
    Ok(())
}

/// Where [`release_binary`] leaves the binary, under the target dir (tests/src/lib.rs
/// `netdiag_release_bin` looks there).
pub(crate) const SHIPPED: &str = "pgo/kubectl-netdiag";

/// Copies a binary to `to` through a temporary name: a copy over a running binary would
/// fail with ETXTBSY, and an interrupted copy leaves no half binary at `to`.
fn copy_binary(from: &Path, to: &Path) -> Result<()> {
    let partial = to.with_extension("partial");
    std::fs::copy(from, &partial)
        .with_context(|| format!("copying {} to {}", from.display(), partial.display()))?;
    std::fs::rename(&partial, to).with_context(|| format!("renaming {}", partial.display()))
}

/// Removes the profiles (`*.profdata`) and optimised binaries (`use-*/`) in `dir` other
/// than `keep`: each is tens of MiB, and only the current sources' are ever used again.
fn prune(dir: &Path, keep: &[&Path]) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let stale = (name.ends_with(".profdata") || name.starts_with("use-"))
            && !keep.contains(&path.as_path());
        if !stale {
            continue;
        }
        sh::remove_path(&path)?;
    }
    Ok(())
}

/// `cargo build --release --target HOST -p kubectl-netdiag` with `flags` as the rustflags
/// of every crate of the binary; returns a copy of the binary at `dir/NAME/kubectl-netdiag`
/// (the next build replaces the one cargo wrote).
///
/// With `--target`, the flags reach the crates of the binary and not the build scripts
/// and proc macros, which run during the build and are compiled once, plainly. Cargo
/// keeps rustflags out of a crate's symbol names (`-C metadata`) and in its file names,
/// so the instrumented build's profile names the optimised build's functions, and the
/// two builds' artifacts sit side by side in `target/HOST/release/` (and apart from a
/// plain `cargo build --release`'s): once both exist, neither rebuilds the other's.
fn build(dir: &Path, host: &str, name: &str, flags: &[String]) -> Result<PathBuf> {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    sh::run(
        sh::cargo()
            .current_dir(sh::workspace_root())
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                host,
                "-p",
                PACKAGE,
            ])
            // One argument per flag, whatever they contain.
            .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\u{1f}"))
            .env_remove("RUSTFLAGS"),
    )?;
    let built = sh::target_dir().join(host).join("release").join(PACKAGE);
    let copy = out.join(PACKAGE);
    copy_binary(&built, &copy)?;
    Ok(copy)
}

/// The hex SHA-256 of a file.
fn digest(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let d = crate::image::sha256(&bytes);
    Ok(d.trim_start_matches("sha256:").to_owned())
}

/// Runs the instrumented binary over the training inputs (see the module docs).
fn train(bin: &Path) -> Result<()> {
    if !sh::is_root() {
        bail!(
            "training the PGO build runs a live capture in network namespaces of its own: \
             run as root (or `cargo xtask image --binary PATH` with a binary built elsewhere)"
        );
    }
    let capture = crate::bench::generated_capture(TRAIN_PACKETS, TRAIN_FLOWS)?;
    analyze(
        bin,
        &[capture.as_os_str(), "--output".as_ref(), "json".as_ref()],
    )?;
    let testdata = sh::workspace_root().join("testdata");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&testdata)
        .with_context(|| format!("reading {}", testdata.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!("no captures under {}", testdata.display());
    }
    for d in dirs {
        let mut captures: Vec<PathBuf> = std::fs::read_dir(&d)
            .with_context(|| format!("reading {}", d.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
            .collect();
        captures.sort();
        let mut args: Vec<&std::ffi::OsStr> = captures.iter().map(|c| c.as_os_str()).collect();
        let resolv = d.join("resolv.conf");
        if resolv.is_file() {
            args.extend(["--resolv-conf".as_ref(), resolv.as_os_str()]);
        }
        analyze(bin, &args)?;
    }
    crate::benchlive::train(bin)
}

/// `bin analyze ARGS…`, its report discarded: exit 0 (nothing found) or 1 (findings).
fn analyze(bin: &Path, args: &[&std::ffi::OsStr]) -> Result<()> {
    let mut cmd = Command::new(bin);
    cmd.arg("analyze")
        .args(args)
        .stdout(std::process::Stdio::null());
    eprintln!("xtask: $ {}", sh::display(&cmd));
    let status = cmd
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    if !matches!(status.code(), Some(0 | 1)) {
        bail!("{} failed: {status}", sh::display(&cmd));
    }
    Ok(())
}

/// rustup's `llvm-profdata` (component `llvm-tools`), installed when missing.
fn llvm_profdata(host: &str) -> Result<PathBuf> {
    let sysroot = sh::output(Command::new("rustc").args(["--print", "sysroot"]))?;
    let path = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host)
        .join("bin/llvm-profdata");
    if !path.is_file() {
        sh::run(Command::new("rustup").args(["component", "add", "llvm-tools"]))
            .context("installing rustup's llvm-tools (llvm-profdata for the PGO build)")?;
    }
    if !path.is_file() {
        bail!(
            "{} is missing after `rustup component add llvm-tools`",
            path.display()
        );
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTED: &str = "Counters:\n  \
        netdiag.e1f9-cgu.02;_ZN14netdiag_pcapio4read6Reader11window_recs17h38eaE:\n    \
        Hash: 0x1\n  \
        _ZN15netdiag_analyze8Analyzer9feed_from17hd123027e9f2efc80E:\n    \
        Hash: 0x2\n";

    #[test]
    fn a_profile_matches_a_binary_with_the_same_symbol_and_no_other() {
        let same =
            "00000000001bb770 T _ZN15netdiag_analyze8Analyzer9feed_from17hd123027e9f2efc80E\n";
        assert!(profile_names_binary(LISTED, same).is_ok());
        // The RUSTC_WORKSPACE_WRAPPER build: the same function under another crate hash.
        let other =
            "00000000001bb770 T _ZN15netdiag_analyze8Analyzer9feed_from17h8ea8db00c73114f2E\n";
        let err = profile_names_binary(LISTED, other).unwrap_err();
        assert!(format!("{err:#}").contains("not in the binary"), "{err:#}");
        let empty = profile_names_binary("Counters:\n", same).unwrap_err();
        assert!(format!("{empty:#}").contains("has no"), "{empty:#}");
    }
}
