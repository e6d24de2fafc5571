//! `reportjob suspend NAME`: pauses a ReportJob (`spec.suspend: true`); `reportjob resume`
//! goes on where it stopped. Under `consistency: Snapshot` a suspended run holds nothing:
//! its snapshot is released, and resuming exports every chunk again under a new one.

use clap::Args;
use kube::api::{Api, Patch};
use serde_json::json;

use super::cluster::{ClusterArgs, api_code, api_failure, connect, not_found};
use super::exit::{CommandResult, Exit, finish};
use super::retry::merge_params;
use crate::api::ReportJob;

/// `reportjob suspend`.
#[derive(Args, Debug)]
pub struct SuspendArgs {
    /// Name of the ReportJob.
    pub name: String,
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `reportjob suspend`.
pub async fn suspend(args: SuspendArgs) -> i32 {
    finish(suspend_inner(args).await)
}

async fn suspend_inner(args: SuspendArgs) -> CommandResult {
    let (client, ns) = connect(&args.cluster).await?;
    let api: Api<ReportJob> = Api::namespaced(client, &ns);
    let name = &args.name;
    let patch = json!({"spec": {"suspend": true}});
    match api
        .patch(name, &merge_params(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(e) if api_code(&e) == Some(404) => return Err(not_found(&ns, name)),
        Err(e) => {
            return Err(api_failure(
                &e,
                &format!("suspending ReportJob {ns}/{name}"),
            ));
        }
    }
    println!(
        "ReportJob {ns}/{name} suspended (spec.suspend=true): its chunk pods are stopped and no \
         new ones start"
    );
    println!("resume: reportjob resume {name} -n {ns}");
    Ok(Exit::Ok)
}
