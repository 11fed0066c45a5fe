//! Root tests of `kubectl-netdiag watch` (issue 12) in the lab, on the real kernel:
//!
//! - one 3-minute watch of a pod whose glibc lookups (every 200 ms) lose one AAAA reply
//!   in about twenty (iptables `statistic --mode random`), beside healthy HTTP: every lost
//!   reply is one episode, reported once, with a pcapng whose commented packets are that
//!   episode's evidence and nothing else; no other finding; a real Prometheus scrapes
//!   `--metrics` and its query API returns the findings counter; a run during which the
//!   wall clock stepped (this VM restored from a snapshot) runs again, since its capture
//!   times are not the time that passed (`lab::clock`);
//! - `watch --netns` whose pod is deleted mid-run (veth gone, netns unmounted): exit 2,
//!   every file complete;
//! - the soak, short (150 s): bounded RSS, no late growth, `--max-files` holds.
//!
//! Not root: skipped with a message, or a failure under `CI=true`.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use anyhow::{Context, Result, bail};
use netdiag_tests::lab::clock::ClockWatch;
use netdiag_tests::lab::intermittent::{self, Lookup};
use netdiag_tests::lab::soak;
use netdiag_tests::lab::{self, Lab, Role};
use netdiag_tests::prometheus::{Prometheus, free_port};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const KIND: &str = "dns_lost_reply_timeout";

fn bin() -> PathBuf {
    netdiag_tests::netdiag_bin().expect("kubectl-netdiag built")
}

/// A running `watch`: its JSON lines and stderr collected as they come; killed (by its
/// PID) on drop if still running.
struct Watch {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<(Instant, Value)>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Watch {
    fn spawn(args: &[&std::ffi::OsStr]) -> Watch {
        let mut cmd = Command::new(bin());
        cmd.arg("watch")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        eprintln!("$ {}", netdiag_tests::sh::display(&cmd));
        let mut child = cmd.spawn().expect("start kubectl-netdiag watch");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let l2 = Arc::clone(&lines);
        let r1 = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("watch -o json printed a non-JSON line ({e}): {line}")
                });
                l2.lock().unwrap().push((Instant::now(), v));
            }
        });
        let e2 = Arc::clone(&stderr);
        let r2 = std::thread::spawn(move || {
            let mut r = BufReader::new(err);
            let mut buf = String::new();
            while r.read_line(&mut buf).map(|n| n > 0).unwrap_or(false) {
                e2.lock().unwrap().push_str(&buf);
                buf.clear();
            }
        });
        Watch {
            child: Some(child),
            lines,
            stderr,
            readers: vec![r1, r2],
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn episodes(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Waits until stderr contains `what`.
    fn wait_stderr(&self, what: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(what) {
            assert!(
                Instant::now() < deadline,
                "watch did not say {what:?} within {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the exit (at most `timeout`), then for the readers.
    fn finish(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("not finished yet");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait for watch") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "watch did not end within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        for r in self.readers.drain(..) {
            r.join().expect("reader thread");
        }
        status
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What tshark says of one packet of an episode file.
#[derive(Debug)]
struct Frame {
    number: u64,
    epoch_ns: u64,
    src: String,
    srcport: u16,
    dst: String,
    dstport: u16,
    dns_id: Option<u16>,
    qname: String,
    qtype: Option<u16>,
    response: bool,
    comment: String,
}

fn epoch_ns(s: &str) -> u64 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<9}");
    secs.parse::<u64>().unwrap() * 1_000_000_000 + frac[..9].parse::<u64>().unwrap()
}

/// Every packet of `file` (tshark's fields), and tshark's complaints on stderr.
fn tshark_frames(file: &Path) -> (Vec<Frame>, String) {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=\t",
            "-E",
            "occurrence=f",
            "-e",
            "frame.number",
            "-e",
            "frame.time_epoch",
            "-e",
            "ip.src",
            "-e",
            "udp.srcport",
            "-e",
            "ip.dst",
            "-e",
            "udp.dstport",
            "-e",
            "dns.id",
            "-e",
            "dns.qry.name",
            "-e",
            "dns.qry.type",
            "-e",
            "dns.flags.response",
            "-e",
            "frame.comment",
        ])
        .output()
        .expect("run tshark");
    let err: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("Running as user"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(out.status.success(), "tshark -r {}: {err}", file.display());
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let get = |i: usize| f.get(i).copied().unwrap_or("");
            Frame {
                number: get(0).parse().unwrap(),
                epoch_ns: epoch_ns(get(1)),
                src: get(2).into(),
                srcport: get(3).parse().unwrap_or(0),
                dst: get(4).into(),
                dstport: get(5).parse().unwrap_or(0),
                dns_id: u16::from_str_radix(get(6).trim_start_matches("0x"), 16).ok(),
                qname: get(7).into(),
                qtype: get(8).parse().ok(),
                response: matches!(get(9), "1" | "True"),
                comment: get(10).into(),
            }
        })
        .collect();
    (frames, err)
}

/// The section comments of `file` (capinfos).
fn section_comments(file: &Path) -> Vec<String> {
    let out = Command::new("capinfos")
        .arg(file)
        .output()
        .expect("run capinfos");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Capture comment:"))
        .map(|c| c.trim().to_owned())
        .collect()
}

/// Checks one episode line and its file; returns the client socket (`ip:port`).
/// `traffic_until` is when the workload was told to stop (ns since the epoch): after it
/// only the lookups in flight send packets, so an episode whose evidence ends then may
/// have nothing after it to record.
fn check_episode(ep: &Value, traffic_until: u64) -> Result<String> {
    let n = &ep["episode"];
    if ep["kind"] != KIND {
        bail!("episode {n} is a {}, not {KIND}: {ep}", ep["kind"]);
    }
    let flows = ep["flows"].as_array().context("flows")?;
    if flows.len() != 1 {
        bail!("episode {n}: want one flow, got {flows:?}");
    }
    let flow = flows[0].as_str().context("flow text")?;
    // "10.244.1.10:34189 -> 172.31.0.2:53/udp"
    let client = flow.split(" -> ").next().context("flow client")?.to_owned();
    if flow != format!("{client} -> {}:53/udp", lab::EXT_IP) {
        bail!("episode {n}: unexpected flow {flow}");
    }
    let (cip, cport) = client.rsplit_once(':').context("client port")?;
    let cport: u16 = cport.parse()?;
    if ep["names"] != serde_json::json!([intermittent_name()]) {
        bail!("episode {n}: names {}", ep["names"]);
    }
    let file = PathBuf::from(ep["file"].as_str().context("episode without a file")?);
    let (frames, complaints) = tshark_frames(&file);
    if !complaints.is_empty() {
        bail!("tshark complains about {}: {complaints}", file.display());
    }
    let evidence: Vec<&Value> = ep["evidence"]["packets"]
        .as_array()
        .context("evidence packets")?
        .iter()
        .collect();
    let want: BTreeSet<u64> = evidence
        .iter()
        .map(|p| p["number"].as_u64().unwrap())
        .collect();
    let commented: Vec<&Frame> = frames.iter().filter(|f| !f.comment.is_empty()).collect();
    let got: BTreeSet<u64> = commented.iter().map(|f| f.number).collect();
    if got != want || commented.len() != evidence.len() {
        bail!(
            "{}: commented frames {got:?}, the JSON's evidence {want:?}",
            file.display()
        );
    }
    // The evidence: the A/AAAA pair and the A answer on the client's socket, the AAAA
    // re-sent with its ID; every comment names this kind, and the role the JSON gives.
    let mut ids: BTreeMap<u16, Vec<&Frame>> = BTreeMap::new();
    for (f, e) in commented.iter().zip(evidence.iter()) {
        let role = e["role"].as_str().unwrap_or("");
        if f.comment
            != format!(
                "netdiag: {KIND} ({}): {role}",
                ep["confidence"].as_str().unwrap()
            )
        {
            bail!(
                "{} frame {}: comment {:?}, role {role:?}",
                file.display(),
                f.number,
                f.comment
            );
        }
        if f.qname != intermittent_name() {
            bail!("{} frame {}: name {:?}", file.display(), f.number, f.qname);
        }
        let (peer, port) = if f.response {
            ((&f.dst, f.dstport), (&f.src, f.srcport))
        } else {
            ((&f.src, f.srcport), (&f.dst, f.dstport))
        };
        if (peer.0.as_str(), peer.1) != (cip, cport) || port.1 != 53 {
            bail!(
                "{} frame {}: not on {client}: {f:?}",
                file.display(),
                f.number
            );
        }
        ids.entry(f.dns_id.context("no DNS ID")?)
            .or_default()
            .push(f);
    }
    // Two IDs: the A's (query and answer) and the AAAA's (query and its same-ID re-send,
    // never answered in the evidence).
    let kinds: BTreeMap<u16, (usize, usize, Option<u16>)> = ids
        .iter()
        .map(|(id, fs)| {
            (
                *id,
                (
                    fs.iter().filter(|f| !f.response).count(),
                    fs.iter().filter(|f| f.response).count(),
                    fs[0].qtype,
                ),
            )
        })
        .collect();
    let shape: BTreeSet<(usize, usize, Option<u16>)> = kinds.values().copied().collect();
    let want_shape: BTreeSet<_> = [(1, 1, Some(1)), (2, 0, Some(28))].into();
    if shape != want_shape {
        bail!("{}: evidence by ID {kinds:?}", file.display());
    }
    // first_ns/last_ns are the first and last evidence packets' capture times.
    let first = commented.iter().map(|f| f.epoch_ns).min().unwrap();
    let last = commented.iter().map(|f| f.epoch_ns).max().unwrap();
    if ep["first_ns"].as_u64() != Some(first) || ep["last_ns"].as_u64() != Some(last) {
        bail!(
            "{}: evidence spans {first}..{last}, the JSON says {}..{}",
            file.display(),
            ep["first_ns"],
            ep["last_ns"]
        );
    }
    // Packets before the first and after the last evidence packet (the flight recorder).
    // The HTTP side sends some 20 responses a second while the workload runs, so a
    // second of it always lies after evidence that ends before the stop.
    let (fmin, fmax) = (
        frames.iter().map(|f| f.epoch_ns).min().unwrap(),
        frames.iter().map(|f| f.epoch_ns).max().unwrap(),
    );
    let traffic_after = last + 1_000_000_000 < traffic_until;
    if fmin >= first || (traffic_after && fmax <= last) {
        bail!(
            "{}: the file spans {fmin}..{fmax}, not beyond the evidence {first}..{last}",
            file.display()
        );
    }
    // No other finding anywhere in the file.
    let comments = section_comments(&file);
    if !comments
        .first()
        .is_some_and(|c| c.starts_with(&format!("netdiag watch: {KIND} (")))
    {
        bail!("{}: section comments {comments:?}", file.display());
    }
    Ok(client)
}

/// Every delayed lookup beside the episode that starts nearest to it, for a failure
/// message: which lookups went without an episode, and whether theirs came late.
fn lookups_and_episodes(delayed: &[&Lookup], clients: &[(u64, String)]) -> String {
    let mut text = format!(
        "{} delayed lookups (start ns, took, nearest episode's start - lookup's start):",
        delayed.len()
    );
    for l in delayed {
        let nearest = clients
            .iter()
            .map(|(first, _)| *first as i128 - l.start_ns as i128)
            .min_by_key(|d| d.abs());
        let nearest = nearest.map_or_else(
            || "none".to_owned(),
            |d| format!("{:+.3} s", d as f64 / 1e9),
        );
        text.push_str(&format!(
            "\n  {} {:.3} s {nearest}",
            l.start_ns,
            l.elapsed.as_secs_f64()
        ));
    }
    text
}

fn intermittent_name() -> &'static str {
    netdiag_tests::lab::scenario::DNS_NAME
}

/// How long the fault runs inside the 3-minute watch: every lookup (one that loses
/// three replies takes 15 s) and its episode (settled 3 s after its last evidence
/// packet, handed out at the next 2-s tick) are done well before `--for` ends, so the
/// count is exact: no lost reply falls in the last seconds, where its re-send would
/// come after the capture ended.
const FAULT_FOR: Duration = Duration::from_secs(140);
const WATCH_FOR: Duration = Duration::from_secs(180);

/// One 3-minute watch of the intermittent fault, and what the assertions look at. The lab
/// and Prometheus stay up until it is dropped (fields drop in this order).
struct ThreeMinutes {
    prom: Prometheus,
    out_dir: PathBuf,
    stats: intermittent::Stats,
    drops: u64,
    traffic_until: u64,
    status: ExitStatus,
    stderr: String,
    episodes: Vec<Value>,
    lab: Lab,
}

fn watch_three_minutes(test: &str) -> ThreeMinutes {
    let lab = Lab::up("watchlab-3m").expect("lab up");
    let out_dir = lab.scratch().join("episodes");
    let port = free_port().expect("a free port");
    let metrics = format!("127.0.0.1:{port}");
    let prom = Prometheus::start("watchlab-3m", &metrics).expect("prometheus");
    let pod_ns = lab.netns_path(Role::Pod);
    let node_ns = lab.netns_path(Role::Node);
    let for_ = format!("{}s", WATCH_FOR.as_secs());
    let mut watch = Watch::spawn(&[
        "--netns".as_ref(),
        pod_ns.as_os_str(),
        "--node-netns".as_ref(),
        node_ns.as_os_str(),
        "--for".as_ref(),
        for_.as_ref(),
        "--out".as_ref(),
        out_dir.as_os_str(),
        "--metrics".as_ref(),
        metrics.as_ref(),
        "-o".as_ref(),
        "json".as_ref(),
    ]);
    watch.wait_stderr("watching", Duration::from_secs(30));
    let t0 = Instant::now();
    let work = intermittent::start(&lab, &intermittent::Config::default()).expect("workload");
    // Prometheus sees the counter while watch runs.
    let early = prom
        .wait_for(
            &format!("sum(netdiag_findings_total{{kind=\"{KIND}\"}})"),
            Duration::from_secs(90),
            |s| s.first().is_some_and(|s| s.value > 0.0),
        )
        .expect("Prometheus sees the findings counter rise during the run");
    eprintln!("{test}: Prometheus during the run: {early:?}");
    std::thread::sleep(FAULT_FOR.saturating_sub(t0.elapsed()));
    let traffic_until = intermittent::now_ns();
    let stats = work.stop();
    let drops = intermittent::drops(&lab).expect("drop counter");
    eprintln!("{test}: client: {stats}; AAAA replies dropped: {drops}");
    let status = watch.finish(WATCH_FOR + Duration::from_secs(30));
    let stderr = watch.stderr();
    eprintln!("{test}: watch stderr:\n{stderr}");
    let episodes = watch.episodes();
    ThreeMinutes {
        prom,
        out_dir,
        stats,
        drops,
        traffic_until,
        status,
        stderr,
        episodes,
        lab,
    }
}

/// How many times the 3-minute watch runs when the wall clock steps during it.
const ATTEMPTS: u32 = 2;

#[test]
fn watch_reports_every_lost_reply_once_with_its_packets_and_prometheus_counts_them() {
    let test = "watch_reports_every_lost_reply_once_with_its_packets_and_prometheus_counts_them";
    if !netdiag_tests::require_root(test).expect("root check") {
        return;
    }
    // Capture timestamps and the episodes' clock are the wall clock; the lookups' waits are
    // monotonic. A wall-clock step during the watch (this VM snapshotted and restored: CI
    // of 2026-12-03 06:21, +26.3 s) moves every later packet that far from the earlier
    // ones, and the watch's 30-s recorder drops the evidence of the lost replies in flight:
    // such a run proves nothing about the watch, so it runs again (lab/clock.rs).
    let mut attempt = 1;
    let run = loop {
        let clock = ClockWatch::start();
        let run = watch_three_minutes(test);
        let Some(moved) = clock.stepped() else {
            break run;
        };
        assert!(
            attempt < ATTEMPTS,
            "{test}: the wall clock stepped ({moved:+.1} s against the monotonic clock) in each of {attempt} runs"
        );
        // Straight to stderr: a passing test's eprintln! output is captured, and a CI log
        // should show every run made again.
        let _ = writeln!(
            std::io::stderr(),
            "{test}: the wall clock stepped {moved:+.1} s against the monotonic clock during the watch (a VM snapshot and restore, or an NTP step): running it again"
        );
        drop(run);
        attempt += 1;
    };
    let ThreeMinutes {
        prom,
        out_dir,
        stats,
        drops,
        traffic_until,
        status,
        stderr,
        episodes,
        lab,
    } = run;

    // The lab did what it says: every drop is a lookup's wait, the HTTP side was healthy.
    assert_eq!(stats.unfinished, 0, "{test}: lookups left unfinished");
    assert_eq!(stats.failed(), 0, "{test}: lookups failed: {stats}");
    assert_eq!(
        drops,
        stats.lost_replies(),
        "{test}: the drop counter and the client's waits disagree: {stats}"
    );
    assert!(
        drops >= 3,
        "{test}: only {drops} drops: the fault barely ran"
    );
    assert!(
        stats.http_errors.is_empty() && stats.http_responses > 100,
        "{test}: HTTP: {stats}; {:?}",
        stats.http_errors
    );

    // watch: exit 1 (a likely finding under the default --fail-on), a summary.
    assert_eq!(status.code(), Some(1), "{test}: exit; stderr:\n{stderr}");
    assert!(stderr.contains("duration reached"), "{test}: {stderr}");

    // Every episode is the fault, on its own lookup's socket, checked against its file.
    let mut clients = Vec::new();
    for ep in &episodes {
        let c = check_episode(ep, traffic_until).unwrap_or_else(|e| panic!("{test}: {e:#}"));
        clients.push((ep["first_ns"].as_u64().unwrap(), c));
    }
    let numbers: Vec<u64> = episodes
        .iter()
        .map(|e| e["episode"].as_u64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (1..=episodes.len() as u64).collect::<Vec<_>>(),
        "{test}: episode numbers"
    );
    // Episodes ↔ lost replies: each delayed lookup's first packets (its socket's A/AAAA
    // pair) open an episode within a second of its start (later by as much as the lookup
    // itself took longer than its timeouts: `late_ns`), and no episode is left over or
    // shared.
    let mut delayed: Vec<&Lookup> = stats
        .lookups
        .iter()
        .filter(|l| l.lost_replies() > 0)
        .collect();
    delayed.sort_by_key(|l| l.start_ns);
    let mut used = vec![false; episodes.len()];
    for l in &delayed {
        let mut m: Vec<usize> = clients
            .iter()
            .enumerate()
            .filter(|(i, (first, _))| {
                !used[*i]
                    && *first >= l.start_ns
                    && *first < l.start_ns + 1_000_000_000 + l.late_ns()
            })
            .map(|(i, _)| i)
            .collect();
        m.sort_by_key(|i| clients[*i].0);
        assert!(
            !m.is_empty(),
            "{test}: the lookup started at {} (took {:?}) has no episode; {}",
            l.start_ns,
            l.elapsed,
            lookups_and_episodes(&delayed, &clients)
        );
        used[m[0]] = true;
    }
    // A lookup that lost more than one reply re-sent its queries from new sockets (glibc's
    // third try): if that is reported, it is its own episode, starting one timeout or more
    // after the lookup, and there is at most one per further lost reply.
    let timeout_ns = netdiag_tests::lab::scenario::DNS_TIMEOUT_S * 1_000_000_000;
    for l in delayed.iter().filter(|l| l.lost_replies() > 1) {
        let mut allowed = l.lost_replies() - 1;
        for (i, (first, _)) in clients.iter().enumerate() {
            let from = l.start_ns + timeout_ns - 500_000_000;
            let to = l.start_ns + l.late_ns() + (l.lost_replies() - 1) * timeout_ns + 1_000_000_000;
            if allowed > 0 && !used[i] && (from..to).contains(first) {
                used[i] = true;
                allowed -= 1;
            }
        }
    }
    let extra: Vec<&Value> = episodes
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(e, _)| e)
        .collect();
    assert!(
        extra.is_empty(),
        "{test}: {} episodes match no lost reply: {extra:?}",
        extra.len()
    );
    assert!(
        delayed.len() <= episodes.len() && episodes.len() as u64 <= drops,
        "{test}: {} delayed lookups, {} episodes, {drops} drops",
        delayed.len(),
        episodes.len()
    );
    // Files: one per episode, nothing else in --out.
    let mut files: Vec<String> = std::fs::read_dir(&out_dir)
        .expect("read --out")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), episodes.len(), "{test}: files {files:?}");
    assert!(files.iter().all(|f| f.ends_with(".pcapng")), "{files:?}");

    // Prometheus scraped the final count while watch still ran (the last episode was
    // handed out well before --for ended).
    let total = prom
        .query_sum(&format!(
            "max_over_time(netdiag_findings_total{{kind=\"{KIND}\"}}[10m])"
        ))
        .expect("query");
    assert_eq!(
        total,
        episodes.len() as f64,
        "{test}: Prometheus's netdiag_findings_total vs episodes printed"
    );
    let packets = prom
        .query_sum("max_over_time(netdiag_capture_packets_total[10m])")
        .expect("query");
    assert!(packets > 1000.0, "{test}: packets counter {packets}");
    eprintln!(
        "{test}: {} lookups, {} delayed, {drops} AAAA replies dropped, {} episodes, \
         Prometheus findings {total}, packets {packets}",
        stats.lookups.len(),
        delayed.len(),
        episodes.len()
    );
    drop(prom);
    drop(lab);
}

/// `watch --netns` of a pod deleted mid-run (CNI DEL: veth deleted; then the netns
/// unmounted): exit 2 with a message, the files written so far complete.
#[test]
fn watch_netns_deleted_mid_run_exits_2_with_complete_files() {
    let test = "watch_netns_deleted_mid_run_exits_2_with_complete_files";
    if !netdiag_tests::require_root(test).expect("root check") {
        return;
    }
    let lab = Lab::up("watchlab-gone").expect("lab up");
    let out_dir = lab.scratch().join("episodes");
    let pod_ns = lab.netns_path(Role::Pod);
    let mut watch = Watch::spawn(&[
        "--netns".as_ref(),
        pod_ns.as_os_str(),
        "--node-netns".as_ref(),
        lab.netns_path(Role::Node).as_os_str(),
        "--for".as_ref(),
        "120s".as_ref(),
        "--out".as_ref(),
        out_dir.as_os_str(),
        "-o".as_ref(),
        "json".as_ref(),
    ]);
    watch.wait_stderr("watching", Duration::from_secs(30));
    let cfg = intermittent::Config {
        drop_probability: 0.3,
        http_every: None,
        ..intermittent::Config::default()
    };
    let work = intermittent::start(&lab, &cfg).expect("workload");
    let deadline = Instant::now() + Duration::from_secs(40);
    while watch.episodes().is_empty() {
        assert!(
            Instant::now() < deadline,
            "{test}: no episode within 40 s; stderr:\n{}",
            watch.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(work);
    let node = lab.netns(Role::Node);
    let del = lab::netns_exec(&node, &["ip", "link", "del", lab::NODE_POD_IF])
        .status()
        .expect("ip link del");
    assert!(del.success(), "{test}: deleting the pod's veth failed");
    let ns = lab.netns(Role::Pod);
    let del = Command::new("ip")
        .args(["netns", "del", &ns])
        .status()
        .expect("ip netns del");
    assert!(del.success(), "{test}: ip netns del {ns}");
    let status = watch.finish(Duration::from_secs(30));
    let stderr = watch.stderr();
    eprintln!("{test}: stderr:\n{stderr}");
    assert_eq!(status.code(), Some(2), "{test}: exit; {stderr}");
    assert!(stderr.contains("went away"), "{test}: {stderr}");
    let episodes = watch.episodes();
    assert!(!episodes.is_empty());
    let mut listed: Vec<PathBuf> = std::fs::read_dir(&out_dir)
        .expect("read --out")
        .map(|e| e.unwrap().path())
        .collect();
    listed.sort();
    let mut printed: Vec<PathBuf> = episodes
        .iter()
        .map(|e| PathBuf::from(e["file"].as_str().expect("file")))
        .collect();
    printed.sort();
    assert_eq!(
        listed, printed,
        "{test}: --out holds exactly the printed files"
    );
    for ep in &episodes {
        let file = PathBuf::from(ep["file"].as_str().expect("file"));
        let (frames, complaints) = tshark_frames(&file);
        assert!(
            complaints.is_empty(),
            "{test}: {}: {complaints}",
            file.display()
        );
        let commented: BTreeSet<u64> = frames
            .iter()
            .filter(|f| !f.comment.is_empty())
            .map(|f| f.number)
            .collect();
        let evidence: BTreeSet<u64> = ep["evidence"]["packets"]
            .as_array()
            .expect("evidence")
            .iter()
            .map(|p| p["number"].as_u64().expect("number"))
            .collect();
        assert!(!evidence.is_empty(), "{test}: {ep}");
        assert_eq!(commented, evidence, "{test}: {}", file.display());
    }
    let partial: Vec<_> = listed
        .iter()
        .filter(|p| p.extension().is_none_or(|x| x != "pcapng"))
        .collect();
    assert!(partial.is_empty(), "{test}: left in --out: {partial:?}");
    drop(lab);
}

/// The soak, short (`cargo xtask soak` runs the 10-minute one): thousands of packets per
/// second over many flows, episodes rotating through `--max-files 3`. 150 s, not one
/// minute: RSS climbs for the first ~70 s (the 30-s flight recorder filling, the
/// allocator settling), so a minute cannot tell settling from growth; beside the 3-minute
/// test above (the tests of this binary run in parallel) it adds no time to the suite.
#[test]
fn watch_soak_short_bounded_memory_and_max_files() {
    let test = "watch_soak_short_bounded_memory_and_max_files";
    if !netdiag_tests::require_root(test).expect("root check") {
        return;
    }
    let cfg = soak::SoakConfig {
        duration: Duration::from_secs(150),
        sample_every: Duration::from_secs(5),
        // 150 s is still the warm-up (tables and allocator arenas reach their working
        // size): fresh-machine runs rose 3.1 and 3.6 MiB between quarters, then held
        // (+52 KiB over the last 25 s). 4 MiB still fails a leak above ~55 KiB/s; the
        // 10-minute soak (`cargo xtask soak`) judges growth within 1 MiB.
        growth_allowance_kib: 4096,
        ..soak::SoakConfig::minutes(1)
    };
    // The bound is about the binary that ships: the PGO release build (CI builds it first).
    let Some(release) = netdiag_tests::netdiag_release_bin().expect("release binary") else {
        return;
    };
    let report = soak::run(&release, "watchlab-soak", &cfg).expect("soak run");
    eprintln!("{test}: {report}");
    for s in &report.samples {
        eprintln!(
            "  {:>4} s RSS {} KiB files {}",
            s.at.as_secs(),
            s.rss_kib,
            s.files
        );
    }
    report
        .check(&cfg)
        .unwrap_or_else(|e| panic!("{test}: {e:#}"));
}
