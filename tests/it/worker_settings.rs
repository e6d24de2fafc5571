//! `spec.worker` as an attacker filled it in (a spec author gets a report, nothing more):
//! each setting that would run the author's code in stage pods, give them a token,
//! redirect their traffic, read a Secret into the status or loosen their confinement is
//! refused on the real control plane with `InvalidSpec` naming the field and why, and no Job is created.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use common::free_port;
use common::testbed::{Env, report};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use reportjob::api::Phase;
use serde_json::{Value, json};

/// Each attack: the ReportJob's name, the `spec.worker` fields set, the field the refusal
/// names and words of its reason.
/// An attack: the ReportJob's name, the fields set, the field refused, words of the reason.
type Attack = (
    &'static str,
    Vec<(&'static str, Value)>,
    &'static str,
    &'static str,
);

fn attacks() -> Vec<Attack> {
    let cm_volume = |name: &str| json!([{"name": name, "configMap": {"name": "evil"}}]);
    vec![
        (
            "preload",
            vec![
                (
                    "spec.worker.env",
                    json!([{"name": "LD_PRELOAD", "value": "/opt/evil/evil.so"}]),
                ),
                ("spec.worker.volumes", cm_volume("evil")),
                (
                    "spec.worker.volumeMounts",
                    json!([{"name": "evil", "mountPath": "/opt/evil"}]),
                ),
            ],
            "spec.worker.env[0].name",
            "LD_PRELOAD is not allowed: it changes which code runs",
        ),
        (
            "token",
            vec![
                (
                    "spec.worker.volumes",
                    json!([{"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]),
                ),
                (
                    "spec.worker.volumeMounts",
                    json!([{"name": "tok", "mountPath": "/var/tok"}]),
                ),
            ],
            "spec.worker.volumes[0].projected.sources[0]",
            "serviceAccountToken",
        ),
        (
            "proxy",
            vec![(
                "spec.worker.env",
                json!([{"name": "HTTP_PROXY", "value": "http://attacker.example:3128"}]),
            )],
            "spec.worker.env[0].name",
            "HTTP_PROXY is not allowed",
        ),
        (
            "proxy-lower",
            vec![(
                "spec.worker.env",
                json!([{"name": "https_proxy", "value": "http://169.254.169.254"}]),
            )],
            "spec.worker.env[0].name",
            "https_proxy is not allowed",
        ),
        (
            "pgoptions",
            vec![(
                "spec.worker.env",
                json!([{"name": "PGOPTIONS", "valueFrom": {"secretKeyRef": {"name": "victim", "key": "password"}}}]),
            )],
            "spec.worker.env[0].name",
            "PGOPTIONS is not allowed",
        ),
        (
            "tmpdir",
            vec![(
                "spec.worker.env",
                json!([{"name": "TMPDIR", "valueFrom": {"secretKeyRef": {"name": "victim", "key": "password"}}}]),
            )],
            "spec.worker.env[0].name",
            "TMPDIR is not allowed",
        ),
        (
            "writable-root",
            vec![(
                "spec.worker.securityContext",
                json!({"readOnlyRootFilesystem": false}),
            )],
            "spec.worker.securityContext.readOnlyRootFilesystem",
            "must not be false",
        ),
        (
            "uid-1",
            vec![("spec.worker.securityContext", json!({"runAsUser": 1}))],
            "spec.worker.securityContext.runAsUser",
            "platform team",
        ),
        (
            "selinux",
            vec![(
                "spec.worker.securityContext",
                json!({"seLinuxOptions": {"type": "spc_t"}}),
            )],
            "spec.worker.securityContext.seLinuxOptions",
            "platform team",
        ),
        (
            "windows",
            vec![(
                "spec.worker.securityContext",
                json!({"windowsOptions": {"runAsUserName": "admin"}}),
            )],
            "spec.worker.securityContext.windowsOptions",
            "platform team",
        ),
        (
            "apparmor",
            vec![(
                "spec.worker.podAnnotations",
                json!({"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}),
            )],
            "spec.worker.podAnnotations[\"container.apparmor.security.beta.kubernetes.io/main\"]",
            "AppArmor, seccomp and SELinux",
        ),
        (
            "entrypoint",
            vec![
                ("spec.worker.volumes", cm_volume("bin")),
                (
                    "spec.worker.volumeMounts",
                    json!([{"name": "bin", "mountPath": "/usr/local/bin"}]),
                ),
            ],
            "spec.worker.volumeMounts[0].mountPath",
            "beneath /usr",
        ),
        (
            "secret-tmp",
            vec![
                (
                    "spec.worker.volumes",
                    json!([{"name": "s", "secret": {"secretName": "victim"}}]),
                ),
                (
                    "spec.worker.volumeMounts",
                    json!([{"name": "s", "mountPath": "/tmp"}]),
                ),
            ],
            "spec.worker.volumeMounts[0].mountPath",
            "beneath /tmp",
        ),
        (
            "twin-volume",
            vec![(
                "spec.worker.volumes",
                json!([{"name": "assembly-tmp", "emptyDir": {}}]),
            )],
            "spec.worker.volumes[0].name",
            "the controller adds",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_worker_settings_are_refused_and_create_nothing() {
    let mut env = Env::start().await;
    let ns = env.tenant("workerattacks").await;
    let addr = format!("127.0.0.1:{}", free_port());
    env.start_controller(&["--leader-election=false", "--metrics-addr", &addr]);
    let attacks = attacks();
    for (name, fields, _, _) in &attacks {
        let mut spec = report(name, "public.t", &format!("{name}.csv"));
        for (path, value) in fields {
            spec = spec.set(path, value.clone());
        }
        env.apply(ns, &spec.build_yaml()).await;
    }
    let mut failures = Vec::new();
    for (name, _, field, words) in &attacks {
        let failed = env
            .wait_phase(ns, name, Phase::Failed, common::PATIENCE)
            .await;
        let status = failed.status.unwrap();
        let condition = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Failed" && c.status == "True")
            .unwrap();
        let want = format!("{field}: ");
        if condition.reason != "InvalidSpec"
            || !condition.message.contains(&want)
            || !condition.message.contains(words)
        {
            failures.push(format!(
                "{name}: want InvalidSpec naming {field} ({words}), got {}: {}",
                condition.reason, condition.message
            ));
        }
        // Nothing that a secret could reach: the message holds no Secret's value.
        assert!(!condition.message.contains("S3cr3t"), "{name}");
    }
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    let created = jobs.list(&ListParams::default()).await.unwrap().items;
    assert!(
        created.is_empty(),
        "no Job for a refused spec: {:?}",
        created
            .iter()
            .map(|j| j.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
