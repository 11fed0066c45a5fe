//! Writers for pcap and pcapng.
//!
//! Each record or block is assembled in one reused buffer and handed to the
//! destination with a single `write_all`: a writer interrupted at any point leaves a
//! file that reads up to its last complete packet (never half a block of ours).

use std::io::Write;

use crate::read::{BT_EPB, BT_IDB, BT_SHB, BYTE_ORDER_MAGIC};
use crate::{Error, Interface};

/// The `shb_userappl` string written into every pcapng section header.
pub const USER_APPL: &str = concat!("netdiag ", env!("CARGO_PKG_VERSION"));

/// Shared plumbing of both writers: destination, byte count, reused buffer.
#[derive(Debug)]
struct Sink<W: Write> {
    w: W,
    name: String,
    offset: u64,
    buf: Vec<u8>,
    flush_each: bool,
}

impl<W: Write> Sink<W> {
    fn new(w: W) -> Self {
        Sink {
            w,
            name: "<output>".to_string(),
            offset: 0,
            buf: Vec::with_capacity(2048),
            flush_each: false,
        }
    }

    /// Writes `self.buf` with one `write_all`.
    fn emit(&mut self) -> Result<(), Error> {
        self.w.write_all(&self.buf).map_err(|source| Error::Write {
            name: self.name.clone(),
            offset: self.offset,
            source,
        })?;
        self.offset += self.buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.w.flush().map_err(|source| Error::Write {
            name: self.name.clone(),
            offset: self.offset,
            source,
        })
    }

    fn after_packet(&mut self) -> Result<(), Error> {
        if self.flush_each {
            self.flush()?;
        }
        Ok(())
    }

    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidOutput {
            name: self.name.clone(),
            offset: self.offset,
            reason: reason.into(),
        }
    }

    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }
    /// Appends one pcapng option (value padded to 4 bytes).
    fn opt(&mut self, code: u16, value: &[u8]) -> Result<(), Error> {
        let len = u16::try_from(value.len()).map_err(|_| {
            self.invalid(format!(
                "option {code} is {} bytes, more than 65535",
                value.len()
            ))
        })?;
        self.u16(code);
        self.u16(len);
        self.buf.extend_from_slice(value);
        self.pad();
        Ok(())
    }
    /// A string option (`if_name`, `if_description`) as readers give it back: they strip
    /// one trailing NUL (many writers add one, though the spec has none), so a string
    /// that really ends in NUL gets one more (found by fuzzing the round trip).
    fn opt_str(&mut self, code: u16, value: &str) -> Result<(), Error> {
        if value.ends_with('\0') {
            let mut v = Vec::with_capacity(value.len() + 1);
            v.extend_from_slice(value.as_bytes());
            v.push(0);
            self.opt(code, &v)
        } else {
            self.opt(code, value.as_bytes())
        }
    }
    /// Finishes a pcapng block begun at `self.buf[0]`: end of options (when `opts`),
    /// both length fields.
    fn end_block(&mut self, opts: bool) -> Result<(), Error> {
        if opts {
            self.u32(0);
        }
        let len = u32::try_from(self.buf.len() + 4)
            .map_err(|_| self.invalid("block longer than 4 GiB"))?;
        self.buf[4..8].copy_from_slice(&len.to_le_bytes());
        self.u32(len);
        Ok(())
    }
}

/// Writes classic pcap (`tcpdump -w`), little-endian, microsecond or nanosecond magic.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    sink: Sink<W>,
    nanos: bool,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header. `link_type` is the whole 32-bit field (a `LINKTYPE_*`
    /// value, optionally with FCS bits as in [`Interface::raw_link_type`]); `nanos`
    /// selects the nanosecond magic `a1b23c4d`.
    pub fn new(w: W, link_type: u32, snaplen: u32, nanos: bool) -> Result<Self, Error> {
        let mut sink = Sink::new(w);
        let magic: u32 = if nanos { 0xA1B2_3C4D } else { 0xA1B2_C3D4 };
        sink.u32(magic);
        sink.u16(2);
        sink.u16(4);
        sink.u32(0); // thiszone
        sink.u32(0); // sigfigs
        sink.u32(snaplen);
        sink.u32(link_type);
        sink.emit()?;
        Ok(PcapWriter { sink, nanos })
    }

    /// Sets the name used in error messages (default `<output>`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.sink.name = name.into();
        self
    }

    /// Writes one packet record. `data` is the captured bytes; `original_len` the length on the wire.
    pub fn write_packet(
        &mut self,
        timestamp_ns: u64,
        data: &[u8],
        original_len: u32,
    ) -> Result<(), Error> {
        let caplen = u32::try_from(data.len()).map_err(|_| {
            self.sink.invalid(format!(
                "packet of {} bytes does not fit a pcap record",
                data.len()
            ))
        })?;
        let secs = timestamp_ns / 1_000_000_000;
        let secs = u32::try_from(secs).map_err(|_| {
            self.sink.invalid(format!(
                "timestamp {timestamp_ns} ns is after 2106, beyond pcap's 32-bit seconds"
            ))
        })?;
        let sub = timestamp_ns % 1_000_000_000;
        let frac = if self.nanos { sub } else { sub / 1000 } as u32;
        let s = &mut self.sink;
        s.buf.clear();
        s.u32(secs);
        s.u32(frac);
        s.u32(caplen);
        s.u32(original_len);
        s.buf.extend_from_slice(data);
        s.emit()?;
        s.after_packet()
    }

    /// When on, the destination is flushed after every packet (for `-w - | wireshark -k -i -`).
    pub fn set_flush_each_packet(&mut self, on: bool) {
        self.sink.flush_each = on;
    }

    /// Flushes the destination.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.sink.flush()
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.sink.offset
    }

    /// Flushes and gives back the destination.
    pub fn into_inner(mut self) -> Result<W, Error> {
        self.sink.flush()?;
        Ok(self.sink.w)
    }
}

/// An interface to declare with [`PcapngWriter::add_interface`] (an IDB).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InterfaceDesc {
    /// The `LINKTYPE_*` value (must fit 16 bits).
    pub link_type: u32,
    /// Snapshot length (0: no limit).
    pub snaplen: u32,
    /// `if_name`, e.g. `eth0` (shown by Wireshark as the interface name).
    pub name: Option<String>,
    /// `if_description`, e.g. `pod default/web-0, container nginx`.
    pub description: Option<String>,
    /// Nanosecond timestamps (`if_tsresol` = 9) instead of the default microseconds.
    pub nanos: bool,
    /// `if_fcslen`: bytes of frame check sequence at the end of each packet.
    pub fcs_len: Option<u8>,
}

impl InterfaceDesc {
    /// An interface with a link type and snaplen, no name, microsecond timestamps.
    pub fn new(link_type: u32, snaplen: u32) -> Self {
        InterfaceDesc {
            link_type,
            snaplen,
            ..InterfaceDesc::default()
        }
    }
}

impl From<&Interface> for InterfaceDesc {
    /// Describes an interface read by [`Reader`](crate::Reader) so it can be written back;
    /// resolutions other than micro/nanoseconds become nanoseconds.
    fn from(i: &Interface) -> Self {
        InterfaceDesc {
            link_type: i.link_type,
            snaplen: i.snaplen,
            name: i.name.clone(),
            description: i.description.clone(),
            nanos: i.ts_units_per_second != 1_000_000,
            fcs_len: i.fcs_len,
        }
    }
}

/// A packet to write with [`PcapngWriter::write_packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketOut<'a> {
    /// The interface number returned by [`PcapngWriter::add_interface`].
    pub interface: u32,
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The length on the wire.
    pub original_len: u32,
    /// Packet comments, each written as one `opt_comment` (Wireshark: `frame.comment`).
    pub comments: &'a [&'a str],
}

/// Writes pcapng: one section (SHB with `shb_userappl` = [`USER_APPL`]), IDBs, EPBs.
#[derive(Debug)]
pub struct PcapngWriter<W: Write> {
    sink: Sink<W>,
    /// Nanosecond resolution per declared interface.
    nanos: Vec<bool>,
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the section header block.
    pub fn new(w: W) -> Result<Self, Error> {
        Self::with_comments(w, &[])
    }

    /// Writes the section header block with these comments, each one `opt_comment`
    /// (Wireshark: Statistics › Capture File Properties; `capinfos`).
    pub fn with_comments(w: W, comments: &[&str]) -> Result<Self, Error> {
        let mut sink = Sink::new(w);
        sink.u32(BT_SHB);
        sink.u32(0); // length, patched by end_block
        sink.u32(BYTE_ORDER_MAGIC);
        sink.u16(1);
        sink.u16(0);
        sink.buf.extend_from_slice(&(-1i64).to_le_bytes()); // section length unknown
        for c in comments {
            sink.opt(1, c.as_bytes())?;
        }
        sink.opt(4, USER_APPL.as_bytes())?;
        sink.end_block(true)?;
        sink.emit()?;
        Ok(PcapngWriter {
            sink,
            nanos: Vec::new(),
        })
    }

    /// Sets the name used in error messages (default `<output>`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.sink.name = name.into();
        self
    }

    /// Declares an interface (writes an IDB); returns its number for [`PacketOut::interface`].
    pub fn add_interface(&mut self, iface: &InterfaceDesc) -> Result<u32, Error> {
        let link = u16::try_from(iface.link_type).map_err(|_| {
            self.sink.invalid(format!(
                "link type {} does not fit pcapng's 16-bit field",
                iface.link_type
            ))
        })?;
        let id = u32::try_from(self.nanos.len())
            .map_err(|_| self.sink.invalid("too many interfaces"))?;
        let s = &mut self.sink;
        s.buf.clear();
        s.u32(BT_IDB);
        s.u32(0);
        s.u16(link);
        s.u16(0);
        s.u32(iface.snaplen);
        if let Some(n) = &iface.name {
            s.opt_str(2, n)?;
        }
        if let Some(d) = &iface.description {
            s.opt_str(3, d)?;
        }
        if iface.nanos {
            s.opt(9, &[9])?;
        }
        if let Some(f) = iface.fcs_len {
            s.opt(13, &[f])?;
        }
        s.end_block(true)?;
        s.emit()?;
        self.nanos.push(iface.nanos);
        Ok(id)
    }

    /// Writes one packet as an EPB, with one `opt_comment` per comment.
    pub fn write_packet(&mut self, p: &PacketOut<'_>) -> Result<(), Error> {
        let Some(&nanos) = self.nanos.get(p.interface as usize) else {
            return Err(self.sink.invalid(format!(
                "packet for interface {} but only {} were added",
                p.interface,
                self.nanos.len()
            )));
        };
        let caplen = u32::try_from(p.data.len()).map_err(|_| {
            self.sink.invalid(format!(
                "packet of {} bytes does not fit a block",
                p.data.len()
            ))
        })?;
        let ticks = if nanos {
            p.timestamp_ns
        } else {
            p.timestamp_ns / 1000
        };
        let s = &mut self.sink;
        s.buf.clear();
        s.u32(BT_EPB);
        s.u32(0);
        s.u32(p.interface);
        s.u32((ticks >> 32) as u32);
        s.u32(ticks as u32);
        s.u32(caplen);
        s.u32(p.original_len);
        s.buf.extend_from_slice(p.data);
        s.pad();
        for c in p.comments {
            s.opt(1, c.as_bytes())?;
        }
        s.end_block(!p.comments.is_empty())?;
        s.emit()?;
        s.after_packet()
    }

    /// When on, the destination is flushed after every packet (for `-w - | wireshark -k -i -`).
    pub fn set_flush_each_packet(&mut self, on: bool) {
        self.sink.flush_each = on;
    }

    /// Flushes the destination.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.sink.flush()
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.sink.offset
    }

    /// Flushes and gives back the destination.
    pub fn into_inner(mut self) -> Result<W, Error> {
        self.sink.flush()?;
        Ok(self.sink.w)
    }
}
