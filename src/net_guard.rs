//! Addresses a stage pod must not connect to on a spec's say-so: link-local ones, where cloud
//! metadata services answer with the node's credentials (169.254.169.254, fd00:ec2::254).
//! Webhook URLs and bucket endpoints that are, or resolve to, such an address are refused
//! unless `REPORTJOB_ALLOW_LINK_LOCAL=true` (set for stage pods by the controller's
//! `--allow-link-local-endpoints`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use crate::stage_protocol::env;

/// Whether `ip` is link-local (IPv4 169.254.0.0/16, IPv6 fe80::/10, an IPv4-mapped
/// link-local address) or the EC2 IPv6 metadata address fd00:ec2::254.
pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_unicast_link_local()
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
    }
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
