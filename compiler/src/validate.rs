//! Validators for the value types the language uses, each returning a value that can only
//! hold valid data, or a reason (the diagnostic's label) and a help line.

use std::fmt;

use serde::{Serialize, Serializer};

/// Why a value was rejected: the message and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// What is wrong.
    pub reason: String,
    /// What would be valid.
    pub help: String,
}

fn invalid(reason: impl Into<String>, help: impl Into<String>) -> Invalid {
    Invalid { reason: reason.into(), help: help.into() }
}

const DNS_LABEL_HELP: &str = "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit (RFC 1123)";

/// Whether `s` is an RFC 1123 DNS label.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b.len() <= 63 && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-') && b[0] != b'-' && b[b.len() - 1] != b'-'
}

/// Whether `s` is an RFC 1123 DNS subdomain (dot-separated labels, at most 253 characters).
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// An RFC 1123 label: device ids, namespaces, container and deployment names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    /// Validates an RFC 1123 label.
    pub fn parse(s: &str) -> Result<Name, Invalid> {
        if is_dns_label(s) {
            Ok(Name(s.to_string()))
        } else if s.len() > 63 {
            Err(invalid(format!("`{s}` is {} characters long, the limit is 63", s.len()), DNS_LABEL_HELP))
        } else {
            Err(invalid(format!("`{s}` is not an RFC 1123 name"), DNS_LABEL_HELP))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Helm release name: at most 53 characters, Helm's DNS-1123-subdomain-like rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ReleaseName(String);

impl ReleaseName {
    /// Validates with Helm's rule (`pkg/chartutil/validate_name.go`): at most 53 characters,
    /// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`.
    pub fn parse(s: &str) -> Result<ReleaseName, Invalid> {
        if s.len() > 53 {
            return Err(invalid(
                format!("release name is {} characters long, Helm allows at most 53", s.len()),
                "shorten the name: Helm stores releases in Secrets and labels whose names must fit",
            ));
        }
        if !s.is_empty() && s.split('.').all(is_dns_label) {
            Ok(ReleaseName(s.to_string()))
        } else {
            Err(invalid(
                format!("`{s}` is not a valid Helm release name"),
                "use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Kubernetes API version as Helm's `--api-versions` takes it: `v1`, `group/version` or
/// `group/version/Kind` or `v1/Kind` (group a DNS subdomain, version a DNS label, Kind
/// alphanumeric, starting upper-case).
pub fn api_version(s: &str) -> Result<(), Invalid> {
    let help = "write `group/version` (monitoring.coreos.com/v1) or `group/version/Kind` (monitoring.coreos.com/v1/ServiceMonitor); the core group is `v1`";
    let label = |p: &str| !p.is_empty() && p.len() <= 63 && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let group = |g: &str| g.len() <= 253 && g.split('.').all(label);
    let kind = |k: &str| !k.is_empty() && k.len() <= 63 && k.starts_with(|c: char| c.is_ascii_uppercase()) && k.bytes().all(|b| b.is_ascii_alphanumeric());
    let parts: Vec<&str> = s.split('/').collect();
    let ok = match parts.as_slice() {
        [v] => label(v),
        // `v1/Pod`: a core kind; `apps/v1`: a group version.
        [a, b] => (group(a) && label(b)) || (label(a) && kind(b)),
        [g, v, k] => group(g) && label(v) && kind(k),
        _ => false,
    };
    if ok { Ok(()) } else { Err(invalid(format!("`{s}` is not an API version"), help.to_string())) }
}

/// A semantic version.
pub fn semver(s: &str) -> Result<semver::Version, Invalid> {
    semver::Version::parse(s).map_err(|e| {
        let help = if s.starts_with('v') {
            format!("drop the leading 'v': `{}`", s.strip_prefix('v').unwrap_or(s))
        } else {
            "write MAJOR.MINOR.PATCH with optional -prerelease and +build, e.g. 1.4.2".to_string()
        };
        invalid(format!("`{s}` is not a semantic version: {e}"), help)
    })
}

/// A positive duration, written Go-style (`90s`, `5m`, `1h30m`, `1.5h`, `250ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    nanos: u64,
}

impl Duration {
    /// Parses a Go `time.ParseDuration` string; the result must be positive.
    pub fn parse(s: &str) -> Result<Duration, Invalid> {
        const HELP: &str = "write a positive number with a unit (ms, s, m, h), e.g. 90s, 5m or 1h30m";
        let bad = || invalid(format!("`{s}` is not a duration"), HELP);
        if s.is_empty() {
            return Err(bad());
        }
        let mut rest = s;
        let mut total: f64 = 0.0;
        while !rest.is_empty() {
            let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            let num = &rest[..num_len];
            if num.is_empty() || num == "." || num.matches('.').count() > 1 {
                return Err(bad());
            }
            let value: f64 = num.parse().map_err(|_| bad())?;
            rest = &rest[num_len..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
            let scale = match &rest[..unit_len] {
                "ns" => 1.0,
                "us" | "µs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                "" => return Err(invalid(format!("`{s}` has a number without a unit"), HELP)),
                u => return Err(invalid(format!("`{s}` has an unknown unit `{u}`"), HELP)),
            };
            total += value * scale;
            rest = &rest[unit_len..];
        }
        if total < 1.0 {
            return Err(invalid(format!("`{s}` is not a positive duration"), HELP));
        }
        if total >= u64::MAX as f64 {
            return Err(invalid(format!("`{s}` is too long"), HELP));
        }
        Ok(Duration { nanos: total.round() as u64 })
    }

    /// Whole milliseconds.
    pub fn as_millis(self) -> u64 {
        self.nanos / 1_000_000
    }

    /// As a `std::time::Duration`.
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.nanos)
    }

    /// From whole seconds.
    pub const fn from_secs(secs: u64) -> Duration {
        Duration { nanos: secs * 1_000_000_000 }
    }
}

impl fmt::Display for Duration {
    /// Go's `time.Duration.String()` shape for whole units: `1h30m0s`, `5m0s`, `250ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.nanos;
        if n < 1_000_000_000 {
            if n.is_multiple_of(1_000_000) {
                return write!(f, "{}ms", n / 1_000_000);
            }
            return write!(f, "{n}ns");
        }
        let secs = n / 1_000_000_000;
        let frac = n % 1_000_000_000;
        let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if h > 0 || m > 0 {
            write!(f, "{m}m")?;
        }
        if frac == 0 {
            write!(f, "{s}s")
        } else {
            let frac = format!("{frac:09}");
            write!(f, "{s}.{}s", frac.trim_end_matches('0'))
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A validated OCI image reference (`[registry[:port]/]path[:tag][@algo:hex]`), following
/// the grammar of `github.com/distribution/reference`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ImageRef(String);

impl ImageRef {
    /// Validates an image reference.
    pub fn parse(s: &str) -> Result<ImageRef, Invalid> {
        const HELP: &str = "write [registry[:port]/]path[:tag][@sha256:<64 hex>], lowercase path, e.g. registry.example/acme/hub:2.0";
        let bad = |why: &str| invalid(format!("`{s}` is not an image reference: {why}"), HELP);
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (s, None),
        };
        if let Some(d) = digest {
            let Some((algo, hex)) = d.split_once(':') else { return Err(bad("the digest needs an algorithm, e.g. sha256:…")) };
            let algo_ok =
                !algo.is_empty() && algo.split(['+', '.', '_', '-']).all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
            if !algo_ok || hex.len() < 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad("the digest is malformed"));
            }
            if algo == "sha256" && (hex.len() != 64 || hex.bytes().any(|c| c.is_ascii_uppercase())) {
                return Err(bad("a sha256 digest has 64 lowercase hex digits"));
            }
        }
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let b = tag.as_bytes();
            let ok = !b.is_empty()
                && b.len() <= 128
                && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
                && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
            if !ok {
                return Err(bad("the tag is malformed"));
            }
        }
        if name.is_empty() {
            return Err(bad("the repository name is empty"));
        }
        if name.len() > 255 {
            return Err(bad("the repository name is longer than 255 characters"));
        }
        let mut components: Vec<&str> = name.split('/').collect();
        let first = components[0];
        if components.len() > 1 && (first.contains(['.', ':']) || first == "localhost") {
            if !valid_domain(first) {
                return Err(bad("the registry host is malformed"));
            }
            components.remove(0);
        }
        for c in components {
            if !valid_path_component(c) {
                return Err(bad(if c.bytes().any(|b| b.is_ascii_uppercase()) {
                    "repository paths must be lowercase"
                } else {
                    "a path component is malformed"
                }));
            }
        }
        Ok(ImageRef(s.to_string()))
    }

    /// The reference as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || d.starts_with('[') => (h, Some(p)),
        _ => (d, None),
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host[1..host.len() - 1].parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty() && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-') && b[0] != b'-' && b[b.len() - 1] != b'-'
        })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_lower_alnum(b[0]) || !is_lower_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_lower_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Validates a Kubernetes label key: `[prefix/]name`, prefix a DNS subdomain, name at most
/// 63 characters of alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn label_key(s: &str) -> Result<(), Invalid> {
    const HELP: &str =
        "a label key is [prefix/]name: name of at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric; prefix a DNS subdomain";
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix
        && !is_dns_subdomain(p)
    {
        return Err(invalid(format!("label key prefix `{p}` is not a DNS subdomain"), HELP));
    }
    if name.is_empty() || !label_chars_ok(name) {
        return Err(invalid(format!("`{s}` is not a valid label key"), HELP));
    }
    Ok(())
}

/// Validates a Kubernetes label value: empty, or at most 63 characters of alphanumerics,
/// `-`, `_`, `.`, starting and ending alphanumeric.
pub fn label_value(s: &str) -> Result<(), Invalid> {
    if s.is_empty() || label_chars_ok(s) {
        Ok(())
    } else {
        Err(invalid(
            format!("`{s}` is not a valid label value"),
            "a label value is empty or at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",
        ))
    }
}

fn label_chars_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Whether `s` is a valid environment variable name.
pub fn env_name(s: &str) -> Result<(), Invalid> {
    let b = s.as_bytes();
    if !b.is_empty() && (b[0].is_ascii_alphabetic() || b[0] == b'_') && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_') {
        Ok(())
    } else {
        Err(invalid(format!("`{s}` is not an environment variable name"), "use letters, digits and '_', not starting with a digit"))
    }
}

/// A published port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PortMapping {
    /// Port on the host.
    pub host: u16,
    /// Port in the container.
    pub container: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: Protocol,
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

const PORT_HELP: &str = "write a port 1-65535 (8080), a mapping \"HOST:CONTAINER\" (\"8080:80\"), optionally with /tcp, /udp or /sctp";

/// A port number 1-65535.
pub fn port_number(n: i128) -> Result<u16, Invalid> {
    if (1..=65535).contains(&n) { Ok(n as u16) } else { Err(invalid(format!("port {n} is outside 1-65535"), PORT_HELP)) }
}

/// Parses `8080`, `8080:80` or `8080:80/udp`.
pub fn port_mapping(s: &str) -> Result<PortMapping, Invalid> {
    let bad = || invalid(format!("`{s}` is not a port mapping"), PORT_HELP);
    let (ports, protocol) = match s.split_once('/') {
        Some((p, "tcp")) => (p, Protocol::Tcp),
        Some((p, "udp")) => (p, Protocol::Udp),
        Some((p, "sctp")) => (p, Protocol::Sctp),
        Some(_) => return Err(bad()),
        None => (s, Protocol::Tcp),
    };
    let num = |p: &str| -> Result<u16, Invalid> {
        if p.is_empty() || p.len() > 6 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        port_number(p.parse::<i128>().map_err(|_| bad())?)
    };
    let (host, container) = match ports.split_once(':') {
        Some((h, c)) => (num(h)?, num(c)?),
        None => {
            let p = num(ports)?;
            (p, p)
        }
    };
    Ok(PortMapping { host, container, protocol })
}

/// A bind mount or named volume.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct VolumeMount {
    /// Absolute host path or podman volume name.
    pub source: String,
    /// Absolute path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Parses `/host:/container[:ro|:rw]` or `volume-name:/container[:ro|:rw]`.
pub fn volume(s: &str) -> Result<VolumeMount, Invalid> {
    const HELP: &str = "write \"/host/path:/container/path\" or \"volume-name:/container/path\", optionally with :ro or :rw";
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [s, t] => (*s, *t, false),
        [s, t, "ro"] => (*s, *t, true),
        [s, t, "rw"] => (*s, *t, false),
        _ => return Err(invalid(format!("`{s}` is not a volume mount"), HELP)),
    };
    let named_ok = |n: &str| {
        let b = n.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphanumeric() && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
    };
    if !(source.starts_with('/') || named_ok(source)) {
        return Err(invalid(format!("volume source `{source}` is neither an absolute path nor a volume name"), HELP));
    }
    if !target.starts_with('/') {
        return Err(invalid(format!("volume target `{target}` is not an absolute path"), HELP));
    }
    Ok(VolumeMount { source: source.to_string(), target: target.to_string(), read_only })
}

/// Validates a NATS server URL.
pub fn nats_url(s: &str) -> Result<(), Invalid> {
    const HELP: &str = "write scheme://host[:port] with scheme nats, tls, ws or wss, e.g. nats://nats.example:4222";
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(invalid(format!("`{s}` is not a URL"), HELP));
    };
    if !matches!(scheme, "nats" | "tls" | "ws" | "wss") {
        return Err(invalid(format!("`{scheme}` is not a NATS URL scheme"), HELP));
    }
    let hostport = rest.rsplit('@').next().unwrap_or(rest).trim_end_matches('/');
    if hostport.is_empty() || hostport.contains(['/', ' ']) || !valid_domain(hostport) {
        return Err(invalid(format!("`{s}` has no valid host"), HELP));
    }
    Ok(())
}

/// A Pod Security Standards level (<https://kubernetes.io/docs/concepts/security/pod-security-standards/>),
/// enforced on a tenant's namespaces through Pod Security Admission labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    /// Unrestricted: known privilege escalations allowed.
    Privileged,
    /// Known privilege escalations prevented (the default).
    #[default]
    Baseline,
    /// Current pod hardening best practice.
    Restricted,
}

impl PodSecurityLevel {
    /// Parses `privileged`, `baseline` or `restricted`.
    pub fn parse(s: &str) -> Result<PodSecurityLevel, Invalid> {
        match s {
            "privileged" => Ok(PodSecurityLevel::Privileged),
            "baseline" => Ok(PodSecurityLevel::Baseline),
            "restricted" => Ok(PodSecurityLevel::Restricted),
            _ => Err(invalid(
                format!("`{s}` is not a Pod Security level"),
                "write privileged, baseline (the default: no known privilege escalation) or restricted (hardened pods), as the Kubernetes Pod Security Standards name them",
            )),
        }
    }

    /// The label value (`baseline`).
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurityLevel::Privileged => "privileged",
            PodSecurityLevel::Baseline => "baseline",
            PodSecurityLevel::Restricted => "restricted",
        }
    }
}

/// A namespace a tenant owns: an exact name or a prefix pattern.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NamespaceMatcher {
    /// Exactly this namespace.
    Exact(Name),
    /// Every namespace starting with this prefix (written `prefix*`).
    Prefix(String),
}

impl NamespaceMatcher {
    /// Parses `acme-prod` or `acme-*`.
    pub fn parse(s: &str) -> Result<NamespaceMatcher, Invalid> {
        const HELP: &str = "write an RFC 1123 namespace name (acme-prod) or a prefix pattern ending in '*' (acme-*)";
        match s.strip_suffix('*') {
            Some(prefix) => {
                let b = prefix.as_bytes();
                if b.is_empty()
                    || b.len() > 62
                    || !b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                    || !b[0].is_ascii_alphanumeric()
                {
                    Err(invalid(format!("`{s}` is not a namespace pattern"), HELP))
                } else {
                    Ok(NamespaceMatcher::Prefix(prefix.to_string()))
                }
            }
            None => Name::parse(s).map(NamespaceMatcher::Exact).map_err(|e| Invalid { help: HELP.into(), ..e }),
        }
    }

    /// Whether the namespace `ns` is owned through this matcher.
    pub fn matches(&self, ns: &str) -> bool {
        match self {
            NamespaceMatcher::Exact(n) => n.as_str() == ns,
            NamespaceMatcher::Prefix(p) => ns.starts_with(p.as_str()),
        }
    }

    /// Whether some namespace would be owned through both matchers.
    pub fn overlaps(&self, other: &NamespaceMatcher) -> bool {
        use NamespaceMatcher::*;
        match (self, other) {
            (Exact(a), Exact(b)) => a == b,
            (Exact(a), p @ Prefix(_)) | (p @ Prefix(_), Exact(a)) => p.matches(a.as_str()),
            (Prefix(a), Prefix(b)) => a.starts_with(b.as_str()) || b.starts_with(a.as_str()),
        }
    }
}

impl fmt::Display for NamespaceMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamespaceMatcher::Exact(n) => write!(f, "{n}"),
            NamespaceMatcher::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

impl Serialize for NamespaceMatcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The closest candidate to `word`, if any is close enough to suggest.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates.into_iter().map(|c| (strsim::damerau_levenshtein(word, c), c)).filter(|(d, c)| *d <= limit && *d < c.chars().count()).min().map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        for ok in ["v1", "v1/Pod", "apps/v1", "monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor", "policy/v1beta1/PodDisruptionBudget"] {
            assert!(api_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/v1", "apps/", "Apps/v1", "apps/v1/", "apps/v1/deployment", "a/b/C/d", "apps v1", "monitoring.coreos.com//v1"] {
            let e = api_version(bad).unwrap_err();
            assert!(e.reason.contains("is not an API version") && e.help.contains("group/version"), "{bad}: {e:?}");
        }
    }

    #[test]
    fn dns_labels() {
        for ok in ["a", "pi-001", "0abc", &"a".repeat(63)] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(Name::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn release_names_follow_helm() {
        assert!(ReleaseName::parse("web").is_ok());
        assert!(ReleaseName::parse("web.v2").is_ok());
        assert!(ReleaseName::parse(&"a".repeat(53)).is_ok());
        let e = ReleaseName::parse(&"a".repeat(54)).unwrap_err();
        assert!(e.reason.contains("54 characters"), "{e:?}");
        assert!(ReleaseName::parse("Web").is_err());
        assert!(ReleaseName::parse("web..x").is_err());
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(Duration::parse("5m").unwrap().as_millis(), 300_000);
        assert_eq!(Duration::parse("1h30m").unwrap().as_millis(), 5_400_000);
        assert_eq!(Duration::parse("1.5h").unwrap().as_millis(), 5_400_000);
        assert_eq!(Duration::parse("250ms").unwrap().to_string(), "250ms");
        assert_eq!(Duration::parse("90s").unwrap().to_string(), "1m30s");
        assert_eq!(Duration::parse("2h").unwrap().to_string(), "2h0m0s");
        for bad in ["", "5", "m", "5x", "0s", "1..5s", "-5s", "5 m"] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_references() {
        for ok in [
            "busybox",
            "busybox:1.36",
            "library/busybox",
            "registry.example/acme/hub:2.0",
            "localhost:5000/a/b",
            "localhost/a",
            "[::1]:5000/a:tag",
            "a__b/c-d--e.f:v_1",
            "quay.io/x/y@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(ImageRef::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "UPPER/x", "a:", "a:-tag", "a//b", "a/b_", "a@sha256:abc", "reg.io:x/a", "a:b:c", "a/.b"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels() {
        assert!(label_key("site").is_ok());
        assert!(label_key("example.com/tier").is_ok());
        assert!(label_key("Example.com/tier").is_err());
        assert!(label_key("-x").is_err());
        assert!(label_key(&"k".repeat(64)).is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("a.b-c_d").is_ok());
        assert!(label_value("a b").is_err());
    }

    #[test]
    fn ports_and_volumes() {
        assert_eq!(port_mapping("8080:80/udp").unwrap(), PortMapping { host: 8080, container: 80, protocol: Protocol::Udp });
        assert!(port_mapping("0:80").is_err());
        assert!(port_mapping("70000").is_err());
        assert!(port_mapping("80:").is_err());
        assert!(port_mapping("80/http").is_err());
        assert!(volume("/var/lib/hub:/data:ro").unwrap().read_only);
        assert!(volume("hubdata:/data").is_ok());
        assert!(volume("/a:b").is_err());
        assert!(volume("/a").is_err());
    }

    #[test]
    fn namespace_overlap() {
        let p = |s| NamespaceMatcher::parse(s).unwrap();
        assert!(p("acme-*").overlaps(&p("acme-prod")));
        assert!(p("acme-*").overlaps(&p("acme-dev-*")));
        assert!(!p("acme-*").overlaps(&p("acmex")));
        assert!(!p("acme").overlaps(&p("acme-*")));
        assert!(NamespaceMatcher::parse("*").is_err());
        assert!(NamespaceMatcher::parse("a*b").is_err());
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("namspaces", ["namespaces", "service-account"]), Some("namespaces"));
        assert_eq!(did_you_mean("zzz", ["namespaces"]), None);
        assert_eq!(nats_url("nats://127.0.0.1:4222"), Ok(()));
        assert!(nats_url("http://x").is_err());
    }
}
