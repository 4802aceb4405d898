//! The email pipeline: events → relay → RabbitMQ → worker → SMTP (MailDev).
use std::sync::Arc;

use authledger::app::Caller;
use authledger::command_bus::{CommandBus, CommandMetadata};
use authledger::services::{Argon2Hasher, HashingQueue, OsRandomness};
use authledger::tokens::TokenKind;
use authledger_aggregates::{
    code_at_step, time_step, Clock, NewPassword, Password, RecoveryCode, Reference, TotpCode,
    TotpSecret, UserAuthCommand, UserAuthEvent, UserAuthServices, Verdict, RECOVERY_CODE_BYTES,
    TOTP_SECRET_BYTES,
};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::*;

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn try_another_method_email_mails_a_link_that_signs_in_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let login = app.password_step(&user.email).await;
    let requested = app
        .post(
            "/v1/login/email-link",
            json!({"login_token": login["login_token"]}),
        )
        .await;
    assert_eq!(requested.status(), StatusCode::ACCEPTED);
    app.deliver_mail().await;

    let mails = wait_for_mails(&user.email, 2).await;
    let link_mails: Vec<&Value> = mails
        .iter()
        .filter(|m| m["subject"] == "Your sign-in link")
        .collect();
    assert_eq!(link_mails.len(), 1, "{mails:#?}");
    let link = link_in(link_mails[0]);
    assert!(
        link.starts_with("http://localhost:8080/v1/login/email-link?token=al_link_"),
        "{link}"
    );
    assert!(link_mails[0]["html"].as_str().unwrap().contains("al_link_"));

    // The mailed link, opened in a browser: the page, then its form.
    let path = link.trim_start_matches("http://localhost:8080");
    let page = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let token = link.split("token=").nth(1).unwrap();
    assert!(html.contains(token));
    let redeemed = app
        .post("/v1/login/email-link/redeem", json!({"token": token}))
        .await;
    assert_eq!(redeemed.status(), StatusCode::OK);
    let session: Value = redeemed.json().await.unwrap();
    let me: Value = app
        .me(session["session_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["session"]["method"], "email_link");

    let again = app
        .post("/v1/login/email-link/redeem", json!({"token": token}))
        .await;
    assert_problem(again, StatusCode::GONE, "email-link-invalid").await;
    app.remove_topology().await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_second_mailed_link_voids_the_first(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = app.signed_up().await;
    let login = app.password_step(&user.email).await;
    for _ in 0..2 {
        app.post(
            "/v1/login/email-link",
            json!({"login_token": login["login_token"]}),
        )
        .await;
    }
    app.deliver_mail().await;
    let links: Vec<String> = wait_for_mails(&user.email, 3)
        .await
        .iter()
        .filter(|m| m["subject"] == "Your sign-in link")
        .map(link_in)
        .collect();
    assert_eq!(links.len(), 2);
    let token = |link: &String| link.split("token=").nth(1).unwrap().to_owned();
    let tokens: Vec<String> = links.iter().map(token).collect();
    // MailDev lists in arrival order; either way exactly one of them works.
    let first = app
        .post("/v1/login/email-link/redeem", json!({"token": tokens[0]}))
        .await
        .status();
    let second = app
        .post("/v1/login/email-link/redeem", json!({"token": tokens[1]}))
        .await
        .status();
    let mut statuses = [first, second];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::GONE]);
    app.remove_topology().await;
}

// The mails of account recovery. The tests below run the rules through a
// command bus on the server's database, key and clock rather than through
// the routes, so what they check is the mail: the event's reference in a
// token of the right kind, behind the right page, with the right words.

/// Where the commands below come from. The browser's name tries to put a
/// link of its own into the mails.
const CLIENT_IP: &str = "203.0.113.7";
const HOSTILE_AGENT: &str =
    "Mozilla/5.0 <a href=\"https://evil.example/cancel\">Cancel here</a> https://evil.example/x";

fn caller() -> CommandMetadata {
    CommandMetadata {
        request_id: "mail-test".into(),
        client_request_id: None,
        client_ip: CLIENT_IP.into(),
        user_agent: HOSTILE_AGENT.into(),
        actor: "user".into(),
    }
}

/// The server's rules over the test's database, with its key and clock.
fn bus_of(app: &TestApp) -> CommandBus {
    let hashing = &app.config.hashing;
    let keyring = Arc::new(
        app.config
            .keyring(authledger::config::DevKey::MustExist)
            .unwrap(),
    );
    let services = UserAuthServices {
        clock: app.clock.clone(),
        randomness: Arc::new(OsRandomness),
        hasher: Arc::new(
            Argon2Hasher::new(
                hashing.argon2_memory_kib,
                hashing.argon2_iterations,
                hashing.argon2_parallelism,
                HashingQueue::new(1, hashing.hashing_queue_max),
            )
            .unwrap(),
        ),
        keeper: keyring.clone(),
        policy: app.config.policy(),
    };
    CommandBus::new(
        app.pool.clone(),
        services,
        keyring,
        app.config.snapshot_every,
        Default::default(),
        Default::default(),
    )
}

async fn run(bus: &CommandBus, user: Uuid, command: UserAuthCommand) -> Verdict {
    bus.execute(user, command, &caller()).await.unwrap().verdict
}

/// Registers through the use case, from the hostile browser: the address
/// is claimed as a real registration claims it.
async fn register(app: &TestApp, email: &str, password: &str) -> Uuid {
    let caller = Caller {
        request_id: "mail-test".into(),
        client_request_id: None,
        client_ip: CLIENT_IP.into(),
        user_agent: HOSTILE_AGENT.into(),
    };
    app.app.register(&caller, email, password).await.unwrap();
    app.user_id(email).await
}

/// A registered account whose address is confirmed (through the event's
/// reference, not the mail).
async fn verified_account(app: &TestApp, bus: &CommandBus) -> (String, Uuid) {
    let pool = &app.pool;
    let email = unique_email();
    let user = register(app, &email, PASSWORD).await;
    let link = stream_of(pool, user)
        .await
        .into_iter()
        .find_map(|event| match event {
            UserAuthEvent::EmailVerificationRequested { link, .. } => Some(link),
            _ => None,
        })
        .unwrap();
    let password = Password::parse(PASSWORD).unwrap();
    let verdict = run(bus, user, UserAuthCommand::VerifyEmail { link, password }).await;
    assert_eq!(verdict, Verdict::EmailVerified);
    (email, user)
}

/// A session started by enrolling an authenticator: `aal2`, and recent.
async fn enrolled_session(bus: &CommandBus, app: &TestApp, user: Uuid) -> Reference {
    let password = Password::parse(PASSWORD).unwrap();
    let Verdict::AttemptOpened { attempt, .. } = run(
        bus,
        user,
        UserAuthCommand::SubmitPassword {
            password,
            device: None,
        },
    )
    .await
    else {
        panic!("the password step opens an attempt");
    };
    let secret = TotpSecret::from_bytes([7; TOTP_SECRET_BYTES]);
    let begin = UserAuthCommand::BeginEnrollment {
        attempt,
        secret: secret.clone(),
    };
    run(bus, user, begin).await;
    let now = u64::try_from(app.clock.now().timestamp()).unwrap();
    let code = TotpCode::parse(&code_at_step(&secret, time_step(now))).unwrap();
    let enroll = UserAuthCommand::EnrollMfa {
        attempt,
        authenticator: authledger_aggregates::AuthenticatorId(uuid::Uuid::new_v4()),
        code,
        recovery_code: RecoveryCode::from_random([3; RECOVERY_CODE_BYTES]),
    };
    let Verdict::SessionStarted(started) = run(bus, user, enroll).await else {
        panic!("enrolling signs in");
    };
    started.session
}

/// Every event of `user`, in order.
async fn stream_of(pool: &PgPool, user: Uuid) -> Vec<UserAuthEvent> {
    let payloads: Vec<sqlx::types::Json<UserAuthEvent>> =
        sqlx::query_scalar("SELECT payload FROM events WHERE aggregate_id = $1 ORDER BY sequence")
            .bind(user.to_string())
            .fetch_all(pool)
            .await
            .unwrap();
    payloads.into_iter().map(|payload| payload.0).collect()
}

/// The one mail to `address` with `subject`, once it has arrived.
async fn mail_with_subject(address: &str, subject: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let found: Vec<Value> = mails_to(address)
            .await
            .into_iter()
            .filter(|mail| mail["subject"] == subject)
            .collect();
        match found.len() {
            1 => return found.into_iter().next().unwrap(),
            0 if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            n => panic!("{n} mails {subject:?} to {address}"),
        }
    }
}

/// The token of the link to `path` in a mail's text, after checking that
/// the HTML shows that same link, and no other.
fn token_in(app: &TestApp, mail: &Value, path: &str) -> String {
    let text = mail["text"].as_str().unwrap();
    let html = mail["html"].as_str().unwrap();
    let prefix = format!("{}{path}?token=", app.config.public_url);
    let links: Vec<&str> = text
        .split_whitespace()
        .filter(|word| word.contains("://"))
        .collect();
    assert_eq!(links.len(), 1, "one link, the mail's own: {text}");
    let token = links[0]
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{}", links[0]));
    // The HTML's one anchor is a button to the same link, whose address
    // is written out below it.
    assert_eq!(html.matches("<a ").count(), 1, "{html}");
    assert!(
        html.contains(&format!("<a href=\"{}\" ", links[0])),
        "{html}"
    );
    assert_eq!(html.matches(links[0]).count(), 2, "{html}");
    assert!(
        !text.contains("evil.example") && !html.contains("evil.example"),
        "{html}"
    );
    assert!(
        text.contains(&format!("from IP address {CLIENT_IP}")),
        "{text}"
    );
    token.to_owned()
}

/// `token` decodes as `kind`, to `user` and `reference`, and as no other
/// kind of link.
fn assert_token(app: &TestApp, kind: TokenKind, token: &str, user: Uuid, reference: Reference) {
    assert_eq!(app.tokens.decode(kind, token), Ok((user, reference)));
    for other in [
        TokenKind::EmailLink,
        TokenKind::EmailVerification,
        TokenKind::PasswordReset,
        TokenKind::ResetDenial,
        TokenKind::Session,
        TokenKind::LoginAttempt,
    ] {
        if other != kind {
            assert!(
                app.tokens.decode(other, token).is_err(),
                "{kind:?} as {other:?}"
            );
        }
    }
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_registration_mails_a_verification_link_that_confirms_the_address(pool: PgPool) {
    let app = spawn_app(pool).await;
    let bus = bus_of(&app);
    let email = unique_email();
    let user = register(&app, &email, PASSWORD).await;
    app.deliver_mail().await;

    let mail = mail_with_subject(&email, "Confirm your email address").await;
    let token = token_in(&app, &mail, "/v1/users/verify");
    assert!(token.starts_with("al_verify_"), "{token}");
    assert_eq!(
        token,
        app.newest_link(
            &email,
            "EmailVerificationRequested",
            TokenKind::EmailVerification
        )
        .await
    );
    let Some(UserAuthEvent::EmailVerificationRequested { link, .. }) =
        stream_of(&app.pool, user).await.into_iter().nth(1)
    else {
        panic!("a registration asks for verification");
    };
    assert_token(&app, TokenKind::EmailVerification, &token, user, link);
    let (_, reference) = app
        .tokens
        .decode(TokenKind::EmailVerification, &token)
        .unwrap();
    let verdict = run(
        &bus,
        user,
        UserAuthCommand::VerifyEmail {
            link: reference,
            password: Password::parse(PASSWORD).unwrap(),
        },
    )
    .await;
    assert_eq!(verdict, Verdict::EmailVerified);
    assert!(mail["text"]
        .as_str()
        .unwrap()
        .contains("If you did not create an account, ignore this mail."));
    app.remove_topology().await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn registering_a_confirmed_address_again_tells_its_owner(pool: PgPool) {
    let app = spawn_app(pool).await;
    let bus = bus_of(&app);
    let (email, user) = verified_account(&app, &bus).await;
    assert_eq!(
        register(&app, &email, "another password entirely 7").await,
        user
    );
    app.deliver_mail().await;

    let mail = mail_with_subject(&email, "Someone tried to register with your address").await;
    let text = mail["text"].as_str().unwrap();
    for words in [
        "nothing was created and nothing changed",
        "\"Forgot password?\"",
        "If this was not you",
    ] {
        assert!(text.contains(words), "{words:?} in {text}");
    }
    assert!(
        text.contains(&format!("from IP address {CLIENT_IP}")),
        "{text}"
    );
    assert!(!text.contains("://"), "{text}");
    assert!(!mail["html"].as_str().unwrap().contains("<a "));
    app.remove_topology().await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn forgot_password_mails_a_reset_link_and_its_use_a_notice(pool: PgPool) {
    let app = spawn_app(pool).await;
    let bus = bus_of(&app);
    let (email, user) = verified_account(&app, &bus).await;
    // Only an account with an authenticator resets its password by mail.
    enrolled_session(&bus, &app, user).await;
    let verdict = run(&bus, user, UserAuthCommand::RequestPasswordReset).await;
    assert_eq!(verdict, Verdict::PasswordResetRequested { mailed: true });
    app.deliver_mail().await;

    let mail = mail_with_subject(&email, "Reset your password").await;
    let token = token_in(&app, &mail, "/v1/password/reset");
    let link = stream_of(&app.pool, user)
        .await
        .into_iter()
        .find_map(|event| match event {
            UserAuthEvent::PasswordResetRequested { link, .. } => Some(link),
            _ => None,
        })
        .unwrap();
    assert_token(&app, TokenKind::PasswordReset, &token, user, link);
    assert!(mail["text"]
        .as_str()
        .unwrap()
        .contains("If this was not you, ignore this mail: your password is unchanged."));

    let (_, reference) = app.tokens.decode(TokenKind::PasswordReset, &token).unwrap();
    let reset = UserAuthCommand::ResetPassword {
        link: reference,
        password: NewPassword::parse("a brand new passphrase 19", &[]).unwrap(),
    };
    assert!(matches!(
        run(&bus, user, reset).await,
        Verdict::PasswordReset { .. }
    ));
    app.deliver_mail().await;
    let notice = mail_with_subject(&email, "Your password was reset").await;
    let text = notice["text"].as_str().unwrap();
    for words in [
        "reset with a link mailed to this address",
        "every session was signed out",
        "Signing in with an email link is off until your next sign-in with your authenticator or recovery code.",
        "tell your administrator",
    ] {
        assert!(text.contains(words), "{words:?} in {text}");
    }
    assert!(
        !text.contains("al_reset_") && !text.contains("://"),
        "{text}"
    );
    app.remove_topology().await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_changed_password_is_told_to_the_owner(pool: PgPool) {
    let app = spawn_app(pool).await;
    let bus = bus_of(&app);
    let (email, user) = verified_account(&app, &bus).await;
    let session = enrolled_session(&bus, &app, user).await;
    let change = UserAuthCommand::ChangePassword {
        session,
        current: None,
        new: NewPassword::parse("a brand new passphrase 19", &[]).unwrap(),
    };
    assert!(matches!(
        run(&bus, user, change).await,
        Verdict::PasswordChanged { .. }
    ));
    app.deliver_mail().await;

    let mail = mail_with_subject(&email, "Your password was changed").await;
    let text = mail["text"].as_str().unwrap();
    for words in [
        "Every other session was signed out.",
        "If this was not you, someone had a session of yours: reset your password",
        "Reset your multi-factor authentication only if your authenticator itself is lost.",
        &format!("from IP address {CLIENT_IP}"),
    ] {
        assert!(text.contains(words), "{words:?} in {text}");
    }
    assert!(!mail["html"].as_str().unwrap().contains("<a "));
    app.remove_topology().await;
}

/// A session started with a mailed sign-in link: `aal1`, and recent.
async fn email_link_session(bus: &CommandBus, pool: &PgPool, user: Uuid) -> Reference {
    let password = Password::parse(PASSWORD).unwrap();
    let Verdict::AttemptOpened { attempt, .. } = run(
        bus,
        user,
        UserAuthCommand::SubmitPassword {
            password,
            device: None,
        },
    )
    .await
    else {
        panic!("the password step opens an attempt");
    };
    run(bus, user, UserAuthCommand::RequestEmailLink { attempt }).await;
    let link = stream_of(pool, user)
        .await
        .into_iter()
        .rev()
        .find_map(|event| match event {
            UserAuthEvent::EmailLinkRequested { link, .. } => Some(link),
            _ => None,
        })
        .unwrap();
    let Verdict::SessionStarted(started) =
        run(bus, user, UserAuthCommand::UseEmailLink { link }).await
    else {
        panic!("the link signs in");
    };
    started.session
}

/// An enrolled account that asked for an MFA reset from a session signed
/// in by email link; answers when the reset takes effect.
async fn waiting_reset(bus: &CommandBus, app: &TestApp) -> (String, Uuid, DateTime<Utc>) {
    let (email, user) = verified_account(app, bus).await;
    enrolled_session(bus, app, user).await;
    let session = email_link_session(bus, &app.pool, user).await;
    let reset = UserAuthCommand::ResetMfa {
        session,
        password: None,
    };
    let Verdict::MfaResetPending { effective_at } = run(bus, user, reset).await else {
        panic!("a reset from an aal1 session waits");
    };
    (email, user, effective_at)
}

const RESET_REQUESTED: &str = "A reset of your multi-factor authentication was requested";

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_waiting_mfa_reset_mails_a_denial_link_that_calls_it_off(pool: PgPool) {
    let app = spawn_app(pool).await;
    let bus = bus_of(&app);
    let (email, user, effective_at) = waiting_reset(&bus, &app).await;
    app.deliver_mail().await;

    let mail = mail_with_subject(&email, RESET_REQUESTED).await;
    let token = token_in(&app, &mail, "/v1/mfa-reset/deny");
    assert!(token.starts_with("al_deny_"), "{token}");
    let denial = stream_of(&app.pool, user)
        .await
        .into_iter()
        .find_map(|event| match event {
            UserAuthEvent::MfaResetRequested { denial, .. } => Some(denial),
            _ => None,
        })
        .unwrap();
    assert_token(&app, TokenKind::ResetDenial, &token, user, denial);
    let text = mail["text"].as_str().unwrap();
    let effective = effective_at.format("%Y-%m-%d %H:%M UTC").to_string();
    for words in [
        "from a session signed in with an email link",
        &format!("It takes effect at {effective}"),
        "open this link before then to cancel the reset and sign out every session",
        "A sign-in with your authenticator app or recovery code cancels it too.",
    ] {
        assert!(text.contains(words), "{words:?} in {text}");
    }

    let (_, reference) = app.tokens.decode(TokenKind::ResetDenial, &token).unwrap();
    let deny = UserAuthCommand::DenyMfaReset { link: reference };
    assert!(matches!(
        run(&bus, user, deny).await,
        Verdict::MfaResetCancelled { sessions_ended: 2 }
    ));
    app.deliver_mail().await;
    let notice = mail_with_subject(
        &email,
        "The reset of your multi-factor authentication was cancelled",
    )
    .await;
    let text = notice["text"].as_str().unwrap();
    assert!(
        text.contains(
            "the link in the mail that announced it was opened, and every session was signed out"
        ),
        "{text}"
    );
    assert!(
        !text.contains("al_deny_") && !text.contains("://"),
        "{text}"
    );
    app.remove_topology().await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_waiting_mfa_reset_that_takes_effect_is_told_as_a_reset(pool: PgPool) {
    let app = spawn_app(pool).await;
    let bus = bus_of(&app);
    let (email, _, effective_at) = waiting_reset(&bus, &app).await;
    app.deliver_mail().await;
    mail_with_subject(&email, RESET_REQUESTED).await;

    app.clock.advance(effective_at - app.clock.now());
    // The sweep finds waiting resets in the audit index.
    while projection_lag(&app.pool, "audit_index").await > 0 {
        app.pipeline.audit_index.catch_up().await.unwrap();
    }
    assert_eq!(app.app.complete_due_mfa_resets().await.unwrap(), 1);
    app.deliver_mail().await;
    let mail = mail_with_subject(&email, "Your multi-factor authentication was reset").await;
    let text = mail["text"].as_str().unwrap();
    assert!(
        text.contains("the next sign-in sets up a new authenticator"),
        "{text}"
    );
    app.remove_topology().await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_wrong_code_while_enrolling_mails_no_notice_of_a_failed_sign_in(pool: PgPool) {
    let app = spawn_app(pool).await;
    let email = unique_email();
    app.register(&email).await;
    let login = app.password_step(&email).await;
    assert_eq!(login["next"], "enroll");
    let login_token = login["login_token"].as_str().unwrap();
    let enrollment: Value = app
        .post("/v1/login/enrollment", json!({"login_token": login_token}))
        .await
        .json()
        .await
        .unwrap();
    let mut device = Device::from_uri(enrollment["otpauth_uri"].as_str().unwrap(), &app.clock);
    let right = device.next_code().await;
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let mistyped = app
        .post(
            "/v1/login/enrollment/confirm",
            json!({"login_token": login_token, "code": wrong}),
        )
        .await;
    assert_ne!(mistyped.status(), StatusCode::OK);
    app.post_ok(
        "/v1/login/enrollment/confirm",
        json!({"login_token": login_token, "code": right}),
    )
    .await;
    let user = app.user_id(&email).await;
    let rejected = stream_of(&app.pool, user)
        .await
        .into_iter()
        .filter(|event| matches!(event, UserAuthEvent::TotpRejected { .. }))
        .collect::<Vec<_>>();
    assert!(
        matches!(
            rejected.as_slice(),
            [UserAuthEvent::TotpRejected {
                enrolling: true,
                ..
            }]
        ),
        "{rejected:?}"
    );

    // The enrollment's own notice is mailed after the mistyped code's
    // event: once it is there, a notice for that event would be too.
    app.deliver_mail().await;
    mail_with_subject(&email, "A new authenticator was added to your account").await;
    let subjects: Vec<String> = mails_to(&email)
        .await
        .iter()
        .map(|mail| mail["subject"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !subjects
            .iter()
            .any(|s| s == "A sign-in to your account failed its second step"),
        "{subjects:?}"
    );
    app.remove_topology().await;
}
