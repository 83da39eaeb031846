//! In-process render time per real chart, for `scripts/bench.py` (which times Helm's engine
//! in-process too, so both sides count chart loading and rendering but no process start-up).
//!
//! `render_timing BASE RUNS` reads `BASE/cases.json` (../shared/conformance/real-charts), takes
//! the first case of each chart, renders it RUNS times with `run_template` (chart loading and
//! values included) and prints one line per chart: `NAME MEDIAN_MS`.

use harmony_helm::funcs::FixedEnvironment;
use harmony_helm::release::{TemplateRequest, run_template};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(base), runs) = (args.get(1), args.get(2).and_then(|r| r.parse().ok()).unwrap_or(7usize)) else {
        eprintln!("usage: render_timing BASE [RUNS]");
        std::process::exit(2);
    };
    let base = std::path::Path::new(base);
    let cases: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(base.join("cases.json")).expect("cases.json")).expect("valid JSON");
    let mut seen = std::collections::BTreeSet::new();
    for c in cases.as_array().expect("a list of cases") {
        let chart = c["chart"].as_str().unwrap_or_default();
        if !seen.insert(chart.to_string()) {
            continue;
        }
        let req = TemplateRequest {
            name: c["release_name"].as_str().map(String::from),
            chart: base.join(chart),
            namespace: Some(c["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or("default").to_string()),
            values_files: c["values_file"].as_str().map(|v| vec![base.join(v)]).unwrap_or_default(),
            kube_version: Some("v1.36.0".into()),
            ..Default::default()
        };
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let out = run_template(&req, &FixedEnvironment::default());
                std::hint::black_box(out);
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!("{} {:.3}", chart.rsplit('/').next().unwrap_or(chart), times[times.len() / 2]);
    }
}
