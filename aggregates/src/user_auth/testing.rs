//! Fakes and fixtures shared by the rules' tests: a fixed clock, counting
//! randomness, transparent hashing and sealing, and the histories the
//! tests start from.
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::TimeZone;
use cqrs_es::test::TestFramework;
use uuid::Uuid;

pub(crate) use chrono::{DateTime, Duration, Utc};

use super::{
    code_at_step, seal_recovery_code, time_step, Clock, Randomness, ServiceError,
    RECOVERY_CODE_BYTES,
};
pub(crate) use super::{
    Actor, AdminReason, Assurance, AuthenticatorId, AuthenticatorKind, AuthenticatorName,
    Consequence, Decided, Email, ErasureRequest, FailedFactor, NewPassword, NewWebAuthnCredential,
    Password, PasswordCheck, PasswordHash, PasswordHasher, Policy, RecoveryCode, Reference,
    Registration, Rejection, ReportedActivity, Reporter, ResealedSecret, ResetCancellation,
    SealPurpose, Sealed, SecondFactor, SecretKeeper, SessionEndReason, SignInMethod,
    StartedSession, TotpCode, TotpRejection, TotpSecret, UserAuth, UserAuthCommand, UserAuthError,
    UserAuthEvent, UserAuthEvent as E, UserAuthServices, Verdict, WebAuthnAssertion,
    WebAuthnCredential, WebAuthnRejection,
};

pub(crate) type Framework = TestFramework<UserAuth>;

// ---- fakes -----------------------------------------------------------------

struct FixedClock(Mutex<DateTime<Utc>>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// References 1, 2, 3, ... in order of use.
struct CountingRandomness(AtomicU64);

impl Randomness for CountingRandomness {
    fn reference(&self) -> Reference {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        reference(n)
    }
}

/// "Hashes" as `v{version}:{password}`; a hash of another version needs a
/// re-hash, like argon2 parameters that changed. Counts its calls, the work
/// an argon2 hasher would do.
struct FakeHasher {
    version: u32,
    work: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl PasswordHasher for FakeHasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, ServiceError> {
        self.work.fetch_add(1, Ordering::SeqCst);
        Ok(PasswordHash(format!(
            "v{}:{}",
            self.version,
            password.expose()
        )))
    }

    async fn verify(
        &self,
        hash: Option<&PasswordHash>,
        password: &Password,
    ) -> Result<PasswordCheck, ServiceError> {
        self.work.fetch_add(1, Ordering::SeqCst);
        let Some(PasswordHash(hash)) = hash else {
            return Ok(PasswordCheck::Mismatch);
        };
        let (version, plain) = hash.split_once(':').unwrap();
        if plain != password.expose() {
            return Ok(PasswordCheck::Mismatch);
        }
        Ok(PasswordCheck::Match {
            needs_rehash: version != format!("v{}", self.version),
        })
    }
}

/// The key every fixture is sealed with.
pub(crate) const KEY: &str = "k1";

/// "Seals" as the purpose's label and the hex of the plaintext under the
/// key named `current`: reversible, yet a value sealed for one purpose does
/// not unseal as another. Every key it ever had still unseals, as after a
/// rotation.
pub(crate) struct FakeKeeper {
    current: &'static str,
}

impl FakeKeeper {
    /// A keeper whose new seals use `key_id`.
    pub(crate) fn current(key_id: &'static str) -> Self {
        Self { current: key_id }
    }
}

impl SecretKeeper for FakeKeeper {
    fn seal(&self, purpose: SealPurpose, plaintext: &[u8]) -> Result<Sealed, ServiceError> {
        Ok(sealed_with(self.current, purpose, plaintext))
    }

    fn unseal(&self, purpose: SealPurpose, sealed: &Sealed) -> Result<Vec<u8>, ServiceError> {
        let hex = sealed
            .ciphertext
            .strip_prefix(purpose.label())
            .and_then(|rest| rest.strip_prefix(':'))
            .ok_or_else(|| ServiceError::Failed("wrong purpose".into()))?;
        Ok(data_encoding::HEXLOWER.decode(hex.as_bytes()).unwrap())
    }

    fn is_current(&self, _purpose: SealPurpose, sealed: &Sealed) -> bool {
        sealed.key_id == self.current
    }
}

pub(crate) fn keeper() -> FakeKeeper {
    FakeKeeper::current(KEY)
}

/// What the test keeper seals `plaintext` to under `key_id`.
pub(crate) fn sealed_with(key_id: &str, purpose: SealPurpose, plaintext: &[u8]) -> Sealed {
    Sealed {
        key_id: key_id.into(),
        nonce: "n".into(),
        ciphertext: format!(
            "{}:{}",
            purpose.label(),
            data_encoding::HEXLOWER.encode(plaintext)
        ),
    }
}

// ---- fixtures --------------------------------------------------------------

pub(crate) const PASSWORD: &str = "correct horse battery staple";
/// A password the user chooses instead of `PASSWORD`.
pub(crate) const NEW_PASSWORD: &str = "violet lantern ferry quartz";

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()
}

pub(crate) fn later(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

pub(crate) fn reference(n: u64) -> Reference {
    let mut bytes = [0u8; 16];
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    Reference::from_bytes(bytes)
}

/// Today's numbers, as the binary configures them by default.
pub(crate) fn policy() -> Policy {
    Policy {
        login_attempt_ttl: Duration::minutes(5),
        second_factor_tries: 5,
        totp_skew_steps: 1,
        throttle_after_failures: 5,
        throttle_base: Duration::seconds(30),
        throttle_max: Duration::hours(1),
        lock_after_failures: 100,
        email_link_ttl: Duration::minutes(15),
        email_link_window: Duration::minutes(15),
        email_links_per_window: 3,
        session_absolute: Duration::hours(12),
        session_idle: Duration::hours(1),
        session_activity_granularity: Duration::minutes(5),
        reauthentication_window: Duration::minutes(15),
        email_verification_ttl: Duration::hours(24),
        registration_mails_per_window: 3,
        registration_mail_window: Duration::hours(1),
        password_reset_ttl: Duration::minutes(30),
        password_resets_per_window: 3,
        password_reset_window: Duration::hours(1),
        aal1_mfa_reset_delay: Duration::hours(24),
        email_change_ttl: Duration::hours(24),
        email_change_revert_window: Duration::hours(72),
        email_changes_per_window: 3,
        email_change_window: Duration::hours(1),
        report_link_ttl: Duration::days(7),
    }
}

pub(crate) fn services_at(now: DateTime<Utc>) -> UserAuthServices {
    services_with(now, 1, 1)
}

/// Services at `now`, hashing at `hasher_version`, whose next reference is `next_ref`.
pub(crate) fn services_with(
    now: DateTime<Utc>,
    hasher_version: u32,
    next_ref: u64,
) -> UserAuthServices {
    services_counting_work(now, hasher_version, next_ref, Arc::default())
}

fn services_counting_work(
    now: DateTime<Utc>,
    hasher_version: u32,
    next_ref: u64,
    work: Arc<AtomicUsize>,
) -> UserAuthServices {
    UserAuthServices {
        clock: Arc::new(FixedClock(Mutex::new(now))),
        randomness: Arc::new(CountingRandomness(AtomicU64::new(next_ref - 1))),
        hasher: Arc::new(FakeHasher {
            version: hasher_version,
            work,
        }),
        keeper: Arc::new(keeper()),
        policy: policy(),
    }
}

/// Services at `now` whose keeper seals with `key_id`, as after a rotation.
pub(crate) fn services_with_key(now: DateTime<Utc>, key_id: &'static str) -> UserAuthServices {
    UserAuthServices {
        keeper: Arc::new(FakeKeeper::current(key_id)),
        ..services_at(now)
    }
}

pub(crate) fn at(now: DateTime<Utc>) -> Framework {
    Framework::with(services_at(now))
}

pub(crate) fn email() -> Email {
    Email::parse("alice@example.com").unwrap()
}

/// The id the registration fixtures chose.
pub(crate) fn user_id() -> Uuid {
    Uuid::from_u128(0xa11ce)
}

/// What an address is recorded as with the test services.
pub(crate) fn sealed_email(address: &str) -> Sealed {
    sealed(SealPurpose::Email, address.as_bytes())
}

/// What a reason is recorded as with the test services.
pub(crate) fn sealed_text(text: &str) -> Sealed {
    sealed(SealPurpose::FreeText, text.as_bytes())
}

pub(crate) fn secret() -> TotpSecret {
    TotpSecret::from_bytes(*b"12345678901234567890")
}

pub(crate) fn sealed(purpose: SealPurpose, plaintext: &[u8]) -> Sealed {
    sealed_with(KEY, purpose, plaintext)
}

pub(crate) fn recovery(n: u8) -> RecoveryCode {
    RecoveryCode::from_random([n; RECOVERY_CODE_BYTES])
}

/// What a recovery code is stored as with the test services.
pub(crate) fn digest(code: &RecoveryCode) -> Sealed {
    digest_with(KEY, code)
}

/// What a recovery code is stored as under `key_id`.
pub(crate) fn digest_with(key_id: &'static str, code: &RecoveryCode) -> Sealed {
    seal_recovery_code(&FakeKeeper::current(key_id), code).unwrap()
}

/// A second authenticator app's secret.
pub(crate) fn second_secret() -> TotpSecret {
    TotpSecret::from_bytes(*b"abcdefghijabcdefghij")
}

pub(crate) fn second_code_for_step(step: u64) -> TotpCode {
    TotpCode::parse(&code_at_step(&second_secret(), step)).unwrap()
}

pub(crate) fn authenticator_id(n: u64) -> AuthenticatorId {
    AuthenticatorId(Uuid::from_u128(u128::from(n)))
}

pub(crate) fn name(text: &str) -> AuthenticatorName {
    AuthenticatorName::parse(text).unwrap()
}

/// Security key `n` as registered, counting `sign_count`.
pub(crate) fn credential(n: u64, sign_count: u32) -> WebAuthnCredential {
    WebAuthnCredential {
        credential_id: format!("credential-{n}"),
        public_key: serde_json::json!({ "key": n }),
        sign_count,
        transports: vec!["usb".into()],
        user_verified: true,
    }
}

/// Signed in as session 8 at `now`, with security key 3 added.
pub(crate) fn with_key(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
    let mut events = signed_in(now);
    events.push(E::WebAuthnCredentialAdded {
        authenticator: authenticator_id(3),
        name: sealed_text("Work key"),
        credential: credential(3, 0),
        at: now,
    });
    events
}

/// Signed in as session 8 at `now`, with a second app (2) added.
pub(crate) fn with_second_app(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
    let mut events = signed_in(now);
    events.push(E::TotpDeviceAdded {
        authenticator: authenticator_id(2),
        name: sealed_text("Spare phone"),
        secret: sealed(SealPurpose::TotpSecret, second_secret().expose()),
        step: 0,
        at: now,
    });
    events
}

pub(crate) fn code_at(time: DateTime<Utc>) -> TotpCode {
    TotpCode::parse(&code_at_step(&secret(), step_at(time))).unwrap()
}

pub(crate) fn code_for_step(step: u64) -> TotpCode {
    TotpCode::parse(&code_at_step(&secret(), step)).unwrap()
}

pub(crate) fn step_at(time: DateTime<Utc>) -> u64 {
    time_step(u64::try_from(time.timestamp()).unwrap())
}

pub(crate) fn password() -> Password {
    Password::parse(PASSWORD).unwrap()
}

pub(crate) fn new_password() -> NewPassword {
    NewPassword::parse(NEW_PASSWORD, &[]).unwrap()
}

/// What a password hashes and seals to with the test services.
pub(crate) fn sealed_hash(password: &str) -> Sealed {
    sealed(
        SealPurpose::PasswordHash,
        format!("v1:{password}").as_bytes(),
    )
}

pub(crate) fn wrong_password() -> Password {
    Password::parse("not the password at all").unwrap()
}

pub(crate) fn registered() -> Vec<UserAuthEvent> {
    vec![E::UserRegistered {
        user_id: user_id(),
        email: sealed_email("alice@example.com"),
        password_hash: sealed(
            SealPurpose::PasswordHash,
            format!("v1:{PASSWORD}").as_bytes(),
        ),
        at: t0(),
    }]
}

pub(crate) fn verification_requested(link: u64, now: DateTime<Utc>) -> UserAuthEvent {
    E::EmailVerificationRequested {
        link: reference(link),
        expires_at: now + Duration::hours(24),
        reason: None,
        at: now,
    }
}

/// Registered at t0 under today's rule: verification link 50 mailed and
/// not yet opened.
pub(crate) fn unverified() -> Vec<UserAuthEvent> {
    let mut events = registered();
    events.push(verification_requested(50, t0()));
    events
}

pub(crate) fn attempt_opened(
    attempt: u64,
    now: DateTime<Utc>,
    next: SecondFactor,
) -> UserAuthEvent {
    E::PasswordVerified {
        attempt: reference(attempt),
        expires_at: now + Duration::minutes(5),
        next,
        at: now,
    }
}

/// Registered and enrolled at t0 (step of t0 used), with recovery code 1,
/// and a session 100 that has since ended.
pub(crate) fn enrolled() -> Vec<UserAuthEvent> {
    let mut events = registered();
    events.extend([
        attempt_opened(90, t0(), SecondFactor::Enroll),
        E::MfaEnrollmentStarted {
            attempt: reference(90),
            secret: sealed(SealPurpose::TotpSecret, secret().expose()),
            at: t0(),
        },
        // As stored before accounts held several authenticators.
        E::MfaEnrolled {
            attempt: reference(90),
            step: step_at(t0()),
            authenticator: None,
            name: None,
            credential: None,
            at: t0(),
        },
        E::RecoveryCodeIssued {
            digest: digest(&recovery(1)),
            at: t0(),
        },
        session_started(100, SignInMethod::Enrollment, t0()),
        E::SessionEnded {
            session: reference(100),
            reason: SessionEndReason::Logout,
            at: t0(),
        },
    ]);
    events
}

/// Enrolled, with login attempt 7 opened at `now`.
pub(crate) fn enrolled_with_attempt(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
    let mut events = enrolled();
    events.push(attempt_opened(7, now, SecondFactor::Totp));
    events
}

pub(crate) fn registered_with_attempt(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
    let mut events = registered();
    events.push(attempt_opened(7, now, SecondFactor::Enroll));
    events
}

pub(crate) fn session_started(n: u64, method: SignInMethod, now: DateTime<Utc>) -> UserAuthEvent {
    E::SessionStarted {
        session: reference(n),
        method,
        aal: method.assurance(),
        expires_at: now + Duration::hours(12),
        at: now,
    }
}

/// What a sign-in from a browser the account does not know records after
/// its session `session`: the notice's report link `report`, for 7 days.
pub(crate) fn new_device(session: u64, report: u64, now: DateTime<Utc>) -> UserAuthEvent {
    E::SignedInFromNewDevice {
        session: reference(session),
        report: reference(report),
        report_until: now + Duration::days(7),
        at: now,
    }
}

/// Enrolled, signed in with session 8 at `now`.
pub(crate) fn signed_in(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
    let mut events = enrolled();
    events.push(session_started(8, SignInMethod::Totp, now));
    events
}

pub(crate) fn folded(events: Vec<UserAuthEvent>) -> UserAuth {
    events
        .into_iter()
        .fold(UserAuth::default(), |mut state, event| {
            state.apply_event(event);
            state
        })
}

pub(crate) fn events_of(
    framework: Framework,
    given: Vec<UserAuthEvent>,
    command: UserAuthCommand,
) -> Vec<UserAuthEvent> {
    framework
        .given(given)
        .when(command)
        .inspect_result()
        .unwrap()
}

/// What `decide` answers to `command` at `now`, for the state folded from
/// `given`: the verdict the command bus acts on, with its events.
pub(crate) fn decided(
    now: DateTime<Utc>,
    given: Vec<UserAuthEvent>,
    command: UserAuthCommand,
) -> Decided {
    decided_by(&services_at(now), given, command)
}

/// What `decide` answers to `command` with `services`.
pub(crate) fn decided_by(
    services: &UserAuthServices,
    given: Vec<UserAuthEvent>,
    command: UserAuthCommand,
) -> Decided {
    let state = folded(given);
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(state.decide(command, services))
        .unwrap()
}

/// What `decide` answers, refusal or not, and how many password hashes and
/// verifications it cost.
pub(crate) fn with_hashing_work(
    now: DateTime<Utc>,
    given: Vec<UserAuthEvent>,
    command: UserAuthCommand,
) -> (Result<Decided, UserAuthError>, usize) {
    let state = folded(given);
    let work = Arc::new(AtomicUsize::new(0));
    let services = services_counting_work(now, 1, 1, Arc::clone(&work));
    let outcome = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(state.decide(command, &services));
    (outcome, work.load(Ordering::SeqCst))
}
