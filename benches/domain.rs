//! Micro-benchmarks of the domain's hot parts: `cargo bench --bench domain`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // setup failures end the benchmark

use std::sync::Arc;

use authledger::config::Config;
use authledger::keys::{DataKey, Keyring, MasterKey, UserKeeper};
use authledger::services::{
    new_recovery_code, new_totp_secret, Argon2Hasher, HashingQueue, OsRandomness, SystemClock,
};
use authledger::tokens::{TokenCodec, TokenKind};
use authledger_aggregates::{
    check_code, code_at_step, time_step, Email, NewPassword, Password, Policy, Reference, TotpCode,
    TotpSecret, UserAuth, UserAuthCommand, UserAuthEvent, UserAuthServices,
};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use uuid::Uuid;

const PASSWORD: &str = "violet-tangerine-harbour-42";

fn services() -> UserAuthServices {
    let unlimited = 1_000_000_000;
    UserAuthServices {
        clock: Arc::new(SystemClock),
        randomness: Arc::new(OsRandomness),
        // Cheap hashing: no benchmark here measures the password step.
        hasher: Arc::new(Argon2Hasher::new(64, 1, 1, HashingQueue::new(1, 64)).unwrap()),
        // The account's own key, as the command bus hands the rules one.
        keeper: Arc::new(UserKeeper::new(
            Arc::new(Keyring::single(&MasterKey::generate())),
            Uuid::now_v7(),
            Some(&DataKey::generate()),
        )),
        policy: Policy {
            throttle_after_failures: unlimited,
            lock_after_failures: unlimited,
            second_factor_tries: unlimited,
            ..Config::defaults().unwrap().policy()
        },
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Runs a command on `state` through the aggregate, as the command bus does.
async fn run(
    state: &mut UserAuth,
    command: UserAuthCommand,
    services: &UserAuthServices,
) -> Vec<UserAuthEvent> {
    let sink = EventSink::default();
    state.handle(command, services, &sink).await.unwrap();
    sink.collect().await
}

fn opened_attempt(events: &[UserAuthEvent]) -> Reference {
    events
        .iter()
        .find_map(|e| match e {
            UserAuthEvent::PasswordVerified { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .unwrap()
}

/// An enrolled user with an open login attempt, and the history that made
/// it, padded with wrong codes to at least `events` events.
struct History {
    state: UserAuth,
    events: Vec<UserAuthEvent>,
    secret: TotpSecret,
    attempt: Reference,
}

async fn history(services: &UserAuthServices, events: usize) -> History {
    let mut state = UserAuth::default();
    let mut log = Vec::new();
    let email = Email::parse("bench@example.com").unwrap();
    let password = NewPassword::parse(PASSWORD, &[]).unwrap();
    log.extend(
        run(
            &mut state,
            UserAuthCommand::RegisterUser {
                user_id: Uuid::now_v7(),
                email,
                password,
            },
            services,
        )
        .await,
    );
    let submit = || UserAuthCommand::SubmitPassword {
        password: Password::parse(PASSWORD).unwrap(),
        device: None,
    };
    let opened = run(&mut state, submit(), services).await;
    let attempt = opened_attempt(&opened);
    log.extend(opened);
    let secret = new_totp_secret();
    log.extend(
        run(
            &mut state,
            UserAuthCommand::BeginEnrollment {
                attempt,
                secret: secret.clone(),
            },
            services,
        )
        .await,
    );
    let code = TotpCode::parse(&code_at_step(&secret, time_step(unix_now()))).unwrap();
    let recovery_code = new_recovery_code();
    log.extend(
        run(
            &mut state,
            UserAuthCommand::EnrollMfa {
                authenticator: authledger_aggregates::AuthenticatorId(uuid::Uuid::from_u128(1)),
                attempt,
                code,
                recovery_code,
            },
            services,
        )
        .await,
    );
    let opened = run(&mut state, submit(), services).await;
    let attempt = opened_attempt(&opened);
    log.extend(opened);
    let wrong = TotpCode::parse("000000").unwrap();
    while log.len() < events {
        log.extend(
            run(
                &mut state,
                UserAuthCommand::SubmitTotp {
                    attempt,
                    code: wrong.clone(),
                },
                services,
            )
            .await,
        );
    }
    History {
        state,
        events: log,
        secret,
        attempt,
    }
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let services = services();
    let big = runtime.block_on(history(&services, 10_000));

    c.bench_function("fold 10,000 events", |b| {
        b.iter_batched(
            || big.events.clone(),
            |events| {
                let mut state = UserAuth::default();
                for event in events {
                    state.apply(event);
                }
                state
            },
            BatchSize::LargeInput,
        )
    });

    let codec = TokenCodec::new(Arc::new(Keyring::single(&MasterKey::generate())));
    let user = Uuid::new_v4();
    let reference = Reference::from_bytes([7; 16]);
    let token = codec.encode(TokenKind::Session, user, &reference);
    c.bench_function("token encode", |b| {
        b.iter(|| codec.encode(TokenKind::Session, user, &reference))
    });
    c.bench_function("token decode and verify", |b| {
        b.iter(|| codec.decode(TokenKind::Session, &token).unwrap())
    });

    let secret = big.secret.clone();
    c.bench_function("TOTP verify (3 steps compared)", |b| {
        b.iter_batched(
            || {
                let now = unix_now();
                (
                    TotpCode::parse(&code_at_step(&secret, time_step(now))).unwrap(),
                    now,
                )
            },
            |(code, now)| check_code(&secret, &code, now, 1, None),
            BatchSize::SmallInput,
        )
    });

    // The state after 10,000 events decides as fast as after 10: handling
    // reads the state, not the history. The code is the next step's (inside
    // the one-step skew): the current step was spent by the enrollment.
    let small = runtime.block_on(history(&services, 10));
    let right_code = |history: &History| UserAuthCommand::SubmitTotp {
        attempt: history.attempt,
        code: TotpCode::parse(&code_at_step(&history.secret, time_step(unix_now()) + 1)).unwrap(),
    };
    for history in [&big, &small] {
        let events = runtime.block_on(run(
            &mut history.state.clone(),
            right_code(history),
            &services,
        ));
        assert!(
            events
                .iter()
                .any(|e| matches!(e, UserAuthEvent::SessionStarted { .. })),
            "a right code signs in: {events:?}"
        );
    }
    for (name, history) in [
        ("handle SubmitTotp, right code, 10,000-event user", &big),
        ("handle SubmitTotp, right code, 10-event user", &small),
    ] {
        c.bench_function(name, |b| {
            b.iter_batched(
                || (history.state.clone(), right_code(history)),
                |(mut state, command)| runtime.block_on(run(&mut state, command, &services)),
                BatchSize::SmallInput,
            )
        });
    }
    c.bench_function("handle SubmitTotp, wrong code", |b| {
        b.iter_batched(
            || {
                let command = UserAuthCommand::SubmitTotp {
                    attempt: big.attempt,
                    code: TotpCode::parse("000000").unwrap(),
                };
                (big.state.clone(), command)
            },
            |(mut state, command)| runtime.block_on(run(&mut state, command, &services)),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(domain, benches);
criterion_main!(domain);
