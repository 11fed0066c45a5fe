//! Which stub resolver the pod runs — glibc or musl — and the rules that follow from it.
//!
//! The two libraries read the same resolv.conf and behave differently (facts from their
//! sources: glibc `resolv/res_send.c`, `res_query.c`; musl `src/network/res_msend.c`,
//! `lookup_name.c`, `resolvconf.c`):
//!
//! | | glibc | musl |
//! |---|---|---|
//! | name with dots ≥ `ndots` | tried as written first, then the search list | tried as written only |
//! | several nameservers | one after another, on timeout | every query to all of them at once |
//! | unanswered query re-sent after | `timeout` (5 s) | `timeout / attempts` (2.5 s) |
//! | `single-request(-reopen)`, `use-vc`, `RES_OPTIONS` | honoured | ignored |
//! | no `/etc/nsswitch.conf` | `hosts: dns [!UNAVAIL=return] files`: DNS before /etc/hosts | not read at all |
//!
//! Live, the library is read from the ELF interpreter of the container's main process
//! (`netdiag_netns::resolver_identity`); offline it is inferred from the query pattern
//! ([`ResolverHints`]), or given (`--resolver`).

use crate::flow::{DenseKey, DenseMap, Endpoint};
use crate::resolv::ResolvConf;
use serde::Serialize;

/// The resolver library.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResolverLibrary {
    /// GNU libc (`ld-linux-*.so.*`): Debian, Ubuntu, RHEL, distroless/base images.
    Glibc,
    /// musl libc (`ld-musl-*.so.1`): Alpine images.
    Musl,
    /// Not known: a static binary (Go's own resolver, or a libc compiled in), or no evidence.
    Unknown,
}

impl ResolverLibrary {
    /// `"glibc"`, `"musl"` or `"unknown"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolverLibrary::Glibc => "glibc",
            ResolverLibrary::Musl => "musl",
            ResolverLibrary::Unknown => "unknown",
        }
    }

    /// Parses `"glibc"` or `"musl"` (as `--resolver` takes them).
    pub fn from_str_opt(s: &str) -> Option<ResolverLibrary> {
        match s.to_ascii_lowercase().as_str() {
            "glibc" | "gnu" => Some(ResolverLibrary::Glibc),
            "musl" => Some(ResolverLibrary::Musl),
            "unknown" => Some(ResolverLibrary::Unknown),
            _ => None,
        }
    }

    /// The library an ELF interpreter path names: `ld-musl-*` is musl, `ld-linux*` and
    /// `ld64.so.*` are glibc, anything else is unknown.
    pub fn from_interpreter(interp: &str) -> ResolverLibrary {
        let file = interp.rsplit('/').next().unwrap_or(interp);
        if file.starts_with("ld-musl-") {
            ResolverLibrary::Musl
        } else if file.starts_with("ld-linux") || file.starts_with("ld64.so.") {
            ResolverLibrary::Glibc
        } else {
            ResolverLibrary::Unknown
        }
    }
}

impl std::fmt::Display for ResolverLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the resolver identity came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResolverSource {
    /// The ELF interpreter of the container's process (live).
    Elf,
    /// Inferred from the DNS query pattern in the capture.
    Packets,
    /// Given by the caller (`--resolver`).
    Given,
}

impl ResolverSource {
    /// `"elf"`, `"packets"` or `"given"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolverSource::Elf => "elf",
            ResolverSource::Packets => "packets",
            ResolverSource::Given => "given",
        }
    }
}

/// The pod's resolver as the report states it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Resolver {
    /// glibc, musl or unknown.
    pub library: ResolverLibrary,
    /// How we know.
    pub source: ResolverSource,
    /// The evidence in words (`interpreter /lib/ld-musl-x86_64.so.1 of /bin/app`,
    /// `retries 2.5 s after the query`, …).
    pub detail: String,
    /// Whether the image has `/etc/nsswitch.conf` (live only; `None` offline).
    pub nsswitch_conf: Option<bool>,
}

impl Resolver {
    /// A resolver identity.
    pub fn new(
        library: ResolverLibrary,
        source: ResolverSource,
        detail: impl Into<String>,
    ) -> Self {
        Resolver {
            library,
            source,
            detail: detail.into(),
            nsswitch_conf: None,
        }
    }

    /// Records whether `/etc/nsswitch.conf` exists in the image.
    pub fn with_nsswitch_conf(mut self, exists: bool) -> Self {
        self.nsswitch_conf = Some(exists);
        self
    }

    /// One line for humans: `musl (ELF interpreter …); no /etc/nsswitch.conf`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} ({}: {})",
            self.library,
            match self.source {
                ResolverSource::Elf => "ELF interpreter",
                ResolverSource::Packets => "inferred from the queries",
                ResolverSource::Given => "given",
            },
            self.detail
        );
        match self.nsswitch_conf {
            Some(false) => s.push_str("; no /etc/nsswitch.conf"),
            Some(true) => s.push_str("; /etc/nsswitch.conf present"),
            None => {}
        }
        s
    }
}

impl Resolver {
    /// What a missing `/etc/nsswitch.conf` means for this library, if it is missing.
    pub(crate) fn nsswitch_note(&self) -> Option<&'static str> {
        match (self.nsswitch_conf, self.library) {
            (Some(false), ResolverLibrary::Musl) => None,
            (Some(false), ResolverLibrary::Glibc) => Some(
                "the image has no /etc/nsswitch.conf: glibc then uses `hosts: dns [!UNAVAIL=return] files`, so names in /etc/hosts are asked of DNS first (add an nsswitch.conf with `hosts: files dns`)",
            ),
            (Some(false), _) => Some(
                "the image has no /etc/nsswitch.conf: glibc-based clients then ask DNS before /etc/hosts (Go's resolver and musl read /etc/hosts first)",
            ),
            _ => None,
        }
    }
}

/// musl's re-send interval for an unanswered query: `timeout / attempts`, in ns.
pub(crate) fn musl_retry_ns(rc: Option<&ResolvConf>) -> u64 {
    let (t, a) = rc.map_or((5, 2), |r| (u64::from(r.timeout_s), u64::from(r.attempts)));
    t.saturating_mul(1_000_000_000) / a.max(1)
}

/// glibc's re-send interval: `timeout`, in ns.
pub(crate) fn glibc_retry_ns(rc: Option<&ResolvConf>) -> u64 {
    u64::from(rc.map_or(5, |r| r.timeout_s)).saturating_mul(1_000_000_000)
}

/// How close (ns) a retry gap must be to a resolver's interval to count for it.
const GAP_TOLERANCE_NS: u64 = 400_000_000;
/// The same query to another nameserver within this time counts as "in parallel".
const PARALLEL_NS: u64 = 50_000_000;
/// Most queries remembered for the parallel-nameserver check.
const MAX_RECENT: usize = 4096;

/// Query-pattern evidence collected while packets are fed (bounded).
#[derive(Default)]
pub(crate) struct ResolverHints {
    /// (source, client socket, id, qtype) → (server, ns) of the last query.
    /// Looked up for every query and never iterated: a [`DenseMap`].
    recent: DenseMap<RecentKey, (Endpoint, u64)>,
    /// Queries seen sent to a second nameserver at once (musl).
    pub(crate) parallel: u64,
    /// An example: the client socket and the two servers.
    pub(crate) parallel_example: Option<(Endpoint, Endpoint, Endpoint)>,
}

/// A query's socket, ID and type, in one capture source.
#[derive(Clone, Copy, PartialEq, Eq)]
struct RecentKey {
    source: u16,
    client: Endpoint,
    id: u16,
    qtype: u16,
}

impl DenseKey for RecentKey {
    #[inline]
    fn dense_hash(&self) -> u32 {
        use std::hash::Hasher as _;
        let mut h = crate::flow::FxHasher::default();
        h.add(
            u64::from(self.client.1)
                | u64::from(self.qtype) << 16
                | u64::from(self.source) << 32
                | u64::from(self.id) << 48,
        );
        match self.client.0 {
            std::net::IpAddr::V4(v) => h.add(u64::from(u32::from(v))),
            std::net::IpAddr::V6(v) => {
                let w = u128::from(v);
                h.add(w as u64);
                h.add((w >> 64) as u64);
            }
        }
        h.finish() as u32
    }
}

impl ResolverHints {
    /// One DNS query from `client` to `server`.
    pub(crate) fn on_query(
        &mut self,
        source: u16,
        client: Endpoint,
        server: Endpoint,
        id: u16,
        qtype: u16,
        ns: u64,
    ) {
        let key = RecentKey {
            source,
            client,
            id,
            qtype,
        };
        // One probe: a known key is updated in place; a new one is added (after the
        // reset when the table is full).
        let hash = DenseMap::<RecentKey, (Endpoint, u64)>::hash_of(&key);
        if let Some(v) = self.recent.get_mut_hashed(&key, hash) {
            let (prev, t) = *v;
            if prev != server && ns.saturating_sub(t) <= PARALLEL_NS {
                self.parallel += 1;
                if self.parallel_example.is_none() {
                    self.parallel_example = Some((client, prev, server));
                }
            }
            *v = (server, ns);
            return;
        }
        if self.recent.len() >= MAX_RECENT {
            self.recent.clear();
        }
        self.recent.insert_absent_hashed(key, hash, (server, ns));
    }

    /// The library the packets point to, if they point anywhere: queries sent to several
    /// nameservers at once are musl; same-ID re-sends after `timeout/attempts` are musl,
    /// after `timeout` glibc (when the two differ).
    pub(crate) fn infer(&self, retry_gaps_ns: &[u64], rc: Option<&ResolvConf>) -> Option<Resolver> {
        if let Some((c, a, b)) = self.parallel_example {
            return Some(Resolver::new(
                ResolverLibrary::Musl,
                ResolverSource::Packets,
                format!(
                    "{} same-ID quer{} sent to several nameservers at once (e.g. {} to {} and {}): musl queries all nameservers in parallel",
                    self.parallel,
                    if self.parallel == 1 { "y" } else { "ies" },
                    crate::detect::endpoint_text(c),
                    crate::detect::endpoint_text(a),
                    crate::detect::endpoint_text(b),
                ),
            ));
        }
        let musl = musl_retry_ns(rc);
        let glibc = glibc_retry_ns(rc);
        if musl.abs_diff(glibc) <= 2 * GAP_TOLERANCE_NS {
            return None;
        }
        let near = |g: u64, t: u64| g.abs_diff(t) <= GAP_TOLERANCE_NS;
        let m = retry_gaps_ns.iter().filter(|g| near(**g, musl)).count();
        let gl = retry_gaps_ns.iter().filter(|g| near(**g, glibc)).count();
        let (lib, n, t) = match (m, gl) {
            (0, 0) => return None,
            (m, 0) => (ResolverLibrary::Musl, m, musl),
            (0, g) => (ResolverLibrary::Glibc, g, glibc),
            _ => return None,
        };
        Some(Resolver::new(
            lib,
            ResolverSource::Packets,
            format!(
                "{n} unanswered quer{} re-sent after {:.1} s ({})",
                if n == 1 { "y" } else { "ies" },
                t as f64 / 1e9,
                if lib == ResolverLibrary::Musl {
                    "musl re-sends every timeout/attempts"
                } else {
                    "glibc re-sends after timeout"
                }
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreters_name_their_library() {
        for (i, want) in [
            ("/lib/ld-musl-x86_64.so.1", ResolverLibrary::Musl),
            ("/lib/ld-musl-aarch64.so.1", ResolverLibrary::Musl),
            ("/lib64/ld-linux-x86-64.so.2", ResolverLibrary::Glibc),
            ("/lib/ld-linux-aarch64.so.1", ResolverLibrary::Glibc),
            ("/lib/ld-linux.so.2", ResolverLibrary::Glibc),
            ("/lib64/ld64.so.2", ResolverLibrary::Glibc),
            ("/system/bin/linker64", ResolverLibrary::Unknown),
            ("", ResolverLibrary::Unknown),
        ] {
            assert_eq!(ResolverLibrary::from_interpreter(i), want, "{i}");
        }
    }

    #[test]
    fn retry_gap_tells_musl_from_glibc() {
        let h = ResolverHints::default();
        let m = h.infer(&[2_500_300_000], None).expect("musl");
        assert_eq!(m.library, ResolverLibrary::Musl);
        let g = h.infer(&[5_000_100_000], None).expect("glibc");
        assert_eq!(g.library, ResolverLibrary::Glibc);
        assert!(h.infer(&[], None).is_none());
        assert!(h.infer(&[2_500_000_000, 5_000_000_000], None).is_none());
        // attempts:1 makes both intervals equal: no verdict.
        let rc = ResolvConf::parse("options timeout:3 attempts:1\n");
        assert!(h.infer(&[3_000_000_000], Some(&rc)).is_none());
    }

    #[test]
    fn same_query_to_two_nameservers_at_once_is_musl() {
        let mut h = ResolverHints::default();
        let c: Endpoint = ("10.0.0.5".parse().expect("ip"), 40000);
        let s1: Endpoint = ("10.96.0.10".parse().expect("ip"), 53);
        let s2: Endpoint = ("10.96.0.11".parse().expect("ip"), 53);
        h.on_query(0, c, s1, 7, 1, 1_000);
        h.on_query(0, c, s2, 7, 1, 2_000);
        let r = h.infer(&[], None).expect("musl");
        assert_eq!(r.library, ResolverLibrary::Musl);
        assert!(r.detail.contains("10.96.0.11:53"), "{}", r.detail);
        // The same query to one server after a timeout is not parallel.
        let mut h = ResolverHints::default();
        h.on_query(0, c, s1, 7, 1, 0);
        h.on_query(0, c, s2, 7, 1, 5_000_000_000);
        assert_eq!(h.parallel, 0);
    }
}

#[cfg(test)]
mod nsswitch_tests {
    use super::*;

    #[test]
    fn missing_nsswitch_matters_for_glibc_not_musl() {
        let g = Resolver::new(ResolverLibrary::Glibc, ResolverSource::Elf, "x")
            .with_nsswitch_conf(false);
        assert!(
            g.nsswitch_note()
                .is_some_and(|n| n.contains("dns [!UNAVAIL=return] files"))
        );
        let m = Resolver::new(ResolverLibrary::Musl, ResolverSource::Elf, "x")
            .with_nsswitch_conf(false);
        assert!(m.nsswitch_note().is_none());
        let present = Resolver::new(ResolverLibrary::Glibc, ResolverSource::Elf, "x")
            .with_nsswitch_conf(true);
        assert!(present.nsswitch_note().is_none());
        assert!(g.describe().contains("no /etc/nsswitch.conf"));
    }
}

impl ResolverHints {
    /// Most heap bytes the remembered queries take.
    pub(crate) fn bytes_bound() -> usize {
        DenseMap::<RecentKey, (Endpoint, u64)>::bytes_bound(MAX_RECENT)
    }
}
