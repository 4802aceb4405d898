//! Several authenticators per account: signing in and enrolling with a
//! security key or passkey, and, from a session, listing, adding and
//! removing authenticator apps, security keys and passkeys.
//!
//! A WebAuthn ceremony is two requests: options (the challenge, kept in
//! Postgres for this login attempt or session), then the authenticator's
//! answer, which takes the challenge back exactly once before anything is
//! checked.
use authledger_aggregates::{
    AuthenticatorId, AuthenticatorKind, AuthenticatorName, NewWebAuthnCredential, Password,
    Reference, SealPurpose, TotpCode, UserAuth, UserAuthCommand, Verdict,
};
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{App, AppError, AppResult, Caller, Enrollment, SignedIn, SignedInWithCode};
use crate::command_bus::BusError;
use crate::keys::UserKeeper;
use crate::services::new_totp_secret;
use crate::webauthn::{self, Assertion, Purpose, Registration, RelyingParty};

/// One authenticator as its owner sees it.
#[derive(Debug, Clone)]
pub struct AuthenticatorEntry {
    pub id: AuthenticatorId,
    pub kind: AuthenticatorKind,
    /// The name its owner gave it; the app enrolled before names existed
    /// is "Authenticator app".
    pub name: String,
    pub added_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// How a security key reaches the browser ("usb", "nfc", "internal").
    pub transports: Vec<String>,
    /// A security key's credential id, as browsers name it (base64url).
    pub credential_id: Option<String>,
    /// Since when it is refused: it answered with a signature count that
    /// went back, so two copies of it may exist.
    pub suspected_copy_at: Option<DateTime<Utc>>,
}

/// Which kinds of authenticator a sign-in is offered.
#[derive(Debug, Clone, Copy, Default)]
pub struct FactorsOffered {
    pub totp: bool,
    pub webauthn: bool,
}

/// What the browser passes to `navigator.credentials`, as
/// `{"publicKey": {...}}`.
#[derive(Debug, Clone)]
pub struct WebAuthnOptions(pub Value);

/// What an app enrolled before authenticators had names is called.
const UNNAMED_APP: &str = "Authenticator app";

impl App {
    fn relying_party(&self) -> AppResult<&RelyingParty> {
        self.relying_party
            .as_ref()
            .ok_or(AppError::WebAuthnUnavailable)
    }

    /// Whether security keys and passkeys can be used here at all.
    pub fn webauthn_available(&self) -> bool {
        self.relying_party.is_some()
    }

    async fn keep_ceremony(
        &self,
        purpose: Purpose,
        bound_to: &Reference,
        user: Uuid,
        state: &Value,
        until: DateTime<Utc>,
    ) -> AppResult<()> {
        let now = self.now();
        let expires_at = (now + self.webauthn_challenge_ttl).min(until);
        webauthn::keep(&self.pool, purpose, bound_to, user, state, now, expires_at)
            .await
            .map_err(|cause| AppError::Unavailable {
                what: "the event store",
                cause: cause.into(),
            })
    }

    async fn take_ceremony(
        &self,
        purpose: Purpose,
        bound_to: &Reference,
        user: Uuid,
    ) -> AppResult<Value> {
        webauthn::take(&self.pool, purpose, bound_to, user, self.now())
            .await
            .map_err(|cause| AppError::Unavailable {
                what: "the event store",
                cause: cause.into(),
            })?
            .ok_or(AppError::WebAuthnChallengeInvalid)
    }

    /// Which kinds of authenticator can finish this sign-in: a code when
    /// the account holds an app, a key when it holds one that may sign in
    /// and the service can use keys.
    pub async fn factors_offered(&self, login_token: &str) -> AppResult<FactorsOffered> {
        let (user, attempt) = self.login_token(login_token)?;
        let state = self.load(user).await?;
        state
            .attempt_open_until(&attempt, self.now(), self.policy())
            .ok_or(AppError::LoginAttemptInvalid)?;
        Ok(FactorsOffered {
            totp: state.totp_available(),
            webauthn: self.webauthn_available()
                && state.usable_webauthn_credentials().next().is_some(),
        })
    }

    /// A challenge for the second step of a sign-in, for any of the
    /// account's security keys and passkeys.
    pub async fn webauthn_sign_in_options(&self, login_token: &str) -> AppResult<WebAuthnOptions> {
        let rp = self.relying_party()?;
        let (user, attempt) = self.login_token(login_token)?;
        let state = self.load(user).await?;
        let until = state
            .attempt_open_until(&attempt, self.now(), self.policy())
            .ok_or(AppError::LoginAttemptInvalid)?;
        if state.usable_webauthn_credentials().next().is_none() {
            return Err(AppError::NoSecurityKey);
        }
        let (options, ceremony) = rp
            .start_authentication(state.usable_webauthn_credentials())
            .map_err(AppError::internal)?;
        self.keep_ceremony(Purpose::SignIn, &attempt, user, &ceremony, until)
            .await?;
        Ok(WebAuthnOptions(options))
    }

    /// The second step with a security key or passkey: its answer to the
    /// attempt's challenge.
    pub async fn webauthn_sign_in(
        &self,
        caller: &Caller,
        login_token: &str,
        response: &Value,
    ) -> AppResult<SignedIn> {
        let rp = self.relying_party()?;
        let (user, attempt) = self.login_token(login_token)?;
        // What is not an answer at all spends neither the challenge nor a
        // try.
        let answer = Assertion::parse(response).map_err(|_| AppError::WebAuthnResponseMalformed)?;
        let ceremony = self.take_ceremony(Purpose::SignIn, &attempt, user).await?;
        let assertion = rp.finish_authentication(&answer, ceremony);
        let verdict = self
            .run_sign_in(
                "webauthn",
                user,
                caller,
                UserAuthCommand::SubmitWebAuthn { attempt, assertion },
            )
            .await?;
        self.signed_in("webauthn", user, verdict)
    }

    /// A challenge to register the account's first authenticator, a
    /// security key or passkey, during a sign-in.
    pub async fn webauthn_enroll_options(&self, login_token: &str) -> AppResult<WebAuthnOptions> {
        let rp = self.relying_party()?;
        let (user, attempt) = self.login_token(login_token)?;
        let (state, keeper) = self.load_keeper(user).await?;
        let until = state
            .attempt_open_until(&attempt, self.now(), self.policy())
            .ok_or(AppError::LoginAttemptInvalid)?;
        if state.is_enrolled() {
            return Err(AppError::AlreadyEnrolled);
        }
        let email = super::identity::address_of(&state, &keeper).ok_or(AppError::UnknownUser)?;
        let (options, ceremony) = rp
            .start_registration(user, &email, std::iter::empty())
            .map_err(AppError::internal)?;
        self.keep_ceremony(Purpose::Enroll, &attempt, user, &ceremony, until)
            .await?;
        Ok(WebAuthnOptions(options))
    }

    /// Enrolls the security key or passkey that answered the enrollment's
    /// challenge: issues the recovery code and signs in.
    pub async fn webauthn_enroll(
        &self,
        caller: &Caller,
        login_token: &str,
        name: &str,
        response: &Value,
    ) -> AppResult<SignedInWithCode> {
        let rp = self.relying_party()?;
        let (user, attempt) = self.login_token(login_token)?;
        let name = AuthenticatorName::parse(name)?;
        let registration =
            Registration::parse(response).map_err(|_| AppError::WebAuthnResponseMalformed)?;
        let ceremony = self.take_ceremony(Purpose::Enroll, &attempt, user).await?;
        let credential = registered(rp, &registration, ceremony)?;
        let authenticator = AuthenticatorId(Uuid::new_v4());
        self.sign_in_with_new_code("enrollment", user, caller, |recovery_code| {
            UserAuthCommand::EnrollWebAuthn {
                attempt,
                key: NewWebAuthnCredential {
                    authenticator,
                    name,
                    credential,
                },
                recovery_code,
            }
        })
        .await
    }

    /// The signed-in user's authenticators, oldest first.
    pub async fn authenticators(&self, session_token: &str) -> AppResult<Vec<AuthenticatorEntry>> {
        let (user, session) = self.session_token(session_token)?;
        let (state, keeper) = self.load_keeper(user).await?;
        state
            .live_session(&session, self.now(), self.policy())
            .ok_or(AppError::Unauthenticated)?;
        Ok(entries(state.authenticators(), &keeper))
    }

    /// A fresh secret for another authenticator app, shown until a code
    /// from the app confirms it. `password` is needed when the session is
    /// not recent.
    pub async fn begin_totp_device(
        &self,
        caller: &Caller,
        session_token: &str,
        password: Option<&str>,
    ) -> AppResult<Enrollment> {
        let (user, session) = self.session_token(session_token)?;
        let password = parse_password(password)?;
        let secret = new_totp_secret();
        let executed = self
            .bus
            .execute(
                user,
                UserAuthCommand::BeginTotpDevice {
                    session,
                    password,
                    secret: secret.clone(),
                },
                &caller.as_user(),
            )
            .await
            .map_err(|err| self.refused(err))?;
        match executed.verdict {
            Verdict::TotpDeviceSetupStarted => {}
            Verdict::Rejected(rejection) => {
                return Err(self.rejected(rejection, AppError::WrongPassword))
            }
            _ => {
                return Err(AppError::internal(anyhow::anyhow!(
                    "beginning an app answered something else"
                )))
            }
        }
        let email = super::identity::address_of(&executed.state, &executed.keeper)
            .ok_or(AppError::Unauthenticated)?;
        self.enrollment_of(&secret, &email)
    }

    /// The authenticator app begun from this session and not yet
    /// confirmed, to show again; `None` when there is none.
    pub async fn pending_totp_device(&self, session_token: &str) -> AppResult<Option<Enrollment>> {
        let (user, session) = self.session_token(session_token)?;
        let (state, keeper) = self.load_keeper(user).await?;
        let sealed = state.pending_totp_device_secret(&session, self.now(), self.policy());
        self.shown_again(&state, &keeper, sealed)
    }

    /// Adds the authenticator app begun from this session under `name`,
    /// confirmed with a code from it.
    pub async fn add_totp_device(
        &self,
        caller: &Caller,
        session_token: &str,
        name: &str,
        code: &str,
    ) -> AppResult<AuthenticatorId> {
        let (user, session) = self.session_token(session_token)?;
        let name = AuthenticatorName::parse(name)?;
        let code = TotpCode::parse(code).map_err(|_| AppError::InvalidCodeFormat)?;
        let command = UserAuthCommand::AddTotpDevice {
            session,
            authenticator: AuthenticatorId(Uuid::new_v4()),
            name,
            code,
        };
        self.added(self.run(user, caller, command).await?)
    }

    /// A challenge to register a security key or passkey from an `aal2`
    /// session.
    pub async fn webauthn_register_options(
        &self,
        session_token: &str,
    ) -> AppResult<WebAuthnOptions> {
        let rp = self.relying_party()?;
        let (user, session) = self.session_token(session_token)?;
        let (state, keeper) = self.load_keeper(user).await?;
        let live = state
            .live_session(&session, self.now(), self.policy())
            .ok_or(AppError::Unauthenticated)?;
        if live.aal != authledger_aggregates::Assurance::Aal2 {
            return Err(AppError::SecondFactorRequired);
        }
        state
            .may_add_authenticator()
            .map_err(|refusal| self.refused(BusError::Refused(refusal)))?;
        let until = live.idle_expires_at(self.policy());
        let email =
            super::identity::address_of(&state, &keeper).ok_or(AppError::Unauthenticated)?;
        let (options, ceremony) = rp
            .start_registration(user, &email, state.webauthn_credentials())
            .map_err(AppError::internal)?;
        self.keep_ceremony(Purpose::Register, &session, user, &ceremony, until)
            .await?;
        Ok(WebAuthnOptions(options))
    }

    /// Adds the security key or passkey that answered this session's
    /// challenge, under `name`. `password` is needed when the session is
    /// not recent.
    pub async fn add_webauthn_credential(
        &self,
        caller: &Caller,
        session_token: &str,
        password: Option<&str>,
        name: &str,
        response: &Value,
    ) -> AppResult<AuthenticatorId> {
        let rp = self.relying_party()?;
        let (user, session) = self.session_token(session_token)?;
        let name = AuthenticatorName::parse(name)?;
        let password = parse_password(password)?;
        let registration =
            Registration::parse(response).map_err(|_| AppError::WebAuthnResponseMalformed)?;
        let state = self.load(user).await?;
        let (now, policy) = (self.now(), self.policy());
        // Refused before the challenge is spent: a session gone stale while
        // its page was open asks for the password and can try again.
        let live = state
            .live_session(&session, now, policy)
            .ok_or(AppError::Unauthenticated)?;
        if live.aal != authledger_aggregates::Assurance::Aal2 {
            return Err(AppError::SecondFactorRequired);
        }
        state
            .may_add_authenticator()
            .map_err(|refusal| self.refused(BusError::Refused(refusal)))?;
        if password.is_none() && state.reauthentication_required(&session, now, policy) {
            return Err(AppError::ReauthenticationRequired);
        }
        // A key the account holds was excluded from the options, so the
        // library refuses it as it would a forged answer; named here.
        let id = registration.credential_id();
        if state
            .webauthn_credentials()
            .any(|held| held.credential_id == id)
        {
            return Err(AppError::CredentialAlreadyRegistered);
        }
        let ceremony = self
            .take_ceremony(Purpose::Register, &session, user)
            .await?;
        let credential = registered(rp, &registration, ceremony)?;
        let command = UserAuthCommand::AddWebAuthnCredential {
            session,
            password,
            key: NewWebAuthnCredential {
                authenticator: AuthenticatorId(Uuid::new_v4()),
                name,
                credential,
            },
        };
        self.added(self.run(user, caller, command).await?)
    }

    /// Removes one authenticator; the last one only with `confirm_last`.
    /// Answers whether it was the last.
    pub async fn remove_authenticator(
        &self,
        caller: &Caller,
        session_token: &str,
        password: Option<&str>,
        authenticator: AuthenticatorId,
        confirm_last: bool,
    ) -> AppResult<bool> {
        let (user, session) = self.session_token(session_token)?;
        let password = parse_password(password)?;
        let command = UserAuthCommand::RemoveAuthenticator {
            session,
            password,
            authenticator,
            confirm_last,
        };
        match self.run(user, caller, command).await? {
            Verdict::AuthenticatorRemoved { last } => Ok(last),
            Verdict::Rejected(rejection) => Err(self.rejected(rejection, AppError::WrongPassword)),
            _ => Err(AppError::internal(anyhow::anyhow!(
                "a removal answered something else"
            ))),
        }
    }

    fn added(&self, verdict: Verdict) -> AppResult<AuthenticatorId> {
        match verdict {
            Verdict::AuthenticatorAdded { authenticator } => Ok(authenticator),
            Verdict::Rejected(rejection) => Err(self.rejected(rejection, AppError::WrongPassword)),
            _ => Err(AppError::internal(anyhow::anyhow!(
                "adding an authenticator answered something else"
            ))),
        }
    }

    async fn load(&self, user: Uuid) -> AppResult<UserAuth> {
        self.load_keeper(user).await.map(|(state, _)| state)
    }

    async fn load_keeper(&self, user: Uuid) -> AppResult<(UserAuth, UserKeeper)> {
        self.bus
            .load_with_keeper(user)
            .await
            .map_err(|err| self.refused(err))
    }
}

/// The credential a registration's answer made, or why it was refused.
fn registered(
    rp: &RelyingParty,
    registration: &Registration,
    ceremony: Value,
) -> AppResult<authledger_aggregates::WebAuthnCredential> {
    rp.finish_registration(registration, ceremony)
        .map_err(|err| {
            tracing::info!(error = %err, "a WebAuthn registration did not check out");
            AppError::WebAuthnRegistrationInvalid
        })
}

fn parse_password(password: Option<&str>) -> AppResult<Option<Password>> {
    password
        .map(Password::parse)
        .transpose()
        .map_err(AppError::UnacceptablePassword)
}

/// The account's authenticators with their names opened.
pub(super) fn entries(
    views: Vec<authledger_aggregates::AuthenticatorView>,
    keeper: &UserKeeper,
) -> Vec<AuthenticatorEntry> {
    views
        .into_iter()
        .map(|view| AuthenticatorEntry {
            id: view.id,
            kind: view.kind,
            name: match &view.name {
                None => UNNAMED_APP.to_owned(),
                // The user's key is gone once the account is erased.
                Some(sealed) => keeper
                    .open_text(SealPurpose::FreeText, sealed)
                    .unwrap_or_else(|| crate::audit::ERASED.to_owned()),
            },
            added_at: view.added_at,
            last_used_at: view.last_used_at,
            transports: view.transports,
            credential_id: view.credential_id,
            suspected_copy_at: view.suspected_copy_at,
        })
        .collect()
}
