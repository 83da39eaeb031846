//! Diagnostics: what the compiler reports, with stable codes, spans, messages and help.
//!
//! A [`Diagnostic`] is plain data (file id + byte range); [`render`] turns it into miette's
//! graphical report, and [`Diagnostic::location`] into line/column for JSON and GitHub output.

use std::fmt;

use serde::Serialize;

use crate::source::{FileId, Sources};

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
    SelectorMatchesNothing => "selector-matches-nothing",
    MisplacedSetting => "misplaced-setting",
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

impl Diagnostic {
    /// An error at `span`.
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic { code, severity: Severity::Error, message: message.into(), primary: Label { span, text: String::new() }, secondary: Vec::new(), help: None }
    }

    /// A warning at `span`.
    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, span, message) }
    }

    /// Sets the primary label's text.
    pub fn label(mut self, text: impl Into<String>) -> Self {
        self.primary.text = text.into();
        self
    }

    /// Adds a secondary label.
    pub fn with(mut self, span: Span, text: impl Into<String>) -> Self {
        self.secondary.push(Label { span, text: text.into() });
        self
    }

    /// Sets the help line.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
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

/// A diagnostic bound to its sources, implementing [`miette::Diagnostic`] for rendering.
struct Report<'a> {
    diag: &'a Diagnostic,
    sources: &'a Sources,
    /// Labels in the primary file; labels elsewhere become related reports.
    related: Vec<Related<'a>>,
}

struct Related<'a> {
    label: &'a Label,
    sources: &'a Sources,
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
        Some(self.sources.file(self.diag.primary.span.file).named())
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let file = self.diag.primary.span.file;
        let primary = std::iter::once(&self.diag.primary);
        let same_file = self.diag.secondary.iter().filter(move |l| l.span.file == file);
        Some(Box::new(primary.chain(same_file).enumerate().map(|(i, l)| {
            let text = (!l.text.is_empty()).then(|| l.text.clone());
            let span = (l.span.start, l.span.len);
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
        Some(self.sources.file(self.label.span.file).named())
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(miette::LabeledSpan::new_primary_with_span(None, (self.label.span.start, self.label.span.len)))))
    }
}

/// Renders one diagnostic with miette's graphical handler.
pub fn render(diag: &Diagnostic, sources: &Sources, handler: &miette::GraphicalReportHandler) -> String {
    let file = diag.primary.span.file;
    let related = diag.secondary.iter().filter(|l| l.span.file != file).map(|label| Related { label, sources }).collect();
    let report = Report { diag, sources, related };
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = handler.render_report(&mut out, &report);
    out
}
