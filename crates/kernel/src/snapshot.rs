//! [`Snapshot`]: the counters and settings of one network namespace at one instant, as raw
//! kernel text (paths mirror `/proc`), plus the flat counter map `netdiag-analyze` consumes.
//!
//! The layout on disk and the flat keys are the contract in `testdata/README.md`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::sockets::{SocketGroup, SocketTimer, TcpSocket, TcpState, group_sockets};
use crate::{Error, parse};

/// The files a snapshot holds, relative to the snapshot root. Live they are read from
/// `/proc/thread-self/net/…` (`net/*`) and `/proc/sys/…` (`sys/*`) by a thread inside the
/// target network namespace; a file the kernel does not offer is simply missing.
pub const SNAPSHOT_FILES: &[&str] = &[
    "net/netstat",
    "net/snmp",
    "net/snmp6",
    "net/stat/nf_conntrack",
    "net/tcp",
    "net/tcp6",
    "sys/net/netfilter/nf_conntrack_count",
    "sys/net/netfilter/nf_conntrack_max",
    "sys/net/netfilter/nf_conntrack_tcp_be_liberal",
    "sys/net/netfilter/nf_conntrack_buckets",
    "sys/net/netfilter/nf_conntrack_tcp_timeout_established",
    "sys/net/core/somaxconn",
    "sys/net/ipv4/ip_local_port_range",
    "sys/net/ipv4/tcp_abort_on_overflow",
    "sys/net/ipv4/tcp_syn_linear_timeouts",
    "sys/net/ipv4/tcp_max_syn_backlog",
    "sys/net/ipv4/tcp_syncookies",
    "sys/net/ipv4/tcp_keepalive_time",
    "sys/net/ipv4/tcp_tw_reuse",
];

/// TCP state `LISTEN` in the `st` column of `/proc/net/tcp` (`TCP_LISTEN` = 10).
const TCP_LISTEN: u8 = 0x0A;

/// A listening TCP socket and its accept queue (`ss -lnt`: Recv-Q = `queued`, Send-Q = `backlog`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Listener {
    /// Local address the socket is bound to (`0.0.0.0` / `::` for any).
    pub addr: IpAddr,
    /// Local port.
    pub port: u16,
    /// Connections completed and waiting for `accept()` (`rx_queue`, `idiag_rqueue`).
    pub queued: u32,
    /// The effective accept backlog (`idiag_wqueue`): only sock_diag knows it, so `None`
    /// when read from `/proc/net/tcp`.
    pub backlog: Option<u32>,
    /// Socket inode, when the source names it (joins with `/proc/PID/fd`).
    pub inode: Option<u64>,
}

impl Listener {
    /// Build a listener record (for sources other than this crate, e.g. tests or JSON).
    pub fn new(addr: IpAddr, port: u16, queued: u32, backlog: Option<u32>) -> Self {
        Listener {
            addr,
            port,
            queued,
            backlog,
            inode: None,
        }
    }

    /// Whether the accept queue is full: the kernel accepts `backlog + 1` connections, so
    /// `queued > backlog` means full; `queued == backlog` is at the brink (`ss` shows
    /// Recv-Q ≥ Send-Q for both). `None` when the backlog is unknown.
    pub fn is_full(&self) -> Option<bool> {
        self.backlog.map(|b| self.queued >= b)
    }
}

/// The counters and settings of one network namespace at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Raw kernel text by relative path (`net/netstat`, `sys/net/core/somaxconn`, …).
    files: BTreeMap<String, String>,
    /// Flat counters derived from `files` (validated when the snapshot was built).
    flat: BTreeMap<String, u64>,
    /// Listening sockets from sock_diag, when captured live (they carry the backlog).
    sock_diag_listeners: Option<Vec<Listener>>,
    /// Why sock_diag could not be read live, if it could not.
    sock_diag_error: Option<String>,
    /// Every TCP socket from sock_diag, when captured live.
    sock_diag_sockets: Option<Vec<TcpSocket>>,
}

impl Snapshot {
    /// Build a snapshot from raw file texts keyed by relative path (`net/netstat`, …).
    ///
    /// Every known table is parsed now, so a malformed file is an error here rather than a
    /// silently missing counter later. Files this crate does not know are kept verbatim.
    pub fn from_files<I, P, T>(files: I) -> Result<Snapshot, Error>
    where
        I: IntoIterator<Item = (P, T)>,
        P: Into<String>,
        T: Into<String>,
    {
        let files: BTreeMap<String, String> = files
            .into_iter()
            .map(|(p, t)| (p.into(), t.into()))
            .collect();
        let mut flat = BTreeMap::new();
        for (path, text) in &files {
            match path.as_str() {
                "net/netstat" | "net/snmp" => parse::header_pairs(path, text, &mut flat)?,
                "net/snmp6" => parse::name_value_lines(path, text, &mut flat)?,
                "net/stat/nf_conntrack" => parse::nf_conntrack_stat(path, text, &mut flat)?,
                "net/tcp" | "net/tcp6" => {
                    parse::proc_net_tcp(path, text)?;
                }
                p if p.starts_with("sys/") => parse::sysctl(p, text, &mut flat),
                _ => {}
            }
        }
        Ok(Snapshot {
            files,
            flat,
            sock_diag_listeners: None,
            sock_diag_error: None,
            sock_diag_sockets: None,
        })
    }

    /// Read a snapshot directory in the testdata layout (`counters/pod/before/`, …): every
    /// regular file below `dir`, by its path relative to `dir`.
    pub fn read_dir(dir: impl AsRef<Path>) -> Result<Snapshot, Error> {
        let dir = dir.as_ref();
        let mut files = BTreeMap::new();
        walk(dir, dir, &mut files)?;
        Snapshot::from_files(files)
    }

    /// Write the raw files in the testdata layout below `dir` (created if missing), so
    /// `Snapshot::read_dir(dir)` gives back an equal snapshot (sock_diag listeners and
    /// sockets aside: offline they come from `net/tcp{,6}`).
    pub fn write_dir(&self, dir: impl AsRef<Path>) -> Result<(), Error> {
        let dir = dir.as_ref();
        for (rel, text) in &self.files {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            std::fs::write(&path, text).map_err(|source| Error::Io { path, source })?;
        }
        Ok(())
    }

    /// The flat counter map (keys as in `testdata/README.md`: `TcpExt.ListenOverflows`,
    /// `conntrack.invalid`, `sysctl.net.core.somaxconn`, …).
    pub fn flat(&self) -> BTreeMap<String, u64> {
        self.flat.clone()
    }

    /// One flat counter, by key.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.flat.get(key).copied()
    }

    /// The raw text of one file, by relative path (`net/stat/nf_conntrack`).
    pub fn raw(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(String::as_str)
    }

    /// Relative paths of all files held, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Listening TCP sockets. From sock_diag when the snapshot was captured live (with the
    /// backlog), otherwise from the `LISTEN` rows of `net/tcp` and `net/tcp6` (backlog `None`).
    pub fn listeners(&self) -> Vec<Listener> {
        if let Some(l) = &self.sock_diag_listeners {
            return l.clone();
        }
        let mut out = Vec::new();
        for file in ["net/tcp", "net/tcp6"] {
            let Some(text) = self.files.get(file) else {
                continue;
            };
            // Validated in from_files, so an error cannot happen here; stay total anyway.
            let rows = parse::proc_net_tcp(file, text).unwrap_or_default();
            out.extend(
                rows.into_iter()
                    .filter(|r| r.state == TCP_LISTEN)
                    .map(|r| Listener {
                        addr: r.local,
                        port: r.local_port,
                        queued: r.rx_queue,
                        backlog: None,
                        inode: r.inode,
                    }),
            );
        }
        out
    }

    /// Every TCP socket (`ss -tano`): from sock_diag when the snapshot was captured live,
    /// otherwise from the rows of `net/tcp` and `net/tcp6` (same states and timers).
    pub fn tcp_sockets(&self) -> Vec<TcpSocket> {
        if let Some(s) = &self.sock_diag_sockets {
            return s.clone();
        }
        let mut out = Vec::new();
        for file in ["net/tcp", "net/tcp6"] {
            let Some(text) = self.files.get(file) else {
                continue;
            };
            let rows = parse::proc_net_tcp(file, text).unwrap_or_default();
            out.extend(rows.into_iter().map(|r| {
                let unspecified = if r.local.is_ipv4() {
                    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                } else {
                    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                };
                let (remote, remote_port) = r.remote.unwrap_or((unspecified, 0));
                let timer = r.timer.map_or(SocketTimer::None, SocketTimer::from_kernel);
                let timer_ms = r
                    .timer_ticks
                    .filter(|_| timer != SocketTimer::None)
                    .map(|t| t.saturating_mul(10));
                let mut s = TcpSocket::new(
                    (r.local, r.local_port),
                    (remote, remote_port),
                    TcpState::from_kernel(r.state),
                    timer,
                );
                s.timer_ms = timer_ms;
                s
            }));
        }
        out
    }

    /// [`Snapshot::tcp_sockets`] summarised per peer and per listening port
    /// ([`group_sockets`]).
    pub fn socket_groups(&self) -> Vec<SocketGroup> {
        group_sockets(&self.tcp_sockets())
    }

    /// Attach every TCP socket obtained from sock_diag; `tcp_sockets()` returns them from
    /// now on.
    pub fn set_sock_diag_sockets(&mut self, sockets: Vec<TcpSocket>) {
        self.sock_diag_sockets = Some(sockets);
    }

    /// Attach listeners obtained from sock_diag (they carry the backlog); `listeners()`
    /// returns them from now on.
    pub fn set_sock_diag_listeners(&mut self, listeners: Vec<Listener>) {
        self.sock_diag_listeners = Some(listeners);
        self.sock_diag_error = None;
    }

    /// Record why live sock_diag listeners are missing (see [`Snapshot::capture_current`]).
    pub fn set_sock_diag_error(&mut self, error: String) {
        self.sock_diag_error = Some(error);
    }

    /// Why the live listeners (with backlog) are missing, when a live capture could not
    /// read sock_diag. `None` for snapshots read from disk or captured successfully.
    pub fn sock_diag_error(&self) -> Option<&str> {
        self.sock_diag_error.as_deref()
    }

    /// What changed since `earlier`: per key, `self − earlier`, saturating at 0. Keys whose
    /// value went down (a counter reset, a gauge that fell) are listed in
    /// [`Delta::backwards`] with both values.
    pub fn delta(&self, earlier: &Snapshot) -> Delta {
        let mut d = Delta::default();
        for (k, &now) in &self.flat {
            match earlier.flat.get(k) {
                Some(&before) => {
                    d.values.insert(k.clone(), now.saturating_sub(before));
                    if now < before {
                        d.backwards.push(Backwards {
                            key: k.clone(),
                            earlier: before,
                            later: now,
                        });
                    }
                }
                None => d.only_later.push(k.clone()),
            }
        }
        d.only_earlier = earlier
            .flat
            .keys()
            .filter(|k| !self.flat.contains_key(*k))
            .cloned()
            .collect();
        d
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> Result<(), Error> {
    let io = |path: PathBuf| move |source| Error::Io { path, source };
    for entry in std::fs::read_dir(dir).map_err(io(dir.to_path_buf()))? {
        let entry = entry.map_err(io(dir.to_path_buf()))?;
        let path = entry.path();
        let ty = entry.file_type().map_err(io(path.clone()))?;
        if ty.is_dir() {
            walk(root, &path, out)?;
        } else if ty.is_file() {
            let bytes = std::fs::read(&path).map_err(io(path.clone()))?;
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.insert(rel, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    Ok(())
}

/// Counter changes between two snapshots of the same namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Delta {
    /// `later − earlier` per key present in both, saturating at 0.
    pub values: BTreeMap<String, u64>,
    /// Keys whose value went down (counter reset, or a gauge such as `nf_conntrack_count`).
    pub backwards: Vec<Backwards>,
    /// Keys present only in the later snapshot (a module loaded in between).
    pub only_later: Vec<String>,
    /// Keys present only in the earlier snapshot.
    pub only_earlier: Vec<String>,
}

impl Delta {
    /// The change of one key (0 when it went backwards, `None` when not in both snapshots).
    pub fn get(&self, key: &str) -> Option<u64> {
        self.values.get(key).copied()
    }

    /// Keys that rose, with their increase.
    pub fn nonzero(&self) -> impl Iterator<Item = (&str, u64)> {
        self.values
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| (k.as_str(), *v))
    }
}

/// A key whose value went down between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Backwards {
    /// The flat key.
    pub key: String,
    /// Value in the earlier snapshot.
    pub earlier: u64,
    /// Value in the later snapshot.
    pub later: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Captured on this project's lab kernel (Linux 6.18.44, Debian 12) in a throwaway netns
    /// `ndk-fixture` with lo up, an `iptables -m conntrack --ctstate INVALID` rule (loads
    /// conntrack for the netns), a few loopback TCP connections, 9 SYN|FIN|RST segments
    /// sent through a raw socket pinned to CPU 0 and 5 to CPU 1 (each counted on output and
    /// input: invalid = 0x0e + 0x04 per CPU), and, at the moment of the copy, a listener on
    /// 127.0.0.1:9999 (backlog 1, 2 un-accepted connections) and one on [::1]:9998 (1 queued).
    /// Recipe: `cat /proc/thread-self/net/* /proc/sys/…` from `ip netns exec ndk-fixture`.
    fn fixture_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/netns-6.18")
    }

    fn fixture() -> Snapshot {
        Snapshot::read_dir(fixture_dir()).unwrap()
    }

    #[test]
    fn reads_every_layout_file() {
        let s = fixture();
        for f in SNAPSHOT_FILES {
            assert!(s.raw(f).is_some(), "{f} missing");
        }
        assert!(
            s.raw("net/stat/nf_conntrack")
                .unwrap()
                .starts_with("entries")
        );
    }

    #[test]
    fn netstat_and_snmp_keys() {
        let f = fixture().flat();
        assert_eq!(f["TcpExt.ListenOverflows"], 0);
        assert_eq!(f["TcpExt.ListenDrops"], 0);
        assert_eq!(f["TcpExt.TCPSynRetrans"], 0);
        assert_eq!(f["TcpExt.TCPPureAcks"], 10);
        assert_eq!(f["IpExt.InOctets"], 2355);
        // unknown groups are kept too
        assert_eq!(f["MPTcpExt.WinProbe"], 0);
        assert_eq!(f["Tcp.ActiveOpens"], 11);
        assert_eq!(f["Tcp.OutRsts"], 8);
        assert_eq!(f["Tcp.RetransSegs"], 0);
        assert_eq!(f["Udp.NoPorts"], 2);
        assert_eq!(f["Udp.RcvbufErrors"], 0);
        assert_eq!(f["Ip.Forwarding"], 2);
        assert_eq!(f["IcmpMsg.OutType3"], 2);
        // Tcp.MaxConn is -1 ("no limit"): not a counter
        assert!(!f.contains_key("Tcp.MaxConn"));
    }

    #[test]
    fn snmp6_keys() {
        let f = fixture().flat();
        assert!(f.contains_key("Ip6.InReceives"));
        assert!(f.contains_key("Icmp6.InMsgs"));
        assert!(f.contains_key("Udp6.InDatagrams"));
        assert!(f.contains_key("UdpLite6.InDatagrams"));
        assert!(!f.keys().any(|k| k.starts_with("snmp6.")));
    }

    #[test]
    fn nf_conntrack_summed_per_cpu_entries_once() {
        let f = fixture().flat();
        assert_eq!(f["conntrack.invalid"], 0x0e + 0x04);
        assert_eq!(
            f["conntrack.entries"], 4,
            "entries is global: taken once, not summed"
        );
        assert_eq!(f["conntrack.clashres"], 0);
        assert_eq!(f["conntrack.clash_resolve"], 0);
        assert_eq!(f["conntrack.insert_failed"], 0);
        assert_eq!(f["conntrack.drop"], 0);
        assert_eq!(f["conntrack.early_drop"], 0);
        assert_eq!(f["conntrack.search_restart"], 0);
    }

    #[test]
    fn sysctl_keys() {
        let f = fixture().flat();
        assert_eq!(f["sysctl.net.netfilter.nf_conntrack_count"], 4);
        assert_eq!(f["sysctl.net.netfilter.nf_conntrack_max"], 262144);
        assert_eq!(f["sysctl.net.netfilter.nf_conntrack_tcp_be_liberal"], 0);
        assert_eq!(f["sysctl.net.core.somaxconn"], 4096);
        assert_eq!(f["sysctl.net.ipv4.ip_local_port_range.min"], 32768);
        assert_eq!(f["sysctl.net.ipv4.ip_local_port_range.max"], 60999);
        assert_eq!(f["sysctl.net.ipv4.tcp_abort_on_overflow"], 0);
        assert_eq!(f["sysctl.net.ipv4.tcp_syn_linear_timeouts"], 4);
        assert_eq!(f["sysctl.net.netfilter.nf_conntrack_buckets"], 262144);
        assert_eq!(
            f["sysctl.net.netfilter.nf_conntrack_tcp_timeout_established"],
            432000
        );
        assert_eq!(f["sysctl.net.ipv4.tcp_max_syn_backlog"], 2048);
        assert_eq!(f["sysctl.net.ipv4.tcp_syncookies"], 1);
        assert_eq!(f["sysctl.net.ipv4.tcp_keepalive_time"], 7200);
        assert_eq!(f["sysctl.net.ipv4.tcp_tw_reuse"], 2);
    }

    #[test]
    fn listeners_from_proc_net_tcp() {
        let l = fixture().listeners();
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(l[0].addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(l[0].port, 9999);
        assert_eq!(l[0].queued, 2);
        assert_eq!(l[0].backlog, None);
        assert_eq!(l[0].inode, Some(15314));
        assert_eq!(l[0].is_full(), None);
        assert_eq!(l[1].addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(l[1].port, 9998);
        assert_eq!(l[1].queued, 1);
    }

    #[test]
    fn write_dir_round_trips() {
        let s = fixture();
        let dir = std::env::temp_dir().join(format!("ndk-kernel-roundtrip-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        s.write_dir(&dir).unwrap();
        let back = Snapshot::read_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(back.unwrap(), s);
    }

    #[test]
    fn unknown_files_are_kept_raw() {
        let s =
            Snapshot::from_files([("net/dev", "Inter-|...\n"), ("sys/kernel/x", "abc\n")]).unwrap();
        assert_eq!(s.raw("net/dev"), Some("Inter-|...\n"));
        assert!(s.flat().is_empty());
    }

    #[test]
    fn malformed_table_is_an_error_naming_the_file() {
        let err = Snapshot::from_files([("net/stat/nf_conntrack", "entries invalid\n1 zz\n")])
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("net/stat/nf_conntrack") && msg.contains("line 2"),
            "{msg}"
        );
    }

    #[test]
    fn missing_dir_names_the_path() {
        let err = Snapshot::read_dir("/nonexistent/ndk-snapshot").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/ndk-snapshot"),
            "{err}"
        );
    }

    #[test]
    fn delta_saturates_and_notes_backwards() {
        let earlier = fixture();
        let stat = earlier
            .raw("net/stat/nf_conntrack")
            .unwrap()
            .replace("0000000e", "00000010");
        let mut files: Vec<(String, String)> = earlier
            .paths()
            .map(|p| (p.to_owned(), earlier.raw(p).unwrap().to_owned()))
            .collect();
        for (p, t) in &mut files {
            if p == "net/stat/nf_conntrack" {
                *t = stat.clone();
            }
            if p == "sys/net/netfilter/nf_conntrack_count" {
                *t = "1\n".to_owned();
            }
        }
        files.retain(|(p, _)| p != "net/snmp6");
        let later = Snapshot::from_files(files).unwrap();
        let d = later.delta(&earlier);
        assert_eq!(d.get("conntrack.invalid"), Some(2));
        assert_eq!(d.get("sysctl.net.netfilter.nf_conntrack_count"), Some(0));
        assert_eq!(
            d.backwards,
            vec![Backwards {
                key: "sysctl.net.netfilter.nf_conntrack_count".into(),
                earlier: 4,
                later: 1
            }]
        );
        assert!(d.only_earlier.iter().any(|k| k == "Ip6.InReceives"));
        assert!(d.only_later.is_empty());
        assert_eq!(
            d.nonzero().collect::<Vec<_>>(),
            vec![("conntrack.invalid", 2)]
        );
    }

    proptest::proptest! {
        /// Any text in any known table gives a snapshot or an error naming the file,
        /// never a panic; and when it parses, listeners() and delta() are total.
        #[test]
        fn arbitrary_table_text_never_panics(
            file in proptest::sample::select(SNAPSHOT_FILES.to_vec()),
            text in "[ -~\\n\\t]{0,300}",
        ) {
            match Snapshot::from_files([(file, text)]) {
                Ok(s) => {
                    let _ = s.listeners();
                    let _ = s.delta(&fixture());
                }
                Err(e) => proptest::prop_assert!(e.to_string().contains(file), "{}", e),
            }
        }
    }
}
