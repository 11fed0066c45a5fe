//! PKTAP, ARCNET and `LINKTYPE_IPV4` with an IPv6 packet, from the corpus's real bytes
//! (`tcpdump -# -nn -xx -r <file>`; file and packet cited at each use).

use proptest::prelude::*;

use super::hex;
use crate::{Frame, Layer, LinkType, Net, StopReason};

/// LINKTYPE_PKTAP.pcap #1 (also LINKTYPE_USER2_PKTAP.pcap #1, the same bytes under link
/// type 149): PKTAP header (pth_length 108, type_next 1, dlt 1 EN10MB, ifname `en0`,
/// flags 2, protocol family 2, frame_pre_length 14, pid 512, epid -1), then Ethernet,
/// IPv4, UDP 10.32.4.27.63538 > 10.32.100.15.53, `17153+ A? in.m.yahoo.com.`
const PKTAP_DNS: &str = "6c00 0000 0100 0000 0100 0000 656e 3000
    0000 0000 0000 0000 0000 0000 0000 0000
    0000 0000 0200 0000 0200 0000 0e00 0000
    0000 0000 0002 0000 0000 0000 0000 0000
    0000 0000 0000 0000 0000 0000 0000 0000
    0000 0000 ffff ffff 0000 0000 0000 0000
    0000 0000 0000 0000 0000 0000 001e 491f
    f2c4 7073 cb0b 262a 0800 4500 003c 2e03
    0000 ff11 1144 0a20 041b 0a20 640f f832
    0035 0028 4814 4301 0100 0001 0000 0000
    0000 0269 6e01 6d05 7961 686f 6f03 636f
    6d00 0001 0001";

/// arcnet-rfc1051-arp-icmp-http.pcap #7 (LINKTYPE_ARCNET_LINUX): src 0xbe, dst 0x50,
/// offset 0xc600, protocol 240 (RFC 1051 IP), IPv4, UDP 10.80.131.1.1024 >
/// 10.80.3.254.53, `54328+ A? tcpdump.org.`
const ARC_LINUX_1051_DNS: &str = "be50 c600 f045 0000 3964 b540 0040 113a
    600a 5083 010a 5003 fe04 0000 3500 25d5
    f5d4 3801 0000 0100 0000 0000 0007 7463
    7064 756d 7003 6f72 6700 0001 0001";

/// arcnet-rfc1201-arp-icmp-http.pcap #9 (LINKTYPE_ARCNET_LINUX): src 0xbe, dst 0x50,
/// offset 0xc308, protocol 212 (RFC 1201 IP), split flag 0, sequence 0x0169, IPv4, UDP
/// 10.80.131.1.1024 > 10.80.3.254.53, `16943+ A? tcpdump.org.`
const ARC_LINUX_1201_DNS: &str = "be50 c308 d400 0169 4500 0039 a8f8 4000
    4011 f61c 0a50 8301 0a50 03fe 0400 0035
    0025 67ff 422f 0100 0001 0000 0000 0000
    0774 6370 6475 6d70 036f 7267 0000 0100
    01";

/// LINKTYPE_IPV4_invalid.pcap #1: link type IPV4 (228) but an IPv6 packet, UDP
/// 2001:db8::1.12345 > 2620:fe::9.53, `4660+ A? example.com.` (tcpdump prints it as IP6,
/// tshark decodes it as IPv6).
const IPV4_LINK_V6_DNS: &str = "6000 0000 0025 1140 2001 0db8 0000 0000
    0000 0000 0000 0001 2620 00fe 0000 0000
    0000 0000 0000 0009 3039 0035 0025 98b3
    1234 0100 0001 0000 0000 0000 0765 7861
    6d70 6c65 0363 6f6d 0000 0100 01";

fn query_name(f: &Frame<'_>) -> String {
    assert_eq!(f.stop, None, "{f:?}");
    assert_eq!(f.udp().unwrap().dst_port, 53);
    let m = f.dns().unwrap().unwrap();
    m.question().unwrap().name.to_string()
}

/// The RFC 1201 Linux frame with the BSD header: the 2-byte offset field removed.
fn arc_bsd_1201() -> Vec<u8> {
    let mut b = hex(ARC_LINUX_1201_DNS);
    b.drain(2..4);
    b
}

#[test]
fn pktap_reaches_dns_under_258_and_149() {
    let b = hex(PKTAP_DNS);
    for v in [258, 149] {
        let f = Frame::parse(LinkType::from_linktype(v), &b);
        assert_eq!(f.link, LinkType::Pktap);
        assert_eq!(query_name(&f), "in.m.yahoo.com");
        let Some(Net::Ipv4(ip)) = f.net else { panic!() };
        assert_eq!(ip.src.to_string(), "10.32.4.27");
    }
    assert_eq!(LinkType::Pktap.linktype(), 258);
}

#[test]
fn pktap_truncated_and_malformed_headers_stop_at_the_link_layer() {
    let b = hex(PKTAP_DNS);
    // Cut inside the PKTAP header.
    let f = Frame::parse(LinkType::Pktap, &b[..50]);
    let s = f.stop.unwrap();
    assert_eq!((s.layer, s.offset), (Layer::Link, 0));
    assert_eq!(
        s.reason,
        StopReason::Truncated {
            required: 108,
            available: 50
        }
    );
    // Cut inside the Ethernet header that follows: offsets count from the PKTAP header.
    let f = Frame::parse(LinkType::Pktap, &b[..115]);
    let s = f.stop.unwrap();
    assert_eq!((s.layer, s.offset), (Layer::Link, 108));
    assert_eq!(
        s.reason,
        StopReason::Truncated {
            required: 14,
            available: 7
        }
    );
    // pth_length below the fixed header's 108 bytes.
    let mut m = b.clone();
    m[0] = 100;
    let s = Frame::parse(LinkType::Pktap, &m).stop.unwrap();
    assert_eq!(s.layer, Layer::Link);
    assert!(matches!(s.reason, StopReason::Malformed(_)));
    // pth_length longer than the frame.
    m[0] = 0xff;
    let s = Frame::parse(LinkType::Pktap, &m).stop.unwrap();
    assert!(matches!(
        s.reason,
        StopReason::Truncated { required: 255, .. }
    ));
    // A longer pth_length moves the inner frame: 4 extra bytes.
    let mut m = b[..108].to_vec();
    m[0] = 112;
    m.extend_from_slice(&[0xaa; 4]);
    m.extend_from_slice(&b[108..]);
    assert_eq!(
        query_name(&Frame::parse(LinkType::Pktap, &m)),
        "in.m.yahoo.com"
    );
    // Not a packet record (pth_type_next 2), and PKTAP inside PKTAP: not followed.
    for (at, v) in [(4, 2u8), (8, 0x02)] {
        let mut m = b.clone();
        m[at] = v;
        if at == 8 {
            m[9] = 0x01; // pth_dlt 258
        }
        let s = Frame::parse(LinkType::Pktap, &m).stop.unwrap();
        assert_eq!(
            (s.layer, s.reason, s.offset),
            (Layer::Link, StopReason::Unsupported, 108)
        );
    }
}

#[test]
fn arcnet_linux_rfc1051_and_rfc1201_reach_dns() {
    for src in [ARC_LINUX_1051_DNS, ARC_LINUX_1201_DNS] {
        let b = hex(src);
        let f = Frame::parse(LinkType::from_linktype(129), &b);
        assert_eq!(f.link, LinkType::ArcnetLinux);
        assert_eq!(query_name(&f), "tcpdump.org");
    }
    // Truncated: 4 bytes of the RFC 1051 header; 6 of the RFC 1201 one.
    let s = Frame::parse(LinkType::ArcnetLinux, &hex(ARC_LINUX_1051_DNS)[..4])
        .stop
        .unwrap();
    assert_eq!(
        s.reason,
        StopReason::Truncated {
            required: 5,
            available: 4
        }
    );
    let s = Frame::parse(LinkType::ArcnetLinux, &hex(ARC_LINUX_1201_DNS)[..6])
        .stop
        .unwrap();
    assert_eq!(
        s.reason,
        StopReason::Truncated {
            required: 8,
            available: 6
        }
    );
    // A later fragment (split flag 2) carries no IP header.
    let mut b = hex(ARC_LINUX_1201_DNS);
    b[5] = 2;
    let s = Frame::parse(LinkType::ArcnetLinux, &b).stop.unwrap();
    assert_eq!((s.reason, s.offset), (StopReason::Unsupported, 8));
}

#[test]
fn arcnet_bsd_headers_reach_dns() {
    // RFC 1201 (6-byte header).
    let b = arc_bsd_1201();
    let f = Frame::parse(LinkType::from_linktype(7), &b);
    assert_eq!(f.link, LinkType::ArcnetBsd);
    assert_eq!(query_name(&f), "tcpdump.org");
    // RFC 1051 (3-byte header): drop the Linux offset field.
    let mut b = hex(ARC_LINUX_1051_DNS);
    b.drain(2..4);
    assert_eq!(
        query_name(&Frame::parse(LinkType::ArcnetBsd, &b)),
        "tcpdump.org"
    );
    // Exception packet: flag 0xff, two padding bytes, then type, flag, sequence again.
    let orig = arc_bsd_1201();
    let mut b = orig[..3].to_vec();
    b.extend_from_slice(&[0xff, 0xff, 0xff, 0xd4, 0x00, 0x01, 0x69]);
    b.extend_from_slice(&orig[6..]);
    assert_eq!(
        query_name(&Frame::parse(LinkType::ArcnetBsd, &b)),
        "tcpdump.org"
    );
    let s = Frame::parse(LinkType::ArcnetBsd, &b[..8]).stop.unwrap();
    assert_eq!(
        s.reason,
        StopReason::Truncated {
            required: 10,
            available: 8
        }
    );
    // IPv6 protocol ID 0xc4 hands over to IPv6 (here the IPv4 bytes: malformed there).
    let mut b = arc_bsd_1201();
    b[2] = 0xc4;
    let s = Frame::parse(LinkType::ArcnetBsd, &b).stop.unwrap();
    assert_eq!((s.layer, s.offset), (Layer::Ipv6, 6));
    // An unknown protocol ID (IPX, 250) is not followed.
    b[2] = 250;
    let s = Frame::parse(LinkType::ArcnetBsd, &b).stop.unwrap();
    assert_eq!((s.reason, s.offset), (StopReason::Unsupported, 6));
}

#[test]
fn linktype_ipv4_follows_the_version_nibble() {
    // Before: "raw IPv4" with version 6 was malformed at the IPv4 layer.
    let b = hex(IPV4_LINK_V6_DNS);
    let f = Frame::parse(LinkType::from_linktype(228), &b);
    assert!(matches!(f.net, Some(Net::Ipv6(_))));
    assert_eq!(query_name(&f), "example.com");
    // LINKTYPE_IPV6 stays IPv6 (tshark 4.0 calls version 4 there bogus).
    let s = Frame::parse(LinkType::Ipv6, &super::hex(super::BGP_SYN)[14..])
        .stop
        .unwrap();
    assert_eq!(s.layer, Layer::Ipv6);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Any bytes after a valid PKTAP header (for every inner link type we parse) or an
    /// ARCNET header (every protocol ID form) never panic and stay in bounds.
    #[test]
    fn bytes_after_pktap_and_arcnet_headers_never_panic(
        which in 0usize..16,
        rest in proptest::collection::vec(any::<u8>(), 0..120),
        cut in any::<usize>(),
    ) {
        let (link, mut b) = match which {
            0..=7 => {
                let dlt = [0u32, 1, 7, 12, 101, 113, 228, 258][which];
                let mut h = hex(PKTAP_DNS)[..108].to_vec();
                h[8..12].copy_from_slice(&dlt.to_le_bytes());
                (258, h)
            }
            8..=11 => {
                let ty = [0xf0u8, 0xd4, 0xc4, 0xd5][which - 8];
                (129, vec![0xbe, 0x50, 0xc3, 0x08, ty, 0, 1, 0x69])
            }
            _ => {
                let ty = [0xf0u8, 0xd4, 0xc4, 0xd4][which - 12];
                let flag = if which == 15 { 0xff } else { 0 };
                (7, vec![0xbe, 0x50, ty, flag, 0xff, 0xff, ty, 0, 1, 0x69])
            }
        };
        b.extend_from_slice(&rest);
        let n = cut % (b.len() + 1);
        super::never_panics::check_frame(link, &b[..n]);
    }
}
