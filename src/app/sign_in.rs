//! Signing in: the password step, then the authenticator's code. The other
//! ways to finish a sign-in are in `enrollment` and `recovery`.
use authledger_aggregates::{
    DeviceDigest, Email, FailedFactor, Password, RecoveryCode, SecondFactor, StartedSession,
    TotpCode, UserAuthCommand, UserAuthError, Verdict,
};
use chrono::{DateTime, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use super::{App, AppError, AppResult, Caller};
use crate::command_bus::BusError;
use crate::metrics::SignInResult;
use crate::services::new_recovery_code;
use crate::tokens::TokenKind;

/// A login attempt opened by a correct password. No `Debug`: it holds a
/// token.
pub struct OpenedAttempt {
    /// Reaches only the second-factor and enrollment steps.
    pub login_token: String,
    pub next: SecondFactor,
    pub expires_at: DateTime<Utc>,
    /// Whether a sign-in link may be mailed: not after a password reset by
    /// email, until a sign-in with a second factor.
    pub email_link_available: bool,
    /// Which kinds of authenticator the account holds.
    pub totp_available: bool,
    pub webauthn_available: bool,
}

/// A session, as its bearer token (so, no `Debug`).
pub struct SignedIn {
    pub session_token: String,
    pub expires_at: DateTime<Utc>,
}

/// A sign-in that issued a new recovery code, shown this once: only its
/// keyed hash is recorded.
pub struct SignedInWithCode {
    pub session: SignedIn,
    pub recovery_code: String,
}

impl App {
    /// Step one: email and password. Unknown email, wrong password, and a
    /// throttled or locked account answer the same, no sooner than the
    /// configured floor, so neither can be told apart by timing.
    pub async fn submit_password(
        &self,
        caller: &Caller,
        email: &str,
        password: &str,
        device: Option<&str>,
    ) -> AppResult<OpenedAttempt> {
        let count = |result| self.metrics.service.count_sign_in("password", result);
        self.shed_when_hashing_is_full()
            .inspect_err(|_| count(SignInResult::Overloaded))?;
        let started = Instant::now();
        let email = Email::parse(email).map_err(AppError::InvalidEmail)?;
        let password = Password::parse(password).map_err(AppError::UnacceptablePassword)?;
        // An address nobody has goes through the same steps on an id
        // nobody has: the dummy hash costs what a real one does.
        let user = self.account_of(&email).await?.unwrap_or_else(Uuid::now_v7);
        let outcome = self
            .bus
            .execute(
                user,
                UserAuthCommand::SubmitPassword {
                    password,
                    device: device.map(|cookie| DeviceDigest(self.tokens.device_digest(cookie))),
                },
                &caller.as_user(),
            )
            .await;
        match outcome {
            Ok(executed) => {
                if let Verdict::AttemptOpened {
                    attempt,
                    next,
                    expires_at,
                    email_link_available,
                    totp_available,
                    webauthn_available,
                } = executed.verdict
                {
                    count(SignInResult::Accepted);
                    return Ok(OpenedAttempt {
                        login_token: self.tokens.encode(TokenKind::LoginAttempt, user, &attempt),
                        next,
                        expires_at,
                        email_link_available,
                        totp_available,
                        // Offered only where the browser can use it.
                        webauthn_available: webauthn_available && self.webauthn_available(),
                    });
                }
            }
            // The queue filled after the check above, once the account was
            // loaded: answered like everything after the load, no sooner
            // than the floor, so it says nothing of the account either.
            Err(BusError::Refused(UserAuthError::Overloaded)) => {
                count(SignInResult::Overloaded);
                tokio::time::sleep_until(started + self.sign_in_failure_floor).await;
                return Err(AppError::overloaded());
            }
            // A service failure (a key that cannot unseal, a hasher that
            // broke) is the operator's to see; the caller gets the same
            // answer as for a wrong password, since only real accounts
            // reach the services.
            Err(BusError::Refused(UserAuthError::Service(cause))) => {
                tracing::error!(error = %cause, "the password step failed on the service's side");
            }
            // A conflict that outlasted the retries can only happen where
            // events are written, i.e. on a real account: it must not
            // answer differently from a wrong password.
            Err(BusError::Refused(_) | BusError::Contended) => {}
            Err(other) => {
                // Counted as any failed password step: the counters answer
                // whoever may read /metrics, and must not tell real
                // accounts apart either (the 5xx shows in the requests).
                count(SignInResult::Rejected);
                // The event store failing also answers no sooner than the
                // floor, so its timing does not set real accounts apart.
                tokio::time::sleep_until(started + self.sign_in_failure_floor).await;
                return Err(self.refused(other));
            }
        }
        // One result for an unknown address, an unconfirmed account, a
        // wrong password and a throttled one, as their answers are one.
        count(SignInResult::Rejected);
        tokio::time::sleep_until(started + self.sign_in_failure_floor).await;
        Err(AppError::InvalidCredentials)
    }

    /// Second factor: the current code from the authenticator app.
    pub async fn submit_totp(
        &self,
        caller: &Caller,
        login_token: &str,
        code: &str,
    ) -> AppResult<SignedIn> {
        let (user, attempt) = self.login_token(login_token)?;
        let code = TotpCode::parse(code).map_err(|_| AppError::InvalidCodeFormat)?;
        let verdict = self
            .run_sign_in(
                "totp",
                user,
                caller,
                UserAuthCommand::SubmitTotp { attempt, code },
            )
            .await?;
        self.signed_in("totp", user, verdict)
    }

    /// Runs a command that finishes a sign-in, counting a refusal that came
    /// before any factor was judged (an attempt expired, spent or
    /// throttled).
    pub(super) async fn run_sign_in(
        &self,
        method: &'static str,
        user: Uuid,
        caller: &Caller,
        command: UserAuthCommand,
    ) -> AppResult<Verdict> {
        self.run(user, caller, command).await.inspect_err(|_| {
            self.metrics
                .service
                .count_sign_in(method, SignInResult::Refused);
        })
    }

    /// Runs a user's command, answering its verdict.
    pub(super) async fn run(
        &self,
        user: Uuid,
        caller: &Caller,
        command: UserAuthCommand,
    ) -> AppResult<Verdict> {
        self.bus
            .execute(user, command, &caller.as_user())
            .await
            .map(|executed| executed.verdict)
            .map_err(|err| self.refused(err))
    }

    /// The session a second factor started, or why none was; counted for
    /// `method`.
    pub(super) fn signed_in(
        &self,
        method: &'static str,
        user: Uuid,
        verdict: Verdict,
    ) -> AppResult<SignedIn> {
        let result = match &verdict {
            Verdict::SessionStarted(_) => SignInResult::Accepted,
            Verdict::Rejected(rejection) if rejection.factor == FailedFactor::ReplayedTotpCode => {
                SignInResult::Replayed
            }
            Verdict::Rejected(_) => SignInResult::Rejected,
            _ => SignInResult::Refused,
        };
        self.metrics.service.count_sign_in(method, result);
        match verdict {
            Verdict::SessionStarted(StartedSession {
                session,
                expires_at,
                ..
            }) => Ok(SignedIn {
                session_token: self.tokens.encode(TokenKind::Session, user, &session),
                expires_at,
            }),
            Verdict::Rejected(rejection) => {
                let otherwise = match rejection.factor {
                    FailedFactor::WebAuthn => AppError::WebAuthnRejected,
                    FailedFactor::WebAuthnSignCount => AppError::WebAuthnSignCountRegressed,
                    _ => AppError::InvalidCode,
                };
                Err(self.rejected(rejection, otherwise))
            }
            _ => Err(AppError::internal(anyhow::anyhow!(
                "a second factor answered neither a session nor a rejection"
            ))),
        }
    }

    /// Runs a command that signs in and issues a new recovery code.
    pub(super) async fn sign_in_with_new_code(
        &self,
        method: &'static str,
        user: Uuid,
        caller: &Caller,
        command: impl FnOnce(RecoveryCode) -> UserAuthCommand,
    ) -> AppResult<SignedInWithCode> {
        let fresh = new_recovery_code();
        let verdict = self
            .run_sign_in(method, user, caller, command(fresh.clone()))
            .await?;
        Ok(SignedInWithCode {
            session: self.signed_in(method, user, verdict)?,
            recovery_code: fresh.display(),
        })
    }
}
