//! The web console over plain HTTP: cookie flags, CSRF, security headers,
//! plain-word refusals and the registration switch. The clicking itself is
//! in the `browser` test binary.
use std::collections::BTreeMap;

use futures::future::join_all;

use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

/// A browser without script: keeps cookies, reads the CSRF tag off the
/// last page, follows nothing by itself.
struct Visitor<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    cookies: BTreeMap<String, String>,
    csrf: Option<String>,
    /// Every `Set-Cookie` of the last answer, as sent.
    set_cookies: Vec<String>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers["location"].to_str().unwrap()
    }
}

impl<'a> Visitor<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
            csrf: None,
            set_cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn absorb(&mut self, response: reqwest::Response) -> Answer {
        self.set_cookies = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for cookie in &self.set_cookies {
            let (pair, attributes) = cookie.split_once(';').unwrap_or((cookie, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        if let Some(tag) = csrf_in(&body) {
            self.csrf = Some(tag);
        }
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let response = self
            .client
            .get(self.app.url(path))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.absorb(response).await
    }

    /// Posts a form the way its page would, with the page's CSRF tag.
    async fn submit(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut fields = fields.to_vec();
        let tag = self.csrf.clone().expect("a page with a form first");
        fields.push(("csrf", &tag));
        self.post_raw(path, &fields, &[]).await
    }

    async fn post_raw(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .client
            .post(self.app.url(path))
            .header("cookie", self.cookie_header())
            .form(fields);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        self.absorb(response).await
    }

    /// The `Set-Cookie` of the last answer that sets `name`.
    fn set_cookie(&self, name: &str) -> &str {
        self.set_cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.set_cookies))
    }
}

fn csrf_in(html: &str) -> Option<String> {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

fn max_age(cookie: &str) -> i64 {
    cookie
        .split("; ")
        .find_map(|a| a.strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap()
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn console_pages_carry_the_security_headers(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut visitor = Visitor::new(&app);
    for path in [
        "/sign-in",
        "/register",
        "/v1/login/email-link?token=al_link_x",
    ] {
        let page = visitor.get(path).await;
        assert!(page.status.as_u16() < 500, "{path}: {}", page.status);
        let header = |name: &str| page.headers[name].to_str().unwrap().to_owned();
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "style-src 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("script-src"),
            "{csp}"
        );
        assert_eq!(header("referrer-policy"), "no-referrer");
        assert_eq!(header("cache-control"), "no-store");
        assert_eq!(header("x-frame-options"), "DENY");
        assert!(!page.body.contains("<script"), "{path} has script");
        assert!(!page.body.contains("style="), "{path} has inline style");
    }
    let css = app
        .client
        .get(app.url("/assets/console.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn on_plain_http_loopback_the_cookies_are_not_secure_and_not_prefixed(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut visitor = Visitor::new(&app);
    visitor.get("/sign-in").await;
    let csrf = visitor.set_cookie("authledger_csrf");
    assert!(csrf.ends_with("; Path=/; HttpOnly; SameSite=Lax"), "{csrf}");
    assert!(!csrf.contains("Secure"), "{csrf}");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn behind_https_the_cookies_are_host_prefixed_secure_httponly_and_lax(pool: PgPool) {
    let app = spawn_app_with(pool, |s| {
        s.public_url = "https://auth.example.test".into();
    })
    .await;
    let mut user = app.signed_up().await;
    let mut visitor = Visitor::new(&app);

    visitor.get("/sign-in").await;
    let csrf = visitor.set_cookie("__Host-authledger_csrf");
    assert!(
        csrf.ends_with("; Path=/; HttpOnly; SameSite=Lax; Secure"),
        "{csrf}"
    );

    let signed = visitor
        .submit(
            "/sign-in",
            &[("email", &user.email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    assert_eq!(signed.location(), "/sign-in/code");
    let login = visitor.set_cookie("__Host-authledger_login");
    assert!(
        login.starts_with("__Host-authledger_login=al_login_"),
        "{login}"
    );
    assert!(
        login.contains("; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age="),
        "{login}"
    );
    assert!((1..=300).contains(&max_age(login)), "{login}");

    visitor.get("/sign-in/code").await;
    let code = user.device.next_code().await;
    let done = visitor.submit("/sign-in/code", &[("code", &code)]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.location(), "/profile");
    let session = visitor.set_cookie("__Host-authledger_session");
    assert!(
        session.starts_with("__Host-authledger_session=al_sess_"),
        "{session}"
    );
    assert!(
        session.contains("; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age="),
        "{session}"
    );
    assert!(
        max_age(session) > 3600,
        "lasts as long as the session: {session}"
    );
    assert!(
        max_age(visitor.set_cookie("__Host-authledger_login")) == 0,
        "the attempt is forgotten"
    );

    let profile = visitor.get("/profile").await;
    assert_eq!(profile.status, StatusCode::OK);
    assert!(profile.body.contains(&user.email));
    assert!(profile.body.contains("a code from your authenticator app"));
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_form_post_without_its_csrf_token_is_refused_and_runs_nothing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let id = app.user_id(&user.email).await;
    let events_before = event_count(&app, id).await;
    let credentials = [("email", user.email.as_str()), ("password", PASSWORD)];

    let mut visitor = Visitor::new(&app);
    // No cookie and no tag.
    let bare = visitor.post_raw("/sign-in", &credentials, &[]).await;
    assert_eq!(bare.status, StatusCode::FORBIDDEN);
    assert!(bare.body.contains("This form has expired"));

    visitor.get("/sign-in").await;
    let tag = visitor.csrf.clone().unwrap();
    // The cookie but no tag.
    let untagged = visitor.post_raw("/sign-in", &credentials, &[]).await;
    assert_eq!(untagged.status, StatusCode::FORBIDDEN);
    // A tag made for another browser's nonce.
    let mut other = Visitor::new(&app);
    other.get("/sign-in").await;
    let foreign_tag = other.csrf.clone().unwrap();
    assert_ne!(foreign_tag, tag);
    let mut with_foreign = credentials.to_vec();
    with_foreign.push(("csrf", &foreign_tag));
    let foreign = visitor.post_raw("/sign-in", &with_foreign, &[]).await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    // The right tag, sent from another site.
    let mut with_tag = credentials.to_vec();
    with_tag.push(("csrf", &tag));
    let cross = visitor
        .post_raw("/sign-in", &with_tag, &[("sec-fetch-site", "cross-site")])
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert_eq!(event_count(&app, id).await, events_before, "nothing ran");

    // The same form with its tag goes through.
    let genuine = visitor.post_raw("/sign-in", &with_tag, &[]).await;
    assert_eq!(genuine.status, StatusCode::SEE_OTHER);
    assert!(event_count(&app, id).await > events_before);

    // Signed-in forms too: sign-out and the MFA reset need the tag.
    let mut signed_in = Visitor::new(&app);
    signed_in
        .cookies
        .insert("authledger_session".into(), user.session_token.clone());
    for path in ["/profile/reset-mfa", "/sign-out"] {
        let refused = signed_in.post_raw(path, &[], &[]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
    }
    let me = app.me(&user.session_token).await;
    assert_eq!(me.status(), StatusCode::OK, "still signed in");
    let profile: serde_json::Value = me.json().await.unwrap();
    assert_eq!(profile["mfa"]["enrolled"], true, "MFA was not reset");
}

async fn event_count(app: &TestApp, user: uuid::Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
        .bind(user.to_string())
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_mailed_link_page_signs_the_browser_in_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let id = app.user_id(&user.email).await;
    let login = app.password_step(&user.email).await;
    app.post(
        "/v1/login/email-link",
        json!({"login_token": login["login_token"]}),
    )
    .await;
    let token = app.link_token(id, &app.email_link_references(id).await[0]);

    let mut visitor = Visitor::new(&app);
    let page = visitor
        .get(&format!("/v1/login/email-link?token={token}"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(&token));
    assert!(
        page.body.contains(&format!(
            "<strong id=\"link-account\">{}</strong>",
            user.email
        )),
        "the page names the account"
    );
    let redeemed = visitor
        .submit("/sign-in/email-link", &[("token", &token)])
        .await;
    assert_eq!(redeemed.status, StatusCode::SEE_OTHER);
    assert_eq!(redeemed.location(), "/profile");
    let profile = visitor.get("/profile").await;
    assert_eq!(profile.status, StatusCode::OK);
    assert!(profile.body.contains("a link mailed to you"));
    assert!(profile.body.contains("AAL1"));

    let again = visitor
        .submit("/sign-in/email-link", &[("token", &token)])
        .await;
    assert_eq!(again.status, StatusCode::GONE);
    assert!(again.body.contains("This link cannot be used"));
    assert!(again.body.contains("already used"));
    // This browser is signed in: it is told so and sent on to its profile,
    // not to a sign-in it does not need.
    assert!(
        again.body.contains(&format!(
            "You are signed in as <strong>{}</strong>",
            user.email
        )),
        "{}",
        again.body
    );
    assert!(again
        .body
        .contains("<a class=\"button\" href=\"/profile\">Continue to My Profile</a>"));
    assert!(!again.body.contains("href=\"/sign-in\""), "{}", again.body);

    // The used link, opened again, says so at once: no button that would
    // only fail, and for a browser that is not signed in, the way to start
    // again.
    let reopened = visitor
        .get(&format!("/v1/login/email-link?token={token}"))
        .await;
    assert_eq!(reopened.status, StatusCode::GONE);
    assert!(reopened.body.contains("You are signed in as"));
    let mut stranger = Visitor::new(&app);
    let page = stranger
        .get(&format!("/v1/login/email-link?token={token}"))
        .await;
    assert_eq!(page.status, StatusCode::GONE);
    assert!(
        page.body
            .contains("This sign-in link was already used, has expired, or a newer one was sent."),
        "{}",
        page.body
    );
    assert!(!page.body.contains(&user.email), "a dead link names nobody");
    assert!(!page.body.contains("action=\"/sign-in/email-link\""));
    assert!(!page.body.contains("You are signed in"));
    assert!(page
        .body
        .contains("<a class=\"button\" href=\"/sign-in\">Start again</a>"));

    for broken in ["nonsense", &format!("{token}x"), "al_link_AAAA"] {
        let page = visitor
            .get(&format!("/v1/login/email-link?token={broken}"))
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{broken}");
        assert!(page.body.contains("This link is broken"));
    }
}

/// The `role="alert"` message of a page.
fn alert(body: &str) -> &str {
    let marker = "role=\"alert\">";
    let start = body.find(marker).map_or(0, |i| i + marker.len());
    body[start..].split('<').next().unwrap_or_default()
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn refusals_are_plain_words_that_enumerate_nothing_and_say_when_to_retry(pool: PgPool) {
    let app = spawn_app_with(pool, |s| s.policy.throttle_after_failures = 1).await;
    let user = app.signed_up().await;
    let mut visitor = Visitor::new(&app);
    visitor.get("/sign-in").await;

    let wrong = visitor
        .submit(
            "/sign-in",
            &[("email", &user.email), ("password", "not-the-password")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        alert(&wrong.body),
        "The email or the password is not right."
    );
    assert!(
        wrong.body.contains(&format!("value=\"{}\"", user.email)),
        "the email is kept"
    );
    let unknown = visitor
        .submit(
            "/sign-in",
            &[("email", &unique_email()), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(unknown.status, wrong.status);
    assert_eq!(alert(&unknown.body), alert(&wrong.body));

    // A second user, so the first one's throttle is not in the way.
    let mut other = app.signed_up().await;
    let mut visitor = Visitor::new(&app);
    visitor.get("/sign-in").await;
    let signed = visitor
        .submit(
            "/sign-in",
            &[("email", &other.email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(signed.location(), "/sign-in/code");
    visitor.get("/sign-in/code").await;
    let malformed = visitor.submit("/sign-in/code", &[("code", "12ab")]).await;
    assert_eq!(malformed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        alert(&malformed.body),
        "Enter the 6 digits your authenticator app shows now."
    );
    let right = other.device.next_code().await;
    let wrong_code = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    visitor
        .submit("/sign-in/code", &[("code", wrong_code)])
        .await;
    let throttled = visitor
        .submit("/sign-in/code", &[("code", wrong_code)])
        .await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: i64 = throttled.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert!(
        alert(&throttled.body).starts_with("Too many wrong tries. Try again in "),
        "{}",
        alert(&throttled.body)
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn closed_registration_refuses_accounts_in_the_api_and_the_console(pool: PgPool) {
    let app = spawn_app_with(pool, |c| {
        c.registration = authledger::config::Registration::Closed
    })
    .await;
    let api = app
        .post(
            "/v1/users",
            json!({"email": unique_email(), "password": PASSWORD}),
        )
        .await;
    assert_problem(api, StatusCode::FORBIDDEN, "registration-closed").await;

    let mut visitor = Visitor::new(&app);
    let sign_in = visitor.get("/sign-in").await;
    assert!(!sign_in.body.contains("Create account"));
    let page = visitor.get("/register").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let email = unique_email();
    let posted = visitor
        .submit("/register", &[("email", &email), ("password", PASSWORD)])
        .await;
    assert_eq!(posted.status, StatusCode::FORBIDDEN);
    assert!(!app.resolves(&email).await, "no account was made");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_sign_in_that_is_over_drops_its_cookie_and_says_so(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut user = app.signed_up().await;
    let mut visitor = Visitor::new(&app);
    visitor.get("/sign-in").await;
    visitor
        .submit(
            "/sign-in",
            &[("email", &user.email), ("password", PASSWORD)],
        )
        .await;
    let login = visitor.cookies["authledger_login"].clone();
    visitor.get("/sign-in/code").await;
    let code = user.device.next_code().await;
    let first = visitor.submit("/sign-in/code", &[("code", &code)]).await;
    assert_eq!(first.location(), "/profile");

    // The finished attempt's token, submitted again (another tab).
    visitor.cookies.insert("authledger_login".into(), login);
    visitor.get("/sign-in/code").await;
    let again = visitor.submit("/sign-in/code", &[("code", &code)]).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.location(), "/sign-in?notice=expired");
    assert_eq!(max_age(visitor.set_cookie("authledger_login")), 0);
    let page = visitor.get(again.location()).await;
    assert!(page.body.contains("That sign-in is over"));
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_strangers_thousand_wrong_passwords_do_not_keep_the_owners_browser_out(pool: PgPool) {
    // This machine is the proxy, so each caller below can be given an
    // address of its own; the owner's browser comes from 127.0.0.1.
    let app = spawn_app_with(pool, |config| {
        config.hashing.sign_in_failure_floor_ms = 0;
        config.limits.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let mut user = app.signed_up().await;

    // The owner signs in once from this browser: it becomes a known device.
    let mut owner = Visitor::new(&app);
    owner.get("/sign-in").await;
    let opened = owner
        .submit(
            "/sign-in",
            &[("email", user.email.as_str()), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(opened.location(), "/sign-in/code");
    assert!(owner.set_cookie("authledger_device").contains("HttpOnly"));
    owner.get("/sign-in/code").await;
    let code = user.device.next_code().await;
    let signed_in = owner.submit("/sign-in/code", &[("code", &code)]).await;
    assert_eq!(signed_in.location(), "/profile");

    // A stranger sends 1,000 wrong passwords from another address: the
    // account waits for every unknown source, and the stranger's address is
    // soon refused outright.
    let from = |address: &'static str, password: &str| {
        app.client
            .post(app.url("/v1/login/password"))
            .header("x-forwarded-for", address)
            .json(&json!({"email": user.email, "password": password}))
            .send()
    };
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..50 {
        for answer in join_all((0..20).map(|_| from("203.0.113.66", "a-strangers-guess-0"))).await {
            *statuses
                .entry(answer.unwrap().status().as_u16())
                .or_default() += 1;
        }
    }
    assert!(
        statuses.get(&429).copied().unwrap_or(0) > 900,
        "{statuses:?}"
    );
    let elsewhere = from("198.51.100.9", PASSWORD).await.unwrap();
    assert_problem(elsewhere, StatusCode::UNAUTHORIZED, "invalid-credentials").await;

    // The owner's browser signs in at once, second factor included.
    owner.get("/sign-in").await;
    let opened = owner
        .submit(
            "/sign-in",
            &[("email", user.email.as_str()), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(opened.location(), "/sign-in/code");
    owner.get("/sign-in/code").await;
    let code = user.device.next_code().await;
    let signed_in = owner.submit("/sign-in/code", &[("code", &code)]).await;
    assert_eq!(signed_in.location(), "/profile");
}

/// A browser signed in to `user`'s account through the console's pages.
async fn signed_in_visitor<'a>(app: &'a TestApp, user: &mut SignedIn) -> Visitor<'a> {
    let mut visitor = Visitor::new(app);
    visitor.get("/sign-in").await;
    let signed = visitor
        .submit(
            "/sign-in",
            &[("email", &user.email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(signed.location(), "/sign-in/code");
    visitor.get("/sign-in/code").await;
    let code = user.device.next_code().await;
    let done = visitor.submit("/sign-in/code", &[("code", &code)]).await;
    assert_eq!(done.location(), "/profile");
    visitor.get("/profile").await;
    visitor
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_planted_nonce_with_the_planters_own_tag_is_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut victim = app.signed_up().await;
    let mut attacker = app.signed_up().await;
    let id = app.user_id(&victim.email).await;
    let mut browser = signed_in_visitor(&app, &mut victim).await;

    // The attacker's browsers, signed out and signed in, each with a nonce
    // and a valid tag of their own.
    let mut anonymous = Visitor::new(&app);
    anonymous.get("/sign-in").await;
    let signed_in = signed_in_visitor(&app, &mut attacker).await;
    let events_before = event_count(&app, id).await;
    for planter in [&anonymous, &signed_in] {
        // The attacker's nonce, planted over the victim's (a sibling host
        // can set cookies for a plain-HTTP origin), and the attacker's tag.
        browser.cookies.insert(
            "authledger_csrf".into(),
            planter.cookies["authledger_csrf"].clone(),
        );
        let tag = planter.csrf.clone().unwrap();
        for path in ["/profile/reset-mfa", "/sign-out"] {
            let refused = browser.post_raw(path, &[("csrf", &tag)], &[]).await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
            assert!(refused.body.contains("This form has expired"));
        }
    }
    assert_eq!(event_count(&app, id).await, events_before, "nothing ran");
    let me = app.me(&victim.session_token).await;
    let profile: serde_json::Value = me.json().await.unwrap();
    assert_eq!(profile["mfa"]["enrolled"], true, "MFA was not reset");

    // A sign-in in progress is bound the same way: the planter's tag does
    // not mail a link for the victim's attempt.
    let mut pending = Visitor::new(&app);
    pending.get("/sign-in").await;
    pending
        .submit(
            "/sign-in",
            &[("email", &victim.email), ("password", PASSWORD)],
        )
        .await;
    pending.cookies.insert(
        "authledger_csrf".into(),
        anonymous.cookies["authledger_csrf"].clone(),
    );
    let tag = anonymous.csrf.clone().unwrap();
    let refused = pending
        .post_raw("/sign-in/email", &[("csrf", &tag)], &[])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(app.email_link_references(id).await.is_empty());
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_tag_seen_before_sign_in_is_worth_nothing_after_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut user = app.signed_up().await;
    let mut visitor = Visitor::new(&app);
    visitor.get("/sign-in").await;
    let nonce = visitor.cookies["authledger_csrf"].clone();
    let before = visitor.csrf.clone().unwrap();
    visitor
        .submit(
            "/sign-in",
            &[("email", &user.email), ("password", PASSWORD)],
        )
        .await;
    // The same nonce, now with a login attempt: the anonymous tag is stale.
    assert_eq!(visitor.cookies["authledger_csrf"], nonce);
    let stale = visitor
        .post_raw(
            "/sign-in/code",
            &[("code", "000000"), ("csrf", &before)],
            &[],
        )
        .await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN);
    visitor.get("/sign-in/code").await;
    let code = user.device.next_code().await;
    let done = visitor.submit("/sign-in/code", &[("code", &code)]).await;
    assert_eq!(done.location(), "/profile");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_form_is_refused_from_a_foreign_origin_and_accepted_from_its_own(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let id = app.user_id(&user.email).await;
    let mut visitor = Visitor::new(&app);
    visitor.get("/sign-in").await;
    let tag = visitor.csrf.clone().unwrap();
    let fields = [
        ("email", user.email.as_str()),
        ("password", PASSWORD),
        ("csrf", tag.as_str()),
    ];
    let events_before = event_count(&app, id).await;
    for headers in [
        [("origin", "https://evil.example")],
        // Another port of the same host is another origin.
        [("origin", "http://localhost:8081")],
        [("sec-fetch-site", "cross-site")],
        [("sec-fetch-site", "same-site")],
    ] {
        let refused = visitor.post_raw("/sign-in", &fields, &headers).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{headers:?}");
        assert!(refused.body.contains("This form has expired"));
    }
    assert_eq!(event_count(&app, id).await, events_before, "nothing ran");

    // The public URL's origin, as a browser writes it.
    assert_eq!(app.config.public_url, "http://localhost:8080");
    let own = visitor
        .post_raw(
            "/sign-in",
            &fields,
            &[
                ("origin", "http://localhost:8080"),
                ("sec-fetch-site", "same-origin"),
            ],
        )
        .await;
    assert_eq!(own.status, StatusCode::SEE_OTHER);
    assert_eq!(own.location(), "/sign-in/code");
    // What a browser sends under the pages' `Referrer-Policy: no-referrer`:
    // an origin of `null`, and the fetch metadata that names it.
    visitor.get("/sign-in").await;
    let tag = visitor.csrf.clone().unwrap();
    let fields = [
        ("email", user.email.as_str()),
        ("password", PASSWORD),
        ("csrf", tag.as_str()),
    ];
    let opaque_cross = visitor
        .post_raw(
            "/sign-in",
            &fields,
            &[("origin", "null"), ("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(opaque_cross.status, StatusCode::FORBIDDEN);
    let opaque = visitor
        .post_raw(
            "/sign-in",
            &fields,
            &[("origin", "null"), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(opaque.status, StatusCode::SEE_OTHER);

    // Neither header (an older browser, or one that withholds them): the
    // tag, bound to this browser's new login attempt, is enough.
    visitor.get("/sign-in/code").await;
    let tag = visitor.csrf.clone().unwrap();
    let plain = visitor
        .post_raw("/sign-in/email", &[("csrf", &tag)], &[])
        .await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.body);
    assert_eq!(app.email_link_references(id).await.len(), 1);
}

/// Signs `visitor` in to the operators' console with `credential`.
async fn operator_signs_in(visitor: &mut Visitor<'_>, credential: &str) -> Answer {
    visitor.get("/admin/sign-in").await;
    visitor
        .submit("/admin/sign-in", &[("credential", credential)])
        .await
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_operators_console_trades_the_credential_for_its_own_token(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut visitor = Visitor::new(&app);
    let page = visitor.get("/admin").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/admin/sign-in");

    let wrong = operator_signs_in(&mut visitor, "not-a-credential").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("not an operator credential"));
    let user = app.signed_up().await;
    let as_user = operator_signs_in(&mut visitor, &user.session_token).await;
    assert_eq!(as_user.status, StatusCode::UNAUTHORIZED);

    let signed_in = operator_signs_in(&mut visitor, ADMIN_TOKEN).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.location(), "/admin");
    let cookie = visitor.set_cookie("authledger_staff").to_owned();
    assert!(cookie.starts_with("authledger_staff=al_staff_"));
    assert!(!cookie.contains(ADMIN_TOKEN));
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(max_age(&cookie) <= 3600);
    let list = visitor.get("/admin").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("administrator"));
    assert!(list.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));

    // Forged: the token's MAC no longer matches.
    let token = visitor.cookies["authledger_staff"].clone();
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    visitor
        .cookies
        .insert("authledger_staff".into(), forged.clone());
    let refused = visitor.get("/admin").await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
    assert!(refused.location().starts_with("/admin/sign-in"));

    // Expired: an hour later by the server's clock.
    visitor
        .cookies
        .insert("authledger_staff".into(), token.clone());
    app.clock.advance(chrono::Duration::seconds(3601));
    let expired = visitor.get("/admin").await;
    assert_eq!(expired.location(), "/admin/sign-in?notice=expired");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_console_sign_in_ends_when_its_credential_leaves_the_configuration(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let mut visitor = Visitor::new(&app);
    operator_signs_in(&mut visitor, ADMIN_TOKEN).await;
    let token = visitor.cookies["authledger_staff"].clone();
    assert_eq!(visitor.get("/admin").await.status, StatusCode::OK);
    // The same server key, the admin credential removed.
    let key = app.key.clone();
    let without = spawn_app_with(pool, move |c| {
        c.secret_key = Some(key);
        c.admin_tokens = vec![];
    })
    .await;
    let mut replayed = Visitor::new(&without);
    replayed.cookies.insert("authledger_staff".into(), token);
    let refused = replayed.get("/admin").await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
    assert!(refused.location().starts_with("/admin/sign-in"));
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn operator_actions_need_the_forms_tag_and_an_administrator(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let id = app.user_id(&user.email).await;
    let suspend = format!("/admin/users/{id}/suspend");

    let mut auditor = Visitor::new(&app);
    operator_signs_in(&mut auditor, AUDITOR_TOKEN).await;
    let page = auditor.get(&format!("/admin/users/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("read-only"));
    assert!(!page.body.contains(&suspend));
    let refused = auditor.submit(&suspend, &[("reason", "curious")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let mut admin = Visitor::new(&app);
    operator_signs_in(&mut admin, ADMIN_TOKEN).await;
    let page = admin.get(&format!("/admin/users/{id}")).await;
    assert!(page.body.contains(&suspend));
    let no_tag = admin.post_raw(&suspend, &[("reason", "no tag")], &[]).await;
    assert_eq!(no_tag.status, StatusCode::FORBIDDEN);
    // A tag from another browser's operator sign-in is not this one's.
    let foreign_tag = auditor.csrf.clone().unwrap();
    let foreign = admin
        .post_raw(
            &suspend,
            &[("reason", "foreign"), ("csrf", &foreign_tag)],
            &[],
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    assert_eq!(app.me(&user.session_token).await.status(), StatusCode::OK);

    let done = admin.submit(&suspend, &[("reason", "fraud inquiry")]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.location(), format!("/admin/users/{id}?done=suspend"));
    assert_eq!(
        app.me(&user.session_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let page = admin.get(done.location()).await;
    assert!(page.body.contains("The account is suspended"));
    assert!(page.body.contains(&format!("/admin/users/{id}/reactivate")));
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_sign_in_past_its_password_can_be_cancelled_from_every_step(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let mut visitor = Visitor::new(&app);
    visitor.get("/sign-in").await;
    visitor
        .submit(
            "/sign-in",
            &[("email", &user.email), ("password", PASSWORD)],
        )
        .await;
    for step in ["/sign-in/code", "/sign-in/other", "/sign-in/recovery"] {
        let page = visitor.get(step).await;
        assert_eq!(page.status, StatusCode::OK, "{step}");
        assert!(
            page.body.contains("action=\"/sign-in/cancel\""),
            "{step}: {}",
            page.body
        );
    }

    let cancelled = visitor.submit("/sign-in/cancel", &[]).await;
    assert_eq!(cancelled.status, StatusCode::SEE_OTHER);
    assert_eq!(cancelled.location(), "/sign-in?notice=sign-in-cancelled");
    assert_eq!(max_age(visitor.set_cookie("authledger_login")), 0);
    assert!(!visitor.cookies.contains_key("authledger_login"));
    let page = visitor.get(cancelled.location()).await;
    assert!(page.body.contains("You left that sign-in."));
    assert!(page.body.contains("value=\"\""), "the form starts empty");
    let code = visitor.get("/sign-in/code").await;
    assert_eq!(code.status, StatusCode::SEE_OTHER);
    assert_eq!(code.location(), "/sign-in?notice=expired");

    // The enrollment page of an account without an authenticator too.
    let email = unique_email();
    app.register(&email).await;
    let mut newcomer = Visitor::new(&app);
    newcomer.get("/sign-in").await;
    let opened = newcomer
        .submit("/sign-in", &[("email", &email), ("password", PASSWORD)])
        .await;
    assert_eq!(opened.location(), "/sign-in/enroll");
    let enroll = newcomer.get("/sign-in/enroll").await;
    assert!(enroll.body.contains("action=\"/sign-in/cancel\""));
    let cancelled = newcomer.submit("/sign-in/cancel", &[]).await;
    assert_eq!(cancelled.location(), "/sign-in?notice=sign-in-cancelled");

    // Like every form, it needs its page's tag.
    let mut forged = Visitor::new(&app);
    forged.get("/sign-in").await;
    let refused = forged
        .post_raw("/sign-in/cancel", &[("csrf", "forged")], &[])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_address_just_confirmed_is_filled_in_on_the_sign_in_form_and_kept_out_of_the_url(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let email = unique_email();
    app.register_unverified(&email, PASSWORD).await;
    let token = app
        .newest_link(
            &email,
            "EmailVerificationRequested",
            authledger::tokens::TokenKind::EmailVerification,
        )
        .await;
    let mut visitor = Visitor::new(&app);
    let page = visitor
        .get(&format!("/v1/users/verify?token={token}"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let confirmed = visitor
        .submit(
            "/verify-email",
            &[("token", &token), ("email", &email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(confirmed.status, StatusCode::OK);
    assert!(!confirmed.headers.contains_key("location"));
    assert!(confirmed.body.contains("<h1>Your account is ready</h1>"));
    assert!(confirmed
        .body
        .contains("Your email address is confirmed. Sign in to set up your authenticator app."));
    assert!(confirmed.body.contains("action=\"/sign-in\""));
    assert!(
        confirmed.body.contains(&format!(
            "<input id=\"email\" type=\"email\" name=\"email\" value=\"{email}\""
        )),
        "{}",
        confirmed.body
    );

    // The form it shows signs in, on to the enrollment.
    let signed = visitor
        .submit("/sign-in", &[("email", &email), ("password", PASSWORD)])
        .await;
    assert_eq!(signed.location(), "/sign-in/enroll");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_password_too_easy_to_guess_is_refused_in_one_sentence(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut visitor = Visitor::new(&app);
    visitor.get("/register").await;
    for password in ["password123", "qwertyuiop", "aaaaaaaaaaaa"] {
        let refused = visitor
            .submit(
                "/register",
                &[("email", &unique_email()), ("password", password)],
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{password}"
        );
        let said = alert(&refused.body);
        assert!(said.starts_with("Choose another password: "), "{said}");
        assert!(said.ends_with('.') && !said.ends_with(".."), "{said}");
    }
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_mfa_reset_is_confirmed_by_a_button_that_says_what_it_does(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut user = app.signed_up().await;
    let mut visitor = signed_in_visitor(&app, &mut user).await;
    let page = visitor.get("/profile/reset-mfa").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("<button class=\"danger\" type=\"submit\">Reset my MFA</button>"),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains("<a class=\"button secondary\" href=\"/profile\">Cancel</a>"));
    assert!(!page.body.contains(">OK<"));
}
