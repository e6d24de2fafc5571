//! ReportSchedules on the real control plane with the controller's test clock (`--clock-file`): runs at their
//! times with exact reports per window, history limits, Forbid and Replace (also of a run
//! mid-export, with its staging), one catch-up run
//! after downtime, deletion keeping the reports, and bad input refused on the status. Also
//! the committed CRD against the generator.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use reportjob::api::{Phase, ReportJob};
use reportjob::schedule::ReportSchedule;
use reportjob::schedule::template::SCHEDULE_LABEL;
use serde_json::{Value, json};

use crate::common::free_port;
use crate::common::testbed::Env;
use crate::common::{PATIENCE, TestDb, eventually};

const HOUR: SignedDuration = SignedDuration::from_hours(1);

#[test]
fn committed_crd_matches_the_generator_and_the_chart_copy() {
    let root = env!("CARGO_MANIFEST_DIR");
    let committed = std::fs::read_to_string(format!("{root}/crds/reportschedule.yaml")).unwrap();
    let generated = reportjob::schedule::crd::crd_yaml().unwrap();
    assert!(
        committed == generated,
        "crds/reportschedule.yaml is stale: run `cargo run -- crd --schedule > crds/reportschedule.yaml`"
    );
    let chart = std::fs::read_to_string(format!(
        "{root}/charts/reportjob/files/reportschedule-crd.yaml"
    ))
    .unwrap();
    assert!(
        chart == committed,
        "run `cp crds/reportschedule.yaml charts/reportjob/files/reportschedule-crd.yaml`"
    );
    let crd = reportjob::schedule::crd::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("reportschedules.reporting.dev")
    );
    assert_eq!(crd.spec.names.short_names, Some(vec!["rsched".to_string()]));
    assert_eq!(crd.spec.names.categories, Some(vec!["reports".to_string()]));
    let columns: Vec<String> = crd.spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(
        columns,
        [
            "Schedule",
            "TimeZone",
            "Suspend",
            "Active",
            "Last Schedule",
            "Ready",
            "Next",
            "Age"
        ]
    );
}

/// A cluster with both CRDs, the tenant namespace and a controller on a test clock.
struct Scene {
    env: Env,
    /// The tenant namespace, the test's own.
    ns: &'static str,
    clock: PathBuf,
}

impl Scene {
    async fn start(now: Timestamp) -> Scene {
        let mut env = Env::start().await;
        let ns = env.tenant("tenant").await;
        let clock = env.dir.path().join("clock");
        set(&clock, now);
        let scene = Scene { env, ns, clock };
        let mut scene = scene;
        scene.controller();
        scene
    }

    fn controller(&mut self) {
        let addr = format!("127.0.0.1:{}", free_port());
        let clock = self.clock.to_str().unwrap().to_string();
        self.env.start_controller(&[
            "--leader-election=false",
            "--metrics-addr",
            &addr,
            "--clock-file",
            &clock,
        ]);
    }

    fn at(&self, t: Timestamp) {
        set(&self.clock, t);
    }

    fn schedules(&self) -> Api<ReportSchedule> {
        Api::namespaced(self.env.client.clone(), self.ns)
    }

    async fn apply(&self, name: &str, spec: Value) {
        let body = json!({"apiVersion": "reporting.dev/v1alpha1", "kind": "ReportSchedule",
                          "metadata": {"name": name}, "spec": spec});
        self.schedules()
            .patch(
                name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(body),
            )
            .await
            .unwrap();
    }

    /// The names of `schedule`'s ReportJobs, sorted.
    async fn runs(&self, schedule: &str) -> Vec<String> {
        let lp = ListParams::default().labels(&format!("{SCHEDULE_LABEL}={schedule}"));
        let mut names: Vec<String> = self
            .env
            .rjs(self.ns)
            .list(&lp)
            .await
            .unwrap()
            .items
            .iter()
            .filter(|r| r.metadata.deletion_timestamp.is_none())
            .map(ResourceExt::name_any)
            .collect();
        names.sort();
        names
    }

    async fn wait_runs(&self, schedule: &str, want: &[String]) {
        eventually(&format!("runs {want:?}"), || async {
            (self.runs(schedule).await == want).then_some(())
        })
        .await;
    }

    /// The schedule's status once it has scheduled `last` and lists no active run. A sync
    /// writes the status after its creates and deletes, so a test that saw those waits.
    async fn settled_status(
        &self,
        name: &str,
        last: Timestamp,
    ) -> reportjob::schedule::ReportScheduleStatus {
        eventually(&format!("{name}'s status settled at {last}"), || async {
            let rs = self.schedules().get(name).await.unwrap();
            rs.status.filter(|s| {
                s.active.is_empty() && s.last_schedule_time.as_ref().map(|t| t.0) == Some(last)
            })
        })
        .await
    }

    /// Waits until the ReportJob `name` is gone (deleted and its finalizer done).
    async fn wait_gone(&self, name: &str) {
        eventually(&format!("{name} gone"), || async {
            let rj = self.env.rjs(self.ns).get_opt(name).await.unwrap();
            rj.is_none().then_some(())
        })
        .await;
    }

    /// Asserts `schedule` recorded deleting `run` for concurrency policy Replace.
    async fn assert_replaced(&self, schedule: &str, run: &str) {
        let notes = self.events(schedule).await;
        let deleted = (
            "SuccessfulDelete".to_string(),
            format!("Deleted ReportJob {run} (concurrency policy Replace)"),
        );
        assert!(notes.contains(&deleted), "{notes:?}");
    }

    /// Reasons and notes of the Events about `name`.
    async fn events(&self, name: &str) -> Vec<(String, String)> {
        let events: Api<Event> = Api::namespaced(self.env.client.clone(), self.ns);
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("ReportSchedule")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
            })
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }
}

fn set(clock: &Path, t: Timestamp) {
    // Written whole, then renamed: the controller never reads half a time.
    let tmp = clock.with_extension("tmp");
    std::fs::write(&tmp, t.to_string()).unwrap();
    std::fs::rename(&tmp, clock).unwrap();
}

/// The start of the hour two hours from now: later than any creation time, so a
/// schedule created now has all its times ahead on the test clock.
fn t0() -> Timestamp {
    let now = Timestamp::now().as_second();
    Timestamp::from_second(now - now.rem_euclid(3600) + 7200).unwrap()
}

fn run_name(schedule: &str, t: Timestamp) -> String {
    reportjob::schedule::template::run_name(schedule, t)
}

fn template(table: &str, path: &str, suspend: bool) -> Value {
    json!({"spec": {
        "source": {"connectionSecretRef": {"name": "db"},
                   "query": format!("SELECT id, at, v FROM {table} WHERE at >= $1 AND at < $2"),
                   "keyColumn": "id",
                   "parameters": [{"value": "${windowStart}", "type": "timestamptz"},
                                  {"value": "${windowEnd}", "type": "timestamptz"}]},
        "chunking": {"chunkSize": 500},
        "output": {"destination": {"pvc": {"claimName": "reports", "path": path}}},
        "suspend": suspend
    }})
}

/// A table of one row a minute from `t0 - 1h` to `t0 + 3h`.
async fn events_table(db: &mut TestDb, t0: Timestamp) -> String {
    db.exec(&format!(
        "CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL, v text);
         INSERT INTO events SELECT g, '{}'::timestamptz + g * interval '1 minute', md5(g::text)
           FROM generate_series(0, 239) g;",
        t0 - HOUR
    ))
    .await;
    db.table("events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_runs_write_three_window_reports_history_holds_and_deletion_keeps_them() {
    let t0 = t0();
    let mut db = TestDb::new("schedule_runs").await;
    let table = events_table(&mut db, t0).await;
    let scene = Scene::start(t0 - SignedDuration::from_mins(30)).await;
    scene
        .apply(
            "hourly",
            json!({"schedule": "0 * * * *", "timeZone": "Europe/Berlin",
                   "successfulRunsHistoryLimit": 2,
                   "reportJobTemplate": template(&table, "hourly/${windowStart:%Y%m%d-%H%M%z}.csv", false)}),
        )
        .await;
    let mut names = Vec::new();
    for k in 0..3i64 {
        let at = t0 + HOUR * i32::try_from(k).unwrap();
        scene.at(at);
        let name = run_name("hourly", at);
        let rj = scene
            .env
            .wait_phase(scene.ns, &name, Phase::Succeeded, PATIENCE)
            .await;
        assert_eq!(rj.status.unwrap().rows, Some(60), "{name}");
        names.push(name);
        let start = (at - HOUR).to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
        let path = format!("hourly/{}.csv", start.strftime("%Y%m%d-%H%M%z"));
        db.assert_report_matches(
            &scene.env.pvc_dir(scene.ns).join(&path),
            &format!(
                "SELECT id, at, v FROM {table} WHERE at >= '{}' AND at < '{at}' ORDER BY id",
                at - HOUR
            ),
            "",
            false,
        )
        .await;
    }
    // successfulRunsHistoryLimit 2: the oldest run is deleted, its report stays.
    scene.wait_runs("hourly", &names[1..]).await;
    let status = scene.settled_status("hourly", t0 + HOUR * 2).await;
    assert_eq!(status.next_schedule_time.unwrap().0, t0 + HOUR * 3);
    let reports = |scene: &Scene| {
        let mut files: Vec<String> = std::fs::read_dir(scene.env.pvc_dir(scene.ns).join("hourly"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".csv"))
            .collect();
        files.sort();
        files
    };
    assert_eq!(reports(&scene).len(), 3, "{:?}", reports(&scene));

    // Deleting the schedule deletes its runs (ownerReferences), not their reports.
    scene
        .schedules()
        .delete("hourly", &DeleteParams::background())
        .await
        .unwrap();
    eventually("the runs gone", || async {
        let all = scene
            .env
            .rjs(scene.ns)
            .list(&ListParams::default())
            .await
            .unwrap();
        all.items.is_empty().then_some(())
    })
    .await;
    assert_eq!(reports(&scene).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_skips_while_a_run_is_active_and_replace_deletes_it() {
    let t0 = t0();
    let scene = Scene::start(t0 - SignedDuration::from_mins(1)).await;
    // Suspended runs stay active until deleted.
    scene
        .apply(
            "held",
            json!({"schedule": "@hourly", "concurrencyPolicy": "Forbid",
                   "reportJobTemplate": template("events", "held/${windowStart:%H}.csv", true)}),
        )
        .await;
    scene.at(t0);
    let first = run_name("held", t0);
    scene.wait_runs("held", std::slice::from_ref(&first)).await;
    scene.at(t0 + HOUR);
    eventually("JobAlreadyActive", || async {
        scene
            .events("held")
            .await
            .iter()
            .any(|(r, n)| {
                r == "JobAlreadyActive"
                    && n == "Not starting ReportJob because prior execution is running and concurrency policy is Forbid"
            })
            .then_some(())
    })
    .await;
    assert_eq!(scene.runs("held").await, std::slice::from_ref(&first));
    let rs = scene.schedules().get("held").await.unwrap();
    let active: Vec<_> = rs
        .status
        .unwrap()
        .active
        .into_iter()
        .map(|a| a.name.unwrap())
        .collect();
    assert_eq!(active, std::slice::from_ref(&first));

    // Replace: the due time (t0 + 1h, not yet run) deletes the active run and starts its own.
    let patch = json!({"spec": {"concurrencyPolicy": "Replace"}});
    scene
        .schedules()
        .patch("held", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    let second = run_name("held", t0 + HOUR);
    scene.wait_runs("held", std::slice::from_ref(&second)).await;
    scene.wait_gone(&first).await;
    scene.assert_replaced("held", &first).await;
}

/// failedRunsHistoryLimit on runs that really fail (their table does not exist, which only
/// the plan can find out): the older failed run is deleted, the newest kept for inspection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_runs_history_keeps_the_newest_failures() {
    let t0 = t0();
    let db = TestDb::new("schedule_failed").await;
    let missing = db.table("no_such_table");
    let scene = Scene::start(t0 - SignedDuration::from_mins(1)).await;
    scene
        .apply(
            "broken",
            json!({"schedule": "@hourly", "failedRunsHistoryLimit": 1,
                   "reportJobTemplate": template(&missing, "broken/${windowStart:%H}.csv", false)}),
        )
        .await;
    let mut failed = Vec::new();
    for k in 0..2 {
        let at = t0 + HOUR * k;
        scene.at(at);
        let name = run_name("broken", at);
        let rj = scene
            .env
            .wait_phase(scene.ns, &name, Phase::Failed, PATIENCE)
            .await;
        let message = rj.status.unwrap().message.unwrap_or_default();
        assert!(message.contains("no_such_table"), "{name}: {message}");
        failed.push(name);
    }
    scene.wait_runs("broken", &failed[1..]).await;
    let status = scene.settled_status("broken", t0 + HOUR).await;
    assert!(status.last_successful_time.is_none());
}

/// Replace on a run that is exporting: the run, its Jobs and its staging go, and the new
/// window's run writes its exact report. The first run is held mid-export, not raced: its
/// column `v` comes through `held(id, v)`, which waits on an advisory lock the test holds for
/// the ids 30..59. The function is STABLE, so the planner's key-only queries never call it
/// (Postgres drops an unused non-volatile column of a subquery) and only the chunk COPY waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_deletes_the_exporting_run_and_its_staging() {
    use sqlx::{Connection, Executor};
    let t0 = t0();
    let mut db = TestDb::new("schedule_replace").await;
    let table = events_table(&mut db, t0).await;
    let held = db.table("held");
    db.exec(&format!(
        "CREATE FUNCTION {held}(id bigint, v text) RETURNS text LANGUAGE plpgsql STABLE AS $$
         BEGIN
           IF id BETWEEN 30 AND 59 THEN PERFORM pg_advisory_xact_lock_shared(4242); END IF;
           RETURN v;
         END $$;"
    ))
    .await;
    let mut lock = sqlx::PgConnection::connect(&crate::common::database_url())
        .await
        .unwrap();
    lock.execute("SELECT pg_advisory_lock(4242)").await.unwrap();

    let scene = Scene::start(t0 - SignedDuration::from_mins(1)).await;
    let mut spec = template(&table, "busy/${windowStart:%H%M}.csv", false);
    spec["spec"]["source"]["query"] = json!(format!(
        "SELECT id, at, {held}(id, v) AS v FROM {table} WHERE at >= $1 AND at < $2"
    ));
    spec["spec"]["chunking"] = json!({"chunkSize": 10});
    scene
        .apply(
            "busy",
            json!({"schedule": "@hourly", "concurrencyPolicy": "Replace",
                   "reportJobTemplate": spec}),
        )
        .await;
    scene.at(t0);
    let first = run_name("busy", t0);
    let exporting = scene
        .env
        .wait_for(
            scene.ns,
            &first,
            PATIENCE,
            "a chunk of the first run done",
            |rj| {
                rj.status
                    .as_ref()
                    .and_then(|s| s.chunks.as_ref())
                    .is_some_and(|c| c.succeeded >= 1)
            },
        )
        .await;
    let status = exporting.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Running), "held mid-export");
    let run = status.plan.unwrap().run_id;
    let first_path = (t0 - HOUR)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("busy/%H%M.csv")
        .to_string();
    let staging = scene
        .env
        .pvc_dir(scene.ns)
        .join(format!("{first_path}.parts/{run}"));
    assert!(
        staging.join("plan.json").exists(),
        "staging while exporting"
    );

    scene.at(t0 + HOUR);
    let second = run_name("busy", t0 + HOUR);
    let done = scene
        .env
        .wait_phase(scene.ns, &second, Phase::Succeeded, PATIENCE)
        .await;
    assert_eq!(done.status.unwrap().rows, Some(60));
    scene.wait_gone(&first).await;
    assert!(!staging.exists(), "the replaced run's staging removed");
    assert!(
        !scene.env.pvc_dir(scene.ns).join(&first_path).exists(),
        "the replaced run published nothing"
    );
    let second_path = t0
        .to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("busy/%H%M.csv")
        .to_string();
    db.assert_report_matches(
        &scene.env.pvc_dir(scene.ns).join(&second_path),
        &format!(
            "SELECT id, at, v FROM {table} WHERE at >= '{t0}' AND at < '{}' ORDER BY id",
            t0 + HOUR
        ),
        "",
        false,
    )
    .await;
    scene.assert_replaced("busy", &first).await;
    lock.execute("SELECT pg_advisory_unlock(4242)")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_six_missed_periods_exactly_one_catch_up_run() {
    let t0 = t0();
    let mut scene = Scene::start(t0 - SignedDuration::from_mins(1)).await;
    scene
        .apply(
            "nightly",
            json!({"schedule": "0 * * * *",
                   "reportJobTemplate": template("events", "n/${windowStart:%H}.csv", true)}),
        )
        .await;
    scene.at(t0);
    let first = run_name("nightly", t0);
    scene
        .wait_runs("nightly", std::slice::from_ref(&first))
        .await;
    eventually("lastScheduleTime t0", || async {
        let rs = scene.schedules().get("nightly").await.unwrap();
        (rs.status.and_then(|s| s.last_schedule_time).map(|t| t.0) == Some(t0)).then_some(())
    })
    .await;
    // Its event too, before the controller goes (events are written after the run).
    eventually("the first run's SuccessfulCreate event", || async {
        let note = format!("Created ReportJob {first}");
        scene
            .events("nightly")
            .await
            .iter()
            .any(|(r, n)| r == "SuccessfulCreate" && *n == note)
            .then_some(())
    })
    .await;
    scene.env.kill_controller(0);
    // Six periods pass with the controller down.
    let back = t0 + HOUR * 6 + SignedDuration::from_mins(5);
    scene.at(back);
    scene.controller();
    let caught_up = run_name("nightly", t0 + HOUR * 6);
    scene
        .wait_runs("nightly", &[first.clone(), caught_up.clone()])
        .await;
    let rs = eventually("the status after the catch-up", || async {
        let rs = scene.schedules().get("nightly").await.unwrap();
        let status = rs.status.clone()?;
        (status.next_schedule_time.map(|t| t.0) == Some(t0 + HOUR * 7)).then_some(rs)
    })
    .await;
    let status = rs.status.unwrap();
    assert_eq!(status.last_schedule_time.unwrap().0, t0 + HOUR * 6);
    // The decision is written: nothing else is due until t0 + 7h.
    assert_eq!(scene.runs("nightly").await, [first, caught_up.clone()]);
    // Events are recorded after the runs they tell of: both creations, and only two.
    let created = eventually("both SuccessfulCreate events", || async {
        let created: Vec<_> = scene
            .events("nightly")
            .await
            .into_iter()
            .filter(|(r, _)| r == "SuccessfulCreate")
            .collect();
        (created.len() >= 2).then_some(created)
    })
    .await;
    assert_eq!(created.len(), 2, "{created:?}");
    // The catch-up run's window is the period before its time.
    let rj: ReportJob = scene.env.rjs(scene.ns).get(&caught_up).await.unwrap();
    let values: Vec<_> = rj
        .spec
        .source
        .parameters
        .iter()
        .map(|p| p.value.clone())
        .collect();
    let rfc = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string();
    assert_eq!(values, [rfc(t0 + HOUR * 5), rfc(t0 + HOUR * 6)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_on_the_status_and_in_an_event_and_runs_nothing() {
    let t0 = t0();
    let scene = Scene::start(t0 + HOUR).await;
    let mut sql = template("events", "x/${windowStart:%H}.csv", false);
    sql["spec"]["source"]["query"] = json!("SELECT id FROM events WHERE at >= '${windowStart}'");
    let cases = [
        (
            "bad-cron",
            json!({"schedule": "0 25 * * *", "reportJobTemplate": template("events", "a.csv", false)}),
            "InvalidSchedule",
            "spec.schedule: invalid schedule \"0 25 * * *\": hour: \"25\" is out of range 0-23",
        ),
        (
            "bad-zone",
            json!({"schedule": "@daily", "timeZone": "Europe/Atlantis", "reportJobTemplate": template("events", "a.csv", false)}),
            "UnknownTimeZone",
            "spec.timeZone: unknown time zone \"Europe/Atlantis\" (an IANA name such as Europe/Berlin)",
        ),
        (
            "bad-sql",
            json!({"schedule": "@hourly", "reportJobTemplate": sql}),
            "InvalidTemplate",
            "spec.reportJobTemplate.spec.source.query: placeholders are never written into SQL; use $n here and put the placeholder in source.parameters[n-1].value",
        ),
    ];
    for (name, spec, _, _) in &cases {
        scene.apply(name, spec.clone()).await;
    }
    scene.at(t0 + HOUR * 3);
    for (name, _, reason, message) in cases {
        eventually(&format!("{name}: Ready=False {reason}"), || async {
            let rs = scene.schedules().get(name).await.unwrap();
            let c = rs
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (c.status == "False" && c.reason == reason && c.message == message).then_some(())
        })
        .await;
        eventually(&format!("{name}: a {reason} Event"), || async {
            scene
                .events(name)
                .await
                .contains(&(reason.to_string(), message.to_string()))
                .then_some(())
        })
        .await;
        assert!(scene.runs(name).await.is_empty());
    }
    assert!(
        scene
            .env
            .rjs(scene.ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_creates_one_manual_run_of_the_last_period() {
    let mut db = TestDb::new("schedule_trigger").await;
    let table = events_table(&mut db, t0()).await;
    let scene = Scene::start(t0() - HOUR).await;
    scene
        .apply(
            "hourly",
            json!({"schedule": "@hourly",
                   "reportJobTemplate": template(&table, "m/${windowStart:%H}.csv", false)}),
        )
        .await;
    let trigger = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_reportjob"))
            .args(["schedule", "trigger"])
            .args(args)
            .arg("--kubeconfig")
            .arg(&scene.env.kubeconfig)
            .args(["-n", scene.ns])
            .output()
            .unwrap()
    };
    let hour = |t: Timestamp| {
        Timestamp::from_second(t.as_second() - t.as_second().rem_euclid(3600)).unwrap()
    };
    let before = hour(Timestamp::now());
    let out = trigger(&["hourly", "--run-name", "by-hand"]);
    let after = hour(Timestamp::now());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "ReportJob {}/by-hand created from ReportSchedule hourly\n",
            scene.ns
        )
    );
    let rj = scene.env.rjs(scene.ns).get("by-hand").await.unwrap();
    let rs = scene.schedules().get("hourly").await.unwrap();
    assert_eq!(rj.owner_references()[0].uid, rs.uid().unwrap());
    assert_eq!(rj.annotations()["reporting.dev/instantiate"], "manual");
    assert_eq!(rj.labels()[SCHEDULE_LABEL], "hourly");
    let values: Vec<_> = rj
        .spec
        .source
        .parameters
        .iter()
        .map(|p| p.value.clone())
        .collect();
    let rfc = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string();
    assert!(
        [before, after]
            .iter()
            .any(|h| values == [rfc(*h - HOUR), rfc(*h)]),
        "{values:?}"
    );
    let out = trigger(&["nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: ReportSchedule {}/nope not found\n", scene.ns)
    );

    // The other schedule commands, and a triggered run followed to its end.
    let schedule = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_reportjob"))
            .arg("schedule")
            .args(args)
            .arg("--kubeconfig")
            .arg(&scene.env.kubeconfig)
            .args(["-n", scene.ns])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = schedule(&["list", "-o", "name"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "reportschedule.reporting.dev/hourly\n"),
        "{err}"
    );
    let (code, out, err) = schedule(&["suspend", "hourly"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("suspended (spec.suspend=true)"), "{out}");
    assert!(scene.schedules().get("hourly").await.unwrap().spec.suspend);
    let (code, table, err) = schedule(&["list"]);
    assert_eq!(code, 0, "{err}");
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "READY",
            "NEXT", "AGE"
        ]
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["hourly", "@hourly", "UTC", "True"], "{table}");
    let (code, _, err) = schedule(&["resume", "hourly"]);
    assert_eq!(code, 0, "{err}");
    assert!(!scene.schedules().get("hourly").await.unwrap().spec.suspend);
    let (code, out, err) = schedule(&["list", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["kind"], "List");
    assert_eq!(listed["items"][0]["metadata"]["name"], "hourly");
    let (code, _, err) = schedule(&["suspend", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("ReportSchedule"), "{err}");

    let (code, out, err) = schedule(&[
        "trigger",
        "hourly",
        "--run-name",
        "waited",
        "--wait",
        "--timeout",
        "5m",
        "-o",
        "name",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("reportjob.reporting.dev/waited\n"), "{out}");
    assert!(out.contains("succeeded"), "{out}");
}
