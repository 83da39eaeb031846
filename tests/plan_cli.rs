//! End-to-end tests of `harmony plan`, `harmony show` and `harmony diff --base` on copies of
//! the example repository, `diff` in real git repositories made by the test (fixed dates, so
//! commit ids and snapshots are stable).

use std::path::{Path, PathBuf};
use std::process::Command;

const KEY: &str = "4242424242424242424242424242424242424242424242424242424242424242\n";
const DB_PASSWORD: &str = "Xy9-shop-db-secret!";

struct Work {
    dir: tempfile::TempDir,
}

mod common;
use common::Out;
use common::copy_dir as copy;

impl Work {
    fn new() -> Work {
        let dir = tempfile::tempdir().unwrap();
        copy(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants"), &dir.path().join("tenants"));
        std::fs::write(dir.path().join("key.hex"), KEY).unwrap();
        Work { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.path(rel)).unwrap();
        assert!(text.contains(from), "{rel} does not contain {from:?}");
        std::fs::write(self.path(rel), text.replacen(from, to, 1)).unwrap();
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let out = Command::new(env!("CARGO_BIN_EXE_harmony"))
            .args(["--repo", "tenants"])
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("HARMONY_REPO")
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .env_remove("ACME_SHOP_DB_PASSWORD")
            .env("HARMONY_FINGERPRINT_KEY_FILE", self.path("key.hex"))
            .envs(env.iter().copied())
            .output()
            .expect("run harmony");
        let p = self.dir.path().to_string_lossy().into_owned();
        let f = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap().replace(&p, "[TEMP]");
        Out { code: out.status.code().unwrap(), stdout: f(&out.stdout), stderr: f(&out.stderr) }
    }

    /// What `plan --offline` prints in every format, saves, and `show` prints back (the human
    /// plan first).
    fn every_plan_output(&self, env: &[(&str, &str)]) -> Vec<String> {
        let mut texts = Vec::new();
        for format in ["human", "markdown", "json"] {
            let out = self.run_env(&["plan", "--offline", "--format", format, "--out", &format!("{format}.plan")], env).expect(0);
            texts.push(out.stdout);
            texts.push(out.stderr);
            texts.push(std::fs::read_to_string(self.path(&format!("{format}.plan"))).unwrap());
            texts.push(self.run(&["show", &format!("{format}.plan"), "--format", format]).expect(0).stdout);
        }
        texts
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(self.dir.path())
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("run git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

#[test]
fn plan_without_observed_state_creates_everything_and_saves_a_plan() {
    let w = Work::new();
    let out = w.run(&["plan", "--offline", "--detailed-exitcode", "--compact", "--out", "plan.json"]).expect(2);
    assert!(out.stdout.contains("against no observed state (--offline: every unit is planned as a create"), "{}", out.stdout);
    assert!(out.stdout.contains("Plan: 25 to add, 0 to change, 0 to destroy."), "{}", out.stdout);
    assert!(out.stderr.contains("Saved the plan to plan.json"), "{}", out.stderr);
    w.run(&["plan", "--offline"]).expect(0);
    // show prints the same plan again, in every format.
    let shown = w.run(&["show", "plan.json", "--compact"]).expect(0);
    assert_eq!(shown.stdout, out.stdout);
    let json = w.run(&["show", "plan.json", "--format", "json"]).expect(0);
    assert_eq!(json.stdout, std::fs::read_to_string(w.path("plan.json")).unwrap());
    // Same inputs, byte-identical plan file.
    w.run(&["plan", "--offline", "--out", "again.json", "--format", "json"]).expect(0);
    assert_eq!(std::fs::read(w.path("plan.json")).unwrap(), std::fs::read(w.path("again.json")).unwrap());
    // Targets pull in dependencies.
    let t = w.run(&["plan", "--offline", "--compact", "--target", "release/okd-prod/acme-prod/shop-api"]).expect(0);
    assert!(t.stdout.contains("Plan: 3 to add"), "{}", t.stdout);
    let bad = w.run(&["plan", "--offline", "--target", "release/nope"]).expect(1);
    assert!(bad.stderr.contains("--target release/nope: no unit matches"), "{}", bad.stderr);
}

#[test]
fn show_refuses_other_plan_format_versions() {
    let w = Work::new();
    w.run(&["plan", "--offline", "--out", "plan.json", "--format", "json"]).expect(0);
    let text = std::fs::read_to_string(w.path("plan.json")).unwrap();
    std::fs::write(w.path("future.json"), text.replacen("\"format_version\": 4", "\"format_version\": 99", 1)).unwrap();
    let out = w.run(&["show", "future.json"]).expect(1);
    assert!(out.stderr.contains("plan file format version 99 is not supported: this harmony reads version 4 only"), "{}", out.stderr);
}

#[test]
fn plan_against_observed_state_prunes_and_exits_2() {
    let w = Work::new();
    let observed = r#"{
        "releases": {
            "release/okd-prod/acme-prod/legacy": {"revision": 4, "resource_version": "991", "hash": "sha256:x",
                "objects": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "legacy"}, "data": {"a": "b"}}]}
        }
    }"#;
    std::fs::write(w.path("observed.json"), observed).unwrap();
    let out = w.run_env(&["plan", "--observed", "observed.json", "--detailed-exitcode"], &[("ACME_SHOP_DB_PASSWORD", "observed-pw")]).expect(2);
    assert!(out.stdout.contains("Plan: 25 to add, 0 to change, 1 to destroy."), "{}", out.stdout);
    let first_unit = out.stdout.lines().find(|l| l.starts_with("  ")).unwrap();
    assert!(first_unit.contains("- release/okd-prod/acme-prod/legacy delete"), "{first_unit}");
    assert!(out.stdout.contains("planned against Helm revision 4, release record resourceVersion 991"));
    std::fs::write(w.path("bad.json"), r#"{"releases": 3}"#).unwrap();
    let out = w.run(&["plan", "--observed", "bad.json"]).expect(1);
    assert!(out.stderr.contains("observed state bad.json: not valid"), "{}", out.stderr);
}

#[test]
fn no_output_contains_a_secret_plaintext() {
    use base64::Engine as _;
    let w = Work::new();
    let env = [("ACME_SHOP_DB_PASSWORD", DB_PASSWORD)];
    let texts = w.every_plan_output(&env);
    let b64 = base64::engine::general_purpose::STANDARD.encode(DB_PASSWORD);
    for t in &texts {
        assert!(!t.contains(DB_PASSWORD) && !t.contains(&b64), "plaintext leaked:\n{t}");
    }
    // The secret is there as a fingerprint, and resolving it changes the fingerprint.
    assert!(texts[0].contains("secret-value auth.password from env:ACME_SHOP_DB_PASSWORD: added (none → fp:"), "{}", texts[0]);
    let unresolved = w.run(&["plan", "--offline"]).expect(0).stdout;
    assert!(unresolved.contains("secret-value auth.password from env:ACME_SHOP_DB_PASSWORD: unresolved until apply"), "{unresolved}");
}

/// A git repository holding the example repository under `tenants/`: `main` as it is, and
/// `feature` with a renamed file, a deleted release, a changed release and a changed deployment.
fn git_repo() -> Work {
    let w = Work::new();
    w.git(&["init", "-q", "-b", "main"]);
    std::fs::write(w.path(".gitignore"), "key.hex\n").unwrap();
    w.git(&["add", "-A"]);
    w.git(&["commit", "-q", "-m", "example repository"]);
    w.git(&["checkout", "-q", "-b", "feature"]);
    w.git(&["mv", "tenants/releases/globex.kdl", "tenants/releases/globex-portal.kdl"]);
    let text = std::fs::read_to_string(w.path("tenants/releases/globex-portal.kdl")).unwrap();
    let cut = text.find("release portal {").unwrap();
    std::fs::write(w.path("tenants/releases/globex-portal.kdl"), &text[..cut]).unwrap();
    w.edit("tenants/releases/acme.kdl", "replicaCount 3", "replicaCount 4");
    w.git(&["commit", "-q", "-am", "rename globex.kdl, drop portal, scale shop-web"]);
    w.git(&["checkout", "-q", "main"]);
    w
}

#[test]
fn diff_between_two_revisions() {
    let w = git_repo();
    let out = w.run(&["diff", "--base", "main", "--head", "feature", "--detailed-exitcode"]).expect(2);
    let md = &out.stdout;
    assert!(md.starts_with("### Harmony plan\n\n**Plan: 0 to add, 1 to change, 1 to destroy.**"), "{md}");
    assert!(md.contains("<code>- release/okd-prod/globex/portal</code> delete"), "{md}");
    assert!(md.contains("<code>~ release/okd-prod/acme-prod/shop-web</code> update"), "{md}");
    assert!(md.contains("-  replicas: 3\n+  replicas: 4"), "{md}");
    // The renamed file changes nothing: portal-api is the same unit.
    assert!(!md.contains("portal-api"), "{md}");
    // Commit ids change with any byte of the example repository: keep them out of snapshots.
    let ids = |t: &str| {
        let (m, f) = (w.git(&["rev-parse", "main"]), w.git(&["rev-parse", "feature"]));
        t.replace(&m[..12], "[MAIN]").replace(&f[..12], "[FEATURE]")
    };
    assert!(ids(md).contains("Source [FEATURE], against base revision main ([MAIN])."), "{md}");
    insta::assert_snapshot!("diff_main_feature_markdown", ids(md));
    let human = w.run(&["diff", "--base", "main", "--head", "feature", "--format", "human", "--compact"]).expect(0);
    insta::assert_snapshot!("diff_main_feature_human_compact", ids(&human.stdout));
    let json = w.run(&["diff", "--base", "main", "--head", "feature", "--format", "json"]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["observed"]["kind"], "revision");
    assert_eq!(v["actions"][0]["unit"], "release/okd-prod/globex/portal");
    // No changes between a revision and itself.
    let same = w.run(&["diff", "--base", "main", "--head", "main", "--detailed-exitcode", "--format", "human"]).expect(0);
    assert!(same.stdout.contains("No changes"), "{}", same.stdout);
    let bad = w.run(&["diff", "--base", "no-such-branch"]).expect(1);
    assert!(bad.stderr.contains("no-such-branch: not a git revision"), "{}", bad.stderr);
}

#[test]
fn diff_against_the_working_tree() {
    let w = git_repo();
    w.git(&["checkout", "-q", "feature"]);
    // Uncommitted: a device workload's image changes.
    let dep = std::fs::read_dir(w.path("tenants/deployments")).unwrap().next().unwrap().unwrap().path();
    let text = std::fs::read_to_string(&dep).unwrap();
    let at = text.find("image \"").unwrap() + "image \"".len();
    let end = at + text[at..].find('"').unwrap();
    let new = format!("{}{}-next{}", &text[..at], &text[at..end], &text[end..]);
    std::fs::write(&dep, new).unwrap();
    let out = w.run(&["diff", "--base", "main", "--format", "human", "--compact"]).expect(0);
    assert!(out.stdout.contains("(with uncommitted changes)"), "{}", out.stdout);
    assert!(out.stdout.contains("~ device-plan/"), "{}", out.stdout);
    assert!(out.stdout.contains("- release/okd-prod/globex/portal"), "{}", out.stdout);
    let full = w.run(&["diff", "--base", "main", "--format", "human"]).expect(0);
    assert!(full.stdout.contains("-next"), "{}", full.stdout);
}

#[test]
fn template_a_declared_release() {
    let w = Work::new();
    let out = w.run(&["template", "--release", "shop-db"]).expect(0);
    assert!(out.stdout.starts_with("---\n# Source: postgres/templates/secret.yaml\n"), "{}", out.stdout);
    assert!(out.stdout.contains("namespace: acme-prod") || out.stdout.contains("name: shop-db-postgres"), "{}", out.stdout);
    let bad = w.run(&["template", "--release", "nope"]).expect(1);
    assert!(bad.stderr.contains("--release nope: no such release; declared releases: "), "{}", bad.stderr);
}

// --- Issue 20, items 14 and 15: a tenant's chart attacks the machine that plans it. ---

/// What a run under limits ended with: `None` when it was killed (out of time or memory).
struct Limited {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    secs: f64,
}

impl Work {
    /// `harmony plan --offline` with at most 4 GiB of address space and 120 s (an attack
    /// that exhausts either is killed, as a CI runner would be).
    fn plan_limited(&self, env: &[(&str, &str)]) -> Limited {
        let start = std::time::Instant::now();
        let out = Command::new("timeout")
            .args(["-s", "KILL", "120", "sh", "-c", "ulimit -v 4194304; exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_harmony"))
            .args(["--repo", "tenants", "plan", "--offline"])
            .current_dir(self.dir.path())
            .env_remove("HARMONY_REPO")
            .env_remove("ACME_SHOP_DB_PASSWORD")
            .env("HARMONY_FINGERPRINT_KEY_FILE", self.path("key.hex"))
            .envs(env.iter().copied())
            .output()
            .expect("run harmony");
        let f = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Limited { code: out.status.code(), stdout: f(&out.stdout), stderr: f(&out.stderr), secs: start.elapsed().as_secs_f64() }
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

impl Limited {
    /// The ends of what the run printed, for assertion messages.
    fn shown(&self) -> String {
        let end = |s: &str| if s.len() > 3000 { format!("…{}", &s[s.floor_char_boundary(s.len() - 3000)..]) } else { s.to_string() };
        format!("exit {:?} after {:.1}s\n--- stdout\n{}\n--- stderr\n{}", self.code, self.secs, end(&self.stdout), end(&self.stderr))
    }
}

/// Nine levels of nine aliases: 9^9 (387 million) strings from a 700-byte document.
fn billion_laughs(key: &str) -> String {
    let mut y = String::from("l0: &l0 \"lol\"\n");
    for i in 1..=9 {
        y.push_str(&format!("l{i}: &l{i} [{}]\n", vec![format!("*l{}", i - 1); 9].join(", ")));
    }
    y.push_str(&format!("{key}: *l9\n"));
    y
}

const CONFIGMAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: attack\ndata:\n";

#[test]
fn attack_billion_laughs_in_chart_files_and_through_fromyaml() {
    // Each is a tenant's chart the operator plans; go-yaml's alias limit (Helm's YAML
    // library since CVE-2019-11253) stops each.
    let cases: [(&str, &str); 4] = [
        ("subchart values.yaml", "tenants/charts/postgres/charts/lol/values.yaml"),
        ("subchart Chart.yaml", "tenants/charts/postgres/charts/lol/Chart.yaml"),
        ("fromYaml", "{{ .Files.Get \"lol.yaml\" | fromYaml | toJson | quote }}"),
        ("fromYamlArray", "{{ .Files.Get \"lol-list.yaml\" | fromYamlArray | toJson | quote }}"),
    ];
    for (what, at) in cases {
        let w = Work::new();
        let chart = "tenants/charts/postgres";
        match what {
            "subchart values.yaml" => {
                w.write(&format!("{chart}/charts/lol/Chart.yaml"), "apiVersion: v2\nname: lol\nversion: 0.1.0\n");
                w.write(at, &billion_laughs("laughs"));
            }
            "subchart Chart.yaml" => w.write(at, &format!("apiVersion: v2\nname: lol\nversion: 0.1.0\n{}", billion_laughs("laughs"))),
            _ => {
                w.write(&format!("{chart}/lol.yaml"), &billion_laughs("laughs"));
                w.write(&format!("{chart}/lol-list.yaml"), &format!("- {}", billion_laughs("laughs").replace('\n', "\n  ")));
                w.write(&format!("{chart}/templates/attack.yaml"), &format!("{CONFIGMAP}  laughs: {at}\n"));
            }
        }
        let out = w.plan_limited(&[]);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(all.contains("document contains excessive aliasing"), "{what}: {}", out.shown());
        if what.starts_with("subchart") {
            // The chart cannot be loaded; the error names the file.
            let file = at.rsplit('/').next().unwrap();
            assert_eq!(out.code, Some(1), "{what}: {}", out.shown());
            assert!(out.stderr.contains(&format!("cannot load {file}: error converting YAML to JSON: yaml: document contains excessive aliasing")), "{what}: {}", out.shown());
        } else {
            // As in Helm, fromYaml does not fail: the error is in its result.
            assert_eq!(out.code, Some(0), "{what}: {}", out.shown());
        }
        assert!(out.secs < 30.0, "{what}: {}", out.shown());
    }
}

#[test]
fn attack_unbounded_template_work() {
    // A trillion iterations; gigabytes from `repeat`, `indent`, `printf` widths; an include
    // that calls itself twice; a list that holds itself doubled sixty times, serialised.
    let glob = format!("{{{{ .Files.Glob \"{}b\" }}}}", "**a".repeat(20));
    let cases: [(&str, &str, &str); 8] = [
        ("range over an int", "{{ range $i := 1000000000000 }}{{ end }}", "template steps"),
        ("repeat in a range", "{{ range until 1000 }}{{ repeat 50000000 \"x\" }}{{ end }}", "MiB of template output"),
        ("repeat 1000000000", "{{ repeat 1000000000 \"x\" }}", "MiB of template output"),
        ("indent", "{{ indent 10000000 (repeat 100000 \"\\n\") }}", "MiB of template output"),
        // 2^40 includes, each well within Helm's recursion limit
        ("a template including itself twice", "{{ define \"twice\" }}{{ if lt (len .) 40 }}{{ include \"twice\" (print . \"x\") }}{{ include \"twice\" (print . \"x\") }}{{ end }}{{ end }}{{ include \"twice\" \"\" }}", "render limit"),
        ("a list holding itself twice, 60 times", "{{ $l := list \"x\" }}{{ range until 60 }}{{ $l = list $l $l }}{{ end }}{{ toJson $l }}", "MiB of template output"),
        // Go's fmt refuses widths over 10^6: `%!(NOVERB)`, as Helm prints.
        ("printf width", "{{ printf \"%999999999d\" 1 }}", "stdout:%!(NOVERB)"),
        // 20 wildcards against a 100-letter file name: C(100, 20) ways to try, unless failures
        // are remembered
        ("a glob pattern", &glob, "stdout:map[]"),
    ];
    for (what, tpl, limit) in cases {
        let w = Work::new();
        w.write("tenants/charts/postgres/templates/attack.yaml", &format!("{CONFIGMAP}  attack: |\n    {tpl}\n"));
        w.write(&format!("tenants/charts/postgres/files/{}", "a".repeat(100)), "");
        let out = w.plan_limited(&[]);
        assert!(out.secs < 60.0, "{what}: {}", out.shown());
        if let Some(printed) = limit.strip_prefix("stdout:") {
            assert_eq!(out.code, Some(0), "{what}: {}", out.shown());
            assert!(out.stdout.contains(printed), "{what}: {}", out.shown());
            continue;
        }
        assert_eq!(out.code, Some(1), "{what}: {}", out.shown());
        // The error names the template and the limit.
        assert!(out.stderr.contains("postgres/templates/attack.yaml"), "{what}: {}", out.shown());
        assert!(out.stderr.contains("render limit exceeded: more than") && out.stderr.contains(limit), "{what}: {}", out.shown());
    }
}

/// `DB_PASSWORD` as charts transform it.
fn transformed_passwords(p: &str) -> Vec<String> {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let title: String = p.split('-').map(|w| w[..1].to_uppercase() + &w[1..]).collect::<Vec<_>>().join("-");
    vec![p.to_uppercase(), p.to_lowercase(), title, p.replace('-', "_"), b64(&b64(p)), p.chars().rev().collect()]
}

const LEAKS: &str = "  upper: {{ .Values.auth.password | upper | quote }}
  lower: {{ .Values.auth.password | lower | quote }}
  title: {{ .Values.auth.password | title | quote }}
  replace: {{ .Values.auth.password | replace \"-\" \"_\" | quote }}
  b64twice: {{ .Values.auth.password | b64enc | b64enc | quote }}
  printf: {{ printf \"%s-%s\" (.Values.auth.password | upper) .Values.auth.username | quote }}
  trim: {{ printf \"  %s  \" (.Values.auth.password | lower) | trim | quote }}
  reversed: {{ .Values.auth.password | splitList \"\" | reverse | join \"\" | quote }}
  config: |
    user = {{ .Values.auth.username }}
    password = {{ .Values.auth.password | upper }}
  checksum: {{ .Values.auth.password | sha256sum }}
";

#[test]
fn attack_plan_prints_a_transformed_secret() {
    let w = Work::new();
    w.write("tenants/charts/postgres/templates/attack.yaml", &format!("{CONFIGMAP}{LEAKS}"));
    let env = [("ACME_SHOP_DB_PASSWORD", DB_PASSWORD)];
    let texts = w.every_plan_output(&env);
    for t in &texts {
        for leak in transformed_passwords(DB_PASSWORD) {
            assert!(!t.contains(&leak), "{leak} leaked:\n{t}");
        }
    }
    // What depends on the secret is a keyed fingerprint; the rest of the object is shown.
    let human = &texts[0];
    assert!(human.contains("upper: (secret-derived fp:"), "{human}");
    assert!(human.contains("checksum: (secret-derived fp:"), "{human}");
    assert!(human.contains("name: attack"), "{human}");
    // A verbatim occurrence stays scrubbed in place, as before.
    assert!(human.contains("printf: (secret-derived fp:") || human.contains("printf: (redacted)"), "{human}");

    // Against an observed release holding the transformed old password, with the new one
    // desired: neither side shows.
    let old = "Old-pass-0ne!";
    let observed = serde_json::json!({ "releases": { "release/okd-prod/acme-prod/shop-db": {
        "revision": 3, "resource_version": "7", "hash": "sha256:0",
        "objects": [{ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "attack", "namespace": "acme-prod" },
            "data": { "upper": old.to_uppercase(), "config": format!("user = shop\npassword = {}\n", old.to_uppercase()) } }],
        "secret_values": { "auth.password": old } } } });
    std::fs::write(w.path("observed.json"), observed.to_string()).unwrap();
    let out = w.run_env(&["plan", "--observed", "observed.json"], &env).expect(0);
    for leak in transformed_passwords(DB_PASSWORD).into_iter().chain(transformed_passwords(old)) {
        assert!(!out.stdout.contains(&leak) && !out.stderr.contains(&leak), "{leak} leaked:\n{}", out.stdout);
    }
    assert!(out.stdout.contains("-  upper: (secret-derived fp:") && out.stdout.contains("+  upper: (secret-derived fp:"), "{}", out.stdout);
}

#[test]
fn attack_render_error_prints_a_transformed_secret() {
    let w = Work::new();
    w.write("tenants/charts/postgres/templates/attack.yaml", "{{ fail (printf \"bad password %s for user %s\" (upper .Values.auth.password) .Values.auth.username) }}\n");
    let out = w.run_env(&["plan", "--offline"], &[("ACME_SHOP_DB_PASSWORD", DB_PASSWORD)]).expect(1);
    for leak in transformed_passwords(DB_PASSWORD).into_iter().chain([DB_PASSWORD.to_string()]) {
        assert!(!out.stderr.contains(&leak), "{leak} leaked:\n{}", out.stderr);
    }
    // The rest of the message is there.
    assert!(out.stderr.contains("postgres/templates/attack.yaml") && out.stderr.contains("bad password (redacted) for user shop"), "{}", out.stderr);
}

#[test]
fn attack_files_get_follows_a_symlink_out_of_the_chart() {
    let w = Work::new();
    let chart = "tenants/charts/postgres";
    std::fs::create_dir_all(w.path(&format!("{chart}/files"))).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", w.path(&format!("{chart}/files/passwd"))).unwrap();
    w.write(
        &format!("{chart}/templates/attack.yaml"),
        &format!("{CONFIGMAP}  get: {{{{ .Files.Get \"files/passwd\" | quote }}}}\n  glob: {{{{ range $p, $_ := .Files.Glob \"files/*\" }}}}{{{{ $p }}}}{{{{ end }}}}\n"),
    );
    let out = w.run(&["plan", "--offline"]);
    assert!(!out.stdout.contains("root:x:0:0") && !out.stderr.contains("root:x:0:0"), "/etc/passwd leaked:\n{}", out.stdout);
    let out = out.expect(1);
    assert!(
        out.stderr.contains("chart file files/passwd is a symbolic link to /etc/passwd, outside the chart directory")
            && out.stderr.contains("charts/postgres"),
        "{}",
        out.stderr
    );
    // A directory linked from outside is refused the same way; links inside the chart work.
    std::fs::remove_file(w.path(&format!("{chart}/files/passwd"))).unwrap();
    std::fs::write(w.path(&format!("{chart}/files/motd")), "hello").unwrap();
    std::os::unix::fs::symlink("motd", w.path(&format!("{chart}/files/passwd"))).unwrap();
    let ok = w.run(&["plan", "--offline"]).expect(0);
    assert!(ok.stdout.contains("get: hello"), "{}", ok.stdout);
    std::os::unix::fs::symlink("/etc", w.path(&format!("{chart}/files/etc"))).unwrap();
    let out = w.run(&["plan", "--offline"]).expect(1);
    assert!(out.stderr.contains("chart file files/etc is a symbolic link to /etc, outside the chart directory"), "{}", out.stderr);
}

/// Issue 23's corpus: a chart passing a `secret-value` through 50 functions and pipelines
/// (case changes, `printf` verbs, base64 to depth 3, hex, the JSON/YAML/TOML encoders, `tpl`,
/// `include`, a data key, a label-like annotation and an object name computed from it). No
/// output of `plan` (every format, stdout and stderr, the plan file, `show`), `diff` (which
/// resolves no secret) or `template --release` (placeholders) holds the secret or any
/// reversible transform of it, nor 8 characters of one.
#[test]
fn attack_secret_corpus_leaks_in_no_output() {
    use common::secrets::{CORPUS_SECRET, assert_no_leak, corpus_template, leak_needles};
    let needles = leak_needles(CORPUS_SECRET);
    let w = Work::new();
    w.git(&["init", "-q", "-b", "main"]);
    std::fs::write(w.path(".gitignore"), "key.hex\n*.plan\n").unwrap();
    w.git(&["add", "-A"]);
    w.git(&["commit", "-q", "-m", "example repository"]);
    w.write("tenants/charts/postgres/templates/corpus.yaml", &corpus_template(".Values.auth.password"));
    w.git(&["add", "-A"]);
    w.git(&["commit", "-q", "-m", "corpus"]);
    let env = [("ACME_SHOP_DB_PASSWORD", CORPUS_SECRET)];
    let texts = w.every_plan_output(&env);
    // The corpus rendered: it is in the plan, its values as fingerprints.
    assert!(texts[0].contains("ConfigMap/acme-prod/corpus") && texts[0].contains("upper: (secret-derived fp:"), "{}", texts[0]);
    for (i, t) in texts.iter().enumerate() {
        assert_no_leak(&format!("plan output #{i}"), t, &needles);
    }
    for format in ["human", "markdown", "json"] {
        let d = w.run_env(&["diff", "--base", "HEAD~1", "--head", "HEAD", "--format", format], &env).expect(0);
        assert!(d.stdout.contains("corpus"), "{}", d.stdout);
        assert_no_leak(&format!("diff --format {format}"), &(d.stdout + &d.stderr), &needles);
    }
    let t = w.run_env(&["template", "--release", "shop-db"], &env).expect(0);
    assert!(t.stdout.contains("name: corpus"), "{}", t.stdout);
    assert_no_leak("template --release", &(t.stdout + &t.stderr), &needles);
}
