//! The reproductions: five failures (accept-queue overflow in two sub-cases, conntrack
//! INVALID in two variants) and their healthy baselines, and issue 13's five more with
//! their twins (`more_failures.rs`). Each is `setup` then `trigger`;
//! the trigger is bounded in count and time and returns its [`Evidence`], including
//! counter snapshots of the pod and node netns taken just before and just after.

use super::counters::Snapshot;
use super::inject::{self, Sniffer};
use super::sock;
use super::{EXT_IP, Lab, NODE_UPLINK_IF, POD_IP, Role, SERVICE_VIP};
use anyhow::{Context, Result, bail};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

/// Finding kinds (the JSON `kind` strings of DETECTION.md and docs/DETECTION.md).
pub const KINDS: [&str; 9] = [
    "conntrack_invalid",
    "accept_queue_overflow",
    "snat_port_exhaustion",
    "dns_ndots_amplification",
    "dns_lost_reply_timeout",
    "conntrack_table_full",
    "ephemeral_port_exhaustion",
    "connection_refused",
    "nat_idle_timeout",
];

/// One reproducible situation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// Listener (backlog 1) that never accepts; its queue is full, so new SYNs are dropped.
    AcceptOverflowSyn,
    /// Same listener; the handshake completes on the client, the server drops the segment
    /// that would complete it (queue full) and never ACKs the client's data.
    AcceptOverflowAck,
    /// MASQUERADE squeezed to 4 source ports, 20 concurrent connects to one destination.
    SnatExhaustion,
    /// A NATed connection receives a segment with SEQ ≈ +2^30: node counts it INVALID,
    /// answers RST, and the connection dies.
    ConntrackInvalid,
    /// Service variant: DNAT from a VIP; the INVALID segment is not reverse-DNATed and
    /// reaches the pod from the backend address.
    ConntrackInvalidService,
    /// glibc with kubelet's `ndots:5` and three search domains resolves `api.example.test`.
    DnsNdots,
    /// The AAAA reply of the pair is dropped once at the node: glibc re-sends after 5 s.
    DnsLostReply,
    /// A listener that accepts at once: no overflow.
    HealthyListener,
    /// MASQUERADE with the normal port range: 20 concurrent connects all succeed.
    HealthySnat,
    /// HTTP/1.1 keep-alive through the NAT, several requests per connection, normal closes.
    HealthyHttp,
    /// Fully-qualified lookups (trailing dot): one A and one AAAA per name.
    HealthyDns,
    /// The node's conntrack table is full (global `nf_conntrack_max` lowered under a
    /// guard, filled with held connections): new connections to three servers get no
    /// SYN-ACK.
    ConntrackTableFull,
    /// The pod's port range is 10 ports; short connections to one server fill it with
    /// TIME_WAIT sockets and `connect()` fails with EADDRNOTAVAIL.
    EphemeralPortExhaustion,
    /// Healthy twin: the same short connections with a 100-port range.
    HealthyShortConnections,
    /// A Service VIP DNATed to a port where nothing listens: every attempt is refused.
    ConnectionRefused,
    /// A backend accepts three connections, stops listening, and is refused thrice.
    ConnectionRefusedGoingAway,
    /// Healthy twin: one refused attempt, never retried.
    HealthyRefusedOnce,
    /// Handshakes left half-open fill a listener's SYN queue (syncookies off): later
    /// SYNs are dropped (`TCPReqQFullDrop`).
    SynQueueOverflow,
    /// A Service connection idles past the node's conntrack established timeout; its
    /// resumed request is DNATed to the other backend, which answers RST.
    NatIdleTimeout,
    /// Healthy twin: the same idle connection under a longer timeout is answered.
    HealthyIdle,
}

const ACCEPT_SYN_PORT: u16 = 8080;
const ACCEPT_ACK_PORT: u16 = 8081;
const HEALTHY_LISTENER_PORT: u16 = 8082;
const SNAT_PORT: u16 = 80;
const VICTIM_PORT: u16 = 9000;
const HTTP_PORT: u16 = 8080;
/// Connections that fit a backlog-1 accept queue (backlog + 1).
pub const ACCEPT_QUEUE_FITS: usize = 2;
/// Connections started against the full queue in the SYN sub-case.
pub const ACCEPT_SYN_EXTRA: usize = 6;
/// Connections of the ACK sub-case.
pub const ACCEPT_ACK_CLIENTS: usize = 6;
/// Concurrent connects of the SNAT scenarios.
pub const SNAT_CLIENTS: usize = 20;
/// Source ports MASQUERADE may use in the exhaustion scenario (61000-61003).
pub const SNAT_PORTS: usize = 4;
/// The name every DNS scenario looks up (dnsmasq answers 203.0.113.7).
pub const DNS_NAME: &str = "api.example.test";
/// glibc's `timeout` in the lost-reply scenario.
pub const DNS_TIMEOUT_S: u64 = 5;

/// What a trigger observed: the outcome seen by the applications, and counter snapshots.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The scenario that produced it.
    pub scenario: Scenario,
    /// Pod netns counters before the trigger.
    pub pod_before: Snapshot,
    /// Pod netns counters after the trigger.
    pub pod_after: Snapshot,
    /// Node netns counters before the trigger.
    pub node_before: Snapshot,
    /// Node netns counters after the trigger.
    pub node_after: Snapshot,
    /// TCP connections that completed (client side), for TCP scenarios.
    pub connected: usize,
    /// TCP connections that never completed (client side).
    pub not_connected: usize,
    /// INVALID scenarios: whether the victim connection was reset afterwards.
    pub connection_died: Option<bool>,
    /// DNS scenarios: queries dnsmasq logged during the trigger.
    pub dns_queries: Option<usize>,
    /// DNS scenarios: how long `getent ahosts` took.
    pub lookup_elapsed: Option<Duration>,
    /// DNS scenarios: what `getent ahosts` printed.
    pub lookup_output: Option<String>,
}

impl Evidence {
    fn new(scenario: Scenario, pod_before: Snapshot, node_before: Snapshot) -> Evidence {
        Evidence {
            scenario,
            pod_after: pod_before.clone(),
            node_after: node_before.clone(),
            pod_before,
            node_before,
            connected: 0,
            not_connected: 0,
            connection_died: None,
            dns_queries: None,
            lookup_elapsed: None,
            lookup_output: None,
        }
    }

    /// Change of a flat counter in the pod netns.
    pub fn pod_delta(&self, key: &str) -> i64 {
        self.pod_before.delta(&self.pod_after, key)
    }

    /// Change of a flat counter in the node netns.
    pub fn node_delta(&self, key: &str) -> i64 {
        self.node_before.delta(&self.node_after, key)
    }
}

/// Counters printed by [`Evidence`]'s `Display`.
pub const INTERESTING: [(&str, &str); 13] = [
    ("pod", "TcpExt.ListenOverflows"),
    ("pod", "TcpExt.ListenDrops"),
    ("pod", "TcpExt.TCPReqQFullDrop"),
    ("pod", "Tcp.AttemptFails"),
    ("pod", "TcpExt.TCPSynRetrans"),
    ("pod", "Tcp.OutRsts"),
    ("node", "conntrack.invalid"),
    ("node", "conntrack.insert_failed"),
    ("node", "conntrack.drop"),
    ("node", "conntrack.clash_resolve"),
    ("node", "conntrack.early_drop"),
    ("node", "Tcp.OutRsts"),
    ("node", "sysctl.net.netfilter.nf_conntrack_count"),
];

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "scenario {}", self.scenario.name())?;
        if self.connected + self.not_connected > 0 {
            writeln!(
                f,
                "  tcp: {} connected, {} never connected",
                self.connected, self.not_connected
            )?;
        }
        if let Some(d) = self.connection_died {
            writeln!(f, "  victim connection reset afterwards: {d}")?;
        }
        if let Some(q) = self.dns_queries {
            writeln!(f, "  dns: {q} queries reached dnsmasq")?;
        }
        if let Some(e) = self.lookup_elapsed {
            writeln!(f, "  dns: getent ahosts took {:.3} s", e.as_secs_f64())?;
        }
        if let Some(o) = &self.lookup_output {
            for l in o.lines().take(4) {
                writeln!(f, "    | {l}")?;
            }
        }
        for (role, key) in INTERESTING {
            let d = if role == "pod" {
                self.pod_delta(key)
            } else {
                self.node_delta(key)
            };
            writeln!(f, "  {role:<4} {key:<26} {d:+}")?;
        }
        Ok(())
    }
}

impl Scenario {
    /// Every scenario, failures first.
    pub const ALL: [Scenario; 20] = [
        Scenario::AcceptOverflowSyn,
        Scenario::AcceptOverflowAck,
        Scenario::SnatExhaustion,
        Scenario::ConntrackInvalid,
        Scenario::ConntrackInvalidService,
        Scenario::DnsNdots,
        Scenario::DnsLostReply,
        Scenario::HealthyListener,
        Scenario::HealthySnat,
        Scenario::HealthyHttp,
        Scenario::HealthyDns,
        Scenario::ConntrackTableFull,
        Scenario::EphemeralPortExhaustion,
        Scenario::HealthyShortConnections,
        Scenario::ConnectionRefused,
        Scenario::ConnectionRefusedGoingAway,
        Scenario::HealthyRefusedOnce,
        Scenario::SynQueueOverflow,
        Scenario::NatIdleTimeout,
        Scenario::HealthyIdle,
    ];

    /// The scenario's name (its `testdata/` directory).
    pub fn name(self) -> &'static str {
        match self {
            Scenario::AcceptOverflowSyn => "accept_overflow_syn",
            Scenario::AcceptOverflowAck => "accept_overflow_ack",
            Scenario::SnatExhaustion => "snat_exhaustion",
            Scenario::ConntrackInvalid => "conntrack_invalid",
            Scenario::ConntrackInvalidService => "conntrack_invalid_service",
            Scenario::DnsNdots => "dns_ndots",
            Scenario::DnsLostReply => "dns_lost_reply",
            Scenario::HealthyListener => "healthy_listener",
            Scenario::HealthySnat => "healthy_snat",
            Scenario::HealthyHttp => "healthy_http",
            Scenario::HealthyDns => "healthy_dns",
            Scenario::ConntrackTableFull => "conntrack_table_full",
            Scenario::EphemeralPortExhaustion => "ephemeral_port_exhaustion",
            Scenario::HealthyShortConnections => "healthy_short_connections",
            Scenario::ConnectionRefused => "connection_refused",
            Scenario::ConnectionRefusedGoingAway => "connection_refused_going_away",
            Scenario::HealthyRefusedOnce => "healthy_refused_once",
            Scenario::SynQueueOverflow => "syn_queue_overflow",
            Scenario::NatIdleTimeout => "nat_idle_timeout",
            Scenario::HealthyIdle => "healthy_idle",
        }
    }

    /// The scenario called `name`.
    pub fn from_name(name: &str) -> Result<Scenario> {
        Scenario::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .with_context(|| {
                let all: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {name:?} (known: {})", all.join(", "))
            })
    }

    /// Finding kinds a recording of this scenario must yield.
    pub fn expect(self) -> &'static [&'static str] {
        match self {
            Scenario::AcceptOverflowSyn
            | Scenario::AcceptOverflowAck
            | Scenario::SynQueueOverflow => &["accept_queue_overflow"],
            Scenario::ConntrackTableFull => &["conntrack_table_full"],
            Scenario::EphemeralPortExhaustion => &["ephemeral_port_exhaustion"],
            Scenario::ConnectionRefused | Scenario::ConnectionRefusedGoingAway => {
                &["connection_refused"]
            }
            Scenario::NatIdleTimeout => &["nat_idle_timeout"],
            Scenario::SnatExhaustion => &["snat_port_exhaustion"],
            Scenario::ConntrackInvalid | Scenario::ConntrackInvalidService => {
                &["conntrack_invalid"]
            }
            Scenario::DnsNdots => &["dns_ndots_amplification"],
            Scenario::DnsLostReply => &["dns_lost_reply_timeout"],
            Scenario::HealthyListener
            | Scenario::HealthySnat
            | Scenario::HealthyHttp
            | Scenario::HealthyDns
            | Scenario::HealthyShortConnections
            | Scenario::HealthyRefusedOnce
            | Scenario::HealthyIdle => &[],
        }
    }

    /// Finding kinds a recording of this scenario must not yield: every other kind.
    pub fn forbid(self) -> Vec<&'static str> {
        KINDS
            .into_iter()
            .filter(|k| !self.expect().contains(k))
            .collect()
    }

    /// Whether the recording includes a capture on the node's uplink.
    pub fn needs_node_capture(self) -> bool {
        matches!(
            self,
            Scenario::SnatExhaustion
                | Scenario::ConntrackInvalid
                | Scenario::ConntrackInvalidService
                | Scenario::HealthySnat
        )
    }

    /// How the reproduction works, for the manifest and `xtask lab list`.
    pub fn notes(self) -> &'static str {
        match self {
            Scenario::AcceptOverflowSyn => {
                "pod listens on 10.244.1.10:8080 with listen(backlog=1) and never accepts; ext connects 2 (they fill the queue: backlog+1), then 6 more non-blocking connects held 3.5 s: their SYNs are dropped and retransmitted (tcp_syn_linear_timeouts=4: 1 s steps). Pod TcpExt.ListenOverflows/ListenDrops rise."
            }
            Scenario::AcceptOverflowAck => {
                "pod listens on 10.244.1.10:8081 with backlog=1, never accepts; a pod iptables rule drops bare 52-byte ACKs to 8081 after the capture point (AF_PACKET sees them first), so each handshake completes with the client's first data segment, as with TCP_DEFER_ACCEPT. 6 clients from ext: all see the handshake complete; the first 2 data segments fill the queue, the other 4 are dropped by the kernel (ListenOverflows/ListenDrops): those clients retransmit their data with backoff, it is never ACKed and the server sends nothing for them (kernel 6.18 sent no SYN-ACK re-send while data kept arriving)."
            }
            Scenario::SnatExhaustion => {
                "node: iptables -t nat -I POSTROUTING -s 10.244.0.0/16 -o uplink0 -p tcp --dport 80 -j MASQUERADE --to-ports 61000-61003; ext holds every connection to 172.31.0.2:80 open; pod starts 20 concurrent connects held 3 s. 4 succeed, 16 SYNs are dropped by conntrack (node insert_failed and drop rise) and retransmitted. node.pcap: uplink0."
            }
            Scenario::ConntrackInvalid => {
                "pod connects to 172.31.0.2:9000 through MASQUERADE, sends hello, gets world; ext sniffs its last segment (AF_PACKET) and injects a PSH/ACK with that ACK and SEQ = next + 2^30 to 172.31.0.1:<nat port> (raw socket). node conntrack counts it invalid, skips reverse NAT, answers RST (no local socket); ext's socket is reset; the pod's next data gets RST. node.pcap: uplink0."
            }
            Scenario::ConntrackInvalidService => {
                "node DNATs the Service VIP 10.96.0.10:80 to the backend 172.31.0.2:9000 (no SNAT for that backend, like pod-to-pod); pod talks to the VIP; the backend injects an out-of-window PSH/ACK (SEQ + 2^30). node counts it invalid and forwards it without reverse DNAT: the pod sees a segment from 172.31.0.2:9000, answers RST, which resets the backend's socket; the pod's next data to the VIP gets RST. node.pcap: uplink0."
            }
            Scenario::DnsNdots => {
                "pod resolv.conf as kubelet writes it (3 search domains, ndots:5), dnsmasq in ext (--local=/cluster.local/ --address=/example.test/203.0.113.7 and fd00:203::7); `ip netns exec <pod> getent ahosts api.example.test`: A+AAAA for each search suffix (NXDOMAIN), then the bare name: 8 queries for one answer."
            }
            Scenario::DnsLostReply => {
                "node: iptables -I FORWARD -p udp --sport 53 -m string --hex-string |00001c0001| -m statistic --mode nth --every 2 --packet 0 -j DROP (the first AAAA reply is lost); pod: RES_OPTIONS='ndots:1 timeout:5 attempts:2' getent ahosts api.example.test: A and AAAA go out from one socket (< 1 ms apart), only A is answered, glibc re-sends both (same IDs, same port) 5 s later."
            }
            Scenario::HealthyListener => {
                "pod listens on 10.244.1.10:8082 (backlog 128) and accepts at once; ext makes 12 sequential HTTP requests, each on its own connection, closed normally."
            }
            Scenario::HealthySnat => {
                "plain MASQUERADE (full port range); ext holds connections to 172.31.0.2:80; pod starts 20 concurrent connects: all succeed. node.pcap: uplink0."
            }
            Scenario::HealthyHttp => {
                "pod makes 3 HTTP/1.1 keep-alive connections to 172.31.0.2:8080 through the NAT, 5 requests each, then closes them normally (FIN)."
            }
            Scenario::HealthyDns => {
                "fully-qualified lookups with a trailing dot (api.example.test. and www.example.test.): one A and one AAAA each, no search-list expansion."
            }
            Scenario::ConntrackTableFull => {
                "under the exclusive lab lock, the global nf_conntrack_max is lowered to 64 (a guard restores it, also on failure; a marker file restores it after a crash); the pod opens held connections to 172.31.0.2:80 until the node's nf_conntrack_count is 64 (all assured, so early_drop cannot evict); then 3 non-blocking connects each to 172.31.0.2:80, :81 and :82 held 3.5 s: every SYN is dropped by the node (conntrack drop rises) and retransmitted."
            }
            Scenario::EphemeralPortExhaustion => {
                "pod net.ipv4.ip_local_port_range=40000 40009 (10 ports); 14 sequential HTTP requests to 172.31.0.2:8090, each on a new connection the pod closes first (TIME_WAIT): 10 succeed, then connect() fails with EADDRNOTAVAIL and sends nothing. The pod's net/tcp after shows 10 TIME_WAIT sockets to 172.31.0.2:8090."
            }
            Scenario::HealthyShortConnections => {
                "as ephemeral_port_exhaustion with a 100-port range (40000-40099): all 14 short connections succeed."
            }
            Scenario::ConnectionRefused => {
                "node DNATs the Service VIP 10.96.0.30:80 to 172.31.0.2:9100, where nothing listens; the pod connects 3 times, 200 ms apart: each SYN is answered by RST|ACK (from the VIP after reverse NAT), connect() says ECONNREFUSED."
            }
            Scenario::ConnectionRefusedGoingAway => {
                "ext listens on 172.31.0.2:9101; the pod connects 3 times (hi/ok exchange, closed), then the listener is closed and the pod connects 3 more times: each is refused by RST|ACK."
            }
            Scenario::HealthyRefusedOnce => {
                "the pod connects once to 172.31.0.2:9100 where nothing listens: refused, never retried."
            }
            Scenario::SynQueueOverflow => {
                "pod listens on 10.244.1.10:8083 with listen(backlog=4), net.ipv4.tcp_syncookies=0 in the pod; ext drops its own non-SYN segments to that port (iptables OUTPUT), so handshakes stay half-open in the pod's SYN queue; 10 non-blocking connects from ext, 20 ms apart, held 3.5 s: the first ones get SYN-ACKs (re-sent by the server), the rest are dropped (TcpExt.TCPReqQFullDrop, ListenDrops; ListenOverflows stays 0) and retransmitted."
            }
            Scenario::NatIdleTimeout => {
                "node: nf_conntrack_tcp_timeout_established=3, Service VIP 10.96.0.20:80 DNATed to 172.31.0.2:9201 (every other new flow, -m statistic --mode nth) or :9202; before the capture the pod opens one connection to the VIP (to 9201) and makes a request; in the capture: one more request, 6 s of silence (the node's entry expires), another request: conntrack picks it up as a new flow, DNATs it to 9202, which has no such connection and answers RST."
            }
            Scenario::HealthyIdle => {
                "as nat_idle_timeout with the node's established timeout at 60 s: after the same 6 s of silence the request is answered."
            }
        }
    }

    /// Whether the scenario changes global state and needs the exclusive lab lock
    /// ([`Lab::up_exclusive`]).
    pub fn needs_exclusive_lab(self) -> bool {
        self == Scenario::ConntrackTableFull
    }

    /// Prepares the lab (listeners, iptables rules, sniffers); sends no traffic.
    pub fn setup(self, lab: &Lab) -> Result<()> {
        match self {
            Scenario::ConntrackTableFull
            | Scenario::EphemeralPortExhaustion
            | Scenario::HealthyShortConnections
            | Scenario::ConnectionRefused
            | Scenario::ConnectionRefusedGoingAway
            | Scenario::HealthyRefusedOnce
            | Scenario::SynQueueOverflow
            | Scenario::NatIdleTimeout
            | Scenario::HealthyIdle => super::more_failures::setup(self, lab)?,
            Scenario::AcceptOverflowSyn => {
                let l = lab.in_ns(Role::Pod, || {
                    sock::listener(SocketAddrV4::new(POD_IP, ACCEPT_SYN_PORT), 1)
                })?;
                lab.stash("listener", l);
            }
            Scenario::AcceptOverflowAck => {
                let l = lab.in_ns(Role::Pod, || {
                    sock::listener(SocketAddrV4::new(POD_IP, ACCEPT_ACK_PORT), 1)
                })?;
                lab.stash("listener", l);
                let port = ACCEPT_ACK_PORT.to_string();
                lab.iptables(
                    Role::Pod,
                    &[
                        "-I",
                        "INPUT",
                        "-p",
                        "tcp",
                        "--dport",
                        &port,
                        "--tcp-flags",
                        "SYN,ACK,FIN,RST,PSH",
                        "ACK",
                        "-m",
                        "length",
                        "--length",
                        "52",
                        "-j",
                        "DROP",
                    ],
                )?;
            }
            Scenario::HealthyListener => {
                serve(
                    lab,
                    Role::Pod,
                    POD_IP,
                    HEALTHY_LISTENER_PORT,
                    sock::http_keepalive,
                )?;
            }
            Scenario::SnatExhaustion | Scenario::HealthySnat => {
                serve(lab, Role::Ext, EXT_IP, SNAT_PORT, sock::hold)?;
                if self == Scenario::SnatExhaustion {
                    lab.iptables(
                        Role::Node,
                        &[
                            "-t",
                            "nat",
                            "-I",
                            "POSTROUTING",
                            "1",
                            "-s",
                            "10.244.0.0/16",
                            "-o",
                            NODE_UPLINK_IF,
                            "-p",
                            "tcp",
                            "--dport",
                            "80",
                            "-j",
                            "MASQUERADE",
                            "--to-ports",
                            "61000-61003",
                        ],
                    )?;
                }
            }
            Scenario::ConntrackInvalid | Scenario::ConntrackInvalidService => {
                serve(lab, Role::Ext, EXT_IP, VICTIM_PORT, victim)?;
                if self == Scenario::ConntrackInvalidService {
                    let vip = SERVICE_VIP.to_string();
                    let backend = format!("{EXT_IP}:{VICTIM_PORT}");
                    lab.service_dnat(&vip, &backend, &[])?;
                    let ext = EXT_IP.to_string();
                    let port = VICTIM_PORT.to_string();
                    lab.iptables(
                        Role::Node,
                        &[
                            "-t",
                            "nat",
                            "-I",
                            "POSTROUTING",
                            "1",
                            "-d",
                            &ext,
                            "-p",
                            "tcp",
                            "--dport",
                            &port,
                            "-j",
                            "RETURN",
                        ],
                    )?;
                }
                let sniffer = lab.in_ns(Role::Ext, Sniffer::open)?;
                lab.stash("sniffer", sniffer);
            }
            Scenario::DnsNdots | Scenario::HealthyDns => {}
            Scenario::DnsLostReply => {
                drop_aaaa_replies(lab, &["--mode", "nth", "--every", "2", "--packet", "0"])?;
            }
            Scenario::HealthyHttp => {
                serve(lab, Role::Ext, EXT_IP, HTTP_PORT, sock::http_keepalive)?;
            }
        }
        Ok(())
    }

    /// Sends the scenario's traffic (bounded: seconds, tens of connections at most) and
    /// returns what happened, with counter snapshots around it.
    pub fn trigger(self, lab: &Lab) -> Result<Evidence> {
        let pod_ns = lab.netns(Role::Pod);
        let node_ns = lab.netns(Role::Node);
        let mut ev = Evidence::new(self, Snapshot::take(&pod_ns)?, Snapshot::take(&node_ns)?);
        self.traffic(lab, &mut ev)
            .with_context(|| format!("trigger of {} in lab {}", self.name(), lab.tag()))?;
        ev.pod_after = Snapshot::take(&pod_ns)?;
        ev.node_after = Snapshot::take(&node_ns)?;
        Ok(ev)
    }

    fn traffic(self, lab: &Lab, ev: &mut Evidence) -> Result<()> {
        match self {
            Scenario::ConntrackTableFull
            | Scenario::EphemeralPortExhaustion
            | Scenario::HealthyShortConnections
            | Scenario::ConnectionRefused
            | Scenario::ConnectionRefusedGoingAway
            | Scenario::HealthyRefusedOnce
            | Scenario::SynQueueOverflow
            | Scenario::NatIdleTimeout
            | Scenario::HealthyIdle => super::more_failures::traffic(self, lab, ev)?,
            Scenario::AcceptOverflowSyn => {
                let dst = SocketAddrV4::new(POD_IP, ACCEPT_SYN_PORT);
                let (ok, stuck) = lab.in_ns(Role::Ext, move || {
                    let mut held = Vec::new();
                    for _ in 0..ACCEPT_QUEUE_FITS {
                        let s = sock::connect_nonblocking(dst)?;
                        if !sock::wait_connected(&s, Duration::from_secs(2)) {
                            bail!("a connection to the empty queue of {dst} did not complete");
                        }
                        held.push(s);
                    }
                    let extra = (0..ACCEPT_SYN_EXTRA)
                        .map(|_| sock::connect_nonblocking(dst))
                        .collect::<Result<Vec<_>>>()?;
                    std::thread::sleep(Duration::from_millis(3500));
                    let ok = extra.iter().filter(|s| sock::is_connected(s)).count();
                    Ok((held.len() + ok, extra.len() - ok))
                })?;
                ev.connected = ok;
                ev.not_connected = stuck;
            }
            Scenario::AcceptOverflowAck => {
                let dst = SocketAddrV4::new(POD_IP, ACCEPT_ACK_PORT);
                let (ok, stuck) = lab.in_ns(Role::Ext, move || {
                    let mut socks = (0..ACCEPT_ACK_CLIENTS)
                        .map(|_| sock::connect_nonblocking(dst))
                        .collect::<Result<Vec<_>>>()?;
                    let ok = socks
                        .iter()
                        .filter(|s| sock::wait_connected(s, Duration::from_secs(2)))
                        .count();
                    for s in &mut socks {
                        // Would-block is impossible for 18 bytes on a fresh socket.
                        s.write_all(b"GET / HTTP/1.0\r\n\r\n")
                            .context("send the request")?;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    std::thread::sleep(Duration::from_millis(3500));
                    Ok((ok, socks.len() - ok))
                })?;
                ev.connected = ok;
                ev.not_connected = stuck;
            }
            Scenario::HealthyListener => {
                let dst = SocketAddrV4::new(POD_IP, HEALTHY_LISTENER_PORT);
                ev.connected = lab.in_ns(Role::Ext, move || {
                    let mut ok = 0;
                    for _ in 0..12 {
                        let mut s = TcpStream::connect_timeout(&dst.into(), Duration::from_secs(2))
                            .with_context(|| format!("connect {dst}"))?;
                        s.write_all(b"GET / HTTP/1.1\r\nHost: pod\r\n\r\n")?;
                        sock::read_http_response(&mut s)?;
                        ok += 1;
                    }
                    Ok(ok)
                })?;
            }
            Scenario::SnatExhaustion | Scenario::HealthySnat => {
                let dst = SocketAddrV4::new(EXT_IP, SNAT_PORT);
                let (ok, stuck) = lab.in_ns(Role::Pod, move || {
                    let socks = (0..SNAT_CLIENTS)
                        .map(|_| sock::connect_nonblocking(dst))
                        .collect::<Result<Vec<_>>>()?;
                    std::thread::sleep(Duration::from_millis(3000));
                    let ok = socks.iter().filter(|s| sock::is_connected(s)).count();
                    Ok((ok, socks.len() - ok))
                })?;
                ev.connected = ok;
                ev.not_connected = stuck;
            }
            Scenario::ConntrackInvalid | Scenario::ConntrackInvalidService => {
                let dst = if self == Scenario::ConntrackInvalid {
                    SocketAddrV4::new(EXT_IP, VICTIM_PORT)
                } else {
                    SocketAddrV4::new(SERVICE_VIP, 80)
                };
                let mut conn = lab.in_ns(Role::Pod, move || {
                    let mut s = TcpStream::connect_timeout(&dst.into(), Duration::from_secs(2))
                        .with_context(|| format!("connect {dst}"))?;
                    s.set_read_timeout(Some(Duration::from_secs(2)))?;
                    s.write_all(b"hello\n")?;
                    let mut buf = [0u8; 6];
                    s.read_exact(&mut buf).context("read the server's answer")?;
                    Ok(s)
                })?;
                ev.connected = 1;
                // Let the pod's ACK of the answer reach ext first.
                std::thread::sleep(Duration::from_millis(200));
                let sniffer: Sniffer = lab.take("sniffer")?;
                lab.in_ns(Role::Ext, move || {
                    let from = SocketAddrV4::new(EXT_IP, VICTIM_PORT);
                    let last = sniffer
                        .last_segment_from(from)?
                        .with_context(|| format!("no segment from {from} seen in ext"))?;
                    let pkt = inject::out_of_window_segment(&last, last.dst, b"out-of-window!\n")?;
                    inject::send_ipv4(&pkt, *last.dst.ip())
                })?;
                std::thread::sleep(Duration::from_millis(300));
                // The connection is dead if the next exchange is reset (or closed).
                let _ = conn.write_all(b"after\n");
                let mut buf = [0u8; 64];
                let died = match conn.read(&mut buf) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        false
                    }
                    Err(e) => return Err(e).context("read after the injection"),
                };
                ev.connection_died = Some(died);
                std::thread::sleep(Duration::from_millis(100));
            }
            Scenario::DnsNdots => {
                lookup(lab, ev, &[], &[DNS_NAME])?;
            }
            Scenario::DnsLostReply => {
                let opts = format!("RES_OPTIONS=ndots:1 timeout:{DNS_TIMEOUT_S} attempts:2");
                lookup(lab, ev, &[&opts], &[DNS_NAME])?;
            }
            Scenario::HealthyDns => {
                lookup(lab, ev, &[], &["api.example.test.", "www.example.test."])?;
            }
            Scenario::HealthyHttp => {
                let dst = SocketAddrV4::new(EXT_IP, HTTP_PORT);
                ev.connected = lab.in_ns(Role::Pod, move || {
                    let mut ok = 0;
                    for _ in 0..3 {
                        let mut s = TcpStream::connect_timeout(&dst.into(), Duration::from_secs(2))
                            .with_context(|| format!("connect {dst}"))?;
                        s.set_read_timeout(Some(Duration::from_secs(2)))?;
                        for _ in 0..5 {
                            s.write_all(b"GET / HTTP/1.1\r\nHost: ext\r\n\r\n")?;
                            sock::read_http_response(&mut s)?;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        s.shutdown(std::net::Shutdown::Write)?;
                        // Wait for the server's FIN: a normal close on both sides.
                        let mut rest = Vec::new();
                        let _ = s.read_to_end(&mut rest);
                        ok += 1;
                    }
                    Ok(ok)
                })?;
            }
        }
        Ok(())
    }
}

/// The iptables comment on the rule of [`drop_aaaa_replies`], to find its counters.
pub const AAAA_DROP_COMMENT: &str = "ndl-aaaa-reply-drop";

/// Inserts, in the node's FORWARD chain, a rule that drops DNS replies to AAAA questions
/// (the bytes `00 00 1c 00 01`: the question name's terminator, type AAAA, class IN)
/// chosen by the `statistic` match with `statistic` (e.g. `--mode nth --every 2 --packet 0`,
/// or `--mode random --probability 0.05`). The rule carries [`AAAA_DROP_COMMENT`]; it
/// goes away with the node netns.
pub fn drop_aaaa_replies(lab: &Lab, statistic: &[&str]) -> Result<()> {
    let mut args = vec![
        "-I",
        "FORWARD",
        "-p",
        "udp",
        "--sport",
        "53",
        "-m",
        "string",
        "--algo",
        "bm",
        "--hex-string",
        "|00001c0001|",
        "-m",
        "statistic",
    ];
    args.extend_from_slice(statistic);
    args.extend_from_slice(&[
        "-m",
        "comment",
        "--comment",
        AAAA_DROP_COMMENT,
        "-j",
        "DROP",
    ]);
    lab.iptables(Role::Node, &args)
}

/// Packets the rule of [`drop_aaaa_replies`] has dropped so far (its iptables counter).
pub fn aaaa_replies_dropped(lab: &Lab) -> Result<u64> {
    let out = super::run(&mut super::netns_exec(
        &lab.netns(Role::Node),
        &["iptables", "-w", "5", "-L", "FORWARD", "-v", "-x", "-n"],
    ))?;
    let line = out
        .lines()
        .find(|l| l.contains(AAAA_DROP_COMMENT))
        .with_context(|| {
            format!("no rule {AAAA_DROP_COMMENT:?} in the node's FORWARD chain:\n{out}")
        })?;
    line.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no packet count in {line:?}"))
}

/// Starts a bounded server on `ip:port` in the netns of `role`, handling each connection
/// with `handle` on its own thread, until the lab is torn down.
pub(crate) fn serve(
    lab: &Lab,
    role: Role,
    ip: std::net::Ipv4Addr,
    port: u16,
    handle: fn(TcpStream, std::sync::Arc<std::sync::atomic::AtomicBool>),
) -> Result<()> {
    let addr = SocketAddrV4::new(ip, port);
    // Bind before returning, so the trigger never races the server's start.
    let l = lab.in_ns(role, move || sock::listener(addr, 128))?;
    lab.background(role, move |stop| {
        sock::serve(l, stop, super::MAX_LIFETIME, handle)
    })
}

/// The INVALID scenarios' server: answers `hello` with `world`, then reads until the
/// connection ends (bounded).
fn victim(mut s: TcpStream, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answered = false;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) if !answered => {
                answered = true;
                if s.write_all(b"world\n").is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
}

/// Runs the real glibc resolver in the pod (`getent ahosts`), bounded by `timeout 20`,
/// and counts the queries dnsmasq logged meanwhile.
fn lookup(lab: &Lab, ev: &mut Evidence, env: &[&str], names: &[&str]) -> Result<()> {
    let before = lab.dns_queries_logged()?;
    let start = Instant::now();
    let mut output = String::new();
    for name in names {
        let mut args = vec!["env"];
        args.extend_from_slice(env);
        args.extend_from_slice(&["timeout", "20", "getent", "ahosts", name]);
        let mut cmd = super::netns_exec(&lab.netns(Role::Pod), &args);
        output.push_str(&super::run(&mut cmd)?);
    }
    ev.lookup_elapsed = Some(start.elapsed());
    if !output.contains("203.0.113.7") {
        bail!("getent ahosts did not resolve to 203.0.113.7: {output:?}");
    }
    ev.lookup_output = Some(output);
    // dnsmasq writes its log asynchronously.
    std::thread::sleep(Duration::from_millis(300));
    ev.dns_queries = Some(lab.dns_queries_logged()? - before);
    Ok(())
}
