//! `reportjob resume NAME`: clears `spec.suspend`, the counterpart of `suspend`.

use clap::Args;
use kube::api::{Api, Patch};
use serde_json::json;

use super::cluster::{ClusterArgs, api_code, api_failure, connect, not_found};
use super::exit::{CommandResult, Exit, finish};
use super::retry::merge_params;
use crate::api::ReportJob;

/// `reportjob resume`.
#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// Name of the ReportJob.
    pub name: String,
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `reportjob resume`.
pub async fn resume(args: ResumeArgs) -> i32 {
    finish(resume_inner(args).await)
}

async fn resume_inner(args: ResumeArgs) -> CommandResult {
    let (client, ns) = connect(&args.cluster).await?;
    let api: Api<ReportJob> = Api::namespaced(client, &ns);
    let name = &args.name;
    let patch = json!({"spec": {"suspend": false}});
    match api
        .patch(name, &merge_params(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(e) if api_code(&e) == Some(404) => return Err(not_found(&ns, name)),
        Err(e) => return Err(api_failure(&e, &format!("resuming ReportJob {ns}/{name}"))),
    }
    println!(
        "ReportJob {ns}/{name} resumed (spec.suspend=false): its remaining chunks are exported; \
         `reportjob wait {name} -n {ns}` follows it"
    );
    Ok(Exit::Ok)
}
