//! Watch a pod (or any network namespace) and print each fault the moment it is final,
//! with the pcapng that holds its packets: what a node agent embedding netdiag does.
//!
//! ```text
//! sudo target/debug/examples/watch --pod default/web-0 --out /var/tmp/netdiag
//! sudo target/debug/examples/watch --netns /run/netns/blue --minutes 5
//! ```

use netdiag::{Diagnosis, WatchEvent, WatchOptions};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let diagnosis = if let Some(pod) = value_of("--pod") {
        Diagnosis::pod(pod)?
    } else if let Some(ns) = value_of("--netns") {
        Diagnosis::netns(ns)
    } else {
        return Err("usage: watch --pod NS/NAME | --netns PATH [--minutes N] [--out DIR]".into());
    };
    let minutes: u64 = value_of("--minutes").map_or(Ok(60), |m| m.parse())?;
    let mut options = WatchOptions::default();
    if let Some(dir) = value_of("--out") {
        options = options.with_out(dir);
    }
    // An agent takes `diagnosis.stop_handle()` here and calls `stop()` on SIGTERM: the
    // watch then hands out what is pending, completes its files and returns.
    let done = diagnosis
        .duration(Duration::from_secs(minutes * 60))
        .least_privilege(true)
        .watch(&options, |event| match event {
            WatchEvent::Episode(found) => {
                let f = &found.episode.finding;
                println!(
                    "{} #{} ({}): {}",
                    f.kind.as_str(),
                    found.episode.number,
                    f.confidence.as_str(),
                    f.summary
                );
                if let Some(file) = &found.file {
                    println!("  packets: {}", file.display());
                }
                println!("  fix: {}", f.remedy);
            }
            WatchEvent::TargetGone { what, following } => {
                eprintln!(
                    "gone: {what}{}",
                    if following { " (following)" } else { "" }
                );
            }
            WatchEvent::Warning(w) => eprintln!("warning: {w}"),
            _ => {}
        })?;
    eprintln!(
        "watched {} for {:.0?}: {} episodes",
        done.label, done.elapsed, done.episodes
    );
    Ok(())
}
