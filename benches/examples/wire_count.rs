//! One pass of every header-slicing contender over one contiguous pcap buffer, for
//! instruction counts that do not depend on the machine's load:
//!
//! ```text
//! cargo build --release -p netdiag-benches --example wire_count
//! valgrind --tool=callgrind --toggle-collect='netdiag_benches::buffer_digest_*' \
//!     target/release/examples/wire_count 100000 300000
//! callgrind_annotate --inclusive=yes callgrind.out.* | grep buffer_digest
//! ```
//!
//! Arguments: flows, packets (defaults 1000, 100000), and optionally how many of the
//! contenders to run, in `BUFFER_CONTENDERS` order (default all; `2` = ours and
//! etherparse `SlicedPacket`: `PacketHeaders` costs ~40k instructions a packet, hours
//! under callgrind at 1M packets). Prints each contender's digest, all equal (the
//! equal-work rule of the benches).

use netdiag_benches::{BUFFER_CONTENDERS, PcapBuffer, generate_mix};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let flows = args.first().copied().unwrap_or(1_000);
    let packets = args.get(1).copied().unwrap_or(100_000);
    let buf = PcapBuffer::new(&generate_mix(flows, packets, 1));
    let mut digests = Vec::new();
    let run = args.get(2).copied().unwrap_or(BUFFER_CONTENDERS.len());
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
