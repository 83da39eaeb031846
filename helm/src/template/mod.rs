//! Go's `text/template`, ported: [`lex`] → [`parse`] → [`exec`], with Go's `fmt` in
//! [`fmt`]. Errors keep Go's texts so Helm's error messages can be reproduced byte for byte.

pub mod exec;
pub mod fmt;
pub mod lex;
pub mod parse;

pub use exec::{TemplateSet, execute};
pub use parse::ParseError;

use crate::funcs::FnError;

/// An execution error (Go's `template.ExecError`).
#[derive(Clone, Debug)]
pub struct ExecError {
    /// Name of the template being executed.
    pub name: String,
    /// `FILE:LINE:COL` of the node.
    pub loc: String,
    /// The node, as Go prints it.
    pub node: String,
    /// Message (empty when `call` is set).
    pub msg: String,
    /// `error calling FUNC: CAUSE`.
    pub call: Option<(String, FnError)>,
}

/// Any error rendering a template.
#[derive(Clone, Debug)]
pub enum TemplateError {
    /// Parse error.
    Parse(ParseError),
    /// Execution error.
    Exec(Box<ExecError>),
    /// Other errors (e.g. unknown template in `include`).
    Plain(String),
}

impl ExecError {
    fn message_go(&self) -> String {
        match &self.call {
            Some((f, cause)) => format!("error calling {f}: {}", cause.go_string()),
            None => self.msg.clone(),
        }
    }
    /// Go's `err.Error()`.
    pub fn go_string(&self) -> String {
        stacker::maybe_grow(64 * 1024, 2 * 1024 * 1024, || {
            format!("template: {}: executing {} at <{}>: {}", self.loc, fmt::go_quote(&self.name), self.node, self.message_go())
        })
    }

    /// Helm v4's reformatted multi-line form.
    fn helm_string(&self) -> String {
        stacker::maybe_grow(64 * 1024, 2 * 1024 * 1024, || self.helm_string_inner())
    }

    /// Whether Helm's reformatting understands every error in the chain: its regexes match an
    /// execution error without a function call, or `include` wrapping such an error; any other
    /// `error calling F: …` link makes Helm return Go's one-line error
    /// (helm pkg/engine/engine.go, reformatExecErrorMsg).
    fn helm_reformats(&self) -> bool {
        match &self.call {
            None => true,
            Some((f, FnError::Nested(inner))) if f == "include" => match inner.as_ref() {
                TemplateError::Exec(e) => e.helm_reformats(),
                _ => true,
            },
            Some(_) => false,
        }
    }

    fn helm_string_inner(&self) -> String {
        if !self.helm_reformats() {
            return self.go_string();
        }
        match &self.call {
            Some((f, FnError::Nested(inner))) if f == "include" => {
                format!("{}\n  executing {} at <{}>:\n    error calling include:\n{}", self.loc, fmt::go_quote(&self.name), self.node, inner.helm_inner())
            }
            Some(_) => self.go_string(),
            None => format!("{}\n  executing {} at <{}>:\n    {}", self.loc, fmt::go_quote(&self.name), self.node, self.msg),
        }
    }
}

impl TemplateError {
    /// Go's `err.Error()`.
    pub fn go_string(&self) -> String {
        match self {
            TemplateError::Parse(p) => p.to_string(),
            TemplateError::Exec(e) => e.go_string(),
            TemplateError::Plain(s) => s.clone(),
        }
    }

    fn helm_inner(&self) -> String {
        match self {
            TemplateError::Exec(e) => e.helm_string(),
            other => other.go_string(),
        }
    }

    /// The message Helm v4 reports for this error when rendering template `file`.
    pub fn helm_message(&self) -> String {
        match self {
            TemplateError::Parse(p) => {
                let full = p.to_string();
                let tokens: Vec<&str> = full.split(": ").collect();
                if tokens.len() == 1 {
                    return format!("parse error in ({}): {}", p.name, full);
                }
                format!("parse error at ({}): {}", tokens[1], tokens[tokens.len() - 1])
            }
            TemplateError::Exec(e) => {
                let full = e.go_string();
                if let (Some(a), Some(b)) = (full.find(crate::funcs::WARN_START), full.rfind(crate::funcs::WARN_END))
                    && a < b
                {
                    let msg = &full[a + crate::funcs::WARN_START.len()..b];
                    return format!("execution error at ({}): {}", e.loc, msg);
                }
                // Helm leaves the include recursion-limit error in Go's one-line form.
                if full.contains("rendering template has a nested reference name") {
                    return full;
                }
                e.helm_string()
            }
            TemplateError::Plain(s) => s.clone(),
        }
    }
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.helm_message())
    }
}

impl std::error::Error for TemplateError {}
