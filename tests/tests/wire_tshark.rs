//! Differential test: DNS question names and rcodes from `netdiag_wire::dns` against
//! tshark 4.0 on the corpus's DNS packets (UDP port 53 or 5353, either direction).
//!
//! We pre-filter with our own parser so tshark only runs on files that contain DNS, two
//! tshark processes at a time. For every packet we see as DNS we need tshark's row for
//! the same frame number (`tshark -n -r FILE -T fields -e frame.number -e dns.qry.name
//! -e dns.flags.rcode -e _ws.malformed -Y "dns || mdns"`), then:
//!
//! - **Names.** tshark prints the root name as `<Root>`; we print `.` (rule R1). tshark
//!   prints a label byte outside printable ASCII as `\ddd` (decimal) like we do, but
//!   leaves `.` and `\` inside a label unescaped where we (like dig) write `\.` and `\\`
//!   (R2: we unescape those two before comparing). Case is kept by both.
//! - **Rcodes.** `dns.flags.rcode` is only printed for responses; both print the 4-bit
//!   header RCODE (R3: compared only when tshark prints it).
//! - **Malformed.** A packet is malformed for us when `Message::parse` or
//!   `Message::validate` (every question and record fits, names well formed) fails; for
//!   tshark when `_ws.malformed` names DNS/MDNS or the name is one of its error
//!   placeholders (`<Name too long>`, `<Unknown extended label>`…), or when `_ws.short`
//!   says "Packet size limited during capture: DNS truncated" (a short snap length cuts
//!   the message: `Message::parse`/`validate` report `Truncated`). Whenever we call a
//!   packet malformed, tshark must too (R4). tshark also checks record *contents* (e.g.
//!   an OPT option whose length overruns its RDATA), which we do not parse, so a packet
//!   tshark alone calls malformed is allowed only when its question name and rcode still
//!   agree with ours (R5), and is counted in the summary.
//! - **Fragments.** tshark reassembles IP fragments and shows DNS on the last fragment's
//!   frame; we parse no reassembly, so IP fragments are skipped (R6).
//! - **Empty payloads.** tshark does not run its DNS dissector on an empty UDP payload;
//!   we report `Truncated`. For those, tshark must show no DNS row at all (R7).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use netdiag_pcapio::Reader;
use netdiag_wire::{Frame, LinkType, Transport};

#[derive(Debug, Clone)]
enum Ours {
    Ok {
        name: Option<String>,
        rcode: u8,
    },
    Malformed(String),
    /// An empty UDP payload on a DNS port (rule R7).
    Empty,
}

#[derive(Debug, Clone, Default)]
struct Theirs {
    name: String,
    rcode: String,
    malformed: bool,
}

fn our_dns(path: &Path) -> BTreeMap<u64, Ours> {
    let mut out = BTreeMap::new();
    let Ok(mut r) = Reader::open(path) else {
        return out;
    };
    let mut n = 0u64;
    while let Ok(Some(p)) = r.next_packet() {
        n += 1;
        let f = Frame::parse(LinkType::from_linktype(p.link_type), p.data);
        if !matches!(f.transport, Some(Transport::Udp(_)))
            || f.net.and_then(|n| n.fragment()).is_some()
        {
            continue;
        }
        let Some(m) = f.dns() else { continue };
        if matches!(f.transport, Some(Transport::Udp(u)) if u.payload.is_empty()) {
            out.insert(n, Ours::Empty);
            continue;
        }
        let v = match m.and_then(|m| m.validate().map(|()| m)) {
            Ok(m) => Ours::Ok {
                name: m.question().map(|q| q.name.to_string()),
                rcode: m.rcode().0,
            },
            Err(e) => Ours::Malformed(e.to_string()),
        };
        out.insert(n, v);
    }
    out
}

fn tshark(path: &Path) -> Result<BTreeMap<u64, Theirs>, String> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args([
            "-T",
            "fields",
            "-E",
            "occurrence=f",
            "-e",
            "frame.number",
            "-e",
            "dns.qry.name",
        ])
        .args([
            "-e",
            "dns.flags.rcode",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.short",
        ])
        .args(["-Y", "dns || mdns"])
        .output()
        .map_err(|e| format!("running tshark on {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let Some(Ok(frame)) = cols.first().map(|c| c.parse::<u64>()) else {
            continue;
        };
        let name = cols.get(1).copied().unwrap_or("").to_string();
        let malformed_field = cols.get(3).copied().unwrap_or("");
        let short_field = cols.get(4).copied().unwrap_or("");
        let malformed = malformed_field.contains("DNS")
            || short_field.contains("DNS")
            || (name.starts_with('<') && name.ends_with('>') && name != "<Root>");
        rows.insert(
            frame,
            Theirs {
                name,
                rcode: cols.get(2).copied().unwrap_or("").to_string(),
                malformed,
            },
        );
    }
    Ok(rows)
}

/// Rules R1 and R2: tshark's spelling → ours.
fn normalise_ours(name: &str) -> String {
    name.replace("\\.", ".").replace("\\\\", "\\")
}
fn normalise_theirs(name: &str) -> String {
    if name == "<Root>" {
        ".".to_string()
    } else {
        name.to_string()
    }
}

fn capture_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            capture_files(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

#[test]
fn dns_names_and_rcodes_agree_with_tshark() {
    let Some(dir) = netdiag_tests::corpus_dir().expect("corpus") else {
        return;
    };
    let started = Instant::now();
    let mut files = Vec::new();
    capture_files(&dir, &mut files);
    capture_files(&netdiag_tests::testdata_dir(), &mut files);
    files.retain(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"));
    files.sort();
    /// tshark's view of one file, or why it could not be had.
    type TsharkResult = Result<BTreeMap<u64, Theirs>, String>;
    let work: Vec<(PathBuf, BTreeMap<u64, Ours>)> = files
        .into_iter()
        .map(|f| (our_dns(&f), f))
        .filter(|(o, _)| !o.is_empty())
        .map(|(o, f)| (f, o))
        .collect();
    assert!(work.len() >= 20, "only {} files with DNS", work.len());

    // Two tshark processes at a time (the machine has two cores).
    let queue = Mutex::new(work.iter());
    let results: Mutex<Vec<(&PathBuf, TsharkResult)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let next = queue.lock().expect("queue").next();
                    let Some((path, _)) = next else { break };
                    let r = tshark(path);
                    results.lock().expect("results").push((path, r));
                }
            });
        }
    });
    let results: BTreeMap<&PathBuf, Result<BTreeMap<u64, Theirs>, String>> =
        results.into_inner().expect("results").into_iter().collect();

    let mut problems = Vec::new();
    let (mut compared, mut both_malformed, mut tshark_only_malformed, mut empty) = (0, 0, 0, 0);
    for (path, ours) in &work {
        let theirs = match &results[path] {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        for (frame, o) in ours {
            let at = format!("{} #{frame}", path.display());
            if matches!(o, Ours::Empty) {
                if theirs.contains_key(frame) {
                    problems.push(format!("{at}: empty UDP payload, yet tshark shows DNS"));
                }
                empty += 1;
                continue;
            }
            let Some(t) = theirs.get(frame) else {
                problems.push(format!("{at}: tshark shows no DNS, we parsed {o:?}"));
                continue;
            };
            match o {
                Ours::Empty => {}
                Ours::Malformed(why) => {
                    if t.malformed {
                        both_malformed += 1;
                    } else {
                        problems.push(format!(
                            "{at}: we say malformed ({why}), tshark parsed {t:?}"
                        ));
                    }
                }
                Ours::Ok { name, rcode } => {
                    compared += 1;
                    let name_ok = match name {
                        Some(n) => normalise_ours(n) == normalise_theirs(&t.name),
                        None => t.name.is_empty(),
                    };
                    let rcode_ok = t.rcode.is_empty() || t.rcode.parse::<u8>() == Ok(*rcode);
                    if !(name_ok && rcode_ok) {
                        problems.push(format!(
                            "{at}: ours name {name:?} rcode {rcode}, tshark {t:?}"
                        ));
                    } else if t.malformed {
                        tshark_only_malformed += 1;
                    }
                }
            }
        }
    }
    eprintln!(
        "wire_tshark: {} files with DNS, {compared} messages compared, {both_malformed} malformed for both, \
         {tshark_only_malformed} malformed in record contents for tshark only, {empty} empty, {} problems, {:?}",
        work.len(),
        problems.len(),
        started.elapsed()
    );
    for p in problems.iter().take(40) {
        eprintln!("  {p}");
    }
    assert!(
        problems.is_empty(),
        "{} disagreements with tshark",
        problems.len()
    );
    assert!(compared >= 60, "only {compared} DNS messages compared");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
}
