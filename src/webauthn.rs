//! WebAuthn, the relying party's side: the options a browser needs for a
//! ceremony, and the library's checks of what the authenticator answered
//! (origin, challenge, signature, flags). Between the two requests the
//! ceremony's state is kept in Postgres, taken back exactly once.
//!
//! The sign count is the one thing left to the aggregate: challenges are
//! made from credentials whose count reads 0, so the library never judges
//! it against a copy that may be stale by the time the answer arrives.
use authledger_aggregates::{Reference, WebAuthnAssertion, WebAuthnCredential};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;
use webauthn_rs::prelude::{
    Credential, CredentialID, PublicKeyCredential, RegisterPublicKeyCredential, SecurityKey,
    SecurityKeyAuthentication, SecurityKeyRegistration, Url, Webauthn, WebauthnBuilder,
};

/// What a ceremony is for; each login attempt or session holds at most
/// one of each, the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The second step of a sign-in.
    SignIn,
    /// The first authenticator of an account, during a sign-in.
    Enroll,
    /// Another authenticator, from a session.
    Register,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Self::SignIn => "sign-in",
            Self::Enroll => "enroll",
            Self::Register => "register",
        }
    }
}

/// The browser's answer does not check out. It carries the library's own
/// words only, never what the client sent.
#[derive(Debug, thiserror::Error)]
#[error("the authenticator's answer is not valid: {0}")]
pub struct InvalidResponse(String);

/// What a client sent is not a WebAuthn answer of the kind expected.
#[derive(Debug, thiserror::Error)]
#[error("not a WebAuthn answer")]
pub struct Malformed;

/// A browser's answer to `navigator.credentials.get()`, parsed.
pub struct Assertion(PublicKeyCredential);

impl Assertion {
    pub fn parse(response: &Value) -> Result<Self, Malformed> {
        PublicKeyCredential::deserialize(response)
            .map(Self)
            .map_err(|_| Malformed)
    }
}

/// A browser's answer to `navigator.credentials.create()`, parsed.
pub struct Registration(RegisterPublicKeyCredential);

impl Registration {
    pub fn parse(response: &Value) -> Result<Self, Malformed> {
        RegisterPublicKeyCredential::deserialize(response)
            .map(Self)
            .map_err(|_| Malformed)
    }

    /// The credential id it names, as the events name ids.
    pub fn credential_id(&self) -> String {
        encode_id(&self.0.raw_id)
    }
}

/// The relying party: this service, as the domain of its public URL.
pub struct RelyingParty {
    webauthn: Webauthn,
}

impl RelyingParty {
    /// The relying party of `public_url`; `None` when its host is an IP
    /// address, which WebAuthn does not accept as a relying party id.
    pub fn for_public_url(
        public_url: &str,
        name: &str,
        timeout: std::time::Duration,
    ) -> anyhow::Result<Option<Self>> {
        let origin = Url::parse(public_url)?;
        let Some(host) = origin.domain() else {
            return Ok(None);
        };
        let webauthn = WebauthnBuilder::new(host, &origin)?
            .rp_name(name)
            .timeout(timeout)
            .build()?;
        Ok(Some(Self { webauthn }))
    }

    /// Options for registering a security key or passkey, and the state to
    /// keep. User verification is preferred, attestation not asked for;
    /// `exclude` keeps one authenticator from being registered twice.
    pub fn start_registration<'a>(
        &self,
        user: Uuid,
        email: &str,
        exclude: impl Iterator<Item = &'a WebAuthnCredential>,
    ) -> anyhow::Result<(Value, Value)> {
        let exclude: Vec<CredentialID> = exclude
            .filter_map(|held| decode_id(&held.credential_id))
            .collect();
        let (mut options, state) = self.webauthn.start_securitykey_registration(
            user,
            email,
            email,
            Some(exclude),
            None,
            None,
        )?;
        // The library asks for credProtect "user verification required"
        // while only preferring verification, which Chromium refuses as
        // inconsistent; and its "security key" hint would steer browsers
        // away from the platform's passkeys, which are just as welcome.
        options.public_key.extensions = options.public_key.extensions.map(|mut e| {
            e.cred_protect = None;
            e
        });
        options.public_key.hints = None;
        Ok((serde_json::to_value(options)?, serde_json::to_value(state)?))
    }

    pub fn finish_registration(
        &self,
        registration: &Registration,
        state: Value,
    ) -> Result<WebAuthnCredential, InvalidResponse> {
        let response = &registration.0;
        let state: SecurityKeyRegistration = kept(state)?;
        let key = self
            .webauthn
            .finish_securitykey_registration(response, &state)
            .map_err(|err| InvalidResponse(err.to_string()))?;
        let credential = Credential::from(key);
        // What the browser says of how the key reaches it: a hint for the
        // next challenge and the profile, trusted for nothing else (the
        // library keeps it only with a trusted attestation).
        let transports = response
            .response
            .transports
            .iter()
            .flatten()
            .filter_map(|t| serde_json::to_value(t).ok()?.as_str().map(str::to_owned))
            .collect();
        Ok(WebAuthnCredential {
            credential_id: encode_id(&credential.cred_id),
            sign_count: credential.counter,
            user_verified: credential.user_verified,
            transports,
            public_key: serde_json::to_value(&credential)
                .map_err(|err| InvalidResponse(err.to_string()))?,
        })
    }

    /// Options for signing with one of `held`, and the state to keep.
    pub fn start_authentication<'a>(
        &self,
        held: impl Iterator<Item = &'a WebAuthnCredential>,
    ) -> anyhow::Result<(Value, Value)> {
        let keys = held
            .map(|credential| {
                let mut stored: Credential = serde_json::from_value(credential.public_key.clone())?;
                // The aggregate judges the count, against the one it holds
                // when the answer arrives.
                stored.counter = 0;
                Ok(SecurityKey::from(stored))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (mut options, state) = self.webauthn.start_securitykey_authentication(&keys)?;
        // As at registration: passkeys on the platform are as welcome.
        options.public_key.hints = None;
        Ok((serde_json::to_value(options)?, serde_json::to_value(state)?))
    }

    /// What the assertion in `response` amounts to against the ceremony
    /// `state`: valid (the signature is over this challenge and origin, by
    /// a credential the challenge allowed) or not.
    pub fn finish_authentication(&self, assertion: &Assertion, state: Value) -> WebAuthnAssertion {
        let checked = kept::<SecurityKeyAuthentication>(state).and_then(|state| {
            self.webauthn
                .finish_securitykey_authentication(&assertion.0, &state)
                .map_err(|err| InvalidResponse(err.to_string()))
        });
        match checked {
            Ok(result) => WebAuthnAssertion::Valid {
                credential_id: encode_id(result.cred_id()),
                sign_count: result.counter(),
                user_verified: result.user_verified(),
            },
            Err(err) => {
                tracing::info!(error = %err, "a WebAuthn assertion did not check out");
                WebAuthnAssertion::Invalid
            }
        }
    }
}

/// A ceremony's state as this service kept it.
fn kept<T: serde::de::DeserializeOwned>(state: Value) -> Result<T, InvalidResponse> {
    serde_json::from_value(state)
        .map_err(|_| InvalidResponse("the kept ceremony does not read".into()))
}

/// A credential id as browsers and the events name it: base64url.
fn encode_id(id: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

fn decode_id(id: &str) -> Option<CredentialID> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .ok()
}

/// Keeps a ceremony's state for `user` until `expires_at`, replacing one
/// of the same purpose for the same attempt or session.
pub async fn keep(
    pool: &PgPool,
    purpose: Purpose,
    bound_to: &Reference,
    user: Uuid,
    state: &Value,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    // Ceremonies nobody finished are swept here rather than by a job: each
    // new one clears a few that are over, any account's, skipping rows
    // another request is sweeping.
    sqlx::query(
        "WITH over AS (
             DELETE FROM webauthn_ceremonies WHERE ctid IN (
                 SELECT ctid FROM webauthn_ceremonies
                  WHERE expires_at <= $5 AND NOT (purpose = $1 AND bound_to = $2)
                  LIMIT 16 FOR UPDATE SKIP LOCKED))
         INSERT INTO webauthn_ceremonies (purpose, bound_to, user_id, state, expires_at)
         VALUES ($1, $2, $3, $4, $6)
         ON CONFLICT (purpose, bound_to)
         DO UPDATE SET user_id = $3, state = $4, expires_at = $6",
    )
    .bind(purpose.label())
    .bind(bound_to.as_bytes().as_slice())
    .bind(user)
    .bind(sqlx::types::Json(state))
    .bind(now)
    .bind(expires_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Takes the ceremony of `purpose` for this attempt or session back, once:
/// a second answer to the same challenge finds nothing, as does one after
/// `now` passed its expiry or one for another account.
pub async fn take(
    pool: &PgPool,
    purpose: Purpose,
    bound_to: &Reference,
    user: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<Value>> {
    let state: Option<(sqlx::types::Json<Value>, DateTime<Utc>)> = sqlx::query_as(
        "DELETE FROM webauthn_ceremonies
          WHERE purpose = $1 AND bound_to = $2 AND user_id = $3
          RETURNING state, expires_at",
    )
    .bind(purpose.label())
    .bind(bound_to.as_bytes().as_slice())
    .bind(user)
    .fetch_optional(pool)
    .await?;
    Ok(state
        .filter(|(_, expires_at)| now < *expires_at)
        .map(|(state, _)| state.0))
}

/// Forgets every ceremony of `user` (an erased account).
pub async fn forget(pool: &PgPool, user: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM webauthn_ceremonies WHERE user_id = $1")
        .bind(user)
        .execute(pool)
        .await?;
    Ok(())
}
