//! Every function Helm v4 exposes to a chart is in our function map, and nothing else is.
//!
//! The names are transcribed from upstream:
//! - Go's `text/template` builtins (`text/template/funcs.go`, `builtins()`);
//! - Sprig v3's `genericMap` (`Masterminds/sprig` `functions.go`), which Helm loads with
//!   `sprig.TxtFuncMap()` and then deletes `env` and `expandenv` from
//!   (`helm/helm` `pkg/engine/funcs.go`, `funcMap()`);
//! - Helm v4's extras in the same `funcMap()`: `toToml`, `mustToToml`, `fromToml`, `toYaml`, `mustToYaml`,
//!   `toYamlPretty`, `fromYaml`, `fromYamlArray`, `toJson`, `mustToJson`, `fromJson`,
//!   `fromJsonArray`, `include`, `tpl`, `required`, `lookup`.
//!
//! Sprig v3.3.0 added `sha512sum`. Sprig's main branch also has `randSeededNumeric`, added after v3.3.0, the release Helm v4
//! uses; Helm's engine rejects it (`function "randSeededNumeric" not defined`), so it is left
//! out. `scripts/oracle_funcs.py` checks this list against Helm's engine (helm-python-sdk):
//! every name parses there, and `env`, `expandenv` and `randSeededNumeric` do not.
//!
//! A name we lack would make a chart fail with `function "x" not defined`; a name we have and
//! Helm lacks would make a chart render here that Helm rejects. Both fail this test.

use std::collections::BTreeSet;

use harmony_helm::funcs::FixedEnvironment;
use harmony_helm::value::Value;
use harmony_helm::{RenderTemplate, render};

const GO_BUILTINS: &[&str] =
    &["and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf", "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne"];

const SPRIG: &[&str] = &[
    "hello", // dates
    "ago",
    "date",
    "date_in_zone",
    "date_modify",
    "dateInZone",
    "dateModify",
    "duration",
    "durationRound",
    "htmlDate",
    "htmlDateInZone",
    "must_date_modify",
    "mustDateModify",
    "mustToDate",
    "now",
    "toDate",
    "unixEpoch", // strings
    "abbrev",
    "abbrevboth",
    "trunc",
    "trim",
    "upper",
    "lower",
    "title",
    "untitle",
    "substr",
    "repeat",
    "trimall",
    "trimAll",
    "trimSuffix",
    "trimPrefix",
    "nospace",
    "initials",
    "randAlphaNum",
    "randAlpha",
    "randAscii",
    "randNumeric",
    "swapcase",
    "shuffle",
    "snakecase",
    "camelcase",
    "kebabcase",
    "wrap",
    "wrapWith",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "quote",
    "squote",
    "cat",
    "indent",
    "nindent",
    "replace",
    "plural",
    "sha1sum",
    "sha256sum",
    "sha512sum",
    "adler32sum",
    "toString", // conversions
    "atoi",
    "int64",
    "int",
    "float64",
    "seq",
    "toDecimal",
    "split",
    "splitList",
    "splitn",
    "toStrings",
    "until",
    "untilStep", // math
    "add1",
    "add",
    "sub",
    "div",
    "mod",
    "mul",
    "randInt",
    "add1f",
    "addf",
    "subf",
    "divf",
    "mulf",
    "biggest",
    "max",
    "min",
    "maxf",
    "minf",
    "ceil",
    "floor",
    "round", // string slices
    "join",
    "sortAlpha", // defaults
    "default",
    "empty",
    "coalesce",
    "all",
    "any",
    "compact",
    "mustCompact",
    "fromJson",
    "toJson",
    "toPrettyJson",
    "toRawJson",
    "mustFromJson",
    "mustToJson",
    "mustToPrettyJson",
    "mustToRawJson",
    "ternary",
    "deepCopy",
    "mustDeepCopy", // reflection
    "typeOf",
    "typeIs",
    "typeIsLike",
    "kindOf",
    "kindIs",
    "deepEqual", // OS (env and expandenv are deleted by Helm)
    "env",
    "expandenv",     // network
    "getHostByName", // paths
    "base",
    "dir",
    "clean",
    "ext",
    "isAbs",
    "osBase",
    "osClean",
    "osDir",
    "osExt",
    "osIsAbs", // encoding
    "b64enc",
    "b64dec",
    "b32enc",
    "b32dec", // data structures
    "tuple",
    "list",
    "dict",
    "get",
    "set",
    "unset",
    "hasKey",
    "pluck",
    "keys",
    "pick",
    "omit",
    "merge",
    "mergeOverwrite",
    "mustMerge",
    "mustMergeOverwrite",
    "values",
    "append",
    "push",
    "mustAppend",
    "mustPush",
    "prepend",
    "mustPrepend",
    "first",
    "mustFirst",
    "rest",
    "mustRest",
    "last",
    "mustLast",
    "initial",
    "mustInitial",
    "reverse",
    "mustReverse",
    "uniq",
    "mustUniq",
    "without",
    "mustWithout",
    "has",
    "mustHas",
    "slice",
    "mustSlice",
    "concat",
    "dig",
    "chunk",
    "mustChunk", // crypto
    "bcrypt",
    "htpasswd",
    "genPrivateKey",
    "derivePassword",
    "buildCustomCert",
    "genCA",
    "genCAWithKey",
    "genSelfSignedCert",
    "genSelfSignedCertWithKey",
    "genSignedCert",
    "genSignedCertWithKey",
    "encryptAES",
    "decryptAES",
    "randBytes", // uuid, semver
    "uuidv4",
    "semver",
    "semverCompare", // flow control
    "fail",          // regex
    "regexMatch",
    "mustRegexMatch",
    "regexFindAll",
    "mustRegexFindAll",
    "regexFind",
    "mustRegexFind",
    "regexReplaceAll",
    "mustRegexReplaceAll",
    "regexReplaceAllLiteral",
    "mustRegexReplaceAllLiteral",
    "regexSplit",
    "mustRegexSplit",
    "regexQuoteMeta", // urls
    "urlParse",
    "urlJoin",
];

const HELM_DELETED: &[&str] = &["env", "expandenv"];

const HELM_EXTRA: &[&str] = &[
    "toToml",
    "mustToToml",
    "fromToml",
    "toYaml",
    "mustToYaml",
    "toYamlPretty",
    "fromYaml",
    "fromYamlArray",
    "toJson",
    "mustToJson",
    "fromJson",
    "fromJsonArray",
    "include",
    "tpl",
    "required",
    "lookup",
];

fn helm_names() -> BTreeSet<&'static str> {
    let mut names: BTreeSet<&str> = GO_BUILTINS.iter().chain(SPRIG).chain(HELM_EXTRA).copied().collect();
    for n in HELM_DELETED {
        names.remove(n);
    }
    names
}

#[test]
fn function_map_is_exactly_helms() {
    let ours: BTreeSet<&str> = harmony_helm::funcs::func_map().keys().copied().collect();
    let helm = helm_names();
    let missing: Vec<_> = helm.difference(&ours).collect();
    let extra: Vec<_> = ours.difference(&helm).collect();
    assert!(missing.is_empty(), "functions Helm has and we lack: {missing:?}");
    assert!(extra.is_empty(), "functions we have and Helm lacks (charts would render here and fail in Helm): {extra:?}");
    // Sanity: the list above is the size Helm's is (19 builtins + Sprig's map - 2 + Helm's new names).
    assert!(helm.len() > 200, "{}", helm.len());
}

#[test]
fn env_and_expandenv_are_not_defined() {
    // Helm deletes them so charts cannot read the environment of whoever renders them.
    for name in HELM_DELETED {
        let text = format!("{{{{ {name} \"HOME\" }}}}");
        let tpl = RenderTemplate { name: "c/templates/t.yaml".into(), text, vals: Value::Nil, base_path: "c/templates".into() };
        let err = render(&[tpl], &FixedEnvironment::default()).unwrap_err().message;
        assert!(err.contains(&format!("function \"{name}\" not defined")), "{name}: {err}");
    }
}

#[test]
fn get_host_by_name_is_empty_offline_like_helm() {
    // Helm's engine returns "" unless `--enable-dns` (pkg/engine/engine.go); checked against
    // Helm v4's engine through helm-python-sdk.
    let text = "a: \"{{ getHostByName \"example.com\" }}\"".to_string();
    let tpl = RenderTemplate { name: "c/templates/t.yaml".into(), text, vals: Value::Nil, base_path: "c/templates".into() };
    let out = render(&[tpl], &FixedEnvironment::default()).unwrap();
    assert_eq!(out["c/templates/t.yaml"], "a: \"\"");
}
