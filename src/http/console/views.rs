//! The console's pages: server-rendered, one stylesheet, and script only
//! on the pages of a WebAuthn ceremony, from one file of this origin.
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, RETRY_AFTER, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

/// Only the stylesheet and images from this origin (the QR code is a data:
/// image); no script at all, forms post only here, and no framing.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The same, and `/assets/webauthn.js`: a WebAuthn ceremony needs the
/// browser's API, which only script reaches. No inline script.
const CSP_WITH_SCRIPT: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
    script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The script of the WebAuthn pages.
pub const WEBAUTHN_SCRIPT: &str = include_str!("webauthn.js");

pub fn secure_headers(response: &mut Response) {
    secure_headers_with(response, false);
}

fn secure_headers_with(response: &mut Response, script: bool) {
    let headers = response.headers_mut();
    let csp = if script { CSP_WITH_SCRIPT } else { CSP };
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Pages show secrets (a QR code, a recovery code) and who is signed in.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A page of the console.
pub struct Page<'a> {
    pub title: &'a str,
    pub status: StatusCode,
    /// The signed-in user's email, for the account menu.
    pub account: Option<&'a str>,
    pub notice: Option<&'a str>,
    pub error: Option<Problem>,
    /// Loads the WebAuthn script, and lets it run.
    pub script: bool,
}

/// A message in plain words, and when to try again if the answer was "wait".
pub struct Problem {
    pub message: String,
    pub retry_after: Option<i64>,
}

impl<'a> Page<'a> {
    pub fn new(title: &'a str) -> Self {
        Self {
            title,
            status: StatusCode::OK,
            account: None,
            notice: None,
            error: None,
            script: false,
        }
    }

    /// The page around `main`; `csrf_field` goes in the sign-out form of
    /// the account menu.
    pub fn render(self, csrf_field: &Markup, main: Markup) -> Response {
        let retry_after = self.error.as_ref().and_then(|e| e.retry_after);
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) " · authledger" }
                    link rel="stylesheet" href="/assets/console.css";
                    @if self.script {
                        script src="/assets/webauthn.js" defer {}
                    }
                }
                body {
                    header.bar {
                        a.brand href="/" { "authledger" }
                        @if let Some(email) = self.account {
                            details.menu {
                                summary { span.visually-hidden { "Account menu for " } (email) }
                                nav aria-label="Account" {
                                    ul {
                                        li { a href="/profile" { "My Profile" } }
                                        li {
                                            form method="post" action="/sign-out" {
                                                (csrf_field)
                                                button.link type="submit" { "Sign out" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    main {
                        h1 { (self.title) }
                        @if let Some(notice) = self.notice {
                            p.notice role="status" { (notice) }
                        }
                        @if let Some(error) = &self.error {
                            p.error role="alert" { (error.message) }
                        }
                        (main)
                    }
                }
            }
        };
        let mut response = (self.status, Html(markup.into_string())).into_response();
        secure_headers_with(&mut response, self.script);
        if let Some(seconds) = retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
        }
        response
    }
}

/// What a page that only explains what went wrong says.
pub fn explanation(text: &str) -> Markup {
    html! {
        p { (text) }
        p { a href="/" { "Back to the start" } }
    }
}

pub fn email_field(value: &str) -> Markup {
    html! {
        label for="email" { "Email" }
        input #email type="email" name="email" value=(value) autocomplete="username"
            required spellcheck="false" autocapitalize="none";
    }
}

pub fn password_field(autocomplete: &str, hint: Option<&str>) -> Markup {
    html! {
        label for="password" { "Password" }
        @if let Some(hint) = hint {
            p.hint #password-hint { (hint) }
            input #password type="password" name="password" autocomplete=(autocomplete)
                required aria-describedby="password-hint";
        } @else {
            input #password type="password" name="password" autocomplete=(autocomplete) required;
        }
    }
}

/// The password again, when the session was not won recently enough for
/// the change at hand.
pub fn password_again(required: bool, window: chrono::Duration) -> Markup {
    html! {
        @if required {
            (password_field("current-password", Some(&format!(
                "You signed in more than {} minutes ago: enter your password to confirm.",
                window.num_minutes()
            ))))
        }
    }
}

pub fn totp_field() -> Markup {
    html! {
        label for="code" { "Enter the 6-digit code from your authenticator app" }
        input #code type="text" name="code" inputmode="numeric" autocomplete="one-time-code"
            maxlength="6" required autofocus;
    }
}

/// The recovery code, shown once, and the way on.
pub fn recovery_code_shown(code: &str) -> Markup {
    html! {
        p { "If your phone is lost, this code signs you in once. It is shown only now: write it down or keep it in a password manager." }
        p.secret { code #recovery-code { (code) } }
        p { a.button #saved href="/profile" { "I have saved it" } }
    }
}

/// Groups a base32 secret in fours, as authenticator apps show it. Each
/// group is a `span.group` that the stylesheet keeps on one line: a narrow
/// screen breaks the key between groups, never inside one, so what is
/// typed group by group reads as it was shown.
pub fn grouped(secret: &str) -> Markup {
    html! {
        @for (i, chunk) in secret.as_bytes().chunks(4).enumerate() {
            @if i > 0 { " " }
            span.group { (String::from_utf8_lossy(chunk)) }
        }
    }
}

/// The way out of a sign-in past its password step, to start again with
/// this account or another; `csrf_field` is the page's tag.
pub fn cancel_sign_in(csrf_field: &Markup) -> Markup {
    html! {
        form.cancel method="post" action="/sign-in/cancel" {
            (csrf_field)
            button.link type="submit" { "Cancel and use another account" }
        }
    }
}

/// "in 45 seconds", "in 3 minutes".
pub fn wait_words(seconds: i64) -> String {
    match seconds {
        ..=1 => "in a second".to_owned(),
        2..=90 => format!("in {seconds} seconds"),
        _ => format!("in {} minutes", (seconds + 59) / 60),
    }
}

pub const STYLESHEET: &str = include_str!("console.css");

#[cfg(test)]
mod tests {
    use super::grouped;

    #[test]
    fn a_secret_is_shown_in_groups_of_four_each_kept_whole() {
        assert_eq!(
            grouped("COV7EVMLQ2").into_string(),
            "<span class=\"group\">COV7</span> <span class=\"group\">EVML</span> \
             <span class=\"group\">Q2</span>"
        );
    }

    #[test]
    fn the_stylesheet_keeps_each_group_on_one_line_and_the_key_unbroken_by_letter() {
        let css = super::STYLESHEET;
        assert!(
            css.contains(".secret .group { white-space: nowrap; }"),
            "{css}"
        );
        assert!(!css.contains("break-all"), "{css}");
    }
}
