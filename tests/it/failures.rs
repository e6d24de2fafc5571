//! Failures: a backend killed mid-stream is retried and the report stays exact; bad
//! tables, columns and specs fail fast naming the field; an interrupted run resumes
//! without exporting finished chunks again.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use common::spec::SpecBuilder;
use common::{TestDb, Workdir, database_url, run_json, stderr, stdout};

/// Exporting `table` by `key` to `r.csv` on the PVC `r`.
fn to_r_csv(table: &str, key: &str) -> SpecBuilder {
    SpecBuilder::table(table).key(key).pvc("r", "r.csv")
}

#[tokio::test]
async fn chunk_whose_backend_is_killed_mid_stream_is_retried_exactly() {
    let mut db = TestDb::new("killed_backend").await;
    db.numbers(2000).await;
    let work = Workdir::new();
    // A filter that sleeps 2 ms per row makes the chunk's COPY stream for ~4 s; it is
    // killed once it has sent 300 rows, long before its end.
    let spec = work.spec(
        "spec.yaml",
        &to_r_csv(&db.table("src"), "id")
            .filter(&common::slow_filter(&db.schema, 0.002))
            .chunk_size(1_000_000)
            .parallelism(1)
            .build_yaml(),
    );
    let killer = common::terminate_copy_backend(&db.schema, 300);
    let spec_path = spec.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let o = work.reportjob(&["run", "-f", &spec_path, "--json"]);
        (o, work)
    })
    .await
    .unwrap();
    let (out, work) = out;
    assert!(
        killer.await.unwrap(),
        "the test killed the chunk's backend mid-stream"
    );
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    assert!(
        stderr(&out).contains("retrying"),
        "the chunk was retried: {}",
        stderr(&out)
    );
    db.assert_report_matches(&work.output_dir().join("r.csv"), &db.all("src"), "", false)
        .await;
    assert_eq!(run_json(&out)["rows"], 2000);
}

fn assert_fails_naming(out: &std::process::Output, work: &Workdir, needles: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(3),
        "permanent failure exit code; stderr: {}",
        stderr(out)
    );
    let err = stderr(out);
    for needle in needles {
        assert!(
            err.contains(needle),
            "stderr should mention {needle:?}: {err}"
        );
    }
    assert!(
        !work.output_dir().join("r.csv").exists(),
        "no report published"
    );
}

#[tokio::test]
async fn missing_table_fails_fast_naming_it() {
    let db = TestDb::new("missing_table").await;
    let work = Workdir::new();
    let spec = work.spec("s.yaml", &to_r_csv(&db.table("nope"), "id").build_yaml());
    let out = work.reportjob(&["run", "-f", spec.to_str().unwrap()]);
    assert_fails_naming(
        &out,
        &work,
        &["spec.source.table", "nope", "does not exist"],
    );
}

#[tokio::test]
async fn run_json_prints_one_shape_for_a_refused_spec_a_failure_and_a_success() {
    let mut db = TestDb::new("json_shape").await;
    db.numbers(10).await;
    let work = Workdir::new();
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let refused = work.spec(
        "refused.yaml",
        &to_r_csv(&db.table("src"), "id\"; drop").build_yaml(),
    );
    let out = work.reportjob(&["run", "-f", refused.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let refused = run_json(&out);
    assert_eq!(refused["result"], "refused");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("spec.source.keyColumn"),
        "{refused}"
    );
    let missing = work.spec(
        "missing.yaml",
        &to_r_csv(&db.table("nope"), "id").build_yaml(),
    );
    let out = work.reportjob(&["run", "-f", missing.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let failed = run_json(&out);
    assert_eq!(failed["result"], "failed");
    assert_eq!(failed["permanent"], true);
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{failed}"
    );
    let good = work.spec("good.yaml", &to_r_csv(&db.table("src"), "id").build_yaml());
    // A dry run plans and exports nothing.
    let out = work.reportjob(&["run", "-f", good.to_str().unwrap(), "--dry-run", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dry = run_json(&out);
    assert_eq!(dry["result"], "dry_run");
    assert!(dry["chunks"]["total"].as_i64().unwrap() >= 1, "{dry}");
    assert_eq!(keys(&dry), keys(&refused));
    let out = work.reportjob(&["run", "-f", good.to_str().unwrap(), "--dry-run"]);
    assert!(
        stdout(&out).contains("nothing was exported"),
        "{}",
        stdout(&out)
    );
    assert!(
        !work.output_dir().join("r.csv").exists()
            && !work.output_dir().join("r.csv.parts").exists(),
        "a dry run writes nothing"
    );
    let out = work.reportjob(&["run", "-f", good.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let succeeded = run_json(&out);
    assert_eq!(succeeded["result"], "succeeded");
    assert_eq!(succeeded["rows"], 10);
    assert_eq!(keys(&refused), keys(&succeeded));
    assert_eq!(keys(&failed), keys(&succeeded));
    assert!(keys(&succeeded).contains(&"url_expires_at".to_string()));
}

#[tokio::test]
async fn missing_columns_fail_fast_naming_them() {
    let mut db = TestDb::new("missing_column").await;
    db.numbers(10).await;
    let work = Workdir::new();
    let spec = work.spec(
        "s.yaml",
        &to_r_csv(&db.table("src"), "id")
            .columns(&["id", "lable"])
            .build_yaml(),
    );
    let out = work.reportjob(&["run", "-f", spec.to_str().unwrap()]);
    assert_fails_naming(
        &out,
        &work,
        &["spec.source.columns", "\"lable\"", "id, label"],
    );

    let spec = work.spec("k.yaml", &to_r_csv(&db.table("src"), "idd").build_yaml());
    let out = work.reportjob(&["run", "-f", spec.to_str().unwrap()]);
    assert_fails_naming(&out, &work, &["spec.source.keyColumn", "\"idd\""]);

    let spec = work.spec(
        "t.yaml",
        &to_r_csv(&db.table("src"), "label")
            .filter("nosuch > 1")
            .build_yaml(),
    );
    let out = work.reportjob(&["run", "-f", spec.to_str().unwrap()]);
    assert_fails_naming(&out, &work, &["spec.source.where", "nosuch"]);
}

#[tokio::test]
async fn query_errors_fail_fast_with_sqlstate() {
    let mut db = TestDb::new("query_errors").await;
    db.numbers(10).await;
    let work = Workdir::new();
    let spec = |query: &str, key: &str| {
        SpecBuilder::query(query)
            .name("q")
            .key(key)
            .pvc("r", "r.csv")
            .build_yaml()
    };
    let path = work.spec(
        "a.yaml",
        &spec(&format!("SELECT id, nope FROM {}", db.table("src")), "id"),
    );
    let out = work.reportjob(&["run", "-f", path.to_str().unwrap()]);
    assert_fails_naming(&out, &work, &["spec.source.query", "nope", "42703"]);
    let path = work.spec(
        "b.yaml",
        &spec(&format!("SELECT label FROM {}", db.table("src")), "id"),
    );
    let out = work.reportjob(&["run", "-f", path.to_str().unwrap()]);
    assert_fails_naming(
        &out,
        &work,
        &[
            "spec.source.keyColumn",
            "not in the query's output",
            "label",
        ],
    );
    let path = work.spec(
        "c.yaml",
        &spec(
            &format!(
                "SELECT id FROM {}; DELETE FROM {}",
                db.table("src"),
                db.table("src")
            ),
            "id",
        ),
    );
    let out = work.reportjob(&["run", "-f", path.to_str().unwrap()]);
    assert_fails_naming(
        &out,
        &work,
        &["spec.source.query", "more than one statement"],
    );
    assert_eq!(
        db.checksum(&format!("SELECT * FROM {}", db.table("src")))
            .await
            .0,
        10,
        "nothing deleted"
    );
}

#[tokio::test]
async fn bad_specs_get_specific_errors_and_no_output() {
    let work = Workdir::new();
    let base = to_r_csv("public.orders", "id").chunk_size(10);
    let cases: Vec<(String, &[&str])> = vec![
        (
            base.clone().unset("spec.source.keyColumn").build_yaml(),
            &["spec.source", "keyColumn"],
        ),
        (
            base.clone()
                .set("spec.source.query", "select 1")
                .build_yaml(),
            &["spec.source.query", "exactly one"],
        ),
        (
            base.clone()
                .set("spec.source.table", "orders\"; DROP TABLE x; --")
                .build_yaml(),
            &["spec.source.table"],
        ),
        (
            base.clone()
                .set("spec.source.table", "orders;drop")
                .build_yaml(),
            &["spec.source.table", "';'"],
        ),
        (
            base.clone().key("id\"").build_yaml(),
            &["spec.source.keyColumn"],
        ),
        (
            base.clone().chunk_size(-5).build_yaml(),
            &["spec.chunking.chunkSize", "-5"],
        ),
        (
            base.clone().parallelism(0).build_yaml(),
            &["spec.chunking.parallelism"],
        ),
        (
            base.clone().set("spec.chunking.chunkSise", 3).build_yaml(),
            &["spec.chunking.chunkSise", "unknown field"],
        ),
        (
            base.clone().pvc("r", "/etc/r.csv").build_yaml(),
            &["spec.output.destination.pvc.path"],
        ),
        (base.clone().set("kind", "Job").build_yaml(), &["kind"]),
        // Raw text: the point is YAML that does not parse.
        ("spec: [".to_string(), &["not valid YAML"]),
    ];
    for (i, (yaml, needles)) in cases.iter().enumerate() {
        let spec = work.spec(&format!("bad{i}.yaml"), yaml);
        let out = work.reportjob(&["run", "-f", spec.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "case {i}: {}\n{yaml}",
            stderr(&out)
        );
        for needle in *needles {
            assert!(
                stderr(&out).contains(needle),
                "case {i}: stderr should mention {needle:?}: {}",
                stderr(&out)
            );
        }
        assert!(!work.output_dir().exists(), "case {i}: nothing written");
    }
    let out = work.reportjob(&["run", "-f", "/nonexistent/spec.yaml"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("/nonexistent/spec.yaml"));
}

#[tokio::test]
async fn rerun_resumes_without_exporting_finished_chunks() {
    let mut db = TestDb::new("resume").await;
    db.numbers(3000).await;
    let work = Workdir::new();
    let spec = work.spec(
        "s.yaml",
        // Keeping exported parts across runs is what PerChunk does (a new run's snapshot
        // cannot be an old one's).
        &to_r_csv(&db.table("src"), "id")
            .chunk_size(500)
            .parallelism(2)
            .set("spec.source.consistency", "PerChunk")
            .build_yaml(),
    );
    let spec = spec.to_str().unwrap();
    // Stage the plan and two chunks as separate stage commands, as pods would.
    let planned = work.reportjob(&["plan", "-f", spec, "--write"]);
    assert!(planned.status.success(), "{}", stderr(&planned));
    let summary = stdout(&planned);
    assert!(summary.starts_with("chunks=6 digest=sha256:"), "{summary}");
    for index in ["0", "3"] {
        let out = work.reportjob(&["worker", "-f", spec, "--index", index]);
        assert!(out.status.success(), "{}", stderr(&out));
        let line = stdout(&out);
        assert!(line.starts_with(&format!("chunk={index} rows=")), "{line}");
        let crc = line.split(" crc32=").nth(1).unwrap_or_default().trim();
        assert!(
            crc.len() == 8 && crc.chars().all(|c| c.is_ascii_hexdigit()),
            "the part's CRC-32: {line}"
        );
    }

    // A worker with the wrong plan digest refuses to export.
    let wrong = work.reportjob(&[
        "worker",
        "-f",
        spec,
        "--index",
        "1",
        "--plan-digest",
        "sha256:0000",
    ]);
    assert_eq!(wrong.status.code(), Some(3), "{}", stderr(&wrong));
    assert!(stderr(&wrong).contains("expected sha256:0000"));

    // Assembly refuses while chunks are missing, naming them.
    let early = work.reportjob(&["assemble", "-f", spec]);
    assert_eq!(early.status.code(), Some(3));
    assert!(
        stderr(&early).contains("chunks 1-2,4-5 have no exported part"),
        "{}",
        stderr(&early)
    );
    assert!(!work.output_dir().join("r.csv").exists());

    let out = work.reportjob(&["run", "-f", spec, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result = run_json(&out);
    assert_eq!(result["chunks"]["resumed"], 2);
    assert!(
        stderr(&out).contains("2 chunks were already exported by an earlier run"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("resuming run"), "{}", stderr(&out));
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(work.output_dir().join("r.csv.manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["parts"].as_array().unwrap().len(), 6);
    db.assert_report_matches(&work.output_dir().join("r.csv"), &db.all("src"), "", false)
        .await;
}

#[tokio::test]
async fn killed_run_resumes_with_its_staged_plan() {
    let mut db = TestDb::new("killed_run").await;
    db.numbers(1600).await;
    let work = Workdir::new();
    // 8 chunks of 200 rows, one at a time; the export waits at row 1000 (the sixth chunk)
    // while the test holds the gate, so the run is far from its end when it is killed.
    let gate = i64::from(rand::random::<u32>());
    db.hold_gate(gate).await;
    let spec = work.spec(
        "s.yaml",
        &to_r_csv(&db.table("src"), "id")
            .filter(&common::gate_filter(&db.schema, "id", 1000, gate))
            .chunk_size(200)
            .parallelism(1)
            .set("spec.source.consistency", "PerChunk")
            .build_yaml(),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_reportjob"))
        .args(["run", "-f", spec.to_str().unwrap(), "--output-dir"])
        .arg(work.output_dir())
        .env("DATABASE_URL", database_url())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let parts = work.output_dir().join("r.csv.parts");
    let done = common::eventually_blocking("three chunks exported", || {
        let manifests = std::fs::read_dir(&parts)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|run| {
                std::fs::read_dir(run.path())
                    .unwrap()
                    .filter(|e| {
                        e.as_ref()
                            .unwrap()
                            .file_name()
                            .to_string_lossy()
                            .ends_with(".json")
                    })
                    .count()
            })
            .unwrap_or(0);
        // plan.json plus at least three part manifests.
        (manifests >= 4).then(|| manifests - 1)
    });
    child.kill().unwrap();
    let _ = child.wait();
    db.release_gate(gate).await;
    assert!(
        !work.output_dir().join("r.csv").exists(),
        "killed run published nothing"
    );

    let out = work.reportjob(&["run", "-f", spec.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result = run_json(&out);
    assert!(
        result["chunks"]["resumed"].as_u64().unwrap() >= done as u64,
        "{result} vs {done}"
    );
    assert_eq!(result["rows"], 1600);
    db.assert_report_matches(&work.output_dir().join("r.csv"), &db.all("src"), "", false)
        .await;
}

#[tokio::test]
async fn permanent_error_in_a_chunk_fails_the_run_and_publishes_nothing() {
    let mut db = TestDb::new("chunk_error").await;
    db.numbers(3000).await;
    let work = Workdir::new();
    // Planning reads only the key; exporting the chunk holding id 1500 divides by zero.
    let yaml = SpecBuilder::query(&format!(
        "SELECT id, 1 / (id - 1500) AS x FROM {}",
        db.table("src")
    ))
    .name("q")
    .key("id")
    .chunk_size(500)
    .parallelism(2)
    .pvc("r", "r.csv")
    .build_yaml();
    let spec = work.spec("s.yaml", &yaml);
    let out = work.reportjob(&["run", "-f", spec.to_str().unwrap(), "--json"]);
    assert_fails_naming(
        &out,
        &work,
        &["SQLSTATE 22012", "division by zero", "chunk 3 [1500, 2000)"],
    );
    assert!(
        !stderr(&out).contains("retrying"),
        "permanent errors are not retried: {}",
        stderr(&out)
    );
    let result = run_json(&out);
    assert_eq!(result["result"], "failed");
    assert_eq!(result["sqlstate"], "22012");
    assert_eq!(result["permanent"], true);
    let leftovers: Vec<String> = std::fs::read_dir(work.output_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        leftovers,
        ["r.csv.parts"],
        "only the staging directory remains: {leftovers:?}"
    );
}

#[tokio::test]
async fn damaged_part_is_refused_by_assembly_and_reexported_on_resume() {
    let mut db = TestDb::new("damaged_part").await;
    db.numbers(2000).await;
    let work = Workdir::new();
    let spec = work.spec(
        "s.yaml",
        &to_r_csv(&db.table("src"), "id")
            .chunk_size(500)
            .set("spec.source.consistency", "PerChunk")
            .build_yaml(),
    );
    let spec = spec.to_str().unwrap();
    assert!(
        work.reportjob(&["plan", "-f", spec, "--write"])
            .status
            .success()
    );
    for index in 0..4 {
        let out = work.reportjob(&["worker", "-f", spec, "--index", &index.to_string()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Damage part 2 without changing its size, as a crash could.
    let run_dir = std::fs::read_dir(work.output_dir().join("r.csv.parts"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let part = run_dir.join("part-00002.csv");
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[10] ^= 0x20;
    std::fs::write(&part, &bytes).unwrap();

    let out = work.reportjob(&["assemble", "-f", spec]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    for needle in ["part-00002.csv is damaged", "damaged_chunks=2:"] {
        assert!(stderr(&out).contains(needle), "{needle}: {}", stderr(&out));
    }
    assert!(
        !work.output_dir().join("r.csv").exists(),
        "no report published"
    );
    assert!(
        !run_dir.join("part-00002.csv").exists(),
        "the damaged part is removed"
    );
    assert!(
        !run_dir.join("part-00002.json").exists(),
        "with its manifest"
    );
    let leftovers: Vec<_> = std::fs::read_dir(work.output_dir()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary report left behind");

    let out = work.reportjob(&["run", "-f", spec, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        run_json(&out)["chunks"]["resumed"],
        3,
        "the damaged part is exported again"
    );
    db.assert_report_matches(&work.output_dir().join("r.csv"), &db.all("src"), "", false)
        .await;
}
