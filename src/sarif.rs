//! `harmony check --format sarif`: the diagnostics as a SARIF 2.1.0 log (OASIS), the format
//! code-scanning UIs (GitHub's among them) show inline on a pull request. Only the parts of the
//! format Harmony fills are typed here; the log is validated against the official schema in
//! `tests/operator_cli.rs`.

use harmony_compiler::{Output, diag};

use crate::cli::{annotation_text, label_location, level};
use serde::Serialize;

#[derive(Serialize)]
pub(crate) struct Log<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: [Run<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Run<'a> {
    tool: Tool,
    /// Harmony's columns count Unicode characters, not SARIF's default UTF-16 code units.
    column_kind: &'static str,
    results: Vec<Result<'a>>,
}

#[derive(Serialize)]
struct Tool {
    driver: Driver,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver {
    name: &'static str,
    version: &'static str,
    rules: Vec<Rule>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: &'static str,
    short_description: Text,
}

#[derive(Serialize)]
struct Text {
    text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Result<'a> {
    rule_id: &'static str,
    rule_index: usize,
    level: &'static str,
    message: Text,
    locations: [Location<'a>; 1],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    related_locations: Vec<Location<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<usize>,
    physical_location: PhysicalLocation,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<TextRef<'a>>,
}

#[derive(Serialize)]
struct TextRef<'a> {
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: ArtifactLocation,
    region: Region,
}

#[derive(Serialize)]
struct ArtifactLocation {
    uri: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: usize,
    start_column: usize,
    end_line: usize,
    end_column: usize,
}

/// Characters left as they are in a relative URI reference's path (RFC 3986 unreserved, `/`).
const PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A diagnostic's place: `prefix` (the repository as seen from where CI runs) + its path.
fn physical(loc: &diag::Location, prefix: &str) -> PhysicalLocation {
    PhysicalLocation {
        artifact_location: ArtifactLocation { uri: percent_encoding::utf8_percent_encode(&format!("{prefix}{}", loc.path), PATH).to_string() },
        region: Region { start_line: loc.line, start_column: loc.column, end_line: loc.end_line, end_column: loc.end_column },
    }
}

/// The SARIF log of a check.
pub(crate) fn log<'a>(out: &'a Output, prefix: &str) -> Log<'a> {
    let rules = diag::Code::ALL.iter().map(|c| Rule { id: c.as_str(), short_description: Text { text: c.as_str().trim_start_matches("harmony::").replace('-', " ") } }).collect();
    let results = out
        .diagnostics
        .iter()
        .map(|d| {
            let related = d
                .secondary
                .iter()
                .enumerate()
                .map(|(i, l)| Location {
                    id: Some(i),
                    physical_location: physical(&label_location(d, l, out), prefix),
                    message: (!l.text.is_empty()).then_some(TextRef { text: &l.text }),
                })
                .collect();
            Result {
                rule_id: d.code.as_str(),
                rule_index: diag::Code::ALL.iter().position(|c| *c == d.code).unwrap_or(0),
                level: level(d.severity),
                message: Text { text: annotation_text(d) },
                locations: [Location { id: None, physical_location: physical(&d.location(&out.sources), prefix), message: None }],
                related_locations: related,
            }
        })
        .collect();
    Log {
        schema: "https://json.schemastore.org/sarif-2.1.0.json",
        version: "2.1.0",
        runs: [Run {
            tool: Tool { driver: Driver { name: "harmony", version: env!("CARGO_PKG_VERSION"), rules } },
            column_kind: "unicodeCodePoints",
            results,
        }],
    }
}
