//! Masterminds/semver v3 semantics (versions, loose parsing, constraints), as Sprig's
//! `semver`/`semverCompare` and Helm's `kubeVersion` checks use them.

use std::cmp::Ordering;

use crate::value::{Object, Value};

/// A parsed version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: String,
    pub metadata: String,
    pub original: String,
}

/// A semver error with Masterminds' texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemverError(pub String);

impl std::fmt::Display for SemverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn valid_ident(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

impl Version {
    /// `semver.NewVersion` (loose: optional `v`, missing minor/patch).
    pub fn parse(s: &str) -> Result<Version, SemverError> {
        let bad = || SemverError("invalid semantic version".into());
        let orig = s;
        let t = s.strip_prefix('v').unwrap_or(s);
        let (t, meta) = match t.split_once('+') {
            Some((a, b)) => (a, b.to_string()),
            None => (t, String::new()),
        };
        let (core, pre) = match t.split_once('-') {
            Some((a, b)) => (a, b.to_string()),
            None => (t, String::new()),
        };
        if !meta.is_empty() && !valid_ident(&meta) || s.ends_with('+') {
            return Err(bad());
        }
        if !pre.is_empty() && !valid_ident(&pre) || t.ends_with('-') {
            return Err(bad());
        }
        let parts: Vec<&str> = core.split('.').collect();
        if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit())) {
            return Err(bad());
        }
        let num = |p: &str| -> Result<u64, SemverError> {
            p.parse::<u64>().map_err(|_| {
                SemverError(format!("Error parsing version segment: strconv.ParseUint: parsing {}: value out of range", crate::template::fmt::go_quote(p)))
            })
        };
        let major = num(parts[0])?;
        let minor = if parts.len() > 1 { num(parts[1])? } else { 0 };
        let patch = if parts.len() > 2 { num(parts[2])? } else { 0 };
        if !pre.is_empty() {
            for p in pre.split('.') {
                if p.len() > 1 && p.starts_with('0') && p.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(SemverError("Version segment starts with 0".into()));
                }
            }
        }
        Ok(Version { major, minor, patch, pre, metadata: meta, original: orig.to_string() })
    }

    /// Canonical string.
    pub fn string(&self) -> String {
        let mut s = format!("{}.{}.{}", self.major, self.minor, self.patch);
        if !self.pre.is_empty() {
            s.push('-');
            s.push_str(&self.pre);
        }
        if !self.metadata.is_empty() {
            s.push('+');
            s.push_str(&self.metadata);
        }
        s
    }

    /// Semver precedence.
    pub fn compare(&self, o: &Version) -> Ordering {
        self.major.cmp(&o.major).then(self.minor.cmp(&o.minor)).then(self.patch.cmp(&o.patch)).then_with(|| compare_pre(&self.pre, &o.pre))
    }
}

fn compare_pre(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    let ap: Vec<&str> = a.split('.').collect();
    let bp: Vec<&str> = b.split('.').collect();
    for (x, y) in ap.iter().zip(bp.iter()) {
        let xn = x.parse::<u64>();
        let yn = y.parse::<u64>();
        let o = match (xn, yn) {
            (Ok(p), Ok(q)) => p.cmp(&q),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ap.len().cmp(&bp.len())
}

impl Object for Version {
    fn type_name(&self) -> String {
        "*semver.Version".into()
    }
    fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "Major" => Value::Uint(self.major),
            "Minor" => Value::Uint(self.minor),
            "Patch" => Value::Uint(self.patch),
            "Prerelease" => Value::from(self.pre.as_str()),
            "Metadata" => Value::from(self.metadata.as_str()),
            "Original" => Value::from(self.original.as_str()),
            "String" => Value::from(self.string()),
            _ => return None,
        })
    }
    fn has_method(&self, name: &str) -> bool {
        matches!(name, "Compare" | "LessThan" | "GreaterThan" | "Equal" | "IncMajor" | "IncMinor" | "IncPatch")
    }
    fn call(&self, name: &str, args: &[Value]) -> Result<Value, String> {
        let other = || -> Result<Version, String> {
            match args.first() {
                Some(Value::Object(o)) => Version::parse(&o.format()).map_err(|e| e.to_string()),
                _ => Err("invalid memory address or nil pointer dereference".into()),
            }
        };
        let inc = |v: Version| Value::Object(std::rc::Rc::new(Version { original: v.string(), ..v }));
        Ok(match name {
            "Compare" => Value::Int(match self.compare(&other()?) {
                Ordering::Less => -1,
                Ordering::Equal => 0,
                Ordering::Greater => 1,
            }),
            "LessThan" => Value::Bool(self.compare(&other()?) == Ordering::Less),
            "GreaterThan" => Value::Bool(self.compare(&other()?) == Ordering::Greater),
            "Equal" => Value::Bool(self.compare(&other()?) == Ordering::Equal),
            "IncMajor" => inc(Version { major: self.major + 1, minor: 0, patch: 0, pre: String::new(), metadata: String::new(), original: String::new() }),
            "IncMinor" => {
                inc(Version { major: self.major, minor: self.minor + 1, patch: 0, pre: String::new(), metadata: String::new(), original: String::new() })
            }
            "IncPatch" => {
                let patch = if self.pre.is_empty() { self.patch + 1 } else { self.patch };
                inc(Version { major: self.major, minor: self.minor, patch, pre: String::new(), metadata: String::new(), original: String::new() })
            }
            _ => return Err(format!("can't call method {name}")),
        })
    }
    fn format(&self) -> String {
        self.string()
    }
    fn to_json(&self) -> Value {
        Value::from(self.string())
    }
}

#[derive(Debug, Clone)]
struct Constraint {
    op: String,
    con: Version,
    dirty: bool,
    minor_dirty: bool,
    patch_dirty: bool,
}

/// A parsed constraint set (`||` of `,`-joined constraints).
#[derive(Debug, Clone)]
pub struct Constraints {
    groups: Vec<Vec<Constraint>>,
}

fn is_x(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

fn parse_constraint(c: &str) -> Result<Constraint, SemverError> {
    let c = c.trim();
    let bad = || SemverError(format!("improper constraint: {}", crate::template::fmt::go_quote(c)));
    let ops = ["!=", ">=", "=>", "<=", "=<", "~>", ">", "<", "=", "~", "^"];
    let mut op = "";
    for o in ops {
        if c.starts_with(o) {
            op = o;
            break;
        }
    }
    let ver = c[op.len()..].trim();
    if ver.is_empty() {
        return Err(bad());
    }
    let v = ver.strip_prefix('v').unwrap_or(ver);
    let (core, rest) = match v.find(['-', '+']) {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3 || parts.iter().any(|p| p.is_empty() || !(is_x(p) || p.bytes().all(|b| b.is_ascii_digit()))) {
        return Err(bad());
    }
    let (mut dirty, mut minor_dirty, mut patch_dirty) = (false, false, false);
    let vstr = if is_x(parts[0]) {
        dirty = true;
        format!("0.0.0{rest}")
    } else if parts.len() == 1 || is_x(parts[1]) {
        // Masterminds/semver v3 parseConstraint: a missing minor counts as `x` (`~1` is `~1.x`)
        dirty = true;
        minor_dirty = true;
        format!("{}.0.0{rest}", parts[0])
    } else if parts.len() == 2 || is_x(parts[2]) {
        // ... and so does a missing patch (`>1.2` is `>1.2.x`)
        dirty = true;
        patch_dirty = true;
        format!("{}.{}.0{rest}", parts[0], parts[1])
    } else {
        v.to_string()
    };
    let con = Version::parse(&vstr).map_err(|_| bad())?;
    Ok(Constraint { op: op.to_string(), con, dirty, minor_dirty, patch_dirty })
}

impl Constraints {
    /// `semver.NewConstraint`.
    pub fn parse(s: &str) -> Result<Constraints, SemverError> {
        let mut groups = Vec::new();
        for raw in s.split("||") {
            let g = raw.trim();
            let mut cs = Vec::new();
            // hyphen ranges "a - b"
            let items: Vec<String> = split_and(g);
            // Masterminds reports the `||` segment as written, spaces included
            let bad = || SemverError(format!("improper constraint: {}", crate::template::fmt::go_quote(raw)));
            for it in items {
                if let Some((a, b)) = it.split_once(" - ") {
                    cs.push(parse_constraint(&format!(">={}", a.trim())).map_err(|_| bad())?);
                    cs.push(parse_constraint(&format!("<={}", b.trim())).map_err(|_| bad())?);
                } else {
                    cs.push(parse_constraint(&it).map_err(|_| bad())?);
                }
            }
            if cs.is_empty() {
                return Err(bad());
            }
            groups.push(cs);
        }
        Ok(Constraints { groups })
    }

    /// Whether `v` satisfies the constraints.
    pub fn check(&self, v: &Version) -> bool {
        self.groups.iter().any(|g| g.iter().all(|c| check_one(c, v)))
    }
}

fn split_and(g: &str) -> Vec<String> {
    // Constraints are separated by commas or spaces; operators may be followed by spaces.
    let mut out = Vec::new();
    if g.contains(" - ") {
        return g.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect();
    }
    for part in g.split(',') {
        let toks: Vec<&str> = part.split_whitespace().collect();
        let mut k = 0;
        while k < toks.len() {
            let t = toks[k];
            if t.chars().all(|c| "<>=!~^".contains(c)) && k + 1 < toks.len() {
                out.push(format!("{t}{}", toks[k + 1]));
                k += 2;
            } else {
                out.push(t.to_string());
                k += 1;
            }
        }
    }
    out
}

fn check_one(c: &Constraint, v: &Version) -> bool {
    let pre_block = !v.pre.is_empty() && c.con.pre.is_empty();
    let cmp = v.compare(&c.con);
    match c.op.as_str() {
        "" | "=" => {
            if pre_block {
                return false;
            }
            if c.dirty {
                return tilde(c, v);
            }
            cmp == Ordering::Equal
        }
        "!=" => {
            if pre_block {
                return false;
            }
            if c.dirty {
                if v.major != c.con.major {
                    return true;
                }
                if v.minor != c.con.minor && !c.minor_dirty {
                    return true;
                }
                if c.minor_dirty {
                    return false;
                }
                if v.patch != c.con.patch && !c.patch_dirty {
                    return true;
                }
                return false;
            }
            cmp != Ordering::Equal
        }
        ">" => {
            if pre_block {
                return false;
            }
            if !c.dirty {
                return cmp == Ordering::Greater;
            }
            if v.major > c.con.major {
                return true;
            } else if v.major < c.con.major || c.minor_dirty {
                return false;
            } else if c.patch_dirty {
                return v.minor > c.con.minor;
            }
            cmp == Ordering::Greater
        }
        "<" => {
            if pre_block {
                return false;
            }
            cmp == Ordering::Less
        }
        ">=" | "=>" => {
            if pre_block {
                return false;
            }
            cmp != Ordering::Less
        }
        "<=" | "=<" => {
            if pre_block {
                return false;
            }
            if !c.dirty {
                return cmp != Ordering::Greater;
            }
            !(v.major > c.con.major || (v.major == c.con.major && v.minor > c.con.minor && !c.minor_dirty))
        }
        "~" | "~>" => tilde(c, v),
        "^" => {
            if pre_block || cmp == Ordering::Less {
                return false;
            }
            if c.con.major > 0 || c.minor_dirty {
                return v.major == c.con.major;
            }
            if c.con.minor > 0 || c.patch_dirty {
                return v.major == c.con.major && v.minor == c.con.minor;
            }
            v.major == c.con.major && v.minor == c.con.minor && v.patch == c.con.patch
        }
        _ => false,
    }
}

fn tilde(c: &Constraint, v: &Version) -> bool {
    if !v.pre.is_empty() && c.con.pre.is_empty() {
        return false;
    }
    if v.compare(&c.con) == Ordering::Less {
        return false;
    }
    if c.con.major == 0 && c.con.minor == 0 && c.con.patch == 0 && !c.minor_dirty && !c.patch_dirty {
        return true;
    }
    if v.major != c.con.major {
        return false;
    }
    if v.minor != c.con.minor && !c.minor_dirty {
        return false;
    }
    true
}
