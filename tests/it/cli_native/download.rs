//! `download` through a real presigned link of a real S3 server (s3s-fs), the link in the
//! status of a ReportJob of the test's namespace (written by the test).

use std::time::Duration;

use serde_json::json;

use super::{Cli, complete};
use crate::common::s3::{ACCESS_KEY, S3Server, SECRET_KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_fetches_the_presigned_link_and_checks_the_sha256() {
    use object_store::ObjectStoreExt;
    use object_store::signer::Signer;
    use sha2::Digest;
    let cli = Cli::start("download").await;
    let ns = cli.ns;
    let s3 = S3Server::start("reports");
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(s3.endpoint())
        .with_bucket_name("reports")
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_allow_http(true)
        .build()
        .unwrap();
    let body: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{i},row {i}\n").into_bytes())
        .collect();
    let key = object_store::path::Path::from("daily/orders.csv");
    store.put(&key, body.clone().into()).await.unwrap();
    let url = store
        .signed_url(reqwest::Method::GET, &key, Duration::from_secs(600))
        .await
        .unwrap()
        .to_string();
    let sha = hex::encode(sha2::Sha256::digest(&body));
    let output = |url: &str, sha: &str| {
        json!({"location": "s3://reports/daily/orders.csv", "rows": 200000, "bytes": body.len(),
               "sha256": sha, "url": url, "urlExpiresAt": "2099-01-01T00:00:00Z"})
    };
    cli.create("orders", ns, "a").await;
    cli.set_status("orders", ns, complete(output(&url, &sha)))
        .await;

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.csv");
    let (code, out, err) = cli
        .run(&["download", "orders", "-o", target.to_str().unwrap()])
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "{}: {} bytes, sha256 {sha} (verified)\n",
            target.display(),
            body.len()
        )
    );
    assert!(
        std::fs::read(&target).unwrap() == body,
        "the downloaded bytes are the object's"
    );

    // A digest that is not the manifest's: nothing kept, exit 1.
    let other = dir.path().join("other.csv");
    cli.set_status("orders", ns, complete(output(&url, &"0".repeat(64))))
        .await;
    let (code, _, err) = cli
        .run(&["download", "orders", "-o", other.to_str().unwrap()])
        .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "{} bytes with sha256 {sha}, expected {} bytes with sha256 {}; nothing was kept",
            body.len(),
            body.len(),
            "0".repeat(64)
        )),
        "{err}"
    );
    assert!(!other.exists() && !dir.path().join("other.csv.part").exists());

    // A link whose signature is not the store's is refused by the store; the signature is
    // never printed.
    let last = url.chars().last().unwrap();
    let tampered = format!(
        "{}{}",
        &url[..url.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    cli.set_status("orders", ns, complete(output(&tampered, &sha)))
        .await;
    let (code, _, err) = cli
        .run(&["download", "orders", "-o", other.to_str().unwrap()])
        .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("HTTP 403 Forbidden") && !err.contains("Signature"),
        "{err}"
    );

    // A PVC report has no link.
    cli.create("local", ns, "a").await;
    cli.set_status(
        "local",
        ns,
        complete(json!({"location": "local.csv", "rows": 1, "bytes": 1, "sha256": sha})),
    )
    .await;
    let (code, _, err) = cli.run(&["download", "local"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "ReportJob {ns}/local wrote its report to local.csv on a volume: there is no download link"
        )),
        "{err}"
    );
}
