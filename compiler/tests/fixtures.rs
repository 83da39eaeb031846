//! Data-driven diagnostic tests: every `tests/fixtures/*.kdl` is compiled as a one-file
//! repository (with `fixtures/_support/` mounted beside it) and its rendered diagnostics are
//! snapshotted (`cargo insta review` to update); a `NAME.lock` beside a fixture is its
//! `harmony.lock`. Each fixture must also raise the code its name starts with, and
//! `harmony fmt` must round-trip it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use harmony_compiler::{Code, MemFs, Output, Severity, compile_repo, diag, fmt::format_kdl};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixtures() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kdl"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    out.sort();
    out
}

fn support_fs() -> MemFs {
    fn walk(dir: &Path, rel: &str, fs: &mut MemFs) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = format!("{rel}/{}", p.file_name().unwrap().to_string_lossy());
            if p.is_dir() {
                walk(&p, &name, fs);
            } else {
                fs.insert(name, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut fs = MemFs::new();
    walk(&fixtures_dir().join("_support"), "_support", &mut fs);
    fs
}

/// A fixture with a `NAME.lock` beside it gets that as its repository's `harmony.lock`.
fn compile_fixture(name: &str, text: &str) -> Output {
    let mut fs = support_fs();
    fs.insert(name, text.as_bytes().to_vec());
    if let Ok(lock) = std::fs::read(fixtures_dir().join(name.replace(".kdl", ".lock"))) {
        fs.insert(harmony_schemas::lock::LOCK_FILE, lock);
    }
    compile_repo(&fs).unwrap()
}

/// The rendered report, as `harmony check` prints it without colour.
fn render(out: &Output) -> String {
    let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor()).with_width(100);
    let mut s: String = out.diagnostics.iter().map(|d| diag::render(d, &out.sources, &handler)).collect::<Vec<_>>().join("\n");
    s.push_str(&format!("\n{} error(s), {} warning(s)\n", out.errors(), out.warnings()));
    s
}

fn expected_code(name: &str) -> Option<Code> {
    Code::ALL.iter().copied().filter(|c| name.starts_with(&format!("{}-", &c.as_str()["harmony::".len()..]))).max_by_key(|c| c.as_str().len())
}

#[test]
fn fixtures_render_their_diagnostics() {
    let all = fixtures();
    assert!(all.len() >= 40, "only {} fixtures", all.len());
    let mut seen: BTreeSet<&'static str> = BTreeSet::new();
    for (name, text) in &all {
        let out = compile_fixture(name, text);
        for d in &out.diagnostics {
            seen.insert(d.code.as_str());
        }
        let stem = name.trim_end_matches(".kdl");
        if stem.starts_with("ok-") {
            assert!(out.diagnostics.is_empty(), "{name} should be clean:\n{}", render(&out));
            assert!(out.repo.is_some(), "{name} should compile");
        } else if stem == "many-errors" {
            let codes: BTreeSet<Code> = out.diagnostics.iter().map(|d| d.code).collect();
            assert!(out.errors() >= 12 && codes.len() >= 8, "{name}: {} errors, {} codes", out.errors(), codes.len());
            let positions: Vec<usize> = out.diagnostics.iter().map(|d| d.primary.span.start).collect();
            assert!(positions.windows(2).all(|w| w[0] <= w[1]), "{name}: diagnostics not sorted by position");
        } else {
            let code = expected_code(stem).unwrap_or_else(|| panic!("{name}: name does not start with a diagnostic code"));
            assert!(out.diagnostics.iter().any(|d| d.code == code), "{name} should raise {code}:\n{}", render(&out));
            if code == Code::SelectorMatchesNothing {
                assert_eq!(out.errors(), 0, "{name} should only warn:\n{}", render(&out));
                assert!(out.diagnostics.iter().all(|d| d.severity == Severity::Warning));
            } else {
                assert!(out.repo.is_none(), "{name} has errors but compiled");
            }
        }
        insta::with_settings!({ snapshot_path => "snapshots", prepend_module_to_snapshot => false, description => name.as_str() }, {
            insta::assert_snapshot!(stem, render(&out));
        });
    }
    let missing: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).filter(|c| !seen.contains(c)).collect();
    assert!(missing.is_empty(), "codes without a fixture: {missing:?}");
}

#[test]
fn fmt_round_trips_every_fixture() {
    let mut formatted = 0;
    for (name, text) in fixtures() {
        let Ok(once) = format_kdl(&text) else {
            assert!(name.starts_with("syntax-") || name.starts_with("too-deep-"), "{name} failed to format");
            continue;
        };
        formatted += 1;
        let twice = format_kdl(&once).unwrap();
        assert_eq!(once, twice, "{name}: fmt is not idempotent");
        // Formatting keeps every comment.
        for marker in ["//", "/*", "/-"] {
            assert_eq!(text.matches(marker).count(), once.matches(marker).count(), "{name}: `{marker}` count changed");
        }
        // And the meaning: the same diagnostics (codes) and, for clean fixtures, the same units.
        let a = compile_fixture(&name, &text);
        let b = compile_fixture(&name, &once);
        let codes = |o: &Output| o.diagnostics.iter().map(|d| d.code).collect::<Vec<_>>();
        assert_eq!(codes(&a), codes(&b), "{name}: formatting changed the diagnostics");
        assert_eq!(a.repo.map(|r| r.hash()), b.repo.map(|r| r.hash()), "{name}: formatting changed the compiled units");
    }
    assert!(formatted >= 40);
}
