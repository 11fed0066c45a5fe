//! Every packet of every corpus file goes through `Frame::parse` (and the DNS walk):
//! no panic, no hang. Unsupported link types and files the reader rejects are counted
//! and reported, never fatal.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netdiag_pcapio::Reader;
use netdiag_wire::{Frame, LinkType, StopReason, Transport};

#[derive(Default, Debug)]
struct Tally {
    files: usize,
    reader_errors: Vec<String>,
    packets: u64,
    complete: u64,
    truncated: u64,
    malformed: u64,
    fragments: u64,
    unsupported_proto: u64,
    unsupported_link: BTreeMap<u32, u64>,
    dns_ok: u64,
    dns_err: u64,
}

fn parse_file(path: &Path, t: &mut Tally) {
    t.files += 1;
    let mut reader = match Reader::open(path) {
        Ok(r) => r,
        Err(e) => {
            t.reader_errors.push(format!("{e}"));
            return;
        }
    };
    loop {
        let p = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                t.reader_errors.push(format!("{e}"));
                break;
            }
        };
        t.packets += 1;
        let link = LinkType::from_linktype(p.link_type);
        if !link.is_supported() {
            *t.unsupported_link.entry(p.link_type & 0xffff).or_default() += 1;
        }
        let f = Frame::parse(link, p.data);
        match f.stop.map(|s| s.reason) {
            None => t.complete += 1,
            Some(StopReason::Truncated { .. }) => t.truncated += 1,
            Some(StopReason::Malformed(_)) => t.malformed += 1,
            Some(StopReason::Fragment) => t.fragments += 1,
            Some(_) => t.unsupported_proto += 1,
        }
        // Touch every lazy accessor so that it runs on hostile bytes too.
        if let Some(Transport::Tcp(tcp)) = f.transport {
            let o = tcp.options;
            let _ = (
                o.mss(),
                o.window_scale(),
                o.sack_permitted(),
                o.timestamps(),
                o.sack_blocks().count(),
            );
            assert!(
                tcp.payload.len() <= tcp.payload_len as usize,
                "{}: {tcp:?}",
                path.display()
            );
        }
        if let Some(dns) = f.dns() {
            match dns {
                Ok(m) => {
                    t.dns_ok += 1;
                    if let Some(q) = m.question() {
                        let _ = (q.name.to_string(), q.name.hash_lowercase());
                    }
                    for e in m.sections() {
                        if let Ok(netdiag_wire::dns::Entry::Record(r)) = e {
                            let _ = r.name.label_count();
                        }
                    }
                }
                Err(_) => t.dns_err += 1,
            }
        }
    }
}

fn capture_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_packet_parses_without_panic_or_hang() {
    let Some(dir) = netdiag_tests::corpus_dir().expect("corpus") else {
        return;
    };
    let files = capture_files(&dir);
    assert!(
        files.len() > 500,
        "only {} files in {}",
        files.len(),
        dir.display()
    );

    // A worker parses; the main thread watches the clock per file, so a hang names its file.
    let (tx, rx) = mpsc::channel::<(PathBuf, Tally)>();
    let worker_files = files.clone();
    let worker = std::thread::spawn(move || {
        for f in worker_files {
            let mut t = Tally::default();
            parse_file(&f, &mut t);
            if tx.send((f, t)).is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let mut total = Tally::default();
    for expected in &files {
        let (path, t) = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("no progress for 20 s after {} ({e})", expected.display()));
        assert_eq!(&path, expected);
        total.files += t.files;
        total.reader_errors.extend(t.reader_errors);
        total.packets += t.packets;
        total.complete += t.complete;
        total.truncated += t.truncated;
        total.malformed += t.malformed;
        total.fragments += t.fragments;
        total.unsupported_proto += t.unsupported_proto;
        total.dns_ok += t.dns_ok;
        total.dns_err += t.dns_err;
        for (k, v) in t.unsupported_link {
            *total.unsupported_link.entry(k).or_default() += v;
        }
    }
    worker.join().expect("worker panicked");
    eprintln!(
        "wire_corpus: {} files, {} packets in {:?}: {} complete, {} truncated, {} malformed, {} non-first fragments, \
         {} unsupported protocol; DNS {} ok / {} malformed",
        total.files,
        total.packets,
        started.elapsed(),
        total.complete,
        total.truncated,
        total.malformed,
        total.fragments,
        total.unsupported_proto,
        total.dns_ok,
        total.dns_err
    );
    let unsupported: u64 = total.unsupported_link.values().sum();
    eprintln!(
        "wire_corpus: {unsupported} packets of unsupported link types: {:?}",
        total.unsupported_link
    );
    eprintln!(
        "wire_corpus: {} files stopped with a reader error:",
        total.reader_errors.len()
    );
    for e in &total.reader_errors {
        eprintln!("  {e}");
    }
    assert_eq!(total.files, files.len());
    // The corpus is mostly parseable Ethernet; a collapse of these counts means a regression.
    // (10183 packets, 5826 complete, 82 DNS messages when this was written.)
    assert!(total.packets > 9_000, "{total:?}");
    assert!(total.complete > total.packets * 2 / 5, "{total:?}");
    assert!(total.dns_ok > 60, "{total:?}");
}
