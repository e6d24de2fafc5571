//! The stage Jobs the controller creates, as pure functions of the ReportJob and its plan.
//!
//! Every pod runs the `reportjob` image with a stage subcommand. It gets the ReportJob as
//! `REPORTJOB_SPEC`, and credentials only as `secretKeyRef` env from Secrets in its own
//! namespace: the controller never reads them.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::names::{self, EXIT_PERMANENT, Stage};
use crate::api::{ReportJob, ReportJobSpec};
use crate::staging::compact_ranges;

/// Where a `pvc` destination's claim is mounted in the stage pods.
pub const OUTPUT_MOUNT: &str = "/reportjob/output";
/// The termination-message file the stage commands write their one-line result to.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// The container's name in every stage pod.
pub const CONTAINER: &str = "reportjob";

/// What the controller adds to every stage pod, from its own configuration.
#[derive(Clone, Debug, Default)]
pub struct PodDefaults {
    /// Image of the stage pods unless the spec names one.
    pub worker_image: String,
    /// Resources of the stage pods unless the spec sets them.
    pub resources: Option<ResourceRequirements>,
}

/// The plan a chunks or assemble Job works against.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanRef {
    /// The run's staging id.
    pub run_id: String,
    /// The plan's digest, checked by every pod.
    pub digest: String,
}

/// The ReportJob a Job is built for, with the spec the run was planned with.
pub struct Target<'a> {
    /// The ReportJob (name, namespace, uid for the owner reference).
    pub rj: &'a ReportJob,
    /// The spec to run: the planned one, even if the ReportJob's spec changed since.
    pub spec: &'a ReportJobSpec,
    /// The controller's defaults.
    pub defaults: &'a PodDefaults,
}

/// `<name>-plan`: computes the plan once and stages it; its termination message is the
/// plan's summary line (`chunks=N digest=... run=...`).
pub fn plan_job(t: &Target, run_id: &str) -> Job {
    let env = base_env(t, run_id, Database::Needed);
    let args = ["plan", "--write", "--termination-log", TERMINATION_LOG];
    single_pod_job(t, Stage::Plan, &args, env)
}

/// `<name>-chunks`: an Indexed Job over `chunks` (the plan's indexes still to export);
/// completion index `i` exports `chunks[i]`. Permanent failures (exit code 3) fail their
/// index at once, and one failed index fails the Job.
pub fn chunks_job(t: &Target, plan: &PlanRef, chunks: &[usize]) -> Job {
    let spec = t.spec;
    let count = i64::try_from(chunks.len()).unwrap_or(i64::MAX);
    let listed = compact_ranges(chunks);
    let mut env = base_env(t, &plan.run_id, Database::Needed);
    env.push(json!({"name": "REPORTJOB_PLAN_DIGEST", "value": plan.digest}));
    env.push(json!({"name": "REPORTJOB_CHUNKS", "value": listed}));
    let args = ["worker", "--termination-log", TERMINATION_LOG];
    let mut template = pod_template(t, Stage::Chunks, &args, env);
    if spec.worker.same_node {
        template["spec"]["affinity"] = json!({"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {
                    names::REPORTJOB_LABEL: t.rj.name_any(),
                    names::STAGE_LABEL: Stage::Chunks.as_str(),
                }},
                "topologyKey": "kubernetes.io/hostname",
            }]
        }});
    }
    let mut job_spec = json!({
        "completionMode": "Indexed",
        "completions": count,
        "parallelism": spec.chunking.parallelism.clamp(1, count.max(1)),
        "backoffLimitPerIndex": spec.worker.retries_per_chunk,
        "maxFailedIndexes": 0,
        "podFailurePolicy": {"rules": [{
            "action": "FailIndex",
            "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [EXIT_PERMANENT]},
        }]},
        "suspend": spec.suspend,
        "template": template,
    });
    if let Some(deadline) = spec.worker.active_deadline_seconds {
        job_spec["activeDeadlineSeconds"] = json!(deadline);
    }
    let mut job = job_object(t, Stage::Chunks, job_spec);
    job["metadata"]["annotations"][names::CHUNKS_ANNOTATION] = json!(listed);
    from_json(job)
}

/// `<name>-assemble`: checks the parts against the plan and publishes the report; its
/// termination message is `rows=... bytes=... sha256=... location=... [url=...]`.
pub fn assemble_job(t: &Target, plan: &PlanRef) -> Job {
    let mut env = base_env(t, &plan.run_id, Database::Needed);
    env.push(json!({"name": "REPORTJOB_PLAN_DIGEST", "value": plan.digest}));
    let args = ["assemble", "--termination-log", TERMINATION_LOG];
    single_pod_job(t, Stage::Assemble, &args, env)
}

/// `<name>-notify`: sends the failure notification of `spec.notify` from the ReportJob's
/// namespace (the webhook URL is a Secret the controller never reads); its termination
/// message is `notified=true ...` or `notified=false reason=... ...`.
pub fn notify_job(t: &Target, run_id: &str, message: &str) -> Job {
    let env = base_env(t, run_id, Database::NotNeeded);
    let args = [
        "notify",
        "--outcome",
        "failed",
        "--message",
        message,
        "--termination-log",
        TERMINATION_LOG,
    ];
    let mut job = single_pod_job(t, Stage::Notify, &args, env);
    // The notify command retries by itself and never fails for a failed delivery.
    if let Some(spec) = job.spec.as_mut() {
        spec.backoff_limit = Some(0);
    }
    job
}

/// `<name>-cleanup`: removes the run's staging data (and the report, when the spec asks)
/// after the ReportJob was deleted. It needs no database access.
pub fn cleanup_job(t: &Target, run_id: &str) -> Job {
    let env = base_env(t, run_id, Database::NotNeeded);
    let mut args = vec!["cleanup", "--termination-log", TERMINATION_LOG];
    if t.spec.output.delete_with_report_job {
        args.push("--delete-output");
    }
    single_pod_job(t, Stage::Cleanup, &args, env)
}

fn single_pod_job(t: &Target, stage: Stage, args: &[&str], env: Vec<Value>) -> Job {
    let job_spec = json!({
        "completions": 1,
        "parallelism": 1,
        "backoffLimit": t.spec.worker.retries_per_chunk,
        "podFailurePolicy": {"rules": [{
            "action": "FailJob",
            "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [EXIT_PERMANENT]},
        }]},
        "template": pod_template(t, stage, args, env),
    });
    from_json(job_object(t, stage, job_spec))
}

fn job_object(t: &Target, stage: Stage, spec: Value) -> Value {
    let name = t.rj.name_any();
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": stage.job_name(&name),
            "namespace": t.rj.namespace(),
            "labels": names::labels(&name, stage),
            "annotations": {names::SPEC_HASH_ANNOTATION: names::spec_hash(t.spec)},
            "ownerReferences": t.rj.controller_owner_ref(&()).into_iter().collect::<Vec<_>>(),
        },
        "spec": spec,
    })
}

fn pod_template(t: &Target, stage: Stage, args: &[&str], env: Vec<Value>) -> Value {
    let spec = t.spec;
    let image = spec
        .worker
        .image
        .clone()
        .unwrap_or_else(|| t.defaults.worker_image.clone());
    let mut container = json!({
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": env,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]},
        },
    });
    if let Some(resources) = spec
        .worker
        .resources
        .as_ref()
        .or(t.defaults.resources.as_ref())
    {
        container["resources"] = json!(resources);
    }
    let mut pod = json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    });
    if let Some(sa) = &spec.worker.service_account_name {
        pod["serviceAccountName"] = json!(sa);
    }
    if let Some(pvc) = &spec.output.destination.pvc {
        pod["volumes"] =
            json!([{"name": "output", "persistentVolumeClaim": {"claimName": pvc.claim_name}}]);
        pod["containers"][0]["volumeMounts"] =
            json!([{"name": "output", "mountPath": OUTPUT_MOUNT}]);
    }
    json!({
        "metadata": {"labels": names::labels(&t.rj.name_any(), stage)},
        "spec": pod,
    })
}

/// Whether a stage pod connects to the source database (cleanup and notify do not).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Database {
    Needed,
    NotNeeded,
}

/// The environment every stage pod gets: the spec, the run, and credentials as references.
fn base_env(t: &Target, run_id: &str, database: Database) -> Vec<Value> {
    let spec = t.spec;
    let rj = json!({
        "apiVersion": ReportJob::api_version(&()),
        "kind": ReportJob::kind(&()),
        "metadata": {"name": t.rj.name_any(), "namespace": t.rj.namespace()},
        "spec": spec,
    });
    let secret = |env: &str, name: &str, key: &str, optional: bool| json!({"name": env, "valueFrom": {"secretKeyRef": {"name": name, "key": key, "optional": optional}}});
    let mut env = vec![
        json!({"name": "REPORTJOB_SPEC", "value": rj.to_string()}),
        json!({"name": "REPORTJOB_RUN_ID", "value": run_id}),
        json!({"name": "REPORTJOB_NAME", "value": t.rj.name_any()}),
        json!({"name": "REPORTJOB_NAMESPACE", "value": t.rj.namespace()}),
        json!({"name": "REPORTJOB_LOG_FORMAT", "value": "json"}),
    ];
    if database == Database::Needed {
        env.push(secret(
            "DATABASE_URL",
            &spec.source.connection_secret_ref.name,
            &spec.source.connection_secret_ref.key,
            false,
        ));
    }
    if spec.output.destination.pvc.is_some() {
        env.push(json!({"name": "REPORTJOB_OUTPUT_DIR", "value": OUTPUT_MOUNT}));
    }
    if let Some(notify) = &spec.notify {
        // Optional: a missing Secret means "not configured", never a stuck assembly.
        env.push(secret(
            crate::notify::ENV_WEBHOOK_URL,
            &notify.webhook_secret_ref.name,
            &notify.webhook_secret_ref.key,
            true,
        ));
    }
    if let Some(bucket) = &spec.output.destination.bucket
        && let Some(creds) = &bucket.credentials_secret_ref
    {
        env.push(secret(
            "AWS_ACCESS_KEY_ID",
            &creds.name,
            "AWS_ACCESS_KEY_ID",
            false,
        ));
        env.push(secret(
            "AWS_SECRET_ACCESS_KEY",
            &creds.name,
            "AWS_SECRET_ACCESS_KEY",
            false,
        ));
        env.push(secret(
            "AWS_SESSION_TOKEN",
            &creds.name,
            "AWS_SESSION_TOKEN",
            true,
        ));
    }
    env
}

fn from_json(value: Value) -> Job {
    // The values above are built from typed parts; a mismatch is a bug caught by the tests.
    serde_json::from_value(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::load::load_str;

    fn rj() -> ReportJob {
        let mut rj = load_str(
            r#"
apiVersion: reporting.dev/v1alpha1
kind: ReportJob
metadata: {name: orders, namespace: analytics}
spec:
  source:
    connectionSecretRef: {name: db, key: url}
    table: public.orders
    keyColumn: id
  chunking: {chunkSize: 1000, parallelism: 4}
  output:
    destination:
      pvc: {claimName: reports, path: orders.csv}
  worker: {retriesPerChunk: 2, activeDeadlineSeconds: 600}
"#,
            "test",
        )
        .expect("valid spec");
        rj.metadata.uid = Some("0123-4567-89ab-cdef".into());
        rj
    }

    fn defaults() -> PodDefaults {
        PodDefaults {
            worker_image: "ghcr.io/reportjob/reportjob:0.1.0".into(),
            resources: None,
        }
    }

    fn env_of(job: &Job) -> Vec<(String, Value)> {
        let pod = job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod");
        pod.containers[0]
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name.clone(), serde_json::to_value(&e).expect("env")))
            .collect()
    }

    #[test]
    fn chunks_job_is_indexed_with_per_index_retries_and_permanent_exit_code_rule() {
        let (rj, d) = (rj(), defaults());
        let t = Target {
            rj: &rj,
            spec: &rj.spec,
            defaults: &d,
        };
        let plan = PlanRef {
            run_id: "rj-1".into(),
            digest: "abc".into(),
        };
        let job = chunks_job(&t, &plan, &[0, 1, 2, 7, 8]);
        assert_eq!(job.metadata.name.as_deref(), Some("orders-chunks"));
        assert_eq!(job.metadata.namespace.as_deref(), Some("analytics"));
        assert_eq!(job.annotations()[names::CHUNKS_ANNOTATION], "0-2,7-8");
        let labels = job.labels();
        assert_eq!(labels[names::STAGE_LABEL], "chunks");
        assert_eq!(labels[names::MANAGED_BY_LABEL], "reportjob");
        let spec = job.spec.as_ref().expect("spec");
        assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
        assert_eq!(spec.completions, Some(5));
        assert_eq!(spec.parallelism, Some(4));
        assert_eq!(spec.backoff_limit_per_index, Some(2));
        assert_eq!(spec.max_failed_indexes, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(600));
        let rule = &spec.pod_failure_policy.as_ref().expect("policy").rules[0];
        assert_eq!(rule.action, "FailIndex");
        assert_eq!(rule.on_exit_codes.as_ref().expect("codes").values, vec![3]);
        let pod = spec.template.spec.as_ref().expect("pod");
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("ghcr.io/reportjob/reportjob:0.1.0")
        );
        let mounts = pod.containers[0].volume_mounts.as_ref().expect("mounts");
        assert_eq!(mounts[0].mount_path, OUTPUT_MOUNT);
        let env = env_of(&job);
        let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("REPORTJOB_CHUNKS").expect("chunks")["value"], "0-2,7-8");
        assert_eq!(
            get("REPORTJOB_PLAN_DIGEST").expect("digest")["value"],
            "abc"
        );
        // The database URL is a reference to the Secret, never its value.
        let db = get("DATABASE_URL").expect("db");
        assert_eq!(db["valueFrom"]["secretKeyRef"]["name"], "db");
        assert!(db.get("value").is_none());
        let owner = &job.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("ReportJob", Some(true))
        );
    }

    #[test]
    fn spec_image_overrides_default_and_same_node_adds_affinity() {
        let (mut rj, d) = (rj(), defaults());
        rj.spec.worker.image = Some("example/reportjob:dev".into());
        rj.spec.worker.same_node = true;
        let t = Target {
            rj: &rj,
            spec: &rj.spec,
            defaults: &d,
        };
        let plan = PlanRef {
            run_id: "r".into(),
            digest: "d".into(),
        };
        let job = chunks_job(&t, &plan, &[0]);
        let pod = job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod");
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("example/reportjob:dev")
        );
        let affinity = pod
            .affinity
            .as_ref()
            .and_then(|a| a.pod_affinity.as_ref())
            .expect("affinity");
        let term = &affinity
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .expect("term")[0];
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        assert_eq!(job.spec.as_ref().and_then(|s| s.parallelism), Some(1));
    }

    #[test]
    fn plan_and_cleanup_jobs_run_their_subcommands() {
        let (mut rj, d) = (rj(), defaults());
        rj.spec.output.delete_with_report_job = true;
        let t = Target {
            rj: &rj,
            spec: &rj.spec,
            defaults: &d,
        };
        let plan = plan_job(&t, "rj-1");
        let args = |job: &Job| {
            job.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .expect("pod")
                .containers[0]
                .args
                .clone()
                .unwrap_or_default()
        };
        assert_eq!(
            args(&plan)[..2],
            ["plan".to_string(), "--write".to_string()]
        );
        assert_eq!(plan.metadata.name.as_deref(), Some("orders-plan"));
        let cleanup = cleanup_job(&t, "rj-1");
        assert!(args(&cleanup).contains(&"--delete-output".to_string()));
        assert!(env_of(&cleanup).iter().all(|(k, _)| k != "DATABASE_URL"));
        let spec_env = env_of(&plan)
            .into_iter()
            .find(|(k, _)| k == "REPORTJOB_SPEC")
            .expect("spec");
        let text = spec_env.1["value"].as_str().expect("text").to_string();
        let parsed = load_str(&text, "env").expect("spec env parses");
        assert_eq!(parsed.spec, rj.spec);
    }
}
