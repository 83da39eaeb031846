//! `helm template`: release scope, manifest splitting and ordering, output.

/// The API versions Helm's default Capabilities report (client-go's scheme at Kubernetes
/// 1.36, as Helm v4.2 builds it), in its order: recorded from Helm v4.2.3's engine
/// (helm-python-sdk), e.g. without `autoscaling/v2beta2` and with `resource.k8s.io/v1`.
pub fn default_api_versions() -> Vec<String> {
    DEFAULT_API_VERSIONS.iter().map(|s| s.to_string()).collect()
}

const DEFAULT_API_VERSIONS: &[&str] = &[
    "v1",
    "admissionregistration.k8s.io/v1",
    "admissionregistration.k8s.io/v1alpha1",
    "admissionregistration.k8s.io/v1beta1",
    "internal.apiserver.k8s.io/v1alpha1",
    "apps/v1",
    "apps/v1beta1",
    "apps/v1beta2",
    "authentication.k8s.io/v1",
    "authentication.k8s.io/v1alpha1",
    "authentication.k8s.io/v1beta1",
    "authorization.k8s.io/v1",
    "authorization.k8s.io/v1beta1",
    "autoscaling/v1",
    "autoscaling/v2",
    "batch/v1",
    "batch/v1beta1",
    "certificates.k8s.io/v1",
    "certificates.k8s.io/v1beta1",
    "certificates.k8s.io/v1alpha1",
    "coordination.k8s.io/v1alpha2",
    "coordination.k8s.io/v1beta1",
    "coordination.k8s.io/v1",
    "discovery.k8s.io/v1",
    "discovery.k8s.io/v1beta1",
    "events.k8s.io/v1",
    "events.k8s.io/v1beta1",
    "extensions/v1beta1",
    "flowcontrol.apiserver.k8s.io/v1",
    "flowcontrol.apiserver.k8s.io/v1beta1",
    "flowcontrol.apiserver.k8s.io/v1beta2",
    "flowcontrol.apiserver.k8s.io/v1beta3",
    "networking.k8s.io/v1",
    "networking.k8s.io/v1beta1",
    "node.k8s.io/v1",
    "node.k8s.io/v1alpha1",
    "node.k8s.io/v1beta1",
    "policy/v1",
    "policy/v1beta1",
    "rbac.authorization.k8s.io/v1",
    "rbac.authorization.k8s.io/v1beta1",
    "rbac.authorization.k8s.io/v1alpha1",
    "resource.k8s.io/v1",
    "resource.k8s.io/v1beta2",
    "resource.k8s.io/v1beta1",
    "resource.k8s.io/v1alpha3",
    "scheduling.k8s.io/v1alpha2",
    "scheduling.k8s.io/v1beta1",
    "scheduling.k8s.io/v1",
    "storage.k8s.io/v1beta1",
    "storage.k8s.io/v1",
    "storage.k8s.io/v1alpha1",
    "storagemigration.k8s.io/v1beta1",
    "apiextensions.k8s.io/v1beta1",
    "apiextensions.k8s.io/v1",
];

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::chart::Chart;
use crate::funcs::Environment;
use crate::objects::{Capabilities, Files, KubeVersion};
use crate::render::{RenderTemplate, render};
use crate::value::Value;

/// Options of a `helm template` run.
#[derive(Clone, Debug)]
pub struct ReleaseOptions {
    /// Release name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `--kube-version` (default `v1.20.0`, Helm's test default).
    pub kube_version: Option<String>,
    /// `--api-versions`, added to the default set.
    pub api_versions: Vec<String>,
    /// `api_versions` are a cluster's discovered set and replace the default set, as when Helm
    /// installs against a cluster (`pkg/action/action.go`, `getCapabilities`).
    pub discovered_api_versions: bool,
    /// `--include-crds`
    pub include_crds: bool,
    /// `--show-only` globs.
    pub show_only: Vec<String>,
    /// `--skip-tests`
    pub skip_tests: bool,
    /// Revision (1 for install).
    pub revision: i64,
    /// Upgrade instead of install.
    pub is_upgrade: bool,
}

impl Default for ReleaseOptions {
    fn default() -> Self {
        ReleaseOptions {
            name: "release-name".into(),
            namespace: "default".into(),
            kube_version: None,
            api_versions: vec![],
            discovered_api_versions: false,
            include_crds: false,
            show_only: vec![],
            skip_tests: false,
            revision: 1,
            is_upgrade: false,
        }
    }
}

/// What `helm template` prints: stdout and, on failure, the error (without `Error: `).
#[derive(Clone, Debug, Default)]
pub struct TemplateOutput {
    /// Standard output.
    pub stdout: String,
    /// The error, if the command fails.
    pub error: Option<String>,
    /// Whether the error is a manifest (YAML) error, for which Helm suggests `--debug`.
    pub yaml_error: bool,
}

/// A manifest after splitting and sorting.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Template path (`chart/templates/x.yaml`).
    pub name: String,
    /// Document text.
    pub content: String,
    /// `kind`
    pub kind: String,
}

/// A hook.
#[derive(Clone, Debug)]
pub struct Hook {
    /// Manifest.
    pub manifest: Manifest,
    /// Events (`pre-install`, `test`, ...).
    pub events: Vec<String>,
    /// Weight.
    pub weight: i64,
}

/// Helm's `InstallOrder`.
pub const INSTALL_ORDER: &[&str] = &[
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

const HOOK_EVENTS: &[&str] =
    &["pre-install", "post-install", "pre-delete", "post-delete", "pre-upgrade", "post-upgrade", "pre-rollback", "post-rollback", "test", "test-success"];

/// Helm's `SplitManifests`: documents in order. A `---` line separates documents (and the
/// whitespace after it is dropped); a `---` line directly after a separator stays in the
/// next document, as with Helm's `(?:^|\s*\n)---\s*` regular expression. Trailing
/// whitespace of a document is kept, as Helm 4 prints it.
pub fn split_manifests(big: &str) -> Vec<String> {
    let b = big.as_bytes();
    let mut docs = Vec::new();
    let mut seg_start = 0;
    let mut last_sep_end = usize::MAX;
    let mut i = 0;
    while i < b.len() {
        let line_start = i == 0 || b[i - 1] == b'\n';
        if line_start && i != last_sep_end && b[i..].starts_with(b"---") {
            docs.push(&big[seg_start..i]);
            let mut j = i + 3;
            while j < b.len() && (b[j] as char).is_ascii_whitespace() {
                j += 1;
            }
            seg_start = j;
            last_sep_end = j;
            i = j;
            continue;
        }
        i += 1;
    }
    docs.push(&big[seg_start..]);
    docs.into_iter().map(|d| d.trim_start().to_string()).filter(|d| !d.trim().is_empty()).collect()
}

fn kind_rank(k: &str) -> Option<usize> {
    INSTALL_ORDER.iter().position(|x| *x == k)
}

fn less_by_kind(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (kind_rank(a), kind_rank(b)) {
        (None, None) => a.cmp(b),
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.cmp(&y),
    }
}

struct Head {
    kind: String,
    annotations: BTreeMap<String, String>,
}

fn parse_head(doc: &str, path: &str) -> Result<Head, String> {
    let v = crate::yaml::decode_head(doc).map_err(|e| format!("YAML parse error on {path}: {e}"))?;
    let mut head = Head { kind: String::new(), annotations: BTreeMap::new() };
    if let Value::Map(m) = &v {
        let m = m.borrow();
        if let Some(Value::Str(k)) = m.get("kind") {
            head.kind = k.to_string();
        }
        if let Some(Value::Map(md)) = m.get("metadata")
            && let Some(Value::Map(an)) = md.borrow().get("annotations")
        {
            for (k, v) in an.borrow().iter() {
                match v {
                    Value::Str(s) => {
                        head.annotations.insert(k.clone(), s.to_string());
                    }
                    Value::Nil => {}
                    other => {
                        let t = match other {
                            Value::Float(_) => "number",
                            Value::Bool(_) => "bool",
                            Value::List(..) => "array",
                            _ => "object",
                        };
                        return Err(format!(
                            "YAML parse error on {path}: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {t} into Go struct field .metadata.annotations of type string"
                        ));
                    }
                }
            }
        }
    } else if !v.is_nil() {
        let t = match v {
            Value::Str(_) => "string",
            Value::List(..) => "array",
            Value::Float(_) => "number",
            Value::Bool(_) => "bool",
            _ => "value",
        };
        return Err(format!(
            "YAML parse error on {path}: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {t} into Go value of type releaseutil.SimpleHead"
        ));
    }
    Ok(head)
}

/// Helm's `SortManifests`: (hooks, manifests) in install order.
pub fn sort_manifests(files: &BTreeMap<String, String>) -> Result<(Vec<Hook>, Vec<Manifest>), String> {
    let mut hooks = Vec::new();
    let mut generic = Vec::new();
    for (path, content) in files {
        let base = path.rsplit('/').next().unwrap_or(path);
        if base.starts_with('_') || content.trim().is_empty() {
            continue;
        }
        for doc in split_manifests(content) {
            let head = parse_head(&doc, path)?;
            let m = Manifest { name: path.clone(), content: doc, kind: head.kind.clone() };
            let Some(ht) = head.annotations.get("helm.sh/hook") else {
                generic.push(m);
                continue;
            };
            let mut events = Vec::new();
            let mut unknown = false;
            for h in ht.split(',') {
                let h = h.trim().to_lowercase();
                if HOOK_EVENTS.contains(&h.as_str()) {
                    events.push(h);
                } else {
                    unknown = true;
                    break;
                }
            }
            if unknown {
                continue;
            }
            let weight = head.annotations.get("helm.sh/hook-weight").and_then(|w| w.trim().parse().ok()).unwrap_or(0);
            hooks.push(Hook { manifest: m, events, weight });
        }
    }
    generic.sort_by(|a, b| less_by_kind(&a.kind, &b.kind));
    hooks.sort_by(|a, b| less_by_kind(&a.manifest.kind, &b.manifest.kind));
    Ok((hooks, generic))
}

fn go_name(k: &str) -> String {
    match k {
        "apiVersion" => "APIVersion".into(),
        "appVersion" => "AppVersion".into(),
        "kubeVersion" => "KubeVersion".into(),
        "import-values" => "ImportValues".into(),
        "url" => "URL".into(),
        k => {
            let mut c = k.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        }
    }
}

fn go_keys(v: &Value, depth: usize) -> Value {
    match v {
        Value::Map(m) if depth < 2 => Value::map(m.borrow().iter().map(|(k, v)| (go_name(k), go_keys(v, depth + 1))).collect()),
        Value::List(l, _) if depth < 2 => Value::list(l.iter().map(|e| go_keys(e, depth + 1)).collect()),
        v => v.clone(),
    }
}

/// `.Chart` for a chart: its metadata with Go field names, plus `IsRoot`.
pub fn chart_object(c: &Chart) -> Value {
    let mut m = BTreeMap::new();
    for k in ["Name", "Home", "Version", "Description", "Icon", "APIVersion", "Condition", "Tags", "AppVersion", "KubeVersion", "Type"] {
        m.insert(k.to_string(), Value::from(""));
    }
    for k in ["Sources", "Keywords", "Maintainers", "Dependencies"] {
        m.insert(k.to_string(), Value::list(vec![]));
    }
    m.insert("Deprecated".into(), Value::Bool(false));
    m.insert("Annotations".into(), Value::empty_map());
    if let Value::Map(raw) = &c.metadata.raw {
        for (k, v) in raw.borrow().iter() {
            let gk = go_name(k);
            let v = match gk.as_str() {
                "Maintainers" | "Dependencies" => go_keys(v, 0),
                _ => v.clone(),
            };
            m.insert(gk, v);
        }
    }
    m.insert("Name".into(), Value::from(c.metadata.name.as_str()));
    m.insert("IsRoot".into(), Value::Bool(c.is_root));
    Value::map(m)
}

fn collect_templates(c: &Chart, parent_scope: Option<&Value>, release: &Value, caps: &Value, top_values: &Value, out: &mut Vec<RenderTemplate>) -> Value {
    let values = if c.is_root {
        top_values.clone()
    } else {
        let pv = match parent_scope {
            Some(Value::Map(p)) => p.borrow().get("Values").cloned().unwrap_or(Value::Nil),
            _ => Value::Nil,
        };
        match &pv {
            Value::Map(pm) => match pm.borrow().get(c.name()) {
                Some(v @ Value::Map(_)) => v.clone(),
                _ => Value::empty_map(),
            },
            _ => Value::empty_map(),
        }
    };
    let files = Files { files: c.files.iter().map(|f| (f.name.clone(), f.data.clone())).collect() };
    let subcharts = Value::empty_map();
    let mut next = BTreeMap::new();
    next.insert("Chart".to_string(), chart_object(c));
    next.insert("Files".to_string(), Value::Object(Rc::new(files)));
    next.insert("Release".to_string(), release.clone());
    next.insert("Capabilities".to_string(), caps.clone());
    next.insert("Values".to_string(), values);
    next.insert("Subcharts".to_string(), subcharts.clone());
    let next = Value::map(next);
    for child in &c.dependencies {
        let sv = collect_templates(child, Some(&next), release, caps, top_values, out);
        if let Value::Map(s) = &subcharts {
            s.borrow_mut().insert(child.name().to_string(), sv);
        }
    }
    let library = c.metadata.chart_type == "library";
    for t in &c.templates {
        let base = t.name.rsplit('/').next().unwrap_or(&t.name);
        if library && !base.starts_with('_') {
            continue;
        }
        // each template gets its own scope map (Helm shares one and overwrites .Template)
        let scope = match &next {
            Value::Map(m) => Value::map(m.borrow().clone()),
            v => v.clone(),
        };
        out.push(RenderTemplate {
            name: format!("{}/{}", c.full_path, t.name),
            text: String::from_utf8_lossy(&t.data).into_owned(),
            vals: scope,
            base_path: format!("{}/templates", c.full_path),
        });
    }
    next
}

fn valid_release_name(n: &str) -> bool {
    if n.is_empty() || n.len() > 53 {
        return false;
    }
    let re = regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").unwrap();
    re.is_match(n)
}

/// Validates values against the chart's (and subcharts') `values.schema.json`.
fn validate_schema(c: &Chart, vals: &Value) -> Result<(), String> {
    let mut errs = String::new();
    validate_schema_rec(c, vals, &mut errs);
    if errs.is_empty() { Ok(()) } else { Err(format!("values don't meet the specifications of the schema(s) in the following chart(s):\n{errs}")) }
}

fn validate_schema_rec(c: &Chart, vals: &Value, errs: &mut String) {
    if let Some(schema) = &c.schema
        && let Ok(schema_json) = serde_json::from_slice::<serde_json::Value>(schema)
    {
        let inst: serde_json::Value =
            crate::json::encode(vals, crate::json::JsonOpts::default()).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(serde_json::Value::Null);
        if let Ok(v) = jsonschema::validator_for(&schema_json) {
            let mut required: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut msgs: Vec<String> = Vec::new();
            for e in v.iter_errors(&inst) {
                let p = e.instance_path().to_string();
                if let jsonschema::error::ValidationErrorKind::Required { property } = e.kind() {
                    required.entry(p).or_default().push(schema_quote(property));
                    continue;
                }
                msgs.push(format!("- at '{p}': {}", schema_message(&e)));
            }
            for (p, props) in required {
                let what = if props.len() == 1 { format!("missing property {}", props[0]) } else { format!("missing properties {}", props.join(", ")) };
                msgs.push(format!("- at '{p}': {what}"));
            }
            if !msgs.is_empty() {
                msgs.sort();
                errs.push_str(&format!("{}:\n{}\n", c.name(), msgs.join("\n")));
            }
        }
    }
    for d in &c.dependencies {
        let sub = match vals {
            Value::Map(m) => m.borrow().get(d.name()).cloned().unwrap_or_else(Value::empty_map),
            _ => Value::empty_map(),
        };
        validate_schema_rec(d, &sub, errs);
    }
}

fn schema_quote(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

fn json_type_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// The wording of santhosh-tekuri/jsonschema (Helm v4's validator) for common errors.
fn schema_message(e: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::{TypeKind, ValidationErrorKind as K};
    let inst = e.instance();
    match e.kind() {
        K::Type { kind } => {
            let want = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(ts) => ts.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" or "),
            };
            format!("got {}, want {}", json_type_of(inst), want)
        }
        K::Enum { options } => {
            let opts = match options.as_ref() {
                serde_json::Value::Array(a) => a.iter().map(schema_quote).collect::<Vec<_>>().join(", "),
                o => schema_quote(o),
            };
            format!("value must be one of {opts}")
        }
        K::Constant { expected_value } => format!("value must be {}", schema_quote(expected_value)),
        K::Minimum { limit } => format!("must be >= {limit} but found {inst}"),
        K::Maximum { limit } => format!("must be <= {limit} but found {inst}"),
        K::ExclusiveMinimum { limit } => format!("must be > {limit} but found {inst}"),
        K::ExclusiveMaximum { limit } => format!("must be < {limit} but found {inst}"),
        K::MinLength { limit } => format!("minLength: got {}, want {limit}", inst.as_str().map(|s| s.chars().count()).unwrap_or(0)),
        K::MaxLength { limit } => format!("maxLength: got {}, want {limit}", inst.as_str().map(|s| s.chars().count()).unwrap_or(0)),
        K::MinItems { limit } => format!("minItems: got {}, want {limit}", inst.as_array().map(Vec::len).unwrap_or(0)),
        K::MaxItems { limit } => format!("maxItems: got {}, want {limit}", inst.as_array().map(Vec::len).unwrap_or(0)),
        K::Pattern { pattern } => format!("{} does not match pattern {}", schema_quote(inst), schema_quote(&serde_json::Value::String(pattern.clone()))),
        K::AdditionalProperties { unexpected } => {
            format!("additional properties {} not allowed", unexpected.iter().map(|u| format!("'{u}'")).collect::<Vec<_>>().join(", "))
        }
        K::FalseSchema => "false schema".into(),
        K::Format { format } => format!("{} is not valid {format}", schema_quote(inst)),
        _ => e.to_string(),
    }
}

/// A rendered release, before it is printed: what `harmony plan`/`apply` work with.
#[derive(Clone, Debug, Default)]
pub struct RenderedRelease {
    /// Manifests in Helm's install order (`kind` order, then file order).
    pub manifests: Vec<Manifest>,
    /// Hooks, sorted by kind (Helm applies them by weight at run time).
    pub hooks: Vec<Hook>,
    /// CRDs from `crds/` (of the chart and its dependencies): (source path, text).
    pub crds: Vec<(String, String)>,
    /// The root chart's rendered `NOTES.txt`.
    pub notes: String,
    /// Every rendered template, by path (partials excluded).
    pub files: BTreeMap<String, String>,
}

/// Why a release could not be rendered.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct ReleaseError {
    /// Helm's message (what `helm template` prints after `Error: `).
    pub message: String,
    /// A rendered manifest is not valid YAML (`helm template --debug` prints `files`).
    pub yaml_error: bool,
    /// The rendered templates, when rendering itself succeeded.
    pub files: BTreeMap<String, String>,
}

fn rel_err(message: String) -> ReleaseError {
    ReleaseError { message, yaml_error: false, files: BTreeMap::new() }
}

/// Renders a release of a loaded chart with merged user values (Helm's install action,
/// client-only).
pub fn render_release(mut chart: Chart, user_values: Value, opts: &ReleaseOptions, env: &dyn Environment) -> Result<RenderedRelease, ReleaseError> {
    match chart.metadata.chart_type.as_str() {
        "" | "application" => {}
        t => return Err(rel_err(format!("{t} charts are not installable"))),
    }
    if !valid_release_name(&opts.name) {
        return Err(rel_err(format!(
            "release name {}: invalid release name, must match regex ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ and the length must not be longer than 53",
            crate::template::fmt::go_quote(&opts.name)
        )));
    }
    let kv_str = opts.kube_version.clone().unwrap_or_else(|| "v1.20.0".into());
    let Some(kube_version) = KubeVersion::parse(&kv_str) else {
        return Err(rel_err(format!("invalid kube version {}: Invalid Semantic Version", crate::template::fmt::go_quote(&kv_str))));
    };
    if !chart.metadata.kube_version.is_empty() {
        let ok = crate::semver::Constraints::parse(&chart.metadata.kube_version)
            .ok()
            .zip(crate::semver::Version::parse(&kube_version.version).ok())
            .is_some_and(|(c, v)| c.check(&v));
        if !ok {
            return Err(rel_err(format!(
                "chart requires kubeVersion: {} which is incompatible with Kubernetes {}",
                chart.metadata.kube_version, kube_version.version
            )));
        }
    }
    let mut api_versions = if opts.discovered_api_versions { Vec::new() } else { default_api_versions() };
    for a in &opts.api_versions {
        for p in a.split(',') {
            let p = p.trim();
            if !p.is_empty() {
                api_versions.push(p.to_string());
            }
        }
    }
    crate::values::process_dependencies(&mut chart, &user_values).map_err(rel_err)?;
    let missing: Vec<String> =
        chart.metadata.dependencies.iter().filter(|d| !chart.dependencies.iter().any(|c| c.name() == d.name)).map(|d| d.name.clone()).collect();
    if !missing.is_empty() {
        return Err(rel_err(format!(
            "An error occurred while checking for chart dependencies. You may need to run `helm dependency build` to fetch missing dependencies: found in Chart.yaml, but missing in charts/ directory: {}",
            missing.join(", ")
        )));
    }
    chart.set_parents(None);
    let vals = Value::Map(crate::values::coalesce_values_of(&chart, &user_values).map_err(rel_err)?);
    validate_schema(&chart, &vals).map_err(rel_err)?;
    let caps = Value::Object(Rc::new(Capabilities { kube_version, api_versions, helm_version: "v4.2.3".into() }));
    let mut release = BTreeMap::new();
    release.insert("Name".to_string(), Value::from(opts.name.as_str()));
    release.insert("Namespace".to_string(), Value::from(opts.namespace.as_str()));
    release.insert("IsUpgrade".to_string(), Value::Bool(opts.is_upgrade));
    release.insert("IsInstall".to_string(), Value::Bool(!opts.is_upgrade));
    release.insert("Revision".to_string(), Value::Int(opts.revision));
    release.insert("Service".to_string(), Value::from("Helm"));
    let release = Value::map(release);
    let mut tpls = Vec::new();
    collect_templates(&chart, None, &release, &caps, &vals, &mut tpls);
    let mut files = render(&tpls, env).map_err(|e| rel_err(e.message))?;
    let notes_key = format!("{}/templates/NOTES.txt", chart.name());
    let notes = files.get(&notes_key).cloned().unwrap_or_default();
    files.retain(|k, _| !k.ends_with("NOTES.txt"));
    let crds = chart.crd_objects().into_iter().map(|(n, f)| (n, String::from_utf8_lossy(&f.data).into_owned())).collect();
    match sort_manifests(&files) {
        Ok((hooks, manifests)) => Ok(RenderedRelease { manifests, hooks, crds, notes, files }),
        Err(e) => Err(ReleaseError { message: e, yaml_error: true, files }),
    }
}

/// Runs `helm template` on a loaded chart with merged user values.
pub fn template(chart: Chart, user_values: Value, opts: &ReleaseOptions, env: &dyn Environment) -> TemplateOutput {
    let mut out = TemplateOutput::default();
    let mut manifest = String::new();
    if opts.include_crds {
        for (name, f) in chart.crd_objects() {
            manifest.push_str(&format!("---\n# Source: {}\n{}\n", name, String::from_utf8_lossy(&f.data)));
        }
    }
    let r = match render_release(chart, user_values, opts, env) {
        Ok(r) => r,
        Err(e) => {
            if e.yaml_error {
                for (name, content) in &e.files {
                    if content.trim().is_empty() {
                        continue;
                    }
                    manifest.push_str(&format!("---\n# Source: {name}\n{content}\n"));
                }
                out.stdout = format!("{}\n", manifest.trim());
                out.yaml_error = true;
            }
            out.error = Some(e.message);
            return out;
        }
    };
    for m in &r.manifests {
        manifest.push_str(&format!("---\n# Source: {}\n{}\n", m.name, m.content));
    }
    let mut all = format!("{}\n", manifest.trim());
    for h in &r.hooks {
        if opts.skip_tests && h.events.iter().any(|e| e == "test" || e == "test-success") {
            continue;
        }
        all.push_str(&format!("---\n# Source: {}\n{}\n", h.manifest.name, h.manifest.content));
    }
    if !opts.show_only.is_empty() {
        let docs = split_manifests(&all);
        let mut rendered = Vec::new();
        for f in &opts.show_only {
            let mut missing = true;
            for d in &docs {
                let Some(first) = d.lines().next() else { continue };
                let Some(src) = first.strip_prefix("# Source: ") else { continue };
                let Some((_, rest)) = src.split_once('/') else { continue };
                if !crate::objects::glob_match(f, rest) {
                    continue;
                }
                rendered.push(d.clone());
                missing = false;
            }
            if missing {
                out.error = Some(format!("could not find template {f} in chart"));
                return out;
            }
        }
        out.stdout = rendered.iter().map(|m| format!("---\n{m}\n")).collect();
        return out;
    }
    out.stdout = all;
    out
}

/// All inputs of `helm template NAME CHART [flags]`.
#[derive(Clone, Debug, Default)]
pub struct TemplateRequest {
    /// Release name (`None`: `release-name`).
    pub name: Option<String>,
    /// Chart directory or archive.
    pub chart: std::path::PathBuf,
    /// Namespace (`None`: `default`).
    pub namespace: Option<String>,
    /// `--set`
    pub set: Vec<String>,
    /// `--set-string`
    pub set_string: Vec<String>,
    /// `-f` files.
    pub values_files: Vec<std::path::PathBuf>,
    /// `--kube-version`
    pub kube_version: Option<String>,
    /// `--api-versions`
    pub api_versions: Vec<String>,
    /// `--include-crds`
    pub include_crds: bool,
    /// `--show-only`
    pub show_only: Vec<String>,
    /// `--skip-tests`
    pub skip_tests: bool,
    /// `--name-template`
    pub name_template: Option<String>,
    /// `--debug`
    pub debug: bool,
}

/// What the command prints and its exit code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit code.
    pub code: u8,
}

/// Merges user values like Helm: `-f` files in order, then `--set`, then `--set-string`.
pub fn user_values(req: &TemplateRequest) -> Result<Value, String> {
    let mut base = match Value::empty_map() {
        Value::Map(m) => m,
        _ => unreachable!("empty_map is a map"),
    };
    for f in &req.values_files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("open {}: {}", f.display(), e))?;
        let v = match crate::yaml::decode(&text) {
            Ok(Value::Map(m)) => m,
            Ok(Value::Nil) => continue,
            Ok(_) => {
                return Err(format!(
                    "failed to parse {}: error unmarshaling JSON: json: cannot unmarshal into Go value of type map[string]interface {{}}",
                    f.display()
                ));
            }
            Err(e) => return Err(format!("failed to parse {}: {}", f.display(), e)),
        };
        base = crate::values::merge_maps(&base, &v);
    }
    for s in &req.set {
        crate::values::parse_set(s, &base, false).map_err(|e| format!("failed parsing --set data: {e}"))?;
    }
    for s in &req.set_string {
        crate::values::parse_set(s, &base, true).map_err(|e| format!("failed parsing --set-string data: {e}"))?;
    }
    Ok(Value::Map(base))
}

/// Runs `helm template` end to end: what it prints and its exit code.
pub fn run_template(req: &TemplateRequest, env: &dyn Environment) -> CommandOutput {
    let err = |m: String| CommandOutput { stdout: String::new(), stderr: format!("Error: {m}\n"), code: 1 };
    let mut name = req.name.clone().unwrap_or_else(|| "release-name".into());
    if let Some(t) = &req.name_template {
        match crate::render_string(t, "{}", env) {
            Ok(n) => name = n,
            Err(e) => return err(e.message),
        }
    }
    let vals = match user_values(req) {
        Ok(v) => v,
        Err(e) => return err(e),
    };
    let chart = match Chart::load(&req.chart) {
        Ok(c) => c,
        Err(e) => return err(e.to_string()),
    };
    let opts = ReleaseOptions {
        name,
        namespace: req.namespace.clone().unwrap_or_else(|| "default".into()),
        kube_version: req.kube_version.clone(),
        api_versions: req.api_versions.clone(),
        include_crds: req.include_crds,
        show_only: req.show_only.clone(),
        skip_tests: req.skip_tests,
        ..ReleaseOptions::default()
    };
    let out = template(chart, vals, &opts, env);
    match out.error {
        None => CommandOutput { stdout: out.stdout, stderr: String::new(), code: 0 },
        Some(e) if out.yaml_error && req.debug => CommandOutput { stdout: out.stdout, stderr: format!("Error: {e}\n"), code: 1 },
        Some(e) if out.yaml_error => err(format!("{e}\n\nUse --debug flag to render out invalid YAML")),
        Some(e) => err(e),
    }
}
