//! `resolv.conf` as glibc and musl read it (`man 5 resolv.conf`).

use serde::Serialize;

/// The resolver settings that matter to the DNS diagnoses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ResolvConf {
    /// `nameserver` lines, in order.
    pub nameservers: Vec<String>,
    /// The search list (`search`, or the last `domain` line), without trailing dots.
    pub search: Vec<String>,
    /// `options ndots:N` (default 1; capped at 15 like glibc).
    pub ndots: u8,
    /// `options timeout:N` in seconds (default 5; capped at 30).
    pub timeout_s: u8,
    /// `options attempts:N` (default 2; capped at 5).
    pub attempts: u8,
    /// `options single-request`.
    pub single_request: bool,
    /// `options single-request-reopen`.
    pub single_request_reopen: bool,
    /// `options use-vc` (DNS over TCP).
    pub use_vc: bool,
}

impl Default for ResolvConf {
    fn default() -> Self {
        ResolvConf {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout_s: 5,
            attempts: 2,
            single_request: false,
            single_request_reopen: false,
            use_vc: false,
        }
    }
}

impl ResolvConf {
    /// Parses resolv.conf text. Never fails: unknown lines and options are ignored, as
    /// the resolvers do; later `search`/`domain` lines replace earlier ones.
    pub fn parse(text: &str) -> ResolvConf {
        let mut rc = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            let Some(key) = words.next() else { continue };
            match key {
                "nameserver" => {
                    if let Some(ns) = words.next() {
                        rc.nameservers.push(ns.to_string());
                    }
                }
                "search" | "domain" => {
                    rc.search = words
                        .map(|w| w.trim_end_matches('.').to_ascii_lowercase())
                        .filter(|w| !w.is_empty())
                        .collect();
                }
                "options" => {
                    for opt in words {
                        rc.apply_option(opt);
                    }
                }
                _ => {}
            }
        }
        rc
    }

    fn apply_option(&mut self, opt: &str) {
        let (name, value) = match opt.split_once(':') {
            Some((n, v)) => (n, v.parse::<u32>().ok()),
            None => (opt, None),
        };
        match (name, value) {
            ("ndots", Some(v)) => self.ndots = v.min(15) as u8,
            ("timeout", Some(v)) => self.timeout_s = v.clamp(1, 30) as u8,
            ("attempts", Some(v)) => self.attempts = v.clamp(1, 5) as u8,
            ("single-request", _) => self.single_request = true,
            ("single-request-reopen", _) => self.single_request_reopen = true,
            ("use-vc", _) => self.use_vc = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_resolv_conf() {
        let rc = ResolvConf::parse(
            "search default.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 10.96.0.10\n\
             options ndots:5 timeout:2 attempts:3 single-request-reopen use-vc # comment\n",
        );
        assert_eq!(rc.nameservers, vec!["10.96.0.10"]);
        assert_eq!(
            rc.search,
            vec![
                "default.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!((rc.ndots, rc.timeout_s, rc.attempts), (5, 2, 3));
        assert!(rc.single_request_reopen && rc.use_vc && !rc.single_request);
    }

    #[test]
    fn defaults_and_clamping() {
        let rc = ResolvConf::parse("domain Example.COM.\noptions ndots:99 timeout:0 bogus\n");
        assert_eq!(rc.search, vec!["example.com"]);
        assert_eq!((rc.ndots, rc.timeout_s, rc.attempts), (15, 1, 2));
    }
}
