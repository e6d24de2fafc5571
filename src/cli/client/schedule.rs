//! `reportjob schedule trigger NAME`: creates one run of a ReportSchedule now, as
//! `kubectl create job --from=cronjob/NAME` does for a CronJob.

use clap::{Args, Subcommand};
use kube::api::{Api, PostParams};

use super::cluster::{ClusterArgs, api_code, api_failure, connect};
use super::exit::{CommandError, CommandResult, Exit, finish};
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
    /// Create one run now: the ReportJob of the most recent scheduled time (its window is
    /// the period that ended then), named `<schedule>-m<unix seconds>` unless --run-name.
    Trigger(TriggerArgs),
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
}

/// `reportjob schedule`.
pub async fn schedule(args: ScheduleArgs) -> i32 {
    match args.command {
        ScheduleCommand::Trigger(args) => finish(trigger(args).await),
    }
}

async fn trigger(args: TriggerArgs) -> CommandResult {
    let (client, ns) = connect(&args.cluster).await?;
    let schedules: Api<ReportSchedule> = Api::namespaced(client.clone(), &ns);
    let name = &args.name;
    let rs = match schedules.get(name).await {
        Ok(rs) => rs,
        Err(e) if api_code(&e) == Some(404) => {
            return Err(CommandError::failed(format!(
                "ReportSchedule {ns}/{name} not found"
            )));
        }
        Err(e) => {
            return Err(api_failure(
                &e,
                &format!("reading ReportSchedule {ns}/{name}"),
            ));
        }
    };
    let cron = decide::check(&rs).map_err(|(_, message)| CommandError::refused(message))?;
    let now = jiff::Timestamp::now();
    let run_name = args
        .run_name
        .unwrap_or_else(|| format!("{name}-m{}", now.as_second()));
    let rj = template::manual_run(&rs, &cron, &run_name, now).map_err(CommandError::refused)?;
    let runs: Api<crate::api::ReportJob> = Api::namespaced(client, &ns);
    runs.create(&PostParams::default(), &rj)
        .await
        .map_err(|e| api_failure(&e, &format!("creating ReportJob {ns}/{run_name}")))?;
    println!("ReportJob {ns}/{run_name} created from ReportSchedule {name}");
    Ok(Exit::Ok)
}
