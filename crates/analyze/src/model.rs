//! The output model: [`Finding`], [`Report`] and their statistics.
//!
//! Everything here is `serde::Serialize` and forms the stable JSON schema documented at
//! the crate root. Fields are only ever added, never renamed; enums serialize as
//! `snake_case` strings.

use serde::Serialize;
use std::collections::BTreeMap;

/// The diagnoses. The JSON strings are fixed (see DETECTION.md and `docs/DETECTION.md`, `docs/detectors-resolver-udp-mtu.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Kind {
    /// conntrack rejected an out-of-window segment; the host answered it with a RST.
    ConntrackInvalid,
    /// A listener's accept queue was full: SYNs or final ACKs were dropped.
    AcceptQueueOverflow,
    /// SNAT source ports collided or ran out: SYNs to one destination vanish.
    SnatPortExhaustion,
    /// The search list multiplied DNS lookups (`ndots`).
    DnsNdotsAmplification,
    /// One reply of a parallel A/AAAA pair was lost; the resolver waited its timeout.
    DnsLostReplyTimeout,
    /// The node's conntrack table is full: new flows' first packets are dropped.
    ConntrackTableFull,
    /// The pod ran out of local ports towards one destination (`connect()`: EADDRNOTAVAIL).
    EphemeralPortExhaustion,
    /// Connection attempts answered by RST: nothing listens on the destination port.
    ConnectionRefused,
    /// An idle connection lost its conntrack/NAT entry; resumed data is reset or ignored.
    NatIdleTimeout,
    /// A local UDP server's socket buffer overflowed: datagrams to it were dropped
    /// (`Udp.RcvbufErrors`).
    UdpReceiveBufferOverflow,
    /// Full-size segments vanish on the path and no ICMP "fragmentation needed" / "packet
    /// too big" comes back: a path-MTU black hole.
    PathMtuBlackhole,
}

impl Kind {
    /// The fixed JSON string, e.g. `"conntrack_invalid"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ConntrackInvalid => "conntrack_invalid",
            Kind::AcceptQueueOverflow => "accept_queue_overflow",
            Kind::SnatPortExhaustion => "snat_port_exhaustion",
            Kind::DnsNdotsAmplification => "dns_ndots_amplification",
            Kind::DnsLostReplyTimeout => "dns_lost_reply_timeout",
            Kind::ConntrackTableFull => "conntrack_table_full",
            Kind::EphemeralPortExhaustion => "ephemeral_port_exhaustion",
            Kind::ConnectionRefused => "connection_refused",
            Kind::NatIdleTimeout => "nat_idle_timeout",
            Kind::UdpReceiveBufferOverflow => "udp_receive_buffer_overflow",
            Kind::PathMtuBlackhole => "path_mtu_blackhole",
        }
    }

    /// Parses the JSON string back (used by tests and the CLI's manifest reader).
    pub fn from_str_opt(s: &str) -> Option<Kind> {
        Some(match s {
            "conntrack_invalid" => Kind::ConntrackInvalid,
            "accept_queue_overflow" => Kind::AcceptQueueOverflow,
            "snat_port_exhaustion" => Kind::SnatPortExhaustion,
            "dns_ndots_amplification" => Kind::DnsNdotsAmplification,
            "dns_lost_reply_timeout" => Kind::DnsLostReplyTimeout,
            "conntrack_table_full" => Kind::ConntrackTableFull,
            "ephemeral_port_exhaustion" => Kind::EphemeralPortExhaustion,
            "connection_refused" => Kind::ConnectionRefused,
            "nat_idle_timeout" => Kind::NatIdleTimeout,
            "udp_receive_buffer_overflow" => Kind::UdpReceiveBufferOverflow,
            "path_mtu_blackhole" => Kind::PathMtuBlackhole,
            _ => return None,
        })
    }

    /// All kinds, in report order.
    pub const ALL: &'static [Kind] = &[
        Kind::ConntrackInvalid,
        Kind::AcceptQueueOverflow,
        Kind::SnatPortExhaustion,
        Kind::DnsNdotsAmplification,
        Kind::DnsLostReplyTimeout,
        Kind::ConntrackTableFull,
        Kind::EphemeralPortExhaustion,
        Kind::ConnectionRefused,
        Kind::NatIdleTimeout,
        Kind::UdpReceiveBufferOverflow,
        Kind::PathMtuBlackhole,
    ];
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sure a finding is, ordered `Possible < Likely < Confirmed` (DETECTION.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Consistent with the diagnosis; the finding names the alternative explanation.
    Possible,
    /// Packet evidence alone is strong.
    Likely,
    /// Kernel counters (or both sides of the NAT) prove it.
    Confirmed,
}

impl Confidence {
    /// `"possible"`, `"likely"` or `"confirmed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Possible => "possible",
            Confidence::Likely => "likely",
            Confidence::Confirmed => "confirmed",
        }
    }

    /// Parses `"possible"`, `"likely"` or `"confirmed"`.
    pub fn from_str_opt(s: &str) -> Option<Confidence> {
        Some(match s {
            "possible" => Confidence::Possible,
            "likely" => Confidence::Likely,
            "confirmed" => Confidence::Confirmed,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Confidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One packet of the input: which source (file) and its number in that source, counted
/// from 1 like Wireshark's `frame.number`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PacketRef {
    /// Index into [`Report::sources`].
    pub source: u16,
    /// 1-based packet number within that source.
    pub number: u64,
}

/// One evidence packet and what it shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EvidencePacket {
    /// Which packet.
    #[serde(flatten)]
    pub packet: PacketRef,
    /// Why it is evidence, e.g. `"SYN retransmitted, no SYN-ACK"`.
    pub role: String,
}

/// A counter that moved between the before and after snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CounterDelta {
    /// Whose counter: the pod's or the node's namespace (`"pod"` / `"node"` in JSON).
    pub netns: crate::NetnsRole,
    /// Flat counter key, e.g. `"TcpExt.ListenOverflows"`.
    pub key: String,
    /// Value in the before snapshot.
    pub before: u64,
    /// Value in the after snapshot.
    pub after: u64,
}

/// A time measurement that supports a finding.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Timing {
    /// What was measured, e.g. `"SYN retransmission gaps"`.
    pub what: String,
    /// Milliseconds (one or more values).
    pub millis: Vec<f64>,
}

/// Everything a finding rests on.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Evidence {
    /// Packets in the input, with their role (bounded per finding).
    pub packets: Vec<EvidencePacket>,
    /// How many evidence packets there were in total (may exceed `packets.len()`).
    pub packets_total: u64,
    /// Kernel counters that moved.
    pub counters: Vec<CounterDelta>,
    /// Timings.
    pub timings: Vec<Timing>,
    /// Other facts in words (resolv.conf options, inferred search list, …).
    pub notes: Vec<String>,
}

/// A listening socket involved in a finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ListenerRef {
    /// Listening address (`0.0.0.0` / `::` for a wildcard listener).
    pub addr: String,
    /// Port.
    pub port: u16,
    /// Connections waiting in the accept queue (`ss -lnt` Recv-Q), if known.
    pub queued: Option<u32>,
    /// Accept-queue size (`ss -lnt` Send-Q), if known.
    pub backlog: Option<u32>,
}

/// One diagnosis with its evidence and remedy.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Finding {
    /// What was found.
    pub kind: Kind,
    /// How sure.
    pub confidence: Confidence,
    /// One line for a human.
    pub summary: String,
    /// Affected flows, as `"10.0.0.1:1234 -> 10.0.0.2:80/tcp"`.
    pub flows: Vec<String>,
    /// Affected listeners.
    pub listeners: Vec<ListenerRef>,
    /// Affected DNS names.
    pub names: Vec<String>,
    /// What supports it.
    pub evidence: Evidence,
    /// What a person can do about it.
    pub remedy: String,
    /// What else could explain the same packets (set on `possible` findings).
    pub alternative: Option<String>,
}

/// DNS statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DnsStats {
    /// Query packets seen (retries included).
    pub queries_sent: u64,
    /// Response packets seen.
    pub responses: u64,
    /// Responses with rcode NXDOMAIN.
    pub nxdomain: u64,
    /// `nxdomain / responses` (0 when no responses).
    pub nxdomain_share: f64,
    /// Logical lookups (search-list expansions and A/AAAA grouped into one).
    pub logical_lookups: u64,
    /// Logical lookups that went through at least one search-list expansion.
    pub expanded_lookups: u64,
    /// Distinct (name, type) queries sent / those a fully-qualified name would have needed.
    pub amplification_factor: f64,
    /// Queries re-sent with the same ID after no answer.
    pub retries: u64,
    /// Queries never answered.
    pub unanswered: u64,
    /// Median logical-lookup latency (first query to final answer), milliseconds.
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile logical-lookup latency, milliseconds.
    pub latency_p99_ms: Option<f64>,
    /// Search suffixes seen in expansions (from resolv.conf, or inferred), most used first.
    pub search_suffixes: Vec<String>,
    /// Whether `search_suffixes` came from resolv.conf (`false` = inferred from packets).
    pub search_from_resolv_conf: bool,
}

/// TCP statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TcpStats {
    /// Connections opened (SYN seen).
    pub connections: u64,
    /// Three-way handshakes completed.
    pub handshakes: u64,
    /// SYNs retransmitted (second and later SYN of a connection attempt).
    pub syn_retransmissions: u64,
    /// Data segments retransmitted.
    pub retransmissions: u64,
    /// Connection attempts that never saw a SYN-ACK, per destination `ip:port`.
    pub unanswered_syns: BTreeMap<String, u64>,
    /// Resets by who sent them: `client`, `server`, or `unknown` (no handshake seen).
    pub resets_by_origin: BTreeMap<String, u64>,
    /// Resets by what they answered: `syn`, `data`, `out_of_window`, `fin`, `ack`, `none`.
    pub resets_by_answer: BTreeMap<String, u64>,
}

/// Statistics about the input itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CaptureStats {
    /// Packets fed.
    pub packets: u64,
    /// Captured bytes fed.
    pub bytes: u64,
    /// First packet timestamp, ns since the epoch.
    pub first_ns: Option<u64>,
    /// Last packet timestamp, ns since the epoch.
    pub last_ns: Option<u64>,
    /// IPv4/IPv6 packets carrying TCP.
    pub tcp_packets: u64,
    /// IPv4/IPv6 packets carrying UDP.
    pub udp_packets: u64,
    /// DNS messages parsed.
    pub dns_messages: u64,
    /// Distinct flows created (TCP + UDP).
    pub flows: u64,
    /// Flows pushed out of the table because it was full.
    pub flows_evicted_full: u64,
    /// Flows closed because they were idle longer than the idle timeout.
    pub flows_evicted_idle: u64,
    /// Largest number of flows held at once.
    pub flows_peak: u64,
    /// The configured flow cap.
    pub flow_cap: u64,
}

/// One input source (a capture file, or a live interface).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SourceInfo {
    /// Name given by the caller (file path).
    pub name: String,
    /// Packets fed from it.
    pub packets: u64,
}

/// Something the analyzer did not look at, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Skipped {
    /// What, e.g. `"link type 147"`, `"truncated tcp header"`.
    pub what: String,
    /// Why, in words.
    pub why: String,
    /// How many packets (or items).
    pub count: u64,
}

/// The analyzer's verdict over everything it was fed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// Schema version of this JSON (bumped on incompatible change; additions keep it).
    pub schema_version: u32,
    /// Findings, most confident first.
    pub findings: Vec<Finding>,
    /// Input sources, indexed by [`PacketRef::source`].
    pub sources: Vec<SourceInfo>,
    /// Input statistics.
    pub capture: CaptureStats,
    /// TCP statistics.
    pub tcp: TcpStats,
    /// DNS statistics.
    pub dns: DnsStats,
    /// The resolv.conf used, if one was given.
    pub resolv_conf: Option<crate::resolv::ResolvConf>,
    /// The pod's resolver library (given, read from the ELF interpreter live, or inferred
    /// from the query pattern), if known. The DNS findings follow its rules.
    pub resolver: Option<crate::resolver::Resolver>,
    /// Counter snapshots given: `"pod"`, `"node"` (those with both before and after).
    pub counters_used: Vec<String>,
    /// What was skipped and why.
    pub skipped: Vec<Skipped>,
    /// What a clean report does not rule out (missing node counters, …).
    pub limits: Vec<String>,
}

impl Report {
    /// The highest confidence among the findings, if any.
    pub fn max_confidence(&self) -> Option<Confidence> {
        self.findings.iter().map(|f| f.confidence).max()
    }

    /// Findings at or above `threshold`.
    pub fn findings_at_least(&self, threshold: Confidence) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(move |f| f.confidence >= threshold)
    }

    /// The distinct kinds found (at any confidence).
    pub fn kinds(&self) -> Vec<Kind> {
        let mut k: Vec<Kind> = self.findings.iter().map(|f| f.kind).collect();
        k.sort();
        k.dedup();
        k
    }
}

/// The version written in [`Report::schema_version`].
pub const SCHEMA_VERSION: u32 = 1;

/// A cheap summary for a progress line while feeding continues ([`Analyzer::progress`]).
///
/// [`Analyzer::progress`]: crate::Analyzer::progress
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Packets fed so far.
    pub packets: u64,
    /// Flows in the table now.
    pub flows: u64,
    /// TCP segments far outside the tracked window (conntrack INVALID candidates).
    pub out_of_window_segments: u64,
    /// Handshakes whose final ACK went unanswered (accept-queue candidates).
    pub final_acks_dropped: u64,
    /// SYNs retransmitted.
    pub syn_retransmissions: u64,
    /// DNS queries sent.
    pub dns_queries: u64,
    /// DNS queries re-sent after a timeout.
    pub dns_retries: u64,
}
