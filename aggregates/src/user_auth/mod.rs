//! The `UserAuth` aggregate: one user's credentials, attempts and sessions.
mod admin_reason;
mod commands;
mod email;
mod error;
mod events;
mod password;
mod recovery_code;
mod reference;
mod services;
mod state;
mod totp;
mod verdict;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;

pub use admin_reason::{AdminReason, InvalidAdminReason};
pub use commands::UserAuthCommand;
pub use email::{Email, InvalidEmail};
pub use error::UserAuthError;
pub use events::{
    Actor, Assurance, SecondFactor, SessionEndReason, SignInMethod, TotpRejection, UserAuthEvent,
};
pub use password::{NewPassword, Password, PasswordError, MAX_PASSWORD_CHARS};
pub use recovery_code::{CodeDigest, InvalidRecoveryCode, RecoveryCode, RECOVERY_CODE_BYTES};
pub use reference::Reference;
pub use services::{
    Clock, PasswordCheck, PasswordHash, PasswordHasher, Policy, Randomness, SealPurpose, Sealed,
    SecretKeeper, ServiceError, UserAuthServices,
};
pub use state::{AuditState, Profile, Session, UserAuth};
pub use totp::{
    check_code, code_at_step, time_step, InvalidTotpCode, TotpCheck, TotpCode, TotpSecret,
    TOTP_PERIOD_SECS, TOTP_SECRET_BYTES,
};
pub use verdict::{Consequence, Decided, FailedFactor, Rejection, StartedSession, Verdict};

use events::UserAuthEvent as E;
use UserAuthError as Error;

type Decision = Result<Decided, UserAuthError>;

impl Aggregate for UserAuth {
    const TYPE: &'static str = "UserAuth";
    type Command = UserAuthCommand;
    type Event = UserAuthEvent;
    type Error = UserAuthError;
    type Services = UserAuthServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let Decided { events, .. } = self.decide(command, services).await?;
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.apply_event(event);
    }
}

fn unix_secs(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp()).unwrap_or(0)
}

impl UserAuth {
    /// Decides `command` against the current state: the events to record
    /// and what they amount to. Records nothing itself; a refusal is an
    /// error and records nothing at all.
    pub async fn decide(&self, command: UserAuthCommand, s: &UserAuthServices) -> Decision {
        use UserAuthCommand as C;
        let now = s.clock.now();
        match command {
            C::RegisterUser { email, password } => {
                if self.is_registered() {
                    return Err(Error::AlreadyRegistered);
                }
                let hash = s.hasher.hash(password.as_password()).await?;
                let user_id = email.user_id();
                Ok(Decided {
                    events: vec![E::UserRegistered {
                        user_id,
                        email: email.into(),
                        password_hash: s
                            .keeper
                            .seal(SealPurpose::PasswordHash, hash.0.as_bytes())?,
                        at: now,
                    }],
                    verdict: Verdict::Registered { user_id },
                })
            }
            C::SubmitPassword { password } => self.submit_password(password, s, now).await,
            C::SubmitTotp { attempt, code } => self.submit_totp(attempt, &code, s, now),
            C::BeginEnrollment { attempt, secret } => {
                self.open_attempt(&attempt, now, &s.policy)?;
                if self.is_enrolled() {
                    return Err(Error::AlreadyEnrolled);
                }
                Ok(Decided {
                    events: vec![E::MfaEnrollmentStarted {
                        attempt,
                        secret: s.keeper.seal(SealPurpose::TotpSecret, secret.expose())?,
                        at: now,
                    }],
                    verdict: Verdict::EnrollmentStarted,
                })
            }
            C::EnrollMfa {
                attempt,
                code,
                recovery_code,
            } => self.enroll(attempt, &code, &recovery_code, s, now),
            C::UseRecoveryCode {
                attempt,
                code,
                replacement,
            } => self.use_recovery_code(attempt, &code, &replacement, s, now),
            C::RequestEmailLink { attempt } => self.request_email_link(attempt, s, now),
            C::UseEmailLink { link } => self.use_email_link(link, s, now),
            C::TouchSession { session } => {
                let live = self
                    .live_session(&session, now, &s.policy)
                    .ok_or(Error::SessionInvalid)?;
                // An event per request would grow the log with every call;
                // the idle rule needs activity only this fresh.
                let recorded = now - live.last_active_at >= s.policy.session_activity_granularity;
                Ok(Decided {
                    events: if recorded {
                        vec![E::SessionActive { session, at: now }]
                    } else {
                        vec![]
                    },
                    verdict: Verdict::SessionTouched { recorded },
                })
            }
            C::ResetMfa { session, password } => self.reset_mfa(session, password, s, now).await,
            C::Logout { session } => {
                self.live_session(&session, now, &s.policy)
                    .ok_or(Error::SessionInvalid)?;
                Ok(Decided {
                    events: vec![E::SessionEnded {
                        session,
                        reason: SessionEndReason::Logout,
                        at: now,
                    }],
                    verdict: Verdict::LoggedOut,
                })
            }
            C::AdminResetMfa { reason } => {
                if !self.is_registered() {
                    return Err(Error::UnknownUser);
                }
                Ok(self.mfa_reset(Actor::Admin, Some(reason.into()), s, now))
            }
            C::UnlockAccount { reason } => {
                if !self.is_registered() {
                    return Err(Error::UnknownUser);
                }
                if !self.locked
                    && self.throttled_at(now).is_none()
                    && self.consecutive_failures == 0
                {
                    return Err(Error::NotLocked);
                }
                Ok(Decided {
                    events: vec![E::AccountUnlocked {
                        reason: reason.into(),
                        at: now,
                    }],
                    verdict: Verdict::Unlocked,
                })
            }
        }
    }

    async fn submit_password(
        &self,
        password: Password,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        if !self.is_registered() {
            // Same work as for a known account, so timing tells nothing.
            s.hasher.verify(None, &password).await?;
            return Err(Error::InvalidCredentials);
        }
        let hash = self.password_hash(s)?;
        let check = s.hasher.verify(Some(&hash), &password).await?;
        // A throttled or locked account answers like a wrong password, after
        // the same work; its owner learns of it by mail, not an attacker here.
        if self.locked || self.throttled_at(now).is_some() {
            return Err(Error::InvalidCredentials);
        }
        match check {
            PasswordCheck::Mismatch => Ok(self.failure(
                E::PasswordRejected { at: now },
                FailedFactor::Password,
                s,
                now,
            )),
            PasswordCheck::Match { needs_rehash } => {
                let mut events = Vec::with_capacity(2);
                if needs_rehash {
                    let fresh = s.hasher.hash(&password).await?;
                    events.push(E::PasswordRehashed {
                        password_hash: s
                            .keeper
                            .seal(SealPurpose::PasswordHash, fresh.0.as_bytes())?,
                        at: now,
                    });
                }
                let attempt = s.randomness.reference();
                let expires_at = now + s.policy.login_attempt_ttl;
                let next = if self.is_enrolled() {
                    SecondFactor::Totp
                } else {
                    SecondFactor::Enroll
                };
                events.push(E::PasswordVerified {
                    attempt,
                    expires_at,
                    next,
                    at: now,
                });
                Ok(Decided {
                    events,
                    verdict: Verdict::AttemptOpened {
                        attempt,
                        next,
                        expires_at,
                    },
                })
            }
        }
    }

    fn submit_totp(
        &self,
        attempt: Reference,
        code: &TotpCode,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.open_attempt(&attempt, now, &s.policy)?;
        let authenticator = self
            .authenticator
            .as_ref()
            .ok_or(Error::EnrollmentRequired)?;
        let secret = self.totp_secret(&authenticator.secret, s)?;
        let check = check_code(
            &secret,
            code,
            unix_secs(now),
            s.policy.totp_skew_steps,
            Some(authenticator.last_used_step),
        );
        match check {
            TotpCheck::Accepted { step } => Ok(self.sign_in(
                vec![E::TotpVerified {
                    attempt,
                    step,
                    at: now,
                }],
                SignInMethod::Totp,
                s,
                now,
            )),
            TotpCheck::Replayed => Ok(self.failure(
                E::TotpRejected {
                    attempt,
                    reason: TotpRejection::Replayed,
                    at: now,
                },
                FailedFactor::ReplayedTotpCode,
                s,
                now,
            )),
            TotpCheck::Wrong => Ok(self.failure(
                E::TotpRejected {
                    attempt,
                    reason: TotpRejection::WrongCode,
                    at: now,
                },
                FailedFactor::TotpCode,
                s,
                now,
            )),
        }
    }

    fn enroll(
        &self,
        attempt: Reference,
        code: &TotpCode,
        recovery_code: &RecoveryCode,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.open_attempt(&attempt, now, &s.policy)?;
        if self.is_enrolled() {
            return Err(Error::AlreadyEnrolled);
        }
        let pending = self
            .pending_enrollment
            .as_ref()
            .filter(|p| p.attempt == attempt)
            .ok_or(Error::EnrollmentNotStarted)?;
        let secret = self.totp_secret(&pending.secret, s)?;
        match check_code(
            &secret,
            code,
            unix_secs(now),
            s.policy.totp_skew_steps,
            None,
        ) {
            TotpCheck::Accepted { step } => Ok(self.sign_in(
                vec![
                    E::MfaEnrolled {
                        attempt,
                        step,
                        at: now,
                    },
                    E::RecoveryCodeIssued {
                        digest: s.keeper.digest_recovery_code(recovery_code),
                        at: now,
                    },
                ],
                SignInMethod::Enrollment,
                s,
                now,
            )),
            // No step of a pending secret was ever accepted, so nothing can
            // be a replay yet.
            TotpCheck::Replayed | TotpCheck::Wrong => Ok(self.failure(
                E::TotpRejected {
                    attempt,
                    reason: TotpRejection::WrongCode,
                    at: now,
                },
                FailedFactor::TotpCode,
                s,
                now,
            )),
        }
    }

    fn use_recovery_code(
        &self,
        attempt: Reference,
        code: &RecoveryCode,
        replacement: &RecoveryCode,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.open_attempt(&attempt, now, &s.policy)?;
        if !self.is_enrolled() {
            return Err(Error::EnrollmentRequired);
        }
        let offered = s.keeper.digest_recovery_code(code);
        let matches = self
            .recovery_code
            .as_ref()
            .is_some_and(|stored| stored.matches(&offered));
        if !matches {
            return Ok(self.failure(
                E::RecoveryCodeRejected { attempt, at: now },
                FailedFactor::RecoveryCode,
                s,
                now,
            ));
        }
        Ok(self.sign_in(
            vec![
                E::RecoveryCodeUsed { attempt, at: now },
                E::RecoveryCodeIssued {
                    digest: s.keeper.digest_recovery_code(replacement),
                    at: now,
                },
            ],
            SignInMethod::RecoveryCode,
            s,
            now,
        ))
    }

    fn request_email_link(
        &self,
        attempt: Reference,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.live_attempt(&attempt, now, &s.policy)
            .ok_or(Error::LoginAttemptInvalid)?;
        if !self.is_enrolled() {
            return Err(Error::EnrollmentRequired);
        }
        let window_start = now - s.policy.email_link_window;
        let recent = self
            .link_requests
            .iter()
            .filter(|at| **at > window_start)
            .count();
        if recent >= s.policy.email_links_per_window {
            // Same answer as a sent link, and no mail: the limit protects
            // the inbox, and says nothing to whoever is asking.
            return Ok(Decided {
                events: vec![],
                verdict: Verdict::EmailLinkRequested { mailed: false },
            });
        }
        Ok(Decided {
            events: vec![E::EmailLinkRequested {
                link: s.randomness.reference(),
                attempt,
                expires_at: now + s.policy.email_link_ttl,
                at: now,
            }],
            verdict: Verdict::EmailLinkRequested { mailed: true },
        })
    }

    fn use_email_link(
        &self,
        link: Reference,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        let current = self
            .email_link
            .as_ref()
            .filter(|l| l.reference == link && !l.used && now < l.expires_at)
            .ok_or(Error::EmailLinkInvalid)?;
        // The link completes the attempt it was asked from; a newer password
        // sign-in, a finished sign-in or an exhausted attempt voids it. The
        // attempt's own five minutes do not apply: the link has its own life.
        self.attempt
            .as_ref()
            .filter(|a| a.reference == current.attempt && a.failures < s.policy.second_factor_tries)
            .ok_or(Error::EmailLinkInvalid)?;
        if self.locked {
            return Err(Error::AccountLocked);
        }
        if let Some(until) = self.throttled_at(now) {
            return Err(Error::Throttled { retry_after: until });
        }
        Ok(self.sign_in(
            vec![E::EmailLinkUsed { link, at: now }],
            SignInMethod::EmailLink,
            s,
            now,
        ))
    }

    async fn reset_mfa(
        &self,
        session: Reference,
        password: Option<Password>,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decision {
        self.live_session(&session, now, &s.policy)
            .ok_or(Error::SessionInvalid)?;
        if self.reauthentication_required(&session, now, &s.policy) {
            let password = password.ok_or(Error::ReauthenticationRequired)?;
            if self.locked {
                return Err(Error::AccountLocked);
            }
            if let Some(until) = self.throttled_at(now) {
                return Err(Error::Throttled { retry_after: until });
            }
            let hash = self.password_hash(s)?;
            if s.hasher.verify(Some(&hash), &password).await? == PasswordCheck::Mismatch {
                return Ok(self.failure(
                    E::PasswordRejected { at: now },
                    FailedFactor::Password,
                    s,
                    now,
                ));
            }
        }
        Ok(self.mfa_reset(Actor::User, None, s, now))
    }

    fn mfa_reset(
        &self,
        actor: Actor,
        reason: Option<String>,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decided {
        let ended: Vec<UserAuthEvent> = self
            .live_sessions(now, &s.policy)
            .map(|session| E::SessionEnded {
                session: session.reference,
                reason: SessionEndReason::MfaReset,
                at: now,
            })
            .collect();
        let sessions_ended = ended.len();
        let mut events = vec![E::MfaReset {
            actor,
            reason,
            at: now,
        }];
        events.extend(ended);
        Decided {
            events,
            verdict: Verdict::MfaReset { sessions_ended },
        }
    }

    /// Checks that a second factor may be tried in `attempt` now.
    fn open_attempt(
        &self,
        attempt: &Reference,
        now: DateTime<Utc>,
        policy: &Policy,
    ) -> Result<(), Error> {
        self.live_attempt(attempt, now, policy)
            .ok_or(Error::LoginAttemptInvalid)?;
        if self.locked {
            return Err(Error::AccountLocked);
        }
        if let Some(until) = self.throttled_at(now) {
            return Err(Error::Throttled { retry_after: until });
        }
        Ok(())
    }

    /// A failed factor and what it brings: a delay once failures pile up,
    /// a lock at the limit.
    fn failure(
        &self,
        failed: UserAuthEvent,
        factor: FailedFactor,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decided {
        let failures = self.consecutive_failures.saturating_add(1);
        // Counted as `apply` counts: against the attempt the failure names.
        let attempt_over = match &failed {
            E::TotpRejected { attempt, .. } | E::RecoveryCodeRejected { attempt, .. } => self
                .attempt
                .as_ref()
                .filter(|open| open.reference == *attempt)
                .is_some_and(|open| {
                    open.failures.saturating_add(1) >= s.policy.second_factor_tries
                }),
            _ => false,
        };
        let mut events = vec![failed];
        let consequence = if failures >= s.policy.lock_after_failures {
            if !self.locked {
                events.push(E::AccountLocked { failures, at: now });
            }
            Consequence::Locked
        } else if let Some(delay) = s.policy.throttle_delay(failures) {
            let until = now + delay;
            events.push(E::SignInThrottled {
                failures,
                until,
                at: now,
            });
            Consequence::ThrottledUntil(until)
        } else {
            Consequence::None
        };
        Decided {
            events,
            verdict: Verdict::Rejected(Rejection {
                factor,
                consequence,
                attempt_over,
            }),
        }
    }

    /// A second factor succeeded: `proof` and a new session, in that order.
    fn sign_in(
        &self,
        mut proof: Vec<UserAuthEvent>,
        method: SignInMethod,
        s: &UserAuthServices,
        now: DateTime<Utc>,
    ) -> Decided {
        let started = StartedSession {
            session: s.randomness.reference(),
            method,
            aal: method.assurance(),
            expires_at: now + s.policy.session_absolute,
        };
        proof.push(E::SessionStarted {
            session: started.session,
            method: started.method,
            aal: started.aal,
            expires_at: started.expires_at,
            at: now,
        });
        Decided {
            events: proof,
            verdict: Verdict::SessionStarted(started),
        }
    }

    fn password_hash(&self, s: &UserAuthServices) -> Result<PasswordHash, Error> {
        let account = self.account.as_ref().ok_or(Error::UnknownUser)?;
        let bytes = s
            .keeper
            .unseal(SealPurpose::PasswordHash, &account.password_hash)?;
        String::from_utf8(bytes)
            .map(PasswordHash)
            .map_err(|_| Error::Service("a sealed password hash is not text".into()))
    }

    fn totp_secret(&self, sealed: &Sealed, s: &UserAuthServices) -> Result<TotpSecret, Error> {
        let bytes = s.keeper.unseal(SealPurpose::TotpSecret, sealed)?;
        TotpSecret::from_slice(&bytes)
            .ok_or_else(|| Error::Service("a sealed TOTP secret has the wrong length".into()))
    }
}
