//! `cargo xtask demo`: netdiag's main job, start to finish, on this machine (root).
//!
//! 1. installs the Debian packages it needs and builds kubectl-netdiag;
//! 2. brings up a real containerd node (`netdiag_tests::node`, /run/ndr-node) and a cluster
//!    DNS (dnsmasq on the CNI bridge's gateway, `cluster.local` answered locally);
//! 3. creates pods through the CRI with kubelet's labels and DNS config (`ndots:5`, three
//!    search domains), each reproducing one situation of DETECTION.md inside a real pod:
//!    - `demo/web`: a healthy HTTP server, fetched with keep-alive-free requests by `demo/web-client`;
//!    - `demo/resolver`: a client that looks up `api.example.test` (2 dots < ndots:5), so every
//!      lookup walks the three search domains first (ndots amplification);
//!    - `demo/queue`: a listener with backlog 1 that never accepts, hammered by
//!      `demo/queue-client` (accept-queue overflow);
//! 4. runs `kubectl netdiag diagnose` against each pod **by name** and prints the reports;
//! 5. tears everything down (also on failure or Ctrl-C of a step: the node's `down` is
//!    idempotent and removes only what is ours).
//!
//! Every traffic loop in the pods is bounded in count and time, and all traffic stays on
//! the CNI bridge between pods the demo created.

use crate::{deps, sh};
use anyhow::{Context, Result, bail};
use netdiag_tests::node::{self, Node, NodeConfig, PodSpec};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Namespace of the demo's pods.
const NS: &str = "demo";
/// How long each diagnosis captures.
const CAPTURE_SECONDS: u64 = 8;

pub(crate) fn run(args: &[String]) -> Result<()> {
    let keep = match args {
        [] => false,
        [k] if k == "--keep" => true,
        _ => bail!("usage: cargo xtask demo [--keep]   (--keep leaves the node up afterwards)"),
    };
    if !sh::is_root() {
        bail!("the demo runs a real containerd node (namespaces, CNI, iptables): run it as root");
    }
    let started = Instant::now();
    deps::install()?;
    sh::run(sh::cargo().args(["build", "-p", "kubectl-netdiag"]))?;
    sh::run(sh::cargo().args(["build", "-p", "netdiag", "--example", "diagnose"]))?;
    let root = netdiag_tests::workspace_root();
    let bin = root.join("target/debug/kubectl-netdiag");
    let example = root.join("target/debug/examples/diagnose");

    let config = NodeConfig::lab();
    let guard = Teardown {
        config: config.clone(),
        keep,
    };
    step("bringing up containerd with the CRI plugin and CNI bridge networking");
    let node = node::up(&config)?;
    let result = scenarios(&node, &config, &bin, &example);
    drop(node);
    drop(guard);
    result?;
    eprintln!(
        "\nxtask demo: done in {:.0} s{}",
        started.elapsed().as_secs_f64(),
        if keep {
            "; node left up (`cargo xtask node down` removes it)"
        } else {
            ", everything torn down"
        }
    );
    Ok(())
}

/// Tears the node (and its dnsmasq) down however `run` ends.
struct Teardown {
    config: NodeConfig,
    keep: bool,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        step("tearing the node down");
        if let Err(e) = node::down(&self.config) {
            eprintln!("xtask demo: teardown failed: {e:#}; run `cargo xtask node down`");
        }
    }
}

fn step(what: &str) {
    eprintln!("\n==> {what}");
}

/// A bounded shell loop: at most `count` rounds and `seconds` seconds, then sleep forever
/// (the container stays up so it can be inspected).
fn bounded_loop(count: u32, seconds: u32, body: &str) -> Vec<String> {
    let script = format!(
        "end=$(( $(date +%s) + {seconds} )); i=0; \
         while [ $i -lt {count} ] && [ $(date +%s) -lt $end ]; do {body}; i=$((i+1)); done; \
         exec sleep 2147483647"
    );
    vec!["/bin/sh".into(), "-c".into(), script]
}

fn scenarios(node: &Node, config: &NodeConfig, bin: &Path, example: &Path) -> Result<()> {
    let dns = config.gateway.clone();
    step("creating pod demo/web (a healthy HTTP server)");
    let mut web = PodSpec::new(NS, "web").with_cluster_dns(&dns);
    web.containers = vec![(
        "httpd".into(),
        Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo ok > /tmp/index.html; exec /bin/busybox httpd -f -p 8080 -h /tmp".into(),
        ]),
    )];
    let web = node.run_pod(&web)?;
    let web_ip = web.ip.clone().context("pod demo/web has no IP")?;

    // The CNI bridge (and its gateway address) exists now: start the cluster DNS on it.
    step(&format!(
        "starting cluster DNS (dnsmasq on {dns}: cluster.local local, api.example.test → {web_ip})"
    ));
    let dnsmasq = start_dnsmasq(config, &web_ip)?;

    step("creating pod demo/web-client (HTTP to demo/web by IP, fully qualified)");
    let mut web_client = PodSpec::new(NS, "web-client").with_cluster_dns(&dns);
    web_client.containers = vec![(
        "client".into(),
        Some(bounded_loop(
            600,
            300,
            &format!(
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {web_ip} 8080 >/dev/null; sleep 0.3"
            ),
        )),
    )];
    node.run_pod(&web_client)?;

    step("creating pod demo/resolver (looks up api.example.test with ndots:5)");
    let mut resolver = PodSpec::new(NS, "resolver").with_cluster_dns(&dns);
    resolver.containers = vec![(
        "client".into(),
        Some(bounded_loop(
            300,
            300,
            "getent ahosts api.example.test >/dev/null; sleep 1",
        )),
    )];
    node.run_pod(&resolver)?;

    step("creating pod demo/queue (a listener with backlog 1 that never accepts)");
    let queue = node.run_pod(&PodSpec::new(NS, "queue").with_cluster_dns(&dns))?;
    let queue_ip = queue.ip.clone().context("pod demo/queue has no IP")?;
    let _listener = node::hold_listener_in_netns(queue.pid, 9000, 1)?;
    let mut queue_client = PodSpec::new(NS, "queue-client").with_cluster_dns(&dns);
    queue_client.containers = vec![(
        "client".into(),
        Some(bounded_loop(
            40,
            300,
            &format!(
                "for j in 1 2 3 4 5 6; do nc -w 5 {queue_ip} 9000 </dev/null >/dev/null 2>&1 & done; sleep 5; wait"
            ),
        )),
    )];
    node.run_pod(&queue_client)?;

    step("pods on this node, as `kubectl netdiag pods` sees them");
    let endpoint = config.endpoint();
    sh::run(
        Command::new(bin)
            .args(["pods", "-n", NS])
            .env("CONTAINER_RUNTIME_ENDPOINT", &endpoint),
    )?;

    // Give the clients a moment to start their loops.
    std::thread::sleep(Duration::from_secs(2));
    let mut failures = Vec::new();
    for (pod, expect) in [
        ("web", "nothing (healthy)"),
        ("resolver", "dns_ndots_amplification"),
        ("queue", "accept_queue_overflow"),
    ] {
        step(&format!(
            "kubectl netdiag diagnose -n {NS} {pod}   (expected: {expect})"
        ));
        if let Err(e) = diagnose(bin, example, &endpoint, pod) {
            eprintln!("xtask demo: diagnosing {NS}/{pod} failed: {e:#}");
            failures.push(pod);
        }
    }
    drop(dnsmasq);
    if !failures.is_empty() {
        bail!("diagnosis failed for: {}", failures.join(", "));
    }
    Ok(())
}

/// Runs `kubectl netdiag diagnose` by pod name (through kubectl's plugin mechanism when
/// kubectl is installed). While the CLI's `diagnose` is not in this build, falls back to the
/// facade's example (`netdiag::Diagnosis::pod`), which does the same resolution and capture.
fn diagnose(bin: &Path, example: &Path, endpoint: &str, pod: &str) -> Result<()> {
    let secs = CAPTURE_SECONDS.to_string();
    let dir = bin.parent().map(Path::to_path_buf).unwrap_or_default();
    let path = std::env::join_paths(std::iter::once(dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))?;
    let mut cmd = if which("kubectl").is_some() {
        let mut c = Command::new("kubectl");
        c.arg("netdiag");
        c
    } else {
        Command::new(bin)
    };
    cmd.args(["diagnose", "-n", NS, pod, "--duration", &format!("{secs}s")])
        .env("PATH", &path)
        .env("CONTAINER_RUNTIME_ENDPOINT", endpoint)
        .stdin(Stdio::null());
    eprintln!("xtask: $ {}", sh::display(&cmd));
    let out = cmd.output().context("running kubectl netdiag diagnose")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    // Exit 0 = clean, 1 = findings: both are a successful diagnosis.
    if matches!(out.status.code(), Some(0 | 1)) {
        eprint!("{stderr}");
        return Ok(());
    }
    if stderr.contains("not available in this build") || stderr.contains("unexpected argument") {
        eprintln!(
            "xtask demo: this build's `diagnose` cannot do it yet ({}); using netdiag::Diagnosis::pod",
            stderr.lines().last().unwrap_or_default().trim()
        );
        let mut cmd = Command::new(example);
        cmd.args(["--pod", &format!("{NS}/{pod}"), "--seconds", &secs])
            .env("CONTAINER_RUNTIME_ENDPOINT", endpoint);
        return sh::run(&mut cmd);
    }
    eprint!("{stderr}");
    bail!("kubectl netdiag diagnose exited with {}", out.status)
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// The cluster DNS: dnsmasq on the bridge gateway, answering `cluster.local` itself
/// (NXDOMAIN for what does not exist, as CoreDNS does) and `api.example.test` with `answer`.
/// Nothing is forwarded anywhere (`--no-resolv`).
struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_dnsmasq(config: &NodeConfig, answer: &str) -> Result<Dnsmasq> {
    let dir = config.dir.display().to_string();
    let child = Command::new("dnsmasq")
        .args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--local=/cluster.local/",
            "--log-queries",
        ])
        .arg(format!("--listen-address={}", config.gateway))
        .arg(format!("--interface={}", config.bridge))
        .arg(format!("--address=/example.test/{answer}"))
        .arg(format!("--pid-file={dir}/dnsmasq.pid"))
        .arg(format!("--log-facility={dir}/dnsmasq.log"))
        .stdin(Stdio::null())
        .spawn()
        .context("starting dnsmasq (Debian package dnsmasq-base)")?;
    let mut d = Dnsmasq(child);
    std::thread::sleep(Duration::from_millis(300));
    if let Some(status) = d.0.try_wait()? {
        let log = std::fs::read_to_string(format!("{dir}/dnsmasq.log")).unwrap_or_default();
        bail!("dnsmasq exited at once ({status}): {log}");
    }
    Ok(d)
}
