//! `cargo xtask lab node up|down|status` (also reachable as `cargo xtask node …`): a real
//! containerd with the CRI plugin, CNI bridge networking and a locally built busybox image,
//! all under `/run/ndr-node` (see `netdiag_tests::node` and ../shared/LAB.md), with the
//! demo's pods created through the CRI with kubelet's DNS config (`ndots:5`, three search
//! domains, the cluster DNS being dnsmasq in the `kube-system/dns` pod). Root only.

use anyhow::{Context, Result, bail};
use netdiag_tests::node::{self, NodeConfig};

const USAGE: &str = "usage: cargo xtask lab node up [--no-pods] [--minutes N] | down | status
  up        containerd + CNI under /run/ndr-node, the local image imported, and the demo's
            pods (kube-system/dns, demo/web, demo/resolver, demo/queue, demo/slow-dns…)
            whose traffic loops run for N minutes (default 30); --no-pods: the node only
  down      remove everything `up` created (idempotent)
  status    whether the node is up";

pub(crate) fn run(args: &[String]) -> Result<()> {
    let config = NodeConfig::lab();
    match args.first().map(String::as_str) {
        Some("up") => {
            require_root()?;
            let (mut pods, mut minutes) = (true, 30u32);
            let mut rest = args[1..].iter();
            while let Some(a) = rest.next() {
                match a.as_str() {
                    "--no-pods" => pods = false,
                    "--minutes" => {
                        minutes = rest
                            .next()
                            .and_then(|m| m.parse().ok())
                            .filter(|m| (1..=24 * 60).contains(m))
                            .context("--minutes takes 1..=1440")?;
                    }
                    _ => bail!("{USAGE}"),
                }
            }
            let n = node::up(&config)?;
            if pods && let Err(e) = crate::demo::create_pods(&n, &config, minutes * 60) {
                let _ = node::down(&config);
                return Err(e.context("creating the pods (the node was torn down)"));
            }
            println!(
                "node up: containerd pid {}, socket {}\n  kubectl-netdiag pods --runtime-endpoint {}\n  \
                 CONTAINER_RUNTIME_ENDPOINT={} kubectl netdiag diagnose demo/resolver\n  \
                 cargo xtask lab node down   removes it all",
                n.containerd_pid,
                config.socket().display(),
                config.endpoint(),
                config.endpoint(),
            );
            Ok(())
        }
        Some("down") => {
            require_root()?;
            node::down(&config)?;
            println!("node down: {} removed", config.dir.display());
            Ok(())
        }
        Some("status") => {
            match node::connect(&config) {
                Ok(n) => println!(
                    "node up: containerd pid {}, endpoint {}",
                    n.containerd_pid,
                    config.endpoint()
                ),
                Err(e) => println!("node down ({e:#})"),
            }
            Ok(())
        }
        // Internal: `demo::create_pods` runs this detached to keep a never-accepting
        // listener open in a pod's netns; `node::down` finds it by its --ndr-node=DIR.
        Some("hold-listener") => hold_listener(&args[1..]),
        _ => bail!("{USAGE}"),
    }
}

/// `hold-listener --ndr-node=DIR PID PORT BACKLOG SECONDS`: listens, says so on stdout,
/// holds the socket for SECONDS (at most a day), exits.
fn hold_listener(args: &[String]) -> Result<()> {
    let [_marker, pid, port, backlog, seconds] = args else {
        bail!("usage: xtask node hold-listener --ndr-node=DIR PID PORT BACKLOG SECONDS");
    };
    let seconds: u64 = seconds.parse::<u64>()?.min(24 * 3600);
    let listener = node::hold_listener_in_netns(pid.parse()?, port.parse()?, backlog.parse()?)?;
    println!("listening");
    // The parent may have closed the pipe already: nothing more is written to it.
    std::thread::sleep(std::time::Duration::from_secs(seconds));
    drop(listener);
    Ok(())
}

fn require_root() -> Result<()> {
    if !netdiag_tests::is_root() {
        bail!("the lab node needs root (containerd, CNI, iptables): run as root");
    }
    Ok(())
}
