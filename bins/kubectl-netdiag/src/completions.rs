//! Hidden `kubectl-netdiag completions <SHELL>` and `kubectl-netdiag man`: print shell
//! completions (clap_complete) or the man page (clap_mangen) generated from the very
//! clap `Command` the binary parses with, so they never drift. `cargo xtask completions`
//! calls these and writes the files.

use crate::exit::Outcome;
use std::io::Write;

/// Arguments of the hidden `completions` subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct CompletionsArgs {
    /// Shell to generate completions for.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// Prints the completion script for one shell.
pub(crate) fn completions(
    args: CompletionsArgs,
    mut cmd: clap::Command,
) -> anyhow::Result<Outcome> {
    let name = cmd.get_name().to_string();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, name, &mut out);
    out.flush()?;
    Ok(Outcome::Clean)
}

/// Arguments of the hidden `man` subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct ManArgs {
    /// Directory to write `kubectl-netdiag.1` and one `kubectl-netdiag-<command>.1` per command.
    #[arg(long, value_name = "DIR")]
    pub(crate) out_dir: std::path::PathBuf,
}

/// Writes the man pages (roff): the top-level page and one page per visible subcommand.
pub(crate) fn man(args: ManArgs, cmd: clap::Command) -> anyhow::Result<Outcome> {
    use anyhow::Context;
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    let top = cmd.get_name().to_string();
    let mut pages = vec![(top.clone(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("{top}-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().display_name(name)));
    }
    for (name, page) in pages {
        let path = args.out_dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(Outcome::Clean)
}
