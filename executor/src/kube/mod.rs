//! Kubernetes: clusters from kubeconfig contexts, objects applied by server-side apply, and
//! Helm-compatible releases ([`release`]) stored as Helm stores them ([`record`]).

pub mod apply;
pub mod lock;
pub mod observe;
pub mod readiness;
pub mod record;
pub mod release;
pub mod seal;
pub mod tenant;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value;

/// The field manager of every object Harmony applies.
pub const FIELD_MANAGER: &str = "harmony";

/// A failure talking to a cluster, with what Harmony was doing.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig or context cannot be used.
    #[error("kubeconfig: {0}")]
    Config(String),
    /// The API server refused or failed a request (shown as the server's own sentence and the
    /// status, never the client's debug form).
    #[error("{action}: {}", api_message(.source))]
    Api {
        /// What Harmony was doing (`apply Deployment apps/web`).
        action: String,
        /// The client's error (status code and message from the server).
        #[source]
        source: kube::Error,
    },
    /// The API server cannot be reached.
    #[error("{0}")]
    Unreachable(String),
    /// A manifest is not a Kubernetes object.
    #[error("{0}")]
    Manifest(String),
    /// The release history is in a state Harmony will not touch.
    #[error("{0}")]
    Release(String),
    /// Waiting for readiness or a hook timed out.
    #[error("{0}")]
    Timeout(String),
    /// The target moved since it was planned (compare-and-set refused).
    #[error("stale: {0}")]
    Stale(String),
    /// A Helm hook failed (`pre-install hook templates/migrate.yaml`).
    #[error("{what} failed: {source}")]
    Hook {
        /// Which hook.
        what: String,
        /// Why.
        #[source]
        source: Box<KubeError>,
    },
}

/// The API server's message and status (`… is forbidden: User "…" cannot … (403 Forbidden)`),
/// or the client's error with its causes.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => format!("{} ({} {})", s.message, s.code, s.reason),
        e => error_chain(e),
    }
}

impl KubeError {
    /// The HTTP status the API server answered, if it did.
    pub fn status(&self) -> Option<u16> {
        match self {
            KubeError::Api { source: kube::Error::Api(s), .. } => Some(s.code),
            KubeError::Hook { source, .. } => source.status(),
            _ => None,
        }
    }
}

/// Whether `e` says the API server does not serve the kind asked for (discovery found no such
/// group, version or kind: a removed CustomResourceDefinition).
pub(crate) fn unserved(e: &KubeError) -> bool {
    matches!(e, KubeError::Api { source: kube::Error::Discovery(_), .. }) || e.status() == Some(404)
}

pub(crate) fn api_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeError {
    let action = action.into();
    move |source| KubeError::Api { action, source }
}

/// One cluster, reached through one kubeconfig context, optionally impersonating a user.
pub struct Cluster {
    config: kube::Config,
    client: kube::Client,
    resources: Mutex<HashMap<(String, String), (ApiResource, ApiCapabilities)>>,
    seal: Option<record::SealKey>,
}

impl Cluster {
    /// Connects (lazily: no request is made) to `context` of the kubeconfig at `path`, or of
    /// `KUBECONFIG`/`~/.kube/config` when `path` is `None`.
    pub async fn from_kubeconfig(path: Option<&Path>, context: &str) -> Result<Cluster, KubeError> {
        let kubeconfig = match path {
            Some(p) => Kubeconfig::read_from(p).map_err(|e| KubeError::Config(format!("{}: {e}", p.display())))?,
            None => Kubeconfig::read().map_err(|e| KubeError::Config(e.to_string()))?,
        };
        let options = KubeConfigOptions { context: Some(context.to_string()), ..Default::default() };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| KubeError::Config(format!("context `{context}`: {e}")))?;
        Cluster::from_config(config)
    }

    /// A cluster from a ready client configuration.
    pub fn from_config(mut config: kube::Config) -> Result<Cluster, KubeError> {
        config.read_timeout = Some(Duration::from_secs(60));
        let client = kube::Client::try_from(config.clone()).map_err(|e| KubeError::Config(e.to_string()))?;
        Ok(Cluster { config, client, resources: Mutex::new(HashMap::new()), seal: None })
    }

    /// Seal every release record Harmony writes through this cluster (and the clusters made
    /// from it with [`Cluster::impersonating`]) with `key`, and uninstall only records that
    /// carry its seal ([`seal`]).
    pub fn set_seal_key(&mut self, key: record::SealKey) {
        self.seal = Some(key);
    }

    /// The key set with [`Cluster::set_seal_key`].
    pub fn seal_key(&self) -> Option<&record::SealKey> {
        self.seal.as_ref()
    }

    /// The same cluster, every request impersonating `user` (`Impersonate-User`), so the API
    /// server authorizes it with that user's RBAC.
    pub fn impersonating(&self, user: &str) -> Result<Cluster, KubeError> {
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(user.to_string());
        let mut c = Cluster::from_config(config)?;
        c.seal = self.seal.clone();
        Ok(c)
    }

    /// The API server's URL.
    pub fn url(&self) -> String {
        self.config.cluster_url.to_string()
    }

    /// The underlying client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// What Helm's `.Capabilities` hold for this cluster, as `helm upgrade` reads them
    /// (Helm v4 `pkg/action/action.go`, `getCapabilities` and `GetVersionSet`): the server's
    /// `gitVersion`, and every group version it serves plus `group/version/Kind` of every
    /// resource (`v1/Kind` for the core group), replacing Helm's default set. Sorted (Helm's
    /// set comes from a Go map, so its order is arbitrary; `Has` does not depend on it).
    pub async fn capabilities(&self) -> Result<harmony_schemas::plan::Capabilities, KubeError> {
        let (version, core, groups) = futures::try_join!(
            async { self.client.apiserver_version().await.map_err(api_err("read the server version")) },
            async { self.client.list_core_api_versions().await.map_err(api_err("discover the core API versions")) },
            async { self.client.list_api_groups().await.map_err(api_err("discover the API groups")) },
        )?;
        // Every group version's resources, requested at once (a cluster serves dozens).
        let core = core.versions.into_iter().map(|v| (true, v));
        let group_versions = core.chain(groups.groups.into_iter().flat_map(|g| g.versions).map(|gv| (false, gv.group_version)));
        let lists = futures::future::try_join_all(group_versions.map(|(is_core, gv)| async move {
            let resources = if is_core { self.client.list_core_api_resources(&gv).await } else { self.client.list_api_group_resources(&gv).await };
            resources.map(|r| (gv.clone(), r)).map_err(api_err(format!("discover the resources of {gv}")))
        }))
        .await?;
        let mut set = std::collections::BTreeSet::new();
        for (gv, resources) in lists {
            set.extend(resources.resources.into_iter().map(|r| format!("{gv}/{}", r.kind)));
            set.insert(gv);
        }
        Ok(harmony_schemas::plan::Capabilities {
            kube_version: version.git_version,
            api_versions: set.into_iter().collect(),
            source: harmony_schemas::plan::CapabilitiesSource::Discovery,
        })
    }

    /// The resource (plural, scope) of `apiVersion`/`kind`, by discovery, cached.
    pub async fn resource(&self, api_version: &str, kind: &str) -> Result<(ApiResource, ApiCapabilities), KubeError> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(r) = self.resources.lock().expect("resource cache").get(&key) {
            return Ok(r.clone());
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let found = kube::discovery::pinned_kind(&self.client, &gvk).await.map_err(api_err(format!("discover {api_version} {kind}")))?;
        self.resources.lock().expect("resource cache").insert(key, found.clone());
        Ok(found)
    }

    async fn api_for(&self, obj: &Value, default_ns: &str) -> Result<(Api<DynamicObject>, String, String), KubeError> {
        let (api_version, kind, name) = identity(obj)?;
        let (ar, caps) = self.resource(&api_version, &kind).await?;
        let label = format!("{kind} {name}");
        let api = match caps.scope {
            Scope::Namespaced => {
                let ns = obj["metadata"]["namespace"].as_str().filter(|s| !s.is_empty()).unwrap_or(default_ns);
                Api::namespaced_with(self.client.clone(), ns, &ar)
            }
            Scope::Cluster => Api::all_with(self.client.clone(), &ar),
        };
        Ok((api, name, label))
    }

    /// Server-side apply of one object as [`FIELD_MANAGER`], taking over fields another
    /// manager changed (the repository is the source of truth). Namespaced objects without a
    /// namespace go to `default_ns`.
    pub async fn apply(&self, obj: &Value, default_ns: &str) -> Result<Value, KubeError> {
        let (api, name, label) = self.api_for(obj, default_ns).await?;
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let applied = api.patch(&name, &pp, &Patch::Apply(obj)).await.map_err(api_err(format!("apply {label}")))?;
        Ok(serde_json::to_value(applied).expect("objects serialise"))
    }

    /// Server-side apply of one object as [`FIELD_MANAGER`] only over the object as it was
    /// compared (the compare-and-set of a drift repair). `Some(rv)`: the object existed at
    /// resourceVersion `rv`; applied with force and `metadata.resourceVersion: rv`, a
    /// precondition the API server checks on the update (k8s.io/apiserver
    /// `registry/generic/registry/store.go`, `Store.Update`: 409 Conflict when it is not the
    /// stored one). `None`: the object was missing; applied without force, so one someone else
    /// created since conflicts (409) on every field Harmony sets to another value instead of
    /// being taken over. A 409 is [`KubeError::Stale`] with the server's sentence.
    pub async fn apply_at(&self, obj: &Value, default_ns: &str, resource_version: Option<&str>) -> Result<Value, KubeError> {
        let (api, name, label) = self.api_for(obj, default_ns).await?;
        let mut obj = obj.clone();
        let pp = match resource_version {
            Some(rv) => {
                if let Some(m) = obj["metadata"].as_object_mut() {
                    m.insert("resourceVersion".into(), rv.into());
                }
                PatchParams::apply(FIELD_MANAGER).force()
            }
            None => PatchParams::apply(FIELD_MANAGER),
        };
        match api.patch(&name, &pp, &Patch::Apply(&obj)).await {
            Ok(applied) => Ok(serde_json::to_value(applied).expect("objects serialise")),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(KubeError::Stale(s.message)),
            Err(e) => Err(api_err(format!("apply {label}"))(e)),
        }
    }

    /// Reads one object; `None` when it does not exist.
    pub async fn get(&self, obj: &Value, default_ns: &str) -> Result<Option<Value>, KubeError> {
        let (api, name, label) = self.api_for(obj, default_ns).await?;
        let got = api.get_opt(&name).await.map_err(api_err(format!("get {label}")))?;
        Ok(got.map(|o| serde_json::to_value(o).expect("objects serialise")))
    }

    /// Deletes one object (background propagation); a missing object is not an error, nor one
    /// of a kind the server does not serve (a removed CustomResourceDefinition took its objects
    /// with it).
    pub async fn delete(&self, obj: &Value, default_ns: &str) -> Result<(), KubeError> {
        let (api, name, label) = match self.api_for(obj, default_ns).await {
            Err(e) if unserved(&e) => return Ok(()),
            r => r?,
        };
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_err(format!("delete {label}"))(e)),
        }
    }
}

/// `apiVersion`, `kind` and `metadata.name` of a manifest.
pub fn identity(obj: &Value) -> Result<(String, String, String), KubeError> {
    let field = |v: &Value, what: &str| {
        v.as_str().filter(|s| !s.is_empty()).map(String::from).ok_or_else(|| KubeError::Manifest(format!("manifest without `{what}`: {}", describe(obj))))
    };
    Ok((field(&obj["apiVersion"], "apiVersion")?, field(&obj["kind"], "kind")?, field(&obj["metadata"]["name"], "metadata.name")?))
}

/// What an error may say about a manifest: its kind, API version and top-level field names,
/// never a value (the manifest may be a Secret: its `data`/`stringData` must not reach an
/// error, a log or a terminal).
pub(crate) fn describe(obj: &Value) -> String {
    fn ident(v: &Value) -> Option<&str> {
        v.as_str().filter(|s| !s.is_empty() && s.len() <= 253 && s.chars().all(|c| c.is_ascii_alphanumeric() || "./-".contains(c)))
    }
    let what = match (ident(&obj["kind"]), ident(&obj["apiVersion"])) {
        (Some(k), Some(a)) => format!("a {k} ({a})"),
        (Some(k), None) => format!("a {k}"),
        _ => "an object".to_string(),
    };
    match obj.as_object() {
        Some(m) => format!("{what} with fields {} (values not shown)", m.keys().map(String::as_str).collect::<Vec<_>>().join(", ")),
        None => format!("not an object but {}", match obj {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "a list",
            Value::Object(_) => "an object",
        }),
    }
}

/// An error and its sources, `: `-separated (the client's own message is often only
/// "client error (Connect)"; the cause, e.g. "Connection refused", is further down).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_read_as_the_servers_sentence_not_a_debug_dump() {
        let message = "configmaps \"x\" is forbidden: User \"system:serviceaccount:acme:d\" cannot patch resource \"configmaps\" in API group \"\" in the namespace \"globex\"";
        let status = kube::core::Status { code: 403, reason: "Forbidden".into(), message: message.into(), ..Default::default() };
        let e = KubeError::Api { action: "apply ConfigMap x".into(), source: kube::Error::Api(Box::new(status)) };
        assert_eq!(e.to_string(), format!("apply ConfigMap x: {message} (403 Forbidden)"));
        let hook = KubeError::Hook { what: "pre-install hook t/j.yaml".into(), source: Box::new(e) };
        assert_eq!(hook.status(), Some(403));
        assert!(hook.to_string().starts_with("pre-install hook t/j.yaml failed: apply ConfigMap x: configmaps"), "{hook}");
    }
}
