//! Drift: the live objects of a release against what Harmony applied, three-way.
//!
//! The rule (docs/kubernetes.md, "Drift"; ADR 0007, amendment): Harmony manages exactly the
//! fields of the object it server-side applies — the manifest object with the Helm ownership
//! metadata it adds ([`applied`]). A managed field whose live value differs is drift; a field
//! that object does not set (status, defaults the API server fills in, an HPA's
//! `spec.replicas` when the chart omits `replicas`, labels others add, containers others add to
//! a list keyed by `name`) is never drift; an object of the manifest missing live is to be
//! recreated. The comparison ([`project`]) cuts the live object down to the applied object's
//! fields, so the same function decides drift and shows it.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value as Json};

use crate::object::{group_of, identity, key_of};

/// The label Helm's install sets on every object of a release, and Harmony with it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The annotation naming the release that owns an object.
pub const RELEASE_NAME_ANNOTATION: &str = "meta.helm.sh/release-name";
/// The annotation naming the namespace of the release that owns an object.
pub const RELEASE_NAMESPACE_ANNOTATION: &str = "meta.helm.sh/release-namespace";

/// A manifest object of release `name` in `ns` as Harmony server-side applies it: with the
/// ownership metadata Helm's install, upgrade and rollback put on every object of the manifest
/// (not on hooks): the label `app.kubernetes.io/managed-by: Helm` and the annotations
/// `meta.helm.sh/release-name` and `meta.helm.sh/release-namespace`, merged over what the chart
/// set (Helm v4 `pkg/action/validate.go`, `setMetadataVisitor` with `force`). The release
/// record's manifest stays as rendered, as in Helm.
pub fn applied(obj: &Json, name: &str, ns: &str) -> Json {
    let mut o = obj.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Json::as_object_mut) {
        let mut merge = |field: &str, pairs: &[(&str, &str)]| {
            let m = meta.entry(field).or_insert_with(|| Json::Object(Map::new()));
            if !m.is_object() {
                *m = Json::Object(Map::new());
            }
            if let Some(m) = m.as_object_mut() {
                for (k, v) in pairs {
                    m.insert((*k).to_string(), Json::from(*v));
                }
            }
        };
        merge("labels", &[(MANAGED_BY_LABEL, "Helm")]);
        merge("annotations", &[(RELEASE_NAME_ANNOTATION, name), (RELEASE_NAMESPACE_ANNOTATION, ns)]);
    }
    o
}

/// An object as the API server stores it: a Secret's `stringData` folded into `data`
/// (base64), as the server does on every write.
pub fn stored_form(obj: &Json) -> Json {
    let mut o = obj.clone();
    if obj.get("kind").and_then(Json::as_str) != Some("Secret") || group_of(obj) != "" {
        return o;
    }
    let Some(m) = o.as_object_mut() else { return o };
    if let Some(Json::Object(string_data)) = m.remove("stringData") {
        let data = m.entry("data").or_insert_with(|| Json::Object(Map::new()));
        if !data.is_object() {
            *data = Json::Object(Map::new());
        }
        if let Some(d) = data.as_object_mut() {
            for (k, v) in string_data {
                let text = match v {
                    Json::String(s) => s,
                    Json::Null => String::new(),
                    other => other.to_string(),
                };
                d.insert(k, Json::String(base64::engine::general_purpose::STANDARD.encode(text.as_bytes())));
            }
        }
    }
    o
}

/// Keys whose map values are resource quantities (`resources.limits`, a ResourceQuota's
/// `hard`, a PV's `capacity`, a LimitRange's `max`/`min`/`default`…): the API server stores
/// them in canonical form (`0.5` → `500m`), which is not drift.
const QUANTITY_MAPS: &[&str] = &["limits", "requests", "hard", "capacity", "max", "min", "default", "defaultRequest", "maxLimitRequestRatio"];

#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Plain,
    Quantity,
    QuantityMap,
}

/// `have` cut down to the fields `want` sets, recursively: maps by key; lists of objects that
/// all carry a `name` by name (elements others added are not Harmony's), other lists element
/// by element (with `have`'s extra elements kept, so a longer list differs). Where `have` holds
/// what `want` holds — equal, the same number, the same resource quantity in another form, a
/// zero value (`{}`, `[]`, `""`, `false`, `null`) the server omits — the result holds `want`'s
/// value, so `project(want, have) == want` exactly when no field `want` sets differs.
pub fn project(want: &Json, have: &Json) -> Json {
    project_at(want, have, Ctx::Plain)
}

fn is_zero(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::Bool(b) => !b,
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty(),
        Json::Object(m) => m.is_empty(),
        Json::Number(_) => false,
    }
}

fn names(list: &[Json]) -> Option<Vec<&str>> {
    let names: Vec<&str> = list.iter().map(|e| e.get("name").and_then(Json::as_str)).collect::<Option<_>>()?;
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    (sorted.len() == names.len()).then_some(names)
}

fn project_at(want: &Json, have: &Json, ctx: Ctx) -> Json {
    match (want, have) {
        (Json::Object(w), Json::Object(h)) => {
            let mut out = Map::new();
            for (k, wv) in w {
                let child = match ctx {
                    Ctx::QuantityMap => Ctx::Quantity,
                    _ if QUANTITY_MAPS.contains(&k.as_str()) => Ctx::QuantityMap,
                    _ if k == "sizeLimit" => Ctx::Quantity,
                    _ => Ctx::Plain,
                };
                match h.get(k) {
                    Some(hv) => _ = out.insert(k.clone(), project_at(wv, hv, child)),
                    None if is_zero(wv) => _ = out.insert(k.clone(), wv.clone()),
                    None => {}
                }
            }
            Json::Object(out)
        }
        (Json::Array(w), Json::Array(h)) => {
            if let (Some(wn), Some(hn)) = (names(w), names(h))
                && !w.is_empty()
            {
                let by_name: BTreeMap<&str, &Json> = hn.into_iter().zip(h).collect();
                return Json::Array(wn.iter().zip(w).filter_map(|(n, wv)| by_name.get(n).map(|hv| project_at(wv, hv, Ctx::Plain))).collect());
            }
            let mut out: Vec<Json> = w.iter().zip(h).map(|(a, b)| project_at(a, b, Ctx::Plain)).collect();
            out.extend(h.iter().skip(w.len()).cloned());
            Json::Array(out)
        }
        _ if want == have => want.clone(),
        (Json::Number(a), Json::Number(b)) if a.as_f64().is_some() && a.as_f64() == b.as_f64() => want.clone(),
        _ if ctx == Ctx::Quantity && quantity(want).is_some_and(|a| quantity(have).is_some_and(|b| same_quantity(a, b))) => want.clone(),
        _ if is_zero(want) && have.is_null() => want.clone(),
        _ => have.clone(),
    }
}

fn same_quantity(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// A Kubernetes resource quantity (`500m`, `1.5Gi`, `2e3`, `1`) as a number.
fn quantity(v: &Json) -> Option<f64> {
    let s = match v {
        Json::Number(n) => return n.as_f64(),
        Json::String(s) => s.trim(),
        _ => return None,
    };
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(num * mult)
}

/// One object of a release's deployed manifest, beside its live state.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveObject {
    /// `Kind/namespace/name` ([`key_of`]).
    pub key: String,
    /// What Harmony applied, as the server stores it ([`applied`], [`stored_form`]).
    pub applied: Json,
    /// The live object cut down to the fields of `applied` ([`project`]); `None`: missing live.
    pub live: Option<Json>,
    /// The live object's resourceVersion.
    pub resource_version: Option<String>,
}

impl LiveObject {
    /// Whether a field Harmony manages differs live, or the object is missing.
    pub fn drifted(&self) -> bool {
        self.live.as_ref() != Some(&self.applied)
    }
}

/// The objects of release `name` in `ns` that its deployed `manifest` names, each beside the
/// live object of the same API group, kind, namespace and name in `live` (objects missing there
/// are missing live), in key order.
pub fn live_objects(name: &str, ns: &str, manifest: &[Json], live: &[Json]) -> Vec<LiveObject> {
    let by_key: BTreeMap<(String, String), &Json> = live.iter().filter_map(|o| Some((identity(o, ns)?, o))).collect();
    let mut out: Vec<LiveObject> = manifest
        .iter()
        .filter_map(|m| {
            let id = identity(m, ns)?;
            let have = by_key.get(&id);
            let key = id.1;
            let applied = stored_form(&applied(m, name, ns));
            Some(LiveObject {
                live: have.map(|h| project(&applied, h)),
                resource_version: have.and_then(|h| h.pointer("/metadata/resourceVersion")).and_then(Json::as_str).map(String::from),
                key,
                applied,
            })
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out.dedup_by(|a, b| a.key == b.key);
    out
}

/// The resourceVersions of live objects by `Kind/namespace/name` (namespaced objects without a
/// namespace in `ns`).
pub fn resource_versions(ns: &str, live: &[Json]) -> BTreeMap<String, String> {
    live.iter()
        .filter_map(|o| Some((key_of(o, ns)?, o.pointer("/metadata/resourceVersion")?.as_str()?.to_string())))
        .collect()
}

/// The objects of [`live_objects`] that drifted.
pub fn drifted(name: &str, ns: &str, manifest: &[Json], live: &[Json]) -> Vec<LiveObject> {
    live_objects(name, ns, manifest, live).into_iter().filter(LiveObject::drifted).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(replicas: Option<u64>) -> Json {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1", "resources": {"limits": {"cpu": 0.5, "memory": "1024Mi"}}}]}}}});
        if let Some(r) = replicas {
            d["spec"]["replicas"] = json!(r);
        }
        d
    }

    /// The deployment as a server keeps it: Harmony's fields, server defaults, fields and list
    /// elements other managers added, quantities in canonical form, status.
    fn live(replicas: u64) -> Json {
        let mut l = stored_form(&applied(&deployment(None), "web", "apps"));
        l["metadata"]["namespace"] = json!("apps");
        l["metadata"]["resourceVersion"] = json!("7");
        l["metadata"]["labels"]["team"] = json!("x");
        l["spec"]["replicas"] = json!(replicas);
        l["spec"]["revisionHistoryLimit"] = json!(10);
        l["spec"]["template"]["spec"]["containers"] = json!([
            {"name": "istio-proxy", "image": "proxy"},
            {"name": "web", "image": "nginx:1", "imagePullPolicy": "IfNotPresent", "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}}}
        ]);
        l["status"] = json!({"replicas": replicas});
        l
    }

    #[test]
    fn fields_the_chart_does_not_set_are_not_drift() {
        // No replicas in the chart: an HPA (or kubectl scale) owns them.
        assert_eq!(drifted("web", "apps", &[deployment(None)], &[live(5)]), vec![]);
        // Replicas in the chart: a changed value is drift, shown as the live value.
        let d = drifted("web", "apps", &[deployment(Some(2))], &[live(5)]);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].key, "Deployment/apps/web");
        assert_eq!(d[0].live.as_ref().unwrap()["spec"]["replicas"], 5);
        assert_eq!(d[0].applied["spec"]["replicas"], 2);
        assert_eq!(d[0].resource_version.as_deref(), Some("7"));
        let mut expected = d[0].applied.clone();
        expected["spec"]["replicas"] = json!(5);
        assert_eq!(d[0].live.as_ref().unwrap(), &expected, "only the drifted field differs");
    }

    #[test]
    fn ownership_metadata_and_missing_objects_are_drift() {
        let mut unlabelled = live(1);
        unlabelled["metadata"]["labels"].as_object_mut().unwrap().remove(MANAGED_BY_LABEL);
        assert_eq!(drifted("web", "apps", &[deployment(None)], &[unlabelled]).len(), 1);
        let gone = drifted("web", "apps", &[deployment(None)], &[]);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].live, None);
        // Another release's object of the same name in another API group is not this one.
        let mut other = live(1);
        other["apiVersion"] = json!("example.com/v1");
        assert_eq!(drifted("web", "apps", &[deployment(None)], &[other]).len(), 1);
    }

    #[test]
    fn secrets_compare_as_the_server_stores_them() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"password": "hunter22"}});
        let mut have = stored_form(&applied(&secret, "web", "apps"));
        assert_eq!(have["data"]["password"], base64::engine::general_purpose::STANDARD.encode("hunter22"));
        have["type"] = json!("Opaque");
        assert_eq!(drifted("web", "apps", std::slice::from_ref(&secret), &[have.clone()]), vec![]);
        have["data"]["password"] = json!(base64::engine::general_purpose::STANDARD.encode("changed!"));
        assert_eq!(drifted("web", "apps", &[secret], &[have]).len(), 1);
    }

    #[test]
    fn projection_keeps_only_desired_fields() {
        let want = json!({"kind": "Role", "metadata": {"name": "r", "labels": {"a": "1"}, "annotations": {}}, "rules": [{"verbs": ["*"]}]});
        let have = json!({"kind": "Role", "metadata": {"name": "r", "uid": "u", "labels": {"a": "1", "b": "2"}}, "rules": [{"verbs": ["*"], "x": 1}]});
        assert_eq!(project(&want, &have), want);
        let drifted = json!({"kind": "Role", "metadata": {"name": "r", "labels": {"a": "2"}}, "rules": [{"verbs": ["get"]}, {"verbs": ["list"]}]});
        let p = project(&want, &drifted);
        assert_ne!(p, want);
        assert_eq!(p["rules"], json!([{"verbs": ["get"]}, {"verbs": ["list"]}]));
        assert_eq!(p["metadata"]["labels"], json!({"a": "2"}));
        // A quantity outside a quantity field is a plain string.
        assert_ne!(project(&json!({"data": {"max": "1k"}}), &json!({"data": {"max": "1000"}})), json!({"data": {"max": "1k"}}));
        assert_eq!(project(&json!({"hard": {"pods": "1k"}}), &json!({"hard": {"pods": "1000"}})), json!({"hard": {"pods": "1k"}}));
    }
}
