//! `kubectl-netdiag analyze --output json` gives byte-identical reports to the golden ones in
//! `tests/golden/`, which a reference binary wrote: every finding and every statistic on the
//! lab recordings in `testdata/` (all inputs; `pod.pcap` alone; `pod.pcap` with a 4-flow
//! cap, so eviction paths run) and on every file of the tcpdump test corpus.
//!
//! The point is refactoring for speed without loss of function: a change that alters a
//! report fails here, and either the change is wrong or the goldens are regenerated on
//! purpose, from the binary the change is measured against (normally `main`'s):
//!
//! ```text
//! git -C /work/main worktree add /tmp/golden-ref main
//! cargo build -p kubectl-netdiag --manifest-path /tmp/golden-ref/Cargo.toml
//! NETDIAG_GOLDEN_BLESS=/tmp/golden-ref/target/debug/kubectl-netdiag \
//!     cargo test -p netdiag-tests --test analyze_golden
//! git -C /work/main worktree remove /tmp/golden-ref
//! ```
//!
//! (`NETDIAG_GOLDEN_BLESS=1` takes this target dir's binary instead.) Paths in the output
//! are written relative to placeholders (`<testdata>`, `<corpus>`), so the goldens hold on
//! any checkout.

// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One `analyze` invocation.
struct Case {
    /// Names the case in the golden file.
    name: String,
    /// Arguments after `analyze --output json`.
    args: Vec<PathBuf>,
}

fn golden_dir() -> PathBuf {
    netdiag_tests::workspace_root().join("tests/golden")
}

fn testdata_cases() -> Vec<Case> {
    let root = netdiag_tests::testdata_dir();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("testdata dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("pod.pcap").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "only {} lab recordings", dirs.len());
    let mut cases = Vec::new();
    for dir in dirs {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let mut all: Vec<PathBuf> = Vec::new();
        if dir.join("resolv.conf").is_file() {
            all.extend(["--resolv-conf".into(), dir.join("resolv.conf")]);
        }
        for (role, flag) in [("pod", "--counters"), ("node", "--node-counters")] {
            let before = dir.join("counters").join(role).join("before");
            let after = dir.join("counters").join(role).join("after");
            if before.is_dir() && after.is_dir() {
                all.extend([format!("{flag}-before").into(), before]);
                all.extend([format!("{flag}-after").into(), after]);
            }
        }
        all.push(dir.join("pod.pcap"));
        if dir.join("node.pcap").is_file() {
            all.push(dir.join("node.pcap"));
        }
        cases.push(Case {
            name: format!("{name} (all inputs)"),
            args: all,
        });
        cases.push(Case {
            name: format!("{name} (pod.pcap)"),
            args: vec![dir.join("pod.pcap")],
        });
        cases.push(Case {
            name: format!("{name} (pod.pcap, --max-flows 4)"),
            args: vec!["--max-flows".into(), "4".into(), dir.join("pod.pcap")],
        });
    }
    cases
}

fn corpus_cases(dir: &Path) -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 800, "corpus has {} files", files.len());
    files
        .into_iter()
        .map(|f| Case {
            name: f
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("?")
                .to_string(),
            args: vec![f],
        })
        .collect()
}

/// Runs every case with `bin`; one section per case: its name, exit code and stdout
/// (stderr only names paths and warnings, and is left out), paths replaced by placeholders.
fn render(bin: &Path, cases: &[Case], placeholders: &[(&Path, &str)]) -> String {
    let mut out = String::new();
    for case in cases {
        let o = Command::new(bin)
            .args(["analyze", "--output", "json"])
            .args(&case.args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
        let mut stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        for (path, name) in placeholders {
            stdout = stdout.replace(&*path.to_string_lossy(), name);
        }
        let code = o.status.code().unwrap_or(-1);
        let _ = writeln!(out, "=== {} (exit {code})", case.name);
        out.push_str(&stdout);
        if !stdout.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// The first differing section, for a readable failure.
fn first_difference(golden: &str, now: &str) -> String {
    let split = |s: &str| -> Vec<String> { s.split("\n=== ").map(str::to_string).collect() };
    let (g, n) = (split(golden), split(now));
    for (a, b) in g.iter().zip(n.iter()) {
        if a != b {
            let line = a
                .lines()
                .zip(b.lines())
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            let context = |s: &str| -> String {
                s.lines()
                    .skip(line.saturating_sub(3))
                    .take(8)
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            return format!(
                "section {:?}, line {line}:\n--- golden\n{}\n--- now\n{}",
                a.lines().next().unwrap_or(""),
                context(a),
                context(b)
            );
        }
    }
    format!("{} sections in the golden file, {} now", g.len(), n.len())
}

fn check(file: &str, cases: &[Case], placeholders: &[(&Path, &str)]) {
    let path = golden_dir().join(file);
    let bless = std::env::var_os("NETDIAG_GOLDEN_BLESS");
    let ours = || netdiag_tests::netdiag_bin().expect("kubectl-netdiag binary");
    if let Some(b) = bless {
        let bin = if b == "1" { ours() } else { PathBuf::from(b) };
        let text = render(&bin, cases, placeholders);
        std::fs::create_dir_all(golden_dir()).expect("golden dir");
        std::fs::write(&path, text).expect("writing golden");
        eprintln!("wrote {} with {}", path.display(), bin.display());
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (see this test's docs to generate it)",
            path.display()
        )
    });
    let ours = ours();
    let now = render(&ours, cases, placeholders);
    assert!(
        golden == now,
        "{} differs from {}'s reports: {}",
        path.display(),
        ours.display(),
        first_difference(&golden, &now)
    );
}

#[test]
fn lab_recordings_give_the_golden_reports() {
    let testdata = netdiag_tests::testdata_dir();
    check(
        "testdata.txt",
        &testdata_cases(),
        &[(&testdata, "<testdata>")],
    );
}

#[test]
fn tcpdump_corpus_gives_the_golden_reports() {
    let Some(dir) = netdiag_tests::corpus_dir().expect("corpus") else {
        return;
    };
    check("corpus.txt", &corpus_cases(&dir), &[(&dir, "<corpus>")]);
}
