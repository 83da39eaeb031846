//! The benchmark repository generator, shared by `compiler/benches/check.rs` and
//! `benches/diff.rs` (included with `#[path]`): tenants, clusters, charts with values files,
//! releases, a fleet, devices over 50 sites and deployments selecting them.

use std::path::Path;

pub struct Shape {
    pub devices: usize,
    /// Clusters the releases are spread over (round robin), contexts `ctx-<i>`.
    pub clusters: usize,
    pub deployments: usize,
    pub releases: usize,
    pub iterations: usize,
}

pub fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

const SITES: usize = 50;
const TENANTS: usize = 10;

/// Writes the benchmark repository under `root`.
pub fn generate(root: &Path, s: &Shape) -> std::io::Result<()> {
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
    for i in 0..s.clusters {
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
                i % s.clusters,
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
                "deployment app-{i:04} {{\n    tenant t{t}\n    fleet edge\n    selector site=s{site} {{\n        in arch arm64 amd64\n        not-in tier retired\n    }}\n{init}    container main {{\n        image \"registry.example/t{t}/app-{i}:1.0\"\n        env LOG_LEVEL=info MODE=edge\n        port {port}\n        volume \"/var/lib/harmony/data/t{t}/app-{i}:/data\"\n    }}\n    container sidecar {{\n        image \"registry.example/shared/sidecar:2.1\"\n        args \"--metrics\"\n    }}\n    rollout {{\n        step 10\n        step 100\n        max-failed 1\n        health-timeout \"2m\"\n    }}\n}}\n\n",
                t = i % TENANTS,
                site = i % SITES,
                port = 8000 + i % 1000,
            );
        }
        w(&format!("deployments/deployments-{f:02}.kdl"), d)?;
    }
    Ok(())
}

impl Shape {
    /// From `--devices N --deployments N --releases N --iterations N` (defaults: the 10,000-device
    /// repository, `iterations` runs).
    pub fn from_args(args: &[String], iterations: usize) -> Shape {
        Shape {
            devices: arg(args, "--devices", 10_000),
            clusters: arg(args, "--clusters", 4),
            deployments: arg(args, "--deployments", 1_000),
            releases: arg(args, "--releases", 200),
            iterations: arg(args, "--iterations", iterations),
        }
    }
}

/// The median of some timings.
pub fn median(mut v: Vec<std::time::Duration>) -> std::time::Duration {
    v.sort();
    v[v.len() / 2]
}
