//! The web console: the whole sign-in journey as server-rendered pages on
//! top of the same operations as the JSON API. No script; every form is a
//! POST with a CSRF tag, answered by a redirect or a page.
mod browser;
mod views;

use axum::extract::{RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;

use authledger_aggregates::{Assurance, SignInMethod};
pub use browser::Browser;
use browser::{clear_cookie, see_other, set_cookie, CookieName, Csrf, Form};
use views::{grouped, problem_page, wait_words, Page, Problem};

use super::extract::RequestMeta;
use super::login::{Enrollment, Next, SessionWithRecoveryCode};
use super::me::Me;
use super::{ApiContext, ApiError};
use crate::tokens::TokenKind;

pub fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/register", get(register_page).post(register))
        .route("/sign-in/code", get(code_page).post(submit_code))
        .route("/sign-in/other", get(other_methods_page))
        .route("/sign-in/email", post(send_email_link))
        .route("/sign-in/email-link", post(redeem_email_link))
        .route(
            "/sign-in/recovery",
            get(recovery_page).post(submit_recovery_code),
        )
        .route("/sign-in/enroll", get(enroll_page).post(confirm_enrollment))
        .route("/sign-in/enroll/new", post(new_enrollment))
        .route("/profile", get(profile_page))
        .route("/profile/reset-mfa", get(reset_page).post(reset_mfa))
        .route("/sign-out", post(sign_out))
        .route("/assets/console.css", get(stylesheet))
}

const EXPIRED: &str = "/sign-in?notice=expired";
const SESSION_ENDED: &str = "/sign-in?notice=session-ended";

#[derive(Deserialize)]
struct CredentialsForm {
    email: String,
    password: String,
}

#[derive(Deserialize)]
struct CodeForm {
    code: String,
}

#[derive(Deserialize)]
struct TokenForm {
    token: String,
}

#[derive(Deserialize)]
struct NoFields {}

#[derive(Deserialize)]
struct ResetForm {
    #[serde(default)]
    password: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Register,
    Password,
    Totp,
    RecoveryCode,
    Other,
}

/// What a page does with a refusal: say it in plain words, or send the
/// browser to where it can go on.
enum Failure {
    Say(Problem),
    Go(&'static str),
}

fn failure(err: &ApiError, step: Step) -> Failure {
    let say = |message: &str| {
        Failure::Say(Problem {
            message: message.to_owned(),
            retry_after: None,
        })
    };
    match err.slug() {
        "invalid-login-token" | "login-attempt-invalid" => Failure::Go(EXPIRED),
        "unauthenticated" => Failure::Go(SESSION_ENDED),
        "enrollment-required" | "enrollment-not-started" => Failure::Go("/sign-in/enroll"),
        "already-enrolled" => Failure::Go("/sign-in/code"),
        "throttled" => {
            let seconds = err.retry_after().unwrap_or(1);
            Failure::Say(Problem {
                message: format!("Too many wrong tries. Try again {}.", wait_words(seconds)),
                retry_after: Some(seconds),
            })
        }
        "account-locked" => say("This account is locked after too many failed sign-ins. An administrator can unlock it."),
        "invalid-credentials" => say("The email or the password is not right."),
        "invalid-email" => say("Enter an email address like name@example.com."),
        "unacceptable-password" if step != Step::Register => say("That password is not right."),
        "unacceptable-password" => Failure::Say(Problem {
            message: format!(
                "Choose another password: {}.",
                err.detail().unwrap_or("this one is not accepted")
            ),
            retry_after: None,
        }),
        "email-taken" => say("An account with this email already exists. Sign in instead."),
        "registration-closed" => say("This service does not take new accounts."),
        "invalid-code-format" if step == Step::RecoveryCode => {
            say("Enter the recovery code exactly as it was shown to you.")
        }
        "invalid-code-format" => say("Enter the 6 digits your authenticator app shows now."),
        "invalid-code" if step == Step::RecoveryCode => say("That recovery code is not right."),
        "invalid-code" => say("That code is not right. Codes change every 30 seconds: enter the one your app shows now."),
        "invalid-token" | "email-link-invalid" => say("This link has expired, was already used, or a newer one was sent. Sign in again to get a new link."),
        "reauthentication-required" => say("Enter your password to confirm."),
        "reauthentication-failed" if step == Step::Password => say("That password is not right."),
        "contended" => say("Your account changed at the same moment. Try again."),
        _ => say("Something went wrong on our side. Try again in a moment."),
    }
}

/// Sets the session cookie and forgets the login attempt. The CSRF nonce
/// is dropped too, so the next page starts a new one: a tag seen before
/// the sign-in is worth nothing after it.
fn signed_in(
    ctx: &ApiContext,
    token: &str,
    expires_at: DateTime<Utc>,
    mut response: Response,
) -> Response {
    set_cookie(
        ctx,
        &mut response,
        CookieName::Session,
        token,
        Some(expires_at),
    );
    clear_cookie(ctx, &mut response, CookieName::Login);
    clear_cookie(ctx, &mut response, CookieName::Csrf);
    response
}

/// Sends the browser on, dropping the cookie that led nowhere.
fn go(ctx: &ApiContext, to: &'static str) -> Response {
    let mut response = see_other(to);
    match to {
        EXPIRED => clear_cookie(ctx, &mut response, CookieName::Login),
        SESSION_ENDED => clear_cookie(ctx, &mut response, CookieName::Session),
        _ => {}
    }
    response
}

async fn home(browser: Browser) -> Response {
    see_other(if browser.session.is_some() {
        "/profile"
    } else {
        "/sign-in"
    })
}

fn notice(query: Option<&str>) -> Option<&'static str> {
    let key = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("notice="))?;
    Some(match key {
        "account-created" => "Your account is ready. Sign in to set up your authenticator app.",
        "mfa-reset" => "Your multi-factor authentication was reset and you are signed out everywhere. At your next sign-in you will set up a new authenticator.",
        "signed-out" => "You are signed out.",
        "expired" => "That sign-in is over: it expired or had too many wrong codes. Sign in again.",
        "session-ended" => "Your session has ended. Sign in again.",
        _ => return None,
    })
}

async fn sign_in_page(
    State(ctx): State<ApiContext>,
    browser: Browser,
    RawQuery(query): RawQuery,
) -> Response {
    let page = Page {
        notice: notice(query.as_deref()),
        ..Page::new("Sign in")
    };
    sign_in_view(&ctx, &browser, page, "")
}

fn sign_in_view(ctx: &ApiContext, browser: &Browser, page: Page<'_>, email: &str) -> Response {
    let csrf = Csrf::for_browser(ctx, browser);
    page.render(
        ctx,
        &csrf,
        html! {
            form method="post" action="/sign-in" {
                (csrf.field())
                (views::email_field(email))
                (views::password_field("current-password", None))
                button type="submit" { "Sign in" }
            }
            @if ctx.registration_open {
                p { "New here? " a href="/register" { "Create account" } }
            }
        },
    )
}

async fn sign_in(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    form: Form<CredentialsForm>,
) -> Response {
    let Form { browser, value } = form;
    match ctx
        .submit_password(&meta, &value.email, &value.password)
        .await
    {
        Ok(opened) => {
            let next = match opened.next {
                Next::Totp => "/sign-in/code",
                Next::Enroll => {
                    // Begun now, so the next page can show the QR code; if
                    // this fails, that page offers to begin again.
                    if let Err(err) = ctx.begin_enrollment(&meta, &opened.login_token).await {
                        tracing::warn!(problem = err.slug(), "enrollment not begun at sign-in");
                    }
                    "/sign-in/enroll"
                }
            };
            let mut response = see_other(next);
            set_cookie(
                &ctx,
                &mut response,
                CookieName::Login,
                &opened.login_token,
                Some(opened.expires_at),
            );
            response
        }
        Err(err) => {
            let page = Page {
                status: err.status(),
                error: say(&err, Step::Password),
                ..Page::new("Sign in")
            };
            sign_in_view(&ctx, &browser, page, &value.email)
        }
    }
}

/// The refusal in plain words, for pages that stay where they are.
fn say(err: &ApiError, step: Step) -> Option<Problem> {
    Some(match failure(err, step) {
        Failure::Say(problem) => problem,
        Failure::Go(_) => Problem {
            message: "That did not work. Start again from the sign-in page.".to_owned(),
            retry_after: None,
        },
    })
}

async fn register_page(State(ctx): State<ApiContext>, browser: Browser) -> Response {
    if !ctx.registration_open {
        return registration_closed(&ctx, &browser);
    }
    register_view(&ctx, &browser, Page::new("Create account"), "")
}

fn registration_closed(ctx: &ApiContext, browser: &Browser) -> Response {
    problem_page(
        ctx,
        browser,
        StatusCode::FORBIDDEN,
        "Registration is closed",
        "This service does not take new accounts. Ask its administrator for one.",
    )
}

fn register_view(ctx: &ApiContext, browser: &Browser, page: Page<'_>, email: &str) -> Response {
    let csrf = Csrf::for_browser(ctx, browser);
    page.render(
        ctx,
        &csrf,
        html! {
            form method="post" action="/register" {
                (csrf.field())
                (views::email_field(email))
                (views::password_field("new-password", Some("At least 8 characters. A few unrelated words make a strong one.")))
                button type="submit" { "Create account" }
            }
            p { "Already have an account? " a href="/sign-in" { "Sign in" } }
        },
    )
}

async fn register(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    form: Form<CredentialsForm>,
) -> Response {
    let Form { browser, value } = form;
    if !ctx.registration_open {
        return registration_closed(&ctx, &browser);
    }
    match ctx.register(&meta, &value.email, &value.password).await {
        Ok(_) => see_other("/sign-in?notice=account-created"),
        Err(err) => {
            let page = Page {
                status: err.status(),
                error: say(&err, Step::Register),
                ..Page::new("Create account")
            };
            register_view(&ctx, &browser, page, &value.email)
        }
    }
}

async fn code_page(State(ctx): State<ApiContext>, browser: Browser) -> Response {
    if browser.login.is_none() {
        return see_other(EXPIRED);
    }
    code_view(&ctx, &browser, Page::new("Enter your code"))
}

fn code_view(ctx: &ApiContext, browser: &Browser, page: Page<'_>) -> Response {
    let csrf = Csrf::for_browser(ctx, browser);
    page.render(
        ctx,
        &csrf,
        html! {
            form method="post" action="/sign-in/code" {
                (csrf.field())
                (views::totp_field())
                button type="submit" { "Continue" }
            }
            p { a href="/sign-in/other" { "Try another method" } }
        },
    )
}

async fn submit_code(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    form: Form<CodeForm>,
) -> Response {
    let Form { browser, value } = form;
    let Some(login) = &browser.login else {
        return see_other(EXPIRED);
    };
    match ctx.submit_totp(&meta, login, &value.code).await {
        Ok(session) => signed_in(
            &ctx,
            &session.session_token,
            session.expires_at,
            see_other("/profile"),
        ),
        Err(err) => match failure(&err, Step::Totp) {
            Failure::Go(to) => go(&ctx, to),
            Failure::Say(problem) => {
                let page = Page {
                    status: err.status(),
                    error: Some(problem),
                    ..Page::new("Enter your code")
                };
                code_view(&ctx, &browser, page)
            }
        },
    }
}

async fn other_methods_page(State(ctx): State<ApiContext>, browser: Browser) -> Response {
    if browser.login.is_none() {
        return see_other(EXPIRED);
    }
    other_methods_view(&ctx, &browser, Page::new("Try another method"))
}

fn other_methods_view(ctx: &ApiContext, browser: &Browser, page: Page<'_>) -> Response {
    let csrf = Csrf::for_browser(ctx, browser);
    page.render(
        ctx,
        &csrf,
        html! {
            ul.choices {
                li {
                    form method="post" action="/sign-in/email" {
                        (csrf.field())
                        button type="submit" aria-describedby="email-hint" { "Email" }
                    }
                    p.hint #email-hint { "We mail a one-time sign-in link to the address on your account." }
                }
                li {
                    a.button href="/sign-in/recovery" aria-describedby="recovery-hint" { "Recovery code" }
                    p.hint #recovery-hint { "The code you saved when you set up your authenticator app." }
                }
            }
            p { a href="/sign-in/code" { "Use your authenticator app" } }
        },
    )
}

async fn send_email_link(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    form: Form<NoFields>,
) -> Response {
    let Form { browser, .. } = form;
    let Some(login) = &browser.login else {
        return see_other(EXPIRED);
    };
    match ctx.request_email_link(&meta, login).await {
        Ok(()) => {
            let csrf = Csrf::for_browser(&ctx, &browser);
            Page::new("Check your inbox").render(
                &ctx,
                &csrf,
                html! {
                    p {
                        "We sent a sign-in link to the address on your account. It works once, for "
                        (ctx.bus.services().policy.email_link_ttl.num_minutes())
                        " minutes. Open it in this browser to finish signing in."
                    }
                    p { "No mail after a few minutes? Look in your spam folder, or " a href="/sign-in/other" { "try another method" } "." }
                },
            )
        }
        Err(err) => match failure(&err, Step::Other) {
            Failure::Go(to) => go(&ctx, to),
            Failure::Say(problem) => {
                let page = Page {
                    status: err.status(),
                    error: Some(problem),
                    ..Page::new("Try another method")
                };
                other_methods_view(&ctx, &browser, page)
            }
        },
    }
}

/// The page a mailed link opens (`GET /v1/login/email-link`). Opening it
/// spends nothing, since mail scanners prefetch links; its button does. It
/// names the account, so nobody is signed in to another person's account
/// by a link they were sent without noticing.
pub async fn email_link_page(ctx: &ApiContext, browser: Browser, token: &str) -> Response {
    let account = match ctx.tokens.decode(TokenKind::EmailLink, token) {
        Ok((user, _)) => ctx
            .bus
            .load(user)
            .await
            .ok()
            .and_then(|state| state.profile())
            .map(|profile| profile.email),
        Err(_) => None,
    };
    let Some(account) = account else {
        return problem_page(
            ctx,
            &browser,
            StatusCode::BAD_REQUEST,
            "This link is broken",
            "The sign-in link is incomplete. Open it from the mail again, or sign in again to get a new one.",
        );
    };
    let csrf = Csrf::for_browser(ctx, &browser);
    Page::new("Finish signing in").render(
        ctx,
        &csrf,
        html! {
            p { "Continue to finish signing in as " strong #link-account { (account) } "." }
            form method="post" action="/sign-in/email-link" {
                (csrf.field())
                input type="hidden" name="token" value=(token);
                button type="submit" { "Sign in" }
            }
            p { "If you did not try to sign in, or this is not your account, close this page. If it was not you, sign in and reset your multi-factor authentication." }
        },
    )
}

async fn redeem_email_link(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    form: Form<TokenForm>,
) -> Response {
    let Form { browser, value } = form;
    match ctx.redeem_email_link(&meta, &value.token).await {
        Ok(session) => signed_in(
            &ctx,
            &session.session_token,
            session.expires_at,
            see_other("/profile"),
        ),
        Err(err) => {
            let message = say(&err, Step::Other)
                .map(|p| p.message)
                .unwrap_or_default();
            problem_page(
                &ctx,
                &browser,
                err.status(),
                "This link cannot be used",
                &message,
            )
        }
    }
}

async fn recovery_page(State(ctx): State<ApiContext>, browser: Browser) -> Response {
    if browser.login.is_none() {
        return see_other(EXPIRED);
    }
    recovery_view(&ctx, &browser, Page::new("Use your recovery code"))
}

fn recovery_view(ctx: &ApiContext, browser: &Browser, page: Page<'_>) -> Response {
    let csrf = Csrf::for_browser(ctx, browser);
    page.render(
        ctx,
        &csrf,
        html! {
            form method="post" action="/sign-in/recovery" {
                (csrf.field())
                label for="code" { "Recovery code" }
                p.hint #code-hint { "The code you saved when you set up your authenticator app. It works once; you get a new one." }
                input #code type="text" name="code" autocomplete="off" spellcheck="false"
                    autocapitalize="characters" required aria-describedby="code-hint";
                button type="submit" { "Sign in" }
            }
            p { a href="/sign-in/other" { "Try another method" } }
        },
    )
}

async fn submit_recovery_code(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    form: Form<CodeForm>,
) -> Response {
    let Form { browser, value } = form;
    let Some(login) = &browser.login else {
        return see_other(EXPIRED);
    };
    match ctx.use_recovery_code(&meta, login, &value.code).await {
        Ok(granted) => recovery_code_issued(
            &ctx,
            &browser,
            "Save your new recovery code",
            "You are signed in, and the code you used is spent.",
            &granted,
        ),
        Err(err) => match failure(&err, Step::RecoveryCode) {
            Failure::Go(to) => go(&ctx, to),
            Failure::Say(problem) => {
                let page = Page {
                    status: err.status(),
                    error: Some(problem),
                    ..Page::new("Use your recovery code")
                };
                recovery_view(&ctx, &browser, page)
            }
        },
    }
}

/// A sign-in that issued a recovery code: the code, shown once, on the
/// answer that also sets the session cookie.
fn recovery_code_issued(
    ctx: &ApiContext,
    browser: &Browser,
    title: &str,
    lead: &str,
    granted: &SessionWithRecoveryCode,
) -> Response {
    let csrf = Csrf::for_browser(ctx, browser);
    let page = Page::new(title).render(
        ctx,
        &csrf,
        html! {
            p { (lead) }
            (views::recovery_code_shown(&granted.recovery_code))
        },
    );
    signed_in(ctx, &granted.session_token, granted.expires_at, page)
}

async fn enroll_page(State(ctx): State<ApiContext>, browser: Browser) -> Response {
    let Some(login) = &browser.login else {
        return see_other(EXPIRED);
    };
    match ctx.pending_enrollment(login).await {
        Ok(Some(enrollment)) => enroll_view(
            &ctx,
            &browser,
            Page::new("Set up your authenticator app"),
            &enrollment,
        ),
        Ok(None) => {
            let csrf = Csrf::for_browser(&ctx, &browser);
            Page::new("Set up your authenticator app").render(
                &ctx,
                &csrf,
                html! {
                    p { "Your account needs an authenticator app before you can sign in." }
                    form method="post" action="/sign-in/enroll/new" {
                        (csrf.field())
                        button type="submit" { "Show the QR code" }
                    }
                },
            )
        }
        Err(err) => match failure(&err, Step::Totp) {
            Failure::Go(to) => go(&ctx, to),
            Failure::Say(problem) => problem_page(
                &ctx,
                &browser,
                err.status(),
                "Set up your authenticator app",
                &problem.message,
            ),
        },
    }
}

fn enroll_view(
    ctx: &ApiContext,
    browser: &Browser,
    page: Page<'_>,
    enrollment: &Enrollment,
) -> Response {
    let csrf = Csrf::for_browser(ctx, browser);
    let qr = format!(
        "data:image/svg+xml;base64,{}",
        STANDARD.encode(&enrollment.qr_svg)
    );
    page.render(
        ctx,
        &csrf,
        html! {
            p { "Your account needs an authenticator app, such as Authy, 1Password, Google Authenticator or Microsoft Authenticator. Scan this QR code with it:" }
            img.qr src=(qr) width="200" height="200" alt="QR code that adds this account to an authenticator app";
            p { "Or type this key into the app:" }
            p.secret { code #totp-secret { (grouped(&enrollment.secret)) } }
            form method="post" action="/sign-in/enroll" {
                (csrf.field())
                (views::totp_field())
                button type="submit" { "Verify and continue" }
            }
        },
    )
}

async fn new_enrollment(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    form: Form<NoFields>,
) -> Response {
    let Form { browser, .. } = form;
    let Some(login) = &browser.login else {
        return see_other(EXPIRED);
    };
    match ctx.begin_enrollment(&meta, login).await {
        Ok(_) => see_other("/sign-in/enroll"),
        Err(err) => match failure(&err, Step::Totp) {
            Failure::Go(to) => go(&ctx, to),
            Failure::Say(problem) => problem_page(
                &ctx,
                &browser,
                err.status(),
                "Set up your authenticator app",
                &problem.message,
            ),
        },
    }
}

async fn confirm_enrollment(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    form: Form<CodeForm>,
) -> Response {
    let Form { browser, value } = form;
    let Some(login) = &browser.login else {
        return see_other(EXPIRED);
    };
    match ctx.confirm_enrollment(&meta, login, &value.code).await {
        Ok(granted) => recovery_code_issued(
            &ctx,
            &browser,
            "Save your recovery code",
            "Your authenticator app is set up and you are signed in.",
            &granted,
        ),
        Err(err) => match failure(&err, Step::Totp) {
            Failure::Go(to) => go(&ctx, to),
            Failure::Say(problem) => match ctx.pending_enrollment(login).await {
                Ok(Some(enrollment)) => {
                    let page = Page {
                        status: err.status(),
                        error: Some(problem),
                        ..Page::new("Set up your authenticator app")
                    };
                    enroll_view(&ctx, &browser, page, &enrollment)
                }
                _ => see_other("/sign-in/enroll"),
            },
        },
    }
}

/// The profile of the browser's session, or where to send a browser that
/// has none.
async fn signed_in_user(
    ctx: &ApiContext,
    meta: &RequestMeta,
    browser: &Browser,
) -> Result<Me, Response> {
    let Some(token) = &browser.session else {
        return Err(see_other("/sign-in"));
    };
    ctx.profile(meta, token)
        .await
        .map_err(|err| match failure(&err, Step::Other) {
            Failure::Go(to) => go(ctx, to),
            Failure::Say(problem) => problem_page(
                ctx,
                browser,
                err.status(),
                "Something went wrong",
                &problem.message,
            ),
        })
}

async fn profile_page(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    browser: Browser,
) -> Response {
    let me = match signed_in_user(&ctx, &meta, &browser).await {
        Ok(me) => me,
        Err(response) => return response,
    };
    let csrf = Csrf::for_browser(&ctx, &browser);
    let page = Page {
        account: Some(&me.email),
        ..Page::new("My Profile")
    };
    page.render(
        &ctx,
        &csrf,
        html! {
            dl.facts {
                dt { "Email" }
                dd #profile-email { (me.email) }
                dt { "Multi-factor authentication" }
                dd #mfa-status {
                    @match me.mfa.enrolled_at {
                        Some(at) => { "On: authenticator app, since " (when(at)) }
                        None => { "Off: you will set up an authenticator app at your next sign-in" }
                    }
                }
                dt { "This session" }
                dd #session-method { "Signed in with " (method_words(me.session.method)) ". " (assurance_words(me.session.aal)) }
                dd { "Ends " (when(me.session.expires_at)) ", or after an hour without use." }
            }
            h2 { "Lost your phone?" }
            p { "If your authenticator app is lost or someone else may have it, reset your multi-factor authentication. You will be signed out everywhere and set up a new authenticator at your next sign-in." }
            p { a.button.danger href="/profile/reset-mfa" { "Reset My Multi-Factor Authentication" } }
        },
    )
}

fn when(at: DateTime<Utc>) -> Markup {
    html! { time datetime=(at.to_rfc3339()) { (at.format("%-d %b %Y, %H:%M UTC")) } }
}

fn method_words(method: SignInMethod) -> &'static str {
    match method {
        SignInMethod::Totp => "your password and a code from your authenticator app",
        SignInMethod::Enrollment => "your password and a newly set-up authenticator app",
        SignInMethod::RecoveryCode => "your password and your recovery code",
        SignInMethod::EmailLink => "your password and a link mailed to you",
    }
}

fn assurance_words(aal: Assurance) -> &'static str {
    match aal {
        Assurance::Aal2 => "Two factors (assurance level AAL2).",
        Assurance::Aal1 => {
            "One factor and an inbox (assurance level AAL1): a mailed link proves no device."
        }
    }
}

async fn reset_page(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    browser: Browser,
) -> Response {
    let me = match signed_in_user(&ctx, &meta, &browser).await {
        Ok(me) => me,
        Err(response) => return response,
    };
    let services = ctx.bus.services();
    let needs_password =
        services.clock.now() - me.session.started_at > services.policy.reauthentication_window;
    reset_view(&ctx, &browser, &me, needs_password, None, StatusCode::OK)
}

fn reset_view(
    ctx: &ApiContext,
    browser: &Browser,
    me: &Me,
    needs_password: bool,
    error: Option<Problem>,
    status: StatusCode,
) -> Response {
    let csrf = Csrf::for_browser(ctx, browser);
    let page = Page {
        account: Some(&me.email),
        status,
        error,
        ..Page::new("Reset My Multi-Factor Authentication?")
    };
    page.render(
        ctx,
        &csrf,
        html! {
            p { "This forgets your authenticator app and your recovery code, and signs you out on every device, this one included. At your next sign-in you will set up a new authenticator app." }
            form method="post" action="/profile/reset-mfa" {
                (csrf.field())
                @if needs_password {
                    (views::password_field("current-password", Some(&format!(
                        "You signed in more than {} minutes ago: enter your password to confirm.",
                        ctx.bus.services().policy.reauthentication_window.num_minutes()
                    ))))
                }
                div.actions {
                    button.danger type="submit" { "OK" }
                    a.button.secondary href="/profile" { "Cancel" }
                }
            }
        },
    )
}

async fn reset_mfa(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    form: Form<ResetForm>,
) -> Response {
    let Form { browser, value } = form;
    let Some(token) = &browser.session else {
        return see_other("/sign-in");
    };
    let password = Some(value.password.as_str()).filter(|p| !p.is_empty());
    match ctx.reset_mfa(&meta, token, password).await {
        Ok(_) => {
            let mut response = see_other("/sign-in?notice=mfa-reset");
            clear_cookie(&ctx, &mut response, CookieName::Session);
            clear_cookie(&ctx, &mut response, CookieName::Csrf);
            response
        }
        Err(err) => match failure(&err, Step::Password) {
            Failure::Go(to) => go(&ctx, to),
            Failure::Say(problem) => match signed_in_user(&ctx, &meta, &browser).await {
                Ok(me) => reset_view(&ctx, &browser, &me, true, Some(problem), err.status()),
                Err(response) => response,
            },
        },
    }
}

async fn sign_out(
    State(ctx): State<ApiContext>,
    meta: RequestMeta,
    form: Form<NoFields>,
) -> Response {
    let Form { browser, .. } = form;
    if let Some(token) = &browser.session {
        // A session that has already ended needs no ending.
        if let Err(err) = ctx.logout(&meta, token).await {
            tracing::debug!(
                problem = err.slug(),
                "sign-out of a session that was not live"
            );
        }
    }
    let mut response = see_other("/sign-in?notice=signed-out");
    for name in [CookieName::Session, CookieName::Login, CookieName::Csrf] {
        clear_cookie(&ctx, &mut response, name);
    }
    response
}

async fn stylesheet() -> Response {
    let mut response = views::STYLESHEET.into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}
