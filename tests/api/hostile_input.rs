//! Hostile input on every route, as an anonymous caller, a user, an auditor
//! and an admin: control characters, lengths past every limit, bad
//! encodings, malformed queries and paths. Every answer is a problem+json
//! 4xx (the mailed links' pages: a 4xx page); none is a 5xx. The failures
//! of a run are collected, so one run names all of them.
use authledger_aggregates::Reference;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

/// Text no field takes: control characters, C0 and C1, anywhere, and
/// lengths past every field's limit (still under the body limit).
fn hostile_text() -> Vec<(String, String)> {
    let mut texts: Vec<(String, String)> = [
        ("NUL", "\u{0}"),
        ("NUL inside", "ab\u{0}cd"),
        ("SOH", "\u{1}"),
        ("BEL", "x\u{7}"),
        ("backspace", "pass\u{8}word"),
        ("tab", "\t"),
        ("line feed", "\n"),
        ("CRLF header injection", "a@example.com\r\nBcc: x@evil.com"),
        ("terminal escape", "\u{1b}[2J\u{1b}[31mred"),
        ("DEL", "\u{7f}"),
        ("C1 padding", "\u{80}"),
        ("next line", "x\u{85}y"),
        ("C1 application", "\u{9f}"),
    ]
    .into_iter()
    .map(|(label, text)| (label.to_owned(), text.to_owned()))
    .collect();
    texts.push(("100 NULs".into(), "\u{0}".repeat(100)));
    texts.push(("10,000 letters".into(), "x".repeat(10_000)));
    texts.push(("5,000 two-byte letters".into(), "é".repeat(5_000)));
    texts.push(("3,000 emoji".into(), "😀".repeat(3_000)));
    texts.push(("a password and a NUL".into(), format!("{PASSWORD}\u{0}")));
    texts
}

/// The addresses of the issue's matrix that are refused.
const REFUSED_ADDRESSES: [&str; 12] = [
    "victim<attacker@evil.com>",
    "Victim <victim@example.com>",
    "\"quoted\"@example.com",
    "a(comment)@example.com",
    "p\u{430}ypal@example.com",
    "ali\u{200B}ce@example.com",
    "ali\u{202E}ecila@example.com",
    "ａｌｉｃｅ@example.com",
    "a,b@example.com",
    "a b@example.com",
    "<>@example.com",
    "alice@[192.0.2.1]",
];

/// A JSON value that is not a string, for every string field.
fn wrong_types() -> Vec<(String, Value)> {
    vec![
        ("a number".into(), json!(42)),
        ("an array".into(), json!(["a"])),
        ("an object".into(), json!({"a": 1})),
    ]
}

/// Raw JSON string literals that are not valid text: what a field's
/// `"value"` is replaced by, bytes and all.
fn bad_encodings() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("lone high surrogate", br#""\ud800""#.to_vec()),
        ("reversed surrogates", br#""\udc00\ud800""#.to_vec()),
        ("invalid UTF-8", b"\"\xff\xfe\"".to_vec()),
        ("overlong NUL", b"\"a\xc0\x80b\"".to_vec()),
        ("raw NUL byte", b"\"a\x00b\"".to_vec()),
        ("raw escape byte", b"\"\x1b[2J\"".to_vec()),
        ("truncated escape", br#""\u00""#.to_vec()),
    ]
}

#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Problem,
    /// A mailed link's page: HTML, for a browser.
    Page,
}

/// Who asks, by the bearer credential they send.
fn credentials(user: &SignedIn) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("anonymous", None),
        ("user", Some(user.session_token.clone())),
        ("auditor", Some(AUDITOR_TOKEN.to_owned())),
        ("admin", Some(ADMIN_TOKEN.to_owned())),
    ]
}

struct Probe<'a> {
    app: &'a TestApp,
    findings: Vec<String>,
    sent: usize,
}

enum Body {
    None,
    Json(Value),
    Raw(Vec<u8>),
}

/// One request, less who sends it.
struct Call<'p> {
    method: Method,
    path: &'p str,
    accept: Option<&'static str>,
    body: Body,
    expected: Answer,
}

impl<'p> Call<'p> {
    fn post(path: &'p str, body: Body) -> Self {
        Self {
            method: Method::POST,
            path,
            accept: None,
            body,
            expected: Answer::Problem,
        }
    }

    fn get(path: &'p str) -> Self {
        Self {
            method: Method::GET,
            path,
            accept: None,
            body: Body::None,
            expected: Answer::Problem,
        }
    }
}

impl<'a> Probe<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            findings: Vec::new(),
            sent: 0,
        }
    }

    async fn send(&mut self, what: &str, call: Call<'_>, authorization: Option<HeaderValue>) {
        let Call {
            method,
            path,
            accept,
            body,
            expected,
        } = call;
        let mut request = self.app.client.request(method.clone(), self.app.url(path));
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(bytes) => request.header(CONTENT_TYPE, "application/json").body(bytes),
        };
        let response = request.send().await.unwrap();
        self.sent += 1;
        let shown_path: String = path.chars().take(80).collect();
        if let Some(wrong) = judge(response, expected).await {
            self.findings
                .push(format!("{method} {shown_path} ({what}): {wrong}"));
        }
    }

    async fn send_as(&mut self, what: &str, call: Call<'_>, bearer: &Option<String>) {
        let authorization = bearer
            .as_ref()
            .map(|token| HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        self.send(what, call, authorization).await;
    }

    /// Fails the test with every wrong answer, and says how many were sent.
    fn assert_all_refused(self) {
        assert!(self.sent > 0);
        assert!(
            self.findings.is_empty(),
            "{} of {} hostile requests were not answered with a problem+json 4xx:\n{}",
            self.findings.len(),
            self.sent,
            self.findings.join("\n")
        );
    }
}

/// What is wrong with an answer to hostile input, if anything.
async fn judge(response: Response, expected: Answer) -> Option<String> {
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.text().await.unwrap_or_default();
    let shown: String = body.chars().take(200).collect();
    if !status.is_client_error() {
        return Some(format!("{status}: {shown}"));
    }
    match expected {
        Answer::Page if content_type.starts_with("text/html") => None,
        Answer::Problem if content_type == "application/problem+json" => {
            let problem: Value = serde_json::from_str(&body).ok()?;
            let typed = problem["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:authledger:problem:"));
            (!typed || problem["status"] != status.as_u16())
                .then(|| format!("{status}: not a problem document: {shown}"))
        }
        _ => Some(format!("{status} as {content_type:?}: {shown}")),
    }
}

/// A JSON route and a valid value for each of its fields, so that each
/// field in turn is the only one wrong.
struct JsonRoute {
    path: String,
    fields: Vec<(&'static str, Value)>,
}

fn route(path: impl Into<String>, fields: &[(&'static str, Value)]) -> JsonRoute {
    JsonRoute {
        path: path.into(),
        fields: fields.to_vec(),
    }
}

/// Every route with a JSON body, each field given a value that gets past
/// it: a live login token, tokens whose MAC is ours, the user's address.
async fn json_routes(app: &TestApp, user: &SignedIn) -> Vec<JsonRoute> {
    let user_id = app.user_id(&user.email).await;
    let login = app.password_step(&user.email).await;
    let login_token = json!(login["login_token"].as_str().unwrap());
    let link = |kind| {
        json!(app
            .tokens
            .encode(kind, user_id, &Reference::from_bytes([7; 16])))
    };
    let email = json!(user.email);
    let password = json!(PASSWORD);
    let code = json!("123456");
    let reason = json!("identity checked by phone");
    vec![
        route(
            "/v1/users",
            &[
                ("email", json!(unique_email())),
                ("password", password.clone()),
            ],
        ),
        route(
            "/v1/users/verify",
            &[
                ("token", link(TokenKind::EmailVerification)),
                ("password", password.clone()),
            ],
        ),
        route("/v1/password/forgot", &[("email", email.clone())]),
        route(
            "/v1/password/reset",
            &[
                ("token", link(TokenKind::PasswordReset)),
                ("password", json!("a-new-strong-passphrase-for-tests-91")),
            ],
        ),
        route(
            "/v1/mfa-reset/deny",
            &[("token", link(TokenKind::ResetDenial))],
        ),
        route("/v1/report", &[("token", link(TokenKind::Report))]),
        route(
            "/v1/login/password",
            &[("email", email.clone()), ("password", password.clone())],
        ),
        route(
            "/v1/login/totp",
            &[("login_token", login_token.clone()), ("code", code.clone())],
        ),
        route(
            "/v1/login/enrollment",
            &[("login_token", login_token.clone())],
        ),
        route(
            "/v1/login/enrollment/confirm",
            &[("login_token", login_token.clone()), ("code", code.clone())],
        ),
        route(
            "/v1/login/recovery-code",
            &[
                ("login_token", login_token.clone()),
                ("code", json!(user.recovery_code)),
            ],
        ),
        route(
            "/v1/login/email-link",
            &[("login_token", login_token.clone())],
        ),
        route(
            "/v1/login/email-link/redeem",
            &[("token", link(TokenKind::EmailLink))],
        ),
        route("/v1/me/mfa/reset", &[("password", password.clone())]),
        route(
            "/v1/me/password",
            &[
                ("current_password", json!("not the password at all 7")),
                (
                    "new_password",
                    json!("a-new-strong-passphrase-for-tests-91"),
                ),
            ],
        ),
        route("/v1/me/recovery-code", &[("password", password.clone())]),
        route(
            format!("/v1/admin/users/{user_id}/mfa/reset"),
            &[("reason", reason.clone())],
        ),
        route(
            format!("/v1/admin/users/{user_id}/unlock"),
            &[("reason", reason)],
        ),
    ]
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn hostile_text_in_every_json_field_is_refused_with_a_problem(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    // Past the reauthentication window, so the routes that take the
    // password again judge it instead of going ahead without it.
    app.clock.advance(chrono::Duration::minutes(16));
    let routes = json_routes(&app, &user).await;
    let mut probe = Probe::new(&app);
    for (who, bearer) in credentials(&user) {
        for route in &routes {
            for (field, _) in &route.fields {
                let mut values: Vec<(String, Value)> = hostile_text()
                    .into_iter()
                    .map(|(label, text)| (label, json!(text)))
                    .chain(wrong_types())
                    .collect();
                if *field == "email" {
                    values.extend(
                        REFUSED_ADDRESSES
                            .iter()
                            .map(|address| (format!("address {address:?}"), json!(address))),
                    );
                }
                for (label, value) in values {
                    let mut body: serde_json::Map<String, Value> = route
                        .fields
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect();
                    body.insert(field.to_string(), value);
                    let what = format!("{who}, {field} = {label}");
                    probe
                        .send_as(
                            &what,
                            Call::post(&route.path, Body::Json(Value::Object(body))),
                            &bearer,
                        )
                        .await;
                }
                for (label, literal) in bad_encodings() {
                    let mut body: serde_json::Map<String, Value> = route
                        .fields
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect();
                    body.insert(field.to_string(), json!("HOSTILE-PLACEHOLDER"));
                    let text = serde_json::to_vec(&Value::Object(body)).unwrap();
                    let raw = replace(&text, br#""HOSTILE-PLACEHOLDER""#, &literal);
                    let what = format!("{who}, {field} = {label}");
                    probe
                        .send_as(&what, Call::post(&route.path, Body::Raw(raw)), &bearer)
                        .await;
                }
            }
        }
    }
    probe.assert_all_refused();
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let at = haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    [&haystack[..at], with, &haystack[at + needle.len()..]].concat()
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn malformed_bodies_on_every_route_are_refused_with_a_problem(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let routes = json_routes(&app, &user).await;
    // An empty body is a valid one where the body is optional (a recent
    // session resets its MFA without one), so it is not sent.
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("unclosed object", b"{".to_vec()),
        ("invalid UTF-8", b"\xff\xfe\xfd".to_vec()),
        ("a byte-order mark", b"\xef\xbb\xbf{\"a\": 1}".to_vec()),
        ("a NUL", b"\x00".to_vec()),
        ("nested 10,000 deep", "[".repeat(10_000).into_bytes()),
        ("a string", br#""text""#.to_vec()),
        ("an array", b"[]".to_vec()),
        ("a duplicate field", br#"{"a": 1, "a": 2}"#.to_vec()),
        ("over the limit", vec![b' '; 17 * 1024]),
        (
            "a field of 20,000 letters",
            format!(r#"{{"a": "{}"}}"#, "x".repeat(20_000)).into_bytes(),
        ),
    ];
    let mut probe = Probe::new(&app);
    for (who, bearer) in credentials(&user) {
        for route in &routes {
            for (label, body) in &bodies {
                probe
                    .send_as(
                        &format!("{who}, {label}"),
                        Call::post(&route.path, Body::Raw(body.clone())),
                        &bearer,
                    )
                    .await;
            }
        }
    }
    probe.assert_all_refused();
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn hostile_bearer_credentials_are_refused_with_a_problem(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let user_id = app.user_id(&user.email).await;
    let credentials: Vec<(&str, Vec<u8>)> = vec![
        ("invalid UTF-8", b"Bearer \xff\xfe".to_vec()),
        ("overlong NUL", b"Bearer al_sess_\xc0\x80".to_vec()),
        ("Latin-1 bytes", b"Bearer caf\xe9".to_vec()),
        ("a tab inside", b"Bearer al_sess_\tx".to_vec()),
        ("percent-encoded NUL", b"Bearer %00".to_vec()),
        (
            "8,000 characters",
            format!("Bearer {}", "A".repeat(8_000)).into_bytes(),
        ),
        (
            "the session and a NUL, encoded",
            format!("Bearer {}%00", user.session_token).into_bytes(),
        ),
        ("no token", b"Bearer ".to_vec()),
        ("another scheme", b"Basic dXNlcjpwYXNz".to_vec()),
    ];
    let routes: Vec<(Method, String)> = vec![
        (Method::GET, "/v1/me".into()),
        (Method::POST, "/v1/me/mfa/reset".into()),
        (Method::POST, "/v1/me/mfa/reset/cancel".into()),
        (Method::POST, "/v1/me/password".into()),
        (Method::POST, "/v1/me/recovery-code".into()),
        (Method::POST, "/v1/logout".into()),
        (Method::GET, format!("/v1/audit/users/{user_id}/events")),
        (Method::GET, format!("/v1/audit/users/{user_id}/state")),
        (Method::GET, "/v1/audit/events".into()),
        (Method::POST, format!("/v1/admin/users/{user_id}/mfa/reset")),
        (Method::POST, format!("/v1/admin/users/{user_id}/unlock")),
    ];
    let mut probe = Probe::new(&app);
    for (method, path) in &routes {
        for (label, value) in &credentials {
            let value = HeaderValue::from_bytes(value).unwrap();
            probe
                .send(
                    label,
                    Call {
                        method: method.clone(),
                        ..Call::get(path)
                    },
                    Some(value),
                )
                .await;
        }
    }
    probe.assert_all_refused();
    // The session itself still works: nothing above signed it out.
    assert_eq!(app.me(&user.session_token).await.status(), StatusCode::OK);
}

/// Query strings and path segments that are malformed, out of range or
/// not text at all, written as they go on the wire.
fn hostile_queries() -> Vec<&'static str> {
    vec![
        "type=%00",
        "type=Mfa%00Reset",
        "type=%FF%FE",
        "type=%C0%80",
        "type=%E2%80%AE",
        "type=Mfa%20Reset",
        "type=",
        "type=a&type=b",
        "after=-1:5",
        "after=5:-1",
        "after=%00",
        "after=1:2:3",
        "after=99999999999999999999:1",
        "after=abc",
        "after=-1",
        "limit=0",
        "limit=-1",
        "limit=1001",
        "limit=1e3",
        "limit=abc",
        "limit=99999999999999999999",
        "limit=1&limit=2",
        "since=garbage",
        "since=%00",
        "since=+275760-09-13T00:00:00Z",
        "since=-4714-11-24T00:00:00Z",
        "since=0000-01-01T00:00:00Z",
        "until=+262143-12-31T23:59:59Z",
        "until=2024-13-45T99:99:99Z",
        "at=garbage",
        "at=%00",
        "at=+262143-12-31T23:59:59Z",
        "at=-262143-01-01T00:00:00Z",
        "at=0000-01-01T00:00:00Z",
        "unknown=1",
        "%ZZ=1",
        "since[]=x",
        "%00=%00",
    ]
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn malformed_queries_and_paths_on_the_staff_routes_are_refused_with_a_problem(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let user_id = app.user_id(&user.email).await;
    let long = "a".repeat(8_000);
    let users: Vec<&str> = vec![
        "%00",
        "%FF%FE",
        "%C0%80",
        "%E2%80%AE",
        "%0D%0ABcc:%20x@evil.com",
        "victim%3Cattacker@evil.com%3E",
        "%22quoted%22@example.com",
        "..%2F..%2Fetc%2Fpasswd",
        &long,
    ];
    let mut probe = Probe::new(&app);
    for (who, bearer) in credentials(&user) {
        let audit = [
            format!("/v1/audit/users/{user_id}/events"),
            format!("/v1/audit/users/{user_id}/state"),
            "/v1/audit/events".to_owned(),
        ];
        for path in &audit {
            // Each query is wrong for every route: a parameter it does not
            // take, or one it takes with a value out of range.
            for query in hostile_queries() {
                for accept in [None, Some("application/x-ndjson")] {
                    probe
                        .send_as(
                            &format!("{who}, ?{query}, accept {accept:?}"),
                            Call {
                                accept,
                                ..Call::get(&format!("{path}?{query}"))
                            },
                            &bearer,
                        )
                        .await;
                }
            }
        }
        for hostile in &users {
            for path in [
                format!("/v1/audit/users/{hostile}/events"),
                format!("/v1/audit/users/{hostile}/state"),
            ] {
                probe.send_as(who, Call::get(&path), &bearer).await;
            }
            for path in [
                format!("/v1/admin/users/{hostile}/mfa/reset"),
                format!("/v1/admin/users/{hostile}/unlock"),
            ] {
                probe
                    .send_as(
                        who,
                        Call::post(
                            &path,
                            Body::Json(json!({"reason": "identity checked by phone"})),
                        ),
                        &bearer,
                    )
                    .await;
            }
        }
    }
    probe.assert_all_refused();
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn mailed_link_pages_answer_hostile_tokens_with_a_4xx_page(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let long = format!("token={}", "A".repeat(8_000));
    let queries = [
        "token=%00",
        "token=%FF%FE",
        "token=%C0%80",
        "token=%ZZ",
        "token=al_link_%0D%0ASet-Cookie:%20x=1",
        "token=",
        "token=a&token=b",
        "token[]=x",
        &long,
    ];
    let mut probe = Probe::new(&app);
    for (who, bearer) in credentials(&user) {
        for page in [
            "/v1/users/verify",
            "/v1/password/reset",
            "/v1/mfa-reset/deny",
            "/v1/report",
            "/v1/login/email-link",
        ] {
            for query in queries {
                probe
                    .send_as(
                        &format!("{who}, ?{}", query.chars().take(40).collect::<String>()),
                        Call {
                            expected: Answer::Page,
                            ..Call::get(&format!("{page}?{query}"))
                        },
                        &bearer,
                    )
                    .await;
            }
        }
    }
    probe.assert_all_refused();
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_admin_reason_with_a_nul_is_refused_and_says_why(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let unlock = format!("/v1/admin/users/{}/unlock", user.email);
    for reason in ["\u{0}", "locked\u{0}out", "line one\nline two", "\u{1b}[2J"] {
        let response = app
            .post_with_session(&unlock, ADMIN_TOKEN, Some(json!({ "reason": reason })))
            .await;
        let problem =
            assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-reason").await;
        assert_eq!(
            problem["detail"],
            "a reason may not contain control characters"
        );
    }
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_per_user_history_refuses_parameters_it_does_not_take(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let history = format!("/v1/audit/users/{}/events", user.email);
    for (query, detail) in [
        ("since=2024-01-01T00:00:00Z", "unknown parameter `since`"),
        ("until=not-a-date", "unknown parameter `until`"),
        ("after=-1", "after is a sequence number, 0 or more"),
    ] {
        let response = app
            .get_with(&format!("{history}?{query}"), AUDITOR_TOKEN)
            .await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST, "invalid-query").await;
        assert_eq!(problem["detail"], detail, "{query}");
    }
    let ok = app
        .get_with(&format!("{history}?after=0&limit=10"), AUDITOR_TOKEN)
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_type_filter_with_a_nul_is_refused_as_json_and_as_ndjson(pool: PgPool) {
    let app = spawn_app(pool).await;
    for accept in ["application/json", "application/x-ndjson"] {
        let response = app
            .client
            .get(app.url("/v1/audit/events?type=%00"))
            .bearer_auth(AUDITOR_TOKEN)
            .header(ACCEPT, accept)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::BAD_REQUEST, "invalid-query").await;
        assert_eq!(
            problem["detail"],
            "type is the name of an event type, such as MfaReset"
        );
    }
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_address_matrix_through_the_api(pool: PgPool) {
    let app = spawn_app(pool).await;
    for (address, detail) in [
        (
            "victim<attacker@evil.com>",
            "only the address itself is accepted, without a display name or angle brackets",
        ),
        (
            "\"quoted\"@example.com",
            "quoted local parts are not accepted",
        ),
        (
            "p\u{430}ypal@example.com",
            "the part before the @ mixes letters of different scripts",
        ),
        (
            "ali\u{200B}ce@example.com",
            "the address contains an invisible character, such as a zero-width space",
        ),
        (
            "ali\u{202E}ecila@example.com",
            "the address contains a bidirectional text control, which can make it read differently",
        ),
        (
            "ａｌｉｃｅ@example.com",
            "the part before the @ holds full-width or other compatibility characters",
        ),
        (
            "a,b@example.com",
            "the part before the @ may hold only letters, digits, dots and !#$%&'*+-/=?^_`{|}~",
        ),
    ] {
        let response = app
            .post("/v1/users", json!({"email": address, "password": PASSWORD}))
            .await;
        let problem =
            assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-email").await;
        assert_eq!(problem["detail"], detail, "{address:?}");
        assert!(
            !problem.to_string().contains("attacker") && !problem.to_string().contains("example"),
            "the address is not echoed: {problem}"
        );
    }

    // An internationalised domain is one account in either spelling,
    // recorded in its ASCII form.
    app.register("Ada@Bücher.de").await;
    let login = app.password_step("ada@xn--bcher-kva.de").await;
    assert_eq!(login["next"], "enroll");
    let again = app
        .post(
            "/v1/users",
            json!({"email": "ADA@XN--BCHER-KVA.DE", "password": PASSWORD}),
        )
        .await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let history: Value = app
        .get_with("/v1/audit/users/ada@bücher.de/events", AUDITOR_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    let events = history["events"].as_array().unwrap();
    let registered: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "UserRegistered")
        .collect();
    assert_eq!(registered.len(), 1, "{history}");
    assert_eq!(registered[0]["payload"]["email"], "ada@xn--bcher-kva.de");
}
