//! The signed-in user's security timeline, and "this wasn't me", from a
//! session or the link mailed with a new-device notice.
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::audit::query;
use super::extract::{BearerToken, Json};
use super::users::TokenRequest;
use super::{ApiContext, ApiError, BodyProblems, Problem, Result, ServerProblems};
use crate::app::{self, ActivityPageSize, Caller};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ActivityQuery {
    /// Entries older than this sequence (the previous page's `next_before`).
    before: Option<i64>,
    /// Page size, 1 to 100 (default 20).
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Activity {
    /// Newest first.
    entries: Vec<ActivityItem>,
    /// Pass as `before` for the next, older page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ActivityItem {
    /// The event's number in the account's history; what a report names.
    sequence: i64,
    at: DateTime<Utc>,
    /// What happened, by a stable name: `signed_in`, `password_rejected`,
    /// `code_rejected`, `email_link_requested`, `recovery_code_used`,
    /// `mfa_reset_requested`, `password_changed`, `reported`, …
    #[serde(rename = "type")]
    kind: String,
    /// What happened, in words.
    summary: String,
    /// The IP address the request came from, when the account's personal
    /// data can be opened and the request was the account's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    /// The browser and system, in words, e.g. "Firefox on Linux".
    #[serde(skip_serializing_if = "Option::is_none")]
    browser: Option<String>,
    /// A sign-in from a browser this account had not signed in from.
    new_device: bool,
    /// "This wasn't me" may be said of it.
    reportable: bool,
    /// It was said already.
    reported: bool,
}

impl From<app::ActivityEntry> for ActivityItem {
    fn from(entry: app::ActivityEntry) -> Self {
        Self {
            sequence: entry.sequence,
            at: entry.at,
            kind: entry.kind.to_owned(),
            summary: entry.summary,
            ip: entry.ip,
            browser: entry.browser,
            new_device: entry.new_device,
            reportable: entry.reportable,
            reported: entry.reported,
        }
    }
}

/// The signed-in user's security timeline, newest first: sign-ins and
/// their failures, links asked for, changes of credentials, what
/// administrators did, with the IP and browser of each request. No secret
/// and no token ever appears.
#[utoipa::path(get, path = "/v1/me/activity", tag = "me",
    params(ActivityQuery),
    security(("session" = [])),
    responses(
        (status = 200, description = "A page of the timeline", body = Activity),
        (status = 400, description = "`invalid-query`: an unknown parameter, or `before` or `limit` out of range", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`contended`", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn list(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
    params: std::result::Result<Query<ActivityQuery>, QueryRejection>,
) -> Result<axum::Json<Activity>> {
    let params = query(params)?;
    let page = ctx
        .app
        .my_activity(
            &caller,
            &token,
            params.before,
            ActivityPageSize::parse(params.limit)?,
        )
        .await?;
    Ok(axum::Json(Activity {
        entries: page.entries.into_iter().map(ActivityItem::from).collect(),
        next_before: page.next_before,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ReportDone {
    /// Every session ended, the one asking too.
    sessions_ended: usize,
    /// A waiting MFA reset was called off.
    reset_cancelled: bool,
}

impl From<app::Reported> for ReportDone {
    fn from(done: app::Reported) -> Self {
        Self {
            sessions_ended: done.sessions_ended,
            reset_cancelled: done.reset_cancelled,
        }
    }
}

/// "This wasn't me" about a sign-in or a change of credentials in the
/// timeline: every session of the account ends, this one too, a waiting
/// MFA reset is called off, and operators are told.
#[utoipa::path(post, path = "/v1/me/activity/{sequence}/report", tag = "me",
    params(("sequence" = i64, Path, description = "The entry's sequence, as the timeline lists it")),
    security(("session" = [])),
    responses(
        (status = 200, description = "Reported; signed out everywhere", body = ReportDone),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown-activity`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`already-reported`, `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`not-reportable`: neither a sign-in nor a change of credentials", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn report(
    State(ctx): State<ApiContext>,
    caller: Caller,
    BearerToken(token): BearerToken,
    sequence: std::result::Result<Path<i64>, PathRejection>,
) -> Result<axum::Json<ReportDone>> {
    let Path(sequence) = sequence.map_err(|_| ApiError::unknown_activity())?;
    let done = ctx.app.report_activity(&caller, &token, sequence).await?;
    Ok(axum::Json(done.into()))
}

/// "This wasn't me" through the link of a new-device notice: reports that
/// sign-in, ends every session of the account and calls off a waiting MFA
/// reset. The link works once.
#[utoipa::path(post, path = "/v1/report", tag = "me",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Reported; signed out everywhere", body = ReportDone),
        (status = 401, description = "`invalid-token`: not such a link of ours", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`already-reported`: the link was used, or the sign-in reported otherwise; `contended`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`report-link-invalid`: the link has expired", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn report_by_link(
    State(ctx): State<ApiContext>,
    caller: Caller,
    Json(body): Json<TokenRequest>,
) -> Result<axum::Json<ReportDone>> {
    let done = ctx.app.report_by_link(&caller, &body.token).await?;
    Ok(axum::Json(done.into()))
}
