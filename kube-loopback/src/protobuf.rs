//! Just enough of Kubernetes' protobuf encoding to read what client-go's typed clients send.
//!
//! client-go's typed clientsets (Helm's release storage among them) send core objects as
//! `application/vnd.kubernetes.protobuf`: the magic `k8s\0`, then a `runtime.Unknown` message
//! (`typeMeta` = 1, `raw` = 2) whose `raw` is the object's own message, with the field numbers
//! of `k8s.io/api/core/v1/generated.proto` and `k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto`.
//! This decodes the types such clients write — `Secret`, `ConfigMap`, `Namespace` — into the
//! JSON the rest of the server stores. Anything else is refused with 415, so a client that
//! needs more fails loudly. Responses are always JSON, which client-go accepts.

use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

/// One field: number and value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (num, wire) = (key >> 3, key & 7);
        match wire {
            0 => out.push((num, Field::Varint(varint(buf, &mut pos)?))),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| "length overflow")?;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len()).ok_or("truncated field")?;
                out.push((num, Field::Bytes(&buf[pos..end])));
                pos = end;
            }
            1 => pos += 8,
            5 => pos += 4,
            w => return Err(format!("unsupported wire type {w}")),
        }
    }
    Ok(out)
}

fn string(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in string field".to_string())
}

/// A `map<string, V>` entry: key = 1, value = 2.
fn map_entry(b: &[u8]) -> Result<(String, &[u8]), String> {
    let (mut k, mut v) = (String::new(), &b[..0]);
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => k = string(x)?,
            (2, Field::Bytes(x)) => v = x,
            _ => {}
        }
    }
    Ok((k, v))
}

fn object_meta(b: &[u8]) -> Result<Value, String> {
    let mut m = Map::new();
    let (mut labels, mut annotations) = (Map::new(), Map::new());
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => _ = m.insert("name".into(), string(x)?.into()),
            (2, Field::Bytes(x)) => _ = m.insert("generateName".into(), string(x)?.into()),
            (3, Field::Bytes(x)) => _ = m.insert("namespace".into(), string(x)?.into()),
            (5, Field::Bytes(x)) => _ = m.insert("uid".into(), string(x)?.into()),
            (6, Field::Bytes(x)) => _ = m.insert("resourceVersion".into(), string(x)?.into()),
            (11, Field::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                labels.insert(k, string(v)?.into());
            }
            (12, Field::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                annotations.insert(k, string(v)?.into());
            }
            _ => {}
        }
    }
    m.retain(|_, v| v.as_str() != Some(""));
    if !labels.is_empty() {
        m.insert("labels".into(), labels.into());
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), annotations.into());
    }
    Ok(Value::Object(m))
}

fn base64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Decodes a protobuf request body into the object's JSON form.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body.strip_prefix(MAGIC).ok_or("missing the k8s protobuf magic number")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &rest[..0]);
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (n, f) in fields(tm)? {
                    match (n, f) {
                        (1, Field::Bytes(x)) => api_version = string(x)?,
                        (2, Field::Bytes(x)) => kind = string(x)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(x)) => raw = x,
            _ => {}
        }
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), api_version.clone().into());
    obj.insert("kind".into(), kind.clone().into());
    let (mut data, mut string_data, mut binary_data) = (Map::new(), Map::new(), Map::new());
    for (n, f) in fields(raw)? {
        match (kind.as_str(), n, f) {
            (_, 1, Field::Bytes(x)) => _ = obj.insert("metadata".into(), object_meta(x)?),
            ("Secret", 2, Field::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                data.insert(k, base64(v).into());
            }
            ("Secret", 3, Field::Bytes(x)) => _ = obj.insert("type".into(), string(x)?.into()),
            ("Secret", 4, Field::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                string_data.insert(k, string(v)?.into());
            }
            ("Secret", 5, Field::Varint(v)) => _ = obj.insert("immutable".into(), (v != 0).into()),
            ("ConfigMap", 2, Field::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                data.insert(k, string(v)?.into());
            }
            ("ConfigMap", 3, Field::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                binary_data.insert(k, base64(v).into());
            }
            ("ConfigMap", 4, Field::Varint(v)) => _ = obj.insert("immutable".into(), (v != 0).into()),
            ("Secret" | "ConfigMap" | "Namespace", _, _) => {}
            _ => return Err(format!("{api_version} {kind} in protobuf is not supported by the loopback server; send JSON")),
        }
    }
    for (name, m) in [("data", data), ("stringData", string_data), ("binaryData", binary_data)] {
        if !m.is_empty() {
            obj.insert(name.into(), m.into());
        }
    }
    Ok(json!(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(num << 3 | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_a_secret_as_client_go_sends_it() {
        let entry = |k: &[u8], v: &[u8]| [field(1, k), field(2, v)].concat();
        let meta = [field(1, b"sh.helm.release.v1.demo.v1"), field(3, b"default"), field(11, &entry(b"owner", b"helm"))].concat();
        let secret = [field(1, &meta), field(2, &entry(b"release", b"\x1f\x8b")), field(3, b"helm.sh/release.v1")].concat();
        let type_meta = [field(1, b"v1"), field(2, b"Secret")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &secret)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1", "data": {"release": "H4s="},
                "metadata": {"name": "sh.helm.release.v1.demo.v1", "namespace": "default", "labels": {"owner": "helm"}}})
        );
        assert!(decode(b"k8s\0\x0a").is_err());
        assert!(decode(b"{}").is_err());
    }
}
