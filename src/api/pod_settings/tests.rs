//! Refusals of each bounded pod setting, as an attacker would try them.

use super::*;
use crate::api::validate::validate;

/// A valid ReportJob whose `spec.worker` is `worker` (YAML flow mapping).
fn errors_of(worker: &str) -> Vec<FieldError> {
    let rj: crate::api::ReportJob = serde_saphyr::from_str(&format!(
        r#"
apiVersion: reporting.dev/v1alpha1
kind: ReportJob
metadata: {{name: orders, namespace: analytics}}
spec:
  source: {{connectionSecretRef: {{name: db}}, table: orders, keyColumn: id}}
  output: {{destination: {{pvc: {{claimName: reports, path: orders.csv}}}}}}
  worker: {worker}
"#
    ))
    .expect("parses");
    match validate(&rj.spec) {
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    }
}

fn assert_refused(worker: &str, field: &str, words: &str) {
    let errors = errors_of(worker);
    assert!(
        errors
            .iter()
            .any(|e| e.field == field && e.message.contains(words)),
        "{worker}: expected {field} ({words}), got {errors:?}"
    );
}

#[test]
fn every_setting_is_accepted_when_well_formed() {
    let errors = errors_of(
        r#"{nodeSelector: {pool: reports}, tolerations: [{key: pool, operator: Exists}],
            priorityClassName: batch-low, imagePullSecrets: [{name: regcred}],
            podLabels: {team: analytics, example.com/cost-center: "42"},
            podAnnotations: {example.com/note: "any text: here"},
            env: [{name: SSL_CERT_FILE, value: /etc/ca/ca.crt},
                  {name: TOKEN, valueFrom: {secretKeyRef: {name: t, key: k}}}],
            volumes: [{name: ca, configMap: {name: ca-bundle}}],
            volumeMounts: [{name: ca, mountPath: /etc/ca, readOnly: true}],
            securityContext: {runAsUser: 1000, readOnlyRootFilesystem: true}}"#,
    );
    assert_eq!(errors, Vec::new());
}

#[test]
fn engine_env_vars_are_refused() {
    for name in [
        "REPORTJOB_SPEC",
        "REPORTJOB_OUTPUT_DIR",
        "DATABASE_URL",
        "AWS_SECRET_ACCESS_KEY",
        "JOB_COMPLETION_INDEX",
    ] {
        assert_refused(
            &format!("{{env: [{{name: {name}, value: x}}]}}"),
            "spec.worker.env[0].name",
            "engine's own",
        );
    }
    assert_refused(
        "{env: [{name: A, value: x}, {name: A, value: z}]}",
        "spec.worker.env[1].name",
        "listed twice",
    );
    assert_refused(
        "{env: [{name: 'A=B', value: x}]}",
        "spec.worker.env[0].name",
        "not a valid",
    );
}

#[test]
fn keys_for_cluster_components_are_accepted() {
    let spec = "{podAnnotations: {cluster-autoscaler.kubernetes.io/safe-to-evict: 'false', \
                kubectl.kubernetes.io/default-container: reportjob}, \
                podLabels: {sidecar.istio.io/inject: 'false'}}";
    let settings: PodSettingsSpec = serde_saphyr::from_str(spec).unwrap();
    assert!(validate_pod_settings(&settings, "spec.worker", Author::Spec).is_ok());
}

#[test]
fn controller_labels_and_bad_keys_are_refused() {
    for key in [
        "reporting.dev/stage",
        "reporting.dev/reportjob",
        "app.kubernetes.io/managed-by",
        "batch.kubernetes.io/job-name",
        "job-name",
    ] {
        assert_refused(
            &format!("{{podLabels: {{{key}: x}}}}"),
            &format!("spec.worker.podLabels[{key:?}]"),
            "set by the controller",
        );
    }
    assert_refused(
        "{podLabels: {'bad key': x}}",
        "spec.worker.podLabels[\"bad key\"]",
        "not a valid label key",
    );
    assert_refused(
        "{podLabels: {team: 'not valid!'}}",
        "spec.worker.podLabels[\"team\"]",
        "not a valid label value",
    );
    assert_refused(
        "{podAnnotations: {'Bad_/x': z}}",
        "spec.worker.podAnnotations[\"Bad_/x\"]",
        "not a valid annotation key",
    );
    assert_refused(
        "{nodeSelector: {'-x': z}}",
        "spec.worker.nodeSelector[\"-x\"]",
        "not a valid label key",
    );
}

#[test]
fn the_output_volume_and_mount_are_the_controllers() {
    assert_refused(
        "{volumes: [{name: output, emptyDir: {}}]}",
        "spec.worker.volumes[0].name",
        "output volume",
    );
    for path in [
        "/reportjob/output",
        "/reportjob/output/",
        "/reportjob/output/x",
    ] {
        assert_refused(
            &format!(
                "{{volumes: [{{name: ca, emptyDir: {{}}}}], \
                  volumeMounts: [{{name: ca, mountPath: '{path}'}}]}}"
            ),
            "spec.worker.volumeMounts[0].mountPath",
            "output mount",
        );
    }
    assert_refused(
        "{volumeMounts: [{name: output, mountPath: /x}]}",
        "spec.worker.volumeMounts[0].name",
        "output volume",
    );
    assert_refused(
        "{volumes: [{name: ca, emptyDir: {}}], volumeMounts: [{name: ca, mountPath: relative}]}",
        "spec.worker.volumeMounts[0].mountPath",
        "absolute",
    );
    assert_refused(
        "{volumeMounts: [{name: elsewhere, mountPath: /x}]}",
        "spec.worker.volumeMounts[0].name",
        "not one of spec.worker.volumes",
    );
}

#[test]
fn a_spec_may_not_mount_the_node_or_a_claim() {
    assert_refused(
        "{volumes: [{name: root, hostPath: {path: /}}]}",
        "spec.worker.volumes[0]",
        "only configMap",
    );
    assert_refused(
        "{volumes: [{name: other, persistentVolumeClaim: {claimName: x}}]}",
        "spec.worker.volumes[0]",
        "only configMap",
    );
    // The controller's own defaults may (the platform team chose them).
    let volume: Volume =
        serde_json::from_value(serde_json::json!({"name": "cache", "hostPath": {"path": "/x"}}))
            .expect("volume");
    let settings = PodSettingsSpec {
        volumes: vec![volume],
        ..Default::default()
    };
    assert!(validate_pod_settings(&settings, "stagePods", Author::Controller).is_ok());
    assert!(validate_pod_settings(&settings, "spec.worker", Author::Spec).is_err());
}

#[test]
fn security_context_overrides_cannot_loosen_the_hardening() {
    for (sc, field) in [
        ("{privileged: true}", "privileged"),
        (
            "{allowPrivilegeEscalation: true}",
            "allowPrivilegeEscalation",
        ),
        ("{runAsNonRoot: false}", "runAsNonRoot"),
        ("{runAsUser: 0}", "runAsUser"),
        (
            "{capabilities: {add: [NET_ADMIN], drop: [ALL]}}",
            "capabilities.add",
        ),
        ("{capabilities: {drop: [NET_RAW]}}", "capabilities.drop"),
        (
            "{seccompProfile: {type: Unconfined}}",
            "seccompProfile.type",
        ),
    ] {
        let errors = errors_of(&format!("{{securityContext: {sc}}}"));
        let want = format!("spec.worker.securityContext.{field}");
        assert!(
            errors.iter().any(|e| e.field == want),
            "{sc}: expected {want}, got {errors:?}"
        );
    }
}

#[test]
fn names_and_counts_are_bounded() {
    assert_refused(
        "{priorityClassName: Not_A_Name}",
        "spec.worker.priorityClassName",
        "not a valid",
    );
    assert_refused(
        "{imagePullSecrets: [{name: 'UPPER'}]}",
        "spec.worker.imagePullSecrets[0].name",
        "not a valid",
    );
    let many: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("l{i}: v")).collect();
    assert_refused(
        &format!("{{podLabels: {{{}}}}}", many.join(", ")),
        "spec.worker.podLabels",
        "at most 64",
    );
}
