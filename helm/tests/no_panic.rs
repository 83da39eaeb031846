//! Templates are user input: mutated corpus templates must give output or an error, never a
//! panic.

mod corpus;

use std::collections::BTreeMap;

use harmony_helm::funcs::FixedEnvironment;
use harmony_helm::value::Value;
use harmony_helm::{RenderTemplate, render};


#[test]
fn mutated_templates_never_panic() {
    let Some(path) = corpus::path("template-functions/cases.json") else { return };
    let text = std::fs::read_to_string(path).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut seed: u64 = 0x1234_5678;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces = [
        "{{", "}}", "(", ")", "|", "$x", ":=", "=", ".", "-", " ", "\"", "`", "end", "else", "range", "if", "with", "define", "template", "nil", "0", "-1",
        "1e400", "'", "/*", "*/", "index", "slice", "printf", "%", "tpl", "include", "toYaml", "fromYaml",
    ];
    let env = FixedEnvironment::default();
    for c in cases.iter().take(3191) {
        let t = c["template"].as_str().unwrap_or("");
        if t.contains("genPrivateKey") || t.contains("genCA") || t.contains("genSelfSigned") || t.contains("genSigned") || t.contains("derivePassword") {
            continue;
        }
        for _ in 0..3 {
            let mut chars: Vec<char> = t.chars().collect();
            let n = (next() % 3 + 1) as usize;
            for _ in 0..n {
                let pos = if chars.is_empty() { 0 } else { (next() as usize) % (chars.len() + 1) };
                match next() % 3 {
                    0 if pos < chars.len() => {
                        chars.remove(pos);
                    }
                    _ => {
                        let p = pieces[(next() as usize) % pieces.len()];
                        for (k, ch) in p.chars().enumerate() {
                            chars.insert(pos + k, ch);
                        }
                    }
                }
            }
            let mutated: String = chars.into_iter().collect();
            let mut top = BTreeMap::new();
            top.insert("Values".to_string(), harmony_helm::json::from_serde(&c["values"]));
            let tpl = RenderTemplate { name: "t".into(), text: mutated.clone(), vals: Value::map(top), base_path: "x".into() };
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| render(&[tpl], &env)));
            assert!(r.is_ok(), "panic on template {mutated:?}");
        }
    }
}

#[test]
fn recursive_templates_error_instead_of_overflowing() {
    let env = FixedEnvironment::default();
    for t in [
        r#"{{define "x"}}{{template "x" .}}{{end}}{{template "x" .}}"#,
        r#"{{define "x"}}{{include "x" .}}{{end}}{{include "x" .}}"#,
        r#"{{define "x"}}{{tpl "{{include \"x\" .}}" .}}{{end}}{{include "x" .}}"#,
    ] {
        let mut top = BTreeMap::new();
        top.insert("Values".to_string(), Value::empty_map());
        let tpl = RenderTemplate { name: "t".into(), text: t.into(), vals: Value::map(top), base_path: "x".into() };
        assert!(render(&[tpl], &env).is_err(), "{t} should fail");
    }
    let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    let mut top = BTreeMap::new();
    top.insert("Values".to_string(), Value::empty_map());
    let tpl = RenderTemplate { name: "t".into(), text: format!("{{{{ {deep} }}}}"), vals: Value::map(top), base_path: "x".into() };
    let _ = render(&[tpl], &env);
}

#[test]
fn every_function_with_odd_arguments_never_panics() {
    let skip = ["genPrivateKey", "genCA", "genSelfSignedCert", "genSignedCert", "derivePassword", "bcrypt", "htpasswd", "until", "untilStep", "seq"];
    let args = [
        "\"\"",
        "\"héllo ☃ 日本 wörld and more words to wrap\"",
        "-1",
        "0",
        "3",
        "9223372036854775807",
        "1.5",
        "-2.5e300",
        "nil",
        "true",
        ".Values.list",
        ".Values.map",
        ".Values.missing",
        "(list 1 \"a\" nil)",
        "(dict \"a\" (dict))",
        "(now)",
    ];
    let env = FixedEnvironment::default();
    let mut names: Vec<&str> = harmony_helm::funcs::func_map().keys().copied().collect();
    names.sort();
    let mut values = BTreeMap::new();
    values.insert("list".to_string(), Value::list(vec![Value::Float(1.0), Value::from("x"), Value::Nil]));
    values.insert("map".to_string(), Value::map(BTreeMap::from([("k".to_string(), Value::Float(2.0))])));
    for name in names {
        if skip.contains(&name) {
            continue;
        }
        for arity in 0..4usize {
            for k in 0..args.len() {
                let argv: Vec<&str> = (0..arity).map(|j| args[(k + j * 5) % args.len()]).collect();
                let text = format!("{{{{ {} {} }}}}", name, argv.join(" "));
                let mut top = BTreeMap::new();
                top.insert("Values".to_string(), Value::map(values.clone()).deep_copy());
                let tpl = RenderTemplate { name: "t".into(), text: text.clone(), vals: Value::map(top), base_path: "x".into() };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| render(&[tpl], &env)));
                assert!(r.is_ok(), "panic on {text}");
                if arity == 0 {
                    break;
                }
            }
        }
    }
}
