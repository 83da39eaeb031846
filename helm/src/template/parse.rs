//! Parser: a port of Go's `text/template/parse/parse.go` producing [`Tree`]s.

use std::collections::HashMap;
use std::rc::Rc;

use super::lex::{Item, Tok, lex};

/// A parse error in Go's shape: `template: NAME:LINE: MSG`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    pub name: String,
    pub line: usize,
    pub msg: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "template: {}:{}: {}", self.name, self.line, self.msg)
    }
}

/// A parsed template body.
#[derive(Debug)]
pub struct Tree {
    pub name: String,
    /// Name of the file the text came from (for error positions).
    pub parse_name: String,
    pub text: Rc<str>,
    pub root: Vec<Node>,
}

#[derive(Debug)]
pub enum Node {
    Text(String),
    Action { pos: usize, pipe: Pipe },
    If(Branch),
    Range(Branch),
    With(Branch),
    Template { pos: usize, name: String, pipe: Option<Pipe> },
    Break { pos: usize },
    Continue { pos: usize },
}

#[derive(Debug)]
pub struct Branch {
    pub pos: usize,
    pub pipe: Pipe,
    pub list: Vec<Node>,
    pub else_list: Option<Vec<Node>>,
}

#[derive(Debug)]
pub struct Pipe {
    pub pos: usize,
    pub is_assign: bool,
    pub decl: Vec<(usize, String)>,
    pub cmds: Vec<Cmd>,
}

#[derive(Debug)]
pub struct Cmd {
    pub pos: usize,
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone)]
pub struct Number {
    pub text: String,
    pub is_int: bool,
    pub is_uint: bool,
    pub is_float: bool,
    pub int: i64,
    pub uint: u64,
    pub float: f64,
    pub is_complex: bool,
    pub complex: (f64, f64),
}

#[derive(Debug)]
pub enum Arg {
    Field { pos: usize, idents: Vec<String> },
    Variable { pos: usize, idents: Vec<String> },
    Dot(usize),
    Nil(usize),
    Bool(usize, bool),
    Number(usize, Number),
    Str { pos: usize, quoted: String, val: Rc<str> },
    Ident(usize, String),
    Chain { pos: usize, node: Box<Arg>, fields: Vec<String> },
    Pipe(Box<Pipe>),
}

impl Arg {
    pub fn pos(&self) -> usize {
        match self {
            Arg::Field { pos, .. } | Arg::Variable { pos, .. } | Arg::Str { pos, .. } | Arg::Chain { pos, .. } => *pos,
            Arg::Dot(p) | Arg::Nil(p) | Arg::Bool(p, _) | Arg::Number(p, _) | Arg::Ident(p, _) => *p,
            Arg::Pipe(p) => p.pos,
        }
    }
}

impl std::fmt::Display for Arg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Field { idents, .. } => {
                for i in idents {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            Arg::Variable { idents, .. } => write!(f, "{}", idents.join(".")),
            Arg::Dot(_) => f.write_str("."),
            Arg::Nil(_) => f.write_str("nil"),
            Arg::Bool(_, b) => write!(f, "{b}"),
            Arg::Number(_, n) => f.write_str(&n.text),
            Arg::Str { quoted, .. } => f.write_str(quoted),
            Arg::Ident(_, s) => f.write_str(s),
            Arg::Chain { node, fields, .. } => {
                if let Arg::Pipe(_) = **node {
                    write!(f, "({node})")?;
                } else {
                    write!(f, "{node}")?;
                }
                for fl in fields {
                    write!(f, ".{fl}")?;
                }
                Ok(())
            }
            Arg::Pipe(p) => write!(f, "{p}"),
        }
    }
}

impl std::fmt::Display for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.decl.is_empty() {
            for (i, (_, v)) in self.decl.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(v)?;
            }
            f.write_str(if self.is_assign { " = " } else { " := " })?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if let Arg::Pipe(p) = a {
                write!(f, "({p})")?;
            } else {
                write!(f, "{a}")?;
            }
        }
        Ok(())
    }
}

enum Ctl {
    End,
    Else,
}

struct Parser<'a> {
    items: Vec<Item>,
    i: usize,
    parse_name: &'a str,
    text: Rc<str>,
    vars: Vec<String>,
    range_depth: usize,
    has_func: &'a dyn Fn(&str) -> bool,
    trees: &'a mut Vec<Tree>,
    line: usize,
    depth: usize,
}

type PResult<T> = Result<T, ParseError>;

/// Parses `text` (file `name`): returns the top-level tree followed by every `define`d or
/// `block` tree, in definition order.
pub fn parse(name: &str, text: &str, has_func: &dyn Fn(&str) -> bool) -> Result<Vec<Tree>, ParseError> {
    let items = lex(text);
    let text: Rc<str> = text.into();
    let mut trees = Vec::new();
    let mut root = Vec::new();
    {
        let mut p = Parser {
            items,
            i: 0,
            parse_name: name,
            text: text.clone(),
            vars: vec!["$".into()],
            range_depth: 0,
            has_func,
            trees: &mut trees,
            line: 1,
            depth: 0,
        };
        while p.peek().typ != Tok::Eof {
            if p.peek().typ == Tok::LeftDelim {
                let save = p.i;
                p.next();
                if p.next_non_space().typ == Tok::Define {
                    p.parse_definition()?;
                    continue;
                }
                p.i = save;
            }
            match p.text_or_action()? {
                Ok(n) => root.push(n),
                Err(Ctl::End) => return Err(p.err("unexpected {{end}}".into())),
                Err(Ctl::Else) => return Err(p.err("unexpected {{else}}".into())),
            }
        }
    }
    let mut out = vec![Tree { name: name.into(), parse_name: name.into(), text, root }];
    out.extend(trees);
    Ok(out)
}

/// Whether a list is "empty" in Go's sense (only whitespace text).
pub fn is_empty_tree(list: &[Node]) -> bool {
    list.iter().all(|n| matches!(n, Node::Text(t) if t.trim().is_empty()))
}

impl<'a> Parser<'a> {
    fn err(&self, msg: String) -> ParseError {
        ParseError { name: self.parse_name.into(), line: self.line, msg }
    }
    fn peek(&self) -> &Item {
        &self.items[self.i.min(self.items.len() - 1)]
    }
    fn next(&mut self) -> Item {
        let it = self.items[self.i.min(self.items.len() - 1)].clone();
        if self.i < self.items.len() {
            self.i += 1;
        }
        self.line = it.line;
        it
    }
    fn backup(&mut self) {
        self.i -= 1;
    }
    fn next_non_space(&mut self) -> Item {
        loop {
            let t = self.next();
            if t.typ != Tok::Space {
                return t;
            }
        }
    }
    fn peek_non_space(&mut self) -> Item {
        let t = self.next_non_space();
        self.backup();
        t
    }
    fn unexpected(&self, tok: &Item, context: &str) -> ParseError {
        if tok.typ == Tok::Error {
            return self.err(tok.val.clone());
        }
        self.err(format!("unexpected {} in {}", tok.describe(), context))
    }
    fn expect(&mut self, t: Tok, context: &str) -> PResult<Item> {
        let tok = self.next_non_space();
        if tok.typ != t {
            return Err(self.unexpected(&tok, context));
        }
        Ok(tok)
    }

    fn parse_definition(&mut self) -> PResult<()> {
        let context = "define clause";
        let tok = self.next_non_space();
        if tok.typ != Tok::String && tok.typ != Tok::RawString {
            return Err(self.unexpected(&tok, context));
        }
        let name = unquote(&tok.val).map_err(|e| self.err(e))?;
        self.expect(Tok::RightDelim, context)?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let (list, end) = self.item_list()?;
        self.vars = saved_vars;
        if let Ctl::Else = end {
            return Err(self.err(format!("unexpected {{{{else}}}} in {context}")));
        }
        self.add(name, list)
    }

    fn add(&mut self, name: String, list: Vec<Node>) -> PResult<()> {
        if let Some(existing) = self.trees.iter_mut().find(|t| t.name == name) {
            if is_empty_tree(&existing.root) {
                existing.root = list;
                return Ok(());
            }
            if !is_empty_tree(&list) {
                return Err(self.err(format!("template: multiple definition of template {}", super::fmt::go_quote(&name))));
            }
            return Ok(());
        }
        self.trees.push(Tree { name, parse_name: self.parse_name.into(), text: self.text.clone(), root: list });
        Ok(())
    }

    fn item_list(&mut self) -> PResult<(Vec<Node>, Ctl)> {
        stacker::maybe_grow(64 * 1024, 2 * 1024 * 1024, || self.item_list_inner())
    }

    fn item_list_inner(&mut self) -> PResult<(Vec<Node>, Ctl)> {
        let mut list = Vec::new();
        while self.peek_non_space().typ != Tok::Eof {
            match self.text_or_action()? {
                Ok(n) => list.push(n),
                Err(c) => return Ok((list, c)),
            }
        }
        Err(self.err("unexpected EOF".into()))
    }

    fn text_or_action(&mut self) -> PResult<Result<Node, Ctl>> {
        let tok = self.next_non_space();
        match tok.typ {
            Tok::Text => Ok(Ok(Node::Text(tok.val))),
            Tok::LeftDelim => self.action(),
            _ => Err(self.unexpected(&tok, "input")),
        }
    }

    fn action(&mut self) -> PResult<Result<Node, Ctl>> {
        let tok = self.next_non_space();
        match tok.typ {
            Tok::Block => return self.block_control().map(Ok),
            Tok::Break | Tok::Continue => {
                let what = if tok.typ == Tok::Break { "break" } else { "continue" };
                let t2 = self.next_non_space();
                if t2.typ != Tok::RightDelim {
                    return Err(self.unexpected(&t2, &format!("{{{{{what}}}}}")));
                }
                if self.range_depth == 0 {
                    return Err(self.err(format!("{{{{{what}}}}} outside {{{{range}}}}")));
                }
                return Ok(Ok(if tok.typ == Tok::Break { Node::Break { pos: tok.pos } } else { Node::Continue { pos: tok.pos } }));
            }
            Tok::Else => {
                let p = self.peek_non_space();
                if p.typ == Tok::If || p.typ == Tok::With {
                    return Ok(Err(Ctl::Else));
                }
                self.expect(Tok::RightDelim, "else")?;
                return Ok(Err(Ctl::Else));
            }
            Tok::End => {
                self.expect(Tok::RightDelim, "end")?;
                return Ok(Err(Ctl::End));
            }
            Tok::If => return self.control("if").map(|b| Ok(Node::If(b))),
            Tok::Range => return self.control("range").map(|b| Ok(Node::Range(b))),
            Tok::With => return self.control("with").map(|b| Ok(Node::With(b))),
            Tok::Template => return self.template_control().map(Ok),
            _ => {}
        }
        self.backup();
        let pos = self.peek().pos;
        let pipe = self.pipeline("command", Tok::RightDelim)?;
        Ok(Ok(Node::Action { pos, pipe }))
    }

    fn control(&mut self, context: &str) -> PResult<Branch> {
        let nvars = self.vars.len();
        let r = self.control_inner(context);
        self.vars.truncate(nvars);
        r
    }

    fn control_inner(&mut self, context: &str) -> PResult<Branch> {
        let pipe = self.pipeline(context, Tok::RightDelim)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let r = self.item_list();
        if context == "range" {
            self.range_depth -= 1;
        }
        let (list, next) = r?;
        let mut else_list = None;
        if let Ctl::Else = next {
            if context == "if" && self.peek().typ == Tok::If {
                self.next();
                let b = self.control("if")?;
                else_list = Some(vec![Node::If(b)]);
            } else if context == "with" && self.peek().typ == Tok::With {
                self.next();
                let b = self.control("with")?;
                else_list = Some(vec![Node::With(b)]);
            } else {
                let (l, n2) = self.item_list()?;
                if let Ctl::Else = n2 {
                    return Err(self.err("expected end; found {{else}}".into()));
                }
                else_list = Some(l);
            }
        }
        Ok(Branch { pos: pipe.pos, pipe, list, else_list })
    }

    fn parse_template_name(&mut self, tok: &Item, context: &str) -> PResult<String> {
        match tok.typ {
            Tok::String | Tok::RawString => unquote(&tok.val).map_err(|e| self.err(e)),
            _ => Err(self.unexpected(tok, context)),
        }
    }

    fn template_control(&mut self) -> PResult<Node> {
        let context = "template clause";
        let tok = self.next_non_space();
        let name = self.parse_template_name(&tok, context)?;
        let mut pipe = None;
        if self.next_non_space().typ != Tok::RightDelim {
            self.backup();
            pipe = Some(self.pipeline(context, Tok::RightDelim)?);
        }
        Ok(Node::Template { pos: tok.pos, name, pipe })
    }

    fn block_control(&mut self) -> PResult<Node> {
        let context = "block clause";
        let tok = self.next_non_space();
        let name = self.parse_template_name(&tok, context)?;
        let pipe = self.pipeline(context, Tok::RightDelim)?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let saved_depth = std::mem::replace(&mut self.range_depth, 0);
        let r = self.item_list();
        self.vars = saved_vars;
        self.range_depth = saved_depth;
        let (list, end) = r?;
        if let Ctl::Else = end {
            return Err(self.err(format!("unexpected {{{{else}}}} in {context}")));
        }
        self.add(name.clone(), list)?;
        Ok(Node::Template { pos: tok.pos, name, pipe: Some(pipe) })
    }

    fn pipeline(&mut self, context: &str, end: Tok) -> PResult<Pipe> {
        // Go limits nesting too (maxStackDepth); ours is lower so that dropping and printing
        // the tree stays within an ordinary thread stack.
        if self.depth >= 1000 {
            return Err(self.err("max expression depth exceeded".into()));
        }
        self.depth += 1;
        let r = stacker::maybe_grow(64 * 1024, 2 * 1024 * 1024, || self.pipeline_inner(context, end));
        self.depth -= 1;
        r
    }

    fn pipeline_inner(&mut self, context: &str, end: Tok) -> PResult<Pipe> {
        let tok = self.peek_non_space();
        let mut pipe = Pipe { pos: tok.pos, is_assign: false, decl: Vec::new(), cmds: Vec::new() };
        'decls: loop {
            let v = self.peek_non_space();
            if v.typ == Tok::Variable {
                self.next_non_space();
                let token_after = self.peek().clone();
                let next = self.peek_non_space();
                if next.typ == Tok::Assign || next.typ == Tok::Declare {
                    pipe.is_assign = next.typ == Tok::Assign;
                    self.next_non_space();
                    pipe.decl.push((v.pos, v.val.clone()));
                    self.vars.push(v.val.clone());
                } else if next.typ == Tok::Char && next.val == "," {
                    self.next_non_space();
                    pipe.decl.push((v.pos, v.val.clone()));
                    self.vars.push(v.val.clone());
                    if context == "range" && pipe.decl.len() < 2 {
                        match self.peek_non_space().typ {
                            Tok::Variable | Tok::RightDelim | Tok::RightParen => continue 'decls,
                            _ => return Err(self.err("range can only initialize variables".into())),
                        }
                    }
                    return Err(self.err(format!("too many declarations in {context}")));
                } else if token_after.typ == Tok::Space {
                    // back up before the variable and the space
                    self.i -= 1;
                    while self.items[self.i].typ == Tok::Space {
                        self.i -= 1;
                    }
                    // now at the variable
                } else {
                    self.i -= 1;
                    while self.items[self.i].typ != Tok::Variable {
                        self.i -= 1;
                    }
                }
            }
            break;
        }
        loop {
            let tok = self.next_non_space();
            if tok.typ == end {
                self.check_pipeline(&pipe, context)?;
                return Ok(pipe);
            }
            match tok.typ {
                Tok::Bool
                | Tok::CharConstant
                | Tok::Complex
                | Tok::Dot
                | Tok::Field
                | Tok::Identifier
                | Tok::Number
                | Tok::Nil
                | Tok::RawString
                | Tok::String
                | Tok::Variable
                | Tok::LeftParen => {
                    self.backup();
                    let c = self.command()?;
                    pipe.cmds.push(c);
                }
                _ => return Err(self.unexpected(&tok, context)),
            }
        }
    }

    fn check_pipeline(&self, pipe: &Pipe, context: &str) -> PResult<()> {
        if pipe.cmds.is_empty() {
            return Err(self.err(format!("missing value for {context}")));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if let Some(Arg::Bool(..) | Arg::Dot(_) | Arg::Nil(_) | Arg::Number(..) | Arg::Str { .. }) = c.args.first() {
                return Err(self.err(format!("non executable command in pipeline stage {}", i + 1)));
            }
        }
        Ok(())
    }

    fn command(&mut self) -> PResult<Cmd> {
        let pos = self.peek_non_space().pos;
        let mut cmd = Cmd { pos, args: Vec::new() };
        loop {
            self.peek_non_space();
            if let Some(op) = self.operand()? {
                cmd.args.push(op);
            }
            let tok = self.next();
            match tok.typ {
                Tok::Space => continue,
                Tok::RightDelim | Tok::RightParen => self.backup(),
                Tok::Pipe => {}
                _ => return Err(self.unexpected(&tok, "operand")),
            }
            break;
        }
        if cmd.args.is_empty() {
            return Err(self.err("empty command".into()));
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(node) = self.term()? else { return Ok(None) };
        if self.peek().typ == Tok::Field {
            let cpos = self.peek().pos;
            let mut fields = Vec::new();
            while self.peek().typ == Tok::Field {
                let f = self.next();
                fields.push(f.val[1..].to_string());
            }
            return Ok(Some(match node {
                Arg::Field { idents, .. } => {
                    let mut i = idents;
                    i.extend(fields);
                    Arg::Field { pos: cpos, idents: i }
                }
                Arg::Variable { idents, .. } => {
                    let mut i = idents;
                    i.extend(fields);
                    Arg::Variable { pos: cpos, idents: i }
                }
                n @ (Arg::Bool(..) | Arg::Str { .. } | Arg::Number(..) | Arg::Nil(_) | Arg::Dot(_)) => {
                    return Err(self.err(format!("unexpected . after term {}", super::fmt::go_quote(&n.to_string()))));
                }
                n => Arg::Chain { pos: cpos, node: Box::new(n), fields },
            }));
        }
        Ok(Some(node))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let tok = self.next_non_space();
        Ok(Some(match tok.typ {
            Tok::Identifier => {
                if !(self.has_func)(&tok.val) {
                    return Err(self.err(format!("function {} not defined", super::fmt::go_quote(&tok.val))));
                }
                Arg::Ident(tok.pos, tok.val)
            }
            Tok::Dot => Arg::Dot(tok.pos),
            Tok::Nil => Arg::Nil(tok.pos),
            Tok::Variable => {
                let parts: Vec<String> = tok.val.split('.').map(String::from).collect();
                if !self.vars.iter().any(|v| *v == parts[0]) {
                    return Err(self.err(format!("undefined variable {}", super::fmt::go_quote(&parts[0]))));
                }
                Arg::Variable { pos: tok.pos, idents: parts }
            }
            Tok::Field => Arg::Field { pos: tok.pos, idents: tok.val[1..].split('.').map(String::from).collect() },
            Tok::Bool => Arg::Bool(tok.pos, tok.val == "true"),
            Tok::CharConstant | Tok::Number | Tok::Complex => {
                let n = parse_number(&tok.val, tok.typ == Tok::CharConstant).map_err(|e| self.err(e))?;
                Arg::Number(tok.pos, n)
            }
            Tok::LeftParen => {
                let p = self.pipeline("parenthesized pipeline", Tok::RightParen)?;
                Arg::Pipe(Box::new(p))
            }
            Tok::String | Tok::RawString => {
                let s = unquote(&tok.val).map_err(|e| self.err(e))?;
                Arg::Str { pos: tok.pos, quoted: tok.val, val: s.into() }
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}

/// Go's `strconv.Unquote` for "..." and `...` strings.
pub fn unquote(s: &str) -> Result<String, String> {
    if s.len() >= 2 && s.starts_with('`') && s.ends_with('`') {
        let inner = &s[1..s.len() - 1];
        if inner.contains('`') {
            return Err("invalid syntax".into());
        }
        return Ok(inner.replace('\r', ""));
    }
    if s.len() < 2 || !s.starts_with('"') || !s.ends_with('"') {
        return Err("invalid syntax".into());
    }
    unescape(&s[1..s.len() - 1], '"')
}

fn unescape(inner: &str, quote: char) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    let bad = || "invalid syntax".to_string();
    let mut bytes: Vec<u8> = Vec::new();
    let flush = |bytes: &mut Vec<u8>, out: &mut String| {
        if !bytes.is_empty() {
            out.push_str(&String::from_utf8_lossy(bytes));
            bytes.clear();
        }
    };
    while let Some(c) = chars.next() {
        if c == quote && quote == '"' {
            return Err(bad());
        }
        if c != '\\' {
            flush(&mut bytes, &mut out);
            out.push(c);
            continue;
        }
        let e = chars.next().ok_or_else(bad)?;
        if !matches!(e, 'x' | '0'..='7') {
            // pending `\x..`/octal bytes come before this character
            flush(&mut bytes, &mut out);
        }
        match e {
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '\\' => out.push('\\'),
            '\'' if quote == '\'' => out.push('\''),
            '"' if quote == '"' => out.push('"'),
            'x' => {
                let h: String = (0..2).filter_map(|_| chars.next()).collect();
                let b = u8::from_str_radix(&h, 16).map_err(|_| bad())?;
                if h.len() != 2 {
                    return Err(bad());
                }
                bytes.push(b);
                continue;
            }
            '0'..='7' => {
                let mut h = String::from(e);
                for _ in 0..2 {
                    h.push(chars.next().ok_or_else(bad)?);
                }
                let b = u32::from_str_radix(&h, 8).map_err(|_| bad())?;
                if b > 255 {
                    return Err(bad());
                }
                bytes.push(b as u8);
                continue;
            }
            'u' | 'U' => {
                let n = if e == 'u' { 4 } else { 8 };
                let h: String = (0..n).filter_map(|_| chars.next()).collect();
                if h.len() != n {
                    return Err(bad());
                }
                let v = u32::from_str_radix(&h, 16).map_err(|_| bad())?;
                flush(&mut bytes, &mut out);
                out.push(char::from_u32(v).ok_or_else(bad)?);
                continue;
            }
            _ => return Err(bad()),
        }
        flush(&mut bytes, &mut out);
    }
    flush(&mut bytes, &mut out);
    Ok(out)
}

/// Go's `parse.newNumber`.
pub fn parse_number(text: &str, is_char: bool) -> Result<Number, String> {
    let mut n =
        Number { text: text.into(), is_int: false, is_uint: false, is_float: false, int: 0, uint: 0, float: 0.0, is_complex: false, complex: (0.0, 0.0) };
    if is_char {
        let inner = &text[1..text.len().saturating_sub(1)];
        if inner.is_empty() {
            // strconv.UnquoteChar on the closing quote
            return Err("invalid syntax".into());
        }
        let s = unescape(inner, '\'').map_err(|_| format!("malformed character constant: {text}"))?;
        let mut cs = s.chars();
        let (Some(c), None) = (cs.next(), cs.next()) else {
            return Err(format!("malformed character constant: {text}"));
        };
        let v = c as i64;
        n.is_int = true;
        n.int = v;
        n.is_uint = true;
        n.uint = v as u64;
        n.is_float = true;
        n.float = v as f64;
        return Ok(n);
    }
    if let Some(body) = text.strip_suffix('i') {
        // `1+2i` or an imaginary constant `2i`
        let split = body
            .char_indices()
            .skip(1)
            .filter(|(_, c)| *c == '+' || *c == '-')
            .filter(|(k, _)| !matches!(body.as_bytes()[k - 1], b'e' | b'E' | b'p' | b'P'))
            .map(|(k, _)| k)
            .last();
        let (re, im) = match split {
            Some(k) => (body[..k].replace('_', "").parse::<f64>().ok(), body[k..].replace('_', "").parse::<f64>().ok()),
            None => (Some(0.0), body.replace('_', "").parse::<f64>().ok()),
        };
        let (Some(re), Some(im)) = (re, im) else {
            return Err(format!("illegal number syntax: {}", super::fmt::go_quote(text)));
        };
        n.is_complex = true;
        n.complex = (re, im);
        if im == 0.0 {
            n.is_float = true;
            n.float = re;
            if re == re.trunc() && re.abs() < 9.2e18 {
                n.is_int = true;
                n.int = re as i64;
            }
        }
        return Ok(n);
    }
    // Go's underscoreOK: `_` only between digits (or right after a base prefix)
    if text.contains('_') {
        let b = text.trim_start_matches(['+', '-']).as_bytes();
        let hex = b.len() > 1 && b[0] == b'0' && matches!(b[1], b'x' | b'X');
        let ok = b.iter().enumerate().all(|(k, &c)| {
            if c != b'_' {
                return true;
            }
            let digit = |x: u8| x.is_ascii_digit() || hex && x.is_ascii_hexdigit();
            let prev_ok = k > 0 && (digit(b[k - 1]) || (k == 2 && b[0] == b'0' && matches!(b[1], b'x' | b'X' | b'o' | b'O' | b'b' | b'B')));
            prev_ok && b.get(k + 1).is_some_and(|&x| digit(x))
        });
        if !ok {
            return Err(format!("illegal number syntax: {}", super::fmt::go_quote(text)));
        }
    }
    let clean: String = text.replace('_', "");
    let (neg, body) = if let Some(r) = clean.strip_prefix('-') {
        (true, r.to_string())
    } else if let Some(r) = clean.strip_prefix('+') {
        (false, r.to_string())
    } else {
        (false, clean.clone())
    };
    let lower = body.to_ascii_lowercase();
    let parse_u = |b: &str| -> Option<u64> {
        if let Some(h) = b.strip_prefix("0x") {
            u64::from_str_radix(h, 16).ok()
        } else if let Some(o) = b.strip_prefix("0o") {
            u64::from_str_radix(o, 8).ok()
        } else if let Some(bb) = b.strip_prefix("0b") {
            u64::from_str_radix(bb, 2).ok()
        } else if b.len() > 1 && b.starts_with('0') && b.chars().all(|c| c.is_ascii_digit()) {
            u64::from_str_radix(&b[1..], 8).ok()
        } else if b.chars().all(|c| c.is_ascii_digit()) && !b.is_empty() {
            b.parse().ok()
        } else {
            None
        }
    };
    if let Some(u) = parse_u(&lower) {
        if !neg {
            n.is_uint = true;
            n.uint = u;
        }
        if neg {
            if u <= (i64::MAX as u64) + 1 {
                n.is_int = true;
                n.int = -(u as i128) as i64;
            }
        } else if u <= i64::MAX as u64 {
            n.is_int = true;
            n.int = u as i64;
        }
    }
    if n.is_int {
        n.is_float = true;
        n.float = n.int as f64;
    } else if n.is_uint {
        n.is_float = true;
        n.float = n.uint as f64;
    } else {
        let is_hex = lower.starts_with("0x");
        let f = if is_hex {
            parse_hex_float(&lower)
        } else {
            lower.parse::<f64>().ok().filter(|_| !lower.is_empty() && !lower.contains("inf") && !lower.contains("nan"))
        };
        if let Some(mut f) = f {
            if neg {
                f = -f;
            }
            if !f.is_infinite() {
                // Go's newNumber: a float parse of integer syntax is an int too big to fit
                if !is_hex && !lower.contains(['.', 'e']) {
                    return Err(format!("integer overflow: {}", super::fmt::go_quote(text)));
                }
                n.is_float = true;
                n.float = f;
                if f == f.trunc() && f.abs() < 9.3e18 {
                    n.is_int = true;
                    n.int = f as i64;
                }
                if f == f.trunc() && (0.0..1.8e19).contains(&f) {
                    n.is_uint = true;
                    n.uint = f as u64;
                }
            }
        }
    }
    if !n.is_int && !n.is_uint && !n.is_float {
        return Err(format!("illegal number syntax: {}", super::fmt::go_quote(text)));
    }
    Ok(n)
}

fn parse_hex_float(s: &str) -> Option<f64> {
    let h = s.strip_prefix("0x")?;
    let (mant, exp) = match h.split_once('p') {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => return None,
    };
    let (ip, fp) = mant.split_once('.').unwrap_or((mant, ""));
    let mut v = 0f64;
    for c in ip.chars() {
        v = v * 16.0 + c.to_digit(16)? as f64;
    }
    let mut scale = 1.0 / 16.0;
    for c in fp.chars() {
        v += c.to_digit(16)? as f64 * scale;
        scale /= 16.0;
    }
    Some(v * 2f64.powi(exp))
}

/// Column (0-based byte offset in its line) and 1-based line of `pos` in `text`.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text[..pos];
    let line = 1 + before.matches('\n').count();
    let col = match before.rfind('\n') {
        Some(i) => pos - (i + 1),
        None => pos,
    };
    (line, col)
}

/// All trees of a template set, by name.
pub type TreeSet = HashMap<String, Rc<Tree>>;
