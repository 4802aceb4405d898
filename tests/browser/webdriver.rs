//! Just enough of the W3C WebDriver protocol to click through the console
//! in headless Chromium: each `Chromium` runs its own chromedriver and
//! profile, so tests run side by side.
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use uuid::Uuid;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn program(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_owned())
}

pub struct Chromium {
    http: reqwest::Client,
    session: String,
    _driver: Child,
    profile: PathBuf,
}

impl Chromium {
    /// Starts chromedriver (`CHROMEDRIVER`, default `chromedriver`) and a
    /// headless Chromium (`CHROMIUM`, default `/usr/bin/chromium`).
    pub async fn start() -> Self {
        Self::launch(true).await
    }

    /// A Chromium that runs no page script at all.
    pub async fn start_without_javascript() -> Self {
        Self::launch(false).await
    }

    async fn launch(javascript: bool) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(program("CHROMEDRIVER", "chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver must be installed (Debian: apt-get install chromium chromium-driver), or CHROMEDRIVER set");
        let http = reqwest::Client::new();
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = match http.get(format!("{root}/status")).send().await {
                Ok(response) => response
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["value"]["ready"].as_bool()),
                Err(_) => None,
            };
            if ready == Some(true) {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile =
            std::env::temp_dir().join(format!("authledger-chromium-{}", Uuid::new_v4().simple()));
        // The flags keep a headless Chromium from reaching out to the
        // network on its own (this project's tests run offline).
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1024,860",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": program("CHROMIUM", "/usr/bin/chromium"),
                    "args": args,
                    "prefs": { "profile.managed_default_content_settings.javascript": if javascript { 1 } else { 2 } },
                },
            }}
        });
        let created: Value = http
            .post(format!("{root}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("Chromium did not start: {created}"));
        Self {
            http,
            session: format!("{root}/session/{id}"),
            _driver: driver,
            profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|error| panic!("WebDriver {path}: {error}"))
    }

    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        match answer["value"]["error"].as_str() {
            Some(error) => Err(format!("{error}: {}", answer["value"]["message"])),
            None => Ok(answer["value"].clone()),
        }
    }

    /// Runs `action`, then waits until the page it was on is replaced: a
    /// form's POST and its redirect land after the click has returned.
    async fn navigating<F: std::future::Future<Output = ()>>(&self, action: F) {
        let page = self.find("css selector", "html").await;
        action.await;
        let deadline = Instant::now() + Duration::from_secs(15);
        while self
            .try_call(reqwest::Method::GET, &format!("/element/{page}/name"), None)
            .await
            .is_ok()
        {
            assert!(Instant::now() < deadline, "the page did not change");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.get("/url").await.as_str().unwrap().to_owned()
    }

    /// The path of the current page, e.g. `/profile`.
    pub async fn path(&self) -> String {
        let url = self.url().await;
        let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
        path.split('?').next().unwrap_or("/").to_owned()
    }

    async fn find(&self, using: &str, value: &str) -> String {
        let found = self
            .post("/element", json!({ "using": using, "value": value }))
            .await;
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find("css selector", css).await;
        self.post(&format!("/element/{element}/clear"), json!({}))
            .await;
        self.post(
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Clicks something that does not leave the page.
    pub async fn click(&self, css: &str) {
        let element = self.find("css selector", css).await;
        self.post(&format!("/element/{element}/click"), json!({}))
            .await;
    }

    /// Clicks the button or link whose visible text is `text`, as a person
    /// would pick it, and waits for the page it leads to.
    pub async fn click_on(&self, text: &str) {
        let xpath = format!(
            "//*[(self::button or self::a) and normalize-space(.)={}]",
            xpath_literal(text)
        );
        let element = self.find("xpath", &xpath).await;
        self.navigating(async {
            self.post(&format!("/element/{element}/click"), json!({}))
                .await;
        })
        .await;
    }

    /// Presses Enter in a field, submitting its form from the keyboard.
    pub async fn press_enter_in(&self, css: &str) {
        let element = self.find("css selector", css).await;
        self.navigating(async {
            self.post(
                &format!("/element/{element}/value"),
                json!({ "text": "\u{E007}" }),
            )
            .await;
        })
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let element = self.find("css selector", css).await;
        self.get(&format!("/element/{element}/text"))
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn heading(&self) -> String {
        self.text("h1").await
    }

    pub async fn execute(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": [] }))
            .await
    }

    /// Sets the window size, e.g. to a phone's.
    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({ "width": width, "height": height }))
            .await;
    }

    pub async fn cookies(&self) -> Vec<Value> {
        self.get("/cookie").await.as_array().unwrap().clone()
    }

    /// Saves a PNG of the page as `<AUTHLEDGER_SCREENSHOTS>/<name>.png` when
    /// that variable names a directory (the README's pictures are made so).
    pub async fn screenshot(&self, name: &str) {
        let Ok(dir) = std::env::var("AUTHLEDGER_SCREENSHOTS") else {
            return;
        };
        let encoded = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).unwrap();
    }

    /// Runs axe-core on the page and returns its violations as
    /// `(rule, impact, nodes)`.
    pub async fn accessibility_violations(&self) -> Vec<(String, String, usize)> {
        let axe = std::fs::read_to_string(axe_path()).unwrap_or_else(|_| {
            panic!(
                "axe-core is missing at {}: run `npm ci --prefix tests/browser`",
                axe_path().display()
            )
        });
        self.execute(&format!("{axe}\nreturn true;")).await;
        let script = "const done = arguments[arguments.length - 1];
            axe.run(document, { resultTypes: ['violations'] })
              .then(r => done(r.violations.map(v => [v.id, v.impact || 'unknown', v.nodes.length])))
              .catch(e => done([['axe-failed', String(e), 0]]));";
        let found = self
            .post("/execute/async", json!({ "script": script, "args": [] }))
            .await;
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v[0].as_str().unwrap().to_owned(),
                    v[1].as_str().unwrap().to_owned(),
                    v[2].as_u64().unwrap() as usize,
                )
            })
            .collect()
    }

    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

impl Drop for Chromium {
    /// Killing chromedriver leaves its Chromium running, also when a test
    /// fails half-way: whatever runs with this test's profile goes.
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill")
            .arg("-f")
            .arg(self.profile.as_os_str())
            .status();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// `text` as an XPath 1.0 string, which has no escapes: quoted with the
/// kind of quote it does not hold.
fn xpath_literal(text: &str) -> String {
    match (text.contains('\''), text.contains('"')) {
        (false, _) => format!("'{text}'"),
        (true, false) => format!("\"{text}\""),
        (true, true) => panic!("no button text holds both kinds of quote: {text}"),
    }
}

fn axe_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/axe-core/axe.min.js")
}
