//! Sprig's defaults, reflection, encoding, JSON, URL, path and semver functions.

use std::collections::BTreeMap;

use base64::Engine;

use super::convert::strval;
use super::sprig_lists::deep_equal;
use super::{FResult, FuncMap, Ty, b, ok_str, reg, s};
use crate::json::{JsonOpts, encode};
use crate::value::Value;

use Ty::*;

pub fn register(m: &mut FuncMap) {
    reg(m, "default", &[Any], Some(Any), |_, a| {
        if a.len() < 2 || !a[1].truthy() {
            return Ok(a[0].clone());
        }
        Ok(a[1].clone())
    });
    reg(m, "empty", &[Any], None, |_, a| Ok(Value::Bool(!a[0].truthy())));
    reg(m, "coalesce", &[], Some(Any), |_, a| Ok(a.iter().find(|v| v.truthy()).cloned().unwrap_or(Value::Nil)));
    reg(m, "all", &[], Some(Any), |_, a| Ok(Value::Bool(a.iter().all(Value::truthy))));
    reg(m, "any", &[], Some(Any), |_, a| Ok(Value::Bool(a.iter().any(Value::truthy))));
    reg(m, "ternary", &[Any, Any, Bool], None, |_, a| Ok(if b(&a[2]) { a[0].clone() } else { a[1].clone() }));
    reg(m, "typeOf", &[Any], None, |_, a| ok_str(a[0].type_name()));
    reg(m, "typeIs", &[Str, Any], None, |_, a| Ok(Value::Bool(s(&a[0]) == a[1].type_name())));
    reg(m, "typeIsLike", &[Str, Any], None, |_, a| {
        let t = a[1].type_name();
        Ok(Value::Bool(s(&a[0]) == t || format!("*{}", s(&a[0])) == t))
    });
    reg(m, "kindOf", &[Any], None, |_, a| ok_str(a[0].kind()));
    reg(m, "kindIs", &[Str, Any], None, |_, a| Ok(Value::Bool(s(&a[0]) == a[1].kind())));
    reg(m, "deepEqual", &[Any, Any], None, |_, a| Ok(Value::Bool(deep_equal(&a[0], &a[1]))));
    reg(m, "b64enc", &[Str], None, |_, a| ok_str(base64::engine::general_purpose::STANDARD.encode(s(&a[0]))));
    reg(m, "b64dec", &[Str], None, |_, a| {
        if let Some(p) = bad_input_offset(s(&a[0]), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 4) {
            return ok_str(format!("illegal base64 data at input byte {p}"));
        }
        ok_str(match base64::engine::general_purpose::STANDARD.decode(s(&a[0])) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => b64_err(&e),
        })
    });
    reg(m, "b32enc", &[Str], None, |_, a| ok_str(data_encoding::BASE32.encode(s(&a[0]).as_bytes())));
    reg(m, "b32dec", &[Str], None, |_, a| {
        if let Some(p) = bad_input_offset(s(&a[0]), "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 8) {
            return ok_str(format!("illegal base32 data at input byte {p}"));
        }
        ok_str(match data_encoding::BASE32.decode(s(&a[0]).as_bytes()) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => format!("illegal base32 data at input byte {}", e.position),
        })
    });
    reg(m, "toPrettyJson", &[Any], None, |_, a| ok_str(encode(&a[0], JsonOpts { escape_html: true, pretty: true }).unwrap_or_default()));
    reg(m, "mustToPrettyJson", &[Any], None, |_, a| ok_str(encode(&a[0], JsonOpts { escape_html: true, pretty: true })?));
    reg(m, "toRawJson", &[Any], None, |_, a| ok_str(encode(&a[0], JsonOpts { escape_html: false, pretty: false }).unwrap_or_default()));
    reg(m, "mustToRawJson", &[Any], None, |_, a| ok_str(encode(&a[0], JsonOpts { escape_html: false, pretty: false })?));
    reg(m, "mustToJson", &[Any], None, |_, a| ok_str(encode(&a[0], JsonOpts { escape_html: true, pretty: false })?));
    reg(m, "mustFromJson", &[Str], None, |_, a| Ok(crate::json::decode(s(&a[0]))?));
    reg(m, "base", &[Str], None, |_, a| ok_str(path_base(s(&a[0]))));
    reg(m, "osBase", &[Str], None, |_, a| ok_str(path_base(s(&a[0]))));
    reg(m, "dir", &[Str], None, |_, a| ok_str(path_dir(s(&a[0]))));
    reg(m, "osDir", &[Str], None, |_, a| ok_str(path_dir(s(&a[0]))));
    reg(m, "clean", &[Str], None, |_, a| ok_str(path_clean(s(&a[0]))));
    reg(m, "osClean", &[Str], None, |_, a| ok_str(path_clean(s(&a[0]))));
    reg(m, "ext", &[Str], None, |_, a| ok_str(path_ext(s(&a[0]))));
    reg(m, "osExt", &[Str], None, |_, a| ok_str(path_ext(s(&a[0]))));
    reg(m, "isAbs", &[Str], None, |_, a| Ok(Value::Bool(s(&a[0]).starts_with('/'))));
    reg(m, "osIsAbs", &[Str], None, |_, a| Ok(Value::Bool(s(&a[0]).starts_with('/'))));
    reg(m, "urlParse", &[Str], None, |_, a| url_parse(s(&a[0])));
    reg(m, "urlJoin", &[Map], None, |_, a| url_join(&a[0]));
    reg(m, "semverCompare", &[Str, Str], None, |_, a| {
        let c = crate::semver::Constraints::parse(s(&a[0])).map_err(|e| e.to_string())?;
        let v = crate::semver::Version::parse(s(&a[1])).map_err(|e| e.to_string())?;
        Ok(Value::Bool(c.check(&v)))
    });
    reg(m, "semver", &[Str], None, |_, a| {
        let v = crate::semver::Version::parse(s(&a[0])).map_err(|e| e.to_string())?;
        Ok(Value::Object(std::rc::Rc::new(v)))
    });
    // Helm's engine replaces Sprig's getHostByName with one returning "" unless DNS lookups
    // are enabled (`helm template --enable-dns`; pkg/engine/engine.go, `if !e.EnableDNS`).
    // Harmony renders offline, so always "" (checked against Helm's engine: `a: ""`).
    reg(m, "getHostByName", &[Str], None, |_, _| ok_str(""));
}

fn b64_err(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(p, _) => format!("illegal base64 data at input byte {p}"),
        base64::DecodeError::InvalidLength(p) => format!("illegal base64 data at input byte {p}"),
        base64::DecodeError::InvalidLastSymbol(p, _) => format!("illegal base64 data at input byte {p}"),
        base64::DecodeError::InvalidPadding => "illegal base64 data at input byte 0".into(),
    }
}

/// Go's `path.Base`.
pub fn path_base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

/// Go's `path.Dir`.
pub fn path_dir(p: &str) -> String {
    let i = p.rfind('/').map(|i| i + 1).unwrap_or(0);
    path_clean(&p[..i])
}

/// Go's `path.Ext`.
pub fn path_ext(p: &str) -> String {
    for (i, c) in p.char_indices().rev() {
        if c == '/' {
            break;
        }
        if c == '.' {
            return p[i..].to_string();
        }
    }
    String::new()
}

/// Go's `path.Clean`.
pub fn path_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let j = parts.join("/");
    if rooted {
        format!("/{j}")
    } else if j.is_empty() {
        ".".into()
    } else {
        j
    }
}

fn url_parse(u: &str) -> FResult {
    if u.starts_with(':') {
        return Err(format!("unable to parse url: parse {}: missing protocol scheme", crate::template::fmt::go_quote(u)).into());
    }
    let mut m = BTreeMap::new();
    let (rest, fragment) = match u.split_once('#') {
        Some((a, b)) => (a, b.to_string()),
        None => (u, String::new()),
    };
    let (scheme, rest) = match rest.find(':') {
        Some(i) if i > 0 && rest[..i].chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) && rest.as_bytes()[0].is_ascii_alphabetic() => {
            (rest[..i].to_lowercase(), &rest[i + 1..])
        }
        _ => (String::new(), rest),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((a, b)) => (a, b.to_string()),
        None => (rest, String::new()),
    };
    let (mut host, mut path, mut userinfo, mut opaque) = (String::new(), String::new(), String::new(), String::new());
    if let Some(r) = rest.strip_prefix("//") {
        let (auth, p) = match r.find('/') {
            Some(i) => (&r[..i], &r[i..]),
            None => (r, ""),
        };
        path = p.to_string();
        match auth.rsplit_once('@') {
            Some((ui, h)) => {
                userinfo = ui.to_string();
                host = h.to_string();
            }
            None => host = auth.to_string(),
        }
    } else if !scheme.is_empty() && !rest.starts_with('/') {
        opaque = rest.to_string();
    } else {
        path = rest.to_string();
    }
    let hostname = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[').to_string()
    } else {
        host.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or(host.clone())
    };
    m.insert("scheme".into(), Value::from(scheme));
    m.insert("host".into(), Value::from(host));
    m.insert("hostname".into(), Value::from(hostname));
    m.insert("path".into(), Value::from(percent_decode(&path)));
    m.insert("query".into(), Value::from(query));
    m.insert("opaque".into(), Value::from(opaque));
    m.insert("fragment".into(), Value::from(percent_decode(&fragment)));
    m.insert("userinfo".into(), Value::from(userinfo));
    Ok(Value::map(m))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn url_join(d: &Value) -> FResult {
    let Value::Map(m) = d else { return ok_str("") };
    let m = m.borrow();
    let get = |k: &str| m.get(k).map(strval).unwrap_or_default();
    let mut out = String::new();
    let scheme = get("scheme");
    if !scheme.is_empty() {
        out.push_str(&scheme);
        out.push(':');
    }
    let opaque = get("opaque");
    if !opaque.is_empty() {
        out.push_str(&opaque);
    } else {
        let host = get("host");
        let ui = get("userinfo");
        if !scheme.is_empty() || !host.is_empty() || !ui.is_empty() {
            if !host.is_empty() || !get("path").is_empty() || !ui.is_empty() {
                out.push_str("//");
            }
            if !ui.is_empty() {
                out.push_str(&ui);
                out.push('@');
            }
            out.push_str(&host);
        }
        let path = get("path");
        if !path.is_empty() && !path.starts_with('/') && !host.is_empty() {
            out.push('/');
        }
        out.push_str(&escape_path(&path));
    }
    let q = get("query");
    if !q.is_empty() {
        out.push('?');
        out.push_str(&q);
    }
    let f = get("fragment");
    if !f.is_empty() {
        out.push('#');
        out.push_str(&f);
    }
    ok_str(out)
}

/// Go's `url.PathEscape`-style escaping used by `URL.EscapedPath` (keeps `/`).
fn escape_path(p: &str) -> String {
    let mut o = String::new();
    for b in p.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'/'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b':'
            | b'@' => o.push(b as char),
            b => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

/// Offset Go's decoder reports for input with a character outside the alphabet, or a
/// truncated final quantum.
fn bad_input_offset(s: &str, alphabet: &str, quantum: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut seen_pad = false;
    for (i, &c) in b.iter().enumerate() {
        if c == b'=' {
            seen_pad = true;
            continue;
        }
        if c == b'\n' || c == b'\r' {
            continue;
        }
        if seen_pad || !alphabet.as_bytes().contains(&c) {
            return Some(i);
        }
    }
    if !seen_pad && !b.len().is_multiple_of(quantum) {
        return Some(b.len() - b.len() % quantum);
    }
    None
}
