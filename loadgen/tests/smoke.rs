//! The generator's scenarios, briefly, against a real server and database:
//! every flow completes with no error and reports its steps.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::time::Duration;

use std::sync::Arc;

use authledger::config::Config;
use authledger::keys::MasterKey;
use authledger::services::SystemClock;
use authledger::startup::{wire, Application};
use authledger_loadgen::*;
use sqlx::PgPool;

fn assert_clean(run: &Run, steps: &[&str]) {
    assert!(run.completed >= 1, "{}: nothing completed", run.name);
    assert_eq!(run.errors, 0, "{}: {:?}", run.name, run.first_error);
    for step in steps {
        assert!(
            run.quantile_ms(step, 0.99) > 0.0,
            "{}: no {step} timings",
            run.name
        );
    }
    assert_eq!(run.rows().len(), steps.len());
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn every_scenario_runs_against_a_real_server(pool: PgPool) {
    let mut config = Config::defaults().unwrap();
    config.secret_key = Some(MasterKey::generate());
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.hashing.argon2_memory_kib = 64;
    config.hashing.argon2_iterations = 1;
    config.hashing.sign_in_failure_floor_ms = 0;
    // The pipeline is not run: its names only need to be its own.
    config.mail.amqp_prefix = Some(format!("smoke-{}", uuid::Uuid::new_v4().simple()));
    let key = config.secret_key.clone().unwrap();
    let (app, _) = wire(&config, pool.clone(), Arc::new(SystemClock)).unwrap();
    let app = Application::build(&config, app).await.unwrap();
    let target = Target::new(&format!("http://{}", app.local_addr().unwrap()))
        .with_inbox(Inbox::new(pool, &key));
    tokio::spawn(app.run_until(std::future::pending()));

    let prefix = format!("smoke-{}", uuid::Uuid::new_v4().simple());
    let mut users = new_users(&target, &prefix, 12, 4).await.unwrap();
    let for_second_factor = users.split_off(8);
    let for_recovery = users.split_off(4);

    let (run, back) = full_sign_in(&target, users, 2, Duration::from_millis(300)).await;
    assert_clean(&run, &["password", "sign-in", "totp"]);
    assert_eq!(back.len(), 4, "every user comes back to the pool");

    let attempts = open_attempts(&target, for_second_factor, 2).await.unwrap();
    let (run, signed) = second_factor(&target, attempts, 2, Duration::from_secs(10)).await;
    assert_clean(&run, &["totp"]);
    assert_eq!(signed.len(), 4);

    let attempts = open_attempts(&target, for_recovery, 2).await.unwrap();
    let (run, sessions) = recovery_code(&target, attempts, 2, Duration::from_secs(10)).await;
    assert_clean(&run, &["recovery-code"]);
    let (run, users) = mfa_reset(&target, sessions, 2, Duration::from_secs(10)).await;
    assert_clean(&run, &["reset"]);

    let signed_users: Vec<User> = signed.into_iter().map(|s| s.user).collect();
    let attempts = open_attempts(&target, signed_users, 2).await.unwrap();
    let (run, sent) = email_links(&target, attempts, 2).await;
    assert_clean(&run, &["request"]);
    assert_eq!(sent.len(), 4);
    assert_eq!(users.len(), 4);

    let verify = argon2_verify_time(64, 1, 1, 3).unwrap();
    assert!(verify > Duration::ZERO && verify < Duration::from_secs(1));
    let together = argon2_parallel_rate(64, 1, 1, 2, 3).unwrap();
    assert!(together.is_finite() && together > 0.0);
}
