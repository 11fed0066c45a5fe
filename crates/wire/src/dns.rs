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

/// Scans the name at `start`; returns the offset just after it (in place, i.e. after the
/// first pointer if there is one).
fn scan_name(msg: &[u8], start: usize) -> Result<usize, DnsError> {
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
                    return Ok(end.unwrap_or(pos + 1));
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

fn parse_question(msg: &[u8], at: usize) -> Result<(Question<'_>, usize), DnsError> {
    let name_end = scan_name(msg, at)?;
    if msg.len() < name_end + 4 {
        return Err(DnsError::Truncated {
            required: name_end + 4,
            available: msg.len(),
        });
    }
    let q = Question {
        name: Name { msg, start: at },
        qtype: be16(msg, name_end..name_end + 2),
        qclass: be16(msg, name_end + 2..name_end + 4),
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
        let name_end = match scan_name(self.msg, at) {
            Ok(e) => e,
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
        let end = scan_name(msg, start)?;
        Ok((Name { msg, start }, end))
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
    /// FNV-1a (64-bit) over the lowercased labels joined with `.` (root: no bytes).
    #[inline]
    pub fn hash_lowercase(&self) -> u64 {
        let mut h = Fnv1a::new();
        for (i, label) in self.labels().enumerate() {
            if i > 0 {
                h.byte(b'.');
            }
            // A table lookup lowercases off the hash's multiply chain, in one load
            // instead of a compare, a set and an or per byte.
            for &c in label {
                h.byte(ASCII_LOWER[usize::from(c)]);
            }
        }
        h.finish()
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

/// `u8::to_ascii_lowercase` of every byte value, for [`Name::hash_lowercase`].
const ASCII_LOWER: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).to_ascii_lowercase();
        i += 1;
    }
    t
};

/// 64-bit FNV-1a, the hash behind [`Name::hash_lowercase`].
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a(u64);

impl Fnv1a {
    /// The FNV offset basis.
    pub fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
    /// Feeds one byte.
    #[inline(always)]
    pub fn byte(&mut self, b: u8) {
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    /// The hash so far.
    pub fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Self {
        Self::new()
    }
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
