#[test]
fn sdiff() {
    let Ok(vals) = std::fs::read_to_string("/tmp/sdiff/vals.json") else { return };
    let tpl = std::fs::read_to_string("/tmp/sdiff/templates/t.txt").unwrap();
    let v = harmony_helm::json::decode(&vals).unwrap();
    let mut top = std::collections::BTreeMap::new();
    top.insert("Values".to_string(), v);
    let t = harmony_helm::RenderTemplate { name: "t".into(), text: tpl, vals: harmony_helm::value::Value::map(top), base_path: "x".into() };
    match harmony_helm::render(&[t], &harmony_helm::funcs::FixedEnvironment::default()) {
        Ok(out) => std::fs::write("/tmp/sdiff/got.txt", &out["t"]).unwrap(),
        Err(e) => std::fs::write("/tmp/sdiff/got.txt", e.message).unwrap(),
    }
}
