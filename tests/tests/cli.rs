//! The binary answers `--help` and `--version`, directly and as a kubectl plugin.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::process::Command;

fn path_with_bin() -> std::ffi::OsString {
    let bin = netdiag_tests::netdiag_bin().expect("kubectl-netdiag built");
    let dir = bin.parent().expect("bin dir").to_path_buf();
    let mut paths = vec![dir];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).expect("PATH")
}

#[test]
fn help_lists_every_subcommand() {
    let out = Command::new(netdiag_tests::netdiag_bin().unwrap())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    for sub in [
        "analyze", "capture", "diagnose", "counters", "pods", "agent",
    ] {
        assert!(text.contains(sub), "--help does not mention {sub}:\n{text}");
    }
}

#[test]
fn version_names_the_crate_version() {
    let out = Command::new(netdiag_tests::netdiag_bin().unwrap())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim(),
        format!("kubectl-netdiag {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn kubectl_runs_the_plugin_from_path() {
    let kubectl = ["/usr/local/bin/kubectl", "/usr/bin/kubectl"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(kubectl) = kubectl else {
        assert!(
            !netdiag_tests::is_ci(),
            "kubectl is not installed and CI=true forbids skipping"
        );
        eprintln!("kubectl not installed: skipping");
        return;
    };
    let path = path_with_bin();
    // kubectl's plugin mechanism: `kubectl netdiag …` execs `kubectl-netdiag …` found on PATH.
    let out = Command::new(kubectl)
        .args(["netdiag", "--help"])
        .env("PATH", &path)
        .env("KUBECONFIG", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl netdiag --help failed: {out:?}"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Usage: kubectl-netdiag"), "{text}");
    let list = Command::new(kubectl)
        .args(["plugin", "list"])
        .env("PATH", &path)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("kubectl-netdiag"),
        "kubectl plugin list: {listed}"
    );
}

#[test]
fn unknown_subcommand_is_a_usage_error_with_exit_2() {
    let out = Command::new(netdiag_tests::netdiag_bin().unwrap())
        .arg("no-such-command")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-command"));
}
