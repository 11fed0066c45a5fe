//! Which network namespace a live diagnosis works in: a pod (through the CRI), a PID or a
//! namespace file; and the node's namespace beside it.

use crate::Error;
use netdiag_cri as cri;
use netdiag_kernel as kernel;
use netdiag_netns::NetNs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to diagnose live, before it is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetSpec {
    /// A pod by name, resolved through the container runtime (CRI).
    Pod(cri::PodRef),
    /// Any process: its network namespace, and its root for the pod's files.
    Pid(u32),
    /// A network namespace file: `/run/netns/NAME`, `/proc/PID/ns/net`, a CNI netns path.
    Netns(PathBuf),
}

/// How to reach the container runtime for [`TargetSpec::Pod`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// The CRI socket (`unix:///path` or `/path`); `None` auto-detects the known ones
    /// (see [`cri::endpoint::detect`]).
    pub endpoint: Option<String>,
    /// Timeout of each call to the runtime.
    pub timeout: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            endpoint: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// A resolved target: an open handle on its network namespace (pinned: a PID recycled
/// afterwards is never entered by mistake), and the process whose root holds its files.
#[derive(Debug)]
pub struct Target {
    label: String,
    pid: Option<u32>,
    pod: Option<cri::Target>,
    netns_path: Option<PathBuf>,
    notes: Vec<String>,
    ns: NetNs,
}

impl Target {
    /// Resolves `spec`: a pod through the runtime, a PID through a pidfd, a path by opening it.
    pub fn resolve(spec: &TargetSpec, runtime: &RuntimeOptions) -> Result<Target, Error> {
        match spec {
            TargetSpec::Netns(path) => Ok(Target {
                label: format!("netns {}", path.display()),
                pid: None,
                pod: None,
                netns_path: Some(path.clone()),
                notes: Vec::new(),
                ns: NetNs::from_path(path)?,
            }),
            TargetSpec::Pid(pid) => Target::from_pid(*pid, format!("netns of pid {pid}"), None),
            TargetSpec::Pod(pod) => {
                let client = cri::Client::connect(runtime.endpoint.as_deref(), runtime.timeout)?;
                let t = client.resolve(pod)?;
                let label = format!("pod {} (pid {})", t.pod, t.pid);
                Target::from_pid(t.pid, label, Some(t))
            }
        }
    }

    fn from_pid(pid: u32, label: String, pod: Option<cri::Target>) -> Result<Target, Error> {
        let pid_i = i32::try_from(pid).map_err(|_| Error::BadPid { pid })?;
        // Through a pidfd: a PID recycled after this point is never entered by mistake.
        let ns = NetNs::from_pid(pid_i)?;
        let notes = pod.as_ref().map(|t| t.notes.clone()).unwrap_or_default();
        Ok(Target {
            label,
            pid: Some(pid),
            pod,
            netns_path: None,
            notes,
            ns,
        })
    }

    /// Names the target in messages: `pod default/web (pid 1234)`, `netns /run/netns/x`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// A process in the target (its root holds the pod's resolv.conf), when known.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// What the runtime said about the pod, for a pod target.
    pub fn pod(&self) -> Option<&cri::Target> {
        self.pod.as_ref()
    }

    /// What the user should know about the choice (several sandboxes, a fallback API …).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The network namespace.
    pub fn netns(&self) -> &NetNs {
        &self.ns
    }

    /// Runs `f` on a fresh thread inside the target's network namespace (never on the
    /// caller's thread, which keeps its own namespace).
    pub fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        Ok(self.ns.run(f)?)
    }

    /// The kernel's counters and sockets inside the target's namespace, now.
    pub fn snapshot(&self) -> Result<kernel::Snapshot, Error> {
        Ok(self.run(kernel::Snapshot::capture_current)??)
    }

    /// The pod's resolv.conf: read inside the pod's root (openat2 `RESOLVE_IN_ROOT`, so a
    /// symlink cannot point at the node's files), else, for a named netns
    /// (`/run/netns/NAME`), `/etc/netns/NAME/resolv.conf` as `ip netns exec` uses it.
    /// `Ok(None)` when there is none; `Err` names why the pod's own file is unreadable.
    pub fn resolv_conf(&self) -> Result<Option<String>, Error> {
        const MAX: usize = 64 * 1024;
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            let bytes = netdiag_netns::read_in_root(pid, "/etc/resolv.conf", MAX)?;
            return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
        }
        if let Some(path) = &self.netns_path {
            let named = path
                .parent()
                .is_some_and(|d| d == Path::new("/run/netns") || d == Path::new("/var/run/netns"));
            if let (true, Some(name)) = (named, path.file_name()) {
                let etc = Path::new("/etc/netns").join(name).join("resolv.conf");
                if let Ok(text) = std::fs::read_to_string(&etc) {
                    return Ok(Some(text));
                }
            }
        }
        Ok(None)
    }
}

impl Target {
    /// When the node's counters are to be read in our own namespace (`default_node`), and
    /// we are not in the node's: what to tell the user. The container runtime runs in the
    /// node's network namespace, so a pod target's runtime process is the reference; in a
    /// pod without `hostNetwork: true` the "node" counters would be the container's own.
    pub(crate) fn outside_node_netns(&self, default_node: bool) -> Option<String> {
        let cri::RuntimeProcess::Visible(pid) = self.pod.as_ref()?.runtime_process else {
            return None;
        };
        if !default_node || netdiag_netns::host::shares_network_with(pid).ok()? {
            return None;
        }
        Some(format!(
            "this process is not in the node's network namespace (the container runtime, \
             pid {pid}, is in another one): the node counters are this container's own; run \
             it with hostNetwork: true (deploy/daemonset.yaml does), or pass --node-netns \
             /proc/{pid}/ns/net"
        ))
    }
}

/// The node's network namespace: `path`, else the caller's own (the host's on a node).
pub fn node_netns(path: Option<&Path>) -> Result<NetNs, Error> {
    Ok(match path {
        Some(p) => NetNs::from_path(p)?,
        None => NetNs::current()?,
    })
}

/// The kernel's counters and sockets in `ns`, now.
pub fn snapshot_in(ns: &NetNs) -> Result<kernel::Snapshot, Error> {
    Ok(ns.run(kernel::Snapshot::capture_current)??)
}
