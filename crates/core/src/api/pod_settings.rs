//! Cluster settings of the stage pods (`spec.worker.nodeSelector`, `tolerations`, `env`,
//! `volumes`...): their CRD shape ([`PodSettingsSpec`], k8s_openapi types) and their
//! validation into [`PodSettings`], which keeps a spec from overriding what the engine and
//! the controller set themselves (their env vars, labels, the output volume and mount) and
//! from asking for more than a restricted pod may have.
//!
//! What changes which code runs, where traffic goes or what the pod may do is the platform
//! team's (the controller's `--stage-pods`, the chart's `stagePods:`), never a spec's: a spec
//! may not set the env names of [`REFUSED_ENV`], mount a service-account token or anything
//! of the node, mount over [`SYSTEM_PATHS`] or the pod's own volumes, loosen the container's
//! security context in any field, or set AppArmor, seccomp or SELinux annotations. The
//! platform team's own settings are checked only for shape.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, SecurityContext, Toleration, Volume, VolumeMount,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::field_error::FieldError;

/// The output volume of a `pvc` destination, which no setting may replace.
pub const OUTPUT_VOLUME: &str = "output";
/// Where the output volume is mounted; no setting may mount at or beneath it.
pub const OUTPUT_MOUNT: &str = "/reportjob/output";
/// The assemble pod's `/tmp` (an `emptyDir`) for xlsx and Parquet reports.
pub const ASSEMBLY_VOLUME: &str = "assembly-tmp";
/// Volumes the controller puts on stage pods itself; no setting may use their names.
pub const OWN_VOLUMES: &[&str] = &[OUTPUT_VOLUME, ASSEMBLY_VOLUME];

/// Why an env name is refused in a spec: it changes which code runs.
const CHANGES_CODE: &str = "it changes which code runs in stage pods";
/// Why an env name is refused in a spec: it changes where traffic goes or how it is trusted.
const CHANGES_TRAFFIC: &str = "it changes where stage pods connect or whom they trust";
/// Why an env name is refused in a spec: the Postgres client reads it.
const CHANGES_DATABASE: &str = "it changes how stage pods connect to the database";
/// Why an env name is refused in a spec: it moves where the engine writes.
const CHANGES_FILES: &str = "it changes where stage pods write temporary files";
/// Why an env name is refused in a spec: the stage protocol sets it.
const ENGINE_OWN: &str = "the controller sets it for the stage itself";

/// Env names a spec may not set, each with why. A trailing `*` matches any rest; names are
/// compared ignoring case (`http_proxy` is read as much as `HTTP_PROXY`). The platform
/// team sets what it needs of these for every stage pod in `--stage-pods` (the chart's
/// `stagePods.env`).
pub const REFUSED_ENV: &[(&str, &str)] = &[
    // The dynamic loader, libc and allocators: code or behaviour loaded into the process.
    ("LD_*", CHANGES_CODE),
    ("GLIBC_TUNABLES", CHANGES_CODE),
    ("GCONV_PATH", CHANGES_CODE),
    ("MALLOC_*", CHANGES_CODE),
    ("OPENSSL_*", CHANGES_CODE),
    ("PATH", CHANGES_CODE),
    ("RUST_*", CHANGES_CODE), // RUST_LOG is allowed (see env_refusal)
    // Proxies, trust stores, the resolver and TLS key logs.
    ("HTTP_PROXY", CHANGES_TRAFFIC),
    ("HTTPS_PROXY", CHANGES_TRAFFIC),
    ("ALL_PROXY", CHANGES_TRAFFIC),
    ("NO_PROXY", CHANGES_TRAFFIC),
    ("SSL_CERT_*", CHANGES_TRAFFIC),
    ("SSLKEYLOGFILE", CHANGES_TRAFFIC),
    ("RES_OPTIONS", CHANGES_TRAFFIC),
    ("HOSTALIASES", CHANGES_TRAFFIC),
    ("LOCALDOMAIN", CHANGES_TRAFFIC),
    // libpq's variables (PGOPTIONS, PGHOST, PGSSLMODE, PGPASSFILE...).
    ("PG*", CHANGES_DATABASE),
    ("TMPDIR", CHANGES_FILES),
    // The stage protocol's own (stage_protocol::env) and the Job controller's.
    ("REPORTJOB_*", ENGINE_OWN),
    ("AWS_*", ENGINE_OWN),
    ("DATABASE_URL", ENGINE_OWN),
    ("JOB_COMPLETION_INDEX", ENGINE_OWN),
];

/// Env names of [`REFUSED_ENV`]'s patterns a spec may still set.
const ALLOWED_ENV_EXCEPTIONS: &[&str] = &["RUST_LOG"];

/// Why a spec may not set the env var `name`, or `None` when it may.
pub fn env_refusal(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    if ALLOWED_ENV_EXCEPTIONS.contains(&upper.as_str()) {
        return None;
    }
    REFUSED_ENV.iter().find_map(|(pattern, why)| {
        let hit = match pattern.strip_suffix('*') {
            Some(prefix) => upper.starts_with(prefix),
            None => upper == *pattern,
        };
        hit.then_some(*why)
    })
}

/// Paths a spec may not mount at or beneath: the image's programs and libraries, system
/// configuration, kernel interfaces, `/tmp` (the assemble pod's own scratch, and where a
/// mounted Secret would be read as scratch), service-account token locations and the
/// engine's `/reportjob` (the output mount's parent). `/` itself is refused too.
pub const SYSTEM_PATHS: &[&str] = &[
    "/bin",
    "/sbin",
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/tmp",
    "/run/secrets",
    "/var/run/secrets",
    "/reportjob",
];

/// The components of an absolute path without empty or `.` ones (`//usr/./bin` is `/usr/bin`).
fn path_parts(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect()
}

/// The system path `path` is at or beneath, if any (`/` for the root itself).
fn system_path(path: &str) -> Option<&'static str> {
    let parts = path_parts(path);
    if parts.is_empty() {
        return Some("/");
    }
    SYSTEM_PATHS.iter().copied().find(|sys| {
        let sys_parts = path_parts(sys);
        parts.len() >= sys_parts.len() && parts[..sys_parts.len()] == sys_parts[..]
    })
}

/// Annotation keys a spec may not set: AppArmor, seccomp and SELinux settings by annotation
/// (`container.apparmor.security.beta.kubernetes.io/<container>` and the like).
fn security_annotation(key: &str) -> bool {
    let prefix = key
        .split_once('/')
        .map_or("", |(p, _)| p)
        .to_ascii_lowercase();
    ["apparmor", "seccomp", "selinux"]
        .iter()
        .any(|word| prefix.contains(word))
}
/// Most entries of each list or map setting.
pub const MAX_ENTRIES: usize = 64;

/// Cluster settings of the stage pods. The controller's defaults (`--stage-pods`) are
/// merged with them: the spec wins per key for maps and per name for env, volumes and
/// mounts; other lists are appended.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSettingsSpec {
    /// Node labels the stage pods must be scheduled on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the stage pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity of the stage pods (each of node, pod and anti-affinity replaces the default's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of the stage pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Secrets (in the ReportJob's namespace) to pull the worker image with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Extra labels of the stage pods (not the controller's own `reporting.dev/` labels).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// Extra annotations of the stage pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// Extra environment variables of the stage container. Names that change which code
    /// runs, where traffic goes or how the database is reached are the platform team's
    /// (`--stage-pods`) and refused here: `LD_*`, `GLIBC_TUNABLES`, `GCONV_PATH`, `MALLOC_*`,
    /// `OPENSSL_*`, `PATH`, `RUST_*` (but `RUST_LOG`), proxies (`HTTP_PROXY`, `HTTPS_PROXY`,
    /// `ALL_PROXY`, `NO_PROXY`, any case), `SSL_CERT_*`, `SSLKEYLOGFILE`, `RES_OPTIONS`,
    /// `HOSTALIASES`, `LOCALDOMAIN`, `PG*`, `TMPDIR`, and the engine's own `REPORTJOB_*`,
    /// `AWS_*`, `DATABASE_URL` and `JOB_COMPLETION_INDEX`, whatever the value's source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Extra volumes of the stage pods: `configMap`, `secret`, `downwardAPI`, `emptyDir`, or
    /// `projected` of those (no service-account token or cluster trust bundle). The names
    /// `output` and `assembly-tmp` are the controller's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Mounts of those volumes in the stage container: not `/` nor at or beneath `/bin`,
    /// `/sbin`, `/usr`, `/lib*`, `/etc`, `/proc`, `/sys`, `/dev`, `/tmp`, `/run/secrets`,
    /// `/var/run/secrets` or `/reportjob`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Overrides of the stage container's security context (field by field over the default:
    /// non-root, read-only root filesystem, no privilege escalation, all capabilities dropped).
    /// Only what tightens it is accepted: not `privileged`, `allowPrivilegeEscalation: true`,
    /// `readOnlyRootFilesystem: false`, `runAsNonRoot: false`, `runAsUser` or `runAsGroup`
    /// (the user is the platform team's), added capabilities, `seLinuxOptions`,
    /// `windowsOptions`, or a seccomp or AppArmor profile other than `RuntimeDefault`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
}

/// Pod settings that passed validation (only [`validate_pod_settings`] builds one).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodSettings(PodSettingsSpec);

impl PodSettings {
    /// The checked settings.
    pub fn get(&self) -> &PodSettingsSpec {
        &self.0
    }
}

/// Who wrote the settings: a ReportJob's author, or the platform team (the controller's
/// defaults), who may also use other volume types (CSI, PVC...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Author {
    /// `spec.worker` of a ReportJob.
    Spec,
    /// The controller's `--stage-pods`.
    Controller,
}

/// Env var names the engine sets or reads itself (see `stage_protocol::env`): refused
/// whoever sets them, the platform team too.
fn reserved_env(name: &str) -> bool {
    env_refusal(name) == Some(ENGINE_OWN)
}

/// Label and annotation keys the controller and the Job controller set.
/// Keys the controller or the Job controller set on stage pods (ours, `batch.kubernetes.io/`,
/// and the Job controller's legacy `job-name`/`controller-uid`). Other `*.kubernetes.io` keys
/// stay open: they are how a pod talks to cluster components (e.g.
/// `cluster-autoscaler.kubernetes.io/safe-to-evict`).
fn reserved_key(key: &str) -> bool {
    let prefix = key.split_once('/').map(|(p, _)| p);
    key == crate::names::MANAGED_BY_LABEL
        || matches!(prefix, Some(p) if p == "reporting.dev" || p.ends_with(".reporting.dev"))
        || prefix == Some("batch.kubernetes.io")
        || key == "job-name"
        || key == "controller-uid"
}

/// Checks `settings` (at `prefix`, e.g. `spec.worker`), naming each bad field.
pub fn validate_pod_settings(
    settings: &PodSettingsSpec,
    prefix: &str,
    author: Author,
) -> Result<PodSettings, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut err = |field: String, message: String| errors.push(FieldError { field, message });
    let too_many = |n: usize| n > MAX_ENTRIES;
    for (name, len) in [
        ("nodeSelector", settings.node_selector.len()),
        ("tolerations", settings.tolerations.len()),
        ("imagePullSecrets", settings.image_pull_secrets.len()),
        ("podLabels", settings.pod_labels.len()),
        ("podAnnotations", settings.pod_annotations.len()),
        ("env", settings.env.len()),
        ("volumes", settings.volumes.len()),
        ("volumeMounts", settings.volume_mounts.len()),
    ] {
        if too_many(len) {
            err(
                format!("{prefix}.{name}"),
                format!("has {len} entries; at most {MAX_ENTRIES}"),
            );
        }
    }
    for (key, value) in &settings.node_selector {
        labels_entry(&format!("{prefix}.nodeSelector"), key, value, &mut err);
    }
    for (key, value) in &settings.pod_labels {
        let field = format!("{prefix}.podLabels");
        if reserved_key(key) {
            err(
                format!("{field}[{key:?}]"),
                "is set by the controller or the Job controller; choose another key".into(),
            );
        }
        labels_entry(&field, key, value, &mut err);
    }
    let mut annotation_bytes = 0;
    for (key, value) in &settings.pod_annotations {
        let field = format!("{prefix}.podAnnotations[{key:?}]");
        if reserved_key(key) {
            err(
                field.clone(),
                "is set by the controller or Kubernetes; choose another key".into(),
            );
        }
        if author == Author::Spec && security_annotation(key) {
            err(
                field.clone(),
                "AppArmor, seccomp and SELinux settings are the platform team's (--stage-pods); \
                 remove it"
                    .into(),
            );
        }
        if let Err(m) = qualified_name(key) {
            err(field, format!("is not a valid annotation key: {m}"));
        }
        annotation_bytes += key.len() + value.len();
    }
    if annotation_bytes > 64 * 1024 {
        err(
            format!("{prefix}.podAnnotations"),
            format!("total {annotation_bytes} bytes; at most 64 KiB"),
        );
    }
    if let Some(class) = &settings.priority_class_name
        && !is_dns_subdomain(class)
    {
        err(
            format!("{prefix}.priorityClassName"),
            format!("{class:?} is not a valid PriorityClass name"),
        );
    }
    for (i, secret) in settings.image_pull_secrets.iter().enumerate() {
        if !is_dns_subdomain(&secret.name) {
            err(
                format!("{prefix}.imagePullSecrets[{i}].name"),
                format!("{:?} is not a valid Secret name", secret.name),
            );
        }
    }
    let mut env_names = BTreeSet::new();
    for (i, var) in settings.env.iter().enumerate() {
        let field = format!("{prefix}.env[{i}]");
        let name = &var.name;
        if name.is_empty()
            || name.contains('=')
            || !name.chars().all(|c| c.is_ascii_graphic())
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            err(
                format!("{field}.name"),
                format!("{name:?} is not a valid environment variable name"),
            );
        } else if reserved_env(name) {
            err(
                format!("{field}.name"),
                format!(
                    "{name} is not allowed: it is the engine's own (REPORTJOB_*, AWS_*, \
                     DATABASE_URL and JOB_COMPLETION_INDEX are set by the controller); choose \
                     another name"
                ),
            );
        } else if let Some(why) = env_refusal(name).filter(|_| author == Author::Spec) {
            err(
                format!("{field}.name"),
                format!(
                    "{name} is not allowed: {why} (the platform team sets these in the chart: \
                     stagePods.env)"
                ),
            );
        } else if !env_names.insert(name.as_str()) {
            err(format!("{field}.name"), format!("{name:?} is listed twice"));
        }
        if var.value.is_some() && var.value_from.is_some() {
            err(field, "set value or valueFrom, not both".into());
        }
    }
    let mut volume_names = BTreeSet::new();
    for (i, volume) in settings.volumes.iter().enumerate() {
        let field = format!("{prefix}.volumes[{i}]");
        if volume.name == OUTPUT_VOLUME {
            err(
                format!("{field}.name"),
                format!("{OUTPUT_VOLUME:?} is the controller's output volume; choose another name"),
            );
        } else if OWN_VOLUMES.contains(&volume.name.as_str()) {
            err(
                format!("{field}.name"),
                format!(
                    "{:?} is a volume the controller adds to stage pods; choose another name",
                    volume.name
                ),
            );
        } else if !is_dns_label(&volume.name) {
            err(
                format!("{field}.name"),
                format!("{:?} is not a valid volume name (DNS label)", volume.name),
            );
        } else if !volume_names.insert(volume.name.as_str()) {
            err(
                format!("{field}.name"),
                format!("{:?} is listed twice", volume.name),
            );
        }
        if author == Author::Spec && !restricted_volume(volume) {
            err(
                field,
                "only configMap, secret, projected, downwardAPI and emptyDir volumes may be \
                 set in a ReportJob"
                    .into(),
            );
        } else if author == Author::Spec
            && let Some(projected) = &volume.projected
        {
            for (j, source) in projected.sources.iter().flatten().enumerate() {
                let only_data = source.config_map.is_some()
                    || source.secret.is_some()
                    || source.downward_api.is_some();
                if !only_data || projected_source_count(source) != 1 {
                    err(
                        format!("{field}.projected.sources[{j}]"),
                        "only configMap, secret and downwardAPI may be projected in a \
                         ReportJob (a serviceAccountToken would give the pod a token it must \
                         not have)"
                            .into(),
                    );
                }
            }
        }
    }
    let mut mount_paths = BTreeSet::new();
    for (i, mount) in settings.volume_mounts.iter().enumerate() {
        let field = format!("{prefix}.volumeMounts[{i}]");
        if mount.name == OUTPUT_VOLUME {
            err(
                format!("{field}.name"),
                format!("{OUTPUT_VOLUME:?} is the controller's output volume"),
            );
        } else if OWN_VOLUMES.contains(&mount.name.as_str()) {
            err(
                format!("{field}.name"),
                format!(
                    "{:?} is a volume the controller adds to stage pods",
                    mount.name
                ),
            );
        } else if author == Author::Spec && !volume_names.contains(mount.name.as_str()) {
            err(
                format!("{field}.name"),
                format!("{:?} is not one of {prefix}.volumes", mount.name),
            );
        }
        let path = mount.mount_path.trim_end_matches('/');
        if !mount.mount_path.starts_with('/')
            || mount.mount_path.split('/').any(|p| p == "..")
            || mount.mount_path.contains('\0')
        {
            err(
                format!("{field}.mountPath"),
                format!(
                    "{:?} must be an absolute path without `..`",
                    mount.mount_path
                ),
            );
        } else if path == OUTPUT_MOUNT || path.starts_with(&format!("{OUTPUT_MOUNT}/")) {
            err(
                format!("{field}.mountPath"),
                format!(
                    "{:?} is at or beneath the output mount {OUTPUT_MOUNT}",
                    mount.mount_path
                ),
            );
        } else if path == "/dev/termination-log" || path.is_empty() {
            err(
                format!("{field}.mountPath"),
                format!("{:?} would hide what the stage needs", mount.mount_path),
            );
        } else if author == Author::Spec
            && let Some(sys) = system_path(&mount.mount_path)
        {
            err(
                format!("{field}.mountPath"),
                format!(
                    "{:?} is not allowed: it is at or beneath {sys}, which holds the image's \
                     programs, system settings or the pod's own files; mount elsewhere \
                     (e.g. /config/...)",
                    mount.mount_path
                ),
            );
        } else if !mount_paths.insert(path) {
            err(
                format!("{field}.mountPath"),
                format!("{:?} is mounted twice", mount.mount_path),
            );
        }
        if let Some(sub) = &mount.sub_path
            && (sub.starts_with('/') || sub.split('/').any(|p| p == ".."))
        {
            err(
                format!("{field}.subPath"),
                format!("{sub:?} must be relative, without `..`"),
            );
        }
    }
    if let Some(sc) = &settings.security_context {
        security_context(&format!("{prefix}.securityContext"), sc, &mut err);
        if author == Author::Spec {
            only_tightening(&format!("{prefix}.securityContext"), sc, &mut err);
        }
    }
    if errors.is_empty() {
        Ok(PodSettings(settings.clone()))
    } else {
        Err(errors)
    }
}

fn restricted_volume(v: &Volume) -> bool {
    let allowed = v.config_map.is_some()
        || v.secret.is_some()
        || v.projected.is_some()
        || v.downward_api.is_some()
        || v.empty_dir.is_some();
    // Exactly one source, and one of the allowed: serialize and count the keys besides `name`.
    let sources = serde_json::to_value(v)
        .ok()
        .and_then(|j| j.as_object().map(|o| o.len().saturating_sub(1)))
        .unwrap_or(0);
    allowed && sources == 1
}

/// How many sources one entry of a projected volume sets.
fn projected_source_count(source: &k8s_openapi::api::core::v1::VolumeProjection) -> usize {
    serde_json::to_value(source)
        .ok()
        .and_then(|j| j.as_object().map(serde_json::Map::len))
        .unwrap_or(0)
}

/// A spec's security context may only tighten the stage container's: what the platform team
/// chose (user, SELinux, Windows, profiles) or left hardened stays as it is.
fn only_tightening(field: &str, sc: &SecurityContext, err: &mut impl FnMut(String, String)) {
    let mut no = |name: &str, why: &str| err(format!("{field}.{name}"), why.to_string());
    const PLATFORM: &str = "is the platform team's to set (--stage-pods); remove it";
    if sc.read_only_root_filesystem == Some(false) {
        no(
            "readOnlyRootFilesystem",
            "must not be false: the root filesystem of stage pods stays read-only",
        );
    }
    if sc.run_as_user.is_some() {
        no("runAsUser", PLATFORM);
    }
    if sc.run_as_group.is_some() {
        no("runAsGroup", PLATFORM);
    }
    if sc.se_linux_options.is_some() {
        no("seLinuxOptions", PLATFORM);
    }
    if sc.windows_options.is_some() {
        no("windowsOptions", PLATFORM);
    }
    if sc
        .seccomp_profile
        .as_ref()
        .is_some_and(|p| p.type_ != "RuntimeDefault")
    {
        no(
            "seccompProfile.type",
            "must be RuntimeDefault (other profiles are the platform team's)",
        );
    }
    if sc
        .app_armor_profile
        .as_ref()
        .is_some_and(|p| p.type_ != "RuntimeDefault")
    {
        no(
            "appArmorProfile.type",
            "must be RuntimeDefault (other profiles are the platform team's)",
        );
    }
}

/// Refuses what would loosen the stage container's hardening.
fn security_context(field: &str, sc: &SecurityContext, err: &mut impl FnMut(String, String)) {
    let mut no = |name: &str, why: &str| err(format!("{field}.{name}"), why.to_string());
    if sc.privileged == Some(true) {
        no("privileged", "stage containers are never privileged");
    }
    if sc.allow_privilege_escalation == Some(true) {
        no("allowPrivilegeEscalation", "must not be true");
    }
    if sc.run_as_non_root == Some(false) {
        no(
            "runAsNonRoot",
            "must not be false: stage pods never run as root",
        );
    }
    if sc.run_as_user == Some(0) {
        no("runAsUser", "must not be 0 (root)");
    }
    if sc.run_as_group == Some(0) {
        no("runAsGroup", "must not be 0 (root)");
    }
    if sc
        .capabilities
        .as_ref()
        .and_then(|c| c.add.as_ref())
        .is_some_and(|a| !a.is_empty())
    {
        no("capabilities.add", "capabilities cannot be added");
    }
    if sc.capabilities.as_ref().is_some_and(|c| {
        c.drop
            .as_ref()
            .is_none_or(|d| !d.iter().any(|d| d == "ALL"))
    }) {
        no("capabilities.drop", "must keep dropping ALL");
    }
    if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
        no("procMount", "must be Default");
    }
    if sc
        .seccomp_profile
        .as_ref()
        .is_some_and(|p| p.type_ == "Unconfined")
    {
        no("seccompProfile.type", "must not be Unconfined");
    }
    if sc
        .app_armor_profile
        .as_ref()
        .is_some_and(|p| p.type_ == "Unconfined")
    {
        no("appArmorProfile.type", "must not be Unconfined");
    }
    if sc
        .windows_options
        .as_ref()
        .is_some_and(|w| w.host_process == Some(true))
    {
        no("windowsOptions.hostProcess", "must not be true");
    }
}

fn labels_entry(field: &str, key: &str, value: &str, err: &mut impl FnMut(String, String)) {
    if let Err(m) = qualified_name(key) {
        err(
            format!("{field}[{key:?}]"),
            format!("is not a valid label key: {m}"),
        );
    }
    if !(value.is_empty() || is_label_name(value)) {
        err(
            format!("{field}[{key:?}]"),
            format!(
                "{value:?} is not a valid label value (at most 63 characters: letters, digits, \
                 `-`, `_`, `.`, beginning and ending with a letter or digit)"
            ),
        );
    }
}

/// A Kubernetes qualified name: `[prefix/]name`, the prefix a DNS subdomain.
pub fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        return Err(format!("prefix {prefix:?} is not a DNS subdomain"));
    }
    if !is_label_name(name) {
        return Err(format!(
            "name {name:?} must be 1 to 63 letters, digits, `-`, `_` or `.`, beginning and \
             ending with a letter or digit"
        ));
    }
    Ok(())
}

fn is_label_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A lower-case DNS subdomain (Secret, PriorityClass and claim names).
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests;
