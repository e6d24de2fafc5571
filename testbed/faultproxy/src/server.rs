//! The proxy's listening side: plain HTTP/1.1 connections from the controller, each request
//! resolved to its verb and resource, counted, then answered with a pending fault or
//! forwarded upstream. Connections can be closed from outside (`drop_connections`) or by a
//! `Reset` fault.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, broadcast};

use crate::request_info::{self, RequestInfo};
use crate::{Fault, ProxyBody, Shared, status, upstream, watch};

/// Accepts connections until the runtime stops.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, shared.clone()));
            }
            Err(e) => {
                // Out of descriptors or the like: back off rather than spin.
                tracing::warn!("faultproxy: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one client connection until it ends, a request on it gets `Fault::Reset`, or
/// `drop_connections` is called. Ending this future drops the socket.
async fn connection(stream: TcpStream, shared: Arc<Shared>) {
    let mut dropped = shared.connections.subscribe();
    let reset = Arc::new(Notify::new());
    let service = {
        let reset = reset.clone();
        let shared = shared.clone();
        service_fn(move |request| handle(shared.clone(), reset.clone(), request))
    };
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = conn => {
            if let Err(e) = result {
                tracing::debug!("faultproxy: client connection: {e}");
            }
        }
        () = reset.notified() => tracing::debug!("faultproxy: connection reset (fault)"),
        _ = dropped.changed() => tracing::debug!("faultproxy: connection dropped"),
    }
}

async fn handle(
    shared: Arc<Shared>,
    reset: Arc<Notify>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if shared.debug_requests
        && request.method() == http::Method::GET
        && request.uri().path() == "/debug/requests"
    {
        // The proxy's own endpoint: neither forwarded nor counted.
        return Ok(json_response(StatusCode::OK, &shared.requests_json()));
    }
    let info = request_info::resolve(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    );
    let agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split(['/', ' ']).next())
        .filter(|word| !word.is_empty())
        .unwrap_or("unknown")
        .to_string();
    // Subscribed before the request is counted or forwarded: once a test can see a watch
    // counted, `end_watches` and `expire_watches` reach it, even before upstream answers.
    let commands = (info.verb == "watch").then(|| shared.watch_commands.subscribe());
    shared.record(&info, agent);
    let fault = shared.take_fault(&info);
    if let Some(fault) = &fault {
        tracing::info!(
            "faultproxy: {fault:?} for {} {} ({} {})",
            request.method(),
            request.uri(),
            info.verb,
            info.resource
        );
    }
    let response = match fault {
        Some(Fault::Reset) => {
            reset.notify_one();
            // The connection task drops the connection, and this future with it.
            std::future::pending().await
        }
        Some(Fault::Status(429)) => too_many_requests(&info, 1),
        Some(Fault::TooManyRequests {
            retry_after_seconds,
        }) => too_many_requests(&info, retry_after_seconds),
        Some(Fault::Status(code)) => status_response(code, &info, None),
        Some(Fault::WatchGone) => watch::gone(expired_event(&info)),
        Some(Fault::EndWatchEarly { after_events }) => {
            forward(&shared, request, &info, commands, Some(after_events)).await
        }
        None => forward(&shared, request, &info, commands, None).await,
    };
    Ok(response)
}

async fn forward(
    shared: &Shared,
    request: Request<Incoming>,
    info: &RequestInfo,
    commands: Option<broadcast::Receiver<watch::Command>>,
    end_after: Option<u32>,
) -> Response<ProxyBody> {
    match upstream::send(&shared.client, &shared.base, request).await {
        Ok(response) => match commands {
            Some(commands) => watch::forward(
                response,
                watch::Plan {
                    end_after,
                    commands,
                    expired_event: expired_event(info),
                },
            ),
            None => upstream::passthrough(response),
        },
        Err(e) => {
            let why = error_chain(&*e);
            tracing::warn!("faultproxy: upstream: {why}");
            let mut body = status::failure(502, info, None);
            body["message"] =
                format!("faultproxy: the API server could not be reached: {why}").into();
            json_response(StatusCode::BAD_GATEWAY, &body)
        }
    }
}

fn expired_event(info: &RequestInfo) -> Bytes {
    Bytes::from(status::expired_watch_event(
        info.resource_version.as_deref(),
    ))
}

fn too_many_requests(info: &RequestInfo, retry_after_seconds: u32) -> Response<ProxyBody> {
    let mut response = status_response(429, info, Some(retry_after_seconds));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
    response
}

fn status_response(
    code: u16,
    info: &RequestInfo,
    retry_after_seconds: Option<u32>,
) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(
        status,
        &status::failure(status.as_u16(), info, retry_after_seconds),
    )
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An error and its sources, `: `-separated (hyper's own message is only "client error").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
