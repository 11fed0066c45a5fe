//! `cargo xtask bench ab OLD NEW`: two builds of `kubectl-netdiag analyze`, side by side.
//!
//! This machine's speed drifts (up to 1.6× from minute to minute), so a wall-time claim
//! about an optimisation holds only for runs of both builds interleaved in one session:
//! after one untimed run of each, OLD, NEW, OLD, NEW … RUNS times each (11), every run
//! `analyze --output json PCAP` under `/usr/bin/time -v`, measured as `bench compare`
//! measures. Prints the medians, NEW/OLD of wall and CPU, and whether every report was
//! byte-identical: an optimisation must not change the report, so differing reports end
//! it with exit 2 unless `--allow-different`. Any other failure exits 2 as well.
//!
//! OLD and NEW are git revisions or paths of kubectl-netdiag binaries (used as they are).
//! A revision is checked out in a `git worktree` under `target/ab/` (removed afterwards,
//! also on error) and built with `cargo build --release -p kubectl-netdiag` into
//! `target/ab/target`, one target dir for both, so dependencies are built once; the
//! binary is kept as `target/ab/bin/<commit>/kubectl-netdiag` and reused by later runs.
//! The capture is `bench compare`'s generated one (`--packets`, `--flows`) or `--file`.
//! The last report of each side stays in `target/ab/old.json` and `target/ab/new.json`.

use crate::Failed;
use crate::bench::{self, CLI_PACKAGE, DEFAULT_FLOWS, DEFAULT_PACKETS, Measure};
use crate::sh;
use anyhow::{Context, Result, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const USAGE: &str = "usage: cargo xtask bench ab OLD NEW [--runs N] [--packets P --flows F | --file PCAP] [--allow-different]
  OLD, NEW  git revisions (a commit, branch, tag, HEAD~1) or paths of kubectl-netdiag binaries";

/// Runs per side unless `--runs` says otherwise.
const DEFAULT_RUNS: usize = 11;

/// The two sides, in the order they run in each round.
const SIDES: [&str; 2] = ["OLD", "NEW"];

pub(crate) fn run(args: &[String]) -> Result<()> {
    ab(args).context(Failed {
        command: "bench ab",
        code: 2,
    })
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
struct AbArgs {
    /// OLD and NEW as given.
    sides: [String; 2],
    /// Timed runs per side.
    runs: usize,
    input: Input,
    /// Differing reports are reported but do not fail the run.
    allow_different: bool,
}

/// The capture both sides analyze.
#[derive(Debug, PartialEq)]
enum Input {
    /// `bench compare`'s generated capture.
    Generated { packets: usize, flows: usize },
    /// A capture file of the user's.
    File(PathBuf),
}

fn parse(args: &[String]) -> Result<AbArgs> {
    let mut sides = Vec::new();
    let mut runs = DEFAULT_RUNS;
    let (mut packets, mut flows, mut file) = (None, None, None);
    let mut allow_different = false;
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        let mut value = || -> Result<&String> {
            i += 1;
            args.get(i - 1)
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        let number = |v: &String| -> Result<usize> {
            v.parse()
                .with_context(|| format!("{arg} {v:?}: not a whole number\n{USAGE}"))
        };
        match arg.as_str() {
            "--runs" => runs = number(value()?)?,
            "--packets" => packets = Some(number(value()?)?),
            "--flows" => flows = Some(number(value()?)?),
            "--file" => file = Some(PathBuf::from(value()?)),
            "--allow-different" => allow_different = true,
            // A revision never starts with '-'; git would take it for an option.
            other if other.starts_with('-') => bail!("unknown option {other:?}\n{USAGE}"),
            _ => sides.push(arg.clone()),
        }
    }
    let Ok(sides) = <[String; 2]>::try_from(sides) else {
        bail!("give exactly two builds, OLD and NEW\n{USAGE}");
    };
    if runs == 0 {
        bail!("--runs 0: at least one run of each is needed for a median\n{USAGE}");
    }
    let input = match (file, packets, flows) {
        (Some(f), None, None) => Input::File(f),
        (Some(_), _, _) => bail!("--file and --packets/--flows exclude each other\n{USAGE}"),
        (None, p, f) => Input::Generated {
            packets: p.unwrap_or(DEFAULT_PACKETS),
            flows: f.unwrap_or(DEFAULT_FLOWS),
        },
    };
    Ok(AbArgs {
        sides,
        runs,
        input,
        allow_different,
    })
}

/// A side as the user named it.
#[derive(Debug)]
enum Build {
    /// A binary to run as it is.
    Binary(PathBuf),
    /// A commit to build.
    Commit { given: String, hash: String },
}

impl Build {
    /// What the table calls it.
    fn label(&self) -> String {
        match self {
            Build::Binary(p) => p.display().to_string(),
            Build::Commit { given, hash } => format!("{given} ({})", short(hash)),
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// An executable file is used as it is; anything else must be a revision git knows.
fn resolve(which: &str, given: &str, root: &Path) -> Result<Build> {
    let path = Path::new(given);
    if path.is_dir() {
        bail!(
            "{which} {given:?} is a directory: give the path of a kubectl-netdiag binary or a git revision"
        );
    }
    if path.is_file() {
        let mode = std::fs::metadata(path)
            .with_context(|| format!("{which}: reading {given}"))?
            .permissions()
            .mode();
        if mode & 0o111 == 0 {
            bail!(
                "{which} {given:?} is a file but not executable: give the path of a kubectl-netdiag binary (chmod +x) or a git revision"
            );
        }
        let abs = path
            .canonicalize()
            .with_context(|| format!("{which}: resolving {given}"))?;
        return Ok(Build::Binary(abs));
    }
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{given}^{{commit}}"))
        .output()
        .context("could not run git")?;
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || hash.is_empty() {
        bail!(
            "{which} {given:?} is neither an executable file nor a revision git knows in {}: give a commit, branch or tag (see `git log --oneline`), or the path of a kubectl-netdiag binary",
            root.display()
        );
    }
    Ok(Build::Commit {
        given: given.to_owned(),
        hash,
    })
}

/// The binary to run for `build`: built from its commit (or the build kept from an
/// earlier run of that commit).
fn binary(which: &str, build: &Build, dir: &Path, root: &Path) -> Result<PathBuf> {
    let (given, hash) = match build {
        Build::Binary(p) => return Ok(p.clone()),
        Build::Commit { given, hash } => (given, hash),
    };
    let kept = dir.join("bin").join(hash).join(CLI_PACKAGE);
    if kept.is_file() {
        eprintln!(
            "xtask: {which}: {} built earlier from {} (delete it to build again)",
            kept.display(),
            short(hash)
        );
        return Ok(kept);
    }
    let tree = Worktree::add(root, &dir.join(short(hash)), hash)
        .with_context(|| format!("checking out {which} {given:?} in a git worktree"))?;
    let target = dir.join("target");
    sh::run(
        sh::cargo()
            .current_dir(&tree.path)
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--release", "-p", CLI_PACKAGE]),
    )
    .with_context(|| {
        format!(
            "building {which} {given:?} ({}) failed: mend that revision's build (missing \
             libpcap or protoc: `cargo xtask deps`), or give the path of a kubectl-netdiag \
             binary built from it",
            short(hash)
        )
    })?;
    let built = target.join("release").join(CLI_PACKAGE);
    let parent = kept.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    // Copied aside and renamed: an interrupted copy is never taken for a build.
    let partial = kept.with_extension("partial");
    std::fs::copy(&built, &partial)
        .with_context(|| format!("copying {} to {}", built.display(), partial.display()))?;
    std::fs::rename(&partial, &kept)
        .with_context(|| format!("renaming {} to {}", partial.display(), kept.display()))?;
    Ok(kept)
}

/// A detached `git worktree`, removed on drop (an error included).
struct Worktree {
    root: PathBuf,
    path: PathBuf,
}

impl Worktree {
    fn add(root: &Path, path: &Path, commit: &str) -> Result<Worktree> {
        // Left over by a run that was killed.
        if path.exists() {
            remove_worktree(root, path);
        }
        sh::run(
            Command::new("git")
                .arg("-C")
                .arg(root)
                .args(["worktree", "add", "--detach", "--quiet"])
                .arg(path)
                .arg(commit),
        )?;
        Ok(Worktree {
            root: root.to_path_buf(),
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Worktree {
    fn drop(&mut self) {
        remove_worktree(&self.root, &self.path);
    }
}

fn remove_worktree(root: &Path, path: &Path) {
    let git = |args: &[&str], path: Option<&Path>| {
        let mut c = Command::new("git");
        c.arg("-C").arg(root).args(args);
        if let Some(p) = path {
            c.arg(p);
        }
        c.status().is_ok_and(|s| s.success())
    };
    if !git(&["worktree", "remove", "--force"], Some(path)) {
        let _ = std::fs::remove_dir_all(path);
        git(&["worktree", "prune"], None);
    }
    if path.exists() {
        eprintln!(
            "xtask: warning: could not remove the worktree {}; `git worktree remove --force` it",
            path.display()
        );
    }
}

fn ab(args: &[String]) -> Result<()> {
    let a = parse(args)?;
    if !Path::new("/usr/bin/time").is_file() {
        bail!("/usr/bin/time is missing: install the Debian package time (`cargo xtask deps`)");
    }
    let root = sh::workspace_root();
    let dir = sh::target_dir().join("ab");
    // Everything the user named is checked before anything is built.
    let builds = [
        resolve(SIDES[0], &a.sides[0], &root)?,
        resolve(SIDES[1], &a.sides[1], &root)?,
    ];
    let (pcap, about) = match &a.input {
        Input::File(f) if !f.is_file() => bail!(
            "--file {}: no such file; give a capture (pcap or pcapng), or leave --file out for the generated one",
            f.display()
        ),
        Input::File(f) => (f.clone(), String::new()),
        Input::Generated { packets, flows } => (
            bench::generated_capture(*packets, *flows)?,
            format!(" ({packets} packets, {flows} flows)"),
        ),
    };
    let bins = [
        binary(SIDES[0], &builds[0], &dir, &root)?,
        binary(SIDES[1], &builds[1], &dir, &root)?,
    ];
    bench::page_cache(&pcap)?;
    let runs = alternate(&bins, &pcap, a.runs, &dir)?;
    println!();
    println!(
        "bench ab: analyze --output json {}{about}; {} runs of each, alternated (OLD first, after one untimed run of each)",
        pcap.display(),
        a.runs
    );
    print!(
        "{}",
        table([&builds[0].label(), &builds[1].label()], &runs.measures)
    );
    match &runs.difference {
        None => {
            println!("reports: byte-identical ({} runs)", 2 * (a.runs + 1));
            Ok(())
        }
        Some(what) => {
            println!("REPORTS DIFFER: {what}");
            if a.allow_different {
                Ok(())
            } else {
                bail!(
                    "reports differ: {what}; an optimisation must not change the report (pass --allow-different when the change is meant)"
                )
            }
        }
    }
}

/// The timed runs of each side and whether every report matched OLD's first.
struct Runs {
    /// Per side (OLD, NEW), one measure per round.
    measures: [Vec<Measure>; 2],
    /// The first report that differed, and where both are kept.
    difference: Option<String>,
}

fn alternate(bins: &[PathBuf; 2], pcap: &Path, runs: usize, dir: &Path) -> Result<Runs> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let reports = [dir.join("old.json"), dir.join("new.json")];
    let p = pcap.to_str().context("non-UTF-8 capture path")?;
    let mut measures = [Vec::new(), Vec::new()];
    let mut reference: Option<Vec<u8>> = None;
    let mut difference = None;
    // Round 0 is untimed: it brings the binaries into the page cache.
    for round in 0..=runs {
        for (side, name) in SIDES.iter().enumerate() {
            let bin = bins[side].to_str().context("non-UTF-8 binary path")?;
            let m = bench::timed(
                name,
                &[bin, "analyze", "--output", "json", p],
                &[0, 1],
                Some(&reports[side]),
            )
            .with_context(|| format!("{name} ({bin}) on {p}"))?;
            if round > 0 {
                measures[side].push(m);
            }
            let report = std::fs::read(&reports[side])
                .with_context(|| format!("reading {}", reports[side].display()))?;
            let Some(first) = &reference else {
                reference = Some(report);
                continue;
            };
            if difference.is_none() && *first != report {
                let (kept_first, kept_other) =
                    (dir.join("reference.json"), dir.join("differing.json"));
                std::fs::write(&kept_first, first)
                    .and_then(|()| std::fs::write(&kept_other, &report))
                    .with_context(|| {
                        format!("writing the differing reports to {}", dir.display())
                    })?;
                difference = Some(format!(
                    "{name}'s report of round {round} is not OLD's first; `diff {} {}`",
                    kept_first.display(),
                    kept_other.display()
                ));
            }
        }
    }
    Ok(Runs {
        measures,
        difference,
    })
}

/// The medians of each side, NEW/OLD of them, and the median of the per-round NEW/OLD
/// (a drift between rounds affects both runs of a round alike).
fn table(labels: [&str; 2], measures: &[Vec<Measure>; 2]) -> String {
    let [old, new] = [bench::median(&measures[0]), bench::median(&measures[1])];
    // A ratio to nothing (a run shorter than time's 10 ms step) says nothing.
    let ratio = |n: f64, o: f64| {
        if o > 0.0 {
            format!("{:.3}x", n / o)
        } else {
            "n/a".to_owned()
        }
    };
    let paired = |f: fn(&Measure) -> f64| {
        let per_round: Vec<f64> = measures[0]
            .iter()
            .zip(&measures[1])
            .filter(|(o, _)| f(o) > 0.0)
            .map(|(o, n)| f(n) / f(o))
            .collect();
        if per_round.is_empty() {
            "n/a".to_owned()
        } else {
            format!("{:.3}x", bench::median_of(per_round))
        }
    };
    let mib = |m: &Measure| m.max_rss_kib as f64 / 1024.0;
    let mut s = format!(
        "{:<8} {:>8} {:>8} {:>9} {:>11}  build\n",
        "", "wall s", "CPU s", "RSS MiB", "wall range"
    );
    let sides = [
        (&old, &measures[0], labels[0]),
        (&new, &measures[1], labels[1]),
    ];
    for (name, (m, runs, label)) in SIDES.iter().zip(sides) {
        // The spread says how much the machine drifted during the runs.
        let walls = runs.iter().map(|r| r.wall_s);
        let (low, high) = (
            walls.clone().fold(f64::INFINITY, f64::min),
            walls.fold(0.0, f64::max),
        );
        s += &format!(
            "{name:<8} {:>8.2} {:>8.2} {:>9.1} {:>11}  {label}\n",
            m.wall_s,
            m.cpu_s,
            mib(m),
            format!("{low:.2}-{high:.2}"),
        );
    }
    s += &format!(
        "{:<8} {:>8} {:>8} {:>9} {:>11}  (medians; < 1: NEW takes less)\n",
        "NEW/OLD",
        ratio(new.wall_s, old.wall_s),
        ratio(new.cpu_s, old.cpu_s),
        ratio(mib(&new), mib(&old)),
        "",
    );
    s += &format!(
        "{:<8} {:>8} {:>8} {:>9} {:>11}  (median of the {} per-round ratios)\n",
        "paired",
        paired(|m| m.wall_s),
        paired(|m| m.cpu_s),
        "",
        "",
        measures[0].len().min(measures[1].len()),
    );
    if old.wall_s < 0.1 || new.wall_s < 0.1 {
        s += "(wall under 0.1 s: /usr/bin/time counts in 10 ms steps; take a bigger capture)\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parse_defaults_to_compare_s_capture_and_eleven_runs() {
        assert_eq!(
            parse(&args("HEAD~1 HEAD")).unwrap(),
            AbArgs {
                sides: ["HEAD~1".into(), "HEAD".into()],
                runs: 11,
                input: Input::Generated {
                    packets: DEFAULT_PACKETS,
                    flows: DEFAULT_FLOWS
                },
                allow_different: false,
            }
        );
    }

    #[test]
    fn parse_takes_options_anywhere() {
        let a = parse(&args(
            "--runs 5 a --packets 1000 b --flows 10 --allow-different",
        ))
        .unwrap();
        assert_eq!(a.sides, ["a".to_owned(), "b".to_owned()]);
        assert_eq!(a.runs, 5);
        assert_eq!(
            a.input,
            Input::Generated {
                packets: 1000,
                flows: 10
            }
        );
        assert!(a.allow_different);
        let a = parse(&args("a b --file /tmp/x.pcap")).unwrap();
        assert_eq!(a.input, Input::File(PathBuf::from("/tmp/x.pcap")));
    }

    #[test]
    fn parse_refuses_what_it_cannot_honour() {
        for (line, says) in [
            ("a", "exactly two"),
            ("a b c", "exactly two"),
            ("a b --runs 0", "--runs 0"),
            ("a b --runs five", "not a whole number"),
            ("a b --runs", "needs a value"),
            ("a b --file x --packets 10", "exclude each other"),
            ("a b --file x --flows 10", "exclude each other"),
            ("a b --fast", "unknown option"),
            ("a -b", "unknown option"),
        ] {
            let e = format!("{:#}", parse(&args(line)).unwrap_err());
            assert!(e.contains(says), "{line:?}: {e}");
            assert!(e.contains("usage:"), "{line:?}: {e}");
        }
    }

    fn m(wall_s: f64, cpu_s: f64, max_rss_kib: u64) -> Measure {
        Measure {
            tool: "x",
            wall_s,
            cpu_s,
            max_rss_kib,
        }
    }

    #[test]
    fn table_gives_medians_their_ratio_and_the_paired_ratio() {
        // OLD drifts slower in round 3; the medians ignore it.
        let old = vec![m(1.0, 0.9, 1024), m(1.2, 1.0, 2048), m(3.0, 2.0, 1024)];
        let new = vec![m(0.5, 0.4, 1024), m(0.7, 0.6, 1024), m(0.6, 0.5, 1024)];
        let t = table(["HEAD~1 (abc)", "/bin/new"], &[old, new]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(!t.contains("10 ms"), "{t}");
        assert!(lines[1].starts_with("OLD"), "{t}");
        assert!(
            lines[1].contains("1.20") && lines[1].contains("1.00"),
            "{t}"
        );
        assert!(
            lines[1].contains("2.0") && lines[1].ends_with("HEAD~1 (abc)"),
            "{t}"
        );
        assert!(
            lines[2].contains("0.60") && lines[2].contains("0.50"),
            "{t}"
        );
        assert!(lines[2].ends_with("/bin/new"), "{t}");
        // 0.6/1.2, 0.5/1.0, 1.0/2.0 MiB.
        assert!(lines[3].starts_with("NEW/OLD"), "{t}");
        assert_eq!(lines[3].matches("0.500x").count(), 3, "{t}");
        // Per round 0.5, 0.583, 0.2 → 0.5; CPU 0.444, 0.6, 0.25 → 0.444.
        assert!(
            lines[4].contains("0.500x") && lines[4].contains("0.444x"),
            "{t}"
        );
        assert!(lines[4].contains("of the 3 per-round ratios"), "{t}");
    }

    #[test]
    fn table_gives_no_ratio_to_zero_and_warns_of_short_runs() {
        let zero = vec![m(0.0, 0.0, 1024)];
        let t = table(["a", "b"], &[zero.clone(), zero]);
        assert!(t.contains("n/a"), "{t}");
        assert!(!t.contains("0.000x"), "{t}");
        assert!(t.contains("10 ms steps"), "{t}");
    }

    #[test]
    fn median_of_takes_the_middle_and_the_upper_of_two() {
        assert_eq!(bench::median_of(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(bench::median_of(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(bench::median_of(Vec::new()), 0.0);
    }

    #[test]
    fn resolve_tells_a_binary_from_a_revision_and_names_what_is_neither() {
        let root = sh::workspace_root();
        assert!(matches!(
            resolve("OLD", "/bin/sh", &root).unwrap(),
            Build::Binary(_)
        ));
        let Build::Commit { hash, .. } = resolve("NEW", "HEAD", &root).unwrap() else {
            panic!("HEAD is a revision");
        };
        assert_eq!(hash.len(), 40);
        let e = format!(
            "{:#}",
            resolve("OLD", "no-such-revision-here", &root).unwrap_err()
        );
        assert!(
            e.contains("OLD \"no-such-revision-here\" is neither"),
            "{e}"
        );
        let manifest = root.join("Cargo.toml");
        let manifest = manifest.to_str().unwrap();
        let e = format!("{:#}", resolve("NEW", manifest, &root).unwrap_err());
        assert!(e.contains("not executable"), "{e}");
    }
}
