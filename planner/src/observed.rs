//! Observed state: what the targets hold, as plain data.
//!
//! The executors will produce it by observing Kubernetes (Helm release records) and NATS
//! (KV entries); until then it comes from `harmony plan --observed FILE` (this type as JSON)
//! and, for `harmony diff --base`, from compiling the base revision ([`ObservedState::from_compiled`]).

use std::collections::BTreeMap;

use harmony_compiler::{CompiledRepo, UnitContent};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::object::Object;

/// Everything observed, by unit id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedState {
    /// Set when the "observed" state is the repository compiled at another revision
    /// (`harmony diff`): revisions are then the base's content hashes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compiled: bool,
    /// Helm releases by unit id (`release/<cluster>/<namespace>/<name>`).
    #[serde(default)]
    pub releases: BTreeMap<String, ObservedRelease>,
    /// Device plans by unit id (`device-plan/<fleet>/<device>`): KV entries.
    #[serde(default)]
    pub device_plans: BTreeMap<String, ObservedEntry>,
    /// Agent versions by unit id (`agent/<fleet>/<device>`): KV entries.
    #[serde(default)]
    pub agents: BTreeMap<String, ObservedEntry>,
    /// Tenant access by unit id (`tenant-access/<tenant>/<cluster>`).
    #[serde(default)]
    pub tenant_access: BTreeMap<String, ObservedTenantAccess>,
    /// What each cluster's API server reports for Helm's `.Capabilities`, by cluster name
    /// (live plans); releases of a cluster without an entry render with what the repository
    /// declares.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capabilities: BTreeMap<String, harmony_schemas::plan::Capabilities>,
}

/// A Helm release as its deployed release record holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedRelease {
    /// Helm release revision of the deployed record.
    pub revision: u64,
    /// The revision of the release's latest record when it is newer than the deployed one
    /// (a failed upgrade or rollback): the next apply writes the revision after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_revision: Option<u64>,
    /// No revision is deployed (the history holds only failed, pending or superseded records):
    /// `revision` and `objects` are the latest record's, and the next apply installs anew.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub undeployed: bool,
    /// resourceVersion of the release record Secret.
    #[serde(default)]
    pub resource_version: String,
    /// The unit content hash harmony recorded when it applied the release, if it did.
    #[serde(default)]
    pub hash: Option<String>,
    /// The manifest the release record holds, one object per element.
    #[serde(default)]
    pub objects: Vec<Json>,
    /// The live objects of the deployed manifest, as the cluster holds them (`harmony plan`
    /// reads them; see [`crate::drift`]): objects of the manifest missing here are missing live.
    /// `None`: not observed (no drift is planned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<Vec<Json>>,
    /// Keys of the deployed manifest's objects whose kind the API server does not serve (a
    /// removed CustomResourceDefinition): not compared with live objects, so not drift — apply
    /// could not recreate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unserved: Vec<String>,
    /// The `secret-value`s the release was applied with, by values path (plaintext: observed
    /// state is input, like the cluster it describes; it never reaches an output).
    #[serde(default)]
    pub secret_values: BTreeMap<String, String>,
    /// The unit content, when known (releases whose chart cannot be rendered offline are
    /// diffed by content).
    #[serde(default)]
    pub content: Option<Json>,
}

/// A KV entry (device plan or agent version).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedEntry {
    /// KV revision.
    pub revision: u64,
    /// The unit content hash the entry was written from.
    pub hash: String,
    /// The entry's content (the unit content as JSON), for diffs; optional.
    #[serde(default)]
    pub content: Option<Json>,
}

/// A tenant's access objects on a cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedTenantAccess {
    /// resourceVersion by `Kind/namespace/name`.
    #[serde(default)]
    pub resource_versions: BTreeMap<String, String>,
    /// The unit content hash recorded at apply (live observation: the unit's hash when every
    /// object is as desired, anything else when not).
    pub hash: String,
    /// The unit content as JSON, for diffs; optional.
    #[serde(default)]
    pub content: Option<Json>,
    /// The live objects (cut down to the fields Harmony sets), for diffs; optional.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<Json>,
}

impl ObservedState {
    /// Every observed unit id.
    pub fn unit_ids(&self) -> impl Iterator<Item = &String> {
        self.releases.keys().chain(self.device_plans.keys()).chain(self.agents.keys()).chain(self.tenant_access.keys())
    }

    /// Whether nothing was observed.
    pub fn is_empty(&self) -> bool {
        self.unit_ids().next().is_none()
    }

    /// `sha256:` over the canonical JSON, without the plaintext `secret-value`s (the hash is
    /// printed in plans: a plain hash over a low-entropy secret could be brute-forced; the
    /// secrets are covered by their keyed fingerprints instead).
    ///
    /// For the same reason a Secret's `data` and `stringData` (in the record's manifest and in
    /// the live objects) are left out: an unkeyed hash over them is an offline guessing oracle.
    pub fn hash(&self) -> String {
        let has_secret = |objects: &[Json]| objects.iter().any(|o| o.get("kind").and_then(Json::as_str) == Some("Secret"));
        let clean = self
            .releases
            .values()
            .all(|r| r.secret_values.is_empty() && !has_secret(&r.objects) && !r.live.as_deref().is_some_and(has_secret));
        if clean {
            return harmony_compiler::hash::content_hash(self);
        }
        let scrub = |objects: &mut Vec<Json>| {
            for o in objects.iter_mut().filter(|o| o.get("kind").and_then(Json::as_str) == Some("Secret")) {
                if let Some(m) = o.as_object_mut() {
                    m.remove("data");
                    m.remove("stringData");
                }
            }
        };
        let mut scrubbed = self.clone();
        for r in scrubbed.releases.values_mut() {
            r.secret_values.clear();
            scrub(&mut r.objects);
            if let Some(live) = r.live.as_mut() {
                scrub(live);
            }
        }
        harmony_compiler::hash::content_hash(&scrubbed)
    }

    /// The repository compiled at another revision, as observed state: every unit with its
    /// content hash; content only where `head` differs (that is all a diff needs), release
    /// objects only for the releases given in `rendered`.
    pub fn from_compiled(base: &CompiledRepo, head: &CompiledRepo, rendered: &BTreeMap<String, Vec<Object>>) -> ObservedState {
        let mut o = ObservedState { compiled: true, ..ObservedState::default() };
        for (id, u) in &base.units {
            let differs = head.units.get(id).is_none_or(|h| h.hash != u.hash);
            let id = id.as_str().to_string();
            let content = if differs { serde_json::to_value(&u.content).ok() } else { None };
            match &u.content {
                UnitContent::Release(_) => {
                    let objects = rendered.get(&id).map(|objs| objs.iter().map(|x| x.value.clone()).collect()).unwrap_or_default();
                    o.releases.insert(
                        id,
                        ObservedRelease { revision: 0, hash: Some(u.hash.clone()), objects, content, ..ObservedRelease::default() },
                    );
                }
                UnitContent::DevicePlan(_) => {
                    o.device_plans.insert(id, ObservedEntry { revision: 0, hash: u.hash.clone(), content });
                }
                UnitContent::Agent(_) => {
                    o.agents.insert(id, ObservedEntry { revision: 0, hash: u.hash.clone(), content });
                }
                UnitContent::TenantAccess(_) => {
                    o.tenant_access.insert(id, ObservedTenantAccess { resource_versions: BTreeMap::new(), hash: u.hash.clone(), content, objects: Vec::new() });
                }
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_does_not_depend_on_plaintext_secrets() {
        let state = |pw: &str, revision: u64| {
            let r = ObservedRelease { revision, secret_values: BTreeMap::from([("auth.password".into(), pw.into())]), ..ObservedRelease::default() };
            ObservedState { releases: BTreeMap::from([("release/c/ns/db".into(), r)]), ..ObservedState::default() }
        };
        assert_eq!(state("hunter2", 3).hash(), state("correct horse", 3).hash());
        assert_ne!(state("hunter2", 3).hash(), state("hunter2", 4).hash());
    }

    #[test]
    fn the_hash_does_not_depend_on_secret_data_in_manifests_or_live_objects() {
        let secret = |v: &str| serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"pw": v}, "stringData": {"x": v}});
        let state = |pw: &str, cm: &str| {
            let r = ObservedRelease {
                objects: vec![secret(pw), serde_json::json!({"kind": "ConfigMap", "data": {"a": cm}})],
                live: Some(vec![secret(pw)]),
                ..ObservedRelease::default()
            };
            ObservedState { releases: BTreeMap::from([("release/c/ns/db".into(), r)]), ..ObservedState::default() }
        };
        assert_eq!(state("aHVudGVyMg==", "1").hash(), state("b3RoZXI=", "1").hash());
        assert_ne!(state("aHVudGVyMg==", "1").hash(), state("aHVudGVyMg==", "2").hash());
    }
}
