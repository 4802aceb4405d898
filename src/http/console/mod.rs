//! The web console: the whole sign-in journey as server-rendered pages on
//! top of the same operations as the JSON API. Every form is a POST with a
//! CSRF tag, answered by a redirect or a page. No script, but for the
//! WebAuthn ceremonies (`keys`), which only script can reach.
mod account;
pub(super) mod activity;
mod admin;
mod browser;
pub(super) mod identity;
mod keys;
pub(super) mod links;
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

use authledger_aggregates::{Assurance, SecondFactor, SignInMethod};
use browser::{
    clear_cookie, see_other, set_cookie, signed_out_to, Browser, CookieName, Csrf, Form,
};
use views::{grouped, wait_words, Page, Problem};

use super::{ApiContext, ApiError};
use crate::app::{
    AppError, Caller, Enrollment, FactorsOffered, Me, ResetDone, SignedIn, SignedInWithCode,
};
use crate::words;

/// What a console handler answers: the page, or where the browser goes
/// instead (with `?`).
type Answer = Result<Response, Response>;

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
        .route("/sign-in/cancel", post(cancel_sign_in))
        .route("/sign-in/key", get(keys::sign_in_page).post(keys::sign_in))
        .route(
            "/sign-in/enroll/key",
            get(keys::enroll_page).post(keys::enroll),
        )
        .route(
            "/profile/authenticators/key",
            get(keys::add_key_page).post(keys::add_key),
        )
        .route(
            "/profile/authenticators/app",
            get(keys::add_app_page).post(keys::add_app),
        )
        .route("/profile/authenticators/app/new", post(keys::begin_app))
        .route(
            "/profile/authenticators/{id}/remove",
            get(keys::remove_page).post(keys::remove),
        )
        .route("/verify-email", post(links::verify_email))
        .route(
            "/forgot-password",
            get(links::forgot_page).post(links::forgot),
        )
        .route("/reset-password", post(links::reset_password))
        .route("/mfa-reset/deny", post(links::deny_mfa_reset))
        .route("/profile", get(profile_page))
        .route("/profile/reset-mfa", get(reset_page).post(reset_mfa))
        .route("/profile/reset-mfa/cancel", post(account::cancel_mfa_reset))
        .route("/profile/sessions/end", post(account::end_session))
        .route("/profile/activity", get(activity::activity_page))
        .route("/profile/activity/report", post(activity::report))
        .route("/report", post(activity::report_by_link))
        .route(
            "/profile/sessions/end-others",
            post(account::end_other_sessions),
        )
        .route(
            "/profile/password",
            get(account::password_page).post(account::change_password),
        )
        .route(
            "/profile/recovery-code",
            get(account::recovery_code_page).post(account::new_recovery_code),
        )
        .route(
            "/profile/email",
            get(identity::change_page).post(identity::change),
        )
        .route(
            "/profile/delete",
            get(identity::erase_page).post(identity::erase),
        )
        .route("/email/confirm", post(identity::confirm))
        .route("/email/revert", post(identity::revert))
        .route("/sign-out", post(sign_out))
        .merge(admin::routes())
        .route("/assets/console.css", get(stylesheet))
        .route("/assets/webauthn.js", get(script))
}

const EXPIRED: &str = "/sign-in?notice=expired";
const ATTEMPT_OVER: &str = "/sign-in?notice=attempt-over";
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
    /// The sign-in attempt is used up: a page saying so, and when the next
    /// one can begin.
    Over(Problem),
}

fn failure(err: &AppError, step: Step) -> Failure {
    use AppError as E;
    let say = |message: &str| {
        Failure::Say(Problem {
            message: message.to_owned(),
            retry_after: None,
        })
    };
    if let Some(dead) = links::dead_link(err) {
        return say(&format!("{} {}", dead.what, dead.then));
    }
    match err {
        E::InvalidLoginToken | E::LoginAttemptInvalid => Failure::Go(EXPIRED),
        E::AttemptExhausted { retry: None } => Failure::Go(ATTEMPT_OVER),
        E::AttemptExhausted {
            retry: Some((_, seconds)),
        } => Failure::Over(Problem {
            message: format!(
                "Too many wrong codes: this sign-in is over. Sign in again {}; until then the password step answers as if the password were wrong.",
                wait_words(*seconds)
            ),
            retry_after: Some(*seconds),
        }),
        E::EmailLinkUnavailable => say(EMAIL_LINK_OFF),
        E::SecondFactorRequired => say("This needs a sign-in with your authenticator app or your recovery code. Sign out, then sign in with one of them."),
        E::NoPendingMfaReset => say("No reset of your multi-factor authentication is waiting."),
        E::SameEmail => say("That is already your address."),
        E::ErasureNotConfirmed => say("Type your account's address exactly, to confirm."),
        E::UnknownSession => say("That session has already ended."),
        E::AlreadyReported => say("This was reported already. If you still see activity that is not yours, sign in and change your password."),
        E::NotReportable | E::UnknownActivity => say("Only a sign-in or a change of your credentials in your security activity can be reported."),
        E::AlreadySuspended => say("This account is suspended already."),
        E::NotSuspended => say("This account is not suspended."),
        E::NotLocked => say("This account is neither locked nor throttled."),
        E::AlreadyVerified => say("This account's address is confirmed already."),
        E::VerificationMailsExhausted => say("Three confirmation mails went to this address in the last hour. Try again later."),
        E::InvalidReason(_) => say("Give a reason of 1 to 500 characters, on one line."),
        E::UnknownUser => say("There is no such account, or it was erased."),
        E::Forbidden => say("Your credential may read these pages but not act on them."),
        E::Unauthenticated => Failure::Go(SESSION_ENDED),
        E::EnrollmentRequired | E::EnrollmentNotStarted => Failure::Go("/sign-in/enroll"),
        E::AlreadyEnrolled => Failure::Go("/sign-in/code"),
        E::Throttled {
            retry_after_secs, ..
        } => Failure::Say(Problem {
            message: format!(
                "Too many wrong tries. Try again {}.",
                wait_words(*retry_after_secs)
            ),
            retry_after: Some(*retry_after_secs),
        }),
        E::AccountLocked => say("This account is locked after too many failed sign-ins. An administrator can unlock it."),
        E::IntegrityFailure => say("This account's records failed a safety check, so nothing can be done with it until an administrator has looked. They have been alerted."),
        E::InvalidCredentials => say("The email or the password is not right."),
        E::InvalidEmail(why) => say(&format!("Enter an email address like name@example.com: {why}.")),
        E::UnacceptablePassword(why) if step == Step::Register => {
            say(&format!("Choose another password: {why}."))
        }
        E::UnacceptablePassword(_) | E::WrongPassword => say("That password is not right."),
        E::EmailTaken => say("An account with this email already exists. Sign in instead."),
        E::RegistrationClosed => say("This service does not take new accounts."),
        E::InvalidCodeFormat if step == Step::RecoveryCode => {
            say("Enter the recovery code exactly as it was shown to you.")
        }
        E::InvalidCodeFormat => say("Enter the 6 digits your authenticator app shows now."),
        E::InvalidCode if step == Step::RecoveryCode => say("That recovery code is not right."),
        E::InvalidCode => say("That code is not right. Codes change every 30 seconds: enter the one your app shows now."),
        E::ReauthenticationRequired => say("Enter your password to confirm."),
        E::Contended => say("Your account changed at the same moment. Try again."),
        E::Overloaded { retry_after_secs } => Failure::Say(Problem {
            message: format!(
                "We are busy right now. Try again {}.",
                wait_words(*retry_after_secs)
            ),
            retry_after: Some(*retry_after_secs),
        }),
        _ => say("Something went wrong on our side. Try again in a moment."),
    }
}

/// A refusal as a page: the browser is sent on where that helps, or the
/// page `stay` renders, given the status and the problem in plain words.
fn refused(
    ctx: &ApiContext,
    err: &AppError,
    step: Step,
    stay: impl FnOnce(StatusCode, Problem) -> Response,
) -> Response {
    // Also where the causes of the service's own failures are logged.
    let status = ApiError::from(err).status();
    match failure(err, step) {
        Failure::Go(to) => go(ctx, to),
        Failure::Say(problem) => stay(status, problem),
        Failure::Over(problem) => {
            let page = Page {
                status,
                error: Some(problem),
                ..Page::new("That sign-in is over")
            };
            // No form on it, so no CSRF tag: the browser's nonce stays.
            let mut response = page.render(
                &Markup::default(),
                html! { p { a.button href="/sign-in" { "Back to sign in" } } },
            );
            clear_cookie(ctx, &mut response, CookieName::Login);
            response
        }
    }
}

/// What a browser over its rate limit sees: the wait in words, as on the
/// throttled page. No form on it, so no CSRF tag.
pub(super) fn rate_limited_page(seconds: i64) -> Response {
    let page = Page {
        status: StatusCode::TOO_MANY_REQUESTS,
        error: Some(Problem {
            message: format!(
                "Too many requests from your network. Try again {}.",
                wait_words(seconds)
            ),
            retry_after: Some(seconds),
        }),
        ..Page::new("Slow down")
    };
    page.render(
        &Markup::default(),
        html! { p { a href="/" { "Back to the start" } } },
    )
}

/// What a browser whose form took too long to arrive sees.
pub(super) fn too_slow_page() -> Response {
    let page = Page {
        status: StatusCode::REQUEST_TIMEOUT,
        ..Page::new("That took too long")
    };
    page.render(
        &Markup::default(),
        views::explanation("The form did not arrive in time. Go back and try again."),
    )
}

/// The refusal in plain words, for pages that stay where they are.
fn say(err: &AppError, step: Step) -> Problem {
    match failure(err, step) {
        Failure::Say(problem) | Failure::Over(problem) => problem,
        Failure::Go(_) => Problem {
            message: "That did not work. Start again from the sign-in page.".to_owned(),
            retry_after: None,
        },
    }
}

/// Logs a refusal no page shows: the service's own failures with their
/// cause, anything else as a detail.
fn log_unshown(err: &AppError, what: &'static str) {
    match err {
        AppError::Internal(cause) | AppError::Unavailable { cause, .. } => {
            tracing::error!(error = format!("{cause:#}"), what);
        }
        other => tracing::debug!(error = %other, what),
    }
}

/// Where a browser without the cookie a page needs is sent instead.
struct Redirect(&'static str);

impl From<Redirect> for Response {
    fn from(Redirect(to): Redirect) -> Self {
        see_other(to)
    }
}

/// The login attempt this browser is in, or the way back to the start.
fn pending(browser: &Browser) -> Result<&str, Redirect> {
    browser.login.as_deref().ok_or(Redirect(EXPIRED))
}

/// The session this browser holds, or the way to sign in.
fn session(browser: &Browser) -> Result<&str, Redirect> {
    browser.session.as_deref().ok_or(Redirect("/sign-in"))
}

/// Renders `page` around `main`, with this browser's CSRF tag in every
/// form (and the nonce cookie when the browser had none).
fn show(
    ctx: &ApiContext,
    browser: &Browser,
    page: Page<'_>,
    main: impl FnOnce(&Csrf) -> Markup,
) -> Response {
    let csrf = Csrf::for_browser(ctx, browser);
    let main = main(&csrf);
    let mut response = page.render(&csrf.field(), main);
    csrf.set_cookie(ctx, &mut response);
    response
}

/// A page that only explains what went wrong.
fn problem_page(
    ctx: &ApiContext,
    browser: &Browser,
    status: StatusCode,
    title: &str,
    explanation: &str,
) -> Response {
    let page = Page {
        status,
        ..Page::new(title)
    };
    show(ctx, browser, page, |_| views::explanation(explanation))
}

/// Sets the session cookie and forgets the login attempt. The CSRF nonce
/// is dropped too, so the next page starts a new one: a tag seen before
/// the sign-in is worth nothing after it.
fn signed_in(ctx: &ApiContext, session: &SignedIn, mut response: Response) -> Response {
    set_cookie(
        ctx,
        &mut response,
        CookieName::Session,
        &session.session_token,
        Some(session.expires_at),
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
        "mfa-reset" => "Your multi-factor authentication was reset and you are signed out everywhere. At your next sign-in you will set up a new authenticator.",
        "signed-out" => "You are signed out.",
        "sign-in-cancelled" => "You left that sign-in. Sign in again, with this account or another one. A sign-in link already mailed for it still works until it expires.",
        "expired" => "That sign-in is over: it expired or had too many wrong codes. Sign in again.",
        "attempt-over" => "Too many wrong codes: that sign-in is over. Sign in again.",
        "password-reset" => "Your new password is set and you are signed out everywhere. Sign in with it and your authenticator app.",
        "reset-cancelled" => "The reset of your multi-factor authentication is cancelled. You had signed in with a mailed link, and every such session has ended: sign in again with your authenticator app.",
        "reset-denied" => "The reset of your multi-factor authentication was cancelled and every session of your account has ended. If you did not ask for it, someone may know your password: change it after you sign in.",
        "session-ended" => "Your session has ended. Sign in again.",
        "email-restored" => "Your address is restored and every session of your account has ended. Whoever changed it was signed in to your account: use \"Forgot password?\" below to set a new password.",
        "account-erased" => "Your account is deleted. Its personal data is erased, and you are signed out everywhere.",
        "reported" => "Thank you: it is reported, and every session of your account has ended. Sign in and change your password: whoever it was knew it.",
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
    show(ctx, browser, page, |csrf| {
        html! {
            form method="post" action="/sign-in" {
                (csrf.field())
                (views::email_field(email))
                (views::password_field("current-password", None))
                button type="submit" { "Sign in" }
            }
            p { a href="/forgot-password" { "Forgot password?" } }
            @if ctx.app.registration_open() {
                p { "New here? " a href="/register" { "Create account" } }
            }
        }
    })
}

async fn sign_in(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<CredentialsForm>,
) -> Response {
    let Form { browser, value } = form;
    // The browser's device cookie, or a new one: a sign-in it completes
    // makes it a known device of the account, which a stranger's guesses
    // do not hold back.
    let (device, new_device) = match &browser.device {
        Some(device) => (device.clone(), None),
        None => {
            let device = ctx.app.new_device_cookie();
            (device.clone(), Some(device))
        }
    };
    let keep_device = |mut response: Response| {
        if let Some(device) = &new_device {
            let lasts = ctx.app.now() + chrono::Duration::days(DEVICE_COOKIE_DAYS);
            set_cookie(&ctx, &mut response, CookieName::Device, device, Some(lasts));
        }
        response
    };
    let opened = match ctx
        .app
        .submit_password(&caller, &value.email, &value.password, Some(&device))
        .await
    {
        Ok(opened) => opened,
        Err(err) => {
            let page = Page {
                status: ApiError::from(&err).status(),
                error: Some(say(&err, Step::Password)),
                ..Page::new("Sign in")
            };
            return keep_device(sign_in_view(&ctx, &browser, page, &value.email));
        }
    };
    let next = match opened.next {
        SecondFactor::Totp if opened.webauthn_available && !opened.totp_available => "/sign-in/key",
        SecondFactor::Totp => "/sign-in/code",
        SecondFactor::Enroll => {
            // Begun now, so the next page can show the QR code; if this
            // fails, that page offers to begin again.
            if let Err(err) = ctx.app.begin_enrollment(&caller, &opened.login_token).await {
                log_unshown(&err, "enrollment not begun at sign-in");
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
    keep_device(response)
}

/// How long a browser stays a known device without signing in again.
const DEVICE_COOKIE_DAYS: i64 = 400;

async fn register_page(State(ctx): State<ApiContext>, browser: Browser) -> Response {
    if !ctx.app.registration_open() {
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
    show(ctx, browser, page, |csrf| {
        html! {
            form method="post" action="/register" {
                (csrf.field())
                (views::email_field(email))
                (views::password_field("new-password", Some("At least 8 characters. A few unrelated words make a strong one.")))
                button type="submit" { "Create account" }
            }
            p { "Already have an account? " a href="/sign-in" { "Sign in" } }
        }
    })
}

async fn register(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<CredentialsForm>,
) -> Response {
    let Form { browser, value } = form;
    if !ctx.app.registration_open() {
        return registration_closed(&ctx, &browser);
    }
    match ctx
        .app
        .register(&caller, &value.email, &value.password)
        .await
    {
        Ok(()) => links::check_your_inbox(
            &ctx,
            &browser,
            &format!(
                "If this address can take a new account, we sent a link to confirm it. Open it to finish creating your account; it works for {}. Already have an account? Sign in, or use \"Forgot password?\" on the sign-in page.",
                words::span(ctx.app.policy().email_verification_ttl)
            ),
        ),
        Err(err) => {
            let page = Page {
                status: ApiError::from(&err).status(),
                error: Some(say(&err, Step::Register)),
                ..Page::new("Create account")
            };
            register_view(&ctx, &browser, page, &value.email)
        }
    }
}

async fn code_page(State(ctx): State<ApiContext>, browser: Browser) -> Answer {
    let login = pending(&browser)?;
    let key = offered(&ctx, login).await.webauthn;
    Ok(code_view(&ctx, &browser, Page::new("Enter your code"), key))
}

/// Which kinds of authenticator the sign-in's pages offer; a failure shows
/// up when a factor is sent.
async fn offered(ctx: &ApiContext, login: &str) -> FactorsOffered {
    ctx.app.factors_offered(login).await.unwrap_or_default()
}

fn code_view(ctx: &ApiContext, browser: &Browser, page: Page<'_>, key: bool) -> Response {
    show(ctx, browser, page, |csrf| {
        html! {
            form method="post" action="/sign-in/code" {
                (csrf.field())
                (views::totp_field())
                button type="submit" { "Continue" }
            }
            @if key {
                p { a.button.secondary href="/sign-in/key" { "Use your security key or passkey" } }
            }
            p { a href="/sign-in/other" { "Try another method" } }
            (views::cancel_sign_in(&csrf.field()))
        }
    })
}

/// The page again, saying what went wrong.
fn again<'a>(title: &'a str, status: StatusCode, problem: Problem) -> Page<'a> {
    Page {
        status,
        error: Some(problem),
        ..Page::new(title)
    }
}

async fn submit_code(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<CodeForm>,
) -> Answer {
    let Form { browser, value } = form;
    let login = pending(&browser)?;
    let err = match ctx.app.submit_totp(&caller, login, &value.code).await {
        Ok(session) => return Ok(signed_in(&ctx, &session, see_other("/profile"))),
        Err(err) => err,
    };
    let key = offered(&ctx, login).await.webauthn;
    Ok(refused(&ctx, &err, Step::Totp, |status, problem| {
        code_view(
            &ctx,
            &browser,
            again("Enter your code", status, problem),
            key,
        )
    }))
}

async fn other_methods_page(State(ctx): State<ApiContext>, browser: Browser) -> Answer {
    let login = pending(&browser)?;
    let email = match ctx.app.email_link_offered(login).await {
        Ok(offered) => offered,
        Err(err) => {
            return Ok(refused(&ctx, &err, Step::Other, |status, problem| {
                problem_page(
                    &ctx,
                    &browser,
                    status,
                    "Try another method",
                    &problem.message,
                )
            }))
        }
    };
    let factors = offered(&ctx, login).await;
    Ok(other_methods_view(
        &ctx,
        &browser,
        Page::new("Try another method"),
        email,
        factors,
    ))
}

/// Why "Email" is not offered, in the user's words.
const EMAIL_LINK_OFF: &str = "Signing in by email is off: your password was reset with a mailed link. Use your authenticator app or your recovery code; after that, email works again.";

fn other_methods_view(
    ctx: &ApiContext,
    browser: &Browser,
    page: Page<'_>,
    email: bool,
    factors: FactorsOffered,
) -> Response {
    show(ctx, browser, page, |csrf| {
        html! {
            ul.choices {
                li {
                    @if email {
                        form method="post" action="/sign-in/email" {
                            (csrf.field())
                            button type="submit" aria-describedby="email-hint" { "Email" }
                        }
                        p.hint #email-hint { "We mail a one-time sign-in link to the address on your account." }
                    } @else {
                        p #email-off { (EMAIL_LINK_OFF) }
                    }
                }
                li {
                    a.button href="/sign-in/recovery" aria-describedby="recovery-hint" { "Recovery code" }
                    p.hint #recovery-hint { "The code you saved when you set up your first authenticator." }
                }
            }
            @if factors.webauthn {
                p { a href="/sign-in/key" { "Use your security key or passkey" } }
            }
            @if factors.totp {
                p { a href="/sign-in/code" { "Use your authenticator app" } }
            }
            (views::cancel_sign_in(&csrf.field()))
        }
    })
}

async fn send_email_link(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<NoFields>,
) -> Answer {
    let Form { browser, .. } = form;
    let login = pending(&browser)?;
    Ok(match ctx.app.request_email_link(&caller, login).await {
        Ok(()) => show(&ctx, &browser, Page::new("Check your inbox"), |csrf| {
            html! {
                p {
                    "We sent a sign-in link to the address on your account. It works once, for "
                    (words::span(ctx.app.policy().email_link_ttl))
                    ". Open it in this browser to finish signing in."
                }
                p { "No mail after a few minutes? Look in your spam folder, or " a href="/sign-in/other" { "try another method" } "." }
                (views::cancel_sign_in(&csrf.field()))
            }
        }),
        Err(err) => {
            let factors = offered(&ctx, login).await;
            refused(&ctx, &err, Step::Other, |status, problem| {
                let email = !matches!(err, AppError::EmailLinkUnavailable);
                other_methods_view(
                    &ctx,
                    &browser,
                    again("Try another method", status, problem),
                    email,
                    factors,
                )
            })
        }
    })
}

async fn redeem_email_link(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<TokenForm>,
) -> Response {
    let Form { browser, value } = form;
    match ctx.app.redeem_email_link(&caller, &value.token).await {
        Ok(session) => signed_in(&ctx, &session, see_other("/profile")),
        Err(err) => links::link_refused(&ctx, &caller, &browser, &err).await,
    }
}

async fn recovery_page(State(ctx): State<ApiContext>, browser: Browser) -> Answer {
    pending(&browser)?;
    Ok(recovery_view(
        &ctx,
        &browser,
        Page::new("Use your recovery code"),
    ))
}

fn recovery_view(ctx: &ApiContext, browser: &Browser, page: Page<'_>) -> Response {
    show(ctx, browser, page, |csrf| {
        html! {
            form method="post" action="/sign-in/recovery" {
                (csrf.field())
                label for="code" { "Recovery code" }
                p.hint #code-hint { "The code you saved when you set up your first authenticator. It works once; you get a new one." }
                input #code type="text" name="code" autocomplete="off" spellcheck="false"
                    autocapitalize="characters" required aria-describedby="code-hint";
                button type="submit" { "Sign in" }
            }
            p { a href="/sign-in/other" { "Try another method" } }
            (views::cancel_sign_in(&csrf.field()))
        }
    })
}

async fn submit_recovery_code(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<CodeForm>,
) -> Answer {
    let Form { browser, value } = form;
    let login = pending(&browser)?;
    Ok(
        match ctx.app.use_recovery_code(&caller, login, &value.code).await {
            Ok(granted) => recovery_code_issued(
                &ctx,
                &browser,
                "Save your new recovery code",
                "You are signed in, and the code you used is spent.",
                &granted,
            ),
            Err(err) => refused(&ctx, &err, Step::RecoveryCode, |status, problem| {
                recovery_view(
                    &ctx,
                    &browser,
                    again("Use your recovery code", status, problem),
                )
            }),
        },
    )
}

/// A sign-in that issued a recovery code: the code, shown once, on the
/// answer that also sets the session cookie.
fn recovery_code_issued(
    ctx: &ApiContext,
    browser: &Browser,
    title: &str,
    lead: &str,
    granted: &SignedInWithCode,
) -> Response {
    let page = show(ctx, browser, Page::new(title), |_| {
        html! {
            p { (lead) }
            (views::recovery_code_shown(&granted.recovery_code))
        }
    });
    signed_in(ctx, &granted.session, page)
}

const ENROLL_TITLE: &str = "Set up your authenticator app";

async fn enroll_page(State(ctx): State<ApiContext>, browser: Browser) -> Answer {
    let login = pending(&browser)?;
    Ok(match ctx.app.pending_enrollment(login).await {
        Ok(Some(enrollment)) => enroll_view(&ctx, &browser, Page::new(ENROLL_TITLE), &enrollment),
        Ok(None) => show(&ctx, &browser, Page::new(ENROLL_TITLE), |csrf| {
            html! {
                p { "Your account needs an authenticator app before you can sign in." }
                form method="post" action="/sign-in/enroll/new" {
                    (csrf.field())
                    button type="submit" { "Show the QR code" }
                }
                (views::cancel_sign_in(&csrf.field()))
            }
        }),
        Err(err) => refused(&ctx, &err, Step::Totp, |status, problem| {
            problem_page(&ctx, &browser, status, ENROLL_TITLE, &problem.message)
        }),
    })
}

fn enroll_view(
    ctx: &ApiContext,
    browser: &Browser,
    page: Page<'_>,
    enrollment: &Enrollment,
) -> Response {
    let qr = format!(
        "data:image/svg+xml;base64,{}",
        STANDARD.encode(&enrollment.qr_svg)
    );
    show(ctx, browser, page, |csrf| {
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
            @if ctx.app.webauthn_available() {
                p { a href="/sign-in/enroll/key" { "Use a security key or passkey instead" } }
            }
            (views::cancel_sign_in(&csrf.field()))
        }
    })
}

async fn new_enrollment(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<NoFields>,
) -> Answer {
    let Form { browser, .. } = form;
    let login = pending(&browser)?;
    Ok(match ctx.app.begin_enrollment(&caller, login).await {
        Ok(_) => see_other("/sign-in/enroll"),
        Err(err) => refused(&ctx, &err, Step::Totp, |status, problem| {
            problem_page(&ctx, &browser, status, ENROLL_TITLE, &problem.message)
        }),
    })
}

async fn confirm_enrollment(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<CodeForm>,
) -> Answer {
    let Form { browser, value } = form;
    let login = pending(&browser)?;
    let err = match ctx
        .app
        .confirm_enrollment(&caller, login, &value.code)
        .await
    {
        Ok(granted) => {
            return Ok(recovery_code_issued(
                &ctx,
                &browser,
                "Save your recovery code",
                "Your authenticator app is set up and you are signed in.",
                &granted,
            ))
        }
        Err(err) => err,
    };
    // The same QR code again, with what went wrong.
    let enrollment = match ctx.app.pending_enrollment(login).await {
        Ok(Some(enrollment)) => Some(enrollment),
        _ => None,
    };
    Ok(refused(
        &ctx,
        &err,
        Step::Totp,
        |status, problem| match enrollment {
            Some(enrollment) => enroll_view(
                &ctx,
                &browser,
                again(ENROLL_TITLE, status, problem),
                &enrollment,
            ),
            None => see_other("/sign-in/enroll"),
        },
    ))
}

/// The profile of the browser's session, or where to send a browser that
/// has none.
async fn signed_in_user(
    ctx: &ApiContext,
    caller: &Caller,
    browser: &Browser,
) -> Result<Me, Response> {
    let token = session(browser)?;
    ctx.app.profile(caller, token).await.map_err(|err| {
        refused(ctx, &err, Step::Other, |status, problem| {
            problem_page(
                ctx,
                browser,
                status,
                "Something went wrong",
                &problem.message,
            )
        })
    })
}

fn profile_notice(query: Option<&str>) -> Option<&'static str> {
    let key = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("notice="))?;
    Some(match key {
        "reset-pending" => "Your reset is waiting: because you signed in with a mailed link, it takes effect after a waiting period. We mailed you about it. Signing in with your authenticator app cancels it.",
        "reset-cancelled" => "The reset of your multi-factor authentication is cancelled.",
        "password-changed" => "Your password is changed. Your other sessions have ended.",
        "session-ended" => "That session has ended.",
        "others-ended" => "You are signed out everywhere else.",
        "authenticator-added" => "It is added: it signs you in as well as your other authenticators. We mailed you about it.",
        "authenticator-removed" => "It is removed and no longer signs you in. We mailed you about it.",
        "last-authenticator-removed" => "Your last authenticator is removed, and your recovery code with it. Your next sign-in sets up a new authenticator.",
        _ => return None,
    })
}

async fn profile_page(
    State(ctx): State<ApiContext>,
    caller: Caller,
    browser: Browser,
    RawQuery(query): RawQuery,
) -> Answer {
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    let sessions = account::sessions_of(&ctx, &caller, &browser).await?;
    let authenticators = &me.authenticators;
    let page = Page {
        account: Some(&me.email),
        notice: profile_notice(query.as_deref()),
        ..Page::new("My Profile")
    };
    Ok(show(&ctx, &browser, page, |csrf| {
        html! {
            dl.facts {
                dt { "Email" }
                dd #profile-email { (me.email) }
                dt { "Multi-factor authentication" }
                dd #mfa-status {
                    (keys::mfa_summary(authenticators))
                    @if let Some(at) = me.enrolled_at { ", since " (when(at)) }
                }
                dt { "This session" }
                dd #session-method { "Signed in with " (method_words(me.session.method)) ". " (assurance_words(me.session.aal)) }
                dd {
                    "Ends " (when(me.session.expires_at)) ", or after "
                    (ctx.app.policy().session_idle.num_minutes()) " minutes without use."
                }
            }
            (keys::authenticators_section(&ctx, &me, authenticators))
            h2 { "Lost your phone?" }
            @if let Some(at) = me.pending_mfa_reset {
                p #pending-reset {
                    "A reset of your multi-factor authentication is waiting. It takes effect " (when(at))
                    ". Signing in with your authenticator app or your recovery code cancels it."
                }
                form method="post" action="/profile/reset-mfa/cancel" {
                    (csrf.field())
                    button type="submit" { "Cancel the reset" }
                }
            } @else {
                p { "If one authenticator is lost or someone else may have it, remove it above. If none you can still use is left, reset your multi-factor authentication: every authenticator is forgotten, you are signed out everywhere, and you set up a new one at your next sign-in." }
                p { a.button.danger href="/profile/reset-mfa" { "Reset My Multi-Factor Authentication" } }
            }
            (account::sessions_section(&sessions, me.session.aal, csrf))
            h2 { "Security activity" }
            p { "Every sign-in, failed try and change on your account, and where it came from. If something was not you, say so there." }
            p { a.button href="/profile/activity" { "Security activity" } }
            h2 { "Password and recovery code" }
            ul.choices {
                li { a.button href="/profile/password" { "Change password" } }
                @if me.enrolled_at.is_some() {
                    li { a.button href="/profile/recovery-code" { "New recovery code" } }
                }
            }
            h2 { "Your account" }
            ul.choices {
                li { a.button href="/profile/email" { "Change email address" } }
                li { a.button.danger href="/profile/delete" { "Delete my account" } }
            }
        }
    }))
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
        SignInMethod::WebAuthn => "your password and a security key or passkey",
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

async fn reset_page(State(ctx): State<ApiContext>, caller: Caller, browser: Browser) -> Answer {
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    Ok(reset_view(&ctx, &browser, &me, Page::new(RESET_TITLE)))
}

const RESET_TITLE: &str = "Reset My Multi-Factor Authentication?";

fn reset_view(ctx: &ApiContext, browser: &Browser, me: &Me, page: Page<'_>) -> Response {
    let page = Page {
        account: Some(&me.email),
        ..page
    };
    show(ctx, browser, page, |csrf| {
        html! {
            p { "This forgets your authenticator app and your recovery code, and signs you out on every device, this one included. At your next sign-in you will set up a new authenticator app." }
            form method="post" action="/profile/reset-mfa" {
                (csrf.field())
                (views::password_again(me.reauthentication_required, ctx.app.policy().reauthentication_window))
                div.actions {
                    button.danger type="submit" { "Reset my MFA" }
                    a.button.secondary href="/profile" { "Cancel" }
                }
            }
        }
    })
}

async fn reset_mfa(State(ctx): State<ApiContext>, caller: Caller, form: Form<ResetForm>) -> Answer {
    let Form { browser, value } = form;
    let token = session(&browser)?;
    let password = Some(value.password.as_str()).filter(|p| !p.is_empty());
    let err = match ctx.app.reset_mfa(&caller, token, password).await {
        Ok(ResetDone::Pending { .. }) => return Ok(see_other("/profile?notice=reset-pending")),
        Ok(ResetDone::Reset { .. }) => {
            let mut response = see_other("/sign-in?notice=mfa-reset");
            clear_cookie(&ctx, &mut response, CookieName::Session);
            clear_cookie(&ctx, &mut response, CookieName::Csrf);
            return Ok(response);
        }
        Err(err) => err,
    };
    let me = match failure(&err, Step::Password) {
        Failure::Go(to) => return Ok(go(&ctx, to)),
        Failure::Say(_) | Failure::Over(_) => signed_in_user(&ctx, &caller, &browser).await?,
    };
    Ok(refused(&ctx, &err, Step::Password, |status, problem| {
        reset_view(&ctx, &browser, &me, again(RESET_TITLE, status, problem))
    }))
}

async fn sign_out(State(ctx): State<ApiContext>, caller: Caller, form: Form<NoFields>) -> Response {
    let Form { browser, .. } = form;
    if let Some(token) = &browser.session {
        // A session that has already ended needs no ending.
        if let Err(err) = ctx.app.logout(&caller, token).await {
            log_unshown(&err, "sign-out of a session that was not live");
        }
    }
    signed_out_to(&ctx, "signed-out")
}

/// "Cancel and use another account", on the pages after the password: the
/// browser forgets its login attempt, as it does when one is over, and
/// starts again. The attempt's token lived only in that cookie, so nothing
/// can finish it now; it runs out on its own. A form with its tag, so that
/// another site cannot end a visitor's sign-in.
async fn cancel_sign_in(State(ctx): State<ApiContext>, _form: Form<NoFields>) -> Response {
    let mut response = see_other("/sign-in?notice=sign-in-cancelled");
    clear_cookie(&ctx, &mut response, CookieName::Login);
    response
}

async fn script() -> Response {
    let mut response = views::WEBAUTHN_SCRIPT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
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
