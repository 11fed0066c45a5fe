//! TCP segments and options: what `tcpdump` prints as `Flags [S.], seq, ack, win, options [...]`.

use crate::bytes::{be16, be32, byte, head, tail};
use crate::frame::{Layer, Stop, StopReason};

mod field {
    use crate::bytes::Field;
    pub(super) const SRC_PORT: Field = 0..2;
    pub(super) const DST_PORT: Field = 2..4;
    pub(super) const SEQ: Field = 4..8;
    pub(super) const ACK: Field = 8..12;
    pub(super) const DATA_OFFSET: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WINDOW: Field = 14..16;
    pub(super) const MIN_LEN: usize = 20;
}

/// TCP option kinds.
mod kind {
    pub(super) const END: u8 = 0;
    pub(super) const NOP: u8 = 1;
    pub(super) const MSS: u8 = 2;
    pub(super) const WSCALE: u8 = 3;
    pub(super) const SACK_PERMITTED: u8 = 4;
    pub(super) const SACK: u8 = 5;
    pub(super) const TIMESTAMPS: u8 = 8;
}

/// The TCP flag byte (low 8 bits of the flags field: FIN = 0x01 … CWR = 0x80).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN: no more data from the sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN: synchronise sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST: reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// PSH: push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// ACK: the acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// URG: the urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECE: ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// CWR: congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// Whether every flag set in `other` is set in `self`.
    #[inline]
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// FIN is set.
    #[inline]
    pub fn fin(self) -> bool {
        self.contains(Self::FIN)
    }
    /// SYN is set.
    #[inline]
    pub fn syn(self) -> bool {
        self.contains(Self::SYN)
    }
    /// RST is set.
    #[inline]
    pub fn rst(self) -> bool {
        self.contains(Self::RST)
    }
    /// PSH is set.
    #[inline]
    pub fn psh(self) -> bool {
        self.contains(Self::PSH)
    }
    /// ACK is set.
    #[inline]
    pub fn ack(self) -> bool {
        self.contains(Self::ACK)
    }
    /// URG is set.
    #[inline]
    pub fn urg(self) -> bool {
        self.contains(Self::URG)
    }
    /// ECE is set.
    #[inline]
    pub fn ece(self) -> bool {
        self.contains(Self::ECE)
    }
    /// CWR is set.
    #[inline]
    pub fn cwr(self) -> bool {
        self.contains(Self::CWR)
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl core::fmt::Display for TcpFlags {
    /// tcpdump's notation: `S`, `S.`, `F.`, `R`, `P.`, `.` for a bare ACK.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut any = false;
        for (flag, c) in [
            (Self::FIN, 'F'),
            (Self::SYN, 'S'),
            (Self::RST, 'R'),
            (Self::PSH, 'P'),
            (Self::URG, 'U'),
            (Self::ECE, 'E'),
            (Self::CWR, 'W'),
        ] {
            if self.contains(flag) {
                core::fmt::Write::write_char(f, c)?;
                any = true;
            }
        }
        if self.ack() {
            f.write_str(".")?;
        } else if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// Lazy view of the TCP option bytes; accessors walk the raw bytes (bounded by their
/// length) and never panic. A malformed option ends the walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpOptions<'a>(&'a [u8]);

/// One TCP option: its kind and value bytes (without kind and length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpOption<'a> {
    /// Option kind (2 MSS, 3 window scale, 4 SACK-permitted, 5 SACK, 8 timestamps…).
    pub kind: u8,
    /// Value bytes.
    pub data: &'a [u8],
}

/// Iterator over [`TcpOption`]s, skipping NOPs and stopping at END or a malformed option.
#[derive(Clone, Debug)]
pub struct TcpOptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for TcpOptionIter<'a> {
    type Item = TcpOption<'a>;
    fn next(&mut self) -> Option<TcpOption<'a>> {
        loop {
            let (&k, after) = self.rest.split_first()?;
            match k {
                kind::END => {
                    self.rest = &[];
                    return None;
                }
                kind::NOP => self.rest = after,
                _ => {
                    let len = usize::from(*after.first()?);
                    if len < 2 || len > self.rest.len() {
                        self.rest = &[];
                        return None;
                    }
                    let data = self.rest.get(2..len).unwrap_or(&[]);
                    self.rest = tail(self.rest, len);
                    return Some(TcpOption { kind: k, data });
                }
            }
        }
    }
}

impl<'a> TcpOptions<'a> {
    /// A view over raw option bytes.
    pub fn new(raw: &'a [u8]) -> Self {
        TcpOptions(raw)
    }
    /// The raw option bytes.
    pub fn raw(&self) -> &'a [u8] {
        self.0
    }
    /// Iterates over all options.
    pub fn iter(&self) -> TcpOptionIter<'a> {
        TcpOptionIter { rest: self.0 }
    }
    fn find(&self, k: u8, len: usize) -> Option<&'a [u8]> {
        self.iter()
            .find(|o| o.kind == k && o.data.len() == len)
            .map(|o| o.data)
    }
    /// Maximum segment size (kind 2).
    pub fn mss(&self) -> Option<u16> {
        self.find(kind::MSS, 2).map(|d| be16(d, 0..2))
    }
    /// Window-scale shift count (kind 3).
    pub fn window_scale(&self) -> Option<u8> {
        self.find(kind::WSCALE, 1).map(|d| byte(d, 0))
    }
    /// SACK permitted (kind 4).
    pub fn sack_permitted(&self) -> bool {
        self.find(kind::SACK_PERMITTED, 0).is_some()
    }
    /// Timestamps (kind 8): `(TSval, TSecr)`.
    pub fn timestamps(&self) -> Option<(u32, u32)> {
        self.find(kind::TIMESTAMPS, 8)
            .map(|d| (be32(d, 0..4), be32(d, 4..8)))
    }
    /// SACK blocks (kind 5) as `(left edge, right edge)`; empty when there is none.
    pub fn sack_blocks(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        let data = self
            .iter()
            .find(|o| o.kind == kind::SACK && o.data.len() % 8 == 0)
            .map(|o| o.data)
            .unwrap_or(&[]);
        data.chunks_exact(8).map(|c| (be32(c, 0..4), be32(c, 4..8)))
    }
}

impl<'a> IntoIterator for TcpOptions<'a> {
    type Item = TcpOption<'a>;
    type IntoIter = TcpOptionIter<'a>;
    fn into_iter(self) -> TcpOptionIter<'a> {
        self.iter()
    }
}

/// A TCP segment header and its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful when ACK is set).
    pub ack: u32,
    /// Flags (FIN … CWR).
    pub flags: TcpFlags,
    /// Raw window field (unscaled).
    pub window: u16,
    /// Header length in bytes (data offset × 4).
    pub header_len: u8,
    /// Options (may be cut short when the capture ends inside them; see `Frame::stop`).
    pub options: TcpOptions<'a>,
    /// Captured payload bytes.
    pub payload: &'a [u8],
    /// On-wire payload length from the IP length fields (`>= payload.len()`).
    pub payload_len: u32,
}

/// Parses a TCP header in `data` (at frame offset `off`) whose on-wire length is `wire_len`.
///
/// When the 20-byte fixed header is present but options are cut off, the segment is
/// still returned (ports, seq/ack and flags are valid) together with a `Truncated` stop.
#[inline]
pub(crate) fn parse(
    data: &[u8],
    off: usize,
    wire_len: usize,
) -> (Option<TcpSegment<'_>>, Option<Stop>) {
    let Some(h) = data.first_chunk::<{ field::MIN_LEN }>() else {
        let r = StopReason::Truncated {
            required: field::MIN_LEN,
            available: data.len(),
        };
        return (
            None,
            Some(Stop {
                layer: Layer::Tcp,
                reason: r,
                offset: off,
            }),
        );
    };
    let header_len = usize::from(h[field::DATA_OFFSET] >> 4) * 4;
    if header_len < field::MIN_LEN {
        let r = StopReason::Malformed("TCP data offset below 5");
        return (
            None,
            Some(Stop {
                layer: Layer::Tcp,
                reason: r,
                offset: off,
            }),
        );
    }
    if header_len > wire_len {
        let r = StopReason::Malformed("TCP header longer than the IP payload");
        return (
            None,
            Some(Stop {
                layer: Layer::Tcp,
                reason: r,
                offset: off,
            }),
        );
    }
    let mut seg = TcpSegment {
        src_port: be16(h, field::SRC_PORT),
        dst_port: be16(h, field::DST_PORT),
        seq: be32(h, field::SEQ),
        ack: be32(h, field::ACK),
        flags: TcpFlags(h[field::FLAGS]),
        window: be16(h, field::WINDOW),
        header_len: header_len as u8,
        options: TcpOptions(head(
            tail(data, field::MIN_LEN),
            header_len - field::MIN_LEN,
        )),
        payload: tail(data, header_len),
        payload_len: (wire_len - header_len) as u32,
    };
    if data.len() < header_len {
        seg.payload = &[];
        let r = StopReason::Truncated {
            required: header_len,
            available: data.len(),
        };
        return (
            Some(seg),
            Some(Stop {
                layer: Layer::Tcp,
                reason: r,
                offset: off,
            }),
        );
    }
    (Some(seg), None)
}
