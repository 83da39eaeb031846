//! Where a cluster's [`SealKey`] lives: the Secret `kube-system/harmony-release-seal`, created
//! by the first `harmony apply` (under the cluster's lock) and read by `harmony plan`. Tenants
//! have no access to `kube-system`, so they can neither read the key nor replace it; losing it
//! only makes every record unverifiable, so nothing is pruned until records are sealed again
//! (fail-safe). ADR 0009 says why a keyed seal and not a list of Harmony's writes.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use super::record::SealKey;
use super::{Cluster, KubeError, api_err};

/// The key's Secret: namespace.
pub const SEAL_NAMESPACE: &str = "kube-system";
/// The key's Secret: name.
pub const SEAL_SECRET: &str = "harmony-release-seal";
const DATA_KEY: &str = "key";

fn secrets(cluster: &Cluster) -> Api<Secret> {
    Api::namespaced(cluster.client().clone(), SEAL_NAMESPACE)
}

fn decode(s: &Secret) -> Result<SealKey, KubeError> {
    let bytes = s.data.as_ref().and_then(|d| d.get(DATA_KEY)).map(|b| b.0.as_slice()).unwrap_or_default();
    SealKey::from_bytes(bytes).ok_or_else(|| {
        KubeError::Release(format!(
            "Secret {SEAL_NAMESPACE}/{SEAL_SECRET} does not hold a 32-byte `{DATA_KEY}`: it is Harmony's key for sealing release records; delete it and apply again (releases already installed are then pruned only after their next apply)"
        ))
    })
}

/// The cluster's key, if it has one (read-only: for `harmony plan`).
pub async fn load(admin: &Cluster) -> Result<Option<SealKey>, KubeError> {
    let found = secrets(admin).get_opt(SEAL_SECRET).await.map_err(api_err(format!("read Secret {SEAL_NAMESPACE}/{SEAL_SECRET}")))?;
    found.as_ref().map(decode).transpose()
}

/// The cluster's key, made on first use (for `harmony apply` and `harmony rollback`, under the
/// cluster's lock; a concurrent creation is read back).
pub async fn load_or_create(admin: &Cluster) -> Result<SealKey, KubeError> {
    if let Some(k) = load(admin).await? {
        return Ok(k);
    }
    let key = SealKey::generate().map_err(KubeError::Release)?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(SEAL_SECRET.into()),
            namespace: Some(SEAL_NAMESPACE.into()),
            labels: Some(BTreeMap::from([("app.kubernetes.io/managed-by".to_string(), super::tenant::MANAGED_BY.to_string())])),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(DATA_KEY.to_string(), ByteString(key.bytes().to_vec()))])),
        ..Default::default()
    };
    match secrets(admin).create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(key),
        Err(kube::Error::Api(s)) if s.code == 409 => load(admin).await?.ok_or_else(|| KubeError::Release(format!("Secret {SEAL_NAMESPACE}/{SEAL_SECRET} vanished"))),
        Err(e) => Err(api_err(format!("create Secret {SEAL_NAMESPACE}/{SEAL_SECRET}"))(e)),
    }
}
