//! What the signed-in user changes from My Profile: the password, the
//! recovery code, and a pending MFA reset.
use authledger_aggregates::Assurance;
use axum::extract::State;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::browser::{clear_cookie, see_other, Browser, CookieName, Csrf, Form};
use super::views::{self, Page};
use super::{
    again, method_words, problem_page, refused, session, show, signed_in_user, when, Answer,
    NoFields, ResetForm, Step,
};
use crate::app::{Caller, Me, SessionView};
use crate::http::ApiContext;

/// The signed-in user's live sessions, for My Profile.
pub(super) async fn sessions_of(
    ctx: &ApiContext,
    caller: &Caller,
    browser: &Browser,
) -> Result<Vec<SessionView>, Response> {
    let token = session(browser)?;
    ctx.app.my_sessions(caller, token).await.map_err(|err| {
        refused(ctx, &err, Step::Other, |status, problem| {
            problem_page(ctx, browser, status, "My Profile", &problem.message)
        })
    })
}

/// "Sessions" on My Profile: where the account is signed in, each with a
/// button to end it, and one to end all but this one. Only a session won
/// with a second factor may end others; one won by a mailed link is told.
pub(super) fn sessions_section(
    sessions: &[SessionView],
    aal: Assurance,
    csrf: &Csrf,
) -> maud::Markup {
    let may_end = aal == Assurance::Aal2;
    let others = sessions.iter().filter(|s| !s.current).count();
    html! {
        h2 #sessions { "Sessions" }
        p { "Where your account is signed in now." }
        table.sessions {
            caption.visually-hidden { "Your signed-in sessions" }
            thead { tr {
                th scope="col" { "Browser" }
                th scope="col" { "Signed in" }
                th scope="col" { "Last active" }
                th scope="col" { span.visually-hidden { "Action" } }
            } }
            tbody {
                @for s in sessions {
                    tr.session data-session=(s.id) {
                        td {
                            (s.browser.as_deref().unwrap_or("Unknown browser"))
                            @if let Some(ip) = &s.ip { br; span.hint { "from " (ip) } }
                        }
                        td { (when(s.started_at)) br; span.hint { "with " (method_words(s.method)) } }
                        td { (when(s.last_active_at)) }
                        td {
                            @if s.current {
                                strong { "This session" }
                            } @else if may_end {
                                form method="post" action="/profile/sessions/end" {
                                    (csrf.field())
                                    input type="hidden" name="session" value=(s.id);
                                    button.secondary type="submit"
                                        aria-label={ "Sign out the session of " (s.browser.as_deref().unwrap_or("an unknown browser")) " begun " (s.started_at.format("%-d %b %Y, %H:%M UTC")) }
                                        { "Sign out" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if others > 0 {
            @if may_end {
                form method="post" action="/profile/sessions/end-others" {
                    (csrf.field())
                    button.secondary type="submit" { "Sign out everywhere else" }
                }
            } @else {
                p.hint { "To sign out your other sessions, sign in with your authenticator app or recovery code: a mailed link may not end them." }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct EndSessionForm {
    session: String,
}

pub(super) async fn end_session(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<EndSessionForm>,
) -> Answer {
    let Form { browser, value } = form;
    let token = session(&browser)?;
    Ok(
        match ctx.app.end_my_session(&caller, token, &value.session).await {
            Ok(()) => see_other("/profile?notice=session-ended#sessions"),
            Err(err) => refused(&ctx, &err, Step::Other, |status, problem| {
                problem_page(&ctx, &browser, status, "My Profile", &problem.message)
            }),
        },
    )
}

pub(super) async fn end_other_sessions(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<NoFields>,
) -> Answer {
    let Form { browser, .. } = form;
    let token = session(&browser)?;
    Ok(match ctx.app.end_my_other_sessions(&caller, token).await {
        Ok(_) => see_other("/profile?notice=others-ended#sessions"),
        Err(err) => refused(&ctx, &err, Step::Other, |status, problem| {
            problem_page(&ctx, &browser, status, "My Profile", &problem.message)
        }),
    })
}

pub(super) async fn cancel_mfa_reset(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<NoFields>,
) -> Answer {
    let Form { browser, .. } = form;
    let token = session(&browser)?;
    Ok(match ctx.app.cancel_mfa_reset(&caller, token).await {
        Ok(true) => see_other("/profile?notice=reset-cancelled"),
        Ok(false) => {
            let mut response = see_other("/sign-in?notice=reset-cancelled");
            clear_cookie(&ctx, &mut response, CookieName::Session);
            response
        }
        Err(err) => refused(&ctx, &err, Step::Other, |status, problem| {
            problem_page(&ctx, &browser, status, "My Profile", &problem.message)
        }),
    })
}

const PASSWORD_TITLE: &str = "Change your password";

pub(super) async fn password_page(
    State(ctx): State<ApiContext>,
    caller: Caller,
    browser: Browser,
) -> Answer {
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    Ok(password_view(
        &ctx,
        &browser,
        &me,
        Page::new(PASSWORD_TITLE),
    ))
}

fn password_view(ctx: &ApiContext, browser: &Browser, me: &Me, page: Page<'_>) -> Response {
    let page = Page {
        account: Some(&me.email),
        ..page
    };
    show(ctx, browser, page, |csrf| {
        html! {
            p { "Your other sessions end; this one stays signed in." }
            form method="post" action="/profile/password" {
                (csrf.field())
                @if me.current_password_required {
                    label for="current-password" { "Current password" }
                    input #current-password type="password" name="current_password"
                        autocomplete="current-password" required;
                }
                label for="new-password" { "New password" }
                p.hint #new-password-hint { "At least 8 characters. A few unrelated words make a strong one." }
                input #new-password type="password" name="new_password" autocomplete="new-password"
                    required aria-describedby="new-password-hint";
                div.actions {
                    button type="submit" { "Change password" }
                    a.button.secondary href="/profile" { "Cancel" }
                }
            }
        }
    })
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    #[serde(default)]
    current_password: String,
    new_password: String,
}

pub(super) async fn change_password(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<PasswordForm>,
) -> Answer {
    let Form { browser, value } = form;
    let token = session(&browser)?;
    let current = Some(value.current_password.as_str()).filter(|p| !p.is_empty());
    let err = match ctx
        .app
        .change_password(&caller, token, current, &value.new_password)
        .await
    {
        Ok(_) => return Ok(see_other("/profile?notice=password-changed")),
        Err(err) => err,
    };
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    let step = match err {
        crate::app::AppError::UnacceptablePassword(_) if current.is_none() => Step::Register,
        _ => Step::Password,
    };
    Ok(refused(&ctx, &err, step, |status, problem| {
        password_view(&ctx, &browser, &me, again(PASSWORD_TITLE, status, problem))
    }))
}

const RECOVERY_TITLE: &str = "A new recovery code";

pub(super) async fn recovery_code_page(
    State(ctx): State<ApiContext>,
    caller: Caller,
    browser: Browser,
) -> Answer {
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    Ok(recovery_code_view(
        &ctx,
        &browser,
        &me,
        Page::new(RECOVERY_TITLE),
    ))
}

fn recovery_code_view(ctx: &ApiContext, browser: &Browser, me: &Me, page: Page<'_>) -> Response {
    let page = Page {
        account: Some(&me.email),
        ..page
    };
    show(ctx, browser, page, |csrf| {
        html! {
            @if me.session.aal == Assurance::Aal1 {
                p { "A new recovery code needs a sign-in with your authenticator app or your recovery code; this session was won with a mailed link." }
                p { a.button.secondary href="/profile" { "Back to My Profile" } }
            } @else {
                p { "Your current recovery code stops working, and a new one is shown once." }
                form method="post" action="/profile/recovery-code" {
                    (csrf.field())
                    (views::password_again(me.reauthentication_required, ctx.app.policy().reauthentication_window))
                    div.actions {
                        button type="submit" { "Make a new recovery code" }
                        a.button.secondary href="/profile" { "Cancel" }
                    }
                }
            }
        }
    })
}

pub(super) async fn new_recovery_code(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<ResetForm>,
) -> Answer {
    let Form { browser, value } = form;
    let token = session(&browser)?;
    let password = Some(value.password.as_str()).filter(|p| !p.is_empty());
    let err = match ctx
        .app
        .regenerate_recovery_code(&caller, token, password)
        .await
    {
        Ok(code) => {
            return Ok(show(
                &ctx,
                &browser,
                Page::new("Save your new recovery code"),
                |_| {
                    html! {
                        p { "Your old recovery code no longer works." }
                        (views::recovery_code_shown(&code))
                    }
                },
            ))
        }
        Err(err) => err,
    };
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    Ok(refused(&ctx, &err, Step::Password, |status, problem| {
        recovery_code_view(&ctx, &browser, &me, again(RECOVERY_TITLE, status, problem))
    }))
}
