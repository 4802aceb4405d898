use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use authledger::app::App;
use authledger::config::Config;
use authledger::keys::MasterKey;
use authledger::services::AdjustableClock;
use authledger::startup::{wire, Application, Pipeline};
use authledger::tokens::TokenCodec;
pub use authledger::tokens::TokenKind;
use authledger_aggregates::Clock;
use authledger_aggregates::Reference;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use totp_rs::Totp;
use uuid::Uuid;

/// Everything every test's server logged, to search for leaked secrets.
pub fn captured_logs() -> String {
    let buffer = log_buffer();
    let bytes = buffer.lock().unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("debug,sqlx=info,hyper=info,h2=info,reqwest=info")
            .with_ansi(false)
            .with_writer(move || SharedWriter(writer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub const PASSWORD: &str = "violet-tangerine-harbour-42";
pub const AUDITOR_TOKEN: &str = "test-auditor-credential-7f3a";
pub const ADMIN_TOKEN: &str = "test-admin-credential-91c2";

pub struct TestApp {
    pub config: Config,
    /// The use cases the server runs, for what a background task does
    /// (the MFA reset sweep).
    pub app: App,
    /// The server key, for child processes and for deriving tokens.
    pub key: MasterKey,
    /// The server's clock: tests move it instead of sleeping.
    pub clock: Arc<AdjustableClock>,
    /// The read models, the email relay and the worker, on this test's own
    /// RabbitMQ names; tests drive them with `run_once`.
    pub pipeline: Arc<Pipeline>,
    pub base: String,
    /// `/metrics`'s own address, when the test configured one.
    pub metrics_base: Option<String>,
    pub client: reqwest::Client,
    pub pool: PgPool,
    /// Derives the tokens a mailed link would carry, as the mail worker does.
    pub tokens: TokenCodec,
}

pub async fn spawn_app(pool: PgPool) -> TestApp {
    spawn_app_with(pool, |_| {}).await
}

/// Starts the server on a free port against `pool`, a fresh database with
/// the migrations applied.
pub async fn spawn_app_with(pool: PgPool, adjust: impl FnOnce(&mut Config)) -> TestApp {
    log_buffer();
    let key = MasterKey::generate();
    let mut config = Config::defaults().expect("the configuration");
    config.secret_key = Some(key.clone());
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.hashing.hashing_threads = Some(2);
    config.mail.amqp_prefix = Some(format!("test-{}", Uuid::new_v4().simple()));
    config.mail.queue_expiry = Some(Duration::from_secs(600));
    config.auditor_tokens = vec![AUDITOR_TOKEN.into()];
    config.admin_tokens = vec![ADMIN_TOKEN.into()];
    adjust(&mut config);
    let clock = Arc::new(AdjustableClock::default());
    let (app, pipeline) = wire(&config, pool.clone(), clock.clone()).expect("wire the app");
    let server = Application::build(&config, app.clone())
        .await
        .expect("build the app");
    let addr = server.local_addr().unwrap();
    let metrics_base = server
        .metrics_addr()
        .map(|addr| format!("http://{}", addr.unwrap()));
    tokio::spawn(server.run_until(std::future::pending()));
    let tokens = TokenCodec::new(Arc::new(
        config
            .keyring(authledger::config::DevKey::MustExist)
            .expect("the keys"),
    ));
    let key = config
        .secret_key
        .clone()
        .or_else(|| config.secret_keys.first().cloned())
        .unwrap_or(key);
    TestApp {
        config,
        app,
        key,
        clock,
        pipeline: Arc::new(pipeline),
        base: format!("http://{addr}"),
        metrics_base,
        client: reqwest::Client::new(),
        pool,
        tokens,
    }
}

pub fn unique_email() -> String {
    format!("user-{}@example.com", Uuid::new_v4().simple())
}

/// An authenticator app: holds the secret from the enrollment URI and never
/// shows the same time step's code twice (the server would refuse it). It
/// reads the server's clock, as a phone in sync would.
pub struct Device {
    pub totp: Totp,
    clock: Arc<AdjustableClock>,
    last_step: Option<u64>,
}

impl Device {
    pub fn from_uri(uri: &str, clock: &Arc<AdjustableClock>) -> Self {
        Self {
            totp: Totp::from_url(uri).expect("a valid otpauth URI"),
            clock: clock.clone(),
            last_step: None,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.clock.now().timestamp()).unwrap()
    }

    /// The same phone, now in sync with another server on the same
    /// database: that server's clock is brought to this phone's time.
    pub fn sync_with(&mut self, clock: &Arc<AdjustableClock>) {
        clock.advance(self.clock.now() - clock.now());
        self.clock = clock.clone();
    }

    /// The code of the next unused step: the current one, or the one after
    /// it (inside the server's one-step skew). When both were used, time
    /// moves on to the next step, as it would for a user who waits.
    pub async fn next_code(&mut self) -> String {
        let current = self.now() / 30;
        let step = self
            .last_step
            .map_or(current, |last| (last + 1).max(current));
        if step > current + 1 {
            let wait = (step - 1) * 30 - self.now() + 1;
            self.clock
                .advance(chrono::Duration::seconds(i64::try_from(wait).unwrap()));
        }
        self.last_step = Some(step);
        self.totp.generate(step * 30).to_string()
    }
}

pub struct SignedIn {
    pub email: String,
    pub session_token: String,
    pub recovery_code: String,
    pub device: Device,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Posts and asserts a 200, returning the JSON answer.
    pub async fn post_ok(&self, path: &str, body: Value) -> Value {
        let response = self.post(path, body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    pub async fn post_with_session(
        &self,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.post(self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn get_with(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn me(&self, token: &str) -> Response {
        self.client
            .get(self.url("/v1/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Registers `email` and verifies it, as its owner would from the mail.
    pub async fn register(&self, email: &str) {
        self.register_unverified(email, PASSWORD).await;
        let user = self.user_id(email).await;
        let link = *self
            .references(user, "EmailVerificationRequested")
            .await
            .last()
            .expect("a verification link");
        let token = self
            .tokens
            .encode(TokenKind::EmailVerification, user, &link);
        self.post_ok(
            "/v1/users/verify",
            json!({"token": token, "password": PASSWORD}),
        )
        .await;
    }

    /// Registers `email` without verifying it.
    pub async fn register_unverified(&self, email: &str, password: &str) {
        let response = self
            .post("/v1/users", json!({"email": email, "password": password}))
            .await;
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "{}",
            response.text().await.unwrap()
        );
    }

    /// The password step, which must succeed; returns its answer.
    pub async fn password_step(&self, email: &str) -> Value {
        self.password_step_with(email, PASSWORD).await
    }

    pub async fn password_step_with(&self, email: &str, password: &str) -> Value {
        self.post_ok(
            "/v1/login/password",
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Registers a new user and signs in through enrollment.
    pub async fn signed_up(&self) -> SignedIn {
        let email = unique_email();
        self.register(&email).await;
        let login = self.password_step(&email).await;
        assert_eq!(login["next"], "enroll");
        self.enroll(&email, login["login_token"].as_str().unwrap())
            .await
    }

    pub async fn enroll(&self, email: &str, login_token: &str) -> SignedIn {
        let enrollment: Value = self
            .post("/v1/login/enrollment", json!({"login_token": login_token}))
            .await
            .json()
            .await
            .unwrap();
        let mut device = Device::from_uri(enrollment["otpauth_uri"].as_str().unwrap(), &self.clock);
        let code = device.next_code().await;
        let confirmed = self
            .post_ok(
                "/v1/login/enrollment/confirm",
                json!({"login_token": login_token, "code": code}),
            )
            .await;
        SignedIn {
            email: email.to_owned(),
            session_token: confirmed["session_token"].as_str().unwrap().to_owned(),
            recovery_code: confirmed["recovery_code"].as_str().unwrap().to_owned(),
            device,
        }
    }

    /// Password and TOTP; returns the session token.
    pub async fn sign_in_with_totp(&self, user: &mut SignedIn) -> String {
        self.sign_in_with_totp_using(user, PASSWORD).await
    }

    pub async fn sign_in_with_totp_using(&self, user: &mut SignedIn, password: &str) -> String {
        let login = self.password_step_with(&user.email, password).await;
        assert_eq!(login["next"], "totp");
        let code = user.device.next_code().await;
        let response = self
            .post(
                "/v1/login/totp",
                json!({"login_token": login["login_token"], "code": code}),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{}",
            response.text().await.unwrap()
        );
        let session: Value = response.json().await.unwrap();
        session["session_token"].as_str().unwrap().to_owned()
    }

    pub async fn email_link_references(&self, user: Uuid) -> Vec<Reference> {
        self.references(user, "EmailLinkRequested").await
    }

    /// The link references of a user's events of `event_type`, oldest
    /// first: what the mail worker turns into tokens.
    pub async fn references(&self, user: Uuid, event_type: &str) -> Vec<Reference> {
        let payloads: Vec<(sqlx::types::Json<Value>,)> = sqlx::query_as(
            "SELECT payload FROM events WHERE aggregate_id = $1 AND event_type = $2 ORDER BY sequence",
        )
        .bind(user.to_string())
        .bind(event_type)
        .fetch_all(&self.pool)
        .await
        .unwrap();
        payloads
            .into_iter()
            .map(|(payload,)| {
                let fields = &payload.0[event_type];
                let reference = fields
                    .get("link")
                    .or_else(|| fields.get("denial"))
                    .cloned()
                    .expect("a link reference");
                serde_json::from_value(reference).unwrap()
            })
            .collect()
    }

    /// Signs in by email link (an `aal1` session); returns its token.
    pub async fn sign_in_with_email_link(&self, email: &str) -> String {
        self.sign_in_with_email_link_using(email, PASSWORD).await
    }

    pub async fn sign_in_with_email_link_using(&self, email: &str, password: &str) -> String {
        let login = self.password_step_with(email, password).await;
        let requested = self
            .post(
                "/v1/login/email-link",
                json!({"login_token": login["login_token"]}),
            )
            .await;
        assert_eq!(requested.status(), StatusCode::ACCEPTED);
        let link = self
            .newest_link(email, "EmailLinkRequested", TokenKind::EmailLink)
            .await;
        let session = self
            .post_ok("/v1/login/email-link/redeem", json!({"token": link}))
            .await;
        session["session_token"].as_str().unwrap().to_owned()
    }

    /// Runs the MFA reset sweep as a server would, once the audit index
    /// has caught up (it nominates the candidates).
    pub async fn sweep_resets(&self) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            self.pipeline
                .audit_index
                .catch_up()
                .await
                .expect("audit index");
            if projection_lag(&self.pool, "audit_index").await == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the audit index did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.app.complete_due_mfa_resets().await.expect("sweep")
    }

    /// The token of the newest link of `kind` that `event_type` recorded.
    pub async fn newest_link(&self, email: &str, event_type: &str, kind: TokenKind) -> String {
        let user = self.user_id(email).await;
        let link = *self
            .references(user, event_type)
            .await
            .last()
            .expect("a link");
        self.tokens.encode(kind, user, &link)
    }

    /// The account whose address `email` is, through the claims, as the
    /// server finds it.
    pub async fn resolve(&self, email: &str) -> Option<Uuid> {
        self.app.resolve_user(email).await.unwrap()
    }

    pub async fn user_id(&self, email: &str) -> Uuid {
        self.resolve(email)
            .await
            .unwrap_or_else(|| panic!("no account has {email}"))
    }

    pub async fn resolves(&self, email: &str) -> bool {
        self.resolve(email).await.is_some()
    }

    /// A user's history as an auditor reads it, personal data opened.
    pub async fn audit_events(&self, user: Uuid) -> Vec<Value> {
        let history: Value = self
            .client
            .get(self.url(&format!("/v1/audit/users/{user}/events")))
            .bearer_auth(AUDITOR_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        history["events"].as_array().cloned().unwrap_or_default()
    }

    pub async fn post_session_json(&self, path: &str, token: &str, body: Value) -> Response {
        self.post_with_session(path, token, Some(body)).await
    }

    pub async fn delete_with_session(&self, path: &str, token: &str, body: Value) -> Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// An admin command on `path` with `reason`, as an administrator sends it.
    pub async fn admin_post(&self, path: &str, reason: &str) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "reason": reason }))
            .send()
            .await
            .unwrap()
    }

    pub fn link_token(&self, user: Uuid, link: &Reference) -> String {
        self.tokens.encode(TokenKind::EmailLink, user, link)
    }
}

/// Asserts a problem+json answer with the given status and slug.
pub async fn assert_problem(response: Response, status: StatusCode, slug: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(
        problem["type"],
        format!("urn:authledger:problem:{slug}"),
        "{problem}"
    );
    assert_eq!(problem["status"], status.as_u16());
    problem
}

pub const MAILDEV_API: &str = "http://127.0.0.1:1080/api/email";

impl TestApp {
    /// Relays every pending event and sends every queued mail, as the
    /// background tasks would.
    pub async fn deliver_mail(&self) {
        self.relay_everything().await;
        self.pipeline.worker.run_once().await.expect("worker");
    }

    /// Brings the users read model up to every event committed so far,
    /// for the same reason as `grow_tree`.
    pub async fn project_users(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            self.pipeline.users.catch_up().await.unwrap();
            if projection_lag(&self.pool, "users").await == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the users model did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `/metrics` as a scrape reads it.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    /// This test's RabbitMQ prefix, for a child process.
    pub fn amqp_prefix(&self) -> &str {
        self.config
            .mail
            .amqp_prefix
            .as_deref()
            .expect("the prefix is set")
    }

    /// Grows the Merkle tree over every event committed so far. One
    /// catch-up may stop short: the tree reads only below the oldest
    /// snapshot of the whole Postgres server, which another test's open
    /// transaction holds back for a moment.
    pub async fn grow_tree(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            self.pipeline.tree.catch_up().await.unwrap();
            if projection_lag(&self.pool, "merkle_tree").await == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the tree did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs the relay until it has published every event. One `catch_up`
    /// is not enough: another test's open transaction on this server can
    /// hold the read horizon back for a moment. A failed batch is tried
    /// again, as the relay's own task does: RabbitMQ just started again (by
    /// a fault test) can refuse a queue while it recovers its queues.
    pub async fn relay_everything(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut failed = None;
        loop {
            match self.pipeline.relay.catch_up().await {
                Ok(_) if projection_lag(&self.pool, "email_relay").await == 0 => return,
                Ok(_) => {}
                Err(error) => failed = Some(format!("{error:#}")),
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the relay did not catch up; last failure: {failed:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Messages waiting in one of this test's queues.
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let (connection, channel) = authledger_projections::mail::connect(
            self.config.mail.amqp_url.expose(),
            &self.pipeline_topology(),
            "test-depth",
        )
        .await
        .unwrap();
        let declared = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = connection.close(200, "done".into()).await;
        declared.message_count()
    }

    /// Deletes this test's RabbitMQ queues and exchanges.
    pub async fn remove_topology(&self) {
        let (connection, channel) = authledger_projections::mail::connect(
            self.config.mail.amqp_url.expose(),
            &self.pipeline_topology(),
            "test-teardown",
        )
        .await
        .unwrap();
        self.pipeline_topology().delete(&channel).await.unwrap();
        let _ = connection.close(200, "done".into()).await;
    }

    pub fn pipeline_topology(&self) -> authledger_projections::mail::Topology {
        self.config.mail.topology().expect("the prefix is set")
    }
}

/// Waits until MailDev holds at least `count` mails for `address` (it
/// stores a mail a moment after the SMTP exchange), then returns them all.
pub async fn wait_for_mails(address: &str, count: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mails = mails_to(address).await;
        if mails.len() >= count || std::time::Instant::now() > deadline {
            return mails;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every mail MailDev holds for `address`, oldest first.
pub async fn mails_to(address: &str) -> Vec<Value> {
    let all: Vec<Value> = reqwest::get(MAILDEV_API)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    all.into_iter()
        .filter(|mail| {
            mail["to"]
                .as_array()
                .is_some_and(|to| to.iter().any(|t| t["address"].as_str() == Some(address)))
        })
        .collect()
}

/// The token of the link to `path_and_query` in a mail's text.
pub fn token_in(mail: &Value, path_and_query: &str) -> String {
    let text = mail["text"].as_str().unwrap();
    let link = text
        .split_whitespace()
        .find(|word| word.contains(path_and_query))
        .unwrap_or_else(|| panic!("no link to {path_and_query} in {text}"));
    link.split_once("token=").unwrap().1.to_owned()
}

/// The sign-in link in a mail's text.
pub fn link_in(mail: &Value) -> String {
    let text = mail["text"].as_str().unwrap();
    text.split_whitespace()
        .find(|word| word.contains("/v1/login/email-link?token="))
        .expect("a link in the mail")
        .to_owned()
}

/// The URL of the test's own database, for a child process.
pub async fn database_url(pool: &PgPool) -> String {
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let base = std::env::var("DATABASE_URL").unwrap();
    format!("{}/{database}", base.rsplit_once('/').unwrap().0)
}

/// Events the projection `name` has not applied yet (all of them before it
/// first ran).
pub async fn projection_lag(pool: &PgPool, name: &str) -> i64 {
    authledger_projections::status(pool)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == name)
        .map_or(i64::MAX, |p| p.lag_events)
}

/// A message as a subscriber of the integration events takes it.
#[derive(Debug, Clone)]
pub struct PublishedEvent {
    pub routing_key: String,
    pub message_id: Option<String>,
    pub content_type: Option<String>,
    pub persistent: bool,
    pub body: Value,
    /// The body as it came, to search for what must not be in it.
    pub raw: String,
}

impl TestApp {
    /// Runs the integration events' projector until it has published
    /// every event, as `relay_everything` does for the relay.
    pub async fn publish_events(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            self.pipeline
                .integration
                .catch_up()
                .await
                .expect("integration events");
            if projection_lag(&self.pool, authledger_projections::integration::NAME).await == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the integration events did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Declares a queue of this test's own and binds it to the integration
    /// events' exchange with `pattern`, as a subscribing service would: a
    /// durable quorum queue, so that it keeps its messages across a restart
    /// of the broker.
    pub async fn subscribe_to_events(&self, pattern: &str) -> String {
        let topology = self.pipeline_topology();
        let queue = format!("{}.subscriber", topology.events_exchange);
        let (connection, channel) = authledger_projections::mail::connect(
            self.config.mail.amqp_url.expose(),
            &topology,
            "test-subscriber",
        )
        .await
        .unwrap();
        let mut arguments = lapin::types::FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            lapin::types::AMQPValue::LongString("quorum".into()),
        );
        arguments.insert(
            "x-expires".into(),
            lapin::types::AMQPValue::LongLongInt(600_000),
        );
        channel
            .queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                arguments,
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                queue.as_str().into(),
                topology.events_exchange.as_str().into(),
                pattern.into(),
                lapin::options::QueueBindOptions::default(),
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = connection.close(200, "done".into()).await;
        queue
    }

    /// Takes every message waiting in `queue`, oldest first.
    pub async fn take_events(&self, queue: &str) -> Vec<PublishedEvent> {
        let (connection, channel) = authledger_projections::mail::connect(
            self.config.mail.amqp_url.expose(),
            &self.pipeline_topology(),
            "test-take",
        )
        .await
        .unwrap();
        let mut taken = Vec::new();
        while let Some(message) = channel
            .basic_get(queue.into(), lapin::options::BasicGetOptions::default())
            .await
            .unwrap()
        {
            let delivery = &message.delivery;
            let raw = String::from_utf8(delivery.data.clone()).unwrap();
            taken.push(PublishedEvent {
                routing_key: delivery.routing_key.to_string(),
                message_id: delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.to_string()),
                content_type: delivery
                    .properties
                    .content_type()
                    .as_ref()
                    .map(|t| t.to_string()),
                persistent: *delivery.properties.delivery_mode() == Some(2),
                body: serde_json::from_str(&raw).unwrap(),
                raw,
            });
            delivery
                .ack(lapin::options::BasicAckOptions::default())
                .await
                .unwrap();
        }
        let _ = connection.close(200, "done".into()).await;
        taken
    }

    pub async fn delete_queue(&self, queue: &str) {
        let (connection, channel) = authledger_projections::mail::connect(
            self.config.mail.amqp_url.expose(),
            &self.pipeline_topology(),
            "test-delete",
        )
        .await
        .unwrap();
        channel
            .queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default())
            .await
            .unwrap();
        let _ = connection.close(200, "done".into()).await;
    }
}

impl TestApp {
    /// What `audit verify` finds in this test's log, with the server's
    /// keys and no saved head.
    pub async fn verify_log(&self) -> authledger::transparency::LogCheck {
        authledger::transparency::verify_log(
            &self.pool,
            &self
                .config
                .keyring(authledger::config::DevKey::MustExist)
                .unwrap(),
            &[],
            |_| {},
        )
        .await
        .unwrap()
    }
}
