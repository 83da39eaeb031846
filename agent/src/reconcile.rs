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
//! - nothing is written to podman when everything already matches;
//! - the status is what podman lists after the changes ([`observe`]), not what was asked of it;
//! - a repair pass (the periodic or event-driven look at podman with the plan unchanged, or the
//!   resume after a restart) reports each change it makes as [`Drift`];
//! - a service that keeps exiting is started again with a back-off (10 s doubling to 5 min),
//!   and reported failed (crash-looping, with its exit code and restart count) meanwhile.
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use harmony_schemas::fleet::{
    ContainerKind, ContainerState, ContainerStatus, DeploymentFailure, DeploymentPlan, DeploymentState, DeploymentStatus, DevicePlan, Drift, MAX_DRIFT,
    Observed, RestartPolicy, now_ms,
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
    /// When podman was listed for the status, Unix ms (none without a runtime or on an error).
    pub observed_at_ms: Option<u64>,
}

/// How long a drift finding stays in the status.
const DRIFT_SHOWN_MS: u64 = 15 * 60 * 1000;
/// First back-off of a service that keeps exiting; it doubles up to [`MAX_BACK_OFF_MS`].
const BACK_OFF_MS: u64 = 10_000;
const MAX_BACK_OFF_MS: u64 = 300_000;
/// Running this long, a service's back-off is forgotten.
const STEADY_MS: u64 = 60_000;

/// What the agent remembers between looks at podman (in memory: a restarted agent starts afresh).
#[derive(Debug, Default)]
pub struct Watch {
    /// The agent's own starts of a service that keeps exiting, by (deployment, container).
    back_off: BTreeMap<(String, String), BackOff>,
    /// Restart counts seen at the last look, by container id.
    restarts: BTreeMap<String, u64>,
    /// The last exit code seen, by container id (podman lists 0 for a container it restarted).
    exits: BTreeMap<String, i64>,
    /// Drift found, newest last.
    drift: Vec<Drift>,
    /// Containers the agent created, until it has seen their image.
    created: BTreeSet<String>,
    /// Per service: the spec hash and image id of the container the agent created for it (or
    /// found at its first look): a container with that spec hash and another image was
    /// replaced behind its back.
    images: BTreeMap<(String, String), (String, String)>,
}

#[derive(Debug)]
struct BackOff {
    id: String,
    starts: u64,
    next_ms: u64,
}

impl Watch {
    /// The drift found in the last [`DRIFT_SHOWN_MS`], newest last (at most [`MAX_DRIFT`]).
    pub fn drift(&self) -> Vec<Drift> {
        let since = now_ms().saturating_sub(DRIFT_SHOWN_MS);
        self.drift.iter().filter(|d| d.at_ms >= since).cloned().collect()
    }

    fn found(&mut self, deployment: &str, container: &str, found: String, action: impl Into<String>) {
        let d = Drift { deployment: deployment.into(), container: container.into(), found, action: action.into(), at_ms: now_ms() };
        tracing::warn!(deployment, container, "drift: {} → {}", d.found, d.action);
        self.drift.push(d);
        let excess = self.drift.len().saturating_sub(MAX_DRIFT);
        self.drift.drain(..excess);
    }

    /// How container `c` of service `key` differs from its plan (`spec_hash`), if it does.
    fn differs(&self, key: &(String, String), c: &Listed, spec_hash: &str) -> Option<String> {
        let label = c.label(LABEL_SPEC_HASH);
        if label != Some(spec_hash) {
            return Some(format!("spec hash {}, planned {}", short(label.unwrap_or("none")), short(spec_hash)));
        }
        let (hash, image) = self.images.get(key)?;
        let now = c.image_id.as_deref().filter(|i| !i.is_empty())?;
        (hash == spec_hash && image != now).then(|| format!("image {}, planned {}", short(now), short(image)))
    }

    /// Whether service `key` (container `id`) may be started now; counts the start.
    fn may_start(&mut self, key: &(String, String), id: &str, now: u64) -> Result<(), u64> {
        let b = self.back_off.entry(key.clone()).or_insert_with(|| BackOff { id: id.into(), starts: 0, next_ms: 0 });
        if b.id != id {
            *b = BackOff { id: id.into(), starts: 0, next_ms: 0 };
        }
        if now < b.next_ms {
            return Err(b.next_ms);
        }
        b.starts += 1;
        b.next_ms = now.saturating_add((BACK_OFF_MS << (b.starts - 1).min(5)).min(MAX_BACK_OFF_MS));
        Ok(())
    }
}

fn short(hash: &str) -> &str {
    let h = hash.strip_prefix("sha256:").unwrap_or(hash);
    h.get(..12).unwrap_or(h)
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
/// with its host paths resolved and checked by `mounts` first. `repair`: the plan is the one
/// already applied, so every change made is drift, recorded in `watch`.
pub async fn reconcile(runtime: &Runtime, device: &str, plan: &DevicePlan, state: &mut PersistedState, mounts: &MountPolicy, watch: &mut Watch, repair: bool) -> Outcome {
    match runtime {
        Runtime::Disabled => disabled(plan),
        Runtime::Podman(p) => {
            let before = p.writes();
            let mut out = match reconcile_podman(p, mounts, device, plan, state, watch, repair).await {
                Ok((deployments, at)) => Outcome { deployments, observed_at_ms: Some(at), ..Default::default() },
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
                    observed: None,
                }))
                .collect(),
        })
        .collect();
    Outcome { deployments, writes: 0, error: None, observed_at_ms: None }
}

async fn reconcile_podman(
    p: &Podman,
    mounts: &MountPolicy,
    device: &str,
    plan: &DevicePlan,
    state: &mut PersistedState,
    watch: &mut Watch,
    repair: bool,
) -> Result<(Vec<DeploymentStatus>, u64), PodmanError> {
    let writes = p.writes();
    let mut at = now_ms();
    let existing = p.list(device).await?;
    let first = existing.clone();
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
            if repair && c.label(LABEL_KIND) == Some("service") {
                watch.found(&dep, &name, "not planned".into(), "removed");
            }
        }
    }
    // Forget bookkeeping of deployments no longer planned.
    let names: BTreeSet<&str> = plan.deployments.iter().map(|d| d.name.as_str()).collect();
    state.inits_done.retain(|k, _| names.contains(k.as_str()));
    state.failed.retain(|k, _| names.contains(k.as_str()));

    let mut statuses = Vec::new();
    for d in &plan.deployments {
        statuses.push(deployment(p, mounts, device, plan, d, &mut services, state, watch, repair).await);
    }
    // The status says what podman has now: listed again after any change.
    let listed = if p.writes() == writes {
        first
    } else {
        at = now_ms();
        p.list(device).await?
    };
    observe(&mut statuses, plan, &listed, watch, at);
    Ok((statuses, at))
}

/// Sets each service's state in `statuses` from `listed` (podman, after the changes): running,
/// exited with its code, missing; its image, spec-hash label and restart count. A service
/// restarted since the last look, or waiting out a back-off, fails its deployment (crash-looping).
fn observe(statuses: &mut [DeploymentStatus], plan: &DevicePlan, listed: &[Listed], watch: &mut Watch, now: u64) {
    let by: BTreeMap<(&str, &str), &Listed> = listed
        .iter()
        .filter(|c| c.label(LABEL_KIND) == Some("service"))
        .filter_map(|c| Some(((c.label(LABEL_DEPLOYMENT)?, c.label(LABEL_CONTAINER)?), c)))
        .collect();
    let mut restarts = BTreeMap::new();
    for (d, st) in plan.deployments.iter().zip(statuses.iter_mut()) {
        for s in &d.services {
            let Some(cs) = st.containers.iter_mut().find(|c| c.kind == ContainerKind::Service && c.name == s.container.name) else { continue };
            let key = (d.name.clone(), s.container.name.clone());
            let Some(c) = by.get(&(d.name.as_str(), s.container.name.as_str())) else {
                cs.container_id = None;
                if cs.state == ContainerState::Running {
                    cs.state = ContainerState::Failed;
                }
                cs.observed = Some(Observed { runtime_state: "missing".into(), image_id: None, spec_hash: None, restart_count: 0, running_since_ms: None, back_off_until_ms: None });
                continue;
            };
            if let Some(image) = c.image_id.clone().filter(|i| !i.is_empty()) {
                let hash = c.label(LABEL_SPEC_HASH).unwrap_or_default().to_string();
                let ours = watch.created.remove(&c.id);
                match watch.images.get(&key) {
                    Some((h, _)) if *h == hash && !ours => {}
                    _ => {
                        watch.images.insert(key.clone(), (hash, image));
                    }
                }
            }
            let running = c.state == "running";
            let since_ms = u64::try_from(c.started_at).unwrap_or(0).saturating_mul(1000);
            if running && now.saturating_sub(since_ms) > STEADY_MS {
                watch.back_off.remove(&key);
            }
            let back_off = watch.back_off.get(&key).filter(|b| b.id == c.id);
            let count = c.restarts.saturating_add(back_off.map_or(0, |b| b.starts.saturating_sub(1)));
            let rising = watch.restarts.get(&c.id).is_some_and(|before| count > *before);
            restarts.insert(c.id.clone(), count);
            // Exited again before its back-off ran out: crash-looping.
            let waiting = back_off.filter(|b| !running && now < b.next_ms).map(|b| b.next_ms);
            if !running {
                watch.exits.insert(c.id.clone(), c.exit_code);
            }
            let exit = watch.exits.get(&c.id).copied();
            cs.container_id = Some(c.id.clone());
            cs.state = if running { ContainerState::Running } else if waiting.is_some() { ContainerState::Failed } else { ContainerState::Stopped };
            cs.exit_code = exit;
            cs.observed = Some(Observed {
                runtime_state: c.state.clone(),
                image_id: c.image_id.clone().filter(|i| !i.is_empty()),
                spec_hash: c.label(LABEL_SPEC_HASH).map(str::to_string),
                restart_count: count,
                running_since_ms: running.then_some(since_ms),
                back_off_until_ms: waiting,
            });
            if (rising || waiting.is_some()) && st.failure.is_none() {
                let next = waiting.map(|t| format!("; started again in {} s", t.saturating_sub(now).div_ceil(1000))).unwrap_or_default();
                st.failure = Some(DeploymentFailure::Runtime {
                    container: s.container.name.clone(),
                    message: match exit {
                        Some(code) => format!("crash-looping: exited with code {code}, restarted {count} times{next}"),
                        None => format!("crash-looping: restarted {count} times{next}"),
                    },
                });
                st.state = DeploymentState::Failed;
            }
        }
    }
    watch.restarts = restarts;
    // Nothing is kept for services no longer planned.
    let planned: BTreeSet<(String, String)> = plan.deployments.iter().flat_map(|d| d.services.iter().map(|s| (d.name.clone(), s.container.name.clone()))).collect();
    watch.back_off.retain(|k, _| planned.contains(k));
    watch.images.retain(|k, _| planned.contains(k));
    let listed_ids: BTreeSet<&str> = listed.iter().map(|c| c.id.as_str()).collect();
    watch.created.retain(|id| listed_ids.contains(id.as_str()));
    watch.exits.retain(|id, _| listed_ids.contains(id.as_str()));
}

async fn deployment(
    p: &Podman,
    mounts: &MountPolicy,
    device: &str,
    plan: &DevicePlan,
    d: &DeploymentPlan,
    services: &mut BTreeMap<(String, String), Listed>,
    state: &mut PersistedState,
    watch: &mut Watch,
    repair: bool,
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
        observed: None,
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
        let mut replaced = false;
        if let Some(c) = &cur
            && let Some(found) = watch.differs(&key, c, &s.spec_hash)
        {
            tracing::info!(deployment = %d.name, container = %s.container.name, "{found}: replacing {}", c.id);
            replaced = true;
            if let Err(e) = p.remove(&c.id).await {
                if repair {
                    watch.found(&d.name, &s.container.name, found, format!("failed: {e}"));
                }
                st.failure.get_or_insert(DeploymentFailure::Runtime { container: s.container.name.clone(), message: e.0 });
                st.containers.push(ContainerStatus { state: ContainerState::Failed, ..pending(&s.container.name, ContainerKind::Service, &s.spec_hash) });
                continue;
            }
            if repair {
                watch.found(&d.name, &s.container.name, found, "replaced");
            }
            cur = None;
        }
        let result = match cur {
            Some(c) => {
                let exited = c.state != "running" && c.state != "created" && c.state != "configured";
                let restart = match s.restart {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => c.exit_code != 0,
                    RestartPolicy::No => false,
                };
                if !exited && c.state != "running" {
                    tracing::info!(deployment = %d.name, container = %s.container.name, "starting {} ({})", c.id, c.state);
                    p.start(&c.id).await.map(|()| (c.id.clone(), ContainerState::Running))
                } else if exited && restart {
                    // podman says `exited` or `stopped` for the same thing.
                    let found = format!("exited (code {})", c.exit_code);
                    match watch.may_start(&key, &c.id, now_ms()) {
                        Ok(()) => {
                            tracing::info!(deployment = %d.name, container = %s.container.name, "starting {} ({})", c.id, c.state);
                            let r = p.start(&c.id).await;
                            let action = match &r {
                                Ok(()) => "started".to_string(),
                                Err(e) => format!("failed: {e}"),
                            };
                            // Drift only when found by a repair pass: starting an exited
                            // service while applying a new plan is the plan's own work.
                            if repair {
                                watch.found(&d.name, &s.container.name, found, action);
                            }
                            r.map(|()| (c.id.clone(), ContainerState::Running))
                        }
                        Err(_) => Ok((c.id.clone(), ContainerState::Failed)),
                    }
                } else {
                    Ok((c.id.clone(), listed_state(&c)))
                }
            }
            None => {
                let name = container_name(device, &d.name, &s.container.name, ContainerKind::Service);
                let labels = labels(device, plan, d, &s.container.name, ContainerKind::Service, &s.spec_hash);
                tracing::info!(deployment = %d.name, container = %s.container.name, "creating {name}");
                let created = match mounts.resolve(d, &s.container).map_err(host_path_refused) {
                    Ok(spec) => match p.create(&name, &spec, &labels, Some(s.restart)).await {
                        Ok(id) => {
                            watch.created.insert(id.clone());
                            p.start(&id).await.map(|()| (id, ContainerState::Running))
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                if repair && !replaced {
                    let action = match &created {
                        Ok(_) => "recreated".to_string(),
                        Err(e) => format!("failed: {e}"),
                    };
                    watch.found(&d.name, &s.container.name, "missing".into(), action);
                }
                created
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
