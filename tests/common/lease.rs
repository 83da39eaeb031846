//! A cluster's apply-lock Lease as a killed apply left it, written straight into a loopback API
//! server. Shared by `tests/locks.rs` and `executor/tests/kube_access.rs` (included there with
//! `#[path]`).

use harmony_executor::kube::lock::HOLDER_ANNOTATION;
use harmony_executor::lock::LockHolder;
use harmony_kube_loopback::Server;
use serde_json::json;

/// The Lease `kube-system/harmony-apply` held by `holder`, renewed `renewed_ago` seconds ago,
/// for `ttl` seconds.
pub fn left_lease(server: &Server, holder: &LockHolder, renewed_ago: i64, ttl: i32) {
    let t = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(renewed_ago)).strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    server.create(&json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "harmony-apply", "namespace": "kube-system", "annotations": {HOLDER_ANNOTATION: serde_json::to_string(holder).unwrap()}},
        "spec": {"holderIdentity": holder.identity(), "leaseDurationSeconds": ttl, "acquireTime": t, "renewTime": t},
    }));
}
