//! `reportjob uninstall --delete-reportjobs`: what the chart's pre-delete hook runs while the
//! controller still runs. It deletes every ReportJob (in `--namespaces`, or all) and waits
//! until the controller has finalized each (its stage Jobs and staging data removed), so no
//! ReportJob is left holding the controller's finalizer once the controller is gone: a later
//! delete of it, or of its namespace, would otherwise wait for a controller that never comes.
//! Reports stay where they are, unless a spec asked for them to go with its ReportJob.

use std::time::{Duration, Instant};

use clap::Args;
use kube::api::{Api, DeleteParams, ListParams};

use crate::api::ReportJob;
use crate::cli::client::cluster::{api_code, api_failure, client, config};
use crate::cli::client::duration::parse_duration;
use crate::cli::client::exit::{CommandError, CommandResult, Exit, finish};

/// `reportjob uninstall`.
#[derive(Args, Debug)]
pub struct UninstallArgs {
    /// Delete every ReportJob and wait until each is finalized (required: the command does
    /// nothing else, and says so when it is missing).
    #[arg(long)]
    pub delete_reportjobs: bool,
    /// Namespaces whose ReportJobs go, comma-separated; every namespace when empty (as the
    /// controller's `--namespaces`).
    #[arg(long, value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// How long to wait for the controller to finalize them.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub timeout: Duration,
    /// The kubeconfig file. Default: KUBECONFIG, ~/.kube/config, then in-cluster.
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,
}

/// `reportjob uninstall`.
pub async fn uninstall(args: UninstallArgs) -> i32 {
    finish(uninstall_inner(args).await)
}

fn scopes(client: &kube::Client, namespaces: &[String]) -> Vec<(String, Api<ReportJob>)> {
    if namespaces.is_empty() {
        return vec![("all namespaces".into(), Api::all(client.clone()))];
    }
    namespaces
        .iter()
        .map(|ns| (ns.clone(), Api::namespaced(client.clone(), ns)))
        .collect()
}

async fn remaining(scopes: &[(String, Api<ReportJob>)]) -> Result<Vec<String>, CommandError> {
    let mut left = Vec::new();
    for (scope, api) in scopes {
        let listed = api
            .list_metadata(&ListParams::default())
            .await
            .map_err(|e| api_failure(&e, &format!("listing ReportJobs in {scope}")))?;
        left.extend(listed.items.into_iter().map(|rj| {
            format!(
                "{}/{}",
                rj.metadata.namespace.unwrap_or_default(),
                rj.metadata.name.unwrap_or_default()
            )
        }));
    }
    Ok(left)
}

async fn uninstall_inner(args: UninstallArgs) -> CommandResult {
    if !args.delete_reportjobs {
        return Err(CommandError::no_result(
            "nothing to do: pass --delete-reportjobs to delete every ReportJob while the \
             controller still runs",
        ));
    }
    let client = client(config(args.kubeconfig.as_deref(), None).await?)?;
    let scopes = scopes(&client, &args.namespaces);
    // One delete per ReportJob: the controller's role has `delete`, not `deletecollection`.
    for name in remaining(&scopes).await? {
        let (ns, name) = name.split_once('/').unwrap_or_default();
        let api: Api<ReportJob> = Api::namespaced(client.clone(), ns);
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => println!("deleting ReportJob {ns}/{name}"),
            Err(e) if api_code(&e) == Some(404) => {}
            Err(e) => return Err(api_failure(&e, &format!("deleting ReportJob {ns}/{name}"))),
        }
    }
    let deadline = Instant::now() + args.timeout;
    let mut reported = usize::MAX;
    loop {
        let left = remaining(&scopes).await?;
        if left.is_empty() {
            println!("every ReportJob is deleted and finalized");
            return Ok(Exit::Ok);
        }
        if left.len() != reported {
            println!(
                "waiting for the controller to finalize {} ReportJob(s): {}",
                left.len(),
                left.join(", ")
            );
            reported = left.len();
        }
        if Instant::now() >= deadline {
            return Err(CommandError::failed(format!(
                "{} ReportJob(s) not finalized within {:?}: {} (is the controller running? \
                 its log says why)",
                left.len(),
                args.timeout,
                left.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
