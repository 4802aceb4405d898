//! Security keys and passkeys through the API, with a software
//! authenticator that answers as a real one does: ES256 keys, "none"
//! attestation, and a signature count of its own.
use authledger_aggregates::Clock;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use futures::future::join_all;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use rand::RngCore;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::helpers::*;
use crate::sessions::{introspect, CLIENT_TOKEN};

const ORIGIN: &str = "https://auth.example.test";

async fn spawn(pool: PgPool) -> TestApp {
    spawn_app_with(pool, |c| {
        c.public_url = ORIGIN.into();
        c.client_tokens = vec![CLIENT_TOKEN.into()];
    })
    .await
}

/// A security key in software. `counter` is what its next signature
/// counts; a key without a counter stays at 0.
pub struct SoftKey {
    signing: SigningKey,
    pub credential_id: Vec<u8>,
    pub counter: u32,
    counts: bool,
}

impl SoftKey {
    pub fn new() -> Self {
        Self::with_counter(true)
    }

    pub fn with_counter(counts: bool) -> Self {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let mut credential_id = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut credential_id);
        Self {
            signing: SigningKey::from_slice(&secret).unwrap(),
            credential_id,
            counter: 0,
            counts,
        }
    }

    /// A copy of this key, as a clone of its hardware would be: the same
    /// key, and a counter of its own.
    pub fn cloned(&self) -> Self {
        Self {
            signing: self.signing.clone(),
            credential_id: self.credential_id.clone(),
            counter: self.counter,
            counts: self.counts,
        }
    }

    fn auth_data(&self, rp_id: &str, attested: bool) -> Vec<u8> {
        let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
        // User present and verified, and credential data when attested.
        data.push(0x01 | 0x04 | if attested { 0x40 } else { 0 });
        data.extend(self.counter.to_be_bytes());
        if attested {
            data.extend([0u8; 16]); // AAGUID: none claimed
            data.extend(
                u16::try_from(self.credential_id.len())
                    .unwrap()
                    .to_be_bytes(),
            );
            data.extend(&self.credential_id);
            data.extend(self.cose_key());
        }
        data
    }

    /// The public key as COSE: EC2, ES256, P-256, x, y.
    fn cose_key(&self) -> Vec<u8> {
        let point = self.signing.verifying_key().to_sec1_bytes();
        assert_eq!(point.len(), 65, "an uncompressed point");
        let mut cose = vec![0xa5];
        cose.extend([0x01, 0x02]); // 1 (kty): 2 (EC2)
        cose.extend([0x03, 0x26]); // 3 (alg): -7 (ES256)
        cose.extend([0x20, 0x01]); // -1 (crv): 1 (P-256)
        cose.extend([0x21, 0x58, 0x20]); // -2 (x): 32 bytes
        cose.extend(&point[1..33]);
        cose.extend([0x22, 0x58, 0x20]); // -3 (y): 32 bytes
        cose.extend(&point[33..65]);
        cose
    }

    fn client_data(kind: &str, options: &Value, origin: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": options["publicKey"]["challenge"],
            "origin": origin,
            "crossOrigin": false,
        }))
        .unwrap()
    }

    /// The answer to `navigator.credentials.create()` with `options`.
    pub fn register(&self, options: &Value) -> Value {
        let rp_id = options["publicKey"]["rp"]["id"].as_str().unwrap();
        let auth_data = self.auth_data(rp_id, true);
        let mut attestation = vec![0xa3];
        attestation.extend(cbor_text("fmt"));
        attestation.extend(cbor_text("none"));
        attestation.extend(cbor_text("attStmt"));
        attestation.push(0xa0);
        attestation.extend(cbor_text("authData"));
        attestation.extend(cbor_bytes(&auth_data));
        let id = B64.encode(&self.credential_id);
        json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "attestationObject": B64.encode(attestation),
                "clientDataJSON": B64.encode(Self::client_data("webauthn.create", options, ORIGIN)),
                "transports": ["usb"],
            },
            "extensions": {},
        })
    }

    /// The answer to `navigator.credentials.get()` with `options`, from
    /// `origin`; the counter goes up first.
    pub fn assert_from(&mut self, options: &Value, origin: &str) -> Value {
        if self.counts {
            self.counter += 1;
        }
        let rp_id = options["publicKey"]["rpId"].as_str().unwrap();
        let auth_data = self.auth_data(rp_id, false);
        let client_data = Self::client_data("webauthn.get", options, origin);
        let mut signed = auth_data.clone();
        signed.extend(Sha256::digest(&client_data));
        let signature: Signature = self.signing.sign(&signed);
        let id = B64.encode(&self.credential_id);
        json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "authenticatorData": B64.encode(auth_data),
                "clientDataJSON": B64.encode(client_data),
                "signature": B64.encode(signature.to_der().as_bytes()),
                "userHandle": null,
            },
            "extensions": {},
        })
    }

    pub fn assert(&mut self, options: &Value) -> Value {
        self.assert_from(options, ORIGIN)
    }
}

fn cbor_head(major: u8, len: usize) -> Vec<u8> {
    match len {
        0..=23 => vec![(major << 5) | u8::try_from(len).unwrap()],
        24..=255 => vec![(major << 5) | 24, u8::try_from(len).unwrap()],
        _ => {
            let mut head = vec![(major << 5) | 25];
            head.extend(u16::try_from(len).unwrap().to_be_bytes());
            head
        }
    }
}

fn cbor_text(text: &str) -> Vec<u8> {
    let mut out = cbor_head(3, text.len());
    out.extend(text.as_bytes());
    out
}

fn cbor_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = cbor_head(2, bytes.len());
    out.extend(bytes);
    out
}

/// Registers `key` from `session` under `name`; returns its id.
pub async fn add_key(app: &TestApp, session: &str, key: &SoftKey, name: &str) -> String {
    let options: Value = ok_json(
        app.post_with_session("/v1/me/authenticators/webauthn/options", session, None)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(options["publicKey"]["rp"]["id"], "auth.example.test");
    let added = ok_json(
        app.post_session_json(
            "/v1/me/authenticators/webauthn",
            session,
            json!({"name": name, "credential": key.register(&options)}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    added["id"].as_str().unwrap().to_owned()
}

async fn ok_json(response: reqwest::Response, status: StatusCode) -> Value {
    let got = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// The password step and a challenge for a key: the login token and the
/// options.
async fn key_challenge(app: &TestApp, email: &str) -> (String, Value) {
    let login = app.password_step(email).await;
    let token = login["login_token"].as_str().unwrap().to_owned();
    let options = app
        .post_ok("/v1/login/webauthn/options", json!({"login_token": token}))
        .await;
    (token, options)
}

async fn answer(app: &TestApp, token: &str, credential: &Value) -> reqwest::Response {
    app.post(
        "/v1/login/webauthn",
        json!({"login_token": token, "credential": credential}),
    )
    .await
}

async fn authenticators(app: &TestApp, session: &str) -> Vec<Value> {
    let listed = ok_json(
        app.get_with("/v1/me/authenticators", session).await,
        StatusCode::OK,
    )
    .await;
    listed["authenticators"].as_array().unwrap().clone()
}

#[sqlx::test(migrations = "./migrations")]
async fn a_security_key_added_from_the_profile_signs_in_as_a_second_factor(pool: PgPool) {
    let app = spawn(pool).await;
    let user = app.signed_up().await;
    let mut key = SoftKey::new();
    let id = add_key(&app, &user.session_token, &key, "Work key").await;
    let listed = authenticators(&app, &user.session_token).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["kind"], "totp");
    assert_eq!(listed[0]["name"], "Authenticator app");
    assert_eq!(listed[1]["id"], id.as_str());
    assert_eq!(listed[1]["kind"], "webauthn");
    assert_eq!(listed[1]["name"], "Work key");
    assert_eq!(listed[1]["transports"], json!(["usb"]));
    assert_eq!(listed[1]["last_used_at"], Value::Null);

    let login = app.password_step(&user.email).await;
    assert_eq!(login["next"], "totp");
    assert_eq!(
        login["alternatives"],
        json!(["webauthn", "email_link", "recovery_code"])
    );
    let (token, options) = key_challenge(&app, &user.email).await;
    let allowed = options["publicKey"]["allowCredentials"].as_array().unwrap();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0]["id"], B64.encode(&key.credential_id));
    let session = ok_json(
        answer(&app, &token, &key.assert(&options)).await,
        StatusCode::OK,
    )
    .await;
    let session = session["session_token"].as_str().unwrap();
    let me: Value = app.me(session).await.json().await.unwrap();
    assert_eq!(me["session"]["method"], "webauthn");
    assert_eq!(me["session"]["aal"], "aal2");
    // What a relying app is told of it.
    let introspected: Value = introspect(&app, Some(CLIENT_TOKEN), session)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["method"], "webauthn");
    assert_eq!(introspected["aal"], "aal2");
    assert_eq!(introspected["amr"], json!(["pwd", "hwk", "mfa"]));
    let listed = authenticators(&app, session).await;
    assert!(listed[1]["last_used_at"].is_string());
}

#[sqlx::test(migrations = "./migrations")]
async fn a_replayed_assertion_is_refused(pool: PgPool) {
    let app = spawn(pool).await;
    let user = app.signed_up().await;
    let mut key = SoftKey::new();
    add_key(&app, &user.session_token, &key, "Key").await;
    let (token, options) = key_challenge(&app, &user.email).await;
    let assertion = key.assert(&options);
    ok_json(answer(&app, &token, &assertion).await, StatusCode::OK).await;
    // The same answer again: its challenge is used up.
    assert_problem(
        answer(&app, &token, &assertion).await,
        StatusCode::CONFLICT,
        "webauthn-challenge-invalid",
    )
    .await;
    // In a new attempt, against a new challenge, it is a failed factor.
    let (token, _) = key_challenge(&app, &user.email).await;
    assert_problem(
        answer(&app, &token, &assertion).await,
        StatusCode::UNAUTHORIZED,
        "webauthn-rejected",
    )
    .await;
    let events = app.audit_events(app.user_id(&user.email).await).await;
    let rejected = events
        .iter()
        .find(|e| e["type"] == "WebAuthnRejected")
        .expect("the refusal is recorded");
    assert_eq!(rejected["payload"]["reason"], "invalid_assertion");
}

#[sqlx::test(migrations = "./migrations")]
async fn an_assertion_for_another_accounts_challenge_is_refused(pool: PgPool) {
    let app = spawn(pool).await;
    let alice = app.signed_up().await;
    let bob = app.signed_up().await;
    let alice_key = SoftKey::new();
    let mut bob_key = SoftKey::new();
    add_key(&app, &alice.session_token, &alice_key, "Alice's").await;
    add_key(&app, &bob.session_token, &bob_key, "Bob's").await;
    let (alice_token, _) = key_challenge(&app, &alice.email).await;
    let (bob_token, bob_options) = key_challenge(&app, &bob.email).await;
    // Bob's key answers Bob's challenge, sent with Alice's attempt.
    let bobs_answer = bob_key.assert(&bob_options);
    assert_problem(
        answer(&app, &alice_token, &bobs_answer).await,
        StatusCode::UNAUTHORIZED,
        "webauthn-rejected",
    )
    .await;
    // Bob's own challenge was not touched by it.
    ok_json(answer(&app, &bob_token, &bobs_answer).await, StatusCode::OK).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_challenge_expires(pool: PgPool) {
    let app = spawn_app_with(pool, |c| {
        c.public_url = ORIGIN.into();
        c.webauthn_challenge_secs = 60;
    })
    .await;
    let user = app.signed_up().await;
    let mut key = SoftKey::new();
    add_key(&app, &user.session_token, &key, "Key").await;
    let (token, options) = key_challenge(&app, &user.email).await;
    // A minute here; the attempt itself lasts five.
    app.clock.advance(chrono::Duration::seconds(61));
    assert_problem(
        answer(&app, &token, &key.assert(&options)).await,
        StatusCode::CONFLICT,
        "webauthn-challenge-invalid",
    )
    .await;
    // Options asked again in the same attempt replace those that expired
    // unanswered, and work.
    app.post_ok("/v1/login/webauthn/options", json!({"login_token": token}))
        .await;
    app.clock.advance(chrono::Duration::seconds(61));
    let options = app
        .post_ok("/v1/login/webauthn/options", json!({"login_token": token}))
        .await;
    ok_json(
        answer(&app, &token, &key.assert(&options)).await,
        StatusCode::OK,
    )
    .await;
}

#[sqlx::test(migrations = "./migrations")]
async fn twenty_answers_to_one_challenge_at_once_start_one_session(pool: PgPool) {
    let app = spawn(pool).await;
    let user = app.signed_up().await;
    let mut key = SoftKey::new();
    add_key(&app, &user.session_token, &key, "Key").await;
    let (token, options) = key_challenge(&app, &user.email).await;
    let assertion = key.assert(&options);
    let answers = join_all((0..20).map(|_| answer(&app, &token, &assertion))).await;
    let statuses: Vec<_> = answers.iter().map(|r| r.status()).collect();
    let signed_in = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(signed_in, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    let events = app.audit_events(app.user_id(&user.email).await).await;
    let count = |kind: &str| events.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(count("WebAuthnVerified"), 1);
    assert_eq!(count("WebAuthnRejected"), 0);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_cloned_key_whose_count_went_back_is_refused_and_recorded(pool: PgPool) {
    let app = spawn(pool).await;
    let user = app.signed_up().await;
    let mut key = SoftKey::new();
    add_key(&app, &user.session_token, &key, "Key").await;
    let mut clone = key.cloned();
    let (token, options) = key_challenge(&app, &user.email).await;
    ok_json(
        answer(&app, &token, &key.assert(&options)).await,
        StatusCode::OK,
    )
    .await;
    ok_json(
        {
            let (token, options) = key_challenge(&app, &user.email).await;
            answer(&app, &token, &key.assert(&options)).await
        },
        StatusCode::OK,
    )
    .await;
    // The copy signs with count 1, below the 2 the original reached.
    let (token, options) = key_challenge(&app, &user.email).await;
    assert_problem(
        answer(&app, &token, &clone.assert(&options)).await,
        StatusCode::UNAUTHORIZED,
        "webauthn-sign-count-regressed",
    )
    .await;
    let events = app.audit_events(app.user_id(&user.email).await).await;
    let rejected = events
        .iter()
        .find(|e| e["type"] == "WebAuthnRejected")
        .expect("the clone is recorded");
    assert_eq!(
        rejected["payload"]["reason"]["sign_count_regressed"]["stored"],
        2
    );
    assert_eq!(
        rejected["payload"]["reason"]["sign_count_regressed"]["presented"],
        1
    );
    // Neither copy can be told to be the owner's: the key is refused from
    // now on, and not offered, until its owner removes it.
    let listed = authenticators(&app, &user.session_token).await;
    assert!(listed[1]["suspected_copy_at"].is_string(), "{listed:?}");
    let login = app.password_step(&user.email).await;
    assert_eq!(
        login["alternatives"],
        json!(["email_link", "recovery_code"])
    );
    assert_problem(
        app.post(
            "/v1/login/webauthn/options",
            json!({"login_token": login["login_token"]}),
        )
        .await,
        StatusCode::CONFLICT,
        "no-security-key",
    )
    .await;
}

#[sqlx::test(migrations = "./migrations")]
async fn what_is_not_a_webauthn_answer_spends_neither_the_challenge_nor_a_try(pool: PgPool) {
    let app = spawn(pool).await;
    let user = app.signed_up().await;
    let mut key = SoftKey::new();
    add_key(&app, &user.session_token, &key, "Key").await;
    let (token, options) = key_challenge(&app, &user.email).await;
    for garbage in [json!("nope"), json!({"id": 1}), json!({"response": {}})] {
        assert_problem(
            answer(&app, &token, &garbage).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "webauthn-response-malformed",
        )
        .await;
    }
    let events = app.audit_events(app.user_id(&user.email).await).await;
    assert!(!events.iter().any(|e| e["type"] == "WebAuthnRejected"));
    ok_json(
        answer(&app, &token, &key.assert(&options)).await,
        StatusCode::OK,
    )
    .await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_session_gone_stale_gives_its_password_before_its_key_is_added(pool: PgPool) {
    let app = spawn(pool).await;
    let user = app.signed_up().await;
    let key = SoftKey::new();
    // The page is opened a minute before the session stops being recent,
    // and its form sent a minute after.
    app.clock.advance(chrono::Duration::minutes(14));
    let options: Value = ok_json(
        app.post_with_session(
            "/v1/me/authenticators/webauthn/options",
            &user.session_token,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    app.clock.advance(chrono::Duration::minutes(2));
    let registration = key.register(&options);
    assert_problem(
        app.post_session_json(
            "/v1/me/authenticators/webauthn",
            &user.session_token,
            json!({"name": "Key", "credential": registration}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "reauthentication-required",
    )
    .await;
    // The challenge was not spent: the same answer, with the password.
    ok_json(
        app.post_session_json(
            "/v1/me/authenticators/webauthn",
            &user.session_token,
            json!({"name": "Key", "credential": registration, "password": PASSWORD}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_key_without_a_counter_signs_in_every_time(pool: PgPool) {
    let app = spawn(pool).await;
    let user = app.signed_up().await;
    let mut key = SoftKey::with_counter(false);
    add_key(&app, &user.session_token, &key, "Passkey").await;
    for _ in 0..2 {
        let (token, options) = key_challenge(&app, &user.email).await;
        ok_json(
            answer(&app, &token, &key.assert(&options)).await,
            StatusCode::OK,
        )
        .await;
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn an_answer_from_another_origin_is_refused(pool: PgPool) {
    let app = spawn(pool).await;
    let user = app.signed_up().await;
    let mut key = SoftKey::new();
    add_key(&app, &user.session_token, &key, "Key").await;
    let (token, options) = key_challenge(&app, &user.email).await;
    // A look-alike page relaying our challenge: the browser names its origin.
    let phished = key.assert_from(&options, "https://auth.example.test.evil.example");
    assert_problem(
        answer(&app, &token, &phished).await,
        StatusCode::UNAUTHORIZED,
        "webauthn-rejected",
    )
    .await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_security_key_can_be_the_first_authenticator(pool: PgPool) {
    let app = spawn(pool).await;
    let email = unique_email();
    app.register(&email).await;
    let login = app.password_step(&email).await;
    assert_eq!(login["next"], "enroll");
    assert_eq!(login["alternatives"], json!(["webauthn"]));
    let token = login["login_token"].as_str().unwrap();
    let options = app
        .post_ok(
            "/v1/login/enrollment/webauthn/options",
            json!({"login_token": token}),
        )
        .await;
    let mut key = SoftKey::new();
    let enrolled = app
        .post_ok(
            "/v1/login/enrollment/webauthn",
            json!({"login_token": token, "name": "Laptop", "credential": key.register(&options)}),
        )
        .await;
    assert!(enrolled["recovery_code"].is_string());
    let login = app.password_step(&email).await;
    assert_eq!(login["next"], "webauthn");
    assert_eq!(
        login["alternatives"],
        json!(["email_link", "recovery_code"])
    );
    let (token, options) = key_challenge(&app, &email).await;
    ok_json(
        answer(&app, &token, &key.assert(&options)).await,
        StatusCode::OK,
    )
    .await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_key_cannot_be_registered_twice_nor_from_a_session_won_by_email(pool: PgPool) {
    let app = spawn(pool).await;
    let user = app.signed_up().await;
    let key = SoftKey::new();
    add_key(&app, &user.session_token, &key, "Key").await;
    let options: Value = ok_json(
        app.post_with_session(
            "/v1/me/authenticators/webauthn/options",
            &user.session_token,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let excluded = options["publicKey"]["excludeCredentials"]
        .as_array()
        .unwrap();
    assert_eq!(excluded[0]["id"], B64.encode(&key.credential_id));
    assert_problem(
        app.post_session_json(
            "/v1/me/authenticators/webauthn",
            &user.session_token,
            json!({"name": "Again", "credential": key.register(&options)}),
        )
        .await,
        StatusCode::CONFLICT,
        "credential-already-registered",
    )
    .await;
    let by_email = app.sign_in_with_email_link(&user.email).await;
    assert_problem(
        app.post_with_session("/v1/me/authenticators/webauthn/options", &by_email, None)
            .await,
        StatusCode::FORBIDDEN,
        "second-factor-required",
    )
    .await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_second_authenticator_app_is_added_used_and_removed(pool: PgPool) {
    let app = spawn(pool).await;
    let mut user = app.signed_up().await;
    let begun: Value = ok_json(
        app.post_with_session("/v1/me/authenticators/totp", &user.session_token, None)
            .await,
        StatusCode::OK,
    )
    .await;
    let mut spare = Device::from_uri(begun["otpauth_uri"].as_str().unwrap(), &app.clock);
    assert_problem(
        app.post_session_json(
            "/v1/me/authenticators/totp/confirm",
            &user.session_token,
            json!({"name": "Spare", "code": user.device.next_code().await}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "setup-code-incorrect",
    )
    .await;
    let added = ok_json(
        app.post_session_json(
            "/v1/me/authenticators/totp/confirm",
            &user.session_token,
            json!({"name": "Spare phone", "code": spare.next_code().await}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let spare_id = added["id"].as_str().unwrap().to_owned();
    // Either app's code signs in.
    let login = app.password_step(&user.email).await;
    let session = app
        .post_ok(
            "/v1/login/totp",
            json!({"login_token": login["login_token"], "code": spare.next_code().await}),
        )
        .await;
    let session = session["session_token"].as_str().unwrap().to_owned();
    app.sign_in_with_totp(&mut user).await;
    let listed = authenticators(&app, &session).await;
    let first_id = listed[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["name"], "Spare phone");

    let removed = ok_json(
        app.delete_with_session(
            &format!("/v1/me/authenticators/{spare_id}"),
            &session,
            json!({}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(removed["last"], false);
    let login = app.password_step(&user.email).await;
    assert_problem(
        app.post(
            "/v1/login/totp",
            json!({"login_token": login["login_token"], "code": spare.next_code().await}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid-code",
    )
    .await;
    // The last one goes only when confirmed; then the next sign-in enrolls.
    let last = format!("/v1/me/authenticators/{first_id}");
    assert_problem(
        app.delete_with_session(&last, &session, json!({})).await,
        StatusCode::CONFLICT,
        "last-authenticator",
    )
    .await;
    let removed = ok_json(
        app.delete_with_session(&last, &session, json!({"confirm_last": true}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(removed["last"], true);
    let login = app.password_step(&user.email).await;
    assert_eq!(login["next"], "enroll");
    assert_problem(
        app.delete_with_session(&last, &session, json!({"confirm_last": true}))
            .await,
        StatusCode::NOT_FOUND,
        "unknown-authenticator",
    )
    .await;
}

#[sqlx::test(migrations = "./migrations")]
async fn an_older_session_gives_its_password_to_remove_an_authenticator(pool: PgPool) {
    let app = spawn(pool).await;
    let user = app.signed_up().await;
    let key = SoftKey::new();
    let id = add_key(&app, &user.session_token, &key, "Key").await;
    app.clock.advance(chrono::Duration::minutes(20));
    let path = format!("/v1/me/authenticators/{id}");
    assert_problem(
        app.delete_with_session(&path, &user.session_token, json!({}))
            .await,
        StatusCode::FORBIDDEN,
        "reauthentication-required",
    )
    .await;
    ok_json(
        app.delete_with_session(&path, &user.session_token, json!({"password": PASSWORD}))
            .await,
        StatusCode::OK,
    )
    .await;
}

#[sqlx::test(migrations = "./migrations")]
async fn resetting_mfa_forgets_every_authenticator(pool: PgPool) {
    let app = spawn(pool).await;
    let user = app.signed_up().await;
    let key = SoftKey::new();
    add_key(&app, &user.session_token, &key, "Key").await;
    let reset = app
        .post_with_session("/v1/me/mfa/reset", &user.session_token, None)
        .await;
    assert_eq!(reset.status(), StatusCode::OK);
    let login = app.password_step(&user.email).await;
    assert_eq!(login["next"], "enroll");
    assert_problem(
        app.post(
            "/v1/login/webauthn/options",
            json!({"login_token": login["login_token"]}),
        )
        .await,
        StatusCode::CONFLICT,
        "no-security-key",
    )
    .await;
}

#[sqlx::test(migrations = "./migrations")]
async fn the_audit_lists_the_authenticators_at_an_instant(pool: PgPool) {
    let app = spawn(pool).await;
    let user = app.signed_up().await;
    let user_id = app.user_id(&user.email).await;
    let before = app.clock.now();
    app.clock.advance(chrono::Duration::seconds(5));
    let key = SoftKey::new();
    add_key(&app, &user.session_token, &key, "Work key").await;
    let state_at = |at: chrono::DateTime<chrono::Utc>| {
        let url = app.url(&format!(
            "/v1/audit/users/{user_id}/state?at={}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ));
        let client = app.client.clone();
        async move {
            let response = client
                .get(url)
                .bearer_auth(AUDITOR_TOKEN)
                .send()
                .await
                .unwrap();
            ok_json(response, StatusCode::OK).await
        }
    };
    let then = state_at(before).await;
    assert_eq!(then["authenticators"].as_array().unwrap().len(), 1);
    let now = state_at(app.clock.now()).await;
    let held = now["authenticators"].as_array().unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(held[1]["kind"], "webauthn");
    assert_eq!(held[1]["name"], "Work key");
    assert_eq!(held[1]["credential_id"], B64.encode(&key.credential_id));
}
