//! Whether a stage pod is one its Job built from the template the controller wrote, rather
//! than a pod someone else created naming the Job as its owner. Anyone who may create pods
//! in the namespace can copy a stage pod's labels, annotations and owner reference (the
//! Job's UID is readable), and the Job controller then counts that pod's success as the
//! Job's. What such a pod cannot do is run the controller's command with the controller's
//! environment and still say something else: so a result counts only from a pod whose spec
//! is the Job's template in everything that decides what runs and what it reads or writes.
//!
//! The comparison is over a fingerprint (SHA-256 of a canonical JSON form) of those fields,
//! taken from the pod's actual spec and from the Job's actual pod template as the API
//! server stores them (immutable once the Job exists, and defaulted the same way as the
//! pod), never from an annotation a forger could copy. The caches keep only the 64 hex
//! digits.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Where the controller's in-memory copy of a stage Job carries its template's fingerprint
/// (set from the template itself each time the Job is read; never read from the API).
pub const TEMPLATE_FINGERPRINT: &str = "reporting.dev/internal-template-fingerprint";

/// The env variable the Job controller adds to every container of an Indexed Job's pods.
const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// The fields of a container that decide what it runs and with what.
const CONTAINER_FIELDS: &[&str] = &[
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "env",
    "envFrom",
    "volumeMounts",
    "volumeDevices",
    "securityContext",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "stdin",
    "tty",
];

/// The fields of a pod spec that decide what runs, what it can reach and what it can read
/// or write. Scheduling, resources, tolerations and priority are left out: admission
/// plugins (LimitRanger, DefaultTolerationSeconds, Priority) change them on pods and not on
/// templates, and they do not change what the container does.
const POD_FIELDS: &[&str] = &[
    "volumes",
    "serviceAccountName",
    "automountServiceAccountToken",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "hostUsers",
    "shareProcessNamespace",
    "hostAliases",
    "dnsPolicy",
    "dnsConfig",
    "securityContext",
    "runtimeClassName",
    "os",
];

/// The fingerprint of a pod spec (or a pod template's spec), as JSON.
pub fn fingerprint(spec: &Value) -> String {
    let empty = serde_json::Map::new();
    let spec = spec.as_object().unwrap_or(&empty);
    let mut kept = BTreeMap::new();
    for field in POD_FIELDS {
        if let Some(value) = spec.get(*field) {
            kept.insert(field.to_string(), value.clone());
        }
    }
    // The ServiceAccount admission plugin names the default account on pods, not templates.
    let account = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    kept.insert("serviceAccountName".into(), Value::from(account));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        let containers: Vec<Value> = spec
            .get(list)
            .and_then(Value::as_array)
            .map(|cs| cs.iter().map(container).collect())
            .unwrap_or_default();
        kept.insert(list.to_string(), Value::Array(containers));
    }
    let canonical = canonical(&Value::Object(kept.into_iter().collect()));
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// A container reduced to [`CONTAINER_FIELDS`], with the API server's defaults written out
/// and the Job controller's completion index variable left out.
fn container(c: &Value) -> Value {
    let mut kept = serde_json::Map::new();
    for field in CONTAINER_FIELDS {
        if let Some(value) = c.get(*field) {
            kept.insert(field.to_string(), value.clone());
        }
    }
    if let Some(Value::Array(env)) = kept.get_mut("env") {
        env.retain(|e| e.get("name").and_then(Value::as_str) != Some(COMPLETION_INDEX_ENV));
    }
    kept.entry("terminationMessagePath")
        .or_insert_with(|| Value::from("/dev/termination-log"));
    kept.entry("terminationMessagePolicy")
        .or_insert_with(|| Value::from("File"));
    Value::Object(kept)
}

/// JSON with object keys sorted and nulls, empty arrays and empty objects left out (the
/// API server's Go encoding and k8s-openapi's leave out different empty fields).
fn canonical(value: &Value) -> String {
    fn prune(value: &Value) -> Option<Value> {
        match value {
            Value::Null => None,
            Value::Array(items) => {
                let items: Vec<Value> = items.iter().filter_map(prune).collect();
                (!items.is_empty()).then_some(Value::Array(items))
            }
            Value::Object(map) => {
                let sorted: BTreeMap<&String, Value> = map
                    .iter()
                    .filter_map(|(k, v)| prune(v).map(|v| (k, v)))
                    .collect();
                (!sorted.is_empty()).then(|| {
                    Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
                })
            }
            other => Some(other.clone()),
        }
    }
    // serde_json's map is ordered by key unless `preserve_order` is on; sort regardless.
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let sorted: BTreeMap<&String, &Value> = map.iter().collect();
                out.push('{');
                for (i, (k, v)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::from(k.as_str()).to_string());
                    out.push(':');
                    write(v, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(v, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(&prune(value).unwrap_or(Value::Null), &mut out);
    out
}

/// Deserializes a pod's `spec` into its fingerprint.
pub fn spec_fingerprint<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let spec = Option::<Value>::deserialize(d)?;
    Ok(spec.map(|s| fingerprint(&s)))
}

/// Deserializes a Job's `spec.template` into the fingerprint of its pod spec.
pub fn template_fingerprint<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let template = Option::<Value>::deserialize(d)?;
    Ok(template
        .as_ref()
        .and_then(|t| t.get("spec"))
        .map(fingerprint))
}

/// The fingerprint of a full `Pod`'s spec (pods listed from the API).
pub fn pod_fingerprint(pod: &k8s_openapi::api::core::v1::Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    serde_json::to_value(spec).ok().map(|v| fingerprint(&v))
}

/// Whether a pod with spec fingerprint `pod` created at `created` is one `job` built: the
/// same fingerprint as the Job's template (as the cache recorded it), and created after the
/// Job. (The owner reference is checked by [`super::results::created_by`].)
pub fn built_by(pod: Option<&str>, created: Option<&Time>, job: &Job) -> bool {
    let template = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_FINGERPRINT));
    let after_job = match (created, job.metadata.creation_timestamp.as_ref()) {
        (Some(pod), Some(job)) => pod.0 >= job.0,
        // Objects built in memory (tests) carry no times; the API server always sets them.
        (None, None) => true,
        _ => false,
    };
    matches!((pod, template), (Some(p), Some(t)) if p == t) && after_job
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Value {
        json!({
            "containers": [{
                "name": "reportjob", "image": "reportjob:dev", "args": ["assemble"],
                "env": [{"name": "REPORTJOB_RUN_ID", "value": "rj-1"},
                        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}],
                "volumeMounts": [{"name": "output", "mountPath": "/reportjob/output"}],
                "resources": {}
            }],
            "volumes": [{"name": "output", "persistentVolumeClaim": {"claimName": "reports"}}],
            "restartPolicy": "Never",
            "automountServiceAccountToken": false
        })
    }

    #[test]
    fn a_pod_built_from_the_template_has_its_fingerprint_whatever_admission_added() {
        let template = fingerprint(&spec());
        let mut pod = spec();
        // What the API server and the Job controller add to a pod and not to a template.
        pod["serviceAccountName"] = json!("default");
        pod["nodeName"] = json!("node-1");
        pod["tolerations"] = json!([{"key": "node.kubernetes.io/not-ready"}]);
        pod["priority"] = json!(0);
        pod["containers"][0]["resources"] = json!({"limits": {"memory": "256Mi"}});
        pod["containers"][0]["terminationMessagePath"] = json!("/dev/termination-log");
        pod["containers"][0]["env"].as_array_mut().unwrap().push(
            json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}),
        );
        pod["hostname"] = json!("r-chunks-0");
        assert_eq!(fingerprint(&pod), template);
    }

    #[test]
    fn a_forged_pod_differs_in_what_it_runs_or_reads() {
        let template = fingerprint(&spec());
        type Change = Box<dyn Fn(&mut Value)>;
        let forged: Vec<Change> = vec![
            Box::new(|p| p["containers"][0]["image"] = json!("busybox")),
            Box::new(|p| p["containers"][0]["command"] = json!(["sh", "-c", "echo forged"])),
            Box::new(|p| p["containers"][0]["args"] = json!(["assemble", "--x"])),
            Box::new(|p| p["containers"][0]["env"][0]["value"] = json!("rj-2")),
            Box::new(|p| {
                p["containers"][0]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "LD_PRELOAD", "value": "/x.so"}))
            }),
            Box::new(|p| p["containers"][0]["terminationMessagePath"] = json!("/out/msg")),
            Box::new(|p| p["volumes"][0]["persistentVolumeClaim"]["claimName"] = json!("mine")),
            Box::new(|p| p["hostAliases"] = json!([{"ip": "10.0.0.9", "hostnames": ["db"]}])),
            Box::new(|p| p["shareProcessNamespace"] = json!(true)),
            Box::new(|p| p["serviceAccountName"] = json!("builder")),
            Box::new(|p| {
                let second = p["containers"][0].clone();
                p["containers"].as_array_mut().unwrap().push(second)
            }),
            Box::new(|p| p["initContainers"] = json!([{"name": "pre", "image": "busybox"}])),
        ];
        for (i, change) in forged.iter().enumerate() {
            let mut pod = spec();
            change(&mut pod);
            assert_ne!(fingerprint(&pod), template, "change {i}");
        }
    }

    #[test]
    fn a_pod_counts_only_with_the_jobs_fingerprint_and_after_the_job() {
        let mut job = Job::default();
        let at = |s: i64| Time(jiff::Timestamp::from_second(s).unwrap());
        job.metadata.creation_timestamp = Some(at(100));
        job.metadata.annotations = Some(BTreeMap::from([(
            TEMPLATE_FINGERPRINT.to_string(),
            "f".to_string(),
        )]));
        assert!(built_by(Some("f"), Some(&at(101)), &job));
        assert!(!built_by(Some("g"), Some(&at(101)), &job));
        assert!(!built_by(None, Some(&at(101)), &job));
        assert!(!built_by(Some("f"), Some(&at(99)), &job));
        assert!(!built_by(Some("f"), None, &job));
        job.metadata.annotations = None;
        assert!(!built_by(Some("f"), Some(&at(101)), &job));
    }
}
