//! Link layers: what `tcpdump -e` prints before the IP header.
//!
//! Ethernet (with 802.1Q / 802.1ad / QinQ tags), Linux "cooked" captures SLL and SLL2
//! (`tcpdump -i any`; ksniff users hit SLL2), raw IP, BSD loopback (`NULL`, `LOOP`),
//! Apple's PKTAP (a metadata header naming the link type of the frame inside) and ARCNET
//! (BSD and Linux headers), as far as the IP header.

use crate::bytes::{be16, be32, byte, tail};

/// pcap `LINKTYPE_*` values we understand; anything else is [`LinkType::Other`].
///
/// See <https://www.tcpdump.org/linktypes.html>.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// `LINKTYPE_ETHERNET` (1): Ethernet II, optionally with 802.1Q/802.1ad tags.
    Ethernet,
    /// `LINKTYPE_NULL` (0): BSD loopback, a 4-byte address family in the capturing host's
    /// byte order (both orders are accepted).
    Null,
    /// `LINKTYPE_LOOP` (108): OpenBSD loopback, a 4-byte big-endian address family.
    Loop,
    /// `LINKTYPE_RAW` (101, and the DLT values 12 and 14 some systems wrote to files):
    /// raw IPv4 or IPv6, chosen by the version nibble.
    Raw,
    /// `LINKTYPE_IPV4` (228): raw IPv4. A captured packet whose version nibble says 6 is
    /// parsed as IPv6, as tcpdump and tshark do; inside a tunnel the header must be IPv4.
    Ipv4,
    /// `LINKTYPE_IPV6` (229): raw IPv6, whatever the version nibble says (tshark 4.0
    /// calls an IPv4 packet here "Bogus IPv6 version"; tcpdump 4.99 prints it as IPv4).
    Ipv6,
    /// `LINKTYPE_LINUX_SLL` (113): Linux cooked capture v1 (16-byte header).
    LinuxSll,
    /// `LINKTYPE_LINUX_SLL2` (276): Linux cooked capture v2 (20-byte header).
    LinuxSll2,
    /// `LINKTYPE_PKTAP` (258, and `DLT_PKTAP` = `DLT_USER2` = 149 as macOS writes it to
    /// files): Apple's per-packet metadata header, little-endian, whose `pth_length`
    /// gives its own length and `pth_dlt` the link type of the frame that follows.
    Pktap,
    /// `LINKTYPE_ARCNET_BSD` (7): ARCNET with the BSD header (source, destination,
    /// protocol ID, then for RFC 1201 protocols a split flag and sequence number).
    ArcnetBsd,
    /// `LINKTYPE_ARCNET_LINUX` (129): ARCNET with the Linux header (source, destination,
    /// a 2-byte offset, protocol ID, then for RFC 1201 protocols split flag and sequence).
    ArcnetLinux,
    /// Any other link type: frames are not parsed beyond this point.
    Other(u32),
}

impl LinkType {
    /// Maps a pcap/pcapng link-type value to a [`LinkType`].
    ///
    /// Only the low 16 bits name the link type (libpcap's `LT_LINKTYPE`); the upper bits
    /// of a pcap header's field carry FCS information and are ignored here.
    pub fn from_linktype(v: u32) -> Self {
        match v & 0xffff {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            7 => LinkType::ArcnetBsd,
            12 | 14 | 101 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            129 => LinkType::ArcnetLinux,
            149 | 258 => LinkType::Pktap,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }

    /// The canonical pcap `LINKTYPE_*` value (`Raw` maps to 101, `Pktap` to 258).
    pub fn linktype(self) -> u32 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::ArcnetBsd => 7,
            LinkType::Raw => 101,
            LinkType::Loop => 108,
            LinkType::LinuxSll => 113,
            LinkType::ArcnetLinux => 129,
            LinkType::Pktap => 258,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll2 => 276,
            LinkType::Other(v) => v,
        }
    }

    /// Whether [`Frame::parse`](crate::Frame::parse) understands this link type.
    pub fn is_supported(self) -> bool {
        !matches!(self, LinkType::Other(_))
    }

    /// tcpdump's name of the link type with a short description, as its "link-type" line
    /// prints it: `EN10MB (Ethernet)`, `LINUX_SLL2 (Linux cooked v2)`; `None` for
    /// [`LinkType::Other`].
    pub fn description(self) -> Option<&'static str> {
        Some(match self {
            LinkType::Null => "NULL (BSD loopback)",
            LinkType::Ethernet => "EN10MB (Ethernet)",
            LinkType::Raw => "RAW (Raw IP)",
            LinkType::Loop => "LOOP (OpenBSD loopback)",
            LinkType::LinuxSll => "LINUX_SLL (Linux cooked v1)",
            LinkType::Ipv4 => "IPV4 (Raw IPv4)",
            LinkType::Ipv6 => "IPV6 (Raw IPv6)",
            LinkType::LinuxSll2 => "LINUX_SLL2 (Linux cooked v2)",
            LinkType::Pktap => "PKTAP (Apple DLT_PKTAP)",
            LinkType::ArcnetBsd => "ARCNET (BSD ARCNET)",
            LinkType::ArcnetLinux => "ARCNET_LINUX (Linux ARCNET)",
            LinkType::Other(_) => return None,
        })
    }
}

/// Well-known EtherType values.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ outer tag.
    pub const QINQ_OLD: u16 = 0x9100;
}

pub(crate) mod field {
    use crate::bytes::Field;
    pub(crate) const ETH_TYPE: Field = 12..14;
    pub(crate) const ETH_LEN: usize = 14;
    pub(crate) const VLAN_TCI: Field = 0..2;
    pub(crate) const VLAN_TYPE: Field = 2..4;
    pub(crate) const VLAN_LEN: usize = 4;
    pub(crate) const SLL_PROTOCOL: Field = 14..16;
    pub(crate) const SLL_HATYPE: Field = 2..4;
    pub(crate) const SLL_LEN: usize = 16;
    pub(crate) const SLL2_PROTOCOL: Field = 0..2;
    pub(crate) const SLL2_HATYPE: Field = 8..10;
    pub(crate) const SLL2_LEN: usize = 20;
    pub(crate) const NULL_FAMILY: Field = 0..4;
    pub(crate) const NULL_LEN: usize = 4;
    // Apple's `struct pktap_header` (little-endian): pth_length, pth_type_next, pth_dlt,
    // then interface name, flags, process and service fields up to at least 108 bytes.
    pub(crate) const PKTAP_LENGTH: Field = 0..4;
    pub(crate) const PKTAP_TYPE_NEXT: Field = 4..8;
    pub(crate) const PKTAP_DLT: Field = 8..12;
    pub(crate) const PKTAP_MIN_LEN: usize = 108;
    // ARCNET, BSD (`struct arc_header`): shost, dhost, type; RFC 1201 adds flag and a
    // 2-byte sequence id; an exception packet (flag 0xff) repeats type, flag, sequence
    // after two padding bytes.
    pub(crate) const ARC_BSD_TYPE: usize = 2;
    pub(crate) const ARC_BSD_FLAG: usize = 3;
    pub(crate) const ARC_BSD_FLAG_EXC: usize = 7;
    pub(crate) const ARC_BSD_LEN_OLD: usize = 3;
    pub(crate) const ARC_BSD_LEN: usize = 6;
    pub(crate) const ARC_BSD_LEN_EXC: usize = 10;
    // ARCNET, Linux (`struct arc_linux_header`): shost, dhost, 2-byte offset, type;
    // RFC 1201 adds flag and a 2-byte sequence id.
    pub(crate) const ARC_LINUX_TYPE: usize = 4;
    pub(crate) const ARC_LINUX_FLAG: usize = 5;
    pub(crate) const ARC_LINUX_LEN_OLD: usize = 5;
    pub(crate) const ARC_LINUX_LEN: usize = 8;
}

/// ARCNET protocol IDs (RFC 1201, RFC 1051 and the IPv6 one, RFC 2497).
mod arctype {
    pub(super) const IP_OLD: u8 = 240;
    pub(super) const ARP_OLD: u8 = 241;
    pub(super) const DIAGNOSE: u8 = 0x80;
    pub(super) const IP: u8 = 212;
    pub(super) const ARP: u8 = 213;
    pub(super) const INET6: u8 = 0xc4;
}

/// `pth_type_next` of a PKTAP header followed by a packet.
const PTH_TYPE_PACKET: u32 = 1;

/// The most VLAN tags we follow (QinQ is two; a few more tolerate odd stacks).
const MAX_VLAN_TAGS: usize = 4;

/// What follows the link header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// An EtherType-identified payload at this offset.
    EtherType(u16, usize),
    /// Raw IP (version nibble decides) at this offset.
    RawIp(usize),
    /// IP of this EtherType at this offset, unless the version nibble of a captured
    /// (not tunnelled) packet names the other version (`LINKTYPE_IPV4`).
    IpPreferring(u16, usize),
}

/// Why the link layer stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkStop {
    Truncated {
        required: usize,
        available: usize,
        offset: usize,
        vlan: bool,
    },
    Unsupported {
        offset: usize,
    },
    Malformed {
        why: &'static str,
        offset: usize,
        vlan: bool,
    },
}

/// Result of walking the link header(s).
pub(crate) struct LinkOut {
    pub(crate) vlan: Option<u16>,
    pub(crate) next: Result<Next, LinkStop>,
}

/// Linux ARPHRD values whose SLL "protocol" field is not an EtherType.
const ARPHRD_NETLINK: u16 = 824;
/// SLL protocol values that mean "802.3/802.2 frame follows", not an EtherType.
fn sll_protocol_is_ethertype(protocol: u16, hatype: u16) -> bool {
    hatype != ARPHRD_NETLINK && protocol >= 0x0600
}

#[inline]
pub(crate) fn parse(link: LinkType, b: &[u8]) -> LinkOut {
    let mut out = LinkOut {
        vlan: None,
        next: Err(LinkStop::Unsupported { offset: 0 }),
    };
    out.next = match link {
        LinkType::Ethernet => {
            if b.len() < field::ETH_LEN {
                Err(trunc(field::ETH_LEN, b.len(), 0, false))
            } else {
                let ty = be16(b, field::ETH_TYPE);
                if ty < 0x0600 {
                    // 802.3 length field + LLC: not an IP carrier we parse.
                    Err(LinkStop::Unsupported {
                        offset: field::ETH_LEN,
                    })
                } else {
                    vlan_walk(b, ty, field::ETH_LEN, &mut out.vlan)
                }
            }
        }
        LinkType::LinuxSll => {
            if b.len() < field::SLL_LEN {
                Err(trunc(field::SLL_LEN, b.len(), 0, false))
            } else {
                let proto = be16(b, field::SLL_PROTOCOL);
                if sll_protocol_is_ethertype(proto, be16(b, field::SLL_HATYPE)) {
                    vlan_walk(b, proto, field::SLL_LEN, &mut out.vlan)
                } else {
                    Err(LinkStop::Unsupported {
                        offset: field::SLL_LEN,
                    })
                }
            }
        }
        LinkType::LinuxSll2 => {
            if b.len() < field::SLL2_LEN {
                Err(trunc(field::SLL2_LEN, b.len(), 0, false))
            } else {
                let proto = be16(b, field::SLL2_PROTOCOL);
                if sll_protocol_is_ethertype(proto, be16(b, field::SLL2_HATYPE)) {
                    vlan_walk(b, proto, field::SLL2_LEN, &mut out.vlan)
                } else {
                    Err(LinkStop::Unsupported {
                        offset: field::SLL2_LEN,
                    })
                }
            }
        }
        LinkType::Null | LinkType::Loop => {
            if b.len() < field::NULL_LEN {
                Err(trunc(field::NULL_LEN, b.len(), 0, false))
            } else {
                let be = be32(b, field::NULL_FAMILY);
                let family = if link == LinkType::Loop {
                    be
                } else {
                    null_family(be)
                };
                match family {
                    2 => Ok(Next::EtherType(ethertype::IPV4, field::NULL_LEN)),
                    24 | 28 | 30 => Ok(Next::EtherType(ethertype::IPV6, field::NULL_LEN)),
                    _ => Err(LinkStop::Unsupported {
                        offset: field::NULL_LEN,
                    }),
                }
            }
        }
        LinkType::Raw => Ok(Next::RawIp(0)),
        LinkType::Ipv4 => Ok(Next::IpPreferring(ethertype::IPV4, 0)),
        LinkType::Ipv6 => Ok(Next::EtherType(ethertype::IPV6, 0)),
        LinkType::Pktap => pktap(b, &mut out.vlan),
        LinkType::ArcnetBsd => arcnet_bsd(b),
        LinkType::ArcnetLinux => arcnet_linux(b),
        LinkType::Other(_) => Err(LinkStop::Unsupported { offset: 0 }),
    };
    out
}

/// PKTAP: skips Apple's header (its own `pth_length`, at least 108 bytes) and parses the
/// frame inside with the link type `pth_dlt` names (a DLT value; PKTAP inside PKTAP is
/// not followed). Offsets in the result count from the start of the PKTAP header.
fn pktap(b: &[u8], vlan: &mut Option<u16>) -> Result<Next, LinkStop> {
    if b.len() < field::PKTAP_MIN_LEN {
        return Err(trunc(field::PKTAP_MIN_LEN, b.len(), 0, false));
    }
    let le = |f| be32(b, f).swap_bytes();
    let len = le(field::PKTAP_LENGTH) as usize;
    if len < field::PKTAP_MIN_LEN {
        return Err(LinkStop::Malformed {
            why: "PKTAP header length below 108",
            offset: 0,
            vlan: false,
        });
    }
    if b.len() < len {
        return Err(trunc(len, b.len(), 0, false));
    }
    if le(field::PKTAP_TYPE_NEXT) != PTH_TYPE_PACKET {
        return Err(LinkStop::Unsupported { offset: len });
    }
    let inner = LinkType::from_linktype(le(field::PKTAP_DLT));
    if inner == LinkType::Pktap {
        return Err(LinkStop::Unsupported { offset: len });
    }
    let out = parse(inner, tail(b, len));
    *vlan = out.vlan;
    match out.next {
        Ok(Next::EtherType(ty, off)) => Ok(Next::EtherType(ty, off + len)),
        Ok(Next::RawIp(off)) => Ok(Next::RawIp(off + len)),
        Ok(Next::IpPreferring(ty, off)) => Ok(Next::IpPreferring(ty, off + len)),
        Err(LinkStop::Truncated {
            required,
            available,
            offset,
            vlan,
        }) => Err(trunc(required + len, available + len, offset + len, vlan)),
        Err(LinkStop::Unsupported { offset }) => Err(LinkStop::Unsupported {
            offset: offset + len,
        }),
        Err(LinkStop::Malformed { why, offset, vlan }) => Err(LinkStop::Malformed {
            why,
            offset: offset + len,
            vlan,
        }),
    }
}

/// What an ARCNET protocol ID carries, at offset `off`.
fn arcnet_next(ty: u8, off: usize) -> Result<Next, LinkStop> {
    match ty {
        arctype::IP | arctype::IP_OLD => Ok(Next::EtherType(ethertype::IPV4, off)),
        arctype::INET6 => Ok(Next::EtherType(ethertype::IPV6, off)),
        arctype::ARP | arctype::ARP_OLD => Ok(Next::EtherType(ethertype::ARP, off)),
        _ => Err(LinkStop::Unsupported { offset: off }),
    }
}

/// Whether an ARCNET protocol ID uses the short RFC 1051 header (no split flag).
fn arcnet_short(ty: u8) -> bool {
    matches!(ty, arctype::IP_OLD | arctype::ARP_OLD | arctype::DIAGNOSE)
}

/// An RFC 1201 split flag other than 0 with the low bit clear marks a fragment after
/// the first: it carries no IP header.
fn arcnet_fragment(flag: u8, off: usize) -> Option<LinkStop> {
    (flag != 0 && flag & 1 == 0).then_some(LinkStop::Unsupported { offset: off })
}

/// ARCNET with the BSD header (`LINKTYPE_ARCNET_BSD`).
fn arcnet_bsd(b: &[u8]) -> Result<Next, LinkStop> {
    if b.len() < field::ARC_BSD_LEN_OLD {
        return Err(trunc(field::ARC_BSD_LEN_OLD, b.len(), 0, false));
    }
    let ty = byte(b, field::ARC_BSD_TYPE);
    if arcnet_short(ty) {
        return arcnet_next(ty, field::ARC_BSD_LEN_OLD);
    }
    if b.len() < field::ARC_BSD_LEN {
        return Err(trunc(field::ARC_BSD_LEN, b.len(), 0, false));
    }
    let (flag, len) = match byte(b, field::ARC_BSD_FLAG) {
        0xff => {
            if b.len() < field::ARC_BSD_LEN_EXC {
                return Err(trunc(field::ARC_BSD_LEN_EXC, b.len(), 0, false));
            }
            (byte(b, field::ARC_BSD_FLAG_EXC), field::ARC_BSD_LEN_EXC)
        }
        f => (f, field::ARC_BSD_LEN),
    };
    if let Some(stop) = arcnet_fragment(flag, len) {
        return Err(stop);
    }
    arcnet_next(ty, len)
}

/// ARCNET with the Linux header (`LINKTYPE_ARCNET_LINUX`).
fn arcnet_linux(b: &[u8]) -> Result<Next, LinkStop> {
    if b.len() < field::ARC_LINUX_LEN_OLD {
        return Err(trunc(field::ARC_LINUX_LEN_OLD, b.len(), 0, false));
    }
    let ty = byte(b, field::ARC_LINUX_TYPE);
    if arcnet_short(ty) {
        return arcnet_next(ty, field::ARC_LINUX_LEN_OLD);
    }
    if b.len() < field::ARC_LINUX_LEN {
        return Err(trunc(field::ARC_LINUX_LEN, b.len(), 0, false));
    }
    if let Some(stop) = arcnet_fragment(byte(b, field::ARC_LINUX_FLAG), field::ARC_LINUX_LEN) {
        return Err(stop);
    }
    arcnet_next(ty, field::ARC_LINUX_LEN)
}

/// BSD `NULL` stores the family in the writer's host order: accept a big-endian value
/// when it is a known family, else the byte-swapped (little-endian) one.
#[inline]
fn null_family(be: u32) -> u32 {
    match be {
        2 | 24 | 28 | 30 => be,
        _ => be.swap_bytes(),
    }
}

#[inline]
fn trunc(required: usize, available: usize, offset: usize, vlan: bool) -> LinkStop {
    LinkStop::Truncated {
        required,
        available,
        offset,
        vlan,
    }
}

/// Follows 802.1Q/802.1ad tags starting at `off` (where `ty`'s payload begins).
#[inline]
fn vlan_walk(
    b: &[u8],
    mut ty: u16,
    mut off: usize,
    vlan: &mut Option<u16>,
) -> Result<Next, LinkStop> {
    let mut tags = 0;
    while matches!(ty, ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD) {
        if tags == MAX_VLAN_TAGS {
            return Err(LinkStop::Malformed {
                why: "too many VLAN tags",
                offset: off,
                vlan: true,
            });
        }
        let tag = b.get(off..).unwrap_or(&[]);
        if tag.len() < field::VLAN_LEN {
            return Err(trunc(off + field::VLAN_LEN, b.len(), off, true));
        }
        if vlan.is_none() {
            *vlan = Some(be16(tag, field::VLAN_TCI) & 0x0fff);
        }
        ty = be16(tag, field::VLAN_TYPE);
        off += field::VLAN_LEN;
        tags += 1;
    }
    if ty < 0x0600 {
        return Err(LinkStop::Unsupported { offset: off });
    }
    Ok(Next::EtherType(ty, off))
}

/// The IP version nibble of the first byte (0 when empty).
#[inline]
pub(crate) fn version_nibble(b: &[u8], off: usize) -> u8 {
    byte(b, off) >> 4
}
