//! Issue 10's acceptance against a real nats-server running the authorisation `harmony fleet`
//! generates, with the real `harmony` and `harmony-agent` binaries (runtime `none`: no podman).
//!
//! - `device_permissions_are_least_privilege`: device A cannot read or watch B's plan, write B's
//!   status or heartbeat, receive B's commands, write any plan, or hear other clients' replies;
//!   each refusal is asserted (the server's permissions-violation error and no delivery / no
//!   change), next to the positive controls; harmony's identity applies, reads status and pings.
//! - `revoked_device_loses_access_and_gets_nothing`: revoke closes the live connection within the
//!   documented 5 s, reconnecting fails, the plan is gone, status says `revoked`, later applies
//!   write it nothing.
//! - `the_read_only_identity_reads_everything_and_writes_nothing`: `status` and `plan` work with
//!   the generated read-only identity alone; apply, KV writes, deletions, commands and other
//!   clients' inboxes are refused.
//! - `signing_key_rotation_keeps_agents_converging_and_retires_the_old_key`.
//! - Issue 20's attacks by a device: `attack_device_rollup_erases_every_status` (item 5),
//!   `attack_device_consumer_delivers_into_another_devices_plan` (item 6); by the read-only
//!   identity: `attack_reader_consumer_delivers_into_a_devices_plan` (item 6); a known limit:
//!   `reply_subjects_overwrite_an_entry_but_run_nothing`.
//!
//! Needs nats-server (scripts/install-test-deps.sh) and the agent binary (built on demand).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fleet::{agent_binary, harmony, next_binary, text};
use futures::StreamExt as _;
use harmony_schemas::fleet::{
    DevicePlan, DeviceStatus, HEARTBEATS_BUCKET, PLANS_BUCKET, STATUS_BUCKET, SignedDevicePlan, SigningKey, Verb, command_subject, device_inbox_prefix, encode_key,
    generate_signing_key, key_id, parse_signing_key,
};
use harmony_schemas::trust::{KeyAction, announce};
use harmony_testkit::{NatsServer, nats_server_binary};

/// A fleet `pico` with `auth nkey`: repository, auth directory, server running the generated
/// authorisation, enrolled devices.
struct Secure {
    server: NatsServer,
    dir: tempfile::TempDir,
    repo: PathBuf,
    auth: PathBuf,
    devices: Vec<String>,
    agents: Vec<Child>,
}

fn deployment(image: &str) -> String {
    format!("deployment web {{\n    tenant acme\n    fleet pico\n    selector site=sec\n    container app {{\n        image \"{image}\"\n    }}\n}}\n")
}

impl Secure {
    fn new(tag: &str, names: &[&str]) -> Secure {
        let dir = tempfile::tempdir().expect("tmp");
        let repo = dir.path().join("repo");
        let auth = dir.path().join("auth");
        std::fs::create_dir_all(&repo).expect("mkdir");
        let k1 = generate_signing_key().expect("key");
        std::fs::write(dir.path().join("k1.key"), encode_key(k1.as_bytes())).expect("write key");
        let command = generate_signing_key().expect("key");
        std::fs::write(dir.path().join("command.key"), encode_key(command.as_bytes())).expect("write key");
        let command_public = encode_key(command.verifying_key().as_bytes());
        std::fs::write(repo.join("pico.pub"), encode_key(k1.verifying_key().as_bytes())).expect("write");
        let devices: Vec<String> = names.iter().map(|n| format!("{tag}-{n}-{}", std::process::id())).collect();
        // The repository's URL is never dialled: every command gets --nats-url from the environment.
        let mut kdl = "fleet pico {\n    nats \"nats://127.0.0.1:1\"\n    agent-version \"0.1.0\"\n    signing-key \"pico.pub\"\n    tenants acme\n    auth nkey\n}\ntenant acme {\n    namespaces acme\n}\n".to_string();
        for d in &devices {
            kdl.push_str(&format!("device {d} {{\n    fleet pico\n    labels site=sec\n}}\n"));
        }
        std::fs::write(repo.join("fleet.kdl"), kdl).expect("write");
        std::fs::write(repo.join("deploy.kdl"), deployment("localhost/app:1")).expect("write");
        // harmony's identity and the (device-less) authorisation first, then the server that includes it.
        let out = harmony(&repo, &["fleet", "auth-config", "--auth-dir", &auth.to_string_lossy()], &[]);
        assert!(out.status.success(), "auth-config: {}", text(&out));
        std::fs::write(dir.path().join("server.conf"), "include \"auth/pico/nats-auth.conf\"\n").expect("write");
        let server = NatsServer::start_with_config(&dir.path().join("server.conf"));
        let s = Secure { server, dir, repo, auth, devices, agents: Vec::new() };
        for d in s.devices.clone() {
            let out = s.harmony(&[
                "fleet",
                "enroll",
                &d,
                "--out",
                &s.dev_dir(&d).to_string_lossy(),
                "--device-dir",
                &s.dev_dir(&d).to_string_lossy(),
                "--state-dir",
                &s.dir.path().join(format!("state-{d}")).to_string_lossy(),
                "--install-dir",
                &s.dir.path().join(format!("install-{d}")).to_string_lossy(),
                "--command-key",
                &command_public,
            ]);
            assert!(out.status.success(), "enroll {d}: {}", text(&out));
        }
        s
    }

    fn dev_dir(&self, device: &str) -> PathBuf {
        self.dir.path().join(format!("dev-{device}"))
    }

    fn key_file(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    /// The fleet's read-only identity's seed (`reader.nk`).
    fn reader_seed(&self) -> String {
        std::fs::read_to_string(self.auth.join("pico/reader.nk")).expect("reader.nk").trim().to_string()
    }

    fn seed(&self, device: &str) -> String {
        std::fs::read_to_string(self.dev_dir(device).join(format!("{device}.nk"))).expect("seed").trim().to_string()
    }

    fn harmony(&self, args: &[&str]) -> Output {
        let reload = format!("{} --signal reload={}", nats_server_binary().display(), self.server.pid().expect("running"));
        let url = self.server.url();
        let auth = self.auth.to_string_lossy().into_owned();
        let state = self.dir.path().join("harmony-state").to_string_lossy().into_owned();
        harmony(&self.repo, args, &[("HARMONY_NATS_URL", &url), ("HARMONY_AUTH_DIR", &auth), ("HARMONY_NATS_RELOAD", &reload), ("HARMONY_STATE_DIR", &state)])
    }

    fn apply_with(&self, key: &str) -> Output {
        self.harmony(&["apply", "--yes", "--signing-key-file", &self.key_file(key)])
    }

    fn apply(&self, key: &str) -> String {
        let out = self.apply_with(key);
        assert!(out.status.success(), "harmony apply failed: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn start_agent(&mut self, device: &str) {
        self.start_agent_exe(&agent_binary(), device, &[]);
    }

    fn start_agent_exe(&mut self, exe: &Path, device: &str, extra: &[&str]) {
        let log = self.dir.path().join(format!("agent-{device}.log"));
        let mut cmd = Command::new(exe);
        cmd.args(extra)
            .arg("--config")
            .arg(self.dev_dir(device).join("agent.toml"))
            .args(["--runtime", "none", "--heartbeat-interval", "1", "--label", "site=sec"])
            .env("HARMONY_AGENT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"));
        let child = common::fleet::spawn_written_executable(&mut cmd).expect("start harmony-agent");
        self.agents.push(child);
    }

    /// Starts every device's agent and waits until each is ready at `generation`.
    fn start_all_ready(&mut self, generation: u64) {
        for d in self.devices.clone() {
            self.start_agent(&d);
        }
        for d in self.devices.clone() {
            self.wait_ready(&d, generation);
        }
    }

    fn agent_log(&self, device: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("agent-{device}.log"))).unwrap_or_default()
    }

    fn status(&self, device: &str) -> serde_json::Value {
        device_status(&self.harmony(&["status", "--format", "json"]), device)
    }

    fn wait_status(&self, device: &str, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let d = self.status(device);
            if pred(&d) {
                return d;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; last status of {device}: {d:#}\nagent log:\n{}", self.agent_log(device));
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn wait_ready(&self, device: &str, generation: u64) -> serde_json::Value {
        self.wait_status(device, &format!("ready at generation {generation}"), |d| {
            d["condition"] == "ready" && d["applied_generation"] == generation && d["desired_generation"] == generation
        })
    }

    /// A client with harmony's identity.
    async fn harmony_client(&self) -> async_nats::Client {
        let seed = std::fs::read_to_string(self.auth.join("pico/harmony.nk")).expect("harmony seed");
        async_nats::ConnectOptions::with_nkey(seed.trim().to_string()).connect(self.server.url()).await.expect("harmony connects")
    }
}

impl Drop for Secure {
    fn drop(&mut self) {
        for a in &mut self.agents {
            let _ = a.kill();
            let _ = a.wait();
        }
    }
}

/// A client authenticated as `device` (its inbox prefix is its own), recording server errors and
/// connection events.
struct DeviceClient {
    client: async_nats::Client,
    events: Arc<Mutex<Vec<String>>>,
}

impl DeviceClient {
    async fn connect(url: &str, device: &str, seed: &str) -> Result<DeviceClient, async_nats::ConnectError> {
        Self::connect_with_inbox(url, &device_inbox_prefix(device), seed).await
    }

    async fn connect_with_inbox(url: &str, inbox_prefix: &str, seed: &str) -> Result<DeviceClient, async_nats::ConnectError> {
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        let client = async_nats::ConnectOptions::with_nkey(seed.to_string())
            .custom_inbox_prefix(inbox_prefix)
            .request_timeout(Some(Duration::from_millis(1500)))
            .max_reconnects(Some(1))
            .event_callback(move |e| {
                let ev = ev.clone();
                async move { ev.lock().unwrap().push(e.to_string().to_lowercase()) }
            })
            .connect(url)
            .await?;
        Ok(DeviceClient { client, events })
    }

    /// Waits until the server reported a permissions violation naming `subject`.
    async fn violation(&self, kind: &str, subject: &str) {
        let want = format!("permissions violation for {kind} to \"{}\"", subject.to_lowercase());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.events.lock().unwrap().iter().any(|e| e.contains(&want)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no `{want}` from the server; events: {:?}", self.events.lock().unwrap());
    }

    /// A request that must be refused: no reply, and the server names the violation.
    async fn refused_request(&self, subject: &str, body: &[u8]) {
        let r = self.client.request(subject.to_string(), body.to_vec().into()).await;
        assert!(r.is_err(), "request to {subject} was answered: {:?}", r.map(|m| String::from_utf8_lossy(&m.payload).into_owned()));
        self.violation("publish", subject).await;
    }

    /// A subscription that must be refused: the server names the violation and nothing arrives
    /// while `trigger` publishes on it.
    async fn refused_subscription(&self, subject: &str, trigger: impl std::future::Future<Output = ()>) {
        let mut sub = self.client.subscribe(subject.to_string()).await.expect("subscribe call");
        self.violation("subscription", subject).await;
        trigger.await;
        let got = tokio::time::timeout(Duration::from_millis(1500), sub.next()).await;
        assert!(!matches!(got, Ok(Some(_))), "a message on {subject} was delivered: {got:?}");
    }
}

/// `GET path` from the dashboard on `port`: the whole HTTP response, or `None` if it does not answer.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).ok()?;
    let mut body = String::new();
    c.read_to_string(&mut body).ok()?;
    Some(body)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn direct_get(device: &str) -> String {
    format!("$JS.API.DIRECT.GET.KV_{PLANS_BUCKET}.$KV.{PLANS_BUCKET}.{device}")
}

#[test]
fn device_permissions_are_least_privilege() {
    let mut f = Secure::new("perm", &["a", "b"]);
    let (a, b) = (f.devices[0].clone(), f.devices[1].clone());
    // Enrolment output: config, seed (0600), fleet key; no seed in the auth dir or the repository.
    let seed_a = f.seed(&a);
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(f.dev_dir(&a).join(format!("{a}.nk"))).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "device seed is private");
        let config = std::fs::read_to_string(f.dev_dir(&a).join("agent.toml")).unwrap();
        assert!(config.contains(&format!("device_id = \"{a}\"")) && config.contains("nkey_file") && !config.contains(&seed_a), "{config}");
        for dir in [&f.auth, &f.repo] {
            for e in walk(dir) {
                let text = std::fs::read_to_string(&e).unwrap_or_default();
                assert!(!text.contains(&seed_a), "device seed found in {}", e.display());
            }
        }
        // Seeds are never written into the repository: not an enrolment's output, not the auth dir.
        let inside = f.repo.join("keys");
        let out = f.harmony(&["fleet", "enroll", &a, "--out", &inside.to_string_lossy()]);
        assert!(!out.status.success() && text(&out).contains("is inside the repository"), "{}", text(&out));
        let out = f.harmony(&["fleet", "auth-config", "--auth-dir", &f.repo.join("auth").to_string_lossy()]);
        assert!(!out.status.success() && text(&out).contains("the auth directory"), "{}", text(&out));
        assert!(!inside.exists() && !f.repo.join("auth").exists(), "nothing was written into the repository");
    }
    // A fleet declaring `auth nkey` is not applied without the auth directory.
    let url = f.server.url();
    let out = harmony(&f.repo, &["apply", "--yes", "--signing-key-file", &f.key_file("k1.key")], &[("HARMONY_NATS_URL", &url)]);
    assert!(!out.status.success() && text(&out).contains("declares `auth nkey` but has no auth directory"), "{}", text(&out));
    // Nor can anyone connect without credentials.
    assert!(rt().block_on(async_nats::connect(url.as_str())).is_err(), "an anonymous client connected");
    // harmony's identity applies (creates buckets, writes plans) and the agents converge.
    f.apply("k1.key");
    f.start_agent(&a);
    f.start_agent(&b);
    f.wait_ready(&a, 1);
    f.wait_ready(&b, 1);
    // harmony pings through the agent's command subscription.
    let out = f.harmony(&["device", "ping", &a]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&format!("{a}: agent")), "{}", text(&out));

    let rt = rt();
    rt.block_on(async {
        let h = f.harmony_client().await;
        let hjs = async_nats::jetstream::new(h.clone());
        let plans = hjs.get_key_value(PLANS_BUCKET).await.expect("harmony reads plans");
        let statuses = hjs.get_key_value(STATUS_BUCKET).await.expect("harmony reads status");
        let heartbeats = hjs.get_key_value(HEARTBEATS_BUCKET).await.expect("harmony reads heartbeats");
        let plan_b = plans.entry(&b).await.unwrap().expect("b's plan");
        let plan_a = plans.entry(&a).await.unwrap().expect("a's plan");

        let dev = DeviceClient::connect(&f.server.url(), &a, &seed_a).await.expect("a connects with its seed");
        // Positive control: its own plan, with one direct get.
        let own = dev.client.request(direct_get(&a), Vec::new().into()).await.expect("a reads its own plan");
        assert_eq!(own.payload, plan_a.value, "a reads exactly its plan");

        // Read B's plan: a direct get of B's key, the un-keyed direct get and message get with a
        // body naming B, stream info (needed to open the bucket), a consumer (needed to watch).
        dev.refused_request(&direct_get(&b), b"").await;
        let body_b = format!("{{\"last_by_subj\":\"$KV.{PLANS_BUCKET}.{b}\"}}");
        dev.refused_request(&format!("$JS.API.DIRECT.GET.KV_{PLANS_BUCKET}"), body_b.as_bytes()).await;
        dev.refused_request(&format!("$JS.API.STREAM.MSG.GET.KV_{PLANS_BUCKET}"), body_b.as_bytes()).await;
        dev.refused_request(&format!("$JS.API.STREAM.INFO.KV_{PLANS_BUCKET}"), b"").await;
        dev.refused_request(&format!("$JS.API.CONSUMER.CREATE.KV_{PLANS_BUCKET}"), b"{}").await;
        dev.refused_request(&format!("$JS.API.CONSUMER.CREATE.KV_{PLANS_BUCKET}.watch.$KV.{PLANS_BUCKET}.{b}"), b"{}").await;
        // Its own direct-get subject with a body naming B: the server refuses a body on this form.
        let sneaky = dev.client.request(direct_get(&a), body_b.clone().into_bytes().into()).await;
        if let Ok(m) = &sneaky {
            assert_ne!(m.payload, plan_b.value, "a read b's plan through its own direct-get subject");
        }
        // The async-nats KV API (stream info first) is refused as a whole.
        let djs = async_nats::jetstream::new(dev.client.clone());
        assert!(djs.get_key_value(PLANS_BUCKET).await.is_err(), "a opened the plans bucket");

        // Watch B's plan (its update subject), or every plan: nothing arrives when harmony writes.
        let rewrite_b = || async { plans.put(&b, plan_b.value.clone()).await.map(|_| ()).expect("harmony writes b's plan") };
        dev.refused_subscription(&format!("$KV.{PLANS_BUCKET}.{b}"), rewrite_b()).await;
        dev.refused_subscription(&format!("$KV.{PLANS_BUCKET}.>"), rewrite_b()).await;
        dev.refused_subscription(">", rewrite_b()).await;

        // Write B's status and heartbeat: refused, and the entries are unchanged.
        let status_b = statuses.entry(&b).await.unwrap().expect("b's status").revision;
        dev.refused_request(&format!("$KV.{STATUS_BUCKET}.{b}"), b"{\"forged\":true}").await;
        dev.refused_request(&format!("$KV.{HEARTBEATS_BUCKET}.{b}"), b"{\"forged\":true}").await;
        let forged = statuses.entry(&b).await.unwrap().expect("b's status");
        assert!(!String::from_utf8_lossy(&forged.value).contains("forged"), "b's status was overwritten");
        assert!(forged.revision >= status_b);
        let hb = heartbeats.entry(&b).await.unwrap().expect("b's heartbeat");
        assert!(!String::from_utf8_lossy(&hb.value).contains("forged"), "b's heartbeat was overwritten");
        // Positive control: its own status (a JetStream ack comes back to its own inbox).
        let ack = dev.client.request(format!("$KV.{HEARTBEATS_BUCKET}.{a}"), b"{}".to_vec().into()).await.expect("a writes its own heartbeat");
        assert!(String::from_utf8_lossy(&ack.payload).contains("\"seq\""), "a JetStream ack: {:?}", ack.payload);

        // Write any plan, its own included: refused, plans unchanged.
        dev.refused_request(&format!("$KV.{PLANS_BUCKET}.{a}"), b"{}").await;
        dev.refused_request(&format!("$KV.{PLANS_BUCKET}.{b}"), b"{}").await;
        assert_eq!(plans.entry(&a).await.unwrap().expect("a's plan").value, plan_a.value);
        assert_eq!(plans.entry(&b).await.unwrap().expect("b's plan").value, plan_b.value);

        // Receive B's commands: nothing arrives while harmony pings B (B's agent answers).
        let ping_b = || async {
            let reply = h.request(command_subject(&b, Verb::Ping), "{}".into()).await.expect("b answers harmony's ping");
            assert!(String::from_utf8_lossy(&reply.payload).contains(&b));
        };
        dev.refused_subscription(&format!("device-commands.{b}.>"), ping_b()).await;
        // Other clients' replies (harmony's inbox, B's inbox) are not its to hear.
        dev.refused_subscription("_INBOX.>", ping_b()).await;
        dev.refused_subscription(&format!("{}.>", device_inbox_prefix(&b)), async {}).await;
        // Reply to anything but a request it received: refused.
        dev.refused_request("_INBOX.forged", b"{}").await;
        // It does receive its own commands (harmony pings A: the agent's reply arrives).
        let reply = h.request(command_subject(&a, Verb::Ping), "{}".into()).await.expect("a answers");
        assert!(String::from_utf8_lossy(&reply.payload).contains(&a));
    });
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn revoked_device_loses_access_and_gets_nothing() {
    let mut f = Secure::new("rev", &["a", "b"]);
    let (a, b) = (f.devices[0].clone(), f.devices[1].clone());
    f.apply("k1.key");
    f.start_all_ready(1);
    let seed_a = f.seed(&a);
    let rt = rt();
    let watcher = rt.block_on(DeviceClient::connect(&f.server.url(), &a, &seed_a)).expect("a connects");

    let started = Instant::now();
    let out = f.harmony(&["fleet", "revoke", &a]);
    assert!(out.status.success(), "revoke: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("revoked device {a}")), "{}", text(&out));
    // The live connection is closed by the reload (documented: within 5 s).
    rt.block_on(async {
        while watcher.client.connection_state() == async_nats::connection::State::Connected {
            assert!(started.elapsed() < Duration::from_secs(5), "a's connection survived the revocation for 5 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let events = watcher.events.lock().unwrap().clone();
    assert!(events.iter().any(|e| e.contains("authorization") || e.contains("disconnected")), "{events:?}");
    // Reconnecting with its credentials fails.
    let again = rt.block_on(DeviceClient::connect(&f.server.url(), &a, &seed_a));
    assert!(again.is_err(), "a revoked device connected again");
    // The running agent is out too: its heartbeat stops moving.
    rt.block_on(async {
        let h = f.harmony_client().await;
        let js = async_nats::jetstream::new(h);
        let hb = js.get_key_value(HEARTBEATS_BUCKET).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before = hb.entry(&a).await.unwrap().map(|e| e.revision);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(hb.entry(&a).await.unwrap().map(|e| e.revision), before, "the revoked agent still writes heartbeats");
        // Its plan is gone.
        let plans = js.get_key_value(PLANS_BUCKET).await.unwrap();
        assert!(plans.get(&a).await.unwrap().is_none(), "the revoked device's plan is still there");
    });
    // Status shows it revoked; B is unaffected.
    let d = f.status(&a);
    assert_eq!(d["condition"], "revoked", "{d:#}");
    let human = String::from_utf8_lossy(&f.harmony(&["status"]).stdout).into_owned();
    assert!(human.contains("revoked"), "{human}");
    // `harmony plan` agrees with apply: nothing for the declared-but-revoked device, and it says why.
    let out = f.harmony(&["plan", "--detailed-exitcode"]);
    let plan = text(&out);
    assert_eq!(out.status.code(), Some(0), "no changes expected: {plan}");
    assert!(!plan.contains(&format!("/{a}")), "the revoked device is planned: {plan}");
    assert!(plan.contains(&format!("device `{a}` of fleet")) && plan.contains("was revoked"), "{plan}");
    // A later apply writes it nothing (the device is still in the repository) but B converges.
    std::fs::write(f.repo.join("deploy.kdl"), deployment("localhost/app:2")).unwrap();
    let out = f.apply("k1.key");
    assert!(out.contains(&format!("~ device-plan/pico/{b} update")) && out.contains("fleet pico: 1 written") && !out.contains(&format!("/{a}")), "{out}");
    f.wait_ready(&b, 2);
    rt.block_on(async {
        let js = async_nats::jetstream::new(f.harmony_client().await);
        assert!(js.get_key_value(PLANS_BUCKET).await.unwrap().get(&a).await.unwrap().is_none(), "apply wrote a plan for a revoked device");
    });
    // Enrolling it again is refused.
    let out = f.harmony(&["fleet", "enroll", &a, "--out", &f.dir.path().join("again").to_string_lossy()]);
    assert!(!out.status.success() && text(&out).contains("revoked"), "{}", text(&out));
    assert!(!f.dir.path().join("again").exists(), "a refused enrolment wrote files");
}

#[test]
fn the_read_only_identity_reads_everything_and_writes_nothing() {
    let mut f = Secure::new("ro", &["a", "b"]);
    let (a, b) = (f.devices[0].clone(), f.devices[1].clone());
    f.apply("k1.key");
    f.start_agent(&a);
    f.wait_ready(&a, 1);
    // Generated beside harmony's own identity: a private seed, a user in the configuration.
    let seed_path = f.auth.join("pico/reader.nk");
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&seed_path).expect("reader.nk").permissions().mode() & 0o777, 0o600, "reader seed is private");
    }
    let seed = std::fs::read_to_string(&seed_path).unwrap().trim().to_string();
    let public = nkeys::KeyPair::from_seed(&seed).unwrap().public_key();
    let conf = std::fs::read_to_string(f.auth.join("pico/nats-auth.conf")).unwrap();
    assert!(conf.contains("read-only") && conf.contains(&public), "{conf}");

    // `status` and `plan` need nothing more: with harmony's own seed out of the way they read
    // the fleet with the read-only identity alone.
    let harmony_seed = f.auth.join("pico/harmony.nk");
    std::fs::rename(&harmony_seed, f.dir.path().join("harmony.nk.away")).unwrap();
    let d = f.status(&a);
    assert_eq!((d["condition"].as_str(), d["applied_generation"].as_u64()), (Some("ready"), Some(1)), "{d:#}");
    let out = f.harmony(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "plan with the read-only identity: {}", text(&out));
    // The dashboard too: it watches the buckets with the read-only identity.
    {
        let (ui, port) = f.start_ui();
        let get = || http_get(port, "/api/devices");
        let deadline = Instant::now() + Duration::from_secs(20);
        let body = loop {
            if let Some(b) = get().filter(|b| b.contains(&format!("\"device\":\"{a}\"")) && b.contains("\"condition\":\"ready\"")) {
                break b;
            }
            assert!(Instant::now() < deadline, "the dashboard never showed {a} ready with the read-only identity: {:?}", get());
            std::thread::sleep(Duration::from_millis(200));
        };
        drop_child(ui);
        assert!(body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/1.0 200"), "{body}");
    }
    // Nor can it apply: writing a plan is refused by the server.
    std::fs::write(f.repo.join("deploy.kdl"), deployment("localhost/app:2")).unwrap();
    let mut args = vec!["apply", "--yes"];
    let key = f.key_file("k1.key");
    args.extend(["--signing-key-file", key.as_str(), "--nats-nkey-file", seed_path.to_str().unwrap(), "--nats-inbox-prefix", "_INBOX__harmony_reader"]);
    let out = f.harmony(&args);
    assert!(!out.status.success(), "apply with the read-only identity succeeded: {}", text(&out));
    std::fs::rename(f.dir.path().join("harmony.nk.away"), &harmony_seed).unwrap();

    let rt = rt();
    rt.block_on(async {
        let h = f.harmony_client().await;
        let plans = async_nats::jetstream::new(h).get_key_value(PLANS_BUCKET).await.expect("harmony reads plans");
        let plan_a = plans.entry(&a).await.unwrap().expect("a's plan");

        let r = DeviceClient::connect_with_inbox(&f.server.url(), "_INBOX__harmony_reader", &seed).await.expect("the reader connects");
        // Positive controls: open a bucket, get an entry, read the whole bucket (direct gets).
        let rjs = async_nats::jetstream::new(r.client.clone());
        let rplans = rjs.get_key_value(PLANS_BUCKET).await.expect("the reader opens the plans bucket");
        assert_eq!(rplans.entry(&a).await.expect("get").map(|e| e.value), Some(plan_a.value.clone()), "the reader reads a's plan");
        let all = harmony_executor::fleet::observe::read_bucket(&r.client, &rplans).await.expect("the reader reads the bucket");
        assert_eq!(all.iter().find(|e| e.key == a).map(|e| e.value.as_slice()), Some(&plan_a.value[..]));
        // A watch takes a consumer: refused (no consumer of any kind, attack_reader_consumer_delivers_into_a_devices_plan).
        assert!(rplans.watch_with_history(&a).await.is_err(), "the reader created a watch consumer");
        rjs.get_key_value(STATUS_BUCKET).await.expect("the reader opens the status bucket");

        // Refusals, each named by the server: no KV write, no bucket deletion or purge, no
        // consumer deletion, no command, and no other client's inbox.
        r.refused_request(&format!("$KV.{PLANS_BUCKET}.{a}"), b"{}").await;
        r.refused_request(&format!("$KV.{STATUS_BUCKET}.{b}"), b"{}").await;
        r.refused_request(&format!("$JS.API.STREAM.DELETE.KV_{PLANS_BUCKET}"), b"").await;
        r.refused_request(&format!("$JS.API.STREAM.PURGE.KV_{PLANS_BUCKET}"), b"").await;
        r.refused_request(&format!("$JS.API.CONSUMER.DELETE.KV_{PLANS_BUCKET}.x"), b"").await;
        r.refused_request(&command_subject(&a, Verb::Ping), b"{}").await;
        // Harmony's streams only: another stream on the same server is neither read nor given
        // consumers.
        let hjs = async_nats::jetstream::new(f.harmony_client().await);
        hjs.create_stream(async_nats::jetstream::stream::Config { name: "OTHER".into(), subjects: vec!["other.>".into()], ..Default::default() })
            .await
            .expect("harmony creates another stream");
        r.refused_request("$JS.API.STREAM.INFO.OTHER", b"").await;
        r.refused_request("$JS.API.CONSUMER.CREATE.OTHER", b"{}").await;
        r.refused_request("$JS.API.DIRECT.GET.OTHER", b"{\"seq\":1}").await;
        let h2 = f.harmony_client().await;
        r.refused_subscription("_INBOX.>", async move {
            let _ = h2.request(format!("$JS.API.STREAM.INFO.KV_{PLANS_BUCKET}"), Vec::new().into()).await;
        })
        .await;
        // The plan is untouched.
        assert_eq!(plans.entry(&a).await.unwrap().map(|e| e.revision), Some(plan_a.revision));
    });
}

#[test]
fn signing_key_rotation_keeps_agents_converging_and_retires_the_old_key() {
    let mut f = Secure::new("rot", &["a", "b"]);
    let (a, b) = (f.devices[0].clone(), f.devices[1].clone());
    let k1 = parse_signing_key(&std::fs::read_to_string(f.key_file("k1.key")).unwrap()).unwrap();
    f.apply("k1.key");
    f.start_agent(&a);
    f.start_agent(&b);
    f.wait_ready(&a, 1);
    f.wait_ready(&b, 1);
    let no_rejection = |f: &Secure, d: &str, generation: u64| {
        let s = f.wait_ready(d, generation);
        assert!(s["last_rejection"].is_null(), "a plan was rejected during the rotation: {s:#}");
    };

    // An agent version published with K1, to roll back to later.
    let binary = f.dir.path().join("agent-9.9.9");
    std::fs::write(&binary, b"#!/bin/sh\necho harmony-agent 9.9.9\n").unwrap();
    let publish = |f: &Secure, key: &str, path: &Path| {
        f.harmony(&["fleet", "publish-agent", "--fleet", "pico", "--agent-version", "9.9.9", &path.to_string_lossy(), "--signing-key-file", &f.key_file(key)])
    };
    let out = publish(&f, "k1.key", &binary);
    assert!(out.status.success() && text(&out).contains("published harmony-agent 9.9.9"), "{}", text(&out));

    // Step 1: announce K2 (signed by K1).
    let out = f.harmony(&["fleet", "rotate-signing-key", "--signing-key-file", &f.key_file("k1.key"), "--new-key-file", &f.key_file("k2.key")]);
    assert!(out.status.success(), "rotate: {}", text(&out));
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(f.key_file("k2.key")).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let k2 = parse_signing_key(&std::fs::read_to_string(f.key_file("k2.key")).unwrap()).unwrap();
    // Retiring before the devices trust K2 is refused.
    let out = f.harmony(&["fleet", "rotate-signing-key", "--retire", "--signing-key-file", &f.key_file("k2.key")]);
    assert!(!out.status.success() && text(&out).contains("do not report trusting"), "{}", text(&out));
    // Apply with K2: every plan carries the announcement; the agents (configured with K1 only) accept.
    let out = f.apply("k2.key");
    assert!(out.contains("fleet pico: 2 written, 0 refused as stale") && out.matches("~ device-plan/pico/").count() == 2, "{out}");
    no_rejection(&f, &a, 2);
    no_rejection(&f, &b, 2);
    // Keep changing the plans mid-rotation: they keep converging.
    std::fs::write(f.repo.join("deploy.kdl"), deployment("localhost/app:2")).unwrap();
    f.apply("k2.key");
    no_rejection(&f, &a, 3);
    no_rejection(&f, &b, 3);

    // Step 2: retire K1 (announced by K2), once every device reports trusting K2.
    let out = f.harmony(&["fleet", "rotate-signing-key", "--retire", "--signing-key-file", &f.key_file("k2.key")]);
    assert!(out.status.success(), "retire: {}", text(&out));
    std::fs::write(f.repo.join("deploy.kdl"), deployment("localhost/app:3")).unwrap();
    f.apply("k2.key");
    no_rejection(&f, &a, 4);
    no_rejection(&f, &b, 4);
    let rt = rt();
    rt.block_on(async {
        let js = async_nats::jetstream::new(f.harmony_client().await);
        let statuses = js.get_key_value(STATUS_BUCKET).await.unwrap();
        for d in [&a, &b] {
            let s: DeviceStatus = serde_json::from_slice(&statuses.get(d).await.unwrap().unwrap()).unwrap();
            assert_eq!(s.trusted_keys, vec![key_id(&k2.verifying_key())], "{d} trusts only K2 now");
        }
    });
    // harmony refuses to sign with the retired key.
    let out = f.apply_with("k1.key");
    assert!(!out.status.success() && text(&out).contains("not the current key at the end of fleet `pico`'s key chain"), "{}", text(&out));
    // The version published with K1 gets K2's signature when published again (same bytes); then
    // it is simply there; other bytes under that version stay refused; K1 cannot publish.
    let out = publish(&f, "k2.key", &binary);
    assert!(out.status.success() && text(&out).contains("signed again with key"), "{}", text(&out));
    let out = publish(&f, "k2.key", &binary);
    assert!(out.status.success() && text(&out).contains("already published"), "{}", text(&out));
    let other = f.dir.path().join("agent-9.9.9-other");
    std::fs::write(&other, b"#!/bin/sh\necho something else\n").unwrap();
    let out = publish(&f, "k2.key", &other);
    assert!(!out.status.success() && text(&out).contains("versions are immutable"), "{}", text(&out));
    let out = publish(&f, "k1.key", &binary);
    assert!(!out.status.success() && text(&out).contains("not the current key at the end of fleet `pico`'s key chain"), "{}", text(&out));

    // A plan signed by the retired key (a thief of K1 with write access) is rejected, with or
    // without the chain, and again after the agent restarts.
    let genuine = f.current_plan(&rt, &a, &k2);
    assert_eq!(genuine.key_chain.len(), 2, "the plan carries trust K2 and retire K1");
    let forge = |f: &Secure, generation: u64, chain: bool| {
        let mut p = genuine.clone();
        p.generation = generation;
        if !chain {
            p.key_chain.clear();
        }
        f.put_plan(&rt, &a, &p, &k1);
    };
    forge(&f, 10, true);
    let d = f.wait_status(&a, "an unknown-key rejection", |d| d["last_rejection"]["generation"] == 10);
    assert_eq!(d["last_rejection"]["reason"]["kind"], "unknown-key", "{d:#}");
    assert_eq!(d["applied_generation"], 4, "{d:#}");
    // Restart a's agent: the retirement persisted although its config still lists K1; a plan
    // without the chain does not extend the chain the device settled.
    let child = f.agents.remove(0);
    drop_child(child);
    f.start_agent(&a);
    forge(&f, 11, false);
    let d = f.wait_status(&a, "a key-chain rejection after restart", |d| d["last_rejection"]["generation"] == 11);
    assert_eq!(d["last_rejection"]["reason"]["kind"], "key-chain", "{d:#}");
    assert_eq!(d["applied_generation"], 4, "{d:#}");
}

fn drop_child(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
fn device_credentials_rotate_without_touching_the_device() {
    let mut f = Secure::new("cred", &["a", "b"]);
    let (a, b) = (f.devices[0].clone(), f.devices[1].clone());
    f.apply("k1.key");
    f.start_agent(&a);
    f.start_agent(&b);
    f.wait_ready(&a, 1);
    let old_seed = f.seed(&a);
    let rt = rt();
    let old = rt.block_on(DeviceClient::connect(&f.server.url(), &a, &old_seed)).expect("the old key works before the rotation");

    // A rotation the servers never learn of (here the reload fails after the device answered)
    // does not lock the device out: it kept the seed that works, and after a restart (or any
    // reconnection) it gets in with it.
    let previous = f.dev_dir(&a).join(format!("{a}.nk.previous"));
    let env = |reload: &str| {
        let url = f.server.url();
        let auth = f.auth.to_string_lossy().into_owned();
        harmony(
            &f.repo,
            &["fleet", "rotate-device-key", &a, "--command-key-file", &f.key_file("command.key")],
            &[("HARMONY_NATS_URL", &url), ("HARMONY_AUTH_DIR", &auth), ("HARMONY_NATS_RELOAD", reload)],
        )
    };
    let out = env("false");
    assert!(!out.status.success(), "{}", text(&out));
    let unadmitted = f.seed(&a);
    assert_ne!(unadmitted, old_seed, "the device made a new key");
    assert_eq!(std::fs::read_to_string(&previous).expect("the previous seed is kept").trim(), old_seed);
    assert!(rt.block_on(DeviceClient::connect(&f.server.url(), &a, &unadmitted)).is_err(), "the servers never admitted the new key");
    drop_child(f.agents.remove(0));
    f.start_agent(&a);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if f.harmony(&["device", "ping", &a]).status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted agent did not get back in with its previous key");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(previous.exists(), "the unadmitted key never worked: the previous one stays");

    let out = f.harmony(&["fleet", "rotate-device-key", &a, "--command-key-file", &f.key_file("command.key")]);
    assert!(out.status.success(), "rotate-device-key: {}", text(&out));
    // The device wrote a new seed over its nkey_file (mode 0600); harmony only saw the public key.
    let new_seed = f.seed(&a);
    assert_ne!(new_seed, old_seed);
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(f.dev_dir(&a).join(format!("{a}.nk"))).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(!text(&out).contains(&new_seed), "the seed was printed");
    for e in walk(&f.auth) {
        assert!(!std::fs::read_to_string(&e).unwrap_or_default().contains(&new_seed), "device seed found in {}", e.display());
    }
    // The old key no longer works: its live connection is closed and a new one is refused.
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        while old.client.connection_state() == async_nats::connection::State::Connected {
            assert!(Instant::now() < deadline, "the old key's connection survived the rotation");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert!(rt.block_on(DeviceClient::connect(&f.server.url(), &a, &old_seed)).is_err(), "the old key still connects");
    assert!(rt.block_on(DeviceClient::connect(&f.server.url(), &a, &new_seed)).is_ok(), "the new key connects");
    // Once the new key has worked, the agent forgets the previous one.
    let deadline = Instant::now() + Duration::from_secs(20);
    while previous.exists() {
        assert!(Instant::now() < deadline, "the previous seed outlived a working rotation");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The agent reconnected with the new key by itself and keeps converging; b was never touched.
    std::fs::write(f.repo.join("deploy.kdl"), deployment("localhost/app:2")).unwrap();
    f.apply("k1.key");
    f.wait_ready(&a, 2);
    f.wait_ready(&b, 2);
    let out = f.harmony(&["device", "ping", &a]);
    assert!(out.status.success(), "{}", text(&out));
    // An unsigned or wrongly signed rotation is refused by the agent.
    let other = generate_signing_key().unwrap();
    std::fs::write(f.dir.path().join("other.key"), encode_key(other.as_bytes())).unwrap();
    let out = f.harmony(&["fleet", "rotate-device-key", &a, "--command-key-file", &f.key_file("other.key")]);
    assert!(!out.status.success() && text(&out).contains("refused"), "{}", text(&out));
    assert_eq!(f.seed(&a), new_seed, "a refused rotation changed the key");
}

/// An agent with generated least-privilege credentials upgrades itself: it may read the agents
/// object store (binaries are integrity-checked against the signed plan, not secret) and
/// nothing more than before. Its configuration is the one `fleet enroll` wrote, unedited: the
/// install directory is in it, and the unit it wrote beside passes `systemd-analyze verify`.
#[test]
fn an_agent_with_generated_credentials_upgrades_itself() {
    let next = next_binary();
    let mut s = Secure::new("upg", &["a"]);
    let d = s.devices[0].clone();
    let old = env!("CARGO_PKG_VERSION");
    let new = format!("{old}-next");
    let install = s.dir.path().join(format!("install-{d}"));
    std::fs::create_dir_all(&install).expect("mkdir");
    std::fs::copy(agent_binary(), install.join(format!("harmony-agent-{old}"))).expect("install");
    std::os::unix::fs::symlink(format!("harmony-agent-{old}"), install.join("current")).expect("symlink");
    let install_arg = install.to_string_lossy().into_owned();
    let config: toml::Table = std::fs::read_to_string(s.dev_dir(&d).join("agent.toml")).expect("agent.toml").parse().expect("TOML");
    assert_eq!(config["install_dir"].as_str(), Some(&*install_arg), "{config:#?}");
    assert_eq!(config["labels"]["site"].as_str(), Some("sec"), "the repository's labels: {config:#?}");
    let unit = s.dev_dir(&d).join("harmony-agent.service");
    let verify = Command::new("systemd-analyze").arg("verify").arg(&unit).output();
    match verify {
        Ok(v) => assert!(
            v.status.success() && v.stderr.is_empty(),
            "systemd-analyze verify {}: {}\n{}",
            unit.display(),
            String::from_utf8_lossy(&v.stderr),
            std::fs::read_to_string(&unit).unwrap_or_default()
        ),
        Err(e) => assert!(std::env::var("CI").is_err(), "systemd-analyze: {e} (install systemd)"),
    }
    let unit_text = std::fs::read_to_string(&unit).expect("unit");
    assert!(unit_text.contains(&format!("ExecStart=\"{install_arg}/current\" --config \"{}\"", s.dev_dir(&d).join("agent.toml").display())), "{unit_text}");
    s.start_agent_exe(&install.join("current"), &d, &["--upgrade-timeout", "60"]);
    s.apply("k1.key");
    s.wait_ready(&d, 1);
    let out = s.harmony(&[
        "fleet",
        "publish-agent",
        "--fleet",
        "pico",
        "--agent-version",
        &new,
        &next.to_string_lossy(),
        "--signing-key-file",
        &s.key_file("k1.key"),
    ]);
    assert!(out.status.success(), "publish-agent: {}", text(&out));
    let kdl =
        std::fs::read_to_string(s.repo.join("fleet.kdl")).expect("read").replace(&format!("agent-version \"{old}\""), &format!("agent-version \"{new}\""));
    std::fs::write(s.repo.join("fleet.kdl"), kdl).expect("write");
    let applied = s.apply("k1.key");
    assert!(applied.contains(&format!("rollout of agent {new} complete")), "{applied}\nagent log:\n{}", s.agent_log(&d));
    let st = s.wait_ready(&d, 2);
    assert_eq!(st["agent_version"], new.as_str(), "{st:#}");
    assert!(!s.agent_log(&d).to_lowercase().contains("permissions violation"), "{}", s.agent_log(&d));
    assert_eq!(std::fs::read_link(install.join("current")).expect("current"), Path::new(&format!("harmony-agent-{new}")));
    // The new agent runs on its own (not the test's child): stop it.
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        if String::from_utf8_lossy(&cmd).contains(&*install_arg) {
            let _ = Command::new("kill").args(["-KILL", &e.file_name().to_string_lossy()]).status();
        }
    }
}

/// Issue 20, item 5. A device may write its own status and heartbeat keys; a write carrying
/// `Nats-Rollup: all` would make JetStream erase every other key of the bucket (every device's
/// status or heartbeat: every rollout health gate then fails). The buckets refuse roll-ups
/// and purges (stream configuration: nats-server answers "rollup not permitted"), including a
/// bucket an older Harmony created with them allowed, which apply changes.
#[test]
fn attack_device_rollup_erases_every_status() {
    let mut f = Secure::new("rollup", &["a", "b"]);
    let (a, b) = (f.devices[0].clone(), f.devices[1].clone());
    let rt = rt();
    // The status bucket as an older Harmony made it (async-nats' defaults: roll-ups allowed);
    // the heartbeat bucket is left to apply to create.
    rt.block_on(async {
        let js = async_nats::jetstream::new(f.harmony_client().await);
        js.create_key_value(async_nats::jetstream::kv::Config { bucket: STATUS_BUCKET.into(), history: 1, ..Default::default() })
            .await
            .expect("old status bucket");
    });
    f.apply("k1.key");
    f.start_all_ready(1);
    let seed_a = f.seed(&a);
    rt.block_on(async {
        let js = async_nats::jetstream::new(f.harmony_client().await);
        let statuses = js.get_key_value(STATUS_BUCKET).await.expect("status bucket");
        let heartbeats = js.get_key_value(HEARTBEATS_BUCKET).await.expect("heartbeat bucket");
        let dev = DeviceClient::connect(&f.server.url(), &a, &seed_a).await.expect("a connects");
        for (bucket, store) in [(STATUS_BUCKET, &statuses), (HEARTBEATS_BUCKET, &heartbeats)] {
            for rollup in ["all", "sub"] {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Rollup", rollup);
                let ack = dev
                    .client
                    .request_with_headers(format!("$KV.{bucket}.{a}"), headers, b"{}".to_vec().into())
                    .await
                    .expect("the server answers a's write to its own key");
                let ack = String::from_utf8_lossy(&ack.payload).into_owned();
                // b's entry survived (checked at once: b's agent rewrites its heartbeat every second).
                assert!(store.get(&b).await.expect("read b").is_some(), "{bucket}: b's entry was erased by a's `Nats-Rollup: {rollup}` write ({ack})");
                assert!(ack.contains("rollup not permitted"), "{bucket}: a's `Nats-Rollup: {rollup}` write was accepted: {ack}");
            }
            // Nor may the stream be purged (by Harmony's own identity either: nobody needs to).
            let purge = js.get_stream(format!("KV_{bucket}")).await.expect("stream").purge().await;
            assert!(purge.is_err(), "{bucket}: the stream can be purged");
        }
    });
    // b is still seen ready (its status and heartbeat are there).
    let d = f.status(&b);
    assert_eq!(d["condition"], "ready", "{d:#}");
}

/// Issue 20, item 6. A push consumer's delivery subject is not checked against its creator's
/// permissions (nats-server#8274): a device allowed to create a consumer on the agents object
/// store (as async-nats' object-store download did) has the store's chunks delivered to another
/// device's plan subject — its agent subscribes there, so every chunk is a forged "plan" it
/// must reject (rejections in its status, and a flood the attacker can repeat at will with as
/// many consumers as it likes). Devices may create no consumer at all: agents download binaries
/// with direct gets (`an_agent_with_generated_credentials_upgrades_itself`).
#[test]
fn attack_device_consumer_delivers_into_another_devices_plan() {
    let mut f = Secure::new("push", &["a", "b"]);
    let (a, b) = (f.devices[0].clone(), f.devices[1].clone());
    f.apply("k1.key");
    // Something in the agents object store to deliver.
    let binary = f.dir.path().join("agent-9.9.9");
    std::fs::write(&binary, b"#!/bin/sh\necho harmony-agent 9.9.9\n").unwrap();
    let out = f.harmony(&[
        "fleet",
        "publish-agent",
        "--fleet",
        "pico",
        "--agent-version",
        "9.9.9",
        &binary.to_string_lossy(),
        "--signing-key-file",
        &f.key_file("k1.key"),
    ]);
    assert!(out.status.success(), "publish-agent: {}", text(&out));
    f.start_all_ready(1);
    let seed_a = f.seed(&a);
    let stream = format!("OBJ_{}", harmony_schemas::fleet::AGENTS_OBJECT_STORE);
    rt().block_on(async {
        let dev = DeviceClient::connect(&f.server.url(), &a, &seed_a).await.expect("a connects");
        let push = |deliver: &str| {
            serde_json::json!({ "stream_name": stream, "config": { "deliver_subject": deliver, "deliver_policy": "all", "ack_policy": "none" } }).to_string()
        };
        // Into b's plan subject (b's agent listens there), b's inbox, b's commands.
        dev.refused_request(&format!("$JS.API.CONSUMER.CREATE.{stream}"), push(&format!("$KV.{PLANS_BUCKET}.{b}")).as_bytes()).await;
        dev.refused_request(&format!("$JS.API.CONSUMER.CREATE.{stream}.x"), push(&format!("{}.x", device_inbox_prefix(&b))).as_bytes()).await;
        dev.refused_request(&format!("$JS.API.CONSUMER.CREATE.{stream}.y.$O.>"), push(&command_subject(&b, Verb::Ping)).as_bytes()).await;
        dev.refused_request(&format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.z"), push(&format!("$KV.{PLANS_BUCKET}.{b}")).as_bytes()).await;
        // Nor does it need the stream's info.
        dev.refused_request(&format!("$JS.API.STREAM.INFO.{stream}"), b"").await;
    });
    // Nothing reached b: no rejected "plan" in its status.
    std::thread::sleep(Duration::from_secs(2));
    let d = f.status(&b);
    assert!(d["last_rejection"].is_null(), "b's agent received forged plans from a's consumer: {d:#}");
    assert_eq!(d["condition"], "ready", "{d:#}");
}

/// Issue 20 #6, the read-only identity's half. With the reader's seed (handed to CI and
/// dashboard hosts), create a push consumer on a bucket's stream whose delivery subject is
/// device b's plan subject: every status entry arrives at b's agent as a "plan". The reader may
/// create no consumer at all (it reads with stream info and direct gets), nor read the info of
/// consumers Harmony makes.
#[test]
fn attack_reader_consumer_delivers_into_a_devices_plan() {
    let mut f = Secure::new("rpush", &["a", "b"]);
    let b = f.devices[1].clone();
    f.apply("k1.key");
    f.start_all_ready(1);
    let seed = f.reader_seed();
    rt().block_on(async {
        let r = DeviceClient::connect_with_inbox(&f.server.url(), harmony_executor::fleet::auth::READER_INBOX_PREFIX, &seed).await.expect("reader connects");
        let stream = format!("KV_{STATUS_BUCKET}");
        let push = |deliver: &str| {
            serde_json::json!({ "stream_name": stream, "config": { "deliver_subject": deliver, "deliver_policy": "all", "ack_policy": "none" } }).to_string()
        };
        r.refused_request(&format!("$JS.API.CONSUMER.CREATE.{stream}"), push(&format!("$KV.{PLANS_BUCKET}.{b}")).as_bytes()).await;
        r.refused_request(&format!("$JS.API.CONSUMER.CREATE.{stream}.x.$KV.{STATUS_BUCKET}.>"), push(&format!("$KV.{PLANS_BUCKET}.{b}")).as_bytes()).await;
        r.refused_request(&format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.y"), push(&format!("$KV.{PLANS_BUCKET}.{b}")).as_bytes()).await;
        r.refused_request(&format!("$JS.API.CONSUMER.LIST.{stream}"), b"{}").await;
        // What it is for still works: a bucket's keys and their entries.
        let entries = harmony_executor::fleet::observe::read_bucket(
            &r.client,
            &async_nats::jetstream::new(r.client.clone()).get_key_value(STATUS_BUCKET).await.expect("the reader opens the status bucket"),
        )
        .await
        .expect("the reader reads the status bucket");
        assert_eq!(entries.len(), 2, "{entries:?}");
    });
    std::thread::sleep(Duration::from_secs(2));
    let d = f.status(&b);
    assert!(d["last_rejection"].is_null(), "b's agent received forged plans from the reader's consumer: {d:#}");
    assert_eq!(d["condition"], "ready", "{d:#}");
}

/// Buckets are read with direct gets, whose replies carry the entry's subject and revision in
/// `Nats-Subject`/`Nats-Sequence` headers — after the headers stored with the message, which
/// the writer chose. Device a writes its own status with headers naming b's key and a far
/// revision: `status` must still show a's entry as a's and b's as b's.
#[test]
fn attack_stored_nats_headers_pass_an_entry_off_as_another_key() {
    let mut f = Secure::new("hdr", &["a", "b"]);
    let (a, b) = (f.devices[0].clone(), f.devices[1].clone());
    f.apply("k1.key");
    f.start_all_ready(1);
    let before = f.status(&b);
    let seed_a = f.seed(&a);
    rt().block_on(async {
        let dev = DeviceClient::connect(&f.server.url(), &a, &seed_a).await.expect("a connects");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Subject", format!("$KV.{STATUS_BUCKET}.{b}").as_str());
        headers.insert("Nats-Sequence", "999999");
        // b's own status, but for the agent version.
        let statuses = async_nats::jetstream::new(f.harmony_client().await).get_key_value(STATUS_BUCKET).await.expect("status bucket");
        let mut forged: serde_json::Value = serde_json::from_slice(&statuses.get(&b).await.unwrap().expect("b's status")).unwrap();
        forged["agent_version"] = "6.6.6".into();
        dev.client.publish_with_headers(format!("$KV.{STATUS_BUCKET}.{a}"), headers, forged.to_string().into_bytes().into()).await.unwrap();
        dev.client.flush().await.unwrap();
    });
    std::thread::sleep(Duration::from_millis(500));
    let after = f.status(&b);
    assert_eq!(after["agent_version"], before["agent_version"], "a's write passed for b's status: {after:#}");
    assert_ne!(after["agent_version"], "6.6.6", "{after:#}");
}

/// A known limit (docs/security.md, "Limitations"): nats-server sends a JetStream reply to
/// whatever reply subject the requester names, without checking it against the requester's
/// permissions, and a reply sent to a bucket's subject is stored there as a new revision. So
/// device a (a direct get of its own plan, a write of its own status) and the read-only
/// identity (a direct get) can overwrite device b's plan entry — with content they do not
/// choose: a's signed plan, a publish acknowledgement, a message already stored. What holds:
/// b runs nothing of it (not a plan signed for b), keeps its applied plan running, `plan` shows
/// the entry to repair and the next `apply` restores it.
#[test]
fn reply_subjects_overwrite_an_entry_but_run_nothing() {
    let mut f = Secure::new("reply", &["a", "b"]);
    let (a, b) = (f.devices[0].clone(), f.devices[1].clone());
    f.apply("k1.key");
    f.start_all_ready(1);
    let seed_a = f.seed(&a);
    let reader = f.reader_seed();
    let target = format!("$KV.{PLANS_BUCKET}.{b}");
    rt().block_on(async {
        let dev = DeviceClient::connect(&f.server.url(), &a, &seed_a).await.expect("a connects");
        let r = DeviceClient::connect_with_inbox(&f.server.url(), harmony_executor::fleet::auth::READER_INBOX_PREFIX, &reader).await.expect("reader connects");
        // a's own plan, answered to b's plan subject: a genuine signed plan, for a.
        dev.client.publish_with_reply(format!("$JS.API.DIRECT.GET.KV_{PLANS_BUCKET}.$KV.{PLANS_BUCKET}.{a}"), target.clone(), Vec::new().into()).await.unwrap();
        // a's own status write: the stream's acknowledgement goes to b's plan subject.
        dev.client.publish_with_reply(format!("$KV.{STATUS_BUCKET}.{a}"), target.clone(), b"{}".to_vec().into()).await.unwrap();
        // The reader's direct get of a's status.
        let body = format!("{{\"last_by_subj\":\"$KV.{STATUS_BUCKET}.{a}\"}}");
        r.client.publish_with_reply(format!("$JS.API.DIRECT.GET.KV_{STATUS_BUCKET}"), target.clone(), body.into_bytes().into()).await.unwrap();
        dev.client.flush().await.unwrap();
        r.client.flush().await.unwrap();
    });
    let d = f.wait_status(&b, "b's agent to reject the overwritten entry", |d| !d["last_rejection"].is_null());
    assert_eq!(d["desired_generation"], serde_json::Value::Null, "the entry no longer holds a plan signed for b: {d:#}");
    assert_eq!((d["applied_generation"].as_u64(), d["deployments"][0]["state"].as_str()), (Some(1), Some("running")), "b keeps its plan: {d:#}");
    // `plan` shows the entry to repair; apply restores a signed plan and b converges.
    let out = f.harmony(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "plan shows b's entry to repair: {}", text(&out));
    f.apply("k1.key");
    f.wait_ready(&b, 2);
}

impl Secure {
    /// Starts `harmony ui` on a free port (the auth directory at hand: the read-only identity).
    fn start_ui(&self) -> (Child, u16) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let ui = Command::new(env!("CARGO_BIN_EXE_harmony"))
            .arg("--repo")
            .arg(&self.repo)
            .args(["ui", "--listen", &format!("127.0.0.1:{port}")])
            .env("HARMONY_NATS_URL", self.server.url())
            .env("HARMONY_AUTH_DIR", &self.auth)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start harmony ui");
        (ui, port)
    }

    /// The plan now in `device`'s entry, verified with `key`.
    fn current_plan(&self, rt: &tokio::runtime::Runtime, device: &str, key: &SigningKey) -> DevicePlan {
        rt.block_on(async {
            let plans = async_nats::jetstream::new(self.harmony_client().await).get_key_value(PLANS_BUCKET).await.expect("plans bucket");
            let entry = plans.get(device).await.expect("get").expect("an entry");
            SignedDevicePlan::from_slice(&entry).expect("decodes").verify(&[key.verifying_key()]).expect("verifies")
        })
    }

    /// Writes `plan` signed by `key` into `device`'s entry, as anyone with write access to the
    /// plans bucket can.
    fn put_plan(&self, rt: &tokio::runtime::Runtime, device: &str, plan: &DevicePlan, key: &SigningKey) {
        rt.block_on(async {
            let plans = async_nats::jetstream::new(self.harmony_client().await).get_key_value(PLANS_BUCKET).await.expect("plans bucket");
            plans.put(device, SignedDevicePlan::sign(plan, key).expect("sign").to_vec().into()).await.expect("put");
        });
    }

    fn signing_key(&self, file: &str) -> SigningKey {
        parse_signing_key(&std::fs::read_to_string(self.key_file(file)).expect("read key")).expect("a key")
    }

    /// Waits until the agent of `device` applied or rejected `generation`; returns its status.
    fn decided(&self, device: &str, generation: u64) -> serde_json::Value {
        // Only a status entry says what the agent decided: with none (deleted by the attack), the
        // report's applied generation is the last heartbeat's, which may predate the agent's
        // last apply (a race seen under load: the killed agent's heartbeat still said 3).
        self.wait_status(device, &format!("the agent to apply or reject generation {generation}"), |d| {
            !d["state"].is_null() && (d["applied_generation"] == generation || d["last_rejection"]["generation"] == generation)
        })
    }
}

/// Issue 20 #11. A thief of K1 (with write access to the plans bucket) plants `trust EVIL`,
/// signed by K1, in a plan entry while K1 is still the fleet's key; the operator then rotates
/// K1 → K2 and retires K1. From then on a plan signed by EVIL must be refused, whatever chain it
/// carries.
#[test]
fn attack_a_key_planted_with_a_stolen_key_survives_the_rotation() {
    let mut f = Secure::new("plant", &["a"]);
    let a = f.devices[0].clone();
    let k1 = f.signing_key("k1.key");
    f.apply("k1.key");
    f.start_agent(&a);
    f.wait_ready(&a, 1);
    let rt = rt();
    let evil = generate_signing_key().expect("key");
    let planted = announce("pico", KeyAction::Trust, &evil.verifying_key(), &k1).expect("announce");
    let mut p = f.current_plan(&rt, &a, &k1);
    p.generation = 2;
    p.key_chain = vec![planted.clone()];
    f.put_plan(&rt, &a, &p, &evil);
    let d = f.decided(&a, 2);
    assert_eq!(d["applied_generation"], 2, "K1 was the fleet's key: the planted plan is accepted then: {d:#}");
    // `harmony status` flags the device: it trusts a key the fleet's chain does not.
    let evil_id = key_id(&evil.verifying_key());
    let d = f.wait_status(&a, "the planted key flagged", |d| d["foreign_keys"].as_array().is_some_and(|k| k.iter().any(|k| *k == evil_id.as_str())));
    assert_eq!(d["condition"], "degraded", "{d:#}");
    let out = f.harmony(&["status"]);
    assert!(text(&out).contains(&format!("trusts signing key(s) {evil_id} that the fleet's key chain does not")), "{}", text(&out));

    // The operator rotates K1 → K2 and retires K1, as documented.
    f.rotate_and_retire(&[&a], 2);
    let k2 = f.signing_key("k2.key");
    let genuine = f.current_plan(&rt, &a, &k2);
    assert_eq!(genuine.key_chain.len(), 2, "trust K2, retire K1");

    // The thief's plan signed by EVIL, with the planted link, is refused…
    let mut p = genuine.clone();
    p.generation = 10;
    p.key_chain = vec![planted.clone()];
    f.put_plan(&rt, &a, &p, &evil);
    let d = f.decided(&a, 10);
    assert_eq!(d["applied_generation"], 4, "a plan signed by the planted key ran after the rotation: {d:#}");
    assert_eq!(d["last_rejection"]["reason"]["kind"], "key-chain", "{d:#}");
    // …and so is one carrying the genuine chain (EVIL is not its current key), or the genuine
    // chain followed by the planted link (K1 may not extend it).
    p.key_chain = genuine.key_chain.clone();
    p.generation = 11;
    f.put_plan(&rt, &a, &p, &evil);
    let d = f.decided(&a, 11);
    assert_eq!(d["applied_generation"], 4, "a plan signed by the planted key ran after the rotation: {d:#}");
    assert_eq!(d["last_rejection"]["reason"]["kind"], "unknown-key", "{d:#}");
    p.key_chain.push(planted);
    p.generation = 12;
    f.put_plan(&rt, &a, &p, &evil);
    let d = f.decided(&a, 12);
    assert_eq!(d["applied_generation"], 4, "a plan signed by the planted key ran after the rotation: {d:#}");
    assert_eq!(d["last_rejection"]["reason"]["kind"], "key-chain", "{d:#}");
}

impl Secure {
    /// Rotates the signing key K1 → K2 and retires K1, applying after each step (as documented);
    /// the devices given converge at the next two generations after `generation`.
    fn rotate_and_retire(&self, devices: &[&str], generation: u64) {
        let out = self.harmony(&["fleet", "rotate-signing-key", "--signing-key-file", &self.key_file("k1.key"), "--new-key-file", &self.key_file("k2.key")]);
        assert!(out.status.success(), "rotate: {}", text(&out));
        self.apply("k2.key");
        for d in devices {
            self.wait_ready(d, generation + 1);
        }
        let out = self.harmony(&["fleet", "rotate-signing-key", "--retire", "--signing-key-file", &self.key_file("k2.key")]);
        assert!(out.status.success(), "retire: {}", text(&out));
        self.apply("k2.key");
        for d in devices {
            self.wait_ready(d, generation + 2);
        }
    }
}

/// Issue 20 #11. After a rotation retired K1, a thief of K1 writes a plan signed with it into a
/// device's entry. The agent refuses it, but `harmony status`, `plan` and `ui` must not take it
/// for the fleet's plan either: they name the entry as not verifying, and `plan`/`apply` replace it.
#[test]
fn attack_a_plan_signed_with_a_retired_key_passes_as_genuine_in_status_plan_and_ui() {
    let mut f = Secure::new("retired", &["a"]);
    let a = f.devices[0].clone();
    f.apply("k1.key");
    f.start_agent(&a);
    f.wait_ready(&a, 1);
    f.rotate_and_retire(&[&a], 1);
    let rt = rt();
    let (k1, k2) = (f.signing_key("k1.key"), f.signing_key("k2.key"));
    let mut p = f.current_plan(&rt, &a, &k2);
    p.generation = 10;
    f.put_plan(&rt, &a, &p, &k1);
    let d = f.decided(&a, 10);
    assert_eq!((d["applied_generation"].as_u64(), d["last_rejection"]["reason"]["kind"].as_str()), (Some(3), Some("unknown-key")), "{d:#}");

    // `harmony status`: the entry does not verify, and a warning names it.
    let out = f.harmony(&["status", "--format", "json"]);
    assert!(out.status.success(), "status: {}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let warnings = doc["fleets"][0]["warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        warnings.iter().any(|w| w["key"] == a.as_str() && w["message"].as_str().is_some_and(|m| m.contains("signed by untrusted key"))),
        "harmony status took the plan signed with the retired key for the fleet's: {doc:#}"
    );
    // `harmony plan`: the entry is to be replaced (not "up to date").
    let out = f.harmony(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "harmony plan took the plan signed with the retired key for the fleet's: {}", text(&out));
    assert!(text(&out).contains("signed by untrusted key"), "{}", text(&out));
    // `harmony ui`: the overview warns about the entry.
    let (ui, port) = f.start_ui();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = http_get(port, "/").unwrap_or_default();
        if page.contains("signed by untrusted key") && page.contains(&a) {
            break;
        }
        assert!(Instant::now() < deadline, "the dashboard never warned about the plan signed with the retired key:\n{page}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop_child(ui);
    // `harmony apply` replaces the entry with a plan signed by K2.
    f.apply("k2.key");
    f.wait_ready(&a, 4);
}

// ---------------------------------------------------------------------------------------------
// Issue 20, findings 7–9: attacks on generations, rejection texts and the status condition, by
// someone who can write the plans bucket (harmony's NATS identity) but has no signing key, or
// by a compromised device. Each failed before its fix (the commits say how).

impl Secure {
    /// `device`'s plans entry as stored, read with harmony's identity.
    fn plan_entry(&self, rt: &tokio::runtime::Runtime, device: &str) -> Vec<u8> {
        rt.block_on(async {
            let js = async_nats::jetstream::new(self.harmony_client().await);
            js.get_key_value(PLANS_BUCKET).await.expect("plans").get(device).await.expect("get").expect("entry").to_vec()
        })
    }

    /// Writes `value` as `device`'s plans entry with harmony's identity (no signing key).
    fn put_entry(&self, rt: &tokio::runtime::Runtime, device: &str, value: Vec<u8>) {
        rt.block_on(async {
            let js = async_nats::jetstream::new(self.harmony_client().await);
            js.get_key_value(PLANS_BUCKET).await.expect("plans").put(device, value.into()).await.expect("put");
        })
    }
}

/// `device`'s entry in the output of a successful `harmony status --format json`.
fn device_status(out: &Output, device: &str) -> serde_json::Value {
    assert!(out.status.success(), "harmony status failed: {}", text(out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    doc["fleets"][0]["devices"].as_array().and_then(|a| a.iter().find(|d| d["device"] == device).cloned()).unwrap_or_default()
}

/// Finding 7. A bucket writer without the signing key puts an entry claiming generation
/// 2^64 − 2 (before: the next apply signed 2^64 − 1, leaving the device one generation from
/// the end), and a compromised device reports applied generation 2^64 − 1 (before: apply
/// overflowed computing its next generation). Generations now come only from entries that
/// verify, the arithmetic is checked, and the absurd report is flagged by `apply` and
/// `harmony status` and ignored.
#[test]
fn attack_unsigned_generation_neither_freezes_a_device_nor_breaks_apply() {
    let mut f = Secure::new("gen", &["a", "b"]);
    let (a, b) = (f.devices[0].clone(), f.devices[1].clone());
    f.apply("k1.key");
    // b runs no agent: its (compromised) reports below are not overwritten.
    f.start_agent(&a);
    f.wait_ready(&a, 1);
    let rt = rt();

    // The forged entry: a's plan claiming generation 2^64 − 2, signed with the attacker's key.
    let attacker = generate_signing_key().unwrap();
    let k1 = f.signing_key("k1.key");
    let mut forged = f.current_plan(&rt, &a, &k1);
    forged.generation = u64::MAX - 1;
    f.put_plan(&rt, &a, &forged, &attacker);
    let d = f.wait_status(&a, "the forged plan's rejection", |d| d["last_rejection"]["generation"] == u64::MAX - 1);
    assert_eq!(d["last_rejection"]["reason"]["kind"], "unknown-key", "{d:#}");
    // `harmony status` reads a's history (its entry does not verify) with direct gets only: the
    // read-only identity, which may create no consumer, shows a as well.
    let harmony_seed = f.auth.join("pico/harmony.nk");
    std::fs::rename(&harmony_seed, f.dir.path().join("harmony.nk.away")).unwrap();
    let out = f.harmony(&["status", "--format", "json"]);
    std::fs::rename(f.dir.path().join("harmony.nk.away"), &harmony_seed).unwrap();
    let d = device_status(&out, &a);
    assert_eq!((d["desired_generation"].as_u64(), d["applied_generation"].as_u64(), d["desired_rejected"].as_bool()), (None, Some(1), Some(true)), "{d:#}");
    // The operator changes the deployment: a gets generation 2, not 2^64 − 1.
    std::fs::write(f.repo.join("deploy.kdl"), deployment("localhost/app:2")).unwrap();
    let out = f.apply("k1.key");
    assert!(out.contains("fleet pico: 2 written, 0 refused as stale") && out.matches("~ device-plan/pico/").count() == 2, "both device plans are updates: {out}");
    assert_eq!(f.current_plan(&rt, &a, &k1).generation, 2, "a's next generation comes from what verifies, not from the forged claim");
    f.wait_ready(&a, 2);

    // A compromised b (its own seed) reports an absurd applied generation.
    let absurd = serde_json::json!({
        "version": 1, "device_id": b, "agent_version": "0.1.0", "applied_generation": u64::MAX,
        "applied_source_revision": null, "state": "applied", "last_error": null, "updated_at_ms": 1
    });
    let heartbeat = serde_json::json!({
        "version": 1, "device_id": b, "agent_version": "0.1.0", "uptime_s": 1, "applied_generation": u64::MAX,
        "timestamp_ms": harmony_schemas::fleet::now_ms()
    });
    rt.block_on(async {
        let dev = DeviceClient::connect(&f.server.url(), &b, &f.seed(&b)).await.expect("b connects");
        let js = async_nats::jetstream::new(dev.client.clone());
        for (bucket, value) in [(STATUS_BUCKET, &absurd), (HEARTBEATS_BUCKET, &heartbeat)] {
            js.publish(format!("$KV.{bucket}.{b}"), serde_json::to_vec(value).unwrap().into()).await.expect("publish").await.expect("ack");
        }
    });
    // The next apply neither panics nor fails: b gets its entry's generation + 1, the report ignored.
    std::fs::write(f.repo.join("deploy.kdl"), deployment("localhost/app:3")).unwrap();
    let out = f.apply_with("k1.key");
    assert!(out.status.success(), "apply: {}", text(&out));
    assert!(text(&out).contains("applied generation 18446744073709551615 ignored"), "apply shows the flag: {}", text(&out));
    assert_eq!(f.current_plan(&rt, &b, &k1).generation, 3, "b's next generation ignores its absurd report");
    f.wait_ready(&a, 3);
    // `harmony status` flags b.
    let d = f.status(&b);
    let why = d["applied_generation_flag"].as_str().unwrap_or_default();
    assert!(why.contains("above generation 3, the newest plan Harmony signed for it"), "b is flagged: {d:#}");
    assert_eq!(d["condition"], "degraded", "{d:#}");
    let human = String::from_utf8_lossy(&f.harmony(&["status"]).stdout).into_owned();
    assert!(human.contains("applied generation 18446744073709551615 ignored"), "{human}");
}

/// Finding 8. A bucket writer puts a 900 KB entry whose signature names a 900 KB key id (before:
/// the rejection copied it twice into the status, which then exceeded the server's 1 MB
/// max_payload: the device's status froze), then a 100 KB one (copied whole into the status).
/// Now the agent refuses entries over `max_plan_bytes` (256 KiB by default) without decoding them
/// and bounds every text it reports.
#[test]
fn attack_oversized_rejection_texts_do_not_freeze_the_device_status() {
    let mut f = Secure::new("big", &["a"]);
    let a = f.devices[0].clone();
    f.apply("k1.key");
    f.start_all_ready(1);
    let rt = rt();
    let envelope = |key_id_len: usize| {
        let mut e: serde_json::Value = serde_json::from_slice(&f.plan_entry(&rt, &a)).unwrap();
        e["payload"]["generation"] = 7.into();
        e["signature"]["key_id"] = "k".repeat(key_id_len).into();
        serde_json::to_vec(&e).unwrap()
    };

    let huge = envelope(900_000);
    f.put_entry(&rt, &a, huge.clone());
    let d = f.wait_status(&a, "the oversized entry's rejection", |d| d["last_rejection"]["reason"]["kind"] == "too-large");
    assert_eq!(d["last_rejection"]["reason"]["bytes"], huge.len(), "{d:#}");
    assert_eq!(d["last_rejection"]["reason"]["max_bytes"], 262_144, "{d:#}");
    assert_eq!((d["condition"].as_str(), d["applied_generation"].as_u64()), (Some("degraded"), Some(1)), "{d:#}");

    // Under the cap, but with a key id far longer than any report should carry.
    f.put_entry(&rt, &a, envelope(100_000));
    let d = f.wait_status(&a, "the long key id's rejection", |d| d["last_rejection"]["reason"]["kind"] == "unknown-key");
    let key_id = d["last_rejection"]["reason"]["key_id"].as_str().unwrap_or_default();
    assert!(key_id.len() <= 512 && key_id.ends_with("… (100000 bytes in all)"), "bounded: {} bytes: {key_id}", key_id.len());
    let status = rt.block_on(async {
        let js = async_nats::jetstream::new(f.harmony_client().await);
        js.get_key_value(STATUS_BUCKET).await.unwrap().get(&a).await.unwrap().unwrap()
    });
    assert!(status.len() < 16 * 1024, "the status stays small: {} bytes", status.len());

    // Healed by the next apply; the device's status kept flowing throughout.
    std::fs::write(f.repo.join("deploy.kdl"), deployment("localhost/app:2")).unwrap();
    f.apply("k1.key");
    f.wait_ready(&a, 2);
}

/// Finding 9. A forged write claiming the current generation is rejected (the device is rightly
/// `degraded` while the bucket holds it); then the genuine plan is back in the bucket (before:
/// still `degraded` with `desired_rejected: true`, because rejections were matched by the
/// claimed generation). Rejections now name the digest of the entry they refused.
#[test]
fn attack_forged_write_does_not_leave_a_healthy_device_degraded() {
    let mut f = Secure::new("deg", &["a"]);
    let a = f.devices[0].clone();
    f.apply("k1.key");
    f.start_all_ready(1);
    let rt = rt();
    let genuine = f.plan_entry(&rt, &a);

    // Tampered at the current generation: the genuine signature over another image.
    let mut tampered = SignedDevicePlan::from_slice(&genuine).unwrap();
    tampered.payload["deployments"][0]["services"][0]["image"] = "localhost/evil:1".into();
    f.put_entry(&rt, &a, tampered.to_vec());
    let d = f.wait_status(&a, "the tampered plan's rejection", |d| d["last_rejection"]["reason"]["kind"] == "bad-signature");
    assert_eq!((d["condition"].as_str(), d["desired_rejected"].as_bool()), (Some("degraded"), Some(true)), "{d:#}");

    // The genuine entry is back: the device is ready again; the rejection stays in its history.
    f.put_entry(&rt, &a, genuine);
    let d = f.wait_status(&a, "ready with the genuine plan back", |d| d["condition"] == "ready");
    assert_eq!((d["desired_rejected"].as_bool(), d["applied_generation"].as_u64()), (Some(false), Some(1)), "{d:#}");
    assert_eq!(d["last_rejection"]["reason"]["kind"], "bad-signature", "{d:#}");

    // A forged entry claiming the next generation, then the operator's apply signs that
    // generation: the genuine plan is not taken for the rejected one.
    let attacker = generate_signing_key().unwrap();
    let mut next = f.current_plan(&rt, &a, &f.signing_key("k1.key"));
    next.generation = 2;
    f.put_plan(&rt, &a, &next, &attacker);
    f.wait_status(&a, "the forged next generation's rejection", |d| d["last_rejection"]["reason"]["kind"] == "unknown-key");
    std::fs::write(f.repo.join("deploy.kdl"), deployment("localhost/app:2")).unwrap();
    f.apply("k1.key");
    let d = f.wait_ready(&a, 2);
    assert_eq!((d["desired_rejected"].as_bool(), d["last_rejection"]["generation"].as_u64()), (Some(false), Some(2)), "{d:#}");
}

impl Secure {
    /// The raw bytes of `device`'s plan entry.
    fn raw_entry(&self, rt: &tokio::runtime::Runtime, device: &str) -> Vec<u8> {
        rt.block_on(async {
            let plans = async_nats::jetstream::new(self.harmony_client().await).get_key_value(PLANS_BUCKET).await.expect("plans bucket");
            plans.get(device).await.expect("get").expect("an entry").to_vec()
        })
    }

    /// Puts `bytes` into `device`'s plan entry (a replay, by anyone with write access).
    fn put_raw(&self, rt: &tokio::runtime::Runtime, device: &str, bytes: &[u8]) {
        rt.block_on(async {
            let plans = async_nats::jetstream::new(self.harmony_client().await).get_key_value(PLANS_BUCKET).await.expect("plans bucket");
            plans.put(device, bytes.to_vec().into()).await.expect("put");
        });
    }

    /// Deletes `device`'s status entry (anyone with write access to the buckets can).
    fn delete_status(&self, rt: &tokio::runtime::Runtime, device: &str) {
        rt.block_on(async {
            let statuses = async_nats::jetstream::new(self.harmony_client().await).get_key_value(STATUS_BUCKET).await.expect("status bucket");
            statuses.delete(device).await.expect("delete");
        });
    }
}

/// Issue 20 #12. A device's agent state is lost (its state directory wiped, or its state file
/// unreadable) after a rotation retired K1, which the device's configuration still lists. Someone
/// with write access to the buckets but no signing key deletes the device's last status and puts
/// old plans back into its entry: the genuine plan of generation 3 (signed by K2), then the
/// device's first plan (signed by K1); then a thief of K1 signs a newer one. The agent must run
/// none of them and must not trust K1 again: its floor file, beside its seed, keeps both.
#[test]
fn attack_a_lost_agent_state_lets_a_replayed_plan_of_a_retired_key_run() {
    let mut f = Secure::new("lost", &["a"]);
    let a = f.devices[0].clone();
    f.apply("k1.key");
    f.start_agent(&a);
    f.wait_ready(&a, 1);
    let rt = rt();
    let first = f.raw_entry(&rt, &a);
    f.rotate_and_retire(&[&a], 1);
    let third = f.raw_entry(&rt, &a);
    std::fs::write(f.repo.join("deploy.kdl"), deployment("localhost/app:2")).expect("write");
    f.apply("k2.key");
    f.wait_ready(&a, 4);
    let state_dir = f.dir.path().join(format!("state-{a}"));

    // The state directory is wiped; the replay is in place when the agent starts again.
    drop_child(f.agents.remove(0));
    std::fs::remove_dir_all(&state_dir).expect("wipe the state directory");
    f.put_raw(&rt, &a, &third);
    f.delete_status(&rt, &a);
    assert!(f.dev_dir(&a).join(format!("{a}.nk.floor")).is_file(), "the floor file is beside the seed");
    f.start_agent(&a);
    let d = f.decided(&a, 3);
    assert_ne!(d["applied_generation"], 3, "an agent that lost its state ran a replayed plan: {d:#}");
    assert_eq!((d["last_rejection"]["reason"]["kind"].as_str(), d["generation_floor"].as_u64()), (Some("stale-generation"), Some(4)), "{d:#}");
    // The first plan, signed by the retired K1, and a thief of K1 signing a newer one: K1 stays
    // retired.
    f.put_raw(&rt, &a, &first);
    let d = f.decided(&a, 1);
    assert_ne!(d["applied_generation"], 1, "an agent that lost its state ran a replayed plan signed by the retired key: {d:#}");
    // K1's plan carries no chain: it does not extend the links the device settled.
    assert_eq!(d["last_rejection"]["reason"]["kind"], "key-chain", "{d:#}");
    let (k1, k2) = (f.signing_key("k1.key"), f.signing_key("k2.key"));
    let mut p = SignedDevicePlan::from_slice(&first).expect("decodes").verify(&[k1.verifying_key()]).expect("verifies");
    p.generation = 50;
    f.put_plan(&rt, &a, &p, &k1);
    let d = f.decided(&a, 50);
    assert_ne!(d["applied_generation"], 50, "an agent that lost its state trusted the retired key again: {d:#}");
    assert_eq!(d["last_rejection"]["reason"]["kind"], "key-chain", "{d:#}");
    // The next apply writes it a plan above its floor, signed by K2 with the chain: it converges,
    // settled on K2 again.
    f.apply("k2.key");
    let d = f.wait_status(&a, "ready after the lost state", |d| d["condition"] == "ready");
    let generation = d["applied_generation"].as_u64().expect("applied");
    assert!(generation > 4 && d["generation_floor"].is_null(), "{d:#}");
    assert_eq!(f.current_plan(&rt, &a, &k2).generation, generation);

    // An unreadable state file: moved aside, and the floor holds.
    let genuine = f.raw_entry(&rt, &a);
    drop_child(f.agents.remove(0));
    std::fs::write(state_dir.join("state.json"), b"{ not json").expect("corrupt the state file");
    f.put_raw(&rt, &a, &third);
    f.start_agent(&a);
    let d = f.decided(&a, 3);
    assert_ne!(d["applied_generation"], 3, "an agent with an unreadable state file ran a replayed plan: {d:#}");
    assert_eq!((d["last_rejection"]["reason"]["kind"].as_str(), d["generation_floor"].as_u64()), (Some("stale-generation"), Some(generation)), "{d:#}");
    assert!(state_dir.join("state.json.unreadable").is_file(), "the unreadable file is kept aside");
    // The plan of the floor's generation itself is accepted again at once (no apply needed).
    f.put_raw(&rt, &a, &genuine);
    let d = f.wait_ready(&a, generation);
    assert!(d["generation_floor"].is_null(), "{d:#}");
}

/// Issue 20 #12. A compromised device answers `rotate-credentials` with another identity's public
/// nkey (another device's, Harmony's own, the read-only identity's): Harmony must not admit it
/// as that device's key (it would give the device's user to whoever holds that key's seed, or
/// lock the key's owner out).
#[test]
fn attack_rotate_device_key_admits_another_identitys_public_key() {
    let mut f = Secure::new("steal", &["a", "b"]);
    let (a, b) = (f.devices[0].clone(), f.devices[1].clone());
    f.apply("k1.key");
    f.start_agent(&b);
    f.wait_ready(&b, 1);
    let registry = || -> serde_json::Value { serde_json::from_slice(&std::fs::read(f.auth.join("pico/devices.json")).expect("registry")).expect("JSON") };
    let r = registry();
    let b_key = r["devices"][b.as_str()]["nkeys"][0].as_str().expect("b's key").to_string();
    let a_key = r["devices"][a.as_str()]["nkeys"][0].as_str().expect("a's key").to_string();
    let others = [("device", b_key), ("harmony", r["harmony"].as_str().expect("harmony's key").to_string()), ("reader", r["reader"].as_str().expect("the reader's key").to_string())];
    // a's "agent": answers rotate-credentials with the key it is told to.
    let rt = rt();
    let seed_a = f.seed(&a);
    for (whose, key) in &others {
        let answer = key.clone();
        let dev = rt.block_on(DeviceClient::connect(&f.server.url(), &a, &seed_a)).expect("a connects");
        let mut sub = rt.block_on(dev.client.subscribe(command_subject(&a, Verb::RotateCredentials))).expect("subscribe");
        let client = dev.client.clone();
        let responder = rt.spawn(async move {
            if let Some(m) = sub.next().await
                && let Some(reply) = m.reply
            {
                let body = serde_json::to_vec(&harmony_schemas::fleet::CommandReply::Credentials { nkey: answer }).expect("JSON");
                let _ = client.publish(reply, body.into()).await;
                let _ = client.flush().await;
            }
        });
        rt.block_on(dev.client.flush()).expect("flush");
        let out = f.harmony(&["fleet", "rotate-device-key", &a, "--command-key-file", &f.key_file("command.key")]);
        responder.abort();
        let r = registry();
        let keys: Vec<&str> = r["devices"][a.as_str()]["nkeys"].as_array().expect("a's keys").iter().filter_map(|k| k.as_str()).collect();
        assert!(!keys.contains(&key.as_str()), "{whose}'s public key was admitted as a's: {keys:?}\n{}", text(&out));
        assert_eq!(keys, [a_key.as_str()], "a's credentials changed");
        assert!(!out.status.success() && text(&out).contains("refused"), "{}", text(&out));
    }
    // b was never disturbed.
    let out = f.harmony(&["device", "ping", &b]);
    assert!(out.status.success(), "b does not answer: {}", text(&out));
}

/// A device may write its own status. A hostile one reports texts that steer the operator's
/// terminal: escapes that clear the screen and retitle the window, and a line break followed by
/// a forged line claiming another device is ready. `harmony status` and `harmony plan` print
/// them escaped (before: the escape bytes and the forged line reached stdout as written).
#[test]
fn attack_a_device_status_steers_the_operators_terminal() {
    let mut f = Secure::new("esc", &["a", "b"]);
    let a = f.devices[0].clone();
    f.apply("k1.key");
    f.start_all_ready(1);
    // a's agent stops (it would overwrite the status); a's own credentials write its status.
    drop_child(f.agents.remove(0));
    let seed_a = f.seed(&a);
    let forged = "\u{1b}[2J\u{1b}]0;owned\u{7}\nFORGED-LINE b ready\u{9b}31m\u{202e}";
    let rt = rt();
    rt.block_on(async {
        let js = async_nats::jetstream::new(f.harmony_client().await);
        let current = js.get_key_value(STATUS_BUCKET).await.expect("status bucket").get(&a).await.expect("get").expect("a's status");
        let mut status: serde_json::Value = serde_json::from_slice(&current).expect("a status");
        status["last_error"] = forged.into();
        status["drift"] = serde_json::json!([{ "deployment": forged, "container": forged, "found": forged, "action": forged, "at_ms": 1 }]);
        let dev = DeviceClient::connect(&f.server.url(), &a, &seed_a).await.expect("a connects");
        let ack = dev.client.request(format!("$KV.{STATUS_BUCKET}.{a}"), serde_json::to_vec(&status).expect("json").into()).await.expect("ack");
        let ack = String::from_utf8_lossy(&ack.payload).into_owned();
        assert!(!ack.contains("error"), "a may write its own status: {ack}");
    });
    let outputs = [f.harmony(&["status"]), f.harmony(&["plan", "--skip-clusters"])];
    for out in &outputs {
        let all = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
        let shown = String::from_utf8_lossy(&all);
        assert!(shown.contains("\\u{1b}[2J"), "the device's text is shown, escaped: {shown}");
        for bad in ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}'] {
            assert!(!shown.contains(bad), "{bad:?} reached the operator's terminal: {shown:?}");
        }
        assert!(!shown.lines().any(|l| l.starts_with("FORGED-LINE")), "a forged line: {shown}");
    }
}

/// A device revoked between `harmony plan --out` and `harmony apply PLANFILE` gets no plan: the
/// revocation is read at apply from the auth directory and the device's action is refused as
/// stale (exit 2), while the other devices' plans are written. The same for a signing-key
/// chain that changed since planning.
#[test]
fn attack_a_device_revoked_after_planning_gets_no_plan_from_the_plan_file() {
    let f = Secure::new("rvp", &["a", "b"]);
    let (a, b) = (f.devices[0].clone(), f.devices[1].clone());
    let file = f.dir.path().join("p.json");
    let out = f.harmony(&["plan", "--out", &file.to_string_lossy(), "--format", "json"]);
    assert!(out.status.success(), "plan: {}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan json");
    for d in [&a, &b] {
        let unit = format!("device-plan/pico/{d}");
        assert!(plan["actions"].as_array().unwrap().iter().any(|x| x["unit"] == unit && x["apply"]["action"] == "create"), "{unit} not planned: {plan:#}");
    }
    let out = f.harmony(&["fleet", "revoke", &a]);
    assert!(out.status.success(), "revoke: {}", text(&out));

    let out = f.harmony(&["apply", "--yes", &file.to_string_lossy(), "--format", "json", "--signing-key-file", &f.key_file("k1.key")]);
    let outcome = common::apply_outcome(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let result = |d: &str| outcome["actions"].as_array().unwrap().iter().find(|x| x["unit"] == format!("device-plan/pico/{d}")).cloned().unwrap();
    let refused = result(&a);
    assert_eq!(refused["outcome"], "stale", "{outcome:#}");
    assert!(refused["message"].as_str().unwrap().contains("was revoked since planning"), "{outcome:#}");
    assert_eq!(result(&b)["outcome"], "applied", "{outcome:#}");
    let rt = rt();
    rt.block_on(async {
        let plans = async_nats::jetstream::new(f.harmony_client().await).get_key_value(PLANS_BUCKET).await.unwrap();
        assert!(plans.get(&a).await.unwrap().is_none(), "apply PLANFILE wrote a plan for a device revoked since planning");
        assert!(plans.get(&b).await.unwrap().is_some(), "b's plan was not written");
    });

    // A signing-key chain that changed since planning (a rotation announced): the plan's device
    // plans carry the old chain; applied with the old key, they are refused as stale.
    std::fs::write(f.repo.join("deploy.kdl"), deployment("localhost/app:2")).unwrap();
    let out = f.harmony(&["plan", "--out", &file.to_string_lossy()]);
    assert!(out.status.success(), "plan: {}", text(&out));
    let out = f.harmony(&["fleet", "rotate-signing-key", "--signing-key-file", &f.key_file("k1.key"), "--new-key-file", &f.key_file("k2.key")]);
    assert!(out.status.success(), "rotate: {}", text(&out));
    let out = f.harmony(&["apply", "--yes", &file.to_string_lossy(), "--format", "json", "--signing-key-file", &f.key_file("k1.key")]);
    let outcome = common::apply_outcome(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stale = outcome["actions"].as_array().unwrap().iter().find(|x| x["unit"] == format!("device-plan/pico/{b}")).cloned().unwrap();
    assert_eq!(stale["outcome"], "stale", "{outcome:#}");
    assert!(stale["message"].as_str().unwrap().contains("signing-key chain changed since planning"), "{outcome:#}");
}
