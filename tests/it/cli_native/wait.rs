//! `wait` and its exit codes; `resume` after `cancel`; on ReportJobs of the test's namespace
//! whose status the test writes.

use kube::api::Api;
use reportjob::api::ReportJob;
use serde_json::{Value, json};

use super::{Cli, complete, failed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_exits_as_submit_wait_does_and_resume_pairs_with_cancel() {
    let cli = Cli::start("wait").await;
    let ns = cli.ns;
    cli.create("orders", ns, "a").await;
    cli.create("refunds", ns, "a").await;

    let waiting = cli.spawn(&["wait", "orders", "--timeout", "10m"]);
    cli.set_status("orders", ns, json!({"phase": "Running", "progress": "1/4"}))
        .await;
    waiting.shows("Running").await;
    let output = json!({"location": "orders.csv", "rows": 4000, "bytes": 123456,
                        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"});
    cli.set_status("orders", ns, complete(output)).await;
    let (code, out, err) = waiting.finished().await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("ReportJob {ns}/orders succeeded in ")),
        "{out}"
    );
    assert!(
        out.contains("location: orders.csv\n") && out.contains("rows:     4000\n"),
        "{out}"
    );

    // Already finished: at once, and -o prints the final object.
    let (code, out, _) = cli.run(&["wait", "orders", "-o", "name"]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "reportjob.reporting.dev/orders\n")
    );

    let waiting = cli.spawn(&["wait", "refunds", "--json"]);
    cli.set_status("refunds", ns, failed()).await;
    let (code, out, err) = waiting.finished().await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "error: ReportJob {ns}/refunds failed: chunk 3 failed"
        )),
        "{err}"
    );
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (
            summary["result"].as_str(),
            summary["failed_chunks"].as_str()
        ),
        (Some("failed"), Some("3"))
    );

    cli.create("slow", ns, "a").await;
    let (code, _, err) = cli.run(&["wait", "slow", "--timeout", "1s"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "error: timed out after 1s waiting for ReportJob {ns}/slow (Pending)"
        )),
        "{err}"
    );
    let (code, _, err) = cli.run(&["wait", "nothing"]).await;
    assert_eq!(code, 1);
    assert_eq!(err, format!("error: ReportJob {ns}/nothing not found\n"));

    // A deleted ReportJob ends the wait with 1.
    let waiting = cli.spawn(&["wait", "slow"]);
    waiting.shows("Pending").await;
    let api: Api<ReportJob> = Api::namespaced(cli.client(), ns);
    api.delete("slow", &Default::default()).await.unwrap();
    let (code, _, err) = waiting.finished().await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "error: ReportJob {ns}/slow was deleted before it finished"
        )),
        "{err}"
    );

    let (code, out, _) = cli.run(&["suspend", "orders"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("resume: reportjob resume orders -n {ns}")),
        "{out}"
    );
    assert!(api.get("orders").await.unwrap().spec.suspend);
    let (code, out, err) = cli.run(&["resume", "orders"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!(
            "ReportJob {ns}/orders resumed (spec.suspend=false)"
        )),
        "{out}"
    );
    assert!(!api.get("orders").await.unwrap().spec.suspend);
    let (code, _, err) = cli.run(&["resume", "nothing"]).await;
    assert_eq!(
        (code, err),
        (1, format!("error: ReportJob {ns}/nothing not found\n"))
    );
}
