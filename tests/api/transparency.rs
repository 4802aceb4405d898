//! The verifiable history: event and snapshot MACs refused at load, the
//! Merkle tree's proofs checked by a verifier written here from RFC 9162's
//! text (not the production code), signed heads, and the tamper matrix
//! against `audit verify` and `audit verify-bundle`.
use std::path::PathBuf;

use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};

use crate::helpers::*;

type Hash = [u8; 32];

// --- An RFC 9162 verifier, from the RFC's text ---------------------------

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn inner(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[1], left, right])
}

/// RFC 9162 2.1.3.2: verifying an inclusion proof.
fn rfc_verify_inclusion(
    leaf_index: u64,
    tree_size: u64,
    leaf: Hash,
    path: &[Hash],
    root: Hash,
) -> bool {
    if leaf_index >= tree_size {
        return false;
    }
    let mut fn_ = leaf_index;
    let mut sn = tree_size - 1;
    let mut r = leaf;
    for p in path {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = inner(p, &r);
            if fn_ & 1 == 0 {
                loop {
                    fn_ >>= 1;
                    sn >>= 1;
                    if fn_ & 1 == 1 || fn_ == 0 {
                        break;
                    }
                }
            }
        } else {
            r = inner(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == root
}

/// RFC 9162 2.1.4.2: verifying a consistency proof (0 < first < second).
fn rfc_verify_consistency(
    first: u64,
    second: u64,
    first_hash: Hash,
    second_hash: Hash,
    proof: &[Hash],
) -> bool {
    if proof.is_empty() {
        return false;
    }
    let mut path = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, first_hash);
    }
    let mut fn_ = first - 1;
    let mut sn = second - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = inner(c, &fr);
            sr = inner(c, &sr);
            if fn_ & 1 == 0 {
                loop {
                    fn_ >>= 1;
                    sn >>= 1;
                    if fn_ & 1 == 1 || fn_ == 0 {
                        break;
                    }
                }
            }
        } else {
            sr = inner(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == first_hash && sr == second_hash && sn == 0
}

/// The leaf of a stored event, as the auditor's guide defines it: each
/// field as a 4-byte big-endian length and its bytes, after the format's
/// label (the MAC is not in it); the leaf hash is SHA-256(0x00 || that).
async fn leaf_of(pool: &PgPool, position: i64) -> Hash {
    let row = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence::text AS sequence, event_type, event_version,
                payload::text AS payload, metadata::text AS metadata,
                ((extract(epoch FROM recorded_at) * 1000000)::bigint)::text AS micros
           FROM events WHERE position = $1",
    )
    .bind(position)
    .fetch_one(pool)
    .await
    .unwrap();
    let mut data = Vec::new();
    let mut field = |bytes: &[u8]| {
        data.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        data.extend_from_slice(bytes);
    };
    field(b"authledger-event-leaf-v1");
    for column in [
        "aggregate_type",
        "aggregate_id",
        "sequence",
        "event_type",
        "event_version",
        "payload",
        "metadata",
        "micros",
    ] {
        let value: String = row.try_get(column).unwrap();
        field(value.as_bytes());
    }
    sha256(&[&[0], &data])
}

fn unhex(value: &Value) -> Hash {
    let bytes = data_encoding::HEXLOWER
        .decode(value.as_str().unwrap().as_bytes())
        .unwrap();
    bytes.try_into().unwrap()
}

fn path(value: &Value) -> Vec<Hash> {
    value.as_array().unwrap().iter().map(unhex).collect()
}

/// The head's signature, checked with the served public key as the
/// auditor's guide says: over the four lines of `signed_text`.
fn check_head(head: &Value, public_key: &VerifyingKey) -> Hash {
    let at = chrono::DateTime::parse_from_rfc3339(head["timestamp"].as_str().unwrap()).unwrap();
    let text = format!(
        "authledger-tree-head-v1\n{}\n{}\n{}\n",
        head["tree_size"],
        head["root_hash"].as_str().unwrap(),
        at.timestamp_millis()
    );
    let signature = base64::engine::general_purpose::STANDARD
        .decode(head["signature"].as_str().unwrap())
        .unwrap();
    public_key
        .verify(
            text.as_bytes(),
            &Signature::from_bytes(&signature.try_into().unwrap()),
        )
        .expect("the head's signature verifies");
    unhex(&head["root_hash"])
}

async fn public_key(app: &TestApp) -> (String, VerifyingKey) {
    let keys: Value = app
        .client
        .get(app.url("/v1/audit/public-key"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let current = &keys["keys"][0];
    assert_eq!(current["current"], true);
    assert_eq!(current["algorithm"], "ed25519");
    let text = current["public_key"].as_str().unwrap().to_owned();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&text)
        .unwrap();
    (
        text,
        VerifyingKey::from_bytes(&bytes.try_into().unwrap()).unwrap(),
    )
}

async fn sign_now(app: &TestApp) -> Value {
    let response = app
        .client
        .post(app.url("/v1/audit/checkpoints"))
        .bearer_auth(AUDITOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let response = app.get_with(path, AUDITOR_TOKEN).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.unwrap()
}

async fn positions(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT position FROM events ORDER BY transaction_id, position")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn every_served_proof_verifies_with_an_independent_rfc_9162_verifier(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    app.signed_up().await;
    app.signed_up().await;
    let (_, key) = public_key(&app).await;
    let first = sign_now(&app).await;
    let first_root = check_head(&first, &key);
    let first_size = first["tree_size"].as_u64().unwrap();
    assert_eq!(first_size, positions(&pool).await.len() as u64);
    assert_eq!(get_json(&app, "/v1/audit/checkpoints/latest").await, first);
    assert_eq!(
        get_json(&app, &format!("/v1/audit/checkpoints/{first_size}")).await,
        first
    );
    // The log has not grown: the same head.
    assert_eq!(sign_now(&app).await, first);

    let mut user = app.signed_up().await;
    app.sign_in_with_totp(&mut user).await;
    let second = sign_now(&app).await;
    let second_root = check_head(&second, &key);
    let second_size = second["tree_size"].as_u64().unwrap();
    assert!(second_size > first_size);

    // Every event's proof, under both heads where it is in both.
    for (index, position) in positions(&pool).await.into_iter().enumerate() {
        let leaf = leaf_of(&pool, position).await;
        for (size, root) in [(first_size, first_root), (second_size, second_root)] {
            if index as u64 >= size {
                continue;
            }
            let proof = get_json(
                &app,
                &format!("/v1/audit/events/{position}/proof?size={size}"),
            )
            .await;
            assert_eq!(proof["leaf_index"], index as u64);
            assert_eq!(unhex(&proof["leaf_hash"]), leaf, "leaf {index}");
            assert!(
                rfc_verify_inclusion(
                    index as u64,
                    size,
                    leaf,
                    &path(&proof["inclusion_path"]),
                    root
                ),
                "leaf {index} in {size}"
            );
        }
    }
    // Without a size: the newest head's.
    let newest = positions(&pool).await[0];
    let proof = get_json(&app, &format!("/v1/audit/events/{newest}/proof")).await;
    assert_eq!(proof["tree_size"], second_size);

    let consistency = get_json(
        &app,
        &format!("/v1/audit/consistency?from={first_size}&to={second_size}"),
    )
    .await;
    assert!(rfc_verify_consistency(
        first_size,
        second_size,
        first_root,
        second_root,
        &path(&consistency["consistency_path"])
    ));
    // Not for a root the first head did not sign.
    assert!(!rfc_verify_consistency(
        first_size,
        second_size,
        sha256(&[b"another root"]),
        second_root,
        &path(&consistency["consistency_path"])
    ));
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_proof_routes_refuse_what_they_cannot_prove(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let none = app
        .get_with("/v1/audit/checkpoints/latest", AUDITOR_TOKEN)
        .await;
    assert_problem(none, StatusCode::NOT_FOUND, "no-tree-head").await;
    app.signed_up().await;
    let head = sign_now(&app).await;
    let size = head["tree_size"].as_u64().unwrap();
    let position = positions(&pool).await[0];

    for (path, status, slug) in [
        (
            "/v1/audit/events/999999/proof".to_owned(),
            StatusCode::NOT_FOUND,
            "unknown-event",
        ),
        (
            "/v1/audit/events/x/proof".to_owned(),
            StatusCode::NOT_FOUND,
            "unknown-event",
        ),
        (
            format!("/v1/audit/events/{position}/proof?size=0"),
            StatusCode::BAD_REQUEST,
            "invalid-query",
        ),
        (
            format!("/v1/audit/events/{position}/proof?size={}", size + 1),
            StatusCode::CONFLICT,
            "tree-size-unavailable",
        ),
        (
            format!("/v1/audit/events/{position}/proof?size=-1"),
            StatusCode::BAD_REQUEST,
            "invalid-query",
        ),
        (
            format!("/v1/audit/events/{position}/proof?sise=1"),
            StatusCode::BAD_REQUEST,
            "invalid-query",
        ),
        (
            "/v1/audit/consistency?from=3&to=2".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid-query",
        ),
        (
            "/v1/audit/consistency?from=0&to=2".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid-query",
        ),
        (
            "/v1/audit/consistency?from=1".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid-query",
        ),
        (
            format!("/v1/audit/consistency?from=1&to={}", size + 1),
            StatusCode::CONFLICT,
            "tree-size-unavailable",
        ),
        (
            format!("/v1/audit/checkpoints/{}", size - 1),
            StatusCode::NOT_FOUND,
            "no-tree-head",
        ),
        (
            "/v1/audit/checkpoints/many".to_owned(),
            StatusCode::NOT_FOUND,
            "no-tree-head",
        ),
    ] {
        let response = app.get_with(&path, AUDITOR_TOKEN).await;
        assert_problem(response, status, slug).await;
    }
    // Auditors only, except the public key.
    let anonymous = app
        .client
        .get(app.url("/v1/audit/checkpoints/latest"))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let admin = app
        .get_with(&format!("/v1/audit/events/{position}/proof"), ADMIN_TOKEN)
        .await;
    assert_problem(admin, StatusCode::FORBIDDEN, "forbidden").await;
    let signing = app
        .client
        .post(app.url("/v1/audit/checkpoints"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_problem(signing, StatusCode::FORBIDDEN, "forbidden").await;
}

/// Appends an `MfaReset` in an admin's name as someone with only database
/// access could: the trigger gives it a valid chain hash, but they cannot
/// make its MAC, so they copy the predecessor's.
async fn forge_mfa_reset(pool: &PgPool, user: &str) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, mac, mac_key)
         SELECT 'UserAuth', $1, max(sequence) + 1, 'MfaReset', '2',
                json_build_object('MfaReset', json_build_object('actor', 'admin', 'reason', NULL, 'at', now())),
                '{\"actor\": \"admin:ops\", \"request_id\": \"r\", \"client_ip\": \"local\", \"user_agent\": \"authledger admin\"}',
                (array_agg(mac ORDER BY sequence DESC))[1], (array_agg(mac_key ORDER BY sequence DESC))[1]
           FROM events WHERE aggregate_id = $1",
    )
    .bind(user)
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_forged_append_in_an_admins_name_is_refused_at_load_and_named_by_verify(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), |c| {
        c.metrics_token = Some("metrics-token".into());
    })
    .await;
    let user = app.signed_up().await;
    let id = app.user_id(&user.email).await.to_string();
    forge_mfa_reset(&pool, &id).await;
    let forged: i64 =
        sqlx::query_scalar("SELECT max(sequence) FROM events WHERE aggregate_id = $1")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();

    // The sign-in fails closed: no new authenticator with the password alone.
    let refused = app
        .post(
            "/v1/login/password",
            json!({"email": user.email, "password": PASSWORD}),
        )
        .await;
    let problem = assert_problem(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "integrity-failure",
    )
    .await;
    assert!(!problem.to_string().contains("MfaReset"), "{problem}");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("metrics-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("authledger_integrity_failures_total 1"),
        "{metrics}"
    );
    let logs = captured_logs();
    assert!(
        logs.contains("INTEGRITY ALARM") && logs.contains(&id),
        "the alarm names the user"
    );

    let found = app.verify_log().await.findings;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].what, format!("user {id} event {forged}"));
    assert!(found[0].reason.contains("MAC does not match"), "{found:?}");

    // The tree stops before it: no signed head ever covers it.
    let signing = app
        .client
        .post(app.url("/v1/audit/checkpoints"))
        .bearer_auth(AUDITOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_problem(
        signing,
        StatusCode::SERVICE_UNAVAILABLE,
        "integrity-failure",
    )
    .await;
    let covered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM merkle_leaves l JOIN events e ON e.position = l.position
          WHERE e.aggregate_id = $1 AND e.sequence = $2",
    )
    .bind(&id)
    .bind(forged)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(covered, 0);
    assert!(captured_logs().contains("the Merkle tree stops before it"));
    // And the state at an instant is not folded from it.
    let state = app
        .get_with(&format!("/v1/audit/users/{id}/state"), AUDITOR_TOKEN)
        .await;
    assert_problem(state, StatusCode::SERVICE_UNAVAILABLE, "integrity-failure").await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_edited_snapshot_is_refused_at_load_and_named_by_verify(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), |c| c.snapshot_every = 2).await;
    let user = app.signed_up().await;
    let id = app.user_id(&user.email).await.to_string();
    // The snapshot as someone would edit it to drop the authenticator.
    let edited = sqlx::query(
        "UPDATE snapshots SET payload = jsonb_set(payload::jsonb, '{authenticator}', 'null')::json
          WHERE aggregate_id = $1",
    )
    .bind(&id)
    .execute(&pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(edited, 1);

    let refused = app
        .post(
            "/v1/login/password",
            json!({"email": user.email, "password": PASSWORD}),
        )
        .await;
    assert_problem(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "integrity-failure",
    )
    .await;
    let found = app.verify_log().await.findings;
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .what
            .starts_with(&format!("user {id} snapshot at event ")),
        "{found:?}"
    );
    assert!(found[0].reason.contains("MAC does not match"), "{found:?}");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_stream_cut_below_its_snapshot_is_refused_at_load(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), |c| c.snapshot_every = 2).await;
    let user = app.signed_up().await;
    let id = app.user_id(&user.email).await.to_string();
    // The newest events go, the snapshot that folded them stays: each
    // remaining event's MAC still holds.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    let cut = sqlx::query(
        "DELETE FROM events WHERE aggregate_id = $1
            AND sequence >= (SELECT max(last_sequence) FROM snapshots WHERE aggregate_id = $1)",
    )
    .bind(&id)
    .execute(&mut *tx)
    .await
    .unwrap()
    .rows_affected();
    sqlx::query("ALTER TABLE events ENABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(cut >= 1);

    let refused = app
        .post(
            "/v1/login/password",
            json!({"email": user.email, "password": PASSWORD}),
        )
        .await;
    assert_problem(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "integrity-failure",
    )
    .await;
    let found = app.verify_log().await.findings;
    assert!(
        found
            .iter()
            .any(|f| f.what.starts_with(&format!("user {id} snapshot"))
                && f.reason.contains("folds a history other than")),
        "{found:?}"
    );
}

/// `authledger audit …` against this test's database, with its key.
async fn cli(app: &TestApp, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_authledger"))
        .args(args)
        .env("DATABASE_URL", database_url(&app.pool).await)
        .env("AUTHLEDGER_SECRET_KEY", app.key.to_base64())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

/// A file of this test's own.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("authledger-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `authledger audit export --signed …`'s bundle, which must be written.
async fn export(app: &TestApp, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_authledger"))
        .args(["audit", "export", "--signed"])
        .args(args)
        .env("DATABASE_URL", database_url(&app.pool).await)
        .env("AUTHLEDGER_SECRET_KEY", app.key.to_base64())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Exports a bundle of everything and checks it with the public key alone,
/// in an environment without the database or the key.
async fn bundle_verdict(app: &TestApp, public_key: &str) -> (bool, String) {
    let file = scratch("bundle.json");
    std::fs::write(&file, export(app, &[]).await).unwrap();
    verify_bundle_file(&file, public_key).await
}

async fn verify_bundle_file(file: &std::path::Path, public_key: &str) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_authledger"))
        .args([
            "audit",
            "verify-bundle",
            file.to_str().unwrap(),
            "--public-key",
            public_key,
        ])
        .env_clear()
        .output()
        .await
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

/// Three users and a head signed over them; an intact log and bundle.
async fn signed_log(pool: &PgPool) -> (TestApp, String, Vec<String>, u64) {
    let app = spawn_app(pool.clone()).await;
    let mut users = Vec::new();
    for _ in 0..3 {
        let user = app.signed_up().await;
        users.push(app.user_id(&user.email).await.to_string());
    }
    let head = app.app.sign_tree_head().await.unwrap();
    let (public_key, _) = public_key(&app).await;
    let (verified, said) = cli(&app, &["audit", "verify"]).await;
    assert!(verified, "{said}");
    assert!(
        said.contains(&format!("signed tree heads at sizes [{}]", head.tree_size)),
        "{said}"
    );
    let (intact, said) = bundle_verdict(&app, &public_key).await;
    assert!(intact, "{said}");
    (app, public_key, users, head.tree_size)
}

/// Runs `statements` with the append-only triggers off, as a database
/// administrator could; then recomputes every hash chain, as they would to
/// hide it from the unkeyed chain.
async fn rewrite(pool: &PgPool, statements: &[&str]) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    for statement in statements {
        sqlx::query(statement).execute(&mut *tx).await.unwrap();
    }
    sqlx::query(
        "DO $$
         DECLARE r events%ROWTYPE; previous bytea; stream text := '';
         BEGIN
           FOR r IN SELECT * FROM events ORDER BY aggregate_id, sequence LOOP
             IF r.aggregate_id <> stream THEN previous := '\\x' || repeat('00', 32); stream := r.aggregate_id; END IF;
             previous := sha256(previous || event_chain_content(r));
             UPDATE events SET chain_hash = previous
              WHERE aggregate_id = r.aggregate_id AND sequence = r.sequence;
           END LOOP;
         END $$",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("ALTER TABLE events ENABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// `audit verify` and `verify-bundle` both refuse the log as it now is.
async fn both_catch(app: &TestApp, public_key: &str, expected: &str) {
    let (verified, said) = cli(app, &["audit", "verify"]).await;
    assert!(!verified, "audit verify passed a tampered log: {said}");
    assert!(said.contains(expected), "{said}");
    let (intact, said) = bundle_verdict(app, public_key).await;
    assert!(!intact, "verify-bundle passed a tampered log: {said}");
    assert!(said.contains("BROKEN"), "{said}");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_edited_payload_with_its_chain_recomputed_is_caught(pool: PgPool) {
    let (app, key, users, size) = signed_log(&pool).await;
    rewrite(
        &pool,
        &[&format!(
            "UPDATE events SET payload = '{{\"PasswordRejected\": {{\"at\": \"2026-01-01T00:00:00Z\"}}}}'
              WHERE aggregate_id = '{}' AND sequence = 3",
            users[1]
        )],
    )
    .await;
    let found = app.verify_log().await.findings;
    assert!(
        !found
            .iter()
            .any(|f| f.reason.contains("hash does not match")),
        "the unkeyed chain was recomputed: {found:?}"
    );
    assert!(found
        .iter()
        .any(|f| f.what == format!("user {} event 3", users[1]) && f.reason.contains("MAC")));
    both_catch(&app, &key, "BROKEN: the signed head at size").await;
    assert!(size > 0);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_stream_that_lost_its_newest_event_is_caught(pool: PgPool) {
    let (app, key, users, size) = signed_log(&pool).await;
    rewrite(
        &pool,
        &[&format!(
            "DELETE FROM events WHERE aggregate_id = '{0}'
                AND sequence = (SELECT max(sequence) FROM events WHERE aggregate_id = '{0}')",
            users[0]
        )],
    )
    .await;
    both_catch(
        &app,
        &key,
        &format!("BROKEN: the signed head at size {size}: the log holds only"),
    )
    .await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn two_reordered_events_are_caught(pool: PgPool) {
    let (app, key, users, size) = signed_log(&pool).await;
    rewrite(
        &pool,
        &[
            &format!("UPDATE events SET sequence = sequence + 1000 WHERE aggregate_id = '{}' AND sequence IN (2, 3)", users[2]),
            &format!("UPDATE events SET sequence = CASE sequence WHEN 1002 THEN 3 ELSE 2 END WHERE aggregate_id = '{}' AND sequence > 1000", users[2]),
        ],
    )
    .await;
    both_catch(
        &app,
        &key,
        &format!("BROKEN: the signed head at size {size}"),
    )
    .await;
    let found = app.verify_log().await.findings;
    assert!(
        found
            .iter()
            .any(|f| f.what == format!("user {} event 2", users[2])),
        "{found:?}"
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_log_truncated_after_a_signed_head_is_caught(pool: PgPool) {
    let (app, key, _, size) = signed_log(&pool).await;
    // Saved outside, as an auditor keeps it.
    let saved = scratch("head.json");
    let (_, said) = cli(&app, &["audit", "tree-head"]).await;
    std::fs::write(
        &saved,
        &said[said.find('{').unwrap()..=said.rfind('}').unwrap()],
    )
    .unwrap();
    let truncate = |tables: &'static str| {
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("ALTER TABLE events DISABLE TRIGGER USER")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query(&format!("TRUNCATE {tables}"))
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("ALTER TABLE events ENABLE TRIGGER USER")
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    };
    truncate("events").await;
    both_catch(
        &app,
        &key,
        &format!("BROKEN: the signed head at size {size}: the log holds only 0 events"),
    )
    .await;
    // And the tree and its heads too: the saved head still remembers.
    truncate("tree_heads, merkle_leaves, merkle_nodes").await;
    let (verified, said) = cli(
        &app,
        &[
            "audit",
            "verify",
            "--head",
            saved.to_str().unwrap(),
            "--public-key",
            &key,
        ],
    )
    .await;
    assert!(!verified, "{said}");
    assert!(
        said.contains(&format!(
            "BROKEN: the signed head at size {size}: the log holds only 0 events"
        )),
        "{said}"
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_bundle_edited_by_one_byte_is_refused(pool: PgPool) {
    let (app, key, _, _) = signed_log(&pool).await;
    let file = scratch("bundle.json");
    let bundle = export(&app, &[]).await;
    std::fs::write(&file, &bundle).unwrap();
    assert!(verify_bundle_file(&file, &key).await.0);
    // One digit of one event's stored time, one of the root, one of a proof.
    let parsed: Value = serde_json::from_str(&bundle).unwrap();
    let micros = parsed["events"][4]["event"]["recorded_at_micros"].to_string();
    let root = parsed["tree_head"]["root_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let step = parsed["events"][0]["audit_path"][0]
        .as_str()
        .unwrap()
        .to_owned();
    for (from, to) in [
        (
            format!("\"recorded_at_micros\":{micros}"),
            format!(
                "\"recorded_at_micros\":{}",
                micros.parse::<i64>().unwrap() + 1
            ),
        ),
        (
            root.clone(),
            format!(
                "{}{}",
                if root.starts_with('0') { "1" } else { "0" },
                &root[1..]
            ),
        ),
        (
            step.clone(),
            format!(
                "{}{}",
                if step.starts_with('0') { "1" } else { "0" },
                &step[1..]
            ),
        ),
    ] {
        assert!(bundle.contains(&from), "{from}");
        let edited = bundle.replacen(&from, &to, 1);
        assert_eq!(edited.len(), bundle.len() + to.len() - from.len());
        std::fs::write(&file, &edited).unwrap();
        let (intact, said) = verify_bundle_file(&file, &key).await;
        assert!(!intact, "{said}");
        assert!(said.contains("BROKEN"), "{said}");
    }
    // Another key's bundle.
    std::fs::write(&file, &bundle).unwrap();
    let other = authledger::transparency::encode_public_key(
        &ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key(),
    );
    let (intact, said) = verify_bundle_file(&file, &other).await;
    assert!(
        !intact && said.contains("does not verify with this public key"),
        "{said}"
    );
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn erasure_leaves_every_proof_valid(pool: PgPool) {
    let (app, key, users, size) = signed_log(&pool).await;
    let erased = app
        .client
        .post(app.url(&format!("/v1/admin/users/{}/erase", users[0])))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"reason": "asked to be forgotten"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        erased.status(),
        StatusCode::OK,
        "{}",
        erased.text().await.unwrap()
    );
    let after = app.app.sign_tree_head().await.unwrap();
    assert!(after.tree_size > size);
    let check = app.verify_log().await;
    assert!(check.findings.is_empty(), "{:?}", check.findings);
    let (intact, said) = bundle_verdict(&app, &key).await;
    assert!(intact, "{said}");
    let consistency = get_json(
        &app,
        &format!("/v1/audit/consistency?from={size}&to={}", after.tree_size),
    )
    .await;
    let first = get_json(&app, &format!("/v1/audit/checkpoints/{size}")).await;
    let (_, verifying) = public_key(&app).await;
    assert!(rfc_verify_consistency(
        size,
        after.tree_size,
        check_head(&first, &verifying),
        unhex(&json!(after.root_hash)),
        &path(&consistency["consistency_path"])
    ));
    // A bundle of the erased user alone still verifies.
    let bundle = export(&app, &["--user", &users[0]]).await;
    let file = scratch("user.json");
    std::fs::write(&file, &bundle).unwrap();
    let (intact, said) = verify_bundle_file(&file, &key).await;
    assert!(intact, "{said}");
    assert!(!said.contains("@example.com"));
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn new_heads_are_written_to_the_configured_directory(pool: PgPool) {
    let dir = scratch("heads");
    std::fs::create_dir_all(&dir).unwrap();
    let app = {
        let dir = dir.clone();
        spawn_app_with(pool.clone(), move |c| c.tree_heads_dir = Some(dir)).await
    };
    app.signed_up().await;
    app.grow_tree().await;
    let head = app.pipeline.signer.run_once().await.unwrap().unwrap();
    let written: Value = serde_json::from_slice(
        &std::fs::read(dir.join(format!("tree-head-{}.json", head.tree_size))).unwrap(),
    )
    .unwrap();
    let (_, key) = public_key(&app).await;
    assert_eq!(check_head(&written, &key), unhex(&json!(head.root_hash)));
    // Nothing new, no new head, no new file.
    assert_eq!(app.pipeline.signer.run_once().await.unwrap(), Some(head));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_tree_rewritten_under_its_signed_head_is_never_signed_again(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    app.signed_up().await;
    app.app.sign_tree_head().await.unwrap();
    sqlx::query("UPDATE merkle_nodes SET hash = sha256(hash) WHERE index = 0")
        .execute(&pool)
        .await
        .unwrap();
    app.signed_up().await;
    assert!(app.app.sign_tree_head().await.is_err());
    assert!(captured_logs().contains("does not extend a signed tree head"));
}

/// The schema before event MACs, with one account of `events` events as
/// that version wrote them; the account's id.
async fn legacy_log(pool: &PgPool, events: i64) -> String {
    for migration in authledger::db::MIGRATOR.iter().filter(|m| m.version < 9) {
        sqlx::raw_sql(&migration.sql).execute(pool).await.unwrap();
    }
    let user = uuid::Uuid::now_v7().to_string();
    for sequence in 1..=events {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             VALUES ('UserAuth', $1, $2, 'PasswordRejected', '2', '{\"PasswordRejected\": {\"at\": \"2026-01-01T00:00:00Z\"}}', '{}')",
        )
        .bind(&user)
        .bind(sequence)
        .execute(pool)
        .await
        .unwrap();
    }
    user
}

#[sqlx::test(migrations = false)]
async fn events_written_before_macs_are_adopted_once(pool: PgPool) {
    // An account's events as the previous version wrote them.
    let user = legacy_log(&pool, 3).await;
    // Record them as applied, as sqlx would have, then migrate for real.
    sqlx::query(
        "CREATE TABLE _sqlx_migrations (
             version BIGINT PRIMARY KEY, description TEXT NOT NULL,
             installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL,
             checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    for migration in authledger::db::MIGRATOR.iter().filter(|m| m.version < 9) {
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES ($1, $2, true, $3, 0)")
            .bind(migration.version)
            .bind(&*migration.description)
            .bind(&*migration.checksum)
            .execute(&pool)
            .await
            .unwrap();
    }
    authledger::db::migrate(&pool).await.unwrap();
    use authledger::transparency::{adopt_unsealed_events, unadopted, verify_log, AdoptionRefused};
    assert!(unadopted(&pool).await.unwrap(), "a server refuses to start");
    let keyring = authledger::keys::Keyring::single(&authledger::keys::MasterKey::generate());
    let adopted = adopt_unsealed_events(&pool, &keyring).await.unwrap();
    assert_eq!((adopted.events, adopted.streams), (3, 1));
    assert_eq!(adopted.heads_digest.len(), 64);
    assert!(!unadopted(&pool).await.unwrap());
    assert!(matches!(
        adopt_unsealed_events(&pool, &keyring).await,
        Err(AdoptionRefused::Done)
    ));
    let check = verify_log(&pool, &keyring, &[], |_| {}).await.unwrap();
    assert!(check.findings.is_empty(), "{:?}", check.findings);
    assert_eq!(check.events, 3);

    // Someone with database access appends without a MAC, and makes the
    // adoption record look fresh and wider: it is not adopted again.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('UserAuth', $1, 4, 'MfaReset', '2', '{\"MfaReset\": {\"actor\": \"admin\", \"reason\": null, \"at\": \"2026-01-01T00:00:00Z\"}}', '{}')",
    )
    .bind(&user)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE event_mac_adoption SET mac = NULL, until_position = (SELECT max(position) FROM events)")
        .execute(&pool)
        .await
        .unwrap();
    assert!(matches!(
        adopt_unsealed_events(&pool, &keyring).await,
        Err(AdoptionRefused::Altered)
    ));
    let check = verify_log(&pool, &keyring, &[], |_| {}).await.unwrap();
    assert_eq!(check.findings.len(), 1, "{:?}", check.findings);
    assert_eq!(check.findings[0].what, format!("user {user} event 4"));
    assert_eq!(check.findings[0].reason, "it carries no MAC");
}

#[sqlx::test(migrations = false)]
async fn a_legacy_history_whose_chain_is_broken_is_not_adopted(pool: PgPool) {
    let user = legacy_log(&pool, 2).await;
    sqlx::query("ALTER TABLE events DISABLE TRIGGER USER")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE events SET payload = '{\"PasswordRejected\": {\"at\": \"2026-02-01T00:00:00Z\"}}' WHERE sequence = 1")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE events ENABLE TRIGGER USER")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql(
        &authledger::db::MIGRATOR
            .iter()
            .find(|m| m.version == 9)
            .unwrap()
            .sql,
    )
    .execute(&pool)
    .await
    .unwrap();
    let keyring = authledger::keys::Keyring::single(&authledger::keys::MasterKey::generate());
    let refused = authledger::transparency::adopt_unsealed_events(&pool, &keyring).await;
    assert!(
        matches!(&refused, Err(authledger::transparency::AdoptionRefused::Broken(id, 1, _)) if *id == user),
        "{refused:?}"
    );
    let sealed: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE mac IS NOT NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sealed, 0, "nothing was adopted");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_key_rotation_beside_live_commits_leaves_every_chain_whole(pool: PgPool) {
    use authledger::keys::MasterKey;
    let (one, two) = (MasterKey::generate(), MasterKey::generate());
    let first = {
        let one = one.clone();
        spawn_app_with(pool.clone(), move |c| c.secret_key = Some(one)).await
    };
    let mut users = Vec::new();
    for _ in 0..3 {
        users.push(first.signed_up().await);
    }
    let rotated = {
        let keys = vec![two.clone(), one.clone()];
        spawn_app_with(pool.clone(), move |c| {
            c.secret_key = None;
            c.secret_keys = keys;
        })
        .await
    };
    // Wrong passwords race the rotation on every stream it seals again
    // (four each: under the throttle).
    let attempts = users.iter().flat_map(|user| {
        (0..4).map(|_| {
            rotated.post(
                "/v1/login/password",
                json!({"email": user.email, "password": "not the password at all"}),
            )
        })
    });
    let (report, answers) = tokio::join!(
        rotated.app.rotate_keys(),
        futures::future::join_all(attempts)
    );
    let report = report.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert!(report.events_resealed > 0, "{report:?}");
    for answer in answers {
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    let check = rotated.verify_log().await;
    assert!(check.findings.is_empty(), "{:?}", check.findings);
    // What the race appended after its stream was sealed again.
    rotated.app.rotate_keys().await.unwrap();
    let remaining = rotated.app.key_uses().await.unwrap();
    assert!(
        remaining.iter().all(|used| used.event_macs == 0),
        "{remaining:?}"
    );

    // The old key can go: every history still verifies and loads.
    let only_new = spawn_app_with(pool.clone(), move |c| c.secret_key = Some(two)).await;
    let check = only_new.verify_log().await;
    assert!(check.findings.is_empty(), "{:?}", check.findings);
    for user in &mut users {
        user.device.sync_with(&only_new.clock);
        only_new.sign_in_with_totp(user).await;
    }
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn heads_and_bundles_signed_before_a_key_rotation_still_verify(pool: PgPool) {
    use authledger::keys::MasterKey;
    let (one, two) = (MasterKey::generate(), MasterKey::generate());
    let first = {
        let one = one.clone();
        spawn_app_with(pool.clone(), move |c| c.secret_key = Some(one)).await
    };
    first.signed_up().await;
    let before = first.app.sign_tree_head().await.unwrap();
    let (old_key, _) = public_key(&first).await;
    let rotated = {
        let keys = vec![two.clone(), one.clone()];
        spawn_app_with(pool.clone(), move |c| {
            c.secret_key = None;
            c.secret_keys = keys;
        })
        .await
    };
    let report = rotated.app.rotate_keys().await.unwrap();
    assert!(report.events_resealed > 0, "{report:?}");
    rotated.signed_up().await;
    let after = rotated.app.sign_tree_head().await.unwrap();
    assert!(after.tree_size > before.tree_size);
    let check = rotated.verify_log().await;
    assert!(check.findings.is_empty(), "{:?}", check.findings);
    assert_eq!(check.heads_checked, vec![before.tree_size, after.tree_size]);
    // A bundle under the new key; the old head still checks with the old.
    let (new_key, _) = public_key(&rotated).await;
    assert_ne!(new_key, old_key);
    let file = scratch("bundle.json");
    std::fs::write(&file, export(&rotated, &[]).await).unwrap();
    let (intact, said) = verify_bundle_file(&file, &new_key).await;
    assert!(intact, "{said}");
    let saved = scratch("before.json");
    std::fs::write(&saved, serde_json::to_vec(&before).unwrap()).unwrap();
    let (verified, said) = cli(
        &rotated,
        &[
            "audit",
            "verify",
            "--head",
            saved.to_str().unwrap(),
            "--public-key",
            &old_key,
        ],
    )
    .await;
    // `cli` passes the first key only; the rotated app's ring has both.
    assert!(
        verified || said.contains("MAC was made with a key"),
        "{said}"
    );
    // And the tree rebuilt from the log comes out the same.
    rotated.pipeline.tree.rebuild().await.unwrap();
    assert_eq!(rotated.app.sign_tree_head().await.unwrap(), after);
}

/// `verify-bundle` refuses `file`, saying `expected`.
async fn refused(file: PathBuf, key: String, expected: &str) {
    let (intact, said) = verify_bundle_file(&file, &key).await;
    assert!(!intact, "{said}");
    assert!(said.contains(expected), "{said}");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_bundle_that_lies_about_its_scope_is_refused(pool: PgPool) {
    let (app, key, users, _) = signed_log(&pool).await;
    let bundle: Value = serde_json::from_str(&export(&app, &["--user", &users[0]]).await).unwrap();
    let check = |bundle: &Value, expected: &'static str| {
        let file = scratch("bundle.json");
        std::fs::write(&file, serde_json::to_vec(bundle).unwrap()).unwrap();
        refused(file, key.clone(), expected)
    };
    // Another user's events under this user's name.
    let mut relabelled = bundle.clone();
    relabelled["scope"] = json!(format!("user:{}", users[1]));
    check(&relabelled, "an event of user").await;
    // The user's newest event left out.
    let mut cut = bundle.clone();
    let first_leaf = cut["events"][0].clone();
    cut["events"] = json!([first_leaf]);
    let all = bundle["events"].as_array().unwrap().len();
    assert!(all > 1);
    let mut everything = cut.clone();
    everything["scope"] = json!("all");
    check(&everything, "the bundle promises every event of the head").await;
    // Nothing at all.
    let mut empty = bundle.clone();
    empty["events"] = json!([]);
    check(&empty, "the bundle holds no event").await;
    // Events outside the period it names.
    let mut period = bundle.clone();
    period["scope"] = json!("period:2020-01-01T00:00:00+00:00..2020-02-01T00:00:00+00:00");
    check(&period, "recorded outside the bundle's period").await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_signer_never_signs_over_a_history_rewritten_behind_a_head_kept_outside(pool: PgPool) {
    let dir = scratch("heads");
    std::fs::create_dir_all(&dir).unwrap();
    let app = {
        let dir = dir.clone();
        spawn_app_with(pool.clone(), move |c| c.tree_heads_dir = Some(dir)).await
    };
    let victim = app.user_id(&app.signed_up().await.email).await.to_string();
    app.grow_tree().await;
    let kept = app.pipeline.signer.run_once().await.unwrap().unwrap();
    // A database administrator removes the victim's newest event and every
    // trace of the heads and the tree, so the tree is grown again.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "DELETE FROM events WHERE aggregate_id = $1
            AND sequence = (SELECT max(sequence) FROM events WHERE aggregate_id = $1)",
    )
    .bind(&victim)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("ALTER TABLE events ENABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("TRUNCATE tree_heads, merkle_leaves, merkle_nodes")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE projection_checkpoints SET transaction_id = '0', position = 0 WHERE name = 'merkle_tree'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    app.signed_up().await;
    app.signed_up().await;
    app.grow_tree().await;
    assert!(app.pipeline.signer.run_once().await.is_err());
    assert!(captured_logs().contains("does not extend a signed tree head"));
    let heads: i64 = sqlx::query_scalar("SELECT count(*) FROM tree_heads")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(heads, 0, "nothing was signed");
    // And `audit verify` reads the directory's heads by itself.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_authledger"))
        .args(["audit", "verify"])
        .env("DATABASE_URL", database_url(&pool).await)
        .env("AUTHLEDGER_SECRET_KEY", app.key.to_base64())
        .env("AUTHLEDGER_TREE_HEADS_DIR", &dir)
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success());
    assert!(
        said.contains(&format!(
            "BROKEN: the signed head at size {}",
            kept.tree_size
        )),
        "{said}"
    );
}
