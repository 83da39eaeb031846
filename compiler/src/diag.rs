//! Diagnostics: what the compiler reports, with stable codes, spans, messages and help.
//!
//! A [`Diagnostic`] is plain data (file id + byte range); [`render`] turns it into miette's
//! graphical report, and [`Diagnostic::location`] into line/column for JSON and GitHub output.

use std::fmt;

use serde::Serialize;

use crate::source::{FileId, SourceFile, Sources};

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// The file the range is in.
    pub file: FileId,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Length in bytes.
    pub len: usize,
}

impl Span {
    /// A span from kdl's `SourceSpan`.
    pub fn from_kdl(file: FileId, span: miette::SourceSpan) -> Self {
        Span { file, start: span.offset(), len: span.len() }
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The repository does not compile.
    Error,
    /// Suspicious but allowed (`--deny-warnings` turns them into failures).
    Warning,
}

macro_rules! codes {
    ($($variant:ident => $name:literal,)*) => {
        /// Stable diagnostic codes; documented in `docs/language.md`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $(#[doc = $name] $variant,)* }

        impl Code {
            /// Every code, in documentation order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The stable name, e.g. `harmony::unknown-node`.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => concat!("harmony::", $name),)* }
            }
        }
    };
}

codes! {
    Syntax => "syntax",
    UnknownNode => "unknown-node",
    UnknownProperty => "unknown-property",
    UnexpectedArgument => "unexpected-argument",
    MissingField => "missing-field",
    WrongType => "wrong-type",
    DuplicateField => "duplicate-field",
    DuplicateName => "duplicate-name",
    UnresolvedReference => "unresolved-reference",
    InvalidName => "invalid-name",
    InvalidReleaseName => "invalid-release-name",
    InvalidVersion => "invalid-version",
    InvalidDuration => "invalid-duration",
    InvalidImage => "invalid-image",
    InvalidLabel => "invalid-label",
    InvalidSelector => "invalid-selector",
    InvalidPort => "invalid-port",
    InvalidValue => "invalid-value",
    FileNotFound => "file-not-found",
    InvalidFile => "invalid-file",
    NeedsCycle => "needs-cycle",
    NamespaceNotOwned => "namespace-not-owned",
    NamespaceOverlap => "namespace-overlap",
    ReservedNamespace => "reserved-namespace",
    TenantNotAdmitted => "tenant-not-admitted",
    ValuesSchema => "values-schema",
    LockOutdated => "lock-outdated",
    SelectorMatchesNothing => "selector-matches-nothing",
    MisplacedSetting => "misplaced-setting",
    TooDeep => "too-deep",
    HostPath => "host-path",
    PrivilegedOption => "privileged-option",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A labelled span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What the reader should see there.
    pub text: String,
}

/// One problem found in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable code.
    pub code: Code,
    /// Error or warning.
    pub severity: Severity,
    /// One-line message, no trailing period.
    pub message: String,
    /// The span the diagnostic is about.
    pub primary: Label,
    /// Other relevant spans ("first defined here").
    pub secondary: Vec<Label>,
    /// What would be valid, or how to fix it.
    pub help: Option<String>,
}

/// Longest message, label or help kept, in bytes: they may quote the input, which may be huge.
const MAX_TEXT: usize = 2000;

impl Diagnostic {
    /// An error at `span`.
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Self {
        let message = harmony_schemas::shorten(&message.into(), MAX_TEXT);
        Diagnostic { code, severity: Severity::Error, message, primary: Label { span, text: String::new() }, secondary: Vec::new(), help: None }
    }

    /// A warning at `span`.
    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, span, message) }
    }

    /// Sets the primary label's text.
    pub fn label(mut self, text: impl Into<String>) -> Self {
        self.primary.text = harmony_schemas::shorten(&text.into(), MAX_TEXT);
        self
    }

    /// Adds a secondary label.
    pub fn with(mut self, span: Span, text: impl Into<String>) -> Self {
        self.secondary.push(Label { span, text: harmony_schemas::shorten(&text.into(), MAX_TEXT) });
        self
    }

    /// Sets the help line.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(harmony_schemas::shorten(&help.into(), MAX_TEXT));
        self
    }

    /// 1-based line and column (in characters) of the primary span's start and end.
    pub fn location(&self, sources: &Sources) -> Location {
        let file = sources.file(self.primary.span.file);
        let (line, column) = file.line_col(self.primary.span.start);
        let (end_line, end_column) = file.line_col(self.primary.span.start + self.primary.span.len);
        Location { path: file.path.clone(), line, column, end_line, end_column }
    }
}

/// Where a diagnostic is, for machine-readable output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// Repository-relative path, `/`-separated.
    pub path: String,
    /// 1-based line of the start.
    pub line: usize,
    /// 1-based column (characters) of the start.
    pub column: usize,
    /// 1-based line of the end.
    pub end_line: usize,
    /// 1-based column of the end (exclusive).
    pub end_column: usize,
}

/// Sorts diagnostics by file path, position, then code, and drops exact duplicates.
pub fn sort(diags: &mut Vec<Diagnostic>, sources: &Sources) {
    diags.sort_by(|a, b| {
        let pa = &sources.file(a.primary.span.file).path;
        let pb = &sources.file(b.primary.span.file).path;
        (pa, a.primary.span.start, a.primary.span.len, a.code, &a.message).cmp(&(pb, b.primary.span.start, b.primary.span.len, b.code, &b.message))
    });
    diags.dedup();
}

/// Lines longer than this many bytes, and labels longer than [`LONG_LABEL`], are rendered as
/// excerpts: miette lays a whole line out, and panics on a label past column 65,535.
const LONG_LINE: usize = 1000;
const LONG_LABEL: usize = 2000;
/// Bytes of an excerpt on each side of its label, and at most of the label itself.
const EXCERPT: usize = 60;

/// A diagnostic bound to its sources, implementing [`miette::Diagnostic`] for rendering.
struct Report<'a> {
    diag: &'a Diagnostic,
    /// The primary label's file.
    view: View<'a>,
    /// Labels in the primary file; labels elsewhere (all secondary labels when the view shows
    /// excerpts) become related reports.
    related: Vec<Related<'a>>,
}

struct Related<'a> {
    label: &'a Label,
    view: View<'a>,
}

/// A source file as miette reads it. miette's own reader scans a file from its start for every
/// label (quadratic in a big file's diagnostics); this one reads only the lines around a span.
/// With `excerpt`, a read returns a few bytes around the span, within its first line.
#[derive(Clone, Copy)]
struct View<'a> {
    file: &'a SourceFile,
    excerpt: bool,
}

impl<'a> View<'a> {
    fn new(label: &Label, sources: &'a Sources, excerpt: bool) -> Self {
        View { file: sources.file(label.span.file), excerpt }
    }

    /// The label's span as shown: in an excerpt, at most [`EXCERPT`] bytes within its first line.
    fn span(&self, label: &Label) -> (usize, usize) {
        if !self.excerpt {
            return (label.span.start, label.span.len);
        }
        let text = self.file.text.as_str();
        let (_, _, line_end) = self.file.line_bounds(label.span.start);
        let start = text.floor_char_boundary(label.span.start.min(text.len()));
        let end = text.ceil_char_boundary(label.span.start.saturating_add(label.span.len).min(line_end).min(start + EXCERPT).max(start));
        (start, end - start)
    }
}

/// Whether a label is long or on a long line.
fn needs_excerpts(label: &Label, sources: &Sources) -> bool {
    let file = sources.file(label.span.file);
    let (_, s0, e0) = file.line_bounds(label.span.start);
    let (_, s1, e1) = file.line_bounds(label.span.start.saturating_add(label.span.len));
    label.span.len > LONG_LABEL || e0 - s0 > LONG_LINE || e1 - s1 > LONG_LINE
}

impl miette::SourceCode for View<'_> {
    fn read_span<'b>(
        &'b self,
        span: &miette::SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'b> + 'b>, miette::MietteError> {
        let (file, text) = (self.file, self.file.text.as_str());
        if self.excerpt {
            let start = text.floor_char_boundary(span.offset().min(text.len()));
            let (line, line_start, line_end) = file.line_bounds(start);
            let end = text.ceil_char_boundary(span.offset().saturating_add(span.len()).min(line_end).max(start));
            let (from, to) = if before == 0 && after == 0 {
                (start, end)
            } else {
                let from = text.floor_char_boundary(start.saturating_sub(EXCERPT).max(line_start).min(start));
                (from, text.ceil_char_boundary(end.saturating_add(EXCERPT).min(line_end)).max(end))
            };
            return Ok(Box::new(miette::MietteSpanContents::new_named(
                file.path.clone(),
                &text.as_bytes()[from..to],
                (from, to - from).into(),
                line,
                from - line_start,
                0,
            )));
        }
        // miette's reader on just the lines it can need, its answer moved back into the file.
        let first = file.line_of(span.offset()).saturating_sub(before);
        let last = file.line_of(span.offset().saturating_add(span.len())).saturating_add(after).saturating_add(1);
        let (from, to) = file.lines_range(first, last);
        let local = miette::SourceSpan::new(span.offset().saturating_sub(from).into(), span.len());
        let inner = text[from..to].read_span(&local, before, after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            file.path.clone(),
            inner.data(),
            (inner.span().offset() + from, inner.span().len()).into(),
            inner.line() + first,
            inner.column(),
            inner.line_count() + first,
        )))
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.diag, f)
    }
}
impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}
impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.diag.code.as_str()))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diag.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.view)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let file = self.diag.primary.span.file;
        let excerpt = self.view.excerpt;
        let primary = std::iter::once(&self.diag.primary);
        let same_file = self.diag.secondary.iter().filter(move |l| l.span.file == file && !excerpt);
        Some(Box::new(primary.chain(same_file).enumerate().map(|(i, l)| {
            let text = (!l.text.is_empty()).then(|| l.text.clone());
            let span = self.view.span(l);
            if i == 0 { miette::LabeledSpan::new_primary_with_span(text, span) } else { miette::LabeledSpan::new_with_span(text, span) }
        })))
    }
    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn miette::Diagnostic> + 'b>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(self.related.iter().map(|r| r as &dyn miette::Diagnostic)))
    }
}

impl fmt::Debug for Related<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.label, f)
    }
}
impl fmt::Display for Related<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label.text)
    }
}
impl std::error::Error for Related<'_> {}
impl miette::Diagnostic for Related<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        Some(miette::Severity::Advice)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.view)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(miette::LabeledSpan::new_primary_with_span(None, self.view.span(self.label)))))
    }
}

/// Renders one diagnostic with miette's graphical handler.
pub fn render(diag: &Diagnostic, sources: &Sources, handler: &miette::GraphicalReportHandler) -> String {
    let file = diag.primary.span.file;
    let excerpt = std::iter::once(&diag.primary).chain(&diag.secondary).any(|l| needs_excerpts(l, sources));
    let related = diag
        .secondary
        .iter()
        .filter(|l| excerpt || l.span.file != file)
        .map(|label| Related { label, view: View::new(label, sources, excerpt) })
        .collect();
    let report = Report { diag, view: View::new(&diag.primary, sources, excerpt), related };
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = handler.render_report(&mut out, &report);
    out
}
