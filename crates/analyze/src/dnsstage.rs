//! The DNS side of the analysis: the DNS tracker, DNS-over-TCP reassembly, the UDP
//! request/response tracker and the resolver hints, fed with what the packet path saw on
//! UDP and on TCP port 53. With them, the bookkeeping of the TCP path that no packet
//! decision reads back: the address locality table (each flow side's first address and
//! TTL class), the per-destination outcomes of connection attempts, and the
//! destinations' client-first closes.
//!
//! None of the other trackers reads this state while packets come in (the detectors
//! read it in [`crate::Analyzer::finish`]), so it can run on a thread of its own
//! ([`crate::Config::dns_thread`]): the packet path then writes each piece of work into a
//! batch (the addresses, the packet number and time, and a copy of a DNS payload) and
//! hands full batches to the thread, which does what the packet path would have done, in
//! the same order. The report is the same either way.

use crate::conn_events::{ClientFin, Closes};
use crate::destinations::{Destinations, Locality};
use crate::detect::udp_receive_buffer_overflow::UdpServices;
use crate::detect::udp_receive_buffer_overflow::UdpSocketQueue;
use crate::dns::DnsTracker;
use crate::dnstcp::{self, DnsTcp};
use crate::flow::{Endpoint, FlowKey};
use crate::resolv::ResolvConf;
use crate::resolver::ResolverHints;
use crate::tcp::{TcpCold, TcpConn};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};

/// The DNS side's state.
pub(crate) struct DnsStage {
    pub(crate) dns: DnsTracker,
    pub(crate) dns_tcp: DnsTcp,
    pub(crate) udp_services: UdpServices,
    pub(crate) resolver_hints: ResolverHints,
    /// Which addresses sent with an initial TTL and which were routed (read only by the
    /// detectors, in `finish`: as good here as on the packet path, and off it).
    pub(crate) locality: Locality,
    /// What became of connection attempts, per destination.
    pub(crate) dests: Destinations,
    /// Connections their client closed first, per destination.
    pub(crate) closes: Closes,
    /// DNS messages parsed (`CaptureStats::dns_messages`).
    pub(crate) messages: u64,
    /// Port-53 payloads that are not DNS messages (`SkipKind::DnsMalformed`).
    pub(crate) malformed: u64,
}

impl DnsStage {
    pub(crate) fn new(max_txns: usize, max_clients: usize, max_destinations: usize) -> DnsStage {
        DnsStage {
            dns: DnsTracker::new(max_txns, max_clients),
            dns_tcp: DnsTcp::default(),
            udp_services: UdpServices::default(),
            resolver_hints: ResolverHints::default(),
            locality: Locality::new(crate::bounds::MAX_ADDRESSES),
            dests: Destinations::new(max_destinations),
            closes: Closes::default(),
            messages: 0,
            malformed: 0,
        }
    }

    /// A UDP datagram from `src` to `dst`; `payload` is read when `dns` (a port is 53).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn on_udp(
        &mut self,
        source: u16,
        src: Endpoint,
        dst: Endpoint,
        dns: bool,
        payload: &[u8],
        pkt: u64,
        ns: u64,
    ) {
        let mut dns_id = None;
        if dns {
            match netdiag_wire::dns::Message::parse(payload) {
                Ok(msg) => {
                    self.messages += 1;
                    dns_id = Some((msg.id(), msg.is_response()));
                    if !msg.is_response() {
                        if let Some(q) = msg.question() {
                            self.resolver_hints
                                .on_query(source, src, dst, msg.id(), q.qtype, ns);
                        }
                    }
                    self.dns.on_message(source, src, dst, &msg, pkt, ns, false);
                }
                Err(_) => self.malformed += 1,
            }
        }
        self.udp_services
            .on_datagram(source, src, dst, dns_id, pkt, ns);
    }

    /// A TCP segment from `from` to `to` on port 53: its DNS messages, reassembled
    /// (several per segment, or one across segments), go to the DNS tracker like UDP
    /// ones.
    pub(crate) fn on_tcp53(
        &mut self,
        source: u16,
        from: Endpoint,
        to: Endpoint,
        seg: &dnstcp::Segment<'_>,
        pkt: u64,
        ns: u64,
    ) {
        let (dns, messages, malformed) = (&mut self.dns, &mut self.messages, &mut self.malformed);
        self.dns_tcp.on_segment(source, from, to, seg, ns, |bytes| {
            match netdiag_wire::dns::Message::parse(bytes) {
                Ok(msg) => {
                    *messages += 1;
                    dns.on_message(source, from, to, &msg, pkt, ns, true);
                }
                Err(_) => *malformed += 1,
            }
        });
        if seg.fin_or_rst {
            self.dns.on_tcp_close(source, from, to, ns);
        }
    }

    /// What [`crate::Analyzer::progress`] and [`crate::Analyzer::tables`] read.
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            queries_sent: self.dns.stats.queries_sent,
            retry_events: self.dns.retry_events,
            fill: self.dns.fill(),
            dns_tcp_fill: self.dns_tcp.fill(),
            addresses: self.locality.len(),
            destinations: self.dests.map.len(),
            final_acks_dropped: self.dests.final_acks_dropped,
            closing: self.closes.map.len(),
            malformed: self.malformed,
        }
    }

    /// Does `w`; its payload is in `bytes`, a closed connection in `conns`, whose
    /// out-of-line state goes to `cold` for reuse.
    #[allow(clippy::vec_box)] // the boxes are allocations to reuse, not values
    fn apply(
        &mut self,
        bytes: &[u8],
        conns: &mut [(FlowKey, TcpConn)],
        cold: &mut Vec<Box<TcpCold>>,
        w: Work,
    ) {
        let payload = |(s, e): (u32, u32)| bytes.get(s as usize..e as usize).unwrap_or_default();
        match w {
            Work::Udp {
                source,
                src,
                dst,
                dns,
                payload: p,
                pkt,
                ns,
            } => self.on_udp(source, src, dst, dns, payload(p), pkt, ns),
            Work::Tcp53 {
                source,
                from,
                to,
                seq,
                syn,
                fin_or_rst,
                payload: p,
                pkt,
                ns,
            } => {
                let seg = dnstcp::Segment {
                    seq,
                    syn,
                    fin_or_rst,
                    payload: payload(p),
                };
                self.on_tcp53(source, from, to, &seg, pkt, ns);
            }
            Work::Locality { source, src, ttl } => {
                self.locality.observe(source, src, ttl);
            }
            Work::Answered { source, server, ns } => self.dests.on_answered(source, server, ns),
            Work::ClientFin { fin, pkt, ns } => self.closes.on_client_fin(&fin, pkt, ns),
            Work::ConnClosed(i) => {
                if let Some((key, conn)) = conns.get_mut(i as usize) {
                    self.dests.on_closed(key, conn);
                    cold.extend(conn.cold.take());
                }
            }
            Work::ResolvConf(rc) => self.dns.set_resolv_conf(&rc),
            Work::UdpSockets(s) => self.udp_services.set_sockets(&s),
        }
    }
}

/// What the DNS side counts that the analyzer reports while packets come in.
#[derive(Clone, Copy, Default)]
pub(crate) struct Snapshot {
    pub(crate) queries_sent: u64,
    pub(crate) retry_events: u64,
    /// [`DnsTracker::fill`].
    pub(crate) fill: (usize, usize, usize, usize),
    /// [`DnsTcp::fill`].
    pub(crate) dns_tcp_fill: (usize, usize),
    /// Addresses in the locality table.
    pub(crate) addresses: usize,
    /// Destinations held ([`Destinations`]).
    pub(crate) destinations: usize,
    /// [`Destinations::final_acks_dropped`].
    pub(crate) final_acks_dropped: u64,
    /// Destinations held by [`Closes`].
    pub(crate) closing: usize,
    pub(crate) malformed: u64,
}

/// One piece of work for the thread, in packet order.
enum Work {
    Udp {
        source: u16,
        src: Endpoint,
        dst: Endpoint,
        dns: bool,
        /// The DNS payload's place in the batch's bytes (empty when not `dns`).
        payload: (u32, u32),
        pkt: u64,
        ns: u64,
    },
    Tcp53 {
        source: u16,
        from: Endpoint,
        to: Endpoint,
        seq: u32,
        syn: bool,
        fin_or_rst: bool,
        payload: (u32, u32),
        pkt: u64,
        ns: u64,
    },
    /// A flow side's address and TTL ([`Locality::observe`]).
    Locality {
        source: u16,
        src: std::net::IpAddr,
        ttl: u8,
    },
    /// The first SYN-ACK of an attempt to `server` ([`Destinations::on_answered`]).
    Answered {
        source: u16,
        server: Endpoint,
        ns: u64,
    },
    /// [`Closes::on_client_fin`].
    ClientFin {
        fin: ClientFin,
        pkt: u64,
        ns: u64,
    },
    /// The batch's closed connection at this index ([`Destinations::on_closed`]).
    ConnClosed(u32),
    ResolvConf(Box<ResolvConf>),
    UdpSockets(Vec<UdpSocketQueue>),
}

/// Work handed over at once, and, on its way back, what the thread counted after it.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    work: Vec<Work>,
    /// Closed connections for [`Work::ConnClosed`].
    conns: Vec<(FlowKey, TcpConn)>,
    /// Their out-of-line state, on its way back for reuse.
    #[allow(clippy::vec_box)] // the boxes are allocations to reuse, not values
    cold: Vec<Box<TcpCold>>,
    snapshot: Snapshot,
}

/// A batch is handed over at this many pieces of work or payload bytes.
const BATCH_WORK: usize = 1024;
const BATCH_BYTES: usize = 64 * 1024;
/// Batches on their way to the thread, at most (more wait for room: memory is bounded).
const BATCHES_AHEAD: usize = 4;

/// Most heap bytes the batches hold at once (filling, queued, being worked on, coming
/// back), with a payload of at most 64 KiB in the last piece of each.
pub(crate) fn thread_bytes_bound() -> usize {
    use crate::bounds::vec_bytes;
    (BATCHES_AHEAD + 3)
        * (2 * BATCH_BYTES
            + 65_536
            + vec_bytes::<Work>(BATCH_WORK)
            + vec_bytes::<(FlowKey, TcpConn)>(BATCH_WORK)
            + vec_bytes::<Box<TcpCold>>(BATCH_WORK))
}

/// The DNS side on a thread of its own.
pub(crate) struct Worker {
    batch: Batch,
    to: SyncSender<Batch>,
    back: Receiver<Batch>,
    thread: std::thread::JoinHandle<Box<DnsStage>>,
    snapshot: Snapshot,
    /// Out-of-line TCP state the thread handed back, for [`Stage::reclaim_cold`].
    #[allow(clippy::vec_box)] // the boxes are allocations to reuse, not values
    cold_back: Vec<Box<TcpCold>>,
}

/// Where the DNS side runs.
pub(crate) enum Stage {
    /// In line, called from the packet path.
    Here(Box<DnsStage>),
    /// On its thread.
    Thread(Box<Worker>),
    /// Between the two (only while [`Stage::join`] takes it back).
    Gone,
}

impl Stage {
    /// The stage on a thread of its own, or in line if the thread cannot start.
    pub(crate) fn start(stage: Box<DnsStage>, thread: bool) -> Stage {
        if !thread {
            return Stage::Here(stage);
        }
        let (to, from_packets) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_AHEAD);
        let (to_packets, back) = std::sync::mpsc::channel::<Batch>();
        // The stage goes over only once the thread runs: if it cannot start, it stays.
        let (hand_over, take) = std::sync::mpsc::sync_channel::<Box<DnsStage>>(1);
        let spawned = std::thread::Builder::new()
            .name("netdiag-dns".into())
            .spawn(move || {
                let Ok(mut stage) = take.recv() else {
                    return Box::new(DnsStage::new(0, 0, 0));
                };
                while let Ok(mut b) = from_packets.recv() {
                    let bytes = std::mem::take(&mut b.bytes);
                    let mut conns = std::mem::take(&mut b.conns);
                    for w in b.work.drain(..) {
                        stage.apply(&bytes, &mut conns, &mut b.cold, w);
                    }
                    b.bytes = bytes;
                    b.bytes.clear();
                    conns.clear();
                    b.conns = conns;
                    b.snapshot = stage.snapshot();
                    // The analyzer may be gone (dropped unfinished): then so is this.
                    if to_packets.send(b).is_err() {
                        break;
                    }
                }
                stage
            });
        match spawned {
            Ok(thread) => match hand_over.send(stage) {
                Ok(()) => Stage::Thread(Box::new(Worker {
                    batch: Batch::default(),
                    to,
                    back,
                    thread,
                    snapshot: Snapshot::default(),
                    cold_back: Vec::new(),
                })),
                // The thread ended before taking it (it cannot: it waits for it first).
                Err(e) => Stage::Here(e.0),
            },
            Err(_) => Stage::Here(stage),
        }
    }

    /// A UDP datagram (see [`DnsStage::on_udp`]).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn on_udp(
        &mut self,
        source: u16,
        src: Endpoint,
        dst: Endpoint,
        dns: bool,
        payload: &[u8],
        pkt: u64,
        ns: u64,
    ) {
        match self {
            Stage::Here(s) => s.on_udp(source, src, dst, dns, payload, pkt, ns),
            Stage::Thread(w) => {
                let payload = if dns { w.copy(payload) } else { (0, 0) };
                w.push(Work::Udp {
                    source,
                    src,
                    dst,
                    dns,
                    payload,
                    pkt,
                    ns,
                });
            }
            Stage::Gone => {}
        }
    }

    /// A TCP segment on port 53 (see [`DnsStage::on_tcp53`]).
    pub(crate) fn on_tcp53(
        &mut self,
        source: u16,
        from: Endpoint,
        to: Endpoint,
        seg: &dnstcp::Segment<'_>,
        pkt: u64,
        ns: u64,
    ) {
        match self {
            Stage::Here(s) => s.on_tcp53(source, from, to, seg, pkt, ns),
            Stage::Thread(w) => {
                let payload = w.copy(seg.payload);
                w.push(Work::Tcp53 {
                    source,
                    from,
                    to,
                    seq: seg.seq,
                    syn: seg.syn,
                    fin_or_rst: seg.fin_or_rst,
                    payload,
                    pkt,
                    ns,
                });
            }
            Stage::Gone => {}
        }
    }

    /// A packet from `src` sent with `ttl` ([`Locality::observe`]), for the first packet
    /// of each flow side and TTL class: nothing reads the table until `finish`, and more
    /// packets of a side and class change nothing it reports. Whether the full table
    /// took the address is not returned: a full table stays full (entries are never
    /// removed), so asking again for the same address could only be refused again.
    #[inline]
    pub(crate) fn observe_locality(&mut self, source: u16, src: std::net::IpAddr, ttl: u8) {
        match self {
            Stage::Here(s) => {
                s.locality.observe(source, src, ttl);
            }
            Stage::Thread(w) => w.push(Work::Locality { source, src, ttl }),
            Stage::Gone => {}
        }
    }

    /// The first SYN-ACK of an attempt to `server` ([`Destinations::on_answered`]).
    #[inline]
    pub(crate) fn on_answered(&mut self, source: u16, server: Endpoint, ns: u64) {
        match self {
            Stage::Here(s) => s.dests.on_answered(source, server, ns),
            Stage::Thread(w) => w.push(Work::Answered { source, server, ns }),
            Stage::Gone => {}
        }
    }

    /// A client's first FIN ([`Closes::on_client_fin`]).
    #[inline]
    pub(crate) fn on_client_fin(&mut self, fin: ClientFin, pkt: u64, ns: u64) {
        match self {
            Stage::Here(s) => s.closes.on_client_fin(&fin, pkt, ns),
            Stage::Thread(w) => w.push(Work::ClientFin { fin, pkt, ns }),
            Stage::Gone => {}
        }
    }

    /// A connection of `key` that left the flow table and that [`Destinations::records`]:
    /// recorded ([`Destinations::on_closed`]). Its out-of-line state goes to `spare` for
    /// reuse: now in line, or from the thread through [`Stage::reclaim_cold`].
    #[allow(clippy::vec_box)] // the spares are allocations to reuse, not values
    pub(crate) fn on_conn_closed(
        &mut self,
        key: FlowKey,
        mut conn: TcpConn,
        spare: &mut Vec<Box<TcpCold>>,
    ) {
        match self {
            Stage::Here(s) => {
                s.dests.on_closed(&key, &conn);
                spare.extend(conn.cold.take());
            }
            Stage::Thread(w) => {
                let i = u32::try_from(w.batch.conns.len()).unwrap_or(u32::MAX);
                w.batch.conns.push((key, conn));
                w.push(Work::ConnClosed(i));
            }
            Stage::Gone => spare.extend(conn.cold.take()),
        }
    }

    /// Moves the out-of-line TCP state the thread is done with into `spare`.
    #[allow(clippy::vec_box)] // the spares are allocations to reuse, not values
    pub(crate) fn reclaim_cold(&mut self, spare: &mut Vec<Box<TcpCold>>) {
        if let Stage::Thread(w) = self {
            spare.append(&mut w.cold_back);
        }
    }

    /// The pod's resolv.conf, from this point of the input on.
    pub(crate) fn set_resolv_conf(&mut self, rc: &ResolvConf) {
        match self {
            Stage::Here(s) => s.dns.set_resolv_conf(rc),
            Stage::Thread(w) => w.push(Work::ResolvConf(Box::new(rc.clone()))),
            Stage::Gone => {}
        }
    }

    /// The pod's UDP sockets, from this point of the input on.
    pub(crate) fn set_udp_sockets(&mut self, sockets: &[UdpSocketQueue]) {
        match self {
            Stage::Here(s) => s.udp_services.set_sockets(sockets),
            Stage::Thread(w) => w.push(Work::UdpSockets(sockets.to_vec())),
            Stage::Gone => {}
        }
    }

    /// (queries sent, timeout retries, final ACKs dropped) for
    /// [`crate::Analyzer::progress`]: now in line, as of the last batch taken back from
    /// the thread. Three counters, not a [`Snapshot`], whose table fills walk the DNS
    /// clients.
    pub(crate) fn progress_counts(&self) -> (u64, u64, u64) {
        match self {
            Stage::Here(s) => (
                s.dns.stats.queries_sent,
                s.dns.retry_events,
                s.dests.final_acks_dropped,
            ),
            Stage::Thread(w) => (
                w.snapshot.queries_sent,
                w.snapshot.retry_events,
                w.snapshot.final_acks_dropped,
            ),
            Stage::Gone => (0, 0, 0),
        }
    }

    /// What the DNS side counted: now in line, as of the last batch taken back from the
    /// thread.
    pub(crate) fn last_snapshot(&self) -> Snapshot {
        match self {
            Stage::Here(s) => s.snapshot(),
            Stage::Thread(w) => w.snapshot,
            Stage::Gone => Snapshot::default(),
        }
    }

    /// The DNS side with all the work done, back on this thread, taken out (the stage
    /// is [`Stage::Gone`] after).
    pub(crate) fn take_joined(&mut self) -> Box<DnsStage> {
        match std::mem::replace(self, Stage::Gone) {
            Stage::Here(s) => s,
            Stage::Thread(w) => {
                let Worker {
                    batch, to, thread, ..
                } = *w;
                if !batch.work.is_empty() {
                    let _ = to.send(batch);
                }
                // The thread ends once the queue is empty and the sender gone.
                drop(to);
                match thread.join() {
                    Ok(stage) => stage,
                    // The DNS side panicked: so would it have in line.
                    Err(p) => std::panic::resume_unwind(p),
                }
            }
            Stage::Gone => Box::new(DnsStage::new(0, 0, 0)),
        }
    }

    /// The DNS side when it runs in line.
    pub(crate) fn here(&self) -> Option<&DnsStage> {
        match self {
            Stage::Here(s) => Some(s),
            Stage::Thread(_) | Stage::Gone => None,
        }
    }

    /// The same, to change.
    pub(crate) fn here_mut(&mut self) -> Option<&mut DnsStage> {
        match self {
            Stage::Here(s) => Some(s),
            Stage::Thread(_) | Stage::Gone => None,
        }
    }
}

impl Worker {
    /// Copies `payload` into the batch; its place there.
    #[inline]
    fn copy(&mut self, payload: &[u8]) -> (u32, u32) {
        let start = self.batch.bytes.len();
        self.batch.bytes.extend_from_slice(payload);
        let end = self.batch.bytes.len();
        (
            u32::try_from(start).unwrap_or(u32::MAX),
            u32::try_from(end).unwrap_or(u32::MAX),
        )
    }

    #[inline]
    fn push(&mut self, w: Work) {
        self.batch.work.push(w);
        if self.batch.work.len() >= BATCH_WORK || self.batch.bytes.len() >= BATCH_BYTES {
            self.hand_over();
        }
    }

    /// Sends the batch (waiting while `BATCHES_AHEAD` are queued) and starts the next
    /// in a returned one, if any.
    #[cold]
    fn hand_over(&mut self) {
        let next = self.recycle_one().unwrap_or_else(|| Batch {
            bytes: Vec::with_capacity(BATCH_BYTES + 1500),
            work: Vec::with_capacity(BATCH_WORK),
            conns: Vec::new(),
            cold: Vec::new(),
            snapshot: Snapshot::default(),
        });
        let full = std::mem::replace(&mut self.batch, next);
        // A closed channel: the thread is gone (it panicked); `take_joined` says so.
        let _ = self.to.send(full);
    }

    /// Takes one returned batch in (its snapshot is the latest), if one is back.
    fn recycle_one(&mut self) -> Option<Batch> {
        match self.back.try_recv() {
            Ok(mut b) => {
                self.snapshot = b.snapshot;
                b.work.clear();
                b.bytes.clear();
                b.conns.clear();
                self.cold_back.append(&mut b.cold);
                Some(b)
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn conn_with_cold() -> (FlowKey, TcpConn, usize) {
        let ip = |d| IpAddr::V4(Ipv4Addr::new(10, 0, 0, d));
        let (key, _) = FlowKey::new(0, 6, (ip(1), 40_000), (ip(2), 80));
        let cold = Box::new(TcpCold::default());
        let at = std::ptr::from_ref::<TcpCold>(&cold) as usize;
        let mut conn = TcpConn::default();
        conn.cold = Some(cold);
        (key, conn, at)
    }

    /// A closed connection's out-of-line state comes back for reuse, the same
    /// allocation, whether the stage runs in line or on its thread (where it returns
    /// with a batch): once warm, closing connections allocates nothing.
    #[test]
    fn a_closed_connections_box_comes_back_from_either_side() {
        for thread in [false, true] {
            let mut stage = Stage::start(Box::new(DnsStage::new(16, 16, 16)), thread);
            assert_eq!(matches!(stage, Stage::Thread(_)), thread);
            let (key, conn, at) = conn_with_cold();
            let mut spare = Vec::new();
            stage.on_conn_closed(key, conn, &mut spare);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while spare.is_empty() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the box never came back (thread: {thread})"
                );
                // Fills batches: each hand-over takes a returned batch (and its boxes) in.
                for _ in 0..BATCH_WORK {
                    stage.observe_locality(0, IpAddr::V4(Ipv4Addr::LOCALHOST), 64);
                }
                stage.reclaim_cold(&mut spare);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let back: Vec<usize> = spare
                .iter()
                .map(|b| std::ptr::from_ref::<TcpCold>(b) as usize)
                .collect();
            assert_eq!(back, [at], "thread: {thread}");
        }
    }
}
