//! The ReportSchedule loop: lists a schedule's runs, asks [`decide::sync`] what to do, makes
//! the calls, writes the status and records the Events. Runs beside the ReportJob controller.
//!
//! The time is the system clock, or (for tests only) the RFC 3339 timestamp in the file
//! given by the hidden `reportjob controller --clock-file` (or `REPORTJOB_CLOCK_FILE`), read
//! at each sync; with it the loop looks again every second, so a test moves time by
//! rewriting the file instead of sleeping.

pub mod decide;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use self::decide::{Action, Note};
use super::names::FIELD_MANAGER;
use super::{ReconcileError, kube_err};
use reportjob_core::api::ReportJob;
use reportjob_core::schedule::ReportSchedule;
use reportjob_core::schedule::template::SCHEDULE_LABEL;

/// What every sync shares.
pub struct Context {
    client: Client,
    recorder: Recorder,
    clock_file: Option<PathBuf>,
}

/// The time now: the test clock file's when there is one, else the system's.
pub fn now(clock_file: Option<&Path>) -> Result<jiff::Timestamp, String> {
    match clock_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--clock-file {}: {e}", path.display()))?;
            text.trim().parse().map_err(|e| {
                format!(
                    "--clock-file: {:?} is not an RFC 3339 time: {e}",
                    text.trim()
                )
            })
        }
        None => Ok(jiff::Timestamp::now()),
    }
}

/// Runs the schedule loop over `scopes` (a namespace each, `None`: all) until shutdown.
pub async fn run(
    client: Client,
    recorder: Recorder,
    scopes: Vec<Option<String>>,
    clock_file: Option<PathBuf>,
) {
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder,
        clock_file,
    });
    let loops = scopes.into_iter().map(|ns| {
        let (schedules, runs): (Api<ReportSchedule>, Api<ReportJob>) = match &ns {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        Controller::new(schedules, watcher::Config::default())
            .owns(runs, watcher::Config::default().labels(SCHEDULE_LABEL))
            .shutdown_on_signal()
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|result| async move {
                use kube::runtime::controller::Error as RunError;
                match result {
                    Ok((obj, _)) => tracing::debug!(reportschedule = %obj, "synced"),
                    Err(RunError::ReconcilerFailed(e, obj)) => {
                        tracing::warn!(reportschedule = %obj, error = %e, "sync failed")
                    }
                    Err(e) => tracing::warn!(error = %reportjob_core::error_text::error_chain(&e), "watching schedules failed"),
                }
            })
    });
    futures::future::join_all(loops).await;
}

fn error_policy(_rs: Arc<ReportSchedule>, _error: &ReconcileError, _ctx: Arc<Context>) -> Requeue {
    Requeue::requeue(Duration::from_secs(2))
}

async fn reconcile(
    cached: Arc<ReportSchedule>,
    ctx: Arc<Context>,
) -> Result<Requeue, ReconcileError> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    // The schedule as stored now, not as the cache last saw it: the status the previous sync
    // wrote (lastScheduleTime) may not have reached the cache yet, and deciding from the older
    // one would write that older time back (upstream guards its UpdateStatus with the
    // resourceVersion instead).
    let schedules: Api<ReportSchedule> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(rs) = schedules
        .get_opt(&name)
        .await
        .map_err(kube_err("reading the schedule"))?
    else {
        return Ok(Requeue::await_change());
    };
    let now = match now(ctx.clock_file.as_deref()) {
        Ok(now) => now,
        Err(message) => {
            tracing::error!(%message, "cannot read the clock");
            return Ok(Requeue::requeue(Duration::from_secs(1)));
        }
    };
    let runs_api: Api<ReportJob> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let runs: Vec<ReportJob> = runs_api
        .list(&ListParams::default().labels(&format!("{SCHEDULE_LABEL}={name}")))
        .await
        .map_err(kube_err("listing the schedule's ReportJobs"))?
        .items
        .into_iter()
        .filter(|r| {
            r.owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .collect();
    let sync = decide::sync(&rs, &runs, now);
    for action in &sync.actions {
        match action {
            Action::Delete(run) => match runs_api.delete(run, &DeleteParams::background()).await {
                Ok(_) => tracing::info!(reportschedule = %name, reportjob = %run, "deleting run"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(kube_err(format!("deleting ReportJob {run}"))(e)),
            },
            Action::Create(rj) => match runs_api.create(&PostParams::default(), rj).await {
                Ok(_) => {
                    tracing::info!(reportschedule = %name, reportjob = %rj.name_any(), "created run")
                }
                // Created by an earlier sync (the name is the scheduled time).
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => {
                    let message = format!("cannot create ReportJob {}: {e}", rj.name_any());
                    publish(
                        &ctx,
                        &rs,
                        &Note {
                            warning: true,
                            reason: "FailedCreate",
                            message,
                        },
                    )
                    .await;
                    return Err(kube_err(format!("creating ReportJob {}", rj.name_any()))(e));
                }
            },
        }
    }
    if rs.status.as_ref() != Some(&sync.status) {
        let api: Api<ReportSchedule> = Api::namespaced(ctx.client.clone(), &ns);
        let body = json!({
            "apiVersion": ReportSchedule::api_version(&()),
            "kind": ReportSchedule::kind(&()),
            "status": sync.status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .map_err(kube_err("writing the schedule's status"))?;
    }
    for note in &sync.notes {
        publish(&ctx, &rs, note).await;
    }
    Ok(match sync.requeue {
        _ if ctx.clock_file.is_some() => Requeue::requeue(Duration::from_secs(1)),
        Some(after) => Requeue::requeue(after),
        None => Requeue::await_change(),
    })
}

async fn publish(ctx: &Context, rs: &ReportSchedule, note: &Note) {
    let event = Event {
        type_: if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: note.reason.into(),
        note: Some(note.message.chars().take(1000).collect()),
        action: "Schedule".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &rs.object_ref(&())).await {
        tracing::warn!(reportschedule = %rs.name_any(), error = %e, reason = %note.reason, "cannot record event");
    }
}
