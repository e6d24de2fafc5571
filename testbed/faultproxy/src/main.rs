//! `faultproxy --kubeconfig ADMIN_KUBECONFIG --write-kubeconfig OUT [--listen 127.0.0.1:0]`:
//! the proxy as a process of its own, without faults, for benchmarks that count what one
//! client asks of the real API server. It reads the upstream's URL, CA and client
//! certificate and key from the admin kubeconfig (inline `*-data` fields, as the testbed
//! writes them, or file paths), starts the proxy, writes OUT (a kubeconfig whose server is
//! the proxy) once it listens, serves `GET /debug/requests` on its own port (`{agent:
//! {"verb resource": count}}`, the agent being the User-Agent's first word, `unknown` when
//! there is none) and runs until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use faultproxy::{FaultProxy, Options, Upstream};

const USAGE: &str =
    "usage: faultproxy --kubeconfig ADMIN_KUBECONFIG --write-kubeconfig OUT [--listen 127.0.0.1:0]";

#[derive(Debug)]
struct Args {
    kubeconfig: PathBuf,
    write_kubeconfig: PathBuf,
    listen: SocketAddr,
}

fn parse_args(args: &[String]) -> anyhow::Result<Args> {
    let mut kubeconfig = None;
    let mut write_kubeconfig = None;
    let mut listen = Options::default().listen;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| rest.next().cloned())
                .with_context(|| format!("{flag} needs a value; {USAGE}"))
        };
        match flag {
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(value()?)),
            "--write-kubeconfig" => write_kubeconfig = Some(PathBuf::from(value()?)),
            "--listen" => {
                let v = value()?;
                listen = v.parse().with_context(|| {
                    format!("--listen {v:?}: not an address such as 127.0.0.1:0")
                })?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    Ok(Args {
        kubeconfig: kubeconfig.with_context(|| format!("--kubeconfig is required; {USAGE}"))?,
        write_kubeconfig: write_kubeconfig
            .with_context(|| format!("--write-kubeconfig is required; {USAGE}"))?,
        listen,
    })
}

/// The upstream of a kubeconfig with one cluster and one user, as the testbed's harness
/// writes it (`scripts/testbed.sh up` gives `DIR/kubeconfig`). Reads the few keys it needs
/// line by line rather than carrying a YAML parser: `server`, then each of the CA, the
/// client certificate and its key as `*-data` (base64) or as a file path (relative to the
/// kubeconfig's directory).
fn upstream_from_kubeconfig(text: &str, dir: &Path) -> anyhow::Result<Upstream> {
    let mut fields: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches("- ");
        if let Some((key, value)) = line.split_once(':') {
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            if !value.is_empty() {
                fields.push((key.trim(), value.to_string()));
            }
        }
    }
    let one = |key: &str| -> anyhow::Result<Option<&str>> {
        let mut found = fields
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str());
        let first = found.next();
        anyhow::ensure!(
            found.next().is_none(),
            "the kubeconfig has more than one {key:?}: give one with a single cluster and user"
        );
        Ok(first)
    };
    let pem = |data_key: &str, file_key: &str| -> anyhow::Result<String> {
        if let Some(data) = one(data_key)? {
            let bytes = base64_decode(data).with_context(|| format!("{data_key}: not base64"))?;
            return String::from_utf8(bytes).with_context(|| format!("{data_key}: not PEM text"));
        }
        let file = one(file_key)?
            .with_context(|| format!("the kubeconfig has neither {data_key} nor {file_key}"))?;
        let path = dir.join(file);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let url = one("server")?
        .context("the kubeconfig names no server")?
        .to_string();
    anyhow::ensure!(
        url.starts_with("https://"),
        "server {url}: the proxy forwards over TLS only"
    );
    Ok(Upstream {
        url,
        ca_pem: pem("certificate-authority-data", "certificate-authority")?,
        client_cert_pem: pem("client-certificate-data", "client-certificate")?,
        client_key_pem: pem("client-key-data", "client-key")?,
    })
}

/// Standard base64 (padding optional, whitespace ignored).
fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            c if c.is_ascii_whitespace() => continue,
            c => anyhow::bail!("unexpected character {:?}", char::from(c)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let dir = args.kubeconfig.parent().unwrap_or(Path::new("."));
    let upstream = upstream_from_kubeconfig(&text, dir)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let upstream_url = upstream.url.clone();
    let proxy = FaultProxy::start_with(
        upstream,
        Options {
            listen: args.listen,
            debug_requests: true,
        },
    )?;
    // Written whole, then renamed: whoever waits for OUT never reads half of it.
    let out = &args.write_kubeconfig;
    let mut tmp = out.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    proxy.write_kubeconfig(&tmp)?;
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "faultproxy: {} -> {upstream_url}; kubeconfig {}; counts at {}/debug/requests",
        proxy.url(),
        out.display(),
        proxy.url()
    );
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    signals.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(())
    })?;
    eprintln!("faultproxy: stopping");
    proxy.stop();
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode("Zm9v\nYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("+/8=").unwrap(), [0xfb, 0xff]);
        assert!(base64_decode("Zm9v!").is_err());
    }

    #[test]
    fn reads_the_harness_kubeconfig() {
        // As testbed/harness writes it: "-----BEGIN CA-----", "CERT", "KEY" in base64.
        let text = "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: https://127.0.0.1:41855\n    certificate-authority-data: LS0tLS1CRUdJTiBDQS0tLS0t\nusers:\n- name: testbed-admin\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\ncontexts:\n- name: testbed\n  context:\n    cluster: testbed\n    user: testbed-admin\n    namespace: default\ncurrent-context: testbed\n";
        let up = upstream_from_kubeconfig(text, Path::new("/nonexistent")).unwrap();
        assert_eq!(up.url, "https://127.0.0.1:41855");
        assert_eq!(up.ca_pem, "-----BEGIN CA-----");
        assert_eq!(up.client_cert_pem, "CERT");
        assert_eq!(up.client_key_pem, "KEY");
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let two =
            "clusters:\n- cluster:\n    server: https://a:1\n- cluster:\n    server: https://b:2\n";
        assert!(upstream_from_kubeconfig(two, Path::new(".")).is_err());
        let plain = "clusters:\n- cluster:\n    server: http://a:1\n";
        assert!(upstream_from_kubeconfig(plain, Path::new(".")).is_err());
        let args = |v: &[&str]| parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(args(&["--kubeconfig", "k"]).is_err());
        let ok = args(&[
            "--kubeconfig=k",
            "--write-kubeconfig",
            "o",
            "--listen",
            "127.0.0.1:7",
        ]);
        assert_eq!(ok.unwrap().listen, "127.0.0.1:7".parse().unwrap());
    }
}
