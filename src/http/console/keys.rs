//! Security keys, passkeys and more than one authenticator in the
//! console: the second step with a key, a key as the first authenticator,
//! and the authenticators of My Profile (list, add an app or a key,
//! remove). The ceremony pages load the one script; each posts an
//! ordinary form whose hidden field carries the key's answer.
use authledger_aggregates::{Assurance, AuthenticatorId, AuthenticatorKind};
use axum::extract::{Path, State};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use super::browser::{see_other, Browser, Csrf, Form};
use super::views::{self, Page, Problem};
use super::{
    again, grouped, pending, problem_page, recovery_code_issued, refused, session, show, signed_in,
    signed_in_user, when, Answer, ResetForm, Step,
};
use crate::app::{AppError, AuthenticatorEntry, Caller, Enrollment, Me, WebAuthnOptions};
use crate::http::ApiContext;

#[derive(Deserialize)]
pub(super) struct AnswerForm {
    #[serde(default)]
    credential: String,
}

#[derive(Deserialize)]
pub(super) struct NamedAnswerForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    credential: String,
}

#[derive(Deserialize)]
pub(super) struct NewAppForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    code: String,
}

#[derive(Deserialize)]
pub(super) struct RemoveForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm_last: Option<String>,
}

/// The most authenticators an account holds (the domain refuses more).
const MAX_LISTED: usize = authledger_aggregates::MAX_AUTHENTICATORS;

const KEY_TITLE: &str = "Use your security key or passkey";
const ENROLL_KEY_TITLE: &str = "Set up a security key or passkey";
const ADD_KEY_TITLE: &str = "Add a security key or passkey";
const ADD_APP_TITLE: &str = "Add an authenticator app";
const REMOVE_TITLE: &str = "Remove an authenticator";

/// What a form without the key's answer means: the script did not run.
const NO_SCRIPT: &str = "Your browser sent no answer from a security key: this page needs JavaScript to reach it. Turn JavaScript on, or use another method.";

fn answer(raw: &str) -> Result<serde_json::Value, Problem> {
    serde_json::from_str(raw).map_err(|_| Problem {
        message: NO_SCRIPT.to_owned(),
        retry_after: None,
    })
}

/// In the user's words: what a ceremony's refusal means.
fn key_problem(err: &AppError) -> Option<&'static str> {
    Some(match err {
        AppError::WebAuthnRejected => "Your security key or passkey's answer was refused. Use a key registered on this account, or another method.",
        AppError::WebAuthnSignCountRegressed => "Your security key's answer was refused: it looks like a copy of the key. If it is yours, sign in another way and tell your administrator.",
        AppError::WebAuthnResponseMalformed => NO_SCRIPT,
        AppError::TooManyAuthenticators => "Your account holds 16 authenticators, as many as it may. Remove one first.",
        AppError::WebAuthnChallengeInvalid => "That took too long, or the page was used twice. Try again.",
        AppError::WebAuthnRegistrationInvalid => "Your security key's answer could not be checked. Try again, or with another key.",
        AppError::CredentialAlreadyRegistered => "That security key or passkey is already on your account.",
        AppError::NoSecurityKey => "Your account has no security key or passkey. Use another method.",
        AppError::WebAuthnUnavailable => "Security keys and passkeys cannot be used with this service's address. Use another method.",
        AppError::InvalidAuthenticatorName(_) => "Give it a name of 1 to 64 characters, on one line.",
        AppError::WrongSetupCode => "That code is not from the new app. Enter the 6 digits it shows now.",
        AppError::TotpDeviceSetupNotStarted => "That took too long. Start again.",
        AppError::UnknownAuthenticator => "That authenticator is not on your account any more.",
        AppError::EnrollmentRequired => "Your account has no authenticator: sign out and sign in again to set one up.",
        _ => return None,
    })
}

/// A ceremony's own refusal, with its status and in the user's words;
/// `None` for what every page says alike.
fn key_refusal(err: &AppError) -> Option<(axum::http::StatusCode, Problem)> {
    let message = key_problem(err)?;
    Some((
        crate::http::ApiError::from(err).status(),
        Problem {
            message: message.to_owned(),
            retry_after: None,
        },
    ))
}

/// A refusal as a page: the ceremonies' own in their words, the rest as
/// everywhere else.
fn refused_here(
    ctx: &ApiContext,
    err: &AppError,
    step: Step,
    stay: impl FnOnce(axum::http::StatusCode, Problem) -> Response,
) -> Response {
    match key_refusal(err) {
        Some((status, problem)) => stay(status, problem),
        None => refused(ctx, err, step, stay),
    }
}

/// The form of a ceremony: the options for the script, the hidden field
/// for its answer, a live region for what it says, and `fields` above the
/// button.
fn ceremony_form(
    action: &str,
    kind: &str,
    options: &WebAuthnOptions,
    csrf: &Csrf,
    fields: Markup,
    button: &str,
) -> Markup {
    html! {
        form method="post" action=(action) data-webauthn=(kind) data-options=(options.0.to_string()) {
            (csrf.field())
            (fields)
            input type="hidden" name="credential" value="";
            p.hint role="status" aria-live="polite" data-webauthn-status {}
            button type="submit" { (button) }
        }
    }
}

/// A ceremony's page, with the script: `main` around the options, or the
/// page that says why there are none.
fn ceremony_page(
    ctx: &ApiContext,
    browser: &Browser,
    page: Page<'_>,
    step: Step,
    options: Result<WebAuthnOptions, AppError>,
    main: impl FnOnce(&Csrf, &WebAuthnOptions) -> Markup,
) -> Response {
    let options = match options {
        Ok(options) => options,
        Err(err) => {
            return refused_here(ctx, &err, step, |status, problem| {
                problem_page(ctx, browser, status, page.title, &problem.message)
            })
        }
    };
    let page = Page {
        script: true,
        ..page
    };
    show(ctx, browser, page, |csrf| main(csrf, &options))
}

fn name_field(value: &str, hint: &str) -> Markup {
    html! {
        label for="name" { "Name" }
        p.hint #name-hint { (hint) }
        input #name type="text" name="name" value=(value) maxlength="64" required
            autocomplete="off" aria-describedby="name-hint";
    }
}

// ---- the second step -------------------------------------------------------

pub(super) async fn sign_in_page(State(ctx): State<ApiContext>, browser: Browser) -> Answer {
    Ok(sign_in_view(&ctx, &browser, Page::new(KEY_TITLE)).await)
}

async fn sign_in_view(ctx: &ApiContext, browser: &Browser, page: Page<'_>) -> Response {
    let Ok(login) = pending(browser) else {
        return see_other("/sign-in");
    };
    let totp = ctx
        .app
        .factors_offered(login)
        .await
        .is_ok_and(|offered| offered.totp);
    let options = ctx.app.webauthn_sign_in_options(login).await;
    ceremony_page(ctx, browser, page, Step::Other, options, |csrf, options| {
        html! {
            p { "Your account has a security key or passkey. Use it to finish signing in: your browser will ask for it." }
            (ceremony_form("/sign-in/key", "get", options, csrf, Markup::default(), "Use security key or passkey"))
            @if totp {
                p { a href="/sign-in/code" { "Enter a code from your authenticator app instead" } }
            }
            p { a href="/sign-in/other" { "Try another method" } }
            (views::cancel_sign_in(&csrf.field()))
        }
    })
}

pub(super) async fn sign_in(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<AnswerForm>,
) -> Answer {
    let Form { browser, value } = form;
    let login = pending(&browser)?;
    let credential = match answer(&value.credential) {
        Ok(credential) => credential,
        Err(problem) => {
            return Ok(sign_in_view(
                &ctx,
                &browser,
                again(
                    KEY_TITLE,
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    problem,
                ),
            )
            .await)
        }
    };
    let err = match ctx.app.webauthn_sign_in(&caller, login, &credential).await {
        Ok(session) => return Ok(signed_in(&ctx, &session, see_other("/profile"))),
        Err(err) => err,
    };
    // A wait or a lock says so; a key's own refusal offers a new challenge.
    let Some((status, problem)) = key_refusal(&err) else {
        return Ok(refused(&ctx, &err, Step::Totp, |status, problem| {
            problem_page(&ctx, &browser, status, KEY_TITLE, &problem.message)
        }));
    };
    Ok(sign_in_view(&ctx, &browser, again(KEY_TITLE, status, problem)).await)
}

// ---- a key as the first authenticator ----------------------------------------

pub(super) async fn enroll_page(State(ctx): State<ApiContext>, browser: Browser) -> Answer {
    Ok(enroll_view(&ctx, &browser, Page::new(ENROLL_KEY_TITLE), "").await)
}

async fn enroll_view(ctx: &ApiContext, browser: &Browser, page: Page<'_>, name: &str) -> Response {
    let Ok(login) = pending(browser) else {
        return see_other("/sign-in");
    };
    let options = ctx.app.webauthn_enroll_options(login).await;
    ceremony_page(ctx, browser, page, Step::Totp, options, |csrf, options| {
        html! {
            p { "Your account needs a second factor before you can sign in. A security key (such as a YubiKey) or a passkey on this device (Touch ID, Windows Hello, your phone) can be it." }
            (ceremony_form("/sign-in/enroll/key", "create", options, csrf,
                name_field(if name.is_empty() { "Security key" } else { name }, "So you can tell it from others later, such as \"Laptop\" or \"Blue YubiKey\"."),
                "Set up security key or passkey"))
            p { a href="/sign-in/enroll" { "Use an authenticator app instead" } }
            (views::cancel_sign_in(&csrf.field()))
        }
    })
}

pub(super) async fn enroll(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<NamedAnswerForm>,
) -> Answer {
    let Form { browser, value } = form;
    let login = pending(&browser)?;
    let credential = match answer(&value.credential) {
        Ok(credential) => credential,
        Err(problem) => {
            let page = again(
                ENROLL_KEY_TITLE,
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                problem,
            );
            return Ok(enroll_view(&ctx, &browser, page, &value.name).await);
        }
    };
    let err = match ctx
        .app
        .webauthn_enroll(&caller, login, &value.name, &credential)
        .await
    {
        Ok(granted) => {
            return Ok(recovery_code_issued(
                &ctx,
                &browser,
                "Save your recovery code",
                "Your security key or passkey is set up and you are signed in.",
                &granted,
            ))
        }
        Err(err) => err,
    };
    let Some((status, problem)) = key_refusal(&err) else {
        return Ok(refused(&ctx, &err, Step::Totp, |status, problem| {
            problem_page(&ctx, &browser, status, ENROLL_KEY_TITLE, &problem.message)
        }));
    };
    let page = again(ENROLL_KEY_TITLE, status, problem);
    Ok(enroll_view(&ctx, &browser, page, &value.name).await)
}

// ---- My Profile --------------------------------------------------------------

fn kind_words(kind: AuthenticatorKind) -> &'static str {
    match kind {
        AuthenticatorKind::Totp => "Authenticator app",
        AuthenticatorKind::WebAuthn => "Security key or passkey",
    }
}

/// What My Profile says of the account's second factors.
pub(super) fn mfa_summary(authenticators: &[AuthenticatorEntry]) -> String {
    match authenticators {
        [] => "Off: you will set up an authenticator at your next sign-in".to_owned(),
        [only] => format!("On: {}", kind_words(only.kind).to_lowercase()),
        many => format!("On: {} authenticators", many.len()),
    }
}

/// My Profile's list of authenticators, with the ways to add and remove.
pub(super) fn authenticators_section(
    ctx: &ApiContext,
    me: &Me,
    authenticators: &[AuthenticatorEntry],
) -> Markup {
    html! {
        h2 { "Authenticators" }
        p { "Any of these finishes a sign-in after your password. Keep more than one, so that losing a phone or a key does not lock you out." }
        ul.authenticators #authenticators {
            @for entry in authenticators {
                li {
                    span.name { (entry.name) }
                    @if entry.name != kind_words(entry.kind) {
                        " · " (kind_words(entry.kind))
                    }
                    br;
                    span.hint {
                        "Added " (when(entry.added_at)) ". "
                        @match entry.last_used_at {
                            Some(at) => { "Last used " (when(at)) "." }
                            None => { "Not used yet." }
                        }
                    }
                    @if let Some(at) = entry.suspected_copy_at {
                        br;
                        strong.refused { "Refused since " (when(at)) ": it may have been copied. Remove it; if it is yours, add it again." }
                    }
                    @if me.session.aal == Assurance::Aal2 {
                        " "
                        a href=(format!("/profile/authenticators/{}/remove", entry.id)) {
                            "Remove" span.visually-hidden { " " (entry.name) }
                        }
                    }
                }
            }
        }
        @if authenticators.is_empty() {
            p { "Your account has no authenticator: your next sign-in sets one up, with a new recovery code." }
        } @else if me.session.aal == Assurance::Aal2 && authenticators.len() >= MAX_LISTED {
            p { "Your account holds " (MAX_LISTED) " authenticators, as many as it may: remove one to add another." }
        } @else if me.session.aal == Assurance::Aal2 {
            ul.choices {
                li { a.button href="/profile/authenticators/app" { "Add an authenticator app" } }
                @if ctx.app.webauthn_available() {
                    li { a.button href="/profile/authenticators/key" { "Add a security key or passkey" } }
                }
            }
        } @else {
            p { "Adding or removing one needs a sign-in with your authenticator app, security key or recovery code; this session was won with a mailed link." }
        }
    }
}

fn password_again(ctx: &ApiContext, me: &Me) -> Markup {
    views::password_again(
        me.reauthentication_required,
        ctx.app.policy().reauthentication_window,
    )
}

pub(super) async fn add_key_page(
    State(ctx): State<ApiContext>,
    caller: Caller,
    browser: Browser,
) -> Answer {
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    Ok(add_key_view(&ctx, &browser, &me, Page::new(ADD_KEY_TITLE), "").await)
}

async fn add_key_view(
    ctx: &ApiContext,
    browser: &Browser,
    me: &Me,
    page: Page<'_>,
    name: &str,
) -> Response {
    let Ok(token) = session(browser) else {
        return see_other("/sign-in");
    };
    let options = ctx.app.webauthn_register_options(token).await;
    let page = Page {
        account: Some(&me.email),
        ..page
    };
    ceremony_page(ctx, browser, page, Step::Other, options, |csrf, options| {
        html! {
            p { "A security key (such as a YubiKey) or a passkey on this device signs you in where a code would, and no fake sign-in page can relay it." }
            (ceremony_form("/profile/authenticators/key", "create", options, csrf,
                html! {
                    (name_field(if name.is_empty() { "Security key" } else { name }, "So you can tell it from others, such as \"Laptop\" or \"Blue YubiKey\"."))
                    (password_again(ctx, me))
                },
                "Add security key or passkey"))
            p { a.button.secondary href="/profile" { "Cancel" } }
        }
    })
}

pub(super) async fn add_key(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<NamedAnswerForm>,
) -> Answer {
    let Form { browser, value } = form;
    let token = session(&browser)?;
    let password = Some(value.password.as_str()).filter(|p| !p.is_empty());
    let result = match answer(&value.credential) {
        Ok(credential) => {
            ctx.app
                .add_webauthn_credential(&caller, token, password, &value.name, &credential)
                .await
        }
        Err(problem) => {
            let me = signed_in_user(&ctx, &caller, &browser).await?;
            let page = again(
                ADD_KEY_TITLE,
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                problem,
            );
            return Ok(add_key_view(&ctx, &browser, &me, page, &value.name).await);
        }
    };
    let err = match result {
        Ok(_) => return Ok(see_other("/profile?notice=authenticator-added")),
        Err(err) => err,
    };
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    let (status, problem) = key_refusal(&err).unwrap_or_else(|| {
        (
            crate::http::ApiError::from(&err).status(),
            super::say(&err, Step::Password),
        )
    });
    let page = again(ADD_KEY_TITLE, status, problem);
    Ok(add_key_view(&ctx, &browser, &me, page, &value.name).await)
}

pub(super) async fn add_app_page(
    State(ctx): State<ApiContext>,
    caller: Caller,
    browser: Browser,
) -> Answer {
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    let token = session(&browser)?;
    let pending = ctx.app.pending_totp_device(token).await.ok().flatten();
    Ok(add_app_view(
        &ctx,
        &browser,
        &me,
        Page::new(ADD_APP_TITLE),
        pending.as_ref(),
        "",
    ))
}

fn add_app_view(
    ctx: &ApiContext,
    browser: &Browser,
    me: &Me,
    page: Page<'_>,
    pending: Option<&Enrollment>,
    name: &str,
) -> Response {
    let page = Page {
        account: Some(&me.email),
        ..page
    };
    show(ctx, browser, page, |csrf| match pending {
        None => html! {
            p { "Another authenticator app, on a spare phone or a tablet, signs you in as well as the one you have." }
            form method="post" action="/profile/authenticators/app/new" {
                (csrf.field())
                (password_again(ctx, me))
                div.actions {
                    button type="submit" { "Show the QR code" }
                    a.button.secondary href="/profile" { "Cancel" }
                }
            }
        },
        Some(enrollment) => {
            let qr = format!(
                "data:image/svg+xml;base64,{}",
                STANDARD.encode(&enrollment.qr_svg)
            );
            html! {
                p { "Scan this QR code with the new authenticator app:" }
                img.qr src=(qr) width="200" height="200" alt="QR code that adds this account to an authenticator app";
                p { "Or type this key into the app:" }
                p.secret { code #totp-secret { (grouped(&enrollment.secret)) } }
                form method="post" action="/profile/authenticators/app" {
                    (csrf.field())
                    (name_field(if name.is_empty() { "Spare phone" } else { name }, "So you can tell it from your other apps."))
                    label for="code" { "Enter the 6-digit code the new app shows" }
                    input #code type="text" name="code" inputmode="numeric" autocomplete="one-time-code"
                        maxlength="6" required;
                    div.actions {
                        button type="submit" { "Add authenticator app" }
                        a.button.secondary href="/profile" { "Cancel" }
                    }
                }
            }
        }
    })
}

pub(super) async fn begin_app(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<ResetForm>,
) -> Answer {
    let Form { browser, value } = form;
    let token = session(&browser)?;
    let password = Some(value.password.as_str()).filter(|p| !p.is_empty());
    let err = match ctx.app.begin_totp_device(&caller, token, password).await {
        Ok(_) => return Ok(see_other("/profile/authenticators/app")),
        Err(err) => err,
    };
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    Ok(refused_here(
        &ctx,
        &err,
        Step::Password,
        |status, problem| {
            add_app_view(
                &ctx,
                &browser,
                &me,
                again(ADD_APP_TITLE, status, problem),
                None,
                "",
            )
        },
    ))
}

pub(super) async fn add_app(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<NewAppForm>,
) -> Answer {
    let Form { browser, value } = form;
    let token = session(&browser)?;
    let err = match ctx
        .app
        .add_totp_device(&caller, token, &value.name, &value.code)
        .await
    {
        Ok(_) => return Ok(see_other("/profile?notice=authenticator-added")),
        Err(err) => err,
    };
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    let pending = ctx.app.pending_totp_device(token).await.ok().flatten();
    Ok(refused_here(&ctx, &err, Step::Totp, |status, problem| {
        add_app_view(
            &ctx,
            &browser,
            &me,
            again(ADD_APP_TITLE, status, problem),
            pending.as_ref(),
            &value.name,
        )
    }))
}

pub(super) async fn remove_page(
    State(ctx): State<ApiContext>,
    caller: Caller,
    browser: Browser,
    Path(id): Path<String>,
) -> Answer {
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    Ok(remove_view(
        &ctx,
        &browser,
        &me,
        &me.authenticators,
        &id,
        Page::new(REMOVE_TITLE),
    ))
}

fn remove_view(
    ctx: &ApiContext,
    browser: &Browser,
    me: &Me,
    authenticators: &[AuthenticatorEntry],
    id: &str,
    page: Page<'_>,
) -> Response {
    let page = Page {
        account: Some(&me.email),
        ..page
    };
    let Some(entry) = authenticators.iter().find(|a| a.id.to_string() == id) else {
        return problem_page(
            ctx,
            browser,
            axum::http::StatusCode::NOT_FOUND,
            REMOVE_TITLE,
            "That authenticator is not on your account any more.",
        );
    };
    let last = authenticators.len() == 1;
    show(ctx, browser, page, |csrf| {
        html! {
            p { "Remove " strong { (entry.name) } " (" (kind_words(entry.kind).to_lowercase()) ")? It will no longer sign you in." }
            @if last {
                p.warning #last-warning role="note" {
                    "This is your last authenticator. Without one, your recovery code stops working and your next sign-in sets up a new authenticator: anyone who learns your password could then set up theirs. Add another one first unless you mean to start over."
                }
            }
            form method="post" action=(format!("/profile/authenticators/{}/remove", entry.id)) {
                (csrf.field())
                @if last {
                    input type="hidden" name="confirm_last" value="yes";
                }
                (password_again(ctx, me))
                div.actions {
                    button.danger type="submit" { @if last { "Remove my last authenticator" } @else { "Remove" } }
                    a.button.secondary href="/profile" { "Cancel" }
                }
            }
        }
    })
}

pub(super) async fn remove(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Path(id): Path<String>,
    form: Form<RemoveForm>,
) -> Answer {
    let Form { browser, value } = form;
    let token = session(&browser)?;
    let password = Some(value.password.as_str()).filter(|p| !p.is_empty());
    let err = match id.parse::<Uuid>() {
        Ok(uuid) => match ctx
            .app
            .remove_authenticator(
                &caller,
                token,
                password,
                AuthenticatorId(uuid),
                value.confirm_last.is_some(),
            )
            .await
        {
            Ok(true) => return Ok(see_other("/profile?notice=last-authenticator-removed")),
            Ok(false) => return Ok(see_other("/profile?notice=authenticator-removed")),
            Err(err) => err,
        },
        Err(_) => AppError::UnknownAuthenticator,
    };
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    Ok(refused_here(
        &ctx,
        &err,
        Step::Password,
        |status, problem| {
            remove_view(
                &ctx,
                &browser,
                &me,
                &me.authenticators,
                &id,
                again(REMOVE_TITLE, status, problem),
            )
        },
    ))
}
