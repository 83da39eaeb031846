//! Helpers shared by the end-to-end tests (each test file includes this with `mod common;`).
#![allow(dead_code)]

pub mod fleet;
pub mod lease;
pub mod repo;
pub mod secrets;
pub mod tenants;

use std::path::Path;

/// A finished run of the `harmony` binary.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(self.code, code, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr);
        self
    }
}

/// Copies a directory tree (the example repository, into a temporary directory).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The outcome `harmony apply --format json` printed, checked as JSON Lines: one object per unit
/// as it finished (following docs/schemas/apply-unit.schema.json, each unit exactly once, the
/// same result as the outcome lists), then the outcome (following
/// docs/schemas/apply-outcome.schema.json) as the last line. Panics naming what is wrong.
pub fn apply_outcome(stdout: &[u8]) -> serde_json::Value {
    use serde_json::Value;
    let text = String::from_utf8_lossy(stdout);
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\nin:\n{text}")))
        .collect();
    let outcome = lines.pop().unwrap_or_else(|| panic!("apply printed nothing on stdout"));
    let schema: Value = serde_json::from_str(&harmony_schemas::plan::apply_outcome_schema_json()).unwrap();
    assert!(jsonschema::is_valid(&schema, &outcome), "the last line does not follow the outcome's schema: {outcome:#}");
    assert_eq!(outcome["kind"], "harmony-apply-outcome", "{outcome:#}");
    let unit_schema: Value = serde_json::from_str(&harmony_schemas::plan::apply_unit_schema_json()).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for line in &lines {
        assert!(jsonschema::is_valid(&unit_schema, line), "a unit line does not follow its schema: {line:#}");
        assert_eq!(line["kind"], "harmony-apply-unit", "{line:#}");
        let unit = line["unit"].as_str().unwrap().to_string();
        assert!(seen.insert(unit.clone()), "{unit} was reported twice:\n{text}");
        let listed = outcome["actions"].as_array().unwrap().iter().find(|a| a["unit"] == unit.as_str()).unwrap_or_else(|| panic!("{unit} is not in the outcome"));
        let mut streamed = line.clone();
        let o = streamed.as_object_mut().unwrap();
        for k in ["kind", "format_version", "elapsed_ms"] {
            o.remove(k);
        }
        assert_eq!(&streamed, listed, "{unit}: the streamed result is not the outcome's");
    }
    assert_eq!(seen.len(), outcome["actions"].as_array().unwrap().len(), "not every unit had its line:\n{text}");
    outcome
}
