//! End-to-end tests of the real `harmony` binary, in the style of uv's `tests/it`: every test
//! copies the example repository (`tenants/`) into a temp dir, maybe breaks it, runs the binary
//! from the temp dir with `--repo tenants` and snapshots exit code, stdout and stderr (temp
//! paths filtered out). `cargo insta review` to update the snapshots in `tests/snapshots/`.

mod common;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a run of the binary printed.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    /// The text snapshotted for a run.
    fn snapshot(&self) -> String {
        format!("exit: {}\n----- stdout -----\n{}----- stderr -----\n{}", self.code, self.stdout, self.stderr)
    }

    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    fn expect(self, code: i32) -> Self {
        assert_eq!(self.code, code, "unexpected exit code:\n{}", self.snapshot());
        self
    }
}

/// Runs `harmony ARGS` in `dir` with a clean environment and hides `dir` in the output.
fn harmony(dir: &Path, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_harmony"))
        .args(args)
        .current_dir(dir)
        .env_remove("HARMONY_REPO")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env("COLUMNS", "100")
        .output()
        .expect("run harmony");
    let filter = |bytes: &[u8]| {
        let mut s = String::from_utf8(bytes.to_vec()).expect("output is UTF-8");
        for p in [dir.to_path_buf(), dir.canonicalize().unwrap_or_default()] {
            let p = p.to_string_lossy().into_owned();
            if !p.is_empty() {
                s = s.replace(&p, "[TEMP]");
            }
        }
        s
    };
    Out { code: out.status.code().expect("exited normally"), stdout: filter(&out.stdout), stderr: filter(&out.stderr) }
}

/// A private copy of the example repository at `<temp>/tenants`.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        common::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants"), &dir.path().join("tenants"));
        Repo { dir }
    }

    /// A file of the copy, relative to `tenants/`.
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join("tenants").join(rel)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).unwrap();
    }

    /// Replaces the first occurrence of `from` in a file (which must contain it).
    #[track_caller]
    fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert!(text.contains(from), "{rel} does not contain {from:?}");
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// Runs `harmony --repo tenants ARGS` from the copy's parent directory.
    fn run(&self, args: &[&str]) -> Out {
        let mut all = vec!["--repo", "tenants"];
        all.extend_from_slice(args);
        harmony(self.dir.path(), &all)
    }

    /// Every file of the copy and its contents.
    fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.insert(p.clone(), std::fs::read(&p).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.path(""), &mut out);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// check on the clean repository

#[test]
fn check_clean_repository() {
    let out = Repo::new().run(&["check"]).expect(0);
    assert_eq!(out.stdout, "");
    insta::assert_snapshot!(out.snapshot());
}

#[test]
fn check_clean_repository_json() {
    let out = Repo::new().run(&["check", "--format", "json"]).expect(0);
    let mut doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["errors"], 0);
    assert_eq!(doc["warnings"], 0);
    assert_eq!(doc["files"], 11);
    assert_eq!(doc["units"], 25);
    assert_eq!(doc["diagnostics"], serde_json::json!([]));
    let hash = doc["repository_hash"].as_str().expect("repository_hash is a string");
    let hex = hash.strip_prefix("sha256:").unwrap_or_else(|| panic!("{hash} does not start with sha256:"));
    assert!(hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "{hash}");
    doc["repository_hash"] = "sha256:[HASH]".into();
    insta::assert_snapshot!(serde_json::to_string_pretty(&doc).unwrap());
}

#[test]
fn check_hash_is_stable_and_follows_content() {
    let repo = Repo::new();
    let hash = |repo: &Repo| {
        let out = repo.run(&["check", "--format", "json"]).expect(0);
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()["repository_hash"].as_str().unwrap().to_string()
    };
    let a = hash(&repo);
    assert_eq!(a, hash(&Repo::new()), "the same repository in another directory hashes differently");
    repo.edit("releases/acme.kdl", "replicaCount 3", "replicaCount 4");
    assert_ne!(a, hash(&repo), "changing a value did not change the hash");
}

#[test]
fn check_clean_repository_github() {
    let out = Repo::new().run(&["check", "--format", "github"]).expect(0);
    assert_eq!(out.stdout, "", "a clean repository has no annotations");
    insta::assert_snapshot!(out.snapshot());
}

#[test]
fn check_quiet_prints_nothing_when_clean() {
    let out = Repo::new().run(&["check", "--quiet"]).expect(0);
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
}

// ---------------------------------------------------------------------------------------------
// check on broken copies: one table row per way to break the repository

struct Broken {
    /// Snapshot name suffix.
    name: &'static str,
    /// Breaks the copy.
    breaks: fn(&Repo),
    /// The code the breakage must raise.
    code: &'static str,
    /// The exact `--format github` line of that code's first diagnostic.
    github: &'static str,
}

const BROKEN: &[Broken] = &[
    Broken {
        name: "unresolved_cluster",
        breaks: |r| r.edit("releases/acme.kdl", "cluster okd-prod", "cluster okd-prd"),
        code: "harmony::unresolved-reference",
        github: "::error file=tenants/releases/acme.kdl,line=6,col=13,endLine=6,endColumn=20,title=harmony%3A%3Aunresolved-reference::unknown cluster `okd-prd`: no cluster has this name%0Ahelp: did you mean `okd-prod`?",
    },
    Broken {
        name: "namespace_overlap",
        breaks: |r| r.edit("tenants/globex.kdl", "namespaces globex \"globex-*\"", "namespaces globex \"globex-*\" acme-staging"),
        code: "harmony::namespace-overlap",
        github: "::error file=tenants/tenants/globex.kdl,line=5,col=34,endLine=5,endColumn=46,title=harmony%3A%3Anamespace-overlap::tenants `acme` and `globex` both own `acme-staging`: also owned by `acme`%0Ahelp: tenants are isolated by namespace: give each tenant names or prefixes the other cannot match",
    },
    Broken {
        name: "values_file_not_found",
        breaks: |r| std::fs::remove_file(r.path("values/shop-db.yaml")).unwrap(),
        code: "harmony::file-not-found",
        github: "::error file=tenants/releases/acme.kdl,line=9,col=17,endLine=9,endColumn=41,title=harmony%3A%3Afile-not-found::values file `values/shop-db.yaml` does not exist: no such file%0Ahelp: paths are relative to the file declaring the release",
    },
    Broken {
        name: "needs_cycle",
        breaks: |r| {
            r.edit("releases/acme.kdl", "    values-file \"../values/shop-db.yaml\"\n", "    values-file \"../values/shop-db.yaml\"\n    needs shop-web\n")
        },
        code: "harmony::needs-cycle",
        github: "::error file=tenants/releases/acme.kdl,line=30,col=11,endLine=30,endColumn=18,title=harmony%3A%3Aneeds-cycle::`needs` cycle: `shop-api` → `shop-db` → `shop-web` → `shop-api`: `shop-api` needs `shop-db`%0Ahelp: releases in a cycle can never be applied; remove one of these `needs`",
    },
    Broken {
        name: "syntax_error",
        breaks: |r| r.edit("clusters.kdl", "    context okd-prod\n", "    context okd-prod {\n"),
        code: "harmony::syntax",
        github: "::error file=tenants/clusters.kdl,line=3,col=18,endLine=3,endColumn=19,title=harmony%3A%3Asyntax::No closing '}' for child block: not closed%0Ahelp: see https://kdl.dev for KDL v2 syntax",
    },
    Broken {
        name: "unknown_node",
        breaks: |r| r.edit("fleets/pico.kdl", "agent-version", "agent-verison"),
        code: "harmony::unknown-node",
        github: "::error file=tenants/fleets/pico.kdl,line=5,col=5,endLine=5,endColumn=18,title=harmony%3A%3Aunknown-node::unknown node `agent-verison` in a fleet: not recognised here%0Ahelp: did you mean `agent-version`? valid here: nats, agent-version, signing-key, tenants, rollout, auth, allow-host-path, replicas, placement, description",
    },
];

#[test]
fn check_broken_repositories() {
    for case in BROKEN {
        let repo = Repo::new();
        (case.breaks)(&repo);

        let human = repo.run(&["check"]).expect(1);
        assert_eq!(human.stdout, "", "{}: human output goes to stderr", case.name);
        assert!(human.stderr.contains(case.code), "{}: no {} in\n{}", case.name, case.code, human.stderr);
        insta::assert_snapshot!(format!("check_broken_{}", case.name), human.snapshot());

        let json = repo.run(&["check", "--format", "json"]).expect(1);
        let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert!(doc["errors"].as_u64().unwrap() >= 1, "{}", case.name);
        let diags = doc["diagnostics"].as_array().unwrap();
        assert!(diags.iter().any(|d| d["code"] == case.code), "{}: {diags:?}", case.name);
        assert!(doc.get("repository_hash").is_none() && doc.get("units").is_none(), "{}: a failed check has no units", case.name);

        let github = repo.run(&["check", "--format", "github"]).expect(1);
        assert!(github.stdout.lines().all(|l| l.starts_with("::error file=tenants/")), "{}: {}", case.name, github.stdout);
        let title = format!("title={}::", case.code.replace(':', "%3A"));
        let first = github.stdout.lines().find(|l| l.contains(&title)).unwrap_or_else(|| panic!("{}: no {title} in\n{}", case.name, github.stdout));
        assert_eq!(first, case.github, "{}", case.name);
        assert_eq!(github.stdout.lines().count(), diags.len(), "{}: one annotation per diagnostic", case.name);

        let sarif = repo.run(&["check", "--format", "sarif"]).expect(1);
        let log = valid_sarif(&sarif.stdout);
        let results = log["runs"][0]["results"].as_array().unwrap();
        assert_eq!(results.len(), diags.len(), "{}: one result per diagnostic", case.name);
        let (r, d) = results.iter().zip(diags).find(|(r, _)| r["ruleId"] == case.code).unwrap_or_else(|| panic!("{}: no {} result", case.name, case.code));
        assert_eq!(r["level"], "error");
        assert_eq!(log["runs"][0]["tool"]["driver"]["rules"][r["ruleIndex"].as_u64().unwrap() as usize]["id"], case.code);
        let place = &r["locations"][0]["physicalLocation"];
        assert_eq!(place["artifactLocation"]["uri"], format!("tenants/{}", d["path"].as_str().unwrap()), "{}", case.name);
        let region = &place["region"];
        assert_eq!(
            [&region["startLine"], &region["startColumn"], &region["endLine"], &region["endColumn"]],
            [&d["line"], &d["column"], &d["end_line"], &d["end_column"]],
            "{}: the SARIF region is the diagnostic's",
            case.name
        );
        assert!(r["message"]["text"].as_str().unwrap().starts_with(d["message"].as_str().unwrap()), "{}", case.name);
    }
}

/// Parses a SARIF log and validates it against the SARIF 2.1.0 JSON Schema (OASIS,
/// `sarif-2.1/schema/sarif-schema-2.1.0.json` of github.com/oasis-tcs/sarif-spec at e0583813).
fn valid_sarif(text: &str) -> serde_json::Value {
    let log: serde_json::Value = serde_json::from_str(text).expect("stdout is one JSON document");
    let schema: serde_json::Value = serde_json::from_str(include_str!("data/sarif-schema-2.1.0.json")).unwrap();
    let validator = jsonschema::draft4::new(&schema).expect("the SARIF schema compiles");
    let errors: Vec<String> = validator.iter_errors(&log).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "the log does not follow SARIF 2.1.0: {errors:#?}\n{log:#}");
    assert_eq!(log["version"], "2.1.0");
    log
}

#[test]
fn check_sarif_of_a_clean_repository_is_valid_and_empty() {
    let out = Repo::new().run(&["check", "--format", "sarif"]).expect(0);
    let log = valid_sarif(&out.stdout);
    assert_eq!(log["runs"][0]["results"], serde_json::json!([]));
    assert_eq!(log["runs"][0]["tool"]["driver"]["name"], "harmony");
    assert_eq!(log["runs"][0]["columnKind"], "unicodeCodePoints");
    // The schema check bites: a level SARIF does not know is refused.
    let mut bad = log.clone();
    bad["runs"][0]["results"] = serde_json::json!([{ "message": { "text": "x" }, "level": "fatal" }]);
    let schema: serde_json::Value = serde_json::from_str(include_str!("data/sarif-schema-2.1.0.json")).unwrap();
    assert!(!jsonschema::draft4::new(&schema).unwrap().is_valid(&bad));
}

#[test]
fn check_sarif_related_locations_and_paths_with_spaces() {
    let repo = Repo::new();
    // A release declared twice: the duplicate points back at the first declaration.
    let acme = repo.read("releases/acme.kdl");
    std::fs::create_dir_all(repo.path("more releases")).unwrap();
    repo.write("more releases/again.kdl", &acme);
    let out = repo.run(&["check", "--format", "sarif"]).expect(1);
    let log = valid_sarif(&out.stdout);
    let results = log["runs"][0]["results"].as_array().unwrap();
    let dup = results.iter().find(|r| r["ruleId"] == "harmony::duplicate-name").unwrap_or_else(|| panic!("no duplicate-name in {results:#?}"));
    let uris: Vec<&str> = std::iter::once(&dup["locations"][0]).chain(dup["relatedLocations"].as_array().unwrap()).map(|l| l["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap()).collect();
    assert!(uris.contains(&"tenants/more%20releases/again.kdl") && uris.contains(&"tenants/releases/acme.kdl"), "{uris:?}");
}

#[test]
fn check_github_paths_follow_the_repo_argument() {
    let repo = Repo::new();
    repo.edit("releases/acme.kdl", "cluster okd-prod", "cluster okd-prd");
    let annotation = |dir: &Path, repo_arg: &str| {
        let out = harmony(dir, &["check", "--repo", repo_arg, "--format", "github"]).expect(1);
        let line = out.stdout.lines().next().unwrap().to_string();
        line.split(',').next().unwrap().to_string()
    };
    let root = repo.dir.path();
    assert_eq!(annotation(root, "tenants"), "::error file=tenants/releases/acme.kdl");
    assert_eq!(annotation(root, "./tenants/"), "::error file=tenants/releases/acme.kdl");
    assert_eq!(annotation(&root.join("tenants"), "."), "::error file=releases/acme.kdl");
    assert_eq!(annotation(&root.join("tenants/releases"), ".."), "::error file=../releases/acme.kdl");
}

#[test]
fn check_selector_matching_nothing_is_a_warning() {
    let repo = Repo::new();
    repo.edit("deployments/sensor-hub.kdl", "selector site=montreal", "selector site=ottawa");
    let out = repo.run(&["check"]).expect(0);
    assert!(out.stderr.contains("harmony::selector-matches-nothing"), "{}", out.stderr);
    insta::assert_snapshot!(out.snapshot());

    let denied = repo.run(&["check", "--deny-warnings"]).expect(1);
    assert_eq!(denied.stderr, out.stderr, "--deny-warnings changes the exit code only");

    let github = repo.run(&["check", "--format", "github"]).expect(0);
    assert_eq!(github.stdout.lines().count(), 1);
    assert_eq!(
        github.stdout,
        "::warning file=tenants/deployments/sensor-hub.kdl,line=5,col=5,endLine=5,endColumn=13,title=harmony%3A%3Aselector-matches-nothing::selector of deployment `sensor-hub` matches no device of fleet `pico`: matches nothing%0Ahelp: check the labels of the fleet's devices; the deployment runs nowhere until one matches\n"
    );
    repo.run(&["check", "--format", "github", "--deny-warnings"]).expect(1);

    let json = repo.run(&["check", "--format", "json"]).expect(0);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!((doc["errors"].as_u64(), doc["warnings"].as_u64()), (Some(0), Some(1)));
    assert_eq!(doc["diagnostics"][0]["severity"], "warning");
    assert!(doc["units"].as_u64().is_some(), "a repository with only warnings compiles");
    repo.run(&["check", "--format", "json", "--deny-warnings"]).expect(1);
}

#[test]
fn check_reports_every_error_in_one_run() {
    let repo = Repo::new();
    for case in BROKEN.iter().filter(|c| c.code != "harmony::syntax") {
        (case.breaks)(&repo);
    }
    let out = repo.run(&["check", "--format", "json"]).expect(1);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let codes: BTreeSet<&str> = doc["diagnostics"].as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap()).collect();
    for case in BROKEN.iter().filter(|c| c.code != "harmony::syntax") {
        assert!(codes.contains(case.code), "{} missing from {codes:?}", case.code);
    }
}

// ---------------------------------------------------------------------------------------------
// fmt

/// `clusters.kdl` collapsed onto one line with `;`, oddly indented, with extra comments.
const UGLY_CLUSTERS: &str = "// The two OKD clusters releases are installed on.
cluster okd-prod { description \"Production, Montreal data centre\"; context okd-prod; labels env=prod   region=ca-east }
      // A comment that was badly indented.
cluster okd-staging {
  description \"Staging; one minor version ahead of production\"   // trailing comment
            context okd-staging-admin
 /* block */ labels env=staging region=ca-east


    kube-version \"1.31.2\" }
";

const UGLY_TENANT: &str = "tenant globex { namespaces globex \"globex-*\"; service-account globex-deployer namespace=globex }\n";

#[test]
fn fmt_check_clean_repository() {
    let out = Repo::new().run(&["fmt", "--check"]).expect(0);
    assert_eq!(out.stdout, "", "nothing to reformat");
    insta::assert_snapshot!(out.snapshot());
}

#[test]
fn fmt_reformats_and_keeps_comments() {
    let repo = Repo::new();
    repo.write("clusters.kdl", UGLY_CLUSTERS);
    let units_before = repo.run(&["check", "--format", "json"]).expect(0).stdout;

    let check = repo.run(&["fmt", "--check"]).expect(1);
    assert_eq!(check.stdout, "clusters.kdl\n", "lists exactly the de-formatted file");
    assert_eq!(repo.read("clusters.kdl"), UGLY_CLUSTERS, "--check writes nothing");
    insta::assert_snapshot!("fmt_check_lists_file", check.snapshot());

    let before = repo.files();
    let fmt = repo.run(&["fmt"]).expect(0);
    assert_eq!(fmt.stdout, "formatted clusters.kdl\n");
    insta::assert_snapshot!("fmt_rewrites_file", fmt.snapshot());
    let after = repo.files();
    let changed: Vec<&PathBuf> = after.keys().filter(|p| before.get(*p) != after.get(*p)).collect();
    assert_eq!(changed, [&repo.path("clusters.kdl")], "only the de-formatted file changes (and no temp files are left)");
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());

    let formatted = repo.read("clusters.kdl");
    for comment in ["// The two OKD", "// A comment that was badly indented.", "// trailing comment", "/* block */"] {
        assert!(formatted.contains(comment), "lost {comment:?}:\n{formatted}");
    }
    insta::assert_snapshot!("fmt_formatted_clusters", formatted);

    repo.run(&["fmt", "--check"]).expect(0);
    let again = repo.run(&["fmt"]).expect(0);
    assert_eq!(again.stdout, "", "the second fmt formats nothing");
    assert_eq!(repo.files(), after, "the second fmt changes nothing");
    assert_eq!(repo.run(&["check", "--format", "json"]).expect(0).stdout, units_before, "fmt changed the compiled repository");
}

#[test]
fn fmt_writes_nothing_when_a_file_does_not_parse() {
    let repo = Repo::new();
    repo.write("clusters.kdl", UGLY_CLUSTERS);
    repo.write("tenants/globex.kdl", UGLY_TENANT);
    repo.edit("fleets/pico.kdl", "tenants acme globex\n", "tenants acme globex\n  \"unterminated\n");
    let before = repo.files();

    let out = repo.run(&["fmt"]).expect(1);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("fleets/pico.kdl"), "{}", out.stderr);
    insta::assert_snapshot!(out.snapshot());
    assert_eq!(repo.files(), before, "fmt wrote something although a file could not be formatted");

    let check = repo.run(&["fmt", "--check"]).expect(1);
    assert_eq!(check.stderr, out.stderr);
    assert_eq!(repo.files(), before);
}

#[test]
fn fmt_lists_every_file_it_would_change_in_order() {
    let repo = Repo::new();
    repo.write("tenants/globex.kdl", UGLY_TENANT);
    repo.write("clusters.kdl", UGLY_CLUSTERS);
    let out = repo.run(&["fmt", "--check"]).expect(1);
    assert_eq!(out.stdout, "clusters.kdl\ntenants/globex.kdl\n");
    repo.run(&["fmt", "--quiet"]).expect(0);
    repo.run(&["fmt", "--check"]).expect(0);
}

// ---------------------------------------------------------------------------------------------
// graph

/// Edges of a `dot` graph: `"a" -> "b";` lines.
fn dot_edges(dot: &str) -> BTreeSet<(String, String)> {
    dot.lines()
        .filter_map(|l| l.trim().strip_suffix(';')?.split_once(" -> "))
        .map(|(a, b)| (a.trim_matches('"').to_string(), b.trim_matches('"').to_string()))
        .collect()
}

/// Nodes and edges of a Mermaid flowchart: `uN["id"]` and `uA --> uB` lines.
fn mermaid_graph(mermaid: &str) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let mut names = BTreeMap::new();
    let mut edges = BTreeSet::new();
    for line in mermaid.lines().skip(1).map(str::trim) {
        if let Some((a, b)) = line.split_once(" --> ") {
            edges.insert((a.to_string(), b.to_string()));
        } else {
            let (key, label) = line.split_once('[').unwrap_or_else(|| panic!("unexpected line {line:?}"));
            names.insert(key.to_string(), label.trim_end_matches(']').trim_matches('"').to_string());
        }
    }
    let edges = edges.into_iter().map(|(a, b)| (names[&a].clone(), names[&b].clone())).collect();
    (names.into_values().collect(), edges)
}

#[test]
fn graph_dot_and_mermaid() {
    let repo = Repo::new();
    let dot = repo.run(&["graph", "--format", "dot"]).expect(0);
    assert_eq!(dot.stderr, "");
    insta::assert_snapshot!("graph_dot", dot.stdout);
    let mermaid = repo.run(&["graph", "--format", "mermaid"]).expect(0);
    assert_eq!(mermaid.stderr, "");
    insta::assert_snapshot!("graph_mermaid", mermaid.stdout);
    assert_eq!(repo.run(&["graph"]).expect(0).stdout, dot.stdout, "dot is the default");

    let edges = dot_edges(&dot.stdout);
    let (units, mermaid_edges) = mermaid_graph(&mermaid.stdout);
    assert_eq!(edges, mermaid_edges, "dot and mermaid draw different graphs");
    assert_eq!(units.len(), 25);
    for unit in &units {
        let parts: Vec<&str> = unit.split('/').collect();
        match parts[..] {
            ["release", cluster, _namespace, _name] => assert!(
                edges.iter().any(|(a, b)| b == unit && a.starts_with("tenant-access/") && a.ends_with(&format!("/{cluster}"))),
                "{unit} has no edge from its tenant-access unit"
            ),
            ["device-plan", fleet, device] => {
                assert!(edges.contains(&(format!("agent/{fleet}/{device}"), unit.clone())), "{unit} has no edge from its agent unit")
            }
            ["tenant-access", _, _] | ["agent", _, _] => {}
            _ => panic!("unexpected unit id {unit}"),
        }
    }
    // `needs` edges.
    for (a, b) in [("shop-db", "shop-api"), ("shop-api", "shop-web"), ("portal-api", "portal")] {
        assert!(edges.iter().any(|(x, y)| x.ends_with(&format!("/{a}")) && y.ends_with(&format!("/{b}"))), "no edge {a} -> {b}");
    }
}

#[test]
fn graph_of_a_broken_repository_fails() {
    let repo = Repo::new();
    repo.edit("releases/acme.kdl", "cluster okd-prod", "cluster okd-prd");
    let out = repo.run(&["graph"]).expect(1);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("harmony::unresolved-reference"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------------
// errors users can act on, colours

#[test]
fn missing_repository_directory() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["check", "fmt", "graph"] {
        let out = harmony(dir.path(), &[command, "--repo", "/nonexistent"]).expect(1);
        assert_eq!(out.stdout, "");
        assert!(out.stderr.contains("/nonexistent"), "{command}: {}", out.stderr);
        insta::assert_snapshot!(format!("missing_repository_{command}"), out.snapshot());
    }
}

#[test]
fn usage_errors_exit_2() {
    let repo = Repo::new();
    for args in [&["check", "--bogus"][..], &["check", "--format", "xml"], &["frobnicate"], &["check", "--quiet", "--verbose"]] {
        let out = repo.run(args);
        assert_eq!(out.code, 2, "{args:?}:\n{}", out.snapshot());
        assert_eq!(out.stdout, "");
        assert!(out.stderr.starts_with("error: "), "{args:?}: {}", out.stderr);
    }
    insta::assert_snapshot!("unknown_flag", repo.run(&["check", "--bogus"]).snapshot());
}

#[test]
fn repo_from_environment_variable() {
    let repo = Repo::new();
    let out = Command::new(env!("CARGO_BIN_EXE_harmony")).arg("check").current_dir(repo.dir.path()).env("HARMONY_REPO", "tenants").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

fn has_ansi(s: &str) -> bool {
    s.contains('\u{1b}')
}

#[test]
fn color_flag() {
    let repo = Repo::new();
    repo.edit("releases/acme.kdl", "cluster okd-prod", "cluster okd-prd");
    let never = repo.run(&["check", "--color", "never"]).expect(1);
    assert!(!has_ansi(&never.stderr) && !has_ansi(&never.stdout), "{}", never.stderr);
    let always = repo.run(&["check", "--color", "always"]).expect(1);
    assert!(has_ansi(&always.stderr), "{}", always.stderr);
    // Auto: the test's pipes are not terminals.
    let auto = repo.run(&["check"]).expect(1);
    assert_eq!(auto.stderr, never.stderr);
    // Machine formats never use colour.
    for format in ["json", "github"] {
        let out = repo.run(&["check", "--color", "always", "--format", format]).expect(1);
        assert!(!has_ansi(&out.stdout), "{format}: {}", out.stdout);
    }
}

// ---------------------------------------------------------------------------------------------
// harmony ui

#[test]
fn ui_refuses_a_public_address_without_a_token() {
    let repo = Repo::new();
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let out = Command::new(env!("CARGO_BIN_EXE_harmony"))
            .args(["ui", "--repo", "tenants", "--listen", listen])
            .current_dir(repo.dir.path())
            .env_remove("HARMONY_UI_TOKEN")
            .output()
            .expect("run harmony");
        assert_eq!(out.status.code(), Some(1), "{listen}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("error: refusing to listen on") && stderr.contains("without authentication"), "{stderr}");
        assert!(stderr.contains("HARMONY_UI_TOKEN") && stderr.contains("--token-file"), "{stderr}");
    }
}

/// `harmony ui --demo` against a given nats-server: the simulated devices show up.
#[test]
fn ui_demo_shows_simulated_devices() {
    use std::io::{Read, Write};
    let nats = harmony_testkit::NatsServer::start();
    let port = harmony_testkit::free_port();
    let repo = Repo::new();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(
        Command::new(env!("CARGO_BIN_EXE_harmony"))
            .args(["ui", "--demo", "--repo", "tenants", "--nats-url", &nats.url(), "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(repo.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run harmony ui --demo"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut last = String::new();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET /api/overview HTTP/1.1\r\nHost: ui\r\nConnection: close\r\n\r\n");
            last.clear();
            let _ = s.read_to_string(&mut last);
            // Eight devices: the silent spare unknown, one degraded, the others ready.
            if last.contains("\"degraded\":1") && last.contains("\"ready\":6") && last.contains("\"unknown\":1") {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "the demo did not show its devices in 30 s: {last}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile files: the binary never aborts (issue 20)

/// `harmony check` (human and JSON) and `harmony fmt --check` on files nested 100,000 deep,
/// with multi-megabyte identifiers, strings and lines, invalid UTF-8, a BOM and CRLF: every run
/// exits 0 or 1, with a diagnostic when 1 — never by a signal or a panic (before the fix:
/// SIGABRT from stack overflows in kdl-rs, exit 101 from a panic in miette's renderer).
#[test]
fn attack_check_never_aborts_on_hostile_files() {
    let mb = 2 << 20;
    let line: String = (0..mb / 8).map(|i| format!(" n{i}")).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("blocks nested 100,000 deep", format!("a {}{}", "{ b ".repeat(100_000), "}".repeat(100_000)).into_bytes()),
        ("comments nested 100,000 deep", "/*".repeat(100_000).into_bytes()),
        ("a comment of 100,000 stars", format!("/*{}*/\n", "*".repeat(100_000)).into_bytes()),
        ("blocks behind a syntax error", format!("a \"\\q {}", "{ b \"}\" ".repeat(10_000)).into_bytes()),
        ("a 2 MiB identifier", format!("{} {{\n", "a".repeat(mb)).into_bytes()),
        ("a 2 MiB line ending in an error", format!("tenant acme {{ namespaces{line} bogus=1 }}\n").into_bytes()),
        ("a 2 MiB string", format!("tenant acme {{ namespaces \"{}\" }}\n", "a".repeat(mb)).into_bytes()),
        ("invalid UTF-8", b"tenant acme { namespaces \xff\xfe }\n".to_vec()),
        ("a BOM and CRLF", b"\xef\xbb\xbftenant acme {\r\n    namespaces acme\r\n}\r\ncluster c\r\n".to_vec()),
    ];
    for (what, bytes) in &cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.kdl"), bytes).unwrap();
        for args in [&["check"][..], &["check", "--format", "json"], &["fmt", "--check"]] {
            let out = Command::new(env!("CARGO_BIN_EXE_harmony")).arg("--repo").arg(dir.path()).args(args).env("NO_COLOR", "1").output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail = stderr.get(stderr.len().saturating_sub(2000)..).unwrap_or(&stderr);
            let code = out.status.code();
            assert!(matches!(code, Some(0 | 1)), "{what}: `harmony {}` ended with {:?}:\n{tail}", args.join(" "), out.status);
            if args == ["check"] && code == Some(1) {
                assert!(stderr.contains("harmony::"), "{what}: no diagnostic:\n{tail}");
            }
        }
    }
}

/// Issue 20, item 4 (a): any tenant's deployment could bind-mount `/`, the podman socket or the
/// agent's state directory and `harmony check` accepted it (the example repository itself
/// mounted `/`). Each is now `harmony::host-path` naming file, line, the `volume` and what the
/// tenant may mount; privileged options are `harmony::privileged-option`.
#[test]
fn attack_check_refuses_host_mounts_and_privileged_options() {
    let repo = Repo::new();
    let deployment = |container: &str| {
        format!("deployment evil {{\n    tenant globex\n    fleet pico\n    selector site=montreal\n    container app {{\n        image \"registry.example/globex/app:1\"\n{container}    }}\n}}\n")
    };
    for (volume, why) in [
        ("/:/host:ro", "host path `/` is the host's whole file system"),
        ("/run/podman/podman.sock:/var/run/docker.sock", "inside the protected `/run`"),
        ("/var/lib/harmony-agent:/state:ro", "host path `/var/lib/harmony-agent` is protected"),
        ("/var/lib/harmony/data/acme:/acme", "outside the tenant's data root `/var/lib/harmony/data/globex`"),
        ("/var/lib/harmony/data/globex/../acme:/acme", "holds a `..` component"),
        ("/srv/telemetry:/t", "may only be mounted read-only (grant `/srv/telemetry`)"),
    ] {
        repo.write("deployments/evil.kdl", &deployment(&format!("        volume \"{volume}\"\n")));
        let out = repo.run(&["check", "--format", "json"]).expect(1);
        let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON report");
        let d = &doc["diagnostics"][0];
        assert_eq!((d["code"].as_str(), d["path"].as_str(), d["line"].as_u64(), d["column"].as_u64()), (Some("harmony::host-path"), Some("deployments/evil.kdl"), Some(7), Some(16)), "{volume}: {doc:#}");
        let message = d["message"].as_str().unwrap_or("");
        assert!(message.starts_with("`volume` of container `app` (deployment `evil`): ") && message.contains(why), "{volume}: {message}");
        let help = d["help"].as_str().unwrap_or("");
        assert!(help.starts_with("tenant `globex` may mount host paths under /var/lib/harmony/data/globex and /srv/telemetry (read-only)"), "{help}");
    }
    for option in ["privileged #true", "cap-add \"SYS_ADMIN\"", "network \"host\"", "device \"/dev/kmsg\"", "security-opt \"label=disable\""] {
        repo.write("deployments/evil.kdl", &deployment(&format!("        {option}\n")));
        let out = repo.run(&["check"]).expect(1);
        let name = option.split(' ').next().unwrap();
        assert!(out.stderr.contains("harmony::privileged-option") && out.stderr.contains(&format!("`{name}` is not allowed in a container on a device")), "{}", out.stderr);
    }
    // What the tenant may mount passes.
    repo.write("deployments/evil.kdl", &deployment("        volume \"/var/lib/harmony/data/globex/app/:/data\"\n        volume \"/srv/telemetry/x:/t:ro\"\n"));
    repo.run(&["check"]).expect(0);
}
