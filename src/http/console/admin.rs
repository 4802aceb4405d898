//! The operators' console under `/admin`: sign in with an admin or auditor
//! credential, find accounts, read one, and (admins only) act on it with a
//! stated reason. The same rules as the user console: no script, every
//! form a POST with a CSRF tag bound to the operator's sign-in, the same
//! headers. The credential itself never goes into a cookie: signing in
//! trades it for a console token (`al_staff_`) that lasts an hour by
//! default and dies with the credential's removal from the configuration.
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;

use super::browser::{clear_cookie, see_other, set_cookie, Browser, CookieName, Csrf, Form};
use super::views::{Page, Problem};
use super::{failure, method_words, show, when, Failure, NoFields, Step};
use crate::app::{
    AdminAction, AppError, Caller, Role, StaffSession, UserDetail, UserQuery, UserSummary,
};
use crate::http::admin::parse_filter;
use crate::http::{ApiContext, ApiError};

pub(super) fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/admin", get(list_page))
        .route("/admin/sign-in", get(sign_in_page).post(sign_in))
        .route("/admin/sign-out", post(sign_out))
        .route("/admin/users/{user}", get(user_page))
        .route("/admin/users/{user}/{action}", post(act))
}

const SIGN_IN: &str = "/admin/sign-in";

/// The operator this browser signed in, or the way to the sign-in page.
#[allow(clippy::result_large_err)] // a page, as every console handler answers
fn operator(ctx: &ApiContext, browser: &Browser) -> Result<StaffSession, Response> {
    let Some(token) = browser.staff.as_deref() else {
        return Err(see_other(SIGN_IN));
    };
    match ctx.app.staff_session(token) {
        Ok(session) => Ok(session),
        Err(_) => {
            let mut response = see_other(&format!("{SIGN_IN}?notice=expired"));
            clear_cookie(ctx, &mut response, CookieName::Staff);
            Err(response)
        }
    }
}

fn role_words(role: Role) -> &'static str {
    match role {
        Role::Admin => "administrator",
        Role::Auditor => "auditor (read only)",
        Role::Client => "client",
    }
}

/// Who is signed in, and the way out; on every operator page.
fn operator_bar(session: &StaffSession, csrf: &Csrf) -> Markup {
    html! {
        div.actions {
            p.hint { "Signed in as " (role_words(session.role)) " " code { (session.staff.name()) } ", until " (when(session.expires_at)) "." }
            form method="post" action="/admin/sign-out" {
                (csrf.field())
                button.link type="submit" { "Sign out of the operators' console" }
            }
        }
    }
}

fn notice_of(query: Option<&str>, key: &str) -> Option<String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default();
    pairs.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

async fn sign_in_page(
    State(ctx): State<ApiContext>,
    browser: Browser,
    RawQuery(query): RawQuery,
) -> Response {
    let notice = match notice_of(query.as_deref(), "notice").as_deref() {
        Some("expired") => Some("Your sign-in to the operators' console has ended. Sign in again."),
        Some("signed-out") => Some("You are signed out of the operators' console."),
        _ => None,
    };
    sign_in_view(&ctx, &browser, notice, None)
}

fn sign_in_view(
    ctx: &ApiContext,
    browser: &Browser,
    notice: Option<&str>,
    error: Option<&str>,
) -> Response {
    let page = Page {
        notice,
        status: if error.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        },
        error: error.map(|message| Problem {
            message: message.to_owned(),
            retry_after: None,
        }),
        ..Page::new("Operators' console")
    };
    show(ctx, browser, page, |csrf| {
        html! {
            p { "For administrators and auditors: sign in with the credential you were given (one of the service's admin or auditor tokens)." }
            form method="post" action="/admin/sign-in" {
                (csrf.field())
                label for="credential" { "Operator credential" }
                input #credential type="password" name="credential" autocomplete="off" required;
                div.actions { button type="submit" { "Sign in" } }
            }
        }
    })
}

#[derive(Deserialize)]
struct CredentialForm {
    credential: String,
}

async fn sign_in(State(ctx): State<ApiContext>, form: Form<CredentialForm>) -> Response {
    let Form { browser, value } = form;
    match ctx.app.staff_sign_in(&value.credential) {
        Ok((token, session)) => {
            tracing::info!(staff = %session.staff.name(), role = ?session.role, "operator console sign-in");
            let mut response = see_other("/admin");
            set_cookie(
                &ctx,
                &mut response,
                CookieName::Staff,
                &token,
                Some(session.expires_at),
            );
            // A tag seen before the sign-in is worth nothing after it.
            clear_cookie(&ctx, &mut response, CookieName::Csrf);
            response
        }
        Err(_) => sign_in_view(
            &ctx,
            &browser,
            None,
            Some("That is not an operator credential."),
        ),
    }
}

async fn sign_out(State(ctx): State<ApiContext>, form: Form<NoFields>) -> Response {
    let _ = form;
    let mut response = see_other(&format!("{SIGN_IN}?notice=signed-out"));
    clear_cookie(&ctx, &mut response, CookieName::Staff);
    clear_cookie(&ctx, &mut response, CookieName::Csrf);
    response
}

#[derive(Deserialize, Default)]
struct ListParams {
    q: Option<String>,
    filter: Option<String>,
    after: Option<String>,
}

const FILTERS: [(&str, &str); 7] = [
    ("all", "Everyone"),
    ("locked", "Locked or throttled"),
    ("suspended", "Suspended"),
    ("pending-mfa-reset", "MFA reset waiting"),
    ("no-authenticator", "No authenticator"),
    ("unverified", "Address not confirmed"),
    ("reported", "Reported by the user"),
];

async fn list_page(
    State(ctx): State<ApiContext>,
    browser: Browser,
    RawQuery(query): RawQuery,
) -> Result<Response, Response> {
    let session = operator(&ctx, &browser)?;
    let params: ListParams =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let typed = params.q.clone().unwrap_or_default();
    let filter_name = params.filter.clone().unwrap_or_else(|| "all".into());
    let filter = parse_filter(Some(&filter_name));
    // A whole address is found through its blind index; anything else is
    // the start of one.
    let whole = authledger_aggregates::Email::parse(typed.trim()).is_ok();
    let listed = match filter {
        Ok(filter) => ctx
            .app
            .list_users(UserQuery {
                email: whole.then(|| typed.trim().to_owned()),
                prefix: (!whole && !typed.trim().is_empty()).then(|| typed.clone()),
                filter,
                after: params.after.clone(),
                limit: None,
            })
            .await
            .map_err(|err| error_words(&err)),
        Err(_) => Err("Choose one of the filters offered.".to_owned()),
    };
    let done = notice_of(query.as_deref(), "done");
    let page = Page {
        notice: (done.as_deref() == Some("erased")).then_some("The account is erased."),
        error: listed.as_ref().err().map(|message| Problem {
            message: message.clone(),
            retry_after: None,
        }),
        status: if listed.is_ok() {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        },
        ..Page::new("Accounts")
    };
    Ok(show(&ctx, &browser, page, |csrf| {
        html! {
            (operator_bar(&session, csrf))
            form.filters method="get" action="/admin" role="search" {
                div {
                    label for="q" { "Address, or its start" }
                    input #q type="search" name="q" value=(typed) autocomplete="off";
                }
                div {
                    label for="filter" { "Show" }
                    select #filter name="filter" {
                        @for (value, words) in FILTERS {
                            option value=(value) selected[value == filter_name] { (words) }
                        }
                    }
                }
                div { button type="submit" { "Search" } }
            }
            @if let Ok(page) = &listed {
                @if page.users.is_empty() {
                    p #no-accounts { "No account matches." }
                } @else {
                    table.listing #accounts {
                        caption.visually-hidden { "Accounts, newest first" }
                        thead { tr {
                            th scope="col" { "Address" }
                            th scope="col" { "Registered" }
                            th scope="col" { "State" }
                            th scope="col" { "Last sign-in" }
                        } }
                        tbody {
                            @for user in &page.users {
                                tr {
                                    td { a href={ "/admin/users/" (user.user_id) } { (user.email.as_deref().unwrap_or("(erased)")) } }
                                    td { (when(user.registered_at)) }
                                    td { (badges(user)) }
                                    td { @match user.last_sign_in_at { Some(at) => (when(at)), None => "Never" } }
                                }
                            }
                        }
                    }
                    @if let Some(next) = &page.next {
                        p { a href={ "/admin?" (next_query(&typed, &filter_name, next)) } { "Older accounts" } }
                    }
                }
            }
        }
    }))
}

fn next_query(q: &str, filter: &str, after: &str) -> String {
    serde_urlencoded::to_string([("q", q), ("filter", filter), ("after", after)])
        .unwrap_or_default()
}

fn badges(user: &UserSummary) -> Markup {
    html! {
        @if user.reported_at.is_some() { span.badge.warn { "Reported" } " " }
        @if user.suspended_at.is_some() { span.badge.warn { "Suspended" } " " }
        @if user.locked { span.badge.warn { "Locked" } " " }
        @else if user.throttled_until.is_some() { span.badge.warn { "Throttled" } " " }
        @if user.mfa_reset_due_at.is_some() { span.badge { "MFA reset waiting" } " " }
        @if user.mfa_enrolled_at.is_none() { span.badge { "No authenticator" } " " }
        @if !user.email_verified { span.badge { "Unconfirmed" } " " }
    }
}

async fn user_page(
    State(ctx): State<ApiContext>,
    browser: Browser,
    Path(user): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Response> {
    let session = operator(&ctx, &browser)?;
    let detail = ctx.app.user_detail(&user).await;
    let done = notice_of(query.as_deref(), "done");
    let notice = done.as_deref().and_then(done_words);
    let detail = match detail {
        Ok(detail) => detail,
        Err(err) => {
            let status = ApiError::from(&err).status();
            let page = Page {
                status,
                ..Page::new("Account")
            };
            return Ok(show(&ctx, &browser, page, |csrf| {
                html! {
                    (operator_bar(&session, csrf))
                    p { (error_words(&err)) }
                    p { a href="/admin" { "Back to the accounts" } }
                }
            }));
        }
    };
    let title = detail.email.clone().unwrap_or_else(|| "Account".into());
    let page = Page {
        notice,
        ..Page::new(&title)
    };
    Ok(show(&ctx, &browser, page, |csrf| {
        html! {
            (operator_bar(&session, csrf))
            p { a href="/admin" { "Back to the accounts" } }
            (facts(&detail))
            h2 { "Sessions" }
            @if detail.sessions.is_empty() {
                p { "No live session." }
            } @else {
                table.listing #user-sessions {
                    caption.visually-hidden { "Live sessions" }
                    thead { tr {
                        th scope="col" { "Browser" }
                        th scope="col" { "Signed in" }
                        th scope="col" { "Last active" }
                    } }
                    tbody {
                        @for s in &detail.sessions {
                            tr {
                                td { (s.browser.as_deref().unwrap_or("Unknown browser")) @if let Some(ip) = &s.ip { br; span.hint { "from " (ip) } } }
                                td { (when(s.started_at)) br; span.hint { "with " (method_words(s.method)) } }
                                td { (when(s.last_active_at)) }
                            }
                        }
                    }
                }
            }
            @if session.role == Role::Admin {
                (actions(&detail, csrf))
            } @else {
                p.hint #read-only { "Auditors read these pages; only an administrator can act on an account." }
            }
            h2 { "Recent history" }
            table.listing #recent-events {
                caption.visually-hidden { "The newest events, newest first" }
                thead { tr {
                    th scope="col" { "When" }
                    th scope="col" { "Event" }
                    th scope="col" { "By" }
                } }
                tbody {
                    @for event in &detail.recent {
                        tr {
                            td { (when(event.occurred_at)) }
                            td { (event.event_type) }
                            td { (event.actor) }
                        }
                    }
                }
            }
        }
    }))
}

fn facts(detail: &UserDetail) -> Markup {
    let state = &detail.state;
    html! {
        dl.facts #account-facts {
            dt { "User id" }
            dd { code { (detail.user_id) } }
            dt { "Address" }
            dd { (detail.email.as_deref().unwrap_or("(cannot be opened)")) " "
                @if state.email_verified { "(confirmed)" } @else { span.badge { "Unconfirmed" } } }
            dt { "Multi-factor authentication" }
            dd #account-mfa {
                @match state.enrolled_at {
                    Some(at) => { "Authenticator since " (when(at)) }
                    None => { "No authenticator: the next sign-in enrolls one" }
                }
                @if state.recovery_code_present { "; recovery code set" }
            }
            @if let Some(at) = state.pending_mfa_reset {
                dt { "MFA reset waiting" }
                dd { "Takes effect " (when(at)) }
            }
            @if let Some(at) = detail.reported_at {
                dt { "Reported by the user" }
                dd #account-reported { span.badge.warn { "Reported" } " The user said a sign-in or a change was not them, " (when(at)) ". Every session ended then; see the recent history." }
            }
            dt { "Sign-in" }
            dd #account-standing {
                @if state.suspended { span.badge.warn { "Suspended" } " No route signs it in." }
                @else if state.locked { span.badge.warn { "Locked" } " after " (state.consecutive_failures) " failures." }
                @else if let Some(until) = state.throttled_until { span.badge.warn { "Throttled" } " until " (when(until)) "." }
                @else { "In good standing (" (state.consecutive_failures) " recent failures)." }
            }
        }
    }
}

/// What an administrator can do to the account now, each with a reason.
fn actions(detail: &UserDetail, csrf: &Csrf) -> Markup {
    let state = &detail.state;
    let user = detail.user_id;
    let mut offered: Vec<(&str, &str, bool)> = Vec::new();
    if state.suspended {
        offered.push(("reactivate", "Reactivate", false));
    } else {
        offered.push(("suspend", "Suspend", true));
    }
    if state.locked || state.throttled_until.is_some() || state.consecutive_failures > 0 {
        offered.push(("unlock", "Unlock", false));
    }
    if !detail.sessions.is_empty() {
        offered.push(("end-sessions", "End all sessions", true));
    }
    if state.enrolled_at.is_some() || state.recovery_code_present {
        offered.push(("reset-mfa", "Reset MFA", true));
    }
    if !state.email_verified {
        offered.push((
            "resend-verification",
            "Mail the confirmation link again",
            false,
        ));
    }
    offered.push(("erase", "Erase the account", true));
    html! {
        h2 { "Act on the account" }
        p.hint { "Each action is recorded with your credential's name and the reason you give." }
        @for (action, words, danger) in offered {
            form.action method="post" action={ "/admin/users/" (user) "/" (action) } {
                (csrf.field())
                label for={ "reason-" (action) } { (words) ": reason" }
                input id={ "reason-" (action) } type="text" name="reason" required maxlength="500" autocomplete="off";
                @if action == "erase" {
                    p {
                        input #confirm-erase type="checkbox" name="confirm" value="yes" required;
                        " "
                        label for="confirm-erase" { "I understand the account and its personal data are gone for good." }
                    }
                }
                div.actions {
                    @if danger { button.danger type="submit" { (words) } }
                    @else { button type="submit" { (words) } }
                }
            }
        }
    }
}

fn done_words(done: &str) -> Option<&'static str> {
    Some(match done {
        "suspend" => "The account is suspended and its sessions ended.",
        "reactivate" => "The account is reactivated.",
        "unlock" => "The account is unlocked.",
        "end-sessions" => "Every session of the account ended.",
        "reset-mfa" => "The account's MFA is reset; its next sign-in enrolls a new authenticator.",
        "resend-verification" => "A new confirmation link is on its way.",
        _ => return None,
    })
}

#[derive(Deserialize)]
struct ActionForm {
    reason: String,
    confirm: Option<String>,
}

async fn act(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Path((user, action)): Path<(String, String)>,
    form: Form<ActionForm>,
) -> Result<Response, Response> {
    let Form { browser, value } = form;
    let session = operator(&ctx, &browser)?;
    let outcome = if session.role != Role::Admin {
        Err(AppError::Forbidden)
    } else {
        let (app, admin, reason) = (&ctx.app, &session.staff, value.reason.as_str());
        match (action.as_str(), AdminAction::from_slug(&action)) {
            (_, Some(act)) => app
                .admin_act(&caller, admin, &user, act, reason)
                .await
                .map(drop),
            ("erase", None) if value.confirm.as_deref() == Some("yes") => {
                match app.admin_erase(&caller, admin, &user, reason).await {
                    Ok(_) => return Ok(see_other("/admin?done=erased")),
                    Err(err) => Err(err),
                }
            }
            ("erase", None) => Err(AppError::ErasureNotConfirmed),
            _ => return Err(see_other("/admin")),
        }
    };
    match outcome {
        Ok(()) => Ok(see_other(&format!("/admin/users/{user}?done={action}"))),
        Err(err) => {
            let status = ApiError::from(&err).status();
            let page = Page {
                status,
                error: Some(Problem {
                    message: error_words(&err),
                    retry_after: None,
                }),
                ..Page::new("That did not happen")
            };
            Ok(show(&ctx, &browser, page, |csrf| {
                html! {
                    (operator_bar(&session, csrf))
                    p { a href={ "/admin/users/" (user) } { "Back to the account" } }
                }
            }))
        }
    }
}

/// A refusal in an operator's words.
fn error_words(err: &AppError) -> String {
    match err {
        AppError::ErasureNotConfirmed => "Tick the box to confirm the erasure.".to_owned(),
        AppError::InvalidQuery(why) => format!("That search cannot be run: {why}."),
        other => match failure(other, Step::Other) {
            Failure::Say(problem) | Failure::Over(problem) => problem.message,
            Failure::Go(_) => "Sign in to the operators' console again.".to_owned(),
        },
    }
}
