//! `cargo xtask soak [--minutes N]`: `kubectl-netdiag watch` under sustained traffic for N
//! minutes (default 10), RSS sampled every 10 s; fails unless RSS stays at most 64 MiB,
//! does not grow over the last half, and `--max-files` holds (root).

use anyhow::{Context, Result, bail};
use netdiag_tests::lab::{self, soak};

const HELP: &str =
    "usage: cargo xtask soak [--minutes N]   (netdiag-lab soak [--minutes N] [--bin PATH])
  runs `kubectl-netdiag watch` on a lab pod under sustained traffic (short TCP connections,
  UDP over many source ports, DNS for ever-new names, and AAAA replies lost at random) for
  N minutes (default 10, at least 3); samples VmRSS every 10 s; asserts RSS <= 64 MiB, no growth over
  the last half, --max-files 3 never exceeded; prints the figures. xtask passes
  --bin target/pgo/kubectl-netdiag (the bound is about the binary that ships; the
  default, the kubectl-netdiag next to netdiag-lab, is a debug build).";

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut minutes = 10;
    let mut bin: Option<std::path::PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--minutes" => {
                let v = it.next().context("--minutes needs a value")?;
                minutes = v.parse().with_context(|| format!("--minutes {v:?}"))?;
            }
            "--bin" => bin = Some(it.next().context("--bin needs a path")?.into()),
            "-h" | "--help" | "help" => {
                println!("{HELP}");
                return Ok(());
            }
            other => bail!("unknown soak argument {other:?}\n{HELP}"),
        }
    }
    if minutes < 3 {
        bail!(
            "--minutes must be at least 3: RSS climbs for the first ~70 s (the flight \
             recorder filling), so a shorter run cannot judge growth over its last half"
        );
    }
    if !netdiag_tests::is_root() {
        bail!("`cargo xtask soak` needs root (network namespaces, iptables, capture)");
    }
    ctrlc::set_handler(|| {
        eprintln!("soak: interrupted: tearing the lab down");
        lab::teardown_active();
        std::process::exit(130);
    })?;
    // By default the kubectl-netdiag next to this binary (cargo builds both there).
    let bin = match bin {
        Some(b) => b,
        None => std::env::current_exe()
            .context("current_exe")?
            .parent()
            .map(|d| d.join("kubectl-netdiag"))
            .context("no directory for netdiag-lab")?,
    };
    if !bin.is_file() {
        bail!(
            "{} not found: build it (`cargo xtask soak` does)",
            bin.display()
        );
    }
    let cfg = soak::SoakConfig::minutes(minutes);
    let report = soak::run(&bin, "soak", &cfg)?;
    println!("{report}");
    for s in &report.samples {
        println!(
            "  {:>5} s  RSS {:>6} KiB (anon {:>6}, file {:>6})  files {}  packets {:?}",
            s.at.as_secs(),
            s.rss_kib,
            s.anon_kib,
            s.file_kib,
            s.files,
            s.packets
        );
    }
    if let Some(g) = report.late_growth_kib(&cfg) {
        println!("  RSS change over the last half: {g:+} KiB");
    }
    report.check(&cfg)
}
