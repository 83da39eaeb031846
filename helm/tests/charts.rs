//! `helm template` conformance: Helm's own goldens (`helm-template/`) byte for byte, and real
//! public charts (`real-charts/`) document by document, as `../shared/tools/helm-fidelity`
//! compares them. `HELM_VERBOSE=1` lists the differing cases.

mod corpus;

use std::collections::BTreeMap;

use harmony_helm::funcs::FixedEnvironment;
use harmony_helm::release::{TemplateRequest, run_template};

const HELM_TEMPLATE_FLOOR: usize = 24;
const REAL_CHARTS_FLOOR: usize = 35;


fn big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(256 << 20).spawn(f).unwrap().join().unwrap()
}

fn strs(v: &serde_json::Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}

#[test]
fn helm_template_goldens() {
    let Some(base) = corpus::path("helm-template") else { return };
    let text = std::fs::read_to_string(base.join("cases.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let verbose = std::env::var("HELM_VERBOSE").is_ok();
    let (mut ok, mut total) = (0, 0);
    for c in cases {
        let Some(chart) = c["chart"].as_str() else { continue };
        total += 1;
        let req = TemplateRequest {
            name: c["release_name"].as_str().map(String::from),
            chart: base.join(chart),
            namespace: c["namespace"].as_str().map(String::from),
            set: strs(&c["set"]),
            values_files: strs(&c["values_files"]).into_iter().map(|f| base.join(f)).collect(),
            kube_version: c["kube_version"].as_str().map(String::from),
            api_versions: strs(&c["api_versions"]),
            include_crds: c["include_crds"].as_bool().unwrap_or(false),
            show_only: strs(&c["show_only"]),
            skip_tests: c["skip_tests"].as_bool().unwrap_or(false),
            name_template: c["name_template"].as_str().map(String::from),
            debug: c["debug"].as_bool().unwrap_or(false),
            ..Default::default()
        };
        let out = big_stack(move || run_template(&req, &FixedEnvironment::default()));
        let want = std::fs::read_to_string(base.join(c["golden"].as_str().unwrap())).unwrap();
        let good = if c["expect_error"].as_bool().unwrap_or(false) {
            out.code != 0 && format!("{}{}", out.stdout, out.stderr).trim() == want.trim()
        } else {
            out.code == 0 && out.stdout == want
        };
        if good {
            ok += 1;
        } else if verbose {
            println!("differs: {}", c["name"]);
        }
    }
    println!("helm-template goldens: {ok}/{total}");
    assert!(ok >= HELM_TEMPLATE_FLOOR, "helm-template conformance regressed: {ok} < {HELM_TEMPLATE_FLOOR}");
}

fn split_old(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"(?:^|\s*\n)---\s*").unwrap();
    let mut v: Vec<String> = re.split(text).map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect();
    v.sort();
    v
}

#[test]
fn real_charts() {
    let Some(base) = corpus::path("real-charts") else { return };
    let text = std::fs::read_to_string(base.join("cases.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let verbose = std::env::var("HELM_VERBOSE").is_ok();
    let (mut ok, mut total) = (0, 0);
    let re = regex::Regex::new(r"(?m)^---\n# Source: ").unwrap();
    for c in cases {
        total += 1;
        let req = TemplateRequest {
            name: c["release_name"].as_str().map(String::from),
            chart: base.join(c["chart"].as_str().unwrap()),
            namespace: c["namespace"].as_str().map(String::from),
            values_files: c["values_file"].as_str().map(|f| vec![base.join(f)]).unwrap_or_default(),
            kube_version: Some("v1.36.0".into()),
            ..Default::default()
        };
        let out = big_stack(move || run_template(&req, &FixedEnvironment::default()));
        let golden: BTreeMap<String, String> = serde_json::from_str(&std::fs::read_to_string(base.join(c["golden"].as_str().unwrap())).unwrap()).unwrap();
        let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (path, text) in &golden {
            let name = path.rsplit('/').next().unwrap();
            if name.starts_with('_') || name == "NOTES.txt" {
                continue;
            }
            let docs = split_old(text);
            if !docs.is_empty() {
                want.insert(path.clone(), docs);
            }
        }
        let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for block in re.split(&out.stdout) {
            let Some((head, body)) = block.split_once('\n') else { continue };
            if head.is_empty() {
                continue;
            }
            got.entry(head.trim().to_string()).or_default().push(body.trim().to_string());
        }
        for v in got.values_mut() {
            v.retain(|d| !d.is_empty());
            v.sort();
        }
        got.retain(|_, v| !v.is_empty());
        for p in strs(&c["nondeterministic"]) {
            for m in [&mut want, &mut got] {
                if let Some(v) = m.get_mut(&p) {
                    let n = v.len();
                    *v = vec![n.to_string()];
                }
            }
        }
        if out.code == 0 && got == want {
            ok += 1;
        } else if verbose {
            println!("differs: {} {}", c["name"], out.stderr.trim());
        }
    }
    println!("real charts: {ok}/{total}");
    assert!(ok >= REAL_CHARTS_FLOOR, "real-charts conformance regressed: {ok} < {REAL_CHARTS_FLOOR}");
}

/// Expected texts recorded from Helm v4.2.3's engine (helm-python-sdk) for the same inputs.
#[test]
fn schema_errors_match_helm() {
    let Some(chart) = corpus::path("real-charts/charts/external-dns") else { return };
    let cases: [(&[&str], &str); 3] = [
        (&[], "- at '': missing property 'policy'"),
        (&["policy=bogus"], "- at '/policy': value must be one of 'create-only', 'sync', 'upsert-only'"),
        (&["policy=sync", "replicaCount=x"], "- at '/replicaCount': got string, want integer"),
    ];
    for (set, want) in cases {
        let req = TemplateRequest { name: Some("rel".into()), chart: chart.clone(), set: set.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        let out = big_stack(move || run_template(&req, &FixedEnvironment::default()));
        let expected = format!("Error: values don't meet the specifications of the schema(s) in the following chart(s):\nexternal-dns:\n{want}\n\n");
        assert_eq!(out.stderr, expected);
    }
}
