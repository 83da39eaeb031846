//! The dynamic values templates work on, modelled on the Go types Helm's engine sees.
//!
//! Go's `text/template` is reflective: what a function accepts, how a value prints and
//! which error a mismatch gives all depend on the Go type. [`Value`] therefore keeps the Go
//! type distinctions that show up in output: `int` vs `int64` vs `float64`, a nil
//! `interface{}` ([`Value::Nil`]) vs "no value" ([`Value::Invalid`]), `[]interface{}` vs
//! `[]string`, and maps (shared and mutable, as Go maps are references: Sprig's `set`
//! mutates in place and charts rely on it).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

/// A Go `map[string]interface{}`: shared, mutable, iterated in key order.
pub type Map = Rc<RefCell<BTreeMap<String, Value>>>;

/// The Go element type of a slice value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SliceTy {
    /// `[]interface {}`
    Iface,
    /// `[]string`
    Str,
    /// `[]int`
    Int,
    /// `[]uint8` (`[]byte`)
    Byte,
    /// `[][]interface {}`
    Lists,
    /// a nil `[]interface {}` (Sprig's `rest`/`initial` of an empty list, `fromJsonArray "null"`):
    /// empty, but `null` to `toJson`/`toYaml`
    NilIface,
    /// a nil `[]string` (`regexFindAll` without a match, `regexSplit` with n = 0)
    NilStr,
}

impl SliceTy {
    /// The element type without the nil mark: what a function building a new slice returns.
    pub fn non_nil(self) -> SliceTy {
        match self {
            SliceTy::NilIface => SliceTy::Iface,
            SliceTy::NilStr => SliceTy::Str,
            t => t,
        }
    }
}

/// Objects with Go struct semantics (`.Chart`, `.Capabilities`, `.Files`, times, ...).
pub trait Object: std::fmt::Debug {
    /// Go type name as `%T` prints it, e.g. `*chart.Metadata`.
    fn type_name(&self) -> String;
    /// A field or zero-argument method.
    fn field(&self, name: &str) -> Option<Value>;
    /// Whether `name` is a method (which may take arguments).
    fn has_method(&self, _name: &str) -> bool {
        false
    }
    /// Calls a method with arguments.
    fn call(&self, name: &str, _args: &[Value]) -> Result<Value, String> {
        Err(format!("can't call method {name}"))
    }
    /// `%v` rendering.
    fn format(&self) -> String;
    /// Rendering when printed by a template (Stringer); defaults to `format`.
    fn display(&self) -> String {
        self.format()
    }
    /// JSON form (for toJson/toYaml).
    fn to_json(&self) -> Value {
        Value::Map(Rc::new(RefCell::new(BTreeMap::new())))
    }
    /// The exported fields in declaration order, for a struct that `encoding/json` writes as an
    /// object in that order (`toJson`); `None` when [`Object::to_json`] says it all.
    fn json_fields(&self) -> Option<Vec<(&'static str, Value)>> {
        None
    }
    /// Used by sprig functions that want a time.
    fn as_time(&self) -> Option<crate::funcs::time::Time> {
        None
    }
    /// Key/value pairs when the object ranges like a map (`.Files`).
    fn entries(&self) -> Option<Vec<(String, Value)>> {
        None
    }
    /// Kind as reflect prints it.
    fn kind(&self) -> &'static str {
        "ptr"
    }
    /// For a struct value (not a pointer): its fields in declaration order, unexported ones
    /// included, as Go's `fmt` walks them (`%+v` names them, a bad verb reaches each field).
    fn struct_fields(&self) -> Option<Vec<(&'static str, Value)>> {
        None
    }
    /// For a slice or map type: the same data as a plain list or map, which `fmt` prints
    /// element by element (a bad verb reaches each element).
    fn as_plain(&self) -> Option<Value> {
        None
    }
}

/// A template value.
#[derive(Clone, Debug)]
pub enum Value {
    /// No value at all (Go's invalid `reflect.Value`); prints `<no value>`.
    Invalid,
    /// A nil `interface{}`.
    Nil,
    /// `bool`
    Bool(bool),
    /// `int`
    Int(i64),
    /// `int64`
    Int64(i64),
    /// `uint64` / `uint`
    Uint(u64),
    /// `float64`
    Float(f64),
    /// `complex128` (only from template literals such as `1+2i`)
    Complex(f64, f64),
    /// `string`
    Str(Rc<str>),
    /// A slice.
    List(Rc<Vec<Value>>, SliceTy),
    /// `map[string]interface{}`
    Map(Map),
    /// A Go struct or pointer to one.
    Object(Rc<dyn Object>),
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        use Value::*;
        match (self, other) {
            (Invalid, Invalid) | (Nil, Nil) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) | (Int64(a), Int64(b)) => a == b,
            (Uint(a), Uint(b)) => a == b,
            (Float(a), Float(b)) => a == b,
            (Complex(a, b), Complex(c, d)) => a == c && b == d,
            (Str(a), Str(b)) => a == b,
            (List(a, t), List(b, u)) => t == u && a == b,
            (Map(a), Map(b)) => Rc::ptr_eq(a, b) || *a.borrow() == *b.borrow(),
            (Object(a), Object(b)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.into())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s.into())
    }
}

impl Value {
    /// A new `[]interface{}`.
    pub fn list(v: Vec<Value>) -> Value {
        Value::List(Rc::new(v), SliceTy::Iface)
    }
    /// A new `[]string`.
    pub fn str_list(v: Vec<String>) -> Value {
        Value::List(Rc::new(v.into_iter().map(Value::from).collect()), SliceTy::Str)
    }
    /// A new map.
    pub fn map(m: BTreeMap<String, Value>) -> Value {
        Value::Map(Rc::new(RefCell::new(m)))
    }
    /// An empty map.
    pub fn empty_map() -> Value {
        Value::map(BTreeMap::new())
    }
    /// `string` value.
    pub fn str(s: impl Into<Rc<str>>) -> Value {
        Value::Str(s.into())
    }

    /// Go's `%T`.
    pub fn type_name(&self) -> String {
        match self {
            Value::Invalid | Value::Nil => "<nil>".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Int64(_) => "int64".into(),
            Value::Uint(_) => "uint64".into(),
            Value::Float(_) => "float64".into(),
            Value::Complex(..) => "complex128".into(),
            Value::Str(_) => "string".into(),
            Value::List(_, t) => slice_ty_name(*t).into(),
            Value::Map(m) => map_type_name(m).into(),
            Value::Object(o) => o.type_name(),
        }
    }

    /// reflect Kind name (Sprig's `kindOf`).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Invalid | Value::Nil => "invalid",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Int64(_) => "int64",
            Value::Uint(_) => "uint64",
            Value::Float(_) => "float64",
            Value::Complex(..) => "complex128",
            Value::Str(_) => "string",
            Value::List(..) => "slice",
            Value::Map(_) => "map",
            Value::Object(o) => o.kind(),
        }
    }

    /// Go template truthiness (`text/template.IsTrue`).
    pub fn truthy(&self) -> bool {
        match self {
            Value::Invalid | Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) | Value::Int64(i) => *i != 0,
            Value::Uint(u) => *u != 0,
            Value::Float(f) => *f != 0.0,
            Value::Complex(r, i) => *r != 0.0 || *i != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l, _) => !l.is_empty(),
            Value::Map(m) => !m.borrow().is_empty(),
            // map-kinded objects (`.Files`, Go's engine.files) are empty without entries
            Value::Object(o) => o.entries().is_none_or(|e| !e.is_empty()),
        }
    }

    /// Whether this is nil or invalid.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Invalid | Value::Nil)
    }

    /// The string inside, if a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Deep copy (maps are otherwise shared).
    pub fn deep_copy(&self) -> Value {
        self.deep_copy_depth(0)
    }
    fn deep_copy_depth(&self, d: usize) -> Value {
        if d > 100 {
            return Value::Nil;
        }
        match self {
            Value::List(l, t) => Value::List(Rc::new(l.iter().map(|v| v.deep_copy_depth(d + 1)).collect()), *t),
            Value::Map(m) => {
                let b = m.borrow();
                Value::map(b.iter().map(|(k, v)| (k.clone(), v.deep_copy_depth(d + 1))).collect())
            }
            v => v.clone(),
        }
    }

    /// Go's `fmt.Sprint(v)` / `%v`.
    pub fn fmt_v(&self) -> String {
        let mut s = String::new();
        write_v(&mut s, self, 0, false);
        s
    }

    /// How the template engine prints a value (`<no value>` for invalid, Stringers).
    pub fn print_template(&self) -> String {
        match self {
            Value::Invalid => "<no value>".into(),
            Value::Object(o) => o.display(),
            v => v.fmt_v(),
        }
    }
}

type WeakMap = std::rc::Weak<RefCell<BTreeMap<String, Value>>>;

thread_local! {
    static MAP_TYPES: RefCell<Vec<(WeakMap, &'static str)>> = const { RefCell::new(Vec::new()) };
}

/// Records the Go type of a map that is not a plain `map[string]interface {}`: Helm's named
/// `common.Values` (the top-level scope, `.Values`, `.Template`) or `map[string]string`
/// (`split`), which `typeOf` and type errors report.
pub fn mark_map_type(m: &Map, name: &'static str) {
    MAP_TYPES.with(|n| {
        let mut n = n.borrow_mut();
        n.retain(|(w, _)| w.strong_count() > 0);
        n.push((Rc::downgrade(m), name));
    });
}

/// Marks a map as `common.Values`.
pub fn mark_named_values(m: &Map) {
    mark_map_type(m, "common.Values");
}

/// The Go type name of a map value.
pub fn map_type_name(m: &Map) -> &'static str {
    MAP_TYPES.with(|n| n.borrow().iter().rev().find(|(w, _)| std::ptr::eq(w.as_ptr(), Rc::as_ptr(m))).map(|(_, t)| *t)).unwrap_or("map[string]interface {}")
}

/// Go's name for a slice type.
pub fn slice_ty_name(t: SliceTy) -> &'static str {
    match t {
        SliceTy::Iface | SliceTy::NilIface => "[]interface {}",
        SliceTy::Str | SliceTy::NilStr => "[]string",
        SliceTy::Int => "[]int",
        SliceTy::Byte => "[]uint8",
        SliceTy::Lists => "[][]interface {}",
    }
}

/// Writes `%v` (or `%+v` when `plus`) of `v`. Go prints maps and slices the same for both
/// verbs (only structs differ, and templates hold none), so `plus` is only passed down.
#[allow(clippy::only_used_in_recursion)]
pub fn write_v(out: &mut String, v: &Value, depth: usize, plus: bool) {
    if depth > 64 {
        out.push_str("...");
        return;
    }
    match v {
        Value::Invalid => out.push_str("<invalid reflect.Value>"),
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) | Value::Int64(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Uint(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Float(f) => out.push_str(&format_float_g(*f, -1, 'e')),
        Value::Complex(r, i) => out.push_str(&format_complex(*r, *i, -1, 'e')),
        Value::Str(s) => out.push_str(s),
        Value::List(l, _) => {
            out.push('[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_v(out, e, depth + 1, plus);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push_str("map[");
            let Ok(b) = m.try_borrow() else {
                out.push_str("...]");
                return;
            };
            for (i, (k, e)) in b.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_v(out, e, depth + 1, plus);
            }
            out.push(']');
        }
        Value::Object(o) => out.push_str(&o.format()),
    }
}

/// Go's `%v` of a complex128: `(re+imi)`.
pub fn format_complex(r: f64, i: f64, prec: i32, e: char) -> String {
    let im = format_float_g(i, prec, e);
    let sign = if im.starts_with(['-', '+']) { "" } else { "+" };
    format!("({}{sign}{im}i)", format_float_g(r, prec, e))
}

/// Go's `strconv.FormatFloat(f, 'g', prec, 64)` with `%v` semantics (shortest when prec < 0).
/// `e` is the exponent character ('e' or 'E').
pub fn format_float_g(f: f64, prec: i32, e: char) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    // Obtain decimal digits and exponent.
    let (neg, digits, dp) = decimal_digits(f, if prec < 0 { None } else { Some(prec.max(1) as usize) });
    let mut eprec = if prec < 0 { 6 } else { prec.max(1) as i64 };
    let nd = digits.len() as i64;
    if prec >= 0 && eprec > nd && nd >= dp {
        eprec = nd;
    }
    let exp = dp - 1;
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if exp < -4 || exp >= eprec {
        // %e
        s.push(digits.as_bytes()[0] as char);
        if digits.len() > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push(e);
        if exp < 0 {
            s.push('-');
        } else {
            s.push('+');
        }
        let a = exp.abs();
        if a < 10 {
            s.push('0');
        }
        s.push_str(&a.to_string());
    } else {
        // %f
        if dp <= 0 {
            s.push('0');
            if nd > 0 {
                s.push('.');
                for _ in 0..(-dp) {
                    s.push('0');
                }
                s.push_str(&digits);
            }
        } else if dp >= nd {
            s.push_str(&digits);
            for _ in 0..(dp - nd) {
                s.push('0');
            }
        } else {
            s.push_str(&digits[..dp as usize]);
            s.push('.');
            s.push_str(&digits[dp as usize..]);
        }
    }
    s
}

/// `%v` of a float in Go fmt: shortest 'g' but with the `%v` exponent threshold of 21.
pub fn go_float_v(f: f64) -> String {
    format_float_g(f, -1, 'e')
}

/// strconv.FormatFloat(f, 'g', -1, 64): shortest with exponent threshold 21 as well.
pub fn strconv_g(f: f64) -> String {
    format_float_g(f, -1, 'e')
}

/// Decimal digits of |f| (no leading/trailing zeros) and the decimal point position.
/// With `prec`, rounds to that many significant digits.
pub fn decimal_digits(f: f64, prec: Option<usize>) -> (bool, String, i64) {
    let neg = f.is_sign_negative() && f != 0.0 || (f == 0.0 && f.is_sign_negative());
    let a = f.abs();
    if a == 0.0 {
        return (neg, "0".into(), 1);
    }
    let s = match prec {
        None => format!("{:e}", a),
        Some(p) => format!("{:.*e}", p.saturating_sub(1), a),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (neg, digits, exp + 1)
}
