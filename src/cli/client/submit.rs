//! `reportjob submit`: creates (or applies) a ReportJob from a manifest file or stdin;
//! with `--wait`, follows it to the end and exits with how it ended.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::cluster::{ClusterArgs, api_code, connect, describe};
use super::duration::parse_duration;
use super::exit::{CommandError, CommandResult, Exit, finish};
use super::output::{outcome, status_json};
use super::print::{Format, render};
use super::wait::{follow, with_logs};
use crate::api::load::{LoadError, load_str};
use crate::api::{API_VERSION, KIND, ReportJob};

/// Field manager of `submit`'s server-side apply.
pub const FIELD_MANAGER: &str = "reportjob-submit";

/// `reportjob submit`.
#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The ReportJob manifest (YAML); `-` reads it from stdin.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Name of the ReportJob (instead of the manifest's metadata.name). Submitting a name
    /// again updates that ReportJob (server-side apply).
    #[arg(long, conflicts_with = "generate_name")]
    pub name: Option<String>,
    /// Create a new ReportJob named PREFIX plus a random suffix (a fresh run every time).
    #[arg(long, value_name = "PREFIX")]
    pub generate_name: Option<String>,
    /// Follow the ReportJob until it completes or fails; the exit code tells which.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (`90` seconds, `30s`, `30m`, `2h`, `1h30m`).
    #[arg(long, value_parser = parse_duration, requires = "wait")]
    pub timeout: Option<Duration>,
    /// With --wait: give up when the API server has been unreachable this long.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub reconnect_timeout: Duration,
    /// Print the final status as one JSON object on stdout.
    #[arg(long, conflicts_with = "output")]
    pub json: bool,
    /// Print the ReportJob (the final one with --wait) in this format on stdout, instead of
    /// its name.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
    /// With --wait: also follow the logs of its stage pods (as `logs -f`), on stderr.
    #[arg(long, requires = "wait")]
    pub log: bool,
    /// Take over fields another field manager set (server-side apply `force`).
    #[arg(long)]
    pub force_conflicts: bool,
    /// A value for `$1`, `$2`... of the spec's query or where, in order (repeat the flag);
    /// replaces the values of spec.source.parameters, keeping their types.
    #[arg(long = "param", value_name = "VALUE")]
    pub params: Vec<String>,
    /// Validate only: check the spec here, then ask the API server to admit it without
    /// storing it (a server-side dry run: the CRD's schema and rules); nothing is created.
    #[arg(long, conflicts_with = "wait")]
    pub dry_run: bool,
}

/// `reportjob submit`. With `--json`, an outcome that ends in an error (a refused spec, no
/// API server) prints its one JSON object too, before the error on stderr.
pub async fn submit(args: SubmitArgs) -> i32 {
    let json = args.json;
    let result = submit_inner(args).await;
    if json && let Err(e) = &result {
        let mut summary = crate::cli::summary::Summary::refused(&e.message);
        summary.result = match e.code {
            super::exit::Exit::Refused => "refused",
            super::exit::Exit::NoResult => "lost",
            _ => "failed",
        };
        summary.permanent = Some(e.code == super::exit::Exit::Refused);
        println!("{}", summary.to_line());
    }
    finish(result)
}

async fn submit_inner(args: SubmitArgs) -> CommandResult {
    let (text, shown) = read_manifest(&args.file)?;
    let text = if args.params.is_empty() {
        text
    } else {
        crate::api::load::with_parameters(&text, &shown, &args.params)
            .map_err(|e| CommandError::refused(e.to_string()))?
    };
    load_str(&text, &shown).map_err(|e| match e {
        LoadError::Read { .. } => CommandError::no_result(e.to_string()),
        other => CommandError::refused(other.to_string()),
    })?;
    let raw: Value = serde_saphyr::from_str(&text)
        .map_err(|e| CommandError::refused(format!("{shown} is not valid YAML: {e}")))?;
    let meta = &raw["metadata"];
    let file_ns = meta["namespace"].as_str().map(str::to_string);
    if let (Some(flag), Some(file)) = (&args.cluster.namespace, &file_ns)
        && flag != file
    {
        return Err(CommandError::no_result(format!(
            "the namespace of {shown} ({file}) does not match --namespace ({flag})"
        )));
    }
    let generate_name = args
        .generate_name
        .clone()
        .or_else(|| {
            (args.name.is_none() && meta["name"].as_str().is_none())
                .then(|| meta["generateName"].as_str().map(str::to_string))
                .flatten()
        })
        .filter(|p| !p.is_empty());
    let name = match &generate_name {
        Some(_) => None,
        None => Some(
            args.name
                .clone()
                .or_else(|| meta["name"].as_str().map(str::to_string))
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    CommandError::no_result(format!(
                        "{shown} has no metadata.name: pass --name NAME or --generate-name PREFIX"
                    ))
                })?,
        ),
    };

    let (client, default_ns) = connect(&args.cluster).await?;
    let ns = args
        .cluster
        .namespace
        .clone()
        .or(file_ns)
        .unwrap_or(default_ns);
    let mut metadata = json!({ "namespace": ns });
    for key in ["labels", "annotations"] {
        if meta[key].is_object() {
            metadata[key] = meta[key].clone();
        }
    }
    match (&name, &generate_name) {
        (Some(name), _) => metadata["name"] = json!(name),
        (None, Some(prefix)) => metadata["generateName"] = json!(prefix),
        (None, None) => {}
    }
    let object = json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": raw["spec"],
    });
    let api: Api<ReportJob> = Api::namespaced(client.clone(), &ns);

    let (rj, what) = match &name {
        Some(name) => {
            let before = api
                .get_opt(name)
                .await
                .map_err(|e| submit_failure(&e, &ns, name))?;
            let mut params = PatchParams::apply(FIELD_MANAGER);
            if args.force_conflicts {
                params = params.force();
            }
            params.dry_run = args.dry_run;
            let after = api
                .patch(name, &params, &Patch::Apply(&object))
                .await
                .map_err(|e| submit_failure(&e, &ns, name))?;
            let what = match &before {
                None => "created",
                Some(b) if b.resource_version() == after.resource_version() => "unchanged",
                Some(_) => "configured",
            };
            if args.wait
                && let Some(before) = &before
                && let Some(done) = outcome(before)
            {
                eprintln!(
                    "note: ReportJob {ns}/{name} already existed and had {}; that result is what \
                     --wait reports. For a new run use --generate-name, or `reportjob retry {name}` \
                     after a failure.",
                    if done { "completed" } else { "failed" }
                );
            }
            (after, what)
        }
        None => {
            let dynamic: DynamicObject = serde_json::from_value(object)
                .map_err(|e| CommandError::refused(format!("{shown}: {e}")))?;
            let dapi: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &ns, &ApiResource::erase::<ReportJob>(&()));
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                dry_run: args.dry_run,
            };
            let created = dapi
                .create(&params, &dynamic)
                .await
                .map_err(|e| submit_failure(&e, &ns, generate_name.as_deref().unwrap_or("")))?;
            let rj: ReportJob = serde_json::to_value(&created)
                .and_then(serde_json::from_value)
                .map_err(|e| CommandError::failed(format!("the API server's answer: {e}")))?;
            (rj, "created")
        }
    };
    let name = rj.name_any();
    if args.dry_run {
        let what = if what == "unchanged" { what } else { "valid" };
        eprintln!(
            "reportjob.reporting.dev/{name} {what} in namespace {ns} (server dry run: nothing was \
             created or changed)"
        );
        if args.json {
            println!("{}", status_json(&rj, "dry_run"));
        } else if args.output.is_some() {
            print!(
                "{}",
                render(std::slice::from_ref(&rj), args.output, false, false)?
            );
        }
        return Ok(Exit::Ok);
    }
    eprintln!("reportjob.reporting.dev/{name} {what} in namespace {ns}");
    if !args.json && args.output.is_none() {
        println!("{name}");
    }
    if !args.wait {
        if args.json {
            println!("{}", status_json(&rj, "submitted"));
        } else if args.output.is_some() {
            print!(
                "{}",
                render(std::slice::from_ref(&rj), args.output, false, false)?
            );
        }
        return Ok(Exit::Ok);
    }
    let end_shown = super::wait::shown(args.json, args.output);
    let following = follow(
        api,
        rj,
        &ns,
        args.timeout,
        args.reconnect_timeout,
        end_shown,
    );
    if args.log {
        return Ok(with_logs(client, &ns, &name, following).await);
    }
    Ok(following.await)
}

/// The manifest's text and how to name it in messages: the file, or stdin for `-`.
fn read_manifest(file: &Path) -> Result<(String, String), CommandError> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| {
            CommandError::no_result(format!("cannot read the manifest from stdin: {e}"))
        })?;
        return Ok((text, "<stdin>".to_string()));
    }
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| CommandError::no_result(format!("cannot read {shown}: {e}")))?;
    Ok((text, shown))
}

fn submit_failure(e: &kube::Error, ns: &str, name: &str) -> CommandError {
    match api_code(e) {
        Some(400 | 409 | 422) => {
            let mut message = format!(
                "the API server refused ReportJob {ns}/{name}: {}",
                describe(e)
            );
            if api_code(e) == Some(409) {
                message.push_str(" (pass --force-conflicts to take these fields over)");
            }
            CommandError::refused(message)
        }
        Some(404) => CommandError::no_result(format!(
            "cannot submit ReportJob {ns}/{name}: {} (is the ReportJob CRD installed? \
                 `reportjob crd | kubectl apply -f -`; does namespace {ns} exist?)",
            describe(e)
        )),
        _ => CommandError::no_result(format!(
            "cannot submit ReportJob {ns}/{name}: {}",
            describe(e)
        )),
    }
}
