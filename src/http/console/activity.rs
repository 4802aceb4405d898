//! "Security activity" on My Profile: the account's own history in plain
//! words, newest first, each sign-in and change of credentials with a
//! "This wasn't me" button; and the page the link of a new-device notice
//! opens.
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::browser::{signed_out_to, Browser, Form};
use super::links::{link_page, link_refused, LinkQuery};
use super::views::Page;
use super::{problem_page, refused, session, show, signed_in_user, when, Answer, Step, TokenForm};
use crate::app::{ActivityPageSize, Caller, LinkKind};
use crate::http::ApiContext;

const TITLE: &str = "Security activity";

#[derive(Deserialize)]
pub(super) struct ActivityPageQuery {
    before: Option<i64>,
}

pub(super) async fn activity_page(
    State(ctx): State<ApiContext>,
    caller: Caller,
    browser: Browser,
    query: Result<Query<ActivityPageQuery>, QueryRejection>,
) -> Answer {
    let me = signed_in_user(&ctx, &caller, &browser).await?;
    let token = session(&browser)?;
    let before = query.ok().and_then(|Query(q)| q.before);
    let activity = ctx
        .app
        .my_activity(&caller, token, before, ActivityPageSize::DEFAULT)
        .await
        .map_err(|err| {
            refused(&ctx, &err, Step::Other, |status, problem| {
                problem_page(&ctx, &browser, status, TITLE, &problem.message)
            })
        })?;
    let page = Page {
        account: Some(&me.email),
        ..Page::new(TITLE)
    };
    Ok(show(&ctx, &browser, page, |csrf| {
        html! {
            p { "Everything that happened to your account, newest first: sign-ins and failed tries, links asked for, and changes to your password, authenticator and address. Secrets such as codes and passwords are never shown." }
            p { "If a sign-in or a change was not you, choose " strong { "This wasn't me" } ": every session of your account ends, this one too, a waiting reset of your multi-factor authentication is cancelled, and your administrator is told. Then sign in and change your password." }
            @if activity.entries.is_empty() {
                p { "Nothing to show." }
            } @else {
                ol.activity {
                    @for entry in &activity.entries {
                        li.activity-entry data-sequence=(entry.sequence) data-kind=(entry.kind) {
                            p.activity-what {
                                strong { (entry.summary) }
                                @if entry.new_device { " " span.badge.warn { "New device" } }
                                @if entry.reported { " " span.badge { "Reported" } }
                            }
                            p.hint {
                                (when(entry.at))
                                @if let Some(browser) = &entry.browser { ", " (browser) }
                                @if let Some(ip) = &entry.ip { ", from " (ip) }
                            }
                            @if entry.reportable {
                                form method="post" action="/profile/activity/report" {
                                    (csrf.field())
                                    input type="hidden" name="sequence" value=(entry.sequence);
                                    button.danger type="submit"
                                        aria-label={ "This wasn't me: " (entry.summary) ", " (entry.at.format("%-d %b %Y, %H:%M UTC")) }
                                        { "This wasn't me" }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(before) = activity.next_before {
                p { a.button.secondary href={ "/profile/activity?before=" (before) } { "Older activity" } }
            }
            p { a href="/profile" { "Back to My Profile" } }
        }
    }))
}

#[derive(Deserialize)]
pub(super) struct ReportForm {
    sequence: i64,
}

pub(super) async fn report(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<ReportForm>,
) -> Answer {
    let Form { browser, value } = form;
    let token = session(&browser)?;
    Ok(
        match ctx
            .app
            .report_activity(&caller, token, value.sequence)
            .await
        {
            Ok(_) => signed_out_to(&ctx, "reported"),
            Err(err) => refused(&ctx, &err, Step::Other, |status, problem| {
                problem_page(&ctx, &browser, status, TITLE, &problem.message)
            }),
        },
    )
}

/// The page the "this wasn't me" link of a new-device notice opens.
#[utoipa::path(get, path = "/v1/report", tag = "me",
    params(LinkQuery),
    responses(
        (status = 200, description = "A confirm page", content_type = "text/html"),
        (status = 400, description = "A page saying the link is broken", content_type = "text/html"),
        (status = 410, description = "A page saying the link was used or has expired", content_type = "text/html"),
    ))]
pub async fn report_page(
    State(ctx): State<ApiContext>,
    caller: Caller,
    browser: Browser,
    query: Result<Query<LinkQuery>, QueryRejection>,
) -> Response {
    link_page(&ctx, &caller, &browser, LinkKind::Report, query, "Was this sign-in not you?", |account, token, csrf| {
        html! {
            p { "Someone signed in to " strong #link-account { (account) } " from a browser it had not been signed in from before. If it was not you, report it: every session of the account ends and your administrator is told." }
            form method="post" action="/report" {
                (csrf.field())
                input type="hidden" name="token" value=(token);
                button.danger type="submit" { "It wasn't me: sign out everywhere" }
            }
            p { "Then sign in and change your password: whoever signed in knew it." }
        }
    })
    .await
}

pub(super) async fn report_by_link(
    State(ctx): State<ApiContext>,
    caller: Caller,
    form: Form<TokenForm>,
) -> Response {
    let Form { browser, value } = form;
    match ctx.app.report_by_link(&caller, &value.token).await {
        Ok(_) => signed_out_to(&ctx, "reported"),
        Err(err) => link_refused(&ctx, &caller, &browser, &err).await,
    }
}
