//! Bounded HTTP(S) downloads (Helm repositories' `index.yaml` and archives).

use crate::Options;

/// reqwest and oci-client use rustls without a crypto provider of their own; the process's is
/// `ring` (kube's): installed here when nothing installed one yet. (Enabling a second provider
/// as a feature leaves rustls unable to choose one, and every kube client panics.)
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The client: rustls with the platform's roots, plus `--ca-file`.
pub(crate) fn client(opts: &Options) -> Result<reqwest::Client, String> {
    install_crypto_provider();
    let mut b = reqwest::Client::builder().user_agent(concat!("harmony/", env!("CARGO_PKG_VERSION"))).connect_timeout(std::time::Duration::from_secs(30));
    if let Some(pem) = opts.ca_pem()? {
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("--ca-file: not PEM certificates: {e}"))? {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| format!("cannot make an HTTP client: {e}"))
}

/// GET `url`, at most `max` bytes of body; the error names the URL (never credentials: URLs
/// with a user-info part are refused before any request).
pub(crate) async fn get_bounded(url: &str, max: u64, opts: &Options) -> Result<Vec<u8>, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("a chart URL must not hold credentials (user:password@): give them through the environment (docs/charts.md)".into());
    }
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{url}`: only http:// and https:// are fetched"));
    }
    let client = client(opts)?;
    let host = match parsed.port() {
        Some(p) => format!("{}:{p}", parsed.host_str().unwrap_or_default()),
        None => parsed.host_str().unwrap_or_default().to_string(),
    };
    let mut req = client.get(parsed);
    if let Some(c) = crate::auth::lookup(&host)? {
        req = req.basic_auth(c.username, Some(c.password));
    }
    let mut resp = req.send().await.map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: {}", resp.status()));
    }
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(format!("GET {url}: the response is larger than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {}", error_chain(&e)))? {
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(format!("GET {url}: the response is larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error with its causes (reqwest's own text says little: "error sending request").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
