//! The binary as the kubectl plugin `kubectl reportjob`, through kubectl's plugin mechanism,
//! with kubectl's completion of plugin words (`kubectl_complete-reportjob`), against a
//! ReportJob of the test's namespace (the kubeconfig's).

use std::path::Path;

use super::Cli;
use crate::common::PATIENCE;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_runs_it_as_the_reportjob_plugin() {
    let cli = Cli::start("plugin").await;
    let ns = cli.ns;
    cli.create("orders", ns, "a").await;
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
    // `kubectl reportjob <TAB>`: kubectl runs kubectl_complete-reportjob (here a link to the
    // binary) and reads Cobra's completion protocol back.
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_reportjob"),
        bin_dir.path().join("kubectl_complete-reportjob"),
    )
    .unwrap();
    let complete = |line: String| {
        let mut args = vec!["__complete", "reportjob"];
        args.extend(line.split(' '));
        let run = kubectl(&args);
        async move {
            let (code, out, err) = run.await;
            assert_eq!(code, 0, "{line:?}: {err}");
            out.lines()
                .map(|l| l.split('\t').next().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        }
    };
    let top = complete(String::new()).await;
    assert!(
        ["list", "status", "wait", "logs", "download"]
            .iter()
            .all(|c| top.contains(&c.to_string()))
            && !top.contains(&"worker".to_string()),
        "{top:?}"
    );
    assert_eq!(complete("status o".into()).await, ["orders", ":4"]);
    assert_eq!(complete(format!("wait -n {ns} ")).await, ["orders", ":4"]);
    assert_eq!(complete("list -o y".into()).await, ["yaml", ":4"]);
    assert_eq!(complete("wait --time".into()).await, ["--timeout", ":4"]);
    // Called by its own name it is `reportjob`.
    let (_, out, _) = cli.run(&["--help"]).await;
    assert!(
        out.contains("Usage: reportjob [OPTIONS] <COMMAND>"),
        "{out}"
    );
}

#[test]
fn the_krew_manifest_installs_this_version_as_kubectl_reportjob() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/reportjob.yaml");
    let m: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        m["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(
        (m["kind"].as_str(), m["metadata"]["name"].as_str()),
        (Some("Plugin"), Some("reportjob"))
    );
    assert_eq!(
        m["spec"]["version"],
        format!("v{}", env!("CARGO_PKG_VERSION"))
    );
    let platforms = m["spec"]["platforms"].as_array().unwrap();
    assert!(!platforms.is_empty());
    for p in platforms {
        assert_eq!(p["bin"], crate::cli_native::PLUGIN_BIN, "{p}");
        assert!(
            p["files"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["from"] == p["bin"]),
            "{p}"
        );
        let uri = p["uri"].as_str().unwrap();
        assert!(
            uri.contains(&format!("/v{}/", env!("CARGO_PKG_VERSION"))),
            "{uri}"
        );
        assert_eq!(p["sha256"].as_str().map(str::len), Some(64), "{p}");
    }
}
