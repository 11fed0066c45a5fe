//! The Prometheus harness itself: Debian's server starts on loopback, scrapes a target
//! every second, answers PromQL through its query API, and is gone (process and files)
//! after drop. No root needed.

use netdiag_tests::prometheus::{JOB, PROMETHEUS_BIN, Prometheus, http_get};
use std::time::Duration;

#[test]
fn prometheus_scrapes_a_target_and_answers_queries() -> anyhow::Result<()> {
    if !std::path::Path::new(PROMETHEUS_BIN).is_file() {
        if netdiag_tests::is_ci() {
            anyhow::bail!("{PROMETHEUS_BIN} missing and CI=true forbids skipping");
        }
        eprintln!("skipped: {PROMETHEUS_BIN} missing (cargo xtask deps)");
        return Ok(());
    }
    // A first server whose target (port 1) answers nothing; a second one scrapes the
    // first's own /metrics.
    let first = Prometheus::start("watchlab-a", "127.0.0.1:1")?;
    let target = first.addr().to_string();
    let prom = Prometheus::start("watchlab-b", &target)?;
    let up = prom.wait_for(
        &format!("up{{job=\"{JOB}\"}}"),
        Duration::from_secs(20),
        |s| s.len() == 1 && s[0].value == 1.0,
    )?;
    assert_eq!(up[0].labels.get("instance"), Some(&target));
    // A series of the scraped server, read back through the scraper's query API.
    let built = prom.query(&format!("prometheus_build_info{{job=\"{JOB}\"}}"))?;
    assert_eq!(built.len(), 1, "{built:?}");
    assert!(
        built[0]
            .labels
            .get("version")
            .is_some_and(|v| !v.is_empty())
    );
    assert!(prom.query_sum(&format!("prometheus_http_requests_total{{job=\"{JOB}\"}}"))? > 0.0);
    // The failing scrape is visible as up == 0.
    let down = first.wait_for("up", Duration::from_secs(20), |s| {
        s.len() == 1 && s[0].value == 0.0
    })?;
    assert_eq!(
        down[0].labels.get("instance").map(String::as_str),
        Some("127.0.0.1:1")
    );
    // A bad expression is an error, not an empty answer.
    assert!(prom.query("sum(").is_err());
    let (addr, dir) = (prom.addr(), prom.dir().to_path_buf());
    drop(prom);
    drop(first);
    assert!(
        http_get(addr, "/-/ready").is_err(),
        "prometheus still answers on {addr} after drop"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
    Ok(())
}
