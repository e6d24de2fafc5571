//! Admission: CRD schema validation/defaulting/pruning and built-in kinds' server-side defaults.

use super::error::{ApiError, ApiResult};
use super::meta::new_uid;
use super::resources::ResourceInfo;
use super::schema;
use serde_json::{Value, json};
use std::path::Path;

/// `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("Strict") => Self::Strict,
            Some("Ignore") => Self::Ignore,
            _ => Self::Warn,
        }
    }
}

/// Validate, default and prune a custom resource. Returns warnings (unknown fields under Warn).
pub fn custom_resource(
    ri: &ResourceInfo,
    obj: &mut Value,
    fv: FieldValidation,
) -> ApiResult<Vec<String>> {
    custom_resource_update(ri, obj, None, false, fv)
}

/// [`custom_resource`] for an update of `old` (CEL transition rules and ratcheting see it);
/// `status` for a `/status` write.
pub fn custom_resource_update(
    ri: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
    status: bool,
    fv: FieldValidation,
) -> ApiResult<Vec<String>> {
    let Some(s) = &ri.schema else {
        return Ok(vec![]);
    };
    let mut unknown = vec![];
    schema::prune(s, obj, "", true, &mut unknown);
    if !unknown.is_empty() && fv == FieldValidation::Strict {
        let parts: Vec<String> = unknown
            .iter()
            .map(|u| format!("unknown field \"{u}\""))
            .collect();
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            parts.join(", ")
        )));
    }
    schema::apply_defaults(s, obj);
    let mut causes = vec![];
    schema::validate(s, obj, "", &mut causes);
    let cel_warnings = super::cel::admit(s, obj, old, status, &mut causes);
    if !causes.is_empty() {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        return Err(ApiError::invalid(
            &ri.kind_group(),
            &ri.group,
            &ri.kind,
            &name,
            causes,
        ));
    }
    Ok(if fv == FieldValidation::Warn {
        unknown
            .iter()
            .map(|u| format!("unknown field \"{u}\""))
            .chain(cel_warnings)
            .collect()
    } else {
        cel_warnings
    })
}

/// Checks a CRD as the apiextensions server does (name and structural schemas).
pub fn crd(ri: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let spec = &obj["spec"];
    let mut causes = vec![];
    let want = format!(
        "{}.{}",
        spec["names"]["plural"].as_str().unwrap_or_default(),
        spec["group"].as_str().unwrap_or_default()
    );
    if name != want {
        causes.push((
            "FieldValueInvalid".to_string(),
            "metadata.name".to_string(),
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    for (i, v) in spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let s = &v["schema"]["openAPIV3Schema"];
        if s.is_object() {
            let at = format!("spec.versions[{i}].schema.openAPIV3Schema");
            causes.extend(schema::structural_errors(s, &at));
            causes.extend(super::cel::crd_rule_errors(s, &at));
        } else {
            causes.push((
                "FieldValueRequired".into(),
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "Required value: schemas are required".into(),
            ));
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(
            &ri.kind_group(),
            &ri.group,
            &ri.kind,
            &name,
            causes,
        ));
    }
    let names = spec["names"].clone();
    let mut accepted = names.clone();
    if accepted["singular"].is_null() {
        accepted["singular"] = json!(names["kind"].as_str().unwrap_or_default().to_lowercase());
    }
    if accepted["listKind"].is_null() {
        accepted["listKind"] = json!(format!(
            "{}List",
            names["kind"].as_str().unwrap_or_default()
        ));
    }
    obj["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": super::meta::now()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": super::meta::now()}
        ],
        "storedVersions": spec["versions"].as_array().into_iter().flatten().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>()
    });
    Ok(())
}

/// Server-side defaults of built-in kinds on create.
pub fn builtin_create(ri: &ResourceInfo, obj: &mut Value, data_dir: &Path) -> ApiResult<()> {
    match (ri.group.as_str(), ri.plural.as_str()) {
        ("", "namespaces") => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        // SetDefaults_Secret (pkg/apis/core/v1/defaults.go): an empty type is Opaque.
        ("", "secrets") if obj["type"].as_str().is_none_or(str::is_empty) => {
            obj["type"] = json!("Opaque");
        }
        ("", "resourcequotas") => {
            // The quota controller fills the status (`quota::refresh`); a client's is dropped.
            obj["status"] = json!({});
        }
        ("", "limitranges") => super::limitrange::default_items(obj),
        ("", "pods") => {
            super::limitrange::default_pod_requests(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            if obj["spec"]["restartPolicy"].is_null() {
                obj["spec"]["restartPolicy"] = json!("Always");
            }
        }
        ("", "persistentvolumeclaims") => {
            let ns = obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let dir = data_dir.join("pvc").join(&ns).join(&name);
            let fresh = !dir.exists();
            std::fs::create_dir_all(&dir)
                .map_err(|e| ApiError::internal(format!("creating {}: {e}", dir.display())))?;
            if fresh {
                // A fresh volume: its root directory is root-owned 0755, as a newly made filesystem.
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| ApiError::internal(format!("chmod {}: {e}", dir.display())))?;
            }
            if obj["spec"]["volumeName"].is_null() {
                obj["spec"]["volumeName"] = json!(format!("pvc-{}", new_uid()));
            }
            let mut status = json!({"phase": "Bound"});
            if let Some(m) = obj["spec"]["accessModes"].as_array() {
                status["accessModes"] = json!(m);
            }
            if let Some(s) = obj["spec"]["resources"]["requests"]["storage"].as_str() {
                status["capacity"] = json!({"storage": s});
            }
            obj["status"] = status;
        }
        // SetDefaults_Deployment / SetDefaults_ReplicaSet (pkg/apis/apps/v1/defaults.go).
        ("apps", "deployments") => {
            let spec = &mut obj["spec"];
            if spec["replicas"].is_null() {
                spec["replicas"] = json!(1);
            }
            if spec["strategy"]["type"].is_null() {
                spec["strategy"]["type"] = json!("RollingUpdate");
            }
            if spec["strategy"]["type"] == "RollingUpdate" {
                let ru = &mut spec["strategy"]["rollingUpdate"];
                for f in ["maxSurge", "maxUnavailable"] {
                    if ru[f].is_null() {
                        ru[f] = json!("25%");
                    }
                }
            }
            if spec["revisionHistoryLimit"].is_null() {
                spec["revisionHistoryLimit"] = json!(10);
            }
            if spec["progressDeadlineSeconds"].is_null() {
                spec["progressDeadlineSeconds"] = json!(600);
            }
            obj["status"] = json!({});
        }
        ("apps", "replicasets") => {
            if obj["spec"]["replicas"].is_null() {
                obj["spec"]["replicas"] = json!(1);
            }
            obj["status"] = json!({"replicas": 0});
        }
        ("policy", "poddisruptionbudgets") => {
            obj["status"] = json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0});
        }
        ("batch", "jobs") => {
            let uid = new_uid();
            obj["metadata"]["uid"] = json!(uid);
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let spec = &mut obj["spec"];
            if spec["parallelism"].is_null() {
                spec["parallelism"] = json!(1);
            }
            if spec["completions"].is_null() && spec["completionMode"].as_str() != Some("Indexed") {
                spec["completions"] = json!(1);
            }
            if spec["backoffLimit"].is_null() {
                spec["backoffLimit"] = json!(if spec["backoffLimitPerIndex"].is_null() {
                    6
                } else {
                    2147483647
                });
            }
            if spec["completionMode"].is_null() {
                spec["completionMode"] = json!("NonIndexed");
            }
            if spec["suspend"].is_null() {
                spec["suspend"] = json!(false);
            }
            if spec["manualSelector"] != json!(true) {
                let labels = json!({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name, "controller-uid": uid, "job-name": name});
                spec["selector"] =
                    json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
                let tl = &mut spec["template"]["metadata"]["labels"];
                if !tl.is_object() {
                    *tl = json!({});
                }
                if let (Some(t), Some(l)) = (tl.as_object_mut(), labels.as_object()) {
                    for (k, v) in l {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
            obj["status"] = json!({});
        }
        _ => {}
    }
    Ok(())
}

/// The admission chain for a create, after defaulting and with the name generated: LimitRanger (mutating
/// and validating) for pods, the pod's QoS class (`PrepareForCreate`), then ResourceQuota.
pub fn admit_create(
    st: &super::store::State,
    ri: &ResourceInfo,
    ns: &str,
    obj: &mut Value,
) -> ApiResult<()> {
    if ri.group.is_empty() && ri.plural == "pods" {
        if let Err(why) = super::serviceaccounts::admit_pod(st, ns, obj) {
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            return Err(ApiError::forbidden("", "pods", name, &why));
        }
        let ranges = st
            .find("", "limitranges")
            .map(|lr| st.list(lr, Some(ns)))
            .unwrap_or_default();
        if let Err(why) = super::limitrange::admit_pod(&ranges, obj) {
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            return Err(ApiError::forbidden("", "pods", name, &why));
        }
        obj["status"]["qosClass"] = json!(super::limitrange::qos_class(obj));
    }
    if ri.group.is_empty() && ri.plural == "services" {
        let existing = st
            .find("", "services")
            .map(|r| st.list(r, None))
            .unwrap_or_default();
        super::services::admit_create(obj, &existing)?;
    }
    super::quota::admit_create(st, ri, ns, obj)
}

/// Checks and carried-over values of a built-in object's update (main resource, not `/status`).
pub fn builtin_update(ri: &ResourceInfo, old: &Value, new: &mut Value) -> ApiResult<()> {
    match (ri.group.as_str(), ri.plural.as_str()) {
        ("", "services") => super::services::admit_update(old, new),
        _ => Ok(()),
    }
}
