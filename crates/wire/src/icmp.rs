//! ICMPv4 and ICMPv6, including the original datagram quoted in error messages
//! (`tcpdump`: "ICMP 10.0.0.2 tcp port 80 unreachable").

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::bytes::{be16, be32, byte, tail};
use crate::frame::{Layer, Stop, StopReason};
use crate::ip::{protocol, walk_ext};

mod field {
    use crate::bytes::Field;
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: Field = 2..4;
    pub(super) const REST: Field = 4..8;
    pub(super) const LEN: usize = 8;
}

/// ICMPv4 type numbers that quote the original datagram.
pub mod v4_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable (quotes the original datagram).
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Source quench (quotes the original datagram).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect (quotes the original datagram).
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded (quotes the original datagram).
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem (quotes the original datagram).
    pub const PARAMETER_PROBLEM: u8 = 12;
}

/// ICMPv6 type numbers that quote the original datagram.
pub mod v6_type {
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: u8 = 1;
    /// Packet too big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem.
    pub const PARAMETER_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
}

/// The start of the original datagram quoted by an ICMP error message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EmbeddedHeader {
    /// Source address of the original datagram (the host that sent it: usually us).
    pub src: IpAddr,
    /// Destination address of the original datagram.
    pub dst: IpAddr,
    /// Upper-layer protocol of the original datagram (after IPv6 extension headers).
    pub protocol: u8,
    /// Source port, when the quote includes a TCP/UDP header start.
    pub src_port: Option<u16>,
    /// Destination port, when the quote includes a TCP/UDP header start.
    pub dst_port: Option<u16>,
}

/// An ICMP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpMessage<'a> {
    /// ICMPv6 (`true`) or ICMPv4.
    pub v6: bool,
    /// Type.
    pub icmp_type: u8,
    /// Code.
    pub code: u8,
    /// Checksum field.
    pub checksum: u16,
    /// Bytes 4..8 of the header (echo id/sequence, MTU, pointer, unused…).
    pub rest_of_header: u32,
    /// The embedded original datagram of error messages (dest unreachable, time exceeded…).
    pub original: Option<EmbeddedHeader>,
    /// Captured bytes after the 8-byte header.
    pub payload: &'a [u8],
}

impl IcmpMessage<'_> {
    /// Whether this type is an error message that quotes the original datagram.
    pub fn is_error(&self) -> bool {
        if self.v6 {
            (1..=4).contains(&self.icmp_type)
        } else {
            matches!(
                self.icmp_type,
                v4_type::DEST_UNREACHABLE
                    | v4_type::SOURCE_QUENCH
                    | v4_type::REDIRECT
                    | v4_type::TIME_EXCEEDED
                    | v4_type::PARAMETER_PROBLEM
            )
        }
    }
}

/// Parses an ICMP message in `data` (at frame offset `off`).
#[inline]
pub(crate) fn parse(data: &[u8], off: usize, v6: bool) -> (Option<IcmpMessage<'_>>, Option<Stop>) {
    let Some(h) = data.first_chunk::<{ field::LEN }>() else {
        let r = StopReason::Truncated {
            required: field::LEN,
            available: data.len(),
        };
        return (
            None,
            Some(Stop {
                layer: Layer::Icmp,
                reason: r,
                offset: off,
            }),
        );
    };
    let mut m = IcmpMessage {
        v6,
        icmp_type: byte(h, field::TYPE),
        code: byte(h, field::CODE),
        checksum: be16(h, field::CHECKSUM),
        rest_of_header: be32(h, field::REST),
        original: None,
        payload: tail(data, field::LEN),
    };
    if m.is_error() {
        m.original = if v6 {
            embedded_v6(m.payload)
        } else {
            embedded_v4(m.payload)
        };
    }
    (Some(m), None)
}

fn ports(protocol: u8, l4: &[u8]) -> (Option<u16>, Option<u16>) {
    if matches!(protocol, protocol::TCP | protocol::UDP) && l4.len() >= 4 {
        (Some(be16(l4, 0..2)), Some(be16(l4, 2..4)))
    } else {
        (None, None)
    }
}

fn embedded_v4(q: &[u8]) -> Option<EmbeddedHeader> {
    let h = q.first_chunk::<20>()?;
    if h[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let proto = h[9];
    let first_fragment = be16(h, 6..8) & 0x1fff == 0;
    let (src_port, dst_port) = if ihl >= 20 && first_fragment {
        ports(proto, tail(q, ihl))
    } else {
        (None, None)
    };
    Some(EmbeddedHeader {
        src: IpAddr::V4(Ipv4Addr::from(be32(h, 12..16))),
        dst: IpAddr::V4(Ipv4Addr::from(be32(h, 16..20))),
        protocol: proto,
        src_port,
        dst_port,
    })
}

fn embedded_v6(q: &[u8]) -> Option<EmbeddedHeader> {
    let h = q.first_chunk::<40>()?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let rest = tail(q, 40);
    // The quote is cut short by design, so bound the walk by what was captured.
    let walk = walk_ext(h[6], rest, rest.len());
    let first_fragment = walk.fragment.is_none_or(|f| f.offset == 0);
    let (src_port, dst_port) = if walk.error.is_none() && first_fragment {
        ports(walk.next_header, tail(rest, walk.len))
    } else {
        (None, None)
    };
    let addr = |r: core::ops::Range<usize>| {
        h.get(r)
            .and_then(|s| <[u8; 16]>::try_from(s).ok())
            .map_or(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from)
    };
    Some(EmbeddedHeader {
        src: IpAddr::V6(addr(8..24)),
        dst: IpAddr::V6(addr(24..40)),
        protocol: walk.next_header,
        src_port,
        dst_port,
    })
}
