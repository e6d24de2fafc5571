//! `reportjob cancel NAME`: ends a ReportJob's run for good (the `reporting.dev/cancel`
//! annotation; the controller stops its pods, releases its snapshot and removes its staging
//! data, and keeps the ReportJob as `Cancelled` for the record), or deletes it with
//! `--delete`. `reportjob suspend` is the pause.

use clap::Args;
use kube::api::{Api, DeleteParams, Patch};
use serde_json::json;

use super::cluster::{ClusterArgs, api_code, api_failure, connect, get_reportjob, not_found};
use super::exit::{CommandError, CommandResult, Exit, finish};
use super::retry::merge_params;
use crate::api::ReportJob;
use crate::controller::names::CANCEL_ANNOTATION;

/// `reportjob cancel`.
#[derive(Args, Debug)]
pub struct CancelArgs {
    /// Name of the ReportJob.
    pub name: String,
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Delete the ReportJob instead of keeping it as `Cancelled`.
    #[arg(long)]
    pub delete: bool,
}

/// `reportjob cancel`.
pub async fn cancel(args: CancelArgs) -> i32 {
    finish(cancel_inner(args).await)
}

async fn cancel_inner(args: CancelArgs) -> CommandResult {
    let (client, ns) = connect(&args.cluster).await?;
    let api: Api<ReportJob> = Api::namespaced(client, &ns);
    let name = &args.name;
    if args.delete {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => println!("ReportJob {ns}/{name} deleted"),
            Err(e) if api_code(&e) == Some(404) => {
                return Err(not_found(&ns, name));
            }
            Err(e) => return Err(api_failure(&e, &format!("deleting ReportJob {ns}/{name}"))),
        }
        return Ok(Exit::Ok);
    }
    let rj = get_reportjob(&api, name, &ns).await?;
    if let Some(phase) = rj
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .filter(|p| p.is_terminal())
    {
        return Err(CommandError::failed(format!(
            "ReportJob {ns}/{name} is {}: there is no run to cancel (`reportjob cancel {name} \
             -n {ns} --delete` deletes it)",
            phase.as_str()
        )));
    }
    let asked = jiff::Timestamp::now().to_string();
    let patch = json!({"metadata": {"annotations": {CANCEL_ANNOTATION: asked}}});
    api.patch(name, &merge_params(), &Patch::Merge(&patch))
        .await
        .map_err(|e| api_failure(&e, &format!("cancelling ReportJob {ns}/{name}")))?;
    println!(
        "ReportJob {ns}/{name} cancelled ({CANCEL_ANNOTATION}={asked}): the controller stops its \
         pods, releases its snapshot and removes its staging data; it stays as Cancelled"
    );
    println!("to pause instead, `reportjob suspend {name} -n {ns}` (before a cancel)");
    Ok(Exit::Ok)
}
