//! The crate's error type: every variant says what was tried and what to do next.

use std::time::Duration;

/// Why a pod could not be resolved or the runtime could not be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No runtime socket exists at any known place.
    #[error(
        "no container runtime socket found; tried {}. Pass --runtime-endpoint unix:///path/to/sock \
         or set CONTAINER_RUNTIME_ENDPOINT (run this on the node, as root). In a pod, mount the \
         node's socket at the same path, read-only, with a hostPath volume (deploy/daemonset.yaml \
         mounts /run/containerd, /run/k3s/containerd and /run/crio)",
        tried.join(", ")
    )]
    NoSocket {
        /// Every path looked at, in order.
        tried: Vec<String>,
    },
    /// The socket exists but we may not connect to it.
    #[error(
        "permission denied connecting to {endpoint}: the runtime socket is root-only; \
         run as root on the node (e.g. `sudo kubectl netdiag …`)"
    )]
    PermissionDenied {
        /// The endpoint.
        endpoint: String,
    },
    /// The socket file exists but nothing accepts on it (ECONNREFUSED): the runtime that
    /// made it is not running (it crashed, was stopped, or is restarting), and left it stale.
    #[error(
        "nothing accepts connections on {endpoint}{from}: the container runtime that made this \
         socket is not running (stopped, crashed or restarting). Start it (e.g. `systemctl \
         start containerd`) and retry, or pass --runtime-endpoint for the runtime that runs"
    )]
    NotListening {
        /// The endpoint.
        endpoint: String,
        /// Where the path came from (` (--runtime-endpoint)`, ` (from $CONTAINER_RUNTIME_ENDPOINT)`,
        /// or empty when auto-detected).
        from: String,
    },
    /// Connecting to the socket failed for another reason (not a socket, …).
    #[error("cannot connect to {endpoint}: {source}; is the container runtime running?")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The endpoint string is not a unix socket endpoint.
    #[error(
        "unsupported runtime endpoint {endpoint:?}: only unix sockets (`unix:///path` or `/path`) are supported"
    )]
    BadEndpoint {
        /// What was given.
        endpoint: String,
    },
    /// A call did not answer in time.
    #[error("{call} on {endpoint} timed out after {after:?}; the runtime is overloaded or hung")]
    Timeout {
        /// The RPC.
        call: &'static str,
        /// The endpoint.
        endpoint: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// gRPC transport failure (HTTP/2 handshake on the socket).
    #[error("gRPC connection to {endpoint} failed: {source}")]
    Transport {
        /// The endpoint.
        endpoint: String,
        /// The underlying error.
        #[source]
        source: Box<tonic::transport::Error>,
    },
    /// The runtime answered a call with an error.
    #[error("{call} on {endpoint} failed: {} ({:?})", status.message(), status.code())]
    Rpc {
        /// The RPC.
        call: &'static str,
        /// The endpoint.
        endpoint: String,
        /// What the runtime said.
        status: Box<tonic::Status>,
    },
    /// Neither the CRI nor containerd's native API answers on the socket.
    #[error(
        "{endpoint} serves neither the CRI v1 RuntimeService ({cri}) nor containerd's API ({native})"
    )]
    NoApi {
        /// The endpoint.
        endpoint: String,
        /// What the CRI Version call said.
        cri: String,
        /// What containerd's Version call said.
        native: String,
    },
    /// No sandbox with this namespace and name runs on this node.
    #[error("pod {pod} is not on this node ({endpoint}){}", near_text(near))]
    PodNotFound {
        /// `namespace/name`.
        pod: String,
        /// The runtime asked.
        endpoint: String,
        /// Near matches: the same name in other namespaces, similar names.
        near: Vec<String>,
    },
    /// Sandboxes exist but none is ready.
    #[error(
        "pod {pod} has {count} sandbox(es) on this node but none is ready (newest: {newest_state}); \
         the pod is starting, terminating or failed: check `kubectl describe pod`"
    )]
    PodNotReady {
        /// `namespace/name`.
        pod: String,
        /// How many sandboxes share the name.
        count: usize,
        /// State of the newest one.
        newest_state: String,
    },
    /// The pod has no container with that name (running).
    #[error("pod {pod} has no running container {container:?}; containers: {}", available.join(", "))]
    ContainerNotFound {
        /// `namespace/name`.
        pod: String,
        /// The container asked for.
        container: String,
        /// Containers the pod has, with their state.
        available: Vec<String>,
    },
    /// The runtime did not report a PID for a sandbox or container.
    #[error(
        "{what} {id}: the runtime reported no PID (verbose info missing `pid`); \
         this runtime may not support verbose status"
    )]
    NoPid {
        /// "sandbox" or "container".
        what: &'static str,
        /// Its ID.
        id: String,
    },
    /// The runtime runs in a PID namespace this process cannot see, so the PID it reports
    /// is not ours (netdiag in a pod without `hostPID: true`).
    #[error(
        "pod {pod}: {endpoint} reports PID {pid} in the node's PID namespace, but this process \
         runs in another PID namespace (the runtime's process is invisible from here, so /proc \
         holds no such pod process): netdiag in a pod needs hostPID: true \
         (deploy/daemonset.yaml sets it)"
    )]
    HostPidNeeded {
        /// `namespace/name`.
        pod: String,
        /// The PID the runtime reported.
        pid: u32,
        /// The runtime asked.
        endpoint: String,
    },
    /// A pod reference could not be parsed.
    #[error("bad pod reference {spec:?}: {reason}")]
    BadPodRef {
        /// What was given.
        spec: String,
        /// Why it is wrong.
        reason: &'static str,
    },
    /// The internal tokio runtime could not be created.
    #[error("creating the I/O runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

fn near_text(near: &[String]) -> String {
    if near.is_empty() {
        "; `kubectl get pod -o wide` shows the node it runs on; `kubectl-netdiag pods` lists this node's pods"
            .to_string()
    } else {
        format!("; did you mean: {}?", near.join(", "))
    }
}

impl Error {
    pub(crate) fn rpc(call: &'static str, endpoint: &str, status: tonic::Status) -> Error {
        Error::Rpc {
            call,
            endpoint: endpoint.to_string(),
            status: Box::new(status),
        }
    }
}
