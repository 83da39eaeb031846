//! Differential check against Helm's own engine: thousands of generated snippets (`printf`
//! verbs, mixed-kind arithmetic and comparisons, dict/list functions, codecs, defaults, string
//! and regex functions, semver, dates, control flow, `tpl`/`include`) rendered one by one by
//! Helm v4.2.3 (see `tests/data/functions-differential/README.md`), output or error text.
//!
//! `HELM_DIFF_CASES=<substring>` filters by id; `HELM_VERBOSE=1` prints the differences.

use std::collections::BTreeMap;

mod common;

use harmony_helm::funcs::FixedEnvironment;
use harmony_helm::value::Value;
use harmony_helm::{RenderTemplate, render};

/// Cases identical to Helm's output (ratchet: raise it as fixes land, never lower it).
const FLOOR: usize = 12271;

const TNAME: &str = "diff/templates/c.txt";

fn scope(values: Value) -> Value {
    common::scope(values, BTreeMap::new(), "diff")
}

#[test]
fn functions_match_helm() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/functions-differential");
    let values: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("values.json")).unwrap()).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let filter = std::env::var("HELM_DIFF_CASES").ok();
    let verbose = std::env::var("HELM_VERBOSE").is_ok();
    let env = FixedEnvironment::default();
    let mut per_area: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut passed, mut total) = (0, 0);
    for c in &cases {
        let id = c["id"].as_str().unwrap();
        if filter.as_deref().is_some_and(|f| !id.contains(f)) {
            continue;
        }
        total += 1;
        let text = c["template"].as_str().unwrap();
        // fresh values per case: `set`, `merge`… mutate maps, and Helm renders each case anew
        let vals = scope(harmony_helm::json::from_serde(&values));
        let tpls = [RenderTemplate { name: TNAME.into(), text: text.into(), vals, base_path: "diff/templates".into() }];
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| render(&tpls, &env)));
        let got = match result {
            Err(_) => "PANIC".to_string(),
            Ok(Ok(out)) => out.get(TNAME).cloned().unwrap_or_default(),
            Ok(Err(e)) => format!("ERROR: {}", e.message.replace(TNAME, "@TEMPLATE@")),
        };
        let want = match c.get("output").and_then(|o| o.as_str()) {
            Some(o) => o.to_string(),
            None => format!("ERROR: {}", c["error"].as_str().unwrap_or("")),
        };
        let area = id.rsplit_once('-').map_or(id, |(a, _)| a);
        let e = per_area.entry(area.to_string()).or_default();
        e.1 += 1;
        if got == want {
            e.0 += 1;
            passed += 1;
        } else if verbose {
            println!("FAIL {id}\n  template: {text:?}\n  want: {want:?}\n  got:  {got:?}");
        }
    }
    for (area, (p, t)) in &per_area {
        println!("{area:10} {p:5} / {t:5}");
    }
    println!("{:10} {passed:5} / {total:5}", "total");
    if filter.is_none() {
        assert!(passed >= FLOOR, "functions differential regressed: {passed} < {FLOOR} identical to Helm");
    }
}
