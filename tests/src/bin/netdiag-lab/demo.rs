//! `cargo xtask demo`: netdiag's main job, start to finish, on this machine (root).
//!
//! 1. (`cargo xtask demo`, before starting this binary) installs the Debian packages and
//!    builds kubectl-netdiag;
//! 2. brings up a real containerd node (`netdiag_tests::node`, /run/ndr-node);
//! 3. creates pods through the CRI with kubelet's labels and DNS config (`ndots:5`, three
//!    search domains, the cluster DNS as nameserver), each reproducing one situation of
//!    DETECTION.md inside a real pod ([`create_pods`], also used by `cargo xtask lab node up`):
//!    - `kube-system/dns`: the cluster DNS, dnsmasq in the pod's network namespace
//!      (`cluster.local` answered locally, NXDOMAIN for what does not exist, as CoreDNS does;
//!      `example.test` answered; nothing forwarded anywhere);
//!    - `demo/web`: a healthy HTTP server, fetched by `demo/web-client`;
//!    - `demo/resolver`: looks up `api.example.test` (2 dots < ndots:5), so every lookup
//!      walks the three search domains first (ndots amplification);
//!    - `demo/queue`: a listener with backlog 1 that never accepts, hammered by
//!      `demo/queue-client` (accept-queue overflow);
//!    - `demo/slow-dns`: looks up `api.example.test.` while the DNS pod drops every first
//!      AAAA reply to it (an iptables rule in the DNS pod's netns), so glibc re-sends after
//!      its 5 s timeout (the 5-second DNS delay);
//! 4. runs `kubectl netdiag diagnose NS/POD` against each pod **by name**, through kubectl's
//!    plugin mechanism, and prints the reports;
//! 5. tears everything down (on success, on failure and on Ctrl-C): `node::down` finds our
//!    containerd, shims, pods, helpers, mounts, bridge and NAT rules by their paths and names.
//!
//! Every traffic loop in the pods is bounded in count and time, and all traffic stays on
//! the CNI bridge between pods the demo created.

use anyhow::{Context, Result, bail};
use netdiag_tests::node::{self, Node, NodeConfig, PodSpec};
use netdiag_tests::{is_root, sh};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Namespace of the demo's pods.
const NS: &str = "demo";
/// How long each diagnosis captures (the slow-DNS pod needs a whole 5 s re-send in it).
const CAPTURE_SECONDS: u64 = 8;
const SLOW_DNS_CAPTURE_SECONDS: u64 = 12;

pub(crate) fn run(args: &[String]) -> Result<()> {
    let keep = match args {
        [] => false,
        [k] if k == "--keep" => true,
        _ => bail!("usage: cargo xtask demo [--keep]   (--keep leaves the node up afterwards)"),
    };
    if !is_root() {
        bail!("the demo runs a real containerd node (namespaces, CNI, iptables): run it as root");
    }
    let started = Instant::now();
    // `cargo xtask demo` installed the packages and built kubectl-netdiag next to us (the
    // same profile dir, honouring CARGO_TARGET_DIR) before starting this binary.
    let bin = std::env::current_exe()?
        .parent()
        .context("netdiag-lab has no directory")?
        .join("kubectl-netdiag");
    if !bin.is_file() {
        bail!(
            "{} not found: start the demo with `cargo xtask demo`, which builds it first",
            bin.display()
        );
    }

    let config = NodeConfig::lab();
    teardown_on_signal(&config, keep)?;
    let guard = Teardown {
        config: config.clone(),
        keep,
    };
    step("bringing up containerd with the CRI plugin and CNI bridge networking");
    let node = node::up(&config)?;
    let result = create_pods(&node, &config, 300).and_then(|_| diagnose_all(&config, &bin));
    drop(node);
    // Tear down here rather than in the guard's Drop, so that a failed teardown fails the demo.
    std::mem::forget(guard);
    if !keep {
        let _one = TEARDOWN.lock().unwrap_or_else(|p| p.into_inner());
        step("tearing the node down");
        let down =
            node::down(&config).context("tearing the node down; run `cargo xtask lab node down`");
        // The demo's own failure comes first: a teardown error must not hide it.
        match (&result, down) {
            (_, Ok(())) => {}
            (Ok(()), Err(e)) => return Err(e),
            (Err(_), Err(e)) => eprintln!("netdiag-lab demo: {e:#}"),
        }
    }
    result?;
    eprintln!(
        "\nxtask demo: done in {:.0} s{}",
        started.elapsed().as_secs_f64(),
        if keep {
            "; node left up (`cargo xtask lab node down` removes it)"
        } else {
            ", everything torn down"
        }
    );
    Ok(())
}

/// Tears the node down when `run` returns early with an error or panics.
struct Teardown {
    config: NodeConfig,
    keep: bool,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let _one = TEARDOWN.lock().unwrap_or_else(|p| p.into_inner());
        step("tearing the node down");
        if let Err(e) = node::down(&self.config) {
            eprintln!("xtask demo: teardown failed: {e:#}; run `cargo xtask lab node down`");
        }
    }
}

/// Set by the Ctrl-C handler: the main thread stops starting new steps.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Held by whoever tears the node down, so the handler and the main thread never run two
/// teardowns at once.
static TEARDOWN: Mutex<()> = Mutex::new(());

/// Ctrl-C (SIGINT, SIGTERM, SIGHUP) tears the node down too, then exits 130.
fn teardown_on_signal(config: &NodeConfig, keep: bool) -> Result<()> {
    let config = config.clone();
    ctrlc::set_handler(move || {
        INTERRUPTED.store(true, Ordering::SeqCst);
        let _one = TEARDOWN.lock().unwrap_or_else(|p| p.into_inner());
        if !keep {
            eprintln!("\nxtask demo: interrupted: tearing the node down");
            if let Err(e) = node::down(&config) {
                eprintln!("xtask demo: teardown failed: {e:#}; run `cargo xtask lab node down`");
            }
        }
        std::process::exit(130);
    })?;
    Ok(())
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

/// Creates the demo's pods on `node` (see the module docs); their traffic loops run for at
/// most `seconds`. Helper processes (dnsmasq, the listener holder) run detached and carry the
/// node's paths, so `node::down` removes them with everything else.
pub(crate) fn create_pods(node: &Node, config: &NodeConfig, seconds: u32) -> Result<()> {
    step("creating pod kube-system/dns (the cluster DNS: dnsmasq in the pod's netns)");
    let dns_pod = node.run_pod(&PodSpec::new("kube-system", "dns"))?;
    let dns = dns_pod
        .ip
        .clone()
        .context("pod kube-system/dns has no IP")?;
    start_dnsmasq(config, dns_pod.pid, &dns)?;

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

    step("creating pod demo/web-client (HTTP to demo/web by IP, fully qualified)");
    let mut web_client = PodSpec::new(NS, "web-client").with_cluster_dns(&dns);
    web_client.containers = vec![(
        "client".into(),
        Some(bounded_loop(
            seconds * 4,
            seconds,
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
            seconds,
            seconds,
            "getent ahosts api.example.test >/dev/null; sleep 1",
        )),
    )];
    node.run_pod(&resolver)?;

    step("creating pod demo/queue (a listener with backlog 1 that never accepts)");
    let queue = node.run_pod(&PodSpec::new(NS, "queue").with_cluster_dns(&dns))?;
    let queue_ip = queue.ip.clone().context("pod demo/queue has no IP")?;
    hold_listener(config, queue.pid, 9000, 1, seconds)?;
    let mut queue_client = PodSpec::new(NS, "queue-client").with_cluster_dns(&dns);
    queue_client.containers = vec![(
        "client".into(),
        Some(bounded_loop(
            seconds / 2,
            seconds,
            // `timeout` bounds each attempt: a SYN the full queue dropped would otherwise be
            // retried by the kernel for two minutes, and the next round would wait for it.
            &format!(
                "for j in 1 2 3 4 5 6; do timeout -s KILL 2 nc {queue_ip} 9000 </dev/null >/dev/null 2>&1 & done; sleep 2; wait"
            ),
        )),
    )];
    node.run_pod(&queue_client)?;

    step("creating pod demo/slow-dns (its first AAAA reply of every lookup is lost)");
    let mut slow = PodSpec::new(NS, "slow-dns").with_cluster_dns(&dns);
    slow.containers = vec![(
        "client".into(),
        Some(bounded_loop(
            seconds / 5,
            seconds,
            // Fully qualified (trailing dot): no search list, only the lost reply.
            "getent ahosts api.example.test. >/dev/null; sleep 0.5",
        )),
    )];
    let slow = node.run_pod(&slow)?;
    let slow_ip = slow.ip.clone().context("pod demo/slow-dns has no IP")?;
    // In the DNS pod's netns (gone with the pod): every other DNS reply carrying an AAAA
    // question (…00 001c 0001) to demo/slow-dns is dropped, i.e. the first of each lookup.
    sh::run(
        Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", dns_pod.pid))
            .args(["iptables", "-w", "5", "-A", "OUTPUT", "-d", &slow_ip])
            .args(["-p", "udp", "--sport", "53", "-m", "string", "--algo", "bm"])
            .args(["--hex-string", "|00001c0001|", "-m", "statistic"])
            .args([
                "--mode", "nth", "--every", "2", "--packet", "0", "-j", "DROP",
            ]),
    )?;
    Ok(())
}

/// The pods the demo diagnoses, what each should show, and how long to capture.
const EXPECTED: &[(&str, &str, u64)] = &[
    ("web", "nothing (healthy)", CAPTURE_SECONDS),
    ("resolver", "dns_ndots_amplification", CAPTURE_SECONDS),
    ("queue", "accept_queue_overflow", CAPTURE_SECONDS),
    (
        "slow-dns",
        "dns_lost_reply_timeout",
        SLOW_DNS_CAPTURE_SECONDS,
    ),
];

fn diagnose_all(config: &NodeConfig, bin: &Path) -> Result<()> {
    step("pods on this node, as `kubectl netdiag pods` sees them");
    let endpoint = config.endpoint();
    sh::run(Command::new(bin).args(["pods", "--runtime-endpoint", &endpoint]))?;

    // Give the clients a moment to start their loops.
    std::thread::sleep(Duration::from_secs(2));
    let mut failures = Vec::new();
    for (pod, expect, secs) in EXPECTED {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        step(&format!(
            "kubectl netdiag diagnose {NS}/{pod}   (expected: {expect})"
        ));
        if let Err(e) = diagnose(bin, &endpoint, pod, expect, *secs) {
            eprintln!("xtask demo: diagnosing {NS}/{pod} failed: {e:#}");
            failures.push(*pod);
        }
    }
    if !failures.is_empty() {
        bail!("diagnosis failed for: {}", failures.join(", "));
    }
    Ok(())
}

/// Runs `kubectl netdiag diagnose NS/POD` by name through kubectl's plugin mechanism
/// (`kubectl-netdiag` on PATH; the binary itself when kubectl is not installed), prints the
/// report, and checks that the expected finding (or none, for the healthy pod) is in it.
fn diagnose(bin: &Path, endpoint: &str, pod: &str, expect: &str, secs: u64) -> Result<()> {
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
    cmd.args([
        "diagnose",
        &format!("{NS}/{pod}"),
        "--duration",
        &format!("{secs}s"),
    ])
    .env("PATH", &path)
    .env("CONTAINER_RUNTIME_ENDPOINT", endpoint)
    .stdin(Stdio::null())
    .stderr(Stdio::inherit());
    eprintln!("netdiag-lab: $ {}", sh::display(&cmd));
    let out = cmd.output().context("running kubectl netdiag diagnose")?;
    let report = String::from_utf8_lossy(&out.stdout);
    print!("{report}");
    // Exit 0 = clean, 1 = findings, 2 = error.
    match (out.status.code(), expect.starts_with("nothing")) {
        (Some(0), true) => Ok(()),
        (Some(1), false) if report.contains(expect) => Ok(()),
        (Some(0 | 1), _) => bail!("the report does not show what was expected ({expect})"),
        _ => bail!("kubectl netdiag diagnose exited with {}", out.status),
    }
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// The cluster DNS: dnsmasq inside the DNS pod's network namespace (`nsenter --net`),
/// answering `cluster.local` itself (NXDOMAIN for what does not exist, as CoreDNS does) and
/// `example.test` with the demo/web pod's address. Nothing is forwarded anywhere
/// (`--no-resolv`). Detached in its own process group (a Ctrl-C reaches xtask, whose
/// handler tears the node down, dnsmasq included: its files live under the node's dir).
fn start_dnsmasq(config: &NodeConfig, pod_pid: u32, listen: &str) -> Result<()> {
    let dir = config.dir.display().to_string();
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/proc/{pod_pid}/ns/net"))
        .args([
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--local=/cluster.local/",
            "--address=/example.test/192.0.2.80",
            "--log-queries",
            "--user=root",
        ])
        .arg(format!("--listen-address={listen}"))
        .arg(format!("--pid-file={dir}/dnsmasq.pid"))
        .arg(format!("--log-facility={dir}/dnsmasq.log"))
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting dnsmasq (Debian package dnsmasq-base)")?;
    std::thread::sleep(Duration::from_millis(300));
    if let Some(status) = child.try_wait()? {
        let log = std::fs::read_to_string(format!("{dir}/dnsmasq.log")).unwrap_or_default();
        bail!("dnsmasq exited at once ({status}): {log}");
    }
    Ok(())
}

/// Holds a listener with `backlog` that never accepts on `port` in the netns of `pid`, in a
/// detached helper process (`xtask node hold-listener`) that exits after `seconds` and that
/// `node::down` recognises by its `--ndr-node=DIR` argument.
fn hold_listener(
    config: &NodeConfig,
    pid: u32,
    port: u16,
    backlog: i32,
    seconds: u32,
) -> Result<()> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["node", "hold-listener", &node::node_marker(config)])
        .args([
            pid.to_string(),
            port.to_string(),
            backlog.to_string(),
            seconds.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .context("starting the listener holder")?;
    // It prints one line once the socket listens.
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
    }
    if !line.starts_with("listening") {
        let status = child.wait()?;
        bail!("the listener holder failed ({status})");
    }
    Ok(())
}
