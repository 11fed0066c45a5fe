//! `cargo xtask`: everything that needs root, setup or several tools at once.
//!
//! - `cargo xtask deps`   install the Debian packages the build and the tests need
//! - `cargo xtask ci`     deps, fmt, clippy, doc, the whole test suite (root tests included)
//! - `cargo xtask lab …`  real-kernel reproductions of the five failures (root)
//! - `cargo xtask demo`   the main job: a containerd node in a box, diagnosed by pod name
//! - `cargo xtask soak`   `watch` under sustained traffic: memory bound and --max-files
//! - `cargo xtask bench …` criterion benches, the whole-process comparison, two builds A/B
//! - `cargo xtask fuzz …` the libFuzzer targets (cargo-fuzz), seeded from real captures
//! - `cargo xtask fresh` the README's commands on a fresh Debian 12 (debootstrap)

mod bench;
mod benchab;
mod benchlive;
mod ci;
mod completions;
mod deps;
mod fresh;
mod fuzz;
mod image;
mod lab;
mod pgo;
mod sh;

use anyhow::{Result, bail};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(e.downcast_ref::<Failed>().map_or(1, |f| f.code));
    }
}

/// The outermost context of an error that ends xtask with `code` rather than 1: the
/// command that failed, which the message names first.
#[derive(Debug)]
pub(crate) struct Failed {
    /// The command, e.g. `"bench ab"`.
    pub(crate) command: &'static str,
    /// The exit code.
    pub(crate) code: i32,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.command)
    }
}

fn run(args: &[String]) -> Result<()> {
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("help", &[][..]),
    };
    match cmd {
        "deps" => deps::install(),
        "ci" => ci::run(rest),
        "lab" => lab::run("lab", rest),
        "node" => lab::run("node", rest),
        "completions" => completions::run(rest),
        "bench" => bench::run(rest),
        "demo" => lab::run("demo", rest),
        "soak" => lab::run("soak", rest),
        "image" => image::run(rest),
        "fuzz" => fuzz::run(rest),
        "fresh" => fresh::run(rest),
        "help" | "-h" | "--help" => {
            println!("{}", HELP);
            Ok(())
        }
        other => bail!("unknown xtask command {other:?}\n{HELP}"),
    }
}

const HELP: &str = "usage: cargo xtask <command>
  deps            install the Debian packages the build and tests need (root)
  ci              deps + fmt + clippy + doc + package + all tests (root tests included), no netns left
  lab …           real-kernel reproductions of the five failures; record testdata (root)
  lab node up|down  a real containerd node in a box with the demo's pods (root; alias: node)
  completions     bash/zsh/fish completions and man pages into target/dist
  bench wire|analyze [FILTER]     criterion benches (FILTER: criterion's)
  bench compare [N] [ROUNDS]      whole-process analyze vs tcpdump vs tshark (medians)
  bench ab OLD NEW [--runs N] [--packets P --flows F | --file PCAP] [--allow-different]
                  two builds (git revisions or binaries) alternated on one capture: medians, NEW/OLD, same report?
  bench live [S] [ROUNDS]  live capture under a trafgen flood: tcpdump vs capture vs diagnose vs watch (root)
  bench smoke     each bench command once, small (criterion in test mode, compare, ab of one binary, live 1 s), as ci runs them (root)
  demo [--keep]   the main job: pods on a real containerd node, diagnosed by name (root)
  soak [--minutes N]  `watch` (release build) under sustained lab traffic for N >= 3 minutes (10): RSS <= 64 MiB, no late growth, --max-files (root)
  image [--binary PATH] [--out PATH]  OCI image archive of kubectl-netdiag (PGO build, root), reproducible, no engine
  fuzz [T] [--time S] [--runs N]  libFuzzer targets of fuzz/, seeded from the corpus; fails on a crash
  fresh [--root DIR] [demo] [ci]  the README's commands on a debootstrapped Debian 12, packages purged (root)";
