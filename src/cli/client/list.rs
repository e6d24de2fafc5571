//! `reportjob list`: the ReportJobs of a namespace (or all, `-A`), filtered by labels (`-l`),
//! as a table or `-o json|yaml|wide|name`; in the table formats, the ReportSchedules there
//! follow (their runs are the ReportJobs named `<schedule>-<minutes>`).

use clap::Args;
use kube::api::{Api, ListParams};

use super::cluster::{ClusterArgs, api_failure, connect};
use super::exit::{CommandResult, Exit, finish};
use super::print::{Format, render};
use crate::api::ReportJob;
use crate::schedule::ReportSchedule;

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
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), &ns)
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
    let table = args.output.is_none_or(|f| f == Format::Wide);
    if items.is_empty() && table {
        // kubectl's words (`kubectl get`), on stderr, so that stdout stays empty for scripts.
        if args.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {ns} namespace.");
        }
    } else {
        print!(
            "{}",
            render(&items, args.output, true, args.all_namespaces)?
        );
    }
    if table {
        let schedules: Api<ReportSchedule> = if args.all_namespaces {
            Api::all(client)
        } else {
            Api::namespaced(client, &ns)
        };
        // Where ReportSchedules are not installed, or not readable for this user, the
        // ReportJobs are the whole answer.
        if let Ok(listed) = schedules.list(&params).await
            && !listed.items.is_empty()
        {
            let mut listed = listed.items;
            listed.sort_by(|a, b| {
                (&a.metadata.namespace, &a.metadata.name)
                    .cmp(&(&b.metadata.namespace, &b.metadata.name))
            });
            let now = jiff::Timestamp::now();
            let prefix = if items.is_empty() { "" } else { "\n" };
            print!(
                "{prefix}{}",
                super::print::schedule_table(&listed, args.all_namespaces, now)
            );
        }
    }
    Ok(Exit::Ok)
}
