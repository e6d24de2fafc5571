//! Leader election on a `coordination.k8s.io/v1` Lease, so that one replica reconciles.
//!
//! The protocol is client-go's: the holder renews `renewTime` every few seconds; another
//! replica takes the lease once `renewTime + leaseDurationSeconds` has passed. Every write
//! carries the lease's `resourceVersion`, so two replicas can never both take it.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

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
    /// How often the holder renews it.
    pub renew_every: Duration,
}

/// What to do about a lease, decided from its spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseStep {
    /// We hold it: renew it.
    Renew,
    /// Nobody holds it or the holder let it expire: take it.
    Take,
    /// Someone else holds it.
    Wait {
        /// The holder.
        holder: String,
    },
}

/// Decides what to do about a lease held as `spec` (pure).
pub fn lease_step(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> LeaseStep {
    let Some(spec) = spec else {
        return LeaseStep::Take;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return LeaseStep::Renew;
    }
    if holder.is_empty() {
        return LeaseStep::Take;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0.as_second());
    match renewed {
        Some(at) if at.saturating_add(duration) > now.as_second() => LeaseStep::Wait { holder },
        _ => LeaseStep::Take,
    }
}

/// Tries once to take or renew the lease; true when this replica holds it afterwards.
pub async fn try_hold(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&cfg.name).await?;
    let step = lease_step(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &cfg.identity,
        now,
    );
    let seconds = i32::try_from(cfg.duration.as_secs()).unwrap_or(15);
    let result = match (current, step) {
        (_, LeaseStep::Wait { .. }) => return Ok(false),
        (None, _) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        (Some(mut lease), step) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if step == LeaseStep::Take {
                spec.holder_identity = Some(cfg.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.lease_duration_seconds = Some(seconds);
            spec.renew_time = Some(MicroTime(now));
            // replace() sends the resourceVersion read above: a concurrent writer wins, we lose.
            api.replace(&cfg.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
    };
    match result {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until this replica holds the lease.
pub async fn acquire(api: &Api<Lease>, cfg: &LeaseConfig) {
    loop {
        match try_hold(api, cfg).await {
            Ok(true) => {
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became the leader");
                return;
            }
            Ok(false) => tracing::debug!(lease = %cfg.name, "another replica leads; standing by"),
            Err(e) => {
                tracing::warn!(lease = %cfg.name, error = %e, "cannot read or take the lease")
            }
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
}

/// Renews the lease until a renewal fails for longer than the lease lasts (or another
/// replica took it); returns then: leadership is lost.
pub async fn hold(api: &Api<Lease>, cfg: &LeaseConfig) {
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(cfg.renew_every).await;
        match try_hold(api, cfg).await {
            Ok(true) => last_renewal = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(lease = %cfg.name, "another replica took the lease");
                return;
            }
            Err(e) => {
                tracing::warn!(lease = %cfg.name, error = %e, "cannot renew the lease");
                if last_renewal.elapsed() >= cfg.duration {
                    return;
                }
            }
        }
    }
}

/// Gives the lease up (on a clean shutdown), so another replica takes over at once.
pub async fn release(api: &Api<Lease>, cfg: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    if let Err(e) = api.replace(&cfg.name, &PostParams::default(), &lease).await {
        tracing::warn!(lease = %cfg.name, error = %e, "cannot release the lease");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).expect("time"))),
            ..Default::default()
        }
    }

    #[test]
    fn a_held_lease_is_renewed_by_its_holder_and_taken_by_others_only_when_expired() {
        let now = Timestamp::from_second(1_000).expect("time");
        assert_eq!(lease_step(None, "a", now), LeaseStep::Take);
        assert_eq!(
            lease_step(Some(&spec("a", 995)), "a", now),
            LeaseStep::Renew
        );
        assert_eq!(
            lease_step(Some(&spec("b", 995)), "a", now),
            LeaseStep::Wait { holder: "b".into() }
        );
        assert_eq!(lease_step(Some(&spec("b", 980)), "a", now), LeaseStep::Take);
        assert_eq!(lease_step(Some(&spec("", 999)), "a", now), LeaseStep::Take);
    }
}
