//! The detectors, one module each (DETECTION.md for the first five, `docs/DETECTION.md`
//! for the rest). Each turns the trackers' state
//! and the counter deltas into at most one [`Finding`](crate::Finding) at `finish`.

pub(crate) mod accept_queue_overflow;
pub(crate) mod connection_refused;
pub(crate) mod conntrack_invalid;
pub(crate) mod conntrack_table_full;
pub(crate) mod dns_lost_reply_timeout;
pub(crate) mod dns_ndots_amplification;
pub(crate) mod ephemeral_port_exhaustion;
pub(crate) mod nat_idle_timeout;
pub(crate) mod path_mtu_blackhole;
pub(crate) mod snat_port_exhaustion;
pub(crate) mod udp_receive_buffer_overflow;

use crate::counters::CounterBook;
use crate::destinations::{DestStats, Locality};
use crate::flow::Endpoint;
use crate::model::{EvidencePacket, PacketRef};
use crate::resolv::ResolvConf;
use std::net::IpAddr;

/// What every detector may look at when the input ends.
pub(crate) struct Ctx<'a> {
    pub(crate) counters: &'a CounterBook,
    pub(crate) resolv: Option<&'a ResolvConf>,
    /// The pod's resolver (given, live, or inferred from the packets).
    pub(crate) resolver: Option<&'a crate::resolver::Resolver>,
    pub(crate) locality: &'a Locality,
    pub(crate) overlay: &'a crate::overlay::Overlay,
    pub(crate) max_evidence: usize,
}

impl Ctx<'_> {
    /// Whether the listener `server` of a destination is in the pod (`Some(true)`),
    /// remote (`Some(false)`) or unknown. Pod listeners from the counters decide first;
    /// then the TTL of the two ends (the pod's own packets leave with an initial TTL,
    /// routed ones arrive decremented).
    pub(crate) fn server_is_local(
        &self,
        source: u16,
        server: Endpoint,
        d: &DestStats,
    ) -> Option<bool> {
        if self.counters.pod_listens(server.0, server.1) {
            return Some(true);
        }
        if !self.counters.listeners(crate::NetnsRole::Pod).is_empty() {
            return Some(false);
        }
        // A listener seen inside an overlay tunnel is a pod's, reached pod to pod without
        // SNAT: its dropped SYNs are its own queue's, wherever the capture was taken.
        if self.overlay.is_pod(source, server.0) {
            return Some(true);
        }
        let s = self.locality.is_local(source, server.0);
        let c = client_locality(self.locality, source, &d.client_ips);
        match (s, c) {
            (Some(true), Some(false)) | (Some(true), None) => Some(true),
            (Some(false), Some(true)) | (None, Some(true)) => Some(false),
            _ => None,
        }
    }
}

fn client_locality(l: &Locality, source: u16, clients: &[IpAddr]) -> Option<bool> {
    let mut v = clients.iter().map(|ip| l.is_local(source, *ip));
    let first = v.next()??;
    v.all(|x| x == Some(first)).then_some(first)
}

/// `10.0.0.1:1234 -> 10.0.0.2:80/tcp`.
pub(crate) fn flow_text(client: Endpoint, server: Endpoint, proto: &str) -> String {
    format!(
        "{} -> {}/{proto}",
        endpoint_text(client),
        endpoint_text(server)
    )
}

/// `10.0.0.1:80` or `[fd00::1]:80`.
pub(crate) fn endpoint_text(e: Endpoint) -> String {
    match e.0 {
        IpAddr::V4(a) => format!("{a}:{}", e.1),
        IpAddr::V6(a) => format!("[{a}]:{}", e.1),
    }
}

/// Appends evidence packets up to the cap, counting all.
pub(crate) struct EvidenceSink<'a> {
    pub(crate) out: &'a mut Vec<EvidencePacket>,
    pub(crate) total: &'a mut u64,
    pub(crate) cap: usize,
}

impl EvidenceSink<'_> {
    pub(crate) fn push(&mut self, packet: PacketRef, role: impl Into<String>) {
        *self.total += 1;
        if self.out.len() < self.cap && !self.out.iter().any(|p| p.packet == packet) {
            self.out.push(EvidencePacket {
                packet,
                role: role.into(),
            });
        }
    }
}
