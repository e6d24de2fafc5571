//! The controller's start-up: `reportjob controller`, which the chart's Deployment runs,
//! and `reportjob uninstall`, which the chart's pre-delete hook runs. Their flags are the
//! platform team's (the chart's values), never a spec's.

pub mod uninstall;

use crate::cli::ControllerArgs;
use crate::error::EXIT_OK;

/// `reportjob controller`: parses the platform's flags into the controller's configuration
/// and runs it until it is stopped.
pub async fn controller(args: ControllerArgs) -> i32 {
    use crate::controller::pod_settings::StagePods;
    use crate::controller::{ControllerConfig, jobs::PodDefaults, leader::LeaseConfig};
    let (stage_pods, pod) = match StagePods::parse(&args.stage_pods) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("error: {e}");
            return crate::error::EXIT_USAGE;
        }
    };
    let client = match crate::cli::client::cluster::config(args.kubeconfig.as_deref(), None)
        .await
        .and_then(crate::cli::client::cluster::client)
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: cannot reach the Kubernetes API: {e}");
            return crate::error::EXIT_TRANSIENT;
        }
    };
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let duration = std::time::Duration::from_secs(args.lease_duration_seconds.max(2));
    let config = ControllerConfig {
        namespaces: args
            .namespaces
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect(),
        defaults: PodDefaults {
            policy: crate::controller::policy::Policy {
                worker_image: args.worker_image.clone(),
                allowed_images: args
                    .allowed_worker_images
                    .into_iter()
                    .filter(|i| !i.is_empty())
                    .collect(),
                allow_service_account_override: args.allow_service_account_override,
                allow_link_local_endpoints: args.allow_link_local_endpoints,
            },
            worker_image: args.worker_image,
            resources: stage_pods.resources,
            pod,
            service_account_name: stage_pods.service_account_name,
            pod_security_context: stage_pods.pod_security_context,
        },
        metrics_addr: Some(args.metrics_addr),
        clock_file: args.clock_file,
        run_limits: crate::controller::run_queue::Limits {
            total: (args.max_concurrent_runs > 0).then_some(args.max_concurrent_runs),
            per_namespace: (args.max_concurrent_runs_per_namespace > 0)
                .then_some(args.max_concurrent_runs_per_namespace),
        },
        max_stage_pods_per_namespace: (args.max_stage_pods_per_namespace > 0)
            .then_some(args.max_stage_pods_per_namespace),
        lease: args.leader_election.then_some(LeaseConfig {
            name: args.lease_name,
            namespace: args.lease_namespace,
            identity,
            duration,
        }),
    };
    match crate::controller::run(client, config).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e:#}");
            crate::error::EXIT_TRANSIENT
        }
    }
}
