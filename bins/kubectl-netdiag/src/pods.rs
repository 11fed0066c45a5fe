//! `kubectl-netdiag pods`: the pods on this node as the container runtime sees them
//! (`crictl pods`, plus the PID and network namespace netdiag would use).

use crate::exit::Outcome;
use anyhow::Context;
use netdiag::cri::{Client, PodInfo};
use std::io::Write;
use std::time::Duration;

/// Arguments of `kubectl-netdiag pods`.
#[derive(Debug, clap::Args)]
pub(crate) struct PodsArgs {
    /// Container runtime socket (`unix:///run/containerd/containerd.sock`); default:
    /// $CONTAINER_RUNTIME_ENDPOINT, then the usual containerd, k3s, microk8s, k0s, CRI-O and
    /// cri-dockerd sockets.
    #[arg(long, value_name = "ENDPOINT")]
    pub(crate) runtime_endpoint: Option<String>,
    /// Only pods in this namespace.
    #[arg(short, long)]
    pub(crate) namespace: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub(crate) output: Format,
    /// Timeout of each call to the runtime, in seconds.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub(crate) timeout: u64,
}

/// Output formats of `pods`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON array of objects for scripts.
    Json,
}

/// Runs `kubectl-netdiag pods`.
pub(crate) fn run(args: PodsArgs) -> anyhow::Result<Outcome> {
    let client = Client::connect(
        args.runtime_endpoint.as_deref(),
        Duration::from_secs(args.timeout),
    )?;
    let mut pods = client
        .list_pods()
        .with_context(|| format!("listing pods on {}", client.endpoint()))?;
    if let Some(ns) = &args.namespace {
        pods.retain(|p| &p.namespace == ns);
    }
    let mut out = std::io::stdout().lock();
    match args.output {
        Format::Json => {
            let rows: Vec<serde_json::Value> = pods.iter().map(json).collect();
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        }
        Format::Table => write_table(&mut out, &pods)?,
    }
    Ok(Outcome::Clean)
}

fn json(p: &PodInfo) -> serde_json::Value {
    serde_json::json!({
        "namespace": p.namespace,
        "name": p.name,
        "state": p.state,
        "pid": p.pid,
        "ip": p.ip.map(|ip| ip.to_string()),
        "netns": p.netns_path.as_ref().map(|n| n.display().to_string()),
        "sandbox_id": p.sandbox_id,
    })
}

fn write_table(out: &mut impl Write, pods: &[PodInfo]) -> std::io::Result<()> {
    let rows: Vec<[String; 7]> = pods
        .iter()
        .map(|p| {
            [
                p.namespace.clone(),
                p.name.clone(),
                p.state.clone(),
                p.pid.map_or("-".into(), |v| v.to_string()),
                p.ip.map_or("-".into(), |v| v.to_string()),
                p.netns_path
                    .as_ref()
                    .map_or("-".into(), |v| v.display().to_string()),
                p.sandbox_id.get(..13).unwrap_or(&p.sandbox_id).to_string(),
            ]
        })
        .collect();
    let header = [
        "NAMESPACE",
        "NAME",
        "STATE",
        "PID",
        "IP",
        "NETNS",
        "SANDBOX",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |out: &mut dyn Write, cells: &[&str]| -> std::io::Result<()> {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   "));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(out, &header)?;
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(out, &cells)?;
    }
    Ok(())
}
