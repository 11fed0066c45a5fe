//! Offline analysis with `default-features = false`: no libpcap, no protoc, no root.
//!
//! ```sh
//! cargo run -p netdiag --no-default-features --example offline -- capture.pcap [more.pcapng]
//! ```
//!
//! Prints each finding on one line; `cargo xtask ci` builds it without the live feature
//! and checks that the binary links no libpcap.

fn main() -> std::process::ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: offline FILE.pcap [FILE…]   (`-` reads standard input)");
        return std::process::ExitCode::from(2);
    }
    let done = match netdiag::Diagnosis::files(files).run() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("offline: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    for w in &done.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{} packets, {} finding(s)",
        done.report.capture.packets,
        done.report.findings.len()
    );
    for f in &done.report.findings {
        println!("{} ({}): {}", f.kind, f.confidence, f.summary);
    }
    std::process::ExitCode::SUCCESS
}
