//! The real `kubectl-netdiag diagnose` against issue 13's reproductions, live (root):
//! started first (`--netns` for the pod, `--node-netns` for the node), the scenario's
//! traffic driven once it says "diagnosing"; each failure is reported `confirmed` (the
//! kernel's counters or sockets prove it) and nothing else is; each healthy twin yields
//! no finding.
//!
//! Needs `cargo build -p kubectl-netdiag` first. Not root: skipped with a message, or a
//! failure under `CI=true`. Every lab is torn down by `Drop`, every child killed.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use netdiag_tests::lab::scenario::{Evidence, Scenario};
use netdiag_tests::lab::{Lab, Role};
use serde_json::Value;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `diagnose` with its stderr and stdout collected by threads; killed on drop.
struct Diagnose {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<Vec<u8>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Diagnose {
    fn start(lab: &Lab, duration: Duration) -> Diagnose {
        let bin = netdiag_tests::netdiag_bin().expect("kubectl-netdiag binary");
        let mut child = Command::new(bin)
            .arg("diagnose")
            .arg("--netns")
            .arg(lab.netns_path(Role::Pod))
            .arg("--node-netns")
            .arg(lab.netns_path(Role::Node))
            .arg("--duration")
            .arg(format!("{}ms", duration.as_millis()))
            .args(["--output", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start diagnose");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        if let Some(mut e) = child.stderr.take() {
            let buf = Arc::clone(&stderr);
            threads.push(std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = e.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            }));
        }
        if let Some(mut o) = child.stdout.take() {
            let buf = Arc::clone(&stdout);
            threads.push(std::thread::spawn(move || {
                let _ = o.read_to_end(&mut buf.lock().unwrap_or_else(|p| p.into_inner()));
            }));
        }
        Diagnose {
            child,
            stderr,
            stdout,
            threads,
        }
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn wait_diagnosing(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.stderr().contains("diagnosing") {
            assert!(
                self.child.try_wait().expect("try_wait").is_none(),
                "diagnose exited early: {}",
                self.stderr()
            );
            assert!(
                Instant::now() < deadline,
                "diagnose did not start: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit (bounded) and returns (exit code, report, stderr).
    fn finish(mut self, timeout: Duration) -> (i32, Value, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "diagnose still running: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let out = std::mem::take(&mut *self.stdout.lock().unwrap_or_else(|p| p.into_inner()));
        let err = self.stderr();
        let report: Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr:\n{err}",
                String::from_utf8_lossy(&out)
            )
        });
        (status.code().unwrap_or(-1), report, err)
    }
}

impl Drop for Diagnose {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sets `s` up in a fresh lab, runs diagnose for `duration` around its trigger.
fn diagnose(s: Scenario, short: &str, duration: Duration) -> Option<(Value, Evidence, i32)> {
    let test = format!("live_more_failures_{}", s.name());
    if !netdiag_tests::require_root(&test).expect("root check") {
        return None;
    }
    let tag = format!("detect5-l{short}-{}", std::process::id());
    let lab = if s.needs_exclusive_lab() {
        Lab::up_exclusive(&tag)
    } else {
        Lab::up(&tag)
    }
    .unwrap_or_else(|e| panic!("{test}: {e:#}"));
    s.setup(&lab)
        .unwrap_or_else(|e| panic!("{test}: setup: {e:#}"));
    let mut d = Diagnose::start(&lab, duration);
    d.wait_diagnosing();
    let ev = s
        .trigger(&lab)
        .unwrap_or_else(|e| panic!("{test}: trigger: {e:#}"));
    let (code, report, stderr) = d.finish(duration + Duration::from_secs(30));
    drop(lab);
    eprintln!("{test}: exit {code}\n{ev}\nstderr:\n{stderr}\nreport:\n{report:#}");
    assert!(!stderr.contains("error"), "{test}: {stderr}");
    Some((report, ev, code))
}

fn kinds(r: &Value) -> Vec<(String, String)> {
    r["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or("?").to_owned(),
                f["confidence"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

fn check_confirmed(s: Scenario, short: &str, duration: Duration) -> Option<(Value, Evidence)> {
    let (r, ev, code) = diagnose(s, short, duration)?;
    let want = s.expect()[0];
    assert_eq!(
        kinds(&r),
        vec![(want.to_owned(), "confirmed".to_owned())],
        "{}: {ev}\n{r:#}",
        s.name()
    );
    assert_eq!(code, 1, "a confirmed finding exits 1");
    Some((r, ev))
}

fn check_healthy(s: Scenario, short: &str, duration: Duration) {
    let Some((r, ev, code)) = diagnose(s, short, duration) else {
        return;
    };
    assert!(kinds(&r).is_empty(), "{}: {ev}\n{r:#}", s.name());
    assert_eq!(code, 0);
    assert!(r["capture"]["packets"].as_u64().is_some_and(|n| n > 0));
}

#[test]
fn live_conntrack_table_full_is_confirmed_by_the_node_counters() {
    let Some((r, ev)) = check_confirmed(
        Scenario::ConntrackTableFull,
        "ctfull",
        Duration::from_secs(6),
    ) else {
        return;
    };
    assert!(ev.node_delta("conntrack.drop") > 0, "{ev}");
    let notes = r["findings"][0]["evidence"]["notes"].to_string();
    assert!(
        notes.contains("nf_conntrack_count 64 of nf_conntrack_max 64"),
        "{notes}"
    );
}

#[test]
fn live_ephemeral_port_exhaustion_is_confirmed_by_the_pods_sockets() {
    let Some((r, _)) = check_confirmed(
        Scenario::EphemeralPortExhaustion,
        "ephem",
        Duration::from_secs(4),
    ) else {
        return;
    };
    let notes = r["findings"][0]["evidence"]["notes"].to_string();
    assert!(notes.contains("TIME_WAIT 10"), "{notes}");
}

#[test]
fn live_connection_refused_is_confirmed_by_attempt_fails() {
    let Some((r, _)) = check_confirmed(
        Scenario::ConnectionRefused,
        "refused",
        Duration::from_secs(4),
    ) else {
        return;
    };
    let f = &r["findings"][0];
    assert!(
        f["summary"]
            .as_str()
            .unwrap_or("")
            .contains("10.96.0.30:80"),
        "{f:#}"
    );
}

#[test]
fn live_connection_refused_going_away_names_the_backend_going_away() {
    let Some((r, _)) = check_confirmed(
        Scenario::ConnectionRefusedGoingAway,
        "goaway",
        Duration::from_secs(5),
    ) else {
        return;
    };
    assert!(
        r["findings"][0]["remedy"]
            .as_str()
            .unwrap_or("")
            .contains("preStop")
    );
}

#[test]
fn live_syn_queue_overflow_is_confirmed_and_names_the_syn_queue() {
    let Some((r, _)) = check_confirmed(Scenario::SynQueueOverflow, "synq", Duration::from_secs(7))
    else {
        return;
    };
    let f = &r["findings"][0];
    assert!(
        f["summary"].as_str().unwrap_or("").contains("SYN queue"),
        "{f:#}"
    );
    assert!(
        f["evidence"]["counters"]
            .to_string()
            .contains("TCPReqQFullDrop")
    );
}

#[test]
fn live_nat_idle_timeout_is_confirmed_by_the_node_timeout() {
    let Some((r, _)) = check_confirmed(Scenario::NatIdleTimeout, "idle", Duration::from_secs(10))
    else {
        return;
    };
    let notes = r["findings"][0]["evidence"]["notes"].to_string();
    assert!(notes.contains("no keepalive timer"), "{notes}");
}

#[test]
fn live_healthy_short_connections_yield_nothing() {
    check_healthy(
        Scenario::HealthyShortConnections,
        "short",
        Duration::from_secs(4),
    );
}

#[test]
fn live_healthy_refused_once_yields_nothing() {
    check_healthy(Scenario::HealthyRefusedOnce, "once", Duration::from_secs(3));
}

#[test]
fn live_healthy_idle_yields_nothing() {
    check_healthy(Scenario::HealthyIdle, "hidle", Duration::from_secs(10));
}
