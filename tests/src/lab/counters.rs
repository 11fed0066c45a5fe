//! Counter snapshots of one netns, as raw kernel text (the `counters/…` layout of
//! `testdata/README.md`), and their flat counters through the library's own parser.
//!
//! Reading happens on a thread inside the netns: `/proc/thread-self/net/…` and
//! `/proc/sys/net/…` then show that namespace (`/proc/self/net` would show the
//! namespace of the process's main thread).

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The files of a snapshot, relative to `/proc` (the layout of
/// `testdata/<s>/counters/<role>/<when>/`): the library's own list, so a recording holds
/// exactly what `Snapshot::read_dir` reads back.
use netdiag_kernel::SNAPSHOT_FILES as FILES;

/// Raw counter files of one netns at one instant; a file the kernel did not offer is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Path relative to `/proc` → the file's text exactly as read.
    pub files: BTreeMap<String, String>,
}

impl Snapshot {
    /// Reads the snapshot from inside the netns `netns` (`ndl-<tag>-<role>`).
    pub fn take(netns: &str) -> Result<Snapshot> {
        super::in_netns(netns, Snapshot::read_current)
            .with_context(|| format!("counter snapshot of {netns}"))
    }

    /// Reads the snapshot of the calling thread's netns.
    pub fn read_current() -> Result<Snapshot> {
        let mut files = BTreeMap::new();
        for rel in FILES {
            let path = match rel.strip_prefix("net/") {
                Some(r) => format!("/proc/thread-self/net/{r}"),
                None => format!("/proc/{rel}"),
            };
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    files.insert((*rel).to_owned(), text);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("read {path}")),
            }
        }
        Snapshot { files }.checked()
    }

    /// Writes every file under `dir` (`dir/net/netstat`, …).
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        for (rel, text) in &self.files {
            let p = dir.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("create {}", parent.display()))?;
            }
            std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))?;
        }
        Ok(())
    }

    /// Reads a snapshot written by [`Snapshot::write_to`].
    pub fn read_from(dir: &Path) -> Result<Snapshot> {
        let mut files = BTreeMap::new();
        for rel in FILES {
            let p = dir.join(rel);
            if p.is_file() {
                let text =
                    std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
                files.insert((*rel).to_owned(), text);
            }
        }
        Snapshot { files }.checked()
    }

    /// The flat counter keys of `testdata/README.md` (`TcpExt.ListenOverflows`,
    /// `conntrack.invalid`, …) that the lab asserts on, parsed by the library's own reader
    /// (`netdiag_kernel::Snapshot`). Snapshots the lab reads or loads were checked to parse
    /// ([`Snapshot::read_current`], [`Snapshot::read_from`]); one that does not parse has no
    /// counters.
    pub fn flat(&self) -> BTreeMap<String, i64> {
        self.parsed()
            .map(|p| {
                p.flat()
                    .into_iter()
                    .map(|(k, v)| (k, i64::try_from(v).unwrap_or(i64::MAX)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn parsed(&self) -> Result<netdiag_kernel::Snapshot, netdiag_kernel::Error> {
        netdiag_kernel::Snapshot::from_files(self.files.iter().map(|(p, t)| (p.clone(), t.clone())))
    }

    /// `self`, once the library's parser took every table: a table the library cannot
    /// parse fails the lab run that read it, naming the file, rather than quietly missing
    /// from the assertions.
    fn checked(self) -> Result<Snapshot> {
        self.parsed()
            .context("the counter snapshot does not parse with netdiag-kernel")?;
        Ok(self)
    }

    /// `after[key] - self[key]` (a missing key counts as 0).
    pub fn delta(&self, after: &Snapshot, key: &str) -> i64 {
        let get = |s: &Snapshot| s.flat().get(key).copied().unwrap_or(0);
        get(after) - get(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-CPU rows of `/proc/net/stat/nf_conntrack` from the node netns of the
    /// `snat_exhaustion` recording (kernel 6.18): hex, summed per header name, except
    /// `entries`, which is global.
    const NF_CONNTRACK: &str = "\
entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
00000004  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000
00000004  00000001 00000000 00000000 00000002 00000000 00000000 00000000 00000000 00000030 00000030 00000000 00000000  00000000 00000000 00000000 00000000
";

    #[test]
    fn conntrack_rows_are_summed_by_header_name_and_entries_is_not() {
        let mut files = BTreeMap::new();
        files.insert("net/stat/nf_conntrack".to_owned(), NF_CONNTRACK.to_owned());
        files.insert(
            "sys/net/ipv4/ip_local_port_range".to_owned(),
            "32768\t60999\n".to_owned(),
        );
        let flat = Snapshot { files }.flat();
        assert_eq!(flat.get("conntrack.entries"), Some(&4));
        assert_eq!(flat.get("conntrack.insert_failed"), Some(&0x30));
        assert_eq!(flat.get("conntrack.drop"), Some(&0x30));
        assert_eq!(flat.get("conntrack.invalid"), Some(&2));
        assert_eq!(flat.get("conntrack.clash_resolve"), Some(&1));
        assert_eq!(
            flat.get("sysctl.net.ipv4.ip_local_port_range.min"),
            Some(&32768)
        );
        assert_eq!(
            flat.get("sysctl.net.ipv4.ip_local_port_range.max"),
            Some(&60999)
        );
    }

    #[test]
    fn netstat_pairs_are_matched_by_header_name() {
        let mut files = BTreeMap::new();
        files.insert(
            "net/netstat".to_owned(),
            "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 24 24\nIpExt: InNoRoutes\nIpExt: 3\n"
                .to_owned(),
        );
        let before = Snapshot::default();
        let after = Snapshot { files };
        assert_eq!(before.delta(&after, "TcpExt.ListenOverflows"), 24);
        assert_eq!(before.delta(&after, "IpExt.InNoRoutes"), 3);
        assert_eq!(before.delta(&after, "TcpExt.Missing"), 0);
    }
}
