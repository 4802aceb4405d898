//! The operators' view of the accounts: a list with filters and keyset
//! paging, a search by address (exact through the blind index, by prefix
//! over the addresses opened in memory), and one account's page. Read by
//! admins and auditors alike; nothing here changes anything.
use authledger_aggregates::{AuditState, Email, SealPurpose};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::sessions::SessionView;
use super::{App, AppError, AppResult};
use crate::audit::{self, AuditEvent};
use crate::keys::UserKeeper;
use crate::store::{self, ListedUser, UserFilter};

pub use crate::store::UserFilter as Filter;

/// What a list asks for.
#[derive(Debug, Clone)]
pub struct UserQuery {
    /// An address, whole: found through the blind index.
    pub email: Option<String>,
    /// The start of an address, as typed (case does not matter).
    pub prefix: Option<String>,
    pub filter: UserFilter,
    /// The previous page's cursor.
    pub after: Option<String>,
    pub limit: Option<i64>,
}

/// An account in a list.
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub user_id: Uuid,
    /// `None` once it cannot be opened (the account is being erased).
    pub email: Option<String>,
    pub registered_at: DateTime<Utc>,
    pub email_verified: bool,
    pub mfa_enrolled_at: Option<DateTime<Utc>>,
    pub locked: bool,
    pub throttled_until: Option<DateTime<Utc>>,
    pub suspended_at: Option<DateTime<Utc>>,
    pub mfa_reset_due_at: Option<DateTime<Utc>>,
    /// When the user last reported activity as not theirs.
    pub reported_at: Option<DateTime<Utc>>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
    pub last_sign_in_method: Option<String>,
}

#[derive(Debug)]
pub struct UserPage {
    pub users: Vec<UserSummary>,
    /// The `after` of the next page; `None` on the last.
    pub next: Option<String>,
}

/// One account as an operator sees it.
#[derive(Debug)]
pub struct UserDetail {
    pub user_id: Uuid,
    pub email: Option<String>,
    pub state: AuditState,
    pub authenticators: Vec<super::AuthenticatorEntry>,
    pub sessions: Vec<SessionView>,
    /// The newest events, newest first.
    pub recent: Vec<AuditEvent>,
    /// When the user last reported activity as not theirs, as the `users`
    /// read model has it.
    pub reported_at: Option<DateTime<Utc>>,
}

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 200;
/// How many rows a prefix search opens per read while it fills a page.
const PREFIX_SCAN_BATCH: i64 = 500;
const RECENT_EVENTS: i64 = 20;

impl App {
    /// A page of accounts, newest registration first.
    pub async fn list_users(&self, query: UserQuery) -> AppResult<UserPage> {
        let limit = match query.limit {
            None => DEFAULT_PAGE,
            Some(n) if (1..=MAX_PAGE).contains(&n) => n,
            Some(_) => return Err(AppError::InvalidQuery("limit is 1 to 200")),
        };
        let mut after = match &query.after {
            Some(cursor) => {
                Some(parse_cursor(cursor).ok_or(AppError::InvalidQuery("after is not a cursor"))?)
            }
            None => None,
        };
        let only = match &query.email {
            Some(email) => match self
                .account_of(&Email::parse(email).map_err(AppError::InvalidEmail)?)
                .await?
            {
                Some(user) => Some(vec![user]),
                None => {
                    return Ok(UserPage {
                        users: vec![],
                        next: None,
                    })
                }
            },
            None => None,
        };
        let prefix = query
            .prefix
            .as_deref()
            .map(|p| p.trim().to_lowercase())
            .filter(|p| !p.is_empty());
        let now = self.now();
        let mut users = Vec::new();
        // A prefix is matched on the opened addresses: the database holds
        // them only sealed, so it cannot filter; read in batches until the
        // page is full or the list ends.
        let batch = if prefix.is_some() {
            PREFIX_SCAN_BATCH
        } else {
            limit + 1
        };
        loop {
            let rows =
                store::list_users(&self.pool, query.filter, only.as_deref(), after, now, batch)
                    .await
                    .map_err(unavailable)?;
            let exhausted = (rows.len() as i64) < batch;
            for row in rows {
                after = Some((row.registered_at, row.user_id));
                let summary = self.summary(&row);
                let keep = match &prefix {
                    Some(prefix) => summary
                        .email
                        .as_deref()
                        .is_some_and(|e| e.to_lowercase().starts_with(prefix.as_str())),
                    None => true,
                };
                if keep {
                    users.push(summary);
                    if users.len() as i64 > limit {
                        break;
                    }
                }
            }
            if exhausted || users.len() as i64 > limit {
                break;
            }
        }
        // One more than the page was read to know whether another follows.
        let next = if users.len() as i64 > limit {
            users.truncate(limit as usize);
            users
                .last()
                .map(|u| format_cursor(u.registered_at, u.user_id))
        } else {
            None
        };
        Ok(UserPage { users, next })
    }

    /// One account: its state now, its live sessions, its newest events.
    pub async fn user_detail(&self, who: &str) -> AppResult<UserDetail> {
        let user = self.resolve_user(who).await?.ok_or(AppError::UnknownUser)?;
        let (state, keeper) = self
            .bus
            .load_with_keeper(user)
            .await
            .map_err(|err| self.refused(err))?;
        let profile = state
            .profile()
            .filter(|p| !p.erased)
            .ok_or(AppError::UnknownUser)?;
        let email = keeper.open_text(SealPurpose::Email, &profile.email);
        let sessions = self.session_views(user, &state, &keeper, None).await?;
        let recent = audit::recent_history(&self.pool, &self.opener(), user, RECENT_EVENTS)
            .await
            .map_err(AppError::Internal)?;
        let listed = store::list_users(
            &self.pool,
            UserFilter::All,
            Some(&[user]),
            None,
            self.now(),
            1,
        )
        .await
        .map_err(unavailable)?;
        Ok(UserDetail {
            user_id: user,
            email,
            state: state.audit_state(self.now(), self.policy()),
            authenticators: super::authenticators::entries(state.authenticators(), &keeper),
            sessions,
            recent,
            reported_at: listed.first().and_then(|row| row.reported_at),
        })
    }

    fn summary(&self, row: &ListedUser) -> UserSummary {
        let email = row.email_sealed.as_ref().and_then(|sealed| {
            let keeper =
                UserKeeper::unwrapping(&self.keyring, row.user_id, row.data_key().as_ref()).ok()?;
            keeper.open_text(SealPurpose::Email, &sealed.0)
        });
        UserSummary {
            user_id: row.user_id,
            email,
            registered_at: row.registered_at,
            email_verified: row.email_verified,
            mfa_enrolled_at: row.mfa_enrolled_at,
            locked: row.locked_at.is_some(),
            throttled_until: row.throttled_until.filter(|until| *until > self.now()),
            suspended_at: row.suspended_at,
            mfa_reset_due_at: row.mfa_reset_due_at,
            reported_at: row.reported_at,
            last_sign_in_at: row.last_sign_in_at,
            last_sign_in_method: row.last_sign_in_method.clone(),
        }
    }
}

fn unavailable(cause: sqlx::Error) -> AppError {
    AppError::Unavailable {
        what: "the users read model",
        cause: cause.into(),
    }
}

/// `<microseconds since the epoch>_<user id>`: the last account shown.
fn format_cursor(at: DateTime<Utc>, user: Uuid) -> String {
    format!("{}_{}", at.timestamp_micros(), user.simple())
}

fn parse_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, user) = cursor.split_once('_')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((at, Uuid::try_parse(user).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_written_and_nothing_else_is_one() {
        let at = DateTime::from_timestamp_micros(1_772_366_400_123_456).unwrap();
        let user = Uuid::from_u128(7);
        assert_eq!(parse_cursor(&format_cursor(at, user)), Some((at, user)));
        for bad in [
            "",
            "_",
            "12",
            "x_00000000000000000000000000000007",
            "1_nope",
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }
}
