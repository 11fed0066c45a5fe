//! Quick, noise-resistant side-by-side timing of the header-slicing contenders:
//! interleaved rounds, minimum and median per contender. Useful on a shared, noisy
//! machine where criterion's sequential groups see different background load.
//!
//! `cargo run --release -p netdiag-benches --example wire_quick [flows] [packets] [rounds]`

use std::time::Instant;

use netdiag_benches::{CONTENDERS, generate_mix};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let flows = args.first().copied().unwrap_or(1_000);
    let packets = args.get(1).copied().unwrap_or(100_000);
    let rounds = args.get(2).copied().unwrap_or(15);
    let mix = generate_mix(flows, packets, 1);
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); CONTENDERS.len()];
    let expect = CONTENDERS[0].1(&mix);
    for _ in 0..rounds {
        for (i, (name, f)) in CONTENDERS.iter().enumerate() {
            let t = Instant::now();
            let d = f(&mix);
            times[i].push(t.elapsed().as_nanos() as f64 / mix.len() as f64);
            assert_eq!(d, expect, "{name}");
        }
    }
    let ours_min = times[0].iter().copied().fold(f64::MAX, f64::min);
    println!("{flows} flows, {packets} packets, {rounds} interleaved rounds (ns/packet):");
    for (i, (name, _)) in CONTENDERS.iter().enumerate() {
        let mut v = times[i].clone();
        v.sort_by(f64::total_cmp);
        let (min, med) = (v[0], v[v.len() / 2]);
        println!(
            "  {name:28} min {min:7.1}  median {med:7.1}  (min ratio vs ours {:.2}x)",
            min / ours_min
        );
    }
}
