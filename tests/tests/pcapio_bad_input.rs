//! Bad input through the public API, as files on disk: the right `Error` variant, a
//! message naming the file and the byte offset, the complete packets before a cut.
//!
//! The bytes are those of tcpdump's tests/tcp-handshake-nano.pcap (a little-endian
//! nanosecond pcap of a TCP handshake on Linux SLL), taken from the corpus when it is
//! present and otherwise written by our own writer with the same header fields.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::path::Path;

use netdiag_pcapio::{Error, MAXIMUM_SNAPLEN, PcapWriter, Reader};
use netdiag_tests::TempDir;

/// A valid three-packet capture: 24-byte header, records of 76, 76 and 68 bytes.
fn capture() -> Vec<u8> {
    let from_corpus = netdiag_tests::corpus_dir()
        .ok()
        .flatten()
        .and_then(|d| std::fs::read(d.join("tcp-handshake-nano.pcap")).ok());
    if let Some(b) = from_corpus {
        return b;
    }
    let mut w = PcapWriter::new(Vec::new(), 113, 262_144, true).expect("header");
    for (i, len) in [76usize, 76, 68].into_iter().enumerate() {
        w.write_packet(
            1_418_145_369_924_513_680 + i as u64,
            &vec![i as u8; len],
            len as u32,
        )
        .expect("packet");
    }
    w.into_inner().expect("flush")
}

fn open_err(p: &Path) -> Error {
    match Reader::open(p) {
        Ok(_) => panic!("{} opened although it is not a valid capture", p.display()),
        Err(e) => e,
    }
}

fn assert_names(e: &Error, p: &Path, offset: u64) {
    let msg = e.to_string();
    assert!(
        msg.contains(&p.display().to_string()),
        "message does not name the file: {msg}"
    );
    assert!(
        msg.contains(&format!("offset {offset}")),
        "message does not give offset {offset}: {msg}"
    );
    assert_eq!(e.offset(), offset);
    assert_eq!(e.source_name(), p.display().to_string());
}

#[test]
fn not_a_capture() {
    let t = TempDir::new("pcapio-bad-not-a-capture").expect("scratch dir");
    let p = t
        .file(
            "elf.bin",
            b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0\x01\0\0\0",
        )
        .expect("write scratch file");
    let e = open_err(&p);
    assert!(
        matches!(
            e,
            Error::NotCapture {
                magic: 0x7f45_4c46,
                ..
            }
        ),
        "{e:?}"
    );
    assert_names(&e, &p, 0);
    assert!(e.to_string().contains("give a .pcap or .pcapng file"));
}

#[test]
fn empty_file() {
    let t = TempDir::new("pcapio-bad-empty-file").expect("scratch dir");
    let p = t.file("empty.pcap", b"").expect("write scratch file");
    let e = open_err(&p);
    assert!(matches!(e, Error::Empty { .. }), "{e:?}");
    assert_names(&e, &p, 0);
}

#[test]
fn truncated_file_header() {
    let t = TempDir::new("pcapio-bad-truncated-file-header").expect("scratch dir");
    let full = capture();
    for cut in [1, 3, 4, 23] {
        let p = t
            .file(&format!("head{cut}.pcap"), &full[..cut])
            .expect("write scratch file");
        let e = open_err(&p);
        assert!(
            matches!(e, Error::TruncatedFileHeader { got, .. } if got == cut as u64),
            "{e:?}"
        );
        assert_names(&e, &p, 0);
    }
    // pcapng: a section header cut after its block length.
    let p = t
        .file(
            "shb.pcapng",
            b"\x0a\x0d\x0d\x0a\x1c\0\0\0\x4d\x3c\x2b\x1a\x01\0",
        )
        .expect("write scratch file");
    let e = open_err(&p);
    assert!(matches!(e, Error::TruncatedFileHeader { .. }), "{e:?}");
    assert_names(&e, &p, 0);
}

#[test]
fn absurd_record_length_and_snaplen() {
    let t = TempDir::new("pcapio-bad-absurd-lengths").expect("scratch dir");
    let full = capture();
    // 4 GiB snaplen in the header: metadata only, the file reads normally.
    let mut big_snap = full.clone();
    big_snap[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    let p = t
        .file("snaplen4g.pcap", &big_snap)
        .expect("write scratch file");
    let mut r =
        Reader::open(&p).expect("a 4 GiB snaplen alone is valid, as for tcpdump and tshark");
    let mut n = 0;
    while r.next_packet().expect("packets").is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    assert!(r.buffer_capacity() < 1 << 20);

    // Second record claims 4 GiB captured bytes.
    let mut big_rec = big_snap;
    let second = 24 + 16 + 76;
    big_rec[second + 8..second + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let p = t
        .file("record4g.pcap", &big_rec)
        .expect("write scratch file");
    let mut r = Reader::open(&p).expect("header is fine");
    assert!(r.next_packet().expect("first packet").is_some());
    let e = r.next_packet().expect_err("4 GiB record");
    match &e {
        Error::RecordTooLong { len, max, .. } => {
            assert_eq!(
                (*len, *max),
                (u64::from(u32::MAX), u64::from(MAXIMUM_SNAPLEN))
            );
        }
        other => panic!("{other:?}"),
    }
    assert_names(&e, &p, second as u64);
    assert!(r.buffer_capacity() < 1 << 20);
    // After an error the reader ends instead of looping.
    assert!(r.next_packet().expect("ended").is_none());
}

#[test]
fn truncated_in_the_middle_of_a_record_yields_the_complete_packets() {
    let t = TempDir::new("pcapio-bad-truncated-record").expect("scratch dir");
    let full = capture();
    let third = 24 + 2 * (16 + 76);
    let p = t
        .file("cut.pcap", &full[..third + 16 + 30])
        .expect("write scratch file");
    let mut r = Reader::open(&p).expect("header");
    let mut got = Vec::new();
    let err = loop {
        match r.next_packet() {
            Ok(Some(pkt)) => got.push(pkt.data.to_vec()),
            Ok(None) => panic!("a cut file must end with an error"),
            Err(e) => break e,
        }
    };
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], full[24 + 16..24 + 16 + 76]);
    assert_eq!(got[1], full[24 + 2 * 16 + 76..third]);
    assert!(
        matches!(
            err,
            Error::TruncatedRecord {
                needed: 68,
                got: 30,
                packets: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_truncation());
    assert_names(&err, &p, (third + 16) as u64);
    assert!(
        err.to_string().contains("tried to read 68 captured bytes"),
        "{err}"
    );

    // Cut inside the record header: same, with the header variant.
    let p = t
        .file("cut_header.pcap", &full[..third + 7])
        .expect("write scratch file");
    let mut r = Reader::open(&p).expect("header");
    assert!(r.next_packet().expect("1").is_some());
    assert!(r.next_packet().expect("2").is_some());
    let e = r.next_packet().expect_err("cut header");
    assert!(
        matches!(
            e,
            Error::TruncatedRecordHeader {
                needed: 16,
                got: 7,
                ..
            }
        ),
        "{e:?}"
    );
    assert_names(&e, &p, third as u64);
}

#[test]
fn missing_file_names_the_path() {
    let t = TempDir::new("pcapio-bad-missing").expect("scratch dir");
    let p = t.path().join("does-not-exist.pcap");
    let e = open_err(&p);
    assert!(matches!(e, Error::Open { .. }), "{e:?}");
    assert_names(&e, &p, 0);
}

/// A source handing out one byte a read: no record ever lies whole in the reader's
/// read-ahead window, so every record takes the general, record-by-record path.
struct OneByteAtATime<'a>(&'a [u8]);

impl std::io::Read for OneByteAtATime<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match (self.0.split_first(), buf.first_mut()) {
            (Some((b, rest)), Some(out)) => {
                *out = *b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

/// What a reader gives: every packet (interface, link type, timestamp, bytes, original
/// length, comment) and the message of the error that ended it.
type Got = (Vec<netdiag_tests::OwnedPacket>, Option<String>);

/// Every packet through `next_batch(max)`.
fn read_batched<R: std::io::Read>(mut r: Reader<R>, max: usize) -> Got {
    let mut out = Vec::new();
    loop {
        match r.next_batch(max) {
            Ok(b) if b.is_empty() => return (out, None),
            Ok(b) => out.extend(b.iter().map(|p| netdiag_tests::owned_packet(&p))),
            Err(e) => return (out, Some(e.to_string())),
        }
    }
}

/// Every corpus capture (many deliberately malformed) reads the same from memory, where
/// classic pcap records go through the window loop, as from a source giving one byte a
/// read, where every record goes through the general path: same packets, same error.
#[test]
fn corpus_reads_alike_through_the_window_and_the_general_path() {
    let Some(dir) = netdiag_tests::corpus_dir().expect("corpus") else {
        return;
    };
    let mut files = 0;
    let mut packets = 0;
    for entry in std::fs::read_dir(&dir).expect("read corpus dir") {
        let path = entry.expect("corpus entry").path();
        let bytes = std::fs::read(&path).expect("read corpus file");
        let Ok(dribbled) = Reader::new(OneByteAtATime(&bytes)) else {
            // Not a capture, or cut in its file header: no record to read either way.
            continue;
        };
        let want = read_batched(dribbled, 1);
        for max in [1, 64] {
            let got = read_batched(Reader::new(&bytes[..]).expect("read before"), max);
            assert!(got == want, "{}: batches of {max} differ", path.display());
        }
        files += 1;
        packets += want.0.len();
    }
    assert!(
        files > 500,
        "only {files} readable captures in {}",
        dir.display()
    );
    eprintln!("{files} corpus captures, {packets} packets: window and general path agree");
}
