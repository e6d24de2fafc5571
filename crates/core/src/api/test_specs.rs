//! Spec texts shared by unit tests (test builds, and the `test-specs` feature for the
//! unit tests of the crates built on this one).

/// The smallest valid ReportJob: a table, its key, a PVC destination; everything else
/// defaulted.
pub const MINIMAL: &str = r#"
apiVersion: reporting.dev/v1alpha1
kind: ReportJob
metadata: {name: t}
spec:
  source:
    connectionSecretRef: {name: db}
    table: public.orders
    keyColumn: id
  output:
    destination:
      pvc: {claimName: reports, path: orders.csv}
"#;
