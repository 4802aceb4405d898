//! The pages mailed links open, and what their buttons post. Opening a
//! link spends nothing (mail scanners prefetch links); only the button
//! does. Each page names the account it acts on.
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use utoipa::IntoParams;

use super::browser::{signed_out_to, Browser, Csrf, Form};
use super::views::{self, Page};
use super::{
    problem_page, refused, say, show, sign_in_view, ApiContext, CredentialsForm, Step, TokenForm,
};
use crate::app::{AppError, Caller, LinkKind};
use crate::http::ApiError;
use crate::words;

#[derive(Deserialize, IntoParams)]
pub struct LinkQuery {
    /// The token from the mailed link.
    token: Option<String>,
}

/// The page of a mailed link of `kind`: `body` gets the account's address,
/// the token and the CSRF tag; a token that is not such a link gets a page
/// saying it is broken, and one of a link that was used, has expired or
/// was superseded the page its button would have led to.
pub(super) async fn link_page(
    ctx: &ApiContext,
    caller: &Caller,
    browser: &Browser,
    kind: LinkKind,
    query: Result<Query<LinkQuery>, QueryRejection>,
    title: &str,
    body: impl FnOnce(&str, &str, &Csrf) -> Markup,
) -> Response {
    let token = query.ok().and_then(|Query(q)| q.token).unwrap_or_default();
    match ctx.app.link_account(kind, &token).await {
        Ok(Some(account)) => show(ctx, browser, Page::new(title), |csrf| {
            body(&account, &token, csrf)
        }),
        Ok(None) => problem_page(
            ctx,
            browser,
            StatusCode::BAD_REQUEST,
            "This link is broken",
            "The link is incomplete. Open it from the mail again.",
        ),
        Err(err) => link_refused(ctx, caller, browser, &err).await,
    }
}

/// The page a mailed sign-in link opens; its button POSTs the redeem,
/// which signs the browser in.
#[utoipa::path(get, path = "/v1/login/email-link", tag = "login",
    params(LinkQuery),
    responses(
        (status = 200, description = "A confirm page", content_type = "text/html"),
        (status = 400, description = "A page saying the link is broken", content_type = "text/html"),
        (status = 410, description = "A page saying the link was used, has expired or was superseded", content_type = "text/html"),
        (status = 503, description = "A page saying the link cannot be checked now", content_type = "text/html"),
    ))]
pub async fn email_link_page(
    State(ctx): State<ApiContext>,
    caller: Caller,
    browser: Browser,
    query: Result<Query<LinkQuery>, QueryRejection>,
) -> Response {
    link_page(&ctx, &caller, &browser, LinkKind::SignIn, query, "Finish signing in", |account, token, csrf| {
        html! {
            p { "Continue to finish signing in as " strong #link-account { (account) } "." }
            form method="post" action="/sign-in/email-link" {
                (csrf.field())
                input type="hidden" name="token" value=(token);
                button type="submit" { "Sign in" }
            }
            p { "If you did not try to sign in, or this is not your account, close this page: someone knows your password. Sign in with your authenticator app and change it." }
        }
    })
    .await
}

/// The page the link mailed at registration opens; its button confirms
/// the address.
#[utoipa::path(get, path = "/v1/users/verify", tag = "users",
    params(LinkQuery),
    responses(
        (status = 200, description = "A confirm page", content_type = "text/html"),
        (status = 400, description = "A page saying the link is broken", content_type = "text/html"),
        (status = 410, description = "A page saying the link was used, has expired or was superseded", content_type = "text/html"),
    ))]
pub async fn verification_page(
    State(ctx): State<ApiContext>,
    caller: Caller,
    browser: Browser,
    query: Result<Query<LinkQuery>, QueryRejection>,
) -> Response {
    link_page(&ctx, &caller, &browser, LinkKind::Verification, query, "Confirm your email address", |account, token, csrf| {
        html! {
            p { "Confirm that " strong #link-account { (account) } " is your address, to finish creating your account." }
            form method="post" action="/verify-email" {
                (csrf.field())
                input type="hidden" name="token" value=(token);
                input type="hidden" name="email" value=(account) autocomplete="username";
                (views::password_field("current-password", Some("The password you chose when you created the account.")))
                button type="submit" { "Confirm" }
            }
            p { "If you did not create an account, close this page: nothing happens without the button." }
        }
    })
    .await
}

#[derive(Deserialize)]
pub(super) struct VerifyForm {
    token: String,
    /// The address the page named, to fill in the sign-in form that
    /// follows.
    #[serde(default)]
    email: String,
    password: String,
}

/// What the page after a confirmed address says above its sign-in form.
const ACCOUNT_READY: &str =
    "Your email address is confirmed. Sign in to set up your authenticator app.";

pub(super) async fn verify_email(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<VerifyForm>,
) -> Response {
    let Form { browser, value } = form;
    match ctx
        .app
        .verify_email(&caller, &value.token, &value.password)
        .await
    {
        // The sign-in form is the answer itself, filled with the address:
        // a redirect would have to carry the address in its URL, where
        // logs and the browser's history keep it.
        Ok(()) => {
            let page = Page {
                notice: Some(ACCOUNT_READY),
                ..Page::new("Your account is ready")
            };
            sign_in_view(&ctx, &browser, page, &value.email)
        }
        Err(err) => link_refused(&ctx, &caller, &browser, &err).await,
    }
}

/// A mailed link that cannot be used (any more), in plain words, and the
/// way on: to start again, or, for a browser that is signed in, to My
/// Profile rather than to a sign-in it does not need.
pub(super) async fn link_refused(
    ctx: &ApiContext,
    caller: &Caller,
    browser: &Browser,
    err: &AppError,
) -> Response {
    const TITLE: &str = "This link cannot be used";
    let status = ApiError::from(err).status();
    let Some(dead) = dead_link(err) else {
        return problem_page(ctx, browser, status, TITLE, &say(err, Step::Other).message);
    };
    let me = match &browser.session {
        // A session that has ended is no session: that reader starts again.
        Some(token) => ctx.app.profile(caller, token).await.ok(),
        None => None,
    };
    let page = Page {
        status,
        account: me.as_ref().map(|me| me.email.as_str()),
        ..Page::new(TITLE)
    };
    show(ctx, browser, page, |_| {
        html! {
            p #link-dead { (dead.what) }
            @if let Some(me) = &me {
                p #link-signed-in { "You are signed in as " strong { (me.email) } ", so you need not sign in again." }
                p { a.button href="/profile" { "Continue to My Profile" } }
            } @else {
                p { (dead.then) }
                p { a.button href=(dead.again.1) { (dead.again.0) } }
            }
        }
    })
}

/// A mailed link that can no longer be used: what became of it, what a
/// reader who is not signed in can do instead, and the button for that.
pub(super) struct DeadLink {
    pub what: &'static str,
    pub then: &'static str,
    again: (&'static str, &'static str),
}

/// What a refusal of a mailed link says, for the refusals that are about
/// the link itself; `None` for the others (a throttle, a locked account).
pub(super) fn dead_link(err: &AppError) -> Option<DeadLink> {
    use AppError as E;
    let dead = |what, then, again| Some(DeadLink { what, then, again });
    match err {
        E::InvalidLinkToken => dead(
            "This link is incomplete or was changed on its way.",
            "Open it from the mail again, or start again from the sign-in page.",
            ("Back to sign in", "/sign-in"),
        ),
        E::EmailLinkInvalid => dead(
            "This sign-in link was already used, has expired, or a newer one was sent.",
            "Start again with your email and password; \"Try another method\" mails a new link.",
            ("Start again", "/sign-in"),
        ),
        E::EmailVerificationInvalid => dead(
            "This confirmation link was already used, has expired, or a newer one was sent.",
            "If you confirmed your address already, sign in. If not, create the account again to get a new link.",
            ("Sign in", "/sign-in"),
        ),
        E::PasswordResetInvalid => dead(
            "This link to set a new password was already used, has expired, or a newer one was sent, or the password changed since.",
            "Ask for a new link.",
            ("Forgot password?", "/forgot-password"),
        ),
        E::MfaResetDenialInvalid => dead(
            "No reset of your multi-factor authentication is waiting for this link: it was already cancelled or has taken effect.",
            "Sign in to see where your account stands.",
            ("Sign in", "/sign-in"),
        ),
        E::EmailChangeInvalid => dead(
            "This link to confirm a new address was already used, has expired, or a newer one was sent.",
            "Sign in and ask again from My Profile.",
            ("Sign in", "/sign-in"),
        ),
        E::EmailChangeRevertInvalid => dead(
            "This link to undo a change of address was already used or has expired.",
            "Set a new password with \"Forgot password?\", or ask an administrator.",
            ("Forgot password?", "/forgot-password"),
        ),
        E::ReportLinkInvalid => dead(
            "This link to report a sign-in was already used or has expired.",
            "Sign in, then use \"This wasn't me\" on Security activity in My Profile.",
            ("Sign in", "/sign-in"),
        ),
        _ => None,
    }
}

/// A page saying a mail is on its way, whether or not one is.
pub(super) fn check_your_inbox(ctx: &ApiContext, browser: &Browser, text: &str) -> Response {
    show(ctx, browser, Page::new("Check your inbox"), |_| {
        html! {
            p { (text) }
            p { "No mail after a few minutes? Look in your spam folder." }
            p { a href="/sign-in" { "Back to sign in" } }
        }
    })
}

pub(super) async fn forgot_page(State(ctx): State<ApiContext>, browser: Browser) -> Response {
    forgot_view(&ctx, &browser, Page::new("Forgot your password?"), "")
}

fn forgot_view(ctx: &ApiContext, browser: &Browser, page: Page<'_>, email: &str) -> Response {
    show(ctx, browser, page, |csrf| {
        html! {
            p { "Enter the address of your account. If it has one, we mail a link to set a new password. You will still need your authenticator app or recovery code to sign in." }
            form method="post" action="/forgot-password" {
                (csrf.field())
                (views::email_field(email))
                button type="submit" { "Send the link" }
            }
            p { a href="/sign-in" { "Back to sign in" } }
        }
    })
}

#[derive(Deserialize)]
pub(super) struct EmailForm {
    email: String,
}

pub(super) async fn forgot(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<EmailForm>,
) -> Response {
    let Form { browser, value } = form;
    match ctx.app.forgot_password(&caller, &value.email).await {
        Ok(()) => check_your_inbox(
            &ctx,
            &browser,
            &format!(
                "If an account with a confirmed address exists for it, we sent a link to set a new password. It works once, for {}.",
                words::span(ctx.app.policy().password_reset_ttl)
            ),
        ),
        Err(err) => refused(&ctx, &err, Step::Other, |status, problem| {
            let page = Page {
                status,
                error: Some(problem),
                ..Page::new("Forgot your password?")
            };
            forgot_view(&ctx, &browser, page, &value.email)
        }),
    }
}

/// The page the forgotten-password link opens: a form for the new one.
#[utoipa::path(get, path = "/v1/password/reset", tag = "password",
    params(LinkQuery),
    responses(
        (status = 200, description = "A form for the new password", content_type = "text/html"),
        (status = 400, description = "A page saying the link is broken", content_type = "text/html"),
        (status = 410, description = "A page saying the link was used, has expired or was superseded", content_type = "text/html"),
    ))]
pub async fn password_reset_page(
    State(ctx): State<ApiContext>,
    caller: Caller,
    browser: Browser,
    query: Result<Query<LinkQuery>, QueryRejection>,
) -> Response {
    link_page(
        &ctx,
        &caller,
        &browser,
        LinkKind::PasswordReset,
        query,
        RESET_TITLE,
        reset_form,
    )
    .await
}

const RESET_TITLE: &str = "Set a new password";

fn reset_form(account: &str, token: &str, csrf: &Csrf) -> Markup {
    html! {
        p { "A new password for " strong #link-account { (account) } ". Every session of the account ends; then sign in with the new password and your authenticator app." }
        form method="post" action="/reset-password" {
            (csrf.field())
            input type="hidden" name="token" value=(token);
            input type="hidden" name="email" value=(account);
            (views::password_field("new-password", Some("At least 8 characters. A few unrelated words make a strong one.")))
            button type="submit" { "Set the password" }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct ResetPasswordForm {
    token: String,
    #[serde(flatten)]
    account: CredentialsForm,
}

pub(super) async fn reset_password(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<ResetPasswordForm>,
) -> Response {
    let Form { browser, value } = form;
    match ctx
        .app
        .reset_password(&caller, &value.token, &value.account.password)
        .await
    {
        Ok(_) => signed_out_to(&ctx, "password-reset"),
        Err(err @ AppError::UnacceptablePassword(_)) => {
            let page = Page {
                status: ApiError::from(&err).status(),
                error: Some(say(&err, Step::Register)),
                ..Page::new(RESET_TITLE)
            };
            show(&ctx, &browser, page, |csrf| {
                reset_form(&value.account.email, &value.token, csrf)
            })
        }
        Err(err) => link_refused(&ctx, &caller, &browser, &err).await,
    }
}

/// The page the "this wasn't me" link of a pending MFA reset opens.
#[utoipa::path(get, path = "/v1/mfa-reset/deny", tag = "me",
    params(LinkQuery),
    responses(
        (status = 200, description = "A confirm page", content_type = "text/html"),
        (status = 400, description = "A page saying the link is broken", content_type = "text/html"),
        (status = 410, description = "A page saying the link was used, has expired or was superseded", content_type = "text/html"),
    ))]
pub async fn denial_page(
    State(ctx): State<ApiContext>,
    caller: Caller,
    browser: Browser,
    query: Result<Query<LinkQuery>, QueryRejection>,
) -> Response {
    link_page(&ctx, &caller, &browser, LinkKind::ResetDenial, query, "Stop the reset of your multi-factor authentication?", |account, token, csrf| {
        html! {
            p { "Someone asked to reset the multi-factor authentication of " strong #link-account { (account) } " from a session signed in with a mailed link. If it was not you, stop it: the reset is cancelled and every session of the account ends." }
            form method="post" action="/mfa-reset/deny" {
                (csrf.field())
                input type="hidden" name="token" value=(token);
                button.danger type="submit" { "It wasn't me: stop the reset" }
            }
            p { "Then sign in and change your password: whoever asked knew it." }
        }
    })
    .await
}

pub(super) async fn deny_mfa_reset(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<TokenForm>,
) -> Response {
    let Form { browser, value } = form;
    match ctx.app.deny_mfa_reset(&caller, &value.token).await {
        Ok(_) => signed_out_to(&ctx, "reset-denied"),
        Err(err) => link_refused(&ctx, &caller, &browser, &err).await,
    }
}
