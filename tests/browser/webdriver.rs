//! Just enough of the W3C WebDriver protocol to click through the console
//! in headless Chromium. Each `Chromium` is a session of its own, with its
//! own profile, so tests run side by side. The browser is, in this order:
//! the WebDriver server at `WEBDRIVER_URL`; a local Chromium and ChromeDriver
//! (`CHROMIUM`, default `/usr/bin/chromium`; `CHROMEDRIVER`, default
//! `chromedriver` on the `PATH`), each test starting its own chromedriver;
//! or the compose file's `chromium` service on 127.0.0.1:4444.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use uuid::Uuid;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The compose file's WebDriver service (Selenium's standalone Chromium),
/// on the host's network so that its browser reaches the tests' servers on
/// 127.0.0.1.
const COMPOSE_WEBDRIVER: &str = "http://127.0.0.1:4444";

fn program(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_owned())
}

/// Where a test's browser comes from.
enum Driver {
    /// A chromedriver of this test's own, driving the local Chromium.
    Local {
        _process: Box<Child>,
        profile: PathBuf,
    },
    /// A WebDriver server that starts browsers itself.
    Remote,
}

pub struct Chromium {
    http: reqwest::Client,
    session: String,
    driver: Driver,
    /// Whether the session was ended already (by `quit`).
    ended: bool,
}

/// Whether `program` names a file, or a command found on the `PATH`.
fn installed(program: &str) -> bool {
    let path = Path::new(program);
    if path.components().count() > 1 {
        return path.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

impl Chromium {
    /// A headless Chromium, from the first of the sources above.
    pub async fn start() -> Self {
        Self::launch(true).await
    }

    /// A Chromium that runs no page script at all.
    pub async fn start_without_javascript() -> Self {
        Self::launch(false).await
    }

    async fn launch(javascript: bool) -> Self {
        let http = reqwest::Client::new();
        let chromium = program("CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("CHROMEDRIVER", "chromedriver");
        let (root, driver) = if let Ok(url) = std::env::var("WEBDRIVER_URL") {
            (url.trim_end_matches('/').to_owned(), Driver::Remote)
        } else if installed(&chromium) && installed(&chromedriver) {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let process = Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("{chromedriver} did not start: {e}"));
            let profile = std::env::temp_dir()
                .join(format!("authledger-chromium-{}", Uuid::new_v4().simple()));
            let driver = Driver::Local {
                _process: Box::new(process),
                profile,
            };
            (format!("http://127.0.0.1:{port}"), driver)
        } else if ready(&http, COMPOSE_WEBDRIVER).await.is_some() {
            (COMPOSE_WEBDRIVER.to_owned(), Driver::Remote)
        } else {
            panic!(
                "no browser for the console's tests: start the compose file's `chromium` service \
                 (`docker compose up -d`, WebDriver on {COMPOSE_WEBDRIVER}), install Chromium and \
                 ChromeDriver (the README's \"Without Docker\"), or set WEBDRIVER_URL"
            );
        };
        // A local chromedriver answers within a second; a remote server
        // may first have to finish its own start, and then queues the new
        // session while its slots are taken (its `ready` is false then).
        let deadline = Instant::now() + Duration::from_secs(60);
        let local = matches!(driver, Driver::Local { .. });
        while match ready(&http, &root).await {
            Some(ready) => local && !ready,
            None => true,
        } {
            assert!(
                Instant::now() < deadline,
                "the WebDriver server at {root} is not ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The flags keep a headless Chromium from reaching out to the
        // network on its own (this project's tests run offline).
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1024,860".to_owned(),
        ];
        let mut options = json!({
            "prefs": { "profile.managed_default_content_settings.javascript": if javascript { 1 } else { 2 } },
        });
        if let Driver::Local { profile, .. } = &driver {
            args.push(format!("--user-data-dir={}", profile.display()));
            options["binary"] = json!(chromium);
        }
        options["args"] = json!(args);
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": options,
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
            .unwrap_or_else(|| panic!("Chromium did not start at {root}: {created}"));
        Self {
            http,
            session: format!("{root}/session/{id}"),
            driver,
            ended: false,
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

    /// Plugs in a virtual authenticator (WebDriver's WebAuthn extension):
    /// a platform passkey that verifies its user, or a roaming security
    /// key that does not. Answers its id.
    pub async fn add_virtual_authenticator(&self, passkey: bool) -> String {
        let options = if passkey {
            json!({"protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
                   "hasUserVerification": true, "isUserVerified": true,
                   "automaticPresenceSimulation": true})
        } else {
            json!({"protocol": "ctap2", "transport": "usb", "hasResidentKey": false,
                   "hasUserVerification": false, "isUserVerified": false,
                   "automaticPresenceSimulation": true})
        };
        let id = self.post("/webauthn/authenticator", options).await;
        id.as_str().unwrap().to_owned()
    }

    /// Unplugs it: its credentials go with it.
    pub async fn remove_virtual_authenticator(&self, id: &str) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/webauthn/authenticator/{id}"),
            None,
        )
        .await;
    }

    /// The credentials a virtual authenticator holds.
    pub async fn virtual_credentials(&self, id: &str) -> Vec<Value> {
        self.get(&format!("/webauthn/authenticator/{id}/credentials"))
            .await
            .as_array()
            .unwrap()
            .clone()
    }

    pub async fn cookies(&self) -> Vec<Value> {
        self.get("/cookie").await.as_array().unwrap().clone()
    }

    /// Saves a PNG of the page as `<AUTHLEDGER_SCREENSHOTS>/<name>.png` when
    /// that variable names a directory (the pictures in docs/console are
    /// made so).
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
        let axe = axe_core().await;
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

    pub async fn quit(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        self.ended = true;
    }
}

/// Whether the WebDriver server at `root` takes new sessions; `None` when
/// nothing answers there.
async fn ready(http: &reqwest::Client, root: &str) -> Option<bool> {
    let answer = http
        .get(format!("{root}/status"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let status = answer.json::<Value>().await.ok()?;
    status["value"]["ready"].as_bool()
}

impl Drop for Chromium {
    /// Also when a test fails half-way: a remote session is ended (it
    /// would hold one of the server's slots until its timeout), and
    /// whatever runs with a local test's profile goes (killing
    /// chromedriver leaves its Chromium running).
    fn drop(&mut self) {
        match &self.driver {
            Driver::Remote if !self.ended => end_session(&self.session),
            Driver::Remote => {}
            Driver::Local { profile, .. } => {
                let _ = std::process::Command::new("pkill")
                    .arg("-f")
                    .arg(profile.as_os_str())
                    .status();
                let _ = std::fs::remove_dir_all(profile);
            }
        }
    }
}

/// `DELETE` on a session URL, blocking (`Drop` cannot await); a session
/// already ended answers an error, which is ignored.
fn end_session(session: &str) {
    use std::io::{Read, Write};

    let Some(rest) = session.strip_prefix("http://") else {
        return;
    };
    let Some((authority, path)) = rest.split_once('/') else {
        return;
    };
    let Some(address) = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .ok()
        .and_then(|mut all| all.next())
    else {
        return;
    };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5))
    else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request =
        format!("DELETE /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = stream.read(&mut [0; 512]);
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

/// The axe-core release the accessibility check runs, as npm's registry
/// serves it, and its tarball's digest (the registry's `integrity`).
const AXE_CORE_VERSION: &str = "4.10.3";
const AXE_CORE_SHA512: &str =
    "Xm7bpRXnDSX2YE2YFfBk2FnF0ep6tmG7xPh8iHee8MIcrgq762Nkce856dYtJYLkuIoYZvGfTs/PbZhideTcEg==";

/// axe-core's script: `AXE_CORE_JS` when set (a file, for machines without
/// the registry), else fetched once from npm's registry, checked against
/// its digest and kept beside the build.
async fn axe_core() -> &'static str {
    static AXE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    AXE.get_or_init(|| async {
        if let Ok(path) = std::env::var("AXE_CORE_JS") {
            return std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("AXE_CORE_JS={path}: {e}"));
        }
        let kept = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("axe-core-{AXE_CORE_VERSION}.min.js"));
        if let Ok(script) = std::fs::read_to_string(&kept) {
            return script;
        }
        let url = format!("https://registry.npmjs.org/axe-core/-/axe-core-{AXE_CORE_VERSION}.tgz");
        let tarball = reqwest::get(&url)
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|e| panic!("fetching axe-core from {url}: {e} (or set AXE_CORE_JS)"))
            .bytes()
            .await
            .unwrap();
        let digest = base64::engine::general_purpose::STANDARD
            .encode(<sha2::Sha512 as sha2::Digest>::digest(&tarball));
        assert_eq!(
            digest, AXE_CORE_SHA512,
            "{url} is not the axe-core release we checked"
        );
        let script = script_in(&tarball, "package/axe.min.js");
        // Written whole, then renamed: a parallel test binary reads either
        // nothing or all of it.
        let partial = kept.with_extension(format!("{}.partial", Uuid::new_v4().simple()));
        std::fs::write(&partial, &script).unwrap();
        std::fs::rename(&partial, &kept).unwrap();
        script
    })
    .await
}

/// The file at `path` in a gzipped tarball.
fn script_in(tarball: &[u8], path: &str) -> String {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tarball));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(path) {
            let mut script = String::new();
            std::io::Read::read_to_string(&mut entry, &mut script).unwrap();
            return script;
        }
    }
    panic!("the axe-core tarball holds no {path}");
}
