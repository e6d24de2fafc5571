//! Bucket output against a real S3-protocol server (s3s-fs, which checks SigV4): reports
//! fetched through their signed link with a plain HTTP client load back exactly; signed
//! links are refused once tampered with or expired; bad credentials, a missing bucket and
//! an unreachable endpoint fail fast, naming the bucket, leaving nothing behind.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use common::free_port;
use common::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use common::spec::SpecBuilder;
use common::{TestDb, Workdir, run_json, stderr};
use sha2::Digest;

const BUCKET: &str = "reports";

fn creds() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ]
}

/// `spec` writing to the object `key` of the test bucket behind `endpoint`, gzipped when
/// the key ends in `.gz`.
fn to_bucket(spec: SpecBuilder, endpoint: &str, key: &str) -> SpecBuilder {
    spec.compression(if key.ends_with(".gz") { "gzip" } else { "none" })
        .bucket(&format!("s3://{BUCKET}/{key}"))
        .bucket_field("endpoint", endpoint)
        .bucket_field("region", "us-east-1")
}

/// Exporting the test's `src` table by `id` to the object `key`.
fn src_to_bucket(db: &TestDb, endpoint: &str, key: &str) -> SpecBuilder {
    to_bucket(
        SpecBuilder::table(&db.table("src")).key("id"),
        endpoint,
        key,
    )
}

async fn source(db: &mut TestDb, rows: u32, width: u32) {
    db.exec(&format!(
        "CREATE TABLE src (id bigint PRIMARY KEY, note text, amount numeric(10,2));
         INSERT INTO src
         SELECT g, CASE WHEN g % 7 = 0 THEN NULL WHEN g % 7 = 1 THEN '' ELSE
                  'say \"hi\", ' || E'\\n' || repeat(md5(g::text), {width}) END,
                g / 3.0
           FROM generate_series(1, {rows}) AS g;"
    ))
    .await;
}

async fn fetch(url: &str) -> reqwest::Response {
    reqwest::Client::new().get(url).send().await.unwrap()
}

#[tokio::test]
async fn report_fetched_through_signed_link_is_exact_plain_and_gzip() {
    let mut db = TestDb::new("bucket_exact").await;
    source(&mut db, 3000, 1).await;
    let s3 = S3Server::start(BUCKET);
    for key in ["exports/orders.csv", "exports/orders.csv.gz"] {
        let work = Workdir::new();
        let spec = work.spec(
            "s.yaml",
            &src_to_bucket(&db, &s3.endpoint(), key)
                .chunk_size(400)
                .parallelism(3)
                .build_yaml(),
        );
        let out = work.reportjob_with(&["run", "-f", spec.to_str().unwrap(), "--json"], &creds());
        assert!(out.status.success(), "{}", stderr(&out));
        let result = run_json(&out);
        assert_eq!(result["location"], format!("s3://{BUCKET}/{key}"));
        let url = result["url"].as_str().expect("a signed link");
        assert!(result["url_expires_at"].as_str().is_some());

        // A plain HTTP client, without our credentials.
        let response = fetch(url).await;
        assert_eq!(response.status(), 200);
        let bytes = response.bytes().await.unwrap();
        assert_eq!(
            result["sha256"].as_str().unwrap(),
            hex::encode(sha2::Sha256::digest(&bytes))
        );
        let local = work.path().join("fetched");
        std::fs::write(&local, &bytes).unwrap();
        db.assert_report_matches(&local, &db.all("src"), "", key.ends_with(".gz"))
            .await;

        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(s3.object_path(BUCKET, &format!("{key}.manifest.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["sha256"], result["sha256"]);
        assert_eq!(manifest["rows"], 3000);
        assert!(
            s3.objects(BUCKET).iter().all(|o| !o.contains(".parts/")),
            "staging removed: {:?}",
            s3.objects(BUCKET)
        );
        assert!(!work.output_dir().exists(), "nothing written locally");
    }
    assert_eq!(
        s3.open_uploads(),
        Vec::<String>::new(),
        "no multipart upload left open"
    );
}

#[tokio::test]
async fn large_parts_are_assembled_by_server_side_copy() {
    let mut db = TestDb::new("bucket_copy").await;
    // ~15 MB of CSV in two chunks of over 5 MiB each.
    source(&mut db, 60000, 10).await;
    let s3 = S3Server::start(BUCKET);
    let mut digests = Vec::new();
    for (key, copy) in [("copied.csv", true), ("streamed.csv", false)] {
        let work = Workdir::new();
        let spec = work.spec(
            "s.yaml",
            &src_to_bucket(&db, &s3.endpoint(), key)
                .bucket_field("serverSideCopy", copy)
                .chunk_size(30000)
                .parallelism(2)
                .build_yaml(),
        );
        let out = work.reportjob_with(&["run", "-f", spec.to_str().unwrap(), "--json"], &creds());
        assert!(out.status.success(), "{}", stderr(&out));
        let result = run_json(&out);
        assert_eq!(result["chunks"]["total"], 2);
        let expected_copies = if copy { 2 } else { 0 };
        assert_eq!(result["server_side_copies"], expected_copies, "{result}");
        let bytes = fetch(result["url"].as_str().unwrap())
            .await
            .bytes()
            .await
            .unwrap();
        assert!(bytes.len() > 10 << 20);
        let local = work.path().join("fetched.csv");
        std::fs::write(&local, &bytes).unwrap();
        db.assert_report_matches(&local, &db.all("src"), "", false)
            .await;
        digests.push(result["sha256"].as_str().unwrap().to_string());
    }
    assert_eq!(
        digests[0], digests[1],
        "copying and streaming give the same bytes"
    );
    assert_eq!(s3.open_uploads(), Vec::<String>::new());
}

#[tokio::test]
async fn tampered_or_expired_link_is_refused() {
    let mut db = TestDb::new("bucket_link").await;
    source(&mut db, 100, 1).await;
    let s3 = S3Server::start(BUCKET);
    let work = Workdir::new();
    let spec = work.spec(
        "s.yaml",
        // Long enough for the fresh link to be fetched on a loaded machine.
        &src_to_bucket(&db, &s3.endpoint(), "r.csv")
            .bucket_field("urlExpirySeconds", 10)
            .build_yaml(),
    );
    let out = work.reportjob_with(&["run", "-f", spec.to_str().unwrap(), "--json"], &creds());
    assert!(out.status.success(), "{}", stderr(&out));
    let url = run_json(&out)["url"].as_str().unwrap().to_string();
    assert_eq!(fetch(&url).await.status(), 200, "fresh link works");

    let signature_at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut tampered = url.clone().into_bytes();
    tampered[signature_at] = if tampered[signature_at] == b'0' {
        b'1'
    } else {
        b'0'
    };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(fetch(&tampered).await.status(), 403, "tampered signature");
    let other_key = url.replacen("/r.csv?", "/r.csv.manifest.json?", 1);
    assert_eq!(
        fetch(&other_key).await.status(),
        403,
        "link used for another object"
    );

    // Refused once expired: waits for the refusal (about 10 s), not a guessed duration.
    common::eventually("the link to expire (403)", || async {
        (fetch(&url).await.status() == 403).then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_credentials_missing_bucket_or_unreachable_endpoint_fail_fast() {
    let mut db = TestDb::new("bucket_errors").await;
    source(&mut db, 100, 1).await;
    let s3 = S3Server::start(BUCKET);
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    type Env = Vec<(&'static str, &'static str)>;
    let to = |endpoint: &str, url: &str| {
        src_to_bucket(&db, endpoint, "r.csv")
            .bucket(url)
            .bucket_field("endpoint", endpoint)
            .bucket_field("region", "us-east-1")
    };
    let cases: Vec<(SpecBuilder, Env, &str)> = vec![
        (
            src_to_bucket(&db, &s3.endpoint(), "r.csv"),
            vec![
                ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
                ("AWS_SECRET_ACCESS_KEY", "wrong"),
            ],
            "bucket \"reports\"",
        ),
        (
            to(&s3.endpoint(), "s3://nosuchbucket/r.csv"),
            creds(),
            "bucket \"nosuchbucket\": the bucket does not exist",
        ),
        (
            src_to_bucket(&db, &unreachable, "r.csv"),
            creds(),
            "bucket \"reports\"",
        ),
        // A metadata service's address is refused before anything is sent to it.
        (
            src_to_bucket(&db, "http://169.254.169.254", "r.csv"),
            creds(),
            "is or resolves to the link-local address 169.254.169.254",
        ),
        // No credentials at all: named, permanent, before the client would ask the
        // instance metadata service (and fail with its 403).
        (
            src_to_bucket(&db, &s3.endpoint(), "r.csv"),
            vec![],
            "no credentials for the bucket: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ),
    ];
    for (i, (output, env, needle)) in cases.into_iter().enumerate() {
        let work = Workdir::new();
        let spec = work.spec("s.yaml", &output.build_yaml());
        let out = work.reportjob_with(&["run", "-f", spec.to_str().unwrap()], &env);
        assert!(!out.status.success(), "case {i} should fail");
        assert!(stderr(&out).contains(needle), "case {i}: {}", stderr(&out));
        if env.is_empty() {
            assert_eq!(out.status.code(), Some(3), "permanent: {}", stderr(&out));
        }
    }
    assert_eq!(
        s3.objects(BUCKET),
        Vec::<String>::new(),
        "nothing published"
    );
    assert_eq!(s3.open_uploads(), Vec::<String>::new());
}

#[tokio::test]
async fn chunk_killed_mid_upload_is_retried_without_duplicates() {
    let mut db = TestDb::new("bucket_retry").await;
    source(&mut db, 1500, 1).await;
    let s3 = S3Server::start(BUCKET);
    let work = Workdir::new();
    let spec = work.spec(
        "s.yaml",
        // 2 ms per row: the chunk streams for ~3 s and is killed after 300 rows.
        &src_to_bucket(&db, &s3.endpoint(), "retried.csv")
            .filter(&common::slow_filter(&db.schema, 0.002))
            .chunk_size(1_000_000)
            .parallelism(1)
            .build_yaml(),
    );
    let killer = common::terminate_copy_backend(&db.schema, 300);
    let spec_path = spec.to_str().unwrap().to_string();
    let (out, work) = tokio::task::spawn_blocking(move || {
        let o = work.reportjob_with(&["run", "-f", &spec_path, "--json"], &creds());
        (o, work)
    })
    .await
    .unwrap();
    assert!(
        killer.await.unwrap(),
        "the chunk's backend was killed mid-upload"
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("retrying"), "{}", stderr(&out));
    let result = run_json(&out);
    let bytes = fetch(result["url"].as_str().unwrap())
        .await
        .bytes()
        .await
        .unwrap();
    let local = work.path().join("fetched.csv");
    std::fs::write(&local, &bytes).unwrap();
    db.assert_report_matches(&local, &db.all("src"), "", false)
        .await;
    assert_eq!(
        s3.open_uploads(),
        Vec::<String>::new(),
        "the killed part's upload was aborted"
    );
}

#[tokio::test]
async fn failed_run_leaves_no_object_and_no_open_upload() {
    let mut db = TestDb::new("bucket_failed").await;
    source(&mut db, 4000, 200).await;
    let s3 = S3Server::start(BUCKET);
    let work = Workdir::new();
    // The fourth chunk divides by zero on its first row, while the three chunks started
    // with it (3 MB each) are still uploading: they are cancelled mid-upload.
    let query = format!(
        "SELECT id, note, 1 / (id - 1500) AS x FROM {}",
        db.table("src")
    );
    let yaml = to_bucket(
        SpecBuilder::query(&query).name("q").key("id"),
        &s3.endpoint(),
        "failed.csv",
    )
    .chunk_size(500)
    .parallelism(4)
    .build_yaml();
    let spec = work.spec("s.yaml", &yaml);
    let out = work.reportjob_with(&["run", "-f", spec.to_str().unwrap()], &creds());
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("SQLSTATE 22012"), "{}", stderr(&out));
    assert!(
        !s3.objects(BUCKET).iter().any(|o| o == "failed.csv"),
        "no report published: {:?}",
        s3.objects(BUCKET)
    );
    assert_eq!(
        s3.open_uploads(),
        Vec::<String>::new(),
        "every multipart upload was completed or aborted"
    );
}

#[tokio::test]
async fn worker_killed_mid_upload_is_rerun_without_duplicates() {
    let mut db = TestDb::new("bucket_worker_kill").await;
    source(&mut db, 1200, 1).await;
    let s3 = S3Server::start(BUCKET);
    let work = Workdir::new();
    // One chunk, as a chunk pod would run it, that waits at row 600 while the test holds the
    // gate: its upload is open, and far from done, when the test kills it.
    let gate = i64::from(rand::random::<u32>());
    db.hold_gate(gate).await;
    let spec = work.spec(
        "s.yaml",
        &src_to_bucket(&db, &s3.endpoint(), "killed.csv")
            .filter(&common::gate_filter(&db.schema, "id", 600, gate))
            .chunk_size(1_000_000)
            .build_yaml(),
    );
    let spec = spec.to_str().unwrap();
    let planned = work.reportjob_with(&["plan", "-f", spec, "--write"], &creds());
    assert!(planned.status.success(), "{}", stderr(&planned));

    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_reportjob"))
        .args(["worker", "-f", spec, "--index", "0"])
        .env("DATABASE_URL", common::database_url())
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once its part upload is open.
    common::eventually_blocking("the worker's upload to open", || {
        (!s3.open_uploads().is_empty()).then_some(())
    });
    worker.kill().unwrap();
    worker.wait().unwrap();
    db.release_gate(gate).await;
    assert!(
        !s3.objects(BUCKET)
            .iter()
            .any(|o| o.ends_with("part-00000.json")),
        "a killed worker publishes no part"
    );

    // The chunk Job's retry: the same command again, then assembly.
    let rerun = work.reportjob_with(&["worker", "-f", spec, "--index", "0"], &creds());
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    let assembled = work.reportjob_with(&["assemble", "-f", spec], &creds());
    assert!(assembled.status.success(), "{}", stderr(&assembled));
    let summary = common::stdout(&assembled);
    assert!(summary.starts_with("rows=1200 "), "{summary}");
    let url = summary.split(" url=").nth(1).unwrap().trim();
    let bytes = fetch(url).await.bytes().await.unwrap();
    let local = work.path().join("fetched.csv");
    std::fs::write(&local, &bytes).unwrap();
    db.assert_report_matches(&local, &db.all("src"), "", false)
        .await;
}
