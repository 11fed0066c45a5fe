//! Resolve Kubernetes pods to PIDs on the node, through the container runtime — what
//! `crictl pods`, `crictl inspectp` and `crictl inspect` do, as a library.
//!
//! | here | the tool people know |
//! |---|---|
//! | [`Client::list_pods`] | `crictl pods` |
//! | [`Client::resolve`] | `crictl inspectp <pod> \| jq .info.pid` (or `crictl inspect` with `-c`) |
//! | [`endpoint::detect`] | crictl's `--runtime-endpoint` / `CONTAINER_RUNTIME_ENDPOINT` / default sockets |
//! | [`peer::runtime_process`], [`Client::runtime_process`] | `ss -xp` on the socket: is the runtime in our PID namespace (`hostPID`)? |
//!
//! Two paths, chosen at [`Client::connect`]: the CRI v1 `RuntimeService` (containerd,
//! CRI-O, cri-dockerd), and, when the socket does not serve the CRI (containerd with its
//! CRI plugin disabled, or a CRI that fails), containerd's native API in namespace `k8s.io`,
//! matching the labels kubelet puts on every sandbox and container
//! (`io.kubernetes.pod.name`, `io.kubernetes.pod.namespace`, `io.kubernetes.container.name`)
//! and asking the task service for the PID.
//!
//! The API is blocking: the client owns a small current-thread tokio runtime, and every
//! call has a timeout. It never enters a namespace (that is `netdiag-netns`' job).
//!
//! ```no_run
//! use netdiag_cri::{Client, PodRef};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), netdiag_cri::Error> {
//! let client = Client::connect(None, Duration::from_secs(5))?; // finds the socket itself
//! let target = client.resolve(&PodRef::parse("default/web-0", None, None)?)?;
//! println!("{} runs as PID {} with IP {:?}", target.pod, target.pid, target.ip);
//! for note in &target.notes {
//!     println!("note: {note}");
//! }
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod criapi;
pub mod endpoint;
mod error;
mod native;
pub mod peer;
mod select;

pub use error::Error;
pub use peer::RuntimeProcess;

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A pod (and optionally one of its containers) named the way kubectl names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRef {
    /// Kubernetes namespace (`default` unless given).
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Container name (`-c`); `None` means the pod sandbox itself.
    pub container: Option<String>,
}

impl PodRef {
    /// Parses `ns/name` or `name`. The namespace comes from `ns/…`, else `namespace`, else
    /// `default`; giving both a different `-n` and `ns/` is an error.
    pub fn parse(
        spec: &str,
        namespace: Option<&str>,
        container: Option<&str>,
    ) -> Result<PodRef, Error> {
        let bad = |reason| Error::BadPodRef {
            spec: spec.to_string(),
            reason,
        };
        let (ns, name) = match spec.split_once('/') {
            Some((ns, name)) => {
                if let Some(n) = namespace {
                    if n != ns {
                        return Err(bad("namespace given twice (NS/POD and -n) and they differ"));
                    }
                }
                (ns, name)
            }
            None => (namespace.unwrap_or("default"), spec),
        };
        if name.is_empty() || ns.is_empty() {
            return Err(bad("empty namespace or pod name"));
        }
        if name.contains('/') {
            return Err(bad("expected NAMESPACE/POD or POD"));
        }
        if container.is_some_and(str::is_empty) {
            return Err(bad("empty container name"));
        }
        Ok(PodRef {
            namespace: ns.to_string(),
            name: name.to_string(),
            container: container.map(str::to_string),
        })
    }
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if let Some(c) = &self.container {
            write!(f, " (container {c})")?;
        }
        Ok(())
    }
}

/// What a pod resolved to: the process whose namespaces netdiag enters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Target {
    /// The pod asked for.
    pub pod: PodRef,
    /// PID (in the node's PID namespace) of the sandbox, or of the container with `-c`.
    pub pid: u32,
    /// Sandbox ID.
    pub sandbox_id: String,
    /// Container ID with `-c`.
    pub container_id: Option<String>,
    /// Pod IP as the runtime reports it.
    pub ip: Option<IpAddr>,
    /// Path of the pod's network namespace as the runtime reports it (else `/proc/PID/ns/net`).
    pub netns_path: Option<PathBuf>,
    /// Things the user should know about the choice (several sandboxes, fallback API …).
    pub notes: Vec<String>,
    /// The runtime's own process as the caller sees it: a process of the node, to check
    /// the caller's namespaces against (see [`Client::runtime_process`]).
    pub runtime_process: RuntimeProcess,
}

/// One pod sandbox on this node, for `kubectl-netdiag pods`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PodInfo {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// `Ready` or `NotReady` (the sandbox state).
    pub state: String,
    /// Sandbox PID when ready.
    pub pid: Option<u32>,
    /// Pod IP.
    pub ip: Option<IpAddr>,
    /// Network namespace path.
    pub netns_path: Option<PathBuf>,
    /// Sandbox ID.
    pub sandbox_id: String,
}

/// Which API of the runtime the client talks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// CRI v1 `RuntimeService` (kubelet's view).
    Cri,
    /// containerd's own API, namespace `k8s.io`, kubelet's labels.
    ContainerdNative,
}

/// A blocking client to the node's container runtime.
#[derive(Debug)]
pub struct Client {
    endpoint: String,
    rt: tokio::runtime::Runtime,
    channel: tonic::transport::Channel,
    timeout: Duration,
    backend: Backend,
    fallback_note: Option<String>,
    runtime_process: RuntimeProcess,
}

impl Client {
    /// Connects to `endpoint` (`unix:///path` or `/path`), or, with `None`, to
    /// `$CONTAINER_RUNTIME_ENDPOINT` or the first known socket that exists. Uses the CRI
    /// when the socket serves it, else containerd's native API.
    pub fn connect(endpoint: Option<&str>, timeout: Duration) -> Result<Client, Error> {
        Client::connect_with(endpoint, timeout, None)
    }

    /// Like [`Client::connect`], forcing one backend (`None` = choose as `connect` does).
    pub fn connect_with(
        endpoint: Option<&str>,
        timeout: Duration,
        backend: Option<Backend>,
    ) -> Result<Client, Error> {
        let socket = endpoint::detect(endpoint)?;
        // Where the path came from, for the "not found" message: a stale
        // CONTAINER_RUNTIME_ENDPOINT in the environment is easy to overlook.
        // (A CLI may pass the variable's value as `endpoint`, as clap's `env` does.)
        let env = std::env::var(endpoint::ENDPOINT_ENV)
            .ok()
            .filter(|e| !e.is_empty());
        let source = match (endpoint, env.as_deref()) {
            (Some(e), Some(v)) if e == v => " (from $CONTAINER_RUNTIME_ENDPOINT)",
            (Some(_), _) => " (--runtime-endpoint)",
            (None, Some(_)) => " (from $CONTAINER_RUNTIME_ENDPOINT)",
            (None, None) => "",
        };
        let endpoint = format!("unix://{}", socket.display());
        let runtime_process = peer::of_stream(&peer::connect(&socket, &endpoint, source)?);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let channel = rt.block_on(connect_channel(&socket, &endpoint, timeout))?;
        let mut client = Client {
            endpoint,
            rt,
            channel,
            timeout,
            backend: Backend::Cri,
            fallback_note: None,
            runtime_process,
        };
        match backend {
            Some(b) => client.backend = b,
            None => {
                if let Err(cri_err) = client.cri_version() {
                    match client.native_version() {
                        Ok(()) => {
                            client.backend = Backend::ContainerdNative;
                            client.fallback_note = Some(format!(
                                "the CRI is unavailable on {} ({cri_err}); used containerd's native API (namespace k8s.io)",
                                client.endpoint
                            ));
                        }
                        Err(native_err) => {
                            if let Error::Timeout { .. } = cri_err {
                                return Err(cri_err);
                            }
                            return Err(Error::NoApi {
                                endpoint: client.endpoint.clone(),
                                cri: cri_err.to_string(),
                                native: native_err.to_string(),
                            });
                        }
                    }
                }
            }
        }
        Ok(client)
    }

    /// The endpoint in use, `unix:///path`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The API in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The runtime's process as this process sees it: whether its PIDs are ours to use.
    pub fn runtime_process(&self) -> RuntimeProcess {
        self.runtime_process
    }

    /// Resolves a pod (and optionally a container) to a PID and its metadata. Fails with
    /// [`Error::HostPidNeeded`] when the runtime lives in a PID namespace this process
    /// cannot see (a pod without `hostPID: true`), where the PID would name nothing.
    pub fn resolve(&self, pod: &PodRef) -> Result<Target, Error> {
        let mut target = match self.backend {
            Backend::Cri => criapi::resolve(self, pod)?,
            Backend::ContainerdNative => native::resolve(self, pod)?,
        };
        if !self.runtime_process.pids_usable() {
            return Err(Error::HostPidNeeded {
                pod: target.pod.to_string(),
                pid: target.pid,
                endpoint: self.endpoint.clone(),
            });
        }
        target.runtime_process = self.runtime_process;
        if let Some(n) = &self.fallback_note {
            target.notes.push(n.clone());
        }
        Ok(target)
    }

    /// Lists the pod sandboxes on this node, newest first.
    pub fn list_pods(&self) -> Result<Vec<PodInfo>, Error> {
        match self.backend {
            Backend::Cri => criapi::list(self),
            Backend::ContainerdNative => native::list(self),
        }
    }

    fn cri_version(&self) -> Result<(), Error> {
        criapi::version(self)
    }

    fn native_version(&self) -> Result<(), Error> {
        native::version(self)
    }

    /// Runs one call with the client's timeout.
    pub(crate) fn call<T>(
        &self,
        call: &'static str,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, Error> {
        // The timer must be created inside the runtime (it registers with its time driver).
        let timeout = self.timeout;
        match self
            .rt
            .block_on(async move { tokio::time::timeout(timeout, fut).await })
        {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(Error::rpc(call, &self.endpoint, status)),
            Err(_) => Err(Error::Timeout {
                call,
                endpoint: self.endpoint.clone(),
                after: self.timeout,
            }),
        }
    }
}

async fn connect_channel(
    socket: &Path,
    endpoint: &str,
    timeout: Duration,
) -> Result<tonic::transport::Channel, Error> {
    unix_channel(socket, endpoint, timeout, timeout).await
}

/// A gRPC channel to a runtime's unix socket (`socket`, named `endpoint` in errors): both
/// the CRI and containerd's native API speak HTTP/2 over it. `connect_timeout` bounds the
/// connection, `call_timeout` each call. Must run inside a tokio runtime with I/O and time
/// enabled; the channel is driven by that runtime.
pub async fn unix_channel(
    socket: &Path,
    endpoint: &str,
    connect_timeout: Duration,
    call_timeout: Duration,
) -> Result<tonic::transport::Channel, Error> {
    let timeout = connect_timeout;
    let socket = socket.to_path_buf();
    // The URI is never dialled: the connector below ignores it and opens the socket.
    let ep = tonic::transport::Endpoint::from_static("http://[::]:50051")
        .connect_timeout(connect_timeout)
        .timeout(call_timeout);
    let fut = ep.connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
        let socket = socket.clone();
        async move {
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                tokio::net::UnixStream::connect(socket).await?,
            ))
        }
    }));
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(ch)) => Ok(ch),
        // The runtime died between a first connect and this one (it is restarting): the
        // same message as when it was down from the start.
        Ok(Err(e)) if io_kind_in(&e) == Some(std::io::ErrorKind::ConnectionRefused) => {
            Err(Error::NotListening {
                endpoint: endpoint.to_string(),
                from: String::new(),
            })
        }
        Ok(Err(e)) => Err(Error::Transport {
            endpoint: endpoint.to_string(),
            source: Box::new(e),
        }),
        Err(_) => Err(Error::Timeout {
            call: "connect",
            endpoint: endpoint.to_string(),
            after: timeout,
        }),
    }
}

/// The kind of the first I/O error in `e`'s chain of sources.
fn io_kind_in(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}

/// The network namespace path in an OCI runtime spec (`linux.namespaces[type=network].path`).
pub(crate) fn netns_from_spec(spec: &serde_json::Value) -> Option<PathBuf> {
    spec.pointer("/linux/namespaces")?
        .as_array()?
        .iter()
        .find(|n| n.get("type").and_then(|t| t.as_str()) == Some("network"))?
        .get("path")?
        .as_str()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podref_forms() {
        let p = PodRef::parse("web-0", None, None).unwrap();
        assert_eq!(
            (p.namespace.as_str(), p.name.as_str()),
            ("default", "web-0")
        );
        let p = PodRef::parse("prod/web-0", None, Some("nginx")).unwrap();
        assert_eq!(p.namespace, "prod");
        assert_eq!(p.container.as_deref(), Some("nginx"));
        let p = PodRef::parse("web-0", Some("prod"), None).unwrap();
        assert_eq!(p.namespace, "prod");
        assert!(PodRef::parse("prod/web-0", Some("prod"), None).is_ok());
        assert!(PodRef::parse("prod/web-0", Some("dev"), None).is_err());
        assert!(PodRef::parse("a/b/c", None, None).is_err());
        assert!(PodRef::parse("", None, None).is_err());
        assert!(PodRef::parse("web", None, Some("")).is_err());
        assert_eq!(p.to_string(), "prod/web-0");
    }

    #[test]
    fn netns_path_from_oci_spec() {
        let spec = serde_json::json!({"linux": {"namespaces": [
            {"type": "pid"},
            {"type": "network", "path": "/var/run/netns/cni-1234"}
        ]}});
        assert_eq!(
            netns_from_spec(&spec),
            Some(PathBuf::from("/var/run/netns/cni-1234"))
        );
        assert_eq!(netns_from_spec(&serde_json::json!({})), None);
    }

    /// The gRPC connect itself refused (the runtime went away after the first, synchronous
    /// connect): the same "not running" error, not a bare transport error.
    #[test]
    fn grpc_connect_refused_says_the_runtime_is_not_running() {
        let path = std::env::temp_dir().join(format!("ndr-cri-grpc-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt
            .block_on(unix_channel(
                &path,
                "unix:///stale.sock",
                Duration::from_secs(1),
                Duration::from_secs(1),
            ))
            .unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(matches!(e, Error::NotListening { .. }), "{e:?}");
        assert!(e.to_string().contains("unix:///stale.sock"), "{e}");
    }

    #[test]
    fn socket_that_is_not_listening_says_the_runtime_is_not_running() {
        let path = std::env::temp_dir().join(format!("ndr-cri-unit-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(listener); // the file stays, nothing listens: ECONNREFUSED
        let e = Client::connect(Some(path.to_str().unwrap()), Duration::from_secs(1)).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(matches!(e, Error::NotListening { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("{} (--runtime-endpoint)", path.display()))
                && text.contains("not running")
                && text.contains("systemctl start containerd"),
            "{text}"
        );
    }
}
