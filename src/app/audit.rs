//! Auditors' reads: a user's history, their MFA state at an instant, and
//! the global history, paged or streamed. Read from the event log and the
//! audit index, never from the aggregate's live state.
use authledger_aggregates::AuditState;
use chrono::{DateTime, Datelike, Utc};
use futures_util::{Stream, StreamExt};
use uuid::Uuid;

use super::{App, AppError, AppResult};
use crate::audit::{self, AuditEvent, GlobalQuery};

/// How many events a page holds: 1 to 1000, 100 unless asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(i64);

impl PageSize {
    pub const DEFAULT: Self = Self(100);
    pub const MAX: i64 = 1000;

    pub fn parse(requested: Option<i64>) -> AppResult<Self> {
        match requested {
            None => Ok(Self::DEFAULT),
            Some(n) if (1..=Self::MAX).contains(&n) => Ok(Self(n)),
            Some(_) => Err(AppError::InvalidQuery("limit is 1 to 1000")),
        }
    }
}

/// A page of one user's history.
#[derive(Debug)]
pub struct History {
    pub user_id: Uuid,
    pub events: Vec<AuditEvent>,
    /// The `after` for the next page; `None` on the last.
    pub next_after: Option<i64>,
}

/// Which events of the global history, from where.
#[derive(Debug, Default)]
pub struct EventFilter {
    /// The previous page's cursor.
    pub after: Option<String>,
    pub event_type: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Longest event type name a filter may hold; the longest today has 26
/// characters.
const MAX_EVENT_TYPE_CHARS: usize = 64;

impl EventFilter {
    fn query(self) -> AppResult<GlobalQuery> {
        let after = match &self.after {
            Some(cursor) => Some(
                audit::parse_cursor(cursor)
                    .ok_or(AppError::InvalidQuery("after is not a cursor"))?,
            ),
            None => None,
        };
        if let Some(event_type) = &self.event_type {
            // Event types are ASCII names; anything else matches nothing,
            // and a NUL cannot even be sent to Postgres.
            let name = event_type.len() <= MAX_EVENT_TYPE_CHARS
                && !event_type.is_empty()
                && event_type.bytes().all(|b| b.is_ascii_alphanumeric());
            if !name {
                return Err(AppError::InvalidQuery(
                    "type is the name of an event type, such as MfaReset",
                ));
            }
        }
        Ok(GlobalQuery {
            after,
            event_type: self.event_type,
            since: instant(self.since, "since is outside the years 1 to 9999")?,
            until: instant(self.until, "until is outside the years 1 to 9999")?,
        })
    }
}

/// An instant a caller chose, within the years RFC 3339 writes with four
/// digits: beyond them Postgres refuses a timestamp and date arithmetic
/// can overflow.
fn instant(at: Option<DateTime<Utc>>, refusal: &'static str) -> AppResult<Option<DateTime<Utc>>> {
    match at {
        Some(at) if !(1..=9999).contains(&at.year()) => Err(AppError::InvalidQuery(refusal)),
        at => Ok(at),
    }
}

/// A page of the global history.
#[derive(Debug)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// The cursor for the next page; `None` on the last.
    pub next: Option<String>,
}

impl App {
    pub(super) fn opener(&self) -> audit::Opener {
        audit::Opener::new(self.pool.clone(), self.keyring.clone())
    }

    /// `user`'s events after sequence `after`, oldest first.
    pub async fn user_history(
        &self,
        who: &str,
        after: Option<i64>,
        size: PageSize,
    ) -> AppResult<History> {
        if after.is_some_and(|after| after < 0) {
            return Err(AppError::InvalidQuery(
                "after is a sequence number, 0 or more",
            ));
        }
        let user_id = self.resolve_user(who).await?.ok_or(AppError::UnknownUser)?;
        let events = audit::user_history(
            &self.pool,
            &self.opener(),
            user_id,
            after.unwrap_or(0),
            size.0,
        )
        .await
        .map_err(AppError::Internal)?;
        if events.is_empty() && after.is_none() {
            return Err(AppError::UnknownUser);
        }
        let next_after = (events.len() as i64 == size.0)
            .then(|| events.last().map(|e| e.sequence))
            .flatten();
        Ok(History {
            user_id,
            events,
            next_after,
        })
    }

    /// `user`'s MFA state as of `at` (default: now), folded from their
    /// events up to it.
    pub async fn user_state(
        &self,
        who: &str,
        at: Option<DateTime<Utc>>,
    ) -> AppResult<(
        Uuid,
        DateTime<Utc>,
        AuditState,
        Vec<super::AuthenticatorEntry>,
    )> {
        let at = instant(at, "at is outside the years 1 to 9999")?;
        let user_id = self.resolve_user(who).await?.ok_or(AppError::UnknownUser)?;
        let at = at.unwrap_or_else(|| self.now());
        match audit::user_state(&self.pool, &self.keyring, user_id, at, self.policy())
            .await
            .map_err(AppError::Internal)?
        {
            audit::StateAt::State(state) => {
                // Names are opened with the user's key: gone once erased.
                let keeper = crate::store::user_keeper(&self.pool, &self.keyring, user_id)
                    .await
                    .map_err(AppError::Internal)?;
                let authenticators =
                    super::authenticators::entries(state.authenticators.clone(), &keeper);
                Ok((user_id, at, *state, authenticators))
            }
            audit::StateAt::Unknown => Err(AppError::UnknownUser),
            // The history itself still shows every event; `audit verify`
            // says what is wrong with it.
            audit::StateAt::Broken(sequence) => {
                tracing::error!(
                    user = %user_id,
                    sequence,
                    "INTEGRITY ALARM: an event fails its MAC; the state at an instant is not folded"
                );
                Err(AppError::IntegrityFailure)
            }
        }
    }

    /// One page of the global history in the log's order.
    pub async fn events_page(&self, filter: EventFilter, size: PageSize) -> AppResult<AuditPage> {
        let (events, next) =
            audit::global_page(&self.pool, &self.opener(), &filter.query()?, size.0)
                .await
                .map_err(AppError::Internal)?;
        Ok(AuditPage { events, next })
    }

    /// The whole matching history as a stream, in constant memory. A
    /// failure part-way is logged here with its cause: the client only
    /// sees its body end early, after a status of 200.
    pub fn events_stream(
        &self,
        filter: EventFilter,
    ) -> AppResult<impl Stream<Item = anyhow::Result<AuditEvent>> + Send + 'static> {
        let mut streamed: u64 = 0;
        Ok(
            audit::global_stream(self.pool.clone(), self.opener(), filter.query()?).inspect(
                move |event| match event {
                    Ok(_) => streamed += 1,
                    Err(error) => tracing::error!(
                        error = format!("{error:#}"),
                        streamed,
                        "the audit export failed part-way; its body is cut off"
                    ),
                },
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn refusal(filter: EventFilter) -> &'static str {
        match filter.query() {
            Err(AppError::InvalidQuery(why)) => why,
            other => panic!("expected an invalid query, got {other:?}"),
        }
    }

    #[test]
    fn a_cursor_is_two_numbers_neither_negative() {
        let cursor = |after: &str| EventFilter {
            after: Some(after.into()),
            ..EventFilter::default()
        };
        assert_eq!(cursor("12:34").query().unwrap().after, Some((12, 34)));
        for after in [
            "-1:5", "5:-1", "+1:5", "1:", ":1", "1", "1:2:3", "\u{0}:1", "٣:1",
        ] {
            assert_eq!(refusal(cursor(after)), "after is not a cursor", "{after:?}");
        }
    }

    #[test]
    fn a_type_filter_is_an_event_type_name() {
        let event_type = |name: &str| EventFilter {
            event_type: Some(name.into()),
            ..EventFilter::default()
        };
        assert!(event_type("MfaReset").query().is_ok());
        for name in [
            "",
            "\u{0}",
            "Mfa\u{0}Reset",
            "Mfa Reset",
            "MfaReset'--",
            &"A".repeat(65),
        ] {
            assert!(refusal(event_type(name)).starts_with("type is"), "{name:?}");
        }
    }

    #[test]
    fn instants_are_within_four_digit_years() {
        let since = |year: i32| EventFilter {
            since: Some(Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap()),
            ..EventFilter::default()
        };
        assert!(since(1).query().is_ok());
        assert!(since(9999).query().is_ok());
        for year in [0, -4713, 10_000, 262_000] {
            assert_eq!(
                refusal(since(year)),
                "since is outside the years 1 to 9999",
                "{year}"
            );
        }
    }
}
