//! `kubectl-netdiag counters`: the kernel's own view of a pod's network namespace.
//!
//! What `nstat -az`, `conntrack -S`, `sysctl`, `ss -lnt` and `ip -br addr` would print
//! inside the pod, in one snapshot: the counters the detectors use, the listeners with
//! their accept-queue fill, the interfaces and the default route. `--output json` gives
//! the same as one object; `--write-dir DIR` saves the raw kernel text in the layout that
//! `analyze --counters-before/--counters-after` reads.

use crate::exit::Outcome;
use crate::target::{self, TargetArgs};
use anyhow::Context;
use netdiag::kernel::{self, Snapshot};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// Output format of `counters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CountersFormat {
    /// Aligned text, one counter per line (like `nstat`).
    Human,
    /// One JSON object: `counters`, `listeners`, `interfaces`, `default_route_interface`.
    Json,
}

/// Arguments of `kubectl-netdiag counters`.
#[derive(Debug, clap::Args)]
pub(crate) struct CountersArgs {
    /// The pod: `NAME`, `NAMESPACE/NAME` (or -n); omit with --pid/--netns.
    #[arg(value_name = "POD")]
    pub(crate) pod: Option<String>,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// Print zero-valued counters too (like `nstat -z`).
    #[arg(short = 'z', long)]
    pub(crate) zeros: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = CountersFormat::Human)]
    pub(crate) output: CountersFormat,
    /// Also save the raw kernel files into DIR (the layout `analyze --counters-*` reads).
    #[arg(long, value_name = "DIR")]
    pub(crate) write_dir: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct Json<'a> {
    target: &'a str,
    counters: &'a BTreeMap<String, u64>,
    listeners: &'a [kernel::Listener],
    sock_diag_error: Option<&'a str>,
    interfaces: Vec<Interface>,
    default_route_interface: Option<String>,
}

#[derive(serde::Serialize)]
struct Interface {
    name: String,
    addresses: Vec<String>,
}

/// Runs `kubectl-netdiag counters`.
pub(crate) fn run(args: CountersArgs) -> anyhow::Result<Outcome> {
    let target = target::resolve(args.pod.as_deref(), &args.target)?;
    for note in target.notes() {
        eprintln!("note: {note}");
    }
    let (snap, links, addrs, default) = target.run(|| -> anyhow::Result<_> {
        let snap = Snapshot::capture_current()?;
        let links = kernel::links()?;
        let addrs = kernel::addresses()?;
        let default = kernel::default_route_interface()?;
        Ok((snap, links, addrs, default))
    })??;
    if let Some(dir) = &args.write_dir {
        snap.write_dir(dir)
            .with_context(|| format!("writing the snapshot into {}", dir.display()))?;
    }
    let interfaces: Vec<Interface> = links
        .iter()
        .map(|l| Interface {
            name: l.name.clone(),
            addresses: addrs
                .iter()
                .filter(|a| a.index == l.index)
                .map(|a| format!("{}/{}", a.addr, a.prefix_len))
                .collect(),
        })
        .collect();
    let flat = snap.flat();
    let listeners = snap.listeners();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.output {
        CountersFormat::Json => {
            let shown: BTreeMap<String, u64> = flat
                .iter()
                .filter(|(_, v)| args.zeros || **v != 0)
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            let doc = Json {
                target: target.label(),
                counters: &shown,
                listeners: &listeners,
                sock_diag_error: snap.sock_diag_error(),
                interfaces,
                default_route_interface: default.map(|l| l.name),
            };
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        }
        CountersFormat::Human => {
            writeln!(out, "# {}", target.label())?;
            writeln!(out, "# interfaces")?;
            for i in &interfaces {
                let mark = if default.as_ref().is_some_and(|d| d.name == i.name) {
                    " (default route)"
                } else {
                    ""
                };
                writeln!(out, "{:<16} {}{mark}", i.name, i.addresses.join(" "))?;
            }
            writeln!(
                out,
                "# listeners (Recv-Q = queued, Send-Q = backlog, as ss -lnt)"
            )?;
            writeln!(
                out,
                "{:<40} {:>8} {:>8}",
                "Local Address:Port", "Recv-Q", "Send-Q"
            )?;
            for l in &listeners {
                let addr = match l.addr {
                    std::net::IpAddr::V6(a) => format!("[{a}]:{}", l.port),
                    a => format!("{a}:{}", l.port),
                };
                let backlog = l.backlog.map_or_else(|| "?".to_owned(), |b| b.to_string());
                writeln!(out, "{addr:<40} {:>8} {backlog:>8}", l.queued)?;
            }
            if let Some(e) = snap.sock_diag_error() {
                writeln!(out, "# sock_diag unavailable ({e}): backlog unknown")?;
            }
            writeln!(out, "# counters")?;
            let width = flat.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in &flat {
                if args.zeros || *v != 0 {
                    writeln!(out, "{k:<width$} {v:>14}")?;
                }
            }
        }
    }
    out.flush()?;
    Ok(Outcome::Clean)
}
