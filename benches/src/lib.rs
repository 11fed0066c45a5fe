//! Shared corpora and digests for netdiag's benchmarks.
//!
//! - [`generate_mix`]: a deterministic synthetic capture of Ethernet frames (TCP
//!   handshakes, data, closes; DNS lookups with Kubernetes search-list expansion and
//!   NXDOMAIN answers; a few VLAN-tagged, IPv6 and truncated frames), parameterised by
//!   flow count, packet count and seed. The analyzer bench reuses it at 1k/100k/1M flows.
//! - [`write_pcap`] stores such packets as a pcap file (through netdiag-pcapio).
//! - [`load_testdata`] and [`load_corpus_sample`] load real captures (Ethernet only).
//! - One digest function per header-slicing contender ([`digest_ours`],
//!   [`digest_etherparse_sliced`], [`digest_etherparse_lax`],
//!   [`digest_etherparse_headers`]): each folds the 5-tuple, TCP flags, seq/ack, payload
//!   length and the DNS question-name hash of every packet into one `u64`, so no contender
//!   gets credit for skipping work (see `../shared/BENCH.md`). All contenders use
//!   netdiag-wire's DNS parser for the question name, so the comparison isolates header
//!   slicing; frames that are not complete (captured shorter than on the wire) and
//!   frames without TCP/UDP fold fixed markers.

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use etherparse::{
    LaxNetSlice, LaxSlicedPacket, NetHeaders, NetSlice, PacketHeaders, PayloadSlice, SlicedPacket,
    TransportHeader, TransportSlice,
};
use netdiag_wire::{Frame, LinkType, Net, Transport, dns};

/// pcap `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// One captured frame of a benchmark corpus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenPacket {
    /// Capture time, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// pcap `LINKTYPE_*` of `data`.
    pub link_type: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
}

/// Total captured bytes of a corpus (for `Throughput::Bytes`).
pub fn total_bytes(packets: &[GenPacket]) -> u64 {
    packets.iter().map(|p| p.data.len() as u64).sum()
}

// ---------------------------------------------------------------------------------
// Deterministic generator
// ---------------------------------------------------------------------------------

/// splitmix64: small, fast and deterministic across platforms.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const SEARCH_LIST: [&str; 3] = [
    "default.svc.cluster.local",
    "svc.cluster.local",
    "cluster.local",
];
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

#[derive(Clone, Copy, Debug)]
enum Ip {
    V4([u8; 4]),
    V6([u8; 16]),
}

#[derive(Clone, Copy, Debug)]
struct Endpoints {
    client: Ip,
    server: Ip,
    client_port: u16,
    server_port: u16,
    vlan: Option<u16>,
}

fn client_ip(flow: u64, v6: bool) -> Ip {
    let b = flow.to_be_bytes();
    if v6 {
        Ip::V6([
            0xfd, 0, 0x10, 0x24, 0, 0, 0, 0, 0, 0, 0, b[4], b[5], b[6], b[7], 2,
        ])
    } else {
        Ip::V4([10, 244, b[6], b[7] | 1])
    }
}

fn server_ip(flow: u64, v6: bool) -> Ip {
    let s = (flow % 251) as u8;
    if v6 {
        Ip::V6([0xfd, 0, 0, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, s])
    } else {
        Ip::V4([10, 96, 0, s])
    }
}

/// Builds one Ethernet frame (optional 802.1Q tag) around an IP packet.
fn ethernet(e: &Endpoints, to_server: bool, l4: &[u8], protocol: u8) -> Vec<u8> {
    let (src, dst) = if to_server {
        (e.client, e.server)
    } else {
        (e.server, e.client)
    };
    let mut f = Vec::with_capacity(14 + 4 + 40 + l4.len());
    let (smac, dmac) = if to_server {
        ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
    } else {
        ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
    };
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    if let Some(v) = e.vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    match (src, dst) {
        (Ip::V4(s), Ip::V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00]);
            let total = (20 + l4.len()) as u16;
            let mut h = [0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[4..6].copy_from_slice(&(l4.len() as u16 ^ 0x5a5a).to_be_bytes());
            h[6] = 0x40; // DF
            h[8] = 64;
            h[9] = protocol;
            h[12..16].copy_from_slice(&s);
            h[16..20].copy_from_slice(&d);
            let sum = ipv4_checksum(&h);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            f.extend_from_slice(&h);
        }
        (Ip::V6(s), Ip::V6(d)) => {
            f.extend_from_slice(&[0x86, 0xdd]);
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            f.push(protocol);
            f.push(64);
            f.extend_from_slice(&s);
            f.extend_from_slice(&d);
        }
        _ => {}
    }
    f.extend_from_slice(l4);
    // Short frames are padded to the Ethernet minimum, as on the wire.
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

fn ipv4_checksum(h: &[u8; 20]) -> u16 {
    let mut sum: u32 = h
        .chunks_exact(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn tcp(
    e: &Endpoints,
    to_server: bool,
    seq: u32,
    ack: u32,
    flags: u8,
    payload_len: usize,
    syn_opts: bool,
) -> Vec<u8> {
    let (sp, dp) = if to_server {
        (e.client_port, e.server_port)
    } else {
        (e.server_port, e.client_port)
    };
    let opts: &[u8] = if syn_opts {
        // mss 1460, sackOK, TS, nop, wscale 7 (what Linux sends)
        &[
            2, 4, 5, 180, 4, 2, 8, 10, 0, 1, 0, 2, 0, 0, 0, 0, 1, 3, 3, 7,
        ]
    } else {
        // nop, nop, TS
        &[1, 1, 8, 10, 0, 1, 0, 3, 0, 1, 0, 2]
    };
    let hl = 20 + opts.len();
    let mut t = Vec::with_capacity(hl + payload_len);
    t.extend_from_slice(&sp.to_be_bytes());
    t.extend_from_slice(&dp.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.push(((hl / 4) as u8) << 4);
    t.push(flags);
    t.extend_from_slice(&502u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(opts);
    t.extend((0..payload_len).map(|i| (i as u8).wrapping_mul(31)));
    t
}

fn dns_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

fn dns_message(id: u16, name: &str, qtype: u16, response: Option<(u8, bool)>) -> Vec<u8> {
    let mut m = Vec::with_capacity(96);
    m.extend_from_slice(&id.to_be_bytes());
    let (flags, an) = match response {
        None => (0x0100u16, 0u16),
        Some((rcode, answer)) => (0x8180 | u16::from(rcode), u16::from(answer)),
    };
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m.extend_from_slice(&an.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    dns_name(&mut m, name);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    if an == 1 {
        m.extend_from_slice(&[0xc0, 0x0c]); // compressed owner name
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 30]);
        if qtype == dns::QTYPE_AAAA {
            m.extend_from_slice(&[0, 16, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
        } else {
            m.extend_from_slice(&[0, 4, 203, 0, 113, 7]);
        }
    }
    m
}

fn udp(e: &Endpoints, to_server: bool, payload: &[u8]) -> Vec<u8> {
    let (sp, dp) = if to_server {
        (e.client_port, e.server_port)
    } else {
        (e.server_port, e.client_port)
    };
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sp.to_be_bytes());
    u.extend_from_slice(&dp.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// One conversation's remaining frames, produced on demand.
struct Conversation {
    frames: std::collections::VecDeque<Vec<u8>>,
}

fn tcp_conversation(rng: &mut Rng, flow: u64, budget: usize) -> Conversation {
    let v6 = flow % 8 == 7;
    let e = Endpoints {
        client: client_ip(flow, v6),
        server: server_ip(flow, v6),
        client_port: 32768 + (flow % 28000) as u16,
        server_port: [80, 443, 8080, 5432][(flow % 4) as usize],
        vlan: (flow % 16 == 5).then_some(100 + (flow % 8) as u16),
    };
    let mut frames = std::collections::VecDeque::new();
    let mut c_seq = rng.next() as u32;
    let mut s_seq = rng.next() as u32;
    frames.push_back(ethernet(
        &e,
        true,
        &tcp(&e, true, c_seq, 0, TCP_SYN, 0, true),
        6,
    ));
    frames.push_back(ethernet(
        &e,
        false,
        &tcp(
            &e,
            false,
            s_seq,
            c_seq.wrapping_add(1),
            TCP_SYN | TCP_ACK,
            0,
            true,
        ),
        6,
    ));
    c_seq = c_seq.wrapping_add(1);
    s_seq = s_seq.wrapping_add(1);
    frames.push_back(ethernet(
        &e,
        true,
        &tcp(&e, true, c_seq, s_seq, TCP_ACK, 0, false),
        6,
    ));
    let data_packets = budget.saturating_sub(7);
    for i in 0..data_packets {
        let to_server = i % 3 == 0;
        let len = if rng.chance(30) {
            0
        } else {
            1 + rng.below(1448) as usize
        };
        let (seq, ack) = if to_server {
            (c_seq, s_seq)
        } else {
            (s_seq, c_seq)
        };
        let flags = if len > 0 { TCP_PSH | TCP_ACK } else { TCP_ACK };
        frames.push_back(ethernet(
            &e,
            to_server,
            &tcp(&e, to_server, seq, ack, flags, len, false),
            6,
        ));
        if to_server {
            c_seq = c_seq.wrapping_add(len as u32);
        } else {
            s_seq = s_seq.wrapping_add(len as u32);
        }
    }
    frames.push_back(ethernet(
        &e,
        true,
        &tcp(&e, true, c_seq, s_seq, TCP_FIN | TCP_ACK, 0, false),
        6,
    ));
    frames.push_back(ethernet(
        &e,
        false,
        &tcp(
            &e,
            false,
            s_seq,
            c_seq.wrapping_add(1),
            TCP_FIN | TCP_ACK,
            0,
            false,
        ),
        6,
    ));
    frames.push_back(ethernet(
        &e,
        true,
        &tcp(
            &e,
            true,
            c_seq.wrapping_add(1),
            s_seq.wrapping_add(1),
            TCP_ACK,
            0,
            false,
        ),
        6,
    ));
    Conversation { frames }
}

/// A glibc-style lookup of a short name in a pod with `ndots:5` and three search
/// domains: (A, AAAA) per suffix, each NXDOMAIN, then the bare name answered.
fn dns_conversation(rng: &mut Rng, flow: u64) -> Conversation {
    let name = format!("api{}.example.test", flow % 997);
    let mut frames = std::collections::VecDeque::new();
    let mut candidates: Vec<String> = SEARCH_LIST.iter().map(|s| format!("{name}.{s}")).collect();
    candidates.push(name);
    let last = candidates.len() - 1;
    for (i, qname) in candidates.iter().enumerate() {
        let e = Endpoints {
            client: client_ip(flow, false),
            server: Ip::V4([10, 96, 0, 10]),
            client_port: 40000 + (rng.below(25000) as u16),
            server_port: 53,
            vlan: None,
        };
        for qtype in [dns::QTYPE_A, dns::QTYPE_AAAA] {
            let id = rng.next() as u16;
            frames.push_back(ethernet(
                &e,
                true,
                &udp(&e, true, &dns_message(id, qname, qtype, None)),
                17,
            ));
            let answer = if i == last { (0, true) } else { (3, false) };
            frames.push_back(ethernet(
                &e,
                false,
                &udp(&e, false, &dns_message(id, qname, qtype, Some(answer))),
                17,
            ));
        }
    }
    Conversation { frames }
}

/// A deterministic mix of `packets` Ethernet frames over `flows` conversations.
///
/// About 80 % of conversations are TCP (handshake with options, data in both directions,
/// FIN/ACK close; one in eight over IPv6, one in sixteen VLAN-tagged) and 20 % DNS
/// lookups expanded through the Kubernetes search list (16 packets each). Up to 1024
/// conversations are open at once and their packets interleave; once `flows`
/// conversations have been started, new ones reuse flow numbers (with fresh ports for
/// DNS). About 1 % of frames are truncated (as by a short snap length) inside their
/// headers or payload. Timestamps start at 2023-11-14T22:13:20Z and advance 1–50 µs.
pub fn generate_mix(flows: usize, packets: usize, seed: u64) -> Vec<GenPacket> {
    let mut rng = Rng(seed ^ 0x6e65_7464_6961_6721);
    let flows = flows.max(1) as u64;
    let per_flow = (packets as u64 / flows).max(8) as usize;
    let concurrency = flows.min(1024) as usize;
    let mut open: Vec<Conversation> = Vec::with_capacity(concurrency);
    let mut next_flow = 0u64;
    let mut out = Vec::with_capacity(packets);
    let mut ts = 1_700_000_000_000_000_000u64;
    while out.len() < packets {
        while open.len() < concurrency {
            let flow = next_flow % flows;
            next_flow += 1;
            let c = if rng.chance(20) {
                dns_conversation(&mut rng, flow)
            } else {
                let budget = 7 + rng.below(2 * per_flow.saturating_sub(7) as u64 + 1) as usize;
                tcp_conversation(&mut rng, flow, budget)
            };
            open.push(c);
        }
        let i = rng.below(open.len() as u64) as usize;
        let Some(conv) = open.get_mut(i) else {
            continue;
        };
        let Some(mut frame) = conv.frames.pop_front() else {
            open.swap_remove(i);
            continue;
        };
        if conv.frames.is_empty() {
            open.swap_remove(i);
        }
        if rng.chance(1) {
            let cut = 1 + rng.below(frame.len() as u64 - 1) as usize;
            frame.truncate(cut);
        }
        ts += 1_000 + rng.below(49_000);
        out.push(GenPacket {
            timestamp_ns: ts,
            link_type: LINKTYPE_ETHERNET,
            data: frame,
        });
    }
    out
}

/// Every flow open at once, for the scale figure (analysis cost per packet at many
/// concurrent flows against few): `flows` TCP connections, each sending `rounds`
/// packets (SYN, SYN-ACK, ACK, then 100-byte data segments in alternating directions),
/// interleaved round-robin so consecutive packets belong to different flows and every
/// flow stays open until the end. One in eight flows is IPv6. Timestamps advance 1 µs
/// per packet. Laid out straight into one contiguous [`PcapBuffer`]: at 1M flows the
/// corpus is millions of packets.
pub fn generate_concurrent(flows: usize, rounds: usize) -> PcapBuffer {
    let mut b = PcapBuffer::builder(LINKTYPE_ETHERNET);
    let mut rng = Rng(0x7363_616c_6521 ^ flows as u64);
    let isn: Vec<(u32, u32)> = (0..flows)
        .map(|_| (rng.next() as u32, rng.next() as u32))
        .collect();
    let mut ts = 1_700_000_000_000_000_000u64;
    for round in 0..rounds {
        for (flow, &(c_isn, s_isn)) in isn.iter().enumerate() {
            let flow = flow as u64;
            let v6 = flow % 8 == 7;
            let e = Endpoints {
                client: client_ip(flow, v6),
                server: server_ip(flow, v6),
                client_port: 1024 + (flow / 65_536) as u16 * 64 + (flow % 64) as u16,
                server_port: [80, 443, 8080, 5432][(flow % 4) as usize],
                vlan: None,
            };
            // Sequence numbers after the handshake: each side has sent `k` segments.
            let (c1, s1) = (c_isn.wrapping_add(1), s_isn.wrapping_add(1));
            let data = round.saturating_sub(3) as u32;
            let (to_server, seg) = match round {
                0 => (true, tcp(&e, true, c_isn, 0, TCP_SYN, 0, true)),
                1 => (false, tcp(&e, false, s_isn, c1, TCP_SYN | TCP_ACK, 0, true)),
                2 => (true, tcp(&e, true, c1, s1, TCP_ACK, 0, false)),
                _ => {
                    let to_server = data & 1 == 0;
                    let (c_sent, s_sent) = (data.div_ceil(2) * 100, (data / 2) * 100);
                    let (seq, ack) = if to_server {
                        (c1.wrapping_add(c_sent), s1.wrapping_add(s_sent))
                    } else {
                        (s1.wrapping_add(s_sent), c1.wrapping_add(c_sent))
                    };
                    let flags = TCP_PSH | TCP_ACK;
                    (to_server, tcp(&e, to_server, seq, ack, flags, 100, false))
                }
            };
            ts += 1_000;
            b.push(ts, &ethernet(&e, to_server, &seg, 6));
        }
    }
    b.finish()
}

/// Writes `packets` as a nanosecond pcap (link type of the first packet; snaplen 262144).
pub fn write_pcap<W: Write>(w: W, packets: &[GenPacket]) -> Result<W, netdiag_pcapio::Error> {
    let link = packets.first().map_or(LINKTYPE_ETHERNET, |p| p.link_type);
    let mut pw = netdiag_pcapio::PcapWriter::new(w, link, 262_144, true)?;
    for p in packets {
        pw.write_packet(p.timestamp_ns, &p.data, p.data.len() as u32)?;
    }
    pw.into_inner()
}

/// A corpus laid out the way a pcap file holds it: one contiguous buffer with the file
/// header, then each record's 16-byte header and captured bytes, as a reader of a
/// page-cached file (or a TPACKET_V3 block) sees them. Walking it costs what the real
/// input costs, where a `Vec<GenPacket>` chases one heap allocation per packet. It is
/// walked by netdiag-pcapio's reader, reading in place as it reads a mapped file.
#[derive(Clone, Debug)]
pub struct PcapBuffer {
    bytes: Arc<[u8]>,
    packets: usize,
    captured: u64,
}

/// pcap file header length.
const PCAP_FILE_HEADER: usize = 24;
/// pcap record header length.
const PCAP_RECORD_HEADER: usize = 16;

impl PcapBuffer {
    /// Lays `packets` out as a little-endian nanosecond pcap file in memory, every packet
    /// kept (no snaplen or link-type check can drop one, unlike [`write_pcap`]).
    pub fn new(packets: &[GenPacket]) -> PcapBuffer {
        let link = packets.first().map_or(LINKTYPE_ETHERNET, |p| p.link_type);
        let mut bytes = Vec::with_capacity(
            PCAP_FILE_HEADER + packets.len() * PCAP_RECORD_HEADER + total_bytes(packets) as usize,
        );
        for word in [0xa1b2_3c4d_u32, 0x0004_0002, 0, 0, 262_144, link] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        for p in packets {
            let len = u32::try_from(p.data.len()).unwrap_or(u32::MAX);
            let secs = u32::try_from(p.timestamp_ns / 1_000_000_000).unwrap_or(u32::MAX);
            let nanos = (p.timestamp_ns % 1_000_000_000) as u32;
            for word in [secs, nanos, len, len] {
                bytes.extend_from_slice(&word.to_le_bytes());
            }
            bytes.extend_from_slice(&p.data);
        }
        PcapBuffer {
            bytes: bytes.into(),
            packets: packets.len(),
            captured: total_bytes(packets),
        }
    }

    /// An empty buffer (file header only) to [`PcapBufferBuilder::push`] records into.
    pub fn builder(link_type: u32) -> PcapBufferBuilder {
        let mut bytes = Vec::new();
        for word in [0xa1b2_3c4d_u32, 0x0004_0002, 0, 0, 262_144, link_type] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        PcapBufferBuilder {
            bytes,
            packets: 0,
            captured: 0,
        }
    }

    /// Packets held.
    pub fn packets(&self) -> usize {
        self.packets
    }

    /// Captured bytes held (record bodies only, as [`total_bytes`]).
    pub fn captured_bytes(&self) -> u64 {
        self.captured
    }

    /// The whole buffer, file header included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Calls `f` with each record's timestamp (ns) and captured bytes, in order, as
    /// netdiag-pcapio's [`Reader::for_each_packet`](netdiag_pcapio::Reader::for_each_packet)
    /// hands them out of the buffer read in place. It stops at the first record the
    /// reader refuses (none: the records are written whole, under the snap length).
    #[inline]
    pub fn for_each(&self, mut f: impl FnMut(u64, &[u8])) {
        let Ok(mut r) = netdiag_pcapio::Reader::from_bytes(Arc::clone(&self.bytes), "PcapBuffer")
        else {
            return;
        };
        while let Ok(1..) = r.for_each_packet(usize::MAX, |p| f(p.timestamp_ns, p.data)) {}
    }
}

/// Builds a [`PcapBuffer`] one record at a time (see [`PcapBuffer::builder`]).
#[derive(Debug)]
pub struct PcapBufferBuilder {
    bytes: Vec<u8>,
    packets: usize,
    captured: u64,
}

impl PcapBufferBuilder {
    /// Appends one record.
    pub fn push(&mut self, timestamp_ns: u64, data: &[u8]) {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let secs = u32::try_from(timestamp_ns / 1_000_000_000).unwrap_or(u32::MAX);
        let nanos = (timestamp_ns % 1_000_000_000) as u32;
        for word in [secs, nanos, len, len] {
            self.bytes.extend_from_slice(&word.to_le_bytes());
        }
        self.bytes.extend_from_slice(data);
        self.packets += 1;
        self.captured += data.len() as u64;
    }

    /// The buffer.
    pub fn finish(self) -> PcapBuffer {
        PcapBuffer {
            bytes: self.bytes.into(),
            packets: self.packets,
            captured: self.captured,
        }
    }
}

fn digest_buffer_with(buf: &PcapBuffer, per_packet: impl Fn(&[u8]) -> u64) -> u64 {
    let mut h = Fold(0);
    buf.for_each(|_, data| h.add(per_packet(black_box(data))));
    black_box(h.0)
}

/// [`digest_ours`] over a [`PcapBuffer`].
pub fn buffer_digest_ours(buf: &PcapBuffer) -> u64 {
    digest_buffer_with(buf, packet_ours)
}
/// [`digest_etherparse_sliced`] over a [`PcapBuffer`].
pub fn buffer_digest_etherparse_sliced(buf: &PcapBuffer) -> u64 {
    digest_buffer_with(buf, packet_etherparse_sliced)
}
/// [`digest_etherparse_lax`] over a [`PcapBuffer`].
pub fn buffer_digest_etherparse_lax(buf: &PcapBuffer) -> u64 {
    digest_buffer_with(buf, packet_etherparse_lax)
}
/// [`digest_etherparse_headers`] over a [`PcapBuffer`].
pub fn buffer_digest_etherparse_headers(buf: &PcapBuffer) -> u64 {
    digest_buffer_with(buf, packet_etherparse_headers)
}

/// The floor under every contender's walk of a [`PcapBuffer`]: the same record walk and
/// fold, reading only each packet's first 16 bytes (the Ethernet header and the start
/// of what follows, which every header parser reads first) and its length. Not a
/// contender: what it costs is the memory traffic and loop every contender pays, so
/// the time above it is the parsing itself.
pub fn buffer_walk_floor(buf: &PcapBuffer) -> u64 {
    digest_buffer_with(buf, walk_floor_packet)
}

/// What the walk floor reads of one packet: its first 16 bytes and its length.
#[inline(always)]
fn walk_floor_packet(data: &[u8]) -> u64 {
    let head = data
        .first_chunk::<16>()
        .map_or(0, |h| u128::from_le_bytes(*h));
    (head as u64) ^ ((head >> 64) as u64).rotate_left(17) ^ data.len() as u64
}

/// Records of a [`PcapBuffer`] whose places are found once, beforehand, as the reader's
/// batches hand records over ([`netdiag_pcapio::Reader::next_batch`]). A walk over them
/// needs no record's header to find the next record, so it can ask for the records
/// ahead: what it costs is the parsing and the few lines each parser reads, not one
/// record after another waiting on memory (the record walk of a byte stream, which
/// streams every byte of the buffer through the cache, see [`buffer_walk_floor`]).
#[derive(Clone, Debug)]
pub struct Located<'a> {
    buf: &'a PcapBuffer,
    /// Each record's captured bytes: (start, length) in the buffer.
    spans: Vec<(usize, usize)>,
}

/// How many records ahead a walk of [`Located`] records asks for the next one's lines.
const LOCATED_AHEAD: usize = 8;

impl PcapBuffer {
    /// Finds every record's place (one walk, outside whatever is measured).
    pub fn locate(&self) -> Located<'_> {
        let base = self.bytes.as_ptr() as usize;
        let mut spans = Vec::with_capacity(self.packets);
        self.for_each(|_, d| spans.push((d.as_ptr() as usize - base, d.len())));
        Located { buf: self, spans }
    }
}

impl Located<'_> {
    /// Records located.
    pub fn packets(&self) -> usize {
        self.spans.len()
    }

    /// Calls `f` with each record's captured bytes, in order, first asking for the
    /// record header and first bytes of the record 8 on (`LOCATED_AHEAD`).
    #[inline]
    pub fn for_each(&self, mut f: impl FnMut(&[u8])) {
        let b = &self.buf.bytes[..];
        for (i, &(start, len)) in self.spans.iter().enumerate() {
            if let Some(&(ahead, _)) = self.spans.get(i + LOCATED_AHEAD) {
                // Its 16-byte record header and the headers a parser reads after it.
                prefetch(b, ahead.saturating_sub(16));
                prefetch(b, ahead + 48);
            }
            if let Some(d) = b.get(start..start + len) {
                f(d);
            }
        }
    }
}

/// Hints the processor to bring the cache line of `b[at]` in (nothing past the end;
/// nothing at all off x86-64). It changes no result, only when bytes arrive.
#[inline(always)]
fn prefetch(b: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if at < b.len() {
        // SAFETY: `at < b.len()`, so the pointer lies inside `b`; a prefetch reads
        // nothing architecturally and never faults.
        #[allow(unsafe_code)]
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().add(at).cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (b, at);
}

fn digest_located_with(loc: &Located<'_>, per_packet: impl Fn(&[u8]) -> u64) -> u64 {
    let mut h = Fold(0);
    loc.for_each(|data| h.add(per_packet(black_box(data))));
    black_box(h.0)
}

/// [`digest_ours`] over [`Located`] records.
pub fn located_digest_ours(loc: &Located<'_>) -> u64 {
    digest_located_with(loc, packet_ours)
}
/// [`digest_etherparse_sliced`] over [`Located`] records.
pub fn located_digest_etherparse_sliced(loc: &Located<'_>) -> u64 {
    digest_located_with(loc, packet_etherparse_sliced)
}
/// [`buffer_walk_floor`] over [`Located`] records: each packet's first 16 bytes and
/// length, and nothing else.
pub fn located_walk_floor(loc: &Located<'_>) -> u64 {
    digest_located_with(loc, walk_floor_packet)
}

/// A whole-buffer digest function over located records.
pub type LocatedDigestFn = fn(&Located<'_>) -> u64;

/// The goal's pair over [`Located`] records (each gives the same digest as its
/// [`BUFFER_CONTENDERS`] twin).
pub const LOCATED_CONTENDERS: [(&str, LocatedDigestFn); 2] = [
    ("netdiag-wire", located_digest_ours),
    ("etherparse SlicedPacket", located_digest_etherparse_sliced),
];

/// A whole-buffer digest function.
pub type BufferDigestFn = fn(&PcapBuffer) -> u64;

/// The header-slicing contenders over a contiguous [`PcapBuffer`], in the order of
/// [`CONTENDERS`] (each gives the same digest as its per-packet twin).
pub const BUFFER_CONTENDERS: [(&str, BufferDigestFn); 4] = [
    ("netdiag-wire", buffer_digest_ours),
    ("etherparse SlicedPacket", buffer_digest_etherparse_sliced),
    ("etherparse LaxSlicedPacket", buffer_digest_etherparse_lax),
    ("etherparse PacketHeaders", buffer_digest_etherparse_headers),
];

// ---------------------------------------------------------------------------------
// Real captures
// ---------------------------------------------------------------------------------

/// All packets of one capture file (any link type).
pub fn load_capture(path: &Path) -> Result<Vec<GenPacket>, netdiag_pcapio::Error> {
    let mut r = netdiag_pcapio::Reader::open(path)?;
    let mut out = Vec::new();
    while let Some(p) = r.next_packet()? {
        out.push(GenPacket {
            timestamp_ns: p.timestamp_ns,
            link_type: p.link_type,
            data: p.data.to_vec(),
        });
    }
    Ok(out)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn capture_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            capture_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
            out.push(p);
        }
    }
}

fn load_ethernet(files: &[PathBuf]) -> Vec<GenPacket> {
    let mut out = Vec::new();
    for f in files {
        // Unreadable or malformed files are simply not part of a benchmark corpus.
        if let Ok(pkts) = load_capture(f) {
            out.extend(
                pkts.into_iter()
                    .filter(|p| LinkType::from_linktype(p.link_type) == LinkType::Ethernet),
            );
        }
    }
    agreeing(out)
}

/// Ethernet packets of every capture under `testdata/` on which all contenders agree.
pub fn load_testdata() -> Vec<GenPacket> {
    let mut files = Vec::new();
    capture_files(&workspace_root().join("testdata"), &mut files);
    files.sort();
    load_ethernet(&files)
}

/// Ethernet packets of up to `max_files` tcpdump-corpus files (`$NETDIAG_CORPUS`, else
/// `../shared/corpus/tcpdump-tests`), keeping those on which all contenders agree
/// (the corpus is full of deliberately broken packets that parsers judge differently).
pub fn load_corpus_sample(max_files: usize) -> Vec<GenPacket> {
    let dir = std::env::var_os("NETDIAG_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/corpus/tcpdump-tests"));
    let mut files = Vec::new();
    capture_files(&dir, &mut files);
    files.sort();
    files.truncate(max_files);
    load_ethernet(&files)
}

/// Keeps the packets whose per-packet digests agree across all contenders.
pub fn agreeing(packets: Vec<GenPacket>) -> Vec<GenPacket> {
    packets
        .into_iter()
        .filter(|p| {
            let d = packet_ours(&p.data);
            d == packet_etherparse_sliced(&p.data)
                && d == packet_etherparse_lax(&p.data)
                && d == packet_etherparse_headers(&p.data)
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Digests
// ---------------------------------------------------------------------------------

/// Folded value of a frame that was not captured completely.
pub const DIGEST_INCOMPLETE: u64 = 0x1;
/// Folded value of a complete frame without TCP/UDP.
pub const DIGEST_OTHER: u64 = 0x2;

#[derive(Clone, Copy)]
struct Fold(u64);

impl Fold {
    #[inline(always)]
    fn add(&mut self, x: u64) {
        self.0 = (self.0 ^ x)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(23);
    }
    /// Folds an address as big-endian 8-byte words, the last one zero-padded. IPv4 and
    /// IPv6 (the only lengths the contenders pass) take fixed-size reads: the same
    /// values as the general loop, without its variable-length copy (a `memcpy` call
    /// per word, ~75 instructions a packet that every contender paid alike).
    #[inline(always)]
    fn addr(&mut self, a: &[u8]) {
        if let Ok(v4) = <[u8; 4]>::try_from(a) {
            self.add(u64::from(u32::from_be_bytes(v4)) << 32);
            return;
        }
        if let Ok(v6) = <[u8; 16]>::try_from(a) {
            let v6 = u128::from_be_bytes(v6);
            self.add((v6 >> 64) as u64);
            self.add(v6 as u64);
            return;
        }
        for c in a.chunks(8) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.add(u64::from_be_bytes(b));
        }
    }
}

/// The fields every contender must extract, in one place so they fold identically.
struct Fields<'a> {
    src: &'a [u8],
    dst: &'a [u8],
    protocol: u8,
    src_port: u16,
    dst_port: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &'a [u8],
}

#[inline(always)]
fn fold_fields(f: &Fields<'_>) -> u64 {
    let mut h = Fold(0x6e64);
    h.addr(f.src);
    h.addr(f.dst);
    h.add(u64::from(f.protocol) << 32 | u64::from(f.src_port) << 16 | u64::from(f.dst_port));
    h.add(u64::from(f.flags) << 32 | f.payload.len() as u64);
    h.add(u64::from(f.seq) << 32 | u64::from(f.ack));
    if f.protocol == 17 && (f.src_port == 53 || f.dst_port == 53) {
        let q = dns::Message::parse(f.payload)
            .ok()
            .and_then(|m| m.question());
        h.add(q.map_or(0, |q| q.name.hash_lowercase()));
    }
    h.0
}

/// Per-packet digest with netdiag-wire (Ethernet frames).
#[inline]
pub fn packet_ours(data: &[u8]) -> u64 {
    let f = Frame::parse(LinkType::Ethernet, data);
    if f.stop.is_some() {
        return DIGEST_INCOMPLETE;
    }
    let (src, dst): (&[u8], &[u8]);
    let (a4, b4, a6, b6);
    match &f.net {
        Some(Net::Ipv4(ip)) => {
            a4 = ip.src.octets();
            b4 = ip.dst.octets();
            (src, dst) = (&a4, &b4);
        }
        Some(Net::Ipv6(ip)) => {
            a6 = ip.src.octets();
            b6 = ip.dst.octets();
            (src, dst) = (&a6, &b6);
        }
        _ => return DIGEST_OTHER,
    }
    let fields = match &f.transport {
        Some(Transport::Tcp(t)) => {
            if t.payload.len() != t.payload_len as usize {
                return DIGEST_INCOMPLETE;
            }
            Fields {
                src,
                dst,
                protocol: 6,
                src_port: t.src_port,
                dst_port: t.dst_port,
                flags: t.flags.0,
                seq: t.seq,
                ack: t.ack,
                payload: t.payload,
            }
        }
        Some(Transport::Udp(u)) => {
            if u.payload.len() != u.payload_len as usize {
                return DIGEST_INCOMPLETE;
            }
            Fields {
                src,
                dst,
                protocol: 17,
                src_port: u.src_port,
                dst_port: u.dst_port,
                flags: 0,
                seq: 0,
                ack: 0,
                payload: u.payload,
            }
        }
        _ => return DIGEST_OTHER,
    };
    fold_fields(&fields)
}

#[inline(always)]
fn tcp_flags_byte(bits: [bool; 8]) -> u8 {
    bits.iter()
        .enumerate()
        .fold(0u8, |acc, (i, &on)| acc | (u8::from(on) << i))
}

#[inline(always)]
fn fields_from_transport<'a>(
    src: &'a [u8],
    dst: &'a [u8],
    t: &TransportSlice<'a>,
) -> Option<Fields<'a>> {
    Some(match t {
        TransportSlice::Tcp(t) => Fields {
            src,
            dst,
            protocol: 6,
            src_port: t.source_port(),
            dst_port: t.destination_port(),
            flags: tcp_flags_byte([
                t.fin(),
                t.syn(),
                t.rst(),
                t.psh(),
                t.ack(),
                t.urg(),
                t.ece(),
                t.cwr(),
            ]),
            seq: t.sequence_number(),
            ack: t.acknowledgment_number(),
            payload: t.payload(),
        },
        TransportSlice::Udp(u) => Fields {
            src,
            dst,
            protocol: 17,
            src_port: u.source_port(),
            dst_port: u.destination_port(),
            flags: 0,
            seq: 0,
            ack: 0,
            payload: u.payload(),
        },
        _ => return None,
    })
}

/// Per-packet digest with etherparse's strict `SlicedPacket`.
#[inline]
pub fn packet_etherparse_sliced(data: &[u8]) -> u64 {
    let Ok(p) = SlicedPacket::from_ethernet(data) else {
        return DIGEST_INCOMPLETE;
    };
    let (src, dst): (&[u8], &[u8]) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => (
            ip.header().slice().get(12..16).unwrap_or(&[]),
            ip.header().slice().get(16..20).unwrap_or(&[]),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().slice().get(8..24).unwrap_or(&[]),
            ip.header().slice().get(24..40).unwrap_or(&[]),
        ),
        _ => return DIGEST_OTHER,
    };
    match p
        .transport
        .as_ref()
        .and_then(|t| fields_from_transport(src, dst, t))
    {
        Some(f) => fold_fields(&f),
        None => DIGEST_OTHER,
    }
}

/// Per-packet digest with etherparse's `LaxSlicedPacket`.
#[inline]
pub fn packet_etherparse_lax(data: &[u8]) -> u64 {
    let Ok(p) = LaxSlicedPacket::from_ethernet(data) else {
        return DIGEST_INCOMPLETE;
    };
    if p.stop_err.is_some() {
        return DIGEST_INCOMPLETE;
    }
    let (src, dst, incomplete): (&[u8], &[u8], bool) = match &p.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header().slice();
            (
                h.get(12..16).unwrap_or(&[]),
                h.get(16..20).unwrap_or(&[]),
                ip.payload().incomplete,
            )
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header().slice();
            (
                h.get(8..24).unwrap_or(&[]),
                h.get(24..40).unwrap_or(&[]),
                ip.payload().incomplete,
            )
        }
        _ => return DIGEST_OTHER,
    };
    if incomplete {
        return DIGEST_INCOMPLETE;
    }
    match p
        .transport
        .as_ref()
        .and_then(|t| fields_from_transport(src, dst, t))
    {
        Some(f) => fold_fields(&f),
        None => DIGEST_OTHER,
    }
}

/// Per-packet digest with etherparse's `PacketHeaders` (decodes into owned headers).
#[inline]
pub fn packet_etherparse_headers(data: &[u8]) -> u64 {
    let Ok(p) = PacketHeaders::from_ethernet_slice(data) else {
        return DIGEST_INCOMPLETE;
    };
    let (s4, d4, s6, d6);
    let (src, dst): (&[u8], &[u8]) = match &p.net {
        Some(NetHeaders::Ipv4(h, _)) => {
            (s4, d4) = (h.source, h.destination);
            (&s4, &d4)
        }
        Some(NetHeaders::Ipv6(h, _)) => {
            (s6, d6) = (h.source, h.destination);
            (&s6, &d6)
        }
        _ => return DIGEST_OTHER,
    };
    let f = match (&p.transport, &p.payload) {
        (Some(TransportHeader::Tcp(t)), PayloadSlice::Tcp(payload)) => Fields {
            src,
            dst,
            protocol: 6,
            src_port: t.source_port,
            dst_port: t.destination_port,
            flags: tcp_flags_byte([t.fin, t.syn, t.rst, t.psh, t.ack, t.urg, t.ece, t.cwr]),
            seq: t.sequence_number,
            ack: t.acknowledgment_number,
            payload,
        },
        (Some(TransportHeader::Udp(u)), PayloadSlice::Udp(payload)) => Fields {
            src,
            dst,
            protocol: 17,
            src_port: u.source_port,
            dst_port: u.destination_port,
            flags: 0,
            seq: 0,
            ack: 0,
            payload,
        },
        _ => return DIGEST_OTHER,
    };
    fold_fields(&f)
}

#[inline(always)]
fn digest_with(packets: &[GenPacket], per_packet: impl Fn(&[u8]) -> u64) -> u64 {
    let mut h = Fold(0);
    for p in packets {
        h.add(per_packet(black_box(&p.data)));
    }
    black_box(h.0)
}

/// Whole-corpus digest with netdiag-wire.
pub fn digest_ours(packets: &[GenPacket]) -> u64 {
    digest_with(packets, packet_ours)
}
/// Whole-corpus digest with etherparse `SlicedPacket`.
pub fn digest_etherparse_sliced(packets: &[GenPacket]) -> u64 {
    digest_with(packets, packet_etherparse_sliced)
}
/// Whole-corpus digest with etherparse `LaxSlicedPacket`.
pub fn digest_etherparse_lax(packets: &[GenPacket]) -> u64 {
    digest_with(packets, packet_etherparse_lax)
}
/// Whole-corpus digest with etherparse `PacketHeaders`.
pub fn digest_etherparse_headers(packets: &[GenPacket]) -> u64 {
    digest_with(packets, packet_etherparse_headers)
}

/// A whole-corpus digest function.
pub type DigestFn = fn(&[GenPacket]) -> u64;

/// The header-slicing contenders by name, for benches and tests.
pub const CONTENDERS: [(&str, DigestFn); 4] = [
    ("netdiag-wire", digest_ours),
    ("etherparse SlicedPacket", digest_etherparse_sliced),
    ("etherparse LaxSlicedPacket", digest_etherparse_lax),
    ("etherparse PacketHeaders", digest_etherparse_headers),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The walk floor reads every packet's first 16 bytes and its length, and nothing
    /// past them: it is the walk every contender pays, not a parse.
    #[test]
    fn the_walk_floor_reads_each_packets_first_16_bytes_and_length() {
        let mix = generate_mix(100, 2_000, 5);
        let floor = buffer_walk_floor(&PcapBuffer::new(&mix));
        let with = |i: usize, at: usize| {
            let mut m = mix.clone();
            let d = &mut m[i].data;
            d[at] ^= 0x5a;
            buffer_walk_floor(&PcapBuffer::new(&m))
        };
        let last = mix.len() - 1;
        assert!(mix[last].data.len() > 16);
        for (i, at) in [(0, 0), (0, 15), (last, 15), (last / 2, 7)] {
            assert_ne!(with(i, at), floor, "byte {at} of packet {i} not read");
        }
        assert_eq!(with(last, 16), floor, "byte 16 read");
        let mut shorter = mix.clone();
        shorter[last].data.pop();
        assert_ne!(
            buffer_walk_floor(&PcapBuffer::new(&shorter)),
            floor,
            "length not read"
        );
    }

    #[test]
    fn all_contenders_produce_the_same_digest_on_the_generated_mix() {
        let mix = generate_mix(500, 20_000, 7);
        assert_eq!(mix.len(), 20_000);
        for (i, p) in mix.iter().enumerate() {
            let d = packet_ours(&p.data);
            assert_eq!(
                d,
                packet_etherparse_sliced(&p.data),
                "packet {i} (SlicedPacket)"
            );
            assert_eq!(
                d,
                packet_etherparse_lax(&p.data),
                "packet {i} (LaxSlicedPacket)"
            );
            assert_eq!(
                d,
                packet_etherparse_headers(&p.data),
                "packet {i} (PacketHeaders)"
            );
        }
        let expect = digest_ours(&mix);
        for (name, f) in CONTENDERS {
            assert_eq!(f(&mix), expect, "{name}");
        }
        // The mix really contains what the docs promise.
        let frames: Vec<Frame<'_>> = mix
            .iter()
            .map(|p| Frame::parse(LinkType::Ethernet, &p.data))
            .collect();
        let count = |pred: &dyn Fn(&Frame<'_>) -> bool| frames.iter().filter(|f| pred(f)).count();
        let syns = count(&|f| f.tcp().is_some_and(|t| t.flags.0 == TCP_SYN));
        let fins = count(&|f| f.tcp().is_some_and(|t| t.flags.fin()));
        let nx = count(&|f| matches!(f.dns(), Some(Ok(m)) if m.rcode() == dns::Rcode::NXDOMAIN));
        let truncated = mix
            .iter()
            .filter(|p| packet_ours(&p.data) == DIGEST_INCOMPLETE)
            .count();
        let v6 = count(&|f| matches!(f.net, Some(Net::Ipv6(_))));
        let vlan = count(&|f| f.vlan.is_some());
        assert!(
            syns > 100 && fins > 100 && nx > 500 && v6 > 500 && vlan > 200,
            "{syns} {fins} {nx} {v6} {vlan}"
        );
        assert!((50..=400).contains(&truncated), "{truncated}");
        // Expanded lookups: the same logical name under each search suffix.
        let expanded = count(
            &|f| matches!(f.dns(), Some(Ok(m)) if m.question().is_some_and(|q| q.name.ends_with(&[b"svc", b"cluster", b"local"]))),
        );
        assert!(expanded > 500, "{expanded}");
    }

    #[test]
    fn contiguous_buffer_digests_equal_the_per_packet_ones() {
        let mix = generate_mix(300, 10_000, 9);
        let buf = PcapBuffer::new(&mix);
        assert_eq!(buf.packets(), mix.len());
        assert_eq!(buf.captured_bytes(), total_bytes(&mix));
        let mut n = 0;
        buf.for_each(|ts, data| {
            assert_eq!((ts, data), (mix[n].timestamp_ns, &mix[n].data[..]));
            n += 1;
        });
        assert_eq!(n, mix.len());
        for ((name, per_packet), (_, contiguous)) in CONTENDERS.iter().zip(BUFFER_CONTENDERS) {
            assert_eq!(contiguous(&buf), per_packet(&mix), "{name}");
        }
        let located = buf.locate();
        assert_eq!(located.packets(), mix.len());
        let mut n = 0;
        located.for_each(|data| {
            assert_eq!(data, &mix[n].data[..]);
            n += 1;
        });
        assert_eq!(n, mix.len());
        for (name, f) in LOCATED_CONTENDERS {
            let twin = BUFFER_CONTENDERS
                .iter()
                .find(|c| c.0 == name)
                .expect("twin");
            assert_eq!(f(&located), twin.1(&buf), "{name}");
        }
        assert_eq!(located_walk_floor(&located), buffer_walk_floor(&buf));
    }

    /// `Frame::parse` (with its Ethernet fast path) returns what the general parser alone
    /// does on the generated mix and on every packet of every capture in `testdata/` and
    /// the tcpdump corpus (when present), each parsed with its own link type and as
    /// Ethernet.
    #[test]
    fn fast_path_equals_the_general_parser_on_real_and_generated_packets() {
        let check = |link: u32, data: &[u8]| {
            for lt in [LinkType::from_linktype(link), LinkType::Ethernet] {
                assert_eq!(
                    Frame::parse(lt, data),
                    Frame::parse_without_fast_path(lt, data),
                    "{lt:?} {data:02x?}"
                );
            }
        };
        let mix = generate_mix(2_000, 50_000, 11);
        for p in &mix {
            check(p.link_type, &p.data);
        }
        let mut files = Vec::new();
        capture_files(&workspace_root().join("testdata"), &mut files);
        let corpus = std::env::var_os("NETDIAG_CORPUS")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("../shared/corpus/tcpdump-tests"));
        capture_files(&corpus, &mut files);
        let mut packets = 0;
        for f in &files {
            for p in load_capture(f).unwrap_or_default() {
                check(p.link_type, &p.data);
                packets += 1;
            }
        }
        assert!(
            packets > 1_000,
            "{packets} packets in {} files",
            files.len()
        );
    }

    #[test]
    fn generator_is_deterministic_and_seeded() {
        assert_eq!(generate_mix(100, 3000, 1), generate_mix(100, 3000, 1));
        assert_ne!(generate_mix(100, 3000, 1), generate_mix(100, 3000, 2));
    }

    #[test]
    fn generated_mix_round_trips_through_pcap() {
        let mix = generate_mix(50, 2000, 3);
        let bytes = write_pcap(Vec::new(), &mix).unwrap();
        let mut r = netdiag_pcapio::Reader::new(&bytes[..]).unwrap();
        let mut n = 0;
        while let Some(p) = r.next_packet().unwrap() {
            assert_eq!(p.data, &mix[n].data[..]);
            assert_eq!(p.timestamp_ns, mix[n].timestamp_ns);
            n += 1;
        }
        assert_eq!(n, mix.len());
    }
}
