//! `reportjob retry NAME [--wait]`: asks the controller to re-run the failed chunks (or
//! stage) of a failed ReportJob by setting the retry annotation to a fresh token, and with
//! `--wait` follows the new attempt to its end.

use clap::Args;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::cluster::{ClusterArgs, api_failure, connect, get_reportjob};
use super::exit::{CommandError, CommandResult, Exit, finish};
use super::output::outcome_of;
use crate::api::ReportJob;
use crate::controller::names::RETRY_ANNOTATION;

/// `reportjob retry`.
#[derive(Args, Debug)]
pub struct RetryArgs {
    /// Name of the ReportJob.
    pub name: String,
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Then wait for the new attempt's end, as `reportjob wait` does (exit 0 complete, 1
    /// failed, 2 timeout or no server).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (`90` seconds, `30s`, `30m`, `2h`): exit 2.
    #[arg(long, value_parser = super::duration::parse_duration, requires = "wait")]
    pub timeout: Option<std::time::Duration>,
}

/// `reportjob retry`.
pub async fn retry(args: RetryArgs) -> i32 {
    finish(retry_inner(args).await)
}

async fn retry_inner(args: RetryArgs) -> CommandResult {
    let (client, ns) = connect(&args.cluster).await?;
    let api: Api<ReportJob> = Api::namespaced(client, &ns);
    let name = &args.name;
    let rj = get_reportjob(&api, name, &ns).await?;
    let status = rj.status.unwrap_or_default();
    if status.phase == Some(crate::api::Phase::Cancelled) {
        return Err(CommandError::failed(format!(
            "ReportJob {ns}/{name} was cancelled: {}",
            crate::api::next_step::after_failure(
                crate::api::conditions::reason::CANCELLED,
                name,
                &ns
            )
        )));
    }
    if outcome_of(&status) != Some(false) {
        return Err(CommandError::failed(format!(
            "ReportJob {ns}/{name} is {}, not failed: there is nothing to retry",
            status.phase.map_or("Pending", |p| p.as_str())
        )));
    }
    let token = format!(
        "{}-{:04x}",
        jiff::Timestamp::now().as_second(),
        rand::random::<u16>()
    );
    let patch = json!({"metadata": {"annotations": {RETRY_ANNOTATION: token}}});
    api.patch(name, &merge_params(), &Patch::Merge(&patch))
        .await
        .map_err(|e| api_failure(&e, &format!("annotating ReportJob {ns}/{name}")))?;
    println!("ReportJob {ns}/{name}: retry requested ({RETRY_ANNOTATION}={token})");
    match status.failed_chunks.as_deref().filter(|f| !f.is_empty()) {
        Some(failed) => println!("the controller re-runs the failed chunks: {failed}"),
        None => println!("the controller re-runs the failed stage"),
    }
    if !args.wait {
        return Ok(Exit::Ok);
    }
    // The new attempt: `wait` takes the failure before it for no outcome until the
    // controller has taken up this token.
    let rj = get_reportjob(&api, name, &ns).await?;
    let shown = super::wait::shown(false, None);
    Ok(super::wait::follow(api, rj, &ns, args.timeout, RECONNECT, shown).await)
}

/// How long `retry --wait` waits for an unreachable API server, as `wait` does by default.
const RECONNECT: std::time::Duration = std::time::Duration::from_secs(60);

/// Merge-patch parameters of the client commands' writes.
pub(super) fn merge_params() -> PatchParams {
    PatchParams {
        field_manager: Some("reportjob".to_string()),
        ..PatchParams::default()
    }
}
