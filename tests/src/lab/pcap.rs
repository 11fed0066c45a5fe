//! Reading back what the lab recorded: a minimal classic-pcap reader (Ethernet only, as
//! tcpdump writes it on a veth) and [`Structure`], the finding-relevant shape of a capture
//! that two recordings of one scenario must share (timestamps and ports may differ).

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::path::Path;

/// One captured packet.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Capture time in microseconds since the epoch.
    pub ts_us: u64,
    /// The captured bytes (an Ethernet frame).
    pub data: Vec<u8>,
}

/// Reads a classic pcap file with link type Ethernet (1).
pub fn read(path: &Path) -> Result<Vec<Packet>> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    parse(&bytes).with_context(|| format!("parse {}", path.display()))
}

fn parse(bytes: &[u8]) -> Result<Vec<Packet>> {
    let Some(head) = bytes.get(..24) else {
        bail!("{} bytes: shorter than a pcap header", bytes.len());
    };
    let magic = [head[0], head[1], head[2], head[3]];
    let (le, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (true, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (true, true),
        [0xa1, 0xb2, 0xc3, 0xd4] => (false, false),
        [0xa1, 0xb2, 0x3c, 0x4d] => (false, true),
        _ => bail!("not a pcap file (magic {magic:02x?})"),
    };
    let u32_at = |b: &[u8], off: usize| -> u32 {
        let w = [b[off], b[off + 1], b[off + 2], b[off + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let link = u32_at(head, 20);
    if link != 1 {
        bail!("link type {link}, expected Ethernet (1)");
    }
    let mut out = Vec::new();
    let mut off = 24;
    while off < bytes.len() {
        let Some(rec) = bytes.get(off..off + 16) else {
            bail!("truncated record header at offset {off}");
        };
        let sec = u64::from(u32_at(rec, 0));
        let frac = u64::from(u32_at(rec, 4));
        let len = usize::try_from(u32_at(rec, 8)).unwrap_or(usize::MAX);
        let Some(data) = bytes.get(off + 16..(off + 16).saturating_add(len)) else {
            bail!("truncated packet at offset {off}");
        };
        out.push(Packet {
            ts_us: sec * 1_000_000 + if nanos { frac / 1000 } else { frac },
            data: data.to_vec(),
        });
        off += 16 + len;
    }
    Ok(out)
}

/// The finding-relevant shape of one capture. Two recordings of the same scenario
/// must yield equal structures; counts that depend on timing are not in here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Structure {
    /// TCP connections attempted (distinct 4-tuples that sent a SYN).
    pub tcp_connections: usize,
    /// Connections whose SYN got a SYN-ACK.
    pub tcp_synacked: usize,
    /// Connections whose SYN was sent more than once (SYN retransmissions).
    pub tcp_syn_retransmitted: usize,
    /// Connections whose SYN-ACK was sent more than once (the final ACK was not taken).
    pub tcp_synack_retransmitted: usize,
    /// Connections that saw at least one RST.
    pub tcp_reset: usize,
    /// Segments whose SEQ lies ≥ 2^29 beyond what that direction had sent so far.
    pub tcp_out_of_window: usize,
    /// Non-RST segments of a 4-tuple never seen opening (e.g. from a Service backend's
    /// address instead of the VIP the connection talks to).
    pub tcp_unknown_flow_segments: usize,
    /// Connections whose client sent data that the server never acknowledged.
    pub tcp_data_unacked: usize,
    /// Every DNS query as `TYPE name`, sorted (with multiplicity).
    pub dns_queries: Vec<String>,
    /// DNS responses, by rcode name (`NOERROR`, `NXDOMAIN`, …).
    pub dns_responses: BTreeMap<String, usize>,
    /// Queries re-sent (same source port, ID and type): the gap, rounded to whole seconds
    /// (the first query of a fresh netns leaves late, after ARP, so the gap is a few ms short).
    pub dns_resent_after_s: Vec<u64>,
}

#[derive(Default)]
struct Flow {
    syns: usize,
    synacks: usize,
    client_isn: Option<u32>,
    client_data: bool,
    server_acked_data: bool,
    rst: bool,
    /// Highest next-SEQ seen per direction (true = from the SYN sender).
    next: [Option<u32>; 2],
}

/// Summarises a capture into its [`Structure`].
pub fn structure(packets: &[Packet]) -> Structure {
    let mut flows: BTreeMap<(SocketAddrV4, SocketAddrV4), Flow> = BTreeMap::new();
    let mut s = Structure::default();
    let mut queries: BTreeMap<(u16, u16, u16), Vec<u64>> = BTreeMap::new();
    for p in packets {
        let Ok(sl) = etherparse::SlicedPacket::from_ethernet(&p.data) else {
            continue;
        };
        let Some(etherparse::NetSlice::Ipv4(ip)) = &sl.net else {
            continue;
        };
        let (src_ip, dst_ip) = (ip.header().source_addr(), ip.header().destination_addr());
        match &sl.transport {
            Some(etherparse::TransportSlice::Tcp(t)) => {
                let a = SocketAddrV4::new(src_ip, t.source_port());
                let b = SocketAddrV4::new(dst_ip, t.destination_port());
                // Key flows by (client, server): a SYN without ACK names the client.
                let (key, from_client) = if t.syn() && !t.ack() {
                    ((a, b), true)
                } else if flows.contains_key(&(b, a)) {
                    ((b, a), false)
                } else {
                    ((a, b), true)
                };
                if !flows.contains_key(&key) && !t.syn() && !t.rst() {
                    s.tcp_unknown_flow_segments += 1;
                }
                let f = flows.entry(key).or_default();
                if t.syn() && !t.ack() {
                    f.syns += 1;
                    f.client_isn = Some(t.sequence_number());
                }
                if let Some(isn) = f.client_isn {
                    if from_client && !t.payload().is_empty() {
                        f.client_data = true;
                    }
                    let acked = t.acknowledgment_number().wrapping_sub(isn);
                    if !from_client && t.ack() && (2..1u32 << 31).contains(&acked) {
                        f.server_acked_data = true;
                    }
                }
                if t.syn() && t.ack() {
                    f.synacks += 1;
                }
                if t.rst() {
                    f.rst = true;
                }
                let dir = usize::from(!from_client);
                let len =
                    u32::try_from(t.payload().len()).unwrap_or(0) + u32::from(t.syn() || t.fin());
                let seq = t.sequence_number();
                match f.next[dir] {
                    Some(next) if !t.rst() => {
                        let ahead = seq.wrapping_sub(next);
                        if (1u32 << 29..1u32 << 31).contains(&ahead) {
                            s.tcp_out_of_window += 1;
                        } else if ahead < 1 << 31 {
                            f.next[dir] = Some(seq.wrapping_add(len));
                        }
                    }
                    None if !t.rst() => f.next[dir] = Some(seq.wrapping_add(len)),
                    _ => {}
                }
            }
            Some(etherparse::TransportSlice::Udp(u))
                if u.source_port() == 53 || u.destination_port() == 53 =>
            {
                let Some(m) = dns(u.payload()) else { continue };
                if m.response {
                    *s.dns_responses.entry(rcode_name(m.rcode)).or_insert(0) += 1;
                } else {
                    s.dns_queries
                        .push(format!("{} {}", qtype_name(m.qtype), m.qname));
                    queries
                        .entry((u.source_port(), m.id, m.qtype))
                        .or_default()
                        .push(p.ts_us);
                }
            }
            _ => {}
        }
    }
    for f in flows.values() {
        if f.syns > 0 {
            s.tcp_connections += 1;
            s.tcp_syn_retransmitted += usize::from(f.syns > 1);
        }
        s.tcp_synacked += usize::from(f.synacks > 0 && f.syns > 0);
        s.tcp_synack_retransmitted += usize::from(f.synacks > 1);
        s.tcp_reset += usize::from(f.rst);
        s.tcp_data_unacked += usize::from(f.client_data && !f.server_acked_data);
    }
    s.dns_queries.sort();
    for times in queries.values() {
        for w in times.windows(2) {
            s.dns_resent_after_s
                .push((w[1] - w[0]).saturating_add(500_000) / 1_000_000);
        }
    }
    s.dns_resent_after_s.sort_unstable();
    s
}

/// The structure of the pcap file at `path`.
pub fn structure_of(path: &Path) -> Result<Structure> {
    Ok(structure(&read(path)?))
}

struct Dns {
    id: u16,
    response: bool,
    rcode: u8,
    qtype: u16,
    qname: String,
}

fn dns(b: &[u8]) -> Option<Dns> {
    let id = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
    let flags = *b.get(2)?;
    let rcode = *b.get(3)? & 0x0f;
    let mut off = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*b.get(off)?);
        off += 1;
        if len == 0 {
            break;
        }
        if len >= 0xc0 {
            return None;
        }
        labels.push(String::from_utf8_lossy(b.get(off..off + len)?).into_owned());
        off += len;
    }
    let qtype = u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]);
    Some(Dns {
        id,
        response: flags & 0x80 != 0,
        rcode,
        qtype,
        qname: labels.join("."),
    })
}

fn qtype_name(t: u16) -> String {
    match t {
        1 => "A".into(),
        28 => "AAAA".into(),
        o => format!("TYPE{o}"),
    }
}

fn rcode_name(r: u8) -> String {
    match r {
        0 => "NOERROR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        o => format!("RCODE{o}"),
    }
}
