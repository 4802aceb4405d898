//! The console, clicked through in headless Chromium: the journey of
//! DESIGN §1 as a person makes it, with an accessibility check (axe-core)
//! on every page. `AUTHLEDGER_SCREENSHOTS=docs/console` saves the README's
//! pictures.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
mod webdriver;

use authledger_aggregates::Clock;
use sqlx::PgPool;

use helpers::*;
use webdriver::Chromium;

/// A server whose public URL is its real address, so the mailed link can
/// be opened as it is.
async fn spawn_console(pool: PgPool) -> TestApp {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    spawn_app_with(pool, |config| {
        config.addr = ([127, 0, 0, 1], port).into();
        config.public_url = format!("http://127.0.0.1:{port}");
    })
    .await
}

/// Fails on any serious or critical axe-core violation, and names them.
async fn assert_accessible(browser: &Chromium, page: &str) {
    let violations = browser.accessibility_violations().await;
    let serious: Vec<_> = violations
        .iter()
        .filter(|(_, impact, _)| impact == "serious" || impact == "critical")
        .collect();
    assert!(serious.is_empty(), "{page}: {serious:?}");
    assert!(
        violations.is_empty(),
        "{page}: lesser violations too, fix them: {violations:?}"
    );
}

/// Looks at the page, checks it, and keeps its picture.
async fn look(browser: &Chromium, heading: &str, name: &str) {
    assert_eq!(
        browser.heading().await,
        heading,
        "at {}",
        browser.url().await
    );
    assert_accessible(browser, name).await;
    browser.screenshot(name).await;
}

async fn sign_in(browser: &Chromium, email: &str) {
    browser.fill("#email", email).await;
    browser.fill("#password", PASSWORD).await;
    browser.click_on("Sign in").await;
}

/// The link to `path` from the newest mail that carries one.
async fn mailed_link(app: &TestApp, email: &str, path: &str) -> String {
    for _ in 0..100 {
        app.deliver_mail().await;
        let mails = mails_to(email).await;
        let link = mails.iter().rev().find_map(|mail| {
            mail["text"]
                .as_str()?
                .split_whitespace()
                .find(|word| word.contains(&format!("{path}?token=")))
                .map(str::to_owned)
        });
        if let Some(link) = link {
            return link;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no link to {path} reached {email}");
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_whole_journey_by_clicks(pool: PgPool) {
    let app = spawn_console(pool).await;
    let browser = Chromium::start().await;
    let email = format!(
        "ada.{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );

    // Create an account.
    browser.goto(&app.url("/")).await;
    assert_eq!(browser.path().await, "/sign-in");
    look(&browser, "Sign in", "01-sign-in").await;
    // The checker itself finds a field without its label.
    browser
        .execute("document.querySelector('label[for=email]').remove(); return true;")
        .await;
    let found = browser.accessibility_violations().await;
    assert!(found.iter().any(|(rule, ..)| rule == "label"), "{found:?}");
    browser.goto(&app.url("/sign-in")).await;
    browser.click_on("Create account").await;
    browser.fill("#email", &email).await;
    browser.fill("#password", PASSWORD).await;
    look(&browser, "Create account", "02-create-account").await;
    browser.click_on("Create account").await;
    look(&browser, "Check your inbox", "14-registered").await;

    // Confirm the address from the mailed link.
    let link = mailed_link(&app, &email, "/v1/users/verify").await;
    browser.goto(&link).await;
    look(&browser, "Confirm your email address", "15-confirm-address").await;
    assert_eq!(browser.text("#link-account").await, email);
    browser.fill("#password", PASSWORD).await;
    browser.click_on("Confirm").await;
    look(&browser, "Your account is ready", "29-account-ready").await;
    assert!(browser
        .text(".notice")
        .await
        .contains("Your email address is confirmed"));
    // The sign-in form below has the address filled in, which the URL
    // does not carry.
    assert_eq!(
        browser
            .execute("return document.querySelector('#email').value;")
            .await,
        email.as_str()
    );
    assert!(!browser.url().await.contains('@'));

    // The first sign-in enrolls an authenticator: read the key off the
    // page as a person would type it into their app.
    browser.fill("#password", PASSWORD).await;
    browser.click_on("Sign in").await;
    assert_eq!(browser.path().await, "/sign-in/enroll");
    look(&browser, "Set up your authenticator app", "03-enroll").await;
    // On a phone the key breaks between its groups, never inside one.
    browser.resize(390, 844).await;
    let groups = browser
        .execute(
            "return [...document.querySelectorAll('#totp-secret .group')]
               .map(g => g.getClientRects().length);",
        )
        .await;
    let groups = groups.as_array().unwrap();
    assert_eq!(groups.len(), 8, "{groups:?}");
    assert!(groups.iter().all(|lines| lines == 1), "{groups:?}");
    browser.screenshot("03-enroll-on-a-phone").await;
    browser.resize(1024, 860).await;
    let secret = browser.text("#totp-secret").await.replace(' ', "");
    let mut device = Device::from_uri(
        &format!("otpauth://totp/authledger:{email}?secret={secret}&issuer=authledger"),
        &app.clock,
    );
    browser.fill("#code", &device.next_code().await).await;
    browser.click_on("Verify and continue").await;
    look(&browser, "Save your recovery code", "04-recovery-code").await;
    let recovery_code = browser.text("#recovery-code").await;
    assert_eq!(recovery_code.len(), 29, "{recovery_code}");
    browser.click_on("I have saved it").await;
    look(&browser, "My Profile", "05-profile").await;
    assert_eq!(browser.text("#profile-email").await, email);
    assert!(browser
        .text("#mfa-status")
        .await
        .starts_with("On: authenticator app"));
    let cookies = browser.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "authledger_session")
        .expect("a session cookie");
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Lax");
    assert_eq!(session["path"], "/");
    assert!(
        cookies.iter().all(|c| c["name"] != "authledger_login"),
        "the login attempt's cookie is gone"
    );

    // The email at top right opens the account menu; sign out from it.
    browser.click("summary").await;
    browser.screenshot("06-account-menu").await;
    browser.click_on("Sign out").await;
    assert_eq!(browser.path().await, "/sign-in");
    assert_eq!(browser.text(".notice").await, "You are signed out.");

    // A sign-in begun by mistake ends from the code page.
    sign_in(&browser, &email).await;
    look(&browser, "Enter your code", "07-code").await;
    browser.click_on("Cancel and use another account").await;
    assert_eq!(browser.path().await, "/sign-in");
    assert!(browser
        .text(".notice")
        .await
        .starts_with("You left that sign-in."));
    assert!(
        browser
            .cookies()
            .await
            .iter()
            .all(|c| c["name"] != "authledger_login"),
        "the login attempt's cookie is gone"
    );

    // Sign in again, without the phone: Try another method, Email.
    sign_in(&browser, &email).await;
    assert_eq!(browser.heading().await, "Enter your code");
    browser.click_on("Try another method").await;
    look(&browser, "Try another method", "08-another-method").await;
    browser.click_on("Email").await;
    look(&browser, "Check your inbox", "09-check-your-inbox").await;

    // The mail, as a mail client shows its HTML part: the link is a
    // button, its address small below it.
    let link = mailed_link(&app, &email, "/v1/login/email-link").await;
    let mail = mails_to(&email)
        .await
        .into_iter()
        .rev()
        .find(|mail| mail["subject"] == "Your sign-in link")
        .expect("the sign-in link's mail");
    browser
        .goto(&format!(
            "{MAILDEV_API}/{}/html",
            mail["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(browser.heading().await, "Your sign-in link");
    assert_eq!(browser.text("a").await, "Finish signing in");
    assert!(browser.text("body").await.contains(&link));
    browser.screenshot("36-mail").await;

    // The mailed link, opened in the same browser, then confirmed.
    browser.goto(&link).await;
    look(&browser, "Finish signing in", "10-email-link").await;
    assert_eq!(browser.text("#link-account").await, email);
    browser.click_on("Sign in").await;
    assert_eq!(browser.path().await, "/profile");
    assert!(browser
        .text("#session-method")
        .await
        .contains("a link mailed to you"));

    // The same link again: no button that would only fail; this browser
    // is signed in, so it is sent to its profile.
    browser.goto(&link).await;
    look(&browser, "This link cannot be used", "37-used-link").await;
    assert!(browser.text("#link-dead").await.contains("already used"));
    assert!(browser
        .text("#link-signed-in")
        .await
        .starts_with(&format!("You are signed in as {email}")));
    browser.click_on("Continue to My Profile").await;
    assert_eq!(browser.path().await, "/profile");

    // From a session won by email link, a reset waits; cancel it from the
    // profile.
    browser
        .click_on("Reset My Multi-Factor Authentication")
        .await;
    browser.click_on("Reset my MFA").await;
    assert_eq!(browser.path().await, "/profile");
    look(&browser, "My Profile", "16-pending-reset").await;
    assert!(browser
        .text("#pending-reset")
        .await
        .contains("A reset of your multi-factor authentication is waiting"));
    browser.click_on("Cancel the reset").await;
    // A session won by a mailed link ends with the cancelled reset.
    assert_eq!(browser.path().await, "/sign-in");
    assert!(browser.text(".notice").await.contains("is cancelled"));

    // Signed in with the authenticator, the reset is done at once.
    sign_in(&browser, &email).await;
    browser.fill("#code", &device.next_code().await).await;
    browser.click_on("Continue").await;
    assert_eq!(browser.path().await, "/profile");

    // Reset MFA: confirm, and be signed out everywhere.
    browser
        .click_on("Reset My Multi-Factor Authentication")
        .await;
    look(
        &browser,
        "Reset My Multi-Factor Authentication?",
        "11-reset-confirm",
    )
    .await;
    browser.click_on("Reset my MFA").await;
    assert_eq!(browser.path().await, "/sign-in");
    assert!(browser
        .text(".notice")
        .await
        .contains("next sign-in you will set up a new authenticator"));
    browser.screenshot("12-reset-done").await;
    browser.goto(&app.url("/profile")).await;
    assert_eq!(browser.path().await, "/sign-in", "the session ended");

    // The next sign-in shows the enrollment page.
    sign_in(&browser, &email).await;
    assert_eq!(browser.path().await, "/sign-in/enroll");
    assert_eq!(browser.heading().await, "Set up your authenticator app");
    let new_secret = browser.text("#totp-secret").await.replace(' ', "");
    assert_ne!(new_secret, secret, "a new authenticator, not the old one");

    browser.quit().await;
    app.remove_topology().await;
}

/// The recovery-code path, in a browser with JavaScript turned off: every
/// form works without it.
#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn the_recovery_code_path_by_clicks_without_javascript(pool: PgPool) {
    let app = spawn_console(pool).await;
    let user = app.signed_up().await;
    let browser = Chromium::start_without_javascript().await;

    browser.goto(&app.url("/sign-in")).await;
    sign_in(&browser, &user.email).await;
    assert_eq!(browser.heading().await, "Enter your code");
    browser.click_on("Try another method").await;
    browser.click_on("Recovery code").await;
    assert_eq!(browser.heading().await, "Use your recovery code");

    browser.fill("#code", "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF").await;
    browser.press_enter_in("#code").await;
    assert_eq!(browser.heading().await, "Use your recovery code");
    assert_eq!(
        browser.text(".error").await,
        "That recovery code is not right."
    );

    browser.fill("#code", &user.recovery_code).await;
    browser.click_on("Sign in").await;
    assert_eq!(browser.heading().await, "Save your new recovery code");
    let replacement = browser.text("#recovery-code").await;
    assert_ne!(replacement, user.recovery_code);
    browser.click_on("I have saved it").await;
    assert_eq!(browser.path().await, "/profile");
    assert!(browser
        .text("#session-method")
        .await
        .contains("your recovery code"));

    // Readable on a phone.
    browser.resize(390, 844).await;
    browser.screenshot("13-profile-on-a-phone").await;

    browser.quit().await;
    app.remove_topology().await;
}

/// "Forgot password?" to a new password, then a sign-in with it and the
/// authenticator: the mailed link alone signs nobody in.
#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_forgotten_password_by_clicks(pool: PgPool) {
    let app = spawn_console(pool).await;
    let mut user = app.signed_up().await;
    let browser = Chromium::start().await;

    browser.goto(&app.url("/sign-in")).await;
    browser.click_on("Forgot password?").await;
    look(&browser, "Forgot your password?", "17-forgot-password").await;
    browser.fill("#email", &user.email).await;
    browser.click_on("Send the link").await;
    assert_eq!(browser.heading().await, "Check your inbox");

    let link = mailed_link(&app, &user.email, "/v1/password/reset").await;
    browser.goto(&link).await;
    look(&browser, "Set a new password", "18-new-password").await;
    assert_eq!(browser.text("#link-account").await, user.email);
    browser.fill("#password", "password").await;
    browser.click_on("Set the password").await;
    assert_eq!(browser.heading().await, "Set a new password");
    assert!(browser
        .text(".error")
        .await
        .starts_with("Choose another password"));
    browser.fill("#password", "quince-harbor-lantern-31").await;
    browser.click_on("Set the password").await;
    assert_eq!(browser.path().await, "/sign-in");
    assert!(browser
        .text(".notice")
        .await
        .contains("Your new password is set"));

    // The new password, then the authenticator; email is off meanwhile.
    browser.fill("#email", &user.email).await;
    browser.fill("#password", "quince-harbor-lantern-31").await;
    browser.click_on("Sign in").await;
    assert_eq!(browser.heading().await, "Enter your code");
    browser.click_on("Try another method").await;
    assert!(browser
        .text("#email-off")
        .await
        .contains("Signing in by email is off"));
    browser.click_on("Use your authenticator app").await;
    browser.fill("#code", &user.device.next_code().await).await;
    browser.click_on("Continue").await;
    assert_eq!(browser.path().await, "/profile");

    // The profile's other pages, checked and pictured.
    browser.click_on("Change password").await;
    look(&browser, "Change your password", "19-change-password").await;
    browser.click_on("Cancel").await;
    browser.click_on("New recovery code").await;
    look(&browser, "A new recovery code", "20-new-recovery-code").await;
    browser.click_on("Make a new recovery code").await;
    assert_eq!(browser.heading().await, "Save your new recovery code");
    assert_ne!(browser.text("#recovery-code").await, user.recovery_code);

    browser.quit().await;
    app.remove_topology().await;
}

/// Password and authenticator code, ending on My Profile.
async fn sign_in_with_code(browser: &Chromium, user: &mut SignedIn) {
    sign_in(browser, &user.email).await;
    browser.fill("#code", &user.device.next_code().await).await;
    browser.click_on("Continue").await;
    assert_eq!(browser.path().await, "/profile");
}

/// A new address confirmed from its inbox and taken back from the old
/// one, then the account deleted: each step past the reauthentication
/// window, so the password fields are on the pages too.
#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_change_of_address_its_undo_and_the_deletion_by_clicks(pool: PgPool) {
    let app = spawn_console(pool).await;
    let mut user = app.signed_up().await;
    let old = user.email.clone();
    let new = unique_email();
    let browser = Chromium::start().await;
    browser.goto(&app.url("/sign-in")).await;
    sign_in_with_code(&browser, &mut user).await;

    // From My Profile, ask for the new address.
    app.clock.advance(chrono::Duration::minutes(20));
    browser.click_on("Change email address").await;
    look(&browser, "Change your email address", "21-change-email").await;
    browser.fill("#new-email", &new).await;
    browser.fill("#password", PASSWORD).await;
    let asked = app.clock.now();
    browser.click_on("Send the link").await;
    let answered = app.clock.now();
    look(&browser, "Check your new inbox", "22-check-new-inbox").await;
    let sent = browser.text("#email-change-sent").await;
    assert!(sent.contains(&new), "{sent}");
    // The link's deadline, a day after the request, to the minute; the
    // clock may cross a minute while the request runs.
    let a_day_after = |at: chrono::DateTime<chrono::Utc>| {
        (at + chrono::Duration::hours(24))
            .format("%-d %b %Y, %H:%M UTC")
            .to_string()
    };
    assert!(
        sent.contains(&a_day_after(asked)) || sent.contains(&a_day_after(answered)),
        "{sent}"
    );

    // The link mailed to the new address, opened in the same browser.
    let link = mailed_link(&app, &new, "/v1/me/email/confirm").await;
    browser.goto(&link).await;
    look(
        &browser,
        "Confirm your new email address",
        "23-confirm-new-address",
    )
    .await;
    assert_eq!(browser.text("#link-account").await, new);
    browser.click_on("Confirm the new address").await;
    look(&browser, "Your address is changed", "24-address-changed").await;
    assert!(browser
        .text("#email-changed")
        .await
        .contains("a link that undoes the change for 72 hours"));
    browser.click_on("My Profile").await;
    assert_eq!(browser.text("#profile-email").await, new);

    // The notice mailed to the old address takes it back and signs out.
    let link = mailed_link(&app, &old, "/v1/me/email/revert").await;
    browser.goto(&link).await;
    look(
        &browser,
        "Undo the change of your email address?",
        "25-undo-address-change",
    )
    .await;
    assert_eq!(browser.text("#link-account").await, old);
    browser.click_on("It wasn't me: restore my address").await;
    assert_eq!(browser.path().await, "/sign-in");
    assert!(browser
        .text(".notice")
        .await
        .starts_with("Your address is restored"));
    look(&browser, "Sign in", "26-address-restored").await;

    // The old address signs in again; later, the account is deleted.
    sign_in_with_code(&browser, &mut user).await;
    assert_eq!(browser.text("#profile-email").await, old);
    app.clock.advance(chrono::Duration::minutes(20));
    browser.click_on("Delete my account").await;
    look(&browser, "Delete your account", "27-delete-account").await;
    browser.fill("#confirm-email", &new).await;
    browser.fill("#password", PASSWORD).await;
    browser.click_on("Delete my account").await;
    assert_eq!(browser.heading().await, "Delete your account");
    assert_eq!(
        browser.text(".error").await,
        "Type your account's address exactly, to confirm."
    );
    assert_accessible(&browser, "delete-account-mistyped").await;
    browser.fill("#confirm-email", &old).await;
    browser.fill("#password", PASSWORD).await;
    browser.click_on("Delete my account").await;
    assert_eq!(browser.path().await, "/sign-in");
    assert!(browser
        .text(".notice")
        .await
        .starts_with("Your account is deleted"));
    look(&browser, "Sign in", "28-account-deleted").await;

    // The address signs in to nothing now.
    sign_in(&browser, &old).await;
    assert_eq!(browser.heading().await, "Sign in");
    assert_eq!(
        browser.text(".error").await,
        "The email or the password is not right."
    );

    browser.quit().await;
    app.remove_topology().await;
}

#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn an_operator_finds_a_locked_account_by_its_start_and_acts_on_it_by_clicks(pool: PgPool) {
    const CLIENT: &str = "browser-test-client-credential";
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = spawn_app_with(pool, |config| {
        config.addr = ([127, 0, 0, 1], port).into();
        config.public_url = format!("http://127.0.0.1:{port}");
        config.client_tokens = vec![CLIENT.into()];
        config.limits.rate_password_per_minute = 0;
    })
    .await;
    let introspected = |token: String| {
        let app = &app;
        async move {
            let answer: serde_json::Value = app
                .client
                .post(app.url("/v1/introspect"))
                .bearer_auth(CLIENT)
                .form(&[("token", token)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["active"].as_bool().unwrap()
        }
    };
    let mut user = app.signed_up().await;
    let session = user.session_token.clone();
    for _ in 0..5 {
        app.post(
            "/v1/login/password",
            serde_json::json!({"email": user.email, "password": "not the password"}),
        )
        .await;
    }
    app.project_users().await;
    let browser = Chromium::start().await;

    browser.goto(&app.url("/admin")).await;
    assert_eq!(browser.path().await, "/admin/sign-in");
    look(&browser, "Operators' console", "30-operator-sign-in").await;
    browser.fill("#credential", ADMIN_TOKEN).await;
    browser.click_on("Sign in").await;
    assert_eq!(browser.heading().await, "Accounts");
    let start = &user.email[..16];
    browser.fill("#q", start).await;
    browser
        .execute("document.querySelector('#filter').value = 'locked'; return true;")
        .await;
    browser.click_on("Search").await;
    look(&browser, "Accounts", "31-operator-accounts").await;
    let address = user.email.to_lowercase();
    assert!(browser.text("#accounts").await.contains("Throttled"));
    browser.click_on(&address).await;
    look(&browser, &address, "32-operator-account").await;
    assert!(browser
        .text("#account-standing")
        .await
        .contains("Throttled"));

    browser
        .fill("#reason-unlock", "owner called from the desk phone")
        .await;
    browser.click_on("Unlock").await;
    assert_eq!(browser.text(".notice").await, "The account is unlocked.");
    assert!(browser
        .text("#account-standing")
        .await
        .contains("good standing"));

    assert!(introspected(session.clone()).await);
    browser.fill("#reason-suspend", "fraud inquiry 7").await;
    browser.click_on("Suspend").await;
    assert_eq!(
        browser.text(".notice").await,
        "The account is suspended and its sessions ended."
    );
    look(&browser, &address, "33-operator-suspended").await;
    assert!(!introspected(session).await);

    browser.fill("#reason-reactivate", "inquiry closed").await;
    browser.click_on("Reactivate").await;
    assert_eq!(browser.text(".notice").await, "The account is reactivated.");
    let token = app.sign_in_with_totp(&mut user).await;
    assert!(introspected(token).await);

    browser.click_on("Sign out of the operators' console").await;
    assert_eq!(browser.path().await, "/admin/sign-in");
    browser.goto(&app.url("/admin")).await;
    assert_eq!(browser.path().await, "/admin/sign-in");
    browser.quit().await;
}

/// A sign-in from a browser the account has not seen is mailed; the
/// timeline on My Profile shows it; "This wasn't me" there ends every
/// session, this one too, and calls off the reset someone asked for from a
/// mailed link; so does the link in the notice.
#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_new_browser_is_mailed_and_this_wasnt_me_signs_everyone_out_by_clicks(pool: PgPool) {
    let app = spawn_console(pool).await;
    let mut user = app.signed_up().await;
    let browser = Chromium::start().await;
    browser.goto(&app.url("/sign-in")).await;
    sign_in_with_code(&browser, &mut user).await;
    let report_link = mailed_link(&app, &user.email, "/v1/report").await;
    let notice = mails_to(&user.email)
        .await
        .into_iter()
        .find(|mail| mail["subject"] == "New sign-in to your account")
        .expect("the new-device notice");
    assert!(notice["text"]
        .as_str()
        .unwrap()
        .contains("from IP address 127.0.0.1 (Chrome on Linux)"));

    // Someone with the password and the inbox asks for a reset.
    let theirs = app.sign_in_with_email_link(&user.email).await;
    let asked = app
        .post_session_json("/v1/me/mfa/reset", &theirs, serde_json::json!({}))
        .await;
    assert_eq!(asked.status(), reqwest::StatusCode::ACCEPTED);

    browser.click_on("Security activity").await;
    look(&browser, "Security activity", "34-security-activity").await;
    let timeline = browser.text("ol.activity").await;
    assert!(timeline.contains("New device"), "{timeline}");
    assert!(
        timeline.contains("Signed in with a code from the authenticator app"),
        "{timeline}"
    );
    assert!(
        timeline.contains("A reset of multi-factor authentication was requested"),
        "{timeline}"
    );
    // The newest entry that can be reported is the reset's request.
    browser.click_on("This wasn't me").await;
    assert_eq!(browser.path().await, "/sign-in");
    assert!(browser
        .text(".notice")
        .await
        .starts_with("Thank you: it is reported"));
    assert_eq!(
        app.me(&theirs).await.status(),
        reqwest::StatusCode::UNAUTHORIZED
    );
    let user_id = app.user_id(&user.email).await;
    let state: serde_json::Value = app
        .client
        .get(app.url(&format!("/v1/audit/users/{user_id}/state")))
        .bearer_auth(AUDITOR_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(state["pending_mfa_reset_at"].is_null(), "{state}");
    assert!(
        state["live_sessions"].as_array().unwrap().is_empty(),
        "{state}"
    );

    // The notice's link opens a page that asks first, then reports.
    let again = app.sign_in_with_totp(&mut user).await;
    browser.goto(&report_link).await;
    look(&browser, "Was this sign-in not you?", "35-report-sign-in").await;
    assert_eq!(browser.text("#link-account").await, user.email);
    browser.click_on("It wasn't me: sign out everywhere").await;
    assert_eq!(browser.path().await, "/sign-in");
    assert_eq!(
        app.me(&again).await.status(),
        reqwest::StatusCode::UNAUTHORIZED
    );

    browser.quit().await;
    app.remove_topology().await;
}

/// A server on `localhost`: WebAuthn takes a domain, not an IP address,
/// as the relying party (the server still listens on 127.0.0.1).
async fn spawn_console_on_localhost(pool: PgPool) -> TestApp {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    spawn_app_with(pool, |config| {
        config.addr = ([127, 0, 0, 1], port).into();
        config.public_url = format!("http://localhost:{port}");
    })
    .await
}

/// Signs out from the account menu.
async fn sign_out(browser: &Chromium) {
    browser.click("summary").await;
    browser.click_on("Sign out").await;
    assert_eq!(browser.path().await, "/sign-in");
}

/// A passkey registered from My Profile, then a sign-in with password and
/// passkey, then the passkey removed; a second authenticator app added
/// and used; a security key that does not verify its user added and used.
/// Chromium's virtual authenticators stand in for the hardware.
#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn passkeys_security_keys_and_a_second_app_by_clicks(pool: PgPool) {
    let app = spawn_console_on_localhost(pool).await;
    let mut user = app.signed_up().await;
    let browser = Chromium::start().await;
    browser
        .goto(&format!("{}/sign-in", app.config.public_url))
        .await;
    sign_in_with_code(&browser, &mut user).await;
    assert_eq!(
        browser.text("#mfa-status").await.split(',').next().unwrap(),
        "On: authenticator app"
    );

    // A passkey on this device, from My Profile.
    let passkey = browser.add_virtual_authenticator(true).await;
    browser.click_on("Add a security key or passkey").await;
    look(&browser, "Add a security key or passkey", "38-add-passkey").await;
    browser.fill("#name", "Laptop passkey").await;
    browser.click_on("Add security key or passkey").await;
    assert_eq!(browser.path().await, "/profile");
    look(&browser, "My Profile", "39-profile-authenticators").await;
    let listed = browser.text("#authenticators").await;
    assert!(listed.contains("Laptop passkey"), "{listed}");
    assert!(listed.contains("Security key or passkey"), "{listed}");
    assert_eq!(
        browser.text("#mfa-status").await.split(',').next().unwrap(),
        "On: 2 authenticators"
    );
    assert_eq!(browser.virtual_credentials(&passkey).await.len(), 1);

    // Password, then the passkey instead of a code.
    sign_out(&browser).await;
    sign_in(&browser, &user.email).await;
    look(&browser, "Enter your code", "40-code-or-key").await;
    browser.click_on("Use your security key or passkey").await;
    look(&browser, "Use your security key or passkey", "41-use-key").await;
    browser.click_on("Use security key or passkey").await;
    assert_eq!(browser.path().await, "/profile");
    assert!(browser
        .text("#session-method")
        .await
        .contains("a security key or passkey"));
    let credential = &browser.virtual_credentials(&passkey).await[0];
    assert!(
        credential["signCount"].as_u64().unwrap() >= 1,
        "{credential}"
    );

    // Remove it: it no longer signs in.
    browser.click_on("Remove Laptop passkey").await;
    look(
        &browser,
        "Remove an authenticator",
        "42-remove-authenticator",
    )
    .await;
    browser.click_on("Remove").await;
    assert_eq!(browser.path().await, "/profile");
    assert!(!browser
        .text("#authenticators")
        .await
        .contains("Laptop passkey"));
    browser.remove_virtual_authenticator(&passkey).await;

    // A second authenticator app, added and used.
    browser.click_on("Add an authenticator app").await;
    look(&browser, "Add an authenticator app", "43-add-app").await;
    browser.click_on("Show the QR code").await;
    look(&browser, "Add an authenticator app", "44-add-app-qr").await;
    let secret = browser.text("#totp-secret").await.replace(' ', "");
    let mut spare = Device::from_uri(
        &format!(
            "otpauth://totp/authledger:{}?secret={secret}&issuer=authledger",
            user.email
        ),
        &app.clock,
    );
    browser.fill("#name", "Spare phone").await;
    browser.fill("#code", &spare.next_code().await).await;
    browser.click_on("Add authenticator app").await;
    assert_eq!(browser.path().await, "/profile");
    assert!(browser
        .text("#authenticators")
        .await
        .contains("Spare phone"));
    sign_out(&browser).await;
    sign_in(&browser, &user.email).await;
    browser.fill("#code", &spare.next_code().await).await;
    browser.click_on("Continue").await;
    assert_eq!(browser.path().await, "/profile");

    // A roaming security key that does not verify its user is welcome too:
    // verification is preferred, not required.
    let key = browser.add_virtual_authenticator(false).await;
    browser.click_on("Add a security key or passkey").await;
    browser.fill("#name", "Blue key").await;
    browser.click_on("Add security key or passkey").await;
    assert_eq!(browser.path().await, "/profile");
    sign_out(&browser).await;
    sign_in(&browser, &user.email).await;
    browser.click_on("Use your security key or passkey").await;
    browser.click_on("Use security key or passkey").await;
    assert_eq!(browser.path().await, "/profile");
    let events = app.audit_events(app.user_id(&user.email).await).await;
    let verified: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "WebAuthnVerified")
        .map(|e| e["payload"]["user_verified"].clone())
        .collect();
    assert_eq!(verified, [true, false], "{verified:?}");
    assert_eq!(browser.virtual_credentials(&key).await.len(), 1);
    browser.quit().await;
    app.remove_topology().await;
}

/// A security key as the first authenticator, at the first sign-in.
#[sqlx::test(migrator = "authledger::db::MIGRATOR")]
async fn a_security_key_as_the_first_authenticator_by_clicks(pool: PgPool) {
    let app = spawn_console_on_localhost(pool).await;
    let email = unique_email();
    app.register(&email).await;
    let browser = Chromium::start().await;
    browser.add_virtual_authenticator(false).await;
    browser
        .goto(&format!("{}/sign-in", app.config.public_url))
        .await;
    sign_in(&browser, &email).await;
    browser
        .click_on("Use a security key or passkey instead")
        .await;
    look(
        &browser,
        "Set up a security key or passkey",
        "45-enroll-key",
    )
    .await;
    browser.fill("#name", "Work key").await;
    browser.click_on("Set up security key or passkey").await;
    look(
        &browser,
        "Save your recovery code",
        "46-recovery-code-after-key",
    )
    .await;
    browser.click_on("I have saved it").await;
    sign_out(&browser).await;
    // The key is the account's only factor: the code page is skipped.
    sign_in(&browser, &email).await;
    assert_eq!(browser.heading().await, "Use your security key or passkey");
    // No app to take a code from is offered.
    let page = browser.text("main").await;
    assert!(!page.contains("authenticator app"), "{page}");
    browser.click_on("Use security key or passkey").await;
    assert_eq!(browser.path().await, "/profile");
    browser.quit().await;
    app.remove_topology().await;
}
