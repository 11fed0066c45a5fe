//! Issue 11's command-line habits, through the real binary: `analyze -` reads a capture
//! from standard input and reports exactly what `analyze FILE` reports; `-` twice and a
//! directory are refused with one clear message (no OS error said twice); `-o` is
//! `--output`; setns refused to root in a child user namespace says why; without a
//! default route, capture chooses tcpdump's interface and says so.

// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn bin() -> PathBuf {
    netdiag_tests::netdiag_bin().expect("kubectl-netdiag binary (cargo build -p kubectl-netdiag)")
}

fn analyze(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(bin())
        .arg("analyze")
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl-netdiag");
    if let Some(bytes) = stdin {
        let mut w = child.stdin.take().expect("stdin");
        w.write_all(bytes).expect("write stdin");
    }
    child.wait_with_output().expect("wait")
}

/// The report's text with the source name (the file's path, or `<stdin>`) taken out.
fn without_name(out: &[u8], name: &str) -> String {
    String::from_utf8_lossy(out).replace(name, "SOURCE")
}

#[test]
fn analyze_stdin_gives_the_same_report_as_the_file() {
    let dir = netdiag_tests::testdata_dir();
    let mut compared = 0;
    for rel in [
        "dns_ndots/pod.pcap",
        "accept_overflow_syn/pod.pcap",
        "overlay/dns_ndots-underlay.pcap",
    ] {
        let path = dir.join(rel);
        let p = path.display().to_string();
        let bytes = std::fs::read(&path).expect("read capture");
        for format in ["human", "json"] {
            let file = analyze(&[&p, "-o", format], None);
            let piped = analyze(&["-", "--output", format], Some(&bytes));
            assert_eq!(file.status.code(), piped.status.code(), "{rel} {format}");
            assert!(
                matches!(file.status.code(), Some(0 | 1)),
                "{rel}: {}",
                String::from_utf8_lossy(&file.stderr)
            );
            assert_eq!(
                without_name(&file.stdout, &p),
                without_name(&piped.stdout, "<stdin>"),
                "{rel} {format}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 6);
}

#[test]
fn stdin_twice_and_a_directory_are_refused_once() {
    let twice = analyze(&["-", "-"], Some(b""));
    assert_eq!(twice.status.code(), Some(2));
    let err = String::from_utf8_lossy(&twice.stderr);
    assert!(
        err.contains("standard input") && err.contains("more than once"),
        "{err}"
    );

    let dir = std::env::temp_dir();
    let d = dir.display().to_string();
    let out = analyze(&[&d], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a directory"), "{err}");
    assert!(!err.contains("os error 21"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn an_os_error_is_named_once() {
    let missing = std::env::temp_dir().join(format!("nd-missing-{}.pcap", std::process::id()));
    let out = analyze(&[&missing.display().to_string()], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("os error 2)").count(), 1, "{err}");
}

#[test]
fn short_o_is_output_on_every_command() {
    for sub in ["analyze", "diagnose", "counters", "pods"] {
        let out = Command::new(bin())
            .args([sub, "--help"])
            .output()
            .expect("help");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("-o, --output"), "{sub}: {help}");
    }
}

/// Root only: from a child user namespace (`unshare -Ur`), entering a netns that belongs
/// to the initial user namespace fails with EPERM although we are "root"; the error must
/// say so, not "run as root".
#[test]
fn setns_eperm_in_a_child_user_namespace_names_the_user_namespace() {
    if !netdiag_tests::require_root(
        "setns_eperm_in_a_child_user_namespace_names_the_user_namespace",
    )
    .expect("root check")
    {
        return;
    }
    let name = format!("tunnels-userns-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .expect("ip netns add");
    assert!(ok.success());
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _del = Del(name.clone());
    let out = Command::new("unshare")
        .arg("-Ur")
        .arg(bin())
        .args(["counters", "--netns", &format!("/run/netns/{name}")])
        .output()
        .expect("unshare -Ur kubectl-netdiag");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("another user namespace"), "{err}");
    assert!(!err.contains("run as root on the node"), "{err}");
}

/// Root only: in a namespace without a default route, `capture` picks the interface
/// tcpdump picks without `-i` (the first UP non-loopback one) and says so.
#[test]
fn no_default_route_falls_back_to_tcpdumps_interface() {
    if !netdiag_tests::require_root("no_default_route_falls_back_to_tcpdumps_interface")
        .expect("root check")
    {
        return;
    }
    let name = format!("tunnels-fb-{}", std::process::id());
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    assert!(
        Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip")
            .success()
    );
    let _del = Del(name.clone());
    for args in [
        &["link", "add", "a0", "type", "veth", "peer", "name", "b0"][..],
        &["link", "set", "a0", "up"],
        &["link", "set", "b0", "up"],
        &["link", "set", "lo", "up"],
    ] {
        let ok = Command::new("ip")
            .args(["-n", &name])
            .args(args)
            .status()
            .expect("ip");
        assert!(ok.success(), "ip {args:?}");
    }
    let tcpdump = Command::new("ip")
        .args([
            "netns",
            "exec",
            &name,
            // Long enough for a loaded machine to start it (it says where it listens
            // at once; 1 s was not always enough under CI load).
            "timeout",
            "5",
            "tcpdump",
            "-n",
            "-w",
            "/dev/null",
        ])
        .output()
        .expect("tcpdump");
    let said = String::from_utf8_lossy(&tcpdump.stderr);
    let theirs = said
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or_else(|| panic!("tcpdump said {said}"))
        .to_owned();
    let ours = Command::new(bin())
        .args(["capture", "--netns", &format!("/run/netns/{name}")])
        .args(["-w", "/dev/null", "--duration", "1"])
        .output()
        .expect("kubectl-netdiag capture");
    let err = String::from_utf8_lossy(&ours.stderr);
    assert_eq!(ours.status.code(), Some(0), "{err}");
    assert!(err.contains("no default route"), "{err}");
    assert!(
        err.contains(&format!("capturing on {theirs} in")),
        "tcpdump chose {theirs}: {err}"
    );
}
