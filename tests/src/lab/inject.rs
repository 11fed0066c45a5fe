//! The conntrack-INVALID trigger: sniff a connection's last segment with an `AF_PACKET`
//! socket and inject a segment with a valid ACK but a SEQ ≈ 2^30 beyond the window
//! through a raw IP socket (`IPPROTO_RAW`, so we write the IPv4 header ourselves).
//!
//! Both sockets must be created on a thread inside the sender's netns (ext).

use anyhow::{Context, Result, bail};
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn,
};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};

/// How far beyond the sender's next sequence number the injected segment starts.
pub const SEQ_JUMP: u32 = 1 << 30;

/// An `AF_PACKET` socket seeing every frame of its netns (non-blocking).
#[derive(Debug)]
pub struct Sniffer {
    fd: OwnedFd,
}

/// One TCP segment as seen on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (valid when `ack_flag`).
    pub ack: u32,
    /// Whether the ACK flag is set.
    pub ack_flag: bool,
    /// Payload length (SYN and FIN each count one more in sequence space).
    pub payload_len: u32,
    /// SYN or FIN set.
    pub syn_or_fin: bool,
    /// Advertised window (unscaled).
    pub window: u16,
}

impl Sniffer {
    /// Opens the socket in the calling thread's netns.
    pub fn open() -> Result<Sniffer> {
        let fd = socket::socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::EthAll,
        )
        .context("socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)")?;
        Ok(Sniffer { fd })
    }

    /// Drains what the socket has seen and returns the last TCP segment sent from `src`
    /// (each frame is seen once per direction on a veth; outgoing copies count too).
    pub fn last_segment_from(&self, src: SocketAddrV4) -> Result<Option<Segment>> {
        let mut last = None;
        let mut buf = vec![0u8; 65536];
        // Bounded: at most this many frames per drain.
        for _ in 0..100_000 {
            let n = match socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(e) => return Err(e).context("recv on AF_PACKET socket"),
            };
            if let Some(seg) = parse_segment(&buf[..n])
                && seg.src == src
            {
                last = Some(seg);
            }
        }
        Ok(last)
    }
}

fn parse_segment(frame: &[u8]) -> Option<Segment> {
    let p = etherparse::SlicedPacket::from_ethernet(frame).ok()?;
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
        return None;
    };
    let Some(etherparse::TransportSlice::Tcp(tcp)) = p.transport else {
        return None;
    };
    let h = ip.header();
    Some(Segment {
        src: SocketAddrV4::new(h.source_addr(), tcp.source_port()),
        dst: SocketAddrV4::new(h.destination_addr(), tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        ack_flag: tcp.ack(),
        payload_len: u32::try_from(tcp.payload().len()).unwrap_or(u32::MAX),
        syn_or_fin: tcp.syn() || tcp.fin(),
        window: tcp.window_size(),
    })
}

/// The out-of-window segment that follows `last` (same direction, `dst` rewritten to
/// `to`): PSH/ACK, ACK = `last.ack` (valid), SEQ = next sequence + [`SEQ_JUMP`].
pub fn out_of_window_segment(last: &Segment, to: SocketAddrV4, payload: &[u8]) -> Result<Vec<u8>> {
    let next = last
        .seq
        .wrapping_add(last.payload_len)
        .wrapping_add(u32::from(last.syn_or_fin));
    let builder = etherparse::PacketBuilder::ipv4(last.src.ip().octets(), to.ip().octets(), 64)
        .tcp(
            last.src.port(),
            to.port(),
            next.wrapping_add(SEQ_JUMP),
            last.window,
        )
        .psh()
        .ack(last.ack);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut out, payload)
        .context("build the out-of-window segment")?;
    Ok(out)
}

/// Sends a complete IPv4 packet through a raw socket of the calling thread's netns.
pub fn send_ipv4(packet: &[u8], dst: Ipv4Addr) -> Result<()> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Raw,
    )
    .context("socket(AF_INET, SOCK_RAW, IPPROTO_RAW)")?;
    let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
    let n = socket::sendto(fd.as_raw_fd(), packet, &to, MsgFlags::empty())
        .with_context(|| format!("sendto({dst}) on the raw socket"))?;
    if n != packet.len() {
        bail!("raw socket sent {n} of {} bytes", packet.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_segment_jumps_the_window_and_keeps_the_ack() {
        // The last segment ext sent in the conntrack_invalid recording: "world\n" from
        // 172.31.0.2:9000 to the node's NAT address.
        let last = Segment {
            src: SocketAddrV4::new(Ipv4Addr::new(172, 31, 0, 2), 9000),
            dst: SocketAddrV4::new(Ipv4Addr::new(172, 31, 0, 1), 51148),
            seq: 14_393_736,
            ack: 2_662_917_998,
            ack_flag: true,
            payload_len: 6,
            syn_or_fin: false,
            window: 64,
        };
        let pkt = out_of_window_segment(&last, last.dst, b"x").expect("build");
        let p = etherparse::SlicedPacket::from_ip(&pkt).expect("parse back");
        let Some(etherparse::TransportSlice::Tcp(tcp)) = p.transport else {
            panic!("not TCP");
        };
        assert_eq!(tcp.sequence_number(), 14_393_742 + SEQ_JUMP);
        assert_eq!(tcp.acknowledgment_number(), last.ack);
        assert!(tcp.psh() && tcp.ack() && !tcp.syn() && !tcp.rst());
        assert_eq!(tcp.payload(), b"x");
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
            panic!("not IPv4");
        };
        // The TCP checksum must be right, or the node would drop it before conntrack.
        let header = tcp.to_header();
        let sum = header
            .calc_checksum_ipv4(&ip.header().to_header(), tcp.payload())
            .expect("checksum");
        assert_eq!(sum, tcp.checksum());
    }
}
