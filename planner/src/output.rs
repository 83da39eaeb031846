//! Renderers of a plan: human (terminal), Markdown (PR comments) and JSON (the plan file).
//!
//! All three work from a [`PlanFile`] alone, so `harmony show FILE` prints what `harmony plan`
//! printed. Secret material in a plan is already fingerprints; nothing here sees plaintext.

use std::fmt::Write as _;

use harmony_schemas::plan::*;
use owo_colors::OwoColorize;

/// Options of the human format.
#[derive(Debug, Clone)]
pub struct HumanOptions {
    /// ANSI colours (only on a terminal).
    pub color: bool,
    /// One line per unit.
    pub compact: bool,
    /// Diff lines shown per unit before the rest is collapsed.
    pub max_lines_per_unit: usize,
}

impl Default for HumanOptions {
    fn default() -> Self {
        HumanOptions { color: false, compact: false, max_lines_per_unit: 80 }
    }
}

/// Options of the Markdown format.
#[derive(Debug, Clone)]
pub struct MarkdownOptions {
    /// Size cap in bytes (GitHub refuses comments above 65,536 characters).
    pub max_bytes: usize,
    /// Diff lines shown per unit before the rest is collapsed.
    pub max_lines_per_unit: usize,
}

impl Default for MarkdownOptions {
    fn default() -> Self {
        MarkdownOptions { max_bytes: 60_000, max_lines_per_unit: 200 }
    }
}

/// One line describing what the plan was computed from and against.
pub fn header(p: &PlanFile) -> String {
    let source = match &p.source.commit {
        Some(c) => format!("{}{}", short(c), if p.source.dirty { " (with uncommitted changes)" } else { "" }),
        None => "a directory outside git".to_string(),
    };
    let against = match &p.observed {
        ObservedSource::None => "no observed state (--offline: every unit is planned as a create)".to_string(),
        ObservedSource::Live { targets, hash } if targets.is_empty() => format!("live state (nothing to observe) {}", short_hash(hash)),
        ObservedSource::Live { targets, hash } => format!("live state of {} {}", targets.join(", "), short_hash(hash)),
        ObservedSource::File { hash } => format!("observed state {}", short_hash(hash)),
        ObservedSource::Revision { base, commit } => match commit {
            Some(c) => format!("base revision {base} ({})", short(c)),
            None => format!("base revision {base}"),
        },
    };
    let mut s = format!("Source {source}, against {against}.");
    if !p.filters.targets.is_empty() {
        let _ = write!(s, " Targets: {}.", p.filters.targets.join(", "));
    }
    if !p.filters.skipped.is_empty() {
        let _ = write!(s, " Skipped: every {}.", p.filters.skipped.join(", every "));
    }
    if !p.filters.excludes.is_empty() {
        let _ = write!(s, " Excluded: {}.", p.filters.excludes.join(", "));
    }
    s
}

fn short_hash(h: &str) -> String {
    let hex = h.trim_start_matches("sha256:");
    format!("sha256:{}", short(hex))
}

/// The first 12 characters (plan files are input: never slice inside a character).
fn short(s: &str) -> String {
    s.chars().take(12).collect()
}

fn plural(n: usize, w: &str) -> String {
    format!("{n} {w}{}", if n == 1 { "" } else { "s" })
}

fn observed_text(o: &Option<ObservedRevision>) -> Option<String> {
    Some(match o.as_ref()? {
        ObservedRevision::HelmRelease { revision, resource_version } => {
            format!("planned against Helm revision {revision}, release record resourceVersion {resource_version}")
        }
        ObservedRevision::KvEntry { revision } => format!("planned against KV revision {revision}"),
        ObservedRevision::Objects { resource_versions } => format!("planned against {}", plural(resource_versions.len(), "object resourceVersion")),
        ObservedRevision::Compiled { hash } => format!("base content {}", short_hash(hash)),
    })
}

/// `N units render the objects already deployed (…): apply only records …`, when any does.
fn record_only_note(p: &PlanFile) -> Option<String> {
    let units: Vec<&str> = p.actions.iter().filter(|a| a.explain.reason == RECORD_ONLY_REASON).map(|a| a.unit.as_str()).collect();
    (!units.is_empty()).then(|| {
        format!(
            "{} ({}) {} the objects already deployed: apply changes no object, only the release record.",
            plural(units.len(), "unit"),
            units.join(", "),
            if units.len() == 1 { "renders" } else { "render" }
        )
    })
}

/// A Unix-milliseconds time as UTC text (a device's clock: shown as it reports it).
fn utc(ms: u64) -> String {
    i64::try_from(ms).ok().and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok()).map_or_else(|| format!("{ms} ms"), |t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
}

/// The devices' drift a plan records ([`PlanFile::device_drift`]): a headline and one line per
/// finding (`fleet pico, device nuc-001: sensor-hub/hub: missing → recreated (… UTC)`).
fn device_drift_lines(p: &PlanFile) -> Vec<String> {
    if p.device_drift.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "Device drift: {} {} what its agent found changed behind its back and what it did (the agent repairs drift itself; not an action, apply writes nothing for it):",
        plural(p.device_drift.len(), "device"),
        if p.device_drift.len() == 1 { "reports" } else { "report" }
    )];
    for d in &p.device_drift {
        for x in &d.drift {
            lines.push(format!("fleet {}, device {}: {x} ({})", d.fleet, d.device, utc(x.at_ms)));
        }
    }
    lines
}

fn changes(p: &PlanFile) -> impl Iterator<Item = &PlannedAction> {
    p.actions.iter().filter(|a| a.apply.action != Action::Noop)
}

fn object_counts(a: &PlannedAction) -> String {
    let (add, rem) = a.explain.objects.iter().fold((0, 0), |(x, y), o| (x + o.added, y + o.removed));
    let secrets = a.apply.secrets.iter().filter(|s| !matches!(s.status, SecretStatus::Unchanged)).count();
    let mut s = format!("{}, +{add} -{rem}", plural(a.explain.objects.len(), "object"));
    if secrets > 0 {
        let _ = write!(s, ", {}", plural(secrets, "secret change"));
    }
    s
}

fn secret_line(s: &SecretFingerprint) -> String {
    let fp = |f: &Option<String>| f.clone().unwrap_or_else(|| "none".into());
    let status = match s.status {
        SecretStatus::Added => "added",
        SecretStatus::Changed => "changed",
        SecretStatus::Unchanged => "unchanged",
        SecretStatus::Removed => "removed",
        SecretStatus::Unresolved => "unresolved until apply",
    };
    let src = s.source.as_ref().map(|x| format!(" from {x}")).unwrap_or_default();
    match s.status {
        SecretStatus::Unchanged => format!("{}{src}: unchanged ({})", s.name, fp(&s.after)),
        SecretStatus::Unresolved => format!("{}{src}: {status}", s.name),
        _ => format!("{}{src}: {status} ({} → {})", s.name, fp(&s.before), fp(&s.after)),
    }
}

/// `~ drift Kind/ns/name: …` above a drifted object's diff (live → as Harmony applied it).
fn drift_line(o: &ObjectChange) -> String {
    match o.action {
        Action::Create => format!("~ drift {}: deleted live, apply recreates it", o.key),
        _ => format!("~ drift {}: changed live, apply takes back the fields Harmony manages (- live, + as applied)", o.key),
    }
}

/// Diff lines of a unit, cut after `max` lines; returns the lines and how many were hidden.
fn unit_diff_lines(a: &PlannedAction, max: usize) -> (Vec<String>, usize, usize) {
    let mut lines = Vec::new();
    let mut hidden = 0;
    let mut hidden_objects = 0;
    for o in &a.explain.objects {
        let n = o.diff.lines().count();
        if lines.len() >= max {
            hidden += n;
            hidden_objects += 1;
            continue;
        }
        if o.drift {
            lines.push(drift_line(o));
        }
        for l in o.diff.lines() {
            if lines.len() < max {
                lines.push(l.to_string());
            } else {
                hidden += 1;
            }
        }
    }
    (lines, hidden, hidden_objects)
}

/// The human format.
pub fn human(p: &PlanFile, o: &HumanOptions) -> String {
    let paint = |s: &str, a: Action| -> String {
        if !o.color {
            return s.to_string();
        }
        match a {
            Action::Create => s.green().to_string(),
            Action::Update => s.yellow().to_string(),
            Action::Delete => s.red().to_string(),
            Action::Replace => s.magenta().to_string(),
            Action::Noop => s.dimmed().to_string(),
        }
    };
    let bold = |s: &str| if o.color { s.bold().to_string() } else { s.to_string() };
    let mut out = String::new();
    let _ = writeln!(out, "{}", header(p));
    let _ = writeln!(out, "{}", bold(&p.summary.line()));
    if let Some(note) = record_only_note(p) {
        let _ = writeln!(out, "{note}");
    }
    let drift = device_drift_lines(p);
    for (i, l) in drift.iter().enumerate() {
        let _ = writeln!(out, "{}{l}", if i == 0 { "" } else { "  ~ " });
    }
    if !p.summary.has_changes() {
        let _ = writeln!(out, "No changes: {} as desired.", plural(p.summary.noop, "unit"));
        return out;
    }
    if p.summary.noop > 0 {
        let _ = writeln!(out, "{} unchanged, not shown.", plural(p.summary.noop, "unit"));
    }
    out.push('\n');
    for a in changes(p) {
        let act = a.apply.action;
        if o.compact {
            let _ = writeln!(out, "{} {} ({}; {})", paint(&format!("{:>3}", act.sign()), act), a.unit, act.as_str(), object_counts(a));
            continue;
        }
        let _ = writeln!(out, "{} {} {}", paint(&format!("{:>3}", act.sign()), act), bold(&a.unit), paint(act.as_str(), act));
        let mut why = a.explain.reason.clone();
        if let Some(t) = observed_text(&a.apply.observed) {
            let _ = write!(why, "; {t}");
        }
        let _ = writeln!(out, "    {why}");
        let (lines, hidden, hidden_objects) = unit_diff_lines(a, o.max_lines_per_unit);
        for l in &lines {
            let colored = if !o.color {
                l.clone()
            } else if l.starts_with("+++") || l.starts_with("---") {
                l.bold().to_string()
            } else if l.starts_with('+') {
                l.green().to_string()
            } else if l.starts_with('-') {
                l.red().to_string()
            } else if l.starts_with("@@") {
                l.cyan().to_string()
            } else {
                l.clone()
            };
            let _ = writeln!(out, "    {colored}");
        }
        if hidden > 0 {
            let more = if hidden_objects > 0 { format!(" ({} not shown)", plural(hidden_objects, "more object")) } else { String::new() };
            let _ = writeln!(out, "    … {} hidden{more}; `harmony show PLANFILE --format json` has every line", plural(hidden, "line"));
        }
        for s in &a.apply.secrets {
            let _ = writeln!(out, "    secret {}", secret_line(s));
        }
        out.push('\n');
    }
    for r in &p.rollouts {
        let _ = writeln!(out, "{}", r.describe());
    }
    let _ = writeln!(out, "{}", bold(&p.summary.line()));
    out
}

fn md_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('|', "\\|")
}

fn fence_for(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

/// The Markdown format: a summary table, then one `<details>` block per changed unit,
/// capped at [`MarkdownOptions::max_bytes`].
pub fn markdown(p: &PlanFile, o: &MarkdownOptions) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### Harmony plan\n");
    let _ = writeln!(out, "**{}**\n", p.summary.line());
    let _ = writeln!(out, "{}\n", md_escape(&header(p)));
    if let Some(note) = record_only_note(p) {
        let _ = writeln!(out, "{}\n", md_escape(&note));
    }
    let drift = device_drift_lines(p);
    if let Some((head, rest)) = drift.split_first() {
        let mut block = format!("{}\n\n", md_escape(head));
        for l in rest {
            block.push_str(&format!("- {}\n", md_escape(l)));
        }
        block.push('\n');
        // Bounded like the rest of the comment (at most 16 findings a device, each text bounded).
        if out.len() + block.len() <= o.max_bytes / 4 {
            out.push_str(&block);
        } else {
            let _ = writeln!(out, "{}\n", md_escape(&format!("{head} {} findings, not shown (`harmony show PLANFILE` lists them)", rest.len())));
        }
    }
    if !p.summary.has_changes() {
        let _ = writeln!(out, "No changes: {} as desired.", plural(p.summary.noop, "unit"));
        return out;
    }
    let _ = writeln!(out, "| action | count |\n|---|---|");
    let s = &p.summary;
    for (name, n) in [("create", s.create), ("update", s.update), ("replace", s.replace), ("delete", s.delete), ("no-op", s.noop)] {
        if n > 0 {
            let _ = writeln!(out, "| {name} | {n} |");
        }
    }
    out.push('\n');
    let total = changes(p).count();
    let tail_reserve = 400;
    let mut shown = 0;
    let mut table = String::from("| | unit | action | changes |\n|---|---|---|---|\n");
    let mut rows_cut = 0;
    for a in changes(p) {
        let row = format!("| `{}` | `{}` | {} | {} |\n", a.apply.action.sign(), md_escape(&a.unit), a.apply.action.as_str(), md_escape(&object_counts(a)));
        if out.len() + table.len() + row.len() + tail_reserve > o.max_bytes / 2 {
            rows_cut += 1;
            continue;
        }
        table.push_str(&row);
    }
    out.push_str(&table);
    if rows_cut > 0 {
        let _ = writeln!(out, "| | … {} more | | |", rows_cut);
    }
    out.push('\n');
    for a in changes(p) {
        let mut block = String::new();
        let act = a.apply.action;
        let _ = writeln!(
            block,
            "<details><summary><code>{} {}</code> {} ({})</summary>\n",
            act.sign(),
            md_escape(&a.unit),
            act.as_str(),
            md_escape(&object_counts(a))
        );
        let mut why = a.explain.reason.clone();
        if let Some(t) = observed_text(&a.apply.observed) {
            let _ = write!(why, "; {t}");
        }
        let _ = writeln!(block, "{}\n", md_escape(&why));
        let (lines, hidden, hidden_objects) = unit_diff_lines(a, o.max_lines_per_unit);
        if !lines.is_empty() {
            let body = lines.join("\n");
            let fence = fence_for(&body);
            let _ = writeln!(block, "{fence}diff\n{body}\n{fence}\n");
        }
        if hidden > 0 {
            let more = if hidden_objects > 0 { format!(" ({} not shown)", plural(hidden_objects, "more object")) } else { String::new() };
            let _ = writeln!(block, "… {} hidden{more}.\n", plural(hidden, "line"));
        }
        if !a.apply.secrets.is_empty() {
            let _ = writeln!(block, "| secret | status |\n|---|---|");
            for s in &a.apply.secrets {
                let line = secret_line(s);
                let (name, status) = line.split_once(": ").unwrap_or((&line, ""));
                let _ = writeln!(block, "| `{}` | {} |", md_escape(name), md_escape(status));
            }
            block.push('\n');
        }
        block.push_str("</details>\n\n");
        if out.len() + block.len() + tail_reserve > o.max_bytes {
            break;
        }
        out.push_str(&block);
        shown += 1;
    }
    for r in &p.rollouts {
        let text = r.describe();
        let fence = fence_for(&text);
        let block = format!("**Rollout** in fleet `{}`:\n\n{fence}\n{text}{fence}\n\n", md_escape(&r.fleet));
        if out.len() + block.len() + tail_reserve <= o.max_bytes {
            out.push_str(&block);
        }
    }
    if shown < total {
        let _ = writeln!(
            out,
            "> **Truncated:** {} of {} changed units are not shown (this comment is capped at {} bytes). Run `harmony plan --format human` or `harmony show PLANFILE` for the whole plan.",
            total - shown,
            total,
            o.max_bytes
        );
    }
    out
}

/// The JSON format: the plan file itself.
pub fn json(p: &PlanFile) -> String {
    p.to_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plan files are input: odd but schema-valid content renders without panicking.
    #[test]
    fn odd_plan_files_render() {
        let action = PlannedAction {
            unit: "release/é/<b>|x</b>".into(),
            apply: ApplyFields {
                action: Action::Replace,
                observed: Some(ObservedRevision::Compiled { hash: "é".into() }),
                desired_hash: None,
                depends_on: vec![],
                secrets: vec![SecretFingerprint { name: "n".into(), source: None, before: None, after: None, status: SecretStatus::Removed }],
                release: None,
                payload: None,
                drift: vec![],
            },
            explain: Explanation {
                reason: String::new(),
                objects: vec![ObjectChange {
                    key: "k".into(),
                    action: Action::Update,
                    diff: "```\n+ é\n````\n".repeat(50),
                    added: 0,
                    removed: 0,
                    replace_reason: None,
                    drift: false,
                }],
            },
        };
        let p = PlanFile {
            source: SourceRevision { commit: Some("ééééééééééééééé".into()), dirty: true, repository_hash: "€".into() },
            observed: ObservedSource::Revision { base: "main".into(), commit: Some("ü".into()) },
            identity: String::new(),
            fingerprint_key_id: String::new(),
            filters: Filters { targets: vec!["t".into()], excludes: vec!["x".into()], skipped: vec!["clusters".into()] },
            ..fleet_plan(Summary { replace: 1, ..Summary::default() }, vec![action; 20])
        };
        for compact in [false, true] {
            let h = human(&p, &HumanOptions { color: true, compact, max_lines_per_unit: 3 });
            assert!(h.contains("Plan: 1 to add, 0 to change, 1 to destroy."));
        }
        let md = markdown(&p, &MarkdownOptions { max_bytes: 1500, max_lines_per_unit: 5 });
        assert!(md.contains("`````diff"), "{md}");
        assert!(md.contains("&lt;b&gt;\\|x&lt;/b&gt;"), "{md}");
        assert!(md.contains("**Truncated:**"), "{md}");
        assert!(md.len() <= 1500, "{}", md.len());
        assert!(json(&p).ends_with("}\n"));
    }

    /// A plan of fleet `pico` against live state, with `actions`.
    fn fleet_plan(summary: Summary, actions: Vec<PlannedAction>) -> PlanFile {
        PlanFile {
            capabilities: Default::default(),
            rollouts: Vec::new(),
            device_drift: Vec::new(),
            repository: None,
            targets: Default::default(),
            charts: Default::default(),
            seal: None,
            kind: PLAN_FILE_KIND.into(),
            format_version: PLAN_FORMAT_VERSION,
            source: SourceRevision { commit: Some("abc".into()), dirty: false, repository_hash: "sha256:11".into() },
            observed: ObservedSource::Live { targets: vec!["fleet pico".into()], hash: "sha256:22".into() },
            identity: "sha256:33".into(),
            fingerprint_key_id: "kid:44".into(),
            filters: Filters::default(),
            summary,
            actions,
        }
    }

    /// A fleet rollout is shown after the actions, in every format.
    #[test]
    fn rollouts_are_shown() {
        let action = PlannedAction {
            unit: "device-plan/pico/pi-003".into(),
            apply: ApplyFields {
                action: Action::Update,
                observed: Some(ObservedRevision::KvEntry { revision: 7 }),
                desired_hash: Some("sha256:00".into()),
                depends_on: vec![],
                secrets: vec![],
                release: None,
                payload: None,
                drift: vec![],
            },
            explain: Explanation { reason: "content changed".into(), objects: vec![] },
        };
        let rollout = harmony_schemas::plan::PlannedRollout {
            fleet: "pico".into(),
            id: "sha256:00".into(),
            what: vec!["deployment sensor-hub".into()],
            steps: vec![
                harmony_schemas::plan::PlannedStep { percent: 10, devices: vec!["pi-003".into()] },
                harmony_schemas::plan::PlannedStep { percent: 50, devices: vec!["nuc-001".into()] },
                harmony_schemas::plan::PlannedStep { percent: 100, devices: vec!["pi-002".into(), "pi-001".into()] },
            ],
            max_failed: 1,
            health_timeout_s: 120,
            settle_s: 30,
            auto_revert: true,
            continues: Some(harmony_schemas::plan::RolloutContinuation::Resume { healthy_steps: 1 }),
            record_revision: None,
        };
        let p = PlanFile { rollouts: vec![rollout], ..fleet_plan(Summary { update: 1, ..Summary::default() }, vec![action]) };
        insta::assert_snapshot!("rollout_human", human(&p, &HumanOptions { color: false, compact: false, max_lines_per_unit: 10 }));
        insta::assert_snapshot!("rollout_markdown", markdown(&p, &MarkdownOptions { max_bytes: 60_000, max_lines_per_unit: 10 }));
        let back = PlanFile::from_json(&json(&p)).expect("round trip");
        assert_eq!(back.rollouts, p.rollouts);
    }

    /// Device drift is shown before the actions (also when nothing changes), in every format.
    #[test]
    fn device_drift_is_shown() {
        let finding = |found: &str, action: &str, at_ms: u64| harmony_schemas::fleet::Drift {
            deployment: "sensor-hub".into(),
            container: "hub".into(),
            found: found.into(),
            action: action.into(),
            at_ms,
        };
        let p = PlanFile {
            device_drift: vec![DeviceDrift {
                fleet: "pico".into(),
                device: "nuc-001".into(),
                drift: vec![finding("missing", "recreated", 1_796_677_670_090), finding("exited (code 137)", "started", 1_796_677_700_000)],
            }],
            ..fleet_plan(Summary { noop: 2, ..Summary::default() }, vec![])
        };
        insta::assert_snapshot!("device_drift_human", human(&p, &HumanOptions::default()));
        insta::assert_snapshot!("device_drift_markdown", markdown(&p, &MarkdownOptions::default()));
        let back = PlanFile::from_json(&json(&p)).expect("round trip");
        assert_eq!(back.device_drift, p.device_drift);
    }
}
