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
            eprintln!("kubectl-netdiag: error: {e:#}");
            ExitCode::from(2)
        }
    }
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
