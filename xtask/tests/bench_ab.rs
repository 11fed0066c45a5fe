//! `cargo xtask bench ab` end to end, on stand-in binaries: two scripts that print a
//! report whatever they are asked, so no release build is needed.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch directory of its own per test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("xtask-ab-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// An executable that prints `report` as `analyze --output json` would, taking long
    /// enough for `/usr/bin/time`'s 10 ms steps.
    fn analyzer(&self, name: &str, report: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, format!("#!/bin/sh\nsleep 0.15\necho '{report}'\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn capture(&self) -> PathBuf {
        let p = self.0.join("tiny.pcap");
        std::fs::write(&p, b"not read by the stand-ins").unwrap();
        p
    }

    /// `xtask bench ab ARGS`, its target dir in the scratch directory.
    fn ab(&self, args: &[&Path]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["bench", "ab"])
            .args(args)
            .env("CARGO_TARGET_DIR", self.0.join("target"))
            .output()
            .unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn ab_of_one_binary_twice_finds_identical_reports_and_prints_the_ratios() {
    let s = Scratch::new("same");
    let bin = s.analyzer("netdiag", r#"{"findings":[]}"#);
    let pcap = s.capture();
    let out = s.ab(&[
        &bin,
        &bin,
        Path::new("--runs"),
        Path::new("3"),
        Path::new("--file"),
        &pcap,
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("3 runs of each"), "{stdout}");
    let ratio = stdout
        .lines()
        .find(|l| l.starts_with("NEW/OLD"))
        .unwrap_or_else(|| panic!("no ratio line:\n{stdout}"));
    // The same binary: wall about the same (a sleep), whatever the machine does.
    let wall: f64 = ratio
        .split_whitespace()
        .nth(1)
        .and_then(|r| r.strip_suffix('x'))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no wall ratio in {ratio:?}"));
    assert!((0.5..2.0).contains(&wall), "{ratio}");
    assert!(
        stdout.contains("reports: byte-identical (8 runs)"),
        "{stdout}"
    );
    // Four runs of each: one untimed, three timed.
    assert_eq!(stderr.matches("/usr/bin/time -v").count(), 8, "{stderr}");
}

#[test]
fn ab_of_binaries_whose_reports_differ_fails_with_2_unless_allowed() {
    let s = Scratch::new("differ");
    let old = s.analyzer("old", r#"{"findings":[]}"#);
    let new = s.analyzer("new", r#"{"findings":[1]}"#);
    let pcap = s.capture();
    let base = [
        old.as_path(),
        &new,
        Path::new("--runs"),
        Path::new("1"),
        Path::new("--file"),
        &pcap,
    ];
    let out = s.ab(&base);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.contains("REPORTS DIFFER"), "{stdout}");
    assert!(stderr.contains("bench ab: reports differ"), "{stderr}");
    assert!(
        stdout.contains("NEW/OLD"),
        "the figures come first: {stdout}"
    );

    let mut allowed = base.to_vec();
    allowed.push(Path::new("--allow-different"));
    let out = s.ab(&allowed);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("REPORTS DIFFER"));
}

#[test]
fn ab_names_what_is_wrong_and_exits_2() {
    let s = Scratch::new("errors");
    let bin = s.analyzer("netdiag", "{}");
    let missing = s.0.join("missing.pcap");
    for (args, says) in [
        (
            vec![Path::new("no-such-revision-xyz"), &bin],
            "OLD \"no-such-revision-xyz\" is neither an executable file nor a revision",
        ),
        (
            vec![bin.as_path(), &bin, Path::new("--file"), &missing],
            "no such file",
        ),
        (vec![bin.as_path()], "exactly two"),
    ] {
        let out = s.ab(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
