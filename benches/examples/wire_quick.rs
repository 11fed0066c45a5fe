//! Quick, noise-resistant side-by-side timing of the header-slicing contenders:
//! interleaved rounds, minimum and median per contender. Useful on a shared, noisy
//! machine where criterion's sequential groups see different background load.
//!
//! `cargo run --release -p netdiag-benches --example wire_quick [flows] [packets] [rounds]`

use std::time::Instant;

use netdiag_benches::{BUFFER_CONTENDERS, CONTENDERS, PcapBuffer, buffer_walk_floor, generate_mix};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let flows = args.first().copied().unwrap_or(1_000);
    let packets = args.get(1).copied().unwrap_or(100_000);
    let rounds = args.get(2).copied().unwrap_or(15);
    let mix = generate_mix(flows, packets, 1);
    let buf = PcapBuffer::new(&mix);
    let n = CONTENDERS.len();
    // Contenders 0..n over one heap buffer per packet, n..2n over one contiguous buffer,
    // then the walk floor of the contiguous buffer (what every contender pays there).
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); 2 * n + 1];
    let mut floor_digest = 0;
    let expect = CONTENDERS[0].1(&mix);
    for _ in 0..rounds {
        let t = Instant::now();
        floor_digest ^= buffer_walk_floor(&buf);
        times[2 * n].push(t.elapsed().as_nanos() as f64 / mix.len() as f64);
        for i in 0..2 * n {
            let t = Instant::now();
            let d = if i < n {
                CONTENDERS[i].1(&mix)
            } else {
                BUFFER_CONTENDERS[i - n].1(&buf)
            };
            times[i].push(t.elapsed().as_nanos() as f64 / mix.len() as f64);
            assert_eq!(d, expect, "contender {i}");
        }
    }
    println!("{flows} flows, {packets} packets, {rounds} interleaved rounds (ns/packet):");
    for (layout, base) in [
        ("one heap buffer per packet", 0),
        ("one contiguous pcap buffer", n),
    ] {
        println!(" {layout}:");
        let ours_min = times[base].iter().copied().fold(f64::MAX, f64::min);
        for i in 0..n {
            let mut v = times[base + i].clone();
            v.sort_by(f64::total_cmp);
            let (min, med) = (v[0], v[v.len() / 2]);
            println!(
                "  {:28} min {min:7.1}  median {med:7.1}  (min ratio vs ours {:.2}x)",
                CONTENDERS[i].0,
                min / ours_min
            );
        }
    }
    let mut floor = times[2 * n].clone();
    floor.sort_by(f64::total_cmp);
    println!(
        "  {:28} min {:7.1}  median {:7.1}  (the record walk and each packet's first 16 bytes; {floor_digest:x})",
        "walk floor (contiguous)",
        floor[0],
        floor[floor.len() / 2]
    );
}
