//! `reportjob status NAME`: a ReportJob's phase, progress, output, conditions and recent
//! events, or its status as one JSON object.

use clap::Args;
use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::cluster::{ClusterArgs, connect, describe, get_reportjob};
use super::duration::{human_duration, since};
use super::exit::{CommandResult, Exit, finish};
use super::output::{result_word, status_json};
use super::print::{Format, aligned, render};
use crate::api::{KIND, ReportJob};
use crate::notify::{group_digits, human_bytes};

/// `reportjob status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Name of the ReportJob.
    pub name: String,
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print the ReportJob's status as JSON instead.
    #[arg(long, conflicts_with = "output")]
    pub json: bool,
    /// Print the ReportJob in this format instead (json and yaml: the whole object).
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}

/// `reportjob status`.
pub async fn status(args: StatusArgs) -> i32 {
    finish(status_inner(args).await)
}

async fn status_inner(args: StatusArgs) -> CommandResult {
    let (client, ns) = connect(&args.cluster).await?;
    let api: Api<ReportJob> = Api::namespaced(client.clone(), &ns);
    let rj = get_reportjob(&api, &args.name, &ns).await?;
    if args.json {
        println!("{}", status_json(&rj, result_word(&rj)));
        return Ok(Exit::Ok);
    }
    if args.output.is_some() {
        print!(
            "{}",
            render(std::slice::from_ref(&rj), args.output, false, false)?
        );
        return Ok(Exit::Ok);
    }
    let events: Api<Event> = Api::namespaced(client, &ns);
    let selector = format!(
        "involvedObject.kind={KIND},involvedObject.name={}",
        args.name
    );
    let listed = events.list(&ListParams::default().fields(&selector)).await;
    let (events, events_error) = match listed {
        Ok(list) => (list.items, None),
        Err(e) => (Vec::new(), Some(describe(&e))),
    };
    print!("{}", render_status(&rj, &events, events_error.as_deref()));
    Ok(Exit::Ok)
}

fn event_time(e: &Event) -> Option<jiff::Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or(e.event_time.as_ref().map(|t| t.0))
        .or(e.first_timestamp.as_ref().map(|t| t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The readable summary `reportjob status` prints.
fn render_status(rj: &ReportJob, events: &[Event], events_error: Option<&str>) -> String {
    // Everything shown comes from objects others may write: no control character of theirs
    // reaches the terminal (a newline would start a forged line, an ESC a colour).
    let rj = &super::print::for_terminal_object(rj);
    let events = &super::print::for_terminal_object(&events.to_vec());
    let events_error = events_error.map(|e| super::print::for_terminal(e).into_owned());
    let events_error = events_error.as_deref();
    let status = rj.status.clone().unwrap_or_default();
    let mut out = String::new();
    let mut field = |label: &str, value: String| {
        out.push_str(&format!("{:<12} {value}\n", format!("{label}:")));
    };
    field("Name", rj.name_any());
    field("Namespace", rj.namespace().unwrap_or_default());
    field(
        "Phase",
        status.phase.map_or("Pending", |p| p.as_str()).to_string(),
    );
    if rj.spec.suspend {
        field("Suspend", "true (spec.suspend)".to_string());
    }
    let age = rj
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| since(t.0));
    if super::wait::unclaimed(rj) && age >= super::wait::UNCLAIMED_AFTER.as_secs() as i64 {
        field("Note", super::wait::unclaimed_note(rj));
    }
    if let Some(c) = &status.chunks {
        let mut text = format!("{}/{} chunks", c.succeeded, c.total);
        let mut extra = Vec::new();
        if c.active > 0 {
            extra.push(format!("{} active", c.active));
        }
        if c.failed > 0 {
            extra.push(format!("{} failed", c.failed));
        }
        if !extra.is_empty() {
            text.push_str(&format!(" ({})", extra.join(", ")));
        }
        field("Progress", text);
    } else if let Some(p) = &status.progress {
        field("Progress", format!("{p} chunks"));
    }
    if let Some(failed) = status.failed_chunks.as_deref().filter(|f| !f.is_empty()) {
        field("Failed", format!("chunks {failed}"));
    }
    if let Some(rows) = status.rows.or(status.output.as_ref().map(|o| o.rows)) {
        field("Rows", group_digits(rows));
    }
    if let Some(bytes) = status.bytes.or(status.output.as_ref().map(|o| o.bytes)) {
        field("Bytes", format!("{} ({bytes})", human_bytes(bytes)));
    }
    if let Some(start) = &status.start_time {
        field(
            "Started",
            format!("{} ({} ago)", start.0, human_duration(since(start.0))),
        );
    }
    if let Some(done) = &status.completion_time {
        field(
            "Completed",
            format!("{} ({} ago)", done.0, human_duration(since(done.0))),
        );
    }
    if let Some(start) = &status.start_time {
        let end = status
            .completion_time
            .as_ref()
            .map_or_else(jiff::Timestamp::now, |t| t.0);
        field(
            "Elapsed",
            human_duration(end.duration_since(start.0).as_secs()),
        );
    }
    if let Some(message) = status.message.as_deref().filter(|m| !m.is_empty()) {
        field("Message", message.to_string());
    }
    if let Some(o) = &status.output {
        out.push_str("Output:\n");
        out.push_str(&format!("  Location:  {}\n", o.location));
        if let Some(url) = &o.url {
            out.push_str(&format!("  URL:       {url}\n"));
        }
        if let Some(t) = &o.url_expires_at {
            let left = -since(t.0);
            let when = if left > 0 {
                format!("in {}", human_duration(left))
            } else {
                "expired".to_string()
            };
            out.push_str(&format!("  Expires:   {} ({when})\n", t.0));
        }
        out.push_str(&format!("  Rows:      {}\n", group_digits(o.rows)));
        out.push_str(&format!(
            "  Bytes:     {} ({})\n",
            human_bytes(o.bytes),
            o.bytes
        ));
        out.push_str(&format!("  SHA256:    {}\n", o.sha256));
        if let Some(count) = o.file_count {
            // A split report: the location is its manifest, which lists every file.
            out.push_str(&format!("  Files:     {count} (listed in the manifest)\n"));
            for file in &o.files {
                out.push_str(&format!(
                    "    {}  {} rows  {}\n",
                    file.location,
                    group_digits(file.rows),
                    human_bytes(file.bytes)
                ));
            }
            if o.files.len() < count as usize {
                out.push_str(&format!(
                    "    ... {} more in the manifest\n",
                    count as usize - o.files.len()
                ));
            }
        }
    }
    out.push_str("Conditions:\n");
    if status.conditions.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let mut rows = vec![vec![
            "TYPE".to_string(),
            "STATUS".into(),
            "REASON".into(),
            "AGE".into(),
            "MESSAGE".into(),
        ]];
        for c in &status.conditions {
            rows.push(vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                human_duration(since(c.last_transition_time.0)),
                c.message.clone(),
            ]);
        }
        out.push_str(&aligned(&rows, "  ", 2));
    }
    out.push_str("Events:\n");
    let uid = rj.metadata.uid.as_deref();
    let mut mine: Vec<&Event> = events
        .iter()
        .filter(|e| match (uid, e.involved_object.uid.as_deref()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        })
        .collect();
    mine.sort_by_key(|e| event_time(e));
    let recent = &mine[mine.len().saturating_sub(10)..];
    if let Some(error) = events_error {
        out.push_str(&format!("  <cannot list events: {error}>\n"));
    } else if recent.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let mut rows = vec![vec![
            "AGE".to_string(),
            "TYPE".into(),
            "REASON".into(),
            "MESSAGE".into(),
        ]];
        for e in recent {
            let mut message = e.message.clone().unwrap_or_default();
            if let Some(count) = e.count.filter(|c| *c > 1) {
                message.push_str(&format!(" (x{count})"));
            }
            rows.push(vec![
                event_time(e).map_or("?".to_string(), |t| human_duration(since(t))),
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                message,
            ]);
        }
        out.push_str(&aligned(&rows, "  ", 2));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_status_prints_as_escaped_text_on_its_own_lines() {
        let rj: ReportJob = serde_json::from_value(serde_json::json!({
            "apiVersion": crate::api::API_VERSION, "kind": crate::api::KIND,
            "metadata": {"name": "orders", "namespace": "team-a"},
            "spec": {
                "source": {"connectionSecretRef": {"name": "db"}, "table": "t", "keyColumn": "id"},
                "output": {"destination": {"pvc": {"claimName": "c", "path": "r.csv"}}}
            },
            "status": {"phase": "Failed",
                       "message": "x\nPhase:       Succeeded\u{1b}[32m",
                       "output": {"location": "r.csv\u{1b}]8;;http://evil\u{7}", "rows": 1,
                                  "bytes": 1, "sha256": "x"}},
        }))
        .expect("a ReportJob");
        let text = render_status(&rj, &[], Some("events: \u{1b}[2J"));
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert_eq!(
            text.lines().filter(|l| l.starts_with("Phase:")).count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("x\\nPhase:       Succeeded\\u{1b}[32m"),
            "{text}"
        );
    }
}
