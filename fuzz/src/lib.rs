//! Shared by the fuzz targets: the seed mode and the input encodings.
//!
//! Seeds are not committed: each target derives its own from real inputs when it runs in
//! seed mode, which `cargo xtask fuzz` does before fuzzing:
//!
//! ```text
//! NETDIAG_FUZZ_SEEDS_OUT=DIR NETDIAG_FUZZ_SEEDS_FROM=DIR1:DIR2 TARGET_BINARY -runs=0
//! ```
//!
//! reads every capture file (and the other files a target wants) below the `FROM`
//! directories (the tcpdump corpus, `testdata/`, the kernel fixtures), writes one seed per
//! interesting input into `OUT`, and exits before fuzzing starts. A target's seed
//! encoding is the input format its `fuzz_target!` body decodes, so seeds and harness stay
//! in one file.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

use netdiag_pcapio::Reader;

/// Largest seed written; libFuzzer's `-max_len` should be at least this.
pub const MAX_SEED_LEN: usize = 64 * 1024;

/// Where seeds come from and go.
pub struct Seeds {
    /// Directories to read from (`NETDIAG_FUZZ_SEEDS_FROM`, `:`-separated).
    pub from: Vec<PathBuf>,
    out: PathBuf,
    seen: HashSet<u64>,
    /// Seeds written so far.
    pub written: usize,
}

impl Seeds {
    /// Writes one seed (deduplicated by content, cut at [`MAX_SEED_LEN`]).
    pub fn add(&mut self, bytes: &[u8]) -> io::Result<()> {
        let bytes = &bytes[..bytes.len().min(MAX_SEED_LEN)];
        let mut h = DefaultHasher::new();
        bytes.hash(&mut h);
        let key = h.finish();
        if !self.seen.insert(key) {
            return Ok(());
        }
        std::fs::write(self.out.join(format!("seed-{key:016x}")), bytes)?;
        self.written += 1;
        Ok(())
    }

    /// Every regular file below the `from` directories, sorted, whose name matches `keep`.
    pub fn files(&self, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack: Vec<PathBuf> = self.from.clone();
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                if dir.is_file() && keep(&dir) {
                    out.push(dir);
                }
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(p),
                    Ok(t) if t.is_file() && keep(&p) => out.push(p),
                    _ => {}
                }
            }
        }
        out.sort();
        out
    }

    /// Capture files (`.pcap`, `.pcapng`, `.cap`) below the `from` directories.
    pub fn capture_files(&self) -> Vec<PathBuf> {
        self.files(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng" | "cap")
            )
        })
    }

    /// Calls `f(link_type, timestamp_ns, bytes)` for the first `per_file` packets of every
    /// capture file (files the reader rejects are skipped: they seed `pcap_analyze`).
    pub fn packets(
        &mut self,
        per_file: usize,
        mut f: impl FnMut(&mut Seeds, u32, u64, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        for path in self.capture_files() {
            let Ok(mut r) = Reader::open(&path) else {
                continue;
            };
            for _ in 0..per_file {
                match r.next_packet() {
                    Ok(Some(p)) => f(self, p.link_type, p.timestamp_ns, p.data)?,
                    _ => break,
                }
            }
        }
        Ok(())
    }
}

/// Seed mode: when `NETDIAG_FUZZ_SEEDS_OUT` is set, runs `make` to write seeds there and
/// exits the process; otherwise returns and fuzzing proceeds. Call it from the
/// `fuzz_target!` init block.
pub fn seed_mode(target: &str, make: fn(&mut Seeds) -> io::Result<()>) {
    let Some(out) = std::env::var_os("NETDIAG_FUZZ_SEEDS_OUT") else {
        return;
    };
    let from = std::env::var_os("NETDIAG_FUZZ_SEEDS_FROM").unwrap_or_default();
    let mut seeds = Seeds {
        from: std::env::split_paths(&from).collect(),
        out: PathBuf::from(out),
        seen: HashSet::new(),
        written: 0,
    };
    let result = std::fs::create_dir_all(&seeds.out).and_then(|()| make(&mut seeds));
    match result {
        Ok(()) => {
            eprintln!(
                "{target}: {} seeds in {}",
                seeds.written,
                seeds.out.display()
            );
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("{target}: writing seeds to {}: {e}", seeds.out.display());
            std::process::exit(2);
        }
    }
}

/// Reads fields off the front of a fuzz input; past the end every read gives zeros, so
/// any input decodes to something.
pub struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps a fuzz input.
    pub fn new(data: &'a [u8]) -> Self {
        Input { rest: data }
    }
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = b;
        a
    }
    /// One byte.
    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }
    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        let b = self.bytes(2);
        u16::from_le_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ])
    }
    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }
    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    /// A string of up to 255 bytes (length byte first), lossy UTF-8.
    pub fn short_string(&mut self) -> String {
        let n = usize::from(self.u8());
        String::from_utf8_lossy(self.bytes(n)).into_owned()
    }
    /// A byte string of up to 65535 bytes (u16 length first).
    pub fn blob(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.bytes(n)
    }
    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.rest.len())
    }
}

/// Appends a little-endian u16 (the seed side of [`Input::u16`]).
pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
