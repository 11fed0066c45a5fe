//! `kubectl-netdiag analyze` through the real binary: exit codes, JSON, bad input, and the
//! annotated pcapng read back by tshark.
//!
//! The binary comes from this target dir (`cargo build -p kubectl-netdiag`; `cargo xtask
//! ci` builds it before the tests).
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use netdiag_tests::TempDir;

fn bin() -> PathBuf {
    netdiag_tests::netdiag_bin().expect("kubectl-netdiag binary (cargo build -p kubectl-netdiag)")
}

fn td(rel: &str) -> String {
    netdiag_tests::testdata_dir()
        .join(rel)
        .display()
        .to_string()
}

fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("analyze")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run kubectl-netdiag")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn kinds(v: &serde_json::Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["kind"].as_str().expect("kind").to_string())
        .collect()
}

#[test]
fn exit_codes_follow_fail_on() {
    // Healthy: 0.
    let out = run(&[&td("healthy_http/pod.pcap")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A likely finding: 1 at the default threshold, 0 with --fail-on confirmed.
    let file = td("accept_overflow_syn/pod.pcap");
    assert_eq!(run(&[&file]).status.code(), Some(1));
    assert_eq!(
        run(&[&file, "--fail-on", "confirmed"]).status.code(),
        Some(0)
    );
    // A possible finding (pod-side SNAT): 0 by default, 1 with --fail-on possible.
    let snat = td("snat_exhaustion/pod.pcap");
    assert_eq!(run(&[&snat]).status.code(), Some(0));
    assert_eq!(
        run(&[&snat, "--fail-on", "possible"]).status.code(),
        Some(1)
    );
}

#[test]
fn json_report_with_counters_and_resolv_conf() {
    let d = "snat_exhaustion";
    let out = run(&[
        &td(&format!("{d}/pod.pcap")),
        &td(&format!("{d}/node.pcap")),
        "--counters-before",
        &td(&format!("{d}/counters/pod/before")),
        "--counters-after",
        &td(&format!("{d}/counters/pod/after")),
        "--node-counters-before",
        &td(&format!("{d}/counters/node/before")),
        "--node-counters-after",
        &td(&format!("{d}/counters/node/after")),
        "--output",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["schema_version"], 1);
    assert_eq!(kinds(&v), vec!["snat_port_exhaustion"]);
    let f = &v["findings"][0];
    assert_eq!(f["confidence"], "confirmed");
    assert!(
        f["evidence"]["counters"]
            .as_array()
            .expect("counters")
            .iter()
            .any(|c| c["netns"] == "node" && c["key"] == "conntrack.insert_failed")
    );
    assert_eq!(v["sources"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["counters_used"], serde_json::json!(["pod", "node"]));

    // ndots with --resolv-conf: the report states ndots, search list, amplification.
    let out = run(&[
        &td("dns_ndots/pod.pcap"),
        "--resolv-conf",
        &td("dns_ndots/resolv.conf"),
        "--output",
        "json",
    ]);
    let v = json(&out);
    assert_eq!(v["resolv_conf"]["ndots"], 5);
    assert_eq!(v["dns"]["search_from_resolv_conf"], true);
    assert_eq!(v["dns"]["amplification_factor"], 4.0);
    assert_eq!(v["findings"][0]["confidence"], "confirmed");
}

#[test]
fn bad_input_is_a_clear_error_naming_file_and_offset() {
    let s = TempDir::new("analyze-cli-bad-input").expect("scratch dir");
    let pcap = std::fs::read(td("healthy_http/pod.pcap")).expect("testdata");
    let not_capture = s.path().join("notes.txt");
    std::fs::write(&not_capture, b"hello, this is text\n").expect("write");
    let empty = s.path().join("empty.pcap");
    std::fs::write(&empty, b"").expect("write");
    let truncated = s.path().join("truncated.pcap");
    std::fs::write(&truncated, &pcap[..10]).expect("write");
    let absurd = s.path().join("absurd.pcap");
    let mut bytes = pcap[..24].to_vec();
    for v in [1u32, 2, 0xFFFF_FFF0, 0xFFFF_FFF0] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(&absurd, &bytes).expect("write");
    let missing = s.path().join("missing.pcap");
    for (file, words) in [
        (&not_capture, "not a capture"),
        (&empty, "empty"),
        (&truncated, "truncated"),
        (&absurd, "4294967280"),
        (&missing, "cannot open"),
    ] {
        let out = run(&[file.to_str().expect("utf-8 path")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", file.display());
        assert!(
            err.contains(&file.display().to_string()),
            "no file name: {err}"
        );
        assert!(err.contains("offset"), "no offset: {err}");
        assert!(err.contains(words), "expected {words:?}: {err}");
        assert!(out.stdout.is_empty(), "report printed despite the error");
    }
    // A missing counters directory is an error too.
    let out = run(&[
        &td("healthy_http/pod.pcap"),
        "--counters-before",
        s.path().join("nope").to_str().expect("utf-8"),
        "--counters-after",
        s.path().join("nope").to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

fn tshark_fields(file: &Path) -> Vec<(u64, String)> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args(["-T", "fields", "-e", "frame.number", "-e", "frame.comment"])
        .output()
        .expect("tshark installed (cargo xtask deps)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark failed: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("Running as user \"root\""))
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(errors.is_empty(), "tshark reported: {errors:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (n, c) = l.split_once('\t').unwrap_or((l, ""));
            (n.trim().parse().expect("frame number"), c.to_string())
        })
        .collect()
}

#[test]
fn annotated_pcapng_has_every_packet_and_comments_on_evidence() {
    let s = TempDir::new("analyze-cli-annotate").expect("scratch dir");
    let out_file = s.path().join("annotated.pcapng");
    let pod = td("snat_exhaustion/pod.pcap");
    let node = td("snat_exhaustion/node.pcap");
    let out = run(&[
        &pod,
        &node,
        "--output",
        "json",
        "--annotate",
        out_file.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let counts: Vec<u64> = v["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .map(|s| s["packets"].as_u64().expect("packets"))
        .collect();
    let frames = tshark_fields(&out_file);
    assert_eq!(
        frames.len() as u64,
        counts.iter().sum::<u64>(),
        "packet count differs"
    );
    // Frame numbers in the copy run on across the files in command-line order.
    let mut evidence = Vec::new();
    for f in v["findings"].as_array().expect("findings") {
        for p in f["evidence"]["packets"].as_array().expect("packets") {
            let src = p["source"].as_u64().expect("source") as usize;
            let frame = counts[..src].iter().sum::<u64>() + p["number"].as_u64().expect("number");
            evidence.push((frame, f["kind"].as_str().expect("kind").to_string()));
        }
    }
    assert!(!evidence.is_empty(), "no evidence packets to annotate");
    for (frame, kind) in &evidence {
        let (_, comment) = &frames[(*frame - 1) as usize];
        assert!(
            comment.contains(&format!("netdiag: {kind}")),
            "frame {frame}: comment {comment:?}"
        );
    }
    let commented = frames.iter().filter(|(_, c)| !c.is_empty()).count();
    assert_eq!(
        commented,
        evidence
            .iter()
            .map(|e| e.0)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
}
