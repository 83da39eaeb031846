//! The dashboard in a real headless Chromium, driven through chromedriver (W3C WebDriver over
//! plain HTTP): pages load, the device list reflects a device added, the drill-down shows the
//! right generation, and the live tail shows a heartbeat arriving without a reload.
//! Screenshots are kept in `target/ui-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/install-test-deps.sh`). Without
//! them the test fails under `CI=true` and is skipped, with a message, elsewhere.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{request_body, start};
use harmony_schemas::fleet::DeviceState;
use serde_json::{Value, json};

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

fn tools() -> Option<(PathBuf, PathBuf)> {
    let driver = std::env::var_os("HARMONY_CHROMEDRIVER").map(PathBuf::from).or_else(|| on_path("chromedriver"))?;
    let browser = std::env::var_os("HARMONY_CHROMIUM").map(PathBuf::from).or_else(|| on_path("chromium")).or_else(|| on_path("chromium-browser"))?;
    Some((driver, browser))
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| harmony_testkit::repo_root().join("target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("create target/ui-screenshots");
    dir
}

struct Driver {
    child: Child,
    addr: SocketAddr,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // End the session first (also when the test failed): chromedriver then quits Chromium,
        // which killing chromedriver alone would leave running.
        if !self.session.is_empty()
            && let Ok(mut s) = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
        {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(s, "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", self.session, self.addr);
            let _ = s.read(&mut [0u8; 1024]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(driver: &PathBuf, browser: &PathBuf) -> Driver {
        let port = harmony_testkit::free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut d = Driver { child, addr, session: String::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on {addr}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({ "capabilities": { "alwaysMatch": { "goog:chromeOptions": {
            "binary": browser,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,860", "--hide-scrollbars"]
        } } } });
        let v = d.call("POST", "/session", Some(caps)).await;
        d.session = v["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        d
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let r = request_body(self.addr, method, path, &[("Content-Type", "application/json")], &body).await;
        let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {}", r.body));
        assert!(r.status == 200, "{method} {path}: HTTP {}: {v}", r.status);
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call("POST", &format!("/session/{}/url", self.session), Some(json!({ "url": url }))).await;
    }

    async fn eval(&self, script: &str) -> Value {
        self.call("POST", &format!("/session/{}/execute/sync", self.session), Some(json!({ "script": script, "args": [] }))).await
    }

    /// Polls `script` (a `return …` expression) until it returns true, at most 10 s.
    async fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.eval(script).await == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let dom = self.eval("return document.documentElement.outerHTML").await;
                panic!("{what}: not seen in 10 s; DOM:\n{}", dom.as_str().unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let v = self.call("GET", &format!("/session/{}/screenshot", self.session), None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        std::fs::write(screenshots_dir().join(name), png).expect("write screenshot");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let Some((driver, browser)) = tools() else {
        let msg = "chromium and chromedriver not found: install them with scripts/install-test-deps.sh (Debian packages chromium, chromium-driver)";
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED dashboard_in_headless_chromium: {msg}");
        return;
    };
    let env = start(None).await;
    env.plan("pi-001", 3).await;
    env.status("pi-001", 3, DeviceState::Applied, None).await;
    env.heartbeat("pi-001", 3, &[]).await;
    env.plan("pi-101", 2).await;
    env.status("pi-101", 1, DeviceState::Degraded, Some("container `hub`: exited with code 137")).await;
    env.heartbeat("pi-101", 1, &[]).await;
    env.get_until("/api/devices/pi-101", |b| b.contains("degraded")).await;
    let base = env.ui.url();
    let d = Driver::start(&driver, &browser).await;

    // Every page loads.
    for (path, title, shot) in [
        ("/", "Overview", "overview.png"),
        ("/devices", "Devices", "devices.png"),
        ("/deployments", "Deployments", "deployments.png"),
        ("/releases", "Releases", "releases.png"),
    ] {
        d.go(&format!("{base}{path}")).await;
        d.wait_for(path, &format!("return document.readyState === 'complete' && document.title.startsWith('{title}')")).await;
        d.screenshot(shot).await;
    }
    d.go(&format!("{base}/devices")).await;
    assert_eq!(d.eval("return document.querySelectorAll('#devices tbody tr').length").await, json!(8));

    // A device added to the fleet appears in the list.
    env.status("pi-900", 1, DeviceState::Applied, None).await;
    env.heartbeat("pi-900", 1, &[("site", "ottawa")]).await;
    env.get_until("/api/devices/pi-900", |b| b.contains("ottawa") && b.contains("\"condition\":\"ready\"")).await;
    d.go(&format!("{base}/devices?selector=site%3Dottawa")).await;
    d.wait_for("pi-900 in the list", "return document.querySelector('#devices tr[data-device=\"pi-900\"]') !== null").await;
    assert_eq!(d.eval("return document.querySelectorAll('#devices tbody tr').length").await, json!(1));
    d.screenshot("devices-added.png").await;

    // The drill-down shows the right generation.
    d.go(&format!("{base}/devices/pi-101")).await;
    d.wait_for("drill-down", "return document.getElementById('desired-generation') !== null").await;
    assert_eq!(d.eval("return document.getElementById('desired-generation').textContent").await, json!("2"));
    assert_eq!(d.eval("return document.getElementById('applied-generation').textContent").await, json!("1"));
    assert_eq!(d.eval("return document.querySelector('h1 .badge').textContent").await, json!("degraded"));
    d.screenshot("device.png").await;

    // The live tail shows a heartbeat arriving, without a reload.
    d.go(&format!("{base}/live")).await;
    d.wait_for("event stream open", "return document.getElementById('sse-state').textContent === 'live'").await;
    d.eval("window.__marker = 'same page'; return true").await;
    env.heartbeat("pi-003", 5, &[]).await;
    d.wait_for("heartbeat of pi-003 in the live tail", "return document.querySelector('#tail tr.new.heartbeat[data-subject=\"pi-003\"]') !== null").await;
    assert_eq!(d.eval("return window.__marker").await, json!("same page"), "the page was not reloaded");
    let text = d.eval("return document.querySelector('#tail tr.new[data-subject=\"pi-003\"]').textContent").await;
    assert!(text.as_str().unwrap_or_default().contains("generation 5"), "{text}");
    d.screenshot("live.png").await;
}
