//! Streaming pcap and pcapng reader and writer with per-packet flush and packet comments.
//!
//! # What it maps to
//!
//! | here | tcpdump / Wireshark |
//! |---|---|
//! | [`Reader::open`], [`Reader::stdin`] + [`Reader::next_packet`] | `tcpdump -r file` / `tcpdump -r -`, `tshark -r file` |
//! | [`PcapWriter`] | `tcpdump -w file` (`--time-stamp-precision=nano` ⇔ `nanos = true`) |
//! | [`PcapngWriter`] | Wireshark/`dumpcap` pcapng output: interface names and descriptions (`frame.interface_name`), packet comments (`frame.comment`) |
//! | [`PcapWriter::set_flush_each_packet`] | `tcpdump -U -w -`, for `… -w - \| wireshark -k -i -` |
//! | [`Error::TruncatedRecord`] | tcpdump's "truncated dump file; tried to read N captured bytes, only got M" |
//!
//! # Reading
//!
//! [`Reader`] sniffs the format from the first four bytes and reads classic pcap (both
//! byte orders, micro- and nanosecond magic, FCS bits of the link-type field exposed in
//! [`Interface::fcs_len`]) and pcapng (sections in either byte order, each with its own
//! interfaces; IDB options `if_name`, `if_description`, `if_tsresol` as a power of 10 or
//! of 2, `if_tsoffset`, `if_fcslen`; Enhanced, Simple and obsolete Packet Blocks with the
//! first `opt_comment`; every other block is skipped). Timestamps are converted to
//! nanoseconds since the Unix epoch.
//!
//! It streams from any [`std::io::Read`] with one reused buffer: after warm-up, reading a
//! packet allocates nothing. A regular file ([`Reader::open`]) and bytes already in memory
//! ([`Reader::from_bytes`]) are read in place, without a copy. No length field is trusted with an allocation: a record is
//! capped at [`max_record_len`] of its link type (Wireshark's table, 256 KiB for ordinary
//! link types), a pcapng block at [`MAX_BLOCK_LEN`], and the buffer grows only as bytes
//! actually arrive. Every [`Error`] names the source and the byte offset; a capture cut
//! short yields all its complete packets, then [`Error::TruncatedRecord`] or
//! [`Error::TruncatedRecordHeader`].
//!
//! # Writing
//!
//! Both writers assemble each record or block in one reused buffer and write it with a
//! single `write_all`, so an interrupted writer leaves a file that reads up to its last
//! complete packet. pcapng output has one section whose `shb_userappl` is [`USER_APPL`].
//!
//! # Example
//!
//! ```
//! use netdiag_pcapio::{Format, InterfaceDesc, PacketOut, PcapngWriter, Reader};
//!
//! # fn main() -> Result<(), netdiag_pcapio::Error> {
//! let mut w = PcapngWriter::new(Vec::new())?;
//! let mut eth0 = InterfaceDesc::new(1, 262_144); // LINKTYPE_ETHERNET
//! eth0.name = Some("eth0".into());
//! eth0.nanos = true;
//! let ifc = w.add_interface(&eth0)?;
//! let frame = [0u8; 60];
//! w.write_packet(&PacketOut {
//!     interface: ifc,
//!     timestamp_ns: 1_700_000_000_123_456_789,
//!     data: &frame,
//!     original_len: 60,
//!     comments: &["retransmitted SYN"],
//! })?;
//! let bytes = w.into_inner()?;
//!
//! let mut r = Reader::new(&bytes[..])?.with_source_name("example.pcapng");
//! assert_eq!(r.format(), Format::Pcapng);
//! let p = r.next_packet()?.expect("one packet");
//! assert_eq!((p.link_type, p.data.len(), p.timestamp_ns), (1, 60, 1_700_000_000_123_456_789));
//! assert_eq!(p.comment, Some("retransmitted SYN"));
//! assert!(r.next_packet()?.is_none());
//! assert_eq!(r.interfaces()[0].name.as_deref(), Some("eth0"));
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod error;
mod read;
mod write;

#[cfg(test)]
mod tests;

pub use error::Error;
pub use read::{
    Batch, Format, Interface, MAX_BLOCK_LEN, MAXIMUM_SNAPLEN, Packet, Reader, max_record_len,
};
pub use write::{InterfaceDesc, PacketOut, PcapWriter, PcapngWriter, USER_APPL};
