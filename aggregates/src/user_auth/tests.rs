//! Given/when/then tests of every command's rules, with a fixed clock,
//! counting randomness and transparent fakes for hashing and sealing.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::*;

type Framework = TestFramework<UserAuth>;

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
/// re-hash, like argon2 parameters that changed.
struct FakeHasher {
    version: u32,
}

#[async_trait::async_trait]
impl PasswordHasher for FakeHasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, ServiceError> {
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

/// Seals as hex with the purpose as key id: enough to see that purposes
/// cannot be swapped.
struct FakeKeeper;

impl SecretKeeper for FakeKeeper {
    fn seal(&self, purpose: SealPurpose, plaintext: &[u8]) -> Result<Sealed, ServiceError> {
        Ok(Sealed {
            key_id: purpose.label().into(),
            nonce: "n".into(),
            ciphertext: data_encoding::HEXLOWER.encode(plaintext),
        })
    }

    fn unseal(&self, purpose: SealPurpose, sealed: &Sealed) -> Result<Vec<u8>, ServiceError> {
        if sealed.key_id != purpose.label() {
            return Err(ServiceError("wrong purpose".into()));
        }
        Ok(data_encoding::HEXLOWER
            .decode(sealed.ciphertext.as_bytes())
            .unwrap())
    }

    fn digest_recovery_code(&self, code: &RecoveryCode) -> CodeDigest {
        CodeDigest(format!("digest:{}", code.expose()))
    }
}

// ---- fixtures --------------------------------------------------------------

const PASSWORD: &str = "correct horse battery staple";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()
}

fn reference(n: u64) -> Reference {
    let mut bytes = [0u8; 16];
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    Reference::from_bytes(bytes)
}

fn services_at(now: DateTime<Utc>) -> UserAuthServices {
    services_with(now, 1, 1)
}

/// Services at `now`, hashing at `hasher_version`, whose next reference is `next_ref`.
fn services_with(now: DateTime<Utc>, hasher_version: u32, next_ref: u64) -> UserAuthServices {
    UserAuthServices {
        clock: Arc::new(FixedClock(Mutex::new(now))),
        randomness: Arc::new(CountingRandomness(AtomicU64::new(next_ref - 1))),
        hasher: Arc::new(FakeHasher {
            version: hasher_version,
        }),
        keeper: Arc::new(FakeKeeper),
        policy: policy(),
    }
}

/// Today's numbers, as the binary configures them by default.
fn policy() -> Policy {
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
    }
}

fn at(now: DateTime<Utc>) -> Framework {
    Framework::with(services_at(now))
}

fn email() -> Email {
    Email::parse("alice@example.com").unwrap()
}

fn secret() -> TotpSecret {
    TotpSecret::from_bytes(*b"12345678901234567890")
}

fn sealed(purpose: SealPurpose, plaintext: &[u8]) -> Sealed {
    FakeKeeper.seal(purpose, plaintext).unwrap()
}

fn recovery(n: u8) -> RecoveryCode {
    RecoveryCode::from_random([n; RECOVERY_CODE_BYTES])
}

fn digest(code: &RecoveryCode) -> CodeDigest {
    FakeKeeper.digest_recovery_code(code)
}

fn code_at(time: DateTime<Utc>) -> TotpCode {
    TotpCode::parse(&code_at_step(&secret(), time_step(unix_secs(time)))).unwrap()
}

fn code_for_step(step: u64) -> TotpCode {
    TotpCode::parse(&code_at_step(&secret(), step)).unwrap()
}

fn step_at(time: DateTime<Utc>) -> u64 {
    time_step(unix_secs(time))
}

fn registered() -> Vec<UserAuthEvent> {
    vec![E::UserRegistered {
        user_id: email().user_id(),
        email: email().into(),
        password_hash: sealed(
            SealPurpose::PasswordHash,
            format!("v1:{PASSWORD}").as_bytes(),
        ),
        at: t0(),
    }]
}

fn attempt_opened(attempt: u64, now: DateTime<Utc>, next: SecondFactor) -> UserAuthEvent {
    E::PasswordVerified {
        attempt: reference(attempt),
        expires_at: now + Duration::minutes(5),
        next,
        at: now,
    }
}

/// Registered and enrolled at t0 (step of t0 used), with recovery code 1,
/// and a session 100 that has since ended.
fn enrolled() -> Vec<UserAuthEvent> {
    let mut events = registered();
    events.extend([
        attempt_opened(90, t0(), SecondFactor::Enroll),
        E::MfaEnrollmentStarted {
            attempt: reference(90),
            secret: sealed(SealPurpose::TotpSecret, secret().expose()),
            at: t0(),
        },
        E::MfaEnrolled {
            attempt: reference(90),
            step: step_at(t0()),
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
fn enrolled_with_attempt(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
    let mut events = enrolled();
    events.push(attempt_opened(7, now, SecondFactor::Totp));
    events
}

fn session_started(n: u64, method: SignInMethod, now: DateTime<Utc>) -> UserAuthEvent {
    E::SessionStarted {
        session: reference(n),
        method,
        aal: method.assurance(),
        expires_at: now + Duration::hours(12),
        at: now,
    }
}

fn later(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

fn password() -> Password {
    Password::parse(PASSWORD).unwrap()
}

fn wrong_password() -> Password {
    Password::parse("not the password at all").unwrap()
}

fn events_of(
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

// ---- registration ----------------------------------------------------------

#[test]
fn registering_records_the_user_with_a_sealed_password_hash() {
    at(t0())
        .given_no_previous_events()
        .when(UserAuthCommand::RegisterUser {
            email: email(),
            password: NewPassword::parse(PASSWORD, &[]).unwrap(),
        })
        .then_expect_events(registered());
}

#[test]
fn registering_an_existing_email_is_refused() {
    at(t0())
        .given(registered())
        .when(UserAuthCommand::RegisterUser {
            email: email(),
            password: NewPassword::parse(PASSWORD, &[]).unwrap(),
        })
        .then_expect_error(UserAuthError::AlreadyRegistered);
}

// ---- password step ---------------------------------------------------------

#[test]
fn a_correct_password_opens_an_attempt_that_asks_to_enroll_when_there_is_no_authenticator() {
    at(later(1))
        .given(registered())
        .when(UserAuthCommand::SubmitPassword {
            password: password(),
        })
        .then_expect_events(vec![attempt_opened(1, later(1), SecondFactor::Enroll)]);
}

#[test]
fn a_correct_password_asks_for_a_totp_code_when_enrolled() {
    at(later(1))
        .given(enrolled())
        .when(UserAuthCommand::SubmitPassword {
            password: password(),
        })
        .then_expect_events(vec![attempt_opened(1, later(1), SecondFactor::Totp)]);
}

#[test]
fn a_wrong_password_is_recorded_as_a_failure() {
    at(later(1))
        .given(registered())
        .when(UserAuthCommand::SubmitPassword {
            password: wrong_password(),
        })
        .then_expect_events(vec![E::PasswordRejected { at: later(1) }]);
}

#[test]
fn an_unknown_account_answers_like_a_wrong_password_and_records_nothing() {
    at(t0())
        .given_no_previous_events()
        .when(UserAuthCommand::SubmitPassword {
            password: password(),
        })
        .then_expect_error(UserAuthError::InvalidCredentials);
}

#[test]
fn a_hash_made_with_old_parameters_is_rehashed_at_sign_in() {
    Framework::with(services_with(later(1), 2, 1))
        .given(registered())
        .when(UserAuthCommand::SubmitPassword {
            password: password(),
        })
        .then_expect_events(vec![
            E::PasswordRehashed {
                password_hash: sealed(
                    SealPurpose::PasswordHash,
                    format!("v2:{PASSWORD}").as_bytes(),
                ),
                at: later(1),
            },
            attempt_opened(1, later(1), SecondFactor::Enroll),
        ]);
}

// ---- throttling and locking ------------------------------------------------

fn failures(n: u32, now: DateTime<Utc>) -> Vec<UserAuthEvent> {
    (0..n).map(|_| E::PasswordRejected { at: now }).collect()
}

#[test]
fn the_fifth_consecutive_failure_makes_the_next_attempt_wait_thirty_seconds() {
    let mut given = registered();
    given.extend(failures(4, later(1)));
    at(later(1))
        .given(given)
        .when(UserAuthCommand::SubmitPassword {
            password: wrong_password(),
        })
        .then_expect_events(vec![
            E::PasswordRejected { at: later(1) },
            E::SignInThrottled {
                failures: 5,
                until: later(1) + Duration::seconds(30),
                at: later(1),
            },
        ]);
}

#[test]
fn each_further_failure_doubles_the_wait_up_to_an_hour() {
    let policy = policy();
    assert_eq!(policy.throttle_delay(4), None);
    assert_eq!(policy.throttle_delay(5), Some(Duration::seconds(30)));
    assert_eq!(policy.throttle_delay(6), Some(Duration::seconds(60)));
    assert_eq!(policy.throttle_delay(7), Some(Duration::seconds(120)));
    assert_eq!(policy.throttle_delay(12), Some(Duration::hours(1)));
    assert_eq!(policy.throttle_delay(99), Some(Duration::hours(1)));
}

#[test]
fn a_throttled_account_answers_a_correct_password_like_a_wrong_one() {
    let mut given = registered();
    given.push(E::SignInThrottled {
        failures: 5,
        until: later(1) + Duration::seconds(30),
        at: later(1),
    });
    at(later(1) + Duration::seconds(10))
        .given(given)
        .when(UserAuthCommand::SubmitPassword {
            password: password(),
        })
        .then_expect_error(UserAuthError::InvalidCredentials);
}

#[test]
fn the_wait_is_over_once_its_time_has_passed() {
    let mut given = registered();
    given.push(E::SignInThrottled {
        failures: 5,
        until: later(1) + Duration::seconds(30),
        at: later(1),
    });
    let events = events_of(
        at(later(2)),
        given,
        UserAuthCommand::SubmitPassword {
            password: password(),
        },
    );
    assert!(matches!(events.as_slice(), [E::PasswordVerified { .. }]));
}

#[test]
fn the_hundredth_consecutive_failure_locks_the_account() {
    let mut given = registered();
    given.extend(failures(99, later(1)));
    at(later(120))
        .given(given)
        .when(UserAuthCommand::SubmitPassword {
            password: wrong_password(),
        })
        .then_expect_events(vec![
            E::PasswordRejected { at: later(120) },
            E::AccountLocked {
                failures: 100,
                at: later(120),
            },
        ]);
}

#[test]
fn a_locked_account_answers_a_correct_password_like_a_wrong_one() {
    let mut given = registered();
    given.push(E::AccountLocked {
        failures: 100,
        at: later(1),
    });
    at(later(600))
        .given(given)
        .when(UserAuthCommand::SubmitPassword {
            password: password(),
        })
        .then_expect_error(UserAuthError::InvalidCredentials);
}

#[test]
fn a_correct_password_does_not_reset_the_failure_count() {
    let mut given = registered();
    given.extend(failures(4, later(1)));
    given.push(attempt_opened(7, later(2), SecondFactor::Enroll));
    at(later(2))
        .given(given)
        .when(UserAuthCommand::SubmitPassword {
            password: wrong_password(),
        })
        .then_expect_events(vec![
            E::PasswordRejected { at: later(2) },
            E::SignInThrottled {
                failures: 5,
                until: later(2) + Duration::seconds(30),
                at: later(2),
            },
        ]);
}

#[test]
fn a_completed_sign_in_resets_the_failure_count() {
    let mut given = enrolled();
    given.extend(failures(4, later(1)));
    given.push(session_started(8, SignInMethod::Totp, later(2)));
    at(later(3))
        .given(given)
        .when(UserAuthCommand::SubmitPassword {
            password: wrong_password(),
        })
        .then_expect_events(vec![E::PasswordRejected { at: later(3) }]);
}

#[test]
fn a_second_factor_while_throttled_says_when_to_retry() {
    let mut given = enrolled_with_attempt(later(1));
    let until = later(1) + Duration::seconds(30);
    given.push(E::SignInThrottled {
        failures: 5,
        until,
        at: later(1),
    });
    at(later(1))
        .given(given)
        .when(UserAuthCommand::SubmitTotp {
            attempt: reference(7),
            code: code_at(later(1)),
        })
        .then_expect_error(UserAuthError::Throttled { retry_after: until });
}

#[test]
fn an_admin_unlocks_a_locked_account() {
    let mut given = registered();
    given.push(E::AccountLocked {
        failures: 100,
        at: later(1),
    });
    at(later(2))
        .given(given)
        .when(UserAuthCommand::UnlockAccount {
            reason: AdminReason::parse("owner verified by phone").unwrap(),
        })
        .then_expect_events(vec![E::AccountUnlocked {
            reason: "owner verified by phone".into(),
            at: later(2),
        }]);
}

#[test]
fn unlocking_an_account_in_good_standing_is_refused() {
    at(later(2))
        .given(registered())
        .when(UserAuthCommand::UnlockAccount {
            reason: AdminReason::parse("why").unwrap(),
        })
        .then_expect_error(UserAuthError::NotLocked);
}

#[test]
fn after_an_unlock_a_correct_password_is_accepted_again() {
    let mut given = registered();
    given.extend([
        E::AccountLocked {
            failures: 100,
            at: later(1),
        },
        E::AccountUnlocked {
            reason: "verified".into(),
            at: later(2),
        },
    ]);
    let events = events_of(
        at(later(3)),
        given,
        UserAuthCommand::SubmitPassword {
            password: password(),
        },
    );
    assert!(matches!(events.as_slice(), [E::PasswordVerified { .. }]));
}

// ---- TOTP ------------------------------------------------------------------

#[test]
fn a_current_totp_code_starts_a_session() {
    let now = later(10);
    at(now)
        .given(enrolled_with_attempt(now))
        .when(UserAuthCommand::SubmitTotp {
            attempt: reference(7),
            code: code_at(now),
        })
        .then_expect_events(vec![
            E::TotpVerified {
                attempt: reference(7),
                step: step_at(now),
                at: now,
            },
            session_started(1, SignInMethod::Totp, now),
        ]);
}

#[test]
fn a_wrong_totp_code_is_recorded_as_a_failure() {
    let now = later(10);
    let wrong = code_for_step(step_at(now) + 5);
    at(now)
        .given(enrolled_with_attempt(now))
        .when(UserAuthCommand::SubmitTotp {
            attempt: reference(7),
            code: wrong,
        })
        .then_expect_events(vec![E::TotpRejected {
            attempt: reference(7),
            reason: TotpRejection::WrongCode,
            at: now,
        }]);
}

#[test]
fn codes_one_step_early_or_late_are_accepted() {
    let now = later(10);
    for step in [step_at(now) - 1, step_at(now) + 1] {
        let events = events_of(
            at(now),
            enrolled_with_attempt(now),
            UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_for_step(step),
            },
        );
        assert!(matches!(events[0], E::TotpVerified { step: s, .. } if s == step));
    }
}

#[test]
fn codes_two_steps_early_or_late_are_refused() {
    let now = later(10);
    for step in [step_at(now) - 2, step_at(now) + 2] {
        let events = events_of(
            at(now),
            enrolled_with_attempt(now),
            UserAuthCommand::SubmitTotp {
                attempt: reference(7),
                code: code_for_step(step),
            },
        );
        assert!(matches!(
            events[0],
            E::TotpRejected {
                reason: TotpRejection::WrongCode,
                ..
            }
        ));
    }
}

#[test]
fn second_use_of_the_same_time_step_is_refused() {
    let now = later(10);
    let mut given = enrolled_with_attempt(now);
    given.extend([
        E::TotpVerified {
            attempt: reference(7),
            step: step_at(now),
            at: now,
        },
        session_started(8, SignInMethod::Totp, now),
        attempt_opened(9, now, SecondFactor::Totp),
    ]);
    at(now)
        .given(given)
        .when(UserAuthCommand::SubmitTotp {
            attempt: reference(9),
            code: code_at(now),
        })
        .then_expect_events(vec![E::TotpRejected {
            attempt: reference(9),
            reason: TotpRejection::Replayed,
            at: now,
        }]);
}

#[test]
fn an_older_step_inside_the_window_is_refused_after_a_newer_one() {
    let now = later(10);
    let mut given = enrolled_with_attempt(now);
    given.extend([
        E::TotpVerified {
            attempt: reference(7),
            step: step_at(now),
            at: now,
        },
        session_started(8, SignInMethod::Totp, now),
        attempt_opened(9, now, SecondFactor::Totp),
    ]);
    let events = events_of(
        at(now),
        given,
        UserAuthCommand::SubmitTotp {
            attempt: reference(9),
            code: code_for_step(step_at(now) - 1),
        },
    );
    assert!(matches!(
        events[0],
        E::TotpRejected {
            reason: TotpRejection::Replayed,
            ..
        }
    ));
}

#[test]
fn the_enrollment_code_cannot_be_replayed_for_a_sign_in() {
    // enrolled() used the step of t0.
    let mut given = enrolled();
    given.push(attempt_opened(7, t0(), SecondFactor::Totp));
    let events = events_of(
        at(t0()),
        given,
        UserAuthCommand::SubmitTotp {
            attempt: reference(7),
            code: code_at(t0()),
        },
    );
    assert!(matches!(
        events[0],
        E::TotpRejected {
            reason: TotpRejection::Replayed,
            ..
        }
    ));
}

#[test]
fn an_expired_attempt_takes_no_second_factor() {
    let opened = later(10);
    let now = opened + Duration::minutes(5);
    at(now)
        .given(enrolled_with_attempt(opened))
        .when(UserAuthCommand::SubmitTotp {
            attempt: reference(7),
            code: code_at(now),
        })
        .then_expect_error(UserAuthError::LoginAttemptInvalid);
}

#[test]
fn an_attempt_ends_after_five_wrong_second_factors() {
    let now = later(10);
    let mut given = enrolled_with_attempt(now);
    given.extend((0..5).map(|_| E::TotpRejected {
        attempt: reference(7),
        reason: TotpRejection::WrongCode,
        at: now,
    }));
    given.push(E::AccountUnlocked {
        reason: "clears the throttle so only the attempt rule is tested".into(),
        at: now,
    });
    at(now)
        .given(given)
        .when(UserAuthCommand::SubmitTotp {
            attempt: reference(7),
            code: code_at(now),
        })
        .then_expect_error(UserAuthError::LoginAttemptInvalid);
}

#[test]
fn an_attempt_ends_once_a_session_starts() {
    let now = later(10);
    let mut given = enrolled_with_attempt(now);
    given.push(session_started(8, SignInMethod::Totp, now));
    at(now)
        .given(given)
        .when(UserAuthCommand::SubmitTotp {
            attempt: reference(7),
            code: code_for_step(step_at(now) + 1),
        })
        .then_expect_error(UserAuthError::LoginAttemptInvalid);
}

#[test]
fn an_unknown_attempt_takes_no_second_factor() {
    let now = later(10);
    at(now)
        .given(enrolled_with_attempt(now))
        .when(UserAuthCommand::SubmitTotp {
            attempt: reference(8),
            code: code_at(now),
        })
        .then_expect_error(UserAuthError::LoginAttemptInvalid);
}

#[test]
fn totp_without_an_authenticator_asks_for_enrollment() {
    let now = later(1);
    let mut given = registered();
    given.push(attempt_opened(7, now, SecondFactor::Enroll));
    at(now)
        .given(given)
        .when(UserAuthCommand::SubmitTotp {
            attempt: reference(7),
            code: code_at(now),
        })
        .then_expect_error(UserAuthError::EnrollmentRequired);
}

// ---- enrollment ------------------------------------------------------------

fn registered_with_attempt(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
    let mut events = registered();
    events.push(attempt_opened(7, now, SecondFactor::Enroll));
    events
}

fn enrollment_started(now: DateTime<Utc>) -> UserAuthEvent {
    E::MfaEnrollmentStarted {
        attempt: reference(7),
        secret: sealed(SealPurpose::TotpSecret, secret().expose()),
        at: now,
    }
}

#[test]
fn beginning_enrollment_records_the_sealed_secret() {
    let now = later(1);
    at(now)
        .given(registered_with_attempt(now))
        .when(UserAuthCommand::BeginEnrollment {
            attempt: reference(7),
            secret: secret(),
        })
        .then_expect_events(vec![enrollment_started(now)]);
}

#[test]
fn an_enrolled_account_cannot_enroll_another_authenticator_with_just_a_password() {
    let now = later(1);
    at(now)
        .given(enrolled_with_attempt(now))
        .when(UserAuthCommand::BeginEnrollment {
            attempt: reference(7),
            secret: secret(),
        })
        .then_expect_error(UserAuthError::AlreadyEnrolled);
}

#[test]
fn confirming_enrollment_with_a_right_code_enrolls_issues_a_recovery_code_and_signs_in() {
    let now = later(1);
    let mut given = registered_with_attempt(now);
    given.push(enrollment_started(now));
    at(now)
        .given(given)
        .when(UserAuthCommand::EnrollMfa {
            attempt: reference(7),
            code: code_at(now),
            recovery_code: recovery(2),
        })
        .then_expect_events(vec![
            E::MfaEnrolled {
                attempt: reference(7),
                step: step_at(now),
                at: now,
            },
            E::RecoveryCodeIssued {
                digest: digest(&recovery(2)),
                at: now,
            },
            session_started(1, SignInMethod::Enrollment, now),
        ]);
}

#[test]
fn confirming_enrollment_with_a_wrong_code_is_a_failure() {
    let now = later(1);
    let mut given = registered_with_attempt(now);
    given.push(enrollment_started(now));
    at(now)
        .given(given)
        .when(UserAuthCommand::EnrollMfa {
            attempt: reference(7),
            code: code_for_step(step_at(now) + 3),
            recovery_code: recovery(2),
        })
        .then_expect_events(vec![E::TotpRejected {
            attempt: reference(7),
            reason: TotpRejection::WrongCode,
            at: now,
        }]);
}

#[test]
fn confirming_without_beginning_enrollment_is_refused() {
    let now = later(1);
    at(now)
        .given(registered_with_attempt(now))
        .when(UserAuthCommand::EnrollMfa {
            attempt: reference(7),
            code: code_at(now),
            recovery_code: recovery(2),
        })
        .then_expect_error(UserAuthError::EnrollmentNotStarted);
}

#[test]
fn an_enrollment_begun_in_another_attempt_cannot_be_confirmed() {
    let now = later(1);
    let mut given = registered_with_attempt(now);
    given.push(enrollment_started(now));
    given.push(attempt_opened(8, now, SecondFactor::Enroll));
    at(now)
        .given(given)
        .when(UserAuthCommand::EnrollMfa {
            attempt: reference(8),
            code: code_at(now),
            recovery_code: recovery(2),
        })
        .then_expect_error(UserAuthError::EnrollmentNotStarted);
}

#[test]
fn the_pending_secret_is_shown_only_to_its_attempt_while_it_is_live() {
    let now = later(1);
    let policy = policy();
    let mut state = UserAuth::default();
    for event in registered_with_attempt(now) {
        cqrs_es::Aggregate::apply(&mut state, event);
    }
    cqrs_es::Aggregate::apply(&mut state, enrollment_started(now));
    let expected = sealed(SealPurpose::TotpSecret, secret().expose());
    assert_eq!(
        state.pending_enrollment_secret(&reference(7), now, &policy),
        Some(&expected)
    );
    assert_eq!(
        state.pending_enrollment_secret(&reference(8), now, &policy),
        None
    );
    let expired = now + policy.login_attempt_ttl;
    assert_eq!(
        state.pending_enrollment_secret(&reference(7), expired, &policy),
        None
    );
}

// ---- recovery code ---------------------------------------------------------

#[test]
fn the_recovery_code_signs_in_and_is_replaced() {
    let now = later(10);
    at(now)
        .given(enrolled_with_attempt(now))
        .when(UserAuthCommand::UseRecoveryCode {
            attempt: reference(7),
            code: recovery(1),
            replacement: recovery(2),
        })
        .then_expect_events(vec![
            E::RecoveryCodeUsed {
                attempt: reference(7),
                at: now,
            },
            E::RecoveryCodeIssued {
                digest: digest(&recovery(2)),
                at: now,
            },
            session_started(1, SignInMethod::RecoveryCode, now),
        ]);
}

#[test]
fn a_spent_recovery_code_is_refused() {
    let now = later(10);
    let mut given = enrolled_with_attempt(now);
    given.extend([
        E::RecoveryCodeUsed {
            attempt: reference(7),
            at: now,
        },
        E::RecoveryCodeIssued {
            digest: digest(&recovery(2)),
            at: now,
        },
        session_started(8, SignInMethod::RecoveryCode, now),
        attempt_opened(9, now, SecondFactor::Totp),
    ]);
    at(now)
        .given(given)
        .when(UserAuthCommand::UseRecoveryCode {
            attempt: reference(9),
            code: recovery(1),
            replacement: recovery(3),
        })
        .then_expect_events(vec![E::RecoveryCodeRejected {
            attempt: reference(9),
            at: now,
        }]);
}

// ---- email link ------------------------------------------------------------

fn link_requested(link: u64, attempt: u64, now: DateTime<Utc>) -> UserAuthEvent {
    E::EmailLinkRequested {
        link: reference(link),
        attempt: reference(attempt),
        expires_at: now + Duration::minutes(15),
        at: now,
    }
}

#[test]
fn requesting_an_email_link_records_it_bound_to_the_attempt() {
    let now = later(10);
    at(now)
        .given(enrolled_with_attempt(now))
        .when(UserAuthCommand::RequestEmailLink {
            attempt: reference(7),
        })
        .then_expect_events(vec![link_requested(1, 7, now)]);
}

#[test]
fn a_fourth_link_within_fifteen_minutes_is_silently_not_sent() {
    let now = later(10);
    let mut given = enrolled_with_attempt(now);
    given.extend([
        link_requested(11, 7, now),
        link_requested(12, 7, now),
        link_requested(13, 7, now),
    ]);
    let when = now + Duration::minutes(14);
    given.push(attempt_opened(8, when, SecondFactor::Totp));
    at(when)
        .given(given.clone())
        .when(UserAuthCommand::RequestEmailLink {
            attempt: reference(8),
        })
        .then_expect_events(vec![]);
    // Fifteen minutes after the first, a link can be sent again.
    let events = events_of(
        at(now + Duration::minutes(15)),
        given,
        UserAuthCommand::RequestEmailLink {
            attempt: reference(8),
        },
    );
    assert!(matches!(events.as_slice(), [E::EmailLinkRequested { .. }]));
}

#[test]
fn an_email_link_cannot_stand_in_for_enrollment() {
    let now = later(1);
    at(now)
        .given(registered_with_attempt(now))
        .when(UserAuthCommand::RequestEmailLink {
            attempt: reference(7),
        })
        .then_expect_error(UserAuthError::EnrollmentRequired);
}

#[test]
fn opening_the_link_signs_in_with_assurance_level_one() {
    let now = later(10);
    let mut given = enrolled_with_attempt(now);
    given.push(link_requested(11, 7, now));
    at(now + Duration::minutes(10))
        .given(given)
        .when(UserAuthCommand::UseEmailLink {
            link: reference(11),
        })
        .then_expect_events(vec![
            E::EmailLinkUsed {
                link: reference(11),
                at: now + Duration::minutes(10),
            },
            session_started(1, SignInMethod::EmailLink, now + Duration::minutes(10)),
        ]);
}

#[test]
fn an_expired_link_is_refused() {
    let now = later(10);
    let mut given = enrolled_with_attempt(now);
    given.push(link_requested(11, 7, now));
    at(now + Duration::minutes(15))
        .given(given)
        .when(UserAuthCommand::UseEmailLink {
            link: reference(11),
        })
        .then_expect_error(UserAuthError::EmailLinkInvalid);
}

#[test]
fn a_spent_link_is_refused() {
    let now = later(10);
    let mut given = enrolled_with_attempt(now);
    given.extend([
        link_requested(11, 7, now),
        E::EmailLinkUsed {
            link: reference(11),
            at: now,
        },
        session_started(8, SignInMethod::EmailLink, now),
    ]);
    at(now)
        .given(given)
        .when(UserAuthCommand::UseEmailLink {
            link: reference(11),
        })
        .then_expect_error(UserAuthError::EmailLinkInvalid);
}

#[test]
fn a_newer_link_voids_older_ones() {
    let now = later(10);
    let mut given = enrolled_with_attempt(now);
    given.extend([link_requested(11, 7, now), link_requested(12, 7, now)]);
    at(now)
        .given(given)
        .when(UserAuthCommand::UseEmailLink {
            link: reference(11),
        })
        .then_expect_error(UserAuthError::EmailLinkInvalid);
}

#[test]
fn a_link_from_an_earlier_attempt_is_refused() {
    let now = later(10);
    let mut given = enrolled_with_attempt(now);
    given.extend([
        link_requested(11, 7, now),
        attempt_opened(8, now, SecondFactor::Totp),
    ]);
    at(now)
        .given(given)
        .when(UserAuthCommand::UseEmailLink {
            link: reference(11),
        })
        .then_expect_error(UserAuthError::EmailLinkInvalid);
}

// ---- sessions, logout, reset -----------------------------------------------

/// Enrolled, signed in with session 8 at `now`.
fn signed_in(now: DateTime<Utc>) -> Vec<UserAuthEvent> {
    let mut events = enrolled();
    events.push(session_started(8, SignInMethod::Totp, now));
    events
}

#[test]
fn logout_ends_the_session() {
    let now = later(10);
    at(now)
        .given(signed_in(now))
        .when(UserAuthCommand::Logout {
            session: reference(8),
        })
        .then_expect_events(vec![E::SessionEnded {
            session: reference(8),
            reason: SessionEndReason::Logout,
            at: now,
        }]);
}

#[test]
fn an_ended_session_cannot_log_out_again() {
    let now = later(10);
    let mut given = signed_in(now);
    given.push(E::SessionEnded {
        session: reference(8),
        reason: SessionEndReason::Logout,
        at: now,
    });
    at(now)
        .given(given)
        .when(UserAuthCommand::Logout {
            session: reference(8),
        })
        .then_expect_error(UserAuthError::SessionInvalid);
}

#[test]
fn a_session_idle_for_an_hour_is_over() {
    at(later(10) + Duration::hours(1))
        .given(signed_in(later(10)))
        .when(UserAuthCommand::Logout {
            session: reference(8),
        })
        .then_expect_error(UserAuthError::SessionInvalid);
}

#[test]
fn activity_keeps_a_session_alive_but_not_past_twelve_hours() {
    let start = later(10);
    let mut given = signed_in(start);
    given.extend((1..12).map(|h| E::SessionActive {
        session: reference(8),
        at: start + Duration::hours(h),
    }));
    let state = given.into_iter().fold(UserAuth::default(), |mut s, e| {
        s.apply_event(e);
        s
    });
    let policy = policy();
    assert!(state
        .live_session(
            &reference(8),
            start + Duration::minutes(11 * 60 + 30),
            &policy
        )
        .is_some());
    assert!(state
        .live_session(&reference(8), start + Duration::hours(12), &policy)
        .is_none());
}

fn folded(events: Vec<UserAuthEvent>) -> UserAuth {
    events
        .into_iter()
        .fold(UserAuth::default(), |mut state, event| {
            state.apply_event(event);
            state
        })
}

#[test]
fn a_session_idles_out_an_hour_after_its_last_activity_but_never_past_twelve_hours() {
    let start = later(10);
    let mut given = signed_in(start);
    given.push(E::SessionActive {
        session: reference(8),
        at: start + Duration::minutes(30),
    });
    let state = folded(given.clone());
    let session = state
        .live_session(&reference(8), start + Duration::minutes(31), &policy())
        .unwrap();
    assert_eq!(
        session.idle_expires_at(&policy()),
        start + Duration::minutes(90)
    );
    given.push(E::SessionActive {
        session: reference(8),
        at: start + Duration::minutes(11 * 60 + 30),
    });
    let state = folded(given);
    let session = state
        .live_session(
            &reference(8),
            start + Duration::minutes(11 * 60 + 31),
            &policy(),
        )
        .unwrap();
    assert_eq!(
        session.idle_expires_at(&policy()),
        start + Duration::hours(12)
    );
}

#[test]
fn a_session_needs_the_password_again_once_fifteen_minutes_have_passed_since_it_started() {
    let start = later(10);
    let state = folded(signed_in(start));
    let policy = policy();
    let fresh = start + Duration::minutes(15);
    let stale = start + Duration::minutes(16);
    assert!(!state.reauthentication_required(&reference(8), fresh, &policy));
    assert!(state.reauthentication_required(&reference(8), stale, &policy));
    assert!(
        state.reauthentication_required(&reference(99), fresh, &policy),
        "an unknown session proves nothing"
    );
}

#[test]
fn touching_a_session_records_activity_only_when_the_last_is_stale() {
    let start = later(10);
    at(start + Duration::minutes(4))
        .given(signed_in(start))
        .when(UserAuthCommand::TouchSession {
            session: reference(8),
        })
        .then_expect_events(vec![]);
    at(start + Duration::minutes(6))
        .given(signed_in(start))
        .when(UserAuthCommand::TouchSession {
            session: reference(8),
        })
        .then_expect_events(vec![E::SessionActive {
            session: reference(8),
            at: start + Duration::minutes(6),
        }]);
}

#[test]
fn resetting_mfa_in_a_fresh_session_forgets_the_authenticator_and_ends_every_session() {
    let now = later(10);
    let mut given = signed_in(now);
    given.push(session_started(9, SignInMethod::Totp, now));
    at(now + Duration::minutes(14))
        .given(given)
        .when(UserAuthCommand::ResetMfa {
            session: reference(8),
            password: None,
        })
        .then_expect_events(vec![
            E::MfaReset {
                actor: Actor::User,
                reason: None,
                at: now + Duration::minutes(14),
            },
            E::SessionEnded {
                session: reference(8),
                reason: SessionEndReason::MfaReset,
                at: now + Duration::minutes(14),
            },
            E::SessionEnded {
                session: reference(9),
                reason: SessionEndReason::MfaReset,
                at: now + Duration::minutes(14),
            },
        ]);
}

#[test]
fn resetting_mfa_without_a_fresh_session_or_the_password_is_refused() {
    let now = later(10);
    let mut given = signed_in(now);
    given.push(E::SessionActive {
        session: reference(8),
        at: now + Duration::minutes(20),
    });
    at(now + Duration::minutes(20))
        .given(given)
        .when(UserAuthCommand::ResetMfa {
            session: reference(8),
            password: None,
        })
        .then_expect_error(UserAuthError::ReauthenticationRequired);
}

#[test]
fn resetting_mfa_in_an_old_session_works_with_the_password() {
    let now = later(10);
    let when = now + Duration::minutes(20);
    let mut given = signed_in(now);
    given.push(E::SessionActive {
        session: reference(8),
        at: when,
    });
    let events = events_of(
        at(when),
        given,
        UserAuthCommand::ResetMfa {
            session: reference(8),
            password: Some(password()),
        },
    );
    assert!(matches!(
        events.as_slice(),
        [E::MfaReset { .. }, E::SessionEnded { .. }]
    ));
}

#[test]
fn a_wrong_password_at_reset_is_a_failure_and_resets_nothing() {
    let now = later(10);
    let when = now + Duration::minutes(20);
    let mut given = signed_in(now);
    given.push(E::SessionActive {
        session: reference(8),
        at: when,
    });
    at(when)
        .given(given)
        .when(UserAuthCommand::ResetMfa {
            session: reference(8),
            password: Some(wrong_password()),
        })
        .then_expect_events(vec![E::PasswordRejected { at: when }]);
}

#[test]
fn after_a_reset_the_next_sign_in_must_enroll() {
    let now = later(10);
    let mut given = signed_in(now);
    given.push(E::MfaReset {
        actor: Actor::User,
        reason: None,
        at: now,
    });
    at(now)
        .given(given)
        .when(UserAuthCommand::SubmitPassword {
            password: password(),
        })
        .then_expect_events(vec![attempt_opened(1, now, SecondFactor::Enroll)]);
}

#[test]
fn after_a_reset_the_old_recovery_code_is_gone() {
    let now = later(10);
    let mut given = signed_in(now);
    given.extend([
        E::MfaReset {
            actor: Actor::User,
            reason: None,
            at: now,
        },
        attempt_opened(9, now, SecondFactor::Enroll),
    ]);
    at(now)
        .given(given)
        .when(UserAuthCommand::UseRecoveryCode {
            attempt: reference(9),
            code: recovery(1),
            replacement: recovery(2),
        })
        .then_expect_error(UserAuthError::EnrollmentRequired);
}

#[test]
fn an_admin_reset_records_the_reason_and_ends_every_session() {
    let now = later(10);
    let when = now + Duration::minutes(30);
    at(when)
        .given(signed_in(now))
        .when(UserAuthCommand::AdminResetMfa {
            reason: AdminReason::parse("lost phone, identity checked").unwrap(),
        })
        .then_expect_events(vec![
            E::MfaReset {
                actor: Actor::Admin,
                reason: Some("lost phone, identity checked".into()),
                at: when,
            },
            E::SessionEnded {
                session: reference(8),
                reason: SessionEndReason::MfaReset,
                at: when,
            },
        ]);
}

#[test]
fn admin_commands_on_an_unknown_user_are_refused() {
    at(t0())
        .given_no_previous_events()
        .when(UserAuthCommand::AdminResetMfa {
            reason: AdminReason::parse("x").unwrap(),
        })
        .then_expect_error(UserAuthError::UnknownUser);
}

#[test]
fn the_user_id_is_derived_from_the_email() {
    let events = registered();
    let E::UserRegistered { user_id, .. } = &events[0] else {
        panic!("expected a registration");
    };
    assert_eq!(*user_id, email().user_id());
    assert_ne!(*user_id, Uuid::nil());
}

// ---- the auditor's view ----------------------------------------------------

#[test]
fn the_audit_state_judges_throttles_and_sessions_at_the_instant_asked() {
    let now = later(10);
    let mut events = signed_in(now);
    events.push(E::SignInThrottled {
        failures: 5,
        until: now + Duration::seconds(30),
        at: now,
    });
    let state = events.into_iter().fold(UserAuth::default(), |mut s, e| {
        s.apply_event(e);
        s
    });
    let policy = policy();
    let inside = state.audit_state(now + Duration::seconds(10), &policy);
    assert_eq!(inside.throttled_until, Some(now + Duration::seconds(30)));
    assert_eq!(inside.live_sessions.len(), 1);
    assert!(inside.enrolled_at.is_some() && inside.recovery_code_present);
    let later_on = state.audit_state(now + Duration::hours(2), &policy);
    assert_eq!(later_on.throttled_until, None);
    assert!(later_on.live_sessions.is_empty(), "idle for an hour");
}
