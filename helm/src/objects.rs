//! The Go objects Helm puts in a template's scope: `.Files` and `.Capabilities`.

use std::collections::BTreeMap;
use std::rc::Rc;

use base64::Engine;

use crate::value::{Object, SliceTy, Value};

/// `.Files`: the chart's non-template files.
#[derive(Debug, Clone, Default)]
pub struct Files {
    /// Path → content.
    pub files: BTreeMap<String, Vec<u8>>,
}

fn bytes_value(b: &[u8]) -> Value {
    Value::List(Rc::new(b.iter().map(|x| Value::Int(*x as i64)).collect()), SliceTy::Byte)
}

impl Files {
    fn glob(&self, pattern: &str) -> Result<Files, String> {
        let mut files = BTreeMap::new();
        for (k, v) in &self.files {
            if glob_match_bounded(pattern, k).ok_or_else(|| format!("render limit exceeded: glob pattern {} takes more than {GLOB_STEPS} steps to match", crate::template::fmt::go_quote(pattern)))? {
                files.insert(k.clone(), v.clone());
            }
        }
        Ok(Files { files })
    }
}

/// How many steps matching one name against a glob pattern may take: `*a*a*a…b` against a
/// long name, or many `{…}` alternatives, would otherwise take exponential time (patterns come
/// from templates and `.helmignore`, which are chart input).
pub const GLOB_STEPS: u64 = 1_000_000;

/// gobwas/glob matching with `/` as separator (`*` stays within a segment, `**` crosses).
/// A pattern that takes more than [`GLOB_STEPS`] steps does not match.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    glob_match_bounded(pattern, name).unwrap_or(false)
}

/// [`glob_match`], or `None` when matching takes more than [`GLOB_STEPS`] steps. Failed
/// (pattern, name) positions are remembered, so wildcards cost polynomial time.
pub fn glob_match_bounded(pattern: &str, name: &str) -> Option<bool> {
    struct M {
        fuel: u64,
    }
    impl M {
        fn rec(&mut self, p: &[char], n: &[char], failed: &mut std::collections::HashSet<(usize, usize)>) -> Option<bool> {
            self.fuel = self.fuel.checked_sub(1)?;
            if failed.contains(&(p.len(), n.len())) {
                return Some(false);
            }
            let r = self.step(p, n, failed)?;
            if !r {
                failed.insert((p.len(), n.len()));
            }
            Some(r)
        }

        fn step(&mut self, p: &[char], n: &[char], failed: &mut std::collections::HashSet<(usize, usize)>) -> Option<bool> {
            if p.is_empty() {
                return Some(n.is_empty());
            }
            Some(match p[0] {
                '*' => {
                    if p.len() > 1 && p[1] == '*' {
                        let rest = &p[2..];
                        for i in 0..=n.len() {
                            if self.rec(rest, &n[i..], failed)? {
                                return Some(true);
                            }
                        }
                        false
                    } else {
                        let rest = &p[1..];
                        for i in 0..=n.len() {
                            if self.rec(rest, &n[i..], failed)? {
                                return Some(true);
                            }
                            if i < n.len() && n[i] == '/' {
                                break;
                            }
                        }
                        false
                    }
                }
                '?' => !n.is_empty() && n[0] != '/' && self.rec(&p[1..], &n[1..], failed)?,
                '[' => {
                    let Some(close) = p.iter().position(|c| *c == ']') else { return Some(!n.is_empty() && n[0] == '[' && self.rec(&p[1..], &n[1..], failed)?) };
                    if n.is_empty() {
                        return Some(false);
                    }
                    let set = &p[1..close];
                    let (neg, set) = if set.first() == Some(&'!') || set.first() == Some(&'^') { (true, &set[1..]) } else { (false, set) };
                    let mut ok = false;
                    let mut i = 0;
                    while i < set.len() {
                        if i + 2 < set.len() && set[i + 1] == '-' {
                            if set[i] <= n[0] && n[0] <= set[i + 2] {
                                ok = true;
                            }
                            i += 3;
                        } else {
                            if set[i] == n[0] {
                                ok = true;
                            }
                            i += 1;
                        }
                    }
                    ok != neg && self.rec(&p[close + 1..], &n[1..], failed)?
                }
                '{' => {
                    let Some(close) = p.iter().position(|c| *c == '}') else { return Some(false) };
                    let inner: String = p[1..close].iter().collect();
                    let rest: String = p[close + 1..].iter().collect();
                    for alt in inner.split(',') {
                        // a new pattern: its own memory of failed positions
                        let pat: Vec<char> = format!("{alt}{rest}").chars().collect();
                        if self.rec(&pat, n, &mut Default::default())? {
                            return Some(true);
                        }
                    }
                    false
                }
                '\\' if p.len() > 1 => !n.is_empty() && n[0] == p[1] && self.rec(&p[2..], &n[1..], failed)?,
                c => !n.is_empty() && n[0] == c && self.rec(&p[1..], &n[1..], failed)?,
            })
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    M { fuel: GLOB_STEPS }.rec(&p, &n, &mut Default::default())
}

impl Object for Files {
    fn type_name(&self) -> String {
        "engine.files".into()
    }
    fn kind(&self) -> &'static str {
        "map"
    }
    fn field(&self, name: &str) -> Option<Value> {
        match name {
            "AsConfig" | "AsSecrets" => self.call(name, &[]).ok(),
            _ => Some(match self.files.get(name) {
                Some(b) => bytes_value(b),
                None => Value::Nil,
            }),
        }
    }
    fn entries(&self) -> Option<Vec<(String, Value)>> {
        Some(self.files.iter().map(|(k, v)| (k.clone(), bytes_value(v))).collect())
    }
    fn as_plain(&self) -> Option<Value> {
        Some(Value::map(self.files.iter().map(|(k, v)| (k.clone(), bytes_value(v))).collect()))
    }
    fn has_method(&self, name: &str) -> bool {
        matches!(name, "Get" | "GetBytes" | "Glob" | "Lines" | "AsConfig" | "AsSecrets")
    }
    fn call(&self, name: &str, args: &[Value]) -> Result<Value, String> {
        let arg = args.first().and_then(|v| v.as_str()).unwrap_or("");
        Ok(match name {
            "Get" => Value::from(self.files.get(arg).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()),
            "GetBytes" => bytes_value(self.files.get(arg).map(Vec::as_slice).unwrap_or(&[])),
            "Glob" => Value::Object(Rc::new(self.glob(arg)?)),
            "Lines" => match self.files.get(arg) {
                None => Value::str_list(vec![]),
                Some(b) => {
                    let mut s = String::from_utf8_lossy(b).into_owned();
                    if s.ends_with('\n') {
                        s.pop();
                    }
                    Value::str_list(s.split('\n').map(String::from).collect())
                }
            },
            "AsConfig" | "AsSecrets" => {
                let mut m = BTreeMap::new();
                for (k, v) in &self.files {
                    let base = k.rsplit('/').next().unwrap_or(k).to_string();
                    let s = if name == "AsConfig" { String::from_utf8_lossy(v).into_owned() } else { base64::engine::general_purpose::STANDARD.encode(v) };
                    m.insert(base, Value::from(s));
                }
                let y = crate::yaml::encode(&Value::map(m)).unwrap_or_default();
                Value::from(y.strip_suffix('\n').unwrap_or(&y).to_string())
            }
            _ => return Err(format!("can't call method {name}")),
        })
    }
    fn format(&self) -> String {
        let mut s = String::from("map[");
        for (i, (k, v)) in self.files.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(k);
            s.push(':');
            s.push_str(&bytes_value(v).fmt_v());
        }
        s.push(']');
        s
    }
    fn to_json(&self) -> Value {
        Value::map(self.files.iter().map(|(k, v)| (k.clone(), Value::from(base64::engine::general_purpose::STANDARD.encode(v)))).collect())
    }
}

/// Kubernetes version in `.Capabilities.KubeVersion`.
#[derive(Debug, Clone)]
pub struct KubeVersion {
    /// e.g. `v1.36.0`
    pub version: String,
    /// e.g. `1`
    pub major: String,
    /// e.g. `36`
    pub minor: String,
}

impl KubeVersion {
    /// Parses `v1.20.3` or `1.20`.
    pub fn parse(s: &str) -> Option<KubeVersion> {
        let v = crate::semver::Version::parse(s).ok()?;
        Some(KubeVersion { version: format!("v{}", v.string()), major: v.major.to_string(), minor: v.minor.to_string() })
    }
}

impl Object for KubeVersion {
    fn type_name(&self) -> String {
        "common.KubeVersion".into()
    }
    fn kind(&self) -> &'static str {
        "struct"
    }
    fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "Version" | "GitVersion" | "String" => Value::from(self.version.as_str()),
            "Major" => Value::from(self.major.as_str()),
            "Minor" => Value::from(self.minor.as_str()),
            _ => return None,
        })
    }
    /// Go prints the struct (`{Version normalizedVersion Major Minor}`): `String()` has a
    /// pointer receiver and the template holds the field's value.
    fn format(&self) -> String {
        format!("{{{} {} {} {}}}", self.version, self.version, self.major, self.minor)
    }
    fn struct_fields(&self) -> Option<Vec<(&'static str, Value)>> {
        let s = |x: &str| Value::from(x);
        Some(vec![("Version", s(&self.version)), ("normalizedVersion", s(&self.version)), ("Major", s(&self.major)), ("Minor", s(&self.minor))])
    }
    fn to_json(&self) -> Value {
        Value::map(self.json_fields().unwrap_or_default().into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }
    /// Helm's `chartutil.KubeVersion` fields in declaration order (`Version`, `Major`, `Minor`;
    /// `normalizedVersion` is unexported), as `encoding/json` writes them.
    fn json_fields(&self) -> Option<Vec<(&'static str, Value)>> {
        let s = |x: &str| Value::from(x);
        Some(vec![("Version", s(&self.version)), ("Major", s(&self.major)), ("Minor", s(&self.minor))])
    }
}

/// `.Capabilities.APIVersions`.
#[derive(Debug, Clone)]
pub struct VersionSet(pub Vec<String>);

impl Object for VersionSet {
    fn type_name(&self) -> String {
        "common.VersionSet".into()
    }
    fn kind(&self) -> &'static str {
        "slice"
    }
    fn field(&self, _name: &str) -> Option<Value> {
        None
    }
    fn has_method(&self, name: &str) -> bool {
        name == "Has"
    }
    fn as_plain(&self) -> Option<Value> {
        Some(Value::str_list(self.0.clone()))
    }
    fn call(&self, name: &str, args: &[Value]) -> Result<Value, String> {
        match name {
            "Has" => {
                let a = args.first().and_then(|v| v.as_str()).unwrap_or("");
                Ok(Value::Bool(self.0.iter().any(|x| x == a)))
            }
            _ => Err(format!("can't call method {name}")),
        }
    }
    fn format(&self) -> String {
        format!("[{}]", self.0.join(" "))
    }
    fn to_json(&self) -> Value {
        Value::str_list(self.0.clone())
    }
}

/// `.Capabilities`.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// Kubernetes version.
    pub kube_version: KubeVersion,
    /// API versions.
    pub api_versions: Vec<String>,
    /// Helm version string (e.g. `v4.2.3`).
    pub helm_version: String,
}

impl Object for Capabilities {
    fn type_name(&self) -> String {
        "*common.Capabilities".into()
    }
    fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "KubeVersion" => Value::Object(Rc::new(self.kube_version.clone())),
            "APIVersions" => Value::Object(Rc::new(VersionSet(self.api_versions.clone()))),
            "HelmVersion" => {
                let mut m = BTreeMap::new();
                m.insert("Version".into(), Value::from(self.helm_version.as_str()));
                m.insert("GitCommit".into(), Value::from(""));
                m.insert("GitTreeState".into(), Value::from(""));
                m.insert("GoVersion".into(), Value::from("go1.25"));
                Value::map(m)
            }
            _ => return None,
        })
    }
    fn format(&self) -> String {
        format!("&{{{} {} {{{} }}}}", self.kube_version.version, VersionSet(self.api_versions.clone()).format(), self.helm_version)
    }
}

#[cfg(test)]
mod glob_tests {
    use super::*;

    #[test]
    fn hostile_glob_patterns_take_bounded_time() {
        let t = std::time::Instant::now();
        // wildcards: remembered failures make this polynomial
        assert!(!glob_match(&format!("{}b", "*a".repeat(25)), &"a".repeat(200)));
        assert!(glob_match(&format!("{}b", "*a".repeat(25)), &format!("{}b", "a".repeat(200))));
        // alternatives: 2^30 ways, cut off
        assert_eq!(glob_match_bounded(&format!("{}b", "{a,a}".repeat(30)), &format!("{}c", "a".repeat(30))), None);
        assert!(t.elapsed().as_secs() < 10, "{:?}", t.elapsed());
        let files = Files { files: [(format!("{}c", "a".repeat(30)), b"x".to_vec())].into() };
        let e = files.call("Glob", &[Value::from(format!("{}b", "{a,a}".repeat(30)))]).unwrap_err();
        assert!(e.starts_with("render limit exceeded: glob pattern"), "{e}");
        assert!(glob_match("files/*.yaml", "files/a.yaml") && !glob_match("files/*.yaml", "files/x/a.yaml") && glob_match("files/**.yaml", "files/x/a.yaml"));
    }
}
