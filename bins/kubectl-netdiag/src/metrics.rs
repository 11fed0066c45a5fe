//! `watch --metrics ADDR`: what the watch sees, as Prometheus metrics.
//!
//! prometheus-client keeps the values and writes the exposition (OpenMetrics text, which
//! Prometheus scrapes natively); tiny_http answers `GET /metrics` on its own thread.

use netdiag::analyze::watch::Activity;
use netdiag::analyze::{Finding, NetnsRole};
use netdiag::{PointTotals, TickStats};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    kind: String,
    confidence: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    origin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PointLabels {
    point: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CounterLabels {
    netns: String,
    key: String,
}

/// The metrics of one watch, updated from its events.
pub(crate) struct Metrics {
    findings: Family<FindingLabels, Counter>,
    dns_queries: Counter,
    dns_responses: Counter,
    dns_nxdomain: Counter,
    dns_nxdomain_share: Gauge<f64, AtomicU64>,
    dns_latency: Histogram,
    syn_retransmissions: Counter,
    resets: Family<OriginLabels, Counter>,
    packets: Family<PointLabels, Counter>,
    dropped: Family<PointLabels, Counter>,
    lost: Family<PointLabels, Counter>,
    unanalysed: Counter,
    kernel: Family<CounterLabels, Gauge<f64, AtomicU64>>,
    kernel_rise: Family<CounterLabels, Counter>,
    /// The last value read of each kernel counter, for its rise.
    kernel_last: HashMap<(NetnsRole, String), u64>,
    recorded_bytes: Gauge,
    /// Totals already added, per point (the library hands out totals, counters add deltas).
    seen: HashMap<&'static str, (u64, u64, u64)>,
    /// Totals of DNS answers, for the NXDOMAIN share.
    answers: (u64, u64),
    _server: Server,
}

/// The HTTP side: stops accepting when dropped.
struct Server {
    http: Arc<tiny_http::Server>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.http.unblock();
    }
}

/// `PORT` (on loopback) or `HOST:PORT`.
pub(crate) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| {
        format!("{s:?} is not an address to serve metrics on (examples: 9464, 127.0.0.1:9464, [::1]:9464)")
    })
}

impl Metrics {
    /// Registers every metric and starts serving them on `addr`.
    pub(crate) fn serve(addr: SocketAddr) -> anyhow::Result<Metrics> {
        let mut r = Registry::default();
        let findings = Family::<FindingLabels, Counter>::default();
        r.register(
            "netdiag_findings",
            "Finding episodes handed out, by kind and confidence",
            findings.clone(),
        );
        let dns_queries = Counter::default();
        r.register(
            "netdiag_dns_queries",
            "DNS queries sent",
            dns_queries.clone(),
        );
        let dns_responses = Counter::default();
        r.register(
            "netdiag_dns_responses",
            "DNS responses",
            dns_responses.clone(),
        );
        let dns_nxdomain = Counter::default();
        r.register(
            "netdiag_dns_nxdomain",
            "DNS responses with NXDOMAIN",
            dns_nxdomain.clone(),
        );
        let dns_nxdomain_share = Gauge::<f64, AtomicU64>::default();
        r.register(
            "netdiag_dns_nxdomain_share",
            "Share of DNS responses that were NXDOMAIN since the watch started",
            dns_nxdomain_share.clone(),
        );
        // 0.5 ms to ~16 s: a healthy cluster DNS answers in a millisecond; the resolver
        // timeouts of a lost reply are 5 s (glibc) and 2.5 s (musl).
        let dns_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        r.register(
            "netdiag_dns_lookup_latency_seconds",
            "Time from a DNS query to its response",
            dns_latency.clone(),
        );
        let syn_retransmissions = Counter::default();
        r.register(
            "netdiag_tcp_syn_retransmissions",
            "TCP SYNs retransmitted",
            syn_retransmissions.clone(),
        );
        let resets = Family::<OriginLabels, Counter>::default();
        r.register(
            "netdiag_tcp_resets",
            "TCP resets, by the side that sent them",
            resets.clone(),
        );
        let packets = Family::<PointLabels, Counter>::default();
        r.register(
            "netdiag_capture_packets",
            "Packets captured, by capture point",
            packets.clone(),
        );
        let dropped = Family::<PointLabels, Counter>::default();
        r.register(
            "netdiag_capture_dropped",
            "Packets the kernel or the interface dropped before the capture saw them",
            dropped.clone(),
        );
        let lost = Family::<PointLabels, Counter>::default();
        r.register(
            "netdiag_capture_lost",
            "Packets captured but lost before analysis (the hand-off was full)",
            lost.clone(),
        );
        let unanalysed = Counter::default();
        r.register(
            "netdiag_recorder_unanalysed",
            "Packets that left the flight recorder (its byte limit) before analysis",
            unanalysed.clone(),
        );
        let kernel = Family::<CounterLabels, Gauge<f64, AtomicU64>>::default();
        r.register(
            "netdiag_counter",
            "Kernel counters the detectors read, as last read (nstat, conntrack -S)",
            kernel.clone(),
        );
        let kernel_rise = Family::<CounterLabels, Counter>::default();
        r.register(
            "netdiag_counter_increase",
            "How much each kernel counter the detectors read rose while watched (a new \
             namespace, e.g. a recreated pod, starts from its first reading)",
            kernel_rise.clone(),
        );
        let recorded_bytes = Gauge::default();
        r.register(
            "netdiag_recorder_bytes",
            "Bytes the flight recorder holds",
            recorded_bytes.clone(),
        );

        let http = tiny_http::Server::http(addr)
            .map_err(|e| anyhow::anyhow!("--metrics {addr}: cannot listen: {e}"))?;
        let http = Arc::new(http);
        let registry = Arc::new(r);
        {
            let http = Arc::clone(&http);
            std::thread::Builder::new()
                .name("netdiag-metrics".into())
                .spawn(move || serve_loop(&http, &registry))
                .map_err(|e| anyhow::anyhow!("starting the metrics thread: {e}"))?;
        }
        Ok(Metrics {
            findings,
            dns_queries,
            dns_responses,
            dns_nxdomain,
            dns_nxdomain_share,
            dns_latency,
            syn_retransmissions,
            resets,
            packets,
            dropped,
            lost,
            unanalysed,
            kernel,
            kernel_rise,
            kernel_last: HashMap::new(),
            recorded_bytes,
            seen: HashMap::new(),
            answers: (0, 0),
            _server: Server { http },
        })
    }

    /// One episode handed out.
    pub(crate) fn finding(&self, f: &Finding) {
        self.findings
            .get_or_create(&FindingLabels {
                kind: f.kind.as_str().to_owned(),
                confidence: f.confidence.as_str().to_owned(),
            })
            .inc();
    }

    /// One tick's totals.
    pub(crate) fn tick(&mut self, t: &TickStats) {
        let a: &Activity = &t.activity;
        self.dns_queries.inc_by(a.dns_queries);
        self.dns_responses.inc_by(a.dns_responses);
        self.dns_nxdomain.inc_by(a.dns_nxdomain);
        self.answers.0 += a.dns_responses;
        self.answers.1 += a.dns_nxdomain;
        if self.answers.0 > 0 {
            self.dns_nxdomain_share
                .set(self.answers.1 as f64 / self.answers.0 as f64);
        }
        for ns in &a.dns_latencies_ns {
            self.dns_latency.observe(*ns as f64 / 1e9);
        }
        self.syn_retransmissions.inc_by(a.syn_retransmissions);
        for (origin, n) in ["client", "server", "unknown"]
            .iter()
            .zip(a.resets_by_origin)
        {
            if n > 0 {
                self.resets
                    .get_or_create(&OriginLabels {
                        origin: (*origin).to_owned(),
                    })
                    .inc_by(n);
            }
        }
        self.unanalysed.inc_by(a.unanalysed);
        for p in &t.captures {
            self.point(p);
        }
        for (role, values) in &t.counters {
            for (key, v) in values {
                let labels = CounterLabels {
                    netns: role_name(*role).to_owned(),
                    key: key.clone(),
                };
                self.kernel.get_or_create(&labels).set(*v as f64);
                // Table sizes (nf_conntrack_count, _max) go up and down: no increase.
                if GAUGES.contains(&key.as_str()) {
                    continue;
                }
                // A value below the last one is a new namespace (a recreated pod): its
                // counters began again at zero. The first reading is the baseline.
                if let Some(last) = self.kernel_last.insert((*role, key.clone()), *v) {
                    let rise = if *v >= last { *v - last } else { *v };
                    self.kernel_rise.get_or_create(&labels).inc_by(rise);
                }
            }
        }
        self.recorded_bytes
            .set(i64::try_from(t.recorded_bytes).unwrap_or(i64::MAX));
    }

    fn point(&mut self, p: &PointTotals) {
        let name = p.point.as_str();
        let labels = PointLabels {
            point: name.to_owned(),
        };
        let seen = self.seen.entry(name).or_default();
        self.packets
            .get_or_create(&labels)
            .inc_by(p.packets.saturating_sub(seen.0));
        self.dropped
            .get_or_create(&labels)
            .inc_by(p.dropped.saturating_sub(seen.1));
        self.lost
            .get_or_create(&labels)
            .inc_by(p.lost.saturating_sub(seen.2));
        *seen = (
            seen.0.max(p.packets),
            seen.1.max(p.dropped),
            seen.2.max(p.lost),
        );
    }
}

/// Kernel values that are levels, not counts.
const GAUGES: &[&str] = &[
    "sysctl.net.netfilter.nf_conntrack_count",
    "sysctl.net.netfilter.nf_conntrack_max",
];

fn role_name(r: NetnsRole) -> &'static str {
    r.as_str()
}

fn serve_loop(http: &tiny_http::Server, registry: &Registry) {
    for req in http.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or_default().to_owned();
        let response = if path == "/metrics" {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => {
                    let r = tiny_http::Response::from_string(body);
                    match tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                    ) {
                        Ok(h) => r.with_header(h),
                        Err(()) => r,
                    }
                }
                Err(_) => tiny_http::Response::from_string("encoding the metrics failed\n")
                    .with_status_code(500),
            }
        } else {
            tiny_http::Response::from_string("netdiag watch: metrics are at /metrics\n")
                .with_status_code(404)
        };
        // A scraper that hung up is not our problem.
        let _ = req.respond(response);
    }
}
