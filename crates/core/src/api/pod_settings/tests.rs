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
            env: [{name: REPORT_LABEL, value: daily}, {name: RUST_LOG, value: debug},
                  {name: TOKEN, valueFrom: {secretKeyRef: {name: t, key: k}}}],
            volumes: [{name: ca, configMap: {name: ca-bundle}},
                      {name: both, projected: {sources: [{configMap: {name: a}}, {secret: {name: b}}]}}],
            volumeMounts: [{name: ca, mountPath: /config/ca, readOnly: true},
                           {name: both, mountPath: /config/both}],
            securityContext: {readOnlyRootFilesystem: true, runAsNonRoot: true,
                              allowPrivilegeEscalation: false, capabilities: {drop: [ALL]},
                              seccompProfile: {type: RuntimeDefault}}}"#,
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
        ("{runAsUser: 1}", "runAsUser"),
        ("{runAsGroup: 1000}", "runAsGroup"),
        ("{readOnlyRootFilesystem: false}", "readOnlyRootFilesystem"),
        ("{seLinuxOptions: {type: spc_t}}", "seLinuxOptions"),
        ("{windowsOptions: {hostProcess: false}}", "windowsOptions"),
        (
            "{seccompProfile: {type: Localhost, localhostProfile: x.json}}",
            "seccompProfile.type",
        ),
        (
            "{appArmorProfile: {type: Unconfined}}",
            "appArmorProfile.type",
        ),
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

#[test]
fn env_names_that_change_code_traffic_or_the_database_are_refused() {
    for (name, why) in [
        ("LD_PRELOAD", "changes which code runs"),
        ("LD_LIBRARY_PATH", "changes which code runs"),
        ("GLIBC_TUNABLES", "changes which code runs"),
        ("MALLOC_CONF", "changes which code runs"),
        ("RUST_BACKTRACE", "changes which code runs"),
        ("OPENSSL_CONF", "changes which code runs"),
        ("HTTP_PROXY", "where stage pods connect"),
        ("https_proxy", "where stage pods connect"),
        ("All_Proxy", "where stage pods connect"),
        ("no_proxy", "where stage pods connect"),
        ("SSL_CERT_FILE", "whom they trust"),
        ("SSL_CERT_DIR", "whom they trust"),
        ("RES_OPTIONS", "where stage pods connect"),
        ("HOSTALIASES", "where stage pods connect"),
        ("LOCALDOMAIN", "where stage pods connect"),
        ("PGOPTIONS", "connect to the database"),
        ("PGHOST", "connect to the database"),
        ("PGSSLMODE", "connect to the database"),
        ("TMPDIR", "temporary files"),
        ("REPORTJOB_SNAPSHOT_GENERATION", "engine's own"),
    ] {
        let errors = errors_of(&format!("{{env: [{{name: {name}, value: x}}]}}"));
        let e = errors
            .iter()
            .find(|e| e.field == "spec.worker.env[0].name")
            .unwrap_or_else(|| panic!("{name}: {errors:?}"));
        assert!(
            e.message.starts_with(&format!("{name} is not allowed: ")) && e.message.contains(why),
            "{name}: {e}"
        );
    }
    // The message says whose setting it is.
    let errors = errors_of("{env: [{name: LD_PRELOAD, value: /opt/evil/evil.so}]}");
    assert_eq!(
        errors[0].to_string(),
        "spec.worker.env[0].name: LD_PRELOAD is not allowed: it changes which code runs in \
         stage pods (the platform team sets these in the chart: stagePods.env)"
    );
    // Whatever the value's source: a Secret the author can only name is refused too.
    assert_refused(
        "{env: [{name: PGOPTIONS, valueFrom: {secretKeyRef: {name: victim, key: password}}}]}",
        "spec.worker.env[0].name",
        "PGOPTIONS is not allowed",
    );
    assert_refused(
        "{env: [{name: TMPDIR, valueFrom: {secretKeyRef: {name: victim, key: password}}}]}",
        "spec.worker.env[0].name",
        "TMPDIR is not allowed",
    );
    // RUST_LOG and ordinary names pass.
    assert_eq!(
        errors_of("{env: [{name: RUST_LOG, value: debug}]}"),
        Vec::new()
    );
    assert_eq!(
        errors_of("{env: [{name: PAGE_TITLE, value: x}]}"),
        Vec::new()
    );
    // The platform team may set them for every stage pod.
    let platform: PodSettingsSpec =
        serde_saphyr::from_str("{env: [{name: HTTPS_PROXY, value: 'http://proxy:3128'}]}")
            .expect("parses");
    assert!(validate_pod_settings(&platform, "stagePods", Author::Controller).is_ok());
    assert!(validate_pod_settings(&platform, "spec.worker", Author::Spec).is_err());
}

#[test]
fn the_refused_env_list_is_one_table() {
    for (pattern, why) in REFUSED_ENV {
        let example = pattern.replace('*', "X");
        assert_eq!(env_refusal(&example), Some(*why), "{pattern}");
    }
    assert_eq!(env_refusal("RUST_LOG"), None);
    assert_eq!(env_refusal("rust_log"), None);
    assert_eq!(env_refusal("REPORT_NAME"), None);
}

#[test]
fn token_and_host_volumes_are_refused() {
    assert_refused(
        "{volumes: [{name: tok, projected: {sources: [{serviceAccountToken: {path: token}}]}}]}",
        "spec.worker.volumes[0].projected.sources[0]",
        "serviceAccountToken",
    );
    assert_refused(
        "{volumes: [{name: tok, projected: {sources: [{configMap: {name: a}}, \
          {clusterTrustBundle: {path: b, signerName: x/y}}]}}]}",
        "spec.worker.volumes[0].projected.sources[1]",
        "only configMap, secret and downwardAPI",
    );
    for source in [
        "hostPath: {path: /var/run/docker.sock}",
        "nfs: {server: nfs.example, path: /}",
        "csi: {driver: x}",
        "ephemeral: {volumeClaimTemplate: {spec: {}}}",
        "image: {reference: evil}",
        "iscsi: {targetPortal: t, iqn: i, lun: 0}",
    ] {
        assert_refused(
            &format!("{{volumes: [{{name: v, {source}}}]}}"),
            "spec.worker.volumes[0]",
            "only configMap",
        );
    }
}

#[test]
fn mounts_over_system_paths_or_the_pods_own_volumes_are_refused() {
    for path in [
        "/",
        "/usr/local/bin",
        "/usr",
        "/bin",
        "/sbin",
        "/lib",
        "/lib64/x",
        "/etc",
        "/etc/ssl/certs",
        "/proc",
        "/sys/fs",
        "/dev/termination-log",
        "/dev",
        "/tmp",
        "/tmp/x",
        "//usr/./local/bin",
        "/var/run/secrets/kubernetes.io/serviceaccount",
        "/reportjob",
    ] {
        let errors = errors_of(&format!(
            "{{volumes: [{{name: cm, configMap: {{name: c}}}}], \
              volumeMounts: [{{name: cm, mountPath: '{path}'}}]}}"
        ));
        assert!(
            errors
                .iter()
                .any(|e| e.field == "spec.worker.volumeMounts[0].mountPath"),
            "{path}: {errors:?}"
        );
    }
    // A Secret over /tmp, as the attacker mounted it.
    assert_refused(
        "{volumes: [{name: s, secret: {secretName: victim}}], \
          volumeMounts: [{name: s, mountPath: /tmp}]}",
        "spec.worker.volumeMounts[0].mountPath",
        "beneath /tmp",
    );
    // The pod's own volumes by name: a second `assembly-tmp` gave a Job two of that name.
    assert_refused(
        "{volumes: [{name: assembly-tmp, emptyDir: {}}]}",
        "spec.worker.volumes[0].name",
        "the controller adds",
    );
    assert_refused(
        "{volumeMounts: [{name: assembly-tmp, mountPath: /data}]}",
        "spec.worker.volumeMounts[0].name",
        "the controller adds",
    );
    // Elsewhere is fine.
    assert_eq!(
        errors_of(
            "{volumes: [{name: cm, configMap: {name: c}}], \
              volumeMounts: [{name: cm, mountPath: /config/ca}, {name: cm, mountPath: /usrdata, subPath: x}]}"
        ),
        Vec::new()
    );
}

#[test]
fn security_annotations_are_refused() {
    for key in [
        "container.apparmor.security.beta.kubernetes.io/main",
        "seccomp.security.alpha.kubernetes.io/pod",
        "container.seccomp.security.alpha.kubernetes.io/main",
        "example.selinux.io/label",
    ] {
        assert_refused(
            &format!("{{podAnnotations: {{'{key}': unconfined}}}}"),
            &format!("spec.worker.podAnnotations[{key:?}]"),
            "AppArmor, seccomp and SELinux",
        );
    }
}
