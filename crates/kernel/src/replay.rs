//! Netlink dump replies as bytes: record the datagrams the kernel answers a dump with,
//! and decode recorded datagrams exactly as the live functions do.
//!
//! [`links()`](crate::links()), [`addresses`](crate::addresses), [`routes`](crate::routes),
//! [`tcp_listeners`](crate::tcp_listeners) and [`entries`](crate::conntrack::entries)
//! (ctnetlink) send one dump request and decode every datagram of the reply with the same code that
//! [`decode`] runs. So a reply recorded with [`record`] (≈ what `strace -e recvmsg` or
//! `nlmon` would show) can be replayed offline, in tests and under a fuzzer, through the
//! decoder the tool runs on a node.
//!
//! ```no_run
//! use netdiag_kernel::replay::{self, Dump, Record};
//! # fn main() -> Result<(), netdiag_kernel::Error> {
//! for datagram in replay::record(Dump::Links)? {
//!     let decoded = replay::decode(Dump::Links, &datagram)?;
//!     for r in &decoded.records {
//!         if let Record::Link(l) = r {
//!             println!("{} {}", l.index, l.name); // `ip link`
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```

use netlink_sys::protocols::{NETLINK_NETFILTER, NETLINK_ROUTE, NETLINK_SOCK_DIAG};

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_sock_diag::SockDiagMessage;

use crate::conntrack::{self, CtMessage};
use crate::netlink::{decode_datagram, dump_datagrams};
use crate::{Address, Error, Link, Listener, Route, links, live};

/// Which dump a reply answers; each maps to the command people know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dump {
    /// rtnetlink `RTM_GETLINK` (`ip link`).
    Links,
    /// rtnetlink `RTM_GETADDR` (`ip addr`).
    Addresses,
    /// rtnetlink `RTM_GETROUTE`, IPv4 then IPv6 (`ip route show table all`).
    Routes,
    /// sock_diag `inet_diag` of TCP listeners, IPv4 then IPv6 (`ss -lnt`).
    Listeners,
    /// ctnetlink `IPCTNL_MSG_CT_GET` (`conntrack -L`); needs CAP_NET_ADMIN.
    Conntrack,
}

impl Dump {
    /// Every dump, in a fixed order.
    pub const ALL: [Dump; 5] = [
        Dump::Links,
        Dump::Addresses,
        Dump::Routes,
        Dump::Listeners,
        Dump::Conntrack,
    ];

    /// The name errors use (`rtnetlink links`, `ctnetlink`, …).
    pub fn what(self) -> &'static str {
        match self {
            Dump::Links => "rtnetlink links",
            Dump::Addresses => "rtnetlink addresses",
            Dump::Routes => "rtnetlink routes",
            Dump::Listeners => "sock_diag inet",
            Dump::Conntrack => "ctnetlink",
        }
    }
}

/// One decoded record of a dump reply.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Record {
    /// From [`Dump::Links`].
    Link(Link),
    /// From [`Dump::Addresses`].
    Address(Address),
    /// From [`Dump::Routes`].
    Route(Route),
    /// From [`Dump::Listeners`].
    Listener(Listener),
    /// From [`Dump::Conntrack`].
    Conntrack(conntrack::Entry),
}

/// What one datagram of a dump reply held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decoded {
    /// The records, in the order the kernel sent them (messages of other types, which the
    /// live functions skip, are skipped here too).
    pub records: Vec<Record>,
    /// The datagram ended the dump (`NLMSG_DONE`).
    pub done: bool,
}

/// Decodes one datagram of the reply to `dump`, as the live functions do: an error
/// reply from the kernel, or bytes that do not decode, are an [`Error`]; never a panic.
pub fn decode(dump: Dump, datagram: &[u8]) -> Result<Decoded, Error> {
    let what = dump.what();
    let mut records = Vec::new();
    let done = match dump {
        Dump::Links | Dump::Addresses | Dump::Routes => {
            decode_datagram(what, datagram, &mut |m: RouteNetlinkMessage| {
                let r = match m {
                    RouteNetlinkMessage::NewLink(l) if dump == Dump::Links => {
                        Some(Record::Link(links::link(l)))
                    }
                    RouteNetlinkMessage::NewAddress(a) if dump == Dump::Addresses => {
                        links::address(a).map(Record::Address)
                    }
                    RouteNetlinkMessage::NewRoute(r) if dump == Dump::Routes => {
                        Some(Record::Route(links::route(r)))
                    }
                    _ => None,
                };
                records.extend(r);
                Ok(())
            })?
        }
        Dump::Listeners => decode_datagram(what, datagram, &mut |m: SockDiagMessage| {
            records.extend(live::listener(m).map(Record::Listener));
            Ok(())
        })?,
        Dump::Conntrack => decode_datagram(what, datagram, &mut |m: CtMessage| {
            records.extend(conntrack::entry(&m)?.map(Record::Conntrack));
            Ok(())
        })?,
    };
    Ok(Decoded { records, done })
}

/// Runs `dump` live in the calling thread's network namespace and returns the datagrams
/// of the reply, byte for byte as received (each request's datagrams in order; the last
/// one of each request holds `NLMSG_DONE`).
pub fn record(dump: Dump) -> Result<Vec<Vec<u8>>, Error> {
    let what = dump.what();
    let mut out = Vec::new();
    let mut keep = |data: &[u8]| {
        out.push(data.to_vec());
        decode(dump, data).map(|d| d.done)
    };
    match dump {
        Dump::Links => dump_datagrams(NETLINK_ROUTE, what, links::links_request(), &mut keep)?,
        Dump::Addresses => {
            dump_datagrams(NETLINK_ROUTE, what, links::addresses_request(), &mut keep)?
        }
        Dump::Routes => {
            for req in links::routes_requests() {
                dump_datagrams(NETLINK_ROUTE, what, req, &mut keep)?;
            }
        }
        Dump::Listeners => {
            for req in live::listeners_requests() {
                dump_datagrams(NETLINK_SOCK_DIAG, what, req, &mut keep)?;
            }
        }
        Dump::Conntrack => {
            dump_datagrams(NETLINK_NETFILTER, what, conntrack::request(), &mut keep)?
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded reply decodes to what the live function returns (the loopback link is
    /// in every namespace, so the comparison is meaningful without root).
    #[test]
    fn recorded_links_decode_like_the_live_dump() {
        let datagrams = record(Dump::Links).expect("rtnetlink dump");
        assert!(datagrams.len() >= 2, "at least the links and NLMSG_DONE");
        let mut replayed = Vec::new();
        let mut done = 0;
        for d in &datagrams {
            let dec = decode(Dump::Links, d).expect("decode");
            done += usize::from(dec.done);
            replayed.extend(dec.records.into_iter().filter_map(|r| match r {
                Record::Link(l) => Some(l.name),
                _ => None,
            }));
        }
        assert_eq!(done, 1, "exactly one NLMSG_DONE");
        let live: Vec<String> = crate::links()
            .expect("links")
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(replayed, live);
        assert!(replayed.iter().any(|n| n == "lo"));
    }

    /// Fuzz crash (target `netlink`): an NLMSG_ERROR whose code is i32::MIN made
    /// netlink-packet-core's `ErrorMessage::to_io` overflow negating it.
    #[test]
    fn crash_netlink_error_code_i32_min() {
        let datagram: &[u8] = &[
            0x14, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, // len 20, NLMSG_ERROR, flags
            0x20, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, // seq, pid
            0x00, 0x00, 0x00, 0x00, 0x80, 0x79, 0x53, 0x05, //
            0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        for dump in Dump::ALL {
            let _ = decode(dump, datagram);
        }
        // The same shape with the code field itself at i32::MIN.
        let mut min = vec![
            0x14, 0, 0, 0, 0x02, 0, 0x01, 0, 0x20, 0, 0, 0, 0x05, 0, 0, 0,
        ];
        min.extend_from_slice(&i32::MIN.to_ne_bytes());
        for dump in Dump::ALL {
            assert!(
                decode(dump, &min).is_err(),
                "{dump:?}: an error reply is an error"
            );
        }
    }

    /// Cut at any byte, a recorded datagram is an error or fewer records, never a panic.
    #[test]
    fn every_prefix_of_a_recorded_reply_decodes_without_panic() {
        for dump in [Dump::Links, Dump::Addresses, Dump::Routes] {
            for d in record(dump).expect("dump") {
                for end in 0..d.len() {
                    let _ = decode(dump, &d[..end]);
                }
            }
        }
    }
}
