//! `cargo xtask node up|down|status` (also reachable as `cargo xtask lab node …`): a real
//! containerd with the CRI plugin, CNI bridge networking and a local busybox image, all under
//! `/run/ndr-node` (see `netdiag_tests::node` and ../shared/LAB.md). Root only.

use anyhow::{Result, bail};
use netdiag_tests::node::{self, NodeConfig};

pub(crate) fn run(args: &[String]) -> Result<()> {
    let config = NodeConfig::lab();
    match args.first().map(String::as_str) {
        Some("up") => {
            require_root()?;
            let n = node::up(&config)?;
            println!(
                "node up: containerd pid {}, socket {}\n  kubectl-netdiag pods --runtime-endpoint {}",
                n.containerd_pid,
                config.socket().display(),
                config.endpoint()
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
        _ => bail!("usage: cargo xtask node up|down|status"),
    }
}

fn require_root() -> Result<()> {
    if !crate::sh::is_root() {
        bail!("the lab node needs root (containerd, CNI, iptables): run as root");
    }
    Ok(())
}
