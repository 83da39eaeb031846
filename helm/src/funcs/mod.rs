//! The function map: Go's builtins, Sprig's functions and Helm's own, each with the Go
//! signature that decides how `text/template` converts (or rejects) its arguments.

pub mod builtins;
pub mod convert;
pub mod helm;
pub mod objects;
pub mod sprig_crypto;
pub mod sprig_dicts;
pub mod sprig_lists;
pub mod sprig_math;
pub mod sprig_misc;
pub mod sprig_strings;
pub mod time;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::OnceLock;

use crate::template::{TemplateError, TemplateSet};
use crate::value::{SliceTy, Value};

/// Marks a `required`/`fail` message (Helm's `warnWrap`).
pub const WARN_START: &str = "HELM_ERR_START";
/// End marker of a `required`/`fail` message.
pub const WARN_END: &str = "HELM_ERR_END";

/// A Go parameter type, as far as argument conversion cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// `interface{}`
    Any,
    /// `reflect.Value` (Go's own builtins)
    RValue,
    /// `string`
    Str,
    /// `int`
    Int,
    /// `int64`
    Int64,
    /// `uint32` etc.
    Uint,
    /// `float64`
    Float,
    /// `bool`
    Bool,
    /// `[]interface{}`
    List,
    /// `map[string]interface{}`
    Map,
    /// `[]string`
    Strs,
    /// `time.Time`
    Time,
    /// Sprig's `certificate` struct
    Cert,
}

impl Ty {
    /// Go's name for the type.
    pub fn go_name(self) -> &'static str {
        match self {
            Ty::Any => "interface {}",
            Ty::RValue => "reflect.Value",
            Ty::Str => "string",
            Ty::Int => "int",
            Ty::Int64 => "int64",
            Ty::Uint => "uint32",
            Ty::Float => "float64",
            Ty::Bool => "bool",
            Ty::List => "[]interface {}",
            Ty::Map => "map[string]interface {}",
            Ty::Strs => "[]string",
            Ty::Time => "time.Time",
            Ty::Cert => "sprig.certificate",
        }
    }
}

/// Go's `validateType`: checks a computed value against a parameter type.
pub fn validate_type(v: Value, ty: Ty) -> Result<Value, String> {
    match (&v, ty) {
        (Value::Invalid, Ty::Any) => Ok(Value::Nil),
        (Value::Invalid, Ty::RValue) => Ok(Value::Invalid),
        (Value::Invalid, Ty::List | Ty::Map | Ty::Strs) => Ok(Value::Nil),
        (Value::Invalid, t) => Err(format!("invalid value; expected {}", t.go_name())),
        (_, Ty::Any | Ty::RValue) => Ok(v),
        (Value::Map(m), Ty::Map) if crate::value::map_type_name(m) == "map[string]string" => {
            Err("wrong type for value; expected map[string]interface {}; got map[string]string".to_string())
        }
        (Value::Str(_), Ty::Str)
        | (Value::Int(_), Ty::Int)
        | (Value::Int64(_), Ty::Int64)
        | (Value::Float(_), Ty::Float)
        | (Value::Bool(_), Ty::Bool)
        | (Value::Map(_), Ty::Map)
        | (Value::List(_, SliceTy::Iface | SliceTy::NilIface), Ty::List)
        | (Value::List(_, SliceTy::Str | SliceTy::NilStr), Ty::Strs) => Ok(v),
        (Value::Object(o), Ty::Time) if o.as_time().is_some() => Ok(v),
        (Value::Object(o), Ty::Cert) if o.type_name() == "sprig.certificate" => Ok(v),
        (Value::Nil, t) => Err(format!("wrong type for value; expected {}; got interface {{}}", t.go_name())),
        (_, t) => Err(format!("wrong type for value; expected {}; got {}", t.go_name(), v.type_name())),
    }
}

/// An error returned by a function.
#[derive(Clone, Debug)]
pub enum FnError {
    /// A plain message.
    Msg(String),
    /// A nested template error (from `include`).
    Nested(Box<TemplateError>),
}

impl FnError {
    /// Go's error text.
    pub fn go_string(&self) -> String {
        match self {
            FnError::Msg(m) => m.clone(),
            FnError::Nested(e) => e.go_string(),
        }
    }
}

impl From<String> for FnError {
    fn from(s: String) -> Self {
        FnError::Msg(s)
    }
}
impl From<&str> for FnError {
    fn from(s: &str) -> Self {
        FnError::Msg(s.to_string())
    }
}

/// Result of a template function.
pub type FResult = Result<Value, FnError>;
/// A template function.
pub type NativeFn = fn(&mut Ctx<'_>, &[Value]) -> FResult;

/// A function with its Go signature.
#[derive(Clone)]
pub struct Func {
    /// Fixed parameters.
    pub params: &'static [Ty],
    /// Variadic parameter type.
    pub variadic: Option<Ty>,
    /// Implementation.
    pub f: NativeFn,
}

/// Name → function.
pub type FuncMap = HashMap<&'static str, Func, BuildFnv>;

/// FNV-1a: function names are short and trusted, so a cheap hash beats SipHash here.
#[derive(Clone, Copy, Default)]
pub struct BuildFnv;

/// FNV-1a state.
pub struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
}

impl std::hash::BuildHasher for BuildFnv {
    type Hasher = Fnv;
    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

/// Injected clock and entropy, so rendering stays deterministic.
pub trait Environment {
    /// Current time as Unix seconds and nanoseconds.
    fn now(&self) -> (i64, u32);
    /// Fills `buf` with random bytes.
    fn fill_random(&self, buf: &mut [u8]);
}

/// A fixed clock and a seeded pseudo-random generator (the default: fully deterministic).
#[derive(Debug)]
pub struct FixedEnvironment {
    /// Unix seconds returned by `now`.
    pub unix: i64,
    state: std::cell::Cell<u64>,
}

impl FixedEnvironment {
    /// A fixed clock at `unix` and a generator seeded with `seed`.
    pub fn new(unix: i64, seed: u64) -> Self {
        FixedEnvironment { unix, state: std::cell::Cell::new(seed ^ 0x9E37_79B9_7F4A_7C15) }
    }
}

impl Default for FixedEnvironment {
    /// 2026-01-01T00:00:00Z and seed 1.
    fn default() -> Self {
        FixedEnvironment::new(1_767_225_600, 1)
    }
}

impl Environment for FixedEnvironment {
    fn now(&self) -> (i64, u32) {
        (self.unix, 0)
    }
    fn fill_random(&self, buf: &mut [u8]) {
        for b in buf {
            // splitmix64
            let mut z = self.state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            self.state.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *b = (z ^ (z >> 31)) as u8;
        }
    }
}

/// Execution context handed to every function.
pub struct Ctx<'a> {
    /// Templates visible to `template`/`include`.
    pub set: Rc<TemplateSet>,
    /// Name of the template set (for Go's "associated with template" errors).
    pub set_name: String,
    /// Functions.
    pub funcs: &'static FuncMap,
    /// Nesting depth of executions.
    pub exec_depth: usize,
    /// `include` recursion counters.
    pub include_counts: HashMap<String, usize>,
    /// Clock and entropy.
    pub env: &'a dyn Environment,
    /// The render's limits ([`crate::budget`]).
    pub budget: crate::budget::Budget,
}

impl Ctx<'_> {
    /// Random bytes from the injected source.
    pub fn random_bytes(&self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.env.fill_random(&mut v);
        v
    }
}

/// Helm's function map (Sprig's `TxtFuncMap` minus `env`/`expandenv`, plus Helm's).
pub fn func_map() -> &'static FuncMap {
    static M: OnceLock<FuncMap> = OnceLock::new();
    M.get_or_init(|| {
        let mut m = FuncMap::default();
        builtins::register(&mut m);
        sprig_strings::register(&mut m);
        sprig_lists::register(&mut m);
        sprig_dicts::register(&mut m);
        sprig_math::register(&mut m);
        sprig_misc::register(&mut m);
        sprig_crypto::register(&mut m);
        time::register(&mut m);
        helm::register(&mut m);
        m
    })
}

/// Registers a function.
pub fn reg(m: &mut FuncMap, name: &'static str, params: &'static [Ty], variadic: Option<Ty>, f: NativeFn) {
    m.insert(name, Func { params, variadic, f });
}

/// The string in a `Str` argument (already type-checked).
pub fn s(v: &Value) -> &str {
    match v {
        Value::Str(s) => s,
        _ => "",
    }
}

/// The integer in an `Int`/`Int64` argument.
pub fn i(v: &Value) -> i64 {
    match v {
        Value::Int(i) | Value::Int64(i) => *i,
        Value::Uint(u) => *u as i64,
        Value::Float(f) => *f as i64,
        _ => 0,
    }
}

/// The bool in a `Bool` argument.
pub fn b(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}

/// Shorthand for a string result.
pub fn ok_str(s: impl Into<String>) -> FResult {
    Ok(Value::Str(s.into().into()))
}
