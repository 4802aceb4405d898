//! Auditors' reads: a user's history, their MFA state at an instant, and
//! the global history, paginated or streamed as NDJSON.
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{query_rejection, Auditor};
use super::{ApiContext, ApiError, Problem, Result, ServerProblems};
use authledger_aggregates::AuditState;

use crate::app::{self, EventFilter, PageSize};
use crate::audit::AuditEvent;

pub(super) fn query<T>(query: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    query.map(|Query(q)| q).map_err(query_rejection)
}

pub fn path_user(path: std::result::Result<Path<String>, PathRejection>) -> Result<String> {
    path.map(|Path(user)| user)
        .map_err(|_| ApiError::unknown_user())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Return events after this sequence number (the previous page's `next_after`).
    after: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct History {
    user_id: Uuid,
    events: Vec<AuditEvent>,
    /// Pass as `after` for the next page; absent on the last.
    next_after: Option<i64>,
}

/// A user's history, oldest first: every event with its metadata.
#[utoipa::path(get, path = "/v1/audit/users/{user}/events", tag = "audit",
    params(("user" = String, Path, description = "User id or email"), HistoryQuery),
    security(("auditor" = [])),
    responses(
        (status = 200, description = "A page of the history", body = History),
        (status = 400, description = "`invalid-query`: an unknown parameter, or `after` or `limit` out of range", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`: no auditor credential", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: an admin's credential", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown-user`", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn user_events(
    State(ctx): State<ApiContext>,
    _auditor: Auditor,
    who: std::result::Result<Path<String>, PathRejection>,
    params: std::result::Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<axum::Json<History>> {
    let params = query(params)?;
    let who = path_user(who)?;
    let history = ctx
        .app
        .user_history(&who, params.after, PageSize::parse(params.limit)?)
        .await?;
    Ok(axum::Json(History {
        user_id: history.user_id,
        events: history.events,
        next_after: history.next_after,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StateQuery {
    /// The instant, RFC 3339 (default: now).
    at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct MfaState {
    user_id: Uuid,
    at: DateTime<Utc>,
    registered: bool,
    mfa_enrolled: bool,
    mfa_enrolled_at: Option<DateTime<Utc>>,
    recovery_code_present: bool,
    /// Whether the address was proven (accounts from before verification
    /// existed count as proven).
    email_verified: bool,
    /// When a waiting MFA reset, asked from a session won by email link,
    /// takes effect.
    pending_mfa_reset_at: Option<DateTime<Utc>>,
    locked: bool,
    /// Set while sign-in waits after repeated failures.
    throttled_until: Option<DateTime<Utc>>,
    consecutive_failures: u32,
    /// Suspended by an administrator: no route signs it in.
    suspended: bool,
    /// Every authenticator held at the instant, oldest first.
    authenticators: Vec<AuditedAuthenticator>,
    live_sessions: Vec<LiveSession>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditedAuthenticator {
    id: Uuid,
    /// `totp` or `webauthn`.
    kind: String,
    /// As its owner named it; `erased` once the account is erased.
    name: String,
    added_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    /// A security key's credential id (base64url), as its browser names it.
    credential_id: Option<String>,
    transports: Vec<String>,
    /// When it answered with a signature count that went back; refused since.
    suspected_copy_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct LiveSession {
    method: String,
    aal: String,
    started_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    last_active_at: DateTime<Utc>,
}

fn label<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A user's MFA state as of an instant, folded from their events up to it.
#[utoipa::path(get, path = "/v1/audit/users/{user}/state", tag = "audit",
    params(("user" = String, Path, description = "User id or email"), StateQuery),
    security(("auditor" = [])),
    responses(
        (status = 200, description = "The state at that instant", body = MfaState),
        (status = 400, description = "`invalid-query`: `at` is not RFC 3339 or outside the years 1 to 9999, or an unknown parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown-user`", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn user_state(
    State(ctx): State<ApiContext>,
    _auditor: Auditor,
    who: std::result::Result<Path<String>, PathRejection>,
    params: std::result::Result<Query<StateQuery>, QueryRejection>,
) -> Result<axum::Json<MfaState>> {
    let params = query(params)?;
    let who = path_user(who)?;
    let (user_id, at, state, authenticators) = ctx.app.user_state(&who, params.at).await?;
    Ok(axum::Json(MfaState::of(
        user_id,
        at,
        &state,
        authenticators,
    )))
}

impl MfaState {
    pub(super) fn of(
        user_id: Uuid,
        at: DateTime<Utc>,
        state: &AuditState,
        authenticators: Vec<app::AuthenticatorEntry>,
    ) -> Self {
        Self {
            user_id,
            at,
            registered: state.registered,
            mfa_enrolled: state.enrolled_at.is_some(),
            mfa_enrolled_at: state.enrolled_at,
            recovery_code_present: state.recovery_code_present,
            email_verified: state.email_verified,
            pending_mfa_reset_at: state.pending_mfa_reset,
            locked: state.locked,
            throttled_until: state.throttled_until,
            consecutive_failures: state.consecutive_failures,
            suspended: state.suspended,
            authenticators: authenticators
                .into_iter()
                .map(|a| AuditedAuthenticator {
                    id: a.id.0,
                    kind: label(&a.kind),
                    name: a.name,
                    added_at: a.added_at,
                    last_used_at: a.last_used_at,
                    credential_id: a.credential_id,
                    transports: a.transports,
                    suspected_copy_at: a.suspected_copy_at,
                })
                .collect(),
            live_sessions: state
                .live_sessions
                .iter()
                .map(|s| LiveSession {
                    method: label(&s.method),
                    aal: label(&s.aal),
                    started_at: s.started_at,
                    expires_at: s.expires_at,
                    last_active_at: s.last_active_at,
                })
                .collect(),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Cursor: the previous page's `next`.
    after: Option<String>,
    /// Page size, 1 to 1000 (default 100); NDJSON streams everything, but checks it too.
    limit: Option<i64>,
    /// Only events of this type, e.g. `MfaReset`.
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// Only events that occurred at or after this instant (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Only events that occurred before this instant (RFC 3339).
    until: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct EventsPage {
    events: Vec<AuditEvent>,
    /// Pass as `after` for the next page; absent on the last.
    next: Option<String>,
}

/// The global history in the log's order, filtered by type and time;
/// cursor-paginated JSON, or the whole of it as NDJSON with
/// `Accept: application/x-ndjson`, streamed in constant memory.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit",
    params(EventsQuery),
    security(("auditor" = [])),
    responses(
        (status = 200, description = "A page, or an NDJSON stream of events", body = EventsPage,
            content((EventsPage = "application/json"), (AuditEvent = "application/x-ndjson"))),
        (status = 400, description = "`invalid-query`: an unknown parameter, a cursor not ours, a `type` that is not an event type's name, an instant outside the years 1 to 9999", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn events(
    State(ctx): State<ApiContext>,
    _auditor: Auditor,
    headers: HeaderMap,
    params: std::result::Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response> {
    let params = query(params)?;
    // Checked for NDJSON too, which has no pages: a bad value is an error
    // whatever the format.
    let size = PageSize::parse(params.limit)?;
    let filter = EventFilter {
        after: params.after,
        event_type: params.event_type,
        since: params.since,
        until: params.until,
    };
    let ndjson = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/x-ndjson"));
    if ndjson {
        let lines = ctx.app.events_stream(filter)?.map(|event| {
            event.and_then(|e| {
                let mut line = serde_json::to_vec(&e)?;
                line.push(b'\n');
                Ok(line)
            })
        });
        let body = Body::from_stream(lines.map(|line| line.map_err(std::io::Error::other)));
        return Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response());
    }
    let page = ctx.app.events_page(filter, size).await?;
    Ok(axum::Json(EventsPage {
        events: page.events,
        next: page.next,
    })
    .into_response())
}
