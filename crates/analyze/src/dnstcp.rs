//! DNS over TCP (RFC 1035 §4.2.2, RFC 7766): each message is preceded by a two-byte
//! length; a segment may carry several messages, and one message may span segments.
//!
//! Per direction of each TCP connection on port 53, the reassembler follows the sequence
//! numbers and hands every complete message to a callback: straight from the segment
//! when it lies whole in it (no copy), from a per-stream buffer when it was split.
//! Bounded: at most [`MAX_STREAMS`] streams and [`MAX_MESSAGE`] buffered bytes each; a
//! longer message is skipped by its length (the stream stays in step) and counted, as is
//! a stream that finds the table full and a gap in the sequence (a segment the capture
//! missed), after which the next segment is taken to start a message.

use crate::flow::{Endpoint, FxMap};

/// Most TCP DNS streams (one direction of one connection) followed at once.
pub(crate) const MAX_STREAMS: usize = 1024;
/// Most bytes buffered for one split message (length prefix included); a larger
/// message is skipped and counted in [`DnsTcp::over_cap`].
pub(crate) const MAX_MESSAGE: usize = 16 * 1024;
/// A stream idle this long (packet time) may be dropped to make room.
const STREAM_IDLE_NS: u64 = 60_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct StreamKey {
    source: u16,
    src: Endpoint,
    dst: Endpoint,
}

#[derive(Default)]
struct Stream {
    next_seq: u32,
    /// A split message so far, with its length prefix.
    buf: Vec<u8>,
    /// Bytes of an over-long message still to skip.
    skip: usize,
    last_ns: u64,
}

/// The TCP DNS reassembler.
#[derive(Default)]
pub(crate) struct DnsTcp {
    streams: FxMap<StreamKey, Stream>,
    /// Messages longer than [`MAX_MESSAGE`] split across segments, skipped.
    pub(crate) over_cap: u64,
    /// Segments of streams that found the table full.
    pub(crate) not_tracked: u64,
    /// Sequence gaps (the capture missed a segment): the message in progress is lost.
    pub(crate) gaps: u64,
}

/// The parts of a TCP segment the reassembler needs.
pub(crate) struct Segment<'p> {
    pub(crate) seq: u32,
    pub(crate) syn: bool,
    pub(crate) fin_or_rst: bool,
    pub(crate) payload: &'p [u8],
}

/// `a` comes before `b` in sequence space.
#[inline]
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl DnsTcp {
    /// One segment from `src` to `dst`; `emit` gets every DNS message it completes.
    pub(crate) fn on_segment(
        &mut self,
        source: u16,
        src: Endpoint,
        dst: Endpoint,
        seg: &Segment<'_>,
        ns: u64,
        mut emit: impl FnMut(&[u8]),
    ) {
        let key = StreamKey { source, src, dst };
        if seg.syn {
            // A new connection on this 4-tuple: start afresh after the SYN.
            if let Some(st) = self.stream(key, ns) {
                *st = Stream {
                    next_seq: seg.seq.wrapping_add(1),
                    last_ns: ns,
                    ..Stream::default()
                };
            }
        }
        if !seg.payload.is_empty() {
            let (over, gap) = match self.stream_or_start(key, seg.seq, ns) {
                Some(st) => st.accept(seg.seq, seg.payload, &mut emit),
                None => {
                    self.not_tracked += 1;
                    (false, false)
                }
            };
            self.over_cap += u64::from(over);
            self.gaps += u64::from(gap);
        }
        if seg.fin_or_rst {
            self.streams.remove(&key);
        }
    }

    fn stream(&mut self, key: StreamKey, ns: u64) -> Option<&mut Stream> {
        if !self.streams.contains_key(&key) && !self.make_room(ns) {
            return None;
        }
        Some(self.streams.entry(key).or_default())
    }

    fn stream_or_start(&mut self, key: StreamKey, seq: u32, ns: u64) -> Option<&mut Stream> {
        if !self.streams.contains_key(&key) {
            if !self.make_room(ns) {
                return None;
            }
            // Picked up mid-connection: take this segment to start a message.
            self.streams.insert(
                key,
                Stream {
                    next_seq: seq,
                    last_ns: ns,
                    ..Stream::default()
                },
            );
        }
        let st = self.streams.get_mut(&key)?;
        st.last_ns = ns;
        Some(st)
    }

    fn make_room(&mut self, ns: u64) -> bool {
        if self.streams.len() < MAX_STREAMS {
            return true;
        }
        self.streams
            .retain(|_, s| ns.saturating_sub(s.last_ns) <= STREAM_IDLE_NS);
        self.streams.len() < MAX_STREAMS
    }
}

impl Stream {
    /// Takes a segment's payload at `seq`. Returns (a message was over the cap, a gap).
    fn accept(&mut self, seq: u32, payload: &[u8], emit: &mut impl FnMut(&[u8])) -> (bool, bool) {
        let end = seq.wrapping_add(payload.len() as u32);
        let mut data = payload;
        let mut gap = false;
        if seq != self.next_seq {
            if !seq_lt(self.next_seq, end) {
                // Entirely before what we have: a retransmission.
                return (false, false);
            }
            if seq_lt(seq, self.next_seq) {
                // Overlaps what we have: keep only the new bytes.
                let old = self.next_seq.wrapping_sub(seq) as usize;
                data = data.get(old..).unwrap_or(&[]);
            } else {
                // The capture missed bytes: the message in progress is lost; resume here.
                gap = true;
                self.buf.clear();
                self.skip = 0;
            }
        }
        self.next_seq = end;
        (self.take(data, emit), gap)
    }

    fn take(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8])) -> bool {
        let mut over = false;
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = data.get(n..).unwrap_or(&[]);
                continue;
            }
            if !self.buf.is_empty() {
                if self.buf.len() < 2 {
                    self.buf.extend_from_slice(data.get(..1).unwrap_or(&[]));
                    data = data.get(1..).unwrap_or(&[]);
                    continue;
                }
                let want = 2 + usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
                if want > MAX_MESSAGE {
                    over = true;
                    self.skip = want - self.buf.len();
                    self.buf.clear();
                    continue;
                }
                let n = (want - self.buf.len()).min(data.len());
                self.buf.extend_from_slice(data.get(..n).unwrap_or(&[]));
                data = data.get(n..).unwrap_or(&[]);
                if self.buf.len() == want {
                    emit(self.buf.get(2..).unwrap_or(&[]));
                    self.buf.clear();
                }
                continue;
            }
            let [hi, lo, ..] = *data else {
                // One byte: half a length prefix.
                self.buf.extend_from_slice(data);
                break;
            };
            let want = 2 + usize::from(u16::from_be_bytes([hi, lo]));
            if let Some(msg) = data.get(2..want) {
                emit(msg);
                data = data.get(want..).unwrap_or(&[]);
            } else if want > MAX_MESSAGE {
                over = true;
                self.skip = want - data.len();
                break;
            } else {
                self.buf.extend_from_slice(data);
                break;
            }
        }
        over
    }
}

impl DnsTcp {
    /// (streams held, cap).
    pub(crate) fn fill(&self) -> (usize, usize) {
        (self.streams.len(), MAX_STREAMS)
    }

    /// Most heap bytes: every stream with a message buffer at its largest.
    pub(crate) fn bytes_bound() -> usize {
        crate::bounds::map_bytes::<StreamKey, Stream>(MAX_STREAMS)
            + MAX_STREAMS * crate::bounds::vec_bytes::<u8>(MAX_MESSAGE + 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const C: Endpoint = (IpAddr::V4(Ipv4Addr::new(10, 244, 1, 10)), 40312);
    const S: Endpoint = (IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10)), 53);

    fn framed(msgs: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for m in msgs {
            v.extend_from_slice(&(m.len() as u16).to_be_bytes());
            v.extend_from_slice(m);
        }
        v
    }

    fn feed(r: &mut DnsTcp, seq: u32, payload: &[u8], out: &mut Vec<Vec<u8>>) {
        let seg = Segment {
            seq,
            syn: false,
            fin_or_rst: false,
            payload,
        };
        r.on_segment(0, C, S, &seg, 0, |m| out.push(m.to_vec()));
    }

    #[test]
    fn several_messages_in_one_segment_and_one_split_across_three() {
        let a = [1u8; 30];
        let b = [2u8; 40];
        let c = [3u8; 50];
        let bytes = framed(&[&a, &b, &c]);
        let mut r = DnsTcp::default();
        let mut out = Vec::new();
        let seg = Segment {
            seq: 999,
            syn: true,
            fin_or_rst: false,
            payload: &[],
        };
        r.on_segment(0, C, S, &seg, 0, |_| {});
        // a, b whole and the first byte of c's length; then the rest of c in two pieces.
        feed(&mut r, 1000, &bytes[..75], &mut out);
        assert_eq!(out, vec![a.to_vec(), b.to_vec()]);
        feed(&mut r, 1075, &bytes[75..100], &mut out);
        // A retransmission of the first segment changes nothing.
        feed(&mut r, 1000, &bytes[..75], &mut out);
        assert_eq!(out.len(), 2);
        feed(&mut r, 1100, &bytes[100..], &mut out);
        assert_eq!(out, vec![a.to_vec(), b.to_vec(), c.to_vec()]);
        assert_eq!((r.gaps, r.over_cap, r.not_tracked), (0, 0, 0));
    }

    #[test]
    fn an_overlapping_retransmission_adds_only_new_bytes() {
        let a = [7u8; 20];
        let bytes = framed(&[&a, &a]);
        let mut r = DnsTcp::default();
        let mut out = Vec::new();
        feed(&mut r, 5, &bytes[..10], &mut out);
        feed(&mut r, 5, &bytes[..30], &mut out);
        feed(&mut r, 35, &bytes[30..], &mut out);
        assert_eq!(out, vec![a.to_vec(), a.to_vec()]);
    }

    #[test]
    fn a_message_over_the_cap_is_skipped_and_the_stream_stays_in_step() {
        let big = vec![9u8; MAX_MESSAGE + 100];
        let small = [4u8; 12];
        let bytes = framed(&[&big, &small]);
        let mut r = DnsTcp::default();
        let mut out = Vec::new();
        let mut seq = 1u32;
        for chunk in bytes.chunks(1400) {
            feed(&mut r, seq, chunk, &mut out);
            seq = seq.wrapping_add(chunk.len() as u32);
        }
        assert_eq!(out, vec![small.to_vec()]);
        assert_eq!(r.over_cap, 1);
    }

    #[test]
    fn a_gap_drops_the_message_in_progress_and_resumes() {
        let a = [1u8; 30];
        let bytes = framed(&[&a, &a]);
        let mut r = DnsTcp::default();
        let mut out = Vec::new();
        feed(&mut r, 0, &bytes[..10], &mut out);
        // bytes 10..32 were never captured; the next segment starts the second message.
        feed(&mut r, 32, &bytes[32..], &mut out);
        assert_eq!(out, vec![a.to_vec()]);
        assert_eq!(r.gaps, 1);
    }

    #[test]
    fn the_stream_table_is_bounded() {
        let mut r = DnsTcp::default();
        let mut out = Vec::new();
        let m = framed(&[&[1u8; 4]]);
        for port in 0..(MAX_STREAMS as u16 + 10) {
            let seg = Segment {
                seq: 0,
                syn: false,
                fin_or_rst: false,
                payload: &m[..3],
            };
            r.on_segment(0, (C.0, port), S, &seg, 1, |x| out.push(x.to_vec()));
        }
        assert_eq!(r.streams.len(), MAX_STREAMS);
        assert_eq!(r.not_tracked, 10);
        assert!(out.is_empty());
    }
}
