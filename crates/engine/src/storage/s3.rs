//! Storage in an S3-compatible bucket, on the `object_store` crate: parts are multipart
//! uploads (memory stays bounded), the report is one multipart upload completed only after
//! every part is in (aborted on failure), built from server-side copies of the parts when
//! they are large enough, and a signed GET link is made for the result.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::{
    BackoffConfig, ClientOptions, MultipartId, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig, WriteMultipart,
};
use sha2::{Digest, Sha256};

use super::{Composed, Composer, Durability, ObjectWriter, Piece, PieceStream, Storage};
use crate::error::{Error, Result};

/// S3's smallest part, except the last one of an upload.
pub const MIN_PART: u64 = 5 * 1024 * 1024;
/// Size of the parts this backend uploads.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one upload in flight at once.
const UPLOAD_CONCURRENCY: usize = 2;

/// A bucket, the object store client and how to reach it.
#[derive(Clone, Debug)]
pub struct S3Bucket {
    store: Arc<AmazonS3>,
    bucket: String,
    endpoint: String,
    server_side_copy: bool,
    http: reqwest::Client,
}

/// Splits `s3://bucket/key` into bucket and key.
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

fn s3_error(bucket: &str, what: &str, e: object_store::Error) -> Error {
    let permanent = matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::NotSupported { .. }
    );
    let kind = if permanent {
        std::io::ErrorKind::PermissionDenied
    } else {
        std::io::ErrorKind::Other
    };
    let mut message = without_body(&e.to_string());
    if let Some(refused) = crate::net_guard::refused_redirect(&e) {
        message = format!("{message}: {refused}");
    }
    Error::storage(
        format!("bucket {bucket:?}: {what}"),
        std::io::Error::new(kind, message),
    )
}

/// Most bytes of a reply body read (an UploadPartCopy result is a few hundred bytes).
const MAX_REPLY: usize = 4096;

/// An object store error's text with any response body replaced by the HTTP status and
/// the S3 error code: a body is whatever the remote end chose to send, so it never goes
/// into a message, a log or a status.
fn without_body(text: &str) -> String {
    const MARK: &str = "Server returned";
    let Some(at) = text.find(MARK) else {
        let mut short: String = text.chars().take(1000).collect();
        if short.len() < text.len() {
            short.push('…');
        }
        return short;
    };
    let rest = &text[at..];
    let status = rest
        .strip_prefix("Server returned non-2xx status code: ")
        .and_then(|r| r.split(':').next())
        .map(|s| format!("HTTP {}", s.trim()))
        .unwrap_or_else(|| "an error response".to_string());
    format!("{}{status}{}", &text[..at], code_part(rest))
}

/// `", S3 error code AccessDenied"` when a reply holds a well-formed `<Code>`.
fn code_part(body: &str) -> String {
    match xml_value(body, "Code") {
        Some(code)
            if !code.is_empty()
                && code.len() <= 64
                && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') =>
        {
            format!(", S3 error code {code}")
        }
        _ => String::new(),
    }
}

/// Reads at most [`MAX_REPLY`] bytes of a reply body; `None` when it is longer.
async fn capped_body(mut response: reqwest::Response) -> reqwest::Result<Option<String>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_REPLY {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(String::from_utf8_lossy(&body).into_owned()))
}

/// The HTTP client object_store's S3 client is given: reqwest as object_store builds it
/// (timeouts, plain http only where allowed), with the network guard on
/// ([`crate::net_guard::client_builder`]): no redirect is followed (object_store's own
/// client follows up to ten, to any address), link-local answers are dropped, a link-local
/// proxy is refused.
#[derive(Debug)]
struct GuardedConnector;

impl object_store::client::HttpConnector for GuardedConnector {
    fn connect(
        &self,
        options: &ClientOptions,
    ) -> object_store::Result<object_store::client::HttpClient> {
        use object_store::ClientConfigKey as Key;
        let generic =
            |source: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
                store: "S3",
                source,
            };
        let allow_http = options
            .get_config_value(&Key::AllowHttp)
            .is_some_and(|v| v == "true");
        // No proxy from the environment: the bucket is the spec's endpoint, nothing else.
        let client = crate::net_guard::client_builder()
            .map_err(|why| generic(why.into()))?
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .user_agent(concat!("reportjob/", env!("CARGO_PKG_VERSION")))
            .https_only(!allow_http)
            .build()
            .map_err(|e| generic(Box::new(e)))?;
        Ok(object_store::client::HttpClient::new(client))
    }
}

/// Which bucket a client talks to, and how: the storage's view of a bucket destination.
#[derive(Clone, Debug, PartialEq)]
pub struct BucketConfig {
    /// The bucket's name.
    pub bucket: String,
    /// An `http://` or `https://` endpoint of an S3-compatible store.
    pub endpoint: Option<String>,
    /// The bucket's region.
    pub region: Option<String>,
    /// Path-style addressing; `None` lets the endpoint decide.
    pub path_style: Option<bool>,
    /// Assemble from server-side copies where possible.
    pub server_side_copy: bool,
}

/// Why no credentials can be found for a bucket, when none can: no static keys, no web
/// identity (IRSA), no container credentials endpoint, and the instance metadata service
/// is out of reach (the network guard keeps link-local addresses away unless the platform
/// allows them). Without this the client asks 169.254.169.254 and fails with its `403`.
pub fn missing_credentials(lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let set = |name: &str| lookup(name).is_some_and(|v| !v.trim().is_empty());
    let static_keys = set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY");
    let web_identity = set("AWS_WEB_IDENTITY_TOKEN_FILE") && set("AWS_ROLE_ARN");
    let container =
        set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") || set("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    let metadata = lookup(reportjob_core::stage_protocol::env::ALLOW_LINK_LOCAL)
        .is_some_and(|v| v.trim() == "true");
    if static_keys || web_identity || container || metadata {
        return None;
    }
    Some(
        "no credentials for the bucket: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (in a \
         cluster, spec.output.destination.bucket.credentialsSecretRef names a Secret with \
         them), or give the pods a web identity (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN)"
            .to_string(),
    )
}

impl S3Bucket {
    /// A client for the destination's bucket. Credentials and, when the spec does not name
    /// them, the endpoint and region come from the standard AWS variables
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ENDPOINT_URL`,
    /// `AWS_REGION`); `endpoint` overrides the spec's.
    pub fn connect(dest: &BucketConfig, endpoint: Option<&str>) -> Result<S3Bucket> {
        let bucket = dest.bucket.as_str();
        if let Some(why) = missing_credentials(|name| std::env::var(name).ok()) {
            return Err(Error::storage(
                format!("using the bucket {bucket}"),
                std::io::Error::new(std::io::ErrorKind::PermissionDenied, why),
            ));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let endpoint = endpoint
            .map(str::to_string)
            .or_else(|| dest.endpoint.clone())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        if let Some(endpoint) = &endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let region = dest
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_string());
        // S3-compatible stores at a custom endpoint mostly want path-style addressing.
        let path_style = dest.path_style.unwrap_or(endpoint.is_some());
        let mut options = ClientOptions::new()
            .with_allow_http(
                endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
            )
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(300));
        // Every connection resolves the endpoint again: link-local answers are dropped there
        // too, not only in `check` (a name may resolve differently the second time).
        if let Some(resolver) = crate::net_guard::resolver() {
            options = options.with_dns_resolver(resolver);
        }
        let store = builder
            .with_http_connector(GuardedConnector)
            .with_region(region)
            .with_virtual_hosted_style_request(!path_style)
            .with_client_options(options)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: 3,
                retry_timeout: Duration::from_secs(20),
            })
            .build()
            .map_err(|e| s3_error(bucket, "configuring the client", e))?;
        let http = crate::net_guard::client_builder()
            .map_err(|why| {
                Error::storage(
                    format!("using the bucket {bucket}"),
                    std::io::Error::new(std::io::ErrorKind::PermissionDenied, why),
                )
            })?
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::storage("building an HTTP client", std::io::Error::other(e)))?;
        Ok(S3Bucket {
            store: Arc::new(store),
            bucket: bucket.to_string(),
            endpoint: endpoint.unwrap_or_else(|| "AWS".to_string()),
            server_side_copy: dest.server_side_copy,
            http,
        })
    }

    /// Fails fast, naming the bucket, when it cannot be reached, does not exist or the
    /// credentials are refused.
    pub async fn check(&self) -> Result<()> {
        if let Ok(url) = url::Url::parse(&self.endpoint)
            && let Some(host) = url.host_str()
        {
            let port = url.port_or_known_default().unwrap_or(443);
            crate::net_guard::check_host(host, port, "the bucket endpoint")
                .await
                .map_err(|why| {
                    Error::storage(
                        format!("using the bucket {}", self.bucket),
                        std::io::Error::new(std::io::ErrorKind::PermissionDenied, why),
                    )
                })?;
        }
        // Listing (unlike reading a missing key) fails when the bucket does not exist.
        let probe = Path::from("reportjob-access-check");
        match self.store.list_with_delimiter(Some(&probe)).await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(e, object_store::Error::NotFound { .. })
                    || e.to_string().contains("NoSuchBucket") =>
            {
                Err(s3_error(
                    &self.bucket,
                    &format!("the bucket does not exist at {}", self.endpoint),
                    e,
                ))
            }
            Err(e) => Err(s3_error(
                &self.bucket,
                &format!("cannot use the bucket at {}", self.endpoint),
                e,
            )),
        }
    }

    fn err(&self, what: &str, key: &str, e: object_store::Error) -> Error {
        s3_error(&self.bucket, &format!("{what} {key}"), e)
    }

    /// Copies the whole of `source` as part `number` of an upload, server-side, through a
    /// signed UploadPartCopy request (object_store has no call for it).
    async fn upload_part_copy(
        &self,
        target: &Path,
        id: &MultipartId,
        number: usize,
        source: &str,
    ) -> Result<PartId> {
        let copy_source = format!("{}/{}", self.bucket, encode_key(source));
        let header = reqwest::header::HeaderValue::from_str(&copy_source)
            .map_err(|e| Error::storage("copying a part", std::io::Error::other(e)))?;
        let options = SignedUrlOptions::new()
            .with_query([("partNumber", number.to_string()), ("uploadId", id.clone())])
            .with_signed_header(
                reqwest::header::HeaderName::from_static("x-amz-copy-source"),
                header.clone(),
            );
        let url = self
            .store
            .signed_url_opts(
                reqwest::Method::PUT,
                target,
                Duration::from_secs(900),
                &options,
            )
            .await
            .map_err(|e| self.err("signing a part copy of", source, e))?;
        let response = self
            .http
            .put(url)
            .header("x-amz-copy-source", header)
            .send()
            .await
            .map_err(|e| Error::storage(format!("copying {source}"), std::io::Error::other(e)))?;
        let status = response.status();
        let context = format!("bucket {:?}: copying {source}", self.bucket);
        let body = capped_body(response)
            .await
            .map_err(|e| Error::storage(&context, std::io::Error::other(e)))?;
        if !status.is_success() {
            return Err(Error::storage(
                context,
                std::io::Error::other(format!(
                    "HTTP {status}{}",
                    code_part(body.as_deref().unwrap_or_default())
                )),
            ));
        }
        let etag = body
            .as_deref()
            .and_then(|b| xml_value(b, "ETag"))
            .ok_or_else(|| {
                Error::storage(
                    &context,
                    std::io::Error::other(format!(
                        "HTTP {status}{}, but no ETag in a reply of at most {MAX_REPLY} bytes",
                        code_part(body.as_deref().unwrap_or_default())
                    )),
                )
            })?;
        Ok(PartId {
            content_id: etag.replace("&quot;", "\""),
        })
    }
}

/// Percent-encodes a key for `x-amz-copy-source`, keeping `/`.
fn encode_key(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn xml_value<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

struct S3Writer {
    /// `None` once finished or aborted.
    upload: Option<WriteMultipart>,
    written: u64,
    key: String,
    bucket: String,
}

impl S3Writer {
    fn ended() -> Error {
        Error::storage("uploading", std::io::Error::other("the upload has ended"))
    }
}

impl Drop for S3Writer {
    /// A writer dropped unfinished (a cancelled export) aborts its multipart upload.
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            crate::cleanup_tasks().spawn_on(
                async move {
                    let _ = upload.abort().await;
                },
                &handle,
            );
        }
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, buf: &[u8]) -> Result<()> {
        let upload = self.upload.as_mut().ok_or_else(Self::ended)?;
        upload
            .wait_for_capacity(UPLOAD_CONCURRENCY)
            .await
            .map_err(|e| s3_error(&self.bucket, &format!("uploading {}", self.key), e))?;
        upload.write(buf);
        self.written += buf.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64> {
        let upload = self.upload.take().ok_or_else(Self::ended)?;
        upload.finish().await.map_err(|e| {
            s3_error(
                &self.bucket,
                &format!("completing the upload of {}", self.key),
                e,
            )
        })?;
        Ok(self.written)
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        match self.upload.take() {
            Some(upload) => upload.abort().await.map_err(|e| {
                s3_error(
                    &self.bucket,
                    &format!("aborting the upload of {}", self.key),
                    e,
                )
            }),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Storage for S3Bucket {
    fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn download_link(&self, key: &str, expires_in: Duration) -> Result<Option<String>> {
        self.store
            .signed_url(reqwest::Method::GET, &Path::from(key), expires_in)
            .await
            .map(|u| Some(u.to_string()))
            .map_err(|e| s3_error(&self.bucket, "signing the download link", e))
    }

    async fn read(&self, key: &str) -> Result<Option<Bytes>> {
        match self.store.get(&Path::from(key)).await {
            Ok(result) => result
                .bytes()
                .await
                .map(Some)
                .map_err(|e| self.err("reading", key, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("reading", key, e)),
        }
    }

    async fn read_range(&self, key: &str, start: u64, len: u64) -> Result<Bytes> {
        let end = start.saturating_add(len);
        if len == 0 {
            return Ok(Bytes::new());
        }
        self.store
            .get_range(&Path::from(key), start..end)
            .await
            .map_err(|e| self.err("reading", key, e))
    }

    async fn write(&self, key: &str, data: Bytes) -> Result<()> {
        self.store
            .put(&Path::from(key), PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|e| self.err("writing", key, e))
    }

    async fn create(&self, key: &str, _durability: Durability) -> Result<Box<dyn ObjectWriter>> {
        let upload = self
            .store
            .put_multipart(&Path::from(key))
            .await
            .map_err(|e| self.err("starting the upload of", key, e))?;
        Ok(Box::new(S3Writer {
            upload: Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)),
            written: 0,
            key: key.to_string(),
            bucket: self.bucket.clone(),
        }))
    }

    async fn read_pieces(&self, key: &str) -> Result<Option<PieceStream>> {
        let result = match self.store.get(&Path::from(key)).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err("reading", key, e)),
        };
        let (bucket, key) = (self.bucket.clone(), key.to_string());
        Ok(Some(
            result
                .into_stream()
                .map_err(move |e| s3_error(&bucket, &format!("reading {key}"), e))
                .boxed(),
        ))
    }

    async fn sha256(&self, key: &str) -> Result<Option<String>> {
        let result = match self.store.get(&Path::from(key)).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err("reading", key, e)),
        };
        let mut hasher = Sha256::new();
        let mut stream = result.into_stream();
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| self.err("reading", key, e))?
        {
            hasher.update(&chunk);
        }
        Ok(Some(hex::encode(hasher.finalize())))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>> {
        match self.store.head(&Path::from(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("reading", key, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("deleting", key, e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let prefix_path = Path::from(prefix.trim_end_matches('/'));
        let listed = self
            .store
            .list(Some(&prefix_path))
            .map_ok(|meta| meta.location)
            .boxed();
        self.store
            .delete_stream(listed)
            .try_collect::<Vec<_>>()
            .await
            .map(|_| ())
            .map_err(|e| self.err("deleting", prefix, e))
    }

    async fn compose(&self, target: &str, _scratch: &str) -> Result<Box<dyn Composer>> {
        let path = Path::from(target);
        let id = self
            .store
            .create_multipart(&path)
            .await
            .map_err(|e| self.err("starting the upload of", target, e))?;
        Ok(Box::new(S3Composer {
            bucket: self.clone(),
            path,
            id: Some(id),
            parts: Vec::new(),
            buffer: Vec::new(),
            hasher: Sha256::new(),
            total: 0,
            copied: 0,
        }))
    }
}

/// The report as one multipart upload: a piece is copied server-side when it can be a part
/// of its own (nothing buffered before it, at least 5 MiB), otherwise its bytes stream
/// through a buffer that is uploaded in parts. Every byte is still read once, to hash it.
struct S3Composer {
    bucket: S3Bucket,
    path: Path,
    /// `None` once completed or aborted.
    id: Option<MultipartId>,
    parts: Vec<PartId>,
    buffer: Vec<u8>,
    hasher: Sha256,
    total: u64,
    copied: u64,
}

impl S3Composer {
    fn id(&self) -> Result<MultipartId> {
        self.id.clone().ok_or_else(|| {
            Error::storage("assembling", std::io::Error::other("the upload has ended"))
        })
    }

    async fn upload_buffer(&mut self) -> Result<()> {
        let id = self.id()?;
        let data = Bytes::from(std::mem::take(&mut self.buffer));
        let part = self
            .bucket
            .store
            .put_part(&self.path, &id, self.parts.len(), PutPayload::from(data))
            .await
            .map_err(|e| {
                self.bucket
                    .err("uploading a part of", self.path.as_ref(), e)
            })?;
        self.parts.push(part);
        Ok(())
    }
}

impl Drop for S3Composer {
    /// An upload left unfinished is aborted, so no orphaned multipart upload remains.
    fn drop(&mut self) {
        if let (Some(id), Ok(handle)) = (self.id.take(), tokio::runtime::Handle::try_current()) {
            let store = self.bucket.store.clone();
            let path = self.path.clone();
            crate::cleanup_tasks().spawn_on(
                async move {
                    let _ = store.abort_multipart(&path, &id).await;
                },
                &handle,
            );
        }
    }
}

#[async_trait]
impl Composer for S3Composer {
    async fn append(&mut self, piece: Piece) -> Result<()> {
        let source = Path::from(piece.key.as_str());
        let result = self
            .bucket
            .store
            .get(&source)
            .await
            .map_err(|e| self.bucket.err("reading", &piece.key, e))?;
        let size = result.meta.size;
        let copy = self.bucket.server_side_copy && self.buffer.is_empty() && size >= MIN_PART;
        let mut check = piece.check();
        let mut stream = result.into_stream();
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| self.bucket.err("reading", &piece.key, e))?
        {
            self.hasher.update(&chunk);
            check.update(&chunk);
            if !copy {
                self.buffer.extend_from_slice(&chunk);
                if self.buffer.len() >= PART_SIZE {
                    self.upload_buffer().await?;
                }
            }
        }
        check.verify()?;
        if copy {
            let id = self.id()?;
            let number = self.parts.len() + 1;
            let part = self
                .bucket
                .upload_part_copy(&self.path, &id, number, &piece.key)
                .await?;
            self.parts.push(part);
            self.copied += 1;
        }
        self.total += size;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<Composed> {
        if !self.buffer.is_empty() || self.parts.is_empty() {
            self.upload_buffer().await?;
        }
        let id = self.id()?;
        let parts = std::mem::take(&mut self.parts);
        self.bucket
            .store
            .complete_multipart(&self.path, &id, parts)
            .await
            .map_err(|e| {
                self.bucket
                    .err("completing the upload of", self.path.as_ref(), e)
            })?;
        self.id = None;
        let hasher = std::mem::take(&mut self.hasher);
        Ok(Composed {
            bytes: self.total,
            sha256: hex::encode(hasher.finalize()),
            server_side_copies: self.copied,
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        if let Some(id) = self.id.take() {
            self.bucket
                .store
                .abort_multipart(&self.path, &id)
                .await
                .map_err(|e| {
                    self.bucket
                        .err("aborting the upload of", self.path.as_ref(), e)
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_without_any_credentials_is_named_before_the_metadata_service_is_asked() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let none = missing_credentials(env(&[])).unwrap();
        assert!(none.starts_with("no credentials for the bucket"), "{none}");
        assert!(missing_credentials(env(&[("AWS_ACCESS_KEY_ID", "a")])).is_some());
        for given in [
            &[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")][..],
            &[
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
                ("AWS_ROLE_ARN", "arn"),
            ][..],
            &[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/c")][..],
            &[("REPORTJOB_ALLOW_LINK_LOCAL", "true")][..],
        ] {
            let given: &'static [(&'static str, &'static str)] =
                Box::leak(given.to_vec().into_boxed_slice());
            assert_eq!(missing_credentials(env(given)), None, "{given:?}");
        }
    }

    #[test]
    fn urls_split_into_bucket_and_key() {
        assert_eq!(split_url("s3://b/dir/r.csv"), Some(("b", "dir/r.csv")));
        assert_eq!(split_url("s3://b/"), None);
        assert_eq!(split_url("gs://b/k"), None);
    }

    #[test]
    fn copy_source_keys_are_encoded() {
        assert_eq!(encode_key("a b/c+d.csv"), "a%20b/c%2Bd.csv");
    }

    #[test]
    fn response_bodies_never_reach_messages() {
        let text = "Generic S3 error: Error performing PUT http://h/b/k in 2ms - Server returned \
                    non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>AccessDenied\
                    </Code><Message>secret token abc</Message></Error>";
        let shown = without_body(text);
        assert_eq!(
            shown,
            "Generic S3 error: Error performing PUT http://h/b/k in 2ms - HTTP 403 Forbidden, \
             S3 error code AccessDenied"
        );
        let shown = without_body(
            "x - Server returned error response: <Error><Code>Slow Down\
                                  </Code><Message>secret</Message></Error>",
        );
        assert_eq!(
            shown, "x - an error response",
            "a malformed code is not shown"
        );
        assert!(without_body(&"y".repeat(5000)).chars().count() <= 1001);
    }

    #[test]
    fn etag_is_read_from_copy_result() {
        let xml = "<CopyPartResult><LastModified>x</LastModified><ETag>&quot;abc&quot;</ETag></CopyPartResult>";
        assert_eq!(xml_value(xml, "ETag"), Some("&quot;abc&quot;"));
    }
}
