//! The conventions operators expect of a kubectl-, cargo- or Terraform-style tool, through the
//! real binary: plugins from PATH, shell completion (with a real bash), man pages, key pairs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const HARMONY: &str = env!("CARGO_BIN_EXE_harmony");

/// A copy of the example repository at `<temp>/tenants`, and a directory for plugins.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        common::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants"), &dir.path().join("tenants"));
        for d in ["bin1", "bin2"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Setup { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes an executable shell script.
    fn script(&self, rel: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path(rel);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Runs harmony in the temp dir with PATH = bin1:bin2:the system's.
    fn run(&self, args: &[&str]) -> Output {
        let path = std::env::join_paths([self.path("bin1"), self.path("bin2")].into_iter().chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()))).unwrap();
        Command::new(HARMONY).args(args).current_dir(self.dir.path()).env("PATH", path).env_remove("HARMONY_REPO").env_remove("HARMONY_COMPLETE").env("COMPLETE", "bash").output().unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_plugin_on_path_runs_with_the_repository_and_global_flags_in_its_environment() {
    let s = Setup::new();
    s.script("bin1/harmony-env", r#"echo "args=$*"; echo "repo=$HARMONY_REPO"; echo "bin=$HARMONY_BIN"; echo "v=$HARMONY_VERBOSE q=$HARMONY_QUIET c=$HARMONY_COLOR"; exit 7"#);
    let out = s.run(&["--repo", "tenants", "-vv", "--color", "never", "env", "one", "--two", "three"]);
    // The plugin's exit code is the command's.
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let tenants = s.path("tenants");
    assert!(stdout.contains("args=one --two three\n"), "{stdout}");
    assert!(stdout.contains(&format!("repo={}\n", tenants.display())), "HARMONY_REPO is the absolute repository: {stdout}");
    assert!(stdout.contains(&format!("bin={HARMONY}\n")), "{stdout}");
    assert!(stdout.contains("v=2 q=0 c=never"), "{stdout}");
}

#[test]
fn the_longest_plugin_name_wins_and_earlier_path_entries_shadow_later_ones() {
    let s = Setup::new();
    s.script("bin1/harmony-foo", "echo bin1-foo \"$@\"");
    s.script("bin2/harmony-foo", "echo bin2-foo \"$@\"");
    s.script("bin2/harmony-foo-bar", "echo foo-bar \"$@\"");
    assert_eq!(text(&s.run(&["foo", "bar", "x"]).stdout), "foo-bar x\n");
    assert_eq!(text(&s.run(&["foo", "baz", "x"]).stdout), "bin1-foo baz x\n");
    // A flag ends the name: `foo --bar` is harmony-foo with --bar.
    assert_eq!(text(&s.run(&["foo", "--bar"]).stdout), "bin1-foo --bar\n");
}

#[test]
fn a_built_in_command_always_wins_over_a_plugin() {
    let s = Setup::new();
    s.script("bin1/harmony-check", "echo hijacked; exit 0");
    let out = s.run(&["--repo", "tenants", "check"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out.stdout).contains("hijacked"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("checked"), "the built-in check ran: {}", text(&out.stderr));
}

#[test]
fn plugin_list_shows_usable_shadowed_and_ignored_plugins() {
    let s = Setup::new();
    s.script("bin1/harmony-foo", "true");
    s.script("bin2/harmony-foo", "true");
    s.script("bin2/harmony-plan", "true");
    s.script("bin2/harmony-zap", "true");
    std::fs::write(s.path("bin2/harmony-notexec"), "x").unwrap();
    let out = s.run(&["plugin", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let (b1, b2) = (s.path("bin1"), s.path("bin2"));
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains(&*s.dir.path().to_string_lossy())).collect();
    assert_eq!(
        lines,
        [
            format!("{}/harmony-foo", b1.display()),
            format!("{}/harmony-foo  (shadowed by {}/harmony-foo)", b2.display(), b1.display()),
            format!("{}/harmony-plan  (ignored: `plan` is a built-in command)", b2.display()),
            format!("{}/harmony-zap", b2.display()),
        ],
        "{stdout}"
    );
}

#[test]
fn an_unknown_command_without_a_plugin_is_a_usage_error_with_a_suggestion() {
    let s = Setup::new();
    let out = s.run(&["--repo", "tenants", "plna"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unrecognized command `plna`: no built-in command and no plugin harmony-plna on PATH; did you mean `plan`?"), "{stderr}");
}

#[test]
fn the_example_plugin_gates_ci_on_format_and_warnings() {
    let s = Setup::new();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plugins/harmony-ci-gate"), s.path("bin1/harmony-ci-gate")).unwrap();
    let out = s.run(&["--repo", "tenants", "ci-gate"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    // Badly formatted: the gate fails on fmt --check.
    let file = s.path("tenants/harmony.kdl");
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, original.replacen('\n', "\n\n\n", 1)).unwrap();
    let out = s.run(&["--repo", "tenants", "ci-gate"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stderr).contains("would be reformatted"), "{}", text(&out.stderr));
}

/// Completes `line` (the words typed, the last being completed) in a real bash with the
/// registration script `harmony completion bash` prints; returns the candidates.
fn bash_complete(s: &Setup, words: &[&str]) -> Vec<String> {
    let script = s.run(&["completion", "bash"]);
    assert_eq!(script.status.code(), Some(0));
    std::fs::write(s.path("complete.bash"), &script.stdout).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let driver = format!(
        "source ./complete.bash\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE=\"${{COMP_WORDS[*]}}\"\nCOMP_POINT=${{#COMP_LINE}}\nCOMP_TYPE=9\n_clap_complete_harmony harmony \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        quoted.join(" "),
        words.len() - 1
    );
    std::fs::write(s.path("driver.bash"), driver).unwrap();
    // The registration script calls `harmony` from PATH, as a user's shell would.
    let bin = s.path("bin1/harmony");
    std::os::unix::fs::symlink(HARMONY, &bin).ok();
    let path = std::env::join_paths([s.path("bin1")].into_iter().chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()))).unwrap();
    let out = Command::new("bash").arg("driver.bash").current_dir(s.dir.path()).env("PATH", path).env_remove("HARMONY_REPO").output().expect("bash");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(|l| l.trim_end().to_owned()).filter(|l| !l.is_empty()).collect()
}

#[test]
fn bash_completes_commands_flags_and_names_from_the_repository() {
    let s = Setup::new();
    assert_eq!(bash_complete(&s, &["harmony", "unl"]), ["unlock"]);
    assert_eq!(bash_complete(&s, &["harmony", "plan", "--detailed-e"]), ["--detailed-exitcode"]);
    // Units, releases, devices, fleets and clusters come from the repository given by --repo.
    assert_eq!(
        bash_complete(&s, &["harmony", "--repo", "tenants", "plan", "--target", "release/okd-prod/acme"]),
        ["release/okd-prod/acme-prod/shop-api", "release/okd-prod/acme-prod/shop-db", "release/okd-prod/acme-prod/shop-web"]
    );
    assert_eq!(bash_complete(&s, &["harmony", "--repo", "tenants", "rollback", "shop-w"]), ["shop-web", "shop-web-staging"]);
    assert_eq!(bash_complete(&s, &["harmony", "--repo", "tenants", "device", "ping", "nuc"]), ["nuc-001", "nuc-101"]);
    assert_eq!(bash_complete(&s, &["harmony", "--repo", "tenants", "unlock", "okd"]), ["okd-prod", "okd-staging"]);
    assert_eq!(bash_complete(&s, &["harmony", "--repo", "tenants", "apply", "--fleet", ""]), ["pico"]);
}

#[test]
fn every_shell_gets_a_registration_script() {
    let s = Setup::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = s.run(&["completion", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains("HARMONY_COMPLETE") && script.contains("harmony"), "{shell}: {script}");
    }
}

#[test]
fn man_pages_cover_every_command() {
    let s = Setup::new();
    let out = s.run(&["man", "--out", "man"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut pages: Vec<String> = std::fs::read_dir(s.path("man")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    pages.sort();
    for page in ["harmony.1", "harmony-apply.1", "harmony-plan.1", "harmony-fleet-enroll.1", "harmony-fleet-keygen.1", "harmony-device-logs.1", "harmony-unlock.1"] {
        assert!(pages.iter().any(|p| p == page), "{page} missing from {pages:?}");
    }
    let enroll = std::fs::read_to_string(s.path("man/harmony-fleet-enroll.1")).unwrap();
    assert!(enroll.contains(".TH harmony\\-fleet\\-enroll 1") || enroll.contains(".TH harmony-fleet-enroll 1"), "{}", &enroll[..200.min(enroll.len())]);
    assert!(enroll.contains("harmony fleet enroll"), "the synopsis names the command as typed");
    assert!(text(&out.stdout).contains(&format!("{} man pages written", pages.len())));
}

#[test]
fn keygen_writes_a_private_key_outside_the_repository_and_a_public_key_the_repository_takes() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new();
    let out = s.run(&["--repo", "tenants", "fleet", "keygen", "--out", "keys", "--name", "pico"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let private = s.path("keys/pico.key");
    assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
    let public = std::fs::read_to_string(s.path("keys/pico.pub")).unwrap();
    assert!(text(&out.stdout).contains("key id "), "{}", text(&out.stdout));
    // The repository takes the public key: the example's fleet with it checks clean, and the
    // private key is its pair (`harmony plan` would refuse a mismatched --signing-key-file).
    std::fs::write(s.path("tenants/fleets/keys/pico.pub"), &public).unwrap();
    assert_eq!(s.run(&["--repo", "tenants", "check"]).status.code(), Some(0));
    let seed = std::fs::read_to_string(&private).unwrap();
    let key = harmony_schemas::fleet::parse_signing_key(&seed).unwrap();
    assert_eq!(harmony_schemas::fleet::parse_public_key(&public).unwrap(), key.verifying_key());
    // Never overwritten; never inside the repository.
    let again = s.run(&["--repo", "tenants", "fleet", "keygen", "--out", "keys", "--name", "pico"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("already exists"), "{}", text(&again.stderr));
    assert_eq!(std::fs::read_to_string(&private).unwrap(), seed);
    let inside = s.run(&["--repo", "tenants", "fleet", "keygen", "--out", "tenants/secret"]);
    assert_eq!(inside.status.code(), Some(1));
    assert!(text(&inside.stderr).contains("private keys never enter the repository"), "{}", text(&inside.stderr));
    assert!(!s.path("tenants/secret/signing.key").exists());
    // A command key says how devices trust it.
    let cmd = s.run(&["--repo", "tenants", "fleet", "keygen", "--out", "keys", "--command"]);
    assert_eq!(cmd.status.code(), Some(0));
    let cmd_pub = std::fs::read_to_string(s.path("keys/command.pub")).unwrap();
    assert!(text(&cmd.stdout).contains(&format!("--command-key {}", cmd_pub.trim())), "{}", text(&cmd.stdout));
}

#[test]
fn the_agent_prints_a_completion_script_bash_can_use() {
    let s = Setup::new();
    let agent = Path::new(HARMONY).with_file_name("harmony-agent");
    let out = Command::new(&agent).args(["completion", "bash"]).output().expect("run harmony-agent (cargo build --workspace --bins builds it)");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    std::fs::write(s.path("agent.bash"), &out.stdout).unwrap();
    let driver = "source ./agent.bash\nCOMP_WORDS=(harmony-agent --device-)\nCOMP_CWORD=1\nCOMP_LINE='harmony-agent --device-'\nCOMP_POINT=${#COMP_LINE}\n_harmony__agent harmony-agent --device- harmony-agent\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n";
    std::fs::write(s.path("driver.bash"), driver).unwrap();
    let out = Command::new("bash").arg("driver.bash").current_dir(s.dir.path()).output().expect("bash");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "--device-id");
    let missing = Command::new(&agent).arg("completion").output().unwrap();
    assert_eq!(missing.status.code(), Some(2), "completion without a shell is a usage error");
}
