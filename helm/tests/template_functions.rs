//! Runs every case of `../shared/conformance/template-functions/cases.json` through the
//! engine and compares with Helm's output or error.
//!
//! `HELM_CASES=<substring>` filters by id or category; `HELM_VERBOSE=1` prints failures.

mod corpus;

use std::collections::BTreeMap;

mod common;

use harmony_helm::funcs::FixedEnvironment;
use harmony_helm::{RenderTemplate, render};

/// Regressions fail the test: raise this as the pass count grows.
const FLOOR: usize = 3190;


#[test]
fn template_functions_conformance() {
    let Some(path) = corpus::path("template-functions/cases.json") else { return };
    let text = std::fs::read_to_string(&path).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let filter = std::env::var("HELM_CASES").ok();
    let verbose = std::env::var("HELM_VERBOSE").is_ok();
    let mut per_cat: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut passed = 0;
    let mut total = 0;
    for c in &cases {
        let id = c["id"].as_str().unwrap();
        let cat = c["category"].as_str().unwrap();
        if let Some(f) = &filter
            && !id.contains(f.as_str())
            && cat != f
        {
            continue;
        }
        total += 1;
        let tname = c["template_name"].as_str().unwrap().to_string();
        let values = harmony_helm::json::from_serde(&c["values"]);
        let mut files = BTreeMap::new();
        if let Some(fs) = c.get("files").and_then(|f| f.as_object()) {
            for (k, v) in fs {
                files.insert(k.clone(), v.as_str().unwrap_or("").as_bytes().to_vec());
            }
        }
        let vals = common::scope(values, files, "conformance");
        let mut tpls = vec![RenderTemplate {
            name: tname.clone(),
            text: c["template"].as_str().unwrap().into(),
            vals: vals.clone(),
            base_path: "conformance/templates".into(),
        }];
        if let Some(ps) = c.get("partials").and_then(|p| p.as_object()) {
            for (k, v) in ps {
                tpls.push(RenderTemplate {
                    name: format!("conformance/templates/{k}"),
                    text: v.as_str().unwrap().into(),
                    vals: vals.clone(),
                    base_path: "conformance/templates".into(),
                });
            }
        }
        let env = FixedEnvironment::default();
        let tn = tname.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| render(&tpls, &env)));
        let (ok, got) = match result {
            Err(_) => (false, "PANIC".to_string()),
            Ok(Ok(out)) => {
                let got = out.get(&tn).cloned().unwrap_or_default();
                (c.get("output").and_then(|o| o.as_str()) == Some(got.as_str()), got)
            }
            Ok(Err(e)) => {
                let msg = e.message.replace(&tn, "@TEMPLATE@");
                (c.get("error").and_then(|o| o.as_str()) == Some(msg.as_str()), format!("ERROR: {msg}"))
            }
        };
        let e = per_cat.entry(cat.to_string()).or_default();
        e.1 += 1;
        if ok {
            e.0 += 1;
            passed += 1;
        } else if verbose {
            let want = c.get("output").and_then(|o| o.as_str()).map(String::from).unwrap_or_else(|| format!("ERROR: {}", c["error"].as_str().unwrap_or("")));
            println!("FAIL {id}\n  template: {:?}\n  want: {:?}\n  got:  {:?}", c["template"].as_str().unwrap(), want, got);
        }
    }
    for (cat, (p, t)) in &per_cat {
        println!("{cat:12} {p:5} / {t:5}");
    }
    println!("{:12} {passed:5} / {total:5}", "total");
    if filter.is_none() {
        assert!(passed >= FLOOR, "template-functions conformance regressed: {passed} < {FLOOR}");
    }
}
