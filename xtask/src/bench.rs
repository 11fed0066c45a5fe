//! `cargo xtask bench wire|analyze|compare`.
//!
//! - `wire [FILTER]`, `analyze [FILTER]`: the criterion benches of `benches/` (header
//!   slicing vs etherparse; the whole analyzer beside raw parsing), FILTER passed to
//!   criterion. `analyze` then prints the scale ratio: cost per packet at 1M concurrent
//!   flows over the cost at 1k (criterion medians), when this run measured `analyze-scale`.
//! - `compare [PACKETS] [ROUNDS]`: the user's view (BENCH.md "Whole process"): one
//!   generated pcap (default 2 000 000 packets, 100 000 flows), page-cached, then in each
//!   of ROUNDS rounds (default 5) one after another `kubectl-netdiag analyze` and
//!   `tcpdump -n -r … -w /dev/null` (the read floor), and once `tshark -n -r … -q -z
//!   expert` (seconds a run), each under `/usr/bin/time -v`; prints the medians (packets
//!   per wall-second and per CPU-second, max RSS) and the ratios to ours, then issue 10's
//!   goal 2 as measured.
//! - `ab OLD NEW …`: two builds of ours side by side on the same capture (see
//!   [`crate::benchab`]).
//! - `smoke`: every command above once, small and quick, as `cargo xtask ci` runs them
//!   (see [`smoke`]).

use crate::sh;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Packets of the generated capture `compare` and `ab` read, unless told otherwise.
pub(crate) const DEFAULT_PACKETS: usize = 2_000_000;
/// Concurrent flows of the generated capture.
pub(crate) const DEFAULT_FLOWS: usize = 100_000;
/// The package of the CLI whose `analyze` is measured.
pub(crate) const CLI_PACKAGE: &str = "kubectl-netdiag";

pub(crate) fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("wire") => {
            let started = std::time::SystemTime::now();
            criterion("wire", &filter(args))?;
            wire_ratios(started)
        }
        Some("analyze") => {
            let started = std::time::SystemTime::now();
            criterion("analyze", &filter(args))?;
            scale_ratio(started)
        }
        Some("live") => crate::benchlive::run(&args[1..]),
        Some("smoke") => smoke(),
        Some("ab") => crate::benchab::run(&args[1..]),
        Some("compare") => {
            let number = |i: usize, what: &str, default: usize| -> Result<usize> {
                match args.get(i) {
                    Some(n) => n.parse().with_context(|| format!("{what} {n:?}")),
                    None => Ok(default),
                }
            };
            compare(
                number(1, "PACKETS", DEFAULT_PACKETS)?,
                number(2, "ROUNDS", 5)?.max(1),
            )
        }
        _ => bail!(
            "usage: cargo xtask bench wire|analyze [FILTER] | compare [PACKETS] [ROUNDS] | live [SECONDS] [ROUNDS] | ab OLD NEW [--runs N] [--packets P --flows F | --file PCAP] [--allow-different] | smoke"
        ),
    }
}

/// Packets of the capture [`smoke`] analyzes.
const SMOKE_PACKETS: usize = 20_000;

/// `cargo xtask bench smoke`: every bench command once, small, so that none of them rots
/// unnoticed between the long runs whose figures go in the notes (CI runs this):
/// - the criterion benches in test mode (each function once), whose setups assert that
///   every contender gives the same digest and every buffer holds every packet;
/// - `compare` on a generated capture of [`SMOKE_PACKETS`] packets, one round;
/// - `ab` of the release binary that ships (the PGO build) against itself, two runs a
///   side on the same capture: the reports must be byte-identical, i.e. the analysis is
///   deterministic (the DNS thread and the read-ahead thread included);
/// - `live` for one second, one round (root).
///
/// No figure is checked against a goal: runs this short measure nothing.
pub(crate) fn smoke() -> Result<()> {
    for bench in ["wire", "analyze"] {
        criterion(bench, &["--test"])?;
    }
    compare(SMOKE_PACKETS, 1)?;
    let bin = crate::pgo::release_binary()?;
    let bin = bin.to_str().context("non-UTF-8 path")?.to_owned();
    let packets = SMOKE_PACKETS.to_string();
    crate::benchab::run(&[
        bin.clone(),
        bin,
        "--packets".into(),
        packets,
        "--runs".into(),
        "2".into(),
    ])?;
    crate::benchlive::run(&["1".into(), "1".into()])
}

/// The criterion filter `bench wire|analyze [FILTER]` was given, as criterion's arguments.
fn filter(args: &[String]) -> Vec<&str> {
    args.get(1).map(String::as_str).into_iter().collect()
}

/// `cargo bench -p netdiag-benches --bench BENCH [-- ARGS]` (ARGS are criterion's: a
/// filter, `--test`).
fn criterion(bench: &str, args: &[&str]) -> Result<()> {
    let mut cmd = sh::cargo();
    cmd.current_dir(sh::workspace_root()).args([
        "bench",
        "--locked",
        "-p",
        "netdiag-benches",
        "--bench",
        bench,
    ]);
    if !args.is_empty() {
        cmd.arg("--").args(args);
    }
    sh::run(&mut cmd)
}

/// Criterion's median time per element (ns per packet) of `group/function`, from the
/// run just made (`target/criterion/<group>/<function>/new/`, written after `since`).
fn criterion_ns_per_element(
    group: &str,
    function: &str,
    since: std::time::SystemTime,
) -> Result<Option<f64>> {
    let dir = sh::target_dir()
        .join("criterion")
        .join(group)
        .join(function)
        .join("new");
    let read = |f: &str| -> Result<serde_json::Value> {
        let p = dir.join(f);
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
    };
    // An older result (a filter left the group out of this run) is not this run's figure.
    let fresh = std::fs::metadata(dir.join("estimates.json"))
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    if !fresh {
        return Ok(None);
    }
    let median_ns = read("estimates.json")?["median"]["point_estimate"]
        .as_f64()
        .context("no median in estimates.json")?;
    let elements = read("benchmark.json")?["throughput"]["Elements"]
        .as_f64()
        .context("no Elements throughput in benchmark.json")?;
    Ok(Some(median_ns / elements.max(1.0)))
}

/// Issue 10, goal 4: analysis cost per packet at 1M concurrent flows against 1k.
fn scale_ratio(since: std::time::SystemTime) -> Result<()> {
    let (Some(small), Some(large)) = (
        criterion_ns_per_element("analyze-scale", "1k-flows", since)?,
        criterion_ns_per_element("analyze-scale", "1M-flows", since)?,
    ) else {
        println!("(analyze-scale did not run in this run: no scale ratio)");
        return Ok(());
    };
    println!();
    println!("analysis cost per packet, every flow open at once (criterion medians, this run):");
    println!("  1k flows  {small:8.1} ns/packet");
    println!("  1M flows  {large:8.1} ns/packet");
    println!(
        "  ratio 1M/1k {:.2}x (goal: at most 2x)",
        large / small.max(1e-9)
    );
    Ok(())
}

/// The corpora of the `wire-contiguous` groups, as `benches/benches/wire.rs` names them.
const WIRE_CORPORA: [&str; 5] = [
    "mix-1k-flows",
    "mix-100k-flows",
    "mix-1M-flows",
    "testdata",
    "tcpdump-corpus-ethernet",
];

/// Issue 10, goal 3: ours against etherparse `SlicedPacket` over one contiguous buffer
/// per corpus, with the walk floor both pay (the record walk and each packet's first
/// bytes) and the ratio of what each spends above it: walked as a byte stream
/// (`wire-contiguous`), then with every record's place found beforehand
/// (`wire-located`).
fn wire_ratios(since: std::time::SystemTime) -> Result<()> {
    for (prefix, walk) in [
        (
            "wire-contiguous",
            "records walked in order, as a reader reads the file",
        ),
        ("wire-located", "each record's place found beforehand"),
    ] {
        let mut rows = Vec::new();
        for corpus in WIRE_CORPORA {
            let group = format!("{prefix}_{corpus}");
            let ns = |f: &str| criterion_ns_per_element(&group, f, since);
            if let (Some(ours), Some(sliced)) =
                (ns("netdiag-wire")?, ns("etherparse SlicedPacket")?)
            {
                rows.push((corpus, ours, sliced, ns("walk floor")?));
            }
        }
        if rows.is_empty() {
            println!("({prefix} did not run in this run: no ratios)");
            continue;
        }
        print!("{}", wire_table(walk, &rows));
    }
    Ok(())
}

/// Goal 3's table: per corpus (name, ours, SlicedPacket, walk floor) in ns per packet,
/// the buffer walked as `walk` says.
fn wire_table(walk: &str, rows: &[(&str, f64, f64, Option<f64>)]) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "header slicing over one contiguous buffer, {walk}, ns/packet (criterion medians, this run):"
    );
    let _ = writeln!(
        t,
        "{:<26} {:>8} {:>12} {:>8} {:>11} {:>13}",
        "corpus", "ours", "SlicedPacket", "ratio", "walk floor", "above floor"
    );
    for &(corpus, ours, sliced, floor) in rows {
        let above = floor.filter(|f| ours > *f).map_or("n/a".to_string(), |f| {
            format!("{:.2}x", (sliced - f) / (ours - f))
        });
        let floor = floor.map_or("n/a".to_string(), |f| format!("{f:.1}"));
        let _ = writeln!(
            t,
            "{corpus:<26} {ours:>8.1} {sliced:>12.1} {:>7.2}x {floor:>11} {above:>13}",
            sliced / ours.max(1e-9)
        );
    }
    let _ = writeln!(
        t,
        "(goal: ours at least 2x faster than SlicedPacket on every corpus; the walk floor is"
    );
    let _ = writeln!(
        t,
        " the same walk reading each packet's first 16 bytes, paid by both: above floor is the"
    );
    let _ = writeln!(t, " ratio of what each spends parsing)");
    t
}

/// One measured run (or the medians of several, see [`median`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Measure {
    /// What ran.
    pub(crate) tool: &'static str,
    /// Wall-clock seconds.
    pub(crate) wall_s: f64,
    /// User + system CPU seconds.
    pub(crate) cpu_s: f64,
    /// Peak resident set size.
    pub(crate) max_rss_kib: u64,
}

/// Runs `cmd` under `/usr/bin/time -v`; `ok` says which exit codes are success. Its
/// standard output goes to `stdout` when given, else it is read and dropped.
pub(crate) fn timed(
    tool: &'static str,
    cmd: &[&str],
    ok: &[i32],
    stdout: Option<&Path>,
) -> Result<Measure> {
    let mut c = Command::new("/usr/bin/time");
    c.arg("-v").args(cmd);
    if let Some(path) = stdout {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        c.stdout(file);
    }
    eprintln!("xtask: $ {}", sh::display(&c));
    let out = c
        .output()
        .with_context(|| format!("running /usr/bin/time -v {}", cmd.join(" ")))?;
    let code = out.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !ok.contains(&code) {
        bail!("{tool} exited {code}:\n{stderr}");
    }
    let field = |name: &str| -> Option<&str> {
        stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(str::trim))
    };
    let secs = |name: &str| -> Result<f64> {
        field(name)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{tool}: no {name:?} in time -v output"))
    };
    let wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss):")
        .map(parse_clock)
        .with_context(|| format!("{tool}: no wall clock in time -v output"))??;
    Ok(Measure {
        tool,
        wall_s: wall,
        cpu_s: secs("User time (seconds):")? + secs("System time (seconds):")?,
        max_rss_kib: field("Maximum resident set size (kbytes):")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
}

/// `h:mm:ss` or `m:ss.ss` → seconds.
fn parse_clock(s: &str) -> Result<f64> {
    let mut total = 0.0;
    for part in s.split(':') {
        total = total * 60.0
            + part
                .parse::<f64>()
                .with_context(|| format!("clock {s:?}"))?;
    }
    Ok(total)
}

/// The generated capture of `packets` packets over `flows` flows (`benches/examples/
/// gen_pcap.rs`), written once under `target/bench-compare/` and kept for later runs.
pub(crate) fn generated_capture(packets: usize, flows: usize) -> Result<PathBuf> {
    let dir = sh::target_dir().join("bench-compare");
    let pcap = dir.join(format!("big-{packets}p-{flows}f.pcap"));
    if pcap.is_file() {
        return Ok(pcap);
    }
    // Its own build: with `--example`, cargo builds only example targets.
    sh::run(sh::cargo().current_dir(sh::workspace_root()).args([
        "build",
        "--release",
        "-p",
        "netdiag-benches",
        "--example",
        "gen_pcap",
    ]))?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Written aside and renamed: an interrupted run leaves no short file to be reused.
    let partial = pcap.with_extension("pcap.partial");
    sh::run(
        Command::new(sh::target_dir().join("release/examples/gen_pcap"))
            .arg(&partial)
            .arg(packets.to_string())
            .arg(flows.to_string()),
    )?;
    std::fs::rename(&partial, &pcap)
        .with_context(|| format!("renaming {} to {}", partial.display(), pcap.display()))?;
    Ok(pcap)
}

/// Reads `path` once so that every timed run reads it from the page cache.
pub(crate) fn page_cache(path: &Path) -> Result<()> {
    std::fs::read(path)
        .map(drop)
        .with_context(|| format!("reading {}", path.display()))
}

/// What `/usr/bin/time` resolves (it gives seconds in hundredths): a shorter time is no
/// measurement to divide by.
const TIME_RESOLUTION_S: f64 = 0.01;

/// `a / b` as "1.23x", or "n/a" when either is below [`TIME_RESOLUTION_S`].
fn time_ratio(a: f64, b: f64) -> String {
    if a < TIME_RESOLUTION_S || b < TIME_RESOLUTION_S {
        "n/a".to_owned()
    } else {
        format!("{:.2}x", a / b)
    }
}

/// `n` per second of `s` seconds, or "n/a" when `s` is below [`TIME_RESOLUTION_S`].
fn per_second(n: f64, s: f64) -> String {
    if s < TIME_RESOLUTION_S {
        "n/a".to_owned()
    } else {
        format!("{:.0}", n / s)
    }
}

fn compare(packets: usize, rounds: usize) -> Result<()> {
    // tcpdump, tshark, time, and libpcap/protoc for the CLI's build.
    crate::deps::install()?;
    let ours_bin = crate::pgo::release_binary()?;
    let pcap = generated_capture(packets, DEFAULT_FLOWS)?;
    page_cache(&pcap)?;
    let p = pcap.to_str().context("non-UTF-8 path")?;
    let ours_bin = ours_bin.to_str().context("non-UTF-8 path")?;
    let ours_cmd = [ours_bin, "analyze", "--output", "json", p];
    let tcpdump_cmd = ["tcpdump", "-n", "-r", p, "-w", "/dev/null"];
    // Alternating rounds share whatever else the machine does; a ~0.1 s run is at the
    // mercy of one scheduling hiccup, so the table gives medians.
    let mut ours_runs = Vec::new();
    let mut tcpdump_runs = Vec::new();
    for _ in 0..rounds {
        ours_runs.push(timed("kubectl-netdiag analyze", &ours_cmd, &[0, 1], None)?);
        tcpdump_runs.push(timed("tcpdump -w /dev/null", &tcpdump_cmd, &[0], None)?);
    }
    let runs = [
        median(&ours_runs),
        median(&tcpdump_runs),
        timed(
            "tshark -z expert",
            &["tshark", "-n", "-r", p, "-q", "-z", "expert"],
            &[0],
            None,
        )?,
    ];
    let n = packets as f64;
    let ours = &runs[0];
    println!();
    println!(
        "whole process, {packets} packets ({DEFAULT_FLOWS} flows), {}; {} (tshark: one run)",
        pcap.display(),
        if rounds == 1 {
            "one round".to_owned()
        } else {
            format!("medians of {rounds} rounds")
        }
    );
    println!(
        "{:<26} {:>9} {:>9} {:>13} {:>13} {:>10} {:>12} {:>12}",
        "tool",
        "wall s",
        "CPU s",
        "pkt/wall-s",
        "pkt/CPU-s",
        "RSS MiB",
        "wall vs ours",
        "CPU vs ours"
    );
    for m in &runs {
        println!(
            "{:<26} {:>9.2} {:>9.2} {:>13} {:>13} {:>10.1} {:>12} {:>12}",
            m.tool,
            m.wall_s,
            m.cpu_s,
            per_second(n, m.wall_s),
            per_second(n, m.cpu_s),
            m.max_rss_kib as f64 / 1024.0,
            time_ratio(m.wall_s, ours.wall_s),
            time_ratio(m.cpu_s, ours.cpu_s),
        );
    }
    println!("(ratios > 1: the tool takes longer than kubectl-netdiag analyze)");
    let (floor, tshark) = (&runs[1], &runs[2]);
    println!();
    println!("issue 10, goal 2 (this run):");
    println!(
        "  ours / tcpdump read floor: {} wall, {} CPU (goal: at most 2x)",
        time_ratio(ours.wall_s, floor.wall_s),
        time_ratio(ours.cpu_s, floor.cpu_s)
    );
    println!(
        "  peak RSS {:.1} MiB (goal: at most 64 MiB)",
        ours.max_rss_kib as f64 / 1024.0
    );
    println!(
        "  tshark / ours: {} wall, {} CPU (goal: well over 20x)",
        time_ratio(tshark.wall_s, ours.wall_s),
        time_ratio(tshark.cpu_s, ours.cpu_s)
    );
    Ok(())
}

/// The median of `v` (the upper one of an even count; 0 for none).
pub(crate) fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Per field, the median of `runs` (see [`median_of`]); RSS is the largest.
pub(crate) fn median(runs: &[Measure]) -> Measure {
    Measure {
        tool: runs.first().map_or("", |m| m.tool),
        wall_s: median_of(runs.iter().map(|m| m.wall_s).collect()),
        cpu_s: median_of(runs.iter().map(|m| m.cpu_s).collect()),
        max_rss_kib: runs.iter().map(|m| m.max_rss_kib).max().unwrap_or(0),
    }
}

#[cfg(test)]
mod compare_table_tests {
    use super::{per_second, time_ratio};

    /// A time below `/usr/bin/time`'s hundredth of a second gives no rate or ratio (a
    /// 20 000-packet tcpdump run reads "0.00 s" of CPU).
    #[test]
    fn times_below_the_clock_resolution_give_no_ratio() {
        assert_eq!(time_ratio(0.03, 0.01), "3.00x");
        assert_eq!(time_ratio(0.03, 0.0), "n/a");
        assert_eq!(time_ratio(0.0, 0.03), "n/a");
        assert_eq!(per_second(20_000.0, 0.02), "1000000");
        assert_eq!(per_second(20_000.0, 0.004), "n/a");
    }
}

#[cfg(test)]
mod wire_table_tests {
    use super::wire_table;

    /// Ratios, the floor and the ratio above it, with "n/a" where there is no floor or
    /// ours is not above it.
    #[test]
    fn the_goal_3_table_gives_ratios_and_the_ratio_above_the_floor() {
        let t = wire_table(
            "walked",
            &[
                ("mix-100k-flows", 30.0, 70.0, Some(20.0)),
                ("mix-1k-flows", 110.0, 150.0, Some(115.0)),
                ("testdata", 20.0, 60.0, None),
            ],
        );
        let row = |name: &str| {
            t.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} row in\n{t}"))
                .split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            row("mix-100k-flows"),
            ["30.0", "70.0", "2.33x", "20.0", "5.00x"]
        );
        assert_eq!(
            row("mix-1k-flows"),
            ["110.0", "150.0", "1.36x", "115.0", "n/a"]
        );
        assert_eq!(row("testdata"), ["20.0", "60.0", "3.00x", "n/a", "n/a"]);
    }
}
