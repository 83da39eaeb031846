//! Helm repositories: `index.yaml` and the archives it lists (helm/helm v4
//! `pkg/repo/v1/index.go`, `pkg/repo/v1/chartrepo.go`).

use std::collections::BTreeMap;

use crate::Options;

#[derive(serde::Deserialize)]
struct Index {
    #[serde(default)]
    entries: BTreeMap<String, Vec<Option<Entry>>>,
}

#[derive(serde::Deserialize)]
struct Entry {
    #[serde(default)]
    version: String,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    digest: String,
}

/// `chart NAME repo=URL version=C`: the version Helm picks from the repository's index, where
/// its archive is, and the archive (checked against the index's digest when it lists one).
pub(crate) async fn resolve(repo: &str, name: &str, constraint: &str, opts: &Options) -> Result<(String, Option<String>, Vec<u8>), String> {
    let index_url = format!("{}/index.yaml", repo.trim_end_matches('/'));
    let bytes = crate::http::get_bounded(&index_url, crate::MAX_INDEX_BYTES, opts).await?;
    let index: Index = serde_yaml_ng::from_slice(&bytes).map_err(|e| format!("{index_url}: not a Helm repository index: {e}"))?;
    let Some(entries) = index.entries.get(name) else {
        return Err(format!("{index_url} has no chart named `{name}`"));
    };
    let entries: Vec<&Entry> = entries.iter().flatten().collect();
    let versions: Vec<String> = entries.iter().map(|e| e.version.clone()).collect();
    let Some(version) = crate::pick(&versions, constraint)? else {
        return Err(format!("{index_url}: no version of `{name}` satisfies `{constraint}` (published: {})", shown(&versions)));
    };
    let Some(entry) = entries.iter().find(|e| e.version == version) else {
        return Err(format!("{index_url}: `{name}` {version} vanished from the index"));
    };
    let Some(first) = entry.urls.first() else {
        return Err(format!("{index_url}: `{name}` {version} lists no URL"));
    };
    let url = resolve_reference(repo, first)?;
    let archive = crate::http::get_bounded(&url, crate::MAX_ARCHIVE_BYTES, opts).await?;
    if !entry.digest.is_empty() {
        let got = crate::digest_of(&archive);
        if got != format!("sha256:{}", entry.digest) {
            return Err(format!("{url} has digest {got}, the repository's index says sha256:{}: refusing it", entry.digest));
        }
    }
    Ok((url, Some(version.to_string()), archive))
}

/// At most ten versions, for an error message.
fn shown(versions: &[String]) -> String {
    let mut s: Vec<&str> = versions.iter().take(10).map(String::as_str).collect();
    if versions.len() > 10 {
        s.push("…");
    }
    if s.is_empty() { "none".into() } else { s.join(", ") }
}

/// Helm's `ResolveReferenceURL`: an archive URL relative to the repository URL (taken as a
/// directory).
fn resolve_reference(repo: &str, reference: &str) -> Result<String, String> {
    let mut base = reqwest::Url::parse(repo).map_err(|e| format!("repo `{repo}` is not a URL: {e}"))?;
    if !base.path().ends_with('/') {
        let p = format!("{}/", base.path());
        base.set_path(&p);
    }
    base.join(reference).map(|u| u.to_string()).map_err(|e| format!("archive URL `{reference}` in {repo}: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn archive_urls_resolve_against_the_repository_directory() {
        assert_eq!(super::resolve_reference("https://h/charts", "web-1.0.0.tgz").unwrap(), "https://h/charts/web-1.0.0.tgz");
        assert_eq!(super::resolve_reference("https://h/charts/", "x/web-1.0.0.tgz").unwrap(), "https://h/charts/x/web-1.0.0.tgz");
        assert_eq!(super::resolve_reference("https://h/charts", "https://cdn/web.tgz").unwrap(), "https://cdn/web.tgz");
    }
}
