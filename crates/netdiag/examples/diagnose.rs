//! Diagnose capture files, a pod or a PID and print the findings.
//!
//! ```text
//! cargo run -p netdiag --example diagnose -- testdata/dns_ndots/pod.pcap
//! sudo target/debug/examples/diagnose --pod default/web-0 --seconds 10
//! sudo target/debug/examples/diagnose --pid 1234
//! ```

use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(10), |s| s.parse())?;
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let diagnosis = if let Some(pod) = value_of("--pod") {
        netdiag::Diagnosis::pod(pod)?
    } else if let Some(pid) = value_of("--pid") {
        netdiag::Diagnosis::pid(pid.parse()?)
    } else if args.is_empty() {
        return Err("usage: diagnose FILE... | --pod NS/NAME | --pid PID [--seconds N]".into());
    } else {
        netdiag::Diagnosis::files(&args)
    };
    let done = diagnosis.duration(Duration::from_secs(seconds)).run()?;
    if let Some(t) = &done.target {
        println!("pod {} → pid {} ip {:?}", t.pod, t.pid, t.ip);
        for n in &t.notes {
            println!("note: {n}");
        }
    }
    let report = &done.report;
    println!(
        "{} packets, {} finding(s)",
        report.capture.packets,
        report.findings.len()
    );
    for f in &report.findings {
        println!("- {:?} [{:?}] {}", f.kind, f.confidence, f.summary);
        println!("  remedy: {}", f.remedy);
    }
    Ok(())
}
