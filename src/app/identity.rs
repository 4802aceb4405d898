//! An account's identity over time: finding it by address, changing that
//! address (confirmed from the new inbox, undoable from the old one for a
//! while), and erasing the account. The claims on addresses are written by
//! the same statement as the events that make or give them up.
use authledger_aggregates::{
    AdminReason, Email, ErasureRequest, Password, Registration, SealPurpose, ServiceError,
    UserAuth, UserAuthCommand, UserAuthError, Verdict,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{App, AppError, AppResult, Caller, Staff};
use crate::command_bus::{BusError, EffectsOf};
use crate::keys::{DataKey, UserKeeper};
use crate::store::{self, ClaimOp, Claimant, DataKeyOp, Effects};
use crate::tokens::TokenKind;

/// How often a registration looks again after losing the race for its
/// address: the winner is found on the next look.
const CLAIM_TRIES: usize = 3;

/// A change of address waiting for its link.
#[derive(Debug)]
pub struct EmailChangeRequested {
    pub expires_at: DateTime<Utc>,
}

impl App {
    /// The account whose address this is; `None` for an address nobody
    /// has (or one held for the account that gave it up).
    pub(super) async fn account_of(&self, email: &Email) -> AppResult<Option<Uuid>> {
        let claimant = self.claimant(email).await?;
        Ok(match claimant {
            Some(Claimant::Account(user)) => Some(user),
            _ => None,
        })
    }

    async fn claimant(&self, email: &Email) -> AppResult<Option<Claimant>> {
        store::claimant(&self.pool, &self.keyring.blind_indexes(email), self.now())
            .await
            .map_err(|e| AppError::Unavailable {
                what: "the event store",
                cause: e.into(),
            })
    }

    /// `{user}` in a route or a command line: an id, or an account's
    /// current address.
    pub async fn resolve_user(&self, user: &str) -> AppResult<Option<Uuid>> {
        if let Ok(id) = Uuid::parse_str(user) {
            return Ok(Some(id));
        }
        match Email::parse(user) {
            Ok(email) => self.account_of(&email).await,
            Err(_) => Ok(None),
        }
    }

    /// Runs a registration on the account that has the address, or on a
    /// new one that claims it. Two registrations of one new address race
    /// for the claim; the loser finds the winner and registers there.
    pub(super) async fn register_address(
        &self,
        caller: &Caller,
        email: Email,
        password: authledger_aggregates::NewPassword,
    ) -> AppResult<()> {
        for _ in 0..CLAIM_TRIES {
            let (user, new_key) = match self.claimant(&email).await? {
                Some(Claimant::Account(user)) => (user, None),
                // Held for the account that gave it up, which may still
                // take it back: nobody may register it meanwhile, and the
                // answer is the same as for any other address.
                Some(Claimant::Held { .. }) => {
                    // The hash every registration costs, so that timing
                    // does not tell a held address apart either.
                    self.bus
                        .services()
                        .hasher
                        .hash(password.as_password())
                        .await
                        .map_err(|err| match err {
                            ServiceError::Busy => AppError::overloaded(),
                            other => AppError::internal(other),
                        })?;
                    return Ok(());
                }
                None => (Uuid::now_v7(), Some(DataKey::generate())),
            };
            let indexes = self.keyring.blind_indexes(&email);
            let effects = move |verdict: &Verdict, _: &UserKeeper| {
                Ok(match verdict {
                    Verdict::Registered {
                        outcome: Registration::New,
                        ..
                    } => Effects {
                        claims: vec![ClaimOp::Claim(indexes.clone())],
                        data_key: None,
                    },
                    _ => Effects::default(),
                })
            };
            let command = UserAuthCommand::RegisterUser {
                user_id: user,
                email: email.clone(),
                password: password.clone(),
            };
            match self
                .bus
                .execute_with(user, new_key.as_ref(), command, &caller.as_user(), &effects)
                .await
            {
                // Another registration won the address, or the account that
                // had it was erased meanwhile: look again.
                Err(BusError::AddressTaken | BusError::Refused(UserAuthError::UnknownUser)) => {
                    continue
                }
                other => return other.map(|_| ()).map_err(|err| self.refused(err)),
            }
        }
        Err(AppError::Contended)
    }

    /// Mails a link to `new_email` that makes it the account's address.
    /// From an `aal2` session; `password` when the session is not recent.
    /// Whether another account has the address is not said here: only the
    /// new inbox's owner learns it, when they open the link.
    pub async fn request_email_change(
        &self,
        caller: &Caller,
        session_token: &str,
        password: Option<&str>,
        new_email: &str,
    ) -> AppResult<EmailChangeRequested> {
        let (user, session) = self.session_token(session_token)?;
        let new_email = Email::parse(new_email).map_err(AppError::InvalidEmail)?;
        let password = self.reauthentication_password(password)?;
        let verdict = self
            .run(
                user,
                caller,
                UserAuthCommand::RequestEmailChange {
                    session,
                    password,
                    new_email,
                },
            )
            .await?;
        match verdict {
            Verdict::EmailChangeRequested { expires_at, .. } => {
                Ok(EmailChangeRequested { expires_at })
            }
            other => Err(unexpected(other)),
        }
    }

    /// The new inbox confirms: the address moves to it, in the same
    /// statement as the claim, and the old one stays held for "this
    /// wasn't me" until the window closes.
    pub async fn confirm_email_change(&self, caller: &Caller, token: &str) -> AppResult<()> {
        let (user, link) = self
            .tokens
            .decode(TokenKind::EmailChange, token)
            .map_err(|_| AppError::EmailChangeInvalid)?;
        let ring = self.keyring.clone();
        let effects = move |verdict: &Verdict, keeper: &UserKeeper| {
            let Verdict::EmailChanged {
                to, revert_until, ..
            } = verdict
            else {
                return Ok(Effects::default());
            };
            let to = open_address(keeper, to)?;
            Ok(Effects {
                claims: vec![
                    ClaimOp::HoldCurrent {
                        until: *revert_until,
                    },
                    ClaimOp::Claim(ring.blind_indexes(&to)),
                ],
                data_key: None,
            })
        };
        self.run_with(
            user,
            caller,
            UserAuthCommand::ConfirmEmailChange { link },
            &effects,
        )
        .await
        .map_err(|err| unusable_link(err, AppError::EmailChangeInvalid))?;
        Ok(())
    }

    /// "This wasn't me" from the address given up: it is the account's
    /// address again and every session ends. Answers how many ended.
    pub async fn revert_email_change(&self, caller: &Caller, token: &str) -> AppResult<usize> {
        let (user, revert) = self
            .tokens
            .decode(TokenKind::EmailChangeRevert, token)
            .map_err(|_| AppError::EmailChangeRevertInvalid)?;
        let ring = self.keyring.clone();
        let effects = move |verdict: &Verdict, keeper: &UserKeeper| {
            let Verdict::EmailChangeReverted {
                restored, replaced, ..
            } = verdict
            else {
                return Ok(Effects::default());
            };
            let (restored, replaced) = (
                open_address(keeper, restored)?,
                open_address(keeper, replaced)?,
            );
            // Changed away and back again: the address is the account's
            // already, and only the links change.
            if restored == replaced {
                return Ok(Effects::default());
            }
            Ok(Effects {
                claims: vec![
                    ClaimOp::Release(ring.blind_indexes(&replaced)),
                    ClaimOp::Restore(ring.blind_indexes(&restored)),
                ],
                data_key: None,
            })
        };
        let verdict = self
            .run_with(
                user,
                caller,
                UserAuthCommand::RevertEmailChange { revert },
                &effects,
            )
            .await
            .map_err(|err| unusable_link(err, AppError::EmailChangeRevertInvalid))?;
        match verdict {
            Verdict::EmailChangeReverted { sessions_ended, .. } => Ok(sessions_ended),
            other => Err(unexpected(other)),
        }
    }

    /// The user erases their own account, typing its address to confirm.
    pub async fn erase_me(
        &self,
        caller: &Caller,
        session_token: &str,
        password: Option<&str>,
        confirmation: &str,
    ) -> AppResult<usize> {
        let (user, session) = self.session_token(session_token)?;
        let (state, keeper) = self
            .bus
            .load_with_keeper(user)
            .await
            .map_err(|err| self.refused(err))?;
        // A dead session confirms nothing, not even whether a typed
        // address is the account's.
        state
            .live_session(&session, self.now(), self.policy())
            .ok_or(AppError::Unauthenticated)?;
        let address = address_of(&state, &keeper).ok_or(AppError::Unauthenticated)?;
        let typed = Email::parse(confirmation).ok();
        if typed.as_ref().map(Email::as_str) != Some(address.as_str()) {
            return Err(AppError::ErasureNotConfirmed);
        }
        let password = self.reauthentication_password(password)?;
        self.erase(
            user,
            caller.as_user(),
            ErasureRequest::User { session, password },
        )
        .await
    }

    /// An administrator erases `user` (an id or address), with a reason.
    pub async fn admin_erase(
        &self,
        caller: &Caller,
        admin: &Staff,
        user: &str,
        reason: &str,
    ) -> AppResult<usize> {
        let reason = AdminReason::parse(reason)?;
        let user = self
            .resolve_user(user)
            .await?
            .ok_or(AppError::UnknownUser)?;
        self.erase(
            user,
            caller.as_staff(admin),
            ErasureRequest::Admin { reason },
        )
        .await
    }

    /// The account's data key and its addresses go with the event that
    /// records the erasure; the read models drop its rows as they read it.
    async fn erase(
        &self,
        user: Uuid,
        metadata: crate::command_bus::CommandMetadata,
        by: ErasureRequest,
    ) -> AppResult<usize> {
        let effects = |verdict: &Verdict, _: &UserKeeper| {
            Ok(match verdict {
                Verdict::Erased { .. } => Effects {
                    claims: vec![ClaimOp::ReleaseAll],
                    data_key: Some(DataKeyOp::Delete),
                },
                _ => Effects::default(),
            })
        };
        let executed = self
            .bus
            .execute_with(
                user,
                None,
                UserAuthCommand::EraseAccount { by },
                &metadata,
                &effects,
            )
            .await
            .map_err(|err| self.refused(err))?;
        match executed.verdict {
            Verdict::Erased { sessions_ended } => {
                // Its key's ids and public keys go too; a failure here
                // leaves them to expire and be swept.
                if let Err(err) = crate::webauthn::forget(&self.pool, user).await {
                    tracing::warn!(error = %err, "the erased account's WebAuthn ceremonies were not deleted");
                }
                Ok(sessions_ended)
            }
            other => Err(unexpected(other)),
        }
    }

    /// A password given to confirm a sensitive change, when one was.
    pub(super) fn reauthentication_password(
        &self,
        password: Option<&str>,
    ) -> AppResult<Option<Password>> {
        let Some(password) = password.filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        self.shed_when_hashing_is_full()?;
        Password::parse(password)
            .map(Some)
            .map_err(AppError::UnacceptablePassword)
    }

    /// Runs a user's command with what it writes beside its events.
    async fn run_with(
        &self,
        user: Uuid,
        caller: &Caller,
        command: UserAuthCommand,
        effects: &EffectsOf<'_>,
    ) -> AppResult<Verdict> {
        self.bus
            .execute_with(user, None, command, &caller.as_user(), effects)
            .await
            .map(|executed| executed.verdict)
            .map_err(|err| self.refused(err))
    }
}

/// The account's current address, opened; `None` once it is erased.
pub(super) fn address_of(state: &UserAuth, keeper: &UserKeeper) -> Option<String> {
    state
        .profile()
        .filter(|profile| !profile.erased)
        .and_then(|profile| keeper.open_text(SealPurpose::Email, &profile.email))
}

/// An address the account's own events hold, opened to compute its index.
fn open_address(
    keeper: &UserKeeper,
    sealed: &authledger_aggregates::Sealed,
) -> Result<Email, BusError> {
    keeper
        .open_text(SealPurpose::Email, sealed)
        .and_then(|text| Email::parse(&text).ok())
        .ok_or_else(|| BusError::Store("an address of the account does not open".into()))
}

/// The rules refuse every dead mailed link alike; the caller names which
/// link it was. An erased or unknown account's link is as dead.
fn unusable_link(err: AppError, this_link: AppError) -> AppError {
    match err {
        AppError::PasswordResetInvalid | AppError::UnknownUser => this_link,
        other => other,
    }
}

fn unexpected(verdict: Verdict) -> AppError {
    AppError::internal(anyhow::anyhow!("unexpected verdict {verdict:?}"))
}
