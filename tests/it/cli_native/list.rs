//! `list` and `status -o`, checked against `kubectl get`, and `list` with ReportSchedules, on
//! the shared cluster: `-A` is narrowed to the test's objects by their [`RUN_LABEL`].

use serde_json::{Value, json};

use super::{Cli, RUN_LABEL, cells_without_age, complete, failed, manifest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_status_print_as_kubectl_does_in_every_format() {
    let mut cli = Cli::start("list").await;
    // Sorted after the first namespace, as `team-b` was after `default`.
    let (ns, team_b) = (cli.ns, cli.namespace("list-team-b").await);
    assert!(ns < team_b);
    let mine = format!("{RUN_LABEL}={ns}");
    cli.create("orders", ns, "analytics").await;
    cli.create("refunds", ns, "billing").await;
    cli.create("invoices", team_b, "billing").await;
    cli.set_status(
        "orders",
        ns,
        complete(json!({"location": "orders.csv", "rows": 4000, "bytes": 9, "sha256": "ab"})),
    )
    .await;
    cli.set_status("refunds", ns, failed()).await;
    cli.set_status(
        "invoices",
        team_b,
        complete(json!({"location": "invoices.csv", "rows": 4000, "bytes": 9, "sha256": "ab"})),
    )
    .await;

    let (code, table, stderr) = cli.run(&["list"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        cells_without_age(&table),
        [
            vec!["NAME", "PHASE", "CHUNKS", "ROWS"],
            vec!["orders", "Succeeded", "4/4", "4000"],
            vec!["refunds", "Failed", "3/4", "3000"],
        ],
        "{table}"
    );
    // The same cells as kubectl's table from the CRD's printer columns.
    let kubectl = cli.kubectl(&["get", "rj"]);
    assert_eq!(
        cells_without_age(&String::from_utf8_lossy(&kubectl.stdout)),
        cells_without_age(&table)
    );
    let ages: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(4).unwrap())
        .collect();
    assert!(
        ages.iter()
            .all(|a| a.ends_with('s') && a[..a.len() - 1].parse::<u32>().is_ok()),
        "{table}"
    );

    let (code, wide, _) = cli.run(&["list", "-A", "-l", &mine, "-o", "wide"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        cells_without_age(&wide),
        [
            vec![
                "NAMESPACE",
                "NAME",
                "PHASE",
                "CHUNKS",
                "ROWS",
                "OUTPUT",
                "REASON",
                "MESSAGE"
            ],
            vec![
                ns,
                "orders",
                "Succeeded",
                "4/4",
                "4000",
                "orders.csv",
                "ReportPublished",
                "published"
            ],
            vec![
                ns,
                "refunds",
                "Failed",
                "3/4",
                "3000",
                "ChunksFailed",
                "chunk",
                "3",
                "failed"
            ],
            vec![
                team_b,
                "invoices",
                "Succeeded",
                "4/4",
                "4000",
                "invoices.csv",
                "ReportPublished",
                "published"
            ],
        ],
        "{wide}"
    );
    let kubectl = cli.kubectl(&["get", "rj", "-A", "-l", &mine, "-o", "wide"]);
    assert_eq!(
        cells_without_age(&String::from_utf8_lossy(&kubectl.stdout)),
        cells_without_age(&wide)
    );

    let billing = format!("team=billing,{mine}");
    let (code, names, _) = cli.run(&["list", "-A", "-l", &billing, "-o", "name"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        names,
        "reportjob.reporting.dev/refunds\nreportjob.reporting.dev/invoices\n"
    );
    let kubectl = cli.kubectl(&["get", "rj", "-A", "-l", &billing, "-o", "name"]);
    let mut theirs: Vec<String> = String::from_utf8_lossy(&kubectl.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let mut ours: Vec<String> = names.lines().map(str::to_string).collect();
    theirs.sort();
    ours.sort();
    assert_eq!(ours, theirs);

    let (code, json_text, _) = cli.run(&["list", "-n", team_b, "-o", "json"]).await;
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["metadata"]["name"], "invoices");
    assert_eq!(list["items"][0]["status"]["phase"], "Succeeded");
    let (code, yaml_text, _) = cli.run(&["status", "refunds", "-o", "yaml"]).await;
    assert_eq!(code, 0);
    let one: Value = serde_saphyr::from_str(&yaml_text).unwrap();
    assert_eq!(
        (one["kind"].as_str(), one["status"]["failedChunks"].as_str()),
        (Some("ReportJob"), Some("3"))
    );
    let (code, name, _) = cli.run(&["status", "refunds", "-o", "name"]).await;
    assert_eq!(
        (code, name.as_str()),
        (0, "reportjob.reporting.dev/refunds\n")
    );

    let (code, out, stderr) = cli.run(&["list", "-l", "team=nobody"]).await;
    let kubectl = cli.kubectl(&["get", "rj", "-l", "team=nobody"]);
    assert_eq!(
        (code, out.as_str(), stderr.as_str()),
        (
            0,
            "",
            format!("No resources found in {ns} namespace.\n").as_str()
        )
    );
    assert_eq!(
        stderr,
        String::from_utf8_lossy(&kubectl.stderr),
        "kubectl's words"
    );
    let nobody = format!("team=nobody,{mine}");
    let (_, _, stderr) = cli.run(&["list", "-A", "-l", &nobody]).await;
    let kubectl = cli.kubectl(&["get", "rj", "-A", "-l", &nobody]);
    assert_eq!(stderr, String::from_utf8_lossy(&kubectl.stderr));
    let (code, out, _) = cli.run(&["list", "-l", "team=nobody", "-o", "json"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["items"],
        json!([])
    );
    let (code, _, stderr) = cli.run(&["list", "-o", "toml"]).await;
    assert_eq!(code, 2, "{stderr}");

    // `submit -o name` prints what it created.
    let file = cli.dir().join("rj.json");
    std::fs::write(&file, manifest("payments", ns, "billing").to_string()).unwrap();
    let (code, out, stderr) = cli
        .run(&["submit", "-f", file.to_str().unwrap(), "-o", "name"])
        .await;
    assert_eq!(
        (code, out.as_str()),
        (0, "reportjob.reporting.dev/payments\n"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_the_schedules_after_their_runs() {
    use kube::api::{Api, Patch, PatchParams, PostParams};
    use reportjob::schedule::ReportSchedule;

    // The ReportSchedule CRD is installed with the ReportJob one.
    let cli = Cli::start("list-schedules").await;
    let ns = cli.ns;
    // Without schedules, list is the ReportJobs alone.
    cli.create("orders", ns, "analytics").await;
    let (code, alone, stderr) = cli.run(&["list"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(alone.lines().count(), 2, "{alone}");

    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/orders-monthly-schedule.yaml"
    ))
    .unwrap();
    let mut schedule: ReportSchedule = serde_saphyr::from_str(&example).unwrap();
    schedule
        .metadata
        .labels
        .get_or_insert_default()
        .insert(RUN_LABEL.into(), ns.into());
    let schedules: Api<ReportSchedule> = Api::namespaced(cli.client(), ns);
    schedules
        .create(&PostParams::default(), &schedule)
        .await
        .unwrap();
    cli.create("monthly-paid-orders-29000000", ns, "finance")
        .await;
    let now = jiff::Timestamp::now();
    let status = json!({"status": {
        "active": [{"kind": "ReportJob", "name": "monthly-paid-orders-29000000", "namespace": ns}],
        "lastScheduleTime": (now - jiff::SignedDuration::from_secs(300)).to_string(),
        "nextScheduleTime": (now + jiff::SignedDuration::from_secs(7200)).to_string(),
        "conditions": [{"type": "Ready", "status": "True", "reason": "Scheduled", "message": "",
                        "lastTransitionTime": now.to_string()}],
    }});
    schedules
        .patch_status(
            "monthly-paid-orders",
            &PatchParams::default(),
            &Patch::Merge(status),
        )
        .await
        .unwrap();

    let (code, out, stderr) = cli.run(&["list"]).await;
    assert_eq!(code, 0, "{stderr}");
    let (jobs, schedules_table) = out.split_once("\n\n").expect("two tables");
    assert_eq!(
        cells_without_age(jobs)
            .iter()
            .map(|r| r[0].clone())
            .collect::<Vec<_>>(),
        ["NAME", "monthly-paid-orders-29000000", "orders"]
    );
    let rows: Vec<Vec<String>> = schedules_table
        .lines()
        .map(|l| {
            l.split("   ")
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        rows[0],
        [
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "READY",
            "NEXT",
            "AGE"
        ]
    );
    let row = &rows[1];
    assert_eq!(
        &row[..5],
        [
            "monthly-paid-orders",
            "0 6 1 * *",
            "Europe/Berlin",
            "False",
            "monthly-paid-orders-29000000"
        ]
    );
    assert!(row[5] == "5m" || row[5] == "5m1s", "{row:?}");
    assert_eq!(row[6], "True", "{row:?}");
    assert!(row[7] == "in 120m" || row[7] == "in 119m", "{row:?}");

    // -A adds the namespace; -o formats print the ReportJobs only.
    let mine = format!("{RUN_LABEL}={ns}");
    let (_, all, _) = cli.run(&["list", "-A", "-l", &mine]).await;
    let (_, schedules_all) = all.split_once("\n\n").expect("two tables");
    assert!(
        schedules_all.starts_with("NAMESPACE")
            && schedules_all.lines().count() == 2
            && schedules_all.contains(&format!("\n{ns} ")),
        "{schedules_all}"
    );
    let (_, names, _) = cli.run(&["list", "-o", "name"]).await;
    assert_eq!(
        names,
        "reportjob.reporting.dev/monthly-paid-orders-29000000\nreportjob.reporting.dev/orders\n"
    );
}
