//! A real Prometheus server for the tests: Debian's `/usr/bin/prometheus` on loopback,
//! scraping one target every second, queried through its HTTP API (`/api/v1/query`).
//!
//! [`Prometheus::start`] writes a config and a storage directory under a fresh temp
//! directory, starts the server on a free loopback port and waits until `/-/ready`
//! answers 200. Dropping the handle (also while a test panics) kills the server and
//! removes the directory.

use anyhow::{Context, Result, anyhow, bail};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's package installs the server.
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";

/// The job name of the scraped target (the `job` label of its series).
pub const JOB: &str = "netdiag";

/// One sample of a query result: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels (`__name__` included when the expression keeps it).
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// A running Prometheus server. Dropping it kills the server and removes its files.
#[derive(Debug)]
pub struct Prometheus {
    child: Option<Child>,
    dir: PathBuf,
    addr: SocketAddr,
}

/// A free TCP port on 127.0.0.1 (bound, then released: the caller binds it next).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(l.local_addr().context("local_addr")?.port())
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`, path `/metrics`) every second,
    /// under a temp directory named after `tag`. Fails if it is not ready within 30 s.
    pub fn start(tag: &str, target: &str) -> Result<Prometheus> {
        if !Path::new(PROMETHEUS_BIN).is_file() {
            bail!("{PROMETHEUS_BIN} not found: install Debian's `prometheus` (`cargo xtask deps`)");
        }
        let dir = std::env::temp_dir().join(format!("ndl-prom-{tag}-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir.join("data"))
            .with_context(|| format!("create {}", dir.display()))?;
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // From here on, dropping `prom` removes the directory (and the server, once started).
        let mut prom = Prometheus {
            child: None,
            dir,
            addr,
        };
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n"
        );
        let config_path = prom.dir.join("prometheus.yml");
        std::fs::write(&config_path, config)
            .with_context(|| format!("write {}", config_path.display()))?;
        let log_path = prom.dir.join("prometheus.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let child = Command::new(PROMETHEUS_BIN)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom.dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {PROMETHEUS_BIN}"))?;
        prom.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = prom.get("/-/ready") {
                return Ok(prom);
            }
            if let Some(c) = prom.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                bail!(
                    "prometheus exited ({status}) before it was ready: {}",
                    prom.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!("prometheus not ready within 30 s: {}", prom.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's own address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's temp directory (config, storage, log), removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// `GET path` on the server: status code and body.
    fn get(&self, path: &str) -> Result<(u16, String)> {
        http_get(self.addr, path)
    }

    /// Evaluates the PromQL `expr` now (instant query) and returns the samples of its
    /// vector (or the one value of a scalar).
    pub fn query(&self, expr: &str) -> Result<Vec<Sample>> {
        let (status, body) = self.get(&format!("/api/v1/query?query={}", url_encode(expr)))?;
        let v: serde_json::Value = serde_json::from_str(&body)
            .with_context(|| format!("query {expr:?}: HTTP {status}, not JSON: {body:?}"))?;
        if v["status"] != "success" {
            bail!("query {expr:?}: HTTP {status}: {body}");
        }
        let data = &v["data"];
        let parse = |val: &serde_json::Value| -> Result<f64> {
            val.get(1)
                .and_then(|s| s.as_str())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow!("query {expr:?}: bad value {val}"))
        };
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .ok_or_else(|| anyhow!("query {expr:?}: no result array: {body}"))?
                .iter()
                .map(|r| {
                    let labels = r["metric"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                                .collect()
                        })
                        .unwrap_or_default();
                    Ok(Sample {
                        labels,
                        value: parse(&r["value"])?,
                    })
                })
                .collect(),
            Some("scalar") => Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: parse(&data["result"])?,
            }]),
            other => bail!("query {expr:?}: result type {other:?} is not a vector: {body}"),
        }
    }

    /// The sum of `expr`'s samples (0 when it has none).
    pub fn query_sum(&self, expr: &str) -> Result<f64> {
        Ok(self.query(expr)?.iter().map(|s| s.value).sum())
    }

    /// Polls `expr` every 500 ms until `ok` holds for its samples, for at most `timeout`;
    /// returns the last samples, or fails with them.
    pub fn wait_for(
        &self,
        expr: &str,
        timeout: Duration,
        ok: impl Fn(&[Sample]) -> bool,
    ) -> Result<Vec<Sample>> {
        let deadline = Instant::now() + timeout;
        loop {
            let samples = self.query(expr)?;
            if ok(&samples) {
                return Ok(samples);
            }
            if Instant::now() > deadline {
                bail!(
                    "query {expr:?} still {samples:?} after {:?}; targets: {}",
                    timeout,
                    self.get("/api/v1/targets")
                        .map(|(_, b)| b)
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A minimal HTTP/1.0 GET (the answer ends with the connection): status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").context("send the request")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("read the answer to GET {path}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("GET {path}: no header end in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("GET {path}: no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encode_keeps_unreserved_only() {
        assert_eq!(
            url_encode(r#"a_b{kind="x y"}"#),
            "a_b%7Bkind%3D%22x%20y%22%7D"
        );
    }
}
