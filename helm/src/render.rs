//! Rendering a set of templates the way Helm's `engine.Render` does: parse every template
//! into one namespace (deepest paths first, so top-level `define`s win), execute each
//! non-partial template with its chart's scope, and replace `<no value>` with nothing.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::funcs::{Ctx, Environment, func_map};
use crate::template::{TemplateError, TemplateSet, execute, parse::parse};
use crate::value::Value;

/// One template to render.
#[derive(Clone, Debug)]
pub struct RenderTemplate {
    /// Full name, e.g. `mychart/templates/deployment.yaml`.
    pub name: String,
    /// Template text.
    pub text: String,
    /// The scope (`.Values`, `.Release`, `.Chart`, ...), without `.Template`.
    pub vals: Value,
    /// `.Template.BasePath`, e.g. `mychart/templates`.
    pub base_path: String,
}

/// A rendering failure, with Helm's message.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct RenderError {
    /// Template that failed.
    pub template: String,
    /// Helm's error message.
    pub message: String,
    /// The underlying template error.
    pub source_error: Option<TemplateError>,
}

/// Helm's `sortTemplates`: more path segments first, then reverse lexical order.
pub fn sort_templates(names: &mut [String]) {
    names.sort_by(|a, b| {
        let (ca, cb) = (a.matches('/').count(), b.matches('/').count());
        cb.cmp(&ca).then_with(|| b.cmp(a))
    });
}

/// Renders templates; returns name → output for every non-partial template.
pub fn render(tpls: &[RenderTemplate], env: &dyn Environment) -> Result<BTreeMap<String, String>, RenderError> {
    let funcs = func_map();
    let by_name: BTreeMap<&str, &RenderTemplate> = tpls.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut keys: Vec<String> = by_name.keys().map(|k| k.to_string()).collect();
    sort_templates(&mut keys);
    let mut set = TemplateSet::default();
    for k in &keys {
        let t = by_name[k.as_str()];
        match parse(k, &t.text, &|n| funcs.contains_key(n)) {
            Ok(trees) => set.add_trees(trees),
            Err(e) => {
                let te = TemplateError::Parse(e);
                return Err(RenderError { template: k.clone(), message: te.helm_message(), source_error: Some(te) });
            }
        }
    }
    let set = Rc::new(set);
    let mut out = BTreeMap::new();
    // One context, so one budget, for every template of the render.
    let mut ctx = Ctx { set, set_name: "gotpl".into(), funcs, exec_depth: 0, include_counts: Default::default(), env, budget: Default::default() };
    for k in &keys {
        let base = k.rsplit('/').next().unwrap_or(k);
        if base.starts_with('_') {
            continue;
        }
        let t = by_name[k.as_str()];
        let vals = match &t.vals {
            Value::Map(m) => {
                let mut tm = BTreeMap::new();
                tm.insert("Name".to_string(), Value::from(k.as_str()));
                tm.insert("BasePath".to_string(), Value::from(t.base_path.as_str()));
                let tmap = Value::map(tm);
                if let Value::Map(t) = &tmap {
                    crate::value::mark_named_values(t);
                }
                m.borrow_mut().insert("Template".into(), tmap);
                crate::value::mark_named_values(m);
                if let Some(Value::Map(v)) = m.borrow().get("Values") {
                    crate::value::mark_named_values(v);
                }
                Value::Map(m.clone())
            }
            v => v.clone(),
        };
        match execute(&mut ctx, k, vals) {
            Ok(s) => {
                out.insert(k.clone(), s.replace("<no value>", ""));
            }
            Err(e) => {
                return Err(RenderError { template: k.clone(), message: e.helm_message(), source_error: Some(e) });
            }
        }
    }
    Ok(out)
}
