//! Chart loading: directories and `.tgz` archives, `.helmignore`, `Chart.yaml` validation,
//! and dependencies under `charts/` (directories and archives).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::value::Value;

/// A file in a chart, by its path relative to the chart root.
#[derive(Clone, Debug)]
pub struct File {
    /// Relative path with `/` separators.
    pub name: String,
    /// Content.
    pub data: Vec<u8>,
}

/// A dependency declared in `Chart.yaml`.
#[derive(Clone, Debug, Default)]
pub struct Dependency {
    /// Chart name.
    pub name: String,
    /// Version range.
    pub version: String,
    /// Repository.
    pub repository: String,
    /// `condition`
    pub condition: String,
    /// `tags`
    pub tags: Vec<String>,
    /// `alias`
    pub alias: String,
    /// `import-values` (strings or `{child, parent}` maps).
    pub import_values: Vec<Value>,
    /// Computed by condition/tag processing.
    pub enabled: bool,
}

/// `Chart.yaml`.
#[derive(Clone, Debug)]
pub struct Metadata {
    /// The raw decoded document.
    pub raw: Value,
    /// `name`
    pub name: String,
    /// `version`
    pub version: String,
    /// `apiVersion`
    pub api_version: String,
    /// `type`
    pub chart_type: String,
    /// `kubeVersion`
    pub kube_version: String,
    /// `dependencies`
    pub dependencies: Vec<Dependency>,
}

/// A loaded chart.
#[derive(Clone, Debug)]
pub struct Chart {
    /// `Chart.yaml`.
    pub metadata: Metadata,
    /// `templates/*`.
    pub templates: Vec<File>,
    /// Other files (`.Files`), including `crds/`.
    pub files: Vec<File>,
    /// `values.yaml`, decoded.
    pub values: Value,
    /// Raw `values.yaml` text.
    pub raw_values: String,
    /// `values.schema.json`.
    pub schema: Option<Vec<u8>>,
    /// Subcharts.
    pub dependencies: Vec<Chart>,
    /// Path from the root chart (`root/charts/sub`), set by [`Chart::set_parents`].
    pub full_path: String,
    /// Whether this is the root chart.
    pub is_root: bool,
}

/// Errors loading a chart.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// I/O.
    #[error("{0}")]
    Io(String),
    /// Invalid chart.
    #[error("{0}")]
    Invalid(String),
}

impl Chart {
    /// The chart's name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// CRD files (`crds/`), of this chart and its dependencies.
    pub fn crd_objects(&self) -> Vec<(String, &File)> {
        let mut out = Vec::new();
        for f in &self.files {
            if f.name.starts_with("crds/") && (f.name.ends_with(".yaml") || f.name.ends_with(".yml") || f.name.ends_with(".json")) {
                out.push((format!("{}/{}", self.full_path, f.name), f));
            }
        }
        for d in &self.dependencies {
            out.extend(d.crd_objects());
        }
        out
    }

    /// Recomputes `full_path`/`is_root` from the root down.
    pub fn set_parents(&mut self, parent: Option<&str>) {
        match parent {
            None => {
                self.full_path = self.metadata.name.clone();
                self.is_root = true;
            }
            Some(p) => {
                self.full_path = format!("{p}/charts/{}", self.metadata.name);
                self.is_root = false;
            }
        }
        let fp = self.full_path.clone();
        for d in &mut self.dependencies {
            d.set_parents(Some(&fp));
        }
    }

    /// Loads a chart from a directory or a `.tgz` archive.
    pub fn load(path: &Path) -> Result<Chart, ChartError> {
        Chart::from_files(read_files(path)?)
    }

    /// A chart from the files [`read_files`] returns (in that order): what a saved plan holds
    /// and `apply` renders from, without reading the repository.
    pub fn from_files(files: Vec<File>) -> Result<Chart, ChartError> {
        let mut c = load_files(files)?;
        c.set_parents(None);
        Ok(c)
    }
}

/// The files of a chart directory or `.tgz` archive as the loader reads them (`.helmignore`
/// applied, links kept inside the chart, Helm's size limits), in load order.
pub fn read_files(path: &Path) -> Result<Vec<File>, ChartError> {
    let meta = std::fs::metadata(path).map_err(|e| ChartError::Io(format!("path {:?} not found: {}", path.display().to_string(), e)))?;
    if meta.is_dir() {
        dir_files(path)
    } else {
        let data = std::fs::read(path).map_err(|e| ChartError::Io(e.to_string()))?;
        archive_files(&data)
    }
}

impl Chart {
}

/// `.helmignore` rules.
struct Ignore {
    rules: Vec<(String, bool, bool)>, // pattern, negate, dir only
}

impl Ignore {
    fn parse(text: &str) -> Ignore {
        let mut rules = vec![("templates/.?*".to_string(), false, false)];
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (neg, l) = match l.strip_prefix('!') {
                Some(r) => (true, r),
                None => (false, l),
            };
            let (dir, l) = match l.strip_suffix('/') {
                Some(r) => (true, r),
                None => (false, l),
            };
            rules.push((l.trim_start_matches('/').to_string(), neg, dir));
        }
        Ignore { rules }
    }

    fn ignored(&self, rel: &str, is_dir: bool) -> bool {
        if rel.is_empty() || rel == "." {
            return false;
        }
        let base = rel.rsplit('/').next().unwrap_or(rel);
        let mut ignored = false;
        for (p, neg, dir) in &self.rules {
            if *dir && !is_dir {
                continue;
            }
            let m = if p.contains('/') { fmatch(p, rel) } else { fmatch(p, base) };
            if m {
                ignored = !neg;
            }
        }
        ignored
    }
}

/// Go's `filepath.Match` (no `**`).
fn fmatch(pattern: &str, name: &str) -> bool {
    crate::objects::glob_match(&pattern.replace("**", "*"), name)
}

/// Helm's `MaxDecompressedFileSize`: the largest chart file Helm loads (5 MiB).
pub const MAX_FILE_SIZE: u64 = 5 * 1024 * 1024;

/// Helm's `MaxDecompressedChartSize`: the most an archive may decompress to (100 MiB).
pub const MAX_CHART_SIZE: u64 = 100 * 1024 * 1024;

fn dir_files(root: &Path) -> Result<Vec<File>, ChartError> {
    let top = std::fs::canonicalize(root).map_err(|e| ChartError::Io(format!("{}: {e}", root.display())))?;
    let ignore = match in_chart(&top, &top.join(".helmignore"), ".helmignore") {
        Ok(Some(p)) if p.is_file() => Ignore::parse(&std::fs::read_to_string(&p).map_err(|e| ChartError::Io(e.to_string()))?),
        Ok(_) => Ignore::parse(""),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    walk(&top, &top, "", &ignore, &mut vec![top.clone()], &mut files)?;
    Ok(files)
}

/// Where a chart path really is, if it stays inside the chart directory `top` (canonical):
/// `None` when nothing is there. A symbolic link that resolves outside the chart is refused:
/// Helm follows it (its loader only logs "found symbolic link in path", helm
/// internal/sympath/walk.go), so a chart could read any file of the machine rendering it,
/// e.g. `.Files.Get` of a link to `/etc/passwd` or to the operator's kubeconfig. Harmony
/// renders tenants' charts with the operator's files around: links must stay in the chart.
fn in_chart(top: &Path, p: &Path, rel: &str) -> Result<Option<std::path::PathBuf>, ChartError> {
    let md = match std::fs::symlink_metadata(p) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ChartError::Io(format!("{rel}: {e}"))),
    };
    if !md.file_type().is_symlink() {
        return Ok(Some(p.to_path_buf()));
    }
    let target = std::fs::canonicalize(p).map_err(|e| ChartError::Io(format!("error evaluating symlink {}: {e}", p.display())))?;
    if !target.starts_with(top) {
        return Err(ChartError::Invalid(format!(
            "chart file {rel} is a symbolic link to {}, outside the chart directory {}: Harmony loads no file from outside a chart",
            target.display(),
            top.display()
        )));
    }
    Ok(Some(target))
}

/// Helm's `sympath.Walk` + `LoadDir`: files in lexical order, `.helmignore` applied, links
/// followed only within the chart (`stack`: the directories being walked, to refuse cycles).
fn walk(top: &Path, dir: &Path, rel_dir: &str, ignore: &Ignore, stack: &mut Vec<std::path::PathBuf>, out: &mut Vec<File>) -> Result<(), ChartError> {
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir).map_err(|e| ChartError::Io(e.to_string()))?.filter_map(Result::ok).map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let link = dir.join(&name);
        let rel = if rel_dir.is_empty() { name.to_string_lossy().into_owned() } else { format!("{rel_dir}/{}", name.to_string_lossy()) };
        let Some(p) = in_chart(top, &link, &rel)? else { continue };
        let md = std::fs::metadata(&p).map_err(|e| ChartError::Io(e.to_string()))?;
        if md.is_dir() {
            if ignore.ignored(&rel, true) {
                continue;
            }
            if stack.contains(&p) {
                return Err(ChartError::Invalid(format!("chart directory {rel} is a symbolic link to {}, which contains it: a cycle", p.display())));
            }
            stack.push(p.clone());
            walk(top, &p, &rel, ignore, stack, out)?;
            stack.pop();
            continue;
        }
        if ignore.ignored(&rel, false) {
            continue;
        }
        if !md.is_file() {
            // e.g. a FIFO, which would block reading forever
            return Err(ChartError::Invalid(format!("cannot load irregular file {} as it has file mode type bits set", link.display())));
        }
        if md.len() > MAX_FILE_SIZE {
            return Err(ChartError::Invalid(format!(
                "chart file {} is larger than the maximum file size {MAX_FILE_SIZE}",
                crate::template::fmt::go_quote(&name.to_string_lossy())
            )));
        }
        let data = read_at_most(&p, MAX_FILE_SIZE).map_err(|e| ChartError::Io(format!("error reading {rel}: {e}")))?;
        out.push(File { name: rel, data });
    }
    Ok(())
}

/// A file's content, no more than `max` bytes (the file may grow after it was measured).
fn read_at_most(p: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    std::fs::File::open(p)?.take(max).read_to_end(&mut data)?;
    Ok(data)
}

/// Loads a chart from a gzipped tar archive.
pub fn load_archive(data: &[u8]) -> Result<Chart, ChartError> {
    load_files(archive_files(data)?)
}

/// The files of a gzipped tar chart archive ([`read_files`]).
pub fn archive_files(data: &[u8]) -> Result<Vec<File>, ChartError> {
    let gz = flate2::read::GzDecoder::new(data);
    let mut ar = tar::Archive::new(gz);
    let mut files = Vec::new();
    let entries = ar.entries().map_err(|e| ChartError::Invalid(format!("error reading archive: {e}")))?;
    // Helm's LoadArchiveFiles size limits: a small archive must not decompress to gigabytes.
    let mut remaining = MAX_CHART_SIZE;
    let too_big = || ChartError::Invalid(format!("decompressed chart is larger than the maximum size {MAX_CHART_SIZE}"));
    for e in entries {
        let e = e.map_err(|e| ChartError::Invalid(format!("error reading archive: {e}")))?;
        if !e.header().entry_type().is_file() {
            continue;
        }
        let path = e.path().map_err(|e| ChartError::Invalid(e.to_string()))?.to_string_lossy().replace('\\', "/");
        let size = e.header().size().map_err(|e| ChartError::Invalid(format!("error reading archive: {e}")))?;
        if size > remaining {
            return Err(too_big());
        }
        if size > MAX_FILE_SIZE {
            return Err(ChartError::Invalid(format!(
                "decompressed chart file {} is larger than the maximum file size {MAX_FILE_SIZE}",
                crate::template::fmt::go_quote(&path)
            )));
        }
        let mut buf = Vec::new();
        e.take(remaining).read_to_end(&mut buf).map_err(|e| ChartError::Invalid(e.to_string()))?;
        remaining -= buf.len() as u64;
        if (buf.len() as u64) < size || remaining == 0 {
            return Err(too_big());
        }
        let parts: Vec<&str> = path.splitn(2, '/').collect();
        if parts.len() < 2 {
            continue;
        }
        files.push(File { name: parts[1].to_string(), data: buf });
    }
    if files.is_empty() {
        return Err(ChartError::Invalid("no files in chart archive".into()));
    }
    // apply the archive's .helmignore
    let ignore = files.iter().find(|f| f.name == ".helmignore").map(|f| Ignore::parse(&String::from_utf8_lossy(&f.data))).unwrap_or_else(|| Ignore::parse(""));
    files.retain(|f| {
        !ignore.ignored(&f.name, false)
            && !f
                .name
                .split('/')
                .scan(String::new(), |acc, seg| {
                    if !acc.is_empty() {
                        acc.push('/');
                    }
                    acc.push_str(seg);
                    Some(acc.clone())
                })
                .collect::<Vec<_>>()
                .split_last()
                .map(|(_, dirs)| dirs.iter().any(|d| ignore.ignored(d, true)))
                .unwrap_or(false)
    });
    Ok(files)
}

fn str_field(m: &Value, k: &str) -> String {
    match m {
        Value::Map(m) => match m.borrow().get(k) {
            Some(Value::Str(s)) => s.to_string(),
            Some(Value::Float(f)) => crate::value::format_float_g(*f, -1, 'e'),
            Some(Value::Bool(b)) => b.to_string(),
            _ => String::new(),
        },
        _ => String::new(),
    }
}

fn parse_metadata(data: &[u8]) -> Result<Metadata, ChartError> {
    let text = String::from_utf8_lossy(data);
    let raw = crate::yaml::decode(&text).map_err(|e| ChartError::Invalid(format!("cannot load Chart.yaml: {e}")))?;
    let raw = if raw.is_nil() { Value::empty_map() } else { raw };
    let mut deps = Vec::new();
    if let Value::Map(m) = &raw
        && let Some(Value::List(l, _)) = m.borrow().get("dependencies")
    {
        for d in l.iter() {
            let tags = match d {
                Value::Map(dm) => match dm.borrow().get("tags") {
                    Some(Value::List(t, _)) => t.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
                    _ => vec![],
                },
                _ => vec![],
            };
            let import_values = match d {
                Value::Map(dm) => match dm.borrow().get("import-values") {
                    Some(Value::List(t, _)) => t.as_ref().clone(),
                    _ => vec![],
                },
                _ => vec![],
            };
            deps.push(Dependency {
                name: str_field(d, "name"),
                version: str_field(d, "version"),
                repository: str_field(d, "repository"),
                condition: str_field(d, "condition"),
                tags,
                alias: str_field(d, "alias"),
                import_values,
                enabled: true,
            });
        }
    }
    Ok(Metadata {
        name: str_field(&raw, "name"),
        version: str_field(&raw, "version"),
        api_version: str_field(&raw, "apiVersion"),
        chart_type: str_field(&raw, "type"),
        kube_version: str_field(&raw, "kubeVersion"),
        dependencies: deps,
        raw,
    })
}

fn load_files(files: Vec<File>) -> Result<Chart, ChartError> {
    let mut metadata = None;
    let mut templates = Vec::new();
    let mut other = Vec::new();
    let mut values = Value::empty_map();
    let mut raw_values = String::new();
    let mut schema = None;
    let mut subcharts: BTreeMap<String, Vec<File>> = BTreeMap::new();
    let mut requirements: Option<Vec<u8>> = None;
    for f in files {
        match f.name.as_str() {
            "Chart.yaml" => metadata = Some(parse_metadata(&f.data)?),
            "Chart.lock" | "requirements.lock" => {}
            "values.yaml" => {
                raw_values = String::from_utf8_lossy(&f.data).into_owned();
                values = crate::yaml::decode(&raw_values).map_err(|e| ChartError::Invalid(format!("cannot load values.yaml: {e}")))?;
                if values.is_nil() {
                    values = Value::empty_map();
                }
                if !matches!(values, Value::Map(_)) {
                    return Err(ChartError::Invalid(
                        "cannot load values.yaml: error unmarshaling JSON: json: cannot unmarshal into Go value of type map[string]interface {}".into(),
                    ));
                }
            }
            "values.schema.json" => schema = Some(f.data),
            "requirements.yaml" => requirements = Some(f.data),
            n if n.starts_with("templates/") => templates.push(f),
            n if n.starts_with("charts/") => {
                if n.ends_with(".prov") {
                    other.push(f);
                    continue;
                }
                let rest = &n["charts/".len()..];
                let cname = rest.split('/').next().unwrap_or("").to_string();
                let fname = rest.to_string();
                subcharts.entry(cname).or_default().push(File { name: fname, data: f.data });
            }
            _ => other.push(f),
        }
    }
    let Some(mut metadata) = metadata else {
        return Err(ChartError::Invalid("Chart.yaml file is missing".into()));
    };
    if let Some(req) = requirements
        && metadata.api_version == "v1"
    {
        let r = parse_metadata(&req)?;
        metadata.dependencies = r.dependencies;
    }
    validate_metadata(&metadata)?;
    let mut deps = Vec::new();
    for (cname, files) in subcharts {
        if cname.ends_with(".tgz") || cname.ends_with(".tar.gz") {
            let Some(f) = files.iter().find(|f| f.name == cname) else { continue };
            let c = load_archive(&f.data).map_err(|e| ChartError::Invalid(format!("error unpacking subchart {} in {}: {}", cname, metadata.name, e)))?;
            deps.push(c);
        } else {
            let prefix = format!("{cname}/");
            let sub: Vec<File> = files.into_iter().filter_map(|f| f.name.strip_prefix(&prefix).map(|n| File { name: n.to_string(), data: f.data })).collect();
            if sub.is_empty() {
                continue;
            }
            let c = load_files(sub).map_err(|e| ChartError::Invalid(format!("error unpacking subchart {} in {}: {}", cname, metadata.name, e)))?;
            deps.push(c);
        }
    }
    Ok(Chart { metadata, templates, files: other, values, raw_values, schema, dependencies: deps, full_path: String::new(), is_root: false })
}

fn validate_metadata(m: &Metadata) -> Result<(), ChartError> {
    let v = |s: &str| ChartError::Invalid(format!("validation: {s}"));
    if m.api_version.is_empty() {
        return Err(v("chart.metadata.apiVersion is required"));
    }
    if m.name.is_empty() {
        return Err(v("chart.metadata.name is required"));
    }
    if m.name.contains('/') || m.name.contains('\\') || m.name == "." || m.name == ".." {
        return Err(v(&format!("chart.metadata.name {} is invalid", crate::template::fmt::go_quote(&m.name))));
    }
    if m.version.is_empty() {
        return Err(v("chart.metadata.version is required"));
    }
    if crate::semver::Version::parse(&m.version).is_err() {
        return Err(v(&format!("chart.metadata.version {} is invalid", crate::template::fmt::go_quote(&m.version))));
    }
    if !m.chart_type.is_empty() && m.chart_type != "application" && m.chart_type != "library" {
        return Err(v("chart.metadata.type must be application or library"));
    }
    Ok(())
}
