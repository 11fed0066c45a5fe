//! Link layers: what `tcpdump -e` prints before the IP header.
//!
//! Ethernet (with 802.1Q / 802.1ad / QinQ tags), Linux "cooked" captures SLL and SLL2
//! (`tcpdump -i any`; ksniff users hit SLL2), raw IP, and BSD loopback (`NULL`, `LOOP`).

use crate::bytes::{be16, be32, byte};

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
    /// `LINKTYPE_IPV4` (228): raw IPv4.
    Ipv4,
    /// `LINKTYPE_IPV6` (229): raw IPv6.
    Ipv6,
    /// `LINKTYPE_LINUX_SLL` (113): Linux cooked capture v1 (16-byte header).
    LinuxSll,
    /// `LINKTYPE_LINUX_SLL2` (276): Linux cooked capture v2 (20-byte header).
    LinuxSll2,
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
            12 | 14 | 101 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }

    /// The canonical pcap `LINKTYPE_*` value (`Raw` maps to 101).
    pub fn linktype(self) -> u32 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::Loop => 108,
            LinkType::LinuxSll => 113,
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
}

/// The most VLAN tags we follow (QinQ is two; a few more tolerate odd stacks).
const MAX_VLAN_TAGS: usize = 4;

/// What follows the link header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// An EtherType-identified payload at this offset.
    EtherType(u16, usize),
    /// Raw IP (version nibble decides) at this offset.
    RawIp(usize),
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
        LinkType::Ipv4 => Ok(Next::EtherType(ethertype::IPV4, 0)),
        LinkType::Ipv6 => Ok(Next::EtherType(ethertype::IPV6, 0)),
        LinkType::Other(_) => Err(LinkStop::Unsupported { offset: 0 }),
    };
    out
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
