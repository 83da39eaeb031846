//! Sprig's math functions. The `*f` functions use shopspring/decimal arithmetic in Sprig, so
//! `addf 0.1 0.2` is `0.3`; a small decimal type reproduces that.

use super::convert::{to_float64, to_int64};
use super::{FuncMap, Ty, i, reg};
use crate::value::Value;

use Ty::*;

#[derive(Clone, Copy, Debug)]
struct Dec {
    mant: i128,
    exp: i32,
}

impl Dec {
    fn from_f64(f: f64) -> Option<Dec> {
        if !f.is_finite() {
            return None;
        }
        if f == 0.0 {
            return Some(Dec { mant: 0, exp: 0 });
        }
        let s = format!("{:e}", f);
        let (m, e) = s.split_once('e')?;
        let e: i32 = e.parse().ok()?;
        let neg = m.starts_with('-');
        let m = m.trim_start_matches('-');
        let (ip, fp) = m.split_once('.').unwrap_or((m, ""));
        let digits = format!("{ip}{fp}");
        let mant: i128 = digits.parse().ok()?;
        Some(Dec { mant: if neg { -mant } else { mant }, exp: e - fp.len() as i32 })
    }
    fn align(a: Dec, b: Dec) -> Option<(i128, i128, i32)> {
        let e = a.exp.min(b.exp);
        let am = a.mant.checked_mul(10i128.checked_pow((a.exp - e) as u32)?)?;
        let bm = b.mant.checked_mul(10i128.checked_pow((b.exp - e) as u32)?)?;
        Some((am, bm, e))
    }
    fn add(a: Dec, b: Dec) -> Option<Dec> {
        let (x, y, e) = Dec::align(a, b)?;
        Some(Dec { mant: x.checked_add(y)?, exp: e })
    }
    fn sub(a: Dec, b: Dec) -> Option<Dec> {
        let (x, y, e) = Dec::align(a, b)?;
        Some(Dec { mant: x.checked_sub(y)?, exp: e })
    }
    fn mul(a: Dec, b: Dec) -> Option<Dec> {
        Some(Dec { mant: a.mant.checked_mul(b.mant)?, exp: a.exp + b.exp })
    }
    fn div(a: Dec, b: Dec) -> Option<Dec> {
        // rounded to 16 fractional digits, half away from zero
        let shift = a.exp - b.exp + 16;
        let (num, den) = if shift >= 0 {
            (a.mant.checked_mul(10i128.checked_pow(shift as u32)?)?, b.mant)
        } else {
            (a.mant, b.mant.checked_mul(10i128.checked_pow((-shift) as u32)?)?)
        };
        let q = num / den;
        let r = num % den;
        let q = if (r.abs() * 2) >= den.abs() { q + if (num < 0) != (den < 0) { -1 } else { 1 } } else { q };
        Some(Dec { mant: q, exp: -16 })
    }
    fn to_f64(self) -> f64 {
        format!("{}e{}", self.mant, self.exp).parse().unwrap_or(0.0)
    }
}

fn dec_op(a: f64, b: f64, op: fn(Dec, Dec) -> Option<Dec>, fallback: fn(f64, f64) -> f64) -> f64 {
    match (Dec::from_f64(a), Dec::from_f64(b)) {
        (Some(x), Some(y)) => op(x, y).map(Dec::to_f64).unwrap_or_else(|| fallback(a, b)),
        _ => fallback(a, b),
    }
}

fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a > b {
        a
    } else if b > a {
        b
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { b } else { a }
    } else {
        a
    }
}
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a < b {
        a
    } else if b < a {
        b
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else {
        a
    }
}

pub fn register(m: &mut FuncMap) {
    reg(m, "add1", &[Any], None, |_, a| Ok(Value::Int64(to_int64(&a[0]).wrapping_add(1))));
    reg(m, "add", &[], Some(Any), |_, a| Ok(Value::Int64(a.iter().fold(0i64, |acc, v| acc.wrapping_add(to_int64(v))))));
    reg(m, "sub", &[Any, Any], None, |_, a| Ok(Value::Int64(to_int64(&a[0]).wrapping_sub(to_int64(&a[1])))));
    reg(m, "mul", &[Any], Some(Any), |_, a| Ok(Value::Int64(a[1..].iter().fold(to_int64(&a[0]), |acc, v| acc.wrapping_mul(to_int64(v))))));
    reg(m, "div", &[Any, Any], None, |_, a| {
        let d = to_int64(&a[1]);
        if d == 0 {
            return Err("runtime error: integer divide by zero".into());
        }
        Ok(Value::Int64(to_int64(&a[0]).wrapping_div(d)))
    });
    reg(m, "mod", &[Any, Any], None, |_, a| {
        let d = to_int64(&a[1]);
        if d == 0 {
            return Err("runtime error: integer divide by zero".into());
        }
        Ok(Value::Int64(to_int64(&a[0]).wrapping_rem(d)))
    });
    for name in ["max", "biggest"] {
        reg(m, name, &[Any], Some(Any), |_, a| Ok(Value::Int64(a[1..].iter().map(to_int64).fold(to_int64(&a[0]), i64::max))));
    }
    reg(m, "min", &[Any], Some(Any), |_, a| Ok(Value::Int64(a[1..].iter().map(to_int64).fold(to_int64(&a[0]), i64::min))));
    reg(m, "maxf", &[Any], Some(Any), |_, a| Ok(Value::Float(a[1..].iter().map(to_float64).fold(to_float64(&a[0]), go_max))));
    reg(m, "minf", &[Any], Some(Any), |_, a| Ok(Value::Float(a[1..].iter().map(to_float64).fold(to_float64(&a[0]), go_min))));
    reg(m, "add1f", &[Any], None, |_, a| Ok(Value::Float(dec_op(to_float64(&a[0]), 1.0, Dec::add, |x, y| x + y))));
    reg(m, "addf", &[], Some(Any), |_, a| Ok(Value::Float(a.iter().map(to_float64).fold(0.0, |acc, v| dec_op(acc, v, Dec::add, |x, y| x + y)))));
    reg(m, "subf", &[Any], Some(Any), |_, a| {
        Ok(Value::Float(a[1..].iter().map(to_float64).fold(to_float64(&a[0]), |acc, v| dec_op(acc, v, Dec::sub, |x, y| x - y))))
    });
    reg(m, "mulf", &[Any], Some(Any), |_, a| {
        Ok(Value::Float(a[1..].iter().map(to_float64).fold(to_float64(&a[0]), |acc, v| dec_op(acc, v, Dec::mul, |x, y| x * y))))
    });
    reg(m, "divf", &[Any], Some(Any), |_, a| {
        let mut acc = to_float64(&a[0]);
        for v in &a[1..] {
            let d = to_float64(v);
            if d == 0.0 {
                return Err("decimal division by 0".into());
            }
            acc = dec_op(acc, d, Dec::div, |x, y| x / y);
        }
        Ok(Value::Float(acc))
    });
    reg(m, "ceil", &[Any], None, |_, a| Ok(Value::Float(to_float64(&a[0]).ceil())));
    reg(m, "floor", &[Any], None, |_, a| Ok(Value::Float(to_float64(&a[0]).floor())));
    reg(m, "round", &[Any, Int], Some(Float), |_, a| {
        let round_on = a.get(2).map(to_float64).unwrap_or(0.5);
        let val = to_float64(&a[0]);
        let pow = 10f64.powf(i(&a[1]) as f64);
        let digit = pow * val;
        let frac = digit - digit.trunc();
        let r = if frac >= round_on { digit.ceil() } else { digit.floor() };
        Ok(Value::Float(r / pow))
    });
    reg(m, "randInt", &[Int, Int], None, |c, a| {
        let (lo, hi) = (i(&a[0]), i(&a[1]));
        let n = hi - lo;
        if n <= 0 {
            return Err("invalid argument to Intn".into());
        }
        let r = c.random_bytes(8);
        let x = u64::from_le_bytes([r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]]) % n as u64;
        Ok(Value::Int(lo + x as i64))
    });
    reg(m, "int", &[Any], None, |_, a| Ok(Value::Int(to_int64(&a[0]))));
    reg(m, "int64", &[Any], None, |_, a| Ok(Value::Int64(to_int64(&a[0]))));
    reg(m, "float64", &[Any], None, |_, a| Ok(Value::Float(to_float64(&a[0]))));
}
