//! Test support: an in-process Kubernetes API server on loopback.
//!
//! No API server can be installed on the machines Harmony is developed and tested on, so the
//! Kubernetes executor is tested against this one. It speaks enough of the API for kube-rs and
//! client-go (Helm) clients, with the semantics that matter to Harmony:
//!
//! - discovery (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`) for the
//!   built-in types in [`resources::builtin`] plus any registered with [`Server::register`],
//!   and OpenAPI v3 documents that declare server-side field validation, so kubectl and Helm
//!   skip client-side schema validation;
//! - request bodies in JSON, YAML and, for the core types client-go's typed clients write
//!   (Secrets, ConfigMaps, Namespaces), Kubernetes protobuf ([`protobuf`]);
//! - get, list (with `labelSelector`, `fieldSelector=metadata.name=…`, and paging by `limit` and
//!   `continue`), create, replace,
//!   patch (JSON merge patch, JSON patch, strategic merge patch treated as a merge patch) and
//!   delete, for namespaced and cluster-scoped objects, with `dryRun=All`;
//! - `resourceVersion` on every write and 409 `Conflict` when a replace, patch or server-side
//!   apply names a stale one (a precondition, as on the real server);
//!   409 `AlreadyExists`, 404 `NotFound` (also for a missing namespace), 422 `Invalid` (for a
//!   bad name and, as the real server's `ValidateLabels`, a label value, quoted in the message);
//! - server-side apply (`application/apply-patch+yaml`, `fieldManager`, `force`) with field
//!   ownership and conflicts ([`apply`]; lists are atomic, a documented simplification);
//! - the `scale` subresource of Deployments, StatefulSets and ReplicaSets (`kubectl scale`):
//!   an update of `spec.replicas` owned by the request's field manager;
//! - impersonation: a request with `Impersonate-User` (and `Impersonate-Group`) is authorized
//!   against the stored Roles, RoleBindings, ClusterRoles and ClusterRoleBindings and refused
//!   with 403 `Forbidden` worded like the real server ([`rbac`]). Requests without
//!   impersonation act as a cluster administrator;
//! - Pod Security admission ([`pod_security`], a strict subset): a namespace labelled
//!   `pod-security.kubernetes.io/enforce: baseline|restricted` refuses violating Pods with 403
//!   Forbidden worded like the real server; workloads are admitted and, with `auto_ready`, their
//!   status shows the controller's refused pods (`ReplicaFailure`, nothing ready);
//! - Secrets' `stringData` folded into base64 `data`, as the real server does;
//! - optional "controllers" ([`Options::auto_ready`]): workloads, Jobs, PVCs and Namespaces get
//!   a ready status when written, so readiness waits complete.
//!
//! Helm v4 itself installs, upgrades, rolls back and uninstalls releases on it
//! (`tests/helm_interop.rs`, through helm-python-sdk).
//!
//! Not implemented: watch (405), TLS, authentication, admission other than Pod Security, garbage collection by owner
//! references, finalizers. Time only shows in `creationTimestamp` and `managedFields`.

pub mod apply;
pub mod pod_security;
pub mod protobuf;
pub mod rbac;
pub mod resources;
pub mod selector;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

use apply::Managers;
use rbac::{Attributes, RbacSource, UserInfo};
use resources::ResourceType;
use selector::LabelSelector;

/// Server behaviour switches.
#[derive(Debug, Clone)]
pub struct Options {
    /// Give workloads, Jobs, PVCs and Namespaces a ready status when they are written.
    pub auto_ready: bool,
    /// `gitVersion` reported by `/version`.
    pub version: String,
}

impl Default for Options {
    fn default() -> Self {
        Options { auto_ready: true, version: "v1.33.0".into() }
    }
}

/// (group, plural, namespace or "", name)
type Key = (String, String, String, String);

#[derive(Debug, Clone)]
struct Stored {
    value: Value,
    managers: Managers,
}

#[derive(Default)]
struct Store {
    objects: BTreeMap<Key, Stored>,
    resource_version: u64,
    uid: u64,
    writes: u64,
    fail_writes_after: Option<u64>,
}

struct Shared {
    store: Mutex<Store>,
    types: Mutex<Vec<ResourceType>>,
    options: Options,
    /// The latest requests (`GET /api/v1/configmaps?limit=500`), at most [`REQUEST_LOG`].
    requests: Mutex<std::collections::VecDeque<String>>,
}

/// How many requests [`Server::requests`] keeps.
const REQUEST_LOG: usize = 10_000;

/// A running server; stops when dropped.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Starts a server on a free loopback port (must be called inside a Tokio runtime).
    pub async fn start() -> std::io::Result<Server> {
        Self::start_with(Options::default()).await
    }

    /// Starts a server with options.
    pub async fn start_with(options: Options) -> std::io::Result<Server> {
        Self::bind("127.0.0.1:0".parse().expect("literal address"), options).await
    }

    /// Starts a server on a given address.
    pub async fn bind(addr: SocketAddr, options: Options) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared { store: Mutex::new(Store::default()), types: Mutex::new(resources::builtin()), options, requests: Mutex::default() });
        let s = shared.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move { handle(&s, method, uri, headers, body) }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let server = Server { addr, shared, task };
        for ns in ["default", "kube-system", "kube-public"] {
            server.create(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        }
        server.shared.store.lock().expect("store lock").writes = 0;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Registers another resource type (e.g. a custom resource).
    pub fn register(&self, t: ResourceType) {
        self.shared.types.lock().expect("types lock").push(t);
    }

    /// Stops serving a registered type and deletes its objects, as deleting a
    /// CustomResourceDefinition does: discovery no longer lists it and its URLs answer 404.
    pub fn unregister(&self, group: &str, kind: &str) {
        let mut types = self.shared.types.lock().expect("types lock");
        let plurals: Vec<String> = types.iter().filter(|t| t.group == group && t.kind == kind).map(|t| t.plural.clone()).collect();
        types.retain(|t| !(t.group == group && t.kind == kind));
        let mut store = self.shared.store.lock().expect("store lock");
        store.objects.retain(|k, _| !(k.0 == group && plurals.contains(&k.1)));
    }

    /// The latest requests, oldest first, as `METHOD path?query` (at most 10,000): what a client
    /// asked, for tests of how it reads.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().expect("request log lock").iter().cloned().collect()
    }

    /// Creates an object directly, as an administrator (test set-up). Panics on errors.
    pub fn create(&self, obj: &Value) -> Value {
        let (t, ns) = self.type_of(obj);
        let req = Request { t: &t, ns: &ns, name: None, sub: None, query: BTreeMap::new(), content_type: "application/json".into(), body: obj.clone() };
        match create(&self.shared, &req) {
            Ok(v) => v,
            Err(e) => panic!("create failed: {}", e.message),
        }
    }

    /// One stored object, if present.
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let (t, _) = self.type_of(&json!({"apiVersion": api_version, "kind": kind}));
        let store = self.shared.store.lock().expect("store lock");
        store.objects.get(&(t.group.clone(), t.plural.clone(), namespace.to_string(), name.to_string())).map(|s| render(&s.value, &s.managers, &t))
    }

    /// Every stored object of a kind (in every namespace), in key order.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let (t, _) = self.type_of(&json!({"apiVersion": api_version, "kind": kind}));
        let store = self.shared.store.lock().expect("store lock");
        store.objects.iter().filter(|(k, _)| k.0 == t.group && k.1 == t.plural).map(|(_, s)| render(&s.value, &s.managers, &t)).collect()
    }

    /// Number of successful writes (create, replace, patch, delete) since start.
    pub fn writes(&self) -> u64 {
        self.shared.store.lock().expect("store lock").writes
    }

    /// After `n` more successful writes, every write fails with 500 (None: never).
    pub fn fail_writes_after(&self, n: Option<u64>) {
        let mut store = self.shared.store.lock().expect("store lock");
        store.fail_writes_after = n.map(|n| store.writes + n);
    }

    /// A kubeconfig (YAML) with one context per `(context name, server)`; the first is current.
    pub fn kubeconfig(contexts: &[(&str, &Server)]) -> String {
        let k = Kubeconfig {
            api_version: "v1",
            kind: "Config",
            current_context: contexts.first().map(|(n, _)| n.to_string()).unwrap_or_default(),
            clusters: contexts
                .iter()
                .map(|(n, s)| Named { name: n.to_string(), cluster: Some(ClusterEntry { server: s.url() }), context: None, user: None })
                .collect(),
            contexts: contexts
                .iter()
                .map(|(n, _)| Named {
                    name: n.to_string(),
                    cluster: None,
                    context: Some(ContextEntry { cluster: n.to_string(), user: "admin".into() }),
                    user: None,
                })
                .collect(),
            users: vec![Named { name: "admin".into(), cluster: None, context: None, user: Some(BTreeMap::new()) }],
        };
        serde_yaml_ng::to_string(&k).expect("kubeconfig serialises")
    }

    fn type_of(&self, obj: &Value) -> (ResourceType, String) {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default();
        let kind = obj["kind"].as_str().unwrap_or_default();
        let t = self
            .shared
            .types
            .lock()
            .expect("types lock")
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
            .cloned()
            .unwrap_or_else(|| panic!("unknown type {api_version} {kind}"));
        let ns = if t.namespaced { obj["metadata"]["namespace"].as_str().unwrap_or("default").to_string() } else { String::new() };
        (t, ns)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    current_context: String,
    clusters: Vec<Named>,
    contexts: Vec<Named>,
    users: Vec<Named>,
}

#[derive(Serialize)]
struct Named {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<ContextEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<BTreeMap<String, String>>,
}

#[derive(Serialize)]
struct ClusterEntry {
    server: String,
}

#[derive(Serialize)]
struct ContextEntry {
    cluster: String,
    user: String,
}

/// An API error: becomes a `Status` object.
#[derive(Debug)]
struct ApiError {
    code: u16,
    reason: &'static str,
    message: String,
    details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }
    fn not_found(t: &ResourceType, name: &str) -> Self {
        let what = if t.group.is_empty() { t.plural.clone() } else { format!("{}.{}", t.plural, t.group) };
        ApiError::new(404, "NotFound", format!("{what} \"{name}\" not found")).details(json!({"name": name, "group": t.group, "kind": t.plural}))
    }
    fn details(mut self, d: Value) -> Self {
        self.details = Some(d);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(d) = self.details {
            body["details"] = d;
        }
        json_response(StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &body)
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], serde_json::to_vec(v).unwrap_or_default()).into_response()
}

/// A parsed resource request.
struct Request<'a> {
    t: &'a ResourceType,
    ns: &'a str,
    name: Option<&'a str>,
    sub: Option<&'a str>,
    query: BTreeMap<String, String>,
    content_type: String,
    body: Value,
}

fn query_map(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                Ok(c) => {
                    out.push(c);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(shared: &Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    {
        let mut log = shared.requests.lock().expect("request log lock");
        if log.len() >= REQUEST_LOG {
            log.pop_front();
        }
        log.push_back(format!("{method} {uri}"));
    }
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let query = query_map(&uri);
    let user = headers.get("impersonate-user").and_then(|v| v.to_str().ok()).map(|name| {
        let groups = headers.get_all("impersonate-group").iter().filter_map(|v| v.to_str().ok()).map(String::from).collect();
        UserInfo::new(name, groups)
    });
    match segs.as_slice() {
        ["version"] => {
            let v = &shared.options.version;
            let parts: Vec<&str> = v.trim_start_matches('v').split('.').collect();
            return json_response(
                StatusCode::OK,
                &json!({"major": parts.first().unwrap_or(&"1"), "minor": parts.get(1).unwrap_or(&"32"), "gitVersion": v, "platform": "linux/amd64", "goVersion": "go1.23", "compiler": "gc", "gitCommit": "loopback", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z"}),
            );
        }
        ["openapi", "v3"] => return json_response(StatusCode::OK, &openapi_root(&shared.types.lock().expect("types lock"))),
        ["openapi", "v3", "api", "v1"] => return json_response(StatusCode::OK, &openapi_group(&shared.types.lock().expect("types lock"), "", "v1")),
        ["openapi", "v3", "apis", g, v] => return json_response(StatusCode::OK, &openapi_group(&shared.types.lock().expect("types lock"), g, v)),
        ["api"] => return json_response(StatusCode::OK, &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})),
        ["apis"] => return json_response(StatusCode::OK, &group_list(&shared.types.lock().expect("types lock"))),
        ["api", "v1"] => return json_response(StatusCode::OK, &resource_list(&shared.types.lock().expect("types lock"), "", "v1")),
        ["apis", g, v] => {
            let types = shared.types.lock().expect("types lock");
            if !types.iter().any(|t| t.group == *g && t.version == *v) {
                return ApiError::new(404, "NotFound", "the server could not find the requested resource").into_response();
            }
            return json_response(StatusCode::OK, &resource_list(&types, g, v));
        }
        _ => {}
    }
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return ApiError::new(404, "NotFound", "the server could not find the requested resource").into_response(),
    };
    let types = shared.types.lock().expect("types lock").clone();
    let find = |plural: &str| types.iter().find(|t| t.group == group && t.version == version && t.plural == plural);
    // namespaces/{ns}/{plural}[/{name}[/{sub}]] unless {plural} is not a namespaced type
    // (then it is a subresource of the namespace object itself).
    let (t, ns, name, sub) = match rest {
        ["namespaces", ns, plural, more @ ..] if find(plural).is_some_and(|t| t.namespaced) => {
            let t = find(plural).expect("checked");
            match more {
                [] => (t, *ns, None, None),
                [name] => (t, *ns, Some(*name), None),
                [name, sub] => (t, *ns, Some(*name), Some(*sub)),
                _ => return ApiError::new(404, "NotFound", "the server could not find the requested resource").into_response(),
            }
        }
        [plural, more @ ..] if find(plural).is_some() => {
            let t = find(plural).expect("checked");
            match more {
                [] => (t, "", None, None),
                [name] => (t, "", Some(*name), None),
                [name, sub] => (t, "", Some(*name), Some(*sub)),
                _ => return ApiError::new(404, "NotFound", "the server could not find the requested resource").into_response(),
            }
        }
        _ => return ApiError::new(404, "NotFound", "the server could not find the requested resource").into_response(),
    };
    if t.namespaced && ns.is_empty() && !(method == Method::GET && name.is_none()) {
        return ApiError::new(404, "NotFound", "the server could not find the requested resource").into_response();
    }
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (&method, name) {
        (&Method::GET, _) if watch => "watch",
        (&Method::GET, Some(_)) => "get",
        (&Method::GET, None) => "list",
        (&Method::POST, None) => "create",
        (&Method::PUT, Some(_)) => "update",
        (&Method::PATCH, Some(_)) => "patch",
        (&Method::DELETE, Some(_)) => "delete",
        (&Method::DELETE, None) => "deletecollection",
        _ => return ApiError::new(405, "MethodNotAllowed", format!("{method} is not supported on this path")).into_response(),
    };
    if let Some(user) = &user {
        let store = shared.store.lock().expect("store lock");
        let attrs = Attributes { verb, group, resource: &t.plural, subresource: sub, namespace: ns, name };
        if !rbac::allowed(&*store, user, &attrs) {
            let m = rbac::forbidden_message(user, &attrs);
            return ApiError::new(403, "Forbidden", m).details(json!({"name": name.unwrap_or_default(), "group": group, "kind": t.plural})).into_response();
        }
    }
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json").split(';').next().unwrap_or_default().trim().to_string();
    let body = if body.is_empty() || (method == Method::DELETE && !content_type.contains("json")) {
        // DeleteOptions in protobuf carry nothing this server acts on.
        Value::Null
    } else if content_type == "application/vnd.kubernetes.protobuf" {
        match protobuf::decode(&body) {
            Ok(v) => v,
            Err(e) => return ApiError::new(415, "UnsupportedMediaType", e).into_response(),
        }
    } else if !content_type.contains("json") && !content_type.contains("yaml") {
        return ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/apply-patch+yaml, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json, application/vnd.kubernetes.protobuf; got {content_type}")).into_response();
    } else if content_type == "application/apply-patch+yaml" {
        match serde_yaml_ng::from_slice::<Value>(&body) {
            Ok(v) => v,
            Err(e) => return ApiError::new(400, "BadRequest", format!("error decoding YAML: {e}")).into_response(),
        }
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => v,
            Err(e) => return ApiError::new(400, "BadRequest", format!("couldn't get version/kind; json parse error: {e}")).into_response(),
        }
    };
    let req = Request { t, ns, name, sub, query, content_type, body };
    let result = match verb {
        "get" | "patch" if sub == Some("scale") => scale(shared, &req, verb == "patch"),
        "watch" => Err(ApiError::new(405, "MethodNotAllowed", "watch is not supported by the loopback server")),
        "get" => get(shared, &req),
        "list" => list(shared, &req),
        "create" => create(shared, &req),
        "update" => replace(shared, &req),
        "patch" => patch(shared, &req),
        "delete" => delete(shared, &req),
        _ => Err(ApiError::new(405, "MethodNotAllowed", "deletecollection is not supported by the loopback server")),
    };
    match result {
        Ok(v) => {
            let code = if verb == "create" { StatusCode::CREATED } else { StatusCode::OK };
            let mut response = json_response(code, &v);
            // Pod Security `warn` applies to Pods and workloads alike: a Warning header.
            let warning = matches!(verb, "create" | "update" | "patch")
                .then(|| pod_security::pod_spec(&t.group, &t.kind, &v))
                .flatten()
                .and_then(|spec| pod_security::violation(pod_security_level(&shared.store.lock().expect("store lock"), ns, pod_security::WARN)?, spec));
            if let Some(w) = warning
                && let Ok(h) = axum::http::HeaderValue::from_str(&format!("299 - \"would {}\"", w.replace('"', "'")))
            {
                response.headers_mut().insert(header::WARNING, h);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

/// `/openapi/v3`: one path per group version, as the real server lists them.
fn openapi_root(types: &[ResourceType]) -> Value {
    let mut paths = serde_json::Map::new();
    for t in types {
        let key = if t.group.is_empty() { "api/v1".to_string() } else { format!("apis/{}/{}", t.group, t.version) };
        let url = format!("/openapi/v3/{key}?hash=loopback");
        paths.insert(key, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// `/openapi/v3/apis/<group>/<version>`: a document without schemas whose PATCH operations
/// declare the `fieldValidation` query parameter. That is what client-go's
/// `QueryParamVerifierV3` looks for (k8s.io/cli-runtime `resource/query_param_verifier_v3.go`,
/// `supportsQueryParamV3`): when the server supports it, kubectl and Helm leave validation to
/// the server instead of downloading schemas to validate on the client.
fn openapi_group(types: &[ResourceType], group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for t in types.iter().filter(|t| t.group == group && t.version == version) {
        let prefix = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
        let path = if t.namespaced { format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", t.plural) } else { format!("{prefix}/{}/{{name}}", t.plural) };
        let gvk = json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
        let patch = json!({
            "operationId": format!("patch{}", t.kind),
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk[0],
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}],
            "responses": {"200": {"description": "OK"}},
        });
        paths.insert(path, json!({"patch": patch}));
    }
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "loopback"}, "paths": paths, "components": {"schemas": {}}})
}

fn group_list(types: &[ResourceType]) -> Value {
    let mut groups: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        groups.entry(&t.group).or_default().insert(&t.version);
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, versions)| {
            let vs: Vec<Value> = versions.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect();
            json!({"name": g, "versions": vs.clone(), "preferredVersion": vs[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(types: &[ResourceType], group: &str, version: &str) -> Value {
    let verbs = ["create", "delete", "get", "list", "patch", "update"];
    let resources: Vec<Value> = types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .map(|t| json!({"name": t.plural, "singularName": t.kind.to_lowercase(), "namespaced": t.namespaced, "kind": t.kind, "verbs": verbs}))
        .collect();
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

impl RbacSource for Store {
    fn objects(&self, group: &str, plural: &str, namespace: Option<&str>) -> Vec<&Value> {
        let ns = namespace.unwrap_or_default();
        self.objects.iter().filter(|(k, _)| k.0 == group && k.1 == plural && k.2 == ns).map(|(_, s)| &s.value).collect()
    }
    fn object(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(group.into(), plural.into(), namespace.into(), name.into())).map(|s| &s.value)
    }
}

fn key(req: &Request, name: &str) -> Key {
    (req.t.group.clone(), req.t.plural.clone(), req.ns.to_string(), name.to_string())
}

/// The object as the API returns it: with `managedFields`.
fn render(v: &Value, managers: &Managers, t: &ResourceType) -> Value {
    let mut v = v.clone();
    if !managers.is_empty() {
        let time = v["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_string();
        v["metadata"]["managedFields"] = apply::managed_fields(managers, &t.api_version(), &time);
    }
    v
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v["metadata"]["labels"].as_object().map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()).unwrap_or_default()
}

fn get(shared: &Shared, req: &Request) -> Result<Value, ApiError> {
    let name = req.name.unwrap_or_default();
    let store = shared.store.lock().expect("store lock");
    let s = store.objects.get(&key(req, name)).ok_or_else(|| ApiError::not_found(req.t, name))?;
    Ok(render(&s.value, &s.managers, req.t))
}

fn list(shared: &Shared, req: &Request) -> Result<Value, ApiError> {
    let sel = LabelSelector::parse(req.query.get("labelSelector").map(String::as_str).unwrap_or_default())
        .map_err(|e| ApiError::new(400, "BadRequest", format!("unable to parse requirement: {e}")))?;
    let field_name = match req.query.get("fieldSelector").map(String::as_str).unwrap_or_default() {
        "" => None,
        f => Some(f.strip_prefix("metadata.name=").ok_or_else(|| ApiError::new(400, "BadRequest", format!("field label not supported: {f}")))?.to_string()),
    };
    let limit = match req.query.get("limit").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(l) => Some(l.parse::<usize>().map_err(|_| ApiError::new(400, "BadRequest", format!("invalid limit {l:?}: a non-negative integer")))?),
    };
    let after = match req.query.get("continue").map(String::as_str).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(Continue::decode(c).ok_or_else(|| ApiError::new(400, "BadRequest", "continue key is not valid: the token was not issued by this server"))?),
    };
    let store = shared.store.lock().expect("store lock");
    let mut matching = store
        .objects
        .iter()
        .filter(|(k, _)| k.0 == req.t.group && k.1 == req.t.plural && (req.ns.is_empty() || k.2 == req.ns))
        .filter(|(k, _)| after.as_ref().is_none_or(|a| (k.2.as_str(), k.3.as_str()) > (a.namespace.as_str(), a.name.as_str())))
        .filter(|(k, s)| sel.matches(&labels_of(&s.value)) && field_name.as_ref().is_none_or(|n| *n == k.3));
    let mut items = Vec::new();
    let mut last = None;
    for (k, s) in matching.by_ref().take(limit.unwrap_or(usize::MAX)) {
        let mut v = render(&s.value, &s.managers, req.t);
        if let Some(m) = v.as_object_mut() {
            m.remove("apiVersion");
            m.remove("kind");
        }
        items.push(v);
        last = Some(k);
    }
    let remaining = matching.count();
    let mut metadata = json!({"resourceVersion": store.resource_version.to_string()});
    if remaining > 0
        && let Some(k) = last
    {
        metadata["continue"] = json!(Continue { namespace: k.2.clone(), name: k.3.clone() }.encode());
        metadata["remainingItemCount"] = json!(remaining);
    }
    Ok(json!({"kind": format!("{}List", req.t.kind), "apiVersion": req.t.api_version(), "metadata": metadata, "items": items}))
}

/// Where a paged list goes on (`limit` and `continue`, as the real server pages: the
/// `continue` token of a list's metadata asks for the items after the last one returned, with
/// `remainingItemCount`). The real server serves every page from the snapshot of the first;
/// this one pages over the objects as they are when each page is asked for (objects are in
/// (namespace, name) order). The token is opaque to clients: hex of `namespace\0name`.
struct Continue {
    namespace: String,
    name: String,
}

impl Continue {
    fn encode(&self) -> String {
        format!("{}\0{}", self.namespace, self.name).bytes().map(|b| format!("{b:02x}")).collect()
    }

    fn decode(token: &str) -> Option<Continue> {
        if token.len() % 2 != 0 || token.len() > 4096 {
            return None;
        }
        let bytes: Vec<u8> = (0..token.len()).step_by(2).map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok()).collect::<Option<_>>()?;
        let text = String::from_utf8(bytes).ok()?;
        let (namespace, name) = text.split_once('\0')?;
        Some(Continue { namespace: namespace.to_string(), name: name.to_string() })
    }
}

fn dry_run(req: &Request) -> bool {
    req.query.get("dryRun").is_some_and(|d| d == "All")
}

fn manager(req: &Request, default: &str) -> String {
    req.query.get("fieldManager").cloned().unwrap_or_else(|| default.to_string())
}

/// Checks the body's identity against the request and returns its name.
fn validate_body(req: &Request, body: &Value, url_name: Option<&str>) -> Result<String, ApiError> {
    if !body.is_object() {
        return Err(ApiError::new(400, "BadRequest", "the body of the request was in an unknown format"));
    }
    let (api_version, kind) = (body["apiVersion"].as_str().unwrap_or_default(), body["kind"].as_str().unwrap_or_default());
    if api_version != req.t.api_version() || kind != req.t.kind {
        return Err(ApiError::new(
            400,
            "BadRequest",
            format!(
                "the API version in the data ({api_version}) does not match the expected API version ({}) or kind {kind} is not {}",
                req.t.api_version(),
                req.t.kind
            ),
        ));
    }
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::new(422, "Invalid", format!("{} \"\" is invalid: metadata.name: Required value: name or generateName is required", req.t.kind)));
    }
    if !valid_name(name) {
        return Err(ApiError::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                req.t.kind
            ),
        ));
    }
    if let Some(u) = url_name
        && u != name
    {
        return Err(ApiError::new(400, "BadRequest", format!("the name of the object ({name}) does not match the name on the URL ({u})")));
    }
    // As Kubernetes' `ValidateLabels` (k8s.io/apimachinery/pkg/apis/meta/v1/validation):
    // `field.Invalid(fldPath, v, msg)` for each of `IsValidLabelValue(v)`'s messages, so the
    // 422 quotes the offending value.
    if let Some(labels) = body["metadata"]["labels"].as_object() {
        for v in labels.values() {
            let v = v.as_str().unwrap_or_default();
            if let Some(msg) = invalid_label_value(v) {
                return Err(ApiError::new(422, "Invalid", format!("{} \"{name}\" is invalid: metadata.labels: Invalid value: \"{v}\": {msg}", req.t.kind)));
            }
        }
    }
    if let Some(ns) = body["metadata"]["namespace"].as_str()
        && req.t.namespaced
        && ns != req.ns
    {
        return Err(ApiError::new(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request"));
    }
    Ok(name.to_string())
}

/// Kubernetes' `IsValidLabelValue` message for `v`, if it is not a valid label value.
fn invalid_label_value(v: &str) -> Option<&'static str> {
    if v.len() > 63 {
        return Some("must be no more than 63 characters");
    }
    let ok = v.is_empty()
        || (v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()));
    (!ok).then_some(
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
    )
}

fn valid_name(n: &str) -> bool {
    n.len() <= 253
        && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn check_namespace(store: &Store, req: &Request) -> Result<(), ApiError> {
    if req.t.namespaced && !store.objects.contains_key(&(String::new(), "namespaces".into(), String::new(), req.ns.to_string())) {
        return Err(ApiError::new(404, "NotFound", format!("namespaces \"{}\" not found", req.ns)).details(json!({"name": req.ns, "kind": "namespaces"})));
    }
    Ok(())
}

fn check_fault(store: &Store) -> Result<(), ApiError> {
    match store.fail_writes_after {
        // 500, not 503: kube-rs retries 429/503/504 up to 15 times with backoff
        // (kube-client `RetryPolicy::server_retry`), which would turn the fault into a long stall.
        Some(limit) if store.writes >= limit => Err(ApiError::new(500, "InternalError", "the loopback server is failing writes (fault injection)")),
        _ => Ok(()),
    }
}

fn now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The level of Pod Security `mode` (`pod_security::ENFORCE`, `WARN`) of namespace `ns`.
fn pod_security_level(store: &Store, ns: &str, mode: &str) -> Option<pod_security::Level> {
    let namespace = store.objects.get(&(String::new(), "namespaces".into(), String::new(), ns.to_string())).map(|s| &s.value);
    pod_security::namespace_level(namespace, mode)
}

/// Pod Security admission of a write ([`pod_security`]): a Pod that violates its namespace's
/// enforced level is refused (an update that leaves the spec as it was is not checked, as the
/// real admission exempts metadata-only updates); workloads are admitted.
fn admit_pod(store: &Store, req: &Request, name: &str, value: &Value, existing: Option<&Stored>) -> Result<(), ApiError> {
    if !(req.t.group.is_empty() && req.t.kind == "Pod") || existing.is_some_and(|e| e.value["spec"] == value["spec"]) {
        return Ok(());
    }
    let (Some(level), Some(spec)) = (pod_security_level(store, req.ns, pod_security::ENFORCE), pod_security::pod_spec("", "Pod", value)) else {
        return Ok(());
    };
    match pod_security::violation(level, spec) {
        Some(v) => Err(ApiError::new(403, "Forbidden", format!("pods \"{name}\" is forbidden: {v}")).details(json!({"name": name, "kind": "pods"}))),
        None => Ok(()),
    }
}

/// Server-side defaults and derived fields applied on every write. `pods_refused`: why the
/// controller of a workload cannot create its pods (Pod Security), if it cannot.
fn normalise(shared: &Shared, t: &ResourceType, v: &mut Value, pods_refused: Option<String>) {
    if t.group.is_empty() && t.kind == "Secret" {
        if let Some(Value::Object(string_data)) = v.as_object_mut().and_then(|m| m.remove("stringData")) {
            use base64::Engine as _;
            let data = v.as_object_mut().expect("object").entry("data").or_insert_with(|| Value::Object(Map::new()));
            if let Some(d) = data.as_object_mut() {
                for (k, s) in string_data {
                    d.insert(k, Value::String(base64::engine::general_purpose::STANDARD.encode(s.as_str().unwrap_or_default())));
                }
            }
        }
        if v.get("type").is_none() {
            v["type"] = json!("Opaque");
        }
    }
    if !shared.options.auto_ready {
        return;
    }
    let generation = v["metadata"]["generation"].clone();
    let replicas = v["spec"]["replicas"].as_i64().unwrap_or(1);
    if let Some(why) = pods_refused {
        // What the controllers report when admission refuses every pod they create.
        let name = v["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let failure = json!({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": format!("pods \"{name}-\" is forbidden: {why}")});
        let status = match (t.group.as_str(), t.kind.as_str()) {
            ("apps", "Deployment" | "ReplicaSet" | "StatefulSet") => {
                json!({"observedGeneration": generation, "replicas": 0, "readyReplicas": 0, "availableReplicas": 0, "updatedReplicas": 0, "conditions": [failure]})
            }
            ("apps", "DaemonSet") => {
                json!({"observedGeneration": generation, "desiredNumberScheduled": 1, "currentNumberScheduled": 0, "numberReady": 0, "numberAvailable": 0, "conditions": [failure]})
            }
            _ => json!({}),
        };
        v["status"] = status;
        return;
    }
    let status = match (t.group.as_str(), t.kind.as_str()) {
        ("apps", "Deployment" | "ReplicaSet") => {
            json!({"observedGeneration": generation, "replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas, "updatedReplicas": replicas, "conditions": [{"type": "Available", "status": "True"}]})
        }
        ("apps", "StatefulSet") => {
            json!({"observedGeneration": generation, "replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas, "updatedReplicas": replicas, "currentReplicas": replicas, "currentRevision": "r1", "updateRevision": "r1"})
        }
        ("apps", "DaemonSet") => {
            json!({"observedGeneration": generation, "desiredNumberScheduled": 1, "currentNumberScheduled": 1, "numberReady": 1, "numberAvailable": 1, "updatedNumberScheduled": 1})
        }
        ("batch", "Job") => json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
        ("", "PersistentVolumeClaim") => json!({"phase": "Bound"}),
        ("", "Namespace") => json!({"phase": "Active"}),
        _ => return,
    };
    v["status"] = status;
}

/// Stores `value` under `name`, maintaining metadata. `existing` is the stored version.
fn store_object(
    shared: &Shared,
    store: &mut Store,
    req: &Request,
    name: &str,
    mut value: Value,
    existing: Option<&Stored>,
    managers: Managers,
) -> Result<Value, ApiError> {
    check_fault(store)?;
    let t = req.t;
    value["apiVersion"] = json!(t.api_version());
    value["kind"] = json!(t.kind);
    let meta = value["metadata"].as_object_mut().ok_or_else(|| ApiError::new(400, "BadRequest", "metadata must be an object"))?;
    meta.remove("managedFields");
    if t.namespaced {
        meta.insert("namespace".into(), json!(req.ns));
    }
    match existing {
        Some(old) => {
            for f in ["uid", "creationTimestamp"] {
                meta.insert(f.into(), old.value["metadata"][f].clone());
            }
            let old_gen = old.value["metadata"]["generation"].as_i64().unwrap_or(1);
            let spec_changed = {
                let strip = |v: &Value| {
                    let mut v = v.clone();
                    if let Some(m) = v.as_object_mut() {
                        m.remove("metadata");
                        m.remove("status");
                    }
                    v
                };
                strip(&old.value) != strip(&value)
            };
            value["metadata"]["generation"] = json!(if spec_changed { old_gen + 1 } else { old_gen });
        }
        None => {
            store.uid += 1;
            meta.insert("uid".into(), json!(format!("00000000-0000-4000-8000-{:012x}", store.uid)));
            meta.insert("creationTimestamp".into(), json!(now()));
            meta.insert("generation".into(), json!(1));
        }
    }
    admit_pod(store, req, name, &value, existing)?;
    let pods_refused = pod_security::pod_spec(&t.group, &t.kind, &value)
        .filter(|_| t.kind != "Pod")
        .and_then(|spec| pod_security::violation(pod_security_level(store, req.ns, pod_security::ENFORCE)?, spec));
    normalise(shared, t, &mut value, pods_refused);
    if let Some(old) = existing {
        let mut a = old.value.clone();
        let mut b = value.clone();
        a["metadata"]["resourceVersion"] = Value::Null;
        b["metadata"]["resourceVersion"] = Value::Null;
        if a == b && old.managers == managers {
            // Nothing changed: the real server does not bump resourceVersion either.
            return Ok(render(&old.value, &old.managers, t));
        }
    }
    if dry_run(req) {
        value["metadata"]["resourceVersion"] = json!(store.resource_version.to_string());
        return Ok(render(&value, &managers, t));
    }
    store.resource_version += 1;
    store.writes += 1;
    value["metadata"]["resourceVersion"] = json!(store.resource_version.to_string());
    let out = render(&value, &managers, t);
    store.objects.insert(key(req, name), Stored { value, managers });
    Ok(out)
}

fn create(shared: &Shared, req: &Request) -> Result<Value, ApiError> {
    let mut store = shared.store.lock().expect("store lock");
    let name = validate_body(req, &req.body, None)?;
    check_namespace(&store, req)?;
    if store.objects.contains_key(&key(req, &name)) {
        let what = if req.t.group.is_empty() { req.t.plural.clone() } else { format!("{}.{}", req.t.plural, req.t.group) };
        return Err(ApiError::new(409, "AlreadyExists", format!("{what} \"{name}\" already exists"))
            .details(json!({"name": name, "group": req.t.group, "kind": req.t.plural})));
    }
    if req.body["metadata"]["resourceVersion"].as_str().is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::new(400, "BadRequest", "resourceVersion should not be set on objects to be created"));
    }
    let mut managers = Managers::new();
    apply::record_update(None, &req.body, &mut managers, &manager(req, "loopback-client"));
    store_object(shared, &mut store, req, &name, req.body.clone(), None, managers)
}

fn conflict(req: &Request, name: &str) -> ApiError {
    let what = if req.t.group.is_empty() { req.t.plural.clone() } else { format!("{}.{}", req.t.plural, req.t.group) };
    ApiError::new(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {what} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ),
    )
    .details(json!({"name": name, "group": req.t.group, "kind": req.t.plural}))
}

fn replace(shared: &Shared, req: &Request) -> Result<Value, ApiError> {
    let mut store = shared.store.lock().expect("store lock");
    let url_name = req.name.unwrap_or_default();
    let name = validate_body(req, &req.body, Some(url_name))?;
    let existing = store.objects.get(&key(req, &name)).cloned().ok_or_else(|| ApiError::not_found(req.t, &name))?;
    if let Some(rv) = req.body["metadata"]["resourceVersion"].as_str()
        && !rv.is_empty()
        && Some(rv) != existing.value["metadata"]["resourceVersion"].as_str()
    {
        return Err(conflict(req, &name));
    }
    let mut body = req.body.clone();
    if req.sub == Some("status") {
        // The status subresource changes only status.
        let mut v = existing.value.clone();
        v["status"] = body["status"].take();
        body = v;
    } else if existing.value.get("status").is_some() {
        body["status"] = existing.value["status"].clone();
    }
    let mut managers = existing.managers.clone();
    apply::record_update(Some(&existing.value), &body, &mut managers, &manager(req, "loopback-client"));
    store_object(shared, &mut store, req, &name, body, Some(&existing), managers)
}

fn patch(shared: &Shared, req: &Request) -> Result<Value, ApiError> {
    let mut store = shared.store.lock().expect("store lock");
    let name = req.name.unwrap_or_default().to_string();
    let existing = store.objects.get(&key(req, &name)).cloned();
    match req.content_type.as_str() {
        "application/apply-patch+yaml" => {
            let Some(fm) = req.query.get("fieldManager") else {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            };
            validate_body(req, &req.body, Some(&name))?;
            if existing.is_none() {
                check_namespace(&store, req)?;
            }
            // `metadata.resourceVersion` in an apply configuration is a precondition on the
            // object it updates, as on the real server: the patch yields an object carrying it,
            // and the registry's update refuses one whose resourceVersion is not the stored one
            // (k8s.io/apiserver `registry/generic/registry/store.go`, `Store.Update`: 409
            // `OptimisticLockErrorMsg`). On a missing object the registry takes its
            // create-on-update branch, which does not compare it: the object is created.
            if let (Some(rv), Some(e)) = (req.body["metadata"]["resourceVersion"].as_str().filter(|rv| !rv.is_empty()), &existing)
                && Some(rv) != e.value["metadata"]["resourceVersion"].as_str()
            {
                return Err(conflict(req, &name));
            }
            let force = req.query.get("force").is_some_and(|f| f == "true");
            let mut managers = existing.as_ref().map(|e| e.managers.clone()).unwrap_or_default();
            let merged = apply::apply(existing.as_ref().map(|e| &e.value), &mut managers, &req.body, fm, force).map_err(|conflicts| {
                let n = conflicts.len();
                let list: Vec<String> = conflicts.iter().map(|c| format!("conflict with \"{}\": {}", c.manager, c.field)).collect();
                let message =
                    if n == 1 { format!("Apply failed with 1 conflict: {}", list[0]) } else { format!("Apply failed with {n} conflicts: {}", list.join("\n")) };
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\"", c.manager), "field": c.field}))
                    .collect();
                ApiError::new(409, "Conflict", message).details(json!({"causes": causes}))
            })?;
            store_object(shared, &mut store, req, &name, merged, existing.as_ref(), managers)
        }
        ct => {
            let existing = existing.ok_or_else(|| ApiError::not_found(req.t, &name))?;
            let mut v = existing.value.clone();
            match ct {
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => json_patch::merge(&mut v, &req.body),
                "application/json-patch+json" => {
                    let p: json_patch::Patch =
                        serde_json::from_value(req.body.clone()).map_err(|e| ApiError::new(400, "BadRequest", format!("invalid JSON patch: {e}")))?;
                    json_patch::patch(&mut v, &p)
                        .map_err(|e| ApiError::new(422, "Invalid", format!("the server rejected our request due to an error in our request: {e}")))?;
                }
                other => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other})"
                        ),
                    ));
                }
            }
            if let Some(rv) = req.body["metadata"]["resourceVersion"].as_str()
                && Some(rv) != existing.value["metadata"]["resourceVersion"].as_str()
            {
                return Err(conflict(req, &name));
            }
            validate_body(req, &v, Some(&name))?;
            let mut managers = existing.managers.clone();
            apply::record_update(Some(&existing.value), &v, &mut managers, &manager(req, "loopback-client"));
            store_object(shared, &mut store, req, &name, v, Some(&existing), managers)
        }
    }
}

/// Workloads whose `spec.replicas` the `scale` subresource reads and writes.
const SCALABLE: &[(&str, &str)] = &[("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "ReplicaSet")];

/// The `scale` subresource (`kubectl scale`, autoscalers): reads or merge-patches an
/// `autoscaling/v1` `Scale` whose `spec.replicas` is the workload's. As on the real server, a
/// patch is an update of the workload by the request's field manager, which then owns
/// `spec.replicas` (upstream `registry/apps/deployment/storage`, `ScaleREST`, and the field
/// manager's subresource handling); the answer is the `Scale`.
fn scale(shared: &Shared, req: &Request, write: bool) -> Result<Value, ApiError> {
    if !SCALABLE.contains(&(req.t.group.as_str(), req.t.kind.as_str())) {
        return Err(ApiError::new(404, "NotFound", format!("the server could not find the requested resource ({} scale)", req.t.plural)));
    }
    let mut store = shared.store.lock().expect("store lock");
    let name = req.name.unwrap_or_default().to_string();
    let existing = store.objects.get(&key(req, &name)).cloned().ok_or_else(|| ApiError::not_found(req.t, &name))?;
    let view = |v: &Value| {
        let selector: Vec<String> = v["spec"]["selector"]["matchLabels"]
            .as_object()
            .map(|m| m.iter().map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or_default())).collect())
            .unwrap_or_default();
        let meta = &v["metadata"];
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"], "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
            "spec": {"replicas": v["spec"]["replicas"].as_i64().unwrap_or(1)},
            "status": {"replicas": v["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector.join(",")}})
    };
    if !write {
        return Ok(view(&existing.value));
    }
    if !matches!(req.content_type.as_str(), "application/merge-patch+json" | "application/strategic-merge-patch+json") {
        return Err(ApiError::new(415, "UnsupportedMediaType", format!("the scale subresource takes merge patches here (got {})", req.content_type)));
    }
    let mut patched = view(&existing.value);
    json_patch::merge(&mut patched, &req.body);
    let replicas = patched["spec"]["replicas"].as_i64().filter(|r| *r >= 0).ok_or_else(|| {
        ApiError::new(422, "Invalid", format!("Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: must be greater than or equal to 0"))
    })?;
    let mut v = existing.value.clone();
    v["spec"]["replicas"] = json!(replicas);
    let mut managers = existing.managers.clone();
    apply::record_update(Some(&existing.value), &v, &mut managers, &manager(req, "loopback-client"));
    let stored = store_object(shared, &mut store, req, &name, v, Some(&existing), managers)?;
    Ok(view(&stored))
}

fn delete(shared: &Shared, req: &Request) -> Result<Value, ApiError> {
    let mut store = shared.store.lock().expect("store lock");
    let name = req.name.unwrap_or_default();
    let k = key(req, name);
    let existing = store.objects.get(&k).cloned().ok_or_else(|| ApiError::not_found(req.t, name))?;
    if let Some(rv) = req.body["preconditions"]["resourceVersion"].as_str()
        && Some(rv) != existing.value["metadata"]["resourceVersion"].as_str()
    {
        return Err(conflict(req, name));
    }
    check_fault(&store)?;
    if dry_run(req) {
        return Ok(render(&existing.value, &existing.managers, req.t));
    }
    store.objects.remove(&k);
    if req.t.group.is_empty() && req.t.plural == "namespaces" {
        // Namespace deletion removes everything in it (the real server does so asynchronously).
        store.objects.retain(|key, _| key.2 != name);
    }
    store.resource_version += 1;
    store.writes += 1;
    Ok(render(&existing.value, &existing.managers, req.t))
}
