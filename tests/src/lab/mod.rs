//! The lab: a Kubernetes node in a box, built from network namespaces on this machine.
//!
//! [`Lab::up`] builds the topology of `DETECTION.md` entirely inside namespaces it
//! creates (nothing in the host namespace is touched):
//!
//! ```text
//!  ndl-<tag>-pod                 ndl-<tag>-node                         ndl-<tag>-ext
//!  eth0 10.244.1.10/24  ──veth── pod0 10.244.1.1/24
//!       fd00:244:1::10/64        uplink0 172.31.0.1/24  ──veth──  eth0 172.31.0.2/24
//!  default via 10.244.1.1        ip_forward=1, MASQUERADE             dnsmasq (cluster DNS)
//!  resolv.conf: kubelet shape    10.244.0.0/16 out of uplink0         route 10.244.0.0/16 via node
//! ```
//!
//! A long-lived pod process ([`Lab::pod_pid`]) stands in for a container, so that
//! `kubectl-netdiag diagnose --pid` can find the pod's netns the way it would on a node.
//! [`scenario::Scenario`] reproduces each failure (and its healthy baseline) in two steps,
//! `setup` then `trigger`, so a caller can start its own capture in between;
//! [`record::record`] does exactly that with tcpdump and writes `testdata/<scenario>/`.
//!
//! Everything is torn down by `Drop` (processes, namespaces, `/etc/netns/<name>/`, the
//! scratch directory); [`Lab::down`] is idempotent and runs before every `up`.
//! [`teardown_active`] removes every lab of this process, for Ctrl-C handlers.

pub mod capture;
pub mod clock;
pub mod conntrack_max;
pub mod counters;
pub mod inject;
pub mod intermittent;
pub mod load;
pub mod more_failures;
pub mod overlay;
pub mod pcap;
pub mod record;
pub mod resolver_udp_mtu;
pub mod scenario;
pub mod soak;
mod sock;

use anyhow::{Context, Result, anyhow, bail};
use std::any::Any;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Prefix of every object the lab creates (netns names, scratch directories).
pub const PREFIX: &str = "ndl-";

/// The pod's IPv4 address (`eth0` in the pod netns).
pub const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 10);
/// The pod's IPv6 ULA: its only purpose is to make glibc send AAAA queries.
pub const POD_IP6: &str = "fd00:244:1::10";
/// The node's address on the pod side (the pod's default gateway).
pub const NODE_POD_SIDE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
/// The node's address on its uplink: the SNAT (MASQUERADE) source address.
pub const NODE_UPLINK_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 1);
/// The "outside" host: DNS server and every remote server of the scenarios.
pub const EXT_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 2);
/// A Service ClusterIP, DNATed by the node to a backend in ext (Service variant of INVALID).
pub const SERVICE_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// The node's uplink interface (towards ext).
pub const NODE_UPLINK_IF: &str = "uplink0";
/// The node's interface towards the pod.
pub const NODE_POD_IF: &str = "pod0";
/// The pod's interface (and ext's).
pub const POD_IF: &str = "eth0";

/// The pod's resolv.conf, in the shape kubelet writes for `dnsPolicy: ClusterFirst`.
pub const POD_RESOLV_CONF: &str = "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 172.31.0.2\noptions ndots:5\n";

/// The search domains of [`POD_RESOLV_CONF`].
pub const SEARCH_DOMAINS: [&str; 3] = [
    "default.svc.cluster.local",
    "svc.cluster.local",
    "cluster.local",
];

/// Upper bound on the lifetime of any process or thread the lab starts.
pub const MAX_LIFETIME: Duration = Duration::from_secs(600);

/// The three namespaces of a lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The pod's network namespace.
    Pod,
    /// The node's (host network of a Kubernetes node): NAT and conntrack live here.
    Node,
    /// Everything outside the node: DNS server, remote servers.
    Ext,
}

impl Role {
    /// All roles, in topology order.
    pub const ALL: [Role; 3] = [Role::Pod, Role::Node, Role::Ext];

    /// Short lower-case name (`pod`, `node`, `ext`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Pod => "pod",
            Role::Node => "node",
            Role::Ext => "ext",
        }
    }
}

/// Name of the netns of `role` in the lab `tag`: `ndl-<tag>-<role>`.
pub fn netns_name(tag: &str, role: Role) -> String {
    format!("{PREFIX}{tag}-{}", role.as_str())
}

static ACTIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn active() -> MutexGuard<'static, Vec<String>> {
    ACTIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tears down every lab this process has brought up and not yet dropped (for Ctrl-C).
pub fn teardown_active() {
    let tags: Vec<String> = active().clone();
    for tag in tags {
        if let Err(e) = Lab::down(&tag) {
            eprintln!("lab: teardown of {tag} failed: {e:#}");
        }
    }
}

/// One running lab. Dropping it tears everything down.
pub struct Lab {
    tag: String,
    scratch: PathBuf,
    stop: Arc<AtomicBool>,
    children: Mutex<Vec<Child>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stash: Mutex<BTreeMap<&'static str, Box<dyn Any + Send>>>,
    pod_pid: u32,
    /// The machine-wide lab lock ([`conntrack_max::LOCK_PATH`]), held while the lab
    /// stands: shared by every lab, exclusive for one that changes global sysctls.
    _lock: nix::fcntl::Flock<std::fs::File>,
    exclusive: bool,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("tag", &self.tag)
            .field("pod_pid", &self.pod_pid)
            .finish_non_exhaustive()
    }
}

fn check_tag(tag: &str) -> Result<()> {
    if tag.is_empty()
        || tag.len() > 40
        || !tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        bail!("lab tag {tag:?} must be 1–40 characters of [a-z0-9_-]");
    }
    Ok(())
}

/// Runs a command to completion, failing with its stderr when it exits non-zero.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let line = display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

use crate::sh::display;

/// `ip netns exec <netns> <args…>` as a command.
pub fn netns_exec(netns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", netns]).args(args);
    c
}

/// Runs `f` on a fresh thread that has entered `/run/netns/<netns>`; the thread is
/// discarded afterwards, so no other thread ever changes namespace. Sockets created by
/// `f` stay in that netns wherever they are used later.
pub fn in_netns<T, F>(netns: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let handle = spawn_in_netns(netns, f)?;
    handle
        .join()
        .map_err(|_| anyhow!("thread inside netns {netns} panicked"))?
}

/// Like [`in_netns`], without waiting: the caller joins the handle.
pub fn spawn_in_netns<T, F>(netns: &str, f: F) -> Result<JoinHandle<Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let path = PathBuf::from("/run/netns").join(netns);
    let name = netns.to_owned();
    std::thread::Builder::new()
        .name(format!("in-{netns}"))
        .spawn(move || {
            let file =
                std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("setns(CLONE_NEWNET) into {name}"))?;
            f()
        })
        .with_context(|| format!("spawn a thread for netns {netns}"))
}

impl Lab {
    /// Builds the lab `tag` (after tearing down any leftover of the same tag). Takes the
    /// machine-wide lab lock shared, so it never runs beside a lab that lowers a global
    /// sysctl ([`Lab::up_exclusive`]).
    pub fn up(tag: &str) -> Result<Lab> {
        Lab::up_locked(tag, false)
    }

    /// Like [`Lab::up`], holding the machine-wide lab lock exclusively: no other lab (of
    /// any process using this library) runs meanwhile. For scenarios that change global
    /// state, such as `nf_conntrack_max`.
    pub fn up_exclusive(tag: &str) -> Result<Lab> {
        Lab::up_locked(tag, true)
    }

    /// Whether this lab holds the machine-wide lab lock exclusively.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    fn up_locked(tag: &str, exclusive: bool) -> Result<Lab> {
        check_tag(tag)?;
        let lock = conntrack_max::lock_labs(exclusive)?;
        // A run killed while nf_conntrack_max was lowered left a marker: undo it first.
        conntrack_max::restore_stale()?;
        Lab::down(tag)?;
        active().push(tag.to_owned());
        let scratch = std::env::temp_dir().join(format!("{PREFIX}{tag}"));
        // From here on, `lab` is dropped (and everything torn down) on any error.
        let mut lab = Lab {
            tag: tag.to_owned(),
            scratch,
            stop: Arc::new(AtomicBool::new(false)),
            children: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            stash: Mutex::new(BTreeMap::new()),
            pod_pid: 0,
            _lock: lock,
            exclusive,
        };
        lab.build().with_context(|| format!("building lab {tag}"))?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.scratch)
            .with_context(|| format!("create {}", self.scratch.display()))?;
        let pod = self.netns(Role::Pod);
        let node = self.netns(Role::Node);
        let ext = self.netns(Role::Ext);
        for ns in [&pod, &node, &ext] {
            run(Command::new("ip").args(["netns", "add", ns]))?;
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]))?;
        }
        // Create the veth pairs from inside the namespaces: the names never exist in the host.
        run(Command::new("ip").args([
            "-n",
            &pod,
            "link",
            "add",
            POD_IF,
            "type",
            "veth",
            "peer",
            "name",
            NODE_POD_IF,
            "netns",
            &node,
        ]))?;
        run(Command::new("ip").args([
            "-n",
            &node,
            "link",
            "add",
            NODE_UPLINK_IF,
            "type",
            "veth",
            "peer",
            "name",
            POD_IF,
            "netns",
            &ext,
        ]))?;
        let ip = |ns: &str, args: &[&str]| -> Result<String> {
            run(Command::new("ip").args(["-n", ns]).args(args))
        };
        ip(&pod, &["addr", "add", "10.244.1.10/24", "dev", POD_IF])?;
        ip(
            &pod,
            &[
                "addr",
                "add",
                &format!("{POD_IP6}/64"),
                "dev",
                POD_IF,
                "nodad",
            ],
        )?;
        ip(&node, &["addr", "add", "10.244.1.1/24", "dev", NODE_POD_IF])?;
        ip(
            &node,
            &[
                "addr",
                "add",
                "fd00:244:1::1/64",
                "dev",
                NODE_POD_IF,
                "nodad",
            ],
        )?;
        ip(
            &node,
            &["addr", "add", "172.31.0.1/24", "dev", NODE_UPLINK_IF],
        )?;
        ip(&ext, &["addr", "add", "172.31.0.2/24", "dev", POD_IF])?;
        for (ns, dev) in [
            (&pod, POD_IF),
            (&node, NODE_POD_IF),
            (&node, NODE_UPLINK_IF),
            (&ext, POD_IF),
        ] {
            // Wire-sized segments in captures, and checksums computed in software.
            run(&mut netns_exec(
                ns,
                &[
                    "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off",
                ],
            ))?;
            ip(ns, &["link", "set", dev, "up"])?;
        }
        ip(&pod, &["route", "add", "default", "via", "10.244.1.1"])?;
        ip(
            &ext,
            &["route", "add", "10.244.0.0/16", "via", "172.31.0.1"],
        )?;
        run(&mut netns_exec(
            &node,
            &["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        ))?;
        self.iptables(
            Role::Node,
            &[
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-s",
                "10.244.0.0/16",
                "-o",
                NODE_UPLINK_IF,
                "-j",
                "MASQUERADE",
            ],
        )?;
        // `ip netns exec` bind-mounts /etc/netns/<name>/* over /etc/*.
        let etc = self.etc_netns_dir();
        std::fs::create_dir_all(&etc).with_context(|| format!("create {}", etc.display()))?;
        let resolv = etc.join("resolv.conf");
        std::fs::write(&resolv, POD_RESOLV_CONF)
            .with_context(|| format!("write {}", resolv.display()))?;
        self.start_dnsmasq()?;
        let child = self.spawn(
            netns_exec(&pod, &["sleep", &MAX_LIFETIME.as_secs().to_string()]),
            "pod process",
        )?;
        self.pod_pid = child;
        self.wait_in_netns(child, Role::Pod)
    }

    /// Waits until `pid` has entered the netns of `role` (`ip netns exec` does setns
    /// after fork), so that callers looking at `/proc/<pid>/ns/net` see the pod's netns.
    fn wait_in_netns(&self, pid: u32, role: Role) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let want = std::fs::metadata(self.netns_path(role))
            .with_context(|| format!("stat {}", self.netns_path(role).display()))?
            .ino();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino());
            if now.as_ref().ok() == Some(&want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "process {pid} did not enter {} within 5 s",
                    self.netns(role)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn start_dnsmasq(&self) -> Result<()> {
        let log = self.dnsmasq_log();
        let ext = self.netns(Role::Ext);
        let log_arg = format!("--log-facility={}", log.display());
        self.spawn(
            netns_exec(
                &ext,
                &[
                    "dnsmasq",
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--no-resolv",
                    "--no-hosts",
                    "--no-poll",
                    "--pid-file=",
                    "--user=root",
                    "--group=root",
                    "--listen-address=172.31.0.2",
                    "--bind-interfaces",
                    "--local=/cluster.local/",
                    "--address=/example.test/203.0.113.7",
                    // An AAAA answer too: without one, dnsmasq (no upstream) answers REFUSED.
                    "--address=/example.test/fd00:203::7",
                    "--log-queries",
                    &log_arg,
                ],
            ),
            "dnsmasq",
        )?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("started") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("dnsmasq in {ext} did not start within 5 s (log: {text:?})");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Tears down the lab `tag`: kills every process inside its namespaces, deletes the
    /// namespaces, `/etc/netns/<name>/` and the scratch directory. Idempotent.
    pub fn down(tag: &str) -> Result<()> {
        check_tag(tag)?;
        // A Ctrl-C handler and a dropping Lab may tear down the same tag at once.
        static DOWN: Mutex<()> = Mutex::new(());
        let _serial = DOWN.lock().unwrap_or_else(|p| p.into_inner());
        let existing = run(Command::new("ip").args(["netns", "list"]))?;
        let mut errors = Vec::new();
        for role in Role::ALL {
            let ns = netns_name(tag, role);
            let exists = existing
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns.as_str()));
            if exists {
                // Only processes inside a namespace this lab created: ours.
                if let Ok(pids) = run(Command::new("ip").args(["netns", "pids", &ns])) {
                    for pid in pids
                        .split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok())
                    {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
                if let Err(e) = run(Command::new("ip").args(["netns", "del", &ns]))
                    && PathBuf::from("/run/netns").join(&ns).exists()
                {
                    errors.push(format!("{e:#}"));
                }
            }
            let etc = PathBuf::from("/etc/netns").join(&ns);
            if etc.exists()
                && let Err(e) = std::fs::remove_dir_all(&etc)
            {
                errors.push(format!("remove {}: {e}", etc.display()));
            }
        }
        let scratch = std::env::temp_dir().join(format!("{PREFIX}{tag}"));
        if scratch.exists() {
            let _ = std::fs::remove_dir_all(&scratch);
        }
        active().retain(|t| t != tag);
        if !errors.is_empty() {
            bail!("tearing down lab {tag}: {}", errors.join("; "));
        }
        Ok(())
    }

    /// The lab's tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Name of the netns of `role` (`ndl-<tag>-<role>`).
    pub fn netns(&self, role: Role) -> String {
        netns_name(&self.tag, role)
    }

    /// Path of the netns of `role` (`/run/netns/ndl-<tag>-<role>`).
    pub fn netns_path(&self, role: Role) -> PathBuf {
        PathBuf::from("/run/netns").join(self.netns(role))
    }

    /// PID of the long-lived pod process (inside the pod netns).
    pub fn pod_pid(&self) -> u32 {
        self.pod_pid
    }

    /// The directory whose files `ip netns exec` mounts over the pod's `/etc`.
    pub fn etc_netns_dir(&self) -> PathBuf {
        PathBuf::from("/etc/netns").join(self.netns(Role::Pod))
    }

    /// The pod's resolv.conf as written for it.
    pub fn resolv_conf_path(&self) -> PathBuf {
        self.etc_netns_dir().join("resolv.conf")
    }

    /// Scratch directory of this lab (removed on teardown).
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// dnsmasq's query log (one `query[A] name from addr` line per query).
    pub fn dnsmasq_log(&self) -> PathBuf {
        self.scratch.join("dnsmasq.log")
    }

    /// Number of queries dnsmasq has logged so far.
    pub fn dns_queries_logged(&self) -> Result<usize> {
        let log = self.dnsmasq_log();
        let text =
            std::fs::read_to_string(&log).with_context(|| format!("read {}", log.display()))?;
        Ok(text.lines().filter(|l| l.contains(" query[")).count())
    }

    /// Runs `iptables <args>` inside the netns of `role`.
    pub fn iptables(&self, role: Role, args: &[&str]) -> Result<()> {
        let mut a = vec!["iptables", "-w", "5"];
        a.extend_from_slice(args);
        run(&mut netns_exec(&self.netns(role), &a)).map(|_| ())
    }

    /// A Service VIP in the node netns, as kube-proxy's iptables mode makes it: new TCP
    /// connections to `vip:80` are DNATed to `backend` (`IP:PORT`), after any rule already
    /// in PREROUTING (`extra` goes before the target: e.g. a `statistic` match).
    pub fn service_dnat(&self, vip: &str, backend: &str, extra: &[&str]) -> Result<()> {
        let mut args = vec![
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-d",
            vip,
            "-p",
            "tcp",
            "--dport",
            "80",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-j", "DNAT", "--to-destination", backend]);
        self.iptables(Role::Node, &args)
    }

    /// Runs `f` on a thread inside the netns of `role` (see [`in_netns`]).
    pub fn in_ns<T, F>(&self, role: Role, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        in_netns(&self.netns(role), f)
    }

    /// Starts a background thread inside the netns of `role`; it receives the lab's stop
    /// flag and must return soon after it is set. Joined on teardown.
    pub fn background<F>(&self, role: Role, f: F) -> Result<()>
    where
        F: FnOnce(Arc<AtomicBool>) -> Result<()> + Send + 'static,
    {
        let stop = Arc::clone(&self.stop);
        let ns = self.netns(role);
        let h = spawn_in_netns(&ns, move || f(stop))?;
        let ns2 = ns.clone();
        let wrapper = std::thread::Builder::new()
            .name(format!("join-{ns}"))
            .spawn(move || match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("lab: background task in {ns2} failed: {e:#}"),
                Err(_) => eprintln!("lab: background task in {ns2} panicked"),
            })
            .context("spawn joiner thread")?;
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(wrapper);
        Ok(())
    }

    /// Spawns a process that the lab kills on teardown; returns its PID.
    pub fn spawn(&self, mut cmd: Command, what: &str) -> Result<u32> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {what}: `{}`", display(&cmd)))?;
        let pid = child.id();
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child);
        Ok(pid)
    }

    /// Keeps `value` (a listener, a socket…) alive until `take` or teardown.
    pub fn stash<T: Any + Send>(&self, key: &'static str, value: T) {
        self.stash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Box::new(value));
    }

    /// Takes back what [`Lab::stash`] kept under `key`.
    pub fn take<T: Any + Send>(&self, key: &'static str) -> Result<T> {
        let b = self
            .stash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)
            .ok_or_else(|| anyhow!("nothing stashed under {key:?}: was setup run?"))?;
        b.downcast::<T>()
            .map(|b| *b)
            .map_err(|_| anyhow!("stash {key:?} holds another type"))
    }

    /// Whether the lab is being torn down.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.stash.lock().unwrap_or_else(|p| p.into_inner()).clear();
        for mut c in self
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = t.join();
        }
        if let Err(e) = Lab::down(&self.tag) {
            eprintln!("lab: {e:#}");
        }
    }
}
