//! Readiness of applied objects, as `helm install --wait` judges it (Helm's
//! `pkg/kube/ready.go`): workloads with all replicas updated and ready, Jobs completed,
//! PVCs bound, LoadBalancer Services with an address. Everything else is ready when it exists.

use serde_json::Value;

/// Whether a Job has finished, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Still running.
    Running,
    /// Completed.
    Succeeded,
    /// Failed, with the condition's message.
    Failed(String),
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind && c["status"] == "True")
}

/// A Job's state from its status.
pub fn job_state(job: &Value) -> JobState {
    if let Some(c) = condition(job, "Failed") {
        return JobState::Failed(c["message"].as_str().or(c["reason"].as_str()).unwrap_or("failed").to_string());
    }
    let succeeded = job["status"]["succeeded"].as_i64().unwrap_or(0);
    let completions = job["spec"]["completions"].as_i64().unwrap_or(1);
    if condition(job, "Complete").is_some() || succeeded >= completions { JobState::Succeeded } else { JobState::Running }
}

/// `None` when ready, else why not (for the timeout message).
pub fn not_ready(obj: &Value) -> Option<String> {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let status = &obj["status"];
    let int = |v: &Value| v.as_i64().unwrap_or(0);
    let observed_current = || status["observedGeneration"].as_i64().is_none_or(|g| g >= int(&obj["metadata"]["generation"]));
    // Why a controller cannot make pods (admission refused them: Pod Security, quota), if it says.
    let failure = condition(obj, "ReplicaFailure").and_then(|c| c["message"].as_str()).map(|m| format!("; ReplicaFailure: {m}")).unwrap_or_default();
    match kind {
        "Deployment" | "StatefulSet" => {
            let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            let (ready, updated) = (int(&status["readyReplicas"]), int(&status["updatedReplicas"]));
            (!observed_current() || ready < want || updated < want).then(|| format!("{kind} {name}: {ready}/{want} replicas ready, {updated} updated{failure}"))
        }
        "DaemonSet" => {
            let want = int(&status["desiredNumberScheduled"]);
            let ready = int(&status["numberReady"]);
            (!observed_current() || ready < want).then(|| format!("DaemonSet {name}: {ready}/{want} pods ready{failure}"))
        }
        "Job" => match job_state(obj) {
            JobState::Succeeded => None,
            JobState::Running => Some(format!("Job {name}: not complete")),
            JobState::Failed(m) => Some(format!("Job {name}: failed: {m}")),
        },
        "PersistentVolumeClaim" => {
            (status["phase"] != "Bound").then(|| format!("PersistentVolumeClaim {name}: {}", status["phase"].as_str().unwrap_or("Pending")))
        }
        "Service" if obj["spec"]["type"] == "LoadBalancer" => {
            status["loadBalancer"]["ingress"].as_array().is_none_or(Vec::is_empty).then(|| format!("Service {name}: no load balancer address yet"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn workloads_jobs_and_claims() {
        let d = |ready: i64, observed: i64| json!({"kind": "Deployment", "metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 2}, "status": {"observedGeneration": observed, "readyReplicas": ready, "updatedReplicas": ready}});
        assert_eq!(not_ready(&d(2, 2)), None);
        assert_eq!(not_ready(&d(1, 2)).unwrap(), "Deployment web: 1/2 replicas ready, 1 updated");
        assert!(not_ready(&d(2, 1)).is_some(), "an old generation's status does not count");
        let mut refused = d(0, 2);
        refused["status"]["conditions"] = json!([{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "pods \"web-\" is forbidden: violates PodSecurity"}]);
        assert_eq!(not_ready(&refused).unwrap(), "Deployment web: 0/2 replicas ready, 0 updated; ReplicaFailure: pods \"web-\" is forbidden: violates PodSecurity");
        let job = json!({"kind": "Job", "metadata": {"name": "m"}, "status": {"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}});
        assert_eq!(job_state(&job), JobState::Failed("BackoffLimitExceeded".into()));
        assert_eq!(job_state(&json!({"kind": "Job", "status": {"succeeded": 1}})), JobState::Succeeded);
        assert!(not_ready(&json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "d"}, "status": {"phase": "Pending"}})).is_some());
        assert_eq!(not_ready(&json!({"kind": "ConfigMap", "metadata": {"name": "c"}})), None);
    }
}
