//! `kubectl-netdiag agent`: what the DaemonSet's container runs (deploy/). It says in one
//! line what it can see from where it runs — the runtime socket, the node's PID namespace,
//! the node's network namespace — then idles, ready for `kubectl exec … -- kubectl-netdiag
//! diagnose ns/pod`, until SIGTERM or SIGINT (exit 0). The image has no shell, so no
//! `sleep` to do this for us.

use crate::exit::Outcome;
use netdiag::cri::{self, RuntimeProcess};
use netdiag::netns::host;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `kubectl-netdiag agent`.
#[derive(Debug, clap::Args)]
pub(crate) struct AgentArgs {
    /// CRI socket (unix:///path or /path); default: auto-detect the known sockets.
    #[arg(long, value_name = "ENDPOINT", env = "CONTAINER_RUNTIME_ENDPOINT")]
    pub(crate) runtime_endpoint: Option<String>,
}

/// Runs `kubectl-netdiag agent`.
pub(crate) fn run(args: AgentArgs) -> anyhow::Result<Outcome> {
    // Before the line is printed: a SIGTERM right after start must still end us cleanly.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| anyhow::anyhow!("installing SIGINT/SIGTERM handlers: {e}"))?;
    let sight = Sight::probe(args.runtime_endpoint.as_deref());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "kubectl-netdiag agent {}: {}; ready for `kubectl exec … -- kubectl-netdiag diagnose NS/POD`",
        env!("CARGO_PKG_VERSION"),
        sight
    )?;
    out.flush()?;
    drop(out);
    let signal = signals.forever().next();
    let name = match signal {
        Some(SIGINT) => "SIGINT",
        _ => "SIGTERM",
    };
    eprintln!("kubectl-netdiag agent: {name}, exiting");
    Ok(Outcome::Clean)
}

/// What this process can see of the node.
#[derive(Debug)]
pub(crate) struct Sight {
    /// The runtime socket and its process, or why there is none.
    socket: Result<(PathBuf, RuntimeProcess), cri::Error>,
    /// In the node's PID namespace: yes, no, or unknown (the reason).
    host_pid: Answer,
    /// In the node's network namespace.
    host_network: Answer,
}

/// A yes/no that may stay open, with why.
#[derive(Debug)]
enum Answer {
    Yes,
    No,
    Unknown(String),
}

impl Sight {
    /// Looks: the socket (as `diagnose` would find it), who serves it, and our namespaces
    /// against the runtime's.
    pub(crate) fn probe(endpoint: Option<&str>) -> Sight {
        let socket = cri::endpoint::detect(endpoint)
            .and_then(|path| cri::peer::runtime_process(&path).map(|p| (path, p)));
        let runtime = socket.as_ref().ok().map(|(_, p)| *p);
        let host_pid = match runtime {
            Some(RuntimeProcess::Visible(_)) => Answer::Yes,
            Some(RuntimeProcess::OtherPidNamespace) => Answer::No,
            _ => match host::in_initial_pid_namespace() {
                Ok(true) => Answer::Yes,
                Ok(false) => Answer::Unknown(
                    "not the initial PID namespace; no runtime to compare with".into(),
                ),
                Err(e) => Answer::Unknown(e.to_string()),
            },
        };
        let host_network = match runtime {
            Some(RuntimeProcess::Visible(pid)) => match host::shares_network_with(pid) {
                Ok(true) => Answer::Yes,
                Ok(false) => Answer::No,
                Err(e) => Answer::Unknown(e.to_string()),
            },
            _ => Answer::Unknown("needs the runtime's process to compare with".into()),
        };
        Sight {
            socket,
            host_pid,
            host_network,
        }
    }
}

impl std::fmt::Display for Sight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.socket {
            Ok((path, RuntimeProcess::Visible(pid))) => {
                write!(f, "runtime socket {} (runtime pid {pid})", path.display())?
            }
            Ok((path, _)) => write!(f, "runtime socket {}", path.display())?,
            Err(cri::Error::NoSocket { tried }) => write!(
                f,
                "runtime socket: none (tried {}; mount the node's socket read-only at its path \
                 with a hostPath volume)",
                tried.join(", ")
            )?,
            Err(e) => write!(f, "runtime socket: unusable ({e})")?,
        }
        match &self.host_pid {
            Answer::Yes => f.write_str("; host PID namespace: yes")?,
            Answer::No => f.write_str(
                "; host PID namespace: no (the runtime's PIDs are not ours: needs hostPID: true)",
            )?,
            Answer::Unknown(why) => write!(f, "; host PID namespace: unknown ({why})")?,
        }
        match &self.host_network {
            Answer::Yes => f.write_str("; host network: yes"),
            Answer::No => f.write_str(
                "; host network: no (node counters would be this container's own: needs hostNetwork: true)",
            ),
            Answer::Unknown(why) => write!(f, "; host network: unknown ({why})"),
        }
    }
}
