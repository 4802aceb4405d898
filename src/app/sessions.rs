//! Sessions as their user and the apps relying on authledger see them:
//! the list of one's live sessions, ending one or all the others, and the
//! introspection of a session token by a relying app (RFC 7662).
use std::collections::HashMap;

use authledger_aggregates::{
    Assurance, Policy, Reference, Session, SignInMethod, UserAuth, UserAuthCommand, Verdict,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{App, AppError, AppResult, Caller};
use crate::command_bus::{client_origin, BusError, CommandMetadata};
use crate::keys::UserKeeper;
use crate::store;
use crate::user_agent::UserAgent;

/// A live session, as its user or an operator sees it.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub id: Reference,
    pub method: SignInMethod,
    pub aal: Assurance,
    pub started_at: DateTime<Utc>,
    pub last_active_at: DateTime<Utc>,
    /// When it ends unless used again.
    pub idle_expires_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The IP and browser of the sign-in that started it, while the
    /// account's personal data can be opened.
    pub ip: Option<String>,
    /// The browser and system, in words ("Firefox on Linux").
    pub browser: Option<String>,
    /// The session asking.
    pub current: bool,
}

/// What a relying app learns of a session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Introspection {
    /// Not a session token, or one that is over for whatever reason:
    /// expired, ended, suspended, reset, erased. Which, is not said.
    Inactive,
    Active(ActiveSession),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSession {
    pub user_id: Uuid,
    pub session: Reference,
    pub method: SignInMethod,
    pub aal: Assurance,
    /// When its sign-in happened.
    pub auth_time: DateTime<Utc>,
    /// When it ends unless used again (never later than its absolute
    /// expiry).
    pub expires_at: DateTime<Utc>,
}

impl ActiveSession {
    fn of(user_id: Uuid, live: &Session, policy: &Policy) -> Self {
        Self {
            user_id,
            session: live.reference,
            method: live.method,
            aal: live.aal,
            auth_time: live.started_at,
            expires_at: live.idle_expires_at(policy),
        }
    }
}

impl App {
    /// The signed-in user's live sessions, oldest first; asking counts as
    /// using this one.
    pub async fn my_sessions(
        &self,
        caller: &Caller,
        session_token: &str,
    ) -> AppResult<Vec<SessionView>> {
        let (user, session) = self.session_token(session_token)?;
        let executed = self
            .bus
            .execute(
                user,
                UserAuthCommand::TouchSession { session },
                &caller.as_user(),
            )
            .await
            .map_err(|err| self.refused(err))?;
        self.session_views(user, &executed.state, &executed.keeper, Some(session))
            .await
    }

    /// Ends `id`, another of the user's sessions (or this one: a logout),
    /// from a session won with a second factor.
    pub async fn end_my_session(
        &self,
        caller: &Caller,
        session_token: &str,
        id: &str,
    ) -> AppResult<()> {
        let (user, session) = self.session_token(session_token)?;
        let target = Reference::parse(id).ok_or(AppError::UnknownSession)?;
        match self
            .run(
                user,
                caller,
                UserAuthCommand::EndSession { session, target },
            )
            .await?
        {
            Verdict::SessionEnded => Ok(()),
            other => Err(unexpected("ending a session", &other)),
        }
    }

    /// "Sign out everywhere else": answers how many sessions ended.
    pub async fn end_my_other_sessions(
        &self,
        caller: &Caller,
        session_token: &str,
    ) -> AppResult<usize> {
        let (user, session) = self.session_token(session_token)?;
        match self
            .run(user, caller, UserAuthCommand::EndOtherSessions { session })
            .await?
        {
            Verdict::SessionsEnded { sessions_ended } => Ok(sessions_ended),
            other => Err(unexpected("ending the other sessions", &other)),
        }
    }

    /// Whether `token` is a live session, for the relying app holding
    /// client credential `client_token`. An active answer counts as use of
    /// the session, as the user's own request would: the app asks because
    /// its user is there.
    pub async fn introspect(
        &self,
        caller: &Caller,
        client_token: &str,
        token: &str,
    ) -> AppResult<Introspection> {
        let client = self.client(client_token)?;
        let Ok((user, session)) = self.session_token(token) else {
            return Ok(Introspection::Inactive);
        };
        // Most answers need only the session's row: one read by key. Only
        // a use worth recording (the idle timeout's granularity apart) goes
        // through the account, as the user's own request would.
        let (now, policy) = (self.now(), self.policy());
        let row = store::session_row(&self.pool, user, &session.to_string())
            .await
            .map_err(|cause| AppError::Unavailable {
                what: "the event store",
                cause: cause.into(),
            })?;
        let Some(row) = row else {
            return Ok(Introspection::Inactive);
        };
        if let (Some(method), Some(aal)) = (named(&row.method), named(&row.aal)) {
            let held = Session {
                reference: session,
                method,
                aal,
                started_at: row.started_at,
                expires_at: row.expires_at,
                last_active_at: row.last_active_at,
            };
            if !held.is_live(now, policy) {
                return Ok(Introspection::Inactive);
            }
            if now - held.last_active_at < policy.session_activity_granularity {
                return Ok(Introspection::Active(ActiveSession::of(
                    user, &held, policy,
                )));
            }
        }
        let metadata = CommandMetadata {
            actor: format!("client:{client}"),
            ..caller.as_system()
        };
        let executed = match self
            .bus
            .execute(user, UserAuthCommand::TouchSession { session }, &metadata)
            .await
        {
            Ok(executed) => executed,
            Err(BusError::Refused(_)) => return Ok(Introspection::Inactive),
            Err(other) => return Err(self.refused(other)),
        };
        Ok(match executed.state.live_session(&session, now, policy) {
            Some(live) => Introspection::Active(ActiveSession::of(user, live, policy)),
            None => Introspection::Inactive,
        })
    }

    /// `state`'s live sessions with the IP and browser each started from,
    /// `current` marked.
    pub(super) async fn session_views(
        &self,
        user: Uuid,
        state: &UserAuth,
        keeper: &UserKeeper,
        current: Option<Reference>,
    ) -> AppResult<Vec<SessionView>> {
        let (now, policy) = (self.now(), self.policy());
        let live: Vec<&Session> = state.live_sessions(now, policy).collect();
        let ids: Vec<String> = live.iter().map(|s| s.reference.to_string()).collect();
        let metadata = store::session_metadata(&self.pool, user, &ids)
            .await
            .map_err(|cause| AppError::Unavailable {
                what: "the event store",
                cause: cause.into(),
            })?;
        let origins: HashMap<String, _> = metadata
            .into_iter()
            .filter_map(|(id, metadata)| Some((id, client_origin(&metadata, keeper)?)))
            .collect();
        let mut views: Vec<SessionView> = live
            .into_iter()
            .map(|s| {
                let origin = origins.get(&s.reference.to_string());
                SessionView {
                    id: s.reference,
                    method: s.method,
                    aal: s.aal,
                    started_at: s.started_at,
                    last_active_at: s.last_active_at,
                    idle_expires_at: s.idle_expires_at(policy),
                    expires_at: s.expires_at,
                    ip: origin.map(|o| o.client_ip.clone()),
                    browser: origin.map(|o| UserAgent::parse(&o.user_agent).label()),
                    current: Some(s.reference) == current,
                }
            })
            .collect();
        views.sort_by_key(|v| v.started_at);
        Ok(views)
    }
}

/// A method or assurance by the name the events give it.
fn named<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

fn unexpected(what: &str, verdict: &Verdict) -> AppError {
    AppError::internal(anyhow::anyhow!("{what} answered {verdict:?}"))
}
