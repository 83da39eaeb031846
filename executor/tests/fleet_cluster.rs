//! Fleets on a NATS JetStream cluster (issue 22), against real nats-servers on loopback started
//! by `harmony_testkit::NatsCluster`, every node reading the authorisation `harmony fleet`
//! generates.
//!
//! - `cluster_harness_survives_a_killed_leader_and_serves_a_leaf`: the harness itself — three
//!   nodes elect a meta leader; an R3 bucket keeps accepting compare-and-set writes when its
//!   stream leader's node is killed; the restarted node catches up (a direct get on it alone
//!   returns the newest entry); a leaf node's client uses the cluster's JetStream.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use harmony_executor::fleet::auth::{Registry, new_user_nkey, server_config};
use harmony_executor::fleet::{NatsOptions, connect};
use harmony_testkit::{NatsCluster, write_file};

/// A three-node cluster whose nodes include the generated authorisation of a fleet with no
/// device; returns it with harmony's seed.
fn secured_cluster(dir: &std::path::Path) -> (NatsCluster, String) {
    let (seed, public) = new_user_nkey();
    let registry = Registry { version: 1, fleet: "pico".into(), harmony: public, reader: None, devices: Default::default() };
    write_file(dir, "nats-auth.conf", &server_config(&registry));
    (NatsCluster::start_in(dir, 3, "include \"nats-auth.conf\""), seed)
}

/// The server name of `stream`'s leader, waiting (up to 20 s) until it has one.
async fn stream_leader(js: &jetstream::Context, stream: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = js.get_stream(stream).await
            && let Ok(info) = s.info().await
            && let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone())
        {
            return leader;
        }
        assert!(Instant::now() < deadline, "stream {stream} has no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_harness_survives_a_killed_leader_and_serves_a_leaf() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cluster, seed) = secured_cluster(dir.path());
    let opts = NatsOptions { urls: cluster.urls(), nkey_seed: Some(seed.clone()), ..Default::default() };
    let client = connect(&opts).await.expect("connect");
    let js = jetstream::new(client.clone());
    let store = js.create_key_value(kv::Config { bucket: "probe".into(), history: 1, num_replicas: 3, ..Default::default() }).await.expect("R3 bucket");
    let rev = store.create("k", "v1".into()).await.expect("create");

    let leader = stream_leader(&js, "KV_probe").await;
    let victim = cluster.index_of(&leader).expect("a node of the cluster");
    cluster.kill(victim);
    // Compare-and-set keeps working once the two others elect a leader (the client reconnects
    // to another node when it was on the victim).
    let deadline = Instant::now() + Duration::from_secs(30);
    let rev2 = loop {
        match store.update("k", "v2".into(), rev).await {
            Ok(r) => break r,
            Err(e) => {
                assert!(Instant::now() < deadline, "no write after killing the leader {leader}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(store.update("k", "v3".into(), rev).await.is_err(), "a stale compare-and-set is refused on the new leader");
    let new_leader = stream_leader(&js, "KV_probe").await;
    assert_ne!(new_leader, leader, "another node leads the stream");

    // The restarted node is healthy only once caught up; a direct get on it alone sees v2.
    cluster.restart(victim);
    let only = connect(&NatsOptions { urls: vec![cluster.node(victim).url()], nkey_seed: Some(seed), ..Default::default() }).await.expect("connect to the restarted node");
    let store_there = jetstream::new(only).get_key_value("probe").await.expect("bucket");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = store_there.entry("k").await.expect("direct get");
        if e.as_ref().map(|e| e.revision) == Some(rev2) {
            assert_eq!(&e.expect("entry").value[..], b"v2");
            break;
        }
        assert!(Instant::now() < deadline, "the restarted node did not catch up: {e:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A leaf node without JetStream of its own: its client reads and writes the cluster's bucket.
    // The hub has a JetStream domain: across a leaf connection nats-server denies `$JS.API.>`,
    // `$KV.>` and `$OBJ.>` (server/leafnode.go, `denyAllClientJs`), and a leaf's clients reach the
    // hub's JetStream through the domain's API prefix `$JS.hub.API.>`.
    let plain_dir = tempfile::tempdir().expect("tmp");
    let plain = NatsCluster::start_in(plain_dir.path(), 3, "jetstream { domain: hub }");
    let leaf = plain.start_leaf("site-1", "", "");
    let c = connect(&NatsOptions { urls: plain.urls(), ..Default::default() }).await.expect("connect");
    let hub = jetstream::new(c).create_key_value(kv::Config { bucket: "probe".into(), num_replicas: 3, ..Default::default() }).await.expect("bucket");
    hub.put("k", "from-hub".into()).await.expect("put");
    let at_leaf = connect(&NatsOptions { urls: vec![leaf.url()], ..Default::default() }).await.expect("connect to the leaf");
    let js = jetstream::with_domain(at_leaf, "hub");
    let deadline = Instant::now() + Duration::from_secs(10);
    let store = loop {
        match js.get_key_value("probe").await {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "the hub's bucket through the leaf: {e}: {}", leaf.log());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(&store.get("k").await.expect("get").expect("entry")[..], b"from-hub");
    store.put("k", "from-leaf".into()).await.expect("put through the leaf");
    assert_eq!(&hub.get("k").await.expect("get").expect("entry")[..], b"from-leaf");
    plain.node(0).terminate();
    assert!(!plain.node(0).running(), "a clean shutdown ends the process");
}
