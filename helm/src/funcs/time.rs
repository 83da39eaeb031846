//! Sprig's date functions over a minimal Go `time.Time` (UTC and fixed offsets only; the
//! clock comes from the injected [`super::Environment`]).

use std::rc::Rc;

use super::{FResult, FuncMap, Ty, ok_str, reg, s};
use crate::value::{Object, Value};

use Ty::*;

/// A Go `time.Time` in UTC or a fixed zone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Time {
    /// Unix seconds.
    pub secs: i64,
    /// Nanoseconds.
    pub nanos: u32,
    /// Zone offset in seconds east of UTC.
    pub offset: i32,
    /// Zone abbreviation, when known.
    pub zone: Option<&'static str>,
}

const MONTHS: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// Days since 1970-01-01 → (year, month 1-12, day).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = (z - era * 146097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since epoch.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u64;
    let mp = if m > 2 { m - 3 } else { m + 9 } as u64;
    let doy = (153 * mp + 2) / 5 + d as u64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe as i64 - 719468
}

impl Time {
    fn local(&self) -> (i64, u32, u32, u32, u32, u32, u32) {
        let t = self.secs.saturating_add(self.offset as i64).clamp(-(1 << 53), 1 << 53);
        let days = t.div_euclid(86400);
        let rem = t.rem_euclid(86400);
        let (y, m, d) = civil_from_days(days);
        let wd = ((days % 7 + 11) % 7) as u32; // 1970-01-01 was Thursday (4)
        (y, m, d, (rem / 3600) as u32, ((rem % 3600) / 60) as u32, (rem % 60) as u32, wd)
    }

    fn zone_name(&self) -> String {
        if let Some(z) = self.zone {
            return z.into();
        }
        if self.offset == 0 {
            "UTC".into()
        } else {
            let o = self.offset;
            let sign = if o < 0 { '-' } else { '+' };
            let a = o.abs();
            // Go's Format prints an unnamed zone (time.Parse's FixedZone("", off)) as -0700
            format!("{sign}{:02}{:02}", a / 3600, (a % 3600) / 60)
        }
    }

    /// Go's `Time.Format`.
    pub fn format(&self, layout: &str) -> String {
        let (y, mo, d, h, mi, sec, wd) = self.local();
        let mut out = String::new();
        let mut rest = layout;
        while !rest.is_empty() {
            let tokens: [(&str, u8); 41] = [
                ("January", 1),
                ("Jan", 2),
                ("Monday", 3),
                ("Mon", 4),
                ("MST", 5),
                ("2006", 6),
                ("2", 7),
                ("_2", 8),
                ("02", 9),
                ("002", 10),
                ("15", 11),
                ("1", 12),
                ("01", 13),
                ("3", 14),
                ("03", 15),
                ("4", 16),
                ("04", 17),
                ("5", 18),
                ("05", 19),
                ("06", 20),
                ("PM", 21),
                ("pm", 22),
                ("Z070000", 23),
                ("Z0700", 24),
                ("Z07:00:00", 25),
                ("Z07:00", 26),
                ("Z07", 27),
                ("-070000", 28),
                ("-0700", 29),
                ("-07:00:00", 30),
                ("-07:00", 31),
                ("-07", 32),
                (".000000000", 33),
                (".000000", 34),
                (".000", 35),
                (".999999999", 36),
                (".999999", 37),
                (".999", 38),
                (".0", 39),
                (".9", 40),
                ("__2", 41),
            ];
            // Fractional seconds (`.000`, `,999`…), keeping the layout's separator (Go's
            // stdFracSecond0/9 with stdSeparator)
            if let Some((digit, n)) = layout_fraction(rest) {
                let ns = format!("{:09}", self.nanos);
                let mut frac = ns[..n.min(9)].to_string();
                if digit == '9' {
                    while frac.ends_with('0') {
                        frac.pop();
                    }
                }
                if !frac.is_empty() {
                    out.push_str(&rest[..1]);
                    out.push_str(&frac);
                }
                rest = &rest[1 + n..];
                continue;
            }
            // Longest match at this position, honouring Go's special cases.
            let mut best: Option<(&str, u8)> = None;
            for (t, code) in tokens {
                if rest.starts_with(t) && best.is_none_or(|(b, _)| t.len() > b.len()) {
                    best = Some((t, code));
                }
            }
            // "Jan" must not be followed by a lowercase letter to count (Go: "Janet" is literal).
            if let Some((t, code)) = best
                && matches!(code, 2 | 4)
                && rest[t.len()..].starts_with(|c: char| c.is_ascii_lowercase())
            {
                best = None;
            }
            let Some((t, code)) = best else {
                let c = rest.chars().next().unwrap_or(' ');
                out.push(c);
                rest = &rest[c.len_utf8()..];
                continue;
            };
            rest = &rest[t.len()..];
            let off = self.offset;
            let fmt_off = |colon: bool, secs: bool, short: bool, z: bool| -> String {
                if z && off == 0 {
                    return "Z".into();
                }
                let sign = if off < 0 { '-' } else { '+' };
                let a = off.abs();
                let (hh, mm, ss) = (a / 3600, (a % 3600) / 60, a % 60);
                let mut s = format!("{sign}{hh:02}");
                if !short {
                    if colon {
                        s.push(':');
                    }
                    s.push_str(&format!("{mm:02}"));
                }
                if secs {
                    if colon {
                        s.push(':');
                    }
                    s.push_str(&format!("{ss:02}"));
                }
                s
            };
            match code {
                1 => out.push_str(MONTHS[mo as usize - 1]),
                2 => out.push_str(&MONTHS[mo as usize - 1][..3]),
                3 => out.push_str(DAYS[wd as usize]),
                4 => out.push_str(&DAYS[wd as usize][..3]),
                5 => out.push_str(&self.zone_name()),
                6 => out.push_str(&format!("{y:04}")),
                7 => out.push_str(&d.to_string()),
                8 => out.push_str(&format!("{d:>2}")),
                9 => out.push_str(&format!("{d:02}")),
                41 => {
                    // Go's stdUnderYearDay: the day of the year padded with spaces to 3
                    let yd = days_from_civil(y, mo, d) - days_from_civil(y, 1, 1) + 1;
                    out.push_str(&format!("{yd:>3}"))
                }
                10 => {
                    let yd = days_from_civil(y, mo, d) - days_from_civil(y, 1, 1) + 1;
                    out.push_str(&format!("{yd:03}"))
                }
                11 => out.push_str(&format!("{h:02}")),
                12 => out.push_str(&mo.to_string()),
                13 => out.push_str(&format!("{mo:02}")),
                14 => out.push_str(&(if h % 12 == 0 { 12 } else { h % 12 }).to_string()),
                15 => out.push_str(&format!("{:02}", if h % 12 == 0 { 12 } else { h % 12 })),
                16 => out.push_str(&mi.to_string()),
                17 => out.push_str(&format!("{mi:02}")),
                18 => out.push_str(&sec.to_string()),
                19 => out.push_str(&format!("{sec:02}")),
                20 => out.push_str(&format!("{:02}", y.rem_euclid(100))),
                21 => out.push_str(if h >= 12 { "PM" } else { "AM" }),
                22 => out.push_str(if h >= 12 { "pm" } else { "am" }),
                23 => out.push_str(&fmt_off(false, true, false, true)),
                24 => out.push_str(&fmt_off(false, false, false, true)),
                25 => out.push_str(&fmt_off(true, true, false, true)),
                26 => out.push_str(&fmt_off(true, false, false, true)),
                27 => out.push_str(&fmt_off(false, false, true, true)),
                28 => out.push_str(&fmt_off(false, true, false, false)),
                29 => out.push_str(&fmt_off(false, false, false, false)),
                30 => out.push_str(&fmt_off(true, true, false, false)),
                31 => out.push_str(&fmt_off(true, false, false, false)),
                32 => out.push_str(&fmt_off(false, false, true, false)),
                33..=35 | 39 => {
                    let n = t.len() - 1;
                    let ns = format!("{:09}", self.nanos);
                    out.push('.');
                    out.push_str(&ns[..n]);
                }
                _ => {
                    let n = t.len() - 1;
                    let ns = format!("{:09}", self.nanos);
                    let mut frac = ns[..n].to_string();
                    while frac.ends_with('0') {
                        frac.pop();
                    }
                    if !frac.is_empty() {
                        out.push('.');
                        out.push_str(&frac);
                    }
                }
            }
        }
        out
    }

    /// Go's `Time.String()`.
    pub fn string(&self) -> String {
        self.format("2006-01-02 15:04:05.999999999 -0700 MST")
    }
}

impl Object for Time {
    fn type_name(&self) -> String {
        "time.Time".into()
    }
    fn kind(&self) -> &'static str {
        "struct"
    }
    fn field(&self, name: &str) -> Option<Value> {
        let (y, mo, d, h, mi, sec, _) = self.local();
        Some(match name {
            "Unix" => Value::Int64(self.secs),
            "UnixNano" => Value::Int64(self.secs.wrapping_mul(1_000_000_000).wrapping_add(self.nanos as i64)),
            "Year" => Value::Int(y),
            "Day" => Value::Int(d as i64),
            "Hour" => Value::Int(h as i64),
            "Minute" => Value::Int(mi as i64),
            "Second" => Value::Int(sec as i64),
            "Nanosecond" => Value::Int(self.nanos as i64),
            "Month" => Value::from(MONTHS[mo as usize - 1]),
            "UTC" => Value::Object(Rc::new(Time { offset: 0, zone: None, ..*self })),
            "String" => Value::from(self.string()),
            _ => return None,
        })
    }
    fn has_method(&self, name: &str) -> bool {
        name == "Format"
    }
    fn call(&self, name: &str, args: &[Value]) -> Result<Value, String> {
        match name {
            "Format" => Ok(Value::from(self.format(args.first().and_then(|v| v.as_str()).unwrap_or("")))),
            _ => Err(format!("can't call method {name}")),
        }
    }
    fn format(&self) -> String {
        self.string()
    }
    fn to_json(&self) -> Value {
        Value::from(self.format("2006-01-02T15:04:05.999999999Z07:00"))
    }
    fn as_time(&self) -> Option<Time> {
        Some(*self)
    }
}

fn now(c: &super::Ctx<'_>) -> Time {
    let (secs, nanos) = c.env.now();
    Time { secs, nanos, offset: 0, zone: None }
}

/// Offset (seconds east of UTC) and abbreviation of an IANA zone at a Unix time, for the
/// zones charts commonly use; `None` for unknown zones (rendered in UTC).
pub fn zone_at(zone: &str, secs: i64) -> Option<(i32, &'static str)> {
    // (standard offset, std name, dst name, rule) rule: 0 none, 1 EU, 2 US
    let (std, sn, dn, rule) = match zone {
        "UTC" | "Etc/UTC" | "GMT" | "Local" | "" => (0, "UTC", "UTC", 0),
        "Europe/London" | "Europe/Dublin" | "Europe/Lisbon" => (0, "GMT", "BST", 1),
        "Europe/Berlin" | "Europe/Paris" | "Europe/Amsterdam" | "Europe/Madrid" | "Europe/Rome" | "Europe/Vienna" | "Europe/Zurich" | "Europe/Stockholm"
        | "Europe/Oslo" | "Europe/Copenhagen" | "Europe/Brussels" | "Europe/Warsaw" | "Europe/Prague" => (3600, "CET", "CEST", 1),
        "Europe/Helsinki" | "Europe/Athens" | "Europe/Kiev" | "Europe/Kyiv" | "Europe/Bucharest" => (7200, "EET", "EEST", 1),
        "America/New_York" | "America/Toronto" | "America/Detroit" => (-5 * 3600, "EST", "EDT", 2),
        "America/Chicago" | "America/Winnipeg" => (-6 * 3600, "CST", "CDT", 2),
        "America/Denver" | "America/Edmonton" => (-7 * 3600, "MST", "MDT", 2),
        "America/Los_Angeles" | "America/Vancouver" => (-8 * 3600, "PST", "PDT", 2),
        "America/Phoenix" => (-7 * 3600, "MST", "MST", 0),
        "Asia/Tokyo" => (9 * 3600, "JST", "JST", 0),
        "Asia/Seoul" => (9 * 3600, "KST", "KST", 0),
        "Asia/Shanghai" | "Asia/Hong_Kong" => (8 * 3600, "CST", "CST", 0),
        "Asia/Singapore" => (8 * 3600, "+08", "+08", 0),
        "Asia/Kolkata" | "Asia/Calcutta" => (5 * 3600 + 1800, "IST", "IST", 0),
        _ => return None,
    };
    let year = civil_from_days((secs + std as i64).div_euclid(86400)).0;
    let nth_sunday = |m: u32, n: i64| -> i64 {
        // n-th Sunday (n = -1: last) of month m, in days since epoch
        if n > 0 {
            let first = days_from_civil(year, m, 1);
            let wd = (first + 4).rem_euclid(7);
            first + (7 - wd) % 7 + 7 * (n - 1)
        } else {
            let next = if m == 12 { days_from_civil(year + 1, 1, 1) } else { days_from_civil(year, m + 1, 1) };
            let last = next - 1;
            let wd = (last + 4).rem_euclid(7);
            last - wd
        }
    };
    let dst = match rule {
        1 => {
            let start = nth_sunday(3, -1) * 86400 + 3600;
            let end = nth_sunday(10, -1) * 86400 + 3600;
            secs >= start && secs < end
        }
        2 => {
            let start = nth_sunday(3, 2) * 86400 + 2 * 3600 - std as i64;
            let end = nth_sunday(11, 1) * 86400 + 2 * 3600 - (std as i64 + 3600);
            secs >= start && secs < end
        }
        _ => false,
    };
    Some(if dst { (std + 3600, dn) } else { (std, sn) })
}

fn in_zone(mut t: Time, zone: &str) -> Time {
    match zone_at(zone, t.secs) {
        Some((off, _)) => {
            t.offset = off;
            t.zone = zone_at(zone, t.secs).map(|z| z.1);
        }
        None => {
            t.offset = 0;
            t.zone = None;
        }
    }
    t
}

fn time_of(c: &super::Ctx<'_>, v: &Value) -> Time {
    match v {
        Value::Object(o) => o.as_time().unwrap_or_else(|| now(c)),
        Value::Int(i) | Value::Int64(i) => Time { secs: *i, nanos: 0, offset: 0, zone: None },
        _ => now(c),
    }
}

fn tval(t: Time) -> Value {
    Value::Object(Rc::new(t))
}

/// Go's `time.ParseDuration` → nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let orig = s;
    let err = || format!("time: invalid duration {}", crate::template::fmt::go_quote(orig));
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_end == 0 {
            return Err(err());
        }
        let num: f64 = rest[..num_end].parse().map_err(|_| err())?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let mult: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration {}", crate::template::fmt::go_quote(orig))),
            u => return Err(format!("time: unknown unit {} in duration {}", crate::template::fmt::go_quote(u), crate::template::fmt::go_quote(orig))),
        };
        total += num * mult;
    }
    if total > i64::MAX as f64 {
        return Err(err());
    }
    Ok(if neg { -(total as i64) } else { total as i64 })
}

/// Go's `Duration.String()`.
pub fn duration_string(d: i64) -> String {
    if d == 0 {
        return "0s".into();
    }
    let neg = d < 0;
    let u = d.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        // sub-second
        let (unit, div) = if u < 1_000 {
            ("ns", 1u64)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        out.push_str(&frac_str(u, div));
        out.push_str(unit);
    } else {
        let secs_total = u / 1_000_000_000;
        let nanos = u % 1_000_000_000;
        let h = secs_total / 3600;
        let m = (secs_total % 3600) / 60;
        let s = secs_total % 60;
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&frac_str(s * 1_000_000_000 + nanos, 1_000_000_000));
        out.push('s');
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

fn frac_str(v: u64, div: u64) -> String {
    let ip = v / div;
    let mut fp = v % div;
    if fp == 0 {
        return ip.to_string();
    }
    let mut digits = div.to_string().len() - 1;
    let mut s = String::new();
    while fp > 0 && digits > 0 {
        let p = 10u64.pow(digits as u32 - 1);
        s.push(char::from(b'0' + (fp / p) as u8));
        fp %= p;
        digits -= 1;
    }
    format!("{ip}.{}", s.trim_end_matches('0'))
}

/// Go's `time.Parse` for common layouts.
/// A fractional-second element at the start of a layout (`.000`, `,999`: Go's nextStdChunk),
/// as its digit and run length.
fn layout_fraction(l: &str) -> Option<(char, usize)> {
    let b = l.as_bytes();
    if b.len() < 2 || !matches!(b[0], b'.' | b',') || !matches!(b[1], b'0' | b'9') {
        return None;
    }
    let n = b[1..].iter().take_while(|&&c| c == b[1]).count();
    if b.get(1 + n).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    Some((b[1] as char, n))
}

pub fn parse_time(layout: &str, value: &str) -> Result<Time, String> {
    let q = crate::template::fmt::go_quote;
    let elem_err = |rest: &str, lay: &str| {
        let elem = ["2006", "01", "02", "15", "04", "05", "Jan", "Z07:00", "-07:00", "-0700", "MST", "1", "2"]
            .iter()
            .find(|e| lay.starts_with(**e))
            .map(|e| e.to_string())
            .unwrap_or_else(|| lay.to_string());
        format!("parsing time {} as {}: cannot parse {} as {}", q(value), q(layout), q(rest), q(&elem))
    };
    let (mut y, mut mo, mut d, mut h, mut mi, mut sec, mut ns, mut off) = (1i64, 1u32, 1u32, 0u32, 0u32, 0u32, 0u32, 0i32);
    let mut l = layout;
    let mut v = value;
    let num = |v: &mut &str, n: usize| -> Option<u32> {
        if v.len() < n || !v.as_bytes()[..n].iter().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let r = v[..n].parse().ok();
        *v = &v[n..];
        r
    };
    let var_num = |v: &mut &str| -> Option<u32> {
        let e = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()).min(2);
        if e == 0 {
            return None;
        }
        let r = v[..e].parse().ok();
        *v = &v[e..];
        r
    };
    while !l.is_empty() {
        let (v0, l0) = (v, l);
        if let Some(r) = l.strip_prefix("2006") {
            y = num(&mut v, 4).ok_or_else(|| elem_err(v0, l0))? as i64;
            l = r;
        } else if let Some(r) = l.strip_prefix("01") {
            mo = num(&mut v, 2).ok_or_else(|| elem_err(v0, l0))?;
            l = r;
        } else if let Some(r) = l.strip_prefix("02") {
            d = num(&mut v, 2).ok_or_else(|| elem_err(v0, l0))?;
            l = r;
        } else if let Some(r) = l.strip_prefix("15") {
            h = num(&mut v, 2).ok_or_else(|| elem_err(v0, l0))?;
            l = r;
        } else if let Some(r) = l.strip_prefix("04") {
            mi = num(&mut v, 2).ok_or_else(|| elem_err(v0, l0))?;
            l = r;
        } else if let Some(r) = l.strip_prefix("05") {
            sec = num(&mut v, 2).ok_or_else(|| elem_err(v0, l0))?;
            // Go: a fraction in the value without one in the layout is still read
            if v.starts_with(['.', ',']) && v[1..].starts_with(|c: char| c.is_ascii_digit()) && layout_fraction(r).is_none() {
                let e = v[1..].find(|c: char| !c.is_ascii_digit()).map(|x| x + 1).unwrap_or(v.len());
                let f = &v[1..e];
                ns = format!("{:0<9}", &f[..f.len().min(9)]).parse().unwrap_or(0);
                v = &v[e..];
            }
            l = r;
        } else if let Some((digit, n)) = layout_fraction(l) {
            // Go's stdFracSecond0 (`.000`: exactly n digits) and stdFracSecond9 (`.999`: optional)
            let r = &l[1 + n..];
            let has = v.starts_with(['.', ',']) && v[1..].starts_with(|c: char| c.is_ascii_digit());
            if digit == '0' {
                if v.len() < 1 + n || !v.starts_with(['.', ',']) || !v.as_bytes()[1..1 + n].iter().all(u8::is_ascii_digit) {
                    return Err(elem_err(v0, l0));
                }
                let f = &v[1..1 + n];
                ns = format!("{:0<9}", &f[..f.len().min(9)]).parse().unwrap_or(0);
                v = &v[1 + n..];
            } else if has {
                let e = v[1..].find(|c: char| !c.is_ascii_digit()).map(|x| x + 1).unwrap_or(v.len());
                let f = &v[1..e];
                ns = format!("{:0<9}", &f[..f.len().min(9)]).parse().unwrap_or(0);
                v = &v[e..];
            }
            l = r;
        } else if let Some(r) = l.strip_prefix("Jan") {
            let idx = MONTHS.iter().position(|m| v.starts_with(&m[..3])).ok_or_else(|| elem_err(v0, l0))?;
            mo = idx as u32 + 1;
            v = &v[3..];
            l = r;
        } else if let Some(r) = l.strip_prefix("Z07:00").or_else(|| l.strip_prefix("-07:00")) {
            if let Some(rv) = v.strip_prefix('Z') {
                v = rv;
            } else {
                let sign = if v.starts_with('-') {
                    -1
                } else if v.starts_with('+') {
                    1
                } else {
                    return Err(elem_err(v0, l0));
                };
                v = &v[1..];
                let hh = num(&mut v, 2).ok_or_else(|| elem_err(v0, l0))? as i32;
                v = v.strip_prefix(':').ok_or_else(|| elem_err(v0, l0))?;
                let mm = num(&mut v, 2).ok_or_else(|| elem_err(v0, l0))? as i32;
                off = sign * (hh * 3600 + mm * 60);
            }
            l = r;
        } else if let Some(r) = l.strip_prefix("-0700") {
            let sign = if v.starts_with('-') {
                -1
            } else if v.starts_with('+') {
                1
            } else {
                return Err(elem_err(v0, l0));
            };
            v = &v[1..];
            let hh = num(&mut v, 2).ok_or_else(|| elem_err(v0, l0))? as i32;
            let mm = num(&mut v, 2).ok_or_else(|| elem_err(v0, l0))? as i32;
            off = sign * (hh * 3600 + mm * 60);
            l = r;
        } else if let Some(r) = l.strip_prefix("MST") {
            let e = v.find(|c: char| !c.is_ascii_uppercase()).unwrap_or(v.len());
            v = &v[e..];
            l = r;
        } else if let Some(r) = l.strip_prefix('1') {
            mo = var_num(&mut v).ok_or_else(|| elem_err(v0, l0))?;
            l = r;
        } else if let Some(r) = l.strip_prefix('2') {
            d = var_num(&mut v).ok_or_else(|| elem_err(v0, l0))?;
            l = r;
        } else {
            let c = l.chars().next().unwrap_or(' ');
            if !v.starts_with(c) {
                return Err(elem_err(v0, l0));
            }
            l = &l[c.len_utf8()..];
            v = &v[c.len_utf8()..];
        }
    }
    if !v.is_empty() {
        return Err(format!("parsing time {}: extra text: {}", crate::template::fmt::go_quote(value), crate::template::fmt::go_quote(v)));
    }
    if !(1..=12).contains(&mo) {
        return Err(format!("parsing time {}: month out of range", crate::template::fmt::go_quote(value)));
    }
    let dim = match mo {
        2 => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if d < 1 || d > dim || h > 23 || mi > 59 || sec > 59 {
        return Err(format!("parsing time {}: day out of range", crate::template::fmt::go_quote(value)));
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86400 + (h * 3600 + mi * 60 + sec) as i64 - off as i64;
    Ok(Time { secs, nanos: ns, offset: off, zone: None })
}

pub fn register(m: &mut FuncMap) {
    reg(m, "now", &[], None, |c, _| Ok(tval(now(c))));
    reg(m, "date", &[Str, Any], None, |c, a| {
        let t = in_zone(time_of(c, &a[1]), "UTC");
        ok_str(t.format(s(&a[0])))
    });
    for name in ["dateInZone", "date_in_zone"] {
        reg(m, name, &[Str, Any, Str], None, |c, a| {
            let t = in_zone(time_of(c, &a[1]), s(&a[2]));
            ok_str(t.format(s(&a[0])))
        });
    }
    reg(m, "htmlDate", &[Any], None, |c, a| {
        let t = in_zone(time_of(c, &a[0]), "UTC");
        ok_str(t.format("2006-01-02"))
    });
    reg(m, "htmlDateInZone", &[Any, Str], None, |c, a| {
        let t = in_zone(time_of(c, &a[0]), s(&a[1]));
        ok_str(t.format("2006-01-02"))
    });
    reg(m, "date_modify", &[Str, Time], None, |_, a| {
        let t = a[1].clone().into_time_or_zero();
        Ok(tval(match parse_duration(s(&a[0])) {
            Ok(d) => add(t, d),
            Err(_) => t,
        }))
    });
    reg(m, "must_date_modify", &[Str, Time], None, |_, a| {
        let t = a[1].clone().into_time_or_zero();
        Ok(tval(add(t, parse_duration(s(&a[0]))?)))
    });
    reg(m, "dateModify", &[Str, Time], None, |_, a| {
        let t = match &a[1] {
            Value::Object(o) => o.as_time().unwrap_or(Time { secs: 0, nanos: 0, offset: 0, zone: None }),
            _ => Time { secs: 0, nanos: 0, offset: 0, zone: None },
        };
        Ok(tval(match parse_duration(s(&a[0])) {
            Ok(d) => add(t, d),
            Err(_) => t,
        }))
    });
    reg(m, "mustDateModify", &[Str, Time], None, |_, a| {
        let t = match &a[1] {
            Value::Object(o) => o.as_time().unwrap_or(Time { secs: 0, nanos: 0, offset: 0, zone: None }),
            _ => Time { secs: 0, nanos: 0, offset: 0, zone: None },
        };
        Ok(tval(add(t, parse_duration(s(&a[0]))?)))
    });
    reg(m, "ago", &[Any], None, |c, a| {
        let t = time_of(c, &a[0]);
        let n = now(c);
        let d = n.secs.saturating_sub(t.secs).saturating_mul(1_000_000_000).saturating_add(n.nanos as i64 - t.nanos as i64);
        let rounded = (((d as f64) / 1e9).round() as i64).saturating_mul(1_000_000_000);
        ok_str(duration_string(rounded))
    });
    reg(m, "toDate", &[Str, Str], None, |_, a| {
        Ok(tval(parse_time(s(&a[0]), s(&a[1])).unwrap_or(Time { secs: -62135596800, nanos: 0, offset: 0, zone: None })))
    });
    reg(m, "mustToDate", &[Str, Str], None, |_, a| Ok(tval(parse_time(s(&a[0]), s(&a[1]))?)));
    reg(m, "unixEpoch", &[Time], None, |_, a| ok_str(a[0].clone().into_time_secs().to_string()));
    reg(m, "duration", &[Any], None, |_, a| {
        let n: i64 = match &a[0] {
            Value::Str(st) => st.parse().unwrap_or(0),
            Value::Int64(i) => *i,
            _ => 0,
        };
        ok_str(duration_string(n.wrapping_mul(1_000_000_000)))
    });
    reg(m, "durationRound", &[Any], None, |c, a| {
        let d: i64 = match &a[0] {
            Value::Str(st) => parse_duration(st).unwrap_or(0),
            Value::Int64(i) => *i,
            Value::Object(o) => match o.as_time() {
                Some(t) => now(c).secs.saturating_sub(t.secs).saturating_mul(1_000_000_000),
                None => 0,
            },
            _ => 0,
        };
        let u = d.unsigned_abs();
        let hour = 3_600_000_000_000u64;
        let (year, month, day, minute, second) = (hour * 24 * 365, hour * 24 * 30, hour * 24, 60_000_000_000u64, 1_000_000_000u64);
        let r = if u > year {
            format!("{}y", u / year)
        } else if u > month {
            format!("{}mo", u / month)
        } else if u > day {
            format!("{}d", u / day)
        } else if u > hour {
            format!("{}h", u / hour)
        } else if u > minute {
            format!("{}m", u / minute)
        } else if u > second {
            format!("{}s", u / second)
        } else {
            "0s".into()
        };
        ok_str(r)
    });
    let _: Option<FResult> = None;
}

fn add(t: Time, d: i64) -> Time {
    let total = t.nanos as i64 + d.rem_euclid(1_000_000_000);
    Time {
        secs: t.secs.saturating_add(d.div_euclid(1_000_000_000)).saturating_add(total / 1_000_000_000),
        nanos: (total % 1_000_000_000) as u32,
        offset: t.offset,
        zone: None,
    }
}

trait IntoTimeOrZero {
    fn into_time_or_zero(self) -> Time;
}
impl IntoTimeOrZero for Value {
    fn into_time_or_zero(self) -> Time {
        match self {
            Value::Object(o) => o.as_time().unwrap_or(Time { secs: 0, nanos: 0, offset: 0, zone: None }),
            _ => Time { secs: 0, nanos: 0, offset: 0, zone: None },
        }
    }
}

trait IntoTimeSecs {
    fn into_time_secs(self) -> i64;
}
impl IntoTimeSecs for Value {
    fn into_time_secs(self) -> i64 {
        match self {
            Value::Object(o) => o.as_time().map(|t| t.secs).unwrap_or(0),
            _ => 0,
        }
    }
}
