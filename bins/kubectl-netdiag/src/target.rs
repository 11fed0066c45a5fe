//! Which network namespace a live command works in: `{POD | --pid N | --netns PATH}`.
//!
//! The arguments are clap's; resolving them (a pod through the CRI to the sandbox's PID, a
//! PID or a path to the namespace) is the library's [`netdiag::Target`].

use anyhow::bail;
use netdiag::cri;
use netdiag::{Diagnosis, RuntimeOptions, TargetSpec};
use std::path::PathBuf;
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

pub(crate) use netdiag::Target;

/// How long each call to the container runtime may take.
const CRI_TIMEOUT: Duration = Duration::from_secs(10);

/// What `{POD | --pid N | --netns PATH}` names, checked but not resolved yet.
pub(crate) fn spec(pod: Option<&str>, args: &TargetArgs) -> anyhow::Result<TargetSpec> {
    if let Some(path) = &args.netns {
        if pod.is_some() {
            bail!("give either POD or --netns, not both");
        }
        return Ok(TargetSpec::Netns(path.clone()));
    }
    if let Some(pid) = args.pid {
        if pod.is_some() {
            bail!("give either POD or --pid, not both");
        }
        return Ok(TargetSpec::Pid(pid));
    }
    let Some(pod) = pod else {
        bail!("name a target: POD, --pid PID or --netns PATH");
    };
    Ok(TargetSpec::Pod(cri::PodRef::parse(
        pod,
        args.namespace.as_deref(),
        args.container.as_deref(),
    )?))
}

/// How to reach the runtime: --runtime-endpoint / $CONTAINER_RUNTIME_ENDPOINT.
pub(crate) fn runtime(args: &TargetArgs) -> RuntimeOptions {
    RuntimeOptions {
        endpoint: args.runtime_endpoint.clone(),
        timeout: CRI_TIMEOUT,
    }
}

/// Resolves `{POD | --pid N | --netns PATH}` (the library does the work).
pub(crate) fn resolve(pod: Option<&str>, args: &TargetArgs) -> anyhow::Result<Target> {
    Ok(Target::resolve(&spec(pod, args)?, &runtime(args))?)
}

/// What `diagnose` and `watch` share: the target, the capture points and the node's side.
#[derive(Debug, clap::Args)]
pub(crate) struct LiveArgs {
    /// The pod: `NAME`, `NAMESPACE/NAME` (or -n); omit with --pid/--netns.
    #[arg(value_name = "POD")]
    pub(crate) pod: Option<String>,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// The node's network namespace (default: this process's, i.e. the host's on a node).
    #[arg(long, value_name = "PATH")]
    pub(crate) node_netns: Option<PathBuf>,
    /// Do not read the node namespace's counters.
    #[arg(long, conflicts_with_all = ["node_netns", "node_interface"])]
    pub(crate) no_node_counters: bool,
    /// Also capture on this interface of the node's netns (e.g. the uplink `eth0`, or
    /// `any`): the NAT side, where conntrack INVALID's bogus segment and the node's RST,
    /// and SNAT's dropped SYNs, are visible. Analysed as a second capture point.
    #[arg(long, value_name = "IFACE")]
    pub(crate) node_interface: Option<String>,
    /// Interface inside the pod; `any` for all. Default: the default route's (eth0).
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub(crate) interface: Option<String>,
    /// A BPF filter (tcpdump syntax) for the capture, e.g. "tcp or port 53".
    #[arg(long, value_name = "EXPR")]
    pub(crate) filter: Option<String>,
    /// The pod's resolv.conf, when it cannot be read from the pod's root (default: the
    /// pod's /etc/resolv.conf, read safely inside its root; for `--netns /run/netns/NAME`,
    /// /etc/netns/NAME/resolv.conf as `ip netns exec` uses).
    #[arg(long, value_name = "PATH")]
    pub(crate) resolv_conf: Option<PathBuf>,
}

impl LiveArgs {
    /// The library's diagnosis of this target, capture points and node side, giving up
    /// privileges once its handles are open.
    pub(crate) fn diagnosis(&self) -> anyhow::Result<Diagnosis> {
        let spec = spec(self.pod.as_deref(), &self.target)?;
        let mut d = Diagnosis::target(spec)
            .runtime(runtime(&self.target))
            .node_counters(!self.no_node_counters)
            .least_privilege(true);
        if let Some(i) = &self.interface {
            d = d.interface(i);
        }
        if let Some(f) = &self.filter {
            d = d.filter(f);
        }
        if let Some(p) = &self.node_netns {
            d = d.node_netns(p);
        }
        if let Some(i) = &self.node_interface {
            d = d.node_interface(i);
        }
        if let Some(p) = &self.resolv_conf {
            d = d.resolv_conf_file(p);
        }
        Ok(d)
    }
}
