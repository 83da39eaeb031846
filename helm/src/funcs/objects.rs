//! Method signatures of the Go objects templates can call methods on.

use super::Ty;
use crate::value::Object;

/// Parameter types of method `name` on `o` (all methods Harmony exposes take strings).
pub fn method_sig(o: &dyn Object, name: &str) -> (&'static [Ty], Option<Ty>) {
    match (o.type_name().as_str(), name) {
        ("chart.Files" | "common.Files", "AsConfig" | "AsSecrets") => (&[], None),
        ("chart.Files" | "common.Files", "Glob" | "Get" | "GetBytes" | "Lines") => (&[Ty::Str], None),
        ("chartutil.VersionSet" | "common.VersionSet", "Has") => (&[Ty::Str], None),
        ("time.Time", "Format") => (&[Ty::Str], None),
        ("*semver.Version", "Compare" | "LessThan" | "GreaterThan" | "Equal") => (&[Ty::Any], None),
        ("*semver.Version", _) => (&[], None),
        _ => (&[], Some(Ty::Str)),
    }
}
