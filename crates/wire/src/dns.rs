//! DNS messages (RFC 1035): what `dig` shows in its HEADER and QUESTION sections.
//!
//! [`Message::parse`] validates the 12-byte header and the first question; everything
//! else is walked lazily. Names ([`Name`]) stay inside the message bytes: iterating their
//! labels follows compression pointers without allocating. Every pointer must point
//! strictly before the label sequence that contains it (so a walk always terminates),
//! and a name is limited to 255 bytes and 127 labels, as in RFC 1035 §3.1.

use core::fmt;

use crate::bytes::{be16, be32, byte, head, tail};

mod field {
    use crate::bytes::Field;
    pub(super) const ID: Field = 0..2;
    pub(super) const FLAGS: Field = 2..4;
    pub(super) const QDCOUNT: Field = 4..6;
    pub(super) const ANCOUNT: Field = 6..8;
    pub(super) const NSCOUNT: Field = 8..10;
    pub(super) const ARCOUNT: Field = 10..12;
    pub(super) const HEADER_LEN: usize = 12;
}

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;

/// Longest name on the wire, in bytes (RFC 1035 §3.1).
pub const MAX_NAME_LEN: usize = 255;
/// Most labels in a name (each at least 2 bytes on the wire, plus the root byte).
pub const MAX_LABELS: usize = 127;

/// Query type A (IPv4 address).
pub const QTYPE_A: u16 = 1;
/// Query type NS.
pub const QTYPE_NS: u16 = 2;
/// Query type CNAME.
pub const QTYPE_CNAME: u16 = 5;
/// Query type SOA.
pub const QTYPE_SOA: u16 = 6;
/// Query type PTR.
pub const QTYPE_PTR: u16 = 12;
/// Query type MX.
pub const QTYPE_MX: u16 = 15;
/// Query type TXT.
pub const QTYPE_TXT: u16 = 16;
/// Query type AAAA (IPv6 address).
pub const QTYPE_AAAA: u16 = 28;
/// Query type SRV.
pub const QTYPE_SRV: u16 = 33;
/// Pseudo-type OPT (EDNS0).
pub const QTYPE_OPT: u16 = 41;
/// Query type HTTPS.
pub const QTYPE_HTTPS: u16 = 65;
/// Query type ANY.
pub const QTYPE_ANY: u16 = 255;
/// Class IN.
pub const CLASS_IN: u16 = 1;

/// Why a DNS message could not be parsed.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DnsError {
    /// The message ends before a field it announces.
    #[error("DNS message truncated: need {required} bytes, have {available}")]
    Truncated {
        /// Bytes needed from the start of the message.
        required: usize,
        /// Bytes available.
        available: usize,
    },
    /// A name is malformed (bad pointer, reserved label type, too long).
    #[error("bad DNS name at offset {offset}: {why}")]
    BadName {
        /// Offset in the message of the offending label or pointer.
        offset: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// A resource record is malformed.
    #[error("bad DNS record at offset {offset}: {why}")]
    BadRecord {
        /// Offset in the message of the record.
        offset: usize,
        /// What is wrong.
        why: &'static str,
    },
}

/// Response code (the 4-bit RCODE of the header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rcode(pub u8);

impl Rcode {
    /// No error.
    pub const NOERROR: Rcode = Rcode(0);
    /// Format error.
    pub const FORMERR: Rcode = Rcode(1);
    /// Server failure.
    pub const SERVFAIL: Rcode = Rcode(2);
    /// Name does not exist.
    pub const NXDOMAIN: Rcode = Rcode(3);
    /// Not implemented.
    pub const NOTIMP: Rcode = Rcode(4);
    /// Refused.
    pub const REFUSED: Rcode = Rcode(5);
}

impl fmt::Display for Rcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("NOERROR"),
            1 => f.write_str("FORMERR"),
            2 => f.write_str("SERVFAIL"),
            3 => f.write_str("NXDOMAIN"),
            4 => f.write_str("NOTIMP"),
            5 => f.write_str("REFUSED"),
            n => write!(f, "RCODE{n}"),
        }
    }
}

/// A name as [`scan_name`] found it.
#[derive(Clone, Copy, Debug)]
struct Scanned {
    /// Offset just after the name in place (after the first pointer if there is one).
    end: usize,
    /// Wire length of the name, root byte included, when it holds no pointer (its labels
    /// lie contiguous from its start); 0 when it is compressed.
    flat: u8,
}

/// Scans the name at `start`: where it ends, and whether it is compressed.
///
/// An uncompressed name whose labels all fit takes a short loop (one length byte per
/// label); anything else, and every error, is the general scanner's.
#[inline]
fn scan_name(msg: &[u8], start: usize) -> Result<Scanned, DnsError> {
    // The longest name fits in this window: running past it (or past the message) is an
    // error the general scanner describes.
    let window = head(tail(msg, start), MAX_NAME_LEN);
    let mut pos = 0;
    while let Some(&len) = window.get(pos) {
        // One compare per label: 1..=63 is a label; the root (0), a pointer or a
        // reserved label type ends the loop.
        if len.wrapping_sub(1) >= 63 {
            if len == 0 {
                return Ok(Scanned {
                    end: start + pos + 1,
                    // pos < window.len() <= 255
                    flat: (pos + 1) as u8,
                });
            }
            break;
        }
        pos += 1 + usize::from(len);
    }
    scan_name_general(msg, start)
}

/// [`scan_name`] for every name: follows compression pointers and says what is wrong.
#[cold]
fn scan_name_general(msg: &[u8], start: usize) -> Result<Scanned, DnsError> {
    let mut pos = start;
    let mut segment = start;
    let mut end = None;
    let mut wire_len = 0usize;
    let mut labels = 0usize;
    loop {
        let Some(&len) = msg.get(pos) else {
            return Err(DnsError::Truncated {
                required: pos + 1,
                available: msg.len(),
            });
        };
        match len & 0xc0 {
            0x00 => {
                let l = usize::from(len);
                wire_len += 1 + l;
                if wire_len > MAX_NAME_LEN {
                    return Err(DnsError::BadName {
                        offset: pos,
                        why: "name longer than 255 bytes",
                    });
                }
                if l == 0 {
                    return Ok(match end {
                        Some(end) => Scanned { end, flat: 0 },
                        // At most 255 (checked above).
                        None => Scanned {
                            end: pos + 1,
                            flat: u8::try_from(wire_len).unwrap_or(0),
                        },
                    });
                }
                labels += 1;
                if labels > MAX_LABELS {
                    return Err(DnsError::BadName {
                        offset: pos,
                        why: "more than 127 labels",
                    });
                }
                if pos + 1 + l > msg.len() {
                    return Err(DnsError::Truncated {
                        required: pos + 1 + l,
                        available: msg.len(),
                    });
                }
                pos += 1 + l;
            }
            0xc0 => {
                let Some(&low) = msg.get(pos + 1) else {
                    return Err(DnsError::Truncated {
                        required: pos + 2,
                        available: msg.len(),
                    });
                };
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                if target >= segment {
                    return Err(DnsError::BadName {
                        offset: pos,
                        why: "compression pointer does not point backwards",
                    });
                }
                end.get_or_insert(pos + 2);
                pos = target;
                segment = target;
            }
            _ => {
                return Err(DnsError::BadName {
                    offset: pos,
                    why: "reserved label type",
                });
            }
        }
    }
}

/// A DNS message view (UDP payload, or a TCP message after its length prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    bytes: &'a [u8],
    question: Option<Question<'a>>,
    /// Offset just after the first question (or the header when there is none).
    after_question: usize,
}

impl<'a> Message<'a> {
    /// Parses a message: validates the header and the first question (if `QDCOUNT > 0`).
    #[inline]
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, DnsError> {
        if bytes.len() < field::HEADER_LEN {
            return Err(DnsError::Truncated {
                required: field::HEADER_LEN,
                available: bytes.len(),
            });
        }
        let mut m = Message {
            bytes,
            question: None,
            after_question: field::HEADER_LEN,
        };
        if m.question_count() > 0 {
            let (q, end) = parse_question(bytes, field::HEADER_LEN)?;
            m.question = Some(q);
            m.after_question = end;
        }
        Ok(m)
    }

    /// Parses a DNS-over-TCP message: a 2-byte length prefix, then the message.
    pub fn parse_tcp(bytes: &'a [u8]) -> Result<Message<'a>, DnsError> {
        if bytes.len() < 2 {
            return Err(DnsError::Truncated {
                required: 2,
                available: bytes.len(),
            });
        }
        let len = usize::from(be16(bytes, 0..2));
        let body = tail(bytes, 2);
        if body.len() < len {
            return Err(DnsError::Truncated {
                required: len + 2,
                available: bytes.len(),
            });
        }
        Message::parse(head(body, len))
    }

    /// The message bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    fn flags(&self) -> u16 {
        be16(self.bytes, field::FLAGS)
    }
    /// Transaction ID.
    pub fn id(&self) -> u16 {
        be16(self.bytes, field::ID)
    }
    /// QR: this is a response.
    pub fn is_response(&self) -> bool {
        self.flags() & FLAG_QR != 0
    }
    /// Opcode (0 = standard query).
    pub fn opcode(&self) -> u8 {
        ((self.flags() >> 11) & 0x0f) as u8
    }
    /// AA: authoritative answer.
    pub fn authoritative(&self) -> bool {
        self.flags() & FLAG_AA != 0
    }
    /// TC: the message was truncated by the sender.
    pub fn truncated(&self) -> bool {
        self.flags() & FLAG_TC != 0
    }
    /// RD: recursion desired.
    pub fn recursion_desired(&self) -> bool {
        self.flags() & FLAG_RD != 0
    }
    /// RA: recursion available.
    pub fn recursion_available(&self) -> bool {
        self.flags() & FLAG_RA != 0
    }
    /// The 4-bit response code of the header.
    pub fn rcode(&self) -> Rcode {
        Rcode((self.flags() & 0x0f) as u8)
    }
    /// QDCOUNT.
    pub fn question_count(&self) -> u16 {
        be16(self.bytes, field::QDCOUNT)
    }
    /// ANCOUNT.
    pub fn answer_count(&self) -> u16 {
        be16(self.bytes, field::ANCOUNT)
    }
    /// NSCOUNT.
    pub fn authority_count(&self) -> u16 {
        be16(self.bytes, field::NSCOUNT)
    }
    /// ARCOUNT.
    pub fn additional_count(&self) -> u16 {
        be16(self.bytes, field::ARCOUNT)
    }
    /// The first question, if `QDCOUNT > 0`.
    pub fn question(&self) -> Option<Question<'a>> {
        self.question
    }

    /// All questions, then all records (answer, authority, additional), in wire order.
    /// The walk stops after the first error, which it yields.
    pub fn sections(&self) -> Sections<'a> {
        Sections {
            msg: self.bytes,
            pos: field::HEADER_LEN,
            questions: self.question_count(),
            records: [
                self.answer_count(),
                self.authority_count(),
                self.additional_count(),
            ],
            done: false,
        }
    }

    /// Answer records (walks past the questions first).
    pub fn answers(&self) -> impl Iterator<Item = Result<Record<'a>, DnsError>> + 'a {
        self.sections().filter_map(|e| match e {
            Ok(Entry::Record(r)) if r.section == Section::Answer => Some(Ok(r)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
    }

    /// Walks every question and record; `Ok` when all of them are well formed and fit in
    /// the message (what Wireshark calls a non-malformed packet, minus record contents).
    pub fn validate(&self) -> Result<(), DnsError> {
        for e in self.sections() {
            e?;
        }
        Ok(())
    }

    /// Offset just after the first question.
    pub fn question_end(&self) -> usize {
        self.after_question
    }
}

#[inline]
fn parse_question(msg: &[u8], at: usize) -> Result<(Question<'_>, usize), DnsError> {
    let Scanned {
        end: name_end,
        flat,
    } = scan_name(msg, at)?;
    let Some(&[t0, t1, c0, c1]) = tail(msg, name_end).first_chunk::<4>() else {
        return Err(DnsError::Truncated {
            required: name_end + 4,
            available: msg.len(),
        });
    };
    let q = Question {
        name: Name {
            msg,
            start: at,
            flat,
        },
        qtype: u16::from_be_bytes([t0, t1]),
        qclass: u16::from_be_bytes([c0, c1]),
    };
    Ok((q, name_end + 4))
}

/// A question: name, type and class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Question<'a> {
    /// The queried name.
    pub name: Name<'a>,
    /// Query type (`QTYPE_A`, `QTYPE_AAAA`…).
    pub qtype: u16,
    /// Query class (`CLASS_IN`; mDNS sets the top bit for unicast responses).
    pub qclass: u16,
}

/// The section a record belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Section {
    /// Answer section.
    Answer,
    /// Authority section.
    Authority,
    /// Additional section.
    Additional,
}

/// A resource record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Section.
    pub section: Section,
    /// Owner name.
    pub name: Name<'a>,
    /// Type.
    pub rtype: u16,
    /// Class (for OPT: the UDP payload size).
    pub rclass: u16,
    /// TTL (for OPT: extended rcode and flags).
    pub ttl: u32,
    /// Record data.
    pub rdata: &'a [u8],
    /// Offset of `rdata` in the message (names inside it may point anywhere before).
    pub rdata_offset: usize,
}

/// A question or a record, as yielded by [`Message::sections`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A question.
    Question(Question<'a>),
    /// A record.
    Record(Record<'a>),
}

/// Iterator over the questions and records of a message.
#[derive(Clone, Debug)]
pub struct Sections<'a> {
    msg: &'a [u8],
    pos: usize,
    questions: u16,
    records: [u16; 3],
    done: bool,
}

impl<'a> Sections<'a> {
    fn fail(&mut self, e: DnsError) -> Option<Result<Entry<'a>, DnsError>> {
        self.done = true;
        Some(Err(e))
    }
}

impl<'a> Iterator for Sections<'a> {
    type Item = Result<Entry<'a>, DnsError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.questions > 0 {
            self.questions -= 1;
            return match parse_question(self.msg, self.pos) {
                Ok((q, end)) => {
                    self.pos = end;
                    Some(Ok(Entry::Question(q)))
                }
                Err(e) => self.fail(e),
            };
        }
        let (i, section) = match self.records {
            [a, _, _] if a > 0 => (0, Section::Answer),
            [_, n, _] if n > 0 => (1, Section::Authority),
            [_, _, r] if r > 0 => (2, Section::Additional),
            _ => {
                self.done = true;
                return None;
            }
        };
        if let Some(c) = self.records.get_mut(i) {
            *c -= 1;
        }
        let at = self.pos;
        let Scanned {
            end: name_end,
            flat,
        } = match scan_name(self.msg, at) {
            Ok(s) => s,
            Err(e) => return self.fail(e),
        };
        let fixed_end = name_end + 10;
        if self.msg.len() < fixed_end {
            return self.fail(DnsError::Truncated {
                required: fixed_end,
                available: self.msg.len(),
            });
        }
        let rdlen = usize::from(be16(self.msg, name_end + 8..name_end + 10));
        let Some(rdata) = self.msg.get(fixed_end..fixed_end + rdlen) else {
            return self.fail(DnsError::Truncated {
                required: fixed_end + rdlen,
                available: self.msg.len(),
            });
        };
        self.pos = fixed_end + rdlen;
        Some(Ok(Entry::Record(Record {
            section,
            name: Name {
                msg: self.msg,
                start: at,
                flat,
            },
            rtype: be16(self.msg, name_end..name_end + 2),
            rclass: be16(self.msg, name_end + 2..name_end + 4),
            ttl: be32(self.msg, name_end + 4..name_end + 8),
            rdata,
            rdata_offset: fixed_end,
        })))
    }
}

/// A possibly-compressed name inside a message. Iteration follows pointers, is
/// loop-safe (pointers must point backwards; at most 127 labels / 255 bytes) and never
/// allocates.
#[derive(Clone, Copy)]
pub struct Name<'a> {
    msg: &'a [u8],
    start: usize,
    /// Wire length (root byte included) when the name is not compressed, else 0.
    flat: u8,
}

impl PartialEq for Name<'_> {
    /// Names compare case-insensitively by their labels, wherever they sit.
    fn eq(&self, other: &Self) -> bool {
        self.eq_ignore_ascii_case(other)
    }
}
impl Eq for Name<'_> {}

impl<'a> Name<'a> {
    /// Validates the name at `start` in `msg` (a whole DNS message, so that pointers resolve).
    pub fn parse(msg: &'a [u8], start: usize) -> Result<(Name<'a>, usize), DnsError> {
        let Scanned { end, flat } = scan_name(msg, start)?;
        Ok((Name { msg, start, flat }, end))
    }
    /// Offset of the name's first byte in the message.
    pub fn offset(&self) -> usize {
        self.start
    }
    /// The labels, root label excluded.
    pub fn labels(&self) -> Labels<'a> {
        Labels {
            msg: self.msg,
            pos: self.start,
            segment: self.start,
            count: 0,
        }
    }
    /// Whether this is the root name (no labels).
    pub fn is_root(&self) -> bool {
        self.labels().next().is_none()
    }
    /// Case-insensitive comparison of two names (possibly in different messages).
    pub fn eq_ignore_ascii_case(&self, other: &Name<'_>) -> bool {
        let mut a = self.labels();
        let mut b = other.labels();
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => {}
                _ => return false,
            }
        }
    }
    /// Whether the name ends with these labels (case-insensitive), e.g.
    /// `ends_with(&[b"svc", b"cluster", b"local"])`.
    pub fn ends_with(&self, suffix_labels: &[&[u8]]) -> bool {
        let n = self.label_count();
        let Some(skip) = n.checked_sub(suffix_labels.len()) else {
            return false;
        };
        self.labels()
            .skip(skip)
            .zip(suffix_labels)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
    /// Number of labels (root excluded).
    pub fn label_count(&self) -> usize {
        self.labels().count()
    }
    /// A 64-bit hash of the name, case-insensitive: names that
    /// [`eq_ignore_ascii_case`](Name::eq_ignore_ascii_case) each other hash alike,
    /// compressed or not, in whichever message.
    ///
    /// It hashes the name's wire form without compression and without the root byte
    /// (each label's length byte, then its bytes, ASCII-lowercased), 16 bytes per
    /// multiply (see [`hash_wire_lowercase`], the reference definition). An uncompressed name is hashed in place; a
    /// compressed one is first gathered into a 255-byte buffer on the stack.
    #[inline]
    pub fn hash_lowercase(&self) -> u64 {
        if self.flat > 0 {
            return hash_in_place(self.msg, self.start, usize::from(self.flat) - 1);
        }
        self.hash_gathered()
    }

    /// [`Name::hash_lowercase`] of a compressed name: its labels copied into one buffer.
    #[cold]
    fn hash_gathered(&self) -> u64 {
        let mut buf = [0u8; MAX_NAME_LEN];
        let mut n = 0;
        for label in self.labels() {
            let Some(out) = buf.get_mut(n..n + 1 + label.len()) else {
                break;
            };
            if let Some((len, bytes)) = out.split_first_mut() {
                *len = label.len() as u8;
                bytes.copy_from_slice(label);
            }
            n += 1 + label.len();
        }
        hash_in_place(&buf, 0, n)
    }
    /// Writes the dotted form (`a.b.c`, root = `.`), escaping like `dig`: `\.` and `\\`
    /// inside labels, `\DDD` for bytes outside printable ASCII (and space).
    pub fn write_dotted(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let mut any = false;
        for label in self.labels() {
            if any {
                out.write_char('.')?;
            }
            any = true;
            for &c in label {
                match c {
                    b'.' | b'\\' => {
                        out.write_char('\\')?;
                        out.write_char(char::from(c))?;
                    }
                    0x21..=0x7e => out.write_char(char::from(c))?,
                    _ => write!(out, "\\{c:03}")?,
                }
            }
        }
        if !any {
            out.write_char('.')?;
        }
        Ok(())
    }
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_dotted(f)
    }
}

impl fmt::Debug for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name(\"{self}\")")
    }
}

/// What [`Name::hash_lowercase`] computes, over the uncompressed wire form of a name
/// (length-prefixed labels, root byte excluded; at most 254 bytes): the reference
/// definition, one byte at a time, for tests and for anyone who must reproduce the hash.
///
/// The bytes are ASCII-lowercased and read as 16-byte blocks, the last one zero-padded,
/// each block as two little-endian 64-bit words `a` and `b`. Starting from a seed xored
/// with the length, each block replaces the state `h` with the folded multiply (the
/// 128-bit product's high and low halves, xored) of `h ^ a` and `b ^ K`; a last folded
/// multiply by a second constant finishes.
pub fn hash_wire_lowercase(wire: &[u8]) -> u64 {
    let word = |bytes: &[u8]| {
        bytes.iter().enumerate().fold(0u64, |w, (i, &c)| {
            w | u64::from(c.to_ascii_lowercase()) << (8 * i)
        })
    };
    let mut h = HASH_SEED ^ wire.len() as u64;
    for block in wire.chunks(16) {
        let (a, b) = block.split_at(block.len().min(8));
        h = folded_mul(h ^ word(a), word(b) ^ HASH_K);
    }
    folded_mul(h, HASH_FINISH)
}

const HASH_SEED: u64 = 0x243f_6a88_85a3_08d3;
const HASH_K: u64 = 0x9e37_79b9_7f4a_7c15;
const HASH_FINISH: u64 = 0xbf58_476d_1ce4_e5b9;

/// The high and low halves of the 128-bit product, xored.
#[inline(always)]
fn folded_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// ASCII-lowercases the eight bytes of `w` at once: a byte in `A..=Z` gains 0x20.
#[inline(always)]
fn lower8(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let b = w & LOW7;
    // High bit of each byte: its low 7 bits are >= b'A', resp. > b'Z' (no carry out).
    let at_least_a = b + 0x3f3f_3f3f_3f3f_3f3f;
    let above_z = b + 0x2525_2525_2525_2525;
    let upper = (at_least_a ^ above_z) & !w & HIGH;
    w | (upper >> 2)
}

/// The little-endian word of the `len` (<= 8) bytes of `bytes` ending at `end`, zero
/// above: the eight bytes ending there, shifted, when there are eight.
#[inline(always)]
fn tail_word(bytes: &[u8], end: usize, len: usize) -> u64 {
    let eight = end
        .checked_sub(8)
        .and_then(|s| bytes.get(s..end))
        .and_then(|b| <[u8; 8]>::try_from(b).ok());
    match eight {
        Some(b) if len > 0 => u64::from_le_bytes(b) >> (8 * (8 - len)),
        _ => short_word(bytes, end, len),
    }
}

/// [`tail_word`] byte by byte, when fewer than eight bytes precede `end`.
#[cold]
fn short_word(bytes: &[u8], end: usize, len: usize) -> u64 {
    bytes
        .get(end.saturating_sub(len)..end)
        .unwrap_or(&[])
        .iter()
        .enumerate()
        .fold(0, |w, (i, &c)| w | u64::from(c) << (8 * i))
}

/// [`hash_wire_lowercase`] of `bytes[at..at + n]`: the whole 16-byte blocks in place,
/// eight lowercased bytes at once, then the last, partial one from (at most) two loads
/// (the bytes before the name are in the message).
#[inline(never)]
fn hash_in_place(bytes: &[u8], at: usize, n: usize) -> u64 {
    let end = at + n;
    let Some(wire) = bytes.get(at..end) else {
        return hash_wire_lowercase(&[]);
    };
    let mut h = HASH_SEED ^ n as u64;
    let mut blocks = wire.chunks_exact(16);
    for c in &mut blocks {
        if let Some((a, b)) = c.split_first_chunk::<8>() {
            if let Ok(b) = <[u8; 8]>::try_from(b) {
                let (a, b) = (u64::from_le_bytes(*a), u64::from_le_bytes(b));
                h = folded_mul(h ^ lower8(a), lower8(b) ^ HASH_K);
            }
        }
    }
    let rest = blocks.remainder().len();
    if rest > 8 {
        let a = wire
            .get(n - rest..n - rest + 8)
            .and_then(|a| <[u8; 8]>::try_from(a).ok())
            .map_or(0, u64::from_le_bytes);
        let b = tail_word(bytes, end, rest - 8);
        h = folded_mul(h ^ lower8(a), lower8(b) ^ HASH_K);
    } else if rest > 0 {
        let a = tail_word(bytes, end, rest);
        h = folded_mul(h ^ lower8(a), HASH_K);
    }
    folded_mul(h, HASH_FINISH)
}

/// Iterator over the labels of a [`Name`]. Stops at the root label or at anything
/// invalid (which [`Message::parse`] / [`Name::parse`] already rejected).
#[derive(Clone, Debug)]
pub struct Labels<'a> {
    msg: &'a [u8],
    pos: usize,
    segment: usize,
    count: usize,
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];
    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.count >= MAX_LABELS {
                return None;
            }
            let len = *self.msg.get(self.pos)?;
            match len & 0xc0 {
                0x00 if len > 0 => {
                    let start = self.pos + 1;
                    let label = self.msg.get(start..start + usize::from(len))?;
                    self.pos = start + usize::from(len);
                    self.count += 1;
                    return Some(label);
                }
                0xc0 => {
                    let target = usize::from(u16::from_be_bytes([
                        len & 0x3f,
                        byte(self.msg, self.pos + 1),
                    ]));
                    if target >= self.segment {
                        self.count = MAX_LABELS;
                        return None;
                    }
                    self.pos = target;
                    self.segment = target;
                }
                _ => {
                    self.count = MAX_LABELS;
                    return None;
                }
            }
        }
    }
}
