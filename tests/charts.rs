//! Remote charts end to end (docs/charts.md): a real OCI registry (Debian's `docker-registry`)
//! and a static Helm repository on loopback, charts packaged, pushed and indexed by Helm's own
//! SDK, and the real `harmony` binary locking, pulling and rendering them — compared with what
//! Helm itself resolves and renders. Without `docker-registry` or helm-python-sdk the tests
//! skip, except under `CI=true`, where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use harmony_testkit::charts::{Registry, RegistryConfig, StaticServer, helm_package, helm_push, helm_repo_index, helm_sdk};

mod common;
use common::Out;

const KEY: &str = "4242424242424242424242424242424242424242424242424242424242424242\n";

/// A repository and a chart cache of its own in a temporary directory.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new(releases: &str) -> Work {
        let dir = tempfile::tempdir().unwrap();
        let w = Work { dir };
        w.write("repo/harmony.kdl", "repository charts-test {\n    kube-version \"1.30.0\"\n}\n");
        w.write("repo/tenants.kdl", "tenant acme {\n    namespaces acme-prod\n}\n\ncluster prod\n");
        w.write("repo/releases.kdl", releases);
        w.write("key.hex", KEY);
        w
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let out = Command::new(env!("CARGO_BIN_EXE_harmony"))
            .args(["--repo", "repo"])
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("HARMONY_REPO")
            .env_remove("RUST_LOG")
            .env_remove("HARMONY_REGISTRY_PLAIN_HTTP")
            .env("NO_COLOR", "1")
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("HARMONY_FINGERPRINT_KEY_FILE", self.path("key.hex"))
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        Out { code: out.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&out.stdout).into_owned(), stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
    }

    fn lock(&self) -> serde_json::Value {
        serde_json::from_str(&self.read("repo/harmony.lock")).unwrap()
    }
}

fn web_chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants/charts/web")
}

/// The example's `web` chart packaged by Helm at each version: (version, archive).
fn packaged(python: &Path, dest: &Path, versions: &[&str]) -> Vec<(String, PathBuf)> {
    versions.iter().map(|v| (v.to_string(), helm_package(python, &web_chart(), dest, Some(v)))).collect()
}

/// A plain-HTTP registry holding the `web` chart 1.4.2 as Helm packaged (into the returned
/// directory) and pushed it.
fn registry_with_web(python: &Path) -> Option<(Registry, tempfile::TempDir)> {
    let registry = Registry::start(RegistryConfig::default())?;
    let pkg = tempfile::tempdir().unwrap();
    let charts = packaged(python, pkg.path(), &["1.4.2"]);
    helm_push(python, &charts[0].1, &format!("oci://{}/charts", registry.host()));
    Some((registry, pkg))
}

/// `releases.kdl` with release `web` from `oci://HOST/charts/web` at `version`.
fn oci_release(host: &str, version: &str) -> String {
    format!("release web {{\n    tenant acme\n    cluster prod\n    namespace acme-prod\n    chart \"oci://{host}/charts/web\"\n    version \"{version}\"\n}}\n")
}

fn sha256_of(p: &Path) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap())))
}

/// Helm's render of a chart archive (helm-python-sdk), compared with `harmony template`'s
/// output file: manifests per source file, as `scripts/oracle_diff.py` compares them. Prints
/// nothing when identical, else what differs.
fn helm_render_differs(python: &Path, tgz: &Path, harmony_out: &Path, values: &str) -> String {
    helm_sdk(
        python,
        &format!(
            r##"
import json, os, re
from helm_python import Chart
SEP = re.compile(r"(?:^|\s*\n)---\s*")
want = {{}}
for path, text in Chart.load({tgz:?}).render(json.loads({values:?}), name="web", namespace="acme-prod").items():
    b = os.path.basename(path)
    if b.startswith("_") or b == "NOTES.txt": continue
    docs = sorted(d.strip() for d in SEP.split(text) if d.strip())
    if docs: want[path] = docs
got = {{}}
for block in re.split(r"^---\n(?=# Source: )", open({out:?}).read(), flags=re.M):
    if not block.startswith("# Source: "): continue
    head, _, body = block.partition("\n")
    got.setdefault(head[len("# Source: "):].strip(), []).append(body.strip())
got = {{k: sorted(d for d in v if d) for k, v in got.items()}}
got = {{k: v for k, v in got.items() if v}}
if not want:
    print("Helm rendered no manifest")
elif got != want:
    print("helm:", json.dumps(want, indent=1)[:3000])
    print("harmony:", json.dumps(got, indent=1)[:3000])
"##,
            tgz = tgz.display().to_string(),
            out = harmony_out.display().to_string(),
        ),
    )
}

/// Lock, pull, check, template and plan a release from an OCI registry: the lock holds the
/// version Helm picks for the range and the digest of the archive Helm pushed; the release
/// renders byte for byte like the same archive loaded from the repository, and like Helm's SDK
/// pulling and rendering it.
#[test]
fn oci_chart_is_locked_like_helm_and_renders_like_the_local_chart_and_helm() {
    let Some(python) = harmony_testkit::helm_python() else { return };
    let Some(registry) = Registry::start(RegistryConfig::default()) else { return };
    let host = registry.host();
    let pkg = tempfile::tempdir().unwrap();
    let charts = packaged(&python, pkg.path(), &["1.4.2", "1.5.0", "1.6.0-rc.1", "2.0.0"]);
    for (_, tgz) in &charts {
        helm_push(&python, tgz, &format!("oci://{host}/charts"));
    }
    let w = Work::new(&format!(
        r#"release web {{
    tenant acme
    cluster prod
    namespace acme-prod
    chart "oci://{host}/charts/web"
    version "^1.4"
    values {{
        replicaCount 2
    }}
}}
"#
    ));
    // No lock yet: check names the command.
    let out = w.run(&["check"]).expect(1);
    assert!(out.stderr.contains("harmony::lock-outdated") && out.stderr.contains("harmony charts lock"), "{}", out.stderr);

    // TLS is the default: a plain-HTTP registry is reached only when asked.
    let out = w.run(&["charts", "lock"]).expect(1);
    assert!(out.stderr.contains("releases.kdl:5") && out.stderr.contains(&format!("oci://{host}/charts/web")), "{}", out.stderr);
    assert!(!w.path("repo/harmony.lock").exists());
    let out = w.run_env(&["charts", "lock"], &[("HARMONY_REGISTRY_PLAIN_HTTP", "1")]).expect(0);
    assert!(out.stderr.contains("→ web 1.5.0"), "{}", out.stderr);

    // Helm's own choice for the range, and its archive.
    let pulled = tempfile::tempdir().unwrap();
    helm_sdk(&python, &format!("registry.pull('oci://{host}/charts/web', version='^1.4', destination={:?}, plain_http=True)", pulled.path().display().to_string()));
    let helm_tgz = pulled.path().join("web-1.5.0.tgz");
    assert!(helm_tgz.is_file(), "Helm pulled {:?}", std::fs::read_dir(pulled.path()).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>());
    let lock = w.lock();
    let entry = &lock["charts"][0];
    assert_eq!(entry["version"], "1.5.0");
    assert_eq!(entry["constraint"], "^1.4");
    assert_eq!(entry["digest"].as_str().unwrap(), sha256_of(&helm_tgz), "{lock:#}");
    assert_eq!(entry["digest"].as_str().unwrap(), sha256_of(&charts[1].1));
    assert_eq!(entry["url"].as_str().unwrap(), format!("oci://{host}/charts/web:1.5.0"));

    // Locked: check is clean; a second lock changes nothing.
    w.run(&["check"]).expect(0);
    let before = w.read("repo/harmony.lock");
    let out = w.run(&["charts", "lock", "--plain-http"]).expect(0);
    assert!(out.stderr.contains("0 resolved now"), "{}", out.stderr);
    assert_eq!(w.read("repo/harmony.lock"), before);

    // The same archive in the repository renders identically, and so does Helm.
    std::fs::create_dir_all(w.path("repo/charts")).unwrap();
    std::fs::copy(&charts[1].1, w.path("repo/charts/web-1.5.0.tgz")).unwrap();
    let remote = w.run(&["template", "--release", "web"]).expect(0).stdout;
    assert!(remote.contains("replicas: 2"), "{remote}");
    let declared = w.read("repo/releases.kdl");
    let local_decl = declared.replace(&format!("chart \"oci://{host}/charts/web\"\n    version \"^1.4\""), "chart \"charts/web-1.5.0.tgz\"");
    assert_ne!(local_decl, declared);
    w.write("repo/releases.kdl", &local_decl);
    let local = w.run(&["template", "--release", "web"]).expect(0).stdout;
    assert_eq!(remote, local);
    w.write("repo/releases.kdl", &declared);
    w.write("remote.yaml", &remote);
    let differs = helm_render_differs(&python, &helm_tgz, &w.path("remote.yaml"), r#"{"replicaCount": 2}"#);
    assert!(differs.is_empty(), "{differs}");

    // A plan renders it from the cache too.
    let out = w.run(&["plan", "--offline", "--format", "json"]).expect(0);
    assert!(out.stdout.contains("release/prod/acme-prod/web"), "{}", out.stdout);
}

/// After lock and pull, the registry is not needed: check, template and plan work with it
/// stopped; a cache entry altered on disk is refused naming the digest and the command; a
/// missing one names `harmony charts pull`; a vendored chart is read from the repository.
#[test]
fn offline_after_pull_and_tampered_cache_refused() {
    let Some(python) = harmony_testkit::helm_python() else { return };
    let Some((registry, _pkg)) = registry_with_web(&python) else { return };
    let host = registry.host();
    let w = Work::new(&oci_release(&host, "1.4.2"));
    w.run(&["charts", "lock", "--plain-http"]).expect(0);
    let digest = w.lock()["charts"][0]["digest"].as_str().unwrap().to_string();
    let hex = digest.trim_start_matches("sha256:").to_string();
    let cached = w.path(&format!("cache/harmony/charts/sha256/{hex}.tgz"));
    assert!(cached.is_file());

    // A fresh cache: pull fetches it from the registry.
    std::fs::remove_dir_all(w.path("cache")).unwrap();
    let out = w.run(&["template", "--release", "web"]).expect(1);
    assert!(out.stderr.contains("harmony charts pull") && out.stderr.contains(&digest), "{}", out.stderr);
    let out = w.run(&["charts", "pull", "--plain-http"]).expect(0);
    assert!(out.stderr.contains("1 chart(s) fetched"), "{}", out.stderr);
    let out = w.run(&["charts", "pull", "--plain-http"]).expect(0);
    assert!(out.stderr.contains("0 chart(s) fetched, 1 already present"), "{}", out.stderr);

    // Registry gone: everything still works from the cache.
    registry.stop();
    w.run(&["check"]).expect(0);
    let rendered = w.run(&["template", "--release", "web"]).expect(0).stdout;
    w.run(&["plan", "--offline", "--format", "json"]).expect(0);

    // Tampered cache entry: refused, naming the digest and what to do.
    let mut bytes = std::fs::read(&cached).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&cached, &bytes).unwrap();
    for args in [&["template", "--release", "web"][..], &["plan", "--offline", "--format", "json"][..]] {
        let out = w.run(args).expect(1);
        assert!(out.stderr.contains(&digest) && out.stderr.contains("was altered") && out.stderr.contains("harmony charts pull"), "{args:?}: {}", out.stderr);
    }

    // Vendored (the registry is back for the pull, then gone again): read from the repository.
    std::fs::remove_file(&cached).unwrap();
    registry.restart();
    let out = w.run(&["charts", "pull", "--plain-http", "--vendor", "vendor/charts"]).expect(0);
    assert!(out.stderr.contains("in vendor/charts"), "{}", out.stderr);
    assert_eq!(sha256_of(&w.path("repo/vendor/charts/web-1.4.2.tgz")), digest);
    assert_eq!(w.lock()["vendor"], "vendor/charts");
    registry.stop();
    std::fs::remove_dir_all(w.path("cache")).ok();
    assert_eq!(w.run(&["template", "--release", "web"]).expect(0).stdout, rendered);
    std::fs::write(w.path("repo/vendor/charts/web-1.4.2.tgz"), &bytes).unwrap();
    let out = w.run(&["template", "--release", "web"]).expect(1);
    assert!(out.stderr.contains(&digest) && out.stderr.contains("vendor/charts/web-1.4.2.tgz"), "{}", out.stderr);

    // The declaration changes: the lock is outdated, and check says which command fixes it.
    let releases = w.read("repo/releases.kdl").replace("version \"1.4.2\"", "version \"~1.4\"");
    w.write("repo/releases.kdl", &releases);
    let out = w.run(&["check"]).expect(1);
    assert!(out.stderr.contains("harmony::lock-outdated") && out.stderr.contains("`~1.4`") && out.stderr.contains("harmony charts lock"), "{}", out.stderr);
}

/// A chart from a Helm repository (`index.yaml` made by Helm's SDK, served statically): the
/// range resolves to what Helm picks from the same index, the archive's digest is the index's,
/// and it renders like Helm's render of the archive Helm pulls.
#[test]
fn helm_repository_chart_resolves_like_helm() {
    let Some(python) = harmony_testkit::helm_python() else { return };
    let site = tempfile::tempdir().unwrap();
    let charts = packaged(&python, site.path(), &["1.4.2", "1.4.9", "1.5.0", "2.0.0-beta.1"]);
    let server = StaticServer::start(&python, site.path());
    helm_repo_index(&python, site.path(), &server.url());
    let w = Work::new(&format!(
        "release web {{\n    tenant acme\n    cluster prod\n    namespace acme-prod\n    chart \"web\" repo=\"{}\"\n    version \"~1.4\"\n}}\n",
        server.url()
    ));
    let out = w.run(&["charts", "lock"]).expect(0);
    assert!(out.stderr.contains("→ web 1.4.9"), "{}", out.stderr);
    let pulled = tempfile::tempdir().unwrap();
    helm_sdk(&python, &format!("registry.pull('web', repo_url={:?}, version='~1.4', destination={:?})", server.url(), pulled.path().display().to_string()));
    let helm_tgz = pulled.path().join("web-1.4.9.tgz");
    assert!(helm_tgz.is_file());
    let lock = w.lock();
    assert_eq!(lock["charts"][0]["digest"].as_str().unwrap(), sha256_of(&helm_tgz));
    assert_eq!(lock["charts"][0]["digest"].as_str().unwrap(), sha256_of(&charts[1].1));
    assert_eq!(lock["charts"][0]["url"].as_str().unwrap(), format!("{}/web-1.4.9.tgz", server.url()));
    assert_eq!(lock["charts"][0]["repo"].as_str().unwrap(), server.url());
    w.run(&["check"]).expect(0);
    let rendered = w.run(&["template", "--release", "web"]).expect(0).stdout;
    w.write("out.yaml", &rendered);
    let differs = helm_render_differs(&python, &helm_tgz, &w.path("out.yaml"), "{}");
    assert!(differs.is_empty(), "{differs}");

    // An index that lies about an archive's digest: refused.
    let index = std::fs::read_to_string(site.path().join("index.yaml")).unwrap();
    let real = sha256_of(&charts[2].1).trim_start_matches("sha256:").to_string();
    std::fs::write(site.path().join("index.yaml"), index.replace(&real, &"0".repeat(64))).unwrap();
    let releases = w.read("repo/releases.kdl").replace("~1.4", "^1.5");
    w.write("repo/releases.kdl", &releases);
    let out = w.run(&["charts", "lock"]).expect(1);
    assert!(out.stderr.contains("refusing it") && out.stderr.contains("web-1.5.0.tgz"), "{}", out.stderr);
}

/// A registry with basic authentication (htpasswd): credentials come from `$REGISTRY_AUTH_FILE`
/// (the Docker format Helm and podman write), `$DOCKER_CONFIG/config.json` or the environment;
/// without them, or with a wrong password, lock fails; no output ever holds a password.
#[test]
fn registry_with_basic_auth_takes_credentials_from_files_and_environment_never_printed() {
    use base64::Engine as _;
    let Some(python) = harmony_testkit::helm_python() else { return };
    let secrets = tempfile::tempdir().unwrap();
    let (user, password, wrong) = ("ci-bot", "S3cret-registry-pw", "Wr0ng-registry-pw");
    let htpasswd = secrets.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("{user}:{}\n", bcrypt::hash(password, 5).unwrap())).unwrap();
    let Some(registry) = Registry::start(RegistryConfig { htpasswd: Some(htpasswd), ..RegistryConfig::default() }) else { return };
    let host = registry.host();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let auth_file = secrets.path().join("auth.json");
    std::fs::write(&auth_file, format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#)).unwrap();
    let pkg = tempfile::tempdir().unwrap();
    let charts = packaged(&python, pkg.path(), &["1.4.2"]);
    helm_sdk(
        &python,
        &format!(
            "registry.push({:?}, 'oci://{host}/charts', client=registry.RegistryClient(plain_http=True, credentials_file={:?}), plain_http=True)",
            charts[0].1.display().to_string(),
            auth_file.display().to_string()
        ),
    );
    let w = Work::new(&oci_release(&host, "1.4.2"));
    let home = w.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let home = home.to_str().unwrap();
    let no_password = |o: &Out| assert!(!o.stdout.contains(password) && !o.stderr.contains(password) && !o.stderr.contains(wrong) && !o.stderr.contains(&auth), "{}", o.stderr);

    // Anonymous: refused by the registry.
    let out = w.run_env(&["charts", "lock", "--plain-http"], &[("HOME", home)]).expect(1);
    assert!(out.stderr.contains("releases.kdl:5"), "{}", out.stderr);
    no_password(&out);

    // $REGISTRY_AUTH_FILE.
    let out = w.run_env(&["charts", "lock", "--plain-http"], &[("HOME", home), ("REGISTRY_AUTH_FILE", auth_file.to_str().unwrap())]).expect(0);
    no_password(&out);
    let digest = w.lock()["charts"][0]["digest"].as_str().unwrap().to_string();
    assert_eq!(digest, sha256_of(&charts[0].1));

    // $DOCKER_CONFIG/config.json, for pull into a fresh cache.
    let docker = w.path("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::copy(&auth_file, docker.join("config.json")).unwrap();
    std::fs::remove_dir_all(w.path("cache")).unwrap();
    let out = w.run_env(&["charts", "pull", "--plain-http"], &[("HOME", home), ("DOCKER_CONFIG", docker.to_str().unwrap())]).expect(0);
    assert!(out.stderr.contains("1 chart(s) fetched"), "{}", out.stderr);
    no_password(&out);

    // The environment; a wrong password is refused and not shown.
    let env_ok = [("HOME", home), ("HARMONY_REGISTRY_USERNAME", user), ("HARMONY_REGISTRY_PASSWORD", password)];
    let out = w.run_env(&["charts", "lock", "--plain-http", "--update"], &env_ok).expect(0);
    no_password(&out);
    let env_bad = [("HOME", home), ("HARMONY_REGISTRY_USERNAME", user), ("HARMONY_REGISTRY_PASSWORD", wrong)];
    let out = w.run_env(&["charts", "lock", "--plain-http", "--update"], &env_bad).expect(1);
    no_password(&out);
}

/// TLS is the default: a registry whose certificate is signed by a private CA is refused until
/// `--ca-file` names the CA.
#[test]
fn registry_over_tls_with_a_custom_ca() {
    let Some(python) = harmony_testkit::helm_python() else { return };
    let pki = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = harmony_testkit::charts::loopback_tls(pki.path()) else { return };
    let Some(registry) = Registry::start(RegistryConfig { tls: Some((cert, key)), ..RegistryConfig::default() }) else { return };
    let host = registry.host();
    let pkg = tempfile::tempdir().unwrap();
    let charts = packaged(&python, pkg.path(), &["1.4.2"]);
    harmony_testkit::charts::helm_sdk_env(
        &python,
        &format!("registry.push({:?}, 'oci://{host}/charts')", charts[0].1.display().to_string()),
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    let w = Work::new(&oci_release(&host, "~1.4"));
    let out = w.run(&["charts", "lock"]).expect(1);
    assert!(out.stderr.contains("certificate") || out.stderr.contains("UnknownIssuer"), "{}", out.stderr);
    let out = w.run(&["charts", "lock", "--ca-file", ca.to_str().unwrap()]).expect(0);
    assert!(out.stderr.contains("→ web 1.4.2"), "{}", out.stderr);
    std::fs::remove_dir_all(w.path("cache")).unwrap();
    w.run(&["charts", "pull", "--ca-file", ca.to_str().unwrap()]).expect(0);
    w.run(&["template", "--release", "web"]).expect(0);
}

/// Attack: someone with write access to the chart cache (or a vendor directory in a pull
/// request) replaces a locked archive with another valid chart of the same name and version
/// that adds a ClusterRoleBinding. Harmony must refuse it by digest instead of rendering it.
#[test]
fn attack_a_cached_or_vendored_chart_replaced_by_another_is_refused() {
    let Some(python) = harmony_testkit::helm_python() else { return };
    let Some((registry, _pkg)) = registry_with_web(&python) else { return };
    let host = registry.host();
    // The substitute: the same chart, name and version, plus a template granting cluster-admin.
    let evil_dir = tempfile::tempdir().unwrap();
    common::copy_dir(&web_chart(), &evil_dir.path().join("web"));
    std::fs::write(
        evil_dir.path().join("web/templates/evil.yaml"),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: evil\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: cluster-admin\nsubjects:\n  - kind: Group\n    name: system:authenticated\n    apiGroup: rbac.authorization.k8s.io\n",
    )
    .unwrap();
    let evil_pkg = tempfile::tempdir().unwrap();
    let evil = std::fs::read(helm_package(&python, &evil_dir.path().join("web"), evil_pkg.path(), Some("1.4.2"))).unwrap();

    let w = Work::new(&oci_release(&host, "1.4.2"));
    w.run(&["charts", "lock", "--plain-http"]).expect(0);
    let digest = w.lock()["charts"][0]["digest"].as_str().unwrap().to_string();
    let cached = w.path(&format!("cache/harmony/charts/sha256/{}.tgz", digest.trim_start_matches("sha256:")));
    std::fs::write(&cached, &evil).unwrap();
    for args in [&["template", "--release", "web"][..], &["plan", "--offline", "--format", "json"][..]] {
        let out = w.run(args);
        assert!(!out.stdout.contains("ClusterRoleBinding"), "{args:?} rendered the substituted chart:\n{}", out.stdout);
        let out = out.expect(1);
        assert!(out.stderr.contains(&digest) && out.stderr.contains("was altered"), "{args:?}: {}", out.stderr);
    }
    // The same through a vendor directory.
    std::fs::remove_file(&cached).unwrap();
    w.run(&["charts", "pull", "--plain-http", "--vendor", "vendor"]).expect(0);
    std::fs::write(w.path("repo/vendor/web-1.4.2.tgz"), &evil).unwrap();
    let out = w.run(&["template", "--release", "web"]);
    assert!(!out.stdout.contains("ClusterRoleBinding"), "rendered the substituted vendored chart:\n{}", out.stdout);
    let out = out.expect(1);
    assert!(out.stderr.contains(&digest) && out.stderr.contains("vendor/web-1.4.2.tgz"), "{}", out.stderr);
}

/// `harmony template NAME oci://… --version RANGE` and `harmony template NAME CHART --chart-repo URL`
/// fetch the chart Helm would pick and render it as Helm renders that archive.
#[test]
fn template_renders_a_chart_from_a_registry_or_repository_like_helm() {
    let Some(python) = harmony_testkit::helm_python() else { return };
    let Some(registry) = Registry::start(RegistryConfig::default()) else { return };
    let host = registry.host();
    let site = tempfile::tempdir().unwrap();
    let charts = packaged(&python, site.path(), &["1.4.2", "1.5.0", "2.0.0-rc.1"]);
    for (_, tgz) in &charts {
        helm_push(&python, tgz, &format!("oci://{host}/charts"));
    }
    let server = StaticServer::start(&python, site.path());
    helm_repo_index(&python, site.path(), &server.url());
    let w = Work::new("");
    let oci = format!("oci://{host}/charts/web");
    let args = ["template", "web", &oci, "--version", "^1.4", "-n", "acme-prod", "--set", "replicaCount=2"];
    let out = w.run(&args).expect(1);
    assert!(out.stderr.contains(&oci), "TLS is the default: {}", out.stderr);
    let out = w.run(&[&args[..], &["--plain-http"]].concat()).expect(0);
    w.write("oci.yaml", &out.stdout);
    let differs = helm_render_differs(&python, &charts[1].1, &w.path("oci.yaml"), r#"{"replicaCount": 2}"#);
    assert!(differs.is_empty(), "{differs}");

    let out = w.run(&["template", "web", "web", "--chart-repo", &server.url(), "--version", "~1.4", "-n", "acme-prod"]).expect(0);
    w.write("repo.yaml", &out.stdout);
    let differs = helm_render_differs(&python, &charts[0].1, &w.path("repo.yaml"), "{}");
    assert!(differs.is_empty(), "{differs}");
    // No version: the latest stable one, as Helm picks it.
    let out = w.run(&["template", "web", "web", "--chart-repo", &server.url(), "-n", "acme-prod"]).expect(0);
    assert!(out.stdout.contains("helm.sh/chart: web-1.5.0"), "{}", out.stdout);
}
