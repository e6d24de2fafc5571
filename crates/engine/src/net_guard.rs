//! Addresses a stage pod must not connect to on a spec's say-so: link-local ones, where cloud
//! metadata services answer with the node's credentials (169.254.169.254, fd00:ec2::254).
//! Webhook URLs and bucket endpoints that are, or resolve to, such an address are refused
//! unless `REPORTJOB_ALLOW_LINK_LOCAL=true` (set for stage pods by the controller's
//! `--allow-link-local-endpoints`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reportjob_core::stage_protocol::env;

/// Whether `ip` is link-local (IPv4 169.254.0.0/16, IPv6 fe80::/10) or the EC2 IPv6
/// metadata address fd00:ec2::254, in any spelling that reaches it: an IPv4 address
/// embedded in IPv6 as IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64
/// (`64:ff9b::/96` and the local-use `64:ff9b:1::/48` at every RFC 6052 prefix length),
/// 6to4 (`2002::/16`) or Teredo (`2001::/32`, the client address obfuscated, and its server).
pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_unicast_link_local()
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || embedded_ipv4(v6).iter().any(Ipv4Addr::is_link_local)
        }
    }
}

/// The IPv4 addresses an IPv6 address carries to the network, by the transition mechanisms
/// a host or a router may apply: IPv4-mapped and -compatible, NAT64, 6to4 and Teredo.
pub fn embedded_ipv4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let bits = u128::from(v6);
    let low32 = |b: u128| Ipv4Addr::from((b & 0xffff_ffff) as u32);
    let mut found = Vec::new();
    // `::a.b.c.d` and `::ffff:a.b.c.d` (and `::ffff:0:a.b.c.d`, SIIT).
    if bits >> 32 == 0 || bits >> 32 == 0xffff || bits >> 32 == 0xffff_0000 {
        found.push(low32(bits));
    }
    let segments = v6.segments();
    // NAT64, the well-known prefix 64:ff9b::/96.
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        found.push(low32(bits));
    }
    // NAT64, the local-use prefix 64:ff9b:1::/48, with a prefix of 48, 56, 64 or 96 bits
    // (RFC 6052 section 2.2: bits 64 to 71 are zero and skipped).
    if segments[..3] == [0x64, 0xff9b, 0x1] {
        let bytes = v6.octets();
        let at = |idx: [usize; 4]| {
            Ipv4Addr::new(bytes[idx[0]], bytes[idx[1]], bytes[idx[2]], bytes[idx[3]])
        };
        found.push(at([6, 7, 9, 10])); // /48
        found.push(at([7, 9, 10, 11])); // /56
        found.push(at([9, 10, 11, 12])); // /64
        found.push(at([12, 13, 14, 15])); // /96
    }
    // 6to4: 2002:aabb:ccdd::/48 routes to aa.bb.cc.dd.
    if segments[0] == 0x2002 {
        found.push(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    // Teredo: 2001:0:<server>:<flags>:<port>:<client XOR ffff:ffff>.
    if segments[0] == 0x2001 && segments[1] == 0 {
        found.push(Ipv4Addr::from(((bits >> 64) & 0xffff_ffff) as u32));
        found.push(Ipv4Addr::from(!((bits & 0xffff_ffff) as u32)));
    }
    found
}

/// Whether link-local destinations were explicitly allowed.
pub fn link_local_allowed() -> bool {
    std::env::var(env::ALLOW_LINK_LOCAL).is_ok_and(|v| v.trim() == "true")
}

/// Refuses `host` (of a URL the spec names, for `what`) when it is, or resolves to, a
/// link-local address, unless that was allowed. A name that does not resolve is left to the
/// connection attempt, which reports it.
pub async fn check_host(host: &str, port: u16, what: &str) -> Result<(), String> {
    if link_local_allowed() {
        return Ok(());
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => match tokio::net::lookup_host((host, port)).await {
            Ok(found) => found.map(|a| a.ip()).collect(),
            Err(_) => return Ok(()),
        },
    };
    match addresses.into_iter().find(|ip| is_link_local(*ip)) {
        Some(ip) => Err(refusal(what, host, ip)),
        None => Ok(()),
    }
}

fn refusal(what: &str, host: &str, ip: IpAddr) -> String {
    format!(
        "{what} {host:?} is or resolves to the link-local address {ip}, where cloud metadata \
         services answer; refused (a controller started with --allow-link-local-endpoints \
         allows it)"
    )
}

/// A DNS resolver (for reqwest, and for object_store's S3 client) that drops link-local
/// addresses, so a name that resolves to a public address when checked and to a metadata
/// address when connecting (DNS rebinding) cannot slip through; it fails when nothing else
/// is left.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLinkLocal;

impl NoLinkLocal {
    async fn lookup(host: String) -> Result<Vec<IpAddr>, String> {
        let found: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), 0))
            .await
            .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
            .map(|a| a.ip())
            .collect();
        routable(&host, found)
    }
}

/// The addresses of `host` that are not link-local; an error naming the first one when
/// every address is.
pub fn routable(host: &str, found: Vec<IpAddr>) -> Result<Vec<IpAddr>, String> {
    let first = found.first().copied();
    let kept: Vec<IpAddr> = found.into_iter().filter(|ip| !is_link_local(*ip)).collect();
    match first {
        Some(ip) if kept.is_empty() => Err(refusal("the host", host, ip)),
        _ => Ok(kept),
    }
}

impl reqwest::dns::Resolve for NoLinkLocal {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let kept = Self::lookup(host).await?;
            let addrs = kept.into_iter().map(|ip| SocketAddr::new(ip, 0));
            Ok(Box::new(addrs) as reqwest::dns::Addrs)
        })
    }
}

impl object_store::client::DnsResolver for NoLinkLocal {
    fn resolve(&self, host: &str) -> object_store::client::DnsFuture {
        let host = host.to_string();
        Box::pin(async move { Ok(Self::lookup(host).await?) })
    }
}

/// The resolver to give a reqwest client: [`NoLinkLocal`] unless link-local was allowed.
pub fn resolver() -> Option<Arc<NoLinkLocal>> {
    (!link_local_allowed()).then(|| Arc::new(NoLinkLocal))
}

/// The redirect policy of every HTTP client a stage pod or the CLI builds: none is followed.
/// A redirect's target has not been through [`check_host`] (a bucket endpoint answering 307
/// to `[::1]` or to a metadata address would otherwise be read as the bucket), so the
/// request fails, naming where the redirect pointed (scheme, host and port only: the rest of
/// a URL may carry a signature).
pub fn no_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let to = attempt.url();
        let port = to.port().map(|p| format!(":{p}")).unwrap_or_default();
        let shown = format!(
            "{}://{}{port}",
            to.scheme(),
            to.host_str().unwrap_or_default()
        );
        let status = attempt.status();
        attempt.error(RedirectRefused(format!(
            "redirect refused: the server answered {status} pointing at {shown}; redirects are not followed"
        )))
    })
}

/// Why a request stopped at a redirect (see [`no_redirects`]).
#[derive(Debug)]
pub struct RedirectRefused(String);

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedirectRefused {}

/// The refusal of a redirect somewhere in `e`'s chain of causes (clients wrapping reqwest
/// show only their own message).
pub fn refused_redirect(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<RedirectRefused>() {
            return Some(refused.0.clone());
        }
        cause = e.source();
    }
    None
}

/// The variables reqwest takes a proxy from.
pub const PROXY_VARIABLES: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Refuses a proxy from the environment that is a link-local address, as an endpoint would
/// be (unless link-local destinations were allowed): every request would go to it. A proxy
/// named by a host name is resolved through [`NoLinkLocal`] when the client connects to it.
pub fn check_proxies(lookup: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    if link_local_allowed() {
        return Ok(());
    }
    for name in PROXY_VARIABLES {
        let Some(value) = lookup(name).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let value = value.trim();
        // reqwest reads a proxy without a scheme as http://.
        let url = match url::Url::parse(value) {
            Ok(url) if url.has_host() => url,
            _ => match url::Url::parse(&format!("http://{value}")) {
                Ok(url) => url,
                Err(_) => continue,
            },
        };
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => continue,
        };
        if is_link_local(ip) {
            return Err(refusal(
                &format!("the proxy in {name}"),
                &ip.to_string(),
                ip,
            ));
        }
    }
    Ok(())
}

/// A reqwest client builder with the guard on: link-local answers dropped from every name
/// resolution (unless allowed), no redirect followed, and a link-local proxy from the
/// environment refused.
pub fn client_builder() -> Result<reqwest::ClientBuilder, String> {
    check_proxies(|name| std::env::var(name).ok())?;
    let mut builder = reqwest::Client::builder().redirect(no_redirects());
    if let Some(resolver) = resolver() {
        builder = builder.dns_resolver(resolver);
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_addresses_are_link_local_and_others_are_not() {
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_link_local(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "8.8.8.8",
            "::1",
            "fd00::1",
            "2001:db8::1",
        ] {
            assert!(!is_link_local(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn every_embedding_of_a_metadata_address_is_link_local() {
        for ip in [
            // IPv4-mapped, IPv4-compatible and SIIT's IPv4-translated forms.
            "::ffff:169.254.169.254",
            "::ffff:a9fe:a9fe",
            "::169.254.169.254",
            "::a9fe:a9fe",
            "::ffff:0:169.254.169.254",
            // NAT64, well-known prefix.
            "64:ff9b::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            // NAT64, local-use prefix at /48, /56, /64 and /96 (RFC 6052 layouts).
            "64:ff9b:1:a9fe:a9:fe00::",
            "64:ff9b:1:00a9:fe:a9fe::",
            "64:ff9b:1:0:a9:fea9:fe00:0",
            "64:ff9b:1::169.254.169.254",
            // 6to4.
            "2002:a9fe:a9fe::",
            "2002:a9fe:a9fe:1::1",
            // Teredo: the client address is stored XORed with ffff:ffff; the server in clear.
            "2001:0:4136:e378:8000:63bf:5601:5601",
            "2001:0:a9fe:a9fe::1",
            // Plain IPv6 link-local and the EC2 IPv6 metadata address.
            "fe80::a9fe:a9fe",
            "fd00:ec2::254",
        ] {
            assert!(is_link_local(ip.parse().unwrap()), "{ip}");
        }
        // The same mechanisms around ordinary addresses stay usable.
        for ip in [
            "::1",
            "::",
            "::ffff:10.0.0.1",
            "64:ff9b::8.8.8.8",
            "2002:0808:0808::",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
            "2001:db8::a9fe:a9fe",
        ] {
            assert!(!is_link_local(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn a_link_local_proxy_is_refused_like_an_endpoint() {
        let env = |value: &'static str| {
            move |name: &str| (name == "HTTPS_PROXY").then(|| value.to_string())
        };
        for proxy in [
            "http://169.254.169.254:3128",
            "169.254.169.254:80",
            "http://[::ffff:169.254.169.254]:3128",
            "http://[64:ff9b::a9fe:a9fe]",
            "socks5://[2002:a9fe:a9fe::]:1080",
        ] {
            let refused = check_proxies(env(proxy)).expect_err(proxy);
            assert!(refused.contains("the proxy in HTTPS_PROXY"), "{refused}");
        }
        for proxy in ["http://proxy.corp:3128", "http://10.0.0.1:3128", ""] {
            assert!(check_proxies(env(proxy)).is_ok(), "{proxy}");
        }
    }

    #[test]
    fn resolved_link_local_addresses_are_dropped_and_a_name_with_only_those_is_refused() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert_eq!(
            routable("mixed.example", vec![ip("169.254.169.254"), ip("10.0.0.7")]),
            Ok(vec![ip("10.0.0.7")])
        );
        let refused = routable(
            "rebound.example",
            vec![ip("169.254.169.254"), ip("fe80::1")],
        )
        .expect_err("refused");
        assert!(
            refused.contains(
                "\"rebound.example\" is or resolves to the link-local address 169.254.169.254"
            ),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn the_resolver_keeps_ordinary_names() {
        let found = NoLinkLocal::lookup("localhost".into()).await.unwrap();
        assert!(found.iter().all(|ip| ip.is_loopback()), "{found:?}");
        assert!(!found.is_empty());
    }

    #[tokio::test]
    async fn a_literal_metadata_address_is_refused_and_loopback_is_not() {
        let refused = check_host("169.254.169.254", 80, "the webhook URL's host")
            .await
            .expect_err("refused");
        assert!(
            refused.contains("link-local address 169.254.169.254"),
            "{refused}"
        );
        assert!(check_host("[fd00:ec2::254]", 80, "x").await.is_err());
        assert!(check_host("127.0.0.1", 80, "x").await.is_ok());
        assert!(check_host("localhost", 80, "x").await.is_ok());
    }
}
