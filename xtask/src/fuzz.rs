//! `cargo xtask fuzz [TARGET] [--time S] [--runs N]`: the libFuzzer targets of `fuzz/`
//! (cargo-fuzz), one after the other, each seeded first from the tcpdump corpus, testdata
//! and the kernel; fails on the first crash and names the reproducer.
//!
//! Layout (all under `target/fuzz/`, nothing in the repo): `seeds/T` regenerated on every
//! run by the target itself (seed mode, see `fuzz/src/lib.rs`), `corpus/T` what libFuzzer
//! learnt (kept between runs), `artifacts/T` crashes, `logs/T.log` libFuzzer's output.
//! Targets are built with `cargo fuzz build -s none`: release, debug assertions and
//! overflow checks on, no sanitizer (the crates forbid `unsafe`, so ASan would only cost
//! speed). Self-contained: std and anyhow only.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Per-target seconds of the smoke run inside `cargo xtask ci`: 7 targets, ~50 s with
/// seeding. The build (~40 s of CPU after a library change; ~2 min cold) runs beside the
/// tests ([`smoke_build`]).
const SMOKE_SECONDS: u64 = 5;
/// Largest input libFuzzer makes; seeds are cut at the same length (fuzz/src/lib.rs).
const MAX_LEN: u32 = 64 * 1024;

struct Opts {
    target: Option<String>,
    seconds: Option<u64>,
    runs: Option<u64>,
    /// libFuzzer processes per target, in parallel on one corpus.
    jobs: u64,
}

/// `cargo xtask fuzz …`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut opts = Opts {
        target: None,
        seconds: None,
        runs: None,
        jobs: 1,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |what: &str| -> Result<u64> {
            let v = it.next().with_context(|| format!("{a} needs {what}"))?;
            v.parse()
                .with_context(|| format!("{a} {v:?}: not a whole number of {what}"))
        };
        match a.as_str() {
            "--time" => opts.seconds = Some(number("seconds")?),
            "--runs" => opts.runs = Some(number("executions")?),
            "--jobs" => opts.jobs = number("processes")?.max(1),
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            t if !t.starts_with('-') && opts.target.is_none() => opts.target = Some(t.to_string()),
            other => bail!("unexpected argument {other:?}\n{HELP}"),
        }
    }
    if opts.seconds.is_none() && opts.runs.is_none() {
        opts.seconds = Some(60);
    }
    fuzz(&opts)
}

const HELP: &str = "usage: cargo xtask fuzz [TARGET] [--time S] [--runs N] [--jobs J]
  every target (or TARGET), one after the other, each for S seconds (default 60) and/or
  N executions in all; fails on the first crash and prints the reproducer. --jobs J runs J
  libFuzzer processes of a target at once on one corpus (N/J executions each; the summary
  adds them up). Corpus of real captures: $NETDIAG_CORPUS or ../shared/corpus. Targets:
  see fuzz/Cargo.toml.";

/// The smoke run of `cargo xtask ci`: every target for a few seconds, by two processes on
/// one corpus (this machine's two cores; it also runs the `--jobs` path in CI).
const SMOKE: Opts = Opts {
    target: None,
    seconds: Some(SMOKE_SECONDS),
    runs: None,
    jobs: 2,
};

/// The smoke run's targets being built in the background (see [`smoke_build`]).
pub(crate) struct SmokeBuild(std::thread::JoinHandle<Result<PathBuf>>);

/// Starts building every fuzz target in the background at idle CPU and I/O priority
/// (`chrt --idle 0`, `ionice -c 3`): it takes only what the lab tests, which spend most
/// of their time waiting on the kernel's clock, leave unused, so the ~2 minutes of a cold
/// build leave `cargo xtask ci`'s critical path. Its output goes to
/// `target/fuzz/logs/build.log`, shown if it fails.
///
/// cargo-fuzz is installed first, in the foreground (a fresh machine compiles it once).
pub(crate) fn smoke_build() -> Result<SmokeBuild> {
    ensure_cargo_fuzz()?;
    Ok(SmokeBuild(std::thread::spawn(|| {
        let root = root();
        let logs = root.join("target/fuzz/logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let log = logs.join("build.log");
        build(&root, &targets(&root)?, Some(&log))
    })))
}

impl SmokeBuild {
    /// Waits for the build; returns the directory of the fuzz executables.
    pub(crate) fn wait(self) -> Result<PathBuf> {
        self.0
            .join()
            .map_err(|_| anyhow::anyhow!("the fuzz build thread panicked"))?
    }
}

/// The smoke run of `cargo xtask ci` on the executables [`smoke_build`] built in `bin_dir`.
pub(crate) fn smoke(bin_dir: &Path) -> Result<()> {
    run_targets(&SMOKE, &targets(&root())?, bin_dir)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn check(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start {}", show(cmd)))?;
    if !status.success() {
        bail!("{} failed: {status}", show(cmd));
    }
    Ok(())
}

/// Installs cargo-fuzz from crates.io (`--locked`) when `cargo fuzz` is not available.
pub(crate) fn ensure_cargo_fuzz() -> Result<()> {
    let present = cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    check(cargo().args(["install", "cargo-fuzz", "--locked"]))
}

/// The target names: the `[[bin]]` names of fuzz/Cargo.toml.
fn targets(root: &Path) -> Result<Vec<String>> {
    let path = root.join("fuzz/Cargo.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    let mut in_bin = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if let Some(v) = line.strip_prefix("name").filter(|_| in_bin) {
            let name = v
                .trim_start()
                .trim_start_matches('=')
                .trim()
                .trim_matches('"');
            out.push(name.to_string());
        }
    }
    if out.is_empty() {
        bail!("no [[bin]] fuzz target in {}", path.display());
    }
    Ok(out)
}

/// Where seeds come from: the tcpdump corpus, testdata, the kernel fixtures, the committed
/// netlink replies.
fn seed_sources(root: &Path) -> Result<Vec<PathBuf>> {
    let corpus = match std::env::var_os("NETDIAG_CORPUS") {
        Some(p) => PathBuf::from(p),
        None => root.join("../shared/corpus"),
    };
    let mut from = Vec::new();
    if corpus.is_dir() {
        from.push(corpus);
    } else if std::env::var("CI").as_deref() == Ok("true") {
        bail!(
            "CI=true and no tcpdump corpus at {} (set NETDIAG_CORPUS)",
            corpus.display()
        );
    } else {
        eprintln!(
            "xtask: warning: no tcpdump corpus at {} (set NETDIAG_CORPUS): seeding from testdata only",
            corpus.display()
        );
    }
    from.extend(
        ["testdata", "crates/kernel/fixtures", "fuzz/seeds"]
            .iter()
            .map(|d| root.join(d)),
    );
    Ok(from)
}

fn fuzz(opts: &Opts) -> Result<()> {
    let root = root();
    let all = targets(&root)?;
    let chosen: Vec<String> = match &opts.target {
        Some(t) if all.contains(t) => vec![t.clone()],
        Some(t) => bail!("no fuzz target {t:?}; targets: {}", all.join(" ")),
        None => all,
    };
    let bin_dir = build(&root, &chosen, None)?;
    run_targets(opts, &chosen, &bin_dir)
}

/// Builds `chosen` (`cargo fuzz build -s none`, installing cargo-fuzz first if needed);
/// returns the directory of the executables. With `log`, at idle CPU and I/O priority and
/// with the output in that file (printed if the build fails).
fn build(root: &Path, chosen: &[String], log: Option<&Path>) -> Result<PathBuf> {
    ensure_cargo_fuzz()?;
    let started = Instant::now();
    // cargo-fuzz builds into `$CARGO_TARGET_DIR` when set, else the fuzz crate's own
    // target/. In the background always the latter: a shared target dir's lock would
    // make the tests' cargo wait for this idle-priority build.
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(_) if log.is_none() => crate::sh::target_dir(),
        _ => root.join("fuzz/target"),
    };
    let mut build = match log {
        Some(_) => {
            let mut c = Command::new("chrt");
            c.args(["--idle", "0", "ionice", "-c", "3"])
                .arg(cargo().get_program())
                .env("CARGO_TARGET_DIR", &target);
            c
        }
        None => cargo(),
    };
    // cargo-fuzz passes -Z flags to rustc; RUSTC_BOOTSTRAP lets the stable toolchain take them.
    build
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "build", "-s", "none"]);
    if let [one] = chosen {
        build.arg(one);
    }
    match log {
        None => check(&mut build)?,
        Some(log) => {
            let file = std::fs::File::create(log)
                .with_context(|| format!("creating {}", log.display()))?;
            build.stdout(file.try_clone()?).stderr(file);
            eprintln!(
                "xtask: $ {}  (in the background; log: {})",
                show(&build),
                log.display()
            );
            let status = build
                .status()
                .with_context(|| format!("could not start {}", show(&build)))?;
            if !status.success() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                for l in text.lines() {
                    eprintln!("  | {l}");
                }
                bail!("{} failed: {status}; log {}", show(&build), log.display());
            }
        }
    }
    eprintln!(
        "xtask: fuzz targets built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(target.join("x86_64-unknown-linux-gnu/release"))
}

/// Seeds and fuzzes each of `chosen`, built in `bin_dir`; prints the summary.
fn run_targets(opts: &Opts, chosen: &[String], bin_dir: &Path) -> Result<()> {
    let root = root();
    let work = root.join("target/fuzz");
    let from = seed_sources(&root)?;
    let mut summary = Vec::new();
    for t in chosen {
        summary.push(fuzz_one(&bin_dir.join(t), t, &work, &from, opts)?);
    }
    eprintln!("xtask: fuzz summary (0 crashes):");
    for line in summary {
        eprintln!("  {line}");
    }
    Ok(())
}

/// Seeds, then fuzzes one target; returns its summary line.
fn fuzz_one(bin: &Path, t: &str, work: &Path, from: &[PathBuf], opts: &Opts) -> Result<String> {
    let seeds = work.join("seeds").join(t);
    let corpus = work.join("corpus").join(t);
    let artifacts = work.join("artifacts").join(t);
    let logs = work.join("logs");
    if seeds.exists() {
        std::fs::remove_dir_all(&seeds).with_context(|| format!("clearing {}", seeds.display()))?;
    }
    for d in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let joined = std::env::join_paths(from).context("seed source paths")?;
    check(
        Command::new(bin)
            .env("NETDIAG_FUZZ_SEEDS_OUT", &seeds)
            .env("NETDIAG_FUZZ_SEEDS_FROM", &joined)
            .arg("-runs=0"),
    )?;

    let before = crash_files(&artifacts)?;
    let started = Instant::now();
    let mut running = Vec::new();
    for j in 0..opts.jobs {
        let log = if opts.jobs == 1 {
            logs.join(format!("{t}.log"))
        } else {
            logs.join(format!("{t}.{j}.log"))
        };
        let mut cmd = Command::new(bin);
        cmd.arg(&corpus)
            .arg(&seeds)
            .arg(format!("-max_len={MAX_LEN}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1");
        if let Some(s) = opts.seconds {
            cmd.arg(format!("-max_total_time={s}"));
        }
        if let Some(n) = opts.runs {
            cmd.arg(format!("-runs={}", n.div_ceil(opts.jobs)));
        }
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdout(file.try_clone()?).stderr(file);
        eprintln!("xtask: $ {}  (log: {})", show(&cmd), log.display());
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start {}", show(&cmd)))?;
        running.push((child, log, show(&cmd)));
    }
    let mut execs = 0;
    let mut peak_mb = 0;
    let mut failed = None;
    for (mut child, log, shown) in running {
        let status = child
            .wait()
            .with_context(|| format!("waiting for {shown}"))?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let stat = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        execs += stat("stat::number_of_executed_units:");
        peak_mb = peak_mb.max(stat("stat::peak_rss_mb:"));
        if !status.success() && failed.is_none() {
            failed = Some((status, log, text));
        }
    }
    let new: Vec<PathBuf> = crash_files(&artifacts)?
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    if failed.is_some() || !new.is_empty() {
        let (status, log, text) = match failed {
            Some((status, log, text)) => (status.to_string(), log, text),
            None => (
                "a reproducer was written".to_owned(),
                logs.join(format!("{t}.log")),
                String::new(),
            ),
        };
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        for l in tail.iter().rev() {
            eprintln!("  | {l}");
        }
        let repro = new
            .iter()
            .map(|p| {
                format!(
                    "  reproducer: {}\n  replay:     {} {}",
                    p.display(),
                    bin.display(),
                    p.display()
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        bail!(
            "fuzz target {t} failed ({status}); log {}\n{repro}",
            log.display()
        );
    }
    // A run that executed nothing (a process that exited at once, a log without stats)
    // proves nothing.
    if execs == 0 {
        bail!(
            "fuzz target {t}: libFuzzer reported no executions; see the logs in {}",
            logs.display()
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let corpus_n = std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
    let by = if opts.jobs > 1 {
        format!(" by {} processes", opts.jobs)
    } else {
        String::new()
    };
    Ok(format!(
        "{t}: {execs} executions in {secs:.0} s{by} ({:.0}/s), 0 crashes, corpus {corpus_n}, peak RSS {peak_mb} MB",
        execs as f64 / secs.max(0.001),
    ))
}

/// The crash, timeout, OOM and leak reproducers libFuzzer left in `dir`.
fn crash_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if ["crash-", "timeout-", "oom-", "leak-"]
            .iter()
            .any(|k| name.starts_with(k))
        {
            out.push(p);
        }
    }
    Ok(out)
}
