//! The committed JSON Schemas in `docs/schemas/` must match the types.
//! `HARMONY_UPDATE_SCHEMAS=1 cargo test -p harmony-schemas` rewrites them.

use std::path::PathBuf;

use harmony_schemas::plan::*;

fn docs_schema(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas").join(name)
}

fn committed_and_current(name: &str, current: String) {
    let path = docs_schema(name);
    if std::env::var_os("HARMONY_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &current).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == current, "{} is stale: run `HARMONY_UPDATE_SCHEMAS=1 cargo test -p harmony-schemas` and commit it", path.display());
}

#[test]
fn plan_schema_is_committed_and_current() {
    committed_and_current("plan.schema.json", plan_schema_json());
}

#[test]
fn lock_schema_is_committed_and_current() {
    committed_and_current("harmony-lock.schema.json", harmony_schemas::lock::lock_schema_json());
}

#[test]
fn apply_outcome_schema_is_committed_and_current() {
    committed_and_current("apply-outcome.schema.json", apply_outcome_schema_json());
}

#[test]
fn apply_unit_schema_is_committed_and_current() {
    committed_and_current("apply-unit.schema.json", apply_unit_schema_json());
}

/// A unit line reads back as what was written, and its result's fields are at the top level.
#[test]
fn an_apply_unit_line_is_flat_and_round_trips() {
    let r = ActionResult { unit: "release/c/ns/web".into(), action: Action::Create, outcome: Outcome::Applied, message: "installed, revision 1".into(), expected: None, found: None };
    let line = ApplyUnit::new(r, 12).to_line();
    assert!(!line.contains('\n'));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!((v["kind"].as_str(), v["unit"].as_str(), v["outcome"].as_str()), (Some(APPLY_UNIT_KIND), Some("release/c/ns/web"), Some("applied")));
    assert_eq!(serde_json::from_str::<ApplyUnit>(&line).unwrap(), ApplyUnit::new(serde_json::from_value(serde_json::json!({"unit": "release/c/ns/web", "action": "create", "outcome": "applied", "message": "installed, revision 1"})).unwrap(), 12));
}

fn sample() -> PlanFile {
    PlanFile {
        capabilities: Default::default(),
        rollouts: Vec::new(),
        device_drift: Vec::new(),
        repository: None,
        targets: PlanTargets::default(),
        charts: Default::default(),
        seal: None,
        kind: PLAN_FILE_KIND.into(),
        format_version: PLAN_FORMAT_VERSION,
        source: SourceRevision { commit: Some("abc".into()), dirty: false, repository_hash: "sha256:00".into() },
        observed: ObservedSource::None,
        identity: "sha256:11".into(),
        fingerprint_key_id: "kid:22".into(),
        filters: Filters::default(),
        summary: Summary { create: 1, ..Summary::default() },
        actions: vec![PlannedAction {
            unit: "release/c/ns/web".into(),
            apply: ApplyFields { action: Action::Create, observed: None, desired_hash: Some("sha256:33".into()), depends_on: vec![], secrets: vec![], release: None, payload: None, drift: vec![] },
            explain: Explanation { reason: "not observed".into(), objects: vec![] },
        }],
    }
}

#[test]
fn plan_round_trips_and_validates_against_its_schema() {
    let p = sample();
    let text = p.to_json();
    assert_eq!(PlanFile::from_json(&text).unwrap(), p);
    let schema: serde_json::Value = serde_json::from_str(&plan_schema_json()).unwrap();
    let inst: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(jsonschema::is_valid(&schema, &inst));
    assert_eq!(p.summary.line(), "Plan: 1 to add, 0 to change, 0 to destroy.");
}

#[test]
fn other_format_versions_are_refused_with_a_clear_error() {
    let mut v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
    v["format_version"] = 1.into();
    let err = PlanFile::from_json(&v.to_string()).unwrap_err().to_string();
    assert!(err.contains("plan file format version 1 is not supported"), "{err}");
    assert!(err.contains("reads version 4 only"), "{err}");
    v["format_version"] = "1".into();
    let err = PlanFile::from_json(&v.to_string()).unwrap_err().to_string();
    assert!(err.contains("format_version"), "{err}");
    let err = PlanFile::from_json("{\"kind\":\"x\"}").unwrap_err().to_string();
    assert!(err.contains("`kind`"), "{err}");
    let err = PlanFile::from_json("not json").unwrap_err().to_string();
    assert!(err.starts_with("not a harmony plan file"), "{err}");
    let mut v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
    v["actions"][0]["apply"]["action"] = "explode".into();
    let err = PlanFile::from_json(&v.to_string()).unwrap_err().to_string();
    assert!(err.contains("explode"), "{err}");
}
