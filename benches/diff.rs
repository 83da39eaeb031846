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

#[path = "../compiler/benches/support/repo_gen.rs"]
mod repo_gen;
use repo_gen::{Shape, generate, median};

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
    let shape = Shape::from_args(&args, 5);
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
