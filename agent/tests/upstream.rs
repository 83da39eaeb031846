//! Reproductions of the upstream behaviour the agent relies on (docs/adr/0006-agent-runtime.md).
//! If an upgrade of nats-server or podman changes one of these, this test says which.
mod support;

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt as _;
use harmony_schemas::fleet::{PLANS_BUCKET, kv_subject};
use harmony_testkit::{NatsServer, busybox_image, podman};

/// A KV put is delivered to core-NATS subscribers of `$KV.<bucket>.<key>` with the value as
/// body; a delete carries `KV-Operation: DEL`; a direct get returns the latest value.
#[tokio::test]
async fn nats_kv_updates_reach_core_subscribers() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    support::create_buckets(&js).await;
    let kv = js.get_key_value(PLANS_BUCKET).await.unwrap();
    let mut sub = client.subscribe(kv_subject(PLANS_BUCKET, "pi-1")).await.unwrap();
    client.flush().await.unwrap();
    kv.put("pi-1", "v1".into()).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
    assert_eq!(&msg.payload[..], b"v1");
    assert!(msg.headers.as_ref().and_then(|h| h.get("KV-Operation")).is_none());
    kv.delete("pi-1").await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
    assert_eq!(msg.headers.as_ref().and_then(|h| h.get("KV-Operation")).map(|v| v.as_str()), Some("DEL"));
    kv.put("pi-1", "v2".into()).await.unwrap();
    assert_eq!(&kv.get("pi-1").await.unwrap().unwrap()[..], b"v2");
    // Core subscriptions survive a server restart (the client re-subscribes on reconnect).
    nats.restart();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut put = false;
    for _ in 0..50 {
        if let Ok(kv) = js.get_key_value(PLANS_BUCKET).await
            && kv.put("pi-1", "v3".into()).await.is_ok()
        {
            put = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(put);
    let mut got = false;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
        if &m.payload[..] == b"v3" {
            got = true;
            break;
        }
    }
    assert!(got, "subscription did not survive the restart");
}

/// podman: `create … -- IMAGE ARGS` ends podman's option parsing; `ps -a --filter label=k=v
/// --format json` lists Id/Labels/State; `wait` prints the exit code; `exec CONTAINER ARGV`
/// does not treat `--` specially (it would be the command), so the agent passes argv directly.
#[test]
fn podman_cli_behaviour() {
    let img = busybox_image("1");
    let name = format!("harmony-upstream-{}", support::suffix());
    let id = podman(&["create", "--name", &name, "--label", "io.harmony.test=upstream", "--", &img, "sh", "-c", "exit 5"]);
    let listed: serde_json::Value = serde_json::from_str(&podman(&["ps", "-a", "--filter", "label=io.harmony.test=upstream", "--format", "json"])).unwrap();
    let me = listed.as_array().unwrap().iter().find(|c| c["Id"] == id.as_str()).expect("listed by label");
    assert_eq!((me["State"].as_str(), me["Labels"]["io.harmony.test"].as_str()), (Some("created"), Some("upstream")));
    podman(&["start", &id]);
    assert_eq!(podman(&["wait", &id]), "5");
    podman(&["rm", "-f", "-t", "0", &id]);
    // rm -f of a missing container succeeds.
    podman(&["rm", "-f", "-t", "0", &id]);
    let id = podman(&["run", "-d", "--name", &name, &img, "sleep", "60"]);
    let out = std::process::Command::new("podman").args(["exec", &id, "--", "true"]).output().unwrap();
    assert!(!out.status.success(), "podman exec runs `--` as the command");
    let out = std::process::Command::new("podman").args(["exec", &id, "sh", "-c", "echo -n hi; exit 4"]).output().unwrap();
    assert_eq!((out.status.code(), &out.stdout[..]), (Some(4), &b"hi"[..]));
    podman(&["rm", "-f", "-t", "0", &id]);
}
