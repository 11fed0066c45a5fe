//! Unit tests from real captures. Every hex blob below is copied from
//! `tcpdump -# -nn -xx -r <file>` on the tcpdump test-suite corpus
//! (`../shared/corpus/tcpdump-tests`); the file and packet number are cited at each use.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::dns::{self, DnsError, Entry, Message, Rcode, Section};
use crate::{Frame, Layer, LinkType, Net, StopReason, TcpFlags, Transport};

/// Decodes tcpdump's `-xx` hex (whitespace ignored).
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(core::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// bgp-4byte-asn.pcap #3: Ethernet, IPv4 (TTL 1), TCP SYN 1.0.2.2.42741 > 1.0.2.1.179,
/// options [mss 1460,sackOK,TS val 667578586 ecr 0,nop,wscale 9].
const BGP_SYN: &str = "e2c3 b48e 8760 0201 0001 0000 0800 45c0
    003c 1ce8 4000 0106 5612 0100 0202 0100
    0201 a6f5 00b3 8afa 6c32 0000 0000 a002
    7210 9871 0000 0204 05b4 0402 080a 27ca
    70da 0000 0000 0103 0309";

/// tcp-handshake-nano.pcap #1: Linux SLL (outgoing), IPv4, TCP SYN
/// 131.155.215.69.46656 > 137.116.81.94.80, options [mss 1360,sackOK,TS val 1131021154 ecr 0,nop,wscale 7].
const SLL_SYN: &str = "0004 0200 0000 0000 0000 0000 0000 0800
    4500 003c 29a9 4000 4006 db5f 839b d745
    8974 515e b640 0050 2f84 2acb 0000 0000
    a002 6a40 50c4 0000 0204 0550 0402 080a
    436a 0362 0000 0000 0103 0307";

/// dns-badcookie.pcap #2: BSD NULL (AF 2, little endian), IPv4, UDP 53 > 54954,
/// DNS response 63147 BadCookie 0/0/1 to `SOA? .` (header rcode 7, OPT extends it).
const NULL_DNS: &str = "0200 0000 4500 0054 feaa 0000 4011 0000
    7f00 0001 7f00 0001 0035 d6aa 0040 fe53
    f6ab 8187 0001 0000 0000 0001 0000 0600
    0100 0029 1000 0100 0000 001c 000a 0018
    36bf 111f ef2e 0109 7d8f fe06 5c63 6ffb
    142d 7674 9440 7a73";

/// LINKTYPE_RAW_ipv6.pcap #1: raw IPv6, UDP 2001:db8::1.12345 > 2620:fe::9.53, `A? example.com.`
const RAW6_DNS: &str = "6000 0000 0025 1140 2001 0db8 0000 0000
    0000 0000 0000 0001 2620 00fe 0000 0000
    0000 0000 0000 0009 3039 0035 0025 98b3
    1234 0100 0001 0000 0000 0000 0765 7861
    6d70 6c65 0363 6f6d 0000 0100 01";

/// ssh.pcap #48: Ethernet, IPv4, TCP ACK with 14 NOPs and one SACK block.
const SSH_SACK: &str = "8c85 903f 77dd d4ca 6d2e 7f67 0800 4548
    0040 e202 4000 3606 2af9 df84 35de ca6c
    57a5 0016 f2c2 9257 b836 f352 059a b010
    0154 e1f3 0000 0101 0101 0101 0101 0101
    0101 0101 050a f352 05fa f352 05fb";

/// dns_udp.pcap #2: Ethernet, IPv4, UDP 53 > 43966, DNS response 22836*- 2/2/5 for
/// `A? www.tcpdump.org.`, every owner name compressed.
const DNS_RESPONSE: &str = "0011 2233 4455 0011 2233 4466 0800 4500
    00fc 002d 0000 8011 ada6 d157 f912 c0a8
    010b 0035 abbe 00e8 c454 5934 8500 0001
    0002 0002 0005 0377 7777 0774 6370 6475
    6d70 036f 7267 0000 0100 01c0 0c00 0100
    0100 0000 3c00 04c0 8b2e 42c0 0c00 0100
    0100 0000 3c00 04c6 c758 68c0 1000 0200
    0100 0151 8000 1203 736e 7308 636f 6f70
    6572 6978 036e 6574 00c0 1000 0200 0100
    0151 8000 1203 6e69 6309 7361 6e64 656c
    6d61 6e02 6361 00c0 6b00 0100 0100 0001
    2c00 04d1 57f9 12c0 6b00 1c00 0100 0001
    2c00 1026 07f0 b000 0f00 0000 0000 00ba
    bef0 0dc0 4d00 0100 0100 001c 2000 0461
    6b85 0fc0 4d00 1c00 0100 001c 2000 1026
    003c 0300 0000 00f0 3c91 fffe 96e8 ef00
    0029 1000 0000 0000 0000";

/// afs.pcap #29, first 96 of 482 bytes: ICMP `131.151.32.21 udp port 1792 unreachable`
/// quoting 131.151.1.59.7003 > 131.151.32.21.1792.
const ICMP_UNREACH: &str = "00e0 f9cc 1800 0060 089f b1f3 0800 45c0
    01d4 e253 0000 ff01 ae96 8397 2015 8397
    013b 0303 2731 0000 0000 4500 01b8 cb91
    4000 fe11 8724 8397 013b 8397 2015 1b5b
    0700 01a4 ae1e 382b 3948 e09d bee8 0000
    0001 0000 0001 0000 0002 0106 0000 0000";

/// babel.pcap #25: Linux SLL, IPv6 with a hop-by-hop header, ICMPv6 MLDv2 report (143).
const SLL_IPV6_HBH: &str = "0000 030a 0000 0000 0000 0000 0000 86dd
    6000 0000 0038 0001 fe80 0000 0000 0000
    68d3 1235 d068 1f9e ff02 0000 0000 0000
    0000 0000 0000 0016 3a00 0502 0000 0100
    8f00 3f60 0000 0002 0400 0000 ff02 0000
    0000 0000 0000 0000 0001 0006 0400 0000
    ff02 0000 0000 0000 cca6 c0f9 e182 5359";

/// NHRP-responder-address.pcap #1, first 48 bytes: 802.1Q vlan 79, IPv4, GRE.
const VLAN_GRE: &str = "aabb cc00 0710 aabb cc00 0910 8100 004f
    0800 45c0 0088 2739 0000 ff2f 9d3e 9b01
    4f02 0606 0606 2000 2001 0000 0002 0001";

/// 802.1ad_QinQ.pcap #1: 802.1ad vlan 200, 802.1Q vlan 2001, ARP.
const QINQ_ARP: &str = "ffff ffff ffff 0020 d25a fb3f 88a8 00c8
    8100 07d1 0806 0001 0800 0604 0001 0020
    d25a fb3f ac15 4f61 0000 0000 0000 ac15
    4f64 0000 0000 0000 0000 0000 0000 0000";

fn eth(bytes: &[u8]) -> Frame<'_> {
    Frame::parse(LinkType::Ethernet, bytes)
}

#[test]
fn ethernet_ipv4_tcp_syn_with_every_common_option() {
    let b = hex(BGP_SYN);
    let f = eth(&b);
    assert_eq!(f.stop, None);
    let Some(Net::Ipv4(ip)) = f.net else {
        panic!("{f:?}")
    };
    assert_eq!(
        (ip.src, ip.dst, ip.ttl, ip.protocol),
        (Ipv4Addr::new(1, 0, 2, 2), Ipv4Addr::new(1, 0, 2, 1), 1, 6)
    );
    assert!(ip.dont_fragment && ip.fragment.is_none());
    let t = f.tcp().unwrap();
    assert_eq!(
        (t.src_port, t.dst_port, t.seq, t.ack, t.window),
        (42741, 179, 2331667506, 0, 29200)
    );
    assert_eq!(t.flags, TcpFlags::SYN);
    assert_eq!(t.flags.to_string(), "S");
    assert_eq!((t.header_len, t.payload_len, t.payload.len()), (40, 0, 0));
    assert_eq!(t.options.mss(), Some(1460));
    assert!(t.options.sack_permitted());
    assert_eq!(t.options.timestamps(), Some((667578586, 0)));
    assert_eq!(t.options.window_scale(), Some(9));
    assert_eq!(t.options.sack_blocks().count(), 0);
    let ft = f.five_tuple().unwrap();
    assert_eq!(ft.src, IpAddr::V4(Ipv4Addr::new(1, 0, 2, 2)));
    assert_eq!(ft.reversed().src_port, 179);
}

#[test]
fn linux_sll_tcp_syn() {
    let b = hex(SLL_SYN);
    let f = Frame::parse(LinkType::from_linktype(113), &b);
    assert_eq!(f.stop, None);
    let t = f.tcp().unwrap();
    assert_eq!((t.src_port, t.dst_port, t.seq), (46656, 80, 797190859));
    assert_eq!(
        (t.options.mss(), t.options.window_scale()),
        (Some(1360), Some(7))
    );
}

#[test]
fn linux_sll2_carries_the_same_ip_packet() {
    // SLL2 header built per https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL2.html
    // (protocol 0x0800, reserved, ifindex 2, ARPHRD_ETHER, outgoing, 6-byte address)
    // in front of the IP bytes of tcp-handshake-nano.pcap #1.
    let sll = hex(SLL_SYN);
    let mut b = hex("0800 0000 0000 0002 0001 04 06 0000 0000 0000 0000");
    b.extend_from_slice(&sll[16..]);
    let f = Frame::parse(LinkType::from_linktype(276), &b);
    assert_eq!(f.stop, None);
    assert_eq!(
        f.five_tuple(),
        Frame::parse(LinkType::LinuxSll, &sll).five_tuple()
    );
}

#[test]
fn bsd_null_in_both_byte_orders_and_loop() {
    let le = hex(NULL_DNS);
    let mut be = le.clone();
    be[..4].copy_from_slice(&[0, 0, 0, 2]);
    for (link, b) in [
        (LinkType::Null, &le),
        (LinkType::Null, &be),
        (LinkType::Loop, &be),
    ] {
        let f = Frame::parse(link, b);
        assert_eq!(f.stop, None, "{link:?}");
        assert_eq!(f.udp().unwrap().src_port, 53);
    }
    // LOOP is big-endian only: the little-endian family is not understood.
    let f = Frame::parse(LinkType::Loop, &le);
    assert_eq!(f.stop.unwrap().reason, StopReason::Unsupported);
}

#[test]
fn dns_response_with_root_question_and_extended_rcode_bits() {
    let b = hex(NULL_DNS);
    let f = Frame::parse(LinkType::Null, &b);
    let m = f.dns().unwrap().unwrap();
    assert!(m.is_response());
    assert_eq!((m.id(), m.rcode(), m.opcode()), (63147, Rcode(7), 0));
    assert_eq!(
        (
            m.question_count(),
            m.answer_count(),
            m.authority_count(),
            m.additional_count()
        ),
        (1, 0, 0, 1)
    );
    let q = m.question().unwrap();
    assert!(q.name.is_root());
    assert_eq!(q.name.to_string(), ".");
    assert_eq!((q.qtype, q.qclass), (dns::QTYPE_SOA, dns::CLASS_IN));
    m.validate().unwrap();
    let opt = m.sections().filter_map(|e| match e.unwrap() {
        Entry::Record(r) => Some(r),
        Entry::Question(_) => None,
    });
    let opt: Vec<_> = opt.collect();
    assert_eq!(opt.len(), 1);
    assert_eq!(
        (opt[0].rtype, opt[0].section, opt[0].rdata.len()),
        (dns::QTYPE_OPT, Section::Additional, 28)
    );
}

#[test]
fn raw_ipv6_dns_query() {
    let b = hex(RAW6_DNS);
    for link in [
        LinkType::Raw,
        LinkType::from_linktype(12),
        LinkType::from_linktype(14),
        LinkType::Ipv6,
        // LINKTYPE_IPV4 goes by the version nibble, as tcpdump and tshark do (this test
        // used to assert a stop at the IPv4 layer).
        LinkType::Ipv4,
    ] {
        let f = Frame::parse(link, &b);
        assert_eq!(f.stop, None, "{link:?}");
        let ft = f.five_tuple().unwrap();
        assert_eq!(
            ft.src,
            IpAddr::V6("2001:db8::1".parse::<Ipv6Addr>().unwrap())
        );
        assert_eq!((ft.src_port, ft.dst_port, ft.protocol), (12345, 53, 17));
        let q = f.dns().unwrap().unwrap().question().unwrap();
        assert_eq!(q.name.to_string(), "example.com");
        assert!(q.name.ends_with(&[b"COM"]));
        assert!(!q.name.ends_with(&[b"org"]));
    }
}

#[test]
fn tcp_sack_block_after_nops() {
    let b = hex(SSH_SACK);
    let t = *eth(&b).tcp().unwrap();
    assert_eq!((t.seq, t.ack, t.header_len), (0x9257b836, 0xf352059a, 44));
    assert_eq!(t.sack_blocks_vec(), vec![(0xf35205fa, 0xf35205fb)]);
    assert_eq!(t.flags, TcpFlags::ACK);
    assert_eq!(t.flags.to_string(), ".");
}

impl crate::TcpSegment<'_> {
    fn sack_blocks_vec(&self) -> Vec<(u32, u32)> {
        self.options.sack_blocks().collect()
    }
}

#[test]
fn dns_response_with_compressed_names() {
    let b = hex(DNS_RESPONSE);
    let f = eth(&b);
    let m = f.dns().unwrap().unwrap();
    assert_eq!(
        (m.id(), m.rcode(), m.answer_count()),
        (22836, Rcode::NOERROR, 2)
    );
    assert!(m.authoritative());
    let q = m.question().unwrap();
    m.validate().unwrap();
    // The owner names as `tcpdump -vv` prints them for this packet.
    let names: Vec<String> = m
        .sections()
        .map(|e| match e.unwrap() {
            Entry::Question(q) => q.name.to_string(),
            Entry::Record(r) => r.name.to_string(),
        })
        .collect();
    assert_eq!(
        names,
        [
            "www.tcpdump.org",
            "www.tcpdump.org",
            "www.tcpdump.org",
            "tcpdump.org",
            "tcpdump.org",
            "nic.sandelman.ca",
            "nic.sandelman.ca",
            "sns.cooperix.net",
            "sns.cooperix.net",
            ".",
        ]
    );
    for a in m.answers() {
        let a = a.unwrap();
        assert!(a.name.eq_ignore_ascii_case(&q.name));
        assert_eq!(a.name.hash_lowercase(), q.name.hash_lowercase());
    }
    assert_eq!(
        q.name.hash_lowercase(),
        dns::hash_wire_lowercase(b"\x03www\x07tcpdump\x03org")
    );
    assert_eq!(q.name.label_count(), 3);
}

/// `hash_lowercase` is [`dns::hash_wire_lowercase`] (the byte-at-a-time reference) of
/// the lowercased wire form, for every byte value a label can hold, every name length
/// from 1 to 255 bytes (each length of the last, partial word), with the name at the
/// start of a message buffer or after its header, compressed or not.
#[test]
fn dns_name_hash_is_the_reference_over_the_lowercased_wire_form() {
    let check = |labels: &[&[u8]]| {
        let mut wire = Vec::new();
        for l in labels {
            wire.push(l.len() as u8);
            wire.extend_from_slice(l);
        }
        let lower: Vec<u8> = wire.iter().map(u8::to_ascii_lowercase).collect();
        let expect = dns::hash_wire_lowercase(&lower);
        assert_eq!(dns::hash_wire_lowercase(&wire), expect);
        // In place, right at the start of the buffer (no bytes before the name).
        let mut alone = wire.clone();
        alone.push(0);
        let (name, _) = dns::Name::parse(&alone, 0).unwrap();
        assert_eq!(name.hash_lowercase(), expect, "{labels:02x?}");
        // As a question, then compressed: the first label, then a pointer to the rest.
        let mut msg = hex("1234 0100 0001 0000 0000 0000");
        msg.extend_from_slice(&alone);
        msg.extend_from_slice(&[0, 1, 0, 1]);
        let q = Message::parse(&msg).unwrap().question().unwrap();
        assert_eq!(q.name.hash_lowercase(), expect);
        if let [first, rest @ ..] = labels {
            if !rest.is_empty() {
                let at = msg.len();
                msg.push(first.len() as u8);
                msg.extend_from_slice(first);
                let to = 12 + 1 + first.len();
                msg.extend_from_slice(&[0xc0 | (to >> 8) as u8, to as u8]);
                let (c, _) = dns::Name::parse(&msg, at).unwrap();
                let q = Message::parse(&msg).unwrap().question().unwrap();
                assert!(c.eq_ignore_ascii_case(&q.name));
                assert_eq!(c.hash_lowercase(), expect);
            }
        }
    };
    for first in (0u16..256).step_by(7) {
        let label: Vec<u8> = (0u16..63).map(|i| ((first + i) % 256) as u8).collect();
        check(&[&label[..], b"Ab"]);
        check(&[b"xY", &label[..]]);
    }
    let a63 = [b'A'; 63];
    for len in 1..=63 {
        check(&[&a63[..len]]);
        check(&[b"Q", &a63[..len], b"Z"]);
        check(&[&a63[..], &a63[..], &a63[..], &a63[..len.min(61)]]);
    }
    check(&[]);
    // Case does not matter; the label structure does.
    let h = |m: &[u8]| dns::Name::parse(m, 0).unwrap().0.hash_lowercase();
    assert_eq!(
        h(b"\x03WwW\x07TCPdump\x03ORG\x00"),
        h(b"\x03www\x07tcpdump\x03org\x00")
    );
    assert_ne!(
        h(b"\x03www\x07tcpdump\x03org\x00"),
        h(b"\x0fwww.tcpdump.org\x00")
    );
    assert_ne!(h(b"\x01a\x00"), h(b"\x01b\x00"));
    assert_ne!(h(b"\x01a\x00"), h(b"\x00"));
}

#[test]
fn icmp_unreachable_quotes_the_original_udp_header() {
    let b = hex(ICMP_UNREACH);
    let f = eth(&b);
    assert_eq!(f.stop, None);
    let Some(Transport::Icmp(m)) = f.transport else {
        panic!("{f:?}")
    };
    assert_eq!((m.v6, m.icmp_type, m.code), (false, 3, 3));
    let o = m.original.unwrap();
    assert_eq!(o.src, IpAddr::V4(Ipv4Addr::new(131, 151, 1, 59)));
    assert_eq!(o.dst, IpAddr::V4(Ipv4Addr::new(131, 151, 32, 21)));
    assert_eq!(
        (o.protocol, o.src_port, o.dst_port),
        (17, Some(7003), Some(1792))
    );
}

#[test]
fn sll_ipv6_hop_by_hop_then_icmpv6() {
    let b = hex(SLL_IPV6_HBH);
    let f = Frame::parse(LinkType::LinuxSll, &b);
    assert_eq!(f.stop, None);
    let Some(Net::Ipv6(ip)) = f.net else {
        panic!("{f:?}")
    };
    assert_eq!(
        (ip.next_header, ip.ext_len, ip.payload_len, ip.payload.len()),
        (58, 8, 56, 48)
    );
    let Some(Transport::Icmp(m)) = f.transport else {
        panic!("{f:?}")
    };
    assert_eq!((m.v6, m.icmp_type, m.original), (true, 143, None));
}

#[test]
fn vlan_tag_then_unsupported_ip_protocol() {
    let b = hex(VLAN_GRE);
    let f = eth(&b);
    assert_eq!(f.vlan, Some(79));
    assert_eq!(f.net.unwrap().protocol(), Some(47));
    let s = f.stop.unwrap();
    assert_eq!(
        (s.layer, s.reason, s.offset),
        (Layer::Ipv4, StopReason::Unsupported, 38)
    );
}

#[test]
fn qinq_reports_the_outer_vlan() {
    let b = hex(QINQ_ARP);
    let f = eth(&b);
    assert_eq!((f.vlan, f.net, f.stop), (Some(200), Some(Net::Arp), None));
    // Cut inside the inner tag.
    let s = eth(&b[..16]).stop.unwrap();
    assert_eq!((s.layer, s.offset), (Layer::Vlan, 18 - 4));
    assert_eq!(
        s.reason,
        StopReason::Truncated {
            required: 4,
            available: 2
        }
    );
}

#[test]
fn every_truncation_of_a_syn_stops_at_the_right_layer() {
    let b = hex(BGP_SYN);
    for n in 0..b.len() {
        let f = eth(&b[..n]);
        let s = f
            .stop
            .unwrap_or_else(|| panic!("len {n} parsed completely"));
        let (layer, offset) = match n {
            0..14 => (Layer::Link, 0),
            14..34 => (Layer::Ipv4, 14),
            _ => (Layer::Tcp, 34),
        };
        assert_eq!((s.layer, s.offset), (layer, offset), "len {n}");
        assert!(
            matches!(s.reason, StopReason::Truncated { .. }),
            "len {n}: {s:?}"
        );
        // With the fixed TCP header present, ports and flags are still reported.
        assert_eq!(f.five_tuple().is_some(), n >= 54, "len {n}");
        if n >= 54 {
            assert_eq!(f.tcp().unwrap().payload_len, 0);
        }
    }
}

#[test]
fn ethernet_padding_is_not_payload() {
    // ssh.pcap #48 is 78 bytes; pad it as a NIC would and the TCP payload stays empty.
    let mut b = hex(SSH_SACK);
    b.extend_from_slice(&[0; 6]);
    let t = *eth(&b).tcp().unwrap();
    assert_eq!((t.payload.len(), t.payload_len), (0, 0));
}

#[test]
fn non_first_ipv4_fragment_has_no_transport() {
    // bgp-4byte-asn.pcap #3 with flags/offset rewritten to MF + offset 1480 (185 × 8).
    let mut b = hex(BGP_SYN);
    b[20..22].copy_from_slice(&(0x2000u16 | 185).to_be_bytes());
    let f = eth(&b);
    assert!(f.transport.is_none());
    let s = f.stop.unwrap();
    assert_eq!(
        (s.layer, s.reason, s.offset),
        (Layer::Ipv4, StopReason::Fragment, 34)
    );
    let frag = f.net.unwrap().fragment().unwrap();
    assert_eq!((frag.offset, frag.more, frag.id), (1480, true, 0x1ce8));
    // First fragment (MF, offset 0): flagged, transport parsed.
    b[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
    let f = eth(&b);
    assert!(f.tcp().is_some() && f.net.unwrap().fragment().is_some());
}

#[test]
fn ipv6_fragment_header() {
    // LINKTYPE_RAW_ipv6.pcap #1 with a fragment header inserted (next header 44,
    // payload length + 8): first fragment parses, a later one stops with Fragment.
    let orig = hex(RAW6_DNS);
    let mut b = orig[..40].to_vec();
    b[6] = 44;
    b[4..6].copy_from_slice(&(0x25u16 + 8).to_be_bytes());
    b.extend_from_slice(&hex("1100 0001 dead beef"));
    b.extend_from_slice(&orig[40..]);
    let f = Frame::parse(LinkType::Raw, &b);
    assert_eq!(f.stop, None);
    let Some(Net::Ipv6(ip)) = f.net else { panic!() };
    assert_eq!(
        ip.fragment,
        Some(crate::Fragment {
            offset: 0,
            more: true,
            id: 0xdeadbeef
        })
    );
    assert_eq!(f.udp().unwrap().dst_port, 53);
    b[42..44].copy_from_slice(&hex("0010"));
    let f = Frame::parse(LinkType::Raw, &b);
    assert!(f.transport.is_none());
    assert_eq!(f.stop.unwrap().reason, StopReason::Fragment);
}

#[test]
fn unsupported_link_types_stop_at_offset_zero() {
    let b = hex(BGP_SYN);
    let f = Frame::parse(LinkType::from_linktype(127), &b);
    assert!(!f.link.is_supported());
    assert_eq!(f.stop.unwrap().reason, StopReason::Unsupported);
    // The FCS bits above the low 16 bits of a pcap header do not change the link type.
    assert_eq!(LinkType::from_linktype(0x3000_0001), LinkType::Ethernet);
    for v in [0u32, 1, 7, 101, 108, 113, 129, 228, 229, 258, 276] {
        assert_eq!(LinkType::from_linktype(v).linktype(), v);
    }
}

/// A DNS header with one question, followed by `body`.
fn dns_msg(body: &[u8]) -> Vec<u8> {
    let mut m = hex("1234 0100 0001 0000 0000 0000");
    m.extend_from_slice(body);
    m
}

#[test]
fn dns_pointer_loops_and_forward_pointers_are_rejected() {
    // Pointer to itself (offset 12).
    let m = dns_msg(&hex("c00c 0001 0001"));
    assert_eq!(
        Message::parse(&m),
        Err(DnsError::BadName {
            offset: 12,
            why: "compression pointer does not point backwards"
        })
    );
    // Forward pointer.
    let m = dns_msg(&hex("c010 0001 0001 0161 00"));
    assert!(matches!(Message::parse(&m), Err(DnsError::BadName { .. })));
    // Two labels pointing at each other through a backwards then forwards hop.
    let m = dns_msg(&hex("0161 c00c 0001 0001"));
    assert!(matches!(Message::parse(&m), Err(DnsError::BadName { .. })));
    // Reserved label type 0x40.
    let m = dns_msg(&hex("4100 0001 0001"));
    assert!(matches!(
        Message::parse(&m),
        Err(DnsError::BadName {
            why: "reserved label type",
            ..
        })
    ));
}

#[test]
fn dns_name_limits() {
    // 127 one-byte labels = 255 bytes: the longest legal name.
    let mut body: Vec<u8> = core::iter::repeat_n([1u8, b'a'], 127).flatten().collect();
    body.push(0);
    body.extend_from_slice(&[0, 1, 0, 1]);
    let m = dns_msg(&body);
    let msg = Message::parse(&m).unwrap();
    assert_eq!(msg.question().unwrap().name.label_count(), 127);
    // One more label is too long.
    let mut body: Vec<u8> = core::iter::repeat_n([1u8, b'a'], 128).flatten().collect();
    body.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert!(matches!(
        Message::parse(&dns_msg(&body)),
        Err(DnsError::BadName { .. })
    ));
}

#[test]
fn dns_truncated_and_escaped_names() {
    assert_eq!(
        Message::parse(&[0; 11]),
        Err(DnsError::Truncated {
            required: 12,
            available: 11
        })
    );
    let m = dns_msg(&hex("0561 620a 2e5c 0000 01"));
    assert_eq!(
        Message::parse(&m),
        Err(DnsError::Truncated {
            required: 23,
            available: 21
        })
    );
    let m = dns_msg(&hex("0561 620a 2e5c 00 0001 0001"));
    let q = Message::parse(&m).unwrap().question().unwrap();
    assert_eq!(q.name.to_string(), "ab\\010\\.\\\\");
    // TCP framing: the 2-byte length prefix.
    let mut tcp = (m.len() as u16).to_be_bytes().to_vec();
    tcp.extend_from_slice(&m);
    assert_eq!(Message::parse_tcp(&tcp).unwrap().id(), 0x1234);
    assert!(Message::parse_tcp(&tcp[..tcp.len() - 1]).is_err());
}

mod never_panics {
    use proptest::prelude::*;

    use super::*;

    const LINKS: [u32; 14] = [0, 1, 7, 12, 14, 101, 108, 113, 129, 149, 228, 229, 258, 276];

    pub(super) fn check_frame(link: u32, b: &[u8]) {
        let f = Frame::parse(LinkType::from_linktype(link), b);
        assert_same_frame(
            &f,
            &Frame::parse_without_fast_path(LinkType::from_linktype(link), b),
        );
        if link != 1 {
            // The same bytes as an Ethernet frame, for the fast path.
            let e = Frame::parse(LinkType::Ethernet, b);
            assert_same_frame(&e, &Frame::parse_without_fast_path(LinkType::Ethernet, b));
        }
        // Every borrowed slice lies inside the input.
        let inside = |s: &[u8]| {
            let (lo, hi) = (b.as_ptr() as usize, b.as_ptr() as usize + b.len());
            let p = s.as_ptr() as usize;
            s.is_empty() || (p >= lo && p + s.len() <= hi)
        };
        match f.net {
            Some(Net::Ipv4(i)) => assert!(inside(i.payload) && inside(i.options)),
            Some(Net::Ipv6(i)) => assert!(inside(i.payload)),
            _ => {}
        }
        match f.transport {
            Some(Transport::Tcp(t)) => {
                assert!(inside(t.payload) && inside(t.options.raw()));
                assert!(t.payload.len() <= t.payload_len as usize);
                let _ = (
                    t.options.mss(),
                    t.options.timestamps(),
                    t.options.sack_blocks().count(),
                );
            }
            Some(Transport::Udp(u)) => assert!(inside(u.payload)),
            Some(Transport::Icmp(m)) => assert!(inside(m.payload)),
            None => {}
        }
        if let Some(s) = f.stop {
            assert!(s.offset <= b.len().max(40), "{s:?}");
        }
        if let Some(Ok(m)) = f.dns() {
            check_dns(m);
        }
        let mut cur = f;
        let mut depth = 0;
        while let Some(t) = cur.tunnel {
            assert!(inside(t.payload) && inside(t.options));
            let Some(i) = cur.inner() else {
                panic!("a tunnel without an inner frame")
            };
            assert_eq!(i.depth, cur.depth + 1);
            if let Some(s) = i.stop {
                assert!(s.offset <= b.len().max(40) + t.offset, "{s:?}");
            }
            if let Some(Ok(m)) = i.dns() {
                check_dns(m);
            }
            cur = i;
            depth += 1;
        }
        assert!(depth <= usize::from(crate::tunnel::MAX_DEPTH));
    }

    /// `fast` (from [`Frame::parse`]) equals `general` (the general parser alone) field
    /// by field, and its borrowed slices start where the general parser's do.
    pub(super) fn assert_same_frame(fast: &Frame<'_>, general: &Frame<'_>) {
        assert_eq!(fast, general);
        let at = |s: &[u8]| (s.as_ptr() as usize, s.len());
        match (fast.net, general.net) {
            (Some(Net::Ipv4(a)), Some(Net::Ipv4(b))) => {
                assert_eq!(at(a.payload), at(b.payload));
                assert_eq!(at(a.options), at(b.options));
            }
            (Some(Net::Ipv6(a)), Some(Net::Ipv6(b))) => assert_eq!(at(a.payload), at(b.payload)),
            _ => {}
        }
        match (fast.transport, general.transport) {
            (Some(Transport::Tcp(a)), Some(Transport::Tcp(b))) => {
                assert_eq!(at(a.payload), at(b.payload));
                assert_eq!(at(a.options.raw()), at(b.options.raw()));
            }
            (Some(Transport::Udp(a)), Some(Transport::Udp(b))) => {
                assert_eq!(at(a.payload), at(b.payload));
            }
            (Some(Transport::Icmp(a)), Some(Transport::Icmp(b))) => {
                assert_eq!(at(a.payload), at(b.payload));
            }
            _ => {}
        }
        if let (Some(a), Some(b)) = (fast.tunnel, general.tunnel) {
            assert_eq!(at(a.payload), at(b.payload));
            assert_eq!(at(a.options), at(b.options));
        }
    }

    fn check_dns(m: Message<'_>) {
        if let Some(q) = m.question() {
            let _ = (
                q.name.to_string(),
                q.name.hash_lowercase(),
                q.name.label_count(),
            );
            assert!(q.name.label_count() <= dns::MAX_LABELS);
        }
        let n = m.sections().take(200).count();
        assert!(n <= 1 + 4 * 65535);
        let _ = m.validate();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn frame_parse_arbitrary_bytes(link in proptest::sample::select(&LINKS[..]), b in proptest::collection::vec(any::<u8>(), 0..200)) {
            check_frame(link, &b);
        }

        #[test]
        fn frame_parse_mutated_real_packets(
            which in 0usize..10,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            cut in any::<usize>(),
        ) {
            let (link, src) = [
                (1, BGP_SYN), (113, SLL_SYN), (0, NULL_DNS), (101, RAW6_DNS), (1, DNS_RESPONSE), (113, SLL_IPV6_HBH),
                (1, super::tunnels::VXLAN_ICMP), (1, super::tunnels::GENEVE_ICMP), (1, super::tunnels::GRE_KEY_8909),
                (101, ""),
            ][which];
            // The last entry: the raw IPv6 DNS query inside GRE (key, sequence) inside IP-in-IP.
            let mut b = if src.is_empty() { super::tunnels::nested_gre_dns() } else { hex(src) };
            for (i, x) in flips {
                let n = b.len();
                b[i % n] ^= x;
            }
            let n = cut % (b.len() + 1);
            check_frame(link, &b[..n]);
        }

        /// Arbitrary bytes where a tunnel header and its inner packet belong: behind UDP
        /// 4789/8472/6081 and IP protocols 4, 41 and 47.
        #[test]
        fn tunnel_headers_arbitrary_bytes(
            which in 0usize..6,
            b in proptest::collection::vec(any::<u8>(), 0..160),
        ) {
            let frame = match which {
                0..=2 => {
                    let port = [4789u16, 8472, 6081][which];
                    let mut udp = vec![0x30, 0x39, 0, 0, 0, 0, 0, 0];
                    udp[2..4].copy_from_slice(&port.to_be_bytes());
                    udp[4..6].copy_from_slice(&((8 + b.len()) as u16).to_be_bytes());
                    udp.extend_from_slice(&b);
                    super::tunnels::wrap_v4(17, &[], &udp)
                }
                _ => super::tunnels::wrap_v4([4u8, 41, 47][which - 3], &[], &b),
            };
            check_frame(101, &frame);
        }

        /// Frames built to reach the fast path of `Frame::parse` (Ethernet, an optional
        /// 802.1Q tag, IPv4 or IPv6, TCP or UDP) and its inline second tier (ICMP,
        /// IP-in-IP, GRE, UDP tunnel ports, extension headers) with every field they
        /// read random: `Frame::parse` must return exactly what the general parser
        /// does, whatever the lengths, flags, fragment fields, ports and cut say.
        #[test]
        fn fast_path_equals_general_parser(
            vlan in any::<bool>(),
            v6 in any::<bool>(),
            proto in proptest::sample::select(&[6u8, 17, 1, 58, 4, 41, 47, 0, 44][..]),
            tunnel_port in proptest::sample::select(&[0u16, 4789, 8472, 6081][..]),
            ip_hdr in proptest::collection::vec(any::<u8>(), 40),
            l4 in proptest::collection::vec(any::<u8>(), 0..80),
            pick in any::<u8>(),
            cut in any::<usize>(),
        ) {
            let mut b = hex("0011 2233 4455 6677 8899 aabb");
            if vlan {
                b.extend_from_slice(&[0x81, 0x00, ip_hdr[0], ip_hdr[1]]);
            }
            let mut ip = ip_hdr.clone();
            let l4_len = l4.len() as u16;
            if v6 {
                b.extend_from_slice(&[0x86, 0xdd]);
                // Mostly a plausible header, sometimes whatever the bytes say.
                if pick & 1 == 0 {
                    ip[0] = 0x60 | (ip[0] & 0x0f);
                    ip[4..6].copy_from_slice(&(l4_len.wrapping_add(u16::from(pick >> 6))).to_be_bytes());
                    ip[6] = proto;
                }
            } else {
                b.extend_from_slice(&[0x08, 0x00]);
                ip.truncate(20);
                if pick & 1 == 0 {
                    ip[0] = 0x45;
                    ip[2..4].copy_from_slice(&(20 + l4_len).wrapping_sub(u16::from(pick >> 6)).to_be_bytes());
                    ip[9] = proto;
                    if pick & 2 == 0 {
                        ip[6] &= 0x40;
                    }
                }
            }
            b.extend_from_slice(&ip);
            let mut l4 = l4;
            if pick & 4 == 0 && l4.len() >= 20 {
                if proto == 6 {
                    l4[12] = (5 + (pick >> 5) % 4) << 4;
                } else {
                    l4[4..6].copy_from_slice(&l4_len.to_be_bytes());
                }
            }
            if proto == 17 && tunnel_port != 0 && l4.len() >= 4 {
                let side = if pick & 16 == 0 { 2 } else { 0 };
                l4[side..side + 2].copy_from_slice(&tunnel_port.to_be_bytes());
            }
            b.extend_from_slice(&l4);
            let n = if pick & 8 == 0 { b.len() } else { cut % (b.len() + 1) };
            let b = &b[..n];
            let fast = Frame::parse(LinkType::Ethernet, b);
            assert_same_frame(&fast, &Frame::parse_without_fast_path(LinkType::Ethernet, b));
            check_frame(1, b);
        }

        #[test]
        fn dns_parse_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(m) = Message::parse(&b) {
                check_dns(m);
            }
            let _ = Message::parse_tcp(&b);
        }

        #[test]
        fn dns_parse_mutated_response(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
            let mut b = hex(DNS_RESPONSE)[42..].to_vec();
            for (i, x) in flips {
                let n = b.len();
                b[i % n] ^= x;
            }
            if let Ok(m) = Message::parse(&b) {
                check_dns(m);
            }
        }
    }
}

mod tunnels {
    use super::*;
    use crate::tunnel::{Inner, MAX_DEPTH, TunnelKind};

    /// vxlan.pcap #1: Ethernet, IPv4 192.168.203.1.45149 > 192.168.202.1.4789, VXLAN
    /// flags [I] vni 100, inner Ethernet, IPv4 192.168.203.3 > 192.168.203.5 ICMP echo.
    pub(super) const VXLAN_ICMP: &str = "0016 3e08 71cf 36dc 851e b340 0800 4500
        0086 d2c0 4000 4011 5152 c0a8 cb01 c0a8
        ca01 b05d 12b5 0072 0000 0800 0000 0000
        6400 0030 8801 0002 0016 3e37 f604 0800
        4500 0054 0000 4000 4001 234f c0a8 cb03
        c0a8 cb05 0800 f6f2 050c 0001 fce2 9751
        0000 0000 a6f8 0200 0000 0000 1011 1213
        1415 1617 1819 1a1b 1c1d 1e1f 2021 2223
        2425 2627 2829 2a2b 2c2d 2e2f 3031 3233
        3435 3637";

    /// geneve.pcap #1: IPv4 20.0.0.1.12618 > 20.0.0.2.6081, Geneve flags [C] vni 0xa,
    /// 8 bytes of options, inner Ethernet, IPv4 30.0.0.1 > 30.0.0.2 ICMP echo.
    pub(super) const GENEVE_ICMP: &str = "001b 213c ac30 001b 213c ab64 0800 4500
        008e dfad 4000 4011 32af 1400 0001 1400
        0002 314a 17c1 007a 0000 0240 6558 0000
        0a00 0000 8001 0000 000c fe71 d883 724f
        b69e d249 5148 0800 4500 0054 bda2 4000
        4001 4104 1e00 0001 1e00 0002 0800 2c54
        2952 0017 f1a2 ce54 0000 0000 1778 0c00
        0000 0000 1011 1213 1415 1617 1819 1a1b
        1c1d 1e1f 2021 2223 2425 2627 2829 2a2b
        2c2d 2e2f 3031 3233 3435 3637";

    /// various_gre.pcap #11: 802.1Q, IPv4 10.172.64.7 > 10.172.64.6, GREv0 key=0x28,
    /// protocol 0x8909 (not an encapsulation we follow).
    pub(super) const GRE_KEY_8909: &str = "aabb cc00 0100 aabb cc00 0200 8100 04bd
        0800 45c0 0040 00a4 0000 ff2f 24c6 0aac
        4007 0aac 4006 2000 8909 0000 0028 0800
        0101 0001 0000 45c0 001c 00a3 0000 ff2f
        24eb 0aac 4006 0aac 4007 2000 0000 0000
        0028";

    /// The inner IPv4 packet of `VXLAN_ICMP` (offset 64), wrapped in an outer IPv4
    /// header 10.0.0.1 > 10.0.0.2 with `protocol` and the `mid` bytes (a GRE header)
    /// in between: how the lab wraps real frames in tunnels the kernel cannot make.
    pub(super) fn wrap_v4(protocol: u8, mid: &[u8], inner: &[u8]) -> Vec<u8> {
        let total = (20 + mid.len() + inner.len()) as u16;
        let mut b = vec![
            0x45, 0, 0, 0, 0, 1, 0, 0, 64, protocol, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        b[2..4].copy_from_slice(&total.to_be_bytes());
        b.extend_from_slice(mid);
        b.extend_from_slice(inner);
        b
    }

    pub(super) fn nested_gre_dns() -> Vec<u8> {
        let gre = [0x30, 0x00, 0x86, 0xdd, 0, 0, 0, 42, 0, 0, 0, 7];
        wrap_v4(4, &[], &wrap_v4(47, &gre, &hex(RAW6_DNS)))
    }

    fn inner_ip() -> Vec<u8> {
        hex(VXLAN_ICMP)[64..].to_vec()
    }

    fn inner_eth() -> Vec<u8> {
        hex(VXLAN_ICMP)[50..].to_vec()
    }

    #[test]
    fn vxlan_exposes_outer_addresses_vni_and_inner_packet() {
        let b = hex(VXLAN_ICMP);
        let f = eth(&b);
        assert_eq!(f.stop, None);
        assert!(matches!(f.transport, Some(Transport::Udp(u)) if u.dst_port == 4789));
        let t = f.tunnel.unwrap();
        assert_eq!(t.kind, TunnelKind::Vxlan);
        assert_eq!(t.vni, Some(100));
        assert_eq!(t.outer_src, IpAddr::V4(Ipv4Addr::new(192, 168, 203, 1)));
        assert_eq!(t.outer_dst, IpAddr::V4(Ipv4Addr::new(192, 168, 202, 1)));
        assert_eq!(t.inner, Inner::Ethernet);
        assert_eq!(t.offset, 50);
        let i = f.inner().unwrap();
        assert_eq!(i.depth, 1);
        assert_eq!(i.stop, None);
        assert_eq!(
            i.net.unwrap().src(),
            Some(IpAddr::V4(Ipv4Addr::new(192, 168, 203, 3)))
        );
        assert!(matches!(i.transport, Some(Transport::Icmp(_))));
        let (innermost, outer) = f.innermost();
        assert_eq!(innermost, i);
        assert_eq!(outer, Some(t));
    }

    #[test]
    fn vxlan_on_flannels_port_8472() {
        let mut b = hex(VXLAN_ICMP);
        b[36..38].copy_from_slice(&8472u16.to_be_bytes());
        let f = eth(&b);
        assert_eq!(f.tunnel.unwrap().kind, TunnelKind::Vxlan);
        assert!(f.inner().unwrap().net.is_some());
    }

    #[test]
    fn geneve_with_options() {
        let b = hex(GENEVE_ICMP);
        let f = eth(&b);
        assert_eq!(f.stop, None);
        let t = f.tunnel.unwrap();
        assert_eq!(
            (t.kind, t.vni, t.inner),
            (TunnelKind::Geneve, Some(10), Inner::Ethernet)
        );
        assert_eq!(t.options, &b[50..58]);
        let i = f.inner().unwrap();
        assert_eq!(
            i.net.unwrap().dst(),
            Some(IpAddr::V4(Ipv4Addr::new(30, 0, 0, 2)))
        );
        // Options longer than the packet: the Geneve header is cut.
        let mut cut = b.clone();
        cut[42] = 0x3f;
        let s = eth(&cut).stop.unwrap();
        assert_eq!(s.layer, Layer::Geneve);
        assert!(matches!(
            s.reason,
            StopReason::Truncated { required: 260, .. }
        ));
        // Version 1 does not exist.
        let mut v = b.clone();
        v[42] |= 0x40;
        assert!(matches!(
            eth(&v).stop.unwrap().reason,
            StopReason::Malformed(_)
        ));
    }

    #[test]
    fn ip_in_ip_both_versions() {
        let inner = inner_ip();
        let b = wrap_v4(4, &[], &inner);
        let f = Frame::parse(LinkType::Raw, &b);
        assert_eq!(f.stop, None);
        let t = f.tunnel.unwrap();
        assert_eq!(
            (t.kind, t.inner, t.offset),
            (TunnelKind::IpInIp, Inner::Ipv4, 20)
        );
        assert!(matches!(
            f.inner().unwrap().transport,
            Some(Transport::Icmp(_))
        ));
        // IPv6 inside IPv4 (protocol 41): the raw IPv6 DNS query from the corpus.
        let v6 = hex(RAW6_DNS);
        let b = wrap_v4(41, &[], &v6);
        let f = Frame::parse(LinkType::Raw, &b);
        let i = f.inner().unwrap();
        assert_eq!(f.tunnel.unwrap().inner, Inner::Ipv6);
        assert_eq!(i.five_tuple().unwrap().dst_port, 53);
        assert_eq!(
            i.dns()
                .unwrap()
                .unwrap()
                .question()
                .unwrap()
                .name
                .to_string(),
            "example.com"
        );
        // IPv4 inside IPv6: next header 4 after the fixed header.
        let mut outer6 = hex(RAW6_DNS)[..40].to_vec();
        outer6[4..6].copy_from_slice(&(inner.len() as u16).to_be_bytes());
        outer6[6] = 4;
        outer6.extend_from_slice(&inner);
        let f = Frame::parse(LinkType::Raw, &outer6);
        let t = f.tunnel.unwrap();
        assert!(t.outer_src.is_ipv6());
        assert!(f.inner().unwrap().net.unwrap().src().unwrap().is_ipv4());
        // A cut inner header stops the inner frame, at its offset in the whole frame.
        let b = wrap_v4(4, &[], &inner[..10]);
        let s = Frame::parse(LinkType::Raw, &b)
            .inner()
            .unwrap()
            .stop
            .unwrap();
        assert_eq!((s.layer, s.offset), (Layer::Ipv4, 20));
    }

    #[test]
    fn gre_key_sequence_ip_and_ethernet_inside() {
        // Key 42 and sequence 7, IPv4 inside.
        let gre = [0x30, 0x00, 0x08, 0x00, 0, 0, 0, 42, 0, 0, 0, 7];
        let b = wrap_v4(47, &gre, &inner_ip());
        let f = Frame::parse(LinkType::Raw, &b);
        assert_eq!(f.stop, None);
        let t = f.tunnel.unwrap();
        assert_eq!(
            (t.kind, t.key, t.sequence, t.inner),
            (TunnelKind::Gre, Some(42), Some(7), Inner::Ipv4)
        );
        assert_eq!(t.offset, 32);
        assert!(f.inner().unwrap().net.is_some());
        // Checksum present, Ethernet inside (0x6558).
        let gre = [0x80, 0x00, 0x65, 0x58, 0, 0, 0, 0];
        let b = wrap_v4(47, &gre, &inner_eth());
        let f = Frame::parse(LinkType::Raw, &b);
        let t = f.tunnel.unwrap();
        assert_eq!((t.key, t.sequence, t.inner), (None, None, Inner::Ethernet));
        assert!(matches!(
            f.inner().unwrap().transport,
            Some(Transport::Icmp(_))
        ));
        // The key flag promises 4 more bytes that are not there.
        let s = Frame::parse(LinkType::Raw, &wrap_v4(47, &[0x20, 0, 8, 0, 0], &[]))
            .stop
            .unwrap();
        assert_eq!(s.layer, Layer::Gre);
        assert_eq!(
            s.reason,
            StopReason::Truncated {
                required: 8,
                available: 5
            }
        );
        // PPTP's GRE version 1 is not followed.
        let s = Frame::parse(
            LinkType::Raw,
            &wrap_v4(47, &[0x30, 1, 0x88, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0], &[]),
        )
        .stop
        .unwrap();
        assert_eq!(s.reason, StopReason::Unsupported);
    }

    #[test]
    fn gre_with_an_unfollowed_protocol_stops_after_the_header() {
        let b = hex(GRE_KEY_8909);
        let f = eth(&b);
        let s = f.stop.unwrap();
        assert_eq!(
            (s.layer, s.reason, s.offset),
            (Layer::Ipv4, StopReason::Unsupported, 38)
        );
        assert!(f.tunnel.is_none());
    }

    #[test]
    fn truncated_vxlan_header() {
        let b = hex(VXLAN_ICMP);
        // Keep the UDP header and 4 of the 8 VXLAN bytes; fix the IP and UDP lengths.
        let mut c = b[..46].to_vec();
        c[16..18].copy_from_slice(&32u16.to_be_bytes());
        c[38..40].copy_from_slice(&12u16.to_be_bytes());
        let s = eth(&c).stop.unwrap();
        assert_eq!(s.layer, Layer::Vxlan);
        assert_eq!(s.offset, 42);
        assert!(matches!(
            s.reason,
            StopReason::Truncated {
                required: 8,
                available: 4
            }
        ));
    }

    #[test]
    fn nesting_is_bounded() {
        // IP-in-IP wrapped MAX_DEPTH + 2 times around the ICMP packet.
        let mut b = inner_ip();
        for _ in 0..usize::from(MAX_DEPTH) + 2 {
            b = wrap_v4(4, &[], &b);
        }
        let f = Frame::parse(LinkType::Raw, &b);
        let mut depth = 0;
        let mut cur = f;
        while let Some(i) = cur.inner() {
            cur = i;
            depth += 1;
        }
        assert_eq!(depth, usize::from(MAX_DEPTH));
        let s = cur.stop.unwrap();
        assert_eq!(s.layer, Layer::Tunnel);
        assert_eq!(cur.innermost().0.depth, MAX_DEPTH);
    }

    #[test]
    fn a_dns_query_from_port_4789_stays_dns() {
        let mut b = hex(RAW6_DNS);
        b[40..42].copy_from_slice(&4789u16.to_be_bytes());
        let f = Frame::parse(LinkType::Raw, &b);
        assert!(f.tunnel.is_none());
        assert!(f.dns().unwrap().is_ok());
    }
}

mod linktypes;
