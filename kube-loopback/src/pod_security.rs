//! Pod Security admission, a strict subset of the real one
//! (<https://kubernetes.io/docs/concepts/security/pod-security-admission/>, checks and messages
//! from `k8s.io/pod-security-admission/policy`, levels from
//! <https://kubernetes.io/docs/concepts/security/pod-security-standards/>).
//!
//! A namespace labelled `pod-security.kubernetes.io/enforce: baseline|restricted` refuses a Pod
//! that violates the level with 403 Forbidden, worded like the real server:
//! `pods "x" is forbidden: violates PodSecurity "baseline:latest": privileged (container "c"
//! must not set securityContext.privileged=true)`. As on a real server, enforce does **not**
//! apply to workload resources (Deployments, Jobs, …): they are admitted, and the label `warn`
//! sends a `Warning` header; the pods their controllers would make are refused, which the
//! loopback's simulated controllers ([`crate::Options::auto_ready`]) show in the workload's
//! status (`ReplicaFailure`, no ready replicas).
//!
//! Checks: baseline — host namespaces, privileged containers, capabilities added beyond the
//! default set, hostPath volumes, host ports; restricted — those (with the stricter capability
//! and volume checks in place of the baseline ones) plus allowPrivilegeEscalation, runAsNonRoot
//! and seccompProfile. Not checked: AppArmor, SELinux, /proc mount, sysctls, Windows host
//! process, probes' host fields, runAsUser=0. The version label is ignored (`latest`). An
//! unknown level is taken as `restricted`, as the real admission does.

use serde_json::Value;

/// The label that sets a namespace's enforced level.
pub const ENFORCE: &str = "pod-security.kubernetes.io/enforce";
/// The label that sets the level warned about.
pub const WARN: &str = "pod-security.kubernetes.io/warn";

/// A Pod Security Standards level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// No restriction.
    Privileged,
    /// Known privilege escalations prevented.
    Baseline,
    /// Hardening best practices.
    Restricted,
}

impl Level {
    /// The level a label value names (an invalid value counts as `restricted`).
    pub fn from_label(v: &str) -> Level {
        match v {
            "privileged" => Level::Privileged,
            "baseline" => Level::Baseline,
            _ => Level::Restricted,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// The level a namespace's labels set for `label` (`None`: not set).
pub fn namespace_level(namespace: Option<&Value>, label: &str) -> Option<Level> {
    namespace?["metadata"]["labels"][label].as_str().map(Level::from_label)
}

/// The pod spec of a Pod or of a workload's pod template (`None`: the object has none).
pub fn pod_spec<'a>(group: &str, kind: &str, obj: &'a Value) -> Option<&'a Value> {
    let spec = match (group, kind) {
        ("", "Pod") => &obj["spec"],
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") | ("batch", "Job") | ("", "ReplicationController") => &obj["spec"]["template"]["spec"],
        ("batch", "CronJob") => &obj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => return None,
    };
    spec.is_object().then_some(spec)
}

/// `violates PodSecurity "baseline:latest": …` when `spec` breaks `level`.
pub fn violation(level: Level, spec: &Value) -> Option<String> {
    let found = check(level, spec);
    (!found.is_empty()).then(|| format!("violates PodSecurity \"{}:latest\": {}", level.as_str(), found.join(", ")))
}

fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["containers", "initContainers", "ephemeralContainers"].into_iter().flat_map(move |f| spec[f].as_array().into_iter().flatten())
}

fn name(c: &Value) -> &str {
    c["name"].as_str().unwrap_or_default()
}

/// `container "a"` / `containers "a", "b"` (Go's `pluralize` and `joinQuote`).
fn named(singular: &str, plural: &str, names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!("{} {}", if names.len() == 1 { singular } else { plural }, quoted.join(", "))
}

fn containers_where(spec: &Value, bad: impl Fn(&Value) -> bool) -> Vec<String> {
    containers(spec).filter(|c| bad(c)).map(|c| name(c).to_string()).collect()
}

const BASELINE_CAPABILITIES: &[&str] =
    &["AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"];

fn added(c: &Value) -> impl Iterator<Item = &str> {
    c["securityContext"]["capabilities"]["add"].as_array().into_iter().flatten().filter_map(Value::as_str)
}

/// `reason (detail)` per failed check, in the real registry's order (baseline checks by id,
/// then restricted ones by id; at restricted the stricter capability and volume checks replace
/// the baseline ones).
fn check(level: Level, spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if level == Level::Privileged {
        return out;
    }
    let sc = |c: &Value, f: &str| c["securityContext"][f].clone();
    let restricted = level == Level::Restricted;
    // capabilities_baseline
    if !restricted {
        let bad = containers_where(spec, |c| added(c).any(|a| !BASELINE_CAPABILITIES.contains(&a)));
        if !bad.is_empty() {
            let mut caps: Vec<&str> = containers(spec).flat_map(added).filter(|a| !BASELINE_CAPABILITIES.contains(a)).collect();
            caps.sort_unstable();
            caps.dedup();
            let caps: Vec<String> = caps.iter().map(|c| format!("\"{c}\"")).collect();
            out.push(format!("non-default capabilities ({} must not include {} in securityContext.capabilities.add)", named("container", "containers", &bad), caps.join(", ")));
        }
    }
    // hostNamespaces
    let hosts: Vec<&str> = ["hostIPC", "hostNetwork", "hostPID"].into_iter().filter(|f| spec[*f] == true).collect();
    if !hosts.is_empty() {
        out.push(format!("host namespaces ({})", hosts.iter().map(|h| format!("{h}=true")).collect::<Vec<_>>().join(", ")));
    }
    let volumes = spec["volumes"].as_array().map(Vec::as_slice).unwrap_or_default();
    // hostPathVolumes
    if !restricted {
        let host: Vec<String> = volumes.iter().filter(|v| v.get("hostPath").is_some()).map(|v| v["name"].as_str().unwrap_or_default().to_string()).collect();
        if !host.is_empty() {
            out.push(format!("hostPath volumes ({})", named("volume", "volumes", &host)));
        }
    }
    // hostPorts
    let bad = containers_where(spec, |c| c["ports"].as_array().into_iter().flatten().any(|p| p["hostPort"].as_i64().is_some_and(|h| h != 0)));
    if !bad.is_empty() {
        let mut ports: Vec<i64> = containers(spec).flat_map(|c| c["ports"].as_array().into_iter().flatten()).filter_map(|p| p["hostPort"].as_i64()).filter(|h| *h != 0).collect();
        ports.sort_unstable();
        ports.dedup();
        let list: Vec<String> = ports.iter().map(ToString::to_string).collect();
        out.push(format!(
            "hostPort ({} {} {} {})",
            named("container", "containers", &bad),
            if bad.len() == 1 { "uses" } else { "use" },
            if ports.len() == 1 { "hostPort" } else { "hostPorts" },
            list.join(", ")
        ));
    }
    // privileged
    let bad = containers_where(spec, |c| sc(c, "privileged") == true);
    if !bad.is_empty() {
        out.push(format!("privileged ({} must not set securityContext.privileged=true)", named("container", "containers", &bad)));
    }
    if !restricted {
        return out;
    }
    // allowPrivilegeEscalation
    let bad = containers_where(spec, |c| sc(c, "allowPrivilegeEscalation") != false);
    if !bad.is_empty() {
        out.push(format!("allowPrivilegeEscalation != false ({} must set securityContext.allowPrivilegeEscalation=false)", named("container", "containers", &bad)));
    }
    // capabilities_restricted
    let mut details = Vec::new();
    let no_drop = containers_where(spec, |c| !c["securityContext"]["capabilities"]["drop"].as_array().into_iter().flatten().any(|d| d == "ALL"));
    if !no_drop.is_empty() {
        details.push(format!("{} must set securityContext.capabilities.drop=[\"ALL\"]", named("container", "containers", &no_drop)));
    }
    let adding = containers_where(spec, |c| added(c).any(|a| a != "NET_BIND_SERVICE"));
    if !adding.is_empty() {
        let mut caps: Vec<&str> = containers(spec).flat_map(added).filter(|a| *a != "NET_BIND_SERVICE").collect();
        caps.sort_unstable();
        caps.dedup();
        let caps: Vec<String> = caps.iter().map(|c| format!("\"{c}\"")).collect();
        details.push(format!("{} must not include {} in securityContext.capabilities.add", named("container", "containers", &adding), caps.join(", ")));
    }
    if !details.is_empty() {
        out.push(format!("unrestricted capabilities ({})", details.join("; ")));
    }
    // restrictedVolumes
    const ALLOWED: &[&str] = &["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];
    let mut restricted_volumes: Vec<String> = volumes
        .iter()
        .filter(|v| !v.as_object().is_some_and(|m| m.keys().any(|k| ALLOWED.contains(&k.as_str()))))
        .map(|v| v["name"].as_str().unwrap_or_default().to_string())
        .collect();
    restricted_volumes.sort();
    if !restricted_volumes.is_empty() {
        let quoted: Vec<String> = restricted_volumes.iter().map(|n| format!("\"{n}\"")).collect();
        out.push(format!("restricted volume types (volumes [{}] have restricted types)", quoted.join(" ")));
    }
    // runAsNonRoot, seccompProfile: the pod's setting covers containers that set none.
    for (field, reason, want, bad_value) in [
        ("runAsNonRoot", "runAsNonRoot != true", "securityContext.runAsNonRoot=true", "securityContext.runAsNonRoot=false"),
        ("seccompProfile", "seccompProfile", "securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"", ""),
    ] {
        let valid = |v: &Value| if field == "runAsNonRoot" { *v == true } else { v["type"] == "RuntimeDefault" || v["type"] == "Localhost" };
        let pod = &spec["securityContext"][field];
        let mut setters: Vec<String> = Vec::new();
        if !pod.is_null() && !valid(pod) {
            setters.push("pod".into());
        }
        let explicit = containers_where(spec, |c| !c["securityContext"][field].is_null() && !valid(&c["securityContext"][field]));
        if !explicit.is_empty() {
            setters.push(named("container", "containers", &explicit));
        }
        if !setters.is_empty() {
            let detail = if field == "runAsNonRoot" {
                format!("{} must not set {bad_value}", setters.join(" and "))
            } else {
                let mut values: Vec<String> = std::iter::once(pod)
                    .chain(containers(spec).map(|c| &c["securityContext"][field]))
                    .filter(|v| !v.is_null() && !valid(v))
                    .map(|v| format!("\"{}\"", v["type"].as_str().unwrap_or_default()))
                    .collect();
                values.sort();
                values.dedup();
                format!("{} must not set securityContext.seccompProfile.type to {}", setters.join(" and "), values.join(", "))
            };
            out.push(format!("{reason} ({detail})"));
            continue;
        }
        let implicit = if valid(pod) { Vec::new() } else { containers_where(spec, |c| c["securityContext"][field].is_null()) };
        if !implicit.is_empty() {
            out.push(format!("{reason} (pod or {} must set {want})", named("container", "containers", &implicit)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn baseline_refuses_known_escalations_in_the_real_servers_words() {
        let spec = json!({
            "hostNetwork": true, "hostPID": true,
            "containers": [{"name": "a", "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN", "CHOWN"]}},
                            "ports": [{"containerPort": 80, "hostPort": 8080}]}],
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}, {"name": "cfg", "configMap": {"name": "c"}}]});
        assert_eq!(
            violation(Level::Baseline, &spec).unwrap(),
            "violates PodSecurity \"baseline:latest\": non-default capabilities (container \"a\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add), host namespaces (hostNetwork=true, hostPID=true), hostPath volumes (volume \"root\"), hostPort (container \"a\" uses hostPort 8080), privileged (container \"a\" must not set securityContext.privileged=true)"
        );
        assert_eq!(violation(Level::Privileged, &spec), None);
        let plain = json!({"containers": [{"name": "a", "image": "busybox"}], "volumes": [{"name": "d", "emptyDir": {}}]});
        assert_eq!(violation(Level::Baseline, &plain), None, "the default pod is baseline");
    }

    #[test]
    fn restricted_requires_hardening() {
        let plain = json!({"containers": [{"name": "a", "image": "busybox"}]});
        assert_eq!(
            violation(Level::Restricted, &plain).unwrap(),
            "violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"a\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"a\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"a\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"a\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        let hardened = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "a", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}],
            "volumes": [{"name": "d", "emptyDir": {}}]});
        assert_eq!(violation(Level::Restricted, &hardened), None);
        let mut root = hardened.clone();
        root["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false);
        root["volumes"] = json!([{"name": "n", "nfs": {"server": "s", "path": "/"}}]);
        assert_eq!(
            violation(Level::Restricted, &root).unwrap(),
            "violates PodSecurity \"restricted:latest\": restricted volume types (volumes [\"n\"] have restricted types), runAsNonRoot != true (container \"a\" must not set securityContext.runAsNonRoot=false)"
        );
    }

    #[test]
    fn levels_and_pod_templates() {
        assert_eq!(Level::from_label("baseline"), Level::Baseline);
        assert_eq!(Level::from_label("bogus"), Level::Restricted, "an invalid level is the most restrictive");
        let ns = json!({"metadata": {"labels": {ENFORCE: "baseline"}}});
        assert_eq!(namespace_level(Some(&ns), ENFORCE), Some(Level::Baseline));
        assert_eq!(namespace_level(Some(&ns), WARN), None);
        let cron = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}});
        assert!(pod_spec("batch", "CronJob", &cron).is_some());
        assert!(pod_spec("", "ConfigMap", &cron).is_none());
    }
}
