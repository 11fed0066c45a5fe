//! The hidden `completions` and `man` subcommands `cargo xtask completions` relies on.

use std::process::Command;

#[test]
fn completions_are_generated_for_each_shell_from_the_real_cli() {
    let bin = netdiag_tests::netdiag_bin().expect("kubectl-netdiag built");
    for (shell, marker) in [
        ("bash", "_kubectl__netdiag"),
        ("zsh", "#compdef kubectl-netdiag"),
        ("fish", "complete -c kubectl-netdiag"),
    ] {
        let out = Command::new(&bin)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell}: no {marker:?}");
        // Subcommands and their options come from the clap definition.
        assert!(
            text.contains("pods") && text.contains("runtime-endpoint"),
            "{shell}"
        );
        for cmd in ["analyze", "capture", "diagnose", "counters"] {
            assert!(text.contains(cmd), "{shell}: {cmd} missing");
        }
    }
}

#[test]
fn man_pages_are_written_per_command() {
    let bin = netdiag_tests::netdiag_bin().expect("kubectl-netdiag built");
    let dir = std::env::temp_dir().join(format!("ndr-man-{}", std::process::id()));
    let out = Command::new(&bin)
        .args(["man", "--out-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    // Remove the directory before asserting, so a failure leaves nothing behind.
    let check = || {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let top = std::fs::read_to_string(dir.join("kubectl-netdiag.1")).unwrap();
        assert!(
            top.starts_with(".ie") || top.contains(".TH kubectl-netdiag"),
            "{top}"
        );
        let pods = std::fs::read_to_string(dir.join("kubectl-netdiag-pods.1")).unwrap();
        assert!(pods.contains(".TH kubectl-netdiag-pods"), "{pods}");
        assert!(pods.contains("runtime\\-endpoint"), "{pods}");
        assert!(
            !dir.join("kubectl-netdiag-man.1").exists(),
            "hidden command got a page"
        );
    };
    let outcome = std::panic::catch_unwind(check);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}
