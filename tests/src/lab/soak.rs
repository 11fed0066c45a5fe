//! The `watch` soak (issue 12): `kubectl-netdiag watch` on the lab pod under sustained
//! traffic ([`super::load`]) plus the intermittent DNS fault ([`super::intermittent`], so
//! episodes keep being written and `--max-files` has to rotate), for a set time.
//!
//! Every [`SoakConfig::sample_every`] the driver reads the watch process's `VmRSS`
//! (`/proc/PID/status`), counts the pcapng files in `--out`, and reads the capture
//! counter from `--metrics`. [`SoakReport::check`] then asserts the bounds: RSS at most
//! [`SoakConfig::rss_limit_kib`], no growth over the last half of the run beyond
//! [`SoakConfig::growth_allowance_kib`] ([`SoakReport::late_growth_kib`]), never more
//! than `--max-files` files, the exit code `--fail-on` calls for.

use super::intermittent;
use super::load::{self, LoadConfig, LoadCounts};
use super::{Lab, Role};
use crate::prometheus::{free_port, http_get};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The soak's parameters.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// How long `watch` runs (`--for`).
    pub duration: Duration,
    /// RSS and files are sampled this often.
    pub sample_every: Duration,
    /// `--max-files`.
    pub max_files: usize,
    /// The bound on `VmRSS`, KiB (issue 12: 64 MiB). Meant for the release binary: a
    /// debug build maps ~16 MiB of its own code (`RssFile`) where a release build maps
    /// ~10, and allocates about a third more.
    pub rss_limit_kib: u64,
    /// How much RSS may rise over the last half of the run (allocator noise), KiB.
    pub growth_allowance_kib: u64,
    /// The traffic.
    pub load: LoadConfig,
    /// Share of AAAA replies dropped (the fault that makes episodes).
    pub drop_probability: f64,
}

impl SoakConfig {
    /// The soak: `minutes` of load, a sample every 10 s, `--max-files 3`, 64 MiB.
    pub fn minutes(minutes: u64) -> SoakConfig {
        SoakConfig {
            duration: Duration::from_secs(60 * minutes),
            sample_every: Duration::from_secs(10),
            max_files: 3,
            rss_limit_kib: 64 * 1024,
            growth_allowance_kib: 1024,
            load: LoadConfig::default(),
            drop_probability: 0.2,
        }
    }
}

/// One sample.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Time since `watch` started.
    pub at: Duration,
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// `RssAnon`, KiB.
    pub anon_kib: u64,
    /// `RssFile`, KiB.
    pub file_kib: u64,
    /// pcapng files in `--out`.
    pub files: usize,
    /// `netdiag_capture_packets_total` summed over points (`None`: not read).
    pub packets: Option<f64>,
    /// `netdiag_capture_dropped_total` summed over points.
    pub dropped: Option<f64>,
}

/// What a soak run measured.
#[derive(Debug)]
pub struct SoakReport {
    /// The samples, in order.
    pub samples: Vec<Sample>,
    /// Finding lines `watch` printed (`-o json`).
    pub findings: usize,
    /// Most files seen in `--out` at once (samples and the end).
    pub most_files: usize,
    /// Files left in `--out` at the end.
    pub files_at_end: usize,
    /// `watch`'s exit code.
    pub exit_code: Option<i32>,
    /// The end of watch's stderr.
    pub stderr_tail: String,
    /// The traffic sent.
    pub load: Arc<LoadCounts>,
    /// AAAA replies dropped by the fault rule.
    pub aaaa_drops: u64,
}

/// `VmRSS`, `RssAnon` and `RssFile` of `pid`, KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("RssAnon:")?, field("RssFile:")?))
}

fn pcapng_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "pcapng"))
                .count()
        })
        .unwrap_or(0)
}

/// Sum of the samples of `name` in a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = false;
    let mut sum = 0.0;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = l.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            found = true;
            sum += v;
        }
    }
    found.then_some(sum)
}

/// The watch process: killed (by its PID, it is our child) if the driver fails early.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs the soak in a fresh lab `tag` with the `kubectl-netdiag` at `bin`.
pub fn run(bin: &Path, tag: &str, cfg: &SoakConfig) -> Result<SoakReport> {
    let lab = Lab::up(tag)?;
    let fault = intermittent::Config {
        drop_probability: cfg.drop_probability,
        http_every: None,
        ..intermittent::Config::default()
    };
    let out_dir: PathBuf = lab.scratch().join("episodes");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("create {}", out_dir.display()))?;
    let port = free_port()?;
    let metrics: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let stderr_path = lab.scratch().join("watch.stderr");
    let stderr = std::fs::File::create(&stderr_path)
        .with_context(|| format!("create {}", stderr_path.display()))?;
    let traffic = load::start(&lab, &cfg.load)?;
    let faults = intermittent::start(&lab, &fault)?;
    let mut cmd = Command::new(bin);
    cmd.arg("watch")
        .arg("--netns")
        .arg(lab.netns_path(Role::Pod))
        .arg("--node-netns")
        .arg(lab.netns_path(Role::Node))
        .arg("--for")
        .arg(format!("{}s", cfg.duration.as_secs()))
        .arg("--out")
        .arg(&out_dir)
        .arg("--max-files")
        .arg(cfg.max_files.to_string())
        .arg("--metrics")
        .arg(metrics.to_string())
        .args(["-o", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    eprintln!("soak: $ {}", crate::sh::display(&cmd));
    let mut child = KillOnDrop(
        cmd.spawn()
            .with_context(|| format!("start {}", bin.display()))?,
    );
    let pid = child.0.id();
    let findings = Arc::new(AtomicUsize::new(0));
    let reader = {
        let findings = Arc::clone(&findings);
        let stdout = child.0.stdout.take().context("watch's stdout")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if line.trim_start().starts_with('{') {
                    findings.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let start = Instant::now();
    let hard_deadline = start + cfg.duration + Duration::from_secs(60);
    let mut samples = Vec::new();
    let mut most_files = 0;
    let mut next = start + cfg.sample_every;
    let status = loop {
        if let Some(st) = child.0.try_wait().context("wait for watch")? {
            break Some(st);
        }
        if Instant::now() > hard_deadline {
            let _ = child.0.kill();
            let _ = child.0.wait();
            break None;
        }
        let files = pcapng_files(&out_dir);
        most_files = most_files.max(files);
        if Instant::now() >= next && start.elapsed() <= cfg.duration {
            next += cfg.sample_every;
            if let Some((rss_kib, anon_kib, file_kib)) = memory_kib(pid) {
                let text = http_get(metrics, "/metrics").map(|(_, b)| b).ok();
                let s = Sample {
                    at: start.elapsed(),
                    rss_kib,
                    anon_kib,
                    file_kib,
                    files,
                    packets: text
                        .as_deref()
                        .and_then(|t| metric_sum(t, "netdiag_capture_packets_total")),
                    dropped: text
                        .as_deref()
                        .and_then(|t| metric_sum(t, "netdiag_capture_dropped_total")),
                };
                eprintln!(
                    "soak: {:>4} s  RSS {:>6} KiB (anon {:>6}, file {:>6})  files {}  packets {:?}  dropped {:?}  findings {}",
                    s.at.as_secs(),
                    s.rss_kib,
                    s.anon_kib,
                    s.file_kib,
                    s.files,
                    s.packets,
                    s.dropped,
                    findings.load(Ordering::Relaxed)
                );
                samples.push(s);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = reader.join();
    let files_at_end = pcapng_files(&out_dir);
    most_files = most_files.max(files_at_end);
    drop(faults);
    let load = traffic.stop()?;
    let aaaa_drops = intermittent::drops(&lab)?;
    let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let stderr_tail = lines[lines.len().saturating_sub(15)..].join("\n");
    drop(lab);
    Ok(SoakReport {
        samples,
        findings: findings.load(Ordering::Relaxed),
        most_files,
        files_at_end,
        exit_code: status.and_then(|s| s.code()),
        stderr_tail,
        load,
        aaaa_drops,
    })
}

impl SoakReport {
    /// Highest RSS sampled, KiB.
    pub fn max_rss_kib(&self) -> u64 {
        self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0)
    }

    /// RSS rise over the last half of the run, KiB: the lowest sample of its last quarter
    /// minus the lowest of the quarter before (`None` with fewer than two samples in
    /// either). The floor, because RSS swings by several MiB from one sample to the next
    /// (an analysis of the window in flight or not: the soaks show two levels ~6 MiB
    /// apart, so even a median of seven samples flips between them); what is retained
    /// between analyses is the floor, and a leak lifts it. The peak is bounded separately.
    pub fn late_growth_kib(&self, cfg: &SoakConfig) -> Option<i64> {
        let half = cfg.duration / 2;
        let three_quarters = half + half / 2;
        let floor = |from: Duration, to: Duration| -> Option<u64> {
            let v: Vec<u64> = self
                .samples
                .iter()
                .filter(|s| s.at >= from && s.at < to)
                .map(|s| s.rss_kib)
                .collect();
            if v.len() < 2 {
                return None;
            }
            v.into_iter().min()
        };
        let early = floor(half, three_quarters)?;
        let late = floor(three_quarters, cfg.duration + cfg.sample_every)?;
        Some(late as i64 - early as i64)
    }

    /// Packets per second captured, from the first to the last sample with a counter.
    pub fn packets_per_s(&self) -> Option<f64> {
        let with: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.packets.is_some())
            .collect();
        let (a, b) = (with.first()?, with.last()?);
        let dt = (b.at - a.at).as_secs_f64();
        let (pa, pb) = (a.packets?, b.packets?);
        (dt > 0.0).then(|| (pb - pa) / dt)
    }

    /// Asserts the bounds; the error names every one that failed.
    pub fn check(&self, cfg: &SoakConfig) -> Result<()> {
        let mut bad = Vec::new();
        // Exit 1 after --for when a likely finding was seen (the default --fail-on).
        let want_exit = if self.findings > 0 { 1 } else { 0 };
        if self.exit_code != Some(want_exit) {
            bad.push(format!(
                "watch exited {:?} (want {want_exit} after --for with {} findings)",
                self.exit_code, self.findings
            ));
        }
        let want_samples = (cfg.duration.as_secs() / cfg.sample_every.as_secs().max(1)) as usize;
        if self.samples.len() + 1 < want_samples {
            bad.push(format!(
                "only {} RSS samples (want {want_samples})",
                self.samples.len()
            ));
        }
        if self.max_rss_kib() > cfg.rss_limit_kib {
            bad.push(format!(
                "RSS reached {} KiB > {} KiB",
                self.max_rss_kib(),
                cfg.rss_limit_kib
            ));
        }
        match self.late_growth_kib(cfg) {
            Some(g) if g > cfg.growth_allowance_kib as i64 => bad.push(format!(
                "RSS grew {g} KiB over the last half (allowance {} KiB)",
                cfg.growth_allowance_kib
            )),
            Some(_) => {}
            None => bad.push("too few samples in the last half to judge growth".into()),
        }
        if self.most_files > cfg.max_files {
            bad.push(format!(
                "{} files in --out at once > --max-files {}",
                self.most_files, cfg.max_files
            ));
        }
        // The fault must have produced more episodes than files kept: rotation was exercised.
        if self.findings <= cfg.max_files {
            bad.push(format!(
                "only {} findings: --max-files {} was never exercised",
                self.findings, cfg.max_files
            ));
        }
        if self.files_at_end != cfg.max_files.min(self.findings) {
            bad.push(format!(
                "{} files at the end, want {}",
                self.files_at_end,
                cfg.max_files.min(self.findings)
            ));
        }
        match self.packets_per_s() {
            Some(pps) if pps >= 1000.0 => {}
            other => bad.push(format!(
                "captured {other:?} packets/s: not the sustained thousands the soak needs"
            )),
        }
        if !bad.is_empty() {
            bail!(
                "soak failed: {}\nwatch stderr (end):\n{}",
                bad.join("; "),
                self.stderr_tail
            );
        }
        Ok(())
    }
}

impl std::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first = self.samples.first().map(|s| s.rss_kib).unwrap_or(0);
        writeln!(
            f,
            "watch soak: {} samples, RSS first {} KiB, max {} KiB (anon max {} KiB, file max {} KiB); \
             packets/s {:.0}; dropped {:?}",
            self.samples.len(),
            first,
            self.max_rss_kib(),
            self.samples.iter().map(|s| s.anon_kib).max().unwrap_or(0),
            self.samples.iter().map(|s| s.file_kib).max().unwrap_or(0),
            self.packets_per_s().unwrap_or(0.0),
            self.samples.last().and_then(|s| s.dropped)
        )?;
        writeln!(
            f,
            "  findings {} (AAAA drops {}), files at most {} at once, {} at the end, exit {:?}",
            self.findings, self.aaaa_drops, self.most_files, self.files_at_end, self.exit_code
        )?;
        writeln!(f, "  traffic: {}", self.load)?;
        let summary = self
            .stderr_tail
            .lines()
            .find(|l| l.starts_with("watch of"))
            .unwrap_or("(no summary line)");
        write!(f, "  {summary}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report of samples every 5 s over 150 s: `rss(i)` KiB for sample `i`.
    fn report(rss: impl Fn(u64) -> u64) -> SoakReport {
        SoakReport {
            samples: (1..30)
                .map(|i| Sample {
                    at: Duration::from_secs(5 * i),
                    rss_kib: rss(i),
                    anon_kib: 0,
                    file_kib: 0,
                    files: 0,
                    packets: None,
                    dropped: None,
                })
                .collect(),
            findings: 0,
            most_files: 0,
            files_at_end: 0,
            exit_code: None,
            stderr_tail: String::new(),
            load: Arc::new(LoadCounts::default()),
            aaaa_drops: 0,
        }
    }

    fn cfg() -> SoakConfig {
        SoakConfig {
            duration: Duration::from_secs(150),
            sample_every: Duration::from_secs(5),
            ..SoakConfig::minutes(1)
        }
    }

    /// The second half of the CI soak that failed on medians (fresh machine, 2026-12-02):
    /// two levels ~6 MiB apart, no leak.
    #[test]
    fn swings_between_two_levels_are_not_growth() {
        let seen: [u64; 15] = [
            41596, 37196, 32432, 32476, 32500, 32524, 39060, 32624, 38300, 35716, 35740, 39160,
            32420, 38912, 32492,
        ];
        let r = report(|i| {
            if i >= 15 {
                seen[(i - 15) as usize]
            } else {
                32000
            }
        });
        let g = r.late_growth_kib(&cfg()).expect("enough samples");
        assert!(g.abs() < 100, "{g}");
    }

    /// A leak of 40 KiB a second (3 MiB over the last 75 s) under the same swings.
    #[test]
    fn a_leak_under_the_swings_is_growth() {
        let r = report(|i| 32000 + 200 * i + if i % 2 == 0 { 6000 } else { 0 });
        let g = r.late_growth_kib(&cfg()).expect("enough samples");
        assert!(g > cfg().growth_allowance_kib as i64, "{g}");
    }
}
