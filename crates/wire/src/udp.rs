//! UDP datagrams.

use crate::bytes::{be16, head, tail};
use crate::frame::{Layer, Stop, StopReason};

mod field {
    use crate::bytes::Field;
    pub(super) const SRC_PORT: Field = 0..2;
    pub(super) const DST_PORT: Field = 2..4;
    pub(super) const LENGTH: Field = 4..6;
    pub(super) const CHECKSUM: Field = 6..8;
    pub(super) const LEN: usize = 8;
}

/// A UDP header and its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Length field (header + payload; 0 for IPv6 jumbograms).
    pub length: u16,
    /// Checksum field (0 = none, IPv4 only).
    pub checksum: u16,
    /// Captured payload bytes, cut to the UDP length.
    pub payload: &'a [u8],
    /// On-wire payload length (from the UDP length, or the IP length when it is 0).
    pub payload_len: u32,
}

/// Parses a UDP header in `data` (at frame offset `off`) whose on-wire length is `wire_len`.
#[inline]
pub(crate) fn parse(
    data: &[u8],
    off: usize,
    wire_len: usize,
) -> (Option<UdpDatagram<'_>>, Option<Stop>) {
    let Some(h) = data.first_chunk::<{ field::LEN }>() else {
        let r = StopReason::Truncated {
            required: field::LEN,
            available: data.len(),
        };
        return (
            None,
            Some(Stop {
                layer: Layer::Udp,
                reason: r,
                offset: off,
            }),
        );
    };
    let length = be16(h, field::LENGTH);
    let total = if length == 0 {
        wire_len
    } else {
        usize::from(length)
    };
    if total < field::LEN {
        let r = StopReason::Malformed("UDP length below 8");
        return (
            None,
            Some(Stop {
                layer: Layer::Udp,
                reason: r,
                offset: off,
            }),
        );
    }
    if total > wire_len {
        let r = StopReason::Malformed("UDP length exceeds the IP payload");
        return (
            None,
            Some(Stop {
                layer: Layer::Udp,
                reason: r,
                offset: off,
            }),
        );
    }
    let d = UdpDatagram {
        src_port: be16(h, field::SRC_PORT),
        dst_port: be16(h, field::DST_PORT),
        length,
        checksum: be16(h, field::CHECKSUM),
        payload: head(tail(data, field::LEN), total - field::LEN),
        payload_len: (total - field::LEN) as u32,
    };
    (Some(d), None)
}
