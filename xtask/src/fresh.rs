//! `cargo xtask fresh [--root DIR] [demo] [ci]`: the README's two commands on a fresh
//! Debian 12, as root, from a fresh clone, with none of the packages xtask installs and an
//! empty target dir and cargo home (root).
//!
//! The fresh machine is a debootstrapped Debian 12 (`minbase`, plus what a machine that
//! builds Rust has: gcc, libc6-dev, ca-certificates, git, python3; and this machine's
//! kubectl), made once in DIR (default /var/tmp/netdiag-fresh) and reused. Each run:
//! - clones this repository's HEAD into DIR/work/netdiag (what CI does);
//! - enters a private mount namespace that makes DIR its root with pivot_root (not chroot:
//!   a chrooted process may not create user namespaces, which a test needs), with /proc,
//!   /sys, /dev, an empty /run, and read-only: the Rust toolchain, and the tcpdump corpus at
//!   DIR/work/shared;
//! - purges every package xtask installs (`apt-get purge`), empties the target dir and the
//!   cargo home, and runs `cargo xtask demo`, then `CI=true bash .ci/run` (each from
//!   scratch: the packages are purged again before `ci`).
//!
//! Every mount lives in that namespace and dies with it; nothing is left on the host but
//! DIR (and the logs in DIR/root/fresh-*.log).

use crate::deps::PACKAGES;
use crate::sh;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// What the fresh machine has before xtask runs: a machine that builds Rust.
const BASE: &[&str] = &["ca-certificates", "gcc", "libc6-dev", "git", "python3"];

/// Packages of xtask's list that [`BASE`] itself depends on (gcc → binutils).
const BASE_NEEDS: &[&str] = &["binutils"];

const HELP: &str = "usage: cargo xtask fresh [--root DIR] [demo] [ci] [check]
  the README's commands on a debootstrapped Debian 12 (root; default: demo then ci;
  check: only the environment — toolchain, user namespaces, corpus)";

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut root = PathBuf::from("/var/tmp/netdiag-fresh");
    let mut jobs: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--root" => root = PathBuf::from(it.next().context("--root needs a directory")?),
            "demo" | "ci" | "check" => jobs.push(a.as_str()),
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n{HELP}"),
        }
    }
    if jobs.is_empty() {
        jobs = vec!["demo", "ci"];
    }
    if !sh::is_root() {
        bail!("`cargo xtask fresh` needs root (debootstrap, mount namespaces)");
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the repository root")?
        .to_path_buf();
    let shared = repo.join("../shared");
    rootfs(&root)?;
    let clone = root.join("work/netdiag");
    if clone.exists() {
        std::fs::remove_dir_all(&clone)
            .with_context(|| format!("removing the old clone {}", clone.display()))?;
    }
    sh::run(
        Command::new("git")
            .args(["clone", "--quiet"])
            .arg(&repo)
            .arg(&clone),
    )?;
    let head = sh::output(
        Command::new("git")
            .arg("-C")
            .arg(&clone)
            .args(["rev-parse", "HEAD"]),
    )?;
    eprintln!("xtask: fresh clone at {}", head.trim());
    std::fs::create_dir_all(root.join("work/shared"))?;

    let mut results = Vec::new();
    for job in jobs {
        let cmd = match job {
            "demo" => "cargo xtask demo",
            "ci" => "bash .ci/run",
            // The environment alone: the toolchain, user namespaces, the corpus.
            _ => {
                "cargo --version && unshare --user --map-root-user true && ls /work/shared/corpus >/dev/null && echo fresh: environment ok"
            }
        };
        let log = format!("/root/fresh-{job}.log");
        // What the base machine needs stays (gcc brings binutils, which xtask also lists).
        let purge: Vec<&str> = PACKAGES
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !BASE_NEEDS.contains(p))
            .collect();
        // Inside the new root: purge what xtask installs (prove it is not there), empty the
        // target dir and cargo home, run the job.
        let inside = format!(
            "set -e; \
             installed=$(dpkg-query -W -f='${{Package}} ${{Status}}\\n' {pkgs} 2>/dev/null | awk '/ installed$/ {{print $1}}'); \
             if [ -n \"$installed\" ]; then DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq $installed >/dev/null; fi; \
             DEBIAN_FRONTEND=noninteractive apt-get autoremove -y -qq >/dev/null; \
             apt-get update -qq; \
             DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {base} >/dev/null; \
             left=$(dpkg-query -W -f='${{Package}} ${{Status}}\\n' {pkgs} 2>/dev/null | awk '/ installed$/ {{print $1}}'); \
             if [ -n \"$left\" ]; then echo \"still installed: $left\"; exit 1; fi; \
             echo 'fresh: none of xtask'\"'\"'s packages is installed'; \
             rm -rf /root/.cargo-fresh /work/netdiag/target; \
             cd /work/netdiag; \
             set +e; {cmd} > {log} 2>&1; rc=$?; tail -n 30 {log}; exit $rc",
            pkgs = purge.join(" "),
            base = BASE.join(" "),
        );
        let started = Instant::now();
        let status = enter(&root, &shared, &inside)?;
        let secs = started.elapsed().as_secs();
        eprintln!(
            "xtask: fresh {job}: {status} in {secs} s (log: {})",
            root.join(log.trim_start_matches('/')).display()
        );
        results.push((job, status.success(), secs));
    }
    println!("fresh machine, clone {}:", head.trim());
    for (job, ok, secs) in &results {
        println!(
            "  {job}: {} in {secs} s",
            if *ok { "passed" } else { "FAILED" }
        );
    }
    if results.iter().any(|(_, ok, _)| !ok) {
        bail!("a job failed on the fresh machine");
    }
    Ok(())
}

/// Debootstraps DIR once, then keeps its CA certificates, apt sources, resolver and
/// kubectl in line with this machine's.
fn rootfs(root: &Path) -> Result<()> {
    if !root.join("etc/debian_version").exists() {
        // Not in `deps::PACKAGES`: only this command needs it, and the fresh machine not.
        crate::deps::ensure(&[("debootstrap", "/usr/sbin/debootstrap")])?;
        let mirror = host_mirror().unwrap_or_else(|| "http://deb.debian.org/debian".to_owned());
        eprintln!(
            "xtask: debootstrap bookworm into {} from {mirror}",
            root.display()
        );
        sh::run(
            Command::new("debootstrap")
                .args([
                    "--variant=minbase",
                    &format!("--include={}", BASE.join(",")),
                    "bookworm",
                ])
                .arg(root)
                .arg(&mirror),
        )?;
    }
    for (from, to) in [
        ("/etc/resolv.conf", "etc/resolv.conf"),
        (
            "/etc/apt/sources.list.d/debian.sources",
            "etc/apt/sources.list.d/debian.sources",
        ),
    ] {
        if Path::new(from).exists() {
            std::fs::copy(from, root.join(to)).with_context(|| format!("copying {from}"))?;
        }
    }
    // This machine's own CA certificates (an egress proxy's), for apt, cargo and pip.
    let cas = root.join("usr/local/share/ca-certificates");
    std::fs::create_dir_all(&cas)?;
    if let Ok(dir) = std::fs::read_dir("/usr/local/share/ca-certificates") {
        for e in dir.flatten() {
            std::fs::copy(e.path(), cas.join(e.file_name()))?;
        }
    }
    sh::run(
        Command::new("chroot")
            .arg(root)
            .args(["update-ca-certificates", "--fresh"]),
    )?;
    // kubectl is not a Debian package; this machine has it, so the fresh one does too.
    let kubectl = sh::output(Command::new("sh").args(["-c", "command -v kubectl"]))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    if !kubectl.is_empty() {
        let dest = root.join("usr/local/bin/kubectl");
        std::fs::copy(&kubectl, &dest).with_context(|| format!("copying {kubectl}"))?;
    }
    Ok(())
}

/// The first `URIs:` of this machine's Debian sources (a snapshot or a local mirror).
fn host_mirror() -> Option<String> {
    let text = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("URIs:"))
        .map(|u| u.trim().to_owned())
}

/// Runs `script` with bash as the root of a fresh mount namespace whose root is `root`.
fn enter(root: &Path, shared: &Path, script: &str) -> Result<std::process::ExitStatus> {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned());
    let rustup = std::env::var("RUSTUP_HOME").unwrap_or_else(|_| format!("{home}/.rustup"));
    let cargo_bin = std::env::var("CARGO_HOME")
        .map(|c| format!("{c}/bin"))
        .unwrap_or_else(|_| format!("{home}/.cargo/bin"));
    let r = root.to_str().context("a UTF-8 root path")?;
    let shared = shared
        .canonicalize()
        .with_context(|| format!("the shared directory {}", shared.display()))?;
    let setup = format!(
        "set -e; R='{r}'; \
         mount --rbind \"$R\" \"$R\"; \
         mount --rbind /dev \"$R/dev\"; mount --rbind /sys \"$R/sys\"; \
         mount -t proc proc \"$R/proc\"; mount -t tmpfs tmpfs \"$R/run\"; \
         mkdir -p \"$R/opt/rustup\" \"$R/opt/cargo-bin\" \"$R/work/shared\" \"$R/.oldroot\"; \
         for pair in '{rustup}:opt/rustup' '{cargo_bin}:opt/cargo-bin' '{shared}:work/shared'; do \
           src=${{pair%%:*}}; dst=\"$R/${{pair#*:}}\"; \
           mount --bind \"$src\" \"$dst\"; mount -o remount,bind,ro \"$dst\"; \
         done; \
         cd \"$R\"; pivot_root . .oldroot; cd /; umount -l /.oldroot; \
         exec env -i HOME=/root TERM=dumb CI=true \
           PATH=/opt/cargo-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
           RUSTUP_HOME=/opt/rustup CARGO_HOME=/root/.cargo-fresh \
           SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
           CARGO_HTTP_CAINFO=/etc/ssl/certs/ca-certificates.crt \
           PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
           /bin/bash -c \"$0\"",
        shared = shared.display(),
    );
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(setup)
        .arg(script)
        .status()
        .context("running unshare")
}
