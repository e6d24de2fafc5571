//! `reportjob schedule`: drive ReportSchedules. `list` them (`-o json|yaml|name`),
//! `suspend` and `resume` one (`spec.suspend`), and `trigger` one run now, as `kubectl create
//! job --from=cronjob/NAME` does for a CronJob (with `--wait`, followed as `reportjob wait`
//! does).

use clap::{Args, Subcommand};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PostParams};
use serde_json::json;

use super::cluster::{ClusterArgs, api_code, api_failure, connect};
use super::exit::{CommandError, CommandResult, Exit, finish};
use super::print::Format;
use super::retry::merge_params;
use crate::controller::schedule::decide;
use crate::schedule::ReportSchedule;
use crate::schedule::template;

/// `reportjob schedule`.
#[derive(Args, Debug)]
pub struct ScheduleArgs {
    /// What to do with the ReportSchedule.
    #[command(subcommand)]
    pub command: ScheduleCommand,
}

/// `reportjob schedule` subcommands.
#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// List the ReportSchedules of the namespace (-A: of all): NAME, SCHEDULE, TIMEZONE,
    /// SUSPEND, ACTIVE, LAST SCHEDULE, READY, NEXT, AGE.
    #[command(visible_alias = "ls")]
    List(ScheduleListArgs),
    /// Stop creating runs (`spec.suspend: true`); runs in flight go on.
    Suspend(ScheduleNameArgs),
    /// Create runs again (`spec.suspend: false`).
    Resume(ScheduleNameArgs),
    /// Create one run now: the ReportJob of the most recent scheduled time (its window is
    /// the period that ended then), named `<schedule>-m<unix seconds>` unless --run-name.
    Trigger(TriggerArgs),
}

/// `reportjob schedule list`.
#[derive(Args, Debug)]
pub struct ScheduleListArgs {
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// List the ReportSchedules of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format (`json`, `yaml`, `name`; the table by default).
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}

/// `reportjob schedule suspend|resume`.
#[derive(Args, Debug)]
pub struct ScheduleNameArgs {
    /// Name of the ReportSchedule.
    pub name: String,
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `reportjob schedule trigger`.
#[derive(Args, Debug)]
pub struct TriggerArgs {
    /// Name of the ReportSchedule.
    pub name: String,
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Name of the ReportJob to create.
    #[arg(long)]
    pub run_name: Option<String>,
    /// Then follow the run to its end, as `reportjob wait` does (exit 0 complete, 1 failed,
    /// 2 timeout or no server).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (`90` seconds, `30s`, `30m`, `2h`): exit 2.
    #[arg(long, value_parser = super::duration::parse_duration, requires = "wait")]
    pub timeout: Option<std::time::Duration>,
    /// Print the created ReportJob (`name`, `json`, `yaml`) instead of a sentence.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}

/// `reportjob schedule`.
pub async fn schedule(args: ScheduleArgs) -> i32 {
    match args.command {
        ScheduleCommand::List(args) => finish(list(args).await),
        ScheduleCommand::Suspend(args) => finish(set_suspend(args, true).await),
        ScheduleCommand::Resume(args) => finish(set_suspend(args, false).await),
        ScheduleCommand::Trigger(args) => finish(trigger(args).await),
    }
}

async fn list(args: ScheduleListArgs) -> CommandResult {
    let (client, ns) = connect(&args.cluster).await?;
    let api: Api<ReportSchedule> = if args.all_namespaces {
        Api::all(client)
    } else {
        Api::namespaced(client, &ns)
    };
    let mut items = api
        .list(&ListParams::default())
        .await
        .map_err(|e| api_failure(&e, "listing ReportSchedules"))?
        .items;
    items.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let text = match args.output {
        None | Some(Format::Wide) => {
            if items.is_empty() {
                eprintln!("No ReportSchedules found.");
                return Ok(Exit::Ok);
            }
            super::print::schedule_table(&items, args.all_namespaces, jiff::Timestamp::now())
        }
        Some(Format::Name) => items
            .iter()
            .map(|rs| format!("reportschedule.reporting.dev/{}\n", rs.name_any()))
            .collect(),
        Some(format) => {
            let objects = items
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CommandError::failed(format!("cannot print: {e}")))?;
            let list = json!({"apiVersion": "v1", "kind": "List", "items": objects,
                              "metadata": {"resourceVersion": ""}});
            if format == Format::Json {
                super::print::json_text(&list)?
            } else {
                super::print::yaml_text(&list)?
            }
        }
    };
    print!("{text}");
    Ok(Exit::Ok)
}

async fn set_suspend(args: ScheduleNameArgs, suspend: bool) -> CommandResult {
    let (client, ns) = connect(&args.cluster).await?;
    let api: Api<ReportSchedule> = Api::namespaced(client, &ns);
    let name = &args.name;
    let patch = json!({"spec": {"suspend": suspend}});
    match api
        .patch(name, &merge_params(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(e) => return Err(schedule_failure(&e, "updating", &ns, name)),
    }
    if suspend {
        println!(
            "ReportSchedule {ns}/{name} suspended (spec.suspend=true): no new runs are \
             created; runs in flight go on"
        );
    } else {
        println!("ReportSchedule {ns}/{name} resumed (spec.suspend=false)");
    }
    Ok(Exit::Ok)
}

/// A failed request about ReportSchedule `ns/name`: "not found" for a 404, else what was
/// being done and the API server's answer.
fn schedule_failure(e: &kube::Error, doing: &str, ns: &str, name: &str) -> CommandError {
    if api_code(e) == Some(404) {
        CommandError::failed(format!("ReportSchedule {ns}/{name} not found"))
    } else {
        api_failure(e, &format!("{doing} ReportSchedule {ns}/{name}"))
    }
}

async fn trigger(args: TriggerArgs) -> CommandResult {
    let (client, ns) = connect(&args.cluster).await?;
    let schedules: Api<ReportSchedule> = Api::namespaced(client.clone(), &ns);
    let name = &args.name;
    let rs = match schedules.get(name).await {
        Ok(rs) => rs,
        Err(e) => return Err(schedule_failure(&e, "reading", &ns, name)),
    };
    let cron = decide::check(&rs).map_err(|(_, message)| CommandError::refused(message))?;
    let now = jiff::Timestamp::now();
    let run_name = args
        .run_name
        .unwrap_or_else(|| format!("{name}-m{}", now.as_second()));
    let rj = template::manual_run(&rs, &cron, &run_name, now).map_err(CommandError::refused)?;
    let runs: Api<crate::api::ReportJob> = Api::namespaced(client, &ns);
    let created = runs
        .create(&PostParams::default(), &rj)
        .await
        .map_err(|e| api_failure(&e, &format!("creating ReportJob {ns}/{run_name}")))?;
    match args.output {
        None | Some(Format::Wide) => {
            println!("ReportJob {ns}/{run_name} created from ReportSchedule {name}")
        }
        format => print!(
            "{}",
            super::print::render(std::slice::from_ref(&created), format, false, false)?
        ),
    }
    if !args.wait {
        return Ok(Exit::Ok);
    }
    let shown = super::wait::shown(false, None);
    Ok(super::wait::follow(runs, created, &ns, args.timeout, RECONNECT, shown).await)
}

/// How long `trigger --wait` waits for an unreachable API server, as `wait` does by default.
const RECONNECT: std::time::Duration = std::time::Duration::from_secs(60);
