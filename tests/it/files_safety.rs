//! Files and failures: run ids are refused wherever they enter, a symlink planted in the
//! volume never redirects anything outside the output directory, a crashed assembly leaves
//! nothing the next run does not remove, assembling again after publishing changes nothing,
//! damaged parts are removed and exactly their chunks exported again, and connect errors
//! name their root cause without the password.
// tests fail loudly on unexpected errors

use crate::common;
use crate::common::spec::SpecBuilder;

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::{TestDb, Workdir, database_url, run_json, stderr, stdout};

/// A `rows`-row `src` table in a schema of its own, a work directory, and the path of a spec
/// exporting it in chunks of `chunk_size` to `r.csv` there.
async fn numbers_to_r_csv(name: &str, rows: u32, chunk_size: i64) -> (TestDb, Workdir, String) {
    let mut db = TestDb::new(name).await;
    db.numbers(rows).await;
    let work = Workdir::new();
    let spec = work.spec(
        "s.yaml",
        &SpecBuilder::table(&db.table("src"))
            .key("id")
            .chunk_size(chunk_size)
            // Parts staged by separate stage commands are resumed only without one snapshot.
            .set("spec.source.consistency", "PerChunk")
            .pvc("r", "r.csv")
            .build_yaml(),
    );
    let spec = spec.to_str().expect("a UTF-8 path").to_string();
    (db, work, spec)
}

/// Every file under `dir` (following nothing) with its content.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_symlink() {
                out.insert(entry.path(), b"<link>".to_vec());
            } else {
                out.insert(entry.path(), std::fs::read(entry.path()).unwrap());
            }
        }
    }
    out
}

/// A directory outside the output directory with a file in it.
fn outside(work: &Workdir) -> PathBuf {
    let dir = work.path().join("outside");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("victim.csv"), "victim").unwrap();
    std::fs::write(dir.join("sub/keep"), "keep").unwrap();
    dir
}

/// The one run directory under `r.csv.parts/`.
fn run_dir(work: &Workdir) -> PathBuf {
    std::fs::read_dir(work.output_dir().join("r.csv.parts"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// Stages a plan and exports every chunk with stage commands, as pods would.
fn stage_all(work: &Workdir, spec: &str, chunks: usize) -> String {
    let planned = work.reportjob(&["plan", "-f", spec, "--write"]);
    assert!(planned.status.success(), "{}", stderr(&planned));
    let summary = stdout(&planned);
    assert!(
        summary.starts_with(&format!("chunks={chunks} ")),
        "{summary}"
    );
    for index in 0..chunks {
        let out = work.reportjob(&["worker", "-f", spec, "--index", &index.to_string()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    summary
        .split_whitespace()
        .find_map(|f| f.strip_prefix("digest="))
        .unwrap()
        .to_string()
}

#[test]
fn run_ids_are_refused_wherever_they_enter() {
    let work = Workdir::new();
    let outside = outside(&work);
    let before = snapshot(&outside);
    let spec = work.spec(
        "s.yaml",
        &SpecBuilder::table("t")
            .key("id")
            .chunk_size(10)
            .pvc("r", "r.csv")
            .build_yaml(),
    );
    let spec = spec.to_str().unwrap();
    std::fs::create_dir_all(work.output_dir()).unwrap();
    for bad in [
        "../../..",
        "../outside",
        "a/b",
        "UPPER",
        "-x",
        &"a".repeat(64),
    ] {
        let out = work.reportjob(&["cleanup", "-f", spec, &format!("--run-id={bad}")]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("invalid run id"), "{}", stderr(&out));
        let out = work.reportjob_with(
            &["cleanup", "-f", spec, "--delete-output"],
            &[("REPORTJOB_RUN_ID", bad)],
        );
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("invalid run id"), "{}", stderr(&out));
    }
    assert_eq!(snapshot(&outside), before, "nothing outside was touched");
    assert!(work.output_dir().exists(), "nor the output directory");
    let out = work.reportjob(&["cleanup", "-f", spec, "--run-id", "rj-0123abcd"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test]
async fn symlinks_in_the_volume_never_redirect_outside() {
    let mut db = TestDb::new("symlinks").await;
    db.numbers(600).await;
    let spec_text = SpecBuilder::table(&db.table("src"))
        .key("id")
        .chunk_size(200)
        .pvc("r", "r.csv")
        .build_yaml();
    // (what is linked, to what outside)
    let attacks: [(&str, &str); 4] = [
        ("r.csv.parts", ""),
        ("r.csv.parts/evil", ""),
        ("r.csv", "victim.csv"),
        ("r.csv.manifest.json", "victim.csv"),
    ];
    for (link, target) in attacks {
        let work = Workdir::new();
        let outside = outside(&work);
        let before = snapshot(&outside);
        let spec = work.spec("s.yaml", &spec_text);
        let spec = spec.to_str().unwrap();
        let at = work.output_dir().join(link);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        symlink(outside.join(target), &at).unwrap();
        let out = work.reportjob(&["run", "-f", spec, "--run-id", "evil"]);
        assert_eq!(out.status.code(), Some(3), "{link}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("symbolic link"),
            "{link}: {}",
            stderr(&out)
        );
        assert_eq!(snapshot(&outside), before, "{link}: outside unchanged");
        // Cleanup does not follow it either.
        let out = work.reportjob(&["cleanup", "-f", spec, "--run-id", "evil", "--delete-output"]);
        if link.starts_with("r.csv.parts") {
            assert_eq!(out.status.code(), Some(3), "{link}: {}", stderr(&out));
            assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
        } else {
            assert!(out.status.success(), "{link}: {}", stderr(&out));
            assert!(
                !at.exists() && at.symlink_metadata().is_err(),
                "the link itself is removed"
            );
        }
        assert_eq!(snapshot(&outside), before, "{link}: outside unchanged");
    }
}

#[tokio::test]
async fn a_killed_run_leaves_its_temporary_report_in_staging_and_the_next_run_removes_it() {
    let mut db = TestDb::new("killed_assembly").await;
    db.numbers(2000).await;
    let work = Workdir::new();
    // One chunk at a time, and the export stops at row 600 while the test holds the gate:
    // the chunks before it are appended to the local runner's temporary report (open from the
    // start), which is mid-write when the run is killed.
    let gate = i64::from(rand::random::<u32>());
    db.hold_gate(gate).await;
    let spec = work.spec(
        "s.yaml",
        &SpecBuilder::table(&db.table("src"))
            .key("id")
            .filter(&common::gate_filter(&db.schema, "id", 600, gate))
            .chunk_size(250)
            .parallelism(1)
            .pvc("r", "r.csv")
            .build_yaml(),
    );
    let run_stderr = work.output_dir().with_file_name("killed-run.stderr");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_reportjob"))
        .args(["run", "-f", spec.to_str().unwrap(), "--output-dir"])
        .arg(work.output_dir())
        .env("DATABASE_URL", database_url())
        .stderr(std::fs::File::create(&run_stderr).unwrap())
        .spawn()
        .unwrap();
    // The run waits at the gate until the test releases it.
    let temp = common::eventually_blocking("the run to reach the gate", || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the run ended ({status}) before it reached the gate:\n{}",
                std::fs::read_to_string(&run_stderr).unwrap_or_default()
            );
        }
        // Waiting at the gate: the third chunk's part is being written beside the temporary
        // report, which has taken in (buffered) the two chunks before it.
        std::fs::read_dir(work.output_dir().join("r.csv.parts"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .and_then(|run| {
                let writing_a_part = std::fs::read_dir(run.path())
                    .ok()?
                    .filter_map(|e| e.ok())
                    .any(|e| e.file_name().to_string_lossy().starts_with(".part-"));
                let temp = std::fs::read_dir(run.path().join("tmp"))
                    .ok()?
                    .filter_map(|e| e.ok())
                    .find(|e| e.file_name().to_string_lossy().starts_with(".r.csv.tmp-"))?;
                writing_a_part.then(|| temp.path())
            })
    });
    child.kill().unwrap();
    let _ = child.wait();
    // The killed run's session waits at the gate; releasing it lets that session end.
    db.release_gate(gate).await;
    assert!(
        temp.exists(),
        "the crash left the temporary report in staging"
    );
    let top: Vec<String> = std::fs::read_dir(work.output_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top, ["r.csv.parts"], "nothing beside the report");

    let out = work.reportjob(&["run", "-f", spec.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_json(&out)["rows"], 2000);
    let mut left: Vec<String> = snapshot(&work.output_dir())
        .keys()
        .map(|p| {
            p.strip_prefix(work.output_dir())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["r.csv", "r.csv.manifest.json"],
        "no temporary file left"
    );
    db.assert_report_matches(&work.output_dir().join("r.csv"), &db.all("src"), "", false)
        .await;
}

#[tokio::test]
async fn a_leftover_temporary_report_is_removed_by_assembly_and_by_cleanup() {
    let (mut db, work, spec) = numbers_to_r_csv("leftover_temp", 1000, 250).await;
    let spec = spec.as_str();
    stage_all(&work, spec, 4);
    // What an assembly killed mid-write leaves: a report-sized temporary in staging.
    let scratch = run_dir(&work).join("tmp");
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(
        scratch.join(".r.csv.tmp-00000000deadbeef"),
        vec![b'x'; 40_000],
    )
    .unwrap();
    let out = work.reportjob(&["assemble", "-f", spec]);
    assert!(out.status.success(), "{}", stderr(&out));
    let left: Vec<PathBuf> = snapshot(&work.output_dir()).into_keys().collect();
    assert_eq!(
        left,
        [
            work.output_dir().join("r.csv"),
            work.output_dir().join("r.csv.manifest.json")
        ]
    );
    db.assert_report_matches(&work.output_dir().join("r.csv"), &db.all("src"), "", false)
        .await;

    // Cleanup removes a leftover too.
    std::fs::create_dir_all(work.output_dir().join("r.csv.parts/rj-1/tmp")).unwrap();
    std::fs::write(
        work.output_dir().join("r.csv.parts/rj-1/tmp/.r.csv.tmp-1"),
        "x",
    )
    .unwrap();
    let out = work.reportjob(&["cleanup", "-f", spec, "--run-id", "rj-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!work.output_dir().join("r.csv.parts").exists());
}

#[tokio::test]
async fn assembling_again_after_publishing_succeeds_and_changes_nothing() {
    let (mut db, work, spec) = numbers_to_r_csv("assemble_twice", 1000, 250).await;
    let spec = spec.as_str();
    let digest = stage_all(&work, spec, 4);
    let first = work.reportjob(&["assemble", "-f", spec, "--plan-digest", &digest]);
    assert!(first.status.success(), "{}", stderr(&first));
    let report = work.output_dir().join("r.csv");
    let manifest = work.output_dir().join("r.csv.manifest.json");
    let published = (
        std::fs::read(&report).unwrap(),
        std::fs::metadata(&report).unwrap().modified().unwrap(),
        std::fs::read(&manifest).unwrap(),
        std::fs::metadata(&manifest).unwrap().modified().unwrap(),
    );
    assert!(!work.output_dir().join("r.csv.parts").exists());

    for args in [
        vec!["assemble", "-f", spec, "--plan-digest", &digest],
        vec!["assemble", "-f", spec],
    ] {
        let again = work.reportjob(&args);
        assert!(again.status.success(), "{}", stderr(&again));
        assert_eq!(
            stdout(&again),
            stdout(&first),
            "the same result is reported"
        );
        let now = (
            std::fs::read(&report).unwrap(),
            std::fs::metadata(&report).unwrap().modified().unwrap(),
            std::fs::read(&manifest).unwrap(),
            std::fs::metadata(&manifest).unwrap().modified().unwrap(),
        );
        assert!(
            now == published,
            "the report and manifest are not rewritten"
        );
    }
    // Another plan's assembly is not mistaken for this one.
    let other = work.reportjob(&["assemble", "-f", spec, "--plan-digest", "sha256:00"]);
    assert_eq!(other.status.code(), Some(3), "{}", stderr(&other));
    assert!(stderr(&other).contains("no plan"), "{}", stderr(&other));
    db.assert_report_matches(&report, &db.all("src"), "", false)
        .await;
}

#[tokio::test]
async fn damaged_parts_are_removed_and_exactly_their_chunks_exported_again() {
    let (mut db, work, spec) = numbers_to_r_csv("damaged_parts", 2000, 400).await;
    let spec = spec.as_str();
    stage_all(&work, spec, 5);
    let run = run_dir(&work);
    // Chunk 1 loses its tail (wrong size), chunk 3 gets a flipped byte (wrong sha256).
    let p1 = run.join("part-00001.csv");
    let bytes = std::fs::read(&p1).unwrap();
    std::fs::write(&p1, &bytes[..bytes.len() - 7]).unwrap();
    let p3 = run.join("part-00003.csv");
    let mut bytes = std::fs::read(&p3).unwrap();
    bytes[20] ^= 0x01;
    std::fs::write(&p3, &bytes).unwrap();
    let untouched = std::fs::read(run.join("part-00002.csv")).unwrap();

    let out = work.reportjob(&["assemble", "-f", spec]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("damaged_chunks=1,3:"),
        "{}",
        stderr(&out)
    );
    assert!(!work.output_dir().join("r.csv").exists());
    for index in [1, 3] {
        assert!(!run.join(format!("part-0000{index}.csv")).exists());
        assert!(!run.join(format!("part-0000{index}.json")).exists());
    }
    assert!(
        run.join("part-00002.json").exists(),
        "intact parts are kept"
    );

    let out = work.reportjob(&["run", "-f", spec, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result = run_json(&out);
    assert_eq!(
        result["chunks"]["resumed"], 3,
        "only chunks 1 and 3 exported again"
    );
    assert_eq!(result["rows"], 2000);
    let report = std::fs::read(work.output_dir().join("r.csv")).unwrap();
    assert!(
        report
            .windows(untouched.len())
            .any(|w| w == untouched.as_slice()),
        "chunk 2's part went into the report as it was"
    );
    db.assert_report_matches(&work.output_dir().join("r.csv"), &db.all("src"), "", false)
        .await;
}

/// Runs `plan` against `url` and returns its exit code and stderr.
fn plan_with(work: &Workdir, url: &str) -> (Option<i32>, String) {
    let spec = work.spec(
        "s.yaml",
        &SpecBuilder::table("public.t")
            .key("id")
            .chunk_size(10)
            .pvc("r", "r.csv")
            .build_yaml(),
    );
    let out = work.reportjob_with(
        &["plan", "-f", spec.to_str().unwrap()],
        &[("DATABASE_URL", url)],
    );
    (out.status.code(), stderr(&out))
}

#[test]
fn a_refused_connection_is_named_with_host_and_database_but_not_the_password() {
    let work = Workdir::new();
    // Nothing listens on port 1; sqlx retries a refused connection until its 30 s
    // acquire timeout, then the real cause is reported.
    let (code, err) = plan_with(&work, "postgres://reader:hunter2secret@127.0.0.1:1/sales");
    assert_eq!(code, Some(1), "transient: {err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(err.contains("database \"sales\""), "{err}");
    assert!(!err.contains("hunter2secret"), "{err}");
    assert!(!err.contains("pool timed out"), "{err}");
}

#[test]
fn a_missing_database_is_named_and_permanent() {
    let work = Workdir::new();
    let mut url = url::Url::parse(&common::database_url()).unwrap();
    url.set_password(Some("hunter2secret")).unwrap();
    url.set_path("/no_such_db_rj");
    let (code, err) = plan_with(&work, url.as_str());
    assert_eq!(code, Some(3), "permanent: {err}");
    assert!(err.contains("the database does not exist"), "{err}");
    assert!(err.contains("no_such_db_rj"), "{err}");
    assert!(err.contains("SQLSTATE 3D000"), "{err}");
    assert!(!err.contains("hunter2secret"), "{err}");
}

#[test]
fn no_database_url_is_a_usage_error_naming_the_flag_and_the_secret() {
    let work = Workdir::new();
    let spec = work.spec(
        "s.yaml",
        &SpecBuilder::table("public.t")
            .key("id")
            .pvc("r", "r.csv")
            .build_yaml(),
    );
    for command in ["run", "plan"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_reportjob"))
            .args([command, "-f", spec.to_str().unwrap(), "--output-dir"])
            .arg(work.output_dir())
            .env_remove("DATABASE_URL")
            .env_remove("REPORTJOB_SPEC")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("no database URL: pass --database-url or set DATABASE_URL"),
            "{command}: {}",
            stderr(&out)
        );
    }
}
