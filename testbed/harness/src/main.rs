//! `testbed up --dir DIR [--image REF=PATH[:UID]]...`: starts the test cluster in the
//! foreground, writes `DIR/kubeconfig` and then `DIR/ready`, and stops every process on
//! SIGTERM or SIGINT. `scripts/testbed.sh` runs it in the background.

use std::path::PathBuf;

use anyhow::Context as _;
use testbed::{Config, ImageRule, Testbed};

const USAGE: &str = "usage: testbed up --dir DIR [--image REF=PATH[:UID]]...";

fn parse(args: &[String]) -> anyhow::Result<Config> {
    let mut config = Config::default();
    let mut dir = None;
    let mut rest = args.iter();
    match rest.next().map(String::as_str) {
        Some("up") => {}
        _ => anyhow::bail!("{USAGE}"),
    }
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
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--image" => config.images.push(ImageRule::parse(&value()?)?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    config.dir = dir.context(USAGE)?;
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(false)
        .init();
    let ready = config.dir.join("ready");
    let _ = std::fs::remove_file(&ready);
    let mut testbed = Testbed::start(config)?;
    eprintln!(
        "testbed: Kubernetes {} ready in {:.1} s; kubeconfig: {}",
        testbed.version(),
        testbed.ready_in().as_secs_f64(),
        testbed.kubeconfig().display()
    );
    std::fs::write(&ready, format!("{}\n", testbed.api_url())).context("writing the ready file")?;
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
    eprintln!("testbed: stopping");
    let _ = std::fs::remove_file(&ready);
    testbed.stop();
    Ok(())
}
