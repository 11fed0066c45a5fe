//! The one error type of this crate.

use std::io;

/// Everything that can go wrong reading or writing a capture.
///
/// Every variant names the source (a path, `<stdin>`, or the name given with
/// [`Reader::with_source_name`](crate::Reader::with_source_name)) and the byte offset in
/// that stream where the problem was found, and its message says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened.
    #[error("{name}: cannot open (offset {offset}): {source}; check the path and its permissions")]
    Open {
        /// The path as given.
        name: String,
        /// Always 0: nothing was read yet.
        offset: u64,
        /// What the operating system said.
        source: io::Error,
    },
    /// Reading from the source failed (not a short read: an actual I/O error).
    #[error("{name}: read error at offset {offset}: {source}")]
    Read {
        /// The source.
        name: String,
        /// Where the failed read started.
        offset: u64,
        /// What the operating system said.
        source: io::Error,
    },
    /// The source holds no byte at all.
    #[error(
        "{name}: empty file (no bytes at offset {offset}): not a capture; give a .pcap or .pcapng file"
    )]
    Empty {
        /// The source.
        name: String,
        /// Always 0.
        offset: u64,
    },
    /// The first four bytes are neither a pcap nor a pcapng magic number.
    #[error(
        "{name}: not a capture file: magic 0x{magic:08x} at offset {offset} is neither pcap nor pcapng; give a .pcap or .pcapng file"
    )]
    NotCapture {
        /// The source.
        name: String,
        /// Always 0.
        offset: u64,
        /// The first four bytes, read big-endian.
        magic: u32,
    },
    /// The file ends inside the pcap file header or the pcapng section header.
    #[error(
        "{name}: truncated file header: needed {needed} bytes at offset {offset}, only got {got}; the file was cut short before its first packet"
    )]
    TruncatedFileHeader {
        /// The source.
        name: String,
        /// Where the header starts.
        offset: u64,
        /// Bytes the header needs.
        needed: u64,
        /// Bytes present.
        got: u64,
    },
    /// The file ends inside a pcap record header or a pcapng block header.
    #[error(
        "{name}: truncated dump file; record header at offset {offset} needs {needed} bytes, only got {got}; the {packets} packets before it are complete (the capture was interrupted)"
    )]
    TruncatedRecordHeader {
        /// The source.
        name: String,
        /// Where the header starts.
        offset: u64,
        /// Bytes the header needs.
        needed: u64,
        /// Bytes present.
        got: u64,
        /// Complete packets returned before this point.
        packets: u64,
    },
    /// The file ends inside a record's data (or a pcapng block body).
    #[error(
        "{name}: truncated dump file; tried to read {needed} captured bytes at offset {offset}, only got {got}; the {packets} packets before it are complete (the capture was interrupted)"
    )]
    TruncatedRecord {
        /// The source.
        name: String,
        /// Where the record's data (or block body) starts.
        offset: u64,
        /// Bytes the record claims.
        needed: u64,
        /// Bytes present.
        got: u64,
        /// Complete packets returned before this point.
        packets: u64,
    },
    /// A record or block claims more bytes than any capture of its link type may hold.
    #[error(
        "{name}: record at offset {offset} claims {len} bytes, more than the maximum of {max} for link type {link_type}; the file is corrupt"
    )]
    RecordTooLong {
        /// The source.
        name: String,
        /// Where the record (or block) header starts.
        offset: u64,
        /// The length the file claims.
        len: u64,
        /// The documented maximum ([`max_record_len`](crate::max_record_len) or
        /// [`MAX_BLOCK_LEN`](crate::MAX_BLOCK_LEN)).
        max: u64,
        /// The link type in force (0 for pcapng blocks other than packets).
        link_type: u32,
    },
    /// A header or block is well delimited but its content is invalid or unsupported.
    #[error(
        "{name}: bad {what} at offset {offset}: {reason}; the file is corrupt or of an unsupported version"
    )]
    Malformed {
        /// The source.
        name: String,
        /// Where the header or block starts.
        offset: u64,
        /// What was being read (e.g. "pcapng block", "pcap file header").
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A pcapng packet block refers to an interface that no IDB of its section defined.
    #[error(
        "{name}: packet block at offset {offset} refers to interface {interface}, but its section defines only {count}; the file is corrupt"
    )]
    UnknownInterface {
        /// The source.
        name: String,
        /// Where the block starts.
        offset: u64,
        /// The interface number in the block (section-relative).
        interface: u32,
        /// Interfaces defined so far in the section.
        count: u32,
    },
    /// Writing to the destination failed.
    #[error("{name}: write error at offset {offset}: {source}")]
    Write {
        /// The destination.
        name: String,
        /// Bytes written successfully before the failed write.
        offset: u64,
        /// What the operating system said.
        source: io::Error,
    },
    /// The caller asked a writer for something the format cannot represent.
    #[error("{name}: cannot write at offset {offset}: {reason}")]
    InvalidOutput {
        /// The destination.
        name: String,
        /// Bytes written before this request.
        offset: u64,
        /// What was wrong with the request.
        reason: String,
    },
}

impl Error {
    /// The byte offset the error refers to.
    pub fn offset(&self) -> u64 {
        match self {
            Error::Open { offset, .. }
            | Error::Read { offset, .. }
            | Error::Empty { offset, .. }
            | Error::NotCapture { offset, .. }
            | Error::TruncatedFileHeader { offset, .. }
            | Error::TruncatedRecordHeader { offset, .. }
            | Error::TruncatedRecord { offset, .. }
            | Error::RecordTooLong { offset, .. }
            | Error::Malformed { offset, .. }
            | Error::UnknownInterface { offset, .. }
            | Error::Write { offset, .. }
            | Error::InvalidOutput { offset, .. } => *offset,
        }
    }

    /// The source or destination name (path, `<stdin>`, …) the error refers to.
    pub fn source_name(&self) -> &str {
        match self {
            Error::Open { name, .. }
            | Error::Read { name, .. }
            | Error::Empty { name, .. }
            | Error::NotCapture { name, .. }
            | Error::TruncatedFileHeader { name, .. }
            | Error::TruncatedRecordHeader { name, .. }
            | Error::TruncatedRecord { name, .. }
            | Error::RecordTooLong { name, .. }
            | Error::Malformed { name, .. }
            | Error::UnknownInterface { name, .. }
            | Error::Write { name, .. }
            | Error::InvalidOutput { name, .. } => name,
        }
    }

    /// Whether the input ended early (a cut-short capture): every packet before the
    /// error was complete and has been returned.
    pub fn is_truncation(&self) -> bool {
        matches!(
            self,
            Error::TruncatedRecordHeader { .. } | Error::TruncatedRecord { .. }
        )
    }
}
