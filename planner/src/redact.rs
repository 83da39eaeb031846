//! Secret redaction with keyed fingerprints.
//!
//! Every value of a Kubernetes `Secret`'s `data`, `stringData` and `binaryData` (and of any
//! object annotated `harmony.dev/sensitive: "true"`) is replaced by a fingerprint
//! `(secret fp:<16 hex>)`; every other string of every object has the plaintext of each known
//! secret (resolved `secret-value`s, the values of those Secret fields) replaced by
//! `(redacted)`. Diffs are computed on redacted objects, so no output can hold plaintext, yet a
//! changed secret shows as changed (its fingerprint changes) and an unchanged one as unchanged.
//!
//! # Why a keyed fingerprint, and which key
//!
//! A bare hash of a secret can be brute-forced offline from a pasted plan when the secret has
//! low entropy (a short password, a PIN). A fingerprint is therefore
//! `HMAC-SHA256(key, "harmony-secret-v1\0" || value)`, truncated to 64 bits, where the key is
//! a 256-bit random [`FingerprintKey`] that is never written into a plan or any output (only
//! its id, an HMAC of a constant). Without the key, a fingerprint reveals nothing that helps
//! guessing the value; with it, one can only confirm a guess, and whoever holds the key
//! (the operator's machine) can read the secrets anyway. Deriving the key from the secret
//! material itself was rejected: with one secret in the plan it degenerates to a bare hash.
//! The planner is pure: the key is an input. The CLI keeps it in the user's state directory
//! (created on first use; see `docs/adr/0005-secret-fingerprints.md`), until the executor
//! stores it with the targets so that every machine planning against them agrees.

use std::collections::BTreeSet;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value as Json;
use sha2::Sha256;

use crate::object::Object;
use crate::render::{ReleaseObjects, RenderError, SecretValues};

/// Annotation that marks an object's `data`/`stringData`/`binaryData` as sensitive.
pub const SENSITIVE_ANNOTATION: &str = "harmony.dev/sensitive";

/// What replaces plaintext found outside secret fields.
pub const REDACTED: &str = "(redacted)";

/// The 256-bit key fingerprints are computed with. Never serialised.
#[derive(Clone)]
pub struct FingerprintKey([u8; 32]);

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FingerprintKey({})", self.id())
    }
}

impl FingerprintKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        FingerprintKey(bytes)
    }

    /// A key from a key file's content (64 hex characters, surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let bytes = hex::decode(t).map_err(|e| format!("expected 64 hexadecimal characters: {e}"))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| format!("expected 32 bytes (64 hexadecimal characters), found {}", b.len()))?;
        Ok(FingerprintKey(arr))
    }

    fn mac(&self, domain: &[u8], value: &[u8]) -> String {
        // HMAC accepts keys of any length: `new_from_slice` cannot fail here.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(domain);
        m.update(value);
        harmony_schemas::encoding::hex(&m.finalize().into_bytes()[..8])
    }

    /// `fp:<16 hex>` of a secret value.
    pub fn fingerprint(&self, value: &[u8]) -> String {
        format!("fp:{}", self.mac(b"harmony-secret-v1\0", value))
    }

    /// `hmac-sha256:<64 hex>` of a plan's digest (`contract::seal`: the whole file but the seal):
    /// the seal `apply` checks, so that a plan file edited and re-hashed by someone without the
    /// key is refused (docs/adr/0013). Domain `v2`: a `v1` seal covered the identity only.
    pub fn seal(&self, digest: &str) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(b"harmony-plan-seal-v2\0");
        m.update(digest.as_bytes());
        format!("hmac-sha256:{}", harmony_schemas::encoding::hex(&m.finalize().into_bytes()))
    }

    /// Whether `seal` is [`FingerprintKey::seal`] of `digest` (in constant time).
    pub fn verify_seal(&self, digest: &str, seal: &str) -> bool {
        let Some(hex_mac) = seal.strip_prefix("hmac-sha256:") else { return false };
        let Ok(bytes) = hex::decode(hex_mac) else { return false };
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(b"harmony-plan-seal-v2\0");
        m.update(digest.as_bytes());
        m.verify_slice(&bytes).is_ok()
    }

    /// `kid:<16 hex>`: names the key without revealing it.
    pub fn id(&self) -> String {
        format!("kid:{}", self.mac(b"harmony-key-id-v1\0", b""))
    }
}

/// Plaintexts to scrub from every string, longest first (so a value containing another is
/// caught whole).
#[derive(Debug, Default, Clone)]
pub struct Needles(BTreeSet<(std::cmp::Reverse<usize>, String)>);

/// Secret-field values shorter than this are not scrubbed elsewhere (a Secret holding `1`
/// must not turn every `1` of a diff into `(redacted)`); `secret-value`s are scrubbed whatever
/// their length.
pub const MIN_FIELD_NEEDLE: usize = 4;

impl Needles {
    /// Adds a plaintext, its base64 form and its quoted form (JSON's escaping, which Go's `%q`
    /// shares for `"`, `\`, line breaks and tabs: an API server's error quoting such a value).
    pub fn add(&mut self, plaintext: &str) {
        if plaintext.is_empty() {
            return;
        }
        self.0.insert((std::cmp::Reverse(plaintext.len()), plaintext.to_string()));
        let b64 = base64::engine::general_purpose::STANDARD.encode(plaintext.as_bytes());
        self.0.insert((std::cmp::Reverse(b64.len()), b64));
        if let Ok(quoted) = serde_json::to_string(plaintext)
            && let Some(inner) = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"'))
            && inner != plaintext
        {
            self.0.insert((std::cmp::Reverse(inner.len()), inner.to_string()));
        }
    }

    /// Adds the values of every secret field of an object.
    pub fn add_fields_of(&mut self, obj: &Json) {
        self.add_fields_of_as(obj, is_sensitive(obj));
    }

    /// Adds the values of every secret field of an object, when `sensitive` (e.g. a live object
    /// whose `harmony.dev/sensitive` annotation someone removed: its chart marks it sensitive).
    pub fn add_fields_of_as(&mut self, obj: &Json, sensitive: bool) {
        for (_, _, plain) in secret_fields(obj, sensitive) {
            if let Ok(s) = String::from_utf8(plain)
                && s.chars().count() >= MIN_FIELD_NEEDLE
            {
                self.add(&s);
            }
        }
    }

    /// Replaces each needle in `s`.
    pub fn scrub(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (_, n) in &self.0 {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), REDACTED);
            }
        }
        out
    }
}

impl Needles {
    /// Adds the strings an object computed from a `secret-value` ([`Object::derived`]), so
    /// that they are scrubbed wherever else they occur (4+ characters, like secret fields).
    /// A marked map or list (its keys depend on a secret, or its shape) gives every string in
    /// it (4+ characters). A whole object (marked when its stand-in render differs in shape or
    /// fails) gives nothing here, where its every string would be scrubbed from the whole plan
    /// (its names and labels: the plan shows it as one fingerprint); [`Needles::add_strings_of`]
    /// takes them all where that is wanted (apply's messages).
    pub fn add_derived_of(&mut self, obj: &Object) {
        for p in obj.derived.iter().filter(|p| !p.is_empty()) {
            if let Some(v) = obj.value.pointer(p) {
                self.add_strings_of(v);
            }
        }
    }

    /// Adds every string (values and keys, 4+ characters) in `v`.
    pub fn add_strings_of(&mut self, v: &Json) {
        match v {
            Json::String(s) => self.add_min(s),
            Json::Array(a) => a.iter().for_each(|x| self.add_strings_of(x)),
            Json::Object(m) => m.iter().for_each(|(k, x)| {
                self.add_min(k);
                self.add_strings_of(x);
            }),
            _ => {}
        }
    }

    fn add_min(&mut self, s: &str) {
        if s.chars().count() >= MIN_FIELD_NEEDLE {
            self.add(s);
        }
    }
}

/// Renders a release (`render`) with its resolved `secret-value`s and, when there are any,
/// once more with each replaced by a stand-in ([`stand_in`]), and marks in the first result
/// every value that differs ([`Object::derived`]): what a chart computed from a secret —
/// `upper`, `b64enc | b64enc`, `printf`, `trim`, `title`, `replace`, `sha256sum`, … —, which
/// scrubbing the plaintext and its base64 form cannot find. A verbatim occurrence (that
/// scrubbing replaces) is not marked. Failures are compared the same way, by
/// [`error_without_secrets`]: the words of the message that differ are redacted.
///
/// Why not taint tracking in the template engine: every one of its 240 functions (and Go's
/// `fmt`, YAML and JSON encoders) would have to propagate taint exactly, and one that forgot
/// would leak; the second render needs no cooperation from the engine (which stays pure and
/// renders exactly what Helm renders) and cannot miss a transformation, only over-mark (a
/// value that changes with the secret without revealing it, like a checksum, is fingerprinted
/// too). It costs one more render of releases that have resolved `secret-value`s.
pub fn follow_secrets(secrets: &SecretValues, render: impl Fn(&SecretValues) -> Result<ReleaseObjects, RenderError>) -> Result<ReleaseObjects, RenderError> {
    let real = render(secrets)?;
    Ok(follow_rendered(real, secrets, render))
}

/// [`follow_secrets`] for a release already rendered with `secrets` (`real`): `render`
/// renders it with the stand-ins it is given.
pub fn follow_rendered(mut real: ReleaseObjects, secrets: &SecretValues, render: impl Fn(&SecretValues) -> Result<ReleaseObjects, RenderError>) -> ReleaseObjects {
    let Some(StandIns { needles, alt_needles, values }) = stand_ins(secrets) else { return real };
    match render(&values) {
        Ok(alt) => mark_derived(&mut real.objects, &alt.objects, &needles, &alt_needles),
        // Cannot tell what depends on the secrets: everything might.
        Err(_) => real.objects.iter_mut().for_each(|o| o.derived = vec![String::new()]),
    }
    real
}

/// Whether any `secret-value` is resolved to something (there is a secret to follow).
pub fn has_resolved(secrets: &SecretValues) -> bool {
    secrets.values().any(|v| v.as_deref().is_some_and(|v| !v.is_empty()))
}

/// A render error's message without secrets (`render::render_helm`, behind plan and apply):
/// the plaintexts and their base64 forms scrubbed, and the words that differ from the error of
/// a render with stand-ins (`render_stand_ins` renders with the values it is given and returns
/// its error, if any) redacted, or the message withheld when only the real values fail.
pub fn error_without_secrets(release: &str, secrets: &SecretValues, message: &str, render_stand_ins: impl FnOnce(&SecretValues) -> Option<String>) -> String {
    let Some(StandIns { needles, alt_needles, values }) = stand_ins(secrets) else {
        let mut needles = Needles::default();
        secrets.values().flatten().for_each(|v| needles.add(v));
        return needles.scrub(message);
    };
    let alt = render_stand_ins(&values).map(|m| alt_needles.scrub(&m));
    redacted_error(&needles.scrub(message), alt.as_deref(), release)
}

/// The stand-ins of a release's resolved `secret-value`s, with the scrub lists of both.
struct StandIns {
    needles: Needles,
    alt_needles: Needles,
    values: SecretValues,
}

/// `None` when no `secret-value` is resolved to something (nothing to follow).
fn stand_ins(secrets: &SecretValues) -> Option<StandIns> {
    if !has_resolved(secrets) {
        return None;
    }
    let (mut needles, mut alt_needles) = (Needles::default(), Needles::default());
    let mut values = SecretValues::new();
    for (k, v) in secrets {
        let s = v.as_deref().map(stand_in);
        if let (Some(v), Some(s)) = (v, &s) {
            needles.add(v);
            alt_needles.add(s);
        }
        values.insert(k.clone(), s);
    }
    Some(StandIns { needles, alt_needles, values })
}

/// An error message (scrubbed) redacted against the stand-in render's (scrubbed) error:
/// `None` when the stand-ins render, so the failure itself depends on a secret.
fn redacted_error(message: &str, alt: Option<&str>, release: &str) -> String {
    match alt {
        Some(alt) => redact_message(message, alt),
        None => format!(
            "rendering fails with the resolved secret-values of {release} but not with stand-ins for them: the error depends on a secret and is not shown"
        ),
    }
}

/// A stand-in for a secret: the same length and character classes (hexadecimal digits stay
/// hexadecimal, letters keep their case), every letter and digit changed, so that
/// validations of the secret's form still pass and any function of its characters changes.
/// No randomness: plans stay reproducible.
pub fn stand_in(v: &str) -> String {
    fn rotate(c: char, from: char, to: char) -> char {
        if c == to { from } else { char::from_u32(c as u32 + 1).unwrap_or(c) }
    }
    let s: String = v
        .chars()
        .map(|c| match c {
            '0'..='9' => rotate(c, '0', '9'),
            'a'..='f' => rotate(c, 'a', 'f'),
            'g'..='z' => rotate(c, 'g', 'z'),
            'A'..='F' => rotate(c, 'A', 'F'),
            'G'..='Z' => rotate(c, 'G', 'Z'),
            c if c.is_alphanumeric() => [c as u32 ^ 1, c as u32 + 1, (c as u32).saturating_sub(1)]
                .into_iter()
                .filter_map(char::from_u32)
                .find(|x| *x != c && x.is_alphanumeric())
                .unwrap_or(c),
            c => c,
        })
        .collect();
    if s != v {
        return s;
    }
    // Nothing alphanumeric: rotate punctuation instead, or lengthen.
    const PUNCT: &str = "!#$%&*+-./:;=?@^_~";
    let p: String = v.chars().map(|c| PUNCT.find(c).map_or(c, |i| PUNCT.as_bytes()[(i + 1) % PUNCT.len()] as char)).collect();
    if p != v { p } else { format!("{v}-") }
}

/// Marks, in `objects`, every value that differs from the stand-in render `alt`.
fn mark_derived(objects: &mut [Object], alt: &[Object], needles: &Needles, alt_needles: &Needles) {
    let by_key: std::collections::HashMap<&str, &Object> = alt.iter().map(|o| (o.key.as_str(), o)).collect();
    let same_shape = objects.len() == alt.len();
    for (i, o) in objects.iter_mut().enumerate() {
        let other = if same_shape { alt.get(i) } else { by_key.get(o.key.as_str()).copied() };
        let mut marks = Vec::new();
        match other {
            Some(a) => diff_values(&o.value, &a.value, String::new(), needles, alt_needles, &mut marks),
            None => marks.push(String::new()),
        }
        o.derived = marks;
    }
}

fn diff_values(r: &Json, a: &Json, ptr: String, needles: &Needles, alt_needles: &Needles, marks: &mut Vec<String>) {
    match (r, a) {
        (Json::String(x), Json::String(y)) => {
            if x != y && needles.scrub(x) != alt_needles.scrub(y) {
                marks.push(ptr);
            }
        }
        (Json::Object(x), Json::Object(y)) => {
            if x.len() != y.len() || x.keys().zip(y.keys()).any(|(k, l)| k != l && needles.scrub(k) != alt_needles.scrub(l)) {
                marks.push(ptr);
                return;
            }
            for ((k, xv), (_, yv)) in x.iter().zip(y.iter()) {
                diff_values(xv, yv, format!("{ptr}/{}", k.replace('~', "~0").replace('/', "~1")), needles, alt_needles, marks);
            }
        }
        (Json::Array(x), Json::Array(y)) if x.len() == y.len() => {
            for (i, (xv, yv)) in x.iter().zip(y.iter()).enumerate() {
                diff_values(xv, yv, format!("{ptr}/{i}"), needles, alt_needles, marks);
            }
        }
        (x, y) if x == y => {}
        _ => marks.push(ptr),
    }
}

/// An error message with the words that differ from the stand-in render's redacted (both
/// already scrubbed of the plaintexts): `… error calling fail: (redacted)`.
fn redact_message(real: &str, alt: &str) -> String {
    if real == alt {
        return real.to_string();
    }
    let (r, a): (Vec<&str>, Vec<&str>) = (real.split(' ').collect(), alt.split(' ').collect());
    if r.len() == a.len() {
        return r.iter().zip(&a).map(|(x, y)| if x == y { *x } else { REDACTED }).collect::<Vec<_>>().join(" ");
    }
    let prefix = r.iter().zip(&a).take_while(|(x, y)| x == y).count();
    let suffix = r[prefix..].iter().rev().zip(a[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let mut words: Vec<&str> = r[..prefix].to_vec();
    words.push(REDACTED);
    words.extend(&r[r.len() - suffix..]);
    words.join(" ")
}

/// `v` with the values at `pointers` (an object's [`Object::derived`]) replaced by
/// `(secret-derived fp:…)`, the keyed fingerprint of what was there: a change shows, the
/// value does not. Applied to both sides of a diff, so the observed object's value at the
/// same place is hidden too. Secret fields are left to [`redact_object`].
pub fn redact_derived(v: &Json, pointers: &[String], key: &FingerprintKey) -> Json {
    let mut out = v.clone();
    let sensitive = is_sensitive(v);
    for p in pointers {
        if sensitive && ["/data", "/stringData", "/binaryData"].iter().any(|f| p == f || p.starts_with(&format!("{f}/"))) {
            continue;
        }
        if let Some(slot) = out.pointer_mut(p) {
            let plain = match &*slot {
                Json::String(s) => s.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            };
            *slot = Json::String(format!("(secret-derived {})", key.fingerprint(&plain)));
        }
    }
    out
}

/// Whether an object's data fields are secret: a core `Secret`, or marked sensitive.
pub fn is_sensitive(obj: &Json) -> bool {
    let kind = obj.get("kind").and_then(|k| k.as_str());
    let marked = obj.pointer("/metadata/annotations").and_then(|a| a.get(SENSITIVE_ANNOTATION)).and_then(|v| v.as_str()).is_some_and(|v| v == "true");
    kind == Some("Secret") || marked
}

/// (field, key, plaintext bytes) of every secret field of an object.
fn secret_fields(obj: &Json, sensitive: bool) -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    if !sensitive {
        return out;
    }
    for field in ["data", "stringData", "binaryData"] {
        let Some(Json::Object(m)) = obj.get(field) else { continue };
        for (k, v) in m {
            out.push((field, k.clone(), plaintext_of(field, v)));
        }
    }
    out
}

fn plaintext_of(field: &str, v: &Json) -> Vec<u8> {
    let text = match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    };
    if field == "stringData" {
        return text.into_bytes();
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()).unwrap_or_else(|_| text.into_bytes())
}

/// A redacted object and the fingerprints of its secret fields (`field.key` → fingerprint).
pub fn redact_object(obj: &Json, key: &FingerprintKey, needles: &Needles) -> (Json, Vec<(String, String)>) {
    redact_object_as(obj, key, needles, is_sensitive(obj))
}

/// [`redact_object`], the secret fields fingerprinted when `sensitive` (both sides of a diff
/// are redacted alike when either is sensitive).
pub fn redact_object_as(obj: &Json, key: &FingerprintKey, needles: &Needles, sensitive: bool) -> (Json, Vec<(String, String)>) {
    let mut fps = Vec::new();
    let mut out = scrub_value(obj, needles);
    if sensitive {
        for (field, k, plain) in secret_fields(obj, true) {
            let fp = key.fingerprint(&plain);
            if let Some(Json::Object(m)) = out.get_mut(field) {
                // The key itself went through scrubbing: look it up scrubbed.
                let scrubbed_key = needles.scrub(&k);
                m.insert(scrubbed_key.clone(), Json::String(format!("(secret {fp})")));
                fps.push((format!("{field}.{scrubbed_key}"), fp));
            }
        }
    }
    (out, fps)
}

/// Replaces needles in every string and key.
pub fn scrub_value(v: &Json, needles: &Needles) -> Json {
    if needles.0.is_empty() {
        return v.clone();
    }
    match v {
        Json::String(s) => Json::String(needles.scrub(s)),
        Json::Array(a) => Json::Array(a.iter().map(|x| scrub_value(x, needles)).collect()),
        Json::Object(m) => Json::Object(m.iter().map(|(k, x)| (needles.scrub(k), scrub_value(x, needles))).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {

    /// An API server quotes a value with `"`, `\` and line breaks escaped (Go's `%q`): the
    /// quoted form of a secret is scrubbed too.
    #[test]
    fn a_quoted_secret_is_scrubbed() {
        let mut n = Needles::default();
        n.add("pa\"ss\nword\\x");
        let message = r#"metadata.labels: Invalid value: "pa\"ss\nword\\x": a valid label must be …"#;
        let scrubbed = n.scrub(message);
        assert!(!scrubbed.contains("ss\\nword"), "{scrubbed}");
        assert!(scrubbed.contains("Invalid value: \""), "{scrubbed}");
    }

    use super::*;

    #[test]
    fn fingerprints_are_keyed_and_stable() {
        let a = FingerprintKey::from_bytes([1; 32]);
        let b = FingerprintKey::from_bytes([2; 32]);
        assert_eq!(a.fingerprint(b"hunter2"), a.fingerprint(b"hunter2"));
        assert_ne!(a.fingerprint(b"hunter2"), a.fingerprint(b"hunter3"));
        assert_ne!(a.fingerprint(b"hunter2"), b.fingerprint(b"hunter2"));
        assert!(a.fingerprint(b"x").starts_with("fp:") && a.fingerprint(b"x").len() == 19);
        assert_ne!(a.id(), b.id());
        assert!(FingerprintKey::from_hex(&"ab".repeat(32)).is_ok());
        assert!(FingerprintKey::from_hex("abc").unwrap_err().contains("hexadecimal"));
        assert!(FingerprintKey::from_hex(&"ab".repeat(31)).unwrap_err().contains("found 31"));
    }

    #[test]
    fn secret_fields_become_fingerprints_and_plaintext_is_scrubbed_elsewhere() {
        let k = FingerprintKey::from_bytes([7; 32]);
        let secret: Json = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"password": "c3VwZXJzZWNyZXQ="}, "stringData": {"token": "tok-123456"}});
        let mut needles = Needles::default();
        needles.add_fields_of(&secret);
        let (r, fps) = redact_object(&secret, &k, &needles);
        let text = r.to_string();
        assert!(!text.contains("c3VwZXJzZWNyZXQ=") && !text.contains("tok-123456"), "{text}");
        assert_eq!(fps[0], ("data.password".to_string(), k.fingerprint(b"supersecret")));
        assert_eq!(fps[1], ("stringData.token".to_string(), k.fingerprint(b"tok-123456")));
        let cm: Json = serde_json::json!({"kind": "ConfigMap", "data": {"url": "postgres://u:supersecret@db"}});
        let (r, fps) = redact_object(&cm, &k, &needles);
        assert!(fps.is_empty());
        assert_eq!(r["data"]["url"], "postgres://u:(redacted)@db");
    }

    #[test]
    fn stand_ins_change_every_letter_and_digit_and_keep_the_form() {
        assert_eq!(stand_in("Xy9-shop"), "Yz0-tipq");
        assert_eq!(stand_in("deadbeef0f"), "efbecffa1a", "hexadecimal stays hexadecimal");
        assert_eq!(stand_in("zZ9fF"), "gG0aA");
        assert_eq!(stand_in("!!"), "##");
        assert_eq!(stand_in("  "), "  -");
        for s in ["hunter2", "Ünïcödé", "a", "p@ss w0rd"] {
            let t = stand_in(s);
            assert_ne!(t, s);
            assert!(s.chars().zip(t.chars()).all(|(a, b)| a != b || !a.is_alphanumeric()), "{s} -> {t}");
        }
    }

    #[test]
    fn values_computed_from_a_secret_are_marked_and_fingerprinted() {
        let obj = |data: Json| Object::new(serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": data}), "ns", "x");
        let secrets: SecretValues = [("pw".to_string(), Some("hunter2".to_string()))].into();
        let render = |s: &SecretValues| -> Result<ReleaseObjects, RenderError> {
            let pw = s["pw"].clone().unwrap();
            let objects = vec![obj(serde_json::json!({
                "upper": pw.to_uppercase(), "verbatim": format!("u:{pw}@db"), "plain": "x", "len": pw.len().to_string(),
                "list": [pw.to_uppercase(), "y"]}))];
            Ok(ReleaseObjects { objects, manifest: String::new() })
        };
        let objs = follow_secrets(&secrets, render).unwrap().objects;
        // `len` is the same for the stand-in: the length is what a stand-in keeps.
        assert_eq!(objs[0].derived, vec!["/data/upper".to_string(), "/data/list/0".to_string()]);
        let k = FingerprintKey::from_bytes([3; 32]);
        let red = redact_derived(&objs[0].value, &objs[0].derived, &k);
        assert_eq!(red["data"]["upper"], format!("(secret-derived {})", k.fingerprint(b"HUNTER2")));
        assert_eq!(red["data"]["verbatim"], "u:hunter2@db", "scrubbing, not this, handles verbatim copies");
        let mut n = Needles::default();
        n.add_derived_of(&objs[0]);
        assert_eq!(n.scrub("x HUNTER2 y"), "x (redacted) y");
        // Without resolved secrets nothing is rendered twice or marked.
        let none: SecretValues = [("pw".to_string(), None)].into();
        let calls = std::cell::Cell::new(0);
        let _ = follow_secrets(&none, |_| {
            calls.set(calls.get() + 1);
            Ok(ReleaseObjects { objects: vec![], manifest: String::new() })
        });
        assert_eq!(calls.get(), 1);
        // An error is redacted against the stand-ins' error, or withheld.
        let e = error_without_secrets("release/r", &secrets, "bad hunter2 HUNTER2 x", |s| Some(format!("bad {0} {1} x", s["pw"].as_deref().unwrap(), s["pw"].as_deref().unwrap().to_uppercase())));
        assert_eq!(e, "bad (redacted) (redacted) x");
        let e = error_without_secrets("release/r", &secrets, "HUNTER2 is weak", |_| None);
        assert!(e.contains("the error depends on a secret and is not shown") && !e.contains("HUNTER2"), "{e}");
    }

    #[test]
    fn error_words_that_depend_on_a_secret_are_redacted() {
        assert_eq!(redact_message("bad password HUNTER2 for shop", "bad password IVOUFS3 for shop"), "bad password (redacted) for shop");
        assert_eq!(redact_message("x: a b HUNTER2 z", "x: a b IVOUFS3 IVOUFS3 z"), "x: a b (redacted) z");
        assert_eq!(redact_message("same", "same"), "same");
    }
}
