//! [`Frame`]: one captured frame parsed from the link layer to the transport header.

use core::net::IpAddr;

use crate::bytes::tail;
use crate::dns::{self, DnsError};
use crate::icmp::{self, IcmpMessage};
use crate::ip::{self, Ipv4Info, Ipv6Info, Upper, protocol};
use crate::link::{self, LinkStop, LinkType, Next, ethertype};
use crate::tcp::{self, TcpSegment};
use crate::tunnel::{self, Inner, Outer, Tunnel};
use crate::udp::{self, UdpDatagram};

/// The protocol layer at which parsing stopped.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The link header (Ethernet, SLL, SLL2, loopback, PKTAP, ARCNET).
    Link,
    /// An 802.1Q / 802.1ad VLAN tag.
    Vlan,
    /// The IPv4 header.
    Ipv4,
    /// The fixed IPv6 header.
    Ipv6,
    /// An IPv6 extension header.
    Ipv6Ext,
    /// The TCP header.
    Tcp,
    /// The UDP header.
    Udp,
    /// The ICMP header.
    Icmp,
    /// A DNS message.
    Dns,
    /// A VXLAN header.
    Vxlan,
    /// A Geneve header (with its options).
    Geneve,
    /// A GRE header (with its optional fields).
    Gre,
    /// A tunnel inside tunnels deeper than [`tunnel::MAX_DEPTH`](crate::tunnel::MAX_DEPTH).
    Tunnel,
}

/// Why parsing stopped.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The captured bytes end inside a header.
    Truncated {
        /// Bytes the header needs (from the start of the layer).
        required: usize,
        /// Bytes that were captured (from the start of the layer).
        available: usize,
    },
    /// A field says something impossible.
    Malformed(&'static str),
    /// A protocol this crate does not parse (link type, EtherType, IP protocol).
    Unsupported,
    /// A non-first IP fragment: there is no transport header.
    Fragment,
}

/// Where and why [`Frame::parse`] stopped before the end of the transport header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stop {
    /// The layer that could not be parsed (further).
    pub layer: Layer,
    /// Why.
    pub reason: StopReason,
    /// Byte offset in the frame where that layer starts.
    pub offset: usize,
}

/// The network layer of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net<'a> {
    /// IPv4.
    Ipv4(Ipv4Info<'a>),
    /// IPv6.
    Ipv6(Ipv6Info<'a>),
    /// ARP (not parsed further).
    Arp,
    /// Another EtherType (not parsed further).
    Other {
        /// The EtherType.
        ethertype: u16,
    },
}

impl Net<'_> {
    /// Source IP address, for IPv4 and IPv6.
    #[inline]
    pub fn src(&self) -> Option<IpAddr> {
        match self {
            Net::Ipv4(i) => Some(IpAddr::V4(i.src)),
            Net::Ipv6(i) => Some(IpAddr::V6(i.src)),
            _ => None,
        }
    }
    /// Destination IP address, for IPv4 and IPv6.
    #[inline]
    pub fn dst(&self) -> Option<IpAddr> {
        match self {
            Net::Ipv4(i) => Some(IpAddr::V4(i.dst)),
            Net::Ipv6(i) => Some(IpAddr::V6(i.dst)),
            _ => None,
        }
    }
    /// The upper-layer protocol number (IPv6: after extension headers).
    #[inline]
    pub fn protocol(&self) -> Option<u8> {
        match self {
            Net::Ipv4(i) => Some(i.protocol),
            Net::Ipv6(i) => Some(i.next_header),
            _ => None,
        }
    }
    /// Fragmentation state, if the packet is a fragment.
    #[inline]
    pub fn fragment(&self) -> Option<ip::Fragment> {
        match self {
            Net::Ipv4(i) => i.fragment,
            Net::Ipv6(i) => i.fragment,
            _ => None,
        }
    }
}

/// The transport layer of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport<'a> {
    /// TCP.
    Tcp(TcpSegment<'a>),
    /// UDP.
    Udp(UdpDatagram<'a>),
    /// ICMPv4 or ICMPv6.
    Icmp(IcmpMessage<'a>),
}

/// The flow key of a TCP or UDP packet, as sent (not normalised by direction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FiveTuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// IP protocol (6 TCP, 17 UDP).
    pub protocol: u8,
}

impl FiveTuple {
    /// The same flow seen from the other side.
    pub fn reversed(&self) -> FiveTuple {
        FiveTuple {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            protocol: self.protocol,
        }
    }
}

/// One captured frame, parsed as far as possible. Parsing never fails: `stop` says
/// where and why it ended (`None` = every header up to the transport layer was parsed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The link type the frame was parsed as.
    pub link: LinkType,
    /// Outermost 802.1Q/802.1ad VLAN ID, if any.
    pub vlan: Option<u16>,
    /// Network layer, when the link layer was parsed.
    pub net: Option<Net<'a>>,
    /// Transport layer, when the network layer was IP and parsed.
    pub transport: Option<Transport<'a>>,
    /// Where parsing stopped early, if it did. A frame that carries a tunnel stops
    /// here only when the tunnel's own header is cut or malformed; how far the packet
    /// inside parses is the [`Frame::inner`] frame's `stop`.
    pub stop: Option<Stop>,
    /// The overlay tunnel this frame carries (VXLAN, Geneve, IP-in-IP, GRE), found
    /// above `net` (IP-in-IP, GRE) or `transport` (UDP tunnels). [`Frame::inner`]
    /// parses the packet inside.
    pub tunnel: Option<Tunnel<'a>>,
    /// How many tunnels this frame is inside: 0 for a captured frame, 1 for the
    /// [`Frame::inner`] of that, and so on up to [`tunnel::MAX_DEPTH`].
    pub depth: u8,
}

/// The IP step shared by the second tier and the general parser: for an IPv4 or IPv6
/// ethertype at `off`, the network header (if it parsed) and where the upper layer
/// starts, or why parsing stops there; `None` for any other ethertype.
#[inline(always)]
fn ip_step(
    bytes: &[u8],
    off: usize,
    ty: u16,
) -> Option<(Option<Net<'_>>, Result<Upper<'_>, Stop>)> {
    match ty {
        ethertype::IPV4 => {
            let (info, up) = ip::parse_v4(bytes, off);
            Some((info.map(Net::Ipv4), up))
        }
        ethertype::IPV6 => {
            let (info, up) = ip::parse_v6(bytes, off);
            Some((info.map(Net::Ipv6), up))
        }
        _ => None,
    }
}

impl<'a> Frame<'a> {
    /// Parses `bytes` captured with link type `link`. Never panics, never allocates, and
    /// never reads past the end of `bytes`.
    ///
    /// The common case (Ethernet, at most one 802.1Q tag, then ARP, or IPv4 without
    /// options or IPv6 without extension headers, unfragmented, then a complete TCP or
    /// UDP header, no tunnel) takes a fast path that the caller's compiler can inline:
    /// it reads the headers at fixed offsets and builds the same [`Frame`] the general
    /// parser would. An Ethernet frame it declines with IPv4 or IPv6 after the link
    /// header goes on inline too, through the general parser's IP and transport steps
    /// (tunnels, ICMP, options, extension headers, fragments, cut or malformed headers);
    /// anything else goes to the general parser, out of line.
    #[inline]
    pub fn parse(link: LinkType, bytes: &'a [u8]) -> Frame<'a> {
        if link == LinkType::Ethernet {
            if let Some(f) = Frame::ethernet_fast(bytes) {
                return f;
            }
            // The second tier, inline: an out-of-line call costs ~120 instructions more
            // per frame (callgrind, testdata: a whole frame built on the callee's stack
            // and copied out). Its frame is kept apart by `black_box`, as the general
            // parser's is below.
            let mut f = Frame::empty(link, 0);
            if f.ethernet_ip_then_general(bytes) {
                core::hint::black_box(&f);
                return f;
            }
        }
        // The general parser writes its frame into a place of its own, which
        // `black_box` keeps apart from the returned one (it changes no value): otherwise
        // the compiler merges the two, and the inlined fast path must store every field
        // of its frame to memory (~80 instructions a packet, callgrind) instead of
        // leaving the ones its caller never reads unbuilt.
        let general = Frame::parse_general(link, bytes);
        core::hint::black_box(&general);
        general
    }

    /// The general parser for a captured frame: out of line and marked cold, so that
    /// callers lay out (and allocate registers for) the fast path first.
    #[cold]
    #[inline(never)]
    fn parse_general(link: LinkType, bytes: &'a [u8]) -> Frame<'a> {
        Frame::parse_at_depth(link, bytes, 0)
    }

    /// A second tier for Ethernet frames the fast path declined: when the link header is
    /// one the fast path reads (Ethernet, at most one 802.1Q tag) and IPv4 or IPv6
    /// follows, the general parser's IP and transport steps (options, extension
    /// headers, fragments, tunnels, ICMP, truncated or malformed headers) finish the
    /// frame, in this empty Ethernet frame (built in place: a frame is ~300 bytes, and
    /// returning one from a callee costs a copy). `false` (the frame untouched) sends
    /// the frame to the general parser.
    #[inline]
    fn ethernet_ip_then_general(&mut self, b: &'a [u8]) -> bool {
        let Some(eth) = b.first_chunk::<{ link::field::ETH_LEN }>() else {
            return false;
        };
        let mut ty = u16::from_be_bytes([eth[12], eth[13]]);
        let mut off = link::field::ETH_LEN;
        let mut vlan = None;
        if ty == ethertype::VLAN {
            let Some(tag) = tail(b, off).first_chunk::<{ link::field::VLAN_LEN }>() else {
                return false;
            };
            vlan = Some(u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff);
            ty = u16::from_be_bytes([tag[2], tag[3]]);
            off += link::field::VLAN_LEN;
        }
        // The general parser's IP and transport steps, as `parse_at_depth` takes them.
        let Some((net, upper)) = ip_step(b, off, ty) else {
            return false;
        };
        self.net = net;
        self.vlan = vlan;
        match upper {
            Ok(up) => self.parse_transport(up),
            Err(s) => self.stop = Some(s),
        }
        true
    }

    /// [`Frame::parse`] without its fast path: the general parser alone. Only for
    /// differential tests and fuzzing (both must return the same frame); not part of the
    /// supported API.
    #[doc(hidden)]
    pub fn parse_without_fast_path(link: LinkType, bytes: &'a [u8]) -> Frame<'a> {
        Frame::parse_at_depth(link, bytes, 0)
    }

    /// The fast path of [`Frame::parse`] for Ethernet: `None` sends the frame to the
    /// general parser. Every field it sets is the one the general parser would set (the
    /// differential tests check this, slice positions included).
    #[inline(always)]
    fn ethernet_fast(b: &'a [u8]) -> Option<Frame<'a>> {
        let eth = b.first_chunk::<{ link::field::ETH_LEN }>()?;
        let mut ty = u16::from_be_bytes([eth[12], eth[13]]);
        let mut off = link::field::ETH_LEN;
        let mut vlan = None;
        if ty == ethertype::VLAN {
            let tag = tail(b, off).first_chunk::<{ link::field::VLAN_LEN }>()?;
            vlan = Some(u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff);
            ty = u16::from_be_bytes([tag[2], tag[3]]);
            off += link::field::VLAN_LEN;
        }
        let (net, up) = match ty {
            ethertype::IPV4 => ip::parse_v4_fast(b, off)?,
            ethertype::IPV6 => ip::parse_v6_fast(b, off)?,
            // ARP is not parsed further, and never stops.
            ethertype::ARP => {
                return Some(Frame {
                    link: LinkType::Ethernet,
                    vlan,
                    net: Some(Net::Arp),
                    transport: None,
                    stop: None,
                    tunnel: None,
                    depth: 0,
                });
            }
            _ => return None,
        };
        let transport = match up.protocol {
            protocol::TCP => match tcp::parse(up.data, up.offset, up.wire_len) {
                (Some(t), None) => Transport::Tcp(t),
                _ => return None,
            },
            protocol::UDP => match udp::parse(up.data, up.offset, up.wire_len) {
                (Some(u), None)
                    if !(tunnel::may_be_udp_tunnel(u.src_port, u.dst_port)
                        && tunnel::udp_kind(u.src_port, u.dst_port).is_some()) =>
                {
                    Transport::Udp(u)
                }
                _ => return None,
            },
            _ => return None,
        };
        Some(Frame {
            link: LinkType::Ethernet,
            vlan,
            net: Some(net),
            transport: Some(transport),
            stop: None,
            tunnel: None,
            depth: 0,
        })
    }

    /// The packet inside this frame's tunnel, parsed as a frame of its own (zero-copy;
    /// its `link` is Ethernet for VXLAN and Ethernet-over-GRE/Geneve, else raw IPv4 or
    /// IPv6). Offsets in its [`Stop`] count from the start of the outermost frame.
    /// `None` when the frame carries no tunnel.
    #[inline]
    pub fn inner(&self) -> Option<Frame<'a>> {
        let t = self.tunnel.as_ref()?;
        let link = match t.inner {
            Inner::Ethernet => LinkType::Ethernet,
            Inner::Ipv4 => LinkType::Ipv4,
            Inner::Ipv6 => LinkType::Ipv6,
        };
        let mut f = Frame::parse_at_depth(link, t.payload, self.depth.saturating_add(1));
        if let Some(s) = f.stop.as_mut() {
            s.offset = s.offset.saturating_add(t.offset);
        }
        if let Some(it) = f.tunnel.as_mut() {
            it.offset = it.offset.saturating_add(t.offset);
        }
        Some(f)
    }

    /// The innermost frame: follows [`Frame::inner`] through every tunnel (at most
    /// [`tunnel::MAX_DEPTH`]), returning it with the outermost tunnel (the node-to-node
    /// one), if there was any.
    #[inline]
    pub fn innermost(&self) -> (Frame<'a>, Option<Tunnel<'a>>) {
        let outermost = self.tunnel;
        let mut f = *self;
        while let Some(inner) = f.inner() {
            f = inner;
        }
        (f, outermost)
    }

    /// A frame of `link` at tunnel depth `depth` with no layer parsed yet.
    #[inline(always)]
    fn empty(link: LinkType, depth: u8) -> Frame<'a> {
        Frame {
            link,
            vlan: None,
            net: None,
            transport: None,
            stop: None,
            tunnel: None,
            depth,
        }
    }

    fn parse_at_depth(link: LinkType, bytes: &'a [u8], depth: u8) -> Frame<'a> {
        let mut f = Frame::empty(link, depth);
        let l = link::parse(link, bytes);
        f.vlan = l.vlan;
        let (ty, off) = match l.next {
            Ok(Next::EtherType(ty, off)) => (ty, off),
            // LINKTYPE_IPV4: tcpdump and tshark follow the version nibble of a captured
            // packet; a tunnel's inner header must be the version it names.
            Ok(Next::IpPreferring(ty, off)) => match link::version_nibble(bytes, off) {
                4 if depth == 0 => (ethertype::IPV4, off),
                6 if depth == 0 => (ethertype::IPV6, off),
                _ => (ty, off),
            },
            Ok(Next::RawIp(off)) => match link::version_nibble(bytes, off) {
                4 => (ethertype::IPV4, off),
                6 => (ethertype::IPV6, off),
                _ => {
                    let reason = if bytes.len() <= off {
                        StopReason::Truncated {
                            required: 1,
                            available: 0,
                        }
                    } else {
                        StopReason::Malformed("raw IP version is neither 4 nor 6")
                    };
                    f.stop = Some(Stop {
                        layer: Layer::Ipv4,
                        reason,
                        offset: off,
                    });
                    return f;
                }
            },
            Err(e) => {
                f.stop = Some(link_stop(e));
                return f;
            }
        };
        let upper = match (ty, ip_step(bytes, off, ty)) {
            (_, Some((net, up))) => {
                f.net = net;
                up
            }
            (ethertype::ARP, None) => {
                f.net = Some(Net::Arp);
                return f;
            }
            (other, None) => {
                f.net = Some(Net::Other { ethertype: other });
                f.stop = Some(Stop {
                    layer: Layer::Link,
                    reason: StopReason::Unsupported,
                    offset: off,
                });
                return f;
            }
        };
        match upper {
            Ok(up) => f.parse_transport(up),
            Err(s) => f.stop = Some(s),
        }
        f
    }

    fn outer(&self) -> Option<Outer> {
        let net = self.net.as_ref()?;
        Some(Outer {
            src: net.src()?,
            dst: net.dst()?,
        })
    }

    /// Records a tunnel found in this frame, or the stop when nested too deeply.
    fn found_tunnel(&mut self, t: Result<Tunnel<'a>, Stop>, at: usize) {
        if self.depth >= tunnel::MAX_DEPTH {
            self.stop = Some(Stop {
                layer: Layer::Tunnel,
                reason: StopReason::Malformed("tunnels nested too deeply"),
                offset: at,
            });
            return;
        }
        match t {
            Ok(t) => self.tunnel = Some(t),
            Err(s) => self.stop = Some(s),
        }
    }

    #[inline]
    fn parse_transport(&mut self, up: Upper<'a>) {
        let (transport, stop) = match up.protocol {
            protocol::IPIP | protocol::IPV6 | protocol::GRE => {
                if let Some(outer) = self.outer() {
                    let t = match up.protocol {
                        protocol::GRE => {
                            let layer = if matches!(self.net, Some(Net::Ipv6(_))) {
                                Layer::Ipv6
                            } else {
                                Layer::Ipv4
                            };
                            tunnel::parse_gre(outer, up.data, up.offset, layer)
                        }
                        protocol::IPIP => {
                            Ok(tunnel::ip_in_ip(outer, Inner::Ipv4, up.data, up.offset))
                        }
                        _ => Ok(tunnel::ip_in_ip(outer, Inner::Ipv6, up.data, up.offset)),
                    };
                    self.found_tunnel(t, up.offset);
                }
                return;
            }
            protocol::TCP => {
                let (t, s) = tcp::parse(up.data, up.offset, up.wire_len);
                (t.map(Transport::Tcp), s)
            }
            protocol::UDP => {
                let (t, s) = udp::parse(up.data, up.offset, up.wire_len);
                if let (Some(d), None) = (&t, &s) {
                    if let Some(kind) = tunnel::udp_kind(d.src_port, d.dst_port) {
                        if let Some(outer) = self.outer() {
                            let at = up.offset + 8;
                            self.transport = t.map(Transport::Udp);
                            self.found_tunnel(tunnel::parse_udp(kind, outer, d.payload, at), at);
                            return;
                        }
                    }
                }
                (t.map(Transport::Udp), s)
            }
            protocol::ICMP if matches!(self.net, Some(Net::Ipv4(_))) => {
                let (t, s) = icmp::parse(up.data, up.offset, false);
                (t.map(Transport::Icmp), s)
            }
            protocol::ICMPV6 if matches!(self.net, Some(Net::Ipv6(_))) => {
                let (t, s) = icmp::parse(up.data, up.offset, true);
                (t.map(Transport::Icmp), s)
            }
            // "No next header" legitimately ends the packet.
            protocol::IPV6_NONXT if matches!(self.net, Some(Net::Ipv6(_))) => (None, None),
            _ => {
                let layer = if matches!(self.net, Some(Net::Ipv6(_))) {
                    Layer::Ipv6
                } else {
                    Layer::Ipv4
                };
                (
                    None,
                    Some(Stop {
                        layer,
                        reason: StopReason::Unsupported,
                        offset: up.offset,
                    }),
                )
            }
        };
        self.transport = transport;
        self.stop = stop;
    }

    /// `(src ip, dst ip, src port, dst port, ip protocol)` when IP and TCP/UDP were parsed.
    #[inline]
    pub fn five_tuple(&self) -> Option<FiveTuple> {
        let net = self.net.as_ref()?;
        let (src_port, dst_port, protocol) = match self.transport.as_ref()? {
            Transport::Tcp(t) => (t.src_port, t.dst_port, protocol::TCP),
            Transport::Udp(u) => (u.src_port, u.dst_port, protocol::UDP),
            Transport::Icmp(_) => return None,
        };
        Some(FiveTuple {
            src: net.src()?,
            dst: net.dst()?,
            src_port,
            dst_port,
            protocol,
        })
    }

    /// The TCP segment, if the transport is TCP.
    #[inline]
    pub fn tcp(&self) -> Option<&TcpSegment<'a>> {
        match &self.transport {
            Some(Transport::Tcp(t)) => Some(t),
            _ => None,
        }
    }

    /// The UDP datagram, if the transport is UDP.
    #[inline]
    pub fn udp(&self) -> Option<&UdpDatagram<'a>> {
        match &self.transport {
            Some(Transport::Udp(u)) => Some(u),
            _ => None,
        }
    }

    /// The DNS message carried by this frame: UDP with port 53 or 5353 (mDNS) on either
    /// side, or TCP port 53 when the segment starts with a complete length-prefixed
    /// message. `None` when the frame is not DNS by port.
    #[inline]
    pub fn dns(&self) -> Option<Result<dns::Message<'a>, DnsError>> {
        match &self.transport {
            Some(Transport::Udp(u)) if is_dns_port(u.src_port) || is_dns_port(u.dst_port) => {
                Some(dns::Message::parse(u.payload))
            }
            Some(Transport::Tcp(t))
                if (t.src_port == 53 || t.dst_port == 53) && !t.payload.is_empty() =>
            {
                Some(dns::Message::parse_tcp(t.payload))
            }
            _ => None,
        }
    }
}

#[inline]
fn is_dns_port(p: u16) -> bool {
    p == 53 || p == 5353
}

fn link_stop(e: LinkStop) -> Stop {
    match e {
        LinkStop::Truncated {
            required,
            available,
            offset,
            vlan,
        } => Stop {
            layer: if vlan { Layer::Vlan } else { Layer::Link },
            reason: StopReason::Truncated {
                required: required - offset,
                available: available.saturating_sub(offset),
            },
            offset,
        },
        LinkStop::Unsupported { offset } => Stop {
            layer: Layer::Link,
            reason: StopReason::Unsupported,
            offset,
        },
        LinkStop::Malformed { why, offset, vlan } => Stop {
            layer: if vlan { Layer::Vlan } else { Layer::Link },
            reason: StopReason::Malformed(why),
            offset,
        },
    }
}
