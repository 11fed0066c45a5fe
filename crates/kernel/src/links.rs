//! Links, addresses and routes of the calling thread's namespace over rtnetlink
//! (≈ `ip link`, `ip addr`, `ip route`), and the interface of the default route — the
//! pod's `eth0`, which is where a capture should listen by default.

use std::net::IpAddr;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;

use netlink_packet_core::{DefaultNla, Nla};

use crate::Error;
use crate::conntrack::OtherAttr;
use crate::netlink::dump;

/// An attribute netlink-packet-route could not decode, kept verbatim.
fn other(nla: &DefaultNla) -> OtherAttr {
    let mut value = vec![0u8; nla.value_len()];
    nla.emit_value(&mut value);
    OtherAttr {
        kind: nla.kind(),
        value,
    }
}

/// A network interface (`ip link`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Name (`eth0`).
    pub name: String,
    /// `IFF_UP`: administratively up.
    pub up: bool,
    /// `IFF_LOWER_UP`: carrier.
    pub lower_up: bool,
    /// `IFF_LOOPBACK`.
    pub loopback: bool,
    /// MTU, when reported.
    pub mtu: Option<u32>,
    /// Operational state as `ip link` prints it (`UP`, `DOWN`, `UNKNOWN`).
    pub oper_state: Option<String>,
    /// Link kind (`veth`, `dummy`, `bridge`), when it has one.
    pub kind: Option<String>,
    /// Hardware address bytes.
    pub mac: Option<Vec<u8>>,
    /// Index of the peer/parent link (`veth0@if7`: 7), possibly in another namespace.
    pub parent_index: Option<u32>,
    /// Attributes unknown to netlink-packet-route (a newer kernel's), kept verbatim.
    pub other: Vec<OtherAttr>,
}

/// An interface address (`ip addr`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Address {
    /// Interface index.
    pub index: u32,
    /// The address (`IFA_LOCAL` when present, else `IFA_ADDRESS`).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Label (`eth0`, `eth0:1`), IPv4 only.
    pub label: Option<String>,
    /// Attributes unknown to netlink-packet-route, kept verbatim.
    pub other: Vec<OtherAttr>,
}

/// A route (`ip route`, all tables).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Route {
    /// Destination network; `None` for a default route.
    pub destination: Option<IpAddr>,
    /// Destination prefix length (0 for a default route).
    pub prefix_len: u8,
    /// Whether this is IPv6.
    pub ipv6: bool,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Routing table (254 = main, 255 = local).
    pub table: u32,
    /// Metric.
    pub priority: Option<u32>,
    /// Attributes unknown to netlink-packet-route, kept verbatim.
    pub other: Vec<OtherAttr>,
}

/// The `RTM_GETLINK` dump request.
pub(crate) fn links_request() -> RouteNetlinkMessage {
    RouteNetlinkMessage::GetLink(LinkMessage::default())
}

/// The `RTM_GETADDR` dump request.
pub(crate) fn addresses_request() -> RouteNetlinkMessage {
    RouteNetlinkMessage::GetAddress(AddressMessage::default())
}

/// The `RTM_GETROUTE` dump requests, IPv4 then IPv6.
pub(crate) fn routes_requests() -> [RouteNetlinkMessage; 2] {
    [AddressFamily::Inet, AddressFamily::Inet6].map(|family| {
        let mut req = RouteMessage::default();
        req.header.address_family = family;
        RouteNetlinkMessage::GetRoute(req)
    })
}

/// All links of the calling thread's namespace (`ip link`).
pub fn links() -> Result<Vec<Link>, Error> {
    let msgs = dump(NETLINK_ROUTE, "rtnetlink links", links_request())?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(link(l)),
            _ => None,
        })
        .collect())
}

pub(crate) fn link(m: LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        up: m.header.flags.contains(LinkFlags::Up),
        lower_up: m.header.flags.contains(LinkFlags::LowerUp),
        loopback: m.header.flags.contains(LinkFlags::Loopback),
        mtu: None,
        oper_state: None,
        kind: None,
        mac: None,
        parent_index: None,
        other: Vec::new(),
    };
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n,
            LinkAttribute::Mtu(v) => l.mtu = Some(v),
            LinkAttribute::OperState(s) => l.oper_state = Some(s.to_string().to_uppercase()),
            LinkAttribute::Address(mac) => l.mac = Some(mac),
            LinkAttribute::Link(i) => l.parent_index = Some(i),
            LinkAttribute::Other(nla) => l.other.push(other(&nla)),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    l
}

/// All interface addresses, IPv4 and IPv6 (`ip addr`).
pub fn addresses() -> Result<Vec<Address>, Error> {
    let msgs = dump(NETLINK_ROUTE, "rtnetlink addresses", addresses_request())?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) => address(a),
            _ => None,
        })
        .collect())
}

/// An address message as `ip addr` shows it; `None` when it carries no address.
pub(crate) fn address(a: AddressMessage) -> Option<Address> {
    let mut local = None;
    let mut address = None;
    let mut label = None;
    let mut unknown = Vec::new();
    for attr in a.attributes {
        match attr {
            AddressAttribute::Other(nla) => unknown.push(other(&nla)),
            AddressAttribute::Local(ip) => local = Some(ip),
            AddressAttribute::Address(ip) => address = Some(ip),
            AddressAttribute::Label(l) => label = Some(l),
            _ => {}
        }
    }
    Some(Address {
        index: a.header.index,
        addr: local.or(address)?,
        prefix_len: a.header.prefix_len,
        label,
        other: unknown,
    })
}

/// All routes of all tables, IPv4 and IPv6 (`ip route show table all` + `ip -6 …`).
pub fn routes() -> Result<Vec<Route>, Error> {
    let mut out = Vec::new();
    for req in routes_requests() {
        let msgs = dump(NETLINK_ROUTE, "rtnetlink routes", req)?;
        for m in msgs {
            let RouteNetlinkMessage::NewRoute(r) = m else {
                continue;
            };
            out.push(route(r));
        }
    }
    Ok(out)
}

fn route_addr(a: RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(v6)),
        _ => None,
    }
}

pub(crate) fn route(m: RouteMessage) -> Route {
    let mut r = Route {
        destination: None,
        prefix_len: m.header.destination_prefix_length,
        ipv6: m.header.address_family == AddressFamily::Inet6,
        gateway: None,
        oif: None,
        table: u32::from(m.header.table),
        priority: None,
        other: Vec::new(),
    };
    for a in m.attributes {
        match a {
            RouteAttribute::Destination(d) => r.destination = route_addr(d),
            RouteAttribute::Gateway(g) => r.gateway = route_addr(g),
            RouteAttribute::Oif(i) => r.oif = Some(i),
            RouteAttribute::Table(t) => r.table = t,
            RouteAttribute::Priority(p) => r.priority = Some(p),
            RouteAttribute::Other(nla) => r.other.push(other(&nla)),
            _ => {}
        }
    }
    r
}

/// The interface carrying the default route of the main table (IPv4 first, then IPv6),
/// lowest metric first: the pod's `eth0`. `None` when the namespace has no default route.
pub fn default_route_interface() -> Result<Option<Link>, Error> {
    let routes = routes()?;
    let main = u32::from(RouteHeader::RT_TABLE_MAIN);
    let mut defaults: Vec<&Route> = routes
        .iter()
        .filter(|r| r.prefix_len == 0 && r.table == main && r.oif.is_some())
        .collect();
    defaults.sort_by_key(|r| (r.ipv6, r.priority.unwrap_or(0)));
    let links = links()?;
    // A default route through `lo` is the kernel's unreachable/blackhole placeholder
    // (a netns without IPv6 connectivity has one), not a way out.
    Ok(defaults.iter().find_map(|r| {
        links
            .iter()
            .find(|l| Some(l.index) == r.oif && l.name != "lo")
            .cloned()
    }))
}
