//! The DNS tracker: what `tcpdump -n port 53` shows, grouped the way a resolver works.
//!
//! - A **transaction** is one query ID on one client socket to one server
//!   (ID + 5-tuple): question, rcode, latency, and re-sends with the same ID (retries).
//! - A **logical lookup** is what the application asked for: the A and AAAA queries of
//!   one name and the search-list expansions glibc/musl tried before it (`name.<s1>`,
//!   `name.<s2>`, …, `name`), grouped into one. With a resolv.conf the search list is
//!   known; without one, expansions are recognised by their shared leading labels after a
//!   negative answer, and the suffixes are inferred from them.
//!
//! Memory is bounded: transactions, clients and lookups per client have caps; what does
//! not fit is counted, not stored.

use crate::flow::{DenseMap, Endpoint, FlowTable, FxMap};
use crate::model::{DnsStats, PacketRef};
use crate::resolv::ResolvConf;
use netdiag_wire::dns::{Message, QTYPE_A, QTYPE_AAAA, Rcode};
use std::fmt::Write as _;
use std::net::IpAddr;

/// A query is the sibling of the previous query on its socket when the two are the A
/// and the AAAA of one name and it left within this gap. Resolvers send the pair back to
/// back, or the second as soon as the first's answer is in (the lab's glibc recordings:
/// 3.2 ms after the A), but when depends on the resolver being scheduled again: on a
/// loaded machine it took more than 20 ms, the limit this gap once had, and a lost-reply
/// finding lost its A query and answer (watch_lab in CI, 2026-12-03). Well below the
/// shortest resolver re-send (musl's 2.5 s, less [`TIMEOUT_TOLERANCE_NS`]), so a pair
/// never spans a re-send.
const PAIR_GAP_NS: u64 = 1_000_000_000;
/// A retry this close (± ns) to a resolver timeout is a timeout retry.
const TIMEOUT_TOLERANCE_NS: u64 = 600_000_000;
/// A logical lookup with no activity for this long is closed.
const LOOKUP_IDLE_NS: u64 = 30_000_000_000;
/// Most lookups a client may have open at once.
pub(crate) const LOOKUPS_PER_CLIENT: usize = 8;
/// Most (name, qtype) pairs one lookup remembers.
const NAMES_PER_LOOKUP: usize = 24;
/// Evidence packets kept per lookup.
const PKTS_PER_LOOKUP: usize = 24;
/// Examples kept for findings.
const MAX_EXAMPLES: usize = 32;
/// Latencies kept for percentiles.
const MAX_LATENCIES: usize = 1 << 18;
/// Distinct suffixes remembered.
const MAX_SUFFIXES: usize = 64;

/// Most bytes of a written name (a name's 255 wire bytes, escapes included, fit).
const NAME_CAP: usize = 288;

/// A DNS name, lowercased and dotted, built without allocation. Every byte written is
/// ASCII (plain bytes as themselves, the others as `\DDD` escapes).
pub(crate) struct NameBuf {
    buf: [u8; NAME_CAP],
    len: usize,
}

impl NameBuf {
    pub(crate) fn new() -> Self {
        NameBuf {
            buf: [0; NAME_CAP],
            len: 0,
        }
    }
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
    /// The name's bytes (what [`NameBuf::as_str`] checks and returns as text).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// `name.write_dotted` into a new buffer, lowercased, without the formatting machinery
    /// (per-char `fmt::Write` calls cost about a thousand instructions per DNS name).
    /// Byte for byte what `write_dotted` gives, also when the name does not fit: each piece
    /// `write_dotted` emits (a char, the zero padding of `\DDD` char by char, its digits)
    /// is kept whole or not at all, and writing stops at the first piece that does not fit.
    #[cfg(test)]
    pub(crate) fn from_name(name: &netdiag_wire::dns::Name<'_>) -> Self {
        let mut b = NameBuf::new();
        let _ = b.put_dotted(name);
        b
    }

    /// Writes into this empty buffer what [`NameBuf::from_name`] would (in place: no
    /// copy of the buffer is returned) and returns `name.hash_lowercase()` (netdiag-wire's
    /// hash, the one home of its definition). The dotted form takes one table-driven pass
    /// over the labels when every byte is written as itself (printable ASCII, neither `.`
    /// nor `\\`) and the name fits; otherwise the escaping writer.
    #[inline(always)]
    pub(crate) fn put_name_hashed(&mut self, name: &netdiag_wire::dns::Name<'_>) -> u64 {
        if self.put_plain(name).is_none() {
            self.len = 0;
            let _ = self.put_dotted(name);
        }
        name.hash_lowercase()
    }

    /// The plain case of [`NameBuf::put_name_hashed`]; `None` (leaving the buffer
    /// half written) at the root name, at a byte that needs an escape, or when the
    /// name does not fit.
    #[inline(always)]
    fn put_plain(&mut self, name: &netdiag_wire::dns::Name<'_>) -> Option<()> {
        let mut len = 0;
        for label in name.labels() {
            if len > 0 {
                *self.buf.get_mut(len)? = b'.';
                len += 1;
            }
            let dst = self.buf.get_mut(len..len + label.len())?;
            for (d, &c) in dst.iter_mut().zip(label) {
                let l = PLAIN_LOWER[usize::from(c)];
                if l == 0 {
                    return None;
                }
                *d = l;
            }
            len += label.len();
        }
        if len == 0 {
            return None;
        }
        self.len = len;
        Some(())
    }

    fn piece(&mut self, p: &[u8]) -> Option<()> {
        let end = self.len + p.len();
        let dst = self.buf.get_mut(self.len..end)?;
        for (d, c) in dst.iter_mut().zip(p) {
            *d = c.to_ascii_lowercase();
        }
        self.len = end;
        Some(())
    }

    fn put_dotted(&mut self, name: &netdiag_wire::dns::Name<'_>) -> Option<()> {
        let mut any = false;
        for label in name.labels() {
            if any {
                self.piece(b".")?;
            }
            any = true;
            for &c in label {
                match c {
                    b'.' | b'\\' => {
                        self.piece(b"\\")?;
                        self.piece(&[c])?;
                    }
                    0x21..=0x7e => self.piece(&[c])?,
                    _ => {
                        self.piece(b"\\")?;
                        let digits = [b'0' + c / 100, b'0' + (c / 10) % 10, b'0' + c % 10];
                        let skip = if c >= 100 {
                            0
                        } else if c >= 10 {
                            1
                        } else {
                            2
                        };
                        for _ in 0..skip {
                            self.piece(b"0")?;
                        }
                        self.piece(&digits[skip..])?;
                    }
                }
            }
        }
        if !any {
            self.piece(b".")?;
        }
        Some(())
    }
}

/// For each byte: its lowercase when `write_dotted` writes it as itself (printable
/// ASCII, `.` and `\\` excepted), else 0.
const PLAIN_LOWER: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0x21;
    while c <= 0x7e {
        if c != b'.' as usize && c != b'\\' as usize {
            t[c] = (c as u8).to_ascii_lowercase();
        }
        c += 1;
    }
    t
};

impl std::fmt::Write for NameBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let b = s.as_bytes();
        let end = self.len + b.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        for (d, c) in self.buf[self.len..end].iter_mut().zip(b) {
            *d = c.to_ascii_lowercase();
        }
        self.len = end;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct TxKey {
    source: u16,
    client: Endpoint,
    server: Endpoint,
    id: u16,
}

impl crate::flow::DenseKey for TxKey {
    #[inline]
    fn dense_hash(&self) -> u32 {
        crate::flow::endpoints_hash(
            u64::from(self.source) << 32 | u64::from(self.id) << 48,
            self.client,
            self.server,
        )
    }
}

#[derive(Clone, Copy, Debug)]
struct Txn {
    qtype: u16,
    name_hash: u64,
    last_send_ns: u64,
    first_pkt: u64,
    sends: u8,
    /// The answer's rcode, once answered (its time and packet in `answered_at`).
    answered: Option<Rcode>,
    /// (ns, packet) of the answer, valid when `answered` is set. Kept apart from the
    /// rcode so that a transaction takes 72 bytes, not 88 (65,536 of them at the cap).
    answered_at: [u64; 2],
    /// Its lookup's [`LookupAt`], in two fields: the id packs with the small ones, so
    /// the transaction still takes 72 bytes.
    lookup_id: u32,
    lookup_serial: u64,
    sibling: Option<u16>,
    /// Sent over TCP.
    tcp: bool,
    /// TCP: the connection ended (FIN or RST seen), at `closed_at` ns.
    closed: bool,
    closed_at: u64,
}

// 65,536 transactions at the default cap: keep the size their layout was chosen for.
const _: () = assert!(std::mem::size_of::<Txn>() <= 72);

impl Txn {
    /// (ns, packet, rcode) of the answer.
    fn answer(&self) -> Option<(u64, u64, Rcode)> {
        let [ns, pkt] = self.answered_at;
        self.answered.map(|r| (ns, pkt, r))
    }

    fn lookup(&self) -> LookupAt {
        LookupAt {
            id: self.lookup_id,
            serial: self.lookup_serial,
        }
    }
}

/// One timeout retry, with what was around it.
#[derive(Clone, Debug)]
pub(crate) struct RetryEvent {
    pub(crate) client: Endpoint,
    pub(crate) server: Endpoint,
    pub(crate) qtype: u16,
    pub(crate) name: String,
    /// The first send of the unanswered query.
    pub(crate) original: PacketRef,
    /// The retry.
    pub(crate) retry: PacketRef,
    /// Gap between them, ns.
    pub(crate) gap_ns: u64,
    /// The parallel sibling query (other type, same socket) and its answer, when it
    /// was answered before the retry: one reply of the pair was lost.
    pub(crate) sibling: Option<(PacketRef, PacketRef, u16)>,
    /// The query went over TCP.
    pub(crate) tcp: bool,
}

/// A query over TCP never answered although its sibling on the same connection was:
/// glibc (`use-vc`) reads a TCP answer without a timeout, so a lost reply is not
/// re-sent after `timeout` seconds as over UDP; the lookup hangs until the connection
/// ends.
#[derive(Clone, Debug)]
pub(crate) struct TcpHang {
    pub(crate) client: Endpoint,
    pub(crate) server: Endpoint,
    pub(crate) qtype: u16,
    /// The unanswered query.
    pub(crate) query: PacketRef,
    /// The sibling query and its answer.
    pub(crate) sibling: (PacketRef, PacketRef, u16),
    /// From the query to the end of the connection (or of the capture), ns.
    pub(crate) waited_ns: u64,
    pub(crate) name_hash: u64,
}

/// A logical lookup that went through the search list.
#[derive(Clone, Debug)]
pub(crate) struct ExpandedLookup {
    pub(crate) base: String,
    pub(crate) first_name: String,
    pub(crate) queries: usize,
    pub(crate) minimal: usize,
    pub(crate) negative: u32,
    pub(crate) wasted_ns: u64,
    pub(crate) latency_ns: Option<u64>,
    pub(crate) packets: Vec<(PacketRef, &'static str)>,
    /// Client and server of the lookup's first query.
    pub(crate) flow: Option<(Endpoint, Endpoint)>,
    /// The first query went over TCP.
    pub(crate) tcp: bool,
}

/// Why a packet is evidence of a lookup: one byte in the lookup, its text in the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Role {
    #[default]
    Expansion,
    AsWritten,
    Resent,
    Truncated,
    Negative,
    Answer,
}

impl Role {
    fn text(self) -> &'static str {
        match self {
            Role::Expansion => "query for a search-list expansion",
            Role::AsWritten => "query for the name as written, after the search list",
            Role::Resent => "query re-sent",
            Role::Truncated => "truncated answer (TC): the resolver retries over TCP",
            Role::Negative => "negative answer (NXDOMAIN/NODATA): a wasted round trip",
            Role::Answer => "answer",
        }
    }
}

/// Where a transaction's lookup is: its slab entry, valid while that entry still holds
/// the lookup with this serial (a closed lookup's entry is freed, then reused).
#[derive(Clone, Copy, Debug)]
struct LookupAt {
    id: u32,
    serial: u64,
}

/// A logical lookup. Fixed size, without heap buffers: a query reads one record whose
/// fields it needs lie together (the counters, then the question hashes, then the
/// first name), where a lookup of strings and lists took a pointer chase, and a cache
/// miss, per list. Only the first `n_names` and `n_pkts` entries of the arrays are set.
#[derive(Clone, Debug)]
#[repr(C)]
struct Lookup {
    /// Unique per lookup; [`LookupSlab::FREE`] while the entry holds none.
    serial: u64,
    first_ns: u64,
    last_ns: u64,
    wasted_ns: u64,
    positive_ns: Option<u64>,
    last_answer_ns: Option<u64>,
    negative: u32,
    /// The source of its packets (the client's).
    source: u16,
    /// The first name's length in `name`.
    first_len: u16,
    /// The name as written (without a search suffix), when known: always the first
    /// `base_len` bytes of the first name.
    base_len: Option<u16>,
    n_names: u8,
    n_pkts: u8,
    tcp: bool,
    /// The hashes of its question names, with their types in `qtypes`.
    name_hashes: [u64; NAMES_PER_LOOKUP],
    qtypes: [u16; NAMES_PER_LOOKUP],
    /// The first name (lowercased, dotted).
    name: [u8; NAME_CAP],
    /// Evidence packets: numbers (from `source`) and roles.
    pkts: [u64; PKTS_PER_LOOKUP],
    roles: [Role; PKTS_PER_LOOKUP],
    flow: Option<(Endpoint, Endpoint)>,
}

impl Lookup {
    const EMPTY: Lookup = Lookup {
        serial: LookupSlab::FREE,
        first_ns: 0,
        last_ns: 0,
        wasted_ns: 0,
        positive_ns: None,
        last_answer_ns: None,
        negative: 0,
        source: 0,
        first_len: 0,
        base_len: None,
        n_names: 0,
        n_pkts: 0,
        tcp: false,
        name_hashes: [0; NAMES_PER_LOOKUP],
        qtypes: [0; NAMES_PER_LOOKUP],
        name: [0; NAME_CAP],
        pkts: [0; PKTS_PER_LOOKUP],
        roles: [Role::Expansion; PKTS_PER_LOOKUP],
        flow: None,
    };

    /// The first name's bytes.
    fn first(&self) -> &[u8] {
        self.name
            .get(..usize::from(self.first_len))
            .unwrap_or_default()
    }

    /// The name as written, when known.
    fn base(&self) -> Option<&[u8]> {
        self.base_len.and_then(|n| self.name.get(..usize::from(n)))
    }

    /// The (name hash, qtype) pairs it asked, in order.
    fn names(&self) -> impl Iterator<Item = (u64, u16)> + '_ {
        let n = usize::from(self.n_names);
        self.name_hashes
            .iter()
            .zip(&self.qtypes)
            .take(n)
            .map(|(&h, &t)| (h, t))
    }

    fn has_name(&self, hash: u64) -> bool {
        let n = usize::from(self.n_names);
        self.name_hashes.iter().take(n).any(|&h| h == hash)
    }

    fn has_question(&self, hash: u64, qtype: u16) -> bool {
        self.names().any(|q| q == (hash, qtype))
    }

    /// Adds a question unless known, or when `NAMES_PER_LOOKUP` are kept.
    fn add_question(&mut self, hash: u64, qtype: u16) {
        let n = usize::from(self.n_names);
        if n < NAMES_PER_LOOKUP && !self.has_question(hash, qtype) {
            if let (Some(h), Some(t)) = (self.name_hashes.get_mut(n), self.qtypes.get_mut(n)) {
                *h = hash;
                *t = qtype;
                self.n_names += 1;
            }
        }
    }

    /// Keeps an evidence packet, while fewer than `PKTS_PER_LOOKUP` are kept.
    fn add_packet(&mut self, number: u64, role: Role) {
        let n = usize::from(self.n_pkts);
        if let (Some(p), Some(r)) = (self.pkts.get_mut(n), self.roles.get_mut(n)) {
            *p = number;
            *r = role;
            self.n_pkts += 1;
        }
    }

    /// The evidence packets, as the report lists them.
    fn packets(&self) -> Vec<(PacketRef, &'static str)> {
        let n = usize::from(self.n_pkts);
        self.pkts
            .iter()
            .zip(&self.roles)
            .take(n)
            .map(|(&number, r)| {
                (
                    PacketRef {
                        source: self.source,
                        number,
                    },
                    r.text(),
                )
            })
            .collect()
    }
}

/// The open lookups of every client, in one list whose freed entries are reused: no
/// allocation once warm, and no more entries than were ever open at once.
#[derive(Default)]
struct LookupSlab {
    items: Vec<Lookup>,
    free: Vec<u32>,
}

impl LookupSlab {
    /// The serial of an entry that holds no lookup.
    const FREE: u64 = u64::MAX;

    /// A free entry (its old contents still there) and its id; `None` only when
    /// `u32::MAX` entries are in use.
    fn alloc(&mut self) -> Option<(u32, &mut Lookup)> {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                let id = u32::try_from(self.items.len()).ok()?;
                self.items.push(Lookup::EMPTY);
                id
            }
        };
        Some((id, self.items.get_mut(id as usize)?))
    }

    fn get(&self, id: u32) -> Option<&Lookup> {
        self.items.get(id as usize)
    }

    fn get_mut(&mut self, id: u32) -> Option<&mut Lookup> {
        self.items.get_mut(id as usize)
    }

    /// The lookup `at` points to, if it is still open.
    fn find(&mut self, at: LookupAt) -> Option<&mut Lookup> {
        self.items
            .get_mut(at.id as usize)
            .filter(|l| l.serial == at.serial)
    }

    /// Entries holding an open lookup: every one sits in exactly one client's ids
    /// (allocated and pushed together, closed and released together).
    fn open(&self) -> usize {
        self.items.len().saturating_sub(self.free.len())
    }

    fn release(&mut self, id: u32) {
        if let Some(l) = self.items.get_mut(id as usize) {
            if l.serial != Self::FREE {
                l.serial = Self::FREE;
                self.free.push(id);
            }
        }
    }
}

/// A client's open lookups (slab ids), oldest first.
#[derive(Default)]
struct Client {
    ids: [u32; LOOKUPS_PER_CLIENT],
    n: u8,
}

impl Client {
    fn ids(&self) -> &[u32] {
        self.ids.get(..usize::from(self.n)).unwrap_or_default()
    }

    /// Removes and returns the `i`-th id, keeping the order of the others.
    fn remove(&mut self, i: usize) -> Option<u32> {
        let n = usize::from(self.n);
        let id = *self.ids.get(i).filter(|_| i < n)?;
        // The removed id moves past the end of the kept ones.
        if let Some(tail) = self.ids.get_mut(i..n) {
            tail.rotate_left(1);
        }
        self.n -= 1;
        Some(id)
    }

    /// Appends an id; `false` when full.
    fn push(&mut self, id: u32) -> bool {
        match self.ids.get_mut(usize::from(self.n)) {
            Some(slot) => {
                *slot = id;
                self.n += 1;
                true
            }
            None => false,
        }
    }
}

/// What closing a lookup updates: every field it touches but the clients map, borrowed
/// apart from it so that a client's lookups can be closed while its entry is held
/// (two map probes per query at most, where there were three or more).
struct Sink<'a> {
    stats: &'a mut DnsStats,
    minimal_total: &'a mut u64,
    distinct_total: &'a mut u64,
    latencies_ns: &'a mut Vec<u64>,
    expanded: &'a mut Vec<ExpandedLookup>,
    slab: &'a mut LookupSlab,
}

/// The [`Sink`] of a `DnsTracker` (a macro, not a method, so that it borrows only those
/// fields).
macro_rules! sink {
    ($t:expr) => {
        Sink {
            stats: &mut $t.stats,
            minimal_total: &mut $t.minimal_total,
            distinct_total: &mut $t.distinct_total,
            latencies_ns: &mut $t.latencies_ns,
            expanded: &mut $t.expanded,
            slab: &mut $t.slab,
        }
    };
}

/// The DNS tracker.
pub(crate) struct DnsTracker {
    search: Vec<String>,
    timeout_ns: u64,
    max_txns: usize,
    txns: DenseMap<TxKey, Txn>,
    last_on_socket: DenseMap<(u16, Endpoint, Endpoint), (u16, u64)>,
    /// Clients by (source, address), at most `client_cap` of them; when full, a new
    /// client closes out the least recently active one (the one whose latest query is
    /// oldest): an active client's search-list walk is never cut by clients that
    /// come and go. LRU, O(1), in the same order whatever the hash values.
    clients: FlowTable<Client, (u16, IpAddr)>,
    full_until_ns: u64,
    next_serial: u64,
    pub(crate) stats: DnsStats,
    minimal_total: u64,
    distinct_total: u64,
    latencies_ns: Vec<u64>,
    suffixes: FxMap<Vec<u8>, u64>,
    pub(crate) retries: Vec<RetryEvent>,
    pub(crate) retry_events: u64,
    pub(crate) expanded: Vec<ExpandedLookup>,
    pub(crate) not_tracked: u64,
    pub(crate) unmatched_responses: u64,
    /// TCP queries left unanswered while their sibling was answered (examples).
    pub(crate) tcp_hangs: Vec<TcpHang>,
    /// All of them.
    pub(crate) tcp_hang_events: u64,
    /// The latest packet time seen, ns.
    last_ns: u64,
    /// Question names of unanswered TCP queries, by hash, for the finding.
    hang_names: FxMap<u64, String>,
    /// Query-to-response times, in arrival order, when asked for (`watch`'s metrics).
    answer_latencies: Option<Vec<u64>>,
    /// The open lookups of every client.
    slab: LookupSlab,
}

/// How many distinct values `it` yields (at most `NAMES_PER_LOOKUP` of them are looked
/// at: a lookup keeps no more names), without allocating.
fn count_distinct<T: Ord + Copy + Default>(it: impl Iterator<Item = T>) -> usize {
    let mut v = [T::default(); NAMES_PER_LOOKUP];
    let mut n = 0;
    for (slot, x) in v.iter_mut().zip(it) {
        *slot = x;
        n += 1;
    }
    let v = &mut v[..n];
    v.sort_unstable();
    usize::from(n > 0) + v.windows(2).filter(|w| w[0] != w[1]).count()
}

/// The length of the leading labels `a` and `b` share (whole, non-empty labels,
/// compared exactly), a prefix of both. One pass over the bytes, no label iterators.
fn leading_common_labels(a: &[u8], b: &[u8]) -> usize {
    // `end`: the length of the labels matched so far; `start`: where the current
    // label began. Every byte before `i` is equal in both names.
    let (mut end, mut start, mut i) = (0, 0, 0);
    loop {
        let a_ends = a.get(i).is_none_or(|&c| c == b'.');
        let b_ends = b.get(i).is_none_or(|&c| c == b'.');
        if a_ends || b_ends {
            // Equal labels end together, and an empty one ends the match.
            if !(a_ends && b_ends) || i == start {
                break;
            }
            end = i;
            if i >= a.len() || i >= b.len() {
                break;
            }
            i += 1;
            start = i;
        } else if a.get(i) == b.get(i) {
            i += 1;
        } else {
            break;
        }
    }
    end
}

fn strip_suffix<'s>(name: &'s [u8], suffix: &[u8]) -> Option<&'s [u8]> {
    name.strip_suffix(suffix)
        .and_then(|r| r.strip_suffix(b"."))
        .filter(|r| !r.is_empty())
}

/// `s` without its leading dots.
fn trim_leading_dots(s: &[u8]) -> &[u8] {
    let dots = s.iter().take_while(|&&c| c == b'.').count();
    s.get(dots..).unwrap_or_default()
}

/// Text of a name the tracker wrote (ASCII by construction).
fn name_text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl DnsTracker {
    pub(crate) fn new(max_txns: usize, max_clients: usize) -> Self {
        DnsTracker {
            search: Vec::new(),
            timeout_ns: 5_000_000_000,
            max_txns: txn_cap(max_txns),
            txns: DenseMap::default(),
            last_on_socket: DenseMap::default(),
            clients: FlowTable::new(client_cap(max_clients), u64::MAX),
            full_until_ns: 0,
            next_serial: 0,
            stats: DnsStats::default(),
            minimal_total: 0,
            distinct_total: 0,
            latencies_ns: Vec::new(),
            suffixes: FxMap::default(),
            retries: Vec::new(),
            retry_events: 0,
            expanded: Vec::new(),
            not_tracked: 0,
            unmatched_responses: 0,
            tcp_hangs: Vec::new(),
            tcp_hang_events: 0,
            last_ns: 0,
            hang_names: FxMap::default(),
            answer_latencies: None,
            slab: LookupSlab::default(),
        }
    }

    pub(crate) fn set_resolv_conf(&mut self, rc: &ResolvConf) {
        self.search = rc.search.clone();
        self.timeout_ns = u64::from(rc.timeout_s) * 1_000_000_000;
    }

    fn is_timeout_gap(&self, gap: u64) -> bool {
        [self.timeout_ns, 5_000_000_000, 2_500_000_000]
            .iter()
            .any(|t| gap.abs_diff(*t) <= TIMEOUT_TOLERANCE_NS)
    }

    /// One DNS message from `src` to `dst`, over UDP or (reassembled) TCP.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_message(
        &mut self,
        source: u16,
        src: Endpoint,
        dst: Endpoint,
        msg: &Message<'_>,
        pkt: u64,
        ns: u64,
        tcp: bool,
    ) {
        self.last_ns = self.last_ns.max(ns);
        if msg.is_response() {
            self.on_response(source, src, dst, msg, pkt, ns);
        } else if msg.opcode() == 0 {
            self.on_query(source, src, dst, msg, pkt, ns, tcp);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_query(
        &mut self,
        source: u16,
        client: Endpoint,
        server: Endpoint,
        msg: &Message<'_>,
        pkt: u64,
        ns: u64,
        tcp: bool,
    ) {
        self.stats.queries_sent += 1;
        let Some(q) = msg.question() else { return };
        let key = TxKey {
            source,
            client,
            server,
            id: msg.id(),
        };
        let mut name = NameBuf::new();
        let name_hash = name.put_name_hashed(&q.name);
        let pref = PacketRef {
            source,
            number: pkt,
        };
        // Whether the ID is in use on this socket (for another question, if not a retry):
        // when it is not, the new transaction is added without a second probe.
        let mut id_in_use = false;
        // Hashed once for the lookup and, when new, the insert.
        let key_hash = DenseMap::<TxKey, Txn>::hash_of(&key);
        if let Some(t) = self.txns.get_mut_hashed(&key, key_hash) {
            id_in_use = true;
            if t.name_hash == name_hash && t.qtype == q.qtype {
                // Same ID, same socket, same question: a retry.
                let gap = ns.saturating_sub(t.last_send_ns);
                t.sends = t.sends.saturating_add(1);
                t.last_send_ns = ns;
                self.stats.retries += 1;
                let t = *t;
                if t.answered.is_none() && self.is_timeout_gap(gap) {
                    self.note_retry(key, &t, pref, gap, q.name);
                }
                self.touch_lookup(source, client.0, t.lookup(), pkt, ns);
                return;
            }
        }
        // A new transaction.
        if self.txns.len() >= self.max_txns {
            if ns < self.full_until_ns {
                self.not_tracked += 1;
                return;
            }
            self.prune(ns);
            if self.txns.len() >= self.max_txns {
                self.full_until_ns = ns.saturating_add(1_000_000_000);
                self.not_tracked += 1;
                return;
            }
        }
        if tcp && self.hang_names.len() < MAX_SUFFIXES * 16 {
            self.hang_names
                .entry(name_hash)
                .or_insert_with(|| name.as_str().to_string());
        }
        let lookup = self.attach_to_lookup(
            source,
            (client, server),
            name.as_bytes(),
            name_hash,
            q.qtype,
            pkt,
            ns,
            tcp,
        );
        let sock = (source, client, server);
        let mut sibling = None;
        // The socket's last query, replaced in place by this one unless the table is full
        // (then it starts over with this one alone).
        let sockets_full = self.last_on_socket.len() >= self.max_txns;
        let mut last = None;
        let sock_hash = DenseMap::<(u16, Endpoint, Endpoint), (u16, u64)>::hash_of(&sock);
        if let Some(v) = self.last_on_socket.get_mut_hashed(&sock, sock_hash) {
            last = Some(*v);
            if !sockets_full {
                *v = (key.id, ns);
            }
        }
        if let Some((sid, sns)) = last {
            if sid != key.id && ns.saturating_sub(sns) <= PAIR_GAP_NS {
                if let Some(s) = self.txns.get_mut(&TxKey { id: sid, ..key }) {
                    if s.name_hash == name_hash && is_address_pair(s.qtype, q.qtype) {
                        sibling = Some(sid);
                        if s.sibling.is_none() {
                            s.sibling = Some(key.id);
                        }
                    }
                }
            }
        }
        if sockets_full {
            self.last_on_socket.clear();
            self.last_on_socket
                .insert_absent_hashed(sock, sock_hash, (key.id, ns));
        } else if last.is_none() {
            self.last_on_socket
                .insert_absent_hashed(sock, sock_hash, (key.id, ns));
        }
        let txn = Txn {
            qtype: q.qtype,
            name_hash,
            last_send_ns: ns,
            first_pkt: pkt,
            sends: 1,
            answered: None,
            answered_at: [0; 2],
            lookup_id: lookup.id,
            lookup_serial: lookup.serial,
            sibling,
            tcp,
            closed: false,
            closed_at: 0,
        };
        if id_in_use {
            self.txns.insert(key, txn);
        } else {
            self.txns.insert_absent_hashed(key, key_hash, txn);
        }
    }

    fn note_retry(
        &mut self,
        key: TxKey,
        t: &Txn,
        retry: PacketRef,
        gap: u64,
        name: netdiag_wire::dns::Name<'_>,
    ) {
        self.retry_events += 1;
        if self.retries.len() >= MAX_EXAMPLES {
            return;
        }
        let sibling = t.sibling.and_then(|sid| {
            let s = self.txns.get(&TxKey { id: sid, ..key })?;
            let (ans_ns, ans_pkt, _) = s.answer()?;
            // `t.last_send_ns` is the retry's time: the sibling was answered before it.
            (ans_ns <= t.last_send_ns).then_some((
                PacketRef {
                    source: key.source,
                    number: s.first_pkt,
                },
                PacketRef {
                    source: key.source,
                    number: ans_pkt,
                },
                s.qtype,
            ))
        });
        let mut n = NameBuf::new();
        let _ = name.write_dotted(&mut n);
        self.retries.push(RetryEvent {
            client: key.client,
            server: key.server,
            qtype: t.qtype,
            name: n.as_str().to_string(),
            original: PacketRef {
                source: key.source,
                number: t.first_pkt,
            },
            retry,
            gap_ns: gap,
            sibling,
            tcp: t.tcp,
        });
    }

    fn on_response(
        &mut self,
        source: u16,
        server: Endpoint,
        client: Endpoint,
        msg: &Message<'_>,
        pkt: u64,
        ns: u64,
    ) {
        self.stats.responses += 1;
        let rcode = msg.rcode();
        if rcode == Rcode::NXDOMAIN {
            self.stats.nxdomain += 1;
        }
        let key = TxKey {
            source,
            client,
            server,
            id: msg.id(),
        };
        let Some(t) = self.txns.get_mut(&key) else {
            self.unmatched_responses += 1;
            return;
        };
        if t.answered.is_some() {
            return;
        }
        t.answered = Some(rcode);
        t.answered_at = [ns, pkt];
        if msg.truncated() {
            // TC: the answer did not fit; the resolver asks the same question again over
            // TCP, which belongs to the same logical lookup (and its latency).
            if let Some(l) = self.slab.find(t.lookup()) {
                l.last_ns = l.last_ns.max(ns);
                l.add_packet(pkt, Role::Truncated);
            }
            return;
        }
        let latency = ns.saturating_sub(t.last_send_ns);
        if let Some(v) = self.answer_latencies.as_mut() {
            if v.len() < MAX_LATENCIES {
                v.push(latency);
            }
        }
        let lookup = t.lookup();
        let positive = rcode == Rcode::NOERROR && msg.answer_count() > 0;
        let negative = rcode == Rcode::NXDOMAIN
            || rcode == Rcode::SERVFAIL
            || (rcode == Rcode::NOERROR && msg.answer_count() == 0);
        if let Some(l) = self.slab.find(lookup) {
            l.last_ns = l.last_ns.max(ns);
            l.last_answer_ns = Some(ns);
            if positive && l.positive_ns.is_none() {
                l.positive_ns = Some(ns);
            }
            if negative {
                l.negative += 1;
                l.wasted_ns = l.wasted_ns.saturating_add(latency);
            }
            l.add_packet(
                pkt,
                if negative {
                    Role::Negative
                } else {
                    Role::Answer
                },
            );
        }
    }

    /// A query re-sent: the client is active, and so is its lookup.
    fn touch_lookup(&mut self, source: u16, client: IpAddr, at: LookupAt, pkt: u64, ns: u64) {
        self.clients.touch(&(source, client), ns);
        if let Some(l) = self.slab.find(at) {
            l.last_ns = l.last_ns.max(ns);
            l.add_packet(pkt, Role::Resent);
        }
    }

    /// The base name of `name` under the configured search list, if it ends in one.
    fn configured_base<'s>(&self, name: &'s [u8]) -> Option<&'s [u8]> {
        self.search
            .iter()
            .filter_map(|s| strip_suffix(name, s.as_bytes()))
            .min_by_key(|b| b.len())
    }

    #[allow(clippy::too_many_arguments)]
    fn attach_to_lookup(
        &mut self,
        source: u16,
        flow: (Endpoint, Endpoint),
        name: &[u8],
        name_hash: u64,
        qtype: u16,
        pkt: u64,
        ns: u64,
        tcp: bool,
    ) -> LookupAt {
        let client = flow.0.0;
        let ckey = (source, client);
        let conf_base = self.configured_base(name);
        let mut sink = sink!(self);
        // The client is now the most recently active; a new one in a full table closes
        // out the lookups of the least recently active.
        let (c, _) = self.clients.get_or_insert(ckey, ns, |_, old, _| {
            for &id in old.ids() {
                sink.close(id);
            }
        });
        // Close idle lookups of this client, oldest first (no list of them is built).
        while let Some(i) = c.ids().iter().position(|&id| {
            sink.slab
                .get(id)
                .is_some_and(|l| ns.saturating_sub(l.last_ns) > LOOKUP_IDLE_NS)
        }) {
            if let Some(id) = c.remove(i) {
                sink.close(id);
            }
        }
        // 1. Same name (A after AAAA, or a new ID for the same question) — unless the
        //    lookup is over and this is the application asking again: the same question
        //    after a positive answer, or the walk restarting at its first name after
        //    answers came back. That is a new logical lookup.
        let mut found = c.ids().iter().position(|&id| {
            sink.slab.get(id).is_some_and(|l| {
                l.has_name(name_hash)
                    && !(l.has_question(name_hash, qtype)
                        && (l.positive_ns.is_some()
                            || (l.last_answer_ns.is_some() && l.first() == name)))
            })
        });
        // The base name: always a prefix of `name` (the configured base is cut from it,
        // and shared leading labels are equal in both names), and of the lookup's first
        // name.
        let mut base_found: Option<&[u8]> = None;
        // 2. A search-list expansion of an open lookup that got a negative answer.
        if found.is_none() {
            for (i, &id) in c.ids().iter().enumerate().rev() {
                let Some(l) = sink.slab.get(id) else { continue };
                if l.positive_ns.is_some() || l.negative == 0 {
                    continue;
                }
                let base = match (conf_base, l.base()) {
                    (Some(b), Some(lb)) if b == lb => Some(b),
                    _ => {
                        let x = leading_common_labels(l.first(), name);
                        let related = x > 0
                            && x < l.first().len()
                            && l.base().is_none_or(|b| Some(b) == l.first().get(..x));
                        if related { name.get(..x) } else { None }
                    }
                };
                if base.is_some() {
                    found = Some(i);
                    base_found = base;
                    break;
                }
            }
        }
        // At most two suffixes are learnt per query: slices of `name` or of the lookup's
        // first name, copied into the map only when new.
        let mut suffixes: [Option<(usize, usize, bool)>; 2] = [None, None];
        let at = match found.and_then(|i| c.ids().get(i).copied()) {
            Some(id) => {
                let Some(l) = sink.slab.get_mut(id) else {
                    return LookupAt {
                        id,
                        serial: LookupSlab::FREE,
                    };
                };
                if let Some(b) = base_found {
                    if l.base_len.is_none() && l.first().starts_with(b) {
                        let t = trim_leading_dots(l.first().get(b.len()..).unwrap_or_default());
                        let first_len = l.first().len();
                        suffixes[0] = Some((first_len - t.len(), first_len, true));
                        l.base_len = u16::try_from(b.len()).ok();
                    }
                    if let Some(sfx) = name.strip_prefix(b) {
                        let sfx = trim_leading_dots(sfx);
                        if !sfx.is_empty() {
                            suffixes[1] = Some((name.len() - sfx.len(), name.len(), false));
                        }
                    }
                }
                l.add_question(name_hash, qtype);
                l.last_ns = l.last_ns.max(ns);
                let role = if l.base() == Some(name) {
                    Role::AsWritten
                } else {
                    Role::Expansion
                };
                l.add_packet(pkt, role);
                LookupAt {
                    id,
                    serial: l.serial,
                }
            }
            None => {
                let serial = self.next_serial;
                self.next_serial += 1;
                let evicted = if usize::from(c.n) >= LOOKUPS_PER_CLIENT {
                    c.remove(0)
                } else {
                    None
                };
                // A closed lookup's entry is reused: no allocation once warm.
                let Some((id, l)) = sink.slab.alloc() else {
                    return LookupAt {
                        id: u32::MAX,
                        serial: LookupSlab::FREE,
                    };
                };
                let len = name.len().min(NAME_CAP);
                if let (Some(dst), Some(src)) = (l.name.get_mut(..len), name.get(..len)) {
                    dst.copy_from_slice(src);
                }
                // Every field but the arrays, whose first `n_*` entries alone are read.
                l.serial = serial;
                l.first_ns = ns;
                l.last_ns = ns;
                l.wasted_ns = 0;
                l.positive_ns = None;
                l.last_answer_ns = None;
                l.negative = 0;
                l.source = source;
                l.first_len = u16::try_from(len).unwrap_or(0);
                l.base_len = conf_base
                    .filter(|b| *b != name && b.len() <= len)
                    .and_then(|b| u16::try_from(b.len()).ok());
                l.n_names = 0;
                l.n_pkts = 0;
                l.tcp = tcp;
                l.flow = Some(flow);
                l.add_question(name_hash, qtype);
                l.add_packet(pkt, Role::Expansion);
                c.push(id);
                if let Some(e) = evicted {
                    sink.close(e);
                }
                LookupAt { id, serial }
            }
        };
        for (from, end, of_first) in suffixes.into_iter().flatten() {
            let text = if of_first {
                sink.slab
                    .find(at)
                    .and_then(|l| l.first().get(from..end))
                    .unwrap_or_default()
            } else {
                name.get(from..end).unwrap_or_default()
            };
            if let Some(n) = self.suffixes.get_mut(text) {
                *n += 1;
            } else if self.suffixes.len() < MAX_SUFFIXES {
                self.suffixes.insert(text.to_vec(), 1);
            }
        }
        at
    }

    /// Starts (or stops) keeping every query-to-response time.
    pub(crate) fn record_answer_latencies(&mut self, on: bool) {
        self.answer_latencies = on.then(Vec::new);
    }

    /// The query-to-response times kept so far (empty unless asked for).
    pub(crate) fn answer_latencies(&self) -> &[u64] {
        self.answer_latencies.as_deref().unwrap_or_default()
    }

    fn close_lookup(&mut self, id: u32) {
        sink!(self).close(id);
    }
}

impl Sink<'_> {
    /// Closes the open lookup in slab entry `id` and frees the entry.
    fn close(&mut self, id: u32) {
        let Some(l) = self.slab.get(id).filter(|l| l.serial != LookupSlab::FREE) else {
            return;
        };
        self.stats.logical_lookups += 1;
        let distinct = u64::from(l.n_names);
        let types = count_distinct(l.names().map(|(_, t)| t));
        let minimal = types as u64;
        *self.distinct_total += distinct;
        *self.minimal_total += minimal;
        let end = l.positive_ns.or(l.last_answer_ns);
        let latency = end.map(|e| e.saturating_sub(l.first_ns));
        if let Some(lat) = latency {
            if self.latencies_ns.len() < MAX_LATENCIES {
                self.latencies_ns.push(lat);
            }
        }
        let distinct_names = count_distinct(l.names().map(|(h, _)| h));
        if let (Some(base), true) = (l.base(), distinct_names > 1 && l.negative > 0) {
            self.stats.expanded_lookups += 1;
            if self.expanded.len() < MAX_EXAMPLES {
                self.expanded.push(ExpandedLookup {
                    base: name_text(base),
                    first_name: name_text(l.first()),
                    queries: usize::from(l.n_names),
                    minimal: types,
                    negative: l.negative,
                    wasted_ns: l.wasted_ns,
                    latency_ns: latency,
                    packets: l.packets(),
                    flow: l.flow,
                    tcp: l.tcp,
                });
            }
        }
        self.slab.release(id);
    }
}

impl DnsTracker {
    /// Drops finished or stale transactions when the table is full.
    fn prune(&mut self, now: u64) {
        let mut unanswered = 0;
        self.txns.retain(|_, t| {
            let keep = now.saturating_sub(t.last_send_ns) <= LOOKUP_IDLE_NS && t.answered.is_none();
            if !keep && t.answered.is_none() {
                unanswered += 1;
            }
            keep
        });
        self.stats.unanswered += unanswered;
    }

    /// A TCP DNS connection ended (FIN or RST from `from`): its open queries will not be
    /// answered any more.
    /// Bounded: with more than `CLOSE_SCAN_MAX` open transactions the scan is skipped
    /// (a hang then counts to the end of the capture).
    pub(crate) fn on_tcp_close(&mut self, source: u16, a: Endpoint, b: Endpoint, ns: u64) {
        /// The most transactions one connection end scans.
        const CLOSE_SCAN_MAX: usize = 4096;
        self.last_ns = self.last_ns.max(ns);
        if self.txns.len() > CLOSE_SCAN_MAX {
            return;
        }
        for (k, t) in self.txns.iter_mut() {
            if t.tcp
                && t.answered.is_none()
                && !t.closed
                && k.source == source
                && ((k.client == a && k.server == b) || (k.client == b && k.server == a))
            {
                t.closed = true;
                t.closed_at = ns;
            }
        }
    }

    /// TCP queries never answered although their sibling on the same connection was.
    fn find_tcp_hangs(&mut self) {
        let mut hangs = Vec::new();
        for (k, t) in self.txns.iter() {
            if !t.tcp || t.answered.is_some() {
                continue;
            }
            let Some(sid) = t.sibling else { continue };
            let Some(s) = self.txns.get(&TxKey { id: sid, ..*k }) else {
                continue;
            };
            let Some((_, ans_pkt, _)) = s.answer() else {
                continue;
            };
            let end = if t.closed { t.closed_at } else { self.last_ns };
            hangs.push(TcpHang {
                client: k.client,
                server: k.server,
                qtype: t.qtype,
                query: PacketRef {
                    source: k.source,
                    number: t.first_pkt,
                },
                sibling: (
                    PacketRef {
                        source: k.source,
                        number: s.first_pkt,
                    },
                    PacketRef {
                        source: k.source,
                        number: ans_pkt,
                    },
                    s.qtype,
                ),
                waited_ns: end.saturating_sub(t.last_send_ns),
                name_hash: t.name_hash,
            });
        }
        hangs.sort_by_key(|h| h.query.number);
        self.tcp_hang_events = hangs.len() as u64;
        hangs.truncate(MAX_EXAMPLES);
        self.tcp_hangs = hangs;
    }

    /// The question name of an unanswered TCP query.
    pub(crate) fn hang_name(&self, h: &TcpHang) -> String {
        self.hang_names
            .get(&h.name_hash)
            .cloned()
            .unwrap_or_default()
    }

    /// Closes everything and fills in the statistics.
    pub(crate) fn finish(&mut self) -> DnsStats {
        self.find_tcp_hangs();
        // Least recently active client first, each one's lookups oldest first.
        let clients = std::mem::replace(&mut self.clients, FlowTable::new(1, u64::MAX));
        for (_, c) in clients.drain_lru() {
            for &id in c.ids() {
                self.close_lookup(id);
            }
        }
        self.stats.unanswered += self.txns.values().filter(|t| t.answered.is_none()).count() as u64;
        let mut s = self.stats.clone();
        s.nxdomain_share = if s.responses > 0 {
            s.nxdomain as f64 / s.responses as f64
        } else {
            0.0
        };
        s.amplification_factor = if self.minimal_total > 0 {
            self.distinct_total as f64 / self.minimal_total as f64
        } else {
            0.0
        };
        self.latencies_ns.sort_unstable();
        let pct = |p: f64, v: &[u64]| -> Option<f64> {
            if v.is_empty() {
                return None;
            }
            let i = ((v.len() - 1) as f64 * p).round() as usize;
            v.get(i).map(|x| *x as f64 / 1e6)
        };
        s.latency_p50_ms = pct(0.5, &self.latencies_ns);
        s.latency_p99_ms = pct(0.99, &self.latencies_ns);
        if self.search.is_empty() {
            let mut sfx: Vec<(String, u64)> = self
                .suffixes
                .iter()
                .map(|(k, v)| (name_text(k), *v))
                .collect();
            sfx.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            s.search_suffixes = sfx.into_iter().map(|(k, _)| k).collect();
            s.search_from_resolv_conf = false;
        } else {
            s.search_suffixes = self.search.clone();
            s.search_from_resolv_conf = true;
        }
        s
    }
}

/// Whether two query types are the A and the AAAA of one address lookup, in either order.
fn is_address_pair(a: u16, b: u16) -> bool {
    matches!((a, b), (QTYPE_A, QTYPE_AAAA) | (QTYPE_AAAA, QTYPE_A))
}

/// The qtype as people write it.
pub(crate) fn qtype_name(t: u16) -> String {
    match t {
        QTYPE_A => "A".to_string(),
        QTYPE_AAAA => "AAAA".to_string(),
        other => {
            let mut s = String::new();
            let _ = write!(s, "TYPE{other}");
            s
        }
    }
}

/// The transaction cap in effect for a configured `max_dns_transactions`.
pub(crate) fn txn_cap(configured: usize) -> usize {
    configured.max(16)
}

/// The client cap in effect for a configured `max_dns_clients`.
pub(crate) fn client_cap(configured: usize) -> usize {
    configured.max(4)
}

impl DnsTracker {
    /// (transactions, sockets, clients, open lookups) held now.
    ///
    /// Constant time: the DNS thread takes it after every batch (summing the clients'
    /// lookups instead was a sixth of that thread's time on a 1M-packet capture).
    pub(crate) fn fill(&self) -> (usize, usize, usize, usize) {
        let lookups = self.slab.open();
        (
            self.txns.len(),
            self.last_on_socket.len(),
            self.clients.len(),
            lookups,
        )
    }

    /// Most heap bytes the tracker holds with these caps, every name at its longest.
    pub(crate) fn bytes_bound(max_txns: usize, max_clients: usize) -> usize {
        use crate::bounds::{map_bytes, string_bytes, vec_bytes};
        let (txns, clients) = (txn_cap(max_txns), client_cap(max_clients));
        let name = string_bytes(NameBuf::new().buf.len());
        // Every client's lookups open at once, in the slab, with its free list.
        let open_lookups = clients * LOOKUPS_PER_CLIENT;
        let examples = MAX_EXAMPLES
            * (std::mem::size_of::<RetryEvent>()
                + std::mem::size_of::<ExpandedLookup>()
                + 3 * name
                + vec_bytes::<(PacketRef, &'static str)>(PKTS_PER_LOOKUP));
        DenseMap::<TxKey, Txn>::bytes_bound(txns)
            + DenseMap::<(u16, Endpoint, Endpoint), (u16, u64)>::bytes_bound(txns)
            + FlowTable::<Client, (u16, IpAddr)>::bytes_bound(clients)
            + vec_bytes::<Lookup>(open_lookups)
            + vec_bytes::<u32>(open_lookups)
            + vec_bytes::<u64>(MAX_LATENCIES)
            + map_bytes::<Vec<u8>, u64>(MAX_SUFFIXES)
            + MAX_SUFFIXES * name
            + examples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DNS query for `labels` (raw label bytes), as it would be on the wire.
    fn query(labels: &[&[u8]]) -> Vec<u8> {
        message_of_labels(0x1234, labels, None)
    }

    /// A DNS message for the dotted `name` with ID `id`: the query, or with
    /// `answer = Some((rcode, answer count))` its response.
    fn message(id: u16, name: &str, answer: Option<(u8, u16)>) -> Vec<u8> {
        let labels: Vec<&[u8]> = name.split('.').map(str::as_bytes).collect();
        message_of_labels(id, &labels, answer)
    }

    /// [`message`] for raw label bytes.
    fn message_of_labels(id: u16, labels: &[&[u8]], answer: Option<(u8, u16)>) -> Vec<u8> {
        let (flags, answers) = match answer {
            None => (0x0100u16, 0u16),
            Some((rcode, n)) => (0x8180 | u16::from(rcode), n),
        };
        let mut m = Vec::new();
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(&answers.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        for l in labels {
            m.push(u8::try_from(l.len()).unwrap());
            m.extend_from_slice(l);
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    }

    /// Feeds query/response exchanges to a tracker, 1 ms apart.
    struct Exchanges {
        t: DnsTracker,
        pkt: u64,
        ns: u64,
        id: u16,
    }

    impl Exchanges {
        /// A tracker holding at most `clients` clients, nothing fed yet.
        fn new(clients: usize) -> Self {
            Exchanges {
                t: DnsTracker::new(4096, clients),
                pkt: 0,
                ns: 0,
                id: 0,
            }
        }

        /// `client` asks `name` (type A) and gets `rcode` with `answers` records.
        fn exchange(&mut self, client: Endpoint, name: &str, rcode: u8, answers: u16) {
            let server: Endpoint = (IpAddr::from([10, 96, 0, 10]), 53);
            self.id = self.id.wrapping_add(1);
            let q = message(self.id, name, None);
            let r = message(self.id, name, Some((rcode, answers)));
            for (from, to, bytes) in [(client, server, q), (server, client, r)] {
                let m = Message::parse(&bytes).unwrap();
                self.pkt += 1;
                self.ns += 1_000_000;
                self.t.on_message(0, from, to, &m, self.pkt, self.ns, false);
            }
        }
    }

    /// Feeds one message to `t`.
    fn feed(t: &mut DnsTracker, from: Endpoint, to: Endpoint, bytes: &[u8], pkt: u64, ns: u64) {
        let m = Message::parse(bytes).unwrap();
        t.on_message(0, from, to, &m, pkt, ns, false);
    }

    /// [`message`] asking for AAAA instead of A.
    fn aaaa(id: u16, name: &str, answer: Option<(u8, u16)>) -> Vec<u8> {
        let mut m = message(id, name, answer);
        let n = m.len();
        m[n - 4..n - 2].copy_from_slice(&QTYPE_AAAA.to_be_bytes());
        m
    }

    /// The resolver stalled 300 ms between its A and AAAA sends (the A answered in
    /// between, as in watch_lab on a loaded CI machine): the AAAA's timeout re-send still
    /// names the A query and its answer as its sibling. Another name's query as soon after
    /// on one socket is no sibling.
    #[test]
    fn a_and_aaaa_of_one_name_pair_across_a_stalled_send_other_names_do_not() {
        let server: Endpoint = (IpAddr::from([172, 31, 0, 2]), 53);
        let (one, two): (Endpoint, Endpoint) = (
            (IpAddr::from([10, 244, 1, 10]), 40000),
            (IpAddr::from([10, 244, 1, 10]), 40001),
        );
        let mut t = DnsTracker::new(4096, 16);
        let name = "api.example.test";
        // On `socket` from `t0`, packets `pkt..pkt + 4`: the A query for `a_name` (ID
        // `id`), its answer 3 ms later, the AAAA query for `name` 300 ms after the A
        // (ID `id + 1`), never answered, and its re-send 5 s later.
        let lookup = |t: &mut DnsTracker, socket, a_name: &str, id: u16, pkt: u64, t0: u64| {
            feed(t, socket, server, &message(id, a_name, None), pkt, t0);
            let answer = message(id, a_name, Some((0, 1)));
            feed(t, server, socket, &answer, pkt + 1, t0 + 3_000_000);
            let q = aaaa(id + 1, name, None);
            feed(t, socket, server, &q, pkt + 2, t0 + 300_000_000);
            feed(t, socket, server, &q, pkt + 3, t0 + 5_300_000_000);
        };
        lookup(&mut t, one, name, 1, 1, 0);
        lookup(&mut t, two, "www.example.test", 3, 5, 10_000_000_000);
        let pr = |number| PacketRef { source: 0, number };
        let siblings: Vec<_> = t.retries.iter().map(|r| (r.retry, r.sibling)).collect();
        assert_eq!(
            siblings,
            vec![(pr(4), Some((pr(1), pr(2), QTYPE_A))), (pr(8), None)]
        );
    }

    /// A client that keeps querying stays in a full client table while one-shot clients
    /// pass through it (each evicts the least recently active), so each of its
    /// search-list walks is one logical lookup, counted whole. Evicting whichever client
    /// the hash map yields first split walks (the client was closed out mid-walk and
    /// the rest of the walk started a lookup of its own).
    #[test]
    fn an_active_clients_search_list_walks_survive_one_shot_clients() {
        const CAP: usize = 4;
        let mut f = Exchanges::new(CAP);
        let rounds = 20;
        let mut one_shot = 0u32;
        for round in 0..rounds {
            // A client per round (where the hash map put the active client decided
            // whether the old eviction could pick it).
            let active: Endpoint = (IpAddr::from([10, 244, 1, round as u8]), 40_000);
            let base = format!("api{round}.example");
            let walk = [
                format!("{base}.default.svc.cluster.local"),
                format!("{base}.svc.cluster.local"),
                format!("{base}.cluster.local"),
                base.clone(),
            ];
            for (i, name) in walk.iter().enumerate() {
                // NXDOMAIN for each expansion, an address for the name as written.
                let (rcode, answers) = if i + 1 == walk.len() { (0, 1) } else { (3, 0) };
                f.exchange(active, name, rcode, answers);
                // As many new clients as leave the active one in the table.
                for _ in 0..CAP - 1 {
                    one_shot += 1;
                    let [_, _, hi, lo] = one_shot.to_be_bytes();
                    let client = (IpAddr::from([10, 245, hi, lo]), 50_000);
                    f.exchange(client, &format!("svc{one_shot}.example"), 0, 1);
                    let (_, _, clients, lookups) = f.t.fill();
                    assert!(clients <= CAP, "client table over its cap");
                    let held: usize = f.t.clients.iter().map(|(_, c)| c.ids().len()).sum();
                    assert_eq!(lookups, held, "open slab entries and client ids differ");
                }
            }
        }
        let stats = f.t.finish();
        assert_eq!(stats.expanded_lookups, rounds, "walks split or lost");
        assert_eq!(stats.logical_lookups, rounds + u64::from(one_shot));
        assert_eq!(f.t.expanded.len(), rounds as usize);
        for (round, l) in f.t.expanded.iter().enumerate() {
            assert_eq!(l.base, format!("api{round}.example"));
            assert_eq!(
                l.first_name,
                format!("api{round}.example.default.svc.cluster.local")
            );
            assert_eq!((l.queries, l.negative), (4, 3), "{l:?}");
        }
    }

    /// A transaction keeps where its lookup is in the slab. Once that lookup is closed
    /// (its client evicted) and its entry reused by another client's lookup, a late
    /// answer to the old transaction must not land in the new lookup.
    #[test]
    fn a_late_answer_does_not_reach_a_lookup_that_reused_the_entry() {
        const CAP: usize = 4;
        let mut f = Exchanges::new(CAP);
        let server: Endpoint = (IpAddr::from([10, 96, 0, 10]), 53);
        let old: Endpoint = (IpAddr::from([10, 244, 0, 1]), 40_000);
        // The old client's query, left unanswered.
        let q = message(0x0bad, "late.example", None);
        f.t.on_message(0, old, server, &Message::parse(&q).unwrap(), 1, 1, false);
        let at = f.t.txns.values().next().unwrap().lookup();
        // CAP new clients: the old one is evicted, its lookup closed and its entry freed;
        // the next new lookup takes the entry.
        for i in 0..CAP {
            let client = (IpAddr::from([10, 245, 0, i as u8]), 50_000);
            f.exchange(client, &format!("svc{i}.example"), 0, 1);
        }
        assert!(
            f.t.slab.find(at).is_none(),
            "the closed lookup is still found"
        );
        let reused = f.t.slab.get(at.id).unwrap();
        assert_ne!(reused.serial, LookupSlab::FREE, "the entry was not reused");
        let (serial, pkts) = (reused.serial, reused.n_pkts);
        // The late answer: counted as a response, recorded in no lookup.
        let r = message(0x0bad, "late.example", Some((0, 1)));
        f.t.on_message(0, server, old, &Message::parse(&r).unwrap(), 99, 99, false);
        let reused = f.t.slab.get(at.id).unwrap();
        assert_eq!((reused.serial, reused.n_pkts), (serial, pkts));
        assert!(reused.pkts.iter().take(usize::from(pkts)).all(|&p| p != 99));
        // Every lookup was closed once: the evicted one and the CAP new ones.
        let stats = f.t.finish();
        assert_eq!(stats.logical_lookups, 1 + CAP as u64);
        assert_eq!(f.t.slab.free.len(), f.t.slab.items.len(), "an entry leaked");
    }

    /// A client's lookup ids keep their order through removals and stop at the cap.
    #[test]
    fn client_ids_keep_their_order_and_cap() {
        let mut c = Client::default();
        for id in 0..LOOKUPS_PER_CLIENT as u32 {
            assert!(c.push(id * 10));
        }
        assert!(!c.push(999), "a ninth lookup was taken");
        assert_eq!(c.remove(0), Some(0));
        assert_eq!(c.remove(2), Some(30));
        assert_eq!(c.remove(LOOKUPS_PER_CLIENT), None);
        assert_eq!(c.ids(), &[10, 20, 40, 50, 60, 70]);
        assert!(c.push(80));
        assert_eq!(c.ids(), &[10, 20, 40, 50, 60, 70, 80]);
    }

    /// The label-by-label form `leading_common_labels` replaced.
    fn leading_common_labels_split<'s>(a: &'s str, b: &str) -> &'s str {
        let mut end = 0;
        let mut ai = a.split('.');
        let mut bi = b.split('.');
        let mut first = true;
        loop {
            match (ai.next(), bi.next()) {
                (Some(x), Some(y)) if x == y && !x.is_empty() => {
                    end += x.len() + usize::from(!first);
                    first = false;
                }
                _ => break,
            }
        }
        &a[..end]
    }

    #[test]
    fn leading_common_labels_equals_the_split_form() {
        let names = [
            "",
            ".",
            "..",
            "a",
            "a.",
            ".a",
            "a..b",
            "a..c",
            "ab",
            "a.b",
            "a.bc",
            "a.b.c",
            "a.b.c.",
            "api1.example.test",
            "api1.example.test.default.svc.cluster.local",
            "api1.example.test.svc.cluster.local",
            "api12.example.test",
            "api1.example.tests",
            "api1.example",
            "API1.example.test",
        ];
        for a in names {
            for b in names {
                assert_eq!(
                    a.get(..leading_common_labels(a.as_bytes(), b.as_bytes())),
                    Some(leading_common_labels_split(a, b)),
                    "{a:?} {b:?}"
                );
            }
        }
    }

    /// The fast name writer gives exactly what `write_dotted` into a `NameBuf` gives,
    /// escapes and the cut of an over-long name included.
    #[test]
    fn name_buf_from_name_equals_write_dotted() {
        let long: Vec<u8> = (0u8..63).map(|i| i.wrapping_mul(37)).collect();
        let cases: Vec<Vec<&[u8]>> = vec![
            vec![b"api", b"Example", b"TEST"],
            vec![],
            vec![
                b"a.b",
                b"c\\d",
                b"sp ace",
                b"\x00\x07\x09\x0a\x63\x64\x7f\xff",
            ],
            // 255 bytes on the wire; over 288 once escaped, so both writers must cut.
            vec![&long, &long, &long, &long[..61]],
            vec![b"\x01\x02", &long, &long, &long[..58]],
            vec![&long, b"\xc8\xc8", &long, &long[..58]],
            // Plain names (the one-pass case): mixed case, one label, at the longest.
            vec![
                b"Api857", b"Example", b"test", b"default", b"svc", b"Cluster", b"local",
            ],
            vec![b"x"],
            vec![&[b'a'; 63], &[b'B'; 63], &[b'c'; 63], &[b'D'; 61]],
            // Plain until the last byte.
            vec![b"api", b"example", b"tes~\x7f"],
        ];
        for labels in cases {
            let bytes = query(&labels);
            let msg = netdiag_wire::dns::Message::parse(&bytes).unwrap();
            let q = msg.question().unwrap();
            let mut slow = NameBuf::new();
            let _ = q.name.write_dotted(&mut slow);
            let fast = NameBuf::from_name(&q.name);
            assert_eq!(fast.as_str(), slow.as_str(), "{labels:?}");
            assert_eq!(fast.len, slow.len);
            let mut fused = NameBuf::new();
            let hash = fused.put_name_hashed(&q.name);
            assert_eq!(fused.as_str(), slow.as_str(), "{labels:?}");
            assert_eq!(fused.len, slow.len);
            assert_eq!(hash, q.name.hash_lowercase(), "{labels:?}");
        }
    }
}
