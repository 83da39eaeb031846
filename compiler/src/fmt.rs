//! `harmony fmt`: canonical formatting of KDL files that keeps every comment.
//!
//! Canonical form: one node per line, four-space indentation, `{` on the node's line, one
//! space between entries, `key=value` without spaces, at most one blank line between nodes,
//! none at the start of a block, no trailing whitespace, a final newline. Literals are kept
//! as written (a quoted string stays quoted), so formatting never changes a value.
//!
//! Why not kdl-rs's `autoformat`: it drops comments that sit among a node's entries and, in
//! kdl 6.7.1, a comment after a closing `}` is lost even by a plain parse/print round trip.
//! So the structure comes from kdl's spans, and comments are copied from the source text
//! between those spans. Every result is re-parsed and compared with the input's document
//! (formatting cleared); if they differ, formatting fails instead of changing meaning.

use kdl::{KdlDocument, KdlNode};

const INDENT: &str = "    ";

/// Why a file could not be formatted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The input is not valid KDL (`harmony check` shows where).
    #[error("not valid KDL; run `harmony check` to see the errors")]
    Syntax,
    /// The formatter would have changed the document (a bug; the file is left alone).
    #[error("formatting would change the document's meaning; left unchanged (please report this)")]
    Unsafe,
}

/// Formats a KDL document canonically.
pub fn format_kdl(src: &str) -> Result<String, FormatError> {
    let doc: KdlDocument = crate::parse::parse(src).map_err(|_| FormatError::Syntax)?;
    let mut f = Formatter { src, lines: Vec::new(), prefix: String::new() };
    f.block(doc.nodes(), 0, src.len(), 0, false).ok_or(FormatError::Unsafe)?;
    while f.lines.last().is_some_and(|l| l.is_empty()) {
        f.lines.pop();
    }
    let mut out = f.lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    // Safety net: the formatted text must mean exactly what the input meant.
    let again: KdlDocument = crate::parse::parse(&out).map_err(|_| FormatError::Unsafe)?;
    if std::env::var_os("HARMONY_FMT_DEBUG").is_some() {
        eprintln!("{out}");
    }
    if canonical(doc) != canonical(again) {
        return Err(FormatError::Unsafe);
    }
    Ok(out)
}

fn canonical(mut doc: KdlDocument) -> String {
    doc.clear_format_recursive();
    doc.to_string()
}

struct Formatter<'s> {
    src: &'s str,
    lines: Vec<String>,
    /// Comments written before the next node on its line.
    prefix: String,
}

fn end_of(span: miette::SourceSpan) -> usize {
    span.offset() + span.len()
}

impl Formatter<'_> {
    /// Formats sibling nodes lying in `src[start..end]`. `opened` is true inside `{ }`, where a
    /// comment on the brace's line stays on that line.
    fn block(&mut self, nodes: &[KdlNode], start: usize, end: usize, depth: usize, opened: bool) -> Option<()> {
        let indent = INDENT.repeat(depth);
        let mut prev_end = start;
        let mut first = true;
        for node in nodes {
            let node_start = node.span().offset();
            let gap = self.src.get(prev_end..node_start)?;
            self.gap(gap, &indent, first, opened || !first, true);
            self.node(node, depth)?;
            prev_end = self.node_end(node)?;
            first = false;
        }
        let tail = self.src.get(prev_end..end)?;
        self.gap(tail, &indent, first, opened || !first, false);
        Some(())
    }

    /// Emits the comments in a gap between nodes: the part on the previous line stays there;
    /// the rest become lines at `indent`, keeping at most one blank line.
    fn gap(&mut self, gap: &str, indent: &str, first: bool, same_line_allowed: bool, before_node: bool) {
        let gap = gap.trim_start_matches([' ', '\t']);
        let gap = gap.strip_prefix(';').unwrap_or(gap);
        let (same_line, rest) = if same_line_allowed {
            match split_newline(gap) {
                Some((a, b)) => (a.trim(), b),
                None => (gap.trim(), ""),
            }
        } else {
            ("", gap)
        };
        if !same_line.is_empty() {
            match self.lines.last_mut() {
                Some(last) => {
                    last.push(' ');
                    last.push_str(same_line);
                }
                None => self.lines.push(same_line.to_string()),
            }
        }
        // Every segment but the last is a whole line; the last one precedes the next node on
        // its own line (`/* c */ node`) and becomes that node's prefix.
        let mut segments: Vec<&str> = lines(rest);
        let last = segments.pop().unwrap_or("").trim();
        let mut pending_blank = false;
        let mut emitted_any = !first;
        for line in segments {
            let t = line.trim();
            if t.is_empty() {
                pending_blank = emitted_any;
                continue;
            }
            if pending_blank {
                self.lines.push(String::new());
            }
            pending_blank = false;
            emitted_any = true;
            self.lines.push(format!("{indent}{t}"));
        }
        if pending_blank && (before_node || !last.is_empty()) {
            self.lines.push(String::new());
        }
        if !last.is_empty() {
            if before_node {
                self.prefix = format!("{last} ");
            } else {
                self.lines.push(format!("{indent}{last}"));
            }
        }
    }

    /// Where a node ends in the source: after `}` when it has children, else after its last entry.
    fn node_end(&self, node: &KdlNode) -> Option<usize> {
        if node.children().is_some() {
            // kdl's span of a nested node may include trailing whitespace: end after the last `}`.
            let start = node.span().offset();
            Some(start + self.src.get(start..end_of(node.span()))?.rfind('}')? + 1)
        } else {
            Some(node.entries().iter().map(|e| end_of(e.span())).fold(end_of(node.name().span()), usize::max))
        }
    }

    fn node(&mut self, node: &KdlNode, depth: usize) -> Option<()> {
        let src = self.src;
        let indent = INDENT.repeat(depth);
        let head_end = end_of(node.name().span());
        let prefix = std::mem::take(&mut self.prefix);
        let mut line = format!("{indent}{prefix}{}", src.get(node.span().offset()..head_end)?);
        let mut pos = head_end;
        for e in node.entries() {
            let s = e.span();
            push_gap(&mut line, src.get(pos..s.offset())?);
            let text = src.get(s.offset()..end_of(s))?;
            match e.name() {
                Some(name) => {
                    let name_end = end_of(name.span());
                    let name_text = src.get(name.span().offset()..name_end)?;
                    let after = src.get(name_end..end_of(s))?.trim_start();
                    let value = after.strip_prefix('=')?.trim_start();
                    // Type-annotated or otherwise unusual properties are kept verbatim.
                    if name.span().offset() == s.offset() {
                        line.push_str(name_text);
                        line.push('=');
                        line.push_str(value);
                    } else {
                        line.push_str(text);
                    }
                }
                None => line.push_str(text),
            }
            pos = end_of(s);
        }
        let Some(children) = node.children() else {
            self.lines.push(line);
            return Some(());
        };
        let close = self.node_end(node)? - 1;
        // Find the `{` of the children block: the last `{` before the first child, or before `}`.
        let inner_start = children.nodes().first().map_or(close, |n| n.span().offset());
        let open = pos + src.get(pos..inner_start)?.rfind('{')?;
        push_gap(&mut line, src.get(pos..open)?);
        if children.nodes().is_empty() && src.get(open + 1..close)?.trim().is_empty() {
            line.push_str("{}");
            self.lines.push(line);
            return Some(());
        }
        line.push('{');
        self.lines.push(line);
        self.block(children.nodes(), open + 1, close, depth + 1, true)?;
        self.lines.push(format!("{indent}}}"));
        Some(())
    }
}

/// KDL v2 newlines (spec §3.18): CRLF, CR, LF, NEL, VT, FF, LS and PS. A `//` comment ends at
/// any of them, so the formatter must break lines at all of them, not only at `\n`.
fn is_newline(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{85}' | '\u{0B}' | '\u{0C}' | '\u{2028}' | '\u{2029}')
}

/// Splits at the first newline (CRLF counts as one).
fn split_newline(s: &str) -> Option<(&str, &str)> {
    let i = s.find(is_newline)?;
    let rest = &s[i..];
    let len = if rest.starts_with("\r\n") { 2 } else { rest.chars().next().map_or(1, char::len_utf8) };
    Some((&s[..i], &s[i + len..]))
}

/// Splits into lines at every KDL newline; the last element is the text after the last newline.
fn lines(mut s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    while let Some((line, rest)) = split_newline(s) {
        out.push(line);
        s = rest;
    }
    out.push(s);
    out
}

/// Joins entries: whitespace becomes one space; comments and slashdashed entries are kept.
fn push_gap(line: &mut String, gap: &str) {
    if gap.contains(is_newline) {
        // A line continuation (`\`) with comments: keep it as written.
        line.push_str(gap);
    } else if gap.trim().is_empty() {
        line.push(' ');
    } else {
        line.push(' ');
        line.push_str(gap.trim());
        line.push(' ');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expect: &str) {
        let out = format_kdl(input).unwrap();
        assert_eq!(out, expect, "\n--- got ---\n{out}");
        assert_eq!(format_kdl(&out).unwrap(), out, "not idempotent");
    }

    #[test]
    fn keeps_comments_in_every_position() {
        check(
            "// lead\n\n/* block */ tenant /* in */ acme \"x\" /- \"gone\" k = v { // after brace\n  a 1 // trailing a\n  /- b 2\n  c 3; d 4\n\n\n  // end of children\n} // after node\n/- slash { x }\nlast\n// eof\n",
            "// lead\n\n/* block */ tenant /* in */ acme \"x\" /- \"gone\" k=v { // after brace\n    a 1 // trailing a\n    /- b 2\n    c 3\n    d 4\n\n    // end of children\n} // after node\n/- slash { x }\nlast\n// eof\n",
        );
    }

    #[test]
    fn expands_single_line_blocks() {
        check(
            "release web { values { replicaCount 3; image { tag \"1.4.2\" } } }",
            "release web {\n    values {\n        replicaCount 3\n        image {\n            tag \"1.4.2\"\n        }\n    }\n}\n",
        );
    }

    #[test]
    fn blank_lines_are_collapsed() {
        check("a\n\n\n\nb\n   \n", "a\n\nb\n");
        check("x {\n\n\n  a\n}\n", "x {\n    a\n}\n");
        check("x {}\ny { }\n", "x {}\ny {}\n");
        check("", "");
    }

    #[test]
    fn every_kdl_newline_ends_a_comment() {
        for nl in ["\r\n", "\r", "\u{85}", "\u{0B}", "\u{0C}", "\u{2028}", "\u{2029}"] {
            check(&format!("a // one{nl}b{nl}// two{nl}c {{ // three{nl}  d{nl}}}{nl}"), "a // one\nb\n// two\nc { // three\n    d\n}\n");
        }
    }

    #[test]
    fn rejects_invalid_kdl() {
        assert_eq!(format_kdl("a {"), Err(FormatError::Syntax));
    }
}
