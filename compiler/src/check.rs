//! Resolution and semantic checks over all declarations: duplicate names, references,
//! tenant isolation, charts and values (files, `values.schema.json`), signing keys,
//! selectors, `needs` cycles. Reads referenced files through [`RepoFs`].

use std::collections::{BTreeMap, HashMap};

use serde_json::Value as Json;

use crate::diag::{Code, Diagnostic, Span};
use crate::model::*;
use crate::source::RepoFs;
use crate::validate::{Name, NamespaceMatcher, did_you_mean};
use harmony_schemas::host_path::{self, HostPathError};

/// A loaded local chart.
#[derive(Debug, Clone)]
pub struct LoadedChart {
    /// `name` from Chart.yaml.
    pub name: String,
    /// `version` from Chart.yaml (None for packaged charts, not inspected here).
    pub version: Option<semver::Version>,
    /// SHA-256 over the chart's files.
    pub digest: String,
    /// Default values.
    pub values: Json,
    /// `values.schema.json`, when present and valid.
    pub schema: Option<Json>,
}

/// What checking learned that compilation needs.
#[derive(Debug, Default)]
pub struct Facts {
    /// Local charts by repository path (None: could not be loaded, already reported).
    pub charts: HashMap<String, Option<LoadedChart>>,
    /// User-supplied values per release index (files, then inline), without chart defaults.
    pub release_values: HashMap<usize, Json>,
    /// `harmony.lock`'s vendor directory, when a release read the lock.
    pub chart_vendor: Option<String>,
    /// The lock entry of each release with a remote chart, per release index.
    pub locked: HashMap<usize, harmony_schemas::lock::LockedChart>,
    /// Decoded signing keys per fleet index.
    pub signing_keys: HashMap<usize, [u8; 32]>,
    /// Device labels without spans, per device index.
    pub device_labels: Vec<BTreeMap<String, String>>,
    /// Devices (indices, ascending) each deployment's selector matches, per deployment index.
    pub selections: HashMap<usize, Vec<usize>>,
}

/// Index of declarations by name (first declaration wins).
pub struct Index<'a> {
    /// Tenants.
    pub tenants: HashMap<&'a str, &'a Tenant>,
    /// Clusters.
    pub clusters: HashMap<&'a str, &'a Cluster>,
    /// Releases (index into `Declarations::releases`).
    pub releases: HashMap<&'a str, usize>,
    /// Fleets (index).
    pub fleets: HashMap<&'a str, usize>,
}

/// Runs every cross-declaration check.
pub fn check<'a>(decls: &'a Declarations, fs: &dyn RepoFs, diags: &mut Vec<Diagnostic>) -> (Index<'a>, Facts) {
    let index = Index {
        tenants: unique("tenant", decls.tenants.iter().map(|t| (&t.name.raw, t)), diags),
        clusters: unique("cluster", decls.clusters.iter().map(|c| (&c.name.raw, c)), diags),
        releases: unique("release", decls.releases.iter().enumerate().map(|(i, r)| (&r.name.raw, i)), diags),
        fleets: unique("fleet", decls.fleets.iter().enumerate().map(|(i, f)| (&f.name.raw, i)), diags),
    };
    unique("device", decls.devices.iter().map(|d| (&d.name.raw, ())), diags);
    unique("deployment", decls.deployments.iter().map(|d| (&d.name.raw, ())), diags);
    let mut facts = Facts::default();
    tenants(decls, diags);
    let lock = std::cell::OnceCell::new();
    for (i, r) in decls.releases.iter().enumerate() {
        release(i, r, &index, fs, &lock, &mut facts, diags);
    }
    if let Some(Ok(Some(l))) = lock.get() {
        facts.chart_vendor = l.vendor.clone();
    }
    needs_cycles(decls, &index, diags);
    for (i, f) in decls.fleets.iter().enumerate() {
        for t in &f.tenants {
            resolve(&index.tenants, t, "tenant", diags);
        }
        for g in &f.host_paths {
            if resolve(&index.tenants, &g.tenant, "tenant", diags).is_some() && !f.tenants.iter().any(|a| a.value == g.tenant.value) {
                diags.push(
                    Diagnostic::error(Code::TenantNotAdmitted, g.tenant.span, format!("tenant `{}` is not admitted to fleet `{}`", g.tenant.value, f.name.raw.value))
                        .label("granted a host path but not admitted")
                        .help(format!("add it to the fleet (`tenants {}`) or grant the path to an admitted tenant", g.tenant.value)),
                );
            }
        }
        if let Some(key) = &f.signing_key
            && let Some(bytes) = signing_key(key, fs, diags)
        {
            facts.signing_keys.insert(i, bytes);
        }
    }
    for d in &decls.devices {
        if let Some(f) = &d.fleet {
            resolve(&index.fleets, f, "fleet", diags);
        }
    }
    facts.device_labels = decls.devices.iter().map(|d| plain_labels(&d.labels)).collect();
    let mut by_fleet: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, d) in decls.devices.iter().enumerate() {
        if let Some(f) = &d.fleet {
            by_fleet.entry(&f.value).or_default().push(i);
        }
    }
    let indexes: HashMap<&str, crate::select::DeviceIndex> =
        by_fleet.iter().map(|(f, devs)| (*f, crate::select::DeviceIndex::new(devs.iter().map(|&i| (i, &facts.device_labels[i]))))).collect();
    let mut selections = HashMap::new();
    for (i, d) in decls.deployments.iter().enumerate() {
        let selected = deployment(d, decls, &index, &indexes, diags);
        if let Some(s) = selected {
            selections.insert(i, s);
        }
    }
    drop(indexes);
    facts.selections = selections;
    (index, facts)
}

fn unique<'a, T>(kind: &str, items: impl Iterator<Item = (&'a Spanned<String>, T)>, diags: &mut Vec<Diagnostic>) -> HashMap<&'a str, T> {
    let mut seen: HashMap<&'a str, (Span, T)> = HashMap::new();
    for (name, item) in items {
        if let Some((first, _)) = seen.get(name.value.as_str()) {
            diags.push(
                Diagnostic::error(Code::DuplicateName, name.span, format!("{kind} `{}` is declared twice", name.value))
                    .label("declared again here")
                    .with(*first, "first declared here")
                    .help(format!("{kind} names are unique in the repository; rename or remove one")),
            );
        } else {
            seen.insert(&name.value, (name.span, item));
        }
    }
    seen.into_iter().map(|(k, (_, v))| (k, v)).collect()
}

fn resolve<'m, T>(map: &'m HashMap<&str, T>, name: &Spanned<String>, kind: &str, diags: &mut Vec<Diagnostic>) -> Option<&'m T> {
    if let Some(t) = map.get(name.value.as_str()) {
        return Some(t);
    }
    let mut d = Diagnostic::error(Code::UnresolvedReference, name.span, format!("unknown {kind} `{}`", name.value)).label(format!("no {kind} has this name"));
    let mut names: Vec<&str> = map.keys().copied().collect();
    names.sort_unstable();
    d = match did_you_mean(&name.value, names.iter().copied()) {
        Some(s) => d.help(format!("did you mean `{s}`?")),
        None if names.is_empty() => d.help(format!("declare it: `{kind} {} {{ … }}`", name.value)),
        None => d.help(format!("declared {kind}s: {}", names.iter().take(8).copied().collect::<Vec<_>>().join(", "))),
    };
    diags.push(d);
    None
}

fn tenants(decls: &Declarations, diags: &mut Vec<Diagnostic>) {
    // Kubernetes reserves `kube-` for its own namespaces; Harmony keeps its apply lock and the
    // key that seals release records in kube-system, which no tenant may reach.
    let reserved = NamespaceMatcher::Prefix("kube-".into());
    for t in &decls.tenants {
        for m in t.namespaces.iter().filter(|m| m.value.overlaps(&reserved)) {
            diags.push(
                Diagnostic::error(Code::ReservedNamespace, m.span, format!("tenant `{}` may not own `{}`", t.name.raw.value, m.value))
                    .label(match m.value {
                        NamespaceMatcher::Exact(_) => "a namespace of Kubernetes",
                        NamespaceMatcher::Prefix(_) => "reaches namespaces starting with `kube-`",
                    })
                    .help("`kube-*` namespaces belong to Kubernetes and to Harmony itself (kube-system holds Harmony's apply lock and the key that seals release records): give the tenant other namespaces"),
            );
        }
        if t.has_namespaces && t.service_account_namespace.is_none() && !t.namespaces.iter().any(|n| matches!(n.value, NamespaceMatcher::Exact(_))) {
            diags.push(
                Diagnostic::error(Code::MissingField, t.name.raw.span, format!("tenant `{}` needs a namespace for its service account", t.name.raw.value))
                    .label("only namespace patterns")
                    .help("write `service-account NAME namespace=NS`, or own at least one exact namespace"),
            );
        }
        if let Some(ns) = &t.service_account_namespace
            && !t.namespaces.iter().any(|m| m.value.matches(ns.value.as_str()))
        {
            diags.push(
                Diagnostic::error(Code::NamespaceNotOwned, ns.span, format!("tenant `{}` does not own namespace `{}`", t.name.raw.value, ns.value))
                    .label("not one of the tenant's namespaces")
                    .help("the service account must live in a namespace the tenant owns"),
            );
        }
    }
    // Overlaps between different tenants: each matcher of the later tenant reported once, with
    // every matcher of the earlier tenant it overlaps.
    for (i, a) in decls.tenants.iter().enumerate() {
        for b in &decls.tenants[i + 1..] {
            if a.name.raw.value == b.name.raw.value {
                continue;
            }
            for mb in &b.namespaces {
                let mut hits = a.namespaces.iter().filter(|ma| ma.value.overlaps(&mb.value));
                let Some(first) = hits.next() else { continue };
                let mut d = Diagnostic::error(
                    Code::NamespaceOverlap,
                    mb.span,
                    format!("tenants `{}` and `{}` both own `{}`", a.name.raw.value, b.name.raw.value, overlap_example(&first.value, &mb.value)),
                )
                .label(if first.value == mb.value {
                    format!("also owned by `{}`", a.name.raw.value)
                } else {
                    format!("`{}` overlaps `{}`", mb.value, first.value)
                })
                .with(first.span, format!("owned by `{}` here", a.name.raw.value));
                for more in hits {
                    d = d.with(more.span, format!("and here (`{}`)", more.value));
                }
                diags.push(d.help("tenants are isolated by namespace: give each tenant names or prefixes the other cannot match"));
            }
        }
    }
}

fn overlap_example(a: &NamespaceMatcher, b: &NamespaceMatcher) -> String {
    match (a, b) {
        (NamespaceMatcher::Exact(n), _) | (_, NamespaceMatcher::Exact(n)) => n.to_string(),
        (NamespaceMatcher::Prefix(x), NamespaceMatcher::Prefix(y)) => format!("{}*", if x.len() >= y.len() { x } else { y }),
    }
}

/// `harmony.lock`, read once when a release needs it: `Ok(None)` when the repository has none.
type LockCell = std::cell::OnceCell<Result<Option<harmony_schemas::lock::ChartLock>, String>>;

fn read_lock(fs: &dyn RepoFs) -> Result<Option<harmony_schemas::lock::ChartLock>, String> {
    use harmony_schemas::lock::{ChartLock, LOCK_FILE};
    if !fs.is_file(LOCK_FILE) {
        return Ok(None);
    }
    let bytes = fs.read(LOCK_FILE).map_err(|e| format!("{LOCK_FILE}: {e}"))?;
    ChartLock::parse(&bytes).map(Some)
}

fn release(i: usize, r: &Release, index: &Index, fs: &dyn RepoFs, lock: &LockCell, facts: &mut Facts, diags: &mut Vec<Diagnostic>) {
    let tenant = r.tenant.as_ref().and_then(|t| resolve(&index.tenants, t, "tenant", diags));
    if let Some(c) = &r.cluster {
        resolve(&index.clusters, c, "cluster", diags);
    }
    if let (Some(t), Some(ns)) = (tenant, &r.namespace)
        && !t.namespaces.iter().any(|m| m.value.matches(ns.value.as_str()))
    {
        let owned: Vec<String> = t.namespaces.iter().map(|m| m.value.to_string()).collect();
        diags.push(
            Diagnostic::error(Code::NamespaceNotOwned, ns.span, format!("tenant `{}` does not own namespace `{}`", t.name.raw.value, ns.value))
                .label("outside the tenant's namespaces")
                .with(t.name.raw.span, format!("tenant `{}` declared here", t.name.raw.value))
                .help(format!("use one of the tenant's namespaces ({}) or add it to the tenant", owned.join(", "))),
        );
    }
    for n in &r.needs {
        if n.value == r.name.raw.value {
            continue; // reported as a cycle
        }
        resolve(&index.releases, n, "release", diags);
    }
    // Chart and values.
    let chart = match r.chart.as_ref().map(|c| (&c.value, c.span)) {
        Some((ChartSource::Local(path), span)) => {
            let loaded = facts.charts.entry(path.clone()).or_insert_with(|| load_chart(path, span, fs, diags)).clone();
            let wanted = r.version.as_ref().and_then(|v| match crate::validate::semver(&v.value) {
                Ok(sv) => Some((sv, v.span)),
                Err(e) => {
                    diags.push(
                        Diagnostic::error(Code::InvalidVersion, v.span, format!("`{}` is not a semantic version", v.value))
                            .label(e.reason)
                            .help("a local chart's `version` is its exact Chart.yaml version; ranges are for remote charts"),
                    );
                    None
                }
            });
            if let (Some(c), Some((v, vspan))) = (&loaded, wanted)
                && let Some(cv) = &c.version
                && *cv != v
            {
                diags.push(
                    Diagnostic::error(Code::InvalidVersion, vspan, format!("chart `{}` is version {cv}, not {v}", c.name))
                        .label("differs from Chart.yaml")
                        .help(format!("write `version \"{cv}\"`, or remove `version` to use the chart as it is")),
                );
            }
            loaded
        }
        Some((ChartSource::Remote { chart, repo }, span)) => {
            match &r.version {
                None => diags.push(
                    Diagnostic::error(Code::MissingField, span, format!("remote chart `{chart}` needs a `version`"))
                        .label("no version")
                        .help("pin the chart: write `version \"1.2.3\"` (or a range such as `version \"^1.2\"`, locked by `harmony charts lock`)"),
                ),
                Some(v) => match lock.get_or_init(|| read_lock(fs)) {
                    Err(e) => diags.push(
                        Diagnostic::error(Code::LockOutdated, span, format!("{e}"))
                            .label("cannot be resolved without a valid lock")
                            .help("run `harmony charts lock` to write harmony.lock again"),
                    ),
                    Ok(None) => diags.push(
                        Diagnostic::error(Code::LockOutdated, span, format!("remote chart `{chart}` is not locked: the repository has no {}", harmony_schemas::lock::LOCK_FILE))
                            .label("not in harmony.lock")
                            .help("run `harmony charts lock` (it resolves every remote chart and writes harmony.lock), then `harmony charts pull`"),
                    ),
                    Ok(Some(l)) => match l.find(chart, repo.as_deref(), &v.value) {
                        Some(e) => {
                            facts.locked.insert(i, e.clone());
                        }
                        None => diags.push(
                            Diagnostic::error(Code::LockOutdated, v.span, format!("harmony.lock has no entry for chart `{chart}`{} version `{}`", repo.as_ref().map(|r| format!(" in {r}")).unwrap_or_default(), v.value))
                                .label("changed since the last lock")
                                .with(span, "this chart")
                                .help("run `harmony charts lock` to resolve it and update harmony.lock, then `harmony charts pull`"),
                        ),
                    },
                },
            }
            None
        }
        None => None,
    };
    let mut user = Json::Object(Default::default());
    let mut contributors: Vec<(Span, Json)> = Vec::new();
    for f in &r.values_files {
        if let Some(v) = load_yaml(&f.value, f.span, fs, diags) {
            coalesce_into(&mut user, &v);
            contributors.push((f.span, v));
        }
    }
    if let Some(v) = &r.values {
        coalesce_into(&mut user, &v.value);
        contributors.push((v.span, v.value.clone()));
    }
    if let Some(schema) = chart.as_ref().and_then(|c| c.schema.as_ref()) {
        let mut merged = chart.as_ref().map(|c| c.values.clone()).unwrap_or(Json::Null);
        coalesce_into(&mut merged, &user);
        strip_nulls(&mut merged);
        for s in &r.secrets {
            set_path(&mut merged, &s.key.value, Json::String("<secret>".into()));
        }
        let secret_paths: Vec<String> = r.secrets.iter().map(|s| format!("/{}", s.key.value.replace('.', "/"))).collect();
        if let Ok(validator) = jsonschema::validator_for(schema) {
            let mut reported = 0;
            for err in validator.iter_errors(&merged) {
                let path = err.instance_path().to_string();
                if secret_paths.iter().any(|p| path == *p || path.starts_with(&format!("{p}/"))) {
                    continue;
                }
                if reported == 10 {
                    break;
                }
                reported += 1;
                let span = contributors.iter().rev().find(|(_, v)| v.pointer(&path).is_some()).map_or(r.name.raw.span, |(s, _)| *s);
                let at = if path.is_empty() { "the values".to_string() } else { format!("`{path}`") };
                diags.push(
                    Diagnostic::error(Code::ValuesSchema, span, format!("values for release `{}` violate the chart's values.schema.json", r.name.raw.value))
                        .label(format!("at {at}: {err}"))
                        .help("change the value to satisfy the chart's schema (merged: chart values.yaml, values files, inline values)"),
                );
            }
        }
    }
    facts.release_values.insert(i, user);
}

fn load_chart(path: &str, span: Span, fs: &dyn RepoFs, diags: &mut Vec<Diagnostic>) -> Option<LoadedChart> {
    if fs.is_file(path) {
        if path.ends_with(".tgz") || path.ends_with(".tar.gz") {
            // Packaged charts are unpacked by the Helm engine; here they are only fingerprinted,
            // so their version and schema are not checked at compile time.
            let bytes = fs.read(path).ok()?;
            let file = path.rsplit('/').next().unwrap_or(path);
            return Some(LoadedChart { name: file.to_string(), version: None, digest: crate::hash::sha256_hex(&bytes), values: Json::Null, schema: None });
        }
        diags.push(
            Diagnostic::error(Code::InvalidFile, span, format!("`{path}` is not a chart"))
                .label("a file, not a chart directory")
                .help("point `chart` at a directory containing Chart.yaml"),
        );
        return None;
    }
    if !fs.is_dir(path) {
        diags.push(
            Diagnostic::error(Code::FileNotFound, span, format!("chart `{path}` does not exist"))
                .label("no such directory")
                .help("paths are relative to the file declaring the release"),
        );
        return None;
    }
    let chart_yaml = format!("{path}/Chart.yaml");
    let Ok(bytes) = fs.read(&chart_yaml) else {
        diags.push(
            Diagnostic::error(Code::InvalidFile, span, format!("`{path}` has no Chart.yaml"))
                .label("not a Helm chart")
                .help("a chart directory holds Chart.yaml, values.yaml and templates/"),
        );
        return None;
    };
    #[derive(serde::Deserialize)]
    struct ChartYaml {
        name: Option<String>,
        version: Option<String>,
    }
    let meta: ChartYaml = match serde_yaml_ng::from_slice(&bytes) {
        Ok(m) => m,
        Err(e) => {
            diags.push(
                Diagnostic::error(Code::InvalidFile, span, format!("{chart_yaml} does not parse")).label(e.to_string()).help("fix the chart's Chart.yaml"),
            );
            return None;
        }
    };
    let (Some(name), Some(version)) = (meta.name, meta.version) else {
        diags.push(
            Diagnostic::error(Code::InvalidFile, span, format!("{chart_yaml} lacks `name` or `version`"))
                .label("incomplete Chart.yaml")
                .help("Chart.yaml needs apiVersion, name and version"),
        );
        return None;
    };
    let Ok(version) = semver::Version::parse(&version) else {
        diags.push(
            Diagnostic::error(Code::InvalidFile, span, format!("{chart_yaml} has version `{version}`, not a semantic version"))
                .label("invalid chart version")
                .help("Helm requires SemVer 2 chart versions"),
        );
        return None;
    };
    let values = match fs.read(&format!("{path}/values.yaml")) {
        Ok(_) => load_yaml(&format!("{path}/values.yaml"), span, fs, diags)?,
        Err(_) => Json::Object(Default::default()),
    };
    let schema_path = format!("{path}/values.schema.json");
    let schema = match fs.read(&schema_path) {
        Err(_) => None,
        Ok(bytes) => match serde_json::from_slice::<Json>(&bytes) {
            Ok(s) if jsonschema::validator_for(&s).is_ok() => Some(s),
            Ok(s) => {
                let e = jsonschema::validator_for(&s).err().map(|e| e.to_string()).unwrap_or_default();
                diags.push(
                    Diagnostic::error(Code::InvalidFile, span, format!("{schema_path} is not a valid JSON Schema")).label(e).help("fix the chart's schema"),
                );
                return None;
            }
            Err(e) => {
                diags.push(
                    Diagnostic::error(Code::InvalidFile, span, format!("{schema_path} does not parse")).label(e.to_string()).help("fix the chart's schema"),
                );
                return None;
            }
        },
    };
    let mut files = fs.files_under(path).unwrap_or_default();
    files.sort();
    let mut material = Vec::new();
    for f in &files {
        let rel = &f[path.len() + 1..];
        let bytes = fs.read(f).unwrap_or_default();
        material.extend_from_slice(format!("{rel}\0{}\0", bytes.len()).as_bytes());
        material.extend_from_slice(&bytes);
    }
    Some(LoadedChart { name, version: Some(version), digest: crate::hash::sha256_hex(&material), values, schema })
}

fn load_yaml(path: &str, span: Span, fs: &dyn RepoFs, diags: &mut Vec<Diagnostic>) -> Option<Json> {
    let Ok(bytes) = fs.read(path) else {
        diags.push(
            Diagnostic::error(Code::FileNotFound, span, format!("values file `{path}` does not exist"))
                .label("no such file")
                .help("paths are relative to the file declaring the release"),
        );
        return None;
    };
    match serde_yaml_ng::from_slice::<serde_yaml_ng::Value>(&bytes) {
        Ok(v) => match yaml_to_json(v) {
            Json::Null => Some(Json::Object(Default::default())),
            v @ Json::Object(_) => Some(v),
            _ => {
                diags.push(
                    Diagnostic::error(Code::InvalidFile, span, format!("`{path}` is not a map of values"))
                        .label("top level is not a map")
                        .help("a values file is a YAML map"),
                );
                None
            }
        },
        Err(e) => {
            diags.push(
                Diagnostic::error(Code::InvalidFile, span, format!("`{path}` is not valid YAML"))
                    .label(e.to_string())
                    .help("fix the YAML; `yamllint` shows the exact place"),
            );
            None
        }
    }
}

/// YAML → JSON the way Helm does (sigs.k8s.io/yaml): map keys become strings.
pub fn yaml_to_json(v: serde_yaml_ng::Value) -> Json {
    use serde_yaml_ng::Value as Y;
    match v {
        Y::Null => Json::Null,
        Y::Bool(b) => Json::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                n.as_f64().and_then(serde_json::Number::from_f64).map_or(Json::Null, Json::Number)
            }
        }
        Y::String(s) => Json::String(s),
        Y::Sequence(s) => Json::Array(s.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => Json::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => match yaml_to_json(other) {
                            Json::String(s) => s,
                            j => j.to_string(),
                        },
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}

/// Helm's coalescing of user values: maps merge recursively, everything else replaces.
/// `null` is kept here (it deletes a chart default when merged over the chart's values).
pub fn coalesce_into(base: &mut Json, over: &Json) {
    match (base, over) {
        (Json::Object(b), Json::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => coalesce_into(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn strip_nulls(v: &mut Json) {
    if let Json::Object(m) = v {
        m.retain(|_, v| !v.is_null());
        m.values_mut().for_each(strip_nulls);
    }
}

fn set_path(v: &mut Json, dotted: &str, value: Json) {
    let mut cur = v;
    let parts: Vec<&str> = dotted.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = Json::Object(Default::default());
        }
        let Json::Object(m) = cur else { return };
        if i == parts.len() - 1 {
            m.insert(p.to_string(), value);
            return;
        }
        cur = m.entry(p.to_string()).or_insert_with(|| Json::Object(Default::default()));
    }
}

fn signing_key(key: &Spanned<String>, fs: &dyn RepoFs, diags: &mut Vec<Diagnostic>) -> Option<[u8; 32]> {
    use base64::Engine;
    let Ok(bytes) = fs.read(&key.value) else {
        diags.push(
            Diagnostic::error(Code::FileNotFound, key.span, format!("signing key `{}` does not exist", key.value))
                .label("no such file")
                .help("the path is relative to the file declaring the fleet; it holds the fleet's Ed25519 public key"),
        );
        return None;
    };
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    let decoded = hex::decode(text).ok().filter(|b| b.len() == 32).or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok());
    match decoded.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
        Some(k) => Some(k),
        None => {
            diags.push(
                Diagnostic::error(Code::InvalidFile, key.span, format!("`{}` is not an Ed25519 public key", key.value))
                    .label("expected 32 bytes, base64 or hex")
                    .help("write the fleet's raw 32-byte Ed25519 public key, base64-encoded, on one line (never the private key)"),
            );
            None
        }
    }
}

fn needs_cycles(decls: &Declarations, index: &Index, diags: &mut Vec<Diagnostic>) {
    use petgraph::graph::DiGraph;
    let mut g: DiGraph<usize, Span> = DiGraph::new();
    let nodes: Vec<_> = (0..decls.releases.len()).map(|i| g.add_node(i)).collect();
    for (i, r) in decls.releases.iter().enumerate() {
        if index.releases.get(r.name.raw.value.as_str()) != Some(&i) {
            continue; // duplicate declaration, already reported
        }
        for n in &r.needs {
            if let Some(&j) = index.releases.get(n.value.as_str()) {
                g.add_edge(nodes[i], nodes[j], n.span);
            }
        }
    }
    for scc in petgraph::algo::tarjan_scc(&g) {
        let self_loop = scc.len() == 1 && g.find_edge(scc[0], scc[0]).is_some();
        if scc.len() < 2 && !self_loop {
            continue;
        }
        // Walk the cycle from the alphabetically first release, following edges inside the SCC.
        let start = *scc.iter().min_by_key(|n| &decls.releases[g[**n]].name.raw.value).unwrap_or(&scc[0]);
        let mut path = vec![start];
        let mut spans = Vec::new();
        let mut cur = start;
        loop {
            let next = g.edges(cur).filter(|e| scc.contains(&petgraph::visit::EdgeRef::target(e))).min_by_key(|e| {
                let t = petgraph::visit::EdgeRef::target(e);
                (t != start && path.contains(&t), &decls.releases[g[t]].name.raw.value)
            });
            let Some(e) = next else { break };
            let t = petgraph::visit::EdgeRef::target(&e);
            spans.push(*e.weight());
            if t == start || path.contains(&t) {
                path.push(t);
                break;
            }
            path.push(t);
            cur = t;
        }
        let names: Vec<&str> = path.iter().map(|n| decls.releases[g[*n]].name.raw.value.as_str()).collect();
        let cycle = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" → ");
        let mut d = Diagnostic::error(Code::NeedsCycle, spans[0], format!("`needs` cycle: {cycle}"))
            .label(format!("`{}` needs `{}`", names[0], names.get(1).unwrap_or(&names[0])))
            .help("releases in a cycle can never be applied; remove one of these `needs`");
        for (k, s) in spans.iter().enumerate().skip(1) {
            d = d.with(*s, format!("`{}` needs `{}`", names[k], names[k + 1]));
        }
        diags.push(d);
    }
}

/// Checks a deployment; returns the devices its selector matches (when fleet and selector are valid).
fn deployment(
    d: &Deployment,
    decls: &Declarations,
    index: &Index,
    devices: &HashMap<&str, crate::select::DeviceIndex>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<usize>> {
    let mut containers: HashMap<&str, Span> = HashMap::new();
    for c in &d.containers {
        if let Some(first) = containers.insert(&c.name.raw.value, c.name.raw.span) {
            diags.push(
                Diagnostic::error(
                    Code::DuplicateName,
                    c.name.raw.span,
                    format!("container `{}` is declared twice in deployment `{}`", c.name.raw.value, d.name.raw.value),
                )
                .label("declared again here")
                .with(first, "first declared here")
                .help("container names (init containers included) are unique within a deployment"),
            );
        }
    }
    let tenant = d.tenant.as_ref().and_then(|t| resolve(&index.tenants, t, "tenant", diags));
    let fleet = d.fleet.as_ref().and_then(|f| resolve(&index.fleets, f, "fleet", diags)).map(|&i| &decls.fleets[i]);
    if let (Some(t), Some(f), Some(tref)) = (tenant, fleet, &d.tenant)
        && !f.tenants.iter().any(|a| a.value == t.name.raw.value)
    {
        diags.push(
            Diagnostic::error(Code::TenantNotAdmitted, tref.span, format!("tenant `{}` is not admitted to fleet `{}`", t.name.raw.value, f.name.raw.value))
                .label("not admitted")
                .with(f.name.raw.span, format!("fleet `{}` declared here", f.name.raw.value))
                .help(format!("add it to the fleet: `tenants {}` inside `fleet {}`", t.name.raw.value, f.name.raw.value)),
        );
    }
    if let (Some(f), Some(tref)) = (fleet, &d.tenant) {
        host_paths(d, f, &tref.value, diags);
    }
    let (f, sel) = (fleet?, d.selector.as_ref()?);
    let fleet_name = &f.name.raw.value;
    let matched = devices.get(fleet_name.as_str()).map(|ix| ix.select(&sel.value)).unwrap_or_default();
    if matched.is_empty() {
        diags.push(
            Diagnostic::warning(
                Code::SelectorMatchesNothing,
                sel.span,
                format!("selector of deployment `{}` matches no device of fleet `{fleet_name}`", d.name.raw.value),
            )
            .label("matches nothing")
            .help("check the labels of the fleet's devices; the deployment runs nowhere until one matches"),
        );
    }
    Some(matched)
}

/// Every bind mount of the deployment's containers must be one its tenant may make
/// (`harmony_schemas::host_path`, the policy the agent enforces again on the device).
fn host_paths(d: &Deployment, f: &Fleet, tenant: &str, diags: &mut Vec<Diagnostic>) {
    let grants = f.grants(tenant);
    for c in &d.containers {
        for v in &c.volumes {
            if host_path::is_named_volume(&v.value.source) {
                continue;
            }
            let Err(e) = host_path::check_mount(&v.value.source, v.value.read_only, tenant, &grants, host_path::DATA_ROOT, &[]) else {
                continue;
            };
            let label = match &e {
                HostPathError::Malformed(_) => "not a normalised absolute path",
                HostPathError::Protected { .. } => "protected host path",
                HostPathError::ReadOnlyGrant { .. } => "granted read-only: add :ro",
                HostPathError::NotGranted { .. } => "not granted to this tenant",
            };
            let granted: Vec<String> = grants.iter().map(|g| if g.read_only { format!("{} (read-only)", g.path) } else { g.path.clone() }).collect();
            let granted = if granted.is_empty() { String::new() } else { format!(" and {}", granted.join(", ")) };
            diags.push(
                Diagnostic::error(Code::HostPath, v.span, format!("`volume` of container `{}` (deployment `{}`): {e}", c.name.raw.value, d.name.raw.value))
                    .label(label)
                    .help(format!(
                        "tenant `{tenant}` may mount host paths under {}{granted}; fleet `{}` grants more with \
                         `allow-host-path \"/srv/NAME\" tenant={tenant}`, never a system or agent directory (docs/language.md, \"Host access\")",
                        host_path::tenant_root(host_path::DATA_ROOT, tenant),
                        f.name.raw.value
                    )),
            );
        }
    }
}

/// Labels without spans.
pub fn plain_labels(l: &Labels) -> BTreeMap<String, String> {
    l.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect()
}

/// A valid name from a declaration, for compilation.
pub fn valid<T: Clone>(n: &DeclName<T>) -> Option<T> {
    n.valid.clone()
}

/// Parses `Name` from a spanned string already known to be valid.
pub fn name_of(s: &Spanned<String>) -> Option<Name> {
    Name::parse(&s.value).ok()
}
