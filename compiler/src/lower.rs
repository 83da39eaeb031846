//! Lowering: one parsed KDL document → [`Declarations`], reporting every structural problem
//! (unknown nodes and properties with suggestions, missing fields, wrong types, duplicates,
//! malformed values). Works file by file so files can be lowered in parallel.

use std::collections::{BTreeMap, HashMap};

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use serde_json::Value as Json;

use crate::diag::{Code, Diagnostic, Span};
use crate::model::*;
use crate::source::{FileId, resolve_relative};
use crate::validate::{self, Duration, ImageRef, Invalid, Name, NamespaceMatcher, PodSecurityLevel, ReleaseName, did_you_mean};
use harmony_schemas::host_path;

/// Top-level node names.
pub const TOP_LEVEL: &[&str] = &["tenant", "cluster", "release", "fleet", "device", "deployment", "repository"];
const TENANT: &[&str] = &["namespaces", "service-account", "pod-security", "description"];
const CLUSTER: &[&str] = &["context", "labels", "kube-version", "api-versions", "description"];
const RELEASE: &[&str] = &["tenant", "cluster", "namespace", "chart", "version", "values-file", "values", "secret-value", "needs", "description"];
const FLEET: &[&str] = &["nats", "agent-version", "signing-key", "tenants", "rollout", "auth", "allow-host-path", "replicas", "placement", "description"];
const DEVICE: &[&str] = &["fleet", "labels", "description"];
const DEPLOYMENT: &[&str] = &["tenant", "fleet", "selector", "init-container", "container", "rollout", "description"];
const CONTAINER: &[&str] = &["image", "command", "args", "env", "port", "volume", "restart", "description"];
const INIT_CONTAINER: &[&str] = &["image", "command", "args", "env", "port", "volume", "timeout", "description"];
const SELECTOR: &[&str] = &["in", "not-in", "exists", "does-not-exist"];
const ROLLOUT: &[&str] = &["step", "max-failed", "health-timeout", "settle", "auto-revert"];
const REPOSITORY: &[&str] = &["kube-version", "exclude", "description"];
/// Container options that would give a device container host access; refused with their own
/// diagnostic rather than as unknown nodes (docs/language.md, "Host access").
const PRIVILEGED: &[&str] = &[
    "privileged",
    "cap-add",
    "capabilities",
    "device",
    "devices",
    "network",
    "net",
    "host-network",
    "pid",
    "ipc",
    "uts",
    "userns",
    "cgroupns",
    "security-opt",
    "sysctl",
    "mount",
];

/// Lowers one file. `is_root_settings` is true for the root `harmony.kdl`.
pub fn lower_file(file: FileId, path: &str, doc: &KdlDocument, is_root_settings: bool) -> (Declarations, Vec<Diagnostic>) {
    let mut cx = Cx { file, path, diags: Vec::new(), typos: Vec::new() };
    let mut decls = Declarations::default();
    for node in doc.nodes() {
        let name = node.name().value();
        match name {
            "tenant" => decls.tenants.extend(cx.tenant(node)),
            "cluster" => decls.clusters.extend(cx.cluster(node)),
            "release" => decls.releases.extend(cx.release(node)),
            "fleet" => decls.fleets.extend(cx.fleet(node)),
            "device" => decls.devices.extend(cx.device(node)),
            "deployment" => decls.deployments.extend(cx.deployment(node)),
            "repository" => {
                let settings = cx.repository(node);
                if !is_root_settings {
                    cx.push(
                        Diagnostic::error(Code::MisplacedSetting, cx.span(node.name().span()), "`repository` settings outside the root harmony.kdl")
                            .label("not allowed here")
                            .help("move this node into harmony.kdl at the repository root"),
                    );
                } else if let Some(first) = &decls.settings {
                    cx.push(
                        Diagnostic::error(Code::MisplacedSetting, cx.span(node.name().span()), "`repository` is declared twice")
                            .label("second declaration")
                            .with(first.name.span, "first declared here")
                            .help("merge both into one `repository` node"),
                    );
                } else {
                    decls.settings = settings;
                }
            }
            _ => cx.unknown_node(node, "at the top level", TOP_LEVEL),
        }
    }
    (decls, cx.diags)
}

fn args_of(node: &KdlNode) -> impl Iterator<Item = &KdlEntry> {
    node.entries().iter().filter(|e| e.name().is_none())
}

fn prop_of<'n>(node: &'n KdlNode, key: &str) -> Option<&'n KdlEntry> {
    node.entries().iter().rev().find(|e| e.name().is_some_and(|n| n.value() == key))
}

struct Cx<'a> {
    file: FileId,
    path: &'a str,
    diags: Vec<Diagnostic>,
    /// Unknown nodes that look like a typo of a valid one: (offset, suggested name). A field
    /// reported as missing when a typo of it was already reported is not reported again.
    typos: Vec<(usize, String)>,
}

/// Tracks fields that may be given once.
#[derive(Default)]
struct Once(HashMap<&'static str, Span>);

fn kind_of(v: &KdlValue) -> &'static str {
    match v {
        KdlValue::String(_) => "a string",
        KdlValue::Integer(_) => "an integer",
        KdlValue::Float(_) => "a float",
        KdlValue::Bool(_) => "a boolean",
        KdlValue::Null => "#null",
    }
}

fn show(v: &KdlValue) -> String {
    match v {
        KdlValue::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

impl<'a> Cx<'a> {
    fn span(&self, s: miette::SourceSpan) -> Span {
        Span::from_kdl(self.file, s)
    }

    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn invalid(&mut self, code: Code, span: Span, what: &str, e: Invalid) {
        self.push(Diagnostic::error(code, span, format!("invalid {what}")).label(e.reason).help(e.help));
    }

    fn unknown_node(&mut self, node: &KdlNode, context: &str, allowed: &[&str]) {
        let name = node.name().value();
        let mut d =
            Diagnostic::error(Code::UnknownNode, self.span(node.name().span()), format!("unknown node `{name}` {context}")).label("not recognised here");
        d = match did_you_mean(name, allowed.iter().copied()) {
            Some(s) => {
                self.typos.push((node.name().span().offset(), s.to_string()));
                d.help(format!("did you mean `{s}`? valid here: {}", allowed.join(", ")))
            }
            None => d.help(format!("valid here: {}", allowed.join(", "))),
        };
        self.push(d);
    }

    fn once(&mut self, seen: &mut Once, key: &'static str, node: &KdlNode) -> bool {
        let span = self.span(node.name().span());
        if let Some(first) = seen.0.get(key) {
            self.push(
                Diagnostic::error(Code::DuplicateField, span, format!("`{key}` is given twice"))
                    .label("given again here")
                    .with(*first, "first given here")
                    .help(format!("keep a single `{key}`")),
            );
            return false;
        }
        seen.0.insert(key, span);
        true
    }

    fn missing(&mut self, at: Span, owner: &str, field: &str, help: &str) {
        // Lowering is sequential, so typos at or after `at` belong to this declaration.
        if self.typos.iter().any(|(offset, s)| s == field && *offset >= at.start) {
            return;
        }
        self.push(Diagnostic::error(Code::MissingField, at, format!("{owner} is missing `{field}`")).label(format!("needs `{field}`")).help(help.to_string()));
    }

    /// Reports properties (other than `allowed`) and positional arguments beyond `max_args`.
    fn check_entries(&mut self, node: &KdlNode, max_args: usize, allowed_props: &[&str]) {
        let mut args = 0;
        let mut seen_props: HashMap<&str, Span> = HashMap::new();
        let what = node.name().value();
        for e in node.entries() {
            match e.name() {
                None => {
                    args += 1;
                    if args > max_args {
                        let msg = if max_args == 0 {
                            format!("`{what}` takes no arguments")
                        } else {
                            format!("`{what}` takes {max_args} argument{}", if max_args == 1 { "" } else { "s" })
                        };
                        self.push(
                            Diagnostic::error(Code::UnexpectedArgument, self.span(e.span()), msg)
                                .label("unexpected argument")
                                .help("remove it, or quote the whole value as one string if it contains spaces"),
                        );
                    }
                }
                Some(key) => {
                    let k = key.value();
                    if !allowed_props.contains(&k) {
                        let mut d = Diagnostic::error(Code::UnknownProperty, self.span(e.span()), format!("unknown property `{k}` on `{what}`"))
                            .label("not recognised");
                        d = match (did_you_mean(k, allowed_props.iter().copied()), allowed_props.is_empty()) {
                            (Some(s), _) => d.help(format!("did you mean `{s}`?")),
                            (None, true) => d.help(format!("`{what}` takes no properties")),
                            (None, false) => d.help(format!("valid properties: {}", allowed_props.join(", "))),
                        };
                        self.push(d);
                    } else if let Some(first) = seen_props.insert(k, self.span(e.span())) {
                        self.push(
                            Diagnostic::error(Code::DuplicateField, self.span(e.span()), format!("property `{k}` is given twice"))
                                .label("given again here")
                                .with(first, "first given here")
                                .help(format!("keep a single `{k}=`")),
                        );
                    }
                }
            }
        }
    }

    fn no_children(&mut self, node: &KdlNode) {
        if let Some(children) = node.children() {
            self.push(
                Diagnostic::error(Code::UnexpectedArgument, self.span(children.span()), format!("`{}` takes no children block", node.name().value()))
                    .label("unexpected block")
                    .help("write the value as an argument on the same line"),
            );
        }
    }

    fn entry_string(&mut self, e: &KdlEntry, what: &str) -> Option<Spanned<String>> {
        match e.value() {
            KdlValue::String(s) => Some(Spanned::new(s.clone(), self.span(e.span()))),
            v => {
                self.push(
                    Diagnostic::error(Code::WrongType, self.span(e.span()), format!("{what} must be a string"))
                        .label(format!("found {} {}", kind_of(v), show(v)))
                        .help(format!("quote it: \"{}\"", v.to_string().trim_start_matches('#'))),
                );
                None
            }
        }
    }

    /// A node with exactly one string argument, no properties, no children.
    fn one_string(&mut self, node: &KdlNode) -> Option<Spanned<String>> {
        self.check_entries(node, 1, &[]);
        self.no_children(node);
        let what = format!("`{}`", node.name().value());
        match args_of(node).next() {
            Some(e) => self.entry_string(e, &what),
            None => {
                self.missing(self.span(node.name().span()), &what, "value", &format!("write {what} followed by its value"));
                None
            }
        }
    }

    /// A node with one or more string arguments.
    fn strings(&mut self, node: &KdlNode, props: &[&str]) -> Vec<Spanned<String>> {
        self.check_entries(node, usize::MAX, props);
        self.no_children(node);
        let what = format!("`{}`", node.name().value());
        let args: Vec<&KdlEntry> = args_of(node).collect();
        if args.is_empty() {
            self.missing(self.span(node.name().span()), &what, "value", &format!("write {what} followed by one or more values"));
        }
        args.into_iter().filter_map(|e| self.entry_string(e, &what)).collect()
    }

    fn one_int(&mut self, node: &KdlNode) -> Option<Spanned<i128>> {
        self.check_entries(node, 1, &[]);
        self.no_children(node);
        let name = node.name().value().to_string();
        match args_of(node).next() {
            Some(e) => match e.value() {
                KdlValue::Integer(i) => Some(Spanned::new(*i, self.span(e.span()))),
                v => {
                    self.push(
                        Diagnostic::error(Code::WrongType, self.span(e.span()), format!("`{name}` must be an integer"))
                            .label(format!("found {} {}", kind_of(v), show(v)))
                            .help("write a whole number without quotes"),
                    );
                    None
                }
            },
            None => {
                self.missing(self.span(node.name().span()), &format!("`{name}`"), "value", "write a whole number");
                None
            }
        }
    }

    fn one_bool(&mut self, node: &KdlNode) -> Option<bool> {
        self.check_entries(node, 1, &[]);
        self.no_children(node);
        let name = node.name().value().to_string();
        match args_of(node).next() {
            Some(e) => match e.value() {
                KdlValue::Bool(b) => Some(*b),
                v => {
                    self.push(
                        Diagnostic::error(Code::WrongType, self.span(e.span()), format!("`{name}` must be a boolean"))
                            .label(format!("found {} {}", kind_of(v), show(v)))
                            .help("write #true or #false"),
                    );
                    None
                }
            },
            None => {
                self.missing(self.span(node.name().span()), &format!("`{name}`"), "value", "write #true or #false");
                None
            }
        }
    }

    fn semver(&mut self, node: &KdlNode) -> Option<Spanned<semver::Version>> {
        let s = self.one_string(node)?;
        match validate::semver(&s.value) {
            Ok(v) => Some(Spanned::new(v, s.span)),
            Err(e) => {
                self.invalid(Code::InvalidVersion, s.span, &format!("`{}`", node.name().value()), e);
                None
            }
        }
    }

    fn duration(&mut self, node: &KdlNode) -> Option<Duration> {
        let s = self.one_string(node)?;
        match Duration::parse(&s.value) {
            Ok(d) => Some(d),
            Err(e) => {
                self.invalid(Code::InvalidDuration, s.span, &format!("`{}`", node.name().value()), e);
                None
            }
        }
    }

    fn path(&mut self, s: Spanned<String>) -> Option<Spanned<String>> {
        match resolve_relative(self.path, &s.value) {
            Some(p) => Some(Spanned::new(p, s.span)),
            None => {
                self.push(
                    Diagnostic::error(Code::FileNotFound, s.span, format!("path `{}` leaves the repository", s.value))
                        .label("not inside the repository")
                        .help(format!("paths are relative to {} and must stay inside the repository", self.path)),
                );
                None
            }
        }
    }

    /// The single name argument of a declaration.
    fn decl_name(&mut self, node: &KdlNode) -> Option<Spanned<String>> {
        self.check_entries(node, 1, &[]);
        let kind = node.name().value();
        match args_of(node).next() {
            Some(e) => self.entry_string(e, &format!("the {kind} name")),
            None => {
                self.missing(self.span(node.name().span()), &format!("`{kind}`"), "name", &format!("write `{kind} NAME {{ … }}`"));
                None
            }
        }
    }

    fn dns_name(&mut self, raw: Spanned<String>, what: &str) -> DeclName<Name> {
        let valid = match Name::parse(&raw.value) {
            Ok(n) => Some(n),
            Err(e) => {
                self.invalid(Code::InvalidName, raw.span, what, e);
                None
            }
        };
        DeclName { raw, valid }
    }

    fn children<'n>(&self, node: &'n KdlNode) -> &'n [KdlNode] {
        node.children().map(|d| d.nodes()).unwrap_or(&[])
    }

    fn labels(&mut self, node: &KdlNode, into: &mut Labels) {
        self.no_children(node);
        self.label_entries(node, into);
        if node.entries().is_empty() {
            self.missing(self.span(node.name().span()), "`labels`", "key=value", "write `labels key=value …`");
        }
    }

    /// `key=value` properties as labels (selectors share this with `labels`).
    fn label_entries(&mut self, node: &KdlNode, into: &mut Labels) {
        for e in node.entries() {
            let Some(key) = e.name() else {
                self.push(
                    Diagnostic::error(Code::UnexpectedArgument, self.span(e.span()), "labels are written key=value")
                        .label("argument without a key")
                        .help("write labels as properties, e.g. `labels site=montreal arch=arm64`"),
                );
                continue;
            };
            let span = self.span(e.span());
            let value = match e.value() {
                KdlValue::String(s) => s.clone(),
                KdlValue::Integer(i) => i.to_string(),
                KdlValue::Bool(b) => b.to_string(),
                v => {
                    self.push(
                        Diagnostic::error(Code::WrongType, span, format!("label `{}` must be a string", key.value()))
                            .label(format!("found {} {}", kind_of(v), show(v)))
                            .help("label values are strings, integers or booleans"),
                    );
                    continue;
                }
            };
            if let Err(err) = validate::label_key(key.value()) {
                self.invalid(Code::InvalidLabel, span, "label key", err);
                continue;
            }
            if let Err(err) = validate::label_value(&value) {
                self.invalid(Code::InvalidLabel, span, "label value", err);
                continue;
            }
            if let Some(first) = into.get(key.value()) {
                self.push(
                    Diagnostic::error(Code::DuplicateField, span, format!("label `{}` is given twice", key.value()))
                        .label("given again here")
                        .with(first.span, "first given here")
                        .help("keep one value per label key"),
                );
                continue;
            }
            into.insert(key.value().to_string(), Spanned::new(value, span));
        }
    }

    fn tenant(&mut self, node: &KdlNode) -> Option<Tenant> {
        let raw = self.decl_name(node)?;
        let decl_span = raw.span;
        let mut t = Tenant {
            name: self.dns_name(raw, "tenant name"),
            namespaces: Vec::new(),
            service_account: None,
            service_account_namespace: None,
            has_namespaces: false,
            pod_security: None,
        };
        let mut once = Once::default();
        for child in self.children(node) {
            match child.name().value() {
                "namespaces" => {
                    t.has_namespaces = true;
                    for s in self.strings(child, &[]) {
                        match NamespaceMatcher::parse(&s.value) {
                            Ok(m) => t.namespaces.push(Spanned::new(m, s.span)),
                            Err(e) if s.value.ends_with('*') => self.invalid(Code::InvalidValue, s.span, "namespace pattern", e),
                            Err(e) => self.invalid(Code::InvalidName, s.span, "namespace", e),
                        }
                    }
                }
                "service-account" if self.once(&mut once, "service-account", child) => {
                    self.check_entries(child, 1, &["namespace"]);
                    self.no_children(child);
                    if let Some(s) = args_of(child).next().and_then(|e| self.entry_string(e, "the service account name")) {
                        match Name::parse(&s.value) {
                            Ok(n) => t.service_account = Some(Spanned::new(n, s.span)),
                            Err(e) => self.invalid(Code::InvalidName, s.span, "service account name", e),
                        }
                    } else if args_of(child).next().is_none() {
                        self.missing(self.span(child.name().span()), "`service-account`", "name", "write `service-account NAME`");
                    }
                    if let Some(e) = prop_of(child, "namespace")
                        && let Some(s) = self.entry_string(e, "`namespace`")
                    {
                        match Name::parse(&s.value) {
                            Ok(n) => t.service_account_namespace = Some(Spanned::new(n, s.span)),
                            Err(e) => self.invalid(Code::InvalidName, s.span, "namespace", e),
                        }
                    }
                }
                "pod-security" if self.once(&mut once, "pod-security", child) => {
                    if let Some(s) = self.one_string(child) {
                        match PodSecurityLevel::parse(&s.value) {
                            Ok(l) => t.pod_security = Some(Spanned::new(l, s.span)),
                            Err(e) => self.invalid(Code::InvalidValue, s.span, "Pod Security level", e),
                        }
                    }
                }
                "description" if self.once(&mut once, "description", child) => {
                    self.one_string(child);
                }
                "service-account" | "pod-security" | "description" => {}
                _ => self.unknown_node(child, "in a tenant", TENANT),
            }
        }
        if !t.has_namespaces {
            self.missing(decl_span, "tenant", "namespaces", "write `namespaces NAME…` with the namespaces or patterns (acme-*) it owns");
        }
        Some(t)
    }

    fn cluster(&mut self, node: &KdlNode) -> Option<Cluster> {
        let raw = self.decl_name(node)?;
        let mut c = Cluster { name: self.dns_name(raw, "cluster name"), context: None, labels: Labels::new(), kube_version: None, api_versions: Vec::new() };
        let mut once = Once::default();
        for child in self.children(node) {
            let name = child.name().value();
            match name {
                "context" if self.once(&mut once, "context", child) => c.context = self.one_string(child),
                "kube-version" if self.once(&mut once, "kube-version", child) => c.kube_version = self.semver(child),
                "api-versions" => {
                    for v in self.strings(child, &[]) {
                        match validate::api_version(&v.value) {
                            Ok(()) => c.api_versions.push(v),
                            Err(e) => self.invalid(Code::InvalidValue, v.span, "api version", e),
                        }
                    }
                }
                "labels" => self.labels(child, &mut c.labels),
                "description" if self.once(&mut once, "description", child) => {
                    self.one_string(child);
                }
                "context" | "kube-version" | "description" => {}
                _ => self.unknown_node(child, "in a cluster", CLUSTER),
            }
        }
        Some(c)
    }

    fn release(&mut self, node: &KdlNode) -> Option<Release> {
        let raw = self.decl_name(node)?;
        let decl_span = raw.span;
        let valid = match ReleaseName::parse(&raw.value) {
            Ok(n) => Some(n),
            Err(e) => {
                self.invalid(Code::InvalidReleaseName, raw.span, "release name", e);
                None
            }
        };
        let mut r = Release {
            name: DeclName { raw, valid },
            tenant: None,
            cluster: None,
            namespace: None,
            chart: None,
            version: None,
            values_files: Vec::new(),
            values: None,
            secrets: Vec::new(),
            needs: Vec::new(),
            file: self.file,
        };
        let mut once = Once::default();
        let mut has_chart = false;
        for child in self.children(node) {
            let name = child.name().value();
            match name {
                "tenant" if self.once(&mut once, "tenant", child) => r.tenant = self.one_string(child),
                "cluster" if self.once(&mut once, "cluster", child) => r.cluster = self.one_string(child),
                "namespace" if self.once(&mut once, "namespace", child) => {
                    if let Some(s) = self.one_string(child) {
                        match Name::parse(&s.value) {
                            Ok(n) => r.namespace = Some(Spanned::new(n, s.span)),
                            Err(e) => self.invalid(Code::InvalidName, s.span, "namespace", e),
                        }
                    }
                }
                "chart" if self.once(&mut once, "chart", child) => {
                    has_chart = true;
                    r.chart = self.chart(child);
                }
                "version" if self.once(&mut once, "version", child) => r.version = self.one_string(child),
                "values-file" => {
                    if let Some(p) = self.one_string(child).and_then(|s| self.path(s)) {
                        r.values_files.push(p);
                    }
                }
                "values" if self.once(&mut once, "values", child) => {
                    self.check_entries(child, 0, &[]);
                    let span = self.span(child.name().span());
                    let value = self.values_map(child);
                    r.values = Some(Spanned::new(value, span));
                }
                "secret-value" => {
                    if let Some(s) = self.secret_value(child) {
                        r.secrets.push(s);
                    }
                }
                "needs" => r.needs.extend(self.strings(child, &[])),
                "description" if self.once(&mut once, "description", child) => {
                    self.one_string(child);
                }
                "tenant" | "cluster" | "namespace" | "chart" | "version" | "values" | "description" => {}
                _ => self.unknown_node(child, "in a release", RELEASE),
            }
        }
        for (field, present, help) in [
            ("tenant", once.0.contains_key("tenant"), "write `tenant NAME` with the tenant that owns this release"),
            ("cluster", once.0.contains_key("cluster"), "write `cluster NAME` with the cluster to install on"),
            ("namespace", once.0.contains_key("namespace"), "write `namespace NAME` with one of the tenant's namespaces"),
            ("chart", has_chart, "write `chart \"charts/NAME\"` (a path in the repository) or an oci:// reference"),
        ] {
            if !present {
                self.missing(decl_span, "release", field, help);
            }
        }
        Some(r)
    }

    /// `chart "PATH"`, `chart "oci://host/path/name"`, `chart "https://…/x-1.2.3.tgz"` or
    /// `chart "NAME" repo="https://charts.example.com"`.
    fn chart(&mut self, node: &KdlNode) -> Option<Spanned<ChartSource>> {
        self.check_entries(node, 1, &["repo"]);
        self.no_children(node);
        let s = match args_of(node).next() {
            Some(e) => self.entry_string(e, "`chart`")?,
            None => {
                self.missing(self.span(node.name().span()), "`chart`", "value", "write `chart \"charts/NAME\"` or `chart \"oci://registry/path/NAME\"`");
                return None;
            }
        };
        let remote = |v: &str| v.starts_with("oci://") || v.starts_with("https://") || v.starts_with("http://");
        if let Some(repo) = prop_of(node, "repo") {
            let repo = self.entry_string(repo, "`repo`")?;
            if !(repo.value.starts_with("https://") || repo.value.starts_with("http://")) {
                self.push(
                    Diagnostic::error(Code::InvalidValue, repo.span, format!("`{}` is not a Helm repository URL", repo.value))
                        .label("not http(s)://")
                        .help("write the repository's URL (the directory holding index.yaml), e.g. repo=\"https://charts.example.com\"; OCI charts need no repo: chart \"oci://host/path/NAME\""),
                );
                return None;
            }
            if s.value.is_empty() || s.value.contains('/') || s.value.contains(':') {
                self.push(
                    Diagnostic::error(Code::InvalidValue, s.span, format!("`{}` is not a chart name", s.value))
                        .label("with repo=, the chart's name in the repository")
                        .help("write `chart \"NAME\" repo=\"URL\"` with the name as index.yaml lists it"),
                );
                return None;
            }
            return Some(Spanned::new(ChartSource::Remote { chart: s.value, repo: Some(repo.value) }, s.span));
        }
        let v = &s.value;
        if remote(v) {
            return Some(Spanned::new(ChartSource::Remote { chart: v.clone(), repo: None }, s.span));
        }
        if v.contains("://") {
            self.push(
                Diagnostic::error(Code::InvalidValue, s.span, format!("unsupported chart reference `{v}`"))
                    .label("unknown scheme")
                    .help("use a path in the repository, an oci://, https:// or http:// reference, or `chart NAME repo=URL`"),
            );
            return None;
        }
        self.path(s).map(|p| Spanned::new(ChartSource::Local(p.value), p.span))
    }

    fn secret_value(&mut self, node: &KdlNode) -> Option<SecretValue> {
        self.check_entries(node, 1, &["from"]);
        self.no_children(node);
        let name_span = self.span(node.name().span());
        let key = match args_of(node).next() {
            Some(e) => self.entry_string(e, "the secret's values key")?,
            None => {
                self.missing(name_span, "`secret-value`", "key", "write `secret-value \"db.password\" from=\"env:VAR\"`");
                return None;
            }
        };
        if key.value.split('.').any(str::is_empty) {
            self.push(
                Diagnostic::error(Code::InvalidValue, key.span, format!("`{}` is not a values path", key.value))
                    .label("empty path segment")
                    .help("write a dotted path such as \"db.password\""),
            );
            return None;
        }
        let Some(from) = prop_of(node, "from") else {
            self.missing(name_span, "`secret-value`", "from", "add from=\"env:VAR\" or from=\"file:PATH\"");
            return None;
        };
        let from_s = self.entry_string(from, "`from`")?;
        let source = match SecretSource::parse(&from_s.value) {
            Some(source) => source,
            None => {
                self.push(
                    Diagnostic::error(Code::InvalidValue, from_s.span, format!("`{}` is not a secret source", from_s.value))
                        .label("unknown source")
                        .help("write from=\"env:VARIABLE\" or from=\"file:/path/to/secret\" (resolved when applying, never stored)"),
                );
                return None;
            }
        };
        Some(SecretValue { key, from: Spanned::new(source, from_s.span) })
    }

    fn scalar(&mut self, e: &KdlEntry) -> Option<Json> {
        Some(match e.value() {
            KdlValue::String(s) => Json::String(s.clone()),
            KdlValue::Integer(i) => match i64::try_from(*i) {
                Ok(i) => Json::from(i),
                Err(_) => match u64::try_from(*i) {
                    Ok(u) => Json::from(u),
                    Err(_) => {
                        self.push(
                            Diagnostic::error(Code::InvalidValue, self.span(e.span()), "integer out of range")
                                .label("does not fit in 64 bits")
                                .help("quote it to pass it as a string"),
                        );
                        return None;
                    }
                },
            },
            KdlValue::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => Json::Number(n),
                None => {
                    self.push(
                        Diagnostic::error(Code::InvalidValue, self.span(e.span()), "values cannot hold infinities or NaN")
                            .label("not a finite number")
                            .help("use a finite number or a string"),
                    );
                    return None;
                }
            },
            KdlValue::Bool(b) => Json::Bool(*b),
            KdlValue::Null => Json::Null,
        })
    }

    /// A values-tree node's value (see docs/language.md, "Values trees").
    fn value_of(&mut self, node: &KdlNode) -> Json {
        let args: Vec<&KdlEntry> = args_of(node).collect();
        let has_props = node.entries().iter().any(|e| e.name().is_some());
        let has_children = node.children().is_some();
        if !args.is_empty() && (has_props || has_children) {
            self.push(
                Diagnostic::error(Code::InvalidValue, self.span(node.name().span()), format!("`{}` mixes a value with a map", node.name().value()))
                    .label("arguments and properties/children together")
                    .help("a values node holds either arguments (a scalar or a list) or properties/children (a map)"),
            );
            return Json::Null;
        }
        match args.len() {
            0 if !has_props && !has_children => {
                self.push(
                    Diagnostic::error(Code::InvalidValue, self.span(node.name().span()), format!("`{}` has no value", node.name().value()))
                        .label("no value")
                        .help("write a value (`key 3`), a map (`key { … }`) or #null to delete a chart default"),
                );
                Json::Null
            }
            0 => self.values_map(node),
            1 => self.scalar(args[0]).unwrap_or(Json::Null),
            _ => Json::Array(args.into_iter().filter_map(|e| self.scalar(e)).collect()),
        }
    }

    /// A map from a node's properties and children, or a list if every child is `-`.
    fn values_map(&mut self, node: &KdlNode) -> Json {
        let children = self.children(node);
        let dashes = children.iter().filter(|c| c.name().value() == "-").count();
        let has_props = node.entries().iter().any(|e| e.name().is_some());
        if dashes > 0 {
            if dashes != children.len() || has_props {
                self.push(
                    Diagnostic::error(Code::InvalidValue, self.span(node.name().span()), format!("`{}` mixes list items with map keys", node.name().value()))
                        .label("`-` items next to keys")
                        .help("use only `-` children for a list, or only named children for a map"),
                );
                return Json::Null;
            }
            return Json::Array(children.iter().map(|c| self.value_of(c)).collect());
        }
        let mut map = serde_json::Map::new();
        let mut spans: HashMap<String, Span> = HashMap::new();
        let entries = node.entries().iter().filter_map(|e| e.name().map(|k| (k.value().to_string(), self.span(e.span()), Some(e), None)));
        let kids = children.iter().map(|c| (c.name().value().to_string(), self.span(c.name().span()), None, Some(c)));
        let all: Vec<_> = entries.chain(kids).collect();
        for (key, span, entry, child) in all {
            if let Some(first) = spans.get(&key) {
                self.push(
                    Diagnostic::error(Code::DuplicateField, span, format!("values key `{key}` is given twice"))
                        .label("given again here")
                        .with(*first, "first given here")
                        .help("merge both into one entry"),
                );
                continue;
            }
            spans.insert(key.clone(), span);
            let value = match (entry, child) {
                (Some(e), _) => self.scalar(e).unwrap_or(Json::Null),
                (_, Some(c)) => self.value_of(c),
                _ => Json::Null,
            };
            map.insert(key, value);
        }
        Json::Object(map)
    }

    fn fleet(&mut self, node: &KdlNode) -> Option<Fleet> {
        let raw = self.decl_name(node)?;
        let decl_span = raw.span;
        let mut f = Fleet {
            name: self.dns_name(raw, "fleet name"),
            nats: Vec::new(),
            agent_version: None,
            signing_key: None,
            tenants: Vec::new(),
            rollout: None,
            auth: FleetAuthMode::default(),
            host_paths: Vec::new(),
            storage: Default::default(),
        };
        let mut once = Once::default();
        for child in self.children(node) {
            match child.name().value() {
                "nats" if self.once(&mut once, "nats", child) => {
                    for s in self.strings(child, &[]) {
                        match validate::nats_url(&s.value) {
                            Ok(()) => f.nats.push(s),
                            Err(e) => self.invalid(Code::InvalidValue, s.span, "NATS URL", e),
                        }
                    }
                }
                "agent-version" if self.once(&mut once, "agent-version", child) => f.agent_version = self.semver(child),
                "signing-key" if self.once(&mut once, "signing-key", child) => {
                    f.signing_key = self.one_string(child).and_then(|s| self.path(s));
                }
                "tenants" => f.tenants.extend(self.strings(child, &[])),
                "rollout" if self.once(&mut once, "rollout", child) => f.rollout = self.rollout(child),
                "auth" if self.once(&mut once, "auth", child) => {
                    if let Some(s) = self.one_string(child) {
                        match s.value.as_str() {
                            "external" => f.auth = FleetAuthMode::External,
                            "nkey" => f.auth = FleetAuthMode::Nkey,
                            other => self.push(
                                Diagnostic::error(Code::InvalidValue, s.span, format!("`{other}` is not a fleet authentication mode"))
                                    .label("unknown mode")
                                    .help("use nkey (harmony generates per-device NATS credentials) or external (you manage them)"),
                            ),
                        }
                    }
                }
                "allow-host-path" => f.host_paths.extend(self.allow_host_path(child)),
                "replicas" if self.once(&mut once, "replicas", child) => {
                    if let Some(n) = self.one_int(child) {
                        match n.value {
                            1 | 3 | 5 => f.storage.replicas = n.value as u8,
                            other => self.push(
                                Diagnostic::error(Code::InvalidValue, n.span, format!("`replicas` must be 1, 3 or 5, not {other}"))
                                    .label("not a JetStream replica count")
                                    .help("write `replicas 1` for one server, `replicas 3` or `replicas 5` on a JetStream cluster of at least that many servers"),
                            ),
                        }
                    }
                }
                "placement" if self.once(&mut once, "placement", child) => {
                    if let Some((cluster, tags)) = self.placement(child) {
                        f.storage.cluster = cluster;
                        f.storage.tags = tags;
                    }
                }
                "description" if self.once(&mut once, "description", child) => {
                    self.one_string(child);
                }
                "nats" | "agent-version" | "signing-key" | "rollout" | "auth" | "replicas" | "placement" | "description" => {}
                _ => self.unknown_node(child, "in a fleet", FLEET),
            }
        }
        for (field, help) in [
            ("nats", "write `nats \"nats://HOST:4222\"`"),
            ("agent-version", "write `agent-version \"0.3.1\"`"),
            ("signing-key", "write `signing-key \"keys/FLEET.pub\"` (the fleet's Ed25519 public key)"),
        ] {
            if !once.0.contains_key(field) {
                self.missing(decl_span, "fleet", field, help);
            }
        }
        Some(f)
    }

    /// `placement cluster=east tags="ssd,eu"` in a fleet: the JetStream cluster and server tags
    /// of its buckets; at least one of the two. Names are what nats-server accepts in a
    /// `server_tags`/cluster name and a placement: 1–64 of `A-Z a-z 0-9 - _ : .`.
    fn placement(&mut self, node: &KdlNode) -> Option<(Option<String>, Vec<String>)> {
        self.check_entries(node, 0, &["cluster", "tags"]);
        self.no_children(node);
        const HELP: &str = "write `placement cluster=NAME` and/or `placement tags=\"TAG,TAG\"` (names of 1 to 64 letters, digits, `-`, `_`, `:` or `.`)";
        let valid = |s: &str| (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b));
        let cluster = match prop_of(node, "cluster") {
            Some(e) => {
                let c = self.entry_string(e, "`cluster`")?;
                if !valid(&c.value) {
                    self.push(Diagnostic::error(Code::InvalidValue, c.span, format!("`{}` is not a JetStream cluster name", c.value)).label("invalid cluster name").help(HELP));
                    return None;
                }
                Some(c.value)
            }
            None => None,
        };
        let tags = match prop_of(node, "tags") {
            Some(e) => {
                let t = self.entry_string(e, "`tags`")?;
                let tags: Vec<String> = t.value.split(',').map(|s| s.trim().to_string()).collect();
                if let Some(bad) = tags.iter().find(|t| !valid(t)) {
                    self.push(Diagnostic::error(Code::InvalidValue, t.span, format!("`{bad}` is not a server tag")).label("invalid tag").help(HELP));
                    return None;
                }
                tags
            }
            None => Vec::new(),
        };
        if cluster.is_none() && tags.is_empty() {
            self.missing(self.span(node.name().span()), "`placement`", "cluster or tags", HELP);
            return None;
        }
        Some((cluster, tags))
    }

    /// `allow-host-path "/srv/shared" tenant=acme [read-only=#true]`.
    fn allow_host_path(&mut self, node: &KdlNode) -> Option<AllowHostPath> {
        self.check_entries(node, 1, &["tenant", "read-only"]);
        self.no_children(node);
        let name_span = self.span(node.name().span());
        const HELP: &str = "write `allow-host-path \"/srv/shared\" tenant=NAME`, optionally with read-only=#true";
        let read_only = match prop_of(node, "read-only").map(|e| (e, e.value())) {
            None => false,
            Some((_, KdlValue::Bool(b))) => *b,
            Some((e, v)) => {
                self.push(
                    Diagnostic::error(Code::WrongType, self.span(e.span()), "`read-only` must be a boolean")
                        .label(format!("found {} {}", kind_of(v), show(v)))
                        .help("write read-only=#true or read-only=#false"),
                );
                return None;
            }
        };
        let tenant = match prop_of(node, "tenant") {
            Some(e) => self.entry_string(e, "`tenant`"),
            None => {
                self.missing(name_span, "`allow-host-path`", "tenant", HELP);
                None
            }
        };
        let path = match args_of(node).next() {
            Some(e) => self.entry_string(e, "the host path")?,
            None => {
                self.missing(name_span, "`allow-host-path`", "path", HELP);
                return None;
            }
        };
        let normal = match host_path::normalize(&path.value) {
            Ok(p) => p,
            Err(e) => {
                self.push(Diagnostic::error(Code::HostPath, path.span, e.to_string()).label("not a host path a fleet can grant").help(HELP));
                return None;
            }
        };
        if let Some(p) = host_path::protected_overlap(&normal, &[]) {
            let why = if host_path::within(&p, &normal) { format!("it contains the protected `{p}`") } else { format!("it is inside the protected `{p}`") };
            self.push(
                Diagnostic::error(Code::HostPath, path.span, format!("`{normal}` cannot be granted: {why}"))
                    .label("protected host path")
                    .help(format!(
                        "grant a directory made for the workload, e.g. /srv/NAME; never grantable: {} and every directory above them",
                        host_path::PROTECTED.join(", ")
                    )),
            );
            return None;
        }
        Some(AllowHostPath { path: Spanned::new(normal, path.span), tenant: tenant?, read_only })
    }

    fn device(&mut self, node: &KdlNode) -> Option<Device> {
        let raw = self.decl_name(node)?;
        let decl_span = raw.span;
        let mut d = Device { name: self.dns_name(raw, "device id"), fleet: None, labels: Labels::new() };
        let mut once = Once::default();
        for child in self.children(node) {
            match child.name().value() {
                "fleet" if self.once(&mut once, "fleet", child) => d.fleet = self.one_string(child),
                "labels" => self.labels(child, &mut d.labels),
                "description" if self.once(&mut once, "description", child) => {
                    self.one_string(child);
                }
                "fleet" | "description" => {}
                _ => self.unknown_node(child, "in a device", DEVICE),
            }
        }
        if !once.0.contains_key("fleet") {
            self.missing(decl_span, "device", "fleet", "write `fleet NAME` with the fleet the device belongs to");
        }
        Some(d)
    }

    fn deployment(&mut self, node: &KdlNode) -> Option<Deployment> {
        let raw = self.decl_name(node)?;
        let decl_span = raw.span;
        let mut d =
            Deployment { name: self.dns_name(raw, "deployment name"), tenant: None, fleet: None, selector: None, containers: Vec::new(), rollout: None };
        let mut once = Once::default();
        let mut services = 0;
        for child in self.children(node) {
            match child.name().value() {
                "tenant" if self.once(&mut once, "tenant", child) => d.tenant = self.one_string(child),
                "fleet" if self.once(&mut once, "fleet", child) => d.fleet = self.one_string(child),
                "selector" if self.once(&mut once, "selector", child) => d.selector = self.selector(child),
                "init-container" => d.containers.extend(self.container(child, true)),
                "container" => {
                    services += 1;
                    d.containers.extend(self.container(child, false));
                }
                "rollout" if self.once(&mut once, "rollout", child) => d.rollout = self.rollout(child),
                "description" if self.once(&mut once, "description", child) => {
                    self.one_string(child);
                }
                "tenant" | "fleet" | "selector" | "rollout" | "description" => {}
                _ => self.unknown_node(child, "in a deployment", DEPLOYMENT),
            }
        }
        for (field, help) in [
            ("tenant", "write `tenant NAME` with the tenant that owns this deployment"),
            ("fleet", "write `fleet NAME` with the fleet whose devices run it"),
            ("selector", "write `selector key=value` to choose the devices that run it"),
        ] {
            if !once.0.contains_key(field) {
                self.missing(decl_span, "deployment", field, help);
            }
        }
        if services == 0 {
            self.missing(decl_span, "deployment", "container", "declare at least one `container NAME { image \"…\" }`");
        }
        Some(d)
    }

    fn selector(&mut self, node: &KdlNode) -> Option<Spanned<Selector>> {
        let span = self.span(node.name().span());
        let mut sel = Selector::default();
        let mut ok = true;
        let mut labels = Labels::new();
        for e in node.entries() {
            if e.name().is_none() {
                self.push(
                    Diagnostic::error(Code::InvalidSelector, self.span(e.span()), "selector terms are written key=value")
                        .label("argument without a key")
                        .help("write `selector site=montreal`, or match expressions as children (in, not-in, exists, does-not-exist)"),
                );
                ok = false;
            }
        }
        let before = self.diags.len();
        self.label_entries(node, &mut labels);
        ok &= self.diags.len() == before;
        sel.match_labels = labels.into_iter().map(|(k, v)| (k, v.value)).collect();
        for child in self.children(node) {
            let op = child.name().value();
            if !SELECTOR.contains(&op) {
                let mut d = Diagnostic::error(Code::InvalidSelector, self.span(child.name().span()), format!("unknown match expression `{op}`"))
                    .label("not an operator");
                d = match did_you_mean(op, SELECTOR.iter().copied()) {
                    Some(s) => d.help(format!("did you mean `{s}`? operators: in, not-in, exists, does-not-exist")),
                    None => d.help("operators: in, not-in, exists, does-not-exist"),
                };
                self.push(d);
                ok = false;
                continue;
            }
            let takes_values = matches!(op, "in" | "not-in");
            let before = self.diags.len();
            let strings = self.strings(child, &[]);
            if self.diags.len() != before || strings.is_empty() {
                ok = false;
                continue;
            }
            let key = &strings[0];
            if let Err(e) = validate::label_key(&key.value) {
                self.invalid(Code::InvalidLabel, key.span, "label key", e);
                ok = false;
                continue;
            }
            let values: Vec<String> = strings[1..].iter().map(|s| s.value.clone()).collect();
            if takes_values && values.is_empty() {
                self.push(
                    Diagnostic::error(Code::InvalidSelector, self.span(child.name().span()), format!("`{op}` needs at least one value"))
                        .label("no values")
                        .help(format!("write `{op} {} VALUE…`", key.value)),
                );
                ok = false;
                continue;
            }
            if !takes_values && !values.is_empty() {
                self.push(
                    Diagnostic::error(Code::InvalidSelector, strings[1].span, format!("`{op}` takes only a key"))
                        .label("unexpected value")
                        .help(format!("write `{op} {}`", key.value)),
                );
                ok = false;
                continue;
            }
            for v in &strings[1..] {
                if let Err(e) = validate::label_value(&v.value) {
                    self.invalid(Code::InvalidLabel, v.span, "label value", e);
                    ok = false;
                }
            }
            let key = key.value.clone();
            sel.match_expressions.push(match op {
                "in" => MatchExpression::In { key, values },
                "not-in" => MatchExpression::NotIn { key, values },
                "exists" => MatchExpression::Exists { key },
                _ => MatchExpression::DoesNotExist { key },
            });
        }
        if ok && sel.is_empty() {
            self.push(
                Diagnostic::error(Code::InvalidSelector, span, "empty selector")
                    .label("selects nothing explicitly")
                    .help("add key=value terms or match expressions; a deployment must say which devices run it"),
            );
            return None;
        }
        ok.then(|| Spanned::new(sel, span))
    }

    fn container(&mut self, node: &KdlNode, init: bool) -> Option<Container> {
        let kind = if init { "init-container" } else { "container" };
        let raw = self.decl_name(node)?;
        let decl_span = raw.span;
        let mut c = Container {
            name: self.dns_name(raw, "container name"),
            image: None,
            command: Vec::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            ports: Vec::new(),
            volumes: Vec::new(),
            restart: None,
            timeout: None,
            init,
        };
        let mut once = Once::default();
        let allowed = if init { INIT_CONTAINER } else { CONTAINER };
        for child in self.children(node) {
            let name = child.name().value();
            match name {
                "image" if self.once(&mut once, "image", child) => {
                    if let Some(s) = self.one_string(child) {
                        match ImageRef::parse(&s.value) {
                            Ok(i) => c.image = Some(Spanned::new(i, s.span)),
                            Err(e) => self.invalid(Code::InvalidImage, s.span, "image", e),
                        }
                    }
                }
                "command" if self.once(&mut once, "command", child) => c.command = self.strings(child, &[]).into_iter().map(|s| s.value).collect(),
                "args" if self.once(&mut once, "args", child) => c.args = self.strings(child, &[]).into_iter().map(|s| s.value).collect(),
                "env" => {
                    self.no_children(child);
                    if child.entries().is_empty() {
                        self.missing(self.span(child.name().span()), "`env`", "NAME=value", "write `env NAME=value …`");
                    }
                    for e in child.entries() {
                        let Some(k) = e.name() else {
                            self.push(
                                Diagnostic::error(Code::UnexpectedArgument, self.span(e.span()), "environment variables are written NAME=value")
                                    .label("argument without a name")
                                    .help("write `env LOG_LEVEL=info`"),
                            );
                            continue;
                        };
                        if let Err(err) = validate::env_name(k.value()) {
                            self.invalid(Code::InvalidValue, self.span(e.span()), "environment variable name", err);
                            continue;
                        }
                        let v = match e.value() {
                            KdlValue::String(s) => s.clone(),
                            KdlValue::Integer(i) => i.to_string(),
                            KdlValue::Float(f) => f.to_string(),
                            KdlValue::Bool(b) => b.to_string(),
                            KdlValue::Null => {
                                self.push(
                                    Diagnostic::error(Code::WrongType, self.span(e.span()), format!("`{}` has no value", k.value()))
                                        .label("#null")
                                        .help("give a string value, or \"\" for an empty one"),
                                );
                                continue;
                            }
                        };
                        if c.env.insert(k.value().to_string(), v).is_some() {
                            self.push(
                                Diagnostic::error(Code::DuplicateField, self.span(e.span()), format!("environment variable `{}` is given twice", k.value()))
                                    .label("given again here")
                                    .help("keep a single value per variable"),
                            );
                        }
                    }
                }
                "port" => {
                    self.check_entries(child, 1, &[]);
                    self.no_children(child);
                    match args_of(child).next() {
                        None => self.missing(self.span(child.name().span()), "`port`", "value", "write `port 8080` or `port \"8080:80\"`"),
                        Some(e) => {
                            let span = self.span(e.span());
                            let parsed = match e.value() {
                                KdlValue::Integer(i) => {
                                    validate::port_number(*i).map(|p| validate::PortMapping { host: p, container: p, protocol: validate::Protocol::Tcp })
                                }
                                KdlValue::String(s) => validate::port_mapping(s),
                                v => Err(Invalid {
                                    reason: format!("found {} {}", kind_of(v), show(v)),
                                    help: "write `port 8080` or `port \"8080:80/udp\"`".into(),
                                }),
                            };
                            match parsed {
                                Ok(p) => c.ports.push(p),
                                Err(err) => self.invalid(Code::InvalidPort, span, "port", err),
                            }
                        }
                    }
                }
                "volume" => {
                    if let Some(s) = self.one_string(child) {
                        match validate::volume(&s.value) {
                            Ok(v) => c.volumes.push(Spanned::new(v, s.span)),
                            Err(e) => self.invalid(Code::InvalidValue, s.span, "volume", e),
                        }
                    }
                }
                "restart" if !init && self.once(&mut once, "restart", child) => {
                    if let Some(s) = self.one_string(child) {
                        c.restart = match s.value.as_str() {
                            "always" => Some(RestartPolicy::Always),
                            "on-failure" => Some(RestartPolicy::OnFailure),
                            "no" => Some(RestartPolicy::No),
                            other => {
                                self.push(
                                    Diagnostic::error(Code::InvalidValue, s.span, format!("`{other}` is not a restart policy"))
                                        .label("unknown policy")
                                        .help("use always, on-failure or no"),
                                );
                                None
                            }
                        };
                    }
                }
                "timeout" if init && self.once(&mut once, "timeout", child) => c.timeout = self.duration(child),
                "description" if self.once(&mut once, "description", child) => {
                    self.one_string(child);
                }
                "image" | "command" | "args" | "description" => {}
                "restart" | "timeout" if (name == "restart") != init => {}
                _ if PRIVILEGED.contains(&name) => self.push(
                    Diagnostic::error(Code::PrivilegedOption, self.span(child.name().span()), format!("`{name}` is not allowed in a {kind} on a device"))
                        .label("host access is refused")
                        .help(format!(
                            "device containers run unprivileged: no added capabilities, host devices, host namespaces (network, pid, ipc, uts, user, cgroup), \
                             sysctls or relaxed security options; host files only through `volume` (see docs/language.md, \"Host access\"). valid here: {}",
                            allowed.join(", ")
                        )),
                ),
                _ => self.unknown_node(child, &format!("in an {kind}").replace("an container", "a container"), allowed),
            }
        }
        if !once.0.contains_key("image") {
            self.missing(decl_span, kind, "image", "write `image \"registry.example/team/app:1.0\"`");
        }
        Some(c)
    }

    fn rollout(&mut self, node: &KdlNode) -> Option<Rollout> {
        self.check_entries(node, 0, &[]);
        let span = self.span(node.name().span());
        let mut steps: Vec<Spanned<i128>> = Vec::new();
        let mut r = Rollout { steps: Vec::new(), max_failed: 0, health_timeout: Duration::from_secs(300), settle: DEFAULT_SETTLE, auto_revert: false };
        let mut settle: Option<(Duration, Span)> = None;
        let mut once = Once::default();
        let mut ok = true;
        for child in self.children(node) {
            match child.name().value() {
                "step" => match self.one_int(child) {
                    Some(s) => steps.push(s),
                    None => ok = false,
                },
                "max-failed" if self.once(&mut once, "max-failed", child) => match self.one_int(child) {
                    Some(n) if (0..=u32::MAX as i128).contains(&n.value) => r.max_failed = n.value as u32,
                    Some(n) => {
                        self.push(
                            Diagnostic::error(Code::InvalidValue, n.span, "`max-failed` must be zero or more")
                                .label("negative")
                                .help("write a count of devices, e.g. `max-failed 1`"),
                        );
                        ok = false;
                    }
                    None => ok = false,
                },
                "health-timeout" if self.once(&mut once, "health-timeout", child) => match self.duration(child) {
                    Some(d) => r.health_timeout = d,
                    None => ok = false,
                },
                "settle" if self.once(&mut once, "settle", child) => match self.duration(child) {
                    Some(d) if d.to_std().subsec_nanos() != 0 => {
                        self.push(
                            Diagnostic::error(Code::InvalidValue, self.span(child.name().span()), "`settle` is not a whole number of seconds")
                                .label("a fraction of a second")
                                .help("write whole seconds, e.g. `settle \"30s\"` or `settle \"2m\"`"),
                        );
                        ok = false;
                    }
                    Some(d) => settle = Some((d, self.span(child.name().span()))),
                    None => ok = false,
                },
                "auto-revert" if self.once(&mut once, "auto-revert", child) => match self.one_bool(child) {
                    Some(b) => r.auto_revert = b,
                    None => ok = false,
                },
                "max-failed" | "health-timeout" | "settle" | "auto-revert" => ok = false,
                _ => {
                    self.unknown_node(child, "in a rollout", ROLLOUT);
                    ok = false;
                }
            }
        }
        if let Some((d, at)) = settle {
            if d >= r.health_timeout {
                let (s, t) = (d.to_std().as_secs_f64(), r.health_timeout.to_std().as_secs_f64());
                self.push(
                    Diagnostic::error(Code::InvalidValue, at, format!("`settle` ({s} s) is not shorter than `health-timeout` ({t} s)"))
                        .label("no step could become healthy")
                        .help("a device is healthy once every service has run for `settle` within the step's `health-timeout`: make `settle` shorter or `health-timeout` longer"),
                );
                ok = false;
            } else {
                r.settle = d;
            }
        }
        if steps.is_empty() {
            self.missing(span, "rollout", "step", "write steps as cumulative percentages, e.g. `step 10; step 50; step 100`");
            return None;
        }
        let mut prev = 0;
        for s in &steps {
            if !(1..=100).contains(&s.value) {
                self.push(
                    Diagnostic::error(Code::InvalidValue, s.span, format!("step {} is not a percentage 1-100", s.value))
                        .label("out of range")
                        .help("steps are cumulative percentages of matching devices, 1-100"),
                );
                return None;
            }
            if s.value <= prev {
                self.push(
                    Diagnostic::error(Code::InvalidValue, s.span, format!("step {} does not increase", s.value))
                        .label(format!("after {prev}"))
                        .help("steps are cumulative: each must be larger than the one before"),
                );
                return None;
            }
            prev = s.value;
        }
        if prev != 100 {
            let last = steps[steps.len() - 1].span;
            self.push(
                Diagnostic::error(Code::InvalidValue, last, format!("the last step is {prev}, not 100"))
                    .label("rollout would never finish")
                    .help("end with `step 100`"),
            );
            return None;
        }
        r.steps = steps.iter().map(|s| s.value as u8).collect();
        ok.then_some(r)
    }

    fn repository(&mut self, node: &KdlNode) -> Option<Settings> {
        let name = self.decl_name(node)?;
        let mut s = Settings { name, kube_version: None, exclude: Vec::new() };
        let mut once = Once::default();
        for child in self.children(node) {
            match child.name().value() {
                "kube-version" if self.once(&mut once, "kube-version", child) => s.kube_version = self.semver(child),
                "exclude" => s.exclude.extend(self.strings(child, &[])),
                "description" if self.once(&mut once, "description", child) => {
                    self.one_string(child);
                }
                "kube-version" | "description" => {}
                _ => self.unknown_node(child, "in repository settings", REPOSITORY),
            }
        }
        Some(s)
    }
}
