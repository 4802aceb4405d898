//! What each mail says, as plain text and as HTML. The HTML goes through
//! maud, which escapes every value it interpolates; it is laid out in
//! tables with inline styles, the one layout every mail client renders.
use authledger_aggregates::ResetCancellation;
use authledger_projections::mail::{MailKind, MailMessage};
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use crate::command_bus::ClientOrigin;
use crate::tokens::TokenKind;
use crate::user_agent::UserAgent;
use crate::words;

/// A mail ready to send. No `Debug`: a link mail holds its link.
pub(super) struct Rendered {
    pub subject: &'static str,
    pub text: String,
    pub html: String,
}

/// A paragraph of a mail: sentences, or the mail's link.
enum Block {
    Text(String),
    /// A button saying what the link does; the plain text, and the HTML
    /// below the button, show the address itself for a reader whose client
    /// shows no button.
    Action {
        label: &'static str,
        url: String,
        /// Whether it undoes or stops something: drawn in the warning
        /// colour, as the console draws such buttons.
        danger: bool,
    },
}

impl Block {
    fn action(label: &'static str, url: String) -> Self {
        Self::Action {
            label,
            url,
            danger: false,
        }
    }

    fn danger(label: &'static str, url: String) -> Self {
        Self::Action {
            label,
            url,
            danger: true,
        }
    }
}

/// Where a link mail's link leads, and the kind of token it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LinkTarget {
    pub token: TokenKind,
    /// Under the public URL; the token goes in its `token` parameter.
    pub path: &'static str,
}

/// The link a mail of `kind` carries; `None` for a notice.
pub(super) fn link_target(kind: MailKind) -> Option<LinkTarget> {
    let target = |token, path| Some(LinkTarget { token, path });
    match kind {
        MailKind::SignInLink => target(TokenKind::EmailLink, "/v1/login/email-link"),
        MailKind::VerifyEmail => target(TokenKind::EmailVerification, "/v1/users/verify"),
        MailKind::PasswordResetLink => target(TokenKind::PasswordReset, "/v1/password/reset"),
        MailKind::MfaResetRequested => target(TokenKind::ResetDenial, "/v1/mfa-reset/deny"),
        MailKind::EmailChangeConfirm => target(TokenKind::EmailChange, "/v1/me/email/confirm"),
        MailKind::EmailChangedNotice => target(TokenKind::EmailChangeRevert, "/v1/me/email/revert"),
        MailKind::NewDeviceSignIn => target(TokenKind::Report, "/v1/report"),
        MailKind::AuthenticatorEnrolled
        | MailKind::AuthenticatorAdded
        | MailKind::AuthenticatorRemoved
        | MailKind::SecurityKeyCopied
        | MailKind::MfaReset
        | MailKind::RecoveryCodeUsed
        | MailKind::SignedInWithEmailLink
        | MailKind::SecondFactorFailed
        | MailKind::AccountLocked
        | MailKind::RegistrationAttempted
        | MailKind::PasswordWasReset
        | MailKind::PasswordChanged
        | MailKind::MfaResetCancelled { .. }
        | MailKind::EmailChangeRevertedNotice
        | MailKind::EmailChangeUndoneNotice => None,
    }
}

/// Where the request behind a mail came from, as the worker opened it.
pub(super) enum Origin {
    /// The server did it by itself (a waiting reset taking effect).
    Server,
    Client(ClientOrigin),
    /// A request whose IP and browser did not open.
    Unknown,
}

/// What to do first if it was not you: whoever did it knows the password,
/// so changing it comes before anything else; resetting MFA would only
/// help them enroll an authenticator of their own.
/// An authenticator someone else added signs them in: reporting its
/// addition removes it and signs every session out.
const NOT_YOU_AUTHENTICATOR: &str =
    "If this was not you, sign in and report it as not yours under Recent activity in your \
     profile: that removes it and signs out every session. Then change your password.";

const NOT_YOU: &str =
    "If this was not you, someone knows your password: sign in with your authenticator app and \
     change your password from your profile now, then tell your administrator. Reset your \
     multi-factor authentication only if your authenticator itself is lost.";

/// A moment as every mail shows it.
fn moment(at: DateTime<Utc>) -> impl std::fmt::Display {
    at.format("%Y-%m-%d %H:%M UTC")
}

/// How long a link mailed at `sent` works, in words and to the minute:
/// "for 15 minutes, until 2026-03-01 12:15 UTC". Both come from the
/// link's own expiry, so they say what the policy was when it was mailed.
fn lasting(sent: DateTime<Utc>, until: DateTime<Utc>) -> String {
    format!("for {}, until {}", words::span(until - sent), moment(until))
}

/// Renders `message`, which `origin` came from. `link` is the URL a link
/// mail carries (see [`link_target`]); notices carry none.
pub(super) fn render(
    message: &MailMessage,
    origin: &Origin,
    link: Option<&str>,
) -> anyhow::Result<Rendered> {
    let when = moment(message.at);
    let origin = match origin {
        // What the server did by itself came from no IP address or browser.
        Origin::Server => "automatically, when its waiting period ended".to_owned(),
        Origin::Client(client) => format!(
            "from IP address {} ({})",
            client.client_ip,
            UserAgent::parse(&client.user_agent).phrase()
        ),
        Origin::Unknown => "from an IP address and browser that cannot be shown".to_owned(),
    };
    // A link mail's link and its expiry.
    let link = || match (&message.link, link) {
        (Some(reference), Some(url)) => Ok((reference.expires_at, url.to_owned())),
        _ => Err(anyhow::anyhow!("a link mail without its link")),
    };
    let (subject, blocks) = match message.kind {
        MailKind::SignInLink => {
            let (expires, url) = link()?;
            let lasting = lasting(message.at, expires);
            (
                "Your sign-in link",
                vec![
                    Block::Text(format!("Someone asked to sign in to your account at {when}, {origin}.")),
                    Block::Text(format!("Open this link to finish signing in. It works once, {lasting}.")),
                    Block::action("Finish signing in", url),
                    Block::Text("If you did not try to sign in, ignore this mail and change your password: someone knows it.".into()),
                ],
            )
        }
        MailKind::VerifyEmail => {
            let (expires, url) = link()?;
            let lasting = lasting(message.at, expires);
            (
                "Confirm your email address",
                vec![
                    Block::Text(format!("An account was created with this email address at {when}, {origin}.")),
                    Block::Text(format!("Open this link to confirm the address. It works once, {lasting}.")),
                    Block::action("Confirm my address", url),
                    Block::Text("If you did not create an account, ignore this mail.".into()),
                ],
            )
        }
        MailKind::RegistrationAttempted => (
            "Someone tried to register with your address",
            vec![
                Block::Text(format!("Someone tried to create an account with this email address at {when}, {origin}. You already have one, so nothing was created and nothing changed.")),
                Block::Text("If it was you, sign in to your account; if you forgot your password, choose \"Forgot password?\" on the sign-in page.".into()),
                Block::Text("If this was not you, ignore this mail: your account and its password are unchanged.".into()),
            ],
        ),
        MailKind::PasswordResetLink => {
            let (expires, url) = link()?;
            let lasting = lasting(message.at, expires);
            (
                "Reset your password",
                vec![
                    Block::Text(format!("Someone asked to reset the password of your account at {when}, {origin}.")),
                    Block::Text(format!("Open this link to choose a new password. It works once, {lasting}.")),
                    Block::action("Choose a new password", url),
                    Block::Text("If this was not you, ignore this mail: your password is unchanged.".into()),
                ],
            )
        }
        MailKind::PasswordWasReset => (
            "Your password was reset",
            vec![
                Block::Text(format!("The password of your account was reset with a link mailed to this address at {when}, {origin}, and every session was signed out.")),
                Block::Text("Sign in with your new password and your authenticator app. Signing in with an email link is off until your next sign-in with your authenticator or recovery code.".into()),
                Block::Text("If this was not you, someone can read your mail: tell your administrator now.".into()),
            ],
        ),
        MailKind::PasswordChanged => (
            "Your password was changed",
            vec![
                Block::Text(format!("The password of your account was changed at {when}, {origin}. Every other session was signed out.")),
                Block::Text("If this was not you, someone had a session of yours: reset your password with \"Forgot password?\" on the sign-in page and tell your administrator. Reset your multi-factor authentication only if your authenticator itself is lost.".into()),
            ],
        ),
        MailKind::MfaResetRequested => {
            let (effective, url) = link()?;
            let lasting = lasting(message.at, effective);
            let effective = moment(effective);
            (
                "A reset of your multi-factor authentication was requested",
                vec![
                    Block::Text(format!("A reset of your multi-factor authentication was asked for at {when}, {origin}, from a session signed in with an email link. It takes effect at {effective}: then your authenticator and recovery code stop working, and the next sign-in sets up a new authenticator.")),
                    Block::Text(format!("If this was not you, open this link before then to cancel the reset and sign out every session. It works {lasting}.")),
                    Block::danger("Stop the reset", url),
                    Block::Text("A sign-in with your authenticator app or recovery code cancels it too. If this was not you, also change your password and tell your administrator: whoever asked knows your password and can read your mail.".into()),
                ],
            )
        }
        MailKind::MfaResetCancelled { reason } => {
            let why = match reason {
                ResetCancellation::SignedInWithSecondFactor => "your account was signed in with its authenticator app or recovery code, so they are not lost",
                ResetCancellation::CancelledByUser => "it was cancelled from your profile",
                ResetCancellation::DeniedByLink => "the link in the mail that announced it was opened, and every session was signed out",
                ResetCancellation::PasswordReset => "the password was reset with a mailed link, which stops any reset asked before it",
                ResetCancellation::SignInFailed => "a sign-in to your account failed while it waited, so whoever asked for it must ask again",
                ResetCancellation::ReportedByUser => "activity on your account was reported as not yours, and every session was signed out",
            };
            (
                "The reset of your multi-factor authentication was cancelled",
                vec![
                    Block::Text(format!("The pending reset of your multi-factor authentication was cancelled at {when}, {origin}: {why}. Your authenticator and recovery code keep working.")),
                    Block::Text("If this was not you, change your password and tell your administrator; if you have lost your authenticator, ask them to reset it.".into()),
                ],
            )
        }
        MailKind::AuthenticatorEnrolled => (
            "A new authenticator was added to your account",
            vec![
                Block::Text(format!("An authenticator app was enrolled for your account at {when}, {origin}.")),
                Block::Text(NOT_YOU.into()),
            ],
        ),
        MailKind::AuthenticatorAdded => (
            "Another authenticator was added to your account",
            vec![
                Block::Text(format!("An authenticator app, security key or passkey was added to your account at {when}, {origin}. It signs in as well as the ones you had.")),
                Block::Text(NOT_YOU_AUTHENTICATOR.into()),
            ],
        ),
        MailKind::SecurityKeyCopied => (
            "One of your security keys may have been copied",
            vec![
                Block::Text(format!("At {when}, {origin}, a security key of your account answered with a signature count lower than it had already reached. That happens when two copies of the key are in use. The answer was refused.")),
                Block::Text("If you did not copy it, sign in with another authenticator, remove that key from My Profile, and change your password. If it is your only one, reset your multi-factor authentication.".into()),
            ],
        ),
        MailKind::AuthenticatorRemoved => (
            "An authenticator was removed from your account",
            vec![
                Block::Text(format!("An authenticator was removed from your account at {when}, {origin}. It no longer signs in; if it was the last, the next sign-in sets up a new one.")),
                Block::Text(NOT_YOU.into()),
            ],
        ),
        MailKind::MfaReset => (
            "Your multi-factor authentication was reset",
            vec![
                Block::Text(format!("Multi-factor authentication was reset for your account at {when}, {origin}. Every session was signed out; the next sign-in sets up a new authenticator.")),
                Block::Text(NOT_YOU.into()),
            ],
        ),
        MailKind::RecoveryCodeUsed => (
            "Your recovery code was used",
            vec![
                Block::Text(format!("Your recovery code was used to sign in at {when}, {origin}. A new code was shown at that sign-in; the old one no longer works.")),
                Block::Text(NOT_YOU.into()),
            ],
        ),
        MailKind::SignedInWithEmailLink => (
            "You signed in with an email link",
            vec![
                Block::Text(format!("Your account was signed in with an email link at {when}, {origin}.")),
                Block::Text(NOT_YOU.into()),
            ],
        ),
        MailKind::SecondFactorFailed => (
            "A sign-in to your account failed its second step",
            vec![
                Block::Text(format!("Your password was entered correctly at {when}, {origin}, but the second step of sign-in failed.")),
                Block::Text("If this was not you, someone knows your password: change it now.".into()),
            ],
        ),
        MailKind::AccountLocked => (
            "Your account was locked",
            vec![
                Block::Text(format!("Your account was locked at {when} after too many failed sign-ins, the last {origin}.")),
                Block::Text("An administrator must unlock it. If these attempts were not yours, change your password once it is unlocked.".into()),
            ],
        ),
        // Mailed to the new address, whose reader may not own the account
        // (a mistyped address): it says only what confirming does.
        MailKind::EmailChangeConfirm => {
            let (expires, url) = link()?;
            let lasting = lasting(message.at, expires);
            (
                "Confirm your new email address",
                vec![
                    Block::Text(format!("Someone asked at {when}, {origin}, to make this the email address of an account.")),
                    Block::Text(format!("Open this link to confirm it. It works once, {lasting}. Until then the account's mail goes to its current address.")),
                    Block::action("Confirm the new address", url),
                    Block::Text("If you did not ask for this, ignore this mail: nothing changes.".into()),
                ],
            )
        }
        // Mailed to the address given up: whoever changed it may hold the
        // account's sessions, so the link also ends every session.
        MailKind::EmailChangedNotice => {
            let (until, url) = link()?;
            let lasting = lasting(message.at, until);
            (
                "Your email address was changed",
                vec![
                    Block::Text(format!("The email address of your account was changed to another address at {when}, {origin}. Mail about your account now goes there, not here.")),
                    Block::Text(format!("If this was not you, open this link: it restores this address and signs out every session. It works {lasting}.")),
                    Block::danger("Restore this address", url),
                    Block::Text("Then reset your password with \"Forgot password?\" on the sign-in page: whoever changed the address was signed in to your account.".into()),
                ],
            )
        }
        MailKind::EmailChangeRevertedNotice => (
            "Your email address was restored",
            vec![
                Block::Text(format!("The email address of your account was restored to this address at {when}, {origin}, with the link mailed when it was changed. Every session was signed out.")),
                Block::Text("If someone else had access to your account, reset your password now with \"Forgot password?\" on the sign-in page, then have your multi-factor authentication reset: they may have enrolled an authenticator of their own.".into()),
                Block::Text("If you did not open that link, someone can read your mail at this address: tell your administrator now.".into()),
            ],
        ),
        // Whoever signed in may hold the password and the authenticator:
        // the link ends their session before anything else.
        MailKind::NewDeviceSignIn => {
            let (until, url) = link()?;
            let lasting = lasting(message.at, until);
            (
                "New sign-in to your account",
                vec![
                    Block::Text(format!("Your account was signed in at {when}, {origin}, a browser it had not been signed in from before.")),
                    Block::Text("If this was you, there is nothing to do.".into()),
                    Block::Text(format!("If this was not you, open this link to sign out every session and report it. It works once, {lasting}.")),
                    Block::danger("It wasn't me", url),
                    Block::Text("Then change your password: whoever signed in knows it.".into()),
                ],
            )
        }
        MailKind::EmailChangeUndoneNotice => (
            "Your account no longer uses this email address",
            vec![
                Block::Text(format!("At {when}, {origin}, the \"this wasn't me\" link mailed to your account's previous address was used: the account uses that address again, and every session was signed out.")),
                Block::Text("If that was you, there is nothing more to do.".into()),
                Block::Text("If this was not you, whoever reads your previous mailbox has taken the account back, and links for it now go there: tell your administrator now, from this address.".into()),
            ],
        ),
    };
    Ok(Rendered {
        subject,
        text: plain_text(&blocks),
        html: html_of(subject, &blocks),
    })
}

fn plain_text(blocks: &[Block]) -> String {
    let paragraphs: Vec<&str> = blocks
        .iter()
        .map(|block| match block {
            Block::Text(text) => text.as_str(),
            Block::Action { url, .. } => url.as_str(),
        })
        .collect();
    paragraphs.join("\n\n") + "\n"
}

/// The console's colours, so a mail looks like the pages its links open.
const INK: &str = "#1b1f24";
const MUTED: &str = "#4a5360";
const LINE: &str = "#c9d0d8";
const TINT: &str = "#eef3f8";
const ACCENT: &str = "#0b57a4";
const DANGER: &str = "#a4221b";
/// Clients drop `<style>` and web fonts: every cell names its fonts.
const FONT: &str =
    "font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;";

fn html_of(subject: &str, blocks: &[Block]) -> String {
    let cell = format!("{FONT}padding:24px 28px 8px;font-size:16px;line-height:1.5;color:{INK};");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light";
                title { (subject) }
            }
            body style={ "margin:0;padding:0;background-color:" (TINT) ";" } {
                table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0"
                    style={ "background-color:" (TINT) ";" } {
                    tr { td align="center" style="padding:24px 12px;" {
                        table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0"
                            style={ "max-width:560px;background-color:#ffffff;border:1px solid " (LINE) ";border-radius:8px;" } {
                            tr { td style={ (FONT) "padding:16px 28px;border-bottom:1px solid " (LINE) ";font-size:16px;font-weight:700;color:" (INK) ";" } {
                                "authledger"
                            } }
                            tr { td style=(cell) {
                                h1 style={ (FONT) "margin:0 0 16px;font-size:22px;line-height:1.3;color:" (INK) ";" } { (subject) }
                                @for block in blocks {
                                    (block_html(block))
                                }
                            } }
                        }
                    } }
                }
            }
        }
    }
    .into_string()
}

fn block_html(block: &Block) -> Markup {
    match block {
        Block::Text(text) => html! { p style="margin:0 0 16px;" { (text) } },
        Block::Action { label, url, danger } => {
            let colour = if *danger { DANGER } else { ACCENT };
            html! {
                table role="presentation" cellpadding="0" cellspacing="0" border="0" style="margin:4px 0 12px;" {
                    tr { td style={ "border-radius:6px;background-color:" (colour) ";" } {
                        a href=(url) style={ (FONT) "display:inline-block;padding:12px 22px;border:1px solid " (colour) ";border-radius:6px;font-size:16px;font-weight:600;color:#ffffff;text-decoration:none;" } {
                            (label)
                        }
                    } }
                }
                p style={ "margin:0 0 20px;font-size:13px;line-height:1.4;color:" (MUTED) ";" } {
                    "If the button does not work, copy this address into your browser:"
                    br;
                    span style="word-break:break-all;" { (url) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use authledger_aggregates::Sealed;
    use authledger_projections::mail::LinkReference;
    use chrono::{DateTime, TimeZone, Utc};
    use uuid::Uuid;

    use super::*;

    const LINK: &str = "https://auth.example.com/v1/login/email-link?token=al_link_0123abcd";
    const VERIFY: &str = "https://auth.example.com/v1/users/verify?token=al_verify_4567efgh";
    const RESET: &str = "https://auth.example.com/v1/password/reset?token=al_reset_89abijkl";
    const DENY: &str = "https://auth.example.com/v1/mfa-reset/deny?token=al_deny_cdefmnop";
    const CONFIRM: &str = "https://auth.example.com/v1/me/email/confirm?token=al_newaddr_qrst";
    const REVERT: &str = "https://auth.example.com/v1/me/email/revert?token=al_undo_uvwx";
    const REPORT: &str = "https://auth.example.com/v1/report?token=al_report_yzab";
    const LINUX: &str = "Mozilla/5.0 (X11; Linux x86_64)";

    /// 2026-03-01 12:00 UTC.
    fn noon() -> DateTime<Utc> {
        Utc.timestamp_opt(1_772_366_400, 0).unwrap()
    }

    /// Every kind of mail, each reason of a cancelled reset among them.
    fn every_kind() -> Vec<MailKind> {
        vec![
            MailKind::SignInLink,
            MailKind::AuthenticatorEnrolled,
            MailKind::MfaReset,
            MailKind::RecoveryCodeUsed,
            MailKind::SignedInWithEmailLink,
            MailKind::SecondFactorFailed,
            MailKind::AccountLocked,
            MailKind::VerifyEmail,
            MailKind::RegistrationAttempted,
            MailKind::PasswordResetLink,
            MailKind::PasswordWasReset,
            MailKind::PasswordChanged,
            MailKind::MfaResetRequested,
            MailKind::MfaResetCancelled {
                reason: ResetCancellation::SignedInWithSecondFactor,
            },
            MailKind::MfaResetCancelled {
                reason: ResetCancellation::CancelledByUser,
            },
            MailKind::MfaResetCancelled {
                reason: ResetCancellation::DeniedByLink,
            },
            MailKind::EmailChangeConfirm,
            MailKind::EmailChangedNotice,
            MailKind::EmailChangeRevertedNotice,
            MailKind::EmailChangeUndoneNotice,
            MailKind::NewDeviceSignIn,
            MailKind::MfaResetCancelled {
                reason: ResetCancellation::ReportedByUser,
            },
            MailKind::AuthenticatorAdded,
            MailKind::AuthenticatorRemoved,
            MailKind::SecurityKeyCopied,
        ]
    }

    /// A mail of `kind`; a link mail's link expires 15 minutes after it.
    /// The templates never see the address: it stays sealed here.
    fn message(kind: MailKind) -> MailMessage {
        MailMessage {
            message_id: "6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11/7".into(),
            kind,
            user_id: Uuid::from_u128(7),
            to: Sealed {
                key_id: "user".into(),
                nonce: "n".into(),
                ciphertext: "c".into(),
            },
            at: noon(),
            origin: Some("sealed".into()),
            link: link_target(kind).map(|_| LinkReference {
                reference: "ab".repeat(16),
                expires_at: noon() + chrono::Duration::minutes(15),
            }),
        }
    }

    /// A request from 203.0.113.9 with `user_agent`.
    fn from(user_agent: &str) -> Origin {
        Origin::Client(ClientOrigin {
            client_ip: "203.0.113.9".into(),
            user_agent: user_agent.into(),
        })
    }

    /// A link mail whose link expires `valid` after it was asked for.
    fn link_mail(kind: MailKind, valid: chrono::Duration) -> MailMessage {
        let mut mail = message(kind);
        if let Some(link) = &mut mail.link {
            link.expires_at = noon() + valid;
        }
        mail
    }

    /// The URL a link mail of `kind` would carry in these tests.
    fn url_for(kind: MailKind) -> Option<&'static str> {
        match link_target(kind)?.token {
            TokenKind::EmailLink => Some(LINK),
            TokenKind::EmailVerification => Some(VERIFY),
            TokenKind::PasswordReset => Some(RESET),
            TokenKind::ResetDenial => Some(DENY),
            TokenKind::EmailChange => Some(CONFIRM),
            TokenKind::EmailChangeRevert => Some(REVERT),
            TokenKind::Report => Some(REPORT),
            TokenKind::LoginAttempt | TokenKind::Session | TokenKind::StaffSession => None,
        }
    }

    /// The link in both parts: a paragraph of its own in the text; in the
    /// HTML, the one anchor, a button named `label`, with the address
    /// written out below it rather than as the anchor's words.
    fn assert_carries(mail: &Rendered, url: &str, label: &str) {
        assert!(
            mail.text.contains(&format!("\n\n{url}\n\n")),
            "{}",
            mail.text
        );
        assert_eq!(mail.html.matches("<a ").count(), 1, "{}", mail.html);
        let anchor = &mail.html[mail.html.find("<a ").unwrap()..];
        assert!(
            anchor.starts_with(&format!("<a href=\"{url}\" ")),
            "{anchor}"
        );
        let words = &anchor[anchor.find('>').unwrap() + 1..anchor.find("</a>").unwrap()];
        assert_eq!(words.trim(), label);
        let below = &anchor[anchor.find("</a>").unwrap()..];
        assert!(
            below.contains(&format!(
                "<span style=\"word-break:break-all;\">{url}</span>"
            )),
            "{below}"
        );
    }

    /// Both parts say `words`; the HTML escapes its quotes.
    fn assert_says(mail: &Rendered, words: &str) {
        assert!(mail.text.contains(words), "{words:?} in {}", mail.text);
        let escaped = words.replace('"', "&quot;");
        assert!(mail.html.contains(&escaped), "{words:?} in {}", mail.html);
    }

    #[test]
    fn a_hostile_user_agent_adds_no_markup_and_no_link_to_any_mail() {
        let hostile = "Mozilla/5.0\"><a href=\"https://evil.example/reset\">Reset your password</a><script>alert(1)</script>";
        for kind in every_kind() {
            let mail = render(&message(kind), &from(hostile), url_for(kind)).unwrap();
            let anchors = mail.html.matches("<a ").count();
            assert_eq!(
                anchors,
                usize::from(link_target(kind).is_some()),
                "{kind:?}: {}",
                mail.html
            );
            assert!(!mail.html.contains("<script"), "{}", mail.html);
            assert!(!mail.html.contains("evil.example/reset\""), "{}", mail.html);
            assert!(!mail.text.contains("https://evil"), "{}", mail.text);
            assert!(!mail.html.contains("https://evil"), "{}", mail.html);
            assert!(
                !mail.text.contains("evil.example/reset") && !mail.text.contains("<a"),
                "{}",
                mail.text
            );
        }
    }

    #[test]
    fn what_the_server_did_by_itself_names_no_address_or_browser() {
        let mail = render(&message(MailKind::MfaReset), &Origin::Server, None).unwrap();
        assert_says(&mail, "automatically, when its waiting period ended");
        assert!(!mail.text.contains("IP address"), "{}", mail.text);
    }

    #[test]
    fn the_html_part_escapes_what_it_shows() {
        let origin = Origin::Client(ClientOrigin {
            client_ip: "<b>203.0.113.9</b>".into(),
            user_agent: "curl/8.5".into(),
        });
        let mail = render(&message(MailKind::AccountLocked), &origin, None).unwrap();
        assert!(
            mail.html.contains("&lt;b&gt;203.0.113.9&lt;/b&gt;"),
            "{}",
            mail.html
        );
        assert!(!mail.html.contains("<b>"), "{}", mail.html);
    }

    #[test]
    fn the_link_mail_carries_its_link_in_both_parts() {
        let mail = render(&message(MailKind::SignInLink), &from(LINUX), Some(LINK)).unwrap();
        assert_eq!(mail.subject, "Your sign-in link");
        assert_eq!(
            mail.text,
            "Someone asked to sign in to your account at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 (an unknown browser on Linux).\n\n\
             Open this link to finish signing in. It works once, for 15 minutes, until 2026-03-01 12:15 UTC.\n\n\
             https://auth.example.com/v1/login/email-link?token=al_link_0123abcd\n\n\
             If you did not try to sign in, ignore this mail and change your password: someone knows it.\n"
        );
        assert_carries(&mail, LINK, "Finish signing in");
    }

    #[test]
    fn a_link_mail_says_how_long_its_link_works_from_the_links_own_expiry() {
        for (kind, valid, said) in [
            (
                MailKind::SignInLink,
                chrono::Duration::minutes(15),
                "It works once, for 15 minutes, until 2026-03-01 12:15 UTC.",
            ),
            (
                MailKind::SignInLink,
                chrono::Duration::minutes(5),
                "It works once, for 5 minutes, until 2026-03-01 12:05 UTC.",
            ),
            (
                MailKind::VerifyEmail,
                chrono::Duration::hours(24),
                "It works once, for 24 hours, until 2026-03-02 12:00 UTC.",
            ),
            (
                MailKind::NewDeviceSignIn,
                chrono::Duration::days(7),
                "It works once, for 7 days, until 2026-03-08 12:00 UTC.",
            ),
        ] {
            let mail = render(&link_mail(kind, valid), &from(LINUX), url_for(kind)).unwrap();
            assert_says(&mail, said);
        }
    }

    #[test]
    fn the_html_part_is_a_table_layout_with_inline_styles_only() {
        for kind in every_kind() {
            let mail = render(&message(kind), &from(LINUX), url_for(kind)).unwrap();
            let html = &mail.html;
            assert!(
                html.starts_with("<!DOCTYPE html><html lang=\"en\">"),
                "{html}"
            );
            assert!(html.contains("<table role=\"presentation\""), "{html}");
            assert!(html.contains(&format!("<title>{}</title>", mail.subject)));
            // Clients strip style elements and external sheets.
            assert!(
                !html.contains("<style") && !html.contains("<link"),
                "{html}"
            );
            let paragraphs = html.matches("<p style=").count();
            assert_eq!(paragraphs, html.matches("<p").count(), "{html}");
        }
    }

    #[test]
    fn a_link_that_undoes_or_stops_something_is_a_warning_coloured_button() {
        for (kind, label, colour) in [
            (MailKind::SignInLink, "Finish signing in", ACCENT),
            (MailKind::VerifyEmail, "Confirm my address", ACCENT),
            (MailKind::PasswordResetLink, "Choose a new password", ACCENT),
            (
                MailKind::EmailChangeConfirm,
                "Confirm the new address",
                ACCENT,
            ),
            (MailKind::MfaResetRequested, "Stop the reset", DANGER),
            (MailKind::EmailChangedNotice, "Restore this address", DANGER),
            (MailKind::NewDeviceSignIn, "It wasn't me", DANGER),
        ] {
            let url = url_for(kind).unwrap();
            let mail = render(&message(kind), &from(LINUX), Some(url)).unwrap();
            let anchor = &mail.html[mail.html.find("<a ").unwrap()..];
            assert!(
                anchor.contains(&format!("border:1px solid {colour};")),
                "{anchor}"
            );
            let anchor_words = &anchor[anchor.find('>').unwrap() + 1..anchor.find("</a>").unwrap()];
            assert_eq!(anchor_words, label, "{kind:?}");
        }
    }

    #[test]
    fn a_link_mail_without_its_link_is_refused() {
        for kind in every_kind() {
            if link_target(kind).is_some() {
                assert!(render(&message(kind), &from(""), None).is_err(), "{kind:?}");
                let mut bare = message(kind);
                bare.link = None;
                assert!(render(&bare, &from(""), url_for(kind)).is_err(), "{kind:?}");
            }
        }
    }

    #[test]
    fn the_verification_mail_carries_its_link_until_it_expires() {
        let mail = render(
            &link_mail(MailKind::VerifyEmail, chrono::Duration::hours(24)),
            &from(LINUX),
            Some(VERIFY),
        )
        .unwrap();
        assert_eq!(mail.subject, "Confirm your email address");
        assert_eq!(
            mail.text,
            "An account was created with this email address at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 (an unknown browser on Linux).\n\n\
             Open this link to confirm the address. It works once, for 24 hours, until 2026-03-02 12:00 UTC.\n\n\
             https://auth.example.com/v1/users/verify?token=al_verify_4567efgh\n\n\
             If you did not create an account, ignore this mail.\n"
        );
        assert_carries(&mail, VERIFY, "Confirm my address");
        assert_says(&mail, "until 2026-03-02 12:00 UTC");
    }

    #[test]
    fn the_registration_notice_points_to_sign_in_and_forgot_password() {
        let mail = render(
            &message(MailKind::RegistrationAttempted),
            &from("curl/8.5"),
            None,
        )
        .unwrap();
        assert_eq!(mail.subject, "Someone tried to register with your address");
        for words in [
            "Someone tried to create an account with this email address at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 (curl)",
            "nothing changed",
            "If it was you, sign in to your account",
            "\"Forgot password?\"",
            "If this was not you, ignore this mail: your account and its password are unchanged.",
        ] {
            assert_says(&mail, words);
        }
        assert!(!mail.html.contains("<a "), "{}", mail.html);
    }

    #[test]
    fn the_password_reset_mail_carries_its_link_and_says_an_unasked_one_changes_nothing() {
        let mail = render(
            &link_mail(MailKind::PasswordResetLink, chrono::Duration::minutes(30)),
            &from(LINUX),
            Some(RESET),
        )
        .unwrap();
        assert_eq!(mail.subject, "Reset your password");
        assert_eq!(
            mail.text,
            "Someone asked to reset the password of your account at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 (an unknown browser on Linux).\n\n\
             Open this link to choose a new password. It works once, for 30 minutes, until 2026-03-01 12:30 UTC.\n\n\
             https://auth.example.com/v1/password/reset?token=al_reset_89abijkl\n\n\
             If this was not you, ignore this mail: your password is unchanged.\n"
        );
        assert_carries(&mail, RESET, "Choose a new password");
    }

    #[test]
    fn the_reset_password_notice_says_email_sign_in_is_off_until_a_second_factor() {
        let mail = render(
            &message(MailKind::PasswordWasReset),
            &from("curl/8.5"),
            None,
        )
        .unwrap();
        assert_eq!(mail.subject, "Your password was reset");
        for words in [
            "reset with a link mailed to this address at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 (curl)",
            "every session was signed out",
            "Sign in with your new password and your authenticator app.",
            "Signing in with an email link is off until your next sign-in with your authenticator or recovery code.",
            "If this was not you, someone can read your mail: tell your administrator now.",
        ] {
            assert_says(&mail, words);
        }
    }

    #[test]
    fn the_changed_password_notice_says_what_to_do_if_it_was_not_you() {
        let mail = render(&message(MailKind::PasswordChanged), &from("curl/8.5"), None).unwrap();
        assert_eq!(mail.subject, "Your password was changed");
        for words in [
            "changed at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 (curl)",
            "Every other session was signed out.",
            "If this was not you, someone had a session of yours: reset your password with \"Forgot password?\"",
            "Reset your multi-factor authentication only if your authenticator itself is lost.",
        ] {
            assert_says(&mail, words);
        }
    }

    #[test]
    fn the_pending_reset_mail_says_when_it_takes_effect_and_carries_the_denial_link() {
        let mail = render(
            &link_mail(MailKind::MfaResetRequested, chrono::Duration::hours(72)),
            &from(LINUX),
            Some(DENY),
        )
        .unwrap();
        assert_eq!(
            mail.subject,
            "A reset of your multi-factor authentication was requested"
        );
        for words in [
            "was asked for at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 (an unknown browser on Linux), from a session signed in with an email link.",
            "It takes effect at 2026-03-04 12:00 UTC",
            "If this was not you, open this link before then to cancel the reset and sign out every session. It works for 3 days, until 2026-03-04 12:00 UTC.",
            "A sign-in with your authenticator app or recovery code cancels it too.",
        ] {
            assert_says(&mail, words);
        }
        assert_carries(&mail, DENY, "Stop the reset");
    }

    #[test]
    fn the_new_device_notice_says_when_where_and_which_browser_and_carries_the_report_link() {
        let mail = render(
            &link_mail(MailKind::NewDeviceSignIn, chrono::Duration::days(7)),
            &from("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
            Some(REPORT),
        )
        .unwrap();
        assert_eq!(mail.subject, "New sign-in to your account");
        for words in [
            "Your account was signed in at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 (Firefox on Linux), a browser it had not been signed in from before.",
            "If this was not you, open this link to sign out every session and report it. It works once, for 7 days, until 2026-03-08 12:00 UTC.",
        ] {
            assert_says(&mail, words);
        }
        assert_carries(&mail, REPORT, "It wasn't me");
    }

    #[test]
    fn a_cancelled_reset_says_why_in_words_of_its_reason() {
        for (reason, why) in [
            (
                ResetCancellation::SignedInWithSecondFactor,
                "signed in with its authenticator app or recovery code",
            ),
            (
                ResetCancellation::CancelledByUser,
                "it was cancelled from your profile",
            ),
            (
                ResetCancellation::DeniedByLink,
                "the link in the mail that announced it was opened, and every session was signed out",
            ),
        ] {
            let mail = render(
                &message(MailKind::MfaResetCancelled { reason }),
                &from("curl/8.5"),
                None,
            )
            .unwrap();
            assert_eq!(
                mail.subject,
                "The reset of your multi-factor authentication was cancelled"
            );
            assert_says(&mail, why);
            assert_says(&mail, "cancelled at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 (curl)");
            assert_says(&mail, "Your authenticator and recovery code keep working.");
            assert_says(&mail, "If this was not you,");
        }
    }

    #[test]
    fn a_notice_says_when_and_from_where_and_what_to_do() {
        let mail = render(&message(MailKind::SecondFactorFailed), &from(LINUX), None).unwrap();
        assert_eq!(
            mail.text,
            "Your password was entered correctly at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 \
             (an unknown browser on Linux), but the second step of sign-in failed.\n\n\
             If this was not you, someone knows your password: change it now.\n"
        );
        let paragraphs: Vec<&str> = mail
            .html
            .split("<p style=\"margin:0 0 16px;\">")
            .skip(1)
            .map(|rest| &rest[..rest.find("</p>").unwrap()])
            .collect();
        assert_eq!(
            paragraphs,
            [
                "Your password was entered correctly at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 \
                 (an unknown browser on Linux), but the second step of sign-in failed.",
                "If this was not you, someone knows your password: change it now.",
            ]
        );
        assert!(!mail.html.contains("<a "), "{}", mail.html);
    }

    #[test]
    fn every_mail_says_when_from_where_and_what_if_it_was_not_you() {
        for kind in every_kind() {
            let mail = render(&message(kind), &from("curl/8.5"), url_for(kind)).unwrap();
            assert_says(&mail, "2026-03-01 12:00 UTC");
            assert_says(&mail, "from IP address 203.0.113.9 (curl)");
            assert!(
                ["If this was not you", "If you did not", "were not yours"]
                    .iter()
                    .any(|words| mail.text.contains(words)),
                "{kind:?}: {}",
                mail.text
            );
        }
    }

    #[test]
    fn every_kind_keeps_its_subject_and_only_link_mails_have_a_link() {
        let expected = [
            (MailKind::SignInLink, "Your sign-in link"),
            (
                MailKind::AuthenticatorEnrolled,
                "A new authenticator was added to your account",
            ),
            (
                MailKind::MfaReset,
                "Your multi-factor authentication was reset",
            ),
            (MailKind::RecoveryCodeUsed, "Your recovery code was used"),
            (
                MailKind::SignedInWithEmailLink,
                "You signed in with an email link",
            ),
            (
                MailKind::SecondFactorFailed,
                "A sign-in to your account failed its second step",
            ),
            (MailKind::AccountLocked, "Your account was locked"),
            (MailKind::VerifyEmail, "Confirm your email address"),
            (
                MailKind::RegistrationAttempted,
                "Someone tried to register with your address",
            ),
            (MailKind::PasswordResetLink, "Reset your password"),
            (MailKind::PasswordWasReset, "Your password was reset"),
            (MailKind::PasswordChanged, "Your password was changed"),
            (
                MailKind::MfaResetRequested,
                "A reset of your multi-factor authentication was requested",
            ),
            (
                MailKind::MfaResetCancelled {
                    reason: ResetCancellation::CancelledByUser,
                },
                "The reset of your multi-factor authentication was cancelled",
            ),
            (
                MailKind::EmailChangeConfirm,
                "Confirm your new email address",
            ),
            (
                MailKind::EmailChangedNotice,
                "Your email address was changed",
            ),
            (
                MailKind::EmailChangeRevertedNotice,
                "Your email address was restored",
            ),
            (
                MailKind::EmailChangeUndoneNotice,
                "Your account no longer uses this email address",
            ),
            (MailKind::NewDeviceSignIn, "New sign-in to your account"),
            (
                MailKind::AuthenticatorAdded,
                "Another authenticator was added to your account",
            ),
            (
                MailKind::AuthenticatorRemoved,
                "An authenticator was removed from your account",
            ),
            (
                MailKind::SecurityKeyCopied,
                "One of your security keys may have been copied",
            ),
        ];
        for (kind, subject) in expected {
            // A URL offered to a notice is not shown.
            let mail = render(
                &message(kind),
                &from("curl/8.5"),
                Some(url_for(kind).unwrap_or(LINK)),
            )
            .unwrap();
            assert_eq!(mail.subject, subject);
            let has_link = link_target(kind).is_some();
            for part in [&mail.text, &mail.html] {
                assert_eq!(part.contains("?token=al_"), has_link, "{subject}");
            }
        }
    }

    #[test]
    fn the_new_address_is_asked_to_confirm_and_told_that_ignoring_it_changes_nothing() {
        let mail = render(
            &link_mail(MailKind::EmailChangeConfirm, chrono::Duration::hours(1)),
            &from(LINUX),
            Some(CONFIRM),
        )
        .unwrap();
        assert_eq!(mail.subject, "Confirm your new email address");
        assert_eq!(
            mail.text,
            "Someone asked at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 (an unknown browser on Linux), to make this the email address of an account.\n\n\
             Open this link to confirm it. It works once, for 1 hour, until 2026-03-01 13:00 UTC. Until then the account's mail goes to its current address.\n\n\
             https://auth.example.com/v1/me/email/confirm?token=al_newaddr_qrst\n\n\
             If you did not ask for this, ignore this mail: nothing changes.\n"
        );
        assert_carries(&mail, CONFIRM, "Confirm the new address");
    }

    #[test]
    fn the_old_address_is_told_of_the_change_and_given_the_link_that_undoes_it() {
        let mail = render(
            &link_mail(MailKind::EmailChangedNotice, chrono::Duration::hours(72)),
            &from("curl/8.5"),
            Some(REVERT),
        )
        .unwrap();
        assert_eq!(mail.subject, "Your email address was changed");
        for words in [
            "was changed to another address at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 (curl).",
            "Mail about your account now goes there, not here.",
            "If this was not you, open this link: it restores this address and signs out every session. It works for 3 days, until 2026-03-04 12:00 UTC.",
            "reset your password with \"Forgot password?\"",
        ] {
            assert_says(&mail, words);
        }
        assert_carries(&mail, REVERT, "Restore this address");
    }

    #[test]
    fn the_restored_address_is_told_every_session_ended_and_what_to_reset() {
        let mail = render(
            &message(MailKind::EmailChangeRevertedNotice),
            &from("curl/8.5"),
            None,
        )
        .unwrap();
        assert_eq!(mail.subject, "Your email address was restored");
        for words in [
            "restored to this address at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 (curl)",
            "Every session was signed out.",
            "If someone else had access to your account, reset your password now with \"Forgot password?\"",
            "have your multi-factor authentication reset",
        ] {
            assert_says(&mail, words);
        }
        assert!(!mail.html.contains("<a "), "{}", mail.html);
    }

    #[test]
    fn an_origin_that_does_not_open_is_not_taken_for_the_server() {
        let mail = render(&message(MailKind::PasswordChanged), &Origin::Unknown, None).unwrap();
        assert_says(&mail, "from an IP address and browser that cannot be shown");
        assert!(!mail.text.contains("automatically"), "{}", mail.text);
    }
}
