//! Zero-copy, panic-free views over captured frames: link layers, IPv4/IPv6, TCP, UDP,
//! ICMP and DNS.
//!
//! This is netdiag's throughput core: every packet a capture or a file delivers goes
//! through [`Frame::parse`] once. It borrows the captured bytes, never allocates, never
//! panics and never reads past the end, whatever the input. A frame cut short by the
//! snap length, or one whose fields lie, is parsed as far as possible and
//! [`Frame::stop`] says at which [`Layer`], why ([`StopReason`]) and at which byte offset.
//!
//! | module / type | what you would look at with |
//! |---|---|
//! | [`LinkType`], [`link`] | `tcpdump -e`: Ethernet + 802.1Q/802.1ad/QinQ, Linux SLL/SLL2 (`tcpdump -i any`), raw IP, BSD loopback |
//! | [`Ipv4Info`], [`Ipv6Info`], [`Fragment`] | `tcpdump -v`: ttl, id, flags, fragments, IPv6 extension headers |
//! | [`TcpSegment`], [`TcpFlags`], [`TcpOptions`] | `tcpdump`: `Flags [S.]`, `seq`, `ack`, `win`, `options [mss,sackOK,TS,wscale]` |
//! | [`UdpDatagram`] | `tcpdump`: `UDP, length N` |
//! | [`IcmpMessage`], [`EmbeddedHeader`] | `tcpdump`: `ICMP … tcp port 80 unreachable` (the quoted original header) |
//! | [`dns::Message`], [`dns::Name`] | `dig`: header, rcode, question, counts; compressed names |
//! | [`Tunnel`], [`Frame::inner`] | `tcpdump -v`: `VXLAN … vni 1`, `Geneve`, `GREv0, key=…`, IP-in-IP; the pod packet inside the node packet |
//!
//! Style (after smoltcp and etherparse): each protocol module keeps its offsets in a
//! private `field` module; a header's length is checked once, after which reads cannot
//! fail. Views are `Copy` structs of plain values plus borrowed slices.
//!
//! # Example
//!
//! ```
//! use netdiag_wire::{Frame, LinkType, Transport};
//!
//! // A DNS query for "example.com" (A), Ethernet/IPv4/UDP.
//! let frame: &[u8] = &[
//!     0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0x08, 0x00, // Ethernet
//!     0x45, 0x00, 0x00, 0x39, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00, // IPv4 …
//!     10, 0, 0, 2, 10, 0, 0, 10, // src, dst
//!     0xd4, 0x31, 0x00, 0x35, 0x00, 0x25, 0x00, 0x00, // UDP 54321 → 53, length 37
//!     0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // DNS header
//!     7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, 0x00, 0x01, 0x00, 0x01,
//! ];
//! let f = Frame::parse(LinkType::from_linktype(1), frame);
//! assert!(f.stop.is_none());
//! let flow = f.five_tuple().unwrap();
//! assert_eq!((flow.src_port, flow.dst_port, flow.protocol), (54321, 53, 17));
//! assert!(matches!(f.transport, Some(Transport::Udp(_))));
//! let msg = f.dns().unwrap().unwrap();
//! let q = msg.question().unwrap();
//! assert_eq!(q.name.to_string(), "example.com");
//! assert_eq!(q.qtype, netdiag_wire::dns::QTYPE_A);
//! assert!(!msg.is_response());
//! ```
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod bytes;
pub mod dns;
mod frame;
pub mod icmp;
pub mod ip;
pub mod link;
pub mod tcp;
pub mod tunnel;
pub mod udp;

pub use frame::{FiveTuple, Frame, Layer, Net, Stop, StopReason, Transport};
pub use icmp::{EmbeddedHeader, IcmpMessage};
pub use ip::{Fragment, Ipv4Info, Ipv6Info};
pub use link::LinkType;
pub use tcp::{TcpFlags, TcpOption, TcpOptions, TcpSegment};
pub use tunnel::{Tunnel, TunnelKind};
pub use udp::UdpDatagram;

#[cfg(test)]
mod tests;
