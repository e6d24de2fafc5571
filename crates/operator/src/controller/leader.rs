//! Leader election on a `coordination.k8s.io/v1` Lease, so that one replica reconciles.
//!
//! The election itself is `kube-lease-manager`'s: it takes a free or expired Lease with a
//! server-side apply (a concurrent taker gets a conflict, so two replicas never both
//! hold it), renews it `grace` seconds before it would expire, and gives it up when told
//! to. This module only starts it, waits for leadership and reports its loss.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Leader election settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// The Lease's namespace (the controller's own).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
}

impl LeaseConfig {
    /// Whole seconds of validity (at least 3, so that a renewal fits before expiry).
    fn duration_seconds(&self) -> u64 {
        self.duration.as_secs().max(3)
    }

    /// How long before expiry the holder renews: a third of the duration, as client-go's
    /// defaults (15 s lease, renewed within 10 s) leave about.
    fn grace_seconds(&self) -> u64 {
        (self.duration_seconds() / 3).max(1)
    }
}

/// This replica holds the lease; [`Leadership::lost`] tells when that ends.
pub struct Leadership {
    leader: watch::Receiver<bool>,
    manager: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
}

/// Waits until this replica holds the lease. Failing to reach the Lease (no RBAC, API
/// server down) is logged and retried: a standby replica keeps standing by.
pub async fn acquire(client: Client, cfg: &LeaseConfig) -> Leadership {
    let mut retry_in = Duration::from_secs(1);
    loop {
        let built = LeaseManagerBuilder::new(client.clone(), &cfg.name)
            .with_namespace(&cfg.namespace)
            .with_identity(&cfg.identity)
            .with_duration(cfg.duration_seconds())
            .with_grace(cfg.grace_seconds())
            .build()
            .await;
        match built {
            Ok(manager) => {
                let (mut leader, manager) = manager.watch().await;
                if leader.wait_for(|is_leader| *is_leader).await.is_ok() {
                    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became the leader");
                    return Leadership { leader, manager };
                }
                // The manager's task ended (it logged why); start over.
                log_end(&cfg.name, manager.await);
            }
            Err(e) => {
                tracing::warn!(lease = %cfg.name, error = %e, "cannot read or create the lease")
            }
        }
        tokio::time::sleep(retry_in).await;
        retry_in = (retry_in * 2).min(cfg.duration);
    }
}

impl Leadership {
    /// Returns once leadership is lost: another replica took the lease, or it could not be
    /// renewed before it expired.
    pub async fn lost(&mut self) {
        // An error means the manager's task ended, which ends leadership as well.
        let _ = self.leader.wait_for(|is_leader| !*is_leader).await;
        tracing::error!("lost the leader lease");
    }

    /// Gives the lease up (on a clean shutdown), so another replica takes over at once.
    pub async fn release(self, lease: &str) {
        // Closing the channel makes the manager release the lease and end.
        drop(self.leader);
        log_end(lease, self.manager.await);
    }
}

fn log_end(
    lease: &str,
    ended: Result<Result<LeaseManager, LeaseManagerError>, tokio::task::JoinError>,
) {
    match ended {
        Ok(Ok(_)) => tracing::info!(%lease, "released the leader lease"),
        Ok(Err(e)) => tracing::warn!(%lease, error = %e, "leader election ended with an error"),
        Err(e) => tracing::warn!(%lease, error = %e, "leader election task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_renewed_a_third_of_its_duration_before_expiry() {
        let cfg = |secs| LeaseConfig {
            name: "l".into(),
            namespace: "ns".into(),
            identity: "me".into(),
            duration: Duration::from_secs(secs),
        };
        assert_eq!(
            (cfg(15).duration_seconds(), cfg(15).grace_seconds()),
            (15, 5)
        );
        // Too short a lease could never be renewed in time: it is raised to 3 s.
        assert_eq!((cfg(1).duration_seconds(), cfg(1).grace_seconds()), (3, 1));
    }
}
