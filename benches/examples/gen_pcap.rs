//! Writes a generated capture for whole-process comparisons (`cargo xtask bench compare`,
//! `cargo xtask bench ab`): `gen_pcap OUT.pcap PACKETS FLOWS`.

use std::io::BufWriter;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .ok_or("usage: gen_pcap OUT.pcap PACKETS FLOWS")?;
    let packets: usize = args.next().unwrap_or_else(|| "1000000".into()).parse()?;
    let flows: usize = args.next().unwrap_or_else(|| "100000".into()).parse()?;
    let mix = netdiag_benches::generate_mix(flows, packets, 7);
    let file = std::fs::File::create(&out)?;
    netdiag_benches::write_pcap(BufWriter::new(file), &mix)?;
    eprintln!("wrote {} packets ({flows} flows) to {out}", mix.len());
    Ok(())
}
