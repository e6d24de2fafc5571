//! Spec texts shared by the unit tests of the API types (test builds only).

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
