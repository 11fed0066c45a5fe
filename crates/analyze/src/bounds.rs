//! How full every table is ([`Analyzer::tables`]) and the most heap the analyzer can hold
//! ([`Config::memory_bound_bytes`]), computed from the caps and the sizes of the stored
//! types, so a change of either moves the bound with it.

use crate::{Analyzer, Config, Flow, SkipKind, destinations, dns, flow};

/// One bounded table: entries held now and the most it may hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableFill {
    /// Entries held now.
    pub len: usize,
    /// The cap: `len` never exceeds it.
    pub cap: usize,
}

impl TableFill {
    fn new(len: usize, cap: usize) -> Self {
        TableFill { len, cap }
    }

    /// Whether the table holds as many entries as it may.
    pub fn is_full(&self) -> bool {
        self.len >= self.cap
    }
}

/// Every table of the analyzer whose size depends on the input, with its cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tables {
    /// TCP and UDP flows ([`Config::max_flows`]).
    pub flows: TableFill,
    /// Open DNS transactions, ID + 5-tuple ([`Config::max_dns_transactions`]).
    pub dns_transactions: TableFill,
    /// The last query per client socket, to pair A/AAAA siblings (emptied when it reaches
    /// [`Config::max_dns_transactions`]).
    pub dns_sockets: TableFill,
    /// DNS clients with open lookups ([`Config::max_dns_clients`]).
    pub dns_clients: TableFill,
    /// Open logical lookups over all clients (8 per client).
    pub dns_lookups: TableFill,
    /// Destinations `ip:port` with connection-attempt statistics
    /// ([`Config::max_destinations`]).
    pub destinations: TableFill,
    /// Source addresses whose TTLs say local or routed (8 192).
    pub addresses: TableFill,
    /// Servers named in the report's `unanswered_syns` (1 024).
    pub unanswered_syn_servers: TableFill,
    /// Kinds of skipped packets (one per link type at most, 16-bit link types).
    pub skip_kinds: TableFill,
    /// Destinations whose clients closed connections first (TIME_WAIT pressure; 16 384).
    pub closing_destinations: TableFill,
    /// Destinations that answered connection attempts with a RST (16 384).
    pub refused_destinations: TableFill,
    /// Open connections that left the flow table, remembered to recognise their
    /// resumption (8 192).
    pub dormant_connections: TableFill,
    /// Connections that resumed after a long silence, awaiting an answer (1 024).
    pub resumed_connections: TableFill,
    /// DNS-over-TCP streams being reassembled (1 024).
    pub dns_tcp_streams: TableFill,
}

/// Most `unanswered_syns` entries (`Analyzer::close_out`).
pub(crate) const MAX_UNANSWERED_SYN_SERVERS: usize = 1024;
/// Most source addresses `Locality` tracks.
pub(crate) const MAX_ADDRESSES: usize = 8192;
/// Skip kinds: every 16-bit link type, plus the fixed kinds.
const MAX_SKIP_KINDS: usize = (1 << 16) + 64;

impl Analyzer {
    /// How full every input-driven table is now (for memory tests and `--stats`).
    pub fn tables(&self) -> Tables {
        let dns = self.dns_stage.last_snapshot();
        let (txns, sockets, clients, lookups) = dns.fill;
        let [refused, dormant, resumed] = self
            .conn_events
            .fill()
            .map(|(len, cap)| TableFill::new(len, cap));
        let c = &self.config;
        let txn_cap = dns::txn_cap(c.max_dns_transactions);
        let client_cap = dns::client_cap(c.max_dns_clients);
        Tables {
            flows: TableFill::new(self.flows.len(), c.max_flows),
            dns_transactions: TableFill::new(txns, txn_cap),
            dns_sockets: TableFill::new(sockets, txn_cap),
            dns_clients: TableFill::new(clients, client_cap),
            dns_lookups: TableFill::new(lookups, client_cap * dns::LOOKUPS_PER_CLIENT),
            destinations: TableFill::new(dns.destinations, c.max_destinations.max(1)),
            addresses: TableFill::new(dns.addresses, MAX_ADDRESSES),
            unanswered_syn_servers: TableFill::new(
                self.tcp.unanswered_syns.len(),
                MAX_UNANSWERED_SYN_SERVERS,
            ),
            // The DNS side counts its unparseable messages apart until `finish`.
            skip_kinds: TableFill::new(
                self.skipped.len()
                    + usize::from(
                        dns.malformed > 0 && !self.skipped.contains_key(&SkipKind::DnsMalformed),
                    ),
                MAX_SKIP_KINDS,
            ),
            closing_destinations: TableFill::new(
                dns.closing,
                crate::conn_events::Closes::fill_cap(),
            ),
            refused_destinations: refused,
            dormant_connections: dormant,
            resumed_connections: resumed,
            dns_tcp_streams: {
                let (len, cap) = dns.dns_tcp_fill;
                TableFill::new(len, cap)
            },
        }
    }
}

/// Heap bytes of a `HashMap` that has held up to `n` entries of `(K, V)`: hashbrown keeps
/// 7/8 of a power-of-two bucket count usable, one control byte per bucket plus a group;
/// while it grows the old buckets are alive too (the half again).
pub(crate) fn map_bytes<K, V>(n: usize) -> usize {
    let buckets = (n.saturating_mul(8) / 7 + 1).next_power_of_two().max(4);
    let table = buckets * (std::mem::size_of::<(K, V)>() + 1) + 16;
    table + table / 2
}

/// `value` in a box taken from `spare` (allocations of state that was dropped, kept for
/// reuse), or in a new one when there is none: state that lives out of line allocates
/// nothing once as many boxes were in use at once.
#[allow(clippy::vec_box)] // the spares are allocations to reuse, not values
pub(crate) fn reuse_box<T>(spare: &mut Vec<Box<T>>, value: T) -> Box<T> {
    match spare.pop() {
        Some(mut b) => {
            *b = value;
            b
        }
        None => Box::new(value),
    }
}

/// Heap bytes of a `Vec<T>` grown by pushing up to `n` elements (capacity doubles; the
/// old buffer is alive while it moves).
pub(crate) fn vec_bytes<T>(n: usize) -> usize {
    let cap = n.next_power_of_two().max(4);
    let buf = cap * std::mem::size_of::<T>();
    buf + buf / 2
}

/// Bytes of a `String` of up to `n` bytes.
pub(crate) fn string_bytes(n: usize) -> usize {
    n.next_power_of_two()
}

impl Config {
    /// The most heap bytes an [`Analyzer`] with this config holds at any instant,
    /// whatever it is fed, up to and including [`Analyzer::finish`] (not counting the
    /// [`Report`](crate::Report) it returns, whose lists are capped too): every table at
    /// its cap with every entry at its largest, plus each table's growth transient.
    ///
    /// With [`Config::default`] this is about 1.5 GiB: the UDP detector's per-server
    /// windows (~850 MiB at their caps), then the flow table
    /// (twice: flows leaving the table all at once, on an idle sweep or at `finish`, are
    /// handed to the detectors from a list), the DNS clients' lookups and the
    /// destinations. Lower the caps to lower it; `tests/tests/analyze_bounded.rs`
    /// feeds a hostile mix and checks the measured peak against it.
    pub fn memory_bound_bytes(&self) -> usize {
        let flows = self.max_flows.max(1);
        let flow_table =
            flow::FlowTable::<Flow>::bytes_bound(flows) + crate::Conns::bytes_bound(flows);
        let closing = vec_bytes::<(flow::FlowKey, crate::tcp::TcpConn)>(flows);
        // Out-of-line TCP state: at most one box per flow held or closing, plus the
        // spares (no more boxes exist than were ever in use at once).
        let cold = 2 * flows * std::mem::size_of::<crate::tcp::TcpCold>()
            + vec_bytes::<Box<crate::tcp::TcpCold>>(2 * flows);
        let unanswered = MAX_UNANSWERED_SYN_SERVERS
            * (std::mem::size_of::<(String, u64)>() * 2 + string_bytes(48));
        let skipped = map_bytes::<SkipKind, u64>(MAX_SKIP_KINDS);
        let addresses = destinations::Locality::bytes_bound(MAX_ADDRESSES);
        flow_table
            + closing
            + cold
            + dns::DnsTracker::bytes_bound(self.max_dns_transactions, self.max_dns_clients)
            + destinations::Destinations::bytes_bound(self.max_destinations)
            + addresses
            + crate::detect::conntrack_invalid::ConntrackInvalid::bytes_bound()
            + crate::conn_events::ConnEvents::bytes_bound()
            + crate::conn_events::Closes::bytes_bound()
            + crate::detect::udp_receive_buffer_overflow::UdpServices::bytes_bound()
            + crate::detect::path_mtu_blackhole::PmtuTracker::bytes_bound()
            + crate::resolver::ResolverHints::bytes_bound()
            + crate::dnstcp::DnsTcp::bytes_bound()
            + crate::overlay::Overlay::bytes_bound()
            + if self.dns_thread {
                crate::dnsstage::thread_bytes_bound()
            } else {
                0
            }
            + unanswered
            + skipped
    }
}
