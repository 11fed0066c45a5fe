//! UDP sockets of the calling thread's namespace from sock_diag, with their receive queue,
//! receive buffer and drop count: what `ss -uamn` shows as `Recv-Q` and `skmem:(r…,rb…,d…)`.

use std::net::IpAddr;

use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_UDP};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, SocketId, StateFlags, nlas::Nla,
};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;

use crate::Error;
use crate::netlink::dump;

/// One UDP socket (`ss -uamn`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct UdpSocket {
    /// Local address (`0.0.0.0` / `::` for a wildcard socket).
    pub addr: IpAddr,
    /// Local port.
    pub port: u16,
    /// Remote address of a connected socket (unspecified otherwise).
    pub peer_addr: IpAddr,
    /// Remote port of a connected socket (0 otherwise).
    pub peer_port: u16,
    /// Bytes waiting in the receive queue (`idiag_rqueue`, `ss` Recv-Q).
    pub queued_bytes: u32,
    /// Memory allocated to the receive queue (`sk_rmem_alloc`, skmem `r`), if reported.
    pub rmem_alloc: Option<u32>,
    /// The receive buffer size (`sk_rcvbuf`, skmem `rb`: `SO_RCVBUF` as the kernel doubled it).
    pub rcvbuf: Option<u32>,
    /// Datagrams dropped at this socket (`sk_drops`, skmem `d`), if reported.
    pub drops: Option<u32>,
    /// Socket inode (joins with `/proc/PID/fd`).
    pub inode: u64,
}

/// Every UDP socket (IPv4 and IPv6) of the calling thread's namespace, bound or connected,
/// with `INET_DIAG_SKMEMINFO`. Run it inside `NetNs::run` to read a pod.
pub fn udp_sockets() -> Result<Vec<UdpSocket>, Error> {
    let mut out = Vec::new();
    for (family, id) in [
        (AF_INET, SocketId::new_v4()),
        (AF_INET6, SocketId::new_v6()),
    ] {
        let req = SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_UDP,
            extensions: ExtensionFlags::SKMEMINFO,
            states: StateFlags::all(),
            socket_id: id,
        });
        for m in dump(NETLINK_SOCK_DIAG, "sock_diag udp", req)? {
            if let SockDiagMessage::InetResponse(r) = m {
                let h = &r.header;
                let mut s = UdpSocket {
                    addr: h.socket_id.source_address,
                    port: h.socket_id.source_port,
                    peer_addr: h.socket_id.destination_address,
                    peer_port: h.socket_id.destination_port,
                    queued_bytes: h.recv_queue,
                    rmem_alloc: None,
                    rcvbuf: None,
                    drops: None,
                    inode: u64::from(h.inode),
                };
                for nla in &r.nlas {
                    if let Nla::MemInfo(mi) = nla {
                        s.rmem_alloc = Some(mi.receive_queue);
                        s.rcvbuf = Some(mi.receive_queue_max);
                        s.drops = Some(mi.drops);
                    }
                }
                out.push(s);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real socket with a small buffer and a datagram waiting: sock_diag reports both
    /// (no root needed: sock_diag of one's own namespace).
    #[test]
    fn bound_socket_with_small_buffer_is_listed() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c.send_to(b"0123456789", ("127.0.0.1", port)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let all = udp_sockets().unwrap();
        let me = all
            .iter()
            .find(|u| u.port == port && u.addr == IpAddr::from([127, 0, 0, 1]))
            .unwrap_or_else(|| panic!("port {port} not in {all:?}"));
        assert!(me.queued_bytes >= 10, "{me:?}");
        assert!(me.rcvbuf.unwrap() > 0, "{me:?}");
        assert_eq!(me.drops, Some(0));
    }
}
