//! `Frame::parse` on every link type, with every lazy accessor touched (TCP options, the
//! DNS walk, ICMP's quoted header): what every captured packet goes through. The fast
//! path of `Frame::parse` must agree with the general parser.
//!
//! Input: the pcap `LINKTYPE_*` as a little-endian u16, then the frame. Seeds: the first
//! packets of every capture file of the tcpdump corpus and testdata, with their link type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netdiag_fuzz::{Input, Seeds, put_u16};
use netdiag_wire::{Frame, LinkType, Transport, dns::Entry};

fn seeds(s: &mut Seeds) -> std::io::Result<()> {
    s.packets(16, |s, link, _, data| {
        let mut seed = Vec::with_capacity(2 + data.len());
        put_u16(&mut seed, link as u16);
        seed.extend_from_slice(data);
        s.add(&seed)
    })
}

fuzz_target!(
    init: netdiag_fuzz::seed_mode("frame", seeds),
    |data: &[u8]| {
        let mut input = Input::new(data);
        let link = LinkType::from_linktype(u32::from(input.u16()));
        let bytes = input.rest();
        let f = Frame::parse(link, bytes);
        // The fast path (Ethernet) returns what the general parser alone would; the
        // same bytes are also tried as Ethernet whatever the link type.
        assert_eq!(f, Frame::parse_without_fast_path(link, bytes));
        assert_eq!(
            Frame::parse(LinkType::Ethernet, bytes),
            Frame::parse_without_fast_path(LinkType::Ethernet, bytes)
        );
        let _ = f.stop.map(|s| (s.layer, s.reason, s.offset));
        let tuple = f.five_tuple();
        if let Some(t) = tuple {
            let _ = t.reversed();
        }
        if let Some(net) = &f.net {
            let _ = (net.src(), net.dst(), net.protocol(), net.fragment());
        }
        match f.transport {
            Some(Transport::Tcp(tcp)) => {
                let o = tcp.options;
                let _ = (o.mss(), o.window_scale(), o.sack_permitted(), o.timestamps());
                let _ = (o.sack_blocks().count(), o.iter().count());
                assert!(tcp.payload.len() <= tcp.payload_len as usize, "{tcp:?}");
            }
            Some(Transport::Icmp(icmp)) => {
                let _ = format!("{icmp:?}");
            }
            _ => {}
        }
        if let Some(Ok(m)) = f.dns() {
            if let Some(q) = m.question() {
                let _ = (q.name.to_string(), q.name.hash_lowercase());
            }
            for e in m.sections() {
                if let Ok(Entry::Record(r)) = e {
                    let _ = r.name.label_count();
                }
            }
        }
    }
);
