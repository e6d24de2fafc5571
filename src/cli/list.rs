//! `reportjob list`: the ReportJobs of a namespace (or all, `-A`), filtered by labels (`-l`),
//! as a table or `-o json|yaml|wide|name`.

use clap::Args;
use kube::api::{Api, ListParams};

use super::cluster::{ClusterArgs, api_failure, connect};
use super::exit::{CommandResult, Exit, finish};
use super::print::{Format, render};
use crate::api::ReportJob;

/// `reportjob list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// List the ReportJobs of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only ReportJobs whose labels match this selector (`team=a,tier!=gold`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}

/// `reportjob list`.
pub async fn list(args: ListArgs) -> i32 {
    finish(list_inner(args).await)
}

async fn list_inner(args: ListArgs) -> CommandResult {
    let (client, ns) = connect(&args.cluster).await?;
    let api: Api<ReportJob> = if args.all_namespaces {
        Api::all(client)
    } else {
        Api::namespaced(client, &ns)
    };
    let mut params = ListParams::default();
    if let Some(selector) = &args.selector {
        params = params.labels(selector);
    }
    let where_ = if args.all_namespaces {
        "in any namespace".to_string()
    } else {
        format!("in namespace {ns}")
    };
    let mut items = api
        .list(&params)
        .await
        .map_err(|e| api_failure(&e, &format!("listing ReportJobs {where_}")))?
        .items;
    items.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    if items.is_empty() && args.output.is_none_or(|f| f == Format::Wide) {
        // kubectl's words (`kubectl get`), on stderr, so that stdout stays empty for scripts.
        if args.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {ns} namespace.");
        }
        return Ok(Exit::Ok);
    }
    print!(
        "{}",
        render(&items, args.output, true, args.all_namespaces)?
    );
    Ok(Exit::Ok)
}
