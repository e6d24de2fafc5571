//! `reportjob cancel NAME`: suspends a ReportJob (`spec.suspend: true`), or deletes it with
//! `--delete`.

use clap::Args;
use kube::api::{Api, DeleteParams, Patch};
use serde_json::json;

use super::cluster::{ClusterArgs, api_code, api_failure, connect, not_found};
use super::exit::{CommandResult, Exit, finish};
use super::retry::merge_params;
use crate::api::ReportJob;

/// `reportjob cancel`.
#[derive(Args, Debug)]
pub struct CancelArgs {
    /// Name of the ReportJob.
    pub name: String,
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Delete the ReportJob instead of suspending it.
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
    let patch = json!({"spec": {"suspend": true}});
    match api
        .patch(name, &merge_params(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(e) if api_code(&e) == Some(404) => {
            return Err(not_found(&ns, name));
        }
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
