//! Compiled `DevicePlanUnit` → wire `DevicePlan`, and the fleet's signing key.

use std::collections::BTreeMap;
use std::path::Path;

use ed25519_dalek::SigningKey;
use harmony_compiler::compile::{ContainerSpec as CompiledContainer, DevicePlanUnit, FleetInfo};
use harmony_compiler::model::RestartPolicy as CompiledRestart;
use harmony_compiler::validate::{PortMapping as CompiledPort, Protocol as CompiledProtocol, VolumeMount as CompiledVolume};
use harmony_compiler::{CompiledRepo, UnitContent};
use harmony_schemas::fleet::{
    ContainerSpec, DeploymentPlan, DevicePlan, InitContainer, PROTOCOL_VERSION, PortMapping, Protocol, RestartPolicy, Service, VolumeMount, encode_key, key_id,
    parse_public_key, parse_signing_key,
};

use super::FleetError;

/// The desired state of one fleet: every device's plan (generation 0: set by [`super::plan_fleet`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredFleet {
    /// Fleet name.
    pub fleet: String,
    /// Plans by device id.
    pub plans: BTreeMap<String, DevicePlan>,
}

/// Environment variable holding the fleet's private key (hex or base64 of the 32-byte seed).
pub const SIGNING_KEY_ENV: &str = "HARMONY_SIGNING_KEY";

fn container(c: &CompiledContainer) -> ContainerSpec {
    ContainerSpec {
        name: c.name.as_str().to_string(),
        image: c.image.as_str().to_string(),
        command: c.command.clone(),
        args: c.args.clone(),
        env: c.env.clone(),
        ports: c.ports.iter().map(port).collect(),
        volumes: c.volumes.iter().map(volume).collect(),
    }
}

fn port(p: &CompiledPort) -> PortMapping {
    let protocol = match p.protocol {
        CompiledProtocol::Tcp => Protocol::Tcp,
        CompiledProtocol::Udp => Protocol::Udp,
        CompiledProtocol::Sctp => Protocol::Sctp,
    };
    PortMapping { host: p.host, container: p.container, protocol }
}

fn volume(v: &CompiledVolume) -> VolumeMount {
    VolumeMount { source: v.source.clone(), target: v.target.clone(), read_only: v.read_only }
}

fn restart(r: CompiledRestart) -> RestartPolicy {
    match r {
        CompiledRestart::Always => RestartPolicy::Always,
        CompiledRestart::OnFailure => RestartPolicy::OnFailure,
        CompiledRestart::No => RestartPolicy::No,
    }
}

/// Converts a compiled device plan to the wire plan, field by field (`docs/fleet-protocol.md`).
/// Hashes are filled in by the schema constructors, so `DevicePlan::validate` accepts the result.
pub fn device_plan(unit: &DevicePlanUnit, generation: u64, source_revision: &str) -> DevicePlan {
    let mut deployments: Vec<DeploymentPlan> = unit
        .workloads
        .iter()
        .map(|w| {
            let inits = w.init_containers.iter().map(|i| InitContainer::new(container(&i.container), i.timeout.to_std().as_secs())).collect();
            let services = w.containers.iter().map(|s| Service::new(container(&s.container), restart(s.restart))).collect();
            DeploymentPlan::new(w.deployment.as_str(), w.tenant.as_str(), inits, services).with_host_paths(w.host_paths.clone())
        })
        .collect();
    deployments.sort_by(|a, b| a.name.cmp(&b.name));
    DevicePlan {
        version: PROTOCOL_VERSION,
        device_id: unit.device.as_str().to_string(),
        fleet: unit.fleet.as_str().to_string(),
        generation,
        source_revision: source_revision.to_string(),
        agent_version: unit.agent_version.clone(),
        agent: None,
        deployments,
        key_chain: Vec::new(),
    }
}

/// The desired plans of `fleet` in a compiled repository.
pub fn desired_fleet(compiled: &CompiledRepo, fleet: &str, source_revision: &str) -> Result<DesiredFleet, FleetError> {
    fleet_info(compiled, fleet)?;
    let plans = compiled
        .units
        .values()
        .filter_map(|u| match &u.content {
            UnitContent::DevicePlan(p) if p.fleet.as_str() == fleet => Some((p.device.as_str().to_string(), device_plan(p, 0, source_revision))),
            _ => None,
        })
        .collect();
    Ok(DesiredFleet { fleet: fleet.to_string(), plans })
}

/// The repository's facts for `fleet`.
pub fn fleet_info<'a>(compiled: &'a CompiledRepo, fleet: &str) -> Result<&'a FleetInfo, FleetError> {
    compiled.fleets.iter().find(|(name, _)| name.as_str() == fleet).map(|(_, info)| info).ok_or_else(|| {
        let known: Vec<&str> = compiled.fleets.keys().map(|n| n.as_str()).collect();
        FleetError::UnknownFleet { fleet: fleet.to_string(), known: known.join(", ") }
    })
}

/// Loads the fleet's private key from `file` if given, else from [`SIGNING_KEY_ENV`]. The key
/// text is never echoed in errors.
pub fn load_signing_key(file: Option<&Path>, env_value: Option<String>) -> Result<SigningKey, FleetError> {
    let (text, source) = match (file, env_value) {
        (Some(f), _) => (
            std::fs::read_to_string(f).map_err(|e| FleetError::SigningKey(format!("cannot read signing key file {}: {e}", f.display())))?,
            format!("file {}", f.display()),
        ),
        (None, Some(v)) if !v.trim().is_empty() => (v, format!("${SIGNING_KEY_ENV}")),
        _ => return Err(FleetError::SigningKey(format!("no signing key: pass --signing-key-file FILE or set {SIGNING_KEY_ENV}"))),
    };
    parse_signing_key(&text).map_err(|e| FleetError::SigningKey(format!("the signing key in {source} is not usable: {e}")))
}

/// Checks the private key is the one whose public half the repository declares for the fleet.
pub fn check_key_matches(key: &SigningKey, fleet: &str, repo_public: &str) -> Result<(), FleetError> {
    let declared = parse_public_key(repo_public).map_err(|e| FleetError::SigningKey(format!("fleet `{fleet}` declares an invalid public key: {e}")))?;
    let actual = key.verifying_key();
    if declared != actual {
        return Err(FleetError::SigningKey(format!(
            "the signing key does not match fleet `{fleet}`: the repository declares public key {} (key id {}), the private key given is for public key {} (key id {})",
            encode_key(declared.as_bytes()),
            key_id(&declared),
            encode_key(actual.as_bytes()),
            key_id(&actual)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use harmony_compiler::MemFs;
    use harmony_schemas::fleet::{SignedDevicePlan, generate_signing_key};

    /// A small repository: fleet `pico`, tenant `acme`, `devices` devices (site=mtl for even ones), deployment `hub` on site=mtl.
    pub(crate) fn fixture_files(public_hex: &str, env_value: &str, devices: usize) -> Vec<(String, String)> {
        let mut devs = String::new();
        for i in 0..devices {
            let site = if i % 2 == 0 { "mtl" } else { "tor" };
            devs.push_str(&format!("device pi-{i:03} {{\n    fleet pico\n    labels site={site}\n}}\n"));
        }
        vec![
            (
                "fleet.kdl".into(),
                "fleet pico {\n    nats \"nats://127.0.0.1:4222\"\n    agent-version \"0.1.0\"\n    signing-key \"pico.pub\"\n    tenants acme\n}\ntenant acme {\n    namespaces acme\n}\n".into(),
            ),
            ("pico.pub".into(), format!("{public_hex}\n")),
            ("devices.kdl".into(), devs),
            (
                "deploy.kdl".into(),
                format!(
                    "deployment hub {{\n    tenant acme\n    fleet pico\n    selector site=mtl\n    init-container migrate {{\n        image \"registry.example/acme/migrate:1\"\n        args \"--up\"\n        timeout \"30s\"\n    }}\n    container hub {{\n        image \"registry.example/acme/hub:2\"\n        env LOG={env_value}\n        port \"8080:80/udp\"\n        volume \"/var/lib/harmony/data/acme/hub:/data:ro\"\n        restart on-failure\n    }}\n}}\n"
                ),
            ),
        ]
    }

    pub(crate) fn fixture(public_hex: &str, env_value: &str) -> CompiledRepo {
        let mut fs = MemFs::new();
        for (p, t) in fixture_files(public_hex, env_value, 2) {
            fs.insert(p, t);
        }
        let out = harmony_compiler::compile_repo(&fs).expect("compile");
        out.repo.unwrap_or_else(|| panic!("fixture does not compile: {:#?}", out.diagnostics))
    }

    #[test]
    fn converts_field_by_field_and_hashes_validate() {
        let key = generate_signing_key().expect("key");
        let compiled = fixture(&encode_key(key.verifying_key().as_bytes()), "info");
        let desired = desired_fleet(&compiled, "pico", "abc123").expect("fleet");
        assert_eq!(desired.plans.len(), 2);
        let p = &desired.plans["pi-000"];
        assert_eq!((p.fleet.as_str(), p.device_id.as_str(), p.agent_version.as_str(), p.source_revision.as_str()), ("pico", "pi-000", "0.1.0", "abc123"));
        assert_eq!(p.deployments.len(), 1);
        let d = &p.deployments[0];
        assert_eq!((d.name.as_str(), d.tenant.as_str()), ("hub", "acme"));
        assert_eq!(d.init_containers[0].timeout_s, 30);
        assert_eq!(d.init_containers[0].container.args, vec!["--up".to_string()]);
        let s = &d.services[0];
        assert_eq!(s.restart, RestartPolicy::OnFailure);
        assert_eq!(s.container.env.get("LOG").map(String::as_str), Some("info"));
        assert_eq!(s.container.ports, vec![PortMapping { host: 8080, container: 80, protocol: Protocol::Udp }]);
        assert_eq!(s.container.volumes, vec![VolumeMount { source: "/var/lib/harmony/data/acme/hub".into(), target: "/data".into(), read_only: true }]);
        assert!(desired.plans["pi-001"].deployments.is_empty(), "pi-001 matches no deployment");
        let mut p = p.clone();
        p.generation = 1;
        p.validate().expect("hashes check out");
        let signed = SignedDevicePlan::sign(&p, &key).expect("sign");
        assert_eq!(signed.verify(&[key.verifying_key()]).expect("verifies"), p);
    }

    #[test]
    fn signing_key_checks() {
        let key = generate_signing_key().expect("key");
        let other = generate_signing_key().expect("key");
        let public = encode_key(key.verifying_key().as_bytes());
        check_key_matches(&key, "pico", &public).expect("matches");
        let err = check_key_matches(&other, "pico", &public).expect_err("mismatch").to_string();
        assert!(err.contains(&public) && err.contains(&encode_key(other.verifying_key().as_bytes())), "{err}");
        let secret = encode_key(other.as_bytes());
        assert!(!err.contains(&secret), "never prints the private key");
        assert!(load_signing_key(None, None).is_err());
        let loaded = load_signing_key(None, Some(encode_key(key.as_bytes()))).expect("env key");
        assert_eq!(loaded.as_bytes(), key.as_bytes());
        let err = load_signing_key(None, Some("zz-not-a-key".into())).expect_err("bad").to_string();
        assert!(!err.contains("zz-not-a-key"), "{err}");
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("k");
        std::fs::write(&f, format!("{}\n", encode_key(key.as_bytes()))).expect("write");
        assert_eq!(load_signing_key(Some(&f), None).expect("file").as_bytes(), key.as_bytes());
    }
}
