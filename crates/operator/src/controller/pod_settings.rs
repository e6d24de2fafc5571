//! The cluster settings of stage pods: the controller's defaults (`--stage-pods`, the chart's
//! `stagePods:` block) merged with a ReportJob's `spec.worker` settings and put on every
//! stage pod. Maps merge per key (the spec wins), env, volumes, mounts and pull secrets per
//! name (the spec wins), tolerations are appended, and the container security context is
//! overlaid field by field on the hardened default. The controller's own labels, env vars
//! and output volume always win (validation already refuses settings that name them).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, PodSecurityContext, PodSpec, ResourceRequirements, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use reportjob_core::api::pod_settings::{
    Author, PodSettings, PodSettingsSpec, validate_pod_settings,
};

/// The controller's `--stage-pods` configuration: default settings of every stage pod.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StagePods {
    /// Node selection, env, volumes... (the same fields as `spec.worker`).
    #[serde(flatten)]
    pub pod: PodSettingsSpec,
    /// Resources of stage pods whose spec sets none. Absent: [`default_resources`];
    /// `{}`: none.
    #[serde(default = "some_default_resources")]
    pub resources: Option<ResourceRequirements>,
    /// Service account of stage pods whose spec names none (or may not). Absent: the
    /// namespace's `default`.
    #[serde(default)]
    pub service_account_name: Option<String>,
    /// The pod security context of every stage pod, instead of the built-in one (UID, GID and
    /// fsGroup 65532, `OnRootMismatch`, the runtime's default seccomp profile). `{}` sets none,
    /// for clusters that assign users themselves (OpenShift's restricted SCC refuses fixed
    /// UIDs); without an fsGroup a freshly provisioned volume is not writable by the pods.
    #[serde(default)]
    pub pod_security_context: Option<PodSecurityContext>,
}

impl Default for StagePods {
    fn default() -> Self {
        StagePods {
            pod: PodSettingsSpec::default(),
            resources: some_default_resources(),
            service_account_name: None,
            pod_security_context: None,
        }
    }
}

fn some_default_resources() -> Option<ResourceRequirements> {
    Some(default_resources())
}

/// Requests and limits of a stage pod unless configured: a chunk worker peaks near 15 MiB
/// RSS and the bucket path near 65 MiB (BENCHMARKS.md), so 64Mi is requested, 256Mi the
/// limit, and 100m CPU requested (no CPU limit: throttling a database read gains nothing).
pub fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), q("100m")),
            ("memory".to_string(), q("64Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), q("256Mi"))])),
        ..Default::default()
    }
}

impl StagePods {
    /// Parses `--stage-pods` (YAML or JSON) and checks it as the platform team's settings.
    pub fn parse(text: &str) -> Result<(StagePods, PodSettings), String> {
        let config: StagePods = if text.trim().is_empty() {
            StagePods::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| format!("--stage-pods: {e}"))?
        };
        let settings = validate_pod_settings(&config.pod, "stagePods", Author::Controller)
            .map_err(|errors| {
                let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
                format!("--stage-pods: {}", all.join("; "))
            })?;
        if let Some(sa) = &config.service_account_name
            && !reportjob_core::api::pod_settings::is_dns_subdomain(sa)
        {
            return Err(format!(
                "--stage-pods: serviceAccountName {sa:?} is not a valid name"
            ));
        }
        Ok((config, settings))
    }
}

/// Puts the merged settings of `defaults` and `spec` on a stage pod: its template metadata,
/// its spec and its one container. `controller_labels` are set last, so they always win.
pub fn apply(
    defaults: &PodSettingsSpec,
    spec: &PodSettingsSpec,
    controller_labels: BTreeMap<String, String>,
    meta: &mut ObjectMeta,
    pod: &mut PodSpec,
) {
    let mut labels = merged_map(&defaults.pod_labels, &spec.pod_labels);
    labels.extend(controller_labels);
    meta.labels = Some(labels);
    meta.annotations = non_empty_map(merged_map(&defaults.pod_annotations, &spec.pod_annotations));
    pod.node_selector = non_empty_map(merged_map(&defaults.node_selector, &spec.node_selector));
    pod.tolerations = non_empty(
        defaults
            .tolerations
            .iter()
            .chain(&spec.tolerations)
            .cloned()
            .collect(),
    );
    pod.affinity = merged_affinity(defaults.affinity.as_ref(), spec.affinity.as_ref());
    pod.priority_class_name = spec
        .priority_class_name
        .clone()
        .or_else(|| defaults.priority_class_name.clone());
    pod.image_pull_secrets = non_empty(by_name(
        &defaults.image_pull_secrets,
        &spec.image_pull_secrets,
        |s| s.name.clone(),
    ));
    let extra_volumes = by_name(&defaults.volumes, &spec.volumes, |v| v.name.clone());
    if !extra_volumes.is_empty() {
        pod.volumes
            .get_or_insert_with(Vec::new)
            .extend(extra_volumes);
    }
    if let Some(container) = pod.containers.first_mut() {
        apply_container(defaults, spec, container);
    }
}

fn apply_container(defaults: &PodSettingsSpec, spec: &PodSettingsSpec, c: &mut Container) {
    let extra_env = by_name(&defaults.env, &spec.env, |e| e.name.clone());
    c.env.get_or_insert_with(Vec::new).extend(extra_env);
    let mounts = by_name(&defaults.volume_mounts, &spec.volume_mounts, |m| {
        m.mount_path.trim_end_matches('/').to_string()
    });
    if !mounts.is_empty() {
        c.volume_mounts.get_or_insert_with(Vec::new).extend(mounts);
    }
    let mut sc = c.security_context.take().unwrap_or_default();
    for over in [&defaults.security_context, &spec.security_context]
        .into_iter()
        .flatten()
    {
        sc = overlay(&sc, over);
    }
    c.security_context = Some(sc);
}

/// `over`'s fields that are set replace `base`'s.
fn overlay(base: &SecurityContext, over: &SecurityContext) -> SecurityContext {
    let mut merged = serde_json::to_value(base).unwrap_or_default();
    if let (Some(m), serde_json::Value::Object(o)) = (
        merged.as_object_mut(),
        serde_json::to_value(over).unwrap_or_default(),
    ) {
        m.extend(o);
    }
    serde_json::from_value(merged).unwrap_or_else(|_| base.clone())
}

/// Each part (node, pod, anti-affinity) of the spec's replaces the default's.
fn merged_affinity(defaults: Option<&Affinity>, spec: Option<&Affinity>) -> Option<Affinity> {
    let pick = |f: fn(&Affinity) -> bool| spec.filter(|a| f(a)).or(defaults.filter(|a| f(a)));
    let merged = Affinity {
        node_affinity: pick(|a| a.node_affinity.is_some()).and_then(|a| a.node_affinity.clone()),
        pod_affinity: pick(|a| a.pod_affinity.is_some()).and_then(|a| a.pod_affinity.clone()),
        pod_anti_affinity: pick(|a| a.pod_anti_affinity.is_some())
            .and_then(|a| a.pod_anti_affinity.clone()),
    };
    (merged != Affinity::default()).then_some(merged)
}

fn merged_map(
    defaults: &BTreeMap<String, String>,
    spec: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut map = defaults.clone();
    map.extend(spec.iter().map(|(k, v)| (k.clone(), v.clone())));
    map
}

/// The defaults whose key the spec does not use, then the spec's.
fn by_name<T: Clone>(defaults: &[T], spec: &[T], key: impl Fn(&T) -> String) -> Vec<T> {
    let spec_keys: Vec<String> = spec.iter().map(&key).collect();
    defaults
        .iter()
        .filter(|d| !spec_keys.contains(&key(d)))
        .chain(spec)
        .cloned()
        .collect()
}

fn non_empty<T>(list: Vec<T>) -> Option<Vec<T>> {
    (!list.is_empty()).then_some(list)
}

fn non_empty_map(map: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

#[cfg(test)]
mod tests;
