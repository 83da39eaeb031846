//! OCI registries: charts as Helm pushes them (one layer of media type
//! `application/vnd.cncf.helm.chart.content.v1.tar+gzip`), through `oci-client`.

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::Options;

/// Helm's chart layer media type (helm/helm v4 `pkg/registry/constants.go`).
const CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The distribution spec's manifest size limit that registries enforce (4 MiB).
const MAX_MANIFEST_BYTES: usize = 4 << 20;

fn client(opts: &Options) -> Result<Client, String> {
    crate::http::install_crypto_provider();
    let mut config = ClientConfig { protocol: if opts.plain_http { ClientProtocol::Http } else { ClientProtocol::Https }, ..ClientConfig::default() };
    config.connect_timeout = Some(std::time::Duration::from_secs(30));
    if let Some(pem) = opts.ca_pem()? {
        config.extra_root_certificates.push(Certificate { encoding: CertificateEncoding::Pem, data: pem });
    }
    Ok(Client::new(config))
}

/// `oci://host/path/name` → the reference without a tag.
fn reference(chart: &str, tag: Option<&str>) -> Result<Reference, String> {
    let rest = chart.strip_prefix("oci://").ok_or_else(|| format!("`{chart}` is not an oci:// reference"))?;
    if rest.contains('@') || rest.rsplit('/').next().is_some_and(|last| last.contains(':')) {
        return Err(format!("`{chart}`: give the version with `version`, not as a tag or digest in the reference"));
    }
    let s = match tag {
        Some(t) => format!("{rest}:{t}"),
        None => rest.to_string(),
    };
    Reference::try_from(s.as_str()).map_err(|e| format!("`{chart}` is not an OCI reference: {e}"))
}

/// Basic credentials for the reference's registry when configured ([`crate::auth`]); oci-client
/// sends them as basic authentication or trades them for a bearer token, as the registry's
/// challenge asks.
fn auth(r: &Reference) -> Result<RegistryAuth, String> {
    Ok(match crate::auth::lookup(r.resolve_registry())? {
        Some(c) => RegistryAuth::Basic(c.username, c.password),
        None => RegistryAuth::Anonymous,
    })
}

/// The chart layer of a chart manifest.
async fn chart_layer(client: &Client, r: &Reference, auth: &RegistryAuth) -> Result<oci_client::manifest::OciDescriptor, String> {
    let (raw, _) = client.pull_manifest_raw(r, auth, &[OCI_MANIFEST]).await.map_err(|e| format!("{r}: {}", crate::http::error_chain(&e)))?;
    if raw.len() > MAX_MANIFEST_BYTES {
        return Err(format!("{r}: the manifest is larger than {MAX_MANIFEST_BYTES} bytes"));
    }
    let manifest: OciImageManifest = serde_json::from_slice(&raw).map_err(|e| format!("{r}: not an OCI image manifest: {e}"))?;
    let layers: Vec<_> = manifest.layers.into_iter().filter(|l| l.media_type == CHART_LAYER).collect();
    match <[_; 1]>::try_from(layers) {
        Ok([l]) => Ok(l),
        Err(v) => Err(format!("{r}: not a Helm chart: {} layers of type {CHART_LAYER}, Helm pushes exactly one", v.len())),
    }
}

/// The chart layer's bytes, at most [`crate::MAX_ARCHIVE_BYTES`], verified against its digest.
async fn pull_layer(client: &Client, r: &Reference, layer: &oci_client::manifest::OciDescriptor) -> Result<Vec<u8>, String> {
    use futures::StreamExt as _;
    let max = crate::MAX_ARCHIVE_BYTES;
    if layer.size < 0 || layer.size as u64 > max {
        return Err(format!("{r}: the chart layer's size {} is outside 0..={max} bytes", layer.size));
    }
    let mut stream = client.pull_blob_stream(r, layer).await.map_err(|e| format!("{r}: {}", crate::http::error_chain(&e)))?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("{r}: {}", crate::http::error_chain(&e)))?;
        if body.len() as u64 + chunk.len() as u64 > max.min(layer.size as u64) {
            return Err(format!("{r}: the chart layer is larger than its manifest says ({} bytes)", layer.size));
        }
        body.extend_from_slice(&chunk);
    }
    let got = crate::digest_of(&body);
    if got != layer.digest {
        return Err(format!("{r}: the chart layer has digest {got}, its manifest says {}", layer.digest));
    }
    Ok(body)
}

/// `chart "oci://…" version=C`: the tag Helm picks, its URL and archive.
pub(crate) async fn resolve(chart: &str, constraint: &str, opts: &Options) -> Result<(String, Option<String>, Vec<u8>), String> {
    let client = client(opts)?;
    let repo = reference(chart, None)?;
    let auth = auth(&repo)?;
    // OCI tags cannot hold `+`: Helm writes `_` for it (helm/helm v4 pkg/registry/client.go).
    let tags = client.list_tags(&repo, &auth, None, None).await.map_err(|e| format!("{chart}: listing tags: {}", crate::http::error_chain(&e)))?;
    let versions: Vec<String> = tags.tags.iter().map(|t| t.replace('_', "+")).collect();
    let Some(version) = crate::pick(&versions, constraint)? else {
        return Err(format!("{chart}: no tag satisfies `{constraint}` (tags: {})", versions.iter().take(10).cloned().collect::<Vec<_>>().join(", ")));
    };
    let tag = version.replace('+', "_");
    let r = reference(chart, Some(&tag))?;
    let layer = chart_layer(&client, &r, &auth).await?;
    let archive = pull_layer(&client, &r, &layer).await?;
    Ok((format!("{chart}:{tag}"), Some(version.to_string()), archive))
}

/// The archive of `oci://…:TAG` whose chart layer must have `digest`.
pub(crate) async fn fetch(url: &str, digest: &str, opts: &Options) -> Result<Vec<u8>, String> {
    let client = client(opts)?;
    let (chart, tag) = url.rsplit_once(':').filter(|(c, t)| !t.contains('/') && c.contains('/')).ok_or_else(|| format!("`{url}` names no tag"))?;
    let r = reference(chart, Some(tag))?;
    let auth = auth(&r)?;
    let layer = chart_layer(&client, &r, &auth).await?;
    if layer.digest != digest {
        return Err(format!("{url} now has digest {}, harmony.lock says {digest}: the chart was republished; `harmony charts lock --update` resolves it again", layer.digest));
    }
    pull_layer(&client, &r, &layer).await
}
