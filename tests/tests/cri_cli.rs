//! Root tests of the `kubectl-netdiag` CLI against pods of a real containerd (Debian 1.6,
//! CRI plugin, CNI bridge) brought up by `netdiag_tests::node`: pods by name end to end.
//! One node per test binary, shared by all tests through a lock and torn down at process
//! exit even when tests fail; the test that kills containerd has a second node of its own,
//! so that it runs beside the others instead of holding the shared one for its ~35 s.
//!
//! Not root: skipped with a message, or a failure under `CI=true`.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use netdiag_tests::lab::soak::metric_sum;
use netdiag_tests::node::{self, Node, NodeConfig, Pod, PodSpec, Pods};
use netdiag_tests::prometheus::{free_port, http_get};
use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

/// Kubernetes namespace of this binary's pods.
const NS: &str = "ndr-cli";

/// The shared node, locked for the whole test.
fn node(test: &str) -> Option<MutexGuard<'static, Node>> {
    if !netdiag_tests::require_root(test).expect("root check") {
        return None;
    }
    let m = node::shared_test_node().expect("test node up");
    Some(m.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The node of the test that kills containerd: one of its own, so that the other tests
/// run on the shared node meanwhile.
fn restart_node(test: &str) -> Option<MutexGuard<'static, Node>> {
    if !netdiag_tests::require_root(test).expect("root check") {
        return None;
    }
    let m = node::restart_test_node().expect("restart test node up");
    Some(m.lock().unwrap_or_else(|p| p.into_inner()))
}

fn endpoint() -> String {
    NodeConfig::test().endpoint()
}

fn bin() -> PathBuf {
    netdiag_tests::netdiag_bin().expect("kubectl-netdiag built")
}

/// `kubectl-netdiag ARGS` against the test node, stdin closed.
fn cli(args: &[&str]) -> Output {
    cli_at(&endpoint(), args)
}

/// `kubectl-netdiag ARGS` against the runtime at `endpoint`, stdin closed.
fn cli_at(endpoint: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("CONTAINER_RUNTIME_ENDPOINT", endpoint)
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl-netdiag")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A shell loop bounded in rounds and seconds; the container sleeps afterwards.
fn bounded(count: u32, seconds: u32, body: &str) -> Option<Vec<String>> {
    Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(
            "end=$(( $(date +%s) + {seconds} )); i=0; \
             while [ $i -lt {count} ] && [ $(date +%s) -lt $end ]; do {body}; i=$((i+1)); done; \
             exec sleep 2147483647"
        ),
    ])
}

/// A healthy HTTP server pod (`name`) and a client pod fetching from it every 0.2 s.
fn web_pods(pods: &mut Pods<'_>, name: &str) -> Pod {
    let mut web = PodSpec::new(NS, name);
    web.containers = vec![(
        "httpd".into(),
        Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo ok > /tmp/index.html; exec /bin/busybox httpd -f -p 8080 -h /tmp".into(),
        ]),
    )];
    let web = pods.run(&web).expect("run pod");
    let ip = web.ip.clone().expect("web pod IP");
    let mut client = PodSpec::new(NS, &format!("{name}-client"));
    client.containers = vec![(
        "client".into(),
        bounded(
            600,
            120,
            &format!(
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 8080 >/dev/null; sleep 0.2"
            ),
        ),
    )];
    pods.run(&client).expect("run pod");
    web
}

fn findings(out: &Output) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "diagnose JSON: {e}\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    v["findings"]
        .as_array()
        .expect("findings[]")
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or_default().to_string(),
                f["confidence"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn cli_diagnose_by_name_finds_accept_queue_overflow_and_nothing_on_a_healthy_pod() {
    let Some(node) = node("cli_diagnose_by_name_finds_accept_queue_overflow") else {
        return;
    };
    let mut pods = Pods::new(&node);
    let web = web_pods(&mut pods, "web");
    // A listener with backlog 1 that never accepts, inside a real pod, and a client pod
    // opening six connections every 2 s (each attempt killed after 2 s).
    let queue = pods.run(&PodSpec::new(NS, "queue")).expect("run pod");
    let queue_ip = queue.ip.clone().expect("queue pod IP");
    let _listener = node::hold_listener_in_netns(queue.pid, 9000, 1).expect("listener");
    let mut client = PodSpec::new(NS, "queue-client");
    client.containers = vec![(
        "client".into(),
        bounded(
            60,
            120,
            &format!(
                "for j in 1 2 3 4 5 6; do timeout -s KILL 2 nc {queue_ip} 9000 </dev/null >/dev/null 2>&1 & done; sleep 2; wait"
            ),
        ),
    )];
    pods.run(&client).expect("run pod");

    // The two pods are diagnosed at the same time: each run captures in its own pod's
    // namespace, and neither waits for the other's duration.
    let (out, healthy) = std::thread::scope(|s| {
        // The healthy pod, by `-n` and bare name this time.
        let healthy = s.spawn(|| {
            cli(&[
                "diagnose",
                "-n",
                NS,
                "web",
                "--duration",
                "3s",
                "--output",
                "json",
            ])
        });
        let out = cli(&[
            "diagnose",
            "ndr-cli/queue",
            "--runtime-endpoint",
            &endpoint(),
            "--duration",
            "4s",
            "--output",
            "json",
        ]);
        (out, healthy.join().expect("diagnose of the healthy pod"))
    });
    let f = findings(&out);
    assert_eq!(out.status.code(), Some(1), "{f:?}\n{}", text(&out.stderr));
    assert!(
        f.iter()
            .any(|(k, c)| k == "accept_queue_overflow" && c != "possible"),
        "{f:?}"
    );
    assert!(
        text(&out.stderr).contains(&format!("pod ndr-cli/queue (pid {})", queue.pid)),
        "{}",
        text(&out.stderr)
    );

    // The healthy pod: real traffic, no findings, exit 0.
    let out = healthy;
    let f = findings(&out);
    assert_eq!(out.status.code(), Some(0), "{f:?}\n{}", text(&out.stderr));
    assert!(f.is_empty(), "{f:?}");
    // It did see the client's connections to it.
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["tcp"]["handshakes"].as_u64().unwrap_or(0) >= 3, "{v}");
    assert!(
        v["sources"][0]["name"]
            .as_str()
            .is_some_and(|n| n.contains(&format!("pod ndr-cli/web (pid {})", web.pid))),
        "{v}"
    );
}

/// dnsmasq inside a pod's netns (the cluster DNS), killed and reaped when dropped.
struct Dnsmasq(std::process::Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cli_diagnose_by_name_finds_ndots_amplification() {
    let Some(node) = node("cli_diagnose_by_name_finds_ndots_amplification") else {
        return;
    };
    let mut pods = Pods::new(&node);
    // The cluster DNS: dnsmasq in a pod's netns, cluster.local answered locally (NXDOMAIN),
    // example.test answered, nothing forwarded.
    let dns_pod = pods.run(&PodSpec::new(NS, "dns")).expect("run pod");
    let dns_ip = dns_pod.ip.clone().expect("dns pod IP");
    let log = NodeConfig::test()
        .dir
        .join(format!("dnsmasq-{}.log", std::process::id()));
    let child = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", dns_pod.pid))
        .args([
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--local=/cluster.local/",
            "--address=/example.test/192.0.2.80",
            "--user=root",
            "--pid-file=",
        ])
        .arg(format!("--listen-address={dns_ip}"))
        .arg(format!("--log-facility={}", log.display()))
        .stdin(Stdio::null())
        .spawn()
        .expect("dnsmasq (Debian package dnsmasq-base)");
    let _dnsmasq = Dnsmasq(child);
    // A pod with kubelet's DNS config looking up a 2-dot name (< ndots:5).
    let mut resolver = PodSpec::new(NS, "resolver").with_cluster_dns(&dns_ip);
    resolver.containers = vec![(
        "client".into(),
        bounded(
            240,
            120,
            "getent ahosts api.example.test >/dev/null; sleep 0.5",
        ),
    )];
    pods.run(&resolver).expect("run pod");
    let out = cli(&[
        "diagnose",
        "ndr-cli/resolver",
        "--duration",
        "3s",
        "--output",
        "json",
    ]);
    let f = findings(&out);
    assert_eq!(out.status.code(), Some(1), "{f:?}\n{}", text(&out.stderr));
    assert!(
        f.iter()
            .any(|(k, c)| k == "dns_ndots_amplification" && c == "confirmed"),
        "{f:?}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The resolv.conf came from the pod's root: kubelet's ndots and search list.
    assert_eq!(v["resolv_conf"]["ndots"], 5, "{v}");
    assert_eq!(
        v["resolv_conf"]["search"][0],
        format!("{NS}.svc.cluster.local"),
        "{v}"
    );
}

#[test]
fn cli_capture_by_name_through_kubectl_plugin_into_tshark() {
    let Some(node) = node("cli_capture_by_name_through_kubectl_plugin_into_tshark") else {
        return;
    };
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        panic!("kubectl is not installed (LAB.md: kubectl 1.32 is on the machine)");
    }
    let mut pods = Pods::new(&node);
    let web = web_pods(&mut pods, "cap");
    let ip = web.ip.clone().unwrap();
    let dir = bin().parent().unwrap().to_path_buf();
    let path = std::env::join_paths(std::iter::once(dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin")),
    )))
    .unwrap();
    // kubectl finds `kubectl-netdiag` on PATH; it needs no cluster for a plugin.
    let mut capture = Command::new("kubectl")
        .args(["netdiag", "capture", &format!("{NS}/cap"), "-w", "-"])
        .args(["-c", "40", "--duration", "10s", "tcp port 8080"])
        .env("PATH", &path)
        .env("KUBECONFIG", "/dev/null")
        .env("CONTAINER_RUNTIME_ENDPOINT", endpoint())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl netdiag capture");
    let pcap = capture.stdout.take().unwrap();
    let tshark = Command::new("tshark")
        .args([
            "-r",
            "-",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "tcp.srcport",
            "-e",
            "http.request.method",
        ])
        .stdin(pcap)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = capture.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = capture.kill();
            let _ = capture.wait();
            panic!("kubectl netdiag capture did not end within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut cap_err = String::new();
    capture
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut cap_err)
        .unwrap();
    let ts = tshark.wait_with_output().unwrap();
    assert!(status.success(), "capture: {status}\n{cap_err}");
    assert!(ts.status.success(), "tshark: {}", text(&ts.stderr));
    let lines: Vec<String> = text(&ts.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 40, "-c 40: {lines:?}\n{cap_err}");
    assert!(
        lines.iter().any(|l| l.starts_with(&format!("{ip}\t8080"))),
        "no packet from the pod's server: {lines:?}"
    );
    assert!(lines.iter().any(|l| l.ends_with("GET")), "{lines:?}");
}

#[test]
fn cli_counters_by_name_show_the_pods_listener_and_address() {
    let Some(node) = node("cli_counters_by_name_show_the_pods_listener_and_address") else {
        return;
    };
    let mut pods = Pods::new(&node);
    let pod = pods.run(&PodSpec::new(NS, "counted")).expect("run pod");
    let _listener = node::hold_listener_in_netns(pod.pid, 9100, 3).expect("listener");
    let out = cli(&["counters", "ndr-cli/counted", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("counters JSON");
    let listener = v["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["port"] == 9100)
        .unwrap_or_else(|| panic!("listener 9100 missing: {v}"));
    assert_eq!(listener["backlog"], 3, "{listener}");
    let eth0 = v["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eth0")
        .unwrap_or_else(|| panic!("no eth0: {v}"));
    let ip = pod.ip.clone().unwrap();
    assert!(eth0["addresses"].to_string().contains(&ip), "{eth0}");
    assert!(
        v["counters"].as_object().is_some_and(|c| !c.is_empty()),
        "{v}"
    );
    // Not the node's namespace: the node's bridge is not in it.
    assert!(
        !v["interfaces"]
            .to_string()
            .contains(&NodeConfig::test().bridge),
        "{v}"
    );
}

#[test]
fn cli_c_container_picks_the_container_and_lists_the_others() {
    let Some(node) = node("cli_c_container_picks_the_container_and_lists_the_others") else {
        return;
    };
    let mut pods = Pods::new(&node);
    let mut spec = PodSpec::new(NS, "two");
    spec.containers = vec![("app".into(), None), ("sidecar".into(), None)];
    let pod = pods.run(&spec).expect("run pod");
    let sidecar_pid = pod.containers["sidecar"].1;
    let out = cli(&[
        "diagnose",
        "ndr-cli/two",
        "-c",
        "sidecar",
        "--duration",
        "1s",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("pid {sidecar_pid}")),
        "{}",
        text(&out.stderr)
    );
    // capture keeps tcpdump's -c COUNT; the container is --container there.
    let out = cli(&[
        "capture",
        "ndr-cli/two",
        "--container",
        "app",
        "-c",
        "1",
        "--duration",
        "1s",
        "-w",
        "/dev/null",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = cli(&["counters", "ndr-cli/two", "-c", "nginx"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("app (running)") && err.contains("sidecar (running)"),
        "{err}"
    );
}

#[test]
fn cli_errors_are_actionable_and_exit_2() {
    let Some(node) = node("cli_errors_are_actionable_and_exit_2") else {
        return;
    };
    let mut pods = Pods::new(&node);
    pods.run(&PodSpec::new(NS, "frontend-7d9f"))
        .expect("run pod");

    // No runtime socket: CONTAINER_RUNTIME_ENDPOINT names a missing one.
    let missing = format!(
        "unix:///run/ndr-missing-{}/containerd.sock",
        std::process::id()
    );
    let out = Command::new(bin())
        .args(["diagnose", "web", "--duration", "1s"])
        .env("CONTAINER_RUNTIME_ENDPOINT", &missing)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{} (from $CONTAINER_RUNTIME_ENDPOINT)",
            missing.trim_start_matches("unix://")
        )),
        "{err}"
    );
    // A HOME-less, minimal environment and --runtime-endpoint at nothing.
    let out = Command::new(bin())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args([
            "counters",
            "web",
            "--runtime-endpoint",
            "unix:///nonexistent",
        ])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/nonexistent (--runtime-endpoint)"), "{err}");
    // Nothing given and none of the known sockets here: the list of what was tried.
    if netdiag::cri::endpoint::KNOWN_SOCKETS
        .iter()
        .all(|s| !std::path::Path::new(s).exists())
    {
        let out = Command::new(bin())
            .env_remove("CONTAINER_RUNTIME_ENDPOINT")
            .args(["diagnose", "web", "--duration", "1s"])
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        for s in [
            "/run/containerd/containerd.sock",
            "/run/crio/crio.sock",
            "--runtime-endpoint",
        ] {
            assert!(err.contains(s), "{s} missing from: {err}");
        }
    }

    // Permission denied: an unprivileged user cannot reach the socket.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .args(["diagnose", "ndr-cli/frontend-7d9f", "--duration", "1s"])
        .env("CONTAINER_RUNTIME_ENDPOINT", endpoint())
        .output()
        .expect("setpriv (util-linux)");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("permission denied"), "{err}");
    assert!(err.contains("run as root on the node"), "{err}");

    // Pod not on this node: near matches.
    let out = cli(&["diagnose", "ndr-cli/frontend-7d8f", "--duration", "1s"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ndr-cli/frontend-7d9f"), "{err}");
    let out = cli(&[
        "capture",
        "default/frontend-7d9f",
        "-c",
        "1",
        "-w",
        "/dev/null",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("did you mean: ndr-cli/frontend-7d9f?"),
        "{err}"
    );

    // Pod not ready: its only sandbox is stopped.
    let stopped = pods.run(&PodSpec::new(NS, "stopped")).expect("run pod");
    node.stop_pod(&stopped.sandbox_id).expect("stop pod");
    let out = cli(&["diagnose", "ndr-cli/stopped", "--duration", "1s"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("none is ready"), "{err}");
    assert!(err.contains("kubectl describe pod"), "{err}");
}

/// A CLI run in the background against the runtime at `endpoint`, its stdout and stderr
/// in files; killed if still running when dropped.
struct Background {
    child: std::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Background {
    fn spawn(endpoint: &str, args: &[&str], dir: &std::path::Path, name: &str) -> Background {
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        let child = Command::new(bin())
            .args(args)
            .env("CONTAINER_RUNTIME_ENDPOINT", endpoint)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("run kubectl-netdiag");
        Background {
            child,
            stdout,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn wait_for_stderr(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.stderr().contains(needle) {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!("ended ({s}) before {needle:?}:\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within 30 s:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (at most `timeout`) for the exit; its code, stdout and stderr.
    fn finish(mut self, timeout: Duration) -> (Option<i32>, Vec<u8>, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {timeout:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        (
            status.code(),
            std::fs::read(&self.stdout).unwrap_or_default(),
            self.stderr(),
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes pods through a connection of its own (the node's may be down meanwhile), and a
/// scratch directory, however the test ends.
struct Cleanup {
    config: NodeConfig,
    pods: Vec<String>,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match node::connect(&self.config) {
            Ok(n) => {
                for id in &self.pods {
                    if let Err(e) = n.remove_pod(id) {
                        eprintln!("removing pod {id}: {e:#}");
                    }
                }
            }
            Err(e) => eprintln!("removing pods {:?}: {e:#}", self.pods),
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// containerd dies (SIGKILL: its socket stays, stale), its socket is then removed, and it
/// starts again, while `capture -w FILE`, `diagnose` and `watch` of a pod given by name
/// run. The pod's shim, processes and network namespace outlive containerd, and the runs
/// hold the namespace open from the start: all end normally at their `--duration`/`--for`,
/// exit 0 (as for any run: README, exit codes), the file whole and holding packets from
/// before, during and after the outage. `watch` asks the runtime about the pod's sandbox
/// every 10 s: the outage outlasts one such check, which warns once and goes on capturing
/// (its packet counter rises meanwhile), and the first check after the restart says the
/// runtime answers again; the pod never "went away". Meanwhile a run that starts needs the
/// runtime and fails at once, exit 2, naming the socket and what to do: first the stale
/// socket (nothing accepts on it), then the missing one.
#[test]
fn cli_capture_and_diagnose_by_name_outlive_a_containerd_restart() {
    let Some(mut node) =
        restart_node("cli_capture_and_diagnose_by_name_outlive_a_containerd_restart")
    else {
        return;
    };
    let endpoint = node.config.endpoint();
    let dir = std::env::temp_dir().join(format!("rely-cri-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cleanup = Cleanup {
        config: node.config.clone(),
        pods: Vec::new(),
        dir: dir.clone(),
    };
    // A web server pod and a client pod fetching from it every 0.2 s (web_pods, without the
    // Pods guard, which would borrow the node across its restart).
    let mut web = PodSpec::new(NS, "restart");
    web.containers = vec![(
        "httpd".into(),
        Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo ok > /tmp/index.html; exec /bin/busybox httpd -f -p 8080 -h /tmp".into(),
        ]),
    )];
    let web = node.run_pod(&web).expect("run web pod");
    cleanup.pods.push(web.sandbox_id.clone());
    let ip = web.ip.clone().expect("web pod IP");
    let mut client = PodSpec::new(NS, "restart-client");
    client.containers = vec![(
        "client".into(),
        bounded(
            600,
            120,
            &format!(
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 8080 >/dev/null; sleep 0.2"
            ),
        ),
    )];
    let client = node.run_pod(&client).expect("run client pod");
    cleanup.pods.push(client.sandbox_id.clone());

    let pcap = dir.join("restart.pcapng");
    let pod = format!("{NS}/restart");
    // Long enough for the outage to outlast a sandbox check of `watch` (every 10 s), and
    // for one more check after the restart.
    const RUN: &str = "34s";
    let mut capture = Background::spawn(
        &endpoint,
        &[
            "capture",
            &pod,
            "-w",
            pcap.to_str().unwrap(),
            "--format",
            "pcapng",
            "--duration",
            RUN,
            "tcp port 8080",
        ],
        &dir,
        "capture",
    );
    let mut diagnose = Background::spawn(
        &endpoint,
        &["diagnose", &pod, "--duration", RUN, "--output", "json"],
        &dir,
        "diagnose",
    );
    let metrics: std::net::SocketAddr = ([127, 0, 0, 1], free_port().expect("free port")).into();
    let metrics_arg = metrics.to_string();
    let mut watch = Background::spawn(
        &endpoint,
        &[
            "watch",
            &pod,
            "--for",
            RUN,
            "-o",
            "json",
            "--tick",
            "1s",
            "--metrics",
            &metrics_arg,
        ],
        &dir,
        "watch",
    );
    let packets = || -> f64 {
        http_get(metrics, "/metrics")
            .ok()
            .and_then(|(_, body)| metric_sum(&body, "netdiag_capture_packets_total"))
            .unwrap_or(0.0)
    };
    capture.wait_for_stderr("capturing on");
    diagnose.wait_for_stderr("diagnosing");
    watch.wait_for_stderr("watching");
    std::thread::sleep(Duration::from_secs(2));

    // containerd killed: the socket file stays, nothing accepts on it.
    let killed_at = epoch_now();
    node.kill_containerd().expect("kill containerd");
    let socket = node.config.socket();
    // Whatever fails while containerd is down, it is started again before the test ends:
    // the pods are removed through it (Cleanup).
    let mut counted_in_outage = (0.0, 0.0);
    let outage = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runs_started_without_the_runtime(&endpoint, &socket, &pod);
        // watch's sandbox check finds no runtime: one warning, and it goes on.
        watch.wait_for_stderr("cannot check the pod's sandbox");
        counted_in_outage.0 = packets();
        std::thread::sleep(Duration::from_secs(3));
        counted_in_outage.1 = packets();
    }));
    node.start_containerd(true).expect("start containerd again");
    let restarted_at = epoch_now();
    if let Err(panic) = outage {
        std::panic::resume_unwind(panic);
    }
    assert!(
        restarted_at < killed_at + 20.0,
        "containerd took {:.1} s to come back: the runs ({RUN}) may end before the next check",
        restarted_at - killed_at
    );
    assert!(
        counted_in_outage.1 > counted_in_outage.0,
        "watch counted no packet while containerd was down: {counted_in_outage:?}"
    );
    watch.wait_for_stderr("the container runtime answers again");

    let (code, out, werr) = watch.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "watch across the restart:\n{werr}");
    assert!(
        werr.contains("ended (duration reached)") && !werr.contains("went away"),
        "watch across the restart:\n{werr}"
    );
    assert!(
        text(&out).trim().is_empty(),
        "watch found something in healthy HTTP:\n{}",
        text(&out)
    );
    let (code, _, err) = capture.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "capture across the restart:\n{err}");
    let (code, out, derr) = diagnose.finish(Duration::from_secs(60));
    let report: serde_json::Value = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("diagnose JSON: {e}\nstdout: {}\nstderr: {derr}", text(&out)));
    assert_eq!(
        code,
        Some(0),
        "diagnose across the restart:\n{derr}\n{report}"
    );
    assert!(
        report["findings"].as_array().is_some_and(|f| f.is_empty()),
        "{report}"
    );

    // tshark reads the whole file without complaint, and it holds the pod's HTTP traffic
    // from before the kill, during the outage and after the restart.
    let ts = Command::new("tshark")
        .args(["-r", pcap.to_str().unwrap(), "-T", "fields"])
        .args([
            "-e",
            "frame.time_epoch",
            "-e",
            "ip.src",
            "-e",
            "tcp.srcport",
        ])
        .output()
        .expect("tshark");
    let complaints: Vec<String> = text(&ts.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("Running as user"))
        .map(str::to_string)
        .collect();
    assert!(
        ts.status.success() && complaints.is_empty(),
        "tshark: {complaints:?}"
    );
    let times: Vec<f64> = text(&ts.stdout)
        .lines()
        .filter(|l| l.contains(&format!("{ip}\t8080")))
        .filter_map(|l| l.split('\t').next()?.parse().ok())
        .collect();
    let before = times.iter().filter(|&&t| t < killed_at).count();
    let during = times
        .iter()
        .filter(|&&t| t > killed_at && t < restarted_at)
        .count();
    let after = times.iter().filter(|&&t| t > restarted_at).count();
    eprintln!(
        "containerd down {:.1} s; server packets: {before} before, {during} during, {after} \
         after; diagnose: {} handshakes",
        restarted_at - killed_at,
        report["tcp"]["handshakes"]
    );
    assert!(
        before > 0 && during > 0 && after > 0,
        "server packets before the kill {before}, while containerd was down {during}, after \
         the restart {after} (of {})",
        times.len()
    );
    // diagnose saw the connections of the whole run too, not only the first seconds.
    let handshakes = report["tcp"]["handshakes"].as_u64().unwrap_or(0);
    assert!(
        handshakes >= 40,
        "{handshakes} handshakes in {RUN}: {report}"
    );
    drop(cleanup);
}

/// While the runtime is down, a run that starts (and needs it to find the pod) fails at
/// once with exit 2, naming the socket and what to do: first the stale socket containerd
/// left (nothing accepts on it), then none at all.
fn runs_started_without_the_runtime(endpoint: &str, socket: &std::path::Path, pod: &str) {
    assert!(socket.exists(), "containerd removed its socket on SIGKILL");
    let stale = cli_at(endpoint, &["diagnose", pod, "--duration", "1s"]);
    let err = text(&stale.stderr);
    assert_eq!(stale.status.code(), Some(2), "stale socket: {err}");
    assert!(
        err.contains(&format!(
            "{} (from $CONTAINER_RUNTIME_ENDPOINT)",
            socket.display()
        )) && err.contains("not running")
            && err.contains("--runtime-endpoint"),
        "stale socket: {err}"
    );
    // The socket gone too.
    std::fs::remove_file(socket).expect("remove the stale socket");
    let gone = cli_at(endpoint, &["capture", pod, "-c", "1", "-w", "/dev/null"]);
    let err = text(&gone.stderr);
    assert_eq!(gone.status.code(), Some(2), "missing socket: {err}");
    assert!(
        err.contains(&format!(
            "{} (from $CONTAINER_RUNTIME_ENDPOINT)",
            socket.display()
        )) && err.contains("no container runtime socket found")
            && err.contains("--runtime-endpoint"),
        "missing socket: {err}"
    );
}

/// `watch NAME` follows a pod whose sandbox is stopped and created again under the same
/// name (kubelet recreating it, next attempt): it says so on stderr, resolves the pod
/// again, and captures in the new sandbox (the `--metrics` packet counter rises after
/// the message); SIGINT ends it with a summary and exit 0. Here the capture on the pod's
/// eth0 ends when CNI deletes the interface.
#[test]
fn cli_watch_follows_a_recreated_pod_by_name() {
    watch_follows_a_recreated_pod(
        "cli_watch_follows_a_recreated_pod_by_name",
        "recreated",
        &[],
        "went away",
    );
}

/// The same on `-i any`: the capture in the old namespace (which netdiag holds) never
/// fails, so only watch's sandbox check with the runtime (every 10 s) sees the pod go:
/// a stopped sandbox is not ready.
#[test]
fn cli_watch_on_any_follows_a_recreated_pod_by_its_sandbox() {
    watch_follows_a_recreated_pod(
        "cli_watch_on_any_follows_a_recreated_pod_by_its_sandbox",
        "recreated-any",
        &["-i", "any"],
        "the runtime no longer runs its sandbox",
    );
}

fn watch_follows_a_recreated_pod(test: &str, name: &str, extra: &[&str], gone_because: &str) {
    let Some(node) = node(test) else {
        return;
    };
    let mut pods = Pods::new(&node);
    let mut spec = PodSpec::new(NS, name);
    // ICMP echo to the CNI bridge (the pod's gateway) five times a second: no finding.
    spec.containers = vec![(
        "pinger".into(),
        bounded(1500, 300, "ping -c 1 -W 1 10.88.0.1 >/dev/null; sleep 0.2"),
    )];
    let first = pods.run(&spec).expect("run pod");
    let port = free_port().expect("free port");
    let metrics: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let packets = || -> f64 {
        http_get(metrics, "/metrics")
            .ok()
            .and_then(|(_, body)| metric_sum(&body, "netdiag_capture_packets_total"))
            .unwrap_or(0.0)
    };
    let stderr_path = std::env::temp_dir().join(format!("ndr-watch-{}.stderr", std::process::id()));
    let stderr_file = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut child = Command::new(bin())
        .args([
            "watch",
            &format!("{NS}/{name}"),
            "--for",
            "120s",
            "--metrics",
        ])
        .arg(metrics.to_string())
        .args(extra)
        .args(["-o", "json", "--tick", "1s"])
        .env("CONTAINER_RUNTIME_ENDPOINT", endpoint())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr_file)
        .spawn()
        .expect("start watch");
    // However the test ends: the watch process (ours, by PID) and its stderr file go.
    struct Cleanup(Option<std::process::Child>, PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Some(c) = self.0.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = std::fs::remove_file(&self.1);
        }
    }
    let mut stdout = child.stdout.take().expect("stdout");
    let mut guard = Cleanup(Some(child), stderr_path.clone());
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let wait_for = |what: &dyn Fn() -> bool, why: &str, secs: u64| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !what() {
            assert!(
                Instant::now() < deadline,
                "{test}: {why} within {secs} s; stderr:\n{}",
                stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(&|| stderr().contains("watching"), "watch did not start", 30);
    wait_for(&|| packets() >= 10.0, "no packets counted before", 20);

    // Recreate: the sandbox stops (CNI DEL removes its veth), a new one of the same name
    // runs, as kubelet does with the next attempt number.
    let t = Instant::now();
    node.stop_pod(&first.sandbox_id)
        .expect("stop the pod's sandbox");
    eprintln!("{test}: StopPodSandbox took {:?}", t.elapsed());
    wait_for(
        &|| stderr().contains("went away") && stderr().contains(gone_because),
        &format!("watch did not say the pod went away ({gone_because})"),
        60,
    );
    eprintln!(
        "{test}: watch said so {:?} after the stop began",
        t.elapsed()
    );
    spec.attempt = 1;
    let second = pods.run(&spec).expect("run pod");
    assert_ne!(second.sandbox_id, first.sandbox_id);
    assert_ne!(second.pid, first.pid);
    wait_for(
        &|| stderr().contains("is back"),
        "watch did not follow the recreated pod",
        30,
    );
    let at_back = packets();
    wait_for(
        &|| packets() >= at_back + 10.0,
        "no packets counted in the new sandbox",
        20,
    );

    let mut child = guard.0.take().expect("watch child");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT watch");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{test}: watch did not end after SIGINT; stderr:\n{}",
                stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    let _ = stdout.read_to_string(&mut out);
    let err = stderr();
    eprintln!("{test}: stderr:\n{err}");
    assert_eq!(
        status.code(),
        Some(0),
        "{test}: exit; stdout {out}; stderr:\n{err}"
    );
    assert!(err.contains("ended (SIGINT)"), "{test}: {err}");
    assert!(
        out.trim().is_empty(),
        "{test}: findings on healthy pings: {out}"
    );
}
