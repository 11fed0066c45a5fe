//! DNS messages, over UDP (`Message::parse`) and over TCP with its 2-byte length prefix
//! (`Message::parse_tcp`), walked completely: header, question, every record, names.
//!
//! Input: one mode byte (even: UDP payload, odd: TCP stream bytes), then the bytes.
//! Seeds: the DNS payloads (UDP and TCP, port 53) of the tcpdump corpus and testdata.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netdiag_fuzz::{Input, Seeds};
use netdiag_wire::dns::{Entry, Message};
use netdiag_wire::{Frame, LinkType, Transport};

fn seeds(s: &mut Seeds) -> std::io::Result<()> {
    s.packets(usize::MAX, |s, link, _, data| {
        let f = Frame::parse(LinkType::from_linktype(link), data);
        let (mode, payload) = match f.transport {
            Some(Transport::Udp(u)) if u.src_port == 53 || u.dst_port == 53 => (0u8, u.payload),
            Some(Transport::Tcp(t))
                if (t.src_port == 53 || t.dst_port == 53) && !t.payload.is_empty() =>
            {
                (1u8, t.payload)
            }
            _ => return Ok(()),
        };
        let mut seed = vec![mode];
        seed.extend_from_slice(payload);
        s.add(&seed)
    })
}

fn walk(m: &Message<'_>) {
    let _ = (
        m.id(),
        m.is_response(),
        m.opcode(),
        m.authoritative(),
        m.truncated(),
        m.recursion_desired(),
        m.recursion_available(),
        m.rcode(),
        m.question_end(),
    );
    assert!(m.question_end() <= m.bytes().len());
    if let Some(q) = m.question() {
        let mut s = String::new();
        let _ = q.name.write_dotted(&mut s);
        let _ = (
            q.name.hash_lowercase(),
            q.name.label_count(),
            q.name.is_root(),
        );
        assert!(q.name.eq_ignore_ascii_case(&q.name));
        let _ = q.name.ends_with(&[b"cluster", b"local"]);
        let _ = q.name.labels().count();
    }
    let mut n = 0usize;
    for e in m.sections() {
        n += 1;
        match e {
            Ok(Entry::Record(r)) => {
                let _ = (r.name.label_count(), r.name.to_string());
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    // A section walk visits each question and record at most once.
    let most = usize::from(m.question_count())
        + usize::from(m.answer_count())
        + usize::from(m.authority_count())
        + usize::from(m.additional_count())
        + 1;
    assert!(n <= most, "{n} entries for {most} counted");
    let _ = m.answers().count();
    let _ = m.validate();
}

fuzz_target!(
    init: netdiag_fuzz::seed_mode("dns", seeds),
    |data: &[u8]| {
        let mut input = Input::new(data);
        let tcp = input.u8() & 1 == 1;
        let bytes = input.rest();
        let parsed = if tcp { Message::parse_tcp(bytes) } else { Message::parse(bytes) };
        if let Ok(m) = parsed {
            walk(&m);
        }
    }
);
