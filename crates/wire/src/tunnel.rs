//! Overlay tunnels: what `tcpdump -v` prints as `VXLAN, flags [I] (0x08), vni 1`,
//! `Geneve, … vni 0x1`, `GREv0, key=0x2a, seq 7` or an IP header inside an IP header.
//!
//! Kubernetes CNIs carry pod traffic between nodes inside these: flannel's VXLAN (UDP
//! 8472, the Linux kernel's historical port) and the IANA VXLAN port 4789 (Cilium, OVN,
//! Calico's VXLAN mode), Geneve (UDP 6081: OVN-Kubernetes, Antrea, Cilium), IP-in-IP
//! (IP protocol 4 for IPv4 inside, 41 for IPv6 inside: Calico's default) and GRE (IP
//! protocol 47, IP or Ethernet inside, with optional key and sequence number).
//!
//! A [`Tunnel`] is found by [`Frame::parse`](crate::Frame::parse) above the outer IP or
//! UDP header; [`Frame::inner`](crate::Frame::inner) parses what it carries as a frame of
//! its own (zero-copy, from the same bytes). Nesting is bounded by [`MAX_DEPTH`].
//!
//! Header layouts: VXLAN RFC 7348 §5, Geneve RFC 8926 §3, GRE RFC 2784 and RFC 2890,
//! IP-in-IP RFC 2003 and RFC 2473.

use core::net::IpAddr;

use crate::bytes::{be16, be32, byte, tail};
use crate::frame::{Layer, Stop, StopReason};
use crate::link::ethertype;

/// UDP destination ports that carry tunnels.
pub mod port {
    /// VXLAN, the IANA port (RFC 7348).
    pub const VXLAN: u16 = 4789;
    /// VXLAN on the Linux kernel's historical default port, used by flannel.
    pub const VXLAN_LINUX: u16 = 8472;
    /// Geneve (RFC 8926).
    pub const GENEVE: u16 = 6081;
}

/// The EtherType ("protocol type") a GRE or Geneve header uses for an Ethernet frame
/// inside ("Transparent Ethernet Bridging").
pub const ETHERTYPE_TEB: u16 = 0x6558;

/// The deepest tunnel nesting [`Frame::inner`](crate::Frame::inner) follows: a frame at
/// this depth that carries yet another tunnel stops with `Malformed`.
pub const MAX_DEPTH: u8 = 4;

mod field {
    use crate::bytes::Field;
    pub(super) const VXLAN_FLAGS: usize = 0;
    pub(super) const VXLAN_VNI: Field = 4..8;
    pub(super) const VXLAN_LEN: usize = 8;

    pub(super) const GENEVE_VER_OPTLEN: usize = 0;
    pub(super) const GENEVE_PROTOCOL: Field = 2..4;
    pub(super) const GENEVE_VNI: Field = 4..8;
    pub(super) const GENEVE_LEN: usize = 8;

    pub(super) const GRE_FLAGS_VERSION: Field = 0..2;
    pub(super) const GRE_PROTOCOL: Field = 2..4;
    pub(super) const GRE_LEN: usize = 4;
    pub(super) const GRE_OPTIONAL_LEN: usize = 4;
}

const VXLAN_FLAG_I: u8 = 0x08;
const GRE_FLAG_CHECKSUM: u16 = 0x8000;
const GRE_FLAG_ROUTING: u16 = 0x4000;
const GRE_FLAG_KEY: u16 = 0x2000;
const GRE_FLAG_SEQUENCE: u16 = 0x1000;
const GRE_VERSION_MASK: u16 = 0x0007;

/// Which encapsulation.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    /// VXLAN over UDP (4789 or 8472); Ethernet inside.
    Vxlan,
    /// Geneve over UDP 6081; Ethernet or IP inside.
    Geneve,
    /// IP directly inside IP (protocol 4 or 41); no header of its own.
    IpInIp,
    /// GRE (protocol 47); Ethernet or IP inside.
    Gre,
}

impl TunnelKind {
    /// The name people use: `VXLAN`, `Geneve`, `IP-in-IP`, `GRE`.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "VXLAN",
            TunnelKind::Geneve => "Geneve",
            TunnelKind::IpInIp => "IP-in-IP",
            TunnelKind::Gre => "GRE",
        }
    }
}

impl core::fmt::Display for TunnelKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a tunnel carries.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Inner {
    /// An Ethernet frame (VXLAN, Geneve or GRE with protocol 0x6558).
    Ethernet,
    /// An IPv4 packet.
    Ipv4,
    /// An IPv6 packet.
    Ipv6,
}

/// One encapsulation found in a frame: the outer (node) addresses, the tunnel's own
/// header fields, and the bytes of the packet inside.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunnel<'a> {
    /// Which encapsulation.
    pub kind: TunnelKind,
    /// Outer source address (the sending node).
    pub outer_src: IpAddr,
    /// Outer destination address (the receiving node).
    pub outer_dst: IpAddr,
    /// VXLAN or Geneve network identifier (24 bits); `None` for VXLAN without the I flag.
    pub vni: Option<u32>,
    /// GRE key, when the K flag is set.
    pub key: Option<u32>,
    /// GRE sequence number, when the S flag is set.
    pub sequence: Option<u32>,
    /// Geneve option bytes (TLVs, not interpreted); empty for other kinds.
    pub options: &'a [u8],
    /// What the payload starts with.
    pub inner: Inner,
    /// The captured bytes of the inner packet.
    pub payload: &'a [u8],
    /// Byte offset of `payload` in the outermost frame.
    pub offset: usize,
}

/// The outer layer's view that tunnel parsers need.
pub(crate) struct Outer {
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
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
fn truncated(layer: Layer, required: usize, available: usize, offset: usize) -> Stop {
    stop(
        layer,
        StopReason::Truncated {
            required,
            available,
        },
        offset,
    )
}

/// Which UDP tunnel, if any, a datagram with these ports carries. Linux sends VXLAN and
/// Geneve to the tunnel port in both directions (the source port is a flow hash), so
/// the destination port decides; a tunnel port as the source counts only when the
/// destination is not DNS and is unprivileged, so a DNS query whose ephemeral port
/// happens to be 4789 stays DNS.
#[inline]
pub(crate) fn udp_kind(src_port: u16, dst_port: u16) -> Option<TunnelKind> {
    let by_port = |p| match p {
        port::VXLAN | port::VXLAN_LINUX => Some(TunnelKind::Vxlan),
        port::GENEVE => Some(TunnelKind::Geneve),
        _ => None,
    };
    by_port(dst_port).or_else(|| {
        if dst_port >= 1024 && dst_port != 5353 {
            by_port(src_port)
        } else {
            None
        }
    })
}

/// A quick test before [`udp_kind`]: `false` when neither port lies between the lowest
/// and the highest UDP tunnel port (then [`udp_kind`] is `None`), `true` when one does
/// (then [`udp_kind`] decides).
#[inline(always)]
pub(crate) fn may_be_udp_tunnel(src_port: u16, dst_port: u16) -> bool {
    const LOW: u16 = port::VXLAN;
    const SPAN: u16 = port::VXLAN_LINUX - port::VXLAN;
    src_port.wrapping_sub(LOW) <= SPAN || dst_port.wrapping_sub(LOW) <= SPAN
}

/// Parses a VXLAN or Geneve header at the start of `data` (a UDP payload at frame offset
/// `off`).
#[inline]
pub(crate) fn parse_udp<'a>(
    kind: TunnelKind,
    outer: Outer,
    data: &'a [u8],
    off: usize,
) -> Result<Tunnel<'a>, Stop> {
    match kind {
        TunnelKind::Geneve => parse_geneve(outer, data, off),
        _ => parse_vxlan(outer, data, off),
    }
}

fn parse_vxlan<'a>(outer: Outer, data: &'a [u8], off: usize) -> Result<Tunnel<'a>, Stop> {
    let Some(h) = data.first_chunk::<{ field::VXLAN_LEN }>() else {
        return Err(truncated(Layer::Vxlan, field::VXLAN_LEN, data.len(), off));
    };
    let flags = byte(h, field::VXLAN_FLAGS);
    let vni = (flags & VXLAN_FLAG_I != 0).then(|| be32(h, field::VXLAN_VNI) >> 8);
    Ok(Tunnel {
        kind: TunnelKind::Vxlan,
        outer_src: outer.src,
        outer_dst: outer.dst,
        vni,
        key: None,
        sequence: None,
        options: &[],
        inner: Inner::Ethernet,
        payload: tail(data, field::VXLAN_LEN),
        offset: off + field::VXLAN_LEN,
    })
}

fn inner_by_ethertype(ty: u16) -> Option<Inner> {
    match ty {
        ETHERTYPE_TEB => Some(Inner::Ethernet),
        ethertype::IPV4 => Some(Inner::Ipv4),
        ethertype::IPV6 => Some(Inner::Ipv6),
        _ => None,
    }
}

fn parse_geneve<'a>(outer: Outer, data: &'a [u8], off: usize) -> Result<Tunnel<'a>, Stop> {
    let Some(h) = data.first_chunk::<{ field::GENEVE_LEN }>() else {
        return Err(truncated(Layer::Geneve, field::GENEVE_LEN, data.len(), off));
    };
    let ver_optlen = byte(h, field::GENEVE_VER_OPTLEN);
    if ver_optlen >> 6 != 0 {
        return Err(stop(
            Layer::Geneve,
            StopReason::Malformed("Geneve version is not 0"),
            off,
        ));
    }
    let len = field::GENEVE_LEN + usize::from(ver_optlen & 0x3f) * 4;
    if data.len() < len {
        return Err(truncated(Layer::Geneve, len, data.len(), off));
    }
    let protocol = be16(h, field::GENEVE_PROTOCOL);
    let Some(inner) = inner_by_ethertype(protocol) else {
        return Err(stop(Layer::Geneve, StopReason::Unsupported, off + len));
    };
    Ok(Tunnel {
        kind: TunnelKind::Geneve,
        outer_src: outer.src,
        outer_dst: outer.dst,
        vni: Some(be32(h, field::GENEVE_VNI) >> 8),
        key: None,
        sequence: None,
        options: data.get(field::GENEVE_LEN..len).unwrap_or(&[]),
        inner,
        payload: tail(data, len),
        offset: off + len,
    })
}

/// An IP packet directly inside IP (`protocol` 4 or 41): `data` is the outer payload at
/// frame offset `off`.
#[inline]
pub(crate) fn ip_in_ip(outer: Outer, inner: Inner, data: &[u8], off: usize) -> Tunnel<'_> {
    Tunnel {
        kind: TunnelKind::IpInIp,
        outer_src: outer.src,
        outer_dst: outer.dst,
        vni: None,
        key: None,
        sequence: None,
        options: &[],
        inner,
        payload: data,
        offset: off,
    }
}

/// Parses a GRE header at the start of `data` (the outer IP payload at frame offset `off`).
/// GRE that carries something other than Ethernet or IP (NHRP, WCCP, PPTP's version 1)
/// is not followed: it stops as an unsupported protocol of the outer IP layer
/// (`ip_layer`), as any other IP protocol we do not parse.
#[inline]
pub(crate) fn parse_gre(
    outer: Outer,
    data: &[u8],
    off: usize,
    ip_layer: Layer,
) -> Result<Tunnel<'_>, Stop> {
    let Some(h) = data.first_chunk::<{ field::GRE_LEN }>() else {
        return Err(truncated(Layer::Gre, field::GRE_LEN, data.len(), off));
    };
    let flags = be16(h, field::GRE_FLAGS_VERSION);
    if flags & GRE_VERSION_MASK != 0 {
        // Version 1 is PPTP's enhanced GRE (PPP inside): not a CNI encapsulation.
        return Err(stop(ip_layer, StopReason::Unsupported, off));
    }
    if flags & GRE_FLAG_ROUTING != 0 {
        // RFC 1701 source routing, deprecated by RFC 2784.
        return Err(stop(
            Layer::Gre,
            StopReason::Malformed("GRE routing present (deprecated RFC 1701)"),
            off,
        ));
    }
    let mut len = field::GRE_LEN;
    if flags & GRE_FLAG_CHECKSUM != 0 {
        len += field::GRE_OPTIONAL_LEN;
    }
    let key_at = len;
    if flags & GRE_FLAG_KEY != 0 {
        len += field::GRE_OPTIONAL_LEN;
    }
    let seq_at = len;
    if flags & GRE_FLAG_SEQUENCE != 0 {
        len += field::GRE_OPTIONAL_LEN;
    }
    if data.len() < len {
        return Err(truncated(Layer::Gre, len, data.len(), off));
    }
    let protocol = be16(h, field::GRE_PROTOCOL);
    let Some(inner) = inner_by_ethertype(protocol) else {
        return Err(stop(ip_layer, StopReason::Unsupported, off));
    };
    let word = |at: usize| be32(data, at..at + field::GRE_OPTIONAL_LEN);
    Ok(Tunnel {
        kind: TunnelKind::Gre,
        outer_src: outer.src,
        outer_dst: outer.dst,
        vni: None,
        key: (flags & GRE_FLAG_KEY != 0).then(|| word(key_at)),
        sequence: (flags & GRE_FLAG_SEQUENCE != 0).then(|| word(seq_at)),
        options: &[],
        inner,
        payload: tail(data, len),
        offset: off + len,
    })
}
