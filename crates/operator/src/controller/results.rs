//! Stage results read back from pods are untrusted input: these checks turn a `Planned` or
//! `Assembled` result into bounded, typed values before anything of it reaches the
//! ReportJob's status. A result that does not fit the run it claims to belong to is
//! refused, never shown.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use url::Url;

use super::jobs::OUTPUT_MOUNT;
use reportjob_core::api::valid::{Destination, ValidSpec};
use reportjob_core::api::{OutputFileStatus, OutputSnapshot, OutputStatus};
use reportjob_core::stage_protocol::MAX_CHUNKS;
use reportjob_core::staging::RunId;

/// Whether `pod` was created by `job`: its controller owner reference carries the Job's
/// UID. Labels alone prove nothing (anyone who may create pods in the namespace can copy
/// them), so only such pods' results count.
pub fn created_by(pod: &impl kube::Resource, job: &Job) -> bool {
    let Some(uid) = job.metadata.uid.as_deref() else {
        return false;
    };
    pod.meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.kind == "Job" && o.uid == uid)
}

/// A `Planned` result, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedPlan {
    /// The run id, the one the plan Job was given.
    pub run_id: String,
    /// Chunks in the plan (at most [`MAX_CHUNKS`]).
    pub chunks: i64,
    /// `sha256:` and 64 hex digits.
    pub digest: String,
}

/// Checks a `Planned` result against the run the controller started.
pub fn planned(
    run_id: &str,
    chunks: u64,
    digest: &str,
    expected_run: &str,
) -> Result<CheckedPlan, String> {
    let run: RunId = run_id
        .parse()
        .map_err(|e| format!("its run id is not valid: {e}"))?;
    if run.as_str() != expected_run {
        return Err(format!(
            "it names run {run_id:?}, but the plan Job was started for run {expected_run:?}"
        ));
    }
    let chunks = usize::try_from(chunks)
        .ok()
        .filter(|c| *c <= MAX_CHUNKS)
        .ok_or_else(|| format!("{chunks} chunks is more than the {MAX_CHUNKS} a plan may have"))?;
    if !is_sha256_digest(digest) {
        return Err(format!(
            "its digest {:?} is not sha256:<64 hex digits>",
            shorten(digest)
        ));
    }
    Ok(CheckedPlan {
        run_id: run_id.to_string(),
        chunks: i64::try_from(chunks).unwrap_or(i64::MAX),
        digest: digest.to_string(),
    })
}

/// What an `Assembled` result says.
pub struct Assembled<'a> {
    /// Data rows.
    pub rows: u64,
    /// Bytes of the report.
    pub bytes: u64,
    /// SHA-256 of the report, hex.
    pub sha256: &'a str,
    /// Where it is, as the pod sees it.
    pub location: &'a str,
    /// A signed download link.
    pub url: Option<&'a str>,
    /// When the link expires.
    pub url_expires_at: Option<jiff::Timestamp>,
    /// The snapshot the report was read under (parsed strictly with the result).
    pub snapshot: Option<&'a reportjob_core::snapshot::SnapshotRecord>,
    /// How many files a split report has.
    pub file_count: Option<u64>,
    /// The first of them.
    pub files: &'a [reportjob_core::stage_protocol::AssembledFile],
}

/// Checks an `Assembled` result against the destination of `spec`: the location must be the
/// report's own (`pvc://<claim>/<path>` for a volume, `s3://<bucket>/<key>` for a bucket),
/// a link may only point at the destination's endpoint, and the figures must be in range.
pub fn assembled(spec: &ValidSpec, result: &Assembled) -> Result<OutputStatus, String> {
    let rows = i64::try_from(result.rows).map_err(|_| "its row count is out of range")?;
    let bytes = i64::try_from(result.bytes).map_err(|_| "its byte count is out of range")?;
    if !is_hex_sha256(result.sha256) {
        return Err(format!(
            "its sha256 {:?} is not 64 hex digits",
            shorten(result.sha256)
        ));
    }
    // A split report is its manifest; its files are named after the report.
    let split = spec.output.split.is_some();
    let named = |report: &str| match split {
        true => format!("{report}.manifest.json"),
        false => report.to_string(),
    };
    let files = checked_files(spec, result)?;
    let location = match &spec.output.destination {
        Destination::Pvc { claim, path } => {
            let path = named(path.as_str());
            if result.location != format!("{OUTPUT_MOUNT}/{path}") {
                return Err(format!(
                    "it places the report at {:?}, not at the spec's path {path:?}",
                    shorten(result.location)
                ));
            }
            if result.url.is_some() {
                return Err("it carries a download link for a volume destination".into());
            }
            format!("pvc://{claim}/{path}")
        }
        Destination::Bucket(bucket) => {
            let wanted = named(&bucket.url());
            if result.location != wanted {
                return Err(format!(
                    "it places the report at {:?}, not at the spec's {wanted}",
                    shorten(result.location)
                ));
            }
            if let Some(url) = result.url {
                check_link(url, &bucket.bucket, bucket.endpoint.as_deref())?;
            }
            wanted
        }
    };
    Ok(OutputStatus {
        location,
        url: result.url.map(str::to_string),
        url_expires_at: result.url_expires_at.map(Time),
        snapshot: result.snapshot.map(|s| OutputSnapshot {
            id: s.id.to_string(),
            taken_at: Time(s.taken_at),
        }),
        rows,
        bytes,
        sha256: result.sha256.to_string(),
        file_count: result.file_count.map(|n| n as i64),
        files,
    })
}

/// The files of a split report's result: only for a spec that splits, at most as many as
/// it counts, each with figures in range and a hash; their places come from the spec.
fn checked_files(spec: &ValidSpec, result: &Assembled) -> Result<Vec<OutputFileStatus>, String> {
    let Some(count) = result.file_count else {
        return match (spec.output.split, result.files.is_empty()) {
            (None, true) => Ok(Vec::new()),
            (Some(_), _) => Err("it does not say how many files the split report has".into()),
            (None, false) => Err("it lists files, but the spec does not split the report".into()),
        };
    };
    if spec.output.split.is_none() {
        return Err("it counts files, but the spec does not split the report".into());
    }
    if count == 0 || count > MAX_CHUNKS as u64 || result.files.len() as u64 > count {
        return Err(format!(
            "it counts {count} files and lists {}: a split report has 1 to {MAX_CHUNKS}, and lists no more than it counts",
            result.files.len()
        ));
    }
    let base = match &spec.output.destination {
        Destination::Pvc { claim, path } => format!("pvc://{claim}/{path}"),
        Destination::Bucket(bucket) => bucket.url(),
    };
    result
        .files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            if !is_hex_sha256(&file.sha256) {
                return Err(format!(
                    "the sha256 {:?} of its file {} is not 64 hex digits",
                    shorten(&file.sha256),
                    i + 1
                ));
            }
            let figure = |n: u64| {
                i64::try_from(n)
                    .map_err(|_| format!("the figures of its file {} are out of range", i + 1))
            };
            Ok(OutputFileStatus {
                location: reportjob_core::split::file_key(&base, i + 1),
                rows: figure(file.rows)?,
                bytes: figure(file.bytes)?,
                sha256: file.sha256.clone(),
            })
        })
        .collect()
}

/// A download link must be http(s) on the destination's endpoint (or, for the bucket's
/// virtual-hosted form, its `<bucket>.` subdomain); without an endpoint, on AWS S3.
fn check_link(link: &str, bucket: &str, endpoint: Option<&str>) -> Result<(), String> {
    let url = Url::parse(link).map_err(|e| format!("its download link is not a URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!(
            "its download link has scheme {:?}, not http(s)",
            url.scheme()
        ));
    }
    let host = url.host_str().unwrap_or_default();
    let allowed = match endpoint.and_then(|e| Url::parse(e).ok()) {
        Some(endpoint) => {
            let want = endpoint.host_str().unwrap_or_default();
            (host == want || host == format!("{bucket}.{want}"))
                && url.port_or_known_default() == endpoint.port_or_known_default()
        }
        None => url.scheme() == "https" && host.ends_with(".amazonaws.com"),
    };
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "its download link points at {host:?}, not at the bucket's endpoint"
        ))
    }
}

fn is_hex_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_sha256_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(is_hex_sha256)
}

/// At most 100 characters of a value, for a message.
fn shorten(text: &str) -> String {
    text.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use reportjob_core::api::load::load_valid_str;

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn spec(destination: &str) -> ValidSpec {
        load_valid_str(
            &format!(
                "apiVersion: reporting.dev/v1alpha1\nkind: ReportJob\nmetadata: {{name: r}}\nspec:\n  source:\n    connectionSecretRef: {{name: db, key: url}}\n    table: t\n    keyColumn: id\n  output:\n    destination:\n{destination}\n"
            ),
            "t",
        )
        .expect("valid")
        .spec
    }

    fn pvc() -> ValidSpec {
        spec("      pvc: {claimName: reports, path: out/r.csv}")
    }

    fn bucket(endpoint: &str) -> ValidSpec {
        spec(&format!(
            "      bucket: {{url: 's3://reports/out/r.csv', endpoint: '{endpoint}'}}"
        ))
    }

    fn result<'a>(location: &'a str, url: Option<&'a str>) -> Assembled<'a> {
        Assembled {
            rows: 10,
            bytes: 100,
            sha256: HASH,
            location,
            url,
            url_expires_at: None,
            snapshot: None,
            file_count: None,
            files: &[],
        }
    }

    #[test]
    fn only_pods_the_stage_job_created_count() {
        let job = Job {
            metadata: ObjectMeta {
                uid: Some("job-uid".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let pod = |uid: &str, controller: bool| Pod {
            metadata: ObjectMeta {
                owner_references: Some(vec![OwnerReference {
                    api_version: "batch/v1".into(),
                    kind: "Job".into(),
                    name: "orders-plan".into(),
                    uid: uid.into(),
                    controller: Some(controller),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(created_by(&pod("job-uid", true), &job));
        // Same labels and name, another owner (or none, or not as controller): ignored.
        assert!(!created_by(&pod("other-uid", true), &job));
        assert!(!created_by(&pod("job-uid", false), &job));
        assert!(!created_by(&Pod::default(), &job));
    }

    #[test]
    fn a_plan_must_belong_to_the_run_and_be_in_range() {
        let digest = format!("sha256:{HASH}");
        let ok = planned("rj-0123456789ab", 12, &digest, "rj-0123456789ab").expect("ok");
        assert_eq!((ok.chunks, ok.digest.as_str()), (12, digest.as_str()));
        for (run, chunks, digest, why) in [
            ("rj-other", 12, digest.as_str(), "started for run"),
            ("../../etc", 12, digest.as_str(), "run id is not valid"),
            ("rj-0123456789ab", 5_000_000, digest.as_str(), "more than"),
            ("rj-0123456789ab", 12, "sha256:abc", "not sha256"),
            ("rj-0123456789ab", 12, "md5:x", "not sha256"),
        ] {
            let err = planned(run, chunks, digest, "rj-0123456789ab").expect_err(why);
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn a_volume_report_must_be_at_the_specs_path_without_a_link() {
        let ok = assembled(&pvc(), &result("/reportjob/output/out/r.csv", None)).expect("ok");
        assert_eq!(ok.location, "pvc://reports/out/r.csv");
        for (location, url) in [
            ("/reportjob/output/elsewhere.csv", None),
            ("/etc/passwd", None),
            (
                "/reportjob/output/out/r.csv",
                Some("https://evil.example/phish"),
            ),
        ] {
            assert!(
                assembled(&pvc(), &result(location, url)).is_err(),
                "{location} {url:?}"
            );
        }
        let mut bad_hash = result("/reportjob/output/out/r.csv", None);
        bad_hash.sha256 = "not a hash";
        assert!(assembled(&pvc(), &bad_hash).is_err());
    }

    #[test]
    fn a_split_report_is_its_manifest_and_its_files_are_named_by_the_spec() {
        let split =
            spec("      pvc: {claimName: reports, path: out/r.csv}\n    split: {maxRows: 10}");
        let file = |sha256: &str| reportjob_core::stage_protocol::AssembledFile {
            rows: 10,
            bytes: 50,
            sha256: sha256.into(),
        };
        let files = [file(HASH), file(HASH)];
        let mut claim = result("/reportjob/output/out/r.csv.manifest.json", None);
        claim.file_count = Some(5);
        claim.files = &files;
        let ok = assembled(&split, &claim).expect("ok");
        assert_eq!(ok.location, "pvc://reports/out/r.csv.manifest.json");
        assert_eq!(ok.file_count, Some(5));
        let locations: Vec<&str> = ok.files.iter().map(|f| f.location.as_str()).collect();
        assert_eq!(
            locations,
            [
                "pvc://reports/out/r-00001.csv",
                "pvc://reports/out/r-00002.csv"
            ]
        );
        // What a forged or confused pod might claim.
        let bad = [file("not a hash")];
        let cases: [(&ValidSpec, &str, Option<u64>, &[_], &str); 6] = [
            (
                &split,
                "/reportjob/output/out/r.csv",
                Some(5),
                &files,
                "not at the spec's path",
            ),
            (
                &split,
                "/reportjob/output/out/r.csv.manifest.json",
                None,
                &files,
                "how many files",
            ),
            (
                &split,
                "/reportjob/output/out/r.csv.manifest.json",
                Some(1),
                &files,
                "lists no more",
            ),
            (
                &split,
                "/reportjob/output/out/r.csv.manifest.json",
                Some(0),
                &[],
                "1 to",
            ),
            (
                &split,
                "/reportjob/output/out/r.csv.manifest.json",
                Some(3),
                &bad,
                "not 64 hex",
            ),
            (
                &pvc(),
                "/reportjob/output/out/r.csv",
                Some(2),
                &files,
                "does not split",
            ),
        ];
        for (spec, location, count, files, why) in cases {
            let mut claim = result(location, None);
            claim.file_count = count;
            claim.files = files;
            let err = assembled(spec, &claim).expect_err(why);
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn a_bucket_link_must_point_at_the_buckets_endpoint() {
        let path_style = bucket("http://127.0.0.1:9000");
        let url = "http://127.0.0.1:9000/reports/out/r.csv?X-Amz-Signature=1";
        let ok = assembled(&path_style, &result("s3://reports/out/r.csv", Some(url))).expect(url);
        assert_eq!(ok.url.as_deref(), Some(url));
        let virtual_hosted = bucket("https://s3.store.example");
        let url = "https://reports.s3.store.example/out/r.csv?X-Amz-Signature=1";
        assert!(
            assembled(
                &virtual_hosted,
                &result("s3://reports/out/r.csv", Some(url))
            )
            .is_ok()
        );
        let url = "https://reports.s3.store.example:8443/out/r.csv";
        assert!(
            assembled(
                &virtual_hosted,
                &result("s3://reports/out/r.csv", Some(url))
            )
            .is_err()
        );
        let spec = path_style;
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:9001/reports/out/r.csv",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(
                assembled(&spec, &result("s3://reports/out/r.csv", Some(url))).is_err(),
                "{url}"
            );
        }
        assert!(assembled(&spec, &result("s3://other/out/r.csv", None)).is_err());
        // Without an endpoint, only AWS S3 over https.
        let aws = spec_without_endpoint();
        assert!(
            assembled(
                &aws,
                &result(
                    "s3://reports/out/r.csv",
                    Some("https://reports.s3.eu-west-1.amazonaws.com/out/r.csv?X-Amz-Signature=1")
                )
            )
            .is_ok()
        );
        assert!(
            assembled(
                &aws,
                &result(
                    "s3://reports/out/r.csv",
                    Some("http://reports.s3.eu-west-1.amazonaws.com/out/r.csv")
                )
            )
            .is_err()
        );
    }

    fn spec_without_endpoint() -> ValidSpec {
        spec("      bucket: {url: 's3://reports/out/r.csv', region: eu-west-1}")
    }
}
