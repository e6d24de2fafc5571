//! Specs a real cluster or the controller cannot afford, refused where they enter: a
//! `query` beyond 64 KiB (the 220 KB query of 20,000 ANDed terms that took the controller
//! out of memory) by the CRD's `maxLength` at admission and by `reportjob run`; names whose
//! Jobs' names and labels would not fit in 63 characters by the CRDs' root rules; control
//! characters in printed fields by `reportjob run`. RunSlot is the real API server of the
//! test binary's cluster (`common::testbed`, the CRDs as generated, which are the committed
//! files), in a namespace of the test's own.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use serde_json::{Value, json};

use crate::common::spec::SpecBuilder;
use crate::common::testbed::Env;
use crate::common::{Workdir, stderr};

/// The attacker's query: 20,000 ANDed terms, about 220 KB.
fn hostile_query() -> String {
    let terms: Vec<String> = (0..20_000).map(|i| format!("c{} = {i}", i % 10)).collect();
    format!("SELECT id FROM t WHERE {}", terms.join(" AND "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_refuses_an_oversized_query_and_names_too_long_for_the_jobs() {
    let mut env = Env::start().await;
    let ns = env.namespace("spec-limits").await;
    let kc = env.kubeconfig_in(ns);
    let dir = env.dir.path();
    let kubectl = |args: Vec<String>| {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kc)
            .args(&args)
            .output()
            .expect("kubectl must be on PATH");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let apply = |name: &str, doc: Value| {
        let f = dir.join(format!("{}.json", name.len()));
        std::fs::write(&f, doc.to_string()).unwrap();
        kubectl(vec![
            "apply".into(),
            "--server-side".into(),
            "-f".into(),
            f.display().to_string(),
        ])
    };
    let rj = |name: &str, source: Value| {
        json!({"apiVersion": "reporting.dev/v1alpha1", "kind": "ReportJob",
               "metadata": {"name": name},
               "spec": {"source": source,
                        "output": {"destination": {"pvc": {"claimName": "r", "path": "o.csv"}}}}})
    };
    let source = |extra: Value| {
        let mut s = json!({"connectionSecretRef": {"name": "db"}, "keyColumn": "id"});
        s.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s
    };

    // The 220 KB query: refused by the schema before anything stores or reconciles it.
    let (ok, out) = apply("big", rj("big", source(json!({"query": hostile_query()}))));
    assert!(!ok, "{out}");
    assert!(
        out.contains("spec.source.query: Too long: may not be more than 65536 bytes"),
        "{out}"
    );
    // A where of 64 KiB and one byte likewise; 64 KiB itself is admitted.
    let (ok, out) = apply(
        "big-where",
        rj(
            "big-where",
            source(json!({"table": "t", "where": "x".repeat(65_537)})),
        ),
    );
    assert!(
        !ok && out.contains("spec.source.where: Too long: may not be more than 65536 bytes"),
        "{out}"
    );
    let (ok, out) = apply(
        "max-where",
        rj(
            "max-where",
            source(json!({"table": "t", "where": "x".repeat(65_536)})),
        ),
    );
    assert!(ok, "{out}");

    // Names: 50 characters fit every Job and pod name; 51 (and the issue's 60) do not.
    let fifty = "r".repeat(50);
    let (ok, out) = apply(&fifty, rj(&fifty, source(json!({"table": "t"}))));
    assert!(ok, "{out}");
    for len in [51, 60] {
        let name = "r".repeat(len);
        let (ok, out) = apply(&name, rj(&name, source(json!({"table": "t"}))));
        assert!(
            !ok && out.contains(&format!(
                "is invalid: <nil>: Invalid value: {}",
                reportjob::api::schema::NAME_TOO_LONG.as_str()
            )),
            "{len}: {out}"
        );
    }
    // A schedule's runs are `<schedule>-<minutes>`: 40 characters at most.
    let schedule = |name: &str| {
        json!({"apiVersion": "reporting.dev/v1alpha1", "kind": "ReportSchedule",
               "metadata": {"name": name},
               "spec": {"schedule": "@daily",
                        "reportJobTemplate": {"spec": {"source": source(json!({"table": "t"})),
                            "output": {"destination": {"pvc": {"claimName": "r", "path": "o.csv"}}}}}}})
    };
    let forty = "s".repeat(40);
    let (ok, out) = apply(&format!("{forty}-x"), schedule(&forty));
    assert!(ok, "{out}");
    let long = "s".repeat(41);
    let (ok, out) = apply(&format!("{long}-x"), schedule(&long));
    assert!(
        !ok && out.contains(&format!(
            "is invalid: <nil>: Invalid value: {}",
            reportjob::schedule::crd::NAME_TOO_LONG.as_str()
        )),
        "{out}"
    );
}

#[test]
fn run_refuses_the_oversized_query_and_hostile_names_before_connecting() {
    let work = Workdir::new();
    let cases = [
        (
            "big",
            SpecBuilder::query(&hostile_query())
                .key("id")
                .pvc("r", "r.csv"),
            "spec.source.query: is ",
            "at most 65536 bytes (64 KiB)",
        ),
        (
            "long-name",
            SpecBuilder::table("t")
                .name(&"r".repeat(60))
                .key("id")
                .pvc("r", "r.csv"),
            "metadata.name: is 60 characters long",
            "at most 50",
        ),
        (
            "newline-path",
            SpecBuilder::table("t")
                .key("id")
                .pvc("r", "r.csv\nevil   Succeeded"),
            "spec.output.destination.pvc.path",
            "control character U+000A",
        ),
        (
            "esc-path",
            SpecBuilder::table("t")
                .key("id")
                .pvc("r", "r\u{1b}[31m.csv"),
            "spec.output.destination.pvc.path",
            "control character U+001B",
        ),
    ];
    for (what, spec, field, words) in cases {
        let file = work.spec(&format!("{what}.yaml"), &spec.build_yaml());
        // Nothing listens here: a refusal that tried to connect would say so instead.
        let out = work.reportjob_with(
            &["run", "-f", file.to_str().unwrap()],
            &[("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")],
        );
        let err = stderr(&out);
        assert!(!out.status.success(), "{what}: ran");
        assert!(
            err.contains(field) && err.contains(words),
            "{what}: want {field} / {words}, got {err}"
        );
        assert!(
            !err.contains('\u{1b}'),
            "{what}: the refusal printed an ESC"
        );
    }
}
