//! The secret-redaction corpus (issue 23): a template that passes a `secret-value` through
//! 50 functions and pipelines, and a scan for the secret and every reversible transform of it.

use base64::Engine as _;

/// A secret with characters every escaping changes (`&`, `"`, `<`, `'`, `\`, space), in no
/// fixture text, so that any 8 characters of it (or of a transform) found in an output leaked.
pub const CORPUS_SECRET: &str = "Tq8&Wx3\"Zr5<pL'm\\Jk9 Yv!";

/// The corpus: a ConfigMap `corpus` whose every value is computed from `secret` (a template
/// expression such as `.Values.auth.password`), an annotation computed from it, and a second ConfigMap
/// whose name and a data key are computed from it. `include` and `tpl` go through
/// `corpus.pw`, defined here.
pub fn corpus_template(secret: &str) -> String {
    let s = secret;
    let lines: Vec<(&str, String)> = vec![
        ("verbatim", format!("{s}")),
        ("upper", format!("{s} | upper")),
        ("lower", format!("{s} | lower")),
        ("title", format!("{s} | title")),
        ("untitle", format!("{s} | untitle")),
        ("swapcase", format!("{s} | swapcase")),
        ("camelcase", format!("{s} | camelcase")),
        ("snakecase", format!("{s} | snakecase")),
        ("kebabcase", format!("{s} | kebabcase")),
        ("replace", format!("{s} | replace \"&\" \"+\"")),
        ("trim", format!("printf \"  %s  \" {s} | trim")),
        ("trimall", format!("{s} | trimAll \"!\"")),
        ("trimsuffix", format!("{s} | trimSuffix \"v!\"")),
        ("nospace", format!("{s} | nospace")),
        ("repeat", format!("{s} | repeat 2")),
        ("substr", format!("{s} | substr 2 14")),
        ("trunc", format!("{s} | trunc 12")),
        ("abbrev", format!("{s} | abbrev 15")),
        ("wrap", format!("{s} | wrap 6")),
        ("indent", format!("{s} | indent 4")),
        ("nindent", format!("{s} | nindent 2")),
        ("squote", format!("{s} | squote")),
        ("b64", format!("{s} | b64enc")),
        ("b64x2", format!("{s} | b64enc | b64enc")),
        ("b64x3", format!("{s} | b64enc | b64enc | b64enc")),
        ("b64upper", format!("{s} | upper | b64enc")),
        ("b32", format!("{s} | b32enc")),
        ("cat", format!("cat \"user\" {s} \"end\"")),
        ("printf", format!("printf \"%s-%s\" ({s} | upper) \"x\"")),
        ("printfq", format!("printf \"%q\" {s}")),
        ("hex", format!("printf \"%x\" {s}")),
        ("hexupper", format!("printf \"%X\" {s}")),
        ("printfv", format!("printf \"%v\" (list {s})")),
        ("print", format!("print {s} 1")),
        ("println", format!("println {s}")),
        ("tojson", format!("dict \"pw\" {s} | toJson")),
        ("toprettyjson", format!("dict \"pw\" {s} | toPrettyJson")),
        ("torawjson", format!("dict \"pw\" {s} | toRawJson")),
        ("toyaml", format!("dict \"pw\" {s} | toYaml")),
        ("totoml", format!("dict \"pw\" {s} | toToml")),
        ("tostring", format!("{s} | toString")),
        ("join", format!("list \"a\" {s} | join \",\"")),
        ("reverse", format!("{s} | splitList \"\" | reverse | join \"\"")),
        ("urlquery", format!("{s} | urlquery")),
        ("html", format!("{s} | html")),
        ("js", format!("{s} | js")),
        ("alnum", format!("regexReplaceAll \"[^A-Za-z0-9]\" {s} \"\"")),
        ("regexfind", format!("regexFind \"[A-Za-z0-9&\\\"<]+\" {s}")),
        ("tpl", format!("tpl \"{{{{ {s} | upper }}}}\" $")),
        ("include", "include \"corpus.pw\" $ | lower".to_string()),
        ("default", format!("default \"x\" {s}")),
        ("ternary", format!("ternary {s} \"no\" true")),
        ("get", format!("get (dict \"k\" {s}) \"k\" | upper")),
        ("fromjson", format!("(dict \"k\" {s} | toJson | fromJson).k | lower")),
        ("range", format!("include \"corpus.chars\" $")),
        ("b64roundtrip", format!("{s} | b64enc | b64dec | upper")),
        ("sha256sum", format!("{s} | sha256sum")),
        ("adler32sum", format!("{s} | adler32sum")),
    ];
    let mut t = format!(
        "{{{{- define \"corpus.pw\" }}}}{{{{ {s} | splitList \"\" | reverse | join \"\" }}}}{{{{ end }}}}\n\
         {{{{- define \"corpus.chars\" }}}}{{{{ range $c := splitList \"\" {s} }}}}{{{{ $c }}}}{{{{ end }}}}{{{{ end }}}}\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: corpus\n  annotations:\n    checksum/secret: {{{{ {s} | sha256sum }}}}\n    note: {{{{ printf \"for %s\" ({s} | lower) | quote }}}}\ndata:\n"
    );
    for (k, e) in &lines {
        t.push_str(&format!("  {k}: {{{{ {e} | quote }}}}\n"));
    }
    t.push_str(&format!("  config: |\n    user = shop\n    password = {{{{ {s} | upper }}}}\n"));
    t.push_str(&format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: corpus-{{{{ regexReplaceAll \"[^a-z0-9]\" ({s} | lower) \"\" | trunc 12 }}}}\ndata:\n  a: b\n  {{{{ regexReplaceAll \"[^A-Za-z0-9]\" {s} \"\" | lower }}}}: key\n"
    ));
    t
}

/// Every form of `p` that gives it away: itself, its case changes, reversed, letters and
/// digits only, base64 of any depth up to 4 (standard and URL-safe), base32, hexadecimal, and
/// its URL, JSON, Go (`%q`, `js`, HTML-safe JSON), HTML and YAML escapings.
fn reversible_forms(p: &str) -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let b64url = |s: &str| base64::engine::general_purpose::URL_SAFE.encode(s);
    let swap: String = p.chars().map(|c| if c.is_uppercase() { c.to_ascii_lowercase() } else { c.to_ascii_uppercase() }).collect();
    let alnum: String = p.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let mut forms = vec![p.to_string(), p.to_uppercase(), p.to_lowercase(), swap, p.chars().rev().collect(), alnum.clone(), alnum.to_lowercase(), alnum.to_uppercase()];
    for base in [p.to_string(), p.to_uppercase(), p.to_lowercase()] {
        let mut e = base.clone();
        for _ in 0..4 {
            e = b64(&e);
            forms.push(e.clone());
        }
        forms.push(b64url(&base));
    }
    forms.push(data_encoding_base32(p.as_bytes()));
    forms.push(p.bytes().map(|b| format!("{b:02x}")).collect());
    forms.push(p.bytes().map(|b| format!("{b:02X}")).collect());
    let url: String = p.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
    forms.push(url.clone());
    forms.push(url.replace("%20", "+"));
    let json = serde_json::to_string(p).unwrap();
    let json = json.trim_matches('"').to_string();
    forms.push(json.clone());
    forms.push(json.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026"));
    forms.push(p.replace('\\', "\\\\").replace('\'', "\\'").replace('"', "\\\"").replace('<', "\\u003C").replace('&', "\\u0026"));
    forms.push(p.replace('&', "&amp;").replace('"', "&#34;").replace('\'', "&#39;").replace('<', "&lt;"));
    forms.push(p.replace('\'', "''"));
    forms
}

/// RFC 4648 base32 (what sprig's `b32enc` writes), so that no dependency is needed for it.
fn data_encoding_base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    for chunk in bytes.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < chars {
                out.push(ALPHABET[((n >> (35 - 5 * i)) & 31) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every run of 8 characters of every reversible form of `p` (a longer substring holds one).
pub fn leak_needles(p: &str) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for f in reversible_forms(p) {
        let chars: Vec<char> = f.chars().collect();
        for w in chars.windows(8.min(chars.len())) {
            out.insert(w.iter().collect::<String>());
        }
    }
    out.into_iter().collect()
}

/// Fails naming the output, the leaked form and the text around it, when `text` holds any of
/// `needles` ([`leak_needles`]).
pub fn assert_no_leak(what: &str, text: &str, needles: &[String]) {
    if let Some(n) = needles.iter().find(|n| text.contains(n.as_str())) {
        let at = text.find(n.as_str()).unwrap();
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        panic!("{what}: the secret leaked as {n:?} in line:\n{}", &text[line_start..line_end]);
    }
}
