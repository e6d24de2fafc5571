//! The binary as the kubectl plugin `kubectl reportjob`, through kubectl's plugin mechanism.

use std::path::Path;

use super::Cli;
use crate::common::PATIENCE;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_runs_it_as_the_reportjob_plugin() {
    let cli = Cli::start().await;
    cli.create("orders", "default", "a").await;
    let bin_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_reportjob"),
        bin_dir.path().join("kubectl-reportjob"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl = |args: &[&str]| {
        let mut cmd = cli.command(Path::new("kubectl"), args);
        cmd.env("PATH", &path);
        async move {
            let out = tokio::time::timeout(PATIENCE, cmd.output())
                .await
                .expect("kubectl ends")
                .unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (code, out, err) = kubectl(&["plugin", "list"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            &bin_dir
                .path()
                .join("kubectl-reportjob")
                .display()
                .to_string()
        ),
        "{out}"
    );
    let (code, out, err) = kubectl(&["reportjob", "list", "-o", "name"]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "reportjob.reporting.dev/orders\n"),
        "{err}"
    );
    let (code, out, _) = kubectl(&["reportjob", "--help"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("Usage: kubectl reportjob [OPTIONS] <COMMAND>"),
        "{out}"
    );
    let (code, _, err) = kubectl(&["reportjob", "wait"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("Usage: kubectl reportjob wait"), "{err}");
    // Called by its own name it is `reportjob`.
    let (_, out, _) = cli.run(&["--help"]).await;
    assert!(
        out.contains("Usage: reportjob [OPTIONS] <COMMAND>"),
        "{out}"
    );
}
