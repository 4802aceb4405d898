//! Real sign-in flows over HTTP against a running authledger, driven by N
//! concurrent clients that compute TOTP codes as an authenticator app
//! would, with throughput and latency percentiles per step.
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use totp_rs::Totp;

pub mod peer;
pub mod sink;
pub use peer::{Peer, PeerServer};
pub use sink::MailSink;

/// A system the sign-in scenarios run against: authledger, or the peer it
/// is compared with, driven the same way by the same client.
pub trait SignIn: Clone + Send + Sync + 'static {
    /// Creates an account with an enrolled authenticator.
    fn new_user(&self, email: &str) -> impl Future<Output = anyhow::Result<User>> + Send;
    /// The password step; returns what the second step carries.
    fn password(&self, email: &str) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// The TOTP step; returns the session.
    fn totp(&self, login: &str, code: &str) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// The same system, reached as `user` reaches it.
    fn for_user(&self, _user: &User) -> Self {
        self.clone()
    }
}

impl SignIn for Target {
    fn new_user(&self, email: &str) -> impl Future<Output = anyhow::Result<User>> + Send {
        Target::new_user(self, email)
    }
    fn password(&self, email: &str) -> impl Future<Output = anyhow::Result<String>> + Send {
        Target::password(self, email)
    }
    fn totp(&self, login: &str, code: &str) -> impl Future<Output = anyhow::Result<String>> + Send {
        Target::totp(self, login, code)
    }
    fn for_user(&self, user: &User) -> Self {
        match &user.address {
            Some(address) => self.from_address(address),
            None => self.clone(),
        }
    }
}

/// The password every generated user has.
pub const PASSWORD: &str = "violet-tangerine-harbour-42";

/// An authledger reached over HTTP.
#[derive(Clone)]
pub struct Target {
    base: String,
    http: reqwest::Client,
    inbox: Option<Arc<Inbox>>,
    /// Sent as `X-Forwarded-For`, so a server that trusts this machine as
    /// its proxy sees this client at that address.
    forwarded_for: Option<String>,
    /// The device token every account signs in with, as one API client
    /// that keeps it: the benchmark's sign-ins come from a known device.
    device: String,
}

/// Confirms a new account's address as its owner would from the mail: the
/// confirmation link's reference from the event log, made into its token
/// with the server key (what the mail worker does), without waiting for
/// the mail.
pub struct Inbox {
    pool: sqlx::PgPool,
    keyring: Arc<authledger::keys::Keyring>,
    tokens: authledger::tokens::TokenCodec,
}

impl Inbox {
    pub fn new(pool: sqlx::PgPool, key: &authledger::keys::MasterKey) -> Self {
        let keyring = Arc::new(authledger::keys::Keyring::single(key));
        Self {
            pool,
            tokens: authledger::tokens::TokenCodec::new(keyring.clone()),
            keyring,
        }
    }

    /// The account whose address `email` is, found as the server finds it.
    pub async fn user_id(&self, email: &str) -> anyhow::Result<uuid::Uuid> {
        let email = authledger_aggregates::Email::parse(email)?;
        let claimant = authledger::store::claimant(
            &self.pool,
            &self.keyring.blind_indexes(&email),
            authledger_aggregates::Clock::now(&authledger::services::SystemClock),
        )
        .await?;
        let Some(authledger::store::Claimant::Account(user)) = claimant else {
            bail!("no account has {email}");
        };
        Ok(user)
    }

    /// The token of the newest confirmation link mailed to `email`.
    async fn confirmation(&self, email: &str) -> anyhow::Result<String> {
        let user = self.user_id(email).await?;
        let link: serde_json::Value = sqlx::query_scalar(
            "SELECT payload -> 'EmailVerificationRequested' -> 'link' FROM events
              WHERE aggregate_id = $1 AND event_type = 'EmailVerificationRequested'
              ORDER BY sequence DESC LIMIT 1",
        )
        .bind(user.to_string())
        .fetch_one(&self.pool)
        .await
        .context("the confirmation link's event")?;
        let reference: authledger_aggregates::Reference = serde_json::from_value(link)?;
        Ok(self.tokens.encode(
            authledger::tokens::TokenKind::EmailVerification,
            user,
            &reference,
        ))
    }
}

/// An authenticator app: one code per 30-second step, never a step twice
/// (the server refuses a replayed step), the next step early within the
/// server's one-step skew.
pub struct Authenticator {
    totp: Totp,
    last_step: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator {
    pub fn from_uri(uri: &str) -> anyhow::Result<Self> {
        Ok(Self {
            totp: Totp::from_url(uri).map_err(|e| anyhow::anyhow!("otpauth URI: {e:?}"))?,
            last_step: 0,
        })
    }

    /// A code no earlier sign-in used, if one is valid now.
    pub fn next_code(&mut self) -> Option<String> {
        let current = unix_now() / 30;
        let step = (self.last_step + 1).max(current);
        if step > current + 1 {
            return None;
        }
        self.last_step = step;
        Some(self.totp.generate(step * 30).to_string())
    }

    /// A code that is certainly wrong now.
    pub fn wrong_code(&self) -> String {
        let current = unix_now() / 30;
        let near: Vec<String> = (current.saturating_sub(2)..=current + 2)
            .map(|step| self.totp.generate(step * 30).to_string())
            .collect();
        (0..1_000_000u32)
            .map(|n| format!("{n:06}"))
            .find(|code| !near.contains(code))
            .unwrap_or_default()
    }
}

pub struct User {
    pub email: String,
    pub authenticator: Authenticator,
    pub recovery_code: String,
    /// Where this user signs in from, through a trusted proxy; by default
    /// the target's own address.
    pub address: Option<String>,
}

/// A user with an open login attempt.
pub struct Attempt {
    pub user: User,
    pub login_token: String,
}

/// A user with a live session.
pub struct SignedIn {
    pub user: User,
    pub session_token: String,
}

impl Target {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(512)
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
            inbox: None,
            forwarded_for: None,
            // 43 characters a device token may hold (hex is base64url too).
            device: format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )[..43]
                .to_owned(),
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same target, reached as if from `address` through a trusted proxy.
    pub fn from_address(&self, address: &str) -> Self {
        Self {
            forwarded_for: Some(address.to_owned()),
            ..self.clone()
        }
    }

    /// A wrong password for `email`; answers the status, whatever it is.
    pub async fn guess(&self, email: &str) -> anyhow::Result<u16> {
        let mut request = self
            .http
            .post(format!("{}/v1/login/password", self.base))
            .json(&json!({"email": email, "password": "a-sprayed-guess-000"}));
        if let Some(address) = &self.forwarded_for {
            request = request.header("x-forwarded-for", address);
        }
        let response = request.send().await.context("POST /v1/login/password")?;
        Ok(response.status().as_u16())
    }

    /// New accounts confirm their address through `inbox`.
    pub fn with_inbox(mut self, inbox: Inbox) -> Self {
        self.inbox = Some(Arc::new(inbox));
        self
    }

    async fn call(
        &self,
        path: &str,
        body: Value,
        bearer: Option<&str>,
        want: u16,
    ) -> anyhow::Result<Value> {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(address) = &self.forwarded_for {
            request = request.header("x-forwarded-for", address);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        if status != want {
            bail!("POST {path}: {status} {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Registers `email` and confirms it (an account cannot sign in before).
    pub async fn register(&self, email: &str) -> anyhow::Result<()> {
        self.call(
            "/v1/users",
            json!({"email": email, "password": PASSWORD}),
            None,
            202,
        )
        .await?;
        let inbox = self
            .inbox
            .as_ref()
            .context("no inbox to confirm new addresses with")?;
        let token = inbox.confirmation(email).await?;
        self.call(
            "/v1/users/verify",
            json!({"token": token, "password": PASSWORD}),
            None,
            200,
        )
        .await
        .map(drop)
    }

    /// The password step; returns the login token.
    pub async fn password(&self, email: &str) -> anyhow::Result<String> {
        let answer = self
            .call(
                "/v1/login/password",
                json!({"email": email, "password": PASSWORD, "device_token": self.device}),
                None,
                200,
            )
            .await?;
        Ok(text(&answer, "login_token")?.to_owned())
    }

    pub async fn totp(&self, login_token: &str, code: &str) -> anyhow::Result<String> {
        let answer = self
            .call(
                "/v1/login/totp",
                json!({"login_token": login_token, "code": code}),
                None,
                200,
            )
            .await?;
        Ok(text(&answer, "session_token")?.to_owned())
    }

    /// A wrong code: the server answers 401 and records the failure.
    pub async fn wrong_totp(&self, login_token: &str, code: &str) -> anyhow::Result<()> {
        self.call(
            "/v1/login/totp",
            json!({"login_token": login_token, "code": code}),
            None,
            401,
        )
        .await
        .map(drop)
    }

    /// Signs in with the recovery code; returns the session and the new code.
    pub async fn recovery_code(
        &self,
        login_token: &str,
        code: &str,
    ) -> anyhow::Result<(String, String)> {
        let answer = self
            .call(
                "/v1/login/recovery-code",
                json!({"login_token": login_token, "code": code}),
                None,
                200,
            )
            .await?;
        Ok((
            text(&answer, "session_token")?.to_owned(),
            text(&answer, "recovery_code")?.to_owned(),
        ))
    }

    pub async fn email_link(&self, login_token: &str) -> anyhow::Result<()> {
        self.call(
            "/v1/login/email-link",
            json!({"login_token": login_token}),
            None,
            202,
        )
        .await
        .map(drop)
    }

    pub async fn reset_mfa(&self, session_token: &str) -> anyhow::Result<()> {
        self.call("/v1/me/mfa/reset", json!({}), Some(session_token), 200)
            .await
            .map(drop)
    }

    /// Registers `email` and signs in through enrollment, as a new user
    /// with a phone would.
    pub async fn new_user(&self, email: &str) -> anyhow::Result<User> {
        self.register(email).await?;
        let login_token = self.password(email).await?;
        let enrollment = self
            .call(
                "/v1/login/enrollment",
                json!({"login_token": login_token}),
                None,
                200,
            )
            .await?;
        let mut authenticator = Authenticator::from_uri(text(&enrollment, "otpauth_uri")?)?;
        let code = authenticator.next_code().context("a code")?;
        let confirmed = self
            .call(
                "/v1/login/enrollment/confirm",
                json!({"login_token": login_token, "code": code}),
                None,
                200,
            )
            .await?;
        Ok(User {
            email: email.to_owned(),
            authenticator,
            recovery_code: text(&confirmed, "recovery_code")?.to_owned(),
            address: None,
        })
    }

    /// `GET /v1/me` with a session: the user's own check of it.
    pub async fn me(&self, session_token: &str) -> anyhow::Result<()> {
        self.get_with_session("/v1/me", session_token).await
    }

    /// `GET /v1/me/sessions`: the user's list of their live sessions.
    pub async fn sessions(&self, session_token: &str) -> anyhow::Result<()> {
        self.get_with_session("/v1/me/sessions", session_token)
            .await
    }

    async fn get_with_session(&self, path: &str, session_token: &str) -> anyhow::Result<()> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(session_token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status().as_u16();
        let _ = response.bytes().await?;
        if status != 200 {
            bail!("GET {path}: {status}");
        }
        Ok(())
    }

    /// `POST /v1/introspect` as a relying app with `client_token`; fails
    /// unless the session is active.
    pub async fn introspect(&self, client_token: &str, session_token: &str) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/v1/introspect", self.base))
            .bearer_auth(client_token)
            .form(&[("token", session_token)])
            .send()
            .await
            .context("POST /v1/introspect")?;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status != 200 || answer["active"] != Value::Bool(true) {
            bail!("POST /v1/introspect: {status} {answer}");
        }
        Ok(())
    }

    /// How long an operator's search by the start of an address takes.
    pub async fn search_users(&self, admin_token: &str, prefix: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let response = self
            .http
            .get(format!("{}/v1/admin/users", self.base))
            .query(&[("prefix", prefix)])
            .bearer_auth(admin_token)
            .send()
            .await
            .context("GET /v1/admin/users")?;
        let status = response.status().as_u16();
        let _ = response.bytes().await?;
        if status != 200 {
            bail!("GET /v1/admin/users: {status}");
        }
        Ok(started.elapsed())
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(response) = self.http.get(format!("{}/readyz", self.base)).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("{} did not become ready", self.base);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn text<'a>(value: &'a Value, field: &str) -> anyhow::Result<&'a str> {
    value[field]
        .as_str()
        .with_context(|| format!("no {field} in {value}"))
}

/// Latencies per step of one run.
pub struct Run {
    pub name: String,
    pub clients: usize,
    pub elapsed: Duration,
    /// Completed iterations (whole flows).
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub steps: BTreeMap<&'static str, Histogram<u64>>,
}

impl Run {
    fn new(name: &str, clients: usize) -> Self {
        Self {
            name: name.to_owned(),
            clients,
            elapsed: Duration::ZERO,
            completed: 0,
            errors: 0,
            first_error: None,
            steps: BTreeMap::new(),
        }
    }

    /// Counts one finished iteration: its timings when it succeeded, its
    /// error otherwise; returns what it produced.
    fn absorb<O>(&mut self, timings: Timings, outcome: anyhow::Result<O>) -> Option<O> {
        match outcome {
            Ok(output) => {
                for (step, took) in timings {
                    self.record(step, took);
                }
                self.completed += 1;
                Some(output)
            }
            Err(error) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{error:#}"));
                None
            }
        }
    }

    fn record(&mut self, step: &'static str, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        if let Some(histogram) = self.steps.get_mut(step) {
            histogram.saturating_record(micros);
        } else if let Ok(mut histogram) = Histogram::new_with_bounds(1, 600_000_000, 3) {
            histogram.saturating_record(micros);
            self.steps.insert(step, histogram);
        }
    }

    /// Completed flows per second.
    pub fn throughput(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile of a step's latency, in milliseconds.
    pub fn quantile_ms(&self, step: &str, q: f64) -> f64 {
        self.steps
            .get(step)
            .map_or(f64::NAN, |h| h.value_at_quantile(q) as f64 / 1000.0)
    }

    /// One Markdown table row per step.
    pub fn rows(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|(step, h)| {
                format!(
                    "| {} | {} | {} | {} | {:.0}/s | {:.1} | {:.1} | {:.1} | {} |",
                    self.name,
                    step,
                    self.clients,
                    h.len(),
                    h.len() as f64 / self.elapsed.as_secs_f64().max(1e-9),
                    h.value_at_quantile(0.50) as f64 / 1000.0,
                    h.value_at_quantile(0.95) as f64 / 1000.0,
                    h.value_at_quantile(0.99) as f64 / 1000.0,
                    self.errors,
                )
            })
            .collect()
    }
}

pub const TABLE_HEADER: &str = "| scenario | step | clients | count | rate | p50 ms | p95 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|---|---|";

/// The steps one iteration took, in order.
pub type Timings = Vec<(&'static str, Duration)>;

/// Times one request.
pub async fn timed<T>(
    step: &'static str,
    timings: &mut Timings,
    request: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let outcome = request.await;
    timings.push((step, started.elapsed()));
    outcome
}

/// Runs `work` on each item with `clients` concurrent clients until the
/// items run out or `limit` passes; returns the run and what each finished
/// item became.
pub async fn drive<T, O, F, Fut>(
    name: &str,
    clients: usize,
    limit: Duration,
    items: Vec<T>,
    work: F,
) -> (Run, Vec<O>)
where
    T: Send + 'static,
    O: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (Timings, anyhow::Result<O>)> + Send,
{
    let queue = Arc::new(Mutex::new(VecDeque::from(items)));
    let work = Arc::new(work);
    let started = Instant::now();
    let deadline = started + limit;
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (queue, work) = (queue.clone(), work.clone());
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            while Instant::now() < deadline {
                let Some(item) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                    break;
                };
                results.push(work(item).await);
            }
            results
        }));
    }
    let mut run = Run::new(name, clients);
    let mut outputs = Vec::new();
    for task in tasks {
        for (timings, outcome) in task.await.unwrap_or_default() {
            outputs.extend(run.absorb(timings, outcome));
        }
    }
    run.elapsed = started.elapsed();
    (run, outputs)
}

/// Creates `count` enrolled users named `<prefix>-<n>@example.com`.
pub async fn new_users<S: SignIn>(
    target: &S,
    prefix: &str,
    count: usize,
    clients: usize,
) -> anyhow::Result<Vec<User>> {
    let emails: Vec<String> = (0..count)
        .map(|n| format!("{prefix}-{n}@example.com"))
        .collect();
    let t = target.clone();
    let (run, users) = drive(
        "setup",
        clients,
        Duration::from_secs(3600),
        emails,
        move |email| {
            let t = t.clone();
            async move { (Vec::new(), t.new_user(&email).await) }
        },
    )
    .await;
    if let Some(error) = run.first_error {
        bail!("creating users: {} failed, first: {error}", run.errors);
    }
    Ok(users)
}

/// Opens a login attempt for each user (the password step, untimed).
pub async fn open_attempts<S: SignIn>(
    target: &S,
    users: Vec<User>,
    clients: usize,
) -> anyhow::Result<Vec<Attempt>> {
    let t = target.clone();
    let (run, attempts) = drive(
        "setup",
        clients,
        Duration::from_secs(3600),
        users,
        move |user| {
            let t = t.clone();
            async move {
                let outcome = t.password(&user.email).await;
                (
                    Vec::new(),
                    outcome.map(|login_token| Attempt { user, login_token }),
                )
            }
        },
    )
    .await;
    if let Some(error) = run.first_error {
        bail!("opening attempts: {} failed, first: {error}", run.errors);
    }
    Ok(attempts)
}

/// Full sign-in, password then TOTP, for `limit`. Each user signs in at most
/// once per 30-second step, as with a real phone; users whose next code is
/// not valid yet wait their turn.
pub async fn full_sign_in<S: SignIn>(
    target: &S,
    users: Vec<User>,
    clients: usize,
    limit: Duration,
) -> (Run, Vec<User>) {
    let pool = Arc::new(Mutex::new(VecDeque::from(users)));
    let started = Instant::now();
    let deadline = started + limit;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (pool, t) = (pool.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let mut results: Vec<(Timings, anyhow::Result<()>)> = Vec::new();
            while Instant::now() < deadline {
                let taken = pool.lock().ok().and_then(|mut p| {
                    let ready = p.iter().position(|u| {
                        let current = unix_now() / 30;
                        u.authenticator.last_step < current + 1
                    })?;
                    p.remove(ready)
                });
                let Some(mut user) = taken else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let t = t.for_user(&user);
                let mut timings = Vec::new();
                let flow_started = Instant::now();
                let outcome = async {
                    let login = timed("password", &mut timings, t.password(&user.email)).await?;
                    let code = user.authenticator.next_code().context("a fresh code")?;
                    timed("totp", &mut timings, t.totp(&login, &code)).await?;
                    Ok(())
                }
                .await;
                timings.push(("sign-in", flow_started.elapsed()));
                results.push((timings, outcome));
                if let Ok(mut p) = pool.lock() {
                    p.push_back(user);
                }
            }
            results
        }));
    }
    let mut run = Run::new("full sign-in", clients);
    for task in tasks {
        for (timings, outcome) in task.await.unwrap_or_default() {
            run.absorb(timings, outcome);
        }
    }
    run.elapsed = started.elapsed();
    let users = pool
        .lock()
        .map(|mut p| p.drain(..).collect())
        .unwrap_or_default();
    (run, users)
}

/// The second factor alone, on attempts opened beforehand.
pub async fn second_factor<S: SignIn>(
    target: &S,
    attempts: Vec<Attempt>,
    clients: usize,
    limit: Duration,
) -> (Run, Vec<SignedIn>) {
    let t = target.clone();
    drive(
        "second factor",
        clients,
        limit,
        attempts,
        move |mut attempt| {
            let t = t.clone();
            async move {
                let mut timings = Vec::new();
                let Some(code) = attempt.user.authenticator.next_code() else {
                    return (
                        timings,
                        Err(anyhow::anyhow!("no fresh code for {}", attempt.user.email)),
                    );
                };
                let outcome =
                    timed("totp", &mut timings, t.totp(&attempt.login_token, &code)).await;
                (
                    timings,
                    outcome.map(|session_token| SignedIn {
                        user: attempt.user,
                        session_token,
                    }),
                )
            }
        },
    )
    .await
}

/// "Try another method": the recovery code, on attempts opened beforehand.
pub async fn recovery_code(
    target: &Target,
    attempts: Vec<Attempt>,
    clients: usize,
    limit: Duration,
) -> (Run, Vec<SignedIn>) {
    let t = target.clone();
    drive(
        "recovery code",
        clients,
        limit,
        attempts,
        move |mut attempt| {
            let t = t.clone();
            async move {
                let mut timings = Vec::new();
                let outcome = timed(
                    "recovery-code",
                    &mut timings,
                    t.recovery_code(&attempt.login_token, &attempt.user.recovery_code),
                )
                .await;
                let signed = outcome.map(|(session_token, new_code)| {
                    attempt.user.recovery_code = new_code;
                    SignedIn {
                        user: attempt.user,
                        session_token,
                    }
                });
                (timings, signed)
            }
        },
    )
    .await
}

/// "Reset my MFA" from fresh sessions.
pub async fn mfa_reset(
    target: &Target,
    sessions: Vec<SignedIn>,
    clients: usize,
    limit: Duration,
) -> (Run, Vec<User>) {
    let t = target.clone();
    drive("mfa reset", clients, limit, sessions, move |signed| {
        let t = t.clone();
        async move {
            let mut timings = Vec::new();
            let outcome = timed("reset", &mut timings, t.reset_mfa(&signed.session_token)).await;
            (timings, outcome.map(|()| signed.user))
        }
    })
    .await
}

/// Email-link requests; returns each address with when its request was
/// sent, to match against the SMTP server's receipt times.
pub async fn email_links(
    target: &Target,
    attempts: Vec<Attempt>,
    clients: usize,
) -> (Run, Vec<(String, SystemTime)>) {
    let t = target.clone();
    drive(
        "email link",
        clients,
        Duration::from_secs(3600),
        attempts,
        move |attempt| {
            let t = t.clone();
            async move {
                let mut timings = Vec::new();
                let sent = SystemTime::now();
                let outcome =
                    timed("request", &mut timings, t.email_link(&attempt.login_token)).await;
                (timings, outcome.map(|()| (attempt.user.email, sent)))
            }
        },
    )
    .await
}

/// How long one argon2id verification takes at these parameters, the
/// median of `samples`, with the server's kernel (`argon2-rust`, the fastest
/// `benches/argon2.rs` measured) reusing its work area as the server does.
pub fn argon2_verify_time(
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    samples: usize,
) -> anyhow::Result<Duration> {
    let mut hasher = authledger::services::argon2id_hasher(memory_kib, iterations, parallelism)?;
    let salt = b"authledger-bench";
    let mut expected = [0u8; 32];
    hasher
        .hash_into(PASSWORD.as_bytes(), salt, &mut expected)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut times: Vec<Duration> = (0..samples.max(1))
        .map(|_| {
            let started = Instant::now();
            let mut out = [0u8; 32];
            let verified = hasher
                .hash_into(PASSWORD.as_bytes(), salt, &mut out)
                .is_ok()
                && out == expected;
            (verified, started.elapsed())
        })
        .filter_map(|(ok, took)| ok.then_some(took))
        .collect();
    times.sort();
    times
        .get(times.len() / 2)
        .copied()
        .context("no verification succeeded")
}

/// Verifications per second with `threads` threads verifying at once, each
/// `per_thread` times: what the cores really give argon2 together (two
/// hyperthreads of one core, or a shared memory bus, give less than twice
/// one). Each thread's area is made and touched before the clock starts.
pub fn argon2_parallel_rate(
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    threads: usize,
    per_thread: usize,
) -> anyhow::Result<f64> {
    let threads = threads.max(1);
    let per_thread = per_thread.max(1);
    let ready = std::sync::Barrier::new(threads + 1);
    let (started, outcomes) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let ready = &ready;
                scope.spawn(move || {
                    let hash = |hasher: &mut argon2_rust::Hasher| {
                        let mut out = [0u8; 32];
                        hasher
                            .hash_into(PASSWORD.as_bytes(), b"authledger-bench", &mut out)
                            .map_err(|e| anyhow::anyhow!("{e}"))
                    };
                    // Made and touched before the clock starts; a failure
                    // is told after the barrier, which every thread reaches.
                    let made =
                        authledger::services::argon2id_hasher(memory_kib, iterations, parallelism)
                            .and_then(|mut hasher| hash(&mut hasher).map(|()| hasher));
                    ready.wait();
                    let mut hasher = made?;
                    for _ in 0..per_thread {
                        hash(&mut hasher)?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        ready.wait();
        let started = Instant::now();
        let outcomes: Vec<anyhow::Result<()>> = workers
            .into_iter()
            .map(|w| match w.join() {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!("a hashing thread panicked")),
            })
            .collect();
        (started, outcomes)
    });
    for outcome in outcomes {
        outcome?;
    }
    Ok((threads * per_thread) as f64 / started.elapsed().as_secs_f64())
}

/// What a session check asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionCheck<'a> {
    /// The user's own `GET /v1/me`.
    Me,
    /// The user's list of their sessions, `GET /v1/me/sessions`.
    List,
    /// A relying app's `POST /v1/introspect` with its client token.
    Introspect(&'a str),
}

/// Checks of live sessions for `limit`, each client picking the sessions
/// in turn, as `check` says.
pub async fn session_checks(
    target: &Target,
    sessions: &[String],
    check: SessionCheck<'_>,
    clients: usize,
    limit: Duration,
) -> Run {
    let (name, step) = match check {
        SessionCheck::Me => ("own session", "me"),
        SessionCheck::List => ("session list", "sessions"),
        SessionCheck::Introspect(_) => ("introspection", "introspect"),
    };
    // More items than any run can use, so the clock ends it.
    let items: Vec<String> = sessions.iter().cycle().take(2_000_000).cloned().collect();
    let t = target.clone();
    // Owned, for the clients' tasks.
    let client = match check {
        SessionCheck::Introspect(client) => Some(client.to_owned()),
        SessionCheck::Me | SessionCheck::List => None,
    };
    let list = check == SessionCheck::List;
    let (run, _) = drive(name, clients, limit, items, move |session| {
        let (t, client) = (t.clone(), client.clone());
        async move {
            let mut timings = Vec::new();
            let outcome = match &client {
                Some(client) => timed(step, &mut timings, t.introspect(client, &session)).await,
                None if list => timed(step, &mut timings, t.sessions(&session)).await,
                None => timed(step, &mut timings, t.me(&session)).await,
            };
            (timings, outcome)
        }
    })
    .await;
    run
}
