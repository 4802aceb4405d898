//! better-auth, the peer every sign-in figure is set beside: its server
//! (`loadgen/peer/better-auth`, installed from the npm registry into a
//! temporary directory, on a Postgres database of its own) and the same
//! password-then-TOTP flow against it, cookie by cookie.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{text, Authenticator, SignIn, User, PASSWORD};

/// The peer's files in this repository: pinned versions and the server.
pub fn peer_sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peer/better-auth")
}

/// A running better-auth server.
pub struct PeerServer {
    child: Child,
    /// Where its packages were installed, removed when it stops.
    dir: PathBuf,
    pub peer: Peer,
}

impl PeerServer {
    /// Installs the pinned packages (`npm ci`) into a directory under the
    /// system's temporary one and starts the server on a free port, on a
    /// fresh database `authledger_peer` of the Postgres at `postgres`.
    pub async fn start(postgres: &str) -> anyhow::Result<Self> {
        // A directory of its own, made new: nothing found there is trusted.
        let dir = std::env::temp_dir().join(format!(
            "authledger-peer-better-auth-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&dir)?;
        for file in ["package.json", "package-lock.json", "server.mjs"] {
            std::fs::copy(peer_sources().join(file), dir.join(file))
                .with_context(|| format!("copying the peer's {file}"))?;
        }
        let installed = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .status()
            .await
            .context("running npm (Node.js and npm are needed for the comparison)")?;
        if !installed.success() {
            bail!("npm ci in {} failed: {installed}", dir.display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(&dir)
            .env("PEER_PORT", port.to_string())
            .env("PEER_PG_URL", postgres)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the peer with node")?;
        let stdout = child.stdout.take().context("the peer's output")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if line.starts_with("peer listening on ") {
                    return Ok(());
                }
            }
            bail!("the peer stopped before it listened")
        })
        .await
        .context("the peer did not start within 60 s")?;
        ready?;
        // Its output is not read again; a closed pipe would not stop it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            dir,
            peer: Peer::new(&format!("http://127.0.0.1:{port}")),
        })
    }

    /// The server's process, to read its CPU time in `/proc`.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// better-auth reached over HTTP, as a browser would: JSON posts with the
/// origin it trusts, the cookies it sets carried by hand.
#[derive(Clone)]
pub struct Peer {
    base: String,
    http: reqwest::Client,
}

/// The cookies `Set-Cookie` headers set (not those they clear), each as
/// the `name=value` a `Cookie` header sends back, byte for byte.
fn cookies<'a>(set_cookie: impl Iterator<Item = &'a str>) -> Vec<String> {
    set_cookie
        .filter(|value| {
            !value
                .split(';')
                .skip(1)
                .any(|attribute| attribute.trim().eq_ignore_ascii_case("max-age=0"))
        })
        .filter_map(|value| value.split(';').next())
        .map(|pair| pair.trim().to_owned())
        .collect()
}

fn cookie<'a>(set: &'a [String], name: &str) -> anyhow::Result<&'a str> {
    set.iter()
        .map(String::as_str)
        .find(|c| c.split_once('=').is_some_and(|(n, _)| n == name))
        .with_context(|| format!("no {name} cookie in the answer"))
}

impl Peer {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(512)
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn post(
        &self,
        path: &str,
        body: Value,
        cookie: Option<&str>,
    ) -> anyhow::Result<(Vec<String>, Value)> {
        let mut request = self
            .http
            .post(format!("{}/api/auth{path}", self.base))
            .header("origin", &self.base)
            .json(&body);
        if let Some(cookie) = cookie {
            request = request.header(reqwest::header::COOKIE, cookie);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status().as_u16();
        let set = cookies(
            response
                .headers()
                .get_all(reqwest::header::SET_COOKIE)
                .iter()
                .filter_map(|value| value.to_str().ok()),
        );
        let text = response.text().await?;
        if status != 200 {
            bail!("POST {path}: {status} {text}");
        }
        Ok((set, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

impl SignIn for Peer {
    /// Signs up, turns TOTP on with the app's first code, and signs out.
    async fn new_user(&self, email: &str) -> anyhow::Result<User> {
        let (set, _) = self
            .post(
                "/sign-up/email",
                json!({"email": email, "password": PASSWORD, "name": ""}),
                None,
            )
            .await?;
        let session = cookie(&set, "better-auth.session_token")?.to_owned();
        let (_, enabled) = self
            .post(
                "/two-factor/enable",
                json!({"password": PASSWORD}),
                Some(&session),
            )
            .await?;
        let mut authenticator = Authenticator::from_uri(text(&enabled, "totpURI")?)?;
        let code = authenticator.next_code().context("a code")?;
        // Enabling signs the session out and in again.
        let (set, _) = self
            .post(
                "/two-factor/verify-totp",
                json!({"code": code}),
                Some(&session),
            )
            .await?;
        let session = cookie(&set, "better-auth.session_token")?.to_owned();
        self.post("/sign-out", json!({}), Some(&session)).await?;
        Ok(User {
            email: email.to_owned(),
            authenticator,
            recovery_code: String::new(),
            address: None,
        })
    }

    /// Answers the pending second step's cookie.
    async fn password(&self, email: &str) -> anyhow::Result<String> {
        let (set, answer) = self
            .post(
                "/sign-in/email",
                json!({"email": email, "password": PASSWORD}),
                None,
            )
            .await?;
        if answer["twoFactorRedirect"] != Value::Bool(true) {
            bail!("the password step did not ask for the second factor: {answer}");
        }
        Ok(cookie(&set, "better-auth.two_factor")?.to_owned())
    }

    async fn totp(&self, login: &str, code: &str) -> anyhow::Result<String> {
        let (set, _) = self
            .post(
                "/two-factor/verify-totp",
                json!({"code": code}),
                Some(login),
            )
            .await?;
        Ok(cookie(&set, "better-auth.session_token")?.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// better-auth's answer to the password step: the pending second
    /// step's cookie is kept as sent, the cleared ones are not.
    #[test]
    fn keeps_the_cookies_set_and_drops_those_cleared() {
        let set = cookies(
            [
                "better-auth.session_token=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax",
                "better-auth.two_factor=abc%2Fdef.sig%3D; Max-Age=600; Path=/; HttpOnly; SameSite=Lax",
                "better-auth.session_data=; Max-Age=0; Path=/",
            ]
            .into_iter(),
        );
        assert_eq!(set, ["better-auth.two_factor=abc%2Fdef.sig%3D"]);
        assert_eq!(
            cookie(&set, "better-auth.two_factor").unwrap(),
            "better-auth.two_factor=abc%2Fdef.sig%3D"
        );
        assert!(cookie(&set, "better-auth.session_token").is_err());
    }
}
