//! What `harmony apply` prints while it runs and how it stops (issue 27), through the real
//! binary on a loopback API server: one line per unit as it finishes, on a stdout that is a
//! file (not a terminal), in text and as JSON Lines; SIGTERM stops it within 10 s releasing the
//! cluster's Lease; a second SIGTERM exits at once (130) and the next apply takes the dead
//! apply's Lease over at once. The fleet side (SIGTERM during a rollout) is in
//! `tests/fleet_rollout.rs`.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::repo::Repo;
use harmony_kube_loopback::Server;

const KEY_HEX: &str = "6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c";

/// Releases `app` (a ConfigMap: ready at once) and `slow` (also a LoadBalancer Service, which
/// never gets an address on the loopback server: with `--wait` it waits until stopped).
fn repo(server: &Server, greeting: &str) -> Repo {
    let repo = Repo::new(
        server,
        KEY_HEX,
        &[
            ("harmony.kdl", "repository output {\n    kube-version \"1.33.0\"\n}\ncluster prod {\n    context prod\n}\n"),
            ("tenants.kdl", "tenant acme {\n    namespaces acme-prod\n    service-account harmony-deployer namespace=acme-prod\n}\n"),
            ("charts/app/Chart.yaml", "apiVersion: v2\nname: app\nversion: 0.1.0\n"),
            ("charts/app/templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  greeting: {{ .Values.greeting | quote }}\n"),
            (
                "charts/app/templates/svc.yaml",
                "{{- if .Values.slow }}\napiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  type: LoadBalancer\n  selector:\n    app: {{ .Release.Name }}\n  ports:\n    - name: http\n      port: 80\n{{- end }}\n",
            ),
        ],
    );
    set_greeting(&repo, greeting);
    repo
}

fn set_greeting(repo: &Repo, greeting: &str) {
    let release = |name: &str, slow: bool| {
        format!(
            "release {name} {{\n    tenant acme\n    cluster prod\n    namespace acme-prod\n    chart \"charts/app\"\n    values {{\n        greeting {greeting:?}\n        slow #{slow}\n    }}\n}}\n"
        )
    };
    repo.write("releases.kdl", &(release("app", false) + &release("slow", true)));
}

fn lease(server: &Server) -> Option<serde_json::Value> {
    server.get("coordination.k8s.io/v1", "Lease", "kube-system", "harmony-apply")
}

/// `harmony apply --yes --skip-fleets --wait 300 EXTRA` with stdout and stderr written to files.
fn spawn_apply(repo: &Repo, extra: &[&str]) -> (Child, std::path::PathBuf, std::path::PathBuf) {
    let (out, err) = (repo.dir.path().join(format!("stdout-{}", extra.len())), repo.dir.path().join(format!("stderr-{}", extra.len())));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_harmony"))
        .arg("--repo")
        .arg(&repo.root)
        .args(["apply", "--yes", "--skip-fleets", "--wait", "300", "--kubeconfig", repo.kubeconfig()])
        .args(extra)
        .env("NO_COLOR", "1")
        .env("HARMONY_FINGERPRINT_KEY_FILE", &repo.key_file)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    (child, out, err)
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until `slow`'s Service exists (its release is being waited for, under the lock).
async fn wait_for_slow(server: &Server, child: &mut Child, generation: usize, stderr: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.list("v1", "Service").len() < generation || lease(server).is_none() {
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none(), "the apply never reached the slow release: {}", read(stderr));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sigterm(child: &Child) {
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
}

/// Waits for `child` to exit, at most `within`.
async fn exit_within(child: &mut Child, within: Duration, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < within, "{what}: still running {within:?} after the signal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_streams_each_unit_as_it_finishes_and_stops_cleanly_on_sigterm() {
    let server = Server::start().await.unwrap();
    let repo = repo(&server, "one");

    // Text: each finished unit's line is in the file while the apply still runs.
    let (mut child, out, err) = spawn_apply(&repo, &[]);
    wait_for_slow(&server, &mut child, 1, &err).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !read(&out).contains("release/prod/acme-prod/app: installed, revision 1\n") {
        assert!(Instant::now() < deadline, "the finished release's line is not in stdout while the apply runs:\n{}", read(&out));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let streamed = read(&out);
    assert!(streamed.contains("tenant-access/acme/prod: tenant acme can use acme-prod\n"), "{streamed}");
    assert!(!streamed.lines().any(|l| l.starts_with("release/prod/acme-prod/slow:")), "a running unit has no line yet: {streamed}");
    // SIGTERM: exit 1 within 10 s, the Lease released, the summary printed; no unit twice.
    sigterm(&child);
    let status = exit_within(&mut child, Duration::from_secs(10), "SIGTERM").await;
    let (stdout, stderr) = (read(&out), read(&err));
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("interrupted: no further unit starts"), "{stderr}");
    assert!(stderr.contains("error: release/prod/acme-prod/slow: interrupted while running"), "{stderr}");
    assert!(lease(&server).is_none(), "the Lease is released");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("release/prod/acme-prod/app:")).count(), 1, "{stdout}");
    assert!(stdout.ends_with("2 applied, 0 refused as stale, 1 failed, 0 skipped, 0 unchanged\n"), "{stdout}");

    // JSON Lines: the finished unit's object is in the file while the apply runs; a second
    // SIGTERM exits at once (130), saying so, before the 5 s grace is over.
    set_greeting(&repo, "two");
    let (mut child, out, err) = spawn_apply(&repo, &["--format", "json"]);
    wait_for_slow(&server, &mut child, 1, &err).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !read(&out).lines().any(|l| l.contains(r#""kind":"harmony-apply-unit""#) && l.contains(r#""unit":"release/prod/acme-prod/app""#)) {
        assert!(Instant::now() < deadline, "the finished release's JSON line is not in stdout while the apply runs:\n{}", read(&out));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let app: serde_json::Value = serde_json::from_str(read(&out).lines().find(|l| l.contains("release/prod/acme-prod/app")).unwrap()).unwrap();
    assert_eq!((app["outcome"].as_str(), app["message"].as_str()), (Some("applied"), Some("upgraded, revision 2")), "{app:#}");
    sigterm(&child);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&child);
    let status = exit_within(&mut child, Duration::from_secs(3), "a second SIGTERM").await;
    let stderr = read(&err);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted again: exiting at once (exit code 130)"), "{stderr}");
    assert!(lease(&server).is_some(), "left as the process exited");

    // The next apply takes the dead apply's Lease over at once (same host, pid gone), recovers
    // the interrupted release and streams every unit once, then the outcome.
    let out = repo.run(&["apply", "--yes", "--skip-fleets", "--format", "json", "--kubeconfig", repo.kubeconfig()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let outcome = common::apply_outcome(&out.stdout);
    let slow = outcome["actions"].as_array().unwrap().iter().find(|a| a["unit"] == "release/prod/acme-prod/slow").unwrap();
    assert_eq!(slow["outcome"], "applied", "{outcome:#}");
    assert!(lease(&server).is_none());
}

/// JSON output never asks: without --yes it is refused before anything is planned or written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_needs_yes() {
    let server = Server::start().await.unwrap();
    let repo = repo(&server, "one");
    for args in [&["apply", "--format", "json", "--skip-fleets"][..], &["apply", "plan.json", "--format", "json"]] {
        let mut args = args.to_vec();
        args.extend(["--kubeconfig", repo.kubeconfig()]);
        let out = repo.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("--format json needs --yes"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    assert!(server.list("v1", "ConfigMap").iter().all(|c| c["metadata"]["namespace"] != "acme-prod"), "nothing written");
}
