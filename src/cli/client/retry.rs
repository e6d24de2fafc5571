//! `reportjob retry NAME`: asks the controller to re-run the failed chunks (or stage) of a
//! failed ReportJob by setting the retry annotation to a fresh token.

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
    Ok(Exit::Ok)
}

/// Merge-patch parameters of the client commands' writes.
pub(super) fn merge_params() -> PatchParams {
    PatchParams {
        field_manager: Some("reportjob".to_string()),
        ..PatchParams::default()
    }
}
