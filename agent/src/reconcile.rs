//! Reconciling podman to a verified plan.
//!
//! Rules (see `docs/agent.md`):
//! - only containers labelled `io.harmony.device=<this device>` are ever listed, so nothing else is touched;
//! - leftover init containers (a crash mid-run) and services no longer planned are removed;
//! - per deployment, in plan order: init containers run one at a time to completion (each with its
//!   timeout, removed after it exits) when the deployment's spec hash has not completed them yet;
//!   then services are created when missing, replaced when their spec hash label differs, started
//!   when created-but-not-started (or exited with `restart always`), and otherwise left alone;
//! - a deployment that failed stays failed (and is not retried) until a newer plan arrives;
//! - nothing is written to podman when everything already matches.
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use harmony_schemas::fleet::{
    ContainerKind, ContainerState, ContainerStatus, DeploymentFailure, DeploymentPlan, DeploymentState, DeploymentStatus, DevicePlan, RestartPolicy,
};

use crate::mounts::MountPolicy;
use crate::podman::{LABEL_CONTAINER, LABEL_DEPLOYMENT, LABEL_DEVICE, LABEL_GENERATION, LABEL_KIND, LABEL_SPEC_HASH, Listed, Podman, PodmanError};
use crate::state::{Failed, PersistedState};

/// The container runtime.
#[derive(Debug, Clone)]
pub enum Runtime {
    /// podman CLI.
    Podman(Podman),
    /// Disabled: nothing runs; plans are reported as applied.
    Disabled,
}

/// What a reconcile did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Per deployment status.
    pub deployments: Vec<DeploymentStatus>,
    /// podman writes made.
    pub writes: u64,
    /// A runtime-level error (listing failed): the reconcile did not complete.
    pub error: Option<String>,
}

/// podman's name of a container: `harmony-<device>-<deployment>-<container>[-init]`.
pub fn container_name(device: &str, deployment: &str, container: &str, kind: ContainerKind) -> String {
    match kind {
        ContainerKind::Service => format!("harmony-{device}-{deployment}-{container}"),
        ContainerKind::Init => format!("harmony-{device}-{deployment}-{container}-init"),
    }
}

fn kind_label(kind: ContainerKind) -> &'static str {
    match kind {
        ContainerKind::Init => "init",
        ContainerKind::Service => "service",
    }
}

fn labels(device: &str, plan: &DevicePlan, d: &DeploymentPlan, container: &str, kind: ContainerKind, hash: &str) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        (LABEL_DEVICE, device.to_string()),
        (LABEL_DEPLOYMENT, d.name.clone()),
        (LABEL_CONTAINER, container.to_string()),
        (LABEL_KIND, kind_label(kind).to_string()),
        (LABEL_SPEC_HASH, hash.to_string()),
        (LABEL_GENERATION, plan.generation.to_string()),
    ])
}

/// Reconciles `plan`, updating `state.inits_done` / `state.failed`; every container is created
/// with its host paths resolved and checked by `mounts` first.
pub async fn reconcile(runtime: &Runtime, device: &str, plan: &DevicePlan, state: &mut PersistedState, mounts: &MountPolicy) -> Outcome {
    match runtime {
        Runtime::Disabled => disabled(plan),
        Runtime::Podman(p) => {
            let before = p.writes();
            let mut out = match reconcile_podman(p, mounts, device, plan, state).await {
                Ok(deployments) => Outcome { deployments, ..Default::default() },
                Err(e) => Outcome { error: Some(e.0), ..Default::default() },
            };
            out.writes = p.writes() - before;
            out
        }
    }
}

fn disabled(plan: &DevicePlan) -> Outcome {
    let deployments = plan
        .deployments
        .iter()
        .map(|d| DeploymentStatus {
            name: d.name.clone(),
            spec_hash: d.spec_hash.clone(),
            state: DeploymentState::Running,
            failure: None,
            containers: d
                .init_containers
                .iter()
                .map(ContainerStatus::init_completed)
                .chain(d.services.iter().map(|s| ContainerStatus {
                    name: s.container.name.clone(),
                    kind: ContainerKind::Service,
                    state: ContainerState::Running,
                    container_id: None,
                    spec_hash: s.spec_hash.clone(),
                    exit_code: None,
                }))
                .collect(),
        })
        .collect();
    Outcome { deployments, writes: 0, error: None }
}

async fn reconcile_podman(p: &Podman, mounts: &MountPolicy, device: &str, plan: &DevicePlan, state: &mut PersistedState) -> Result<Vec<DeploymentStatus>, PodmanError> {
    let existing = p.list(device).await?;
    let planned: BTreeSet<(&str, &str)> =
        plan.deployments.iter().flat_map(|d| d.services.iter().map(move |s| (d.name.as_str(), s.container.name.as_str()))).collect();
    // Services by (deployment, container); extras and strays are removed.
    let mut services: BTreeMap<(String, String), Listed> = BTreeMap::new();
    for c in existing {
        let dep = c.label(LABEL_DEPLOYMENT).unwrap_or("").to_string();
        let name = c.label(LABEL_CONTAINER).unwrap_or("").to_string();
        let keep =
            c.label(LABEL_KIND) == Some("service") && planned.contains(&(dep.as_str(), name.as_str())) && !services.contains_key(&(dep.clone(), name.clone()));
        if keep {
            services.insert((dep, name), c);
        } else {
            tracing::info!(container = %c.id, deployment = %dep, name = %name, "removing container that is not planned");
            p.remove(&c.id).await?;
        }
    }
    // Forget bookkeeping of deployments no longer planned.
    let names: BTreeSet<&str> = plan.deployments.iter().map(|d| d.name.as_str()).collect();
    state.inits_done.retain(|k, _| names.contains(k.as_str()));
    state.failed.retain(|k, _| names.contains(k.as_str()));

    let mut statuses = Vec::new();
    for d in &plan.deployments {
        statuses.push(deployment(p, mounts, device, plan, d, &mut services, state).await);
    }
    Ok(statuses)
}

async fn deployment(
    p: &Podman,
    mounts: &MountPolicy,
    device: &str,
    plan: &DevicePlan,
    d: &DeploymentPlan,
    services: &mut BTreeMap<(String, String), Listed>,
    state: &mut PersistedState,
) -> DeploymentStatus {
    let mut st =
        DeploymentStatus { name: d.name.clone(), spec_hash: d.spec_hash.clone(), state: DeploymentState::Running, failure: None, containers: Vec::new() };
    let pending = |name: &str, kind, hash: &str| ContainerStatus {
        name: name.into(),
        kind,
        state: ContainerState::Pending,
        container_id: None,
        spec_hash: hash.into(),
        exit_code: None,
    };

    // A failure for this spec stands until a newer plan clears it.
    let failed_before = state.failed.get(&d.name).filter(|f| f.spec_hash == d.spec_hash).map(|f| f.failure.clone());
    let inits_done = d.init_containers.is_empty() || state.inits_done.get(&d.name) == Some(&d.spec_hash);
    let mut failure = failed_before;
    if failure.is_none() && !inits_done {
        for (i, init) in d.init_containers.iter().enumerate() {
            match run_init(p, mounts, device, plan, d, init).await {
                Ok(()) => st.containers.push(ContainerStatus {
                    state: ContainerState::Completed,
                    exit_code: Some(0),
                    ..pending(&init.container.name, ContainerKind::Init, &init.spec_hash)
                }),
                Err(f) => {
                    let exit_code = match &f {
                        DeploymentFailure::InitExited { exit_code, .. } => Some(*exit_code),
                        _ => None,
                    };
                    st.containers.push(ContainerStatus {
                        state: ContainerState::Failed,
                        exit_code,
                        ..pending(&init.container.name, ContainerKind::Init, &init.spec_hash)
                    });
                    for rest in &d.init_containers[i + 1..] {
                        st.containers.push(pending(&rest.container.name, ContainerKind::Init, &rest.spec_hash));
                    }
                    failure = Some(f);
                    break;
                }
            }
        }
        if failure.is_none() {
            state.inits_done.insert(d.name.clone(), d.spec_hash.clone());
        }
    } else {
        for init in &d.init_containers {
            let done = failure.is_none() || inits_done;
            st.containers.push(if done {
                ContainerStatus { state: ContainerState::Completed, exit_code: Some(0), ..pending(&init.container.name, ContainerKind::Init, &init.spec_hash) }
            } else {
                pending(&init.container.name, ContainerKind::Init, &init.spec_hash)
            });
        }
    }
    if let Some(f) = failure {
        tracing::warn!(deployment = %d.name, "deployment failed: {f}");
        state.failed.insert(d.name.clone(), Failed { spec_hash: d.spec_hash.clone(), failure: f.clone() });
        // Services stay as they were (an older spec keeps running); report what exists.
        for s in &d.services {
            let cur = services.get(&(d.name.clone(), s.container.name.clone()));
            st.containers.push(match cur {
                Some(c) => ContainerStatus {
                    state: listed_state(c),
                    container_id: Some(c.id.clone()),
                    spec_hash: c.label(LABEL_SPEC_HASH).unwrap_or("").into(),
                    ..pending(&s.container.name, ContainerKind::Service, "")
                },
                None => pending(&s.container.name, ContainerKind::Service, &s.spec_hash),
            });
        }
        st.state = DeploymentState::Failed;
        st.failure = Some(f);
        return st;
    }

    for s in &d.services {
        let key = (d.name.clone(), s.container.name.clone());
        let mut cur = services.remove(&key);
        if let Some(c) = &cur
            && c.label(LABEL_SPEC_HASH) != Some(s.spec_hash.as_str())
        {
            tracing::info!(deployment = %d.name, container = %s.container.name, "spec changed: replacing {}", c.id);
            if let Err(e) = p.remove(&c.id).await {
                st.failure.get_or_insert(DeploymentFailure::Runtime { container: s.container.name.clone(), message: e.0 });
                st.containers.push(ContainerStatus { state: ContainerState::Failed, ..pending(&s.container.name, ContainerKind::Service, &s.spec_hash) });
                continue;
            }
            cur = None;
        }
        let result = match cur {
            Some(c) => {
                let needs_start = c.state == "created" || c.state == "configured" || (c.state != "running" && s.restart == RestartPolicy::Always);
                if needs_start {
                    tracing::info!(deployment = %d.name, container = %s.container.name, "starting {} ({})", c.id, c.state);
                    p.start(&c.id).await.map(|()| (c.id.clone(), ContainerState::Running))
                } else {
                    Ok((c.id.clone(), listed_state(&c)))
                }
            }
            None => {
                let name = container_name(device, &d.name, &s.container.name, ContainerKind::Service);
                let labels = labels(device, plan, d, &s.container.name, ContainerKind::Service, &s.spec_hash);
                tracing::info!(deployment = %d.name, container = %s.container.name, "creating {name}");
                match mounts.resolve(d, &s.container).map_err(host_path_refused) {
                    Ok(spec) => match p.create(&name, &spec, &labels, Some(s.restart)).await {
                        Ok(id) => p.start(&id).await.map(|()| (id, ContainerState::Running)),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok((id, state)) => {
                st.containers.push(ContainerStatus { state, container_id: Some(id), ..pending(&s.container.name, ContainerKind::Service, &s.spec_hash) })
            }
            Err(e) => {
                st.failure.get_or_insert(DeploymentFailure::Runtime { container: s.container.name.clone(), message: e.0 });
                st.containers.push(ContainerStatus { state: ContainerState::Failed, ..pending(&s.container.name, ContainerKind::Service, &s.spec_hash) });
            }
        }
    }
    if st.failure.is_some() {
        // Runtime failures of services are retried on the next reconcile (not recorded as failed).
        st.state = DeploymentState::Failed;
    }
    st
}

fn host_path_refused(e: String) -> PodmanError {
    PodmanError(format!("host path refused: {e}"))
}

fn listed_state(c: &Listed) -> ContainerState {
    match c.state.as_str() {
        "running" => ContainerState::Running,
        "created" | "configured" | "exited" | "stopped" | "paused" => ContainerState::Stopped,
        _ => ContainerState::Stopped,
    }
}

async fn run_init(
    p: &Podman,
    mounts: &MountPolicy,
    device: &str,
    plan: &DevicePlan,
    d: &DeploymentPlan,
    init: &harmony_schemas::fleet::InitContainer,
) -> Result<(), DeploymentFailure> {
    let cname = &init.container.name;
    let runtime = |e: PodmanError| DeploymentFailure::Runtime { container: cname.clone(), message: e.0 };
    let name = container_name(device, &d.name, cname, ContainerKind::Init);
    let labels = labels(device, plan, d, cname, ContainerKind::Init, &init.spec_hash);
    tracing::info!(deployment = %d.name, container = %cname, timeout_s = init.timeout_s, "running init container");
    let spec = mounts.resolve(d, &init.container).map_err(host_path_refused).map_err(runtime)?;
    let id = p.create(&name, &spec, &labels, Some(RestartPolicy::No)).await.map_err(runtime)?;
    let started = Instant::now();
    let result = match p.start(&id).await {
        Err(e) => Err(runtime(e)),
        Ok(()) => match p.wait(&id, Duration::from_secs(init.timeout_s)).await {
            Ok(Some(0)) => Ok(()),
            Ok(Some(code)) => Err(DeploymentFailure::InitExited { container: cname.clone(), exit_code: code }),
            Ok(None) => Err(DeploymentFailure::InitTimedOut { container: cname.clone(), waited_s: started.elapsed().as_secs() }),
            Err(e) => Err(runtime(e)),
        },
    };
    // Init containers never restart and are removed after they exit (or are killed).
    if let Err(e) = p.remove(&id).await {
        tracing::warn!("cannot remove init container {id}: {e}");
    }
    result
}
