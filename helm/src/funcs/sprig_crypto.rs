//! Sprig's hashing and crypto functions. Hashes and `uuidv4` are implemented; key and
//! certificate generation, bcrypt/htpasswd, AES and `derivePassword` are not (see
//! `docs/helm-compatibility.md`): they fail with an `error calling NAME` error.

use sha1::Digest as _;

use super::{FuncMap, Ty, ok_str, reg, s};

use Ty::*;

/// Functions Harmony does not implement, with their Go signatures.
pub const UNSUPPORTED: &[(&str, &[Ty], Option<Ty>)] = &[
    ("bcrypt", &[Str], None),
    ("htpasswd", &[Str, Str], None),
    ("derivePassword", &[Uint, Str, Str, Str, Str], None),
    ("genPrivateKey", &[Str], None),
    ("buildCustomCert", &[Str, Str], None),
    ("genCA", &[Str, Int], None),
    ("genCAWithKey", &[Str, Int, Str], None),
    ("genSelfSignedCert", &[Str, List, List, Int], None),
    ("genSelfSignedCertWithKey", &[Str, List, List, Int, Str], None),
    ("genSignedCert", &[Str, List, List, Int, Cert], None),
    ("genSignedCertWithKey", &[Str, List, List, Int, Cert, Str], None),
    ("encryptAES", &[Str, Str], None),
    ("decryptAES", &[Str, Str], None),
];

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
    for (name, params, variadic) in UNSUPPORTED {
        reg(m, name, params, *variadic, |_, _| Err("not supported by Harmony's Helm engine (needs key generation or a password hash)".into()));
    }
}
