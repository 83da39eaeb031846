//! Never-panic property test: generated repositories must never panic the compiler, the
//! diagnostic renderer or the formatter, and formatting must be idempotent.
//!
//! Every case is one small repository (`_support/` fixtures and the example repository's
//! charts, values and keys, plus one to a few generated KDL files, each < 2 KB) built from
//! one of three generators:
//!
//! - **mutate**: a fixture or example-repository KDL file (or a window of its lines) with a
//!   few random mutations (bit flips, deleted/duplicated ranges, lines spliced from other
//!   files, KDL tokens and odd unicode inserted), sometimes beside the example repository's
//!   tenants, clusters, fleet and devices so its references resolve;
//! - **grammar**: syntactically valid KDL built from the language's node and property names
//!   with mostly well-formed, sometimes wrong values, so lowering, checking and compiling run;
//! - **tokens**: a random stream of KDL tokens and bytes.
//!
//! Cases derive from one seed (`HARMONY_FUZZ_SEED`) and their index, so every failure is
//! reproducible on its own: the report prints the seed, the case, the shrunk input and the
//! command to rerun it (`HARMONY_FUZZ_CASE=<n>`). `HARMONY_FUZZ_CASES` sets the number of
//! cases (default 100,000). See docs/testing.md.

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use harmony_compiler::fmt::{FormatError, format_kdl};
use harmony_compiler::{MemFs, compile_repo, diag};
use rayon::prelude::*;

const DEFAULT_CASES: u64 = 100_000;
const DEFAULT_SEED: u64 = 0x4841_524d_4f4e_5931; // "HARMONY1"
const MAX_INPUT: usize = 2048;

// ---------------------------------------------------------------------------------------------
// Deterministic PRNG (SplitMix64): one independent stream per case.

struct Rng(u64);

impl Rng {
    fn for_case(seed: u64, case: u64) -> Self {
        let mut r = Rng(seed ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn pick_ref<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// The corpus and the base repository every case is mounted on.

struct Corpus {
    /// KDL files to mutate: (path in the case's repository, contents).
    files: Vec<(String, Vec<u8>)>,
    /// The example repository's KDL files, at their paths.
    tenants: Vec<(String, Vec<u8>)>,
    /// `_support/**` and the example repository's non-KDL files.
    base: MemFs,
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let name = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        if p.is_dir() {
            walk(&p, &name, out);
        } else {
            out.push((name, p));
        }
    }
}

fn corpus() -> Corpus {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = manifest.join("tests/fixtures");
    let mut base = MemFs::new();
    let mut support = Vec::new();
    walk(&fixtures.join("_support"), "_support", &mut support);
    for (rel, p) in support {
        base.insert(rel, std::fs::read(p).unwrap());
    }
    let mut files = Vec::new();
    let mut fixture_files = Vec::new();
    walk(&fixtures, "", &mut fixture_files);
    for (rel, p) in fixture_files {
        if rel.ends_with(".kdl") && !rel.starts_with("_support/") {
            files.push((rel, std::fs::read(p).unwrap()));
        }
    }
    let mut tenants = Vec::new();
    let mut tenant_files = Vec::new();
    walk(&manifest.join("../tenants"), "", &mut tenant_files);
    for (rel, p) in tenant_files {
        let bytes = std::fs::read(p).unwrap();
        if rel.ends_with(".kdl") {
            tenants.push((rel, bytes));
        } else {
            base.insert(rel, bytes);
        }
    }
    files.extend(tenants.iter().cloned());
    assert!(files.len() >= 50, "corpus has only {} files", files.len());
    Corpus { files, tenants, base }
}

// ---------------------------------------------------------------------------------------------
// Generator (a): mutations of corpus files.

/// KDL tokens and odd characters to insert.
const TOKENS: &[&str] = &[
    "{",
    "}",
    ";",
    "\"",
    "#null",
    "#true",
    "#false",
    "#inf",
    "#-inf",
    "#nan",
    "/-",
    "=",
    "/*",
    "*/",
    "//",
    "\n",
    "\r\n",
    "\\",
    "\\\n",
    "#\"",
    "\"#",
    "##\"",
    "\"\"\"",
    "\"\"\"\n",
    "(",
    ")",
    "(t)",
    "-",
    "- ",
    "0x",
    "0b2",
    "1e999",
    "-0",
    "1_000",
    "99999999999999999999",
    "-9223372036854775809",
    "1.5",
    ".5",
    " ",
    "\t",
    "é",
    "ß",
    "\u{feff}",
    "\u{200b}",
    "\u{2028}",
    "\u{85}",
    "\u{0}",
    "\u{7f}",
    "🦀",
    "\u{202e}",
    "\u{fffd}",
    "a\u{301}",
    "*",
    "**",
    "../",
    "/",
    ":",
    "@sha256:",
    "${",
    "{{",
    "}}",
    "'",
    "`",
    "~",
    "%",
    "?",
    "[",
    "]",
];

/// Words the language uses (node and property names, values), for insertion and grammar.
const WORDS: &[&str] = &[
    "tenant",
    "cluster",
    "release",
    "fleet",
    "device",
    "deployment",
    "repository",
    "namespaces",
    "namespace",
    "service-account",
    "context",
    "labels",
    "kube-version",
    "chart",
    "version",
    "values-file",
    "values",
    "secret-value",
    "needs",
    "nats",
    "agent-version",
    "signing-key",
    "tenants",
    "allow-host-path",
    "read-only",
    "privileged",
    "cap-add",
    "selector",
    "in",
    "not-in",
    "exists",
    "does-not-exist",
    "init-container",
    "container",
    "image",
    "command",
    "args",
    "env",
    "port",
    "volume",
    "restart",
    "timeout",
    "rollout",
    "step",
    "max-failed",
    "health-timeout",
    "settle",
    "auto-revert",
    "description",
    "exclude",
    "from",
    "acme",
    "globex",
    "okd-prod",
    "pico",
    "pi-001",
    "web",
];

fn mutate(rng: &mut Rng, text: &[u8], corpus: &Corpus) -> Vec<u8> {
    let mut b = text.to_vec();
    let ops = if rng.chance(60) { 1 } else { rng.range(2, 6) };
    for _ in 0..ops {
        let pos = rng.below(b.len() + 1);
        match rng.below(11) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = rng.pick(&b"{};\"=#/-*\\ \n\t()0123456789abcxyz.:@\x00\xff\xc3"[..]);
            }
            2 | 3 => {
                let len = rng.range(1, 24).min(b.len() - pos.min(b.len()));
                b.drain(pos..pos + len);
            }
            4 => {
                let start = rng.below(b.len() + 1);
                let len = rng.range(1, 64).min(b.len() - start);
                let chunk = b[start..start + len].to_vec();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, chunk);
            }
            5 => {
                // A line from another corpus file, at a line boundary.
                let other = &rng.pick_ref(&corpus.files).1;
                let lines: Vec<&[u8]> = other.split(|&c| c == b'\n').collect();
                let line = rng.pick(&lines).to_vec();
                let at = b.iter().enumerate().filter(|(_, c)| **c == b'\n').map(|(i, _)| i + 1).nth(rng.below(64)).unwrap_or(b.len());
                let mut ins = line;
                ins.push(b'\n');
                b.splice(at..at, ins);
            }
            6 | 7 => {
                let tok = rng.pick(TOKENS).as_bytes().to_vec();
                b.splice(pos..pos, tok);
            }
            8 => {
                let mut w = rng.pick(WORDS).as_bytes().to_vec();
                w.push(b' ');
                b.splice(pos..pos, w);
            }
            9 => {
                // Swap two lines.
                let s = String::from_utf8_lossy(&b).into_owned();
                let mut lines: Vec<&str> = s.split('\n').collect();
                if lines.len() > 1 {
                    let (i, j) = (rng.below(lines.len()), rng.below(lines.len()));
                    lines.swap(i, j);
                    b = lines.join("\n").into_bytes();
                }
            }
            _ => {
                // Truncate.
                b.truncate(pos);
            }
        }
    }
    b.truncate(MAX_INPUT);
    b
}

// ---------------------------------------------------------------------------------------------
// Generator (b): syntactically valid KDL with the language's names.

/// A value written as a KDL token.
fn kdl_string(rng: &mut Rng, s: &str) -> String {
    let bare = !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !["true", "false", "null", "inf", "nan"].contains(&s);
    if bare && rng.chance(80) {
        s.to_string()
    } else if !s.contains('"') && !s.contains('\\') && rng.chance(20) {
        format!("#\"{s}\"#")
    } else {
        format!("{s:?}") // Rust's string escapes are valid KDL v2 escapes
    }
}

const NAMES: &[&str] = &["acme", "globex", "okd-prod", "okd-staging", "pico", "pi-001", "pi-002", "nuc-001", "web", "api", "db", "hub", "a"];
const BAD_NAMES: &[&str] = &["", "-bad", "Bad", "a_b", "ä", "a.b", "0", "x--", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"];
const NAMESPACES: &[&str] = &["acme-prod", "acme-staging", "acme-*", "globex", "globex-*", "*", "acme-", "a*b", "acme-prod*"];
const SEMVERS: &[&str] = &["0.2.0", "1.0.0", "1.4.2", "0.3.1-rc.1", "1.30.0", "1.0.0+build", "v1.0.0", "1.0", "x"];
const DURATIONS: &[&str] = &["5m", "90s", "1h30m", "2m", "1ms", "0s", "10", "2x", "-5m", "1.5h", ""];
const IMAGES: &[&str] = &[
    "registry.example/acme/hub:2.0",
    "nginx",
    "quay.io/p/q:v1.8.2",
    "registry.example:5000/a/b:1",
    "Nginx",
    "a:b:c",
    "",
    "x@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    "x@sha256:zz",
    "a b",
];
const PORTS: &[&str] = &["8080:80", "8080:80/udp", "9100:9100/tcp", "1:2/sctp", "x:y", ":", "0:1", "70000:1"];
const VOLUMES: &[&str] = &[
    "/var/lib/harmony/data/acme/hub:/data",
    "vol:/data:ro",
    "/srv/shared/x:/x:ro",
    "/var/lib/hub:/data",
    "/etc:/etc:rw",
    "rel:/x",
    "/a:b",
    "/a:/b:zz",
    "",
    "/:/host:ro",
    "/run/podman/podman.sock:/sock",
    "/var/lib/harmony/data/acme/../globex:/d",
];
const HOST_PATHS: &[&str] = &["/srv/shared", "/srv/globex/", "/opt//data", "/", "/var", "/etc/harmony", "/srv/../etc", "srv", ""];
const URLS: &[&str] = &["nats://127.0.0.1:4222", "tls://h:1", "ws://h", "wss://h:443/p", "http://x", "nats://", ""];
const PATHS: &[&str] = &[
    "_support/charts/web",
    "_support/charts/plain",
    "_support/charts/no-chart-yaml",
    "_support/charts/missing",
    "charts/web",
    "charts/api",
    "charts/postgres",
    "../outside",
    "/etc/passwd",
    "_support/values/good.yaml",
    "_support/values/broken.yaml",
    "values/shop-db.yaml",
    "values/web-common.yaml",
    "_support/keys/fleet.pub",
    "_support/keys/bad.pub",
    "fleets/keys/pico.pub",
    "oci://registry.example/charts/web",
    "https://charts.example/web-1.0.0.tgz",
    "ftp://x",
    "",
    ".",
    "_support",
];
const LABEL_KEYS: &[&str] = &["site", "arch", "tier", "decommissioned", "example.com/rack", "Bad Key", "a/b/c", "", "-x"];
const LABEL_VALUES: &[&str] = &["montreal", "toronto", "arm64", "amd64", "canary", "yes", "", "-x", "a b"];
const ENV_NAMES: &[&str] = &["LOG_LEVEL", "DATA_DIR", "_X", "1BAD", "a-b"];
const SECRET_SOURCES: &[&str] = &["env:X", "env:", "file:secret.txt", "file:../x", "vault:x", ""];
const GLOBS: &[&str] = &["scratch/**", "**/x.kdl", "*.kdl", "[", "a/{b", ""];
const INTS: &[&str] = &["0", "1", "10", "50", "100", "101", "-1", "65535", "65536", "99999999999999999999", "1.5", "0x10"];

/// Argument shapes of the language's nodes.
#[derive(Clone, Copy)]
enum Arg {
    Name,
    Tenant,
    Cluster,
    Fleet,
    ReleaseNamespace,
    Namespace,
    ReleaseName,
    Semver,
    Duration,
    Image,
    Port,
    Volume,
    HostPath,
    Url,
    Str,
    Int,
    Bool,
    LabelKey,
    LabelValue,
    Glob,
    Chart,
    ValuesFile,
    Key,
    EnvName,
}

struct Gen<'r> {
    rng: &'r mut Rng,
    /// Percent chance of a deliberately wrong value, node or property.
    bad: u64,
    /// Declaration names used so far (kept unique unless `bad`) and release names, for `needs`.
    used: Vec<String>,
    releases: Vec<String>,
}

impl Gen<'_> {
    fn any_value(&mut self) -> String {
        match self.rng.below(8) {
            0 => "#true".into(),
            1 => "#false".into(),
            2 => "#null".into(),
            3 => self.rng.pick(INTS).to_string(),
            4 => self.rng.pick(&["#inf", "#-inf", "#nan", "1e3", "-0.0", "(u8)1"]).to_string(),
            5 => {
                let w = self.rng.pick(WORDS);
                kdl_string(self.rng, w)
            }
            _ => {
                let pool = self.rng.pick(&[NAMES, BAD_NAMES, PATHS, IMAGES, SEMVERS, DURATIONS]);
                let s = self.rng.pick(pool);
                kdl_string(self.rng, s)
            }
        }
    }

    /// A value from `pool`, whose first `good` entries are well-formed: usually one of those,
    /// with probability `bad` any entry.
    fn from(&mut self, pool: &[&'static str], good: usize) -> &'static str {
        if self.rng.chance(self.bad) { self.rng.pick(pool) } else { self.rng.pick(&pool[..good]) }
    }

    /// A values-tree scalar: any value when `bad`, else one Helm accepts.
    fn value(&mut self) -> String {
        if self.rng.chance(self.bad) {
            return self.any_value();
        }
        let v = self.rng.pick(&["1", "3", "-2", "1.5", "#true", "#false", "#null", "nginx", "\"1.4.2\"", "\"\"", "\"é🦀\""]);
        v.to_string()
    }

    fn arg(&mut self, a: Arg) -> String {
        if self.rng.chance(self.bad / 3) {
            return self.any_value();
        }
        let s: &str = match a {
            Arg::Name => self.from(NAMES, NAMES.len()),
            Arg::Tenant => self.from(&["acme", "acme", "globex", "initech"], 3),
            Arg::Cluster => self.from(&["okd-prod", "okd-prod", "okd-staging", "okd-dev"], 3),
            Arg::Fleet => self.from(&["pico", "other"], 1),
            Arg::ReleaseNamespace => self.from(&["acme-prod", "acme-prod", "acme-x", "globex", "globex-a", "kube-system"], 5),
            Arg::Namespace => self.from(NAMESPACES, 5),
            Arg::ReleaseName => self.from(&["web", "api", "db", "shop.web", "portal", "a", "Web", "a_b"], 6),
            Arg::Semver => self.from(SEMVERS, 6),
            Arg::Duration => self.from(DURATIONS, 5),
            Arg::Image => self.from(IMAGES, 4),
            Arg::Port => {
                if self.rng.chance(50) {
                    return self.from(&["8080", "1", "65535", "0", "65536", "-1"], 3).to_string();
                }
                self.from(PORTS, 3)
            }
            Arg::Volume => self.from(VOLUMES, 3),
            Arg::HostPath => self.from(HOST_PATHS, 3),
            Arg::Url => self.from(URLS, 4),
            Arg::Chart => {
                self.from(&["_support/charts/plain", "_support/charts/plain", "charts/web", "../outside", "ftp://x", "_support/charts/no-chart-yaml"], 3)
            }
            Arg::ValuesFile => self.from(&["_support/values/good.yaml", "values/web-common.yaml", "_support/values/broken.yaml", "nope.yaml"], 2),
            Arg::Key => self.from(&["_support/keys/fleet.pub", "fleets/keys/pico.pub", "_support/keys/bad.pub", "/etc/passwd"], 2),
            Arg::Str => self.from(&["hello", "In-store devices", "", "é🦀", "--up", "a\"b\\c\nd"], 6),
            Arg::Int => return self.from(INTS, INTS.len()).to_string(),
            Arg::Bool => return self.from(&["#true", "#false", "#null", "yes"], 2).to_string(),
            Arg::LabelKey => self.from(LABEL_KEYS, 5),
            Arg::LabelValue => self.from(LABEL_VALUES, 7),
            Arg::Glob => self.from(GLOBS, 3),
            Arg::EnvName => self.from(ENV_NAMES, 3),
        };
        kdl_string(self.rng, s)
    }

    /// `name` followed by `n` arguments of shape `a` (occasionally one fewer or more).
    fn leaf(&mut self, name: &str, a: Arg, lo: usize, hi: usize) -> Node {
        let mut n = self.rng.range(lo, hi);
        if self.rng.chance(self.bad) {
            n = if n > 0 && self.rng.chance(50) { n - 1 } else { n + 1 };
        }
        let entries = (0..n).map(|_| self.arg(a)).collect();
        Node::new(name, entries)
    }

    /// `key=value` properties.
    fn labels(&mut self, max: usize, key: Arg, value: Arg) -> Vec<String> {
        (0..self.rng.range(1, max))
            .map(|_| {
                let k = self.arg(key);
                let v = self.arg(value);
                format!("{k}={v}")
            })
            .collect()
    }

    /// Decides whether to write a child node: required ones usually, optional ones sometimes,
    /// and occasionally twice.
    fn times(&mut self, required: bool) -> usize {
        let p = if required { 100 - self.bad / 2 } else { 45 };
        if !self.rng.chance(p) {
            0
        } else if self.rng.chance(self.bad / 2) {
            2
        } else {
            1
        }
    }

    fn declaration(&mut self, kind: &str) -> Node {
        let name_arg = if kind == "release" { Arg::ReleaseName } else { Arg::Name };
        let mut name = self.arg(name_arg);
        if self.bad == 0 || !self.rng.chance(self.bad) {
            let base = name.clone();
            let mut n = 2;
            while self.used.contains(&format!("{kind} {name}")) {
                name = format!("{}-{n}", base.trim_matches('"'));
                n += 1;
            }
        }
        self.used.push(format!("{kind} {name}"));
        if kind == "release" {
            self.releases.push(name.clone());
        }
        let mut decl = Node::new(kind, vec![name]);
        let mut kids: Vec<Node> = Vec::new();
        if self.rng.chance(20) {
            kids.push(self.leaf("description", Arg::Str, 1, 1));
        }
        match kind {
            "repository" => {
                for _ in 0..self.times(false) {
                    kids.push(self.leaf("kube-version", Arg::Semver, 1, 1));
                }
                for _ in 0..self.times(false) {
                    kids.push(self.leaf("exclude", Arg::Glob, 1, 3));
                }
            }
            "tenant" => {
                for _ in 0..self.times(true) {
                    kids.push(self.leaf("namespaces", Arg::Namespace, 1, 3));
                }
                for _ in 0..self.times(false) {
                    let mut sa = self.leaf("service-account", Arg::Name, 1, 1);
                    if self.rng.chance(60) {
                        let ns = self.arg(Arg::Namespace);
                        sa.entries.push(format!("namespace={ns}"));
                    }
                    kids.push(sa);
                }
            }
            "cluster" => {
                for _ in 0..self.times(false) {
                    kids.push(self.leaf("context", Arg::Name, 1, 1));
                }
                for _ in 0..self.times(false) {
                    let entries = self.labels(3, Arg::LabelKey, Arg::LabelValue);
                    kids.push(Node::new("labels", entries));
                }
                for _ in 0..self.times(false) {
                    kids.push(self.leaf("kube-version", Arg::Semver, 1, 1));
                }
            }
            "release" => {
                let tenant = self.arg(Arg::Tenant);
                if !self.rng.chance(self.bad) {
                    let ns = if tenant.contains("globex") { self.from(&["globex", "globex-a"], 2) } else { self.from(&["acme-prod", "acme-x"], 2) };
                    kids.push(Node::new("tenant", vec![tenant]));
                    kids.push(Node::new("namespace", vec![ns.to_string()]));
                }
                for (child, a) in [("tenant", Arg::Tenant), ("cluster", Arg::Cluster), ("namespace", Arg::ReleaseNamespace), ("chart", Arg::Chart)] {
                    if kids.iter().any(|k| k.name == child) {
                        continue;
                    }
                    for _ in 0..self.times(true) {
                        kids.push(self.leaf(child, a, 1, 1));
                    }
                }
                if self.rng.chance(25) {
                    kids.push(self.leaf("version", Arg::Semver, 1, 1));
                }
                for _ in 0..self.rng.range(0, 2) {
                    kids.push(self.leaf("values-file", Arg::ValuesFile, 1, 1));
                }
                for _ in 0..self.times(false) {
                    let mut v = Node::new("values", Vec::new());
                    v.children = Some(self.values_tree(0));
                    kids.push(v);
                }
                for _ in 0..self.rng.range(0, 1) {
                    let key = self.from(&["db.password", "auth.password", "image.tag", "a..b", ""], 3);
                    let key = kdl_string(self.rng, key);
                    let from = self.from(SECRET_SOURCES, 1);
                    let from = kdl_string(self.rng, from);
                    kids.push(Node::new("secret-value", vec![key, format!("from={from}")]));
                }
                for _ in 0..self.times(false) {
                    let earlier: Vec<String> = self.releases.iter().rev().skip(1).cloned().collect();
                    if earlier.is_empty() || self.rng.chance(self.bad) {
                        kids.push(self.leaf("needs", Arg::ReleaseName, 1, 2));
                    } else {
                        let r = self.rng.pick_ref(&earlier).clone();
                        kids.push(Node::new("needs", vec![r]));
                    }
                }
            }
            "fleet" => {
                for _ in 0..self.times(true) {
                    kids.push(self.leaf("nats", Arg::Url, 1, 2));
                }
                for _ in 0..self.times(true) {
                    kids.push(self.leaf("agent-version", Arg::Semver, 1, 1));
                }
                for _ in 0..self.times(true) {
                    kids.push(self.leaf("signing-key", Arg::Key, 1, 1));
                }
                for _ in 0..self.times(false) {
                    kids.push(self.leaf("tenants", Arg::Tenant, 1, 2));
                }
                for _ in 0..self.times(false) {
                    let mut n = self.leaf("allow-host-path", Arg::HostPath, 1, 1);
                    let tenant = self.arg(Arg::Tenant);
                    n.entries.push(format!("tenant={tenant}"));
                    if self.rng.chance(50) {
                        let b = self.arg(Arg::Bool);
                        n.entries.push(format!("read-only={b}"));
                    }
                    kids.push(n);
                }
            }
            "device" => {
                for _ in 0..self.times(true) {
                    kids.push(self.leaf("fleet", Arg::Fleet, 1, 1));
                }
                for _ in 0..self.rng.range(0, 2) {
                    let entries = self.labels(3, Arg::LabelKey, Arg::LabelValue);
                    kids.push(Node::new("labels", entries));
                }
            }
            "deployment" => {
                for (child, a) in [("tenant", Arg::Tenant), ("fleet", Arg::Fleet)] {
                    for _ in 0..self.times(true) {
                        kids.push(self.leaf(child, a, 1, 1));
                    }
                }
                for _ in 0..self.times(true) {
                    let entries = if self.rng.chance(70) { self.labels(2, Arg::LabelKey, Arg::LabelValue) } else { Vec::new() };
                    let mut sel = Node::new("selector", entries);
                    if self.rng.chance(60) {
                        let mut exprs = Vec::new();
                        for _ in 0..self.rng.range(1, 3) {
                            let op = self.rng.pick(&["in", "not-in", "exists", "does-not-exist"]);
                            let (lo, hi) = if op.ends_with("in") { (2, 3) } else { (1, 1) };
                            let mut n = self.leaf(op, Arg::LabelValue, lo, hi);
                            let key = self.arg(Arg::LabelKey);
                            match n.entries.first_mut() {
                                Some(first) => *first = key,
                                None => n.entries.push(key),
                            }
                            exprs.push(n);
                        }
                        sel.children = Some(exprs);
                    }
                    kids.push(sel);
                }
                for _ in 0..self.rng.range(0, 1) {
                    kids.push(self.container("init-container"));
                }
                let min = usize::from(self.rng.chance(90));
                for _ in 0..self.rng.range(min, 2) {
                    kids.push(self.container("container"));
                }
                for _ in 0..self.times(false) {
                    let mut r = Node::new("rollout", Vec::new());
                    let mut steps = Vec::new();
                    if self.rng.chance(self.bad * 2) {
                        for _ in 0..self.rng.range(0, 3) {
                            steps.push(self.leaf("step", Arg::Int, 1, 1));
                        }
                    } else {
                        let mut pct = 0;
                        while pct < 100 {
                            pct = (pct + self.rng.range(1, 100)).min(100);
                            steps.push(Node::new("step", vec![pct.to_string()]));
                        }
                    }
                    if self.rng.chance(50) {
                        let n = self.from(&["0", "1", "3", "-1", "1.5"], 3).to_string();
                        steps.push(Node::new("max-failed", vec![n]));
                    }
                    if self.rng.chance(50) {
                        steps.push(self.leaf("health-timeout", Arg::Duration, 1, 1));
                    }
                    if self.rng.chance(30) {
                        steps.push(self.leaf("settle", Arg::Duration, 1, 1));
                    }
                    if self.rng.chance(50) {
                        steps.push(self.leaf("auto-revert", Arg::Bool, 1, 1));
                    }
                    r.children = Some(steps);
                    kids.push(r);
                }
            }
            _ => {}
        }
        self.spoil(&mut kids);
        decl.children = Some(kids);
        decl
    }

    fn container(&mut self, kind: &str) -> Node {
        let mut c = Node::new(kind, vec![self.arg(Arg::Name)]);
        let mut kids = Vec::new();
        for _ in 0..self.times(true) {
            kids.push(self.leaf("image", Arg::Image, 1, 1));
        }
        for (child, a, hi) in [("command", Arg::Str, 2), ("args", Arg::Str, 3), ("port", Arg::Port, 1), ("volume", Arg::Volume, 1)] {
            for _ in 0..self.times(false) {
                kids.push(self.leaf(child, a, 1, hi));
            }
        }
        for _ in 0..self.times(false) {
            let entries = self.labels(2, Arg::EnvName, Arg::Str);
            kids.push(Node::new("env", entries));
        }
        if kind == "init-container" || self.rng.chance(self.bad) {
            for _ in 0..self.times(false) {
                kids.push(self.leaf("timeout", Arg::Duration, 1, 1));
            }
        } else if self.rng.chance(30) {
            let r = self.from(&["always", "on-failure", "no", "sometimes"], 3).to_string();
            kids.push(Node::new("restart", vec![r]));
        }
        self.spoil(&mut kids);
        c.children = Some(kids);
        c
    }

    /// A Helm values tree.
    fn values_tree(&mut self, depth: usize) -> Vec<Node> {
        let keys = ["replicaCount", "image", "tag", "repository", "hosts", "enabled", "config", "service", "port", "env", "args", "x"];
        let mut out = Vec::new();
        for _ in 0..self.rng.range(0, 4) {
            let key = self.rng.pick(&keys);
            let key = kdl_string(self.rng, key);
            let shape = if depth >= 3 { self.rng.below(3) } else { self.rng.below(7) };
            let node = match shape {
                0 | 1 => {
                    let v = self.value();
                    Node::new(&key, vec![v])
                }
                2 => Node::new(&key, (0..self.rng.range(2, 3)).map(|_| self.value()).collect()),
                3 | 4 => {
                    let mut n = Node::new(&key, Vec::new());
                    if self.rng.chance(30) {
                        let v = self.any_value();
                        n.entries.push(format!("repository={v}"));
                    }
                    n.children = Some(self.values_tree(depth + 1));
                    n
                }
                5 => {
                    let mut n = Node::new(&key, Vec::new());
                    let items = (0..self.rng.range(0, 3))
                        .map(|_| {
                            if self.rng.chance(70) {
                                let v = self.value();
                                Node::new("-", vec![v])
                            } else {
                                let mut item = Node::new("-", Vec::new());
                                item.children = Some(self.values_tree(depth + 1));
                                item
                            }
                        })
                        .collect();
                    n.children = Some(items);
                    n
                }
                _ if self.rng.chance(self.bad * 2) => Node::new(&key, Vec::new()), // an empty node: an error
                _ => {
                    let v = self.value();
                    Node::new(&key, vec![v])
                }
            };
            out.push(node);
        }
        out
    }

    /// Occasionally shuffles, adds unknown nodes or properties.
    fn spoil(&mut self, kids: &mut Vec<Node>) {
        if self.rng.chance(self.bad) {
            let name = self.rng.pick(WORDS);
            let v = self.any_value();
            kids.insert(self.rng.below(kids.len() + 1), Node::new(name, vec![v]));
        }
        if self.rng.chance(self.bad) && !kids.is_empty() {
            let i = self.rng.below(kids.len());
            let key = self.rng.pick(&["namespace", "from", "foo", "version", "x"]);
            let v = self.any_value();
            kids[i].entries.push(format!("{key}={v}"));
        }
        if self.rng.chance(20) && kids.len() > 1 {
            let (i, j) = (self.rng.below(kids.len()), self.rng.below(kids.len()));
            kids.swap(i, j);
        }
    }

    /// A file of declarations; with `preamble`, a valid set of tenants, clusters, a fleet and
    /// devices first, so the generated releases and deployments can resolve and compile.
    fn file(&mut self, settings: bool, preamble: bool) -> String {
        let mut nodes = Vec::new();
        if settings {
            nodes.push(self.declaration("repository"));
        }
        let kinds: &[&str] = if preamble {
            &["release", "release", "release", "device", "deployment", "deployment"]
        } else {
            &["tenant", "cluster", "release", "release", "fleet", "device", "device", "deployment", "deployment"]
        };
        for _ in 0..self.rng.range(1, 4) {
            let kind = self.rng.pick(kinds);
            let kind = if self.rng.chance(self.bad / 3) { self.rng.pick(&["repository", "tenants", "release2", "values"]) } else { kind };
            nodes.push(self.declaration(kind));
        }
        let mut out = if preamble { PREAMBLE.to_string() } else { String::new() };
        let style = Style { semis: self.rng.chance(20), comments: self.rng.chance(30), indent: self.rng.pick(&[4usize, 2, 0, 7]) };
        for n in &nodes {
            n.write(self.rng, &style, 0, &mut out);
            out.push('\n');
        }
        out
    }
}

const PREAMBLE: &str = r#"tenant acme { namespaces acme-prod "acme-*"; }
tenant globex { namespaces globex "globex-*"; service-account deployer namespace=globex; }
cluster okd-prod
cluster okd-staging { kube-version "1.31.2"; }
fleet pico { nats "nats://127.0.0.1:4222"; agent-version "0.1.0"; signing-key "_support/keys/fleet.pub"; tenants acme globex; allow-host-path "/srv/shared" tenant=acme read-only=#true; }
device pi-001 { fleet pico; labels site=montreal arch=arm64 tier=canary; }
device nuc-001 { fleet pico; labels site=toronto arch=amd64; }
"#;

#[derive(Clone, Copy)]
struct Style {
    semis: bool,
    comments: bool,
    indent: usize,
}

/// A KDL node under construction: tokens already written as KDL.
struct Node {
    name: String,
    entries: Vec<String>,
    children: Option<Vec<Node>>,
}

impl Node {
    fn new(name: &str, entries: Vec<String>) -> Self {
        Node { name: name.to_string(), entries, children: None }
    }

    fn write(&self, rng: &mut Rng, style: &Style, depth: usize, out: &mut String) {
        let pad = " ".repeat(style.indent * depth);
        out.push_str(&pad);
        if style.comments && rng.chance(5) {
            out.push_str("/- ");
        }
        out.push_str(&self.name);
        for e in &self.entries {
            out.push(' ');
            if style.comments && rng.chance(3) {
                out.push_str("/-");
            }
            out.push_str(e);
            if style.comments && rng.chance(3) {
                out.push_str(" /* c */");
            }
        }
        if let Some(kids) = &self.children {
            out.push_str(" {");
            if style.comments && rng.chance(20) {
                out.push_str(" // open");
            }
            if style.semis && kids.len() <= 4 && kids.iter().all(|k| k.children.is_none()) {
                for k in kids {
                    out.push(' ');
                    k.write(rng, &Style { indent: 0, ..*style }, 0, out);
                    out.push(';');
                }
                out.push_str(" }");
            } else {
                out.push('\n');
                for k in kids {
                    k.write(rng, style, depth + 1, out);
                    if style.comments && rng.chance(10) {
                        out.push_str(" // trailing");
                    }
                    out.push('\n');
                    if rng.chance(5) {
                        out.push('\n');
                    }
                }
                out.push_str(&pad);
                out.push('}');
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generator (c): token soup.

fn token_soup(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.range(1, 60) {
        match rng.below(4) {
            0 => out.extend_from_slice(rng.pick(TOKENS).as_bytes()),
            1 => out.extend_from_slice(rng.pick(WORDS).as_bytes()),
            2 => out.push(b' '),
            _ => out.push((rng.next() & 0xff) as u8),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// One case.

#[derive(Clone, Debug)]
struct Case {
    generator: &'static str,
    /// Generated KDL files: (path, contents).
    files: Vec<(String, Vec<u8>)>,
    /// Also mount the example repository's [`CONTEXT`] files.
    with_context: bool,
}

/// Example-repository files mounted beside a mutated one, so its references resolve without
/// parsing the whole example repository on every case.
const CONTEXT: &[&str] = &["clusters.kdl", "tenants/acme.kdl", "tenants/globex.kdl", "fleets/pico.kdl", "devices/montreal.kdl"];

fn generate(seed: u64, index: u64, corpus: &Corpus) -> Case {
    let mut rng = Rng::for_case(seed, index);
    let roll = rng.below(100);
    if roll < 45 {
        let (path, text) = rng.pick_ref(&corpus.files).clone();
        let with_context = corpus.tenants.iter().any(|(p, _)| *p == path) && rng.chance(40);
        let text = if rng.chance(50) {
            text
        } else {
            // A window of lines: a declaration or a few children, mutated on its own.
            let lines: Vec<&[u8]> = text.split(|&c| c == b'\n').collect();
            let start = rng.below(lines.len());
            let end = (start + rng.range(1, 20)).min(lines.len());
            lines[start..end].join(&b'\n')
        };
        let mutated = mutate(&mut rng, &text, corpus);
        Case { generator: "mutate", files: vec![(path, mutated)], with_context }
    } else if roll < 93 {
        let bad = rng.pick(&[0u64, 0, 2, 5, 15, 30]);
        let mut g = Gen { rng: &mut rng, bad, used: Vec::new(), releases: Vec::new() };
        let n = g.rng.pick(&[1, 1, 1, 1, 1, 1, 2, 2, 2, 3]);
        let settings = g.rng.chance(15);
        let preamble = bad <= 5 && g.rng.chance(60);
        let mut files = Vec::new();
        for i in 0..n {
            let path = if settings && i == 0 { "harmony.kdl" } else { ["main.kdl", "b.kdl", "sub/c.kdl"][i] };
            let mut text = g.file(settings && i == 0, preamble && i == n - 1).into_bytes();
            text.truncate(MAX_INPUT);
            files.push((path.to_string(), text));
        }
        Case { generator: "grammar", files, with_context: false }
    } else {
        Case { generator: "tokens", files: vec![("main.kdl".into(), token_soup(&mut rng))], with_context: false }
    }
}

#[derive(Default)]
struct Stats {
    formatted: AtomicUsize,
    not_kdl: AtomicUsize,
    fmt_unsafe: AtomicUsize,
    compiled: AtomicUsize,
    diagnostics: AtomicUsize,
    /// Inputs the formatter refused to format (`FormatError::Unsafe`), the first few.
    unsafe_examples: Mutex<Vec<String>>,
    /// Time spent per phase, in microseconds summed over threads.
    fmt_us: AtomicUsize,
    compile_us: AtomicUsize,
    render_us: AtomicUsize,
}

/// What went wrong with a case.
type Failure = String;

/// Runs every property on one case; `Err` describes the first that failed.
fn run_case(case: &Case, corpus: &Corpus, stats: &Stats) -> Result<(), Failure> {
    let t0 = std::time::Instant::now();
    for (path, bytes) in &case.files {
        let text = String::from_utf8_lossy(bytes);
        let once = catch_unwind(|| format_kdl(&text)).map_err(|e| format!("format_kdl panicked on {path}: {}", panic_message(&e)))?;
        match once {
            Ok(once) => {
                stats.formatted.fetch_add(1, Ordering::Relaxed);
                let twice =
                    catch_unwind(|| format_kdl(&once)).map_err(|e| format!("format_kdl panicked on its own output for {path}: {}", panic_message(&e)))?;
                if twice.as_ref() != Ok(&once) {
                    return Err(format!("format_kdl is not idempotent on {path}:\nonce:\n{once}\ntwice:\n{twice:?}"));
                }
            }
            Err(FormatError::Syntax) => {
                stats.not_kdl.fetch_add(1, Ordering::Relaxed);
            }
            Err(FormatError::Unsafe) => {
                stats.fmt_unsafe.fetch_add(1, Ordering::Relaxed);
                let mut examples = stats.unsafe_examples.lock().unwrap();
                if examples.len() < 3 {
                    examples.push(text.to_string());
                }
            }
        }
    }
    stats.fmt_us.fetch_add(t0.elapsed().as_micros() as usize, Ordering::Relaxed);
    let mut fs = corpus.base.clone();
    if case.with_context {
        for (p, t) in corpus.tenants.iter().filter(|(p, _)| CONTEXT.contains(&p.as_str())) {
            fs.insert(p.clone(), t.clone());
        }
    }
    for (p, t) in &case.files {
        fs.insert(p.clone(), t.clone());
    }
    let rendered = catch_unwind(AssertUnwindSafe(|| {
        let t1 = std::time::Instant::now();
        let out = compile_repo(&fs).expect("MemFs never fails to list");
        stats.compile_us.fetch_add(t1.elapsed().as_micros() as usize, Ordering::Relaxed);
        let t2 = std::time::Instant::now();
        // What `harmony check` does with the output: render, locate, hash.
        let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor()).with_width(100);
        let mut text = String::new();
        for d in &out.diagnostics {
            text.push_str(&diag::render(d, &out.sources, &handler));
            let _ = d.location(&out.sources);
        }
        let hash = out.repo.as_ref().map(|r| r.hash());
        stats.render_us.fetch_add(t2.elapsed().as_micros() as usize, Ordering::Relaxed);
        (out.diagnostics.len(), hash.is_some(), text.len())
    }))
    .map_err(|e| format!("compile_repo/render panicked: {}", panic_message(&e)))?;
    stats.diagnostics.fetch_add(rendered.0, Ordering::Relaxed);
    if rendered.1 {
        stats.compiled.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn panic_message(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| e.downcast_ref::<String>().cloned()).unwrap_or_else(|| "<non-string panic>".into())
}

/// Greedily removes chunks of the failing files while the case still fails.
fn shrink(mut case: Case, corpus: &Corpus) -> Case {
    let stats = Stats::default();
    let fails = |c: &Case| run_case(c, corpus, &stats).is_err();
    for f in 0..case.files.len() {
        let mut chunk = case.files[f].1.len().max(1);
        while chunk >= 1 {
            let mut start = 0;
            while start < case.files[f].1.len() {
                let mut candidate = case.clone();
                let end = (start + chunk).min(candidate.files[f].1.len());
                candidate.files[f].1.drain(start..end);
                if fails(&candidate) {
                    case = candidate;
                } else {
                    start += chunk;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    case
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim().replace('_', "");
    Some(if let Some(hex) = v.strip_prefix("0x") { u64::from_str_radix(hex, 16) } else { v.parse() }.unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

fn describe(case: &Case) -> String {
    let mut s = format!("generator: {}, with example-repository context: {}\n", case.generator, case.with_context);
    for (p, t) in &case.files {
        let _ = writeln!(s, "--- {p} ({} bytes)\n{:?}", t.len(), String::from_utf8_lossy(t));
    }
    s
}

#[test]
fn generated_inputs_never_panic() {
    let corpus = corpus();
    let seed = env_u64("HARMONY_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let (first, count) = match env_u64("HARMONY_FUZZ_CASE") {
        Some(one) => (one, 1),
        None => (0, env_u64("HARMONY_FUZZ_CASES").unwrap_or(DEFAULT_CASES)),
    };
    // Panics are caught and reported below with their input; keep the default hook's output
    // short.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    let started = std::time::Instant::now();
    let stats = Stats::default();
    let failures: Mutex<Vec<(u64, Failure)>> = Mutex::new(Vec::new());
    let generators: Mutex<[usize; 3]> = Mutex::new([0; 3]);
    (first..first + count).into_par_iter().for_each(|i| {
        if failures.lock().unwrap().len() >= 5 {
            return;
        }
        let case = generate(seed, i, &corpus);
        {
            let mut g = generators.lock().unwrap();
            g[match case.generator {
                "mutate" => 0,
                "grammar" => 1,
                _ => 2,
            }] += 1;
        }
        if let Err(f) = run_case(&case, &corpus, &stats) {
            failures.lock().unwrap().push((i, f));
        }
    });
    let elapsed = started.elapsed();
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|(i, _)| *i);
    let g = generators.into_inner().unwrap();
    eprintln!(
        "never_panics: {count} cases (seed {seed:#x}) in {elapsed:.1?}: {} mutated, {} grammar, {} token soup; \
         {} files formatted, {} not KDL, {} formatter refusals (Unsafe); {} repositories compiled, {} diagnostics rendered; \
         cpu time: fmt {} ms, compile {} ms, render {} ms",
        g[0],
        g[1],
        g[2],
        stats.formatted.load(Ordering::Relaxed),
        stats.not_kdl.load(Ordering::Relaxed),
        stats.fmt_unsafe.load(Ordering::Relaxed),
        stats.compiled.load(Ordering::Relaxed),
        stats.diagnostics.load(Ordering::Relaxed),
        stats.fmt_us.load(Ordering::Relaxed) / 1000,
        stats.compile_us.load(Ordering::Relaxed) / 1000,
        stats.render_us.load(Ordering::Relaxed) / 1000,
    );
    for text in stats.unsafe_examples.lock().unwrap().iter() {
        eprintln!("formatter refused (Unsafe): {text:?}");
    }
    if let Some((i, failure)) = failures.first() {
        let case = generate(seed, *i, &corpus);
        let small = shrink(case.clone(), &corpus);
        std::panic::set_hook(default_hook);
        panic!(
            "case {i} (seed {seed:#x}) failed: {failure}\n\nshrunk input:\n{}\noriginal input:\n{}\n\
             rerun: HARMONY_FUZZ_SEED={seed:#x} HARMONY_FUZZ_CASE={i} cargo test -p harmony-compiler --test never_panics\n\
             ({} failing cases in all: {:?})",
            describe(&small),
            describe(&case),
            failures.len(),
            failures.iter().map(|(i, _)| i).collect::<Vec<_>>()
        );
    }
    std::panic::set_hook(default_hook);
    if count >= 1000 {
        // The generators must reach past the parser.
        assert!(stats.compiled.load(Ordering::Relaxed) > 0, "no generated repository compiled");
        assert!(stats.formatted.load(Ordering::Relaxed) > count as usize / 4, "too few inputs parse");
    }
}

/// Inputs that once panicked or broke a property, kept as regression cases.
const REGRESSIONS: &[(&str, &str)] = &[];

#[test]
fn regressions_never_panic() {
    let corpus = corpus();
    let stats = Stats::default();
    for (path, text) in REGRESSIONS {
        let case = Case { generator: "regression", files: vec![(path.to_string(), text.as_bytes().to_vec())], with_context: false };
        if let Err(f) = run_case(&case, &corpus, &stats) {
            panic!("regression {text:?}: {f}");
        }
    }
}

#[test]
fn generators_are_deterministic() {
    let corpus = corpus();
    for i in [0, 1, 2, 99, 12345] {
        let (a, b) = (generate(DEFAULT_SEED, i, &corpus), generate(DEFAULT_SEED, i, &corpus));
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        for (_, t) in &a.files {
            assert!(t.len() <= MAX_INPUT);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile files (issue 20): deep, huge and malformed inputs the generators above never reach
// (they stay under 2 KB). A stack overflow aborts the whole test binary, so the `attack_*`
// tests failed before the fix by aborting, not by asserting.

/// What `harmony check` and `harmony fmt` do with one file beside the `_support/` fixtures
/// (compile, render, locate, format), panics caught: the diagnostics' codes and the longest
/// rendered diagnostic.
fn check_file(text: &[u8]) -> (Vec<&'static str>, usize) {
    let mut fs = corpus_base();
    fs.insert("main.kdl", text.to_vec());
    let result = catch_unwind(AssertUnwindSafe(|| {
        let out = compile_repo(&fs).expect("MemFs never fails to list");
        let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor()).with_width(100);
        let longest = out.diagnostics.iter().map(|d| diag::render(d, &out.sources, &handler).len()).max().unwrap_or(0);
        for d in &out.diagnostics {
            let _ = d.location(&out.sources);
        }
        let _ = format_kdl(&String::from_utf8_lossy(text));
        (out.diagnostics.iter().map(|d| d.code.as_str()).collect(), longest)
    }));
    result.unwrap_or_else(|e| panic!("check or fmt panicked: {}", panic_message(&e)))
}

/// The `_support/` fixtures alone.
fn corpus_base() -> MemFs {
    static BASE: std::sync::OnceLock<MemFs> = std::sync::OnceLock::new();
    BASE.get_or_init(|| corpus().base).clone()
}

fn one(text: String) -> (Vec<&'static str>, usize) {
    check_file(text.as_bytes())
}

/// Nesting up to 100,000 levels, as blocks, values trees and comments: a `too-deep` diagnostic.
#[test]
fn attack_deep_nesting_is_a_diagnostic_not_an_abort() {
    for n in [100, 1_000, 10_000, 100_000] {
        let values = format!(
            "tenant acme {{ namespaces acme }}\ncluster c\nrelease r {{\n tenant acme; cluster c; namespace acme; chart \"_support/charts/plain\"\n values {{\n{}{}\n }}\n}}\n",
            "k {\n".repeat(n),
            "}\n".repeat(n)
        );
        for (what, text) in [
            ("blocks", format!("a {}{}", "{ b ".repeat(n), "}".repeat(n))),
            ("unclosed blocks", "a {".repeat(n)),
            ("values tree", values),
            ("nested comments", format!("{}{}a", "/*".repeat(n), "*/".repeat(n))),
            ("unclosed comments", "/*".repeat(n)),
        ] {
            let (codes, _) = one(text);
            assert_eq!(codes, ["harmony::too-deep"], "{what} nested {n} deep");
        }
    }
}

/// Text read as strings by the nesting scan but as blocks by kdl-rs once it recovers from the
/// error inside: parsed on a big enough stack, or refused, never an abort.
#[test]
fn attack_nesting_hidden_behind_a_syntax_error_does_not_abort() {
    for n in [1_000, 10_000, 100_000] {
        for text in [
            format!("a \"\\q {}{}\"", "{ b \"}\" ".repeat(n), "}".repeat(n)),
            format!("a x\"y {}{}\"", "{ b ".repeat(n), "}".repeat(n)),
            format!("a 0x\" {}", "{ b ".repeat(n)),
            format!("/*{}*/ a", "* /".repeat(n)),
        ] {
            let (codes, _) = one(text);
            assert!(!codes.is_empty() && codes.iter().all(|c| ["harmony::syntax", "harmony::too-deep", "harmony::unknown-node"].contains(c)), "{codes:?}");
        }
    }
}

/// Multi-megabyte identifiers, strings and lines, and long comments, multi-line and raw
/// strings: every diagnostic renders (before the fix: miette panicked on labels past column
/// 65,535) and stays short (each quotes at most an excerpt of the input).
#[test]
fn attack_huge_strings_and_lines_render_bounded() {
    let (mb, kb) = (2 << 20, 256 << 10);
    let long_line: String = (0..mb / 8).map(|i| format!(" n{i}")).collect();
    for (what, text) in [
        ("identifier", format!("{} {{\n", "a".repeat(mb))),
        ("string value", format!("tenant acme {{ namespaces \"{}\" }}\n", "a".repeat(mb))),
        ("multi-byte string", format!("tenant \"{}\n", "é".repeat(mb / 2))),
        ("line of arguments ending in an error", format!("tenant acme {{ namespaces{long_line} bogus=1 }}\n")),
        ("comment then error", format!("// {}\nbogus \"{}\"\n", "x".repeat(kb), "y".repeat(kb))),
        ("multi-line string", format!("tenant acme {{ namespaces acme; description \"\"\"\n{}\"\"\" }}\nbogus\n", "line\n".repeat(kb / 5))),
        ("long raw string", format!("cluster c {{ context #\"{}\"#; labels \"{}\"=1 }}\n", "x".repeat(kb), "k".repeat(kb))),
    ] {
        let (codes, longest) = one(text);
        assert!(!codes.is_empty(), "{what}: expected a diagnostic");
        assert!(longest < 20_000, "{what}: a rendered diagnostic is {longest} bytes");
    }
}

/// Mutations of every corpus file beyond the generators' 2 KB: BOM, CRLF and CR line ends,
/// truncation at many points, bit flips, invalid UTF-8, random bytes and whole files repeated
/// into megabytes.
#[test]
fn mutated_whole_files_never_panic() {
    let corpus = corpus();
    let stats = Stats::default();
    let mut rng = Rng::for_case(DEFAULT_SEED, u64::MAX);
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for (path, text) in &corpus.files {
        let mut variants = vec![
            [&b"\xef\xbb\xbf"[..], text].concat(),
            String::from_utf8_lossy(text).replace('\n', "\r\n").into_bytes(),
            String::from_utf8_lossy(text).replace('\n', "\r").into_bytes(),
        ];
        for k in 1..8 {
            variants.push(text[..text.len() * k / 8].to_vec());
        }
        for bad in [&b"\xff"[..], b"\xc3", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00"] {
            let mut t = text.clone();
            let at = rng.below(t.len() + 1);
            t.splice(at..at, bad.iter().copied());
            variants.push(t);
        }
        let mut flipped = text.clone();
        for _ in 0..8 {
            if !flipped.is_empty() {
                let i = rng.below(flipped.len());
                flipped[i] ^= 1 << rng.below(8);
            }
        }
        variants.push(flipped);
        cases.extend(variants.into_iter().map(|v| (path.clone(), v)));
    }
    cases.push(("main.kdl".into(), (0..64 << 10).map(|_| (rng.next() & 0xff) as u8).collect()));
    let big: Vec<u8> = corpus.tenants.iter().flat_map(|(_, t)| t.iter().copied().chain(*b"\n")).collect();
    cases.push(("main.kdl".into(), big.repeat((2 << 20) / big.len().max(1))));
    let failures: Vec<String> = cases
        .par_iter()
        .filter_map(|(path, bytes)| {
            let case = Case { generator: "whole-file", files: vec![(path.clone(), bytes.clone())], with_context: false };
            run_case(&case, &corpus, &stats).err().map(|f| format!("{path} ({} bytes): {f}", bytes.len()))
        })
        .collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
