//! Every example ReportJob in examples/ is valid against the schema and the spec rules, and
//! every example ReportSchedule's schedule, time zone and template are, and every example
//! ReportDatabase reads as one.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

#[test]
fn every_example_is_a_valid_reportjob() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml")
            && std::fs::read_to_string(&path)
                .unwrap()
                .contains("\nkind: ReportSchedule\n")
        {
            let value: serde_json::Value =
                serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let rs: reportjob::schedule::ReportSchedule = serde_json::from_value(value).unwrap();
            if let Err((reason, message)) = reportjob::controller::schedule::decide::check(&rs) {
                panic!("{}: {reason}: {message}", path.display());
            }
            reportjob::api::validate::validate(&rs.spec.report_job_template.spec)
                .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            checked += 1;
        } else if path.extension().is_some_and(|e| e == "yaml")
            && std::fs::read_to_string(&path)
                .unwrap()
                .contains("\nkind: ReportDatabase\n")
        {
            let value: serde_json::Value =
                serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let db: reportjob::database::ReportDatabase = serde_json::from_value(value).unwrap();
            reportjob::database::selector::selects(
                &db.spec.namespace_selector,
                &Default::default(),
            )
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(db.spec.max_concurrent_chunks >= 1, "{}", path.display());
            checked += 1;
        } else if path.extension().is_some_and(|e| e == "yaml") {
            let rj = reportjob::api::load::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(rj.metadata.name.is_some(), "{} has a name", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 4, "examples found: {checked}");
}
