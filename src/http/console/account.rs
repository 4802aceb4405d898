//! What the signed-in user changes from My Profile: the password, the
//! recovery code, and a pending MFA reset.
use authledger_aggregates::Assurance;
use axum::extract::State;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::browser::{clear_cookie, see_other, Browser, CookieName, Form};
use super::views::{self, Page};
use super::{again, refused, session, show, signed_in_user, Answer, NoFields, ResetForm, Step};
use crate::app::{Caller, Me};
use crate::http::ApiContext;

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
            super::problem_page(&ctx, &browser, status, "My Profile", &problem.message)
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
                    @if me.reauthentication_required {
                        (views::password_field("current-password", Some(&format!(
                            "You signed in more than {} minutes ago: enter your password to confirm.",
                            ctx.app.policy().reauthentication_window.num_minutes()
                        ))))
                    }
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
