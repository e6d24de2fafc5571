//! Exit codes of the client commands (`submit`, `status`, `retry`, `cancel`, `logs`,
//! `completion`) and the one error type they return, [`CommandError`].
//!
//! The codes are the user-visible contract README.md documents for `submit --wait`
//! ("Use it from CI"); every client command uses them with the same meaning:
//!
//! | code | [`Exit`] | `submit --wait` | other client commands | `crate::error` code of that number |
//! |---|---|---|---|---|
//! | 0 | `Ok` | `Complete=True`: the report is published | done | `EXIT_OK`: same meaning |
//! | 1 | `Failed` | `Failed=True`, or the ReportJob was deleted while waited for | the API server refused the request, or the ReportJob does not exist | `EXIT_TRANSIENT`: close (`reportjob retry` may succeed), not the same |
//! | 2 | `NoResult` | no result: bad usage, no usable kubeconfig, the API server unreachable, `--timeout` or `--reconnect-timeout` reached | same | `EXIT_USAGE`: same for usage errors (clap exits 2 too) |
//! | 3 | `Refused` | the spec was refused, locally or by the API server, or an apply conflict | same | `EXIT_PERMANENT`: same (fix the cause first) |
//!
//! Where the two differ the README's contract wins: a CI script reads `2` as "no result,
//! the ReportJob goes on in the cluster", which is why an unreachable API server is `2` here
//! although the stage commands would call it transient (`1`).

use std::fmt;

/// How a client command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `0`: done; `submit --wait`: the report is complete.
    Ok,
    /// `1`: the report failed (or was deleted while waited for); the API server refused
    /// the request or the object does not exist.
    Failed,
    /// `2`: no result: bad usage, no kubeconfig, unreachable server, timeout.
    NoResult,
    /// `3`: the spec was refused, locally or by the API server (or an apply conflict).
    Refused,
}

impl Exit {
    /// The process exit code.
    pub const fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::NoResult => 2,
            Exit::Refused => 3,
        }
    }
}

/// A client command that could not do its work: the exit code and what to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The exit code.
    pub code: Exit,
    /// The message, printed after `error: `.
    pub message: String,
}

impl CommandError {
    /// An error with this code.
    pub fn new(code: Exit, message: impl Into<String>) -> CommandError {
        CommandError {
            code,
            message: message.into(),
        }
    }

    /// Exit 1: refused by the API server, not found, or the report failed.
    pub fn failed(message: impl Into<String>) -> CommandError {
        CommandError::new(Exit::Failed, message)
    }

    /// Exit 2: no result (usage, configuration, connection, timeout).
    pub fn no_result(message: impl Into<String>) -> CommandError {
        CommandError::new(Exit::NoResult, message)
    }

    /// Exit 3: the spec was refused.
    pub fn refused(message: impl Into<String>) -> CommandError {
        CommandError::new(Exit::Refused, message)
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CommandError {}

/// What a client command returns: how it ended, or why it could not do its work.
pub type CommandResult = Result<Exit, CommandError>;

/// The process exit code of a command's result, printing its error on stderr.
pub fn finish(result: CommandResult) -> i32 {
    match result {
        Ok(exit) => exit.code(),
        Err(e) => {
            eprintln!("error: {}", e.message);
            e.code.code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{EXIT_OK, EXIT_PERMANENT, EXIT_USAGE};

    #[test]
    fn codes_are_the_readme_contract_and_agree_with_the_engine_where_documented() {
        assert_eq!(Exit::Ok.code(), EXIT_OK);
        assert_eq!(Exit::Failed.code(), 1);
        assert_eq!(Exit::NoResult.code(), EXIT_USAGE);
        assert_eq!(Exit::Refused.code(), EXIT_PERMANENT);
        let e = CommandError::refused("bad spec");
        assert_eq!(
            (e.code, e.to_string().as_str()),
            (Exit::Refused, "bad spec")
        );
        assert_eq!(finish(Err(CommandError::no_result("x"))), 2);
        assert_eq!(finish(Ok(Exit::Failed)), 1);
    }
}
