//! IPv4 and IPv6 (with extension headers): what `tcpdump -v` prints in the IP line.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::bytes::{be16, be32, byte, head, tail};
use crate::frame::{Layer, Net, Stop, StopReason};

/// IP protocol numbers (IANA) used by this crate.
pub mod protocol {
    /// IPv6 hop-by-hop options extension header.
    pub const HOPOPT: u8 = 0;
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// IPv4 inside IP (IP-in-IP, RFC 2003).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 inside IP (RFC 2473; 6in4).
    pub const IPV6: u8 = 41;
    /// IPv6 routing extension header.
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 fragment extension header.
    pub const IPV6_FRAG: u8 = 44;
    /// Generic routing encapsulation (RFC 2784).
    pub const GRE: u8 = 47;
    /// Encapsulating security payload (opaque).
    pub const ESP: u8 = 50;
    /// Authentication header.
    pub const AH: u8 = 51;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 "no next header".
    pub const IPV6_NONXT: u8 = 59;
    /// IPv6 destination options extension header.
    pub const IPV6_OPTS: u8 = 60;
}

mod field {
    use crate::bytes::Field;
    pub(super) const V4_VER_IHL: usize = 0;
    pub(super) const V4_TOS: usize = 1;
    pub(super) const V4_TOTAL_LEN: Field = 2..4;
    pub(super) const V4_IDENT: Field = 4..6;
    pub(super) const V4_FLAGS_FRAG: Field = 6..8;
    pub(super) const V4_TTL: usize = 8;
    pub(super) const V4_PROTOCOL: usize = 9;
    pub(super) const V4_SRC: Field = 12..16;
    pub(super) const V4_DST: Field = 16..20;
    pub(super) const V4_MIN_LEN: usize = 20;

    pub(super) const V6_PAYLOAD_LEN: Field = 4..6;
    pub(super) const V6_NEXT_HEADER: usize = 6;
    pub(super) const V6_HOP_LIMIT: usize = 7;
    pub(super) const V6_SRC: Field = 8..24;
    pub(super) const V6_DST: Field = 24..40;
    pub(super) const V6_LEN: usize = 40;

    pub(super) const EXT_NEXT: usize = 0;
    pub(super) const EXT_LEN: usize = 1;
    pub(super) const FRAG_OFFSET_FLAGS: Field = 2..4;
    pub(super) const FRAG_IDENT: Field = 4..8;
    pub(super) const FRAG_LEN: usize = 8;
}

const V4_MORE_FRAGMENTS: u16 = 0x2000;
const V4_DONT_FRAGMENT: u16 = 0x4000;
/// The most IPv6 extension headers we walk before calling the chain malformed.
const MAX_IPV6_EXT_HEADERS: usize = 8;

/// IP fragmentation state of a packet (IPv4 flags/offset or an IPv6 fragment header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// Offset of this fragment's data in the original datagram, in bytes.
    pub offset: u16,
    /// The "more fragments" flag.
    pub more: bool,
    /// Identification (IPv4: 16 bits; IPv6: 32 bits).
    pub id: u32,
}

/// A parsed IPv4 header (`tcpdump -v`: `tos`, `ttl`, `id`, `offset`, `flags`, `proto`, `length`).
// The field order is fixed (`repr(C)`) with the addresses and slices first, so that in
// a `Net` the fields the two IP versions share in memory are ones both fast paths
// compute anyway (addresses, payload position): a caller that reads only the addresses
// of either version then makes the IPv4 path compute nothing it does not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Ipv4Info<'a> {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Raw option bytes (header bytes 20..header_len).
    pub options: &'a [u8],
    /// Captured bytes after the header, cut to `total_len` (Ethernet padding excluded).
    pub payload: &'a [u8],
    /// Fragmentation state, `None` unless MF is set or the offset is non-zero.
    pub fragment: Option<Fragment>,
    /// Total length field (header + payload). 0 is kept as captured (TSO); the payload
    /// then extends to the end of the captured bytes.
    pub total_len: u16,
    /// Identification field.
    pub identification: u16,
    /// Payload protocol number (6 TCP, 17 UDP, 1 ICMP…).
    pub protocol: u8,
    /// Time to live.
    pub ttl: u8,
    /// Header length in bytes (IHL × 4), including options.
    pub header_len: u8,
    /// The DF ("don't fragment") flag.
    pub dont_fragment: bool,
    /// The type-of-service byte (DSCP + ECN).
    pub tos: u8,
}

/// A parsed IPv6 header plus its extension-header chain.
// Fixed field order: see `Ipv4Info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Ipv6Info<'a> {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Captured bytes after the extension headers, cut to `payload_len`.
    pub payload: &'a [u8],
    /// Fragment header contents, if there is one.
    pub fragment: Option<Fragment>,
    /// Payload length field (extension headers + upper layer). 0 (jumbogram or TSO) is
    /// kept as captured; the payload then extends to the end of the captured bytes.
    pub payload_len: u16,
    /// Total length of the extension headers that were walked, in bytes.
    pub ext_len: u16,
    /// The final next-header value, after walking the extension headers.
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
}

/// What the IP layer hands to the transport layer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Upper<'a> {
    pub(crate) protocol: u8,
    pub(crate) data: &'a [u8],
    /// Offset of `data` in the frame.
    pub(crate) offset: usize,
    /// On-wire length of the upper-layer data according to the IP length fields.
    pub(crate) wire_len: usize,
}

#[inline]
fn stop(layer: Layer, reason: StopReason, offset: usize) -> Stop {
    Stop {
        layer,
        reason,
        offset,
    }
}

#[inline]
fn v4_addr(h: &[u8], f: crate::bytes::Field) -> Ipv4Addr {
    Ipv4Addr::from(be32(h, f))
}

#[inline]
fn v6_addr(h: &[u8], f: crate::bytes::Field) -> Ipv6Addr {
    match h.get(f).and_then(|s| <[u8; 16]>::try_from(s).ok()) {
        Some(a) => Ipv6Addr::from(a),
        None => Ipv6Addr::UNSPECIFIED,
    }
}

/// Parses an IPv4 header at `off` in `frame`.
#[inline]
pub(crate) fn parse_v4(
    frame: &[u8],
    off: usize,
) -> (Option<Ipv4Info<'_>>, Result<Upper<'_>, Stop>) {
    let h = tail(frame, off);
    if h.len() < field::V4_MIN_LEN {
        let r = StopReason::Truncated {
            required: field::V4_MIN_LEN,
            available: h.len(),
        };
        return (None, Err(stop(Layer::Ipv4, r, off)));
    }
    let ver_ihl = byte(h, field::V4_VER_IHL);
    if ver_ihl >> 4 != 4 {
        return (
            None,
            Err(stop(
                Layer::Ipv4,
                StopReason::Malformed("IPv4 version is not 4"),
                off,
            )),
        );
    }
    let header_len = usize::from(ver_ihl & 0x0f) * 4;
    if header_len < field::V4_MIN_LEN {
        let r = StopReason::Malformed("IPv4 header length below 20");
        return (None, Err(stop(Layer::Ipv4, r, off)));
    }
    if h.len() < header_len {
        let r = StopReason::Truncated {
            required: header_len,
            available: h.len(),
        };
        return (None, Err(stop(Layer::Ipv4, r, off)));
    }
    let total_len = be16(h, field::V4_TOTAL_LEN);
    let wire_total = if total_len == 0 {
        h.len()
    } else {
        usize::from(total_len)
    };
    if wire_total < header_len {
        let r = StopReason::Malformed("IPv4 total length below header length");
        return (None, Err(stop(Layer::Ipv4, r, off)));
    }
    let flags_frag = be16(h, field::V4_FLAGS_FRAG);
    let frag_offset = (flags_frag & 0x1fff) << 3;
    let more = flags_frag & V4_MORE_FRAGMENTS != 0;
    let identification = be16(h, field::V4_IDENT);
    let fragment = (more || frag_offset != 0).then_some(Fragment {
        offset: frag_offset,
        more,
        id: u32::from(identification),
    });
    let payload = head(tail(h, header_len), wire_total - header_len);
    let protocol = byte(h, field::V4_PROTOCOL);
    let info = Ipv4Info {
        src: v4_addr(h, field::V4_SRC),
        dst: v4_addr(h, field::V4_DST),
        protocol,
        ttl: byte(h, field::V4_TTL),
        total_len,
        header_len: header_len as u8,
        identification,
        fragment,
        dont_fragment: flags_frag & V4_DONT_FRAGMENT != 0,
        tos: byte(h, field::V4_TOS),
        options: h.get(field::V4_MIN_LEN..header_len).unwrap_or(&[]),
        payload,
    };
    let upper_off = off + header_len;
    if frag_offset != 0 {
        return (
            Some(info),
            Err(stop(Layer::Ipv4, StopReason::Fragment, upper_off)),
        );
    }
    let upper = Upper {
        protocol,
        data: payload,
        offset: upper_off,
        wire_len: wire_total - header_len,
    };
    (Some(info), Ok(upper))
}

/// The fast path of [`parse_v4`]: an IPv4 header without options, unfragmented, whose
/// total length is at least 20 and which is captured whole. Returns exactly what
/// [`parse_v4`] would (wrapped in [`Net`]); `None` for anything else.
#[inline(always)]
pub(crate) fn parse_v4_fast(frame: &[u8], off: usize) -> Option<(Net<'_>, Upper<'_>)> {
    let h = tail(frame, off).first_chunk::<{ field::V4_MIN_LEN }>()?;
    // Version 4, IHL 5; no MF flag and a zero fragment offset.
    let flags_frag = u16::from_be_bytes([h[6], h[7]]);
    if h[field::V4_VER_IHL] != 0x45 || flags_frag & 0x3fff != 0 {
        return None;
    }
    let total_len = u16::from_be_bytes([h[2], h[3]]);
    // 0 (TSO: length from the capture) and impossible lengths go the general way.
    let wire_len = usize::from(total_len).checked_sub(field::V4_MIN_LEN)?;
    let rest = tail(frame, off + field::V4_MIN_LEN);
    let payload = head(rest, wire_len);
    let protocol = h[field::V4_PROTOCOL];
    let info = Ipv4Info {
        src: Ipv4Addr::new(h[12], h[13], h[14], h[15]),
        dst: Ipv4Addr::new(h[16], h[17], h[18], h[19]),
        protocol,
        ttl: h[field::V4_TTL],
        total_len,
        header_len: field::V4_MIN_LEN as u8,
        identification: u16::from_be_bytes([h[4], h[5]]),
        fragment: None,
        dont_fragment: flags_frag & V4_DONT_FRAGMENT != 0,
        tos: h[field::V4_TOS],
        options: head(rest, 0),
        payload,
    };
    let upper = Upper {
        protocol,
        data: payload,
        offset: off + field::V4_MIN_LEN,
        wire_len,
    };
    Some((Net::Ipv4(info), upper))
}

/// The fast path of [`parse_v6`]: a fixed IPv6 header with a non-zero payload length
/// whose next header is TCP or UDP (no extension headers). Returns exactly what
/// [`parse_v6`] would (wrapped in [`Net`]); `None` for anything else.
#[inline(always)]
pub(crate) fn parse_v6_fast(frame: &[u8], off: usize) -> Option<(Net<'_>, Upper<'_>)> {
    let h = tail(frame, off).first_chunk::<{ field::V6_LEN }>()?;
    let next_header = h[field::V6_NEXT_HEADER];
    let payload_len = u16::from_be_bytes([h[4], h[5]]);
    if h[0] >> 4 != 6 || payload_len == 0 || !matches!(next_header, protocol::TCP | protocol::UDP) {
        return None;
    }
    let wire_len = usize::from(payload_len);
    let data = head(tail(frame, off + field::V6_LEN), wire_len);
    let addr = |a: usize| {
        let mut o = [0u8; 16];
        o.copy_from_slice(&h[a..a + 16]);
        Ipv6Addr::from(o)
    };
    let info = Ipv6Info {
        src: addr(8),
        dst: addr(24),
        next_header,
        hop_limit: h[field::V6_HOP_LIMIT],
        payload_len,
        fragment: None,
        ext_len: 0,
        payload: data,
    };
    let upper = Upper {
        protocol: next_header,
        data,
        offset: off + field::V6_LEN,
        wire_len,
    };
    Some((Net::Ipv6(info), upper))
}

/// Result of walking an IPv6 extension-header chain.
pub(crate) struct ExtWalk {
    pub(crate) next_header: u8,
    pub(crate) len: usize,
    pub(crate) fragment: Option<Fragment>,
    /// Set when the walk could not finish (truncated or malformed chain).
    pub(crate) error: Option<(StopReason, usize)>,
}

/// Walks IPv6 extension headers in `data` (the bytes after the fixed header), at most
/// [`MAX_IPV6_EXT_HEADERS`]. `wire_len` bounds the chain by the payload length field.
#[inline]
pub(crate) fn walk_ext(mut next: u8, data: &[u8], wire_len: usize) -> ExtWalk {
    let mut w = ExtWalk {
        next_header: next,
        len: 0,
        fragment: None,
        error: None,
    };
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let h = tail(data, w.len);
        let ext_len = match next {
            protocol::HOPOPT | protocol::IPV6_ROUTE | protocol::IPV6_OPTS => {
                if h.len() < 2 {
                    w.error = Some((
                        StopReason::Truncated {
                            required: 2,
                            available: h.len(),
                        },
                        w.len,
                    ));
                    return w;
                }
                (usize::from(byte(h, field::EXT_LEN)) + 1) * 8
            }
            protocol::IPV6_FRAG => field::FRAG_LEN,
            protocol::AH => {
                if h.len() < 2 {
                    w.error = Some((
                        StopReason::Truncated {
                            required: 2,
                            available: h.len(),
                        },
                        w.len,
                    ));
                    return w;
                }
                (usize::from(byte(h, field::EXT_LEN)) + 2) * 4
            }
            _ => return w,
        };
        if w.len + ext_len > wire_len {
            w.error = Some((
                StopReason::Malformed("IPv6 extension header exceeds payload length"),
                w.len,
            ));
            return w;
        }
        if h.len() < ext_len {
            w.error = Some((
                StopReason::Truncated {
                    required: ext_len,
                    available: h.len(),
                },
                w.len,
            ));
            return w;
        }
        if next == protocol::IPV6_FRAG {
            let fo = be16(h, field::FRAG_OFFSET_FLAGS);
            w.fragment = Some(Fragment {
                offset: fo & 0xfff8,
                more: fo & 1 != 0,
                id: be32(h, field::FRAG_IDENT),
            });
        }
        next = byte(h, field::EXT_NEXT);
        w.next_header = next;
        w.len += ext_len;
    }
    if matches!(
        next,
        protocol::HOPOPT
            | protocol::IPV6_ROUTE
            | protocol::IPV6_OPTS
            | protocol::IPV6_FRAG
            | protocol::AH
    ) {
        w.error = Some((
            StopReason::Malformed("too many IPv6 extension headers"),
            w.len,
        ));
    }
    w
}

/// Parses an IPv6 header (and its extension headers) at `off` in `frame`.
#[inline]
pub(crate) fn parse_v6(
    frame: &[u8],
    off: usize,
) -> (Option<Ipv6Info<'_>>, Result<Upper<'_>, Stop>) {
    let h = tail(frame, off);
    if h.len() < field::V6_LEN {
        let r = StopReason::Truncated {
            required: field::V6_LEN,
            available: h.len(),
        };
        return (None, Err(stop(Layer::Ipv6, r, off)));
    }
    if byte(h, 0) >> 4 != 6 {
        return (
            None,
            Err(stop(
                Layer::Ipv6,
                StopReason::Malformed("IPv6 version is not 6"),
                off,
            )),
        );
    }
    let payload_len = be16(h, field::V6_PAYLOAD_LEN);
    let after = tail(h, field::V6_LEN);
    let wire_len = if payload_len == 0 {
        after.len()
    } else {
        usize::from(payload_len)
    };
    let data = head(after, wire_len);
    let first_next = byte(h, field::V6_NEXT_HEADER);
    let walk = walk_ext(first_next, data, wire_len);
    let info = Ipv6Info {
        src: v6_addr(h, field::V6_SRC),
        dst: v6_addr(h, field::V6_DST),
        next_header: walk.next_header,
        hop_limit: byte(h, field::V6_HOP_LIMIT),
        payload_len,
        fragment: walk.fragment,
        ext_len: walk.len as u16,
        payload: tail(data, walk.len),
    };
    let upper_off = off + field::V6_LEN + walk.len;
    if let Some((reason, at)) = walk.error {
        return (
            Some(info),
            Err(stop(Layer::Ipv6Ext, reason, off + field::V6_LEN + at)),
        );
    }
    if matches!(walk.fragment, Some(f) if f.offset != 0) {
        return (
            Some(info),
            Err(stop(Layer::Ipv6Ext, StopReason::Fragment, upper_off)),
        );
    }
    let upper = Upper {
        protocol: walk.next_header,
        data: info.payload,
        offset: upper_off,
        wire_len: wire_len - walk.len,
    };
    (Some(info), Ok(upper))
}
