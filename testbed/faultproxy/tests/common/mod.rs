//! A small TLS upstream standing in for kube-apiserver in the proxy's tests: its own CA, a
//! serving certificate for 127.0.0.1, and client certificates required and checked
//! against the CA; a few fixed paths, a chunked watch stream emitting an event every
//! 20 ms until the client goes, and an echo of anything else. Plus an HTTP client for the
//! proxy's side.

#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use faultproxy::Upstream;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// How long any awaited condition may take before the test fails.
pub const CEILING: Duration = Duration::from_secs(10);

/// Awaits `f`, failing the test after [`CEILING`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(CEILING, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {CEILING:?} waiting for {what}"))
}

/// Waits until `check` holds (the repository's one wait loop), failing the test after
/// [`CEILING`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    testbed::wait::poll(CEILING, async || check().then_some(()))
        .await
        .unwrap_or_else(|| panic!("timed out after {CEILING:?} waiting for {what}"));
}

pub struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf certificate and its key (ECDSA P-256, PKCS#8).
    pub fn leaf(
        &self,
        common_name: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (Certificate, KeyPair) {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert, key)
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }
}

/// What the fake upstream has seen.
#[derive(Default)]
pub struct Seen {
    /// `"METHOD path?query"` of every request, in order.
    pub requests: Mutex<Vec<String>>,
    /// Watch streams being served now.
    pub open_watches: AtomicUsize,
}

impl Seen {
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    pub fn open_watches(&self) -> usize {
        self.open_watches.load(Ordering::SeqCst)
    }
}

pub struct FakeUpstream {
    /// The upstream as the proxy is given it: our CA, and a client certificate it signed.
    pub upstream: Upstream,
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUpstream {
    /// Starts serving on the current runtime.
    pub async fn start() -> FakeUpstream {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = Ca::new("fake-apiserver-ca");
        let (server_cert, server_key) = ca.leaf(
            "kube-apiserver",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = ca.leaf("admin", &[], ExtendedKeyUsagePurpose::ClientAuth);
        let expected_client = client_cert.der().clone();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert.der().clone()).unwrap();
        // Client certificates are required (no anonymous fallback) and must chain to our CA.
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![server_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());

        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let seen = seen.clone();
                    let expected_client = expected_client.clone();
                    tokio::spawn(async move {
                        // A client without an acceptable certificate fails the handshake.
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let verified = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .is_some_and(|c| *c == expected_client);
                        let service = hyper::service::service_fn(move |req| {
                            let seen = seen.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(serve(req, seen, verified).await)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            })
        };

        FakeUpstream {
            upstream: Upstream {
                url: format!("https://127.0.0.1:{port}"),
                ca_pem: ca.pem(),
                client_cert_pem: client_cert.pem(),
                client_key_pem: client_key.serialize_pem(),
            },
            seen,
            task,
        }
    }
}

type Body = UnsyncBoxBody<Bytes, std::convert::Infallible>;

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

pub fn configmap(name: &str, rv: u64) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": rv.to_string()},
        "data": {"n": rv.to_string()},
    })
}

async fn serve(req: Request<Incoming>, seen: Arc<Seen>, verified: bool) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    seen.requests
        .lock()
        .unwrap()
        .push(format!("{method} {}", req.uri()));
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");

    let mut response = if method == Method::GET && path == CONFIGMAPS && watch {
        watch_stream(seen.clone())
    } else if method == Method::GET && path == CONFIGMAPS {
        json_response(
            StatusCode::OK,
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMapList",
                "metadata": {"resourceVersion": "100"},
                "items": [configmap("cm-a", 98), configmap("cm-b", 99)],
            }),
        )
    } else if method == Method::GET && path == format!("{CONFIGMAPS}/missing") {
        json_response(
            StatusCode::NOT_FOUND,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "configmaps \"missing\" not found", "reason": "NotFound",
                "details": {"name": "missing", "kind": "configmaps"}, "code": 404,
            }),
        )
    } else if let (&Method::GET, Some(name)) =
        (&method, path.strip_prefix(&format!("{CONFIGMAPS}/")))
    {
        json_response(StatusCode::OK, configmap(name, 98))
    } else {
        // Anything else is echoed: what arrived, and the body read whole.
        let headers = req.headers().clone();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let header =
            |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap().to_string());
        let status = if method == Method::POST {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        json_response(
            status,
            json!({
                "method": method.as_str(),
                "path": path,
                "query": query,
                "contentType": header(header::CONTENT_TYPE),
                "userAgent": header(header::USER_AGENT),
                "host": header(header::HOST),
                "body": String::from_utf8(body.to_vec()).unwrap(),
            }),
        )
    };
    response.headers_mut().insert(
        "x-fake-client-cert",
        if verified { "verified" } else { "other" }.parse().unwrap(),
    );
    response
}

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    response
}

/// Counts a watch as open while it lives.
struct OpenWatch(Arc<Seen>);

impl OpenWatch {
    fn new(seen: Arc<Seen>) -> OpenWatch {
        seen.open_watches.fetch_add(1, Ordering::SeqCst);
        OpenWatch(seen)
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An ADDED event every 20 ms, each written in two chunks cut mid-event, until the client
/// goes away.
fn watch_stream(seen: Arc<Seen>) -> Response<Body> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let open = OpenWatch::new(seen);
    tokio::spawn(async move {
        let _open = open;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.tick().await;
        for n in 1u64.. {
            tokio::select! {
                _ = tick.tick() => {}
                () = tx.closed() => return,
            }
            let event = json!({"type": "ADDED", "object": configmap(&format!("cm-{n}"), 100 + n)});
            let mut line = event.to_string().into_bytes();
            line.push(b'\n');
            let line = Bytes::from(line);
            if tx.send(line.slice(..10)).await.is_err() || tx.send(line.slice(10..)).await.is_err()
            {
                return;
            }
        }
    });
    let body = StreamBody::new(futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }));
    let mut response = Response::new(body.boxed_unsync());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    response
}

/// A plain HTTP/1.1 client of the proxy, a new connection per request.
pub struct ProxyClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

/// A whole answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl ProxyClient {
    pub fn new(base: &str) -> ProxyClient {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .retry_canceled_requests(false)
            .build_http();
        ProxyClient {
            client,
            base: base.to_string(),
        }
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response<Incoming>, BoxError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        Ok(self.client.request(req.body(Full::new(body))?).await?)
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Reply, BoxError> {
        within(&format!("{method} {path}"), async {
            let response = self
                .request(method.clone(), path, headers, Bytes::from(body.to_string()))
                .await?;
            let (parts, body) = response.into_parts();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body: body.collect().await?.to_bytes(),
            })
        })
        .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], "").await.unwrap()
    }

    /// Opens a watch; fails the test unless it is answered 200.
    pub async fn watch(&self, path: &str) -> Watch {
        let response = within(
            &format!("watch {path}"),
            self.request(Method::GET, path, &[], Bytes::new()),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Watch {
            body: response.into_body(),
            buf: Vec::new(),
        }
    }
}

/// What a watch stream gives next.
#[derive(Debug)]
pub enum Item {
    Event(Value),
    /// The stream ended cleanly (the last chunk came).
    End,
    /// The stream broke (connection closed mid-stream).
    Error(String),
}

impl Item {
    pub fn event(self) -> Value {
        match self {
            Item::Event(v) => v,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

/// A watch stream read line by line.
pub struct Watch {
    body: Incoming,
    buf: Vec<u8>,
}

impl Watch {
    pub async fn next(&mut self) -> Item {
        within("the next watch item", async {
            loop {
                if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.buf.drain(..=i).collect();
                    return Item::Event(serde_json::from_slice(&line).unwrap());
                }
                match self.body.frame().await {
                    None => {
                        assert!(self.buf.is_empty(), "a partial event before the end");
                        return Item::End;
                    }
                    Some(Err(e)) => return Item::Error(e.to_string()),
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            self.buf.extend_from_slice(&data);
                        }
                    }
                }
            }
        })
        .await
    }

    /// Reads items until one is not an event; returns the events read and that item.
    pub async fn until_not_event(&mut self) -> (Vec<Value>, Item) {
        let mut events = Vec::new();
        loop {
            match self.next().await {
                Item::Event(v) => events.push(v),
                other => return (events, other),
            }
        }
    }
}

/// `(verb, resource) -> count` from literal pairs.
pub fn counts(pairs: &[(&str, &str, u64)]) -> BTreeMap<(String, String), u64> {
    pairs
        .iter()
        .map(|(v, r, n)| ((v.to_string(), r.to_string()), *n))
        .collect()
}
