//! `netdiag-lab`: the drivers behind `cargo xtask lab …`, `cargo xtask node …`,
//! `cargo xtask demo` and `cargo xtask soak` (root).
//!
//! They live here, in the test harness's package, rather than in xtask: xtask depends on no
//! workspace crate (it must build on a fresh machine before it installs the Debian packages
//! that these crates need), installs the packages, builds this binary with cargo and runs it.

mod demo;
mod lab;
mod node;
mod soak;

use anyhow::{Result, bail};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("netdiag-lab: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<()> {
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => {
            bail!(
                "usage: netdiag-lab lab …|node …|demo [--keep]|soak [--minutes N]   (run through `cargo xtask`)"
            )
        }
    };
    match cmd {
        "lab" => lab::run(rest),
        "node" => node::run(rest),
        "demo" => demo::run(rest),
        "soak" => soak::run(rest),
        other => bail!("unknown netdiag-lab command {other:?}: lab, node, demo or soak"),
    }
}
