//! Redirects past the network guard: a bucket endpoint (or a signed link's host) answering
//! 307 towards another address must not make any client follow it. The endpoint here is a
//! listener on 127.0.0.1 that answers every request with a 307 to a second loopback
//! listener, which only counts the connections that reach it: none may.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common;

use common::s3::{ACCESS_KEY, SECRET_KEY};
use common::spec::SpecBuilder;
use common::{TestDb, Workdir, stderr};

/// A listener that counts the connections it accepts (and answers none).
struct Target {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Target {
    fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Target { port, connections }
    }

    fn reached(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A server answering every request with `307 Location: <to><path>`; returns its port and
/// how many requests it answered.
fn redirecting(to: String) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let to = to.clone();
            let count = count.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut request = String::new();
                    if reader.read_line(&mut request).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request.split(' ').nth(1).unwrap_or("/").to_string();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; length];
                    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let reply = format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nLocation: {to}{path}\r\nContent-Length: 0\r\n\r\n"
                    );
                    if stream.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, answered)
}

#[tokio::test]
async fn a_bucket_endpoint_redirecting_elsewhere_is_not_followed() {
    let mut db = TestDb::new("redirect_bucket").await;
    db.exec("CREATE TABLE src (id bigint PRIMARY KEY, note text); INSERT INTO src SELECT g, 'n' || g FROM generate_series(1, 50) g;")
        .await;
    let target = Target::start();
    for to in [
        format!("http://127.0.0.1:{}", target.port),
        format!("http://[::ffff:127.0.0.1]:{}", target.port),
    ] {
        let (port, answered) = redirecting(to);
        let work = Workdir::new();
        let spec = work.spec(
            "s.yaml",
            &SpecBuilder::table(&db.table("src"))
                .key("id")
                .bucket("s3://reports/out.csv")
                .bucket_field("endpoint", format!("http://127.0.0.1:{port}"))
                .bucket_field("region", "us-east-1")
                .build_yaml(),
        );
        let out = work.reportjob_with(
            &["run", "-f", spec.to_str().unwrap()],
            &[
                ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
                ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ],
        );
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(
            answered.load(Ordering::SeqCst) > 0,
            "the endpoint was asked: {err}"
        );
        assert!(err.contains("redirect refused"), "{err}");
        assert_eq!(target.reached(), 0, "a redirect was followed: {err}");
    }
}

#[tokio::test]
async fn a_download_link_redirecting_elsewhere_is_not_followed() {
    let target = Target::start();
    let (port, answered) = redirecting(format!("http://[::1]:{}", target.port));
    let (port_v4, _) = redirecting(format!("http://127.0.0.1:{}", target.port));
    let work = Workdir::new();
    for port in [port, port_v4] {
        let url = url::Url::parse(&format!(
            "http://127.0.0.1:{port}/reports/out.csv?X-Amz-Signature=secret"
        ))
        .unwrap();
        let expected = reportjob::api::OutputStatus {
            location: "s3://reports/out.csv".into(),
            bytes: 0,
            sha256: "0".repeat(64),
            ..Default::default()
        };
        let partial = work.path().join("out.csv.part");
        let err = reportjob::cli::client::download::fetch(&url, &partial, &expected)
            .await
            .expect_err("refused");
        assert!(err.message.contains("redirect refused"), "{}", err.message);
        assert!(!err.message.contains("secret"), "{}", err.message);
    }
    assert!(answered.load(Ordering::SeqCst) > 0);
    assert_eq!(target.reached(), 0, "a redirect was followed");
}
