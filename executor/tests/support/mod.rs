//! Shared by the fleet test files: a desired fleet of many devices.

use harmony_executor::fleet::DesiredFleet;
use harmony_schemas::fleet::{ContainerSpec, DeploymentPlan, DevicePlan, PROTOCOL_VERSION, RestartPolicy, Service};

/// `n` devices `d-0000…` of fleet `pico`, all running `hub` with VERSION=`version`.
pub fn desired(n: usize, version: u64) -> DesiredFleet {
    let c = ContainerSpec {
        name: "hub".into(),
        image: "registry.example/acme/hub:2".into(),
        command: vec![],
        args: vec![],
        env: [("VERSION".to_string(), version.to_string())].into_iter().collect(),
        ports: vec![],
        volumes: vec![],
    };
    let dep = DeploymentPlan::new("hub", "acme", vec![], vec![Service::new(c, RestartPolicy::Always)]);
    let plans = (0..n)
        .map(|i| {
            let id = format!("d-{i:04}");
            let p = DevicePlan {
                agent: None,
                version: PROTOCOL_VERSION,
                device_id: id.clone(),
                fleet: "pico".into(),
                generation: 0,
                source_revision: format!("r{version}"),
                agent_version: "0.1.0".into(),
                deployments: vec![dep.clone()],
                key_chain: vec![],
            };
            (id, p)
        })
        .collect();
    DesiredFleet { fleet: "pico".into(), plans }
}

