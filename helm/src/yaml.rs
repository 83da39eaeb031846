//! YAML as Helm sees it: decoding goes YAML → JSON → Go (`sigs.k8s.io/yaml`), so every
//! number is a float64; encoding goes Go → JSON → go-yaml v2, whose emitter (key order,
//! quoting, literal blocks, 80-column folding) [`encode`] reproduces.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::value::Value;

/// Decodes YAML into a value (numbers become float64, keys strings), with go-yaml v2's
/// YAML 1.1 resolution (`yes`/`on` are booleans, `0x10` is a number), duplicate keys
/// (last wins), anchors, aliases and `<<` merge keys. Only the first document is read.
///
/// Aliases are expanded under go-yaml's limit (CVE-2019-11253, "billion laughs"): a document
/// whose decoding comes too much from alias expansion fails with go-yaml's
/// `document contains excessive aliasing` (see [`AliasBudget`]).
pub fn decode(s: &str) -> Result<Value, String> {
    if s.trim().is_empty() {
        return Ok(Value::Nil);
    }
    let mut rx = Composer::default();
    let mut parser = yaml_rust2::parser::Parser::new_from_str(s);
    if let Err(e) = parser.load(&mut rx, false) {
        // libyaml (serde_yaml_ng) gives go-yaml's wording; fall back to yaml-rust2's.
        if let Err(e2) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(s) {
            let msg = yaml_error(&e2);
            if msg.ends_with("unknown anchor referenced") {
                let name: String =
                    s.split('*').nth(1).map(|r| r.chars().take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c)).collect()).unwrap_or_default();
                return Err(format!("error converting YAML to JSON: yaml: unknown anchor '{name}' referenced"));
            }
            return Err(msg);
        }
        return Err(format!("error converting YAML to JSON: yaml: line {}: {}", e.marker().line(), e.info()));
    }
    if rx.empty_key
        && let Err(e2) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(s)
    {
        let msg = yaml_error(&e2);
        if !msg.contains("duplicate entry") && !msg.contains("more than one document") {
            return Err(msg);
        }
    }
    match rx.doc {
        Some(n) => to_value(&n, 0, &mut AliasBudget::default()),
        None => Ok(Value::Nil),
    }
}

/// Decodes only what Helm's manifest sorter reads (`kind`, `metadata.annotations`); other
/// subtrees are parsed (so syntax errors are still found) but not built.
pub fn decode_head(s: &str) -> Result<Value, String> {
    if s.trim().is_empty() {
        return Ok(Value::Nil);
    }
    let mut rx = Composer { head_only: true, ..Composer::default() };
    let mut parser = yaml_rust2::parser::Parser::new_from_str(s);
    // Helm decodes the whole document (sigs.k8s.io/yaml): with aliases, so must we, for
    // go-yaml's alias limit to apply to what was skipped too.
    if parser.load(&mut rx, false).is_err() || rx.saw_alias {
        return decode(s);
    }
    match rx.doc {
        Some(n) => to_value(&n, 0, &mut AliasBudget::default()),
        None => Ok(Value::Nil),
    }
}

/// go-yaml's defence against alias expansion ("billion laughs", CVE-2019-11253), as in
/// go-yaml v2.2.4+/v3 `decode.go` (`allowedAliasRatio`), which Helm's YAML library
/// (sigs.k8s.io/yaml) uses: every node decoded counts, and every node decoded inside an
/// alias's expansion counts as aliased; once more than 100 aliased nodes and 1,000 nodes
/// were decoded, the aliased share may not exceed 99 % (up to 400,000 nodes), falling
/// linearly to 10 % at 4,000,000 nodes.
#[derive(Debug)]
struct AliasBudget {
    decode_count: u64,
    alias_count: u64,
    alias_depth: u32,
}

impl Default for AliasBudget {
    /// The document node itself is the first decode.
    fn default() -> Self {
        AliasBudget { decode_count: 1, alias_count: 0, alias_depth: 0 }
    }
}

/// go-yaml's message, as Helm reports it.
pub const EXCESSIVE_ALIASING: &str = "error converting YAML to JSON: yaml: document contains excessive aliasing";

impl AliasBudget {
    fn allowed_ratio(decode_count: u64) -> f64 {
        const LOW: u64 = 400_000;
        const HIGH: u64 = 4_000_000;
        match decode_count {
            d if d <= LOW => 0.99,
            d if d >= HIGH => 0.10,
            d => 0.99 - 0.89 * ((d - LOW) as f64 / (HIGH - LOW) as f64),
        }
    }

    /// One node decoded (go-yaml's `unmarshal`).
    fn visit(&mut self) -> Result<(), String> {
        self.decode_count += 1;
        if self.alias_depth > 0 {
            self.alias_count += 1;
        }
        if self.alias_count > 100 && self.decode_count > 1000 && self.alias_count as f64 / self.decode_count as f64 > Self::allowed_ratio(self.decode_count) {
            return Err(EXCESSIVE_ALIASING.into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
enum YNode {
    Scalar(String, bool, Option<String>),
    Seq(Vec<YNode>),
    Map(Vec<(YNode, YNode)>),
    /// A node with an anchor (`&a`), shared with its aliases.
    Anchored(Rc<YNode>),
    /// An alias (`*a`): expanded (and counted, see [`AliasBudget`]) each time it is decoded,
    /// never copied while composing.
    Alias(Rc<YNode>),
}

impl YNode {
    /// The node itself, seen through an anchor.
    fn unanchored(&self) -> &YNode {
        match self {
            YNode::Anchored(n) => n.unanchored(),
            n => n,
        }
    }

    /// The node an alias or anchor stands for.
    fn target(&self) -> &YNode {
        match self {
            YNode::Anchored(n) | YNode::Alias(n) => n.target(),
            n => n,
        }
    }
}

#[derive(Default)]
struct Composer {
    stack: Vec<(YNode, usize, Option<YNode>)>,
    anchors: std::collections::HashMap<usize, Rc<YNode>>,
    doc: Option<YNode>,
    /// The document has an alias (possibly in a part head-only decoding skipped).
    saw_alias: bool,
    done: bool,
    head_only: bool,
    skipping: usize,
    /// A mapping key was an empty plain scalar (`: x`), which libyaml (go-yaml) rejects.
    empty_key: bool,
}

impl Composer {
    /// In head-only mode: whether a container starting here is needed.
    fn wanted(&self) -> bool {
        let key = |i: usize| match self.stack.get(i) {
            Some((YNode::Map(_), _, Some(k))) => match k.target() {
                YNode::Scalar(k, _, _) => Some(k.as_str()),
                _ => None,
            },
            _ => None,
        };
        match self.stack.len() {
            0 => true,
            1 => key(0) == Some("metadata"),
            2 => key(0) == Some("metadata") && key(1) == Some("annotations"),
            _ => false,
        }
    }

    fn push_value(&mut self, mut n: YNode, anchor: usize) {
        if anchor > 0 {
            let shared = Rc::new(n);
            self.anchors.insert(anchor, shared.clone());
            n = YNode::Anchored(shared);
        }
        match self.stack.last_mut() {
            None => {
                if self.doc.is_none() {
                    self.doc = Some(n);
                }
            }
            Some((YNode::Seq(v), _, _)) => v.push(n),
            Some((YNode::Map(v), _, pending)) => match pending.take() {
                None => {
                    if matches!(n.target(), YNode::Scalar(s, true, None) if s.is_empty()) {
                        self.empty_key = true;
                    }
                    *pending = Some(n)
                }
                Some(k) => v.push((k, n)),
            },
            Some(_) => {}
        }
    }
}

impl yaml_rust2::parser::MarkedEventReceiver for Composer {
    fn on_event(&mut self, ev: yaml_rust2::parser::Event, _mark: yaml_rust2::scanner::Marker) {
        use yaml_rust2::parser::Event;
        if self.done {
            return;
        }
        if matches!(ev, yaml_rust2::parser::Event::Alias(_)) {
            self.saw_alias = true;
        }
        if self.skipping > 0 {
            match ev {
                Event::SequenceStart(..) | Event::MappingStart(..) => self.skipping += 1,
                Event::SequenceEnd | Event::MappingEnd => {
                    self.skipping -= 1;
                    if self.skipping == 0 {
                        self.push_value(YNode::Scalar(String::new(), true, None), 0);
                    }
                }
                _ => {}
            }
            return;
        }
        if self.head_only && matches!(ev, Event::SequenceStart(..) | Event::MappingStart(..)) && !self.wanted() {
            self.skipping = 1;
            return;
        }
        match ev {
            Event::DocumentEnd if self.doc.is_some() => {
                self.done = true;
            }
            Event::Scalar(v, style, anchor, tag) => {
                let plain = matches!(style, yaml_rust2::scanner::TScalarStyle::Plain);
                let tag =
                    tag.map(
                        |t| if t.handle == "!!" || t.handle == "tag:yaml.org,2002:" { format!("!!{}", t.suffix) } else { format!("{}{}", t.handle, t.suffix) },
                    );
                self.push_value(YNode::Scalar(v, plain, tag), anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push((YNode::Seq(vec![]), anchor, None)),
            Event::MappingStart(anchor, _) => self.stack.push((YNode::Map(vec![]), anchor, None)),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((n, anchor, _)) = self.stack.pop() {
                    self.push_value(n, anchor);
                }
            }
            Event::Alias(id) => {
                let n = match self.anchors.get(&id) {
                    Some(target) => YNode::Alias(target.clone()),
                    None => YNode::Scalar(String::new(), true, None),
                };
                self.push_value(n, 0);
            }
            _ => {}
        }
    }
}

/// A resolved scalar.
enum Resolved {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
}

fn resolve_plain(s: &str) -> Resolved {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => return Resolved::Bool(true),
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => return Resolved::Bool(false),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Num(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Resolved::Num(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Num(f64::NEG_INFINITY),
        _ => {}
    }
    let c = s.chars().next().unwrap_or(' ');
    if c.is_ascii_digit() || c == '+' || c == '-' || c == '.' {
        let plain = s.replace('_', "");
        if let Some(i) = crate::funcs::convert::parse_int_base0(&plain) {
            return Resolved::Num(i as f64);
        }
        let unsigned = plain.strip_prefix('+').unwrap_or(&plain);
        if let Ok(u) = unsigned.parse::<u64>() {
            return Resolved::Num(u as f64);
        }
        // strconv.ParseFloat fails out of range (`1e400`), and go-yaml then keeps the string
        if is_yaml_float(&plain)
            && let Ok(f) = plain.parse::<f64>()
            && f.is_finite()
        {
            return Resolved::Num(f);
        }
        if let Some(b) = plain.strip_prefix("0b").or_else(|| plain.strip_prefix("-0b"))
            && let Ok(u) = i64::from_str_radix(b, 2)
        {
            return Resolved::Num(if plain.starts_with('-') { -(u as f64) } else { u as f64 });
        }
    }
    Resolved::Str(s.to_string())
}

fn resolve(s: &str, plain: bool, tag: Option<&str>) -> Result<Resolved, String> {
    match tag {
        Some("!!str") => return Ok(Resolved::Str(s.to_string())),
        Some("!!binary") => {
            use base64::Engine;
            let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            let b = base64::engine::general_purpose::STANDARD
                .decode(clean)
                .map_err(|_| "error converting YAML to JSON: yaml: !!binary value contains invalid base64 data".to_string())?;
            return Ok(Resolved::Str(String::from_utf8_lossy(&b).into_owned()));
        }
        Some("!!int" | "!!float" | "!!bool" | "!!null") => return Ok(resolve_plain(s)),
        _ => {}
    }
    if !plain {
        return Ok(Resolved::Str(s.to_string()));
    }
    // go-yaml's resolve: a scalar with a tag it cannot resolve (a local `!x`) stays a string
    if tag.is_some_and(|t| !t.starts_with("!!")) {
        return Ok(Resolved::Str(s.to_string()));
    }
    Ok(resolve_plain(s))
}

fn resolved_value(r: Resolved) -> Result<Value, String> {
    Ok(match r {
        Resolved::Null => Value::Nil,
        Resolved::Bool(b) => Value::Bool(b),
        Resolved::Num(f) if !f.is_finite() => {
            return Err(format!("error converting YAML to JSON: json: unsupported value: {}", crate::value::format_float_g(f, -1, 'e')));
        }
        Resolved::Num(f) => Value::Float(f),
        Resolved::Str(s) => Value::from(s),
    })
}

fn key_of(n: &YNode, budget: &mut AliasBudget) -> Result<String, String> {
    match n {
        YNode::Anchored(t) => key_of(t, budget),
        YNode::Alias(t) => {
            budget.visit()?;
            budget.alias_depth += 1;
            let k = key_of(t, budget);
            budget.alias_depth -= 1;
            k
        }
        YNode::Scalar(s, plain, tag) => {
            budget.visit()?;
            Ok(match resolve(s, *plain, tag.as_deref())? {
                Resolved::Null => "null".into(),
                Resolved::Bool(b) => b.to_string(),
                Resolved::Num(f) => {
                    if f == f.trunc() && f.abs() < 9.2e18 {
                        (f as i64).to_string()
                    } else {
                        crate::value::format_float_g(f, -1, 'e')
                    }
                }
                Resolved::Str(s) => s,
            })
        }
        _ => Err("error converting YAML to JSON: yaml: invalid map key: map[interface {}]interface {}{}".into()),
    }
}

fn to_value(n: &YNode, depth: usize, budget: &mut AliasBudget) -> Result<Value, String> {
    stacker::maybe_grow(64 * 1024, 2 * 1024 * 1024, || match n {
        YNode::Anchored(t) => to_value(t, depth, budget),
        YNode::Alias(t) => {
            budget.visit()?;
            budget.alias_depth += 1;
            let v = to_value(t, depth, budget);
            budget.alias_depth -= 1;
            v
        }
        n => {
            budget.visit()?;
            to_value_inner(n, depth, budget)
        }
    })
}

fn to_value_inner(n: &YNode, depth: usize, budget: &mut AliasBudget) -> Result<Value, String> {
    if depth > 512 {
        return Err("error converting YAML to JSON: yaml: exceeded max depth".into());
    }
    Ok(match n {
        YNode::Scalar(s, plain, tag) => resolved_value(resolve(s, *plain, tag.as_deref())?)?,
        YNode::Seq(v) => Value::list(v.iter().map(|x| to_value(x, depth + 1, budget)).collect::<Result<_, _>>()?),
        YNode::Map(entries) => {
            let mut out = BTreeMap::new();
            for (k, v) in entries {
                if let YNode::Scalar(ks, true, None) = k.unanchored()
                    && ks == "<<"
                {
                    // go-yaml decodes a merged sequence's items, not the sequence itself
                    let sources: Vec<&YNode> = match v.unanchored() {
                        YNode::Seq(items) => items.iter().collect(),
                        other => vec![other],
                    };
                    for src in sources {
                        let merged = match src {
                            YNode::Alias(t) if matches!(t.target(), YNode::Seq(_)) => {
                                budget.visit()?;
                                budget.alias_depth += 1;
                                let items = match t.target() {
                                    YNode::Seq(items) => items.iter().map(|i| to_value(i, depth + 1, budget)).collect::<Result<Vec<_>, _>>(),
                                    _ => Ok(vec![]),
                                };
                                budget.alias_depth -= 1;
                                items?
                            }
                            src => vec![to_value(src, depth + 1, budget)?],
                        };
                        for m in merged {
                            if let Value::Map(m) = m {
                                for (mk, mv) in m.borrow().iter() {
                                    out.insert(mk.clone(), mv.clone());
                                }
                            }
                        }
                    }
                    continue;
                }
                if let YNode::Scalar(ks, plain, tag) = k.target()
                    && matches!(resolve(ks, *plain, tag.as_deref())?, Resolved::Null)
                {
                    // sigs.k8s.io/yaml's convertToJSONableObject has no JSON key for nil
                    let val = to_value(v, depth + 1, budget)?;
                    return Err(format!(
                        "error converting YAML to JSON: unsupported map key of type: %!s(<nil>), key: <nil>, value: {}",
                        crate::template::fmt::sprintf("%#v", &[val])
                    ));
                }
                let key = key_of(k, budget)?;
                out.insert(key, to_value(v, depth + 1, budget)?);
            }
            Value::map(out)
        }
        YNode::Anchored(_) | YNode::Alias(_) => to_value(n, depth, budget)?,
    })
}

fn yaml_error(e: &serde_yaml_ng::Error) -> String {
    let msg = e.to_string();
    let m = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    let m = m.split(", while parsing").next().unwrap_or(&m).to_string();
    let m = m.split(", while scanning").next().unwrap_or(&m).to_string();
    // go-yaml prints "line N" only past the first line; scanner errors use the 1-based line,
    // parser errors the 0-based one.
    if m.starts_with("unknown anchor") {
        return "error converting YAML to JSON: yaml: unknown anchor referenced".into();
    }
    let parser_error = m.starts_with("did not find expected key")
        || m.starts_with("did not find expected node content")
        || m.starts_with("did not find expected ',' or")
        || m.starts_with("did not find expected '-' indicator")
        || m.starts_with("did not find expected <document start>");
    match e.location() {
        Some(loc) if loc.line() > 1 => {
            let line = if parser_error { loc.line() - 1 } else { loc.line() };
            format!("error converting YAML to JSON: yaml: line {line}: {m}")
        }
        _ => format!("error converting YAML to JSON: yaml: {m}"),
    }
}

// ---------------------------------------------------------------------------------------
// Encoding

/// A node after the JSON round trip.
enum Node {
    Null,
    Bool(bool),
    /// An integer or float, already formatted as go-yaml prints it.
    Num(String),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

fn to_node(v: &Value, depth: usize) -> Result<Node, String> {
    to_node_opts(v, depth, false)
}

fn to_node_opts(v: &Value, depth: usize, direct: bool) -> Result<Node, String> {
    stacker::maybe_grow(64 * 1024, 2 * 1024 * 1024, || to_node_inner(v, depth, direct))
}

fn to_node_inner(v: &Value, depth: usize, direct: bool) -> Result<Node, String> {
    if depth > 1000 {
        return Err("error marshaling into JSON: json: unsupported value: encountered a cycle via map[string]interface {}".into());
    }
    Ok(match v {
        Value::Invalid | Value::Nil => Node::Null,
        Value::Bool(b) => Node::Bool(*b),
        Value::Int(i) | Value::Int64(i) => Node::Num(i.to_string()),
        Value::Uint(u) => Node::Num(u.to_string()),
        Value::Float(f) if direct => Node::Num(match *f {
            x if x.is_nan() => ".nan".into(),
            x if x.is_infinite() => {
                if x > 0.0 {
                    "+.inf".into()
                } else {
                    "-.inf".into()
                }
            }
            x => crate::value::format_float_g(x, -1, 'e'),
        }),
        Value::Float(f) => {
            let j = crate::json::float_str(*f)?;
            Node::Num(json_number_to_yaml(&j))
        }
        Value::Str(s) => Node::Str(s.to_string()),
        Value::Complex(..) => return Err("error marshaling into JSON: json: unsupported type: complex128".into()),
        Value::List(l, crate::value::SliceTy::Byte) => {
            use base64::Engine;
            let b: Vec<u8> = l.iter().map(|x| crate::funcs::i(x) as u8).collect();
            Node::Str(base64::engine::general_purpose::STANDARD.encode(b))
        }
        // a nil slice marshals to JSON `null` first (sigs.k8s.io/yaml); yaml.v3 (direct) prints `[]`
        Value::List(l, crate::value::SliceTy::NilIface | crate::value::SliceTy::NilStr) if l.is_empty() && !direct => Node::Null,
        Value::List(l, _) => Node::Seq(l.iter().map(|x| to_node_opts(x, depth + 1, direct)).collect::<Result<_, _>>()?),
        Value::Map(m) => {
            let Ok(b) = m.try_borrow() else {
                return Err("error marshaling into JSON: json: unsupported value: encountered a cycle via map[string]interface {}".into());
            };
            let mut entries: Vec<(String, Node)> = Vec::with_capacity(b.len());
            for (k, v) in b.iter() {
                entries.push((k.clone(), to_node_opts(v, depth + 1, direct)?));
            }
            entries.sort_by(|a, b| key_cmp(&a.0, &b.0));
            Node::Map(entries)
        }
        Value::Object(o) => to_node(&o.to_json(), depth + 1)?,
    })
}

/// A JSON number re-read by go-yaml (int if it parses as one, else float) and printed.
fn json_number_to_yaml(j: &str) -> String {
    if !j.contains(['.', 'e', 'E']) {
        // re-printed from the int go-yaml decoded: JSON's `-0` becomes `0`
        if let Ok(i) = j.parse::<i64>() {
            return i.to_string();
        }
        if j.parse::<u64>().is_ok() {
            return j.to_string();
        }
    }
    let f: f64 = j.parse().unwrap_or(0.0);
    crate::value::format_float_g(f, -1, 'e')
}

/// go-yaml v2's map key order.
pub fn key_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl { Ordering::Less } else { Ordering::Greater };
        }
        let (mut an, mut bn): (i64, i64) = (0, 0);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i as i64 - 1;
            while j >= 0 && ar[j as usize].is_ascii_digit() {
                if ar[j as usize] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
                j -= 1;
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an.wrapping_mul(10).wrapping_add(ar[ai] as i64 - '0' as i64);
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn.wrapping_mul(10).wrapping_add(br[bi] as i64 - '0' as i64);
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

/// `sigs.k8s.io/yaml.Marshal(v)` (with the trailing newline).
pub fn encode(v: &Value) -> Result<String, String> {
    let n = to_node(v, 0)?;
    let mut e = Emitter { out: String::new(), column: 0, seq_indent: 0, v3: false };
    e.top(&n);
    Ok(e.out)
}

/// yaml.v3 with `SetIndent(2)` (Helm's `toYamlPretty`): sequences indented under keys and
/// numbers printed without the JSON round trip.
pub fn encode_pretty(v: &Value) -> Result<String, String> {
    let n = to_node_opts(v, 0, true)?;
    let mut e = Emitter { out: String::new(), column: 0, seq_indent: 2, v3: true };
    e.top(&n);
    Ok(e.out)
}

const BEST_WIDTH: usize = 80;

struct Emitter {
    out: String,
    column: usize,
    seq_indent: usize,
    /// yaml.v3 rules: no line folding, tabs allowed in literal blocks.
    v3: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

struct Analysis {
    multiline: bool,
    block_plain: bool,
    single: bool,
    block: bool,
}

fn is_printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || u == 0x85
        || (0xA0..=0xD7FF).contains(&u)
        || ((0xE000..=0xFFFD).contains(&u) && u != 0xFEFF)
        || (0x10000..=0x10FFFF).contains(&u)
}
fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn analyze(value: &str, v3: bool) -> Analysis {
    if value.is_empty() {
        return Analysis { multiline: false, block_plain: true, single: true, block: false };
    }
    let mut block_ind = false;
    let mut flow_ind = false;
    if value.starts_with("---") || value.starts_with("...") {
        block_ind = true;
        flow_ind = true;
    }
    let _ = flow_ind;
    let mut preceded_by_ws = true;
    let (mut line_breaks, mut special, mut tabs) = (false, false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) = (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    let chars: Vec<char> = value.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let followed_by_ws = next.is_none_or(|n| is_blank(n) || is_break(n));
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%' | '@' | '`' => {
                    block_ind = true;
                }
                '?' | ':' if followed_by_ws => {
                    block_ind = true;
                }
                '-' if followed_by_ws => {
                    block_ind = true;
                }
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_ws => {
                    block_ind = true;
                }
                '#' if preceded_by_ws => {
                    block_ind = true;
                }
                _ => {}
            }
        }
        if c == '\t' && v3 {
            tabs = true;
        } else if !is_printable(c) {
            special = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i == chars.len() - 1 {
                trailing_space = true;
            }
            if prev_break {
                break_space = true;
            }
            prev_space = true;
            prev_break = false;
        } else if is_break(c) {
            line_breaks = true;
            if i == 0 {
                leading_break = true;
            }
            if i == chars.len() - 1 {
                trailing_break = true;
            }
            if prev_space {
                space_break = true;
            }
            prev_break = true;
            prev_space = false;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_by_ws = is_blank(c) || is_break(c);
    }
    let mut a = Analysis { multiline: line_breaks, block_plain: true, single: true, block: true };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain = false;
    }
    if trailing_space {
        a.block = false;
    }
    if break_space {
        a.block_plain = false;
        a.single = false;
    }
    if space_break || special || tabs {
        a.block_plain = false;
        a.single = false;
    }
    if space_break || special {
        a.block = false;
    }
    if line_breaks {
        a.block_plain = false;
    }
    if block_ind {
        a.block_plain = false;
    }
    a
}

/// go-yaml v2's `resolve`: would this plain scalar be read back as something other than a
/// string? (`<<` is not: resolve only looks a scalar up in its map when the first byte has a
/// hint in `resolveTable`, and `<` has none.)
fn resolves_non_str(s: &str) -> bool {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return true,
        "y" | "Y" | "yes" | "Yes" | "YES" | "n" | "N" | "no" | "No" | "NO" | "true" | "True" | "TRUE" | "false" | "False" | "FALSE" | "on" | "On" | "ON"
        | "off" | "Off" | "OFF" => return true,
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF" => return true,
        _ => {}
    }
    let c = s.chars().next().unwrap_or(' ');
    if c.is_ascii_digit() || c == '+' || c == '-' || c == '.' {
        let plain = s.replace('_', "");
        if crate::funcs::convert::parse_int_base0(&plain).is_some() {
            return true;
        }
        let p = plain.strip_prefix('+').unwrap_or(&plain);
        let p2 = p.strip_prefix('-').unwrap_or(p);
        let lower = p2.to_ascii_lowercase();
        if (lower.starts_with("0x") || lower.starts_with("0o") || lower.starts_with("0b"))
            && let Some(rest) = lower.get(2..)
        {
            let radix = match &lower[..2] {
                "0x" => 16,
                "0o" => 8,
                _ => 2,
            };
            if !rest.is_empty() && u64::from_str_radix(rest, radix).is_ok() {
                return true;
            }
        }
        if !plain.starts_with('+') && !plain.is_empty() && plain.parse::<u64>().is_ok() {
            return true;
        }
        // go-yaml: a float only when strconv.ParseFloat succeeds (`1e400` stays a string)
        if is_yaml_float(&plain) && plain.parse::<f64>().is_ok_and(f64::is_finite) {
            return true;
        }
        if c.is_ascii_digit() && is_timestamp(s) {
            return true;
        }
    }
    false
}

fn is_yaml_float(s: &str) -> bool {
    // ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let start = i;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let d = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == d {
            return false;
        }
    } else {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let d = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == d {
            return false;
        }
    }
    i == b.len()
}

fn is_timestamp(s: &str) -> bool {
    // YYYY-M?M-D?D with optional time part
    let b = s.as_bytes();
    if b.len() < 8 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let rest = &s[5..];
    let mut parts = rest.splitn(2, '-');
    let m = parts.next().unwrap_or("");
    let d_and_more = parts.next().unwrap_or("");
    if m.is_empty() || m.len() > 2 || !m.bytes().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let d: String = d_and_more.chars().take_while(|c| c.is_ascii_digit()).collect();
    if d.is_empty() || d.len() > 2 {
        return false;
    }
    let tail = &d_and_more[d.len()..];
    if tail.is_empty() {
        return true;
    }
    // go-yaml's layouts: "2006-1-2T15:4:5.999999999Z07:00" (also 't') and "2006-1-2 15:4:5.999999999"
    static TIME: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let re =
        TIME.get_or_init(|| regex::Regex::new(r"^(?:[Tt]\d{1,2}:\d{1,2}:\d{1,2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})| \d{1,2}:\d{1,2}:\d{1,2}(?:\.\d+)?)$").ok());
    re.as_ref().is_some_and(|re| re.is_match(tail))
}

fn is_base60_float(s: &str) -> bool {
    // ^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$
    let t = s.strip_prefix(['-', '+']).unwrap_or(s);
    let mut it = t.split(':');
    let first = it.next().unwrap_or("");
    if first.is_empty() || !first.as_bytes()[0].is_ascii_digit() || !first.bytes().all(|c| c.is_ascii_digit() || c == b'_') {
        return false;
    }
    let rest: Vec<&str> = it.collect();
    if rest.is_empty() {
        return false;
    }
    for (k, p) in rest.iter().enumerate() {
        let (num, frac) = if k == rest.len() - 1 { p.split_once('.').map(|(a, b)| (a, Some(b))).unwrap_or((p, None)) } else { (*p, None) };
        if num.is_empty() || num.len() > 2 || !num.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
        if num.len() == 2 && num.as_bytes()[0] > b'5' {
            return false;
        }
        if let Some(f) = frac
            && !f.bytes().all(|c| c.is_ascii_digit() || c == b'_')
        {
            return false;
        }
    }
    true
}

impl Emitter {
    fn put(&mut self, s: &str) {
        for c in s.chars() {
            if c == '\n' {
                self.column = 0;
            } else {
                self.column += 1;
            }
        }
        self.out.push_str(s);
    }
    fn put_char(&mut self, c: char) {
        if c == '\n' {
            self.column = 0;
        } else {
            self.column += 1;
        }
        self.out.push(c);
    }
    fn write_indent(&mut self, indent: usize) {
        if self.column > 0 || !self.out.is_empty() && !self.out.ends_with('\n') {
            self.put_char('\n');
        }
        for _ in 0..indent {
            self.put_char(' ');
        }
    }

    fn top(&mut self, n: &Node) {
        match n {
            Node::Map(m) if !m.is_empty() => self.block_map(m, 0),
            Node::Seq(s) if !s.is_empty() => self.block_seq(s, 0),
            _ => {
                self.scalar_or_flow(n, 2, false);
            }
        }
        if !self.out.ends_with('\n') {
            self.put_char('\n');
        }
    }

    fn block_map(&mut self, m: &[(String, Node)], indent: usize) {
        for (i, (k, v)) in m.iter().enumerate() {
            if i > 0 || self.column > indent {
                self.write_indent(indent);
            } else {
                while self.column < indent {
                    self.put_char(' ');
                }
            }
            self.string_scalar(k, indent, true);
            self.put_char(':');
            match v {
                Node::Map(mm) if !mm.is_empty() => {
                    self.put_char('\n');
                    self.block_map(mm, indent + 2);
                }
                Node::Seq(ss) if !ss.is_empty() => {
                    self.put_char('\n');
                    self.block_seq(ss, indent + self.seq_indent);
                }
                _ => {
                    self.put_char(' ');
                    self.scalar_or_flow(v, indent + 2, false);
                }
            }
        }
    }

    fn block_seq(&mut self, s: &[Node], indent: usize) {
        for (i, v) in s.iter().enumerate() {
            if i > 0 || self.column > indent {
                self.write_indent(indent);
            } else {
                while self.column < indent {
                    self.put_char(' ');
                }
            }
            self.put_char('-');
            match v {
                Node::Map(mm) if !mm.is_empty() => {
                    self.put_char(' ');
                    self.block_map(mm, indent + 2);
                }
                Node::Seq(ss) if !ss.is_empty() => {
                    self.put_char(' ');
                    self.block_seq(ss, indent + 2);
                }
                _ => {
                    self.put_char(' ');
                    self.scalar_or_flow(v, indent + 2, false);
                }
            }
        }
    }

    fn scalar_or_flow(&mut self, n: &Node, indent: usize, key: bool) {
        match n {
            Node::Null => self.put("null"),
            Node::Bool(b) => self.put(if *b { "true" } else { "false" }),
            Node::Num(s) => {
                let s = s.clone();
                self.put(&s)
            }
            Node::Str(s) => self.string_scalar(s, indent, key),
            Node::Map(_) => self.put("{}"),
            Node::Seq(_) => self.put("[]"),
        }
    }

    fn string_scalar(&mut self, s: &str, indent: usize, simple_key: bool) {
        let can_plain = !resolves_non_str(s) && !is_base60_float(s);
        let mut style = if s.contains('\n') {
            Style::Literal
        } else if can_plain {
            Style::Plain
        } else {
            Style::Double
        };
        let a = analyze(s, self.v3);
        if style == Style::Plain {
            if !a.block_plain || (s.is_empty() && simple_key) {
                style = Style::Single;
            }
            if a.multiline && simple_key {
                style = Style::Double;
            }
        }
        if style == Style::Single && !a.single {
            style = Style::Double;
        }
        if style == Style::Literal && (!a.block || simple_key) {
            style = Style::Double;
        }
        let allow_breaks = !simple_key && !self.v3;
        match style {
            Style::Plain => self.write_plain(s, indent, allow_breaks),
            Style::Single => self.write_single(s, indent, allow_breaks),
            Style::Double => self.write_double(s, indent, allow_breaks),
            Style::Literal => self.write_literal(s, indent),
        }
    }

    fn write_plain(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && chars.get(i + 1).is_some_and(|n| *n != ' ') {
                    self.write_indent(indent);
                } else {
                    self.put_char(c);
                }
                spaces = true;
            } else {
                self.put_char(c);
                spaces = false;
            }
            i += 1;
        }
    }

    fn write_single(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        self.put_char('\'');
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        let mut breaks = false;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && i != 0 && i != chars.len() - 1 && chars.get(i + 1).is_some_and(|n| *n != ' ') {
                    self.write_indent(indent);
                } else {
                    self.put_char(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_char('\n');
                }
                // libyaml's write_break: `\n` is the emitter's line break, other breaks
                // (`\r`, U+0085, U+2028, U+2029) are copied as they are
                self.put_char(c);
                self.column = 0;
                breaks = true;
            } else {
                if breaks {
                    // indent after breaks
                    for _ in 0..indent {
                        self.put_char(' ');
                    }
                }
                self.put_char(c);
                if c == '\'' {
                    self.put_char('\'');
                }
                spaces = false;
                breaks = false;
            }
            i += 1;
        }
        self.put_char('\'');
    }

    fn write_double(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        self.put_char('"');
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let u = c as u32;
            if !is_printable(c) || c == '\u{FEFF}' || is_break(c) || c == '"' || c == '\\' {
                self.put_char('\\');
                match c {
                    '\0' => self.put_char('0'),
                    '\x07' => self.put_char('a'),
                    '\x08' => self.put_char('b'),
                    '\t' => self.put_char('t'),
                    '\n' => self.put_char('n'),
                    '\x0b' => self.put_char('v'),
                    '\x0c' => self.put_char('f'),
                    '\r' => self.put_char('r'),
                    '\x1b' => self.put_char('e'),
                    '"' => self.put_char('"'),
                    '\\' => self.put_char('\\'),
                    '\u{85}' => self.put_char('N'),
                    '\u{A0}' => self.put_char('_'),
                    '\u{2028}' => self.put_char('L'),
                    '\u{2029}' => self.put_char('P'),
                    _ => {
                        let h = if u <= 0xFF {
                            format!("x{:02X}", u)
                        } else if u <= 0xFFFF {
                            format!("u{:04X}", u)
                        } else {
                            format!("U{:08X}", u)
                        };
                        self.put(&h);
                    }
                }
                spaces = false;
            } else if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && i != 0 && i != chars.len() - 1 {
                    self.write_indent(indent);
                    if chars.get(i + 1) == Some(&' ') {
                        self.put_char('\\');
                    }
                } else {
                    self.put_char(c);
                }
                spaces = true;
            } else {
                self.put_char(c);
                spaces = false;
            }
            i += 1;
        }
        self.put_char('"');
    }

    fn write_literal(&mut self, s: &str, indent: usize) {
        self.put_char('|');
        let first = s.chars().next().unwrap_or('x');
        if first == ' ' || is_break(first) {
            self.put("2");
        }
        let chars: Vec<char> = s.chars().collect();
        let n = chars.len();
        if !is_break(chars[n - 1]) {
            self.put_char('-');
        } else if n == 1 || is_break(chars[n - 2]) {
            self.put_char('+');
        }
        // body
        let mut breaks = true;
        self.put_char('\n');
        self.column = 0;
        let body_indent = if indent == 0 { 2 } else { indent };
        for &c in &chars {
            if is_break(c) {
                self.put_char('\n');
                breaks = true;
            } else {
                if breaks {
                    for _ in 0..body_indent {
                        self.put_char(' ');
                    }
                    breaks = false;
                }
                self.put_char(c);
            }
        }
    }
}

#[cfg(test)]
mod alias_tests {
    use super::*;

    /// `a: &a [k scalars]`, `b: [m × *a]`, `c: [n scalars]` (c first or last).
    fn doc(k: usize, m: usize, n: usize, c_first: bool) -> String {
        let a = format!("a: &a [{}]\n", vec!["x"; k].join(", "));
        let b = format!("b: [{}]\n", vec!["*a"; m].join(", "));
        let c = format!("c: [{}]\n", vec!["y"; n].join(", "));
        if c_first { format!("{c}{a}{b}") } else { format!("{a}{b}{c}") }
    }

    /// Helm v4.2.3's verdicts (helm-python-sdk, `fromYaml` of each document): go-yaml's
    /// alias limit, reproduced exactly at its boundary.
    const HELM_FAILS: &[(usize, usize, usize, bool)] = &[(200, 200, 0, false), (200, 200, 100, false), (200, 200, 1000, false), (200, 201, 0, false), (200, 201, 100, false), (200, 201, 1000, false), (200, 250, 0, false), (200, 250, 0, true), (200, 250, 100, false), (200, 250, 1000, false), (200, 400, 0, false), (200, 400, 0, true), (200, 400, 100, false), (200, 400, 100, true), (200, 400, 1000, false), (200, 1000, 0, false), (200, 1000, 0, true), (200, 1000, 100, false), (200, 1000, 100, true), (200, 1000, 1000, false), (1000, 150, 0, false), (1000, 150, 0, true), (1000, 150, 100, false), (1000, 150, 100, true), (1000, 150, 1000, false), (1000, 199, 0, false), (1000, 199, 0, true), (1000, 199, 100, false), (1000, 199, 100, true), (1000, 199, 1000, false), (1000, 200, 0, false), (1000, 200, 0, true), (1000, 200, 100, false), (1000, 200, 100, true), (1000, 200, 1000, false), (1000, 201, 0, false), (1000, 201, 0, true), (1000, 201, 100, false), (1000, 201, 100, true), (1000, 201, 1000, false), (1000, 250, 0, false), (1000, 250, 0, true), (1000, 250, 100, false), (1000, 250, 100, true), (1000, 250, 1000, false), (1000, 250, 1000, true), (1000, 400, 0, false), (1000, 400, 0, true), (1000, 400, 100, false), (1000, 400, 100, true), (1000, 400, 1000, false), (1000, 400, 1000, true), (1000, 1000, 0, false), (1000, 1000, 0, true), (1000, 1000, 100, false), (1000, 1000, 100, true), (1000, 1000, 1000, false), (1000, 1000, 1000, true)];
    const HELM_PASSES: &[(usize, usize, usize, bool)] = &[(50, 1, 0, false), (50, 1, 0, true), (50, 1, 100, false), (50, 1, 100, true), (50, 1, 1000, false), (50, 1, 1000, true), (50, 5, 0, false), (50, 5, 0, true), (50, 5, 100, false), (50, 5, 100, true), (50, 5, 1000, false), (50, 5, 1000, true), (50, 50, 0, false), (50, 50, 0, true), (50, 50, 100, false), (50, 50, 100, true), (50, 50, 1000, false), (50, 50, 1000, true), (50, 95, 0, false), (50, 95, 0, true), (50, 95, 100, false), (50, 95, 100, true), (50, 95, 1000, false), (50, 95, 1000, true), (50, 99, 0, false), (50, 99, 0, true), (50, 99, 100, false), (50, 99, 100, true), (50, 99, 1000, false), (50, 99, 1000, true), (50, 100, 0, false), (50, 100, 0, true), (50, 100, 100, false), (50, 100, 100, true), (50, 100, 1000, false), (50, 100, 1000, true), (50, 101, 0, false), (50, 101, 0, true), (50, 101, 100, false), (50, 101, 100, true), (50, 101, 1000, false), (50, 101, 1000, true), (50, 150, 0, false), (50, 150, 0, true), (50, 150, 100, false), (50, 150, 100, true), (50, 150, 1000, false), (50, 150, 1000, true), (50, 199, 0, false), (50, 199, 0, true), (50, 199, 100, false), (50, 199, 100, true), (50, 199, 1000, false), (50, 199, 1000, true), (50, 200, 0, false), (50, 200, 0, true), (50, 200, 100, false), (50, 200, 100, true), (50, 200, 1000, false), (50, 200, 1000, true), (50, 201, 0, false), (50, 201, 0, true), (50, 201, 100, false), (50, 201, 100, true), (50, 201, 1000, false), (50, 201, 1000, true), (50, 250, 0, false), (50, 250, 0, true), (50, 250, 100, false), (50, 250, 100, true), (50, 250, 1000, false), (50, 250, 1000, true), (50, 400, 0, false), (50, 400, 0, true), (50, 400, 100, false), (50, 400, 100, true), (50, 400, 1000, false), (50, 400, 1000, true), (50, 1000, 0, false), (50, 1000, 0, true), (50, 1000, 100, false), (50, 1000, 100, true), (50, 1000, 1000, false), (50, 1000, 1000, true), (200, 1, 0, false), (200, 1, 0, true), (200, 1, 100, false), (200, 1, 100, true), (200, 1, 1000, false), (200, 1, 1000, true), (200, 5, 0, false), (200, 5, 0, true), (200, 5, 100, false), (200, 5, 100, true), (200, 5, 1000, false), (200, 5, 1000, true), (200, 50, 0, false), (200, 50, 0, true), (200, 50, 100, false), (200, 50, 100, true), (200, 50, 1000, false), (200, 50, 1000, true), (200, 95, 0, false), (200, 95, 0, true), (200, 95, 100, false), (200, 95, 100, true), (200, 95, 1000, false), (200, 95, 1000, true), (200, 99, 0, false), (200, 99, 0, true), (200, 99, 100, false), (200, 99, 100, true), (200, 99, 1000, false), (200, 99, 1000, true), (200, 100, 0, false), (200, 100, 0, true), (200, 100, 100, false), (200, 100, 100, true), (200, 100, 1000, false), (200, 100, 1000, true), (200, 101, 0, false), (200, 101, 0, true), (200, 101, 100, false), (200, 101, 100, true), (200, 101, 1000, false), (200, 101, 1000, true), (200, 150, 0, false), (200, 150, 0, true), (200, 150, 100, false), (200, 150, 100, true), (200, 150, 1000, false), (200, 150, 1000, true), (200, 199, 0, false), (200, 199, 0, true), (200, 199, 100, false), (200, 199, 100, true), (200, 199, 1000, false), (200, 199, 1000, true), (200, 200, 0, true), (200, 200, 100, true), (200, 200, 1000, true), (200, 201, 0, true), (200, 201, 100, true), (200, 201, 1000, true), (200, 250, 100, true), (200, 250, 1000, true), (200, 400, 1000, true), (200, 1000, 1000, true), (1000, 1, 0, false), (1000, 1, 0, true), (1000, 1, 100, false), (1000, 1, 100, true), (1000, 1, 1000, false), (1000, 1, 1000, true), (1000, 5, 0, false), (1000, 5, 0, true), (1000, 5, 100, false), (1000, 5, 100, true), (1000, 5, 1000, false), (1000, 5, 1000, true), (1000, 50, 0, false), (1000, 50, 0, true), (1000, 50, 100, false), (1000, 50, 100, true), (1000, 50, 1000, false), (1000, 50, 1000, true), (1000, 95, 0, false), (1000, 95, 0, true), (1000, 95, 100, false), (1000, 95, 100, true), (1000, 95, 1000, false), (1000, 95, 1000, true), (1000, 99, 0, false), (1000, 99, 0, true), (1000, 99, 100, false), (1000, 99, 100, true), (1000, 99, 1000, false), (1000, 99, 1000, true), (1000, 100, 0, false), (1000, 100, 0, true), (1000, 100, 100, false), (1000, 100, 100, true), (1000, 100, 1000, false), (1000, 100, 1000, true), (1000, 101, 0, false), (1000, 101, 0, true), (1000, 101, 100, false), (1000, 101, 100, true), (1000, 101, 1000, false), (1000, 101, 1000, true), (1000, 150, 1000, true), (1000, 199, 1000, true), (1000, 200, 1000, true), (1000, 201, 1000, true)];

    #[test]
    fn alias_limit_matches_helm_at_its_boundary() {
        for &(k, m, n, c_first) in HELM_FAILS {
            assert_eq!(decode(&doc(k, m, n, c_first)).unwrap_err(), EXCESSIVE_ALIASING, "{k} {m} {n} {c_first}");
        }
        for &(k, m, n, c_first) in HELM_PASSES {
            assert!(decode(&doc(k, m, n, c_first)).is_ok(), "{k} {m} {n} {c_first}");
        }
    }

    #[test]
    fn billion_laughs_fail_fast_in_every_decoder() {
        let mut y = String::from("l0: &l0 \"lol\"\n");
        for i in 1..=9 {
            y.push_str(&format!("l{i}: &l{i} [{}]\n", vec![format!("*l{}", i - 1); 9].join(", ")));
        }
        let t = std::time::Instant::now();
        assert_eq!(decode(&y).unwrap_err(), EXCESSIVE_ALIASING);
        // the manifest sorter's decoder too, although it would skip these keys
        assert_eq!(decode_head(&format!("kind: ConfigMap\n{y}")).unwrap_err(), EXCESSIVE_ALIASING);
        assert!(t.elapsed().as_secs() < 5);
        // aliases still work: each expansion is a copy of its own
        let v = decode("a: &a {x: 1}\nb: *a\nc: [*a, *a]\n").unwrap();
        assert_eq!(crate::json::encode(&v, crate::json::JsonOpts::default()).unwrap(), r#"{"a":{"x":1},"b":{"x":1},"c":[{"x":1},{"x":1}]}"#);
    }
}
