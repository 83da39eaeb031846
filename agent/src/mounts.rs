//! Which host paths a plan's containers may bind-mount (`docs/agent.md`, "Host paths"): the
//! policy of [`harmony_schemas::host_path`], with this device's data root and the agent's own
//! files (state directory, install directory, credentials, config) protected as well.
//!
//! Checked twice: on every plan before it is accepted ([`MountPolicy::check_plan`], on the paths
//! as written: a plan asking for more is rejected whole, nothing of it runs), and right before
//! each `podman create` ([`MountPolicy::resolve`], on the paths with every symlink resolved, so
//! a symlink a container planted in its data directory cannot lead a later mount elsewhere).
//! Directories inside the tenant's data root are created when missing.
use std::path::{Path, PathBuf};

use harmony_schemas::fleet::{ContainerSpec, DeploymentPlan, DevicePlan, RejectionReason, VolumeMount};
use harmony_schemas::host_path::{self, HostPathGrant};
use harmony_schemas::shorten;

/// Longest rejection detail, in bytes.
const MAX_DETAIL: usize = 512;

/// The host-path policy of this device.
#[derive(Debug, Clone)]
pub struct MountPolicy {
    /// Normalised data root (`<data root>/<tenant>` belongs to the tenant).
    data_root: String,
    /// Normalised paths of the agent's own files and directories, and podman's rootless storage.
    protected: Vec<String>,
}

/// A path as a normalised string, when it is valid UTF-8 and absolute.
fn path_str(p: &Path) -> Option<String> {
    host_path::normalize(p.to_str()?).ok()
}

impl MountPolicy {
    /// The policy for `data_root` with `own` (the agent's files) protected.
    pub fn new(data_root: &Path, own: &[PathBuf]) -> MountPolicy {
        let mut protected: Vec<String> = own.iter().filter_map(|p| path_str(p)).collect();
        // Rootless podman keeps its storage and configuration in the agent user's home.
        if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
            protected.extend([".local/share/containers", ".config/containers"].iter().filter_map(|d| path_str(&home.join(d))));
        }
        // The same paths with their symlinks resolved (`/var/run` is `/run`, …).
        let resolved: Vec<String> = protected.iter().filter_map(|p| std::fs::canonicalize(p).ok()).filter_map(|p| path_str(&p)).collect();
        protected.extend(resolved);
        protected.sort();
        protected.dedup();
        MountPolicy { data_root: path_str(data_root).unwrap_or_else(|| host_path::DATA_ROOT.to_string()), protected }
    }

    /// Refuses a plan that bind-mounts a host path its deployment's tenant may not mount, whose
    /// mounts podman could read as options, or whose signed `payload` asks for anything the plan
    /// format does not define (`privileged`, `cap_add`, `devices`…: this agent passes podman
    /// only what the format defines, so such a plan comes from something other than
    /// `harmony`'s compiler and is refused rather than run with the request dropped).
    pub fn check_plan(&self, plan: &DevicePlan, payload: &serde_json::Value) -> Result<(), RejectionReason> {
        if let Some((at, field)) = host_path::undefined_field(payload) {
            let detail = format!(
                "{at}: `{field}` is not part of the plan format; containers run unprivileged (no added capabilities, devices, host namespaces or security options)"
            );
            return Err(RejectionReason::HostAccess { detail: shorten(&detail, MAX_DETAIL) });
        }
        for d in &plan.deployments {
            let containers = d.init_containers.iter().map(|c| &c.container).chain(d.services.iter().map(|s| &s.container));
            for c in containers {
                for v in &c.volumes {
                    self.check(d, v).map_err(|e| refusal(d, c, &e))?;
                }
            }
        }
        Ok(())
    }

    fn check(&self, d: &DeploymentPlan, v: &VolumeMount) -> Result<(), String> {
        if !v.target.starts_with('/') || v.target.contains(':') || v.target.chars().any(char::is_control) {
            return Err(format!("container path `{}` is not an absolute path without `:`", shorten(&v.target, 80)));
        }
        if host_path::is_named_volume(&v.source) {
            let b = v.source.as_bytes();
            let named = b[0].is_ascii_alphanumeric() && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
            return if named { Ok(()) } else { Err(format!("`{}` is neither an absolute host path nor a volume name", shorten(&v.source, 80))) };
        }
        host_path::check_mount(&v.source, v.read_only, &d.tenant, &d.host_paths, &self.data_root, &self.protected).map(drop).map_err(|e| e.to_string())
    }

    /// `spec` with every bind mount's host path resolved (symlinks followed) and checked again,
    /// creating missing directories inside the tenant's data root; `Err` names the mount refused.
    pub fn resolve(&self, d: &DeploymentPlan, spec: &ContainerSpec) -> Result<ContainerSpec, String> {
        let mut out = spec.clone();
        for v in &mut out.volumes {
            self.check(d, v)?;
            if host_path::is_named_volume(&v.source) {
                continue;
            }
            v.source = self.resolve_one(d, v).map_err(|e| format!("volume `{}`: {e}", shorten(&v.source, 200)))?;
        }
        Ok(out)
    }

    fn resolve_one(&self, d: &DeploymentPlan, v: &VolumeMount) -> Result<String, String> {
        // Compare with the data root and the grants as they resolve too (the operator may have
        // made them symlinks).
        let data_root = resolved(Path::new(&self.data_root))?;
        let tenant_root = host_path::tenant_root(&data_root, &d.tenant);
        let grants: Vec<HostPathGrant> =
            d.host_paths.iter().map(|g| Ok(HostPathGrant { path: resolved(Path::new(&g.path))?, read_only: g.read_only })).collect::<Result<_, String>>()?;
        let check = |p: &str| host_path::check_mount(p, v.read_only, &d.tenant, &grants, &data_root, &self.protected).map_err(|e| e.to_string());
        let first = check(&resolved(Path::new(&v.source))?)?;
        if host_path::within(&first, &tenant_root) && !Path::new(&first).exists() {
            std::fs::create_dir_all(&first).map_err(|e| format!("cannot create {first}: {e}"))?;
        }
        // Once more, now that it exists: nothing on the way may have become a symlink.
        let path = check(&resolved(Path::new(&first))?)?;
        if !Path::new(&path).exists() {
            return Err(format!("host path `{path}` does not exist"));
        }
        Ok(path)
    }
}

/// `path` with the symlinks of its deepest existing ancestor resolved and the missing rest
/// appended, normalised. A symlink that leads nowhere is refused (creating through it would
/// create its target).
fn resolved(path: &Path) -> Result<String, String> {
    let mut existing = path;
    let mut rest = Vec::new();
    let base = loop {
        match std::fs::canonicalize(existing) {
            Ok(c) => break c,
            Err(_) if std::fs::symlink_metadata(existing).is_ok() => {
                return Err(format!("{} is a symlink to nothing, or cannot be resolved", shorten(&existing.to_string_lossy(), 200)));
            }
            Err(_) => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name);
                    existing = parent;
                }
                _ => return Err(format!("cannot resolve {}", path.display())),
            },
        }
    };
    let full = rest.iter().rev().fold(base, |p, name| p.join(name));
    path_str(&full).ok_or_else(|| format!("{} does not resolve to a valid path", shorten(&full.to_string_lossy(), 200)))
}

fn refusal(d: &DeploymentPlan, c: &ContainerSpec, detail: &str) -> RejectionReason {
    RejectionReason::HostAccess { detail: shorten(&format!("deployment `{}` container `{}`: {detail}", d.name, c.name), MAX_DETAIL) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harmony_schemas::fleet::{RestartPolicy, Service};

    fn deployment(tenant: &str, volumes: &[(&str, bool)], grants: &[(&str, bool)]) -> DeploymentPlan {
        let spec = ContainerSpec {
            name: "app".into(),
            image: "busybox".into(),
            command: vec![],
            args: vec![],
            env: Default::default(),
            ports: vec![],
            volumes: volumes.iter().map(|(s, ro)| VolumeMount { source: s.to_string(), target: "/data".into(), read_only: *ro }).collect(),
        };
        DeploymentPlan::new("web", tenant, vec![], vec![Service::new(spec, RestartPolicy::Always)])
            .with_host_paths(grants.iter().map(|(p, ro)| HostPathGrant { path: p.to_string(), read_only: *ro }).collect())
    }

    #[test]
    fn resolve_follows_symlinks_and_creates_data_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let (data, state, shared) = (root.join("data"), root.join("state"), root.join("shared"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&shared).unwrap();
        let policy = MountPolicy::new(&data, std::slice::from_ref(&state));
        let s = |p: &Path| p.to_str().unwrap().to_string();

        // A missing directory in the tenant's data root is created.
        let d = deployment("acme", &[(&s(&data.join("acme/hub")), false)], &[]);
        let spec = policy.resolve(&d, &d.services[0].container).unwrap();
        assert_eq!(spec.volumes[0].source, s(&data.join("acme/hub")));
        assert!(data.join("acme/hub").is_dir());

        // A symlink planted there (as a container could) is followed, and refused when it leaves.
        std::os::unix::fs::symlink(&state, data.join("acme/link")).unwrap();
        std::os::unix::fs::symlink("/", data.join("acme/root")).unwrap();
        std::os::unix::fs::symlink(data.join("globex"), data.join("acme/other")).unwrap();
        for (link, why) in [("acme/link", "protected"), ("acme/root", "whole file system"), ("acme/other/x", "symlink to nothing")] {
            let d = deployment("acme", &[(&s(&data.join(link)), true)], &[]);
            let e = policy.resolve(&d, &d.services[0].container).unwrap_err();
            assert!(e.contains(why), "{link}: {e}");
            assert!(check(&policy, plan(d)).is_ok(), "{link} is fine as written; only its resolution is refused");
        }
        assert!(!data.join("globex").exists(), "nothing is created through a symlink");
        std::fs::create_dir_all(data.join("globex")).unwrap();
        let d = deployment("acme", &[(&s(&data.join("acme/other/x")), true)], &[]);
        assert!(policy.resolve(&d, &d.services[0].container).unwrap_err().contains("outside"), "into another tenant's data root");

        // A granted path must exist; a read-only grant admits read-only mounts only.
        let d = deployment("acme", &[(&s(&shared), true)], &[(&s(&shared), true)]);
        assert!(policy.resolve(&d, &d.services[0].container).is_ok());
        let d = deployment("acme", &[(&s(&shared), false)], &[(&s(&shared), true)]);
        assert!(policy.resolve(&d, &d.services[0].container).unwrap_err().contains("read-only"));
        let d = deployment("acme", &[(&s(&shared.join("missing")), true)], &[(&s(&shared), true)]);
        assert!(policy.resolve(&d, &d.services[0].container).unwrap_err().contains("does not exist"));
    }

    fn check(policy: &MountPolicy, plan: DevicePlan) -> Result<(), RejectionReason> {
        policy.check_plan(&plan, &serde_json::to_value(&plan).unwrap())
    }

    fn plan(d: DeploymentPlan) -> DevicePlan {
        DevicePlan {
            agent: None,
            version: harmony_schemas::fleet::PROTOCOL_VERSION,
            device_id: "pi".into(),
            fleet: "pico".into(),
            generation: 1,
            source_revision: "r".into(),
            agent_version: "0".into(),
            deployments: vec![d],
            key_chain: vec![],
        }
    }

    #[test]
    fn check_plan_refuses_with_a_bounded_reason() {
        let policy = MountPolicy::new(Path::new(host_path::DATA_ROOT), &[PathBuf::from("/srv/agent-state")]);
        for (source, target) in [
            ("/", "/host"),
            ("/run/podman/podman.sock", "/sock"),
            ("/srv/agent-state", "/s"),
            ("/srv", "/s"),
            ("/var/lib/harmony/data/globex", "/d"),
            ("/var/lib/harmony/data/acme/../globex", "/d"),
            ("/var/lib/harmony/data/acme", "/d:Z"),
            ("-v", "/d"),
        ] {
            let mut d = deployment("acme", &[(source, false)], &[]);
            d.services[0].container.volumes[0].target = target.into();
            match check(&policy, plan(d)) {
                Err(RejectionReason::HostAccess { detail }) => assert!(detail.starts_with("deployment `web` container `app`: "), "{detail}"),
                other => panic!("{source}:{target}: {other:?}"),
            }
        }
        let long = format!("/{}", "a/".repeat(400));
        let Err(RejectionReason::HostAccess { detail }) = check(&policy, plan(deployment("acme", &[(&long, false)], &[]))) else { panic!() };
        assert!(detail.len() <= MAX_DETAIL + 3, "{}", detail.len());
        assert!(check(&policy, plan(deployment("acme", &[("/var/lib/harmony/data/acme/x", false), ("cache", false)], &[]))).is_ok());
    }
}
