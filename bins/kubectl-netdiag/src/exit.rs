//! Exit codes and the handling of errors at the top of the program.

use std::process::ExitCode;

/// What a successful command run concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing at or above the `--fail-on` threshold (exit 0).
    Clean,
    /// Findings at or above the threshold (exit 1).
    Findings,
    /// The target (pod, its interface or namespace) went away mid-run (exit 3); what was
    /// captured until then is complete: the file, the report.
    TargetGone,
}

/// Prints an error chain the way users expect and picks the exit code.
///
/// Any error is exit 2; a target that went away mid-run is exit 3. A broken pipe (the reader, e.g. Wireshark or `head`, went away)
/// is a clean exit 0, as ripgrep does.
pub(crate) fn finish(result: anyhow::Result<Outcome>) -> ExitCode {
    match result {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        Ok(Outcome::TargetGone) => ExitCode::from(3),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubectl-netdiag: error: {}", chain_text(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes joined by ": ", as anyhow's `{:#}` does, except that a cause
/// whose text the message so far already ends with is left out. Our library errors
/// name their OS error in their own message (so they read well alone) and also return
/// it as `source()`; `{:#}` printed it twice ("Is a directory (os error 21): Is a
/// directory (os error 21)").
pub(crate) fn chain_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.is_empty() {
            out = text;
        } else if !out.ends_with(&text) && !out.contains(&format!("{text};")) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Rust ignores SIGPIPE by default, so writes to a closed pipe return EPIPE, which
/// `finish` turns into a clean exit. Nothing to change here; kept as the one place
/// that documents the choice.
pub(crate) fn install_sigpipe_default() {}

#[cfg(test)]
mod tests {
    use super::chain_text;

    #[test]
    fn an_os_error_named_in_the_message_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(21);
        let e = netdiag::pcapio::Error::Read {
            name: "x.pcap".to_string(),
            offset: 0,
            source: io,
        };
        let e = anyhow::Error::new(e);
        let text = chain_text(&e);
        assert_eq!(text.matches("os error 21").count(), 1, "{text}");
        // Context that does not repeat its cause keeps it.
        let e = anyhow::Error::new(std::io::Error::from_raw_os_error(2)).context("reading x");
        assert_eq!(
            chain_text(&e),
            format!("reading x: {}", std::io::Error::from_raw_os_error(2))
        );
    }
}
