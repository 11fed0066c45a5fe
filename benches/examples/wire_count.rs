//! One pass of every header-slicing contender over one contiguous pcap buffer, for
//! instruction counts that do not depend on the machine's load:
//!
//! ```text
//! cargo build --release -p netdiag-benches --example wire_count
//! valgrind --tool=callgrind --toggle-collect='netdiag_benches::buffer_digest_*' \
//!     target/release/examples/wire_count 100000 300000 2 2
//! callgrind_annotate --inclusive=yes callgrind.out.* | grep buffer_digest
//! ```
//!
//! Arguments: flows, packets (defaults 1000, 100000), optionally how many of the
//! contenders to run, in `BUFFER_CONTENDERS` order (default all; `2` = ours and
//! etherparse `SlicedPacket`: `PacketHeaders` costs ~40k instructions a packet, hours
//! under callgrind at 1M packets), and the generator seed (default 1; the
//! `wire-contiguous` bench uses seeds 1, 2 and 3 for its 1k, 100k and 1M-flow mixes:
//! `1000 100000`, `100000 300000`, `1000000 1000000`). Instead of flows and packets,
//! `testdata` or `corpus` walks the real captures the bench walks (then the next
//! argument is the contender count). Prints the packet count and each contender's
//! digest, all equal (the equal-work rule of the benches).

use netdiag_benches::{
    BUFFER_CONTENDERS, PcapBuffer, generate_mix, load_corpus_sample, load_testdata,
};

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let real = match raw.first().map(String::as_str) {
        Some("testdata") => Some(load_testdata()),
        Some("corpus") => Some(load_corpus_sample(usize::MAX)),
        _ => None,
    };
    let args: Vec<usize> = raw.iter().filter_map(|a| a.parse().ok()).collect();
    let (buf, run) = match real {
        Some(packets) => (PcapBuffer::new(&packets), args.first().copied()),
        None => {
            let flows = args.first().copied().unwrap_or(1_000);
            let packets = args.get(1).copied().unwrap_or(100_000);
            let seed = args.get(3).copied().unwrap_or(1) as u64;
            (
                PcapBuffer::new(&generate_mix(flows, packets, seed)),
                args.get(2).copied(),
            )
        }
    };
    println!("{} packets", buf.packets());
    let mut digests = Vec::new();
    let run = run.unwrap_or(BUFFER_CONTENDERS.len());
    for (name, f) in BUFFER_CONTENDERS.iter().take(run) {
        let d = f(&buf);
        println!("{name:28} digest {d:016x}");
        digests.push(d);
    }
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "contenders disagree"
    );
}
