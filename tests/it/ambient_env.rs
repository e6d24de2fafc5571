//! The engine takes no connection settings from the environment around it: a proxy in
//! `HTTP_PROXY` and the like sees neither the webhook (whose URL is a secret) nor the bucket
//! requests, libpq's `PGOPTIONS` and friends do not reach the database connection, and a
//! server that repeats a connection setting in its refusal does not get it into the output.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::spec::SpecBuilder;
use crate::common::{TestDb, Workdir, database_url, stderr};

/// A listener that counts connections and answers each with `status` (no body).
fn counting_listener(status: u16) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 8192];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (addr, count)
}

/// Every spelling of the proxy variables, pointing at `proxy`.
fn proxies(proxy: &str) -> Vec<(String, String)> {
    let url = format!("http://{proxy}");
    [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .map(|k| (k.to_string(), url.clone()))
    .chain([
        ("NO_PROXY".to_string(), String::new()),
        ("no_proxy".to_string(), String::new()),
    ])
    .collect()
}

#[test]
fn the_webhook_goes_to_its_url_never_to_a_proxy_from_the_environment() {
    let (proxy, via_proxy) = counting_listener(200);
    let (hook, direct) = counting_listener(200);
    let spec = SpecBuilder::table("t")
        .name("orders-7")
        .key("id")
        .pvc("r", "r.csv")
        .notify("hook", None, None)
        .build_yaml();
    let url = format!("http://{hook}/services/T000/B000/SECRETHOOKTOKEN");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_reportjob"));
    cmd.args(["notify", "--outcome", "failed"])
        .env("REPORTJOB_SPEC", &spec)
        .env("REPORTJOB_NAME", "orders-7")
        .env("REPORTJOB_NAMESPACE", "analytics")
        .env("REPORTJOB_WEBHOOK_URL", &url);
    for (k, v) in proxies(&proxy) {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(direct.load(Ordering::SeqCst), 1, "{}", stderr(&out));
    assert_eq!(
        via_proxy.load(Ordering::SeqCst),
        0,
        "the proxy from the environment saw the webhook"
    );
}

#[tokio::test]
async fn bucket_requests_go_to_the_endpoint_never_to_a_proxy_from_the_environment() {
    let mut db = TestDb::new("ambient_bucket").await;
    db.numbers(10).await;
    let (proxy, via_proxy) = counting_listener(200);
    // The endpoint refuses the credentials: the run fails, having asked the endpoint.
    let (endpoint, direct) = counting_listener(403);
    let work = Workdir::new();
    let spec = work.spec(
        "spec.yaml",
        &SpecBuilder::table(&db.table("src"))
            .key("id")
            .bucket("s3://reports/r.csv")
            .bucket_field("endpoint", format!("http://{endpoint}"))
            .build_yaml(),
    );
    let mut env: Vec<(String, String)> = proxies(&proxy);
    env.push(("AWS_ACCESS_KEY_ID".into(), "k".into()));
    env.push(("AWS_SECRET_ACCESS_KEY".into(), "s".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = work.reportjob_with(&["run", "-f", spec.to_str().unwrap()], &env);
    assert!(!out.status.success());
    assert!(direct.load(Ordering::SeqCst) >= 1, "{}", stderr(&out));
    assert_eq!(
        via_proxy.load(Ordering::SeqCst),
        0,
        "the proxy from the environment saw a bucket request: {}",
        stderr(&out)
    );
}

#[tokio::test]
async fn libpq_variables_do_not_reach_the_connection() {
    let mut db = TestDb::new("ambient_pg").await;
    db.numbers(50).await;
    let work = Workdir::new();
    let spec = work.spec(
        "spec.yaml",
        &SpecBuilder::table(&db.table("src"))
            .key("id")
            .pvc("r", "r.csv")
            .build_yaml(),
    );
    // Each of these, read by the driver, would break the connection or change the session
    // (and the server would repeat the value in its refusal): the run must not notice them.
    let out = work.reportjob_with(
        &["run", "-f", spec.to_str().unwrap()],
        &[
            ("PGOPTIONS", "-c work_mem=S3cr3t-P4ss-victim"),
            ("PGAPPNAME", "S3cr3t-P4ss-victim"),
            ("PGSSLMODE", "require"),
            ("PGPASSFILE", "/nonexistent/S3cr3t-P4ss-victim"),
            ("PGSSLROOTCERT", "/nonexistent/S3cr3t-P4ss-victim"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("S3cr3t"), "{}", stderr(&out));
    db.assert_report_matches(&work.output_dir().join("r.csv"), &db.all("src"), "", false)
        .await;
}

#[tokio::test]
async fn a_refusal_that_repeats_a_connection_setting_is_not_shown() {
    let mut db = TestDb::new("ambient_echo").await;
    db.numbers(5).await;
    let work = Workdir::new();
    let spec = work.spec(
        "spec.yaml",
        &SpecBuilder::table(&db.table("src"))
            .key("id")
            .pvc("r", "r.csv")
            .build_yaml(),
    );
    // The server answers `invalid value for parameter "work_mem": "S3cr3t-P4ss-victim"` and
    // `invalid command-line argument for server process: S3cr3t-P4ss-victim`.
    for options in ["-c%20work_mem%3DS3cr3t-P4ss-victim", "S3cr3t-P4ss-victim"] {
        let url = format!("{}?options={options}", database_url());
        let out = work.reportjob_with(
            &["run", "-f", spec.to_str().unwrap(), "--json"],
            &[("DATABASE_URL", url.as_str())],
        );
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(!err.contains("S3cr3t"), "the setting was echoed: {err}");
        assert!(
            err.contains("cannot connect to the database") && err.contains("SQLSTATE"),
            "{err}"
        );
    }
    // A connection Secret that holds something else than a URL is not repeated either.
    let out = work.reportjob_with(
        &["run", "-f", spec.to_str().unwrap()],
        &[(
            "DATABASE_URL",
            "https://hooks.example/services/T0/B0/S3cr3tHookToken",
        )],
    );
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(!err.contains("S3cr3t"), "{err}");
    assert!(err.contains("postgres://"), "{err}");
}
