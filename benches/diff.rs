//! `cargo bench -p harmony --bench diff [-- --devices N --deployments N --releases N --iterations N --keep DIR]`
//!
//! Generates the benchmark repository of `compiler/benches/check.rs` (default: 10,000 devices,
//! 1,000 deployments, 200 releases), commits it in a fresh git repository on `main`, changes one
//! release's values on `feature`, then times the release binary, each as the median of several runs:
//! - `harmony diff --base main --head feature --format markdown` (two `git archive`s);
//! - `harmony diff --base main --format markdown` with `feature` checked out (head = working tree);
//! - `harmony check` for reference.
//!
//! Results are reported in `docs/performance.md`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Shape {
    devices: usize,
    deployments: usize,
    releases: usize,
    iterations: usize,
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

// Same generator as compiler/benches/check.rs.
const SITES: usize = 50;
const TENANTS: usize = 10;

/// Writes the benchmark repository under `root`.
fn generate(root: &Path, s: &Shape) -> std::io::Result<()> {
    let w = |rel: &str, text: String| -> std::io::Result<()> {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap())?;
        std::fs::write(p, text)
    };
    w("harmony.kdl", "repository bench {\n    kube-version \"1.30.0\"\n}\n".into())?;
    let mut t = String::new();
    for i in 0..TENANTS {
        t += &format!("tenant t{i} {{\n    namespaces t{i} \"t{i}-*\"\n    service-account deployer\n}}\n\n");
    }
    w("tenants.kdl", t)?;
    let mut c = String::new();
    for i in 0..4 {
        c += &format!("cluster c{i} {{\n    context \"ctx-{i}\"\n    labels env=prod region=r{i}\n}}\n\n");
    }
    w("clusters.kdl", c)?;
    w("charts/app/Chart.yaml", "apiVersion: v2\nname: app\nversion: 1.2.3\n".into())?;
    w("charts/app/values.yaml", "replicaCount: 1\nimage:\n  repository: registry.example/app\n  tag: \"1.0\"\nresources: {}\n".into())?;
    w(
        "charts/app/values.schema.json",
        r#"{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","required":["replicaCount","image"],"properties":{"replicaCount":{"type":"integer","minimum":1},"image":{"type":"object","required":["repository","tag"],"properties":{"repository":{"type":"string"},"tag":{"type":"string"}}}}}"#.into(),
    )?;
    w("charts/app/templates/deployment.yaml", "kind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n".into())?;
    w("keys/edge.pub", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n".into())?;
    let per_file = 20;
    for f in 0..s.releases.div_ceil(per_file) {
        let mut r = String::new();
        for i in f * per_file..((f + 1) * per_file).min(s.releases) {
            let tenant = i % TENANTS;
            r += &format!(
                "release rel-{i} {{\n    tenant t{tenant}\n    cluster c{}\n    namespace t{tenant}-app{}\n    chart \"../charts/app\"\n    version \"1.2.3\"\n    values {{\n        replicaCount {}\n        image {{\n            tag \"1.{i}\"\n        }}\n        env {{\n            LOG_LEVEL info\n        }}\n    }}\n{}}}\n\n",
                i % 4,
                i % 7,
                1 + i % 3,
                if i % per_file > 0 { format!("    needs rel-{}\n", i - 1) } else { String::new() }
            );
        }
        w(&format!("releases/releases-{f:02}.kdl"), r)?;
    }
    w(
        "fleets.kdl",
        format!(
            "fleet edge {{\n    nats \"nats://127.0.0.1:4222\"\n    agent-version \"0.1.0\"\n    signing-key \"keys/edge.pub\"\n    tenants {}\n}}\n",
            (0..TENANTS).map(|i| format!("t{i}")).collect::<Vec<_>>().join(" ")
        ),
    )?;
    let per_file = 400;
    for f in 0..s.devices.div_ceil(per_file) {
        let mut d = String::new();
        for i in f * per_file..((f + 1) * per_file).min(s.devices) {
            d += &format!(
                "device dev-{i:05} {{\n    fleet edge\n    labels site=s{} arch={} tier={} rack=r{}\n}}\n\n",
                (i * 7) % SITES,
                if i % 3 == 0 { "amd64" } else { "arm64" },
                if i % 10 == 0 { "canary" } else { "stable" },
                i % 10
            );
        }
        w(&format!("devices/devices-{f:02}.kdl"), d)?;
    }
    let per_file = 50;
    for f in 0..s.deployments.div_ceil(per_file) {
        let mut d = String::new();
        for i in f * per_file..((f + 1) * per_file).min(s.deployments) {
            let init = if i % 5 == 0 {
                format!(
                    "    init-container migrate {{\n        image \"registry.example/t{}/migrate:{i}.0\"\n        args \"--up\"\n        timeout \"2m\"\n    }}\n",
                    i % TENANTS
                )
            } else {
                String::new()
            };
            d += &format!(
                "deployment app-{i:04} {{\n    tenant t{t}\n    fleet edge\n    selector site=s{site} {{\n        in arch arm64 amd64\n        not-in tier retired\n    }}\n{init}    container main {{\n        image \"registry.example/t{t}/app-{i}:1.0\"\n        env LOG_LEVEL=info MODE=edge\n        port {port}\n        volume \"/var/lib/app-{i}:/data\"\n    }}\n    container sidecar {{\n        image \"registry.example/shared/sidecar:2.1\"\n        args \"--metrics\"\n    }}\n    rollout {{\n        step 10\n        step 100\n        max-failed 1\n        health-timeout \"2m\"\n    }}\n}}\n\n",
                t = i % TENANTS,
                site = i % SITES,
                port = 8000 + i % 1000,
            );
        }
        w(&format!("deployments/deployments-{f:02}.kdl"), d)?;
    }
    Ok(())
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn run(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_harmony"))
        .args(args)
        .current_dir(dir)
        .env("HARMONY_FINGERPRINT_KEY_FILE", dir.join("../key.hex"))
        .output()
        .expect("harmony");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(iterations: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..iterations)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let shape = Shape {
        devices: arg(&args, "--devices", 10_000),
        deployments: arg(&args, "--deployments", 1_000),
        releases: arg(&args, "--releases", 200),
        iterations: arg(&args, "--iterations", 5),
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    // `--keep DIR`: generate there and leave it, for profiling.
    let base = args.iter().position(|a| a == "--keep").and_then(|i| args.get(i + 1)).map(std::path::PathBuf::from).unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("key.hex"), "42".repeat(32)).unwrap();
    let dir = base.join("repo");
    generate(&dir, &shape).expect("generate repository");
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "generated"]);
    git(&dir, &["checkout", "-q", "-b", "feature"]);
    let rel = dir.join("releases/releases-00.kdl");
    let text = std::fs::read_to_string(&rel).unwrap();
    std::fs::write(&rel, text.replacen("tag \"1.7\"", "tag \"1.7.1\"", 1)).unwrap();
    git(&dir, &["commit", "-q", "-am", "bump rel-7"]);

    let (code, out) = run(&dir, &["diff", "--base", "main", "--head", "feature", "--format", "human", "--compact", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("Plan: 0 to add, 1 to change, 0 to destroy.") && out.contains("release/c3/t7-app0/rel-7"), "{out}");
    let revs = time(shape.iterations, || assert_eq!(run(&dir, &["diff", "--base", "main", "--head", "feature", "--format", "markdown"]).0, 0));
    let tree = time(shape.iterations, || assert_eq!(run(&dir, &["diff", "--base", "main", "--format", "markdown"]).0, 0));
    let check = time(shape.iterations, || assert_eq!(run(&dir, &["check", "--quiet"]).0, 0));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("repository: {} devices, {} deployments, {} releases; one release changed", shape.devices, shape.deployments, shape.releases);
    println!("harmony diff --base main --head feature: {:8.1} ms", ms(revs));
    println!("harmony diff --base main (working tree): {:8.1} ms", ms(tree));
    println!("harmony check (reference):               {:8.1} ms", ms(check));
    println!("median of {} runs, whole processes", shape.iterations);
}
