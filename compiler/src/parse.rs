//! Parsing KDL text without ever overflowing a stack.
//!
//! kdl-rs's parser recurses once per `{ }` block (about 8 KiB of stack each) and once per
//! token of a `/* */` comment (`*`, `/`, nested `/*`: up to 3 KiB each), so a deeply nested
//! file overflows the 2 MiB stack of the rayon worker that parses it and aborts the process.
//! Two guards:
//!
//! - [`too_deep`], a linear scan that understands strings and comments, refuses files whose
//!   blocks or comments nest deeper than [`MAX_DEPTH`] with a diagnostic: the limit users see.
//! - That scan cannot be exact: after a syntax error kdl-rs resumes at the next value
//!   terminator, so text the scan rightly reads as a string (`a "\q { b "}" { …`) may be
//!   parsed as nested blocks. So kdl-rs runs on a stack sized for the worst case the bytes
//!   allow (every `{` a level, every `*` and `/` a comment step) — the caller's own stack when
//!   that is small, a dedicated thread otherwise — and a file whose worst case exceeds
//!   [`MAX_STACK`] is refused rather than parsed.

use kdl::{KdlDocument, KdlError};

/// Deepest nesting of `{ }` blocks, and separately of `/* */` comments, a file may have.
/// Harmony's own language nests five levels; values trees are the only deep part.
pub const MAX_DEPTH: usize = 64;

/// The largest stack a parse may be given (the worst case of a file of ~30,000 blocks).
pub const MAX_STACK: usize = 512 << 20;

/// Stack assumed for kdl-rs per `{` and per comment step, twice what was measured.
const PER_BLOCK: usize = 16 << 10;
const PER_COMMENT_STEP: usize = 3 << 10;
const BASE: usize = 256 << 10;
/// Parses needing no more than this run on the caller's stack (a rayon worker has 2 MiB).
const INLINE: usize = 1 << 20;

/// Why a text did not parse.
#[derive(Debug)]
pub enum ParseError {
    /// Not valid KDL.
    Kdl(KdlError),
    /// Refused before parsing.
    TooDeep(TooDeep),
}

/// Why a text was refused before parsing, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    /// Byte offset of the offending `{` or `/*` (0 for [`Depth::Size`]).
    pub offset: usize,
    /// Its length in bytes.
    pub len: usize,
    /// What is too deep.
    pub what: Depth,
}

/// What nests too deeply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// `{ }` blocks, deeper than [`MAX_DEPTH`].
    Blocks,
    /// `/* */` comments, deeper than [`MAX_DEPTH`].
    Comments,
    /// So many `{`, `*` and `/` that the worst case needs more than [`MAX_STACK`].
    Size,
}

/// Parses `text` as a KDL document unless it is refused by [`too_deep`] or too large to parse
/// safely (see the module docs).
pub fn parse(text: &str) -> Result<KdlDocument, ParseError> {
    if let Some(deep) = too_deep(text) {
        return Err(ParseError::TooDeep(deep));
    }
    let stack = worst_case_stack(text);
    if stack <= INLINE {
        return text.parse::<KdlDocument>().map_err(ParseError::Kdl);
    }
    let size = TooDeep { offset: 0, len: 0, what: Depth::Size };
    if stack > MAX_STACK {
        return Err(ParseError::TooDeep(size));
    }
    std::thread::scope(|s| {
        let parser = std::thread::Builder::new().name("kdl-parse".into()).stack_size(stack).spawn_scoped(s, || text.parse::<KdlDocument>());
        match parser.map(|h| h.join()) {
            Ok(Ok(result)) => result.map_err(ParseError::Kdl),
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            // No thread with that stack could be made: refuse rather than risk the caller's.
            Err(_) => Err(ParseError::TooDeep(size)),
        }
    })
}

/// The stack kdl-rs could need for `text` whatever it makes of it.
fn worst_case_stack(text: &str) -> usize {
    let blocks = text.bytes().filter(|&c| c == b'{').count();
    // Comment steps happen only inside a `/* */` comment, so only after the first `/*`.
    let steps = text.find("/*").map_or(0, |i| text.as_bytes()[i..].iter().filter(|&&c| c == b'*' || c == b'/').count());
    // A comment step may also be a run of other bytes between two of them: twice the count.
    BASE.saturating_add(blocks.saturating_mul(PER_BLOCK)).saturating_add(steps.saturating_mul(2 * PER_COMMENT_STEP))
}

/// The first `{` or `/*` that opens a level deeper than [`MAX_DEPTH`], outside strings and
/// (for `{`) comments, as KDL v2 lexes a well-formed file.
pub fn too_deep(text: &str) -> Option<TooDeep> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(TooDeep { offset: i, len: 1, what: Depth::Blocks });
                }
                i += 1;
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i += 2;
                while i < b.len() && !newline_at(b, i) {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut level = 1usize;
                i += 2;
                while i < b.len() && level > 0 {
                    if b[i..].starts_with(b"/*") {
                        level += 1;
                        if level > MAX_DEPTH {
                            return Some(TooDeep { offset: i, len: 2, what: Depth::Comments });
                        }
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        level -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
            b'"' => i = skip_string(b, i, 0),
            b'#' => {
                let hashes = b[i..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + hashes) == Some(&b'"') {
                    i = skip_string(b, i + hashes, hashes);
                } else {
                    i += hashes;
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Whether one of KDL's newlines (CR, LF, NEL, VT, FF, LS, PS) starts at `b[i]`.
fn newline_at(b: &[u8], i: usize) -> bool {
    matches!(b[i], b'\n' | b'\r' | 0x0b | 0x0c) || b[i..].starts_with("\u{85}".as_bytes()) || b[i..].starts_with("\u{2028}".as_bytes()) || b[i..].starts_with("\u{2029}".as_bytes())
}

/// The index after the string whose opening quote is at `b[q]`: a raw string when `hashes > 0`
/// (no escapes; closed by a quote and as many `#`), else a quoted one (`\` escapes the next byte);
/// either may be multi-line (`"""`, closed by `"""`). An unterminated string runs to the end.
fn skip_string(b: &[u8], q: usize, hashes: usize) -> usize {
    let quotes = if b[q..].starts_with(b"\"\"\"") { 3 } else { 1 };
    let mut i = q + quotes;
    while i < b.len() {
        if hashes == 0 && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i..].starts_with(&b"\"\"\""[..quotes]) && b[i + quotes..].iter().take(hashes).filter(|&&c| c == b'#').count() == hashes {
            return i + quotes + hashes;
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, close: &str, n: usize) -> String {
        format!("a {}{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn counts_blocks_outside_strings_and_comments() {
        assert_eq!(too_deep(&"a {\n".repeat(MAX_DEPTH)), None);
        let deep = "a {\n".repeat(MAX_DEPTH + 1);
        assert_eq!(too_deep(&deep), Some(TooDeep { offset: MAX_DEPTH * 4 + 2, len: 1, what: Depth::Blocks }));
        // Balanced siblings are not depth.
        assert_eq!(too_deep(&"a { b; }\n".repeat(1000)), None);
        // Braces in strings, raw strings, multi-line strings and comments do not count.
        let many = "{".repeat(1000);
        for text in [
            format!("a \"{many}\""),
            format!("a \"\\\"{many}\""),
            format!("a #\"\"{many}\"#"),
            format!("a ##\"\"#{many}\"##"),
            format!("a \"\"\"\n\"\"{many}\n\"\"\""),
            format!("a #\"\"\"\n\"\"\"{many}\n\"\"\"#"),
            format!("// {many}\na"),
            format!("// \u{2028}a\n//{many}"),
            format!("/* {many} */ a"),
        ] {
            assert_eq!(too_deep(&text), None, "{text}");
        }
        assert!(too_deep(&format!("// x\u{2028}a {many}")).is_some(), "a line comment ends at any KDL newline");
    }

    #[test]
    fn counts_nested_comments() {
        assert_eq!(too_deep(&nested("/*", "*/", MAX_DEPTH)), None);
        assert!(too_deep(&nested("/*", "*/", MAX_DEPTH + 1)).is_some_and(|d| d.what == Depth::Comments));
    }

    #[test]
    fn deep_input_is_refused_not_parsed() {
        for text in [nested("{", "}", 100_000), nested("/*", "*/", 100_000), "a {".repeat(100_000)] {
            assert!(matches!(parse(&text), Err(ParseError::TooDeep(_))));
        }
        assert!(parse(&nested("{ b ", "}", MAX_DEPTH)).is_ok());
    }

    /// Text the scan reads as strings but kdl-rs, recovering from the error inside, as blocks:
    /// parsed on a stack sized for the blocks, or refused when that stack would be too large.
    #[test]
    fn parses_that_outrun_the_scan_get_a_large_enough_stack() {
        for n in [1_000, 20_000, 100_000] {
            for text in [
                format!("a \"\\q {}{}\"", "{ b \"}\" ".repeat(n), "}".repeat(n)),
                format!("a x\"y {}{}\"", "{ b ".repeat(n), "}".repeat(n)),
                format!("a 0x\" {}", "{ b ".repeat(n)),
                format!("/*{} */ a", "*".repeat(n * 10)),
            ] {
                // A small stack of our own: the parse must not depend on the caller's.
                let r = std::thread::Builder::new().stack_size(256 << 10).spawn(move || parse(&text).map(|_| ())).unwrap().join().unwrap();
                assert!(matches!(r, Ok(()) | Err(ParseError::Kdl(_)) | Err(ParseError::TooDeep(_))));
            }
        }
    }
}
