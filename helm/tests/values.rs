//! `--set` parsing and values coalescing, against Helm's documented behaviour.

mod corpus;

use harmony_helm::json::{JsonOpts, encode};
use harmony_helm::value::Value;
use harmony_helm::values::parse_set;

fn set(exprs: &[&str], string: bool) -> String {
    let Value::Map(m) = Value::empty_map() else { unreachable!() };
    for e in exprs {
        parse_set(e, &m, string).unwrap();
    }
    encode(&Value::Map(m), JsonOpts::default()).unwrap()
}

#[test]
fn set_expressions() {
    let cases: &[(&[&str], &str)] = &[
        (&["name1=value1"], r#"{"name1":"value1"}"#),
        (&["name1=value1,name2=value2"], r#"{"name1":"value1","name2":"value2"}"#),
        (&["name1=value1,name2="], r#"{"name1":"value1","name2":""}"#),
        (&["outer.inner=value"], r#"{"outer":{"inner":"value"}}"#),
        (&["outer.middle.inner=value"], r#"{"outer":{"middle":{"inner":"value"}}}"#),
        (&["a.b=1", "a.c=2"], r#"{"a":{"b":1,"c":2}}"#),
        (&["list={a,b,c}"], r#"{"list":["a","b","c"]}"#),
        (&["list[1]=foo"], r#"{"list":[null,"foo"]}"#),
        (&["list[0].name=x"], r#"{"list":[{"name":"x"}]}"#),
        (&["name=one\\,two"], r#"{"name":"one,two"}"#),
        (&["a\\.b=c"], r#"{"a.b":"c"}"#),
        (&["n=1,b=true,z=null,s=01,h=0x1"], r#"{"b":true,"h":"0x1","n":1,"s":"01","z":null}"#),
    ];
    for (exprs, want) in cases {
        assert_eq!(set(exprs, false), *want, "{exprs:?}");
    }
    assert_eq!(set(&["n=1,b=true"], true), r#"{"b":"true","n":"1"}"#);
}

#[test]
fn user_nulls_delete_chart_defaults() {
    let Some(dir) = corpus::path("helm-template/charts/subchart") else { return };
    let chart = harmony_helm::Chart::load(&dir).unwrap();
    let Value::Map(m) = Value::empty_map() else { unreachable!() };
    parse_set("service.name=null", &m, false).unwrap();
    let vals = harmony_helm::values::coalesce_values_of(&chart, &Value::Map(m)).unwrap();
    let service = vals.borrow().get("service").cloned().unwrap();
    let Value::Map(service) = service else { panic!("service is a map") };
    assert!(!service.borrow().contains_key("name"));
}

/// Null handling, with the outputs recorded from Helm v4.2.3's engine for the chart in
/// `tests/data/nulls` (`a: {b: null, c: 1, d: 2}`, `x: null`, `y: 5` — `y` is YAML 1.1 `true`).
#[test]
fn nulls_like_helm() {
    use harmony_helm::funcs::FixedEnvironment;
    use harmony_helm::release::{TemplateRequest, run_template};
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nulls");
    let cases: [(&str, &str); 7] = [
        ("", "a:\n  c: 1\n  d: 2\n\"true\": 5\n"),
        ("a.b=null", "a:\n  b: null\n  c: 1\n  d: 2\n\"true\": 5\n"),
        ("a.c=null", "a:\n  d: 2\n\"true\": 5\n"),
        ("x=null", "a:\n  c: 1\n  d: 2\n\"true\": 5\n"),
        ("y=null", "a:\n  c: 1\n  d: 2\n\"true\": 5\n\"y\": null\n"),
        ("a.b=null,a.c=null", "a:\n  b: null\n  d: 2\n\"true\": 5\n"),
        ("a=null", "\"true\": 5\n"),
    ];
    for (set, want) in cases {
        let req = TemplateRequest { chart: chart.clone(), set: if set.is_empty() { vec![] } else { vec![set.to_string()] }, ..Default::default() };
        let out = run_template(&req, &FixedEnvironment::default());
        let body = out.stdout.splitn(3, '\n').nth(2).unwrap_or_default();
        assert_eq!(body, want, "--set {set}");
    }
}
