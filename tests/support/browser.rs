//! A headless Chromium driven over WebDriver (W3C), for the UI's tests.
//!
//! Debian's `chromium` and `chromium-driver` (scripts/test.sh installs
//! them); the tests speak the protocol's few JSON calls through the
//! harness's own HTTP client rather than through a WebDriver crate:
//! `fantoccini` would bring ~40 crates (the `webdriver` crate with ICU
//! segmentation, `url`, `time`, `cookie`) into every test build on two
//! cores, for the seven calls used here. Most checks run as JavaScript in
//! the page (`eval`), which reads the DOM as the user sees it.

use super::client::Client;
use super::process::Process;
use super::tools;
use super::wait;
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL: &str = "scripts/test.sh installs them: apt-get install -y chromium chromium-driver";

pub struct Browser {
    base: String,
    client: Client,
    driver: Process,
    profile: PathBuf,
}

/// `Ok` when both Debian packages' programs answer.
fn installed() -> Result<(), String> {
    tools::runs(Path::new(CHROMEDRIVER), "--version")?;
    tools::runs(Path::new(CHROMIUM), "--version")
}

impl Browser {
    /// A fresh headless browser with a 1440×900 window (a laptop), or `None`
    /// (after `tools::require`'s rule) when Chromium is not installed.
    pub async fn start(name: &str) -> Option<Browser> {
        tools::require(&format!("headless Chromium ({INSTALL})"), installed())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Its own process group, which Chromium's processes join: a test
        // that panics leaves no browser behind (`Drop`).
        let driver = Process::spawn(
            "chromedriver",
            std::process::Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .process_group(0),
        );
        let base = format!("http://127.0.0.1:{port}");
        let client = Client::http1();
        let status = format!("{base}/status");
        let up = wait::until(
            Duration::from_secs(20),
            async || matches!(client.get(&status).try_send().await, Ok(r) if r.status == 200),
        )
        .await;
        assert!(up.is_some(), "chromedriver did not answer on {status}");
        let profile = tools::scratch_dir(&format!("chromium-{name}"));
        let mut browser = Browser { base, client, driver, profile: profile.clone() };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--window-size=1440,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let session = browser.call("POST", "/session", Some(caps)).await;
        let id = session["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {session}")).to_string();
        browser.base = format!("{}/session/{id}", browser.base);
        Some(browser)
    }

    /// One WebDriver command; returns its `value`, panics on an error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let method = http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut call = self.client.request(method.clone(), &url).timeout(Duration::from_secs(60));
        if let Some(b) = body {
            call = call.header("content-type", "application/json").body(b.to_string());
        }
        let r = call.send().await;
        let doc: Value =
            serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {}", r.text()));
        if r.status != 200 {
            panic!("{method} {path}: {} {}", r.status, doc["value"]);
        }
        doc["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    /// Runs `script` (a function body; `return` gives the value) in the
    /// page. A returned promise is awaited.
    pub async fn eval(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    /// Asks `script` until it returns something other than null, false or
    /// an empty string, for at most 20 s; panics with `what` otherwise.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let found = wait::until(Duration::from_secs(20), async || {
            let v = self.eval(script).await;
            let empty = v.is_null() || v == Value::Bool(false) || v == Value::String(String::new());
            (!empty).then_some(v)
        })
        .await;
        match found {
            Some(v) => v,
            None => {
                let page = self.eval("return document.body.innerText.slice(0, 2000)").await;
                panic!("the page never showed {what}; it reads:\n{}", page.as_str().unwrap_or_default())
            }
        }
    }

    /// Presses keys as a user would, into whatever has focus. WebDriver's
    /// key codes: "\u{E007}" is Enter, "\u{E004}" Tab.
    pub async fn keys(&self, keys: &str) {
        let mut actions = Vec::new();
        for k in keys.chars() {
            actions.push(json!({"type": "keyDown", "value": k.to_string()}));
            actions.push(json!({"type": "keyUp", "value": k.to_string()}));
        }
        let body = json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]});
        self.call("POST", "/actions", Some(body)).await;
    }

    /// A PNG of the window, written to `target/ui-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) {
        use base64::Engine;
        let data = self.call("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap_or_default()).unwrap();
        let dir = tools::repo("target/ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Ends the session as a user closes the window.
    pub async fn close(self) {
        self.call("DELETE", "", None).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group our own child leads.
        unsafe { libc::kill(-(self.driver.id() as libc::pid_t), libc::SIGKILL) };
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
