//! `reportjob completion SHELL`: prints a completion script for the shell, generated from
//! the command-line definition by `clap_complete` (so it never falls behind the flags).

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::exit::Exit;
use crate::cli::Cli;

/// `reportjob completion`.
#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell, e.g. `source <(reportjob completion bash)`, or
    /// `reportjob completion zsh > "${fpath[1]}/_reportjob"`,
    /// `reportjob completion fish > ~/.config/fish/completions/reportjob.fish`.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the script on stdout.
pub fn completion(args: CompletionArgs) -> i32 {
    let mut command = Cli::command();
    let name = command.get_name().to_string();
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
    Exit::Ok.code()
}
