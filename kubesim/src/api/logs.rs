//! `GET .../pods/<name>/log`: the container output the kubelet stand-in keeps in
//! `<data-dir>/logs/<ns>/<pod>.log`, with `tailLines`, and `follow=true` streaming it (chunked) until the
//! container has terminated and every byte has been sent, as upstream's kubelet log streaming does
//! (`pkg/registry/core/pod/rest/log.go` proxies the kubelet's `/containerLogs` stream, which
//! `pkg/kubelet/kuberuntime/logs` follows until the container exits).

use super::error::ApiResult;
use super::resources::ResourceInfo;
use super::server::App;
use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often a follower looks for new output.
const POLL: Duration = Duration::from_millis(100);

/// Serve a pod's log, following it when asked.
pub fn pod_log(
    app: &Arc<App>,
    ri: &ResourceInfo,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
) -> ApiResult<Response> {
    app.store.lock().get(ri, ns, name)?;
    let path = app
        .data_dir
        .join("logs")
        .join(ns)
        .join(format!("{name}.log"));
    let bytes = std::fs::read(&path).unwrap_or_default();
    let offset = bytes.len() as u64;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let text = match q.get("tailLines").and_then(|t| t.parse::<usize>().ok()) {
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            lines[start..].iter().map(|l| format!("{l}\n")).collect()
        }
        None => text,
    };
    let mut r = if q.get("follow").is_some_and(|f| f == "true") {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let (store, ri, ns, name) = (
            app.store.clone(),
            ri.clone(),
            ns.to_string(),
            name.to_string(),
        );
        tokio::spawn(async move {
            if !text.is_empty() && tx.send(Bytes::from(text)).await.is_err() {
                return;
            }
            let mut offset = offset;
            loop {
                // Look at the pod before reading: output written before it terminated is then on disk.
                let done = store
                    .lock()
                    .get(&ri, &ns, &name)
                    .map_or(true, |p| terminated(&p));
                let more = read_from(&path, offset);
                if !more.is_empty() {
                    offset += more.len() as u64;
                    if tx.send(Bytes::from(more)).await.is_err() {
                        return;
                    }
                }
                if done || tx.is_closed() {
                    return;
                }
                tokio::time::sleep(POLL).await;
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
        });
        Response::new(Body::from_stream(stream))
    } else {
        Response::new(Body::from(text))
    };
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    Ok(r)
}

/// Whether the pod's containers have all run to completion (the pod is `Succeeded`/`Failed`, or
/// every container status is `terminated`).
fn terminated(pod: &Value) -> bool {
    if matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    ) {
        return true;
    }
    pod["status"]["containerStatuses"]
        .as_array()
        .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["state"]["terminated"].is_object()))
}

/// The bytes of `path` from `offset` on (none when it does not exist yet).
fn read_from(path: &std::path::Path, offset: u64) -> Vec<u8> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut out = vec![];
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(SeekFrom::Start(offset)).is_ok()
    {
        let _ = f.read_to_end(&mut out);
    }
    out
}
