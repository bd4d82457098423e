//! Leader election on a `coordination.k8s.io/v1` Lease. kube-runtime has none, so this does what
//! client-go does: hold the Lease by renewing it, take it over once it expires, and rely on the
//! API server's optimistic concurrency (a 409 on `replace`) so two replicas never both win.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Errors talking to the API server about the Lease (conflicts are not errors: they lose).
#[derive(Debug, thiserror::Error)]
#[error("failed to read or write lease {name}")]
pub struct Error {
    name: String,
    source: kube::Error,
}

/// The Lease and this replica's identity.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a holder's claim lasts without renewal.
    pub duration: Duration,
    /// How often the holder renews (and others retry).
    pub retry: Duration,
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// Whether `lease` is held by someone other than `identity` and not yet expired at `now`.
pub fn held_by_other(lease: &Lease, identity: &str, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return false };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == identity {
        return false;
    }
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    renewed.is_some_and(|r| now < r + jiff::SignedDuration::from_secs(duration))
}

/// One attempt: acquire or renew. Returns whether this replica holds the Lease afterwards.
pub async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig, now: Timestamp) -> Result<bool, Error> {
    let err = |source| Error { name: cfg.name.clone(), source };
    let spec = |prev: Option<&LeaseSpec>| {
        let ours = prev.and_then(|p| p.holder_identity.as_deref()) == Some(cfg.identity.as_str());
        let transitions = prev.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(cfg.identity.clone()),
            lease_duration_seconds: Some(secs(cfg.duration)),
            acquire_time: if ours { prev.and_then(|p| p.acquire_time.clone()) } else { Some(MicroTime(now)) },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if ours || prev.is_none() { transitions } else { transitions + 1 }),
            ..Default::default()
        }
    };
    match api.get_opt(&cfg.name).await.map_err(err)? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(cfg.name.clone()), ..Default::default() },
                spec: Some(spec(None)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(err(e)),
            }
        }
        Some(lease) if held_by_other(&lease, &cfg.identity, now) => Ok(false),
        Some(mut lease) => {
            // `replace` carries the resourceVersion we read: a concurrent writer makes it 409.
            lease.spec = Some(spec(lease.spec.as_ref()));
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(err(e)),
            }
        }
    }
}

/// Gives the Lease up (on shutdown), so another replica need not wait for it to expire.
pub async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<(), Error> {
    let err = |source| Error { name: cfg.name.clone(), source };
    if let Some(mut lease) = api.get_opt(&cfg.name).await.map_err(err)? {
        if lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(cfg.identity.as_str()) {
            if let Some(s) = lease.spec.as_mut() {
                s.holder_identity = None;
            }
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(err(e)),
            }
        }
    }
    Ok(())
}

/// Runs the election forever, publishing whether this replica leads. Errors count as not
/// leading (a replica that cannot renew must assume it lost).
pub async fn run(client: kube::Client, cfg: LeaseConfig, leading: watch::Sender<bool>) {
    let api = Api::<Lease>::namespaced(client, &cfg.namespace);
    let mut tick = tokio::time::interval(cfg.retry);
    loop {
        tick.tick().await;
        let now = Timestamp::now();
        let ours = match try_acquire(&api, &cfg, now).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "leader election attempt failed");
                false
            }
        };
        leading.send_if_modified(|l| std::mem::replace(l, ours) != ours);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: &str, secs: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(renewed.parse().unwrap())),
                lease_duration_seconds: Some(secs),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_fresh_lease_of_another_holder_blocks_until_it_expires() {
        let l = lease("b", "2027-01-01T00:00:00Z", 15);
        assert!(held_by_other(&l, "a", "2027-01-01T00:00:14Z".parse().unwrap()));
        assert!(!held_by_other(&l, "a", "2027-01-01T00:00:15Z".parse().unwrap()));
        assert!(!held_by_other(&l, "b", "2027-01-01T00:00:01Z".parse().unwrap()));
        assert!(!held_by_other(&lease("", "2027-01-01T00:00:00Z", 15), "a", "2027-01-01T00:00:01Z".parse().unwrap()));
    }
}
