//! Root tests against a real containerd (Debian 1.6, CRI plugin, CNI bridge) brought up by
//! `netdiag_tests::node`: one node per test binary, shared by all tests through a lock and
//! torn down at process exit even when tests fail.
//!
//! Not root: skipped with a message, or a failure under `CI=true`.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use netdiag::cri::{Backend, Client, Error, PodRef};
use netdiag_tests::node::{self, Node, NodeConfig, PodSpec};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::MutexGuard;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

/// The shared node, locked for the whole test (tests create pods and one restarts containerd).
fn node(test: &str) -> Option<MutexGuard<'static, Node>> {
    if !netdiag_tests::require_root(test).expect("root check") {
        return None;
    }
    let m = node::shared_test_node().expect("test node up");
    Some(m.lock().unwrap_or_else(|p| p.into_inner()))
}

fn endpoint() -> String {
    NodeConfig::test().endpoint()
}

fn netns_inode(path: &str) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {path}: {e}"))
        .ino()
}

#[test]
fn cri_resolves_pod_by_name_to_the_sandbox_pid() {
    let Some(node) = node("cri_resolves_pod_by_name_to_the_sandbox_pid") else {
        return;
    };
    let pod = node
        .run_pod(&PodSpec::new("ndr-resolve", "web-0"))
        .expect("run pod");
    let client = Client::connect(Some(&endpoint()), TIMEOUT).expect("connect");
    assert_eq!(client.backend(), Backend::Cri);
    for spec in ["ndr-resolve/web-0", "web-0"] {
        let ns = (spec == "web-0").then_some("ndr-resolve");
        let t = client
            .resolve(&PodRef::parse(spec, ns, None).unwrap())
            .expect("resolve");
        assert_eq!(t.pid, pod.pid, "PID differs from PodSandboxStatus's");
        assert_eq!(t.sandbox_id, pod.sandbox_id);
        assert_eq!(t.ip.map(|i| i.to_string()), pod.ip);
        assert!(t.notes.is_empty(), "{:?}", t.notes);
        // The runtime's netns path and /proc/PID/ns/net are the same namespace, and it is
        // not the node's.
        let netns = t.netns_path.expect("netns path");
        let ino = netns_inode(&format!("/proc/{}/ns/net", t.pid));
        assert_eq!(netns_inode(netns.to_str().unwrap()), ino);
        assert_ne!(ino, netns_inode("/proc/self/ns/net"));
    }
    // The IP really is inside that namespace.
    let ip = pod.ip.clone().expect("pod ip");
    let out = Command::new("nsenter")
        .args(["-t", &pod.pid.to_string(), "-n", "ip", "-o", "addr"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{ip}/")));
    node.remove_pod(&pod.sandbox_id).unwrap();
}

#[test]
fn cri_resolves_container_with_c_to_its_own_pid() {
    let Some(node) = node("cri_resolves_container_with_c_to_its_own_pid") else {
        return;
    };
    let mut spec = PodSpec::new("ndr-resolve", "two-containers");
    spec.containers = vec![("app".into(), None), ("sidecar".into(), None)];
    let pod = node.run_pod(&spec).expect("run pod");
    let client = Client::connect(Some(&endpoint()), TIMEOUT).expect("connect");
    for name in ["app", "sidecar"] {
        let t = client
            .resolve(&PodRef::parse("ndr-resolve/two-containers", None, Some(name)).unwrap())
            .expect("resolve -c");
        let (id, pid) = &pod.containers[name];
        assert_eq!(&t.pid, pid);
        assert_eq!(t.container_id.as_ref(), Some(id));
        assert_ne!(t.pid, pod.pid, "container PID must not be the sandbox's");
        // Same network namespace as the sandbox.
        assert_eq!(
            netns_inode(&format!("/proc/{}/ns/net", t.pid)),
            netns_inode(&format!("/proc/{}/ns/net", pod.pid))
        );
    }
    let e = client
        .resolve(&PodRef::parse("ndr-resolve/two-containers", None, Some("nginx")).unwrap())
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::ContainerNotFound { .. }), "{msg}");
    assert!(
        msg.contains("app (running)") && msg.contains("sidecar (running)"),
        "{msg}"
    );
    node.remove_pod(&pod.sandbox_id).unwrap();
}

#[test]
fn cri_picks_the_ready_newest_of_several_sandboxes_and_says_so() {
    let Some(node) = node("cri_picks_the_ready_newest_of_several_sandboxes_and_says_so") else {
        return;
    };
    let mut spec = PodSpec::new("ndr-attempts", "web-0");
    let old = node.run_pod(&spec).expect("attempt 0");
    node.stop_pod(&old.sandbox_id).unwrap(); // NotReady, still listed, as kubelet leaves it
    let client = Client::connect(Some(&endpoint()), TIMEOUT).expect("connect");
    // Only a NotReady sandbox: "not ready", with advice.
    let e = client
        .resolve(&PodRef::parse("ndr-attempts/web-0", None, None).unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::PodNotReady { count: 1, .. }), "{e}");
    assert!(e.to_string().contains("kubectl describe pod"), "{e}");
    spec.attempt = 1;
    let new = node.run_pod(&spec).expect("attempt 1");
    let t = client
        .resolve(&PodRef::parse("ndr-attempts/web-0", None, None).unwrap())
        .expect("resolve");
    assert_eq!(t.sandbox_id, new.sandbox_id);
    assert_eq!(t.pid, new.pid);
    assert!(
        t.notes
            .iter()
            .any(|n| n.contains("2 sandboxes share this name (1 ready)")),
        "{:?}",
        t.notes
    );
    node.remove_pod(&old.sandbox_id).unwrap();
    node.remove_pod(&new.sandbox_id).unwrap();
}

#[test]
fn cri_pod_not_on_node_lists_near_matches() {
    let Some(node) = node("cri_pod_not_on_node_lists_near_matches") else {
        return;
    };
    let pod = node
        .run_pod(&PodSpec::new("ndr-near", "frontend-7d9f"))
        .expect("run pod");
    let client = Client::connect(Some(&endpoint()), TIMEOUT).expect("connect");
    // Right name, wrong namespace.
    let e = client
        .resolve(&PodRef::parse("default/frontend-7d9f", None, None).unwrap())
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("did you mean: ndr-near/frontend-7d9f?"),
        "{e}"
    );
    // A typo.
    let e = client
        .resolve(&PodRef::parse("ndr-near/frontend-7d8f", None, None).unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::PodNotFound { .. }), "{e}");
    assert!(e.to_string().contains("ndr-near/frontend-7d9f"), "{e}");
    // Nothing similar at all: point at kubectl.
    let e = client
        .resolve(&PodRef::parse("ndr-near/zzzzzzzzzzzzzzzz", None, None).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("kubectl get pod -o wide"), "{e}");
    node.remove_pod(&pod.sandbox_id).unwrap();
}

#[test]
fn cri_connection_errors_are_actionable() {
    let Some(_node) = node("cri_connection_errors_are_actionable") else {
        return;
    };
    // No socket.
    let e = Client::connect(Some("unix:///run/ndr-missing/containerd.sock"), TIMEOUT).unwrap_err();
    assert!(matches!(e, Error::NoSocket { .. }), "{e}");
    assert!(
        e.to_string().contains("/run/ndr-missing/containerd.sock"),
        "{e}"
    );
    // Permission denied: the CLI as an unprivileged user (the node dir is root-only).
    let bin = netdiag_tests::netdiag_bin().expect("kubectl-netdiag built");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .args(["pods", "--runtime-endpoint", &endpoint()])
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(stderr.contains("run as root on the node"), "{stderr}");
}

#[test]
fn cli_pods_lists_pods_with_pid_ip_and_netns() {
    let Some(node) = node("cli_pods_lists_pods_with_pid_ip_and_netns") else {
        return;
    };
    let pod = node
        .run_pod(&PodSpec::new("ndr-list", "api-0"))
        .expect("run pod");
    let bin = netdiag_tests::netdiag_bin().expect("kubectl-netdiag built");
    let out = Command::new(&bin)
        .args(["pods", "-o", "json", "-n", "ndr-list"])
        .env("CONTAINER_RUNTIME_ENDPOINT", endpoint())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(r["name"], "api-0");
    assert_eq!(r["state"], "Ready");
    assert_eq!(r["pid"], pod.pid);
    assert_eq!(r["ip"].as_str(), pod.ip.as_deref());
    let netns = r["netns"].as_str().unwrap();
    assert_eq!(
        netns_inode(netns),
        netns_inode(&format!("/proc/{}/ns/net", pod.pid))
    );
    let table = Command::new(&bin)
        .args(["pods", "--runtime-endpoint", &endpoint()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("NAMESPACE"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ndr-list") && l.contains("api-0")),
        "{text}"
    );
    node.remove_pod(&pod.sandbox_id).unwrap();
}

#[test]
fn native_api_resolves_the_same_pods_when_the_cri_is_disabled() {
    let Some(mut node) = node("native_api_resolves_the_same_pods_when_the_cri_is_disabled") else {
        return;
    };
    let mut spec = PodSpec::new("ndr-native", "db-0");
    spec.containers = vec![("postgres".into(), None)];
    let pod = node.run_pod(&spec).expect("run pod");
    let by_cri = Client::connect(Some(&endpoint()), TIMEOUT)
        .unwrap()
        .resolve(&PodRef::parse("ndr-native/db-0", None, None).unwrap())
        .unwrap();
    // Forced native while the CRI is up: same answers.
    let native =
        Client::connect_with(Some(&endpoint()), TIMEOUT, Some(Backend::ContainerdNative)).unwrap();
    let t = native
        .resolve(&PodRef::parse("ndr-native/db-0", None, None).unwrap())
        .unwrap();
    assert_eq!((t.pid, &t.sandbox_id), (by_cri.pid, &by_cri.sandbox_id));
    // containerd restarted with the CRI plugin disabled: `connect` falls back by itself.
    node.restart_containerd(false)
        .expect("containerd without CRI");
    let result = (|| {
        let c = Client::connect(Some(&endpoint()), TIMEOUT)?;
        let sandbox = c.resolve(&PodRef::parse("ndr-native/db-0", None, None).unwrap())?;
        let container =
            c.resolve(&PodRef::parse("ndr-native/db-0", None, Some("postgres")).unwrap())?;
        let missing = c.resolve(&PodRef::parse("ndr-native/db-1", None, None).unwrap());
        Ok::<_, Error>((c.backend(), sandbox, container, missing))
    })();
    node.restart_containerd(true)
        .expect("containerd with CRI again");
    let (backend, sandbox, container, missing) = result.expect("native resolution");
    assert_eq!(backend, Backend::ContainerdNative);
    assert_eq!(sandbox.pid, pod.pid);
    assert_eq!(sandbox.ip, by_cri.ip);
    assert!(
        sandbox.notes.iter().any(|n| n.contains("native API")),
        "{:?}",
        sandbox.notes
    );
    assert_eq!(container.pid, pod.containers["postgres"].1);
    let e = missing.unwrap_err();
    assert!(
        e.to_string().contains("did you mean: ndr-native/db-0?"),
        "{e}"
    );
    node.remove_pod(&pod.sandbox_id).unwrap();
}
