//! Planner scenarios on fixture repositories, snapshotted in all three formats, plus the
//! secret-plaintext scan and determinism. Observed states are built from the repositories
//! themselves (as if applied), then changed per scenario.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use harmony_compiler::compile::ChartRef;
use harmony_compiler::{CompiledRepo, DiskFs, UnitContent, compile_repo};
use harmony_planner::observed::{ObservedEntry, ObservedRelease, ObservedTenantAccess};
use harmony_planner::output::{HumanOptions, MarkdownOptions, human, json, markdown};
use harmony_planner::render::SecretValues;
use harmony_planner::{FingerprintKey, ObservedState, PlanOptions, Rendered, plan};
use harmony_schemas::plan::{Action, ObservedSource, PlanFile, SecretStatus, SourceRevision};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compile(dir: &Path) -> CompiledRepo {
    let out = compile_repo(&DiskFs::new(dir)).unwrap();
    assert_eq!(out.errors(), 0, "{:?}", out.diagnostics);
    out.repo.unwrap()
}

/// Renders every local-chart release (on a thread with a large stack).
fn render_all(dir: &Path, compiled: &CompiledRepo, secrets: &BTreeMap<String, SecretValues>) -> Rendered {
    let jobs: Vec<_> = compiled
        .units
        .values()
        .filter_map(|u| match &u.content {
            UnitContent::Release(r) => match &r.chart {
                ChartRef::Local { path, .. } => {
                    Some((u.id.as_str().to_string(), r.clone(), dir.join(path), secrets.get(u.id.as_str()).cloned().unwrap_or_default()))
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            jobs.into_iter()
                .map(|(id, r, chart, s)| {
                    let c = harmony_helm::Chart::load(&chart).unwrap();
                    let objs = harmony_planner::render::render_release(&id, &r, c, &s, install(&r).as_ctx()).unwrap();
                    (id, objs.objects)
                })
                .collect()
        })
        .unwrap()
        .join()
        .unwrap()
}

/// A first install against what the repository declares.
struct Install(harmony_schemas::plan::Capabilities);

impl Install {
    fn as_ctx(&self) -> harmony_planner::render::RenderContext<'_> {
        harmony_planner::render::RenderContext { revision: 1, is_upgrade: false, capabilities: &self.0 }
    }
}

fn install(r: &harmony_compiler::compile::ReleaseUnit) -> Install {
    Install(harmony_planner::render::declared_capabilities(r))
}

/// The observed state of a repository applied exactly as it is.
fn applied(compiled: &CompiledRepo, rendered: &Rendered, secrets: &BTreeMap<String, SecretValues>) -> ObservedState {
    let mut o = ObservedState::default();
    for (i, (id, u)) in compiled.units.iter().enumerate() {
        let id = id.as_str().to_string();
        let content = serde_json::to_value(&u.content).ok();
        match &u.content {
            UnitContent::Release(_) => {
                let objects = rendered.get(&id).map(|v| v.iter().map(|x| x.value.clone()).collect()).unwrap_or_default();
                let secret_values = secrets.get(&id).map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect()).unwrap_or_default();
                o.releases.insert(
                    id,
                    ObservedRelease { revision: 3, resource_version: format!("{}", 1000 + i), hash: Some(u.hash.clone()), objects, secret_values, content, latest_revision: None, undeployed: false, live: None, unserved: Vec::new() },
                );
            }
            UnitContent::DevicePlan(_) => {
                o.device_plans.insert(id, ObservedEntry { revision: 7 + i as u64, hash: u.hash.clone(), content });
            }
            UnitContent::Agent(_) => {
                o.agents.insert(id, ObservedEntry { revision: 2, hash: u.hash.clone(), content });
            }
            UnitContent::TenantAccess(_) => {
                o.tenant_access.insert(
                    id,
                    ObservedTenantAccess {
                        resource_versions: BTreeMap::from([("ServiceAccount/x/y".into(), "55".into())]),
                        hash: u.hash.clone(),
                        content,
                        objects: vec![],
                    },
                );
            }
        }
    }
    o
}

fn key() -> FingerprintKey {
    FingerprintKey::from_bytes([0x42; 32])
}

fn options(secrets: &BTreeMap<String, SecretValues>, observed: &ObservedState) -> PlanOptions {
    PlanOptions {
        targets: vec![],
        excludes: vec![],
        skipped: vec![],
        key: key(),
        secret_values: secrets.clone(),
        source: SourceRevision { commit: Some("0123456789abcdef0123456789abcdef01234567".into()), dirty: false, repository_hash: "sha256:fixture".into() },
        observed_source: if observed.is_empty() { ObservedSource::None } else { ObservedSource::File { hash: observed.hash() } },
        capabilities: Default::default(),
        release_renders: Default::default(),
    }
}

const DB_PASS_OLD: &str = "old-Pa55word-2025";
const DB_PASS_NEW: &str = "new-Pa55word-2026";
const API_PASS: &str = "api-S3cret-unchanged";
const BIG_TOKEN: &str = "tok-7f3a9c2e11";

fn tenant_secrets(db: &str) -> BTreeMap<String, SecretValues> {
    BTreeMap::from([
        ("release/okd-prod/acme-prod/shop-db".to_string(), BTreeMap::from([("auth.password".to_string(), Some(db.to_string()))])),
        ("release/okd-prod/acme-prod/shop-api".to_string(), BTreeMap::from([("database.password".to_string(), Some(API_PASS.to_string()))])),
    ])
}

/// Every plaintext a scenario knows; none may appear in any output.
fn plaintexts() -> Vec<String> {
    use base64::Engine as _;
    let mut v = Vec::new();
    for p in [DB_PASS_OLD, DB_PASS_NEW, API_PASS, BIG_TOKEN] {
        v.push(p.to_string());
        v.push(base64::engine::general_purpose::STANDARD.encode(p));
    }
    v
}

struct Scenario {
    name: &'static str,
    plan: PlanFile,
}

/// All three formats (human, compact human, markdown, json), scanned for plaintext.
fn outputs(p: &PlanFile) -> Vec<(&'static str, String)> {
    vec![
        ("human", human(p, &HumanOptions::default())),
        ("compact", human(p, &HumanOptions { compact: true, ..HumanOptions::default() })),
        ("human-color", human(p, &HumanOptions { color: true, ..HumanOptions::default() })),
        ("markdown", markdown(p, &MarkdownOptions::default())),
        ("json", json(p)),
    ]
}

fn tenants_scenarios() -> Vec<Scenario> {
    let dir = root().join("../tenants");
    let compiled = compile(&dir);
    let old = tenant_secrets(DB_PASS_OLD);
    let new = tenant_secrets(DB_PASS_NEW);
    let rendered_old = render_all(&dir, &compiled, &old);
    let rendered_new = render_all(&dir, &compiled, &new);
    let mut out = Vec::new();

    // Empty plan: the repository applied as it is.
    let observed = applied(&compiled, &rendered_new, &new);
    let p = plan(&compiled, &rendered_new, &observed, &options(&new, &observed)).unwrap();
    out.push(Scenario { name: "empty", plan: p });

    // Create only: nothing observed.
    let nothing = ObservedState::default();
    let p = plan(&compiled, &rendered_new, &nothing, &options(&new, &nothing)).unwrap();
    out.push(Scenario { name: "create_only", plan: p });

    // Mixed: a pruned release and device plan, an updated release, a replaced StatefulSet,
    // an updated device plan, a unit never applied.
    let mut observed = applied(&compiled, &rendered_new, &new);
    let web = "release/okd-prod/acme-prod/shop-web";
    let r = observed.releases.get_mut(web).unwrap();
    r.hash = Some("sha256:older".into());
    for o in &mut r.objects {
        if o["kind"] == "Deployment" {
            o["spec"]["replicas"] = 2.into();
        }
    }
    let staging = "release/okd-staging/acme-staging/shop-web-staging";
    observed.releases.remove(staging);
    let mut gone = observed.releases["release/okd-prod/globex/portal"].clone();
    gone.objects.retain(|o| o["kind"] == "Service");
    observed.releases.insert("release/okd-prod/globex/old-portal".into(), gone);
    observed.device_plans.insert(
        "device-plan/pico/retired-001".into(),
        ObservedEntry { revision: 4, hash: "sha256:gone".into(), content: Some(serde_json::json!({"device": "retired-001"})) },
    );
    let p = plan(&compiled, &rendered_new, &observed, &options(&new, &observed)).unwrap();
    out.push(Scenario { name: "mixed_with_deletions", plan: p });

    // Secrets: shop-db's password changed since it was applied, shop-api's did not (but the
    // release changed otherwise), so one shows changed and one unchanged.
    let mut observed = applied(&compiled, &rendered_old, &old);
    let api = "release/okd-prod/acme-prod/shop-api";
    let r = observed.releases.get_mut(api).unwrap();
    r.hash = Some("sha256:older".into());
    for o in &mut r.objects {
        if o["kind"] == "Deployment" {
            o["spec"]["replicas"] = 1.into();
        }
    }
    let p = plan(&compiled, &rendered_new, &observed, &options(&new, &observed)).unwrap();
    out.push(Scenario { name: "secrets_changed_unchanged", plan: p });

    // Device plans: one device's plan differs (a workload's image), another's agent version.
    let mut observed = applied(&compiled, &rendered_new, &new);
    let (id, e) =
        observed.device_plans.iter_mut().find(|(_, e)| e.content.as_ref().is_some_and(|c| c["workloads"].as_array().is_some_and(|w| !w.is_empty()))).unwrap();
    let id = id.clone();
    e.hash = "sha256:older".into();
    let c = e.content.as_mut().unwrap();
    let img = &mut c["workloads"][0]["containers"][0]["image"];
    *img = serde_json::Value::String(format!("{}-old", img.as_str().unwrap()));
    let agent = id.replacen("device-plan/", "agent/", 1);
    let a = observed.agents.get_mut(&agent).unwrap();
    a.hash = "sha256:older".into();
    a.content.as_mut().unwrap()["version"] = "0.0.9".into();
    let p = plan(&compiled, &rendered_new, &observed, &options(&new, &observed)).unwrap();
    out.push(Scenario { name: "device_plan_changes", plan: p });
    out
}

fn big_scenario() -> Scenario {
    let dir = root().join("tests/fixtures/big");
    let compiled = compile(&dir);
    let id = "release/prod/acme/many".to_string();
    let secrets = BTreeMap::from([(id.clone(), BTreeMap::from([("token".to_string(), Some(BIG_TOKEN.to_string()))]))]);
    let rendered = render_all(&dir, &compiled, &secrets);
    let mut observed = applied(&compiled, &rendered, &secrets);
    let r = observed.releases.get_mut(&id).unwrap();
    r.hash = Some("sha256:older".into());
    for o in &mut r.objects {
        if o["kind"] == "ConfigMap" {
            o["data"]["generation"] = "1".into();
        }
    }
    assert_eq!(r.objects.len(), 501);
    let p = plan(&compiled, &rendered, &observed, &options(&secrets, &observed)).unwrap();
    Scenario { name: "release_500_objects", plan: p }
}

#[test]
fn scenarios_in_every_format() {
    let mut all = tenants_scenarios();
    all.push(big_scenario());
    for s in &all {
        for (format, text) in outputs(&s.plan) {
            if format == "json" && s.name == "release_500_objects" {
                // The whole file is 180 KB: keep its head (the apply fields come first).
                let head: Vec<&str> = text.lines().take(80).collect();
                insta::assert_snapshot!(format!("{}_{}", s.name, format), format!("{}\n… {} lines in all", head.join("\n"), text.lines().count()));
            } else if format != "human-color" {
                insta::assert_snapshot!(format!("{}_{}", s.name, format), text);
            }
            for p in plaintexts() {
                assert!(!text.contains(&p), "{} {format}: plaintext {p:?} leaked", s.name);
            }
        }
    }
    let get = |n: &str| &all.iter().find(|s| s.name == n).unwrap().plan;

    let empty = get("empty");
    assert!(!empty.summary.has_changes());
    assert!(human(empty, &HumanOptions::default()).contains("Plan: 0 to add, 0 to change, 0 to destroy."));

    let create = get("create_only");
    assert!(create.actions.iter().all(|a| a.apply.action == Action::Create));
    assert!(human(create, &HumanOptions::default()).contains("no observed state (--offline: every unit is planned as a create"));

    let mixed = get("mixed_with_deletions");
    let actions: BTreeMap<&str, Action> = mixed.actions.iter().map(|a| (a.unit.as_str(), a.apply.action)).collect();
    assert_eq!(actions["release/okd-prod/globex/old-portal"], Action::Delete);
    assert_eq!(actions["device-plan/pico/retired-001"], Action::Delete);
    assert_eq!(actions["release/okd-prod/acme-prod/shop-web"], Action::Update);
    assert_eq!(actions["release/okd-staging/acme-staging/shop-web-staging"], Action::Create);
    // Destroys first; device plans before releases.
    assert_eq!(mixed.actions[0].unit, "device-plan/pico/retired-001");
    assert_eq!(mixed.actions[1].unit, "release/okd-prod/globex/old-portal");
    assert_eq!(mixed.summary.line(), "Plan: 1 to add, 1 to change, 2 to destroy.");
    let h = human(mixed, &HumanOptions::default());
    assert!(h.starts_with("Source 0123456789ab, against observed state sha256:"), "{h}");
    assert!(h.contains("-  replicas: 2\n") && h.contains("+  replicas: 3\n"), "{h}");
    assert!(h.contains("planned against Helm revision 3, release record resourceVersion"), "{h}");

    let sec = get("secrets_changed_unchanged");
    let db = sec.actions.iter().find(|a| a.unit == "release/okd-prod/acme-prod/shop-db").unwrap();
    assert_eq!(db.apply.action, Action::Update);
    let status = |a: &harmony_schemas::plan::PlannedAction, name: &str| a.apply.secrets.iter().find(|s| s.name == name).unwrap().status;
    assert_eq!(status(db, "secret-value auth.password"), SecretStatus::Changed);
    assert_eq!(status(db, "Secret/acme-prod/shop-db-postgres data.password"), SecretStatus::Changed);
    let api = sec.actions.iter().find(|a| a.unit == "release/okd-prod/acme-prod/shop-api").unwrap();
    assert_eq!(api.apply.action, Action::Update);
    assert_eq!(status(api, "secret-value database.password"), SecretStatus::Unchanged);
    for (format, text) in outputs(sec).into_iter().filter(|(f, _)| *f != "compact") {
        assert!(text.contains(&key().fingerprint(DB_PASS_NEW.as_bytes())), "{format}: new fingerprint missing");
        assert!(text.contains(&key().fingerprint(DB_PASS_OLD.as_bytes())), "{format}: old fingerprint missing");
        assert!(text.contains("unchanged"), "{format}");
    }

    let dev = get("device_plan_changes");
    assert_eq!(dev.summary.update, 2);
    assert!(human(dev, &HumanOptions::default()).contains("-old\n"));

    let big = get("release_500_objects");
    assert_eq!(big.summary.update, 1);
    let many = big.actions.iter().find(|a| a.unit == "release/prod/acme/many").unwrap();
    assert_eq!(many.explain.objects.len(), 500);
    let h = human(big, &HumanOptions::default());
    assert!(h.contains("lines hidden (") && h.contains("more objects not shown"), "{h}");
    assert!(h.lines().count() < 120, "collapsed output is {} lines", h.lines().count());
    let md = markdown(big, &MarkdownOptions::default());
    assert!(md.len() <= MarkdownOptions::default().max_bytes);
    let tiny = markdown(create, &MarkdownOptions { max_bytes: 3000, ..MarkdownOptions::default() });
    assert!(tiny.contains("**Truncated:**") && tiny.len() <= 3000, "{tiny}");
}

#[test]
fn plan_is_deterministic_and_round_trips() {
    let a = tenants_scenarios();
    let b = tenants_scenarios();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.plan.to_json(), y.plan.to_json(), "{}", x.name);
        assert_eq!(PlanFile::from_json(&x.plan.to_json()).unwrap(), x.plan);
    }
    // The identity covers what drives apply: a different observed revision changes it.
    let mixed = &a.iter().find(|s| s.name == "mixed_with_deletions").unwrap().plan;
    let create = &a.iter().find(|s| s.name == "create_only").unwrap().plan;
    assert_ne!(mixed.identity, create.identity);
    assert!(mixed.identity.starts_with("sha256:"));
}

#[test]
fn targets_pull_dependencies_and_excludes_drop_dependents() {
    let dir = root().join("../tenants");
    let compiled = compile(&dir);
    let nothing = ObservedState::default();
    let sel = harmony_planner::select_units(&compiled, &nothing, &["release/okd-prod/acme-prod/shop-web".into()], &[]).unwrap();
    let sel: Vec<&str> = sel.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        sel,
        ["release/okd-prod/acme-prod/shop-api", "release/okd-prod/acme-prod/shop-db", "release/okd-prod/acme-prod/shop-web", "tenant-access/acme/okd-prod"]
    );
    let sel = harmony_planner::select_units(&compiled, &nothing, &[], &["release/okd-prod/acme-prod/shop-db".into()]).unwrap();
    assert!(!sel.iter().any(|s| s.starts_with("release/okd-prod/acme-prod/")), "{sel:?}");
    assert!(sel.contains("tenant-access/acme/okd-prod"));
    let err = harmony_planner::select_units(&compiled, &nothing, &["release/okd-prod/acme-prod/shop-wbe".into()], &[]).unwrap_err().to_string();
    assert!(err.starts_with("--target release/okd-prod/acme-prod/shop-wbe: no unit matches; did you mean release/okd-prod/acme-prod/shop-web?"), "{err}");
}

#[test]
fn an_immutable_field_change_is_a_replace_and_a_hash_only_change_touches_no_object() {
    let dir = root().join("../tenants");
    let compiled = compile(&dir);
    let secrets = tenant_secrets(DB_PASS_NEW);
    let rendered = render_all(&dir, &compiled, &secrets);
    let mut observed = applied(&compiled, &rendered, &secrets);
    let db = "release/okd-prod/acme-prod/shop-db";
    let r = observed.releases.get_mut(db).unwrap();
    r.hash = Some("sha256:older".into());
    let sts = r.objects.iter_mut().find(|o| o["kind"] == "StatefulSet").unwrap();
    sts["spec"]["serviceName"] = "old-headless".into();
    let web = "release/okd-prod/acme-prod/shop-web";
    observed.releases.get_mut(web).unwrap().hash = Some("sha256:older".into());
    let p = plan(&compiled, &rendered, &observed, &options(&secrets, &observed)).unwrap();
    let a = p.actions.iter().find(|a| a.unit == db).unwrap();
    assert_eq!(a.apply.action, Action::Replace);
    assert_eq!(a.explain.reason, "StatefulSet/acme-prod/shop-db-postgres: spec.serviceName cannot be changed in place");
    assert_eq!(a.explain.objects[0].action, Action::Replace);
    // shop-web's unit changed but renders the deployed objects: no change of the cluster.
    assert_eq!(p.summary.line(), "Plan: 1 to add, 0 to change, 1 to destroy.");
    let w = p.actions.iter().find(|a| a.unit == web).unwrap();
    assert_eq!(w.apply.action, Action::Noop);
    assert_eq!(w.explain.reason, harmony_schemas::plan::RECORD_ONLY_REASON);
    assert!(w.explain.objects.is_empty());
    let text = human(&p, &HumanOptions::default());
    assert!(text.contains("-/+ release/okd-prod/acme-prod/shop-db replace"), "{text}");
    assert!(text.contains("1 unit (release/okd-prod/acme-prod/shop-web) renders the objects already deployed"), "{text}");
}

#[test]
fn render_errors_do_not_quote_secrets() {
    let dir = root().join("tests/fixtures/big");
    let compiled = compile(&dir);
    let u = compiled.units.values().find(|u| u.id.as_str() == "release/prod/acme/many").unwrap();
    let UnitContent::Release(r) = &u.content else { unreachable!() };
    let r = r.clone();
    let secrets = BTreeMap::from([("token".to_string(), Some(BIG_TOKEN.to_string()))]);
    let chart_dir = dir.join("charts/many");
    let e = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            let mut tpl = harmony_helm::Chart::load(&chart_dir).unwrap();
            for f in &mut tpl.templates {
                if f.name.ends_with("secret.yaml") {
                    f.data = b"{{ fail (printf \"bad token %s\" .Values.token) }}".to_vec();
                }
            }
            harmony_planner::render::render_release("release/prod/acme/many", &r, tpl, &secrets, install(&r).as_ctx()).unwrap_err().to_string()
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(e.starts_with("release release/prod/acme/many: "), "{e}");
    assert!(!e.contains(BIG_TOKEN) && e.contains("bad token (redacted)"), "{e}");
}
