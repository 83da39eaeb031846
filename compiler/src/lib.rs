//! Harmony's repository compiler: KDL files → typed model → checks → compiled units.
//!
//! ```text
//! *.kdl ──parse (parallel)──▶ kdl::KdlDocument ──lower──▶ model::Declarations
//!       ──check──▶ diagnostics + facts ──compile──▶ CompiledRepo (units, hashes, DAG)
//! ```
//!
//! The main entry point is [`compile_repo`]: it reads a repository through a [`RepoFs`]
//! and returns the sources, every diagnostic (sorted by file and position) and, when there
//! are no errors, the [`CompiledRepo`].
//!
//! ```
//! use harmony_compiler::{compile_repo, MemFs};
//! let mut fs = MemFs::new();
//! fs.insert("main.kdl", "tenant acme { namespaces acme-prod }\ncluster prod\n");
//! let out = compile_repo(&fs).unwrap();
//! assert!(out.diagnostics.is_empty());
//! assert_eq!(out.repo.unwrap().units.len(), 0); // no releases or devices yet
//! ```
//!
//! Design choices:
//! - **Pure.** No network, clock or randomness; file access only through [`RepoFs`]. The
//!   same repository always compiles to byte-identical units and hashes.
//! - **Every error in one run.** Lowering keeps going past bad values (they become `None`
//!   in the model) and checking skips what it cannot judge, so one mistake is reported once,
//!   without cascades, alongside every other mistake.
//! - **Parse in parallel.** kdl-rs parses at a few MB/s; files are parsed and lowered on a
//!   rayon pool, and everything after is linear in the size of the model.
//! - **Valid by construction.** The compiled units hold validated types (`Name`,
//!   `ReleaseName`, `ImageRef`, `Duration`…), never raw strings that might be malformed.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod check;
pub mod compile;
pub mod diag;
pub mod fmt;
pub mod hash;
pub mod lower;
pub mod model;
pub(crate) mod parse;
pub mod select;
pub mod source;
pub mod validate;

use rayon::prelude::*;

pub use compile::{CompiledRepo, Unit, UnitContent, UnitId};
pub use diag::{Code, Diagnostic, Severity, Span};
pub use source::{DiskFs, FileId, MemFs, RepoFs, SourceFile, Sources};

/// The result of compiling a repository.
#[derive(Debug)]
pub struct Output {
    /// Every KDL file read.
    pub sources: Sources,
    /// Every problem found, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// The compiled repository, when there are no errors.
    pub repo: Option<CompiledRepo>,
    /// Every remote chart releases declare, sorted (what `harmony charts lock` resolves).
    pub remote_charts: Vec<RemoteChart>,
}

/// A remote chart as a release declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteChart {
    /// `chart` as written.
    pub chart: String,
    /// `repo=`, if any.
    pub repo: Option<String>,
    /// `version` as written (exact or a range).
    pub constraint: String,
    /// `path:line` of the `chart`.
    pub declared_at: String,
}

impl Output {
    /// Number of errors.
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error).count()
    }
    /// Number of warnings.
    pub fn warnings(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Warning).count()
    }
}

/// The name of the repository settings file at the root.
pub const SETTINGS_FILE: &str = "harmony.kdl";

/// Parsed KDL documents by file content, shared between compilations of similar trees
/// (`harmony diff` compiles two revisions that mostly hold the same files).
#[derive(Default)]
pub struct ParseCache(std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<kdl::KdlDocument>>>);

impl ParseCache {
    fn parse(&self, text: &str) -> Result<std::sync::Arc<kdl::KdlDocument>, parse::ParseError> {
        let key = hash::sha256_hex(text.as_bytes());
        if let Some(doc) = self.0.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(doc);
        }
        let doc = std::sync::Arc::new(parse::parse(text)?);
        if let Ok(mut m) = self.0.lock() {
            m.insert(key, doc.clone());
        }
        Ok(doc)
    }
}

/// Reads, checks and compiles a repository. Fails only when the repository cannot be listed.
pub fn compile_repo(fs: &dyn RepoFs) -> std::io::Result<Output> {
    compile_repo_cached(fs, &ParseCache::default())
}

/// [`compile_repo`], reusing (and filling) a cache of parsed files.
pub fn compile_repo_cached(fs: &dyn RepoFs, cache: &ParseCache) -> std::io::Result<Output> {
    let mut paths = fs.kdl_files()?;
    // The root settings may exclude files: read them first.
    let mut excluded: Option<globset::GlobSet> = None;
    let mut exclude_diags = Vec::new();
    if paths.iter().any(|p| p == SETTINGS_FILE) {
        let text = String::from_utf8_lossy(&fs.read(SETTINGS_FILE)?).into_owned();
        if let Ok(doc) = parse::parse(&text) {
            let (decls, _) = lower::lower_file(FileId(0), SETTINGS_FILE, &doc, true);
            let mut builder = globset::GlobSetBuilder::new();
            for g in decls.settings.iter().flat_map(|s| &s.exclude) {
                match globset::GlobBuilder::new(&g.value).literal_separator(true).build() {
                    Ok(glob) => {
                        builder.add(glob);
                    }
                    Err(e) => exclude_diags.push(
                        Diagnostic::error(Code::InvalidValue, g.span, format!("`{}` is not a glob", g.value))
                            .label(e.kind().to_string())
                            .help("use * within a path segment and ** across segments, e.g. scratch/**"),
                    ),
                }
            }
            excluded = builder.build().ok();
        }
    }
    if let Some(set) = &excluded {
        paths.retain(|p| p == SETTINGS_FILE || !set.is_match(p));
    }
    // Read and parse in parallel.
    let span = tracing::info_span!("parse", files = paths.len()).entered();
    type Parsed = Result<std::sync::Arc<kdl::KdlDocument>, Vec<Diagnostic>>;
    let parsed: Vec<(String, String, Parsed)> = paths
        .into_par_iter()
        .enumerate()
        .map(|(i, path)| {
            let file = FileId(i as u32);
            let bytes = fs.read(&path).unwrap_or_default();
            match String::from_utf8(bytes) {
                Ok(text) => {
                    let doc = cache.parse(&text).map_err(|e| parse_diags(file, &e));
                    (path, text, doc)
                }
                Err(e) => {
                    let valid = e.utf8_error().valid_up_to();
                    let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
                    let d = Diagnostic::error(Code::Syntax, Span { file, start: valid, len: 0 }, "file is not valid UTF-8")
                        .label("invalid byte here")
                        .help("KDL files are UTF-8 text");
                    (path, text, Err(vec![d]))
                }
            }
        })
        .collect();
    drop(span);
    let span = tracing::info_span!("lower").entered();
    let mut sources = Sources::default();
    let lowered: Vec<(model::Declarations, Vec<Diagnostic>)> = {
        let mut docs = Vec::with_capacity(parsed.len());
        for (path, text, doc) in parsed {
            let id = sources.add(path, text);
            docs.push((id, doc));
        }
        docs.into_par_iter()
            .map(|(id, doc)| match doc {
                Ok(doc) => {
                    let path = &sources.file(id).path;
                    lower::lower_file(id, path, &doc, path == SETTINGS_FILE)
                }
                Err(diags) => (model::Declarations::default(), diags),
            })
            .collect()
    };
    let mut decls = model::Declarations::default();
    let mut diagnostics = Vec::new();
    // The settings file is file 0 when present (paths are sorted and "harmony.kdl" is at the root).
    for d in exclude_diags {
        let settings_id = sources.iter().find(|(_, f)| f.path == SETTINGS_FILE).map(|(id, _)| id);
        if let Some(id) = settings_id {
            diagnostics.push(Diagnostic { primary: diag::Label { span: Span { file: id, ..d.primary.span }, ..d.primary.clone() }, ..d });
        }
    }
    for (d, diags) in lowered {
        decls.extend(d);
        diagnostics.extend(diags);
    }
    drop(span);
    let span = tracing::info_span!("check").entered();
    let (index, facts) = check::check(&decls, fs, &mut diagnostics);
    drop(span);
    // A file that failed to parse declares nothing, so references to what it declared would
    // all be reported as unknown: noise that hides the one error that matters.
    if diagnostics.iter().any(|d| d.code == Code::Syntax) {
        diagnostics.retain(|d| d.code != Code::UnresolvedReference);
    }
    let has_errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    let span = tracing::info_span!("compile").entered();
    let repo = if has_errors { None } else { compile::compile(&decls, &index, &facts) };
    drop(span);
    diag::sort(&mut diagnostics, &sources);
    let remote_charts = remote_charts(&decls, &sources);
    Ok(Output { sources, diagnostics, repo, remote_charts })
}

/// Every remote chart a release declares (with a `version`), for `harmony charts lock`,
/// whether or not the repository compiles (an outdated lock is an error of its own).
fn remote_charts(decls: &model::Declarations, sources: &Sources) -> Vec<RemoteChart> {
    let mut out: Vec<RemoteChart> = decls
        .releases
        .iter()
        .filter_map(|r| {
            let c = r.chart.as_ref()?;
            let model::ChartSource::Remote { chart, repo } = &c.value else { return None };
            let v = r.version.as_ref()?;
            let file = sources.file(c.span.file);
            let (line, _) = file.line_col(c.span.start);
            Some(RemoteChart { chart: chart.clone(), repo: repo.clone(), constraint: v.value.clone(), declared_at: format!("{}:{line}", file.path) })
        })
        .collect();
    out.sort_by(|a, b| (&a.chart, &a.repo, &a.constraint, &a.declared_at).cmp(&(&b.chart, &b.repo, &b.constraint, &b.declared_at)));
    out
}

fn parse_diags(file: FileId, e: &parse::ParseError) -> Vec<Diagnostic> {
    use parse::{Depth, MAX_DEPTH, MAX_STACK, ParseError};
    let deep = match e {
        ParseError::Kdl(e) => return syntax_diags(file, e),
        ParseError::TooDeep(deep) => deep,
    };
    let span = Span { file, start: deep.offset, len: deep.len };
    vec![match deep.what {
        Depth::Blocks => Diagnostic::error(Code::TooDeep, span, format!("blocks nest deeper than {MAX_DEPTH} levels"))
            .label(format!("block {} opens here; the file is not read further", MAX_DEPTH + 1))
            .help(format!("a file nests at most {MAX_DEPTH} `{{ }}` blocks; flatten the values tree, or move it into a values file (`values-file`)")),
        Depth::Comments => Diagnostic::error(Code::TooDeep, span, format!("`/* */` comments nest deeper than {MAX_DEPTH} levels"))
            .label(format!("comment {} opens here; the file is not read further", MAX_DEPTH + 1))
            .help("close the comments you open, or comment out with `//` or `/-`"),
        Depth::Size => Diagnostic::error(Code::TooDeep, span, "too many `{`, `*` and `/` to parse this file safely")
            .label("the file is not read")
            .help(format!(
                "split the file: its blocks and comment characters must fit a {} MiB parser stack (about 30,000 blocks per file)",
                MAX_STACK >> 20
            )),
    }]
}

fn syntax_diags(file: FileId, e: &kdl::KdlError) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = e
        .diagnostics
        .iter()
        .map(|d| {
            let mut diag = Diagnostic::error(Code::Syntax, Span::from_kdl(file, d.span), d.message.clone().unwrap_or_else(|| "invalid KDL".into()))
                .label(d.label.clone().unwrap_or_else(|| "here".into()));
            diag.help = Some(d.help.clone().unwrap_or_else(|| "see https://kdl.dev for KDL v2 syntax".into()));
            diag
        })
        .collect();
    if out.is_empty() {
        out.push(Diagnostic::error(Code::Syntax, Span { file, start: 0, len: 0 }, "invalid KDL").help("see https://kdl.dev for KDL v2 syntax"));
    }
    out
}
