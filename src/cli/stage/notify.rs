//! `reportjob notify`: sends the completion webhook from a stage pod and records the result
//! in the termination log. A failed notification never fails the report (exit 0); only
//! usage errors, such as a missing webhook URL, exit non-zero.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::api::ReportJob;
use crate::api::load::{load_file, load_str};
use crate::cli::client::duration::parse_duration;
use crate::notify::{self, Details, Outcome, RetryPolicy};
use crate::stage_protocol::env::{
    NAME as ENV_NAME, NAMESPACE as ENV_NAMESPACE, SPEC as ENV_SPEC, WEBHOOK_URL as ENV_WEBHOOK_URL,
};
use crate::stage_protocol::{EXIT_OK, EXIT_PERMANENT, EXIT_USAGE, StageResult};

/// How the report ended, as `--outcome` says it.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutcomeArg {
    /// The report was assembled.
    Succeeded,
    /// The report failed.
    Failed,
}

/// `reportjob notify`.
#[derive(Args, Debug)]
pub struct NotifyArgs {
    /// The ReportJob YAML file. Without it, the spec is read from REPORTJOB_SPEC.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// How the report ended.
    #[arg(long, value_enum)]
    pub outcome: OutcomeArg,
    /// What went wrong, or a note.
    #[arg(long)]
    pub message: Option<String>,
    /// Data rows in the report.
    #[arg(long)]
    pub rows: Option<i64>,
    /// Bytes of the report.
    #[arg(long)]
    pub bytes: Option<i64>,
    /// Where the report is (path on the volume or object URL).
    #[arg(long)]
    pub location: Option<String>,
    /// The signed download link.
    #[arg(long)]
    pub url: Option<String>,
    /// Attempts in all.
    #[arg(long, default_value_t = 4)]
    pub attempts: u32,
    /// Time allowed for one attempt (`10s`, `500ms`).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub attempt_timeout: Duration,
    /// Pause after the first failed attempt; it doubles after each further one (at most 5 s).
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    pub backoff: Duration,
    /// Also write the result line to this file, e.g. /dev/termination-log.
    #[arg(long)]
    pub termination_log: Option<PathBuf>,
}

fn load(file: Option<&PathBuf>) -> Result<ReportJob, (i32, String)> {
    match file {
        Some(path) => load_file(path).map_err(|e| (EXIT_PERMANENT, e.to_string())),
        None => match std::env::var(ENV_SPEC) {
            Ok(text) => load_str(&text, ENV_SPEC).map_err(|e| (EXIT_PERMANENT, e.to_string())),
            Err(_) => Err((
                EXIT_USAGE,
                format!("no spec: pass -f report.yaml (or set {ENV_SPEC})"),
            )),
        },
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn write_log(path: Option<&PathBuf>, result: &StageResult) {
    if let Some(path) = path
        && let Err(e) = std::fs::write(path, result.to_line())
    {
        eprintln!("warning: cannot write {}: {e}", path.display());
    }
}

/// `reportjob notify`: 0 whether or not the webhook accepted it, 2 for usage errors,
/// 3 for an invalid spec.
pub async fn notify(args: NotifyArgs) -> i32 {
    let usage = |code: i32, message: String| {
        eprintln!("error: {message}");
        let reason = if code == EXIT_USAGE {
            "usage"
        } else {
            "invalid_spec"
        };
        let failed = StageResult::Failed {
            reason: reason.into(),
            message,
        };
        write_log(args.termination_log.as_ref(), &failed);
        code
    };
    let rj = match load(args.file.as_ref()) {
        Ok(rj) => rj,
        Err((code, message)) => return usage(code, message),
    };
    let Some(url) = env(ENV_WEBHOOK_URL) else {
        return usage(
            EXIT_USAGE,
            format!(
                "{ENV_WEBHOOK_URL} is not set (the pod gets it from spec.notify.webhookSecretRef)"
            ),
        );
    };
    let Some(name) = env(ENV_NAME).or_else(|| rj.metadata.name.clone()) else {
        return usage(
            EXIT_USAGE,
            format!("{ENV_NAME} is not set and the spec has no metadata.name"),
        );
    };
    let namespace = env(ENV_NAMESPACE)
        .or_else(|| rj.metadata.namespace.clone())
        .unwrap_or_else(|| "default".to_string());
    let phase = match args.outcome {
        OutcomeArg::Succeeded => Outcome::Succeeded,
        OutcomeArg::Failed => Outcome::Failed,
    };
    let details = Details {
        rows: args.rows,
        bytes: args.bytes,
        location: args.location.clone(),
        url: args.url.clone(),
        message: args.message.clone(),
    };
    let policy = RetryPolicy {
        attempts: args.attempts.max(1),
        timeout: args.attempt_timeout,
        backoff: reportjob_core::retry::Backoff {
            first: args.backoff,
            ..reportjob_core::retry::WEBHOOK
        },
    };
    let lookup = |var: &str| match var {
        ENV_WEBHOOK_URL => Some(url.clone()),
        ENV_NAME => Some(name.clone()),
        ENV_NAMESPACE => Some(namespace.clone()),
        _ => None,
    };
    let report =
        notify::notify_with(rj.spec.notify.as_ref(), phase, details, &policy, lookup).await;
    let result = StageResult::Notified(report);
    write_log(args.termination_log.as_ref(), &result);
    println!("{result}");
    EXIT_OK
}
