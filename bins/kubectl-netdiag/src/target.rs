//! Which network namespace a live command works in: `{POD | --pid N | --netns PATH}`.
//!
//! A pod name goes through the CRI (`netdiag::cri`) to the sandbox's PID; a PID or a path
//! names the namespace directly. Work inside the namespace runs on a dedicated thread that
//! has `setns`'d into it and is discarded afterwards, never on the main thread.

use anyhow::{Context, bail};
use netdiag::cri;
use netdiag::netns::NetNs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Target selection shared by `capture`, `diagnose` and `counters` (the POD positional is
/// declared by each command, because `capture` also takes a trailing filter).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TargetArgs {
    /// A process whose network namespace to use (e.g. the pod's pause process).
    #[arg(long, value_name = "PID", conflicts_with = "netns")]
    pub(crate) pid: Option<u32>,
    /// A network namespace file: /run/netns/NAME, /proc/PID/ns/net, a CNI netns path.
    #[arg(long, value_name = "PATH")]
    pub(crate) netns: Option<PathBuf>,
    /// Kubernetes namespace of POD (default: "default", or the "ns/" prefix of POD).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub(crate) namespace: Option<String>,
    /// Container of POD whose root holds the resolv.conf (all share the pod's netns).
    #[arg(long, value_name = "NAME")]
    pub(crate) container: Option<String>,
    /// CRI socket (unix:///path or /path); default: auto-detect the known sockets.
    #[arg(long, value_name = "ENDPOINT", env = "CONTAINER_RUNTIME_ENDPOINT")]
    pub(crate) runtime_endpoint: Option<String>,
}

impl TargetArgs {
    /// Whether --pid or --netns names the target (then no POD positional is expected).
    pub(crate) fn is_direct(&self) -> bool {
        self.pid.is_some() || self.netns.is_some()
    }
}

/// A resolved target: a network namespace, and the PID whose root holds the pod's files.
#[derive(Debug)]
pub(crate) struct Target {
    /// Human name used in messages: "pod default/web (pid 1234)", "netns /run/netns/x".
    pub(crate) label: String,
    /// A process in the pod (for its root filesystem), when known.
    pub(crate) pid: Option<u32>,
    /// What the CRI said about ambiguities, to show the user.
    pub(crate) notes: Vec<String>,
    ns: NetNs,
}

/// How long each call to the container runtime may take.
const CRI_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves `{POD | --pid N | --netns PATH}`.
pub(crate) fn resolve(pod: Option<&str>, args: &TargetArgs) -> anyhow::Result<Target> {
    if let Some(path) = &args.netns {
        if pod.is_some() {
            bail!("give either POD or --netns, not both");
        }
        let ns = NetNs::from_path(path)?;
        return Ok(Target {
            label: format!("netns {}", path.display()),
            pid: None,
            notes: Vec::new(),
            ns,
        });
    }
    if let Some(pid) = args.pid {
        if pod.is_some() {
            bail!("give either POD or --pid, not both");
        }
        return from_pid(pid, format!("netns of pid {pid}"), Vec::new());
    }
    let Some(pod) = pod else {
        bail!("name a target: POD, --pid PID or --netns PATH");
    };
    let pod_ref = cri::PodRef::parse(pod, args.namespace.as_deref(), args.container.as_deref())?;
    let client = cri::Client::connect(args.runtime_endpoint.as_deref(), CRI_TIMEOUT)?;
    let t = client.resolve(&pod_ref)?;
    let label = format!("pod {} (pid {})", t.pod, t.pid);
    from_pid(t.pid, label, t.notes)
}

fn from_pid(pid: u32, label: String, notes: Vec<String>) -> anyhow::Result<Target> {
    let pid_i = i32::try_from(pid).map_err(|_| anyhow::anyhow!("PID {pid} is out of range"))?;
    // Through a pidfd: a PID recycled after this point is never entered by mistake.
    let ns = NetNs::from_pid(pid_i)?;
    Ok(Target {
        label,
        pid: Some(pid),
        notes,
        ns,
    })
}

impl Target {
    /// Runs `f` on a fresh thread inside the target's network namespace.
    pub(crate) fn run<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        self.ns
            .run(f)
            .with_context(|| format!("working inside {}", self.label))
    }
}

/// The node's network namespace for `diagnose`: `--node-netns PATH`, else our own.
pub(crate) fn node_netns(path: Option<&Path>) -> anyhow::Result<NetNs> {
    Ok(match path {
        Some(p) => NetNs::from_path(p)?,
        None => NetNs::current()?,
    })
}
