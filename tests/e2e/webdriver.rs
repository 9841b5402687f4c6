//! A tiny W3C WebDriver client (chromedriver driving headless Chromium) for the browser
//! tests (`dashboard.rs`, `floor_app.rs`): plain HTTP calls, no WebDriver crate.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`scripts/browser.sh`).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long any condition may take to become true.
const PATIENCE: Duration = Duration::from_secs(45);

// ---- WebDriver ------------------------------------------------------------------------

/// chromedriver and one browser session; both end when dropped, also when a test
/// panics (a killed chromedriver would leave its Chromium running).
pub struct Browser {
    driver: Child,
    /// Whether the session has been deleted (the browser closed).
    closed: bool,
    http: reqwest::Client,
    /// `http://127.0.0.1:{port}/session/{id}`.
    session: String,
    /// The browser profile, removed when dropped.
    _profile: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Browser {
    pub async fn start(width: u32, height: u32) -> Self {
        assert!(
            Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists(),
            "{CHROMIUM} and {CHROMEDRIVER} are needed: run scripts/browser.sh"
        );
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        // Wait until the driver answers /status with ready.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .map(|v| v["value"]["ready"] == true),
                Err(_) => None,
            };
            if ready == Some(true) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver is not ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    // Never ask before storing IndexedDB data or registering a worker.
                    "--unlimited-storage",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .unwrap();
        let id = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .to_string();
        Self {
            driver,
            closed: false,
            http,
            session: format!("{base}/session/{id}"),
            _profile: profile,
        }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("chromedriver answers");
        let status = res.status();
        let v: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub async fn js(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Waits until `expression` is truthy in the page; returns its value.
    pub async fn until(&self, what: &str, expression: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let script =
            format!("try {{ return ({expression}) || null; }} catch (e) {{ return null; }}");
        loop {
            let v = self.js(&script).await;
            if !(v.is_null() || v == false) {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                let page = self
                    .js("return document.body.innerText.slice(0, 3000)")
                    .await;
                panic!("timed out waiting for {what}; the page shows:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clears the element at `selector` and types `text` into it with the keyboard
    /// (`\u{E007}` is Enter).
    /// Sends `text` as key strokes to the element, without clearing it first (a select
    /// takes them as type-ahead, choosing the option whose label they begin).
    pub async fn keys(&self, selector: &str, text: &str) {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": selector })),
            )
            .await;
        let id = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {selector}: {found}"))
            .to_string();
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn type_into(&self, selector: &str, text: &str) {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": selector })),
            )
            .await;
        let id = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {selector}: {found}"))
            .to_string();
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Runs `script` as an async script: it ends by calling `done(value)`.
    pub async fn js_async(&self, script: &str) -> Value {
        let wrapped = format!("const done = arguments[arguments.length - 1]; {script}");
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({ "script": wrapped, "args": [] })),
        )
        .await
    }

    /// A Chrome DevTools Protocol command (chromedriver's `goog/cdp/execute`).
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
        .await
    }

    /// Cuts the page and its service workers off the network (or gives it back), as
    /// DevTools' "Offline" does: the page through `Network.emulateNetworkConditions`, each
    /// service worker through the same command sent to its own target.
    pub async fn set_offline(&self, offline: bool) {
        let conditions = json!({ "offline": offline, "latency": 0,
                                 "downloadThroughput": -1, "uploadThroughput": -1 });
        self.cdp("Network.enable", json!({})).await;
        self.cdp("Network.emulateNetworkConditions", conditions.clone())
            .await;
        let targets = self.cdp("Target.getTargets", json!({})).await;
        for t in targets["targetInfos"].as_array().into_iter().flatten() {
            if t["type"] != "service_worker" {
                continue;
            }
            let attached = self
                .cdp(
                    "Target.attachToTarget",
                    json!({ "targetId": t["targetId"], "flatten": false }),
                )
                .await;
            for (n, (method, params)) in [
                ("Network.enable", json!({})),
                ("Network.emulateNetworkConditions", conditions.clone()),
            ]
            .into_iter()
            .enumerate()
            {
                let message = json!({ "id": n + 1, "method": method, "params": params });
                self.cdp(
                    "Target.sendMessageToTarget",
                    json!({ "sessionId": attached["sessionId"], "message": message.to_string() }),
                )
                .await;
            }
        }
    }

    /// A screenshot of the whole page, beyond the viewport (CDP).
    pub async fn full_page_screenshot(&self, to: &Path) {
        let shot = self
            .cdp(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await;
        let png = base64_decode(shot["data"].as_str().expect("base64 data"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(to, png).expect("the screenshot is written");
    }

    pub async fn screenshot(&self, to: &Path) {
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64_decode(b64.as_str().expect("base64 text"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(to, png).expect("the screenshot is written");
    }

    pub async fn quit(mut self) {
        let _ = self.http.delete(self.session.clone()).send().await;
        self.closed = true;
        let _ = self.driver.kill().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        // Close the browser through the driver before the driver is killed (the
        // fields drop after this); off the async runtime, as in `TestDb`'s drop.
        let session = self.session.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let _ = reqwest::Client::new()
                    .delete(session)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
            });
            Ok::<_, std::io::Error>(())
        })
        .join();
    }
}

/// Standard base64 (the screenshot), without pulling in a crate for it.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(value(c)) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
