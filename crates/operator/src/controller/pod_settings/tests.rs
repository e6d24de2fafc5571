//! Every pod setting reaches the stage pod, and the controller's defaults merge with the spec's.

use super::*;
use crate::controller::jobs::{self, JobContext, OUTPUT_MOUNT, PlanRef, PodDefaults};
use crate::controller::names::{self, Stage};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use reportjob_core::api::load::load_str;
use reportjob_core::api::validate::validate;
use reportjob_core::api::{ReportJob, ValidSpec};
use reportjob_core::stage_protocol::ChunkSet;
use serde_json::{Value, json};

fn rj(worker: &str) -> ReportJob {
    let mut rj = load_str(
        &format!(
            r#"
apiVersion: reporting.dev/v1alpha1
kind: ReportJob
metadata: {{name: orders, namespace: analytics}}
spec:
  source: {{connectionSecretRef: {{name: db}}, table: orders, keyColumn: id}}
  output: {{destination: {{pvc: {{claimName: reports, path: orders.csv}}}}}}
  worker: {worker}
"#
        ),
        "test",
    )
    .expect("parses");
    rj.metadata.uid = Some("u-1".into());
    rj
}

fn valid(rj: &ReportJob) -> ValidSpec {
    validate(&rj.spec).expect("valid")
}

const SPEC_WORKER: &str = r#"{
    sameNode: true,
    nodeSelector: {pool: reports, zone: b},
    tolerations: [{key: reports, operator: Exists, effect: NoSchedule}],
    affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution:
        {nodeSelectorTerms: [{matchExpressions: [{key: disk, operator: In, values: [ssd]}]}]}}},
    priorityClassName: reports-low,
    imagePullSecrets: [{name: team-pull}],
    podLabels: {team: analytics, cost: spec},
    podAnnotations: {example.com/owner: analytics},
    env: [{name: CA_FILE, value: /config/ca/ca.crt},
          {name: POD_NAME_COPY, valueFrom: {fieldRef: {fieldPath: metadata.name}}}],
    volumes: [{name: ca, configMap: {name: ca-bundle}}],
    volumeMounts: [{name: ca, mountPath: /config/ca, readOnly: true}],
    securityContext: {readOnlyRootFilesystem: true}}"#;

const STAGE_PODS: &str = r#"
nodeSelector: {zone: a, arch: amd64}
tolerations: [{key: batch, operator: Exists}]
affinity:
  nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: x, operator: Exists}]}]}}
  podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 1, podAffinityTerm: {topologyKey: zone}}]}
priorityClassName: platform-default
imagePullSecrets: [{name: platform-pull}]
podLabels: {cost: platform, platform: "yes"}
podAnnotations: {example.com/platform: "1"}
env: [{name: HTTPS_PROXY, value: "http://proxy:3128"}, {name: SSL_CERT_FILE, value: /platform.crt}, {name: CA_FILE, value: /platform.crt}]
volumes: [{name: platform-ca, secret: {secretName: platform-ca}}]
volumeMounts: [{name: platform-ca, mountPath: /etc/platform-ca}]
securityContext: {seLinuxOptions: {level: "s0:c1"}}
serviceAccountName: stage-pods
"#;

fn defaults() -> PodDefaults {
    let (config, pod) = StagePods::parse(STAGE_PODS).expect("valid stage pods");
    PodDefaults {
        worker_image: "ghcr.io/reportjob/reportjob:0.1.0".into(),
        resources: config.resources,
        pod,
        service_account_name: config.service_account_name,
        ..Default::default()
    }
}

fn all_jobs(rj: &ReportJob, spec: &ValidSpec, d: &PodDefaults) -> Vec<Job> {
    let t = JobContext {
        rj,
        spec,
        defaults: d,
    };
    let plan = PlanRef {
        run_id: "r".into(),
        digest: "d".into(),
    };
    vec![
        jobs::plan_job(&t, "r"),
        jobs::chunks_job(&t, &plan, &ChunkSet::from_indexes([0, 1])),
        jobs::assemble_job(&t, &plan),
        jobs::notify_job(&t, "r", "failed"),
        jobs::cleanup_job(&t, "r"),
    ]
}

fn template(job: &Job) -> Value {
    let t: &PodTemplateSpec = &job.spec.as_ref().expect("spec").template;
    serde_json::to_value(t).expect("json")
}

fn env_value(pod: &Value, name: &str) -> Value {
    pod["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn every_setting_reaches_every_stage_pod_merged_with_the_defaults() {
    let rj = rj(SPEC_WORKER);
    let (spec, d) = (valid(&rj), defaults());
    for job in all_jobs(&rj, &spec, &d) {
        let stage = job.metadata.labels.as_ref().expect("labels")[names::STAGE_LABEL].clone();
        let t = template(&job);
        let meta = &t["metadata"];
        // Labels: the spec wins per key; the controller's labels are kept.
        assert_eq!(meta["labels"]["team"], "analytics", "{stage}");
        assert_eq!(meta["labels"]["cost"], "spec", "{stage}");
        assert_eq!(meta["labels"]["platform"], "yes", "{stage}");
        assert_eq!(meta["labels"][names::STAGE_LABEL], stage.as_str());
        assert_eq!(meta["labels"][names::MANAGED_BY_LABEL], "reportjob");
        assert_eq!(
            meta["annotations"],
            json!({"example.com/owner": "analytics", "example.com/platform": "1"})
        );
        let pod = &t["spec"];
        assert_eq!(
            pod["nodeSelector"],
            json!({"pool": "reports", "zone": "b", "arch": "amd64"})
        );
        let tolerations: Vec<&str> = pod["tolerations"]
            .as_array()
            .expect("tolerations")
            .iter()
            .map(|t| t["key"].as_str().expect("key"))
            .collect();
        assert_eq!(tolerations, ["batch", "reports"], "appended");
        // Node affinity from the spec replaces the default's; anti-affinity is the default's.
        let node_terms = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"];
        assert_eq!(node_terms[0]["matchExpressions"][0]["key"], "disk");
        assert!(pod["affinity"]["podAntiAffinity"].is_object());
        assert_eq!(pod["priorityClassName"], "reports-low");
        assert_eq!(
            pod["imagePullSecrets"],
            json!([{"name": "platform-pull"}, {"name": "team-pull"}])
        );
        assert_eq!(pod["serviceAccountName"], "stage-pods");
        // Volumes: the output volume first, then the platform's, then the spec's.
        let volumes: Vec<&str> = pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .map(|v| v["name"].as_str().expect("name"))
            .collect();
        assert_eq!(volumes, ["output", "platform-ca", "ca"]);
        let c = &pod["containers"][0];
        let mounts: Vec<&str> = c["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .map(|m| m["mountPath"].as_str().expect("path"))
            .collect();
        assert_eq!(mounts, [OUTPUT_MOUNT, "/etc/platform-ca", "/config/ca"]);
        // Env: the spec wins per name over the defaults; the engine's own env stays.
        assert_eq!(env_value(&t, "CA_FILE")["value"], "/config/ca/ca.crt");
        assert_eq!(env_value(&t, "SSL_CERT_FILE")["value"], "/platform.crt");
        assert_eq!(env_value(&t, "HTTPS_PROXY")["value"], "http://proxy:3128");
        assert_eq!(
            env_value(&t, "POD_NAME_COPY")["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.name"
        );
        assert!(env_value(&t, "REPORTJOB_SPEC")["value"].is_string());
        let names: Vec<&str> = c["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| e["name"].as_str().expect("name"))
            .collect();
        assert_eq!(
            names.iter().filter(|n| **n == "CA_FILE").count(),
            1,
            "{names:?}"
        );
        // Security context: overlaid on the hardened default.
        let sc = &c["securityContext"];
        assert_eq!(sc["seLinuxOptions"]["level"], "s0:c1");
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        // The pod's own user, group and fsGroup stay.
        assert_eq!(pod["securityContext"]["fsGroup"], 65532);
        assert_eq!(
            pod["securityContext"]["fsGroupChangePolicy"],
            "OnRootMismatch"
        );
        // Default resources from the controller.
        assert_eq!(c["resources"]["requests"]["memory"], "64Mi");
        assert_eq!(c["resources"]["limits"]["memory"], "256Mi");
    }
}

#[test]
fn same_node_adds_its_pod_affinity_to_the_configured_affinity() {
    let rj = rj(SPEC_WORKER);
    let (spec, d) = (valid(&rj), defaults());
    let jobs = all_jobs(&rj, &spec, &d);
    let chunks = template(&jobs[1]);
    let terms = &chunks["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    assert_eq!(terms[0]["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        terms[0]["labelSelector"]["matchLabels"][names::STAGE_LABEL],
        Stage::Chunks.as_str()
    );
    assert_eq!(
        chunks["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchExpressions"][0]["key"],
        "disk"
    );
}

#[test]
fn without_settings_a_pod_gets_only_the_controllers_defaults() {
    let rj = rj("{serviceAccountName: own}");
    let spec = valid(&rj);
    let (config, pod) = StagePods::parse("").expect("empty config");
    let d = PodDefaults {
        worker_image: "w".into(),
        resources: config.resources,
        pod,
        ..Default::default()
    };
    let t = template(&all_jobs(&rj, &spec, &d)[0]);
    assert_eq!(
        t["metadata"],
        json!({"labels": names::labels("orders", Stage::Plan)})
    );
    let pod = &t["spec"];
    for absent in [
        "nodeSelector",
        "tolerations",
        "affinity",
        "priorityClassName",
        "imagePullSecrets",
    ] {
        assert!(pod.get(absent).is_none(), "{absent}: {pod}");
    }
    assert_eq!(pod["serviceAccountName"], "own");
    let resources = &pod["containers"][0]["resources"];
    assert_eq!(
        resources,
        &json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}})
    );
    // `resources: {}` configures none; the spec's own resources win over the default.
    let (none, _) = StagePods::parse("resources: {}").expect("config");
    assert_eq!(none.resources, Some(ResourceRequirements::default()));
}

#[test]
fn the_controllers_stage_pods_are_checked_too() {
    for (bad, words) in [
        (
            "env: [{name: REPORTJOB_SPEC, value: x}]",
            "stagePods.env[0].name",
        ),
        ("podLabels: {reporting.dev/stage: x}", "stagePods.podLabels"),
        (
            "volumes: [{name: output, emptyDir: {}}]",
            "stagePods.volumes[0].name",
        ),
        (
            "volumeMounts: [{name: x, mountPath: /reportjob/output}]",
            "mountPath",
        ),
        ("nodeSelectr: {a: b}", "nodeSelectr"),
        ("serviceAccountName: Not_Valid", "serviceAccountName"),
    ] {
        let e = StagePods::parse(bad).expect_err(bad);
        assert!(e.contains(words), "{bad}: {e}");
    }
}
