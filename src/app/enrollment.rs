//! Enrollment: an account without an authenticator gets one during a
//! sign-in, confirmed with a first code.
use authledger_aggregates::{
    AuthenticatorId, SealPurpose, Sealed, SecretKeeper, TotpCode, TotpSecret, UserAuth,
    UserAuthCommand,
};
use qrcode::render::svg;
use qrcode::QrCode;

use super::{App, AppError, AppResult, Caller, SignedInWithCode};
use crate::keys::UserKeeper;
use crate::services::new_totp_secret;

/// What an authenticator app needs, shown while the enrollment is pending.
/// No `Debug`: it holds the secret.
pub struct Enrollment {
    /// Key URI for authenticator apps.
    pub otpauth_uri: String,
    /// The same secret in base32, for manual entry.
    pub secret: String,
    /// The URI as a QR code.
    pub qr_svg: String,
}

impl App {
    /// A new authenticator secret for an account that has none. Asking
    /// again replaces the secret.
    pub async fn begin_enrollment(
        &self,
        caller: &Caller,
        login_token: &str,
    ) -> AppResult<Enrollment> {
        let (user, attempt) = self.login_token(login_token)?;
        let secret = new_totp_secret();
        let executed = self
            .bus
            .execute(
                user,
                UserAuthCommand::BeginEnrollment {
                    attempt,
                    secret: secret.clone(),
                },
                &caller.as_user(),
            )
            .await
            .map_err(|err| self.refused(err))?;
        let email =
            super::identity::address_of(&executed.state, &executed.keeper).ok_or_else(|| {
                AppError::internal(anyhow::anyhow!("an enrolling user has no address"))
            })?;
        self.enrollment_of(&secret, &email)
    }

    /// The enrollment begun in this login attempt and not yet confirmed, to
    /// show again; `None` when there is none.
    pub async fn pending_enrollment(&self, login_token: &str) -> AppResult<Option<Enrollment>> {
        let (user, attempt) = self.login_token(login_token)?;
        let (state, keeper) = self
            .bus
            .load_with_keeper(user)
            .await
            .map_err(|err| self.refused(err))?;
        let sealed = state.pending_enrollment_secret(&attempt, self.now(), self.policy());
        self.shown_again(&state, &keeper, sealed)
    }

    /// An app's secret waiting for its first code, `sealed`, shown again
    /// for the account's address; `None` when nothing waits.
    pub(super) fn shown_again(
        &self,
        state: &UserAuth,
        keeper: &UserKeeper,
        sealed: Option<&Sealed>,
    ) -> AppResult<Option<Enrollment>> {
        let (Some(sealed), Some(email)) = (sealed, super::identity::address_of(state, keeper))
        else {
            return Ok(None);
        };
        let bytes = keeper
            .unseal(SealPurpose::TotpSecret, sealed)
            .map_err(AppError::internal)?;
        let secret = TotpSecret::from_slice(&bytes).ok_or_else(|| {
            AppError::internal(anyhow::anyhow!("a sealed TOTP secret has the wrong length"))
        })?;
        self.enrollment_of(&secret, &email).map(Some)
    }

    /// Confirms the enrollment with a first code: enrolls the
    /// authenticator, issues the recovery code and signs in.
    pub async fn confirm_enrollment(
        &self,
        caller: &Caller,
        login_token: &str,
        code: &str,
    ) -> AppResult<SignedInWithCode> {
        let (user, attempt) = self.login_token(login_token)?;
        let code = TotpCode::parse(code).map_err(|_| AppError::InvalidCodeFormat)?;
        self.sign_in_with_new_code("enrollment", user, caller, |recovery_code| {
            UserAuthCommand::EnrollMfa {
                attempt,
                authenticator: AuthenticatorId(uuid::Uuid::new_v4()),
                code,
                recovery_code,
            }
        })
        .await
    }

    pub(super) fn enrollment_of(&self, secret: &TotpSecret, email: &str) -> AppResult<Enrollment> {
        let otpauth_uri = secret.otpauth_uri(&self.issuer, email);
        let qr_svg = QrCode::new(otpauth_uri.as_bytes())
            .map_err(AppError::internal)?
            .render::<svg::Color>()
            .min_dimensions(200, 200)
            .build();
        Ok(Enrollment {
            otpauth_uri,
            secret: secret.to_base32(),
            qr_svg,
        })
    }
}
