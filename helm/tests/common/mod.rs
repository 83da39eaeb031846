//! Shared by the engine's snippet tests: the top-level scope Helm gives a template
//! (`.Values`, `.Release`, `.Chart`, `.Capabilities` of Kubernetes v1.36 and Helm v4.2.3,
//! `.Files`, `.Subcharts`) for a root chart named `chart_name`.

use std::collections::BTreeMap;
use std::rc::Rc;

use harmony_helm::objects::{Capabilities, Files, KubeVersion};
use harmony_helm::value::Value;

/// The scope of a template of root chart `chart_name` with `values` and `files`.
pub fn scope(values: Value, files: BTreeMap<String, Vec<u8>>, chart_name: &str) -> Value {
    let mut release = BTreeMap::new();
    release.insert("Name".to_string(), Value::from("release-name"));
    release.insert("Namespace".to_string(), Value::from("default"));
    release.insert("IsInstall".to_string(), Value::Bool(true));
    release.insert("IsUpgrade".to_string(), Value::Bool(false));
    release.insert("Revision".to_string(), Value::Int(1));
    release.insert("Service".to_string(), Value::from("Helm"));
    let mut chart = BTreeMap::new();
    chart.insert("Name".to_string(), Value::from(chart_name));
    chart.insert("Version".to_string(), Value::from("0.1.0"));
    chart.insert("APIVersion".to_string(), Value::from("v2"));
    chart.insert("IsRoot".to_string(), Value::Bool(true));
    let caps = Capabilities {
        kube_version: KubeVersion::parse("v1.36.0").unwrap(),
        api_versions: harmony_helm::release::default_api_versions(),
        helm_version: "v4.2.3".into(),
    };
    let mut top = BTreeMap::new();
    top.insert("Values".to_string(), values);
    top.insert("Release".to_string(), Value::map(release));
    top.insert("Chart".to_string(), Value::map(chart));
    top.insert("Capabilities".to_string(), Value::Object(Rc::new(caps)));
    top.insert("Files".to_string(), Value::Object(Rc::new(Files { files })));
    top.insert("Subcharts".to_string(), Value::empty_map());
    Value::map(top)
}
