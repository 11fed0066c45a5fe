//! A capture file opened with `Reader::open` is read in place (mapped), and so are bytes
//! handed to `Reader::from_bytes`: each must give exactly what the same file read in
//! blocks gives (packets, then the same error; in batches and through
//! `for_each_packet`), for
//! every capture of testdata and the tcpdump corpus and for every cut of a small one,
//! and it must give the pages it has read back, so that reading a large file does not
//! grow the process by the file's size.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::io::BufReader;
use std::path::{Path, PathBuf};

use netdiag_pcapio::{PcapWriter, Reader};
use netdiag_tests::{OwnedPacket, TempDir, owned_packet};

/// Every packet of `r` in batches of 64, then the error that ended it, if any.
fn drain<R: std::io::Read>(mut r: Reader<R>) -> (Vec<OwnedPacket>, Option<String>) {
    let mut out = Vec::new();
    loop {
        match r.next_batch(64) {
            Ok(b) if b.is_empty() => return (out, None),
            Ok(b) => out.extend(b.iter().map(|p| owned_packet(&p))),
            Err(e) => return (out, Some(e.to_string())),
        }
    }
}

/// Every packet of `r` handed over by `for_each_packet` (the way `analyze` reads), then
/// the error that ended it, if any.
fn drain_each<R: std::io::Read>(mut r: Reader<R>) -> (Vec<OwnedPacket>, Option<String>) {
    let mut out = Vec::new();
    loop {
        let got = r.for_each_packet(64, |p| out.push(owned_packet(&p)));
        match got {
            Ok(0) => return (out, None),
            Ok(_) => {}
            Err(e) => return (out, Some(e.to_string())),
        }
    }
}

/// `path` mapped, held in memory and read in blocks: all give the same, or fail to open
/// alike.
fn same_both_ways(path: &Path) {
    let name = path.display().to_string();
    let mapped = Reader::open(path);
    let file = std::fs::File::open(path).expect("open");
    let read = Reader::with_name(BufReader::with_capacity(64 * 1024, file), name.clone());
    let bytes = std::fs::read(path).expect("read");
    let held = || Reader::from_bytes(bytes.clone(), name.clone());
    match (mapped, read) {
        (Ok(m), Ok(r)) => {
            let size = std::fs::metadata(path).expect("metadata").len();
            assert_eq!(m.is_mapped(), size > 0, "{name}");
            let want = drain(r);
            assert_eq!(drain(m), want, "{name}");
            let again = Reader::open(path).expect("opened before");
            assert_eq!(drain_each(again), want, "{name}, for_each_packet");
            assert_eq!(drain(held().expect("held")), want, "{name}, from_bytes");
            assert_eq!(
                drain_each(held().expect("held")),
                want,
                "{name}, from_bytes, for_each_packet"
            );
        }
        (Err(m), Err(r)) => {
            assert_eq!(m.to_string(), r.to_string(), "{name}");
            let h = held().expect_err("held bytes refused too");
            assert_eq!(h.to_string(), r.to_string(), "{name}, from_bytes");
        }
        (m, r) => panic!(
            "{name}: mapped {:?}, read {:?}",
            m.map(|_| "opened"),
            r.map(|_| "opened")
        ),
    }
}

#[test]
fn a_mapped_file_reads_as_the_file_read_in_blocks() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(netdiag_tests::testdata_dir())
        .expect("testdata")
        .filter_map(|e| Some(e.ok()?.path().join("pod.pcap")))
        .filter(|p| p.is_file())
        .collect();
    assert!(files.len() >= 10, "{} testdata recordings", files.len());
    let corpus = netdiag_tests::corpus_dir()
        .expect("corpus")
        .map(|dir| {
            std::fs::read_dir(dir)
                .expect("corpus dir")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    files.extend(corpus);
    for f in &files {
        same_both_ways(f);
    }

    // Every cut of a small multi-packet capture: the last record cut in its header or its
    // body, and the file header itself cut, read in place as from a file.
    let tmp = TempDir::new("pcapio-mapped-cuts").expect("scratch dir");
    let mut bytes = Vec::new();
    let mut w = PcapWriter::new(&mut bytes, 1, 65_535, true).expect("writer");
    for i in 0..4u8 {
        let data: Vec<u8> = (0..60 + i).collect();
        w.write_packet(
            1_700_000_000_000_000_000 + u64::from(i),
            &data,
            60 + u32::from(i),
        )
        .expect("write");
    }
    drop(w);
    for cut in 0..=bytes.len() {
        let p = tmp
            .file(&format!("cut-{cut}.pcap"), &bytes[..cut])
            .expect("write cut");
        same_both_ways(&p);
        std::fs::remove_file(&p).expect("remove cut");
    }
}

/// The pages of the mapped file this process has resident (`RssFile` of
/// /proc/self/status), in KiB.
fn rss_file_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssFile:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssFile in /proc/self/status")
}

#[test]
fn a_mapped_file_gives_its_pages_back_as_it_is_read() {
    const FILE_MIB: u64 = 64;
    let tmp = TempDir::new("pcapio-mapped-rss").expect("scratch dir");
    let path = tmp.path().join("big.pcap");
    let mut w = PcapWriter::new(
        std::io::BufWriter::new(std::fs::File::create(&path).expect("create")),
        1,
        65_535,
        false,
    )
    .expect("writer");
    let data = vec![0x5a_u8; 1500];
    let packets = FILE_MIB * (1 << 20) / 1516;
    for i in 0..packets {
        w.write_packet(1_700_000_000_000_000_000 + i * 1000, &data, 1500)
            .expect("write");
    }
    drop(w);

    let before = rss_file_kib();
    let mut r = Reader::open(&path).expect("open");
    assert!(r.is_mapped());
    let (mut n, mut peak) = (0u64, before);
    loop {
        let b = r.next_batch(64).expect("batch");
        if b.is_empty() {
            break;
        }
        n += b.len() as u64;
        // Every byte read, as an analysis reads it.
        let sum: u64 = b
            .iter()
            .map(|p| p.data.iter().map(|&x| u64::from(x)).sum::<u64>())
            .sum();
        assert_eq!(sum, b.len() as u64 * 1500 * 0x5a);
        if n % 1024 < 64 {
            peak = peak.max(rss_file_kib());
        }
    }
    assert_eq!(n, packets);
    let grew_mib = peak.saturating_sub(before) / 1024;
    assert!(
        grew_mib < 12,
        "reading a {FILE_MIB} MiB file in place kept {grew_mib} MiB of it resident"
    );
}
