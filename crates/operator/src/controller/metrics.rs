//! Prometheus metrics of the controller and the HTTP endpoint that serves them with the
//! health checks: `/metrics`, `/healthz`, `/readyz`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use reportjob_core::api::Phase;

/// Label of a reconcile result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `error`.
    pub result: String,
}

/// Label of an error reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Short reason, e.g. `Conflict`, `Forbidden`, `ServerError`.
    pub reason: String,
}

/// Labels of the phase gauge: the ReportJob's namespace and phase. The namespace label is
/// `report_namespace`, not `namespace`, which Prometheus sets to the controller's own
/// namespace when it scrapes it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    /// The ReportJob's namespace.
    pub report_namespace: String,
    /// The ReportJob phase.
    pub phase: String,
}

/// Labels of a finished run: its namespace and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabel {
    /// The ReportJob's namespace.
    pub report_namespace: String,
    /// `succeeded`, `failed` or `cancelled`.
    pub result: String,
}

/// Labels of a failed run: its namespace and the reason of its `Failed` condition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabel {
    /// The ReportJob's namespace.
    pub report_namespace: String,
    /// The `Failed` condition's reason (`ChunksFailed`, `PlanFailed`, ...).
    pub reason: String,
}

/// Label of a ReportDatabase's gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatabaseLabel {
    /// The ReportDatabase.
    pub database: String,
}

/// Labels of a namespace's use of a ReportDatabase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatabaseNamespaceLabel {
    /// The ReportDatabase.
    pub database: String,
    /// The ReportJobs' namespace.
    pub report_namespace: String,
}

/// The gauges of the ReportDatabases' budgets.
#[derive(Clone, Default)]
pub struct DatabaseGauges {
    /// Chunk pods the database's ReportJobs may run now.
    pub chunks_in_use: Family<DatabaseLabel, Gauge>,
    /// `spec.maxConcurrentChunks`.
    pub chunk_limit: Family<DatabaseLabel, Gauge>,
    /// ReportJobs waiting for a chunk pod or a snapshot slot.
    pub runs_waiting: Family<DatabaseLabel, Gauge>,
    /// Snapshot runs holding a session.
    pub snapshots_in_use: Family<DatabaseLabel, Gauge>,
    /// 1 while a chunk worker last found the database busier than its throttle allows.
    pub throttled: Family<DatabaseLabel, Gauge>,
    /// Chunk pods in use, by namespace.
    pub namespace_chunks_in_use: Family<DatabaseNamespaceLabel, Gauge>,
    /// ReportJobs waiting, by namespace.
    pub namespace_runs_waiting: Family<DatabaseNamespaceLabel, Gauge>,
    /// Chunk pods granted, by namespace (a chunks Job created with, or raised to, more
    /// parallelism).
    pub chunks_admitted: Family<DatabaseNamespaceLabel, Counter>,
}

impl DatabaseGauges {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "database_chunks_in_use",
            "Chunk pods a ReportDatabase's ReportJobs may run now",
            self.chunks_in_use.clone(),
        );
        registry.register(
            "database_chunk_limit",
            "A ReportDatabase's maxConcurrentChunks",
            self.chunk_limit.clone(),
        );
        registry.register(
            "database_runs_waiting",
            "ReportJobs waiting for a ReportDatabase's chunk pods or snapshot slots",
            self.runs_waiting.clone(),
        );
        registry.register(
            "database_snapshots_in_use",
            "Snapshot runs holding a session on a ReportDatabase",
            self.snapshots_in_use.clone(),
        );
        registry.register(
            "database_throttled",
            "1 while a ReportDatabase's chunk workers find it busier than its throttle allows",
            self.throttled.clone(),
        );
        registry.register(
            "database_namespace_chunks_in_use",
            "Chunk pods of a ReportDatabase in use, by the ReportJobs' namespace",
            self.namespace_chunks_in_use.clone(),
        );
        registry.register(
            "database_chunks_admitted",
            "Chunk pods a ReportDatabase granted, by the ReportJobs' namespace",
            self.chunks_admitted.clone(),
        );
        registry.register(
            "database_namespace_runs_waiting",
            "ReportJobs waiting for a ReportDatabase, by namespace",
            self.namespace_runs_waiting.clone(),
        );
    }
}

/// Label of the build-info gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabel {
    /// The controller's version.
    pub version: String,
}

/// The controller's metrics.
pub struct Metrics {
    registry: Registry,
    /// Reconciles by result.
    pub reconciles: Family<ResultLabel, Counter>,
    /// Reconcile errors by reason.
    pub errors: Family<ReasonLabel, Counter>,
    /// Reconcile duration in seconds.
    pub duration: Histogram,
    /// ReportJobs by phase.
    pub phases: Family<PhaseLabel, Gauge>,
    /// Chunks exported (counted as the controller sees them finish).
    pub chunks_finished: Counter,
    /// Rows in published reports.
    pub rows_exported: Counter,
    /// API requests the reconciler made.
    pub api_requests: Counter,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
    /// Runs that ended, by namespace and result.
    pub runs_finished: Family<RunLabel, Counter>,
    /// Failed runs, by namespace and reason.
    pub run_failures: Family<FailureLabel, Counter>,
    /// How long runs took from the ReportJob's creation to their end, by namespace and
    /// result.
    pub run_duration: Family<RunLabel, Histogram, fn() -> Histogram>,
    /// 1, labelled with the controller's version.
    pub build_info: Family<BuildLabel, Gauge>,
    /// The ReportDatabases' budgets.
    pub databases: DatabaseGauges,
    known: Mutex<HashMap<String, Phase>>,
}

/// Buckets of run durations: 1 s to about 9 hours.
fn run_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("reportjob");
        let reconciles = Family::<ResultLabel, Counter>::default();
        let errors = Family::<ReasonLabel, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let phases = Family::<PhaseLabel, Gauge>::default();
        let chunks_finished = Counter::default();
        let rows_exported = Counter::default();
        let api_requests = Counter::default();
        let leader = Gauge::default();
        let runs_finished = Family::<RunLabel, Counter>::default();
        let run_failures = Family::<FailureLabel, Counter>::default();
        let run_duration = Family::<RunLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            run_duration_histogram,
        );
        let build_info = Family::<BuildLabel, Gauge>::default();
        build_info
            .get_or_create(&BuildLabel {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register(
            "runs_finished",
            "Runs that ended, by the ReportJob's namespace and result",
            runs_finished.clone(),
        );
        registry.register(
            "run_failures",
            "Failed runs, by the ReportJob's namespace and the Failed condition's reason",
            run_failures.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "Time from a ReportJob's creation to the end of its run",
            run_duration.clone(),
        );
        registry.register(
            "build_info",
            "1, labelled with the controller's version",
            build_info.clone(),
        );
        registry.register("reconciles", "Reconciles by result", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconcile errors by reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            duration.clone(),
        );
        registry.register("reportjobs", "ReportJobs by phase", phases.clone());
        registry.register(
            "chunks_finished",
            "Chunks exported",
            chunks_finished.clone(),
        );
        registry.register(
            "rows_exported",
            "Rows in published reports",
            rows_exported.clone(),
        );
        registry.register(
            "api_requests",
            "Kubernetes API requests made by reconciles",
            api_requests.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader",
            leader.clone(),
        );
        let databases = DatabaseGauges::default();
        databases.register(&mut registry);
        Metrics {
            registry,
            databases,
            reconciles,
            errors,
            duration,
            phases,
            chunks_finished,
            rows_exported,
            api_requests,
            leader,
            runs_finished,
            run_failures,
            run_duration,
            build_info,
            known: Mutex::new(HashMap::new()),
        }
    }
}

impl Metrics {
    /// Records the phase of a ReportJob (`None`: it is gone).
    pub fn set_phase(&self, key: &str, phase: Option<Phase>) {
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        let old = match phase {
            Some(p) => known.insert(key.to_string(), p),
            None => known.remove(key),
        };
        if old == phase {
            return;
        }
        let namespace = key.split_once('/').map_or("", |(ns, _)| ns).to_string();
        let label = |phase: Phase| PhaseLabel {
            report_namespace: namespace.clone(),
            phase: phase.as_str().into(),
        };
        if let Some(old) = old {
            self.phases.get_or_create(&label(old)).dec();
        }
        if let Some(new) = phase {
            self.phases.get_or_create(&label(new)).inc();
        }
    }

    /// Records a run of a ReportJob in `namespace` that ended in `phase` (terminal), with
    /// the reason of its `Failed` condition and how long it ran, when known.
    pub fn run_ended(
        &self,
        namespace: &str,
        phase: Phase,
        reason: Option<&str>,
        seconds: Option<f64>,
    ) {
        let result = match phase {
            Phase::Succeeded => "succeeded",
            Phase::Cancelled => "cancelled",
            _ => "failed",
        };
        let label = RunLabel {
            report_namespace: namespace.to_string(),
            result: result.to_string(),
        };
        self.runs_finished.get_or_create(&label).inc();
        if let Some(seconds) = seconds {
            self.run_duration.get_or_create(&label).observe(seconds);
        }
        if phase == Phase::Failed {
            self.run_failures
                .get_or_create(&FailureLabel {
                    report_namespace: namespace.to_string(),
                    reason: reason.unwrap_or("Failed").to_string(),
                })
                .inc();
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// What the health endpoints report.
#[derive(Default)]
pub struct Health {
    /// Set once the controller's watches are running (or it stands by for the lease).
    pub ready: AtomicBool,
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Serves the metrics and health checks at `addr` on a task of its own until `stop` turns
/// true; a server that cannot start is logged, and the controller goes on without it.
pub fn spawn(
    addr: std::net::SocketAddr,
    metrics: std::sync::Arc<Metrics>,
    health: std::sync::Arc<Health>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        if let Err(e) = serve(addr, metrics, health, stopped).await {
            tracing::error!(%addr, error = %e, "cannot serve metrics");
        }
    });
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Shared { metrics, health });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving metrics and health checks");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn render_metrics(State(s): State<Shared>) -> ([(&'static str, &'static str); 1], String) {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn readyz(State(s): State<Shared>) -> (StatusCode, &'static str) {
    if s.health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_gauge_follows_transitions() {
        let m = Metrics::default();
        m.set_phase("a/x", Some(Phase::Running));
        m.set_phase("a/y", Some(Phase::Running));
        m.set_phase("a/x", Some(Phase::Succeeded));
        m.set_phase("a/y", None);
        let text = m.render();
        assert!(
            text.contains("reportjob_reportjobs{report_namespace=\"a\",phase=\"Running\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("reportjob_reportjobs{report_namespace=\"a\",phase=\"Succeeded\"} 1"),
            "{text}"
        );
        assert!(text.contains("reportjob_build_info{version=\""), "{text}");
    }

    #[test]
    fn ended_runs_count_by_namespace_result_and_reason() {
        let m = Metrics::default();
        m.run_ended("a", Phase::Failed, Some("ChunksFailed"), Some(12.0));
        m.run_ended("a", Phase::Succeeded, None, Some(3.0));
        m.run_ended("b", Phase::Cancelled, None, None);
        let text = m.render();
        for line in [
            "reportjob_runs_finished_total{report_namespace=\"a\",result=\"failed\"} 1",
            "reportjob_runs_finished_total{report_namespace=\"a\",result=\"succeeded\"} 1",
            "reportjob_runs_finished_total{report_namespace=\"b\",result=\"cancelled\"} 1",
            "reportjob_run_failures_total{report_namespace=\"a\",reason=\"ChunksFailed\"} 1",
            "reportjob_run_duration_seconds_count{report_namespace=\"a\",result=\"succeeded\"} 1",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
    }
}
