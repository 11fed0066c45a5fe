//! Sans-IO diagnosis engine for Kubernetes pod networking: flow table, TCP and DNS
//! trackers, nine detectors.
//!
//! Feed it packets (timestamp + link type + bytes, as a pcap file or a live capture
//! delivers them) and, optionally, kernel counter snapshots and the pod's resolv.conf;
//! [`Analyzer::finish`] returns a [`Report`] whose [`Finding`]s say what is wrong, how sure
//! we are, which packets and counters show it, and what to do. It reads no clock, no file
//! and no socket: the same bytes always give the same report.
//!
//! ```
//! use netdiag_analyze::{Analyzer, Config, Kind};
//!
//! let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/dns_ndots/pod.pcap");
//! let mut reader = netdiag_pcapio::Reader::open(path)?;
//! let mut analyzer = Analyzer::new(Config::default());
//! while let Some(p) = reader.next_packet()? {
//!     analyzer.feed(p.timestamp_ns, p.link_type, p.data);
//! }
//! let report = analyzer.finish();
//! for f in &report.findings {
//!     println!("{} ({}): {}\n  fix: {}", f.kind, f.confidence, f.summary, f.remedy);
//! }
//! assert_eq!(report.kinds(), [Kind::DnsNdotsAmplification]);
//! # Ok::<(), netdiag_pcapio::Error>(())
//! ```
//!
//! # What maps to what
//!
//! | module | what it is | the tool people know |
//! |---|---|---|
//! | [`flow`](crate) (private) | bounded bidirectional flow table, LRU + idle eviction | `conntrack -L` |
//! | `tcp` | handshake, seq/ack/window (scaled), retransmissions, RST origin | `tcpdump` `[S]`, `[S.]`, `[R]` |
//! | `dns` | transactions (ID + 5-tuple), logical lookups, search expansions | `tcpdump port 53`, `dig` |
//! | `detect::*` | the five detectors of DETECTION.md, the four of `docs/DETECTION.md` and the two of `docs/detectors-resolver-udp-mtu.md` | `nstat`, `conntrack -S`, `ss -lnt`, `ss -tano` |
//! | `conn_events` | who closed first, SYNs answered by RST, silences then RST | `tcpdump` `[F.]`, `[R.]` |
//! | [`Counters`], [`SocketGroup`] | counter snapshots (pod and node netns), the pod's sockets per peer | `nstat -a`, `conntrack -S`, `ss -lnt`, `ss -tan` |
//! | [`ResolvConf`] | the pod's resolver settings | `cat /etc/resolv.conf` |
//! | [`Resolver`] | glibc or musl: whose rules and remedies apply (`docs/detectors-resolver-udp-mtu.md`) | `readelf -l` on the container's program |
//! | [`UdpSocketQueue`] | a UDP socket's queue, buffer and drops | `ss -uamn` |
//!
//! # Confidence
//!
//! `possible` < `likely` < `confirmed`, as DETECTION.md defines them: `confirmed` when
//! kernel counters prove it (pod `TcpExt.ListenOverflows` for accept-queue overflow, node
//! `conntrack.insert_failed`/`drop` for SNAT and the lost DNS reply, node
//! `conntrack.invalid` for INVALID resets; for ndots, the pod's resolv.conf explaining
//! every expansion; node `nf_conntrack_count` at its max with `drop` rising for a full
//! table; the pod's sockets holding its whole port range towards one destination; no
//! LISTEN socket or the pod's `Tcp.AttemptFails` for refused connections; `TCPReqQFull*`
//! for the SYN queue; the node's conntrack established timeout below a silence that
//! ended in a reset), `likely` when the packets alone are strong, `possible` when they are
//! consistent but something else could explain them — the finding then names that
//! alternative and what would settle it.
//!
//! # Memory
//!
//! Every table is capped ([`Config`]): flows (`max_flows`, about
//! [`Config::bytes_per_flow`] bytes each, UDP flows less), DNS transactions, DNS clients, destinations.
//! Past a cap the least recently seen flow is closed out into the detectors (counted in
//! [`CaptureStats::flows_evicted_full`]); flows idle longer than `flow_idle_timeout_ns`
//! of packet time are closed too. The per-packet path does not allocate once the tables
//! are warm (new flows reuse freed slots; a new DNS lookup stores its name).
//!
//! The bound: an analyzer never holds more than [`Config::memory_bound_bytes`] of heap,
//! whatever it is fed: every table full and every entry at its largest, about 1.5 GiB
//! with [`Config::default`] — a worst case, of which ~850 MiB are the UDP detector's
//! per-server 100 ms windows (1 024 servers × 16 384 windows); the hostile mix of
//! `tests/tests/analyze_bounded.rs` — 1M flows, 1M DNS names, endless streams — peaks at
//! about 320 MiB. Lower the caps to lower it. [`Analyzer::tables`] shows how full each
//! table is:
//!
//! | table | cap | past the cap |
//! |---|---|---|
//! | flows | `max_flows` | least recently seen flow closed out |
//! | DNS transactions | `max_dns_transactions` | stale ones pruned, else the query is counted in `skipped`, not tracked |
//! | DNS client sockets (A/AAAA pairing) | `max_dns_transactions` | emptied |
//! | DNS clients, 8 open lookups each | `max_dns_clients` | the least recently active client's lookups closed; a client's oldest lookup closed |
//! | destinations `ip:port` | `max_destinations` | outcome counted in `skipped`, not tracked |
//! | source addresses (local or routed) | 8 192 | not tracked |
//! | servers in `unanswered_syns` | 1 024 | not named |
//! | evidence examples, latencies, search suffixes | 32, 262 144, 64 | counted, not stored |
//! | destinations closed client-first, refusing destinations | 16 384 each | counted, not tracked |
//! | open connections left the table (dormant), resumed awaiting an answer | 8 192, 1 024 | not remembered |
//!
//! # JSON schema (`schema_version` 1)
//!
//! [`Report`] serializes with serde to:
//!
//! ```text
//! {
//!   "schema_version": 1,
//!   "findings": [ {
//!       "kind": "conntrack_invalid" | "accept_queue_overflow" | "snat_port_exhaustion"
//!             | "dns_ndots_amplification" | "dns_lost_reply_timeout"
//!             | "conntrack_table_full" | "ephemeral_port_exhaustion"
//!             | "connection_refused" | "nat_idle_timeout"
//!             | "udp_receive_buffer_overflow" | "path_mtu_blackhole",
//!       "confidence": "possible" | "likely" | "confirmed",
//!       "summary": str, "flows": [str], "names": [str],
//!       "listeners": [ {"addr": str, "port": u16, "queued": u32|null, "backlog": u32|null} ],
//!       "evidence": {
//!         "packets": [ {"source": u16, "number": u64, "role": str} ], "packets_total": u64,
//!         "counters": [ {"netns": "pod"|"node", "key": str, "before": u64, "after": u64} ],
//!         "timings": [ {"what": str, "millis": [f64]} ], "notes": [str] },
//!       "remedy": str, "alternative": str|null } ],
//!   "sources": [ {"name": str, "packets": u64} ],
//!   "capture": { "packets", "bytes", "first_ns", "last_ns", "tcp_packets", "udp_packets",
//!                "dns_messages", "flows", "flows_evicted_full", "flows_evicted_idle",
//!                "flows_peak", "flow_cap" },
//!   "tcp": { "connections", "handshakes", "syn_retransmissions", "retransmissions",
//!            "unanswered_syns": {"ip:port": n}, "resets_by_origin": {"client"|"server"|"unknown": n},
//!            "resets_by_answer": {"syn"|"data"|"out_of_window"|"fin"|"ack"|"rst"|"none": n} },
//!   "dns": { "queries_sent", "responses", "nxdomain", "nxdomain_share", "logical_lookups",
//!            "expanded_lookups", "amplification_factor", "retries", "unanswered",
//!            "latency_p50_ms", "latency_p99_ms", "search_suffixes": [str],
//!            "search_from_resolv_conf": bool },
//!   "resolv_conf": null | { "nameservers", "search", "ndots", "timeout_s", "attempts",
//!                           "single_request", "single_request_reopen", "use_vc" },
//!   "resolver": null | { "library": "glibc"|"musl"|"unknown", "source": "elf"|"packets"|"given",
//!                        "detail": str, "nsswitch_conf": bool|null },
//!   "counters_used": ["pod"|"node"],
//!   "skipped": [ {"what": str, "why": str, "count": u64} ],
//!   "limits": [str]
//! }
//! ```
//! Findings are sorted most confident first, then by kind. Fields are only added in
//! later versions; a rename or removal bumps `schema_version`.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod bounds;
mod conn_events;
mod counters;
mod destinations;
mod detect;
mod dns;
mod dnsstage;
mod dnstcp;
mod error;
mod flow;
mod model;
mod overlay;
mod resolv;
mod resolver;
mod tcp;
#[cfg(test)]
mod testutil;
pub mod watch;

pub use bounds::{TableFill, Tables};
pub use counters::{Counters, ListenerQueue, Moment, NetnsRole, SocketGroup, SocketSide};
pub use detect::udp_receive_buffer_overflow::UdpSocketQueue;
pub use error::Error;
pub use model::{
    CaptureStats, Confidence, CounterDelta, DnsStats, Evidence, EvidencePacket, Finding, Kind,
    ListenerRef, PacketRef, Progress, Report, SCHEMA_VERSION, Skipped, SourceInfo, TcpStats,
    Timing,
};
pub use resolv::ResolvConf;
pub use resolver::{Resolver, ResolverLibrary, ResolverSource};

use counters::CounterBook;
use destinations::{Destinations, Locality};
use detect::conntrack_invalid::ConntrackInvalid;
use flow::{DenseKey, FlowKey, FlowTable, FxMap};
use netdiag_wire::{Frame, LinkType, Net, StopReason, Transport};
use std::collections::BTreeMap;
use tcp::{RstOrigin, SegKind, TcpConn};

/// Limits and knobs. [`Config::default`] suits a node-side live capture and most files.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Most flows (TCP + UDP) held at once. Default 131 072: at most about 33 MiB at
    /// [`Config::bytes_per_flow`] (≈ 264 bytes for a TCP flow: an 84-byte slot with its
    /// two index buckets, plus 180 bytes of TCP state of both directions, the first SYN's
    /// timing and evidence packet numbers, in a slab of their own; a UDP flow costs only
    /// the slot. SYN retransmissions, late SYN-ACKs and out-of-window segments take a
    /// 232-byte box on the side).
    pub max_flows: usize,
    /// A flow with no packet for this long (packet time) is closed. Default 300 s.
    pub flow_idle_timeout_ns: u64,
    /// Most DNS transactions tracked at once. Default 65 536.
    pub max_dns_transactions: usize,
    /// Most DNS clients (addresses) with open lookups. Default 4 096.
    pub max_dns_clients: usize,
    /// Most destinations (`ip:port`) with connection-attempt statistics. Default 65 536.
    pub max_destinations: usize,
    /// Most evidence packets listed per finding. Default 64.
    pub max_evidence_packets: usize,
    /// Run the DNS side of the analysis (the DNS tracker, DNS-over-TCP reassembly, the
    /// UDP request/response tracker) and the TCP bookkeeping that no packet decision
    /// reads back (address locality, per-destination attempts, client-first closes) on a
    /// thread of its own, fed in batches: the report is the same, the packet path does
    /// less. While packets come in, [`Analyzer::progress`] and [`Analyzer::tables`] then
    /// give those counts as of the last batch the thread finished. Default off; `analyze`
    /// of capture files turns it on. If the thread cannot start, it all runs in line.
    pub dns_thread: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_flows: 131_072,
            flow_idle_timeout_ns: 300_000_000_000,
            max_dns_transactions: 65_536,
            max_dns_clients: 4_096,
            max_destinations: 65_536,
            max_evidence_packets: 64,
            dns_thread: false,
        }
    }
}

impl Config {
    /// Sets [`Config::max_flows`].
    pub fn with_max_flows(mut self, n: usize) -> Self {
        self.max_flows = n;
        self
    }

    /// Sets [`Config::dns_thread`].
    pub fn with_dns_thread(mut self, on: bool) -> Self {
        self.dns_thread = on;
        self
    }

    /// Sets [`Config::flow_idle_timeout_ns`].
    pub fn with_flow_idle_timeout_ns(mut self, ns: u64) -> Self {
        self.flow_idle_timeout_ns = ns;
        self
    }

    /// Approximate bytes one TCP flow costs in the table (slot, index entries, TCP
    /// state); a UDP flow costs the slot and index entries only.
    pub fn bytes_per_flow() -> usize {
        FlowTable::<Flow>::bytes_per_flow() + Conns::bytes_per_conn()
    }

    /// Checks the limits make sense.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_flows == 0 {
            return Err(Error::InvalidConfig {
                field: "max_flows",
                why: "must be at least 1",
            });
        }
        if self.max_flows > u32::MAX as usize - 1 {
            return Err(Error::InvalidConfig {
                field: "max_flows",
                why: "must fit the 32-bit slot index",
            });
        }
        if self.flow_idle_timeout_ns == 0 {
            return Err(Error::InvalidConfig {
                field: "flow_idle_timeout_ns",
                why: "must be positive",
            });
        }
        Ok(())
    }
}

/// One flow's state in the table: where its TCP state is, if it carries TCP. The
/// [`TcpConn`] lives in [`Conns`], not in the slot, so a UDP flow's slot is 64 bytes
/// instead of 240 (on a mixed capture, about half the flows are DNS over UDP).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flow {
    /// A TCP flow: the index into [`Conns`], or [`Conns::NONE`] (not yet seen).
    /// A UDP flow (it has no TCP state): [`Conns::NONE`] with the bits of
    /// [`Flow::udp_seen`] cleared, so that the slot stays 64 bytes.
    conn: u32,
}

impl Default for Flow {
    fn default() -> Self {
        Flow { conn: Conns::NONE }
    }
}

impl Flow {
    /// The (side, TTL class) bits ([`Locality::class_bit`]) of a UDP flow already handed
    /// to the address locality table: their later packets skip it, as a TCP
    /// connection's do (`TcpConn::locality_seen`).
    #[inline]
    fn udp_seen(self) -> u8 {
        (!self.conn & 0xf) as u8
    }

    /// Marks a UDP flow's class bit as counted.
    #[inline]
    fn mark_udp_seen(&mut self, bit: u8) {
        self.conn &= !u32::from(bit & 0xf);
    }
}

/// The TCP state of the flows that carry TCP, in a slab of its own: at most one entry
/// per flow in the table, freed (and reused) when the flow leaves it.
#[derive(Default)]
pub(crate) struct Conns {
    slots: Vec<TcpConn>,
    free: Vec<u32>,
}

impl Conns {
    /// "No TCP state".
    pub(crate) const NONE: u32 = u32::MAX;

    /// A fresh (default) entry's index.
    fn alloc(&mut self) -> u32 {
        match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(TcpConn::default());
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn get(&self, i: u32) -> Option<&TcpConn> {
        self.slots.get(i as usize)
    }

    /// Takes entry `i`'s state and frees the entry (which stays default until reused).
    fn take(&mut self, i: u32) -> Option<TcpConn> {
        let c = std::mem::take(self.slots.get_mut(i as usize)?);
        self.free.push(i);
        Some(c)
    }

    fn allocated_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<TcpConn>()
            + self.free.capacity() * std::mem::size_of::<u32>()
    }

    /// Approximate bytes one entry costs (the state and a free-list entry).
    fn bytes_per_conn() -> usize {
        std::mem::size_of::<TcpConn>() + std::mem::size_of::<u32>()
    }

    /// Most heap bytes a slab of `cap` entries holds.
    pub(crate) fn bytes_bound(cap: usize) -> usize {
        bounds::vec_bytes::<TcpConn>(cap) + bounds::vec_bytes::<u32>(cap)
    }
}

/// Skip categories, counted without allocating per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum SkipKind {
    LinkType(u32),
    NotIp,
    Truncated(&'static str),
    Malformed(&'static str),
    UnsupportedProto(&'static str),
    Fragment,
    DnsMalformed,
}

/// The analyzer. See the crate docs.
pub struct Analyzer {
    config: Config,
    flows: FlowTable<Flow>,
    conns: Conns,
    closed: Vec<(FlowKey, TcpConn)>,
    /// Out-of-line TCP state of closed connections, for reuse.
    #[allow(clippy::vec_box)] // allocations to reuse, not values
    tcp_spare: Vec<Box<tcp::TcpCold>>,
    /// The DNS tracker, DNS-over-TCP reassembly, the UDP services, the resolver hints,
    /// and the TCP path's write-only bookkeeping (address locality, destinations,
    /// client-first closes): in line or on a thread of their own ([`Config::dns_thread`]).
    dns_stage: dnsstage::Stage,
    overlay: overlay::Overlay,
    invalid: ConntrackInvalid,
    conn_events: conn_events::ConnEvents,
    counters: CounterBook,
    resolv: Option<ResolvConf>,
    resolver: Option<Resolver>,
    pmtu: detect::path_mtu_blackhole::PmtuTracker,
    capture: CaptureStats,
    tcp: TcpStats,
    rst_origin: [u64; 3],
    rst_answer: [u64; 8],
    sources: Vec<SourceInfo>,
    source: u16,
    last_expire_ns: u64,
    skipped: FxMap<SkipKind, u64>,
    stray_scans: u32,
}

/// A flow left the table: its TCP state, if any, goes to `closed` for
/// [`Analyzer::close_out`] and its slab entry is freed.
fn close_flow(conns: &mut Conns, closed: &mut Vec<(FlowKey, TcpConn)>, key: FlowKey, flow: Flow) {
    // Only a TCP flow's value is an index (a UDP flow's holds its locality bits).
    if key.protocol == 6 && flow.conn != Conns::NONE {
        if let Some(c) = conns.take(flow.conn) {
            closed.push((key, c));
        }
    }
}

/// Most flow-table scans for the Service variant of conntrack INVALID.
const MAX_STRAY_SCANS: u32 = 4096;

const EXPIRE_EVERY_NS: u64 = 1_000_000_000;

fn layer_name(l: netdiag_wire::Layer) -> &'static str {
    use netdiag_wire::Layer;
    match l {
        Layer::Link => "link",
        Layer::Vlan => "vlan",
        Layer::Ipv4 => "ipv4",
        Layer::Ipv6 => "ipv6",
        Layer::Ipv6Ext => "ipv6 extension",
        Layer::Tcp => "tcp",
        Layer::Udp => "udp",
        Layer::Icmp => "icmp",
        Layer::Dns => "dns",
        _ => "other",
    }
}

fn seg_kind_idx(k: SegKind) -> usize {
    match k {
        SegKind::None => 0,
        SegKind::Syn => 1,
        SegKind::Data => 2,
        SegKind::Fin => 3,
        SegKind::Ack => 4,
        SegKind::Rst => 5,
        SegKind::OutOfWindow => 6,
    }
}

const SEG_KINDS: [SegKind; 7] = [
    SegKind::None,
    SegKind::Syn,
    SegKind::Data,
    SegKind::Fin,
    SegKind::Ack,
    SegKind::Rst,
    SegKind::OutOfWindow,
];

impl Analyzer {
    /// A new analyzer. An invalid config is replaced by its nearest valid values
    /// (a zero cap becomes 1); use [`Analyzer::try_new`] to be told instead.
    pub fn new(config: Config) -> Analyzer {
        let mut config = config;
        config.max_flows = config.max_flows.clamp(1, u32::MAX as usize - 1);
        config.flow_idle_timeout_ns = config.flow_idle_timeout_ns.max(1);
        Analyzer {
            flows: FlowTable::new(config.max_flows, config.flow_idle_timeout_ns),
            conns: Conns::default(),
            closed: Vec::new(),
            tcp_spare: Vec::new(),
            dns_stage: dnsstage::Stage::start(
                Box::new(dnsstage::DnsStage::new(
                    config.max_dns_transactions,
                    config.max_dns_clients,
                    config.max_destinations,
                )),
                config.dns_thread,
            ),
            overlay: overlay::Overlay::default(),
            invalid: ConntrackInvalid::default(),
            conn_events: conn_events::ConnEvents::default(),
            counters: CounterBook::default(),
            resolv: None,
            resolver: None,
            pmtu: Default::default(),
            capture: CaptureStats {
                flow_cap: config.max_flows as u64,
                ..CaptureStats::default()
            },
            tcp: TcpStats::default(),
            rst_origin: [0; 3],
            rst_answer: [0; 8],
            sources: Vec::new(),
            source: 0,
            last_expire_ns: 0,
            skipped: FxMap::default(),
            stray_scans: 0,
            config,
        }
    }

    /// A new analyzer, refusing an invalid config.
    pub fn try_new(config: Config) -> Result<Analyzer, Error> {
        config.validate()?;
        Ok(Analyzer::new(config))
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts a new input source (a file, an interface) and makes it the one [`feed`]
    /// feeds. Packet numbers count from 1 per source and flows of different sources never
    /// merge (the same connection seen at two capture points is two flows). Returns the
    /// source index used in [`PacketRef`]. Feeding without any source opens one named
    /// `"input"`.
    ///
    /// [`feed`]: Analyzer::feed
    pub fn begin_source(&mut self, name: impl Into<String>) -> u16 {
        self.source = self.add_source(name);
        self.source
    }

    /// Adds an input source without switching [`feed`] to it: for capture points read
    /// concurrently, whose packets are fed as they arrive with [`feed_from`]. Returns its
    /// index (at most `u16::MAX` sources; later ones share the last index).
    ///
    /// [`feed`]: Analyzer::feed
    /// [`feed_from`]: Analyzer::feed_from
    pub fn add_source(&mut self, name: impl Into<String>) -> u16 {
        if self.sources.len() <= usize::from(u16::MAX) {
            self.sources.push(SourceInfo {
                name: name.into(),
                packets: 0,
            });
        }
        (self.sources.len() - 1).min(usize::from(u16::MAX)) as u16
    }

    /// Gives the pod's resolv.conf (text).
    pub fn set_resolv_conf(&mut self, text: &str) {
        let rc = ResolvConf::parse(text);
        self.dns_stage.set_resolv_conf(&rc);
        self.resolv = Some(rc);
    }

    /// Gives the pod's resolver library: live from the ELF interpreter of the container's
    /// process (`netdiag_netns::resolver_identity`), or as the user states it. Without it
    /// the analyzer infers the library from the query pattern where it can. The DNS
    /// findings follow that library's rules and remedies.
    pub fn set_resolver(&mut self, resolver: Resolver) {
        self.resolver = Some(resolver);
    }

    /// Gives the UDP sockets of a netns (sock_diag, ≈ `ss -lnum`): the receive queue and
    /// buffer size of a local UDP server named by `udp_receive_buffer_overflow`. Only the
    /// pod's are used; the latest call wins.
    pub fn observe_udp_sockets(&mut self, role: NetnsRole, sockets: &[UdpSocketQueue]) {
        if role == NetnsRole::Pod {
            self.dns_stage.set_udp_sockets(sockets);
        }
    }

    /// Gives the MTU of the pod's interface (live: `ip link`), stated by
    /// `path_mtu_blackhole` and used to recognise captures taken with segmentation offload.
    pub fn set_interface_mtu(&mut self, interface: &str, mtu: u32) {
        self.pmtu.set_interface_mtu(interface, mtu);
    }

    /// Gives a counter snapshot of the pod or node netns, taken before or after.
    pub fn observe_counters(&mut self, role: NetnsRole, moment: Moment, counters: &Counters) {
        self.counters.set(role, moment, counters);
    }

    /// A cheap summary for a progress line: counts of the events detectors look at, by
    /// name. None of them is a finding yet: a finding exists only in [`Analyzer::finish`]'s
    /// report, once every detector has weighed all the evidence and the counters.
    pub fn progress(&self) -> Progress {
        let (dns_queries, dns_retries, final_acks_dropped) = self.dns_stage.progress_counts();
        Progress {
            packets: self.capture.packets,
            flows: self.flows.len() as u64,
            out_of_window_segments: self.invalid.count,
            final_acks_dropped,
            syn_retransmissions: self.tcp.syn_retransmissions,
            dns_queries,
            dns_retries,
        }
    }

    /// Bytes currently allocated by the flow table (for memory tests and `--stats`).
    pub fn flow_table_bytes(&self) -> usize {
        self.flows.allocated_bytes() + self.conns.allocated_bytes()
    }

    /// Flows currently held.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    #[cold]
    fn skip(&mut self, k: SkipKind) {
        *self.skipped.entry(k).or_insert(0) += 1;
    }

    /// Feeds one packet: its capture timestamp (ns since the epoch), the pcap
    /// `LINKTYPE_*` of its interface, and the captured bytes. Packets are numbered from 1
    /// in feed order within the current source, like Wireshark's `frame.number`.
    pub fn feed(&mut self, timestamp_ns: u64, link_type: u32, bytes: &[u8]) {
        if self.sources.is_empty() {
            self.begin_source("input");
        }
        self.feed_from(self.source, timestamp_ns, link_type, bytes);
    }

    /// Feeds one packet of source `source` (an index from [`Analyzer::add_source`] or
    /// [`Analyzer::begin_source`]; an unknown index counts as the last source), as
    /// [`Analyzer::feed`] does. Packets of several sources may be interleaved in any order:
    /// each source numbers its own packets.
    pub fn feed_from(&mut self, source: u16, timestamp_ns: u64, link_type: u32, bytes: &[u8]) {
        if self.sources.is_empty() {
            self.begin_source("input");
        }
        let last = (self.sources.len() - 1).min(usize::from(u16::MAX)) as u16;
        self.source = source.min(last);
        let pkt = match self.sources.get_mut(usize::from(self.source)) {
            Some(s) => {
                s.packets += 1;
                s.packets
            }
            None => 0,
        };
        let c = &mut self.capture;
        c.packets += 1;
        c.bytes += bytes.len() as u64;
        c.first_ns = Some(c.first_ns.map_or(timestamp_ns, |f| f.min(timestamp_ns)));
        c.last_ns = Some(c.last_ns.map_or(timestamp_ns, |l| l.max(timestamp_ns)));

        if timestamp_ns.saturating_sub(self.last_expire_ns) >= EXPIRE_EVERY_NS {
            self.last_expire_ns = timestamp_ns;
            let (closed, conns) = (&mut self.closed, &mut self.conns);
            self.flows
                .expire(timestamp_ns, |k, v, _| close_flow(conns, closed, k, v));
            self.close_out();
        }

        let link = LinkType::from_linktype(link_type);
        if !link.is_supported() {
            // The 16 bits that name a link type: at most 65 536 kinds, whatever the caller passes.
            self.skip(SkipKind::LinkType(link.linktype()));
            return;
        }
        let mut frame = Frame::parse(link, bytes);
        // Overlay traffic is analyzed by the packet inside the tunnel (the pod's).
        let mut tunnel = None;
        if frame.tunnel.is_some() {
            (frame, tunnel) = frame.innermost();
        }
        if frame.net.and_then(|n| n.protocol()) == Some(netdiag_wire::ip::protocol::ESP) {
            self.overlay.esp += 1;
        }
        let Some(transport) = frame.transport else {
            let kind = match (&frame.net, frame.stop) {
                (Some(Net::Arp | Net::Other { .. }), _) => SkipKind::NotIp,
                (_, Some(stop)) => match stop.reason {
                    StopReason::Truncated { .. } => SkipKind::Truncated(layer_name(stop.layer)),
                    StopReason::Malformed(_) => SkipKind::Malformed(layer_name(stop.layer)),
                    StopReason::Fragment => SkipKind::Fragment,
                    _ => SkipKind::UnsupportedProto(layer_name(stop.layer)),
                },
                _ => SkipKind::NotIp,
            };
            self.skip(kind);
            return;
        };
        let Some(net) = frame.net else { return };
        let (Some(src), Some(dst)) = (net.src(), net.dst()) else {
            return;
        };
        let (ttl, df) = match net {
            Net::Ipv4(i) => (i.ttl, i.dont_fragment),
            Net::Ipv6(i) => (i.hop_limit, true),
            _ => (0, false),
        };
        if let Some(t) = &tunnel {
            self.overlay.observe(self.source, t, src, dst);
        }
        match transport {
            Transport::Tcp(seg) => {
                self.capture.tcp_packets += 1;
                let (key, side) =
                    FlowKey::new(self.source, 6, (src, seg.src_port), (dst, seg.dst_port));
                // One hash for the flow table and the path-MTU tracker.
                let hash = key.dense_hash();
                self.on_tcp(key, hash, side, src, ttl, &seg, pkt, timestamp_ns);
                self.pmtu.on_segment(
                    &key,
                    hash,
                    side,
                    &detect::path_mtu_blackhole::Seg {
                        syn: seg.flags.syn(),
                        ack: seg.flags.ack().then_some(seg.ack),
                        seq: seg.seq,
                        len: seg.payload_len,
                        wire_len: bytes.len() as u32,
                        df,
                        // Read only from a SYN (the option walk is not free).
                        mss: if seg.flags.syn() {
                            seg.options.mss()
                        } else {
                            None
                        },
                    },
                    pkt,
                    timestamp_ns,
                );
                if seg.src_port == 53 || seg.dst_port == 53 {
                    self.on_dns_tcp(src, dst, &seg, pkt, timestamp_ns);
                }
            }
            Transport::Udp(d) => {
                self.capture.udp_packets += 1;
                if d.src_port == overlay::WIREGUARD_PORT || d.dst_port == overlay::WIREGUARD_PORT {
                    self.overlay.wireguard += 1;
                }
                let (key, side) =
                    FlowKey::new(self.source, 17, (src, d.src_port), (dst, d.dst_port));
                let (closed, conns) = (&mut self.closed, &mut self.conns);
                let (flow, created) = self
                    .flows
                    .get_or_insert(key, timestamp_ns, |k, v, _| close_flow(conns, closed, k, v));
                if created {
                    self.capture.flows += 1;
                }
                // As for TCP: one locality observation per flow side and TTL class, not one
                // per datagram (only whether a count is zero is read).
                let bit = Locality::class_bit(side.idx(), ttl);
                if flow.udp_seen() & bit == 0 {
                    self.dns_stage.observe_locality(self.source, src, ttl);
                    flow.mark_udp_seen(bit);
                }
                self.dns_stage.on_udp(
                    self.source,
                    (src, d.src_port),
                    (dst, d.dst_port),
                    d.src_port == 53 || d.dst_port == 53,
                    d.payload,
                    pkt,
                    timestamp_ns,
                );
                self.close_out();
            }
            Transport::Icmp(m) => {
                let too_big = if m.v6 {
                    m.icmp_type == netdiag_wire::icmp::v6_type::PACKET_TOO_BIG
                } else {
                    m.icmp_type == netdiag_wire::icmp::v4_type::DEST_UNREACHABLE && m.code == 4
                };
                if too_big {
                    if let Some(o) = m.original {
                        if let (6, Some(sp), Some(dp)) = (o.protocol, o.src_port, o.dst_port) {
                            let mtu = if m.v6 {
                                m.rest_of_header
                            } else {
                                m.rest_of_header & 0xffff
                            };
                            self.pmtu
                                .on_too_big(self.source, (o.src, sp), (o.dst, dp), mtu, pkt);
                        }
                    }
                }
            }
        }
    }

    /// A TCP segment on port 53: its DNS messages, reassembled (several per segment, or
    /// one across segments), go to the DNS tracker like UDP ones. Out of line: DNS over
    /// TCP is rare, and in line it cost the per-segment path its inlining of the TCP
    /// state machine.
    #[inline(never)]
    fn on_dns_tcp(
        &mut self,
        src: std::net::IpAddr,
        dst: std::net::IpAddr,
        seg: &netdiag_wire::TcpSegment<'_>,
        pkt: u64,
        ns: u64,
    ) {
        let s = dnstcp::Segment {
            seq: seg.seq,
            syn: seg.flags.syn(),
            fin_or_rst: seg.flags.fin() || seg.flags.rst(),
            payload: seg.payload,
        };
        let (from, to) = ((src, seg.src_port), (dst, seg.dst_port));
        self.dns_stage.on_tcp53(self.source, from, to, &s, pkt, ns);
    }

    /// A TCP segment of flow `key` (filed under `hash`) from its side `side`, whose
    /// address `src` sent it with `ttl`: the flow, its connection state, and the sender's
    /// address locality.
    #[allow(clippy::too_many_arguments)]
    fn on_tcp(
        &mut self,
        key: FlowKey,
        hash: u32,
        side: flow::Side,
        src: std::net::IpAddr,
        ttl: u8,
        seg: &netdiag_wire::TcpSegment<'_>,
        pkt: u64,
        ns: u64,
    ) {
        let (closed, conns) = (&mut self.closed, &mut self.conns);
        let (flow, created) = self
            .flows
            .get_or_insert_hashed(key, hash, ns, |k, v, _| close_flow(conns, closed, k, v));
        if created {
            self.capture.flows += 1;
        }
        if flow.conn == Conns::NONE {
            flow.conn = conns.alloc();
        }
        let Some(tcp) = conns.slots.get_mut(flow.conn as usize) else {
            self.dns_stage.observe_locality(self.source, src, ttl);
            return;
        };
        if tcp.is_new_attempt(side, seg) {
            closed.push((key, std::mem::take(tcp)));
        }
        // Once the locality table has this side's address in this TTL class, more
        // packets of it change nothing it reports (only whether a count is zero is
        // read): one piece of work per connection side, not one per packet.
        let bit = Locality::class_bit(side.idx(), ttl);
        if tcp.locality_seen & bit == 0 {
            self.dns_stage.observe_locality(self.source, src, ttl);
            tcp.locality_seen |= bit;
        }
        let before = conn_events::ConnEvents::before(tcp);
        let out = tcp.on_segment(side, seg, pkt, ns, &mut self.tcp_spare);
        if let Some(fin) = conn_events::ConnEvents::client_fin(&key, side, seg, tcp, before) {
            self.dns_stage.on_client_fin(fin, pkt, ns);
        }
        self.conn_events
            .after(key, side, seg, tcp, before, &out, pkt, ns, created);
        let client = tcp.client;
        if out.opened {
            self.tcp.connections += 1;
        }
        if out.syn_retransmitted {
            self.tcp.syn_retransmissions += 1;
        }
        if out.completed {
            self.tcp.handshakes += 1;
        }
        if out.retransmission {
            self.tcp.retransmissions += 1;
        }
        if out.answered {
            if let Some(c) = client {
                self.dns_stage
                    .on_answered(self.source, key.endpoint(c.other()), ns);
            }
        }
        if let Some((origin, answered)) = out.rst {
            let o = match origin {
                RstOrigin::Client => 0,
                RstOrigin::Server => 1,
                RstOrigin::Unknown => 2,
            };
            self.rst_origin[o] += 1;
            self.rst_answer[seg_kind_idx(answered)] += 1;
            if out.invalid.is_none() && tcp.peer_rst_after_invalid() == Some(pkt) {
                self.invalid.on_peer_rst(key, pkt);
            } else if out.invalid.is_none()
                && answered == SegKind::Data
                && tcp.established
                && tcp.resets == 1
            {
                self.invalid.on_reset_of_data(key, pkt, side);
            }
        }
        if let Some(ev) = out.invalid {
            self.invalid.on_event(key, ev);
        }
        if let Some(ev) = out.stray_rst {
            self.match_stray(key, ev);
        }
        self.close_out();
    }

    /// A RST answered the first, mid-stream segment of an unknown flow. If the local end
    /// has a live connection to someone else whose next SEQ is exactly that segment's ACK,
    /// the segment belonged to that connection but arrived with the backend's address:
    /// conntrack marked it INVALID and skipped reverse NAT (DETECTION.md §1, Service
    /// variant). The scan is bounded: this pattern is rare and checked at most
    /// `MAX_STRAY_SCANS` times.
    fn match_stray(&mut self, key: FlowKey, ev: tcp::InvalidEvent) {
        if self.stray_scans >= MAX_STRAY_SCANS {
            return;
        }
        self.stray_scans += 1;
        let local = key.endpoint(ev.rst_from);
        let conns = &self.conns;
        let found = self.flows.iter().find_map(|(k, flow)| {
            if *k == key || k.protocol != 6 || k.source != key.source {
                return None;
            }
            let side = if k.a == local {
                flow::Side::A
            } else if k.b == local {
                flow::Side::B
            } else {
                return None;
            };
            let tcp = conns.get(flow.conn)?;
            let h = &tcp.half[side.idx()];
            (tcp.established && h.seen && h.next_seq == ev.suspect.ack)
                .then(|| k.endpoint(side.other()))
        });
        if let Some(vip) = found {
            self.invalid.on_unnatted(key, ev, vip);
        }
    }

    /// Hands flows that left the table to the detectors (called after every packet;
    /// nearly always there are none).
    #[inline]
    fn close_out(&mut self) {
        if !self.closed.is_empty() {
            self.close_out_all();
        }
    }

    fn close_out_all(&mut self) {
        self.dns_stage.reclaim_cold(&mut self.tcp_spare);
        for (key, mut conn) in self.closed.drain(..) {
            if key.protocol == 6 {
                self.conn_events.on_closed(&key, &conn);
                if conn.unanswered_retransmitted_syn() {
                    if let Some(c) = conn.client {
                        let server = key.endpoint(c.other());
                        let name = detect::endpoint_text(server);
                        if self.tcp.unanswered_syns.len() < bounds::MAX_UNANSWERED_SYN_SERVERS
                            || self.tcp.unanswered_syns.contains_key(&name)
                        {
                            *self.tcp.unanswered_syns.entry(name).or_insert(0) += 1;
                        }
                    }
                }
                if Destinations::records(&conn) {
                    self.dns_stage
                        .on_conn_closed(key, conn, &mut self.tcp_spare);
                    continue;
                }
            }
            if let Some(c) = conn.cold.take() {
                self.tcp_spare.push(c);
            }
        }
    }

    /// Names the outer (node) addresses of tunnelled flows in the findings: each flow gets
    /// `(inside VXLAN a → b, VNI n)`, and a DNS finding, whose evidence is by name,
    /// gets the pod flows of its lookups.
    fn annotate_overlay(&self, expanded: &[dns::ExpandedLookup], findings: &mut [Finding]) {
        for f in findings.iter_mut() {
            if f.kind == Kind::DnsNdotsAmplification && f.flows.is_empty() {
                for l in expanded {
                    if let Some((c, s)) = l.flow {
                        let text = detect::flow_text(c, s, if l.tcp { "tcp" } else { "udp" });
                        if !f.flows.contains(&text) {
                            f.flows.push(text);
                        }
                    }
                }
            }
            for flow in &mut f.flows {
                if let Some(t) = self.overlay.annotate_flow(flow) {
                    *flow = t;
                }
            }
            if let Some(n) = self.overlay.note() {
                f.evidence.notes.push(n);
            }
        }
    }

    /// Ends the input and returns the report.
    pub fn finish(mut self) -> Report {
        // One flow at a time, in the same order as before: collecting them all first
        // doubled the flow table's memory at the peak.
        self.capture.flows_evicted_full = self.flows.evicted_full;
        self.capture.flows_evicted_idle = self.flows.evicted_idle;
        self.capture.flows_peak = self.flows.peak as u64;
        let flows = std::mem::replace(&mut self.flows, FlowTable::new(1, u64::MAX));
        for (k, v) in flows.drain_lru() {
            close_flow(&mut self.conns, &mut self.closed, k, v);
            self.close_out();
        }
        // Every piece of DNS work done, wherever it ran.
        let mut stage = self.dns_stage.take_joined();
        self.capture.dns_messages = stage.messages;
        if stage.malformed > 0 {
            *self.skipped.entry(SkipKind::DnsMalformed).or_insert(0) += stage.malformed;
        }
        let dns_stats = stage.dns.finish();
        if self.resolver.is_none() {
            let gaps: Vec<u64> = stage.dns.retries.iter().map(|r| r.gap_ns).collect();
            self.resolver = stage.resolver_hints.infer(&gaps, self.resolv.as_ref());
        }
        let ctx = detect::Ctx {
            counters: &self.counters,
            resolv: self.resolv.as_ref(),
            resolver: self.resolver.as_ref(),
            locality: &stage.locality,
            overlay: &self.overlay,
            max_evidence: self.config.max_evidence_packets,
        };
        let mut findings: Vec<Finding> = [
            self.invalid.finish(&ctx),
            detect::accept_queue_overflow::finish(&stage.dests, &ctx),
            detect::snat_port_exhaustion::finish(&stage.dests, &ctx),
            detect::dns_ndots_amplification::finish(&stage.dns.expanded, &dns_stats, &ctx),
            detect::dns_lost_reply_timeout::finish(
                &stage.dns.retries,
                stage.dns.retry_events,
                &ctx,
            )
            .or_else(|| detect::dns_lost_reply_timeout::finish_tcp(&stage.dns, &ctx)),
            detect::conntrack_table_full::finish(&stage.dests, &ctx),
            detect::ephemeral_port_exhaustion::finish(&stage.closes, &ctx),
            detect::connection_refused::finish(&self.conn_events, &stage.dests, &ctx),
            detect::nat_idle_timeout::finish(&self.conn_events, &ctx),
            detect::udp_receive_buffer_overflow::finish(&stage.udp_services, &ctx),
            detect::path_mtu_blackhole::finish(&self.pmtu, &ctx),
        ]
        .into_iter()
        .flatten()
        .collect();
        findings.sort_by(|a, b| b.confidence.cmp(&a.confidence).then(a.kind.cmp(&b.kind)));
        for f in &mut findings {
            f.evidence.packets.sort_by_key(|p| p.packet);
        }
        if self.overlay.any() {
            self.annotate_overlay(&stage.dns.expanded, &mut findings);
        }

        let mut tcp = self.tcp.clone();
        for (i, name) in ["client", "server", "unknown"].iter().enumerate() {
            if self.rst_origin[i] > 0 {
                tcp.resets_by_origin
                    .insert((*name).to_string(), self.rst_origin[i]);
            }
        }
        for (i, k) in SEG_KINDS.iter().enumerate() {
            if self.rst_answer[i] > 0 {
                tcp.resets_by_answer
                    .insert(k.as_str().to_string(), self.rst_answer[i]);
            }
        }

        let skipped: BTreeMap<SkipKind, u64> = self.skipped.iter().map(|(k, v)| (*k, *v)).collect();
        let mut skipped_out: Vec<Skipped> = skipped
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, count)| {
                let (what, why) = match k {
                    SkipKind::LinkType(t) => (
                        format!("link type {t}"),
                        "link type not supported by netdiag-wire".to_string(),
                    ),
                    SkipKind::NotIp => (
                        "non-IP frames".to_string(),
                        "ARP and other ethertypes carry nothing to diagnose".to_string(),
                    ),
                    SkipKind::Truncated(l) => (
                        format!("truncated {l} header"),
                        "the capture ends inside the header (snaplen or a cut-off frame)"
                            .to_string(),
                    ),
                    SkipKind::Malformed(l) => (
                        format!("malformed {l} header"),
                        "a field says something impossible".to_string(),
                    ),
                    SkipKind::UnsupportedProto(l) => (
                        format!("other protocol above {l}"),
                        "not TCP or UDP".to_string(),
                    ),
                    SkipKind::Fragment => (
                        "non-first IP fragments".to_string(),
                        "no transport header; fragments are not reassembled".to_string(),
                    ),
                    SkipKind::DnsMalformed => (
                        "malformed DNS on port 53".to_string(),
                        "not a parseable DNS message".to_string(),
                    ),
                };
                Skipped { what, why, count }
            })
            .collect();
        if stage.dns.not_tracked > 0 {
            skipped_out.push(Skipped {
                what: "DNS queries".to_string(),
                why: "the DNS transaction table was full".to_string(),
                count: stage.dns.not_tracked,
            });
        }
        for (count, what, why) in [
            (
                stage.dns_tcp.over_cap,
                "DNS-over-TCP messages",
                "longer than the reassembly cap (16 KiB) and split across segments",
            ),
            (
                stage.dns_tcp.not_tracked,
                "DNS-over-TCP segments",
                "the TCP DNS stream table was full",
            ),
            (
                stage.dns_tcp.gaps,
                "DNS-over-TCP sequence gaps",
                "the capture missed a segment; the message in progress was lost",
            ),
        ] {
            if count > 0 {
                skipped_out.push(Skipped {
                    what: what.to_string(),
                    why: why.to_string(),
                    count,
                });
            }
        }
        if stage.dests.not_tracked > 0 {
            skipped_out.push(Skipped {
                what: "connection outcomes".to_string(),
                why: "the destination table was full".to_string(),
                count: stage.dests.not_tracked,
            });
        }

        let mut counters_used = Vec::new();
        let mut limits = Vec::new();
        for role in [NetnsRole::Pod, NetnsRole::Node] {
            if self.counters.has(role) {
                counters_used.push(role.as_str().to_string());
            }
        }
        if !self.counters.has(NetnsRole::Node) {
            limits.push("no node counters: SNAT, conntrack INVALID and the DNS conntrack race cannot be confirmed (NAT happens in the node netns)".to_string());
        }
        if !self.counters.has(NetnsRole::Pod) {
            limits.push("no pod counters: accept-queue overflow cannot be confirmed (TcpExt.ListenOverflows)".to_string());
        }
        if let Some(l) = self.overlay.encrypted_limit() {
            limits.push(l);
        }
        if self.resolv.is_none() {
            limits.push(
                "no resolv.conf: the DNS search list is inferred from the observed queries"
                    .to_string(),
            );
        }

        Report {
            schema_version: SCHEMA_VERSION,
            findings,
            sources: self.sources,
            capture: self.capture,
            tcp,
            dns: dns_stats,
            resolv_conf: self.resolv,
            resolver: self.resolver,
            counters_used,
            skipped: skipped_out,
            limits,
        }
    }
}

#[cfg(test)]
mod flow_value_tests {
    use super::*;
    use std::net::IpAddr;

    /// A UDP flow's value holds its locality bits, a TCP flow's an index into `Conns`:
    /// the bits are kept apart per (side, TTL class), and closing a UDP flow never takes
    /// TCP state, whatever its value would read as an index.
    #[test]
    fn a_udp_flows_locality_bits_never_stand_for_tcp_state() {
        let mut f = Flow::default();
        assert_eq!(f.udp_seen(), 0);
        let mut all = 0;
        for side in 0..2 {
            for ttl in [64u8, 61] {
                let bit = Locality::class_bit(side, ttl);
                assert_eq!(f.udp_seen() & bit, 0, "{side} {ttl}");
                f.mark_udp_seen(bit);
                all |= bit;
                assert_eq!(f.udp_seen(), all);
            }
        }
        assert_eq!(all, 0xf);
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let mut conns = Conns::default();
        let i = conns.alloc();
        let mut closed = Vec::new();
        let (udp, _) = FlowKey::new(0, 17, (a, 5353), (b, 53));
        close_flow(&mut conns, &mut closed, udp, Flow { conn: i });
        assert!(closed.is_empty(), "a UDP flow took TCP state");
        let (tcp, _) = FlowKey::new(0, 6, (a, 40000), (b, 80));
        close_flow(&mut conns, &mut closed, tcp, Flow { conn: i });
        assert_eq!(closed.len(), 1);
    }
}
