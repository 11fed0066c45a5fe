//! The conntrack table of the calling thread's namespace over ctnetlink (≈ `conntrack -L`),
//! and a summary grouped by post-NAT source and destination, which is what attributes SNAT
//! port pressure: every NATed flow to one destination IP:port needs its own post-NAT
//! source IP:port.
//!
//! No crate decodes ctnetlink well, so the nested attributes are parsed here, by attribute
//! type (`CTA_*` from `<linux/netfilter/nfnetlink_conntrack.h>`); unknown attributes are kept
//! as [`OtherAttr`], never an error.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NetlinkDeserializable, NetlinkHeader, NetlinkSerializable};
use netlink_sys::protocols::NETLINK_NETFILTER;

use crate::Error;
use crate::netlink::dump_each;

// <linux/netfilter/nfnetlink.h>, <linux/netfilter/nfnetlink_conntrack.h>
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;

mod cta {
    pub(super) const TUPLE_ORIG: u16 = 1;
    pub(super) const TUPLE_REPLY: u16 = 2;
    pub(super) const STATUS: u16 = 3;
    pub(super) const PROTOINFO: u16 = 4;
    pub(super) const TIMEOUT: u16 = 7;
    pub(super) const MARK: u16 = 8;
    pub(super) const ID: u16 = 12;
    pub(super) const ZONE: u16 = 18;
    // inside a tuple
    pub(super) const TUPLE_IP: u16 = 1;
    pub(super) const TUPLE_PROTO: u16 = 2;
    // inside CTA_TUPLE_IP
    pub(super) const IP_V4_SRC: u16 = 1;
    pub(super) const IP_V4_DST: u16 = 2;
    pub(super) const IP_V6_SRC: u16 = 3;
    pub(super) const IP_V6_DST: u16 = 4;
    // inside CTA_TUPLE_PROTO
    pub(super) const PROTO_NUM: u16 = 1;
    pub(super) const PROTO_SRC_PORT: u16 = 2;
    pub(super) const PROTO_DST_PORT: u16 = 3;
    // inside CTA_PROTOINFO
    pub(super) const PROTOINFO_TCP: u16 = 1;
    pub(super) const PROTOINFO_TCP_STATE: u16 = 1;
}

/// `IPS_SRC_NAT`: the entry's source was translated (SNAT / MASQUERADE).
pub const IPS_SRC_NAT: u32 = 1 << 4;
/// `IPS_DST_NAT`: the entry's destination was translated (DNAT, a Service VIP).
pub const IPS_DST_NAT: u32 = 1 << 5;
/// `IPS_SEEN_REPLY`: packets were seen in both directions.
pub const IPS_SEEN_REPLY: u32 = 1 << 1;

/// An attribute this crate does not decode, kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OtherAttr {
    /// Attribute type (nested flag masked off).
    pub kind: u16,
    /// Raw value bytes.
    pub value: Vec<u8>,
}

/// One direction of a connection, as conntrack tracks it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Tuple {
    /// Source address.
    pub src: Option<IpAddr>,
    /// Destination address.
    pub dst: Option<IpAddr>,
    /// IP protocol number (6 = TCP, 17 = UDP).
    pub proto: Option<u8>,
    /// Source port (TCP/UDP/SCTP).
    pub src_port: Option<u16>,
    /// Destination port.
    pub dst_port: Option<u16>,
    /// Undecoded attributes of the tuple.
    pub other: Vec<OtherAttr>,
}

/// One conntrack entry (a line of `conntrack -L`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Entry {
    /// The original direction (as the first packet was seen, before NAT).
    pub orig: Tuple,
    /// The reply direction; after NAT it shows the translated addresses.
    pub reply: Tuple,
    /// `IPS_*` status bits.
    pub status: u32,
    /// TCP state (`3` = ESTABLISHED, `7` = TIME_WAIT), see [`tcp_state_name`].
    pub tcp_state: Option<u8>,
    /// Seconds until the entry expires.
    pub timeout: Option<u32>,
    /// Connection mark.
    pub mark: Option<u32>,
    /// Conntrack zone.
    pub zone: Option<u16>,
    /// Entry id.
    pub id: Option<u32>,
    /// Undecoded top-level attributes (counters, timestamps, labels, …).
    pub other: Vec<OtherAttr>,
}

impl Entry {
    /// Source after NAT: the reply goes back to it.
    pub fn post_nat_src(&self) -> Option<(IpAddr, Option<u16>)> {
        Some((self.reply.dst?, self.reply.dst_port))
    }

    /// Destination after NAT: the reply comes from it.
    pub fn post_nat_dst(&self) -> Option<(IpAddr, Option<u16>)> {
        Some((self.reply.src?, self.reply.src_port))
    }
}

/// The name `conntrack -L` prints for a TCP state number.
pub fn tcp_state_name(state: u8) -> &'static str {
    match state {
        0 => "NONE",
        1 => "SYN_SENT",
        2 => "SYN_RECV",
        3 => "ESTABLISHED",
        4 => "FIN_WAIT",
        5 => "CLOSE_WAIT",
        6 => "LAST_ACK",
        7 => "TIME_WAIT",
        8 => "CLOSE",
        9 => "SYN_SENT2",
        _ => "UNKNOWN",
    }
}

/// Entries sharing one post-NAT source address and one post-NAT destination.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Group {
    /// IP protocol number.
    pub proto: u8,
    /// Post-NAT source address (the SNAT address for masqueraded flows).
    pub src: IpAddr,
    /// Post-NAT destination address.
    pub dst: IpAddr,
    /// Post-NAT destination port.
    pub dst_port: Option<u16>,
    /// Number of entries.
    pub entries: u32,
    /// Distinct post-NAT source ports in use: what runs out under SNAT pressure.
    pub src_ports: u32,
    /// Entries whose source was translated.
    pub snat: u32,
    /// Entries whose destination was translated.
    pub dnat: u32,
    /// Entries never answered (`[UNREPLIED]`).
    pub unreplied: u32,
    /// Entries per TCP state name.
    pub tcp_states: BTreeMap<String, u32>,
}

type GroupKey = (u8, IpAddr, IpAddr, Option<u16>);

/// Builds the [`Group`] summary one entry at a time, so a large table need not be held.
#[derive(Debug, Default)]
pub struct Summarizer {
    groups: BTreeMap<GroupKey, (Group, BTreeSet<Option<u16>>)>,
}

impl Summarizer {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Count one entry. Entries without both tuples or a protocol are skipped.
    pub fn add(&mut self, e: &Entry) {
        let (Some((src, sport)), Some((dst, dport)), Some(proto)) =
            (e.post_nat_src(), e.post_nat_dst(), e.orig.proto)
        else {
            return;
        };
        let (g, ports) = self
            .groups
            .entry((proto, src, dst, dport))
            .or_insert_with(|| {
                (
                    Group {
                        proto,
                        src,
                        dst,
                        dst_port: dport,
                        entries: 0,
                        src_ports: 0,
                        snat: 0,
                        dnat: 0,
                        unreplied: 0,
                        tcp_states: BTreeMap::new(),
                    },
                    BTreeSet::new(),
                )
            });
        g.entries = g.entries.saturating_add(1);
        ports.insert(sport);
        if e.status & IPS_SRC_NAT != 0 {
            g.snat = g.snat.saturating_add(1);
        }
        if e.status & IPS_DST_NAT != 0 {
            g.dnat = g.dnat.saturating_add(1);
        }
        if e.status & IPS_SEEN_REPLY == 0 {
            g.unreplied = g.unreplied.saturating_add(1);
        }
        if let Some(s) = e.tcp_state {
            let n = g
                .tcp_states
                .entry(tcp_state_name(s).to_owned())
                .or_insert(0);
            *n = n.saturating_add(1);
        }
    }

    /// The groups, largest first.
    pub fn finish(self) -> Vec<Group> {
        let mut out: Vec<Group> = self
            .groups
            .into_values()
            .map(|(mut g, ports)| {
                g.src_ports = u32::try_from(ports.len()).unwrap_or(u32::MAX);
                g
            })
            .collect();
        out.sort_by_key(|g| std::cmp::Reverse(g.entries));
        out
    }
}

/// Group entries by (protocol, post-NAT source address, post-NAT destination address:port),
/// largest groups first.
pub fn summarize(entries: &[Entry]) -> Vec<Group> {
    let mut s = Summarizer::new();
    for e in entries {
        s.add(e);
    }
    s.finish()
}

/// The `IPCTNL_MSG_CT_GET` dump request, all families.
pub(crate) fn request() -> CtMessage {
    CtMessage {
        message_type: (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
        payload: vec![
            0u8, /* AF_UNSPEC: all families */
            0,   /* NFNETLINK_V0 */
            0, 0,
        ],
    }
}

/// Dump the conntrack table of the calling thread's namespace (IPv4 and IPv6), ≈
/// `conntrack -L`. Needs CAP_NET_ADMIN ([`Error::PermissionDenied`] otherwise).
///
/// The kernel walks the table while it changes: on a busy node the dump is a consistent
/// picture of each entry, not of the table at one instant.
pub fn entries() -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    for_each_entry(|e| out.push(e))?;
    Ok(out)
}

/// Like [`entries`], one entry at a time, without holding the table.
pub fn for_each_entry(mut f: impl FnMut(Entry)) -> Result<(), Error> {
    dump_each(NETLINK_NETFILTER, "ctnetlink", request(), |m: CtMessage| {
        if let Some(e) = entry(&m)? {
            f(e);
        }
        Ok(())
    })
}

/// The entry a ctnetlink dump message carries; `None` for other message types.
pub(crate) fn entry(m: &CtMessage) -> Result<Option<Entry>, Error> {
    if m.message_type == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW {
        parse_entry(&m.payload).map(Some)
    } else {
        Ok(None)
    }
}

/// The table summary, streamed: [`summarize`] of [`entries`] without holding them.
pub fn summary() -> Result<Vec<Group>, Error> {
    let mut s = Summarizer::new();
    for_each_entry(|e| s.add(&e))?;
    Ok(s.finish())
}

/// A ctnetlink message: the type and the payload after the netlink header
/// (`struct nfgenmsg` + attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CtMessage {
    message_type: u16,
    payload: Vec<u8>,
}

impl NetlinkSerializable for CtMessage {
    fn message_type(&self) -> u16 {
        self.message_type
    }
    fn buffer_len(&self) -> usize {
        self.payload.len()
    }
    fn serialize(&self, buffer: &mut [u8]) {
        let n = buffer.len().min(self.payload.len());
        buffer[..n].copy_from_slice(&self.payload[..n]);
    }
}

/// Decoding a ctnetlink message never fails at this layer (the bytes are kept); errors
/// come from [`parse_entry`].
#[derive(Debug, thiserror::Error)]
#[error("unreachable ctnetlink decode error")]
pub(crate) struct NeverFails;

impl NetlinkDeserializable for CtMessage {
    type Error = NeverFails;
    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, NeverFails> {
        Ok(CtMessage {
            message_type: header.message_type,
            payload: payload.to_vec(),
        })
    }
}

fn bad(reason: String) -> Error {
    Error::NetlinkDecode {
        what: "ctnetlink",
        reason,
    }
}

/// Iterate over the netlink attributes in `buf`: (type without flags, value).
fn attrs(buf: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), Error>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            let r = rest.len();
            rest = &[];
            return Some(Err(bad(format!(
                "attribute type {kind} claims {len} bytes, {r} left"
            ))));
        }
        let value = &rest[4..len];
        let padded = (len + 3) & !3;
        rest = rest.get(padded..).unwrap_or(&[]);
        Some(Ok((kind, value)))
    })
}

fn be_u16(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?))
}

fn be_u32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

fn ip(v: &[u8]) -> Option<IpAddr> {
    match v.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?))),
        _ => None,
    }
}

fn parse_tuple(buf: &[u8]) -> Result<Tuple, Error> {
    let mut t = Tuple::default();
    for a in attrs(buf) {
        let (kind, value) = a?;
        match kind {
            cta::TUPLE_IP => {
                for a in attrs(value) {
                    let (k, v) = a?;
                    match k {
                        cta::IP_V4_SRC | cta::IP_V6_SRC => t.src = ip(v),
                        cta::IP_V4_DST | cta::IP_V6_DST => t.dst = ip(v),
                        _ => t.other.push(OtherAttr {
                            kind: k,
                            value: v.to_vec(),
                        }),
                    }
                }
            }
            cta::TUPLE_PROTO => {
                for a in attrs(value) {
                    let (k, v) = a?;
                    match k {
                        cta::PROTO_NUM => t.proto = v.first().copied(),
                        cta::PROTO_SRC_PORT => t.src_port = be_u16(v),
                        cta::PROTO_DST_PORT => t.dst_port = be_u16(v),
                        _ => t.other.push(OtherAttr {
                            kind: k,
                            value: v.to_vec(),
                        }),
                    }
                }
            }
            _ => t.other.push(OtherAttr {
                kind,
                value: value.to_vec(),
            }),
        }
    }
    Ok(t)
}

/// Parse one `IPCTNL_MSG_CT_NEW` payload (`struct nfgenmsg` + attributes).
pub fn parse_entry(payload: &[u8]) -> Result<Entry, Error> {
    let body = payload.get(4..).ok_or_else(|| {
        bad(format!(
            "payload of {} bytes has no nfgenmsg",
            payload.len()
        ))
    })?;
    let mut e = Entry::default();
    for a in attrs(body) {
        let (kind, value) = a?;
        match kind {
            cta::TUPLE_ORIG => e.orig = parse_tuple(value)?,
            cta::TUPLE_REPLY => e.reply = parse_tuple(value)?,
            cta::STATUS => e.status = be_u32(value).unwrap_or(0),
            cta::TIMEOUT => e.timeout = be_u32(value),
            cta::MARK => e.mark = be_u32(value),
            cta::ID => e.id = be_u32(value),
            cta::ZONE => e.zone = be_u16(value),
            cta::PROTOINFO => {
                for a in attrs(value) {
                    let (k, v) = a?;
                    if k == cta::PROTOINFO_TCP {
                        for a in attrs(v) {
                            let (k2, v2) = a?;
                            if k2 == cta::PROTOINFO_TCP_STATE {
                                e.tcp_state = v2.first().copied();
                            }
                        }
                    }
                }
                e.other.push(OtherAttr {
                    kind,
                    value: value.to_vec(),
                });
            }
            _ => e.other.push(OtherAttr {
                kind,
                value: value.to_vec(),
            }),
        }
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `IPCTNL_MSG_CT_NEW` payload (nfgenmsg + attributes) from this project's lab
    /// kernel (Linux 6.18.44): netns `ndk-ctfix` with
    /// `iptables -t nat -A OUTPUT -p tcp -d 127.0.0.1 --dport 9100 -j DNAT --to-destination
    /// 127.0.0.1:9101`, one established connection from port 56116, dumped with a raw
    /// NETLINK_NETFILTER socket while ESTABLISHED (moments later, with the process gone,
    /// `conntrack -L` showed the same entry closing: `tcp 6 9 CLOSE src=127.0.0.1
    /// dst=127.0.0.1 sport=56116 dport=9100 src=127.0.0.1 dst=127.0.0.1 sport=9101
    /// dport=56116 [ASSURED] mark=0 use=1`).
    const CT_NEW_DNAT: &str = "020000003400018014000180080001007f000001080002007f0000011c00028005\
        0001000600000006000200db34000006000300238c00003400028014000180080001007f000001080002007f\
        0000011c000280050001000600000006000200238d000006000300db34000008000300000001ae0800080000\
        00000008000c00475bf35a08000b0000000001080007000006977f300004802c000180050001000300000005\
        0002000a000000050003000a00000006000400230000000600050023000000";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn parses_a_real_dnat_entry() {
        let e = parse_entry(&unhex(CT_NEW_DNAT)).unwrap();
        let lo = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!((e.orig.src, e.orig.dst), (lo, lo));
        assert_eq!(e.orig.proto, Some(6));
        assert_eq!(
            (e.orig.src_port, e.orig.dst_port),
            (Some(56116), Some(9100))
        );
        assert_eq!(
            (e.reply.src_port, e.reply.dst_port),
            (Some(9101), Some(56116))
        );
        assert_eq!(e.status, 0x1ae);
        assert!(e.status & IPS_DST_NAT != 0 && e.status & IPS_SRC_NAT == 0);
        assert_eq!(e.tcp_state.map(tcp_state_name), Some("ESTABLISHED"));
        assert_eq!(e.timeout, Some(431_999));
        assert_eq!(e.mark, Some(0));
        assert_eq!(e.id, Some(0x475b_f35a));
        // CTA_USE (11) is not decoded: kept, as is the raw protoinfo
        assert!(
            e.other
                .iter()
                .any(|a| a.kind == 11 && a.value == [0, 0, 0, 1])
        );
        assert!(e.other.iter().any(|a| a.kind == cta::PROTOINFO));
        assert_eq!(
            e.post_nat_dst(),
            Some((IpAddr::V4(Ipv4Addr::LOCALHOST), Some(9101)))
        );
    }

    #[test]
    fn truncated_attribute_is_an_error_not_a_panic() {
        let bytes = unhex(CT_NEW_DNAT);
        for cut in 0..bytes.len() {
            // every prefix either parses (cut at an attribute boundary) or errors
            let _ = parse_entry(&bytes[..cut]);
        }
        let err = parse_entry(&bytes[..40]).unwrap_err();
        assert!(err.to_string().contains("ctnetlink"), "{err}");
    }

    #[test]
    fn summary_groups_by_post_nat_source_and_destination() {
        let base = parse_entry(&unhex(CT_NEW_DNAT)).unwrap();
        let mut entries = Vec::new();
        for port in [40000u16, 40001, 40001] {
            let mut e = base.clone();
            e.reply.dst_port = Some(port);
            e.status = IPS_SRC_NAT;
            entries.push(e);
        }
        let mut other = base.clone();
        other.reply.src_port = Some(53);
        other.orig.proto = Some(17);
        other.tcp_state = None;
        entries.push(other);
        let g = summarize(&entries);
        assert_eq!(g.len(), 2);
        assert_eq!(
            (g[0].entries, g[0].src_ports, g[0].snat, g[0].dnat),
            (3, 2, 3, 0)
        );
        assert_eq!(g[0].unreplied, 3);
        assert_eq!((g[1].proto, g[1].dst_port, g[1].entries), (17, Some(53), 1));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_entry(&bytes);
        }

        #[test]
        fn mutated_real_entry_never_panics(pos in 0usize..196, byte in proptest::num::u8::ANY) {
            let mut bytes = unhex(CT_NEW_DNAT);
            let i = pos % bytes.len();
            bytes[i] = byte;
            if let Ok(e) = parse_entry(&bytes) {
                let _ = summarize(&[e]);
            }
        }
    }
}
