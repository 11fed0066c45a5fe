//! `cargo xtask bench live [SECONDS] [ROUNDS]`: live capture under a flood, ours beside
//! tcpdump (BENCH.md "Live capture").
//!
//! Two network namespaces joined by a veth pair; `trafgen` (Debian netsniff-ng) floods
//! 60-byte UDP frames from one side for SECONDS (default 5) while one capturer at a time
//! listens on the other end:
//!
//! - `tcpdump -i IF -w /dev/null`
//! - `kubectl-netdiag capture --netns … -i IF -w /dev/null`
//! - `kubectl-netdiag diagnose --netns … -i IF`
//! - `kubectl-netdiag watch --netns … -i IF` (its drops: the kernel's and what its hand-off
//!   to the analysis could not hold)
//!
//! For each: frames offered (the veth's receive counter), captured and dropped by the kernel
//! (the capturer's own closing lines, libpcap's `pcap_stats`), CPU time (user + system from
//! `/usr/bin/time`, i.e. the child's rusage) per captured packet, and the ratios to tcpdump.
//! ROUNDS (default 1) repeats the four, rotating their order; with more than one round the
//! medians are printed last.
//!
//! Clean-up on every exit path: the namespaces are anonymous, each held by a `sleep`
//! started with `unshare --net` in our process group. The veth pair is created inside
//! them, so nothing is ever added to the root namespace, and both namespaces (with the
//! veth) vanish when their holders end: killed on return or error here, by Ctrl-C with
//! us, or by the holders' own timeout if this process is killed outright.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Sender side address, receiver side address (inside our namespaces only).
const ADDR_A: &str = "10.203.0.1";
const ADDR_B: &str = "10.203.0.2";
const MAC_A: &str = "02:00:0a:cb:00:01";
const MAC_B: &str = "02:00:0a:cb:00:02";
const IF_A: &str = "ndbla";
const IF_B: &str = "ndblb";

pub(crate) fn run(args: &[String]) -> Result<()> {
    let seconds: u64 = match args.first() {
        Some(s) => s.parse().with_context(|| format!("SECONDS {s:?}"))?,
        None => 5,
    };
    let rounds: usize = match args.get(1) {
        Some(s) => s.parse().with_context(|| format!("ROUNDS {s:?}"))?,
        None => 1,
    };
    check_tools()?;
    let ours = crate::pgo::release_binary()?;
    let conf = flood_conf()?;

    let topo = Topology::up(seconds)?;
    let mut all: Vec<Vec<Run>> = Vec::new();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..CAPTURERS).collect();
        order.rotate_left(round % CAPTURERS);
        let mut runs: Vec<Option<Run>> = vec![None; CAPTURERS];
        for i in order {
            let r = topo.measure(i, &ours, &conf, seconds)?;
            runs[i] = Some(r);
        }
        let runs: Vec<Run> = runs.into_iter().flatten().collect();
        println!();
        println!(
            "round {} of {rounds}: {seconds} s flood of 60-byte UDP over a veth",
            round + 1
        );
        print_table(&runs);
        all.push(runs);
    }
    if rounds > 1 {
        let medians: Vec<Run> = (0..CAPTURERS)
            .map(|i| {
                let col: Vec<&Run> = all.iter().map(|r| &r[i]).collect();
                Run::median(&col)
            })
            .collect();
        println!();
        println!("medians of {rounds} rounds");
        print_table(&medians);
    }
    drop(topo);
    Ok(())
}

/// The PGO build's training (`xtask/src/pgo.rs`): `bin`'s capture, diagnose and watch,
/// one after the other, each under a one-second flood.
pub(crate) fn train(bin: &Path) -> Result<()> {
    check_tools()?;
    let conf = flood_conf()?;
    let topo = Topology::up(1)?;
    for which in 1..CAPTURERS {
        topo.measure(which, bin, &conf, 1)?;
    }
    Ok(())
}

/// The tools the flood and the measures need, each where Debian installs it.
fn check_tools() -> Result<()> {
    if !crate::sh::is_root() {
        bail!("bench live needs root (network namespaces, packet sockets)");
    }
    for (tool, path) in [
        (
            "trafgen (Debian netsniff-ng; cargo xtask deps)",
            "/usr/sbin/trafgen",
        ),
        ("tcpdump", "/usr/bin/tcpdump"),
        ("/usr/bin/time (Debian time)", "/usr/bin/time"),
        ("unshare, nsenter (util-linux)", "/usr/bin/nsenter"),
    ] {
        if !Path::new(path).exists() {
            bail!("{tool} not found at {path}");
        }
    }
    Ok(())
}

/// trafgen's configuration of the flood: 60-byte UDP frames from A to B, written under
/// `target/bench-live/`.
fn flood_conf() -> Result<PathBuf> {
    let work = crate::sh::target_dir().join("bench-live");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let conf = work.join("udp60.trafgen");
    // 14 Ethernet + 20 IPv4 + 8 UDP + 18 payload = 60 bytes, checksums filled in by trafgen.
    std::fs::write(
        &conf,
        format!(
            "{{ eth(da={MAC_B}, sa={MAC_A}), ipv4(saddr={ADDR_A}, daddr={ADDR_B}, ttl=64), \
             udp(sp=40000, dp=9), fill(0x5a, 18) }}\n"
        ),
    )
    .with_context(|| format!("writing {}", conf.display()))?;
    Ok(conf)
}

/// tcpdump, capture, diagnose, watch.
const CAPTURERS: usize = 4;

/// One capturer's figures.
#[derive(Clone)]
struct Run {
    tool: &'static str,
    offered: u64,
    captured: u64,
    received: u64,
    dropped: u64,
    /// CPU of the capturer while the flood ran (all its threads, from schedstat, ns precision).
    cpu_s: f64,
    /// CPU of the whole process, start-up and report included (rusage via /usr/bin/time).
    total_cpu_s: f64,
    /// The capturer's peak resident memory under the flood (VmHWM), MiB.
    peak_rss_mib: f64,
}

impl Run {
    fn drop_share(&self) -> f64 {
        let seen = self.received.max(self.captured + self.dropped);
        self.dropped as f64 / (seen.max(1)) as f64
    }
    fn ns_per_packet(&self) -> f64 {
        self.cpu_s * 1e9 / self.captured.max(1) as f64
    }
    fn median(runs: &[&Run]) -> Run {
        let med = |f: &dyn Fn(&Run) -> f64| -> f64 {
            let mut v: Vec<f64> = runs.iter().map(|r| f(r)).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        // Medians of each column; CPU is reconstructed from the median ns/packet so the
        // printed ratio columns stay consistent.
        let captured = med(&|r| r.captured as f64) as u64;
        Run {
            tool: runs[0].tool,
            offered: med(&|r| r.offered as f64) as u64,
            captured,
            received: med(&|r| r.received as f64) as u64,
            dropped: med(&|r| r.dropped as f64) as u64,
            cpu_s: med(&|r| r.ns_per_packet()) * captured as f64 / 1e9,
            total_cpu_s: med(&|r| r.total_cpu_s),
            peak_rss_mib: med(&|r| r.peak_rss_mib),
        }
    }
}

fn print_table(runs: &[Run]) {
    println!(
        "{:<52} {:>10} {:>10} {:>10} {:>8} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "capturer",
        "offered",
        "captured",
        "dropped",
        "drop %",
        "CPU s",
        "CPU ns/pkt",
        "vs tcpd",
        "drop vs",
        "total s",
        "peak MiB"
    );
    let base = &runs[0];
    for r in runs {
        println!(
            "{:<52} {:>10} {:>10} {:>10} {:>7.2}% {:>8.3} {:>10.0} {:>8.2}x {:>+7.2}pp {:>9.2} {:>9.1}",
            r.tool,
            r.offered,
            r.captured,
            r.dropped,
            r.drop_share() * 100.0,
            r.cpu_s,
            r.ns_per_packet(),
            r.ns_per_packet() / base.ns_per_packet().max(1e-9),
            (r.drop_share() - base.drop_share()) * 100.0,
            r.total_cpu_s,
            r.peak_rss_mib,
        );
    }
    println!(
        "CPU s: all threads of the capturer from the flood's start to its stop request \
         (/proc/PID/task/*/schedstat); total s: the whole process with start-up and report \
         (rusage, 10 ms ticks); peak MiB: its peak resident memory under the flood (VmHWM)"
    );
    println!(
        "goals: capture drop % <= tcpdump's and CPU <= 1.5x tcpdump's; diagnose drop % <= tcpdump's and <= 250 ns/pkt; \
         watch drop % (kernel drops + lost before analysis) <= tcpdump's"
    );
}

/// The two namespaces (held by `sleep` processes) and the veth between them.
struct Topology {
    holder_a: Child,
    holder_b: Child,
}

impl Topology {
    fn up(seconds: u64) -> Result<Topology> {
        // Long enough for three runs per round and a few rounds, bounded if we are killed.
        let hold = (seconds + 20) * CAPTURERS as u64 * 5 + 120;
        let spawn_holder = || -> Result<Child> {
            Command::new("unshare")
                .args(["--net", "--", "sleep"])
                .arg(hold.to_string())
                .stdin(Stdio::null())
                .spawn()
                .context("starting unshare --net sleep")
        };
        let holder_a = spawn_holder()?;
        let topo = Topology {
            holder_a,
            holder_b: spawn_holder()?,
        };
        // unshare execs sleep after creating the namespace: wait until the PID's netns
        // differs from ours.
        let own = std::fs::read_link("/proc/self/ns/net").context("reading our netns")?;
        let started = Instant::now();
        for pid in [topo.holder_a.id(), topo.holder_b.id()] {
            loop {
                let ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
                if ns.as_ref().is_some_and(|n| *n != own) {
                    break;
                }
                if started.elapsed() > Duration::from_secs(5) {
                    bail!("namespace holder {pid} did not unshare its netns");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let b = topo.netns_b();
        topo.in_a(&[
            "ip", "link", "add", IF_A, "address", MAC_A, "type", "veth", "peer", "name", IF_B,
            "address", MAC_B, "netns",
        ])
        .arg(topo.holder_b.id().to_string())
        .status_ok()?;
        topo.in_a(&["ip", "addr", "add", &format!("{ADDR_A}/24"), "dev", IF_A])
            .status_ok()?;
        topo.in_a(&["ip", "link", "set", IF_A, "up"]).status_ok()?;
        Command::new("nsenter")
            .arg(format!("--net={}", b.display()))
            .args(["ip", "addr", "add", &format!("{ADDR_B}/24"), "dev", IF_B])
            .status_ok()?;
        Command::new("nsenter")
            .arg(format!("--net={}", b.display()))
            .args(["ip", "link", "set", IF_B, "up"])
            .status_ok()?;
        // The receiver knows the sender's MAC, so its port-unreachable replies go out
        // without ARP; they are rate-limited by the kernel and do not reach the capture.
        Command::new("nsenter")
            .arg(format!("--net={}", b.display()))
            .args(["ip", "neigh", "add", ADDR_A, "lladdr", MAC_A, "dev", IF_B])
            .status_ok()?;
        Ok(topo)
    }

    fn netns_a(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder_a.id()))
    }

    fn netns_b(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder_b.id()))
    }

    fn in_a(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns_a().display()))
            .args(args);
        c
    }

    /// Frames the receiving veth end has taken in so far (`/proc/net/dev` in its netns).
    fn rx_packets(&self) -> Result<u64> {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.netns_b().display()))
            .args(["cat", "/proc/net/dev"])
            .output()
            .context("reading /proc/net/dev in the receiver netns")?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| {
                let (name, rest) = l.split_once(':')?;
                (name.trim() == IF_B)
                    .then(|| rest.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .flatten()
            })
            .with_context(|| format!("no {IF_B} in /proc/net/dev of the receiver netns"))
    }

    /// Runs capturer `which` (0 tcpdump, 1 capture, 2 diagnose, 3 watch) under the flood.
    fn measure(&self, which: usize, ours: &Path, conf: &Path, seconds: u64) -> Result<Run> {
        let b = self.netns_b();
        let b_arg = format!("--net={}", b.display());
        let ours_s = ours.to_str().context("non-UTF-8 path")?;
        let b_s = b.to_str().context("non-UTF-8 path")?;
        let (tool, cmd, ready): (&'static str, Vec<&str>, &str) = match which {
            0 => (
                "tcpdump -i IF -w /dev/null",
                vec![
                    "nsenter",
                    &b_arg,
                    "tcpdump",
                    "-n",
                    "-i",
                    IF_B,
                    "-w",
                    "/dev/null",
                ],
                "listening on",
            ),
            1 => (
                "kubectl-netdiag capture --netns … -i IF -w /dev/null",
                vec![
                    ours_s,
                    "capture",
                    "--netns",
                    b_s,
                    "-i",
                    IF_B,
                    "-w",
                    "/dev/null",
                ],
                "capturing on",
            ),
            3 => (
                "kubectl-netdiag watch --netns … -i IF",
                vec![ours_s, "watch", "--netns", b_s, "-i", IF_B],
                "watching",
            ),
            _ => (
                "kubectl-netdiag diagnose --netns … -i IF",
                vec![
                    ours_s,
                    "diagnose",
                    "--netns",
                    b_s,
                    "-i",
                    IF_B,
                    "--duration",
                    "10m",
                ],
                "diagnosing",
            ),
        };
        let times =
            std::env::temp_dir().join(format!("netdiag-bench-live-{}.time", std::process::id()));
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", "%U %S", "-o"])
            .arg(&times)
            .args(&cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        eprintln!("xtask: $ {}", crate::sh::display(&c));
        let mut child = c.spawn().with_context(|| format!("starting {tool}"))?;
        let stderr = child.stderr.take().context("capturer stderr")?;
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let ready_marker = ready.to_string();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(&ready_marker) {
                    let _ = ready_tx.send(());
                }
                lines.push(line);
            }
            lines
        });
        let result = (|| -> Result<(u64, i32, u64, u64)> {
            if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
                bail!("{tool} did not start capturing within 30 s");
            }
            // The capturer is the child of /usr/bin/time (which ignores SIGINT itself).
            let pid = child_of(child.id()).with_context(|| format!("finding {tool}'s PID"))?;
            std::thread::sleep(Duration::from_millis(300));
            let rx_before = self.rx_packets()?;
            let cpu_before = cpu_ns(pid);
            let status = Command::new("timeout")
                .args(["-s", "INT", &format!("{seconds}s")])
                .arg("nsenter")
                .arg(format!("--net={}", self.netns_a().display()))
                .args(["trafgen", "-o", IF_A, "-i"])
                .arg(conf)
                .args(["-P", "1", "--no-sock-mem", "-Q", "-C"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .context("running trafgen")?;
            // timeout exits 124 when it had to stop trafgen, which is the normal case.
            if !(status.status.success() || status.status.code() == Some(124)) {
                bail!(
                    "trafgen failed: {}: {}",
                    status.status,
                    String::from_utf8_lossy(&status.stderr)
                );
            }
            let offered = self.rx_packets()?.saturating_sub(rx_before);
            // Let the capturer drain its ring before asking it to stop.
            std::thread::sleep(Duration::from_millis(500));
            let cpu = cpu_ns(pid).saturating_sub(cpu_before);
            Ok((offered, pid, cpu, peak_rss_kib(pid)))
        })();
        let (offered, pid, cpu_run_ns, peak_kib) = match result {
            Ok(x) => x,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        let status = child
            .wait()
            .with_context(|| format!("waiting for {tool}"))?;
        let lines = reader.join().unwrap_or_default();
        let text = lines.join("\n");
        if !matches!(status.code(), Some(0 | 1)) {
            bail!("{tool} exited with {status}:\n{text}");
        }
        let count = |what: &str| -> Result<u64> {
            lines
                .iter()
                .find_map(|l| {
                    l.contains(what)
                        .then(|| l.split_whitespace().next()?.parse::<u64>().ok())
                        .flatten()
                })
                .with_context(|| format!("{tool}: no {what:?} line in its output:\n{text}"))
        };
        let cpu = std::fs::read_to_string(&times)
            .with_context(|| format!("reading {}", times.display()))?;
        let _ = std::fs::remove_file(&times);
        let total_cpu_s: f64 = cpu
            .split_whitespace()
            .rev()
            .take(2)
            .map(|v| v.parse::<f64>().unwrap_or(0.0))
            .sum();
        // watch also loses what its hand-off to the analysis could not hold: a drop too.
        let lost = if which == 3 {
            count("packets lost before analysis")?
        } else {
            0
        };
        Ok(Run {
            tool,
            offered,
            captured: count("packets captured")?,
            received: count("packets received by filter")?,
            dropped: count("packets dropped by kernel")? + lost,
            cpu_s: cpu_run_ns as f64 / 1e9,
            total_cpu_s,
            peak_rss_mib: peak_kib as f64 / 1024.0,
        })
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Ending the holders destroys both namespaces and the veth pair with them.
        for h in [&mut self.holder_a, &mut self.holder_b] {
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}

/// Peak resident memory of `pid` so far (`VmHWM` in /proc/PID/status), KiB; 0 if unknown.
fn peak_rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// CPU time of every thread of `pid` so far, in ns (first field of each
/// `/proc/PID/task/TID/schedstat`: time on the CPU, with the scheduler's precision).
fn cpu_ns(pid: i32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The one child process of `parent` (from `/proc/*/stat`), waiting briefly for it to appear.
fn child_of(parent: u32) -> Result<i32> {
    let started = Instant::now();
    loop {
        for entry in std::fs::read_dir("/proc")
            .context("listing /proc")?
            .flatten()
        {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // "pid (comm) state ppid …": comm may hold spaces, so split after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(parent) {
                return Ok(pid);
            }
        }
        if started.elapsed() > Duration::from_secs(5) {
            bail!("process {parent} has no child");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

trait StatusOk {
    fn status_ok(&mut self) -> Result<()>;
}

impl StatusOk for Command {
    fn status_ok(&mut self) -> Result<()> {
        let s = self
            .status()
            .with_context(|| format!("running {}", crate::sh::display(self)))?;
        if !s.success() {
            bail!("{} failed: {s}", crate::sh::display(self));
        }
        Ok(())
    }
}
