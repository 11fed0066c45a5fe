//! The streaming reader for pcap and pcapng.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use crate::Error;

/// pcapng Section Header Block type; also the first four bytes of a pcapng file.
pub(crate) const BT_SHB: u32 = 0x0A0D_0D0A;
/// pcapng Interface Description Block type.
pub(crate) const BT_IDB: u32 = 1;
/// pcapng obsolete Packet Block type.
pub(crate) const BT_OPB: u32 = 2;
/// pcapng Simple Packet Block type.
pub(crate) const BT_SPB: u32 = 3;
/// pcapng Enhanced Packet Block type.
pub(crate) const BT_EPB: u32 = 6;
/// pcapng byte-order magic.
pub(crate) const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

/// libpcap's and Wireshark's maximum snapshot length for ordinary link types
/// (`MAXIMUM_SNAPLEN` in tcpdump/libpcap, `WTAP_MAX_PACKET_SIZE_STANDARD` in wiretap).
pub const MAXIMUM_SNAPLEN: u32 = 262_144;

/// The largest pcapng block accepted, whatever its type: Wireshark's limit for the
/// link type with the largest packets (D-Bus, 128 MiB) plus 1 MiB for headers and
/// options. Blocks are read incrementally, so a lying length costs no allocation
/// beyond the bytes actually present.
pub const MAX_BLOCK_LEN: u32 = 128 * 1024 * 1024 + 1024 * 1024;

/// The largest captured length accepted for one packet of `link_type`.
///
/// The same table as Wireshark's `wtap_max_snaplen_for_encap`: [`MAXIMUM_SNAPLEN`]
/// (256 KiB) except for the link types whose packets are legitimately bigger
/// (D-Bus and USBPcap 128 MiB, EBHSCR 8 MiB). A record claiming more is an error
/// ([`Error::RecordTooLong`]), which is also what `tshark -r` and `tcpdump -r` report.
pub fn max_record_len(link_type: u32) -> u32 {
    match link_type {
        // LINKTYPE_DBUS, LINKTYPE_USBPCAP
        231 | 249 => 128 * 1024 * 1024,
        // LINKTYPE_EBHSCR
        279 => 8 * 1024 * 1024,
        _ => MAXIMUM_SNAPLEN,
    }
}

/// The container format of a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Classic libpcap format (`tcpdump -w`), microsecond or nanosecond timestamps.
    Pcap,
    /// pcapng (Wireshark's default): sections, interfaces, options, comments.
    Pcapng,
}

/// One capture interface: the synthesized single interface of a pcap file, or one
/// Interface Description Block of a pcapng file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Interface {
    /// The `LINKTYPE_*` value (for pcap the low 16 bits of the header's link-type field).
    pub link_type: u32,
    /// The snapshot length (0 in pcapng means "no limit").
    pub snaplen: u32,
    /// `if_name` (pcapng only).
    pub name: Option<String>,
    /// `if_description` (pcapng only).
    pub description: Option<String>,
    /// Nanoseconds per timestamp tick: 1000 for microseconds, 1 for nanoseconds, 0 for
    /// a resolution finer than a nanosecond or not a whole number of nanoseconds
    /// (see [`ts_units_per_second`](Self::ts_units_per_second) for the exact value).
    pub ts_resolution_ns: u64,
    /// Timestamp ticks per second (1 000 000 by default; from `if_tsresol`, power of 10 or 2).
    pub ts_units_per_second: u64,
    /// `if_tsoffset`: seconds added to every timestamp of this interface.
    pub ts_offset_s: i64,
    /// Length of the frame check sequence at the end of each packet, when the file says:
    /// pcap's FCS bits in the link-type field, or pcapng's `if_fcslen`.
    pub fcs_len: Option<u8>,
    /// The link-type field exactly as stored (pcap: with the FCS bits; write this back
    /// with [`PcapWriter`](crate::PcapWriter) to reproduce the header).
    pub raw_link_type: u32,
    /// pcapng section this interface belongs to (0 for pcap).
    pub section: u32,
}

impl Interface {
    fn new(link_type: u32, snaplen: u32, section: u32) -> Self {
        Interface {
            link_type,
            snaplen,
            name: None,
            description: None,
            ts_resolution_ns: 1000,
            ts_units_per_second: 1_000_000,
            ts_offset_s: 0,
            fcs_len: None,
            raw_link_type: link_type,
            section,
        }
    }

    /// Whether timestamps of this interface carry nanosecond (or finer) precision.
    pub fn is_nanosecond(&self) -> bool {
        self.ts_units_per_second > 1_000_000
    }

    /// Converts a timestamp in ticks of this interface to nanoseconds since the epoch,
    /// saturating at 0 and `u64::MAX`.
    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        let units = u128::from(self.ts_units_per_second.max(1));
        let ns = i128::try_from(u128::from(ticks) * 1_000_000_000 / units).unwrap_or(i128::MAX);
        let total = ns.saturating_add(i128::from(self.ts_offset_s) * 1_000_000_000);
        u64::try_from(total.max(0)).unwrap_or(u64::MAX)
    }
}

/// One packet, borrowed from the reader's internal buffer until the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Index into [`Reader::interfaces`].
    pub interface: u32,
    /// The `LINKTYPE_*` value of that interface.
    pub link_type: u32,
    /// Nanoseconds since the Unix epoch (converted from the interface's resolution and offset).
    pub timestamp_ns: u64,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The packet's length on the wire.
    pub original_len: u32,
    /// The first `opt_comment` of an EPB (or OPB), if any and valid UTF-8.
    pub comment: Option<&'a str>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Pcap {
        big_endian: bool,
    },
    Pcapng {
        big_endian: bool,
        section_base: usize,
    },
}

/// Streaming reader over any [`Read`] (a file, stdin, a pipe).
///
/// Reads the source in large blocks into one reused window and hands each record out in
/// place: after the first block no allocation and no copy happens on the common path. Length fields are never trusted with an
/// allocation: a record is capped at [`max_record_len`] of its link type (a pcapng
/// block at [`MAX_BLOCK_LEN`]), and the buffer only grows as bytes actually arrive.
///
/// After an error, [`next_packet`](Self::next_packet) returns `Ok(None)`: every packet
/// returned before the error was complete.
#[derive(Debug)]
pub struct Reader<R: Read> {
    inner: R,
    name: String,
    offset: u64,
    format: Format,
    state: State,
    version: (u16, u16),
    /// Read-ahead window: bytes `win[pos..end]` came from `inner` (or are the mapped
    /// file's) and are not consumed yet. Records are read from `inner` in large blocks
    /// and handed out in place, so reading a packet costs no copy and no system call on
    /// the common path.
    win: Window,
    pos: usize,
    end: usize,
    /// Where the body of the last [`Reader::read_body`] starts in `win`.
    body_at: usize,
    interfaces: Vec<Interface>,
    sections: u32,
    packets: u64,
    done: bool,
    /// Record slots, reused from batch to batch: the records of the last
    /// [`Reader::next_batch`] or [`Reader::next_packet`] are `batch[..batch_len]`, the
    /// rest are stale. Writing a record into a slot, rather than pushing it, keeps the
    /// per-record loop free of capacity checks.
    batch: Vec<Rec>,
    /// How many of [`Reader::batch`]'s slots the last batch filled.
    batch_len: usize,
}

/// The bytes records are handed out from.
#[derive(Debug)]
enum Window {
    /// A buffer of ours that reads from the source fill.
    Read(Vec<u8>),
    /// Bytes handed over whole ([`Reader::from_bytes`]), read in place.
    Shared(Arc<[u8]>),
    /// The whole file, mapped ([`Reader::open`]): nothing is read or copied. `released`
    /// bytes from its start are already consumed and given back (see
    /// [`Reader::release_consumed`]).
    Mapped { map: memmap2::Mmap, released: usize },
}

/// How far ahead of the record it hands out a walk of bytes read in place (a mapped file,
/// [`Reader::from_bytes`]) asks for the bytes to come. Each record's place is known only
/// once the record before it is read, so without the hint every record waits on memory
/// in turn when records span more cache lines than the hardware fetches ahead by
/// itself: a walk of long records runs at memory latency rather than bandwidth. On the
/// benchmarks' 1k-flow mix (527 bytes a record, DRAM-resident) the bare walk took 114 ns
/// a record without the hint and 58 ns with it (`cargo run --release -p netdiag-benches
/// --example wire_quick`, its walk floor), about what reading the bytes in order takes
/// on this machine (~64 ns a record); `analyze` of a 300,000-packet capture of 1,000
/// long TCP flows went from 140 to 113 ms. Of the distances tried (256 to 4096 bytes),
/// 512 was among the best in both. Short records (the 1M-packet mix, 210 bytes) neither
/// gain nor lose.
const PREFETCH_AHEAD: usize = 512;

/// Hints the processor to bring `window[from..to]` into the cache (nothing past the
/// window's end; nothing at all off x86-64). It changes no result, only when bytes arrive.
#[inline(always)]
fn prefetch(window: &[u8], from: usize, to: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let to = to.min(window.len());
        let mut at = from;
        while at < to {
            // SAFETY: `at < window.len()`, so the pointer lies inside `window`; a
            // prefetch reads nothing architecturally and never faults.
            #[allow(unsafe_code)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(window.as_ptr().add(at).cast());
            }
            at += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (window, from, to);
}

/// Walks the classic pcap records that lie whole in `window` from `pos` on, at most
/// `max`, stopping before one longer than its link type allows: `each` gets every
/// record's place and fields. Returns the position after the last one and how many.
/// With `ahead` > 0, every record asks for the bytes `ahead` past its own to come
/// ([`PREFETCH_AHEAD`]). Inlined with constant byte order and resolution where it is
/// called.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pcap_walk(
    window: &[u8],
    pos: usize,
    max: usize,
    big: bool,
    frac_ns: u64,
    link_type: u32,
    ahead: usize,
    mut each: impl FnMut(Rec),
) -> (usize, usize) {
    let max_len = max_record_len(link_type);
    let end = window.len();
    let Some(mut rest) = window.get(pos..) else {
        return (pos, 0);
    };
    let mut n = 0;
    while n < max {
        let Some((h, after)) = rest.split_first_chunk::<16>() else {
            break;
        };
        let h = PcapRecordHeader::parse(h, big);
        if h.caplen > max_len {
            break;
        }
        let len = h.caplen as usize;
        let Some(next) = after.get(len..) else {
            break;
        };
        let start = end - after.len();
        if ahead > 0 {
            prefetch(window, start - 16 + ahead, start + len + ahead);
        }
        rest = next;
        each(Rec {
            interface: 0,
            link_type,
            timestamp_ns: h.timestamp_ns(frac_ns),
            data: (start, start + len),
            original_len: h.original_len,
            comment: None,
        });
        n += 1;
    }
    (end - rest.len(), n)
}

impl Window {
    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        match self {
            Window::Read(v) => v,
            Window::Shared(b) => b,
            Window::Mapped { map, .. } => map,
        }
    }

    /// [`PREFETCH_AHEAD`] for bytes read in place, 0 for a buffer a read has just filled
    /// (its bytes are in the cache already).
    #[inline(always)]
    fn ahead(&self) -> usize {
        match self {
            Window::Read(_) => 0,
            Window::Shared(_) | Window::Mapped { .. } => PREFETCH_AHEAD,
        }
    }
}

/// Consumed bytes of a mapped file given back at a time: the pages of a file read in
/// place count in the process's resident set until then.
const RELEASE_EVERY: usize = 2 << 20;

/// `file` mapped into memory, if it is a regular file with at least one byte and the
/// kernel maps it.
#[allow(unsafe_code)]
fn map_file(file: &File) -> Option<memmap2::Mmap> {
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() == 0 {
        return None;
    }
    // SAFETY: the mapping is read-only and private, and this process never writes the
    // file. Another process that truncates it while it is read ends this one with SIGBUS
    // when a page past the new end is touched, as it would any reader of a mapped file
    // (ripgrep takes the same risk for large files); appending to it (a capture still
    // being written) changes nothing: only the length seen at `open` is read.
    let map = unsafe { memmap2::MmapOptions::new().map(file) }.ok()?;
    // Read ahead harder and drop behind: the records are read once, in order.
    let _ = map.advise(memmap2::Advice::Sequential);
    Some(map)
}

/// Where one record lies in the read-ahead window, and what [`Packet`] says of it.
#[derive(Clone, Copy, Debug, Default)]
struct Rec {
    interface: u32,
    link_type: u32,
    timestamp_ns: u64,
    data: (usize, usize),
    original_len: u32,
    comment: Option<(usize, usize)>,
}

impl Rec {
    /// The packet, its bytes taken from `win`.
    #[inline]
    fn packet(self, win: &[u8]) -> Packet<'_> {
        Packet {
            interface: self.interface,
            link_type: self.link_type,
            timestamp_ns: self.timestamp_ns,
            data: win.get(self.data.0..self.data.1).unwrap_or(&[]),
            original_len: self.original_len,
            comment: self
                .comment
                .and_then(|(s, e)| win.get(s..e))
                .and_then(|c| std::str::from_utf8(c).ok()),
        }
    }
}

/// Several packets read at once ([`Reader::next_batch`]), all borrowing the reader's
/// buffer, so a caller can look at the next few packets before working on the first.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    win: &'a [u8],
    recs: &'a [Rec],
}

impl<'a> Batch<'a> {
    /// How many packets the batch holds (0 only at the end of the capture).
    pub fn len(&self) -> usize {
        self.recs.len()
    }

    /// Whether the batch holds no packet: the capture has ended.
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// The packets, in capture order.
    pub fn iter(&self) -> impl Iterator<Item = Packet<'a>> + '_ {
        let win = self.win;
        self.recs.iter().map(move |r| r.packet(win))
    }
}

/// Size of the read-ahead window (and of each read from the source while records fit).
const WINDOW: usize = 256 * 1024;

impl Reader<BufReader<File>> {
    /// Opens a capture file; errors name the path. A regular file is read in place
    /// (mapped into memory: no read and no copy per block), as it is when opened; any
    /// other file (a FIFO, a device) or one that cannot be mapped is read in blocks.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| Error::Open {
            name: name.clone(),
            offset: 0,
            source,
        })?;
        let win = match map_file(&file) {
            Some(map) => Window::Mapped { map, released: 0 },
            None => Window::Read(Vec::new()),
        };
        Reader::build(BufReader::with_capacity(64 * 1024, file), name, win)
    }

    /// Whether the file is read in place ([`Reader::open`]).
    pub fn is_mapped(&self) -> bool {
        matches!(self.win, Window::Mapped { .. })
    }
}

impl Reader<io::Empty> {
    /// Reads a capture held in memory in place, as [`Reader::open`] reads a file: no
    /// copy and no read per block. `name` is what errors call the source (a path the
    /// bytes came from, a URL). `bytes` is taken as it is when given (a `Vec<u8>` is
    /// moved into an `Arc<[u8]>`, which copies it once; an `Arc<[u8]>` is shared).
    ///
    /// ```
    /// use netdiag_pcapio::{PcapWriter, Reader};
    ///
    /// # fn main() -> Result<(), netdiag_pcapio::Error> {
    /// let mut w = PcapWriter::new(Vec::new(), 1, 65_535, true)?;
    /// w.write_packet(1_700_000_000_000_000_000, &[0u8; 60], 60)?;
    /// let mut r = Reader::from_bytes(w.into_inner()?, "in-memory.pcap")?;
    /// assert_eq!(r.next_packet()?.map(|p| p.data.len()), Some(60));
    /// assert!(r.next_packet()?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>, name: impl Into<String>) -> Result<Self, Error> {
        Reader::build(io::empty(), name.into(), Window::Shared(bytes.into()))
    }
}

impl Reader<BufReader<io::Stdin>> {
    /// Reads a capture from standard input (`tcpdump -r -`); errors name `<stdin>`.
    pub fn stdin() -> Result<Self, Error> {
        Reader::with_name(BufReader::with_capacity(64 * 1024, io::stdin()), "<stdin>")
    }
}

/// `N` bytes at `at`, zeros past the end (callers check lengths before trusting a field).
#[inline]
fn bytes_at<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = at.checked_add(N).and_then(|end| b.get(at..end)) {
        a.copy_from_slice(s);
    }
    a
}

#[inline]
fn u16_at(b: &[u8], at: usize, big: bool) -> u16 {
    let a = bytes_at(b, at);
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

#[inline]
fn u32_at(b: &[u8], at: usize, big: bool) -> u32 {
    let a = bytes_at(b, at);
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

#[inline]
fn u64_at(b: &[u8], at: usize, big: bool) -> u64 {
    let a = bytes_at(b, at);
    if big {
        u64::from_be_bytes(a)
    } else {
        u64::from_le_bytes(a)
    }
}

/// Rounds up to a multiple of 4 (pcapng padding).
fn pad4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// One pcapng option: code and the byte range of its value inside the scanned slice.
struct Opt {
    code: u16,
    start: usize,
    len: usize,
}

/// Iterates over pcapng options in `b[start..end]`; stops at `opt_endofopt`, at the end,
/// or at an option that does not fit (options are metadata: a damaged one ends the list
/// rather than losing the packet).
struct Options<'a> {
    b: &'a [u8],
    at: usize,
    end: usize,
    big: bool,
}

impl Iterator for Options<'_> {
    type Item = Opt;
    fn next(&mut self) -> Option<Opt> {
        if self.at.checked_add(4)? > self.end {
            return None;
        }
        let code = u16_at(self.b, self.at, self.big);
        let len = usize::from(u16_at(self.b, self.at + 2, self.big));
        if code == 0 {
            return None;
        }
        let start = self.at + 4;
        if start + len > self.end {
            return None;
        }
        self.at = start + pad4(len);
        Some(Opt { code, start, len })
    }
}

fn options(b: &[u8], start: usize, end: usize, big: bool) -> Options<'_> {
    Options {
        b,
        at: start,
        end: end.min(b.len()),
        big,
    }
}

fn opt_string(b: &[u8], o: &Opt) -> Option<String> {
    let v = b.get(o.start..o.start + o.len)?;
    // Writers often include a trailing NUL although the spec says not to.
    let v = v.strip_suffix(&[0]).unwrap_or(v);
    Some(String::from_utf8_lossy(v).into_owned())
}

/// The 16-byte header of a classic pcap record, its fields in host order.
#[derive(Clone, Copy)]
struct PcapRecordHeader {
    /// Seconds since the epoch.
    sec: u32,
    /// Microseconds or nanoseconds within the second (as the file header says).
    frac: u32,
    /// Bytes captured, which follow the header.
    caplen: u32,
    /// The packet's length on the wire.
    original_len: u32,
}

impl PcapRecordHeader {
    /// The header from its bytes in the file's byte order.
    #[inline(always)]
    fn parse(h: &[u8; 16], big: bool) -> Self {
        PcapRecordHeader {
            sec: u32_at(h, 0, big),
            frac: u32_at(h, 4, big),
            caplen: u32_at(h, 8, big),
            original_len: u32_at(h, 12, big),
        }
    }

    /// Nanoseconds since the epoch, `frac_ns` nanoseconds per tick of `frac`, saturating.
    #[inline(always)]
    fn timestamp_ns(self, frac_ns: u64) -> u64 {
        u64::from(self.sec)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(self.frac).saturating_mul(frac_ns))
    }
}

/// What a pcapng block turned out to be.
enum Block {
    /// A packet: everything needed to build a [`Packet`] from `buf`.
    Packet {
        interface: u32,
        timestamp_ns: u64,
        data: (usize, usize),
        original_len: u32,
        comment: Option<(usize, usize)>,
    },
    /// Metadata or a block we skip.
    Other,
}

impl<R: Read> Reader<R> {
    /// Reads the file header (pcap) or the first section header (pcapng) from `r`.
    ///
    /// Errors name the source `<input>`; use [`Reader::with_name`] to name it from the start.
    pub fn new(r: R) -> Result<Self, Error> {
        Reader::with_name(r, "<input>")
    }

    /// Like [`Reader::new`], with the name used in error messages (a path, `<stdin>`).
    pub fn with_name(r: R, name: impl Into<String>) -> Result<Self, Error> {
        Reader::build(r, name.into(), Window::Read(Vec::new()))
    }

    /// A reader of `r`, or of the mapped file `win` (then `r` is never read).
    fn build(r: R, name: String, win: Window) -> Result<Self, Error> {
        let end = win.bytes().len();
        let mut reader = Reader {
            inner: r,
            name,
            offset: 0,
            format: Format::Pcap,
            state: State::Pcap { big_endian: false },
            version: (0, 0),
            win,
            pos: 0,
            end,
            body_at: 0,
            interfaces: Vec::new(),
            sections: 0,
            packets: 0,
            done: false,
            batch: Vec::new(),
            batch_len: 0,
        };
        reader.read_file_header()?;
        Ok(reader)
    }

    /// Sets the name used in later error messages.
    pub fn with_source_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The container format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The interfaces seen so far: the one synthesized interface of a pcap file, or every
    /// IDB of every pcapng section read so far (sections do not reuse indices).
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// The version in the file header (pcap) or the current section header (pcapng).
    pub fn version(&self) -> (u16, u16) {
        self.version
    }

    /// Whether the current section (or the pcap file) is stored big-endian.
    pub fn is_big_endian(&self) -> bool {
        match self.state {
            State::Pcap { big_endian } | State::Pcapng { big_endian, .. } => big_endian,
        }
    }

    /// Bytes consumed from the source so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Packets returned so far.
    pub fn packets_read(&self) -> u64 {
        self.packets
    }

    /// The source name used in error messages.
    pub fn source_name(&self) -> &str {
        &self.name
    }

    /// Bytes currently reserved by the read-ahead buffer (it grows only with data
    /// actually read, never with a length field alone).
    pub fn buffer_capacity(&self) -> usize {
        match &self.win {
            Window::Read(v) => v.capacity(),
            Window::Shared(_) | Window::Mapped { .. } => 0,
        }
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn read_err(&self, offset: u64, source: io::Error) -> Error {
        Error::Read {
            name: self.name.clone(),
            offset,
            source,
        }
    }

    fn malformed(&self, offset: u64, what: &'static str, reason: impl Into<String>) -> Error {
        Error::Malformed {
            name: self.name.clone(),
            offset,
            what,
            reason: reason.into(),
        }
    }

    /// Makes `need` unconsumed bytes available in `win[pos..end]` (fewer at the end of the
    /// source): moves the unconsumed tail to the front, and grows the window only when it
    /// is full of bytes that actually arrived, so a lying length field costs no
    /// allocation beyond twice the file's real size.
    #[inline]
    fn fill(&mut self, need: usize) -> io::Result<()> {
        if self.end - self.pos >= need {
            return Ok(());
        }
        self.refill(need)
    }

    /// [`Reader::fill`] when the window holds too little: out of line, so that the
    /// per-record check above is inlined where the window already has the bytes.
    #[cold]
    #[inline(never)]
    fn refill(&mut self, need: usize) -> io::Result<()> {
        // A mapped file or bytes handed over are all there already: what is missing is
        // past their end.
        let Window::Read(win) = &mut self.win else {
            return Ok(());
        };
        if win.len() - self.pos < need && self.pos > 0 {
            win.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        while self.end - self.pos < need {
            if self.end == win.len() {
                let grown = (win.len() * 2).clamp(WINDOW, usize::MAX);
                win.resize(grown, 0);
            }
            match self.inner.read(&mut win[self.end..]) {
                Ok(0) => break,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads exactly `out.len()` bytes or reports how many there were.
    #[inline]
    fn read_small(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        let at = self.offset;
        self.fill(out.len()).map_err(|e| self.read_err(at, e))?;
        let got = out.len().min(self.end - self.pos);
        out[..got].copy_from_slice(&self.win.bytes()[self.pos..self.pos + got]);
        self.pos += got;
        self.offset += got as u64;
        Ok(got)
    }

    /// Consumes `n` bytes, readable afterwards as [`Reader::body`]; returns how many
    /// arrived (less at the end of the source).
    #[inline]
    fn read_body(&mut self, n: usize) -> Result<usize, Error> {
        let at = self.offset;
        self.fill(n).map_err(|e| self.read_err(at, e))?;
        let got = n.min(self.end - self.pos);
        self.body_at = self.pos;
        self.pos += got;
        self.offset += got as u64;
        Ok(got)
    }

    /// The bytes of the last [`Reader::read_body`] (and what follows them in the window).
    #[inline]
    fn body(&self) -> &[u8] {
        self.win.bytes().get(self.body_at..self.end).unwrap_or(&[])
    }

    fn read_file_header(&mut self) -> Result<(), Error> {
        let mut magic = [0u8; 4];
        let got = self.read_small(&mut magic)?;
        if got == 0 {
            return Err(Error::Empty {
                name: self.name.clone(),
                offset: 0,
            });
        }
        if got < 4 {
            return Err(Error::TruncatedFileHeader {
                name: self.name.clone(),
                offset: 0,
                needed: 4,
                got: got as u64,
            });
        }
        let m = u32::from_be_bytes(magic);
        let (big_endian, nanos) = match m {
            0xA1B2_C3D4 => (true, false),
            0xD4C3_B2A1 => (false, false),
            0xA1B2_3C4D => (true, true),
            0x4D3C_B2A1 => (false, true),
            BT_SHB => {
                self.format = Format::Pcapng;
                self.state = State::Pcapng {
                    big_endian: false,
                    section_base: 0,
                };
                return self.read_shb(0, true);
            }
            _ => {
                return Err(Error::NotCapture {
                    name: self.name.clone(),
                    offset: 0,
                    magic: m,
                });
            }
        };
        let mut h = [0u8; 20];
        let got = self.read_small(&mut h)?;
        if got < h.len() {
            return Err(Error::TruncatedFileHeader {
                name: self.name.clone(),
                offset: 0,
                needed: 24,
                got: 4 + got as u64,
            });
        }
        let major = u16_at(&h, 0, big_endian);
        let minor = u16_at(&h, 2, big_endian);
        // Like libpcap and wiretap: versions before 2 are a different, archaic format.
        if major < 2 {
            return Err(self.malformed(
                0,
                "pcap file header",
                format!(
                    "version {major}.{minor} is older than 2.x, an archaic format no tool reads"
                ),
            ));
        }
        let snaplen = u32_at(&h, 12, big_endian);
        let raw = u32_at(&h, 16, big_endian);
        let mut iface = Interface::new(raw & 0xFFFF, snaplen, 0);
        iface.raw_link_type = raw;
        // Bit 26 says the FCS length in bits 28..32 is meaningful.
        if raw & 0x0400_0000 != 0 {
            iface.fcs_len = u8::try_from(raw >> 28).ok();
        }
        if nanos {
            iface.ts_resolution_ns = 1;
            iface.ts_units_per_second = 1_000_000_000;
        }
        self.version = (major, minor);
        self.state = State::Pcap { big_endian };
        self.interfaces.push(iface);
        self.sections = 1;
        Ok(())
    }

    /// Reads a section header block whose type field (4 bytes) has been consumed at
    /// `start`. `first` is true for the file header.
    fn read_shb(&mut self, start: u64, first: bool) -> Result<(), Error> {
        let mut h = [0u8; 8];
        let got = self.read_small(&mut h)?;
        if got < h.len() {
            return Err(self.truncated_header(first, start, 12, 4 + got as u64));
        }
        let big = match u32::from_be_bytes([h[4], h[5], h[6], h[7]]) {
            BYTE_ORDER_MAGIC => true,
            0x4D3C_2B1A => false,
            other => {
                return Err(self.malformed(
                    start,
                    "pcapng section header",
                    format!("byte-order magic 0x{other:08x} is neither 0x1a2b3c4d nor 0x4d3c2b1a"),
                ));
            }
        };
        let len = u32_at(&h, 0, big);
        if len < 28 || len % 4 != 0 || len > MAX_BLOCK_LEN {
            return Err(self.malformed(
                start,
                "pcapng section header",
                format!("block length {len} is not a multiple of 4 between 28 and {MAX_BLOCK_LEN}"),
            ));
        }
        // Rest: version (4), section length (8), options, trailing length (4).
        let rest = len as usize - 12;
        let got = self.read_body(rest)?;
        if got < rest {
            return Err(self.truncated_header(first, start, u64::from(len), 12 + got as u64));
        }
        let b = &self.body()[..rest];
        if u32_at(b, rest - 4, big) != len {
            let trailer = u32_at(b, rest - 4, big);
            return Err(self.malformed(
                start,
                "pcapng section header",
                format!("trailing length {trailer} differs from leading length {len}"),
            ));
        }
        let major = u16_at(b, 0, big);
        let minor = u16_at(b, 2, big);
        if major != 1 {
            return Err(self.malformed(
                start,
                "pcapng section header",
                format!("version {major}.{minor} is not 1.x"),
            ));
        }
        self.version = (major, minor);
        self.state = State::Pcapng {
            big_endian: big,
            section_base: self.interfaces.len(),
        };
        self.sections += 1;
        Ok(())
    }

    fn truncated_header(&self, first: bool, offset: u64, needed: u64, got: u64) -> Error {
        if first {
            Error::TruncatedFileHeader {
                name: self.name.clone(),
                offset,
                needed,
                got,
            }
        } else {
            Error::TruncatedRecordHeader {
                name: self.name.clone(),
                offset,
                needed,
                got,
                packets: self.packets,
            }
        }
    }

    /// The next packet, or `None` at the end of the capture.
    ///
    /// The packet borrows the reader's buffer, which is reused by the next call: no
    /// allocation per packet after the first few.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, Error> {
        Ok(self.next_packet_with_interfaces()?.map(|(p, _)| p))
    }

    /// Like [`next_packet`](Self::next_packet), also lending the interface list (which the
    /// packet's block may have just extended), since the packet keeps the reader borrowed.
    pub fn next_packet_with_interfaces(
        &mut self,
    ) -> Result<Option<(Packet<'_>, &[Interface])>, Error> {
        self.fill_batch(1)?;
        Ok(self
            .batch_recs()
            .first()
            .map(|r| (r.packet(self.win.bytes()), &self.interfaces[..])))
    }

    /// Up to `max` packets (at least one unless the capture has ended), as
    /// [`next_packet`](Self::next_packet) would return them one by one: the records that
    /// lie whole in the read-ahead window, or, when none does, the next record (read
    /// from the source) and those after it in the window. An error comes with no
    /// packet: the packets before it came in earlier batches.
    pub fn next_batch(&mut self, max: usize) -> Result<Batch<'_>, Error> {
        self.fill_batch(max)?;
        Ok(Batch {
            win: self.win.bytes(),
            recs: self.batch_recs(),
        })
    }

    /// Gives the pages of a mapped file that are consumed back, [`RELEASE_EVERY`] bytes
    /// at a time, so that the process's resident set does not grow by the file's size.
    /// Called where no record of an earlier batch or packet is borrowed any more.
    #[allow(unsafe_code)]
    #[inline]
    fn release_consumed(&mut self) {
        let Window::Mapped { map, released } = &mut self.win else {
            return;
        };
        if self.pos - *released < RELEASE_EVERY {
            return;
        }
        let upto = self.pos - self.pos % RELEASE_EVERY;
        // SAFETY: nothing borrows bytes before `pos` (this takes `&mut self`, which every
        // packet and batch borrows), and the mapping is read-only and private: once
        // dropped, a page that is touched again is mapped again from the page cache with
        // the same bytes. The range starts at a multiple of RELEASE_EVERY, page-aligned.
        let _ = unsafe {
            map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                *released,
                upto - *released,
            )
        };
        *released = upto;
    }

    /// The records of the last batch.
    #[inline]
    fn batch_recs(&self) -> &[Rec] {
        self.batch.get(..self.batch_len).unwrap_or(&[])
    }

    /// Fills [`Reader::batch`] with the records of [`Reader::next_batch`]; empty after an
    /// error.
    fn fill_batch(&mut self, max: usize) -> Result<(), Error> {
        self.batch_len = 0;
        self.release_consumed();
        let max = max.max(1);
        self.window_recs(max);
        if self.batch_len == 0 {
            let Some(r) = self.next_rec()? else {
                return Ok(());
            };
            match self.batch.first_mut() {
                Some(slot) => *slot = r,
                None => self.batch.push(r),
            }
            self.batch_len = 1;
            // No read between here and the batch's end: every record stays put.
            self.window_recs(max);
        }
        Ok(())
    }

    /// Appends to the batch the classic pcap records that lie whole in the window, up to
    /// `max` in all.
    ///
    /// The file's byte order and timestamp resolution are decided here, once a batch:
    /// each combination gets its own copy of the loop ([`Reader::pcap_window`] is inlined
    /// with constant arguments), so the loop itself neither tests nor swaps needlessly.
    #[inline]
    fn window_recs(&mut self, max: usize) {
        if self.done {
            return;
        }
        let State::Pcap { big_endian } = self.state else {
            return;
        };
        let (link_type, frac_ns) = self.pcap_interface();
        match (big_endian, frac_ns) {
            (false, 1000) => self.pcap_window(max, false, 1000, link_type),
            (false, 1) => self.pcap_window(max, false, 1, link_type),
            (true, 1000) => self.pcap_window(max, true, 1000, link_type),
            (true, 1) => self.pcap_window(max, true, 1, link_type),
            // The file header only sets microseconds or nanoseconds; any other value
            // still reads right, without the specialised copy.
            (big, frac_ns) => self.pcap_window(max, big, frac_ns, link_type),
        }
    }

    /// The link type and nanoseconds per timestamp tick of a classic pcap file.
    #[inline]
    fn pcap_interface(&self) -> (u32, u64) {
        match self.interfaces.first() {
            Some(i) => (i.link_type, i.ts_resolution_ns),
            None => (0, 1000),
        }
    }

    /// [`Reader::window_recs`] for one byte order and resolution: appends the classic pcap
    /// records whose header and body both lie in the window and whose length is
    /// acceptable, consumed and counted. It stops before anything else (a record that
    /// needs a read, the end, an error), which [`Reader::next_pcap`] then reads the same
    /// way. Positions stay in locals inside the loop and are stored back once.
    #[inline(always)]
    fn pcap_window(&mut self, max: usize, big: bool, frac_ns: u64, link_type: u32) {
        let ahead = self.win.ahead();
        let Some(window) = self.win.bytes().get(..self.end) else {
            return;
        };
        let first = self.batch_len;
        let (mut len, mut pos) = (first, self.pos);
        while len < max {
            if len >= self.batch.len() {
                // Out of slots: twice as many, as a push would grow.
                let grown = len.saturating_mul(2).max(4).min(max);
                self.batch.resize(grown, Rec::default());
            }
            let room = self.batch.len().min(max);
            let Some(slots) = self.batch.get_mut(len..room) else {
                break;
            };
            let (want, mut i) = (slots.len(), 0);
            let (next, got) = pcap_walk(window, pos, want, big, frac_ns, link_type, ahead, |r| {
                if let Some(slot) = slots.get_mut(i) {
                    *slot = r;
                }
                i += 1;
            });
            pos = next;
            len += got;
            if got < want {
                break;
            }
        }
        self.batch_len = len;
        self.offset += (pos - self.pos) as u64;
        self.packets += (len - first) as u64;
        self.pos = pos;
    }

    /// Calls `f` with the next packets, up to `max` of them (at least one unless the
    /// capture has ended), in the order and with the errors of
    /// [`next_batch`](Self::next_batch); returns how many (0 at the end). Each packet is
    /// handed over as soon as its record is read, so reading records and working on
    /// packets interleave: the next record's bytes arrive in the cache while `f` works
    /// on the one before (a batch walked first waits on memory once a record when the
    /// file is read in place). No packet outlives its call to `f`.
    pub fn for_each_packet(
        &mut self,
        max: usize,
        mut f: impl FnMut(Packet<'_>),
    ) -> Result<usize, Error> {
        self.release_consumed();
        let max = max.max(1);
        let mut n = 0;
        if let (false, State::Pcap { big_endian }) = (self.done, self.state) {
            let (link_type, frac_ns) = self.pcap_interface();
            let ahead = self.win.ahead();
            if let Some(window) = self.win.bytes().get(..self.end) {
                let (pos, got) = match (big_endian, frac_ns) {
                    (false, 1000) => {
                        pcap_walk(window, self.pos, max, false, 1000, link_type, ahead, |r| {
                            f(r.packet(window));
                        })
                    }
                    (big, frac_ns) => {
                        pcap_walk(window, self.pos, max, big, frac_ns, link_type, ahead, |r| {
                            f(r.packet(window));
                        })
                    }
                };
                self.offset += (pos - self.pos) as u64;
                self.packets += got as u64;
                self.pos = pos;
                n = got;
            }
        }
        if n == 0 {
            // Anything else (pcapng, a record that needs a read or is refused), one record
            // as `next_batch` reads it.
            self.fill_batch(1)?;
            if let Some(r) = self.batch_recs().first() {
                f(r.packet(self.win.bytes()));
                n = 1;
            }
        }
        Ok(n)
    }

    /// The next record, read from the source (through [`Reader::next_pcap`] or
    /// [`Reader::next_pcapng`]): what follows when [`Reader::window_recs`] finds no whole
    /// record in the window.
    fn next_rec(&mut self) -> Result<Option<Rec>, Error> {
        if self.done {
            return Ok(None);
        }
        let r = match self.state {
            State::Pcap { big_endian } => self.next_pcap(big_endian),
            State::Pcapng { .. } => self.next_pcapng(),
        };
        match r {
            Ok(Some(Block::Packet {
                interface,
                timestamp_ns,
                data,
                original_len,
                comment,
            })) => {
                self.packets += 1;
                let link_type = self
                    .interfaces
                    .get(interface as usize)
                    .map_or(0, |i| i.link_type);
                // `data` and `comment` are offsets into the body (`win[body_at..end]`); a
                // range outside it reads as no bytes.
                let at = self.body_at;
                let body_len = self.end.saturating_sub(at);
                let inside =
                    |(s, e): (usize, usize)| (s <= e && e <= body_len).then_some((at + s, at + e));
                Ok(Some(Rec {
                    interface,
                    link_type,
                    timestamp_ns,
                    data: inside(data).unwrap_or((at, at)),
                    original_len,
                    comment: comment.and_then(inside),
                }))
            }
            Ok(_) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    fn next_pcap(&mut self, big: bool) -> Result<Option<Block>, Error> {
        let start = self.offset;
        let mut h = [0u8; 16];
        let got = self.read_small(&mut h)?;
        if got == 0 {
            return Ok(None);
        }
        if got < h.len() {
            return Err(Error::TruncatedRecordHeader {
                name: self.name.clone(),
                offset: start,
                needed: 16,
                got: got as u64,
                packets: self.packets,
            });
        }
        let h = PcapRecordHeader::parse(&h, big);
        let caplen = h.caplen;
        let (link_type, frac_ns) = self.pcap_interface();
        let max = max_record_len(link_type);
        if caplen > max {
            return Err(Error::RecordTooLong {
                name: self.name.clone(),
                offset: start,
                len: u64::from(caplen),
                max: u64::from(max),
                link_type,
            });
        }
        let n = caplen as usize;
        let got = self.read_body(n)?;
        if got < n {
            return Err(Error::TruncatedRecord {
                name: self.name.clone(),
                offset: start + 16,
                needed: n as u64,
                got: got as u64,
                packets: self.packets,
            });
        }
        Ok(Some(Block::Packet {
            interface: 0,
            timestamp_ns: h.timestamp_ns(frac_ns),
            data: (0, n),
            original_len: h.original_len,
            comment: None,
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Block>, Error> {
        loop {
            let start = self.offset;
            let mut t = [0u8; 4];
            let got = self.read_small(&mut t)?;
            if got == 0 {
                return Ok(None);
            }
            if got < 4 {
                return Err(self.truncated_header(false, start, 8, got as u64));
            }
            let State::Pcapng { big_endian, .. } = self.state else {
                return Ok(None);
            };
            let block_type = u32_at(&t, 0, big_endian);
            if block_type == BT_SHB {
                self.read_shb(start, false)?;
                continue;
            }
            let mut l = [0u8; 4];
            let got = self.read_small(&mut l)?;
            if got < 4 {
                return Err(self.truncated_header(false, start, 8, 4 + got as u64));
            }
            let len = u32_at(&l, 0, big_endian);
            if len < 12 || len % 4 != 0 {
                return Err(self.malformed(
                    start,
                    "pcapng block",
                    format!(
                        "block type 0x{block_type:08x} has length {len}, not a multiple of 4 of at least 12"
                    ),
                ));
            }
            if len > MAX_BLOCK_LEN {
                return Err(Error::RecordTooLong {
                    name: self.name.clone(),
                    offset: start,
                    len: u64::from(len),
                    max: u64::from(MAX_BLOCK_LEN),
                    link_type: 0,
                });
            }
            let rest = len as usize - 8;
            let got = self.read_body(rest)?;
            if got < rest {
                return Err(Error::TruncatedRecord {
                    name: self.name.clone(),
                    offset: start + 8,
                    needed: rest as u64,
                    got: got as u64,
                    packets: self.packets,
                });
            }
            let trailer = u32_at(self.body(), rest - 4, big_endian);
            if trailer != len {
                return Err(self.malformed(
                    start,
                    "pcapng block",
                    format!(
                        "block type 0x{block_type:08x}: trailing length {trailer} differs from leading length {len}"
                    ),
                ));
            }
            let body = rest - 4;
            match self.pcapng_block(start, block_type, body, big_endian)? {
                Block::Other => continue,
                p @ Block::Packet { .. } => return Ok(Some(p)),
            }
        }
    }

    /// Interprets a block whose body is `self.body()[..body]`.
    fn pcapng_block(
        &mut self,
        start: u64,
        block_type: u32,
        body: usize,
        big: bool,
    ) -> Result<Block, Error> {
        let section_base = match self.state {
            State::Pcapng { section_base, .. } => section_base,
            State::Pcap { .. } => 0,
        };
        let b = self
            .win
            .bytes()
            .get(self.body_at..self.body_at + body)
            .unwrap_or(&[]);
        match block_type {
            BT_IDB => {
                if body < 8 {
                    return Err(self.malformed(
                        start,
                        "pcapng interface description block",
                        format!("body of {body} bytes is shorter than 8"),
                    ));
                }
                let mut iface = Interface::new(
                    u32::from(u16_at(b, 0, big)),
                    u32_at(b, 4, big),
                    self.sections.saturating_sub(1),
                );
                for o in options(b, 8, body, big) {
                    match o.code {
                        2 => iface.name = opt_string(b, &o),
                        3 => iface.description = opt_string(b, &o),
                        9 if o.len >= 1 => {
                            let v = b[o.start];
                            let units = if v & 0x80 == 0 {
                                10u64.checked_pow(u32::from(v))
                            } else {
                                2u64.checked_pow(u32::from(v & 0x7F))
                            };
                            // An unrepresentable resolution keeps the default, as Wireshark does.
                            if let Some(u) = units.filter(|u| *u > 0) {
                                iface.ts_units_per_second = u;
                                iface.ts_resolution_ns = if 1_000_000_000 % u == 0 {
                                    1_000_000_000 / u
                                } else {
                                    0
                                };
                            }
                        }
                        13 if o.len >= 1 => iface.fcs_len = Some(b[o.start]),
                        14 if o.len >= 8 => iface.ts_offset_s = u64_at(b, o.start, big) as i64,
                        _ => {}
                    }
                }
                self.interfaces.push(iface);
                Ok(Block::Other)
            }
            BT_EPB | BT_OPB => {
                let what = if block_type == BT_EPB {
                    "pcapng enhanced packet block"
                } else {
                    "pcapng packet block"
                };
                if body < 20 {
                    return Err(self.malformed(
                        start,
                        what,
                        format!("body of {body} bytes is shorter than 20"),
                    ));
                }
                let local = if block_type == BT_EPB {
                    u32_at(b, 0, big)
                } else {
                    u32::from(u16_at(b, 0, big))
                };
                let ticks = (u64::from(u32_at(b, 4, big)) << 32) | u64::from(u32_at(b, 8, big));
                let caplen = u32_at(b, 12, big);
                let original_len = u32_at(b, 16, big);
                let iface = self.section_interface(start, section_base, local)?;
                let link_type = iface.link_type;
                let timestamp_ns = iface.ticks_to_ns(ticks);
                let max = max_record_len(link_type);
                if caplen > max {
                    return Err(Error::RecordTooLong {
                        name: self.name.clone(),
                        offset: start,
                        len: u64::from(caplen),
                        max: u64::from(max),
                        link_type,
                    });
                }
                let n = caplen as usize;
                if pad4(n) > body - 20 {
                    return Err(self.malformed(
                        start,
                        what,
                        format!("captured length {caplen} does not fit in a body of {body} bytes"),
                    ));
                }
                let comment = options(b, 20 + pad4(n), body, big)
                    .find(|o| o.code == 1)
                    .map(|o| (o.start, o.start + o.len));
                Ok(Block::Packet {
                    interface: (section_base as u32).saturating_add(local),
                    timestamp_ns,
                    data: (20, 20 + n),
                    original_len,
                    comment,
                })
            }
            BT_SPB => {
                if body < 4 {
                    return Err(self.malformed(
                        start,
                        "pcapng simple packet block",
                        format!("body of {body} bytes is shorter than 4"),
                    ));
                }
                let original_len = u32_at(b, 0, big);
                let iface = self.section_interface(start, section_base, 0)?;
                let mut caplen = (original_len as usize).min(body - 4);
                if iface.snaplen != 0 {
                    caplen = caplen.min(iface.snaplen as usize);
                }
                let link_type = iface.link_type;
                let max = max_record_len(link_type);
                if caplen > max as usize {
                    return Err(Error::RecordTooLong {
                        name: self.name.clone(),
                        offset: start,
                        len: caplen as u64,
                        max: u64::from(max),
                        link_type,
                    });
                }
                Ok(Block::Packet {
                    interface: section_base as u32,
                    timestamp_ns: 0,
                    data: (4, 4 + caplen),
                    original_len,
                    comment: None,
                })
            }
            // NRB, ISB, DSB, custom and unknown blocks carry nothing a packet reader needs.
            _ => Ok(Block::Other),
        }
    }

    fn section_interface(
        &self,
        start: u64,
        section_base: usize,
        local: u32,
    ) -> Result<&Interface, Error> {
        let count = self.interfaces.len().saturating_sub(section_base);
        self.interfaces
            .get(section_base.saturating_add(local as usize))
            .ok_or_else(|| Error::UnknownInterface {
                name: self.name.clone(),
                offset: start,
                interface: local,
                count: count as u32,
            })
    }
}
