//! `kubesim` binary: serve a kubesim cluster until SIGINT/SIGTERM.

use kubesim::{Cluster, ClusterConfig};
use std::path::PathBuf;

fn usage() -> ! {
    eprintln!(
        "usage: kubesim [--port N] [--write-kubeconfig PATH] [--data-dir DIR] [--image REF=PATH[:UID]]... [--no-pods]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cfg = ClusterConfig {
        run_pods: true,
        ..Default::default()
    };
    let mut kubeconfig = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--port" => cfg.port = Some(val().parse()?),
            "--write-kubeconfig" => kubeconfig = Some(PathBuf::from(val())),
            "--data-dir" => cfg.data_dir = Some(PathBuf::from(val())),
            "--image" => {
                let v = val();
                let (r, p) = v.split_once('=').unwrap_or_else(|| usage());
                // PATH[:UID]: the image's default user, as its Dockerfile's USER would declare it.
                let (p, uid) = match p.rsplit_once(':') {
                    Some((p, u)) if !u.is_empty() && u.bytes().all(|b| b.is_ascii_digit()) => {
                        (p, Some(u.parse::<u32>()?))
                    }
                    _ => (p, None),
                };
                cfg.images.push((r.to_string(), PathBuf::from(p)));
                if let Some(uid) = uid {
                    cfg.image_users.push((r.to_string(), uid));
                }
            }
            "--no-pods" => cfg.run_pods = false,
            _ => usage(),
        }
    }
    if cfg.data_dir.is_none() {
        cfg.data_dir = Some(PathBuf::from("kubesim-data"));
    }
    let cluster = Cluster::start(cfg).await?;
    if let Some(k) = &kubeconfig {
        cluster.write_kubeconfig(k)?;
    }
    eprintln!("kubesim serving on {}", cluster.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    cluster.shutdown().await;
    Ok(())
}
