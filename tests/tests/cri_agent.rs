//! Root tests of the container image (`cargo xtask image`) run as the DaemonSet of
//! `deploy/` runs it, on a real containerd node (`netdiag_tests::node`): the image is
//! imported with `ctr images import`, an agent pod gets the DaemonSet's pod spec (the
//! node's PID and network namespaces, privileged, the runtime socket mounted read-only at
//! /run/containerd/containerd.sock), and `kubectl-netdiag diagnose NS/POD` run inside it
//! through the CRI's ExecSync finds what it finds on the node itself. Without hostPID,
//! hostNetwork or the socket, it says which is missing.
//!
//! Needs root and the image archive (`cargo xtask image`, which `cargo xtask ci` builds
//! before the tests): either missing is a skip with a message, or a failure under `CI=true`.

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use netdiag_tests::node::{self, Node, NodeConfig, Pod, PodSpec, Pods};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

/// Kubernetes namespace of this binary's pods.
const NS: &str = "ndr-agent";

/// The reference `cargo xtask image` gives the image (its index's `io.containerd.image.name`).
fn image_ref() -> String {
    format!(
        "ghcr.io/netdiag/kubectl-netdiag:{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// `$NETDIAG_IMAGE`, else `target/image/kubectl-netdiag.oci.tar` of this target dir.
fn image_archive(test: &str) -> Option<PathBuf> {
    let path = match std::env::var_os("NETDIAG_IMAGE") {
        Some(p) => PathBuf::from(p),
        None => {
            // target/debug/deps/<test>-<hash> → target/image/…
            let exe = std::env::current_exe().expect("current_exe");
            let target = exe
                .ancestors()
                .nth(3)
                .expect("test binary under target/<profile>/deps");
            target.join("image/kubectl-netdiag.oci.tar")
        }
    };
    if path.is_file() {
        return Some(path);
    }
    assert!(
        !netdiag_tests::is_ci(),
        "{test}: {} missing and CI=true forbids skipping: run `cargo xtask image`",
        path.display()
    );
    eprintln!(
        "{test}: skipped, {} missing (run `cargo xtask image`)",
        path.display()
    );
    None
}

/// The shared node with the image imported, locked for the whole test.
fn node(test: &str) -> Option<MutexGuard<'static, Node>> {
    if !netdiag_tests::require_root(test).expect("root check") {
        return None;
    }
    let archive = image_archive(test)?;
    let m = node::shared_test_node().expect("test node up");
    let node = m.lock().unwrap_or_else(|p| p.into_inner());
    node.import_archive(&archive).expect("ctr images import");
    let images = node.images().expect("ctr images ls");
    assert!(
        images.contains(&image_ref()),
        "{} not among the imported images {images:?}",
        image_ref()
    );
    Some(node)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The pod spec of deploy/daemonset.yaml as kubelet hands it to the runtime, with the
/// test node's socket mounted where a node's is; `host_pid`, `host_network` and `socket`
/// switch one part off to see the message that names it.
fn agent_spec(name: &str, host_pid: bool, host_network: bool, socket: bool) -> PodSpec {
    let mut spec = PodSpec::new(NS, name);
    spec.containers = vec![("netdiag".into(), None)]; // the image's entrypoint: `agent`
    spec.image = Some(image_ref());
    spec.host_pid = host_pid;
    spec.host_network = host_network;
    spec.privileged = true;
    if socket {
        spec.mounts = vec![(
            NodeConfig::test().socket(),
            "/run/containerd/containerd.sock".into(),
            true,
        )];
    }
    spec
}

/// The agent's log lines (CRI log format: `TIME STREAM TAG LINE`), once it has said what
/// it sees.
fn agent_line(pod: &Pod) -> String {
    let log = pod.log_dir.join("netdiag.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let raw = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = raw.lines().find(|l| l.contains("kubectl-netdiag agent")) {
            let line = line.splitn(4, ' ').nth(3).unwrap_or(line).to_string();
            eprintln!("{}: {line}", log.display());
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "the agent printed nothing in 10 s ({}: {raw:?})",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `kubectl-netdiag ARGS` inside the agent container (CRI ExecSync, as `kubectl exec` does).
fn exec(node: &Node, pod: &Pod, args: &[&str]) -> (i32, String, String) {
    let id = &pod.containers["netdiag"].0;
    let mut cmd = vec!["kubectl-netdiag"];
    cmd.extend_from_slice(args);
    let (code, stdout, stderr) = node
        .exec(id, &cmd, Duration::from_secs(60))
        .expect("ExecSync in the agent");
    eprintln!("exec {cmd:?} → exit {code}\n{stderr}");
    (code, stdout, stderr)
}

fn findings(stdout: &str, stderr: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("diagnose JSON: {e}\nstdout: {stdout}\nstderr: {stderr}"));
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

fn confidence_of<'a>(f: &'a [(String, String)], kind: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == kind).map(|(_, c)| c.as_str())
}

/// What the test builds is what deploy/ ships: the manifest asks for the same pod.
#[test]
fn deploy_manifest_asks_for_what_the_agent_test_runs() {
    let yaml =
        std::fs::read_to_string(netdiag_tests::workspace_root().join("deploy/daemonset.yaml"))
            .expect("deploy/daemonset.yaml");
    for needed in [
        "hostPID: true",
        "hostNetwork: true",
        "privileged: true",
        "automountServiceAccountToken: false",
        "mountPath: /run/containerd\n",
        "readOnly: true",
        "args: [\"agent\"]",
        "- operator: Exists",
        "containerPort: 9477",
        &format!("image: {}", image_ref()),
    ] {
        assert!(
            yaml.contains(needed),
            "deploy/daemonset.yaml lacks {needed:?}"
        );
    }
}

#[test]
fn agent_pod_diagnoses_a_pod_by_name_as_the_node_does_and_names_what_is_missing() {
    let test = "agent_pod_diagnoses_a_pod_by_name";
    let Some(node) = node(test) else {
        return;
    };
    let mut pods = Pods::new(&node);

    // The accept-queue overflow of cri_cli.rs: a listener with backlog 1 that never
    // accepts inside a real pod, and a client pod opening six connections every 2 s.
    let queue = pods.run(&PodSpec::new(NS, "queue")).expect("run pod");
    let queue_ip = queue.ip.clone().expect("queue pod IP");
    let _listener = node::hold_listener_in_netns(queue.pid, 9000, 1).expect("listener");
    let mut client = PodSpec::new(NS, "queue-client");
    client.containers = vec![(
        "client".into(),
        Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "end=$(( $(date +%s) + 120 )); i=0; \
                 while [ $i -lt 60 ] && [ $(date +%s) -lt $end ]; do \
                 for j in 1 2 3 4 5 6; do timeout -s KILL 2 nc {queue_ip} 9000 </dev/null >/dev/null 2>&1 & done; \
                 sleep 2; wait; i=$((i+1)); done; exec sleep 2147483647"
            ),
        ]),
    )];
    pods.run(&client).expect("run pod");

    // The DaemonSet's pod: it says it sees everything.
    let agent = pods
        .run(&agent_spec("agent", true, true, true))
        .expect("run pod");
    let line = agent_line(&agent);
    for seen in [
        "runtime socket /run/containerd/containerd.sock (runtime pid ",
        "host PID namespace: yes",
        "host network: yes",
    ] {
        assert!(
            line.contains(seen),
            "{seen:?} not in the agent's line: {line}"
        );
    }

    // Inside it, by name through the mounted socket: the node's PID of the pod, the
    // finding confirmed by the node-side counters read from the host network namespace.
    let args = [
        "diagnose",
        &format!("{NS}/queue"),
        "--duration",
        "4s",
        "--output",
        "json",
    ];
    let (code, stdout, stderr) = exec(&node, &agent, &args);
    let inside = findings(&stdout, &stderr);
    assert_eq!(code, 1, "{inside:?}\n{stderr}");
    assert_eq!(
        confidence_of(&inside, "accept_queue_overflow"),
        Some("confirmed"),
        "{inside:?}\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("pod {NS}/queue (pid {})", queue.pid)),
        "{stderr}"
    );
    assert!(!stderr.contains("hostNetwork"), "{stderr}");

    // The same command on the node itself (the binary next to this test) agrees.
    let host: Output = Command::new(netdiag_tests::netdiag_bin().expect("kubectl-netdiag built"))
        .args(args)
        .args(["--runtime-endpoint", &NodeConfig::test().endpoint()])
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl-netdiag on the node");
    let on_node = findings(&text(&host.stdout), &text(&host.stderr));
    assert_eq!(
        confidence_of(&on_node, "accept_queue_overflow"),
        confidence_of(&inside, "accept_queue_overflow"),
        "node: {on_node:?}, agent: {inside:?}"
    );

    // Without hostPID: the runtime's PIDs are not ours; it says hostPID is needed.
    let no_pid = pods
        .run(&agent_spec("agent-nohostpid", false, true, true))
        .expect("run pod");
    let line = agent_line(&no_pid);
    assert!(line.contains("needs hostPID: true"), "{line}");
    let (code, stdout, stderr) = exec(&node, &no_pid, &["diagnose", &format!("{NS}/queue")]);
    assert_eq!(code, 2, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("needs hostPID: true"), "{stderr}");
    assert!(stderr.contains(&format!("PID {}", queue.pid)), "{stderr}");

    // Without hostNetwork: it still diagnoses the pod, and says the node counters are
    // the container's own.
    let no_net = pods
        .run(&agent_spec("agent-nohostnet", true, false, true))
        .expect("run pod");
    let line = agent_line(&no_net);
    assert!(line.contains("needs hostNetwork: true"), "{line}");
    let (_, _, stderr) = exec(
        &node,
        &no_net,
        &["diagnose", &format!("{NS}/queue"), "--duration", "1s"],
    );
    assert!(
        stderr.contains("node counters are this container's own")
            && stderr.contains("hostNetwork: true"),
        "{stderr}"
    );

    // Without the socket: the paths tried and the mount that is missing.
    let no_sock = pods
        .run(&agent_spec("agent-nosocket", true, true, false))
        .expect("run pod");
    let line = agent_line(&no_sock);
    assert!(
        line.contains("runtime socket: none")
            && line.contains("/run/containerd/containerd.sock")
            && line.contains("hostPath"),
        "{line}"
    );
    let (code, _, stderr) = exec(&node, &no_sock, &["diagnose", &format!("{NS}/queue")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("/run/crio/crio.sock") && stderr.contains("hostPath volume"),
        "{stderr}"
    );

    // SIGTERM (kubelet stopping the pod) ends the agent cleanly, as PID 1 of its own PID
    // namespace too.
    let id = no_pid.containers["netdiag"].0.clone();
    node.stop_container(&id, Duration::from_secs(10))
        .expect("StopContainer");
    let (state, exit) = node.container_state(&id).expect("ContainerStatus");
    assert_eq!(
        (state.as_str(), exit),
        ("CONTAINER_EXITED", 0),
        "the agent did not exit 0 on SIGTERM"
    );
}
