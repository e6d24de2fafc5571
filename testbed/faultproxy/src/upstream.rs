//! The proxy's leg to the API server: one pooled HTTP/1.1 client over TLS that trusts the
//! cluster CA and presents the configured client certificate, and the forwarding of a
//! request through it with method, path, query, end-to-end headers and streamed bodies kept.

use std::sync::Arc;

use anyhow::Context as _;
use http::{HeaderMap, Request, Response, Uri, Version, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{BoxError, ProxyBody, Upstream};

/// The pooled client to the API server.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Incoming>;

/// `https://host:port` of the upstream, checked, without a trailing slash.
pub fn base_url(upstream: &Upstream) -> anyhow::Result<String> {
    let uri: Uri = upstream
        .url
        .parse()
        .with_context(|| format!("upstream url {:?}", upstream.url))?;
    anyhow::ensure!(
        uri.scheme_str() == Some("https"),
        "upstream url {:?} is not https",
        upstream.url
    );
    let authority = uri
        .authority()
        .with_context(|| format!("upstream url {:?} has no host", upstream.url))?;
    Ok(format!("https://{authority}"))
}

/// A pooled HTTP/1.1 client that speaks TLS to the upstream as its client certificate.
pub fn client(upstream: &Upstream) -> anyhow::Result<UpstreamClient> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(upstream.ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| anyhow::anyhow!("reading ca_pem: {e:?}"))?;
        roots.add(cert).context("adding the upstream CA")?;
    }
    anyhow::ensure!(!roots.is_empty(), "ca_pem holds no certificate");
    let chain = CertificateDer::pem_slice_iter(upstream.client_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("reading client_cert_pem: {e:?}"))?;
    anyhow::ensure!(!chain.is_empty(), "client_cert_pem holds no certificate");
    let key = PrivateKeyDer::from_pem_slice(upstream.client_key_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("reading client_key_pem: {e:?}"))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .context("the client certificate and key")?;

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .build(https))
}

/// Headers that belong to one connection, not to the request (RFC 9110 section 7.6.1), and
/// `Host`, which the client sets for the upstream.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in listed {
        headers.remove(name.as_str());
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::HOST,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// Sends `request` to the upstream; the response's body streams as it arrives.
pub async fn send(
    client: &UpstreamClient,
    base: &str,
    request: Request<Incoming>,
) -> Result<Response<Incoming>, BoxError> {
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    parts.uri = format!("{base}{path_and_query}").parse()?;
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    let mut response = client.request(Request::from_parts(parts, body)).await?;
    strip_hop_by_hop(response.headers_mut());
    Ok(response)
}

/// A response whose body streams through unchanged.
pub fn passthrough(response: Response<Incoming>) -> Response<ProxyBody> {
    response.map(|body| body.map_err(BoxError::from).boxed_unsync())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, X-Private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::HOST, "127.0.0.1:1".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        h.insert(header::USER_AGENT, "kubectl/v1.37.2".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str().to_string()).collect();
        left.sort();
        assert_eq!(left, ["content-type", "user-agent"]);
    }

    #[test]
    fn base_url_is_https_only() {
        let up = |url: &str| Upstream {
            url: url.into(),
            ca_pem: String::new(),
            client_cert_pem: String::new(),
            client_key_pem: String::new(),
        };
        assert_eq!(
            base_url(&up("https://127.0.0.1:6443/")).unwrap(),
            "https://127.0.0.1:6443"
        );
        assert!(base_url(&up("http://127.0.0.1:6443")).is_err());
        assert!(client(&up("https://127.0.0.1:6443")).is_err());
    }
}
