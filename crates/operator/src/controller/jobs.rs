//! The stage Jobs the controller creates, as pure functions of the ReportJob and its plan,
//! built as typed `k8s_openapi` objects.
//!
//! Every pod runs the `reportjob` image with a stage subcommand. It gets the ReportJob as
//! [`env::SPEC`], and credentials only as `secretKeyRef` env from Secrets in its own
//! namespace: the controller never reads them. Env var names and exit codes are those of
//! the [stage protocol](reportjob_core::stage_protocol).
//!
//! Over 600 lines because of its tests: one per stage Job, asserting the fields the Job
//! controller and the pods depend on; the builders themselves are under 450 lines.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    PersistentVolumeClaimVolumeSource, PodAffinity, PodAffinityTerm, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::names::{self, Stage};
use super::policy::Policy;
use reportjob_core::api::ReportJob;
use reportjob_core::api::pod_settings::PodSettings;
use reportjob_core::api::valid::{Destination, Encoding, ValidSpec};
use reportjob_core::database::throttle::Throttle;
use reportjob_core::stage_protocol::{ChunkSet, EXIT_DAMAGED, EXIT_PERMANENT, EXIT_THROTTLED, env};

/// Where a `pvc` destination's claim is mounted in the stage pods.
pub use reportjob_core::api::pod_settings::OUTPUT_MOUNT;
/// The termination-message file the stage commands write their one-line result to.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// UID, GID and fsGroup of every stage pod: the worker image's non-root user.
pub const STAGE_UID: i64 = 65532;
/// The container's name in every stage pod.
pub const CONTAINER: &str = "reportjob";
/// The name of the output volume of a `pvc` destination.
use reportjob_core::api::pod_settings::{ASSEMBLY_VOLUME, OUTPUT_VOLUME};

/// What the controller adds to every stage pod, from its own configuration.
#[derive(Clone, Debug, Default)]
pub struct PodDefaults {
    /// Image of the stage pods unless the spec names one.
    pub worker_image: String,
    /// Resources of the stage pods unless the spec sets them.
    pub resources: Option<ResourceRequirements>,
    /// Cluster settings of every stage pod, merged with the spec's (`--stage-pods`).
    pub pod: PodSettings,
    /// Service account of the stage pods unless the spec names one (and may).
    pub service_account_name: Option<String>,
    /// What a spec may choose (image, service account).
    pub policy: Policy,
    /// The pod security context of stage pods instead of [`stage_pod_security_context`].
    pub pod_security_context: Option<PodSecurityContext>,
}

/// The pod security context of stage pods unless the controller is configured otherwise:
/// the image's user (65532, distroless "nonroot"), stated so that a freshly provisioned
/// volume (root-owned, 0755) is made writable for the pod through fsGroup, and only when its
/// root does not already match (OnRootMismatch: no recursive chown of a big volume on every
/// pod start).
pub fn stage_pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_user: Some(STAGE_UID),
        run_as_group: Some(STAGE_UID),
        fs_group: Some(STAGE_UID),
        fs_group_change_policy: Some("OnRootMismatch".to_string()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The plan a chunks or assemble Job works against.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanRef {
    /// The run's staging id.
    pub run_id: String,
    /// The plan's digest, checked by every pod.
    pub digest: String,
}

/// What a stage Job is built from: the ReportJob, the spec the run was planned with and
/// the controller's defaults.
pub struct JobContext<'a> {
    /// The ReportJob (name, namespace, uid for the owner reference).
    pub rj: &'a ReportJob,
    /// The spec to run: the planned one, even if the ReportJob's spec changed since.
    pub spec: &'a ValidSpec,
    /// The controller's defaults.
    pub defaults: &'a PodDefaults,
}

/// `<name>-plan`: computes the plan once and stages it; its termination message is a
/// `Planned` stage result. It records the spec it plans in [`names::SPEC_ANNOTATION`]: the
/// controller's one record of the spec a run was planned with.
pub fn plan_job(t: &JobContext, run_id: &str) -> Job {
    let env = base_env(t, run_id, Database::Needed);
    let args = ["plan", "--write", "--termination-log", TERMINATION_LOG];
    let mut job = single_pod_job(t, Stage::Plan, &args, env);
    job.annotations_mut()
        .insert(names::SPEC_ANNOTATION.to_string(), t.spec.written_json());
    job
}

/// `<name>-snapshot`: one pod that exports the run's database snapshot, stages its id for
/// `generation` and holds it until the controller deletes the Job (the report is published
/// or the run ended). Never retried: a new holder is a new snapshot, which the controller
/// starts itself, with the export, under the next generation.
pub fn snapshot_job(t: &JobContext, run_id: &str, generation: u32) -> Job {
    let mut env = base_env(t, run_id, Database::Needed);
    env.push(value_env(
        reportjob_core::snapshot::GENERATION_ENV,
        &generation.to_string(),
    ));
    let args = ["snapshot", "--termination-log", TERMINATION_LOG];
    let mut job = single_pod_job(t, Stage::Snapshot, &args, env);
    if let Some(spec) = job.spec.as_mut() {
        spec.backoff_limit = Some(0);
    }
    job
}

/// Tells a plan, chunks or assemble Job's pods to read the run's snapshot of `generation`;
/// a lost snapshot (exit code 5) then ends the Job at once, as a permanent error does: no
/// retry under that snapshot can succeed.
pub fn read_snapshot(job: &mut Job, generation: u32) {
    let rules = job
        .spec
        .as_mut()
        .and_then(|s| s.pod_failure_policy.as_mut())
        .map(|p| p.rules.iter_mut());
    for rule in rules.into_iter().flatten() {
        if let Some(codes) = rule.on_exit_codes.as_mut() {
            codes
                .values
                .push(reportjob_core::stage_protocol::EXIT_SNAPSHOT_LOST);
        }
    }
    let containers = job
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .map(|p| p.containers.iter_mut());
    for container in containers.into_iter().flatten() {
        container.env.get_or_insert_with(Vec::new).push(value_env(
            reportjob_core::snapshot::GENERATION_ENV,
            &generation.to_string(),
        ));
    }
}

/// `<name>-chunks`: an Indexed Job over `chunks` (the plan's indexes still to export);
/// completion index `i` exports the `i`-th of `chunks`. Permanent failures (exit code 3)
/// fail their index at once, and one failed index fails the Job.
pub fn chunks_job(t: &JobContext, plan: &PlanRef, chunks: &ChunkSet) -> Job {
    let spec = t.spec;
    let count = i32::try_from(chunks.len()).unwrap_or(i32::MAX);
    let listed = chunks.to_string();
    let mut env = base_env(t, &plan.run_id, Database::Needed);
    env.push(value_env(env::PLAN_DIGEST, &plan.digest));
    env.push(value_env(env::CHUNKS, &listed));
    let args = ["worker", "--termination-log", TERMINATION_LOG];
    let mut template = pod_template(t, Stage::Chunks, &args, env);
    if spec.worker.same_node
        && let Some(pod) = template.spec.as_mut()
    {
        let selector = BTreeMap::from([
            (names::REPORTJOB_LABEL.to_string(), t.rj.name_any()),
            (
                names::STAGE_LABEL.to_string(),
                Stage::Chunks.as_str().to_string(),
            ),
        ]);
        let term = PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            }),
            topology_key: "kubernetes.io/hostname".to_string(),
            ..Default::default()
        };
        // Added to any configured pod affinity (from the spec or the controller's defaults).
        pod.affinity
            .get_or_insert_with(Affinity::default)
            .pod_affinity
            .get_or_insert_with(PodAffinity::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
    }
    let parallelism = spec
        .chunking
        .parallelism
        .get()
        .min(count.max(1).unsigned_abs());
    let job_spec = JobSpec {
        completion_mode: Some("Indexed".to_string()),
        completions: Some(count),
        parallelism: Some(to_i32(parallelism)),
        backoff_limit_per_index: Some(to_i32(spec.worker.retries_per_chunk)),
        max_failed_indexes: Some(0),
        pod_failure_policy: Some(permanent_exit_rule("FailIndex", &[EXIT_PERMANENT])),
        suspend: Some(spec.suspend),
        active_deadline_seconds: spec
            .worker
            .active_deadline
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        template,
        ..Default::default()
    };
    let mut job = job_object(t, Stage::Chunks, job_spec);
    job.annotations_mut()
        .insert(names::CHUNKS_ANNOTATION.to_string(), listed);
    job
}

/// Hands a ReportDatabase's throttle to a chunks Job's workers: each checks the database's
/// load before its chunk ([`reportjob_core::stage_protocol::env::THROTTLE`]) and, while it
/// is too busy, ends with [`EXIT_THROTTLED`], which the Job's `podFailurePolicy` ignores
/// (the pod is started again without spending a retry). Nothing without a threshold.
pub fn with_throttle(job: &mut Job, throttle: &Throttle) {
    if throttle.is_empty() {
        return;
    }
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    spec.pod_failure_policy
        .get_or_insert_with(|| PodFailurePolicy { rules: Vec::new() })
        .rules
        .push(PodFailurePolicyRule {
            action: "Ignore".to_string(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: Some(CONTAINER.to_string()),
                operator: "In".to_string(),
                values: vec![EXIT_THROTTLED],
            }),
            ..Default::default()
        });
    for container in spec
        .template
        .spec
        .iter_mut()
        .flat_map(|p| p.containers.iter_mut())
    {
        container
            .env
            .get_or_insert_with(Vec::new)
            .push(value_env(env::THROTTLE, &throttle.to_env()));
    }
}

/// `<name>-assemble`: checks the parts against the plan and publishes the report; its
/// termination message is an `Assembled` stage result.
pub fn assemble_job(t: &JobContext, plan: &PlanRef) -> Job {
    let mut env = base_env(t, &plan.run_id, Database::Needed);
    env.push(value_env(env::PLAN_DIGEST, &plan.digest));
    let args = ["assemble", "--termination-log", TERMINATION_LOG];
    single_pod_job(t, Stage::Assemble, &args, env)
}

/// `<name>-notify`: sends the failure notification of `spec.notify` from the ReportJob's
/// namespace (the webhook URL is a Secret the controller never reads); its termination
/// message is a `Notified` stage result.
pub fn notify_job(t: &JobContext, run_id: &str, message: &str) -> Job {
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
pub fn cleanup_job(t: &JobContext, run_id: &str) -> Job {
    let env = base_env(t, run_id, Database::NotNeeded);
    let mut args = vec!["cleanup", "--termination-log", TERMINATION_LOG];
    // A split report's files are deleted as far as the run recorded them, never as far as
    // a manifest at the destination says (anyone who can write there can plant one).
    let recorded =
        t.rj.status
            .as_ref()
            .and_then(|s| s.output.as_ref())
            .and_then(|o| o.file_count)
            .filter(|_| t.spec.output.split.is_some())
            .map(|n| n.to_string());
    // Only a report this run published is its to delete: a run that failed or was
    // cancelled before publishing leaves whatever is at the destination alone.
    let published = t.rj.status.as_ref().is_some_and(|s| s.output.is_some());
    if t.spec.output.delete_with_report_job && published {
        args.push("--delete-output");
        if let Some(n) = recorded.as_deref() {
            args.extend(["--output-files", n]);
        }
    }
    single_pod_job(t, Stage::Cleanup, &args, env)
}

/// A validated count (retries are at most 100, parallelism at most 1000) as the Job wants it.
fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The pod failure policy that ends retries on the permanent exit code.
fn permanent_exit_rule(action: &str, codes: &[i32]) -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![PodFailurePolicyRule {
            action: action.to_string(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: Some(CONTAINER.to_string()),
                operator: "In".to_string(),
                values: codes.to_vec(),
            }),
            ..Default::default()
        }],
    }
}

fn single_pod_job(t: &JobContext, stage: Stage, args: &[&str], env: Vec<EnvVar>) -> Job {
    let job_spec = JobSpec {
        completions: Some(1),
        parallelism: Some(1),
        backoff_limit: Some(to_i32(t.spec.worker.retries_per_chunk)),
        // A damaged part (exit 4) cannot be repaired by running assemble again: the Job fails at
        // once with assemble's message naming the chunks, and a retry re-exports them.
        pod_failure_policy: Some(permanent_exit_rule(
            "FailJob",
            &[EXIT_PERMANENT, EXIT_DAMAGED],
        )),
        template: pod_template(t, stage, args, env),
        ..Default::default()
    };
    job_object(t, stage, job_spec)
}

fn job_object(t: &JobContext, stage: Stage, spec: JobSpec) -> Job {
    let name = t.rj.name_any();
    Job {
        metadata: ObjectMeta {
            name: Some(stage.job_name(&name)),
            namespace: t.rj.namespace(),
            labels: Some(names::labels(&name, stage)),
            annotations: Some(BTreeMap::from([(
                names::SPEC_HASH_ANNOTATION.to_string(),
                names::spec_hash(t.spec.written()),
            )])),
            owner_references: Some(t.rj.controller_owner_ref(&()).into_iter().collect()),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn pod_template(t: &JobContext, stage: Stage, args: &[&str], env: Vec<EnvVar>) -> PodTemplateSpec {
    let spec = t.spec;
    let image = spec
        .worker
        .image
        .clone()
        .unwrap_or_else(|| t.defaults.worker_image.clone());
    let claim = match &spec.output.destination {
        Destination::Pvc { claim, .. } => Some(claim),
        Destination::Bucket(_) => None,
    };
    let container = Container {
        name: CONTAINER.to_string(),
        image: Some(image),
        image_pull_policy: Some("IfNotPresent".to_string()),
        args: Some(args.iter().map(ToString::to_string).collect()),
        env: Some(env),
        termination_message_path: Some(TERMINATION_LOG.to_string()),
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        resources: spec
            .worker
            .resources
            .as_ref()
            .or(t.defaults.resources.as_ref())
            .cloned(),
        volume_mounts: claim.map(|_| {
            vec![VolumeMount {
                name: OUTPUT_VOLUME.to_string(),
                mount_path: OUTPUT_MOUNT.to_string(),
                ..Default::default()
            }]
        }),
        ..Default::default()
    };
    let pod = PodSpec {
        restart_policy: Some("Never".to_string()),
        automount_service_account_token: Some(false),
        security_context: Some(
            t.defaults
                .pod_security_context
                .clone()
                .unwrap_or_else(stage_pod_security_context),
        ),
        containers: vec![container],
        service_account_name: spec
            .worker
            .service_account_name
            .clone()
            .or_else(|| t.defaults.service_account_name.clone()),
        volumes: claim.map(|claim| {
            vec![Volume {
                name: OUTPUT_VOLUME.to_string(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }]
        }),
        ..Default::default()
    };
    let mut pod = pod;
    if stage == Stage::Assemble
        && matches!(
            spec.output.encoding,
            Encoding::Xlsx(_) | Encoding::Parquet(_)
        )
    {
        assembly_scratch(&mut pod);
    }
    let (mut meta, mut pod) = (ObjectMeta::default(), pod);
    super::pod_settings::apply(
        t.defaults.pod.get(),
        spec.worker.pod.get(),
        names::labels(&t.rj.name_any(), stage),
        &mut meta,
        &mut pod,
    );
    PodTemplateSpec {
        metadata: Some(meta),
        spec: Some(pod),
    }
}

/// The writable `/tmp` (an `emptyDir`) where an assembly that rewrites its parts works
/// (xlsx builds the workbook there, Parquet copies each part there to read its footer),
/// since the root filesystem is read-only.
fn assembly_scratch(pod: &mut PodSpec) {
    pod.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: ASSEMBLY_VOLUME.to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
    for container in &mut pod.containers {
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(VolumeMount {
                name: ASSEMBLY_VOLUME.to_string(),
                mount_path: "/tmp".to_string(),
                ..Default::default()
            });
    }
}

/// Whether a stage pod connects to the source database (cleanup and notify do not).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Database {
    Needed,
    NotNeeded,
}

fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

fn secret_env(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: Some(optional),
            }),
            ..Default::default()
        }),
    }
}

/// The environment every stage pod gets: the spec, the run, and credentials as references.
fn base_env(t: &JobContext, run_id: &str, database: Database) -> Vec<EnvVar> {
    let spec = t.spec;
    let rj = json!({
        "apiVersion": ReportJob::api_version(&()),
        "kind": ReportJob::kind(&()),
        "metadata": {"name": t.rj.name_any(), "namespace": t.rj.namespace()},
        "spec": spec.written(),
    });
    let mut env = vec![
        value_env(env::SPEC, &rj.to_string()),
        value_env(env::RUN_ID, run_id),
        value_env(env::NAME, &t.rj.name_any()),
    ];
    if let Some(namespace) = t.rj.namespace() {
        env.push(value_env(env::NAMESPACE, &namespace));
    } else {
        env.push(EnvVar {
            name: env::NAMESPACE.to_string(),
            ..Default::default()
        });
    }
    env.push(value_env(env::LOG_FORMAT, "json"));
    if t.defaults.policy.allow_link_local_endpoints {
        env.push(value_env(env::ALLOW_LINK_LOCAL, "true"));
    }
    if database == Database::Needed {
        env.push(secret_env(
            env::DATABASE_URL,
            &spec.source.connection.name,
            &spec.source.connection.key,
            false,
        ));
    }
    if matches!(spec.output.destination, Destination::Pvc { .. }) {
        env.push(value_env(env::OUTPUT_DIR, OUTPUT_MOUNT));
    }
    if let Some(notify) = &spec.notify {
        // Optional: a missing Secret means "not configured", never a stuck assembly.
        env.push(secret_env(
            env::WEBHOOK_URL,
            &notify.webhook_secret_ref.name,
            &notify.webhook_secret_ref.key,
            true,
        ));
    }
    if let Destination::Bucket(bucket) = &spec.output.destination
        && let Some(creds) = &bucket.credentials_secret
    {
        for (var, optional) in [
            (env::AWS_ACCESS_KEY_ID, false),
            (env::AWS_SECRET_ACCESS_KEY, false),
            (env::AWS_SESSION_TOKEN, true),
        ] {
            env.push(secret_env(var, creds, var, optional));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use reportjob_core::api::load::load_str;
    use serde_json::Value;

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
            ..Default::default()
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
        let spec = valid(&rj);
        let t = JobContext {
            rj: &rj,
            spec: &spec,
            defaults: &d,
        };
        let plan = PlanRef {
            run_id: "rj-1".into(),
            digest: "abc".into(),
        };
        let job = chunks_job(&t, &plan, &ChunkSet::from_indexes([0, 1, 2, 7, 8]));
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
        let spec = valid(&rj);
        let t = JobContext {
            rj: &rj,
            spec: &spec,
            defaults: &d,
        };
        let plan = PlanRef {
            run_id: "r".into(),
            digest: "d".into(),
        };
        let job = chunks_job(&t, &plan, &ChunkSet::from_indexes([0]));
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
        let spec = valid(&rj);
        let t = JobContext {
            rj: &rj,
            spec: &spec,
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
        // The run published no report: what is at the destination is not its to delete.
        assert!(!args(&cleanup).contains(&"--delete-output".to_string()));
        assert!(env_of(&cleanup).iter().all(|(k, _)| k != "DATABASE_URL"));
        let mut published = rj.clone();
        published.status = Some(reportjob_core::api::ReportJobStatus {
            output: Some(Default::default()),
            ..Default::default()
        });
        let published_cleanup = cleanup_job(&context_of(&published, &spec, &d), "rj-1");
        assert!(args(&published_cleanup).contains(&"--delete-output".to_string()));
        let spec_env = env_of(&plan)
            .into_iter()
            .find(|(k, _)| k == "REPORTJOB_SPEC")
            .expect("spec");
        let text = spec_env.1["value"].as_str().expect("text").to_string();
        let parsed = load_str(&text, "env").expect("spec env parses");
        assert_eq!(parsed.spec, rj.spec);
        assert!(!args(&cleanup).contains(&"--output-files".to_string()));
    }

    #[test]
    fn cleanup_deletes_as_many_split_files_as_the_run_recorded() {
        let (mut rj, d) = (rj(), defaults());
        rj.spec.output.delete_with_report_job = true;
        rj.spec.output.split =
            serde_json::from_value(serde_json::json!({"maxRows": 10})).expect("split");
        rj.status = Some(reportjob_core::api::ReportJobStatus {
            output: Some(reportjob_core::api::OutputStatus {
                file_count: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        });
        let spec = valid(&rj);
        let job = cleanup_job(&context_of(&rj, &spec, &d), "rj-1");
        let pod = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        let args = pod.expect("pod").containers[0].args.clone().expect("args");
        let at = args
            .iter()
            .position(|a| a == "--output-files")
            .expect("count");
        assert_eq!(args[at + 1], "3");
    }

    fn context_of<'a>(
        rj: &'a ReportJob,
        spec: &'a ValidSpec,
        d: &'a PodDefaults,
    ) -> JobContext<'a> {
        JobContext {
            rj,
            spec,
            defaults: d,
        }
    }

    fn valid(rj: &ReportJob) -> ValidSpec {
        reportjob_core::api::validate::validate(&rj.spec).expect("a valid spec")
    }

    fn env_names(job: &Job) -> Vec<String> {
        env_of(job).into_iter().map(|(k, _)| k).collect()
    }

    /// What every stage Job has: its name, labels on the Job and the pod, the controller
    /// owner reference, the spec hash, one hardened container writing its result to the
    /// termination log, and a pod failure policy on the permanent exit code.
    fn assert_stage_job(job: &Job, stage: Stage, policy_action: &str) {
        assert_eq!(
            job.metadata.name.as_deref(),
            Some(format!("orders-{}", stage.as_str()).as_str())
        );
        assert_eq!(job.metadata.namespace.as_deref(), Some("analytics"));
        let labels = names::labels("orders", stage);
        assert_eq!(job.metadata.labels.as_ref(), Some(&labels));
        assert_eq!(
            job.annotations()[names::SPEC_HASH_ANNOTATION],
            names::spec_hash(&rj().spec)
        );
        let owners = job.owner_references();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "ReportJob");
        assert_eq!(owners[0].name, "orders");
        assert_eq!(owners[0].uid, "0123-4567-89ab-cdef");
        assert_eq!(owners[0].controller, Some(true));
        let spec = job.spec.as_ref().expect("spec");
        let rule = &spec.pod_failure_policy.as_ref().expect("policy").rules[0];
        assert_eq!(rule.action, policy_action);
        let codes = rule.on_exit_codes.as_ref().expect("codes");
        assert_eq!(
            (codes.container_name.as_deref(), codes.operator.as_str()),
            (Some(CONTAINER), "In")
        );
        let expected = if policy_action == "FailJob" {
            vec![EXIT_PERMANENT, EXIT_DAMAGED]
        } else {
            vec![EXIT_PERMANENT]
        };
        assert_eq!(codes.values, expected);
        let template = &spec.template;
        assert_eq!(
            template.metadata.as_ref().and_then(|m| m.labels.as_ref()),
            Some(&labels)
        );
        let pod = template.spec.as_ref().expect("pod");
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(
            pod.security_context
                .as_ref()
                .and_then(|s| s.seccomp_profile.as_ref())
                .map(|p| p.type_.as_str()),
            Some("RuntimeDefault")
        );
        assert_eq!(pod.containers.len(), 1);
        let c = &pod.containers[0];
        assert_eq!(c.name, CONTAINER);
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(c.termination_message_path.as_deref(), Some(TERMINATION_LOG));
        assert_eq!(
            c.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        let sc = c.security_context.as_ref().expect("security context");
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()])
        );
        assert_eq!(c.args.as_ref().expect("args")[0], stage_command(stage));
        // The PVC destination is mounted where REPORTJOB_OUTPUT_DIR says.
        assert_eq!(
            pod.volumes.as_ref().expect("volumes")[0]
                .persistent_volume_claim
                .as_ref()
                .map(|p| p.claim_name.as_str()),
            Some("reports")
        );
        let env = env_of(job);
        let dir = env.iter().find(|(k, _)| k == env::OUTPUT_DIR).expect("dir");
        assert_eq!(dir.1["value"], OUTPUT_MOUNT);
    }

    fn stage_command(stage: Stage) -> &'static str {
        match stage {
            Stage::Plan => "plan",
            Stage::Chunks => "worker",
            Stage::Assemble => "assemble",
            Stage::Cleanup => "cleanup",
            Stage::Notify => "notify",
            Stage::Snapshot => "snapshot",
        }
    }

    const BASE_ENV: [&str; 5] = [
        env::SPEC,
        env::RUN_ID,
        env::NAME,
        env::NAMESPACE,
        env::LOG_FORMAT,
    ];

    fn with_base(extra: &[&str]) -> Vec<String> {
        BASE_ENV
            .iter()
            .chain(extra)
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn plan_job_is_one_pod_with_database_access_and_records_the_spec() {
        let (rj, d) = (rj(), defaults());
        let job = plan_job(&context_of(&rj, &valid(&rj), &d), "rj-1");
        assert_stage_job(&job, Stage::Plan, "FailJob");
        let spec = job.spec.as_ref().expect("spec");
        assert_eq!(
            (spec.completions, spec.parallelism, spec.backoff_limit),
            (Some(1), Some(1), Some(2))
        );
        assert_eq!(spec.completion_mode, None);
        assert_eq!(
            env_names(&job),
            with_base(&[env::DATABASE_URL, env::OUTPUT_DIR])
        );
        let recorded: reportjob_core::api::ReportJobSpec =
            serde_json::from_str(&job.annotations()[names::SPEC_ANNOTATION]).expect("spec");
        assert_eq!(recorded, rj.spec);
    }

    #[test]
    fn chunks_job_env_lists_the_chunks_and_digest() {
        let (rj, d) = (rj(), defaults());
        let plan = PlanRef {
            run_id: "rj-1".into(),
            digest: "sha256:abc".into(),
        };
        let job = chunks_job(
            &context_of(&rj, &valid(&rj), &d),
            &plan,
            &ChunkSet::from_indexes([7, 19, 20, 21]),
        );
        assert_stage_job(&job, Stage::Chunks, "FailIndex");
        assert!(!job.annotations().contains_key(names::SPEC_ANNOTATION));
        let spec = job.spec.as_ref().expect("spec");
        assert_eq!(spec.completions, Some(4));
        assert_eq!(spec.suspend, Some(false));
        assert_eq!(spec.backoff_limit, None);
        assert_eq!(
            env_names(&job),
            with_base(&[
                env::DATABASE_URL,
                env::OUTPUT_DIR,
                env::PLAN_DIGEST,
                env::CHUNKS
            ])
        );
        assert_eq!(job.annotations()[names::CHUNKS_ANNOTATION], "7,19-21");
    }

    #[test]
    fn assemble_job_checks_the_digest() {
        let (rj, d) = (rj(), defaults());
        let plan = PlanRef {
            run_id: "rj-1".into(),
            digest: "sha256:abc".into(),
        };
        let job = assemble_job(&context_of(&rj, &valid(&rj), &d), &plan);
        assert_stage_job(&job, Stage::Assemble, "FailJob");
        assert_eq!(
            env_names(&job),
            with_base(&[env::DATABASE_URL, env::OUTPUT_DIR, env::PLAN_DIGEST])
        );
        let env = env_of(&job);
        let run = env.iter().find(|(k, _)| k == env::RUN_ID).expect("run");
        assert_eq!(run.1["value"], "rj-1");
    }

    #[test]
    fn notify_job_has_no_database_and_no_retries_and_an_optional_webhook_secret() {
        let (mut rj, d) = (rj(), defaults());
        rj.spec.notify = Some(
            serde_json::from_value(serde_json::json!({
                "webhookSecretRef": {"name": "hook", "key": "url"}
            }))
            .expect("notify"),
        );
        let job = notify_job(&context_of(&rj, &valid(&rj), &d), "rj-1", "chunk 3 failed");
        assert_stage_job(&job, Stage::Notify, "FailJob");
        assert_eq!(job.spec.as_ref().and_then(|s| s.backoff_limit), Some(0));
        assert_eq!(
            env_names(&job),
            with_base(&[env::OUTPUT_DIR, env::WEBHOOK_URL])
        );
        let env = env_of(&job);
        let hook = env
            .iter()
            .find(|(k, _)| k == env::WEBHOOK_URL)
            .expect("hook");
        assert_eq!(hook.1["valueFrom"]["secretKeyRef"]["name"], "hook");
        assert_eq!(hook.1["valueFrom"]["secretKeyRef"]["optional"], true);
        let pod = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        let args = pod.expect("pod").containers[0].args.clone().expect("args");
        assert_eq!(
            args[..5],
            [
                "notify",
                "--outcome",
                "failed",
                "--message",
                "chunk 3 failed"
            ]
        );
    }

    #[test]
    fn cleanup_job_needs_no_database_and_bucket_credentials_are_secret_refs() {
        let (mut rj, d) = (rj(), defaults());
        let job = cleanup_job(&context_of(&rj, &valid(&rj), &d), "rj-1");
        assert_stage_job(&job, Stage::Cleanup, "FailJob");
        assert_eq!(env_names(&job), with_base(&[env::OUTPUT_DIR]));
        rj.spec.output.destination = serde_json::from_value(serde_json::json!({
            "bucket": {"url": "s3://reports/orders.csv", "credentialsSecretRef": {"name": "s3"}}
        }))
        .expect("bucket");
        let job = cleanup_job(&context_of(&rj, &valid(&rj), &d), "rj-1");
        assert_eq!(
            env_names(&job),
            with_base(&[
                env::AWS_ACCESS_KEY_ID,
                env::AWS_SECRET_ACCESS_KEY,
                env::AWS_SESSION_TOKEN
            ])
        );
        let env = env_of(&job);
        let token = env
            .iter()
            .find(|(k, _)| k == env::AWS_SESSION_TOKEN)
            .expect("token");
        assert_eq!(
            token.1["valueFrom"]["secretKeyRef"]["key"],
            "AWS_SESSION_TOKEN"
        );
        assert_eq!(token.1["valueFrom"]["secretKeyRef"]["optional"], true);
        let pod = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        assert!(pod.expect("pod").volumes.is_none());
    }

    #[test]
    fn stage_pods_are_told_link_local_is_allowed_only_when_the_controller_allows_it() {
        let rj = rj();
        let mut d = defaults();
        let told = |d: &PodDefaults| {
            env_names(&plan_job(&context_of(&rj, &valid(&rj), d), "rj-1"))
                .contains(&env::ALLOW_LINK_LOCAL.to_string())
        };
        assert!(!told(&d));
        d.policy.allow_link_local_endpoints = true;
        assert!(told(&d));
    }
}
