//! Sustained traffic through the pod's interface for the `watch` soak: thousands of
//! packets per second over many flows, all between the lab's own namespaces.
//!
//! - TCP: short connections from the pod to servers in ext on [`TCP_PORTS`] (through the
//!   node's NAT), one HTTP request each, closed by the client: a new flow per connection.
//! - UDP: datagrams from a pool of pod sockets to sinks in ext on [`UDP_PORTS`]; the pool
//!   is replaced every few seconds, so flows keep being born and forgotten.
//! - DNS: A queries for ever-new names (`q<n>.example.test`) straight to the lab's
//!   dnsmasq, from a pool of sockets: many query IDs, names and answers.
//!
//! Everything is paced (per 10 ms slot) and stops on [`Load::stop`] or after
//! [`super::MAX_LIFETIME`].

use super::scenario::serve;
use super::{EXT_IP, Lab, Role, sock};
use anyhow::{Context, Result};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddrV4, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Ports of the TCP servers in ext.
pub const TCP_PORTS: std::ops::Range<u16> = 9300..9308;
/// Ports of the UDP sinks in ext.
pub const UDP_PORTS: std::ops::Range<u16> = 9400..9416;
const SLOT: Duration = Duration::from_millis(10);

/// Offered load.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// TCP connections per second (each: handshake, request, response, close: ~10 packets).
    pub tcp_per_s: u32,
    /// Client threads sharing the TCP connections.
    pub tcp_workers: usize,
    /// UDP datagrams per second.
    pub udp_per_s: u32,
    /// UDP sockets in the pool (source ports: flows).
    pub udp_sockets: usize,
    /// The UDP pool is replaced this often.
    pub udp_rotate: Duration,
    /// DNS queries per second.
    pub dns_per_s: u32,
}

impl Default for LoadConfig {
    fn default() -> LoadConfig {
        LoadConfig {
            tcp_per_s: 150,
            tcp_workers: 4,
            udp_per_s: 2000,
            udp_sockets: 64,
            udp_rotate: Duration::from_secs(5),
            dns_per_s: 200,
        }
    }
}

/// Counts of what was sent and answered.
#[derive(Debug, Default)]
pub struct LoadCounts {
    /// TCP connections completed (request answered, closed).
    pub tcp_connections: AtomicU64,
    /// TCP errors (connect, request): none expected.
    pub tcp_errors: AtomicU64,
    /// UDP datagrams sent.
    pub udp_sent: AtomicU64,
    /// UDP datagrams the sinks received.
    pub udp_received: AtomicU64,
    /// DNS queries sent.
    pub dns_sent: AtomicU64,
    /// DNS answers received.
    pub dns_answers: AtomicU64,
}

impl std::fmt::Display for LoadCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        write!(
            f,
            "{} TCP connections ({} errors), {} UDP datagrams sent ({} received), {} DNS queries ({} answered)",
            g(&self.tcp_connections),
            g(&self.tcp_errors),
            g(&self.udp_sent),
            g(&self.udp_received),
            g(&self.dns_sent),
            g(&self.dns_answers)
        )
    }
}

/// The running load; [`Load::stop`] or dropping it ends it.
pub struct Load {
    stop: Arc<AtomicBool>,
    counts: Arc<LoadCounts>,
    threads: Vec<JoinHandle<Result<()>>>,
}

impl std::fmt::Debug for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Load")
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

/// Runs `f` for each 10 ms slot with the number of items due in it at `per_s`, until
/// `stop` or the lab's maximum lifetime.
fn paced(per_s: u32, stop: &AtomicBool, mut f: impl FnMut(u64) -> Result<()>) -> Result<()> {
    let start = Instant::now();
    let deadline = start + super::MAX_LIFETIME;
    let mut done: u64 = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let due = (start.elapsed().as_secs_f64() * f64::from(per_s)) as u64;
        if due > done {
            // Never more than one second's worth at once after a stall.
            let n = (due - done).min(u64::from(per_s.max(1)));
            f(n)?;
            done = due;
        }
        std::thread::sleep(SLOT);
    }
    Ok(())
}

/// Starts the servers in ext and the clients in the pod.
pub fn start(lab: &Lab, cfg: &LoadConfig) -> Result<Load> {
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(LoadCounts::default());
    let mut threads = Vec::new();
    let pod = lab.netns(Role::Pod);
    let ext = lab.netns(Role::Ext);
    for port in TCP_PORTS {
        serve(lab, Role::Ext, EXT_IP, port, sock::http_keepalive)?;
    }
    // UDP sinks: bound now (before any datagram is sent), drained by one thread.
    let sinks = super::in_netns(&ext, || {
        UDP_PORTS
            .map(|p| {
                let s = UdpSocket::bind(SocketAddrV4::new(EXT_IP, p))
                    .with_context(|| format!("bind udp {EXT_IP}:{p}"))?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .collect::<Result<Vec<_>>>()
    })?;
    {
        let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let deadline = Instant::now() + super::MAX_LIFETIME;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let mut got = 0;
                for s in &sinks {
                    while s.recv(&mut buf).is_ok() {
                        got += 1;
                    }
                }
                counts.udp_received.fetch_add(got, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        }));
    }
    let workers = cfg.tcp_workers.max(1);
    let per_worker = (cfg.tcp_per_s / workers as u32).max(1);
    for w in 0..workers {
        let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
        threads.push(super::spawn_in_netns(&pod, move || {
            let mut n = w;
            paced(per_worker, &stop, |due| {
                for _ in 0..due {
                    let port = TCP_PORTS.start + (n % TCP_PORTS.len()) as u16;
                    n += 1;
                    match tcp_once(SocketAddrV4::new(EXT_IP, port)) {
                        Ok(()) => counts.tcp_connections.fetch_add(1, Ordering::Relaxed),
                        Err(_) => counts.tcp_errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
                Ok(())
            })
        })?);
    }
    {
        let (stop, counts, cfg) = (Arc::clone(&stop), Arc::clone(&counts), cfg.clone());
        threads.push(super::spawn_in_netns(&pod, move || {
            udp_client(&cfg, &stop, &counts)
        })?);
    }
    {
        let (stop, counts, rate) = (Arc::clone(&stop), Arc::clone(&counts), cfg.dns_per_s);
        threads.push(super::spawn_in_netns(&pod, move || {
            dns_client(rate, &stop, &counts)
        })?);
    }
    Ok(Load {
        stop,
        counts,
        threads,
    })
}

impl Load {
    /// What has been sent and answered so far.
    pub fn counts(&self) -> &LoadCounts {
        &self.counts
    }

    /// Stops every client and sink and returns the counts; fails if a client thread did.
    pub fn stop(mut self) -> Result<Arc<LoadCounts>> {
        self.halt()?;
        Ok(Arc::clone(&self.counts))
    }

    fn halt(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let mut first_err = None;
        for t in self.threads.drain(..) {
            let r = t
                .join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))
                .and_then(|r| r);
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Err(e) = self.halt() {
            eprintln!("lab: load: {e:#}");
        }
    }
}

/// One short connection: connect, one request, the response, client closes first.
fn tcp_once(dst: SocketAddrV4) -> Result<()> {
    let mut s = TcpStream::connect_timeout(&dst.into(), Duration::from_secs(2))
        .with_context(|| format!("connect {dst}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: ext\r\n\r\n")?;
    sock::read_http_response(&mut s)?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    Ok(())
}

fn udp_pool(n: usize) -> Result<Vec<UdpSocket>> {
    (0..n.max(1))
        .map(|_| {
            let s = UdpSocket::bind("0.0.0.0:0").context("bind a UDP client socket")?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect()
}

fn udp_client(cfg: &LoadConfig, stop: &AtomicBool, counts: &LoadCounts) -> Result<()> {
    let mut pool = udp_pool(cfg.udp_sockets)?;
    let mut rotated = Instant::now();
    let mut i: usize = 0;
    let payload = [0x5au8; 64];
    paced(cfg.udp_per_s, stop, |due| {
        if rotated.elapsed() >= cfg.udp_rotate {
            pool = udp_pool(cfg.udp_sockets)?;
            rotated = Instant::now();
        }
        for _ in 0..due {
            let port = UDP_PORTS.start + (i % UDP_PORTS.len()) as u16;
            let s = &pool[i % pool.len()];
            i = i.wrapping_add(1);
            match s.send_to(&payload, SocketAddrV4::new(EXT_IP, port)) {
                Ok(_) => {
                    counts.udp_sent.fetch_add(1, Ordering::Relaxed);
                }
                // A full socket buffer under load: the datagram is not sent, not counted.
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e).context("send a UDP datagram"),
            }
        }
        Ok(())
    })
}

/// A DNS query (RD set) for `name`, type A, class IN.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(12 + name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn dns_client(per_s: u32, stop: &AtomicBool, counts: &LoadCounts) -> Result<()> {
    let pool = udp_pool(32)?;
    let server = SocketAddrV4::new(EXT_IP, 53);
    let mut n: u32 = 0;
    let mut buf = [0u8; 1500];
    paced(per_s, stop, |due| {
        for _ in 0..due {
            let s = &pool[n as usize % pool.len()];
            let q = dns_query((n % 65536) as u16, &format!("q{n}.example.test"));
            n = n.wrapping_add(1);
            match s.send_to(&q, server) {
                Ok(_) => {
                    counts.dns_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e).context("send a DNS query"),
            }
        }
        for s in &pool {
            while s.recv(&mut buf).is_ok() {
                counts.dns_answers.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    })
}
