//! Executor: a port of Go's `text/template/exec.go` over [`Value`].

use std::collections::HashMap;
use std::rc::Rc;

use super::parse::{Arg, Branch, Cmd, Node, Number, Pipe, Tree, line_col};
use super::{ExecError, TemplateError};
use crate::funcs::{Ctx, FnError, Func, Ty};
use crate::value::Value;

/// Nesting limit of `{{template}}` calls (Go allows 100,000; stacks are cheaper to bound).
const MAX_EXEC_DEPTH: usize = 1000;
/// Nesting limit of executions started by `include`/`tpl` (Helm stops a name at 1,000).
const MAX_NESTED_EXECUTIONS: usize = 5000;

/// A set of named templates (Go's `*template.Template` namespace). `tpl` layers its own
/// definitions over the chart's set instead of copying it.
#[derive(Clone, Default)]
pub struct TemplateSet {
    pub trees: HashMap<String, Rc<Tree>>,
    pub parent: Option<Rc<TemplateSet>>,
}

impl TemplateSet {
    /// Looks a template up, innermost layer first.
    pub fn get(&self, name: &str) -> Option<Rc<Tree>> {
        if let Some(t) = self.trees.get(name) {
            return Some(t.clone());
        }
        let mut layer = self.parent.clone();
        while let Some(l) = layer {
            if let Some(t) = l.trees.get(name) {
                return Some(t.clone());
            }
            layer = l.parent.clone();
        }
        None
    }

    /// Adds parsed trees; later definitions replace earlier ones unless empty (Go's
    /// `AddParseTree` rules).
    pub fn add_trees(&mut self, trees: Vec<Tree>) {
        for t in trees {
            if let Some(old) = self.get(&t.name)
                && super::parse::is_empty_tree(&t.root)
                && !super::parse::is_empty_tree(&old.root)
            {
                continue;
            }
            self.trees.insert(t.name.clone(), Rc::new(t));
        }
    }
}

enum Flow {
    Break,
    Continue,
    Err(Box<ExecError>),
}

impl From<Box<ExecError>> for Flow {
    fn from(e: Box<ExecError>) -> Self {
        Flow::Err(e)
    }
}

type R<T> = Result<T, Box<ExecError>>;

struct State<'c, 'd> {
    ctx: &'c mut Ctx<'d>,
    tree: Rc<Tree>,
    /// Variables, innermost last; the flag marks a `range` element of a `[]interface{}` or map
    /// (static type `interface {}`, see `dot_iface`).
    vars: Vec<(String, Value, bool)>,
    depth: usize,
    node_pos: usize,
    node: NodeRef,
    /// Dot is a `range` element of a `[]interface{}` or map: Go's reflect.Value then has the
    /// static type `interface {}`, which field errors name (exec.go evalField takes
    /// `receiver.Type()` before indirecting).
    dot_iface: bool,
}

/// The node errors are reported at, resolved to its text only when an error happens
/// (formatting every node eagerly dominated render time).
#[derive(Clone, Debug)]
enum NodeRef {
    None,
    /// An argument at this position (`true`: a parenthesized pipeline).
    Arg(bool),
    Cmd,
    Pipe,
    Text(Rc<str>),
}

fn find_in_nodes(list: &[Node], pos: usize, r: &NodeRef) -> Option<String> {
    for n in list {
        let found = match n {
            Node::Action { pipe, .. } => find_in_pipe(pipe, pos, r),
            Node::If(b) | Node::Range(b) | Node::With(b) => {
                find_in_pipe(&b.pipe, pos, r).or_else(|| find_in_nodes(&b.list, pos, r)).or_else(|| b.else_list.as_ref().and_then(|e| find_in_nodes(e, pos, r)))
            }
            Node::Template { pipe: Some(p), .. } => find_in_pipe(p, pos, r),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn find_in_pipe(p: &Pipe, pos: usize, r: &NodeRef) -> Option<String> {
    if matches!(r, NodeRef::Pipe) && p.pos == pos {
        return Some(p.to_string());
    }
    for c in &p.cmds {
        if matches!(r, NodeRef::Cmd) && c.pos == pos {
            return Some(c.to_string());
        }
        for a in &c.args {
            if let Some(s) = find_in_arg(a, pos, r) {
                return Some(s);
            }
        }
    }
    None
}

fn find_in_arg(a: &Arg, pos: usize, r: &NodeRef) -> Option<String> {
    if let NodeRef::Arg(is_pipe) = r
        && a.pos() == pos
        && matches!(a, Arg::Pipe(_)) == *is_pipe
    {
        return Some(a.to_string());
    }
    match a {
        Arg::Pipe(p) => find_in_pipe(p, pos, r),
        Arg::Chain { node, .. } => find_in_arg(node, pos, r),
        _ => None,
    }
}

/// Executes template `name` of the context's set with `dot`, returning the output.
pub fn execute(ctx: &mut Ctx<'_>, name: &str, dot: Value) -> Result<String, TemplateError> {
    let Some(tree) = ctx.set.get(name) else {
        return Err(TemplateError::Plain(format!(
            "template: no template {} associated with template {}",
            super::fmt::go_quote(name),
            super::fmt::go_quote(&ctx.set_name)
        )));
    };
    ctx.exec_depth += 1;
    if ctx.exec_depth > MAX_NESTED_EXECUTIONS {
        ctx.exec_depth -= 1;
        return Err(TemplateError::Plain(format!("exceeded maximum template depth ({MAX_NESTED_EXECUTIONS})")));
    }
    let mut out = String::new();
    let mut st = State { ctx, tree: tree.clone(), vars: vec![("$".into(), dot.clone(), false)], depth: 0, node_pos: 0, node: NodeRef::None, dot_iface: false };
    let r = st.walk_list(&dot, &tree.root, &mut out);
    st.ctx.exec_depth -= 1;
    match r {
        Ok(()) => Ok(out),
        Err(Flow::Err(e)) => Err(TemplateError::Exec(e)),
        Err(_) => Ok(out),
    }
}

fn is_missing(f: &Option<Value>) -> bool {
    f.is_none()
}

impl State<'_, '_> {
    fn at_ref(&mut self, pos: usize, r: NodeRef) {
        self.node_pos = pos;
        self.node = r;
    }
    fn at_arg(&mut self, a: &Arg) {
        self.at_ref(a.pos(), NodeRef::Arg(matches!(a, Arg::Pipe(_))));
    }
    fn at_text(&mut self, pos: usize, s: String) {
        self.at_ref(pos, NodeRef::Text(s.into()));
    }
    fn node_text(&self) -> String {
        match &self.node {
            NodeRef::None => String::new(),
            NodeRef::Text(t) => t.to_string(),
            NodeRef::Cmd => find_in_nodes(&self.tree.root, self.node_pos, &NodeRef::Cmd)
                .or_else(|| find_in_nodes(&self.tree.root, self.node_pos, &NodeRef::Arg(false)))
                .unwrap_or_default(),
            r => find_in_nodes(&self.tree.root, self.node_pos, r).unwrap_or_default(),
        }
    }

    fn errorf(&self, msg: impl Into<String>) -> Box<ExecError> {
        let (line, col) = line_col(&self.tree.text, self.node_pos);
        Box::new(ExecError {
            name: self.tree.name.clone(),
            loc: format!("{}:{}:{}", self.tree.parse_name, line, col),
            node: self.node_text(),
            msg: msg.into(),
            call: None,
        })
    }

    fn walk_list(&mut self, dot: &Value, list: &[Node], out: &mut String) -> Result<(), Flow> {
        for n in list {
            self.walk(dot, n, out)?;
        }
        Ok(())
    }

    fn walk(&mut self, dot: &Value, node: &Node, out: &mut String) -> Result<(), Flow> {
        // Templates recurse (template/include/tpl): grow the stack instead of overflowing it.
        stacker::maybe_grow(128 * 1024, 4 * 1024 * 1024, || self.walk_inner(dot, node, out))
    }

    fn walk_inner(&mut self, dot: &Value, node: &Node, out: &mut String) -> Result<(), Flow> {
        self.ctx.budget.step().map_err(|m| self.errorf(m))?;
        match node {
            Node::Text(t) => {
                self.ctx.budget.charge(t.len() as u64).map_err(|m| self.errorf(m))?;
                out.push_str(t)
            }
            Node::Action { pipe, .. } => {
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.print_value(&v, out)?;
                }
            }
            Node::If(b) => self.walk_if_with(false, dot, b, out)?,
            Node::With(b) => self.walk_if_with(true, dot, b, out)?,
            Node::Range(b) => self.walk_range(dot, b, out)?,
            Node::Break { .. } => return Err(Flow::Break),
            Node::Continue { .. } => return Err(Flow::Continue),
            Node::Template { pos, name, pipe } => {
                let s = match pipe {
                    Some(p) => format!("{{{{template {} {}}}}}", super::fmt::go_quote(name), p),
                    None => format!("{{{{template {}}}}}", super::fmt::go_quote(name)),
                };
                self.at_text(*pos, s);
                let Some(tree) = self.ctx.set.get(name) else {
                    return Err(self.errorf(format!("template {} not defined", super::fmt::go_quote(name))).into());
                };
                if self.depth >= MAX_EXEC_DEPTH {
                    return Err(self.errorf(format!("exceeded maximum template depth ({MAX_EXEC_DEPTH})")).into());
                }
                let newdot = match pipe {
                    Some(p) => self.eval_pipeline(dot, p)?,
                    None => Value::Invalid,
                };
                let saved_vars = std::mem::replace(&mut self.vars, vec![("$".into(), newdot.clone(), false)]);
                let saved_tree = std::mem::replace(&mut self.tree, tree.clone());
                self.depth += 1;
                let saved_iface = std::mem::replace(&mut self.dot_iface, false);
                let r = self.walk_list(&newdot, &tree.root, out);
                self.dot_iface = saved_iface;
                self.depth -= 1;
                self.tree = saved_tree;
                self.vars = saved_vars;
                if let Err(Flow::Err(e)) = r {
                    return Err(Flow::Err(e));
                }
            }
        }
        Ok(())
    }

    fn print_value(&mut self, v: &Value, out: &mut String) -> R<()> {
        if matches!(v, Value::List(..) | Value::Map(_) | Value::Object(_)) {
            self.ctx.budget.charge_deep(v).map_err(|m| self.errorf(m))?;
        }
        let s = v.print_template();
        self.ctx.budget.charge(s.len() as u64).map_err(|m| self.errorf(m))?;
        out.push_str(&s);
        Ok(())
    }

    fn walk_if_with(&mut self, with: bool, dot: &Value, b: &Branch, out: &mut String) -> Result<(), Flow> {
        let mark = self.vars.len();
        let r = (|| {
            let val = self.eval_pipeline(dot, &b.pipe)?;
            if val.truthy() {
                if with {
                    // a pipeline's value is unwrapped to its concrete type
                    let saved = std::mem::replace(&mut self.dot_iface, false);
                    let r = self.walk_list(&val, &b.list, out);
                    self.dot_iface = saved;
                    r
                } else {
                    self.walk_list(dot, &b.list, out)
                }
            } else if let Some(e) = &b.else_list {
                self.walk_list(dot, e, out)
            } else {
                Ok(())
            }
        })();
        self.vars.truncate(mark);
        r
    }

    fn walk_range(&mut self, dot: &Value, b: &Branch, out: &mut String) -> Result<(), Flow> {
        let outer_mark = self.vars.len();
        let r = self.walk_range_inner(dot, b, out);
        self.vars.truncate(outer_mark);
        match r {
            Err(Flow::Break) => Ok(()),
            r => r,
        }
    }

    fn one_iteration(&mut self, b: &Branch, mark: usize, index: Value, elem: Value, iface: bool, out: &mut String) -> Result<(), Flow> {
        self.ctx.budget.step().map_err(|m| self.errorf(m))?;
        let d = &b.pipe.decl;
        if !d.is_empty() {
            if b.pipe.is_assign {
                if d.len() > 1 {
                    self.set_var(&d[0].1, index.clone())?;
                } else {
                    self.set_var(&d[0].1, elem.clone())?;
                }
            } else {
                let n = self.vars.len();
                self.vars[n - 1].1 = elem.clone();
                self.vars[n - 1].2 = iface;
            }
        }
        if d.len() > 1 {
            if b.pipe.is_assign {
                self.set_var(&d[1].1, elem.clone())?;
            } else {
                let n = self.vars.len();
                self.vars[n - 2].1 = index;
                self.vars[n - 2].2 = false;
            }
        }
        let saved = std::mem::replace(&mut self.dot_iface, iface);
        let r = self.walk_list(&elem, &b.list, out);
        self.dot_iface = saved;
        self.vars.truncate(mark);
        match r {
            Err(Flow::Continue) => Ok(()),
            r => r,
        }
    }

    fn walk_range_inner(&mut self, dot: &Value, b: &Branch, out: &mut String) -> Result<(), Flow> {
        self.at_ref(b.pos, NodeRef::Pipe);
        let val = self.eval_pipeline(dot, &b.pipe)?;
        let mark = self.vars.len();
        match &val {
            Value::List(l, t) => {
                let iface = matches!(t, crate::value::SliceTy::Iface | crate::value::SliceTy::NilIface);
                if !l.is_empty() {
                    for (i, e) in l.iter().enumerate() {
                        self.one_iteration(b, mark, Value::Int(i as i64), e.clone(), iface, out)?;
                    }
                    return Ok(());
                }
            }
            Value::Map(m) => {
                let entries: Vec<(String, Value)> = m.borrow().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                if !entries.is_empty() {
                    for (k, v) in entries {
                        self.one_iteration(b, mark, Value::from(k), v, true, out)?;
                    }
                    return Ok(());
                }
            }
            Value::Int(_) | Value::Int64(_) | Value::Uint(_) => {
                if b.pipe.decl.len() > 1 {
                    return Err(self.errorf(format!("can't use {} to iterate over more than one variable", val.fmt_v())).into());
                }
                let n: i64 = match val {
                    Value::Int(i) | Value::Int64(i) => i,
                    Value::Uint(u) => u.min(i64::MAX as u64) as i64,
                    _ => 0,
                };
                if n > 0 {
                    for i in 0..n {
                        let v = match val {
                            Value::Int64(_) => Value::Int64(i),
                            Value::Uint(_) => Value::Uint(i as u64),
                            _ => Value::Int(i),
                        };
                        self.one_iteration(b, mark, v.clone(), v, false, out)?;
                    }
                    return Ok(());
                }
            }
            Value::Object(o) if o.entries().is_some() => {
                let entries = o.entries().unwrap_or_default();
                if !entries.is_empty() {
                    for (k, v) in entries {
                        self.one_iteration(b, mark, Value::from(k), v, false, out)?;
                    }
                    return Ok(());
                }
            }
            Value::Invalid | Value::Nil => {}
            v => {
                return Err(self.errorf(format!("range can't iterate over {}", v.fmt_v())).into());
            }
        }
        if let Some(e) = &b.else_list {
            self.walk_list(dot, e, out)?;
        }
        Ok(())
    }

    fn at_pipe(&mut self, p: &Pipe) {
        self.at_ref(p.pos, NodeRef::Pipe);
    }

    fn set_var(&mut self, name: &str, v: Value) -> R<()> {
        for (n, val, iface) in self.vars.iter_mut().rev() {
            if n == name {
                *val = v;
                *iface = false;
                return Ok(());
            }
        }
        Err(self.errorf(format!("undefined variable: {name}")))
    }

    fn var_value(&self, name: &str) -> R<Value> {
        for (n, val, _) in self.vars.iter().rev() {
            if n == name {
                return Ok(val.clone());
            }
        }
        Err(self.errorf(format!("undefined variable: {name}")))
    }

    fn var_iface(&self, name: &str) -> bool {
        self.vars.iter().rev().find(|v| v.0 == name).is_some_and(|v| v.2)
    }

    pub(crate) fn eval_pipeline(&mut self, dot: &Value, pipe: &Pipe) -> R<Value> {
        stacker::maybe_grow(128 * 1024, 4 * 1024 * 1024, || self.eval_pipeline_inner(dot, pipe))
    }

    fn eval_pipeline_inner(&mut self, dot: &Value, pipe: &Pipe) -> R<Value> {
        self.at_pipe(pipe);
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            let mut v = self.eval_command(dot, cmd, value.take())?;
            if let Value::Nil = v {
                v = Value::Invalid;
            }
            value = Some(v);
        }
        let value = value.unwrap_or(Value::Invalid);
        for (_, name) in &pipe.decl {
            if pipe.is_assign {
                self.set_var(name, value.clone())?;
            } else {
                self.vars.push((name.clone(), value.clone(), false));
            }
        }
        Ok(value)
    }

    fn not_a_function(&self, args: &[Arg], final_: &Option<Value>) -> R<()> {
        if args.len() > 1 || !is_missing(final_) {
            return Err(self.errorf(format!("can't give argument to non-function {}", args[0])));
        }
        Ok(())
    }

    fn eval_command(&mut self, dot: &Value, cmd: &Cmd, final_: Option<Value>) -> R<Value> {
        self.ctx.budget.step().map_err(|m| self.errorf(m))?;
        let first = &cmd.args[0];
        match first {
            Arg::Field { pos, idents } => {
                let _ = pos;
                self.at_arg(first);
                return self.eval_dot_field_chain(dot, idents, &cmd.args, final_);
            }
            Arg::Chain { .. } => return self.eval_chain(dot, first, &cmd.args, final_),
            Arg::Ident(pos, name) => return self.eval_function(dot, *pos, name, cmd, &cmd.args, final_),
            Arg::Pipe(p) => {
                self.not_a_function(&cmd.args, &final_)?;
                return self.eval_pipeline(dot, p);
            }
            Arg::Variable { pos, idents } => {
                let _ = pos;
                self.at_arg(first);
                let v = self.var_value(&idents[0])?;
                if idents.len() == 1 {
                    self.not_a_function(&cmd.args, &final_)?;
                    return Ok(v);
                }
                let iface = self.var_iface(&idents[0]);
                return self.eval_field_chain_from(dot, v, iface, &idents[1..], &cmd.args, final_);
            }
            _ => {}
        }
        self.at_arg(first);
        self.not_a_function(&cmd.args, &final_)?;
        match first {
            Arg::Bool(_, b) => Ok(Value::Bool(*b)),
            Arg::Dot(_) => Ok(dot.clone()),
            Arg::Nil(_) => Err(self.errorf("nil is not a command")),
            Arg::Number(_, n) => self.ideal_constant(n),
            Arg::Str { val, .. } => Ok(Value::Str(val.clone())),
            _ => Err(self.errorf(format!("can't evaluate command {}", super::fmt::go_quote(&first.to_string())))),
        }
    }

    fn ideal_constant(&self, n: &Number) -> R<Value> {
        let t = n.text.to_ascii_lowercase();
        let is_hex_int = t.trim_start_matches(['+', '-']).starts_with("0x") && !t.contains('p');
        let is_rune = n.text.starts_with('\'');
        if n.is_complex {
            return Ok(Value::Complex(n.complex.0, n.complex.1));
        }
        if n.is_float && !is_hex_int && !is_rune && t.contains(['.', 'e', 'p']) {
            return Ok(Value::Float(n.float));
        }
        if n.is_int {
            return Ok(Value::Int(n.int));
        }
        if n.is_uint {
            return Err(self.errorf(format!("{} overflows int", n.text)));
        }
        Ok(Value::Invalid)
    }

    fn eval_chain(&mut self, dot: &Value, chain: &Arg, args: &[Arg], final_: Option<Value>) -> R<Value> {
        let Arg::Chain { pos, node, fields } = chain else { unreachable!() };
        let _ = pos;
        self.at_arg(chain);
        if let Arg::Nil(_) = **node {
            return Err(self.errorf(format!("indirection through explicit nil in {chain}")));
        }
        // Go reports field errors of a chain at the last node evaluated inside it.
        let pipe = self.eval_arg(dot, None, node)?;
        self.eval_field_chain(dot, pipe, fields, args, final_)
    }

    fn eval_field_chain(&mut self, dot: &Value, receiver: Value, idents: &[String], args: &[Arg], final_: Option<Value>) -> R<Value> {
        self.eval_field_chain_from(dot, receiver, false, idents, args, final_)
    }

    /// A field chain on dot: its receiver's static type may be `interface {}` (see `dot_iface`).
    fn eval_dot_field_chain(&mut self, dot: &Value, idents: &[String], args: &[Arg], final_: Option<Value>) -> R<Value> {
        let iface = self.dot_iface;
        self.eval_field_chain_from(dot, dot.clone(), iface, idents, args, final_)
    }

    fn eval_field_chain_from(&mut self, dot: &Value, mut receiver: Value, mut iface: bool, idents: &[String], args: &[Arg], final_: Option<Value>) -> R<Value> {
        let n = idents.len();
        for id in &idents[..n - 1] {
            let from_map = matches!(receiver, Value::Map(_));
            receiver = self.eval_field(dot, id, &[], None, receiver, iface)?;
            iface = from_map;
        }
        self.eval_field(dot, &idents[n - 1], args, final_, receiver, iface)
    }

    /// `iface`: the receiver came out of a map, so Go sees its static type as `interface {}`.
    fn eval_field(&mut self, dot: &Value, name: &str, args: &[Arg], final_: Option<Value>, receiver: Value, iface: bool) -> R<Value> {
        let has_args = args.len() > 1 || !is_missing(&final_);
        match &receiver {
            Value::Invalid => Ok(Value::Invalid),
            Value::Nil => Err(self.errorf(format!("nil pointer evaluating interface {{}}.{name}"))),
            Value::Map(m) => {
                if has_args {
                    return Err(self.errorf(format!("{name} is not a method but has arguments")));
                }
                Ok(m.borrow().get(name).cloned().unwrap_or(Value::Nil))
            }
            Value::Object(o) => {
                if o.has_method(name) {
                    let o = o.clone();
                    return self.eval_method(dot, &o, name, args, final_);
                }
                match o.field(name) {
                    Some(v) => {
                        if has_args {
                            return Err(self.errorf(format!("{name} has arguments but cannot be invoked as function")));
                        }
                        Ok(v)
                    }
                    None => Err(self.errorf(format!("can't evaluate field {name} in type {}", o.type_name()))),
                }
            }
            v => Err(self.errorf(format!("can't evaluate field {name} in type {}", if iface { "interface {}".to_string() } else { v.type_name() }))),
        }
    }

    fn eval_method(&mut self, dot: &Value, o: &Rc<dyn crate::value::Object>, name: &str, args: &[Arg], final_: Option<Value>) -> R<Value> {
        let (params, variadic) = crate::funcs::objects::method_sig(o.as_ref(), name);
        let node_pos = self.node_pos;
        let node_ref = self.node.clone();
        let argv = self.eval_args(dot, name, params, variadic, if args.is_empty() { args } else { &args[1..] }, final_)?;
        match o.call(name, &argv).and_then(|v| self.ctx.budget.charge_result(&v).map(|()| v)) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.node_pos = node_pos;
                self.node = node_ref;
                let mut err = self.errorf("");
                err.call = Some((name.to_string(), FnError::Msg(e)));
                Err(err)
            }
        }
    }

    fn eval_function(&mut self, dot: &Value, pos: usize, name: &str, cmd: &Cmd, args: &[Arg], final_: Option<Value>) -> R<Value> {
        self.at_ref(pos, NodeRef::Arg(false));
        let Some(func) = self.ctx.funcs.get(name) else {
            return Err(self.errorf(format!("{} is not a defined function", super::fmt::go_quote(name))));
        };
        let func: Func = func.clone();
        let rest = if args.is_empty() { args } else { &args[1..] };
        if name == "and" || name == "or" {
            let want_or = name == "or";
            let mut v = Value::Invalid;
            if rest.is_empty() && is_missing(&final_) {
                return Err(self.errorf(format!("wrong number of args for {name}: want at least 1 got 0")));
            }
            for a in rest {
                v = self.eval_arg(dot, Some(Ty::RValue), a)?;
                if v.truthy() == want_or {
                    return Ok(v);
                }
            }
            if let Some(f) = final_ {
                v = self.validate_type(f, Ty::RValue)?;
            }
            return Ok(v);
        }
        let argv = self.eval_args(dot, name, func.params, func.variadic, rest, final_)?;
        if name == "call" && !argv.is_empty() && !argv[0].is_nil() {
            let what = rest.first().map(|a| a.to_string()).unwrap_or_default();
            self.at_ref(cmd.pos, NodeRef::Cmd);
            let mut err = self.errorf("");
            err.call = Some((name.to_string(), FnError::Msg(format!("non-function {what} of type {}", argv[0].type_name()))));
            return Err(err);
        }
        let r = match self.ctx.budget.charge_args(name, &argv) {
            Ok(()) => (func.f)(self.ctx, &argv).and_then(|v| self.ctx.budget.charge_result(&v).map(|()| v).map_err(FnError::Msg)),
            Err(m) => Err(FnError::Msg(m)),
        };
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                self.at_ref(cmd.pos, NodeRef::Cmd);
                let mut err = self.errorf("");
                err.call = Some((name.to_string(), e));
                Err(err)
            }
        }
    }

    fn eval_args(&mut self, dot: &Value, name: &str, params: &[Ty], variadic: Option<Ty>, args: &[Arg], final_: Option<Value>) -> R<Vec<Value>> {
        let num_in = args.len() + usize::from(final_.is_some());
        let nparams = params.len() + usize::from(variadic.is_some());
        if variadic.is_some() {
            if num_in < params.len() {
                return Err(self.errorf(format!("wrong number of args for {name}: want at least {} got {}", params.len(), args.len())));
            }
        } else if num_in != nparams {
            return Err(self.errorf(format!("wrong number of args for {name}: want {nparams} got {num_in}")));
        }
        let mut argv = Vec::with_capacity(num_in);
        let param_ty = |i: usize| -> Ty { if i < params.len() { params[i] } else { variadic.unwrap_or(Ty::Any) } };
        for (i, a) in args.iter().enumerate() {
            argv.push(self.eval_arg(dot, Some(param_ty(i)), a)?);
        }
        if let Some(f) = final_ {
            let t = param_ty(num_in - 1);
            argv.push(self.validate_type(f, t)?);
        }
        Ok(argv)
    }

    fn validate_type(&self, v: Value, ty: Ty) -> R<Value> {
        crate::funcs::validate_type(v, ty).map_err(|m| self.errorf(m))
    }

    fn eval_arg(&mut self, dot: &Value, ty: Option<Ty>, n: &Arg) -> R<Value> {
        self.at_arg(n);
        let Some(ty) = ty else {
            // untyped: evaluate like an empty interface, but keep invalid values.
            return match n {
                Arg::Dot(_) => Ok(dot.clone()),
                Arg::Nil(_) => Ok(Value::Invalid),
                Arg::Field { idents, .. } => self.eval_dot_field_chain(dot, idents, &[], None),
                Arg::Variable { idents, .. } => {
                    let v = self.var_value(&idents[0])?;
                    let iface = self.var_iface(&idents[0]);
                    if idents.len() == 1 { Ok(v) } else { self.eval_field_chain_from(dot, v, iface, &idents[1..], &[], None) }
                }
                Arg::Pipe(p) => self.eval_pipeline(dot, p),
                Arg::Ident(pos, name) => {
                    let cmd = Cmd { pos: *pos, args: vec![Arg::Ident(*pos, name.clone())] };
                    self.eval_function(dot, *pos, name, &cmd, &[], None)
                }
                Arg::Chain { .. } => self.eval_chain(dot, n, &[], None),
                _ => self.eval_empty_interface(dot, n),
            };
        };
        match n {
            Arg::Dot(_) => return self.validate_type(dot.clone(), ty),
            Arg::Nil(_) => {
                return match ty {
                    Ty::Any | Ty::List | Ty::Map | Ty::Strs => Ok(Value::Nil),
                    Ty::RValue => Ok(Value::Invalid),
                    _ => Err(self.errorf(format!("cannot assign nil to {}", ty.go_name()))),
                };
            }
            Arg::Field { idents, .. } => {
                let v = self.eval_dot_field_chain(dot, idents, &[n_dummy()], None);
                let v = v?;
                return self.validate_type(v, ty);
            }
            Arg::Variable { idents, .. } => {
                let v = self.var_value(&idents[0])?;
                let iface = self.var_iface(&idents[0]);
                let v = if idents.len() == 1 { v } else { self.eval_field_chain_from(dot, v, iface, &idents[1..], &[], None)? };
                return self.validate_type(v, ty);
            }
            Arg::Pipe(p) => {
                let v = self.eval_pipeline(dot, p)?;
                return self.validate_type(v, ty);
            }
            Arg::Ident(pos, name) => {
                let cmd = Cmd { pos: *pos, args: vec![Arg::Ident(*pos, name.clone())] };
                let v = self.eval_function(dot, *pos, name, &cmd, &cmd.args, None)?;
                return self.validate_type(v, ty);
            }
            Arg::Chain { .. } => {
                let v = self.eval_chain(dot, n, &[], None)?;
                return self.validate_type(v, ty);
            }
            _ => {}
        }
        match ty {
            Ty::Bool => match n {
                Arg::Bool(_, b) => Ok(Value::Bool(*b)),
                _ => Err(self.errorf(format!("expected bool; found {n}"))),
            },
            Ty::Float => match n {
                Arg::Number(_, num) if num.is_float => Ok(Value::Float(num.float)),
                _ => Err(self.errorf(format!("expected float; found {n}"))),
            },
            Ty::Int | Ty::Int64 => match n {
                Arg::Number(_, num) if num.is_int => Ok(if ty == Ty::Int { Value::Int(num.int) } else { Value::Int64(num.int) }),
                _ => Err(self.errorf(format!("expected integer; found {n}"))),
            },
            Ty::Uint => match n {
                Arg::Number(_, num) if num.is_uint => Ok(Value::Uint(num.uint)),
                _ => Err(self.errorf(format!("expected unsigned integer; found {n}"))),
            },
            Ty::Str => match n {
                Arg::Str { val, .. } => Ok(Value::Str(val.clone())),
                _ => Err(self.errorf(format!("expected string; found {n}"))),
            },
            Ty::Any | Ty::RValue => self.eval_empty_interface(dot, n),
            _ => Err(self.errorf(format!("can't handle {n} for arg of type {}", ty.go_name()))),
        }
    }

    fn eval_empty_interface(&mut self, dot: &Value, n: &Arg) -> R<Value> {
        self.at_arg(n);
        match n {
            Arg::Bool(_, b) => Ok(Value::Bool(*b)),
            Arg::Dot(_) => Ok(dot.clone()),
            Arg::Number(_, num) => self.ideal_constant(num),
            Arg::Str { val, .. } => Ok(Value::Str(val.clone())),
            Arg::Nil(_) => Err(self.errorf("evalEmptyInterface: nil (can't happen)")),
            _ => self.eval_arg(dot, None, n),
        }
    }
}

fn n_dummy() -> Arg {
    Arg::Dot(0)
}
