//! The reproductions of issue 13: conntrack table full, ephemeral ports exhausted,
//! connection refused (never listened, and a backend going away), the SYN queue
//! overflowing, and an idle connection losing its NAT entry — with their healthy twins.
//! `scenario.rs` dispatches to `setup` and `traffic` here.

use super::conntrack_max;
use super::scenario::{Evidence, Scenario};
use super::sock;
use super::{EXT_IP, Lab, POD_IP, Role};
use anyhow::{Context, Result, bail};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

/// `nf_conntrack_max` while the table-full scenario runs (global; restored by a guard).
pub const TABLE_FULL_MAX: u64 = 64;
/// Remote ports the table-full scenario tries once the table is full (one server each).
pub const TABLE_FULL_PORTS: [u16; 3] = [80, 81, 82];
/// Connection attempts per port once the table is full.
pub const TABLE_FULL_ATTEMPTS: usize = 3;
/// The pod's `ip_local_port_range` in the exhaustion scenario: 10 ports.
pub const EPHEMERAL_RANGE: (u16, u16) = (40000, 40009);
/// The pod's range in the healthy twin: 100 ports.
pub const HEALTHY_SHORT_RANGE: (u16, u16) = (40000, 40099);
/// Short connections (one request each, closed by the pod) both scenarios attempt.
pub const SHORT_ATTEMPTS: usize = 14;
const SHORT_PORT: u16 = 8090;
/// A Service VIP the node DNATs to a port nothing listens on.
pub const REFUSED_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 30);
const REFUSED_PORT: u16 = 9100;
/// Refused attempts of the refused scenarios.
pub const REFUSED_ATTEMPTS: usize = 3;
const GOING_AWAY_PORT: u16 = 9101;
/// Connections the going-away backend accepts before it stops listening.
pub const GOING_AWAY_ACCEPTED: usize = 3;
const SYN_QUEUE_PORT: u16 = 8083;
/// Listen backlog of the SYN-queue scenario (the SYN queue holds as many half-open).
pub const SYN_QUEUE_BACKLOG: i32 = 4;
/// Clients of the SYN-queue scenario.
pub const SYN_QUEUE_CLIENTS: usize = 10;
/// The Service VIP of the idle scenarios, DNATed to two backends.
pub const IDLE_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
const IDLE_BACKENDS: [u16; 2] = [9201, 9202];
/// The node's `nf_conntrack_tcp_timeout_established` in the idle-timeout scenario.
pub const IDLE_NODE_TIMEOUT_S: u64 = 3;
/// The node's timeout in the healthy twin.
pub const HEALTHY_IDLE_NODE_TIMEOUT_S: u64 = 60;
/// How long the connection stays silent in both idle scenarios.
pub const IDLE_SILENCE: Duration = Duration::from_secs(6);

fn sysctl(lab: &Lab, role: Role, setting: &str) -> Result<()> {
    super::run(&mut super::netns_exec(
        &lab.netns(role),
        &["sysctl", "-qw", setting],
    ))
    .map(|_| ())
}

fn nf_count(lab: &Lab) -> Result<u64> {
    lab.in_ns(Role::Node, || {
        let t = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
            .context("read nf_conntrack_count")?;
        t.trim().parse::<u64>().context("nf_conntrack_count")
    })
}

/// One request on a fresh connection, closed by the client first (its port goes to
/// TIME_WAIT). `Ok(false)`: `connect()` had no local port (EADDRNOTAVAIL).
fn short_request(dst: SocketAddrV4) -> Result<bool> {
    let mut s = match TcpStream::connect_timeout(&dst.into(), Duration::from_secs(2)) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::AddrNotAvailable => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("connect {dst}")),
    };
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: ext\r\n\r\n")?;
    sock::read_http_response(&mut s)?;
    drop(s);
    // Let the server's FIN arrive before the next connect, as a busy client would.
    std::thread::sleep(Duration::from_millis(30));
    Ok(true)
}

/// `connect()` that is refused: `Ok(true)` when refused, `Ok(false)` when it connected.
fn refused(dst: SocketAddrV4) -> Result<bool> {
    match TcpStream::connect_timeout(&dst.into(), Duration::from_secs(2)) {
        Ok(_) => Ok(false),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(true),
        Err(e) => Err(e).with_context(|| format!("connect {dst}")),
    }
}

fn dnat_two_backends(lab: &Lab, vip: Ipv4Addr) -> Result<()> {
    let vip = vip.to_string();
    let first = format!("{EXT_IP}:{}", IDLE_BACKENDS[0]);
    let second = format!("{EXT_IP}:{}", IDLE_BACKENDS[1]);
    // Like kube-proxy's iptables mode: the first rule takes every other new flow.
    lab.service_dnat(
        &vip,
        &first,
        &[
            "-m",
            "statistic",
            "--mode",
            "nth",
            "--every",
            "2",
            "--packet",
            "0",
        ],
    )?;
    lab.service_dnat(&vip, &second, &[])
}

/// Prepares one of this module's scenarios.
pub(crate) fn setup(s: Scenario, lab: &Lab) -> Result<()> {
    match s {
        Scenario::ConntrackTableFull => {
            if !lab.is_exclusive() {
                bail!(
                    "{} lowers the global nf_conntrack_max: bring the lab up with Lab::up_exclusive",
                    s.name()
                );
            }
            for port in TABLE_FULL_PORTS {
                super::scenario::serve(lab, Role::Ext, EXT_IP, port, sock::hold)?;
            }
            let guard = conntrack_max::lower(TABLE_FULL_MAX)?;
            lab.stash("conntrack_max", guard);
            // Fill the node's table with assured (established, held) connections: the
            // kernel cannot evict those to make room (early_drop only takes unassured ones).
            let dst = SocketAddrV4::new(EXT_IP, TABLE_FULL_PORTS[0]);
            let mut held = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while nf_count(lab)? < TABLE_FULL_MAX {
                if Instant::now() > deadline {
                    bail!("could not fill the node's conntrack table to {TABLE_FULL_MAX}");
                }
                let s = lab.in_ns(Role::Pod, move || {
                    TcpStream::connect_timeout(&dst.into(), Duration::from_secs(2))
                        .with_context(|| format!("connect {dst}"))
                })?;
                held.push(s);
            }
            lab.stash("held", held);
        }
        Scenario::EphemeralPortExhaustion | Scenario::HealthyShortConnections => {
            let (lo, hi) = if s == Scenario::EphemeralPortExhaustion {
                EPHEMERAL_RANGE
            } else {
                HEALTHY_SHORT_RANGE
            };
            sysctl(
                lab,
                Role::Pod,
                &format!("net.ipv4.ip_local_port_range={lo} {hi}"),
            )?;
            super::scenario::serve(lab, Role::Ext, EXT_IP, SHORT_PORT, sock::http_keepalive)?;
        }
        Scenario::ConnectionRefused => {
            let vip = REFUSED_VIP.to_string();
            let backend = format!("{EXT_IP}:{REFUSED_PORT}");
            lab.service_dnat(&vip, &backend, &[])?;
        }
        Scenario::ConnectionRefusedGoingAway | Scenario::HealthyRefusedOnce => {}
        Scenario::SynQueueOverflow => {
            sysctl(lab, Role::Pod, "net.ipv4.tcp_syncookies=0")?;
            let l = lab.in_ns(Role::Pod, || {
                sock::listener(SocketAddrV4::new(POD_IP, SYN_QUEUE_PORT), SYN_QUEUE_BACKLOG)
            })?;
            lab.stash("listener", l);
            // The clients' final ACKs (everything but SYNs) never leave ext: each
            // handshake stays half-open in the pod's SYN queue.
            let pod = POD_IP.to_string();
            let port = SYN_QUEUE_PORT.to_string();
            lab.iptables(
                Role::Ext,
                &[
                    "-A", "OUTPUT", "-d", &pod, "-p", "tcp", "--dport", &port, "!", "--syn", "-j",
                    "DROP",
                ],
            )?;
        }
        Scenario::NatIdleTimeout | Scenario::HealthyIdle => {
            let timeout = if s == Scenario::NatIdleTimeout {
                IDLE_NODE_TIMEOUT_S
            } else {
                HEALTHY_IDLE_NODE_TIMEOUT_S
            };
            sysctl(
                lab,
                Role::Node,
                &format!("net.netfilter.nf_conntrack_tcp_timeout_established={timeout}"),
            )?;
            for port in IDLE_BACKENDS {
                super::scenario::serve(lab, Role::Ext, EXT_IP, port, sock::http_keepalive)?;
            }
            dnat_two_backends(lab, IDLE_VIP)?;
            // The connection opens before the capture: one request, then it stays open.
            let dst = SocketAddrV4::new(IDLE_VIP, 80);
            let conn = lab.in_ns(Role::Pod, move || {
                let mut s = TcpStream::connect_timeout(&dst.into(), Duration::from_secs(2))
                    .with_context(|| format!("connect {dst}"))?;
                s.set_read_timeout(Some(Duration::from_secs(3)))?;
                s.write_all(b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n")?;
                sock::read_http_response(&mut s)?;
                Ok(s)
            })?;
            lab.stash("idle", conn);
        }
        other => bail!("{} is not one of issue 13's scenarios", other.name()),
    }
    Ok(())
}

/// Drives one of this module's scenarios.
pub(crate) fn traffic(s: Scenario, lab: &Lab, ev: &mut Evidence) -> Result<()> {
    match s {
        Scenario::ConntrackTableFull => {
            let (ok, stuck) = lab.in_ns(Role::Pod, || {
                let mut socks = Vec::new();
                for port in TABLE_FULL_PORTS {
                    for _ in 0..TABLE_FULL_ATTEMPTS {
                        socks.push(sock::connect_nonblocking(SocketAddrV4::new(EXT_IP, port))?);
                    }
                }
                std::thread::sleep(Duration::from_millis(3500));
                let ok = socks.iter().filter(|s| sock::is_connected(s)).count();
                Ok((ok, socks.len() - ok))
            })?;
            ev.connected = ok;
            ev.not_connected = stuck;
        }
        Scenario::EphemeralPortExhaustion | Scenario::HealthyShortConnections => {
            let dst = SocketAddrV4::new(EXT_IP, SHORT_PORT);
            let (ok, no_port) = lab.in_ns(Role::Pod, move || {
                let mut ok = 0;
                let mut no_port = 0;
                for _ in 0..SHORT_ATTEMPTS {
                    if short_request(dst)? {
                        ok += 1;
                    } else {
                        no_port += 1;
                    }
                }
                Ok((ok, no_port))
            })?;
            ev.connected = ok;
            ev.not_connected = no_port;
        }
        Scenario::ConnectionRefused | Scenario::HealthyRefusedOnce => {
            let (dst, n) = if s == Scenario::ConnectionRefused {
                (SocketAddrV4::new(REFUSED_VIP, 80), REFUSED_ATTEMPTS)
            } else {
                (SocketAddrV4::new(EXT_IP, REFUSED_PORT), 1)
            };
            let refusals = lab.in_ns(Role::Pod, move || {
                let mut r = 0;
                for _ in 0..n {
                    if refused(dst)? {
                        r += 1;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Ok(r)
            })?;
            ev.not_connected = refusals;
        }
        Scenario::ConnectionRefusedGoingAway => {
            let addr = SocketAddrV4::new(EXT_IP, GOING_AWAY_PORT);
            let listener = lab.in_ns(Role::Ext, move || sock::listener(addr, 16))?;
            for _ in 0..GOING_AWAY_ACCEPTED {
                let mut c = lab.in_ns(Role::Pod, move || {
                    TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2))
                        .with_context(|| format!("connect {addr}"))
                })?;
                let (mut srv, _) = listener.accept().context("accept")?;
                c.write_all(b"hi\n")?;
                let mut buf = [0u8; 3];
                srv.read_exact(&mut buf)?;
                srv.write_all(b"ok\n")?;
                c.read_exact(&mut buf)?;
                drop(c);
                drop(srv);
                ev.connected += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            // The backend stops listening; traffic keeps coming.
            drop(listener);
            std::thread::sleep(Duration::from_millis(200));
            let refusals = lab.in_ns(Role::Pod, move || {
                let mut r = 0;
                for _ in 0..REFUSED_ATTEMPTS {
                    if refused(addr)? {
                        r += 1;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Ok(r)
            })?;
            ev.not_connected = refusals;
        }
        Scenario::SynQueueOverflow => {
            let dst = SocketAddrV4::new(POD_IP, SYN_QUEUE_PORT);
            let (ok, stuck) = lab.in_ns(Role::Ext, move || {
                let mut socks = Vec::new();
                for _ in 0..SYN_QUEUE_CLIENTS {
                    socks.push(sock::connect_nonblocking(dst)?);
                    std::thread::sleep(Duration::from_millis(20));
                }
                std::thread::sleep(Duration::from_millis(3500));
                // "Connected" here means the client saw a SYN-ACK; the server never
                // saw the final ACK.
                let ok = socks.iter().filter(|s| sock::is_connected(s)).count();
                Ok((ok, socks.len() - ok))
            })?;
            ev.connected = ok;
            ev.not_connected = stuck;
        }
        Scenario::NatIdleTimeout | Scenario::HealthyIdle => {
            let mut conn: TcpStream = lab.take("idle")?;
            conn.write_all(b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n")?;
            sock::read_http_response(&mut conn)?;
            ev.connected = 1;
            std::thread::sleep(IDLE_SILENCE);
            let _ = conn.write_all(b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n");
            let died = match sock::read_http_response(&mut conn) {
                Ok(()) => false,
                Err(e) => {
                    let reset = e.chain().any(|c| {
                        c.downcast_ref::<std::io::Error>()
                            .is_some_and(|io| io.kind() == ErrorKind::ConnectionReset)
                    });
                    if !reset {
                        eprintln!("lab: resumed request failed without a reset: {e:#}");
                    }
                    true
                }
            };
            ev.connection_died = Some(died);
            // The reset connection is closed here; a live one closes normally.
            drop(conn);
            std::thread::sleep(Duration::from_millis(100));
        }
        other => bail!("{} is not one of issue 13's scenarios", other.name()),
    }
    Ok(())
}
