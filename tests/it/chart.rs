//! The Helm chart stays in step with the crate: its CRD is the generated one, its appVersion the crate's.

use std::path::Path;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn chart_crd_is_a_byte_identical_copy_of_crds_reportjob_yaml() {
    let generated = read("crds/reportjob.yaml");
    let chart = read("charts/reportjob/crds/reportjob.yaml");
    assert!(
        chart == generated,
        "charts/reportjob/crds/reportjob.yaml differs from crds/reportjob.yaml; \
         run `cp crds/reportjob.yaml charts/reportjob/crds/reportjob.yaml`"
    );
}

#[test]
fn chart_app_version_is_the_crate_version() {
    let chart: serde_json::Value =
        match serde_saphyr::from_str(&read("charts/reportjob/Chart.yaml")) {
            Ok(v) => v,
            Err(e) => panic!("Chart.yaml does not parse: {e}"),
        };
    assert_eq!(chart["name"], "reportjob");
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "Chart.yaml appVersion must be the crate version (a quoted string)"
    );
}
