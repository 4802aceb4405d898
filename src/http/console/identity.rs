//! The account's address and the account itself, from My Profile: change
//! the address (and the pages its two mailed links open), erase the
//! account.
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::browser::{signed_out_to, Browser, Form};
use super::links::{link_page, link_refused, LinkQuery};
use super::views::{self, Page};
use super::{again, refused, session, show, signed_in_user, when, Answer, Step, TokenForm};
use crate::app::{Caller, LinkKind, Me};
use crate::http::ApiContext;

const CHANGE_TITLE: &str = "Change your email address";

pub(super) async fn change_page(
    State(ctx): State<ApiContext>,
    caller: Caller,
    browser: Browser,
) -> Answer {
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    Ok(change_view(
        &ctx,
        &browser,
        &me,
        Page::new(CHANGE_TITLE),
        "",
    ))
}

fn change_view(
    ctx: &ApiContext,
    browser: &Browser,
    me: &Me,
    page: Page<'_>,
    typed: &str,
) -> Response {
    let page = Page {
        account: Some(&me.email),
        ..page
    };
    show(ctx, browser, page, |csrf| {
        html! {
            @if me.session.aal == authledger_aggregates::Assurance::Aal1 {
                p { "Changing your address needs a sign-in with your authenticator app or your recovery code; this session was won with a mailed link." }
                p { a.button.secondary href="/profile" { "Back to My Profile" } }
            } @else {
                p { "We mail a link to the new address. Your address changes only when you open it. Your current address gets a notice with a link to undo the change for "
                    (ctx.app.policy().email_change_revert_window.num_hours()) " hours." }
                form method="post" action="/profile/email" {
                    (csrf.field())
                    label for="new-email" { "New email address" }
                    input #new-email type="email" name="email" autocomplete="email" required value=(typed)
                        spellcheck="false" autocapitalize="none";
                    (views::password_again(me.reauthentication_required, ctx.app.policy().reauthentication_window))
                    div.actions {
                        button type="submit" { "Send the link" }
                        a.button.secondary href="/profile" { "Cancel" }
                    }
                }
            }
        }
    })
}

#[derive(Deserialize)]
pub(super) struct ChangeForm {
    email: String,
    #[serde(default)]
    password: String,
}

pub(super) async fn change(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<ChangeForm>,
) -> Answer {
    let Form { browser, value } = form;
    let token = session(&browser)?;
    let password = Some(value.password.as_str()).filter(|p| !p.is_empty());
    let err = match ctx
        .app
        .request_email_change(&caller, token, password, &value.email)
        .await
    {
        Ok(requested) => {
            return Ok(show(
                &ctx,
                &browser,
                Page::new("Check your new inbox"),
                |_| {
                    html! {
                        p #email-change-sent { "We sent a link to " strong { (value.email) } ". Open it by " (when(requested.expires_at)) " to make it your address. Until then nothing changes." }
                        p { a.button.secondary href="/profile" { "Back to My Profile" } }
                    }
                },
            ));
        }
        Err(err) => err,
    };
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    Ok(refused(&ctx, &err, Step::Password, |status, problem| {
        change_view(
            &ctx,
            &browser,
            &me,
            again(CHANGE_TITLE, status, problem),
            &value.email,
        )
    }))
}

/// The page the link mailed to a new address opens.
#[utoipa::path(get, path = "/v1/me/email/confirm", tag = "me",
    params(LinkQuery),
    responses(
        (status = 200, description = "A confirm page", content_type = "text/html"),
        (status = 400, description = "A page saying the link is broken", content_type = "text/html"),
        (status = 410, description = "A page saying the link was used, has expired or was superseded", content_type = "text/html"),
    ))]
pub async fn email_change_page(
    State(ctx): State<ApiContext>,
    caller: Caller,
    browser: Browser,
    query: Result<Query<LinkQuery>, QueryRejection>,
) -> Response {
    link_page(&ctx, &caller, &browser, LinkKind::EmailChange, query, "Confirm your new email address", |address, token, csrf| {
        html! {
            p { "Make " strong #link-account { (address) } " the address of your account? Sign-in links, notices and password resets will go there." }
            form method="post" action="/email/confirm" {
                (csrf.field())
                input type="hidden" name="token" value=(token);
                button type="submit" { "Confirm the new address" }
            }
            p { "If you did not ask for this, close this page: nothing changes without the button." }
        }
    })
    .await
}

pub(super) async fn confirm(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<TokenForm>,
) -> Response {
    let Form { browser, value } = form;
    match ctx.app.confirm_email_change(&caller, &value.token).await {
        Ok(()) => show(&ctx, &browser, Page::new("Your address is changed"), |_| {
            html! {
                p #email-changed {
                    "Sign in with your new address from now on. Your old address was sent a notice with a link that undoes the change for "
                    (ctx.app.policy().email_change_revert_window.num_hours()) " hours, in case it was not you."
                }
                p { a.button href="/profile" { "My Profile" } }
            }
        }),
        Err(err) => link_refused(&ctx, &caller, &browser, &err).await,
    }
}

/// The page the "this wasn't me" link, mailed to the address given up,
/// opens.
#[utoipa::path(get, path = "/v1/me/email/revert", tag = "me",
    params(LinkQuery),
    responses(
        (status = 200, description = "A confirm page", content_type = "text/html"),
        (status = 400, description = "A page saying the link is broken", content_type = "text/html"),
        (status = 410, description = "A page saying the link was used, has expired or was superseded", content_type = "text/html"),
    ))]
pub async fn email_revert_page(
    State(ctx): State<ApiContext>,
    caller: Caller,
    browser: Browser,
    query: Result<Query<LinkQuery>, QueryRejection>,
) -> Response {
    link_page(&ctx, &caller, &browser, LinkKind::EmailChangeRevert, query, "Undo the change of your email address?", |address, token, csrf| {
        html! {
            p { "The email address of your account was changed from " strong #link-account { (address) } " to another one. If it was not you, undo it: the account gets this address back and every session of it ends." }
            form method="post" action="/email/revert" {
                (csrf.field())
                input type="hidden" name="token" value=(token);
                button.danger type="submit" { "It wasn't me: restore my address" }
            }
            p { "Then set a new password with \"Forgot password?\" on the sign-in page: whoever changed the address was signed in to your account." }
            p { "If you changed it yourself, close this page: nothing happens without the button." }
        }
    })
    .await
}

pub(super) async fn revert(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<TokenForm>,
) -> Response {
    let Form { browser, value } = form;
    match ctx.app.revert_email_change(&caller, &value.token).await {
        Ok(_) => signed_out_to(&ctx, "email-restored"),
        Err(err) => link_refused(&ctx, &caller, &browser, &err).await,
    }
}

const ERASE_TITLE: &str = "Delete your account";

pub(super) async fn erase_page(
    State(ctx): State<ApiContext>,
    caller: Caller,
    browser: Browser,
) -> Answer {
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    Ok(erase_view(&ctx, &browser, &me, Page::new(ERASE_TITLE)))
}

fn erase_view(ctx: &ApiContext, browser: &Browser, me: &Me, page: Page<'_>) -> Response {
    let page = Page {
        account: Some(&me.email),
        ..page
    };
    show(ctx, browser, page, |csrf| {
        html! {
            @if me.session.aal == authledger_aggregates::Assurance::Aal1 {
                p { "Deleting your account needs a sign-in with your authenticator app or your recovery code; this session was won with a mailed link." }
                p { a.button.secondary href="/profile" { "Back to My Profile" } }
            } @else {
                p { "Your address, and the IP addresses and browsers of your sign-ins, are erased for good. The record that an account existed and what happened to its sign-ins stays, without them. You are signed out everywhere, and the address can be used for a new account." }
                form method="post" action="/profile/delete" {
                    (csrf.field())
                    label for="confirm-email" { "Type your email address to confirm" }
                    p.hint #confirm-email-hint { "It is " (me.email) "." }
                    input #confirm-email type="email" name="confirm_email" autocomplete="off" required
                        spellcheck="false" autocapitalize="none" aria-describedby="confirm-email-hint";
                    (views::password_again(me.reauthentication_required, ctx.app.policy().reauthentication_window))
                    div.actions {
                        button.danger type="submit" { "Delete my account" }
                        a.button.secondary href="/profile" { "Cancel" }
                    }
                }
            }
        }
    })
}

#[derive(Deserialize)]
pub(super) struct EraseForm {
    confirm_email: String,
    #[serde(default)]
    password: String,
}

pub(super) async fn erase(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<EraseForm>,
) -> Answer {
    let Form { browser, value } = form;
    let token = session(&browser)?;
    let password = Some(value.password.as_str()).filter(|p| !p.is_empty());
    let err = match ctx
        .app
        .erase_me(&caller, token, password, &value.confirm_email)
        .await
    {
        Ok(_) => {
            return Ok(signed_out_to(&ctx, "account-erased"));
        }
        Err(err) => err,
    };
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    Ok(refused(&ctx, &err, Step::Password, |status, problem| {
        erase_view(&ctx, &browser, &me, again(ERASE_TITLE, status, problem))
    }))
}
