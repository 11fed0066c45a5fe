//! `cargo xtask lab …`: real-kernel reproductions of the five failures (root).
//!
//! The harness itself lives in `netdiag_tests::lab`, shared with the root tests.

use anyhow::{Result, bail};
use netdiag_tests::lab::{self, Lab, Role, record, scenario::Scenario};

const HELP: &str = "usage: cargo xtask lab <command>
  list                    the scenarios and how each is reproduced
  up [TAG]                build the lab topology (netns ndl-TAG-{pod,node,ext}) and leave it up
  down [TAG]              tear the lab TAG down (idempotent)
  run SCENARIO            reproduce SCENARIO in a fresh lab and print the evidence
  intermittent [SECONDS] [P]  glibc lookups every 200 ms, a share P (0.05) of AAAA replies
                          dropped at random, healthy HTTP beside: drops vs delayed lookups
  load [SECONDS]          the soak's traffic alone (default 10 s): what was sent, packets/s
                          on the pod's eth0
  record [SCENARIO…]      reproduce and record into testdata/<scenario>/ (all when none given)
  node up|down|status     a real containerd node in a box (same as `cargo xtask node …`)
TAG defaults to `dev`. Ctrl-C tears down whatever is up (except after `up` has returned).";

pub(crate) fn run(args: &[String]) -> Result<()> {
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("help", &[][..]),
    };
    if matches!(cmd, "help" | "-h" | "--help") {
        println!("{HELP}");
        return Ok(());
    }
    if cmd == "node" {
        return crate::node::run(rest);
    }
    if cmd == "list" {
        for s in Scenario::ALL {
            println!("{:<26} expect {:?}", s.name(), s.expect());
            println!("    {}", s.notes());
        }
        return Ok(());
    }
    if !netdiag_tests::is_root() {
        bail!("`cargo xtask lab {cmd}` needs root (network namespaces, iptables, tcpdump)");
    }
    teardown_on_signal()?;
    let tag = |rest: &[String]| -> Result<String> {
        match rest {
            [] => Ok("dev".to_owned()),
            [t] => Ok(t.clone()),
            _ => bail!("expected at most one TAG\n{HELP}"),
        }
    };
    match cmd {
        "up" => {
            let lab = Lab::up(&tag(rest)?)?;
            println!("lab {} is up:", lab.tag());
            for role in Role::ALL {
                println!("  {:<5} {}", role.as_str(), lab.netns_path(role).display());
            }
            println!("  pod process: pid {}", lab.pod_pid());
            println!("  pod resolv.conf: {}", lab.resolv_conf_path().display());
            println!("tear down with: cargo xtask lab down {}", lab.tag());
            // Leave it standing: `down` finds its processes through `ip netns pids`.
            std::mem::forget(lab);
            Ok(())
        }
        "down" => Lab::down(&tag(rest)?),
        "run" => {
            let [name] = rest else {
                bail!("usage: cargo xtask lab run SCENARIO");
            };
            let s = Scenario::from_name(name)?;
            let tag = format!("run-{}", s.name());
            let lab = if s.needs_exclusive_lab() {
                Lab::up_exclusive(&tag)?
            } else {
                Lab::up(&tag)?
            };
            s.setup(&lab)?;
            let ev = s.trigger(&lab)?;
            drop(lab);
            print!("{ev}");
            Ok(())
        }
        "intermittent" => {
            let secs: u64 = match rest.first() {
                Some(s) => s.parse().map_err(|_| anyhow::anyhow!("SECONDS {s:?}"))?,
                None => 60,
            };
            let mut cfg = lab::intermittent::Config::default();
            if let Some(p) = rest.get(1) {
                cfg.drop_probability = p.parse().map_err(|_| anyhow::anyhow!("P {p:?}"))?;
            }
            let lab = Lab::up("intermittent")?;
            let work = lab::intermittent::start(&lab, &cfg)?;
            std::thread::sleep(std::time::Duration::from_secs(secs));
            let stats = work.stop();
            let drops = lab::intermittent::drops(&lab)?;
            drop(lab);
            println!("{stats}");
            println!(
                "AAAA replies dropped (iptables counter): {drops}; lost replies implied by lookup times: {}",
                stats.lost_replies()
            );
            if drops != stats.lost_replies() {
                bail!(
                    "drops ({drops}) != lost replies seen by the client ({})",
                    stats.lost_replies()
                );
            }
            Ok(())
        }
        "load" => {
            let secs: u64 = match rest.first() {
                Some(s) => s.parse().map_err(|_| anyhow::anyhow!("SECONDS {s:?}"))?,
                None => 10,
            };
            let lab = Lab::up("load")?;
            let packets = |lab: &Lab| -> Result<u64> {
                let out = netdiag_tests::lab::netns_exec(
                    &lab.netns(Role::Pod),
                    &[
                        "cat",
                        "/sys/class/net/eth0/statistics/rx_packets",
                        "/sys/class/net/eth0/statistics/tx_packets",
                    ],
                )
                .output()?;
                Ok(String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum())
            };
            let before = packets(&lab)?;
            let load = lab::load::start(&lab, &lab::load::LoadConfig::default())?;
            std::thread::sleep(std::time::Duration::from_secs(secs));
            let after = packets(&lab)?;
            let counts = load.stop()?;
            drop(lab);
            println!("{counts}");
            println!(
                "pod eth0: {:.0} packets/s",
                (after - before) as f64 / secs as f64
            );
            Ok(())
        }
        "record" => {
            let scenarios = if rest.is_empty() {
                Scenario::ALL.to_vec()
            } else {
                rest.iter()
                    .map(|n| Scenario::from_name(n))
                    .collect::<Result<Vec<_>>>()?
            };
            let testdata = netdiag_tests::testdata_dir();
            for s in scenarios {
                let dir = testdata.join(s.name());
                eprintln!("xtask: recording {} into {}", s.name(), dir.display());
                let ev = record::record(s, &format!("rec-{}", s.name()), &dir)?;
                print!("{ev}");
            }
            record::write_manifest(&testdata)?;
            eprintln!("xtask: wrote {}", testdata.join("manifest.toml").display());
            Ok(())
        }
        other => bail!("unknown lab command {other:?}\n{HELP}"),
    }
}

/// On Ctrl-C (and SIGTERM/SIGHUP), tears every active lab down before exiting.
fn teardown_on_signal() -> Result<()> {
    ctrlc::set_handler(|| {
        eprintln!("xtask: interrupted: tearing the lab down");
        lab::teardown_active();
        std::process::exit(130);
    })?;
    Ok(())
}
