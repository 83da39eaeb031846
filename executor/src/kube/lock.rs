//! One apply per cluster at a time: a `coordination.k8s.io/v1` Lease with the holder's
//! identity and a TTL. A second applier is refused with the holder's name and when the lease
//! expires; a crashed holder's lease simply expires. Taking an expired lease is a
//! compare-and-set on its resourceVersion, so two appliers racing for it cannot both win.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, PostParams};

use super::{Cluster, KubeError, api_err};

/// Where the lease lives.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// Its name.
pub const LEASE_NAME: &str = "harmony-apply";

/// A held lock; release it with [`ClusterLock::release`].
#[derive(Debug)]
pub struct ClusterLock {
    holder: String,
}

/// Who holds it, for the refusal message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// `user@host pid N`.
    pub identity: String,
    /// When the lease was last renewed.
    pub renewed: jiff::Timestamp,
    /// When it expires unless renewed.
    pub expires: jiff::Timestamp,
}

fn leases(cluster: &Cluster) -> Api<Lease> {
    Api::namespaced(cluster.client().clone(), LEASE_NAMESPACE)
}

fn holder_of(lease: &Lease) -> Option<Holder> {
    let spec = lease.spec.as_ref()?;
    let identity = spec.holder_identity.clone()?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let expires = renewed + jiff::SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    Some(Holder { identity, renewed, expires })
}

impl ClusterLock {
    /// Takes the lock for `ttl_secs` seconds as `holder`, or says who has it.
    pub async fn acquire(cluster: &Cluster, holder: &str, ttl_secs: i32, now: jiff::Timestamp) -> Result<ClusterLock, KubeError> {
        let api = leases(cluster);
        let lease = |rv: Option<String>| Lease {
            metadata: ObjectMeta { name: Some(LEASE_NAME.into()), namespace: Some(LEASE_NAMESPACE.into()), resource_version: rv, ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_string()),
                lease_duration_seconds: Some(ttl_secs),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                ..Default::default()
            }),
        };
        match api.create(&PostParams::default(), &lease(None)).await {
            Ok(_) => return Ok(ClusterLock { holder: holder.to_string() }),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(api_err(format!("create Lease {LEASE_NAMESPACE}/{LEASE_NAME}"))(e)),
        }
        let current = api.get(LEASE_NAME).await.map_err(api_err(format!("get Lease {LEASE_NAMESPACE}/{LEASE_NAME}")))?;
        if let Some(h) = holder_of(&current)
            && h.expires > now
            && h.identity != holder
        {
            return Err(KubeError::Release(format!(
                "another apply holds the lock of this cluster: {} since {}; it expires at {} (Lease {LEASE_NAMESPACE}/{LEASE_NAME}). Wait, or delete the Lease if that apply is known to be dead",
                h.identity, h.renewed, h.expires
            )));
        }
        // Expired (or ours): take it over, only if nobody else did in between.
        api.replace(LEASE_NAME, &PostParams::default(), &lease(current.metadata.resource_version.clone()))
            .await
            .map_err(api_err(format!("take over expired Lease {LEASE_NAMESPACE}/{LEASE_NAME}")))?;
        Ok(ClusterLock { holder: holder.to_string() })
    }

    /// Releases the lock if this holder still has it.
    pub async fn release(self, cluster: &Cluster) -> Result<(), KubeError> {
        let api = leases(cluster);
        let Some(current) = api.get_opt(LEASE_NAME).await.map_err(api_err("get Lease"))? else { return Ok(()) };
        if holder_of(&current).is_some_and(|h| h.identity == self.holder) {
            let dp = DeleteParams {
                preconditions: Some(kube::api::Preconditions { resource_version: current.metadata.resource_version, uid: None }),
                ..Default::default()
            };
            match api.delete(LEASE_NAME, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(api_err("delete Lease")(e)),
            }
        }
        Ok(())
    }
}
