//! Sprig's hashing and crypto functions. Randomness comes from the injected
//! [`super::Environment`]. RSA, ECDSA (P-256) and Ed25519 keys and X.509 certificates are
//! built here (DER by hand); DSA keys are not supported (see `docs/helm-compatibility.md`).

use std::rc::Rc;

use base64::Engine;
use sha1::Digest as _;

use super::{Ctx, Environment, FResult, FuncMap, Ty, i, ok_str, reg, s};
use crate::value::{Object, Value};

use Ty::*;

struct EnvRng<'a>(&'a dyn Environment);
impl rand_core::RngCore for EnvRng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.0.fill_random(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.fill_random(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_random(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill_random(dest);
        Ok(())
    }
}
impl rand_core::CryptoRng for EnvRng<'_> {}

/// Sprig's `certificate` (`.Cert`, `.Key`).
#[derive(Debug, Clone)]
pub struct Certificate {
    cert: String,
    key: String,
}

impl Object for Certificate {
    fn type_name(&self) -> String {
        "sprig.certificate".into()
    }
    fn kind(&self) -> &'static str {
        "struct"
    }
    fn field(&self, name: &str) -> Option<Value> {
        match name {
            "Cert" => Some(Value::from(self.cert.as_str())),
            "Key" => Some(Value::from(self.key.as_str())),
            _ => None,
        }
    }
    fn format(&self) -> String {
        format!("{{{} {}}}", self.cert, self.key)
    }
    fn to_json(&self) -> Value {
        let mut m = std::collections::BTreeMap::new();
        m.insert("Cert".into(), Value::from(self.cert.as_str()));
        m.insert("Key".into(), Value::from(self.key.as_str()));
        Value::map(m)
    }
}

// --- DER -----------------------------------------------------------------------------

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}
fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    der(0x30, &parts.concat())
}
fn oid(o: &[u64]) -> Vec<u8> {
    let mut b = vec![(o[0] * 40 + o[1]) as u8];
    for &x in &o[2..] {
        let mut tmp = vec![(x & 0x7f) as u8];
        let mut v = x >> 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        tmp.reverse();
        b.extend(tmp);
    }
    der(0x06, &b)
}
fn int_bytes(b: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = b.iter().copied().skip_while(|x| *x == 0).collect();
    if v.is_empty() || v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    der(0x02, &v)
}
fn time_der(secs: i64) -> Vec<u8> {
    let t = super::time::Time { secs, nanos: 0, offset: 0, zone: None };
    let y = t.format("2006").parse::<i64>().unwrap_or(1970);
    if (1950..2050).contains(&y) { der(0x17, t.format("060102150405Z").as_bytes()) } else { der(0x18, t.format("20060102150405Z").as_bytes()) }
}
fn name(cn: &str) -> Vec<u8> {
    if cn.is_empty() {
        return seq(&[]);
    }
    seq(&[der(0x31, &seq(&[oid(&[2, 5, 4, 3]), der(0x0c, cn.as_bytes())]))])
}
fn pem(label: &str, der: &[u8]) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
fn pem_decode(s: &str) -> Option<(String, Vec<u8>)> {
    let start = s.find("-----BEGIN ")?;
    let rest = &s[start + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_string();
    let body_start = label_end + 5;
    let end = rest.find(&format!("-----END {label}-----"))?;
    let body: String = rest[body_start..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).ok()?;
    Some((label, der))
}
/// Reads one TLV; returns (tag, content, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let l0 = *b.get(1)? as usize;
    let (len, hdr) = if l0 < 0x80 {
        (l0, 2)
    } else {
        let n = l0 & 0x7f;
        let mut len = 0usize;
        for k in 0..n {
            len = (len << 8) | *b.get(2 + k)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    if end > b.len() {
        return None;
    }
    Some((tag, &b[hdr..end], &b[end..]))
}
/// Subject Name DER of a certificate.
fn cert_subject(cert_der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert, _) = tlv(cert_der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r;
    }
    // serial, signature alg, issuer, validity, subject
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let before = rest;
    let (_, _, after) = tlv(rest)?;
    Some(before[..before.len() - after.len()].to_vec())
}

fn parse_ip(s: &str) -> Option<Vec<u8>> {
    if let Ok(v4) = s.parse::<std::net::Ipv4Addr>() {
        return Some(v4.octets().to_vec());
    }
    s.parse::<std::net::Ipv6Addr>().ok().map(|v6| v6.octets().to_vec())
}

/// `crypto-primes` takes its randomness through rand_core 0.10's traits.
impl rand_core10::TryRng for EnvRng<'_> {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(rand_core::RngCore::next_u32(self))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(rand_core::RngCore::next_u64(self))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill_random(dst);
        Ok(())
    }
}
impl rand_core10::TryCryptoRng for EnvRng<'_> {}

/// One random prime of `T`'s size with its two top bits set, as Go's `rsa.GenerateKey` picks
/// them (so that the modulus has exactly twice the bits).
fn rsa_prime<T>(rng: &mut EnvRng<'_>, bits: u32) -> rsa::BigUint
where
    T: crypto_bigint::UnsignedWithMontyForm + crypto_bigint::RandomBits + crypto_bigint::RandomMod + crypto_bigint::Encoding,
{
    use crypto_primes::hazmat::{SetBits, SmallFactorsSieveFactory};
    let sieve = SmallFactorsSieveFactory::new(crypto_primes::Flavor::Any, bits, SetBits::TwoMsb).expect("valid sieve parameters");
    let p: T = crypto_primes::sieve_and_find(rng, sieve, |_, c| crypto_primes::is_prime(crypto_primes::Flavor::Any, c))
        .ok()
        .flatten()
        .expect("an infallible generator always finds a prime");
    rsa::BigUint::from_bytes_be(p.to_be_bytes().as_ref())
}

/// An RSA key of `bits` bits with e = 65537. The primes come from `crypto-primes` (sieve, then
/// Miller-Rabin base 2 and a strong Lucas test: Baillie-PSW), about 4x faster than the `rsa`
/// crate's own generator (20 Miller-Rabin rounds on `num-bigint-dig`); 2048-bit keys are what
/// `genCA`/`genSignedCert` make, several per chart in some (harbor). See docs/performance.md.
fn gen_rsa(env: &dyn Environment, bits: usize) -> Result<rsa::RsaPrivateKey, String> {
    let mut rng = EnvRng(env);
    let prime = |rng: &mut EnvRng<'_>| match bits {
        2048 => Some(rsa_prime::<crypto_bigint::U1024>(rng, 1024)),
        4096 => Some(rsa_prime::<crypto_bigint::U2048>(rng, 2048)),
        _ => None,
    };
    let Some(mut p) = prime(&mut rng) else {
        return rsa::RsaPrivateKey::new(&mut rng, bits).map_err(|e| e.to_string());
    };
    loop {
        let q = prime(&mut rng).expect("same size as p");
        // p = q, or e not invertible mod λ(n): draw again, as Go does.
        match rsa::RsaPrivateKey::from_p_q(p.clone(), q, rsa::BigUint::from(65_537u32)) {
            Ok(mut key) => {
                key.precompute().map_err(|e| e.to_string())?;
                return Ok(key);
            }
            Err(_) => p = prime(&mut rng).expect("same size as p"),
        }
    }
}

/// Sprig's `genPrivateKey "dsa"`: `dsa.GenerateParameters(…, dsa.L2048N256)`, then
/// `dsa.GenerateKey`, PEM-encoded as OpenSSL's `DSA PRIVATE KEY`: the DER SEQUENCE
/// {version 0, P, Q, G, Y, X} (Sprig's `DSAKeyFormat`, marshalled with `asn1.Marshal`).
fn gen_dsa_pem(env: &dyn Environment) -> String {
    let mut rng = EnvRng(env);
    let components = dsa::Components::generate(&mut rng, dsa::KeySize::DSA_2048_256);
    let key = dsa::SigningKey::generate(&mut rng, components);
    let vk = key.verifying_key();
    let c = vk.components();
    let ints: Vec<Vec<u8>> = [c.p(), c.q(), c.g(), vk.y(), key.x()].iter().map(|n| int_bytes(&n.to_bytes_be())).collect();
    let mut fields = vec![int_bytes(&[0])];
    fields.extend(ints);
    pem("DSA PRIVATE KEY", &seq(&fields))
}

/// A private key of one of the types Sprig generates.
enum KeyPair {
    Rsa(rsa::RsaPrivateKey),
    Ec(p256::SecretKey),
    Ed(ed25519_dalek::SigningKey),
}

const ED25519_OID: &[u64] = &[1, 3, 101, 112];

impl KeyPair {
    fn generate(env: &dyn Environment, kind: &str) -> Result<KeyPair, String> {
        Ok(match kind {
            "rsa" => KeyPair::Rsa(gen_rsa(env, 4096)?),
            "ecdsa" => KeyPair::Ec(p256::SecretKey::random(&mut EnvRng(env))),
            "ed25519" => KeyPair::Ed(ed25519_dalek::SigningKey::generate(&mut EnvRng(env))),
            other => return Err(format!("genPrivateKey {other:?} is not supported by Harmony's Helm engine")),
        })
    }

    /// Sprig's `parsePrivateKeyPEM`.
    fn from_pem(text: &str) -> Result<KeyPair, String> {
        let (label, der_bytes) = pem_decode(text).ok_or("no PEM data in input")?;
        match label.as_str() {
            "PRIVATE KEY" => {
                use rsa::pkcs8::DecodePrivateKey;
                if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(&der_bytes) {
                    return Ok(KeyPair::Rsa(k));
                }
                if let Ok(k) = p256::SecretKey::from_pkcs8_der(&der_bytes) {
                    return Ok(KeyPair::Ec(k));
                }
                // PKCS#8 Ed25519: the seed is the last 32 bytes of the inner OCTET STRING.
                if der_bytes.len() >= 48 && der_bytes.windows(5).any(|w| w == [0x06, 0x03, 0x2b, 0x65, 0x70]) {
                    let seed: [u8; 32] = der_bytes[der_bytes.len() - 32..].try_into().map_err(|_| "decoding PEM as PKCS#8: malformed")?;
                    return Ok(KeyPair::Ed(ed25519_dalek::SigningKey::from_bytes(&seed)));
                }
                Err("decoding PEM as PKCS#8: x509: failed to parse private key".into())
            }
            "RSA PRIVATE KEY" => {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                rsa::RsaPrivateKey::from_pkcs1_der(&der_bytes).map(KeyPair::Rsa).map_err(|e| e.to_string())
            }
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der_bytes).map(KeyPair::Ec).map_err(|e| e.to_string()),
            l if !l.ends_with(" PRIVATE KEY") => Err(format!("no private key data in PEM block of type {l}")),
            l => Err(format!("invalid private key type {l}")),
        }
    }

    fn pem(&self) -> Result<String, String> {
        Ok(match self {
            KeyPair::Rsa(k) => {
                use rsa::pkcs1::EncodeRsaPrivateKey;
                k.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).map_err(|e| e.to_string())?.to_string()
            }
            KeyPair::Ec(k) => k.to_sec1_pem(p256::pkcs8::LineEnding::LF).map_err(|e| e.to_string())?.to_string(),
            KeyPair::Ed(k) => {
                let p8 = seq(&[der(0x02, &[0]), seq(&[oid(ED25519_OID)]), der(0x04, &der(0x04, &k.to_bytes()))]);
                pem("PRIVATE KEY", &p8)
            }
        })
    }

    fn spki(&self) -> Result<Vec<u8>, String> {
        Ok(match self {
            KeyPair::Rsa(k) => {
                use rsa::pkcs1::EncodeRsaPublicKey;
                let pub_der = k.to_public_key().to_pkcs1_der().map_err(|e| e.to_string())?;
                seq(&[seq(&[oid(&[1, 2, 840, 113549, 1, 1, 1]), der(0x05, &[])]), der(0x03, &[&[0u8][..], pub_der.as_bytes()].concat())])
            }
            KeyPair::Ec(k) => {
                use p256::elliptic_curve::sec1::ToEncodedPoint;
                let point = k.public_key().to_encoded_point(false);
                seq(&[seq(&[oid(&[1, 2, 840, 10045, 2, 1]), oid(&[1, 2, 840, 10045, 3, 1, 7])]), der(0x03, &[&[0u8][..], point.as_bytes()].concat())])
            }
            KeyPair::Ed(k) => seq(&[seq(&[oid(ED25519_OID)]), der(0x03, &[&[0u8][..], &k.verifying_key().to_bytes()[..]].concat())]),
        })
    }

    fn sig_alg(&self) -> Vec<u8> {
        match self {
            KeyPair::Rsa(_) => seq(&[oid(&[1, 2, 840, 113549, 1, 1, 11]), der(0x05, &[])]),
            KeyPair::Ec(_) => seq(&[oid(&[1, 2, 840, 10045, 4, 3, 2])]),
            KeyPair::Ed(_) => seq(&[oid(ED25519_OID)]),
        }
    }

    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, String> {
        Ok(match self {
            KeyPair::Rsa(k) => {
                let hash = sha2::Sha256::digest(tbs);
                k.sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &hash).map_err(|e| e.to_string())?
            }
            KeyPair::Ec(k) => {
                use p256::ecdsa::signature::Signer;
                let sk = p256::ecdsa::SigningKey::from(k);
                let sig: p256::ecdsa::Signature = sk.sign(tbs);
                sig.to_der().as_bytes().to_vec()
            }
            KeyPair::Ed(k) => {
                use ed25519_dalek::Signer;
                k.sign(tbs).to_bytes().to_vec()
            }
        })
    }
}

struct CertSpec<'a> {
    cn: &'a str,
    ips: Vec<Vec<u8>>,
    dns: Vec<String>,
    days: i64,
    is_ca: bool,
}

fn build_cert(c: &Ctx<'_>, spec: &CertSpec<'_>, key: &KeyPair, issuer: Option<(&[u8], &KeyPair)>) -> Result<Certificate, String> {
    let (now, _) = c.env.now();
    let serial = c.random_bytes(16);
    let signer = issuer.map(|(_, k)| k).unwrap_or(key);
    let sig_alg = signer.sig_alg();
    let subject = name(spec.cn);
    let issuer_name = issuer.map(|(n, _)| n.to_vec()).unwrap_or_else(|| subject.clone());
    let mut exts = Vec::new();
    let ku: u8 = if spec.is_ca { 0b1010_0100 } else { 0b1010_0000 };
    exts.push(seq(&[oid(&[2, 5, 29, 15]), der(0x01, &[0xff]), der(0x04, &der(0x03, &[if spec.is_ca { 1 } else { 5 }, ku]))]));
    if !spec.is_ca {
        let eku = seq(&[oid(&[1, 3, 6, 1, 5, 5, 7, 3, 1]), oid(&[1, 3, 6, 1, 5, 5, 7, 3, 2])]);
        exts.push(seq(&[oid(&[2, 5, 29, 37]), der(0x04, &eku)]));
    }
    exts.push(seq(&[oid(&[2, 5, 29, 19]), der(0x01, &[0xff]), der(0x04, &seq(&if spec.is_ca { vec![der(0x01, &[0xff])] } else { vec![] }))]));
    if !spec.dns.is_empty() || !spec.ips.is_empty() {
        let mut names = Vec::new();
        for d in &spec.dns {
            names.push(der(0x82, d.as_bytes()));
        }
        for ip in &spec.ips {
            names.push(der(0x87, ip));
        }
        exts.push(seq(&[oid(&[2, 5, 29, 17]), der(0x04, &seq(&names))]));
    }
    let tbs = seq(&[
        der(0xa0, &der(0x02, &[2])),
        int_bytes(&serial),
        sig_alg.clone(),
        issuer_name,
        seq(&[time_der(now), time_der(now.saturating_add(spec.days.saturating_mul(86400)))]),
        subject,
        key.spki()?,
        der(0xa3, &seq(&exts)),
    ]);
    let sig = signer.sign(&tbs)?;
    let cert = seq(&[tbs, sig_alg, der(0x03, &[&[0u8][..], &sig].concat())]);
    Ok(Certificate { cert: pem("CERTIFICATE", &cert), key: key.pem()? })
}

fn ca_of(v: &Value) -> Result<(Vec<u8>, KeyPair), String> {
    let Value::Object(ca) = v else { return Err("invalid CA".into()) };
    let ca_cert = ca.field("Cert").and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
    let ca_key = ca.field("Key").and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
    let subject = pem_decode(&ca_cert).and_then(|(_, d)| cert_subject(&d)).ok_or("error parsing CA certificate")?;
    let key = KeyPair::from_pem(&ca_key).map_err(|e| format!("error parsing CA private key: {e}"))?;
    Ok((subject, key))
}

fn str_items(v: &Value) -> Vec<String> {
    match v {
        Value::List(l, _) => l.iter().map(super::convert::strval).collect(),
        _ => vec![],
    }
}

fn ips_of(v: &Value) -> Result<Vec<Vec<u8>>, String> {
    str_items(v).iter().map(|s| parse_ip(s).ok_or_else(|| format!("error parsing ip: {s}"))).collect()
}

fn cert_value(c: Certificate) -> Value {
    Value::Object(Rc::new(c))
}

/// The Master Password algorithm behind `derivePassword`.
fn derive_password(counter: u32, ptype: &str, password: &str, user: &str, site: &str) -> String {
    use hmac::Mac;
    let templates: &[&str] = match ptype {
        "maximum" => &["anoxxxxxxxxxxxxxxxxx", "axxxxxxxxxxxxxxxxxno"],
        "long" => &[
            "CvcvnoCvcvCvcv",
            "CvcvCvcvnoCvcv",
            "CvcvCvcvCvcvno",
            "CvccnoCvcvCvcv",
            "CvccCvcvnoCvcv",
            "CvccCvcvCvcvno",
            "CvcvnoCvccCvcv",
            "CvcvCvccnoCvcv",
            "CvcvCvccCvcvno",
            "CvcvnoCvcvCvcc",
            "CvcvCvcvnoCvcc",
            "CvcvCvcvCvccno",
            "CvccnoCvccCvcv",
            "CvccCvccnoCvcv",
            "CvccCvccCvcvno",
            "CvcvnoCvccCvcc",
            "CvcvCvccnoCvcc",
            "CvcvCvccCvccno",
            "CvccnoCvcvCvcc",
            "CvccCvcvnoCvcc",
            "CvccCvcvCvccno",
        ],
        "medium" => &["CvcnoCvc", "CvcCvcno"],
        "short" => &["Cvcn"],
        "basic" => &["aaanaaan", "aannaaan", "aaannaaa"],
        "pin" => &["nnnn"],
        _ => return format!("cannot find password template {ptype}"),
    };
    let chars = |c: char| -> &'static str {
        match c {
            'V' => "AEIOU",
            'C' => "BCDFGHJKLMNPQRSTVWXYZ",
            'v' => "aeiou",
            'c' => "bcdfghjklmnpqrstvwxyz",
            'A' => "AEIOUBCDFGHJKLMNPQRSTVWXYZ",
            'a' => "AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz",
            'n' => "0123456789",
            'o' => "@&%?,=[]_:-+*$#!'^~;()/.",
            'x' => "AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz0123456789!@#$%^&*()",
            _ => "",
        }
    };
    const SEED: &str = "com.lyndir.masterpassword";
    let mut salt = SEED.as_bytes().to_vec();
    salt.extend((user.len() as u32).to_be_bytes());
    salt.extend(user.as_bytes());
    let mut key = [0u8; 64];
    let Ok(params) = scrypt::Params::new(15, 8, 2, 64) else { return "failed to derive password".into() };
    if scrypt::scrypt(password.as_bytes(), &salt, &params, &mut key).is_err() {
        return "failed to derive password".into();
    }
    let mut buf = SEED.as_bytes().to_vec();
    buf.extend((site.len() as u32).to_be_bytes());
    buf.extend(site.as_bytes());
    buf.extend(counter.to_be_bytes());
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key) else { return String::new() };
    mac.update(&buf);
    let seed = mac.finalize().into_bytes();
    let temp = templates[seed[0] as usize % templates.len()];
    temp.chars()
        .enumerate()
        .map(|(k, c)| {
            let pc = chars(c).as_bytes();
            pc[seed[k + 1] as usize % pc.len()] as char
        })
        .collect()
}

/// Go's `bcrypt.GenerateFromPassword(p, bcrypt.DefaultCost)` (`$2a$10$...`), salt from the
/// injected entropy.
fn bcrypt_hash(c: &Ctx<'_>, password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    c.env.fill_random(&mut salt);
    // Go's bcrypt truncates (rather than rejects) passwords longer than 72 bytes.
    let p = &password.as_bytes()[..password.len().min(72)];
    bcrypt::hash_with_salt(p, 10, salt).map(|h| h.format_for_version(bcrypt::Version::TwoA)).map_err(|e| e.to_string())
}

fn aes_key(password: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    let p = password.as_bytes();
    let n = p.len().min(32);
    key[..n].copy_from_slice(&p[..n]);
    key
}

pub fn register(m: &mut FuncMap) {
    reg(m, "sha1sum", &[Str], None, |_, a| ok_str(hex::encode(sha1::Sha1::digest(s(&a[0]).as_bytes()))));
    reg(m, "sha256sum", &[Str], None, |_, a| ok_str(hex::encode(sha2::Sha256::digest(s(&a[0]).as_bytes()))));
    reg(m, "sha512sum", &[Str], None, |_, a| ok_str(hex::encode(sha2::Sha512::digest(s(&a[0]).as_bytes()))));
    reg(m, "adler32sum", &[Str], None, |_, a| ok_str(adler32::adler32(s(&a[0]).as_bytes()).unwrap_or(0).to_string()));
    reg(m, "uuidv4", &[], None, |c, _| {
        let mut b = c.random_bytes(16);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(&b);
        ok_str(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
    });
    reg(m, "bcrypt", &[Str], None, |c, a| ok_str(bcrypt_hash(c, s(&a[0]))?));
    reg(m, "htpasswd", &[Str, Str], None, |c, a| {
        let user = s(&a[0]);
        if user.contains(':') {
            return ok_str(format!("invalid username: {user}"));
        }
        ok_str(format!("{user}:{}", bcrypt_hash(c, s(&a[1]))?))
    });
    reg(m, "derivePassword", &[Uint, Str, Str, Str, Str], None, |_, a| {
        let counter = match &a[0] {
            Value::Uint(u) => *u as u32,
            v => i(v) as u32,
        };
        ok_str(derive_password(counter, s(&a[1]), s(&a[2]), s(&a[3]), s(&a[4])))
    });
    reg(m, "encryptAES", &[Str, Str], None, |c, a| {
        use aes::cipher::{BlockEncrypt, KeyInit};
        let plain = s(&a[1]).as_bytes();
        if plain.is_empty() {
            return ok_str("");
        }
        let cipher = aes::Aes256::new(&aes_key(s(&a[0])).into());
        let pad = 16 - plain.len() % 16;
        let mut content = plain.to_vec();
        content.extend(std::iter::repeat_n(pad as u8, pad));
        let iv = c.random_bytes(16);
        let mut out = iv.clone();
        let mut prev: [u8; 16] = iv.try_into().unwrap_or([0; 16]);
        for chunk in content.chunks(16) {
            let mut block = [0u8; 16];
            for k in 0..16 {
                block[k] = chunk[k] ^ prev[k];
            }
            let mut ga = aes::Block::from(block);
            cipher.encrypt_block(&mut ga);
            prev = ga.into();
            out.extend_from_slice(&prev);
        }
        ok_str(base64::engine::general_purpose::STANDARD.encode(out))
    });
    reg(m, "decryptAES", &[Str, Str], None, |_, a| {
        use aes::cipher::{BlockDecrypt, KeyInit};
        let enc = s(&a[1]);
        if enc.is_empty() {
            return ok_str("");
        }
        let crypt = base64::engine::general_purpose::STANDARD.decode(enc).map_err(|e| match e {
            base64::DecodeError::InvalidByte(p, _) | base64::DecodeError::InvalidLength(p) | base64::DecodeError::InvalidLastSymbol(p, _) => {
                format!("illegal base64 data at input byte {p}")
            }
            _ => "illegal base64 data at input byte 0".to_string(),
        })?;
        if crypt.len() < 16 {
            // Go's DecodeString allocates DecodedLen(n) = n/4*3 bytes
            return Err(format!("runtime error: slice bounds out of range [:16] with capacity {}", enc.len() / 4 * 3).into());
        }
        let (iv, body) = crypt.split_at(16);
        if body.len() % 16 != 0 {
            return Err("crypto/cipher: input not full blocks".into());
        }
        let cipher = aes::Aes256::new(&aes_key(s(&a[0])).into());
        let mut prev: [u8; 16] = iv.try_into().unwrap_or([0; 16]);
        let mut out = Vec::with_capacity(body.len());
        for chunk in body.chunks(16) {
            let mut ga = aes::Block::clone_from_slice(chunk);
            cipher.decrypt_block(&mut ga);
            for k in 0..16 {
                out.push(ga[k] ^ prev[k]);
            }
            prev.copy_from_slice(chunk);
        }
        let Some(&last) = out.last() else { return Err("runtime error: index out of range [-1]".into()) };
        let n = out.len();
        if last as usize > n {
            return Err(format!("runtime error: slice bounds out of range [:{}]", n as i64 - last as i64).into());
        }
        ok_str(String::from_utf8_lossy(&out[..n - last as usize]).into_owned())
    });
    reg(m, "genPrivateKey", &[Str], None, |c, a| match s(&a[0]) {
        "dsa" => ok_str(gen_dsa_pem(c.env)),
        t @ ("rsa" | "ecdsa" | "ed25519") => ok_str(KeyPair::generate(c.env, t)?.pem()?),
        t => ok_str(format!("Unknown type {t}")),
    });
    reg(m, "genCA", &[Str, Int], None, |c, a| {
        let key = KeyPair::Rsa(gen_rsa(c.env, 2048)?);
        let spec = CertSpec { cn: s(&a[0]), ips: vec![], dns: vec![], days: i(&a[1]), is_ca: true };
        Ok(cert_value(build_cert(c, &spec, &key, None)?))
    });
    reg(m, "genCAWithKey", &[Str, Int, Str], None, |c, a| {
        let key = KeyPair::from_pem(s(&a[2])).map_err(|e| format!("parsing private key: {e}"))?;
        let spec = CertSpec { cn: s(&a[0]), ips: vec![], dns: vec![], days: i(&a[1]), is_ca: true };
        Ok(cert_value(build_cert(c, &spec, &key, None)?))
    });
    reg(m, "genSelfSignedCert", &[Str, List, List, Int], None, |c, a| {
        let ips = ips_of(&a[1])?;
        let key = KeyPair::Rsa(gen_rsa(c.env, 2048)?);
        let spec = CertSpec { cn: s(&a[0]), ips, dns: str_items(&a[2]), days: i(&a[3]), is_ca: false };
        Ok(cert_value(build_cert(c, &spec, &key, None)?))
    });
    reg(m, "genSelfSignedCertWithKey", &[Str, List, List, Int, Str], None, |c, a| {
        let ips = ips_of(&a[1])?;
        let key = KeyPair::from_pem(s(&a[4])).map_err(|e| format!("parsing private key: {e}"))?;
        let spec = CertSpec { cn: s(&a[0]), ips, dns: str_items(&a[2]), days: i(&a[3]), is_ca: false };
        Ok(cert_value(build_cert(c, &spec, &key, None)?))
    });
    reg(m, "genSignedCert", &[Str, List, List, Int, Cert], None, |c, a| {
        let ips = ips_of(&a[1])?;
        let (subject, ca_key) = ca_of(&a[4])?;
        let key = KeyPair::Rsa(gen_rsa(c.env, 2048)?);
        let spec = CertSpec { cn: s(&a[0]), ips, dns: str_items(&a[2]), days: i(&a[3]), is_ca: false };
        Ok(cert_value(build_cert(c, &spec, &key, Some((&subject, &ca_key)))?))
    });
    reg(m, "genSignedCertWithKey", &[Str, List, List, Int, Cert, Str], None, |c, a| {
        let ips = ips_of(&a[1])?;
        let (subject, ca_key) = ca_of(&a[4])?;
        let key = KeyPair::from_pem(s(&a[5])).map_err(|e| format!("parsing private key: {e}"))?;
        let spec = CertSpec { cn: s(&a[0]), ips, dns: str_items(&a[2]), days: i(&a[3]), is_ca: false };
        Ok(cert_value(build_cert(c, &spec, &key, Some((&subject, &ca_key)))?))
    });
    reg(m, "buildCustomCert", &[Str, Str], None, |_, a| {
        let cert = base64::engine::general_purpose::STANDARD.decode(s(&a[0])).map_err(|_| "unable to decode base64 certificate")?;
        let key = base64::engine::general_purpose::STANDARD.decode(s(&a[1])).map_err(|_| "unable to decode base64 private key")?;
        let cert_s = String::from_utf8_lossy(&cert).into_owned();
        let key_s = String::from_utf8_lossy(&key).into_owned();
        let (_, cder) = pem_decode(&cert_s).ok_or("unable to decode certificate")?;
        cert_subject(&cder).ok_or("error parsing certificate: x509: malformed certificate")?;
        pem_decode(&key_s).ok_or("unable to decode private key")?;
        Ok(cert_value(Certificate { cert: cert_s, key: key_s }))
    });

    let _: Option<FResult> = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};

    #[test]
    fn rsa_keys_are_valid_full_size_and_deterministic() {
        let bits = 2048;
        let env = crate::funcs::FixedEnvironment::default();
        let key = gen_rsa(&env, bits).unwrap();
        assert_eq!(key.n().bits(), bits, "the modulus has exactly the requested size");
        assert_eq!(key.e(), &rsa::BigUint::from(65_537u32));
        assert_eq!(key.primes().len(), 2);
        key.validate().unwrap();
        let msg = b"harmony";
        let ct = key.to_public_key().encrypt(&mut EnvRng(&env), rsa::Pkcs1v15Encrypt, msg).unwrap();
        assert_eq!(key.decrypt(rsa::Pkcs1v15Encrypt, &ct).unwrap(), msg);
        let again = gen_rsa(&crate::funcs::FixedEnvironment::default(), bits).unwrap();
        assert_eq!(again.n(), key.n(), "same entropy, same key");
    }
}
