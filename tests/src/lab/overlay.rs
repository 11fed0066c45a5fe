//! The overlay lab: two "nodes" joined by a real kernel VXLAN device on UDP 8472
//! (flannel's port), each with a pod behind it, as a flannel cluster wires them:
//!
//! ```text
//!  ndl-<tag>-pa            ndl-<tag>-na                         ndl-<tag>-nb            ndl-<tag>-pb
//!  eth0 10.244.1.10 ─veth─ pod0 10.244.1.1                      pod0 10.244.2.1 ─veth─  eth0 10.244.2.10
//!  resolv.conf: kubelet    uplink0 192.168.1.5 ────veth──────── uplink0 192.168.1.6     dnsmasq (DNS pod),
//!  shape, nameserver       vxlan0 VNI 1 dstport 8472            vxlan0 VNI 1 dstport 8472   listeners
//!  10.244.2.10             10.244.2.0/24 via 10.244.2.0 onlink  10.244.1.0/24 via 10.244.1.0 onlink
//! ```
//!
//! The pods talk pod to pod (no NAT); between the nodes their packets travel inside
//! VXLAN. A capture of node B's `uplink0` (the underlay) sees only the tunnel packets.
//! The kernel here cannot make Geneve, IP-in-IP or GRE devices (see LAB.md), so
//! [`rewrap`] puts the inner frames of a real VXLAN capture into those headers; tshark
//! must decode the result to the same inner packets.
//!
//! Everything lives in namespaces the lab creates and is removed on drop.

use super::capture::Tcpdump;
use super::clock::ClockWatch;
use super::counters::Snapshot;
use super::{display, in_netns, netns_exec, run, sock};
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Pod A (client side) on node A.
pub const POD_A_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 10);
/// Pod B on node B: DNS server (dnsmasq) and the listeners.
pub const POD_B_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 10);
/// Node A's underlay address.
pub const NODE_A_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 5);
/// Node B's underlay address.
pub const NODE_B_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 6);
/// The VXLAN network identifier.
pub const VNI: u32 = 1;
/// flannel's VXLAN port (the Linux default).
pub const VXLAN_PORT: u16 = 8472;
/// The listener that never accepts (backlog 1) in pod B.
pub const OVERFLOW_PORT: u16 = 8080;
/// Pod A's resolv.conf: kubelet's shape, the DNS pod on node B as nameserver.
pub const POD_A_RESOLV_CONF: &str = "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.244.2.10\noptions ndots:5\n";
/// A name with 40 A records: the UDP answer exceeds 512 bytes, so dnsmasq sets TC and
/// glibc asks again over TCP.
pub const BIG_NAME: &str = "big.example.test";
/// A records of [`BIG_NAME`].
pub const BIG_RECORDS: u8 = 40;

/// The four namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Pod A.
    PodA,
    /// Node A.
    NodeA,
    /// Node B.
    NodeB,
    /// Pod B.
    PodB,
}

impl Part {
    const ALL: [Part; 4] = [Part::PodA, Part::NodeA, Part::NodeB, Part::PodB];
    fn suffix(self) -> &'static str {
        match self {
            Part::PodA => "pa",
            Part::NodeA => "na",
            Part::NodeB => "nb",
            Part::PodB => "pb",
        }
    }
}

/// The netns name of `part` in the overlay lab `tag`.
pub fn netns_name(tag: &str, part: Part) -> String {
    format!("{}{tag}-{}", super::PREFIX, part.suffix())
}

/// A running overlay lab; dropping it tears everything down.
pub struct OverlayLab {
    tag: String,
    scratch: PathBuf,
    children: Vec<Child>,
}

impl std::fmt::Debug for OverlayLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayLab")
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl OverlayLab {
    /// Builds the overlay lab `tag` (after removing any leftover of it).
    pub fn up(tag: &str) -> Result<OverlayLab> {
        super::check_tag(tag)?;
        OverlayLab::down(tag)?;
        let mut lab = OverlayLab {
            tag: tag.to_owned(),
            scratch: std::env::temp_dir().join(format!("{}{tag}", super::PREFIX)),
            children: Vec::new(),
        };
        lab.build()
            .with_context(|| format!("building overlay lab {tag}"))?;
        Ok(lab)
    }

    /// The netns of `part`.
    pub fn netns(&self, part: Part) -> String {
        netns_name(&self.tag, part)
    }

    /// dnsmasq's query log.
    pub fn dnsmasq_log(&self) -> PathBuf {
        self.scratch.join("dnsmasq.log")
    }

    /// Pod A's resolv.conf (mounted over `/etc/resolv.conf` by `ip netns exec`).
    pub fn resolv_conf_path(&self) -> PathBuf {
        PathBuf::from("/etc/netns")
            .join(self.netns(Part::PodA))
            .join("resolv.conf")
    }

    fn build(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.scratch)
            .with_context(|| format!("create {}", self.scratch.display()))?;
        let [pa, na, nb, pb] = Part::ALL.map(|p| self.netns(p));
        for ns in [&pa, &na, &nb, &pb] {
            run(Command::new("ip").args(["netns", "add", ns]))?;
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]))?;
        }
        let ip = |ns: &str, args: &[&str]| -> Result<String> {
            run(Command::new("ip").args(["-n", ns]).args(args))
        };
        let veth = |a: &str, an: &str, b: &str, bn: &str| {
            ip(
                a,
                &[
                    "link", "add", an, "type", "veth", "peer", "name", bn, "netns", b,
                ],
            )
        };
        veth(&pa, "eth0", &na, "pod0")?;
        veth(&pb, "eth0", &nb, "pod0")?;
        veth(&na, "uplink0", &nb, "uplink0")?;
        ip(&pa, &["addr", "add", "10.244.1.10/24", "dev", "eth0"])?;
        // An IPv6 address makes glibc ask AAAA too, as in a dual-stack pod.
        ip(
            &pa,
            &["addr", "add", "fd00:244:1::10/64", "dev", "eth0", "nodad"],
        )?;
        ip(&pb, &["addr", "add", "10.244.2.10/24", "dev", "eth0"])?;
        ip(&na, &["addr", "add", "10.244.1.1/24", "dev", "pod0"])?;
        ip(&nb, &["addr", "add", "10.244.2.1/24", "dev", "pod0"])?;
        ip(&na, &["addr", "add", "192.168.1.5/24", "dev", "uplink0"])?;
        ip(&nb, &["addr", "add", "192.168.1.6/24", "dev", "uplink0"])?;
        for (ns, local, remote, mac, own_net) in [
            (
                &na,
                "192.168.1.5",
                "192.168.1.6",
                "02:00:0a:f4:01:00",
                "10.244.1.0/32",
            ),
            (
                &nb,
                "192.168.1.6",
                "192.168.1.5",
                "02:00:0a:f4:02:00",
                "10.244.2.0/32",
            ),
        ] {
            ip(
                ns,
                &[
                    "link", "add", "vxlan0", "address", mac, "type", "vxlan", "id", "1", "dstport",
                    "8472", "local", local, "remote", remote, "dev", "uplink0",
                ],
            )?;
            ip(ns, &["addr", "add", own_net, "dev", "vxlan0"])?;
        }
        for (ns, dev) in [
            (&pa, "eth0"),
            (&pb, "eth0"),
            (&na, "pod0"),
            (&nb, "pod0"),
            (&na, "uplink0"),
            (&nb, "uplink0"),
            (&na, "vxlan0"),
            (&nb, "vxlan0"),
        ] {
            run(&mut netns_exec(
                ns,
                &[
                    "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off",
                ],
            ))?;
            ip(ns, &["link", "set", dev, "up"])?;
        }
        // flannel's wiring: the other node's pod subnet via its VXLAN address, on-link,
        // with a permanent neighbour entry (no ARP across the tunnel).
        ip(
            &na,
            &[
                "route",
                "add",
                "10.244.2.0/24",
                "via",
                "10.244.2.0",
                "dev",
                "vxlan0",
                "onlink",
            ],
        )?;
        ip(
            &nb,
            &[
                "route",
                "add",
                "10.244.1.0/24",
                "via",
                "10.244.1.0",
                "dev",
                "vxlan0",
                "onlink",
            ],
        )?;
        ip(
            &na,
            &[
                "neigh",
                "add",
                "10.244.2.0",
                "lladdr",
                "02:00:0a:f4:02:00",
                "dev",
                "vxlan0",
                "nud",
                "permanent",
            ],
        )?;
        ip(
            &nb,
            &[
                "neigh",
                "add",
                "10.244.1.0",
                "lladdr",
                "02:00:0a:f4:01:00",
                "dev",
                "vxlan0",
                "nud",
                "permanent",
            ],
        )?;
        for ns in [&na, &nb] {
            run(&mut netns_exec(
                ns,
                &["sysctl", "-qw", "net.ipv4.ip_forward=1"],
            ))?;
        }
        ip(&pa, &["route", "add", "default", "via", "10.244.1.1"])?;
        ip(&pb, &["route", "add", "default", "via", "10.244.2.1"])?;
        let etc = PathBuf::from("/etc/netns").join(&pa);
        std::fs::create_dir_all(&etc).with_context(|| format!("create {}", etc.display()))?;
        std::fs::write(etc.join("resolv.conf"), POD_A_RESOLV_CONF)
            .with_context(|| format!("write {}/resolv.conf", etc.display()))?;
        self.start_dnsmasq()
    }

    fn start_dnsmasq(&mut self) -> Result<()> {
        let log = self.dnsmasq_log();
        let mut args: Vec<String> = [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--pid-file=",
            "--user=root",
            "--group=root",
            "--listen-address=10.244.2.10",
            "--bind-interfaces",
            "--local=/cluster.local/",
            "--address=/api.example.test/203.0.113.7",
            "--address=/api.example.test/fd00:203::7",
            "--log-queries",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for i in 1..=BIG_RECORDS {
            args.push(format!("--host-record={BIG_NAME},198.51.100.{i}"));
        }
        args.push(format!("--log-facility={}", log.display()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let cmd = netns_exec(&self.netns(Part::PodB), &refs);
        self.spawn(cmd, "dnsmasq")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("started") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("dnsmasq in pod B did not start within 5 s (log: {text:?})");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn(&mut self, mut cmd: Command, what: &str) -> Result<()> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {what}: `{}`", display(&cmd)))?;
        self.children.push(child);
        Ok(())
    }

    /// Removes the overlay lab `tag`: its processes, namespaces, `/etc/netns` entry and
    /// scratch directory. Idempotent.
    pub fn down(tag: &str) -> Result<()> {
        super::check_tag(tag)?;
        let existing = run(Command::new("ip").args(["netns", "list"]))?;
        let mut errors = Vec::new();
        for part in Part::ALL {
            let ns = netns_name(tag, part);
            if existing
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns.as_str()))
            {
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
                if let Err(e) = run(Command::new("ip").args(["netns", "del", &ns])) {
                    errors.push(format!("{e:#}"));
                }
            }
            let etc = PathBuf::from("/etc/netns").join(&ns);
            if etc.exists() {
                let _ = std::fs::remove_dir_all(&etc);
            }
        }
        let scratch = std::env::temp_dir().join(format!("{}{tag}", super::PREFIX));
        let _ = std::fs::remove_dir_all(scratch);
        if !errors.is_empty() {
            bail!("tearing down overlay lab {tag}: {}", errors.join("; "));
        }
        Ok(())
    }

    /// Runs glibc's resolver in pod A (`getent DB NAME`, `ahosts` or `ahostsv4`, bounded
    /// by `timeout 20`) with extra environment (`RES_OPTIONS=use-vc`…); returns its output.
    pub fn lookup(&self, env: &[&str], db: &str, name: &str) -> Result<String> {
        let mut args = vec!["env"];
        args.extend_from_slice(env);
        args.extend_from_slice(&["timeout", "20", "getent", db, name]);
        run(&mut netns_exec(&self.netns(Part::PodA), &args))
    }
}

impl Drop for OverlayLab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(e) = OverlayLab::down(&self.tag) {
            eprintln!("overlay lab: {e:#}");
        }
    }
}

/// The overlay reproductions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayScenario {
    /// Pod B listens with backlog 1 and never accepts; pod A connects 2 (they fill the
    /// queue) then 6 more, held 3.5 s: their SYNs are dropped and retransmitted.
    AcceptOverflow,
    /// Pod A resolves `api.example.test` with kubelet's ndots:5 and three search domains
    /// against the DNS pod on node B.
    Ndots,
    /// The same over TCP: `RES_OPTIONS=use-vc`.
    NdotsTcp,
    /// `big.example.test.` has 40 A records: the UDP answer to `getent ahostsv4` comes
    /// back truncated (TC) and glibc asks the same question again over TCP.
    TruncatedRetry,
    /// `use-vc` with node B dropping every AAAA answer leaving the DNS pod over TCP: A
    /// and AAAA go out on one connection, only A is answered; glibc waits without a
    /// timeout, so `getent` (bounded by `timeout 8`) is killed after 8 s.
    LostReplyTcp,
}

/// How long the lost-reply-over-TCP lookup may hang before `timeout` kills it.
pub const HANG_S: u64 = 8;

impl OverlayScenario {
    /// All, in recording order.
    pub const ALL: [OverlayScenario; 5] = [
        OverlayScenario::AcceptOverflow,
        OverlayScenario::Ndots,
        OverlayScenario::NdotsTcp,
        OverlayScenario::TruncatedRetry,
        OverlayScenario::LostReplyTcp,
    ];

    /// The file stem of its recordings.
    pub fn name(self) -> &'static str {
        match self {
            OverlayScenario::AcceptOverflow => "accept_overflow",
            OverlayScenario::Ndots => "dns_ndots",
            OverlayScenario::NdotsTcp => "dns_ndots_tcp",
            OverlayScenario::TruncatedRetry => "dns_truncated_retry",
            OverlayScenario::LostReplyTcp => "dns_lost_reply_tcp",
        }
    }

    /// Runs the traffic (bounded: a few seconds, 8 connections or one lookup).
    pub fn run(self, lab: &OverlayLab) -> Result<String> {
        match self {
            OverlayScenario::AcceptOverflow => {
                let listen = SocketAddrV4::new(POD_B_IP, OVERFLOW_PORT);
                let listener = in_netns(&lab.netns(Part::PodB), move || sock::listener(listen, 1))?;
                let (ok, stuck) = in_netns(&lab.netns(Part::PodA), move || {
                    let mut held = Vec::new();
                    for _ in 0..2 {
                        let s = sock::connect_nonblocking(listen)?;
                        if !sock::wait_connected(&s, Duration::from_secs(2)) {
                            bail!("a connection to the empty queue of {listen} did not complete");
                        }
                        held.push(s);
                    }
                    let extra = (0..6)
                        .map(|_| sock::connect_nonblocking(listen))
                        .collect::<Result<Vec<_>>>()?;
                    std::thread::sleep(Duration::from_millis(3500));
                    let ok = extra.iter().filter(|s| sock::is_connected(s)).count();
                    Ok((held.len() + ok, extra.len() - ok))
                })?;
                drop(listener);
                if stuck == 0 {
                    bail!("every connection completed: the queue did not overflow");
                }
                Ok(format!("{ok} connected, {stuck} never completed"))
            }
            OverlayScenario::Ndots => lab.lookup(&[], "ahosts", "api.example.test"),
            OverlayScenario::NdotsTcp => {
                lab.lookup(&["RES_OPTIONS=use-vc"], "ahosts", "api.example.test")
            }
            // A only: one UDP question, its truncated answer, the same question over TCP.
            OverlayScenario::TruncatedRetry => lab.lookup(&[], "ahostsv4", &format!("{BIG_NAME}.")),
            OverlayScenario::LostReplyTcp => {
                let nb = lab.netns(Part::NodeB);
                // Every TCP segment from port 53 whose question is (root, AAAA, IN).
                let rule = [
                    "FORWARD",
                    "-p",
                    "tcp",
                    "--sport",
                    "53",
                    "-m",
                    "string",
                    "--algo",
                    "bm",
                    "--hex-string",
                    "|00001c0001|",
                    "-j",
                    "DROP",
                ];
                let ipt = |op: &str| {
                    let mut a = vec!["iptables", "-w", "5", op];
                    a.extend_from_slice(&rule);
                    run(&mut netns_exec(&nb, &a))
                };
                ipt("-I")?;
                let hang = HANG_S.to_string();
                let out = netns_exec(
                    &lab.netns(Part::PodA),
                    &[
                        "env",
                        "RES_OPTIONS=ndots:1 timeout:5 attempts:2 use-vc",
                        "timeout",
                        &hang,
                        "getent",
                        "ahosts",
                        "api.example.test",
                    ],
                )
                .stdin(Stdio::null())
                .output();
                // The rule goes whatever happened.
                let removed = ipt("-D");
                let out = out.context("run getent in pod A")?;
                removed?;
                if out.status.code() != Some(124) {
                    bail!(
                        "getent was expected to hang until `timeout {HANG_S}` (exit 124), got {}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stdout)
                    );
                }
                Ok(format!("getent hung {HANG_S} s and was killed"))
            }
        }
    }
}

/// What [`record`] wrote for one scenario.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The scenario.
    pub scenario: OverlayScenario,
    /// Node B's underlay capture (VXLAN).
    pub underlay: PathBuf,
    /// Pod A's capture (the same traffic, no tunnel).
    pub pod: PathBuf,
    /// What the traffic reported.
    pub outcome: String,
}

/// How often [`record`] records a scenario whose capture a wall-clock step falsified.
const RECORD_ATTEMPTS: u32 = 3;

/// Runs every overlay scenario in a fresh lab `tag`, capturing node B's `uplink0` and pod
/// A's `eth0` with tcpdump into `dir/<scenario>-underlay.pcap` and `dir/<scenario>-pod.pcap`,
/// plus pod A's resolv.conf and pod B's counters around the accept-queue overflow. A
/// scenario during which the wall clock stepped is recorded again (three recordings at
/// most), since its capture timestamps no longer tell how long it took.
pub fn record(tag: &str, dir: &Path) -> Result<Vec<Recorded>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let lab = OverlayLab::up(tag)?;
    let mut out = Vec::new();
    for s in OverlayScenario::ALL {
        let underlay = dir.join(format!("{}-underlay.pcap", s.name()));
        let pod = dir.join(format!("{}-pod.pcap", s.name()));
        // A capture that spans a step of the wall clock (a VM snapshot and restore) times
        // its packets with time that never passed: record it again (clock.rs).
        let mut attempt = 1;
        let (before, outcome, after) = loop {
            let clock = ClockWatch::start();
            let ucap = Tcpdump::start(&lab.netns(Part::NodeB), "uplink0", &underlay, 5000)?;
            let pcap = Tcpdump::start(&lab.netns(Part::PodA), "eth0", &pod, 5000)?;
            let before = Snapshot::take(&lab.netns(Part::PodB))?;
            let outcome = s.run(&lab)?;
            let after = Snapshot::take(&lab.netns(Part::PodB))?;
            std::thread::sleep(Duration::from_millis(300));
            ucap.stop()?;
            pcap.stop()?;
            let Some(moved) = clock.stepped() else {
                break (before, outcome, after);
            };
            if attempt == RECORD_ATTEMPTS {
                bail!(
                    "the wall clock stepped ({moved:+.1} s against the monotonic clock) in each of {attempt} recordings of {}",
                    s.name()
                );
            }
            // Straight to stderr, not eprintln!: a passing test's eprintln! output is
            // captured, and a CI log should show every recording made again.
            let _ = writeln!(
                std::io::stderr(),
                "lab: the wall clock stepped {moved:+.1} s against the monotonic clock while {} was recorded (a VM snapshot and restore, or an NTP step): recording it again",
                s.name()
            );
            attempt += 1;
        };
        if s == OverlayScenario::AcceptOverflow {
            before.write_to(&dir.join("counters/pod_b/before"))?;
            after.write_to(&dir.join("counters/pod_b/after"))?;
        }
        out.push(Recorded {
            scenario: s,
            underlay,
            pod,
            outcome,
        });
    }
    std::fs::copy(lab.resolv_conf_path(), dir.join("resolv.conf"))
        .with_context(|| format!("copy pod A's resolv.conf into {}", dir.display()))?;
    drop(lab);
    Ok(out)
}

/// A tunnel the kernel here cannot make, for [`rewrap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrap {
    /// Geneve (UDP 6081) with one 8-byte option, Ethernet inside.
    Geneve,
    /// IPv4 in IPv4 (protocol 4): the inner Ethernet header is dropped.
    IpInIp,
    /// GRE with key (= the VNI) and sequence number, IPv4 inside (protocol 0x0800).
    GreIp,
    /// GRE with key, Ethernet inside (0x6558, "Ethernet over GRE").
    GreEthernet,
}

impl Wrap {
    /// All of them.
    pub const ALL: [Wrap; 4] = [Wrap::Geneve, Wrap::IpInIp, Wrap::GreIp, Wrap::GreEthernet];

    /// File-name part.
    pub fn name(self) -> &'static str {
        match self {
            Wrap::Geneve => "geneve",
            Wrap::IpInIp => "ipip",
            Wrap::GreIp => "gre_ip",
            Wrap::GreEthernet => "gre_eth",
        }
    }
}

/// Internet checksum of `b`.
fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in b.chunks(2) {
        let w = u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]);
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Re-encapsulates one captured underlay frame (Ethernet, IPv4, UDP 8472, VXLAN, inner
/// Ethernet) in `wrap`, keeping the outer Ethernet and IPv4 addresses; `seq` is GRE's
/// sequence number. Frames that are not IPv4/UDP/8472 VXLAN are returned unchanged.
pub fn rewrap_frame(frame: &[u8], wrap: Wrap, seq: u32) -> Vec<u8> {
    let is_vxlan = frame.len() >= 14 + 20 + 8 + 8 + 14
        && frame[12..14] == [0x08, 0x00]
        && frame[14] == 0x45
        && frame[23] == 17
        && frame[36..38] == VXLAN_PORT.to_be_bytes();
    if !is_vxlan {
        return frame.to_vec();
    }
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let end = (14 + total).min(frame.len());
    let vni = u32::from_be_bytes([0, frame[46], frame[47], frame[48]]);
    let inner_eth = &frame[50..end];
    let inner_ip = &frame[64.min(end)..end];
    // IP-only tunnels cannot carry the inner ARP: those frames stay as they were.
    let inner_is_ipv4 = frame.get(62..64) == Some(&[0x08, 0x00][..]);
    if matches!(wrap, Wrap::IpInIp | Wrap::GreIp) && !inner_is_ipv4 {
        return frame.to_vec();
    }
    let (protocol, mid, inner): (u8, Vec<u8>, &[u8]) = match wrap {
        Wrap::Geneve => {
            // UDP header (src port kept, dst 6081), Geneve: opt len 2 words, protocol
            // 0x6558, the VNI, and one option (class 0x0104, type 1, 4 bytes of data).
            let mut m = Vec::new();
            m.extend_from_slice(&frame[34..36]);
            m.extend_from_slice(&6081u16.to_be_bytes());
            let udp_len = (8 + 8 + 8 + inner_eth.len()) as u16;
            m.extend_from_slice(&udp_len.to_be_bytes());
            m.extend_from_slice(&[0, 0]);
            m.extend_from_slice(&[0x02, 0x00, 0x65, 0x58]);
            m.extend_from_slice(&(vni << 8).to_be_bytes());
            m.extend_from_slice(&[0x01, 0x04, 0x01, 0x01, 0, 0, 0, 42]);
            (17, m, inner_eth)
        }
        Wrap::IpInIp => (4, Vec::new(), inner_ip),
        Wrap::GreIp => {
            let mut m = vec![0x30, 0x00, 0x08, 0x00];
            m.extend_from_slice(&vni.to_be_bytes());
            m.extend_from_slice(&seq.to_be_bytes());
            (47, m, inner_ip)
        }
        Wrap::GreEthernet => {
            let mut m = vec![0x20, 0x00, 0x65, 0x58];
            m.extend_from_slice(&vni.to_be_bytes());
            (47, m, inner_eth)
        }
    };
    let mut ip = frame[14..34].to_vec();
    let len = (20 + mid.len() + inner.len()) as u16;
    ip[2..4].copy_from_slice(&len.to_be_bytes());
    ip[9] = protocol;
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut out = frame[..14].to_vec();
    out.extend_from_slice(&ip);
    out.extend_from_slice(&mid);
    out.extend_from_slice(inner);
    out
}

/// Writes `src` (a pcap of VXLAN underlay traffic) re-encapsulated in `wrap` to `dst`
/// (pcap, same timestamps and link type). Returns the number of frames re-wrapped.
pub fn rewrap(src: &Path, dst: &Path, wrap: Wrap) -> Result<usize> {
    let mut r = netdiag_pcapio::Reader::open(src)?;
    let file = std::fs::File::create(dst).with_context(|| format!("create {}", dst.display()))?;
    let mut w: Option<netdiag_pcapio::PcapWriter<std::io::BufWriter<std::fs::File>>> = None;
    let mut file = Some(file);
    let mut wrapped = 0usize;
    let mut seq = 0u32;
    while let Some(p) = r.next_packet()? {
        if w.is_none() {
            let f = file.take().context("pcap writer")?;
            w = Some(netdiag_pcapio::PcapWriter::new(
                std::io::BufWriter::new(f),
                p.link_type,
                65535,
                true,
            )?);
        }
        let out = rewrap_frame(p.data, wrap, seq);
        if out.as_slice() != p.data {
            wrapped += 1;
            seq = seq.wrapping_add(1);
        }
        if let Some(w) = w.as_mut() {
            w.write_packet(p.timestamp_ns, &out, out.len() as u32)?;
        }
    }
    if let Some(mut w) = w {
        w.flush()?;
    }
    Ok(wrapped)
}

/// Node B's end of the link between the nodes in the overlay path-MTU black hole: the
/// narrow middle of the path.
pub const NARROW_UNDERLAY_MTU: u32 = 1400;
/// What VXLAN adds to an inner IPv4 packet: outer IPv4 (20), UDP (8), VXLAN (8) and the
/// inner Ethernet header (14).
pub const VXLAN_OVERHEAD: u32 = 50;
/// Pod B's upload sink in the overlay path-MTU scenarios.
pub const UPLOAD_PORT: u16 = 9000;

/// The classic overlay black hole: the pod (MTU 1500) and node A's `vxlan0` (raised to
/// 1500, its `uplink0` to 1550) are sized for an underlay that carries 1550-byte frames,
/// but node B's end of the underlay link takes only [`NARROW_UNDERLAY_MTU`]: a full-size
/// inner packet, once in VXLAN, is dropped in the middle of the path (the veth refuses a
/// frame over its peer's MTU, as a switch does, without any ICMP). ICMP "fragmentation
/// needed" is also dropped in both nodes (`OUTPUT` and `FORWARD`), so no hop's ICMP could
/// repair it either. With `pod_mtu` (the remedy) pod A's `eth0` is lowered to that MTU.
/// Everything is undone when the lab's namespaces are deleted.
pub fn narrow_underlay(lab: &OverlayLab, pod_mtu: Option<u32>) -> Result<()> {
    let ip = |part: Part, args: &[&str]| -> Result<String> {
        run(Command::new("ip").args(["-n", &lab.netns(part)]).args(args))
    };
    ip(Part::NodeA, &["link", "set", "uplink0", "mtu", "1550"])?;
    ip(Part::NodeA, &["link", "set", "vxlan0", "mtu", "1500"])?;
    ip(
        Part::NodeB,
        &[
            "link",
            "set",
            "uplink0",
            "mtu",
            &NARROW_UNDERLAY_MTU.to_string(),
        ],
    )?;
    for part in [Part::NodeA, Part::NodeB] {
        for chain in ["OUTPUT", "FORWARD"] {
            run(&mut netns_exec(
                &lab.netns(part),
                &[
                    "iptables",
                    "-w",
                    "5",
                    "-I",
                    chain,
                    "-p",
                    "icmp",
                    "--icmp-type",
                    "fragmentation-needed",
                    "-j",
                    "DROP",
                ],
            ))?;
        }
    }
    if let Some(mtu) = pod_mtu {
        ip(
            Part::PodA,
            &["link", "set", "eth0", "mtu", &mtu.to_string()],
        )?;
    }
    Ok(())
}

/// From pod A to pod B's sink on [`UPLOAD_PORT`]: a 100-byte request, a pause, then
/// `body` bytes and a shutdown; waits up to `wait` for pod B's `OK <n>`. Returns whether
/// everything arrived.
pub fn upload_a_to_b(lab: &OverlayLab, body: usize, wait: Duration) -> Result<bool> {
    use std::io::{ErrorKind, Read, Write};
    let addr = SocketAddrV4::new(POD_B_IP, UPLOAD_PORT);
    let listener = in_netns(&lab.netns(Part::PodB), move || sock::listener(addr, 4))?;
    listener
        .set_nonblocking(true)
        .context("non-blocking listener")?;
    let limit = wait * 3 + Duration::from_secs(2);
    let sink = std::thread::spawn(move || -> Result<usize> {
        let deadline = Instant::now() + limit;
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e).context("accept in pod B"),
            }
        };
        s.set_nonblocking(false).context("blocking stream")?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        while Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) => {
                    let _ = s.write_all(format!("OK {total}\n").as_bytes());
                    break;
                }
                Ok(n) => total += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        Ok(total)
    });
    let body = body.min(1 << 20);
    let sent = in_netns(&lab.netns(Part::PodA), move || {
        let mut s = std::net::TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2))
            .with_context(|| format!("connect {addr}"))?;
        s.write_all(&[b'h'; 100]).context("send the request")?;
        std::thread::sleep(Duration::from_millis(300));
        s.set_write_timeout(Some(wait))?;
        let data = vec![b'x'; body];
        if s.write_all(&data).is_err() {
            return Ok(false);
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
        s.set_read_timeout(Some(wait))?;
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        Ok(answer.trim() == format!("OK {}", 100 + body))
    });
    let received = sink
        .join()
        .map_err(|_| anyhow::anyhow!("pod B's sink panicked"))?;
    let sent = sent?;
    received?;
    Ok(sent)
}

/// What [`record_pmtu`] wrote.
#[derive(Debug, Clone)]
pub struct PmtuRecorded {
    /// Pod A's `eth0` capture.
    pub pod: PathBuf,
    /// Node A's `uplink0` capture: the pod's packets inside VXLAN, before the narrow hop.
    pub underlay: PathBuf,
    /// Whether the upload arrived whole.
    pub delivered: bool,
}

/// Builds the overlay lab `tag`, narrows its underlay ([`narrow_underlay`], with the pod
/// MTU lowered to the overlay's real size `NARROW_UNDERLAY_MTU - VXLAN_OVERHEAD` when
/// `remedy`), and uploads 16 KiB from pod A to pod B while capturing pod A's `eth0` and
/// node A's `uplink0` into `dir/<stem>-pod.pcap` and `dir/<stem>-underlay-node_a.pcap`,
/// where `stem` is `pmtu_blackhole` or `pmtu_remedy`. The lab is gone on return.
pub fn record_pmtu(tag: &str, dir: &Path, remedy: bool) -> Result<PmtuRecorded> {
    let pod_mtu = remedy.then_some(NARROW_UNDERLAY_MTU - VXLAN_OVERHEAD);
    let stem = if remedy {
        "pmtu_remedy"
    } else {
        "pmtu_blackhole"
    };
    record_upload(tag, dir, stem, Some(pod_mtu))
}

/// Path-MTU discovery working over the overlay: the lab as built (pod A 1500, `vxlan0`
/// 1450 over a 1500 underlay, ICMP allowed). Node A answers the pod's 1500-byte packets
/// with "fragmentation needed" (MTU 1450) and the pod re-sends smaller. Recorded like
/// [`record_pmtu`] with the stem `pmtu_discovery`.
pub fn record_pmtu_discovery(tag: &str, dir: &Path) -> Result<PmtuRecorded> {
    record_upload(tag, dir, "pmtu_discovery", None)
}

/// `narrow`: `Some(pod_mtu)` applies [`narrow_underlay`]; `None` keeps the lab as built.
fn record_upload(
    tag: &str,
    dir: &Path,
    stem: &str,
    narrow: Option<Option<u32>>,
) -> Result<PmtuRecorded> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let lab = OverlayLab::up(tag)?;
    if let Some(pod_mtu) = narrow {
        narrow_underlay(&lab, pod_mtu)?;
    }
    let pod = dir.join(format!("{stem}-pod.pcap"));
    let underlay = dir.join(format!("{stem}-underlay-node_a.pcap"));
    let ucap = Tcpdump::start(&lab.netns(Part::NodeA), "uplink0", &underlay, 5000)?;
    let pcap = Tcpdump::start(&lab.netns(Part::PodA), "eth0", &pod, 5000)?;
    let delivered = upload_a_to_b(&lab, 16 * 1024, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    let stopped = (ucap.stop(), pcap.stop());
    let delivered = delivered?;
    stopped.0?;
    stopped.1?;
    drop(lab);
    Ok(PmtuRecorded {
        pod,
        underlay,
        delivered,
    })
}
