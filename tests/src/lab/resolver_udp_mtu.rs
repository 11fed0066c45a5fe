//! Reproductions of issue 14 on the real kernel, in a [`Lab`]:
//!
//! - **musl next to glibc.** A resolver probe (`tests/probe/resolve.c`) is built at test
//!   time with `musl-gcc` (static and dynamic, Debian `musl-tools`) and resolves names in
//!   the pod netns next to glibc's `getent ahosts`; the pod's resolv.conf is kubelet's.
//! - **A UDP DNS server that cannot keep up.** A small DNS responder bound to the pod's
//!   10.244.1.10:53 with a tiny `SO_RCVBUF`, answering one query per millisecond, is flooded
//!   from ext with a bounded burst: the kernel drops at the socket (`Udp.RcvbufErrors`).
//! - **A path-MTU black hole.** The node's uplink gets a smaller MTU than both ends; with
//!   the node's ICMP "fragmentation needed" dropped (iptables OUTPUT), an upload from the
//!   pod stalls; with ICMP allowed, path-MTU discovery repairs it.
//!
//! [`Recording`] captures the pod's eth0 with tcpdump and snapshots the pod and node
//! counters around a trigger, in the layout of `testdata/README.md`.

use super::capture::Tcpdump;
use super::counters::Snapshot;
use super::{EXT_IP, Lab, NODE_UPLINK_IF, POD_IF, POD_IP, Role, netns_exec, run};
use anyhow::{Context, Result, bail};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddrV4, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The musl-built resolver probes.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `musl-gcc -static`: no ELF interpreter (its resolver is compiled in).
    pub static_bin: PathBuf,
    /// `musl-gcc` (dynamic): interpreter `/lib/ld-musl-<arch>.so.1`.
    pub dynamic_bin: PathBuf,
}

/// The probe's C source in the repository.
pub fn probe_source() -> PathBuf {
    crate::workspace_root().join("tests/probe/resolve.c")
}

/// Builds the probe with `musl-gcc` into `dir` (static and dynamic).
pub fn build_probe(dir: &Path) -> Result<Probe> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let src = probe_source();
    let static_bin = dir.join("resolve-musl-static");
    let dynamic_bin = dir.join("resolve-musl");
    run(std::process::Command::new("musl-gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&static_bin)
        .arg(&src))
    .context("musl-gcc -static (Debian package musl-tools)")?;
    run(std::process::Command::new("musl-gcc")
        .args(["-O2", "-o"])
        .arg(&dynamic_bin)
        .arg(&src))
    .context("musl-gcc (Debian package musl-tools)")?;
    Ok(Probe {
        static_bin,
        dynamic_bin,
    })
}

/// Resolves `name` in the pod with `program` (`getent ahosts` for glibc, or a probe),
/// bounded by `timeout 20`; returns what it printed and how long it took.
pub fn resolve_in_pod(lab: &Lab, program: &[&str], name: &str) -> Result<(String, Duration)> {
    let mut args = vec!["timeout", "20"];
    args.extend_from_slice(program);
    args.push(name);
    let start = Instant::now();
    let out = run(&mut netns_exec(&lab.netns(Role::Pod), &args))?;
    Ok((out, start.elapsed()))
}

/// Starts the dynamic musl probe in the pod, holding for `hold_s` seconds after its
/// lookup, and returns its PID (for `/proc/PID/exe`).
pub fn spawn_probe_held(lab: &Lab, bin: &Path, name: &str, hold_s: u32) -> Result<u32> {
    let bin = bin.to_string_lossy().into_owned();
    let hold = hold_s.min(60).to_string();
    let pid = lab.spawn(
        netns_exec(&lab.netns(Role::Pod), &[&bin, name, &hold]),
        "musl resolver probe",
    )?;
    // `ip netns exec` execs the probe after setns; wait until /proc/PID/exe is the probe.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(p) = std::fs::read_link(format!("/proc/{pid}/exe"))
            && p == Path::new(&bin)
        {
            return Ok(pid);
        }
        if Instant::now() > deadline {
            bail!("probe {pid} did not exec {bin} within 5 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The node drops the first AAAA reply it forwards (as the `dns_lost_reply` scenario).
pub fn drop_first_aaaa_reply(lab: &Lab) -> Result<()> {
    lab.iptables(
        Role::Node,
        &[
            "-I",
            "FORWARD",
            "-p",
            "udp",
            "--sport",
            "53",
            "-m",
            "string",
            "--algo",
            "bm",
            "--hex-string",
            "|00001c0001|",
            "-m",
            "statistic",
            "--mode",
            "nth",
            "--every",
            "2",
            "--packet",
            "0",
            "-j",
            "DROP",
        ],
    )
}

/// A pod capture plus counter snapshots around a trigger.
pub struct Recording {
    dir: PathBuf,
    dump: Tcpdump,
    pod_before: Snapshot,
    node_before: Snapshot,
    pod_ns: String,
    node_ns: String,
    resolv: PathBuf,
}

impl Recording {
    /// Starts tcpdump on the pod's eth0 writing `dir/pod.pcap` and snapshots counters.
    pub fn start(lab: &Lab, dir: &Path) -> Result<Recording> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        for old in ["pod.pcap", "resolv.conf"] {
            let p = dir.join(old);
            if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("remove {}", p.display()))?;
            }
        }
        let counters = dir.join("counters");
        if counters.exists() {
            std::fs::remove_dir_all(&counters)
                .with_context(|| format!("remove {}", counters.display()))?;
        }
        let pod_ns = lab.netns(Role::Pod);
        let node_ns = lab.netns(Role::Node);
        let dump = Tcpdump::start(&pod_ns, POD_IF, &dir.join("pod.pcap"), 20_000)?;
        Ok(Recording {
            dir: dir.to_owned(),
            dump,
            pod_before: Snapshot::take(&pod_ns)?,
            node_before: Snapshot::take(&node_ns)?,
            pod_ns,
            node_ns,
            resolv: lab.resolv_conf_path(),
        })
    }

    /// Snapshots counters again, stops the capture and writes everything.
    pub fn finish(self) -> Result<PathBuf> {
        let pod_after = Snapshot::take(&self.pod_ns)?;
        let node_after = Snapshot::take(&self.node_ns)?;
        std::thread::sleep(Duration::from_millis(300));
        self.dump.stop()?;
        let c = self.dir.join("counters");
        for (role, when, snap) in [
            ("pod", "before", &self.pod_before),
            ("pod", "after", &pod_after),
            ("node", "before", &self.node_before),
            ("node", "after", &node_after),
        ] {
            snap.write_to(&c.join(role).join(when))?;
        }
        std::fs::copy(&self.resolv, self.dir.join("resolv.conf"))
            .with_context(|| format!("copy {}", self.resolv.display()))?;
        Ok(self.dir)
    }
}

/// The port of the pod's DNS server.
pub const POD_DNS_PORT: u16 = 53;

/// Starts a DNS responder on 10.244.1.10:53 in the pod with `SO_RCVBUF = rcvbuf` that
/// answers every query (NOERROR, no records) after `per_query` of work. It runs until the
/// lab is torn down.
pub fn start_pod_dns_server(lab: &Lab, rcvbuf: usize, per_query: Duration) -> Result<()> {
    let addr = SocketAddrV4::new(POD_IP, POD_DNS_PORT);
    let sock = lab.in_ns(Role::Pod, move || {
        let s = UdpSocket::bind(addr).with_context(|| format!("bind {addr}"))?;
        nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBuf, &rcvbuf)
            .context("setsockopt SO_RCVBUF")?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(s)
    })?;
    lab.background(Role::Pod, move |stop| {
        serve_dns(&sock, &stop, per_query);
        Ok(())
    })
}

fn serve_dns(s: &UdpSocket, stop: &AtomicBool, per_query: Duration) {
    let deadline = Instant::now() + super::MAX_LIFETIME;
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match s.recv_from(&mut buf) {
            Ok((n, from)) if n >= 12 => {
                std::thread::sleep(per_query);
                let mut reply = buf[..n].to_vec();
                reply[2] |= 0x80; // QR: a response
                reply[3] = 0x80; // RA, rcode NOERROR
                let _ = s.send_to(&reply, from);
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
}

/// A DNS query for `q<i>.flood.test` type A with ID `id`.
fn dns_query(id: u16, i: u32) -> Vec<u8> {
    let mut q = Vec::with_capacity(40);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    let label = format!("q{i}");
    q.push(label.len() as u8);
    q.extend_from_slice(label.as_bytes());
    for l in ["flood", "test"] {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Sends `count` DNS queries from ext to the pod's server, `gap` apart (zero: bursts of 50
/// as fast as the socket goes, 2 ms apart), then collects answers for up to 2 s.
/// Returns (sent, answered).
pub fn query_pod_dns(lab: &Lab, count: u32, gap: Duration) -> Result<(u32, u32)> {
    let count = count.min(4000);
    lab.in_ns(Role::Ext, move || {
        let s = UdpSocket::bind(SocketAddrV4::new(EXT_IP, 0)).context("bind in ext")?;
        let dst = SocketAddrV4::new(POD_IP, POD_DNS_PORT);
        let mut sent = 0;
        let mut answered = 0;
        let mut buf = [0u8; 512];
        // Answers are read while sending, so the client's own buffer never overflows.
        s.set_nonblocking(true)?;
        for i in 0..count {
            let id = (i % 65536) as u16;
            s.send_to(&dns_query(id, i), dst).context("send a query")?;
            sent += 1;
            if !gap.is_zero() {
                std::thread::sleep(gap);
            } else if i % 50 == 49 {
                // Bursts of 50: the server's socket still overflows in each, and a
                // capture on a busy machine keeps up between them.
                std::thread::sleep(Duration::from_millis(2));
            }
            while s.recv_from(&mut buf).is_ok() {
                answered += 1;
            }
        }
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end && answered < sent {
            match s.recv_from(&mut buf) {
                Ok(_) => answered += 1,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e).context("receive answers"),
            }
        }
        Ok((sent, answered))
    })
}

/// The MTU the node's uplink gets in the path-MTU scenarios (both ends keep 1500).
pub const PATH_MTU: u32 = 1280;
/// The port of ext's upload sink.
pub const UPLOAD_PORT: u16 = 9100;

/// Narrows the path (node uplink MTU [`PATH_MTU`]); with `drop_icmp`, the node's ICMP
/// "fragmentation needed" is dropped on the way out (a filtering firewall). Starts ext's
/// upload sink, which answers `OK <bytes>` once the client has shut its side down.
pub fn narrow_path(lab: &Lab, drop_icmp: bool) -> Result<()> {
    run(std::process::Command::new("ip").args([
        "-n",
        &lab.netns(Role::Node),
        "link",
        "set",
        NODE_UPLINK_IF,
        "mtu",
        &PATH_MTU.to_string(),
    ]))?;
    if drop_icmp {
        lab.iptables(
            Role::Node,
            &[
                "-I",
                "OUTPUT",
                "-p",
                "icmp",
                "--icmp-type",
                "fragmentation-needed",
                "-j",
                "DROP",
            ],
        )?;
    }
    let addr = SocketAddrV4::new(EXT_IP, UPLOAD_PORT);
    let l = lab.in_ns(Role::Ext, move || super::sock::listener(addr, 16))?;
    lab.background(Role::Ext, move |stop| {
        super::sock::serve(l, stop, super::MAX_LIFETIME, sink)
    })
}

fn sink(mut s: TcpStream, stop: Arc<AtomicBool>) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
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
}

/// From the pod: a 100-byte request, then `body` bytes, then shutdown; waits up to
/// `wait` for ext's `OK <n>`. Returns whether everything arrived.
pub fn upload_from_pod(lab: &Lab, body: usize, wait: Duration) -> Result<bool> {
    let dst = SocketAddrV4::new(EXT_IP, UPLOAD_PORT);
    let body = body.min(1 << 20);
    lab.in_ns(Role::Pod, move || {
        let mut s = TcpStream::connect_timeout(&dst.into(), Duration::from_secs(2))
            .with_context(|| format!("connect {dst}"))?;
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
    })
}
