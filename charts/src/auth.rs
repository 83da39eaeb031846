//! Registry credentials, found as Helm and podman find them; never printed.
//!
//! In order: `HARMONY_REGISTRY_USERNAME` + `HARMONY_REGISTRY_PASSWORD` (every registry and
//! repository); `$REGISTRY_AUTH_FILE` (podman, skopeo); `$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`; Helm's `~/.config/helm/registry/config.json`. The files are Docker's
//! format: `{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}` (or `username` and
//! `password`). Credential helpers (`credsStore`, `credHelpers`) are not run.

use std::path::PathBuf;

use base64::Engine as _;

/// The most a credentials file may hold.
const MAX_AUTH_FILE_BYTES: u64 = 1 << 20;

/// A user name and password; `Debug` shows neither.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

#[derive(serde::Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

fn files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
        out.push(PathBuf::from(f));
    }
    match std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        Some(d) => out.push(PathBuf::from(d).join("config.json")),
        None => {
            if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
                out.push(PathBuf::from(&h).join(".docker/config.json"));
            }
        }
    }
    let helm = match std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        Some(x) => Some(PathBuf::from(x)),
        None => std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".config")),
    };
    if let Some(c) = helm {
        out.push(c.join("helm/registry/config.json"));
    }
    out
}

/// `https://host:port/v1/` → `host:port`.
fn normalize(key: &str) -> &str {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// The credentials for `host` (`host[:port]`), if any are configured. A file that cannot be read
/// or parsed is an error naming it (never its content).
pub(crate) fn lookup(host: &str) -> Result<Option<Credentials>, String> {
    if let (Ok(username), Ok(password)) = (std::env::var("HARMONY_REGISTRY_USERNAME"), std::env::var("HARMONY_REGISTRY_PASSWORD")) {
        return Ok(Some(Credentials { username, password }));
    }
    for f in files() {
        let bytes = match std::fs::metadata(&f) {
            Err(_) => continue,
            Ok(m) if m.len() > MAX_AUTH_FILE_BYTES => return Err(format!("{} is larger than {MAX_AUTH_FILE_BYTES} bytes", f.display())),
            Ok(_) => std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?,
        };
        let parsed: AuthFile = serde_json::from_slice(&bytes).map_err(|e| format!("{}: not a registry credentials file (line {})", f.display(), e.line()))?;
        let Some(entry) = parsed.auths.iter().find(|(k, _)| normalize(k) == host).map(|(_, v)| v) else { continue };
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).map_err(|_| format!("{}: the `auth` of {host} is not base64", f.display()))?;
            let text = String::from_utf8(decoded).map_err(|_| format!("{}: the `auth` of {host} is not UTF-8", f.display()))?;
            let Some((username, password)) = text.split_once(':') else {
                return Err(format!("{}: the `auth` of {host} is not user:password", f.display()));
            };
            return Ok(Some(Credentials { username: username.to_string(), password: password.to_string() }));
        }
        if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials { username: username.clone(), password: password.clone() }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_match_with_or_without_scheme_and_path() {
        assert_eq!(super::normalize("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(super::normalize("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(super::normalize("http://127.0.0.1:5000/x"), "127.0.0.1:5000");
        let c = super::Credentials { username: "u".into(), password: "hunter2".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
