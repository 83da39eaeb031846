//! Source files and the file-system boundary.
//!
//! The compiler never touches the disk itself: it reads through [`RepoFs`], which the CLI
//! implements with [`DiskFs`] and tests with [`MemFs`]. Everything after reading is pure.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Index of a file in [`Sources`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u32);

/// One KDL source file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Repository-relative path with `/` separators.
    pub path: String,
    /// The text, shared with diagnostics.
    pub text: Arc<String>,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// A file from its path and text.
    pub fn new(path: String, text: String) -> Self {
        let text = Arc::new(text);
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile { path, text, line_starts }
    }

    /// 1-based line and character column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_of(offset);
        let start = self.line_starts[line];
        let column = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }

    /// The 0-based line holding byte `offset` and the byte range of that line, without its
    /// line break.
    pub(crate) fn line_bounds(&self, offset: usize) -> (usize, usize, usize) {
        let line = self.line_of(offset);
        let start = self.line_starts[line];
        let end = self.line_starts.get(line + 1).map_or(self.text.len(), |&next| next - 1);
        let end = if end > start && self.text.as_bytes()[end - 1] == b'\r' { end - 1 } else { end };
        (line, start, end.max(start))
    }

    /// The byte range of lines `first..=last` (0-based, clamped to the file), with the last
    /// line's break.
    pub(crate) fn lines_range(&self, first: usize, last: usize) -> (usize, usize) {
        let first = first.min(self.line_starts.len() - 1);
        let end = self.line_starts.get(last.saturating_add(1)).copied().unwrap_or(self.text.len());
        (self.line_starts[first], end.max(self.line_starts[first]))
    }

    /// The 0-based line holding byte `offset`.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset.min(self.text.len())) - 1
    }
}

/// All KDL files of a repository, in path order.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    /// Adds a file and returns its id.
    pub fn add(&mut self, path: String, text: String) -> FileId {
        self.files.push(SourceFile::new(path, text));
        FileId(self.files.len() as u32 - 1)
    }

    /// The file with this id.
    pub fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// Every file with its id.
    pub fn iter(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files.iter().enumerate().map(|(i, f)| (FileId(i as u32), f))
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are no files.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Read access to a repository. Paths are repository-relative, `/`-separated, normalised.
pub trait RepoFs: Sync {
    /// Every `*.kdl` file, sorted, skipping hidden directories and `target/`.
    fn kdl_files(&self) -> io::Result<Vec<String>>;
    /// The bytes of a file.
    fn read(&self, path: &str) -> io::Result<Vec<u8>>;
    /// Whether the path is a directory.
    fn is_dir(&self, path: &str) -> bool;
    /// Whether the path is a regular file.
    fn is_file(&self, path: &str) -> bool;
    /// Every regular file under a directory (recursive), sorted, as repository-relative paths.
    fn files_under(&self, dir: &str) -> io::Result<Vec<String>>;
}

/// A repository on disk.
#[derive(Debug, Clone)]
pub struct DiskFs {
    root: PathBuf,
}

impl DiskFs {
    /// The repository rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DiskFs { root: root.into() }
    }

    fn abs(&self, path: &str) -> PathBuf {
        if path.is_empty() { self.root.clone() } else { self.root.join(path) }
    }

    fn walk(&self, dir: &Path, rel: &str, only_kdl: bool, out: &mut Vec<String>) -> io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let rel_path = if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
            let ty = entry.file_type()?;
            if ty.is_dir() {
                if only_kdl && (name.starts_with('.') || (rel.is_empty() && name == "target")) {
                    continue;
                }
                self.walk(&entry.path(), &rel_path, only_kdl, out)?;
            } else if ty.is_file() && (!only_kdl || name.ends_with(".kdl")) {
                out.push(rel_path);
            }
        }
        Ok(())
    }
}

impl RepoFs for DiskFs {
    fn kdl_files(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        self.walk(&self.root, "", true, &mut out)?;
        Ok(out)
    }
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.abs(path))
    }
    fn is_dir(&self, path: &str) -> bool {
        self.abs(path).is_dir()
    }
    fn is_file(&self, path: &str) -> bool {
        self.abs(path).is_file()
    }
    fn files_under(&self, dir: &str) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        self.walk(&self.abs(dir), dir, false, &mut out)?;
        Ok(out)
    }
}

/// An in-memory repository, for tests and fuzzing.
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    files: BTreeMap<String, Vec<u8>>,
}

impl MemFs {
    /// An empty repository.
    pub fn new() -> Self {
        MemFs::default()
    }

    /// Adds or replaces a file.
    pub fn insert(&mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) {
        self.files.insert(path.into(), contents.into());
    }
}

impl RepoFs for MemFs {
    fn kdl_files(&self) -> io::Result<Vec<String>> {
        Ok(self.files.keys().filter(|p| p.ends_with(".kdl") && !p.split('/').any(|c| c.starts_with('.'))).cloned().collect())
    }
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        self.files.get(path).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn is_dir(&self, path: &str) -> bool {
        let prefix = format!("{path}/");
        self.files.keys().any(|p| p.starts_with(&prefix))
    }
    fn is_file(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }
    fn files_under(&self, dir: &str) -> io::Result<Vec<String>> {
        let prefix = format!("{dir}/");
        Ok(self.files.keys().filter(|p| p.starts_with(&prefix)).cloned().collect())
    }
}

/// Resolves `rel` against the directory of `from` (both repository-relative).
/// Returns `None` when the result is absolute or leaves the repository.
pub fn resolve_relative(from: &str, rel: &str) -> Option<String> {
    if rel.starts_with('/') || rel.is_empty() {
        return None;
    }
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for comp in rel.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_declaring_file() {
        assert_eq!(resolve_relative("fleets/pico.kdl", "../keys/a.pub").as_deref(), Some("keys/a.pub"));
        assert_eq!(resolve_relative("a.kdl", "charts/web").as_deref(), Some("charts/web"));
        assert_eq!(resolve_relative("a.kdl", "./charts//web/").as_deref(), Some("charts/web"));
        assert_eq!(resolve_relative("a.kdl", "../outside"), None);
        assert_eq!(resolve_relative("a.kdl", "/etc/passwd"), None);
    }

    #[test]
    fn line_col_counts_characters() {
        let f = SourceFile::new("x".into(), "ab\nçd\n".into());
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        assert_eq!(f.line_col(5), (2, 2));
        assert_eq!(f.line_col(99), (3, 1));
    }
}
