//! Harmony's limits on the work of one render: charts are tenant input, and Helm bounds
//! almost nothing (`include` recursion, go-yaml's alias expansion): a template can loop a
//! trillion times, `repeat` a string to gigabytes, or serialise a list that holds itself
//! twice sixty levels deep. One [`Budget`] covers every template of a release:
//!
//! * **steps** ([`MAX_STEPS`]): every node executed, pipeline command evaluated and `range`
//!   iteration;
//! * **bytes** ([`MAX_BYTES`]): every byte of template output, every byte of string passed to
//!   or returned by a function, 16 per list or map element a function returns, and the full
//!   (shared parts counted each time they occur) size of what a serialising or deep-walking
//!   function (`toYaml`, `printf`, `join`, `deepCopy`, …) reads. Functions whose output can
//!   be far larger than their input (`repeat`, `indent`, `until`, `replace`, `printf` widths,
//!   `randAlpha`, …) check the size they would produce *before* allocating it.
//!
//! Both limits are far above what real charts use (the conformance corpus's largest render
//! uses under 1 % of each; docs/helm-compatibility.md#limits), so they never change the output
//! of a chart that renders; a chart that exceeds one fails with an error naming the template,
//! the line and the limit, like any template error.

use crate::value::Value;

/// Steps (nodes executed, commands evaluated, `range` iterations) one render may take.
pub const MAX_STEPS: u64 = 10_000_000;

/// Bytes of output and function traffic one render may produce (see the module docs).
pub const MAX_BYTES: u64 = 256 << 20;

/// What one list or map element counts for.
const ELEMENT: u64 = 16;

/// The work done so far by one render.
#[derive(Debug, Default)]
pub struct Budget {
    steps: u64,
    bytes: u64,
}

/// Where a limit's error sends the reader.
const SEE: &str = "see docs/helm-compatibility.md#limits";

impl Budget {
    /// One step.
    pub fn step(&mut self) -> Result<(), String> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(format!(
                "render limit exceeded: more than {MAX_STEPS} template steps (actions, function calls, range iterations) in one release ({SEE})"
            ));
        }
        Ok(())
    }

    /// Counts `n` bytes of work.
    pub fn charge(&mut self, n: u64) -> Result<(), String> {
        self.check(n)?;
        self.bytes += n;
        Ok(())
    }

    /// Fails if producing `n` more bytes would exceed the budget (charges nothing).
    pub fn check(&self, n: u64) -> Result<(), String> {
        if n > MAX_BYTES.saturating_sub(self.bytes) {
            return Err(format!(
                "render limit exceeded: more than {} MiB of template output and function data in one release ({SEE})",
                MAX_BYTES >> 20
            ));
        }
        Ok(())
    }

    /// Fails unless `count` elements of `each` bytes fit (checked arithmetic: counts come
    /// from templates).
    pub fn check_elements(&self, count: u128, each: u64) -> Result<(), String> {
        self.check(u64::try_from(count.saturating_mul(u128::from(each.max(1)))).unwrap_or(u64::MAX))
    }

    /// Counts a value's full size (see [`deep_size`]).
    pub fn charge_deep(&mut self, v: &Value) -> Result<(), String> {
        let remaining = MAX_BYTES.saturating_sub(self.bytes);
        self.charge(deep_size(v, remaining))
    }

    /// Steps and bytes used so far.
    pub fn used(&self) -> (u64, u64) {
        (self.steps, self.bytes)
    }

    /// What a function call costs before it runs: the strings it reads and, for functions
    /// that walk or serialise whole values, their full size.
    pub fn charge_args(&mut self, func: &str, args: &[Value]) -> Result<(), String> {
        if is_costly(func) {
            self.charge(COSTLY)?;
        }
        if walks_whole_values(func) {
            for a in args {
                self.charge_deep(a)?;
            }
            return Ok(());
        }
        for a in args {
            if let Value::Str(s) = a {
                self.charge(s.len() as u64)?;
            }
        }
        Ok(())
    }

    /// What a function's result costs: its string bytes, or its elements.
    pub fn charge_result(&mut self, v: &Value) -> Result<(), String> {
        self.charge(shallow_size(v))
    }
}

/// What one key generation or password hash counts for: its CPU time is that of copying
/// megabytes, so a render makes at most a few hundred.
const COSTLY: u64 = 2 << 20;

/// Key generation and deliberately slow password hashing.
fn is_costly(func: &str) -> bool {
    matches!(
        func,
        "bcrypt"
            | "htpasswd"
            | "derivePassword"
            | "genPrivateKey"
            | "genCA"
            | "genCAWithKey"
            | "genSelfSignedCert"
            | "genSelfSignedCertWithKey"
            | "genSignedCert"
            | "genSignedCertWithKey"
    )
}

/// Functions whose work is proportional to the full size of their arguments.
fn walks_whole_values(func: &str) -> bool {
    matches!(
        func,
        "toYaml"
            | "mustToYaml"
            | "toYamlPretty"
            | "toJson"
            | "mustToJson"
            | "toPrettyJson"
            | "mustToPrettyJson"
            | "toRawJson"
            | "mustToRawJson"
            | "toToml"
            | "mustToToml"
            | "printf"
            | "print"
            | "println"
            | "cat"
            | "quote"
            | "squote"
            | "join"
            | "toString"
            | "toStrings"
            | "sortAlpha"
            | "deepCopy"
            | "mustDeepCopy"
            | "deepEqual"
            | "merge"
            | "mustMerge"
            | "mergeOverwrite"
            | "mustMergeOverwrite"
            | "uniq"
            | "mustUniq"
            | "has"
            | "mustHas"
            | "without"
            | "mustWithout"
            | "eq"
            | "ne"
    )
}

/// A value's own size: the bytes of a string, 16 per element of a list or map, 1 otherwise.
pub fn shallow_size(v: &Value) -> u64 {
    match v {
        Value::Str(s) => s.len() as u64,
        Value::List(l, _) => ELEMENT.saturating_mul(l.len() as u64),
        Value::Map(m) => m.try_borrow().map_or(ELEMENT, |m| ELEMENT.saturating_mul(m.len() as u64)),
        _ => 1,
    }
}

/// How deep the encoders go before they report a cycle (`encountered a cycle via …`, as
/// Go's `encoding/json` does after 1,000 levels): [`deep_size`] stops there too, leaving
/// the error to them.
const ENCODER_DEPTH: usize = 1000;

/// A value's full size: 16 per node plus the bytes of its strings, counting what it shares
/// as many times as it occurs (that is what serialising it costs). Walks depth first in
/// order, as the encoders do, and stops at their depth limit or once past `cap`, so a value
/// that holds itself, or doubles at each of sixty levels, is measured in at most `cap` steps.
pub fn deep_size(v: &Value, cap: u64) -> u64 {
    let mut total: u64 = 0;
    let mut stack: Vec<(Value, usize)> = vec![(v.clone(), 0)];
    while let Some((v, depth)) = stack.pop() {
        if depth > ENCODER_DEPTH {
            return total;
        }
        total = total.saturating_add(ELEMENT);
        match &v {
            Value::Str(s) => total = total.saturating_add(s.len() as u64),
            Value::List(l, _) => stack.extend(l.iter().rev().map(|x| (x.clone(), depth + 1))),
            Value::Map(m) => {
                if let Ok(m) = m.try_borrow() {
                    for (k, x) in m.iter().rev() {
                        total = total.saturating_add(k.len() as u64);
                        stack.push((x.clone(), depth + 1));
                    }
                }
            }
            // `.Files`, `.Capabilities`, times: opaque to merging and copying; what
            // serialising one produces is charged as the function's result
            _ => {}
        }
        if total > cap {
            return total;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_size_stops_on_shared_and_cyclic_values() {
        let mut v = Value::list(vec![Value::from("x")]);
        for _ in 0..60 {
            v = Value::list(vec![v.clone(), v]);
        }
        assert!(deep_size(&v, 1 << 20) > 1 << 20);
        // a map holding itself is left to the encoders' cycle error
        let m = Value::empty_map();
        if let Value::Map(inner) = &m {
            inner.borrow_mut().insert("self".into(), m.clone());
        }
        assert!(deep_size(&m, u64::MAX) < 1 << 16);
        assert_eq!(deep_size(&Value::from("abc"), 1000), 16 + 3);
    }

    #[test]
    fn limits_name_themselves() {
        let mut b = Budget::default();
        assert!(b.charge(MAX_BYTES).is_ok());
        let e = b.charge(1).unwrap_err();
        assert!(e.contains("render limit exceeded") && e.contains("256 MiB"), "{e}");
        let b = Budget::default();
        assert!(b.check_elements(u128::MAX, 16).is_err());
    }
}
