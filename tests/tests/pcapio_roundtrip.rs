//! Round trip of every corpus capture through netdiag-pcapio, judged by Wireshark's reader.
//!
//! For each file of the tcpdump test-suite corpus (830 captures, many deliberately
//! malformed) we read it with `netdiag_pcapio::Reader` and write what we read back as
//! pcap (`PcapWriter`) and as pcapng (`PcapngWriter`). Then Wireshark's file library
//! (wiretap) reads the original and both copies, and they must agree: the same packet
//! count, the same captured bytes, captured and original lengths and link types, and no
//! read error on a copy unless the original gives one too. A copy whose bytes are the
//! original's (most pcap files written back as pcap) is compared by its bytes instead:
//! a reader given the same bytes reads the same thing, so neither tool is run on it.
//!
//! What each tool proves (tshark's start-up costs ~0.25 s on this machine, so it cannot
//! read 3 × 830 files in the time budget):
//! - `editcap -F pcapng IN OUT` reads IN with wiretap — the same library and code path as
//!   `tshark -r`, minus dissection — and reports read errors on stderr (its exit code
//!   stays 0). It runs in ~10 ms, so it reads *every* original and every copy; its output
//!   (well-formed pcapng written by wiretap) is what we compare, packet by packet.
//! - `tshark -r F -T fields -e frame.len -e frame.cap_len` is run on a deterministic
//!   sample (every pcapng file and every 32nd file, original and both copies): the
//!   per-frame lengths it prints and whether it reports an error must agree too. This
//!   shows that tshark itself, not only editcap, reads our output as it reads the original.
//!
//! Files we reject outright (no packet) must be files wiretap rejects as well or reads
//! with an error: the comparison enforces it, since our copies would then hold fewer
//! packets than tshark sees in the original. A pcapng file whose interfaces have
//! different link types cannot be written as pcap (one link type per file; `editcap -F
//! pcap` refuses it too): for those only the pcapng copy is checked, and the test
//! asserts that this is the reason.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use netdiag_pcapio::{Format, InterfaceDesc, PacketOut, PcapWriter, PcapngWriter, Reader};
use netdiag_tests::TempDir;

/// One packet as wiretap delivered it: (link type, captured length, original length, hash of the bytes).
type Frame = (u32, u32, u32, u64);

/// What wiretap made of a file.
#[derive(Debug)]
struct WiretapView {
    frames: Vec<Frame>,
    error: Option<String>,
}

fn hash(data: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

/// Reads `path` through wiretap (editcap), returning its packets and any read error.
fn wiretap_read(path: &Path, scratch: &Path) -> WiretapView {
    let out = scratch.with_extension("wiretap.pcapng");
    let _ = std::fs::remove_file(&out);
    let res = Command::new("editcap")
        .args(["-F", "pcapng"])
        .arg(path)
        .arg(&out)
        .output();
    let res = match res {
        Ok(r) => r,
        Err(e) => panic!("cannot run editcap (install tshark's package): {e}"),
    };
    let stderr = String::from_utf8_lossy(&res.stderr).trim().to_string();
    let error = (!stderr.is_empty() || !res.status.success()).then_some(stderr);
    let mut frames = Vec::new();
    if out.is_file() {
        // editcap's output is well-formed pcapng written by wiretap; our reader only
        // transports its packets into the comparison here.
        let mut r = match Reader::open(&out) {
            Ok(r) => r,
            Err(e) => panic!("wiretap output of {} unreadable: {e}", path.display()),
        };
        loop {
            match r.next_packet() {
                Ok(Some(p)) => frames.push((
                    p.link_type,
                    p.data.len() as u32,
                    p.original_len,
                    hash(p.data),
                )),
                Ok(None) => break,
                Err(e) => panic!("wiretap output of {} unreadable: {e}", path.display()),
            }
        }
        let _ = std::fs::remove_file(&out);
    }
    WiretapView { frames, error }
}

/// tshark's view: one line per frame ("len<TAB>cap_len") and whether it reported an error.
fn tshark_read(path: &Path) -> (Vec<String>, bool) {
    let res = match Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-T", "fields", "-e", "frame.len", "-e", "frame.cap_len"])
        .output()
    {
        Ok(r) => r,
        Err(e) => panic!("cannot run tshark: {e}"),
    };
    let lines = String::from_utf8_lossy(&res.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let stderr = String::from_utf8_lossy(&res.stderr);
    let error = stderr
        .lines()
        .any(|l| !l.is_empty() && !l.starts_with("Running as user"));
    (lines, error || !res.status.success())
}

/// The packet records (everything after the 24-byte file header) that libpcap writes
/// when `tcpdump -r path -w -` copies the file.
fn libpcap_records(path: &Path, scratch: &Path, tag: &str) -> Vec<u8> {
    let out = scratch.with_extension(format!("{tag}.libpcap.pcap"));
    let _ = std::fs::remove_file(&out);
    match Command::new("tcpdump")
        .arg("-r")
        .arg(path)
        .arg("-w")
        .arg(&out)
        .output()
    {
        Ok(_) => {}
        Err(e) => panic!("cannot run tcpdump: {e}"),
    }
    let bytes = std::fs::read(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    bytes.get(24..).unwrap_or_default().to_vec()
}

/// Our copies of one file.
struct Copies {
    pcap: Option<PathBuf>,
    pcapng: PathBuf,
    /// Why no pcap copy was written, when none was.
    no_pcap: Option<String>,
    /// Our reader's error, if any (after all complete packets).
    error: Option<String>,
}

/// Reads `src` with our reader and writes the packets back as pcap and pcapng.
/// `None` when our reader rejects the file before any packet (no copy can be made).
fn copy(src: &Path, scratch: &Path) -> Option<Copies> {
    let mut r = match Reader::open(src) {
        Ok(r) => r,
        Err(_) => return None,
    };
    let pcap_path = scratch.with_extension("ours.pcap");
    let pcapng_path = scratch.with_extension("ours.pcapng");
    let mut ng = PcapngWriter::new(Vec::new()).expect("pcapng header");
    let mut added = 0usize;
    // pcap needs the one link type and resolution up front: collect packets first, since
    // pcapng interfaces may appear mid-file.
    let mut packets: Vec<(u32, u64, Vec<u8>, u32)> = Vec::new();
    let mut error = None;
    loop {
        match r.next_packet_with_interfaces() {
            Ok(Some((p, ifaces))) => {
                while added <= p.interface as usize {
                    ng.add_interface(&InterfaceDesc::from(&ifaces[added]))
                        .expect("add interface");
                    added += 1;
                }
                let comments: Vec<&str> = p.comment.into_iter().collect();
                ng.write_packet(&PacketOut {
                    interface: p.interface,
                    timestamp_ns: p.timestamp_ns,
                    data: p.data,
                    original_len: p.original_len,
                    comments: &comments,
                })
                .expect("write pcapng packet");
                packets.push((p.interface, p.timestamp_ns, p.data.to_vec(), p.original_len));
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    // Interfaces without packets too (an empty capture still has its IDB).
    for iface in r.interfaces().iter().skip(added) {
        ng.add_interface(&InterfaceDesc::from(iface))
            .expect("add interface");
    }
    std::fs::write(&pcapng_path, ng.into_inner().expect("flush")).expect("write pcapng copy");

    let ifaces = r.interfaces();
    let used: Vec<usize> = {
        let mut u: Vec<usize> = packets.iter().map(|p| p.0 as usize).collect();
        u.sort_unstable();
        u.dedup();
        u
    };
    let links: Vec<u32> = {
        let mut l: Vec<u32> = used.iter().map(|&i| ifaces[i].link_type).collect();
        l.dedup();
        l
    };
    let (pcap, no_pcap) = if links.len() > 1 {
        (
            None,
            Some(format!("packets of several link types {links:?}")),
        )
    } else {
        let first = if r.format() == Format::Pcap {
            0
        } else {
            used.first().copied().unwrap_or(0)
        };
        let (raw, snaplen, nanos) = match ifaces.get(first) {
            Some(i) if r.format() == Format::Pcap => {
                (i.raw_link_type, i.snaplen, i.is_nanosecond())
            }
            Some(i) => (
                i.link_type,
                if i.snaplen == 0 { 262_144 } else { i.snaplen },
                used.iter()
                    .any(|&u| ifaces[u].ts_units_per_second != 1_000_000),
            ),
            None => (1, 262_144, false),
        };
        let mut w = PcapWriter::new(Vec::new(), raw, snaplen, nanos).expect("pcap header");
        let mut refused = None;
        for (_, ts, data, orig) in &packets {
            if let Err(e) = w.write_packet(*ts, data, *orig) {
                refused = Some(e.to_string());
                break;
            }
        }
        match refused {
            None => {
                std::fs::write(&pcap_path, w.into_inner().expect("flush"))
                    .expect("write pcap copy");
                (Some(pcap_path), None)
            }
            Some(e) => (None, Some(e)),
        }
    };
    Some(Copies {
        pcap,
        pcapng: pcapng_path,
        no_pcap,
        error,
    })
}

/// What happened to one file, for the summary.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    /// Packets wiretap read from the original.
    packets: usize,
    /// wiretap reported an error on the original after reading some packets.
    wiretap_error: bool,
    /// wiretap read no packet from the original and reported an error.
    wiretap_unreadable: bool,
    /// Our reader ended with an error.
    pcapio_error: bool,
    /// Our reader rejected the file outright.
    pcapio_rejected: bool,
    /// No pcap copy could be written (several link types, time after 2106).
    no_pcap: bool,
    /// tshark itself read the original and the copies.
    tshark: bool,
    /// Copies whose bytes are the original's, byte for byte: wiretap and tshark are not run
    /// on them, since a reader given the same bytes reads the same thing.
    identical_copies: usize,
}

/// Checks one corpus file; returns a description of every disagreement.
fn check(src: &Path, scratch: &Path, with_tshark: bool, out: &mut Outcome) -> Vec<String> {
    let mut bad = Vec::new();
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let orig = wiretap_read(src, scratch);
    out.packets = orig.frames.len();
    out.wiretap_unreadable = orig.frames.is_empty() && orig.error.is_some();
    out.wiretap_error = !out.wiretap_unreadable && orig.error.is_some();
    out.tshark = with_tshark;
    let Some(copies) = copy(src, scratch) else {
        out.pcapio_rejected = true;
        // We read nothing: wiretap must not read any packet cleanly either.
        if orig.error.is_none() {
            bad.push(format!(
                "{name}: pcapio rejects the file but wiretap reads {} packets without error",
                orig.frames.len()
            ));
        }
        return bad;
    };
    out.pcapio_error = copies.error.is_some();
    out.no_pcap = copies.pcap.is_none();
    let mut targets = vec![("pcapng", copies.pcapng.clone())];
    if let Some(p) = &copies.pcap {
        targets.push(("pcap", p.clone()));
    } else if let Some(why) = &copies.no_pcap {
        // Only legitimate reasons: several link types, or timestamps pcap's 32-bit
        // seconds cannot hold (pcapng test files `time_2106_overflow`, `time_2107`).
        if !(why.contains("link types") || why.contains("after 2106")) {
            bad.push(format!("{name}: no pcap copy: {why}"));
        }
    }
    // A copy holding exactly the original's bytes (a plain little-endian pcap written back
    // as pcap, most of the corpus) reads as the original does in any reader: compared by
    // its bytes, it needs no editcap nor tshark run (each a process start; tshark's costs
    // ~0.3 s of CPU).
    let original = std::fs::read(src).unwrap_or_else(|e| panic!("reading {name}: {e}"));
    let mut identical = Vec::new();
    targets.retain(|(_, path)| {
        let same = std::fs::read(path).is_ok_and(|copy| copy == original);
        if same {
            identical.push(path.clone());
        }
        !same
    });
    out.identical_copies = identical.len();
    // wiretap's pcap reader rejects link types it has no mapping for (its pcapng reader
    // does not): such an original yields an error and no packet in Wireshark, while
    // our pcapng copy of it is readable. Then libpcap (`tcpdump -r … -w`), which reads
    // any link type from both formats, must see the same packets in the original and in
    // the pcapng copy; the pcap copy must still fail in wiretap exactly as the original.
    let unreadable_original = orig.frames.is_empty() && orig.error.is_some();
    if unreadable_original {
        let a = libpcap_records(src, scratch, "orig");
        let b = libpcap_records(&copies.pcapng, scratch, "copy");
        if a != b {
            bad.push(format!(
                "{name} → pcapng: libpcap reads {} record bytes from the copy, {} from the original, or they differ",
                b.len(),
                a.len()
            ));
        }
    }
    for (kind, path) in &targets {
        if unreadable_original && *kind == "pcapng" {
            continue;
        }
        let ours = wiretap_read(path, scratch);
        if ours.frames != orig.frames {
            let first_diff = ours
                .frames
                .iter()
                .zip(&orig.frames)
                .position(|(a, b)| a != b);
            bad.push(format!(
                "{name} → {kind}: wiretap reads {} packets from the copy, {} from the original (first differing packet {:?}); original error {:?}; our reader's error {:?}",
                ours.frames.len(),
                orig.frames.len(),
                first_diff,
                orig.error,
                copies.error
            ));
        }
        if let (Some(e), None) = (&ours.error, &orig.error) {
            bad.push(format!(
                "{name} → {kind}: wiretap error on the copy only: {e}"
            ));
        }
    }
    if with_tshark {
        let (o_lines, o_err) = tshark_read(src);
        for (kind, path) in &targets {
            if unreadable_original && *kind == "pcapng" {
                continue;
            }
            let (lines, err) = tshark_read(path);
            if lines != o_lines {
                bad.push(format!(
                    "{name} → {kind}: tshark prints {} frames for the copy, {} for the original",
                    lines.len(),
                    o_lines.len()
                ));
            }
            if err && !o_err {
                bad.push(format!("{name} → {kind}: tshark error on the copy only"));
            }
        }
    }
    for path in targets.iter().map(|(_, p)| p).chain(&identical) {
        let _ = std::fs::remove_file(path);
    }
    bad
}

#[test]
fn corpus_round_trip_reads_identically_in_wireshark() {
    let Some(dir) = netdiag_tests::corpus_dir().expect("corpus") else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() > 100,
        "corpus at {} looks incomplete",
        dir.display()
    );

    // Removed on success and on failure.
    let tmp = TempDir::new("pcapio-roundtrip").expect("scratch dir");

    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let outcomes = Mutex::new(Vec::new());
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for worker in 0..2 {
            let (files, next, failures, outcomes, tmp) =
                (&files, &next, &failures, &outcomes, tmp.path());
            s.spawn(move || {
                let scratch = tmp.join(format!("w{worker}"));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = files.get(i) else { break };
                    let is_ng = f.extension().is_some_and(|e| e == "pcapng");
                    let mut outcome = Outcome::default();
                    let bad = check(f, &scratch, is_ng || i % 32 == 0, &mut outcome);
                    outcomes.lock().expect("lock").push(outcome);
                    if !bad.is_empty() {
                        failures.lock().expect("lock").extend(bad);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("lock");
    let outcomes = outcomes.into_inner().expect("lock");
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    eprintln!(
        "{} packets; wiretap: {} originals read with an error after some packets, {} unreadable \
         (checked through libpcap); pcapio: {} ended with an error, {} rejected; {} without a \
         pcap copy; {} also read by tshark itself; {} copies byte-identical to their original \
         (not read again)",
        outcomes.iter().map(|o| o.packets).sum::<usize>(),
        count(|o| o.wiretap_error),
        count(|o| o.wiretap_unreadable),
        count(|o| o.pcapio_error),
        count(|o| o.pcapio_rejected),
        count(|o| o.no_pcap),
        count(|o| o.tshark),
        outcomes.iter().map(|o| o.identical_copies).sum::<usize>(),
    );
    assert_eq!(outcomes.len(), files.len());
    eprintln!(
        "round trip of {} corpus files in {:.1} s, {} disagreements",
        files.len(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
