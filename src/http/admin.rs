//! The operators' API: find accounts and read one (admins and auditors),
//! and act on one (admins): reset its MFA, unlock, suspend and reactivate
//! it, end its sessions, mail its verification link again. The events
//! record the admin credential as actor, and the reason.
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::audit::{path_user, query, MfaState};
use super::extract::{Admin, Json, StaffReader};
use super::sessions::{session_items, SessionItem};
use super::{ApiContext, ApiError, BodyProblems, Problem, Result, ServerProblems};
use crate::app::{self, AdminAction, AdminDone as Done, Caller, UserFilter, UserQuery};
use crate::audit::AuditEvent;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminRequest {
    /// Why, for the record: 1 to 500 characters, without control characters.
    reason: String,
}

impl AdminRequest {
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

#[derive(Serialize, ToSchema)]
pub struct AdminDone {
    sessions_ended: usize,
}

impl AdminDone {
    pub fn ended(sessions_ended: usize) -> Self {
        Self { sessions_ended }
    }
}

/// Problems both admin routes can answer, for the OpenAPI document (never
/// constructed).
#[allow(dead_code)]
#[derive(utoipa::IntoResponses)]
pub enum AdminProblems {
    /// `unauthenticated`: no admin credential
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated(Problem),
    /// `forbidden`: an auditor's credential
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// `unknown-user`
    #[response(status = 404, content_type = "application/problem+json")]
    UnknownUser(Problem),
}

impl From<Done> for AdminDone {
    fn from(done: Done) -> Self {
        Self {
            sessions_ended: done.sessions_ended,
        }
    }
}

macro_rules! admin_action {
    ($name:ident, $action:expr, $path:literal, $doc:literal, $done:literal, $conflicts:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "admin",
            params(("user" = String, Path, description = "User id or email")),
            request_body = AdminRequest,
            security(("admin" = [])),
            responses(
                (status = 200, description = $done, body = AdminDone),
                AdminProblems,
                (status = 409, description = $conflicts, body = Problem, content_type = "application/problem+json"),
                (status = 422, description = "`invalid-body`, `invalid-reason`", body = Problem, content_type = "application/problem+json"),
                BodyProblems,
                ServerProblems,
            ))]
        pub async fn $name(
            State(ctx): State<ApiContext>,
            caller: Caller,
            Admin(admin): Admin,
            user: std::result::Result<Path<String>, PathRejection>,
            Json(body): Json<AdminRequest>,
        ) -> Result<axum::Json<AdminDone>> {
            let user = path_user(user)?;
            let done = ctx
                .app
                .admin_act(&caller, &admin, &user, $action, &body.reason)
                .await?;
            Ok(axum::Json(done.into()))
        }
    };
}

admin_action!(
    reset_mfa,
    AdminAction::ResetMfa,
    "/v1/admin/users/{user}/mfa/reset",
    "Resets a user's MFA (lost phone, identity checked out of band): the authenticator and recovery code are forgotten and every session ends.",
    "Reset",
    "`contended`"
);
admin_action!(
    unlock,
    AdminAction::Unlock,
    "/v1/admin/users/{user}/unlock",
    "Unlocks a locked or throttled account and clears its failure count.",
    "Unlocked",
    "`not-locked`, `contended`"
);
admin_action!(
    suspend,
    AdminAction::Suspend,
    "/v1/admin/users/{user}/suspend",
    "Suspends an account: every session ends, and no route signs it in until it is reactivated.",
    "Suspended",
    "`already-suspended`, `contended`"
);
admin_action!(
    reactivate,
    AdminAction::Reactivate,
    "/v1/admin/users/{user}/reactivate",
    "Reactivates a suspended account.",
    "Reactivated",
    "`not-suspended`, `contended`"
);
admin_action!(
    end_sessions,
    AdminAction::EndSessions,
    "/v1/admin/users/{user}/sessions/end",
    "Ends every session of an account (a stolen laptop); with none live, records nothing.",
    "The sessions ended",
    "`contended`"
);
admin_action!(
    resend_verification,
    AdminAction::ResendVerification,
    "/v1/admin/users/{user}/verification/resend",
    "Mails a new verification link to an account that has not confirmed its address (the old link stops working). The limit of 3 such mails an hour per address holds.",
    "Mailed",
    "`already-verified`, `contended`; 429 `verification-mails-exhausted`"
);

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsersQuery {
    /// An address, whole (found through the blind index).
    email: Option<String>,
    /// The start of an address, any case. Addresses are stored sealed, so a prefix search opens each account's address in memory: it costs a read of the whole list.
    prefix: Option<String>,
    /// `locked` (or throttled), `suspended`, `pending-mfa-reset`, `no-authenticator`, `unverified` or `reported` (the user said some activity was not them).
    filter: Option<String>,
    /// Cursor: the previous page's `next`.
    after: Option<String>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct UsersPage {
    /// Newest registration first.
    users: Vec<UserItem>,
    /// The `after` of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UserItem {
    user_id: Uuid,
    email: Option<String>,
    registered_at: DateTime<Utc>,
    email_verified: bool,
    mfa_enrolled: bool,
    mfa_enrolled_at: Option<DateTime<Utc>>,
    locked: bool,
    throttled_until: Option<DateTime<Utc>>,
    suspended_at: Option<DateTime<Utc>>,
    /// When a waiting MFA reset takes effect.
    pending_mfa_reset_at: Option<DateTime<Utc>>,
    /// When the user last reported a sign-in or a change as not theirs.
    reported_at: Option<DateTime<Utc>>,
    last_sign_in_at: Option<DateTime<Utc>>,
    last_sign_in_method: Option<String>,
}

impl From<app::UserSummary> for UserItem {
    fn from(u: app::UserSummary) -> Self {
        Self {
            user_id: u.user_id,
            email: u.email,
            registered_at: u.registered_at,
            email_verified: u.email_verified,
            mfa_enrolled: u.mfa_enrolled_at.is_some(),
            mfa_enrolled_at: u.mfa_enrolled_at,
            locked: u.locked,
            throttled_until: u.throttled_until,
            suspended_at: u.suspended_at,
            pending_mfa_reset_at: u.mfa_reset_due_at,
            reported_at: u.reported_at,
            last_sign_in_at: u.last_sign_in_at,
            last_sign_in_method: u.last_sign_in_method,
        }
    }
}

/// What a list filter names.
pub fn parse_filter(filter: Option<&str>) -> Result<UserFilter> {
    Ok(match filter.unwrap_or("") {
        "" | "all" => UserFilter::All,
        "locked" => UserFilter::Locked,
        "suspended" => UserFilter::Suspended,
        "pending-mfa-reset" => UserFilter::PendingMfaReset,
        "no-authenticator" => UserFilter::NoAuthenticator,
        "unverified" => UserFilter::Unverified,
        "reported" => UserFilter::Reported,
        _ => return Err(ApiError::invalid_query().with_detail(
            "filter is one of locked, suspended, pending-mfa-reset, no-authenticator, unverified, reported",
        )),
    })
}

/// Lists accounts from the `users` read model, newest first, by address
/// (whole or its start) and filter, a page at a time. It follows the log
/// a moment behind; each account's own page reads the log itself.
#[utoipa::path(get, path = "/v1/admin/users", tag = "admin",
    params(UsersQuery),
    security(("admin" = []), ("auditor" = [])),
    responses(
        (status = 200, description = "A page of accounts", body = UsersPage),
        (status = 400, description = "`invalid-query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-email`: `email` is not an address", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn list_users(
    State(ctx): State<ApiContext>,
    _reader: StaffReader,
    params: std::result::Result<Query<UsersQuery>, QueryRejection>,
) -> Result<axum::Json<UsersPage>> {
    let params = query(params)?;
    let page = ctx
        .app
        .list_users(UserQuery {
            filter: parse_filter(params.filter.as_deref())?,
            email: params.email,
            prefix: params.prefix,
            after: params.after,
            limit: params.limit,
        })
        .await?;
    Ok(axum::Json(UsersPage {
        users: page.users.into_iter().map(UserItem::from).collect(),
        next: page.next,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct UserPage {
    email: Option<String>,
    state: MfaState,
    /// The live sessions, with the IP and browser each began from.
    sessions: Vec<SessionItem>,
    /// The newest 20 events, newest first.
    recent_events: Vec<AuditEvent>,
    /// When the user last reported a sign-in or a change as not theirs.
    #[serde(skip_serializing_if = "Option::is_none")]
    reported_at: Option<DateTime<Utc>>,
}

/// One account now: its state, its live sessions, its newest events.
#[utoipa::path(get, path = "/v1/admin/users/{user}", tag = "admin",
    params(("user" = String, Path, description = "User id or email")),
    security(("admin" = []), ("auditor" = [])),
    responses(
        (status = 200, description = "The account", body = UserPage),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown-user`", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn user_detail(
    State(ctx): State<ApiContext>,
    _reader: StaffReader,
    user: std::result::Result<Path<String>, PathRejection>,
) -> Result<axum::Json<UserPage>> {
    let user = path_user(user)?;
    let detail = ctx.app.user_detail(&user).await?;
    let now = ctx.app.now();
    Ok(axum::Json(UserPage {
        email: detail.email,
        state: MfaState::of(detail.user_id, now, &detail.state, detail.authenticators),
        sessions: session_items(detail.sessions),
        recent_events: detail.recent,
        reported_at: detail.reported_at,
    }))
}
