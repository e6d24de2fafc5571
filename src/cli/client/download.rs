//! `reportjob download NAME [-o FILE]`: fetches a bucket report through the signed link in
//! its status and keeps it only when its size and sha256 are the manifest's (as the status
//! records them).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use kube::api::Api;
use sha2::{Digest, Sha256};

use super::cluster::{ClusterArgs, connect, get_reportjob};
use super::exit::{CommandError, CommandResult, Exit, finish};
use super::output::outcome;
use crate::api::{OutputStatus, ReportJob};

/// `reportjob download`.
#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// Name of the ReportJob.
    pub name: String,
    /// Cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The file to write. Default: the object key's last component, in the current directory.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `reportjob download`.
pub async fn download(args: DownloadArgs) -> i32 {
    finish(download_inner(args).await)
}

/// The signed link and the expected size and digest of a finished bucket report, or why there
/// is nothing to download.
pub fn link(
    rj: &ReportJob,
    ns: &str,
    now: jiff::Timestamp,
) -> Result<(url::Url, OutputStatus), CommandError> {
    let name = kube::ResourceExt::name_any(rj);
    let status = rj.status.clone().unwrap_or_default();
    let output = match (outcome(rj), status.output) {
        (Some(true), Some(output)) => output,
        (Some(false), _) => {
            return Err(CommandError::failed(format!(
                "ReportJob {ns}/{name} failed: there is no report (`reportjob status {name} -n {ns}`)"
            )));
        }
        _ => {
            return Err(CommandError::failed(format!(
                "ReportJob {ns}/{name} has no report yet (phase {}): `reportjob wait {name} -n {ns}` first",
                status.phase.map_or("Pending", |p| p.as_str())
            )));
        }
    };
    let Some(url) = output.url.clone() else {
        return Err(CommandError::failed(format!(
            "ReportJob {ns}/{name} wrote its report to {} on a volume: there is no download link \
             (read it from the PersistentVolumeClaim)",
            output.location
        )));
    };
    if let Some(expires) = &output.url_expires_at
        && expires.0 <= now
    {
        return Err(CommandError::failed(format!(
            "the download link of ReportJob {ns}/{name} expired at {}; fetch {} with bucket credentials",
            expires.0, output.location
        )));
    }
    let parsed = url::Url::parse(&url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        .ok_or_else(|| {
            CommandError::failed(format!(
                "ReportJob {ns}/{name}: status.output.url is not an http(s) URL"
            ))
        })?;
    if output.bytes < 0
        || output.sha256.len() != 64
        || !output.sha256.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(CommandError::failed(format!(
            "ReportJob {ns}/{name}: status.output has no valid bytes and sha256 to check the download against"
        )));
    }
    Ok((parsed, output))
}

/// The default file name: the last component of the report's location.
fn default_file(location: &str) -> PathBuf {
    let last = location.rsplit('/').next().unwrap_or_default();
    PathBuf::from(if last.is_empty() || last == "." || last == ".." {
        "report"
    } else {
        last
    })
}

async fn download_inner(args: DownloadArgs) -> CommandResult {
    let (client, ns) = connect(&args.cluster).await?;
    let api: Api<ReportJob> = Api::namespaced(client, &ns);
    let rj = get_reportjob(&api, &args.name, &ns).await?;
    let (url, expected) = link(&rj, &ns, jiff::Timestamp::now())?;
    let file = args
        .output
        .unwrap_or_else(|| default_file(&expected.location));
    let partial = partial_path(&file);
    let result = fetch(&url, &partial, &expected).await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &file).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        CommandError::failed(format!("cannot write {}: {e}", file.display()))
    })?;
    println!(
        "{}: {} bytes, sha256 {} (verified)",
        file.display(),
        expected.bytes,
        expected.sha256
    );
    Ok(Exit::Ok)
}

/// `<file>.part`, beside it, where the bytes go until they are verified.
fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    file.with_file_name(name)
}

/// Downloads `url` into `partial`, hashing as it goes; errors when the size or the digest
/// differ from `expected`.
pub async fn fetch(
    url: &url::Url,
    partial: &Path,
    expected: &OutputStatus,
) -> Result<(), CommandError> {
    // The link carries a signature: never print it.
    let shown = format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.path()
    );
    // The link was checked against the bucket's endpoint; where a redirect points was not.
    let client = crate::net_guard::client_builder()
        .and_then(|b| b.build().map_err(|e| e.to_string()))
        .map_err(|why| CommandError::failed(format!("downloading {shown}: {why}")))?;
    let mut response = client.get(url.clone()).send().await.map_err(|e| {
        CommandError::no_result(format!(
            "downloading {shown}: {}",
            crate::error::error_chain(&e.without_url())
        ))
    })?;
    if !response.status().is_success() {
        return Err(CommandError::failed(format!(
            "downloading {shown}: HTTP {}",
            response.status()
        )));
    }
    let mut out = std::fs::File::create(partial)
        .map_err(|e| CommandError::failed(format!("cannot create {}: {e}", partial.display())))?;
    let mut hasher = Sha256::new();
    let mut bytes: i64 = 0;
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        CommandError::no_result(format!(
            "downloading {shown}: {}",
            crate::error::error_chain(&e.without_url())
        ))
    })? {
        bytes += chunk.len() as i64;
        if bytes > expected.bytes {
            return Err(CommandError::failed(format!(
                "downloading {shown}: more than the {} bytes the manifest records; nothing was kept",
                expected.bytes
            )));
        }
        hasher.update(&chunk);
        out.write_all(&chunk).map_err(|e| {
            CommandError::failed(format!("cannot write {}: {e}", partial.display()))
        })?;
    }
    out.sync_all()
        .map_err(|e| CommandError::failed(format!("cannot write {}: {e}", partial.display())))?;
    let digest = hex::encode(hasher.finalize());
    if bytes != expected.bytes || !digest.eq_ignore_ascii_case(&expected.sha256) {
        return Err(CommandError::failed(format!(
            "the download of {shown} does not match the manifest: {bytes} bytes with sha256 {digest}, \
             expected {} bytes with sha256 {}; nothing was kept",
            expected.bytes, expected.sha256
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rj(status: serde_json::Value) -> ReportJob {
        serde_json::from_value(json!({
            "apiVersion": "reporting.dev/v1alpha1", "kind": "ReportJob",
            "metadata": {"name": "r", "namespace": "ns"},
            "spec": {
                "source": {"connectionSecretRef": {"name": "db"}, "table": "t", "keyColumn": "id"},
                "output": {"destination": {"bucket": {"url": "s3://b/k.csv"}}}
            },
            "status": status,
        }))
        .expect("a ReportJob")
    }

    fn done(output: serde_json::Value) -> serde_json::Value {
        json!({"phase": "Succeeded", "output": output, "conditions": [{"type": "Complete",
               "status": "True", "reason": "ReportPublished", "message": "",
               "lastTransitionTime": "2024-01-01T00:00:00Z"}]})
    }

    #[test]
    fn only_a_finished_bucket_report_with_a_live_link_is_downloaded() {
        let now: jiff::Timestamp = "2025-01-01T00:00:00Z".parse().expect("time");
        let sha = "a".repeat(64);
        let good = json!({"location": "s3://b/daily/k.csv", "rows": 1, "bytes": 5, "sha256": sha,
                          "url": "http://127.0.0.1:9/b/daily/k.csv?X-Amz-Signature=s",
                          "urlExpiresAt": "2025-01-02T00:00:00Z"});
        let (url, out) = link(&rj(done(good.clone())), "ns", now).expect("a link");
        assert_eq!(url.path(), "/b/daily/k.csv");
        assert_eq!(default_file(&out.location), PathBuf::from("k.csv"));
        let refused = |status: serde_json::Value| {
            link(&rj(status), "ns", now)
                .err()
                .map(|e| e.message)
                .unwrap_or_default()
        };
        assert!(refused(json!({"phase": "Running"})).contains("has no report yet (phase Running)"));
        let mut pvc = good.clone();
        pvc.as_object_mut().map(|o| o.remove("url"));
        assert!(refused(done(pvc)).contains("there is no download link"));
        let mut expired = good.clone();
        expired["urlExpiresAt"] = json!("2024-12-31T00:00:00Z");
        assert!(refused(done(expired)).contains("expired at 2024-12-31T00:00:00Z"));
        let mut ftp = good.clone();
        ftp["url"] = json!("file:///etc/passwd");
        assert!(refused(done(ftp)).contains("not an http(s) URL"));
        let mut bad_sha = good;
        bad_sha["sha256"] = json!("xyz");
        assert!(refused(done(bad_sha)).contains("no valid bytes and sha256"));
        assert_eq!(
            partial_path(Path::new("out/r.csv")),
            PathBuf::from("out/r.csv.part")
        );
    }
}
