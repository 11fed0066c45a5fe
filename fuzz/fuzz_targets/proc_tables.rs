//! The /proc tables a counter snapshot parses (`net/netstat`, `net/snmp`, `net/snmp6`,
//! `net/stat/nf_conntrack`, `net/tcp{,6}`, the sysctls) through `Snapshot::from_files`,
//! then the flat counters, the listeners and a delta: a kernel (or a hostile container
//! root) may hand us any text there.
//!
//! Input: one byte choosing the path in `SNAPSHOT_FILES`, then the file's text. Seeds: the
//! snapshot files of testdata and the kernel crate's fixtures, and this machine's live
//! tables.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netdiag_fuzz::{Input, Seeds};
use netdiag_kernel::{SNAPSHOT_FILES, Snapshot};

fn seeds(s: &mut Seeds) -> std::io::Result<()> {
    for (i, rel) in SNAPSHOT_FILES.iter().enumerate() {
        let mut texts = Vec::new();
        for f in s.files(|p| p.to_string_lossy().ends_with(rel)) {
            texts.push(std::fs::read(f)?);
        }
        let live = if rel.starts_with("net/") {
            format!("/proc/self/{rel}")
        } else {
            format!("/proc/{rel}")
        };
        if let Ok(t) = std::fs::read(live) {
            texts.push(t);
        }
        for t in texts {
            let mut seed = vec![i as u8];
            seed.extend_from_slice(&t);
            s.add(&seed)?;
        }
    }
    Ok(())
}

fuzz_target!(
    init: netdiag_fuzz::seed_mode("proc_tables", seeds),
    |data: &[u8]| {
        let mut input = Input::new(data);
        let path = SNAPSHOT_FILES[usize::from(input.u8()) % SNAPSHOT_FILES.len()];
        let text = String::from_utf8_lossy(input.rest()).into_owned();
        let Ok(snap) = Snapshot::from_files([(path, text.clone())]) else {
            return;
        };
        assert_eq!(snap.raw(path), Some(text.as_str()));
        let flat = snap.flat();
        for (k, v) in &flat {
            assert_eq!(snap.get(k), Some(*v));
        }
        let _ = snap.listeners();
        let empty = Snapshot::default();
        let _ = snap.delta(&empty).nonzero().count();
        assert_eq!(snap.delta(&snap).nonzero().count(), 0);
    }
);
