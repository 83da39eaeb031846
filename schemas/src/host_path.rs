//! Host paths a device workload may bind-mount: one policy, enforced by `harmony check` on the
//! repository and by the agent on every signed plan (and again, on the resolved path, right
//! before `podman create`). See `docs/language.md` ("Host paths") and `docs/agent.md`.
//!
//! A deployment of tenant `T` may bind-mount a host path when, after [`normalize`], it is
//! - inside `T`'s data root, `<data root>/T` ([`DATA_ROOT`] unless the agent is configured
//!   otherwise), or inside a path its fleet grants `T` (`allow-host-path`, carried in the
//!   signed plan as [`HostPathGrant`]s; a read-only grant admits only read-only mounts), and
//! - neither inside nor above a [`PROTECTED`] path (nor one the agent adds: its state
//!   directory, configuration and key files, install directory); so `/`, `/var` or `/run` are
//!   never mountable, whatever a grant says.
//!
//! Paths are compared component by component after normalisation: repeated and trailing `/`
//! are dropped, `.` and `..` components are refused (never resolved: a `..` after a symlink
//! means something else to the kernel than to a string operation), and so are paths that are
//! not absolute, too long, or that hold `:` (podman's `--volume` separator) or control
//! characters.
use std::fmt;

use crate::shorten;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The default directory under which each tenant owns `<DATA_ROOT>/<tenant>` on a device.
pub const DATA_ROOT: &str = "/var/lib/harmony/data";

/// Longest host path accepted, in bytes (Linux's `PATH_MAX` is 4096).
pub const MAX_PATH: usize = 1024;

/// Host paths no deployment may bind-mount, nor any directory containing one: the host's
/// system directories, podman's sockets and storage, and the agent's documented default
/// state (`/var/lib/harmony-agent`: its plan and trust state) and install (`/opt/harmony`)
/// directories. Agent keys and config live under `/etc`.
pub const PROTECTED: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/opt/harmony",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lib/containers",
    "/var/lib/harmony-agent",
    "/var/run",
];

/// A host path a fleet lets one tenant's deployments bind-mount (`allow-host-path` in the
/// repository), carried in the signed plan of each deployment of that tenant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub struct HostPathGrant {
    /// Normalised absolute host path; mounts of it or anything inside it are allowed.
    pub path: String,
    /// Only read-only mounts are allowed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// Why a host path may not be mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPathError {
    /// Not an absolute, normalisable path (the reason says why).
    Malformed(String),
    /// Inside or above a protected path.
    Protected {
        /// The normalised path.
        path: String,
        /// The protected path it overlaps.
        protected: String,
    },
    /// Covered only by a read-only grant, but mounted read-write.
    ReadOnlyGrant {
        /// The normalised path.
        path: String,
        /// The grant.
        grant: String,
    },
    /// Outside the tenant's data root and every grant.
    NotGranted {
        /// The normalised path.
        path: String,
        /// The tenant's data root.
        tenant_root: String,
    },
}

impl fmt::Display for HostPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPathError::Malformed(reason) => f.write_str(reason),
            HostPathError::Protected { path, .. } if path == "/" => write!(f, "host path `/` is the host's whole file system"),
            HostPathError::Protected { path, protected } if path == protected => write!(f, "host path `{path}` is protected"),
            HostPathError::Protected { path, protected } if within(protected, path) => {
                write!(f, "host path `{path}` contains the protected `{protected}`")
            }
            HostPathError::Protected { path, protected } => write!(f, "host path `{path}` is inside the protected `{protected}`"),
            HostPathError::ReadOnlyGrant { path, grant } => write!(f, "host path `{path}` may only be mounted read-only (grant `{grant}`)"),
            HostPathError::NotGranted { path, tenant_root } => {
                write!(f, "host path `{path}` is outside the tenant's data root `{tenant_root}` and every path granted to it")
            }
        }
    }
}

impl std::error::Error for HostPathError {}

/// The normal form of an absolute host path: `/` followed by its components joined by single
/// `/`s (`//x/` → `/x`, `/` stays `/`). Refuses relative paths, `.` and `..` components, `:`,
/// control characters and paths longer than [`MAX_PATH`].
pub fn normalize(path: &str) -> Result<String, HostPathError> {
    let shown = || shorten(path, 80);
    if path.len() > MAX_PATH {
        return Err(HostPathError::Malformed(format!("host path `{}` is longer than {MAX_PATH} bytes", shown())));
    }
    if !path.starts_with('/') {
        return Err(HostPathError::Malformed(format!("host path `{}` is not absolute", shown())));
    }
    if path.chars().any(|c| c.is_control()) {
        return Err(HostPathError::Malformed(format!("host path {:?} holds a control character", shorten(path, 80))));
    }
    if path.contains(':') {
        return Err(HostPathError::Malformed(format!("host path `{}` holds `:`", shown())));
    }
    let mut out = String::with_capacity(path.len());
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return Err(HostPathError::Malformed(format!("host path `{}` holds a `{part}` component; write it without `.` or `..`", shown())));
        }
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Whether normalised `path` is `root` or inside it.
pub fn within(path: &str, root: &str) -> bool {
    root == "/" || path == root || (path.starts_with(root) && path.as_bytes().get(root.len()) == Some(&b'/'))
}

/// The first of `PROTECTED` and `extra` (normalised) that `path` (normalised) is inside or above.
pub fn protected_overlap(path: &str, extra: &[String]) -> Option<String> {
    PROTECTED.iter().copied().chain(extra.iter().map(String::as_str)).find(|p| within(path, p) || within(p, path)).map(str::to_string)
}

/// `<data_root>/<tenant>`.
pub fn tenant_root(data_root: &str, tenant: &str) -> String {
    if data_root == "/" { format!("/{tenant}") } else { format!("{data_root}/{tenant}") }
}

/// Whether `tenant` (a deployment's, as written in a plan) may bind-mount `source`, read-only
/// or not, given its `grants`, the device's normalised `data_root` and extra protected paths.
/// Returns the normalised path.
pub fn check_mount(
    source: &str,
    read_only: bool,
    tenant: &str,
    grants: &[HostPathGrant],
    data_root: &str,
    extra_protected: &[String],
) -> Result<String, HostPathError> {
    let path = normalize(source)?;
    if let Some(p) = protected_overlap(&path, extra_protected) {
        return Err(HostPathError::Protected { path, protected: p });
    }
    if crate::fleet::valid_device_id(tenant) && within(&path, &tenant_root(data_root, tenant)) {
        return Ok(path);
    }
    let mut read_only_grant = None;
    for g in grants.iter().filter(|g| within(&path, &g.path)) {
        if read_only || !g.read_only {
            return Ok(path);
        }
        read_only_grant = Some(g.path.clone());
    }
    Err(match read_only_grant {
        Some(grant) => HostPathError::ReadOnlyGrant { path, grant },
        None => HostPathError::NotGranted { path, tenant_root: tenant_root(data_root, &shorten(tenant, 63)) },
    })
}

/// Whether a volume source names a podman named volume rather than a host path.
pub fn is_named_volume(source: &str) -> bool {
    !source.starts_with('/')
}

/// The first field of a plan's deployment, container, port or volume that the plan format
/// ([`crate::fleet::DeploymentPlan`]) does not define, as `(where, field)`: `privileged`,
/// `cap_add`, `devices`, `network`, `security_opt`… A plan that asks for host access the format
/// has no word for is refused whole, never run with the request silently dropped. The known
/// fields are the format's own (its JSON schema), so this list cannot fall behind it.
pub fn undefined_field(payload: &serde_json::Value) -> Option<(String, String)> {
    use std::collections::BTreeSet;
    use std::sync::LazyLock;
    fn props(schema: schemars::Schema) -> BTreeSet<String> {
        schema.get("properties").and_then(serde_json::Value::as_object).map(|o| o.keys().cloned().collect()).unwrap_or_default()
    }
    static KNOWN: LazyLock<[BTreeSet<String>; 5]> = LazyLock::new(|| {
        use crate::fleet::{DeploymentPlan, InitContainer, PortMapping, Service, VolumeMount};
        [
            props(schemars::schema_for!(DeploymentPlan)),
            props(schemars::schema_for!(InitContainer)),
            props(schemars::schema_for!(Service)),
            props(schemars::schema_for!(PortMapping)),
            props(schemars::schema_for!(VolumeMount)),
        ]
    });
    let [deployment, init, service, port, volume] = &*KNOWN;
    let extra = |v: &serde_json::Value, known: &BTreeSet<String>| v.as_object()?.keys().find(|k| !known.contains(*k)).map(|k| shorten(k, 80));
    let name = |v: &serde_json::Value| shorten(v.get("name").and_then(serde_json::Value::as_str).unwrap_or("?"), 63);
    fn items<'a>(v: &'a serde_json::Value, key: &str) -> &'a [serde_json::Value] {
        v.get(key).and_then(serde_json::Value::as_array).map(Vec::as_slice).unwrap_or_default()
    }
    for d in items(payload, "deployments") {
        let at = format!("deployment `{}`", name(d));
        if let Some(f) = extra(d, deployment) {
            return Some((at, f));
        }
        for (key, known) in [("init_containers", init), ("services", service)] {
            for c in items(d, key) {
                let at = format!("{at} container `{}`", name(c));
                let nested = items(c, "ports").iter().find_map(|p| extra(p, port)).or_else(|| items(c, "volumes").iter().find_map(|v| extra(v, volume)));
                if let Some(f) = extra(c, known).or(nested) {
                    return Some((at, f));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(path: &str, read_only: bool) -> HostPathGrant {
        HostPathGrant { path: path.into(), read_only }
    }

    #[test]
    fn normalize_collapses_and_refuses_traversal() {
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("//").unwrap(), "/");
        assert_eq!(normalize("/srv//shared/").unwrap(), "/srv/shared");
        for bad in ["", "srv", "./x", "/srv/../etc", "/srv/./x", "/..", "/a:b", "/a\nb", "/a\0b"] {
            assert!(matches!(normalize(bad), Err(HostPathError::Malformed(_))), "{bad:?}");
        }
        assert!(normalize(&format!("/{}", "a".repeat(MAX_PATH))).is_err());
        assert!(normalize("/srv/..x/x..").is_ok(), "only whole `..` components are traversal");
    }

    #[test]
    fn within_is_by_component() {
        assert!(within("/srv/shared", "/srv"));
        assert!(within("/srv", "/srv"));
        assert!(within("/anything", "/"));
        assert!(!within("/srvx", "/srv"));
        assert!(!within("/srv", "/srv/shared"));
    }

    #[test]
    fn the_policy() {
        let root = DATA_ROOT;
        let ok = |src: &str, ro: bool, grants: &[HostPathGrant]| check_mount(src, ro, "acme", grants, root, &[]);
        assert_eq!(ok("/var/lib/harmony/data/acme/hub/", false, &[]).unwrap(), "/var/lib/harmony/data/acme/hub");
        assert_eq!(ok("/var/lib/harmony/data/acme", false, &[]).unwrap(), "/var/lib/harmony/data/acme");
        for other in ["/var/lib/harmony/data", "/var/lib/harmony/data/globex", "/var/lib/harmony/data/acmex", "/srv/shared", "/home"] {
            assert!(matches!(ok(other, true, &[]), Err(HostPathError::NotGranted { .. })), "{other}");
        }
        for protected in ["/", "//", "/run/podman/podman.sock", "/var/run/podman", "/var", "/etc/harmony/pi.nk", "/var/lib/harmony-agent", "/usr/bin"] {
            assert!(matches!(ok(protected, true, &[grant("/", false)]), Err(HostPathError::Protected { .. })), "{protected}");
        }
        let grants = [grant("/srv/shared", true), grant("/srv/rw", false)];
        assert!(ok("/srv/shared/x", true, &grants).is_ok());
        assert!(matches!(ok("/srv/shared/x", false, &grants), Err(HostPathError::ReadOnlyGrant { .. })));
        assert!(ok("/srv/rw", false, &grants).is_ok());
        assert!(matches!(ok("/srv", true, &grants), Err(HostPathError::NotGranted { .. })));
        // Extra protected paths (the agent's own) win over grants and the data root.
        let extra = vec!["/srv/rw/agent".to_string()];
        assert!(matches!(check_mount("/srv/rw", false, "acme", &grants, root, &extra), Err(HostPathError::Protected { .. })));
        // A tenant name that is not a label has no data root.
        assert!(check_mount("/var/lib/harmony/data/x", false, "", &[], root, &[]).is_err());
        assert!(check_mount("/var/lib/harmony/data/a/b", false, "a/b", &[], root, &[]).is_err());
    }

    #[test]
    fn undefined_fields_are_found_where_they_are() {
        let plan = |d: serde_json::Value| serde_json::json!({"generation": 1, "deployments": [d]});
        let ok = serde_json::json!({"name": "web", "tenant": "acme", "spec_hash": "x", "host_paths": [],
            "init_containers": [{"name": "i", "image": "busybox", "timeout_s": 1, "spec_hash": "x"}],
            "services": [{"name": "app", "image": "busybox", "restart": "always", "spec_hash": "x",
                "ports": [{"host": 1, "container": 2}], "volumes": [{"source": "v", "target": "/v", "read_only": true}]}]});
        assert_eq!(undefined_field(&plan(ok.clone())), None);
        let at = |path: &[&str], field: &str| {
            let mut d = ok.clone();
            let mut v = &mut d;
            for p in path {
                v = match p.parse::<usize>() { Ok(i) => &mut v[i], Err(_) => &mut v[*p] };
            }
            v[field] = serde_json::Value::Bool(true);
            undefined_field(&plan(d))
        };
        let app = || "deployment `web` container `app`".to_string();
        assert_eq!(at(&["services", "0"], "privileged"), Some((app(), "privileged".into())));
        assert_eq!(at(&["services", "0", "volumes", "0"], "propagation"), Some((app(), "propagation".into())));
        assert_eq!(at(&["services", "0", "ports", "0"], "host_ip"), Some((app(), "host_ip".into())));
        assert_eq!(at(&["init_containers", "0"], "cap_add"), Some(("deployment `web` container `i`".into(), "cap_add".into())));
        assert_eq!(at(&[], "network"), Some(("deployment `web`".into(), "network".into())));
    }
}
