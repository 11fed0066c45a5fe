//! A Kubernetes node in a box: a real containerd (Debian's 1.6) with the CRI plugin, CNI
//! bridge networking and a locally built busybox image, everything under one directory.
//!
//! `cargo xtask lab node up|down` and the root tests in `tests/tests/cri_*.rs` both use this
//! module. There is no kubelet: [`Node::run_pod`] plays kubelet's part and creates pods
//! through the CRI with kubelet's labels and DNS configuration, so the pods look to
//! netdiag exactly as they would on a real node.
//!
//! What [`down`] removes, so nothing is left behind even after a crash:
//! our containerd (recognised by its `--config <dir>/config.toml` command line, never any
//! other containerd), every shim started with our socket and every process below them,
//! all mounts under the directory (overlayfs rootfs, shm, the pods' netns, which live there
//! thanks to `netns_mounts_under_state_dir`), the CNI bridge and its veths, the NAT rules
//! and `CNI-*` chains the bridge plugin's `ipMasq` added for our network (recognised by the
//! `name: "<network>"` comment the plugin puts on them), and the directory itself.

use anyhow::{Context, Result, anyhow, bail};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;

/// The image the node imports: busybox, usable as the sandbox ("pause") image and as a
/// workload image (`sleep` forever as its entrypoint, `/bin/sh` for commands).
pub const IMAGE: &str = "localhost/pause:1";

/// Where one node lives and how its network is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Directory holding config, root, state, socket, logs and mounts (`/run/ndr-node`).
    pub dir: PathBuf,
    /// CNI network name; it appears in the comments of the iptables rules CNI adds.
    pub network: String,
    /// Linux bridge the CNI bridge plugin creates.
    pub bridge: String,
    /// Pod subnet (host-local IPAM), e.g. `10.88.0.0/16`.
    pub subnet: String,
    /// The bridge's (gateway's) address inside `subnet`; the lab's DNS listens there.
    pub gateway: String,
}

impl NodeConfig {
    /// The node `cargo xtask lab node up` and `cargo xtask demo` use.
    pub fn lab() -> NodeConfig {
        NodeConfig {
            dir: PathBuf::from("/run/ndr-node"),
            network: "ndr-net".into(),
            bridge: "ndr0".into(),
            subnet: "10.88.0.0/16".into(),
            gateway: "10.88.0.1".into(),
        }
    }

    /// The node the root tests share (separate from the lab's so a running demo survives).
    pub fn test() -> NodeConfig {
        NodeConfig {
            dir: PathBuf::from("/run/ndr-node-test"),
            network: "ndr-test-net".into(),
            bridge: "ndr1".into(),
            subnet: "10.89.0.0/16".into(),
            gateway: "10.89.0.1".into(),
        }
    }

    /// A second test node, for a test that kills and restarts its containerd: on a node of
    /// its own, the tests sharing [`NodeConfig::test`] go on meanwhile instead of waiting
    /// for the restart (or failing through it). Its directory is not a prefix of the other
    /// nodes' (see [`down`]), nor is its bridge, network or subnet theirs.
    pub fn test_restart() -> NodeConfig {
        NodeConfig {
            dir: PathBuf::from("/run/ndr-node-restart"),
            network: "ndr-restart-net".into(),
            bridge: "ndr2".into(),
            subnet: "10.90.0.0/16".into(),
            gateway: "10.90.0.1".into(),
        }
    }

    /// The containerd socket (CRI and native API on one socket).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// `unix://` endpoint of the socket, as `--runtime-endpoint` takes it.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("containerd.pid")
    }

    /// containerd's configuration; `cri_enabled = false` disables the CRI plugin (the native
    /// API keeps working on the same root, which is how the native path is tested).
    fn containerd_toml(&self, cri_enabled: bool) -> String {
        let d = self.dir.display();
        let disabled = if cri_enabled {
            ""
        } else {
            "\"io.containerd.grpc.v1.cri\""
        };
        format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [{disabled}]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  # This VM withholds CAP_SYS_RESOURCE: runc cannot set oom_score_adj -998 (LAB.md).
  restrict_oom_score_adj = true
  # Keeps the pods' netns mounts under our state dir, so `down` finds them all.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni-conf"
"#
        )
    }

    fn cni_conflist(&self) -> String {
        format!(
            r#"{{
  "cniVersion": "1.0.0",
  "name": "{net}",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{br}",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "dataDir": "{d}/cni-ipam",
        "ranges": [[{{ "subnet": "{sub}", "gateway": "{gw}" }}]],
        "routes": [{{ "dst": "0.0.0.0/0" }}]
      }}
    }},
    {{ "type": "portmap", "capabilities": {{ "portMappings": true }} }}
  ]
}}
"#,
            net = self.network,
            br = self.bridge,
            d = self.dir.display(),
            sub = self.subnet,
            gw = self.gateway,
        )
    }
}

/// A running node: containerd up, image imported. Dropping it does not stop it; call
/// [`down`] (the test helper [`shared_test_node`] does so at process exit).
#[derive(Debug)]
pub struct Node {
    /// Its configuration.
    pub config: NodeConfig,
    /// containerd's PID.
    pub containerd_pid: u32,
    rt: tokio::runtime::Runtime,
    channel: tonic::transport::Channel,
}

/// What kubelet would ask for when it creates a pod.
#[derive(Debug, Clone, Default)]
pub struct PodSpec {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Attempt number of the sandbox (kubelet increments it when it recreates a sandbox).
    pub attempt: u32,
    /// Containers: name and command (`None` = the image's entrypoint, sleep forever).
    pub containers: Vec<(String, Option<Vec<String>>)>,
    /// Kubelet-like DNS: (nameservers, searches, options); `None` = the runtime's default.
    pub dns: Option<(Vec<String>, Vec<String>, Vec<String>)>,
    /// Image of the containers (`None` = [`IMAGE`]); the sandbox is always [`IMAGE`].
    pub image: Option<String>,
    /// `hostPID: true`: the sandbox and containers share the node's PID namespace.
    pub host_pid: bool,
    /// `hostNetwork: true`: the node's network namespace, no CNI.
    pub host_network: bool,
    /// `securityContext.privileged: true` on the sandbox and every container.
    pub privileged: bool,
    /// hostPath mounts of every container: (path on the node, path in the container,
    /// read-only).
    pub mounts: Vec<(PathBuf, String, bool)>,
}

impl PodSpec {
    /// A pod with one container named `app` running the image's entrypoint.
    pub fn new(namespace: &str, name: &str) -> PodSpec {
        PodSpec {
            namespace: namespace.into(),
            name: name.into(),
            attempt: 0,
            containers: vec![("app".into(), None)],
            ..PodSpec::default()
        }
    }

    /// The namespaces kubelet asks for: the node's with `hostNetwork`/`hostPID`, else the
    /// pod's network and a PID namespace per container (no `shareProcessNamespace`).
    fn namespace_options(&self) -> cri::NamespaceOption {
        let node = cri::NamespaceMode::Node as i32;
        cri::NamespaceOption {
            network: if self.host_network {
                node
            } else {
                cri::NamespaceMode::Pod as i32
            },
            pid: if self.host_pid {
                node
            } else {
                cri::NamespaceMode::Container as i32
            },
            ipc: cri::NamespaceMode::Pod as i32,
            ..Default::default()
        }
    }

    /// Kubelet's DNS for a pod in `namespace` (ClusterFirst: `ndots:5`, three search domains).
    pub fn with_cluster_dns(mut self, nameserver: &str) -> PodSpec {
        let ns = self.namespace.clone();
        self.dns = Some((
            vec![nameserver.into()],
            vec![
                format!("{ns}.svc.cluster.local"),
                "svc.cluster.local".into(),
                "cluster.local".into(),
            ],
            vec!["ndots:5".into()],
        ));
        self
    }
}

/// A pod the node created.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Sandbox ID.
    pub sandbox_id: String,
    /// The sandbox's PID as `PodSandboxStatus` (verbose) reports it.
    pub pid: u32,
    /// The pod IP CNI assigned.
    pub ip: Option<String>,
    /// Containers: name → (ID, PID reported by `ContainerStatus` verbose).
    pub containers: BTreeMap<String, (String, u32)>,
    /// Where the runtime writes the containers' logs (`<container name>.log`, CRI format).
    pub log_dir: PathBuf,
}

/// The pods a test created, removed however the test ends (panics included).
pub struct Pods<'a> {
    node: &'a Node,
    ids: Vec<String>,
}

impl<'a> Pods<'a> {
    /// No pods yet, on `node`.
    pub fn new(node: &'a Node) -> Pods<'a> {
        Pods {
            node,
            ids: Vec::new(),
        }
    }

    /// Runs a pod and remembers it for removal.
    pub fn run(&mut self, spec: &PodSpec) -> Result<Pod> {
        let pod = self
            .node
            .run_pod(spec)
            .with_context(|| format!("run pod {}/{}", spec.namespace, spec.name))?;
        self.ids.push(pod.sandbox_id.clone());
        Ok(pod)
    }
}

impl Drop for Pods<'_> {
    fn drop(&mut self) {
        for id in &self.ids {
            if let Err(e) = self.node.remove_pod(id) {
                eprintln!("removing pod {id}: {e:#}");
            }
        }
    }
}

/// Brings the node up, after tearing down whatever a previous run left (`down` first).
///
/// When containerd keeps refusing the image import ([`ImportRefused`]), the node is brought
/// up once more from nothing: twice in CI (session 12's cri_agent, session 13's cri_node
/// under `cargo xtask fresh`) one containerd answered all six attempts over 11 s with
/// "content digest …: not found" for the index.json blob the same import had just
/// written, so waiting longer on that instance is not the cure. Any other failure is
/// returned at once.
pub fn up(config: &NodeConfig) -> Result<Node> {
    if let Err(e) = start_with_image(config) {
        if e.downcast_ref::<ImportRefused>().is_none() {
            return Err(e);
        }
        let log = containerd_log_tail(config, 30);
        eprintln!(
            "node {}: {e:#}; bringing it up again from nothing (containerd log tail, newest first):\n{log}",
            config.dir.display()
        );
        start_with_image(config).map_err(|e| {
            let log = containerd_log_tail(config, 30);
            e.context(format!("containerd log tail, newest first:\n{log}"))
        })?;
    }
    connect(config)
}

/// `down`, then a fresh node directory, containerd started and the image imported.
fn start_with_image(config: &NodeConfig) -> Result<()> {
    down(config)?;
    std::fs::create_dir_all(config.dir.join("cni-conf"))
        .with_context(|| format!("creating {}", config.dir.display()))?;
    std::fs::write(
        config.dir.join("cni-conf/10-ndr.conflist"),
        config.cni_conflist(),
    )?;
    let image = config.dir.join("image.tar");
    build_image_tar(&image)?;
    start_containerd(config, true)?;
    import_image(config, &image)
}

/// containerd answered every attempt of an image import with "content digest …: not
/// found" (see [`up`]): the stderr of the last attempt.
#[derive(Debug)]
pub struct ImportRefused(
    /// What ctr said the last time.
    pub String,
);

impl std::fmt::Display for ImportRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ctr images import was refused every time: {}",
            self.0.trim()
        )
    }
}

impl std::error::Error for ImportRefused {}

/// Whether `ctr images import`'s stderr is containerd's "content digest …: not found".
fn is_refusal(stderr: &str) -> bool {
    stderr.contains("content digest") && stderr.contains("not found")
}

/// The last `lines` lines of the node's containerd log, newest first.
fn containerd_log_tail(config: &NodeConfig, lines: usize) -> String {
    let log = std::fs::read_to_string(config.dir.join("containerd.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(lines).collect();
    tail.join("\n")
}

/// Connects to a node already up (e.g. started by `cargo xtask lab node up`).
pub fn connect(config: &NodeConfig) -> Result<Node> {
    let pid = our_containerd(config)?
        .ok_or_else(|| anyhow!("no containerd of ours runs for {}", config.dir.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let channel = channel(&rt, config)?;
    Ok(Node {
        config: config.clone(),
        containerd_pid: pid,
        rt,
        channel,
    })
}

/// A gRPC channel on the node's socket, driven by `rt` (it dies with that runtime).
fn channel(rt: &tokio::runtime::Runtime, config: &NodeConfig) -> Result<tonic::transport::Channel> {
    let socket = config.socket();
    let endpoint = config.endpoint();
    Ok(rt.block_on(netdiag_cri::unix_channel(
        &socket,
        &endpoint,
        Duration::from_secs(5),
        Duration::from_secs(60),
    ))?)
}

impl Node {
    fn runtime(
        &self,
    ) -> cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel> {
        cri::runtime_service_client::RuntimeServiceClient::new(self.channel.clone())
    }

    /// Creates a pod the way kubelet does: sandbox (with kubelet's labels and the DNS
    /// config), then each container, started. Returns IDs and PIDs.
    pub fn run_pod(&self, spec: &PodSpec) -> Result<Pod> {
        let uid = format!("ndr-{}-{}-{}", spec.namespace, spec.name, spec.attempt);
        let mut labels = HashMap::new();
        labels.insert("io.kubernetes.pod.name".to_string(), spec.name.clone());
        labels.insert(
            "io.kubernetes.pod.namespace".to_string(),
            spec.namespace.clone(),
        );
        labels.insert("io.kubernetes.pod.uid".to_string(), uid.clone());
        let log_dir = self
            .config
            .dir
            .join("pod-logs")
            .join(format!("{}_{}_{}", spec.namespace, spec.name, uid));
        std::fs::create_dir_all(&log_dir)?;
        let sandbox_config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: spec.name.clone(),
                uid: uid.clone(),
                namespace: spec.namespace.clone(),
                attempt: spec.attempt,
            }),
            // As kubelet: a hostNetwork pod has the node's UTS namespace and hostname.
            hostname: if spec.host_network {
                String::new()
            } else {
                spec.name.clone()
            },
            log_directory: log_dir.display().to_string(),
            dns_config: spec
                .dns
                .as_ref()
                .map(|(servers, searches, options)| cri::DnsConfig {
                    servers: servers.clone(),
                    searches: searches.clone(),
                    options: options.clone(),
                }),
            labels: labels.clone(),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(spec.namespace_options()),
                    privileged: spec.privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut rs = self.runtime();
        let sandbox_id = self
            .rt
            .block_on(rs.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: String::new(),
            }))
            .with_context(|| format!("RunPodSandbox {}/{}", spec.namespace, spec.name))?
            .into_inner()
            .pod_sandbox_id;
        let (pid, ip) = self.sandbox_pid_ip(&sandbox_id)?;
        let mut containers = BTreeMap::new();
        for (name, command) in &spec.containers {
            let mut clabels = labels.clone();
            clabels.insert("io.kubernetes.container.name".into(), name.clone());
            let config = cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: name.clone(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: spec.image.clone().unwrap_or_else(|| IMAGE.into()),
                    ..Default::default()
                }),
                command: command.clone().unwrap_or_default(),
                labels: clabels,
                log_path: format!("{name}.log"),
                mounts: spec
                    .mounts
                    .iter()
                    .map(|(host, inside, readonly)| cri::Mount {
                        host_path: host.display().to_string(),
                        container_path: inside.clone(),
                        readonly: *readonly,
                        ..Default::default()
                    })
                    .collect(),
                linux: Some(cri::LinuxContainerConfig {
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        namespace_options: Some(spec.namespace_options()),
                        privileged: spec.privileged,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let id = self
                .rt
                .block_on(rs.create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: sandbox_id.clone(),
                    config: Some(config),
                    sandbox_config: Some(sandbox_config.clone()),
                }))
                .with_context(|| format!("CreateContainer {name} in {}", spec.name))?
                .into_inner()
                .container_id;
            self.rt
                .block_on(rs.start_container(cri::StartContainerRequest {
                    container_id: id.clone(),
                }))
                .with_context(|| format!("StartContainer {name} in {}", spec.name))?;
            let status = self
                .rt
                .block_on(rs.container_status(cri::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: true,
                }))?
                .into_inner();
            let cpid = info_pid(&status.info)
                .ok_or_else(|| anyhow!("ContainerStatus of {id} has no pid in its verbose info"))?;
            containers.insert(name.clone(), (id, cpid));
        }
        Ok(Pod {
            sandbox_id,
            pid,
            ip,
            containers,
            log_dir,
        })
    }

    /// The PID and IP `PodSandboxStatus` (verbose) reports for a sandbox.
    pub fn sandbox_pid_ip(&self, sandbox_id: &str) -> Result<(u32, Option<String>)> {
        let status = self
            .rt
            .block_on(
                self.runtime()
                    .pod_sandbox_status(cri::PodSandboxStatusRequest {
                        pod_sandbox_id: sandbox_id.into(),
                        verbose: true,
                    }),
            )
            .with_context(|| format!("PodSandboxStatus {sandbox_id}"))?
            .into_inner();
        let pid = info_pid(&status.info)
            .ok_or_else(|| anyhow!("PodSandboxStatus {sandbox_id}: no pid in verbose info"))?;
        let ip = status
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty());
        Ok((pid, ip))
    }

    /// Stops a sandbox (it stays listed as NotReady, as kubelet's old attempts do).
    pub fn stop_pod(&self, sandbox_id: &str) -> Result<()> {
        self.rt
            .block_on(self.runtime().stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sandbox_id.into(),
            }))
            .with_context(|| format!("StopPodSandbox {sandbox_id}"))?;
        Ok(())
    }

    /// Stops and removes a sandbox and its containers.
    pub fn remove_pod(&self, sandbox_id: &str) -> Result<()> {
        self.stop_pod(sandbox_id)?;
        self.rt
            .block_on(
                self.runtime()
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                        pod_sandbox_id: sandbox_id.into(),
                    }),
            )
            .with_context(|| format!("RemovePodSandbox {sandbox_id}"))?;
        Ok(())
    }

    /// Runs a command in a container (CRI `ExecSync`), returning (exit code, stdout, stderr).
    pub fn exec(
        &self,
        container_id: &str,
        cmd: &[&str],
        timeout: Duration,
    ) -> Result<(i32, String, String)> {
        let r = self
            .rt
            .block_on(self.runtime().exec_sync(cri::ExecSyncRequest {
                container_id: container_id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            }))
            .with_context(|| format!("ExecSync {cmd:?} in {container_id}"))?
            .into_inner();
        Ok((
            r.exit_code,
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
        ))
    }

    /// Stops a container the way kubelet does: SIGTERM, then SIGKILL after `grace`.
    pub fn stop_container(&self, container_id: &str, grace: Duration) -> Result<()> {
        self.rt
            .block_on(self.runtime().stop_container(cri::StopContainerRequest {
                container_id: container_id.into(),
                timeout: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
            }))
            .with_context(|| format!("StopContainer {container_id}"))?;
        Ok(())
    }

    /// A container's state (`ContainerState` as its name, e.g. `CONTAINER_EXITED`) and
    /// exit code, as `ContainerStatus` reports them.
    pub fn container_state(&self, container_id: &str) -> Result<(String, i32)> {
        let status = self
            .rt
            .block_on(
                self.runtime()
                    .container_status(cri::ContainerStatusRequest {
                        container_id: container_id.into(),
                        verbose: false,
                    }),
            )
            .with_context(|| format!("ContainerStatus {container_id}"))?
            .into_inner()
            .status
            .ok_or_else(|| anyhow!("ContainerStatus {container_id}: no status"))?;
        let state = cri::ContainerState::try_from(status.state)
            .map(|s| s.as_str_name().to_string())
            .unwrap_or_else(|_| format!("state {}", status.state));
        Ok((state, status.exit_code))
    }

    /// Imports an OCI image archive (e.g. `cargo xtask image`'s) into the node's `k8s.io`
    /// namespace, under the name its index gives (`ctr images import`, as an operator
    /// would on a node without a registry).
    pub fn import_archive(&self, archive: &Path) -> Result<()> {
        ctr_import(&self.config, archive, None)
    }

    /// The image references the node's `k8s.io` namespace holds (`ctr images ls -q`).
    pub fn images(&self) -> Result<Vec<String>> {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.config.socket())
            .args(["-n", "k8s.io", "images", "ls", "-q"])
            .output()
            .context("running ctr images ls")?;
        if !out.status.success() {
            bail!(
                "ctr images ls failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Restarts containerd on the same root with the CRI plugin enabled or disabled;
    /// the pods (shims) keep running across the restart, as on a real node.
    pub fn restart_containerd(&mut self, cri_enabled: bool) -> Result<()> {
        self.kill_containerd()?;
        self.start_containerd(cri_enabled)
    }

    /// Kills containerd (SIGKILL, as a crash or an OOM kill would), leaving its socket file
    /// behind, stale. The pods' shims and processes keep running. Until
    /// [`Node::start_containerd`], this node answers no call.
    pub fn kill_containerd(&mut self) -> Result<()> {
        kill_pid(self.containerd_pid, "containerd")?;
        // The main thread of a Go program can be a zombie while its other threads still
        // exit, holding the listening socket: wait until the socket refuses.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(self.config.socket())
            .is_ok_and(|_| Instant::now() < deadline)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if std::os::unix::net::UnixStream::connect(self.config.socket()).is_ok() {
            bail!("containerd's socket still accepts 10 s after SIGKILL");
        }
        Ok(())
    }

    /// Starts containerd again on the same root, after [`Node::kill_containerd`].
    pub fn start_containerd(&mut self, cri_enabled: bool) -> Result<()> {
        start_containerd(&self.config, cri_enabled)?;
        self.containerd_pid = our_containerd(&self.config)?
            .ok_or_else(|| anyhow!("restarted containerd vanished"))?;
        self.channel = channel(&self.rt, &self.config)?;
        Ok(())
    }
}

fn info_pid(info: &HashMap<String, String>) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    v.get("pid")?.as_u64().and_then(|p| u32::try_from(p).ok())
}

/// A process-wide node for the root tests of one test binary, torn down when the process
/// exits (even when tests failed: the harness exits through `exit(3)`, which runs the
/// `atexit` handler registered here). A lock serialises tests that need the node alone.
pub fn shared_test_node() -> Result<&'static Mutex<Node>> {
    static NODE: OnceLock<std::result::Result<Mutex<Node>, String>> = OnceLock::new();
    process_node(&NODE, NodeConfig::test())
}

/// Like [`shared_test_node`], on [`NodeConfig::test_restart`]: for the one test of a binary
/// that kills containerd, so that the others, on [`shared_test_node`], run beside it.
pub fn restart_test_node() -> Result<&'static Mutex<Node>> {
    static NODE: OnceLock<std::result::Result<Mutex<Node>, String>> = OnceLock::new();
    process_node(&NODE, NodeConfig::test_restart())
}

/// The nodes this process brought up, torn down by the `atexit` handler.
static BROUGHT_UP: Mutex<Vec<NodeConfig>> = Mutex::new(Vec::new());

/// Brings `config`'s node up once per process (in `cell`) and registers its teardown at
/// process exit.
fn process_node(
    cell: &'static OnceLock<std::result::Result<Mutex<Node>, String>>,
    config: NodeConfig,
) -> Result<&'static Mutex<Node>> {
    let r = cell.get_or_init(|| {
        extern "C" fn teardown() {
            let configs =
                std::mem::take(&mut *BROUGHT_UP.lock().unwrap_or_else(|p| p.into_inner()));
            for config in configs {
                if let Err(e) = down(&config) {
                    eprintln!(
                        "ndr node teardown of {} failed: {e:#}",
                        config.dir.display()
                    );
                }
            }
        }
        static REGISTERED: OnceLock<i32> = OnceLock::new();
        // SAFETY: `teardown` is a plain extern "C" fn with no preconditions; registering it
        // once is sound. It runs at exit, after the test threads are done.
        let rc = *REGISTERED.get_or_init(|| unsafe { libc::atexit(teardown) });
        if rc != 0 {
            return Err("atexit failed: the node would not be torn down".into());
        }
        // Test binaries share the one test node's paths, bridge and subnet: a second binary
        // waits for the first to exit (the lock is released when the process ends, after the
        // teardown above ran) instead of tearing its node down from under it.
        lock_test_node(&config).map_err(|e| format!("{e:#}"))?;
        BROUGHT_UP
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(config.clone());
        // The node's pods send through the host's conntrack: never beside a lab that
        // lowers the global nf_conntrack_max. Held (shared) until the process exits.
        let labs = crate::lab::conntrack_max::lock_labs(false).map_err(|e| format!("{e:#}"))?;
        std::mem::forget(labs);
        up(&config).map(Mutex::new).map_err(|e| format!("{e:#}"))
    });
    r.as_ref().map_err(|e| {
        anyhow!(
            "bringing the test node {} up failed: {e}",
            config.dir.display()
        )
    })
}

/// Takes the machine-wide lock on a test node for the rest of this process (flock on
/// `<dir>.lock`, `/run/ndr-node-test.lock` for [`NodeConfig::test`]), waiting at most 10
/// minutes for another test binary.
fn lock_test_node(config: &NodeConfig) -> Result<()> {
    use std::os::fd::AsRawFd;
    let path = format!("{}.lock", config.dir.display());
    let path = path.as_str();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {path}"))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut said = false;
    loop {
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("another test binary held {path} for 10 minutes");
        }
        if !said {
            eprintln!("waiting for another test binary's node to go down ({path})");
            said = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Held until the process exits.
    std::mem::forget(file);
    Ok(())
}

// ---- containerd process ----

fn start_containerd(config: &NodeConfig, cri_enabled: bool) -> Result<()> {
    std::fs::write(config.config_path(), config.containerd_toml(cri_enabled))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.dir.join("containerd.log"))?;
    use std::os::unix::process::CommandExt;
    let child = Command::new("containerd")
        .arg("--config")
        .arg(config.config_path())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C meant for xtask must not kill the node midway.
        .process_group(0)
        .spawn()
        .context("starting containerd (Debian package `containerd`)")?;
    let pid = child.id();
    std::fs::write(config.pid_file(), pid.to_string())?;
    // The child is reaped by whoever outlives it; we only wait for its socket.
    drop(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if config.socket().exists()
            && Command::new("ctr")
                .arg("--address")
                .arg(config.socket())
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        {
            break;
        }
        if !Path::new(&format!("/proc/{pid}")).exists() || Instant::now() > deadline {
            bail!(
                "containerd did not come up on {} (log tail, newest first):\n{}",
                config.socket().display(),
                containerd_log_tail(config, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if cri_enabled {
        // The CRI plugin loads its CNI config asynchronously; give it the same wait.
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(())
}

fn import_image(config: &NodeConfig, tar: &Path) -> Result<()> {
    ctr_import(config, tar, Some(IMAGE))
}

/// `ctr -n k8s.io images import [--index-name NAME] TAR` on the node. containerd's content
/// store now and then answers an import with "content digest sha256:…: not found" for a
/// blob the same import has just written (reported upstream as a race with its garbage
/// collector, containerd/containerd#3937, nerdctl#3513; seen here on a freshly started
/// node). An import is idempotent, so that one answer is retried, and said, with waits
/// that double (0.5, 1, 2, 4, 4 s). When every attempt gets it, the error is
/// [`ImportRefused`], which [`up`] answers with a new containerd.
fn ctr_import(config: &NodeConfig, tar: &Path, index_name: Option<&str>) -> Result<()> {
    const ATTEMPTS: u32 = 6;
    for attempt in 1..=ATTEMPTS {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(config.socket())
            .args(["-n", "k8s.io", "images", "import"]);
        if let Some(name) = index_name {
            cmd.args(["--index-name", name]);
        }
        let out = cmd.arg(tar).output().context("running ctr images import")?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if !is_refusal(&err) {
            bail!("ctr images import {} failed: {err}", tar.display());
        }
        if attempt == ATTEMPTS {
            return Err(ImportRefused(err.into_owned()).into());
        }
        eprintln!(
            "ctr images import {}: {} (attempt {attempt} of {ATTEMPTS}; retrying)",
            tar.display(),
            err.trim()
        );
        std::thread::sleep(Duration::from_millis(500 << (attempt - 1).min(3)));
    }
    Ok(())
}

/// The PID of our containerd, if it runs: the one in the pid file whose command line names
/// our config file (a PID reused by another process, or another containerd, is not ours).
fn our_containerd(config: &NodeConfig) -> Result<Option<u32>> {
    let wanted = config.config_path().display().to_string();
    let mut found = None;
    for (pid, cmdline) in processes() {
        if cmdline.first().is_some_and(|a| a.ends_with("containerd")) && cmdline.contains(&wanted) {
            found = Some(pid);
        }
    }
    Ok(found)
}

/// Every process: PID and argv.
fn processes() -> Vec<(u32, Vec<String>)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.push((pid, args));
    }
    out
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": comm may hold spaces and parentheses; split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn kill_pid(pid: u32, what: &str) -> Result<()> {
    // kill(2) itself: a minimal Debian has no /bin/kill (procps), and a failed spawn here
    // would leave the process running.
    if let Ok(p) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        // A zombie child of ours: reap it. Anyone else's zombie is dead already (its
        // parent, also being killed, or init reaps it): nothing of it is left to remove.
        reap(pid);
        if is_zombie(pid) {
            break;
        }
        if Instant::now() > deadline {
            bail!("{what} (pid {pid}) survived SIGKILL for 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Whether `pid` is a zombie (state `Z` in /proc/PID/stat; `X` = being reaped).
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X")
    })
}

fn reap(pid: u32) {
    if let Ok(p) = i32::try_from(pid) {
        let mut status = 0;
        // SAFETY: waitpid with WNOHANG on a PID only reaps it if it is our zombie child;
        // `status` is a valid out-pointer for the duration of the call.
        unsafe {
            libc::waitpid(p, &mut status, libc::WNOHANG);
        }
    }
}

// ---- teardown ----

/// Tears the node down completely; does nothing harmful when nothing is there.
pub fn down(config: &NodeConfig) -> Result<()> {
    let dir = config.dir.display().to_string();
    let socket = config.socket().display().to_string();
    // 1. Processes: our containerd, shims started for our socket, and all their descendants.
    let procs = processes();
    // "/run/ndr-node/…", never "/run/ndr-node-test/…": the lab's and the tests' nodes
    // have directory names that are prefixes of each other.
    let under = format!("{dir}/");
    let mut roots = BTreeSet::new();
    if let Some(pid) = our_containerd(config)? {
        roots.insert(pid);
    }
    for (pid, args) in &procs {
        let is_shim = args.first().is_some_and(|a| a.contains("containerd-shim"));
        if is_shim && args.iter().any(|a| *a == socket || a.starts_with(&under)) {
            roots.insert(*pid);
        }
        // The lab's DNS server (`cargo xtask demo`), recognised by its files under our dir.
        let is_dnsmasq = args.first().is_some_and(|a| a.ends_with("dnsmasq"));
        if is_dnsmasq && args.iter().any(|a| a.contains(&under)) {
            roots.insert(*pid);
        }
        // Helpers that name the node they belong to (`xtask node hold-listener`).
        if args.iter().any(|a| *a == node_marker(config)) {
            roots.insert(*pid);
        }
    }
    let mut victims = roots.clone();
    loop {
        let before = victims.len();
        for (pid, _) in &procs {
            if parent_of(*pid).is_some_and(|pp| victims.contains(&pp)) {
                victims.insert(*pid);
            }
        }
        if victims.len() == before {
            break;
        }
    }
    // SIGKILL everything first, then wait for each: killing one by one in PID order would
    // wait on a child whose parent (a later PID after wrap-around) is still alive.
    // Never ourselves (a caller's own command line could carry a node's paths).
    victims.remove(&std::process::id());
    for pid in &victims {
        if let Ok(p) = i32::try_from(*pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    for pid in &victims {
        kill_pid(*pid, "node process")?;
    }
    // 2. Mounts under the directory, deepest first (overlay rootfs, shm, netns bind mounts).
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| *m == dir || m.starts_with(&format!("{dir}/")))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in &mounts {
        let st = Command::new("umount").args(["-l", m]).status()?;
        if !st.success() {
            bail!("umount -l {m} failed");
        }
    }
    // 3. Network: veths on our bridge, the bridge, the NAT rules CNI added for our network.
    if Path::new(&format!("/sys/class/net/{}", config.bridge)).exists() {
        if let Ok(entries) = std::fs::read_dir(format!("/sys/class/net/{}/brif", config.bridge)) {
            for e in entries.flatten() {
                let _ = Command::new("ip")
                    .args(["link", "del"])
                    .arg(e.file_name())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        sh(Command::new("ip").args(["link", "del", &config.bridge]))?;
    }
    remove_cni_nat(config)?;
    // 4. The directory.
    if config.dir.exists() {
        std::fs::remove_dir_all(&config.dir)
            .with_context(|| format!("removing {}", config.dir.display()))?;
    }
    Ok(())
}

/// The argument a helper process carries so that [`down`] kills it with the node:
/// `--ndr-node=<dir>`.
pub fn node_marker(config: &NodeConfig) -> String {
    format!("--ndr-node={}", config.dir.display())
}

/// Deletes the nat-table rules whose comment names our CNI network, and the `CNI-*` chains
/// they jump to (the bridge plugin's ipMasq creates one chain per pod).
fn remove_cni_nat(config: &NodeConfig) -> Result<()> {
    let out = Command::new("iptables-save").args(["-t", "nat"]).output();
    let Ok(out) = out else {
        return Ok(()); // no iptables: CNI could not have added anything
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let marker = format!("name: \\\"{}\\\"", config.network);
    let mut chains = BTreeSet::new();
    let mut rules = Vec::new();
    for line in text.lines() {
        if !line.starts_with("-A ") || !line.contains(&marker) {
            continue;
        }
        let chain = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        if chain.starts_with("CNI-") {
            chains.insert(chain);
        } else {
            rules.push(line.to_string());
        }
    }
    for rule in rules {
        // "-A POSTROUTING …" → "iptables -t nat -D POSTROUTING …" through the shell-free
        // iptables-restore, which parses the quoting iptables-save produced.
        let input = format!("*nat\n{}\nCOMMIT\n", rule.replacen("-A ", "-D ", 1));
        let mut child = Command::new("iptables-restore")
            .arg("--noflush")
            .stdin(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes())?;
        }
        let st = child.wait()?;
        if !st.success() {
            bail!("removing CNI rule failed: {rule}");
        }
    }
    for chain in chains {
        sh(Command::new("iptables").args(["-t", "nat", "-F", &chain]))?;
        sh(Command::new("iptables").args(["-t", "nat", "-X", &chain]))?;
    }
    Ok(())
}

fn sh(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}

// ---- the image ----

/// Writes an OCI image layout tarball holding busybox (from busybox-static) as `/bin/busybox`
/// and `/bin/sh`, entrypoint `sleep` forever (LAB.md's recipe, built without any registry).
pub fn build_image_tar(out: &Path) -> Result<()> {
    let busybox = std::fs::read("/bin/busybox")
        .context("reading /bin/busybox (Debian package busybox-static)")?;
    let mut layer = Vec::new();
    for d in ["bin/", "etc/", "tmp/", "proc/", "sys/", "dev/", "root/"] {
        tar_entry(&mut layer, d, b'5', 0o755, b"", "")?;
    }
    tar_entry(&mut layer, "bin/busybox", b'0', 0o755, &busybox, "")?;
    // glibc's resolver, as most application images have it: busybox-static's own lookups
    // ignore the search list (nslookup) or crash without NSS (wget), so the DNS scenarios
    // use `getent ahosts`, which goes through glibc's getaddrinfo with its ndots logic.
    let mut dirs = BTreeSet::new();
    for path in glibc_getent_files()? {
        let rel = path.trim_start_matches('/');
        let mut prefix = String::new();
        let parts: Vec<&str> = rel.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            prefix.push_str(part);
            prefix.push('/');
            if dirs.insert(prefix.clone()) && !["bin/", "etc/"].contains(&prefix.as_str()) {
                tar_entry(&mut layer, &prefix, b'5', 0o755, b"", "")?;
            }
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
        tar_entry(&mut layer, rel, b'0', 0o755, &bytes, "")?;
    }
    for applet in [
        "sh", "sleep", "nc", "wget", "nslookup", "ip", "ping", "cat", "ls", "timeout", "date",
        "seq", "httpd",
    ] {
        tar_entry(
            &mut layer,
            &format!("bin/{applet}"),
            b'2',
            0o777,
            b"",
            "busybox",
        )?;
    }
    tar_finish(&mut layer);
    let layer_digest = sha256(&layer)?;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/busybox", "sleep", "2147483647"],
            "Env": ["PATH=/bin:/usr/bin"],
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
    })
    .to_string()
    .into_bytes();
    let config_digest = sha256(&config)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{layer_digest}"),
            "size": layer.len(),
        }],
    })
    .to_string()
    .into_bytes();
    let manifest_digest = sha256(&manifest)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": IMAGE },
            "platform": { "architecture": arch, "os": "linux" },
        }],
    })
    .to_string()
    .into_bytes();
    let mut outer = Vec::new();
    tar_entry(
        &mut outer,
        "oci-layout",
        b'0',
        0o644,
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        "",
    )?;
    tar_entry(&mut outer, "index.json", b'0', 0o644, &index, "")?;
    tar_entry(&mut outer, "blobs/", b'5', 0o755, b"", "")?;
    tar_entry(&mut outer, "blobs/sha256/", b'5', 0o755, b"", "")?;
    for (d, bytes) in [
        (&layer_digest, &layer),
        (&config_digest, &config),
        (&manifest_digest, &manifest),
    ] {
        tar_entry(
            &mut outer,
            &format!("blobs/sha256/{d}"),
            b'0',
            0o644,
            bytes,
            "",
        )?;
    }
    tar_finish(&mut outer);
    std::fs::write(out, outer).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// `/usr/bin/getent` and the shared objects `ldd` says it loads (libc, the dynamic loader).
fn glibc_getent_files() -> Result<Vec<String>> {
    let out = Command::new("ldd")
        .arg("/usr/bin/getent")
        .output()
        .context("running ldd /usr/bin/getent (Debian packages libc-bin)")?;
    if !out.status.success() {
        bail!(
            "ldd /usr/bin/getent failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut files = vec!["/usr/bin/getent".to_string()];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = line
            .split("=>")
            .last()
            .and_then(|r| r.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(p) = path {
            files.push(p.to_string());
        }
    }
    Ok(files)
}

/// Appends one ustar entry (`kind`: b'0' file, b'2' symlink, b'5' directory).
fn tar_entry(
    out: &mut Vec<u8>,
    name: &str,
    kind: u8,
    mode: u32,
    data: &[u8],
    link: &str,
) -> Result<()> {
    if name.len() > 99 || link.len() > 99 {
        bail!("tar name too long: {name}");
    }
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        h[at..at + width].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, u64::from(mode));
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, data.len() as u64);
    octal(&mut h, 136, 12, 0);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
    Ok(())
}

fn tar_finish(out: &mut Vec<u8>) {
    out.extend(std::iter::repeat_n(0u8, 1024));
}

/// SHA-256 hex digest through coreutils' `sha256sum` (no hashing crate in the workspace).
fn sha256(data: &[u8]) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running sha256sum")?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("sha256sum: no stdin"))?;
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow!("sha256sum writer thread panicked"))??;
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.split_whitespace().next().unwrap_or_default();
    if hex.len() != 64 {
        bail!("sha256sum printed {text:?}");
    }
    Ok(hex.to_string())
}

/// Opens a TCP listener inside the network namespace of `pid` with an explicit accept
/// `backlog` and never accepts on it: the accept-queue-overflow reproduction of
/// DETECTION.md, inside a real pod. The socket stays in the pod's namespace for as long as
/// the returned listener lives (dropping it closes the socket).
pub fn hold_listener_in_netns(pid: u32, port: u16, backlog: i32) -> Result<std::net::TcpListener> {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, listen, setsockopt, socket,
        sockopt,
    };
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .with_context(|| format!("opening /proc/{pid}/ns/net"))?;
    // setns on a throwaway thread: the calling thread stays in the node's namespace.
    let fd = std::thread::spawn(move || -> Result<std::os::fd::OwnedFd> {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .context("setns into the pod's netns")?;
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn::new(0, 0, 0, 0, port),
        )?;
        listen(&fd, Backlog::new(backlog)?)?;
        Ok(fd)
    })
    .join()
    .map_err(|_| anyhow!("listener thread panicked"))??;
    Ok(std::net::TcpListener::from(fd))
}

#[cfg(test)]
mod import_tests {
    use super::is_refusal;

    /// The two answers containerd gave in session 13's fresh CI are refusals (retried,
    /// then a new node); another import error is not (returned at once).
    #[test]
    fn only_content_digest_not_found_counts_as_a_refusal() {
        let d = "sha256:029d8a3ad1e364f5fac4ed9d2ffad678cc44ce2e8b1c751b64664b13472ea04e";
        assert!(is_refusal(&format!("ctr: content digest {d}: not found\n")));
        assert!(is_refusal(&format!(
            "ctr: failed to resolve rootfs: content digest {d}: not found\n"
        )));
        assert!(!is_refusal(
            "ctr: failed to open tar: no such file or directory\n"
        ));
        assert!(!is_refusal("ctr: image \"localhost/pause:1\": not found\n"));
    }
}
