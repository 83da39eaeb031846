//! Wire contracts shared by `harmony` and `harmony-agent`.
//!
//! This crate will own every type that crosses a process boundary: the compiled, signed
//! device plan an agent receives, the device status and heartbeat it publishes, command
//! requests and replies (`ping`, `logs`, `exec`), and the saved plan file format. Each type
//! is versioned, (de)serialised with serde and exported as JSON Schema into `docs/schemas/`.
//!
//! Architecture invariant: this crate depends on nothing of Harmony's. The agent depends on
//! it and on nothing else of ours, so an agent can never be talked into compiling a
//! repository or rendering a chart.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod canon;
pub mod agent_config;
pub mod encoding;
pub mod fleet;
pub mod host_path;
pub mod lock;
pub mod plan;
pub mod trust;

pub use plan::{PLAN_FORMAT_VERSION, PlanFile, PlanFileError};

/// Whether `c` can change how text shows on a terminal rather than showing itself: a control
/// character (C0, DEL, C1: cursor moves, colours, titles, line breaks) or a bidirectional
/// mark, override or isolate (text shown in another order than it reads), or a line or
/// paragraph separator.
fn is_unprintable(c: char) -> bool {
    c.is_control() || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every character that could steer a terminal written as its escape (`\n`,
/// `\u{1b}`, `\u{202e}`): for text a device or another untrusted party supplies, printed on an
/// operator's terminal (it can then neither forge lines nor rewrite what is on the screen).
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(is_unprintable) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(s.chars().map(|c| if is_unprintable(c) { c.escape_default().to_string() } else { c.to_string() }).collect())
}

/// `s` cut to at most `max` bytes (on a character boundary), with `…` appended when cut: for
/// echoing untrusted input in errors and statuses without copying all of it.
pub fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    format!("{}…", &s[..s.floor_char_boundary(max)])
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_escapes_what_steers_a_terminal() {
        assert!(matches!(super::printable("plain text: ü ✓"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(super::printable("a\u{7f}b\u{2028}c\u{200f}d\u{61c}"), "a\\u{7f}b\\u{2028}c\\u{200f}d\\u{61c}");
        assert_eq!(super::printable("a\u{1b}[2Jb\nc\u{9b}d\u{202e}e\t"), "a\\u{1b}[2Jb\\nc\\u{9b}d\\u{202e}e\\t");
    }
}
